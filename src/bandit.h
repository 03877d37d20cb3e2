/*
 * bandit: Thompson sampling over the content variants of a campaign
 * segment, and the counts behind it in the LMDB store (store.h).
 *
 * Each variant is an arm with a Beta(1 + rewards, 1 + sends - rewards)
 * posterior on its reward rate (opens or clicks per send, per campaign).
 * A choice draws one sample from every posterior and takes the largest, so
 * a variant is sent in proportion to the probability that it is the best;
 * later sends benefit from earlier results. Two optional rules sit around
 * the sampling: `explore_until` sends every variant that many times first
 * (the least sent first), and `winner_after` switches the segment to one
 * variant for good once its posterior probability of being the best
 * exceeds that level (checked by Monte Carlo at most once a second).
 *
 * Counts live in DB_BANDIT (campaign \0 segment \0 variant -> counts) and
 * which variant each recipient got in DB_CVARIANT (campaign \0 address ->
 * flags, segment, variant), so an open or click arriving later rewards the
 * variant that recipient got, once per recipient and kind. A process-wide
 * cache keeps the counts of the segments in use: a choice costs the draws
 * and a lock, no store read; sends are counted in memory at once (so
 * exploration does not wait for a commit) and queued to the store writer.
 */
#ifndef SLUICE_BANDIT_H
#define SLUICE_BANDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BANDIT_MAX_ARMS   20     /* variants per segment */
#define BANDIT_ID_MAX     64     /* bytes of a variant id, NUL included */
#define BANDIT_BEST_DRAWS 4000   /* Monte Carlo draws for P(best) */

/* xoshiro256** (Blackman and Vigna), seeded through splitmix64. */
struct bandit_rng {
	uint64_t s[4];
	double spare;                  /* second normal of the polar method */
	bool has_spare;
};
void bandit_seed(struct bandit_rng *r, uint64_t seed);
uint64_t bandit_next(struct bandit_rng *r);
double bandit_uniform(struct bandit_rng *r);           /* in (0, 1) */
double bandit_normal(struct bandit_rng *r);            /* N(0, 1) */
double bandit_gamma(struct bandit_rng *r, double shape);   /* Marsaglia-Tsang, shape > 0 */
double bandit_beta(struct bandit_rng *r, double a, double b);
/* This thread's generator, seeded from the OS on first use. */
struct bandit_rng *bandit_thread_rng(void);

enum bandit_reward { BANDIT_OPEN, BANDIT_CLICK };
const char *bandit_reward_name(enum bandit_reward r);
int bandit_reward_parse(const char *s, enum bandit_reward *out);

struct bandit_arm {
	uint64_t sends, opens, clicks;  /* opens/clicks: recipients, not events */
};

struct bandit_policy {
	enum bandit_reward reward;
	uint32_t explore_until;        /* sends per variant before sampling; 0 = none */
	double winner_after;           /* P(best) that makes a winner; 0 = never */
};

enum bandit_why {
	BANDIT_SINGLE,                 /* one variant: nothing to choose */
	BANDIT_EXPLORE,                /* a variant below explore_until */
	BANDIT_SAMPLE,                 /* Thompson sampling */
	BANDIT_WINNER,                 /* the declared winner */
};
const char *bandit_why_name(enum bandit_why w);

/* Posterior parameters and mean of one arm for a reward kind. */
void bandit_posterior(const struct bandit_arm *a, enum bandit_reward rw, double *alpha,
    double *beta);
double bandit_mean(const struct bandit_arm *a, enum bandit_reward rw);

/*
 * The decision (pure): the arm for one recipient out of n (1..BANDIT_MAX_ARMS),
 * given the counts, the policy and the declared winner (-1 = none).
 */
int bandit_choose(struct bandit_rng *r, const struct bandit_arm *arms, int n,
    const struct bandit_policy *p, int winner, enum bandit_why *why);

/* P(arm i is the best) for every arm, from `draws` joint posterior draws. */
void bandit_prob_best(struct bandit_rng *r, const struct bandit_arm *arms, int n,
    enum bandit_reward rw, int draws, double *out);

/* The arm that wins under p given pbest (every arm explored, best above
 * winner_after), or -1. */
int bandit_winner(const struct bandit_arm *arms, const double *pbest, int n,
    const struct bandit_policy *p);

/* ---- counts in the store, with the process-wide cache ---------------- */

/*
 * Choose a variant of campaign's segment for address and record the send
 * (in memory now; in the store through the writer, with address -> variant).
 * ids are the segment's variant ids in campaign order. Returns the index
 * chosen, or -1 when n is out of range. Any thread.
 */
int bandit_send(const char *campaign, const char *segment, const char *const *ids, int n,
    const struct bandit_policy *p, const char *address, enum bandit_why *why);

/*
 * An open or click by address in campaign: reward the variant it got, once
 * per recipient and kind (a click is also an open: images may be off).
 * Asynchronous; nothing happens when address got no variant of campaign.
 */
void bandit_reward(const char *campaign, const char *address, bool click);

/* Which variant address got in campaign: 1 (segment and variant copied,
 * *sent filled when not NULL), 0 none, -1 store error. */
struct bandit_sent {
	enum bandit_why why;           /* why it was chosen */
	bool opened, clicked;          /* rewarded so far */
};
int bandit_recipient_variant(const char *campaign, const char *address, char *segment,
    size_t segcap, char *variant, size_t varcap, struct bandit_sent *sent);

struct bandit_stat {
	struct bandit_arm arm;
	double mean;                   /* posterior mean of the reward rate */
	double pbest;                  /* posterior probability of being the best */
};
/*
 * The figures of one segment (cache when loaded, else the store):
 * out[i] for ids[i]; *winner the declared winner's index or -1 and
 * *winner_ms when it was declared. P(best) comes from a fixed seed so the
 * same counts always show the same figures. 0, or -1 on a store error.
 */
int bandit_stats(const char *campaign, const char *segment, const char *const *ids, int n,
    enum bandit_reward rw, struct bandit_stat *out, int *winner, int64_t *winner_ms);

/* The cache keeps at most max_sets sets (default 4096) beyond which sets
 * unused for idle_ms (default 10 min) are dropped (their counts are in the
 * store); <= 0 / < 0 keeps a value. *nsets (may be NULL): the sets now. */
void bandit_cache_limits(int max_sets, int64_t idle_ms, int *nsets);
/* Drop the cache, as at a restart (tests and the bench only: no choice may
 * run meanwhile). */
void bandit_cache_clear(void);
/* Drop a campaign's counts and recipient records (store and cache). */
void bandit_forget(const char *campaign);

#endif
