/*
 * campaign-bench: the costs of send-time decisions against a real store.
 *
 *   campaign-bench STORE-DIR N-RECIPIENTS [COUNT]
 *
 * The store holds engagement records for u%d@dst.test (i < N-RECIPIENTS),
 * as campaign-bench.sh imports them, some in segments. Prints:
 *   - one decision (campaign_plan: the recipient's record read and decoded,
 *     its segment's and the global prior, smoothing, shrinkage, the slot
 *     choice over a 24 h window) in microseconds, over COUNT recipients;
 *   - the planning time of 1,000,000 recipients (one thread);
 *   - the stored bytes per record of every database with entries.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "campaign.h"
#include "engage.h"
#include "log.h"
#include "store.h"
#include "util.h"

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double
plan_many(long n, long nrcpt, int64_t start, bool sto)
{
	struct prior_cache *pc = prior_cache_new();
	struct camp_decision d;
	char addr[64];
	unsigned seed = 12345;
	double t0 = now_s();
	int64_t sum = 0;

	for (long k = 0; k < n; k++) {
		long i = (long)(rand_r(&seed) % (unsigned)nrcpt);
		if (k % 10000 == 0)
			prior_cache_reset(pc);     /* as a load does per batch */
		snprintf(addr, sizeof(addr), "u%ld@dst.test", i);
		void *t = store_rtxn();
		campaign_plan(t, pc, "bench", start, 24 * STO_HOUR_MS, sto, start - 1000, addr, NULL, &d);
		store_rdone(t);
		sum += d.send_at;
	}
	double el = now_s() - t0;
	prior_cache_free(pc);
	if (sum == 42)
		puts("");
	return el;
}

int
main(int argc, char **argv)
{
	char err[256];
	long nrcpt, count;

	if (argc < 3) {
		fprintf(stderr, "usage: campaign-bench STORE-DIR N-RECIPIENTS [COUNT]\n");
		return 1;
	}
	nrcpt = atol(argv[2]);
	count = argc > 3 ? atol(argv[3]) : 200000;
	log_open("/dev/null", LOG_ERR);
	if (store_open(argv[1], 64ULL << 30, err, sizeof(err)) < 0) {
		fprintf(stderr, "campaign-bench: %s\n", err);
		return 1;
	}
	int64_t start = now_ms() + 86400000;

	/* warm the pages once, as a running daemon has them */
	plan_many(MIN(count, nrcpt), nrcpt, start, true);
	double el = plan_many(count, nrcpt, start, true);
	printf("decision (read + decode + priors + smooth + shrink + choose, 24h window): %.2f us\n",
	    el * 1e6 / (double)count);
	el = plan_many(count, nrcpt, start, false);
	printf("decision without STO (max_delay 0: segment lookup only): %.2f us\n",
	    el * 1e6 / (double)count);
	el = plan_many(1000000, nrcpt, start, true);
	printf("planning 1,000,000 recipients (one thread): %.2f s\n", el);

	MDB_txn *t = store_rtxn();
	for (int db = 0; db < STORE_NDB; db++) {
		MDB_stat st;
		if (mdb_stat(t, store_dbi((enum store_db)db), &st) != 0 || st.ms_entries == 0)
			continue;
		size_t pages = st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
		printf("db %-20s %10zu entries %8.1f bytes/entry (%zu pages of %u)\n",
		    store_db_name((enum store_db)db), st.ms_entries,
		    (double)pages * st.ms_psize / (double)st.ms_entries, pages, st.ms_psize);
	}
	store_rdone(t);
	store_close();
	return 0;
}
