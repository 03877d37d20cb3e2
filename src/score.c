/*
 * score: the engagement score and the list-health rules (score.h). Pure
 * functions: they read a record and the time, nothing else.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "score.h"

#define RECENCY_HALF_DAYS   30.0
#define FREQUENCY_HALF_DAYS 90.0
#define BOUNCE_HALF_DAYS    30.0

#define PTS_BASE       40.0
#define PTS_RECENCY    45.0
#define PTS_FREQUENCY  15.0
#define PTS_IDLE       30.0
#define PTS_BOUNCE     20.0
#define PTS_COMPLAINT 100.0

int64_t
score_last_engagement(const struct engage_rec *rec)
{
	return rec->last_open > rec->last_click ? rec->last_open : rec->last_click;
}

static double
days_since(int64_t now_ms, int64_t t)
{
	if (t <= 0)
		return -1.0;
	return t >= now_ms ? 0.0 : (double)(now_ms - t) / SCORE_DAY_MS;
}

int
score_compute(const struct engage_rec *rec, int64_t now_ms, struct score_detail *d)
{
	double total, engaged;

	memset(d, 0, sizeof(*d));
	d->days_since_engagement = days_since(now_ms, score_last_engagement(rec));
	d->days_since_bounce = days_since(now_ms, rec->last_bounce);
	d->engagements = (double)rec->opens + 2.0 * (double)rec->clicks;
	engaged = (double)rec->opens + (double)rec->clicks;
	d->idle_sends = rec->sends > engaged ? rec->sends - engaged : 0.0;

	d->base = PTS_BASE;
	if (d->days_since_engagement >= 0) {
		double age = d->days_since_engagement;

		d->recency = PTS_RECENCY * exp2(-age / RECENCY_HALF_DAYS);
		/* frequency saturates: 5 weighted engagements are most of it */
		d->frequency = PTS_FREQUENCY *
		    (1.0 - exp(-d->engagements * exp2(-age / FREQUENCY_HALF_DAYS) / 5.0));
	}
	d->idle = -PTS_IDLE * (1.0 - exp(-d->idle_sends / 8.0));
	if (rec->bounces > 0 && d->days_since_bounce >= 0) {
		double w = (double)rec->bounces * exp2(-d->days_since_bounce / BOUNCE_HALF_DAYS) / 2.0;
		d->bounces = -PTS_BOUNCE * (w > 1.0 ? 1.0 : w);
	}
	if (rec->complaints > 0)
		d->complaints = -PTS_COMPLAINT;
	total = d->base + d->recency + d->frequency + d->idle + d->bounces + d->complaints;
	if (total < 0)
		total = 0;
	if (total > 100)
		total = 100;
	d->score = (int)lround(total);
	return d->score;
}

bool
sunset_inactive(const struct engage_rec *rec, int64_t now_ms, const struct sunset_policy *p,
    int64_t *since)
{
	int64_t ref = score_last_engagement(rec);

	if (ref <= 0)
		ref = rec->first_seen;
	*since = ref;
	if (!p->enabled || rec->sends < p->min_sends)
		return false;
	/* a record without times has no age to judge */
	if (ref <= 0)
		return false;
	return now_ms - ref >= p->after_ms;
}

const char *
sunset_verdict_name(enum sunset_verdict v)
{
	switch (v) {
	case SUNSET_ACTIVE:   return "active";
	case SUNSET_REENGAGE: return "re-engagement";
	case SUNSET_SKIP:     return "sunset";
	}
	return "?";
}

enum sunset_verdict
sunset_decide(const struct engage_rec *rec, int64_t now_ms, const struct sunset_policy *p,
    uint32_t reengage_sent)
{
	int64_t since;

	if (!sunset_inactive(rec, now_ms, p, &since))
		return SUNSET_ACTIVE;
	return reengage_sent < p->reengage ? SUNSET_REENGAGE : SUNSET_SKIP;
}

bool
score_bounce_risk(const struct engage_rec *rec, uint32_t soft_limit)
{
	if (soft_limit == 0 || rec->soft_bounces < soft_limit)
		return false;
	/* an open or click after the last bounce says the mailbox works */
	return score_last_engagement(rec) < rec->last_bounce;
}

bool
score_role_address(const char *address, const char **role)
{
	/* RFC 2142 mailbox names and the usual no-reply and list addresses */
	static const char *const roles[] = {
		"abuse", "postmaster", "hostmaster", "webmaster", "noc", "security",
		"root", "mailer-daemon", "noreply", "no-reply", "donotreply", "do-not-reply",
		"list", "listserv", "majordomo", "admin", "administrator", "info", "support",
		"sales", "marketing", "usenet", "news", "uucp", "www", "ftp",
	};
	const char *at = strrchr(address, '@');
	size_t n = at ? (size_t)(at - address) : strlen(address);
	const char *plus = memchr(address, '+', n);

	/* postmaster+tag@ is still postmaster */
	if (plus != NULL)
		n = (size_t)(plus - address);
	for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
		if (strlen(roles[i]) == n && strncasecmp(address, roles[i], n) == 0) {
			if (role != NULL)
				*role = roles[i];
			return true;
		}
	return false;
}

bool
score_trap_suspect(const struct engage_rec *rec, int64_t now_ms, int64_t age_ms,
    uint32_t trap_hits)
{
	if (trap_hits == 0 || rec->opens > 0 || rec->clicks > 0 || rec->sends == 0)
		return false;
	return rec->first_seen > 0 && now_ms - rec->first_seen >= age_ms;
}
