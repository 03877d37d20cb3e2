/*
 * sluicectl verp: local VERP tools that need no running daemon.
 *
 *   sluicectl verp keygen FILE
 *   sluicectl [-c CONFIG] verp check ADDRESS
 *
 * keygen writes a new 32-byte HMAC secret for verp-key (mode 0600, never
 * over an existing file, fsync'd). check reads the bounce domain and key
 * from the config and says whether ADDRESS is a valid VERP address and
 * which queue id and recipient index it names: exit 0 valid, 1 forged or
 * not a VERP address, 2 on usage or local errors.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "conf.h"
#include "sluicectl.h"
#include "verp.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

#define NEW_KEY_BYTES 32

static void
usage(void)
{
	fprintf(stderr,
	    "usage: sluicectl verp keygen FILE\n"
	    "       sluicectl [-c CONFIG] verp check ADDRESS\n");
}

static int
cmd_keygen(const char *path)
{
	unsigned char key[NEW_KEY_BYTES];
	size_t off = 0;
	int fd;

	if (RAND_bytes(key, sizeof(key)) != 1) {
		fprintf(stderr, "sluicectl: no random bytes from OpenSSL\n");
		return 2;
	}
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
		fprintf(stderr, "sluicectl: %s: %s\n", path, strerror(errno));
		OPENSSL_cleanse(key, sizeof(key));
		return errno == EEXIST ? 1 : 2;
	}
	while (off < sizeof(key)) {
		ssize_t w = write(fd, key + off, sizeof(key) - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			break;
		off += (size_t)w;
	}
	OPENSSL_cleanse(key, sizeof(key));
	if (off < sizeof(key) || fsync(fd) < 0 || close(fd) < 0) {
		fprintf(stderr, "sluicectl: %s: %s\n", path, strerror(errno));
		unlink(path);
		return 2;
	}
	printf("wrote a %d-byte VERP key to %s (mode 0600)\n"
	    "config: verp-key %s\n", NEW_KEY_BYTES, path, path);
	return 0;
}

static int
cmd_check(const struct ctl_opts *o, const char *addr)
{
	const char *cpath = o->config ? o->config : SYSCONFDIR "/sluice/sluice.conf";
	char err[4096];
	struct config *c = conf_load(cpath, err, sizeof(err));
	struct verp_token t;
	const char *local;
	size_t llen;
	int rc;

	if (c == NULL) {
		fprintf(stderr, "%s%s", err, err[0] && err[strlen(err) - 1] != '\n' ? "\n" : "");
		return 2;
	}
	if (c->bounce_domain == NULL) {
		fprintf(stderr, "sluicectl: %s has no bounce-domain\n", cpath);
		conf_free(c);
		return 2;
	}
	if (!verp_is_bounce_domain(c, addr, &local, &llen)) {
		printf("%s: not at the bounce domain %s\n", addr, c->bounce_domain);
		rc = 1;
	} else {
		switch (verp_check(c->verp_key, c->verp_keylen, local, llen, &t)) {
		case 1:
			printf("%s: valid: queue id %s, recipient index %u\n", addr, t.qid, t.idx);
			rc = 0;
			break;
		case 0:
			printf("%s: not a VERP address\n", addr);
			rc = 1;
			break;
		default:
			printf("%s: forged or altered token\n", addr);
			rc = 1;
		}
	}
	conf_free(c);
	return rc;
}

int
ctl_verp(const struct ctl_opts *o, int argc, char **argv)
{
	if (argc > 0 && strcmp(argv[0], "verp") == 0) {
		argc--;
		argv++;
	}
	if (argc == 1 && (strcmp(argv[0], "help") == 0 || strcmp(argv[0], "--help") == 0)) {
		usage();
		return 0;
	}
	if (argc == 2 && strcmp(argv[0], "keygen") == 0)
		return cmd_keygen(argv[1]);
	if (argc == 2 && strcmp(argv[0], "check") == 0)
		return cmd_check(o, argv[1]);
	usage();
	return 2;
}
