/*
 * store: the LMDB environment and its single writer thread (store.h).
 *
 * Writers queue closures; the writer thread takes everything queued, runs
 * it in one write transaction and commits (LMDB fsyncs on commit), so a
 * burst of events costs one fsync. A write fn checks its input before it
 * writes and returns an errno-style code (> 0) to refuse: the batch still
 * commits. An LMDB error (< 0, e.g. MDB_MAP_FULL) kills the transaction, and
 * every write of that batch reports failure. Readers use a
 * per-thread read-only transaction that is reset between uses
 * (MDB_NOTLS, so the reader slot belongs to the transaction, not the
 * thread, and store_close() can free every one of them).
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "store.h"
#include "util.h"
#include "worker.h"

#define SCHEMA_VERSION 1
#define BATCH_MAX 20000         /* writes per transaction */
/*
 * At most one commit every COMMIT_PACE_MS, unless a full batch is queued:
 * each commit costs LMDB two synchronous writes (data, then meta), and a
 * delivery queues one write (engagement), so a commit per delivery or two
 * would cost the disk more than the spool does. A write waits at most
 * this long more for its commit.
 */
#define COMMIT_PACE_MS 5

static const char *const db_names[STORE_NDB] = {
	[DB_META] = "meta",
	[DB_SUPPRESS] = "suppress",
	[DB_SUPPRESS_T] = "suppress-time",
	[DB_WARMUP] = "warmup",
	[DB_RCPT] = "recipient",
	[DB_SEGMENT] = "segment",
	[DB_SEGMEMBER] = "segment-member",
	[DB_RCPTSEG] = "recipient-segment",
	[DB_CAMPAIGN] = "campaign",
	[DB_CRCPT] = "campaign-recipient",
	[DB_BANDIT] = "bandit",
	[DB_SOFTBOUNCE] = "soft-bounce",
	[DB_VERP] = "verp",
	[DB_CSCHED] = "campaign-schedule",
	[DB_CVARIANT] = "campaign-variant",
	[DB_SUNSET] = "sunset",
	[DB_DOMHEALTH] = "domain-health",
};

struct wop {
	struct wop *next;
	store_write_fn fn;
	void *fnarg;
	store_done_fn done;
	void *arg;              /* done's argument */
	struct worker *w;       /* where done runs; NULL = writer thread */
	bool ok;
};

/* store_put/store_del: the key and value follow the struct */
struct kv {
	enum store_db db;
	bool del;
	size_t klen, vlen;
	unsigned char data[];
};

static MDB_env *env;
static MDB_dbi dbis[STORE_NDB];
static pthread_t writer;
static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcond = PTHREAD_COND_INITIALIZER;   /* CLOCK_MONOTONIC: qcond_init */
static pthread_once_t qcond_once = PTHREAD_ONCE_INIT;

/* The writer's pacing waits on the monotonic clock: a clock step must
 * not hold the commits back. */
static void
qcond_init(void)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_destroy(&qcond);
	pthread_cond_init(&qcond, &a);
	pthread_condattr_destroy(&a);
}
static struct wop *qhead, *qtail;
static size_t qlen;
static bool writer_stop, writer_running;
static size_t map_size;
static uint64_t n_commits, n_writes, n_failed;

/* every read transaction ever made, so store_close() can free them */
static pthread_mutex_t rlock = PTHREAD_MUTEX_INITIALIZER;
static MDB_txn **rtxns;
static size_t nrtxns, rtxns_cap;
static __thread MDB_txn *my_rtxn;

bool
store_is_open(void)
{
	return env != NULL;
}

MDB_env *
store_env(void)
{
	return env;
}

MDB_dbi
store_dbi(enum store_db db)
{
	return dbis[db];
}

const char *
store_db_name(enum store_db db)
{
	return db_names[db];
}

MDB_txn *
store_rtxn(void)
{
	if (env == NULL)
		return NULL;
	if (my_rtxn != NULL) {
		if (mdb_txn_renew(my_rtxn) == 0)
			return my_rtxn;
		return NULL;
	}
	MDB_txn *t;
	int rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &t);
	if (rc != 0) {
		log_err("event=store-error op=read-begin err=\"%s\"", mdb_strerror(rc));
		return NULL;
	}
	pthread_mutex_lock(&rlock);
	if (nrtxns == rtxns_cap) {
		rtxns_cap = rtxns_cap ? rtxns_cap * 2 : 16;
		rtxns = xrealloc(rtxns, rtxns_cap * sizeof(*rtxns));
	}
	rtxns[nrtxns++] = t;
	pthread_mutex_unlock(&rlock);
	my_rtxn = t;
	return t;
}

void
store_rdone(MDB_txn *txn)
{
	if (txn != NULL)
		mdb_txn_reset(txn);
}

int
store_get(enum store_db db, const void *key, size_t klen, void *val, size_t cap, size_t *len)
{
	MDB_txn *t = store_rtxn();
	if (t == NULL)
		return -1;
	MDB_val k = { klen, (void *)key }, v;
	int rc = mdb_get(t, dbis[db], &k, &v);
	int ret = 0;
	if (rc == 0) {
		memcpy(val, v.mv_data, v.mv_size < cap ? v.mv_size : cap);
		if (len != NULL)
			*len = v.mv_size;
		ret = 1;
	} else if (rc != MDB_NOTFOUND) {
		log_err("event=store-error op=get db=%s err=\"%s\"", db_names[db], mdb_strerror(rc));
		ret = -1;
	}
	store_rdone(t);
	return ret;
}

/* ---- writes ---------------------------------------------------------- */

static void finish(struct wop *op);

static void
enqueue(struct wop *op)
{
	pthread_mutex_lock(&qlock);
	if (writer_stop) {
		pthread_mutex_unlock(&qlock);
		log_warn("event=store-write-after-stop");
		op->ok = false;
		finish(op);
		return;
	}
	if (qtail)
		qtail->next = op;
	else
		qhead = op;
	qtail = op;
	/* the writer waits for a first write, or for a full batch while it
	 * paces its commits: nothing else wakes it */
	if (++qlen == 1 || qlen == BATCH_MAX)
		pthread_cond_signal(&qcond);
	pthread_mutex_unlock(&qlock);
}

void
store_write(store_write_fn fn, store_done_fn done, void *arg)
{
	struct wop *op = xcalloc(1, sizeof(*op));
	op->fn = fn;
	op->fnarg = arg;
	op->done = done;
	op->arg = arg;
	op->w = worker_self();
	if (env == NULL) {
		/* nothing to write to: fail at once, on the caller's thread */
		if (done)
			done(arg, false);
		free(op);
		return;
	}
	enqueue(op);
}

static void
waiter_done(void *arg, bool ok)
{
	completion_signal(arg, ok);
}

bool
store_write_wait(store_write_fn fn, void *arg)
{
	if (env == NULL)
		return false;
	struct completion wt = COMPLETION_INIT;
	struct wop *op = xcalloc(1, sizeof(*op));
	op->fn = fn;
	op->fnarg = arg;
	op->done = waiter_done;
	op->arg = &wt;
	op->w = NULL;           /* done on the writer thread, which wakes us */
	enqueue(op);
	return completion_wait(&wt) != 0;
}

static int
kv_apply(MDB_txn *txn, void *arg)
{
	struct kv *kv = arg;
	MDB_val k = { kv->klen, kv->data };
	if (kv->del) {
		int rc = mdb_del(txn, dbis[kv->db], &k, NULL);
		return rc == MDB_NOTFOUND ? 0 : rc;
	}
	MDB_val v = { kv->vlen, kv->data + kv->klen };
	return mdb_put(txn, dbis[kv->db], &k, &v, 0);
}

static void
kv_free(void *arg, bool ok)
{
	(void)ok;
	free(arg);
}

static void
queue_kv(enum store_db db, bool del, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct kv *kv = xmalloc(sizeof(*kv) + klen + vlen);
	kv->db = db;
	kv->del = del;
	kv->klen = klen;
	kv->vlen = vlen;
	memcpy(kv->data, key, klen);
	if (vlen)
		memcpy(kv->data + klen, val, vlen);
	struct wop *op = xcalloc(1, sizeof(*op));
	op->fn = kv_apply;
	op->fnarg = kv;
	op->done = kv_free;
	op->arg = kv;
	op->w = NULL;           /* free on the writer thread */
	if (env == NULL) {
		free(kv);
		free(op);
		return;
	}
	enqueue(op);
}

void
store_put(enum store_db db, const void *key, size_t klen, const void *val, size_t vlen)
{
	queue_kv(db, false, key, klen, val, vlen);
}

void
store_del(enum store_db db, const void *key, size_t klen)
{
	queue_kv(db, true, key, klen, NULL, 0);
}

static int
noop(MDB_txn *txn, void *arg)
{
	(void)txn;
	(void)arg;
	return 0;
}

void
store_flush(void)
{
	(void)store_write_wait(noop, NULL);
}

size_t
store_backlog(void)
{
	pthread_mutex_lock(&qlock);
	size_t n = qlen;
	pthread_mutex_unlock(&qlock);
	return n;
}

struct done_post {
	store_done_fn done;
	void *arg;
	bool ok;
};

static void
run_done_post(void *arg)
{
	struct done_post *dp = arg;
	dp->done(dp->arg, dp->ok);
	free(dp);
}

static void
finish(struct wop *op)
{
	if (op->w == NULL) {
		if (op->done)
			op->done(op->arg, op->ok);
	} else if (op->done) {
		struct done_post *dp = xmalloc(sizeof(*dp));
		dp->done = op->done;
		dp->arg = op->arg;
		dp->ok = op->ok;
		worker_post(op->w, run_done_post, dp);
	}
	free(op);
}

static int
timespec_cmp(const struct timespec *a, const struct timespec *b)
{
	if (a->tv_sec != b->tv_sec)
		return a->tv_sec < b->tv_sec ? -1 : 1;
	return a->tv_nsec < b->tv_nsec ? -1 : a->tv_nsec > b->tv_nsec;
}

static void *
writer_main(void *unused)
{
	struct timespec due = { 0, 0 };         /* the next commit, at the earliest */

	(void)unused;
	for (;;) {
		pthread_mutex_lock(&qlock);
		while (qhead == NULL && !writer_stop)
			pthread_cond_wait(&qcond, &qlock);
		if (qhead == NULL && writer_stop) {
			pthread_mutex_unlock(&qlock);
			break;
		}
		while (!writer_stop && qlen < BATCH_MAX) {
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (timespec_cmp(&now, &due) >= 0)
				break;
			pthread_cond_timedwait(&qcond, &qlock, &due);
		}
		clock_gettime(CLOCK_MONOTONIC, &due);
		due.tv_nsec += COMMIT_PACE_MS * 1000000L;
		if (due.tv_nsec >= 1000000000L) {
			due.tv_sec++;
			due.tv_nsec -= 1000000000L;
		}
		/* take up to BATCH_MAX writes */
		struct wop *batch = qhead, *last = qhead;
		size_t n = 1;
		while (last->next != NULL && n < BATCH_MAX) {
			last = last->next;
			n++;
		}
		qhead = last->next;
		if (qhead == NULL)
			qtail = NULL;
		last->next = NULL;
		qlen -= n;
		pthread_mutex_unlock(&qlock);

		MDB_txn *txn;
		int rc = mdb_txn_begin(env, NULL, 0, &txn);
		if (rc != 0) {
			log_err("event=store-error op=write-begin err=\"%s\"", mdb_strerror(rc));
			txn = NULL;
		}
		size_t failed = 0;
		for (struct wop *op = batch; op != NULL; op = op->next) {
			op->ok = false;
			if (txn == NULL)
				continue;
			if ((rc = op->fn(txn, op->fnarg)) == 0) {
				op->ok = true;
				continue;
			}
			failed++;
			log_err("event=store-error op=write err=\"%s\"", mdb_strerror(rc));
			if (rc != MDB_NOTFOUND && rc != MDB_KEYEXIST && rc < 0) {
				/* LMDB refused a write: the transaction is dead */
				mdb_txn_abort(txn);
				txn = NULL;
			}
		}
		bool committed = false;
		if (txn != NULL) {
			if ((rc = mdb_txn_commit(txn)) == 0)
				committed = true;
			else
				log_err("event=store-error op=commit writes=%zu err=\"%s\"", n, mdb_strerror(rc));
		}
		__atomic_add_fetch(&n_commits, committed, __ATOMIC_RELAXED);
		__atomic_add_fetch(&n_writes, n, __ATOMIC_RELAXED);
		__atomic_add_fetch(&n_failed, committed ? failed : n, __ATOMIC_RELAXED);
		for (struct wop *op = batch, *next; op != NULL; op = next) {
			next = op->next;
			if (!committed)
				op->ok = false;
			finish(op);
		}
	}
	return NULL;
}

/* ---- open / close ---------------------------------------------------- */

static int
mkdirs(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s", dir);
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(path, 0750) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

int
store_open(const char *dir, size_t size, char *err, size_t errlen)
{
	int rc;
	MDB_txn *txn = NULL;

	if (mkdirs(dir) < 0) {
		snprintf(err, errlen, "store %s: %s", dir, strerror(errno));
		return -1;
	}
	if ((rc = mdb_env_create(&env)) != 0)
		goto fail;
	if ((rc = mdb_env_set_maxdbs(env, STORE_NDB + 4)) != 0 ||
	    (rc = mdb_env_set_mapsize(env, size)) != 0 ||
	    (rc = mdb_env_set_maxreaders(env, 256)) != 0)
		goto fail;
	if ((rc = mdb_env_open(env, dir, MDB_NOTLS | MDB_NORDAHEAD, 0640)) != 0)
		goto fail;
	/* a reader slot left by a crashed sluiced would pin old pages */
	int dead = 0;
	mdb_reader_check(env, &dead);
	if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0)
		goto fail;
	for (int i = 0; i < STORE_NDB; i++)
		if ((rc = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &dbis[i])) != 0)
			goto fail;
	MDB_val k = { 7, "version" }, v;
	if ((rc = mdb_get(txn, dbis[DB_META], &k, &v)) == MDB_NOTFOUND) {
		uint32_t ver = SCHEMA_VERSION;
		v.mv_size = sizeof(ver);
		v.mv_data = &ver;
		if ((rc = mdb_put(txn, dbis[DB_META], &k, &v, 0)) != 0)
			goto fail;
	} else if (rc != 0) {
		goto fail;
	} else {
		uint32_t ver = 0;
		memcpy(&ver, v.mv_data, v.mv_size < sizeof(ver) ? v.mv_size : sizeof(ver));
		if (ver != SCHEMA_VERSION) {
			snprintf(err, errlen, "store %s: schema version %u, this sluiced reads %u", dir,
			    ver, SCHEMA_VERSION);
			mdb_txn_abort(txn);
			mdb_env_close(env);
			env = NULL;
			return -1;
		}
	}
	if ((rc = mdb_txn_commit(txn)) != 0) {
		txn = NULL;
		goto fail;
	}
	map_size = size;
	writer_stop = false;
	pthread_once(&qcond_once, qcond_init);
	if (pthread_create(&writer, NULL, writer_main, NULL) != 0)
		fatal("event=fatal msg=\"cannot start the store writer\"");
	writer_running = true;
	log_info("event=store-open dir=%s map-size=%zu", dir, size);
	return 0;
fail:
	snprintf(err, errlen, "store %s: %s", dir, mdb_strerror(rc));
	if (txn)
		mdb_txn_abort(txn);
	if (env)
		mdb_env_close(env);
	env = NULL;
	return -1;
}

void
store_stop_writer(void)
{
	if (!writer_running)
		return;
	pthread_mutex_lock(&qlock);
	writer_stop = true;
	pthread_cond_signal(&qcond);
	pthread_mutex_unlock(&qlock);
	pthread_join(writer, NULL);
	writer_running = false;
}

void
store_close(void)
{
	if (env == NULL)
		return;
	store_stop_writer();
	pthread_mutex_lock(&rlock);
	for (size_t i = 0; i < nrtxns; i++)
		mdb_txn_abort(rtxns[i]);
	free(rtxns);
	rtxns = NULL;
	nrtxns = rtxns_cap = 0;
	pthread_mutex_unlock(&rlock);
	my_rtxn = NULL;
	mdb_env_close(env);
	env = NULL;
}

void
store_get_stats(struct store_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->commits = __atomic_load_n(&n_commits, __ATOMIC_RELAXED);
	st->writes = __atomic_load_n(&n_writes, __ATOMIC_RELAXED);
	st->failed = __atomic_load_n(&n_failed, __ATOMIC_RELAXED);
	st->map_size = map_size;
	if (env == NULL)
		return;
	MDB_envinfo info;
	MDB_stat ms;
	mdb_env_info(env, &info);
	mdb_env_stat(env, &ms);
	st->used_bytes = (info.me_last_pgno + 1) * (size_t)ms.ms_psize;
	MDB_txn *t = store_rtxn();
	if (t == NULL)
		return;
	for (int i = 0; i < STORE_NDB; i++)
		if (mdb_stat(t, dbis[i], &ms) == 0)
			st->entries[i] = ms.ms_entries;
	store_rdone(t);
}
