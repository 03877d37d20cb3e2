/*
 * dkim: signing with libopendkim, rsa-sha256 and ed25519-sha256,
 * relaxed/relaxed, once per message at injection. Keys are loaded and
 * checked at config load (missing, unreadable, malformed, short, or
 * world-readable key = config error).
 */
#ifndef SLUICE_DKIM_H
#define SLUICE_DKIM_H

#include <stddef.h>
#include <sys/uio.h>
#include "conf.h"

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
 */
char *dkim_sign(const struct config *c, const char *domain, const char *extra_domain,
    const struct iovec *iov, int iovcnt, char *err, size_t errlen);

/* The signed header list (exposed for tests). */
extern const char *const dkim_sign_headers[];

/* The DNS TXT record for a key ("v=DKIM1; k=rsa; p=..."). malloc'd. */
char *dkim_txt_record(const struct dkim_selector *sel);

#endif
