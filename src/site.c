/*
 * site: destinations and their lanes. Everything here runs on the site's
 * owner worker, so none of it locks. A lane (site x source) holds the
 * recipients ready to go, its connections and its token buckets; the pump
 * decides whether to hand work to an idle connection, open a new one, or
 * wait for a timer (rate limit, suspension).
 *
 * Backoff: every non-2xx reply a lane gets (per recipient, and the reply a
 * connection closes with) goes through the backoff rules (backoff.h). A
 * match may suspend the site (it resumes by itself), lower the lane's
 * message rate and cap its connections; the lane keeps the lowered limits
 * until a quiet period without a new match has passed (its backoff timer)
 * or enough deliveries succeeded, then returns to the configured limits.
 * Each change is an accounting event: site-backoff, site-recovered.
 *
 * Warm-up (warmup.h): a lane whose source is warming up reserves its
 * recipients against today's cap for the site's provider as it builds a
 * transaction, and takes only as many as the cap allows. When the cap is
 * reached the lane is held: its recipients move to another source of their
 * message's pool that still has room (their lane at the same site), and
 * what cannot move waits for the next UTC day, when the lane's warm-up
 * timer wakes it. New recipients for a held source go to such a source at
 * once (site_enqueue).
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "backoff.h"
#include "conf.h"
#include "log.h"
#include "site.h"
#include "smtp_client.h"
#include "util.h"
#include "verp.h"
#include "warmup.h"
#include "worker.h"

#define SITE_BUCKETS 1024

struct site_table {
	struct site *b[SITE_BUCKETS];
	long count;
};

struct lane_conn {
	struct lane *lane;
	struct smtp_conn *c;
	int nmsgs;                      /* transactions started on it */
	bool busy;                      /* a txn is in flight */
	bool ready;                     /* greeted at least once */
	bool backoff_421;               /* a 421 already went through the rules */
	bool surplus;                   /* quitting: above a backoff's connection cap */
	struct lane_conn *next;
};

static void lane_pump(struct lane *l);
static void fill_ai(struct attempt_info *ai, struct lane *l, struct smtp_conn *c);
static void outbox_free(void);
static void site_suspension_check(struct site *s, int64_t now);

/* Token bucket */

void
tbucket_init(struct tbucket *b, const struct rate *r)
{
	if (r->count == 0 || r->per_ms <= 0) {
		b->per_ms = 0;
		return;
	}
	b->per_ms = (double)r->count / (double)r->per_ms;
	/* a burst of a few seconds' worth, at least one */
	b->burst = MAX(1.0, MIN((double)r->count, b->per_ms * 1000.0));
	b->tokens = b->burst;
	b->last_ms = 0;
}

int64_t
tbucket_take(struct tbucket *b, int64_t now)
{
	if (b->per_ms <= 0)
		return 0;
	if (b->last_ms == 0)
		b->last_ms = now;
	b->tokens = MIN(b->burst, b->tokens + (double)(now - b->last_ms) * b->per_ms);
	b->last_ms = now;
	if (b->tokens >= 1.0) {
		b->tokens -= 1.0;
		return 0;
	}
	int64_t wait = (int64_t)((1.0 - b->tokens) / b->per_ms) + 1;
	return wait;
}

/* Flows: fair queueing inside a lane (see site.h) */

static bool
same_campaign(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static void
lane_push(struct lane *l, struct qrcpt *r)
{
	const char *camp = r->msg->sm.campaign;
	int prio = r->msg->sm.priority;
	struct flow *f;

	for (f = l->flows; f; f = f->next)
		if (f->priority == prio && same_campaign(f->campaign, camp))
			break;
	if (f == NULL) {
		f = xcalloc(1, sizeof(*f));
		f->campaign = camp ? xstrdup(camp) : NULL;
		f->priority = prio;
		TAILQ_INIT(&f->q);
		f->next = l->flows;
		l->flows = f;
	}
	TAILQ_INSERT_TAIL(&f->q, r, link);
	f->n++;
	l->nready++;
}

/* Remove r (in flow f); the flow stays, even empty, for the caller. */
static void
flow_take(struct lane *l, struct flow *f, struct qrcpt *r)
{
	TAILQ_REMOVE(&f->q, r, link);
	f->n--;
	l->nready--;
}

static void
flow_free(struct lane *l, struct flow *f)
{
	for (struct flow **pp = &l->flows; *pp; pp = &(*pp)->next)
		if (*pp == f) {
			*pp = f->next;
			break;
		}
	if (l->turn == f)
		l->turn = f->next;
	free(f->campaign);
	free(f);
}

/* The flow whose turn it is: the top priority with work, round robin. */
static struct flow *
lane_next_flow(struct lane *l)
{
	struct flow *f, *best = NULL;

	for (f = l->flows; f; f = f->next) {
		if (f->n == 0)
			continue;
		if (best == NULL || f->priority > best->priority)
			best = f;
	}
	if (best == NULL)
		return NULL;
	/* from the turn pointer on (wrapping), the first flow of that priority */
	for (f = l->turn; f; f = f->next)
		if (f->n > 0 && f->priority == best->priority)
			return f;
	for (f = l->flows; f && f != l->turn; f = f->next)
		if (f->n > 0 && f->priority == best->priority)
			return f;
	return best;
}

struct qrcpt *
lane_pop_any(struct lane *l)
{
	while (l->flows) {
		struct flow *f = l->flows;
		struct qrcpt *r = TAILQ_FIRST(&f->q);
		if (r) {
			flow_take(l, f, r);
			return r;
		}
		flow_free(l, f);
	}
	return NULL;
}

/* Table */

void
sites_init(struct worker *w)
{
	w->sites = xcalloc(1, sizeof(*w->sites));
}

static void
lane_free(struct lane *l)
{
	struct qrcpt *r;

	while ((r = lane_pop_any(l)) != NULL)
		qmsg_unref(r->msg);     /* r is part of its message's block */
	if (l->timer)
		event_free(l->timer);
	if (l->backoff_timer)
		event_free(l->backoff_timer);
	if (l->warmup_timer)
		event_free(l->warmup_timer);
	free(l->backoff_reason);
	for (struct lane_conn *lc = l->conns, *n; lc; lc = n) {
		n = lc->next;
		struct txn *t = smtp_conn_free(lc->c);
		if (t) {
			for (int i = 0; i < t->nrcpt; i++)
				queue_forget(t->rcpt[i].r);
			atomic_fetch_sub(&queue_inflight, 1);
			qmsg_unref(t->msg);
			free(t->rcpt);
			free(t);
		}
		free(lc);
	}
	free(l->source);
	free(l);
}

void
sites_free(struct worker *w)
{
	if (w->sites == NULL)
		return;
	outbox_free();
	for (int i = 0; i < SITE_BUCKETS; i++) {
		for (struct site *s = w->sites->b[i], *n; s; s = n) {
			n = s->hnext;
			for (struct lane *l = s->lanes, *ln; l; l = ln) {
				ln = l->next;
				lane_free(l);
			}
			free(s->name);
			free(s->domain);
			free(s->suspend_reason);
			free(s->last_error);
			free(s);
		}
	}
	free(w->sites);
	w->sites = NULL;
}

struct site *
site_find(struct worker *w, const char *name)
{
	for (struct site *s = w->sites->b[hash_str(name) % SITE_BUCKETS]; s; s = s->hnext)
		if (strcasecmp(s->name, name) == 0)
			return s;
	return NULL;
}

void
site_foreach(struct worker *w, void (*fn)(struct site *, void *), void *arg)
{
	for (int i = 0; i < SITE_BUCKETS; i++)
		for (struct site *s = w->sites->b[i]; s; s = s->hnext)
			fn(s, arg);
}

static void
site_limits_refresh(struct site *s)
{
	const struct config *c = conf;
	const struct provider_conf *prov = NULL;

	if (s->prov) {
		for (int i = 0; i < c->nproviders; i++)
			if (strcmp(c->providers[i].name, s->prov->name) == 0)
				prov = &c->providers[i];
	}
	s->prov = prov;
	struct rate msg = s->lim.max_msg_rate, con = s->lim.max_connect_rate;
	conf_limits(c, s->domain, prov, &s->lim);
	/* a bucket keeps its tokens unless its rate changed */
	for (struct lane *l = s->lanes; l; l = l->next) {
		if (memcmp(&msg, &s->lim.max_msg_rate, sizeof(msg)) != 0)
			tbucket_init(&l->msg_rate, lane_max_msg_rate(l));
		if (memcmp(&con, &s->lim.max_connect_rate, sizeof(con)) != 0)
			tbucket_init(&l->conn_rate, &s->lim.max_connect_rate);
	}
}

void
sites_reconfigure(struct worker *w)
{
	for (int i = 0; i < SITE_BUCKETS; i++)
		for (struct site *s = w->sites->b[i]; s; s = s->hnext) {
			site_limits_refresh(s);
			for (struct lane *l = s->lanes; l; l = l->next)
				lane_pump(l);
		}
}

static void
lane_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	lane_pump(arg);
}

static struct lane *
lane_get(struct site *s, const char *source)
{
	for (struct lane *l = s->lanes; l; l = l->next)
		if (strcmp(l->source, source) == 0)
			return l;
	struct lane *l = xcalloc(1, sizeof(*l));
	l->site = s;
	l->source = xstrdup(source);
	l->timer = evtimer_new(s->owner->base, lane_timer_cb, l);
	l->warmup_timer = evtimer_new(s->owner->base, lane_timer_cb, l);
	tbucket_init(&l->msg_rate, &s->lim.max_msg_rate);
	tbucket_init(&l->conn_rate, &s->lim.max_connect_rate);
	l->next = s->lanes;
	s->lanes = l;
	return l;
}

static void
lane_wake_in(struct lane *l, int64_t ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	if (!evtimer_pending(l->timer, NULL))
		evtimer_add(l->timer, &tv);
}

/* Pump the lane from the loop soon (not from inside a connection callback). */
static void
lane_soon(struct lane *l)
{
	static const struct timeval zero = { 0, 0 };

	evtimer_add(l->warmup_timer, &zero);
}

static const char *
site_provider(const struct site *s)
{
	return s->prov ? s->prov->name : NULL;
}

/*
 * Warm-up: true while l's source has no room left today for the site's
 * provider. Its recipients go to another source of their pool with room
 * (one pick per message, so a message's recipients stay together); the
 * others wait for the next UTC day. Waiting is not an attempt, so a
 * recipient past its bounce-after expires here (as its next attempt would).
 */
static bool
lane_warmup_hold(struct lane *l)
{
	struct site *s = l->site;
	const char *prov = site_provider(s);
	const struct qmsg *last = NULL;
	struct lane *to = NULL;
	long moved = 0, expired = 0;
	int64_t now = now_ms();

	if (warmup_room(l->source, prov) > 0) {
		l->warmup_held = false;
		return false;
	}
	for (struct flow *f = l->flows, *fn; f; f = fn) {
		fn = f->next;
		for (struct qrcpt *r = TAILQ_FIRST(&f->q), *rn; r; r = rn) {
			rn = TAILQ_NEXT(r, link);
			if (r->msg != last) {
				const char *alt = warmup_pick_source(r->msg->sm.pool, l->source, prov);
				last = r->msg;
				to = alt ? lane_get(s, alt) : NULL;
			}
			if (to == NULL) {
				if (now < r->msg->sm.created_ms + s->lim.bounce_after)
					continue;
				struct attempt_info ai;
				struct smtp_reply rep;
				fill_ai(&ai, l, NULL);
				smtp_reply_set(&rep, 451, "4.7.0",
				    "Source %s reached its warm-up cap for %s today", l->source,
				    prov ? prov : "this destination");
				flow_take(l, f, r);
				l->transient++;
				queue_outcome(r, &rep, &ai);
				expired++;
				continue;
			}
			flow_take(l, f, r);
			lane_push(to, r);
			lane_soon(to);
			moved++;
		}
		if (f->n == 0)
			flow_free(l, f);
	}
	if (l->nready > 0) {
		int64_t ms = warmup_next_midnight(now) - now + 100;
		struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
		evtimer_add(l->warmup_timer, &tv);
	}
	if (!l->warmup_held || moved > 0 || expired > 0)
		log_info("event=warmup-held site=%s source=%s moved=%ld expired=%ld waiting=%ld",
		    s->name, l->source, moved, expired, l->nready);
	l->warmup_held = true;
	return true;
}

/* Hand-off from the routing worker */

static struct lane *
site_enqueue(struct worker *w, struct site_ticket *t)
{
	struct site *s = site_find(w, t->site);

	if (s == NULL) {
		s = xcalloc(1, sizeof(*s));
		s->name = t->site;
		t->site = NULL;
		s->domain = xstrdup(t->domain);
		s->owner = w;
		s->prov = t->prov;
		s->is_route = t->is_route;
		conf_limits(conf, s->domain, t->prov, &s->lim);
		unsigned b = (unsigned)(hash_str(s->name) % SITE_BUCKETS);
		s->hnext = w->sites->b[b];
		w->sites->b[b] = s;
		w->sites->count++;
		log_debug("event=site-new site=%s domain=%s worker=%d", s->name, s->domain, w->idx);
	}
	/* the freshest DNS answer wins */
	if (t->mx != NULL) {
		if (t->mx->nhosts > 0)
			s->mx = *t->mx;
		free(t->mx);
	}
	/* warm-up: a source without room today hands over to one of its pool with room */
	const char *source = t->source;
	if (warmup_active() && warmup_room(source, site_provider(s)) <= 0) {
		const char *alt = warmup_pick_source(t->r->msg->sm.pool, source, site_provider(s));
		if (alt != NULL)
			source = alt;
	}
	struct lane *l = lane_get(s, source);
	lane_push(l, t->r);
	free(t->site);
	free(t->domain);
	free(t->source);
	free(t);
	return l;
}

/* On the owner: enqueue a whole batch, then pump each lane it touched once. */
static void
site_accept_batch(void *arg)
{
	struct worker *w = worker_self();
	struct lane *touched[64];
	int ntouched = 0;

	for (struct site_ticket *t = arg, *next; t; t = next) {
		next = t->next;
		if (atomic_load(&queue_stopping)) {
			queue_forget(t->r);
			free(t->mx);
			free(t->site);
			free(t->domain);
			free(t->source);
			free(t);
			continue;
		}
		struct lane *l = site_enqueue(w, t);
		if (l->pump_pending)
			continue;
		if (ntouched == (int)ARRAY_SIZE(touched)) {
			for (int i = 0; i < ntouched; i++) {
				touched[i]->pump_pending = false;
				lane_pump(touched[i]);
			}
			ntouched = 0;
		}
		l->pump_pending = true;
		touched[ntouched++] = l;
	}
	for (int i = 0; i < ntouched; i++) {
		touched[i]->pump_pending = false;
		lane_pump(touched[i]);
	}
}

/* Per routing worker: one pending batch per owner, flushed by an event that
 * runs after the callbacks of the current loop iteration. */
struct outbox {
	struct site_ticket **head, **tail;
	struct event *flush;
};
static __thread struct outbox *outbox;

static void
outbox_flush(evutil_socket_t fd, short what, void *arg)
{
	struct worker *self = worker_self();

	for (int i = 0; i < nworkers; i++) {
		struct site_ticket *batch = outbox->head[i];
		if (batch == NULL)
			continue;
		outbox->head[i] = outbox->tail[i] = NULL;
		if (workers[i] == self)
			site_accept_batch(batch);
		else
			worker_post(workers[i], site_accept_batch, batch);
	}
}

void
site_submit(struct site_ticket *t)
{
	struct worker *self = worker_self();
	struct worker *owner = worker_for_key(t->site);

	if (outbox == NULL) {
		outbox = xcalloc(1, sizeof(*outbox));
		outbox->head = xcalloc((size_t)nworkers, sizeof(*outbox->head));
		outbox->tail = xcalloc((size_t)nworkers, sizeof(*outbox->tail));
		outbox->flush = event_new(self->base, -1, 0, outbox_flush, NULL);
	}
	t->next = NULL;
	bool was_empty = true;
	for (int i = 0; i < nworkers && was_empty; i++)
		was_empty = outbox->head[i] == NULL;
	if (outbox->tail[owner->idx])
		outbox->tail[owner->idx]->next = t;
	else
		outbox->head[owner->idx] = t;
	outbox->tail[owner->idx] = t;
	if (was_empty)
		event_active(outbox->flush, 0, 0);
}

/* Shutdown: tickets not handed over are let go (the spool has them). */
static void
outbox_free(void)
{
	if (outbox == NULL)
		return;
	for (int i = 0; i < nworkers; i++) {
		for (struct site_ticket *t = outbox->head[i], *next; t; t = next) {
			next = t->next;
			queue_forget(t->r);
			free(t->mx);
			free(t->site);
			free(t->domain);
			free(t->source);
			free(t);
		}
	}
	event_free(outbox->flush);
	free(outbox->head);
	free(outbox->tail);
	free(outbox);
	outbox = NULL;
}

/* Backoff */

/* a is slower than b (count 0 = unlimited, the fastest). */
static bool
rate_slower(const struct rate *a, const struct rate *b)
{
	if (a->count == 0)
		return false;
	if (b->count == 0)
		return true;
	return (double)a->count / (double)a->per_ms < (double)b->count / (double)b->per_ms;
}

int
lane_max_smtp_out(const struct lane *l)
{
	int n = l->site->lim.max_smtp_out;

	if (l->conn_override > 0 && l->conn_override < n)
		n = l->conn_override;
	return n;
}

const struct rate *
lane_max_msg_rate(const struct lane *l)
{
	const struct rate *cfg = &l->site->lim.max_msg_rate;

	return rate_slower(&l->rate_override, cfg) ? &l->rate_override : cfg;
}

/* A timed suspension that has run out is cleared (it resumed by itself). */
static void
site_suspension_check(struct site *s, int64_t now)
{
	if (s->suspended_until == 0 || s->suspended_until == INT64_MAX ||
	    s->suspended_until > now)
		return;
	log_info("event=site-suspension-ended site=%s reason=\"%s\"", s->name,
	    s->suspend_reason ? s->suspend_reason : "");
	s->suspended_until = 0;
	free(s->suspend_reason);
	s->suspend_reason = NULL;
}

/* Back to the configured limits. The caller pumps the lane. */
static void
lane_recover(struct lane *l, const char *how)
{
	struct site *s = l->site;
	bool had_rate = l->rate_override.count > 0;

	log_info("event=site-recovered site=%s source=%s rule=%d after=\"%s\"", s->name,
	    l->source, l->backoff_line, how);
	struct jbuf j;
	jb_init(&j);
	jb_str(&j, "type", "site-recovered");
	jb_str(&j, "site", s->name);
	jb_str(&j, "source", l->source[0] ? l->source : NULL);
	jb_int(&j, "rule_line", l->backoff_line);
	jb_str(&j, "after", how);
	jb_str(&j, "backoff_reason", l->backoff_reason);
	acct_emit(&j);

	memset(&l->rate_override, 0, sizeof(l->rate_override));
	l->conn_override = 0;
	l->backoff_until = 0;
	l->backoff_ok_left = 0;
	l->backoff_line = 0;
	free(l->backoff_reason);
	l->backoff_reason = NULL;
	if (had_rate)
		tbucket_init(&l->msg_rate, lane_max_msg_rate(l));
	if (l->backoff_timer != NULL)
		evtimer_del(l->backoff_timer);
	site_suspension_check(s, now_ms());
}

static void
lane_backoff_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lane *l = arg;
	int64_t now = now_ms();

	if (l->backoff_until == 0)
		return;
	if (now + 2 < l->backoff_until) {
		int64_t ms = l->backoff_until - now;
		struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
		evtimer_add(l->backoff_timer, &tv);
		return;
	}
	lane_recover(l, "quiet period");
	lane_pump(l);
}

/*
 * A rule matched reply rep on lane l: apply its action. Only a change of
 * state (a new or longer suspension, a lower rate or connection cap, the
 * first match) is an event; a repeat just extends the quiet period.
 */
static void
lane_backoff(struct lane *l, const struct backoff_rule *ru, const struct smtp_reply *rep)
{
	struct site *s = l->site;
	int64_t now = now_ms();
	bool changed = l->backoff_until == 0;
	bool lowers = ru->rate.count > 0 || ru->connections > 0;
	char rbuf[1200], act[160], reason[1500];

	smtp_reply_fmt(rep, rbuf, sizeof(rbuf));
	backoff_rule_fmt(ru, act, sizeof(act));
	snprintf(reason, sizeof(reason), "backoff rule %s:%d (%s): %s", ru->file, ru->line,
	    act, rbuf);

	int64_t resume = now + ru->suspend_ms;
	if (ru->suspend_ms > 0 && s->suspended_until != INT64_MAX && s->suspended_until < resume) {
		site_suspend(s, resume, reason);
		changed = true;
	}
	if (ru->rate.count > 0 && (l->rate_override.count == 0 ||
	    rate_slower(&ru->rate, &l->rate_override))) {
		l->rate_override = ru->rate;
		tbucket_init(&l->msg_rate, lane_max_msg_rate(l));
		/* start empty: the lowered pace applies from now, not after a burst */
		l->msg_rate.tokens = 0;
		l->msg_rate.last_ms = now;
		changed = true;
	}
	if (ru->connections > 0 && (l->conn_override == 0 || ru->connections < l->conn_override)) {
		l->conn_override = ru->connections;
		changed = true;
	}
	int64_t until = lowers ? resume + ru->recover_ms : resume;
	if (until > l->backoff_until) {
		l->backoff_until = until;
		if (l->backoff_timer == NULL)
			l->backoff_timer = evtimer_new(s->owner->base, lane_backoff_timer_cb, l);
		int64_t ms = until - now;
		struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
		evtimer_add(l->backoff_timer, &tv);
	}
	if (lowers)
		l->backoff_ok_left = ru->recover_after;
	l->backoff_line = ru->line;
	free(l->backoff_reason);
	l->backoff_reason = xstrdup(reason);
	if (!changed) {
		log_debug("event=site-backoff-extended site=%s source=%s rule=%d", s->name,
		    l->source, ru->line);
		return;
	}
	log_info("event=site-backoff site=%s source=%s rule=%s:%d action=\"%s\" reply=\"%s\"",
	    s->name, l->source, ru->file, ru->line, act, rbuf);
	struct jbuf j;
	jb_init(&j);
	jb_str(&j, "type", "site-backoff");
	jb_str(&j, "site", s->name);
	jb_str(&j, "source", l->source[0] ? l->source : NULL);
	jb_str(&j, "rules", ru->file);
	jb_int(&j, "rule_line", ru->line);
	jb_str(&j, "action", act);
	jb_str(&j, "reply", rbuf);
	if (ru->suspend_ms > 0)
		jb_time(&j, "suspended_until", s->suspended_until);
	if (lowers) {
		char b[64];
		fmt_rate(b, sizeof(b), lane_max_msg_rate(l));
		jb_str(&j, "max_msg_rate", l->rate_override.count ? b : NULL);
		if (l->conn_override)
			jb_int(&j, "max_smtp_out", lane_max_smtp_out(l));
		if (l->backoff_ok_left)
			jb_int(&j, "recover_after", l->backoff_ok_left);
	}
	jb_time(&j, "until", l->backoff_until);
	acct_emit(&j);
}

/* A non-2xx reply on lane l: the first matching rule acts. True on a match. */
static bool
lane_check_reply(struct lane *l, const struct smtp_reply *rep)
{
	const struct backoff_rule *ru;

	if (rep->code == 0 && rep->enh[0] == '\0')
		return false;
	ru = backoff_match(conf->backoff, rep->code, rep->enh, rep->text);
	if (ru == NULL)
		return false;
	lane_backoff(l, ru, rep);
	return true;
}

/* Connections */

static const struct source_conf *
lane_source(const struct lane *l)
{
	return l->source[0] ? conf_source(conf, l->source) : NULL;
}

static void
fill_ai(struct attempt_info *ai, struct lane *l, struct smtp_conn *c)
{
	const struct source_conf *src = lane_source(l);

	memset(ai, 0, sizeof(*ai));
	ai->site = l->site->name;
	ai->mx = c ? smtp_conn_mx(c) : NULL;
	ai->mx_addr = c ? smtp_conn_mx_addr(c) : NULL;
	ai->source = l->source[0] ? l->source : NULL;
	ai->source_addr = src ? src->address : NULL;
	ai->lim = &l->site->lim;
	ai->tls = c ? smtp_conn_tls(c) : false;
}

static struct txn *
lc_next_txn(void *owner, struct smtp_conn *c)
{
	struct lane_conn *lc = owner;
	struct lane *l = lc->lane;
	struct site *s = l->site;
	int64_t now = now_ms();
	struct qrcpt *r;

	lc->ready = true;
	lc->busy = false;
	if (s->suspended_until > now)
		return NULL;
	if (atomic_load(&queue_stopping)) {
		smtp_conn_quit(c);
		return NULL;
	}
	/* a backoff capped the connections: the surplus goes when idle */
	if (l->conn_override > 0 && !lc->surplus) {
		int staying = 0;
		for (struct lane_conn *o = l->conns; o; o = o->next)
			staying += !o->surplus;
		if (staying > lane_max_smtp_out(l))
			lc->surplus = true;
	}
	if (lc->surplus) {
		smtp_conn_quit(c);
		return NULL;
	}
	if (lc->nmsgs >= s->lim.max_msg_per_conn) {
		smtp_conn_quit(c);
		return NULL;
	}
	/* whose turn it is; recipients of deleted messages are dropped */
	struct flow *f;
	for (;;) {
		if ((f = lane_next_flow(l)) == NULL)
			return NULL;
		r = TAILQ_FIRST(&f->q);
		if (!r->msg->deleted)
			break;
		flow_take(l, f, r);
		if (f->n == 0)
			flow_free(l, f);
		queue_drop(r, RS_DELETED);
	}
	bool warming = warmup_active();
	if (warming && warmup_room(l->source, site_provider(s)) <= 0) {
		lane_soon(l);           /* the pump holds the lane */
		return NULL;
	}
	int64_t wait = tbucket_take(&l->msg_rate, now);
	if (wait > 0) {
		lane_wake_in(l, wait);
		return NULL;
	}
	int max = MIN(s->lim.max_rcpt_per_msg, TXN_MAX_RCPT);
	int want = 0;
	/* VERP: each recipient has its own envelope sender, so its own
	 * transaction (as PowerMTA does) */
	bool verp = verp_applies(conf, r->msg->sm.sender, r->msg->sm.flags);
	if (verp)
		max = 1;
	/* the recipients of this message waiting here are adjacent */
	for (struct qrcpt *q = r; q && q->msg == r->msg && want < max; q = TAILQ_NEXT(q, link))
		want++;
	if (warming) {
		/* counted as they go out; another worker may have taken the room */
		want = warmup_take(l->source, site_provider(s), s->name, want);
		if (want == 0) {
			if (l->msg_rate.per_ms > 0)
				l->msg_rate.tokens += 1.0;
			lane_soon(l);
			return NULL;
		}
	}
	struct txn *t = xcalloc(1, sizeof(*t));
	t->msg = r->msg;
	atomic_fetch_add(&t->msg->refs, 1);
	t->sender = t->msg->sm.sender;
	if (verp && verp_address(conf, t->msg->sm.id, r->idx, t->verp, sizeof(t->verp)))
		t->sender = t->verp;
	t->rcpt = xcalloc((size_t)want, sizeof(*t->rcpt));
	t->warmup = warming;
	while (r != NULL && r->msg == t->msg && t->nrcpt < want) {
		struct qrcpt *next = TAILQ_NEXT(r, link);
		flow_take(l, f, r);
		t->rcpt[t->nrcpt++].r = r;
		r = next;
	}
	/* one transaction per turn: the next flow of this priority is next */
	l->turn = f->next;
	if (f->n == 0)
		flow_free(l, f);
	lc->nmsgs++;
	lc->busy = true;
	atomic_fetch_add(&queue_inflight, 1);
	return t;
}

static void
lc_txn_done(void *owner, struct smtp_conn *c, struct txn *t)
{
	struct lane_conn *lc = owner;
	struct lane *l = lc->lane;
	struct attempt_info ai;

	int last_rule = 0, deferred = 0;
	bool recovered = false;

	fill_ai(&ai, l, c);
	for (int i = 0; i < t->nrcpt; i++) {
		const struct smtp_reply *rep = &t->rcpt[i].reply;
		int cls = smtp_reply_class(rep);
		if (cls != 2 && cls != 5)
			deferred++;
		if (cls == 2) {
			l->delivered++;
			if (l->backoff_ok_left > 0 && l->site->suspended_until <= now_ms() &&
			    --l->backoff_ok_left == 0) {
				lane_recover(l, "deliveries");
				recovered = true;
			}
		} else {
			if (cls == 5)
				l->bounced++;
			else
				l->transient++;
			/* the recipients of one transaction usually share a reply:
			 * one rule acts once per transaction */
			const struct backoff_rule *ru = backoff_match(conf->backoff, rep->code,
			    rep->enh, rep->text);
			if (ru != NULL && ru->line != last_rule) {
				lane_backoff(l, ru, rep);
				last_rule = ru->line;
				if (rep->code == 421)
					lc->backoff_421 = true;
			}
		}
		queue_outcome(t->rcpt[i].r, rep, &ai);
	}
	if (t->warmup)
		warmup_give_back(l->source, site_provider(l->site), deferred);
	/* higher limits: let the lane use them (not from inside this callback) */
	if (recovered)
		event_active(l->timer, EV_TIMEOUT, 1);
	lc->busy = false;
	atomic_fetch_sub(&queue_inflight, 1);
	qmsg_unref(t->msg);
	free(t->rcpt);
	free(t);
}

/* Defer everything waiting in the lane: the destination cannot be reached. */
static void
lane_defer_all(struct lane *l, const struct smtp_reply *why)
{
	struct attempt_info ai;
	struct qrcpt *r;

	fill_ai(&ai, l, NULL);
	while ((r = lane_pop_any(l)) != NULL) {
		l->transient++;
		queue_outcome(r, why, &ai);
	}
}

static void
lc_closed(void *owner, struct smtp_conn *c, const struct smtp_reply *why, bool greeted)
{
	struct lane_conn *lc = owner;
	struct lane *l = lc->lane;
	struct site *s = l->site;

	for (struct lane_conn **pp = &l->conns; *pp; pp = &(*pp)->next)
		if (*pp == lc) {
			*pp = lc->next;
			break;
		}
	l->nconn--;
	if (why != NULL && why->code != 0) {
		char buf[1200];
		smtp_reply_fmt(why, buf, sizeof(buf));
		free(s->last_error);
		s->last_error = xstrdup(buf);
		s->last_error_ms = now_ms();
		/* a 421 that ended a transaction went through the rules there */
		if (smtp_reply_class(why) != 2 && !(lc->backoff_421 && why->code == 421))
			lane_check_reply(l, why);
	}
	if (!greeted && !lc->ready && why != NULL) {
		/* no MX could be reached: when no other connection is working,
		 * what waits here goes back to the retry schedule */
		bool working = false;
		for (struct lane_conn *o = l->conns; o; o = o->next)
			working |= o->ready;
		if (!working)
			lane_defer_all(l, why);
	}
	free(lc);
	lane_pump(l);
}

static const struct smtp_conn_ops lane_ops = {
	.next_txn = lc_next_txn,
	.txn_done = lc_txn_done,
	.closed = lc_closed,
};

static void
lane_open(struct lane *l)
{
	struct site *s = l->site;
	const struct source_conf *src = lane_source(l);
	struct conn_params p = { 0 };

	p.hosts = s->mx.hosts;
	p.nhosts = s->mx.nhosts;
	p.port = s->is_route && s->lim.route.port ? s->lim.route.port : (uint16_t)s->lim.smtp_port;
	p.source_addr = src ? src->address : NULL;
	p.ehlo = src && src->ehlo ? src->ehlo : conf->hostname;
	p.tls = s->lim.tls;
	p.lim = &s->lim;
	p.auth_user = s->is_route ? s->lim.route_user : NULL;
	p.auth_pass = s->is_route ? s->lim.route_pass : NULL;
	p.log_id = s->name;

	struct lane_conn *lc = xcalloc(1, sizeof(*lc));
	lc->lane = l;
	lc->next = l->conns;
	l->conns = lc;
	l->nconn++;
	lc->c = smtp_conn_open(s->owner->base, &p, &lane_ops, lc);
}

static void
lane_pump(struct lane *l)
{
	struct site *s = l->site;
	int64_t now = now_ms();

	site_suspension_check(s, now);
	if (l->nready == 0)
		return;
	if (warmup_active() && lane_warmup_hold(l))
		return;
	if (s->suspended_until > now) {
		if (s->suspended_until != INT64_MAX)
			lane_wake_in(l, s->suspended_until - now);
		return;
	}
	/* idle connections take work first */
	int connecting = 0;
	for (struct lane_conn *lc = l->conns; lc; lc = lc->next) {
		if (!lc->ready)
			connecting++;
		else if (!lc->busy && smtp_conn_idle(lc->c)) {
			smtp_conn_kick(lc->c);
			if (l->nready == 0)
				return;
		}
	}
	/* open more while there is work nobody will take */
	while (l->nconn < lane_max_smtp_out(l) && l->nready > connecting) {
		int64_t wait = tbucket_take(&l->conn_rate, now);
		if (wait > 0) {
			lane_wake_in(l, wait);
			return;
		}
		lane_open(l);
		connecting++;
	}
}

/* Control */

void
site_suspend(struct site *s, int64_t until_ms, const char *reason)
{
	s->suspended_until = until_ms;
	free(s->suspend_reason);
	s->suspend_reason = reason ? xstrdup(reason) : NULL;
	log_info("event=site-suspended site=%s until=%" PRId64 " reason=\"%s\"", s->name, until_ms,
	    reason ? reason : "");
	struct jbuf j;
	jb_init(&j);
	jb_str(&j, "type", "site-suspended");
	jb_str(&j, "site", s->name);
	if (until_ms != INT64_MAX)
		jb_time(&j, "until", until_ms);
	jb_str(&j, "reason", reason);
	acct_emit(&j);
	for (struct lane *l = s->lanes; l; l = l->next)
		lane_pump(l);
}

void
site_resume(struct site *s)
{
	s->suspended_until = 0;
	free(s->suspend_reason);
	s->suspend_reason = NULL;
	log_info("event=site-resumed site=%s", s->name);
	struct jbuf j;
	jb_init(&j);
	jb_str(&j, "type", "site-resumed");
	jb_str(&j, "site", s->name);
	acct_emit(&j);
	for (struct lane *l = s->lanes; l; l = l->next) {
		evtimer_del(l->timer);
		lane_pump(l);
	}
}

long
site_bounce_all(struct site *s, const char *reason)
{
	struct smtp_reply rep;
	struct attempt_info ai;
	long n = 0;
	struct qrcpt *r;

	smtp_reply_set(&rep, 554, "5.0.0", "Bounced by the administrator%s%s",
	    reason ? ": " : "", reason ? reason : "");
	for (struct lane *l = s->lanes; l; l = l->next) {
		fill_ai(&ai, l, NULL);
		ai.admin = true;
		while ((r = lane_pop_any(l)) != NULL) {
			l->bounced++;
			queue_outcome(r, &rep, &ai);
			n++;
		}
	}
	log_info("event=site-bounced site=%s recipients=%ld", s->name, n);
	return n;
}

long
site_queued(const struct site *s)
{
	long n = 0;
	for (struct lane *l = s->lanes; l; l = l->next)
		n += l->nready;
	return n;
}

int
site_connections(const struct site *s)
{
	int n = 0;
	for (struct lane *l = s->lanes; l; l = l->next)
		n += l->nconn;
	return n;
}
