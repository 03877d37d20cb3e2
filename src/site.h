/*
 * site: a destination (an MX rollup, a provider, a domain with its own
 * settings, or a static route) owned by one worker. Per source it has a
 * lane: the ready queue, the connections, the rate buckets. Decisions about
 * a site (open a connection? which transaction next? suspend?) live here.
 */
#ifndef SLUICE_SITE_H
#define SLUICE_SITE_H

#include <stdbool.h>
#include <stdint.h>
#include "conf.h"
#include "dns.h"
#include "queue.h"

struct worker;
struct smtp_conn;

struct tbucket {
	double tokens;
	double burst;
	double per_ms;                 /* refill rate; 0 = unlimited */
	int64_t last_ms;
};
void tbucket_init(struct tbucket *b, const struct rate *r);
/* Take one token if available; otherwise return ms until one is. */
int64_t tbucket_take(struct tbucket *b, int64_t now);

/*
 * Fair queueing inside a lane: recipients wait in flows, one per (campaign,
 * priority). The highest priority with work always goes first; flows of
 * equal priority take turns, one transaction each, so a big campaign does
 * not hold back a small one behind it.
 */
struct flow {
	char *campaign;                /* NULL: mail without a campaign */
	int priority;
	struct qrcpt_list q;
	long n;
	struct flow *next;
};

struct lane {
	struct site *site;
	char *source;                  /* source name ("" = unbound default) */
	struct flow *flows;            /* ready recipients, one flow per campaign x priority */
	struct flow *turn;             /* round robin among flows of the top priority */
	long nready;
	int nconn;                     /* open (connecting, busy or idle) */
	struct lane_conn *conns;
	struct tbucket msg_rate, conn_rate;
	struct event *timer;           /* wake when a rate or suspension allows */
	bool pump_pending;             /* in the current hand-off batch */
	long delivered, transient, bounced;
	/* Backoff (backoff.h): a throttling reply lowered this lane's limits
	 * until backoff_until, or until backoff_ok_left more deliveries. */
	struct rate rate_override;     /* max-msg-rate in force; count 0 = none */
	int conn_override;             /* max-smtp-out cap; 0 = none */
	int64_t backoff_until;         /* recovery time; 0 = not backing off */
	int backoff_ok_left;           /* 2xx replies still needed; 0 = time only */
	char *backoff_reason;          /* "backoff rule FILE:LINE (...): REPLY" */
	int backoff_line;              /* line of the rule that matched last */
	struct event *backoff_timer;   /* fires at backoff_until */
	/* Warm-up (warmup.h): the source reached today's cap for this site's
	 * provider; the lane waits for the next UTC day (warmup_timer). */
	bool warmup_held;
	struct event *warmup_timer;
	struct lane *next;
};

struct site {
	char *name;
	char *domain;                  /* first domain seen (for limits, logs) */
	struct worker *owner;
	struct site_limits lim;        /* effective */
	const struct provider_conf *prov;
	struct dns_result mx;          /* targets */
	bool is_route;
	int64_t suspended_until;       /* 0 = not; INT64_MAX = until resumed */
	char *suspend_reason;
	struct lane *lanes;
	int64_t last_error_ms;
	char *last_error;
	struct site *hnext;
};

/* Hand r to the site `name` (on the owner worker; posts if needed). */
struct site_ticket {
	char *site;                    /* site name */
	char *domain;
	const struct provider_conf *prov;
	struct dns_result *mx;         /* fresh targets, or NULL: the site's are current */
	bool is_route;
	char *source;                  /* chosen source name */
	struct qrcpt *r;
	struct site_ticket *next;      /* in a hand-off batch */
};
/*
 * Hand r to its site (takes ownership of t). Tickets are batched per owner
 * worker and handed over once per loop iteration, so the recipients of one
 * message reach their lane together and go out in one transaction.
 */
void site_submit(struct site_ticket *t);

void sites_init(struct worker *w);
void sites_free(struct worker *w);
/* Re-apply limits from the new config (on each worker after reload). */
void sites_reconfigure(struct worker *w);

/* Control (run on the owner worker). */
struct site *site_find(struct worker *w, const char *name);
void site_foreach(struct worker *w, void (*fn)(struct site *, void *), void *arg);
void site_suspend(struct site *s, int64_t until_ms, const char *reason);
void site_resume(struct site *s);
/* Bounce everything queued at the site now (5.0.0 administrative). */
long site_bounce_all(struct site *s, const char *reason);
long site_queued(const struct site *s);
/* Take any ready recipient of a lane (draining), or NULL. */
struct qrcpt *lane_pop_any(struct lane *l);
int site_connections(const struct site *s);
/* A lane's limits in force (configured, lowered by a backoff override). */
int lane_max_smtp_out(const struct lane *l);
const struct rate *lane_max_msg_rate(const struct lane *l);

#endif
