/*
 * inject: everything between "the client sent the last byte" and "250".
 * Rewrite the header block (X-Sluice-* out, Message-ID and Date in when
 * missing, Received on top), drop suppressed recipients, sign with DKIM,
 * queue the message for the spool's next flush (spool_write_async). That
 * runs on the caller's thread when nothing is to be signed (a few
 * microseconds), on a job thread when something is. Once the flush is
 * durable, back on the worker: queue the message, write the reception
 * event, call the caller. A message is acknowledged only after its flush
 * succeeded, which is after the fdatasync of its file (and of the
 * directory for a new file).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "conf.h"
#include "dkim.h"
#include "inject.h"
#include "log.h"
#include "queue.h"
#include "smtp_parse.h"
#include "suppress.h"
#include "util.h"
#include "worker.h"

struct inject *
inject_new(void)
{
	return xcalloc(1, sizeof(struct inject));
}

void
inject_free(struct inject *in)
{
	if (in == NULL)
		return;
	spool_msg_free(&in->env);
	if (in->data)
		evbuffer_free(in->data);
	free(in->received);
	free(in->hdr);
	free(in->sig);
	for (int i = 0; i < in->nsupp; i++)
		free(in->supp[i].addr);
	free(in->supp);
	free(in);
}

void
inject_add_supp(struct inject *in, const char *addr, const struct suppress_entry *e)
{
	in->supp = xrealloc(in->supp, sizeof(*in->supp) * (size_t)(in->nsupp + 1));
	in->supp[in->nsupp].addr = xstrdup(addr);
	in->supp[in->nsupp].e = *e;
	in->nsupp++;
}

static void
add_meta(struct spool_msg *m, const char *key, const char *val, size_t vlen)
{
	for (int i = 0; i < m->nmeta; i++) {
		if (strcmp(m->meta[i].key, key) == 0) {
			free(m->meta[i].value);
			m->meta[i].value = xstrndup(val, vlen);
			return;
		}
	}
	m->meta = xrealloc(m->meta, sizeof(*m->meta) * (size_t)(m->nmeta + 1));
	m->meta[m->nmeta].key = xstrdup(key);
	m->meta[m->nmeta].value = xstrndup(val, vlen);
	m->nmeta++;
}

/* Value of a header field without its name, unfolded and trimmed. */
static char *
field_value(const char *f, size_t len, size_t namelen)
{
	char *v = xmalloc(len + 1);
	size_t o = 0;
	const char *p = f + namelen + 1, *e = f + len;

	for (; p < e; p++) {
		if (*p == '\r' || *p == '\n')
			continue;
		v[o++] = *p == '\t' ? ' ' : *p;
	}
	v[o] = '\0';
	char *s = v;
	while (*s == ' ')
		s++;
	while (o > 0 && v[o - 1] == ' ')
		v[--o] = '\0';
	memmove(v, s, strlen(s) + 1);
	return v;
}

/* Domain of the first address in a From: value ("Name <a@b.c>", "a@b.c"). */
static char *
from_domain(const char *v)
{
	const char *lt = strchr(v, '<');
	const char *start = lt ? lt + 1 : v;
	const char *at = NULL;

	for (const char *p = start; *p && *p != '>' && *p != ','; p++)
		if (*p == '@')
			at = p;
	if (at == NULL)
		return NULL;
	const char *e = at + 1;
	while (*e && *e != '>' && *e != ',' && *e != ' ' && *e != ';')
		e++;
	if (e == at + 1)
		return NULL;
	return str_lower(xstrndup(at + 1, (size_t)(e - at - 1)));
}

static int
parse_priority(const char *v)
{
	if (!strcasecmp(v, "transactional") || !strcasecmp(v, "high") || !strcasecmp(v, "urgent"))
		return 10;
	if (!strcasecmp(v, "bulk") || !strcasecmp(v, "low"))
		return -10;
	if (!strcasecmp(v, "normal"))
		return 0;
	char *end;
	long n = strtol(v, &end, 10);
	if (*v == '\0' || *end != '\0' || n < -100 || n > 100)
		return INT32_MIN;
	return (int)n;
}

static bool
is_field_name_char(char c)
{
	return c > 32 && c < 127 && c != ':';
}

/* Length of the header field starting at p (with continuation lines). */
static size_t
field_len(const char *p, const char *end)
{
	const char *q = p;
	for (;;) {
		const char *nl = memchr(q, '\n', (size_t)(end - q));
		if (nl == NULL)
			return (size_t)(end - p);
		q = nl + 1;
		if (q >= end || (*q != ' ' && *q != '\t'))
			return (size_t)(q - p);
	}
}

int
inject_rewrite_headers(struct inject *in, const char *msg, size_t len,
    char **out, size_t *outlen, size_t *body_off, char *reply, size_t replylen)
{
	struct evbuffer *h = evbuffer_new();
	const char *p = msg, *end = msg + len;
	bool have_mid = false, have_date = false;
	char *fromdom = NULL;
	int rc = 0;

	if (in->received) {
		evbuffer_add(h, in->received, strlen(in->received));
		evbuffer_add(h, "\r\n", 2);
	}
	while (p < end) {
		if (*p == '\r' || *p == '\n')
			break;          /* the blank line: body follows */
		const char *c = p;
		while (c < end && is_field_name_char(*c))
			c++;
		if (c == p || c >= end || *c != ':')
			break;          /* not a header field: the body starts here */
		size_t namelen = (size_t)(c - p);
		size_t flen = field_len(p, end);

		if (namelen > 9 && strncasecmp(p, "X-Sluice-", 9) == 0) {
			char key[64];
			size_t kl = MIN(namelen - 9, sizeof(key) - 1);
			for (size_t i = 0; i < kl; i++)
				key[i] = (char)tolower((unsigned char)p[9 + i]);
			key[kl] = '\0';
			char *v = field_value(p, flen, namelen);
			if (strcmp(key, "pool") == 0) {
				if (conf_pool(conf, v) == NULL) {
					snprintf(reply, replylen, "550 5.6.0 X-Sluice-Pool: unknown pool \"%.100s\"", v);
					rc = -1;
				} else {
					free(in->env.pool);
					in->env.pool = xstrdup(v);
				}
			} else if (strcmp(key, "campaign") == 0) {
				free(in->env.campaign);
				in->env.campaign = xstrdup(v);
			} else if (strcmp(key, "priority") == 0) {
				int pr = parse_priority(v);
				if (pr == INT32_MIN) {
					snprintf(reply, replylen, "550 5.6.0 X-Sluice-Priority: expected transactional, normal, bulk or -100..100");
					rc = -1;
				} else
					in->env.priority = pr;
			} else if (strcmp(key, "notify") == 0) {
				if (strcasecmp(v, "never") == 0)
					in->env.flags |= MF_NOTIFY_NEVER;
			} else if (kl > 0 && strcmp(key, "message_id") != 0 && strcmp(key, "from_domain") != 0)
				add_meta(&in->env, key, v, strlen(v));
			free(v);
			p += flen;
			continue;
		}
		if (namelen == 10 && strncasecmp(p, "Message-ID", 10) == 0) {
			have_mid = true;
			char *v = field_value(p, flen, namelen);
			add_meta(&in->env, "message_id", v, strlen(v));
			free(v);
		} else if (namelen == 4 && strncasecmp(p, "Date", 4) == 0)
			have_date = true;
		else if (namelen == 4 && strncasecmp(p, "From", 4) == 0 && fromdom == NULL) {
			char *v = field_value(p, flen, namelen);
			fromdom = from_domain(v);
			free(v);
		}
		evbuffer_add(h, p, flen);
		if (flen < 2 || p[flen - 1] != '\n')
			evbuffer_add(h, "\r\n", 2);     /* a last header line without CRLF */
		p += flen;
	}
	if (!have_mid) {
		char mid[320];
		int n = snprintf(mid, sizeof(mid), "<%s@%s>", in->env.id, conf->hostname);
		evbuffer_add_printf(h, "Message-ID: %s\r\n", mid);
		add_meta(&in->env, "message_id", mid, (size_t)n);
	}
	if (!have_date) {
		char date[64];
		time_t t = (time_t)(now_ms() / 1000);
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
		evbuffer_add_printf(h, "Date: %s\r\n", date);
	}
	if (fromdom)
		add_meta(&in->env, "from_domain", fromdom, strlen(fromdom));
	free(fromdom);
	*body_off = (size_t)(p - msg);
	/* a message with no blank line before its body gets one */
	if (p < end && *p != '\r' && *p != '\n')
		evbuffer_add(h, "\r\n", 2);
	*outlen = evbuffer_get_length(h);
	*out = xmalloc(*outlen + 1);
	evbuffer_remove(h, *out, *outlen);
	evbuffer_free(h);
	return rc;
}

/*
 * Move suppressed recipients from env.rcpts to in->supp. The domain scope
 * is checked for the envelope sender's domain and the From domain (an ESP's
 * envelope is often its own bounce domain). 0, or -1 when the store
 * cannot be read.
 */
static int
drop_suppressed(struct inject *in)
{
	const char *envdom = in->env.sender && *in->env.sender ? smtp_addr_domain(in->env.sender) : NULL;
	const char *fromdom = spool_meta(&in->env, "from_domain");
	int k = 0;

	if (fromdom != NULL && envdom != NULL && strcasecmp(fromdom, envdom) == 0)
		fromdom = NULL;
	for (int i = 0; i < in->env.nrcpt; i++) {
		struct spool_rcpt *r = &in->env.rcpts[i];
		struct suppress_entry e;
		int rc = suppress_check(r->addr, envdom, in->env.pool, &e);
		if (rc == 0 && fromdom != NULL)
			rc = suppress_check(r->addr, fromdom, NULL, &e);
		if (rc < 0) {
			log_warnx("event=suppression-check-failed id=%s rcpt=<%s>", in->env.id, r->addr);
			/* the ones moved to in->supp must not stay in env.rcpts */
			for (; i < in->env.nrcpt; i++)
				in->env.rcpts[k++] = in->env.rcpts[i];
			in->env.nrcpt = k;
			return -1;
		}
		if (rc == 1) {
			in->supp = xrealloc(in->supp, sizeof(*in->supp) * (size_t)(in->nsupp + 1));
			in->supp[in->nsupp].addr = r->addr;
			in->supp[in->nsupp].e = e;
			in->nsupp++;
			free(r->orcpt);
			continue;
		}
		in->env.rcpts[k++] = *r;
	}
	in->env.nrcpt = k;
	return 0;
}

static void inject_done(void *arg);

/* The message's buffers are done with: on to inject_done, on its worker. */
static void
finish(struct inject *in)
{
	free(in->hdr);
	free(in->sig);
	in->hdr = in->sig = NULL;
	evbuffer_free(in->data);
	in->data = NULL;
	if (in->origin)
		worker_post(in->origin, inject_done, in);
	else
		inject_done(in);
}

/* The flush of in's message is done (e == 0) or failed: back to its worker. */
static void
spooled(void *arg, int e)
{
	struct inject *in = arg;

	if (e != 0) {
		log_warnx("event=spool-write-failed id=%s err=\"%s\"", in->env.id, strerror(e));
		in->code = e == ENOSPC || e == EDQUOT ? 452 : 451;
		snprintf(in->reply, sizeof(in->reply), "%d 4.3.%d %s", in->code,
		    in->code == 452 ? 1 : 0,
		    in->code == 452 ? "Insufficient system storage, try again later" :
		    "Local error writing the queue, try again later");
	} else {
		in->code = 250;
		snprintf(in->reply, sizeof(in->reply), "250 2.0.0 Ok: queued as %s", in->env.id);
	}
	finish(in);
}

/*
 * Everything before the spool: in->iov is the message to write, or false
 * with in->code and in->reply set (refused, or nothing left to send).
 */
static bool
inject_prepare(struct inject *in)
{
	const struct config *c = conf;
	size_t len = evbuffer_get_length(in->data);
	const char *msg = (const char *)evbuffer_pullup(in->data, -1);
	size_t hlen = 0, boff = 0;
	char err[256];

	if (msg == NULL)
		msg = "";
	if (inject_rewrite_headers(in, msg, len, &in->hdr, &hlen, &boff, in->reply, sizeof(in->reply)) < 0) {
		in->code = atoi(in->reply);
		return false;
	}
	if (in->env.pool == NULL) {
		struct pool_conf *p = conf_pool_for_sender(c, in->env.sender);
		if (p == NULL)
			p = conf_default_pool(c);
		if (p)
			in->env.pool = xstrdup(p->name);
	}
	if (drop_suppressed(in) < 0) {
		in->code = 451;
		snprintf(in->reply, sizeof(in->reply),
		    "451 4.3.0 The suppression list cannot be read, try again later");
		return false;
	}
	if (in->env.nrcpt == 0) {
		/* nothing to send: accepted, not spooled */
		in->code = 250;
		snprintf(in->reply, sizeof(in->reply),
		    "250 2.0.0 Ok: %s not queued, every recipient is suppressed", in->env.id);
		return false;
	}
	in->iov[0] = (struct iovec){ NULL, 0 };
	in->iov[1] = (struct iovec){ in->hdr, hlen };
	in->iov[2] = (struct iovec){ (void *)(msg + boff), len - boff };
	const char *fd = spool_meta(&in->env, "from_domain");
	struct pool_conf *pool = in->env.pool ? conf_pool(c, in->env.pool) : conf_default_pool(c);
	if (c->ndkim > 0 && (fd || (pool && pool->dkim_domain))) {
		in->sig = dkim_sign(c, fd, pool ? pool->dkim_domain : NULL, in->iov + 1, 2, err, sizeof(err));
		if (in->sig == NULL) {
			log_warnx("event=dkim-failed id=%s err=\"%s\"", in->env.id, err);
			in->code = 451;
			snprintf(in->reply, sizeof(in->reply), "451 4.3.0 DKIM signing failed, try again later");
			return false;
		}
		if (*in->sig) {
			in->iov[0].iov_base = in->sig;
			in->iov[0].iov_len = strlen(in->sig);
			in->env.flags |= MF_SIGNED;
		}
	}
	return true;
}

static void
commit_job(void *unused)
{
	(void)unused;
	spool_commit_run();
}

/*
 * Prepare and queue for the spool. blocking: this thread may block (a job
 * thread), so it runs the commit itself when none is running; otherwise (a
 * loop thread) a job does.
 */
static void
inject_run(struct inject *in, bool blocking)
{
	if (!inject_prepare(in)) {
		finish(in);         /* posted: never the caller's callback within inject_submit */
		return;
	}
	if (spool_write_async(&in->env, in->iov, 3, spooled, in)) {
		if (blocking)
			spool_commit_run();
		else
			jobs_submit(commit_job, NULL, NULL);
	}
}

static void
inject_job(void *arg)
{
	inject_run(arg, true);
}

static void
reception_event(const struct spool_msg *m)
{
	struct jbuf j;

	jb_init(&j);
	jb_str(&j, "type", "reception");
	jb_str(&j, "id", m->id);
	jb_str(&j, "message_id", spool_meta(m, "message_id"));
	jb_str(&j, "sender", m->sender);
	if (m->nrcpt == 1)
		jb_str(&j, "recipient", m->rcpts[0].addr);
	jb_array(&j, "recipients");
	for (int i = 0; i < m->nrcpt; i++)
		jb_elem(&j, m->rcpts[i].addr);
	jb_array_end(&j);
	jb_str(&j, "pool", m->pool);
	jb_str(&j, "campaign", m->campaign);
	jb_int(&j, "priority", m->priority);
	jb_int(&j, "size", (int64_t)m->body_len);
	jb_bool(&j, "signed", (m->flags & MF_SIGNED) != 0);
	acct_emit(&j);
}

static void
inject_done(void *arg)
{
	struct inject *in = arg;

	if (in->code == 250) {
		for (int i = 0; i < in->nsupp; i++)
			suppress_event("dropped", in->env.id, spool_meta(&in->env, "message_id"),
			    in->env.sender, in->supp[i].addr, in->env.pool, in->env.campaign,
			    &in->supp[i].e);
		if (in->nsupp > 0)
			log_info("event=suppressed-dropped id=%s recipients=%d queued=%d", in->env.id,
			    in->nsupp, in->env.nrcpt);
	}
	if (in->code == 250 && in->env.nrcpt > 0) {
		struct qmsg *qm = qmsg_new();
		qm->sm = in->env;
		memset(&in->env, 0, sizeof(in->env));
		snprintf(in->env.id, sizeof(in->env.id), "%s", qm->sm.id);
		reception_event(&qm->sm);
		atomic_fetch_add(&qstats.received, 1);
		queue_add(qm);
	}
	in->done(in, in->code, in->reply);
}

void
inject_submit(struct inject *in)
{
	if (in->env.id[0] == '\0')
		random_id(in->env.id);
	if (in->env.created_ms == 0)
		in->env.created_ms = now_ms();
	if (in->env.sender == NULL)
		in->env.sender = xstrdup("");
	if (in->data == NULL)
		in->data = evbuffer_new();
	in->origin = worker_self();
	/* signing takes a few hundred microseconds: not on a loop thread */
	if (conf->ndkim > 0)
		jobs_submit(inject_job, NULL, in);
	else
		inject_run(in, false);
}
