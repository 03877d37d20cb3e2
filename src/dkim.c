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
 * SHA-256 together, no copy of the body), the body hash shared by all
 * signatures of the message, then per signature a hash over a few header
 * fields and one private-key operation. libopendkim and dkimpy verify the
 * result in the tests (tests/unit/test_dkim.c, tests/integration).
 *
 * Thread safety: keys are immutable after load; each call has its own
 * digest and signing contexts, so any number of job-pool threads may sign
 * concurrently with the same config.
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

struct dkim_key {
	enum dkim_alg alg;
	EVP_PKEY *pkey;
	int bits;
	char *pub;                     /* p= value: base64 */
};

static EVP_MD *sha256;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void
init_md(void)
{
	/* Fetched once: EVP_sha256() would do an implicit fetch per use. */
	sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

int
dkim_init(void)
{
	pthread_once(&init_once, init_md);
	return sha256 ? 0 : -1;
}

void
dkim_shutdown(void)
{
	/* The digest stays for the life of the process (pthread_once). */
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

/* digest (SHA-256, 32 bytes) -> signature. Returns length or -1. */
static int
sign_digest(const struct dkim_key *k, const unsigned char *dig,
    unsigned char *sig, size_t siglen)
{
	size_t n = siglen;
	int ok = 0;

	if (k->alg == DKIM_ED25519) {
		/* RFC 8463: PureEdDSA over the SHA-256 hash, not the data. */
		EVP_MD_CTX *m = EVP_MD_CTX_new();
		if (m == NULL)
			return -1;
		ok = EVP_DigestSignInit_ex(m, NULL, NULL, NULL, NULL, k->pkey, NULL) == 1 &&
		    EVP_DigestSign(m, sig, &n, dig, 32) == 1;
		EVP_MD_CTX_free(m);
	} else {
		EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
		if (pc == NULL)
			return -1;
		ok = EVP_PKEY_sign_init(pc) == 1 &&
		    EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1 &&
		    EVP_PKEY_CTX_set_signature_md(pc, sha256) == 1 &&
		    EVP_PKEY_sign(pc, sig, &n, dig, 32) == 1;
		EVP_PKEY_CTX_free(pc);
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

	/* A key that cannot sign, or whose halves disagree, fails here, not per message. */
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

/* Next un-stuffed byte, or -1 at the end. */
static inline int
src_get(struct src *s)
{
	for (;;) {
		if (s->eof)
			return -1;
		while (s->i < s->n && s->off >= s->iov[s->i].iov_len) {
			s->i++;
			s->off = 0;
		}
		if (s->i >= s->n) {
			s->eof = true;   /* a lone trailing "." is the terminator too */
			return -1;
		}
		int ch = ((const unsigned char *)s->iov[s->i].iov_base)[s->off++];
		if (s->line_start && ch == '.') {
			s->line_start = false;
			s->dot = true;
			continue;
		}
		if (s->dot) {
			s->dot = false;
			if (ch == '\r' || ch == '\n') {
				s->eof = true;
				return -1;
			}
		}
		s->line_start = ch == '\n';
		return ch;
	}
}

/* A header field inside the header block: text without its final CRLF. */
struct field {
	const char *p;
	size_t len;
	size_t namelen;                /* 0: no colon, not a field */
};

struct message {
	struct sbuf hdr;               /* un-stuffed header block */
	struct field *f;
	int nf, capf;
	unsigned char bh[32];          /* body hash */
};

static void
add_field(struct message *m, const char *p, size_t len)
{
	while (len > 0 && (p[len - 1] == '\r' || p[len - 1] == '\n'))
		len--;
	if (m->nf == m->capf) {
		m->capf = m->capf ? m->capf * 2 : 32;
		m->f = xrealloc(m->f, (size_t)m->capf * sizeof(*m->f));
	}
	struct field *f = &m->f[m->nf++];
	const char *colon = memchr(p, ':', len);
	f->p = p;
	f->len = len;
	f->namelen = 0;
	if (colon != NULL) {
		size_t nl = (size_t)(colon - p);
		while (nl > 0 && (p[nl - 1] == ' ' || p[nl - 1] == '\t'))
			nl--;
		f->namelen = nl;
	}
}

/* Read the header block up to the empty line; index its fields. */
static int
read_headers(struct src *s, struct message *m, char *err, size_t errlen)
{
	size_t line = 0;
	int ch;

	while ((ch = src_get(s)) >= 0) {
		sb_add(&m->hdr, &(char){ (char)ch }, 1);
		if (ch != '\n')
			continue;
		size_t ll = m->hdr.len - line;
		if (ll == 1 || (ll == 2 && m->hdr.p[line] == '\r')) {
			m->hdr.len = line;   /* the empty line is not part of a field */
			break;
		}
		line = m->hdr.len;
		if (m->hdr.len > HEADERS_MAX) {
			snprintf(err, errlen, "header block larger than %d bytes", HEADERS_MAX);
			return -1;
		}
	}

	/* fields: a line starting with WSP continues the previous one */
	if (m->hdr.p == NULL)
		return 0;
	const char *p = m->hdr.p, *end = p + m->hdr.len, *start = p;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *next = nl ? nl + 1 : end;
		if (next < end && (*next == ' ' || *next == '\t')) {
			p = next;
			continue;
		}
		add_field(m, start, (size_t)(next - start));
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

/* The rest of the input after the header block; the same rules as src_get(). */
static int
hash_body(struct src *s, struct message *m)
{
	struct bodycanon b = { 0 };
	unsigned int n = 0;
	int ok;

	if ((b.md = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(b.md, sha256, NULL) != 1) {
		EVP_MD_CTX_free(b.md);
		return -1;
	}
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
				/* a single SP between two data bytes is already canonical */
				const unsigned char *q = p + 1;
				for (;;) {
					if (q < end && !body_special[*q])
						q++;
					else if (q + 1 < end && *q == ' ' && !body_special[q[1]])
						q += 2;
					else
						break;
				}
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
	ok = EVP_DigestUpdate(b.md, b.out, b.olen) == 1 &&
	    EVP_DigestFinal_ex(b.md, m->bh, &n) == 1 && n == 32;
	EVP_MD_CTX_free(b.md);
	return ok ? 0 : -1;
}

/* Relaxed header canonicalisation (RFC 6376 3.4.2) of one field into out. */
static void
canon_header(struct sbuf *out, const char *p, size_t len, size_t namelen, bool crlf)
{
	const char *colon = memchr(p + namelen, ':', len - namelen);
	bool wsp = false, started = false;

	out->len = 0;
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

static bool
name_is(const struct field *f, const char *name)
{
	return f->namelen == strlen(name) && strncasecmp(f->p, name, f->namelen) == 0;
}

static bool
oversigned(const char *name)
{
	for (const char *const *o = dkim_oversign_headers; *o; o++)
		if (strcasecmp(*o, name) == 0)
			return true;
	return false;
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

/* One DKIM-Signature header for one selector, appended to out. */
static int
sign_one(const struct message *m, const struct dkim_conf *dc,
    const struct dkim_selector *sel, int64_t t, struct sbuf *out,
    struct sbuf *scratch, char *err, size_t errlen)
{
	const struct dkim_key *k = sel->key;
	struct sbuf h = { 0 };
	EVP_MD_CTX *md = NULL;
	unsigned char dig[32], sig[1024];
	unsigned int dl = 0;
	size_t col;
	char *bh = NULL, *b = NULL;
	int rc = -1, sl;

	if (k == NULL) {
		snprintf(err, errlen, "dkim %s selector %s: key not loaded", dc->domain, sel->name);
		return -1;
	}
	if ((md = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(md, sha256, NULL) != 1) {
		snprintf(err, errlen, "dkim: SHA-256 init failed");
		goto out;
	}

	bh = b64(m->bh, 32);
	sb_printf(&h, "DKIM-Signature: v=1; a=%s; c=relaxed/relaxed; d=%s; s=%s;\r\n\tt=%lld;",
	    k->alg == DKIM_RSA ? "rsa-sha256" : "ed25519-sha256", dc->domain, sel->name,
	    (long long)t);
	if (dc->expire > 0)
		sb_printf(&h, " x=%lld;", (long long)(t + (dc->expire + 999) / 1000));
	sb_printf(&h, " bh=%s;\r\n\th=", bh);
	col = 10;

	/*
	 * h= and the header hash together: each listed name takes the next
	 * instance from the bottom (RFC 6376 5.4.2); over-signed names are
	 * listed once more than they occur, matching nothing, so that an added
	 * instance breaks the signature.
	 */
	bool first = true;
	for (const char *const *hn = dkim_sign_headers; *hn; hn++) {
		int count = 0;
		for (int i = 0; i < m->nf; i++)
			if (name_is(&m->f[i], *hn))
				count++;
		int listed = count + (oversigned(*hn) ? 1 : 0);
		for (int i = m->nf - 1, left = count; listed > 0; listed--) {
			char name[64];
			int nl = snprintf(name, sizeof(name), "%s%s", first ? "" : ":", *hn);
			fold_add(&h, &col, name, (size_t)nl, !first);
			first = false;
			if (left == 0)
				continue;
			while (!name_is(&m->f[i], *hn))
				i--;
			canon_header(scratch, m->f[i].p, m->f[i].len, m->f[i].namelen, true);
			EVP_DigestUpdate(md, scratch->p, scratch->len);
			i--;
			left--;
		}
	}
	sb_str(&h, ";\r\n\tb=");

	/* the signature header itself, b= empty, no trailing CRLF */
	canon_header(scratch, h.p, h.len, strlen("DKIM-Signature"), false);
	if (EVP_DigestUpdate(md, scratch->p, scratch->len) != 1 ||
	    EVP_DigestFinal_ex(md, dig, &dl) != 1 || dl != 32) {
		snprintf(err, errlen, "dkim: SHA-256 failed");
		goto out;
	}
	if ((sl = sign_digest(k, dig, sig, sizeof(sig))) < 0) {
		snprintf(err, errlen, "dkim %s selector %s: signing failed", dc->domain, sel->name);
		goto out;
	}
	b = b64(sig, (size_t)sl);
	size_t blen = strlen(b);
	col = 10;
	for (size_t off = 0; off < blen; ) {
		size_t n = MIN(blen - off, (size_t)(FOLD_COL - col));
		if (off > 0) {
			sb_str(&h, "\r\n\t ");
			n = MIN(blen - off, (size_t)(FOLD_COL - 9));
		}
		sb_add(&h, b + off, n);
		off += n;
	}
	sb_str(&h, "\r\n");
	sb_add(out, h.p, h.len);
	rc = 0;
out:
	EVP_MD_CTX_free(md);
	free(h.p);
	free(bh);
	free(b);
	return rc;
}

char *
dkim_sign(const struct config *c, const char *domain, const char *extra_domain,
    const struct iovec *iov, int iovcnt, char *err, size_t errlen)
{
	const struct dkim_conf *dc[2] = { NULL, NULL };
	struct message m = { 0 };
	struct sbuf out = { 0 }, scratch = { 0 };
	struct src s = { .iov = iov, .n = iovcnt, .line_start = true };
	int ndc = 0;

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

	if (read_headers(&s, &m, err, errlen) < 0)
		goto fail;
	/* The body hash does not depend on the key: once for all signatures. */
	if (hash_body(&s, &m) < 0) {
		snprintf(err, errlen, "dkim: SHA-256 failed");
		goto fail;
	}
	int64_t t = dkim_fixed_time ? dkim_fixed_time : (int64_t)time(NULL);
	sb_grow(&out, 1024);
	out.p[0] = '\0';
	for (int d = 0; d < ndc; d++)
		for (int i = 0; i < dc[d]->nsel; i++)
			if (sign_one(&m, dc[d], &dc[d]->sel[i], t, &out, &scratch, err, errlen) < 0)
				goto fail;
	free(m.hdr.p);
	free(m.f);
	free(scratch.p);
	return out.p;

fail:
	free(m.hdr.p);
	free(m.f);
	free(scratch.p);
	free(out.p);
	return NULL;
}
