/*
 * recipient: the recipient view of the control API (recipient.h).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "conf.h"
#include "engage.h"
#include "hygiene.h"
#include "recipient.h"
#include "score.h"
#include "segment.h"
#include "smtp_parse.h"
#include "store.h"
#include "suppress.h"
#include "util.h"

static json_t *
time_or_null(int64_t ms)
{
	char buf[64];

	if (ms <= 0)
		return json_null();
	fmt_time3339(buf, sizeof(buf), ms);
	return json_string(buf);
}

static bool
address_ok(const char *address)
{
	bool utf8 = false;

	return strlen(address) < 320 && strchr(address, '@') != NULL &&
	    smtp_valid_mailbox(address, true, &utf8);
}

int
recipient_info(const char *address, json_t **out)
{
	const struct config *c = conf;
	struct engage_rec rec;
	struct score_detail sd;
	struct hygiene_conf hc;
	struct hygiene_verdict hv;
	char segment[128];
	int64_t now = now_ms();
	int known, hasseg;
	json_t *o;

	if (!address_ok(address)) {
		*out = segment_json_error("invalid_address", "invalid address \"%.200s\"", address);
		return 400;
	}
	if (!store_is_open() || c == NULL) {
		*out = segment_json_error("unavailable", "the store is not open");
		return 503;
	}
	if ((known = engage_get(address, &rec)) < 0 ||
	    (hasseg = engage_get_segment(address, segment, sizeof(segment))) < 0) {
		*out = segment_json_error("store_error", "cannot read the store (see the log)");
		return 500;
	}
	score_compute(&rec, now, &sd);
	hygiene_conf_from(c, &hc);
	hygiene_check(address, &rec, false, &hc, now, false, &hv);

	o = json_object();
	json_object_set_new(o, "recipient", json_string(address));
	json_object_set_new(o, "known", json_boolean(known == 1));
	json_object_set_new(o, "segment", hasseg == 1 ? json_string(segment) : json_null());
	json_object_set_new(o, "score", json_integer(sd.score));
	json_object_set_new(o, "score_parts", json_pack("{s:f,s:f,s:f,s:f,s:f,s:f}",
	    "base", sd.base, "recency", sd.recency, "frequency", sd.frequency, "idle", sd.idle,
	    "bounces", sd.bounces, "complaints", sd.complaints));
	json_object_set_new(o, "inputs", json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,"
	    "s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:f,s:f}",
	    "sends", (json_int_t)rec.sends, "opens", (json_int_t)rec.opens,
	    "clicks", (json_int_t)rec.clicks, "bounces", (json_int_t)rec.bounces,
	    "soft_bounces", (json_int_t)rec.soft_bounces, "complaints", (json_int_t)rec.complaints,
	    "unsubscribes", (json_int_t)rec.unsubscribes, "conversions", (json_int_t)rec.conversions,
	    "first_seen", time_or_null(rec.first_seen), "last_send", time_or_null(rec.last_send),
	    "last_open", time_or_null(rec.last_open), "last_click", time_or_null(rec.last_click),
	    "last_bounce", time_or_null(rec.last_bounce),
	    "last_complaint", time_or_null(rec.last_complaint),
	    "days_since_engagement", sd.days_since_engagement < 0 ? json_null() :
	        json_real(sd.days_since_engagement),
	    "days_since_bounce", sd.days_since_bounce < 0 ? json_null() :
	        json_real(sd.days_since_bounce),
	    "engagements", sd.engagements, "idle_sends", sd.idle_sends));
	json_object_set_new(o, "hygiene", json_pack("{s:s,s:o,s:s,s:o,s:I,s:b,s:o,s:b,s:I,s:o}",
	    "marketing", hygiene_skip_name(hv.skip),
	    "detail", hv.detail ? json_string(hv.detail) : json_null(),
	    "sunset", sunset_verdict_name(hv.sunset),
	    "sunset_since", hv.sunset != SUNSET_ACTIVE ? time_or_null(hv.sunset_since) : json_null(),
	    "reengage_sent", (json_int_t)(hv.sunset == SUNSET_REENGAGE ? hv.reengage_sent - 1 :
	        hv.reengage_sent),
	    "bounce_risk", hv.skip == HYG_BOUNCE_RISK,
	    "role", hv.role ? json_string(hv.role) : json_null(),
	    "trap_suspect", hv.trap_suspect,
	    "domain_trap_hits", (json_int_t)hv.dom.trap_hits,
	    "domain_no_mx", time_or_null(hv.dom.no_mx)));
	/* the global suppression entry, if any (scoped ones: GET /v1/suppression) */
	struct suppress_entry se;
	int sup = suppress_check(address, NULL, NULL, &se);
	if (sup == 1)
		json_object_set_new(o, "suppression", json_pack("{s:b,s:s,s:s,s:o,s:s}",
		    "suppressed", 1, "reason", suppress_reason_name(se.reason), "scope",
		    se.scope[0] ? se.scope : "global", "time", time_or_null(se.time),
		    "source", se.source));
	else
		json_object_set_new(o, "suppression", sup == 0 ?
		    json_pack("{s:b}", "suppressed", 0) : json_null());
	*out = o;
	return 200;
}

int
recipient_spam_trap(const char *address, json_t **out)
{
	struct domain_health dh;
	const char *at = strrchr(address, '@');

	if (!address_ok(address) || at == NULL) {
		*out = segment_json_error("invalid_address", "invalid address \"%.200s\"", address);
		return 400;
	}
	if (!store_is_open()) {
		*out = segment_json_error("unavailable", "the store is not open");
		return 503;
	}
	/* the trap itself is never mailed again; its domain gets trap history */
	suppress_add(address, SUP_SPAM_TRAP, "", "api spam-trap");
	hygiene_note_trap(address, now_ms());
	store_flush();
	if (hygiene_domain_get(at + 1, &dh) < 0) {
		*out = segment_json_error("store_error", "cannot read the store (see the log)");
		return 500;
	}
	*out = json_pack("{s:s,s:s,s:I,s:o,s:b}", "recipient", address, "domain", at + 1,
	    "trap_hits", (json_int_t)dh.trap_hits, "last_trap", time_or_null(dh.last_trap),
	    "suppressed", 1);
	return 200;
}
