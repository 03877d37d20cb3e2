/* Unit tests: send-time optimisation arithmetic — histogram decay, circular
 * smoothing, the shrinkage weight and the slot choice (windows that wrap
 * the week, windows shorter than an hour, windows without the best hour). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "sto.h"

#define H STO_HOUR_MS
#define DAY (24 * H)
/* Monday 2026-11-23 00:00 UTC */
#define MON 1795392000000LL

static void
test_slot(void **state)
{
	(void)state;
	assert_int_equal(sto_slot(MON), 0);
	assert_int_equal(sto_slot(MON + DAY + 19 * H + 59 * 60000), 24 + 19);   /* Tue 19:59 */
	assert_int_equal(sto_slot(MON + 6 * DAY + 23 * H), 167);                /* Sun 23:00 */
	assert_int_equal(sto_slot(MON + 7 * DAY), 0);
	assert_int_equal(sto_slot(0), 72);                                      /* Thu 1970 */
}

static void
test_decay(void **state)
{
	float h[STO_SLOTS] = { 0 };
	int64_t t = 0, hl = 30 * DAY;
	(void)state;

	sto_add(h, &t, MON, 1.0, hl);
	assert_true(fabsf(h[0] - 1.0f) < 1e-6);
	/* one half-life later the old event weighs a half */
	sto_decay_to(h, &t, MON + hl, hl);
	assert_true(fabsf(h[0] - 0.5f) < 1e-6);
	assert_int_equal(t, MON + hl);
	/* decaying backwards is a no-op */
	sto_decay_to(h, &t, MON, hl);
	assert_true(fabsf(h[0] - 0.5f) < 1e-6);
	/* an event in the past (imported history) counts less, at its own slot */
	sto_add(h, &t, MON, 1.0, hl);
	assert_true(fabs(h[0] - 1.0) < 1e-3);
	assert_int_equal(t, MON + hl);
	/* three half-lives: an eighth */
	assert_true(fabs(sto_decay_factor(3 * hl, hl) - 0.125) < 1e-12);
	assert_true(sto_decay_factor(-5, hl) == 1.0);
	assert_true(fabs(sto_mass(h) - 1.0) < 1e-3);
	sto_add(h, &t, MON + 19 * H, 2.0, hl);
	assert_true(h[19] > 1.0 && h[19] < 1.02);
}

static void
test_smooth_is_circular_and_keeps_mass(void **state)
{
	float h[STO_SLOTS] = { 0 };
	double out[STO_SLOTS], sum = 0;
	(void)state;

	h[0] = 10;                      /* Monday 00:00 */
	sto_smooth(h, out, 1.0);
	for (int i = 0; i < STO_SLOTS; i++)
		sum += out[i];
	assert_true(fabs(sum - 10) < 1e-9);
	/* spreads both ways across the week boundary, symmetric */
	assert_true(out[0] > out[1] && out[1] > out[2] && out[2] > 0);
	assert_true(fabs(out[167] - out[1]) < 1e-12);
	assert_true(fabs(out[166] - out[2]) < 1e-12);
	assert_true(out[84] == 0);
	/* sigma 0: identity */
	sto_smooth(h, out, 0);
	assert_true(out[0] == 10 && out[1] == 0 && out[167] == 0);
}

static void
test_shrink_weight(void **state)
{
	(void)state;
	assert_true(sto_shrink_weight(0) == 0);
	assert_true(sto_shrink_weight(9.9) == 0);          /* pure prior below ~10 events */
	double prev = 0;
	for (double n = 10; n < 1000; n += 5) {
		double w = sto_shrink_weight(n);
		assert_true(w > prev && w < 1);
		prev = w;
	}
	assert_true(sto_shrink_weight(19) >= 0.5);
	assert_true(sto_shrink_weight(1000) > 0.98);
	assert_true(sto_shrink_weight(NAN) == 0);
}

static void
test_scores_mix(void **state)
{
	float r[STO_SLOTS] = { 0 }, p[STO_SLOTS] = { 0 };
	double s[STO_SLOTS], sum = 0;
	(void)state;

	r[24 + 19] = 30;                 /* recipient: Tuesday 19:00 */
	p[7] = 100;                      /* prior: Monday 07:00 */
	sto_scores(r, p, 0, s);          /* weight 0: the prior alone */
	for (int i = 0; i < STO_SLOTS; i++)
		sum += s[i];
	assert_true(fabs(sum - 1) < 1e-9);
	assert_true(s[7] > s[43]);
	sto_scores(r, p, 0.8, s);
	assert_true(s[43] > s[7]);
	/* nothing known: uniform */
	sto_scores(NULL, NULL, 0, s);
	assert_true(fabs(s[0] - 1.0 / STO_SLOTS) < 1e-12 && fabs(s[100] - 1.0 / STO_SLOTS) < 1e-12);
}

static void
peak(double *s, int slot)
{
	for (int i = 0; i < STO_SLOTS; i++)
		s[i] = 1;
	s[slot] = 10;
}

static void
test_choose_best_hour_in_window(void **state)
{
	double s[STO_SLOTS];
	struct sto_choice c;
	(void)state;

	peak(s, 24 + 19);                /* Tuesday 19:00 */
	sto_choose(s, MON, MON + 7 * DAY, 0, &c);
	assert_int_equal(c.hour_ms, MON + DAY + 19 * H);
	assert_int_equal(c.send_at, MON + DAY + 19 * H);
	assert_false(c.edge);
	assert_int_equal(c.ntop, STO_TOP);
	assert_true(c.top[0].hour_ms == c.hour_ms && c.top[0].score == 10);
	/* the spread puts the send inside the hour */
	sto_choose(s, MON, MON + 7 * DAY, 1234567, &c);
	assert_int_equal(c.send_at, MON + DAY + 19 * H + 1234567);
	/* a window that starts mid-hour in the best hour: clipped to it */
	sto_choose(s, MON + DAY + 19 * H + 30 * 60000, MON + 2 * DAY, 45 * 60000, &c);
	assert_int_equal(c.hour_ms, MON + DAY + 19 * H);
	assert_true(c.send_at >= MON + DAY + 19 * H + 30 * 60000 && c.send_at < MON + DAY + 20 * H);
}

static void
test_choose_window_without_the_best(void **state)
{
	double s[STO_SLOTS];
	struct sto_choice c;
	(void)state;

	peak(s, 24 + 19);
	s[24 + 14] = 5;                  /* Tuesday 14:00: second best */
	sto_choose(s, MON + DAY + 10 * H, MON + DAY + 17 * H, 0, &c);
	assert_int_equal(c.hour_ms, MON + DAY + 14 * H);
	assert_false(c.edge);
	/* rising toward the excluded best: the edge, flagged */
	for (int i = 0; i < STO_SLOTS; i++)
		s[i] = 1 + (i <= 43 ? i : 0) * 0.01;
	s[43] = 10;
	sto_choose(s, MON + DAY + 10 * H, MON + DAY + 17 * H, 0, &c);
	assert_int_equal(c.hour_ms, MON + DAY + 16 * H);
	assert_true(c.edge);
	/* the window end on an hour boundary does not make a zero-length hour */
	for (int i = 0; i < c.ntop; i++)
		assert_true(c.top[i].hour_ms < MON + DAY + 17 * H);
}

static void
test_choose_window_wrapping_the_week(void **state)
{
	double s[STO_SLOTS];
	struct sto_choice c;
	(void)state;

	peak(s, 1);                      /* Monday 01:00 */
	s[166] = 5;                      /* Sunday 22:00 */
	/* Sunday 20:00 .. Monday 04:00 of the next week */
	sto_choose(s, MON + 6 * DAY + 20 * H, MON + 7 * DAY + 4 * H, 0, &c);
	assert_int_equal(c.hour_ms, MON + 7 * DAY + 1 * H);
	assert_int_equal(c.top[1].hour_ms, MON + 6 * DAY + 22 * H);
	/* ties go to the earliest hour */
	for (int i = 0; i < STO_SLOTS; i++)
		s[i] = 1;
	sto_choose(s, MON + 6 * DAY + 20 * H, MON + 7 * DAY + 4 * H, 0, &c);
	assert_int_equal(c.hour_ms, MON + 6 * DAY + 20 * H);
}

static void
test_choose_short_windows(void **state)
{
	double s[STO_SLOTS];
	struct sto_choice c;
	int64_t a = MON + 3 * DAY + 10 * H + 20 * 60000;   /* Thursday 10:20 */
	(void)state;

	peak(s, 0);
	/* 15 minutes inside one hour: the send stays in the window */
	for (uint64_t seed = 0; seed < 2000000; seed += 99991) {
		sto_choose(s, a, a + 15 * 60000, seed, &c);
		assert_true(c.send_at >= a && c.send_at < a + 15 * 60000);
		assert_int_equal(c.hour_ms, MON + 3 * DAY + 10 * H);
	}
	/* 30 minutes across an hour boundary: the better of the two hours */
	s[3 * 24 + 11] = 7;
	sto_choose(s, a + 30 * 60000, a + 60 * 60000, 0, &c);
	assert_int_equal(c.hour_ms, MON + 3 * DAY + 11 * H);
	assert_int_equal(c.send_at, MON + 3 * DAY + 11 * H);
	assert_int_equal(c.ntop, 2);
	/* an empty window: its instant */
	sto_choose(s, a, a, 77, &c);
	assert_int_equal(c.send_at, a);
	/* longer than a week: cut to a week */
	sto_choose(s, MON, MON + 30 * DAY, 0, &c);
	assert_true(c.send_at < MON + 7 * DAY + H);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_slot),
		cmocka_unit_test(test_decay),
		cmocka_unit_test(test_smooth_is_circular_and_keeps_mass),
		cmocka_unit_test(test_shrink_weight),
		cmocka_unit_test(test_scores_mix),
		cmocka_unit_test(test_choose_best_hour_in_window),
		cmocka_unit_test(test_choose_window_without_the_best),
		cmocka_unit_test(test_choose_window_wrapping_the_week),
		cmocka_unit_test(test_choose_short_windows),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
