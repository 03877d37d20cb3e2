/*
 * verp: VERP tokens (HMAC-SHA256, base32) and the send records in the store
 * that map them back to the recipient (verp.h has the format).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "conf.h"
#include "log.h"
#include "store.h"
#include "util.h"
#include "verp.h"

#define SWEEP_EVERY      1000        /* records between expiry sweeps */
#define SWEEP_MAX        10000       /* records deleted per sweep */
#define SWEEP_INTERVAL   60000       /* ms: also sweep when this long has passed */
#define RECORD_VERSION   1

static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* Crockford base32 digit value, case-insensitive; -1 for anything else. */
static int
b32_val(char ch)
{
	char u = (ch >= 'a' && ch <= 'z') ? (char)(ch - 'a' + 'A') : ch;
	const char *p = u ? strchr(b32, u) : NULL;
	return p ? (int)(p - b32) : -1;
}

uint8_t *
verp_key_load(const char *path, size_t *len, char *err, size_t errlen)
{
	struct stat st;
	uint8_t *buf;
	size_t got = 0;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
		snprintf(err, errlen, "key %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "key %s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "key %s: not a regular file", path);
		close(fd);
		return NULL;
	}
	if (st.st_mode & (S_IROTH | S_IWOTH)) {
		snprintf(err, errlen, "key %s: is world-%s (mode %03o); chmod 600 it", path,
		    (st.st_mode & S_IROTH) ? "readable" : "writable", (unsigned)(st.st_mode & 0777));
		close(fd);
		return NULL;
	}
	if (st.st_size < VERP_KEY_MIN || st.st_size > VERP_KEY_MAX) {
		snprintf(err, errlen, "key %s: %lld bytes; a key has %d to %d bytes "
		    "(head -c 32 /dev/urandom > FILE)", path, (long long)st.st_size,
		    VERP_KEY_MIN, VERP_KEY_MAX);
		close(fd);
		return NULL;
	}
	buf = xmalloc((size_t)st.st_size);
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			snprintf(err, errlen, "key %s: %s", path, r < 0 ? strerror(errno) : "short read");
			OPENSSL_cleanse(buf, got);
			free(buf);
			close(fd);
			return NULL;
		}
		got += (size_t)r;
	}
	close(fd);
	*len = got;
	return buf;
}

/* The 64-bit MAC of an upper-case queue id and an index. */
static bool
mac(const uint8_t *key, size_t klen, const char *qid, uint32_t idx, uint8_t out[8])
{
	char msg[64];
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	int n = snprintf(msg, sizeof(msg), "sluice-verp-1:%s:%u", qid, idx);

	if (HMAC(EVP_sha256(), key, (int)klen, (const uint8_t *)msg, (size_t)n, md, &mdlen) == NULL ||
	    mdlen < 8)
		return false;
	memcpy(out, md, 8);
	OPENSSL_cleanse(md, sizeof(md));
	return true;
}

static bool
qid_valid(const char *qid, size_t len)
{
	if (len != QID_LEN)
		return false;
	for (size_t i = 0; i < len; i++)
		if (b32_val(qid[i]) < 0)
			return false;
	return true;
}

/* 64 bits into 13 base32 digits, the last one carrying one zero bit. */
static void
mac_encode(const uint8_t m[8], char *out)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | m[i];
	for (int i = 0; i < 12; i++)
		out[i] = b32[(v >> (59 - 5 * i)) & 31];
	out[12] = b32[(v & 15) << 1];
}

static bool
mac_decode(const char *in, uint8_t m[8])
{
	uint64_t v = 0;
	for (int i = 0; i < 12; i++) {
		int d = b32_val(in[i]);
		if (d < 0)
			return false;
		v = (v << 5) | (uint64_t)d;
	}
	int last = b32_val(in[12]);
	if (last < 0 || (last & 1))   /* the padding bit: one spelling per token */
		return false;
	v = (v << 4) | (uint64_t)(last >> 1);
	for (int i = 7; i >= 0; i--) {
		m[i] = (uint8_t)(v & 0xff);
		v >>= 8;
	}
	return true;
}

size_t
verp_token(const uint8_t *key, size_t klen, const char *qid, uint32_t idx, char *out)
{
	char canon[QID_LEN + 1];
	char digits[4];
	uint8_t m[8];
	size_t n = 0;
	int nd = 0;

	if (qid == NULL || !qid_valid(qid, strlen(qid)) || idx > VERP_IDX_MAX)
		return 0;
	for (int i = 0; i < QID_LEN; i++)
		canon[i] = b32[b32_val(qid[i])];
	canon[QID_LEN] = '\0';
	if (!mac(key, klen, canon, idx, m))
		return 0;
	memcpy(out, canon, QID_LEN);
	n = QID_LEN;
	do {
		digits[nd++] = b32[idx & 31];
		idx >>= 5;
	} while (idx > 0);
	while (nd > 0)
		out[n++] = digits[--nd];
	mac_encode(m, out + n);
	n += VERP_MAC_CHARS;
	out[n] = '\0';
	return n;
}

int
verp_check(const uint8_t *key, size_t klen, const char *local, size_t len,
    struct verp_token *t)
{
	uint8_t want[8], got[8];
	uint32_t idx = 0;
	size_t nidx;

	if (len < VERP_PREFIX_LEN || strncasecmp(local, VERP_PREFIX, VERP_PREFIX_LEN) != 0)
		return 0;
	local += VERP_PREFIX_LEN;
	len -= VERP_PREFIX_LEN;
	if (len < QID_LEN + 1 + VERP_MAC_CHARS || len > VERP_TOKEN_MAX)
		return -1;
	if (!qid_valid(local, QID_LEN))
		return -1;
	nidx = len - QID_LEN - VERP_MAC_CHARS;
	for (size_t i = 0; i < nidx; i++) {
		int d = b32_val(local[QID_LEN + i]);
		if (d < 0 || (i == 0 && d == 0 && nidx > 1))   /* no leading zero */
			return -1;
		idx = (idx << 5) | (uint32_t)d;
	}
	if (!mac_decode(local + QID_LEN + nidx, got))
		return -1;
	for (int i = 0; i < QID_LEN; i++)
		t->qid[i] = b32[b32_val(local[i])];
	t->qid[QID_LEN] = '\0';
	t->idx = idx;
	if (!mac(key, klen, t->qid, idx, want))
		return -1;
	return CRYPTO_memcmp(want, got, sizeof(want)) == 0 ? 1 : -1;
}

bool
verp_applies(const struct config *c, const char *sender, uint32_t flags)
{
	return c->bounce_domain != NULL && c->verp_key != NULL && sender != NULL &&
	    sender[0] != '\0' && !(flags & MF_DSN);
}

bool
verp_address(const struct config *c, const char *qid, uint32_t idx, char *out, size_t cap)
{
	char tok[VERP_TOKEN_MAX + 1];

	if (c->bounce_domain == NULL || c->verp_key == NULL ||
	    verp_token(c->verp_key, c->verp_keylen, qid, idx, tok) == 0)
		return false;
	int n = snprintf(out, cap, VERP_PREFIX "%s@%s", tok, c->bounce_domain);
	return n > 0 && (size_t)n < cap;
}

bool
verp_is_bounce_domain(const struct config *c, const char *addr, const char **local,
    size_t *llen)
{
	const char *at = strrchr(addr, '@');

	if (c->bounce_domain == NULL || at == NULL || strcasecmp(at + 1, c->bounce_domain) != 0)
		return false;
	*local = addr;
	*llen = (size_t)(at - addr);
	return true;
}

bool
verp_is_fbl(const struct config *c, const char *addr)
{
	for (int i = 0; i < c->nfbl; i++)
		if (strcasecmp(c->fbl[i], addr) == 0)
			return true;
	return false;
}

/* ---- records ---- */

/* Key: the 26 queue id characters, then the index big-endian. */
static size_t
record_key(const char *qid, uint32_t idx, uint8_t key[QID_LEN + 4])
{
	memcpy(key, qid, QID_LEN);
	key[QID_LEN] = (uint8_t)(idx >> 24);
	key[QID_LEN + 1] = (uint8_t)(idx >> 16);
	key[QID_LEN + 2] = (uint8_t)(idx >> 8);
	key[QID_LEN + 3] = (uint8_t)idx;
	return QID_LEN + 4;
}

/* Value: version byte, time (8 bytes big-endian), then five NUL-terminated
 * strings: recipient, sender, campaign, message id, pool. */
size_t
verp_send_encode(const struct verp_send *s, uint8_t *buf, size_t cap)
{
	const char *f[5] = { s->rcpt, s->sender, s->campaign, s->message_id, s->pool };
	size_t n = 9;

	if (cap < n)
		return 0;
	buf[0] = RECORD_VERSION;
	for (int i = 0; i < 8; i++)
		buf[1 + i] = (uint8_t)((uint64_t)s->time >> (56 - 8 * i));
	for (int i = 0; i < 5; i++) {
		size_t l = strlen(f[i]) + 1;
		if (n + l > cap)
			return 0;
		memcpy(buf + n, f[i], l);
		n += l;
	}
	return n;
}

bool
verp_send_decode(const uint8_t *buf, size_t len, struct verp_send *s)
{
	struct { char *p; size_t cap; } f[5] = {
		{ s->rcpt, sizeof(s->rcpt) }, { s->sender, sizeof(s->sender) },
		{ s->campaign, sizeof(s->campaign) }, { s->message_id, sizeof(s->message_id) },
		{ s->pool, sizeof(s->pool) },
	};
	uint64_t t = 0;
	size_t n = 9;

	memset(s, 0, sizeof(*s));
	if (len < n || buf[0] != RECORD_VERSION)
		return false;
	for (int i = 0; i < 8; i++)
		t = (t << 8) | buf[1 + i];
	s->time = (int64_t)t;
	for (int i = 0; i < 5; i++) {
		const uint8_t *z = memchr(buf + n, '\0', len - n);
		if (z == NULL)
			return false;
		size_t l = (size_t)(z - (buf + n));
		if (l >= f[i].cap)
			l = f[i].cap - 1;
		memcpy(f[i].p, buf + n, l);
		f[i].p[l] = '\0';
		n = (size_t)(z - buf) + 1;
	}
	return true;
}

int
verp_expire_txn(MDB_txn *txn, int64_t cutoff_ms, int max)
{
	char limit[8];
	uint64_t t = cutoff_ms > 0 ? (uint64_t)cutoff_ms : 0;
	MDB_cursor *cur;
	MDB_val k, v;
	int n = 0, rc;

	/* queue ids begin with their arrival time in 8 base32 digits, in an
	 * alphabet that sorts like the values it stands for */
	for (int i = 7; i >= 0; i--) {
		limit[i] = b32[t & 31];
		t >>= 5;
	}
	if ((rc = mdb_cursor_open(txn, store_dbi(DB_VERP), &cur)) != 0)
		return rc > 0 ? -rc : rc;
	rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	while (rc == 0 && n < max) {
		if (k.mv_size < 8 || memcmp(k.mv_data, limit, 8) >= 0)
			break;
		if ((rc = mdb_cursor_del(cur, 0)) != 0)
			break;
		n++;
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc > 0 ? -rc : rc;
	return n;
}

static int
sweep_fn(MDB_txn *txn, void *arg)
{
	int64_t cutoff = *(int64_t *)arg;
	int n = verp_expire_txn(txn, cutoff, SWEEP_MAX);

	if (n > 0)
		log_debug("event=verp-expired records=%d", n);
	return n < 0 ? n : 0;
}

static void
sweep_done(void *arg, bool ok)
{
	(void)ok;
	free(arg);
}

static atomic_long nrecorded;
static _Atomic int64_t last_sweep;

void
verp_record(const char *qid, uint32_t idx, const struct verp_send *s)
{
	uint8_t key[QID_LEN + 4], val[sizeof(struct verp_send) + 16];
	size_t klen = record_key(qid, idx, key);
	size_t vlen = verp_send_encode(s, val, sizeof(val));
	int64_t now = now_ms(), last = atomic_load(&last_sweep);

	if (vlen == 0)
		return;
	store_put(DB_VERP, key, klen, val, vlen);
	if ((atomic_fetch_add(&nrecorded, 1) + 1) % SWEEP_EVERY == 0 ||
	    now - last >= SWEEP_INTERVAL) {
		if (!atomic_compare_exchange_strong(&last_sweep, &last, now))
			return;         /* another thread just queued one */
		const struct config *c = conf;
		int64_t *cutoff = xmalloc(sizeof(*cutoff));
		*cutoff = now - (c ? c->verp_expire : VERP_EXPIRE_DEFAULT);
		store_write(sweep_fn, sweep_done, cutoff);
	}
}

int
verp_lookup(const char *qid, uint32_t idx, struct verp_send *s)
{
	uint8_t key[QID_LEN + 4], val[sizeof(struct verp_send) + 16];
	size_t klen = record_key(qid, idx, key), vlen = 0;
	int rc = store_get(DB_VERP, key, klen, val, sizeof(val), &vlen);

	if (rc <= 0)
		return rc;
	if (vlen > sizeof(val) || !verp_send_decode(val, vlen, s))
		return -1;
	return 1;
}
