/*
 * tls: OpenSSL contexts. Server contexts per listener (cert/key from the
 * config, TLS >= 1.2); the client context for STARTTLS to remote MXs
 * (opportunistic: no verification; verify: chain against the system CA
 * store plus the PEM bundle named by $SLUICE_CA_FILE, when set; the caller
 * sets the expected host name per connection with SSL_set1_host()).
 */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/ssl.h>

SSL_CTX *tls_server_ctx(const char *cert, const char *key, char *err, size_t errlen);
SSL_CTX *tls_client_ctx(bool verify, char *err, size_t errlen);
/* Short description of an error queue entry for logs/replies (clears the
 * queue; per-thread buffer). */
const char *tls_error_string(void);
/* "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384" for Received: and logs. */
void tls_describe(const SSL *ssl, char *buf, size_t len);

#endif
