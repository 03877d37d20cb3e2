/*
 * dkim-bench: the CPU cost of one dkim_sign() (src/dkim.c) for a realistic
 * message, next to the cost of the bare private-key operation it contains,
 * so that what signing costs on top of RSA is read off one run.
 *
 *   dkim-bench [COUNT [SIZE [THREADS [rsa|ed25519]]]]   (defaults 2000 8192 1 rsa)
 *
 * The message is a bulk-mail header block (15 fields, two folded) and a
 * quoted-printable-looking body of SIZE bytes in wire form (CRLF, a few
 * dot-stuffed lines, WSP runs and trailing WSP for the relaxed body
 * canonicalisation to fix), given as inject.c gives it: the header block
 * with its blank line, then the body. RSA keys are 2048 bits, made afresh.
 * THREADS > 1 signs COUNT messages on each of THREADS threads at once.
 * Each thread takes turns: one dkim_sign(), one bare private-key operation
 * on its own prepared context. Prints the median CPU time (of the signing
 * thread) per dkim_sign() and per bare operation, their difference
 * (overhead_us: all that is not the private-key operation), and the mean
 * per dkim_sign(). Medians, because a shared machine adds outliers.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "conf.h"
#include "dkim.h"
#include "util.h"

static const char HEADERS[] =
	"Received: from app1.internal (app1.internal [10.0.0.7])\r\n"
	"\tby mta.example.com (sluice) with ESMTP id 01HZX3K9QF2A7\r\n"
	"\tfor <rcpt@example.org>; Tue, 4 Jun 2024 09:15:02 +0000\r\n"
	"Return-Path: <bounce-7f3a9c@bounces.example.com>\r\n"
	"From: \"Example Shop\" <news@example.com>\r\n"
	"To: <rcpt@example.org>\r\n"
	"Subject: Your June picks:  20% off everything in the summer sale,\r\n"
	" today only\r\n"
	"Date: Tue, 4 Jun 2024 09:15:02 +0000\r\n"
	"Message-ID: <20240604091502.7f3a9c@example.com>\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: text/html; charset=utf-8\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n"
	"List-Unsubscribe: <mailto:unsub-7f3a9c@example.com>,\r\n"
	"  <https://example.com/u/7f3a9c>\r\n"
	"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
	"Feedback-ID: june24:newsletter:example\r\n"
	"X-Campaign: june24\r\n"
	"\r\n";

static const char *const WORDS[] = {
	"<td", "style=3D\"padding:0", "16px\">", "the", "summer", "sale", "is",
	"here", "and", "every", "item", "in", "our", "shop", "<a", "href=3D\"https:",
	"//example.com/p/1234\">", "shoes</a>", "for", "you", "=E2=82=AC", "29.90",
	"</td>", "<br>", "with", "free", "delivery",
};

static char *
make_body(size_t size)
{
	struct sbuf b = { 0 };
	unsigned seed = 1;
	int line = 0;

	while (b.len < size) {
		size_t start = b.len;
		line++;
		if (line % 23 == 0)
			sb_str(&b, "..");             /* a stuffed leading dot */
		if (line % 11 == 0)
			sb_str(&b, "  ");             /* indentation */
		while (b.len - start < 70) {
			sb_str(&b, WORDS[rand_r(&seed) % ARRAY_SIZE(WORDS)]);
			sb_str(&b, line % 7 == 0 ? "  " : " ");
		}
		if (line % 5 != 0)
			b.len--;                      /* most lines: no trailing WSP */
		sb_str(&b, line % 9 == 0 ? "=\r\n" : "\r\n");
		if (line % 17 == 0)
			sb_str(&b, "\r\n");
	}
	return b.p;
}

static EVP_PKEY *
write_key(const char *path, const char *alg)
{
	EVP_PKEY *pk = strcmp(alg, "rsa") == 0 ?
	    EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048) :
	    EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	BIO *bio = BIO_new_file(path, "w");
	if (pk == NULL || bio == NULL || PEM_write_bio_PrivateKey(bio, pk, NULL, NULL, 0, NULL, NULL) != 1) {
		fprintf(stderr, "dkim-bench: cannot make a key in %s\n", path);
		exit(1);
	}
	BIO_free(bio);
	chmod(path, 0600);
	return pk;
}

static struct config cfg;
static struct iovec msg[2];
static EVP_PKEY *bare_key;
static bool rsa;
static long count;

struct run {
	double *sign, *bare;           /* each call's thread CPU time, seconds */
};

static double
thread_cpu(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double
median(double *v, long n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double
mean(const double *v, long n)
{
	double sum = 0;
	for (long i = 0; i < n; i++)
		sum += v[i];
	return sum / (double)n;
}

/*
 * dkim_sign() and the bare private-key operation (one prepared context,
 * the same kind of key) taken in turns, so that a busy machine slows both
 * alike and their difference is what dkim_sign() adds.
 */
static void *
signer(void *arg)
{
	struct run *r = arg;
	unsigned char dig[32], sig[512];
	char err[256];
	EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_pkey(NULL, bare_key, NULL);
	EVP_MD_CTX *m = EVP_MD_CTX_new();

	memset(dig, 0x5a, sizeof(dig));
	if (pc == NULL || m == NULL || (rsa && (EVP_PKEY_sign_init(pc) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) != 1))) {
		fprintf(stderr, "dkim-bench: cannot prepare the bare signing context\n");
		exit(1);
	}
	for (long i = 0; i < count; i++) {
		double c0 = thread_cpu();
		char *s = dkim_sign(&cfg, "example.com", NULL, msg, 2, err, sizeof(err));
		double c1 = thread_cpu();
		if (s == NULL || *s == '\0') {
			fprintf(stderr, "dkim-bench: sign failed: %s\n", s ? "no signature" : err);
			exit(1);
		}
		free(s);

		size_t sl = sizeof(sig);
		double c2 = thread_cpu();
		int ok = rsa ? EVP_PKEY_sign(pc, sig, &sl, dig, 32) :
		    EVP_DigestSignInit_ex(m, NULL, NULL, NULL, NULL, bare_key, NULL) == 1 &&
		    EVP_DigestSign(m, sig, &sl, dig, 32) == 1;
		double c3 = thread_cpu();
		if (ok != 1)
			exit(1);
		if (r != NULL) {
			r->sign[i] = c1 - c0;
			r->bare[i] = c3 - c2;
		}
	}
	EVP_PKEY_CTX_free(pc);
	EVP_MD_CTX_free(m);
	return NULL;
}

int
main(int argc, char **argv)
{
	static struct dkim_conf dc;
	static struct dkim_selector sel;
	char dir[] = "/tmp/dkim-bench.XXXXXX", path[64], err[256];

	count = argc > 1 ? atol(argv[1]) : 2000;
	size_t size = argc > 2 ? (size_t)atol(argv[2]) : 8192;
	int nthreads = argc > 3 ? atoi(argv[3]) : 1;
	const char *alg = argc > 4 ? argv[4] : "rsa";
	rsa = strcmp(alg, "rsa") == 0;
	if (count <= 0 || nthreads < 1 || nthreads > 64 || (!rsa && strcmp(alg, "ed25519") != 0)) {
		fprintf(stderr, "usage: dkim-bench [COUNT [SIZE [THREADS [rsa|ed25519]]]]\n");
		return 1;
	}

	if (mkdtemp(dir) == NULL || dkim_init() < 0)
		return 1;
	snprintf(path, sizeof(path), "%s/k.key", dir);
	EVP_PKEY *pk = write_key(path, alg);
	sel.name = "s1";
	sel.alg = rsa ? DKIM_RSA : DKIM_ED25519;
	sel.keyfile = path;
	if (dkim_key_load(&sel, err, sizeof(err)) < 0) {
		fprintf(stderr, "dkim-bench: %s\n", err);
		return 1;
	}
	unlink(path);
	rmdir(dir);
	dc.domain = "example.com";
	dc.sel = &sel;
	dc.nsel = 1;
	cfg.dkim = &dc;
	cfg.ndkim = 1;

	char *body = make_body(size);
	msg[0] = (struct iovec){ (void *)HEADERS, strlen(HEADERS) };
	msg[1] = (struct iovec){ body, strlen(body) };

	bare_key = pk;
	long n = count;
	count = count / 10 + 1;
	signer(NULL);   /* warm up: first-use fetches, page faults */
	count = n;

	n = count * nthreads;
	double *sign = xcalloc((size_t)n, sizeof(double)), *bare = xcalloc((size_t)n, sizeof(double));
	pthread_t th[64];
	struct run runs[64];
	for (int t = 0; t < nthreads; t++) {
		runs[t] = (struct run){ sign + t * count, bare + t * count };
		pthread_create(&th[t], NULL, signer, &runs[t]);
	}
	for (int t = 0; t < nthreads; t++)
		pthread_join(th[t], NULL);
	double ms = median(sign, n), mb = median(bare, n);
	printf("alg=%s size=%zu threads=%d signs=%ld us_per_sign=%.1f bare_%s_us=%.1f "
	    "overhead_us=%.1f mean_us_per_sign=%.1f\n", alg, strlen(HEADERS) + strlen(body),
	    nthreads, n, ms * 1e6, alg, mb * 1e6, (ms - mb) * 1e6, mean(sign, n) * 1e6);
	free(sign);
	free(bare);
	dkim_key_free(&sel);
	dkim_shutdown();
	EVP_PKEY_free(pk);
	free(body);
	return 0;
}
