/*
 * score: what a recipient's engagement record (engage.h) says about it —
 * the engagement score, the sunset rule, bounce risk, role addresses and
 * spam-trap suspicion. Pure functions of the record and the time: the
 * store-backed decisions built on them are in hygiene.h.
 *
 * The score (0-100) starts a recipient we know nothing about at 40, adds
 * up to 45 for a recent open or click (halving every 30 days since the
 * last one) and up to 15 for how often it engages (opens + 2 x clicks,
 * fading with a 90-day half-life since the last engagement), and takes
 * away up to 30 for sends that found no engagement, up to 20 for recent
 * bounces (halving every 30 days) and everything for a complaint. Every
 * part is returned with the inputs it came from, so the API can explain it.
 */
#ifndef SLUICE_SCORE_H
#define SLUICE_SCORE_H

#include <stdbool.h>
#include <stdint.h>

#include "engage.h"

#define SCORE_DAY_MS (86400LL * 1000)

struct score_detail {
	int score;                     /* 0..100, rounded */
	/* inputs, derived from the record */
	double days_since_engagement;  /* since the last open or click; -1 = never */
	double days_since_bounce;      /* -1 = never */
	double engagements;            /* opens + 2 x clicks */
	double idle_sends;             /* sends not matched by an open or click */
	/* the parts (points) that add up to the score before clamping */
	double base, recency, frequency, idle, bounces, complaints;
};

/* Score rec at now (ms). */
int score_compute(const struct engage_rec *rec, int64_t now_ms, struct score_detail *d);

/* The last open or click (ms), 0 = never. */
int64_t score_last_engagement(const struct engage_rec *rec);

/*
 * Sunset: a recipient with no open or click for `after_ms` (counted from
 * its first send when it never engaged), after at least `min_sends` sends,
 * is inactive. An inactive recipient still gets `reengage` marketing sends
 * (the re-engagement attempts), then it is skipped until it engages again.
 */
struct sunset_policy {
	bool enabled;
	int64_t after_ms;              /* default 120 days */
	uint32_t min_sends;            /* default 5 */
	uint32_t reengage;             /* default 3 */
};

/* Inactive under p at now? *since is when the inactivity started counting
 * (the last engagement, or the first send): it names the episode. */
bool sunset_inactive(const struct engage_rec *rec, int64_t now_ms,
    const struct sunset_policy *p, int64_t *since);

enum sunset_verdict { SUNSET_ACTIVE, SUNSET_REENGAGE, SUNSET_SKIP };
const char *sunset_verdict_name(enum sunset_verdict v);
/* The rule: reengage_sent is how many re-engagement sends this episode
 * (the one starting at *since) has had. */
enum sunset_verdict sunset_decide(const struct engage_rec *rec, int64_t now_ms,
    const struct sunset_policy *p, uint32_t reengage_sent);

/* Bounce risk: at least `soft_limit` soft bounces (0 = off) and none of
 * them followed by an open or click. */
bool score_bounce_risk(const struct engage_rec *rec, uint32_t soft_limit);

/* A role address (abuse@, postmaster@, noreply@ ...): a function, not a
 * person; the name of the role in *role. */
bool score_role_address(const char *address, const char **role);

/* Spam-trap suspicion: never opened or clicked, known for at least age_ms
 * with sends, on a domain with trap_hits > 0 known traps. */
bool score_trap_suspect(const struct engage_rec *rec, int64_t now_ms, int64_t age_ms,
    uint32_t trap_hits);

#endif
