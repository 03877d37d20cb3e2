/*
 * auth: SMTP AUTH credentials. The file holds "user:$6$salt$hash" lines
 * (crypt(3) SHA-512, or "{SSHA256}" salted SHA-256 from sluicectl); never
 * plaintext. Loaded with the config; checked on a job thread.
 */
#ifndef SLUICE_AUTH_H
#define SLUICE_AUTH_H

#include <stdbool.h>

struct auth_db;
struct auth_db *auth_load(const char *path, char *err, size_t errlen);
void auth_free(struct auth_db *db);
bool auth_check(const struct auth_db *db, const char *user, const char *pass);
/* Make a salted hash line for a password (sluicectl user add). malloc'd. */
char *auth_hash(const char *pass);

#endif
