/*
 * site_ctl: set a site's limits live (POST /v1/sites/NAME/limits).
 *
 * Only limits that mean the same thing to a running site can be set here:
 * connection and transaction sizes, the two rates, the retry schedule, the
 * queue lifetime and the TLS policy. mx-rollup and route change which site
 * a domain belongs to, and the timeouts belong to connections already
 * open; those stay with the config.
 *
 * Values go through the config's parsers and ranges (conf.c's directive
 * table: keep the ranges below in step with it), so a value the config
 * would refuse is refused here with the same words. Parsing touches no
 * site and can run on any thread, which is what lets the control API check
 * every value of a request before it changes anything. A live value is
 * the site's until the next reload: sites_reconfigure() recomputes all of
 * s->lim, origins included, from the new config.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "conf.h"
#include "log.h"
#include "site.h"
#include "site_ctl.h"
#include "util.h"

enum lkind { K_INT, K_RATE, K_DURATION, K_DURLIST, K_TLS };

static const struct settable {
	enum limit_idx idx;
	enum lkind kind;
	int64_t min, max;              /* K_INT, K_DURATION (max 0 = none); as in conf.c */
} settable[] = {
	{ L_MAX_SMTP_OUT,     K_INT,      1, 10000 },
	{ L_MAX_MSG_PER_CONN, K_INT,      1, 1000000 },
	{ L_MAX_RCPT_PER_MSG, K_INT,      1, 1000 },
	{ L_MAX_MSG_RATE,     K_RATE,     0, 0 },
	{ L_MAX_CONNECT_RATE, K_RATE,     0, 0 },
	{ L_RETRY_AFTER,      K_DURLIST,  0, 0 },
	{ L_BOUNCE_AFTER,     K_DURATION, 1000, 0 },
	{ L_TLS,              K_TLS,      0, 0 },
};

/* In enum tls_mode order, as the config spells them. */
static const char *const tls_names[] = { "none", "opportunistic", "required", "verify" };

const char *
site_limit_names(void)
{
	static char names[256];

	/* built once from the table; the result never changes, so a race only rewrites the same bytes */
	if (names[0] == '\0') {
		char buf[sizeof(names)];
		size_t off = 0;

		for (size_t i = 0; i < ARRAY_SIZE(settable); i++)
			off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%s",
			    i ? ", " : "", conf_limit_name(settable[i].idx));
		memcpy(names, buf, sizeof(names));
	}
	return names;
}

static int
parse_durlist(const char *name, const char *value, struct limit_set *out,
    char *err, size_t errlen)
{
	char *copy = xstrdup(value), *save = NULL;
	int n = 0;

	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		const char *e = NULL;
		int64_t ms;

		if (n == MAX_RETRY_STEPS) {
			snprintf(err, errlen, "%s: at most %d steps", name, MAX_RETRY_STEPS);
			free(copy);
			return -1;
		}
		if (parse_duration(t, &ms, &e) < 0 || ms <= 0) {
			snprintf(err, errlen, "%s: \"%s\": %s", name, t,
			    e != NULL ? e : "must be positive");
			free(copy);
			return -1;
		}
		out->v.retry.ms[n++] = ms;
	}
	free(copy);
	if (n == 0) {
		snprintf(err, errlen, "%s: expected a list like 5m,15m,1h", name);
		return -1;
	}
	out->v.retry.n = n;
	return 0;
}

int
site_limit_parse(const char *name, const char *value, struct limit_set *out,
    char *err, size_t errlen)
{
	const struct settable *st = NULL;
	const char *e = NULL;

	for (size_t i = 0; i < ARRAY_SIZE(settable); i++)
		if (strcmp(conf_limit_name(settable[i].idx), name) == 0)
			st = &settable[i];
	if (st == NULL) {
		snprintf(err, errlen, "\"%s\" cannot be set live; the limits that can: %s",
		    name, site_limit_names());
		return -1;
	}
	memset(out, 0, sizeof(*out));
	out->idx = st->idx;

	switch (st->kind) {
	case K_INT: {
		uint64_t n;

		if (parse_uint(value, &n, &e) < 0)
			break;
		if (n < (uint64_t)st->min || n > (uint64_t)st->max) {
			snprintf(err, errlen, "%s: %s is out of range (%" PRId64 "-%" PRId64 ")",
			    name, value, st->min, st->max);
			return -1;
		}
		out->v.n = (int)n;
		return 0;
	}
	case K_RATE:
		/* what GET shows for 0/h, so that a shown value can be set back */
		if (strcmp(value, "unlimited") == 0) {
			out->v.rate.count = 0;
			out->v.rate.per_ms = 3600000;
			return 0;
		}
		if (parse_rate(value, &out->v.rate, &e) < 0)
			break;
		return 0;
	case K_DURATION:
		if (parse_duration(value, &out->v.ms, &e) < 0)
			break;
		if (out->v.ms < st->min || (st->max && out->v.ms > st->max)) {
			char a[32];

			fmt_duration(a, sizeof(a), st->min);
			snprintf(err, errlen, "%s: %s is too short (at least %s)", name, value, a);
			return -1;
		}
		return 0;
	case K_DURLIST:
		return parse_durlist(name, value, out, err, errlen);
	case K_TLS:
		for (size_t i = 0; i < ARRAY_SIZE(tls_names); i++)
			if (strcmp(tls_names[i], value) == 0) {
				out->v.tls = (enum tls_mode)i;
				return 0;
			}
		snprintf(err, errlen, "%s: expected one of none|opportunistic|required|verify, not \"%s\"",
		    name, value);
		return -1;
	}
	snprintf(err, errlen, "%s: \"%s\": %s", name, value, e ? e : "bad value");
	return -1;
}

/* The applied value as the config would spell it (for the log). */
static void
fmt_value(char *buf, size_t len, const struct limit_set *v)
{
	size_t off = 0;

	switch (v->idx) {
	case L_MAX_MSG_RATE:
	case L_MAX_CONNECT_RATE:
		if (v->v.rate.count == 0)
			snprintf(buf, len, "unlimited");
		else
			fmt_rate(buf, len, &v->v.rate);
		return;
	case L_RETRY_AFTER:
		buf[0] = '\0';
		for (int k = 0; k < v->v.retry.n && off + 32 < len; k++) {
			if (k > 0)
				buf[off++] = ',';
			fmt_duration(buf + off, len - off, v->v.retry.ms[k]);
			off += strlen(buf + off);
		}
		return;
	case L_BOUNCE_AFTER:
		fmt_duration(buf, len, v->v.ms);
		return;
	case L_TLS:
		snprintf(buf, len, "%s", tls_names[v->v.tls]);
		return;
	default:
		snprintf(buf, len, "%d", v->v.n);
		return;
	}
}

static bool
rate_eq(const struct rate *a, const struct rate *b)
{
	return a->count == b->count && (a->count == 0 || a->per_ms == b->per_ms);
}

void
site_limit_apply(struct site *s, const struct limit_set *v)
{
	struct site_limits *lim = &s->lim;
	static const struct timeval now_tv = { 0, 0 };
	char text[600];

	switch (v->idx) {
	case L_MAX_SMTP_OUT:     lim->max_smtp_out = v->v.n; break;
	case L_MAX_MSG_PER_CONN: lim->max_msg_per_conn = v->v.n; break;
	case L_MAX_RCPT_PER_MSG: lim->max_rcpt_per_msg = v->v.n; break;
	case L_MAX_MSG_RATE:
		if (!rate_eq(&lim->max_msg_rate, &v->v.rate)) {
			lim->max_msg_rate = v->v.rate;
			/* a lane backing off keeps its slower rate (lane_max_msg_rate) */
			for (struct lane *l = s->lanes; l; l = l->next)
				tbucket_init(&l->msg_rate, lane_max_msg_rate(l));
		}
		break;
	case L_MAX_CONNECT_RATE:
		if (!rate_eq(&lim->max_connect_rate, &v->v.rate)) {
			lim->max_connect_rate = v->v.rate;
			for (struct lane *l = s->lanes; l; l = l->next)
				tbucket_init(&l->conn_rate, &lim->max_connect_rate);
		}
		break;
	case L_RETRY_AFTER:
		memcpy(lim->retry_after, v->v.retry.ms, sizeof(lim->retry_after));
		lim->nretry = v->v.retry.n;
		break;
	case L_BOUNCE_AFTER:     lim->bounce_after = v->v.ms; break;
	case L_TLS:              lim->tls = v->v.tls; break;
	default:
		/* site_limit_parse makes no other index */
		fatal("site_limit_apply: limit %d cannot be set live", (int)v->idx);
	}
	lim->origin[v->idx] = SITE_LIMIT_LIVE_ORIGIN;
	fmt_value(text, sizeof(text), v);
	log_info("event=site-limit-set site=%s limit=%s value=\"%s\" by=control",
	    s->name, conf_limit_name(v->idx), text);

	/*
	 * Wake every lane with work now rather than when its timer would have
	 * fired: a lane waiting on the old, slower rate may be asleep for
	 * minutes. The timer's callback is the lane's pump, which looks at the
	 * suspension, the buckets and the connection count afresh and sets the
	 * timer again if it still has to wait.
	 */
	for (struct lane *l = s->lanes; l; l = l->next) {
		if (l->nready == 0)
			continue;
		evtimer_del(l->timer);
		evtimer_add(l->timer, &now_tv);
	}
}

int
site_set_limit(struct site *s, const char *name, const char *value,
    char *err, size_t errlen)
{
	struct limit_set v;

	if (site_limit_parse(name, value, &v, err, errlen) < 0)
		return -1;
	site_limit_apply(s, &v);
	return 0;
}
