/*
 * dns: c-ares driven by a worker's event_base, with a cache per worker.
 *
 * c-ares tells us which sockets it wants watched (ARES_OPT_SOCK_STATE_CB):
 * one persistent libevent event per socket, plus one timer set from
 * ares_timeout() after every call into c-ares. Nothing here blocks and
 * nothing is shared between workers, so there are no locks.
 *
 * Two kinds of cache entries, both keyed by name: HOST (the A and AAAA of
 * one name) and MX (the delivery targets of a domain: its MX set, each MX
 * host resolved through a HOST entry, or the implicit MX). An entry holds
 * the last result (until it expires) and the lookup in flight, if any;
 * every caller that arrives while a lookup is in flight becomes one more
 * waiter of that lookup, so a burst of recipients for one domain costs one
 * query. Results keep the smallest TTL of the records they were built from
 * (clamped to 5 s .. 1 day); NXDOMAIN and "no address" are cached for the
 * SOA minimum (5 s .. 60 s); temporary failures are never cached.
 *
 * The cache stores hosts sorted by preference; each caller gets its own
 * copy with equal preferences shuffled, so load spreads over equal MXs.
 */
#include "config.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "dns.h"
#include "log.h"
#include "util.h"

#define DNS_TIMEOUT_MS     2500    /* first try; c-ares 1.18 doubles it per round: 2.5 s + 5 s */
#define DNS_TRIES          2
#define TTL_MIN_MS         (5 * 1000LL)
#define TTL_MAX_MS         (86400 * 1000LL)
#define NEG_TTL_MAX_MS     (60 * 1000LL)
#define NEG_TTL_DEFAULT_MS (60 * 1000LL)
#define CACHE_BUCKETS      4096
#define CACHE_MAX          100000  /* entries; past this, expired ones go */

enum ekind { EK_HOST, EK_MX };

struct waiter {
	dns_cb cb;
	void *arg;
	struct waiter *next;
};

/* A result as cached: only as many hosts as it has. */
struct cached {
	enum dns_status status;
	char errmsg[128];
	int implicit_mx;
	int64_t expires_ms;
	int nhosts;
	struct dns_host *hosts;
};

struct job;

struct entry {
	enum ekind kind;
	char *name;
	unsigned bucket;
	struct cached *res;            /* NULL: nothing valid cached */
	struct job *job;               /* lookup in flight, or NULL */
	int pinned;                    /* res is being handed out: keep it */
	struct entry *next;
};

/* An MX host being resolved for an MX job (a waiter of a HOST entry). */
struct mxslot {
	struct job *job;
	int idx;
	enum dns_status status;        /* of its HOST lookup */
};

struct job {
	struct dns *d;
	struct entry *e;
	struct waiter *waiters, **wtail;
	int pending;                   /* queries or host lookups outstanding */
	int64_t min_ttl_ms;            /* of records used so far */
	int64_t neg_ttl_ms;            /* from an SOA, for negative answers */
	/* HOST: */
	int a_status, aaaa_status;     /* ARES_* */
	int n4, n6;
	struct sockaddr_storage a4[DNS_MAX_ADDRS], a6[DNS_MAX_ADDRS];
	/* MX: */
	bool implicit;
	int nmx;
	struct dns_host mx[DNS_MAX_HOSTS];
	struct mxslot slot[DNS_MAX_HOSTS];
	int64_t slot_expires_ms;       /* min expiry of the HOST results used */
};

struct sockev {
	ares_socket_t fd;
	struct event *ev;
	struct sockev *next;
};

struct txtq {
	struct dns *d;
	dns_txt_cb cb;
	void *arg;
	char name[256];
};

struct dns {
	struct event_base *base;
	ares_channel ch;
	struct event *timer;
	struct sockev *socks;
	struct entry *buckets[CACHE_BUCKETS];
	long nentries;
	int nq;                        /* ares queries in flight */
	char *pending_servers;         /* dns_reconfigure waiting for nq == 0 */
	bool destroying;
	uint64_t rng;
	int64_t (*clock)(void);
};

static pthread_once_t ares_once = PTHREAD_ONCE_INIT;

static void
ares_global_init(void)
{
	int rc = ares_library_init(ARES_LIB_INIT_ALL);

	if (rc != ARES_SUCCESS)
		fatal("c-ares: library init: %s", ares_strerror(rc));
}

static int64_t
clock_now(const struct dns *d)
{
	return d->clock ? d->clock() : now_ms();
}

static uint64_t
rng_next(struct dns *d)
{
	/* xorshift64*: only for spreading load over equal MXs */
	d->rng ^= d->rng >> 12;
	d->rng ^= d->rng << 25;
	d->rng ^= d->rng >> 27;
	return d->rng * 0x2545F4914F6CDD1DULL;
}

static const char *
status_name(enum dns_status s)
{
	switch (s) {
	case DNS_OK: return "ok";
	case DNS_NXDOMAIN: return "nxdomain";
	case DNS_NULLMX: return "nullmx";
	case DNS_NOHOST: return "nohost";
	case DNS_TEMPFAIL: return "tempfail";
	}
	return "?";
}

/* ---- c-ares on libevent ---- */

static void
timer_update(struct dns *d)
{
	struct timeval tv, *tvp;

	if (d->destroying)
		return;
	tvp = ares_timeout(d->ch, NULL, &tv);
	if (tvp)
		evtimer_add(d->timer, tvp);
	else
		evtimer_del(d->timer);
}

static void
apply_pending_servers(struct dns *d)
{
	int rc;

	if (!d->pending_servers || d->nq > 0)
		return;
	rc = ares_set_servers_ports_csv(d->ch, d->pending_servers);
	if (rc != ARES_SUCCESS)
		log_warnx("event=dns_reconfigure servers=%s error=\"%s\"",
		    d->pending_servers, ares_strerror(rc));
	free(d->pending_servers);
	d->pending_servers = NULL;
}

static void
sock_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns *d = arg;

	ares_process_fd(d->ch, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
	    (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	timer_update(d);
	apply_pending_servers(d);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns *d = arg;

	ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	timer_update(d);
	apply_pending_servers(d);
}

static void
sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns *d = data;
	struct sockev **pp, *s;

	for (pp = &d->socks; *pp && (*pp)->fd != fd; pp = &(*pp)->next)
		;
	s = *pp;
	if (!readable && !writable) {
		if (s) {
			*pp = s->next;
			event_free(s->ev);
			free(s);
		}
		return;
	}
	if (!s) {
		s = xcalloc(1, sizeof(*s));
		s->fd = fd;
		s->next = d->socks;
		d->socks = s;
	} else
		event_free(s->ev);
	s->ev = event_new(d->base, fd, EV_PERSIST | (readable ? EV_READ : 0) |
	    (writable ? EV_WRITE : 0), sock_cb, d);
	if (!s->ev)
		fatal("dns: event_new failed");
	event_add(s->ev, NULL);
}

static char *
servers_csv(const struct config *c)
{
	if (!c || !c->has_resolver)
		return NULL;
	if (strchr(c->resolver.host, ':'))
		return xasprintf("[%s]:%u", c->resolver.host,
		    c->resolver.port ? c->resolver.port : 53);
	return xasprintf("%s:%u", c->resolver.host, c->resolver.port ? c->resolver.port : 53);
}

struct dns *
dns_new_servers(struct event_base *base, const char *servers, int timeout_ms, int tries)
{
	struct dns *d = xcalloc(1, sizeof(*d));
	struct ares_options o;
	int rc;

	pthread_once(&ares_once, ares_global_init);
	d->base = base;
	memset(&o, 0, sizeof(o));
	o.sock_state_cb = sock_state_cb;
	o.sock_state_cb_data = d;
	o.timeout = timeout_ms > 0 ? timeout_ms : DNS_TIMEOUT_MS;
	o.tries = tries > 0 ? tries : DNS_TRIES;
	rc = ares_init_options(&d->ch, &o,
	    ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
	if (rc != ARES_SUCCESS)
		fatal("c-ares: init: %s", ares_strerror(rc));
	if (servers && (rc = ares_set_servers_ports_csv(d->ch, servers)) != ARES_SUCCESS)
		fatal("c-ares: resolver %s: %s", servers, ares_strerror(rc));
	d->timer = evtimer_new(base, timer_cb, d);
	if (!d->timer)
		fatal("dns: evtimer_new failed");
	random_bytes(&d->rng, sizeof(d->rng));
	d->rng |= 1;
	return d;
}

struct dns *
dns_new(struct event_base *base, const struct config *c)
{
	char *csv = servers_csv(c);
	struct dns *d = dns_new_servers(base, csv, 0, 0);

	free(csv);
	return d;
}

int
dns_reconfigure(struct dns *d, const struct config *c)
{
	char *csv = servers_csv(c);

	dns_flush(d);
	if (!csv) {
		/* back to resolv.conf: c-ares reads it only at init; keep what we have */
		return 0;
	}
	free(d->pending_servers);
	d->pending_servers = csv;
	/* c-ares refuses new servers while queries are pending: apply when idle */
	apply_pending_servers(d);
	return 0;
}

void
dns_set_clock(struct dns *d, int64_t (*clk)(void))
{
	d->clock = clk;
}

/* ---- cache ---- */

static void
cached_free(struct cached *c)
{
	if (c) {
		free(c->hosts);
		free(c);
	}
}

static void
job_free(struct job *j)
{
	struct waiter *w, *n;

	for (w = j->waiters; w; w = n) {
		n = w->next;
		free(w);
	}
	free(j);
}

static struct entry *
entry_find(struct dns *d, enum ekind kind, const char *name)
{
	unsigned b = (unsigned)(hash_str(name) % CACHE_BUCKETS);

	for (struct entry *e = d->buckets[b]; e; e = e->next)
		if (e->kind == kind && strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

static void
entry_unlink(struct dns *d, struct entry *e)
{
	struct entry **pp;

	for (pp = &d->buckets[e->bucket]; *pp && *pp != e; pp = &(*pp)->next)
		;
	if (*pp) {
		*pp = e->next;
		d->nentries--;
	}
	cached_free(e->res);
	free(e->name);
	free(e);
}

/* Drop idle entries: expired ones, or all of them (flush). */
static void
cache_purge(struct dns *d, bool all)
{
	int64_t now = clock_now(d);

	for (int b = 0; b < CACHE_BUCKETS; b++) {
		struct entry *e = d->buckets[b], *n;

		for (; e; e = n) {
			n = e->next;
			if (e->pinned)
				continue;
			if (e->job) {
				if (all) {
					cached_free(e->res);
					e->res = NULL;
				}
				continue;
			}
			if (all || !e->res || e->res->expires_ms <= now)
				entry_unlink(d, e);
		}
	}
}

static struct entry *
entry_new(struct dns *d, enum ekind kind, const char *name)
{
	struct entry *e;

	if (d->nentries >= CACHE_MAX) {
		cache_purge(d, false);
		if (d->nentries >= CACHE_MAX)
			cache_purge(d, true);
	}
	e = xcalloc(1, sizeof(*e));
	e->kind = kind;
	e->name = xstrdup(name);
	e->bucket = (unsigned)(hash_str(name) % CACHE_BUCKETS);
	e->next = d->buckets[e->bucket];
	d->buckets[e->bucket] = e;
	d->nentries++;
	return e;
}

void
dns_flush(struct dns *d)
{
	cache_purge(d, true);
}

/* Copy a cached result out for one caller, shuffling equal preferences. */
static void
deliver(struct dns *d, const struct cached *c, dns_cb cb, void *arg)
{
	struct dns_result *r = xcalloc(1, sizeof(*r));

	r->status = c->status;
	snprintf(r->errmsg, sizeof(r->errmsg), "%s", c->errmsg);
	r->implicit_mx = c->implicit_mx;
	r->expires_ms = c->expires_ms;
	r->nhosts = c->nhosts;
	if (c->nhosts)
		memcpy(r->hosts, c->hosts, sizeof(struct dns_host) * (size_t)c->nhosts);
	for (int i = 0; i < r->nhosts; ) {
		int j = i;

		while (j < r->nhosts && r->hosts[j].pref == r->hosts[i].pref)
			j++;
		for (int k = j - 1; k > i; k--) {
			int m = i + (int)(rng_next(d) % (uint64_t)(k - i + 1));
			struct dns_host tmp;

			if (m == k)
				continue;
			tmp = r->hosts[k];
			r->hosts[k] = r->hosts[m];
			r->hosts[m] = tmp;
		}
		i = j;
	}
	cb(r, arg);
	free(r);
}

static int64_t
clamp_ttl(int64_t ms, int64_t lo, int64_t hi)
{
	return ms < lo ? lo : ms > hi ? hi : ms;
}

/*
 * The lookup of j->e is complete: cache what may be cached, detach the job
 * from its entry (callers may start new lookups from their callbacks) and
 * call every waiter.
 */
static void
job_finish(struct job *j, struct cached *c)
{
	struct dns *d = j->d;
	struct entry *e = j->e;
	struct waiter *w, *n;
	bool cacheable = c->status != DNS_TEMPFAIL;

	log_debug("event=dns name=%s kind=%s status=%s hosts=%d ttl_ms=%lld%s%s",
	    e->name, e->kind == EK_MX ? "mx" : "host", status_name(c->status), c->nhosts,
	    (long long)(c->expires_ms - clock_now(d)), c->errmsg[0] ? " error=" : "",
	    c->errmsg[0] ? c->errmsg : "");
	e->job = NULL;
	cached_free(e->res);
	e->res = NULL;
	if (cacheable) {
		e->res = c;
		e->pinned++;    /* callbacks may look up (and purge) meanwhile */
	} else
		entry_unlink(d, e);
	w = j->waiters;
	j->waiters = NULL;
	free(j);
	for (; w; w = n) {
		n = w->next;
		deliver(d, c, w->cb, w->arg);
		free(w);
	}
	if (cacheable)
		e->pinned--;
	else
		cached_free(c);
}

static void job_start(struct dns *d, struct entry *e);

/* Find or start a lookup; cb runs now on a fresh cache hit. */
static void
lookup(struct dns *d, enum ekind kind, const char *name, dns_cb cb, void *arg)
{
	struct entry *e = entry_find(d, kind, name);
	struct waiter *w;

	if (e && e->res && e->res->expires_ms > clock_now(d)) {
		deliver(d, e->res, cb, arg);
		return;
	}
	if (!e)
		e = entry_new(d, kind, name);
	w = xcalloc(1, sizeof(*w));
	w->cb = cb;
	w->arg = arg;
	if (e->job) {
		*e->job->wtail = w;
		e->job->wtail = &w->next;
		return;
	}
	e->job = xcalloc(1, sizeof(*e->job));
	e->job->d = d;
	e->job->e = e;
	e->job->waiters = w;
	e->job->wtail = &w->next;
	e->job->min_ttl_ms = TTL_MAX_MS;
	e->job->neg_ttl_ms = NEG_TTL_DEFAULT_MS;
	e->job->slot_expires_ms = INT64_MAX;
	job_start(d, e);
}

/* ---- raw answers: TTLs c-ares does not give us ---- */

/*
 * Walk the answer and authority sections: the smallest TTL among answer
 * records of `type`, and the negative TTL of an SOA in the authority
 * section (min of its TTL and its MINIMUM, RFC 2308 5). -1 when absent.
 */
static void
answer_ttls(const unsigned char *abuf, int alen, int type, long *min_ttl, long *neg_ttl)
{
	const unsigned char *p = abuf + 12, *end = abuf + alen;
	int qd, an, ns;
	char *s;
	long enclen;

	*min_ttl = -1;
	*neg_ttl = -1;
	if (!abuf || alen < 12)
		return;
	qd = abuf[4] << 8 | abuf[5];
	an = abuf[6] << 8 | abuf[7];
	ns = abuf[8] << 8 | abuf[9];
	for (int i = 0; i < qd; i++) {
		if (ares_expand_name(p, abuf, alen, &s, &enclen) != ARES_SUCCESS)
			return;
		ares_free_string(s);
		p += enclen + 4;
		if (p > end)
			return;
	}
	for (int i = 0; i < an + ns; i++) {
		int rtype, rdlen;
		long ttl;

		if (ares_expand_name(p, abuf, alen, &s, &enclen) != ARES_SUCCESS)
			return;
		ares_free_string(s);
		p += enclen;
		if (end - p < 10)
			return;
		rtype = p[0] << 8 | p[1];
		ttl = (long)((unsigned long)p[4] << 24 | (unsigned long)p[5] << 16 |
		    (unsigned long)p[6] << 8 | p[7]) & 0x7fffffffL;
		rdlen = p[8] << 8 | p[9];
		p += 10;
		if (end - p < rdlen)
			return;
		if (i < an && rtype == type && (*min_ttl < 0 || ttl < *min_ttl))
			*min_ttl = ttl;
		if (i >= an && rtype == T_SOA) {
			const unsigned char *q = p;
			long minimum;

			/* MNAME, RNAME, then SERIAL REFRESH RETRY EXPIRE MINIMUM */
			for (int k = 0; k < 2; k++) {
				if (ares_expand_name(q, abuf, alen, &s, &enclen) != ARES_SUCCESS)
					return;
				ares_free_string(s);
				q += enclen;
			}
			if (q + 20 <= p + rdlen) {
				minimum = (long)((unsigned long)q[16] << 24 |
				    (unsigned long)q[17] << 16 | (unsigned long)q[18] << 8 |
				    q[19]) & 0x7fffffffL;
				*neg_ttl = MIN(ttl, minimum);
			}
		}
		p += rdlen;
	}
}

static void
note_neg_ttl(struct job *j, const unsigned char *abuf, int alen, int type)
{
	long ttl, neg;

	answer_ttls(abuf, alen, type, &ttl, &neg);
	if (neg >= 0)
		j->neg_ttl_ms = clamp_ttl((int64_t)neg * 1000, TTL_MIN_MS, NEG_TTL_MAX_MS);
}

static void
set_neg_expiry(struct dns *d, struct job *j, struct cached *c)
{
	c->expires_ms = clock_now(d) + clamp_ttl(j->neg_ttl_ms, TTL_MIN_MS, NEG_TTL_MAX_MS);
}

static bool
is_temp(int st)
{
	return st != ARES_SUCCESS && st != ARES_ENODATA && st != ARES_ENOTFOUND &&
	    st != ARES_EBADNAME;
}

/* ---- HOST: A + AAAA in parallel ---- */

static void
host_complete(struct job *j)
{
	struct dns *d = j->d;
	struct cached *c = xcalloc(1, sizeof(*c));
	struct dns_host *h;
	int n = 0;

	if (j->n4 + j->n6 > 0) {
		c->status = DNS_OK;
		c->nhosts = 1;
		c->hosts = h = xcalloc(1, sizeof(*h));
		snprintf(h->name, sizeof(h->name), "%s", j->e->name);
		for (int i = 0; i < j->n4 && n < DNS_MAX_ADDRS; i++)
			h->addrs[n++] = j->a4[i];
		for (int i = 0; i < j->n6 && n < DNS_MAX_ADDRS; i++)
			h->addrs[n++] = j->a6[i];
		h->naddrs = n;
		c->expires_ms = clock_now(d) + clamp_ttl(j->min_ttl_ms, TTL_MIN_MS, TTL_MAX_MS);
	} else if (is_temp(j->a_status) || is_temp(j->aaaa_status)) {
		c->status = DNS_TEMPFAIL;
		snprintf(c->errmsg, sizeof(c->errmsg), "address lookup for %s: %s",
		    j->e->name, ares_strerror(is_temp(j->a_status) ? j->a_status : j->aaaa_status));
	} else if (j->a_status == ARES_ENOTFOUND || j->a_status == ARES_EBADNAME) {
		c->status = DNS_NXDOMAIN;
		snprintf(c->errmsg, sizeof(c->errmsg), "host %s not found", j->e->name);
		set_neg_expiry(d, j, c);
	} else {
		c->status = DNS_NOHOST;
		snprintf(c->errmsg, sizeof(c->errmsg), "host %s has no address", j->e->name);
		set_neg_expiry(d, j, c);
	}
	job_finish(j, c);
}

static void
addr_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen, int v6)
{
	struct job *j = arg;
	struct dns *d = j->d;

	d->nq--;
	if (d->destroying || status == ARES_EDESTRUCTION)
		return;
	if (status == ARES_SUCCESS) {
		struct ares_addrttl t4[DNS_MAX_ADDRS];
		struct ares_addr6ttl t6[DNS_MAX_ADDRS];
		int n = DNS_MAX_ADDRS, rc;

		if (v6)
			rc = ares_parse_aaaa_reply(abuf, alen, NULL, t6, &n);
		else
			rc = ares_parse_a_reply(abuf, alen, NULL, t4, &n);
		if (rc != ARES_SUCCESS)
			n = 0;
		if (rc != ARES_SUCCESS && rc != ARES_ENODATA)
			status = rc;
		else if (n == 0)
			status = ARES_ENODATA;
		for (int i = 0; i < n; i++) {
			int64_t ttl = (int64_t)(v6 ? t6[i].ttl : t4[i].ttl) * 1000;

			if (ttl < j->min_ttl_ms)
				j->min_ttl_ms = ttl;
			if (v6) {
				struct sockaddr_in6 *s = (struct sockaddr_in6 *)&j->a6[j->n6++];
				s->sin6_family = AF_INET6;
				memcpy(&s->sin6_addr, &t6[i].ip6addr, sizeof(s->sin6_addr));
			} else {
				struct sockaddr_in *s = (struct sockaddr_in *)&j->a4[j->n4++];
				s->sin_family = AF_INET;
				s->sin_addr = t4[i].ipaddr;
			}
		}
	} else if (status == ARES_ENOTFOUND || status == ARES_ENODATA)
		note_neg_ttl(j, abuf, alen, v6 ? T_AAAA : T_A);
	if (v6)
		j->aaaa_status = status;
	else
		j->a_status = status;
	if (--j->pending == 0)
		host_complete(j);
}

static void
a_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	addr_cb(arg, status, timeouts, abuf, alen, 0);
}

static void
aaaa_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	addr_cb(arg, status, timeouts, abuf, alen, 1);
}

static void
query(struct dns *d, const char *name, int type, ares_callback cb, void *arg)
{
	d->nq++;
	ares_query(d->ch, name, C_IN, type, cb, arg);
}

/* ---- MX ---- */

static int
host_cmp(const void *a, const void *b)
{
	const struct dns_host *x = a, *y = b;

	return (int)x->pref - (int)y->pref;
}

static void
mx_complete(struct job *j)
{
	struct dns *d = j->d;
	struct cached *c = xcalloc(1, sizeof(*c));
	int ok = 0, temp = 0;

	for (int i = 0; i < j->nmx; i++) {
		if (j->slot[i].status == DNS_OK && j->mx[i].naddrs > 0)
			ok++;
		else if (j->slot[i].status == DNS_TEMPFAIL)
			temp++;
	}
	if (ok) {
		int n = 0;
		int64_t exp = clock_now(d) + clamp_ttl(j->min_ttl_ms, TTL_MIN_MS, TTL_MAX_MS);

		c->status = DNS_OK;
		c->implicit_mx = j->implicit;
		c->hosts = xcalloc((size_t)ok, sizeof(struct dns_host));
		for (int i = 0; i < j->nmx; i++)
			if (j->slot[i].status == DNS_OK && j->mx[i].naddrs > 0)
				c->hosts[n++] = j->mx[i];
		c->nhosts = n;
		if (j->slot_expires_ms < exp)
			exp = j->slot_expires_ms;
		c->expires_ms = MAX(exp, clock_now(d) + TTL_MIN_MS);
	} else if (temp) {
		c->status = DNS_TEMPFAIL;
		snprintf(c->errmsg, sizeof(c->errmsg), j->implicit ?
		    "address lookup for %s failed temporarily" :
		    "address lookup of every MX of %s failed temporarily", j->e->name);
	} else if (j->implicit && j->slot[0].status == DNS_NXDOMAIN) {
		c->status = DNS_NXDOMAIN;
		snprintf(c->errmsg, sizeof(c->errmsg), "domain %s not found", j->e->name);
		set_neg_expiry(d, j, c);
	} else {
		c->status = DNS_NOHOST;
		snprintf(c->errmsg, sizeof(c->errmsg), j->implicit ?
		    "domain %s has no MX and no address" : "no MX host of %s has an address",
		    j->e->name);
		set_neg_expiry(d, j, c);
	}
	job_finish(j, c);
}

static void
mx_host_cb(const struct dns_result *res, void *arg)
{
	struct mxslot *s = arg;
	struct job *j = s->job;
	struct dns_host *h = &j->mx[s->idx];

	s->status = res->status;
	if (res->status == DNS_OK && res->nhosts > 0) {
		h->naddrs = res->hosts[0].naddrs;
		memcpy(h->addrs, res->hosts[0].addrs, sizeof(h->addrs));
		if (res->expires_ms < j->slot_expires_ms)
			j->slot_expires_ms = res->expires_ms;
	}
	if (--j->pending == 0)
		mx_complete(j);
}

/* Resolve every MX host (or the domain itself) through HOST entries. */
static void
mx_resolve_hosts(struct job *j)
{
	struct dns *d = j->d;

	j->pending++;          /* hold: host lookups may answer from the cache */
	for (int i = 0; i < j->nmx; i++) {
		j->slot[i].job = j;
		j->slot[i].idx = i;
		j->slot[i].status = DNS_TEMPFAIL;
		j->pending++;
		lookup(d, EK_HOST, j->mx[i].name, mx_host_cb, &j->slot[i]);
	}
	if (--j->pending == 0)
		mx_complete(j);
}

static void
normalize_name(char *dst, size_t len, const char *src)
{
	size_t n;

	snprintf(dst, len, "%s", src);
	str_lower(dst);
	n = strlen(dst);
	while (n > 0 && dst[n - 1] == '.')
		dst[--n] = '\0';
}

static void
mx_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct job *j = arg;
	struct dns *d = j->d;
	struct ares_mx_reply *mx = NULL;
	struct cached *c;
	long ttl, neg;
	int n = 0, nnull = 0;

	d->nq--;
	if (d->destroying || status == ARES_EDESTRUCTION)
		return;
	if (status == ARES_SUCCESS) {
		int rc = ares_parse_mx_reply(abuf, alen, &mx);

		if (rc == ARES_ENODATA)
			status = ARES_ENODATA;      /* e.g. only a CNAME without MX */
		else if (rc != ARES_SUCCESS)
			status = rc;
	}
	if (status == ARES_ENODATA) {
		/* RFC 5321 5.1: no MX, the domain is its own implicit MX */
		j->implicit = true;
		j->nmx = 1;
		snprintf(j->mx[0].name, sizeof(j->mx[0].name), "%s", j->e->name);
		note_neg_ttl(j, abuf, alen, T_MX);
		mx_resolve_hosts(j);
		return;
	}
	if (status != ARES_SUCCESS) {
		c = xcalloc(1, sizeof(*c));
		if (status == ARES_ENOTFOUND || status == ARES_EBADNAME) {
			c->status = DNS_NXDOMAIN;
			snprintf(c->errmsg, sizeof(c->errmsg), "domain %s not found", j->e->name);
			note_neg_ttl(j, abuf, alen, T_MX);
			set_neg_expiry(d, j, c);
		} else {
			c->status = DNS_TEMPFAIL;
			snprintf(c->errmsg, sizeof(c->errmsg), "MX lookup for %s: %s",
			    j->e->name, ares_strerror(status));
		}
		job_finish(j, c);
		return;
	}

	answer_ttls(abuf, alen, T_MX, &ttl, &neg);
	if (ttl >= 0)
		j->min_ttl_ms = MIN(j->min_ttl_ms, (int64_t)ttl * 1000);
	for (struct ares_mx_reply *m = mx; m; m = m->next) {
		char name[256];
		bool dup = false;

		normalize_name(name, sizeof(name), m->host ? m->host : "");
		if (name[0] == '\0') {
			nnull++;        /* "MX 0 ." */
			continue;
		}
		for (int i = 0; i < n; i++)
			if (strcmp(j->mx[i].name, name) == 0) {
				dup = true;
				if (m->priority < j->mx[i].pref)
					j->mx[i].pref = m->priority;
			}
		if (dup)
			continue;
		if (n == DNS_MAX_HOSTS) {
			/* keep the most preferred DNS_MAX_HOSTS */
			int worst = 0;
			for (int i = 1; i < n; i++)
				if (j->mx[i].pref > j->mx[worst].pref)
					worst = i;
			if (m->priority >= j->mx[worst].pref)
				continue;
			memset(&j->mx[worst], 0, sizeof(j->mx[worst]));
			snprintf(j->mx[worst].name, sizeof(j->mx[worst].name), "%s", name);
			j->mx[worst].pref = m->priority;
			continue;
		}
		snprintf(j->mx[n].name, sizeof(j->mx[n].name), "%s", name);
		j->mx[n].pref = m->priority;
		n++;
	}
	ares_free_data(mx);
	if (n == 0 && nnull > 0) {
		/* RFC 7505: the domain accepts no mail */
		c = xcalloc(1, sizeof(*c));
		c->status = DNS_NULLMX;
		snprintf(c->errmsg, sizeof(c->errmsg), "domain %s accepts no mail (null MX)",
		    j->e->name);
		c->expires_ms = clock_now(d) + clamp_ttl(j->min_ttl_ms, TTL_MIN_MS, TTL_MAX_MS);
		job_finish(j, c);
		return;
	}
	if (n == 0) {
		/* an MX answer we could not use: treat as no MX */
		j->implicit = true;
		j->nmx = 1;
		snprintf(j->mx[0].name, sizeof(j->mx[0].name), "%s", j->e->name);
		mx_resolve_hosts(j);
		return;
	}
	qsort(j->mx, (size_t)n, sizeof(j->mx[0]), host_cmp);
	j->nmx = n;
	mx_resolve_hosts(j);
}

/* ---- starting lookups ---- */

static void
job_start(struct dns *d, struct entry *e)
{
	struct job *j = e->job;

	if (e->kind == EK_MX) {
		query(d, e->name, T_MX, mx_cb, j);
	} else {
		j->pending = 3;        /* A, AAAA and this function */
		query(d, e->name, T_A, a_cb, j);
		query(d, e->name, T_AAAA, aaaa_cb, j);
		if (--j->pending == 0)
			host_complete(j);
	}
	timer_update(d);
}

/* "1.2.3.4", "[1.2.3.4]", "[IPv6:::1]", "::1" -> sockaddr; false if not a literal. */
static bool
parse_literal(const char *s, struct sockaddr_storage *ss)
{
	char buf[INET6_ADDRSTRLEN + 8];
	size_t n = strlen(s);
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	const char *p = buf;

	if (n + 1 > sizeof(buf))
		return false;
	if (s[0] == '[' && n > 2 && s[n - 1] == ']') {
		memcpy(buf, s + 1, n - 2);
		buf[n - 2] = '\0';
	} else
		memcpy(buf, s, n + 1);
	if (strncasecmp(p, "IPv6:", 5) == 0)
		p += 5;
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, p, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, p, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		return true;
	}
	return false;
}

static bool
literal_result(struct dns *d, const char *name, dns_cb cb, void *arg)
{
	struct sockaddr_storage ss;
	struct dns_result *r;

	if (!parse_literal(name, &ss))
		return false;
	r = xcalloc(1, sizeof(*r));
	r->status = DNS_OK;
	r->nhosts = 1;
	snprintf(r->hosts[0].name, sizeof(r->hosts[0].name), "%s", name);
	r->hosts[0].naddrs = 1;
	r->hosts[0].addrs[0] = ss;
	r->expires_ms = clock_now(d) + TTL_MAX_MS;
	cb(r, arg);
	free(r);
	return true;
}

static void
immediate(enum dns_status st, const char *msg, const char *name, dns_cb cb, void *arg)
{
	struct dns_result *r = xcalloc(1, sizeof(*r));

	r->status = st;
	snprintf(r->errmsg, sizeof(r->errmsg), "%s: \"%s\"", msg, name);
	cb(r, arg);
	free(r);
}

void
dns_resolve_mx(struct dns *d, const char *domain, dns_cb cb, void *arg)
{
	char name[256];

	if (literal_result(d, domain, cb, arg))
		return;             /* user@[192.0.2.1] */
	normalize_name(name, sizeof(name), domain);
	if (!name[0] || strlen(domain) > 253) {
		immediate(DNS_NXDOMAIN, "invalid domain", domain, cb, arg);
		return;
	}
	lookup(d, EK_MX, name, cb, arg);
}

void
dns_resolve_host(struct dns *d, const char *host, dns_cb cb, void *arg)
{
	char name[256];

	if (literal_result(d, host, cb, arg))
		return;
	normalize_name(name, sizeof(name), host);
	if (!name[0] || strlen(host) > 253) {
		immediate(DNS_NXDOMAIN, "invalid host name", host, cb, arg);
		return;
	}
	lookup(d, EK_HOST, name, cb, arg);
}

/* ---- TXT ---- */

static void
txt_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct txtq *q = arg;
	struct dns *d = q->d;
	struct ares_txt_ext *txt = NULL;
	char *out = NULL;
	size_t len = 0;
	int st;

	d->nq--;
	if (d->destroying || status == ARES_EDESTRUCTION) {
		free(q);
		return;
	}
	if (status == ARES_SUCCESS) {
		int rc = ares_parse_txt_reply_ext(abuf, alen, &txt);

		if (rc == ARES_SUCCESS && txt) {
			for (struct ares_txt_ext *t = txt; t; t = t->next) {
				size_t add = t->length + (t->record_start && out ? 1 : 0);

				out = xrealloc(out, len + add + 1);
				if (t->record_start && len > 0)
					out[len++] = '\n';
				memcpy(out + len, t->txt, t->length);
				len += t->length;
				out[len] = '\0';
			}
			ares_free_data(txt);
		} else
			status = rc == ARES_SUCCESS ? ARES_ENODATA : rc;
	}
	if (status == ARES_SUCCESS && out)
		st = DNS_OK;
	else if (status == ARES_ENOTFOUND || status == ARES_EBADNAME)
		st = DNS_NXDOMAIN;
	else if (status == ARES_ENODATA || status == ARES_SUCCESS)
		st = DNS_NOHOST;
	else
		st = DNS_TEMPFAIL;
	log_debug("event=dns name=%s kind=txt status=%s", q->name, status_name(st));
	q->cb(st, st == DNS_OK ? out : NULL, q->arg);
	free(out);
	free(q);
}

void
dns_lookup_txt(struct dns *d, const char *name, dns_txt_cb cb, void *arg)
{
	struct txtq *q = xcalloc(1, sizeof(*q));

	q->d = d;
	q->cb = cb;
	q->arg = arg;
	normalize_name(q->name, sizeof(q->name), name);
	query(d, q->name, T_TXT, txt_cb, q);
	timer_update(d);
}

void
dns_free(struct dns *d)
{
	if (!d)
		return;
	d->destroying = true;
	/* c-ares calls every pending callback with ARES_EDESTRUCTION; ours ignore it */
	ares_destroy(d->ch);
	for (int b = 0; b < CACHE_BUCKETS; b++) {
		struct entry *e = d->buckets[b], *n;

		for (; e; e = n) {
			n = e->next;
			if (e->job)
				job_free(e->job);
			cached_free(e->res);
			free(e->name);
			free(e);
		}
	}
	while (d->socks) {
		struct sockev *s = d->socks;
		d->socks = s->next;
		event_free(s->ev);
		free(s);
	}
	event_free(d->timer);
	free(d->pending_servers);
	free(d);
}
