/*
 * hygiene: list health at send time — which recipients of a marketing
 * campaign are skipped (sunset, bounce risk, role addresses) and which are
 * flagged (spam-trap suspects), from the rules in score.h, the config
 * directives and two small records in the store:
 *   DB_SUNSET    address -> the inactivity episode (since) and how many
 *                re-engagement sends it has had
 *   DB_DOMHEALTH domain -> spam-trap hits and when it was last found
 *                without MX (or with a null MX)
 * Transactional mail is never skipped by any of these.
 */
#ifndef SLUICE_HYGIENE_H
#define SLUICE_HYGIENE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "engage.h"
#include "score.h"

struct config;

struct hygiene_conf {
	struct sunset_policy sunset;
	uint32_t bounce_risk_soft;     /* 0 = off */
	int64_t bounce_risk_no_mx;     /* ms; 0 = off */
	bool skip_role;
	int64_t trap_age;              /* ms */
};
/* The defaults of the config's directives (a campaign may override the sunset). */
void hygiene_conf_from(const struct config *c, struct hygiene_conf *hc);

/*
 * A campaign's own sunset policy: "sunset": false turns it off,
 * "sunset": {"after": "90d", "min_sends": 5, "reengage": 3} replaces the
 * config's values it names (the others stay the config's, as reloaded).
 */
struct sunset_override {
	bool set, off;
	int64_t after_ms;              /* -1 = the config's */
	int64_t min_sends, reengage;   /* -1 = the config's */
};
/* Parse v (NULL or null = no override); -1 with err. */
int hygiene_sunset_parse(json_t *v, struct sunset_override *o, char *err, size_t errlen);
void hygiene_sunset_apply(const struct sunset_override *o, struct sunset_policy *p);

enum hygiene_skip { HYG_SEND, HYG_SUNSET, HYG_BOUNCE_RISK, HYG_ROLE };
/* "sunset", "bounce-risk", "role-address" (the `reason` of skipped events) */
const char *hygiene_skip_name(enum hygiene_skip s);

struct domain_health {
	uint32_t trap_hits;
	int64_t last_trap;             /* ms */
	int64_t no_mx;                 /* ms: last found without MX; 0 = never */
};

struct hygiene_verdict {
	enum hygiene_skip skip;
	const char *detail;            /* why, for the event: "no open or click for 130 days" */
	enum sunset_verdict sunset;
	int64_t sunset_since;          /* the inactivity episode's start */
	uint32_t reengage_sent;        /* re-engagement sends of this episode, this one included */
	bool trap_suspect;
	const char *role;              /* the role when a role address */
	struct domain_health dom;
	char detail_buf[128];
};

/*
 * The decision for one recipient of a campaign at send time (any thread):
 * rec is its engagement record. For transactional mail only the flags are
 * filled, skip is always HYG_SEND. A re-engagement send is recorded
 * (queued to the store) when `record` is true; the API peeks with false.
 */
void hygiene_check(const char *address, const struct engage_rec *rec, bool transactional,
    const struct hygiene_conf *hc, int64_t now_ms, bool record, struct hygiene_verdict *v);

/* A domain's record: 1 found, 0 none (zeroed), -1 store error. */
int hygiene_domain_get(const char *domain, struct domain_health *dh);
/* A known spam trap was hit at address: its domain gets trap history. */
void hygiene_note_trap(const char *address, int64_t now_ms);
/* The domain was found without MX and address, or with a null MX. */
void hygiene_note_no_mx(const char *domain, int64_t now_ms);

#endif
