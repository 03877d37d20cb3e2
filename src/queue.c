/*
 * queue: recipients between attempts. Each worker keeps a binary min-heap
 * of the recipients waiting on it, ordered by next attempt, and one timer
 * for the earliest. When a recipient is due it is routed (static route or
 * MX lookup) to its site's owner worker. Outcomes come back here and
 * become events, spool status records and retries.
 *
 * Durability of outcomes: a delivered or bounced recipient of a message
 * with others left is recorded by an appended status record (no fsync);
 * the message file is removed when its last recipient is done. A crash can
 * lose a record written just before it: that recipient is tried again,
 * the documented duplicate window.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "bounce.h"
#include "campaign.h"
#include "conf.h"
#include "dns.h"
#include "engage.h"
#include "hygiene.h"
#include "log.h"
#include "qalloc.h"
#include "queue.h"
#include "site.h"
#include "smtp_parse.h"
#include "suppress.h"
#include "util.h"
#include "verp.h"
#include "worker.h"

struct queue_stats qstats;
atomic_bool queue_stopping;
atomic_int queue_inflight;

/* Messages by id */
#define ID_BUCKETS 65536
static struct qmsg **id_hash;
static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned
id_bucket(const char *id)
{
	return (unsigned)(hash_str(id) % ID_BUCKETS);
}

void
queue_init(void)
{
	id_hash = xcalloc(ID_BUCKETS, sizeof(*id_hash));
}

void
queue_shutdown(void)
{
	/* messages still referenced belong to heaps and lanes freed by their owners */
	free(id_hash);
	id_hash = NULL;
}

/*
 * Message locks: a fixed table, a message hashed to one by its address (a
 * mutex in each message was 40 of its bytes). Nobody holds two: finish,
 * queue_outcome and the control API's message view take one, touch that
 * message's recipients and status records, and let go.
 */
#define MSG_LOCKS 256
static pthread_mutex_t msg_locks[MSG_LOCKS];
static pthread_once_t msg_locks_once = PTHREAD_ONCE_INIT;

static void
msg_locks_init(void)
{
	for (int i = 0; i < MSG_LOCKS; i++)
		pthread_mutex_init(&msg_locks[i], NULL);
}

static pthread_mutex_t *
msg_lock_of(const struct qmsg *m)
{
	pthread_once(&msg_locks_once, msg_locks_init);
	/* Fibonacci hashing of the address: its low bits are alignment */
	uint64_t h = (uint64_t)(uintptr_t)m * 0x9E3779B97F4A7C15ull;
	return &msg_locks[h >> 56];
}

void
qmsg_lock(const struct qmsg *m)
{
	pthread_mutex_lock(msg_lock_of(m));
}

void
qmsg_unlock(const struct qmsg *m)
{
	pthread_mutex_unlock(msg_lock_of(m));
}

struct qmsg *
qmsg_new(void)
{
	struct qmsg *m = xcalloc(1, sizeof(*m));
	atomic_init(&m->refs, 1);
	return m;
}

void
qmsg_unref(struct qmsg *m)
{
	if (atomic_fetch_sub(&m->refs, 1) != 1)
		return;
	pthread_mutex_lock(&id_lock);
	if (id_hash) {
		struct qmsg **pp = &id_hash[id_bucket(m->sm.id)];
		while (*pp && *pp != m)
			pp = &(*pp)->hnext;
		if (*pp)
			*pp = m->hnext;
	}
	pthread_mutex_unlock(&id_lock);
	atomic_fetch_sub(&qstats.messages, 1);
	if (m->packed)
		qfree(m, m->blksz);
	else {
		spool_msg_free(&m->sm);
		free(m);
	}
}

/*
 * Packing: a queued message as one block (see queue.h). A million queued
 * recipients are a million qrcpts; allocated one by one, with their address
 * strings and the message's envelope strings each in its own malloc chunk,
 * they cost about twice what the bytes need.
 */
static const char *const common_keys[] = { "message_id", "from_domain" };
/* The key of an elided Message-ID "<ID@HOST>" (its value is HOST): the
 * same text as "message_id", told apart by its address. */
static const char mid_key[] = "message_id";

/*
 * Host names of elided Message-IDs, interned (never freed): in practice
 * the configured hostname, so a handful. Past MID_HOSTS the Message-ID is
 * simply stored.
 */
#define MID_HOSTS 64
static const char *mid_hosts[MID_HOSTS];
static int nmid_hosts;
static pthread_mutex_t mid_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *
mid_host_intern(const char *h, size_t len)
{
	const char *found = NULL;

	pthread_mutex_lock(&mid_lock);
	for (int i = 0; i < nmid_hosts && found == NULL; i++)
		if (strncmp(mid_hosts[i], h, len) == 0 && mid_hosts[i][len] == '\0')
			found = mid_hosts[i];
	if (found == NULL && nmid_hosts < MID_HOSTS)
		found = mid_hosts[nmid_hosts++] = xstrndup(h, len);
	pthread_mutex_unlock(&mid_lock);
	return found;
}

/* HOST (interned) when v is "<ID@HOST>" for m's own id, else NULL. */
static const char *
mid_elide(const struct spool_msg *m, const char *v)
{
	size_t len = strlen(v);

	if (len < QID_LEN + 4 || v[0] != '<' || memcmp(v + 1, m->id, QID_LEN) != 0 ||
	    v[1 + QID_LEN] != '@' || v[len - 1] != '>' || len - QID_LEN - 3 > 255)
		return NULL;
	const char *h = v + QID_LEN + 2;
	size_t hlen = len - QID_LEN - 3;
	if (memchr(h, '>', hlen) != NULL)
		return NULL;
	return mid_host_intern(h, hlen);
}

/* The sender's domain when v is it (from_domain usually is), else NULL. */
static const char *
sender_domain_is(const char *sender, const char *v)
{
	const char *at = sender ? strrchr(sender, '@') : NULL;

	return at && strcmp(at + 1, v) == 0 ? at + 1 : NULL;
}

const char *
qmsg_meta_at(const struct qmsg *m, int i, char buf[QMSG_META_BUF])
{
	const struct spool_meta *e = &m->sm.meta[i];

	if (e->key != mid_key)
		return e->value;
	snprintf(buf, QMSG_META_BUF, "<%s@%s>", m->sm.id, e->value);
	return buf;
}

const char *
qmsg_meta(const struct qmsg *m, const char *key, char buf[QMSG_META_BUF])
{
	for (int i = 0; i < m->sm.nmeta; i++)
		if (strcmp(m->sm.meta[i].key, key) == 0)
			return qmsg_meta_at(m, i, buf);
	return NULL;
}

static size_t
str_need(const char *s)
{
	return s ? strlen(s) + 1 : 0;
}

static char *
str_put(char **at, const char *s)
{
	if (s == NULL)
		return NULL;
	size_t n = strlen(s) + 1;
	char *p = memcpy(*at, s, n);
	*at += n;
	return p;
}

static const char *
common_key(const char *k)
{
	for (size_t i = 0; i < ARRAY_SIZE(common_keys); i++)
		if (strcmp(k, common_keys[i]) == 0)
			return common_keys[i];
	return NULL;
}

/* How a meta entry is packed: key and value stored, shared or elided. */
struct meta_plan {
	const char *key;                /* shared key, or NULL: stored */
	const char *value;              /* shared value (or mid host), or NULL: stored */
};

/*
 * A packed copy of o's envelope, with refs = 1; o is left as it is. The
 * block: qmsg, qrcpts, spool_rcpts, spool_metas, then the strings.
 */
static struct qmsg *
pack_sm(const struct spool_msg *o)
{
	size_t n = (size_t)o->nrcpt, nm = (size_t)o->nmeta;
	size_t sz = sizeof(struct qmsg) + n * sizeof(struct qrcpt) +
	    n * sizeof(struct spool_rcpt) + nm * sizeof(struct spool_meta);
	struct meta_plan plan_local[8], *plan = nm <= 8 ? plan_local : xmalloc(nm * sizeof(*plan));

	sz += str_need(o->sender) + str_need(o->pool) + str_need(o->campaign) +
	    str_need(o->envid);
	for (size_t i = 0; i < nm; i++) {
		const char *k = o->meta[i].key, *v = o->meta[i].value;
		plan[i].key = common_key(k);
		plan[i].value = NULL;
		if (plan[i].key == common_keys[0] && (plan[i].value = mid_elide(o, v)) != NULL)
			plan[i].key = mid_key;
		else if (plan[i].key == common_keys[1])
			plan[i].value = sender_domain_is(o->sender, v);
		sz += (plan[i].key ? 0 : str_need(k)) + (plan[i].value ? 0 : str_need(v));
	}
	for (size_t i = 0; i < n; i++)
		sz += str_need(o->rcpts[i].addr) + str_need(o->rcpts[i].orcpt);

	struct qmsg *m = qalloc(sz);
	memset(m, 0, sizeof(*m));
	struct qrcpt *q = (struct qrcpt *)(m + 1);
	struct spool_rcpt *rc = (struct spool_rcpt *)(q + n);
	struct spool_meta *me = (struct spool_meta *)(rc + n);
	char *at = (char *)(me + nm);

	memset(q, 0, n * sizeof(*q));
	m->sm = *o;
	m->sm.rcpts = n ? rc : NULL;
	m->sm.meta = nm ? me : NULL;
	m->sm.sender = str_put(&at, o->sender);
	m->sm.pool = str_put(&at, o->pool);
	m->sm.campaign = str_put(&at, o->campaign);
	m->sm.envid = str_put(&at, o->envid);
	for (size_t i = 0; i < nm; i++) {
		me[i].key = plan[i].key ? (char *)plan[i].key : str_put(&at, o->meta[i].key);
		if (plan[i].key == common_keys[1] && plan[i].value)
			me[i].value = (char *)sender_domain_is(m->sm.sender, plan[i].value);
		else
			me[i].value = plan[i].value ? (char *)plan[i].value : str_put(&at, o->meta[i].value);
	}
	for (size_t i = 0; i < n; i++) {
		rc[i] = o->rcpts[i];
		rc[i].addr = str_put(&at, o->rcpts[i].addr);
		rc[i].orcpt = str_put(&at, o->rcpts[i].orcpt);
	}
	atomic_init(&m->refs, 1);
	m->packed = true;
	m->blksz = (uint32_t)sz;
	if (plan != plan_local)
		free(plan);
	return m;
}

/* Returns the packed copy of old (which is freed); old must be unshared. */
static struct qmsg *
qmsg_pack(struct qmsg *old)
{
	if (old->packed)
		return old;
	struct qmsg *m = pack_sm(&old->sm);
	atomic_init(&m->refs, atomic_load(&old->refs));
	m->deleted = old->deleted;
	spool_msg_free(&old->sm);
	free(old);
	return m;
}

static struct qrcpt *
qmsg_rcpts(struct qmsg *m)
{
	return (struct qrcpt *)(m + 1);
}

struct qmsg *
queue_find(const char *id)
{
	struct qmsg *m;

	pthread_mutex_lock(&id_lock);
	for (m = id_hash[id_bucket(id)]; m; m = m->hnext)
		if (strcmp(m->sm.id, id) == 0) {
			atomic_fetch_add(&m->refs, 1);
			break;
		}
	pthread_mutex_unlock(&id_lock);
	return m;
}

const char *
qrcpt_domain(const struct qrcpt *r)
{
	const char *a = qrcpt_addr(r);
	const char *at = strrchr(a, '@');
	return at ? at + 1 : a;
}

/* Timer heap */

struct sched {
	struct qrcpt **heap;
	uint32_t n, cap;
	struct event *timer;
	int64_t armed_ms;               /* when the timer fires, 0 = not armed */
};

static bool
before(const struct qrcpt *a, const struct qrcpt *b)
{
	if (a->due_ms != b->due_ms)
		return a->due_ms < b->due_ms;
	return a->msg->sm.priority > b->msg->sm.priority;
}

static void
heap_set(struct sched *s, uint32_t i, struct qrcpt *r)
{
	s->heap[i] = r;
	r->heap_idx = i;
}

static void
sift_up(struct sched *s, uint32_t i)
{
	struct qrcpt *r = s->heap[i];
	while (i > 0) {
		uint32_t p = (i - 1) / 2;
		if (!before(r, s->heap[p]))
			break;
		heap_set(s, i, s->heap[p]);
		i = p;
	}
	heap_set(s, i, r);
}

static void
sift_down(struct sched *s, uint32_t i)
{
	struct qrcpt *r = s->heap[i];
	for (;;) {
		uint32_t c = 2 * i + 1;
		if (c >= s->n)
			break;
		if (c + 1 < s->n && before(s->heap[c + 1], s->heap[c]))
			c++;
		if (!before(s->heap[c], r))
			break;
		heap_set(s, i, s->heap[c]);
		i = c;
	}
	heap_set(s, i, r);
}

static struct qrcpt *
heap_remove(struct sched *s, uint32_t i)
{
	struct qrcpt *r = s->heap[i];
	s->n--;
	if (i != s->n) {
		heap_set(s, i, s->heap[s->n]);
		sift_down(s, i);
		sift_up(s, s->heap[i]->heap_idx);
	}
	r->heap_idx = UINT32_MAX;
	atomic_fetch_sub(&qstats.scheduled, 1);
	return r;
}

static void
sched_arm(struct sched *s)
{
	if (s->n == 0) {
		if (s->armed_ms) {
			evtimer_del(s->timer);
			s->armed_ms = 0;
		}
		return;
	}
	int64_t due = s->heap[0]->due_ms;
	if (s->armed_ms && s->armed_ms <= due)
		return;
	int64_t d = due - now_ms();
	if (d < 0)
		d = 0;
	struct timeval tv = { .tv_sec = d / 1000, .tv_usec = (d % 1000) * 1000 };
	evtimer_add(s->timer, &tv);
	s->armed_ms = due;
}

static void
sched_fire(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct sched *s = w->sched;
	int64_t now = now_ms();
	int budget = 20000;             /* keep the loop responsive with huge backlogs */

	s->armed_ms = 0;
	while (s->n > 0 && s->heap[0]->due_ms <= now && budget-- > 0) {
		struct qrcpt *r = heap_remove(s, 0);
		queue_route(r);
	}
	if (budget <= 0 && s->n > 0 && s->heap[0]->due_ms <= now) {
		struct timeval tv = { 0, 0 };
		evtimer_add(s->timer, &tv);
		s->armed_ms = now;
		return;
	}
	sched_arm(s);
}

void
sched_init(struct worker *w)
{
	struct sched *s = xcalloc(1, sizeof(*s));
	s->timer = evtimer_new(w->base, sched_fire, w);
	w->sched = s;
}

void
sched_free(struct worker *w)
{
	struct sched *s = w->sched;
	if (s == NULL)
		return;
	for (uint32_t i = 0; i < s->n; i++)
		qmsg_unref(s->heap[i]->msg);
	atomic_fetch_sub(&qstats.scheduled, (long)s->n);
	queue_route_reset();
	event_free(s->timer);
	free(s->heap);
	free(s);
	w->sched = NULL;
}

void
sched_at(struct qrcpt *r, int64_t due_ms)
{
	struct worker *w = worker_self();
	struct sched *s = w->sched;

	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 1024;
		s->heap = xrealloc(s->heap, sizeof(*s->heap) * s->cap);
	}
	r->due_ms = due_ms;
	heap_set(s, s->n++, r);
	sift_up(s, r->heap_idx);
	atomic_fetch_add(&qstats.scheduled, 1);
	sched_arm(s);
}

static void
finish(struct qrcpt *r, enum rcpt_state state)
{
	struct qmsg *m = r->msg;

	qmsg_lock(m);
	struct spool_rcpt *sr = &m->sm.rcpts[r->idx];
	sr->state = (uint8_t)state;
	if (state == RS_DELETED)
		campaign_note_outcome(&m->sm, (int)r->idx, RS_DELETED);
	if (atomic_fetch_sub(&m->left, 1) == 1) {
		if (spool_done(&m->sm, (int)r->idx, state, sr->attempts) < 0)
			log_warn("event=spool-remove-failed id=%s", m->sm.id);
	} else
		spool_record(&m->sm, (int)r->idx, state, sr->attempts, 0);
	qmsg_unlock(m);
	atomic_fetch_sub(&qstats.recipients, 1);
	qmsg_unref(m);          /* r is part of m */
}

void
queue_forget(struct qrcpt *r)
{
	atomic_fetch_sub(&qstats.recipients, 1);
	qmsg_unref(r->msg);     /* r is part of its message */
}

void
queue_drop(struct qrcpt *r, enum rcpt_state state)
{
	finish(r, state);
}

void
sched_purge(struct qmsg *m)
{
	struct sched *s = worker_self()->sched;

	for (uint32_t i = 0; i < s->n;) {
		if (s->heap[i]->msg == m) {
			struct qrcpt *r = heap_remove(s, i);
			finish(r, RS_DELETED);
			continue;
		}
		i++;
	}
	sched_arm(s);
	qmsg_unref(m);
}

static void
purge_post(struct qmsg *m)
{
	for (int i = 0; i < nworkers; i++) {
		atomic_fetch_add(&m->refs, 1);
		worker_post(workers[i], (worker_fn)sched_purge, m);
	}
}

int
queue_delete(const char *id)
{
	struct qmsg *m = queue_find(id);
	if (m == NULL)
		return -1;
	m->deleted = true;
	log_info("event=message-deleted id=%s", id);
	purge_post(m);
	qmsg_unref(m);
	return 0;
}

/* Recipients of deleted messages in this worker's timer heap are dropped. */
static void
sched_purge_deleted(void *arg)
{
	struct sched *s = worker_self()->sched;

	(void)arg;
	for (uint32_t i = 0; i < s->n;) {
		if (s->heap[i]->msg->deleted) {
			finish(heap_remove(s, i), RS_DELETED);
			continue;
		}
		i++;
	}
	sched_arm(s);
}

long
queue_delete_where(bool (*match)(const struct spool_msg *sm, void *arg), void *arg)
{
	long n = 0;

	pthread_mutex_lock(&id_lock);
	for (unsigned b = 0; id_hash != NULL && b < ID_BUCKETS; b++)
		for (struct qmsg *m = id_hash[b]; m != NULL; m = m->hnext)
			if (!m->deleted && match(&m->sm, arg)) {
				m->deleted = true;
				n++;
			}
	pthread_mutex_unlock(&id_lock);
	/* one pass over each timer heap for all of them; the ones in lanes
	 * are dropped as they come up */
	if (n > 0)
		for (int i = 0; i < nworkers; i++)
			worker_post(workers[i], sched_purge_deleted, NULL);
	return n;
}

void
queue_add(struct qmsg *m)
{
	int64_t now = now_ms();
	int left = 0;

	for (int i = 0; i < m->sm.nrcpt; i++)
		if (m->sm.rcpts[i].state == RS_QUEUED)
			left++;
	m = qmsg_pack(m);
	atomic_store(&m->left, left);
	atomic_fetch_add(&qstats.messages, 1);
	if (left == 0) {
		spool_done(&m->sm, -1, RS_QUEUED, 0);
		qmsg_unref(m);
		return;
	}
	pthread_mutex_lock(&id_lock);
	unsigned b = id_bucket(m->sm.id);
	m->hnext = id_hash[b];
	id_hash[b] = m;
	pthread_mutex_unlock(&id_lock);
	atomic_fetch_add(&m->refs, left);
	atomic_fetch_add(&qstats.recipients, left);
	for (int i = 0; i < m->sm.nrcpt; i++) {
		if (m->sm.rcpts[i].state != RS_QUEUED)
			continue;
		struct qrcpt *r = &qmsg_rcpts(m)[i];
		r->msg = m;
		r->idx = (uint32_t)i;
		r->heap_idx = UINT32_MAX;
		if (m->sm.rcpts[i].next_ms > now)
			sched_at(r, m->sm.rcpts[i].next_ms);
		else
			queue_route(r);
	}
	qmsg_unref(m);  /* the caller's reference */
}

/*
 * Restart: load every spool file, spread the messages over the workers in
 * batches (one hand-off per LOAD_BATCH messages: posting them one by one
 * costs a wake-up of the worker and a lock hand-over each, which was most
 * of a restart with a million messages queued). The spool is read by
 * SCAN_THREADS threads (spool_scan), each with its own batches: enough
 * reads in flight for the disk when the files are not in the page cache.
 */
#define LOAD_BATCH 256
#define SCAN_THREADS 32
/*
 * The scan reads a million messages in seconds, faster than the workers
 * queue and route them; what waits in their mailboxes, and every route in
 * flight (its context holds a copy of the site limits), is memory that a
 * million at once would double the queue's footprint with. The scan
 * threads wait while more than this many recipients are in the pipe.
 */
#define LOAD_INFLIGHT_MAX 4096
static atomic_long load_pending;        /* recipients handed to a worker, not yet queued */
static atomic_long routes_inflight;     /* queue_route .. route_resolved */

struct load_batch {
	int n;
	long nrcpt;                     /* of its messages */
	struct qmsg *m[LOAD_BATCH];
};

struct load_state {
	long loaded;
	int next;
	struct load_batch **batch;     /* one being filled per worker */
};

static void
queue_add_batch(struct load_batch *b)
{
	for (int i = 0; i < b->n; i++) {
		long n = b->m[i]->sm.nrcpt;
		queue_add(b->m[i]);
		atomic_fetch_sub(&load_pending, n);
	}
	free(b);
}

static void
load_flush(struct load_state *ls, int w)
{
	if (ls->batch[w] == NULL)
		return;
	atomic_fetch_add(&load_pending, ls->batch[w]->nrcpt);
	worker_post(workers[w], (worker_fn)queue_add_batch, ls->batch[w]);
	ls->batch[w] = NULL;
	/* at most 50 ms a batch: routes wait for DNS, and with the resolver
	 * down the start must not crawl at its timeouts */
	for (int i = 0; i < 50 &&
	    atomic_load(&load_pending) + atomic_load(&routes_inflight) > LOAD_INFLIGHT_MAX; i++)
		usleep(1000);
}

static void
load_one(struct spool_msg *sm, void *arg)
{
	struct load_state *ls = arg;

	campaign_note_spooled(sm);
	/* packed here, so the loose copy is freed before the next file is
	 * read: the scan outruns the workers, and a million loose envelopes
	 * waiting in their mailboxes would be the process's peak */
	struct qmsg *m = pack_sm(sm);
	spool_msg_free(sm);
	int w = ls->next++ % nworkers;
	if (ls->batch[w] == NULL)
		ls->batch[w] = xcalloc(1, sizeof(struct load_batch));
	ls->batch[w]->m[ls->batch[w]->n++] = m;
	ls->batch[w]->nrcpt += m->sm.nrcpt;
	if (ls->batch[w]->n == LOAD_BATCH)
		load_flush(ls, w);
	ls->loaded++;
}

long
queue_load_spool(void)
{
	struct load_state ls[SCAN_THREADS];
	void *args[SCAN_THREADS];
	long loaded = 0, bad = 0;

	for (int t = 0; t < SCAN_THREADS; t++) {
		ls[t] = (struct load_state){ .next = t };
		ls[t].batch = xcalloc((size_t)nworkers, sizeof(*ls[t].batch));
		args[t] = &ls[t];
	}
	spool_scan(SCAN_THREADS, load_one, args, &bad);
	for (int t = 0; t < SCAN_THREADS; t++) {
		for (int w = 0; w < nworkers; w++)
			load_flush(&ls[t], w);
		free(ls[t].batch);
		loaded += ls[t].loaded;
	}
	log_info("event=spool-loaded messages=%ld discarded=%ld", loaded, bad);
	return loaded;
}

/* Routing */

struct route_ctx {
	struct qrcpt *r;
	char *domain;
	struct site_limits lim;
};

static const char *
pick_source(const struct qmsg *m)
{
	const struct config *c = conf;
	struct pool_conf *p = m->sm.pool ? conf_pool(c, m->sm.pool) : NULL;

	if (p == NULL)
		p = conf_default_pool(c);
	if (p == NULL || p->nmembers == 0)
		return "";
	if (p->nmembers == 1)
		return p->members[0].name;
	int total = 0;
	for (int i = 0; i < p->nmembers; i++)
		total += p->members[i].weight;
	int x = (int)(random() % total);
	for (int i = 0; i < p->nmembers; i++) {
		x -= p->members[i].weight;
		if (x < 0)
			return p->members[i].name;
	}
	return p->members[0].name;
}

/*
 * A DNS answer is big (struct dns_result); the site's owner needs it only
 * when its copy may be older than ours. Each routing worker remembers, per
 * site, the expiry of the answer it last sent.
 */
#define SENT_BUCKETS 4096
struct sent_mx {
	char *site;
	int64_t expires_ms;
	struct sent_mx *next;
};
static __thread struct sent_mx **sent_mx;

static bool
mx_needs_send(const char *site, int64_t expires_ms)
{
	if (sent_mx == NULL)
		sent_mx = xcalloc(SENT_BUCKETS, sizeof(*sent_mx));
	struct sent_mx **b = &sent_mx[hash_str(site) % SENT_BUCKETS], *e;
	for (e = *b; e; e = e->next)
		if (strcmp(e->site, site) == 0)
			break;
	if (e == NULL) {
		e = xcalloc(1, sizeof(*e));
		e->site = xstrdup(site);
		e->next = *b;
		*b = e;
	} else if (e->expires_ms >= expires_ms && e->expires_ms > now_ms())
		return false;
	e->expires_ms = expires_ms;
	return true;
}

/* Forget what was sent (reload: limits and routes may have changed). */
void
queue_route_reset(void)
{
	if (sent_mx == NULL)
		return;
	for (int i = 0; i < SENT_BUCKETS; i++)
		for (struct sent_mx *e = sent_mx[i], *n; e; e = n) {
			n = e->next;
			free(e->site);
			free(e);
		}
	free(sent_mx);
	sent_mx = NULL;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
route_failed(struct route_ctx *rc, const struct dns_result *res)
{
	struct smtp_reply rep;
	struct attempt_info ai = { .site = rc->domain, .lim = &rc->lim };

	/* marketing campaigns skip such a domain for a while (hygiene.h) */
	if (res->status == DNS_NXDOMAIN || res->status == DNS_NULLMX || res->status == DNS_NOHOST)
		hygiene_note_no_mx(rc->domain, now_ms());
	switch (res->status) {
	case DNS_NXDOMAIN:
		smtp_reply_set(&rep, 550, "5.1.2", "Domain %s does not exist", rc->domain);
		break;
	case DNS_NULLMX:
		smtp_reply_set(&rep, 556, "5.1.10", "Domain %s does not accept mail (null MX)", rc->domain);
		break;
	case DNS_NOHOST:
		smtp_reply_set(&rep, 550, "5.1.2", "Domain %s has no MX and no address", rc->domain);
		break;
	default:
		smtp_reply_set(&rep, 451, "4.4.3", "DNS lookup for %s failed: %s", rc->domain,
		    res->errmsg[0] ? res->errmsg : "temporary failure");
		break;
	}
	queue_outcome(rc->r, &rep, &ai);
}

static void
route_resolved(const struct dns_result *res, void *arg)
{
	struct route_ctx *rc = arg;
	struct qrcpt *r = rc->r;

	atomic_fetch_sub(&routes_inflight, 1);
	if (res->status != DNS_OK || res->nhosts == 0) {
		route_failed(rc, res);
		free(rc->domain);
		free(rc);
		return;
	}
	if (atomic_load(&queue_stopping)) {
		queue_forget(r);
		free(rc->domain);
		free(rc);
		return;
	}
	struct site_ticket *t = xcalloc(1, sizeof(*t));
	t->r = r;
	t->domain = rc->domain;
	t->is_route = rc->lim.has_route;
	t->source = xstrdup(pick_source(r->msg));
	if (rc->lim.has_route) {
		/* domains with their own block keep their own queue and limits */
		if (conf_domain(conf, rc->domain) != NULL)
			t->site = xstrdup(rc->domain);
		else
			t->site = xasprintf("route:%s:%u", rc->lim.route.host,
			    rc->lim.route.port ? rc->lim.route.port : (unsigned)rc->lim.smtp_port);
	} else {
		const struct config *c = conf;
		const struct provider_conf *prov = NULL;
		for (int i = 0; i < res->nhosts && prov == NULL; i++)
			prov = conf_provider_for_mx(c, res->hosts[i].name);
		/* a domain with its own block is its own site; otherwise rc->lim
		 * (the defaults) says mx-rollup unless the provider overrides it */
		bool rollup = prov && (prov->lim.set & (1U << L_MX_ROLLUP)) ?
		    prov->lim.mx_rollup : rc->lim.mx_rollup;
		t->prov = prov;
		if (conf_domain(c, rc->domain) != NULL || !rollup)
			t->site = xstrdup(rc->domain);
		else if (prov)
			t->site = xstrdup(prov->name);
		else {
			/* MX rollup: the sorted MX host names name the site */
			char *names[DNS_MAX_HOSTS];
			size_t len = 4;
			for (int i = 0; i < res->nhosts; i++) {
				names[i] = (char *)res->hosts[i].name;
				len += strlen(names[i]) + 1;
			}
			qsort(names, (size_t)res->nhosts, sizeof(char *), cmp_str);
			char *s = xmalloc(len);
			strcpy(s, "mx:");
			for (int i = 0; i < res->nhosts; i++) {
				if (i)
					strcat(s, ",");
				strcat(s, names[i]);
			}
			t->site = s;
		}
	}
	free(rc);
	if (mx_needs_send(t->site, res->expires_ms)) {
		t->mx = xmalloc(sizeof(*t->mx));
		*t->mx = *res;
	}
	site_submit(t);
}

void
queue_route(struct qrcpt *r)
{
	struct worker *w = worker_self();

	if (r->msg->deleted) {
		finish(r, RS_DELETED);
		return;
	}
	if (atomic_load(&queue_stopping)) {
		queue_forget(r);
		return;
	}
	struct route_ctx *rc = xcalloc(1, sizeof(*rc));
	atomic_fetch_add(&routes_inflight, 1);
	rc->r = r;
	rc->domain = str_lower(xstrdup(qrcpt_domain(r)));
	conf_limits(conf, rc->domain, NULL, &rc->lim);
	if (rc->lim.has_route)
		dns_resolve_host(w->dns, rc->lim.route.host, route_resolved, rc);
	else
		dns_resolve_mx(w->dns, rc->domain, route_resolved, rc);
}

/* Outcomes */

static void
outcome_event(const char *type, struct qrcpt *r, const struct smtp_reply *rep,
    const struct attempt_info *ai, int attempt, int64_t next_ms, const struct bounce_class *bcl)
{
	const struct qmsg *m = r->msg;
	struct jbuf j;
	char reply[1200], mb[QMSG_META_BUF];

	smtp_reply_fmt(rep, reply, sizeof(reply));
	jb_init(&j);
	jb_str(&j, "type", type);
	jb_str(&j, "id", m->sm.id);
	jb_str(&j, "message_id", qmsg_meta(m, "message_id", mb));
	jb_str(&j, "sender", m->sm.sender);
	jb_str(&j, "recipient", qrcpt_addr(r));
	jb_str(&j, "campaign", m->sm.campaign);
	/* a campaign message's segment, variant and list-health flag (campaign.c) */
	jb_str(&j, "segment", qmsg_meta(m, "segment", mb));
	jb_str(&j, "variant", qmsg_meta(m, "variant", mb));
	if (qmsg_meta(m, "trap_suspect", mb) != NULL)
		jb_bool(&j, "trap_suspect", true);
	jb_str(&j, "pool", m->sm.pool);
	jb_str(&j, "source", ai->source);
	jb_str(&j, "source_ip", ai->source_addr);
	jb_str(&j, "site", ai->site);
	jb_str(&j, "mx", ai->mx);
	jb_str(&j, "mx_ip", ai->mx_addr);
	jb_str(&j, "reply", reply);
	jb_int(&j, "code", rep->code);
	if (rep->enh[0])
		jb_str(&j, "status", rep->enh);
	jb_str(&j, "scheduled_at", qmsg_meta(m, "scheduled_at", mb));
	if (strcmp(type, "delivery") != 0) {
		struct bounce_class bc;
		if (bcl != NULL)
			bc = *bcl;
		else if (strcmp(type, "expired") == 0)
			bounce_class_expired(&bc);
		else
			bounce_classify(conf->bounce, rep->code, rep->enh, rep->text, &bc);
		jb_str(&j, "category", bc.category);
		jb_str(&j, "ses_type", bc.ses_type);
		jb_str(&j, "ses_subtype", bc.ses_subtype);
	}
	jb_int(&j, "attempt", attempt);
	jb_int(&j, "size", (int64_t)m->sm.body_len);
	jb_int(&j, "delay_ms", now_ms() - m->sm.created_ms);
	if (ai->mx)
		jb_bool(&j, "tls", ai->tls);
	if (next_ms)
		jb_time(&j, "next_attempt", next_ms);
	acct_emit(&j);
}

/* What a bounce or complaint arriving later needs to name this send. */
static void
record_send(struct qrcpt *r)
{
	const struct qmsg *m = r->msg;
	struct verp_send vs;
	const char *v;
	char mb[QMSG_META_BUF];

	memset(&vs, 0, sizeof(vs));
	vs.time = now_ms();
	snprintf(vs.rcpt, sizeof(vs.rcpt), "%s", qrcpt_addr(r));
	snprintf(vs.sender, sizeof(vs.sender), "%s", m->sm.sender);
	snprintf(vs.campaign, sizeof(vs.campaign), "%s", m->sm.campaign ? m->sm.campaign : "");
	snprintf(vs.message_id, sizeof(vs.message_id), "%s", (v = qmsg_meta(m, "message_id", mb)) ? v : "");
	snprintf(vs.pool, sizeof(vs.pool), "%s", m->sm.pool ? m->sm.pool : "");
	verp_record(m->sm.id, r->idx, &vs);
}

/*
 * A 5xx for r, classified: Permanent (SES) puts the address on the
 * suppression list at once; a mailbox-full or unclassified one counts as a
 * soft bounce; a refusal of the content (spam, virus, size) says nothing
 * about the address.
 */
static void
suppress_bounce(struct qrcpt *r, const struct bounce_class *bc)
{
	char src[64];

	snprintf(src, sizeof(src), "bounce %s", r->msg->sm.id);
	suppress_note_failure(qrcpt_addr(r), bc->ses_type, bc->ses_subtype, bc->category, src);
}

void
queue_outcome(struct qrcpt *r, const struct smtp_reply *rep, const struct attempt_info *ai)
{
	struct qmsg *m = r->msg;
	struct spool_rcpt *sr = &m->sm.rcpts[r->idx];
	int cls = smtp_reply_class(rep);
	int64_t now = now_ms();
	int attempt;

	qmsg_lock(m);
	attempt = ++sr->attempts;
	qmsg_unlock(m);

	if (cls == 2) {
		outcome_event("delivery", r, rep, ai, attempt, 0, NULL);
		if (verp_applies(conf, m->sm.sender, m->sm.flags))
			record_send(r);
		log_info("event=delivered id=%s rcpt=%s site=%s mx=%s attempt=%d", m->sm.id,
		    qrcpt_addr(r), ai->site ? ai->site : "-", ai->mx ? ai->mx : "-", attempt);
		atomic_fetch_add(&qstats.delivered, 1);
		engage_note(qrcpt_addr(r), EV_SEND, now, m->sm.campaign);
		campaign_note_outcome(&m->sm, (int)r->idx, RS_DELIVERED);
		suppress_note_delivery(qrcpt_addr(r));
		finish(r, RS_DELIVERED);
		return;
	}
	if (cls == 5) {
		struct bounce_class bc;
		bounce_classify(conf->bounce, rep->code, rep->enh, rep->text, &bc);
		/* the list's write is queued before the event is out */
		if (!ai->admin)
			suppress_bounce(r, &bc);
		outcome_event("bounce", r, rep, ai, attempt, 0, &bc);
		log_info("event=bounced id=%s rcpt=%s site=%s code=%d status=%s", m->sm.id,
		    qrcpt_addr(r), ai->site ? ai->site : "-", rep->code, rep->enh);
		atomic_fetch_add(&qstats.bounced, 1);
		if (!m->deleted)
			dsn_queue_failure(m, (int)r->idx, rep, ai, false);
		engage_note(qrcpt_addr(r), EV_BOUNCE, now, m->sm.campaign);
		campaign_note_outcome(&m->sm, (int)r->idx, RS_BOUNCED);
		finish(r, RS_BOUNCED);
		return;
	}
	/* transient */
	struct site_limits fallback;
	const struct site_limits *lim = ai->lim;
	if (lim == NULL) {
		conf_limits(conf, qrcpt_domain(r), NULL, &fallback);
		lim = &fallback;
	}
	int64_t expires = m->sm.created_ms + lim->bounce_after;
	if (now >= expires || m->deleted) {
		if (m->deleted) {
			finish(r, RS_DELETED);
			return;
		}
		outcome_event("expired", r, rep, ai, attempt, 0, NULL);
		log_info("event=expired id=%s rcpt=%s attempts=%d", m->sm.id, qrcpt_addr(r), attempt);
		atomic_fetch_add(&qstats.expired, 1);
		{
			/* sluice gave up: one soft bounce in the address's run */
			char src[64];
			snprintf(src, sizeof(src), "expired %s", m->sm.id);
			suppress_note_bounce(qrcpt_addr(r), false, "message-expired", src);
		}
		dsn_queue_failure(m, (int)r->idx, rep, ai, true);
		campaign_note_outcome(&m->sm, (int)r->idx, RS_EXPIRED);
		finish(r, RS_EXPIRED);
		return;
	}
	int64_t delay = conf_retry_delay(lim, attempt);
	delay += delay > 10 ? (int64_t)(random() % (delay / 10 + 1)) : 0;   /* up to 10% jitter */
	int64_t next = now + delay;
	if (next > expires)
		next = expires;
	outcome_event("transient", r, rep, ai, attempt, next, NULL);
	engage_note(qrcpt_addr(r), EV_SOFT_BOUNCE, now, m->sm.campaign);
	log_info("event=deferred id=%s rcpt=%s site=%s code=%d attempt=%d next_in_ms=%" PRId64,
	    m->sm.id, qrcpt_addr(r), ai->site ? ai->site : "-", rep->code, attempt, next - now);
	atomic_fetch_add(&qstats.transient, 1);
	qmsg_lock(m);
	sr->next_ms = next;
	spool_record(&m->sm, (int)r->idx, RS_QUEUED, attempt, next);
	qmsg_unlock(m);
	sched_at(r, next);
}
