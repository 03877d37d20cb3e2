/*
 * spool.c in a private temporary directory: the write/load round trip of
 * every envelope field and of the body bytes, status records, partial and
 * corrupt files, scanning and removal; the dot-stuffing state machines at
 * every chunk boundary; and inject_rewrite_headers (X-Sluice-* control
 * headers, Message-ID/Date, the header/body boundary).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "conf.h"
#include "inject.h"
#include "log.h"
#include "spool.h"
#include "util.h"

static char dir[64];

static int
setup(void **state)
{
	char err[256];

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/sluice-test-spool-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	if (spool_init(dir, err, sizeof(err)) < 0) {
		fprintf(stderr, "spool_init: %s\n", err);
		return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static int
group_setup(void **state)
{
	(void)state;
	log_open("/dev/null", LOG_ERR);
	return 0;
}

static char *
slurp(const char *path, size_t *len)
{
	char *s = read_file(path, len);

	assert_non_null(s);
	return s;
}

static void
append(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_APPEND);

	assert_true(fd >= 0);
	assert_int_equal(write_all(fd, text, strlen(text)), 0);
	close(fd);
}

static void
put_file(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write_all(fd, data, len), 0);
	close(fd);
}

static bool
exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static int
count_dir(const char *path)
{
	char cmd[PATH_MAX + 64];
	FILE *p;
	int n = -1;

	snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", path);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_int_equal(fscanf(p, "%d", &n), 1);
	pclose(p);
	return n;
}

static size_t
page_round(size_t n)
{
	return (n + 4095) / 4096 * 4096;
}

/* The batch nonce on a version 3 file's first line ("SLUICE 3 NONCE"). */
static uint32_t
nonce_of(const char *file)
{
	assert_memory_equal(file, "SLUICE 3 ", 9);
	return (uint32_t)strtoul(file + 9, NULL, 16);
}

/* The path of a written message's slot file (malloc'd). */
static char *
file_of(const struct spool_msg *m)
{
	char buf[PATH_MAX];

	return xstrdup(spool_file(m->slot, buf, sizeof(buf)));
}

/* A message with every envelope field, body from several iovecs. */
static struct spool_meta full_meta[] = {
	{ "foo", "a b%c\xe2\x82\xac\ttab" },
	{ "from_domain", "example.com" },
	{ "empty", "" },
	{ "key with space", "line1\nline2\r\x7f" },
	{ "pct", "%" },
};
static struct spool_rcpt full_rcpts[] = {
	{ "a@x.test", "rfc822;a@x.test", NOTIFY_SUCCESS | NOTIFY_FAILURE, 0, 0, 0 },
	{ "b@y.test", NULL, 0, 0, 0, 0 },
	{ "j\xc3\xb6rg@z.test", "utf-8;j\\x{00F6}rg@z.test", NOTIFY_NEVER, 0, 0, 0 },
	{ "\"odd local\"@w.test", "rfc822;\"odd local\"@w.test", NOTIFY_DELAY | NOTIFY_FAILURE, 0, 0, 0 },
};
static const char body0[] = "Subject: x\r\n";
static const char body2[] = "\r\n";
static const char body3[] = "..dot\r\nbin\0ary\r\n\xff\xfe end";

static void
full_msg(struct spool_msg *m, struct iovec iov[4])
{
	memset(m, 0, sizeof(*m));
	random_id(m->id);
	m->created_ms = 1700000000123LL;
	m->sender = "bounce+x@example.com";
	m->flags = MF_8BITMIME | MF_SMTPUTF8 | MF_RET_HDRS | MF_SIGNED;
	m->priority = -10;
	m->pool = "bulk pool";
	m->campaign = "spring 100% \xc3\xa9t\xc3\xa9";
	m->envid = "ENV%20id+1";
	m->meta = full_meta;
	m->nmeta = (int)ARRAY_SIZE(full_meta);
	m->rcpts = full_rcpts;
	m->nrcpt = (int)ARRAY_SIZE(full_rcpts);
	iov[0] = (struct iovec){ (void *)body0, sizeof(body0) - 1 };
	iov[1] = (struct iovec){ (void *)"", 0 };
	iov[2] = (struct iovec){ (void *)body2, sizeof(body2) - 1 };
	iov[3] = (struct iovec){ (void *)body3, sizeof(body3) - 1 };
}

static void
test_format_header(void **state)
{
	struct spool_msg m;
	struct spool_rcpt r = { "a@b.test", NULL, 0, 0, 0, 0 };
	char *h;
	size_t len;

	(void)state;
	memset(&m, 0, sizeof(m));
	strcpy(m.id, "0123456789ABCDEFGHJKMNPQRS");
	m.created_ms = 5;
	m.sender = "";
	m.rcpts = &r;
	m.nrcpt = 1;
	m.body_len = 42;
	h = spool_format_header(&m, 0xabcd, &len);
	assert_string_equal(h, "SLUICE 3 0000abcd\nid 0123456789ABCDEFGHJKMNPQRS\ncreated 5\nsender %\n"
	    "flags 0\npriority 0\nrcpt 0 - a@b.test\nbody 42\n\n");
	assert_int_equal(len, strlen(h));
	free(h);

	/* values are percent-encoded into one token each */
	m.sender = "a b@c";
	m.pool = "p%q";
	m.priority = -3;
	m.flags = 9;
	r.orcpt = "rfc822;a@b.test";
	r.notify = 3;
	h = spool_format_header(&m, 0xfedcba98, &len);
	assert_string_equal(h, "SLUICE 3 fedcba98\nid 0123456789ABCDEFGHJKMNPQRS\ncreated 5\nsender a%20b@c\n"
	    "flags 9\npriority -3\npool p%25q\nrcpt 3 rfc822;a@b.test a@b.test\nbody 42\n\n");
	free(h);
}

static void
test_path(void **state)
{
	char p[PATH_MAX], want[PATH_MAX];

	(void)state;
	/* slot N lives in bucket N mod 1024 (two base32 digits) */
	snprintf(want, sizeof(want), "%s/q/00/0", dir);
	assert_string_equal(spool_file(0, p, sizeof(p)), want);
	snprintf(want, sizeof(want), "%s/q/ZZ/1023", dir);
	assert_string_equal(spool_file(1023, p, sizeof(p)), want);
	snprintf(want, sizeof(want), "%s/q/01/1025", dir);
	assert_string_equal(spool_file(1025, p, sizeof(p)), want);
	/* the buckets exist after spool_init */
	snprintf(p, sizeof(p), "%s/q/ZZ", dir);
	assert_true(exists(p));
	snprintf(p, sizeof(p), "%s/q/00", dir);
	assert_true(exists(p));
	snprintf(p, sizeof(p), "%s/tmp", dir);
	assert_true(exists(p));
	assert_int_equal(count_dir(p), 0);
	snprintf(p, sizeof(p), "%s/q", dir);
	assert_int_equal(count_dir(p), 1024);
}

static void
test_round_trip(void **state)
{
	struct spool_msg m, l;
	struct iovec iov[4];
	char err[256], tmpd[PATH_MAX];
	char *path, *file;
	size_t flen, blen = 0;

	(void)state;
	full_msg(&m, iov);
	for (int i = 0; i < 4; i++)
		blen += iov[i].iov_len;
	assert_int_equal(spool_write(&m, iov, 4), 0);
	assert_int_equal(m.body_len, blen);
	path = file_of(&m);
	snprintf(tmpd, sizeof(tmpd), "%s/tmp", dir);
	assert_int_equal(count_dir(tmpd), 0);

	/* the file: header, the body bytes exactly as given, END and the
	 * CRC-32C of everything before it, nothing after */
	file = slurp(path, &flen);
	size_t mlen = (size_t)m.body_off + blen + 13;
	assert_int_equal(flen, mlen);
	uint32_t nonce = nonce_of(file);
	assert_true(nonce != 0);
	assert_memory_equal(file + m.body_off, body0, sizeof(body0) - 1);
	assert_memory_equal(file + m.body_off + sizeof(body0) - 1, body2, sizeof(body2) - 1);
	assert_memory_equal(file + m.body_off + sizeof(body0) - 1 + sizeof(body2) - 1,
	    body3, sizeof(body3) - 1);
	{
		char endl[16];
		snprintf(endl, sizeof(endl), "END %08x\n", (unsigned)spool_crc32c(0, file, mlen - 13));
		assert_memory_equal(file + mlen - 13, endl, 13);
	}
	{
		size_t hl;
		char *h = spool_format_header(&m, nonce, &hl);
		assert_int_equal(hl, (size_t)m.body_off);
		assert_memory_equal(file, h, hl);
		free(h);
	}
	free(file);

	/* and back */
	memset(&l, 0x55, sizeof(l));
	assert_int_equal(spool_load(path, &l, err, sizeof(err)), 0);
	assert_string_equal(l.id, m.id);
	assert_int_equal(l.created_ms, 1700000000123LL);
	assert_string_equal(l.sender, m.sender);
	assert_int_equal(l.flags, m.flags);
	assert_int_equal(l.priority, -10);
	assert_string_equal(l.pool, m.pool);
	assert_string_equal(l.campaign, m.campaign);
	assert_string_equal(l.envid, m.envid);
	assert_int_equal(l.nmeta, m.nmeta);
	for (int i = 0; i < m.nmeta; i++) {
		assert_string_equal(l.meta[i].key, m.meta[i].key);
		assert_string_equal(l.meta[i].value, m.meta[i].value);
	}
	assert_int_equal(l.nrcpt, m.nrcpt);
	for (int i = 0; i < m.nrcpt; i++) {
		assert_string_equal(l.rcpts[i].addr, m.rcpts[i].addr);
		if (m.rcpts[i].orcpt)
			assert_string_equal(l.rcpts[i].orcpt, m.rcpts[i].orcpt);
		else
			assert_null(l.rcpts[i].orcpt);
		assert_int_equal(l.rcpts[i].notify, m.rcpts[i].notify);
		assert_int_equal(l.rcpts[i].state, RS_QUEUED);
		assert_int_equal(l.rcpts[i].attempts, 0);
		assert_int_equal(l.rcpts[i].next_ms, 0);
	}
	assert_int_equal(l.body_off, m.body_off);
	assert_int_equal(l.body_len, blen);
	spool_msg_free(&l);
	assert_null(l.sender);
	assert_int_equal(l.nrcpt, 0);
	free(path);
}

static void
test_null_sender_and_optional_fields(void **state)
{
	struct spool_msg m, l;
	struct spool_rcpt r = { "postmaster@x.test", NULL, 0, 0, 0, 0 };
	struct iovec iov = { (void *)"x", 1 };
	char err[256], *path;

	(void)state;
	memset(&m, 0, sizeof(m));
	random_id(m.id);
	m.sender = "";
	m.rcpts = &r;
	m.nrcpt = 1;
	assert_int_equal(spool_write(&m, &iov, 1), 0);
	path = file_of(&m);
	assert_int_equal(spool_load(path, &l, err, sizeof(err)), 0);
	assert_non_null(l.sender);
	assert_string_equal(l.sender, "");
	assert_null(l.pool);
	assert_null(l.campaign);
	assert_null(l.envid);
	assert_int_equal(l.nmeta, 0);
	assert_int_equal(l.flags, 0);
	assert_int_equal(l.priority, 0);
	assert_int_equal(l.body_len, 1);
	spool_msg_free(&l);
	free(path);

	/* an empty body */
	random_id(m.id);
	assert_int_equal(spool_write(&m, NULL, 0), 0);
	assert_int_equal(m.body_len, 0);
	path = file_of(&m);
	assert_int_equal(spool_load(path, &l, err, sizeof(err)), 0);
	assert_int_equal(l.body_len, 0);
	spool_msg_free(&l);
	free(path);
}

static void
test_large_header_and_many_iovecs(void **state)
{
	enum { NR = 3000, NV = 2500 };
	struct spool_msg m, l;
	struct spool_rcpt *r = calloc(NR, sizeof(*r));
	char (*addrs)[40] = calloc(NR, 40);
	struct iovec *iov = calloc(NV, sizeof(*iov));
	char *want = malloc(NV * 8), *file, err[256], *path;
	size_t wl = 0, flen;

	(void)state;
	assert_non_null(r);
	assert_non_null(addrs);
	assert_non_null(iov);
	assert_non_null(want);
	memset(&m, 0, sizeof(m));
	random_id(m.id);
	m.sender = "s@x.test";
	for (int i = 0; i < NR; i++) {
		snprintf(addrs[i], 40, "user%05d@domain%d.test", i, i % 7);
		r[i].addr = addrs[i];
	}
	m.rcpts = r;
	m.nrcpt = NR;
	/* more pieces than IOV_MAX, of different sizes */
	for (int i = 0; i < NV; i++) {
		char *piece = want + wl;
		int n = i % 7;
		for (int k = 0; k < n; k++)
			piece[k] = (char)('A' + (i + k) % 26);
		iov[i].iov_base = piece;
		iov[i].iov_len = (size_t)n;
		wl += (size_t)n;
	}
	assert_int_equal(spool_write(&m, iov, NV), 0);
	assert_int_equal(m.body_len, wl);
	assert_true(m.body_off > 16384 * 4);
	path = file_of(&m);
	assert_int_equal(spool_load(path, &l, err, sizeof(err)), 0);
	assert_int_equal(l.nrcpt, NR);
	assert_string_equal(l.rcpts[NR - 1].addr, addrs[NR - 1]);
	assert_string_equal(l.rcpts[1234].addr, addrs[1234]);
	assert_int_equal(l.body_off, m.body_off);
	file = slurp(path, &flen);
	assert_int_equal(flen, (size_t)l.body_off + wl + 13);
	assert_memory_equal(file + l.body_off, want, wl);
	free(file);
	spool_msg_free(&l);
	free(path);
	free(want);
	free(iov);
	free(addrs);
	free(r);
}

static char *
write_full(struct spool_msg *m)
{
	struct iovec iov[4];

	full_msg(m, iov);
	assert_int_equal(spool_write(m, iov, 4), 0);
	return file_of(m);
}

/* Append a version 3 record "R NONCE BODY_OFF rest NONCE\n" for m to path,
 * or only its start "R NONCE BODY_OFF rest" (whole false: torn by a crash). */
static void
append_rec(const char *path, const struct spool_msg *m, uint32_t nonce, const char *rest, bool whole)
{
	char line[160];

	if (whole)
		snprintf(line, sizeof(line), "R %08x %lld %s %08x\n", (unsigned)nonce,
		    (long long)m->body_off, rest, (unsigned)nonce);
	else
		snprintf(line, sizeof(line), "R %08x %lld %s", (unsigned)nonce, (long long)m->body_off,
		    rest);
	append(path, line);
}

static void
test_status_records(void **state)
{
	struct spool_msg m, l;
	char err[256], *path, *file;
	size_t flen;

	(void)state;
	path = write_full(&m);
	file = slurp(path, &flen);
	uint32_t nonce = nonce_of(file);
	free(file);
	assert_int_equal(spool_record(&m, 0, RS_DELIVERED, 1, 0), 0);
	assert_int_equal(spool_record(&m, 1, RS_QUEUED, 1, 1700000300000LL), 0);
	assert_int_equal(spool_record(&m, 1, RS_QUEUED, 2, 1700000900000LL), 0);
	assert_int_equal(spool_record(&m, 2, RS_BOUNCED, 1, 0), 0);
	assert_int_equal(spool_record(&m, 3, RS_QUEUED, 4, 1700001000000LL), 0);
	assert_int_equal(spool_record(&m, 3, RS_EXPIRED, 5, 0), 0);
	/* the records as they are on disk */
	file = slurp(path, &flen);
	{
		char want[128];
		snprintf(want, sizeof(want), "\nR %08x %lld 3 3 5 0 %08x\n", (unsigned)nonce,
		    (long long)m.body_off, (unsigned)nonce);
		assert_true(flen > strlen(want));
		assert_memory_equal(file + flen - strlen(want), want, strlen(want));
	}
	free(file);
	assert_int_equal(spool_load(path, &l, err, sizeof(err)), 0);
	assert_int_equal(l.rcpts[0].state, RS_DELIVERED);
	assert_int_equal(l.rcpts[0].attempts, 1);
	/* the last record for a recipient wins */
	assert_int_equal(l.rcpts[1].state, RS_QUEUED);
	assert_int_equal(l.rcpts[1].attempts, 2);
	assert_int_equal(l.rcpts[1].next_ms, 1700000900000LL);
	assert_int_equal(l.rcpts[2].state, RS_BOUNCED);
	assert_int_equal(l.rcpts[3].state, RS_EXPIRED);
	assert_int_equal(l.rcpts[3].attempts, 5);
	assert_int_equal(l.rcpts[3].next_ms, 0);
	spool_msg_free(&l);

	/* records that do not apply are skipped: bad index, bad state, junk,
	 * another batch's nonce, another message's offset, the older
	 * versions' form */
	append_rec(path, &m, nonce, "9 1 1 0", true);
	append_rec(path, &m, nonce, "-1 1 1 0", true);
	append_rec(path, &m, nonce, "1 7 1 0", true);
	append_rec(path, &m, nonce ^ 1, "1 1 9 0", true);
	append(path, "hello\n\nR x y z w\nS 1 1 9 0\n");
	{
		struct spool_msg other = m;
		other.body_off++;
		append_rec(path, &other, nonce, "1 1 9 0", true);
	}
	assert_int_equal(spool_load(path, &l, err, sizeof(err)), 0);
	assert_int_equal(l.rcpts[1].state, RS_QUEUED);
	assert_int_equal(l.rcpts[1].attempts, 2);
	spool_msg_free(&l);

	/* a torn last record (a crash in the middle of the write) is ignored */
	append_rec(path, &m, nonce, "1 3", false);
	assert_int_equal(spool_load(path, &l, err, sizeof(err)), 0);
	assert_int_equal(l.rcpts[1].state, RS_QUEUED);
	assert_int_equal(l.rcpts[1].attempts, 2);
	assert_int_equal(l.rcpts[1].next_ms, 1700000900000LL);
	spool_msg_free(&l);
	free(path);

	/* torn inside its last number: no closing nonce, no end of line */
	path = write_full(&m);
	file = slurp(path, &flen);
	nonce = nonce_of(file);
	free(file);
	assert_int_equal(spool_record(&m, 1, RS_QUEUED, 2, 1700000900000LL), 0);
	append_rec(path, &m, nonce, "1 0 3 17", false);
	assert_int_equal(spool_load(path, &l, err, sizeof(err)), 0);
	assert_int_equal(l.rcpts[1].attempts, 2);
	assert_int_equal(l.rcpts[1].next_ms, 1700000900000LL);
	spool_msg_free(&l);
	/* the next record starts a line of its own after the torn bytes:
	 * the torn one, now a whole line, is still not a record (it lacks
	 * its closing nonce: "17" must not apply), and the next one counts */
	assert_int_equal(spool_record(&m, 1, RS_QUEUED, 3, 1700000950000LL), 0);
	assert_int_equal(spool_load(path, &l, err, sizeof(err)), 0);
	assert_int_equal(l.rcpts[1].state, RS_QUEUED);
	assert_int_equal(l.rcpts[1].attempts, 3);
	assert_int_equal(l.rcpts[1].next_ms, 1700000950000LL);
	spool_msg_free(&l);
	/* a record cut exactly before its closing nonce is not one either */
	append_rec(path, &m, nonce, "1 1 9 0 ", false);
	assert_int_equal(spool_record(&m, 1, RS_DELIVERED, 5, 0), 0);
	assert_int_equal(spool_load(path, &l, err, sizeof(err)), 0);
	assert_int_equal(l.rcpts[1].state, RS_DELIVERED);
	assert_int_equal(l.rcpts[1].attempts, 5);
	spool_msg_free(&l);
	free(path);

	/* a version 2 file (one message) keeps its "S" records */
	{
		static const char v2[] = "SLUICE 1\nid ABC\nsender %\nrcpt 0 - c@d\nrcpt 0 - e@f\n"
		    "body 3\n\nxyzEND\nS 1 1 1 0\nR 00000001 26 0 1 1 0\n";
		char p2[PATH_MAX];
		snprintf(p2, sizeof(p2), "%s/v2", dir);
		put_file(p2, v2, sizeof(v2) - 1);
		assert_int_equal(spool_load(p2, &l, err, sizeof(err)), 0);
		assert_int_equal(l.rcpts[0].state, RS_QUEUED);
		assert_int_equal(l.rcpts[1].state, RS_DELIVERED);
		spool_msg_free(&l);
	}

	/* a slot without a file */
	m.slot = 999999;
	assert_int_equal(spool_record(&m, 0, RS_DELIVERED, 1, 0), -1);
}

/* -1: partial or corrupt (may be removed); -2: an I/O error (must not be) */
static void
load_fails_rc(const char *path, int rc, const char *want)
{
	struct spool_msg l;
	char err[256];

	memset(err, 0, sizeof(err));
	assert_int_equal(spool_load(path, &l, err, sizeof(err)), rc);
	assert_string_equal(err, want);
	assert_null(l.sender);          /* nothing left allocated */
	assert_null(l.rcpts);
	assert_int_equal(l.nrcpt, 0);
}

static void
load_fails(const char *path, const char *want)
{
	load_fails_rc(path, -1, want);
}

static void
test_partial_and_corrupt(void **state)
{
	struct spool_msg m;
	char *path, *file, p2[PATH_MAX];
	size_t flen;
	char want[300];

	(void)state;
	path = write_full(&m);
	file = slurp(path, &flen);
	assert_int_equal(flen, (size_t)m.body_off + m.body_len + 13);

	/* cut before the END line, or inside it */
	assert_int_equal(truncate(path, (off_t)flen - 13), 0);
	load_fails(path, "partial file (body cut short)");
	assert_int_equal(truncate(path, (off_t)flen - 1), 0);
	load_fails(path, "partial file (body cut short)");
	/* cut inside the body */
	assert_int_equal(truncate(path, m.body_off + 3), 0);
	load_fails(path, "partial file (body cut short)");
	/* cut inside the envelope */
	assert_int_equal(truncate(path, 30), 0);
	load_fails(path, "partial file (no end of envelope)");
	assert_int_equal(truncate(path, m.body_off - 1), 0);
	load_fails(path, "partial file (no end of envelope)");
	assert_int_equal(truncate(path, 0), 0);
	load_fails(path, "partial file (no end of envelope)");
	/* the right length but no END where it belongs */
	memcpy(file + flen - 13, "ENX", 3);
	put_file(path, file, flen);
	load_fails(path, "partial file (no END marker)");
	memcpy(file + flen - 13, "END", 3);
	/* one changed byte anywhere (a torn rewrite of a recycled file):
	 * the checksum tells */
	file[m.body_off + 5] ^= 0x20;
	put_file(path, file, flen);
	load_fails(path, "partial file (checksum mismatch)");
	file[m.body_off + 5] ^= 0x20;
	file[30] ^= 0x01;
	put_file(path, file, flen);
	load_fails(path, "partial file (checksum mismatch)");
	file[30] ^= 0x01;
	/* a body longer than the header says */
	{
		char *longer = malloc(flen + 1);
		memcpy(longer, file, m.body_off);
		longer[m.body_off] = 'Z';
		memcpy(longer + m.body_off + 1, file + m.body_off, flen - (size_t)m.body_off);
		put_file(path, longer, flen + 1);
		load_fails(path, "partial file (no END marker)");
		free(longer);
	}
	/* intact again */
	put_file(path, file, flen);
	{
		struct spool_msg l;
		char err[256];
		assert_int_equal(spool_load(path, &l, err, sizeof(err)), 0);
		spool_msg_free(&l);
	}
	free(file);

	/* garbage; and version 3 needs its nonce: eight hex digits, not zero */
	static const char *const not_sluice[] = {
		"GARBAGE\n\nEND\n", "SLUICE 4\nid X\n\nEND\n", "XLUICE 2\nid X\n\nEND\n",
		"SLUICE 3\nid X\n\nEND\n", "SLUICE 3 00000000\nid X\n\nEND\n",
		"SLUICE 3 1234567\nid X\n\nEND\n",
	};
	snprintf(p2, sizeof(p2), "%s/garbage", dir);
	for (size_t i = 0; i < ARRAY_SIZE(not_sluice); i++) {
		put_file(p2, not_sluice[i], strlen(not_sluice[i]));
		load_fails(p2, "not a sluice spool file (version 1, 2 or 3)");
	}
	{
		static const char bad_line[] = "SLUICE 1\nid ABC\nwhat is this\nbody 0\n\nEND\n";
		static const char bad_pct[] = "SLUICE 1\nid ABC\ncreated 1\nsender %G0\nbody 0\n\nEND\n";
		static const char lone[] = "SLUICE 1\nid ABC\nsender\nbody 0\n\nEND\n";
		static const char no_rcpt[] = "SLUICE 1\nid ABC\nsender a@b\nbody 0\n\nEND\n";
		static const char no_body[] = "SLUICE 1\nid ABC\nsender a@b\nrcpt 0 - c@d\n\nEND\n";
		static const char no_id[] = "SLUICE 1\nsender a@b\nrcpt 0 - c@d\nbody 0\n\nEND\n";
		static const char ok[] = "SLUICE 1\nid ABC\nsender %\nrcpt 0 - c@d\nbody 3\n\nxyzEND\nS 0 1 1 0\n";
		static const char bin[] = "\x00\x01\x02\n\n\xff";
		struct spool_msg l;
		char err[256];

		put_file(p2, bad_line, sizeof(bad_line) - 1);
		load_fails(p2, "bad envelope line 3");
		put_file(p2, bad_pct, sizeof(bad_pct) - 1);
		load_fails(p2, "bad envelope line 4");
		put_file(p2, lone, sizeof(lone) - 1);
		load_fails(p2, "bad envelope line 3");
		put_file(p2, no_rcpt, sizeof(no_rcpt) - 1);
		load_fails(p2, "incomplete envelope");
		put_file(p2, no_body, sizeof(no_body) - 1);
		load_fails(p2, "incomplete envelope");
		put_file(p2, no_id, sizeof(no_id) - 1);
		load_fails(p2, "incomplete envelope");
		/* a NUL before the blank line hides it */
		put_file(p2, bin, sizeof(bin) - 1);
		load_fails(p2, "partial file (no end of envelope)");
		/* a minimal hand-written file loads */
		put_file(p2, ok, sizeof(ok) - 1);
		assert_int_equal(spool_load(p2, &l, err, sizeof(err)), 0);
		assert_string_equal(l.id, "ABC");
		assert_string_equal(l.sender, "");
		assert_int_equal(l.body_len, 3);
		assert_int_equal(l.body_off, strstr(ok, "xyz") - ok);
		assert_int_equal(l.rcpts[0].state, RS_DELIVERED);
		spool_msg_free(&l);
	}
	snprintf(p2, sizeof(p2), "%s/missing", dir);
	snprintf(want, sizeof(want), "cannot open: %s", strerror(ENOENT));
	load_fails_rc(p2, -2, want);
	/* a directory opens but cannot be read: an I/O error too */
	snprintf(want, sizeof(want), "read error: %s", strerror(EISDIR));
	load_fails_rc(dir, -2, want);
	free(path);
}

struct seen {
	uint32_t slots[64];
	char ids[64][QID_LEN + 1];
	int n;
};

static void
scan_cb(struct spool_msg *m, void *arg)
{
	struct seen *s = arg;

	assert_true(s->n < 64);
	s->slots[s->n] = m->slot;
	snprintf(s->ids[s->n], sizeof(s->ids[0]), "%s", m->id);
	s->n++;
	spool_msg_free(m);
}

/* spool_scan with SCAN_T threads, each with its own record, merged in s. */
#define SCAN_T 4
static long
scan_all(struct seen *s)
{
	struct seen per[SCAN_T];
	void *args[SCAN_T];

	for (int t = 0; t < SCAN_T; t++) {
		per[t].n = 0;
		args[t] = &per[t];
	}
	long n = spool_scan(SCAN_T, scan_cb, args, NULL);
	for (int t = 0; t < SCAN_T; t++)
		for (int i = 0; i < per[t].n; i++) {
			assert_true(s->n < 64);
			s->slots[s->n] = per[t].slots[i];
			memcpy(s->ids[s->n], per[t].ids[i], sizeof(s->ids[0]));
			s->n++;
		}
	return n;
}

static bool
seen_slot(const struct seen *s, uint32_t slot)
{
	for (int i = 0; i < s->n; i++)
		if (s->slots[i] == slot)
			return true;
	return false;
}

static void
test_scan_and_remove(void **state)
{
	struct spool_msg m[3];
	char *want[3], p[PATH_MAX], err[256];
	struct seen s = { .n = 0 };

	(void)state;
	for (int i = 0; i < 3; i++)
		want[i] = write_full(&m[i]);
	assert_true(m[0].slot != m[1].slot && m[1].slot != m[2].slot);
	/* a partial file left in tmp/ by a crash */
	snprintf(p, sizeof(p), "%s/tmp/%s", dir, "01234567890123456789ABCDEF");
	put_file(p, "SLUICE 1\nid", 11);
	assert_int_equal(spool_init(dir, err, sizeof(err)), 0);     /* a restart */
	assert_int_equal(scan_all(&s), 3);
	assert_false(exists(p));
	assert_int_equal(s.n, 3);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			if (s.slots[j] == m[i].slot)
				assert_string_equal(s.ids[j], m[i].id);
	for (int i = 0; i < 3; i++)
		assert_true(seen_slot(&s, m[i].slot));

	/* a finished message's file is marked: a spare, no longer a message */
	assert_int_equal(spool_done(&m[1], -1, RS_QUEUED, 0), 0);
	assert_true(exists(want[1]));
	load_fails(want[1], "not a sluice spool file (version 1, 2 or 3)");
	s.n = 0;
	assert_int_equal(spool_init(dir, err, sizeof(err)), 0);
	assert_int_equal(scan_all(&s), 2);
	assert_false(seen_slot(&s, m[1].slot));
	/* a slot whose file is gone: nothing to do */
	m[1].slot = 4000000;
	assert_int_equal(spool_done(&m[1], 0, RS_DELIVERED, 1), 0);
	for (int i = 0; i < 3; i++)
		free(want[i]);
}

/*
 * Recycling: a finished slot is marked and the next batch is written into
 * it from its start (same file, no directory fsync, nothing padded or cut
 * unless the spare is far longer). At startup a torn rewrite is refused by
 * the checksum and becomes a spare again; a marked spare is not a message
 * and is reused after the restart.
 */
static void
test_recycle(void **state)
{
	struct spool_msg a, b, l;
	struct iovec iov[4];
	char err[256], *pa, *pb, *file;
	size_t flen;
	long bad = 0;
	struct seen s = { .n = 0 };

	(void)state;
	pa = write_full(&a);
	/* status records after the END line: they must never apply to the
	 * next message written into this file */
	assert_int_equal(spool_record(&a, 0, RS_DELIVERED, 1, 0), 0);
	assert_int_equal(spool_record(&a, 1, RS_BOUNCED, 1, 0), 0);
	assert_int_equal(spool_done(&a, 2, RS_DELIVERED, 1), 0);
	file = slurp(pa, &flen);
	size_t alen = flen;
	assert_memory_equal(file, "XLUICE 3 ", 9);         /* marked: no message */
	free(file);
	load_fails(pa, "not a sluice spool file (version 1, 2 or 3)");

	/* the next message goes into the same slot; a shorter one leaves
	 * a's bytes after it, which count for nothing */
	full_msg(&b, iov);
	b.nrcpt = 2;
	assert_int_equal(spool_write(&b, iov, 4), 0);
	assert_int_equal(b.slot, a.slot);
	pb = file_of(&b);
	assert_string_equal(pb, pa);
	file = slurp(pb, &flen);
	size_t mlen = (size_t)b.body_off + b.body_len + 13;
	assert_true(mlen < alen);
	assert_int_equal(flen, alen);
	free(file);
	assert_int_equal(spool_load(pb, &l, err, sizeof(err)), 0);
	assert_string_equal(l.id, b.id);
	assert_int_equal(l.nrcpt, 2);
	assert_int_equal(l.rcpts[0].state, RS_QUEUED);
	assert_int_equal(l.rcpts[1].state, RS_QUEUED);
	assert_int_equal(l.body_len, b.body_len);
	spool_msg_free(&l);
	/* b's own records apply */
	assert_int_equal(spool_record(&b, 1, RS_QUEUED, 1, 1700000300000LL), 0);
	assert_int_equal(spool_load(pb, &l, err, sizeof(err)), 0);
	assert_int_equal(l.rcpts[0].attempts, 0);
	assert_int_equal(l.rcpts[1].attempts, 1);
	spool_msg_free(&l);

	/* a torn rewrite: the checksum refuses it, the scan counts it as
	 * discarded and keeps the file as a spare */
	file = slurp(pb, &flen);
	file[mlen - 20] ^= 0x40;
	put_file(pb, file, flen);
	free(file);
	assert_int_equal(spool_init(dir, err, sizeof(err)), 0);
	assert_int_equal(spool_scan(1, scan_cb, (void *[]){ &s }, &bad), 0);
	assert_int_equal(bad, 1);
	load_fails(pb, "not a sluice spool file (version 1, 2 or 3)");
	/* a spare is not a message, and a restart keeps it for reuse */
	s.n = 0;
	assert_int_equal(spool_init(dir, err, sizeof(err)), 0);
	assert_int_equal(scan_all(&s), 0);
	full_msg(&b, iov);
	assert_int_equal(spool_write(&b, iov, 4), 0);
	assert_int_equal(b.slot, a.slot);
	/* a new slot when there is no spare: numbered after the last one */
	full_msg(&l, iov);
	assert_int_equal(spool_write(&l, iov, 4), 0);
	assert_int_equal(l.slot, a.slot + 1);

	/* a spare far longer than the next batch is cut back to whole pages */
	{
		size_t n = 200000;
		struct iovec big = { xmalloc(n), n };
		memset(big.iov_base, 'm', n);
		full_msg(&a, iov);
		assert_int_equal(spool_write(&a, &big, 1), 0);
		assert_int_equal(spool_done(&a, -1, RS_QUEUED, 0), 0);
		full_msg(&b, iov);
		assert_int_equal(spool_write(&b, iov, 4), 0);
		assert_int_equal(b.slot, a.slot);
		free(pb);
		file = slurp(pb = file_of(&b), &flen);
		assert_int_equal(flen, page_round((size_t)b.body_off + b.body_len + 13));
		/* the cut leaves a's bytes up to the page's end, in mid-line:
		 * the first record still starts a line of its own */
		assert_true(file[flen - 1] == 'm');
		free(file);
		assert_int_equal(spool_record(&b, 1, RS_BOUNCED, 1, 0), 0);
		assert_int_equal(spool_load(pb, &l, err, sizeof(err)), 0);
		assert_int_equal(l.rcpts[1].state, RS_BOUNCED);
		spool_msg_free(&l);
		free(big.iov_base);
		free(pb);
	}
	free(pa);
}

/*
 * A batch: several messages in one file, written by hand as spool_write's
 * leader does (one nonce, one after the other). Each has its records; a
 * message of another batch after them, or a torn one, ends the file's
 * messages; the slot becomes a spare when its last message is done, and
 * until then a finished message is a record, so a restart does not bring
 * it back.
 */
static size_t
batch_msg(char *out, struct spool_msg *m, uint32_t nonce, off_t at, const char *body)
{
	struct spool_rcpt *r = xcalloc(2, sizeof(*r));
	size_t hl, bl = strlen(body);

	memset(m, 0, sizeof(*m));
	random_id(m->id);
	m->sender = "s@x.test";
	r[0].addr = "a@x.test";
	r[1].addr = "b@x.test";
	m->rcpts = r;
	m->nrcpt = 2;
	m->body_len = bl;
	char *h = spool_format_header(m, nonce, &hl);
	memcpy(out, h, hl);
	memcpy(out + hl, body, bl);
	snprintf(out + hl + bl, 14, "END %08x\n", (unsigned)spool_crc32c(0, out, hl + bl));
	m->body_off = at + (off_t)hl;
	free(h);
	free(r);
	m->rcpts = NULL;
	return hl + bl + 13;
}

static void
by_id(const struct seen *s, const char *id, bool want)
{
	bool got = false;

	for (int i = 0; i < s->n; i++)
		got |= strcmp(s->ids[i], id) == 0;
	assert_true(got == want);
}

static void
test_batch_file(void **state)
{
	struct spool_msg m[4];
	char *file = xmalloc(8192), path[PATH_MAX], err[256];
	size_t len = 0;
	uint32_t nonce = 0x5eed1234;
	struct seen s = { .n = 0 };
	long bad = 0;

	(void)state;
	len += batch_msg(file + len, &m[0], nonce, (off_t)len, "first\r\n");
	len += batch_msg(file + len, &m[1], nonce, (off_t)len, "second\r\n");
	len += batch_msg(file + len, &m[2], nonce, (off_t)len, "third\r\n");
	size_t three = len;
	/* an older batch's message right after them: not this file's */
	len += batch_msg(file + len, &m[3], nonce + 1, (off_t)len, "stale\r\n");
	spool_file(7, path, sizeof(path));
	put_file(path, file, len);
	append_rec(path, &m[1], nonce, "0 1 1 0", true);
	append_rec(path, &m[3], nonce + 1, "0 1 1 0", true);

	assert_int_equal(spool_init(dir, err, sizeof(err)), 0);
	assert_int_equal(spool_scan(1, scan_cb, (void *[]){ &s }, &bad), 3);
	assert_int_equal(bad, 0);
	for (int i = 0; i < 3; i++)
		by_id(&s, m[i].id, true);
	by_id(&s, m[3].id, false);
	for (int i = 0; i < 3; i++)
		assert_int_equal(s.slots[i], 7);
	{
		struct spool_msg l;
		assert_int_equal(spool_load(path, &l, err, sizeof(err)), 0);   /* the first */
		assert_string_equal(l.id, m[0].id);
		spool_msg_free(&l);
	}

	/* m[1] is done (its second recipient last): a record, the file stays */
	for (int i = 0; i < 3; i++)
		m[i].slot = 7;
	assert_int_equal(spool_done(&m[1], 1, RS_BOUNCED, 2), 0);
	{
		size_t flen;
		char *f = slurp(path, &flen);
		assert_memory_equal(f, "SLUICE 3 ", 9);
		free(f);
	}
	/* after a restart it comes back finished: its recipients are not
	 * queued (the queue then calls spool_done for it, idx -1) */
	s.n = 0;
	assert_int_equal(spool_init(dir, err, sizeof(err)), 0);
	assert_int_equal(scan_all(&s), 3);
	assert_int_equal(spool_done(&m[1], -1, RS_QUEUED, 0), 0);
	assert_int_equal(spool_done(&m[0], 0, RS_DELIVERED, 1), 0);
	{
		size_t flen;
		char *f = slurp(path, &flen);
		assert_memory_equal(f, "SLUICE 3 ", 9);
		free(f);
	}
	/* the last one marks the file: a spare */
	assert_int_equal(spool_done(&m[2], 1, RS_DELIVERED, 1), 0);
	load_fails(path, "not a sluice spool file (version 1, 2 or 3)");

	/* a torn second message: the first is kept, the rest is not */
	memcpy(file, "SLUICE", 6);
	file[three - 30] ^= 1;
	put_file(path, file, len);
	s.n = 0;
	bad = 0;
	assert_int_equal(spool_init(dir, err, sizeof(err)), 0);
	assert_int_equal(spool_scan(1, scan_cb, (void *[]){ &s }, &bad), 2);
	assert_int_equal(bad, 0);
	by_id(&s, m[0].id, true);
	by_id(&s, m[1].id, true);
	by_id(&s, m[2].id, false);
	/* a torn first message: the file is discarded, whatever follows */
	file[20] ^= 1;
	put_file(path, file, len);
	s.n = 0;
	assert_int_equal(spool_init(dir, err, sizeof(err)), 0);
	assert_int_equal(spool_scan(1, scan_cb, (void *[]){ &s }, &bad), 0);
	assert_int_equal(bad, 1);
	free(file);
}

/* A one-recipient message with a fresh id (r: its recipient). */
static void
small_msg(struct spool_msg *m, struct spool_rcpt *r)
{
	memset(m, 0, sizeof(*m));
	random_id(m->id);
	m->sender = "s@x.test";
	m->rcpts = r;
	m->nrcpt = 1;
}

/* Asynchronous writes: the first finds no commit running and must run one;
 * the ones queued before it runs are flushed with it, into one file. */
struct async_done {
	int calls, err;
};

static void
async_cb(void *arg, int err)
{
	struct async_done *d = arg;

	d->calls++;
	d->err = err;
}

static void
test_async_batch(void **state)
{
	struct spool_msg m[5];
	struct spool_rcpt r = { "a@x.test", NULL, 0, 0, 0, 0 };
	struct iovec iov[5];
	struct async_done d[5] = { { 0, -1 } };
	char body[5][16], err[256];
	struct seen s = { .n = 0 };

	(void)state;
	for (int i = 0; i < 5; i++) {
		small_msg(&m[i], &r);
		iov[i] = (struct iovec){ body[i], (size_t)snprintf(body[i], sizeof(body[i]), "body %d\r\n", i) };
		assert_int_equal(spool_write_async(&m[i], &iov[i], 1, async_cb, &d[i]), i == 0);
		assert_int_equal(d[i].calls, 0);
	}
	spool_commit_run();
	for (int i = 0; i < 5; i++) {
		assert_int_equal(d[i].calls, 1);
		assert_int_equal(d[i].err, 0);
		assert_int_equal(m[i].slot, m[0].slot);
		if (i > 0)
			assert_true(m[i].body_off > m[i - 1].body_off);
	}
	/* the queue is empty: the next write must run a commit again */
	assert_int_equal(spool_write_async(&m[0], &iov[0], 1, async_cb, &d[0]), true);
	spool_commit_run();
	assert_int_equal(d[0].calls, 2);
	assert_true(m[0].slot != m[1].slot);
	assert_int_equal(spool_init(dir, err, sizeof(err)), 0);
	assert_int_equal(scan_all(&s), 6);
	{
		char path[PATH_MAX];
		struct spool_msg l;
		spool_file(m[1].slot, path, sizeof(path));
		assert_int_equal(spool_load(path, &l, err, sizeof(err)), 0);
		assert_string_equal(l.id, m[0].id);   /* the file's first message */
		spool_msg_free(&l);
	}
}

/* A message spooled while the startup scan runs (a DSN, say) goes into a
 * slot the scan does not read: it is queued once, and its file is whole. */
struct during {
	struct seen s;
	struct spool_msg x;
	bool written;
};

static void
during_cb(struct spool_msg *m, void *arg)
{
	struct during *d = arg;

	if (!d->written) {
		struct iovec iov[4];
		full_msg(&d->x, iov);
		assert_int_equal(spool_write(&d->x, iov, 4), 0);
		d->written = true;
	}
	scan_cb(m, &d->s);
}

static void
test_write_during_scan(void **state)
{
	struct spool_msg m[3], l;
	struct during d = { .written = false };
	char err[256], path[PATH_MAX];

	(void)state;
	for (int i = 0; i < 3; i++)
		free(write_full(&m[i]));
	assert_int_equal(spool_init(dir, err, sizeof(err)), 0);
	assert_int_equal(spool_scan(1, during_cb, (void *[]){ &d }, NULL), 3);
	assert_true(d.written);
	for (int i = 0; i < 3; i++)
		by_id(&d.s, m[i].id, true);
	by_id(&d.s, d.x.id, false);
	assert_int_equal(spool_load(spool_file(d.x.slot, path, sizeof(path)), &l, err, sizeof(err)), 0);
	assert_string_equal(l.id, d.x.id);
	spool_msg_free(&l);
	/* the next start finds all four */
	struct seen s = { .n = 0 };
	assert_int_equal(spool_init(dir, err, sizeof(err)), 0);
	assert_int_equal(scan_all(&s), 4);
	by_id(&s, d.x.id, true);
}

/* A batch that does not fit (here: over RLIMIT_FSIZE, EFBIG; on a full
 * disk ENOSPC) is retried message by message: the big one is refused,
 * the small ones are spooled. */
static void
test_batch_too_big(void **state)
{
	struct spool_msg m[3];
	struct spool_rcpt r = { "a@x.test", NULL, 0, 0, 0, 0 };
	struct iovec iov[3];
	struct async_done d[3] = { { 0, -1 }, { 0, -1 }, { 0, -1 } };
	size_t big = 200000;
	char *bigbuf = xmalloc(big);
	struct rlimit old, lim = { 65536, 65536 };

	(void)state;
	memset(bigbuf, 'b', big);
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim.rlim_max = old.rlim_max;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	for (int i = 0; i < 3; i++) {
		small_msg(&m[i], &r);
		iov[i] = i == 1 ? (struct iovec){ bigbuf, big } : (struct iovec){ (void *)"small\r\n", 7 };
		spool_write_async(&m[i], &iov[i], 1, async_cb, &d[i]);
	}
	spool_commit_run();
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_DFL);
	assert_int_equal(d[0].err, 0);
	assert_int_equal(d[1].err, EFBIG);
	assert_int_equal(d[2].err, 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(d[i].calls, 1);
	assert_true(m[0].slot != m[2].slot);
	free(bigbuf);
}

/* Concurrent writers: their messages share files and fsyncs, and every one
 * is found by the scan, once. */
#define GC_T 8
#define GC_N 40

struct gc_arg {
	struct spool_msg m[GC_N];
	char ids[GC_N][QID_LEN + 1];
};

static void *
gc_writer(void *arg)
{
	struct gc_arg *g = arg;
	static struct spool_rcpt r = { "a@x.test", NULL, 0, 0, 0, 0 };

	for (int i = 0; i < GC_N; i++) {
		char body[64];
		struct iovec iov = { body, (size_t)snprintf(body, sizeof(body), "m%d\r\n", i) };
		small_msg(&g->m[i], &r);
		memcpy(g->ids[i], g->m[i].id, sizeof(g->ids[i]));
		if (spool_write(&g->m[i], &iov, 1) != 0)
			g->ids[i][0] = '\0';
	}
	return NULL;
}

struct gc_seen {
	pthread_mutex_t lock;
	char (*ids)[QID_LEN + 1];
	int n;
};

static void
gc_cb(struct spool_msg *m, void *arg)
{
	struct gc_seen *g = arg;

	pthread_mutex_lock(&g->lock);
	memcpy(g->ids[g->n++], m->id, QID_LEN + 1);
	pthread_mutex_unlock(&g->lock);
	spool_msg_free(m);
}

static int
cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void
test_group_commit(void **state)
{
	static struct gc_arg g[GC_T];
	pthread_t t[GC_T];
	char err[256];
	struct gc_seen seen = { PTHREAD_MUTEX_INITIALIZER, NULL, 0 };

	(void)state;
	for (int i = 0; i < GC_T; i++)
		assert_int_equal(pthread_create(&t[i], NULL, gc_writer, &g[i]), 0);
	for (int i = 0; i < GC_T; i++)
		pthread_join(t[i], NULL);
	char (*want)[QID_LEN + 1] = xcalloc(GC_T * GC_N, QID_LEN + 1);
	for (int i = 0; i < GC_T; i++)
		for (int k = 0; k < GC_N; k++) {
			assert_true(g[i].ids[k][0] != '\0');
			memcpy(want[i * GC_N + k], g[i].ids[k], QID_LEN + 1);
			/* each message's body is where its body_off says */
			struct spool_msg l;
			int fd = spool_open(&g[i].m[k]);
			char b[16] = { 0 };
			assert_true(fd >= 0);
			assert_int_equal(pread(fd, b, g[i].m[k].body_len, g[i].m[k].body_off),
			    (ssize_t)g[i].m[k].body_len);
			close(fd);
			char wb[16];
			snprintf(wb, sizeof(wb), "m%d\r\n", k);
			assert_string_equal(b, wb);
			(void)l;
		}
	seen.ids = xcalloc(GC_T * GC_N, QID_LEN + 1);
	assert_int_equal(spool_init(dir, err, sizeof(err)), 0);
	void *args[SCAN_T] = { &seen, &seen, &seen, &seen };
	assert_int_equal(spool_scan(SCAN_T, gc_cb, args, NULL), GC_T * GC_N);
	qsort(want, GC_T * GC_N, QID_LEN + 1, cmp_id);
	qsort(seen.ids, GC_T * GC_N, QID_LEN + 1, cmp_id);
	for (int i = 0; i < GC_T * GC_N; i++)
		assert_string_equal(seen.ids[i], want[i]);
	free(want);
	free(seen.ids);
}

/*
 * A spool written by an older sluice: q/XX/ID files and f.SEQ files are
 * renamed to slots and loaded by content, t.* files removed.
 */
static void
test_legacy_names(void **state)
{
	struct spool_msg a, b;
	struct iovec iov[4];
	char err[256], *pa, *pb, old_a[PATH_MAX + 64], old_b[PATH_MAX + 64],
	    spare[PATH_MAX + 64], part[PATH_MAX + 64], bdir[PATH_MAX];
	struct seen s = { .n = 0 };

	(void)state;
	pa = write_full(&a);
	full_msg(&b, iov);
	assert_int_equal(spool_write(&b, iov, 4), 0);
	pb = file_of(&b);
	snprintf(bdir, sizeof(bdir), "%.*s", (int)(strrchr(pa, '/') - pa), pa);
	snprintf(old_a, sizeof(old_a), "%s/%s", bdir, a.id);
	assert_int_equal(rename(pa, old_a), 0);
	snprintf(old_b, sizeof(old_b), "%s/f.17", bdir);
	assert_int_equal(rename(pb, old_b), 0);
	snprintf(spare, sizeof(spare), "%s/f.18", bdir);
	put_file(spare, "XLUICE 2\nid X\n", 15);
	snprintf(part, sizeof(part), "%s/t.%s", bdir, a.id);
	put_file(part, "SLUICE 2\nid", 11);

	assert_int_equal(spool_init(dir, err, sizeof(err)), 0);
	assert_int_equal(scan_all(&s), 2);
	assert_false(exists(old_a));
	assert_false(exists(old_b));
	assert_false(exists(spare));
	assert_false(exists(part));
	assert_int_equal(count_dir(bdir), 3);               /* two messages, a spare */
	bool got_a = false, got_b = false;
	for (int i = 0; i < s.n; i++) {
		got_a |= strcmp(s.ids[i], a.id) == 0;
		got_b |= strcmp(s.ids[i], b.id) == 0;
		assert_int_equal(s.slots[i] % 1024, a.slot % 1024);
	}
	assert_true(got_a && got_b);
	/* new slots come after every slot the scan saw */
	full_msg(&b, iov);
	assert_int_equal(spool_write(&b, iov, 4), 0);       /* the spare */
	assert_int_equal(spool_write(&b, iov, 4), 0);       /* a new one */
	for (int i = 0; i < s.n; i++)
		assert_true(b.slot > s.slots[i]);
	free(pa);
	free(pb);
}

/*
 * The parallel scan over a big spool: messages, spares, torn rewrites, an
 * older sluice's names and partials mixed in every bucket. Each message is
 * handed over exactly once; spares, torn rewrites and partials never (a
 * torn rewrite is counted as discarded and becomes a spare); the legacy
 * files once each, under a new slot of their own bucket; and the spares
 * are reused afterwards.
 */
#define MANY 5000                   /* about five files a bucket */
#define MANY_T 8

struct handed {
	uint32_t *slots;
	size_t n, cap;
	const char *want_id;            /* every message is a copy of one */
	bool bad_content;
};

static void
many_cb(struct spool_msg *m, void *arg)
{
	struct handed *h = arg;

	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 1024;
		h->slots = xrealloc(h->slots, sizeof(*h->slots) * h->cap);
	}
	h->slots[h->n++] = m->slot;
	if (strcmp(m->id, h->want_id) != 0)
		h->bad_content = true;
	spool_msg_free(m);
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}


static void
test_scan_parallel_many(void **state)
{
	struct spool_msg m;
	char *pm, *file, path[PATH_MAX + 64], bdir[PATH_MAX], err[256];
	size_t flen;
	static bool is_msg[MANY + 1], is_spare[MANY + 1];
	int nmsg = 0, nlegacy = 0, nspare = 0, ntorn = 0;
	long bad = 0;
	struct handed h[MANY_T];
	void *args[MANY_T];

	(void)state;
	pm = write_full(&m);                                /* slot 0 */
	assert_int_equal(m.slot, 0);
	is_msg[0] = true;
	nmsg++;
	file = slurp(pm, &flen);
	for (uint32_t k = 1; k <= MANY; k++) {
		spool_file(k, path, sizeof(path));
		snprintf(bdir, sizeof(bdir), "%.*s", (int)(strrchr(path, '/') - path), path);
		switch (k % 7) {
		case 0: case 1: case 2:                    /* a message */
			put_file(path, file, flen);
			is_msg[k] = true;
			nmsg++;
			break;
		case 3:                                     /* a spare */
			file[0] = 'X';
			put_file(path, file, flen);
			file[0] = 'S';
			is_spare[k] = true;
			nspare++;
			break;
		case 4:                                     /* a torn rewrite */
			file[m.body_off + 1] ^= 1;
			put_file(path, file, flen);
			file[m.body_off + 1] ^= 1;
			is_spare[k] = true;                 /* refused by the checksum */
			ntorn++;
			break;
		case 5:                                     /* an older sluice's f.SEQ */
			snprintf(path, sizeof(path), "%s/f.%u", bdir, k);
			put_file(path, file, flen);
			nlegacy++;
			break;
		default:                                    /* its partial t.ID */
			snprintf(path, sizeof(path), "%s/t.%u", bdir, k);
			put_file(path, file, flen / 3);
			break;
		}
	}
	assert_int_equal(spool_init(dir, err, sizeof(err)), 0);
	for (int t = 0; t < MANY_T; t++) {
		h[t] = (struct handed){ .want_id = m.id };
		args[t] = &h[t];
	}
	assert_int_equal(spool_scan(MANY_T, many_cb, args, &bad), nmsg + nlegacy);
	assert_int_equal(bad, ntorn);

	/* merged: every slot once */
	size_t n = 0;
	uint32_t *all = xmalloc(sizeof(*all) * (size_t)(nmsg + nlegacy));
	for (int t = 0; t < MANY_T; t++) {
		assert_false(h[t].bad_content);
		for (size_t i = 0; i < h[t].n; i++)
			all[n++] = h[t].slots[i];
		free(h[t].slots);
	}
	assert_int_equal(n, (size_t)(nmsg + nlegacy));
	qsort(all, n, sizeof(*all), cmp_u32);
	int got_msg = 0, got_legacy = 0;
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			assert_true(all[i] != all[i - 1]);
		if (all[i] <= MANY) {
			assert_true(is_msg[all[i]]);
			assert_false(is_spare[all[i]]);
			got_msg++;
		} else {
			/* a renamed legacy file: a slot name now, read by content */
			spool_file(all[i], path, sizeof(path));
			assert_true(exists(path));
			got_legacy++;
		}
	}
	assert_int_equal(got_msg, nmsg);
	assert_int_equal(got_legacy, nlegacy);
	/* nothing of the old names is left */
	for (uint32_t k = 1; k <= MANY; k++) {
		spool_file(k, path, sizeof(path));
		snprintf(bdir, sizeof(bdir), "%.*s", (int)(strrchr(path, '/') - path), path);
		snprintf(path, sizeof(path), "%s/%c.%u", bdir, k % 7 == 5 ? 'f' : 't', k);
		if (k % 7 >= 5)
			assert_false(exists(path));
	}
	/* a new message goes into a spare, the next new slot after them all */
	struct spool_msg b;
	struct iovec iov[4];
	full_msg(&b, iov);
	assert_int_equal(spool_write(&b, iov, 4), 0);
	assert_true(b.slot <= MANY && is_spare[b.slot]);
	for (int i = 1; i < nspare + ntorn; i++)
		assert_int_equal(spool_write(&b, iov, 4), 0);
	assert_int_equal(spool_write(&b, iov, 4), 0);
	assert_true(b.slot > all[n - 1]);
	free(all);
	free(file);
	free(pm);
}

static void
test_write_elsewhere_and_errors(void **state)
{
	char other[PATH_MAX], p[PATH_MAX], err[256], *path;
	struct spool_msg m, l;
	struct iovec iov[4];

	(void)state;
	/* switch to a second spool: writes go there */
	snprintf(other, sizeof(other), "%s/other", dir);
	assert_int_equal(spool_init(other, err, sizeof(err)), 0);
	full_msg(&m, iov);
	assert_int_equal(spool_write(&m, iov, 4), 0);
	path = file_of(&m);
	assert_true(strncmp(path, other, strlen(other)) == 0);
	assert_int_equal(spool_load(path, &l, err, sizeof(err)), 0);
	assert_int_equal(l.body_len, m.body_len);
	spool_msg_free(&l);
	free(path);

	/* the bucket directory of the next new slot is gone: the errno, and
	 * the write fails cleanly */
	snprintf(p, sizeof(p), "%s/q/01", other);
	assert_int_equal(rmdir(p), 0);
	assert_int_equal(spool_write(&m, iov, 4), ENOENT);

	/* spool_init on something that cannot be a directory */
	snprintf(other, sizeof(other), "%s/file", dir);
	put_file(other, "x", 1);
	assert_int_equal(spool_init(other, err, sizeof(err)), -1);
	assert_true(strstr(err, "cannot create") == err);
	assert_int_equal(spool_init(dir, err, sizeof(err)), 0);
}

/* ---- dot-stuffing ---- */

static size_t
stuff_all(char *dst, const char *src, size_t len)
{
	int st = DOT_STATE_INIT;

	return dot_stuff(dst, src, len, &st);
}

static void
stuff_is(const char *in, const char *want)
{
	char out[512];
	size_t n = stuff_all(out, in, strlen(in));

	assert_true(n <= DOT_STUFF_MAX(strlen(in)));
	out[n] = '\0';
	assert_string_equal(out, want);
}

static void
test_dot_stuff(void **state)
{
	char out[64];
	int st;
	size_t n;

	(void)state;
	stuff_is("", "");
	stuff_is("abc\r\n.def\r\n", "abc\r\n..def\r\n");
	stuff_is(".first\r\n", "..first\r\n");
	stuff_is(".\r\n", "..\r\n");
	stuff_is("a\r\n.\r\nb", "a\r\n..\r\nb");
	stuff_is("..\r\n", "...\r\n");
	stuff_is("a.b\r\n", "a.b\r\n");
	stuff_is(" .x\r\n", " .x\r\n");
	/* bare LF becomes CRLF, and still ends a line */
	stuff_is("a\nb\n", "a\r\nb\r\n");
	stuff_is("a\n.b\n", "a\r\n..b\r\n");
	stuff_is("\n\n", "\r\n\r\n");
	stuff_is(".\n", "..\r\n");
	/* a bare CR is data: it neither ends the line nor gets an LF */
	stuff_is("a\rb\r\n", "a\rb\r\n");
	stuff_is("a\r.b\r\n", "a\r.b\r\n");
	stuff_is("\r.x\r\n", "\r.x\r\n");
	stuff_is("a\r\r\nb", "a\r\r\nb");
	stuff_is("a\r", "a\r");
	/* DOT_STUFF_MAX is the worst case */
	stuff_is(".\n.\n.\n", "..\r\n..\r\n..\r\n");

	/* CR and LF split across two calls */
	st = DOT_STATE_INIT;
	n = dot_stuff(out, "a\r", 2, &st);
	n += dot_stuff(out + n, "\n.b", 3, &st);
	out[n] = '\0';
	assert_string_equal(out, "a\r\n..b");
	/* a dot right after a chunk that ended a line */
	st = DOT_STATE_INIT;
	n = dot_stuff(out, "x\r\n", 3, &st);
	n += dot_stuff(out + n, ".", 1, &st);
	out[n] = '\0';
	assert_string_equal(out, "x\r\n..");
	/* a chunk ending mid-line: no stuffing of the next chunk's dot */
	st = DOT_STATE_INIT;
	n = dot_stuff(out, "x", 1, &st);
	n += dot_stuff(out + n, ".y", 2, &st);
	out[n] = '\0';
	assert_string_equal(out, "x.y");
}

static void
test_dot_unstuff(void **state)
{
	char buf[64];
	int st;
	size_t n;

	(void)state;
	strcpy(buf, "..a\r\n..\r\nb.\r\n.c\r\n...\r\n");
	st = DOT_STATE_INIT;
	n = dot_unstuff(buf, strlen(buf), &st);
	buf[n] = '\0';
	assert_string_equal(buf, ".a\r\n.\r\nb.\r\nc\r\n..\r\n");
	/* state across chunks */
	st = DOT_STATE_INIT;
	strcpy(buf, "x\r\n");
	n = dot_unstuff(buf, 3, &st);
	assert_int_equal(n, 3);
	strcpy(buf, "..y");
	n = dot_unstuff(buf, 3, &st);
	assert_int_equal(n, 2);
	assert_memory_equal(buf, ".y", 2);
	strcpy(buf, ".z");
	n = dot_unstuff(buf, 2, &st);      /* mid-line: kept */
	assert_int_equal(n, 2);
}

static const char sample[] =
	".leading\r\nline\n.\r\n..two\r\nbare\rCR\r\n\r\n.\n\r.x\nmid.dot\r"
	"\n\r\r\n.\r.\n\n.end";
static const char sample_stuffed[] =
	"..leading\r\nline\r\n..\r\n...two\r\nbare\rCR\r\n\r\n..\r\n\r.x\r\nmid.dot\r"
	"\n\r\r\n..\r.\r\n\r\n..end";

/* bare LF -> CRLF, everything else as is */
static size_t
normalise(char *dst, const char *src, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		if (src[i] == '\n' && (i == 0 || src[i - 1] != '\r'))
			dst[o++] = '\r';
		dst[o++] = src[i];
	}
	return o;
}

static void
test_dot_every_split(void **state)
{
	size_t len = sizeof(sample) - 1, wl = sizeof(sample_stuffed) - 1;
	char out[256], back[256], norm[256];
	size_t n, nl;
	int st;

	(void)state;
	n = stuff_all(out, sample, len);
	assert_int_equal(n, wl);
	assert_memory_equal(out, sample_stuffed, wl);

	/* every split point into two chunks gives the same output */
	for (size_t k = 0; k <= len; k++) {
		st = DOT_STATE_INIT;
		n = dot_stuff(out, sample, k, &st);
		n += dot_stuff(out + n, sample + k, len - k, &st);
		assert_int_equal(n, wl);
		assert_memory_equal(out, sample_stuffed, wl);
	}
	/* and so does byte by byte */
	st = DOT_STATE_INIT;
	n = 0;
	for (size_t k = 0; k < len; k++)
		n += dot_stuff(out + n, sample + k, 1, &st);
	assert_int_equal(n, wl);
	assert_memory_equal(out, sample_stuffed, wl);

	/* unstuff(stuff(x)) == x with CRLF line ends, whole and at every split */
	nl = normalise(norm, sample, len);
	memcpy(back, sample_stuffed, wl);
	st = DOT_STATE_INIT;
	n = dot_unstuff(back, wl, &st);
	assert_int_equal(n, nl);
	assert_memory_equal(back, norm, nl);
	for (size_t k = 0; k <= wl; k++) {
		size_t a, b;
		memcpy(back, sample_stuffed, wl);
		st = DOT_STATE_INIT;
		a = dot_unstuff(back, k, &st);
		b = dot_unstuff(back + k, wl - k, &st);
		memmove(back + a, back + k, b);
		assert_int_equal(a + b, nl);
		assert_memory_equal(back, norm, nl);
	}
	st = DOT_STATE_INIT;
	n = 0;
	memcpy(back, sample_stuffed, wl);
	for (size_t k = 0; k < wl; k++) {
		size_t r = dot_unstuff(back + k, 1, &st);
		if (r)
			back[n++] = back[k];
	}
	assert_int_equal(n, nl);
	assert_memory_equal(back, norm, nl);
}

static void
test_dot_round_trip_random(void **state)
{
	static const char alphabet[] = ".\r\na";
	char in[64], out[DOT_STUFF_MAX(64)], norm[128];
	uint8_t rnd[64];

	(void)state;
	for (int round = 0; round < 3000; round++) {
		size_t len = (size_t)(round % 64), n, nl;
		int st = DOT_STATE_INIT;

		random_bytes(rnd, sizeof(rnd));
		for (size_t i = 0; i < len; i++)
			in[i] = alphabet[rnd[i] & 3];
		n = stuff_all(out, in, len);
		assert_true(n <= DOT_STUFF_MAX(len));
		/* in wire form no line starts with a single '.' that is data */
		for (size_t i = 0; i < n; i++)
			if (out[i] == '\n')
				assert_true(i >= 1 && out[i - 1] == '\r');
		n = dot_unstuff(out, n, &st);
		nl = normalise(norm, in, len);
		assert_int_equal(n, nl);
		assert_memory_equal(out, norm, nl);
	}
}

/* ---- inject_rewrite_headers ---- */

static struct config *iconf;

static int
inject_setup(void **state)
{
	char err[512];

	(void)state;
	iconf = conf_load_string("hostname mta.test\nsource s1 { }\npool bulk { source s1 }\n",
	    "inject.conf", err, sizeof(err));
	if (iconf == NULL) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	conf_install(iconf);
	return 0;
}

static int
inject_teardown(void **state)
{
	(void)state;
	conf_free_all();
	return 0;
}

struct rw {
	int rc;
	char *out;                      /* NUL-terminated */
	size_t outlen, body_off;
	char reply[256];
};

static struct rw
rewrite(struct inject *in, const char *msg)
{
	struct rw r;

	memset(&r, 0, sizeof(r));
	r.rc = inject_rewrite_headers(in, msg, strlen(msg), &r.out, &r.outlen, &r.body_off,
	    r.reply, sizeof(r.reply));
	assert_non_null(r.out);
	r.out[r.outlen] = '\0';
	return r;
}

static struct inject *
new_inject(void)
{
	struct inject *in = inject_new();

	strcpy(in->env.id, "0123456789ABCDEFGHJKMNPQRS");
	return in;
}

static const char *
meta(const struct inject *in, const char *key)
{
	for (int i = 0; i < in->env.nmeta; i++)
		if (strcmp(in->env.meta[i].key, key) == 0)
			return in->env.meta[i].value;
	return NULL;
}

/* "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n" at s, exactly one. */
static void
assert_date_line(const char *s)
{
	static const char *const days[] = { "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun" };
	bool ok = false;

	assert_memory_equal(s, "Date: ", 6);
	for (int i = 0; i < 7; i++)
		ok |= memcmp(s + 6, days[i], 3) == 0;
	assert_true(ok);
	assert_memory_equal(s + 9, ", ", 2);
	assert_true(s[13] == ' ' && s[17] == ' ' && s[22] == ' ' && s[25] == ':' && s[28] == ':');
	assert_memory_equal(s + 31, " +0000\r\n", 8);
}

#define MID "Message-ID: <0123456789ABCDEFGHJKMNPQRS@mta.test>\r\n"

static void
test_rewrite_control_headers(void **state)
{
	struct inject *in = new_inject();
	const char *msg =
	    "From: Name <a@Example.COM>\r\n"
	    "To: b@x.test\r\n"
	    "X-Sluice-Pool: bulk\r\n"
	    "X-Sluice-Campaign: spring\r\n sale\r\n"
	    "x-sluice-priority: bulk\r\n"
	    "X-Sluice-Notify: never\r\n"
	    "X-Sluice-Foo:  bar  baz \r\n"
	    "X-SLUICE-Foo-Bar:\t1\r\n"
	    "Subject: a folded\r\n\tsubject line\r\n"
	    "\r\n"
	    "X-Sluice-Pool: not a header, the body\r\n";
	const char *want =
	    "From: Name <a@Example.COM>\r\n"
	    "To: b@x.test\r\n"
	    "Subject: a folded\r\n\tsubject line\r\n"
	    MID;
	struct rw r;

	(void)state;
	r = rewrite(in, msg);
	assert_int_equal(r.rc, 0);
	assert_memory_equal(r.out, want, strlen(want));
	assert_date_line(r.out + strlen(want));
	assert_int_equal(r.outlen, strlen(want) + 39);
	assert_string_equal(msg + r.body_off, "\r\nX-Sluice-Pool: not a header, the body\r\n");
	assert_string_equal(in->env.pool, "bulk");
	assert_string_equal(in->env.campaign, "spring sale");
	assert_int_equal(in->env.priority, -10);
	assert_true(in->env.flags & MF_NOTIFY_NEVER);
	assert_string_equal(meta(in, "foo"), "bar  baz");
	assert_string_equal(meta(in, "foo-bar"), "1");
	assert_string_equal(meta(in, "message_id"), "<0123456789ABCDEFGHJKMNPQRS@mta.test>");
	assert_string_equal(meta(in, "from_domain"), "example.com");
	assert_null(meta(in, "pool"));
	assert_null(meta(in, "notify"));
	assert_int_equal(in->env.nmeta, 4);
	free(r.out);
	inject_free(in);
}

static void
test_rewrite_keeps_existing(void **state)
{
	struct inject *in = new_inject();
	const char *msg =
	    "message-id: <abc@x.test>\r\n"
	    "DATE: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	    "From: \"Last, First\" <x@Sub.Example.COM>\r\n"
	    "From: second@other.test\r\n"
	    "X-Sluice-: kept\r\n"
	    "X-Sluice-Notify: always\r\n"
	    "X-Sluice-Priority: 42\r\n"
	    "X-Sluice-Campaign: c1\r\n"
	    "X-Sluice-Campaign: c2\r\n"
	    "X-Sluice-Tag: one\r\n"
	    "X-Sluice-tag: two\r\n"
	    "\r\n"
	    "body\r\n";
	const char *want =
	    "Received: from client.test\r\n\tby mta.test; Mon, 1 Jan 2024 00:00:01 +0000\r\n"
	    "message-id: <abc@x.test>\r\n"
	    "DATE: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	    "From: \"Last, First\" <x@Sub.Example.COM>\r\n"
	    "From: second@other.test\r\n"
	    "X-Sluice-: kept\r\n";
	struct rw r;

	(void)state;
	in->received = xstrdup("Received: from client.test\r\n\tby mta.test; Mon, 1 Jan 2024 00:00:01 +0000");
	r = rewrite(in, msg);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, want);
	assert_string_equal(msg + r.body_off, "\r\nbody\r\n");
	assert_string_equal(meta(in, "message_id"), "<abc@x.test>");
	assert_string_equal(meta(in, "from_domain"), "sub.example.com");
	assert_string_equal(meta(in, "tag"), "two");        /* the last one */
	assert_string_equal(in->env.campaign, "c2");
	assert_int_equal(in->env.priority, 42);
	assert_false(in->env.flags & MF_NOTIFY_NEVER);
	assert_null(in->env.pool);
	free(r.out);
	inject_free(in);
}

static void
test_rewrite_errors(void **state)
{
	static const struct { const char *v; int want; } prio[] = {
		{ "transactional", 10 }, { "HIGH", 10 }, { "urgent", 10 }, { "normal", 0 },
		{ "low", -10 }, { "-100", -100 }, { "100", 100 }, { "0", 0 },
	};
	static const char *const bad_prio[] = { "101", "-101", "soon", "5x", "" };
	struct inject *in;
	struct rw r;
	char msg[128];

	(void)state;
	in = new_inject();
	r = rewrite(in, "X-Sluice-Pool: nosuch\r\nSubject: s\r\n\r\nb\r\n");
	assert_int_equal(r.rc, -1);
	assert_string_equal(r.reply, "550 5.6.0 X-Sluice-Pool: unknown pool \"nosuch\"");
	assert_null(in->env.pool);
	free(r.out);
	inject_free(in);

	/* pool names are case-insensitive */
	in = new_inject();
	r = rewrite(in, "X-Sluice-Pool: BULK\r\n\r\nb\r\n");
	assert_int_equal(r.rc, 0);
	assert_non_null(in->env.pool);
	assert_non_null(conf_pool(conf, in->env.pool));
	free(r.out);
	inject_free(in);

	for (size_t i = 0; i < ARRAY_SIZE(prio); i++) {
		in = new_inject();
		in->env.priority = 77;
		snprintf(msg, sizeof(msg), "X-Sluice-Priority: %s\r\n\r\n", prio[i].v);
		r = rewrite(in, msg);
		assert_int_equal(r.rc, 0);
		assert_int_equal(in->env.priority, prio[i].want);
		free(r.out);
		inject_free(in);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad_prio); i++) {
		in = new_inject();
		snprintf(msg, sizeof(msg), "X-Sluice-Priority: %s\r\n\r\n", bad_prio[i]);
		r = rewrite(in, msg);
		assert_int_equal(r.rc, -1);
		assert_string_equal(r.reply,
		    "550 5.6.0 X-Sluice-Priority: expected transactional, normal, bulk or -100..100");
		assert_int_equal(in->env.priority, 0);
		free(r.out);
		inject_free(in);
	}
}

static void
test_rewrite_boundaries(void **state)
{
	struct inject *in;
	struct rw r;
	const char *msg;

	(void)state;
	/* no blank line: the body starts at the first line that is not a header,
	 * and the stored header block gets the blank line */
	in = new_inject();
	msg = "Subject: x\r\nhello world\r\n";
	r = rewrite(in, msg);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.body_off, 12);
	assert_string_equal(msg + r.body_off, "hello world\r\n");
	assert_memory_equal(r.out, "Subject: x\r\n" MID, 12 + strlen(MID));
	assert_date_line(r.out + 12 + strlen(MID));
	assert_string_equal(r.out + 12 + strlen(MID) + 39, "\r\n");
	free(r.out);
	inject_free(in);

	/* the first line is not a header: all of it is body */
	in = new_inject();
	msg = "Hello there\r\nSubject: not a header now\r\n";
	r = rewrite(in, msg);
	assert_int_equal(r.body_off, 0);
	assert_memory_equal(r.out, MID, strlen(MID));
	assert_date_line(r.out + strlen(MID));
	assert_string_equal(r.out + strlen(MID) + 39, "\r\n");
	assert_null(meta(in, "from_domain"));
	free(r.out);
	inject_free(in);

	/* a line that starts with ':' or a space, or has no colon */
	in = new_inject();
	msg = ": no name\r\n";
	r = rewrite(in, msg);
	assert_int_equal(r.body_off, 0);
	free(r.out);
	inject_free(in);

	/* headers only, the last one without CRLF */
	in = new_inject();
	msg = "From: a@B.Org\r\nSubject: x";
	r = rewrite(in, msg);
	assert_int_equal(r.body_off, strlen(msg));
	assert_memory_equal(r.out, "From: a@B.Org\r\nSubject: x\r\n" MID, 27 + strlen(MID));
	assert_date_line(r.out + 27 + strlen(MID));
	assert_int_equal(r.outlen, 27 + strlen(MID) + 39);
	assert_string_equal(meta(in, "from_domain"), "b.org");
	free(r.out);
	inject_free(in);

	/* a folded header at the very end, without CRLF */
	in = new_inject();
	msg = "Subject: x\r\n y";
	r = rewrite(in, msg);
	assert_int_equal(r.body_off, strlen(msg));
	assert_memory_equal(r.out, "Subject: x\r\n y\r\n" MID, 16 + strlen(MID));
	free(r.out);
	inject_free(in);

	/* an empty message */
	in = new_inject();
	r = rewrite(in, "");
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.body_off, 0);
	assert_memory_equal(r.out, MID, strlen(MID));
	assert_int_equal(r.outlen, strlen(MID) + 39);
	free(r.out);
	inject_free(in);

	/* From: without an address */
	in = new_inject();
	r = rewrite(in, "From: undisclosed-recipients:;\r\n\r\n");
	assert_null(meta(in, "from_domain"));
	free(r.out);
	inject_free(in);
	in = new_inject();
	r = rewrite(in, "From: <a@>\r\n\r\n");
	assert_null(meta(in, "from_domain"));
	free(r.out);
	inject_free(in);
}

int
main(void)
{
	const struct CMUnitTest spool_tests[] = {
		cmocka_unit_test(test_format_header),
		cmocka_unit_test_setup_teardown(test_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_null_sender_and_optional_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_large_header_and_many_iovecs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partial_and_corrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan_and_remove, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recycle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_async_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_during_scan, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_too_big, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_legacy_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan_parallel_many, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_elsewhere_and_errors, setup, teardown),
		cmocka_unit_test(test_dot_stuff),
		cmocka_unit_test(test_dot_unstuff),
		cmocka_unit_test(test_dot_every_split),
		cmocka_unit_test(test_dot_round_trip_random),
	};
	const struct CMUnitTest inject_tests[] = {
		cmocka_unit_test(test_rewrite_control_headers),
		cmocka_unit_test(test_rewrite_keeps_existing),
		cmocka_unit_test(test_rewrite_errors),
		cmocka_unit_test(test_rewrite_boundaries),
	};
	int rc = cmocka_run_group_tests_name("spool", spool_tests, group_setup, NULL);

	rc += cmocka_run_group_tests_name("inject", inject_tests, inject_setup, inject_teardown);
	return rc;
}
