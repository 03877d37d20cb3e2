/*
 * worker: event-loop threads, their mailboxes, and the blocking-job pool.
 * A mailbox is a mutex-protected FIFO plus one event made active by the
 * poster; the loop drains the whole FIFO per wake-up, so a burst of posts
 * costs one wake-up.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "log.h"
#include "util.h"
#include "worker.h"

struct mbox_item {
	worker_fn fn;
	void *arg;
	struct mbox_item *next;
};

struct worker **workers;
int nworkers;
static __thread struct worker *self;
static void (*worker_init_fn)(struct worker *);
static void (*worker_fini_fn)(struct worker *);

struct worker *
worker_self(void)
{
	return self;
}

struct worker *
worker_for_key(const char *key)
{
	return workers[hash_str(key) % (uint64_t)nworkers];
}

static void
mbox_drain(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct mbox_item *it;

	pthread_mutex_lock(&w->mbox_lock);
	it = w->mbox_head;
	w->mbox_head = w->mbox_tail = NULL;
	pthread_mutex_unlock(&w->mbox_lock);
	while (it) {
		struct mbox_item *next = it->next;
		it->fn(it->arg);
		free(it);
		it = next;
	}
}

void
worker_post(struct worker *w, worker_fn fn, void *arg)
{
	struct mbox_item *it = xmalloc(sizeof(*it));
	bool wake;

	it->fn = fn;
	it->arg = arg;
	it->next = NULL;
	pthread_mutex_lock(&w->mbox_lock);
	wake = w->mbox_head == NULL;
	if (w->mbox_tail)
		w->mbox_tail->next = it;
	else
		w->mbox_head = it;
	w->mbox_tail = it;
	pthread_mutex_unlock(&w->mbox_lock);
	if (wake)
		event_active(w->mbox_ev, EV_READ, 0);
}

bool
bev_write_now(struct bufferevent *bev, int fd)
{
	struct evbuffer *out = bufferevent_get_output(bev);

	/* the bufferevent keeps its output's front frozen: thaw it for the
	 * write, as libevent's own write callback does (a sendfile segment
	 * takes a call of its own, hence the loop) */
	evbuffer_unfreeze(out, 1);
	while (evbuffer_get_length(out) > 0 && evbuffer_write(out, fd) > 0)
		;
	evbuffer_freeze(out, 1);
	return evbuffer_get_length(out) == 0;
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;

	self = w;
	acct_batch_start(w->base);
	if (worker_init_fn)
		worker_init_fn(w);
	event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
	/* run what was posted while stopping */
	mbox_drain(-1, 0, w);
	if (worker_fini_fn)
		worker_fini_fn(w);
	mbox_drain(-1, 0, w);
	acct_batch_stop();
	return NULL;
}

void
workers_start(int n, void (*init_fn)(struct worker *), void (*fini_fn)(struct worker *))
{
	worker_init_fn = init_fn;
	worker_fini_fn = fini_fn;
	workers = xcalloc((size_t)n, sizeof(*workers));
	for (int i = 0; i < n; i++) {
		struct worker *w = xcalloc(1, sizeof(*w));
		w->idx = i;
		w->base = event_base_new();
		if (w->base == NULL)
			fatal("event=fatal msg=\"event_base_new failed\"");
		pthread_mutex_init(&w->mbox_lock, NULL);
		w->mbox_ev = event_new(w->base, -1, EV_PERSIST, mbox_drain, w);
		event_add(w->mbox_ev, NULL);
		workers[i] = w;
	}
	nworkers = n;   /* other threads read it: only once workers[] is whole */
	for (int i = 0; i < n; i++) {
		int rc = pthread_create(&workers[i]->thread, NULL, worker_main, workers[i]);
		if (rc != 0)
			fatal("event=fatal msg=\"pthread_create failed\" err=\"%s\"", strerror(rc));
	}
}

static void
worker_exit(void *arg)
{
	struct worker *w = arg;
	event_base_loopexit(w->base, NULL);
}

void
workers_stop(void)
{
	for (int i = 0; i < nworkers; i++)
		worker_post(workers[i], worker_exit, workers[i]);
	for (int i = 0; i < nworkers; i++)
		pthread_join(workers[i]->thread, NULL);
}

void
workers_free(void)
{
	for (int i = 0; i < nworkers; i++) {
		struct worker *w = workers[i];
		event_free(w->mbox_ev);
		event_base_free(w->base);
		pthread_mutex_destroy(&w->mbox_lock);
		free(w);
	}
	free(workers);
	workers = NULL;
	nworkers = 0;
}

/* Job pool */

struct job {
	worker_fn work, done;
	void *arg;
	struct worker *origin;
	struct job *next;
};

static pthread_mutex_t jobs_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t jobs_cond = PTHREAD_COND_INITIALIZER;
static struct job *jobs_head, *jobs_tail;
static pthread_t *job_threads;
static int njob_threads;
static bool jobs_stopping;
static bool jobs_stopped;           /* jobs_submit runs the job itself */

/* Run a job here, then its done where it belongs. */
static void
job_run(struct job *j)
{
	j->work(j->arg);
	if (j->done) {
		if (j->origin)
			worker_post(j->origin, j->done, j->arg);
		else
			j->done(j->arg);
	}
	free(j);
}

static void *
job_main(void *arg)
{
	for (;;) {
		struct job *j;

		pthread_mutex_lock(&jobs_lock);
		while (jobs_head == NULL && !jobs_stopping)
			pthread_cond_wait(&jobs_cond, &jobs_lock);
		j = jobs_head;
		if (j == NULL) {
			pthread_mutex_unlock(&jobs_lock);
			return NULL;
		}
		jobs_head = j->next;
		if (jobs_head == NULL)
			jobs_tail = NULL;
		pthread_mutex_unlock(&jobs_lock);
		job_run(j);
	}
}

void
jobs_start(int n)
{
	jobs_stopping = false;
	jobs_stopped = false;
	njob_threads = n;
	job_threads = xcalloc((size_t)n, sizeof(*job_threads));
	for (int i = 0; i < n; i++) {
		int rc = pthread_create(&job_threads[i], NULL, job_main, NULL);
		if (rc != 0)
			fatal("event=fatal msg=\"pthread_create failed\" err=\"%s\"", strerror(rc));
	}
}

void
jobs_stop(void)
{
	pthread_mutex_lock(&jobs_lock);
	jobs_stopping = true;
	pthread_cond_broadcast(&jobs_cond);
	pthread_mutex_unlock(&jobs_lock);
	for (int i = 0; i < njob_threads; i++)
		pthread_join(job_threads[i], NULL);
	free(job_threads);
	job_threads = NULL;
	njob_threads = 0;
	/* from now on a job (a DSN's flush while the last deliveries end)
	 * runs where it is submitted; any queued after the threads left too */
	pthread_mutex_lock(&jobs_lock);
	jobs_stopped = true;
	struct job *j = jobs_head;
	jobs_head = jobs_tail = NULL;
	pthread_mutex_unlock(&jobs_lock);
	for (struct job *next; j; j = next) {
		next = j->next;
		job_run(j);
	}
}

void
jobs_submit(worker_fn work, worker_fn done, void *arg)
{
	struct job *j = xmalloc(sizeof(*j));

	j->work = work;
	j->done = done;
	j->arg = arg;
	j->origin = worker_self();
	j->next = NULL;
	pthread_mutex_lock(&jobs_lock);
	if (jobs_stopped) {
		pthread_mutex_unlock(&jobs_lock);
		job_run(j);
		return;
	}
	if (jobs_tail)
		jobs_tail->next = j;
	else
		jobs_head = j;
	jobs_tail = j;
	pthread_cond_signal(&jobs_cond);
	pthread_mutex_unlock(&jobs_lock);
}
