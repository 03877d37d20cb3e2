/*
 * verp: the Return-Path of each send, bounce+TOKEN@BOUNCE-DOMAIN, and the
 * record that maps a token back to the send when a bounce or complaint
 * comes back days later.
 *
 * TOKEN = QID IDX MAC: the 26-character queue id, the recipient's index in
 * the message (1-4 base32 digits, no leading zero) and 13 base32 digits of
 * HMAC-SHA256(verp-key, "sluice-verp-1:" QID ":" IDX) truncated to 64 bits
 * (the 65th bit is zero). Base32 is Crockford's upper-case alphabet and is
 * read case-insensitively, since some MTAs lower-case local parts; the local
 * part is at most 50 octets (RFC 5321 allows 64). A token is checked without
 * the store (constant-time comparison); the store record (DB_VERP, written
 * when the recipient is delivered) gives the recipient, campaign and
 * Message-ID. Records expire verp-expire after the message's arrival: queue
 * ids start with their arrival time, so the oldest records are first in the
 * database and expiry is a bounded cursor walk from its start.
 */
#ifndef SLUICE_VERP_H
#define SLUICE_VERP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "spool.h"

struct config;

#define VERP_PREFIX      "bounce+"
#define VERP_PREFIX_LEN  7
#define VERP_MAC_BITS    64
#define VERP_MAC_CHARS   13          /* ceil(64 / 5) */
#define VERP_IDX_MAX     1048575     /* 4 base32 digits */
#define VERP_TOKEN_MAX   (QID_LEN + 4 + VERP_MAC_CHARS)
#define VERP_KEY_MIN     16          /* bytes of secret */
#define VERP_KEY_MAX     4096
#define VERP_EXPIRE_DEFAULT (14LL * 86400000)   /* verp-expire when there is no config */

struct verp_token {
	char qid[QID_LEN + 1];
	uint32_t idx;
};

/* Read and check a key file (regular, not world-readable or -writable,
 * VERP_KEY_MIN..VERP_KEY_MAX bytes). Returns a malloc'd copy of the bytes,
 * or NULL with err set. */
uint8_t *verp_key_load(const char *path, size_t *len, char *err, size_t errlen);

/* The token for (qid, idx); out holds VERP_TOKEN_MAX + 1. Returns its
 * length, 0 for an id that is not a queue id or an index out of range. */
size_t verp_token(const uint8_t *key, size_t klen, const char *qid, uint32_t idx, char *out);
/* Check a local part. 1: a valid token (t filled); 0: not a VERP local
 * part (no "bounce+" prefix); -1: the prefix with a malformed, altered or
 * forged token. */
int verp_check(const uint8_t *key, size_t klen, const char *local, size_t len,
    struct verp_token *t);

/* Whether the config sends with VERP and a message with this sender and
 * MF_* flags gets it: not for the null sender, not for DSNs sluice made. */
bool verp_applies(const struct config *c, const char *sender, uint32_t flags);
/* "bounce+TOKEN@domain" into out (cap >= 128). Returns false when c has
 * no VERP or the id/index cannot be encoded. */
bool verp_address(const struct config *c, const char *qid, uint32_t idx, char *out, size_t cap);

/* Is addr at c's bounce domain? (*local, *llen: its local part.) */
bool verp_is_bounce_domain(const struct config *c, const char *addr, const char **local,
    size_t *llen);
/* Is addr one of c's fbl-address lines? */
bool verp_is_fbl(const struct config *c, const char *addr);

/* What sluice remembers of a send (DB_VERP). Strings are "" when unknown. */
struct verp_send {
	int64_t time;                  /* ms: when it was delivered */
	char rcpt[321];
	char sender[321];
	char campaign[256];
	char message_id[256];
	char pool[128];
};
/* Queue the record of a delivery (store writer; on any thread). Also
 * queues a bounded sweep of expired records now and then. */
void verp_record(const char *qid, uint32_t idx, const struct verp_send *s);
/* 1 found, 0 not (never recorded or expired), -1 store error. */
int verp_lookup(const char *qid, uint32_t idx, struct verp_send *s);
/* Serialisation of a record (unit tests). */
size_t verp_send_encode(const struct verp_send *s, uint8_t *buf, size_t cap);
bool verp_send_decode(const uint8_t *buf, size_t len, struct verp_send *s);
/* Delete up to max records of messages that arrived before cutoff_ms, in
 * the writer's transaction (verp_record queues it; tests call it). Returns
 * the number deleted, or < 0 for an LMDB error. */
int verp_expire_txn(MDB_txn *txn, int64_t cutoff_ms, int max);

#endif
