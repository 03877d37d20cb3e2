/*
 * auth: SMTP AUTH credentials. The file holds "user:HASH" lines, one per
 * user, '#' comments and blank lines allowed; HASH is salted PBKDF2 with
 * HMAC-SHA-256 in the form "$pbkdf2-sha256$ITERATIONS$SALT$KEY" (standard
 * base64), as made by auth_hash() / `sluicectl user hash USER`. Plaintext or
 * unknown schemes are refused at load with file:line, and so is a file that
 * other users can read. A loaded db is immutable: auth_check() may run on
 * any thread (it is slow on purpose; call it from the job pool).
 */
#ifndef SLUICE_AUTH_H
#define SLUICE_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#define AUTH_PBKDF2_ITER 100000     /* default cost of auth_hash() */

struct auth_db;
struct auth_db *auth_load(const char *path, char *err, size_t errlen);
void auth_free(struct auth_db *db);
int auth_count(const struct auth_db *db);
/* Constant-time compare; an unknown user costs as much as a known one. */
bool auth_check(const struct auth_db *db, const char *user, const char *pass);
/* A salted hash for a password (the part after "user:"). malloc'd. */
char *auth_hash(const char *pass);
/* Same with an explicit cost (tests; iterations >= 1000). */
char *auth_hash_iter(const char *pass, int iterations);

#endif
