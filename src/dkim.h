/*
 * dkim: DKIM signing (RFC 6376), rsa-sha256 and ed25519-sha256 (RFC 8463),
 * relaxed/relaxed, once per message at injection. Keys are loaded, parsed
 * and checked once at config load (missing, unreadable, malformed, short,
 * wrong algorithm or world-accessible key = config error); signing never
 * touches the file system and is safe from any number of threads. Each key
 * keeps its prepared signing contexts, one per concurrent signer, until
 * dkim_key_free(); dkim_shutdown() frees the state kept between calls.
 *
 * libopendkim exports dkim_init() and dkim_sign() with other prototypes;
 * ours are renamed by the macros below so that a program (the unit tests)
 * can use both, and so that neither can interpose the other at link time.
 */
#ifndef SLUICE_DKIM_H
#define SLUICE_DKIM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include "conf.h"

#define dkim_init sluice_dkim_init
#define dkim_sign sluice_dkim_sign

/* Once at startup, before any other call; 0 or -1. */
int dkim_init(void);
void dkim_shutdown(void);

/* Load and check sel->keyfile into sel->key. 0, or -1 with err. */
int dkim_key_load(struct dkim_selector *sel, char *err, size_t errlen);
void dkim_key_free(struct dkim_selector *sel);

/*
 * Sign a message given in wire form (CRLF, dot-stuffed) as iov pieces:
 * header block, blank line, body. Signs with every selector of the dkim
 * block of `domain` (the From domain) and, if not NULL and different, of
 * `extra_domain`. Returns a malloc'd block of DKIM-Signature header lines
 * (folded, each ending in CRLF) to put before the headers, "" when no key
 * applies, or NULL on error (err set).
 * A line "." ends the input (the SMTP terminator may be included or not).
 */
char *dkim_sign(const struct config *c, const char *domain, const char *extra_domain,
    const struct iovec *iov, int iovcnt, char *err, size_t errlen);

/* The signed header list (exposed for tests), NULL-terminated. */
extern const char *const dkim_sign_headers[];
/* The subset listed once more than present, so none can be added. */
extern const char *const dkim_oversign_headers[];

/* The DNS TXT record for a key ("v=DKIM1; k=rsa; p=..."). malloc'd. */
char *dkim_txt_record(const struct dkim_selector *sel);
/* The p= value alone (base64), owned by the key. */
const char *dkim_key_public(const struct dkim_selector *sel);
/* Tests: how many signing contexts the key has made (one per thread that
 * signed at the same time as another, not one per message). */
int dkim_key_contexts(const struct dkim_selector *sel);

/* Tests: sign with this t= (seconds) instead of the clock when non-zero. */
extern int64_t dkim_fixed_time;

#endif
