/*
 * hygiene: the send-time list-health decision (hygiene.h). The rules are
 * score.c's; this file adds the config, the records in the store and the
 * order in which the rules apply: role address, bounce risk, sunset (the
 * cheapest and the most certain first). A recipient skipped for one reason
 * does not use up a re-engagement send.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "conf.h"
#include "hygiene.h"
#include "log.h"
#include "store.h"
#include "util.h"

struct sunset_rec {
	int64_t since;                 /* the episode: last engagement or first send */
	uint32_t sent;                 /* re-engagement sends in it */
};

void
hygiene_conf_from(const struct config *c, struct hygiene_conf *hc)
{
	memset(hc, 0, sizeof(*hc));
	hc->sunset.enabled = c->sunset_after > 0;
	hc->sunset.after_ms = c->sunset_after;
	hc->sunset.min_sends = (uint32_t)c->sunset_min_sends;
	hc->sunset.reengage = (uint32_t)c->sunset_reengage;
	hc->bounce_risk_soft = (uint32_t)c->bounce_risk_soft;
	hc->bounce_risk_no_mx = c->bounce_risk_no_mx;
	hc->skip_role = c->skip_role_addresses;
	hc->trap_age = c->trap_suspect_age;
}

int
hygiene_sunset_parse(json_t *v, struct sunset_override *o, char *err, size_t errlen)
{
	const char *key;
	json_t *x;

	memset(o, 0, sizeof(*o));
	o->after_ms = o->min_sends = o->reengage = -1;
	if (v == NULL || json_is_null(v))
		return 0;
	o->set = true;
	if (json_is_false(v)) {
		o->off = true;
		return 0;
	}
	if (!json_is_object(v)) {
		snprintf(err, errlen, "\"sunset\" must be false or an object {\"after\": \"120d\", "
		    "\"min_sends\": 5, \"reengage\": 3}");
		return -1;
	}
	json_object_foreach(v, key, x) {
		if (strcmp(key, "after") == 0) {
			const char *perr = "must be a duration such as 120d";

			if (!json_is_string(x) || parse_duration(json_string_value(x), &o->after_ms,
			    &perr) < 0 || o->after_ms < 1000) {
				snprintf(err, errlen, "\"sunset\".after: %s (at least 1s)",
				    json_is_string(x) ? perr : "must be a duration such as 120d");
				return -1;
			}
		} else if (strcmp(key, "min_sends") == 0 || strcmp(key, "reengage") == 0) {
			if (!json_is_integer(x) || json_integer_value(x) < 0 ||
			    json_integer_value(x) > 1000000) {
				snprintf(err, errlen, "\"sunset\".%s must be an integer from 0 to 1000000", key);
				return -1;
			}
			*(key[0] == 'm' ? &o->min_sends : &o->reengage) = json_integer_value(x);
		} else {
			snprintf(err, errlen, "\"sunset\": unknown member \"%s\" (after, min_sends, "
			    "reengage)", key);
			return -1;
		}
	}
	return 0;
}

void
hygiene_sunset_apply(const struct sunset_override *o, struct sunset_policy *p)
{
	if (!o->set)
		return;
	if (o->off) {
		p->enabled = false;
		return;
	}
	if (o->after_ms >= 0) {
		p->after_ms = o->after_ms;
		p->enabled = true;
	}
	if (o->min_sends >= 0)
		p->min_sends = (uint32_t)o->min_sends;
	if (o->reengage >= 0)
		p->reengage = (uint32_t)o->reengage;
}

const char *
hygiene_skip_name(enum hygiene_skip s)
{
	switch (s) {
	case HYG_SEND:        return "send";
	case HYG_SUNSET:      return "sunset";
	case HYG_BOUNCE_RISK: return "bounce-risk";
	case HYG_ROLE:        return "role-address";
	}
	return "?";
}

/* The key of an address in DB_SUNSET: domain lower-cased. */
static size_t
addr_key(const char *address, char *out, size_t cap)
{
	const char *at = strrchr(address, '@');
	int n = snprintf(out, cap, "%s", address);

	if (n < 0 || (size_t)n >= cap)
		return 0;
	if (at != NULL)
		str_lower(out + (at - address));
	return (size_t)n;
}

static size_t
domain_key(const char *domain, char *out, size_t cap)
{
	int n = snprintf(out, cap, "%s", domain);

	if (n <= 0 || (size_t)n >= cap)
		return 0;
	str_lower(out);
	return (size_t)n;
}

int
hygiene_domain_get(const char *domain, struct domain_health *dh)
{
	char key[256];
	size_t klen = domain_key(domain, key, sizeof(key)), len = 0;
	int rc;

	memset(dh, 0, sizeof(*dh));
	if (klen == 0)
		return 0;
	rc = store_get(DB_DOMHEALTH, key, klen, dh, sizeof(*dh), &len);
	if (rc == 1 && len != sizeof(*dh))
		memset(dh, 0, sizeof(*dh));     /* not ours: ignore */
	return rc;
}

/* ---- writes: read-modify-write inside the writer's transaction ---- */

enum dom_change { DOM_TRAP, DOM_NO_MX };

struct dom_op {
	enum dom_change what;
	int64_t now;
	size_t klen;
	char key[256];
};

static int
dom_apply(MDB_txn *txn, void *arg)
{
	struct dom_op *op = arg;
	struct domain_health dh;
	MDB_val k = { op->klen, op->key }, v;

	memset(&dh, 0, sizeof(dh));
	if (mdb_get(txn, store_dbi(DB_DOMHEALTH), &k, &v) == 0 && v.mv_size == sizeof(dh))
		memcpy(&dh, v.mv_data, sizeof(dh));
	if (op->what == DOM_TRAP) {
		dh.trap_hits++;
		dh.last_trap = op->now;
	} else {
		dh.no_mx = op->now;
	}
	v.mv_size = sizeof(dh);
	v.mv_data = &dh;
	return mdb_put(txn, store_dbi(DB_DOMHEALTH), &k, &v, 0);
}

static void
op_free(void *arg, bool ok)
{
	(void)ok;
	free(arg);
}

static void
dom_change(const char *domain, enum dom_change what, int64_t now)
{
	struct dom_op *op = xcalloc(1, sizeof(*op));

	if ((op->klen = domain_key(domain, op->key, sizeof(op->key))) == 0) {
		free(op);
		return;
	}
	op->what = what;
	op->now = now;
	store_write(dom_apply, op_free, op);
}

void
hygiene_note_trap(const char *address, int64_t now_ms)
{
	const char *at = strrchr(address, '@');

	if (at != NULL && at[1] != '\0')
		dom_change(at + 1, DOM_TRAP, now_ms);
}

void
hygiene_note_no_mx(const char *domain, int64_t now_ms)
{
	dom_change(domain, DOM_NO_MX, now_ms);
}

struct sunset_op {
	int64_t since;
	size_t klen;
	char key[320];
};

static int
sunset_apply(MDB_txn *txn, void *arg)
{
	struct sunset_op *op = arg;
	struct sunset_rec sr = { 0, 0 };
	MDB_val k = { op->klen, op->key }, v;

	if (mdb_get(txn, store_dbi(DB_SUNSET), &k, &v) == 0 && v.mv_size == sizeof(sr))
		memcpy(&sr, v.mv_data, sizeof(sr));
	if (sr.since != op->since) {
		/* a new episode: the recipient engaged since the last one */
		sr.since = op->since;
		sr.sent = 0;
	}
	sr.sent++;
	v.mv_size = sizeof(sr);
	v.mv_data = &sr;
	return mdb_put(txn, store_dbi(DB_SUNSET), &k, &v, 0);
}

/* ---- the decision ---- */

void
hygiene_check(const char *address, const struct engage_rec *rec, bool transactional,
    const struct hygiene_conf *hc, int64_t now_ms, bool record, struct hygiene_verdict *v)
{
	const char *at = strrchr(address, '@');
	char key[320];
	size_t klen;
	struct sunset_rec sr = { 0, 0 };
	size_t len = 0;

	memset(v, 0, sizeof(*v));
	v->skip = HYG_SEND;
	v->sunset = SUNSET_ACTIVE;
	if (at != NULL && at[1] != '\0' && hygiene_domain_get(at + 1, &v->dom) < 0)
		memset(&v->dom, 0, sizeof(v->dom));
	v->trap_suspect = score_trap_suspect(rec, now_ms, hc->trap_age, v->dom.trap_hits);
	(void)score_role_address(address, &v->role);
	if (transactional)
		return;

	if (hc->skip_role && v->role != NULL) {
		v->skip = HYG_ROLE;
		snprintf(v->detail_buf, sizeof(v->detail_buf), "role address (%s@)", v->role);
		v->detail = v->detail_buf;
		return;
	}
	if (score_bounce_risk(rec, hc->bounce_risk_soft)) {
		v->skip = HYG_BOUNCE_RISK;
		snprintf(v->detail_buf, sizeof(v->detail_buf),
		    "%u soft bounces without an open or click since", rec->soft_bounces);
		v->detail = v->detail_buf;
		return;
	}
	if (hc->bounce_risk_no_mx > 0 && v->dom.no_mx > 0 &&
	    now_ms - v->dom.no_mx < hc->bounce_risk_no_mx) {
		v->skip = HYG_BOUNCE_RISK;
		snprintf(v->detail_buf, sizeof(v->detail_buf), "domain %s has no MX", at + 1);
		v->detail = v->detail_buf;
		return;
	}
	if (!sunset_inactive(rec, now_ms, &hc->sunset, &v->sunset_since))
		return;
	if ((klen = addr_key(address, key, sizeof(key))) == 0)
		return;
	if (store_get(DB_SUNSET, key, klen, &sr, sizeof(sr), &len) == 1 &&
	    (len != sizeof(sr) || sr.since != v->sunset_since))
		sr.sent = 0;            /* another episode (or not ours) */
	v->sunset = sunset_decide(rec, now_ms, &hc->sunset, sr.sent);
	v->reengage_sent = sr.sent;
	if (v->sunset == SUNSET_SKIP) {
		v->skip = HYG_SUNSET;
		snprintf(v->detail_buf, sizeof(v->detail_buf),
		    "no open or click for %lld days, %u re-engagement sends made",
		    (long long)((now_ms - v->sunset_since) / SCORE_DAY_MS), sr.sent);
		v->detail = v->detail_buf;
		return;
	}
	/* a re-engagement send */
	v->reengage_sent = sr.sent + 1;
	if (record) {
		struct sunset_op *op = xcalloc(1, sizeof(*op));

		op->since = v->sunset_since;
		op->klen = klen;
		memcpy(op->key, key, klen);
		store_write(sunset_apply, op_free, op);
	}
}
