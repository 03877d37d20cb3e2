/* Unit tests: the token bucket behind max-msg-rate and max-connect-rate. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "site.h"

static void
test_unlimited(void **state)
{
	struct tbucket b;
	struct rate r = { 0, 3600000 };

	(void)state;
	tbucket_init(&b, &r);
	for (int i = 0; i < 100000; i++)
		assert_int_equal(tbucket_take(&b, 1000), 0);
}

static void
test_sixty_per_minute(void **state)
{
	struct tbucket b;
	struct rate r = { 60, 60000 };
	int64_t t = 1000000;
	int got = 0;

	(void)state;
	tbucket_init(&b, &r);
	/* a burst of one second's worth, then one token a second */
	assert_int_equal(tbucket_take(&b, t), 0);
	int64_t wait = tbucket_take(&b, t);
	assert_true(wait > 900 && wait <= 1001);
	/* over a simulated minute, polled every 10 ms: 60 tokens (+1 burst) */
	for (int64_t now = t; now < t + 60000; now += 10)
		if (tbucket_take(&b, now) == 0)
			got++;
	assert_true(got >= 59 && got <= 61);
}

static void
test_burst_is_capped(void **state)
{
	struct tbucket b;
	struct rate r = { 3600, 3600000 };      /* 3600/h = 1/s */

	(void)state;
	tbucket_init(&b, &r);
	assert_int_equal(tbucket_take(&b, 5000), 0);
	/* a long idle period does not bank more than the burst */
	int n = 0;
	while (tbucket_take(&b, 5000 + 3600000) == 0)
		n++;
	assert_true(n >= 1 && n <= 2);
}

static void
test_fast_rate_has_burst(void **state)
{
	struct tbucket b;
	struct rate r = { 100, 1000 };          /* 100/s: burst of 100 */
	int n = 0;

	(void)state;
	tbucket_init(&b, &r);
	while (tbucket_take(&b, 42) == 0)
		n++;
	assert_int_equal(n, 100);
	int64_t wait = tbucket_take(&b, 42);
	assert_true(wait >= 1 && wait <= 11);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unlimited),
		cmocka_unit_test(test_sixty_per_minute),
		cmocka_unit_test(test_burst_is_capped),
		cmocka_unit_test(test_fast_rate_has_burst),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
