/*
 * sto: decay, circular smoothing, shrinkage and the slot choice (sto.h).
 * Everything here is a pure function of its arguments.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include "sto.h"

const char *
sto_reason_name(enum sto_reason r)
{
	switch (r) {
	case STO_RECIPIENT_HISTORY: return "recipient-history";
	case STO_SEGMENT_PRIOR:     return "segment-prior";
	case STO_GLOBAL_PRIOR:      return "global-prior";
	case STO_WINDOW_EDGE:       return "window-edge";
	case STO_NOW:               return "now";
	}
	return "unknown";
}

/* The epoch (1970-01-01) was a Thursday: Monday 00:00 is 72 hours earlier. */
int
sto_slot(int64_t ms)
{
	int64_t h = ms >= 0 ? ms / STO_HOUR_MS : -((-ms + STO_HOUR_MS - 1) / STO_HOUR_MS);
	int64_t s = (h + 72) % STO_SLOTS;

	return (int)(s < 0 ? s + STO_SLOTS : s);
}

double
sto_decay_factor(int64_t dt_ms, int64_t half_life_ms)
{
	if (dt_ms <= 0 || half_life_ms <= 0)
		return 1.0;
	return exp2(-(double)dt_ms / (double)half_life_ms);
}

void
sto_decay_to(float *hist, int64_t *hist_time, int64_t to_ms, int64_t half_life_ms)
{
	if (*hist_time == 0) {
		*hist_time = to_ms;
		return;
	}
	if (to_ms <= *hist_time)
		return;
	double f = sto_decay_factor(to_ms - *hist_time, half_life_ms);
	for (int i = 0; i < STO_SLOTS; i++)
		hist[i] = (float)(hist[i] * f);
	*hist_time = to_ms;
}

void
sto_add(float *hist, int64_t *hist_time, int64_t ev_ms, double weight, int64_t half_life_ms)
{
	sto_decay_to(hist, hist_time, ev_ms, half_life_ms);
	hist[sto_slot(ev_ms)] += (float)(weight * sto_decay_factor(*hist_time - ev_ms, half_life_ms));
}

double
sto_mass(const float *hist)
{
	double m = 0;

	for (int i = 0; i < STO_SLOTS; i++)
		m += hist[i];
	return m;
}

void
sto_smooth(const float *in, double *out, double sigma_h)
{
	enum { R = 4 };
	static double cached_sigma = -1, k[2 * R + 1];
	double ext[STO_SLOTS + 2 * R], sum = 0;

	if (sigma_h != cached_sigma) {
		/* the kernel is the same for every call with the same width */
		double kk[2 * R + 1];
		for (int d = -R; d <= R; d++) {
			kk[d + R] = sigma_h > 0 ? exp(-(double)(d * d) / (2 * sigma_h * sigma_h)) : (d == 0);
			sum += kk[d + R];
		}
		for (int d = 0; d <= 2 * R; d++)
			k[d] = kk[d] / sum;
		cached_sigma = sigma_h;
	}
	/* the week wrapped around at both ends: no modulo in the inner loop */
	for (int i = 0; i < R; i++) {
		ext[i] = in[STO_SLOTS - R + i];
		ext[STO_SLOTS + R + i] = in[i];
	}
	for (int i = 0; i < STO_SLOTS; i++)
		ext[R + i] = in[i];
	for (int i = 0; i < STO_SLOTS; i++) {
		const double *e = ext + i;
		double v = 0;
		for (int d = 0; d <= 2 * R; d++)
			v += k[d] * e[d];
		out[i] = v;
	}
}

double
sto_shrink_weight(double events)
{
	if (!(events >= STO_MIN_EVENTS))
		return 0.0;
	double n = events - STO_MIN_EVENTS + 1.0;
	return n / (n + STO_SHRINK_K);
}

bool
sto_distribution(const float *h, double *out)
{
	double sum = 0;

	if (h != NULL) {
		sto_smooth(h, out, STO_SIGMA_H);
		for (int i = 0; i < STO_SLOTS; i++)
			sum += out[i];
	}
	if (!(sum > 0)) {
		for (int i = 0; i < STO_SLOTS; i++)
			out[i] = 1.0 / STO_SLOTS;
		return false;
	}
	for (int i = 0; i < STO_SLOTS; i++)
		out[i] /= sum;
	return true;
}

void
sto_scores_dist(const float *rcpt, const double *prior, double lambda, double score[STO_SLOTS])
{
	double r[STO_SLOTS];

	if (!(lambda > 0)) {
		memcpy(score, prior, sizeof(double) * STO_SLOTS);
		return;
	}
	if (lambda > 1)
		lambda = 1;
	sto_distribution(rcpt, r);
	for (int i = 0; i < STO_SLOTS; i++)
		score[i] = lambda * r[i] + (1 - lambda) * prior[i];
}

void
sto_scores(const float *rcpt, const float *prior, double lambda, double score[STO_SLOTS])
{
	double p[STO_SLOTS];

	sto_distribution(prior, p);
	sto_scores_dist(rcpt, p, lambda, score);
}

void
sto_choose(const double score[STO_SLOTS], int64_t start, int64_t end, uint64_t spread,
    struct sto_choice *out)
{
	int64_t h0, h1, best_a = start, best_len = 0;
	bool in_window[STO_SLOTS] = { false };
	int best_slot = -1, week_best = 0;

	memset(out, 0, sizeof(*out));
	if (end < start)
		end = start;
	if (end - start > STO_MAX_WINDOW_MS)
		end = start + STO_MAX_WINDOW_MS;
	h0 = start - (((start % STO_HOUR_MS) + STO_HOUR_MS) % STO_HOUR_MS);
	h1 = end - (((end % STO_HOUR_MS) + STO_HOUR_MS) % STO_HOUR_MS);
	/* an hour of zero length at the end of a longer window is not a candidate */
	if (h1 == end && end > start)
		h1 -= STO_HOUR_MS;

	for (int64_t h = h0; h <= h1; h += STO_HOUR_MS) {
		int64_t a = h > start ? h : start;
		int64_t b = h + STO_HOUR_MS < end ? h + STO_HOUR_MS : end;
		int slot = sto_slot(h);
		struct sto_cand c = { h, slot, score[slot] };

		in_window[slot] = true;
		if (best_slot < 0 || c.score > out->score) {
			best_slot = slot;
			out->score = c.score;
			out->hour_ms = h;
			best_a = a;
			best_len = b - a;
		}
		/* keep the top candidates, best first (insertion; ties keep the earlier) */
		int pos = out->ntop;
		while (pos > 0 && out->top[pos - 1].score < c.score)
			pos--;
		if (pos < STO_TOP) {
			int last = out->ntop < STO_TOP ? out->ntop : STO_TOP - 1;
			memmove(&out->top[pos + 1], &out->top[pos], sizeof(c) * (size_t)(last - pos));
			out->top[pos] = c;
			if (out->ntop < STO_TOP)
				out->ntop++;
		}
	}
	out->send_at = best_a + (best_len > 0 ? (int64_t)(spread % (uint64_t)best_len) : 0);
	for (int i = 1; i < STO_SLOTS; i++)
		if (score[i] > score[week_best])
			week_best = i;
	out->edge = !in_window[week_best] && score[week_best] > out->score &&
	    (out->hour_ms == h0 || out->hour_ms == h1);
}
