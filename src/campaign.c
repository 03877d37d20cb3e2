/*
 * campaign: the campaign engine (campaign.h).
 *
 * Records (native byte order; the store is local to the machine):
 *   DB_CAMPAIGN  ID        -> struct camp_hdr (state, counters, window)
 *   DB_CAMPAIGN  ID \0 "d" -> the definition as JSON (templates, from, headers)
 *   DB_CRCPT     ID \0 ADDRESS(lower case) -> struct crec + address + segment + vars JSON
 *   DB_CSCHED    be64(send_at) ID \0 ADDRESS -> u32 batch
 * A load (the first request, or a later recipient batch) has a batch
 * number; while it is loading, the header's loading_batch names it and the
 * scheduler leaves its entries alone, so a request that fails half-way can
 * be removed whole before anything of it was sent.
 *
 * The seam for variants and list hygiene: camp_content() decides what one
 * recipient gets at send time (a variant chosen by Thompson sampling,
 * bandit.h), camp_skip() whether it is sent at all (hygiene.h).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <lmdb.h>

#include "campaign.h"
#include "conf.h"
#include "bandit.h"
#include "ctl_stream.h"
#include "engage.h"
#include "hygiene.h"
#include "inject.h"
#include "log.h"
#include "mime.h"
#include "queue.h"
#include "smtp_parse.h"
#include "spool.h"
#include "store.h"
#include "suppress.h"
#include "util.h"
#include "variant.h"
#include "worker.h"

#define HDR_VERSION 1
#define ADDR_MAX 320
#define SEG_MAX 128
#define TOP_STORED 3
#define PULL_INFLIGHT 256      /* messages being injected at once */
#define PULL_SCAN 4096         /* schedule entries looked at per tick */
#define PULL_SKIP 65536        /* entries of loading/cancelled campaigns passed over per tick */
#define PULL_HDRS 16           /* campaign headers remembered during a tick */
#define DRY_RUN_MAX 100000     /* recipients of a dry run (its plan is held for the reply) */
#define MAX_ERRORS 20          /* line errors reported by an events import */

enum camp_state { CS_ACTIVE, CS_CANCELLED };

struct camp_hdr {
	uint32_t version;
	uint8_t state, type, sto, pad;
	uint32_t loading_batch;        /* batch being loaded (its entries wait), 0 = none */
	uint32_t next_batch;
	int32_t priority;
	int64_t created, start_at, max_delay;
	uint64_t counts[CR_NSTATES];
};

struct crec {                      /* a campaign recipient, fixed part */
	uint8_t state, reason, ntop, prior_segment;
	uint32_t batch;
	int64_t send_at;
	float events_eff, weight;
	uint32_t events;
	uint32_t top_hour[TOP_STORED]; /* hours since the epoch */
	float top_score[TOP_STORED];
	uint16_t alen, slen;
	uint32_t vlen;
	/* address, segment, vars JSON follow */
};

static const char *const state_names[CR_NSTATES] = {
	"scheduled", "queued", "delivered", "bounced", "suppressed", "skipped", "cancelled",
};

const char *
crcpt_state_name(enum crcpt_state s)
{
	return (unsigned)s < CR_NSTATES ? state_names[s] : "unknown";
}

/* ---------------------------------------------------------------- templates */

struct tpl_part {
	bool var;
	char *text;                    /* literal, or the variable's name */
	char *def;                     /* default, or NULL */
};
struct tpl {
	struct tpl_part *p;
	int n;
};

static void
tpl_add(struct tpl *t, bool var, char *text, char *def)
{
	t->p = xrealloc(t->p, sizeof(*t->p) * (size_t)(t->n + 1));
	t->p[t->n].var = var;
	t->p[t->n].text = text;
	t->p[t->n].def = def;
	t->n++;
}

struct tpl *
tpl_compile(const char *src, char *err, size_t errlen)
{
	struct tpl *t = xcalloc(1, sizeof(*t));
	const char *p = src;

	while (*p != '\0') {
		const char *o = strstr(p, "{{");
		if (o == NULL) {
			tpl_add(t, false, xstrdup(p), NULL);
			break;
		}
		if (o > p)
			tpl_add(t, false, xstrndup(p, (size_t)(o - p)), NULL);
		const char *c = strstr(o + 2, "}}");
		if (c == NULL) {
			snprintf(err, errlen, "unclosed \"{{\" at offset %zu", (size_t)(o - src));
			tpl_free(t);
			return NULL;
		}
		const char *bar = memchr(o + 2, '|', (size_t)(c - o - 2));
		char *name = xstrndup_trim(o + 2, (size_t)((bar ? bar : c) - o - 2));
		char *def = bar ? xstrndup_trim(bar + 1, (size_t)(c - bar - 1)) : NULL;
		bool ok = *name != '\0';
		for (const char *q = name; *q && ok; q++)
			ok = isalnum((unsigned char)*q) || *q == '_' || *q == '-' || *q == '.';
		if (!ok) {
			snprintf(err, errlen, "bad placeholder \"{{%.*s}}\" (a name of letters, digits, _ - .)",
			    (int)MIN(c - o - 2, 60), o + 2);
			free(name);
			free(def);
			tpl_free(t);
			return NULL;
		}
		tpl_add(t, true, name, def);
		p = c + 2;
	}
	return t;
}

void
tpl_free(struct tpl *t)
{
	if (t == NULL)
		return;
	for (int i = 0; i < t->n; i++) {
		free(t->p[i].text);
		free(t->p[i].def);
	}
	free(t->p);
	free(t);
}

/* A variable's value as text: 1 found, 0 missing (or null). */
static int
var_text(json_t *vars, const char *name, const char *email, char *num, size_t numlen,
    const char **out)
{
	json_t *v;

	if (strcmp(name, "email") == 0 && (vars == NULL || json_object_get(vars, "email") == NULL)) {
		*out = email;
		return 1;
	}
	v = vars ? json_object_get(vars, name) : NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (json_is_string(v))
		*out = json_string_value(v);
	else if (json_is_integer(v)) {
		snprintf(num, numlen, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		*out = num;
	} else if (json_is_real(v)) {
		snprintf(num, numlen, "%.15g", json_real_value(v));
		*out = num;
	} else if (json_is_boolean(v))
		*out = json_is_true(v) ? "true" : "false";
	else
		return 0;
	return 1;
}

const char *
tpl_missing(const struct tpl *t, json_t *vars)
{
	char num[64];
	const char *v;

	for (int i = 0; t != NULL && i < t->n; i++)
		if (t->p[i].var && t->p[i].def == NULL &&
		    var_text(vars, t->p[i].text, "", num, sizeof(num), &v) == 0)
			return t->p[i].text;
	return NULL;
}

static void
html_escape(struct sbuf *out, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&':  sb_str(out, "&amp;"); break;
		case '<':  sb_str(out, "&lt;"); break;
		case '>':  sb_str(out, "&gt;"); break;
		case '"':  sb_str(out, "&quot;"); break;
		case '\'': sb_str(out, "&#39;"); break;
		default:   sb_add(out, s, 1); break;
		}
	}
}

void
tpl_render(const struct tpl *t, json_t *vars, const char *email, bool html, struct sbuf *out)
{
	char num[64];
	const char *v;

	sb_grow(out, 0);
	out->p[out->len] = '\0';
	for (int i = 0; t != NULL && i < t->n; i++) {
		if (!t->p[i].var) {
			sb_str(out, t->p[i].text);
			continue;
		}
		if (var_text(vars, t->p[i].text, email, num, sizeof(num), &v) == 0)
			v = t->p[i].def ? t->p[i].def : "";
		if (html)
			html_escape(out, v);
		else
			sb_str(out, v);
	}
}

/* ---------------------------------------------------------------- definitions */

struct camp_def {
	char id[CAMP_ID_MAX + 1];
	char *from;                    /* envelope sender */
	char *pool;
	struct tpl *subject, *text, *html;
	int nhdr;
	char **hname;
	struct tpl **hval;
	json_t *json;                  /* as stored */
	struct camp_def *next;         /* scheduler's cache */
	/* variants and list hygiene (bandit.h, variant.h, hygiene.h) */
	bool transactional;
	struct variant_spec vs;
	struct tpl **vtpl;             /* VTPL(g, i, k): subject, text, html; NULL = the campaign's */
	struct sunset_override sunset;
};
#define VTPL(d, g, i, k) ((d)->vtpl[((size_t)(g) * BANDIT_MAX_ARMS + (size_t)(i)) * 3 + (k)])

static void
def_free(struct camp_def *d)
{
	if (d == NULL)
		return;
	free(d->from);
	free(d->pool);
	tpl_free(d->subject);
	tpl_free(d->text);
	tpl_free(d->html);
	for (int i = 0; i < d->nhdr; i++) {
		free(d->hname[i]);
		tpl_free(d->hval[i]);
	}
	free(d->hname);
	free(d->hval);
	if (d->vtpl != NULL)
		for (size_t i = 0; i < (size_t)d->vs.ngroups * BANDIT_MAX_ARMS * 3; i++)
			tpl_free(d->vtpl[i]);
	free(d->vtpl);
	variant_spec_free(&d->vs);
	json_decref(d->json);
	free(d);
}

/*
 * The variants, type and sunset of a definition; each variant's texts are
 * templates like the campaign's. A campaign without text or html of its
 * own needs a "*" group whose variants, like every other, bring one.
 */
static void
def_variants(struct camp_def *d, json_t *o, char *err, size_t errlen)
{
	static const char *const parts[3] = { "subject", "text", "html" };
	const char *type = json_string_value(json_object_get(o, "type"));
	bool own = json_object_get(o, "text") != NULL || json_object_get(o, "html") != NULL;

	d->transactional = type != NULL && strcmp(type, "transactional") == 0;
	if (hygiene_sunset_parse(json_object_get(o, "sunset"), &d->sunset, err, errlen) < 0 ||
	    variant_spec_parse(o, own, &d->vs, err, errlen) < 0)
		return;
	if (d->vs.ngroups == 0)
		return;
	d->vtpl = xcalloc((size_t)d->vs.ngroups * BANDIT_MAX_ARMS * 3, sizeof(*d->vtpl));
	for (int g = 0; g < d->vs.ngroups; g++)
		for (int i = 0; i < d->vs.groups[g].n; i++) {
			const struct variant *v = &d->vs.groups[g].v[i];
			const char *src[3] = { v->subject, v->text, v->html };

			if (!own && v->text == NULL && v->html == NULL) {
				snprintf(err, errlen, "variant \"%s\" of segment \"%s\" has no text or html, "
				    "and the campaign has none of its own", v->id, d->vs.groups[g].segment);
				return;
			}
			for (int k = 0; k < 3; k++) {
				char e[200];

				if (src[k] == NULL)
					continue;
				if ((VTPL(d, g, i, k) = tpl_compile(src[k], e, sizeof(e))) == NULL) {
					snprintf(err, errlen, "variant \"%s\" of segment \"%s\", \"%s\": %s", v->id,
					    d->vs.groups[g].segment, parts[k], e);
					return;
				}
			}
		}
}

static bool
id_ok(const char *id)
{
	size_t n = strlen(id);

	if (n == 0 || n > CAMP_ID_MAX)
		return false;
	for (const char *p = id; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
			return false;
	return true;
}

static struct tpl *
compile_member(json_t *o, const char *key, char *err, size_t errlen)
{
	const char *s = json_string_value(json_object_get(o, key));
	char e[200];
	struct tpl *t;

	if (s == NULL)
		return NULL;
	if ((t = tpl_compile(s, e, sizeof(e))) == NULL)
		snprintf(err, errlen, "\"%s\": %s", key, e);
	return t;
}

/* Compile a stored (or checked) definition. NULL with err on a problem. */
static struct camp_def *
def_from_json(const char *id, json_t *o, char *err, size_t errlen)
{
	struct camp_def *d = xcalloc(1, sizeof(*d));
	json_t *h = json_object_get(o, "headers"), *v;
	const char *k;

	err[0] = '\0';
	snprintf(d->id, sizeof(d->id), "%s", id);
	d->json = json_incref(o);
	d->from = xstrdup(json_string_value(json_object_get(o, "from")) ?: "");
	if (json_string_value(json_object_get(o, "pool")))
		d->pool = xstrdup(json_string_value(json_object_get(o, "pool")));
	d->subject = compile_member(o, "subject", err, errlen);
	if (err[0] == '\0')
		d->text = compile_member(o, "text", err, errlen);
	if (err[0] == '\0')
		d->html = compile_member(o, "html", err, errlen);
	if (err[0] == '\0' && h != NULL) {
		d->hname = xcalloc(json_object_size(h) + 1, sizeof(*d->hname));
		d->hval = xcalloc(json_object_size(h) + 1, sizeof(*d->hval));
		json_object_foreach(h, k, v) {
			char e[200];
			d->hname[d->nhdr] = xstrdup(k);
			d->hval[d->nhdr] = tpl_compile(json_string_value(v) ?: "", e, sizeof(e));
			if (d->hval[d->nhdr++] == NULL) {
				snprintf(err, errlen, "header \"%s\": %s", k, e);
				break;
			}
		}
	}
	if (err[0] == '\0')
		def_variants(d, o, err, errlen);
	if (err[0] != '\0') {
		def_free(d);
		return NULL;
	}
	return d;
}

/* The first variable a recipient lacks, over every template of d. */
static const char *
def_missing(const struct camp_def *d, json_t *vars)
{
	const char *m;

	if ((m = tpl_missing(d->subject, vars)) || (m = tpl_missing(d->text, vars)) ||
	    (m = tpl_missing(d->html, vars)))
		return m;
	for (int i = 0; i < d->nhdr; i++)
		if ((m = tpl_missing(d->hval[i], vars)))
			return m;
	if (d->vtpl != NULL)
		for (size_t i = 0; i < (size_t)d->vs.ngroups * BANDIT_MAX_ARMS * 3; i++)
			if (d->vtpl[i] != NULL && (m = tpl_missing(d->vtpl[i], vars)))
				return m;
	return NULL;
}

/* ---------------------------------------------------------------- keys and records */

static size_t
rcpt_key(const char *id, const char *addr, char *out)
{
	size_t n = strlen(id);

	memcpy(out, id, n);
	out[n++] = '\0';
	return n + engage_key(addr, out + n, ADDR_MAX + 1);
}

static size_t
sched_key(int64_t send_at, const char *rkey, size_t rklen, unsigned char *out)
{
	uint64_t t = (uint64_t)(send_at < 0 ? 0 : send_at);

	for (int i = 7; i >= 0; i--) {
		out[i] = (unsigned char)(t & 0xff);
		t >>= 8;
	}
	memcpy(out + 8, rkey, rklen);
	return 8 + rklen;
}

/* Inside a write: drop a recipient's entry from the scheduled queue (gone
 * already is fine). 0 or an LMDB error. */
static int
sched_del(MDB_txn *txn, int64_t send_at, const void *rkey, size_t rklen)
{
	unsigned char sk[8 + CAMP_ID_MAX + ADDR_MAX + 3];
	MDB_val skv = { sched_key(send_at, rkey, rklen, sk), sk };
	int rc = mdb_del(txn, store_dbi(DB_CSCHED), &skv, NULL);

	return rc == MDB_NOTFOUND ? 0 : rc;
}

static int64_t
sched_time(const unsigned char *k)
{
	uint64_t t = 0;

	for (int i = 0; i < 8; i++)
		t = (t << 8) | k[i];
	return (int64_t)t;
}

struct rview {                     /* a decoded recipient record (points into its buffer) */
	struct crec c;
	const char *addr, *segment, *vars;
};

static int
rec_decode(const void *data, size_t len, struct rview *r, char *abuf, char *sbuf)
{
	const char *p = data;

	if (len < sizeof(struct crec))
		return -1;
	memcpy(&r->c, p, sizeof(r->c));
	if (len < sizeof(struct crec) + r->c.alen + r->c.slen + r->c.vlen ||
	    r->c.alen > ADDR_MAX || r->c.slen >= SEG_MAX)
		return -1;
	p += sizeof(struct crec);
	memcpy(abuf, p, r->c.alen);
	abuf[r->c.alen] = '\0';
	p += r->c.alen;
	memcpy(sbuf, p, r->c.slen);
	sbuf[r->c.slen] = '\0';
	p += r->c.slen;
	r->addr = abuf;
	r->segment = sbuf;
	r->vars = p;                   /* vlen bytes, not terminated */
	return 0;
}

static void *
rec_encode(const struct crec *c, const char *addr, const char *seg, const char *vars,
    size_t vlen, size_t *len)
{
	struct crec h = *c;
	h.alen = (uint16_t)strlen(addr);
	h.slen = (uint16_t)(seg ? strlen(seg) : 0);
	h.vlen = (uint32_t)vlen;
	*len = sizeof(h) + h.alen + h.slen + h.vlen;
	char *b = xmalloc(*len), *p = b;
	memcpy(p, &h, sizeof(h));
	p += sizeof(h);
	memcpy(p, addr, h.alen);
	p += h.alen;
	if (h.slen)
		memcpy(p, seg, h.slen);
	p += h.slen;
	if (vlen)
		memcpy(p, vars, vlen);
	return b;
}

static int
hdr_get(MDB_txn *txn, const char *id, struct camp_hdr *h)
{
	MDB_val k = { strlen(id), (void *)id }, v;
	int rc = mdb_get(txn, store_dbi(DB_CAMPAIGN), &k, &v);

	if (rc != 0)
		return rc;
	if (v.mv_size != sizeof(*h))
		return MDB_CORRUPTED;
	memcpy(h, v.mv_data, sizeof(*h));
	return 0;
}

static int
hdr_put(MDB_txn *txn, const char *id, const struct camp_hdr *h)
{
	MDB_val k = { strlen(id), (void *)id }, v = { sizeof(*h), (void *)h };

	return mdb_put(txn, store_dbi(DB_CAMPAIGN), &k, &v, 0);
}

static void
count_move(struct camp_hdr *h, int from, int to)
{
	if (from >= 0 && from < CR_NSTATES && h->counts[from] > 0)
		h->counts[from]--;
	if (to >= 0 && to < CR_NSTATES)
		h->counts[to]++;
}

/*
 * Inside a write: move one recipient from state `from` (-1 = any not yet
 * final: scheduled or queued) to `to`, deleting its schedule entry when it
 * leaves the scheduled state. 0, or an LMDB error.
 */
static int
rcpt_transition(MDB_txn *txn, const char *id, const char *addr, int from, enum crcpt_state to)
{
	char rk[CAMP_ID_MAX + ADDR_MAX + 3], abuf[ADDR_MAX + 1], sbuf[SEG_MAX];
	size_t rklen = rcpt_key(id, addr, rk);
	MDB_val k = { rklen, rk }, v;
	struct rview r;
	struct camp_hdr h;
	int rc;

	if ((rc = mdb_get(txn, store_dbi(DB_CRCPT), &k, &v)) != 0)
		return rc == MDB_NOTFOUND ? 0 : rc;
	if (rec_decode(v.mv_data, v.mv_size, &r, abuf, sbuf) < 0)
		return 0;
	if (from >= 0 ? r.c.state != from : (r.c.state != CR_SCHEDULED && r.c.state != CR_QUEUED))
		return 0;
	if (r.c.state == CR_SCHEDULED && (rc = sched_del(txn, r.c.send_at, rk, rklen)) != 0)
		return rc;
	/* rewrite the state byte in a copy of the record */
	void *copy = xmalloc(v.mv_size);
	memcpy(copy, v.mv_data, v.mv_size);
	((struct crec *)copy)->state = (uint8_t)to;
	MDB_val nv = { v.mv_size, copy };
	int old = r.c.state;
	rc = mdb_put(txn, store_dbi(DB_CRCPT), &k, &nv, 0);
	free(copy);
	if (rc != 0)
		return rc;
	if ((rc = hdr_get(txn, id, &h)) != 0)
		return rc == MDB_NOTFOUND ? 0 : rc;
	count_move(&h, old, to);
	return hdr_put(txn, id, &h);
}

/* ---------------------------------------------------------------- planning */

#define PRIOR_CACHE 64

struct prior_ent {
	char name[SEG_MAX];
	bool have;                     /* the segment has a histogram */
	struct engage_rec rec;
	double dist[STO_SLOTS];        /* smoothed and normalised, computed once */
};
struct prior_cache {
	bool global_loaded, global_have;
	struct engage_rec global;
	double global_dist[STO_SLOTS];
	int n;
	struct prior_ent ent[PRIOR_CACHE];
};

struct prior_cache *
prior_cache_new(void)
{
	return xcalloc(1, sizeof(struct prior_cache));
}

void
prior_cache_reset(struct prior_cache *pc)
{
	pc->global_loaded = false;
	pc->n = 0;
}

void
prior_cache_free(struct prior_cache *pc)
{
	free(pc);
}

static int
rec_get(MDB_txn *txn, enum store_db db, const void *key, size_t klen, struct engage_rec *r)
{
	MDB_val k = { klen, (void *)key }, v;

	memset(r, 0, sizeof(*r));
	if (klen == 0 || mdb_get(txn, store_dbi(db), &k, &v) != 0)
		return 0;
	return engage_decode(v.mv_data, v.mv_size, r) == 0;
}

/* The prior's distribution for a segment (else the global one). */
static const double *
prior_for(MDB_txn *txn, struct prior_cache *pc, const char *segment, bool *is_segment)
{
	*is_segment = false;
	if (segment != NULL && *segment != '\0') {
		struct prior_ent *e = NULL;
		for (int i = 0; i < pc->n; i++)
			if (strcmp(pc->ent[i].name, segment) == 0)
				e = &pc->ent[i];
		if (e == NULL) {
			e = &pc->ent[pc->n < PRIOR_CACHE ? pc->n++ : PRIOR_CACHE - 1];
			snprintf(e->name, sizeof(e->name), "%s", segment);
			e->have = rec_get(txn, DB_SEGMENT, segment, strlen(segment), &e->rec) &&
			    sto_distribution(e->rec.hist, e->dist);
		}
		if (e->have) {
			*is_segment = true;
			return e->dist;
		}
	}
	if (!pc->global_loaded) {
		pc->global_have = rec_get(txn, DB_META, "engage-global", 13, &pc->global) &&
		    sto_distribution(pc->global.hist, pc->global_dist);
		if (!pc->global_have)
			sto_distribution(NULL, pc->global_dist);   /* uniform */
		pc->global_loaded = true;
	}
	return pc->global_dist;
}

static uint64_t
spread_seed(const char *id, const char *email)
{
	return hash_str(email) * 0x9E3779B97F4A7C15ULL ^ hash_str(id);
}

void
campaign_plan(void *txnp, struct prior_cache *pc, const char *id, int64_t start_at,
    int64_t max_delay, bool sto, int64_t now, const char *email, const char *segment,
    struct camp_decision *d)
{
	MDB_txn *txn = txnp;
	struct engage_rec r;
	double score[STO_SLOTS];
	bool is_seg;

	memset(d, 0, sizeof(*d));
	d->window_start = start_at > now ? start_at : now;
	d->window_end = start_at + max_delay > d->window_start ? start_at + max_delay : d->window_start;
	if (segment != NULL && *segment != '\0')
		snprintf(d->segment, sizeof(d->segment), "%s", segment);
	else if (txn != NULL) {
		char key[ADDR_MAX + 1];
		size_t klen = engage_key(email, key, sizeof(key));
		MDB_val k = { klen, key }, v;
		if (mdb_get(txn, store_dbi(DB_RCPTSEG), &k, &v) == 0 && v.mv_size < SEG_MAX) {
			memcpy(d->segment, v.mv_data, v.mv_size);
			d->segment[v.mv_size] = '\0';
		}
	}
	if (max_delay <= 0 || !sto || d->window_end == d->window_start) {
		d->send_at = d->window_start;
		d->reason = STO_NOW;
		return;
	}
	if (txn != NULL)
		engage_get_txn(txn, email, &r);
	else
		memset(&r, 0, sizeof(r));
	double uniform[STO_SLOTS];
	const double *prior;
	if (txn != NULL)
		prior = prior_for(txn, pc, d->segment, &is_seg);
	else {
		sto_distribution(NULL, uniform);
		prior = uniform;
		is_seg = false;
	}
	d->events = r.events;
	d->effective_events = r.hist_time > 0 ?
	    sto_mass(r.hist) * sto_decay_factor(now - r.hist_time, engage_half_life()) : 0;
	d->weight = sto_shrink_weight(d->effective_events);
	d->segment_prior = is_seg;
	sto_scores_dist(r.hist, prior, d->weight, score);
	sto_choose(score, d->window_start, d->window_end, spread_seed(id, email), &d->choice);
	d->send_at = d->choice.send_at;
	if (d->choice.edge)
		d->reason = STO_WINDOW_EDGE;
	else if (d->weight >= 0.5)
		d->reason = STO_RECIPIENT_HISTORY;
	else
		d->reason = is_seg ? STO_SEGMENT_PRIOR : STO_GLOBAL_PRIOR;
}

static json_t *
jtime(int64_t ms)
{
	char buf[40];

	fmt_time3339(buf, sizeof(buf), ms);
	return json_string(buf);
}

static json_t *
slot_json(int64_t hour_ms, double score)
{
	static const char *const days[] = { "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun" };
	int slot = sto_slot(hour_ms);
	char name[16];

	snprintf(name, sizeof(name), "%s %02d:00", days[slot / 24], slot % 24);
	return json_pack("{s:o,s:s,s:f}", "hour", jtime(hour_ms), "slot", name,
	    "score", round(score * 1e6) / 1e6);
}

/* One plan line / explanation from a decision. */
static json_t *
decision_json(const char *email, const struct camp_decision *d, bool full)
{
	json_t *o = json_pack("{s:s,s:o,s:s}", "email", email, "send_at", jtime(d->send_at),
	    "reason", sto_reason_name(d->reason));

	json_object_set_new(o, "segment", d->segment[0] ? json_string(d->segment) : json_null());
	json_object_set_new(o, "events", json_integer(d->events));
	json_object_set_new(o, "effective_events", json_real(round(d->effective_events * 100) / 100));
	json_object_set_new(o, "prior_weight", json_real(round((1 - d->weight) * 1000) / 1000));
	json_object_set_new(o, "prior", json_string(d->reason == STO_NOW ? "none" :
	    d->segment_prior ? "segment" : "global"));
	if (full) {
		json_t *top = json_array();
		for (int i = 0; i < d->choice.ntop; i++)
			json_array_append_new(top, slot_json(d->choice.top[i].hour_ms, d->choice.top[i].score));
		json_object_set_new(o, "top_slots", top);
		json_object_set_new(o, "window", json_pack("{s:o,s:o}", "start", jtime(d->window_start),
		    "end", jtime(d->window_end)));
	}
	return o;
}

/* ---------------------------------------------------------------- loads */

enum load_kind { L_CREATE, L_RCPTS, L_EVENTS };

struct pend {
	char *email, *segment, *vars;
	size_t vlen;
	struct camp_decision d;
};

struct nd_load {
	enum load_kind kind;
	char id[CAMP_ID_MAX + 1];
	bool begun;                    /* the campaign (or batch) exists in the store */
	bool committed, dry_run, ended;
	int status;                    /* 0 = fine so far */
	json_t *error;                 /* {"code":..., "message":...} */
	struct camp_def *def;
	struct camp_hdr hdr;
	uint32_t batch;
	struct pend *pend;
	size_t npend;
	long lines, accepted, duplicates, due_now;
	struct prior_cache *pc;
	struct evbuffer *plan;
	json_t *dups;                  /* the first duplicates, for the reply */
	/* events */
	long ev_ok, ev_bad;
	json_t *ev_errors;
};

static void campaign_kick(void);

static void
fail(struct nd_load *l, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
fail(struct nd_load *l, int status, const char *code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (l->status != 0)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	l->status = status;
	json_t *m = json_string(msg);
	l->error = json_pack("{s:s,s:o}", "code", code, "message", m ? m : json_string("(not UTF-8)"));
}

static char *
path_param(const char *s, size_t n)
{
	char *raw = xstrndup(s, n), *dec;
	size_t dlen;

	dec = evhttp_uridecode(raw, 0, &dlen);
	free(raw);
	if (dec != NULL && strlen(dec) != dlen) {
		free(dec);
		dec = NULL;
	}
	return dec;
}

struct nd_load *
nd_load_begin(const char *method, const char *path)
{
	struct nd_load *l;
	const char *p = path;

	if (strcmp(method, "POST") != 0)
		return NULL;
	while (*p == '/')
		p++;
	if (strcmp(p, "v1/campaigns") == 0 || strcmp(p, "v1/campaigns/") == 0) {
		l = xcalloc(1, sizeof(*l));
		l->kind = L_CREATE;
	} else if (strcmp(p, "v1/events") == 0 || strcmp(p, "v1/events/") == 0) {
		l = xcalloc(1, sizeof(*l));
		l->kind = L_EVENTS;
		l->ev_errors = json_array();
		return l;
	} else if (strncmp(p, "v1/campaigns/", 13) == 0) {
		const char *id = p + 13, *sl = strchr(id, '/');
		if (sl == NULL || (strcmp(sl, "/recipients") != 0 && strcmp(sl, "/recipients/") != 0))
			return NULL;
		l = xcalloc(1, sizeof(*l));
		l->kind = L_RCPTS;
		char *dec = path_param(id, (size_t)(sl - id));
		if (dec == NULL || !id_ok(dec))
			fail(l, 404, "not_found", "no such campaign");
		else
			snprintf(l->id, sizeof(l->id), "%s", dec);
		free(dec);
	} else
		return NULL;
	l->pc = prior_cache_new();
	l->dups = json_array();
	return l;
}

/* ---- creating the campaign (first line) ---- */

struct create_arg {
	const char *id;
	struct camp_hdr *hdr;
	const char *def;
	bool exists;
};

static int
w_create(MDB_txn *txn, void *arg)
{
	struct create_arg *a = arg;
	struct camp_hdr h;
	char dk[CAMP_ID_MAX + 3];
	size_t n = strlen(a->id);
	int rc;

	if ((rc = hdr_get(txn, a->id, &h)) == 0) {
		a->exists = true;
		return EEXIST;
	}
	if (rc != MDB_NOTFOUND)
		return rc;
	if ((rc = hdr_put(txn, a->id, a->hdr)) != 0)
		return rc;
	memcpy(dk, a->id, n);
	dk[n] = '\0';
	dk[n + 1] = 'd';
	MDB_val k = { n + 2, dk }, v = { strlen(a->def), (void *)a->def };
	return mdb_put(txn, store_dbi(DB_CAMPAIGN), &k, &v, 0);
}

static int64_t
member_time(struct nd_load *l, json_t *o, const char *key, int64_t dflt)
{
	json_t *v = json_object_get(o, key);
	int64_t t;

	if (v == NULL || json_is_null(v))
		return dflt;
	if (!json_is_string(v) || parse_time3339(json_string_value(v), &t) < 0) {
		fail(l, 400, "bad_request", "\"%s\" must be an RFC 3339 time such as 2026-11-24T19:00:00Z",
		    key);
		return -1;
	}
	return t;
}

static void
campaign_line(struct nd_load *l, json_t *o)
{
	static const char *const known[] = { "id", "from", "subject", "text", "html", "headers",
	    "pool", "priority", "start_at", "max_delay", "sto", "type", "dry_run",
	    "variants", "reward", "explore_until", "winner_after", "sunset" };
	const char *k, *id, *from, *type;
	json_t *v, *def;
	int64_t now = now_ms(), start, max_delay = 0;
	bool u;
	char err[512];

	json_object_foreach(o, k, v) {
		size_t i;
		for (i = 0; i < ARRAY_SIZE(known); i++)
			if (strcmp(k, known[i]) == 0)
				break;
		if (i == ARRAY_SIZE(known)) {
			fail(l, 400, "bad_request", "unknown campaign field \"%s\"", k);
			return;
		}
	}
	id = json_string_value(json_object_get(o, "id"));
	if (id == NULL || !id_ok(id)) {
		fail(l, 400, "bad_request", "\"id\" is required: 1 to %d letters, digits, '-', '_' or '.'",
		    CAMP_ID_MAX);
		return;
	}
	snprintf(l->id, sizeof(l->id), "%s", id);
	from = json_string_value(json_object_get(o, "from"));
	if (from == NULL || !smtp_valid_mailbox(from, true, &u)) {
		fail(l, 400, "invalid_address", "\"from\" must be the sender's address");
		return;
	}
	if (json_object_get(o, "text") == NULL && json_object_get(o, "html") == NULL &&
	    json_object_get(o, "variants") == NULL) {
		fail(l, 400, "bad_request", "a campaign needs \"text\" and/or \"html\"");
		return;
	}
	{
		/* variants and sunset: checked here to answer bad_request, compiled below */
		struct variant_spec vs;
		struct sunset_override so;
		bool own = json_object_get(o, "text") != NULL || json_object_get(o, "html") != NULL;

		if (hygiene_sunset_parse(json_object_get(o, "sunset"), &so, err, sizeof(err)) < 0 ||
		    variant_spec_parse(o, own, &vs, err, sizeof(err)) < 0) {
			fail(l, 400, "bad_request", "%s", err);
			return;
		}
		variant_spec_free(&vs);
	}
	static const char *const strs[] = { "subject", "text", "html", "pool", "type" };
	for (size_t i = 0; i < ARRAY_SIZE(strs); i++) {
		v = json_object_get(o, strs[i]);
		if (v != NULL && !json_is_null(v) &&
		    (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))) {
			fail(l, 400, "bad_request", "\"%s\" must be a string without NUL", strs[i]);
			return;
		}
	}
	if ((v = json_object_get(o, "headers")) != NULL) {
		if (!json_is_object(v)) {
			fail(l, 400, "bad_request", "\"headers\" must be an object of strings");
			return;
		}
		json_t *hv;
		json_object_foreach(v, k, hv) {
			const char *s = json_string_value(hv);
			if (!mime_header_name_ok(k) || mime_header_reserved(k) ||
			    strcasecmp(k, "Subject") == 0) {
				fail(l, 400, "bad_request", "header \"%s\" cannot be set here", k);
				return;
			}
			if (s == NULL || strpbrk(s, "\r\n") || strlen(s) != json_string_length(hv)) {
				fail(l, 400, "bad_request", "header \"%s\" must be a one-line string", k);
				return;
			}
		}
	}
	const char *pool = json_string_value(json_object_get(o, "pool"));
	if (pool != NULL && conf_pool(conf, pool) == NULL) {
		fail(l, 400, "bad_request", "unknown pool \"%s\"", pool);
		return;
	}
	memset(&l->hdr, 0, sizeof(l->hdr));
	l->hdr.version = HDR_VERSION;
	type = json_string_value(json_object_get(o, "type"));
	if (type != NULL && strcmp(type, "marketing") != 0 && strcmp(type, "transactional") != 0) {
		fail(l, 400, "bad_request", "\"type\" is marketing or transactional");
		return;
	}
	l->hdr.type = type != NULL && strcmp(type, "transactional") == 0;
	if ((v = json_object_get(o, "priority")) != NULL && !json_is_null(v)) {
		if (!json_is_integer(v) || json_integer_value(v) < -1000 || json_integer_value(v) > 1000) {
			fail(l, 400, "bad_request", "\"priority\" must be an integer from -1000 to 1000");
			return;
		}
		l->hdr.priority = (int32_t)json_integer_value(v);
	}
	if ((start = member_time(l, o, "start_at", now)) < 0)
		return;
	if ((v = json_object_get(o, "max_delay")) != NULL && !json_is_null(v)) {
		const char *perr = "must be a duration such as 24h";
		if (json_is_integer(v) && json_integer_value(v) == 0)
			max_delay = 0;
		else if (!json_is_string(v) || parse_duration(json_string_value(v), &max_delay, &perr) < 0 ||
		    max_delay < 0 || max_delay > STO_MAX_WINDOW_MS) {
			fail(l, 400, "bad_request", "\"max_delay\": %s (0 to 7d)",
			    json_is_string(v) ? perr : "must be a duration such as 24h");
			return;
		}
	}
	v = json_object_get(o, "sto");
	if (v != NULL && !json_is_boolean(v)) {
		fail(l, 400, "bad_request", "\"sto\" must be true or false");
		return;
	}
	l->hdr.sto = v == NULL || json_is_true(v);
	v = json_object_get(o, "dry_run");
	if (v != NULL && !json_is_boolean(v)) {
		fail(l, 400, "bad_request", "\"dry_run\" must be true or false");
		return;
	}
	l->dry_run = json_is_true(v);
	l->hdr.created = now;
	l->hdr.start_at = start;
	l->hdr.max_delay = max_delay;
	l->hdr.state = CS_ACTIVE;

	/* the definition as stored: the campaign object without the per-request fields */
	def = json_deep_copy(o);
	json_object_del(def, "dry_run");
	l->def = def_from_json(id, def, err, sizeof(err));
	if (l->def == NULL) {
		fail(l, 400, "bad_template", "%s", err);
		json_decref(def);
		return;
	}
	if (l->dry_run) {
		l->plan = evbuffer_new();
		json_decref(def);
		return;
	}
	l->batch = 1;
	l->hdr.loading_batch = 1;
	l->hdr.next_batch = 2;
	char *text = json_dumps(def, JSON_COMPACT);
	json_decref(def);
	struct create_arg a = { id, &l->hdr, text, false };
	bool ok = store_write_wait(w_create, &a);
	free(text);
	if (a.exists) {
		fail(l, 409, "exists", "campaign %s exists already (add recipients with POST /v1/campaigns/%s/recipients)",
		    id, id);
		return;
	}
	if (!ok) {
		fail(l, 503, "store_error", "the store refused the campaign (see the log)");
		return;
	}
	l->begun = true;
}

/* ---- a recipient batch on an existing campaign ---- */

struct open_arg {
	const char *id;
	struct camp_hdr *hdr;
	int why;                       /* 0, ENOENT, EBUSY, ECANCELED */
};

static int
w_open_batch(MDB_txn *txn, void *arg)
{
	struct open_arg *a = arg;
	int rc = hdr_get(txn, a->id, a->hdr);

	if (rc == MDB_NOTFOUND)
		return a->why = ENOENT;
	if (rc != 0)
		return rc;
	if (a->hdr->state != CS_ACTIVE)
		return a->why = ECANCELED;
	if (a->hdr->loading_batch != 0)
		return a->why = EBUSY;
	a->hdr->loading_batch = a->hdr->next_batch++;
	return hdr_put(txn, a->id, a->hdr);
}

static void
open_batch(struct nd_load *l)
{
	struct open_arg a = { l->id, &l->hdr, 0 };
	char dk[CAMP_ID_MAX + 3], err[512];
	size_t n = strlen(l->id), len = 0;

	if (!store_write_wait(w_open_batch, &a) && a.why == 0) {
		fail(l, 503, "store_error", "the store refused the batch (see the log)");
		return;
	}
	if (a.why == ENOENT) {
		fail(l, 404, "not_found", "no such campaign: %s", l->id);
		return;
	}
	if (a.why == ECANCELED) {
		fail(l, 409, "cancelled", "campaign %s is cancelled", l->id);
		return;
	}
	if (a.why == EBUSY) {
		fail(l, 409, "busy", "campaign %s is loading another batch of recipients", l->id);
		return;
	}
	l->batch = l->hdr.loading_batch;
	l->begun = true;
	/* its definition, for the variable checks */
	memcpy(dk, l->id, n);
	dk[n] = '\0';
	dk[n + 1] = 'd';
	MDB_txn *t = store_rtxn();
	MDB_val k = { n + 2, dk }, v;
	json_t *def = NULL;
	if (t != NULL && mdb_get(t, store_dbi(DB_CAMPAIGN), &k, &v) == 0)
		def = json_loadb(v.mv_data, v.mv_size, 0, NULL);
	store_rdone(t);
	(void)len;
	if (def == NULL || (l->def = def_from_json(l->id, def, err, sizeof(err))) == NULL)
		fail(l, 500, "store_error", "the definition of campaign %s cannot be read", l->id);
	json_decref(def);
}

/* ---- writing a batch of recipients ---- */

struct batch_arg {
	struct nd_load *l;
};

static int
w_segments(MDB_txn *txn, void *arg)
{
	struct nd_load *l = arg;
	int rc;

	for (size_t i = 0; i < l->npend; i++)
		if (l->pend[i].segment != NULL &&
		    (rc = engage_set_segment_txn(txn, l->pend[i].email, l->pend[i].segment)) < 0)
			return rc;
	return 0;
}

static int
w_batch(MDB_txn *txn, void *arg)
{
	struct nd_load *l = arg;
	struct camp_hdr h;
	int rc;
	long added = 0;

	if ((rc = hdr_get(txn, l->id, &h)) != 0)
		return rc == MDB_NOTFOUND ? ENOENT : rc;
	for (size_t i = 0; i < l->npend; i++) {
		struct pend *p = &l->pend[i];
		char rk[CAMP_ID_MAX + ADDR_MAX + 3];
		unsigned char sk[8 + sizeof(rk)];
		size_t rklen = rcpt_key(l->id, p->email, rk), len;
		struct crec c;

		memset(&c, 0, sizeof(c));
		c.state = CR_SCHEDULED;
		c.reason = (uint8_t)p->d.reason;
		c.batch = l->batch;
		c.send_at = p->d.send_at;
		c.events = p->d.events;
		c.events_eff = (float)p->d.effective_events;
		c.weight = (float)p->d.weight;
		c.prior_segment = p->d.segment_prior;
		c.ntop = (uint8_t)MIN(p->d.choice.ntop, TOP_STORED);
		for (int t = 0; t < c.ntop; t++) {
			c.top_hour[t] = (uint32_t)(p->d.choice.top[t].hour_ms / STO_HOUR_MS);
			c.top_score[t] = (float)p->d.choice.top[t].score;
		}
		void *rec = rec_encode(&c, p->email, p->d.segment, p->vars, p->vlen, &len);
		MDB_val k = { rklen, rk }, v = { len, rec };
		rc = mdb_put(txn, store_dbi(DB_CRCPT), &k, &v, MDB_NOOVERWRITE);
		free(rec);
		if (rc == MDB_KEYEXIST) {
			p->d.send_at = -1;     /* marks the duplicate for the reply */
			continue;
		}
		if (rc != 0)
			return rc;
		uint32_t b = l->batch;
		MDB_val skv = { sched_key(c.send_at, rk, rklen, sk), sk }, bv = { sizeof(b), &b };
		if ((rc = mdb_put(txn, store_dbi(DB_CSCHED), &skv, &bv, 0)) != 0)
			return rc;
		added++;
	}
	h.counts[CR_SCHEDULED] += (uint64_t)added;
	return hdr_put(txn, l->id, &h);
}

static void
pend_clear(struct nd_load *l)
{
	for (size_t i = 0; i < l->npend; i++) {
		free(l->pend[i].email);
		free(l->pend[i].segment);
		free(l->pend[i].vars);
	}
	l->npend = 0;
}

static void
flush(struct nd_load *l)
{
	int64_t now = now_ms();

	if (l->npend == 0 || l->status != 0)
		goto out;
	if (!l->dry_run) {
		bool segs = false;
		for (size_t i = 0; i < l->npend && !segs; i++)
			segs = l->pend[i].segment != NULL;
		if (segs && !store_write_wait(w_segments, l)) {
			fail(l, 503, "store_error", "the store refused the recipients' segments (see the log)");
			goto out;
		}
	}
	MDB_txn *t = store_rtxn();
	prior_cache_reset(l->pc);
	for (size_t i = 0; i < l->npend; i++) {
		struct pend *p = &l->pend[i];
		campaign_plan(t, l->pc, l->id, l->hdr.start_at, l->hdr.max_delay, l->hdr.sto, now,
		    p->email, p->segment, &p->d);
	}
	store_rdone(t);
	if (l->dry_run) {
		for (size_t i = 0; i < l->npend; i++) {
			json_t *o = decision_json(l->pend[i].email, &l->pend[i].d, false);
			char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
			evbuffer_add_printf(l->plan, "%s\n", s);
			free(s);
			json_decref(o);
		}
		l->accepted += (long)l->npend;
		goto out;
	}
	if (!store_write_wait(w_batch, l)) {
		fail(l, 503, "store_error", "the store refused the recipients (see the log)");
		goto out;
	}
	for (size_t i = 0; i < l->npend; i++) {
		if (l->pend[i].d.send_at < 0) {
			l->duplicates++;
			if (json_array_size(l->dups) < MAX_ERRORS)
				json_array_append_new(l->dups, json_string(l->pend[i].email));
		} else {
			l->accepted++;
			l->due_now += l->pend[i].d.send_at <= now;
		}
	}
out:
	pend_clear(l);
}

static void
recipient_line(struct nd_load *l, json_t *o, long n)
{
	const char *email, *seg = NULL, *k;
	json_t *vars, *v;
	bool u;

	if (l->def == NULL && l->status == 0) {
		fail(l, 400, "bad_request", "line %ld: the campaign object must come first", n);
		return;
	}
	json_object_foreach(o, k, v)
		if (strcmp(k, "email") != 0 && strcmp(k, "vars") != 0 && strcmp(k, "segment") != 0) {
			fail(l, 400, "bad_request", "line %ld: unknown recipient field \"%s\"", n, k);
			return;
		}
	email = json_string_value(json_object_get(o, "email"));
	if (email == NULL || strlen(email) > ADDR_MAX || !smtp_valid_mailbox(email, true, &u)) {
		fail(l, 400, "invalid_address", "line %ld: \"email\" must be a valid address", n);
		return;
	}
	vars = json_object_get(o, "vars");
	if (vars != NULL && !json_is_object(vars) && !json_is_null(vars)) {
		fail(l, 400, "bad_request", "line %ld (%s): \"vars\" must be an object", n, email);
		return;
	}
	if ((v = json_object_get(o, "segment")) != NULL && !json_is_null(v)) {
		seg = json_string_value(v);
		if (seg == NULL || *seg == '\0' || json_string_length(v) >= SEG_MAX ||
		    strlen(seg) != json_string_length(v)) {
			fail(l, 400, "bad_request", "line %ld (%s): \"segment\" must be a name of 1 to %d bytes",
			    n, email, SEG_MAX - 1);
			return;
		}
	}
	const char *missing = def_missing(l->def, vars);
	if (missing != NULL) {
		fail(l, 400, "missing_variable",
		    "line %ld (%s): no value for {{%s}} and the template gives no default (write {{%s|default}})",
		    n, email, missing, missing);
		return;
	}
	if (l->dry_run && l->accepted + (long)l->npend >= DRY_RUN_MAX) {
		/* the plan is the reply, held until the body ends: bounded */
		fail(l, 413, "too_large", "line %ld: a dry run plans at most %d recipients "
		    "(plan a sample of the list)", n, DRY_RUN_MAX);
		evbuffer_drain(l->plan, evbuffer_get_length(l->plan));
		return;
	}
	if (l->npend % 1024 == 0)
		l->pend = xrealloc(l->pend, sizeof(*l->pend) * (l->npend + 1024));
	struct pend *p = &l->pend[l->npend++];
	memset(p, 0, sizeof(*p));
	p->email = xstrdup(email);
	p->segment = seg ? xstrdup(seg) : NULL;
	if (vars != NULL && json_object_size(vars) > 0) {
		p->vars = json_dumps(vars, JSON_COMPACT);
		p->vlen = strlen(p->vars);
	}
	if (l->npend >= CAMP_BATCH)
		flush(l);
}

/* ---- events ---- */

static void
event_line(struct nd_load *l, json_t *o, long n)
{
	const char *type = json_string_value(json_object_get(o, "type"));
	const char *email = json_string_value(json_object_get(o, "email"));
	const char *camp = json_string_value(json_object_get(o, "campaign"));
	json_t *tv = json_object_get(o, "time");
	enum engage_type et;
	int64_t t = now_ms();
	const char *why = NULL;
	bool u;

	if (type == NULL || engage_type_parse(type, &et) < 0)
		why = "\"type\" must be open, click, unsubscribe, complaint, conversion, send, bounce or soft-bounce";
	else if (email == NULL || strlen(email) > ADDR_MAX || !smtp_valid_mailbox(email, true, &u))
		why = "\"email\" must be a valid address";
	else if (tv != NULL && !json_is_null(tv) &&
	    (!json_is_string(tv) || parse_time3339(json_string_value(tv), &t) < 0))
		why = "\"time\" must be an RFC 3339 time";
	if (why != NULL) {
		l->ev_bad++;
		if (json_array_size(l->ev_errors) < MAX_ERRORS)
			json_array_append_new(l->ev_errors, json_pack("{s:I,s:s}", "line", (json_int_t)n,
			    "message", why));
		return;
	}
	engage_note(email, et, t, camp);
	/* an open or click rewards the variant this recipient got (bandit.h) */
	if (camp != NULL && (et == EV_OPEN || et == EV_CLICK))
		bandit_reward(camp, email, et == EV_CLICK);
	l->ev_ok++;
	if (l->ev_ok % 10000 == 0 && store_backlog() > 100000)
		store_flush();         /* let the writer keep up: memory stays bounded */
}

void
nd_load_line(struct nd_load *l, const char *line, size_t len, long n)
{
	json_error_t jerr;
	json_t *o;

	l->lines++;
	if (l->status != 0)
		return;                /* failed: the rest of the body is read and dropped */
	o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (o == NULL || !json_is_object(o)) {
		if (l->kind == L_EVENTS) {
			l->ev_bad++;
			if (json_array_size(l->ev_errors) < MAX_ERRORS)
				json_array_append_new(l->ev_errors, json_pack("{s:I,s:s}", "line", (json_int_t)n,
				    "message", o ? "not a JSON object" : jerr.text));
		} else
			fail(l, 400, "bad_json", "line %ld: %s", n, o ? "not a JSON object" : jerr.text);
		json_decref(o);
		return;
	}
	switch (l->kind) {
	case L_EVENTS:
		event_line(l, o, n);
		break;
	case L_CREATE:
		if (n == 1)
			campaign_line(l, o);
		else
			recipient_line(l, o, n);
		break;
	case L_RCPTS:
		if (!l->begun)
			open_batch(l);
		if (l->status == 0)
			recipient_line(l, o, n);
		break;
	}
	json_decref(o);
}

void
nd_load_too_long(struct nd_load *l, long n)
{
	if (l->kind == L_EVENTS) {
		l->ev_bad++;
		return;
	}
	fail(l, 413, "too_large", "line %ld is longer than %u bytes", n, CTL_STREAM_MAX_LINE);
}

struct commit_arg {
	const char *id;
	uint32_t batch;
	long removed;                  /* recipients a rollback removed */
};

static int
w_commit(MDB_txn *txn, void *arg)
{
	struct commit_arg *a = arg;
	struct camp_hdr h;
	int rc = hdr_get(txn, a->id, &h);

	if (rc != 0)
		return rc == MDB_NOTFOUND ? ENOENT : rc;
	if (h.loading_batch == a->batch)
		h.loading_batch = 0;
	return hdr_put(txn, a->id, &h);
}

void
nd_load_end(struct nd_load *l)
{
	l->ended = true;
	if (l->kind == L_EVENTS) {
		store_flush();
		return;
	}
	if (l->status == 0 && l->def == NULL) {
		if (l->kind == L_RCPTS && !l->begun)
			fail(l, 400, "bad_request", "no recipients given");
		else
			fail(l, 400, "bad_request", "the body must start with the campaign object (NDJSON)");
	}
	flush(l);
	if (l->status != 0 || l->dry_run || !l->begun)
		return;
	struct commit_arg a = { l->id, l->batch, 0 };
	if (!store_write_wait(w_commit, &a)) {
		fail(l, 503, "store_error", "the store refused to commit the recipients (see the log)");
		return;
	}
	l->committed = true;
	log_info("event=campaign-%s campaign=%s batch=%u recipients=%ld duplicates=%ld",
	    l->kind == L_CREATE ? "created" : "recipients", l->id, l->batch, l->accepted, l->duplicates);
	if (l->due_now > 0)
		campaign_kick();
}

int
nd_load_reply(struct nd_load *l, json_t **json, struct evbuffer **ndjson)
{
	*json = NULL;
	*ndjson = NULL;
	if (l->kind == L_EVENTS) {
		*json = json_pack("{s:I,s:I,s:O}", "accepted", (json_int_t)l->ev_ok,
		    "rejected", (json_int_t)l->ev_bad, "errors", l->ev_errors);
		return 200;
	}
	if (l->status != 0) {
		*json = json_pack("{s:O}", "error", l->error);
		return l->status;
	}
	if (l->dry_run) {
		*ndjson = l->plan;
		l->plan = NULL;
		return 200;
	}
	*json = json_pack("{s:s,s:I,s:I,s:O,s:I}", "id", l->id, "accepted", (json_int_t)l->accepted,
	    "duplicates", (json_int_t)l->duplicates, "duplicate_addresses", l->dups,
	    "batch", (json_int_t)l->batch);
	return l->kind == L_CREATE ? 201 : 200;
}

/* ---- rolling back a load that failed ---- */

static int
w_rollback(MDB_txn *txn, void *arg)
{
	struct commit_arg *a = arg;
	struct camp_hdr h;
	MDB_cursor *cur;
	char prefix[CAMP_ID_MAX + 2], abuf[ADDR_MAX + 1], sbuf[SEG_MAX];
	size_t plen = strlen(a->id) + 1;
	bool whole = a->batch == 1;
	int rc;

	memcpy(prefix, a->id, plen);       /* the id and its NUL */
	if ((rc = hdr_get(txn, a->id, &h)) != 0)
		return rc == MDB_NOTFOUND ? 0 : rc;
	if ((rc = mdb_cursor_open(txn, store_dbi(DB_CRCPT), &cur)) != 0)
		return rc;
	MDB_val k = { plen, prefix }, v;
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && k.mv_size >= plen && memcmp(k.mv_data, prefix, plen) == 0) {
		struct rview r;
		if (rec_decode(v.mv_data, v.mv_size, &r, abuf, sbuf) == 0 && (whole || r.c.batch == a->batch)) {
			if (r.c.state == CR_SCHEDULED &&
			    (rc = sched_del(txn, r.c.send_at, k.mv_data, k.mv_size)) != 0)
				break;
			count_move(&h, r.c.state, -1);
			if ((rc = mdb_cursor_del(cur, 0)) != 0)
				break;
			a->removed++;
			rc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
			if (rc == MDB_NOTFOUND || rc == EINVAL)
				rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
			continue;
		}
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	if (whole) {
		char dk[CAMP_ID_MAX + 3];
		MDB_val hk = { plen - 1, prefix };
		memcpy(dk, prefix, plen);
		dk[plen] = 'd';
		MDB_val dkv = { plen + 1, dk };
		if ((rc = mdb_del(txn, store_dbi(DB_CAMPAIGN), &hk, NULL)) != 0 && rc != MDB_NOTFOUND)
			return rc;
		if ((rc = mdb_del(txn, store_dbi(DB_CAMPAIGN), &dkv, NULL)) != 0 && rc != MDB_NOTFOUND)
			return rc;
		return 0;
	}
	if (h.loading_batch == a->batch)
		h.loading_batch = 0;
	return hdr_put(txn, a->id, &h);
}

void
nd_load_free(struct nd_load *l)
{
	if (l == NULL)
		return;
	if (l->begun && !l->committed && !l->dry_run) {
		struct commit_arg a = { l->id, l->batch, 0 };
		if (!store_write_wait(w_rollback, &a))
			log_warnx("event=campaign-rollback-failed campaign=%s batch=%u", l->id, l->batch);
		else
			log_info("event=campaign-rolled-back campaign=%s batch=%u", l->id, l->batch);
	}
	pend_clear(l);
	free(l->pend);
	def_free(l->def);
	json_decref(l->error);
	json_decref(l->dups);
	json_decref(l->ev_errors);
	prior_cache_free(l->pc);
	if (l->plan)
		evbuffer_free(l->plan);
	free(l);
}

/* ---------------------------------------------------------------- status, cancel, explain */

static json_t *
err_json(const char *code, const char *msg)
{
	return json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
}

static json_t *
def_get(MDB_txn *t, const char *id)
{
	char dk[CAMP_ID_MAX + 3];
	size_t n = strlen(id);
	MDB_val k = { n + 2, dk }, v;

	memcpy(dk, id, n);
	dk[n] = '\0';
	dk[n + 1] = 'd';
	if (mdb_get(t, store_dbi(DB_CAMPAIGN), &k, &v) != 0)
		return NULL;
	return json_loadb(v.mv_data, v.mv_size, 0, NULL);
}

static json_t *
status_json(const char *id, const struct camp_hdr *h, json_t *def)
{
	json_t *counts = json_object();
	uint64_t total = 0;
	char dur[32];

	for (int i = 0; i < CR_NSTATES; i++) {
		json_object_set_new(counts, state_names[i], json_integer((json_int_t)h->counts[i]));
		total += h->counts[i];
	}
	fmt_duration(dur, sizeof(dur), h->max_delay);
	json_t *o = json_pack("{s:s,s:s,s:s,s:o,s:o,s:s,s:b,s:i,s:I,s:o}", "id", id,
	    "state", h->state == CS_CANCELLED ? "cancelled" : h->loading_batch ? "loading" : "active",
	    "type", h->type ? "transactional" : "marketing",
	    "created", jtime(h->created), "start_at", jtime(h->start_at),
	    "max_delay", h->max_delay ? dur : "0", "sto", h->sto != 0, "priority", (int)h->priority,
	    "recipients", (json_int_t)total, "counts", counts);
	if (def != NULL) {
		static const char *const keys[] = { "from", "subject", "pool" };
		for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
			json_t *v = json_object_get(def, keys[i]);
			json_object_set(o, keys[i], v ? v : json_null());
		}
	}
	return o;
}

int
campaign_status(const char *id, json_t **out)
{
	struct camp_hdr h;
	MDB_txn *t = store_rtxn();
	int rc;

	if (t == NULL) {
		*out = err_json("store_error", "the store is not open");
		return 503;
	}
	rc = id_ok(id) ? hdr_get(t, id, &h) : MDB_NOTFOUND;
	if (rc != 0) {
		store_rdone(t);
		*out = err_json("not_found", "no such campaign");
		return 404;
	}
	json_t *def = def_get(t, id);
	store_rdone(t);
	*out = status_json(id, &h, def);
	json_decref(def);
	return 200;
}

/* GET /v1/campaigns/ID/variants: each segment's variants and their figures. */
int
campaign_variants(const char *id, json_t **out)
{
	struct variant_spec vs;
	MDB_txn *t = store_rtxn();
	json_t *def, *segs;
	char err[512];
	bool own;

	if (t == NULL) {
		*out = err_json("store_error", "the store is not open");
		return 503;
	}
	def = id_ok(id) ? def_get(t, id) : NULL;
	store_rdone(t);
	if (def == NULL) {
		*out = err_json("not_found", "no such campaign");
		return 404;
	}
	own = json_object_get(def, "text") != NULL || json_object_get(def, "html") != NULL;
	if (variant_spec_parse(def, own, &vs, err, sizeof(err)) < 0) {
		json_decref(def);
		log_warnx("event=campaign-variants-unreadable campaign=%s err=\"%s\"", id, err);
		*out = err_json("store_error", "the stored campaign's variants do not parse (see the log)");
		return 500;
	}
	json_decref(def);
	segs = json_array();
	for (int g = 0; g < vs.ngroups; g++) {
		const struct variant_group *grp = &vs.groups[g];
		struct bandit_stat st[BANDIT_MAX_ARMS];
		json_t *vars = json_array();
		int winner;
		int64_t wms;

		if (bandit_stats(id, grp->segment, grp->ids, grp->n, vs.policy.reward, st, &winner,
		    &wms) < 0) {
			json_decref(vars);
			json_decref(segs);
			variant_spec_free(&vs);
			*out = err_json("store_error", "cannot read the variant counts");
			return 500;
		}
		for (int i = 0; i < grp->n; i++)
			json_array_append_new(vars, json_pack("{s:s,s:I,s:I,s:I,s:f,s:f}",
			    "id", grp->ids[i], "sends", (json_int_t)st[i].arm.sends,
			    "opens", (json_int_t)st[i].arm.opens, "clicks", (json_int_t)st[i].arm.clicks,
			    "mean", st[i].mean, "p_best", st[i].pbest));
		char ts[40] = "";
		if (winner >= 0)
			fmt_time3339(ts, sizeof(ts), wms);
		json_array_append_new(segs, json_pack("{s:s,s:o,s:o,s:o}", "segment", grp->segment,
		    "winner", winner >= 0 ? json_string(grp->ids[winner]) : json_null(),
		    "winner_since", winner >= 0 ? json_string(ts) : json_null(), "variants", vars));
	}
	*out = json_pack("{s:s,s:s,s:I,s:f,s:o}", "campaign", id,
	    "reward", bandit_reward_name(vs.policy.reward),
	    "explore_until", (json_int_t)vs.policy.explore_until,
	    "winner_after", vs.policy.winner_after, "segments", segs);
	variant_spec_free(&vs);
	return 200;
}

int
campaign_list(json_t **out)
{
	MDB_txn *t = store_rtxn();
	MDB_cursor *cur;
	MDB_val k, v;
	json_t *a = json_array();

	if (t == NULL || mdb_cursor_open(t, store_dbi(DB_CAMPAIGN), &cur) != 0) {
		store_rdone(t);
		json_decref(a);
		*out = err_json("store_error", "the store is not open");
		return 503;
	}
	for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (memchr(k.mv_data, '\0', k.mv_size) != NULL || v.mv_size != sizeof(struct camp_hdr))
			continue;
		char id[CAMP_ID_MAX + 1];
		struct camp_hdr h;
		snprintf(id, sizeof(id), "%.*s", (int)k.mv_size, (const char *)k.mv_data);
		memcpy(&h, v.mv_data, sizeof(h));
		json_array_append_new(a, status_json(id, &h, NULL));
	}
	mdb_cursor_close(cur);
	store_rdone(t);
	*out = json_pack("{s:o}", "campaigns", a);
	return 200;
}

struct cancel_arg {
	const char *id;
	bool found;
	long cancelled;
};

static int
w_cancel(MDB_txn *txn, void *arg)
{
	struct cancel_arg *a = arg;
	struct camp_hdr h;
	MDB_cursor *cur;
	char prefix[CAMP_ID_MAX + 2], abuf[ADDR_MAX + 1], sbuf[SEG_MAX];
	size_t plen = strlen(a->id) + 1;
	int rc;

	if ((rc = hdr_get(txn, a->id, &h)) != 0)
		return rc == MDB_NOTFOUND ? 0 : rc;
	a->found = true;
	h.state = CS_CANCELLED;
	memcpy(prefix, a->id, plen);
	if ((rc = mdb_cursor_open(txn, store_dbi(DB_CRCPT), &cur)) != 0)
		return rc;
	MDB_val k = { plen, prefix }, v;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	    rc == 0 && k.mv_size >= plen && memcmp(k.mv_data, prefix, plen) == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct rview r;
		if (rec_decode(v.mv_data, v.mv_size, &r, abuf, sbuf) < 0 || r.c.state != CR_SCHEDULED)
			continue;
		if ((rc = sched_del(txn, r.c.send_at, k.mv_data, k.mv_size)) != 0)
			break;
		void *copy = xmalloc(v.mv_size);
		memcpy(copy, v.mv_data, v.mv_size);
		((struct crec *)copy)->state = CR_CANCELLED;
		MDB_val nv = { v.mv_size, copy };
		rc = mdb_cursor_put(cur, &k, &nv, MDB_CURRENT);
		free(copy);
		if (rc != 0)
			break;
		count_move(&h, CR_SCHEDULED, CR_CANCELLED);
		a->cancelled++;
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	return hdr_put(txn, a->id, &h);
}


/* A message the campaign scheduler queued for campaign arg. */
static bool
of_campaign(const struct spool_msg *m, void *arg)
{
	return m->campaign != NULL && strcmp(m->campaign, arg) == 0 &&
	    spool_meta(m, "scheduled_at") != NULL;
}

int
campaign_cancel(const char *id, json_t **out)
{
	struct cancel_arg a = { id, false, 0 };

	if (!id_ok(id)) {
		*out = err_json("not_found", "no such campaign");
		return 404;
	}
	if (!store_write_wait(w_cancel, &a)) {
		*out = err_json("store_error", "the store refused the change (see the log)");
		return 503;
	}
	if (!a.found) {
		*out = err_json("not_found", "no such campaign");
		return 404;
	}
	/* and what it queued already is recalled: its recipients move to
	 * cancelled as the queue drops them */
	long recalled = queue_delete_where(of_campaign, (void *)id);
	log_info("event=campaign-cancelled campaign=%s recipients=%ld recalled_messages=%ld", id,
	    a.cancelled, recalled);
	int st = campaign_status(id, out);
	if (st == 200) {
		json_object_set_new(*out, "cancelled_now", json_integer(a.cancelled));
		json_object_set_new(*out, "recalled", json_integer(recalled));
	}
	return st;
}

int
campaign_explain(const char *id, const char *email, json_t **out)
{
	char rk[CAMP_ID_MAX + ADDR_MAX + 3], abuf[ADDR_MAX + 1], sbuf[SEG_MAX];
	struct camp_hdr h;
	struct rview r;
	struct engage_rec er;
	MDB_txn *t;

	if (!id_ok(id) || strlen(email) > ADDR_MAX) {
		*out = err_json("not_found", "no such campaign or recipient");
		return 404;
	}
	if ((t = store_rtxn()) == NULL) {
		*out = err_json("store_error", "the store is not open");
		return 503;
	}
	MDB_val k = { rcpt_key(id, email, rk), rk }, v;
	if (hdr_get(t, id, &h) != 0 || mdb_get(t, store_dbi(DB_CRCPT), &k, &v) != 0 ||
	    rec_decode(v.mv_data, v.mv_size, &r, abuf, sbuf) < 0) {
		store_rdone(t);
		*out = err_json("not_found", "no such recipient in this campaign");
		return 404;
	}
	engage_get_txn(t, email, &er);
	store_rdone(t);

	struct camp_decision d;
	memset(&d, 0, sizeof(d));
	d.send_at = r.c.send_at;
	d.reason = (enum sto_reason)r.c.reason;
	d.events = r.c.events;
	d.effective_events = r.c.events_eff;
	d.weight = r.c.weight;
	d.segment_prior = r.c.prior_segment;
	snprintf(d.segment, sizeof(d.segment), "%s", r.segment);
	d.window_start = MAX(h.start_at, h.created);
	d.window_end = MAX(h.start_at + h.max_delay, d.window_start);
	d.choice.ntop = r.c.ntop;
	for (int i = 0; i < r.c.ntop && i < TOP_STORED; i++) {
		d.choice.top[i].hour_ms = (int64_t)r.c.top_hour[i] * STO_HOUR_MS;
		d.choice.top[i].score = r.c.top_score[i];
	}
	json_t *o = decision_json(r.addr, &d, true);
	json_object_set_new(o, "campaign", json_string(id));
	json_object_set_new(o, "state", json_string(crcpt_state_name((enum crcpt_state)r.c.state)));
	json_object_set_new(o, "now", json_pack("{s:I,s:I,s:I,s:o,s:o}",
	    "sends", (json_int_t)er.sends, "opens", (json_int_t)er.opens,
	    "clicks", (json_int_t)er.clicks,
	    "last_open", er.last_open ? jtime(er.last_open) : json_null(),
	    "last_click", er.last_click ? jtime(er.last_click) : json_null()));
	json_t *vars = r.c.vlen ? json_loadb(r.vars, r.c.vlen, 0, NULL) : json_object();
	json_object_set_new(o, "vars", vars ? vars : json_null());
	*out = o;
	return 200;
}

/* ---------------------------------------------------------------- the scheduler (worker 0) */

struct job {
	char rkey[CAMP_ID_MAX + ADDR_MAX + 3];
	size_t rklen;
	char id[CAMP_ID_MAX + 1];
	char addr[ADDR_MAX + 1];
	char segment[SEG_MAX];
	json_t *vars;
	int64_t send_at;
	struct job *next;              /* in flight */
};

static struct {
	struct worker *w;
	struct event *timer;
	struct job *flight;
	int nflight;
	struct camp_def *defs;         /* definitions, compiled once */
	int ndefs;
	int64_t backoff_until;         /* after an injection failed (spool full...) */
	/* where the next tick goes on when the last one ran out of PULL_SKIP */
	unsigned char resume[8 + CAMP_ID_MAX + ADDR_MAX + 3];
	size_t resume_len;             /* 0 = from the first entry */
} pl;

/* A campaign header as of this tick's read transaction (found = it exists). */
struct hdr_memo {
	char id[CAMP_ID_MAX + 1];
	bool found;
	struct camp_hdr h;
};

static const struct hdr_memo *
hdr_memo(MDB_txn *t, struct hdr_memo *memo, int *n, const char *id)
{
	for (int i = 0; i < *n; i++)
		if (strcmp(memo[i].id, id) == 0)
			return &memo[i];
	struct hdr_memo *m = &memo[*n < PULL_HDRS ? (*n)++ : PULL_HDRS - 1];
	snprintf(m->id, sizeof(m->id), "%s", id);
	m->found = hdr_get(t, id, &m->h) == 0;
	return m;
}

static bool
in_flight(const char *rk, size_t rklen)
{
	for (struct job *j = pl.flight; j != NULL; j = j->next)
		if (j->rklen == rklen && memcmp(j->rkey, rk, rklen) == 0)
			return true;
	return false;
}

static void
flight_remove(struct job *j)
{
	for (struct job **pp = &pl.flight; *pp != NULL; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			pl.nflight--;
			break;
		}
	json_decref(j->vars);
	free(j);
}

static struct camp_def *
def_cached(const char *id)
{
	struct camp_def *d, **pp;
	char err[256];

	for (d = pl.defs; d != NULL; d = d->next)
		if (strcmp(d->id, id) == 0)
			return d;
	MDB_txn *t = store_rtxn();
	json_t *j = t ? def_get(t, id) : NULL;
	store_rdone(t);
	if (j == NULL || (d = def_from_json(id, j, err, sizeof(err))) == NULL) {
		json_decref(j);
		return NULL;
	}
	json_decref(j);
	if (pl.ndefs >= 256) {
		/* drop the oldest (the tail) */
		for (pp = &pl.defs; (*pp)->next != NULL; pp = &(*pp)->next)
			;
		def_free(*pp);
		*pp = NULL;
		pl.ndefs--;
	}
	d->next = pl.defs;
	pl.defs = d;
	pl.ndefs++;
	return d;
}

/* What the seam decided for one recipient. */
struct camp_send {
	char reason[32];               /* a skip's reason (hygiene_skip_name) */
	char detail[160];
	bool trap_suspect;
	const struct variant *v;       /* NULL: the campaign's own content */
	int g, i;                      /* v's group and index */
	enum bandit_why why;
};

/*
 * The seam, part 1: may this recipient be sent now? CR_SCHEDULED = send;
 * otherwise the state it ends in (suppressed, skipped), with the event
 * written here, or CR_NSTATES when the store cannot answer (try later).
 * First the suppression list (for the campaign's sender domain and pool),
 * then list hygiene (hygiene.h): skips for marketing campaigns, flags for
 * all. A re-engagement send is counted here.
 */
static void skip_event(const struct job *j, enum crcpt_state st, const char *why,
    const char *detail);

static enum crcpt_state
camp_skip(const struct camp_def *d, const struct job *j, struct camp_send *cs)
{
	const struct config *c = conf;
	struct suppress_entry e;
	const char *at = strrchr(d->from, '@');
	struct engage_rec rec;
	struct hygiene_conf hc;
	struct hygiene_verdict hv;
	int rc = suppress_check(j->addr, at ? at + 1 : NULL, d->pool, &e);

	if (rc < 0) {
		/* the store cannot answer: do not send blind, try again later */
		return CR_NSTATES;
	}
	if (rc == 1) {
		suppress_event("skipped", NULL, NULL, d->from, j->addr, d->pool, j->id, &e);
		return CR_SUPPRESSED;
	}
	if (c == NULL)
		return CR_SCHEDULED;
	if (engage_get(j->addr, &rec) < 0)
		return CR_NSTATES;
	hygiene_conf_from(c, &hc);
	hygiene_sunset_apply(&d->sunset, &hc.sunset);
	hygiene_check(j->addr, &rec, d->transactional, &hc, now_ms(), true, &hv);
	cs->trap_suspect = hv.trap_suspect;
	if (hv.skip == HYG_SEND)
		return CR_SCHEDULED;
	skip_event(j, CR_SKIPPED, hygiene_skip_name(hv.skip), hv.detail);
	return CR_SKIPPED;
}

/* The seam, part 2: what this recipient gets: the campaign's templates, or a
 * variant of its segment's chosen now by Thompson sampling (the send is
 * counted for the variant). */
struct camp_content {
	const struct tpl *subject, *text, *html;
	int nhdr;
	char *const *hname;
	struct tpl *const *hval;
};

static void
camp_content(const struct camp_def *d, const struct job *j, struct camp_send *cs,
    struct camp_content *c)
{
	char seg[SEG_MAX] = "";
	const struct variant_group *g;

	c->subject = d->subject;
	c->text = d->text;
	c->html = d->html;
	c->nhdr = d->nhdr;
	c->hname = d->hname;
	c->hval = d->hval;
	if (d->vs.ngroups == 0)
		return;
	/* the recipient's segment: the campaign's, else its own (PUT /v1/segments) */
	if (j->segment[0] != '\0')
		snprintf(seg, sizeof(seg), "%s", j->segment);
	else if (engage_get_segment(j->addr, seg, sizeof(seg)) != 1)
		seg[0] = '\0';
	cs->v = variant_choose(&d->vs, d->id, seg, j->addr, &g, &cs->why);
	if (cs->v == NULL)
		return;
	cs->g = (int)(g - d->vs.groups);
	cs->i = (int)(cs->v - g->v);
	if (VTPL(d, cs->g, cs->i, 0) != NULL)
		c->subject = VTPL(d, cs->g, cs->i, 0);
	if (VTPL(d, cs->g, cs->i, 1) != NULL)
		c->text = VTPL(d, cs->g, cs->i, 1);
	if (VTPL(d, cs->g, cs->i, 2) != NULL)
		c->html = VTPL(d, cs->g, cs->i, 2);
}

/* The message in wire form for one recipient. */
static struct evbuffer *
render(const struct camp_def *d, const struct job *j, struct camp_send *cs, bool *utf8)
{
	struct camp_content c;
	struct sbuf subj = { 0 }, text = { 0 }, html = { 0 }, *hv;
	struct mime_header *h;
	struct evbuffer *msg = evbuffer_new(), *wire = evbuffer_new();
	const char *to[1] = { j->addr };

	camp_content(d, j, cs, &c);
	hv = xcalloc((size_t)c.nhdr + 1, sizeof(*hv));
	h = xcalloc((size_t)c.nhdr + 1, sizeof(*h));
	if (c.subject)
		tpl_render(c.subject, j->vars, j->addr, false, &subj);
	if (c.text)
		tpl_render(c.text, j->vars, j->addr, false, &text);
	if (c.html)
		tpl_render(c.html, j->vars, j->addr, true, &html);
	for (int i = 0; i < c.nhdr; i++) {
		tpl_render(c.hval[i], j->vars, j->addr, false, &hv[i]);
		/* a variable must not smuggle a line break into a header */
		for (char *p = hv[i].p; *p; p++)
			if (*p == '\r' || *p == '\n')
				*p = ' ';
		h[i].name = c.hname[i];
		h[i].value = hv[i].p;
	}
	if (subj.p)
		for (char *p = subj.p; *p; p++)
			if (*p == '\r' || *p == '\n')
				*p = ' ';
	mime_build(msg, d->from, to, 1, c.subject ? subj.p : NULL, h, (size_t)c.nhdr,
	    c.text ? text.p : NULL, c.html ? html.p : NULL, utf8);
	/* wire form: CRLF, dot-stuffed, ending in CRLF */
	size_t len = evbuffer_get_length(msg);
	const char *src = (const char *)evbuffer_pullup(msg, -1);
	char *dst = xmalloc(DOT_STUFF_MAX(len) + 2);
	int state = DOT_STATE_INIT;
	size_t wlen = dot_stuff(dst, src ? src : "", len, &state);
	if (wlen < 2 || dst[wlen - 2] != '\r' || dst[wlen - 1] != '\n') {
		dst[wlen++] = '\r';
		dst[wlen++] = '\n';
	}
	if (mime_has_8bit(dst, wlen))
		*utf8 = *utf8 || false;
	evbuffer_add(wire, dst, wlen);
	free(dst);
	for (int i = 0; i < c.nhdr; i++)
		free(hv[i].p);
	free(hv);
	free(h);
	free(subj.p);
	free(text.p);
	free(html.p);
	evbuffer_free(msg);
	return wire;
}

struct trans_arg {
	char id[CAMP_ID_MAX + 1];
	char addr[ADDR_MAX + 1];
	int from;
	enum crcpt_state to;
	struct job *job;               /* in flight until committed (scheduler only) */
};

static int
w_transition(MDB_txn *txn, void *arg)
{
	struct trans_arg *a = arg;

	return rcpt_transition(txn, a->id, a->addr, a->from, a->to);
}

static void pull_arm(int64_t delay_ms);

static void
transition_done(void *arg, bool ok)
{
	struct trans_arg *a = arg;

	if (!ok)
		log_warnx("event=campaign-store-failed campaign=%s rcpt=%s state=%s", a->id, a->addr,
		    crcpt_state_name(a->to));
	if (a->job != NULL) {
		flight_remove(a->job);
		pull_arm(0);
	}
	free(a);
}

static void
transition(const char *id, const char *addr, int from, enum crcpt_state to, struct job *j)
{
	struct trans_arg *a = xcalloc(1, sizeof(*a));

	snprintf(a->id, sizeof(a->id), "%s", id);
	snprintf(a->addr, sizeof(a->addr), "%s", addr);
	a->from = from;
	a->to = to;
	a->job = j;
	store_write(w_transition, transition_done, a);
}

static void
skip_event(const struct job *j, enum crcpt_state st, const char *why, const char *detail)
{
	struct jbuf jb;

	jb_init(&jb);
	jb_str(&jb, "type", st == CR_SUPPRESSED ? "suppressed" : "skipped");
	jb_str(&jb, "recipient", j->addr);
	jb_str(&jb, "campaign", j->id);
	jb_str(&jb, "reason", why);
	if (detail != NULL && *detail != '\0')
		jb_str(&jb, "detail", detail);
	jb_time(&jb, "scheduled_at", j->send_at);
	acct_emit(&jb);
}

static void
injected(struct inject *in, int code, const char *reply)
{
	struct job *j = in->arg;

	if (code >= 200 && code < 300 && in->nsupp > 0) {
		/* suppressed between our check and the injection's: dropped there */
		transition(j->id, j->addr, CR_SCHEDULED, CR_SUPPRESSED, j);
	} else if (code >= 200 && code < 300) {
		transition(j->id, j->addr, CR_SCHEDULED, CR_QUEUED, j);
	} else if (code >= 500) {
		log_warnx("event=campaign-inject-refused campaign=%s rcpt=%s reply=\"%s\"", j->id, j->addr,
		    reply ? reply : "");
		skip_event(j, CR_SKIPPED, reply ? reply : "refused", NULL);
		transition(j->id, j->addr, CR_SCHEDULED, CR_SKIPPED, j);
	} else {
		/* spool full or similar: it stays scheduled; try again in a while */
		log_warnx("event=campaign-inject-deferred campaign=%s rcpt=%s reply=\"%s\"", j->id, j->addr,
		    reply ? reply : "");
		pl.backoff_until = now_ms() + 5000;
		flight_remove(j);
	}
	inject_free(in);
}

static void
send_job(struct job *j)
{
	struct camp_def *d = def_cached(j->id);
	struct camp_send cs;
	bool utf8 = false;

	if (d == NULL) {
		log_warnx("event=campaign-definition-missing campaign=%s", j->id);
		transition(j->id, j->addr, CR_SCHEDULED, CR_SKIPPED, j);
		return;
	}
	memset(&cs, 0, sizeof(cs));
	enum crcpt_state st = camp_skip(d, j, &cs);
	if (st == CR_NSTATES) {
		pl.backoff_until = now_ms() + 5000;
		flight_remove(j);
		return;
	}
	if (st != CR_SCHEDULED) {
		transition(j->id, j->addr, CR_SCHEDULED, st, j);
		return;
	}
	struct inject *in = inject_new();
	in->data = render(d, j, &cs, &utf8);
	in->env.sender = xstrdup(d->from);
	in->env.nrcpt = 1;
	in->env.rcpts = xcalloc(1, sizeof(*in->env.rcpts));
	in->env.rcpts[0].addr = xstrdup(j->addr);
	in->env.flags = (utf8 ? MF_SMTPUTF8 | MF_8BITMIME : 0) |
	    (mime_has_8bit((const char *)evbuffer_pullup(in->data, -1), evbuffer_get_length(in->data)) ?
	    MF_8BITMIME : 0);
	in->env.campaign = xstrdup(j->id);
	in->env.pool = d->pool ? xstrdup(d->pool) : NULL;
	json_t *pr = json_object_get(d->json, "priority");
	in->env.priority = json_is_integer(pr) ? (int)json_integer_value(pr) : 0;
	char ts[40];
	fmt_time3339(ts, sizeof(ts), j->send_at);
	in->env.meta = xcalloc(4, sizeof(*in->env.meta));
	in->env.meta[0].key = xstrdup("scheduled_at");
	in->env.meta[0].value = xstrdup(ts);
	in->env.nmeta = 1;
	/* carried into the message's delivery events (queue.c) */
	if (cs.v != NULL) {
		in->env.meta[in->env.nmeta].key = xstrdup("segment");
		in->env.meta[in->env.nmeta++].value = xstrdup(d->vs.groups[cs.g].segment);
		in->env.meta[in->env.nmeta].key = xstrdup("variant");
		in->env.meta[in->env.nmeta++].value = xstrdup(cs.v->id);
	}
	if (cs.trap_suspect) {
		in->env.meta[in->env.nmeta].key = xstrdup("trap_suspect");
		in->env.meta[in->env.nmeta++].value = xstrdup("yes");
		log_info("event=trap-suspect campaign=%s rcpt=%s", j->id, j->addr);
	}
	in->done = injected;
	in->arg = j;
	inject_submit(in);
}

/*
 * Take the due entries (up to the in-flight limit) and send them.
 * Entries that must wait (their campaign is loading that batch) or never
 * go (cancelled, gone) do not count against PULL_SCAN: a big load in
 * progress must not hold back the campaigns behind it. Passing over them
 * has its own budget; when that runs out, the next tick goes on from
 * there instead of the first entry, so every due entry is reached.
 */
static void
pull(evutil_socket_t fd, short what, void *arg)
{
	struct job *batch = NULL;
	struct hdr_memo memo[PULL_HDRS];
	int64_t now = now_ms(), next = now + 1000;
	int scanned = 0, skipped = 0, taken = 0, nmemo = 0;
	bool more = false;

	(void)fd;
	(void)what;
	(void)arg;
	if (atomic_load(&queue_stopping))
		return;
	if (now < pl.backoff_until) {
		pull_arm(pl.backoff_until - now);
		return;
	}
	MDB_txn *t = store_rtxn();
	MDB_cursor *cur;
	if (t == NULL || mdb_cursor_open(t, store_dbi(DB_CSCHED), &cur) != 0) {
		store_rdone(t);
		pull_arm(1000);
		return;
	}
	MDB_val k, v;
	int rc;
	if (pl.resume_len > 0) {
		k.mv_size = pl.resume_len;
		k.mv_data = pl.resume;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		pl.resume_len = 0;
	} else
		rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size < 10)
			continue;
		int64_t at = sched_time(k.mv_data);
		if (at > now) {
			next = MIN(next, at);
			break;
		}
		if (pl.nflight + taken >= PULL_INFLIGHT) {
			more = true;
			break;
		}
		const char *rk = (const char *)k.mv_data + 8;
		size_t rklen = k.mv_size - 8;
		const char *nul = memchr(rk, '\0', rklen);
		char id[CAMP_ID_MAX + 1];
		uint32_t b = 0;
		const struct hdr_memo *hm = NULL;
		if (nul != NULL && nul - rk <= CAMP_ID_MAX) {
			memcpy(id, rk, (size_t)(nul - rk));
			id[nul - rk] = '\0';
			memcpy(&b, v.mv_data, MIN(v.mv_size, sizeof(b)));
			hm = hdr_memo(t, memo, &nmemo, id);
		}
		if (hm == NULL || !hm->found || hm->h.state != CS_ACTIVE ||
		    (hm->h.loading_batch != 0 && hm->h.loading_batch == b)) {
			/* loading (waits), cancelled or gone (the cancel cleans up) */
			if (++skipped >= PULL_SKIP && k.mv_size <= sizeof(pl.resume)) {
				memcpy(pl.resume, k.mv_data, k.mv_size);
				pl.resume_len = k.mv_size;
				more = true;
				break;
			}
			continue;
		}
		if (++scanned > PULL_SCAN) {
			more = true;
			break;
		}
		if (in_flight(rk, rklen))
			continue;
		MDB_val rkv = { rklen, (void *)rk }, rv;
		char abuf[ADDR_MAX + 1], sbuf[SEG_MAX];
		struct rview r;
		if (mdb_get(t, store_dbi(DB_CRCPT), &rkv, &rv) != 0 ||
		    rec_decode(rv.mv_data, rv.mv_size, &r, abuf, sbuf) < 0 || r.c.state != CR_SCHEDULED) {
			store_del(DB_CSCHED, k.mv_data, k.mv_size);   /* stale */
			continue;
		}
		struct job *j = xcalloc(1, sizeof(*j));
		memcpy(j->rkey, rk, rklen);
		j->rklen = rklen;
		snprintf(j->id, sizeof(j->id), "%s", id);
		snprintf(j->addr, sizeof(j->addr), "%s", r.addr);
		snprintf(j->segment, sizeof(j->segment), "%s", r.segment);
		j->vars = r.c.vlen ? json_loadb(r.vars, r.c.vlen, 0, NULL) : NULL;
		j->send_at = r.c.send_at;
		j->next = batch;
		batch = j;
		taken++;
	}
	mdb_cursor_close(cur);
	store_rdone(t);
	while (batch != NULL) {
		struct job *j = batch;
		batch = j->next;
		j->next = pl.flight;
		pl.flight = j;
		pl.nflight++;
		send_job(j);
	}
	if (more && pl.nflight < PULL_INFLIGHT)
		pull_arm(10);
	else
		pull_arm(MAX(next - now_ms(), 1));
}

static void
pull_arm(int64_t delay_ms)
{
	struct timeval tv;

	if (pl.timer == NULL)
		return;
	if (delay_ms > 1000)
		delay_ms = 1000;
	if (delay_ms < 0)
		delay_ms = 0;
	/* never push a nearer wake-up further away */
	if (evtimer_pending(pl.timer, &tv)) {
		struct timeval now, want;
		event_base_gettimeofday_cached(pl.w->base, &now);
		want.tv_sec = now.tv_sec + delay_ms / 1000;
		want.tv_usec = now.tv_usec + (delay_ms % 1000) * 1000;
		if (want.tv_usec >= 1000000) {
			want.tv_sec++;
			want.tv_usec -= 1000000;
		}
		if (timercmp(&tv, &want, <=))
			return;
	}
	tv.tv_sec = delay_ms / 1000;
	tv.tv_usec = (delay_ms % 1000) * 1000;
	evtimer_add(pl.timer, &tv);
}

static void
start_on_worker(void *arg)
{
	(void)arg;
	pl.timer = evtimer_new(pl.w->base, pull, NULL);
	pull_arm(0);
}

static void
kick_on_worker(void *arg)
{
	(void)arg;
	pull_arm(0);
}

static void
campaign_kick(void)
{
	if (pl.w != NULL)
		worker_post(pl.w, kick_on_worker, NULL);
}

/*
 * A load the process did not live to commit or roll back (killed
 * mid-body) left its campaign loading: undo it as a failed request is
 * undone, the whole campaign for its first batch, that batch's recipients
 * for a later one. Startup only, before the control socket and the first
 * pull.
 */
static void
recover_loads(void)
{
	struct commit_arg *todo = NULL;
	size_t n = 0;
	MDB_txn *t = store_rtxn();
	MDB_cursor *cur;
	MDB_val k, v;

	if (t == NULL)
		return;
	if (mdb_cursor_open(t, store_dbi(DB_CAMPAIGN), &cur) != 0) {
		store_rdone(t);
		return;
	}
	for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct camp_hdr h;
		/* headers only: ID (no NUL) -> struct camp_hdr; ID \0 "d" is the definition */
		if (k.mv_size == 0 || k.mv_size > CAMP_ID_MAX || memchr(k.mv_data, '\0', k.mv_size) ||
		    v.mv_size != sizeof(h))
			continue;
		memcpy(&h, v.mv_data, sizeof(h));
		if (h.loading_batch == 0)
			continue;
		todo = xrealloc(todo, sizeof(*todo) * (n + 1));
		todo[n].id = xstrndup(k.mv_data, k.mv_size);
		todo[n].batch = h.loading_batch;
		todo[n].removed = 0;
		n++;
	}
	mdb_cursor_close(cur);
	store_rdone(t);
	for (size_t i = 0; i < n; i++) {
		if (store_write_wait(w_rollback, &todo[i]))
			log_warnx("event=campaign-rolled-back campaign=%s batch=%u removed=%s recipients=%ld "
			    "reason=\"load interrupted by a restart\"", todo[i].id, todo[i].batch,
			    todo[i].batch == 1 ? "campaign" : "batch", todo[i].removed);
		else
			log_warnx("event=campaign-rollback-failed campaign=%s batch=%u "
			    "reason=\"load interrupted by a restart\"", todo[i].id, todo[i].batch);
		free((char *)todo[i].id);
	}
	free(todo);
}

void
campaign_start(void)
{
	if (!store_is_open())
		return;
	recover_loads();
	if (nworkers < 1)
		return;
	/* the spool's campaign messages are marked queued before the first pull */
	store_flush();
	pl.w = workers[0];
	worker_post(pl.w, start_on_worker, NULL);
}

/* ---------------------------------------------------------------- hooks */


void
campaign_note_outcome(const struct spool_msg *m, int idx, int rs)
{
	enum crcpt_state to;

	if (m->campaign == NULL || spool_meta(m, "scheduled_at") == NULL || !store_is_open() ||
	    idx < 0 || idx >= m->nrcpt)
		return;
	switch (rs) {
	case RS_DELIVERED: to = CR_DELIVERED; break;
	case RS_BOUNCED: case RS_EXPIRED: to = CR_BOUNCED; break;
	case RS_DELETED: to = CR_CANCELLED; break;
	default: return;
	}
	struct trans_arg *a = xcalloc(1, sizeof(*a));
	snprintf(a->id, sizeof(a->id), "%s", m->campaign);
	snprintf(a->addr, sizeof(a->addr), "%s", m->rcpts[idx].addr);
	/* from scheduled too: a recipient whose routing fails at once can
	 * bounce before injected() has queued its scheduled -> queued move
	 * (that move then finds it final and does nothing) */
	a->from = -1;
	a->to = to;
	store_write(w_transition, transition_done, a);
}

void
campaign_note_spooled(const struct spool_msg *m)
{
	if (m->campaign == NULL || spool_meta(m, "scheduled_at") == NULL || !store_is_open())
		return;
	for (int i = 0; i < m->nrcpt; i++) {
		struct trans_arg *a = xcalloc(1, sizeof(*a));
		snprintf(a->id, sizeof(a->id), "%s", m->campaign);
		snprintf(a->addr, sizeof(a->addr), "%s", m->rcpts[i].addr);
		a->from = CR_SCHEDULED;
		a->to = CR_QUEUED;
		store_write(w_transition, transition_done, a);
	}
}

void
campaign_worker_fini(struct worker *w)
{
	if (w != pl.w || pl.w == NULL)
		return;
	if (pl.timer != NULL)
		event_free(pl.timer);
	pl.timer = NULL;
	while (pl.flight != NULL)
		flight_remove(pl.flight);
	while (pl.defs != NULL) {
		struct camp_def *d = pl.defs;
		pl.defs = d->next;
		def_free(d);
	}
	pl.ndefs = 0;
	pl.w = NULL;
}
