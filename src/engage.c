/*
 * engage: engagement records in the store (engage.h).
 *
 * Records are written only by the store's writer thread: engage_note()
 * queues a closure that reads the record inside the batch transaction,
 * applies the event and writes it back, so a burst of events costs one
 * commit and nothing is lost to a read-modify-write race. Opens and clicks
 * also go into the recipient's segment histogram and the global one (the
 * priors of send-time optimisation).
 *
 * On disk a record is compact (the in-memory struct keeps float slots):
 *   u8 version, u8 nslots, u16 reserved,
 *   u32 sends opens clicks bounces soft_bounces complaints unsubscribes
 *       conversions events,
 *   u32 seconds: hist_time first_seen last_send last_open last_click
 *       last_bounce last_complaint,
 *   f32 scale, then nslots x (u8 slot, u16 value): slot = value * scale.
 * Only non-zero slots are stored (a value quantised to 16 bits relative to
 * the largest slot), so a recipient without opens takes 72 bytes and one
 * with opens in 20 different hours 132.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "engage.h"
#include "log.h"
#include "store.h"
#include "sto.h"
#include "util.h"

#define REC_VERSION 1
#define REC_HDR 72
#define GLOBAL_KEY "engage-global"
#define ADDR_MAX 320
#define SEG_MAX 128

static const char *const type_names[] = {
	[EV_OPEN] = "open", [EV_CLICK] = "click", [EV_UNSUBSCRIBE] = "unsubscribe",
	[EV_COMPLAINT] = "complaint", [EV_CONVERSION] = "conversion", [EV_SEND] = "send",
	[EV_BOUNCE] = "bounce", [EV_SOFT_BOUNCE] = "soft-bounce",
};

const char *
engage_type_name(enum engage_type t)
{
	if ((size_t)t < ARRAY_SIZE(type_names) && type_names[t] != NULL)
		return type_names[t];
	return "unknown";
}

int
engage_type_parse(const char *s, enum engage_type *out)
{
	for (size_t i = 0; i < ARRAY_SIZE(type_names); i++)
		if (type_names[i] != NULL && strcmp(s, type_names[i]) == 0) {
			*out = (enum engage_type)i;
			return 0;
		}
	return -1;
}

int64_t
engage_half_life(void)
{
	const struct config *c = conf;

	return c != NULL && c->engage_half_life > 0 ? c->engage_half_life : 30LL * 86400 * 1000;
}

size_t
engage_key(const char *address, char *out, size_t cap)
{
	size_t n = 0;

	for (const char *p = address; *p != '\0' && n + 1 < cap; p++)
		out[n++] = (char)tolower((unsigned char)*p);
	out[n] = '\0';
	return n;
}

/* ---- encoding ---------------------------------------------------------- */

static void put32(unsigned char **p, uint32_t v) { memcpy(*p, &v, 4); *p += 4; }
static uint32_t get32(const unsigned char **p) { uint32_t v; memcpy(&v, *p, 4); *p += 4; return v; }

static uint32_t
to_sec(int64_t ms)
{
	if (ms <= 0)
		return 0;
	return ms / 1000 > UINT32_MAX ? UINT32_MAX : (uint32_t)(ms / 1000);
}

size_t
engage_encode(const struct engage_rec *r, unsigned char *buf)
{
	unsigned char *p = buf;
	float max = 0;
	int n = 0;

	for (int i = 0; i < ENGAGE_SLOTS; i++)
		if (r->hist[i] > max)
			max = r->hist[i];
	float scale = max > 0 ? max / 65535.0f : 0;
	p[0] = REC_VERSION;
	p[2] = p[3] = 0;
	p += 4;
	put32(&p, r->sends);
	put32(&p, r->opens);
	put32(&p, r->clicks);
	put32(&p, r->bounces);
	put32(&p, r->soft_bounces);
	put32(&p, r->complaints);
	put32(&p, r->unsubscribes);
	put32(&p, r->conversions);
	put32(&p, r->events);
	put32(&p, to_sec(r->hist_time));
	put32(&p, to_sec(r->first_seen));
	put32(&p, to_sec(r->last_send));
	put32(&p, to_sec(r->last_open));
	put32(&p, to_sec(r->last_click));
	put32(&p, to_sec(r->last_bounce));
	put32(&p, to_sec(r->last_complaint));
	memcpy(p, &scale, 4);
	p += 4;
	for (int i = 0; i < ENGAGE_SLOTS && scale > 0; i++) {
		long q = lrintf(r->hist[i] / scale);
		if (q <= 0)
			continue;
		uint16_t v = (uint16_t)(q > 65535 ? 65535 : q);
		*p++ = (unsigned char)i;
		memcpy(p, &v, 2);
		p += 2;
		n++;
	}
	buf[1] = (unsigned char)n;
	return (size_t)(p - buf);
}

int
engage_decode(const void *data, size_t len, struct engage_rec *r)
{
	const unsigned char *p = data;
	float scale;

	memset(r, 0, sizeof(*r));
	if (len < REC_HDR || p[0] != REC_VERSION || len < REC_HDR + 3u * p[1])
		return -1;
	int n = p[1];
	p += 4;
	r->sends = get32(&p);
	r->opens = get32(&p);
	r->clicks = get32(&p);
	r->bounces = get32(&p);
	r->soft_bounces = get32(&p);
	r->complaints = get32(&p);
	r->unsubscribes = get32(&p);
	r->conversions = get32(&p);
	r->events = get32(&p);
	r->hist_time = (int64_t)get32(&p) * 1000;
	r->first_seen = (int64_t)get32(&p) * 1000;
	r->last_send = (int64_t)get32(&p) * 1000;
	r->last_open = (int64_t)get32(&p) * 1000;
	r->last_click = (int64_t)get32(&p) * 1000;
	r->last_bounce = (int64_t)get32(&p) * 1000;
	r->last_complaint = (int64_t)get32(&p) * 1000;
	memcpy(&scale, p, 4);
	p += 4;
	for (int i = 0; i < n; i++) {
		uint16_t v;
		int slot = *p++;
		memcpy(&v, p, 2);
		p += 2;
		if (slot < ENGAGE_SLOTS)
			r->hist[slot] = v * scale;
	}
	return 0;
}

/* ---- applying events (writer thread) ------------------------------------ */

static void
apply(struct engage_rec *r, enum engage_type type, int64_t t, int64_t half_life)
{
	if (r->first_seen == 0 || t < r->first_seen)
		r->first_seen = t;
	switch (type) {
	case EV_OPEN:
	case EV_CLICK:
		sto_add(r->hist, &r->hist_time, t, 1.0, half_life);
		r->events++;
		if (type == EV_OPEN) {
			r->opens++;
			r->last_open = MAX(r->last_open, t);
		} else {
			r->clicks++;
			r->last_click = MAX(r->last_click, t);
		}
		break;
	case EV_UNSUBSCRIBE: r->unsubscribes++; break;
	case EV_CONVERSION:  r->conversions++; break;
	case EV_COMPLAINT:
		r->complaints++;
		r->last_complaint = MAX(r->last_complaint, t);
		break;
	case EV_SEND:
		r->sends++;
		r->last_send = MAX(r->last_send, t);
		r->soft_bounces = 0;    /* delivered: the run of soft bounces ends */
		break;
	case EV_BOUNCE:
		r->bounces++;
		r->last_bounce = MAX(r->last_bounce, t);
		break;
	case EV_SOFT_BOUNCE:
		r->soft_bounces++;
		r->last_bounce = MAX(r->last_bounce, t);
		break;
	}
}

static int
txn_get(MDB_txn *txn, enum store_db db, const void *key, size_t klen, struct engage_rec *r)
{
	MDB_val k = { klen, (void *)key }, v;
	int rc = mdb_get(txn, store_dbi(db), &k, &v);

	if (rc == MDB_NOTFOUND) {
		memset(r, 0, sizeof(*r));
		return 0;
	}
	if (rc != 0)
		return rc;
	if (engage_decode(v.mv_data, v.mv_size, r) < 0)
		memset(r, 0, sizeof(*r));   /* unreadable: start again rather than fail every event */
	return 0;
}

static int
txn_put(MDB_txn *txn, enum store_db db, const void *key, size_t klen, const struct engage_rec *r)
{
	unsigned char buf[ENGAGE_MAX_ENCODED];
	MDB_val k = { klen, (void *)key }, v = { engage_encode(r, buf), buf };

	return mdb_put(txn, store_dbi(db), &k, &v, 0);
}

/* Add src's histogram into dst (both brought to the later time). */
static void
merge_hist(struct engage_rec *dst, const struct engage_rec *src, int64_t half_life)
{
	struct engage_rec s = *src;
	int64_t t = MAX(dst->hist_time, s.hist_time);

	if (t == 0)
		return;
	sto_decay_to(dst->hist, &dst->hist_time, t, half_life);
	sto_decay_to(s.hist, &s.hist_time, t, half_life);
	for (int i = 0; i < ENGAGE_SLOTS; i++)
		dst->hist[i] += s.hist[i];
	dst->events += s.events;
}

struct note {
	enum engage_type type;
	int64_t time;
	size_t klen;
	char key[];
};

int
engage_apply_txn(MDB_txn *txn, const char *key, size_t klen, enum engage_type type, int64_t t)
{
	struct engage_rec r;
	int64_t hl = engage_half_life();
	int rc;

	if ((rc = txn_get(txn, DB_RCPT, key, klen, &r)) != 0)
		return rc;
	apply(&r, type, t, hl);
	if ((rc = txn_put(txn, DB_RCPT, key, klen, &r)) != 0)
		return rc;
	if (type != EV_OPEN && type != EV_CLICK)
		return 0;
	/* the priors: the recipient's segment, and everyone */
	MDB_val k = { klen, (void *)key }, v;
	if ((rc = mdb_get(txn, store_dbi(DB_RCPTSEG), &k, &v)) == 0 && v.mv_size > 0 &&
	    v.mv_size < SEG_MAX) {
		char seg[SEG_MAX];
		memcpy(seg, v.mv_data, v.mv_size);
		size_t slen = v.mv_size;
		if ((rc = txn_get(txn, DB_SEGMENT, seg, slen, &r)) != 0)
			return rc;
		apply(&r, type, t, hl);
		if ((rc = txn_put(txn, DB_SEGMENT, seg, slen, &r)) != 0)
			return rc;
	} else if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	if ((rc = txn_get(txn, DB_META, GLOBAL_KEY, strlen(GLOBAL_KEY), &r)) != 0)
		return rc;
	apply(&r, type, t, hl);
	return txn_put(txn, DB_META, GLOBAL_KEY, strlen(GLOBAL_KEY), &r);
}

static int
note_write(MDB_txn *txn, void *arg)
{
	struct note *n = arg;

	return engage_apply_txn(txn, n->key, n->klen, n->type, n->time);
}

static void
note_free(void *arg, bool ok)
{
	(void)ok;
	free(arg);
}

void
engage_note(const char *address, enum engage_type type, int64_t time_ms, const char *campaign)
{
	char key[ADDR_MAX + 1];
	size_t klen;

	(void)campaign;         /* per-campaign figures are kept by the campaign engine */
	if (!store_is_open() || address == NULL || *address == '\0')
		return;
	klen = engage_key(address, key, sizeof(key));
	struct note *n = xmalloc(sizeof(*n) + klen + 1);
	n->type = type;
	n->time = time_ms > 0 ? time_ms : now_ms();
	n->klen = klen;
	memcpy(n->key, key, klen + 1);
	store_write(note_write, note_free, n);
}

/* ---- segments ------------------------------------------------------------ */

int
engage_set_segment_txn(MDB_txn *txn, const char *address, const char *segment)
{
	char key[ADDR_MAX + 1], old[SEG_MAX];
	size_t klen = engage_key(address, key, sizeof(key)), slen = strlen(segment), olen = 0;
	MDB_val k = { klen, key }, v;
	int rc;

	if (slen == 0 || slen >= SEG_MAX || klen == 0)
		return EINVAL;
	if ((rc = mdb_get(txn, store_dbi(DB_RCPTSEG), &k, &v)) == 0) {
		olen = v.mv_size < SEG_MAX ? v.mv_size : 0;
		memcpy(old, v.mv_data, olen);
		if (olen == slen && memcmp(old, segment, slen) == 0)
			return 0;       /* already there */
	} else if (rc != MDB_NOTFOUND)
		return rc;
	char mkey[SEG_MAX + ADDR_MAX + 2];
	if (olen > 0) {
		memcpy(mkey, old, olen);
		mkey[olen] = '\0';
		memcpy(mkey + olen + 1, key, klen);
		MDB_val mk = { olen + 1 + klen, mkey };
		if ((rc = mdb_del(txn, store_dbi(DB_SEGMEMBER), &mk, NULL)) != 0 && rc != MDB_NOTFOUND)
			return rc;
	}
	v.mv_size = slen;
	v.mv_data = (void *)segment;
	if ((rc = mdb_put(txn, store_dbi(DB_RCPTSEG), &k, &v, 0)) != 0)
		return rc;
	memcpy(mkey, segment, slen);
	mkey[slen] = '\0';
	memcpy(mkey + slen + 1, key, klen);
	MDB_val mk = { slen + 1 + klen, mkey }, empty = { 0, "" };
	if ((rc = mdb_put(txn, store_dbi(DB_SEGMEMBER), &mk, &empty, 0)) != 0)
		return rc;
	/* a new member brings its history into the segment's prior */
	struct engage_rec r, s;
	if ((rc = txn_get(txn, DB_RCPT, key, klen, &r)) != 0)
		return rc;
	if (r.events == 0)
		return 0;
	if ((rc = txn_get(txn, DB_SEGMENT, segment, slen, &s)) != 0)
		return rc;
	merge_hist(&s, &r, engage_half_life());
	s.opens += r.opens;
	s.clicks += r.clicks;
	return txn_put(txn, DB_SEGMENT, segment, slen, &s);
}

struct segset {
	char *segment;
	char address[];
};

static int
segset_write(MDB_txn *txn, void *arg)
{
	struct segset *s = arg;

	return engage_set_segment_txn(txn, s->address, s->segment);
}

static void
segset_free(void *arg, bool ok)
{
	struct segset *s = arg;

	(void)ok;
	free(s->segment);
	free(s);
}

void
engage_set_segment(const char *address, const char *segment)
{
	if (!store_is_open() || address == NULL || segment == NULL || *segment == '\0' ||
	    strlen(segment) >= SEG_MAX)
		return;
	struct segset *s = xmalloc(sizeof(*s) + strlen(address) + 1);
	strcpy(s->address, address);
	s->segment = xstrdup(segment);
	store_write(segset_write, segset_free, s);
}

int
engage_get_segment(const char *address, char *segment, size_t cap)
{
	char key[ADDR_MAX + 1];
	size_t klen = engage_key(address, key, sizeof(key)), len = 0;
	int rc;

	if (cap == 0)
		return -1;
	rc = store_get(DB_RCPTSEG, key, klen, segment, cap - 1, &len);
	if (rc == 1)
		segment[len < cap - 1 ? len : cap - 1] = '\0';
	else
		segment[0] = '\0';
	return rc;
}

/* ---- reads ----------------------------------------------------------------- */

int
engage_get_txn(MDB_txn *txn, const char *address, struct engage_rec *rec)
{
	char key[ADDR_MAX + 1];
	size_t klen = engage_key(address, key, sizeof(key));
	MDB_val k = { klen, key }, v;
	int rc = mdb_get(txn, store_dbi(DB_RCPT), &k, &v);

	if (rc == 0)
		return engage_decode(v.mv_data, v.mv_size, rec) == 0 ? 1 : -1;
	memset(rec, 0, sizeof(*rec));
	return rc == MDB_NOTFOUND ? 0 : -1;
}

static int
get_one(enum store_db db, const void *key, size_t klen, struct engage_rec *rec)
{
	MDB_txn *t = store_rtxn();
	int ret;

	memset(rec, 0, sizeof(*rec));
	if (t == NULL)
		return -1;
	MDB_val k = { klen, (void *)key }, v;
	int rc = mdb_get(t, store_dbi(db), &k, &v);
	if (rc == 0)
		ret = engage_decode(v.mv_data, v.mv_size, rec) == 0 ? 1 : -1;
	else
		ret = rc == MDB_NOTFOUND ? 0 : -1;
	store_rdone(t);
	return ret;
}

int
engage_get(const char *address, struct engage_rec *rec)
{
	char key[ADDR_MAX + 1];
	size_t klen = engage_key(address, key, sizeof(key));

	return get_one(DB_RCPT, key, klen, rec);
}

int
engage_segment_get(const char *segment, struct engage_rec *rec)
{
	if (segment == NULL || *segment == '\0') {
		memset(rec, 0, sizeof(*rec));
		return 0;
	}
	return get_one(DB_SEGMENT, segment, strlen(segment), rec);
}

int
engage_global_get(struct engage_rec *rec)
{
	return get_one(DB_META, GLOBAL_KEY, strlen(GLOBAL_KEY), rec);
}
