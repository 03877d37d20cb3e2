/*
 * dkim: DKIM-Signature headers for outgoing mail (RFC 6376), rsa-sha256
 * and ed25519-sha256 (RFC 8463), relaxed/relaxed, every selector of the
 * signing domain(s) at once.
 *
 * Why not libopendkim: it takes the private key as a text buffer in every
 * dkim_sign() call and parses it again for every message. Measured here
 * with OpenSSL 3.0 (RSA-2048, 4 KB message): libopendkim 840 us/message,
 * of which the key parse and set-up is ~600 us and the RSA operation
 * ~230 us. At 3000 msg/s that alone would need 2.5 cores. So keys are
 * parsed once at config load into an EVP_PKEY, and signing is done here:
 * one pass over the body (un-stuffing, relaxed canonicalisation and
 * SHA-256 together, no copy of the body), the body hash and the
 * canonicalised signed header fields shared by all signatures of the
 * message, then per signature a hash over those fields and its own
 * header, and one private-key operation. libopendkim and dkimpy verify the
 * result in the tests (tests/unit/test_dkim.c, tests/integration).
 *
 * What is left besides the private-key operation is kept small
 * (tests/bench/dkim-bench.c measures it): OpenSSL 3 makes a signing
 * context per call costly (a method fetch, a provider context, parameter
 * round trips, a digest fetch inside set_signature_md), so each key keeps
 * prepared contexts and reuses them; the digest context and the buffers of
 * a signing call are reused too. RSA blinding stays on: it lives in the
 * key, not in the context.
 *
 * Thread safety: a key never changes after load except for its list of
 * idle signing contexts (under the key's lock). A context or a call's
 * state is used by one thread at a time: a call takes one from an idle
 * list, or makes one, and gives it back when done. So any number of
 * job-pool threads may sign concurrently with the same config, and no more
 * contexts are ever made than there were concurrent signers.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "conf.h"
#include "dkim.h"
#include "util.h"

#define KEYFILE_MAX   (64 * 1024)
#define RSA_MIN_BITS  1024
#define HEADERS_MAX   (1024 * 1024)   /* header block bytes we are willing to index */
#define FOLD_COL      76

const char *const dkim_sign_headers[] = {
	"From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "List-Unsubscribe", "List-Unsubscribe-Post",
	"List-Id", "Feedback-ID", NULL
};

const char *const dkim_oversign_headers[] = {
	"From", "Subject", "List-Unsubscribe", "List-Unsubscribe-Post", NULL
};

int64_t dkim_fixed_time;

/* A prepared private-key context; see the top of the file. */
struct signer {
	struct signer *next;
	EVP_PKEY_CTX *pc;              /* RSA: sign_init'ed, PKCS#1 v1.5, SHA-256 */
	EVP_MD_CTX *md;                /* Ed25519: initialised again per signature */
};

struct dkim_key {
	enum dkim_alg alg;
	EVP_PKEY *pkey;
	int bits;
	char *pub;                     /* p= value: base64 */
	pthread_mutex_t lock;          /* idle, made */
	struct signer *idle;
	int made;                      /* signers made, for the tests */
};

static EVP_MD *sha256;
/* For each of dkim_sign_headers: its length, and whether it is over-signed. */
static size_t sign_header_len[ARRAY_SIZE(dkim_sign_headers)];
static bool sign_header_over[ARRAY_SIZE(dkim_sign_headers)];
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void
init_md(void)
{
	/* Fetched once: EVP_sha256() would do an implicit fetch per use. */
	sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	for (size_t i = 0; dkim_sign_headers[i] != NULL; i++) {
		sign_header_len[i] = strlen(dkim_sign_headers[i]);
		for (const char *const *o = dkim_oversign_headers; *o; o++)
			if (strcasecmp(*o, dkim_sign_headers[i]) == 0)
				sign_header_over[i] = true;
	}
}

int
dkim_init(void)
{
	pthread_once(&init_once, init_md);
	return sha256 ? 0 : -1;
}

static void works_free(void);

void
dkim_shutdown(void)
{
	/* The digest stays for the life of the process (pthread_once). */
	works_free();
}


static char *
b64(const unsigned char *p, size_t n)
{
	char *out = xmalloc(4 * ((n + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	return out;
}

/* Strict base64 decode ignoring whitespace. Returns length or -1. */
static int
unb64(const char *s, size_t n, unsigned char **out)
{
	char *clean = xmalloc(n + 1);
	size_t m = 0, pad = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (isspace(ch))
			continue;
		if (!isalnum(ch) && ch != '+' && ch != '/' && ch != '=') {
			free(clean);
			return -1;
		}
		clean[m++] = (char)ch;
	}
	if (m == 0 || m % 4 != 0) {
		free(clean);
		return -1;
	}
	if (clean[m - 1] == '=')
		pad++;
	if (clean[m - 2] == '=')
		pad++;
	*out = xmalloc(m / 4 * 3);
	int r = EVP_DecodeBlock(*out, (unsigned char *)clean, (int)m);
	free(clean);
	if (r < 0) {
		free(*out);
		*out = NULL;
		return -1;
	}
	return r - (int)pad;
}

static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf; (void)size; (void)rwflag; (void)u;
	return -1;   /* never prompt on a terminal for an encrypted key */
}

/* PEM (PKCS#1 or PKCS#8), base64 raw Ed25519 seed, base64 DER, or DER. */
static EVP_PKEY *
parse_key(const char *buf, size_t len)
{
	EVP_PKEY *pk = NULL;
	size_t i = 0;

	while (i < len && isspace((unsigned char)buf[i]))
		i++;
	if (len - i >= 10 && memcmp(buf + i, "-----BEGIN", 10) == 0) {
		BIO *bio = BIO_new_mem_buf(buf + i, (int)(len - i));
		if (bio == NULL)
			return NULL;
		pk = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
		BIO_free(bio);
		return pk;
	}

	unsigned char *der = NULL;
	int n = unb64(buf + i, len - i, &der);
	if (n == 32) {
		/* RFC 8463 tools (opendkim-genkey, dknewkey) write the seed. */
		pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, der, 32);
	} else if (n > 0) {
		const unsigned char *q = der;
		pk = d2i_AutoPrivateKey(NULL, &q, n);
	} else {
		const unsigned char *q = (const unsigned char *)buf;
		pk = d2i_AutoPrivateKey(NULL, &q, (long)len);
	}
	free(der);
	return pk;
}

static void
signer_free(struct signer *s)
{
	EVP_PKEY_CTX_free(s->pc);
	EVP_MD_CTX_free(s->md);
	free(s);
}

static struct signer *
signer_new(const struct dkim_key *k)
{
	struct signer *s = xcalloc(1, sizeof(*s));

	if (k->alg == DKIM_ED25519) {
		if ((s->md = EVP_MD_CTX_new()) != NULL)
			return s;
	} else if ((s->pc = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL)) != NULL &&
	    EVP_PKEY_sign_init(s->pc) == 1 &&
	    EVP_PKEY_CTX_set_rsa_padding(s->pc, RSA_PKCS1_PADDING) == 1 &&
	    EVP_PKEY_CTX_set_signature_md(s->pc, sha256) == 1)
		return s;
	signer_free(s);
	return NULL;
}

/* digest (SHA-256, 32 bytes) -> signature. Returns length or -1. */
static int
sign_digest(struct dkim_key *k, const unsigned char *dig,
    unsigned char *sig, size_t siglen)
{
	struct signer *s;
	size_t n = siglen;
	int ok;

	pthread_mutex_lock(&k->lock);
	if ((s = k->idle) != NULL)
		k->idle = s->next;
	pthread_mutex_unlock(&k->lock);
	if (s == NULL) {
		if ((s = signer_new(k)) == NULL) {
			ERR_clear_error();
			return -1;
		}
		pthread_mutex_lock(&k->lock);
		k->made++;
		pthread_mutex_unlock(&k->lock);
	}
	if (k->alg == DKIM_ED25519) {
		/* RFC 8463: PureEdDSA over the SHA-256 hash, not the data.
		 * A one-shot EVP_DigestSign() ends the operation: init each time. */
		ok = EVP_DigestSignInit_ex(s->md, NULL, NULL, NULL, NULL, k->pkey, NULL) == 1 &&
		    EVP_DigestSign(s->md, sig, &n, dig, 32) == 1;
	} else {
		ok = EVP_PKEY_sign(s->pc, sig, &n, dig, 32) == 1;
	}
	if (ok) {
		pthread_mutex_lock(&k->lock);
		s->next = k->idle;
		k->idle = s;
		pthread_mutex_unlock(&k->lock);
	} else {
		signer_free(s);   /* in an unknown state after a failure */
	}
	ERR_clear_error();
	return ok ? (int)n : -1;
}

static bool
verify_digest(const struct dkim_key *k, const unsigned char *dig,
    const unsigned char *sig, size_t siglen)
{
	int ok = 0;

	if (k->alg == DKIM_ED25519) {
		EVP_MD_CTX *m = EVP_MD_CTX_new();
		if (m == NULL)
			return false;
		ok = EVP_DigestVerifyInit_ex(m, NULL, NULL, NULL, NULL, k->pkey, NULL) == 1 &&
		    EVP_DigestVerify(m, sig, siglen, dig, 32) == 1;
		EVP_MD_CTX_free(m);
	} else {
		EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
		if (pc == NULL)
			return false;
		ok = EVP_PKEY_verify_init(pc) == 1 &&
		    EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1 &&
		    EVP_PKEY_CTX_set_signature_md(pc, sha256) == 1 &&
		    EVP_PKEY_verify(pc, sig, siglen, dig, 32) == 1;
		EVP_PKEY_CTX_free(pc);
	}
	ERR_clear_error();
	return ok;
}

static void
key_destroy(struct dkim_key *k)
{
	if (k == NULL)
		return;
	while (k->idle != NULL) {
		struct signer *s = k->idle;
		k->idle = s->next;
		signer_free(s);
	}
	pthread_mutex_destroy(&k->lock);
	EVP_PKEY_free(k->pkey);
	free(k->pub);
	free(k);
}

int
dkim_key_load(struct dkim_selector *sel, char *err, size_t errlen)
{
	struct dkim_key *k = NULL;
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	int fd = -1;

	if (dkim_init() < 0) {
		snprintf(err, errlen, "SHA-256 is not available from OpenSSL");
		return -1;
	}
	dkim_key_free(sel);
	if (sel->keyfile == NULL || sel->keyfile[0] == '\0') {
		snprintf(err, errlen, "no key file");
		return -1;
	}
	/* open, then fstat: the checks apply to the file actually read */
	if ((fd = open(sel->keyfile, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
		snprintf(err, errlen, "key %s: %s", sel->keyfile, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "key %s: %s", sel->keyfile, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "key %s: not a regular file", sel->keyfile);
		goto fail;
	}
	if (st.st_mode & (S_IROTH | S_IWOTH)) {
		snprintf(err, errlen, "key %s: is world-%s (mode %03o); chmod 600 it",
		    sel->keyfile, (st.st_mode & S_IROTH) ? "readable" : "writable",
		    (unsigned)(st.st_mode & 0777));
		goto fail;
	}
	if (st.st_size <= 0 || st.st_size > KEYFILE_MAX) {
		snprintf(err, errlen, "key %s: %s", sel->keyfile,
		    st.st_size <= 0 ? "empty file" : "too large for a key");
		goto fail;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	while (len < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + len, (size_t)st.st_size - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "key %s: %s", sel->keyfile, strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	close(fd);
	fd = -1;

	k = xcalloc(1, sizeof(*k));
	pthread_mutex_init(&k->lock, NULL);
	k->pkey = parse_key(buf, len);
	OPENSSL_cleanse(buf, len);
	ERR_clear_error();
	if (k->pkey == NULL) {
		snprintf(err, errlen, "key %s: not a private key (PEM, DER or base64 Ed25519 seed; "
		    "encrypted keys are not supported)", sel->keyfile);
		goto fail;
	}
	switch (EVP_PKEY_get_base_id(k->pkey)) {
	case EVP_PKEY_RSA:
		k->alg = DKIM_RSA;
		break;
	case EVP_PKEY_ED25519:
		k->alg = DKIM_ED25519;
		break;
	default:
		snprintf(err, errlen, "key %s: unsupported key type %s (need RSA or Ed25519)",
		    sel->keyfile, OBJ_nid2sn(EVP_PKEY_get_base_id(k->pkey)));
		goto fail;
	}
	if (k->alg != sel->alg) {
		snprintf(err, errlen, "key %s is %s but the selector says %s", sel->keyfile,
		    k->alg == DKIM_RSA ? "rsa" : "ed25519",
		    sel->alg == DKIM_RSA ? "rsa" : "ed25519");
		goto fail;
	}
	k->bits = EVP_PKEY_get_bits(k->pkey);
	if (k->alg == DKIM_RSA && k->bits < RSA_MIN_BITS) {
		snprintf(err, errlen, "key %s: RSA key of %d bits is too short (minimum %d, use 2048)",
		    sel->keyfile, k->bits, RSA_MIN_BITS);
		goto fail;
	}

	if (k->alg == DKIM_RSA) {
		unsigned char *der = NULL;
		int n = i2d_PUBKEY(k->pkey, &der);   /* SubjectPublicKeyInfo */
		if (n <= 0) {
			snprintf(err, errlen, "key %s: cannot derive the public key", sel->keyfile);
			goto fail;
		}
		k->pub = b64(der, (size_t)n);
		OPENSSL_free(der);
	} else {
		unsigned char raw[32];
		size_t n = sizeof(raw);
		if (EVP_PKEY_get_raw_public_key(k->pkey, raw, &n) != 1 || n != 32) {
			snprintf(err, errlen, "key %s: cannot derive the public key", sel->keyfile);
			goto fail;
		}
		k->pub = b64(raw, n);
	}

	/* A key that cannot sign, or whose halves disagree, fails here, not per
	 * message; and the first signing context is ready for the first message. */
	unsigned char dig[32], sig[1024];
	memset(dig, 0x5a, sizeof(dig));
	int sl = sign_digest(k, dig, sig, sizeof(sig));
	if (sl < 0 || !verify_digest(k, dig, sig, (size_t)sl)) {
		snprintf(err, errlen, "key %s: test signature failed (damaged key?)", sel->keyfile);
		goto fail;
	}
	ERR_clear_error();
	free(buf);
	sel->key = k;
	return 0;

fail:
	ERR_clear_error();
	if (fd >= 0)
		close(fd);
	free(buf);
	key_destroy(k);
	return -1;
}

void
dkim_key_free(struct dkim_selector *sel)
{
	key_destroy(sel->key);
	sel->key = NULL;
}

int
dkim_key_contexts(const struct dkim_selector *sel)
{
	struct dkim_key *k = sel->key;
	int n;

	if (k == NULL)
		return 0;
	pthread_mutex_lock(&k->lock);
	n = k->made;
	pthread_mutex_unlock(&k->lock);
	return n;
}

const char *
dkim_key_public(const struct dkim_selector *sel)
{
	const struct dkim_key *k = sel->key;
	return k ? k->pub : NULL;
}

char *
dkim_txt_record(const struct dkim_selector *sel)
{
	const struct dkim_key *k = sel->key;
	if (k == NULL)
		return NULL;
	return xasprintf("v=DKIM1; k=%s; p=%s", k->alg == DKIM_RSA ? "rsa" : "ed25519", k->pub);
}

/*
 * Input: the iovec as one byte stream, with SMTP dot un-stuffing applied.
 * A line consisting of a single "." is the terminator and ends the input.
 */
struct src {
	const struct iovec *iov;
	int n, i;
	size_t off;
	bool line_start, dot, eof;
};

/* A header field inside the header block: text without its final CRLF. */
struct field {
	const char *p;
	size_t len;
	size_t namelen;                /* 0: no colon, not a field */
	int hn;                        /* index in dkim_sign_headers, or -1 */
};

/*
 * The state of one signing call, kept for the next one: the digest context
 * and buffers that grow to the size of a message's headers once, instead
 * of at every message.
 */
struct work {
	struct work *next;
	EVP_MD_CTX *md;                /* SHA-256: the body, then each signature */
	struct sbuf hdr;               /* un-stuffed header block */
	struct field *f;
	int nf, capf;
	struct sbuf signed_fields;     /* canonicalised fields named in h=, in h= order */
	struct sbuf hlist;             /* the h= value, folded */
	struct sbuf canon;             /* a signature header, canonicalised */
	char bh[48];                   /* body hash, base64 */
};

/* Buffers larger than this are not kept for the next call. */
#define WORK_KEEP     (64 * 1024)

static pthread_mutex_t works_lock = PTHREAD_MUTEX_INITIALIZER;
static struct work *works_idle;

static void
work_destroy(struct work *w)
{
	EVP_MD_CTX_free(w->md);
	free(w->hdr.p);
	free(w->f);
	free(w->signed_fields.p);
	free(w->hlist.p);
	free(w->canon.p);
	free(w);
}

static struct work *
work_get(void)
{
	struct work *w;

	pthread_mutex_lock(&works_lock);
	if ((w = works_idle) != NULL)
		works_idle = w->next;
	pthread_mutex_unlock(&works_lock);
	if (w == NULL) {
		w = xcalloc(1, sizeof(*w));
		if ((w->md = EVP_MD_CTX_new()) == NULL) {
			work_destroy(w);
			return NULL;
		}
	}
	w->hdr.len = w->signed_fields.len = w->hlist.len = w->canon.len = 0;
	w->nf = 0;
	return w;
}

static void
sb_trim(struct sbuf *b)
{
	if (b->cap > WORK_KEEP) {
		free(b->p);
		memset(b, 0, sizeof(*b));
	}
}

static void
work_put(struct work *w)
{
	sb_trim(&w->hdr);
	sb_trim(&w->signed_fields);
	sb_trim(&w->hlist);
	sb_trim(&w->canon);
	if ((size_t)w->capf * sizeof(*w->f) > WORK_KEEP) {
		free(w->f);
		w->f = NULL;
		w->capf = 0;
	}
	pthread_mutex_lock(&works_lock);
	w->next = works_idle;
	works_idle = w;
	pthread_mutex_unlock(&works_lock);
}

static void
works_free(void)
{
	pthread_mutex_lock(&works_lock);
	while (works_idle != NULL) {
		struct work *w = works_idle;
		works_idle = w->next;
		work_destroy(w);
	}
	pthread_mutex_unlock(&works_lock);
}

static void
add_field(struct work *w, const char *p, size_t len)
{
	while (len > 0 && (p[len - 1] == '\r' || p[len - 1] == '\n'))
		len--;
	if (w->nf == w->capf) {
		w->capf = w->capf ? w->capf * 2 : 32;
		w->f = xrealloc(w->f, (size_t)w->capf * sizeof(*w->f));
	}
	struct field *f = &w->f[w->nf++];
	const char *colon = memchr(p, ':', len);
	f->p = p;
	f->len = len;
	f->namelen = 0;
	f->hn = -1;
	if (colon == NULL)
		return;
	size_t nl = (size_t)(colon - p);
	while (nl > 0 && (p[nl - 1] == ' ' || p[nl - 1] == '\t'))
		nl--;
	f->namelen = nl;
	for (int i = 0; dkim_sign_headers[i] != NULL; i++)
		if (sign_header_len[i] == nl && strncasecmp(p, dkim_sign_headers[i], nl) == 0) {
			f->hn = i;
			break;
		}
}

/*
 * Read the header block up to the empty line (un-stuffed, copied a line at
 * a time); index its fields.
 */
static int
read_headers(struct src *s, struct work *w, char *err, size_t errlen)
{
	size_t line = 0;

	for (; !s->eof && s->i < s->n; s->i++, s->off = 0) {
		const char *base = s->iov[s->i].iov_base;
		size_t len = s->iov[s->i].iov_len;

		while (s->off < len) {
			char ch = base[s->off];
			if (s->line_start) {
				s->line_start = false;
				if (ch == '.') {
					s->dot = true;
					s->off++;
					continue;
				}
			}
			if (s->dot) {
				s->dot = false;
				if (ch == '\r' || ch == '\n') {
					s->eof = true;   /* "." line: the terminator */
					goto fields;
				}
			}
			const char *nl = memchr(base + s->off, '\n', len - s->off);
			size_t n = nl ? (size_t)(nl - base) + 1 - s->off : len - s->off;
			sb_add(&w->hdr, base + s->off, n);
			s->off += n;
			if (nl == NULL)
				break;               /* the line goes on in the next piece */
			s->line_start = true;
			size_t ll = w->hdr.len - line;
			if (ll == 1 || (ll == 2 && w->hdr.p[line] == '\r')) {
				w->hdr.len = line;   /* the empty line is not part of a field */
				goto fields;
			}
			line = w->hdr.len;
			if (w->hdr.len > HEADERS_MAX) {
				snprintf(err, errlen, "header block larger than %d bytes", HEADERS_MAX);
				return -1;
			}
		}
	}
	s->eof = true;   /* a lone trailing "." is the terminator too */

fields:
	/* fields: a line starting with WSP continues the previous one */
	if (w->hdr.len == 0)
		return 0;
	const char *p = w->hdr.p, *end = p + w->hdr.len, *start = p;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *next = nl ? nl + 1 : end;
		if (next < end && (*next == ' ' || *next == '\t')) {
			p = next;
			continue;
		}
		add_field(w, start, (size_t)(next - start));
		start = p = next;
	}
	return 0;
}

/*
 * Relaxed body canonicalisation (RFC 6376 3.4.4) streamed into SHA-256:
 * WSP runs become one SP, WSP at line end goes, empty lines at the end go,
 * a last line without CRLF gets one.
 */
struct bodycanon {
	EVP_MD_CTX *md;
	size_t empty;                  /* empty lines seen but not yet emitted */
	bool wsp, content, cr;
	size_t olen;
	unsigned char out[8192];
};

static inline void
bc_put(struct bodycanon *b, const void *p, size_t n)
{
	if (b->olen + n > sizeof(b->out)) {
		EVP_DigestUpdate(b->md, b->out, b->olen);
		b->olen = 0;
		if (n >= sizeof(b->out)) {
			EVP_DigestUpdate(b->md, p, n);
			return;
		}
	}
	memcpy(b->out + b->olen, p, n);
	b->olen += n;
}

static inline void
bc_char(struct bodycanon *b, int ch)
{
	while (b->empty > 0) {
		bc_put(b, "\r\n", 2);
		b->empty--;
	}
	if (b->wsp) {
		bc_put(b, " ", 1);
		b->wsp = false;
	}
	if (b->olen == sizeof(b->out)) {
		EVP_DigestUpdate(b->md, b->out, b->olen);
		b->olen = 0;
	}
	b->out[b->olen++] = (unsigned char)ch;
	b->content = true;
}

static inline void
bc_eol(struct bodycanon *b)
{
	if (b->content)
		bc_put(b, "\r\n", 2);
	else
		b->empty++;
	b->content = b->wsp = false;
}

/* Bytes that need a decision in the body; all others are copied in runs. */
static const unsigned char body_special[256] = {
	['\t'] = 1, ['\n'] = 1, ['\r'] = 1, [' '] = 1,
};

#define BYTES(b)      (0x0101010101010101ULL * (b))

/* 0x80 in each byte of x that is >= 0x21 (exact: no carry between bytes). */
static inline uint64_t
bytes_ge21(uint64_t x)
{
	return (((x & BYTES(0x7f)) + BYTES(0x80 - 0x21)) | x) & BYTES(0x80);
}

/* 0x80 in each byte of x that is zero (exact). */
static inline uint64_t
bytes_zero(uint64_t x)
{
	return ~(((x & BYTES(0x7f)) + BYTES(0x7f)) | x) & BYTES(0x80);
}

/*
 * The end of the run of bytes starting at p that canonicalisation leaves
 * as they are: bytes that are not special, and a single SP between two of
 * them. Eight bytes at a time while each is >= 0x21 (all the special bytes
 * are below) or an SP followed by one; the rest byte by byte.
 */
static inline const unsigned char *
body_run(const unsigned char *p, const unsigned char *end)
{
	for (;;) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
		while (end - p > 8) {
			uint64_t x, next, bad;
			memcpy(&x, p, 8);
			memcpy(&next, p + 1, 8);
			bad = ~bytes_ge21(x) & BYTES(0x80) &
			    ~(bytes_zero(x ^ BYTES(' ')) & bytes_ge21(next));
			if (bad != 0) {
				p += __builtin_ctzll(bad) / 8;
				break;
			}
			p += 8;
		}
#endif
		if (p < end && !body_special[*p])
			p++;
		else if (p + 1 < end && *p == ' ' && !body_special[p[1]])
			p += 2;
		else
			return p;
	}
}

/* The rest of the input after the header block; the same rules as read_headers(). */
static int
hash_body(struct src *s, struct work *w)
{
	struct bodycanon b = { .md = w->md };
	unsigned int n = 0;

	if (EVP_DigestInit_ex2(b.md, sha256, NULL) != 1)
		return -1;
	for (; !s->eof && s->i < s->n; s->i++, s->off = 0) {
		const unsigned char *p = (const unsigned char *)s->iov[s->i].iov_base + s->off;
		const unsigned char *end = (const unsigned char *)s->iov[s->i].iov_base +
		    s->iov[s->i].iov_len;
		while (p < end) {
			unsigned char ch = *p;
			if (s->line_start) {
				s->line_start = false;
				if (ch == '.') {
					s->dot = true;
					p++;
					continue;
				}
			}
			if (s->dot) {
				s->dot = false;
				if (ch == '\r' || ch == '\n') {
					s->eof = true;   /* "." line: the terminator */
					break;
				}
			}
			if (b.cr) {
				b.cr = false;
				if (ch != '\n')
					bc_char(&b, '\r');   /* a bare CR is data */
			}
			if (!body_special[ch]) {
				const unsigned char *q = body_run(p + 1, end);
				bc_char(&b, ch);
				if (q > p + 1)
					bc_put(&b, p + 1, (size_t)(q - p - 1));
				p = q;
				continue;
			}
			p++;
			switch (ch) {
			case '\r':
				b.cr = true;
				break;
			case '\n':
				bc_eol(&b);
				s->line_start = true;
				break;
			default:
				b.wsp = true;
			}
		}
	}
	s->eof = true;
	if (b.cr)
		bc_char(&b, '\r');
	if (b.content)
		bc_put(&b, "\r\n", 2);   /* the SMTP client adds the CRLF too */

	unsigned char bh[32];
	if (EVP_DigestUpdate(b.md, b.out, b.olen) != 1 ||
	    EVP_DigestFinal_ex(b.md, bh, &n) != 1 || n != 32)
		return -1;
	EVP_EncodeBlock((unsigned char *)w->bh, bh, 32);
	return 0;
}

/* Relaxed header canonicalisation (RFC 6376 3.4.2) of one field, appended to out. */
static void
canon_header(struct sbuf *out, const char *p, size_t len, size_t namelen, bool crlf)
{
	const char *colon = memchr(p + namelen, ':', len - namelen);
	bool wsp = false, started = false;

	sb_grow(out, len + 3);
	for (size_t i = 0; i < namelen; i++)
		out->p[out->len++] = (char)tolower((unsigned char)p[i]);
	out->p[out->len++] = ':';
	for (const char *q = colon + 1; q < p + len; q++) {
		switch (*q) {
		case '\r':
		case '\n':
			break;                /* unfold */
		case ' ':
		case '\t':
			wsp = started;
			break;
		default:
			if (wsp)
				out->p[out->len++] = ' ';
			wsp = false;
			started = true;
			out->p[out->len++] = *q;
		}
	}
	if (crlf) {
		out->p[out->len++] = '\r';
		out->p[out->len++] = '\n';
	}
	out->p[out->len] = '\0';
}

/* Append text to a header being folded at FOLD_COL; *col tracks the column. */
static void
fold_add(struct sbuf *b, size_t *col, const char *s, size_t n, bool may_break)
{
	if (may_break && *col + n > FOLD_COL) {
		sb_str(b, "\r\n\t");
		*col = 8;
	}
	sb_add(b, s, n);
	*col += n;
}

/*
 * The h= value and the canonicalised fields it names, the same for every
 * signature of the message: each listed name takes the next instance from
 * the bottom (RFC 6376 5.4.2); over-signed names are listed once more than
 * they occur, matching nothing, so that an added instance breaks the
 * signature.
 */
static void
signed_fields(struct work *w)
{
	size_t col = 10;               /* after "\t h=" */
	bool first = true;

	for (int hn = 0; dkim_sign_headers[hn] != NULL; hn++) {
		const char *name = dkim_sign_headers[hn];
		int count = 0;
		for (int i = 0; i < w->nf; i++)
			if (w->f[i].hn == hn)
				count++;
		int listed = count + (sign_header_over[hn] ? 1 : 0);
		for (int i = w->nf - 1, left = count; listed > 0; listed--) {
			char item[64];   /* ":Name": a fold goes before the colon */
			size_t il = first ? 0 : 1;
			item[0] = ':';
			memcpy(item + il, name, sign_header_len[hn]);
			il += sign_header_len[hn];
			fold_add(&w->hlist, &col, item, il, !first);
			first = false;
			if (left == 0)
				continue;
			while (w->f[i].hn != hn)
				i--;
			canon_header(&w->signed_fields, w->f[i].p, w->f[i].len, w->f[i].namelen, true);
			i--;
			left--;
		}
	}
}

/* One DKIM-Signature header for one selector, appended to out. */
static int
sign_one(struct work *w, const struct dkim_conf *dc, const struct dkim_selector *sel,
    int64_t t, struct sbuf *out, char *err, size_t errlen)
{
	struct dkim_key *k = sel->key;
	unsigned char dig[32], sig[1024];
	char b[4 * ((sizeof(sig) + 2) / 3) + 1];
	unsigned int dl = 0;
	size_t start = out->len, col;
	int sl;

	if (k == NULL) {
		snprintf(err, errlen, "dkim %s selector %s: key not loaded", dc->domain, sel->name);
		return -1;
	}
	sb_printf(out, "DKIM-Signature: v=1; a=%s; c=relaxed/relaxed; d=%s; s=%s;\r\n\tt=%lld;",
	    k->alg == DKIM_RSA ? "rsa-sha256" : "ed25519-sha256", dc->domain, sel->name,
	    (long long)t);
	if (dc->expire > 0)
		sb_printf(out, " x=%lld;", (long long)(t + (dc->expire + 999) / 1000));
	sb_printf(out, " bh=%s;\r\n\th=", w->bh);
	sb_add(out, w->hlist.p, w->hlist.len);
	sb_str(out, ";\r\n\tb=");

	/* the signed fields, then the signature header itself: b= empty, no trailing CRLF */
	w->canon.len = 0;
	canon_header(&w->canon, out->p + start, out->len - start, strlen("DKIM-Signature"), false);
	if (EVP_DigestInit_ex2(w->md, sha256, NULL) != 1 ||
	    EVP_DigestUpdate(w->md, w->signed_fields.p, w->signed_fields.len) != 1 ||
	    EVP_DigestUpdate(w->md, w->canon.p, w->canon.len) != 1 ||
	    EVP_DigestFinal_ex(w->md, dig, &dl) != 1 || dl != 32) {
		snprintf(err, errlen, "dkim: SHA-256 failed");
		return -1;
	}
	if ((sl = sign_digest(k, dig, sig, sizeof(sig))) < 0) {
		snprintf(err, errlen, "dkim %s selector %s: signing failed", dc->domain, sel->name);
		return -1;
	}
	size_t blen = (size_t)EVP_EncodeBlock((unsigned char *)b, sig, sl);
	col = 10;
	for (size_t off = 0; off < blen; ) {
		size_t n = MIN(blen - off, (size_t)(FOLD_COL - col));
		if (off > 0) {
			sb_str(out, "\r\n\t ");
			n = MIN(blen - off, (size_t)(FOLD_COL - 9));
		}
		sb_add(out, b + off, n);
		off += n;
	}
	sb_str(out, "\r\n");
	return 0;
}

char *
dkim_sign(const struct config *c, const char *domain, const char *extra_domain,
    const struct iovec *iov, int iovcnt, char *err, size_t errlen)
{
	const struct dkim_conf *dc[2] = { NULL, NULL };
	struct sbuf out = { 0 };
	struct src s = { .iov = iov, .n = iovcnt, .line_start = true };
	struct work *w;
	int ndc = 0, nsig = 0;

	if (dkim_init() < 0) {
		snprintf(err, errlen, "dkim: SHA-256 is not available");
		return NULL;
	}
	if (c != NULL && domain != NULL && (dc[0] = conf_dkim(c, domain)) != NULL)
		ndc++;
	if (c != NULL && extra_domain != NULL) {
		const struct dkim_conf *x = conf_dkim(c, extra_domain);
		if (x != NULL && x != dc[0])
			dc[ndc++] = x;
	}
	if (ndc == 0)
		return xstrdup("");
	if ((w = work_get()) == NULL) {
		snprintf(err, errlen, "dkim: SHA-256 init failed");
		return NULL;
	}

	if (read_headers(&s, w, err, errlen) < 0)
		goto fail;
	/* The body hash and the signed fields do not depend on the key: once
	 * for all signatures. */
	if (hash_body(&s, w) < 0) {
		snprintf(err, errlen, "dkim: SHA-256 failed");
		goto fail;
	}
	signed_fields(w);
	int64_t t = dkim_fixed_time ? dkim_fixed_time : (int64_t)time(NULL);
	for (int d = 0; d < ndc; d++)
		nsig += dc[d]->nsel;
	sb_grow(&out, (size_t)nsig * (640 + w->hlist.len));
	out.p[0] = '\0';
	for (int d = 0; d < ndc; d++)
		for (int i = 0; i < dc[d]->nsel; i++)
			if (sign_one(w, dc[d], &dc[d]->sel[i], t, &out, err, errlen) < 0)
				goto fail;
	work_put(w);
	return out.p;

fail:
	work_put(w);
	free(out.p);
	return NULL;
}
