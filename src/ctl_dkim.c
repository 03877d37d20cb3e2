/*
 * sluicectl dkim: local key tools that need no running daemon.
 *
 *   sluicectl dkim keygen DOMAIN SELECTOR [--ed25519 | --rsa BITS] [--out FILE]
 *   sluicectl [-c CONFIG] dkim check DOMAIN SELECTOR [--key FILE]
 *
 * keygen writes a new private key (mode 0600, never over an existing file)
 * and prints the DNS record to publish and the config line to add. check
 * fetches SELECTOR._domainkey.DOMAIN through the configured resolver (or
 * /etc/resolv.conf) and compares its p= with the key: exit 0 when they
 * match, 1 when the record is missing, revoked or different, 2 on usage or
 * local errors.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "conf.h"
#include "dkim.h"
#include "dns.h"
#include "sluicectl.h"
#include "util.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

#define TXT_CHUNK 255   /* max bytes of one DNS character-string */

static void
usage(void)
{
	fprintf(stderr,
	    "usage: sluicectl dkim keygen DOMAIN SELECTOR [--ed25519 | --rsa BITS] [--out FILE]\n"
	    "       sluicectl [-c CONFIG] dkim check DOMAIN SELECTOR [--key FILE]\n");
}

/* DNS labels only: keeps file names and zone lines sane. */
static bool
valid_name(const char *s)
{
	if (*s == '\0' || *s == '.' || *s == '-' || strlen(s) > 253)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.' && *s != '_')
			return false;
	return true;
}

static int
write_key(const char *path, EVP_PKEY *pk)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *pem = NULL;
	long n;
	int fd, rc = -1;

	if (bio == NULL || PEM_write_bio_PrivateKey(bio, pk, NULL, NULL, 0, NULL, NULL) != 1) {
		fprintf(stderr, "sluicectl: cannot encode the key\n");
		BIO_free(bio);
		return -1;
	}
	n = BIO_get_mem_data(bio, &pem);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		fprintf(stderr, "sluicectl: %s: %s%s\n", path, strerror(errno),
		    errno == EEXIST ? " (refusing to overwrite a key)" : "");
		BIO_free(bio);
		return -1;
	}
	/* the umask can only remove bits; make sure of 0600 anyway */
	if (fchmod(fd, 0600) < 0 || write_all(fd, pem, (size_t)n) < 0 || fsync(fd) < 0) {
		fprintf(stderr, "sluicectl: %s: %s\n", path, strerror(errno));
		close(fd);
		unlink(path);
	} else if (close(fd) < 0) {
		fprintf(stderr, "sluicectl: %s: %s\n", path, strerror(errno));
		unlink(path);
	} else {
		rc = 0;
	}
	BIO_free(bio);
	return rc;
}

/* SEL._domainkey.DOMAIN. IN TXT ( "..." "..." ), strings of <= 255 bytes. */
static void
print_zone_line(const char *domain, const char *selector, const char *txt)
{
	size_t len = strlen(txt);

	printf("%s._domainkey.%s. IN TXT (", selector, domain);
	for (size_t off = 0; off < len; off += TXT_CHUNK) {
		size_t n = MIN(len - off, (size_t)TXT_CHUNK);
		printf("%s\"%.*s\"", off ? "\n\t" : " ", (int)n, txt + off);
	}
	printf(" )\n");
}

/* DOMAIN, then SELECTOR; an unknown option or a third word is refused. */
static bool
take_name(const char *arg, const char **domain, const char **selector)
{
	if (arg[0] == '-' || *selector != NULL)
		return false;
	if (*domain == NULL)
		*domain = arg;
	else
		*selector = arg;
	return true;
}

static int
cmd_keygen(int argc, char **argv)
{
	const char *domain = NULL, *selector = NULL, *out = NULL;
	enum dkim_alg alg = DKIM_RSA;
	long bits = 2048;
	char path[PATH_MAX], abspath[PATH_MAX], err[512];

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--ed25519") == 0) {
			alg = DKIM_ED25519;
		} else if (strcmp(argv[i], "--rsa") == 0 && i + 1 < argc) {
			char *end;
			alg = DKIM_RSA;
			bits = strtol(argv[++i], &end, 10);
			if (*end != '\0' || bits < 1024 || bits > 8192) {
				fprintf(stderr, "sluicectl: --rsa BITS: 1024 to 8192 (2048 recommended)\n");
				return 2;
			}
		} else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
			out = argv[++i];
		} else if (!take_name(argv[i], &domain, &selector)) {
			usage();
			return 2;
		}
	}
	if (domain == NULL || selector == NULL) {
		usage();
		return 2;
	}
	if (!valid_name(domain) || !valid_name(selector)) {
		fprintf(stderr, "sluicectl: domain and selector must be DNS names\n");
		return 2;
	}
	if (out == NULL) {
		snprintf(path, sizeof(path), "%s.%s.key", domain, selector);
		out = path;
	}

	EVP_PKEY *pk = alg == DKIM_RSA ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits)
	    : EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (pk == NULL) {
		fprintf(stderr, "sluicectl: key generation failed\n");
		return 2;
	}
	int rc = write_key(out, pk);
	EVP_PKEY_free(pk);
	if (rc < 0)
		return 2;

	/* Read it back the way sluiced will: proves the file and gives the record. */
	struct dkim_selector sel = { .name = (char *)selector, .alg = alg, .keyfile = (char *)out };
	if (dkim_key_load(&sel, err, sizeof(err)) < 0) {
		fprintf(stderr, "sluicectl: %s\n", err);
		return 2;
	}
	char *txt = dkim_txt_record(&sel);
	if (realpath(out, abspath) == NULL)
		snprintf(abspath, sizeof(abspath), "%s", out);

	printf("; private key written to %s (mode 0600)\n", abspath);
	printf("; publish this record in DNS:\n");
	print_zone_line(domain, selector, txt);
	printf("; then add to sluice.conf (and chown the key to the sluice user):\n");
	printf("dkim %s { selector %s %s %s }\n", domain, selector,
	    alg == DKIM_RSA ? "rsa" : "ed25519", abspath);
	free(txt);
	dkim_key_free(&sel);
	return 0;
}

struct txt_wait {
	bool done;
	int status;
	char *txt;
};

static void
txt_done(int status, const char *txt, void *arg)
{
	struct txt_wait *w = arg;

	w->done = true;
	w->status = status;
	w->txt = txt ? xstrdup(txt) : NULL;
}

/* Value of tag `name` in a tag=value list, whitespace removed. malloc'd or NULL. */
static char *
tag_value(const char *rec, const char *name)
{
	size_t nl = strlen(name);
	const char *p = rec;

	while (*p) {
		while (isspace((unsigned char)*p) || *p == ';')
			p++;
		const char *end = strchr(p, ';');
		if (end == NULL)
			end = p + strlen(p);
		const char *eq = memchr(p, '=', (size_t)(end - p));
		if (eq != NULL) {
			const char *ne = eq;
			while (ne > p && isspace((unsigned char)ne[-1]))
				ne--;
			if ((size_t)(ne - p) == nl && strncmp(p, name, nl) == 0) {
				char *v = xmalloc((size_t)(end - eq));
				size_t n = 0;
				for (const char *q = eq + 1; q < end; q++)
					if (!isspace((unsigned char)*q))
						v[n++] = *q;
				v[n] = '\0';
				return v;
			}
		}
		p = end;
	}
	return NULL;
}

enum verdict { V_MATCH, V_MISSING, V_TEMPFAIL, V_REVOKED, V_WRONGTYPE, V_MISMATCH };

/* Judge one TXT record against the key. */
static enum verdict
judge(const char *rec, const struct dkim_selector *sel)
{
	char *v = tag_value(rec, "v"), *k = tag_value(rec, "k"), *p = tag_value(rec, "p");
	enum verdict r;

	if ((v != NULL && strcmp(v, "DKIM1") != 0) || p == NULL)
		r = V_MISSING;    /* not a DKIM key record */
	else if (p[0] == '\0')
		r = V_REVOKED;
	else if (strcmp(k ? k : "rsa", sel->alg == DKIM_RSA ? "rsa" : "ed25519") != 0)
		r = V_WRONGTYPE;
	else if (strcmp(p, dkim_key_public(sel)) != 0)
		r = V_MISMATCH;
	else
		r = V_MATCH;
	free(v);
	free(k);
	free(p);
	return r;
}

static const char *
verdict_text(enum verdict v)
{
	switch (v) {
	case V_MATCH: return "match";
	case V_MISSING: return "missing";
	case V_TEMPFAIL: return "lookup failed";
	case V_REVOKED: return "revoked (empty p=)";
	case V_WRONGTYPE: return "key type differs (k=)";
	case V_MISMATCH: return "public key differs (p=)";
	}
	return "?";
}

/* --key FILE: the algorithm comes from the file. */
static int
load_keyfile(struct dkim_selector *sel, char *err, size_t errlen)
{
	sel->alg = DKIM_RSA;
	if (dkim_key_load(sel, err, errlen) == 0)
		return 0;
	if (strstr(err, "but the selector says") == NULL)
		return -1;
	sel->alg = DKIM_ED25519;
	return dkim_key_load(sel, err, errlen);
}

static int
cmd_check(const struct ctl_opts *o, int argc, char **argv)
{
	const char *domain = NULL, *selector = NULL, *keyfile = NULL;
	struct config *c = NULL;
	struct dkim_selector own = { 0 }, *sel = NULL;
	char err[4096], name[600];
	int rc = 2;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) {
			keyfile = argv[++i];
		} else if (!take_name(argv[i], &domain, &selector)) {
			usage();
			return 2;
		}
	}
	if (domain == NULL || selector == NULL) {
		usage();
		return 2;
	}

	/* The config gives the resolver, and the key when --key is absent. */
	const char *cpath = o->config;
	if (cpath == NULL && keyfile == NULL)
		cpath = SYSCONFDIR "/sluice/sluice.conf";   /* sluiced's default */
	if (cpath != NULL && (c = conf_load(cpath, err, sizeof(err))) == NULL) {
		fprintf(stderr, "%s", err);
		if (err[0] && err[strlen(err) - 1] != '\n')
			fputc('\n', stderr);
		return 2;
	}
	if (keyfile != NULL) {
		own.name = (char *)selector;
		own.keyfile = (char *)keyfile;
		if (load_keyfile(&own, err, sizeof(err)) < 0) {
			fprintf(stderr, "sluicectl: %s\n", err);
			goto out;
		}
		sel = &own;
	} else {
		struct dkim_conf *dc = conf_dkim(c, domain);
		for (int i = 0; dc != NULL && i < dc->nsel; i++)
			if (strcasecmp(dc->sel[i].name, selector) == 0)
				sel = &dc->sel[i];
		if (sel == NULL || sel->key == NULL) {
			fprintf(stderr, "sluicectl: %s has no dkim %s selector %s; use --key FILE\n",
			    cpath, domain, selector);
			goto out;
		}
	}

	snprintf(name, sizeof(name), "%s._domainkey.%s", selector, domain);
	struct event_base *base = event_base_new();
	if (base == NULL) {
		fprintf(stderr, "sluicectl: event_base_new failed\n");
		goto out;
	}
	struct dns *d = dns_new(base, c);
	struct txt_wait w = { 0 };
	dns_lookup_txt(d, name, txt_done, &w);
	while (!w.done)
		if (event_base_loop(base, EVLOOP_ONCE) < 0)
			break;
	dns_free(d);
	event_base_free(base);

	/* Several TXT records: any one carrying this key is a match. */
	enum verdict best = V_MISSING;
	if (!w.done || (w.status != DNS_OK && w.status != DNS_NXDOMAIN && w.status != DNS_NOHOST))
		best = V_TEMPFAIL;
	for (char *rec = w.txt, *next; rec != NULL && best != V_MATCH; rec = next) {
		if ((next = strchr(rec, '\n')) != NULL)
			*next++ = '\0';
		enum verdict v = judge(rec, sel);
		if (v == V_MATCH || best == V_MISSING)
			best = v;
	}

	rc = best == V_MATCH ? 0 : 1;
	if (o->json) {
		json_t *j = json_pack("{s:s, s:s, s:s, s:b, s:s, s:s?}", "name", name,
		    "key", sel->keyfile, "algorithm", sel->alg == DKIM_RSA ? "rsa" : "ed25519",
		    "match", best == V_MATCH, "result", verdict_text(best), "published", w.txt);
		char *s = json_dumps(j, JSON_COMPACT);
		printf("%s\n", s);
		free(s);
		json_decref(j);
	} else if (best == V_MATCH) {
		printf("%s: ok, matches %s\n", name, sel->keyfile);
	} else {
		char *txt = dkim_txt_record(sel);
		printf("%s: %s for %s\n", name, verdict_text(best), sel->keyfile);
		printf("; publish:\n");
		print_zone_line(domain, selector, txt);
		free(txt);
	}
	free(w.txt);
out:
	if (sel == &own)
		dkim_key_free(&own);
	if (c != NULL)
		conf_free(c);
	return rc;
}

int
ctl_dkim(const struct ctl_opts *o, int argc, char **argv)
{
	/* accept argv starting at "dkim" or at the subcommand */
	if (argc > 0 && strcmp(argv[0], "dkim") == 0) {
		argc--;
		argv++;
	}
	if (argc < 1) {
		usage();
		return 2;
	}
	if (dkim_init() < 0) {
		fprintf(stderr, "sluicectl: OpenSSL has no SHA-256\n");
		return 2;
	}
	if (strcmp(argv[0], "keygen") == 0)
		return cmd_keygen(argc - 1, argv + 1);
	if (strcmp(argv[0], "check") == 0)
		return cmd_check(o, argc - 1, argv + 1);
	if (strcmp(argv[0], "help") == 0 || strcmp(argv[0], "--help") == 0) {
		usage();
		return 0;
	}
	usage();
	return 2;
}
