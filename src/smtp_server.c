/*
 * smtp_server: the SMTP injection listener. Each connection is a session, an
 * explicit state machine (enum sstate) driven by one bufferevent: the I/O
 * layer hands over input, the protocol code takes complete lines (or BDAT
 * octets) from it and never reads a socket itself.
 *
 * Promises:
 * - A message is acknowledged (250) only from inject's callback, i.e. after
 *   it is on stable storage. While the spool write is pending the session
 *   takes no more commands (what arrives waits in the input buffer, bounded
 *   by its high watermark); if the client leaves meanwhile the session
 *   lingers (s->pending) until the callback, and the message is queued all
 *   the same. An EOF seen then is acted on only after the commands read
 *   before it are answered (a client may half-close after QUIT).
 * - Never an open relay: RCPT is refused (550 5.7.1) unless the client's
 *   address is in relay-from or it authenticated. AUTH is offered and
 *   accepted only under TLS, and only when the listener has auth-users.
 *   The one exception is mail for sluice itself: VERP addresses of the
 *   bounce-domain whose token verifies, and fbl-address mailboxes, are
 *   accepted from anyone and read as reports (inbound.c), never queued;
 *   a forged token is 550 5.7.1, and a transaction never mixes reports
 *   with relayed recipients (452 4.5.3).
 * - Bounded memory per session: an input line longer than max-line-length
 *   is discarded as it arrives (the read high watermark caps the input
 *   buffer) and answered once its LF shows up; output is not produced
 *   faster than the client reads it (OUT_HIGH); a message over
 *   max-message-size is read to its end and thrown away.
 * - Every reply carries an enhanced status code (RFC 2034), except the
 *   greeting and the HELO/EHLO replies, where RFC 2034 forbids it, and the
 *   3xx intermediate replies, which have no class for it.
 *
 * Replies chosen where the RFCs leave room:
 * - command line too long: 500 5.5.2 (RFC 5321 4.2.4: "500 Line too long").
 * - a message line too long (DATA or BDAT): the transaction fails at its end
 *   with 552 5.5.2: 552 because a limit of ours was exceeded and the client
 *   must not retry unchanged, 5.5.2 because RFC 5321 4.5.3.1.6 is a syntax
 *   limit of the protocol, not a media error.
 * - too many header lines: 552 5.6.0; too many Received: lines: 554 5.4.6
 *   (routing loop); NUL in the message: 554 5.6.0.
 * - max-line-length counts the CRLF (RFC 5321's 1000 is 998 + CRLF).
 *
 * DATA is stored in wire form as received: dot-stuffed, CRLF, without the
 * final ".\r\n". A bare LF ends a line and is stored as CRLF (broken clients
 * exist; normalising means no bare LF ever leaves us). The end of the data is
 * only <CRLF>.<CRLF>: a "." line next to a bare LF does not end it (SMTP
 * smuggling) and is stored as ".." so that it cannot end the message when
 * we relay it either. BDAT chunks are raw; they are split into lines and
 * dot-stuffed with dot_stuff() into the same wire form.
 *
 * Pipelining (RFC 2920): commands are taken from the input buffer in order
 * and their replies appended to the output buffer; out_flush() writes the
 * output once the callback is done, so a pipelined batch gets its replies
 * in one write.  STARTTLS throws away whatever was pipelined after it
 * (plain-text command injection, CVE-2011-0411).
 *
 * Syscalls per message are the cost that matters at thousands of messages
 * a second, so the plain-socket session keeps libevent's event registrations
 * still: reading stays enabled for the session's life (a session waiting
 * for a job just stops taking input), and writing is not enabled at all
 * while the socket takes what we write: out_flush() writes the replies
 * straight to the socket and arms the write event only for what the socket
 * refused (a slow reader), disarming it in writecb once the output is out.
 * A reply thus costs one write(2) instead of two epoll_ctl(2) and a trip
 * through epoll_wait(2). The TLS bufferevent writes by itself.
 *
 * Graceful stop: the listeners close, idle sessions get 421 4.3.2 at once,
 * a session in a transaction finishes it and gets 421 at its next command.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "auth.h"
#include "conf.h"
#include "inbound.h"
#include "inject.h"
#include "log.h"
#include "smtp_parse.h"
#include "smtp_server.h"
#include "suppress.h"
#include "spool.h"
#include "store.h"
#include "tls.h"
#include "util.h"
#include "verp.h"
#include "worker.h"

#define OUT_HIGH        (256 * 1024)   /* stop taking commands above this much unsent output */
#define IN_SLACK        (64 * 1024)    /* read high watermark = line limit + this */
#define MAX_HOPS        100            /* Received: lines before we call it a loop */
#define LISTEN_BACKLOG  1024
#define AUTH_MAX_LINE   12288          /* RFC 4954 4 */

/* What a listener runs with; replaced as a whole on reload, never freed
 * before exit (sessions keep the one they started with). */
struct lcfg {
	const struct config *c;
	const struct listener_conf *lc;
	SSL_CTX *ssl;                  /* NULL: no STARTTLS */
	struct auth_db *auth;          /* NULL: no AUTH */
	struct lcfg *next;             /* all lcfgs, for smtp_server_free */
};

struct lstn {
	char *name;                    /* "127.0.0.1:2525", as in the config */
	struct sockaddr_storage ss;
	socklen_t sslen;
	int fd;                        /* bound by smtp_server_bind; the first worker takes it */
	bool fd_taken;
	/* one more SO_REUSEPORT socket per further worker, bound while still
	 * privileged so the kernel spreads connections over every worker */
	int extra[64];
	int nextra;
	_Atomic(struct lcfg *) cur;
	atomic_int nconn;              /* sessions on this listener, all workers */
};

struct session;
TAILQ_HEAD(session_list, session);

struct accept_arg {
	struct srv_worker *sw;
	int lidx;
};

struct srv_worker {
	struct worker *w;
	struct evconnlistener **evl;
	struct accept_arg *aa;
	int nevl;
	struct session_list sessions;
	atomic_int nsessions;
	bool stopping;
};

static struct lstn *lstns;
static int nlstns;
static struct lcfg *all_lcfgs;
static struct srv_worker **sws;
static int nsws;
static atomic_bool srv_stopping;
static pthread_mutex_t srv_lock = PTHREAD_MUTEX_INITIALIZER;

/* Connections per (listener, client IP), shared by the workers. */
#define IPTAB_SIZE 1024
struct ipcount {
	struct ipcount *next;
	int lidx;
	int n;
	char ip[INET6_ADDRSTRLEN];
};
static struct ipcount *iptab[IPTAB_SIZE];

enum sstate {
	SS_HELO,                       /* greeted; EHLO/HELO expected */
	SS_READY,                      /* no transaction */
	SS_MAIL,                       /* MAIL accepted, no recipient yet */
	SS_RCPT,                       /* recipients accepted: DATA or BDAT */
	SS_DATA,                       /* reading the DATA body */
	SS_BDAT,                       /* reading a BDAT chunk */
	SS_BDAT_MORE,                  /* between BDAT chunks */
	SS_STARTTLS,                   /* TLS handshake */
	SS_AUTH,                       /* reading an AUTH continuation */
	SS_AUTH_CHECK,                 /* password check on the job pool */
	SS_INJECT,                     /* message with inject, waiting for the spool */
	SS_CLOSING,                    /* last reply being written */
};

static const char *const sstate_names[] = {
	[SS_HELO] = "HELO", [SS_READY] = "READY", [SS_MAIL] = "MAIL",
	[SS_RCPT] = "RCPT", [SS_DATA] = "DATA", [SS_BDAT] = "BDAT",
	[SS_BDAT_MORE] = "BDAT_MORE", [SS_STARTTLS] = "STARTTLS",
	[SS_AUTH] = "AUTH", [SS_AUTH_CHECK] = "AUTH_CHECK", [SS_INJECT] = "INJECT",
	[SS_CLOSING] = "CLOSING",
};

/* Why a message is refused at its end (the data is read to the end first). */
enum data_err { DE_NONE, DE_SIZE, DE_LINE, DE_HEADERS, DE_HOPS, DE_NUL };

enum auth_step { AS_PLAIN, AS_LOGIN_USER, AS_LOGIN_PASS };

/* What a transaction's recipients are: mail to relay, or reports for the
 * bounce domain / FBL mailboxes (read here, never relayed). */
enum rkind { RK_NONE, RK_RELAY, RK_REPORT };

struct session {
	TAILQ_ENTRY(session) link;
	struct srv_worker *sw;
	struct lstn *l;
	struct lcfg *cfg;
	struct bufferevent *bev;       /* plain socket bev, then the TLS one */
	evutil_socket_t fd;
	bool tls_bev;                  /* bev is the TLS bufferevent (owns fd and SSL) */
	SSL *tls_next;                 /* STARTTLS: switch once the 220 is written */
	enum sstate state;
	char sid[13];
	char ip[INET6_ADDRSTRLEN];
	uint16_t port;
	int64_t start_ms;
	size_t maxline;                /* content bytes of a line, CRLF excluded */
	char *linebuf;                 /* maxline + 3 */

	bool relay_ip, tls, authed, esmtp;
	bool dead;                     /* connection gone; free when nothing is pending */
	bool closing;                  /* free once the output is written */
	bool out_blocked;              /* waiting for the client to read replies */
	bool skip_line;                /* discarding an over-long line up to its LF */
	bool rd_eof;                   /* EOF read while a job held the input */
	int pending;                   /* jobs (inject, auth) holding the session */
	int errors;
	int ntxn;
	int inj_nrcpt;                 /* recipients of the message with inject */
	char *helo;
	char *user;                    /* authenticated user */
	char tlsinfo[128];

	/* transaction */
	char *sender;
	uint32_t flags;
	char *envid;
	int ret_flag;                  /* MF_RET_HDRS, MF_RET_FULL or 0 (RET=) */
	struct spool_rcpt *rcpts;
	int nrcpt;
	enum rkind rkind;              /* reports or relayed mail (never both) */
	struct verp_token tok[INBOUND_MAX_TOKENS];   /* VERP recipients' tokens */
	int ntok;
	bool fbl;                      /* a recipient is an FBL mailbox */
	struct inject_supp *supp;      /* suppressed recipients accepted and dropped */
	int nsupp;
	struct evbuffer *data;
	size_t data_size;              /* wire-form bytes seen, kept or not */
	enum data_err derr;
	bool in_headers, prev_crlf;
	int nheaders, hops;
	bool eightbit;
	/* BDAT */
	uint64_t bdat_left;
	bool bdat_last;
	const char *bdat_refuse;       /* reply after consuming a refused chunk */
	enum sstate bdat_prev;         /* state to return to after a refused chunk */
	char *pbuf;                    /* partial raw line across chunks: maxline + 3 */
	size_t plen;
	bool pskip;                    /* partial line was too long */
	/* AUTH */
	enum auth_step astep;
	char *auser;
};

static void process_input(struct session *s);
static void session_maybe_free(struct session *s);
static void start_tls(struct session *s);
static void readcb(struct bufferevent *bev, void *arg);
static void writecb(struct bufferevent *bev, void *arg);
static void eventcb(struct bufferevent *bev, short what, void *arg);

/* ---- small helpers ---- */

static const char *
smtp_session_strstate(enum sstate st)
{
	return st < ARRAY_SIZE(sstate_names) && sstate_names[st] ? sstate_names[st] : "?";
}

static const char *
hostname(const struct session *s)
{
	return s->cfg->c->hostname ? s->cfg->c->hostname : "localhost";
}

static void
set_timeouts(struct session *s)
{
	const struct listener_conf *lc = s->cfg->lc;
	int64_t rms = (s->state == SS_DATA || s->state == SS_BDAT) ? lc->data_timeout :
	    lc->command_timeout;
	struct timeval rt = { rms / 1000, (rms % 1000) * 1000 };
	struct timeval wt = { lc->command_timeout / 1000, (lc->command_timeout % 1000) * 1000 };

	if (s->bev)
		bufferevent_set_timeouts(s->bev, rms > 0 ? &rt : NULL,
		    lc->command_timeout > 0 ? &wt : NULL);
}

static void
set_state(struct session *s, enum sstate st)
{
	bool was_data = s->state == SS_DATA || s->state == SS_BDAT;
	bool is_data = st == SS_DATA || st == SS_BDAT;

	if (s->state == st)
		return;
	log_trace("event=state sid=%s from=%s to=%s", s->sid, smtp_session_strstate(s->state),
	    smtp_session_strstate(st));
	s->state = st;
	if (was_data != is_data)
		set_timeouts(s);
}

static void
out_len_check(struct session *s)
{
	if (s->bev && evbuffer_get_length(bufferevent_get_output(s->bev)) > OUT_HIGH)
		s->out_blocked = true;
}

static void
reply(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
reply(struct session *s, const char *fmt, ...)
{
	va_list ap;
	struct evbuffer *out;

	if (s->dead || !s->bev)
		return;
	out = bufferevent_get_output(s->bev);
	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
	if (log_enabled(LOG_TRACE)) {
		char buf[512];
		va_start(ap, fmt);
		vsnprintf(buf, sizeof(buf), fmt, ap);
		va_end(ap);
		log_trace("event=reply sid=%s reply=\"%s\"", s->sid, buf);
	}
}

/* Stop reading, write what is queued, then free. */
static void
session_close(struct session *s)
{
	set_state(s, SS_CLOSING);
	s->closing = true;
	if (s->bev)
		bufferevent_disable(s->bev, EV_READ);
}

/* An error reply: counts toward max-errors (then 421 and close). */
static void
reply_err(struct session *s, const char *text)
{
	int max = s->cfg->lc->max_errors;

	reply(s, "%s", text);
	s->errors++;
	log_info("event=reject sid=%s ip=%s state=%s reply=\"%s\"", s->sid, s->ip,
	    smtp_session_strstate(s->state), text);
	if (max > 0 && s->errors >= max && !s->closing) {
		reply(s, "421 4.7.0 %s Too many errors, closing connection", hostname(s));
		log_info("event=too-many-errors sid=%s ip=%s errors=%d", s->sid, s->ip, s->errors);
		session_close(s);
	}
}

static void
pause_input(struct session *s)
{
	if (s->bev)
		bufferevent_disable(s->bev, EV_READ);
}

/* Is the session waiting for a job (no input taken meanwhile)? */
static bool
in_job(const struct session *s)
{
	return s->state == SS_INJECT || s->state == SS_AUTH_CHECK;
}

/* An EOF read while a job held the input counts once the commands before
 * it are answered: then the session closes after writing its replies. */
static void
input_eof(struct session *s)
{
	if (!s->rd_eof || s->dead || s->closing || s->out_blocked || in_job(s))
		return;
	if (s->state != SS_HELO && s->state != SS_READY)
		log_info("event=lost sid=%s ip=%s state=%s", s->sid, s->ip,
		    smtp_session_strstate(s->state));
	session_close(s);
}

/* A job is done (spool, report, password check): take the commands that
 * arrived meanwhile. Reading stayed enabled (enabling it again costs no
 * syscall), unless an EOF stopped it. */
static void
resume_input(struct session *s)
{
	if (s->dead || s->closing || !s->bev)
		return;
	if (!s->rd_eof)
		bufferevent_enable(s->bev, EV_READ);
	process_input(s);
	input_eof(s);
}

static void
txn_reset(struct session *s)
{
	free(s->sender);
	s->sender = NULL;
	free(s->envid);
	s->envid = NULL;
	for (int i = 0; i < s->nrcpt; i++) {
		free(s->rcpts[i].addr);
		free(s->rcpts[i].orcpt);
	}
	free(s->rcpts);
	s->rcpts = NULL;
	s->nrcpt = 0;
	s->rkind = RK_NONE;
	s->ntok = 0;
	s->fbl = false;
	for (int i = 0; i < s->nsupp; i++)
		free(s->supp[i].addr);
	free(s->supp);
	s->supp = NULL;
	s->nsupp = 0;
	if (s->data)
		evbuffer_free(s->data);
	s->data = NULL;
	s->flags = 0;
	s->ret_flag = 0;
	s->data_size = 0;
	s->derr = DE_NONE;
	s->nheaders = s->hops = 0;
	s->eightbit = false;
	s->bdat_left = 0;
	s->bdat_last = false;
	s->plen = 0;
	s->pskip = false;
}

static bool
in_transaction(const struct session *s)
{
	return s->state == SS_MAIL || s->state == SS_RCPT || s->state == SS_BDAT_MORE;
}

/* ---- connection accounting ---- */

static unsigned
ip_bucket(int lidx, const char *ip)
{
	return (unsigned)((hash_str(ip) ^ (uint64_t)lidx) % IPTAB_SIZE);
}

/* Count one more connection from ip; returns the new count. */
static int
ip_acquire(int lidx, const char *ip)
{
	unsigned b = ip_bucket(lidx, ip);
	struct ipcount *e;
	int n;

	pthread_mutex_lock(&srv_lock);
	for (e = iptab[b]; e; e = e->next)
		if (e->lidx == lidx && strcmp(e->ip, ip) == 0)
			break;
	if (!e) {
		e = xcalloc(1, sizeof(*e));
		e->lidx = lidx;
		snprintf(e->ip, sizeof(e->ip), "%s", ip);
		e->next = iptab[b];
		iptab[b] = e;
	}
	n = ++e->n;
	pthread_mutex_unlock(&srv_lock);
	return n;
}

static void
ip_release(int lidx, const char *ip)
{
	unsigned b = ip_bucket(lidx, ip);
	struct ipcount **pp, *e;

	pthread_mutex_lock(&srv_lock);
	for (pp = &iptab[b]; (e = *pp) != NULL; pp = &e->next)
		if (e->lidx == lidx && strcmp(e->ip, ip) == 0) {
			if (--e->n <= 0) {
				*pp = e->next;
				free(e);
			}
			break;
		}
	pthread_mutex_unlock(&srv_lock);
}

/* ---- session life ---- */

/*
 * Close the connection. The plain bufferevent does not own the socket (the
 * TLS one takes it over at STARTTLS), so the fd is closed here; the TLS
 * bufferevent owns socket and SSL. A TLS session that ends in order gets a
 * close_notify.
 */
static void
session_drop_bev(struct session *s)
{
	if (!s->bev)
		return;
	bufferevent_disable(s->bev, EV_READ | EV_WRITE);
	if (s->tls_bev) {
		SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
		if (ssl && s->tls && !s->dead)
			SSL_shutdown(ssl);
		bufferevent_free(s->bev);
	} else {
		bufferevent_free(s->bev);
		evutil_closesocket(s->fd);
	}
	if (s->tls_next) {
		SSL_free(s->tls_next);
		s->tls_next = NULL;
	}
	s->bev = NULL;
}

static void
session_free(struct session *s)
{
	struct srv_worker *sw = s->sw;

	session_drop_bev(s);
	/* the slot is free before the line that says so is written */
	ip_release((int)(s->l - lstns), s->ip);
	atomic_fetch_sub(&s->l->nconn, 1);
	log_info("event=disconnect sid=%s ip=%s messages=%d errors=%d duration_ms=%" PRId64,
	    s->sid, s->ip, s->ntxn, s->errors, mono_ms() - s->start_ms);
	txn_reset(s);
	free(s->helo);
	free(s->user);
	free(s->auser);
	free(s->linebuf);
	free(s->pbuf);
	TAILQ_REMOVE(&sw->sessions, s, link);
	atomic_fetch_sub(&sw->nsessions, 1);
	free(s);
}

/* The output is all written: what waited for that can go on. */
static void
out_drained(struct session *s)
{
	if (s->tls_next && s->state == SS_STARTTLS) {
		start_tls(s);
		return;
	}
	if (s->out_blocked) {
		s->out_blocked = false;
		process_input(s);
		input_eof(s);
	}
}

/*
 * Write the queued replies (plain socket): straight to the socket while
 * the write event is off, so a reply costs one write(2) and no epoll_ctl(2);
 * what the socket does not take arms the write event (writecb disarms it
 * once all is out). A write error also goes to libevent, which reports it
 * to eventcb like any other.
 */
static void
out_flush(struct session *s)
{
	while (!s->dead && s->bev && !s->tls_bev &&
	    !(bufferevent_get_enabled(s->bev) & EV_WRITE) &&
	    evbuffer_get_length(bufferevent_get_output(s->bev)) > 0) {
		if (!bev_write_now(s->bev, s->fd)) {
			bufferevent_enable(s->bev, EV_WRITE);
			return;
		}
		out_drained(s);             /* may queue more */
	}
}

/* Called last by every top-level callback: write what it queued, free when
 * nothing needs s. */
static void
session_maybe_free(struct session *s)
{
	out_flush(s);
	if (s->dead && s->bev)
		session_drop_bev(s);          /* close the socket now, even if a job is pending */
	if (s->pending > 0)
		return;
	if (s->dead || (s->closing && (!s->bev ||
	    evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)))
		session_free(s);
}

static void
greet(struct session *s)
{
	reply(s, "220 %s ESMTP sluice", hostname(s));
}

/* Refuse a connection before it becomes a session. */
static void
refuse_fd(evutil_socket_t fd, const char *text)
{
	char buf[256];
	int n = snprintf(buf, sizeof(buf), "%s\r\n", text);

	(void)!send(fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	evutil_closesocket(fd);
}

static void
accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa, int salen,
    void *arg)
{
	struct accept_arg *aa = arg;
	struct srv_worker *sw = aa->sw;
	struct lstn *l = &lstns[aa->lidx];
	struct lcfg *cfg = atomic_load(&l->cur);
	const struct listener_conf *lc = cfg->lc;
	const char *host = cfg->c->hostname ? cfg->c->hostname : "localhost";
	char ip[INET6_ADDRSTRLEN] = "?";
	uint16_t port = 0;
	struct session *s;
	int one = 1;

	if (sa->sa_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		port = ntohs(sin->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
		port = ntohs(sin6->sin6_port);
	}
	if (sw->stopping || atomic_load(&srv_stopping)) {
		refuse_fd(fd, "421 4.3.2 Service shutting down");
		return;
	}
	if (atomic_fetch_add(&l->nconn, 1) >= lc->max_connections && lc->max_connections > 0) {
		atomic_fetch_sub(&l->nconn, 1);
		log_info("event=reject ip=%s listener=%s reason=max-connections", ip, l->name);
		char text[300];
		snprintf(text, sizeof(text), "421 4.3.2 %s Too many connections, try again later", host);
		refuse_fd(fd, text);
		return;
	}
	if (ip_acquire(aa->lidx, ip) > lc->max_conn_per_ip && lc->max_conn_per_ip > 0) {
		ip_release(aa->lidx, ip);
		atomic_fetch_sub(&l->nconn, 1);
		log_info("event=reject ip=%s listener=%s reason=max-connections-per-ip", ip, l->name);
		char text[300];
		snprintf(text, sizeof(text), "421 4.7.0 %s Too many connections from your address", host);
		refuse_fd(fd, text);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

	s = xcalloc(1, sizeof(*s));
	s->sw = sw;
	s->l = l;
	s->cfg = cfg;
	s->state = SS_HELO;
	s->start_ms = mono_ms();
	snprintf(s->ip, sizeof(s->ip), "%s", ip);
	s->port = port;
	{
		char rid[27];
		random_id(rid);
		memcpy(s->sid, rid, 12);
		s->sid[12] = '\0';
	}
	s->maxline = (size_t)(lc->max_line_length > 512 ? lc->max_line_length : 512) - 2;
	s->linebuf = xmalloc(s->maxline + 3);
	for (int i = 0; i < lc->nrelay; i++)
		if (cidr_match(&lc->relay_from[i], sa)) {
			s->relay_ip = true;
			break;
		}
	TAILQ_INSERT_TAIL(&sw->sessions, s, link);
	atomic_fetch_add(&sw->nsessions, 1);

	s->fd = fd;
	s->bev = bufferevent_socket_new(evconnlistener_get_base(evl), fd, 0);
	if (!s->bev) {
		log_warnx("event=session-failed ip=%s msg=\"bufferevent_socket_new\"", ip);
		evutil_closesocket(fd);
		s->dead = true;
		session_maybe_free(s);
		return;
	}
	bufferevent_setcb(s->bev, readcb, writecb, eventcb, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, s->maxline + IN_SLACK);
	set_timeouts(s);
	/* a new bufferevent has EV_WRITE enabled; writing is out_flush's */
	bufferevent_disable(s->bev, EV_WRITE);
	bufferevent_enable(s->bev, EV_READ);
	log_info("event=connect sid=%s ip=%s port=%u listener=%s relay=%s tls-offered=%s",
	    s->sid, s->ip, s->port, l->name, s->relay_ip ? "yes" : "no", cfg->ssl ? "yes" : "no");
	greet(s);
	session_maybe_free(s);
}

/* ---- EHLO / HELO ---- */

static void
cmd_helo(struct session *s, struct smtp_cmd *cmd)
{
	const struct listener_conf *lc = s->cfg->lc;
	size_t n = strcspn(cmd->arg, " ");

	if (in_transaction(s))
		txn_reset(s);
	free(s->helo);
	s->helo = xstrndup(cmd->arg, MIN(n, (size_t)255));
	s->esmtp = cmd->verb == CMD_EHLO;
	set_state(s, SS_READY);
	if (!s->esmtp) {
		reply(s, "250 %s", hostname(s));
		return;
	}
	reply(s, "250-%s Hello %s [%s]", hostname(s), s->helo, s->ip);
	reply(s, "250-PIPELINING");
	reply(s, "250-SIZE %" PRIu64, lc->max_message_size);
	reply(s, "250-8BITMIME");
	if (lc->smtputf8)
		reply(s, "250-SMTPUTF8");
	reply(s, "250-ENHANCEDSTATUSCODES");
	reply(s, "250-CHUNKING");
	if (s->cfg->ssl && !s->tls)
		reply(s, "250-STARTTLS");
	if (s->cfg->auth && s->tls && !s->authed)
		reply(s, "250-AUTH PLAIN LOGIN");
	reply(s, "250 DSN");
}

/* ---- MAIL / RCPT ---- */

static bool
takes_reports(const struct config *c)
{
	return c->bounce_domain != NULL || c->nfbl > 0;
}

/*
 * Is addr a report address? 1 yes (a valid VERP token into *tok with
 * *is_verp, or an FBL mailbox), 0 no; -1 a "bounce+" local part at the
 * bounce domain whose token does not verify; -2 another local part at the
 * bounce domain (no such mailbox).
 */
static int
report_address(const struct config *c, const char *addr, struct verp_token *tok, bool *is_verp)
{
	const char *local;
	size_t llen;

	*is_verp = false;
	if (verp_is_fbl(c, addr))
		return 1;
	if (!verp_is_bounce_domain(c, addr, &local, &llen))
		return 0;
	switch (verp_check(c->verp_key, c->verp_keylen, local, llen, tok)) {
	case 1:
		*is_verp = true;
		return 1;
	case -1:
		return -1;
	}
	return -2;
}

static void
cmd_mail(struct session *s, struct smtp_cmd *cmd)
{
	const struct listener_conf *lc = s->cfg->lc;
	const char *v;
	uint64_t size = 0;
	bool utf8;

	if (s->state == SS_HELO) {
		reply_err(s, "503 5.5.1 Error: send HELO/EHLO first");
		return;
	}
	if (s->state != SS_READY) {
		reply_err(s, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	/* with inbound reports configured, AUTH is asked for at RCPT, for
	 * recipients that are not report addresses */
	if (lc->auth == AUTH_REQUIRED && !s->authed && !takes_reports(s->cfg->c)) {
		reply_err(s, "530 5.7.0 Authentication required");
		return;
	}
	if (cmd->nparams > 0 && !s->esmtp) {
		reply_err(s, "555 5.5.4 MAIL parameters need EHLO");
		return;
	}
	utf8 = smtp_cmd_param(cmd, "SMTPUTF8") != NULL;
	if (utf8 && !lc->smtputf8) {
		reply_err(s, "555 5.5.4 SMTPUTF8 is not offered here");
		return;
	}
	if (cmd->path_utf8 && !utf8) {
		reply_err(s, "553 5.6.7 Non-ASCII sender address needs SMTPUTF8");
		return;
	}
	if ((v = smtp_cmd_param(cmd, "SIZE")) != NULL) {
		size = strtoull(v, NULL, 10);
		if (size > lc->max_message_size) {
			reply_err(s, "552 5.3.4 Message size exceeds fixed maximum message size");
			return;
		}
	}
	if ((v = smtp_cmd_param(cmd, "BODY")) != NULL) {
		if (strcasecmp(v, "BINARYMIME") == 0) {
			reply_err(s, "555 5.5.4 BODY=BINARYMIME is not supported");
			return;
		}
		if (strcasecmp(v, "8BITMIME") == 0)
			s->flags |= MF_8BITMIME;
	}
	if (utf8)
		s->flags |= MF_SMTPUTF8;
	if ((v = smtp_cmd_param(cmd, "RET")) != NULL)
		s->ret_flag = strcasecmp(v, "HDRS") == 0 ? MF_RET_HDRS : MF_RET_FULL;
	if ((v = smtp_cmd_param(cmd, "ENVID")) != NULL) {
		s->envid = xstrdup(v);
		if (xtext_decode(s->envid) < 0) {   /* checked by the parser; cannot fail */
			free(s->envid);
			s->envid = NULL;
		}
	}
	s->sender = xstrdup(cmd->path);
	set_state(s, SS_MAIL);
	log_info("event=mail sid=%s from=<%s> size=%" PRIu64 "%s", s->sid, s->sender, size,
	    utf8 ? " smtputf8=yes" : "");
	reply(s, "250 2.1.0 Ok");
}

/*
 * The suppression list at RCPT: global and sender-domain scopes (MAIL FROM
 * is known; the pool and the From domain are checked by inject after DATA).
 * Returns true when the reply has been sent (refused, or dropped).
 */
static bool
rcpt_suppressed(struct session *s, const char *rcpt)
{
	struct suppress_entry e;
	const char *sdom = s->sender && *s->sender ? smtp_addr_domain(s->sender) : NULL;
	int rc = suppress_check(rcpt, sdom, NULL, &e);

	if (rc == 0)
		return false;
	if (rc < 0) {
		reply(s, "451 4.3.0 The suppression list cannot be read, try again later");
		return true;
	}
	if (s->cfg->lc->suppressed == SUPPRESSED_DROP) {
		log_info("event=rcpt-suppressed sid=%s to=<%s> reason=%s scope=%s action=dropped",
		    s->sid, rcpt, suppress_reason_name(e.reason), e.scope[0] ? e.scope : "global");
		s->supp = xrealloc(s->supp, sizeof(*s->supp) * (size_t)(s->nsupp + 1));
		s->supp[s->nsupp].addr = xstrdup(rcpt);
		s->supp[s->nsupp].e = e;
		s->nsupp++;
		set_state(s, SS_RCPT);
		reply(s, "250 2.1.5 Ok");
		return true;
	}
	log_info("event=rcpt-suppressed sid=%s to=<%s> reason=%s scope=%s action=rejected",
	    s->sid, rcpt, suppress_reason_name(e.reason), e.scope[0] ? e.scope : "global");
	suppress_event("rejected", NULL, NULL, s->sender, rcpt, NULL, NULL, &e);
	/* not a protocol error: it does not count toward max-errors */
	reply(s, "550 5.7.1 <%s>: recipient suppressed (%s)", rcpt, suppress_reason_name(e.reason));
	return true;
}

static void
cmd_rcpt(struct session *s, struct smtp_cmd *cmd)
{
	const struct listener_conf *lc = s->cfg->lc;
	const char *v;
	int notify = 0;
	struct spool_rcpt *r;

	if (s->state != SS_MAIL && s->state != SS_RCPT) {
		reply_err(s, s->state == SS_BDAT_MORE ? "503 5.5.1 Error: RCPT after BDAT" :
		    "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (cmd->nparams > 0 && !s->esmtp) {
		reply_err(s, "555 5.5.4 RCPT parameters need EHLO");
		return;
	}
	if (smtp_addr_domain(cmd->path) == NULL) {
		reply_err(s, "550 5.1.1 No local mailboxes here (postmaster included)");
		return;
	}
	if (cmd->path_utf8 && !(s->flags & MF_SMTPUTF8)) {
		reply_err(s, "553 5.6.7 Non-ASCII recipient address needs SMTPUTF8");
		return;
	}
	struct verp_token tok;
	bool is_verp;
	int rk = report_address(s->cfg->c, cmd->path, &tok, &is_verp);
	if (rk == -1) {
		log_info("event=verp-forged sid=%s ip=%s from=<%s> to=<%s>", s->sid, s->ip,
		    s->sender, cmd->path);
		reply_err(s, "550 5.7.1 Invalid bounce address token");
		return;
	}
	if (rk == -2) {
		reply_err(s, "550 5.1.1 No such mailbox at the bounce domain");
		return;
	}
	if (rk == 0) {
		if (lc->auth == AUTH_REQUIRED && !s->authed) {
			reply_err(s, "530 5.7.0 Authentication required");
			return;
		}
		if (!s->relay_ip && !s->authed) {
			log_info("event=relay-denied sid=%s ip=%s to=<%s>", s->sid, s->ip, cmd->path);
			reply_err(s, "550 5.7.1 Relaying denied");
			return;
		}
	}
	/* reports are read here, relayed mail is queued: one transaction
	 * cannot be both; 452 makes the client send the rest separately */
	if ((rk == 1 && s->rkind == RK_RELAY) || (rk == 0 && s->rkind == RK_REPORT)) {
		reply(s, "452 4.5.3 Report addresses and relayed recipients need separate transactions");
		return;
	}
	if (rk == 1 && is_verp && s->ntok >= INBOUND_MAX_TOKENS) {
		reply(s, "452 4.5.3 Too many recipients");
		return;
	}
	if (s->nrcpt + s->nsupp >= lc->max_recipients) {
		/* not an error of the client's: it must send the rest later */
		reply(s, "452 4.5.3 Too many recipients");
		return;
	}
	if ((v = smtp_cmd_param(cmd, "NOTIFY")) != NULL)
		notify = smtp_notify_bits(v);
	for (int i = 0; i < s->nrcpt; i++)
		if (strcmp(s->rcpts[i].addr, cmd->path) == 0) {
			reply(s, "250 2.1.5 Ok (duplicate recipient)");
			return;
		}
	for (int i = 0; i < s->nsupp; i++)
		if (strcmp(s->supp[i].addr, cmd->path) == 0) {
			reply(s, "250 2.1.5 Ok (duplicate recipient)");
			return;
		}
	if (rk == 0) {
		int had = s->nsupp;
		if (rcpt_suppressed(s, cmd->path)) {
			if (s->nsupp > had)
				s->rkind = RK_RELAY;   /* accepted and dropped: a relay transaction */
			return;
		}
	}
	s->rcpts = xrealloc(s->rcpts, sizeof(*s->rcpts) * (size_t)(s->nrcpt + 1));
	r = &s->rcpts[s->nrcpt++];
	memset(r, 0, sizeof(*r));
	r->addr = xstrdup(cmd->path);
	r->notify = notify > 0 ? (uint8_t)notify : 0;
	if (rk == 1) {
		s->rkind = RK_REPORT;
		if (is_verp)
			s->tok[s->ntok++] = tok;
		else
			s->fbl = true;
		log_info("event=report-rcpt sid=%s ip=%s from=<%s> to=<%s>%s", s->sid, s->ip,
		    s->sender, cmd->path, is_verp ? " verp=valid" : " fbl=yes");
	} else
		s->rkind = RK_RELAY;
	if ((v = smtp_cmd_param(cmd, "ORCPT")) != NULL) {
		r->orcpt = xstrdup(v);
		if (xtext_decode(r->orcpt) < 0) {
			free(r->orcpt);
			r->orcpt = NULL;
		}
	}
	set_state(s, SS_RCPT);
	reply(s, "250 2.1.5 Ok");
}

/* ---- message content ---- */

static void
data_begin(struct session *s)
{
	if (!s->data)
		s->data = evbuffer_new();
	s->in_headers = true;
	s->prev_crlf = true;
}

static void
data_fail(struct session *s, enum data_err e)
{
	if (s->derr == DE_NONE) {
		s->derr = e;
		if (s->data)
			evbuffer_drain(s->data, evbuffer_get_length(s->data));
	}
}

/* Header line "name:" with name of printable ASCII but ':' (RFC 5322 ftext). */
static bool
is_header_field(const char *l, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)l[i];
		if (c == ':')
			return i > 0;
		if (c < 33 || c > 126)
			return false;
	}
	return false;
}

/* Checks shared by DATA and BDAT on one line of content (no line end); wire
 * is its wire-form length with CRLF. */
static void
content_check(struct session *s, const char *l, size_t n, size_t wire)
{
	const struct listener_conf *lc = s->cfg->lc;

	s->data_size += wire;
	if (s->data_size > lc->max_message_size)
		data_fail(s, DE_SIZE);
	if (s->in_headers) {
		if (n == 0)
			s->in_headers = false;
		else if (l[0] == ' ' || l[0] == '\t')
			;                   /* folded continuation */
		else if (is_header_field(l, n)) {
			if (++s->nheaders > lc->max_headers)
				data_fail(s, DE_HEADERS);
			if (n >= 9 && strncasecmp(l, "Received:", 9) == 0 && ++s->hops > MAX_HOPS)
				data_fail(s, DE_HOPS);
		} else
			s->in_headers = false;   /* no blank line: the body starts here */
	}
	if (memchr(l, '\0', n))
		data_fail(s, DE_NUL);
	if (!s->eightbit)
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)l[i] >= 0x80) {
				s->eightbit = true;
				break;
			}
}

static void finish_message(struct session *s);

/*
 * Take one line from the input: 1 = a line is in s->linebuf (n bytes, line
 * end removed, *crlf when it ended in CRLF; *too_long when it was over the
 * limit and has been dropped), 0 = need more input.
 */
static int
get_line(struct session *s, struct evbuffer *in, size_t *np, bool *crlf, bool *too_long)
{
	struct evbuffer_ptr p = evbuffer_search(in, "\n", 1, NULL);
	size_t avail = evbuffer_get_length(in), n;

	*too_long = false;
	*crlf = true;
	*np = 0;
	if (p.pos < 0) {
		if (avail > s->maxline + 1) {
			/* keep nothing of an over-long line: memory stays bounded */
			evbuffer_drain(in, avail);
			s->skip_line = true;
		}
		return 0;
	}
	n = (size_t)p.pos;
	if (s->skip_line || n > s->maxline + 1) {
		evbuffer_drain(in, n + 1);
		s->skip_line = false;
		*too_long = true;
		return 1;
	}
	evbuffer_remove(in, s->linebuf, n + 1);
	if (n > 0 && s->linebuf[n - 1] == '\r')
		n--;
	else
		*crlf = false;
	if (n > s->maxline) {
		*too_long = true;
		return 1;
	}
	s->linebuf[n] = '\0';
	*np = n;
	return 1;
}

/* One DATA line (wire form already). */
static void
data_line(struct session *s, size_t n, bool crlf, bool too_long)
{
	char *l = s->linebuf;

	if (!too_long && n == 1 && l[0] == '.' && crlf && s->prev_crlf) {
		finish_message(s);
		return;
	}
	s->prev_crlf = crlf;
	if (too_long) {
		data_fail(s, DE_LINE);
		return;
	}
	if (n == 1 && l[0] == '.') {
		/* "." beside a bare LF: content, kept unambiguous */
		content_check(s, "..", 2, 4);
		if (s->derr == DE_NONE)
			evbuffer_add(s->data, "..\r\n", 4);
		return;
	}
	content_check(s, l, n, n + 2);
	if (s->derr == DE_NONE) {
		l[n] = '\r';
		l[n + 1] = '\n';
		evbuffer_add(s->data, l, n + 2);
	}
}

/* One raw BDAT line (with its LF, or without at the end of the message). */
static void
bdat_line(struct session *s, const char *l, size_t n)
{
	size_t content = n;
	char stack[4096], *buf;
	int st = 1;
	size_t out;

	while (content > 0 && (l[content - 1] == '\n' || l[content - 1] == '\r'))
		content--;
	content_check(s, l, content, content + 2 + (content > 0 && l[0] == '.'));
	if (s->derr != DE_NONE)
		return;
	buf = DOT_STUFF_MAX(n + 1) <= sizeof(stack) ? stack : xmalloc(DOT_STUFF_MAX(n + 1));
	out = dot_stuff(buf, l, n, &st);
	if (n == 0 || l[n - 1] != '\n')
		out += dot_stuff(buf + out, "\n", 1, &st);
	evbuffer_add(s->data, buf, out);
	if (buf != stack)
		free(buf);
}

/* Feed raw chunk bytes into the line splitter. */
static void
bdat_bytes(struct session *s, const char *p, size_t len)
{
	while (len > 0) {
		const char *nl = memchr(p, '\n', len);
		size_t take = nl ? (size_t)(nl - p) + 1 : len;

		if (s->pskip) {
			if (nl) {
				s->pskip = false;
				s->data_size += take;
				data_fail(s, DE_LINE);
			}
		} else if (s->plen == 0 && nl && take <= s->maxline + 2) {
			bdat_line(s, p, take);      /* whole line in the chunk: no copy */
		} else if (s->plen + take > s->maxline + 2) {
			s->plen = 0;
			if (nl)
				data_fail(s, DE_LINE);
			else
				s->pskip = true;
		} else {
			if (!s->pbuf)
				s->pbuf = xmalloc(s->maxline + 3);
			memcpy(s->pbuf + s->plen, p, take);
			s->plen += take;
			if (nl) {
				bdat_line(s, s->pbuf, s->plen);
				s->plen = 0;
			}
		}
		p += take;
		len -= take;
	}
}

/* Consume chunk octets; false when the input is exhausted. */
static bool
bdat_step(struct session *s, struct evbuffer *in)
{
	size_t avail = evbuffer_get_length(in);

	while (s->bdat_left > 0 && avail > 0) {
		struct evbuffer_iovec v;
		size_t take;

		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		take = MIN(v.iov_len, s->bdat_left);
		if (!s->bdat_refuse)
			bdat_bytes(s, v.iov_base, take);
		evbuffer_drain(in, take);
		s->bdat_left -= take;
		avail -= take;
	}
	if (s->bdat_left > 0)
		return false;

	/* chunk complete */
	if (s->bdat_refuse) {
		const char *r = s->bdat_refuse;
		s->bdat_refuse = NULL;
		set_state(s, s->bdat_prev);
		reply_err(s, r);
		return true;
	}
	if (s->bdat_last) {
		if (s->pskip)
			data_fail(s, DE_LINE);
		else if (s->plen > 0)
			bdat_line(s, s->pbuf, s->plen);
		s->plen = 0;
		s->pskip = false;
		finish_message(s);
		return true;
	}
	if (s->derr != DE_NONE) {
		/* RFC 3030 2: a failed chunk fails the transaction */
		finish_message(s);
		return true;
	}
	set_state(s, SS_BDAT_MORE);
	reply(s, "250 2.0.0 Ok: %zu octets received", s->data_size);
	return true;
}

static void
cmd_data(struct session *s)
{
	if (s->state == SS_MAIL) {
		reply_err(s, "554 5.5.1 Error: no valid recipients");
		return;
	}
	if (s->state == SS_BDAT_MORE) {
		reply_err(s, "503 5.5.1 Error: DATA after BDAT");
		return;
	}
	if (s->state != SS_RCPT) {
		reply_err(s, "503 5.5.1 Error: need RCPT command");
		return;
	}
	data_begin(s);
	set_state(s, SS_DATA);
	reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void
cmd_bdat(struct session *s, struct smtp_cmd *cmd)
{
	s->bdat_left = cmd->bdat_size;
	s->bdat_last = cmd->bdat_last;
	s->bdat_prev = s->state;
	/* a refused BDAT still has its octets on the wire: consume them
	 * (RFC 3030 2), then answer */
	if (!s->esmtp)
		s->bdat_refuse = "503 5.5.1 Error: BDAT needs EHLO";
	else if (s->state == SS_MAIL)
		s->bdat_refuse = "554 5.5.1 Error: no valid recipients";
	else if (s->state != SS_RCPT && s->state != SS_BDAT_MORE)
		s->bdat_refuse = "503 5.5.1 Error: need MAIL and RCPT before BDAT";
	else if (s->state == SS_RCPT)
		data_begin(s);
	set_state(s, SS_BDAT);
}

/* ---- handing the message to inject ---- */

static void
rfc5322_date(char *buf, size_t len)
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

static char *
received_line(struct session *s, const char *id)
{
	char date[64], proto[16];
	const char *v6 = strchr(s->ip, ':') ? "IPv6:" : "";

	snprintf(proto, sizeof(proto), "%s%s%s%s", (s->flags & MF_SMTPUTF8) ? "UTF8SMTP" : "",
	    (s->flags & MF_SMTPUTF8) ? "" : (s->esmtp ? "ESMTP" : "SMTP"),
	    s->tls ? "S" : "", s->authed ? "A" : "");
	rfc5322_date(date, sizeof(date));
	return xasprintf("Received: from %s ([%s%s])%s%s%s\r\n\tby %s (sluice) with %s id %s%s%s%s;\r\n\t%s",
	    s->helo ? s->helo : "unknown", v6, s->ip,
	    s->tls ? "\r\n\t(using " : "", s->tls ? s->tlsinfo : "", s->tls ? ")" : "",
	    hostname(s), proto, id,
	    s->nrcpt == 1 ? "\r\n\tfor <" : "", s->nrcpt == 1 ? s->rcpts[0].addr : "",
	    s->nrcpt == 1 ? ">" : "", date);
}

static void
inject_cb(struct inject *in, int code, const char *text)
{
	struct session *s = in->arg;
	bool has_code = text && strlen(text) > 4 && text[3] == ' ' &&
	    text[0] >= '2' && text[0] <= '5';

	s->pending--;
	if (code >= 200 && code < 300) {
		s->ntxn++;
		log_info("event=queued sid=%s id=%s size=%zu nrcpt=%d%s", s->sid, in->env.id,
		    s->data_size, s->inj_nrcpt, s->dead ? " client=gone" : "");
	} else
		log_info("event=inject-failed sid=%s code=%d reply=\"%s\"%s", s->sid, code,
		    text ? text : "", s->dead ? " client=gone" : "");
	if (has_code)
		reply(s, "%s", text);
	else
		reply(s, "%d %s", code ? code : 451, text && *text ? text : "4.3.0 Local error");
	inject_free(in);
	txn_reset(s);
	if (!s->dead) {
		set_state(s, SS_READY);
		resume_input(s);
	}
	session_maybe_free(s);
}

/* ---- reports (bounce domain, FBL mailboxes) ---- */

static int
report_barrier(MDB_txn *txn, void *arg)
{
	(void)txn;
	(void)arg;
	return 0;
}

struct report_job {
	struct session *s;
	struct inbound *in;
};

static void
report_durable(void *arg, bool ok)
{
	struct report_job *j = arg;
	struct session *s = j->s;

	s->pending--;
	if (ok)
		reply(s, "250 2.6.0 Report processed (%d event%s)", j->in->events,
		    j->in->events == 1 ? "" : "s");
	else {
		log_warnx("event=report-store-failed sid=%s", s->sid);
		reply(s, "451 4.3.0 Could not record the report; try again later");
	}
	inbound_free(j->in);
	free(j);
	txn_reset(s);
	if (!s->dead) {
		set_state(s, SS_READY);
		resume_input(s);
	}
	session_maybe_free(s);
}

static void
report_work(void *arg)
{
	struct report_job *j = arg;

	inbound_process(j->in);
}

/* Back on the loop: the events are written and the suppression entries
 * queued; a barrier write after them answers once they are committed. */
static void
report_done(void *arg)
{
	store_write(report_barrier, report_durable, arg);
}

/* Parse a report on the job pool, then answer. */
static void
report_submit(struct session *s)
{
	struct report_job *j = xcalloc(1, sizeof(*j));
	struct inbound *in = xcalloc(1, sizeof(*in));
	size_t len = s->data ? evbuffer_get_length(s->data) : 0;
	int st = DOT_STATE_INIT;

	snprintf(in->sid, sizeof(in->sid), "%s", s->sid);
	snprintf(in->ip, sizeof(in->ip), "%s", s->ip);
	in->sender = xstrdup(s->sender ? s->sender : "");
	memcpy(in->tok, s->tok, sizeof(s->tok[0]) * (size_t)s->ntok);
	in->ntok = s->ntok;
	in->fbl = s->fbl;
	in->data = xmalloc(len + 1);
	if (len > 0)
		evbuffer_remove(s->data, in->data, len);
	in->len = dot_unstuff(in->data, len, &st);
	in->data[in->len] = '\0';
	log_info("event=report-received sid=%s ip=%s from=<%s> size=%zu nrcpt=%d", s->sid, s->ip,
	    in->sender, s->data_size, s->nrcpt);
	j->s = s;
	j->in = in;
	s->pending++;
	set_state(s, SS_INJECT);
	jobs_submit(report_work, report_done, j);
}

static void
finish_message(struct session *s)
{
	const struct listener_conf *lc = s->cfg->lc;
	struct inject *in;

	switch (s->derr) {
	case DE_NONE:
		break;
	case DE_SIZE:
		reply(s, "552 5.3.4 Message size exceeds fixed maximum message size (%" PRIu64 " bytes)",
		    lc->max_message_size);
		break;
	case DE_LINE:
		reply(s, "552 5.5.2 Message line too long (limit %d bytes)", lc->max_line_length);
		break;
	case DE_HEADERS:
		reply(s, "552 5.6.0 Too many header lines (limit %d)", lc->max_headers);
		break;
	case DE_HOPS:
		reply(s, "554 5.4.6 Too many Received: headers, mail loop?");
		break;
	case DE_NUL:
		reply(s, "554 5.6.0 Message contains NUL characters");
		break;
	}
	if (s->derr != DE_NONE) {
		log_info("event=message-refused sid=%s size=%zu reason=%d", s->sid, s->data_size,
		    (int)s->derr);
		txn_reset(s);
		set_state(s, SS_READY);
		return;
	}

	if (s->rkind == RK_REPORT) {
		report_submit(s);
		return;
	}
	in = inject_new();
	random_id(in->env.id);
	in->env.sender = s->sender;
	s->sender = NULL;
	in->env.rcpts = s->rcpts;
	in->env.nrcpt = s->nrcpt;
	s->inj_nrcpt = s->nrcpt;
	in->env.flags = s->flags | (s->eightbit ? MF_8BITMIME : 0) | s->ret_flag;
	in->env.envid = s->envid;
	s->envid = NULL;
	in->data = s->data;
	s->data = NULL;
	in->received = received_line(s, in->env.id);
	in->supp = s->supp;
	in->nsupp = s->nsupp;
	s->supp = NULL;
	s->nsupp = 0;
	s->rcpts = NULL;
	s->nrcpt = 0;
	in->done = inject_cb;
	in->arg = s;
	s->pending++;
	set_state(s, SS_INJECT);
	inject_submit(in);
}

/* ---- STARTTLS ---- */

static void
cmd_starttls(struct session *s)
{
	struct evbuffer *in;
	SSL *ssl;

	if (!s->cfg->ssl) {
		reply_err(s, "502 5.5.1 STARTTLS not available");
		return;
	}
	if (s->tls) {
		reply_err(s, "503 5.5.1 TLS already active");
		return;
	}
	if (in_transaction(s)) {
		reply_err(s, "503 5.5.1 STARTTLS not allowed during a transaction");
		return;
	}
	if ((ssl = SSL_new(s->cfg->ssl)) == NULL) {
		log_warnx("event=tls-failed sid=%s err=\"%s\"", s->sid, tls_error_string());
		reply(s, "454 4.7.0 TLS not available due to temporary reason");
		return;
	}
	reply(s, "220 2.0.0 Ready to start TLS");
	in = bufferevent_get_input(s->bev);
	if (evbuffer_get_length(in) > 0) {
		log_info("event=starttls-pipelined sid=%s ip=%s dropped=%zu", s->sid, s->ip,
		    evbuffer_get_length(in));
		evbuffer_drain(in, evbuffer_get_length(in));
	}
	/* the handshake starts once the 220 is on the wire (writecb) */
	s->tls_next = ssl;
	pause_input(s);
	set_state(s, SS_STARTTLS);
}

/* The 220 is written: hand the socket to a TLS bufferevent. */
static void
start_tls(struct session *s)
{
	struct event_base *base = bufferevent_get_base(s->bev);
	struct bufferevent *tb;
	SSL *ssl = s->tls_next;

	s->tls_next = NULL;
	bufferevent_disable(s->bev, EV_READ | EV_WRITE);
	bufferevent_free(s->bev);                  /* does not close fd */
	s->bev = NULL;
	tb = bufferevent_openssl_socket_new(base, s->fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
	    BEV_OPT_CLOSE_ON_FREE);
	if (!tb) {
		log_warnx("event=tls-failed sid=%s msg=\"bufferevent_openssl_socket_new\"", s->sid);
		SSL_free(ssl);
		evutil_closesocket(s->fd);
		s->dead = true;
		return;
	}
	s->bev = tb;
	s->tls_bev = true;
	bufferevent_openssl_set_allow_dirty_shutdown(tb, 1);
	bufferevent_setcb(tb, readcb, writecb, eventcb, s);
	bufferevent_setwatermark(tb, EV_READ, 0, s->maxline + IN_SLACK);
	set_timeouts(s);
	bufferevent_enable(tb, EV_READ | EV_WRITE);
}

static void
tls_established(struct session *s)
{
	SSL *ssl = bufferevent_openssl_get_ssl(s->bev);

	s->tls = true;
	tls_describe(ssl, s->tlsinfo, sizeof(s->tlsinfo));
	log_info("event=tls sid=%s ip=%s tls=\"%s\"", s->sid, s->ip, s->tlsinfo);
	/* RFC 3207 4.2: forget everything learnt before TLS */
	free(s->helo);
	s->helo = NULL;
	s->esmtp = false;
	txn_reset(s);
	set_state(s, SS_HELO);
}

/* ---- AUTH ---- */

struct auth_job {
	struct session *s;
	struct auth_db *db;
	char *user, *pass;
	bool ok;
};

static void
auth_work(void *arg)
{
	struct auth_job *j = arg;

	j->ok = auth_check(j->db, j->user, j->pass);
}

static void
auth_done(void *arg)
{
	struct auth_job *j = arg;
	struct session *s = j->s;

	s->pending--;
	if (!s->dead) {
		set_state(s, SS_READY);
		if (j->ok) {
			s->authed = true;
			s->user = xstrdup(j->user);
			log_info("event=auth sid=%s ip=%s user=\"%s\" result=ok", s->sid, s->ip, j->user);
			reply(s, "235 2.7.0 Authentication successful");
		} else {
			log_info("event=auth sid=%s ip=%s user=\"%s\" result=failed", s->sid, s->ip, j->user);
			reply_err(s, "535 5.7.8 Authentication credentials invalid");
		}
		resume_input(s);
	}
	OPENSSL_cleanse(j->pass, strlen(j->pass));
	free(j->pass);
	free(j->user);
	free(j);
	session_maybe_free(s);
}

static void
auth_submit(struct session *s, const char *user, const char *pass)
{
	struct auth_job *j = xcalloc(1, sizeof(*j));

	j->s = s;
	j->db = s->cfg->auth;
	j->user = xstrdup(user);
	j->pass = xstrdup(pass);
	s->pending++;
	set_state(s, SS_AUTH_CHECK);
	jobs_submit(auth_work, auth_done, j);
}

/* Base64 into a malloc'd NUL-terminated buffer; NULL when invalid. "=" is empty. */
static char *
b64_decode(const char *in, size_t *outlen)
{
	size_t n = strlen(in), pad = 0;
	char *out;
	int len;

	if (strcmp(in, "=") == 0) {
		*outlen = 0;
		return xstrdup("");
	}
	if (n == 0 || n % 4)
		return NULL;
	out = xmalloc(n / 4 * 3 + 1);
	if ((len = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)in, (int)n)) < 0) {
		free(out);
		return NULL;
	}
	if (in[n - 1] == '=')
		pad++;
	if (in[n - 2] == '=')
		pad++;
	*outlen = (size_t)len - pad;
	out[*outlen] = '\0';
	return out;
}

static void
auth_plain(struct session *s, const char *resp)
{
	size_t n;
	char *d = b64_decode(resp, &n);
	const char *authz, *user, *pass;
	size_t zl, ul;

	if (!d) {
		set_state(s, SS_READY);
		reply_err(s, "501 5.5.2 Invalid base64 data");
		return;
	}
	/* authzid NUL authcid NUL passwd */
	authz = d;
	zl = strnlen(authz, n);
	if (zl >= n)
		goto bad;
	user = d + zl + 1;
	ul = strnlen(user, n - zl - 1);
	if (zl + 1 + ul >= n)
		goto bad;
	pass = user + ul + 1;
	if (ul == 0 || memchr(pass, '\0', n - zl - ul - 2) || (zl > 0 && strcmp(authz, user) != 0))
		goto bad;
	auth_submit(s, user, pass);
	OPENSSL_cleanse(d, n);
	free(d);
	return;
bad:
	OPENSSL_cleanse(d, n);
	free(d);
	set_state(s, SS_READY);
	reply_err(s, "501 5.5.2 Malformed AUTH PLAIN response");
}

static void
cmd_auth(struct session *s, struct smtp_cmd *cmd)
{
	if (!s->cfg->auth) {
		reply_err(s, "502 5.5.1 AUTH not available");
		return;
	}
	if (!s->tls) {
		reply_err(s, "538 5.7.11 Encryption required for requested authentication mechanism");
		return;
	}
	if (s->authed) {
		reply_err(s, "503 5.5.1 Already authenticated");
		return;
	}
	if (s->state == SS_HELO) {
		reply_err(s, "503 5.5.1 Error: send EHLO first");
		return;
	}
	if (in_transaction(s)) {
		reply_err(s, "503 5.5.1 AUTH not allowed during a transaction");
		return;
	}
	if (strcmp(cmd->auth_mech, "PLAIN") == 0) {
		if (cmd->auth_initial) {
			auth_plain(s, cmd->auth_initial);
			return;
		}
		s->astep = AS_PLAIN;
		set_state(s, SS_AUTH);
		reply(s, "334 ");
	} else if (strcmp(cmd->auth_mech, "LOGIN") == 0) {
		if (cmd->auth_initial) {
			size_t n;
			char *u = b64_decode(cmd->auth_initial, &n);
			if (!u || n == 0 || memchr(u, '\0', n)) {
				free(u);
				reply_err(s, "501 5.5.2 Invalid base64 data");
				return;
			}
			free(s->auser);
			s->auser = u;
			s->astep = AS_LOGIN_PASS;
			set_state(s, SS_AUTH);
			reply(s, "334 UGFzc3dvcmQ6");
			return;
		}
		s->astep = AS_LOGIN_USER;
		set_state(s, SS_AUTH);
		reply(s, "334 VXNlcm5hbWU6");
	} else
		reply_err(s, "504 5.5.4 Unrecognized authentication type");
}

/* A line while in SS_AUTH. */
static void
auth_line(struct session *s, char *line)
{
	size_t n;
	char *d;

	if (strcmp(line, "*") == 0) {
		set_state(s, SS_READY);
		free(s->auser);
		s->auser = NULL;
		reply_err(s, "501 5.7.0 Authentication aborted");
		return;
	}
	switch (s->astep) {
	case AS_PLAIN:
		auth_plain(s, line);
		break;
	case AS_LOGIN_USER:
		d = b64_decode(line, &n);
		if (!d || n == 0 || memchr(d, '\0', n)) {
			free(d);
			set_state(s, SS_READY);
			reply_err(s, "501 5.5.2 Invalid base64 data");
			return;
		}
		free(s->auser);
		s->auser = d;
		s->astep = AS_LOGIN_PASS;
		reply(s, "334 UGFzc3dvcmQ6");
		break;
	case AS_LOGIN_PASS:
		d = b64_decode(line, &n);
		if (!d || memchr(d, '\0', n)) {
			free(d);
			set_state(s, SS_READY);
			reply_err(s, "501 5.5.2 Invalid base64 data");
			return;
		}
		auth_submit(s, s->auser, d);
		OPENSSL_cleanse(d, n);
		free(d);
		free(s->auser);
		s->auser = NULL;
		break;
	}
}

/* ---- command dispatch ---- */

static void
command_line(struct session *s, char *line, size_t n, bool too_long)
{
	struct smtp_cmd cmd;
	const char *err;

	if (too_long) {
		if (s->state == SS_AUTH)
			set_state(s, SS_READY);
		reply_err(s, "500 5.5.2 Line too long");
		return;
	}
	if (memchr(line, '\0', n)) {
		if (s->state == SS_AUTH)
			set_state(s, SS_READY);
		reply_err(s, "500 5.5.2 NUL character in command");
		return;
	}
	if (s->state == SS_AUTH) {
		auth_line(s, line);
		return;
	}
	if (atomic_load(&srv_stopping) && (s->state == SS_HELO || s->state == SS_READY)) {
		reply(s, "421 4.3.2 %s Service shutting down", hostname(s));
		session_close(s);
		return;
	}
	if (log_enabled(LOG_TRACE))
		log_trace("event=command sid=%s state=%s line=\"%.*s\"", s->sid,
		    smtp_session_strstate(s->state), (int)MIN(n, (size_t)200), line);
	if (smtp_parse_cmd(line, &cmd, &err) < 0) {
		reply_err(s, err);
		return;
	}
	switch (cmd.verb) {
	case CMD_HELO:
	case CMD_EHLO:
		cmd_helo(s, &cmd);
		break;
	case CMD_MAIL:
		cmd_mail(s, &cmd);
		break;
	case CMD_RCPT:
		cmd_rcpt(s, &cmd);
		break;
	case CMD_DATA:
		cmd_data(s);
		break;
	case CMD_BDAT:
		cmd_bdat(s, &cmd);
		break;
	case CMD_RSET:
		txn_reset(s);
		if (s->state != SS_HELO)
			set_state(s, SS_READY);
		reply(s, "250 2.0.0 Ok");
		break;
	case CMD_NOOP:
		reply(s, "250 2.0.0 Ok");
		break;
	case CMD_QUIT:
		reply(s, "221 2.0.0 Bye");
		session_close(s);
		break;
	case CMD_VRFY:
		reply(s, "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery");
		break;
	case CMD_EXPN:
		reply(s, "502 5.5.1 EXPN not available");
		break;
	case CMD_HELP:
		reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY "
		    "HELP STARTTLS AUTH");
		break;
	case CMD_STARTTLS:
		cmd_starttls(s);
		break;
	case CMD_AUTH:
		cmd_auth(s, &cmd);
		break;
	case CMD_UNKNOWN:
		reply_err(s, "500 5.5.1 Command unrecognized");
		break;
	}
}

/* Take commands and data from the input while the state allows. */
static void
process_input(struct session *s)
{
	for (;;) {
		struct evbuffer *in;
		size_t n;
		bool crlf, too_long;

		if (s->dead || s->closing || !s->bev)
			return;
		out_len_check(s);
		if (s->out_blocked)
			return;
		in = bufferevent_get_input(s->bev);
		switch (s->state) {
		case SS_HELO:
		case SS_READY:
		case SS_MAIL:
		case SS_RCPT:
		case SS_BDAT_MORE:
		case SS_AUTH:
			if (!get_line(s, in, &n, &crlf, &too_long))
				return;
			if (s->state == SS_AUTH && !too_long && n > AUTH_MAX_LINE)
				too_long = true;
			command_line(s, s->linebuf, n, too_long);
			break;
		case SS_DATA:
			if (!get_line(s, in, &n, &crlf, &too_long))
				return;
			data_line(s, n, crlf, too_long);
			break;
		case SS_BDAT:
			if (!bdat_step(s, in))
				return;
			break;
		case SS_STARTTLS:
		case SS_AUTH_CHECK:
		case SS_INJECT:
		case SS_CLOSING:
			return;
		}
	}
}

/* ---- bufferevent callbacks ---- */

static void
readcb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	process_input(s);
	session_maybe_free(s);
}

/* The output is written (libevent calls this only at the low watermark, 0). */
static void
writecb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	if (!s->tls_bev)
		bufferevent_disable(bev, EV_WRITE);   /* out_flush writes directly again */
	out_drained(s);
	session_maybe_free(s);
}

static void
eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;

	if (what & BEV_EVENT_CONNECTED) {
		if (s->state == SS_STARTTLS) {
			tls_established(s);
			process_input(s);
		}
	} else if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && in_job(s)) {
		/* the job has the session, not the client: keep reading */
		bufferevent_enable(bev, EV_READ);
	} else if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && in_job(s)) {
		s->rd_eof = true;              /* resume_input acts on it */
	} else if (what & BEV_EVENT_TIMEOUT) {
		if ((what & BEV_EVENT_READING) && !s->closing) {
			log_info("event=timeout sid=%s ip=%s state=%s", s->sid, s->ip,
			    smtp_session_strstate(s->state));
			reply(s, "421 4.4.2 %s Error: timeout exceeded", hostname(s));
			session_close(s);
			/* the write side gets command-timeout to take the 421 */
		} else
			s->dead = true;
	} else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		if (s->state == SS_STARTTLS) {
			unsigned long e = bufferevent_get_openssl_error(bev);
			char buf[160] = "connection closed";
			if (e)
				ERR_error_string_n(e, buf, sizeof(buf));
			log_info("event=tls-failed sid=%s ip=%s err=\"%s\"", s->sid, s->ip, buf);
		} else if ((what & BEV_EVENT_ERROR) && !s->closing)
			log_debug("event=connection-error sid=%s ip=%s err=\"%s\"", s->sid, s->ip,
			    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		else if (!s->closing && s->state != SS_HELO && s->state != SS_READY)
			log_info("event=lost sid=%s ip=%s state=%s", s->sid, s->ip,
			    smtp_session_strstate(s->state));
		s->dead = true;
	}
	session_maybe_free(s);
}

/* ---- listeners ---- */

static int
make_socket(const struct sockaddr_storage *ss, socklen_t sslen, bool reuseport,
    char *err, size_t errlen)
{
	int fd, one = 1;

	if ((fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1) {
		snprintf(err, errlen, "SO_REUSEPORT: %s", strerror(errno));
		close(fd);
		return -1;
	}
	if (ss->ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)ss, sslen) == -1) {
		snprintf(err, errlen, "bind: %s", strerror(errno));
		close(fd);
		return -1;
	}
	if (listen(fd, LISTEN_BACKLOG) == -1) {
		snprintf(err, errlen, "listen: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int
resolve_listener(const struct listener_conf *lc, struct sockaddr_storage *ss, socklen_t *len,
    char *err, size_t errlen)
{
	struct addrinfo hints, *res;
	char port[8];
	const char *host = lc->addr.host;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	snprintf(port, sizeof(port), "%u", lc->addr.port);
	if (!*host || strcmp(host, "*") == 0)
		host = NULL;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		snprintf(err, errlen, "%s:%d: listener %s: address: %s", lc->file, lc->line,
		    lc->name, gai_strerror(rc));
		return -1;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* Build what a listener runs with; NULL with err on failure. */
static struct lcfg *
lcfg_new(const struct config *c, const struct listener_conf *lc, char *err, size_t errlen)
{
	struct lcfg *f = xcalloc(1, sizeof(*f));
	char e[512];

	f->c = c;
	f->lc = lc;
	if (lc->tls_cert || lc->tls_key) {
		if ((f->ssl = tls_server_ctx(lc->tls_cert, lc->tls_key, e, sizeof(e))) == NULL) {
			snprintf(err, errlen, "%s:%d: listener %s: %s", lc->file, lc->line, lc->name, e);
			free(f);
			return NULL;
		}
	}
	if (lc->auth != AUTH_NONE) {
		if (!f->ssl || !lc->auth_users) {
			snprintf(err, errlen, "%s:%d: listener %s: auth needs tls-certificate, "
			    "tls-key and auth-users", lc->file, lc->line, lc->name);
			goto fail;
		}
		if ((f->auth = auth_load(lc->auth_users, e, sizeof(e))) == NULL) {
			snprintf(err, errlen, "%s:%d: listener %s: %s", lc->file, lc->line, lc->name, e);
			goto fail;
		}
	}
	return f;
fail:
	if (f->ssl)
		SSL_CTX_free(f->ssl);
	free(f);
	return NULL;
}

static void
lcfg_keep(struct lcfg *f)
{
	pthread_mutex_lock(&srv_lock);
	f->next = all_lcfgs;
	all_lcfgs = f;
	pthread_mutex_unlock(&srv_lock);
}

static void
lcfg_free(struct lcfg *f)
{
	if (f->ssl)
		SSL_CTX_free(f->ssl);
	auth_free(f->auth);
	free(f);
}

static int bind_workers = 1;

void
smtp_server_set_workers(int n)
{
	bind_workers = n;
}

int
smtp_server_bind(const struct config *c, char *err, size_t errlen)
{
	struct lstn *ls = xcalloc((size_t)(c->nlisteners ? c->nlisteners : 1), sizeof(*ls));
	char e[256];
	int i;

	for (i = 0; i < c->nlisteners; i++) {
		const struct listener_conf *lc = &c->listeners[i];
		struct lstn *l = &ls[i];
		struct lcfg *f;

		l->fd = -1;
		if (resolve_listener(lc, &l->ss, &l->sslen, err, errlen) < 0)
			goto fail;
		if ((f = lcfg_new(c, lc, err, errlen)) == NULL)
			goto fail;
		atomic_store(&l->cur, f);
		l->name = xstrdup(lc->name);
		if ((l->fd = make_socket(&l->ss, l->sslen, true, e, sizeof(e))) < 0) {
			snprintf(err, errlen, "%s:%d: listener %s: %s", lc->file, lc->line, lc->name, e);
			goto fail;
		}
		for (l->nextra = 0; l->nextra < bind_workers - 1 && l->nextra < (int)ARRAY_SIZE(l->extra); l->nextra++) {
			int x = make_socket(&l->ss, l->sslen, true, e, sizeof(e));
			if (x < 0)
				break;
			l->extra[l->nextra] = x;
		}
		lcfg_keep(f);
		log_info("event=listening listener=%s tls=%s auth=%s relay-from=%d", l->name,
		    f->ssl ? "yes" : "no", f->auth ? "yes" : "no", lc->nrelay);
	}
	lstns = ls;
	nlstns = c->nlisteners;
	atomic_store(&srv_stopping, false);
	return 0;
fail:
	for (int k = 0; k <= i && k < c->nlisteners; k++) {
		struct lcfg *f = atomic_load(&ls[k].cur);
		if (ls[k].fd >= 0)
			close(ls[k].fd);
		for (int x = 0; x < ls[k].nextra; x++)
			close(ls[k].extra[x]);
		free(ls[k].name);
		if (f && k == i)
			lcfg_free(f);
	}
	free(ls);
	return -1;
}

static struct srv_worker *
sw_of(struct worker *w)
{
	struct srv_worker *sw = NULL;

	pthread_mutex_lock(&srv_lock);
	if (w && w->idx >= 0 && w->idx < nsws)
		sw = sws[w->idx];
	pthread_mutex_unlock(&srv_lock);
	return sw;
}

void
smtp_server_start(struct worker *w)
{
	struct srv_worker *sw = xcalloc(1, sizeof(*sw));
	char e[256];

	sw->w = w;
	TAILQ_INIT(&sw->sessions);
	sw->nevl = nlstns;
	sw->evl = xcalloc((size_t)(nlstns ? nlstns : 1), sizeof(*sw->evl));
	sw->aa = xcalloc((size_t)(nlstns ? nlstns : 1), sizeof(*sw->aa));

	pthread_mutex_lock(&srv_lock);
	if (w->idx >= nsws) {
		sws = xrealloc(sws, sizeof(*sws) * (size_t)(w->idx + 1));
		for (int i = nsws; i <= w->idx; i++)
			sws[i] = NULL;
		nsws = w->idx + 1;
	}
	sws[w->idx] = sw;
	pthread_mutex_unlock(&srv_lock);

	for (int i = 0; i < nlstns; i++) {
		struct lstn *l = &lstns[i];
		int fd = -1;
		bool first;

		/* worker 0 takes the socket bound first, worker k the k-th extra
		 * one: every bound socket has its accepter */
		pthread_mutex_lock(&srv_lock);
		first = w->idx == 0 && !l->fd_taken;
		if (first)
			l->fd_taken = true;
		if (!first && w->idx >= 1 && w->idx - 1 < l->nextra && l->extra[w->idx - 1] >= 0) {
			fd = l->extra[w->idx - 1];
			l->extra[w->idx - 1] = -1;
		}
		pthread_mutex_unlock(&srv_lock);
		if (first)
			fd = l->fd;
		else if (fd < 0 && (fd = make_socket(&l->ss, l->sslen, true, e, sizeof(e))) < 0) {
			/* e.g. privileges dropped since the first bind: share its socket */
			log_debug("event=reuseport-fallback listener=%s worker=%d err=\"%s\"",
			    l->name, w->idx, e);
			fd = fcntl(l->fd, F_DUPFD_CLOEXEC, 0);
		}
		if (fd < 0) {
			log_warn("event=listen-failed listener=%s worker=%d", l->name, w->idx);
			continue;
		}
		sw->aa[i].sw = sw;
		sw->aa[i].lidx = i;
		sw->evl[i] = evconnlistener_new(w->base, accept_cb, &sw->aa[i],
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE_PORT, -1, fd);
		if (!sw->evl[i]) {
			log_warnx("event=listen-failed listener=%s worker=%d msg=\"evconnlistener_new\"",
			    l->name, w->idx);
			if (!first)
				close(fd);
		} else if (first)
			l->fd = -1;         /* owned by the evconnlistener now */
	}
}

static void
stop_on_worker(void *arg)
{
	struct worker *w = arg;
	struct srv_worker *sw = sw_of(w);
	struct session *s, *next;

	atomic_store(&srv_stopping, true);
	if (!sw || sw->stopping)
		return;
	sw->stopping = true;
	for (int i = 0; i < sw->nevl; i++)
		if (sw->evl[i]) {
			evconnlistener_free(sw->evl[i]);
			sw->evl[i] = NULL;
		}
	for (s = TAILQ_FIRST(&sw->sessions); s; s = next) {
		next = TAILQ_NEXT(s, link);
		if (s->pending || s->dead || s->closing)
			continue;
		if (s->state == SS_HELO || s->state == SS_READY) {
			reply(s, "421 4.3.2 %s Service shutting down", hostname(s));
			session_close(s);
			session_maybe_free(s);
		}
	}
}

void
smtp_server_stop(struct worker *w)
{
	atomic_store(&srv_stopping, true);
	if (!w)
		return;
	if (worker_self() == w)
		stop_on_worker(w);
	else
		worker_post(w, stop_on_worker, w);
}

int
smtp_server_sessions(struct worker *w)
{
	struct srv_worker *sw = sw_of(w);

	return sw ? atomic_load(&sw->nsessions) : 0;
}

int
smtp_server_reload(const struct config *c, char *err, size_t errlen)
{
	struct lcfg **nf = xcalloc((size_t)(nlstns ? nlstns : 1), sizeof(*nf));
	int rc = 0;

	/* build everything first: a bad certificate changes nothing */
	for (int i = 0; i < nlstns; i++) {
		const struct listener_conf *lc = NULL;
		for (int k = 0; k < c->nlisteners; k++)
			if (strcmp(c->listeners[k].name, lstns[i].name) == 0)
				lc = &c->listeners[k];
		if (!lc) {
			log_warnx("event=reload-listener listener=%s msg=\"removed from the config; "
			    "still listening until restart\"", lstns[i].name);
			continue;
		}
		if ((nf[i] = lcfg_new(c, lc, err, errlen)) == NULL) {
			rc = -1;
			break;
		}
	}
	if (rc < 0) {
		for (int i = 0; i < nlstns; i++)
			if (nf[i])
				lcfg_free(nf[i]);
		free(nf);
		return -1;
	}
	for (int i = 0; i < nlstns; i++)
		if (nf[i]) {
			lcfg_keep(nf[i]);
			atomic_store(&lstns[i].cur, nf[i]);
		}
	for (int k = 0; k < c->nlisteners; k++) {
		bool found = false;
		for (int i = 0; i < nlstns; i++)
			found |= strcmp(c->listeners[k].name, lstns[i].name) == 0;
		if (!found)
			log_warnx("event=reload-listener listener=%s msg=\"new listeners need a restart\"",
			    c->listeners[k].name);
	}
	free(nf);
	return 0;
}

void
smtp_server_free(void)
{
	struct lcfg *f, *next;

	pthread_mutex_lock(&srv_lock);
	for (int i = 0; i < nsws; i++) {
		struct srv_worker *sw = sws[i];
		if (!sw)
			continue;
		for (int k = 0; k < sw->nevl; k++)
			if (sw->evl[k])
				evconnlistener_free(sw->evl[k]);
		free(sw->evl);
		free(sw->aa);
		free(sw);
	}
	free(sws);
	sws = NULL;
	nsws = 0;
	for (int i = 0; i < nlstns; i++) {
		if (lstns[i].fd >= 0)
			close(lstns[i].fd);
		for (int k = 0; k < lstns[i].nextra; k++)
			if (lstns[i].extra[k] >= 0)
				close(lstns[i].extra[k]);
		free(lstns[i].name);
	}
	free(lstns);
	lstns = NULL;
	nlstns = 0;
	for (f = all_lcfgs; f; f = next) {
		next = f->next;
		lcfg_free(f);
	}
	all_lcfgs = NULL;
	for (int b = 0; b < IPTAB_SIZE; b++) {
		struct ipcount *e, *en;
		for (e = iptab[b]; e; e = en) {
			en = e->next;
			free(e);
		}
		iptab[b] = NULL;
	}
	pthread_mutex_unlock(&srv_lock);
}
