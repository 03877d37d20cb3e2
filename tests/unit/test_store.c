/* Unit tests: the LMDB store — queued writes, batching, durability across
 * reopen, refusals, read transactions from many threads. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "store.h"
#include "unit.h"

static char dir[256];

static int
setup(void **state)
{
	(void)state;
	unit_store_open(dir, sizeof(dir), "store", "sub", 64 << 20);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	store_close();
	unit_tmp_remove("store");
	return 0;
}

static void
test_put_flush_get(void **state)
{
	(void)state;
	char v[32];
	size_t len = 0;

	assert_int_equal(store_get(DB_META, "k1", 2, v, sizeof(v), &len), 0);
	store_put(DB_META, "k1", 2, "hello", 5);
	store_flush();
	assert_int_equal(store_get(DB_META, "k1", 2, v, sizeof(v), &len), 1);
	assert_int_equal(len, 5);
	assert_memory_equal(v, "hello", 5);
	store_del(DB_META, "k1", 2);
	store_del(DB_META, "nothing", 7);   /* deleting a missing key is fine */
	store_flush();
	assert_int_equal(store_get(DB_META, "k1", 2, v, sizeof(v), &len), 0);
}

static int
count_up(MDB_txn *txn, void *arg)
{
	(void)arg;
	MDB_val k = { 7, "counter" }, v;
	uint64_t n = 0;
	int rc = mdb_get(txn, store_dbi(DB_META), &k, &v);
	if (rc == 0)
		memcpy(&n, v.mv_data, sizeof(n));
	n++;
	v.mv_size = sizeof(n);
	v.mv_data = &n;
	return mdb_put(txn, store_dbi(DB_META), &k, &v, 0);
}

static int ndone, nok;

static void
on_done(void *arg, bool ok)
{
	(void)arg;
	__atomic_add_fetch(&ndone, 1, __ATOMIC_SEQ_CST);
	if (ok)
		__atomic_add_fetch(&nok, 1, __ATOMIC_SEQ_CST);
}

static void
test_batched_read_modify_write(void **state)
{
	(void)state;
	struct store_stats before, after;
	store_get_stats(&before);
	ndone = nok = 0;
	for (int i = 0; i < 50000; i++)
		store_write(count_up, on_done, NULL);
	store_flush();
	assert_int_equal(ndone, 50000);
	assert_int_equal(nok, 50000);
	uint64_t n = 0;
	assert_int_equal(store_get(DB_META, "counter", 7, &n, sizeof(n), NULL), 1);
	assert_int_equal(n, 50000);
	store_get_stats(&after);
	/* 50,000 writes took a handful of transactions, not 50,000 */
	assert_true(after.commits - before.commits <= 50);
	assert_true(after.commits - before.commits >= 3);
}

static int
refuse(MDB_txn *txn, void *arg)
{
	(void)txn;
	(void)arg;
	return EINVAL;
}

static void
test_refusal_keeps_batch(void **state)
{
	(void)state;
	ndone = nok = 0;
	store_put(DB_META, "a", 1, "1", 1);
	store_write(refuse, on_done, NULL);
	store_put(DB_META, "b", 1, "2", 1);
	store_flush();
	assert_int_equal(ndone, 1);
	assert_int_equal(nok, 0);
	char v[4];
	assert_int_equal(store_get(DB_META, "a", 1, v, sizeof(v), NULL), 1);
	assert_int_equal(store_get(DB_META, "b", 1, v, sizeof(v), NULL), 1);
	assert_false(store_write_wait(refuse, NULL));
	assert_true(store_write_wait(count_up, NULL));
}

static void
test_durable_across_reopen(void **state)
{
	(void)state;
	char err[256];
	store_put(DB_SUPPRESS, "x@example.com", 13, "r", 1);
	store_close();
	assert_int_equal(store_open(dir, 64 << 20, err, sizeof(err)), 0);
	char v[4];
	assert_int_equal(store_get(DB_SUPPRESS, "x@example.com", 13, v, sizeof(v), NULL), 1);
	struct store_stats st;
	store_get_stats(&st);
	assert_int_equal(st.entries[DB_SUPPRESS], 1);
	assert_true(st.used_bytes > 0);
}

static void *
reader(void *arg)
{
	long found = 0;
	(void)arg;
	for (int i = 0; i < 20000; i++) {
		char key[32], v[32];
		int n = snprintf(key, sizeof(key), "key%d", i % 100);
		if (store_get(DB_RCPT, key, (size_t)n, v, sizeof(v), NULL) == 1)
			found++;
	}
	return (void *)found;
}

static void
test_concurrent_readers(void **state)
{
	(void)state;
	for (int i = 0; i < 100; i++) {
		char key[32];
		int n = snprintf(key, sizeof(key), "key%d", i);
		store_put(DB_RCPT, key, (size_t)n, "v", 1);
	}
	store_flush();
	pthread_t t[6];
	for (int i = 0; i < 6; i++)
		pthread_create(&t[i], NULL, reader, NULL);
	for (int i = 0; i < 6; i++) {
		void *r;
		pthread_join(t[i], &r);
		assert_int_equal((long)r, 20000);
	}
}

static void
test_bad_directory(void **state)
{
	(void)state;
	char err[256];
	store_close();
	assert_int_equal(store_open("/proc/nope/store", 64 << 20, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "/proc/nope/store"));
	assert_false(store_is_open());
	assert_false(store_write_wait(count_up, NULL));
	assert_int_equal(store_open(dir, 64 << 20, err, sizeof(err)), 0);
}

int
main(void)
{
	log_open("/dev/null", LOG_ERR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_flush_get, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batched_read_modify_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusal_keeps_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_durable_across_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_readers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_directory, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
