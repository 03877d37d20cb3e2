/*
 * qalloc.c: blocks of every size class are aligned, distinct and keep
 * their bytes; freed blocks are reused; slabs left empty are given back;
 * large blocks go to malloc; threads allocating and freeing at once (the
 * workers and the scanner threads do) corrupt nothing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "qalloc.h"

static void
test_classes(void **state)
{
	enum { N = 3000 };
	static unsigned char *p[N];
	static size_t sz[N];
	size_t mapped0, used0, mapped, used;

	(void)state;
	qalloc_stats(&mapped0, &used0);
	for (int i = 0; i < N; i++) {
		sz[i] = (size_t)(i % QALLOC_MAX) + 1;
		p[i] = qalloc(sz[i]);
		assert_non_null(p[i]);
		assert_int_equal((uintptr_t)p[i] % 16, 0);
		memset(p[i], i & 0xff, sz[i]);
	}
	qalloc_stats(&mapped, &used);
	assert_true(used - used0 >= N);
	assert_true(mapped > mapped0);
	/* no block overlaps another: each still holds its own bytes */
	for (int i = 0; i < N; i++)
		for (size_t k = 0; k < sz[i]; k++)
			assert_int_equal(p[i][k], i & 0xff);
	for (int i = 0; i < N; i++)
		qfree(p[i], sz[i]);
	qalloc_stats(&mapped, &used);
	assert_int_equal(used, used0);
	/* at most one slab kept per class */
	assert_true(mapped <= mapped0 + (size_t)(QALLOC_MAX / 16) * 256 * 1024);
}

static void
test_reuse_and_release(void **state)
{
	enum { N = 20000 };
	static void *p[N];
	size_t mapped0, used0, mapped, used;

	(void)state;
	qalloc_stats(&mapped0, &used0);
	/* a freed block is the next one of its class */
	void *a = qalloc(300);
	qfree(a, 300);
	void *b = qalloc(290);          /* same 16-byte class */
	assert_ptr_equal(a, b);
	qfree(b, 290);
	/* many slabs' worth, then all freed: all but one slab returned */
	for (int i = 0; i < N; i++)
		p[i] = qalloc(320);
	qalloc_stats(&mapped, &used);
	assert_true(mapped + 256 * 1024 >= mapped0 + (size_t)N * 320);   /* a kept slab may hold some */
	for (int i = 0; i < N; i++)
		qfree(p[i], 320);
	qalloc_stats(&mapped, &used);
	assert_int_equal(used, used0);
	assert_true(mapped <= mapped0 + 256 * 1024);
	/* large blocks: malloc's */
	char *big = qalloc(QALLOC_MAX + 1);
	memset(big, 1, QALLOC_MAX + 1);
	qfree(big, QALLOC_MAX + 1);
	qfree(NULL, 10);
}

#define THREADS 4
#define ROUNDS 200000

static void *
churn(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	enum { LIVE = 512 };
	unsigned char *p[LIVE] = { 0 };
	size_t sz[LIVE] = { 0 };
	bool ok = true;

	for (int r = 0; r < ROUNDS; r++) {
		int i = (int)(rand_r(&seed) % LIVE);
		if (p[i]) {
			for (size_t k = 0; k < sz[i]; k++)
				ok &= p[i][k] == (unsigned char)(i ^ (int)sz[i]);
			qfree(p[i], sz[i]);
		}
		sz[i] = 1 + rand_r(&seed) % 600;
		p[i] = qalloc(sz[i]);
		memset(p[i], i ^ (int)sz[i], sz[i]);
	}
	for (int i = 0; i < LIVE; i++)
		if (p[i])
			qfree(p[i], sz[i]);
	return ok ? arg : NULL;
}

static void
test_threads(void **state)
{
	pthread_t t[THREADS];
	size_t mapped0, used0, mapped, used;

	(void)state;
	qalloc_stats(&mapped0, &used0);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(i + 1)), 0);
	for (int i = 0; i < THREADS; i++) {
		void *rv;
		assert_int_equal(pthread_join(t[i], &rv), 0);
		assert_ptr_equal(rv, (void *)(uintptr_t)(i + 1));
	}
	qalloc_stats(&mapped, &used);
	assert_int_equal(used, used0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classes),
		cmocka_unit_test(test_reuse_and_release),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
