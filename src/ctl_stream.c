/*
 * ctl_stream: the request filter in front of evhttp (ctl_stream.h).
 *
 * Per connection: HEAD (collecting a request head), then for a streamed
 * request BODY_CL or BODY_CHUNKED (our own chunk decoder), for a passed
 * request PASS_CL or PASS_CHUNKED (its body goes to evhttp as it came;
 * counting or decoding it only finds where it ends), then HEAD again.
 * PASS_ALL passes the rest of the connection through (a head too long or
 * chunk framing we cannot read: evhttp answers it).
 */
#include "config.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

#include "ctl_stream.h"
#include "log.h"
#include "util.h"

#define HEAD_MAX (64 * 1024)
#define KEEPALIVE_EVERY (256 * 1024)    /* body bytes between keep-alive chunks to evhttp */

enum fstate { F_HEAD, F_BODY_CL, F_BODY_CHUNKED, F_PASS_CL, F_PASS_CHUNKED, F_PASS_ALL };
enum cstate { C_SIZE, C_DATA, C_DATA_END, C_TRAILER };

struct fctx {
	enum fstate st;
	enum cstate cst;
	uint64_t left;                 /* body bytes (CL) or chunk bytes left */
	uint64_t since_keepalive;
	void *stream;                  /* being read */
	void *done;                    /* complete, waiting for the handler */
	struct sbuf line;              /* partial line */
	bool skipping;                 /* the current line is too long */
	long nline;
	struct fctx *next;
	struct bufferevent *bev;
	struct event *flush_ev;        /* pushes evhttp's output through the filter */
};

static const struct ctl_stream_ops *ops;
static struct fctx *all;               /* control thread only */

void
ctl_stream_init(const struct ctl_stream_ops *o)
{
	ops = o;
}

static void
emit_line(struct fctx *f)
{
	size_t n = f->line.len;

	while (n > 0 && (f->line.p[n - 1] == '\r' || f->line.p[n - 1] == ' ' || f->line.p[n - 1] == '\t'))
		n--;
	f->nline++;
	if (f->skipping)
		ops->too_long(f->stream, f->nline);
	else if (n > 0)
		ops->line(f->stream, f->line.p, n, f->nline);
	f->line.len = 0;
	f->skipping = false;
}

/* Body bytes of a streamed request. */
static void
body_bytes(struct fctx *f, const char *p, size_t n)
{
	while (n > 0) {
		const char *nl = memchr(p, '\n', n);
		size_t k = nl ? (size_t)(nl - p) : n;

		if (!f->skipping) {
			if (f->line.len + k > CTL_STREAM_MAX_LINE) {
				f->skipping = true;
				f->line.len = 0;
			} else
				sb_add(&f->line, p, k);
		}
		if (nl == NULL)
			return;
		emit_line(f);
		p += k + 1;
		n -= k + 1;
	}
}

static void
body_end(struct fctx *f, struct evbuffer *dst)
{
	if (f->line.len > 0 || f->skipping)
		emit_line(f);
	ops->end(f->stream);
	f->done = f->stream;
	f->stream = NULL;
	f->nline = 0;
	evbuffer_add(dst, "0\r\n\r\n", 5);
	f->st = F_HEAD;
}

static void
keepalive(struct fctx *f, struct evbuffer *dst, size_t n)
{
	f->since_keepalive += n;
	if (f->since_keepalive >= KEEPALIVE_EVERY) {
		/* evhttp's idle timer only sees what we pass it */
		evbuffer_add(dst, "1\r\n \r\n", 6);
		f->since_keepalive = 0;
	}
}

/* Streams what is here of the body (content-length or chunk data, f->left
 * bytes to go) to the handler; true when that reaches its end. */
static bool
body_take(struct fctx *f, struct evbuffer *src, struct evbuffer *dst, size_t avail)
{
	size_t n = avail < f->left ? avail : (size_t)f->left;
	unsigned char *p = evbuffer_pullup(src, (ev_ssize_t)n);

	body_bytes(f, (const char *)p, n);
	evbuffer_drain(src, n);
	keepalive(f, dst, n);
	return (f->left -= n) == 0;
}

/* A complete head (with its blank line) of hlen bytes at the front of src. */
static void
head(struct fctx *f, struct evbuffer *src, struct evbuffer *dst, size_t hlen)
{
	char *h = xmalloc(hlen + 1);
	char method[16] = "", path[2048] = "";
	uint64_t clen = 0;
	bool chunked = false, has_cl = false;

	evbuffer_remove(src, h, hlen);
	h[hlen] = '\0';
	sscanf(h, "%15s %2047s", method, path);
	for (char *l = strstr(h, "\n"); l != NULL && l[1] != '\0'; l = strstr(l + 1, "\n")) {
		const char *v = l + 1;
		if (strncasecmp(v, "Content-Length:", 15) == 0) {
			has_cl = true;
			clen = strtoull(v + 15, NULL, 10);
		} else if (strncasecmp(v, "Transfer-Encoding:", 18) == 0) {
			const char *t = v + 18;
			while (*t == ' ' || *t == '\t')
				t++;
			chunked = strncasecmp(t, "chunked", 7) == 0;
		}
	}
	char *q = strchr(path, '?');
	if (q != NULL)
		*q++ = '\0';
	if (f->done == NULL && (f->stream = ops->begin(method, path, q ? q : "")) != NULL) {
		/* the same head, the body replaced by keep-alive chunks */
		for (char *l = h, *e; *l != '\0'; l = e) {
			e = strchr(l, '\n');
			e = e ? e + 1 : l + strlen(l);
			if (strncasecmp(l, "Content-Length:", 15) == 0 ||
			    strncasecmp(l, "Transfer-Encoding:", 18) == 0)
				continue;
			if (l[0] == '\r' || l[0] == '\n')
				evbuffer_add(dst, "Transfer-Encoding: chunked\r\n", 28);
			evbuffer_add(dst, l, (size_t)(e - l));
		}
		f->since_keepalive = 0;
		f->nline = 0;
		if (chunked) {
			f->st = F_BODY_CHUNKED;
			f->cst = C_SIZE;
		} else if (has_cl && clen > 0) {
			f->st = F_BODY_CL;
			f->left = clen;
		} else
			body_end(f, dst);
	} else {
		evbuffer_add(dst, h, hlen);
		if (chunked) {
			f->st = F_PASS_CHUNKED;
			f->cst = C_SIZE;
		} else if (clen > 0) {
			f->st = F_PASS_CL;
			f->left = clen;
		} else
			f->st = F_HEAD;
	}
	free(h);
}

static enum bufferevent_filter_result
in_filter(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t limit,
    enum bufferevent_flush_mode mode, void *arg)
{
	struct fctx *f = arg;
	size_t start = evbuffer_get_length(src);

	(void)limit;
	(void)mode;
	/*
	 * Waiting for more input returns BEV_NEED_MORE when this call used
	 * nothing: libevent calls the filter again at once while BEV_OK and
	 * input is left, which would spin. After progress it is BEV_OK, so that
	 * what went to evhttp is read (libevent wakes it only on BEV_OK).
	 */
#define WAIT_MORE() (evbuffer_get_length(src) < start ? BEV_OK : BEV_NEED_MORE)
	for (;;) {
		size_t avail = evbuffer_get_length(src);

		if (avail == 0)
			return BEV_OK;
		switch (f->st) {
		case F_PASS_ALL:
			evbuffer_add_buffer(dst, src);
			return BEV_OK;
		case F_PASS_CL: {
			size_t n = avail < f->left ? avail : (size_t)f->left;
			evbuffer_remove_buffer(src, dst, n);
			if ((f->left -= n) == 0)
				f->st = F_HEAD;
			break;
		}
		case F_HEAD: {
			struct evbuffer_ptr e = evbuffer_search(src, "\r\n\r\n", 4, NULL);
			size_t hlen;
			if (e.pos < 0) {
				struct evbuffer_ptr e2 = evbuffer_search(src, "\n\n", 2, NULL);
				if (e2.pos < 0) {
					if (avail > HEAD_MAX) {
						/* not ours to judge: evhttp answers it */
						f->st = F_PASS_ALL;
						break;
					}
					return WAIT_MORE();
				}
				hlen = (size_t)e2.pos + 2;
			} else
				hlen = (size_t)e.pos + 4;
			/* skip blank lines between requests */
			head(f, src, dst, hlen);
			break;
		}
		case F_BODY_CL:
			if (body_take(f, src, dst, avail))
				body_end(f, dst);
			break;
		case F_BODY_CHUNKED:
		case F_PASS_CHUNKED: {
			bool pass = f->st == F_PASS_CHUNKED;
			if (f->cst == C_DATA) {
				if (pass) {
					size_t n = avail < f->left ? avail : (size_t)f->left;
					evbuffer_remove_buffer(src, dst, n);
					if ((f->left -= n) == 0)
						f->cst = C_DATA_END;
				} else if (body_take(f, src, dst, avail))
					f->cst = C_DATA_END;
				break;
			}
			/* a chunk-size line, the CRLF after a chunk, or a trailer line */
			size_t eol, len;
			struct evbuffer_ptr e = evbuffer_search_eol(src, NULL, &eol, EVBUFFER_EOL_CRLF);
			if (e.pos < 0) {
				if (avail <= 4096)
					return WAIT_MORE();      /* a line split across reads */
				if (!pass)
					return BEV_ERROR;
				f->st = F_PASS_ALL;
				break;
			}
			len = (size_t)e.pos;
			char *l = xmalloc(len + 1);
			evbuffer_copyout(src, l, len);
			l[len] = '\0';
			if (pass)
				evbuffer_remove_buffer(src, dst, len + eol);
			else
				evbuffer_drain(src, len + eol);
			if (f->cst == C_SIZE) {
				char *end;
				f->left = strtoull(l, &end, 16);
				if (end == l) {
					free(l);
					if (!pass)
						return BEV_ERROR;
					f->st = F_PASS_ALL;     /* evhttp refuses it */
					break;
				}
				f->cst = f->left == 0 ? C_TRAILER : C_DATA;
			} else if (f->cst == C_DATA_END) {
				f->cst = C_SIZE;
			} else if (len == 0) {
				if (pass)
					f->st = F_HEAD;
				else
					body_end(f, dst);
			}
			free(l);
			break;
		}
		}
	}
#undef WAIT_MORE
}

static void
fctx_free(void *arg)
{
	struct fctx *f = arg, **pp;

	for (pp = &all; *pp != NULL; pp = &(*pp)->next)
		if (*pp == f) {
			*pp = f->next;
			break;
		}
	if (f->stream != NULL)
		ops->abort(f->stream);
	if (f->done != NULL)
		ops->abort(f->done);
	if (f->flush_ev != NULL)
		event_free(f->flush_ev);
	free(f->line.p);
	free(f);
}

/*
 * A filter moves its output to the socket only while writing is enabled,
 * and enabling it does not move what is already there; evhttp writes a
 * reply first and enables writing after. So once output appears, a flush
 * runs on the next loop turn, by when evhttp has enabled writing. The
 * filter's callbacks are deferred (BEV_OPT_DEFER_CALLBACKS) for the same
 * reason: a socket's "written" callback never runs inside the write, and
 * evhttp sets the callback of a reply chunk only after adding the chunk.
 */
static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fctx *f = arg;

	(void)fd;
	(void)what;
	bufferevent_flush(f->bev, EV_WRITE, BEV_NORMAL);
}

static void
out_added(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct fctx *f = arg;

	(void)buf;
	if (info->n_added > 0 && !event_pending(f->flush_ev, EV_TIMEOUT, NULL))
		event_active(f->flush_ev, EV_TIMEOUT, 0);
}

struct bufferevent *
ctl_stream_bevcb(struct event_base *base, void *arg)
{
	struct bufferevent *under, *bev;
	struct fctx *f;

	(void)arg;
	under = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (under == NULL)
		return NULL;
	f = xcalloc(1, sizeof(*f));
	bev = bufferevent_filter_new(under, in_filter, NULL,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS, fctx_free, f);
	if (bev == NULL) {
		bufferevent_free(under);
		free(f);
		return NULL;
	}
	f->bev = bev;
	f->flush_ev = event_new(base, -1, 0, flush_cb, f);
	if (f->flush_ev == NULL) {
		bufferevent_free(bev);
		return NULL;
	}
	evbuffer_add_cb(bufferevent_get_output(bev), out_added, f);
	f->next = all;
	all = f;
	return bev;
}

void *
ctl_stream_take(struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;

	for (struct fctx *f = all; f != NULL; f = f->next)
		if (f->bev == bev) {
			void *d = f->done;
			f->done = NULL;
			return d;
		}
	return NULL;
}
