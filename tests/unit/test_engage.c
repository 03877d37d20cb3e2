/* Unit tests: engagement records — the compact encoding, events applied by
 * the store writer (counters, last times, the decayed histogram), segment
 * membership bringing a member's history into the segment's prior, and the
 * global prior. */
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

#include "engage.h"
#include "store.h"
#include "sto.h"

#define H STO_HOUR_MS
#define MON 1795392000000LL     /* Monday 2026-11-23 00:00 UTC */

static char dir[256];

static int
setup(void **state)
{
	char err[256];
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/sluice-test-engage.%ld", (long)getpid());
	assert_int_equal(store_open(dir, 64 << 20, err, sizeof(err)), 0);
	return 0;
}

static int
teardown(void **state)
{
	char cmd[300];
	(void)state;
	store_close();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static void
test_encoding(void **state)
{
	struct engage_rec r, back;
	unsigned char buf[ENGAGE_MAX_ENCODED];
	(void)state;

	memset(&r, 0, sizeof(r));
	r.sends = 7;
	r.opens = 3;
	r.events = 4;
	r.last_open = MON + 5000;
	r.hist_time = MON;
	size_t n = engage_encode(&r, buf);
	assert_int_equal(n, 72);        /* no history: the fixed part only */
	r.hist[43] = 12.5f;
	r.hist[44] = 0.25f;
	r.hist[167] = 3;
	n = engage_encode(&r, buf);
	assert_int_equal(n, 72 + 3 * 3);
	assert_int_equal(engage_decode(buf, n, &back), 0);
	assert_int_equal(back.sends, 7);
	assert_int_equal(back.opens, 3);
	assert_int_equal(back.events, 4);
	assert_int_equal(back.last_open, MON + 5000 - 5000 % 1000);   /* seconds on disk */
	assert_true(fabsf(back.hist[43] - 12.5f) < 12.5f / 30000);
	assert_true(fabsf(back.hist[44] - 0.25f) < 12.5f / 30000);
	assert_true(fabsf(back.hist[167] - 3) < 12.5f / 30000);
	assert_true(back.hist[0] == 0);
	/* every slot in use: the largest record */
	for (int i = 0; i < ENGAGE_SLOTS; i++)
		r.hist[i] = (float)(i + 1);
	assert_int_equal(engage_encode(&r, buf), ENGAGE_MAX_ENCODED);
	/* damaged records are refused */
	assert_int_equal(engage_decode(buf, 40, &back), -1);
	buf[0] = 99;
	assert_int_equal(engage_decode(buf, ENGAGE_MAX_ENCODED, &back), -1);
}

static void
test_events_and_priors(void **state)
{
	struct engage_rec r;
	char seg[64];
	(void)state;

	assert_int_equal(engage_get("Ann@Example.test", &r), 0);
	/* history before membership */
	for (int i = 0; i < 12; i++)
		engage_note("ann@example.test", EV_OPEN, MON + 24 * H + 19 * H + i * 60000, "c1");
	engage_note("ANN@example.test", EV_CLICK, MON + 43 * H, NULL);
	engage_note("ann@example.test", EV_SEND, MON, "c1");
	engage_note("ann@example.test", EV_BOUNCE, MON + 1000, "c1");
	engage_note("ann@example.test", EV_COMPLAINT, MON + 2000, NULL);
	store_flush();
	assert_int_equal(engage_get("ann@EXAMPLE.test", &r), 1);
	assert_int_equal(r.opens, 12);
	assert_int_equal(r.clicks, 1);
	assert_int_equal(r.events, 13);
	assert_int_equal(r.sends, 1);
	assert_int_equal(r.bounces, 1);
	assert_int_equal(r.complaints, 1);
	assert_int_equal(r.last_send, MON);
	assert_int_equal(r.last_click, MON + 43 * H);
	assert_true(fabs(r.hist[43] - 13) < 0.01);
	assert_int_equal(r.first_seen, MON);
	/* global prior has them; no segment yet */
	assert_int_equal(engage_global_get(&r), 1);
	assert_true(fabs(r.hist[43] - 13) < 0.01);
	assert_int_equal(engage_get_segment("ann@example.test", seg, sizeof(seg)), 0);
	assert_int_equal(engage_segment_get("evening", &r), 0);
	/* joining a segment brings the history into its prior; later events add */
	engage_set_segment("ann@example.test", "evening");
	store_flush();
	assert_int_equal(engage_get_segment("Ann@example.test", seg, sizeof(seg)), 1);
	assert_string_equal(seg, "evening");
	assert_int_equal(engage_segment_get("evening", &r), 1);
	assert_true(fabs(r.hist[43] - 13) < 0.01);
	engage_note("ann@example.test", EV_OPEN, MON + 7 * H, NULL);
	engage_set_segment("ann@example.test", "evening");     /* again: no double count */
	store_flush();
	assert_int_equal(engage_segment_get("evening", &r), 1);
	assert_true(fabs(r.hist[43] - 13) < 0.01 && fabs(r.hist[7] - 1) < 0.05);
	/* moving: the old membership goes */
	engage_set_segment("ann@example.test", "morning");
	store_flush();
	assert_int_equal(engage_get_segment("ann@example.test", seg, sizeof(seg)), 1);
	assert_string_equal(seg, "morning");
	char key[64] = "evening";
	size_t klen = strlen(key) + 1;
	memcpy(key + klen, "ann@example.test", 16);
	char v[4];
	assert_int_equal(store_get(DB_SEGMEMBER, key, klen + 16, v, sizeof(v), NULL), 0);
	memcpy(key, "morning", 8);
	assert_int_equal(store_get(DB_SEGMEMBER, key, klen + 16, v, sizeof(v), NULL), 1);
}

static void
test_types(void **state)
{
	enum engage_type t;
	(void)state;

	assert_int_equal(engage_type_parse("open", &t), 0);
	assert_int_equal(t, EV_OPEN);
	assert_int_equal(engage_type_parse("bounce", &t), 0);
	assert_int_equal(t, EV_BOUNCE);
	assert_int_equal(engage_type_parse("opened", &t), -1);
	assert_string_equal(engage_type_name(EV_CONVERSION), "conversion");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encoding),
		cmocka_unit_test(test_types),
		cmocka_unit_test_setup_teardown(test_events_and_priors, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
