/*
 * bandit-sim: how well and how cheaply sluice's Thompson sampling picks
 * variants, on a synthetic population.
 *
 * A campaign of N recipients (default 100000) is sent in rounds of R
 * (default 1000): every choice in a round sees the opens of all earlier
 * rounds and none of its own round (as in a real send, where opens arrive
 * later than the next sends). Variant i of K (default 10) has a true open
 * rate spread evenly from 10 % to 20 %; each recipient opens with its
 * variant's rate. Reported per policy: the share of sends that went to a
 * variant other than the best, that share in the last tenth of the send,
 * and the opens lost against sending everything the best variant (regret,
 * in % of the best's expected opens). Then the cost of one choice: the
 * pure decision (bandit_choose, K Beta draws) and the full path
 * (bandit_send: cache lookup, lock, draws, the send queued to a real LMDB
 * store in a temporary directory).
 *
 *   bandit-sim [-n recipients] [-r round] [-k variants] [-s seeds]
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bandit.h"
#include "log.h"
#include "store.h"

struct result {
	double nonbest, nonbest_tail, regret;
};

static double
rate_of(int i, int k)
{
	return k > 1 ? 0.10 + 0.10 * i / (k - 1) : 0.10;
}

static void
simulate(uint64_t seed, int n, int round, int k, const struct bandit_policy *p,
    struct result *res)
{
	struct bandit_rng r, world;
	struct bandit_arm seen[BANDIT_MAX_ARMS], pending[BANDIT_MAX_ARMS];
	long nonbest = 0, nonbest_tail = 0, tail = 0, opens = 0;
	int winner = -1;
	enum bandit_why why;

	bandit_seed(&r, seed);
	bandit_seed(&world, seed ^ 0xabcdef);
	memset(seen, 0, sizeof(seen));
	for (int sent = 0; sent < n; ) {
		memset(pending, 0, sizeof(pending));
		for (int j = 0; j < round && sent < n; j++, sent++) {
			struct bandit_arm cur[BANDIT_MAX_ARMS];

			/* sends are counted at once, opens only after the round */
			for (int i = 0; i < k; i++) {
				cur[i] = seen[i];
				cur[i].sends += pending[i].sends;
			}
			int v = bandit_choose(&r, cur, k, p, winner, &why);
			pending[v].sends++;
			if (bandit_uniform(&world) < rate_of(v, k)) {
				pending[v].opens++;
				opens++;
			}
			if (v != k - 1) {
				nonbest++;
				if (sent >= n - n / 10)
					nonbest_tail++;
			}
			if (sent >= n - n / 10)
				tail++;
		}
		for (int i = 0; i < k; i++) {
			seen[i].sends += pending[i].sends;
			seen[i].opens += pending[i].opens;
		}
		if (p->winner_after > 0 && winner < 0) {
			double pb[BANDIT_MAX_ARMS];
			bandit_prob_best(&r, seen, k, p->reward, BANDIT_BEST_DRAWS, pb);
			winner = bandit_winner(seen, pb, k, p);
		}
	}
	res->nonbest = (double)nonbest / n;
	res->nonbest_tail = tail ? (double)nonbest_tail / tail : 0;
	res->regret = 1.0 - (double)opens / (n * rate_of(k - 1, k));
}

static double
elapsed_ns(const struct timespec *a, const struct timespec *b)
{
	return (b->tv_sec - a->tv_sec) * 1e9 + (double)(b->tv_nsec - a->tv_nsec);
}

int
main(int argc, char **argv)
{
	int n = 100000, round = 1000, k = 10, seeds = 10, c;

	while ((c = getopt(argc, argv, "n:r:k:s:")) != -1) {
		switch (c) {
		case 'n': n = atoi(optarg); break;
		case 'r': round = atoi(optarg); break;
		case 'k': k = atoi(optarg); break;
		case 's': seeds = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: bandit-sim [-n recipients] [-r round] [-k variants] [-s seeds]\n");
			return 2;
		}
	}
	if (n < 10 || round < 1 || k < 2 || k > BANDIT_MAX_ARMS || seeds < 1) {
		fprintf(stderr, "bandit-sim: need n >= 10, round >= 1, 2 <= k <= %d, seeds >= 1\n",
		    BANDIT_MAX_ARMS);
		return 2;
	}
	log_open("/dev/null", LOG_ERR);

	static const struct {
		const char *name;
		struct bandit_policy p;
	} policies[] = {
		{ "thompson",                       { BANDIT_OPEN, 0, 0 } },
		{ "thompson explore_until=500",     { BANDIT_OPEN, 500, 0 } },
		{ "thompson winner_after=0.95",     { BANDIT_OPEN, 0, 0.95 } },
		{ "uniform split (explore_until=n)", { BANDIT_OPEN, 0xffffffffu, 0 } },
	};
	printf("# bandit-sim: %d recipients in rounds of %d, %d variants with open rates "
	    "10%%..20%%, mean of %d seeds\n", n, round, k, seeds);
	printf("%-34s %14s %18s %10s\n", "policy", "non-best sends", "non-best last 10%",
	    "regret");
	for (size_t pi = 0; pi < sizeof(policies) / sizeof(policies[0]); pi++) {
		struct result sum = { 0, 0, 0 }, one;

		for (int s = 0; s < seeds; s++) {
			simulate(1000 + (uint64_t)s, n, round, k, &policies[pi].p, &one);
			sum.nonbest += one.nonbest;
			sum.nonbest_tail += one.nonbest_tail;
			sum.regret += one.regret;
		}
		printf("%-34s %13.1f%% %17.1f%% %9.2f%%\n", policies[pi].name,
		    100 * sum.nonbest / seeds, 100 * sum.nonbest_tail / seeds,
		    100 * sum.regret / seeds);
	}

	/* cost of one decision over k arms with realistic counts */
	struct bandit_rng r;
	struct bandit_arm arms[BANDIT_MAX_ARMS];
	struct bandit_policy tp = { BANDIT_OPEN, 0, 0 };
	struct timespec t0, t1;
	enum bandit_why why;
	const int iters = 1000000;
	volatile int sink = 0;

	bandit_seed(&r, 99);
	for (int i = 0; i < k; i++) {
		arms[i].sends = 10000;
		arms[i].opens = (uint64_t)(10000 * rate_of(i, k));
		arms[i].clicks = 0;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < iters; i++)
		sink += bandit_choose(&r, arms, k, &tp, -1, &why);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("bandit_choose (%d variants, pure): %.0f ns per choice\n", k,
	    elapsed_ns(&t0, &t1) / iters);

	/* the full path through the cache and a real store */
	char dir[128], err[256], addr[64], cmd[160];
	const char *ids[BANDIT_MAX_ARMS];
	char idbuf[BANDIT_MAX_ARMS][8];
	const int sends = 200000;

	snprintf(dir, sizeof(dir), "/tmp/bandit-sim.%ld", (long)getpid());
	if (store_open(dir, 1ULL << 30, err, sizeof(err)) != 0) {
		fprintf(stderr, "bandit-sim: %s\n", err);
		return 1;
	}
	for (int i = 0; i < k; i++) {
		snprintf(idbuf[i], sizeof(idbuf[i]), "v%d", i);
		ids[i] = idbuf[i];
	}
	bandit_send("bench", "seg", ids, k, &tp, "warm@example.com", &why);
	store_flush();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < sends; i++) {
		snprintf(addr, sizeof(addr), "r%d@example.com", i);
		sink += bandit_send("bench", "seg", ids, k, &tp, addr, &why);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("bandit_send (%d variants, cache + queued store write): %.0f ns per recipient\n",
	    k, elapsed_ns(&t0, &t1) / sends);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	store_flush();
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("store writer drained the %d sends %.0f ms after the last choice\n", sends,
	    elapsed_ns(&t0, &t1) / 1e6);
	store_close();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "bandit-sim: could not remove %s\n", dir);
	return sink == -1;
}
