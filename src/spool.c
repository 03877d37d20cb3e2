/*
 * spool: the durable message store. One file per message:
 *
 *   SLUICE 2\n  id ..\n  created ..\n  sender ..\n ... rcpt ..\n  body LEN\n  \n
 *   <LEN bytes of wire-form message>
 *   END CRC\n                              (CRC-32C of everything before it)
 *   S idx state attempts next_ms\n ...     (status records, appended later)
 *
 * Values are percent-encoded (bytes <= 0x20, '%' and 0x7f), so every field
 * is one token. Version 1 files (no checksum, "END\n") are still read.
 *
 * Writing a new file: q/XX/t.ID created O_EXCL, one writev, fdatasync,
 * checked close, rename to q/XX/ID, fsync of q/XX (its descriptor is kept
 * open). Writing into a recycled file q/XX/f.SEQ: one writev, ftruncate if
 * the length differs, fdatasync, checked close, rename to q/XX/ID without
 * the directory fsync. The fdatasync is the commit: the inode is already
 * durable under one name or the other, and the scan takes an f.* file whose
 * content checks out as the message it is. A file without a valid END line
 * right after the body is partial: never delivered; t.* files are removed
 * at scan.
 *
 * Recycling: a finished message's file is marked ("SLUICE" -> "XLUICE"),
 * renamed to q/XX/f.SEQ and reused by the next message of that bucket,
 * instead of unlink + create. Creating inodes at thousands per second is
 * the most expensive thing ext4 does here (without a journal it scans for
 * recently deleted inodes on every create); a rename within one directory
 * allocates nothing, and the rewrite in place saves the directory fsync:
 * one disk flush per message instead of two.
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

/* Directory descriptors of q/XX, for the fsync after rename. */
static int bucket_fd[NBUCKETS];
static char *spool_dir;

/* Recycled files per bucket, by sequence number (q/XX/f.SEQ). */
#define FREE_PER_BUCKET 8
static pthread_mutex_t free_lock = PTHREAD_MUTEX_INITIALIZER;
struct free_slot { uint64_t seq; off_t size; };
static struct free_slot free_slots[NBUCKETS][FREE_PER_BUCKET];
static uint8_t nfree[NBUCKETS];
static _Atomic uint64_t seq_next;

static bool
free_pop(int b, struct free_slot *slot)
{
	bool ok = false;

	pthread_mutex_lock(&free_lock);
	if (nfree[b] > 0) {
		*slot = free_slots[b][--nfree[b]];
		ok = true;
	}
	pthread_mutex_unlock(&free_lock);
	return ok;
}

static bool
free_push(int b, uint64_t seq, off_t size)
{
	bool ok = false;

	pthread_mutex_lock(&free_lock);
	if (nfree[b] < FREE_PER_BUCKET) {
		free_slots[b][nfree[b]++] = (struct free_slot){ seq, size };
		ok = true;
	}
	pthread_mutex_unlock(&free_lock);
	return ok;
}

static bool
is_spool_dir(const char *dir)
{
	return spool_dir != NULL && strcmp(spool_dir, dir) == 0;
}

static int
b32val(char c)
{
	const char *p = strchr(b32, c);
	return p && c ? (int)(p - b32) : 0;
}

static int
bucket_of(const char *id)
{
	size_t n = strlen(id);
	if (n < 2)
		return 0;
	return b32val(id[n - 2]) * 32 + b32val(id[n - 1]);
}

static void
bucket_name(int b, char out[3])
{
	out[0] = b32[b / 32];
	out[1] = b32[b % 32];
	out[2] = '\0';
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
		if (mkdir_p(path, 0750) < 0)
			goto fail;
		if (spool_dir == NULL || strcmp(spool_dir, dir) != 0) {
			int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (fd < 0)
				goto fail;
			if (bucket_fd[i] > 0)
				close(bucket_fd[i]);
			bucket_fd[i] = fd;
		}
	}
	if (!is_spool_dir(dir)) {
		pthread_mutex_lock(&free_lock);
		memset(nfree, 0, sizeof(nfree));
		pthread_mutex_unlock(&free_lock);
	}
	free(spool_dir);
	spool_dir = xstrdup(dir);
	if (atomic_load(&seq_next) == 0)
		atomic_store(&seq_next, (uint64_t)now_ms() * 1000);
	return 0;
fail:
	snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
	return -1;
}

char *
spool_path(const char *dir, const char *id)
{
	char b[3];

	bucket_name(bucket_of(id), b);
	return xasprintf("%s/q/%s/%s", dir, b, id);
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
spool_format_header(const struct spool_msg *m, size_t *len)
{
	struct sbuf b = { 0 };
	size_t body = m->body_len;

	sb_printf(&b, "SLUICE 2\nid %s\ncreated %" PRId64 "\nsender ", m->id, m->created_ms);
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

static int
sync_dir_of(const char *dir, const char *final, int bucket)
{
	if (is_spool_dir(dir) && bucket_fd[bucket] > 0)
		return fsync(bucket_fd[bucket]) < 0 ? errno : 0;
	char *slash = strrchr(final, '/');
	int e = 0;
	*slash = '\0';
	int dfd = open(final, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	*slash = '/';
	if (dfd < 0 || fsync(dfd) < 0)
		e = errno;
	if (dfd >= 0)
		close(dfd);
	return e;
}

/*
 * Two ways in. A recycled file of the bucket is rewritten in place and
 * fdatasync'd: that is the commit (the checksum makes its content
 * self-validating, and the inode's name is already durable), so it is then
 * renamed to the id without a directory fsync; if that rename is lost in a
 * crash, the scan finds the message in the f.* file by its content. A new
 * file is created as t.ID, fdatasync'd, renamed and the directory fsync'd.
 */
int
spool_write(const char *dir, struct spool_msg *m, const struct iovec *iov, int iovcnt)
{
	char tmp[PATH_MAX], b[3], endl[END_LINE_LEN + 1];
	char *final = NULL, *hdr;
	size_t hlen, total = 0;
	int fd = -1, e = 0;
	int bucket = bucket_of(m->id);
	struct free_slot slot = { 0, 0 };
	bool reused = false;

	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	m->body_len = total;
	hdr = spool_format_header(m, &hlen);
	m->body_off = (off_t)hlen;
	uint32_t crc = spool_crc32c(0, hdr, hlen);
	for (int i = 0; i < iovcnt; i++)
		crc = spool_crc32c(crc, iov[i].iov_base, iov[i].iov_len);
	snprintf(endl, sizeof(endl), "END %08" PRIx32 "\n", crc);
	off_t flen = (off_t)(hlen + total + END_LINE_LEN);

	bucket_name(bucket, b);
	if (is_spool_dir(dir) && free_pop(bucket, &slot)) {
		snprintf(tmp, sizeof(tmp), "%s/q/%s/f.%" PRIu64, dir, b, slot.seq);
		fd = open(tmp, O_WRONLY | O_CLOEXEC);
		reused = fd >= 0;
	}
	if (fd < 0) {
		snprintf(tmp, sizeof(tmp), "%s/q/%s/t.%s", dir, b, m->id);
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	}
	if (fd < 0) {
		e = errno;
		free(hdr);
		return e;
	}
	/* header, body pieces, end line: writev in slices of IOV_MAX */
	struct iovec *v = xmalloc(sizeof(*v) * (size_t)(iovcnt + 2));
	int nv = 0;
	v[nv++] = (struct iovec){ hdr, hlen };
	for (int i = 0; i < iovcnt; i++)
		if (iov[i].iov_len)
			v[nv++] = iov[i];
	v[nv++] = (struct iovec){ endl, END_LINE_LEN };
	int at = 0;
	while (at < nv) {
		int cnt = MIN(nv - at, IOV_MAX);
		ssize_t w = writev(fd, v + at, cnt);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			e = errno;
			break;
		}
		/* advance over what was written */
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
	}
	free(v);
	free(hdr);
	/* a recycled file of another length: cut (or extend) it to this one;
	 * the same length leaves the inode alone, so fdatasync writes data only */
	if (e == 0 && reused && slot.size != flen && ftruncate(fd, flen) < 0)
		e = errno;
	if (e == 0 && fdatasync(fd) < 0)
		e = errno;
	if (close(fd) < 0 && e == 0)
		e = errno;
	if (e == 0) {
		final = spool_path(dir, m->id);
		if (rename(tmp, final) < 0)
			e = errno;
	}
	if (e == 0 && !reused) {
		e = sync_dir_of(dir, final, bucket);
		if (e != 0)
			unlink(final);
	}
	if (e != 0)
		unlink(tmp);
	free(final);
	return e;
}

static void
add_rcpt(struct spool_msg *m, struct spool_rcpt *r)
{
	if ((m->nrcpt & (m->nrcpt - 1)) == 0)   /* grow at powers of two */
		m->rcpts = xrealloc(m->rcpts, sizeof(*m->rcpts) * (size_t)(m->nrcpt ? m->nrcpt * 2 : 1));
	m->rcpts[m->nrcpt++] = *r;
}

static int
parse_header(char *h, struct spool_msg *m, char *err, size_t errlen)
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
			if (nf != 2 || strcmp(f[0], "SLUICE") != 0 ||
			    (strcmp(f[1], "1") != 0 && strcmp(f[1], "2") != 0)) {
				snprintf(err, errlen, "not a sluice spool file (version 1 or 2)");
				return -1;
			}
			version = f[1][0] - '0';
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

static int
apply_records(struct spool_msg *m, char *p, char *err, size_t errlen)
{
	char *save = NULL;

	for (char *line = strtok_r(p, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		int idx, state, attempts, end = 0;
		int64_t next;
		if (sscanf(line, "S %d %d %d %" SCNd64 "%n", &idx, &state, &attempts, &next, &end) != 4 ||
		    line[end] != '\0')
			continue;       /* a damaged record: ignore it */
		if (idx < 0 || idx >= m->nrcpt || state < RS_QUEUED || state > RS_DELETED)
			continue;
		m->rcpts[idx].state = (uint8_t)state;
		m->rcpts[idx].attempts = (uint16_t)attempts;
		m->rcpts[idx].next_ms = next;
	}
	return 0;
}

int
spool_load(const char *path, struct spool_msg *m, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf = NULL, *hcopy = NULL, *t;
	size_t cap = 0, have = 0, tlen;
	char *hend = NULL;
	int rc = -1, version;

	memset(m, 0, sizeof(*m));
	if (fd < 0) {
		snprintf(err, errlen, "cannot open: %s", strerror(errno));
		return -2;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "cannot stat: %s", strerror(errno));
		rc = -2;
		goto out;
	}
	/* read until the header's blank line; a version 2 file is read whole
	 * (its checksum covers envelope and message), so ask for all of it */
	for (;;) {
		if (have + 4096 > cap) {
			cap = cap ? cap * 2 : 16384;
			if (cap < (size_t)st.st_size + 1 && st.st_size < (off_t)(64 << 20))
				cap = (size_t)st.st_size + 1;
			buf = xrealloc(buf, cap + 1);
		}
		ssize_t r = pread(fd, buf + have, cap - have, (off_t)have);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			snprintf(err, errlen, "read error: %s", strerror(errno));
			rc = -2;
			goto out;
		}
		have += (size_t)r;
		buf[have] = '\0';
		hend = strstr(buf, "\n\n");
		if (hend || r == 0)
			break;
	}
	if (hend == NULL) {
		snprintf(err, errlen, "partial file (no end of envelope)");
		goto out;
	}
	size_t hlen = (size_t)(hend - buf) + 2;
	hcopy = xstrndup(buf, hlen - 1);
	if ((version = parse_header(hcopy, m, err, errlen)) < 0)
		goto out;
	m->body_off = (off_t)hlen;
	size_t tail = hlen + m->body_len;
	size_t endlen = version == 1 ? sizeof(end_marker) - 1 : END_LINE_LEN;
	if ((size_t)st.st_size < tail + endlen || m->body_len > (size_t)st.st_size) {
		snprintf(err, errlen, "partial file (body cut short)");
		goto out;
	}
	if (version == 1) {
		/* legacy: envelope, then the tail from the END marker on */
		tlen = (size_t)st.st_size - tail;
		t = xmalloc(tlen + 1);
		ssize_t r = pread(fd, t, tlen, (off_t)tail);
		if (r < 0) {
			snprintf(err, errlen, "read error: %s", strerror(errno));
			free(t);
			rc = -2;
			goto out;
		}
		tlen = (size_t)r;
		free(buf);
		buf = t;
		t = buf;
	} else {
		/* the whole file */
		if (cap < (size_t)st.st_size) {
			cap = (size_t)st.st_size;
			buf = xrealloc(buf, cap + 1);
		}
		while (have < (size_t)st.st_size) {
			ssize_t r = pread(fd, buf + have, (size_t)st.st_size - have, (off_t)have);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0) {
				snprintf(err, errlen, "read error: %s", strerror(errno));
				rc = -2;
				goto out;
			}
			if (r == 0)
				break;
			have += (size_t)r;
		}
		buf[have] = '\0';
		if (have < tail + endlen) {
			snprintf(err, errlen, "partial file (body cut short)");
			goto out;
		}
		t = buf + tail;
		tlen = have - tail;
	}
	if (version == 1) {
		if (tlen < endlen || memcmp(t, end_marker, endlen) != 0) {
			snprintf(err, errlen, "partial file (no END marker)");
			goto out;
		}
	} else {
		char want[END_LINE_LEN + 1];
		snprintf(want, sizeof(want), "END %08" PRIx32 "\n", spool_crc32c(0, buf, tail));
		if (memcmp(t, "END ", 4) != 0 || t[END_LINE_LEN - 1] != '\n') {
			snprintf(err, errlen, "partial file (no END marker)");
			goto out;
		}
		if (memcmp(t, want, END_LINE_LEN) != 0) {
			snprintf(err, errlen, "partial file (checksum mismatch)");
			goto out;
		}
	}
	t[tlen] = '\0';
	/* a record torn by a crash (no final newline) is not applied */
	char *nl = strrchr(t + endlen, '\n');
	*(nl ? nl + 1 : t + endlen) = '\0';
	apply_records(m, t + endlen, err, errlen);
	rc = 0;
out:
	if (rc != 0)
		spool_msg_free(m);
	free(hcopy);
	free(buf);
	close(fd);
	return rc;
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

int
spool_record(const char *path, int idx, enum rcpt_state state, int attempts, int64_t next_ms)
{
	char rec[96];
	int n = snprintf(rec, sizeof(rec), "S %d %d %d %" PRId64 "\n", idx, (int)state, attempts, next_ms);
	int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);

	if (fd < 0)
		return -1;
	int rc = write_all(fd, rec, (size_t)n);
	close(fd);
	return rc;
}

/*
 * Mark a file as no message: its first byte turns "SLUICE" into "XLUICE".
 * A recycled file is recognised by its name while sluiced runs and by its
 * content at startup (the rename to f.* may be lost in a crash, and an f.*
 * file may hold a message whose rename to its id was lost).
 */
static int
clobber(const char *path, off_t *size)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	struct stat st;
	int rc = 0;

	if (fd < 0)
		return -1;
	if (pwrite(fd, "X", 1, 0) != 1 || fstat(fd, &st) < 0)
		rc = -1;
	else
		*size = st.st_size;
	close(fd);
	return rc;
}

int
spool_remove(const char *path)
{
	size_t n = spool_dir ? strlen(spool_dir) : 0;
	off_t size = 0;

	/* DIR/q/XX/ID of the running spool: keep the file for the next message */
	if (n && strncmp(path, spool_dir, n) == 0 && strncmp(path + n, "/q/", 3) == 0 &&
	    strlen(path + n + 3) > 3 && path[n + 5] == '/' && strchr(path + n + 6, '/') == NULL) {
		const char *bk = path + n + 3;
		int bucket = b32val(bk[0]) * 32 + b32val(bk[1]);
		uint64_t seq = atomic_fetch_add(&seq_next, 1);
		char dst[PATH_MAX];
		snprintf(dst, sizeof(dst), "%.*sf.%" PRIu64, (int)(n + 6), path, seq);
		if (clobber(path, &size) < 0) {
			if (errno == ENOENT)
				return 0;
		} else if (rename(path, dst) == 0) {
			if (free_push(bucket, seq, size))
				return 0;
			path = dst;     /* enough spares here: really remove it */
		} else if (errno == ENOENT)
			return 0;
	}
	return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

/*
 * An f.* file at startup: "SLUICE 2" at its start means it may hold a
 * message (a recycled file rewritten, whose rename to the id was lost):
 * the loader decides by the checksum. Anything else is a spare.
 */
static bool
spare_may_hold_message(const char *path, off_t *size)
{
	char head[9];
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	bool msg = false;

	*size = 0;
	if (fd < 0)
		return false;
	if (fstat(fd, &st) == 0)
		*size = st.st_size;
	if (pread(fd, head, sizeof(head), 0) == (ssize_t)sizeof(head) &&
	    memcmp(head, "SLUICE 2\n", sizeof(head)) == 0)
		msg = true;
	close(fd);
	return msg;
}

long
spool_scan(const char *dir, void (*cb)(const char *path, void *arg), void *arg)
{
	char path[PATH_MAX], b[3];
	long n = 0;
	DIR *d;
	struct dirent *de;

	snprintf(path, sizeof(path), "%s/tmp", dir);
	if ((d = opendir(path)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/tmp/%s", dir, de->d_name);
			if (unlink(path) == 0)
				log_info("event=spool-partial-removed path=%s", path);
		}
		closedir(d);
	}
	for (int i = 0; i < NBUCKETS; i++) {
		bucket_name(i, b);
		snprintf(path, sizeof(path), "%s/q/%s", dir, b);
		if ((d = opendir(path)) == NULL)
			continue;
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/q/%s/%s", dir, b, de->d_name);
			if (strncmp(de->d_name, "t.", 2) == 0) {
				/* a write cut short by a crash */
				if (unlink(path) == 0)
					log_info("event=spool-partial-removed path=%s", path);
				continue;
			}
			if (strncmp(de->d_name, "f.", 2) == 0) {
				uint64_t seq = strtoull(de->d_name + 2, NULL, 10);
				off_t size;
				if (seq >= atomic_load(&seq_next))
					atomic_store(&seq_next, seq + 1);
				if (!spare_may_hold_message(path, &size)) {
					if (!is_spool_dir(dir) || !free_push(i, seq, size))
						unlink(path);
					continue;
				}
			}
			cb(path, arg);
			n++;
		}
		closedir(d);
	}
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
