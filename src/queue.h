/*
 * queue: the in-memory queue over the spool. A qmsg is one spooled message;
 * a qrcpt is one of its recipients still to deliver. A qrcpt lives in one
 * place at a time: a worker's timer heap (waiting for its next attempt), a
 * mailbox (being handed to the worker that owns its site), a lane's ready
 * queue, or a transaction on a connection. Outcomes come back through
 * queue_outcome(), which writes the event, records the state in the spool
 * and either finishes the recipient or schedules the retry.
 */
#ifndef SLUICE_QUEUE_H
#define SLUICE_QUEUE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include "spool.h"

struct worker;
struct smtp_reply;
struct site_limits;

/*
 * Memory: once queued (queue_add), a message is one allocation: the qmsg,
 * then its qrcpts (one per recipient), then the envelope's arrays and
 * strings (sm.rcpts, sm.meta, addresses ...). Its members must not be
 * freed or replaced one by one after queue_add; scalars (a recipient's
 * state, attempts, next_ms) change in place under qmsg_lock(). A qrcpt is
 * never freed on its own: letting go of one is qmsg_unref(r->msg) (or
 * queue_forget / queue_drop / queue_outcome, which do it).
 *
 * A million queued one-recipient messages are a million of these blocks,
 * so they come from slabs apart from short-lived allocations (qalloc.h)
 * and are kept small: no mutex of their own (qmsg_lock hashes the
 * message to one of a fixed set), the meta value "from_domain" points into
 * the sender when it is the sender's domain, and a Message-ID of the shape
 * sluice generates, "<ID@HOST>", is not stored: its meta entry has the key
 * QMSG_MID_KEY and the value HOST (interned), and qmsg_meta() rebuilds it.
 * Read meta values through qmsg_meta / qmsg_meta_at, not sm.meta[] directly.
 */
struct qmsg {
	struct spool_msg sm;           /* envelope, recipients' stored state */
	atomic_int refs;               /* qrcpts alive + temporary holders */
	atomic_int left;               /* recipients not finished */
	struct qmsg *hnext;            /* global id hash chain */
	bool deleted;                  /* DELETE /v1/messages/ID: drop as seen */
	bool packed;                   /* one block with its qrcpts and strings */
	uint32_t blksz;                /* packed: the block's size (qalloc.h) */
};

/* The lock of m's mutable state (sm.rcpts[] updates, status records). */
void qmsg_lock(const struct qmsg *m);
void qmsg_unlock(const struct qmsg *m);

/* Room for a rebuilt Message-ID: "<" ID "@" HOST ">" and its NUL. */
#define QMSG_META_BUF (QID_LEN + 260)
/* m's meta value for key, or NULL; buf holds a rebuilt one. */
const char *qmsg_meta(const struct qmsg *m, const char *key, char buf[QMSG_META_BUF]);
/* Value of m's i-th meta entry (key: m->sm.meta[i].key). */
const char *qmsg_meta_at(const struct qmsg *m, int i, char buf[QMSG_META_BUF]);

struct qrcpt {
	struct qmsg *msg;
	uint32_t idx;                  /* into msg->sm.rcpts */
	uint32_t heap_idx;             /* position in a sched heap, or UINT32_MAX */
	int64_t due_ms;                /* next attempt */
	TAILQ_ENTRY(qrcpt) link;       /* in a lane's ready queue */
};
TAILQ_HEAD(qrcpt_list, qrcpt);

static inline const char *qrcpt_addr(const struct qrcpt *r) { return r->msg->sm.rcpts[r->idx].addr; }
const char *qrcpt_domain(const struct qrcpt *r);

/* Facts about an attempt, for events and DSNs. */
struct attempt_info {
	const char *site;
	const char *mx;                /* MX host name */
	const char *mx_addr;           /* its IP */
	const char *source;            /* source name */
	const char *source_addr;       /* bound local IP */
	const struct site_limits *lim; /* retry-after, bounce-after of the site */
	bool tls;                      /* the attempt used TLS */
	bool admin;                    /* an operator's bounce, not a reply: the
	                                  suppression list does not learn from it */
};

void queue_init(void);
/* Set at graceful stop: no new transactions start; routed recipients are
 * let go from memory (they stay in the spool). */
extern atomic_bool queue_stopping;
/* Transactions on the wire now (graceful stop waits for them). */
extern atomic_int queue_inflight;
void queue_shutdown(void);

/*
 * Take a freshly spooled (or reloaded) message into the queue. Its queued
 * recipients are scheduled on the calling worker (now, or at their stored
 * next-attempt time). Takes ownership of m.
 */
void queue_add(struct qmsg *m);
struct qmsg *qmsg_new(void);          /* zeroed, refs = 1 (the caller's) */
void qmsg_unref(struct qmsg *m);

/* Scan the spool at startup and queue everything, spread over the workers. */
long queue_load_spool(void);

/* Per-worker timer heap. */
void sched_init(struct worker *w);
void sched_free(struct worker *w);
/* Schedule r on the current worker at due_ms (wall clock). */
void sched_at(struct qrcpt *r, int64_t due_ms);

/*
 * A recipient is due: route it (static route or MX lookup -> site), pick its
 * source from the message's pool and hand it to the site's owner worker.
 * Runs on any worker.
 */
void queue_route(struct qrcpt *r);
/* Forget which DNS answers this worker sent to sites (reload, exit). */
void queue_route_reset(void);

/*
 * The result of an attempt for r (on the site owner's worker): 2xx =
 * delivered, 4xx = transient (retry per retry-after, or expired past
 * bounce-after), 5xx = bounce. Frees r when it is finished.
 */
void queue_outcome(struct qrcpt *r, const struct smtp_reply *reply,
    const struct attempt_info *ai);

/* Counters for /v1/status and /v1/queue (approximate while running). */
struct queue_stats {
	atomic_long messages, recipients;    /* in the queue now */
	atomic_long received, delivered, transient, bounced, expired;
	atomic_long scheduled;               /* waiting in timer heaps */
	atomic_llong oldest_ms;              /* maintained lazily */
};
extern struct queue_stats qstats;

/* Messages by id (control API). Returns a referenced qmsg or NULL. */
struct qmsg *queue_find(const char *id);
/* Delete a message: its recipients are dropped (no DSN) as they surface. */
int queue_delete(const char *id);
/* Delete every queued message match() accepts (control thread; match runs
 * under the queue's index lock). Returns how many. */
long queue_delete_where(bool (*match)(const struct spool_msg *sm, void *arg), void *arg);

/* Let r go from memory only (shutdown): the spool still has it. */
void queue_forget(struct qrcpt *r);
/* Finish r without an attempt (deleted message, administrative bounce). */
void queue_drop(struct qrcpt *r, enum rcpt_state state);
/* Recipients of m still in this worker's timer heap are dropped (DELETE). */
void sched_purge(struct qmsg *m);

/* Generate and queue a DSN for a failed recipient (dsn.c). */
void dsn_queue_failure(struct qmsg *m, int idx, const struct smtp_reply *reply,
    const struct attempt_info *ai, bool expired);

#endif
