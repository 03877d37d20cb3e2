/*
 * suppress-bench: suppression lookups per second, the figure that counts
 * at injection (one suppress_check() per recipient: normalisation and up
 * to three point reads in one read transaction), against a real store.
 *
 *   suppress-bench STORE-DIR COUNT N-ADDRESSES [THREADS]
 *
 * The store holds addresses u%07d@list%03d.test (i, i % 1000) for i below
 * N-ADDRESSES, as suppress-bench.sh imports them; half the lookups hit
 * (i < N-ADDRESSES), half miss (i >= N-ADDRESSES).
 * Prints one line per thread count: lookups/s, hits, misses.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "store.h"
#include "suppress.h"
#include "util.h"

static long naddr, count;

struct run {
	long hits, misses, errors;
	unsigned seed;
};

static void *
worker(void *arg)
{
	struct run *r = arg;
	char addr[320];

	for (long k = 0; k < count; k++) {
		long i = (long)(rand_r(&r->seed) % (unsigned)(2 * naddr));
		snprintf(addr, sizeof(addr), "u%07ld@list%03ld.test", i, i % 1000);
		int rc = suppress_check(addr, "sender.example", "default", NULL);
		if (rc == 1)
			r->hits++;
		else if (rc == 0)
			r->misses++;
		else
			r->errors++;
	}
	return NULL;
}

int
main(int argc, char **argv)
{
	char err[256];

	if (argc < 4) {
		fprintf(stderr, "usage: suppress-bench STORE-DIR COUNT N-ADDRESSES [THREADS]\n");
		return 1;
	}
	count = atol(argv[2]);
	naddr = atol(argv[3]);
	int maxthreads = argc > 4 ? atoi(argv[4]) : 2;
	log_open("/dev/null", LOG_ERR);
	if (store_open(argv[1], 64ULL << 30, err, sizeof(err)) < 0) {
		fprintf(stderr, "suppress-bench: %s\n", err);
		return 1;
	}
	for (int nt = 1; nt <= maxthreads; nt *= 2) {
		pthread_t th[64];
		struct run runs[64];
		struct timespec a, b;

		memset(runs, 0, sizeof(runs));
		clock_gettime(CLOCK_MONOTONIC, &a);
		for (int t = 0; t < nt; t++) {
			runs[t].seed = (unsigned)(t * 7919 + 1);
			pthread_create(&th[t], NULL, worker, &runs[t]);
		}
		long hits = 0, misses = 0, errors = 0;
		for (int t = 0; t < nt; t++) {
			pthread_join(th[t], NULL);
			hits += runs[t].hits;
			misses += runs[t].misses;
			errors += runs[t].errors;
		}
		clock_gettime(CLOCK_MONOTONIC, &b);
		double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
		printf("threads=%d lookups=%ld seconds=%.3f lookups_per_s=%.0f hits=%ld misses=%ld errors=%ld\n",
		    nt, hits + misses + errors, s, (double)(hits + misses + errors) / s, hits, misses, errors);
		if (errors > 0)
			return 1;
	}
	store_close();
	return 0;
}
