/*
 * control: the HTTP/1.1 + JSON API on the control socket.
 *
 * evhttp runs on its own thread and event_base. Everything that belongs to
 * a worker (sites, injection) runs on that worker: a request becomes a
 * `struct ctl_call`, is posted to the workers with worker_post(), gathers
 * their answers under the call's lock, and when the last worker is done the
 * call is posted back to the control base with event_base_once(), where the
 * reply is written. An evhttp_request is only ever touched on the control
 * thread; when its connection closes first, the call forgets it and the
 * answer is dropped.
 *
 * Promises: every reply is JSON; errors are
 * {"error":{"code":"...","message":"..."}} with a 4xx/5xx status. The socket
 * is created mode 0660; a stale socket is replaced, a live one is not.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "bandit.h"
#include "campaign.h"
#include "conf.h"
#include "control.h"
#include "ctl_stream.h"
#include "inject.h"
#include "log.h"
#include "mime.h"
#include "queue.h"
#include "recipient.h"
#include "segment.h"
#include "site.h"
#include "site_ctl.h"
#include "smtp_parse.h"
#include "spool.h"
#include "store.h"
#include "suppress.h"
#include "suppress_io.h"
#include "util.h"
#include "warmup.h"
#include "worker.h"

#define CTL_MAX_RCPTS     10000            /* recipients per POST /v1/messages */
#define CTL_DEFAULT_MSGSZ (50ULL << 20)    /* when no listener sets max-message-size */
#define CTL_HTTP_TIMEOUT  120              /* seconds of silence before evhttp drops a client */
#define CTL_MAX_SEGS      8                /* path segments we look at */
#define CTL_MAX_IMPORT    (256ULL << 20)   /* body of POST /v1/suppression/import */

int (*control_reload_fn)(char *err, size_t errlen);

enum call_op { OP_SITES, OP_SITE, OP_QUEUE, OP_SUSPEND, OP_RESUME, OP_BOUNCE, OP_LIMITS,
	OP_INJECT };

/*
 * One request that needs the workers. Created and finished on the control
 * thread; the fields under "gathered" are written by workers under `lock`.
 */
struct ctl_call {
	enum call_op op;
	bool posted;                   /* handed back to the control base (post_lock) */
	struct evhttp_request *req;    /* NULL once the client went away */
	struct evhttp_connection *evcon;
	TAILQ_ENTRY(ctl_call) link;

	/* parameters, read-only once posted */
	char *name;                    /* site name */
	int64_t until_ms;              /* suspend */
	char *reason;                  /* suspend, bounce */
	struct limit_set *lims;        /* limits: parsed and checked, all applied */
	int nlims;

	/* gathered */
	pthread_mutex_t lock;
	int pending;                   /* workers still to answer */
	json_t *items;                 /* site objects */
	long count;                    /* bounced recipients */
	int64_t oldest_ms;             /* oldest message waiting at a site, 0 = none */

	/* inject */
	struct inject *in;
	int code;
	char reply[256];
	char id[QID_LEN + 1];
	json_t *to;                    /* the recipients' addresses */
	json_t *rcpts;
};
TAILQ_HEAD(ctl_call_list, ctl_call);

static struct {
	struct event_base *base;
	struct evhttp *http;
	struct event *stop_ev;         /* activated by control_stop: breaks the loop */
	atomic_bool stopping;
	pthread_t thread;
	bool started;
	char *path;                    /* socket path, to unlink at stop */
	int64_t started_ms;
	struct ctl_call_list calls;    /* waiting for workers (post_lock) */
	atomic_uint next_worker;       /* round robin for injections */
} ctl;

/*
 * Workers post answers back only while the control base is alive; the lock
 * also guards ctl.calls so that control_stop can tell which calls it must
 * free (posted back, never to run) from those a worker will free.
 */
static pthread_mutex_t post_lock = PTHREAD_MUTEX_INITIALIZER;
static struct event_base *post_base;

/* ---------------------------------------------------------------- replies */

static const char *
status_reason(int code)
{
	switch (code) {
	case 200: return "OK";
	case 202: return "Accepted";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Entity";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default:  return code < 400 ? "OK" : "Error";
	}
}

/* Send body (taken) with status code. */
static void
reply_json(struct evhttp_request *req, int code, json_t *body)
{
	struct evbuffer *out = evbuffer_new();
	char *text = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

	json_decref(body);
	if (out == NULL)
		fatal("control: out of memory");
	if (text == NULL) {
		/* a json_pack() failed: a bug, but the client still gets JSON */
		log_warnx("event=control-json-failed status=%d", code);
		code = 500;
		text = xstrdup("{\"error\":{\"code\":\"internal\",\"message\":\"cannot encode the reply\"}}");
	}
	evbuffer_add(out, text, strlen(text));
	evbuffer_add(out, "\n", 1);
	free(text);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/json");
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Cache-Control", "no-store");
	evhttp_send_reply(req, code, status_reason(code), out);
	evbuffer_free(out);
}

static json_t *json_text(const char *s);
static void reply_error(struct evhttp_request *req, int status, const char *code,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
reply_error(struct evhttp_request *req, int status, const char *code,
    const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	reply_json(req, status, json_pack("{s:{s:s,s:o}}", "error",
	    "code", code, "message", json_text(msg)));
}

static json_t *
json_time(int64_t ms)
{
	char buf[64];

	if (ms <= 0)
		return json_null();
	fmt_time3339(buf, sizeof(buf), ms);
	return json_string(buf);
}

/* json_string for possibly NULL or non-UTF-8 text (replaced byte-wise). */
static json_t *
json_text(const char *s)
{
	json_t *j;
	char *copy;

	if (s == NULL)
		return json_null();
	if ((j = json_string(s)) != NULL)
		return j;
	copy = xstrdup(s);
	for (char *p = copy; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	j = json_string(copy);
	free(copy);
	return j ? j : json_null();
}

/* ---------------------------------------------------------------- bodies */

/*
 * The request body as a JSON object. An empty body is {} when `optional`.
 * On failure the error reply is sent and NULL returned.
 */
static json_t *
body_object(struct evhttp_request *req, bool optional)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const char *data;
	json_error_t jerr;
	json_t *j;

	if (len == 0) {
		if (optional)
			return json_object();
		reply_error(req, 400, "bad_request", "a JSON object is required");
		return NULL;
	}
	data = (const char *)evbuffer_pullup(in, -1);
	j = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (j == NULL) {
		reply_error(req, 400, "bad_json", "invalid JSON at line %d column %d: %s",
		    jerr.line, jerr.column, jerr.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		reply_error(req, 400, "bad_json", "the body must be a JSON object");
		return NULL;
	}
	return j;
}

/* A string member: NULL when absent; -1 (with reply sent) when not a string. */
static int
member_str(struct evhttp_request *req, json_t *obj, const char *key, const char **out)
{
	json_t *v = json_object_get(obj, key);

	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
		reply_error(req, 400, "bad_request", "\"%s\" must be a string without NUL", key);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

/* ---------------------------------------------------------------- calls */

static struct ctl_call *
call_new(struct evhttp_request *req, enum call_op op)
{
	struct ctl_call *cc = xcalloc(1, sizeof(*cc));

	cc->op = op;
	cc->req = req;
	cc->evcon = evhttp_request_get_connection(req);
	cc->items = json_array();
	pthread_mutex_init(&cc->lock, NULL);
	pthread_mutex_lock(&post_lock);
	TAILQ_INSERT_TAIL(&ctl.calls, cc, link);
	pthread_mutex_unlock(&post_lock);
	return cc;
}

static void
call_free(struct ctl_call *cc)
{
	pthread_mutex_destroy(&cc->lock);
	json_decref(cc->items);
	json_decref(cc->rcpts);
	json_decref(cc->to);
	if (cc->in != NULL)
		inject_free(cc->in);
	free(cc->name);
	free(cc->reason);
	free(cc->lims);
	free(cc);
}

static void call_done(evutil_socket_t fd, short what, void *arg);

/*
 * From a worker: the call is complete, hand it to the control thread. When
 * control is stopping the answer has nowhere to go; the worker frees it
 * (control_stop has already dropped every request).
 */
static void
call_post(struct ctl_call *cc)
{
	bool stopping, posted = false;

	pthread_mutex_lock(&post_lock);
	stopping = post_base == NULL;
	if (!stopping && event_base_once(post_base, -1, EV_TIMEOUT, call_done, cc, NULL) == 0)
		posted = cc->posted = true;
	else
		TAILQ_REMOVE(&ctl.calls, cc, link);
	pthread_mutex_unlock(&post_lock);
	/* once posted, cc belongs to the control thread: do not touch it */
	if (!posted) {
		if (!stopping)
			log_warnx("event=control-post-failed op=%d", (int)cc->op);
		call_free(cc);
	}
}

/* From a worker: add its site objects (taken); the last one posts back. */
static void
call_gather(struct ctl_call *cc, json_t *local, long count, int64_t oldest_ms)
{
	bool last;

	pthread_mutex_lock(&cc->lock);
	if (local != NULL)
		json_array_extend(cc->items, local);
	cc->count += count;
	if (oldest_ms > 0 && (cc->oldest_ms == 0 || oldest_ms < cc->oldest_ms))
		cc->oldest_ms = oldest_ms;
	last = --cc->pending == 0;
	pthread_mutex_unlock(&cc->lock);
	json_decref(local);
	if (last)
		call_post(cc);
}

/* Post fn(cc) to every worker. */
static void
call_all_workers(struct ctl_call *cc, worker_fn fn)
{
	int n = nworkers;

	cc->pending = n;
	for (int i = 0; i < n; i++)
		worker_post(workers[i], fn, cc);
}

/* The client of a waiting call hung up: forget its request. */
static void exports_conn_closed(struct evhttp_connection *evcon);

static void
conn_closed(struct evhttp_connection *evcon, void *arg)
{
	struct ctl_call *cc;

	exports_conn_closed(evcon);

	pthread_mutex_lock(&post_lock);
	TAILQ_FOREACH(cc, &ctl.calls, link)
		if (cc->evcon == evcon) {
			cc->req = NULL;
			cc->evcon = NULL;
		}
	pthread_mutex_unlock(&post_lock);
}

/* ---------------------------------------------------------------- sites (on workers) */

static const char *
tls_name(enum tls_mode m)
{
	switch (m) {
	case TLS_NONE:          return "none";
	case TLS_OPPORTUNISTIC: return "opportunistic";
	case TLS_REQUIRED:      return "required";
	case TLS_VERIFY:        return "verify";
	}
	return "?";
}

static json_t *
json_duration(int64_t ms)
{
	char buf[64];

	fmt_duration(buf, sizeof(buf), ms);
	return json_string(buf);
}

static json_t *
json_rate(const struct rate *r)
{
	char buf[64];

	if (r->count == 0)
		return json_string("unlimited");
	fmt_rate(buf, sizeof(buf), r);
	return json_string(buf);
}

/* The effective value of limit i, as the config would spell it. */
static json_t *
limit_value(const struct site_limits *l, enum limit_idx i)
{
	char buf[600];
	size_t off = 0;

	switch (i) {
	case L_MAX_SMTP_OUT:       return json_integer(l->max_smtp_out);
	case L_MAX_MSG_PER_CONN:   return json_integer(l->max_msg_per_conn);
	case L_MAX_RCPT_PER_MSG:   return json_integer(l->max_rcpt_per_msg);
	case L_MAX_MSG_RATE:       return json_rate(&l->max_msg_rate);
	case L_MAX_CONNECT_RATE:   return json_rate(&l->max_connect_rate);
	case L_RETRY_AFTER:
		buf[0] = '\0';
		for (int k = 0; k < l->nretry && k < MAX_RETRY_STEPS && off < sizeof(buf) - 32; k++) {
			if (k > 0)
				buf[off++] = ',';
			fmt_duration(buf + off, sizeof(buf) - off, l->retry_after[k]);
			off += strlen(buf + off);
		}
		return json_string(buf);
	case L_BOUNCE_AFTER:       return json_duration(l->bounce_after);
	case L_MX_ROLLUP:          return json_boolean(l->mx_rollup);
	case L_TLS:                return json_string(tls_name(l->tls));
	case L_ROUTE:
		if (!l->has_route)
			return json_null();
		if (l->route.port != 0)
			snprintf(buf, sizeof(buf), "[%s]:%u", l->route.host, (unsigned)l->route.port);
		else
			snprintf(buf, sizeof(buf), "[%s]", l->route.host);
		return json_text(buf);
	case L_ROUTE_AUTH:         return json_text(l->route_user);  /* never the password */
	case L_CONNECT_TIMEOUT:    return json_duration(l->connect_timeout);
	case L_GREETING_TIMEOUT:   return json_duration(l->greeting_timeout);
	case L_EHLO_TIMEOUT:       return json_duration(l->ehlo_timeout);
	case L_MAIL_TIMEOUT:       return json_duration(l->mail_timeout);
	case L_RCPT_TIMEOUT:       return json_duration(l->rcpt_timeout);
	case L_DATA_TIMEOUT:       return json_duration(l->data_timeout);
	case L_DATA_BLOCK_TIMEOUT: return json_duration(l->data_block_timeout);
	case L_DOT_TIMEOUT:        return json_duration(l->dot_timeout);
	case L_IDLE_TIMEOUT:       return json_duration(l->idle_timeout);
	case L_SMTP_PORT: {
		const struct config *c = conf;
		return json_integer(l->smtp_port != 0 ? l->smtp_port : (c ? c->smtp_port : 25));
	}
	case L_COUNT:
		break;
	}
	return json_null();
}

static json_t *
limits_json(const struct site_limits *l)
{
	json_t *o = json_object();

	for (int i = 0; i < L_COUNT; i++) {
		const char *name = conf_limit_name((enum limit_idx)i);
		const char *origin = l->origin[i];

		if (name == NULL)
			continue;
		json_object_set_new(o, name, json_pack("{s:o,s:s}",
		    "value", limit_value(l, (enum limit_idx)i),
		    "origin", origin != NULL ? origin : "default"));
	}
	return o;
}

static json_t *
mx_json(const struct dns_result *mx)
{
	json_t *a = json_array();

	for (int i = 0; i < mx->nhosts && i < DNS_MAX_HOSTS; i++) {
		const struct dns_host *h = &mx->hosts[i];
		json_t *addrs = json_array();

		for (int k = 0; k < h->naddrs && k < DNS_MAX_ADDRS; k++) {
			char ip[INET6_ADDRSTRLEN] = "?";
			const struct sockaddr_storage *ss = &h->addrs[k];

			if (ss->ss_family == AF_INET)
				inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, ip, sizeof(ip));
			else if (ss->ss_family == AF_INET6)
				inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, ip, sizeof(ip));
			json_array_append_new(addrs, json_string(ip));
		}
		json_array_append_new(a, json_pack("{s:o,s:i,s:o}", "host", json_text(h->name),
		    "pref", (int)h->pref, "addrs", addrs));
	}
	return a;
}

/* Creation time of the oldest message in the site's ready queues, 0 = none. */
static int64_t
site_oldest(const struct site *s)
{
	int64_t oldest = 0;
	const struct qrcpt *r;

	for (const struct lane *l = s->lanes; l != NULL; l = l->next)
		for (const struct flow *f = l->flows; f != NULL; f = f->next)
			TAILQ_FOREACH(r, &f->q, link)
				if (oldest == 0 || r->msg->sm.created_ms < oldest)
					oldest = r->msg->sm.created_ms;
	return oldest;
}

static bool
site_is_suspended(const struct site *s, int64_t now)
{
	return s->suspended_until != 0 && s->suspended_until > now;
}

/* A site as JSON; `full` adds limits, MX hosts and lanes. On its owner. */
static json_t *
site_json(struct site *s, bool full, int64_t oldest)
{
	int64_t now = now_ms();
	bool susp = site_is_suspended(s, now);
	json_t *o = json_object();

	json_object_set_new(o, "name", json_text(s->name));
	json_object_set_new(o, "domain", json_text(s->domain));
	json_object_set_new(o, "worker", json_integer(s->owner ? s->owner->idx : -1));
	json_object_set_new(o, "queued", json_integer(site_queued(s)));
	json_object_set_new(o, "connections", json_integer(site_connections(s)));
	json_object_set_new(o, "oldest", json_time(oldest));
	json_object_set_new(o, "suspended", json_boolean(susp));
	json_object_set_new(o, "suspended_until",
	    susp && s->suspended_until != INT64_MAX ? json_time(s->suspended_until) : json_null());
	json_object_set_new(o, "suspend_reason", susp ? json_text(s->suspend_reason) : json_null());
	json_object_set_new(o, "last_error", json_text(s->last_error));
	json_object_set_new(o, "last_error_time", json_time(s->last_error_ms));
	if (!full)
		return o;

	json_object_set_new(o, "route", json_boolean(s->is_route));
	json_object_set_new(o, "provider", s->prov ? json_text(s->prov->name) : json_null());
	json_object_set_new(o, "limits", limits_json(&s->lim));
	json_object_set_new(o, "mx", mx_json(&s->mx));
	if (s->mx.status != DNS_OK)
		json_object_set_new(o, "mx_error", json_text(s->mx.errmsg));

	json_t *lanes = json_array();
	for (struct lane *l = s->lanes; l != NULL; l = l->next) {
		char rate[64];
		fmt_rate(rate, sizeof(rate), lane_max_msg_rate(l));
		json_t *lj = json_pack("{s:o,s:I,s:i,s:I,s:I,s:I,s:s,s:i}",
		    "source", json_text(l->source), "ready", (json_int_t)l->nready,
		    "connections", l->nconn, "delivered", (json_int_t)l->delivered,
		    "transient", (json_int_t)l->transient, "bounced", (json_int_t)l->bounced,
		    "max_msg_rate", rate, "max_smtp_out", lane_max_smtp_out(l));
		/* backoff state: limits in force differ from the site's while it lasts */
		json_object_set_new(lj, "backoff_until",
		    l->backoff_until ? json_time(l->backoff_until) : json_null());
		json_object_set_new(lj, "backoff_reason",
		    l->backoff_reason ? json_text(l->backoff_reason) : json_null());
		json_object_set_new(lj, "backoff_rule_line", json_integer(l->backoff_line));
		json_object_set_new(lj, "backoff_ok_left", json_integer(l->backoff_ok_left));
		/* warm-up: the source has used today's cap for this site's provider */
		json_object_set_new(lj, "warmup_cap_reached", json_boolean(warmup_active() &&
		    warmup_room(l->source, s->prov ? s->prov->name : NULL) <= 0));
		json_array_append_new(lanes, lj);
	}
	json_object_set_new(o, "lanes", lanes);
	return o;
}

struct collect {
	json_t *arr;
	bool full;
	int64_t oldest_ms;
};

static void
collect_site(struct site *s, void *arg)
{
	struct collect *col = arg;
	int64_t oldest = site_oldest(s);

	if (oldest > 0 && (col->oldest_ms == 0 || oldest < col->oldest_ms))
		col->oldest_ms = oldest;
	json_array_append_new(col->arr, site_json(s, col->full, oldest));
}

/* On each worker: list its sites (OP_SITES full, OP_QUEUE summary). */
static void
w_list_sites(void *arg)
{
	struct ctl_call *cc = arg;
	struct worker *w = worker_self();
	struct collect col = { json_array(), cc->op == OP_SITES, 0 };

	if (w != NULL)
		site_foreach(w, collect_site, &col);
	call_gather(cc, col.arr, 0, col.oldest_ms);
}

/* On each worker: act on the named site if this worker has it. */
static void
w_site_op(void *arg)
{
	struct ctl_call *cc = arg;
	struct worker *w = worker_self();
	struct site *s = w != NULL ? site_find(w, cc->name) : NULL;
	json_t *local = NULL;
	long count = 0;

	if (s != NULL) {
		switch (cc->op) {
		case OP_SUSPEND:
			site_suspend(s, cc->until_ms, cc->reason);
			break;
		case OP_RESUME:
			site_resume(s);
			break;
		case OP_BOUNCE:
			count = site_bounce_all(s, cc->reason);
			break;
		case OP_LIMITS:
			/* checked on the control thread: nothing here can fail */
			for (int i = 0; i < cc->nlims; i++)
				site_limit_apply(s, &cc->lims[i]);
			break;
		case OP_SITE: case OP_SITES: case OP_QUEUE: case OP_INJECT:
			break;
		}
		local = json_array();
		json_array_append_new(local, site_json(s, true, site_oldest(s)));
	}
	call_gather(cc, local, count, 0);
}

static int
cmp_site(const void *a, const void *b)
{
	const char *x = json_string_value(json_object_get(*(json_t *const *)a, "name"));
	const char *y = json_string_value(json_object_get(*(json_t *const *)b, "name"));

	return strcmp(x ? x : "", y ? y : "");
}

/* items sorted by site name (a new array). */
static json_t *
sorted_sites(json_t *items)
{
	size_t n = json_array_size(items);
	json_t **v = xcalloc(n + 1, sizeof(*v));
	json_t *out = json_array();

	for (size_t i = 0; i < n; i++)
		v[i] = json_array_get(items, i);
	qsort(v, n, sizeof(*v), cmp_site);
	for (size_t i = 0; i < n; i++)
		json_array_append(out, v[i]);
	free(v);
	return out;
}

/* ---------------------------------------------------------------- replies to calls */

static const char *
rcpt_state_name(int st)
{
	switch (st) {
	case RS_QUEUED:    return "queued";
	case RS_DELIVERED: return "delivered";
	case RS_BOUNCED:   return "bounced";
	case RS_EXPIRED:   return "expired";
	case RS_DELETED:   return "deleted";
	}
	return "unknown";
}

static void
finish_queue(struct ctl_call *cc)
{
	json_t *sites = sorted_sites(cc->items), *o = json_object(), *bysite = json_array();
	long ready = 0, suspended = 0;
	long recipients = atomic_load(&qstats.recipients);
	long scheduled = atomic_load(&qstats.scheduled);
	int64_t oldest = atomic_load(&qstats.oldest_ms);
	int64_t now = now_ms();

	/* qstats.oldest_ms is lazy; the ready queues are exact for what they hold */
	if (cc->oldest_ms > 0 && (oldest <= 0 || cc->oldest_ms < oldest))
		oldest = cc->oldest_ms;
	size_t i;
	json_t *s;

	json_array_foreach(sites, i, s) {
		json_int_t q = json_integer_value(json_object_get(s, "queued"));
		bool susp = json_is_true(json_object_get(s, "suspended"));

		ready += (long)q;
		if (susp)
			suspended += (long)q;
		json_array_append_new(bysite, json_pack("{s:O,s:O,s:O,s:O,s:O}",
		    "name", json_object_get(s, "name"), "queued", json_object_get(s, "queued"),
		    "connections", json_object_get(s, "connections"),
		    "suspended", json_object_get(s, "suspended"),
		    "oldest", json_object_get(s, "oldest")));
	}
	json_decref(sites);
	json_object_set_new(o, "messages", json_integer(atomic_load(&qstats.messages)));
	json_object_set_new(o, "recipients", json_integer(recipients));
	json_object_set_new(o, "by_state", json_pack("{s:I,s:I,s:I,s:I}",
	    "scheduled", (json_int_t)scheduled,
	    "ready", (json_int_t)ready,
	    "in_flight", (json_int_t)MAX(0, recipients - scheduled - ready),
	    "suspended", (json_int_t)suspended));
	json_object_set_new(o, "oldest", oldest > 0 && recipients > 0 ? json_time(oldest) : json_null());
	json_object_set_new(o, "oldest_age", oldest > 0 && recipients > 0 ?
	    json_integer(MAX(0, (now - oldest) / 1000)) : json_null());
	json_object_set_new(o, "sites", bysite);
	reply_json(cc->req, 200, o);
}

static void
finish_site_op(struct ctl_call *cc)
{
	json_t *site = json_array_get(cc->items, 0);
	json_t *o;

	if (site == NULL) {
		reply_error(cc->req, 404, "not_found", "no such site: %s", cc->name);
		return;
	}
	switch (cc->op) {
	case OP_SITE:
		reply_json(cc->req, 200, json_incref(site));
		return;
	case OP_BOUNCE:
		o = json_pack("{s:o,s:I,s:O}", "site", json_text(cc->name),
		    "bounced", (json_int_t)cc->count, "details", site);
		break;
	case OP_LIMITS: {
		json_t *changed = json_array();

		for (int i = 0; i < cc->nlims; i++)
			json_array_append_new(changed, json_string(conf_limit_name(cc->lims[i].idx)));
		o = json_pack("{s:o,s:o,s:O}", "site", json_text(cc->name),
		    "changed", changed, "limits", json_object_get(site, "limits"));
		break;
	}
	default:
		o = json_pack("{s:o,s:O,s:O,s:O}", "site", json_text(cc->name),
		    "suspended", json_object_get(site, "suspended"),
		    "suspended_until", json_object_get(site, "suspended_until"),
		    "details", site);
		break;
	}
	reply_json(cc->req, 200, o);
}

static void
finish_inject(struct ctl_call *cc)
{
	int status;
	const char *code;

	if (cc->code >= 200 && cc->code < 300) {
		reply_json(cc->req, 202, json_pack("{s:s,s:o,s:o}", "id", cc->id,
		    "recipients", cc->rcpts ? json_incref(cc->rcpts) : json_array(),
		    "reply", json_text(cc->reply)));
		return;
	}
	if (cc->code >= 500) {
		status = 400;
		code = "rejected";
	} else {
		status = 503;
		code = "temporary_failure";
	}
	reply_json(cc->req, status, json_pack("{s:{s:s,s:o,s:i}}", "error", "code", code,
	    "message", json_text(cc->reply), "smtp_code", cc->code));
}

/* On the control thread: a call is complete. */
static void
call_done(evutil_socket_t fd, short what, void *arg)
{
	struct ctl_call *cc = arg;
	struct evhttp_request *req;

	pthread_mutex_lock(&post_lock);
	TAILQ_REMOVE(&ctl.calls, cc, link);
	req = cc->req;
	pthread_mutex_unlock(&post_lock);
	if (req != NULL) {
		switch (cc->op) {
		case OP_SITES:
			reply_json(cc->req, 200, json_pack("{s:o}", "sites", sorted_sites(cc->items)));
			break;
		case OP_QUEUE:
			finish_queue(cc);
			break;
		case OP_SITE: case OP_SUSPEND: case OP_RESUME: case OP_BOUNCE: case OP_LIMITS:
			finish_site_op(cc);
			break;
		case OP_INJECT:
			finish_inject(cc);
			break;
		}
	}
	call_free(cc);
}

/* ---------------------------------------------------------------- handlers */

typedef void (*handler_fn)(struct evhttp_request *req, char **params);

static bool
workers_running(void)
{
	int n = nworkers;

	if (n <= 0 || workers == NULL)
		return false;
	for (int i = 0; i < n; i++)
		if (workers[i] == NULL)
			return false;
	return true;
}

static bool
workers_ready(struct evhttp_request *req)
{
	if (workers_running())
		return true;
	reply_error(req, 503, "unavailable", "the delivery workers are not running");
	return false;
}

static void
h_status(struct evhttp_request *req, char **params)
{
	const struct config *c = conf;
	int64_t now = now_ms();
	json_t *o = json_object();

	json_object_set_new(o, "version", json_string(PACKAGE_VERSION));
	json_object_set_new(o, "pid", json_integer(getpid()));
	json_object_set_new(o, "started", json_time(ctl.started_ms));
	json_object_set_new(o, "uptime", json_integer((now - ctl.started_ms) / 1000));
	json_object_set_new(o, "workers", json_integer(nworkers));
	json_object_set_new(o, "hostname", json_text(c ? c->hostname : NULL));
	json_object_set_new(o, "config", json_text(c ? c->path : NULL));
	json_object_set_new(o, "spool", json_text(c ? c->spool : NULL));
	json_object_set_new(o, "counters", json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
	    "messages", (json_int_t)atomic_load(&qstats.messages),
	    "recipients", (json_int_t)atomic_load(&qstats.recipients),
	    "scheduled", (json_int_t)atomic_load(&qstats.scheduled),
	    "received", (json_int_t)atomic_load(&qstats.received),
	    "delivered", (json_int_t)atomic_load(&qstats.delivered),
	    "transient", (json_int_t)atomic_load(&qstats.transient),
	    "bounced", (json_int_t)atomic_load(&qstats.bounced),
	    "expired", (json_int_t)atomic_load(&qstats.expired)));
	reply_json(req, 200, o);
}

/* Warm-up counters are process-wide atomics: no worker needs asking. */
static void
h_warmup(struct evhttp_request *req, char **params)
{
	reply_json(req, 200, warmup_status_json());
}

static void
h_queue(struct evhttp_request *req, char **params)
{
	if (!workers_ready(req))
		return;
	call_all_workers(call_new(req, OP_QUEUE), w_list_sites);
}

static void
h_sites(struct evhttp_request *req, char **params)
{
	if (!workers_ready(req))
		return;
	call_all_workers(call_new(req, OP_SITES), w_list_sites);
}

/* Sites are found by asking every worker: ownership is the workers' business. */
static void
site_call(struct evhttp_request *req, enum call_op op, const char *name,
    int64_t until_ms, const char *reason)
{
	struct ctl_call *cc;

	if (!workers_ready(req))
		return;
	cc = call_new(req, op);
	cc->name = xstrdup(name);
	cc->until_ms = until_ms;
	cc->reason = reason ? xstrdup(reason) : NULL;
	call_all_workers(cc, w_site_op);
}

static void
h_site(struct evhttp_request *req, char **params)
{
	site_call(req, OP_SITE, params[0], 0, NULL);
}

static void
h_suspend(struct evhttp_request *req, char **params)
{
	json_t *body = body_object(req, true);
	const char *dur, *reason, *perr = NULL;
	int64_t ms, until = INT64_MAX;

	if (body == NULL)
		return;
	if (member_str(req, body, "duration", &dur) < 0 ||
	    member_str(req, body, "reason", &reason) < 0)
		goto out;
	if (dur != NULL && *dur != '\0' && strcmp(dur, "forever") != 0) {
		if (parse_duration(dur, &ms, &perr) < 0 || ms <= 0) {
			reply_error(req, 400, "bad_request", "bad duration \"%s\": %s", dur,
			    perr ? perr : "must be positive");
			goto out;
		}
		until = now_ms() + ms;
	}
	site_call(req, OP_SUSPEND, params[0], until,
	    reason && *reason ? reason : "suspended by operator");
out:
	json_decref(body);
}

static void
h_resume(struct evhttp_request *req, char **params)
{
	site_call(req, OP_RESUME, params[0], 0, NULL);
}

static void
h_bounce(struct evhttp_request *req, char **params)
{
	json_t *body = body_object(req, true);
	const char *reason;

	if (body == NULL)
		return;
	if (member_str(req, body, "reason", &reason) == 0)
		site_call(req, OP_BOUNCE, params[0], 0, reason && *reason ? reason : NULL);
	json_decref(body);
}

/*
 * POST /v1/sites/NAME/limits {"max-msg-rate": "100/h", "max-smtp-out": 5}:
 * every value is parsed and checked here before the site is asked, so a
 * request changes all its limits or none. Numbers are taken as their
 * decimal text ("max-smtp-out": 5 is "5").
 */
static void
h_limits(struct evhttp_request *req, char **params)
{
	json_t *body = body_object(req, false), *v;
	struct limit_set *lims = NULL;
	struct ctl_call *cc;
	const char *key;
	char err[1024], num[32];
	int n = 0;

	if (body == NULL)
		return;
	if (json_object_size(body) == 0) {
		reply_error(req, 400, "bad_limit", "no limits given; the limits that can be set: %s",
		    site_limit_names());
		goto out;
	}
	lims = xcalloc(json_object_size(body), sizeof(*lims));
	json_object_foreach(body, key, v) {
		const char *text;

		if (json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v)) {
			text = json_string_value(v);
		} else if (json_is_integer(v)) {
			snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
			text = num;
		} else {
			reply_error(req, 400, "bad_limit", "%s: the value must be a string or an integer",
			    key);
			goto out;
		}
		if (site_limit_parse(key, text, &lims[n], err, sizeof(err)) < 0) {
			reply_error(req, 400, "bad_limit", "%s", err);
			goto out;
		}
		n++;
	}
	if (!workers_ready(req))
		goto out;
	cc = call_new(req, OP_LIMITS);
	cc->name = xstrdup(params[0]);
	cc->lims = lims;
	cc->nlims = n;
	lims = NULL;
	call_all_workers(cc, w_site_op);
out:
	free(lims);
	json_decref(body);
}

static json_t *
message_json(struct qmsg *m)
{
	json_t *o = json_object(), *rcpts = json_array(), *meta = json_object();
	const struct spool_msg *sm = &m->sm;
	char mb[QMSG_META_BUF];

	qmsg_lock(m);
	json_object_set_new(o, "id", json_text(sm->id));
	json_object_set_new(o, "sender", json_text(sm->sender));
	json_object_set_new(o, "created", json_time(sm->created_ms));
	json_object_set_new(o, "size", json_integer((json_int_t)sm->body_len));
	json_object_set_new(o, "priority", json_integer(sm->priority));
	json_object_set_new(o, "pool", json_text(sm->pool));
	json_object_set_new(o, "campaign", json_text(sm->campaign));
	json_object_set_new(o, "envid", json_text(sm->envid));
	json_object_set_new(o, "flags", json_pack("{s:b,s:b,s:b,s:b}",
	    "8bitmime", (sm->flags & MF_8BITMIME) != 0, "smtputf8", (sm->flags & MF_SMTPUTF8) != 0,
	    "dsn", (sm->flags & MF_DSN) != 0, "dkim_signed", (sm->flags & MF_SIGNED) != 0));
	for (int i = 0; i < sm->nmeta; i++)
		if (sm->meta[i].key != NULL)
			json_object_set_new(meta, sm->meta[i].key, json_text(qmsg_meta_at(m, i, mb)));
	json_object_set_new(o, "meta", meta);
	json_object_set_new(o, "deleted", json_boolean(m->deleted));
	for (int i = 0; i < sm->nrcpt; i++) {
		const struct spool_rcpt *r = &sm->rcpts[i];

		json_array_append_new(rcpts, json_pack("{s:o,s:s,s:i,s:o}",
		    "address", json_text(r->addr), "state", rcpt_state_name(r->state),
		    "attempts", (int)r->attempts,
		    "next_attempt", r->state == RS_QUEUED && !m->deleted ?
		        (r->next_ms > 0 ? json_time(r->next_ms) : json_string("now")) : json_null()));
	}
	qmsg_unlock(m);
	json_object_set_new(o, "recipients", rcpts);
	return o;
}

static void
h_message(struct evhttp_request *req, char **params)
{
	struct qmsg *m = queue_find(params[0]);

	if (m == NULL) {
		reply_error(req, 404, "not_found", "no such message in the queue: %s", params[0]);
		return;
	}
	reply_json(req, 200, message_json(m));
	qmsg_unref(m);
}

static void
h_message_delete(struct evhttp_request *req, char **params)
{
	if (queue_delete(params[0]) != 0) {
		reply_error(req, 404, "not_found", "no such message in the queue: %s", params[0]);
		return;
	}
	reply_json(req, 200, json_pack("{s:o,s:b}", "id", json_text(params[0]), "deleted", 1));
}

static void
h_reload(struct evhttp_request *req, char **params)
{
	char err[8192] = "";

	if (control_reload_fn == NULL) {
		reply_error(req, 503, "unavailable", "reload is not available");
		return;
	}
	if (control_reload_fn(err, sizeof(err)) != 0) {
		size_t n = strlen(err);
		json_t *lines = json_array(), *message;

		while (n > 0 && err[n - 1] == '\n')
			err[--n] = '\0';
		message = json_text(*err ? err : "reload failed");
		for (char *p = err, *nl; *p != '\0'; p = nl + 1) {
			if ((nl = strchr(p, '\n')) != NULL)
				*nl = '\0';
			json_array_append_new(lines, json_text(p));
			if (nl == NULL)
				break;
		}
		log_warnx("event=reload-failed by=control");
		reply_json(req, 400, json_pack("{s:{s:s,s:o,s:o}}", "error", "code", "config_error",
		    "message", message, "errors", lines));
		return;
	}
	log_info("event=reloaded by=control");
	reply_json(req, 200, json_pack("{s:b,s:o}", "reloaded", 1,
	    "config", json_text(conf ? conf->path : NULL)));
}

/* ---------------------------------------------------------------- POST /v1/messages */

/*
 * Build an RFC 5322 message (CRLF line ends, not yet dot-stuffed) from the
 * structured fields. Returns NULL with the error reply sent.
 */
static struct evbuffer *
build_structured(struct evhttp_request *req, json_t *body, const char *from,
    json_t *to, bool *utf8)
{
	json_t *headers = json_object_get(body, "headers"), *hv, *e;
	const char *subject, *text, *html, *hk;
	struct mime_header *hdrs = NULL;
	const char **tov = NULL;
	struct evbuffer *out = NULL;
	size_t nh = 0, i;

	if (member_str(req, body, "subject", &subject) < 0 ||
	    member_str(req, body, "text", &text) < 0 ||
	    member_str(req, body, "html", &html) < 0)
		return NULL;
	if (text == NULL && html == NULL) {
		reply_error(req, 400, "bad_request", "a message needs \"raw\", or \"text\" and/or \"html\"");
		return NULL;
	}
	if (headers != NULL && !json_is_object(headers)) {
		reply_error(req, 400, "bad_request", "\"headers\" must be an object of strings");
		return NULL;
	}
	hdrs = xcalloc(json_object_size(headers) + 1, sizeof(*hdrs));
	json_object_foreach(headers, hk, hv) {
		const char *val = json_string_value(hv);

		if (!mime_header_name_ok(hk)) {
			reply_error(req, 400, "bad_request", "bad header name \"%s\"", hk);
			goto out;
		}
		if (val == NULL || strlen(val) != json_string_length(hv) || strpbrk(val, "\r\n")) {
			reply_error(req, 400, "bad_request",
			    "header \"%s\" must be a one-line string", hk);
			goto out;
		}
		if (mime_header_reserved(hk)) {
			reply_error(req, 400, "bad_request",
			    "header \"%s\" is set by sluice for structured messages (use \"raw\")", hk);
			goto out;
		}
		if (strcasecmp(hk, "Subject") == 0 && subject != NULL) {
			reply_error(req, 400, "bad_request", "\"subject\" and a Subject header are both given");
			goto out;
		}
		hdrs[nh].name = hk;
		hdrs[nh++].value = val;
	}
	tov = xcalloc(json_array_size(to) + 1, sizeof(*tov));
	json_array_foreach(to, i, e)
		tov[i] = json_string_value(e);
	out = evbuffer_new();
	mime_build(out, from, tov, json_array_size(to), subject, hdrs, nh, text, html, utf8);
out:
	free(hdrs);
	free(tov);
	return out;
}

/* "Received:" for an API injection, naming the local peer's uid. */
static char *
received_line(struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
	evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
	const struct config *c = conf;
	char date[64], peer[64] = "local";
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	time_t t = time(NULL);
	struct tm tm;

	if (fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0)
		snprintf(peer, sizeof(peer), "local (uid %u pid %d)", (unsigned)cred.uid, (int)cred.pid);
	localtime_r(&t, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	return xasprintf("Received: from %s\r\n\tby %s (sluice) with HTTP; %s", peer,
	    c && c->hostname ? c->hostname : "localhost", date);
}

/*
 * On a worker: the spool write is done (or failed). On success inject has
 * moved the envelope into the queue; the addresses come from cc->to.
 */
static void
inject_done(struct inject *in, int code, const char *reply)
{
	struct ctl_call *cc = in->arg;
	bool ok = code >= 200 && code < 300;
	size_t i;
	json_t *e;

	cc->code = code;
	snprintf(cc->reply, sizeof(cc->reply), "%s", reply ? reply : "");
	snprintf(cc->id, sizeof(cc->id), "%s", in->env.id);
	if (cc->id[0] == '\0' && reply != NULL) {
		const char *q = strstr(reply, "queued as ");

		if (q != NULL)
			snprintf(cc->id, sizeof(cc->id), "%.*s", QID_LEN, q + 10);
	}
	cc->rcpts = json_array();
	/* in->supp keeps the order of the recipients it was taken from */
	int si = 0;
	json_array_foreach(cc->to, i, e) {
		if (ok && si < in->nsupp && strcmp(json_string_value(e), in->supp[si].addr) == 0) {
			const struct suppress_entry *se = &in->supp[si++].e;
			json_array_append_new(cc->rcpts, json_pack("{s:O,s:s,s:s,s:s,s:o}",
			    "address", e, "status", "suppressed",
			    "reason", suppress_reason_name(se->reason),
			    "scope", se->scope[0] ? se->scope : "global",
			    "suppressed_at", json_time(se->time)));
			continue;
		}
		json_array_append_new(cc->rcpts, json_pack("{s:O,s:s}", "address", e,
		    "status", ok ? "queued" : "rejected"));
	}
	cc->in = NULL;
	inject_free(in);
	call_post(cc);
}

static void
w_inject(void *arg)
{
	struct ctl_call *cc = arg;

	inject_submit(cc->in);
}

/* Largest message any listener accepts (the API follows the same bound). */
static uint64_t
max_message_size(const struct config *c)
{
	uint64_t m = 0;

	for (int i = 0; c != NULL && i < c->nlisteners; i++)
		m = MAX(m, c->listeners[i].max_message_size);
	return m ? m : CTL_DEFAULT_MSGSZ;
}

/*
 * "to": an address or an array of them. Returns a new array of valid,
 * distinct addresses, or NULL with the error reply sent.
 */
static json_t *
parse_rcpts(struct evhttp_request *req, json_t *to, bool *utf8)
{
	json_t *out, *e, *x;
	size_t i, k;
	bool u;

	if (json_is_string(to))
		to = json_pack("[O]", to);
	else if (json_is_array(to) && json_array_size(to) > 0)
		json_incref(to);
	else {
		reply_error(req, 400, "bad_request",
		    "\"to\" must be an address or a non-empty array of addresses");
		return NULL;
	}
	if (json_array_size(to) > CTL_MAX_RCPTS) {
		reply_error(req, 400, "bad_request", "too many recipients (at most %d)", CTL_MAX_RCPTS);
		json_decref(to);
		return NULL;
	}
	out = json_array();
	json_array_foreach(to, i, e) {
		const char *a = json_string_value(e);
		bool dup = false;

		if (a == NULL || strlen(a) != json_string_length(e) || !smtp_valid_mailbox(a, true, &u)) {
			reply_error(req, 400, "invalid_address", "invalid recipient address \"%s\"",
			    a ? a : "(not a string)");
			json_decref(out);
			json_decref(to);
			return NULL;
		}
		*utf8 |= u;
		json_array_foreach(out, k, x)
			if (strcasecmp(json_string_value(x), a) == 0)
				dup = true;
		if (!dup)
			json_array_append(out, e);
	}
	json_decref(to);
	return out;
}

/* The message in RFC 5322 form from "raw", or NULL with the reply sent. */
static struct evbuffer *
raw_message(struct evhttp_request *req, json_t *body, bool *utf8)
{
	static const char *const structured[] = { "subject", "text", "html", "headers" };
	json_t *raw_j = json_object_get(body, "raw");
	const char *raw = json_string_value(raw_j), *hend, *hend2;
	size_t n = json_string_length(raw_j);
	struct evbuffer *msg;

	for (size_t i = 0; i < ARRAY_SIZE(structured); i++)
		if (json_object_get(body, structured[i]) != NULL) {
			reply_error(req, 400, "bad_request",
			    "\"raw\" and \"%s\" exclude each other", structured[i]);
			return NULL;
		}
	if (n == 0) {
		reply_error(req, 400, "bad_request", "\"raw\" is empty");
		return NULL;
	}
	/* non-ASCII in the header block needs SMTPUTF8 (RFC 6532) */
	hend = strstr(raw, "\n\n");
	hend2 = strstr(raw, "\r\n\r\n");
	if (hend == NULL || (hend2 != NULL && hend2 < hend))
		hend = hend2;
	if (mime_has_8bit(raw, hend ? (size_t)(hend - raw) : n))
		*utf8 = true;
	msg = evbuffer_new();
	evbuffer_add(msg, raw, n);
	return msg;
}

/* Wire form (CRLF, dot-stuffed, ending in CRLF, no final dot) of msg. */
static struct evbuffer *
wire_form(struct evbuffer *msg, bool *eightbit)
{
	size_t len = evbuffer_get_length(msg), wlen;
	const char *src = (const char *)evbuffer_pullup(msg, -1);
	char *dst = xmalloc(DOT_STUFF_MAX(len) + 2);
	struct evbuffer *wire = evbuffer_new();
	int state = DOT_STATE_INIT;

	wlen = dot_stuff(dst, src, len, &state);
	if (wlen < 2 || dst[wlen - 2] != '\r' || dst[wlen - 1] != '\n') {
		dst[wlen++] = '\r';
		dst[wlen++] = '\n';
	}
	*eightbit = mime_has_8bit(dst, wlen);
	evbuffer_add(wire, dst, wlen);
	free(dst);
	return wire;
}

static void
h_inject(struct evhttp_request *req, char **params)
{
	json_t *body, *to = NULL, *e;
	const char *from, *raw, *pool, *campaign;
	struct evbuffer *msg = NULL;
	struct inject *in;
	struct ctl_call *cc;
	bool utf8 = false, eightbit = false, u = false;
	size_t i, mlen;
	int priority = 0;
	uint64_t maxsz = max_message_size(conf);

	if (!workers_ready(req) || (body = body_object(req, false)) == NULL)
		return;
	if (member_str(req, body, "from", &from) < 0 || member_str(req, body, "raw", &raw) < 0 ||
	    member_str(req, body, "pool", &pool) < 0 || member_str(req, body, "campaign", &campaign) < 0)
		goto out;
	if (from == NULL) {
		reply_error(req, 400, "bad_request", "\"from\" (the envelope sender) is required");
		goto out;
	}
	if (*from != '\0' && !smtp_valid_mailbox(from, true, &u)) {
		reply_error(req, 400, "invalid_address", "invalid sender address \"%s\"", from);
		goto out;
	}
	utf8 = u;
	if ((to = parse_rcpts(req, json_object_get(body, "to"), &utf8)) == NULL)
		goto out;
	if (pool != NULL && conf_pool(conf, pool) == NULL) {
		reply_error(req, 400, "bad_request", "unknown pool \"%s\"", pool);
		goto out;
	}
	if ((e = json_object_get(body, "priority")) != NULL && !json_is_null(e)) {
		if (!json_is_integer(e) || json_integer_value(e) < -1000 || json_integer_value(e) > 1000) {
			reply_error(req, 400, "bad_request", "\"priority\" must be an integer from -1000 to 1000");
			goto out;
		}
		priority = (int)json_integer_value(e);
	}
	if (raw != NULL)
		msg = raw_message(req, body, &utf8);
	else
		msg = build_structured(req, body, from, to, &utf8);
	if (msg == NULL)
		goto out;
	mlen = evbuffer_get_length(msg);
	if (mlen > maxsz) {
		reply_error(req, 413, "too_large", "the message is %zu bytes, the limit is %llu",
		    mlen, (unsigned long long)maxsz);
		goto out;
	}

	in = inject_new();
	in->data = wire_form(msg, &eightbit);
	in->env.sender = xstrdup(from);
	in->env.nrcpt = (int)json_array_size(to);
	in->env.rcpts = xcalloc((size_t)in->env.nrcpt, sizeof(*in->env.rcpts));
	json_array_foreach(to, i, e)
		in->env.rcpts[i].addr = xstrdup(json_string_value(e));
	in->env.flags = (eightbit || utf8 ? MF_8BITMIME : 0) | (utf8 ? MF_SMTPUTF8 : 0);
	in->env.priority = priority;
	in->env.pool = pool ? xstrdup(pool) : NULL;
	in->env.campaign = campaign ? xstrdup(campaign) : NULL;
	in->received = received_line(req);
	in->done = inject_done;

	cc = call_new(req, OP_INJECT);
	cc->in = in;
	cc->to = json_incref(to);
	in->arg = cc;
	worker_post(workers[atomic_fetch_add(&ctl.next_worker, 1) % (unsigned)nworkers],
	    w_inject, cc);
out:
	if (msg != NULL)
		evbuffer_free(msg);
	json_decref(to);
	json_decref(body);
}

/* ---------------------------------------------------------------- campaigns and events */

/*
 * What a streamed body feeds (ctl_stream.c): POST /v1/campaigns,
 * /v1/campaigns/ID/recipients and /v1/events an nd_load (campaign.c),
 * PUT /v1/segments/NAME a seg_load (segment.c). A segment request refused
 * at its head (bad name or mode) keeps its answer for the handler.
 */
struct stream_ctx {
	struct nd_load *nd;
	struct seg_load *seg;
	int status;
	json_t *err;
};

static void
stream_ctx_free(struct stream_ctx *sc)
{
	if (sc == NULL)
		return;
	if (sc->nd != NULL)
		nd_load_free(sc->nd);
	segment_load_free(sc->seg);
	json_decref(sc->err);
	free(sc);
}

/* The value of key in an undecoded query string (malloc'd), or NULL. */
static char *
query_value(const char *query, const char *key)
{
	struct evkeyvalq q;
	const char *v;
	char *out = NULL;

	TAILQ_INIT(&q);
	if (query == NULL || evhttp_parse_query_str(query, &q) != 0)
		return NULL;
	if ((v = evhttp_find_header(&q, key)) != NULL)
		out = xstrdup(v);
	evhttp_clear_headers(&q);
	return out;
}

/*
 * The body was read line by line by the stream filter into an nd_load;
 * here only the answer is written.
 */
static void
h_stream(struct evhttp_request *req, char **params)
{
	struct stream_ctx *sc = ctl_stream_take(req);
	struct evbuffer *plan = NULL;
	json_t *body = NULL;
	int status;

	(void)params;
	if (sc == NULL || sc->nd == NULL) {
		reply_error(req, 400, "bad_request", "the body was not read as NDJSON (send it again)");
		stream_ctx_free(sc);
		return;
	}
	status = nd_load_reply(sc->nd, &body, &plan);
	if (plan != NULL) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
		    "application/x-ndjson");
		evhttp_send_reply(req, status, status_reason(status), plan);
		evbuffer_free(plan);
	} else
		reply_json(req, status, body);
	stream_ctx_free(sc);
}

static void
h_campaigns(struct evhttp_request *req, char **params)
{
	json_t *o;
	int st = campaign_list(&o);

	(void)params;
	reply_json(req, st, o);
}

static void
h_campaign(struct evhttp_request *req, char **params)
{
	json_t *o;
	int st = campaign_status(params[0], &o);

	reply_json(req, st, o);
}

static void
h_campaign_cancel(struct evhttp_request *req, char **params)
{
	json_t *o;
	int st = campaign_cancel(params[0], &o);

	reply_json(req, st, o);
}

static void
h_campaign_explain(struct evhttp_request *req, char **params)
{
	json_t *o;
	int st = campaign_explain(params[0], params[1], &o);
	char seg[256], var[BANDIT_ID_MAX];
	struct bandit_sent sent;

	/* the variant it got, and why (bandit.h) */
	if (st == 200 && bandit_recipient_variant(params[0], params[1], seg, sizeof(seg), var,
	    sizeof(var), &sent) == 1)
		json_object_set_new(o, "variant", json_pack("{s:s,s:o,s:s,s:b,s:b}", "id", var,
		    "segment", json_text(seg), "chosen_by", bandit_why_name(sent.why),
		    "opened", sent.opened, "clicked", sent.clicked));
	reply_json(req, st, o);
}

/* ---------------------------------------------------------------- segments, variants, recipients */

/* PUT /v1/segments/NAME: the members were written as they streamed in. */
static void
h_segment_put(struct evhttp_request *req, char **params)
{
	struct stream_ctx *sc = ctl_stream_take(req);
	json_t *o;
	int st;

	(void)params;
	if (sc == NULL || sc->nd != NULL) {
		reply_error(req, 400, "bad_request", "the body was not read as NDJSON (send it again)");
		stream_ctx_free(sc);
		return;
	}
	if (sc->seg == NULL) {
		reply_json(req, sc->status, json_incref(sc->err));
		stream_ctx_free(sc);
		return;
	}
	st = segment_load_reply(sc->seg, &o);
	reply_json(req, st, o);
	stream_ctx_free(sc);
}

static void
h_segments(struct evhttp_request *req, char **params)
{
	json_t *o;
	int st = segment_list(&o);

	(void)params;
	reply_json(req, st, o);
}

static void
h_segment(struct evhttp_request *req, char **params)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
	char *members = query_value(query, "members"), *after = query_value(query, "after");
	json_t *o;
	int st = segment_get(params[0], &o);

	if (st == 200 && members != NULL) {
		uint64_t n;
		const char *e;
		bool more;

		if (parse_uint(members, &n, &e) < 0 || n > 100000) {
			json_decref(o);
			reply_error(req, 400, "bad_request", "members must be a number from 0 to 100000");
			goto out;
		}
		json_object_set_new(o, "members", segment_members(params[0], after, (size_t)n, &more));
		json_object_set_new(o, "more", json_boolean(more));
	}
	reply_json(req, st, o);
out:
	free(members);
	free(after);
}

static void
h_segment_delete(struct evhttp_request *req, char **params)
{
	json_t *o;
	int st = segment_delete(params[0], &o);

	reply_json(req, st, o);
}

static void
h_campaign_variants(struct evhttp_request *req, char **params)
{
	json_t *o;
	int st = campaign_variants(params[0], &o);

	reply_json(req, st, o);
}

static void
h_recipient(struct evhttp_request *req, char **params)
{
	json_t *o;
	int st = recipient_info(params[0], &o);

	reply_json(req, st, o);
}

static void
h_recipient_trap(struct evhttp_request *req, char **params)
{
	json_t *o;
	int st = recipient_spam_trap(params[0], &o);

	reply_json(req, st, o);
}

/* ---------------------------------------------------------------- streamed bodies */

static void
stream_line(void *ctx, const char *line, size_t len, long n)
{
	struct stream_ctx *sc = ctx;

	if (sc->nd != NULL)
		nd_load_line(sc->nd, line, len, n);
	else if (sc->seg != NULL)
		segment_load_line(sc->seg, line, len, n);
}

static void
stream_too_long(void *ctx, long n)
{
	struct stream_ctx *sc = ctx;

	if (sc->nd != NULL)
		nd_load_too_long(sc->nd, n);
	else if (sc->seg != NULL)
		segment_load_too_long(sc->seg, n);
}

static void
stream_end(void *ctx)
{
	struct stream_ctx *sc = ctx;

	if (sc->nd != NULL)
		nd_load_end(sc->nd);
	else if (sc->seg != NULL)
		segment_load_end(sc->seg);
}

static void
stream_abort(void *ctx)
{
	stream_ctx_free(ctx);
}

static void *
stream_begin(const char *method, const char *path, const char *query)
{
	struct stream_ctx *sc;
	const char *p = path;

	while (*p == '/')
		p++;
	if (strcmp(method, "PUT") == 0 && strncmp(p, "v1/segments/", 12) == 0 &&
	    p[12] != '\0' && strchr(p + 12, '/') == NULL) {
		size_t dlen = 0;
		char *name = evhttp_uridecode(p + 12, 0, &dlen), *mode = query_value(query, "mode");

		sc = xcalloc(1, sizeof(*sc));
		if (name == NULL || strlen(name) != dlen) {
			sc->status = 400;
			sc->err = segment_json_error("bad_request", "invalid segment name");
		} else {
			sc->seg = segment_load_begin(name, mode, &sc->status, &sc->err);
		}
		free(name);
		free(mode);
		return sc;
	}
	struct nd_load *l = nd_load_begin(method, path);
	if (l == NULL)
		return NULL;
	sc = xcalloc(1, sizeof(*sc));
	sc->nd = l;
	return sc;
}

static const struct ctl_stream_ops stream_ops = {
	stream_begin, stream_line, stream_too_long, stream_end, stream_abort,
};

/* ---------------------------------------------------------------- suppression */

/*
 * The suppression list runs on the control thread: lookups are read
 * transactions, changes wait for the store's writer (store_write_wait),
 * an import streams its lines into bounded batches (suppress_io.c), and an
 * export is a chunked reply written a slice at a time as the client reads.
 */

#define SUP_LIST_DEFAULT 1000
#define SUP_LIST_MAX     10000
#define SUP_LIST_SCAN    1000000   /* index entries read per page at most */
#define SUP_EXPORT_SLICE 5000

static const char *
query_get(struct evkeyvalq *q, const char *key)
{
	const char *v = evhttp_find_header(q, key);
	return v != NULL && *v ? v : NULL;
}

static void
query_parse(struct evhttp_request *req, struct evkeyvalq *q)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *qs = uri ? evhttp_uri_get_query(uri) : NULL;

	TAILQ_INIT(q);
	if (qs != NULL && evhttp_parse_query_str(qs, q) != 0) {
		evhttp_clear_headers(q);
		TAILQ_INIT(q);
	}
}

static json_t *
supp_json(const struct suppress_entry *e)
{
	return json_pack("{s:o,s:s,s:s,s:o,s:o}", "address", json_text(e->address),
	    "reason", suppress_reason_name(e->reason),
	    "scope", e->scope[0] ? e->scope : "global",
	    "time", json_time(e->time), "source", json_text(e->source));
}

static void
supp_append(const struct suppress_entry *e, void *arg)
{
	json_array_append_new(arg, supp_json(e));
}

static bool
store_ready(struct evhttp_request *req)
{
	if (store_is_open())
		return true;
	reply_error(req, 503, "unavailable", "the store is not open");
	return false;
}

/* GET /v1/suppression/ADDRESS[?scope=S]: every entry of the address, or one scope. */
static void
h_supp_get(struct evhttp_request *req, char **params)
{
	struct evkeyvalq q;
	const char *scope;
	json_t *arr;
	int n;

	if (!store_ready(req))
		return;
	query_parse(req, &q);
	scope = query_get(&q, "scope");
	arr = json_array();
	if (scope != NULL) {
		struct suppress_entry e;
		n = suppress_get(params[0], scope, &e);
		if (n == 1)
			json_array_append_new(arr, supp_json(&e));
	} else
		n = suppress_get_all(params[0], supp_append, arr);
	if (n < 0 && errno == EINVAL)
		reply_error(req, 400, "bad_request", "not a valid address or scope: %s%s%s",
		    params[0], scope ? " " : "", scope ? scope : "");
	else if (n < 0)
		reply_error(req, 500, "store_error", "the suppression list cannot be read");
	else if (json_array_size(arr) == 0)
		reply_error(req, 404, "not_found", "%s is not on the suppression list%s%s",
		    params[0], scope ? " in scope " : "", scope ? scope : "");
	else {
		char norm[SUP_ADDR_MAX + 1];
		const struct config *c = conf;
		suppress_normalize(params[0], c != NULL && c->suppress_gmail, norm, sizeof(norm));
		reply_json(req, 200, json_pack("{s:o,s:b,s:O}", "address", json_text(norm),
		    "suppressed", 1, "entries", arr));
	}
	json_decref(arr);
	evhttp_clear_headers(&q);
}

/* PUT /v1/suppression/ADDRESS {"reason":..,"scope":..,"source":..} */
static void
h_supp_put(struct evhttp_request *req, char **params)
{
	struct suppress_entry e;
	const char *reason, *scope, *source;
	char err[512];
	json_t *body;

	if (!store_ready(req) || (body = body_object(req, true)) == NULL)
		return;
	if (member_str(req, body, "reason", &reason) < 0 || member_str(req, body, "scope", &scope) < 0 ||
	    member_str(req, body, "source", &source) < 0)
		goto out;
	memset(&e, 0, sizeof(e));
	e.reason = SUP_MANUAL;
	if (reason != NULL && suppress_reason_parse(reason, &e.reason) < 0) {
		reply_error(req, 400, "bad_request", "unknown reason \"%s\" (hard-bounce, complaint, "
		    "unsubscribe, manual, spam-trap, soft-bounces)", reason);
		goto out;
	}
	if (strlen(params[0]) >= sizeof(e.address) || (scope && strlen(scope) >= sizeof(e.scope))) {
		reply_error(req, 400, "bad_request", "address or scope too long");
		goto out;
	}
	snprintf(e.address, sizeof(e.address), "%s", params[0]);
	snprintf(e.scope, sizeof(e.scope), "%s", scope ? scope : "");
	snprintf(e.source, SUP_SOURCE_MAX + 1, "%s", source ? source : "api");
	if (suppress_put_wait(&e, err, sizeof(err)) < 0) {
		bool store = strstr(err, "store") != NULL;
		reply_error(req, store ? 500 : 400, store ? "store_error" : "bad_request", "%s", err);
		goto out;
	}
	reply_json(req, 200, supp_json(&e));
out:
	json_decref(body);
}

struct scopes {
	char v[16][SUP_SCOPE_MAX + 1];
	int n;
	bool more;
};

static void
collect_scope(const struct suppress_entry *e, void *arg)
{
	struct scopes *sc = arg;
	if (sc->n == (int)ARRAY_SIZE(sc->v)) {
		sc->more = true;
		return;
	}
	snprintf(sc->v[sc->n++], sizeof(sc->v[0]), "%s", e->scope);
}

/* DELETE /v1/suppression/ADDRESS[?scope=S]: that scope, or every entry. */
static void
h_supp_delete(struct evhttp_request *req, char **params)
{
	struct evkeyvalq q;
	const char *scope;
	json_t *removed = json_array();
	int rc = 0;

	if (!store_ready(req)) {
		json_decref(removed);
		return;
	}
	query_parse(req, &q);
	scope = query_get(&q, "scope");
	if (scope != NULL) {
		char sc[SUP_SCOPE_MAX + 1];
		rc = suppress_remove_wait(params[0], scope);
		if (rc == 1 && suppress_scope_norm(scope, sc, sizeof(sc)) == 0)
			json_array_append_new(removed, json_string(sc[0] ? sc : "global"));
	} else {
		/* a few scopes per address: gather, then remove one by one */
		struct scopes *sc = xcalloc(1, sizeof(*sc));
		do {
			sc->n = 0;
			sc->more = false;
			rc = suppress_get_all(params[0], collect_scope, sc);
			for (int i = 0; rc >= 0 && i < sc->n; i++) {
				int r = suppress_remove_wait(params[0], sc->v[i]);
				if (r < 0)
					rc = -1;
				else if (r == 1)
					json_array_append_new(removed, json_string(sc->v[i][0] ? sc->v[i] : "global"));
			}
		} while (rc >= 0 && sc->more);
		free(sc);
	}
	if (rc < 0 && errno == EINVAL)
		reply_error(req, 400, "bad_request", "not a valid address or scope: %s%s%s",
		    params[0], scope ? " " : "", scope ? scope : "");
	else if (rc < 0)
		reply_error(req, 500, "store_error", "the suppression list cannot be changed");
	else if (json_array_size(removed) == 0)
		reply_error(req, 404, "not_found", "%s is not on the suppression list%s%s",
		    params[0], scope ? " in scope " : "", scope ? scope : "");
	else {
		reply_json(req, 200, json_pack("{s:o,s:O}", "address", json_text(params[0]),
		    "removed", removed));
	}
	json_decref(removed);
	evhttp_clear_headers(&q);
}

/* GET /v1/suppression?reason=&since=&scope=&cursor=&limit= */
static void
h_supp_list(struct evhttp_request *req, char **params)
{
	struct evkeyvalq q;
	struct suppress_filter f = { .reason = -1 };
	const char *v;
	char scope[SUP_SCOPE_MAX + 1], next[SUP_CURSOR_MAX];
	long limit = SUP_LIST_DEFAULT;
	json_t *arr;
	int n;

	if (!store_ready(req))
		return;
	query_parse(req, &q);
	if ((v = query_get(&q, "reason")) != NULL) {
		enum suppress_reason r;
		if (suppress_reason_parse(v, &r) < 0) {
			reply_error(req, 400, "bad_request", "unknown reason \"%s\"", v);
			goto out;
		}
		f.reason = (int)r;
	}
	if ((v = query_get(&q, "since")) != NULL && suppress_parse_time(v, now_ms(), &f.since) < 0) {
		reply_error(req, 400, "bad_request", "since: \"%s\" is not a time (RFC 3339, epoch seconds, or a duration back from now like 7d)", v);
		goto out;
	}
	if ((v = query_get(&q, "scope")) != NULL) {
		if (suppress_scope_norm(v, scope, sizeof(scope)) < 0) {
			reply_error(req, 400, "bad_request", "bad scope \"%s\" (global, domain:DOMAIN or pool:NAME)", v);
			goto out;
		}
		f.scope = scope;
	}
	if ((v = query_get(&q, "limit")) != NULL) {
		char *end;
		limit = strtol(v, &end, 10);
		if (*end != '\0' || limit < 1 || limit > SUP_LIST_MAX) {
			reply_error(req, 400, "bad_request", "limit must be from 1 to %d", SUP_LIST_MAX);
			goto out;
		}
	}
	arr = json_array();
	n = suppress_list(&f, query_get(&q, "cursor"), (int)limit, SUP_LIST_SCAN, supp_append, arr, next);
	if (n < 0) {
		json_decref(arr);
		if (errno == EINVAL)
			reply_error(req, 400, "bad_request", "the cursor is not one this API gave");
		else
			reply_error(req, 500, "store_error", "the suppression list cannot be read");
		goto out;
	}
	reply_json(req, 200, json_pack("{s:o,s:i,s:o,s:I}", "entries", arr, "count", n,
	    "next_cursor", next[0] ? json_string(next) : json_null(),
	    "total", (json_int_t)suppress_count()));
out:
	evhttp_clear_headers(&q);
}

/* POST /v1/suppression/import?reason=&scope=&source=&first_line= (CSV or NDJSON body) */
static void
h_supp_import(struct evhttp_request *req, char **params)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
	struct evkeyvalq q;
	enum suppress_reason reason = SUP_MANUAL;
	const char *v, *scope;
	char sc[SUP_SCOPE_MAX + 1];
	bool ndjson = false;
	long first = 1;
	struct suppress_import *im = NULL;
	char *line;
	size_t n;
	int64_t t0 = mono_ms();

	if (!store_ready(req))
		return;
	query_parse(req, &q);
	if (ct != NULL) {
		if (str_iprefix(ct, "application/x-ndjson") || str_iprefix(ct, "application/ndjson") ||
		    str_iprefix(ct, "application/jsonl") || str_iprefix(ct, "application/json-lines") ||
		    str_iprefix(ct, "application/x-jsonlines"))
			ndjson = true;
		else if (!str_iprefix(ct, "text/csv") && !str_iprefix(ct, "text/plain") &&
		    !str_iprefix(ct, "application/octet-stream") &&
		    !str_iprefix(ct, "application/x-www-form-urlencoded")) {
			reply_error(req, 415, "unsupported_media_type",
			    "import takes text/csv or application/x-ndjson, not %s", ct);
			goto out;
		}
	}
	if ((v = query_get(&q, "reason")) != NULL && suppress_reason_parse(v, &reason) < 0) {
		reply_error(req, 400, "bad_request", "unknown reason \"%s\"", v);
		goto out;
	}
	scope = query_get(&q, "scope");
	if (suppress_scope_norm(scope, sc, sizeof(sc)) < 0) {
		reply_error(req, 400, "bad_request", "bad scope \"%s\" (global, domain:DOMAIN or pool:NAME)", scope);
		goto out;
	}
	if ((v = query_get(&q, "first_line")) != NULL) {
		char *end;
		first = strtol(v, &end, 10);
		if (*end != '\0' || first < 1) {
			reply_error(req, 400, "bad_request", "first_line must be a line number");
			goto out;
		}
	}
	im = xmalloc(sizeof(*im));
	suppress_import_init(im, ndjson, reason, sc, query_get(&q, "source"), first);
	while ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF)) != NULL) {
		suppress_import_line(im, line, n);
		free(line);
	}
	if ((n = evbuffer_get_length(in)) > 0) {
		/* the last line without its line end */
		line = xmalloc(n + 1);
		evbuffer_remove(in, line, n);
		line[n] = '\0';
		suppress_import_line(im, line, strlen(line));
		free(line);
	}
	int rc = suppress_import_finish(im);
	json_t *errs = json_array();
	for (int i = 0; i < im->nerr; i++)
		json_array_append_new(errs, json_pack("{s:I,s:o}", "line", (json_int_t)im->err[i].line,
		    "message", json_text(im->err[i].msg)));
	log_info("event=suppression-import format=%s imported=%lu invalid=%lu failed=%lu ms=%lld",
	    ndjson ? "ndjson" : "csv", im->imported, im->invalid, im->failed,
	    (long long)(mono_ms() - t0));
	json_t *o = json_pack("{s:I,s:I,s:I,s:I,s:o}", "imported", (json_int_t)im->imported,
	    "invalid", (json_int_t)im->invalid, "skipped", (json_int_t)im->skipped,
	    "last_line", (json_int_t)im->line, "errors", errs);
	if (rc < 0) {
		json_object_set_new(o, "error", json_pack("{s:s,s:s}", "code", "store_error",
		    "message", "the store failed to write some entries (see the log)"));
		json_object_set_new(o, "failed", json_integer((json_int_t)im->failed));
		reply_json(req, 500, o);
	} else
		reply_json(req, 200, o);
out:
	free(im);
	evhttp_clear_headers(&q);
}

/* An export being written: one slice per drained chunk. */
struct supp_export {
	struct evhttp_request *req;
	struct evhttp_connection *evcon;
	bool ndjson;
	unsigned char last[SUP_KEY_MAX];
	size_t lastlen;
	long count;
	LIST_ENTRY(supp_export) link;
};
static LIST_HEAD(, supp_export) exports = LIST_HEAD_INITIALIZER(exports);

static void
export_line(const struct suppress_entry *e, void *arg)
{
	struct supp_export *ex = (struct supp_export *)((void **)arg)[0];
	struct sbuf *sb = ((void **)arg)[1];

	if (ex->ndjson)
		suppress_format_ndjson(e, sb);
	else
		suppress_format_csv(e, sb);
}

static void
export_free(struct supp_export *ex)
{
	LIST_REMOVE(ex, link);
	free(ex);
}

static void
export_more(struct evhttp_connection *evcon, void *arg)
{
	struct supp_export *ex = arg;
	struct sbuf sb = { 0 };
	void *ctx[2] = { ex, &sb };
	int n;

	n = suppress_scan(ex->lastlen ? ex->last : NULL, ex->lastlen, SUP_EXPORT_SLICE,
	    export_line, ctx, ex->last, &ex->lastlen);
	if (n > 0) {
		struct evbuffer *b = evbuffer_new();
		evbuffer_add(b, sb.p, sb.len);
		free(sb.p);
		ex->count += n;
		evhttp_send_reply_chunk_with_cb(ex->req, b, export_more, ex);
		evbuffer_free(b);
		return;
	}
	free(sb.p);
	if (n < 0) {
		/* the status line is long gone: say it in the last line, which
		 * sluicectl checks (a CSV comment, or an NDJSON error object) */
		struct evbuffer *b = evbuffer_new();
		log_warnx("event=suppression-export-failed entries=%ld msg=\"store read failed\"",
		    ex->count);
		evbuffer_add_printf(b, ex->ndjson ?
		    "{\"error\":{\"code\":\"store_error\",\"message\":\"the store read failed after %ld entries\"}}\n" :
		    "# error: the store read failed after %ld entries\n", ex->count);
		evhttp_send_reply_chunk(ex->req, b);
		evbuffer_free(b);
	} else
		log_info("event=suppression-export entries=%ld", ex->count);
	evhttp_send_reply_end(ex->req);
	export_free(ex);
}

/* GET /v1/suppression/export?format=csv|ndjson */
static void
h_supp_export(struct evhttp_request *req, char **params)
{
	struct evkeyvalq q;
	const char *fmt;
	struct supp_export *ex;

	if (!store_ready(req))
		return;
	query_parse(req, &q);
	fmt = query_get(&q, "format");
	if (fmt != NULL && strcmp(fmt, "csv") != 0 && strcmp(fmt, "ndjson") != 0) {
		reply_error(req, 400, "bad_request", "format must be csv or ndjson");
		evhttp_clear_headers(&q);
		return;
	}
	ex = xcalloc(1, sizeof(*ex));
	ex->req = req;
	ex->evcon = evhttp_request_get_connection(req);
	ex->ndjson = fmt != NULL && strcmp(fmt, "ndjson") == 0;
	LIST_INSERT_HEAD(&exports, ex, link);
	evhttp_clear_headers(&q);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    ex->ndjson ? "application/x-ndjson" : "text/csv; charset=utf-8");
	evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
	evhttp_send_reply_start(req, 200, "OK");
	if (!ex->ndjson) {
		struct evbuffer *b = evbuffer_new();
		evbuffer_add(b, suppress_csv_header, strlen(suppress_csv_header));
		evhttp_send_reply_chunk_with_cb(req, b, export_more, ex);
		evbuffer_free(b);
	} else
		export_more(ex->evcon, ex);
}

/* The client of an export went away: the request is gone with it. */
static void
exports_conn_closed(struct evhttp_connection *evcon)
{
	struct supp_export *ex, *next;

	for (ex = LIST_FIRST(&exports); ex != NULL; ex = next) {
		next = LIST_NEXT(ex, link);
		if (ex->evcon == evcon) {
			log_info("event=suppression-export-aborted entries=%ld", ex->count);
			export_free(ex);
		}
	}
}

/* ---------------------------------------------------------------- routing */

static const struct route {
	const char *pattern;           /* path segments; "*" is a parameter */
	enum evhttp_cmd_type method;
	handler_fn fn;
} routes[] = {
	{ "v1/status",            EVHTTP_REQ_GET,    h_status },
	{ "v1/queue",             EVHTTP_REQ_GET,    h_queue },
	{ "v1/sites",             EVHTTP_REQ_GET,    h_sites },
	{ "v1/sites/*",           EVHTTP_REQ_GET,    h_site },
	{ "v1/sites/*/suspend",   EVHTTP_REQ_POST,   h_suspend },
	{ "v1/sites/*/resume",    EVHTTP_REQ_POST,   h_resume },
	{ "v1/sites/*/bounce",    EVHTTP_REQ_POST,   h_bounce },
	{ "v1/sites/*/limits",    EVHTTP_REQ_POST,   h_limits },
	{ "v1/messages",          EVHTTP_REQ_POST,   h_inject },
	{ "v1/messages/*",        EVHTTP_REQ_GET,    h_message },
	{ "v1/messages/*",        EVHTTP_REQ_DELETE, h_message_delete },
	{ "v1/reload",            EVHTTP_REQ_POST,   h_reload },
	{ "v1/campaigns",         EVHTTP_REQ_POST,   h_stream },
	{ "v1/campaigns",         EVHTTP_REQ_GET,    h_campaigns },
	{ "v1/campaigns/*",       EVHTTP_REQ_GET,    h_campaign },
	{ "v1/campaigns/*/cancel", EVHTTP_REQ_POST,  h_campaign_cancel },
	{ "v1/campaigns/*/recipients", EVHTTP_REQ_POST, h_stream },
	{ "v1/campaigns/*/recipients/*", EVHTTP_REQ_GET, h_campaign_explain },
	{ "v1/events",            EVHTTP_REQ_POST,   h_stream },
	{ "v1/suppression",       EVHTTP_REQ_GET,    h_supp_list },
	{ "v1/suppression/import", EVHTTP_REQ_POST,  h_supp_import },
	{ "v1/suppression/export", EVHTTP_REQ_GET,   h_supp_export },
	{ "v1/suppression/*",     EVHTTP_REQ_GET,    h_supp_get },
	{ "v1/suppression/*",     EVHTTP_REQ_PUT,    h_supp_put },
	{ "v1/suppression/*",     EVHTTP_REQ_DELETE, h_supp_delete },
	{ "v1/campaigns/*/variants", EVHTTP_REQ_GET, h_campaign_variants },
	{ "v1/segments",          EVHTTP_REQ_GET,    h_segments },
	{ "v1/segments/*",        EVHTTP_REQ_GET,    h_segment },
	{ "v1/segments/*",        EVHTTP_REQ_PUT,    h_segment_put },
	{ "v1/segments/*",        EVHTTP_REQ_DELETE, h_segment_delete },
	{ "v1/recipients/*",      EVHTTP_REQ_GET,    h_recipient },
	{ "v1/recipients/*/spam-trap", EVHTTP_REQ_POST, h_recipient_trap },
	{ "v1/warmup",            EVHTTP_REQ_GET,    h_warmup },
};

static const char *
method_name(enum evhttp_cmd_type m)
{
	switch (m) {
	case EVHTTP_REQ_GET:     return "GET";
	case EVHTTP_REQ_POST:    return "POST";
	case EVHTTP_REQ_HEAD:    return "HEAD";
	case EVHTTP_REQ_PUT:     return "PUT";
	case EVHTTP_REQ_DELETE:  return "DELETE";
	case EVHTTP_REQ_OPTIONS: return "OPTIONS";
	case EVHTTP_REQ_TRACE:   return "TRACE";
	case EVHTTP_REQ_CONNECT: return "CONNECT";
	case EVHTTP_REQ_PATCH:   return "PATCH";
	}
	return "?";
}

/*
 * Split the path into decoded segments (malloc'd). Empty segments (double
 * or trailing slashes) are skipped. Returns the count, or -1 when the path
 * is unusable (too deep, NUL after decoding).
 */
static int
split_path(const char *path, char **seg, int max)
{
	int n = 0;

	while (path != NULL && *path != '\0') {
		const char *end;
		char *raw, *dec;
		size_t dlen;

		while (*path == '/')
			path++;
		if (*path == '\0')
			break;
		end = strchr(path, '/');
		if (end == NULL)
			end = path + strlen(path);
		if (n == max)
			goto fail;
		raw = xstrndup(path, (size_t)(end - path));
		dec = evhttp_uridecode(raw, 0, &dlen);
		free(raw);
		if (dec == NULL || strlen(dec) != dlen || dlen == 0) {
			free(dec);
			goto fail;
		}
		seg[n++] = dec;
		path = end;
	}
	return n;
fail:
	while (n > 0)
		free(seg[--n]);
	return -1;
}

/* Does pattern match the segments? Parameters go to params[]. */
static bool
route_match(const char *pattern, char **seg, int nseg, char **params)
{
	char buf[128], *save = NULL, *tok;
	int i = 0, np = 0;

	snprintf(buf, sizeof(buf), "%s", pattern);
	for (tok = strtok_r(buf, "/", &save); tok != NULL; tok = strtok_r(NULL, "/", &save), i++) {
		if (i >= nseg)
			return false;
		if (strcmp(tok, "*") == 0)
			params[np++] = seg[i];
		else if (strcmp(tok, seg[i]) != 0)
			return false;
	}
	return i == nseg;
}

static void
ctl_request(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	char *seg[CTL_MAX_SEGS], *params[CTL_MAX_SEGS];
	char allow[128] = "";
	int nseg;
	bool path_ok = false;

	evhttp_connection_set_closecb(evhttp_request_get_connection(req), conn_closed, NULL);
	nseg = split_path(path, seg, CTL_MAX_SEGS);
	if (nseg < 0) {
		reply_error(req, 404, "not_found", "no such endpoint");
		return;
	}
	log_debug("event=control-request method=%s path=\"%s\"", method_name(m), path ? path : "");
	for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
		if (!route_match(routes[i].pattern, seg, nseg, params))
			continue;
		if (routes[i].method == m) {
			routes[i].fn(req, params);
			goto done;
		}
		if (!strstr(allow, method_name(routes[i].method))) {
			size_t l = strlen(allow);
			snprintf(allow + l, sizeof(allow) - l, "%s%s", l ? ", " : "",
			    method_name(routes[i].method));
		}
		path_ok = true;
	}
	if (path_ok) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
		reply_error(req, 405, "method_not_allowed", "%s is not allowed on %s (allowed: %s)",
		    method_name(m), path, allow);
	} else {
		reply_error(req, 404, "not_found", "no such endpoint: %s", path ? path : "");
	}
done:
	while (nseg > 0)
		free(seg[--nseg]);
}

/* ---------------------------------------------------------------- socket and thread */

/*
 * Make the listening socket. An existing socket that still answers belongs
 * to a running daemon and is left alone; a dead one is removed.
 */
static int
control_socket(const struct config *c, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "control-socket %s: path too long (at most %zu bytes)",
		    path, sizeof(sun.sun_path) - 1);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);

	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "control-socket %s: exists and is not a socket", path);
			return -1;
		}
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
			close(fd);
			snprintf(err, errlen, "control-socket %s: another process is listening on it", path);
			return -1;
		}
		if (fd >= 0)
			close(fd);
		if (unlink(path) != 0 && errno != ENOENT) {
			snprintf(err, errlen, "control-socket %s: cannot remove the stale socket: %s",
			    path, strerror(errno));
			return -1;
		}
	}

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "control-socket %s: socket: %s", path, strerror(errno));
		return -1;
	}
	/* Connecting needs write permission: until the chmod only the owner can. */
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		snprintf(err, errlen, "control-socket %s: bind: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (c->user != NULL && geteuid() == 0) {
		struct passwd *pw = getpwnam(c->user);

		if (pw != NULL && chown(path, pw->pw_uid, pw->pw_gid) != 0)
			log_warn("event=control-chown path=%s", path);
	}
	if (chmod(path, 0660) != 0 || listen(fd, 64) != 0) {
		snprintf(err, errlen, "control-socket %s: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		return -1;
	}
	return fd;
}

static void
on_stop(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(ctl.base);
}

static void *
control_main(void *arg)
{
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	/*
	 * The socket exists before the workers do (it is made before privileges
	 * are dropped). Clients that come early wait in the listen backlog
	 * rather than being told the daemon is not running.
	 */
	for (int i = 0; i < 3000 && !workers_running() && !atomic_load(&ctl.stopping); i++)
		usleep(10 * 1000);
	event_base_dispatch(ctl.base);
	return NULL;
}

int
control_start(const struct config *c, char *err, size_t errlen)
{
	const char *path = c->control_socket;
	int fd;

	if (ctl.started) {
		snprintf(err, errlen, "control: already started");
		return -1;
	}
	if (path == NULL || *path == '\0')
		path = RUNSTATEDIR "/sluice/control.sock";
	/* Answers come back from worker threads: the base must be lockable. */
	if (evthread_use_pthreads() != 0) {
		snprintf(err, errlen, "control: libevent has no pthreads support");
		return -1;
	}
	if ((fd = control_socket(c, path, err, errlen)) < 0)
		return -1;

	TAILQ_INIT(&ctl.calls);
	ctl.started_ms = now_ms();
	ctl.base = event_base_new();
	ctl.http = ctl.base ? evhttp_new(ctl.base) : NULL;
	if (ctl.http == NULL) {
		snprintf(err, errlen, "control: cannot create the HTTP server");
		goto fail;
	}
	evhttp_set_allowed_methods(ctl.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
	    EVHTTP_REQ_PATCH);
	/* JSON escaping can double a message (and more for control bytes). */
	/* ... and a suppression import in one request may be a million lines */
	evhttp_set_max_body_size(ctl.http, (ev_ssize_t)MAX(max_message_size(c) * 2 + (1 << 20),
	    CTL_MAX_IMPORT));
	evhttp_set_timeout(ctl.http, CTL_HTTP_TIMEOUT);
	evhttp_set_gencb(ctl.http, ctl_request, NULL);
	/* NDJSON bodies (campaigns, events) are read as they arrive */
	ctl_stream_init(&stream_ops);
	evhttp_set_bevcb(ctl.http, ctl_stream_bevcb, NULL);
	ctl.stop_ev = event_new(ctl.base, -1, 0, on_stop, NULL);
	if (ctl.stop_ev == NULL) {
		snprintf(err, errlen, "control: cannot create its stop event");
		goto fail;
	}
	atomic_store(&ctl.stopping, false);
	if (evhttp_accept_socket_with_handle(ctl.http, fd) == NULL) {
		snprintf(err, errlen, "control-socket %s: cannot accept on it", path);
		goto fail;
	}
	fd = -1;       /* the listener owns it now */
	ctl.path = xstrdup(path);

	pthread_mutex_lock(&post_lock);
	post_base = ctl.base;
	pthread_mutex_unlock(&post_lock);
	if (pthread_create(&ctl.thread, NULL, control_main, NULL) != 0) {
		snprintf(err, errlen, "control: cannot start its thread: %s", strerror(errno));
		pthread_mutex_lock(&post_lock);
		post_base = NULL;
		pthread_mutex_unlock(&post_lock);
		goto fail;
	}
	ctl.started = true;
	log_info("event=control-listen path=%s", path);
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	if (ctl.stop_ev != NULL)
		event_free(ctl.stop_ev);
	ctl.stop_ev = NULL;
	if (ctl.http != NULL)
		evhttp_free(ctl.http);
	if (ctl.base != NULL)
		event_base_free(ctl.base);
	ctl.http = NULL;
	ctl.base = NULL;
	unlink(path);
	free(ctl.path);
	ctl.path = NULL;
	return -1;
}

void
control_stop(void)
{
	struct ctl_call *cc, *next;

	if (!ctl.started)
		return;
	/* From here workers drop their answers instead of posting them. */
	pthread_mutex_lock(&post_lock);
	post_base = NULL;
	pthread_mutex_unlock(&post_lock);
	/* An active event survives until the loop runs (loopbreak would not). */
	atomic_store(&ctl.stopping, true);
	event_active(ctl.stop_ev, EV_READ, 0);
	pthread_join(ctl.thread, NULL);

	/*
	 * Calls posted back will never run (event_base_free drops the
	 * events): free them. Calls still out on workers free themselves when
	 * they finish. Requests go with evhttp.
	 */
	pthread_mutex_lock(&post_lock);
	for (cc = TAILQ_FIRST(&ctl.calls); cc != NULL; cc = next) {
		next = TAILQ_NEXT(cc, link);
		cc->req = NULL;
		cc->evcon = NULL;
		if (cc->posted) {
			TAILQ_REMOVE(&ctl.calls, cc, link);
			call_free(cc);
		}
	}
	pthread_mutex_unlock(&post_lock);
	evhttp_free(ctl.http);
	event_free(ctl.stop_ev);
	event_base_free(ctl.base);
	ctl.stop_ev = NULL;
	ctl.http = NULL;
	ctl.base = NULL;
	if (ctl.path != NULL && unlink(ctl.path) != 0 && errno != ENOENT)
		log_warn("event=control-unlink path=%s", ctl.path);
	free(ctl.path);
	ctl.path = NULL;
	ctl.started = false;
}
