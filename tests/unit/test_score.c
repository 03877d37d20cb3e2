/* Unit tests: the engagement score (its parts and their bounds), the
 * sunset rule with its re-engagement sends, bounce risk, role addresses
 * and spam-trap suspicion. */
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

#include "hygiene.h"
#include "log.h"
#include "score.h"
#include "store.h"
#include "unit.h"

#define DAY SCORE_DAY_MS
static const int64_t NOW = 1800000000000LL;    /* 2027-01-15 */

static void
test_score_new_recipient(void **state)
{
	(void)state;
	struct engage_rec r;
	struct score_detail d;

	memset(&r, 0, sizeof(r));
	assert_int_equal(score_compute(&r, NOW, &d), 40);
	assert_true(d.days_since_engagement < 0);
	assert_true(d.recency == 0 && d.frequency == 0 && d.idle == 0);
}

static void
test_score_engaged(void **state)
{
	(void)state;
	struct engage_rec r;
	struct score_detail d;

	memset(&r, 0, sizeof(r));
	r.sends = 10;
	r.opens = 8;
	r.clicks = 3;
	r.first_seen = NOW - 300 * DAY;
	r.last_open = NOW - DAY / 2;
	r.last_click = NOW - DAY;
	score_compute(&r, NOW, &d);
	/* fresh, frequent: near the top */
	assert_true(d.score >= 95);
	assert_true(fabs(d.days_since_engagement - 0.5) < 1e-9);
	assert_true(fabs(d.engagements - 14.0) < 1e-9);
	assert_true(d.idle_sends == 0);

	/* the recency part halves every 30 days */
	struct score_detail d30, d60;
	r.last_open = r.last_click = NOW - 30 * DAY;
	score_compute(&r, NOW, &d30);
	r.last_open = r.last_click = NOW - 60 * DAY;
	score_compute(&r, NOW, &d60);
	assert_true(fabs(d30.recency - 22.5) < 1e-9);
	assert_true(fabs(d60.recency - 11.25) < 1e-9);
	assert_true(d60.frequency < d30.frequency);
	assert_true(d60.score < d30.score && d30.score < d.score);

	/* clicks weigh twice an open */
	struct engage_rec a = r, b = r;
	struct score_detail da, db;
	a.opens = 2;
	a.clicks = 0;
	b.opens = 0;
	b.clicks = 1;
	score_compute(&a, NOW, &da);
	score_compute(&b, NOW, &db);
	assert_true(fabs(da.frequency - db.frequency) < 1e-9);
}

static void
test_score_penalties(void **state)
{
	(void)state;
	struct engage_rec r;
	struct score_detail d;

	/* 20 sends and nothing back: 40 - 30 (1 - e^-2.5) = 12.46 */
	memset(&r, 0, sizeof(r));
	r.sends = 20;
	r.first_seen = NOW - 200 * DAY;
	assert_int_equal(score_compute(&r, NOW, &d), 12);
	assert_true(fabs(d.idle_sends - 20) < 1e-9);

	/* the penalty grows with the sends, never past 30 points */
	struct score_detail d1000;
	r.sends = 1000;
	score_compute(&r, NOW, &d1000);
	assert_true(d1000.idle < d.idle && d1000.idle >= -30.0);
	assert_int_equal(d1000.score, 10);

	/* two recent bounces: the full 20 points; fading after a month */
	memset(&r, 0, sizeof(r));
	r.bounces = 2;
	r.last_bounce = NOW - 1000;
	score_compute(&r, NOW, &d);
	assert_true(fabs(d.bounces + 20.0) < 0.01);
	assert_int_equal(d.score, 20);
	r.last_bounce = NOW - 60 * DAY;
	score_compute(&r, NOW, &d);
	assert_true(fabs(d.bounces + 5.0) < 1e-9);

	/* a complaint outweighs everything */
	memset(&r, 0, sizeof(r));
	r.opens = 50;
	r.clicks = 20;
	r.last_open = NOW;
	r.complaints = 1;
	assert_int_equal(score_compute(&r, NOW, &d), 0);

	/* clamped to 0..100 whatever the counts */
	memset(&r, 0, sizeof(r));
	r.opens = 1000000;
	r.clicks = 1000000;
	r.last_open = r.last_click = NOW + DAY;   /* clock skew: not negative days */
	assert_int_equal(score_compute(&r, NOW, &d), 100);
	assert_true(d.days_since_engagement == 0);
}

static const struct sunset_policy POLICY = { true, 120 * DAY, 5, 3 };

static void
test_sunset_rule(void **state)
{
	(void)state;
	struct engage_rec r;
	int64_t since;

	memset(&r, 0, sizeof(r));
	r.first_seen = NOW - 400 * DAY;
	r.sends = 12;
	r.opens = 3;
	r.last_open = NOW - 121 * DAY;

	/* inactive for 121 days after 12 sends: 3 re-engagement sends, then skip */
	assert_true(sunset_inactive(&r, NOW, &POLICY, &since));
	assert_true(since == r.last_open);
	assert_int_equal(sunset_decide(&r, NOW, &POLICY, 0), SUNSET_REENGAGE);
	assert_int_equal(sunset_decide(&r, NOW, &POLICY, 2), SUNSET_REENGAGE);
	assert_int_equal(sunset_decide(&r, NOW, &POLICY, 3), SUNSET_SKIP);
	assert_string_equal(sunset_verdict_name(SUNSET_SKIP), "sunset");

	/* 119 days: still active */
	r.last_open = NOW - 119 * DAY;
	assert_int_equal(sunset_decide(&r, NOW, &POLICY, 99), SUNSET_ACTIVE);

	/* a click counts as engagement as much as an open */
	r.last_open = NOW - 200 * DAY;
	r.last_click = NOW - 10 * DAY;
	assert_int_equal(sunset_decide(&r, NOW, &POLICY, 99), SUNSET_ACTIVE);

	/* fewer sends than min_sends: never sunset */
	memset(&r, 0, sizeof(r));
	r.first_seen = NOW - 400 * DAY;
	r.sends = 4;
	assert_int_equal(sunset_decide(&r, NOW, &POLICY, 99), SUNSET_ACTIVE);
	/* never engaged: counted from the first send */
	r.sends = 5;
	assert_int_equal(sunset_decide(&r, NOW, &POLICY, 3), SUNSET_SKIP);
	assert_true(sunset_inactive(&r, NOW, &POLICY, &since) && since == r.first_seen);
	r.first_seen = NOW - 100 * DAY;
	assert_int_equal(sunset_decide(&r, NOW, &POLICY, 3), SUNSET_ACTIVE);
	/* no times at all: nothing to judge */
	r.first_seen = 0;
	assert_int_equal(sunset_decide(&r, NOW, &POLICY, 3), SUNSET_ACTIVE);

	/* disabled, or no re-engagement sends allowed */
	struct sunset_policy off = POLICY, none = POLICY;
	off.enabled = false;
	none.reengage = 0;
	r.first_seen = NOW - 400 * DAY;
	assert_int_equal(sunset_decide(&r, NOW, &off, 3), SUNSET_ACTIVE);
	assert_int_equal(sunset_decide(&r, NOW, &none, 0), SUNSET_SKIP);
}

static void
test_bounce_risk(void **state)
{
	(void)state;
	struct engage_rec r;

	memset(&r, 0, sizeof(r));
	r.soft_bounces = 3;
	r.last_bounce = NOW - DAY;
	assert_true(score_bounce_risk(&r, 3));
	assert_false(score_bounce_risk(&r, 4));
	assert_false(score_bounce_risk(&r, 0));
	r.last_open = NOW;              /* opened since: the mailbox works */
	assert_false(score_bounce_risk(&r, 3));
	r.last_open = NOW - 2 * DAY;
	assert_true(score_bounce_risk(&r, 3));
}

static void
test_role_and_trap(void **state)
{
	(void)state;
	const char *role = NULL;
	struct engage_rec r;

	assert_true(score_role_address("Postmaster@example.com", &role));
	assert_string_equal(role, "postmaster");
	assert_true(score_role_address("abuse+reports@example.com", &role));
	assert_string_equal(role, "abuse");
	assert_true(score_role_address("no-reply@example.com", NULL));
	assert_false(score_role_address("abusers@example.com", NULL));
	assert_false(score_role_address("jane@abuse.example.com", NULL));
	assert_false(score_role_address("a@example.com", NULL));

	memset(&r, 0, sizeof(r));
	r.sends = 30;
	r.first_seen = NOW - 400 * DAY;
	assert_true(score_trap_suspect(&r, NOW, 365 * DAY, 1));
	assert_false(score_trap_suspect(&r, NOW, 365 * DAY, 0));   /* clean domain */
	assert_false(score_trap_suspect(&r, NOW, 500 * DAY, 1));   /* not old enough */
	r.opens = 1;
	assert_false(score_trap_suspect(&r, NOW, 365 * DAY, 1));   /* a person opened */
}

/* ---- hygiene: the rules with the store behind them ---- */

static char dir[256];

static int
setup_store(void **state)
{
	(void)state;
	unit_store_open(dir, sizeof(dir), "score", "store", 64 << 20);
	return 0;
}

static int
teardown_store(void **state)
{
	(void)state;
	store_close();
	unit_tmp_remove("score");
	return 0;
}

static const struct hygiene_conf HC = {
	.sunset = { true, 120 * DAY, 5, 3 },
	.bounce_risk_soft = 3,
	.bounce_risk_no_mx = 3 * DAY,
	.skip_role = true,
	.trap_age = 365 * DAY,
};

static void
test_hygiene_sunset_episodes(void **state)
{
	(void)state;
	struct engage_rec r;
	struct hygiene_verdict v;

	memset(&r, 0, sizeof(r));
	r.first_seen = NOW - 400 * DAY;
	r.sends = 10;
	r.last_open = NOW - 150 * DAY;

	/* three re-engagement sends, counted in the store, then skipped */
	for (uint32_t i = 1; i <= 3; i++) {
		hygiene_check("Lapsed@Example.com", &r, false, &HC, NOW, true, &v);
		assert_int_equal(v.skip, HYG_SEND);
		assert_int_equal(v.sunset, SUNSET_REENGAGE);
		assert_int_equal(v.reengage_sent, i);
		store_flush();
	}
	/* the key folds the domain case */
	hygiene_check("Lapsed@EXAMPLE.COM", &r, false, &HC, NOW, true, &v);
	assert_int_equal(v.skip, HYG_SUNSET);
	assert_string_equal(hygiene_skip_name(v.skip), "sunset");
	assert_non_null(strstr(v.detail, "150 days"));
	/* peeking records nothing; transactional mail is never skipped */
	hygiene_check("Lapsed@example.com", &r, true, &HC, NOW, true, &v);
	assert_int_equal(v.skip, HYG_SEND);

	/* it engages again, lapses again: a new episode, three new sends */
	r.last_open = NOW - 10 * DAY;
	hygiene_check("Lapsed@example.com", &r, false, &HC, NOW, true, &v);
	assert_int_equal(v.sunset, SUNSET_ACTIVE);
	int64_t later = NOW + 125 * DAY;
	r.sends += 5;
	hygiene_check("Lapsed@example.com", &r, false, &HC, later, true, &v);
	assert_int_equal(v.skip, HYG_SEND);
	assert_int_equal(v.sunset, SUNSET_REENGAGE);
	assert_int_equal(v.reengage_sent, 1);

	/* peek (record false) does not use up a send */
	store_flush();
	hygiene_check("Lapsed@example.com", &r, false, &HC, later, false, &v);
	hygiene_check("Lapsed@example.com", &r, false, &HC, later, false, &v);
	store_flush();
	hygiene_check("Lapsed@example.com", &r, false, &HC, later, false, &v);
	assert_int_equal(v.reengage_sent, 2);
}

static void
test_hygiene_bounce_role_trap(void **state)
{
	(void)state;
	struct engage_rec r;
	struct hygiene_verdict v;
	struct domain_health dh;

	memset(&r, 0, sizeof(r));
	r.first_seen = NOW - 10 * DAY;
	r.sends = 4;
	r.soft_bounces = 3;
	r.last_bounce = NOW - DAY;
	hygiene_check("full@example.org", &r, false, &HC, NOW, true, &v);
	assert_int_equal(v.skip, HYG_BOUNCE_RISK);
	assert_string_equal(hygiene_skip_name(v.skip), "bounce-risk");
	hygiene_check("full@example.org", &r, true, &HC, NOW, true, &v);
	assert_int_equal(v.skip, HYG_SEND);

	/* a domain seen without MX: skipped for bounce-risk-no-mx */
	memset(&r, 0, sizeof(r));
	hygiene_note_no_mx("Gone.Example", NOW - DAY);
	store_flush();
	assert_int_equal(hygiene_domain_get("gone.example", &dh), 1);
	assert_true(dh.no_mx == NOW - DAY);
	hygiene_check("a@gone.example", &r, false, &HC, NOW, true, &v);
	assert_int_equal(v.skip, HYG_BOUNCE_RISK);
	assert_non_null(strstr(v.detail, "no MX"));
	hygiene_check("a@gone.example", &r, false, &HC, NOW + 3 * DAY, true, &v);
	assert_int_equal(v.skip, HYG_SEND);

	/* role addresses, when configured */
	hygiene_check("postmaster@example.org", &r, false, &HC, NOW, true, &v);
	assert_int_equal(v.skip, HYG_ROLE);
	struct hygiene_conf keep = HC;
	keep.skip_role = false;
	hygiene_check("postmaster@example.org", &r, false, &keep, NOW, true, &v);
	assert_int_equal(v.skip, HYG_SEND);
	assert_string_equal(v.role, "postmaster");

	/* spam-trap suspicion: flagged, never skipped */
	r.sends = 20;
	r.first_seen = NOW - 500 * DAY;
	hygiene_check("old@traps.example", &r, false, &keep, NOW, true, &v);
	assert_false(v.trap_suspect);
	hygiene_note_trap("known-trap@Traps.Example", NOW - DAY);
	hygiene_note_trap("other-trap@traps.example", NOW);
	store_flush();
	hygiene_check("old@traps.example", &r, false, &keep, NOW, true, &v);
	assert_true(v.trap_suspect);
	assert_int_equal(v.dom.trap_hits, 2);
	assert_int_equal(v.skip, HYG_SEND);
}

int
main(void)
{
	log_open("/dev/null", LOG_ERR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_score_new_recipient),
		cmocka_unit_test(test_score_engaged),
		cmocka_unit_test(test_score_penalties),
		cmocka_unit_test(test_sunset_rule),
		cmocka_unit_test(test_bounce_risk),
		cmocka_unit_test(test_role_and_trap),
		cmocka_unit_test_setup_teardown(test_hygiene_sunset_episodes, setup_store, teardown_store),
		cmocka_unit_test_setup_teardown(test_hygiene_bounce_role_trap, setup_store, teardown_store),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
