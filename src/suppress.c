/*
 * suppress: the suppression list in the LMDB store (suppress.h).
 *
 * Records:
 *   DB_SUPPRESS    key   normalised address, or address NUL scope
 *                  value version(1) reason(1) time(8, LE ms) srclen(1) source
 *   DB_SUPPRESS_T  key   time (8, big-endian ms) + the DB_SUPPRESS key; value ""
 *                  (listing by time: the index and the record change in one
 *                  write transaction, so they always agree)
 *   DB_SOFTBOUNCE  key   normalised address
 *                  value count(4) first(8) last(8), host order
 *
 * A global entry's key is the bare address, a scoped one adds NUL and the
 * scope: all entries of an address are adjacent (NUL sorts first), a
 * lookup is at most three point reads in one read transaction.
 *
 * Every change runs inside a write of the store's writer thread, which
 * reads the old record first (to move its time-index key) and writes the
 * new one in the same transaction. Nothing here writes from a loop.
 */
#include "config.h"

#include <errno.h>
#include <locale.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

#include "bounce.h"
#include "conf.h"
#include "log.h"
#include "smtp_parse.h"
#include "store.h"
#include "suppress.h"
#include "util.h"

#define REC_VERSION 1
#define REC_HEAD    11          /* version, reason, time, srclen */

static const char *const reason_names[] = {
	[SUP_HARD_BOUNCE] = "hard-bounce",
	[SUP_COMPLAINT] = "complaint",
	[SUP_UNSUBSCRIBE] = "unsubscribe",
	[SUP_MANUAL] = "manual",
	[SUP_SPAM_TRAP] = "spam-trap",
	[SUP_SOFT_BOUNCES] = "soft-bounces",
};

const char *
suppress_reason_name(enum suppress_reason r)
{
	if ((unsigned)r >= ARRAY_SIZE(reason_names))
		return "unknown";
	return reason_names[r];
}

int
suppress_reason_parse(const char *s, enum suppress_reason *out)
{
	for (size_t i = 0; s != NULL && i < ARRAY_SIZE(reason_names); i++)
		if (strcasecmp(s, reason_names[i]) == 0) {
			*out = (enum suppress_reason)i;
			return 0;
		}
	return -1;
}

void
suppress_event(const char *action, const char *id, const char *message_id,
    const char *sender, const char *recipient, const char *pool, const char *campaign,
    const struct suppress_entry *e)
{
	struct jbuf j;
	const char *sub;
	const char *type = bounce_ses_type("suppressed", 550, &sub);

	jb_init(&j);
	jb_str(&j, "type", "suppressed");
	jb_str(&j, "action", action);
	jb_str(&j, "id", id && *id ? id : NULL);
	jb_str(&j, "message_id", message_id);
	jb_str(&j, "sender", sender);
	jb_str(&j, "recipient", recipient);
	jb_str(&j, "campaign", campaign);
	jb_str(&j, "pool", pool);
	jb_str(&j, "reason", suppress_reason_name(e->reason));
	jb_str(&j, "scope", e->scope[0] ? e->scope : "global");
	if (e->time > 0)
		jb_time(&j, "suppressed_at", e->time);
	jb_str(&j, "suppression_source", e->source[0] ? e->source : NULL);
	jb_str(&j, "category", "suppressed");
	jb_str(&j, "ses_type", type);
	jb_str(&j, "ses_subtype", sub);
	acct_emit(&j);
}

/* ---- normalisation ------------------------------------------------- */

/* Lower-casing non-ASCII needs Unicode case tables: those of C.UTF-8. */
static locale_t utf8_locale;
static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;

static void
utf8_locale_init(void)
{
	utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

static uint32_t
cp_lower(uint32_t c)
{
	if (c < 0x80)
		return c >= 'A' && c <= 'Z' ? c + 32 : c;
	pthread_once(&utf8_once, utf8_locale_init);
	if (utf8_locale == (locale_t)0)
		return c;
	return (uint32_t)towlower_l((wint_t)c, utf8_locale);
}

/* Decode well-formed UTF-8 (checked by smtp_valid_mailbox). */
static size_t
utf8_decode(const unsigned char *s, size_t len, uint32_t *cp, size_t cap)
{
	size_t n = 0;

	for (size_t i = 0; i < len && n < cap;) {
		uint32_t c = s[i];
		int more = c < 0x80 ? 0 : c < 0xe0 ? 1 : c < 0xf0 ? 2 : 3;
		if (more)
			c &= 0x3f >> more;
		i++;
		for (int k = 0; k < more && i < len; k++)
			c = (c << 6) | (s[i++] & 0x3f);
		cp[n++] = c;
	}
	return n;
}

/* RFC 3492 parameters */
#define PC_BASE 36
#define PC_TMIN 1
#define PC_TMAX 26
#define PC_SKEW 38
#define PC_DAMP 700

static uint32_t
pc_adapt(uint32_t delta, uint32_t npoints, bool first)
{
	uint32_t k = 0;

	delta = first ? delta / PC_DAMP : delta / 2;
	delta += delta / npoints;
	while (delta > ((PC_BASE - PC_TMIN) * PC_TMAX) / 2) {
		delta /= PC_BASE - PC_TMIN;
		k += PC_BASE;
	}
	return k + (PC_BASE - PC_TMIN + 1) * delta / (delta + PC_SKEW);
}

static char
pc_digit(uint32_t d)
{
	return (char)(d < 26 ? 'a' + d : '0' + d - 26);
}

/* Punycode of cp[0..n) appended to out at *o (cap bytes). 0 or -1. */
static int
punycode(const uint32_t *cp, size_t n, char *out, size_t cap, size_t *o)
{
	uint32_t h = 0, b, next = 128, delta = 0, bias = 72;

	for (size_t i = 0; i < n; i++)
		if (cp[i] < 0x80) {
			if (*o + 1 >= cap)
				return -1;
			out[(*o)++] = (char)cp[i];
			h++;
		}
	b = h;
	if (b > 0) {
		if (*o + 1 >= cap)
			return -1;
		out[(*o)++] = '-';
	}
	while (h < n) {
		uint32_t m = UINT32_MAX;
		for (size_t i = 0; i < n; i++)
			if (cp[i] >= next && cp[i] < m)
				m = cp[i];
		if ((m - next) > (UINT32_MAX - delta) / (h + 1))
			return -1;
		delta += (m - next) * (h + 1);
		next = m;
		for (size_t i = 0; i < n; i++) {
			if (cp[i] < next && ++delta == 0)
				return -1;
			if (cp[i] != next)
				continue;
			uint32_t q = delta;
			for (uint32_t k = PC_BASE;; k += PC_BASE) {
				uint32_t t = k <= bias ? PC_TMIN : k >= bias + PC_TMAX ? PC_TMAX : k - bias;
				if (q < t)
					break;
				if (*o + 1 >= cap)
					return -1;
				out[(*o)++] = pc_digit(t + (q - t) % (PC_BASE - t));
				q = (q - t) / (PC_BASE - t);
			}
			if (*o + 1 >= cap)
				return -1;
			out[(*o)++] = pc_digit(q);
			bias = pc_adapt(delta, h + 1, h == b);
			delta = 0;
			h++;
		}
		delta++;
		next++;
	}
	return 0;
}

/*
 * A domain (len bytes) into out: ASCII lower-cased, a trailing dot
 * dropped, labels with non-ASCII lower-cased and A-label encoded. The
 * result is NUL-terminated. Returns its length or -1.
 */
static int
domain_norm(const char *d, size_t len, char *out, size_t cap)
{
	size_t o = 0;

	if (len > 0 && d[len - 1] == '.')
		len--;
	if (len == 0 || cap == 0)
		return -1;
	if (d[0] == '[') {
		/* address literal: lower-case (IPv6: hex digits and the tag) */
		if (len >= cap)
			return -1;
		for (size_t i = 0; i < len; i++)
			out[o++] = (char)((d[i] >= 'A' && d[i] <= 'Z') ? d[i] + 32 : d[i]);
		out[o] = '\0';
		return (int)o;
	}
	for (size_t i = 0; i < len;) {
		size_t j = i;
		bool ascii = true;
		while (j < len && d[j] != '.') {
			if ((unsigned char)d[j] >= 0x80)
				ascii = false;
			j++;
		}
		if (j == i)
			return -1;      /* empty label */
		if (o > 0) {
			if (o + 1 >= cap)
				return -1;
			out[o++] = '.';
		}
		if (ascii) {
			if (o + (j - i) >= cap)
				return -1;
			for (size_t k = i; k < j; k++)
				out[o++] = (char)((d[k] >= 'A' && d[k] <= 'Z') ? d[k] + 32 : d[k]);
		} else {
			uint32_t cp[256];
			size_t n = utf8_decode((const unsigned char *)d + i, j - i, cp, ARRAY_SIZE(cp));
			bool still = false;
			for (size_t k = 0; k < n; k++) {
				cp[k] = cp_lower(cp[k]);
				if (cp[k] >= 0x80)
					still = true;
			}
			if (!still) {
				/* only case-folded into ASCII ("K" KELVIN SIGN -> k) */
				for (size_t k = 0; k < n; k++) {
					if (o + 1 >= cap)
						return -1;
					out[o++] = (char)cp[k];
				}
			} else {
				if (o + 4 >= cap)
					return -1;
				memcpy(out + o, "xn--", 4);
				o += 4;
				if (punycode(cp, n, out, cap, &o) < 0)
					return -1;
			}
		}
		i = j + 1;
	}
	if (o >= cap)
		return -1;
	out[o] = '\0';
	return (int)o;
}

int
suppress_normalize(const char *address, bool gmail, char *out, size_t cap)
{
	char buf[SUP_ADDR_MAX + 1], dom[SUP_ADDR_MAX + 1];
	const char *s = address, *e;

	if (address == NULL)
		return -1;
	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
		e--;
	if (e - s >= 2 && *s == '<' && e[-1] == '>') {
		s++;
		e--;
	}
	if (e - s <= 0 || (size_t)(e - s) > SUP_ADDR_MAX)
		return -1;
	memcpy(buf, s, (size_t)(e - s));
	buf[e - s] = '\0';
	if (e - s > 1 && buf[e - s - 1] == '.' && buf[e - s - 2] != '.')
		buf[e - s - 1] = '\0';     /* the root of an absolute domain name */
	if (!smtp_valid_mailbox(buf, true, NULL))
		return -1;
	char *at = strrchr(buf, '@');
	if (at == NULL || at == buf)
		return -1;
	*at = '\0';
	char *local = buf;
	if (domain_norm(at + 1, strlen(at + 1), dom, sizeof(dom)) < 0)
		return -1;
	if (gmail && local[0] != '"' &&
	    (strcmp(dom, "gmail.com") == 0 || strcmp(dom, "googlemail.com") == 0)) {
		/* Gmail ignores dots and case in the local part and delivers
		 * user+tag to user; googlemail.com is the same mailbox. */
		size_t o = 0;
		for (char *p = local; *p && *p != '+'; p++) {
			if (*p == '.')
				continue;
			local[o++] = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
		}
		local[o] = '\0';
		if (o == 0)
			return -1;
		strcpy(dom, "gmail.com");
	}
	int n = snprintf(out, cap, "%s@%s", local, dom);
	if (n < 0 || (size_t)n >= cap || n > SUP_ADDR_MAX)
		return -1;
	return 0;
}

int
suppress_scope_norm(const char *scope, char *out, size_t cap)
{
	if (cap == 0)
		return -1;
	if (scope == NULL || *scope == '\0' || strcasecmp(scope, "global") == 0) {
		out[0] = '\0';
		return 0;
	}
	if (strncasecmp(scope, "domain:", 7) == 0) {
		char dom[SUP_SCOPE_MAX + 1];
		const char *d = scope + 7;
		for (const char *p = d; *p; p++)
			if ((unsigned char)*p <= ' ' || *p == '@' || *p == 0x7f)
				return -1;
		if (domain_norm(d, strlen(d), dom, sizeof(dom)) < 0)
			return -1;
		int n = snprintf(out, cap, "domain:%s", dom);
		return n < 0 || (size_t)n >= cap || n > SUP_SCOPE_MAX ? -1 : 0;
	}
	if (strncasecmp(scope, "pool:", 5) == 0) {
		const char *p = scope + 5;
		if (*p == '\0')
			return -1;
		for (const char *q = p; *q; q++)
			if ((unsigned char)*q <= ' ' || *q == 0x7f)
				return -1;
		int n = snprintf(out, cap, "pool:%s", p);
		return n < 0 || (size_t)n >= cap || n > SUP_SCOPE_MAX ? -1 : 0;
	}
	return -1;
}

/* ---- records ------------------------------------------------------- */

size_t
suppress_key(const char *norm, const char *scope, char *key)
{
	size_t n = strlen(norm);

	memcpy(key, norm, n);
	if (scope != NULL && *scope) {
		size_t s = strlen(scope);
		key[n++] = '\0';
		memcpy(key + n, scope, s);
		n += s;
	}
	return n;
}

void
suppress_key_split(const void *key, size_t klen, struct suppress_entry *e)
{
	const char *k = key;
	const char *nul = memchr(k, '\0', klen);
	size_t alen = nul ? (size_t)(nul - k) : klen;

	alen = MIN(alen, sizeof(e->address) - 1);
	memcpy(e->address, k, alen);
	e->address[alen] = '\0';
	e->scope[0] = '\0';
	if (nul != NULL) {
		size_t slen = MIN(klen - (size_t)(nul - k) - 1, sizeof(e->scope) - 1);
		memcpy(e->scope, nul + 1, slen);
		e->scope[slen] = '\0';
	}
}

size_t
suppress_rec_encode(const struct suppress_entry *e, unsigned char *buf, size_t cap)
{
	size_t slen = strnlen(e->source, sizeof(e->source));
	uint64_t t = (uint64_t)e->time;

	slen = MIN(slen, SUP_SOURCE_MAX);
	if (cap < REC_HEAD + slen)
		return 0;
	buf[0] = REC_VERSION;
	buf[1] = (unsigned char)e->reason;
	for (int i = 0; i < 8; i++)
		buf[2 + i] = (unsigned char)(t >> (8 * i));
	buf[10] = (unsigned char)slen;
	memcpy(buf + REC_HEAD, e->source, slen);
	return REC_HEAD + slen;
}

int
suppress_rec_decode(const void *val, size_t len, struct suppress_entry *e)
{
	const unsigned char *b = val;
	uint64_t t = 0;

	if (len < REC_HEAD || b[0] != REC_VERSION || b[1] >= ARRAY_SIZE(reason_names) ||
	    REC_HEAD + (size_t)b[10] > len || b[10] >= sizeof(e->source))
		return -1;
	e->reason = (enum suppress_reason)b[1];
	for (int i = 0; i < 8; i++)
		t |= (uint64_t)b[2 + i] << (8 * i);
	e->time = (int64_t)t;
	memcpy(e->source, b + REC_HEAD, b[10]);
	e->source[b[10]] = '\0';
	return 0;
}

/* The time-index key of (time, key). */
static size_t
tkey(int64_t time, const char *key, size_t klen, unsigned char *out)
{
	uint64_t t = time < 0 ? 0 : (uint64_t)time;

	for (int i = 0; i < 8; i++)
		out[i] = (unsigned char)(t >> (8 * (7 - i)));
	memcpy(out + 8, key, klen);
	return 8 + klen;
}

/* ---- soft-bounce runs ---------------------------------------------- */

bool
suppress_softrun_step(struct suppress_softrun *run, int64_t now, int n, int64_t window_ms)
{
	if (run->count == 0 || now - run->first_ms > window_ms || now < run->first_ms) {
		run->count = 0;
		run->first_ms = now;
	}
	run->count++;
	run->last_ms = now;
	return n > 0 && run->count >= (uint32_t)n;
}

static int
softrun_decode(const MDB_val *v, struct suppress_softrun *run)
{
	if (v->mv_size != 20)
		return -1;
	const unsigned char *b = v->mv_data;
	memcpy(&run->count, b, 4);
	memcpy(&run->first_ms, b + 4, 8);
	memcpy(&run->last_ms, b + 12, 8);
	return 0;
}

static void
softrun_encode(const struct suppress_softrun *run, unsigned char b[20])
{
	memcpy(b, &run->count, 4);
	memcpy(b + 4, &run->first_ms, 8);
	memcpy(b + 12, &run->last_ms, 8);
}

/* ---- writes (on the store's writer thread) ------------------------- */

static int
del_ok(MDB_txn *txn, MDB_dbi dbi, MDB_val *k)
{
	int rc = mdb_del(txn, dbi, k, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Put a normalised entry, moving its time-index key. */
static int
apply_put(MDB_txn *txn, const struct suppress_entry *e)
{
	char key[SUP_KEY_MAX];
	unsigned char tk[8 + SUP_KEY_MAX], rec[REC_HEAD + SUP_SOURCE_MAX];
	size_t klen = suppress_key(e->address, e->scope, key);
	MDB_val k = { klen, key }, v;
	MDB_dbi dbs = store_dbi(DB_SUPPRESS), dbt = store_dbi(DB_SUPPRESS_T);
	int rc;

	if ((rc = mdb_get(txn, dbs, &k, &v)) == 0) {
		struct suppress_entry old;
		if (suppress_rec_decode(v.mv_data, v.mv_size, &old) == 0) {
			MDB_val t = { tkey(old.time, key, klen, tk), tk };
			if ((rc = del_ok(txn, dbt, &t)) != 0)
				return rc;
		}
	} else if (rc != MDB_NOTFOUND)
		return rc;
	v.mv_size = suppress_rec_encode(e, rec, sizeof(rec));
	v.mv_data = rec;
	if ((rc = mdb_put(txn, dbs, &k, &v, 0)) != 0)
		return rc;
	MDB_val t = { tkey(e->time, key, klen, tk), tk }, empty = { 0, "" };
	if ((rc = mdb_put(txn, dbt, &t, &empty, 0)) != 0)
		return rc;
	if (e->scope[0] == '\0') {
		/* suppressed everywhere: a soft-bounce run has no more use */
		MDB_val a = { strlen(e->address), (void *)e->address };
		return del_ok(txn, store_dbi(DB_SOFTBOUNCE), &a);
	}
	return 0;
}

/* Delete an entry and its index key; *found says whether there was one. */
static int
apply_del(MDB_txn *txn, const char *key, size_t klen, bool *found)
{
	unsigned char tk[8 + SUP_KEY_MAX];
	MDB_val k = { klen, (void *)key }, v;
	MDB_dbi dbs = store_dbi(DB_SUPPRESS);
	int rc;

	*found = false;
	if ((rc = mdb_get(txn, dbs, &k, &v)) == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	*found = true;
	struct suppress_entry old;
	if (suppress_rec_decode(v.mv_data, v.mv_size, &old) == 0) {
		MDB_val t = { tkey(old.time, key, klen, tk), tk };
		if ((rc = del_ok(txn, store_dbi(DB_SUPPRESS_T), &t)) != 0)
			return rc;
	}
	return mdb_del(txn, dbs, &k, NULL);
}

struct add_op {
	struct suppress_entry e;        /* normalised */
	bool logged;
};

static int
add_fn(MDB_txn *txn, void *arg)
{
	struct add_op *op = arg;
	return apply_put(txn, &op->e);
}

static void
add_done(void *arg, bool ok)
{
	struct add_op *op = arg;

	if (ok)
		log_info("event=suppression-added address=<%s> reason=%s scope=%s source=\"%s\"",
		    op->e.address, suppress_reason_name(op->e.reason),
		    op->e.scope[0] ? op->e.scope : "global", op->e.source);
	else
		log_warnx("event=suppression-add-failed address=<%s> reason=%s",
		    op->e.address, suppress_reason_name(op->e.reason));
	free(op);
}

static bool
gmail_rule(void)
{
	const struct config *c = conf;
	return c != NULL && c->suppress_gmail;
}

/* Fill e from caller input: normalised address and scope, time now. */
static int
entry_make(struct suppress_entry *e, const char *address, enum suppress_reason reason,
    const char *scope, const char *source, int64_t time)
{
	memset(e, 0, sizeof(*e));
	if (suppress_normalize(address, gmail_rule(), e->address, sizeof(e->address)) < 0 ||
	    suppress_scope_norm(scope, e->scope, sizeof(e->scope)) < 0 ||
	    (unsigned)reason >= ARRAY_SIZE(reason_names))
		return -1;
	e->reason = reason;
	e->time = time > 0 ? time : now_ms();
	snprintf(e->source, MIN(sizeof(e->source), SUP_SOURCE_MAX + 1), "%s", source ? source : "");
	return 0;
}

void
suppress_add(const char *address, enum suppress_reason reason, const char *scope,
    const char *source)
{
	struct add_op *op = xcalloc(1, sizeof(*op));

	if (entry_make(&op->e, address, reason, scope, source, 0) < 0) {
		log_warnx("event=suppression-add-refused address=<%s> scope=\"%s\" msg=\"not a mailbox or bad scope\"",
		    address ? address : "", scope ? scope : "");
		free(op);
		return;
	}
	store_write(add_fn, add_done, op);
}

/*
 * Soft-bounce writes queued and not yet finished, by address hash. A
 * delivery reads the run before it queues a delete; a run whose first
 * write is still queued is not there to read, so a delivery also deletes
 * when its hash has a write pending (the delete is queued after it, and
 * the writer keeps the order). A collision costs one needless delete.
 */
#define PENDING_SLOTS 4096
static uint32_t soft_pending[PENDING_SLOTS];

static uint32_t *
pending_slot(const char *norm)
{
	return &soft_pending[hash_str(norm) % PENDING_SLOTS];
}

struct soft_op {
	char address[SUP_ADDR_MAX + 1];
	char source[SUP_SOURCE_MAX + 1];
	int64_t now;
	int n;
	int64_t window;
	bool added;
	uint32_t count;
};

static int
soft_fn(MDB_txn *txn, void *arg)
{
	struct soft_op *op = arg;
	MDB_dbi db = store_dbi(DB_SOFTBOUNCE);
	MDB_val k = { strlen(op->address), op->address }, v;
	struct suppress_softrun run = { 0 };
	int rc;

	if ((rc = mdb_get(txn, db, &k, &v)) == 0) {
		if (softrun_decode(&v, &run) < 0)
			memset(&run, 0, sizeof(run));
	} else if (rc != MDB_NOTFOUND)
		return rc;
	op->added = suppress_softrun_step(&run, op->now, op->n, op->window);
	op->count = run.count;
	if (op->added) {
		struct suppress_entry e;
		memset(&e, 0, sizeof(e));
		snprintf(e.address, sizeof(e.address), "%s", op->address);
		e.reason = SUP_SOFT_BOUNCES;
		e.time = op->now;
		snprintf(e.source, sizeof(e.source), "%s", op->source);
		return apply_put(txn, &e);     /* deletes the run too */
	}
	unsigned char b[20];
	softrun_encode(&run, b);
	v.mv_size = sizeof(b);
	v.mv_data = b;
	return mdb_put(txn, db, &k, &v, 0);
}

static void
soft_done(void *arg, bool ok)
{
	struct soft_op *op = arg;

	if (ok && op->added)
		log_info("event=suppression-added address=<%s> reason=soft-bounces scope=global soft_bounces=%u source=\"%s\"",
		    op->address, op->count, op->source);
	else if (ok)
		log_debug("event=soft-bounce address=<%s> run=%u", op->address, op->count);
	else
		log_warnx("event=soft-bounce-failed address=<%s>", op->address);
	__atomic_sub_fetch(pending_slot(op->address), 1, __ATOMIC_RELEASE);
	free(op);
}

void
suppress_note_bounce(const char *address, bool permanent, const char *category,
    const char *source)
{
	char src[SUP_SOURCE_MAX + 1];
	const struct config *c = conf;

	snprintf(src, sizeof(src), "%s%s%s", source ? source : "",
	    source && *source && category && *category ? " " : "", category ? category : "");
	if (permanent) {
		suppress_add(address, SUP_HARD_BOUNCE, NULL, src);
		return;
	}
	struct soft_op *op = xcalloc(1, sizeof(*op));
	if (suppress_normalize(address, gmail_rule(), op->address, sizeof(op->address)) < 0) {
		free(op);
		return;
	}
	snprintf(op->source, sizeof(op->source), "%s", src);
	op->now = now_ms();
	op->n = c ? c->suppress_soft_n : 3;
	op->window = c ? c->suppress_soft_window : 7 * 86400000LL;
	if (op->n <= 0) {
		free(op);       /* the rule is off: nothing to count */
		return;
	}
	__atomic_add_fetch(pending_slot(op->address), 1, __ATOMIC_ACQ_REL);
	store_write(soft_fn, soft_done, op);
}

int
suppress_note_failure(const char *address, const char *ses_type, const char *ses_subtype,
    const char *category, const char *source)
{
	if (strcmp(ses_type, "Permanent") == 0 && strcmp(ses_subtype, "NoEmail") == 0)
		suppress_note_bounce(address, true, category, source);
	else if (strcmp(ses_type, "Undetermined") == 0 || strcmp(ses_subtype, "MailboxFull") == 0)
		suppress_note_bounce(address, false, category, source);
	else
		return 0;
	return 1;
}

void
suppress_note_delivery(const char *address)
{
	char norm[SUP_ADDR_MAX + 1];
	unsigned char v[32];
	size_t len;

	/* the common case (no run) costs one read, no write */
	if (suppress_normalize(address, gmail_rule(), norm, sizeof(norm)) < 0)
		return;
	if (__atomic_load_n(pending_slot(norm), __ATOMIC_ACQUIRE) > 0 ||
	    store_get(DB_SOFTBOUNCE, norm, strlen(norm), v, sizeof(v), &len) == 1)
		store_del(DB_SOFTBOUNCE, norm, strlen(norm));
}

int
suppress_softrun_get(const char *address, struct suppress_softrun *run)
{
	char norm[SUP_ADDR_MAX + 1];
	unsigned char v[32];
	size_t len = 0;

	if (suppress_normalize(address, gmail_rule(), norm, sizeof(norm)) < 0)
		return 0;
	int rc = store_get(DB_SOFTBOUNCE, norm, strlen(norm), v, sizeof(v), &len);
	if (rc != 1)
		return rc;
	MDB_val mv = { len, v };
	if (len > sizeof(v) || softrun_decode(&mv, run) < 0)
		return -1;
	return 1;
}

/* ---- reads --------------------------------------------------------- */

/* A cursor on db in this thread's read transaction (*t), or NULL. */
static MDB_cursor *
read_cursor(enum store_db db, MDB_txn **t)
{
	MDB_cursor *cur;

	if ((*t = store_rtxn()) == NULL)
		return NULL;
	if (mdb_cursor_open(*t, store_dbi(db), &cur) != 0) {
		store_rdone(*t);
		return NULL;
	}
	return cur;
}

/* Closes what read_cursor opened: n, or -1 when the walk ended in error
 * (rc neither 0 nor MDB_NOTFOUND). */
static int
read_done(MDB_cursor *cur, MDB_txn *t, int rc, int n)
{
	mdb_cursor_close(cur);
	store_rdone(t);
	return rc == 0 || rc == MDB_NOTFOUND ? n : -1;
}

/* The entry at a DB_SUPPRESS cursor; an unreadable record counts as manual. */
static void
entry_decode(const MDB_val *k, const MDB_val *v, struct suppress_entry *e)
{
	memset(e, 0, sizeof(*e));
	suppress_key_split(k->mv_data, k->mv_size, e);
	if (suppress_rec_decode(v->mv_data, v->mv_size, e) < 0)
		e->reason = SUP_MANUAL;
}

/* One key in an open read transaction: 1 (e filled), 0, -1. */
static int
get_key(MDB_txn *t, const char *key, size_t klen, struct suppress_entry *e)
{
	MDB_val k = { klen, (void *)key }, v;
	int rc = mdb_get(t, store_dbi(DB_SUPPRESS), &k, &v);

	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0) {
		log_err("event=store-error op=get db=suppress err=\"%s\"", mdb_strerror(rc));
		return -1;
	}
	if (e != NULL) {
		suppress_key_split(key, klen, e);
		if (suppress_rec_decode(v.mv_data, v.mv_size, e) < 0) {
			/* unreadable but present: still suppressed */
			e->reason = SUP_MANUAL;
			e->time = 0;
			e->source[0] = '\0';
		}
	}
	return 1;
}

int
suppress_check(const char *address, const char *sender_domain, const char *pool,
    struct suppress_entry *e)
{
	char norm[SUP_ADDR_MAX + 1], key[SUP_KEY_MAX], scope[SUP_SCOPE_MAX + 1];
	int rc;

	if (suppress_normalize(address, gmail_rule(), norm, sizeof(norm)) < 0)
		return 0;       /* not a mailbox: nothing can be on the list */
	MDB_txn *t = store_rtxn();
	if (t == NULL)
		return -1;
	rc = get_key(t, key, suppress_key(norm, NULL, key), e);
	if (rc == 0 && sender_domain != NULL && *sender_domain) {
		const char *d = strrchr(sender_domain, '@');
		d = d ? d + 1 : sender_domain;
		memcpy(scope, "domain:", 7);
		if (domain_norm(d, strlen(d), scope + 7, sizeof(scope) - 7) >= 0)
			rc = get_key(t, key, suppress_key(norm, scope, key), e);
	}
	if (rc == 0 && pool != NULL && *pool) {
		int n = snprintf(scope, sizeof(scope), "pool:%s", pool);
		if (n > 0 && (size_t)n < sizeof(scope))
			rc = get_key(t, key, suppress_key(norm, scope, key), e);
	}
	store_rdone(t);
	return rc;
}

int
suppress_get(const char *address, const char *scope, struct suppress_entry *e)
{
	char norm[SUP_ADDR_MAX + 1], sc[SUP_SCOPE_MAX + 1], key[SUP_KEY_MAX];

	if (suppress_normalize(address, gmail_rule(), norm, sizeof(norm)) < 0 ||
	    suppress_scope_norm(scope, sc, sizeof(sc)) < 0) {
		errno = EINVAL;
		return -1;
	}
	MDB_txn *t = store_rtxn();
	if (t == NULL)
		return -1;
	int rc = get_key(t, key, suppress_key(norm, sc, key), e);
	store_rdone(t);
	return rc;
}

int
suppress_get_all(const char *address, void (*fn)(const struct suppress_entry *, void *),
    void *arg)
{
	char norm[SUP_ADDR_MAX + 1];
	MDB_cursor *cur;
	int n = 0, rc;

	if (suppress_normalize(address, gmail_rule(), norm, sizeof(norm)) < 0) {
		errno = EINVAL;
		return -1;
	}
	size_t nlen = strlen(norm);
	MDB_txn *t;
	if ((cur = read_cursor(DB_SUPPRESS, &t)) == NULL)
		return -1;
	MDB_val k = { nlen, norm }, v;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size < nlen || memcmp(k.mv_data, norm, nlen) != 0 ||
		    (k.mv_size > nlen && ((const char *)k.mv_data)[nlen] != '\0'))
			break;
		struct suppress_entry e;
		entry_decode(&k, &v, &e);
		fn(&e, arg);
		n++;
	}
	return read_done(cur, t, rc, n);
}

/* ---- synchronous changes (control thread) -------------------------- */

struct put_ctx {
	struct suppress_entry e;
};

static int
put_fn(MDB_txn *txn, void *arg)
{
	struct put_ctx *p = arg;
	return apply_put(txn, &p->e);
}

int
suppress_put_wait(struct suppress_entry *in, char *err, size_t errlen)
{
	struct put_ctx p;

	if (suppress_normalize(in->address, gmail_rule(), p.e.address, sizeof(p.e.address)) < 0) {
		snprintf(err, errlen, "not a valid address: %.300s", in->address);
		return -1;
	}
	if (suppress_scope_norm(in->scope, p.e.scope, sizeof(p.e.scope)) < 0) {
		snprintf(err, errlen, "bad scope \"%.256s\" (global, domain:DOMAIN or pool:NAME)", in->scope);
		return -1;
	}
	if ((unsigned)in->reason >= ARRAY_SIZE(reason_names)) {
		snprintf(err, errlen, "bad reason");
		return -1;
	}
	p.e.reason = in->reason;
	p.e.time = in->time > 0 ? in->time : now_ms();
	snprintf(p.e.source, MIN(sizeof(p.e.source), SUP_SOURCE_MAX + 1), "%s", in->source);
	if (!store_write_wait(put_fn, &p)) {
		snprintf(err, errlen, "the store refused the write (see the log)");
		return -1;
	}
	log_info("event=suppression-added address=<%s> reason=%s scope=%s source=\"%s\"",
	    p.e.address, suppress_reason_name(p.e.reason), p.e.scope[0] ? p.e.scope : "global",
	    p.e.source);
	*in = p.e;
	return 0;
}

struct del_ctx {
	char key[SUP_KEY_MAX];
	size_t klen;
	bool found;
};

static int
del_fn(MDB_txn *txn, void *arg)
{
	struct del_ctx *d = arg;
	return apply_del(txn, d->key, d->klen, &d->found);
}

int
suppress_remove_wait(const char *address, const char *scope)
{
	char norm[SUP_ADDR_MAX + 1], sc[SUP_SCOPE_MAX + 1];
	struct del_ctx d = { .found = false };

	if (suppress_normalize(address, gmail_rule(), norm, sizeof(norm)) < 0 ||
	    suppress_scope_norm(scope, sc, sizeof(sc)) < 0) {
		errno = EINVAL;
		return -1;
	}
	d.klen = suppress_key(norm, sc, d.key);
	if (!store_write_wait(del_fn, &d))
		return -1;
	if (d.found)
		log_info("event=suppression-removed address=<%s> scope=%s", norm, sc[0] ? sc : "global");
	return d.found ? 1 : 0;
}

/* ---- bulk ---------------------------------------------------------- */

struct suppress_batch *
suppress_batch_new(size_t cap, unsigned long *failed)
{
	struct suppress_batch *b = xcalloc(1, sizeof(*b));

	b->v = xmalloc(cap * sizeof(*b->v));
	b->cap = cap;
	b->failed = failed;
	return b;
}

static int
batch_fn(MDB_txn *txn, void *arg)
{
	struct suppress_batch *b = arg;
	int rc;

	for (size_t i = 0; i < b->n; i++)
		if ((rc = apply_put(txn, &b->v[i])) != 0)
			return rc;
	return 0;
}

static void
batch_done(void *arg, bool ok)
{
	struct suppress_batch *b = arg;

	if (!ok && b->failed != NULL)
		__atomic_add_fetch(b->failed, (unsigned long)b->n, __ATOMIC_RELAXED);
	free(b->v);
	free(b);
}

void
suppress_batch_submit(struct suppress_batch *b)
{
	if (b->n == 0) {
		batch_done(b, true);
		return;
	}
	store_write(batch_fn, batch_done, b);
}

/* ---- listing ------------------------------------------------------- */

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static void
hex_encode(const unsigned char *b, size_t n, char *out)
{
	static const char hx[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hx[b[i] >> 4];
		out[2 * i + 1] = hx[b[i] & 15];
	}
	out[2 * n] = '\0';
}

int
suppress_list(const struct suppress_filter *f, const char *cursor, int limit, long scan,
    void (*fn)(const struct suppress_entry *, void *), void *arg, char *next)
{
	unsigned char start[8 + SUP_KEY_MAX];
	size_t slen;
	bool after = false;
	MDB_cursor *cur;
	int given = 0, rc;
	long scanned = 0;

	if (cursor != NULL && *cursor) {
		size_t n = strlen(cursor);
		if (n % 2 || n < 16 || n / 2 > sizeof(start)) {
			errno = EINVAL;
			return -1;
		}
		for (size_t i = 0; i < n / 2; i++) {
			int hi = hexval(cursor[2 * i]), lo = hexval(cursor[2 * i + 1]);
			if (hi < 0 || lo < 0) {
				errno = EINVAL;
				return -1;
			}
			start[i] = (unsigned char)(hi << 4 | lo);
		}
		slen = n / 2;
		after = true;
	} else
		slen = tkey(f->since, "", 0, start);
	next[0] = '\0';        /* cursor may be next: read before */

	MDB_txn *t;
	if ((cur = read_cursor(DB_SUPPRESS_T, &t)) == NULL)
		return -1;
	MDB_val k = { slen, start }, v;
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	if (rc == 0 && after && k.mv_size == slen && memcmp(k.mv_data, start, slen) == 0)
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (given >= limit || scanned >= scan) {
			/* more follows: the next page starts after the last key read */
			break;
		}
		scanned++;
		memcpy(start, k.mv_data, MIN(k.mv_size, sizeof(start)));
		slen = MIN(k.mv_size, sizeof(start));
		if (k.mv_size <= 8)
			continue;
		struct suppress_entry e;
		const char *key = (const char *)k.mv_data + 8;
		size_t klen = k.mv_size - 8;
		int g = get_key(t, key, klen, &e);
		if (g < 0) {
			rc = -1;
			break;
		}
		if (g == 0)
			continue;
		if (f->reason >= 0 && (int)e.reason != f->reason)
			continue;
		if (f->scope != NULL && strcmp(f->scope, e.scope) != 0)
			continue;
		fn(&e, arg);
		given++;
	}
	if (rc == 0)
		hex_encode(start, slen, next);
	return read_done(cur, t, rc, given);
}

int
suppress_scan(const void *afterkey, size_t afterlen, int max,
    void (*fn)(const struct suppress_entry *, void *), void *arg, void *last, size_t *lastlen)
{
	MDB_cursor *cur;
	int n = 0, rc;

	MDB_txn *t;
	if ((cur = read_cursor(DB_SUPPRESS, &t)) == NULL)
		return -1;
	MDB_val k = { afterlen, (void *)afterkey }, v;
	if (afterkey == NULL || afterlen == 0)
		rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	else {
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		if (rc == 0 && k.mv_size == afterlen && memcmp(k.mv_data, afterkey, afterlen) == 0)
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	for (; rc == 0 && n < max; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct suppress_entry e;
		entry_decode(&k, &v, &e);
		fn(&e, arg);
		*lastlen = MIN(k.mv_size, (size_t)SUP_KEY_MAX);
		memcpy(last, k.mv_data, *lastlen);
		n++;
	}
	return read_done(cur, t, rc, n);
}

long
suppress_count(void)
{
	MDB_stat st;
	MDB_txn *t = store_rtxn();

	if (t == NULL)
		return -1;
	int rc = mdb_stat(t, store_dbi(DB_SUPPRESS), &st);
	store_rdone(t);
	return rc == 0 ? (long)st.ms_entries : -1;
}
