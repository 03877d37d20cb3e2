/*
 * store: the LMDB intelligence store (suppression, warm-up counters,
 * engagement, segments, campaigns, bandit counts).
 *
 * One environment under the `store` directory, one named database per
 * kind of record. Reads happen on any thread in a read-only transaction
 * (store_rtxn(): one per thread, reset and renewed, so a lookup costs
 * about a microsecond). Writes never happen on a loop thread: they are
 * queued to the single writer thread, which applies everything queued so
 * far in one transaction and commits it (one fsync per batch), then runs
 * each write's `done` callback — on the worker loop that queued the
 * write, like jobs_submit(), or on the writer thread when the caller was
 * not a worker. store_write_wait() blocks until the write is durable (for
 * the control thread and startup code, never a loop).
 */
#ifndef SLUICE_STORE_H
#define SLUICE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

enum store_db {
	DB_META,        /* schema version and small settings */
	DB_SUPPRESS,    /* normalised address (+ scope) -> suppression record */
	DB_SUPPRESS_T,  /* big-endian time + address -> "" (listing by time) */
	DB_WARMUP,      /* source \0 provider \0 day -> count */
	DB_RCPT,        /* address -> engagement record */
	DB_SEGMENT,     /* segment name -> segment record (prior histogram) */
	DB_SEGMEMBER,   /* segment \0 address -> "" */
	DB_RCPTSEG,     /* address -> segment name */
	DB_CAMPAIGN,    /* campaign id -> campaign record */
	DB_CRCPT,       /* campaign \0 seq -> recipient of a campaign */
	DB_BANDIT,      /* campaign \0 segment \0 variant -> counts */
	DB_SOFTBOUNCE,  /* address -> consecutive soft bounces */
	DB_VERP,        /* queue id + recipient index -> what was sent (verp.h) */
	DB_CSCHED,      /* big-endian send time + campaign \0 address -> batch (the scheduled queue) */
	DB_CVARIANT,    /* campaign \0 address -> variant sent (bandit.h) */
	DB_SUNSET,      /* address -> sunset state: since, re-engagement sends (hygiene.h) */
	DB_DOMHEALTH,   /* domain -> spam-trap hits, last time without MX (hygiene.h) */
	STORE_NDB
};

/* Open (creating the directory) and start the writer thread. map_size is
 * the largest the store may grow to (sparse, not allocated up front). */
int store_open(const char *dir, size_t map_size, char *err, size_t errlen);
/* Commit what is queued and stop the writer (at graceful stop, while the
 * loops still run the done callbacks); later writes fail at once. */
void store_stop_writer(void);
/* Then, with every other thread stopped: close the environment. */
void store_close(void);
bool store_is_open(void);
MDB_env *store_env(void);
MDB_dbi store_dbi(enum store_db db);

/* This thread's read transaction, renewed: valid until store_rdone(). Do
 * not keep pointers into it after store_rdone(). NULL when the store is
 * not open. */
MDB_txn *store_rtxn(void);
void store_rdone(MDB_txn *txn);
/* One lookup, copied out: 1 found (value copied up to cap, *len = full
 * length), 0 not found, -1 error. */
int store_get(enum store_db db, const void *key, size_t klen, void *val, size_t cap, size_t *len);

/* A write runs fn(txn, arg) inside the writer's batch transaction; fn
 * checks its input before writing and returns 0, or an errno value (> 0)
 * to refuse (logged; the batch commits the others), or the LMDB error of a
 * failed mdb_put/mdb_del (< 0: the whole batch fails). done(arg, ok) runs
 * after the commit, ok false when fn or the commit failed. */
typedef int (*store_write_fn)(MDB_txn *txn, void *arg);
typedef void (*store_done_fn)(void *arg, bool ok);
void store_write(store_write_fn fn, store_done_fn done, void *arg);
/* Block until fn has run and its batch is durable; returns ok. */
bool store_write_wait(store_write_fn fn, void *arg);
/* Simple queued writes (key and value copied). */
void store_put(enum store_db db, const void *key, size_t klen, const void *val, size_t vlen);
void store_del(enum store_db db, const void *key, size_t klen);
/* Wait until everything queued before this call is durable. */
void store_flush(void);
/* Writes queued and not yet committed (for back-pressure in bulk loads). */
size_t store_backlog(void);

/* Figures for status output. */
struct store_stats {
	uint64_t commits, writes, failed;
	size_t map_size, used_bytes;
	size_t entries[STORE_NDB];
};
void store_get_stats(struct store_stats *st);
const char *store_db_name(enum store_db db);

#endif
