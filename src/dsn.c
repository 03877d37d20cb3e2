/*
 * dsn: RFC 3464 delivery status notifications for failed recipients.
 *
 * One DSN per failed recipient, built when queue_outcome() finishes the
 * recipient (bounce or expiry) and injected like any other message:
 * envelope sender null (so it can never bounce back, RFC 5321 4.5.5),
 * MF_DSN set, to the original envelope sender. The report has three parts:
 * a text for people, the message/delivery-status fields for programs, and
 * the original header block as text/rfc822-headers — or, when the sender
 * asked for RET=FULL (RFC 3461 4.3), the whole original message as
 * message/rfc822 unless it is larger than MAX_FULL_RETURN (then the headers,
 * and the text says why).
 *
 * Status of an expired recipient is the status of its last attempt (e.g.
 * 4.4.1) with Action: failed, as Postfix reports it; 4.4.7 when the last
 * attempt left no code.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "conf.h"
#include "dsn.h"
#include "inject.h"
#include "log.h"
#include "queue.h"
#include "smtp_parse.h"
#include "spool.h"
#include "util.h"

#define MAX_HDR_BLOCK (256 * 1024)      /* original headers returned at most */
#define MAX_FULL_RETURN (1024 * 1024)   /* RET=FULL returns messages up to this size */


/*
 * Append text as lines of at most ~76 columns, breaking before the space
 * between words: `first` starts the first line (already counted as `col`
 * columns), `cont` starts every further line ("\r\n " folds a header).
 */
static void
sb_wrap(struct sbuf *b, size_t col, const char *text, const char *cont)
{
	const char *p = text;
	size_t indent = strlen(cont) - 2;       /* cont is "\r\n" + indent */

	while (*p) {
		size_t sp = strspn(p, " "), w = strcspn(p + sp, " ");

		if (col + sp + w > 76 && col > indent && w > 0 && sp > 0) {
			sb_add(b, cont, strlen(cont));
			col = indent;
			p += sp;                /* the break replaces the spaces */
			sp = 0;
		}
		sb_add(b, p, sp + w);
		col += sp + w;
		p += sp + w;
	}
}

/* "Name: value" folded before 78 columns, CRLF-terminated. */
static void
sb_field(struct sbuf *b, const char *name, const char *value)
{
	sb_printf(b, "%s: ", name);
	sb_wrap(b, strlen(name) + 2, value, "\r\n ");
	sb_add(b, "\r\n", 2);
}

/* RFC 5322 date-time, UTC. */
static void
fmt_date(char *buf, size_t len, int64_t ms)
{
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char *const mons[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul",
	    "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(buf, len, "%s, %d %s %d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
	    mons[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static const char *
hostname(void)
{
	const struct config *c = conf;

	return c && c->hostname ? c->hostname : "localhost";
}

/* x.y.z for the Status field. */
static void
status_code(char *buf, size_t len, const struct smtp_reply *r, bool expired)
{
	int cls = r && r->code ? smtp_reply_class(r) : 0;

	if (r && r->enh[0] && (r->enh[0] == '4' || r->enh[0] == '5'))
		snprintf(buf, len, "%s", r->enh);
	else if (expired)
		snprintf(buf, len, "4.4.7");
	else
		snprintf(buf, len, "%d.0.0", cls == 4 ? 4 : 5);
}

bool
dsn_wanted(const struct qmsg *m, int idx)
{
	const struct spool_rcpt *r;

	if (!m->sm.sender || !m->sm.sender[0])
		return false;           /* null sender: nobody to tell */
	if (m->sm.flags & (MF_NOTIFY_NEVER | MF_DSN))
		return false;
	if (idx < 0 || idx >= m->sm.nrcpt)
		return false;
	r = &m->sm.rcpts[idx];
	if (r->notify && !(r->notify & NOTIFY_FAILURE))
		return false;           /* NOTIFY=NEVER, or SUCCESS/DELAY only */
	return true;
}

/* The original message (or its headers) as a MIME part of type ctype,
 * un-dot-stuffed and ending in CRLF. */
static void
add_original(struct sbuf *b, const char *boundary, const char *desc, const char *ctype,
    const char *hdrs, size_t hlen)
{
	char *h = xmalloc(hlen + 1);
	int st = DOT_STATE_INIT;
	size_t n;

	memcpy(h, hdrs, hlen);
	n = dot_unstuff(h, hlen, &st);
	sb_printf(b, "--%s\r\n", boundary);
	sb_printf(b, "Content-Description: %s\r\n"
	    "Content-Type: %s\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n\r\n", desc, ctype);
	sb_add(b, h, n);
	if (n < 2 || h[n - 2] != '\r' || h[n - 1] != '\n')
		sb_add(b, "\r\n", 2);
	sb_add(b, "\r\n", 2);
	free(h);
}

char *
dsn_build_with(const struct qmsg *m, int idx, const struct smtp_reply *reply,
    const struct attempt_info *ai, bool expired, const char *hdrs, size_t hlen,
    size_t *len)
{
	const struct spool_msg *sm = &m->sm;
	const struct spool_rcpt *rc = &sm->rcpts[idx];
	const struct config *c = conf;
	struct sbuf b = { 0 };
	char date[64], arrival[64], status[16], rtext[1200], boundary[96], from[512];
	char *fieldval;
	const char *host = hostname();
	int64_t now = now_ms();
	bool full = (sm->flags & MF_RET_FULL) && hdrs && hlen >= sm->body_len;
	bool too_big = (sm->flags & MF_RET_FULL) && !full;
	const char *attached = full ? "It is attached below." : "Its headers are attached below.";

	fmt_date(date, sizeof(date), now);
	fmt_date(arrival, sizeof(arrival), sm->created_ms ? sm->created_ms : now);
	status_code(status, sizeof(status), reply, expired);
	if (reply && reply->code)
		smtp_reply_fmt(reply, rtext, sizeof(rtext));
	else
		snprintf(rtext, sizeof(rtext), "%s delivery time expired", status);
	snprintf(boundary, sizeof(boundary), "%s.%d/%s", sm->id, idx, host);
	if (c && c->bounce_from && c->bounce_from[0])
		snprintf(from, sizeof(from), "Mail Delivery System <%s>", c->bounce_from);
	else
		snprintf(from, sizeof(from), "Mail Delivery System <MAILER-DAEMON@%s>", host);

	/* the header */
	sb_printf(&b, "From: %s\r\n", from);
	sb_printf(&b, "To: <%s>\r\n", sm->sender);
	sb_printf(&b, "Subject: Undelivered Mail Returned to Sender\r\n");
	sb_printf(&b, "Date: %s\r\n", date);
	sb_printf(&b, "Message-ID: <%s.%d.dsn@%s>\r\n", sm->id, idx, host);
	sb_printf(&b, "Auto-Submitted: auto-replied\r\n");
	sb_printf(&b, "MIME-Version: 1.0\r\n");
	sb_printf(&b, "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	    "\tboundary=\"%s\"\r\n", boundary);
	sb_printf(&b, "\r\nThis is a MIME-encapsulated message.\r\n\r\n");

	/* part 1: for people */
	sb_printf(&b, "--%s\r\n", boundary);
	sb_printf(&b, "Content-Description: Notification\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n\r\n");
	sb_printf(&b, "This is the mail system at host %s.\r\n\r\n", host);
	if (expired) {
		char dur[32] = "";

		if (ai && ai->lim && ai->lim->bounce_after > 0)
			fmt_duration(dur, sizeof(dur), ai->lim->bounce_after);
		sb_printf(&b, "Your message could not be delivered to one of its recipients\r\n"
		    "within the time allowed%s%s%s; %d attempt%s were made. It has been\r\n"
		    "given up. %s\r\n\r\n",
		    dur[0] ? " (" : "", dur[0] ? dur : "", dur[0] ? ")" : "",
		    rc->attempts, rc->attempts == 1 ? "" : "s", attached);
	} else
		sb_printf(&b, "Your message could not be delivered to one of its recipients.\r\n"
		    "This is a permanent error. %s\r\n\r\n", attached);
	if (too_big)
		sb_printf(&b, "The message is larger than %d KB, so only its headers are\r\n"
		    "returned, although the whole message was asked for (RET=FULL).\r\n\r\n",
		    MAX_FULL_RETURN / 1024);
	if (ai && ai->mx)
		sb_printf(&b, "<%s>: host %s[%s] said:\r\n    ", rc->addr, ai->mx,
		    ai->mx_addr ? ai->mx_addr : "");
	else
		sb_printf(&b, "<%s>:\r\n    ", rc->addr);
	sb_wrap(&b, 4, rtext, "\r\n    ");
	sb_add(&b, "\r\n\r\n", 4);

	/* part 2: for programs */
	sb_printf(&b, "--%s\r\n", boundary);
	sb_printf(&b, "Content-Description: Delivery report\r\n"
	    "Content-Type: message/delivery-status\r\n\r\n");
	sb_printf(&b, "Reporting-MTA: dns; %s\r\n", host);
	sb_printf(&b, "X-Sluice-Queue-ID: %s\r\n", sm->id);
	if (sm->envid && sm->envid[0])
		sb_printf(&b, "Original-Envelope-Id: %s\r\n", sm->envid);
	sb_printf(&b, "Arrival-Date: %s\r\n\r\n", arrival);

	sb_printf(&b, "Final-Recipient: rfc822; %s\r\n", rc->addr);
	if (rc->orcpt && rc->orcpt[0]) {
		const char *semi = strchr(rc->orcpt, ';');
		if (semi)
			sb_printf(&b, "Original-Recipient: %.*s; %s\r\n", (int)(semi - rc->orcpt),
			    rc->orcpt, semi + 1);
		else
			sb_printf(&b, "Original-Recipient: rfc822; %s\r\n", rc->orcpt);
	}
	sb_printf(&b, "Action: failed\r\n");
	sb_printf(&b, "Status: %s\r\n", status);
	if (ai && ai->mx)
		sb_printf(&b, "Remote-MTA: dns; %s\r\n", ai->mx);
	fieldval = xasprintf("smtp; %s", rtext);
	sb_field(&b, "Diagnostic-Code", fieldval);
	free(fieldval);
	sb_printf(&b, "Last-Attempt-Date: %s\r\n", date);
	if (expired && sm->created_ms && ai && ai->lim && ai->lim->bounce_after > 0) {
		char until[64];
		fmt_date(until, sizeof(until), sm->created_ms + ai->lim->bounce_after);
		sb_printf(&b, "Will-Retry-Until: %s\r\n", until);
	}
	sb_add(&b, "\r\n", 2);

	/* part 3: the original headers (or message), un-dot-stuffed */
	if (full)
		add_original(&b, boundary, "Undelivered Message", "message/rfc822", hdrs, hlen);
	else if (hdrs && hlen > 0)
		add_original(&b, boundary, "Undelivered Message Headers", "text/rfc822-headers", hdrs,
		    hlen);
	sb_printf(&b, "--%s--\r\n", boundary);
	*len = b.len;
	return b.p;
}

/* The header block of the stored message (malloc'd, wire form), or NULL;
 * the whole message (*hlen == body_len) when RET=FULL asked for it and it
 * is small enough. */
static char *
read_headers(const struct qmsg *m, size_t *hlen)
{
	bool full = (m->sm.flags & MF_RET_FULL) && m->sm.body_len <= MAX_FULL_RETURN;
	size_t want = full ? m->sm.body_len : MIN(m->sm.body_len, (size_t)MAX_HDR_BLOCK), got = 0;
	char *buf, *end;
	int fd;

	if (want == 0)
		return NULL;
	if ((fd = spool_open(&m->sm)) < 0) {
		log_warn("event=dsn_read id=%s slot=%" PRIu32, m->sm.id, m->sm.slot);
		return NULL;
	}
	buf = xmalloc(want + 1);
	while (got < want) {
		ssize_t n = pread(fd, buf + got, want - got, m->sm.body_off + (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	if (full && got == want) {
		*hlen = got;
		return buf;
	}
	if (got >= 2 && buf[0] == '\r' && buf[1] == '\n') {
		free(buf);              /* no header at all */
		return NULL;
	}
	/* up to and including the CRLF of the last header line */
	end = memmem(buf, got, "\r\n\r\n", 4);
	*hlen = end ? (size_t)(end - buf) + 2 : got;
	return buf;
}

char *
dsn_build(const struct qmsg *m, int idx, const struct smtp_reply *reply,
    const struct attempt_info *ai, bool expired, size_t *len)
{
	size_t hlen = 0;
	char *hdrs = read_headers(m, &hlen);
	char *out = dsn_build_with(m, idx, reply, ai, expired, hdrs, hlen, len);

	free(hdrs);
	return out;
}

static void
dsn_injected(struct inject *in, int code, const char *reply)
{
	char *to = in->arg;

	if (code >= 200 && code < 300)
		log_info("event=dsn_queued to=%s reply=\"%s\"", to, reply ? reply : "");
	else
		log_warnx("event=dsn_failed to=%s code=%d reply=\"%s\"", to, code,
		    reply ? reply : "");
	free(to);
	inject_free(in);
}

void
dsn_queue_failure(struct qmsg *m, int idx, const struct smtp_reply *reply,
    const struct attempt_info *ai, bool expired)
{
	struct inject *in;
	size_t len, wlen;
	char *text, *wire;
	int st = DOT_STATE_INIT;
	bool eight = false;

	if (!dsn_wanted(m, idx))
		return;
	text = dsn_build(m, idx, reply, ai, expired, &len);
	for (size_t i = 0; i < len && !eight; i++)
		eight = (unsigned char)text[i] >= 0x80;
	wire = xmalloc(DOT_STUFF_MAX(len));
	wlen = dot_stuff(wire, text, len, &st);
	free(text);

	in = inject_new();
	in->env.sender = xstrdup("");
	in->env.rcpts = xcalloc(1, sizeof(*in->env.rcpts));
	in->env.rcpts[0].addr = xstrdup(m->sm.sender);
	in->env.nrcpt = 1;
	in->env.flags = MF_DSN | (eight ? MF_8BITMIME : 0);
	for (const char *p = m->sm.sender; *p; p++)
		if ((unsigned char)*p >= 0x80)
			in->env.flags |= MF_SMTPUTF8;
	if (m->sm.pool)
		in->env.pool = xstrdup(m->sm.pool);
	in->data = evbuffer_new();
	evbuffer_add(in->data, wire, wlen);
	free(wire);
	in->done = dsn_injected;
	in->arg = xstrdup(m->sm.sender);
	log_info("event=dsn id=%s rcpt=%s to=%s expired=%s", m->sm.id, m->sm.rcpts[idx].addr,
	    m->sm.sender, expired ? "yes" : "no");
	inject_submit(in);
}
