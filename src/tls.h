/*
 * tls: OpenSSL contexts. Server contexts per listener (cert/key from the
 * config, TLS >= 1.2); the client context for STARTTLS to remote MXs
 * (opportunistic: no verification; verify: chain + hostname).
 */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H

#include <openssl/ssl.h>

SSL_CTX *tls_server_ctx(const char *cert, const char *key, char *err, size_t errlen);
SSL_CTX *tls_client_ctx(bool verify, char *err, size_t errlen);
/* Short description of an error queue entry for logs/replies. */
const char *tls_error_string(void);

#endif
