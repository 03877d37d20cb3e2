/*
 * ctl_stream: NDJSON request bodies of any size on the control socket,
 * read line by line as they arrive.
 *
 * libevent 2.1's evhttp reads a whole request body into memory before the
 * handler runs (it has no per-request hook before the headers are read).
 * So each control connection's bufferevent is wrapped in a filter
 * (evhttp_set_bevcb): the filter sees the request's head first; when the
 * method and path name a streaming endpoint, it hands every complete line
 * of the body to the endpoint's `line` callback as the bytes come in
 * (Content-Length or chunked bodies) and passes evhttp the same head with
 * a body of a few keep-alive bytes instead. When the body is complete the
 * endpoint's `end` runs, then evhttp dispatches the request as usual and
 * the handler picks up the finished stream with ctl_stream_take(). Other
 * requests pass through untouched. Everything runs on the control thread.
 */
#ifndef SLUICE_CTL_STREAM_H
#define SLUICE_CTL_STREAM_H

#include <stddef.h>

struct event_base;
struct bufferevent;
struct evhttp_request;

#define CTL_STREAM_MAX_LINE (4u << 20)  /* one NDJSON line (a campaign object with its templates) */

struct ctl_stream_ops {
	/* A request head arrived: return a context to stream its body, or NULL
	 * to let evhttp read it. method is "POST" etc., path is undecoded,
	 * query is what followed the '?' (undecoded; "" when none). */
	void *(*begin)(const char *method, const char *path, const char *query);
	/* One line (without its line end; never empty); n is its 1-based number. */
	void (*line)(void *ctx, const char *line, size_t len, long n);
	/* A line longer than CTL_STREAM_MAX_LINE (it is skipped). */
	void (*too_long)(void *ctx, long n);
	/* The body is complete. */
	void (*end)(void *ctx);
	/* The connection went away before the handler took the stream. */
	void (*abort)(void *ctx);
};

void ctl_stream_init(const struct ctl_stream_ops *ops);
/* For evhttp_set_bevcb(). */
struct bufferevent *ctl_stream_bevcb(struct event_base *base, void *arg);
/* The completed stream of req's connection (ownership passes to the
 * caller), or NULL when the body was not streamed. */
void *ctl_stream_take(struct evhttp_request *req);

#endif
