/*
 * spool: the durable message store. Slot files of one or more messages:
 *
 *   SLUICE 3 NONCE\n  id ..\n  created ..\n ... rcpt ..\n  body LEN\n  \n
 *   <LEN bytes of wire-form message>
 *   END CRC\n                      (CRC-32C of the message's bytes before it)
 *   SLUICE 3 NONCE\n ... END CRC\n (more messages of the same batch)
 *   R NONCE BODY_OFF idx state attempts next_ms NONCE\n ...   (status records)
 *
 * Values are percent-encoded (bytes <= 0x20, '%' and 0x7f), so every field
 * is one token. Version 1 and 2 files (one message, "S" records) are still
 * read.
 *
 * Files are slots: q/XX/N, N a decimal slot number, XX its bucket (N mod
 * 1024 in base32). A slot's name never changes; what it holds is told by
 * its content. "SLUICE" at its start and a matching END checksum: a
 * message, and the messages after it with its nonce. Anything else
 * ("XLUICE", empty, a torn rewrite): a spare, the next batch's file.
 *
 * Writing a batch (group commit, below) into a spare: one pwritev from
 * offset 0, fdatasync, checked close. The fdatasync is the commit: the
 * file's name is already durable, and the checksums tell a complete
 * rewrite from a torn one. Into a new slot (no spare left): created
 * O_EXCL, then the same, then an fsync of q/XX (its descriptor is kept
 * open). When every message of a slot is finished, its first byte turns
 * "SLUICE" into "XLUICE" and the slot goes on the spare list.
 *
 * Why slots: creating, renaming and unlinking inodes at thousands per
 * second is the most expensive thing ext4 does for a spool (without a
 * journal it scans for recently deleted inodes on every create); a slot
 * costs an open, a write and one disk flush per batch, nothing else.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "spool.h"
#include "util.h"

#define NBUCKETS 1024
static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* Directory descriptors of q/XX: every file operation is relative to one. */
static int bucket_fd[NBUCKETS];
static char *spool_dir;

/* Spare slots, most recently finished on top (their pages are the ones
 * still in the page cache). Beyond MAX_SPARES a finished file is unlinked. */
#define MAX_SPARES 8192
static pthread_mutex_t spare_lock = PTHREAD_MUTEX_INITIALIZER;
struct spare { uint32_t slot; off_t size; };
static struct spare spares[MAX_SPARES];
static int nspares;
static _Atomic uint32_t slot_next;   /* next new slot number */

static bool
spare_pop(struct spare *sp)
{
	bool ok = false;

	pthread_mutex_lock(&spare_lock);
	if (nspares > 0) {
		*sp = spares[--nspares];
		ok = true;
	}
	pthread_mutex_unlock(&spare_lock);
	return ok;
}

static bool
spare_push(uint32_t slot, off_t size)
{
	bool ok = false;

	pthread_mutex_lock(&spare_lock);
	if (nspares < MAX_SPARES) {
		spares[nspares++] = (struct spare){ slot, size };
		ok = true;
	}
	pthread_mutex_unlock(&spare_lock);
	return ok;
}

/*
 * What the spool knows of each slot: its batch's nonce (0: a version 1 or
 * 2 file, one message), how many of its messages are not finished, and
 * whether this process has had its hands on it (read it at the scan, or
 * created or rewritten it): the startup scan reads only the others, so a
 * slot created while the scan runs (a DSN, say) is never read as well,
 * nor a file being written taken for a torn one. In pages allocated on
 * first use; under spare_lock.
 */
struct slot_info {
	uint32_t nonce, live;
	bool known;
	bool creating;                  /* write_batch's O_EXCL open under way */
};
#define SLOT_PAGE_BITS 16
#define SLOT_PAGE (1u << SLOT_PAGE_BITS)
static struct slot_info **slot_pages;      /* 1 << (32 - SLOT_PAGE_BITS) pages */

static struct slot_info *
slot_info(uint32_t slot, bool create)
{
	uint32_t p = slot >> SLOT_PAGE_BITS;

	if (slot_pages == NULL) {
		if (!create)
			return NULL;
		slot_pages = xcalloc((size_t)1 << (32 - SLOT_PAGE_BITS), sizeof(*slot_pages));
	}
	if (slot_pages[p] == NULL) {
		if (!create)
			return NULL;
		slot_pages[p] = xcalloc(SLOT_PAGE, sizeof(**slot_pages));
	}
	return &slot_pages[p][slot & (SLOT_PAGE - 1)];
}

static void
slot_info_reset(void)
{
	if (slot_pages == NULL)
		return;
	for (size_t p = 0; p < (size_t)1 << (32 - SLOT_PAGE_BITS); p++)
		free(slot_pages[p]);
	free(slot_pages);
	slot_pages = NULL;
}

static void
bucket_name(int b, char out[3])
{
	out[0] = b32[b / 32];
	out[1] = b32[b % 32];
	out[2] = '\0';
}

/* A slot's directory descriptor and its name in it. */
static int
slot_at(uint32_t slot, char name[12])
{
	snprintf(name, 12, "%" PRIu32, slot);
	return bucket_fd[slot % NBUCKETS];
}

static int
mkdir_p(const char *path, mode_t mode)
{
	if (mkdir(path, mode) == 0 || errno == EEXIST)
		return 0;
	return -1;
}

int
spool_init(const char *dir, char *err, size_t errlen)
{
	char path[PATH_MAX], b[3];
	int fds[NBUCKETS];

	if (mkdir_p(dir, 0750) < 0) {
		snprintf(err, errlen, "cannot create spool %s: %s", dir, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/tmp", dir);
	if (mkdir_p(path, 0750) < 0)
		goto fail;
	snprintf(path, sizeof(path), "%s/q", dir);
	if (mkdir_p(path, 0750) < 0)
		goto fail;
	for (int i = 0; i < NBUCKETS; i++) {
		bucket_name(i, b);
		snprintf(path, sizeof(path), "%s/q/%s", dir, b);
		if (mkdir_p(path, 0750) < 0 ||
		    (fds[i] = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
			int e = errno;
			while (--i >= 0)
				close(fds[i]);
			errno = e;
			goto fail;
		}
	}
	for (int i = 0; i < NBUCKETS; i++) {
		if (bucket_fd[i] > 0)
			close(bucket_fd[i]);
		bucket_fd[i] = fds[i];
	}
	pthread_mutex_lock(&spare_lock);
	nspares = 0;            /* spool_scan finds this spool's spares */
	slot_info_reset();
	pthread_mutex_unlock(&spare_lock);
	atomic_store(&slot_next, 0);
	free(spool_dir);
	spool_dir = xstrdup(dir);
	return 0;
fail:
	snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
	return -1;
}

const char *
spool_file(uint32_t slot, char *buf, size_t len)
{
	char b[3];

	bucket_name((int)(slot % NBUCKETS), b);
	snprintf(buf, len, "%s/q/%s/%" PRIu32, spool_dir ? spool_dir : "?", b, slot);
	return buf;
}

int
spool_open(const struct spool_msg *m)
{
	char name[12];
	int dfd = slot_at(m->slot, name);

	return openat(dfd, name, O_RDONLY | O_CLOEXEC);
}

/* Percent-encoding of one value. */
static void
sb_enc(struct sbuf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	if (s == NULL || *s == '\0') {
		sb_add(b, "%", 1);      /* "%" alone = empty */
		return;
	}
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c <= 0x20 || c == '%' || c == 0x7f) {
			char e[3] = { '%', hex[c >> 4], hex[c & 15] };
			sb_add(b, e, 3);
		} else
			sb_add(b, (const char *)&c, 1);
	}
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	return -1;
}

/* Decode a token in place; "%" alone is the empty string. */
static int
pdec(char *s)
{
	char *o = s;

	if (strcmp(s, "%") == 0) {
		*s = '\0';
		return 0;
	}
	for (char *p = s; *p; p++) {
		if (*p == '%') {
			int h = hexval(p[1]), l = h >= 0 ? hexval(p[2]) : -1;
			if (h < 0 || l < 0)
				return -1;
			*o++ = (char)(h * 16 + l);
			p += 2;
		} else
			*o++ = *p;
	}
	*o = '\0';
	return 0;
}

char *
spool_format_header(const struct spool_msg *m, uint32_t nonce, size_t *len)
{
	struct sbuf b = { 0 };
	size_t body = m->body_len;

	sb_printf(&b, "SLUICE 3 %08" PRIx32 "\nid %s\ncreated %" PRId64 "\nsender ", nonce, m->id,
	    m->created_ms);
	sb_enc(&b, m->sender);
	sb_printf(&b, "\nflags %u\npriority %d\n", m->flags, m->priority);
	if (m->pool) { sb_add(&b, "pool ", 5); sb_enc(&b, m->pool); sb_add(&b, "\n", 1); }
	if (m->campaign) { sb_add(&b, "campaign ", 9); sb_enc(&b, m->campaign); sb_add(&b, "\n", 1); }
	if (m->envid) { sb_add(&b, "envid ", 6); sb_enc(&b, m->envid); sb_add(&b, "\n", 1); }
	for (int i = 0; i < m->nmeta; i++) {
		sb_add(&b, "meta ", 5);
		sb_enc(&b, m->meta[i].key);
		sb_add(&b, " ", 1);
		sb_enc(&b, m->meta[i].value);
		sb_add(&b, "\n", 1);
	}
	for (int i = 0; i < m->nrcpt; i++) {
		sb_printf(&b, "rcpt %u ", m->rcpts[i].notify);
		if (m->rcpts[i].orcpt)
			sb_enc(&b, m->rcpts[i].orcpt);
		else
			sb_add(&b, "-", 1);
		sb_add(&b, " ", 1);
		sb_enc(&b, m->rcpts[i].addr);
		sb_add(&b, "\n", 1);
	}
	sb_printf(&b, "body %zu\n\n", body);
	*len = b.len;
	return b.p;
}

static const char end_marker[] = "END\n";        /* version 1 */

/*
 * CRC-32C (Castagnoli) of the envelope and message, stored in the END line
 * of a version 2 file: a recycled file is rewritten in place, so a crash in
 * the middle of that write can leave any mix of old and new blocks; the
 * checksum is what tells a complete message from such a mix.
 */
#define CRC32C_POLY 0x82F63B78u
static uint32_t crc_table[256];
static bool crc_hw;
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void
crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ CRC32C_POLY : c >> 1;
		crc_table[i] = c;
	}
#if defined(__x86_64__) && defined(__GNUC__)
	__builtin_cpu_init();
	crc_hw = __builtin_cpu_supports("sse4.2");
#endif
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("sse4.2"))) static uint32_t
crc_run_hw(uint32_t c, const unsigned char *p, size_t n)
{
	uint64_t c64 = c;

	for (; n >= 8; p += 8, n -= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c64 = __builtin_ia32_crc32di(c64, v);
	}
	c = (uint32_t)c64;
	for (; n > 0; p++, n--)
		c = __builtin_ia32_crc32qi(c, *p);
	return c;
}
#endif

uint32_t
spool_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint32_t c = ~crc;

	pthread_once(&crc_once, crc_init);
#if defined(__x86_64__) && defined(__GNUC__)
	if (crc_hw)
		return ~crc_run_hw(c, p, len);
#endif
	for (; len > 0; p++, len--)
		c = crc_table[(c ^ *p) & 0xff] ^ (c >> 8);
	return ~c;
}

#define END_LINE_LEN 13             /* "END xxxxxxxx\n" */

/*
 * Group commit. A message to spool is queued (spool_write_async); one
 * thread at a time runs spool_commit_run(): it takes every message queued
 * (up to BATCH_MAX and BATCH_BYTES), writes them one after another into
 * one slot file with one pwritev, fdatasyncs it once and reports to each,
 * then takes what was queued meanwhile, until nothing is. So under load a
 * flush covers many messages, and alone a message waits for nothing but
 * its own.
 *
 * A batch's messages share a random nonce: it is on each one's first line
 * ("SLUICE 3 NONCE"), and a message after the first in a file counts only
 * with the first one's nonce, so the bytes of an older batch left after a
 * shorter rewrite are never taken for a message. Status records carry it
 * too, with the message's body offset. Nothing after the last message
 * needs overwriting, so a rewrite pads nothing and cuts nothing (unless
 * the spare is far longer: then it is cut back).
 */
#define BATCH_MAX 64
#define BATCH_BYTES (1 << 20)
#define CUT_SLACK 65536             /* a spare this much longer is cut */

struct commit {
	struct spool_msg *m;
	const struct iovec *iov;
	int iovcnt;
	spool_write_fn done;
	void *arg;
	struct commit *next;
};

static pthread_mutex_t commit_lock = PTHREAD_MUTEX_INITIALIZER;
static struct commit *commit_head, **commit_tail = &commit_head;
static bool committing;             /* a spool_commit_run() is on its way */

static size_t
iov_bytes(const struct iovec *iov, int n)
{
	size_t t = 0;

	for (int i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

/* pwritev all of v[0..nv) at off (v is consumed). */
static int
pwritev_all(int fd, struct iovec *v, int nv, off_t off)
{
	int at = 0;

	while (at < nv) {
		ssize_t w = pwritev(fd, v + at, MIN(nv - at, IOV_MAX), off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		off += w;
		while (w > 0 && at < nv) {
			if ((size_t)w >= v[at].iov_len) {
				w -= (ssize_t)v[at].iov_len;
				at++;
			} else {
				v[at].iov_base = (char *)v[at].iov_base + w;
				v[at].iov_len -= (size_t)w;
				w = 0;
			}
		}
		while (at < nv && v[at].iov_len == 0)
			at++;
	}
	return 0;
}

/*
 * Write a batch (n messages) into one slot: a spare rewritten in place
 * (its name is durable, the checksums make its content self-validating),
 * or a new slot, created and its directory fsync'd. Sets every message's
 * slot and body_off; 0 or an errno value for all of them.
 */
static int
write_batch(struct commit *batch, int n)
{
	char name[12];
	char (*endl)[END_LINE_LEN + 1] = xmalloc(sizeof(*endl) * (size_t)n);
	char **hdr = xcalloc((size_t)n, sizeof(*hdr));
	int cap = 0, nv = 0, fd = -1, dfd = -1, e = 0;
	struct iovec *v = NULL;
	struct spare sp = { 0, 0 };
	bool reused = false;
	uint32_t nonce, slot = 0;
	off_t off = 0;

	while (fd < 0 && spare_pop(&sp)) {
		slot = sp.slot;
		dfd = slot_at(slot, name);
		fd = openat(dfd, name, O_WRONLY | O_CLOEXEC);
		if (fd < 0 && errno != ENOENT) {
			/* out of descriptors, say: the spare stays one */
			e = errno;
			spare_push(sp.slot, sp.size);
			goto out;
		}
		reused = fd >= 0;
	}
	while (fd < 0) {
		slot = atomic_fetch_add(&slot_next, 1);
		/* a slot the startup scan has read, or one it is to read (the
		 * O_EXCL open fails): not ours; one we create: the scan must
		 * not read it (it waits while we find out which) */
		pthread_mutex_lock(&spare_lock);
		struct slot_info *si = slot_info(slot, true);
		bool taken = si->known;
		si->creating = !taken;
		pthread_mutex_unlock(&spare_lock);
		if (taken)
			continue;
		dfd = slot_at(slot, name);
		fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		int oe = errno;
		pthread_mutex_lock(&spare_lock);
		si = slot_info(slot, true);
		si->creating = false;
		si->known = fd >= 0;
		pthread_mutex_unlock(&spare_lock);
		if (fd < 0 && oe != EEXIST) {
			e = oe;
			goto out;
		}
	}
	/* never the nonce of the slot's previous batch: its records are there */
	pthread_mutex_lock(&spare_lock);
	uint32_t prev = slot_info(slot, true)->nonce;
	pthread_mutex_unlock(&spare_lock);
	do
		random_bytes(&nonce, sizeof(nonce));
	while (nonce == 0 || nonce == prev);
	for (struct commit *c = batch; c; c = c->next)
		cap += c->iovcnt + 2;
	v = xmalloc(sizeof(*v) * (size_t)cap);
	int k = 0;
	for (struct commit *c = batch; c; c = c->next, k++) {
		struct spool_msg *m = c->m;
		size_t hlen;
		m->body_len = iov_bytes(c->iov, c->iovcnt);
		hdr[k] = spool_format_header(m, nonce, &hlen);
		m->body_off = off + (off_t)hlen;
		uint32_t crc = spool_crc32c(0, hdr[k], hlen);
		v[nv++] = (struct iovec){ hdr[k], hlen };
		for (int i = 0; i < c->iovcnt; i++) {
			crc = spool_crc32c(crc, c->iov[i].iov_base, c->iov[i].iov_len);
			if (c->iov[i].iov_len)
				v[nv++] = c->iov[i];
		}
		snprintf(endl[k], sizeof(endl[k]), "END %08" PRIx32 "\n", crc);
		v[nv++] = (struct iovec){ endl[k], END_LINE_LEN };
		off = m->body_off + (off_t)m->body_len + END_LINE_LEN;
	}
	e = pwritev_all(fd, v, nv, 0);
	/* a spare far longer than this batch (it grew with status records,
	 * or held a bigger batch): cut back to whole pages */
	off_t keep = (off + 4095) / 4096 * 4096;
	if (e == 0 && reused && sp.size > off + CUT_SLACK && ftruncate(fd, keep) < 0)
		e = errno;
	if (e == 0 && fdatasync(fd) < 0)
		e = errno;
	if (close(fd) < 0 && e == 0)
		e = errno;
	if (e == 0 && !reused && fsync(dfd) < 0)
		e = errno;
	if (e != 0) {
		unlinkat(dfd, name, 0);     /* never a message a client was refused */
		goto out;
	}
	pthread_mutex_lock(&spare_lock);
	*slot_info(slot, true) = (struct slot_info){ nonce, (uint32_t)n, true, false };
	pthread_mutex_unlock(&spare_lock);
	for (struct commit *c = batch; c; c = c->next)
		c->m->slot = slot;
out:
	for (int i = 0; i < n; i++)
		free(hdr[i]);
	free(hdr);
	free(endl);
	free(v);
	return e;
}

bool
spool_write_async(struct spool_msg *m, const struct iovec *iov, int iovcnt, spool_write_fn done,
    void *arg)
{
	struct commit *c = xmalloc(sizeof(*c));
	bool run;

	*c = (struct commit){ m, iov, iovcnt, done, arg, NULL };
	pthread_mutex_lock(&commit_lock);
	*commit_tail = c;
	commit_tail = &c->next;
	run = !committing;
	committing = true;
	pthread_mutex_unlock(&commit_lock);
	return run;
}

void
spool_commit_run(void)
{
	pthread_mutex_lock(&commit_lock);
	while (commit_head != NULL) {
		/* take the queue, up to the limits */
		struct commit *batch = commit_head, **cut = &commit_head;
		size_t bytes = 0;
		int n = 0;
		while (*cut && n < BATCH_MAX && (n == 0 || bytes < BATCH_BYTES)) {
			bytes += iov_bytes((*cut)->iov, (*cut)->iovcnt);
			n++;
			cut = &(*cut)->next;
		}
		commit_head = *cut;
		if (commit_head == NULL)
			commit_tail = &commit_head;
		*cut = NULL;
		pthread_mutex_unlock(&commit_lock);
		int e = spool_dir ? write_batch(batch, n) : EINVAL;
		for (struct commit *c = batch, *next; c; c = next) {
			next = c->next;
			/* out of room: one big message must not refuse the small
			 * ones that still fit, so each is tried alone */
			if (n > 1 && (e == ENOSPC || e == EDQUOT || e == EFBIG)) {
				c->next = NULL;
				c->done(c->arg, write_batch(c, 1));
			} else
				c->done(c->arg, e);
			free(c);
		}
		pthread_mutex_lock(&commit_lock);
	}
	committing = false;
	pthread_mutex_unlock(&commit_lock);
}

static void
sync_done(void *arg, int err)
{
	completion_signal(arg, err);
}

int
spool_write(struct spool_msg *m, const struct iovec *iov, int iovcnt)
{
	struct completion w = COMPLETION_INIT;

	if (spool_dir == NULL)
		return EINVAL;
	if (spool_write_async(m, iov, iovcnt, sync_done, &w))
		spool_commit_run();
	return completion_wait(&w);
}

static void
add_rcpt(struct spool_msg *m, struct spool_rcpt *r)
{
	if ((m->nrcpt & (m->nrcpt - 1)) == 0)   /* grow at powers of two */
		m->rcpts = xrealloc(m->rcpts, sizeof(*m->rcpts) * (size_t)(m->nrcpt ? m->nrcpt * 2 : 1));
	m->rcpts[m->nrcpt++] = *r;
}

/* The envelope; returns the version (1, 2 or 3; *nonce for 3) or -1. */
static int
parse_header(char *h, struct spool_msg *m, uint32_t *nonce, char *err, size_t errlen)
{
	char *save = NULL, *line;
	int lineno = 0, version = 0;
	bool have_body = false;

	for (line = strtok_r(h, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *f[4] = { 0 };
		int nf = 0;
		char *s2 = NULL;
		lineno++;
		for (char *t = strtok_r(line, " ", &s2); t && nf < 4; t = strtok_r(NULL, " ", &s2))
			f[nf++] = t;
		if (lineno == 1) {
			char *end = NULL;
			if (nf == 2 && strcmp(f[0], "SLUICE") == 0 &&
			    (strcmp(f[1], "1") == 0 || strcmp(f[1], "2") == 0))
				version = f[1][0] - '0';
			else if (nf == 3 && strcmp(f[0], "SLUICE") == 0 && strcmp(f[1], "3") == 0 &&
			    strlen(f[2]) == 8 && (*nonce = (uint32_t)strtoul(f[2], &end, 16)) != 0 &&
			    *end == '\0')
				version = 3;
			else {
				snprintf(err, errlen, "not a sluice spool file (version 1, 2 or 3)");
				return -1;
			}
			continue;
		}
		if (nf < 2)
			goto bad;
		for (int i = 1; i < nf; i++)
			if (pdec(f[i]) < 0)
				goto bad;
		if (strcmp(f[0], "id") == 0)
			snprintf(m->id, sizeof(m->id), "%s", f[1]);
		else if (strcmp(f[0], "created") == 0)
			m->created_ms = strtoll(f[1], NULL, 10);
		else if (strcmp(f[0], "sender") == 0)
			m->sender = xstrdup(f[1]);
		else if (strcmp(f[0], "flags") == 0)
			m->flags = (uint32_t)strtoul(f[1], NULL, 10);
		else if (strcmp(f[0], "priority") == 0)
			m->priority = (int)strtol(f[1], NULL, 10);
		else if (strcmp(f[0], "pool") == 0)
			m->pool = xstrdup(f[1]);
		else if (strcmp(f[0], "campaign") == 0)
			m->campaign = xstrdup(f[1]);
		else if (strcmp(f[0], "envid") == 0)
			m->envid = xstrdup(f[1]);
		else if (strcmp(f[0], "meta") == 0 && nf == 3) {
			m->meta = xrealloc(m->meta, sizeof(*m->meta) * (size_t)(m->nmeta + 1));
			m->meta[m->nmeta].key = xstrdup(f[1]);
			m->meta[m->nmeta].value = xstrdup(f[2]);
			m->nmeta++;
		} else if (strcmp(f[0], "rcpt") == 0 && nf == 4) {
			struct spool_rcpt r = { 0 };
			r.notify = (uint8_t)strtoul(f[1], NULL, 10);
			r.orcpt = strcmp(f[2], "-") == 0 ? NULL : xstrdup(f[2]);
			r.addr = xstrdup(f[3]);
			add_rcpt(m, &r);
		} else if (strcmp(f[0], "body") == 0) {
			m->body_len = (size_t)strtoull(f[1], NULL, 10);
			have_body = true;
		} else
			goto bad;
	}
	if (!have_body || m->id[0] == '\0' || m->sender == NULL || m->nrcpt == 0) {
		snprintf(err, errlen, "incomplete envelope");
		return -1;
	}
	return version;
bad:
	snprintf(err, errlen, "bad envelope line %d", lineno);
	return -1;
}

static void
apply_record(struct spool_msg *m, int idx, int state, int attempts, int64_t next)
{
	if (idx < 0 || idx >= m->nrcpt || state < RS_QUEUED || state > RS_DELETED)
		return;
	m->rcpts[idx].state = (uint8_t)state;
	m->rcpts[idx].attempts = (uint16_t)attempts;
	m->rcpts[idx].next_ms = next;
}

/*
 * The status records after a file's messages (p[0..len), len bytes to the
 * end of the file). A line without its newline (torn by a crash) is not a
 * record, nor is one of another version or another batch (an older
 * batch's records after a shorter rewrite): "S IDX STATE ATTEMPTS NEXT"
 * for a version 1 or 2 file, "R NONCE BODY_OFF IDX STATE ATTEMPTS NEXT
 * NONCE" for version 3.
 */
static void
apply_records(struct spool_msg *msgs, int n, int version, uint32_t nonce, const char *p,
    size_t len)
{
	const char *end = p + len, *nl;

	for (; p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL; p = nl + 1) {
		char line[128];
		int idx, state, attempts, used = 0;
		int64_t next, boff;
		unsigned non;
		size_t ll = (size_t)(nl - p);

		if (ll < 2 || ll >= sizeof(line) || p[1] != ' ')
			continue;
		memcpy(line, p, ll);
		line[ll] = '\0';
		if (version < 3 && line[0] == 'S') {
			if (sscanf(line, "S %d %d %d %" SCNd64 "%n", &idx, &state, &attempts, &next,
			    &used) == 4 && line[used] == '\0')
				apply_record(&msgs[0], idx, state, attempts, next);
		} else if (version == 3 && line[0] == 'R') {
			unsigned non2;
			if (sscanf(line, "R %8x %" SCNd64 " %d %d %d %" SCNd64 " %8x%n", &non, &boff, &idx,
			    &state, &attempts, &next, &non2, &used) != 7 || line[used] != '\0' ||
			    non != nonce || non2 != nonce)
				continue;
			for (int i = 0; i < n; i++)
				if (msgs[i].body_off == boff)
					apply_record(&msgs[i], idx, state, attempts, next);
		}
	}
}

/*
 * The message at p (len bytes from p to the end of the file; base is the
 * file's start, for body_off): envelope, body and END line. Returns the
 * bytes it takes, or 0 with err set (m freed).
 */
static size_t
parse_msg(char *p, size_t len, const char *base, struct spool_msg *m, int *version,
    uint32_t *nonce, char *err, size_t errlen)
{
	char *hend = memmem(p, len, "\n\n", 2);
	size_t used = 0;

	memset(m, 0, sizeof(*m));
	/* the envelope has no NUL: one hides its end */
	if (hend == NULL || memchr(p, '\0', (size_t)(hend - p)) != NULL) {
		snprintf(err, errlen, "partial file (no end of envelope)");
		return 0;
	}
	size_t hlen = (size_t)(hend - p) + 2;
	char *hcopy = xstrndup(p, hlen - 1);
	if ((*version = parse_header(hcopy, m, nonce, err, errlen)) < 0)
		goto out;
	m->body_off = (off_t)(p - base) + (off_t)hlen;
	size_t tail = hlen + m->body_len;
	size_t endlen = *version == 1 ? sizeof(end_marker) - 1 : END_LINE_LEN;
	if (m->body_len > len || len < tail + endlen) {
		snprintf(err, errlen, "partial file (body cut short)");
		goto out;
	}
	char *t = p + tail;
	if (*version == 1) {
		if (memcmp(t, end_marker, endlen) != 0) {
			snprintf(err, errlen, "partial file (no END marker)");
			goto out;
		}
	} else {
		char want[END_LINE_LEN + 1];
		if (memcmp(t, "END ", 4) != 0 || t[END_LINE_LEN - 1] != '\n') {
			snprintf(err, errlen, "partial file (no END marker)");
			goto out;
		}
		snprintf(want, sizeof(want), "END %08" PRIx32 "\n", spool_crc32c(0, p, tail));
		if (memcmp(t, want, END_LINE_LEN) != 0) {
			snprintf(err, errlen, "partial file (checksum mismatch)");
			goto out;
		}
	}
	used = tail + endlen;
out:
	free(hcopy);
	if (used == 0)
		spool_msg_free(m);
	return used;
}

/*
 * A whole slot file (buf[0..len)): its messages, with their status records
 * applied, into *msgs (malloc'd); returns how many (one for versions 1 and
 * 2), or 0 with err set when the first is partial or corrupt (a message
 * after the first that does not parse, or is not of the first one's batch,
 * ends the file's messages: a rewrite cut short, or an older batch's).
 * *nonce: the batch's (0 for versions 1 and 2).
 */
static int
parse_file(char *buf, size_t len, struct spool_msg **msgs, uint32_t *nonce, char *err,
    size_t errlen)
{
	struct spool_msg *v = NULL;
	int n = 0, cap = 0, version = 0;
	size_t off = 0;

	*nonce = 0;
	for (;;) {
		struct spool_msg m;
		uint32_t non = 0;
		int ver;
		char e2[64];
		size_t used = parse_msg(buf + off, len - off, buf, &m, &ver, &non,
		    n == 0 ? err : e2, n == 0 ? errlen : sizeof(e2));
		if (used == 0)
			break;
		if (n > 0 && (ver != 3 || non != *nonce)) {
			spool_msg_free(&m);
			break;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 4;
			v = xrealloc(v, sizeof(*v) * (size_t)cap);
		}
		v[n++] = m;
		off += used;
		if (n == 1) {
			version = ver;
			*nonce = non;
		}
		if (ver < 3 || len - off < 6 || memcmp(buf + off, "SLUICE", 6) != 0)
			break;
	}
	if (n > 0)
		apply_records(v, n, version, *nonce, buf + off, len - off);
	*msgs = v;
	return n;
}

int
spool_load(const char *path, struct spool_msg *m, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		memset(m, 0, sizeof(*m));
		snprintf(err, errlen, "cannot open: %s", strerror(errno));
		return -2;
	}
	int rc = spool_load_fd(fd, m, err, errlen);
	close(fd);
	return rc;
}

/* Read all of fd from its start into *buf (NUL after the last byte). */
static int
read_whole(int fd, char **buf, size_t *cap, size_t *len)
{
	size_t have = 0;

	for (;;) {
		if (have + 1 >= *cap) {
			*cap = *cap ? *cap * 2 : 16384;
			*buf = xrealloc(*buf, *cap);
		}
		ssize_t r = pread(fd, *buf + have, *cap - 1 - have, (off_t)have);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		have += (size_t)r;
	}
	(*buf)[have] = '\0';
	*len = have;
	return 0;
}

int
spool_load_fd(int fd, struct spool_msg *m, char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t cap = 0, len;
	int rc;

	memset(m, 0, sizeof(*m));
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "cannot stat: %s", strerror(errno));
		return -2;
	}
	/* read whole: the checksums cover envelopes and messages */
	if (st.st_size < (off_t)(64 << 20))
		cap = (size_t)st.st_size + 2;
	buf = xmalloc(cap);
	if (read_whole(fd, &buf, &cap, &len) < 0) {
		snprintf(err, errlen, "read error: %s", strerror(errno));
		free(buf);
		return -2;
	}
	rc = spool_load_buf(buf, len, m, err, errlen);
	free(buf);
	return rc;
}

int
spool_load_buf(char *buf, size_t len, struct spool_msg *m, char *err, size_t errlen)
{
	struct spool_msg *v;
	uint32_t nonce;

	buf[len] = '\0';
	int n = parse_file(buf, len, &v, &nonce, err, errlen);
	if (n == 0) {
		memset(m, 0, sizeof(*m));
		return -1;
	}
	*m = v[0];
	for (int i = 1; i < n; i++)
		spool_msg_free(&v[i]);
	free(v);
	return 0;
}

const char *
spool_meta(const struct spool_msg *m, const char *key)
{
	for (int i = 0; i < m->nmeta; i++)
		if (strcmp(m->meta[i].key, key) == 0)
			return m->meta[i].value;
	return NULL;
}

void
spool_msg_free(struct spool_msg *m)
{
	free(m->sender);
	free(m->pool);
	free(m->campaign);
	free(m->envid);
	for (int i = 0; i < m->nmeta; i++) {
		free(m->meta[i].key);
		free(m->meta[i].value);
	}
	free(m->meta);
	for (int i = 0; i < m->nrcpt; i++) {
		free(m->rcpts[i].addr);
		free(m->rcpts[i].orcpt);
	}
	free(m->rcpts);
	memset(m, 0, sizeof(*m));
}

static uint32_t
slot_nonce(uint32_t slot)
{
	pthread_mutex_lock(&spare_lock);
	struct slot_info *si = slot_info(slot, false);
	uint32_t nonce = si ? si->nonce : 0;
	pthread_mutex_unlock(&spare_lock);
	return nonce;
}

int
spool_record(const struct spool_msg *m, int idx, enum rcpt_state state, int attempts,
    int64_t next_ms)
{
	char rec[128], name[12];
	uint32_t nonce = slot_nonce(m->slot);
	/* a version 3 record starts on a line of its own (the bytes before it
	 * may be an older batch's, or a record torn by a crash) and ends with
	 * the nonce again, so that a torn one is never taken for a record */
	int n = nonce ?
	    snprintf(rec, sizeof(rec), "\nR %08" PRIx32 " %lld %d %d %d %" PRId64 " %08" PRIx32 "\n",
		nonce, (long long)m->body_off, idx, (int)state, attempts, next_ms, nonce) :
	    snprintf(rec, sizeof(rec), "S %d %d %d %" PRId64 "\n", idx, (int)state, attempts, next_ms);
	int fd = spool_dir ? openat(slot_at(m->slot, name), name, O_WRONLY | O_APPEND | O_CLOEXEC) : -1;

	if (fd < 0)
		return -1;
	int rc = write_all(fd, rec, (size_t)n);
	close(fd);
	return rc;
}

/*
 * A slot none of whose messages is left: its first byte turns "SLUICE"
 * into "XLUICE" (not a message, now and after a restart) and it is kept as
 * a spare (beyond MAX_SPARES, unlinked).
 */
static int
slot_free(uint32_t slot)
{
	char name[12];
	struct stat st;
	int dfd = slot_at(slot, name);
	int fd = openat(dfd, name, O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	bool marked = pwrite(fd, "X", 1, 0) == 1 && fstat(fd, &st) == 0;
	close(fd);
	if (marked && spare_push(slot, st.st_size))
		return 0;
	return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -1 : 0;
}

int
spool_done(const struct spool_msg *m, int idx, enum rcpt_state state, int attempts)
{
	int rc = 0;

	if (spool_dir == NULL)
		return -1;
	pthread_mutex_lock(&spare_lock);
	struct slot_info *si = slot_info(m->slot, false);
	if (si != NULL && si->live == 0) {
		pthread_mutex_unlock(&spare_lock);
		log_warnx("event=spool-done-twice id=%s slot=%" PRIu32, m->id, m->slot);
		return -1;
	}
	bool last = si == NULL || si->live == 1;
	if (last && si != NULL)
		si->live = 0;
	pthread_mutex_unlock(&spare_lock);
	if (!last) {
		/* the file keeps other messages: this one's end is a record,
		 * written while it still counts, so the slot cannot be reused
		 * (another batch, another nonce) under it */
		if (idx >= 0)
			rc = spool_record(m, idx, state, attempts, 0);
		pthread_mutex_lock(&spare_lock);
		last = --si->live == 0;
		pthread_mutex_unlock(&spare_lock);
	}
	if (last && slot_free(m->slot) < 0)
		rc = -1;
	return rc;
}

/*
 * The startup scan. With a million messages queued it reads a million small
 * files, and after a reboot (or when the page cache has let them go) each
 * one costs the disk an inode and a data block read. So: several threads,
 * each taking whole bucket directories in turn (the disk gets a queue of
 * reads to reorder, and the parsing runs on every core); a bucket's files
 * are read in inode order (ext4 keeps a directory's inodes together, and
 * their data in the same order); and a file costs open, read until EOF
 * (two reads for a message of ordinary size) and close. O_NOATIME: reading
 * a million files must not write a million inodes.
 */
struct scan_ent {
	uint64_t ino;
	uint32_t slot;
};

struct scan_thread {
	pthread_t tid;
	spool_scan_fn cb;
	void *arg;
	char *buf;                      /* the file being read, grown as needed */
	size_t cap;
	long n;                         /* messages handed to cb */
	long discarded;                 /* partial files */
	uint32_t next;                  /* highest slot seen + 1 */
};

static _Atomic int scan_next_bucket;

static int
cmp_ino(const void *a, const void *b)
{
	const struct scan_ent *x = a, *y = b;
	return x->ino < y->ino ? -1 : x->ino > y->ino;
}

static int
open_noatime(int dfd, const char *name)
{
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOATIME);

	/* O_NOATIME needs the file's owner (or CAP_FOWNER) */
	if (fd < 0 && errno == EPERM)
		fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
	return fd;
}

/* One slot file at startup: its messages for cb, or a spare. */
static void
scan_slot(struct scan_thread *st, uint32_t slot)
{
	char name[12], err[256];
	size_t len;

	/* a slot this process created during the scan: not to read */
	bool known;
	for (;;) {
		pthread_mutex_lock(&spare_lock);
		struct slot_info *si = slot_info(slot, true);
		bool busy = si->creating;
		known = si->known;
		if (!busy)
			si->known = true;
		pthread_mutex_unlock(&spare_lock);
		if (!busy)
			break;
		usleep(100);
	}
	if (known)
		return;
	int dfd = slot_at(slot, name);
	int fd = open_noatime(dfd, name);
	if (fd < 0) {
		log_warn("event=spool-unreadable slot=%" PRIu32, slot);
		return;
	}
	if (read_whole(fd, &st->buf, &st->cap, &len) < 0) {
		log_warn("event=spool-unreadable slot=%" PRIu32, slot);
		close(fd);
		return;
	}
	close(fd);
	if (len >= 6 && memcmp(st->buf, "SLUICE", 6) == 0) {
		struct spool_msg *msgs;
		uint32_t nonce;
		int n = parse_file(st->buf, len, &msgs, &nonce, err, sizeof(err));
		if (n == 0) {
			char path[PATH_MAX];
			log_warnx("event=spool-discard path=%s reason=\"%s\"",
			    spool_file(slot, path, sizeof(path)), err);
			st->discarded++;
			slot_free(slot);
		} else {
			/* live before cb: the queue may finish them at once */
			pthread_mutex_lock(&spare_lock);
			*slot_info(slot, true) = (struct slot_info){ nonce, (uint32_t)n, true, false };
			pthread_mutex_unlock(&spare_lock);
			for (int i = 0; i < n; i++) {
				msgs[i].slot = slot;
				st->cb(&msgs[i], st->arg);
			}
			st->n += n;
		}
		free(msgs);
	} else if (!spare_push(slot, (off_t)len))
		unlinkat(dfd, name, 0);
	/* one huge message must not pin its buffer for the rest of the scan */
	if (st->cap > (1u << 20)) {
		free(st->buf);
		st->buf = NULL;
		st->cap = 0;
	}
}

static bool
slot_name(const char *name, uint32_t *slot)
{
	char *end;

	if (*name < '0' || *name > '9')
		return false;
	errno = 0;
	unsigned long v = strtoul(name, &end, 10);
	if (*end != '\0' || errno != 0 || v > UINT32_MAX || (name[0] == '0' && name[1] != '\0'))
		return false;
	*slot = (uint32_t)v;
	return true;
}

/* Bucket i: its slot files in inode order, then an older sluice's names. */
static void
scan_bucket(struct scan_thread *st, int i)
{
	char path[PATH_MAX], b[3];
	struct scan_ent *ents = NULL;
	size_t nents = 0, capents = 0;
	char **legacy = NULL;
	size_t nlegacy = 0;
	uint32_t slot, legacy_k = 1u << 20;
	struct dirent *de;
	DIR *d;
	int fd;

	bucket_name(i, b);
	snprintf(path, sizeof(path), "%s/q/%s", spool_dir, b);
	/* a descriptor of its own: bucket_fd[i]'s offset is not ours to move */
	if ((fd = openat(bucket_fd[i], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    (d = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		log_warn("event=spool-unreadable path=%s", path);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (slot_name(de->d_name, &slot) && slot % NBUCKETS == (uint32_t)i) {
			if (nents == capents) {
				capents = capents ? capents * 2 : 256;
				ents = xrealloc(ents, sizeof(*ents) * capents);
			}
			ents[nents++] = (struct scan_ent){ de->d_ino, slot };
		} else if (strncmp(de->d_name, "t.", 2) == 0) {
			/* an older sluice's write cut short by a crash */
			if (unlinkat(bucket_fd[i], de->d_name, 0) == 0)
				log_info("event=spool-partial-removed path=%s/%s", path, de->d_name);
		} else {
			/* an older sluice's q/XX/ID or f.SEQ: renamed to a slot
			 * once readdir is done with this directory */
			legacy = xrealloc(legacy, sizeof(*legacy) * (nlegacy + 1));
			legacy[nlegacy++] = xstrdup(de->d_name);
		}
	}
	closedir(d);
	if (nents > 1)
		qsort(ents, nents, sizeof(*ents), cmp_ino);
	for (size_t k = 0; k < nents; k++) {
		st->next = MAX(st->next, ents[k].slot + 1);
		scan_slot(st, ents[k].slot);
	}
	free(ents);
	for (size_t k = 0; k < nlegacy; k++) {
		char name[12];
		int r;
		/* numbers far above new slots' (slot_next starts after them) */
		do {
			slot = (uint32_t)i + NBUCKETS * legacy_k++;
			snprintf(name, sizeof(name), "%" PRIu32, slot);
			r = renameat2(bucket_fd[i], legacy[k], bucket_fd[i], name, RENAME_NOREPLACE);
		} while (r < 0 && errno == EEXIST);
		if (r == 0) {
			st->next = MAX(st->next, slot + 1);
			scan_slot(st, slot);
		} else
			log_warn("event=spool-rename-failed path=%s/%s", path, legacy[k]);
		free(legacy[k]);
	}
	free(legacy);
}

static void *
scan_run(void *arg)
{
	struct scan_thread *st = arg;
	int i;

	while ((i = atomic_fetch_add(&scan_next_bucket, 1)) < NBUCKETS)
		scan_bucket(st, i);
	free(st->buf);
	st->buf = NULL;
	return NULL;
}

long
spool_scan(int nthreads, spool_scan_fn cb, void *const *args, long *discarded)
{
	char path[PATH_MAX];
	uint32_t next = 0;
	long n = 0;
	DIR *d;
	struct dirent *de;

	if (spool_dir == NULL)
		return 0;
	snprintf(path, sizeof(path), "%s/tmp", spool_dir);
	if ((d = opendir(path)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/tmp/%s", spool_dir, de->d_name);
			if (unlink(path) == 0)
				log_info("event=spool-partial-removed path=%s", path);
		}
		closedir(d);
	}
	if (nthreads < 1)
		nthreads = 1;
	struct scan_thread *st = xcalloc((size_t)nthreads, sizeof(*st));
	atomic_store(&scan_next_bucket, 0);
	for (int t = 0; t < nthreads; t++) {
		st[t].cb = cb;
		st[t].arg = args[t];
	}
	/* thread 0 is the caller; a thread that cannot start leaves its
	 * buckets to the others */
	int started = 1;
	for (int t = 1; t < nthreads; t++, started++)
		if (pthread_create(&st[t].tid, NULL, scan_run, &st[t]) != 0)
			break;
	scan_run(&st[0]);
	for (int t = 1; t < started; t++)
		pthread_join(st[t].tid, NULL);
	for (int t = 0; t < started; t++) {
		n += st[t].n;
		if (discarded)
			*discarded += st[t].discarded;
		next = MAX(next, st[t].next);
	}
	free(st);
	atomic_store(&slot_next, MAX(next, atomic_load(&slot_next)));
	/* the spares' names must be durable before a batch is committed by
	 * its fdatasync alone: after a crash of the process (not of the
	 * machine) a slot created just before may not be yet */
	for (int i = 0; i < NBUCKETS; i++)
		if (fsync(bucket_fd[i]) < 0)
			log_warn("event=spool-fsync-failed bucket=%d", i);
	return n;
}

/*
 * state: bit 0 = at beginning of line, bit 1 = the previous input byte was
 * a CR whose LF has not been seen (we emitted the CR already).
 */
size_t
dot_stuff(char *dst, const char *src, size_t len, int *state)
{
	char *o = dst;
	int st = *state;

	for (size_t i = 0; i < len; i++) {
		char c = src[i];
		if (c == '\n') {
			if (!(st & 2))
				*o++ = '\r';
			*o++ = '\n';
			st = 1;
			continue;
		}
		if (st & 2)
			st = 0;   /* a bare CR is data, not a line end */
		if (c == '\r') {
			*o++ = '\r';
			st = (st & 1) | 2;
			continue;
		}
		if ((st & 1) && c == '.')
			*o++ = '.';
		*o++ = c;
		st = 0;
	}
	*state = st;
	return (size_t)(o - dst);
}

size_t
dot_unstuff(char *buf, size_t len, int *state)
{
	char *o = buf;
	int st = *state;

	for (size_t i = 0; i < len; i++) {
		char c = buf[i];
		if ((st & 1) && c == '.') {
			st = 0;
			continue;       /* drop the stuffed dot */
		}
		*o++ = c;
		if (c == '\n')
			st = 1;
		else
			st = 0;
	}
	*state = st;
	return (size_t)(o - buf);
}
