/*
 * dkim: key checks, the signed header list, and signatures checked by an
 * independent implementation (libopendkim in verify mode, keys from a
 * DKIM_QUERY_FILE), plus libopendkim's own body hash for the same message.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

/* libopendkim first, reached through these wrappers: our dkim.h renames
 * dkim_init/dkim_sign, which libopendkim also exports. */
#include <opendkim/dkim.h>

static DKIM_LIB *
odk_init(void)
{
	return dkim_init(NULL, NULL);
}

static DKIM *
odk_sign(DKIM_LIB *lib, const char *key, const char *sel, const char *dom,
    dkim_alg_t alg, DKIM_STAT *st)
{
	return dkim_sign(lib, (const u_char *)"test", NULL, (dkim_sigkey_t)key,
	    (const u_char *)sel, (const u_char *)dom, DKIM_CANON_RELAXED,
	    DKIM_CANON_RELAXED, alg, -1, st);
}

#include "conf.h"
#include "dkim.h"
#include "util.h"

static char tmpdir[] = "/tmp/test_dkim.XXXXXX";
static char path_rsa[256], path_rsa1[256], path_rsa512[256], path_ed[256],
    path_edseed[256], path_qfile[256];

/* ---- helpers ------------------------------------------------------------ */

static void
write_file(const char *path, const void *p, size_t n, mode_t mode)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static void
write_pem(const char *path, EVP_PKEY *pk, bool traditional)
{
	BIO *b = BIO_new_file(path, "w");
	assert_non_null(b);
	if (traditional)   /* "BEGIN RSA PRIVATE KEY": PKCS#1 */
		assert_int_equal(PEM_write_bio_PrivateKey_traditional(b, pk, NULL, NULL, 0, NULL, NULL), 1);
	else
		assert_int_equal(PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL), 1);
	BIO_free(b);
	assert_int_equal(chmod(path, 0600), 0);
}

static int
setup(void **state)
{
	(void)state;
	assert_non_null(mkdtemp(tmpdir));
	snprintf(path_rsa, sizeof(path_rsa), "%s/rsa.key", tmpdir);
	snprintf(path_rsa1, sizeof(path_rsa1), "%s/rsa-pkcs1.key", tmpdir);
	snprintf(path_rsa512, sizeof(path_rsa512), "%s/rsa512.key", tmpdir);
	snprintf(path_ed, sizeof(path_ed), "%s/ed.key", tmpdir);
	snprintf(path_edseed, sizeof(path_edseed), "%s/ed-seed.key", tmpdir);
	snprintf(path_qfile, sizeof(path_qfile), "%s/keys.txt", tmpdir);

	EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	EVP_PKEY *rsa512 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)512);
	EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	assert_non_null(rsa);
	assert_non_null(rsa512);
	assert_non_null(ed);
	write_pem(path_rsa, rsa, false);
	write_pem(path_rsa1, rsa, true);
	write_pem(path_rsa512, rsa512, false);
	write_pem(path_ed, ed, false);

	unsigned char seed[32];
	size_t n = sizeof(seed);
	char b64[64];
	assert_int_equal(EVP_PKEY_get_raw_private_key(ed, seed, &n), 1);
	EVP_EncodeBlock((unsigned char *)b64, seed, 32);
	strcat(b64, "\n");
	write_file(path_edseed, b64, strlen(b64), 0600);

	EVP_PKEY_free(rsa);
	EVP_PKEY_free(rsa512);
	EVP_PKEY_free(ed);
	assert_int_equal(dkim_init(), 0);
	return 0;
}

static int
teardown(void **state)
{
	char cmd[300];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static int
load(struct dkim_selector *sel, const char *name, enum dkim_alg alg, const char *path,
    char *err, size_t errlen)
{
	memset(sel, 0, sizeof(*sel));
	sel->name = (char *)name;
	sel->alg = alg;
	sel->keyfile = (char *)path;
	err[0] = '\0';
	return dkim_key_load(sel, err, errlen);
}

/* A config with one dkim block per (domain, selectors...). */
struct testconf {
	struct config c;
	struct dkim_conf dc[4];
	struct dkim_selector sel[4][3];
};

static void
tc_add(struct testconf *t, const char *domain, int64_t expire, int nsel, ...)
{
	va_list ap;
	int d = t->c.ndkim++;
	char err[256];

	t->c.dkim = t->dc;
	t->dc[d].domain = (char *)domain;
	t->dc[d].expire = expire;
	t->dc[d].sel = t->sel[d];
	t->dc[d].nsel = nsel;
	va_start(ap, nsel);
	for (int i = 0; i < nsel; i++) {
		const char *name = va_arg(ap, const char *);
		enum dkim_alg alg = va_arg(ap, enum dkim_alg);
		const char *path = va_arg(ap, const char *);
		assert_int_equal(load(&t->sel[d][i], name, alg, path, err, sizeof(err)), 0);
	}
	va_end(ap);
}

static void
tc_free(struct testconf *t)
{
	for (int d = 0; d < t->c.ndkim; d++)
		for (int i = 0; i < t->dc[d].nsel; i++)
			dkim_key_free(&t->sel[d][i]);
}

/* Publish every loaded selector in the libopendkim query file. */
static void
publish(struct testconf *t)
{
	FILE *f = fopen(path_qfile, "w");
	assert_non_null(f);
	for (int d = 0; d < t->c.ndkim; d++)
		for (int i = 0; i < t->dc[d].nsel; i++) {
			char *txt = dkim_txt_record(&t->sel[d][i]);
			fprintf(f, "%s._domainkey.%s %s\n", t->sel[d][i].name, t->dc[d].domain, txt);
			free(txt);
		}
	assert_int_equal(fclose(f), 0);
}

static char *
sign_str(struct testconf *t, const char *domain, const char *extra, const char *msg)
{
	char err[256] = "";
	struct iovec iov = { (void *)msg, strlen(msg) };
	char *s = dkim_sign(&t->c, domain, extra, &iov, 1, err, sizeof(err));
	if (s == NULL)
		fail_msg("dkim_sign: %s", err);
	return s;
}

/* Un-stuff wire form: what the receiving MTA stores. */
static char *
unstuff(const char *wire)
{
	char *out = xmalloc(strlen(wire) + 1), *o = out;
	bool bol = true;
	for (const char *p = wire; *p; p++) {
		if (bol && *p == '.') {
			bol = false;
			if (p[1] == '\r' || p[1] == '\n' || p[1] == '\0')
				break;   /* terminator */
			continue;
		}
		bol = *p == '\n';
		*o++ = *p;
	}
	*o = '\0';
	return out;
}

/*
 * Verify a received message (signature headers + un-stuffed message) with
 * libopendkim. Returns the number of signatures that passed; *nsigs the
 * number found.
 */
static int
odk_verify(const char *msg, int *nsigs)
{
	DKIM_LIB *lib = odk_init();
	DKIM_STAT st;
	int qm = DKIM_QUERY_FILE, passed = 0;

	assert_non_null(lib);
	assert_int_equal(dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_QUERYMETHOD, &qm, sizeof(qm)),
	    DKIM_STAT_OK);
	assert_int_equal(dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_QUERYINFO, path_qfile,
	    strlen(path_qfile)), DKIM_STAT_OK);
	DKIM *d = dkim_verify(lib, (const u_char *)"test", NULL, &st);
	assert_non_null(d);

	const char *p = msg, *body = strstr(msg, "\r\n\r\n");
	assert_non_null(body);
	while (p < body + 2) {
		const char *e = p;
		for (;;) {
			e = strstr(e, "\r\n");
			if (e[2] != ' ' && e[2] != '\t')
				break;
			e += 2;
		}
		st = dkim_header(d, (u_char *)p, (size_t)(e - p));
		assert_int_equal(st, DKIM_STAT_OK);
		p = e + 2;
	}
	assert_int_equal(dkim_eoh(d), DKIM_STAT_OK);
	body += 4;
	if (*body)
		assert_int_equal(dkim_body(d, (u_char *)body, strlen(body)), DKIM_STAT_OK);
	(void)dkim_eom(d, NULL);

	DKIM_SIGINFO **sigs;
	int n = 0;
	if (dkim_getsiglist(d, &sigs, &n) == DKIM_STAT_OK)
		for (int i = 0; i < n; i++) {
			if ((dkim_sig_getflags(sigs[i]) & DKIM_SIGFLAG_PROCESSED) == 0)
				dkim_sig_process(d, sigs[i]);
			if ((dkim_sig_getflags(sigs[i]) & DKIM_SIGFLAG_PASSED) &&
			    dkim_sig_getbh(sigs[i]) == DKIM_SIGBH_MATCH)
				passed++;
		}
	*nsigs = n;
	dkim_free(d);
	dkim_close(lib);
	return passed;
}

/* Signature block + message, un-stuffed, then verified. */
static int
verify_signed(const char *sigs, const char *wire, int *nsigs)
{
	char *rx = unstuff(wire);
	char *all = xasprintf("%s%s", sigs, rx);
	int r = odk_verify(all, nsigs);
	free(rx);
	free(all);
	return r;
}

/* Value of tag t in the first signature of a block (whitespace removed). */
static char *
tag(const char *sigs, const char *t)
{
	char pat[8];
	snprintf(pat, sizeof(pat), " %s=", t);
	const char *p = strstr(sigs, pat);
	if (p == NULL) {
		snprintf(pat, sizeof(pat), "\t%s=", t);
		p = strstr(sigs, pat);
	}
	if (p == NULL)
		return NULL;
	p += strlen(pat);
	char *v = xmalloc(strlen(p) + 1), *o = v;
	for (; *p && *p != ';'; p++)
		if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
			*o++ = *p;
	*o = '\0';
	return v;
}

static int
count(const char *s, const char *needle)
{
	int n = 0;
	for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

static const char MSG[] =
	"Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	"From: Alice <alice@example.com>\r\n"
	"To: bob@example.org,\r\n"
	"  carol@example.org\r\n"
	"Subject: a folded   subject\r\n"
	"\t that goes on  \r\n"
	"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	"Message-ID: <1@example.com>\r\n"
	"X-Mailer: test\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"\r\n"
	"Hello   world  \r\n"
	"..a dot-stuffed line\r\n"
	"\ttab\tseparated\r\n"
	"8bit: \xc3\xa9t\xc3\xa9\r\n"
	"\r\n"
	"last line\r\n"
	"\r\n"
	"\r\n";

/* ---- key checks ------------------------------------------------------------ */

static void
test_key_missing(void **state)
{
	struct dkim_selector sel;
	char err[256], p[300];
	(void)state;
	snprintf(p, sizeof(p), "%s/nope.key", tmpdir);
	assert_int_equal(load(&sel, "s1", DKIM_RSA, p, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "No such file"));
	assert_null(sel.key);
}

static void
test_key_not_a_file(void **state)
{
	struct dkim_selector sel;
	char err[256], p[300];
	(void)state;
	/* root reads anything, so "unreadable" is shown with what root can't read */
	assert_int_equal(load(&sel, "s1", DKIM_RSA, tmpdir, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a regular file"));
	snprintf(p, sizeof(p), "%s/empty.key", tmpdir);
	write_file(p, "", 0, 0600);
	assert_int_equal(load(&sel, "s1", DKIM_RSA, p, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "empty"));
}

static void
test_key_unreadable(void **state)
{
	struct dkim_selector sel;
	char err[256], p[300];
	(void)state;
	snprintf(p, sizeof(p), "%s/locked.key", tmpdir);
	write_file(p, "x", 1, 0000);
	int r = load(&sel, "s1", DKIM_RSA, p, err, sizeof(err));
	assert_int_equal(r, -1);   /* EACCES, or (as root) not a key */
	assert_true(strstr(err, "Permission denied") || strstr(err, "not a private key"));
}

static void
test_key_malformed(void **state)
{
	struct dkim_selector sel;
	char err[256], p[300];
	(void)state;
	snprintf(p, sizeof(p), "%s/bad.key", tmpdir);
	write_file(p, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 56, 0600);
	assert_int_equal(load(&sel, "s1", DKIM_RSA, p, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a private key"));
	write_file(p, "hello world\n", 12, 0600);
	assert_int_equal(load(&sel, "s1", DKIM_RSA, p, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a private key"));
}

static void
test_key_short_rsa(void **state)
{
	struct dkim_selector sel;
	char err[256];
	(void)state;
	assert_int_equal(load(&sel, "s1", DKIM_RSA, path_rsa512, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "512 bits is too short"));
}

static void
test_key_world_access(void **state)
{
	struct dkim_selector sel;
	char err[256];
	(void)state;
	assert_int_equal(chmod(path_rsa, 0644), 0);
	assert_int_equal(load(&sel, "s1", DKIM_RSA, path_rsa, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "world-readable"));
	assert_int_equal(chmod(path_rsa, 0602), 0);
	assert_int_equal(load(&sel, "s1", DKIM_RSA, path_rsa, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "world-writable"));
	assert_int_equal(chmod(path_rsa, 0640), 0);   /* group-readable is fine */
	assert_int_equal(load(&sel, "s1", DKIM_RSA, path_rsa, err, sizeof(err)), 0);
	dkim_key_free(&sel);
	assert_int_equal(chmod(path_rsa, 0600), 0);
}

static void
test_key_alg_mismatch(void **state)
{
	struct dkim_selector sel;
	char err[256];
	(void)state;
	assert_int_equal(load(&sel, "s1", DKIM_RSA, path_ed, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "is ed25519 but the selector says rsa"));
	assert_int_equal(load(&sel, "s1", DKIM_ED25519, path_rsa, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "is rsa but the selector says ed25519"));
}

static void
test_key_ok_and_txt(void **state)
{
	struct dkim_selector a, b, e, s;
	char err[256];
	(void)state;
	assert_int_equal(load(&a, "s1", DKIM_RSA, path_rsa, err, sizeof(err)), 0);
	assert_int_equal(load(&b, "s1", DKIM_RSA, path_rsa1, err, sizeof(err)), 0);
	assert_int_equal(load(&e, "e1", DKIM_ED25519, path_ed, err, sizeof(err)), 0);
	assert_int_equal(load(&s, "e1", DKIM_ED25519, path_edseed, err, sizeof(err)), 0);

	char *ta = dkim_txt_record(&a), *tb = dkim_txt_record(&b);
	char *te = dkim_txt_record(&e), *ts = dkim_txt_record(&s);
	/* PKCS#1 and PKCS#8 of one key; PEM and raw seed of one key */
	assert_string_equal(ta, tb);
	assert_string_equal(te, ts);
	assert_true(strncmp(ta, "v=DKIM1; k=rsa; p=MIIBIjAN", 26) == 0);  /* SPKI, 2048 bits */
	assert_true(strncmp(te, "v=DKIM1; k=ed25519; p=", 22) == 0);
	assert_int_equal(strlen(te + 22), 44);                           /* 32 bytes */
	free(ta); free(tb); free(te); free(ts);
	dkim_key_free(&a); dkim_key_free(&b); dkim_key_free(&e); dkim_key_free(&s);
	assert_null(a.key);
}

/* ---- signing ------------------------------------------------------------------ */

static void
test_header_list(void **state)
{
	struct testconf t = { 0 };
	(void)state;
	tc_add(&t, "example.com", 0, 1, "s1", DKIM_RSA, path_rsa);
	const char *msg =
		"From: a@example.com\r\n"
		"Subject: one\r\n"
		"Subject: two\r\n"
		"Received: x\r\n"
		"X-Foo: y\r\n"
		"List-Unsubscribe: <mailto:u@example.com>\r\n"
		"To: b@example.org\r\n"
		"\r\n"
		"body\r\n";
	char *s = sign_str(&t, "example.com", NULL, msg);
	char *h = tag(s, "h");
	assert_non_null(h);
	assert_string_equal(h, "From:From:To:Subject:Subject:Subject:"
	    "List-Unsubscribe:List-Unsubscribe:List-Unsubscribe-Post");
	/* every name in the list is one of ours */
	for (const char *const *n = dkim_sign_headers; *n; n++)
		assert_non_null(*n);
	assert_int_equal(count(s, "DKIM-Signature:"), 1);
	assert_null(strstr(s, "x="));
	free(h);
	free(s);
	tc_free(&t);
}

static void
test_verify_rsa_ed25519_dual(void **state)
{
	struct testconf t = { 0 };
	int n;
	(void)state;
	tc_add(&t, "example.com", 0, 2, "s1", DKIM_RSA, path_rsa1, "e1", DKIM_ED25519, path_ed);
	publish(&t);
	char *s = sign_str(&t, "example.com", NULL, MSG);
	assert_int_equal(count(s, "DKIM-Signature:"), 2);
	assert_non_null(strstr(s, "a=rsa-sha256"));
	assert_non_null(strstr(s, "a=ed25519-sha256"));
	assert_int_equal(verify_signed(s, MSG, &n), 2);
	assert_int_equal(n, 2);

	/* a changed body byte fails both */
	char *bad = xstrdup(MSG);
	*strstr(bad, "world") = 'W';
	assert_int_equal(verify_signed(s, bad, &n), 0);
	/* an added From (over-signed) fails both */
	char *added = xasprintf("From: evil@example.net\r\n%s", MSG);
	assert_int_equal(verify_signed(s, added, &n), 0);
	free(bad);
	free(added);
	free(s);
	tc_free(&t);
}

/* Our body hash equals libopendkim's for the same message. */
static void
test_body_hash_matches_libopendkim(void **state)
{
	static const char *bodies[] = {
		"",
		"\r\n",
		"\r\n\r\n\r\n",
		"no trailing crlf",
		"trailing spaces   \r\n  leading\r\n\t\r\n \r\nend \t\r\n\r\n",
		"a\tb  c \t d\r\n\r\n\r\nx\r\n",
		"8bit \xe2\x82\xac \xc3\xa9\r\n",
		/* long lines: the eight-bytes-at-a-time scan meets every case at
		 * every offset (single SP, SP runs, TAB, CR, controls, 8-bit) */
		"abcdefgh ijklmnop qrstuvw xyz01234567 89 a b c d e f g h i j k l mnopqrstu\r\n"
		"abcdefg  hijklmn\topqrstu \tvwxyz0123456 \x01" "abcdefg\x1f hijklmn \x7f\xff"
		"\x80 xyzabcdefghijklmnop\tqrstuvwxyz0123456789ab \r\n"
		"0123456 789abcde f0123456789abcdef 0123456789abcdef0 123456789abcdef \r\n"
		"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9 \xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9  "
		"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9 x",
		"1234567 1234567  1234567\t1234567 \x0b" "1234567 1234567 1234567 1234567 1234567 "
		"1234567 1234567 1234567 1234567 1234567 1234567 1234567 1234567 1234567 1234567\r\n",
	};
	struct testconf t = { 0 };
	(void)state;
	tc_add(&t, "example.com", 0, 1, "s1", DKIM_RSA, path_rsa);
	size_t klen;
	char *key = read_file(path_rsa, &klen);
	assert_non_null(key);

	for (size_t i = 0; i < ARRAY_SIZE(bodies); i++) {
		char *msg = xasprintf("From: a@example.com\r\nSubject: s\r\n\r\n%s", bodies[i]);
		char *s = sign_str(&t, "example.com", NULL, msg);
		char *ours = tag(s, "bh");

		DKIM_LIB *lib = odk_init();
		DKIM_STAT st;
		DKIM *d = odk_sign(lib, key, "s1", "example.com", DKIM_SIGN_RSASHA256, &st);
		assert_non_null(d);
		dkim_header(d, (u_char *)"From: a@example.com", 19);
		dkim_header(d, (u_char *)"Subject: s", 10);
		dkim_eoh(d);
		/* libopendkim wants the final CRLF the SMTP client adds anyway */
		const char *b = bodies[i];
		size_t bl = strlen(b);
		if (bl)
			dkim_body(d, (u_char *)b, bl);
		if (bl && b[bl - 1] != '\n')
			dkim_body(d, (u_char *)"\r\n", 2);
		assert_int_equal(dkim_eom(d, NULL), DKIM_STAT_OK);
		u_char *hdr;
		size_t hl;
		assert_int_equal(dkim_getsighdr_d(d, 16, &hdr, &hl), DKIM_STAT_OK);
		char *h2 = xasprintf(" %.*s", (int)hl, hdr);   /* hdr starts "v=1;" */
		char *theirs = tag(h2, "bh");
		free(h2);
		assert_non_null(theirs);
		if (strcmp(ours, theirs) != 0)
			fail_msg("body %zu: bh %s, libopendkim %s", i, ours, theirs);
		free(theirs);
		dkim_free(d);
		dkim_close(lib);
		free(ours);
		free(s);
		free(msg);
	}
	free(key);
	tc_free(&t);
}

/* Relaxed: refolding and re-spacing headers and body keeps signatures valid. */
static void
test_relaxed_canon(void **state)
{
	struct testconf t = { 0 };
	int n;
	(void)state;
	tc_add(&t, "example.com", 0, 1, "s1", DKIM_RSA, path_rsa);
	publish(&t);
	const char *a =
		"From: a@example.com\r\n"
		"Subject: a long subject\r\n"
		"  folded over\r\n"
		"\t\tthree lines\r\n"
		"\r\n"
		"x  y\r\n";
	const char *b =
		"From :   a@example.com   \r\n"
		"subject: a long subject folded over three lines\r\n"
		"\r\n"
		"x y  \r\n\r\n";
	const char *c =
		"From: a@example.com\r\n"
		"Subject: a long subject folded over three  lines!\r\n"
		"\r\n"
		"x y\r\n";
	char *s = sign_str(&t, "example.com", NULL, a);
	assert_int_equal(verify_signed(s, a, &n), 1);
	assert_int_equal(verify_signed(s, b, &n), 1);
	assert_int_equal(verify_signed(s, c, &n), 0);
	free(s);
	tc_free(&t);
}

/* Chunking, the SMTP terminator and fixed time give byte-identical output. */
static void
test_iov_chunks_and_terminator(void **state)
{
	struct testconf t = { 0 };
	char err[256];
	(void)state;
	tc_add(&t, "example.com", 0, 2, "s1", DKIM_RSA, path_rsa, "e1", DKIM_ED25519, path_ed);
	dkim_fixed_time = (int64_t)time(NULL) - 10;
	char *whole = sign_str(&t, "example.com", NULL, MSG);

	/* header block, blank line, body: as inject.c passes it */
	const char *blank = strstr(MSG, "\r\n\r\n");
	struct iovec three[3] = {
		{ (void *)MSG, (size_t)(blank - MSG) + 2 },
		{ (void *)"\r\n", 2 },
		{ (void *)(blank + 4), strlen(blank + 4) },
	};
	char *s3 = dkim_sign(&t.c, "example.com", NULL, three, 3, err, sizeof(err));
	assert_non_null(s3);
	assert_string_equal(whole, s3);

	/* one byte per piece: CRLF and ".." split everywhere */
	size_t len = strlen(MSG);
	struct iovec *bytes = xcalloc(len, sizeof(*bytes));
	for (size_t i = 0; i < len; i++) {
		bytes[i].iov_base = (void *)(MSG + i);
		bytes[i].iov_len = 1;
	}
	char *s1 = dkim_sign(&t.c, "example.com", NULL, bytes, (int)len, err, sizeof(err));
	assert_non_null(s1);
	assert_string_equal(whole, s1);

	/* with the terminator, and data after it ignored */
	char *term = xasprintf("%s.\r\nGARBAGE\r\n", MSG);
	char *st = sign_str(&t, "example.com", NULL, term);
	assert_string_equal(whole, st);
	dkim_fixed_time = 0;

	free(whole); free(s3); free(s1); free(st); free(term); free(bytes);
	tc_free(&t);
}

static void
test_domains_and_expiry(void **state)
{
	struct testconf t = { 0 };
	int n;
	(void)state;
	tc_add(&t, "example.com", 0, 1, "s1", DKIM_RSA, path_rsa);
	tc_add(&t, "esp.example.net", 7LL * 86400 * 1000, 1, "e1", DKIM_ED25519, path_ed);
	publish(&t);

	char *none = sign_str(&t, "other.org", NULL, MSG);
	assert_string_equal(none, "");
	char *upper = sign_str(&t, "EXAMPLE.com", NULL, MSG);
	assert_int_equal(count(upper, "DKIM-Signature:"), 1);
	assert_non_null(strstr(upper, "d=example.com;"));

	char *both = sign_str(&t, "example.com", "esp.example.net", MSG);
	assert_int_equal(count(both, "DKIM-Signature:"), 2);
	assert_non_null(strstr(both, "d=esp.example.net;"));
	assert_int_equal(verify_signed(both, MSG, &n), 2);

	char *esp = sign_str(&t, "other.org", "esp.example.net", MSG);
	char *tv = tag(esp, "t"), *xv = tag(esp, "x");
	assert_non_null(xv);
	assert_int_equal(strtoll(xv, NULL, 10) - strtoll(tv, NULL, 10), 7 * 86400);

	char *same = sign_str(&t, "example.com", "example.com", MSG);
	assert_int_equal(count(same, "DKIM-Signature:"), 1);

	free(tv); free(xv); free(none); free(upper); free(both); free(esp); free(same);
	tc_free(&t);
}

static void
test_unloaded_key_is_error(void **state)
{
	struct testconf t = { 0 };
	struct iovec iov = { (void *)MSG, strlen(MSG) };
	char err[256] = "";
	(void)state;
	tc_add(&t, "example.com", 0, 1, "s1", DKIM_RSA, path_rsa);
	dkim_key_free(&t.sel[0][0]);
	assert_null(dkim_sign(&t.c, "example.com", NULL, &iov, 1, err, sizeof(err)));
	assert_non_null(strstr(err, "key not loaded"));
}

/* Lines of the signature block stay short and end in CRLF. */
static void
test_folding(void **state)
{
	struct testconf t = { 0 };
	(void)state;
	tc_add(&t, "example.com", 0, 2, "s1", DKIM_RSA, path_rsa, "e1", DKIM_ED25519, path_ed);
	char *s = sign_str(&t, "example.com", NULL, MSG);
	size_t l = strlen(s);
	assert_true(l > 4 && strcmp(s + l - 2, "\r\n") == 0);
	for (char *p = s, *e; *p; p = e + 2) {
		e = strstr(p, "\r\n");
		assert_non_null(e);
		assert_true(e - p <= 80);
		assert_true(p == s || *p == '\t' || strncmp(p, "DKIM-Signature: ", 16) == 0);
	}
	assert_int_equal(count(s, "\n"), count(s, "\r\n"));
	free(s);
	tc_free(&t);
}

/*
 * Signing contexts and call state are reused: signatures made on two threads
 * at once, from the same keys, are byte for byte those made one at a time
 * (RSA PKCS#1 v1.5 and Ed25519 are deterministic), and those verify.
 */
#define THREAD_MSGS 12
#define THREAD_ROUNDS 8

struct signing_thread {
	struct testconf *t;
	char **msgs;
	char *sigs[THREAD_MSGS * THREAD_ROUNDS];
	int first;
};

static void *
signing_thread(void *arg)
{
	struct signing_thread *st = arg;
	struct iovec iov;
	char err[256];

	for (int k = 0; k < THREAD_MSGS * THREAD_ROUNDS; k++) {
		int m = (st->first + k) % THREAD_MSGS;
		iov.iov_base = st->msgs[m];
		iov.iov_len = strlen(st->msgs[m]);
		st->sigs[k] = dkim_sign(&st->t->c, "example.com", "esp.example.net", &iov, 1,
		    err, sizeof(err));
	}
	return NULL;
}

static void
test_threads_reuse_contexts(void **state)
{
	struct testconf t = { 0 };
	struct signing_thread th[2];
	pthread_t tid[2];
	char *msgs[THREAD_MSGS], *ref[THREAD_MSGS];
	int n;
	(void)state;
	tc_add(&t, "example.com", 0, 2, "s1", DKIM_RSA, path_rsa, "e1", DKIM_ED25519, path_ed);
	tc_add(&t, "esp.example.net", 0, 1, "s2", DKIM_RSA, path_rsa1);
	publish(&t);
	dkim_fixed_time = (int64_t)time(NULL) - 10;

	/* one at a time: the load's test signature made each key's one context */
	for (int m = 0; m < THREAD_MSGS; m++) {
		msgs[m] = xasprintf("From: a@example.com\r\nSubject: message %d\r\n"
		    "To: b@example.org\r\n\r\nbody %d\r\n%.*s\r\n", m, m, m * 40,
		    "..line  with\tspaces ..line  with\tspaces ..line  with\tspaces "
		    "..line  with\tspaces ..line  with\tspaces ..line  with\tspaces "
		    "..line  with\tspaces ..line  with\tspaces ..line  with\tspaces "
		    "..line  with\tspaces ..line  with\tspaces ..line  with\tspaces "
		    "..line  with\tspaces ..line  with\tspaces ..line  with\tspaces "
		    "..line  with\tspaces ..line  with\tspaces ..line  with\tspaces ");
		ref[m] = sign_str(&t, "example.com", "esp.example.net", msgs[m]);
		assert_int_equal(count(ref[m], "DKIM-Signature:"), 3);
		assert_int_equal(verify_signed(ref[m], msgs[m], &n), 3);
	}
	assert_int_equal(dkim_key_contexts(&t.sel[0][0]), 1);
	assert_int_equal(dkim_key_contexts(&t.sel[0][1]), 1);
	assert_int_equal(dkim_key_contexts(&t.sel[1][0]), 1);

	for (int i = 0; i < 2; i++) {
		th[i] = (struct signing_thread){ .t = &t, .msgs = msgs, .first = i * 5 };
		assert_int_equal(pthread_create(&tid[i], NULL, signing_thread, &th[i]), 0);
	}
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(tid[i], NULL), 0);
	for (int i = 0; i < 2; i++)
		for (int k = 0; k < THREAD_MSGS * THREAD_ROUNDS; k++) {
			int m = (th[i].first + k) % THREAD_MSGS;
			assert_non_null(th[i].sigs[k]);
			assert_string_equal(th[i].sigs[k], ref[m]);
			free(th[i].sigs[k]);
		}
	/* at most one context per thread that signed at the same time */
	for (int s = 0; s < 2; s++) {
		assert_in_range(dkim_key_contexts(&t.sel[0][s]), 1, 2);
	}
	assert_in_range(dkim_key_contexts(&t.sel[1][0]), 1, 2);
	dkim_fixed_time = 0;
	for (int m = 0; m < THREAD_MSGS; m++) {
		free(msgs[m]);
		free(ref[m]);
	}
	tc_free(&t);
}

/* State kept between calls carries nothing over from one message to the next. */
static void
test_state_between_calls(void **state)
{
	struct testconf t = { 0 };
	struct sbuf big = { 0 };
	int n;
	(void)state;
	tc_add(&t, "example.com", 0, 1, "s1", DKIM_RSA, path_rsa);
	publish(&t);
	dkim_fixed_time = (int64_t)time(NULL) - 10;

	dkim_shutdown();   /* nothing kept: the reference is made from scratch */
	char *fresh = sign_str(&t, "example.com", NULL, MSG);

	/* a message with more fields, signed names and a header block larger
	 * than what is kept, then MSG again on the state it left */
	for (int i = 0; i < 700; i++)
		sb_printf(&big, "%s: r%d@example.org %0100d\r\n", i % 100 ? "X-Pad" : "To", i, i);
	sb_str(&big, "From: z@example.com\r\nSubject: big\r\n\r\nbig body\r\n");
	char *bigsig = sign_str(&t, "example.com", NULL, big.p);
	assert_int_equal(verify_signed(bigsig, big.p, &n), 1);
	char *again = sign_str(&t, "example.com", NULL, MSG);
	assert_string_equal(fresh, again);

	/* a message without a header block or body */
	char *empty = sign_str(&t, "example.com", NULL, "");
	assert_int_equal(count(empty, "DKIM-Signature:"), 1);
	char *after = sign_str(&t, "example.com", NULL, MSG);
	assert_string_equal(fresh, after);

	dkim_fixed_time = 0;
	free(fresh); free(bigsig); free(again); free(empty); free(after); free(big.p);
	tc_free(&t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_missing),
		cmocka_unit_test(test_key_not_a_file),
		cmocka_unit_test(test_key_unreadable),
		cmocka_unit_test(test_key_malformed),
		cmocka_unit_test(test_key_short_rsa),
		cmocka_unit_test(test_key_world_access),
		cmocka_unit_test(test_key_alg_mismatch),
		cmocka_unit_test(test_key_ok_and_txt),
		cmocka_unit_test(test_header_list),
		cmocka_unit_test(test_verify_rsa_ed25519_dual),
		cmocka_unit_test(test_body_hash_matches_libopendkim),
		cmocka_unit_test(test_relaxed_canon),
		cmocka_unit_test(test_iov_chunks_and_terminator),
		cmocka_unit_test(test_domains_and_expiry),
		cmocka_unit_test(test_unloaded_key_is_error),
		cmocka_unit_test(test_folding),
		cmocka_unit_test(test_threads_reuse_contexts),
		cmocka_unit_test(test_state_between_calls),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
