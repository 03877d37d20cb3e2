/*
 * sto: the arithmetic of send-time optimisation, free of I/O so that it can
 * be tested on its own.
 *
 * A histogram is 168 hour-of-week slots (UTC, slot 0 = Monday 00:00-01:00)
 * of exponentially decayed event weight. A recipient's score for a slot is
 * its own smoothed, normalised histogram shrunk toward a prior (its
 * segment's, else the global one) with a weight that grows with the
 * recipient's (decayed) event count; the send slot is the best-scoring
 * hour inside the campaign's window, and the send time is spread inside
 * that hour by a per-recipient hash so that a popular hour does not burst.
 */
#ifndef SLUICE_STO_H
#define SLUICE_STO_H

#include <stdbool.h>
#include <stdint.h>

#define STO_SLOTS 168
#define STO_HOUR_MS 3600000LL
#define STO_WEEK_MS (STO_SLOTS * STO_HOUR_MS)
#define STO_TOP 5               /* candidate hours kept for explanations */
#define STO_MIN_EVENTS 10.0     /* below this, the prior alone decides */
#define STO_SHRINK_K 10.0       /* events past STO_MIN_EVENTS for a 50/50 mix */
#define STO_SIGMA_H 1.0         /* kernel width in hours */
#define STO_MAX_WINDOW_MS (7 * 24 * STO_HOUR_MS)

enum sto_reason {
	STO_RECIPIENT_HISTORY,  /* the recipient's own data weighs most */
	STO_SEGMENT_PRIOR,      /* mostly the segment's histogram */
	STO_GLOBAL_PRIOR,       /* mostly the global histogram (no segment data) */
	STO_WINDOW_EDGE,        /* the best hour lies outside; the window's edge is nearest */
	STO_NOW,                /* no window (max_delay 0 or sto off): start_at */
};
const char *sto_reason_name(enum sto_reason r);

/* Hour-of-week slot of a time (ms since the epoch, UTC). */
int sto_slot(int64_t ms);
/* 2^(-dt / half_life); 1 for dt <= 0. */
double sto_decay_factor(int64_t dt_ms, int64_t half_life_ms);
/* Bring a histogram forward to `to_ms` (no-op when to_ms <= *hist_time). */
void sto_decay_to(float *hist, int64_t *hist_time, int64_t to_ms, int64_t half_life_ms);
/* Add `weight` at the slot of ev_ms, decayed as of the histogram's time
 * (an event in the past counts less; a newer one moves the histogram on). */
void sto_add(float *hist, int64_t *hist_time, int64_t ev_ms, double weight,
    int64_t half_life_ms);
/* Sum of the slots. */
double sto_mass(const float *hist);
/* Circular Gaussian smoothing over the week (wraps Sunday 23:00 to Monday
 * 00:00); the total is preserved. */
void sto_smooth(const float *in, double *out, double sigma_h);
/* The recipient's weight (0..1) for a decayed event count; the prior gets
 * 1 minus it. 0 below STO_MIN_EVENTS. */
double sto_shrink_weight(double events);
/* Scores per slot: lambda * p(recipient) + (1 - lambda) * p(prior), each a
 * smoothed distribution (uniform when empty). rcpt or prior may be NULL. */
void sto_scores(const float *rcpt, const float *prior, double lambda, double score[STO_SLOTS]);
/* The smoothed, normalised distribution of h (uniform, false, when empty). */
bool sto_distribution(const float *h, double *out);
/* sto_scores with the prior's distribution computed once (per segment). */
void sto_scores_dist(const float *rcpt, const double *prior_dist, double lambda,
    double score[STO_SLOTS]);

struct sto_cand {
	int64_t hour_ms;        /* start of the hour (absolute) */
	int slot;
	double score;
};
struct sto_choice {
	int64_t send_at;        /* inside [start, end] */
	int64_t hour_ms;        /* the chosen hour's start */
	double score;
	bool edge;              /* the week's best slot is outside the window and the
	                           choice sits at one end of it */
	int ntop;
	struct sto_cand top[STO_TOP];   /* best hours of the window, best first */
};
/*
 * Choose inside [start_ms, end_ms] (end >= start; at most a week is looked
 * at). Hours are clipped to the window; ties go to the earliest hour. The
 * send time is start of the clipped hour + spread % its length.
 */
void sto_choose(const double score[STO_SLOTS], int64_t start_ms, int64_t end_ms,
    uint64_t spread, struct sto_choice *out);

#endif
