/* Unit tests: the bandit — the generator, Gamma and Beta variates against
 * their exact moments and CDF, the posterior update, the Thompson choice
 * (probability matching against an exact value), exploration, the winner
 * rule, and the counts in the store across a restart.
 *
 * Every statistical bound is a few standard errors of the estimate, with
 * the generator seeded: the same numbers every run, and a sampler that is
 * off by a few percent fails (the bounds are far tighter than the errors
 * they must catch: a Gamma(k) sampler returning Gamma(1.05k) moves the
 * mean by 5 %, i.e. by tens of standard errors). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bandit.h"
#include "log.h"
#include "store.h"
#include "variant.h"
#include "unit.h"

/* mean and variance of n draws, plus the standard error of each */
struct moments {
	double mean, var, se_mean, se_var;
};

static void
moments_of(const double *x, int n, struct moments *m)
{
	double s = 0, s2 = 0, s4 = 0;

	for (int i = 0; i < n; i++)
		s += x[i];
	m->mean = s / n;
	for (int i = 0; i < n; i++) {
		double d = x[i] - m->mean;
		s2 += d * d;
		s4 += d * d * d * d;
	}
	m->var = s2 / (n - 1);
	m->se_mean = sqrt(m->var / n);
	/* Var(s^2) ~ (mu4 - sigma^4) / n */
	m->se_var = sqrt((s4 / n - m->var * m->var) / n);
}

static void
test_rng_determinism(void **state)
{
	(void)state;
	struct bandit_rng a, b, c;
	int same = 0;

	bandit_seed(&a, 42);
	bandit_seed(&b, 42);
	bandit_seed(&c, 43);
	for (int i = 0; i < 1000; i++) {
		uint64_t x = bandit_next(&a);
		assert_int_equal(x, bandit_next(&b));
		same += x == bandit_next(&c);
	}
	assert_int_equal(same, 0);
	/* every bit position is a fair coin: 64 x 100000 bits, each within 5 se */
	uint32_t ones[64] = { 0 };
	const int n = 100000;
	bandit_seed(&a, 1);
	for (int i = 0; i < n; i++) {
		uint64_t x = bandit_next(&a);
		for (int k = 0; k < 64; k++)
			ones[k] += (x >> k) & 1;
	}
	for (int k = 0; k < 64; k++)
		assert_true(fabs(ones[k] - n / 2.0) < 5 * sqrt(n / 4.0));
}

static void
test_uniform(void **state)
{
	(void)state;
	struct bandit_rng r;
	const int n = 200000, bins = 20;
	uint32_t count[20] = { 0 };
	double chi2 = 0;

	bandit_seed(&r, 7);
	for (int i = 0; i < n; i++) {
		double u = bandit_uniform(&r);
		assert_true(u > 0.0 && u < 1.0);
		count[(int)(u * bins)]++;
	}
	for (int b = 0; b < bins; b++) {
		double e = (double)n / bins;
		chi2 += (count[b] - e) * (count[b] - e) / e;
	}
	/* 19 degrees of freedom: P(chi2 > 50) < 1e-4 */
	assert_true(chi2 < 50.0);
}

static void
test_normal(void **state)
{
	(void)state;
	struct bandit_rng r;
	const int n = 200000;
	double *x = malloc(sizeof(double) * n);
	struct moments m;
	int tail = 0;

	bandit_seed(&r, 11);
	for (int i = 0; i < n; i++) {
		x[i] = bandit_normal(&r);
		tail += fabs(x[i]) > 1.959964;
	}
	moments_of(x, n, &m);
	assert_true(fabs(m.mean) < 5 * m.se_mean);
	assert_true(fabs(m.var - 1.0) < 5 * m.se_var);
	/* 5 % beyond +-1.96: binomial se = sqrt(.05 * .95 / n) */
	assert_true(fabs((double)tail / n - 0.05) < 5 * sqrt(0.05 * 0.95 / n));
	free(x);
}

static void
test_gamma_moments(void **state)
{
	(void)state;
	/* shape < 1 takes the boost path; large shapes the squeeze almost always */
	static const double shapes[] = { 0.2, 0.7, 1.0, 2.5, 10.0, 137.0, 5000.0 };
	struct bandit_rng r;
	const int n = 200000;
	double *x = malloc(sizeof(double) * n);
	struct moments m;

	bandit_seed(&r, 3);
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
		double k = shapes[s];

		for (int i = 0; i < n; i++) {
			x[i] = bandit_gamma(&r, k);
			assert_true(x[i] >= 0.0);
		}
		moments_of(x, n, &m);
		/* Gamma(k, 1): mean k, variance k; se of the mean sqrt(k / n) */
		assert_true(fabs(m.mean - k) < 5 * sqrt(k / n));
		assert_true(fabs(m.var - k) < 6 * m.se_var);
		/* and a shape 5 % off would be outside: twice the bound, or more */
		assert_true(0.05 * k > 2 * 5 * sqrt(k / n));
	}
	free(x);
}

/* I_x(a, b) for integer a, b: the binomial tail. */
static double
beta_cdf_int(double x, int a, int b)
{
	int n = a + b - 1;
	double sum = 0;

	for (int j = a; j <= n; j++) {
		double c = 1;
		for (int i = 0; i < j; i++)
			c = c * (n - i) / (i + 1);
		sum += c * pow(x, j) * pow(1 - x, n - j);
	}
	return sum;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void
test_beta_distribution(void **state)
{
	(void)state;
	static const int ab[][2] = { { 2, 5 }, { 1, 1 }, { 31, 71 }, { 3, 1 } };
	struct bandit_rng r;
	const int n = 100000;
	double *x = malloc(sizeof(double) * n);

	bandit_seed(&r, 5);
	for (size_t t = 0; t < sizeof(ab) / sizeof(ab[0]); t++) {
		int a = ab[t][0], b = ab[t][1];
		double d = 0, mean = (double)a / (a + b);
		double var = (double)a * b / ((double)(a + b) * (a + b) * (a + b + 1));
		struct moments m;

		for (int i = 0; i < n; i++) {
			x[i] = bandit_beta(&r, a, b);
			assert_true(x[i] > 0.0 && x[i] < 1.0);
		}
		moments_of(x, n, &m);
		assert_true(fabs(m.mean - mean) < 5 * sqrt(var / n));
		assert_true(fabs(m.var - var) < 6 * m.se_var);
		/* Kolmogorov-Smirnov against the exact CDF: the critical value at
		 * alpha = 1e-6 is sqrt(ln(2e6) / 2n) = 0.0085; Beta(2,6) in place
		 * of Beta(2,5) is 0.05 away */
		qsort(x, (size_t)n, sizeof(double), cmp_double);
		for (int i = 0; i < n; i++) {
			double f = beta_cdf_int(x[i], a, b);
			double lo = fabs(f - (double)i / n), hi = fabs((double)(i + 1) / n - f);
			d = fmax(d, fmax(lo, hi));
		}
		assert_true(d < sqrt(log(2e6) / (2.0 * n)));
	}
	free(x);
}

static void
test_posterior_update(void **state)
{
	(void)state;
	struct bandit_arm a = { .sends = 100, .opens = 30, .clicks = 4 };
	double al, be;

	bandit_posterior(&a, BANDIT_OPEN, &al, &be);
	assert_true(al == 31.0 && be == 71.0);
	bandit_posterior(&a, BANDIT_CLICK, &al, &be);
	assert_true(al == 5.0 && be == 97.0);
	assert_true(fabs(bandit_mean(&a, BANDIT_OPEN) - 31.0 / 102.0) < 1e-12);

	/* a send moves beta, a reward moves alpha */
	a.sends++;
	bandit_posterior(&a, BANDIT_OPEN, &al, &be);
	assert_true(al == 31.0 && be == 72.0);
	a.opens++;
	bandit_posterior(&a, BANDIT_OPEN, &al, &be);
	assert_true(al == 32.0 && be == 71.0);

	/* no data: the uniform prior */
	struct bandit_arm z = { 0 };
	bandit_posterior(&z, BANDIT_OPEN, &al, &be);
	assert_true(al == 1.0 && be == 1.0);
	/* rewards never exceed sends */
	struct bandit_arm odd = { .sends = 2, .opens = 5 };
	bandit_posterior(&odd, BANDIT_OPEN, &al, &be);
	assert_true(al == 3.0 && be == 1.0);

	assert_string_equal(bandit_reward_name(BANDIT_CLICK), "click");
	enum bandit_reward rw;
	assert_int_equal(bandit_reward_parse("open", &rw), 0);
	assert_int_equal(rw, BANDIT_OPEN);
	assert_int_equal(bandit_reward_parse("conversion", &rw), -1);
}

static void
test_choose_single_winner_explore(void **state)
{
	(void)state;
	struct bandit_rng r;
	struct bandit_policy p = { BANDIT_OPEN, 3, 0.95 };
	struct bandit_arm arms[4] = { { 5, 1, 0 }, { 2, 0, 0 }, { 2, 2, 0 }, { 9, 9, 0 } };
	enum bandit_why why;
	int hit[4] = { 0 };
	const int n = 20000;

	bandit_seed(&r, 9);
	assert_int_equal(bandit_choose(&r, arms, 1, &p, -1, &why), 0);
	assert_int_equal(why, BANDIT_SINGLE);
	assert_int_equal(bandit_choose(&r, arms, 4, &p, 2, &why), 2);
	assert_int_equal(why, BANDIT_WINNER);

	/* below explore_until: the least sent, ties split evenly */
	for (int i = 0; i < n; i++) {
		hit[bandit_choose(&r, arms, 4, &p, -1, &why)]++;
		assert_int_equal(why, BANDIT_EXPLORE);
	}
	assert_int_equal(hit[0] + hit[3], 0);
	assert_true(fabs(hit[1] - n / 2.0) < 5 * sqrt(n / 4.0));

	/* explored enough: sampling */
	p.explore_until = 2;
	bandit_choose(&r, arms, 4, &p, -1, &why);
	assert_int_equal(why, BANDIT_SAMPLE);
	assert_string_equal(bandit_why_name(BANDIT_EXPLORE), "explore");
}

static void
test_thompson_probability_matching(void **state)
{
	(void)state;
	struct bandit_rng r;
	struct bandit_policy p = { BANDIT_OPEN, 0, 0 };
	enum bandit_why why;
	const int n = 60000;
	int a = 0;

	/* A ~ Beta(2,1), B ~ Beta(1,1): P(A > B) = int_0^1 x * 2x dx = 2/3 */
	struct bandit_arm ab[2] = { { 1, 1, 0 }, { 0, 0, 0 } };
	bandit_seed(&r, 17);
	for (int i = 0; i < n; i++)
		a += bandit_choose(&r, ab, 2, &p, -1, &why) == 0;
	assert_int_equal(why, BANDIT_SAMPLE);
	assert_true(fabs((double)a / n - 2.0 / 3.0) < 5 * sqrt(2.0 / 9.0 / n));

	/* the same from the Monte Carlo P(best) */
	double pb[2];
	bandit_prob_best(&r, ab, 2, BANDIT_OPEN, n, pb);
	assert_true(fabs(pb[0] - 2.0 / 3.0) < 5 * sqrt(2.0 / 9.0 / n));
	assert_true(fabs(pb[0] + pb[1] - 1.0) < 1e-12);

	/* three identical arms: a third each */
	struct bandit_arm same[3] = { { 50, 10, 0 }, { 50, 10, 0 }, { 50, 10, 0 } };
	int hit[3] = { 0 };
	for (int i = 0; i < n; i++)
		hit[bandit_choose(&r, same, 3, &p, -1, &why)]++;
	for (int i = 0; i < 3; i++)
		assert_true(fabs((double)hit[i] / n - 1.0 / 3.0) < 5 * sqrt(2.0 / 9.0 / n));

	/* 10 % against 20 % on 1000 sends each: B nearly always (P(A best) ~ 1e-9) */
	struct bandit_arm clear[2] = { { 1000, 100, 0 }, { 1000, 200, 0 } };
	a = 0;
	for (int i = 0; i < n; i++)
		a += bandit_choose(&r, clear, 2, &p, -1, &why) == 0;
	assert_int_equal(a, 0);

	/* clicks as the reward read the click counts */
	p.reward = BANDIT_CLICK;
	struct bandit_arm clicks[2] = { { 1000, 900, 10 }, { 1000, 100, 100 } };
	a = 0;
	for (int i = 0; i < 1000; i++)
		a += bandit_choose(&r, clicks, 2, &p, -1, &why) == 0;
	assert_int_equal(a, 0);
}

static void
test_winner_rule(void **state)
{
	(void)state;
	struct bandit_policy p = { BANDIT_OPEN, 100, 0.95 };
	struct bandit_arm arms[3] = { { 100, 10, 0 }, { 100, 40, 0 }, { 100, 12, 0 } };
	double pb[3] = { 0.01, 0.97, 0.02 };

	assert_int_equal(bandit_winner(arms, pb, 3, &p), 1);
	pb[1] = 0.95;                   /* must exceed, not reach */
	assert_int_equal(bandit_winner(arms, pb, 3, &p), -1);
	pb[1] = 0.99;
	arms[2].sends = 99;             /* not every arm explored */
	assert_int_equal(bandit_winner(arms, pb, 3, &p), -1);
	arms[2].sends = 100;
	p.winner_after = 0;             /* off */
	assert_int_equal(bandit_winner(arms, pb, 3, &p), -1);

	/* from real counts: 40 % against 10 % on 100 sends is decisive */
	struct bandit_rng r;
	p.winner_after = 0.95;
	bandit_seed(&r, 23);
	bandit_prob_best(&r, arms, 3, BANDIT_OPEN, BANDIT_BEST_DRAWS, pb);
	assert_true(pb[1] > 0.999);
	assert_int_equal(bandit_winner(arms, pb, 3, &p), 1);
}

/* ---- the store ---- */

static char dir[256];

static void
open_store(void)
{
	char err[256];

	assert_int_equal(store_open(dir, 64 << 20, err, sizeof(err)), 0);
}

static int
setup_store(void **state)
{
	(void)state;
	unit_store_open(dir, sizeof(dir), "bandit", "store", 64 << 20);
	/* the choices in these tests are drawn on this thread: make them repeatable */
	bandit_seed(bandit_thread_rng(), 29);
	return 0;
}

static int
teardown_store(void **state)
{
	(void)state;
	store_close();
	bandit_cache_clear();
	unit_tmp_remove("bandit");
	return 0;
}

static void
test_counts_persist(void **state)
{
	(void)state;
	const char *ids[3] = { "A", "B", "C" };
	struct bandit_policy p = { BANDIT_OPEN, 4, 0 };
	struct bandit_stat st[3];
	char addr[64], seg[64], var[64];
	enum bandit_why why;
	int winner, got[12];
	int64_t wms;

	/* 12 sends with explore_until 4: exactly 4 each, before any commit */
	for (int i = 0; i < 12; i++) {
		snprintf(addr, sizeof(addr), "u%d@Example.COM", i);
		got[i] = bandit_send("c1", "seg", ids, 3, &p, addr, &why);
		assert_int_equal(why, BANDIT_EXPLORE);
	}
	store_flush();
	assert_int_equal(bandit_stats("c1", "seg", ids, 3, BANDIT_OPEN, st, &winner, &wms), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(st[i].arm.sends, 4);
	assert_int_equal(winner, -1);

	/* which variant a recipient got (address domain case-folded) */
	struct bandit_sent sent;
	assert_int_equal(bandit_recipient_variant("c1", "u0@example.com", seg, sizeof(seg), var,
	    sizeof(var), &sent), 1);
	assert_string_equal(seg, "seg");
	assert_string_equal(var, ids[got[0]]);
	assert_int_equal(sent.why, BANDIT_EXPLORE);
	assert_false(sent.opened || sent.clicked);
	assert_int_equal(bandit_recipient_variant("c2", "u0@example.com", seg, sizeof(seg), var,
	    sizeof(var), NULL), 0);

	/* every recipient of A opens, twice; one clicks; strangers do nothing */
	int a_index = got[0];
	for (int i = 0; i < 12; i++) {
		if (got[i] != a_index)
			continue;
		snprintf(addr, sizeof(addr), "u%d@example.com", i);
		bandit_reward("c1", addr, false);
		bandit_reward("c1", addr, false);
	}
	snprintf(addr, sizeof(addr), "u%d@example.com", 0);
	bandit_reward("c1", addr, true);
	bandit_reward("c1", "stranger@example.com", true);
	bandit_reward("other", addr, true);
	store_flush();
	assert_int_equal(bandit_stats("c1", "seg", ids, 3, BANDIT_OPEN, st, &winner, &wms), 0);
	assert_int_equal(st[a_index].arm.opens, 4);
	assert_int_equal(st[a_index].arm.clicks, 1);
	for (int i = 0; i < 3; i++)
		if (i != a_index)
			assert_int_equal(st[i].arm.opens + st[i].arm.clicks, 0);
	assert_true(fabs(st[a_index].mean - 5.0 / 6.0) < 1e-12);
	assert_true(st[a_index].pbest > 0.9);
	assert_int_equal(bandit_recipient_variant("c1", "u0@example.com", seg, sizeof(seg), var,
	    sizeof(var), &sent), 1);
	assert_true(sent.opened && sent.clicked && sent.why == BANDIT_EXPLORE);

	/* restart: the counts come back from the store */
	store_close();
	bandit_cache_clear();
	open_store();
	assert_int_equal(bandit_stats("c1", "seg", ids, 3, BANDIT_OPEN, st, &winner, &wms), 0);
	assert_int_equal(st[a_index].arm.sends, 4);
	assert_int_equal(st[a_index].arm.opens, 4);

	/* and sampling now favours A: of 300 sends, A gets most */
	int a = 0;
	for (int i = 0; i < 300; i++) {
		snprintf(addr, sizeof(addr), "v%d@example.com", i);
		a += bandit_send("c1", "seg", ids, 3, &p, addr, &why) == a_index;
		assert_int_equal(why, BANDIT_SAMPLE);
	}
	assert_true(a > 150);           /* about 220 expected */
	store_flush();
	assert_int_equal(bandit_stats("c1", "seg", ids, 3, BANDIT_OPEN, st, &winner, &wms), 0);
	assert_int_equal(st[0].arm.sends + st[1].arm.sends + st[2].arm.sends, 312);

	/* forgetting the campaign removes its counts and recipients */
	bandit_forget("c1");
	store_flush();
	assert_int_equal(bandit_stats("c1", "seg", ids, 3, BANDIT_OPEN, st, &winner, &wms), 0);
	assert_int_equal(st[0].arm.sends + st[1].arm.sends + st[2].arm.sends, 0);
	assert_int_equal(bandit_recipient_variant("c1", "u0@example.com", seg, sizeof(seg), var,
	    sizeof(var), NULL), 0);
}

static void
test_winner_declared_and_kept(void **state)
{
	(void)state;
	const char *ids[2] = { "A", "B" };
	struct bandit_policy p = { BANDIT_OPEN, 20, 0.95 };
	struct bandit_stat st[2];
	char addr[64];
	enum bandit_why why;
	int winner, got;
	int64_t wms;

	for (int i = 0; i < 40; i++) {
		snprintf(addr, sizeof(addr), "w%d@example.com", i);
		got = bandit_send("c2", "*", ids, 2, &p, addr, &why);
		if (got == 1)
			bandit_reward("c2", addr, false);
	}
	store_flush();
	/* the check runs at most once a second */
	usleep(1100 * 1000);
	bandit_send("c2", "*", ids, 2, &p, "x@example.com", &why);
	assert_int_equal(bandit_stats("c2", "*", ids, 2, BANDIT_OPEN, st, &winner, &wms), 0);
	assert_int_equal(winner, 1);
	assert_true(wms > 0);
	for (int i = 0; i < 50; i++) {
		assert_int_equal(bandit_send("c2", "*", ids, 2, &p, "y@example.com", &why), 1);
		assert_int_equal(why, BANDIT_WINNER);
	}
	/* the winner survives a restart */
	store_flush();
	store_close();
	bandit_cache_clear();
	open_store();
	assert_int_equal(bandit_send("c2", "*", ids, 2, &p, "z@example.com", &why), 1);
	assert_int_equal(why, BANDIT_WINNER);
}

/* ---- the variant spec of a campaign ---- */

static int
parse_spec(const char *text, bool own, struct variant_spec *vs, char *err, size_t errlen)
{
	json_error_t je;
	json_t *j = json_loads(text, 0, &je);
	int rc;

	assert_non_null(j);
	rc = variant_spec_parse(j, own, vs, err, errlen);
	json_decref(j);
	return rc;
}

static void
test_variant_spec(void **state)
{
	(void)state;
	struct variant_spec vs;
	char err[512];
	const struct variant_group *g;

	assert_int_equal(parse_spec("{\"variants\": ["
	    "{\"segment\": \"young\", \"variants\": [{\"id\": \"A\", \"subject\": \"Hi\"},"
	    " {\"id\": \"B\", \"html\": \"<p>x</p>\", \"text\": \"x\"}]},"
	    "{\"segment\": \"*\", \"variants\": [{\"id\": \"D\", \"subject\": \"Hello\"}]}],"
	    "\"reward\": \"click\", \"explore_until\": 50, \"winner_after\": 0.95}",
	    false, &vs, err, sizeof(err)), 0);
	assert_int_equal(vs.ngroups, 2);
	assert_int_equal(vs.policy.reward, BANDIT_CLICK);
	assert_int_equal(vs.policy.explore_until, 50);
	assert_true(vs.policy.winner_after == 0.95);
	g = variant_group_for(&vs, "young");
	assert_string_equal(g->segment, "young");
	assert_int_equal(g->n, 2);
	assert_string_equal(g->ids[1], "B");
	assert_null(g->v[0].html);
	assert_string_equal(g->v[0].subject, "Hi");
	assert_string_equal(variant_group_for(&vs, "old")->segment, "*");
	assert_string_equal(variant_group_for(&vs, NULL)->segment, "*");
	variant_spec_free(&vs);

	/* no variants: nothing to do */
	assert_int_equal(parse_spec("{\"subject\": \"x\"}", true, &vs, err, sizeof(err)), 0);
	assert_int_equal(vs.ngroups, 0);
	assert_null(variant_group_for(&vs, "young"));

	/* without a "*" group the campaign's own content is the default */
	assert_int_equal(parse_spec("{\"variants\": [{\"segment\": \"s\", \"variants\": "
	    "[{\"id\": \"A\", \"text\": \"t\"}]}]}", true, &vs, err, sizeof(err)), 0);
	assert_null(variant_group_for(&vs, "other"));
	variant_spec_free(&vs);

	static const struct {
		const char *json, *err;
	} bad[] = {
		{ "{\"variants\": [{\"segment\": \"s\", \"variants\": [{\"id\": \"A\", "
		  "\"text\": \"t\"}]}]}", "need content" },
		{ "{\"variants\": [{\"segment\": \"*\", \"variants\": [{\"id\": \"A\", "
		  "\"text\": \"t\"}, {\"id\": \"A\", \"text\": \"u\"}]}]}", "appears twice" },
		{ "{\"variants\": [{\"segment\": \"*\", \"variants\": [{\"id\": \"A\"}]}]}",
		  "no subject, html or text" },
		{ "{\"variants\": [{\"segment\": \"*\", \"variants\": []}]}", "1 to 20" },
		{ "{\"variants\": [{\"segment\": \"a/b\", \"variants\": [{\"id\": \"A\", "
		  "\"text\": \"t\"}]}]}", "segment name" },
		{ "{\"variants\": [{\"segment\": \"*\", \"variants\": [{\"id\": \"A B\", "
		  "\"text\": \"t\"}]}]}", ".id must be" },
		{ "{\"variants\": [{\"segment\": \"*\", \"variants\": [{\"id\": \"A\", "
		  "\"text\": \"t\", \"colour\": 1}]}]}", "unknown member \"colour\"" },
		{ "{\"variants\": [{\"segment\": \"x\", \"variants\": [{\"id\": \"A\", "
		  "\"text\": \"t\"}]}, {\"segment\": \"x\", \"variants\": [{\"id\": \"A\", "
		  "\"text\": \"t\"}]}]}", "segment \"x\" appears twice" },
		{ "{\"variants\": [{\"segment\": \"*\", \"variants\": [{\"id\": \"A\", "
		  "\"text\": \"t\"}]}], \"reward\": \"conversion\"}", "\"reward\"" },
		{ "{\"variants\": [{\"segment\": \"*\", \"variants\": [{\"id\": \"A\", "
		  "\"text\": \"t\"}]}], \"winner_after\": 1.0}", "winner_after" },
		{ "{\"variants\": [{\"segment\": \"*\", \"variants\": [{\"id\": \"A\", "
		  "\"text\": \"t\"}]}], \"explore_until\": -1}", "explore_until" },
		{ "{\"explore_until\": 5}", "need \"variants\"" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(parse_spec(bad[i].json, false, &vs, err, sizeof(err)), -1);
		if (strstr(err, bad[i].err) == NULL)
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, bad[i].err);
	}

	/* 21 variants in a group: too many */
	char big[4096];
	size_t off = (size_t)snprintf(big, sizeof(big), "{\"variants\": [{\"segment\": \"*\", \"variants\": [");
	for (int i = 0; i < 21; i++)
		off += (size_t)snprintf(big + off, sizeof(big) - off, "%s{\"id\": \"v%d\", \"text\": \"t\"}",
		    i ? "," : "", i);
	snprintf(big + off, sizeof(big) - off, "]}]}");
	assert_int_equal(parse_spec(big, true, &vs, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "1 to 20"));
}

static void
test_cache_bounded(void **state)
{
	(void)state;
	const char *ids[2] = { "A", "B" };
	struct bandit_policy p = { BANDIT_OPEN, 1, 0 };
	struct bandit_stat st[2];
	enum bandit_why why;
	char seg[32];
	int n, winner;
	int64_t wms;

	/* at most 10 sets; idle means "not in use right now" */
	bandit_cache_limits(10, 0, NULL);
	for (int i = 0; i < 30; i++) {
		snprintf(seg, sizeof(seg), "s%d", i);
		bandit_send("cache", seg, ids, 2, &p, "a@example.com", &why);
		bandit_send("cache", seg, ids, 2, &p, "b@example.com", &why);
	}
	bandit_cache_limits(0, -1, &n);
	assert_true(n <= 11);
	/* a dropped set comes back from the store with its counts */
	store_flush();
	assert_int_equal(bandit_stats("cache", "s0", ids, 2, BANDIT_OPEN, st, &winner, &wms), 0);
	assert_int_equal(st[0].arm.sends + st[1].arm.sends, 2);
	bandit_send("cache", "s0", ids, 2, &p, "c@example.com", &why);
	store_flush();
	assert_int_equal(bandit_stats("cache", "s0", ids, 2, BANDIT_OPEN, st, &winner, &wms), 0);
	assert_int_equal(st[0].arm.sends + st[1].arm.sends, 3);
	bandit_cache_limits(4096, 10 * 60 * 1000, NULL);
}

int
main(void)
{
	log_open("/dev/null", LOG_ERR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rng_determinism),
		cmocka_unit_test(test_uniform),
		cmocka_unit_test(test_normal),
		cmocka_unit_test(test_gamma_moments),
		cmocka_unit_test(test_beta_distribution),
		cmocka_unit_test(test_posterior_update),
		cmocka_unit_test(test_choose_single_winner_explore),
		cmocka_unit_test(test_thompson_probability_matching),
		cmocka_unit_test(test_winner_rule),
		cmocka_unit_test(test_variant_spec),
		cmocka_unit_test_setup_teardown(test_counts_persist, setup_store, teardown_store),
		cmocka_unit_test_setup_teardown(test_winner_declared_and_kept, setup_store,
		    teardown_store),
		cmocka_unit_test_setup_teardown(test_cache_bounded, setup_store, teardown_store),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
