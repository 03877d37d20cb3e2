/*
 * tls: the OpenSSL contexts of sluice. Both sides refuse anything older than
 * TLS 1.2, compression and renegotiation. A server context is built per
 * listener at load and on reload (a bad certificate keeps the old one); its
 * private key must not be readable by other users. The client context
 * verifies only in verify mode: opportunistic TLS to an MX with a
 * self-signed certificate is still better than plain text.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls.h"

static __thread char tls_errbuf[256];

const char *
tls_error_string(void)
{
	unsigned long e = ERR_get_error();

	if (e == 0)
		return "unknown TLS error";
	ERR_error_string_n(e, tls_errbuf, sizeof(tls_errbuf));
	ERR_clear_error();
	return tls_errbuf;
}

static void
common_options(SSL_CTX *ctx)
{
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
}

SSL_CTX *
tls_server_ctx(const char *cert, const char *key, char *err, size_t errlen)
{
	SSL_CTX *ctx;
	struct stat st;

	if (!cert || !key) {
		snprintf(err, errlen, "tls-certificate and tls-key go together");
		return NULL;
	}
	if (stat(key, &st) == -1) {
		snprintf(err, errlen, "%s: %s", key, strerror(errno));
		return NULL;
	}
	if (st.st_mode & S_IROTH) {
		snprintf(err, errlen, "%s: private key is readable by other users (chmod o-r)", key);
		return NULL;
	}
	ERR_clear_error();
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		snprintf(err, errlen, "SSL_CTX_new: %s", tls_error_string());
		return NULL;
	}
	common_options(ctx);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		snprintf(err, errlen, "%s: %s", cert, tls_error_string());
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		snprintf(err, errlen, "%s: %s", key, tls_error_string());
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "%s does not match %s", key, cert);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *
tls_client_ctx(bool verify, char *err, size_t errlen)
{
	SSL_CTX *ctx;
	const char *cafile = getenv("SLUICE_CA_FILE");

	ERR_clear_error();
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		snprintf(err, errlen, "SSL_CTX_new: %s", tls_error_string());
		return NULL;
	}
	common_options(ctx);
	if (!verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		return ctx;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		snprintf(err, errlen, "system CA store: %s", tls_error_string());
		goto fail;
	}
	if (cafile && *cafile && SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1) {
		snprintf(err, errlen, "SLUICE_CA_FILE %s: %s", cafile, tls_error_string());
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

void
tls_describe(const SSL *ssl, char *buf, size_t len)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);

	snprintf(buf, len, "%s with cipher %s", SSL_get_version(ssl),
	    c ? SSL_CIPHER_get_name(c) : "unknown");
}
