/*
 * worker: the event-loop threads and the blocking-job pool.
 *
 * N workers each run their own event_base. A worker owns the sites that
 * hash to it (site_owner()), so per-site state needs no lock; other threads
 * hand work to it with worker_post(), a mutex-protected mailbox plus a
 * wake-up event. Blocking work (fsync, DKIM signing, file reads) runs on
 * the job pool: jobs_submit() runs `work` on a pool thread and then `done`
 * back on the submitting worker's loop.
 */
#ifndef SLUICE_WORKER_H
#define SLUICE_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct dns;
struct sched;
struct site_table;

struct worker {
	int idx;
	pthread_t thread;
	struct event_base *base;
	struct dns *dns;               /* this loop's resolver (dns.h) */
	struct sched *sched;           /* this loop's timer heap of recipients (queue.h) */
	struct site_table *sites;      /* sites owned by this worker (site.h) */
	/* mailbox */
	pthread_mutex_t mbox_lock;
	struct mbox_item *mbox_head, *mbox_tail;
	struct event *mbox_ev;
	bool stopping;
};

extern struct worker **workers;
extern int nworkers;

/*
 * Write a plain-socket bufferevent's output to fd now, while its write
 * event is off (smtp_server.c, smtp_client.c: one writev per batch instead
 * of arming the write event per reply). True when all of it went; false
 * when the socket took less (or failed): the caller arms the write event,
 * and libevent finishes or reports the error.
 */
struct bufferevent;
bool bev_write_now(struct bufferevent *bev, int fd);

/* The worker whose loop runs on this thread, or NULL (main, pool threads). */
struct worker *worker_self(void);
/* The worker that owns a site name (hash), stable while nworkers is. */
struct worker *worker_for_key(const char *key);

typedef void (*worker_fn)(void *arg);
/* Run fn(arg) on w's loop thread, soon. Safe from any thread. */
void worker_post(struct worker *w, worker_fn fn, void *arg);

/* Start n workers: each runs init_fn(w) on its own thread, then its loop,
 * then fini_fn(w) on the same thread once the loop has stopped. */
void workers_start(int n, void (*init_fn)(struct worker *), void (*fini_fn)(struct worker *));
/* Ask every loop to exit once its pending work is done and wait for them. */
void workers_stop(void);
/* Free the loops after workers_stop (and after every event on them is freed). */
void workers_free(void);

/* Blocking job pool. */
void jobs_start(int nthreads);
void jobs_stop(void);
/* work(arg) on a pool thread, then done(arg) on the calling worker's loop
 * (or on the pool thread when called from outside a worker). After
 * jobs_stop, work runs on the calling thread. */
void jobs_submit(worker_fn work, worker_fn done, void *arg);

#endif
