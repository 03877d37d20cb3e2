/*
 * inject: the one way into the queue, for SMTP (smtp_server) and the API
 * (control). Given an envelope and the message in wire form, it applies
 * X-Sluice-* control headers (removed from the content, kept as envelope
 * metadata), adds Message-ID/Date when missing and the Received line, signs
 * with DKIM (on the job pool), has the spool write it durably (a group
 * commit) and only then queues the message and calls back on the
 * submitting worker: the caller acknowledges after that.
 */
#ifndef SLUICE_INJECT_H
#define SLUICE_INJECT_H

#include <stdbool.h>
#include "spool.h"

#include "suppress.h"

struct evbuffer;
struct inject;
struct worker;

/* A recipient left out of the message because it is suppressed. */
struct inject_supp {
	char *addr;                    /* as given */
	struct suppress_entry e;       /* the entry that matched */
};

typedef void (*inject_done_fn)(struct inject *in, int code, const char *reply);

struct inject {
	struct spool_msg env;          /* sender, rcpts, flags, pool, priority (caller fills) */
	struct evbuffer *data;         /* wire form: CRLF, dot-stuffed, no final ".\r\n" (taken) */
	char *received;                /* "Received: ..." line(s) without final CRLF, or NULL (taken) */
	/* called on the submitting worker with the code and the whole reply
	 * line: 250 "250 2.0.0 Ok: queued as ID", or a 4xx/5xx line */
	inject_done_fn done;
	void *arg;
	/* recipients on the suppression list: the caller may add some (dropped
	 * at RCPT, taken); inject moves there every recipient of env.rcpts it
	 * finds suppressed for the message's sender domain (envelope or From)
	 * or pool. Each gets a "suppressed" event once the message is accepted.
	 * When none is left, nothing is spooled and the reply is still 250. */
	struct inject_supp *supp;
	int nsupp;
	/* private */
	int code;
	char reply[256];
	struct qmsg *qm;
	struct worker *origin;         /* where done runs (NULL: the flushing thread) */
	char *hdr, *sig;               /* the rewritten header block, the DKIM signature */
	struct iovec iov[3];           /* what is spooled: signature, header block, body */
};

struct inject *inject_new(void);
void inject_submit(struct inject *in);
void inject_free(struct inject *in);
/* Add a suppressed recipient to in (addr copied). */
void inject_add_supp(struct inject *in, const char *addr, const struct suppress_entry *e);

/* Header rewriting on a complete message (exposed for unit tests).
 * in: wire-form message; out: malloc'd wire-form header block to store
 * before the body (with CRLF after each line, without the blank line);
 * *body_off is where the body (blank line included) starts in `msg`. */
int inject_rewrite_headers(struct inject *in, const char *msg, size_t len,
    char **out, size_t *outlen, size_t *body_off, char *reply, size_t replylen);

#endif
