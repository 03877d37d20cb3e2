/*
 * warmup.c: schedule parsing (day lines, files, every error), the UTC day
 * arithmetic (dates, midnight, the schedule day), the cap that applies to a
 * provider (named, "*", none; a completed warm-up), the config directives,
 * the built-in schedule being a byte for byte copy of
 * conf/warmup-default.conf, and the counters: reservations stop at the cap,
 * and a fresh process (counters dropped) finds the day's count in the store.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "conf.h"
#include "store.h"
#include "util.h"
#include "warmup.h"
#include "unit.h"

#define DAY_MS 86400000LL

static char errbuf[2048];

static struct warmup_schedule *
parse(const char *text)
{
	struct warmup_schedule *s = warmup_schedule_new("t");

	errbuf[0] = '\0';
	if (warmup_schedule_parse(s, text, errbuf, sizeof(errbuf)) < 0) {
		warmup_schedule_free(s);
		return NULL;
	}
	return s;
}

static void
parse_fails(const char *text, const char *want)
{
	struct warmup_schedule *s = parse(text);

	if (s != NULL) {
		warmup_schedule_free(s);
		fail_msg("parsed: %s", text);
	}
	assert_string_equal(errbuf, want);
}

/* Schedules */

static void
test_parse_days(void **state)
{
	(void)state;
	struct warmup_schedule *s = parse(
	    "# comment line\n"
	    "\n"
	    "day 1 gmail 50 microsoft 40 * 200   # trailing comment\n"
	    "day 3\tgmail 100 * unlimited\r\n"
	    "day 10 Yahoo 0\n");
	assert_non_null(s);
	assert_int_equal(s->ndays, 3);
	assert_int_equal(s->days[0].day, 1);
	assert_int_equal(s->days[0].line, 3);
	assert_int_equal(s->days[0].ncaps, 3);
	assert_string_equal(s->days[0].caps[1].provider, "microsoft");
	assert_int_equal(s->days[0].caps[1].cap, 40);
	assert_int_equal(s->days[1].day, 3);
	assert_true(s->days[1].caps[1].cap == WARMUP_UNLIMITED);
	assert_int_equal(s->days[2].caps[0].cap, 0);
	warmup_schedule_free(s);
}

static void
test_parse_errors(void **state)
{
	(void)state;
	parse_fails("", "0: no \"day\" lines");
	parse_fails("# only a comment\n\n", "2: no \"day\" lines");
	parse_fails("days 1 gmail 5\n", "1: expected \"day N PROVIDER CAP ...\", not \"days\"");
	parse_fails("day 2 gmail 5\n", "1: day: the first listed day must be day 1, not day 2");
	parse_fails("day 1 gmail 5\nday 1 gmail 6\n", "2: day 1 comes after day 1: days must ascend");
	parse_fails("day 1 gmail 5\nday 4 gmail 6\nday 3 gmail 7\n",
	    "3: day 3 comes after day 4: days must ascend");
	parse_fails("day 0 gmail 5\n", "1: day: \"0\" is not a day number (1-3650)");
	parse_fails("day 3651 gmail 5\n", "1: day: \"3651\" is not a day number (1-3650)");
	parse_fails("day x gmail 5\n", "1: day: \"x\" is not a day number (1-3650)");
	parse_fails("day 1\n", "1: day: expected \"day N PROVIDER CAP [PROVIDER CAP ...]\"");
	parse_fails("day 1 gmail\n", "1: day: expected \"day N PROVIDER CAP [PROVIDER CAP ...]\"");
	parse_fails("day 1 gmail 5 yahoo\n",
	    "1: day: expected \"day N PROVIDER CAP [PROVIDER CAP ...]\"");
	parse_fails("day 1 gmail -5\n",
	    "1: day 1: gmail: cap \"-5\" is not a number (0-1000000000) or unlimited");
	parse_fails("day 1 gmail 1000000001\n",
	    "1: day 1: gmail: cap \"1000000001\" is not a number (0-1000000000) or unlimited");
	parse_fails("day 1 gmail 5 GMAIL 6\n", "1: day 1: provider GMAIL is named twice");
}

/* conf/warmup-default.conf and the compiled-in copy are the same bytes. */
static void
test_builtin_matches_file(void **state)
{
	(void)state;
	unit_builtin_matches_file("warmup-default.conf", warmup_default_text, "warmup_default_text", "warmup.c");
}

/* The shipped plan: 30 listed days, every column rising, then complete. */
static void
test_default_schedule(void **state)
{
	(void)state;
	struct warmup_schedule *s = parse(warmup_default_text);
	assert_non_null(s);
	assert_int_equal(s->ndays, 30);
	for (int i = 0; i < s->ndays; i++) {
		assert_int_equal(s->days[i].day, i + 1);
		assert_int_equal(s->days[i].ncaps, 4);
		if (i > 0)
			for (int k = 0; k < 4; k++) {
				assert_string_equal(s->days[i].caps[k].provider,
				    s->days[i - 1].caps[k].provider);
				assert_true(s->days[i].caps[k].cap > s->days[i - 1].caps[k].cap);
			}
	}
	const struct warmup_day *d1 = warmup_schedule_day(s, 1);
	assert_int_equal(warmup_day_cap(d1, "gmail")->cap, 50);
	assert_int_equal(warmup_day_cap(d1, "microsoft")->cap, 50);
	assert_int_equal(warmup_day_cap(d1, "yahoo")->cap, 50);
	assert_int_equal(warmup_day_cap(d1, "mx:mx.example.net")->cap, 200);
	int64_t total = 0;
	const struct warmup_day *d30 = warmup_schedule_day(s, 30);
	for (int k = 0; k < d30->ncaps; k++)
		total += d30->caps[k].cap;
	assert_int_equal(total, 1000000);
	assert_null(warmup_schedule_day(s, 31));
	warmup_schedule_free(s);
}

static void
test_caps_lookup(void **state)
{
	(void)state;
	struct warmup_schedule *s = parse(
	    "day 1 gmail 10 * 20\n"
	    "day 4 gmail 30\n"
	    "day 6 * 5 yahoo unlimited\n");
	assert_non_null(s);

	/* a listed day's caps hold until the next listed day */
	assert_int_equal(warmup_schedule_day(s, 1)->day, 1);
	assert_int_equal(warmup_schedule_day(s, 3)->day, 1);
	assert_int_equal(warmup_schedule_day(s, 4)->day, 4);
	assert_int_equal(warmup_schedule_day(s, 5)->day, 4);
	assert_int_equal(warmup_schedule_day(s, 6)->day, 6);
	/* after the last listed day: complete */
	assert_null(warmup_schedule_day(s, 7));
	assert_null(warmup_schedule_day(s, 1000));

	const struct warmup_day *d = warmup_schedule_day(s, 2);
	/* named (case-insensitively), else "*" */
	assert_string_equal(warmup_day_cap(d, "gmail")->provider, "gmail");
	assert_int_equal(warmup_day_cap(d, "GMail")->cap, 10);
	assert_string_equal(warmup_day_cap(d, "microsoft")->provider, "*");
	assert_int_equal(warmup_day_cap(d, "microsoft")->cap, 20);
	/* a site of no provider (MX rollup, static route) counts under "*" */
	assert_string_equal(warmup_day_cap(d, NULL)->provider, "*");
	/* a day without "*": other destinations have no cap that day */
	d = warmup_schedule_day(s, 4);
	assert_int_equal(warmup_day_cap(d, "gmail")->cap, 30);
	assert_null(warmup_day_cap(d, "yahoo"));
	assert_null(warmup_day_cap(d, NULL));
	d = warmup_schedule_day(s, 6);
	assert_true(warmup_day_cap(d, "yahoo")->cap == WARMUP_UNLIMITED);
	assert_int_equal(warmup_day_cap(d, "gmail")->cap, 5);
	warmup_schedule_free(s);
}

/* Days */

static void
test_dates(void **state)
{
	(void)state;
	int64_t day;
	char buf[16];

	assert_int_equal(warmup_parse_date("1970-01-01", &day), 0);
	assert_int_equal(day, 0);
	assert_int_equal(warmup_parse_date("2026-11-23", &day), 0);
	assert_int_equal(day, 20780);
	warmup_fmt_date(buf, sizeof(buf), day);
	assert_string_equal(buf, "2026-11-23");
	assert_int_equal(warmup_parse_date("2024-02-29", &day), 0);
	warmup_fmt_date(buf, sizeof(buf), day + 1);
	assert_string_equal(buf, "2024-03-01");
	assert_int_equal(warmup_parse_date("2000-02-29", &day), 0);
	assert_int_equal(warmup_parse_date("2025-12-31", &day), 0);
	warmup_fmt_date(buf, sizeof(buf), day + 1);
	assert_string_equal(buf, "2026-01-01");
	/* every day of four years round-trips */
	assert_int_equal(warmup_parse_date("2024-01-01", &day), 0);
	for (int64_t d = day; d < day + 4 * 366; d++) {
		int64_t back;
		warmup_fmt_date(buf, sizeof(buf), d);
		assert_int_equal(warmup_parse_date(buf, &back), 0);
		assert_int_equal(back, d);
	}
	static const char *const bad[] = {
		"2023-02-29", "1900-02-29", "2026-13-01", "2026-00-10", "2026-04-31",
		"2026-1-01", "2026/01/01", "26-01-01", "2026-01-01x", "", "1969-12-31",
		"2026-01-0a", "+026-01-01",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (warmup_parse_date(bad[i], &day) == 0)
			fail_msg("\"%s\" parsed", bad[i]);
}

static void
test_utc_midnight(void **state)
{
	(void)state;
	int64_t d, midnight;

	assert_int_equal(warmup_parse_date("2026-11-24", &d), 0);
	midnight = d * DAY_MS;
	/* the last millisecond of a day and the first of the next */
	assert_int_equal(warmup_today(midnight - 1), d - 1);
	assert_int_equal(warmup_today(midnight), d);
	assert_int_equal(warmup_today(midnight + DAY_MS - 1), d);
	assert_int_equal(warmup_next_midnight(midnight - 1), midnight);
	assert_int_equal(warmup_next_midnight(midnight), midnight + DAY_MS);
	assert_int_equal(warmup_next_midnight(midnight + 12 * 3600000LL), midnight + DAY_MS);

	/* a warm-up that started yesterday is on day 1 until midnight, then day 2 */
	int64_t start = d - 1;
	assert_int_equal(warmup_day_number(start, warmup_today(midnight - 1)), 1);
	assert_int_equal(warmup_day_number(start, warmup_today(midnight)), 2);
	assert_int_equal(warmup_day_number(start, start + 29), 30);
	/* a start in the future counts as day 1 */
	assert_int_equal(warmup_day_number(d + 5, d), 1);
}

/* Config */

static struct config *
load(const char *text)
{
	errbuf[0] = '\0';
	return conf_load_string(text, "t.conf", errbuf, sizeof(errbuf));
}

static void
test_conf_sources(void **state)
{
	(void)state;
	struct config *c = load(
	    "source s1 { address 127.0.0.2 warmup default warmup-start 2026-11-20 }\n"
	    "source s2 { address 127.0.0.3 warmup slow }\n"
	    "source s3 { address 127.0.0.4 warmup off }\n"
	    "source s4 { address 127.0.0.5 }\n"
	    "pool default { source s1 source s2 source s3 source s4 }\n"
	    "warmup-schedule slow {\n"
	    "    day 1 gmail 5 * 10\n"
	    "    day 2 gmail 8\n"
	    "}\n");
	assert_non_null(c);
	assert_int_equal(c->nwarmup, 2);
	struct source_conf *s1 = conf_source(c, "s1"), *s2 = conf_source(c, "s2");
	assert_non_null(s1->wsched);
	assert_string_equal(s1->wsched->name, "default");
	assert_int_equal(s1->wsched->ndays, 30);
	assert_true(s1->has_warmup_start);
	int64_t d;
	warmup_parse_date("2026-11-20", &d);
	assert_int_equal(s1->warmup_start, d);
	assert_string_equal(s2->wsched->name, "slow");
	assert_int_equal(s2->wsched->ndays, 2);
	assert_false(s2->has_warmup_start);
	assert_null(conf_source(c, "s3")->wsched);
	assert_null(conf_source(c, "s4")->wsched);
	conf_free(c);

	/* a schedule named "default" replaces the built-in one */
	c = load("source s1 { warmup default }\n"
	    "warmup-schedule default { day 1 * 7 }\n");
	assert_non_null(c);
	assert_int_equal(conf_source(c, "s1")->wsched->ndays, 1);
	assert_int_equal(conf_source(c, "s1")->wsched->days[0].caps[0].cap, 7);
	conf_free(c);
}

static void
test_conf_errors(void **state)
{
	(void)state;
	struct config *c = load(
	    "source s1 { warmup nope }\n"
	    "source s2 { warmup-start 2026-11-20 }\n"
	    "source s3 { warmup default warmup-start 2026-02-30 }\n"
	    "source s4 { warmup default warmup off }\n"
	    "warmup-schedule a { day 2 gmail 5 }\n"
	    "warmup-schedule a { day 1 gmail 5 }\n"
	    "warmup-schedule b { file /nonexistent/warmup.conf }\n"
	    "warmup-schedule c {\n"
	    "    day 1 gmail five\n"
	    "}\n"
	    "day 1 gmail 5\n");
	assert_null(c);
	assert_string_equal(errbuf,
	    "t.conf:3: warmup-start: \"2026-02-30\": expected a date YYYY-MM-DD\n"
	    "t.conf:4: warmup is given twice in a source block\n"
	    "t.conf:5: day: the first listed day must be day 1, not day 2\n"
	    "t.conf:6: warmup-schedule a is defined twice (first at t.conf:5)\n"
	    "t.conf:7: file: cannot read /nonexistent/warmup.conf: No such file or directory\n"
	    "t.conf:9: day 1: gmail: cap \"five\" is not a number (0-1000000000) or unlimited\n"
	    "t.conf:11: day is not allowed in the top level\n"
	    "t.conf:5: warmup-schedule a has no day lines\n"
	    "t.conf:7: warmup-schedule b has no day lines\n"
	    "t.conf:8: warmup-schedule c has no day lines\n"
	    "t.conf:1: source s1: warmup: no warmup-schedule named \"nope\"\n"
	    "t.conf:2: source s2: warmup-start needs warmup");
}

static void
test_conf_file(void **state)
{
	(void)state;
	char path[] = "/tmp/sluice-test-warmup.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *text = "# mine\nday 1 gmail 3 * 4\nday 2 gmail 6\n";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);

	char *conf_text = xasprintf("source s1 { warmup mine }\n"
	    "warmup-schedule mine { file %s\n day 5 gmail 9 }\n", path);
	struct config *c = load(conf_text);
	free(conf_text);
	assert_non_null(c);
	const struct warmup_schedule *s = conf_source(c, "s1")->wsched;
	assert_int_equal(s->ndays, 3);
	assert_int_equal(s->days[2].day, 5);
	conf_free(c);

	/* an error in the file names the file and its line */
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	text = "day 1 gmail 3\nday one gmail 4\n";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	conf_text = xasprintf("warmup-schedule mine {\n file %s\n}\n", path);
	c = load(conf_text);
	free(conf_text);
	assert_null(c);
	char *want = xasprintf("t.conf:2: file: %s:2: day: \"one\" is not a day number (1-3650)", path);
	assert_string_equal(errbuf, want);
	free(want);
	unlink(path);
}

/* Counters: reserve up to the cap, keep the count across a "restart". */

static char dir[256];

static int
store_setup(void **state)
{
	(void)state;
	unit_store_open(dir, sizeof(dir), "warmup", "store", 64 << 20);
	return 0;
}

static int
store_teardown(void **state)
{
	(void)state;
	store_close();
	warmup_shutdown();
	conf_free_all();
	unit_tmp_remove("warmup");
	return 0;
}

static void
test_take_and_persist(void **state)
{
	(void)state;
	char date[16], *text;

	/* day 2 today: gmail 4, others 6 */
	warmup_fmt_date(date, sizeof(date), warmup_today(now_ms()) - 1);
	text = xasprintf(
	    "source s1 { address 127.0.0.2 warmup t warmup-start %s }\n"
	    "source s2 { address 127.0.0.3 warmup t }\n"
	    "source warm { address 127.0.0.4 }\n"
	    "pool default { source s1 source warm }\n"
	    "pool cold { source s1 source s2 }\n"
	    "warmup-schedule t { day 1 gmail 2 * 3\n day 2 gmail 4 * 6\n day 3 gmail 8 }\n",
	    date);
	struct config *c = load(text);
	free(text);
	assert_non_null(c);
	conf_install(c);
	assert_true(warmup_active());

	assert_true(warmup_room("s1", "gmail") == 4);
	assert_int_equal(warmup_take("s1", "gmail", "gmail", 3), 3);
	/* only what is left of the cap */
	assert_int_equal(warmup_take("s1", "gmail", "gmail", 3), 1);
	assert_int_equal(warmup_take("s1", "gmail", "gmail", 1), 0);
	assert_true(warmup_room("s1", "gmail") == 0);
	/* "*" is one count for every other destination */
	assert_int_equal(warmup_take("s1", NULL, "mx:a", 4), 4);
	assert_int_equal(warmup_take("s1", "yahoo", "yahoo", 4), 2);
	assert_true(warmup_room("s1", "microsoft") == 0);
	/* a source without warm-up is never limited */
	assert_true(warmup_room("warm", "gmail") == INT64_MAX);
	assert_int_equal(warmup_take("warm", "gmail", "gmail", 100), 100);
	assert_true(warmup_room("", "gmail") == INT64_MAX);

	/* overflow: the pool's other member with room, never the full one */
	for (int i = 0; i < 20; i++)
		assert_string_equal(warmup_pick_source(NULL, "s1", "gmail"), "warm");
	/* s2 has not sent yet: day 1 for it */
	assert_true(warmup_room("s2", "gmail") == 2);
	assert_string_equal(warmup_pick_source("cold", "s1", "gmail"), "s2");
	assert_int_equal(warmup_take("s2", "gmail", "gmail", 5), 2);
	assert_null(warmup_pick_source("cold", "s1", "gmail"));

	/* the counts reach the store; a new process (counters dropped) finds them */
	store_flush();
	warmup_shutdown();
	assert_true(warmup_room("s1", "gmail") == 0);
	assert_true(warmup_room("s1", NULL) == 0);
	assert_int_equal(warmup_take("s1", "gmail", "gmail", 1), 0);
	/* s2 started today (kept in the store) and used its day-1 gmail cap */
	assert_true(warmup_room("s2", "gmail") == 0);
	assert_true(warmup_room("s2", NULL) == 3);

	json_t *j = warmup_status_json();
	json_t *srcs = json_object_get(j, "sources");
	assert_int_equal(json_array_size(srcs), 3);
	json_t *s1 = json_array_get(srcs, 0);
	assert_string_equal(json_string_value(json_object_get(s1, "schedule")), "t");
	assert_int_equal(json_integer_value(json_object_get(s1, "day")), 2);
	assert_int_equal(json_integer_value(json_object_get(s1, "days")), 3);
	assert_string_equal(json_string_value(json_object_get(s1, "start_from")), "config");
	json_t *g = json_array_get(json_object_get(s1, "providers"), 0);
	assert_string_equal(json_string_value(json_object_get(g, "provider")), "gmail");
	assert_int_equal(json_integer_value(json_object_get(g, "cap")), 4);
	assert_int_equal(json_integer_value(json_object_get(g, "count")), 4);
	assert_true(json_is_true(json_object_get(g, "reached")));
	json_t *s2 = json_array_get(srcs, 1);
	assert_string_equal(json_string_value(json_object_get(s2, "start_from")), "store");
	assert_int_equal(json_integer_value(json_object_get(s2, "day")), 1);
	json_t *w = json_array_get(srcs, 2);
	assert_true(json_is_null(json_object_get(w, "schedule")));
	assert_true(json_is_true(json_object_get(w, "complete")));
	json_decref(j);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_days),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_builtin_matches_file),
		cmocka_unit_test(test_default_schedule),
		cmocka_unit_test(test_caps_lookup),
		cmocka_unit_test(test_dates),
		cmocka_unit_test(test_utc_midnight),
		cmocka_unit_test(test_conf_sources),
		cmocka_unit_test(test_conf_errors),
		cmocka_unit_test(test_conf_file),
		cmocka_unit_test_setup_teardown(test_take_and_persist, store_setup, store_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
