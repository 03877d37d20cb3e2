/*
 * bandit: Beta sampling, the Thompson choice and the counts behind it
 * (bandit.h).
 *
 * The generator is xoshiro256** — fast, 256 bits of state, good enough for
 * sampling (not for secrets) — one per thread, so a choice takes no lock
 * for its draws. Gamma variates come from Marsaglia and Tsang's squeeze
 * method (one normal and one uniform per try, about 1.03 tries on
 * average for shape >= 1; shape < 1 is boosted by U^(1/shape)); a Beta
 * variate is X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b).
 *
 * Store records (native byte order: the store is local to this machine):
 *   DB_BANDIT   campaign \0 segment \0 variant -> uint64 sends, opens, clicks
 *               campaign \0 segment \0 ""      -> int64 ms + winner's id
 *   DB_CVARIANT campaign \0 address            -> flags, segment \0 variant
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "bandit.h"
#include "log.h"
#include "store.h"
#include "util.h"

#define CV_OPENED  0x01
#define CV_CLICKED 0x02
#define CV_WHY_SHIFT 4                /* bits 4-5: why the variant was chosen */
#define KEY_MAX    1024              /* campaign, segment and variant/address */
#define CHECK_MS   1000              /* P(best) at most this often per segment */
#define NBUCKETS   1024
#define CACHE_MAX  4096               /* sets kept; beyond, idle ones are dropped */
#define IDLE_MS    (10 * 60 * 1000)   /* unused this long: reloaded from the store if needed */

static int cache_max = CACHE_MAX;
static int64_t cache_idle_ms = IDLE_MS;

/* ---------------------------------------------------------------- generator */

static uint64_t
splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void
bandit_seed(struct bandit_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
	r->has_spare = false;
	r->spare = 0;
}

static inline uint64_t
rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t
bandit_next(struct bandit_rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

double
bandit_uniform(struct bandit_rng *r)
{
	/* 53 random bits, centred in their interval: never 0, never 1 */
	return ((double)(bandit_next(r) >> 11) + 0.5) * 0x1.0p-53;
}

double
bandit_normal(struct bandit_rng *r)
{
	double u, v, s, m;

	if (r->has_spare) {
		r->has_spare = false;
		return r->spare;
	}
	do {
		u = 2.0 * bandit_uniform(r) - 1.0;
		v = 2.0 * bandit_uniform(r) - 1.0;
		s = u * u + v * v;
	} while (s >= 1.0 || s == 0.0);
	m = sqrt(-2.0 * log(s) / s);
	r->spare = v * m;
	r->has_spare = true;
	return u * m;
}

double
bandit_gamma(struct bandit_rng *r, double shape)
{
	double d, c, x, v, u;

	if (shape < 1.0) {
		/* Gamma(a) = Gamma(a + 1) * U^(1/a) */
		double g = bandit_gamma(r, shape + 1.0);
		return g * pow(bandit_uniform(r), 1.0 / shape);
	}
	d = shape - 1.0 / 3.0;
	c = 1.0 / sqrt(9.0 * d);
	for (;;) {
		do {
			x = bandit_normal(r);
			v = 1.0 + c * x;
		} while (v <= 0.0);
		v = v * v * v;
		u = bandit_uniform(r);
		if (u < 1.0 - 0.0331 * (x * x) * (x * x))
			return d * v;
		if (log(u) < 0.5 * x * x + d * (1.0 - v + log(v)))
			return d * v;
	}
}

double
bandit_beta(struct bandit_rng *r, double a, double b)
{
	double x = bandit_gamma(r, a), y = bandit_gamma(r, b);

	return x / (x + y);
}

static __thread struct bandit_rng thread_rng;
static __thread bool thread_seeded;

struct bandit_rng *
bandit_thread_rng(void)
{
	if (!thread_seeded) {
		uint64_t seed;

		random_bytes(&seed, sizeof(seed));
		bandit_seed(&thread_rng, seed);
		thread_seeded = true;
	}
	return &thread_rng;
}

/* ---------------------------------------------------------------- decisions */

const char *
bandit_reward_name(enum bandit_reward r)
{
	return r == BANDIT_CLICK ? "click" : "open";
}

int
bandit_reward_parse(const char *s, enum bandit_reward *out)
{
	if (strcmp(s, "open") == 0)
		*out = BANDIT_OPEN;
	else if (strcmp(s, "click") == 0)
		*out = BANDIT_CLICK;
	else
		return -1;
	return 0;
}

const char *
bandit_why_name(enum bandit_why w)
{
	switch (w) {
	case BANDIT_SINGLE:  return "single";
	case BANDIT_EXPLORE: return "explore";
	case BANDIT_SAMPLE:  return "sample";
	case BANDIT_WINNER:  return "winner";
	}
	return "?";
}

void
bandit_posterior(const struct bandit_arm *a, enum bandit_reward rw, double *alpha, double *beta)
{
	uint64_t s = rw == BANDIT_CLICK ? a->clicks : a->opens;

	/* a reward can outrun its send only through a lost send record */
	if (s > a->sends)
		s = a->sends;
	*alpha = 1.0 + (double)s;
	*beta = 1.0 + (double)(a->sends - s);
}

double
bandit_mean(const struct bandit_arm *a, enum bandit_reward rw)
{
	double al, be;

	bandit_posterior(a, rw, &al, &be);
	return al / (al + be);
}

int
bandit_choose(struct bandit_rng *r, const struct bandit_arm *arms, int n,
    const struct bandit_policy *p, int winner, enum bandit_why *why)
{
	int best = 0;

	if (n <= 1) {
		*why = BANDIT_SINGLE;
		return 0;
	}
	if (winner >= 0 && winner < n) {
		*why = BANDIT_WINNER;
		return winner;
	}
	if (p->explore_until > 0) {
		uint64_t least = arms[0].sends;
		int ties = 0;

		for (int i = 1; i < n; i++)
			if (arms[i].sends < least)
				least = arms[i].sends;
		if (least < p->explore_until) {
			/* the least sent, ties broken at random (reservoir of one) */
			for (int i = 0; i < n; i++)
				if (arms[i].sends == least && bandit_next(r) % (uint64_t)++ties == 0)
					best = i;
			*why = BANDIT_EXPLORE;
			return best;
		}
	}
	double top = -1.0;
	for (int i = 0; i < n; i++) {
		double al, be, x;

		bandit_posterior(&arms[i], p->reward, &al, &be);
		x = bandit_beta(r, al, be);
		if (x > top) {
			top = x;
			best = i;
		}
	}
	*why = BANDIT_SAMPLE;
	return best;
}

void
bandit_prob_best(struct bandit_rng *r, const struct bandit_arm *arms, int n,
    enum bandit_reward rw, int draws, double *out)
{
	double al[BANDIT_MAX_ARMS], be[BANDIT_MAX_ARMS];
	uint32_t wins[BANDIT_MAX_ARMS] = { 0 };

	if (n > BANDIT_MAX_ARMS)
		n = BANDIT_MAX_ARMS;
	for (int i = 0; i < n; i++)
		bandit_posterior(&arms[i], rw, &al[i], &be[i]);
	for (int d = 0; d < draws; d++) {
		double top = -1.0;
		int best = 0;

		for (int i = 0; i < n; i++) {
			double x = bandit_beta(r, al[i], be[i]);
			if (x > top) {
				top = x;
				best = i;
			}
		}
		wins[best]++;
	}
	for (int i = 0; i < n; i++)
		out[i] = draws > 0 ? (double)wins[i] / draws : 0.0;
}

int
bandit_winner(const struct bandit_arm *arms, const double *pbest, int n,
    const struct bandit_policy *p)
{
	int best = 0;

	if (n < 2 || p->winner_after <= 0.0)
		return -1;
	for (int i = 0; i < n; i++) {
		if (arms[i].sends < p->explore_until)
			return -1;
		if (pbest[i] > pbest[best])
			best = i;
	}
	return pbest[best] > p->winner_after ? best : -1;
}

/* ---------------------------------------------------------------- keys */

/* "a" \0 "b" [\0 "c"] into buf; 0 or -1 when it does not fit */
static int
key3(char *buf, size_t cap, size_t *len, const char *a, const char *b, const char *c)
{
	size_t la = strlen(a), lb = strlen(b), lc = c ? strlen(c) : 0;
	size_t n = la + 1 + lb + (c ? 1 + lc : 0);

	if (n > cap || n > 511)         /* LMDB's default key limit */
		return -1;
	memcpy(buf, a, la);
	buf[la] = '\0';
	memcpy(buf + la + 1, b, lb);
	if (c != NULL) {
		buf[la + 1 + lb] = '\0';
		memcpy(buf + la + 2 + lb, c, lc);
	}
	*len = n;
	return 0;
}

/* The address with its domain lower-cased (the local part is the owner's). */
static void
addr_norm(char *dst, size_t cap, const char *address)
{
	const char *at = strrchr(address, '@');

	snprintf(dst, cap, "%s", address);
	if (at != NULL && (size_t)(at - address) < cap)
		str_lower(dst + (at - address));
}

static void
arm_get(MDB_txn *txn, const void *key, size_t klen, struct bandit_arm *a)
{
	MDB_val k = { klen, (void *)key }, v;

	memset(a, 0, sizeof(*a));
	if (mdb_get(txn, store_dbi(DB_BANDIT), &k, &v) == 0)
		memcpy(a, v.mv_data, MIN(v.mv_size, sizeof(*a)));
}

/* ---------------------------------------------------------------- cache */

struct bset {
	struct bset *next;
	char *campaign, *segment;
	int n;
	char ids[BANDIT_MAX_ARMS][BANDIT_ID_MAX];
	struct bandit_arm arms[BANDIT_MAX_ARMS];
	int winner;                    /* -1 = none */
	int64_t winner_ms;
	bool checking;                 /* a P(best) check is running */
	int64_t checked_ms;            /* mono time of the last check */
	uint64_t checked_total;        /* sends + rewards at that check */
	int refs;                      /* users outside cache_lock (cache_lock) */
	int64_t used_ms;               /* mono time of the last use (cache_lock) */
	pthread_mutex_t lock;
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct bset *buckets[NBUCKETS];
static int nsets;

static void set_free(struct bset *s);

/*
 * Over CACHE_MAX sets: drop those nobody holds that were not used for
 * IDLE_MS (their counts are in the store; a later use reloads them). With
 * cache_lock held.
 */
static void
cache_trim(int64_t now)
{
	for (int b = 0; b < NBUCKETS && nsets > cache_max; b++) {
		struct bset **pp = &buckets[b], *s;

		while ((s = *pp) != NULL) {
			if (s->refs == 0 && now - s->used_ms >= cache_idle_ms) {
				*pp = s->next;
				set_free(s);
				nsets--;
			} else {
				pp = &s->next;
			}
		}
	}
}

/* Done with a set from set_get()/set_find(). */
static void
set_put(struct bset *s)
{
	pthread_mutex_lock(&cache_lock);
	s->refs--;
	pthread_mutex_unlock(&cache_lock);
}

static unsigned
bucket_of(const char *campaign, const char *segment)
{
	uint64_t h = 1469598103934665603ULL;

	for (const char *p = campaign; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	h = (h ^ 0xff) * 1099511628211ULL;
	for (const char *p = segment; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	return (unsigned)(h % NBUCKETS);
}

/* Counts and winner of ids from the store (zero when absent or closed). */
static void
load_set(const char *campaign, const char *segment, const char *const *ids, int n,
    struct bandit_arm *arms, int *winner, int64_t *winner_ms)
{
	MDB_txn *txn = store_rtxn();
	char key[KEY_MAX];
	size_t klen;

	memset(arms, 0, sizeof(*arms) * (size_t)n);
	*winner = -1;
	*winner_ms = 0;
	if (txn == NULL)
		return;
	for (int i = 0; i < n; i++)
		if (key3(key, sizeof(key), &klen, campaign, segment, ids[i]) == 0)
			arm_get(txn, key, klen, &arms[i]);
	if (key3(key, sizeof(key), &klen, campaign, segment, "") == 0) {
		MDB_val k = { klen, key }, v;

		if (mdb_get(txn, store_dbi(DB_BANDIT), &k, &v) == 0 && v.mv_size > 8) {
			const char *id = (const char *)v.mv_data + 8;
			size_t idlen = v.mv_size - 8;

			for (int i = 0; i < n; i++)
				if (strlen(ids[i]) == idlen && memcmp(ids[i], id, idlen) == 0) {
					*winner = i;
					memcpy(winner_ms, v.mv_data, 8);
				}
		}
	}
	store_rdone(txn);
}

static bool
same_ids(const struct bset *s, const char *const *ids, int n)
{
	if (s->n != n)
		return false;
	for (int i = 0; i < n; i++)
		if (strcmp(s->ids[i], ids[i]) != 0)
			return false;
	return true;
}

/* The cached set (created from the store on first use). */
static struct bset *
set_get(const char *campaign, const char *segment, const char *const *ids, int n)
{
	unsigned b = bucket_of(campaign, segment);
	struct bset *s;

	pthread_mutex_lock(&cache_lock);
	for (s = buckets[b]; s != NULL; s = s->next)
		if (strcmp(s->campaign, campaign) == 0 && strcmp(s->segment, segment) == 0)
			break;
	if (s != NULL && !same_ids(s, ids, n)) {
		/* the campaign was replaced under the same name: start from the store */
		pthread_mutex_lock(&s->lock);
		s->n = n;
		for (int i = 0; i < n; i++)
			snprintf(s->ids[i], sizeof(s->ids[i]), "%s", ids[i]);
		load_set(campaign, segment, ids, n, s->arms, &s->winner, &s->winner_ms);
		s->checked_ms = 0;
		s->checked_total = 0;
		pthread_mutex_unlock(&s->lock);
	}
	if (s == NULL) {
		s = xcalloc(1, sizeof(*s));
		s->campaign = xstrdup(campaign);
		s->segment = xstrdup(segment);
		s->n = n;
		for (int i = 0; i < n; i++)
			snprintf(s->ids[i], sizeof(s->ids[i]), "%s", ids[i]);
		load_set(campaign, segment, ids, n, s->arms, &s->winner, &s->winner_ms);
		pthread_mutex_init(&s->lock, NULL);
		s->next = buckets[b];
		buckets[b] = s;
		nsets++;
	}
	s->refs++;
	s->used_ms = mono_ms();
	/* after the reference is taken: the trim must not free this set */
	if (nsets > cache_max)
		cache_trim(s->used_ms);
	pthread_mutex_unlock(&cache_lock);
	return s;
}

/* The cached set when there is one (no store read); set_put() it after. */
static struct bset *
set_find(const char *campaign, const char *segment)
{
	struct bset *s;

	pthread_mutex_lock(&cache_lock);
	for (s = buckets[bucket_of(campaign, segment)]; s != NULL; s = s->next)
		if (strcmp(s->campaign, campaign) == 0 && strcmp(s->segment, segment) == 0)
			break;
	if (s != NULL)
		s->refs++;
	pthread_mutex_unlock(&cache_lock);
	return s;
}

static void
set_free(struct bset *s)
{
	pthread_mutex_destroy(&s->lock);
	free(s->campaign);
	free(s->segment);
	free(s);
}

void
bandit_cache_limits(int max_sets, int64_t idle_ms, int *nsets_out)
{
	pthread_mutex_lock(&cache_lock);
	if (max_sets > 0)
		cache_max = max_sets;
	if (idle_ms >= 0)
		cache_idle_ms = idle_ms;
	if (nsets_out != NULL)
		*nsets_out = nsets;
	pthread_mutex_unlock(&cache_lock);
}

void
bandit_cache_clear(void)
{
	pthread_mutex_lock(&cache_lock);
	for (int b = 0; b < NBUCKETS; b++) {
		struct bset *s, *next;

		for (s = buckets[b]; s != NULL; s = next) {
			next = s->next;
			set_free(s);
		}
		buckets[b] = NULL;
	}
	nsets = 0;
	pthread_mutex_unlock(&cache_lock);
}

/* ---------------------------------------------------------------- sends */

struct send_op {
	size_t bklen, cvklen, cvvlen;
	unsigned char data[];          /* bandit key, cvariant key, cvariant value */
};

static int
send_apply(MDB_txn *txn, void *arg)
{
	struct send_op *op = arg;
	struct bandit_arm a;
	MDB_val k = { op->bklen, op->data }, v = { sizeof(a), &a };
	int rc;

	arm_get(txn, op->data, op->bklen, &a);
	a.sends++;
	if ((rc = mdb_put(txn, store_dbi(DB_BANDIT), &k, &v, 0)) != 0)
		return rc;
	k.mv_size = op->cvklen;
	k.mv_data = op->data + op->bklen;
	v.mv_size = op->cvvlen;
	v.mv_data = op->data + op->bklen + op->cvklen;
	return mdb_put(txn, store_dbi(DB_CVARIANT), &k, &v, 0);
}

static void
op_free(void *arg, bool ok)
{
	(void)ok;
	free(arg);
}

static void
record_send(const char *campaign, const char *segment, const char *variant, const char *addr,
    enum bandit_why why)
{
	char bk[KEY_MAX], cvk[KEY_MAX], cvv[KEY_MAX];
	size_t bklen, cvklen, cvvlen;
	struct send_op *op;

	if (key3(bk, sizeof(bk), &bklen, campaign, segment, variant) < 0 ||
	    key3(cvk, sizeof(cvk), &cvklen, campaign, addr, NULL) < 0 ||
	    key3(cvv + 1, sizeof(cvv) - 1, &cvvlen, segment, variant, NULL) < 0) {
		log_warnx("event=bandit-key-too-long campaign=\"%s\" segment=\"%s\"", campaign, segment);
		return;
	}
	cvv[0] = (char)((unsigned)why << CV_WHY_SHIFT);    /* not yet opened or clicked */
	cvvlen++;
	op = xmalloc(sizeof(*op) + bklen + cvklen + cvvlen);
	op->bklen = bklen;
	op->cvklen = cvklen;
	op->cvvlen = cvvlen;
	memcpy(op->data, bk, bklen);
	memcpy(op->data + bklen, cvk, cvklen);
	memcpy(op->data + bklen + cvklen, cvv, cvvlen);
	store_write(send_apply, op_free, op);
}

static void
save_winner(const char *campaign, const char *segment, const char *id, int64_t ms)
{
	char key[KEY_MAX], val[8 + BANDIT_ID_MAX];
	size_t klen, idlen = strlen(id);

	if (key3(key, sizeof(key), &klen, campaign, segment, "") < 0)
		return;
	memcpy(val, &ms, 8);
	memcpy(val + 8, id, idlen);
	store_put(DB_BANDIT, key, klen, val, 8 + idlen);
}

/* Declare a winner when the policy says so (at most once a second). */
static void
maybe_winner(struct bset *s, const struct bandit_policy *p, struct bandit_rng *r)
{
	struct bandit_arm arms[BANDIT_MAX_ARMS];
	double pbest[BANDIT_MAX_ARMS];
	uint64_t total = 0;
	int64_t now = mono_ms();
	int n, w;

	pthread_mutex_lock(&s->lock);
	n = s->n;
	for (int i = 0; i < n; i++)
		if (s->arms[i].sends < p->explore_until) {
			/* still exploring: no winner can be declared yet */
			pthread_mutex_unlock(&s->lock);
			return;
		}
	for (int i = 0; i < n; i++)
		total += s->arms[i].sends + (p->reward == BANDIT_CLICK ? s->arms[i].clicks :
		    s->arms[i].opens);
	if (s->winner >= 0 || s->checking || total == s->checked_total ||
	    (s->checked_ms != 0 && now - s->checked_ms < CHECK_MS)) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	s->checking = true;
	memcpy(arms, s->arms, sizeof(arms[0]) * (size_t)n);
	pthread_mutex_unlock(&s->lock);

	/* the draws run without the lock: other choices go on meanwhile */
	bandit_prob_best(r, arms, n, p->reward, BANDIT_BEST_DRAWS, pbest);
	w = bandit_winner(arms, pbest, n, p);

	pthread_mutex_lock(&s->lock);
	s->checking = false;
	s->checked_ms = now;
	s->checked_total = total;
	if (w >= 0 && s->winner < 0) {
		s->winner = w;
		s->winner_ms = now_ms();
		save_winner(s->campaign, s->segment, s->ids[w], s->winner_ms);
		log_info("event=bandit-winner campaign=\"%s\" segment=\"%s\" variant=\"%s\" "
		    "p-best=%.4f sends=%llu", s->campaign, s->segment, s->ids[w], pbest[w],
		    (unsigned long long)arms[w].sends);
	}
	pthread_mutex_unlock(&s->lock);
}

int
bandit_send(const char *campaign, const char *segment, const char *const *ids, int n,
    const struct bandit_policy *p, const char *address, enum bandit_why *why)
{
	struct bandit_rng *r = bandit_thread_rng();
	char addr[320];
	struct bset *s;
	int i;

	if (n < 1 || n > BANDIT_MAX_ARMS)
		return -1;
	s = set_get(campaign, segment, ids, n);
	if (p->winner_after > 0 && n > 1)
		maybe_winner(s, p, r);
	pthread_mutex_lock(&s->lock);
	i = bandit_choose(r, s->arms, n, p, s->winner, why);
	s->arms[i].sends++;
	pthread_mutex_unlock(&s->lock);
	set_put(s);
	addr_norm(addr, sizeof(addr), address);
	record_send(campaign, segment, ids[i], addr, *why);
	return i;
}

/* ---------------------------------------------------------------- rewards */

struct reward_op {
	bool click;
	int d_opens, d_clicks;          /* what the write added */
	char segment[256], variant[BANDIT_ID_MAX];
	char *campaign;
	size_t klen;
	unsigned char key[];            /* campaign \0 address */
};

static int
reward_apply(MDB_txn *txn, void *arg)
{
	struct reward_op *op = arg;
	MDB_val k = { op->klen, op->key }, v;
	unsigned char val[KEY_MAX], flags;
	const char *seg, *var;
	char bk[KEY_MAX];
	size_t bklen, seglen;
	struct bandit_arm a;
	int rc;

	if ((rc = mdb_get(txn, store_dbi(DB_CVARIANT), &k, &v)) == MDB_NOTFOUND)
		return 0;               /* no variant of this campaign: nothing to reward */
	if (rc != 0)
		return rc;
	if (v.mv_size < 2 || v.mv_size > sizeof(val))
		return 0;
	memcpy(val, v.mv_data, v.mv_size);
	flags = val[0];
	seg = (const char *)val + 1;
	seglen = strnlen(seg, v.mv_size - 1);
	if (seglen == v.mv_size - 1)
		return 0;               /* no variant after the segment */
	var = seg + seglen + 1;
	snprintf(op->segment, sizeof(op->segment), "%s", seg);
	snprintf(op->variant, sizeof(op->variant), "%.*s",
	    (int)(v.mv_size - 1 - seglen - 1), var);

	op->d_opens = !(flags & CV_OPENED);
	op->d_clicks = op->click && !(flags & CV_CLICKED);
	if (!op->d_opens && !op->d_clicks)
		return 0;
	val[0] = flags | CV_OPENED | (op->click ? CV_CLICKED : 0);
	v.mv_data = val;
	if ((rc = mdb_put(txn, store_dbi(DB_CVARIANT), &k, &v, 0)) != 0)
		return rc;

	if (key3(bk, sizeof(bk), &bklen, op->campaign, op->segment, op->variant) < 0)
		return 0;
	arm_get(txn, bk, bklen, &a);
	a.opens += (uint64_t)op->d_opens;
	a.clicks += (uint64_t)op->d_clicks;
	k.mv_size = bklen;
	k.mv_data = bk;
	v.mv_size = sizeof(a);
	v.mv_data = &a;
	return mdb_put(txn, store_dbi(DB_BANDIT), &k, &v, 0);
}

static void
reward_done(void *arg, bool ok)
{
	struct reward_op *op = arg;
	struct bset *s;

	if (ok && (op->d_opens || op->d_clicks) &&
	    (s = set_find(op->campaign, op->segment)) != NULL) {
		pthread_mutex_lock(&s->lock);
		for (int i = 0; i < s->n; i++)
			if (strcmp(s->ids[i], op->variant) == 0) {
				s->arms[i].opens += (uint64_t)op->d_opens;
				s->arms[i].clicks += (uint64_t)op->d_clicks;
			}
		pthread_mutex_unlock(&s->lock);
		set_put(s);
	}
	if (!ok)
		log_warnx("event=bandit-reward-failed campaign=\"%s\"", op->campaign);
	free(op);
}

void
bandit_reward(const char *campaign, const char *address, bool click)
{
	char addr[320], key[KEY_MAX];
	size_t klen;
	struct reward_op *op;

	addr_norm(addr, sizeof(addr), address);
	if (key3(key, sizeof(key), &klen, campaign, addr, NULL) < 0)
		return;
	op = xcalloc(1, sizeof(*op) + klen);
	op->click = click;
	op->klen = klen;
	memcpy(op->key, key, klen);
	op->campaign = (char *)op->key;  /* the key starts with campaign \0 */
	store_write(reward_apply, reward_done, op);
}

int
bandit_recipient_variant(const char *campaign, const char *address, char *segment,
    size_t segcap, char *variant, size_t varcap, struct bandit_sent *sent)
{
	char addr[320], key[KEY_MAX], val[KEY_MAX];
	size_t klen, vlen = 0, seglen;
	int rc;

	addr_norm(addr, sizeof(addr), address);
	if (key3(key, sizeof(key), &klen, campaign, addr, NULL) < 0)
		return 0;
	if ((rc = store_get(DB_CVARIANT, key, klen, val, sizeof(val) - 1, &vlen)) != 1)
		return rc;
	if (vlen < 2 || vlen >= sizeof(val))
		return 0;
	val[vlen] = '\0';
	seglen = strnlen(val + 1, vlen - 1);
	snprintf(segment, segcap, "%s", val + 1);
	snprintf(variant, varcap, "%s", seglen + 2 <= vlen ? val + 1 + seglen + 1 : "");
	if (sent != NULL) {
		unsigned char f = (unsigned char)val[0];

		sent->why = (enum bandit_why)((f >> CV_WHY_SHIFT) & 3);
		sent->opened = (f & CV_OPENED) != 0;
		sent->clicked = (f & CV_CLICKED) != 0;
	}
	return 1;
}

/* ---------------------------------------------------------------- figures */

int
bandit_stats(const char *campaign, const char *segment, const char *const *ids, int n,
    enum bandit_reward rw, struct bandit_stat *out, int *winner, int64_t *winner_ms)
{
	struct bandit_arm arms[BANDIT_MAX_ARMS];
	double pbest[BANDIT_MAX_ARMS];
	struct bandit_rng r;
	struct bset *s;

	if (n < 1 || n > BANDIT_MAX_ARMS)
		return -1;
	if ((s = set_find(campaign, segment)) != NULL) {
		bool same;

		pthread_mutex_lock(&s->lock);
		if ((same = same_ids(s, ids, n))) {
			memcpy(arms, s->arms, sizeof(arms[0]) * (size_t)n);
			*winner = s->winner;
			*winner_ms = s->winner_ms;
		}
		pthread_mutex_unlock(&s->lock);
		set_put(s);
		if (!same)
			s = NULL;
	}
	if (s == NULL) {
		if (!store_is_open())
			return -1;
		load_set(campaign, segment, ids, n, arms, winner, winner_ms);
	}
	bandit_seed(&r, 0x5eed);
	bandit_prob_best(&r, arms, n, rw, n > 1 ? BANDIT_BEST_DRAWS : 1, pbest);
	for (int i = 0; i < n; i++) {
		out[i].arm = arms[i];
		out[i].mean = bandit_mean(&arms[i], rw);
		out[i].pbest = n > 1 ? pbest[i] : 1.0;
	}
	return 0;
}

/* ---------------------------------------------------------------- forget */

static int
del_prefix(MDB_txn *txn, MDB_dbi dbi, const char *prefix, size_t plen)
{
	MDB_cursor *cur;
	MDB_val k = { plen, (void *)prefix }, v;
	int rc;

	if ((rc = mdb_cursor_open(txn, dbi, &cur)) != 0)
		return rc;
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && k.mv_size >= plen && memcmp(k.mv_data, prefix, plen) == 0) {
		if ((rc = mdb_cursor_del(cur, 0)) != 0)
			break;
		rc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
		if (rc == EINVAL || rc == MDB_NOTFOUND)
			rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static int
forget_apply(MDB_txn *txn, void *arg)
{
	const char *campaign = arg;
	size_t plen = strlen(campaign) + 1;     /* campaign \0 */
	int rc;

	if ((rc = del_prefix(txn, store_dbi(DB_BANDIT), campaign, plen)) != 0)
		return rc;
	return del_prefix(txn, store_dbi(DB_CVARIANT), campaign, plen);
}

void
bandit_forget(const char *campaign)
{
	/* zeroed in place, not freed: a choice may hold the set right now */
	pthread_mutex_lock(&cache_lock);
	for (int b = 0; b < NBUCKETS; b++)
		for (struct bset *s = buckets[b]; s != NULL; s = s->next) {
			if (strcmp(s->campaign, campaign) != 0)
				continue;
			pthread_mutex_lock(&s->lock);
			memset(s->arms, 0, sizeof(s->arms));
			s->winner = -1;
			s->winner_ms = 0;
			s->checked_ms = 0;
			s->checked_total = 0;
			pthread_mutex_unlock(&s->lock);
		}
	pthread_mutex_unlock(&cache_lock);
	store_write(forget_apply, op_free, xstrdup(campaign));
}
