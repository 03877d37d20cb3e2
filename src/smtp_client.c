/*
 * smtp_client: one outbound SMTP connection, an explicit state machine.
 *
 * state_enter() enters a state and sends what that state sends;
 * handle_reply() handles a complete reply in the current state. Every
 * transition is one log_trace line. I/O is a bufferevent (a socket, then
 * an OpenSSL filter over it after STARTTLS); the protocol code only sees
 * complete reply lines and connection events.
 *
 * Targets: the hosts in the order given, each host's addresses in order
 * (addresses of another family than the bound source are skipped), at most
 * MAX_TARGETS connection attempts per connection object. A connect failure,
 * a timeout, a non-2xx greeting (4xx and 5xx alike: RFC 5321 5.1 says try
 * the next MX), an EHLO/HELO failure, a missing required STARTTLS or a
 * failed AUTH moves to the next target; when none is left the owner's
 * closed() gets the last failure with greeted = false.
 *
 * TLS: opportunistic mode uses STARTTLS when offered, without verification;
 * when the handshake fails it reconnects to the same address once without
 * STARTTLS (as Postfix does), because a broken TLS stack on the far side
 * should not stop mail that may go in plaintext. `tls required` needs
 * STARTTLS and a handshake (4.7.4 when not offered, 4.7.5 when the
 * handshake fails; no verification); `tls verify` also checks the chain and
 * that the certificate names the MX host (or the IP of a literal route).
 *
 * Transactions use separate send and receive cursors over the commands
 * [MAIL, RCPT 1..n, DATA]: with PIPELINING the sender runs ahead of the
 * receiver by the whole envelope (bounded by PIPE_MAX_BYTES of unsent
 * output, past which it waits for replies to drain); without it the window
 * is one command. The sender always stops after DATA (the body goes only
 * after 354) and after the final dot (the next MAIL or QUIT goes only after
 * its reply).
 *
 * Every recipient of a transaction leaves with a reply: its RCPT reply when
 * refused, the reply to the final dot (or DATA's refusal) when accepted,
 * MAIL's reply when MAIL was refused, a synthesized 451 4.4.2 when the
 * connection failed under it, or a 421 the server sent mid-way.
 *
 * Writing (plain socket): commands collect in the bufferevent's output and
 * out_flush() writes them straight to the socket when the outermost handler
 * returns (leave()), with libevent's write event off; only what the socket
 * does not take arms it, and write_cb disarms it once the output is out. So
 * a pipelined envelope costs one writev and no epoll_ctl. A body up to
 * BODY_COPY_MAX is read into the output with its final dot and goes in the
 * same writev (one segment on the wire, no sendfile + a separate ".\r\n");
 * larger ones are sent from the spool file (sendfile, or mmap under TLS).
 * Under TLS the filter bufferevent writes by itself.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "queue.h"
#include "smtp_client.h"
#include "smtp_parse.h"
#include "spool.h"
#include "tls.h"
#include "util.h"
#include "worker.h"

#define MAX_TARGETS      10         /* connection attempts per smtp_conn */
#define PIPE_MAX_BYTES   (64 * 1024)
#define MAX_REPLY_LINE   4096       /* longer is a protocol error */
#define QUIT_TIMEOUT_MS  10000
#define BODY_COPY_MAX    (128 * 1024)   /* bodies up to this go through memory */

enum sc_state {
	SC_INIT,        /* not connected yet */
	SC_CONNECT,     /* TCP connect in progress */
	SC_GREETING,    /* waiting for 220 */
	SC_EHLO,
	SC_HELO,
	SC_STARTTLS,
	SC_TLS,         /* TLS handshake in progress */
	SC_AUTH,
	SC_READY,       /* between transactions, asking the owner */
	SC_IDLE,        /* no work: waiting for kick or idle timeout */
	SC_MAIL,        /* receive cursor on MAIL's reply */
	SC_RCPT,        /* ... on a RCPT reply */
	SC_DATA,        /* ... on DATA's reply */
	SC_DOT,         /* body sent (or being sent), waiting for the final reply */
	SC_RSET,
	SC_QUIT,
	SC_CLOSED,
};

static const char *const state_names[] = {
	"INIT", "CONNECT", "GREETING", "EHLO", "HELO", "STARTTLS", "TLS", "AUTH",
	"READY", "IDLE", "MAIL", "RCPT", "DATA", "DOT", "RSET", "QUIT", "CLOSED",
};

struct smtp_conn {
	struct event_base *base;
	const struct smtp_conn_ops *ops;
	void *owner;
	char sid[24];
	enum sc_state state;

	/* parameters, copied */
	struct dns_host *hosts;
	int nhosts;
	uint16_t port;
	char *source_addr, *ehlo_name, *auth_user, *auth_pass, *log_id;
	struct sockaddr_storage source_sa;
	bool has_source;
	enum tls_mode tls_mode;
	struct site_limits lim;

	/* target cursor */
	int host_i, addr_i;             /* current target; host_i -1 before the first */
	int attempts;
	bool plain_retry;               /* reconnect to this target without STARTTLS */
	bool no_starttls;               /* this session does not try STARTTLS */
	char mx_addr[INET6_ADDRSTRLEN];
	struct smtp_reply last_err;

	/* I/O */
	struct bufferevent *bev;
	SSL *ssl;                       /* owned by bev once the filter exists */
	bool tls_on;
	char tls_desc[128];
	struct event *tmo;
	struct event *defer;            /* first connect, outside smtp_conn_open */

	/* reply reader */
	struct smtp_reply reply;
	bool reply_first;
	struct smtp_ehlo ehlo_tmp, ext;

	/* transaction */
	struct txn *txn;
	int snd, rcv, ncmd;             /* cursors over [MAIL, RCPT.., DATA] */
	bool mail_ok;
	int accepted;
	struct smtp_reply mail_reply;
	int body_fd;
	bool body_pending;              /* body still being written */
	bool bogus_354;                 /* 354 with nobody accepted: "." only */
	bool need_rset;
	int ntxn;

	/* owner requests and reentrancy */
	bool greeted;                   /* reached READY once */
	bool quit_wanted;
	bool kicked;
	int in_cb;                      /* inside an owner callback */
	int depth;                      /* inside our handlers */
	bool dead;                      /* closed: freed when depth drops to 0 */
	int64_t connected_ms;
};

static atomic_ulong conn_seq;

static pthread_mutex_t tls_lock = PTHREAD_MUTEX_INITIALIZER;
static SSL_CTX *ctx_plain, *ctx_verify;

static void state_enter(struct smtp_conn *c, enum sc_state st);
static void out_flush(struct smtp_conn *c);
static void try_targets(struct smtp_conn *c);
static void conn_close(struct smtp_conn *c, const struct smtp_reply *why);
static void ask_next(struct smtp_conn *c);

static const char *
smtp_client_strstate(enum sc_state s)
{
	return s < ARRAY_SIZE(state_names) ? state_names[s] : "?";
}

/* ---- small helpers ---- */

static const char *
mx_name(const struct smtp_conn *c)
{
	return c->host_i >= 0 && c->host_i < c->nhosts ? c->hosts[c->host_i].name : "";
}

/* A reply as text fit for a quoted log value. */
static const char *
reply_log(const struct smtp_reply *r, char *buf, size_t len)
{
	smtp_reply_fmt(r, buf, len);
	for (char *p = buf; *p; p++)
		if (*p == '"')
			*p = '\'';
	return buf;
}

static int64_t
lim_ms(int64_t v, int64_t dflt)
{
	return v > 0 ? v : dflt;
}

static void
arm(struct smtp_conn *c, int64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000) };

	evtimer_add(c->tmo, &tv);
}

static void
send_line(struct smtp_conn *c, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	va_list ap;

	va_start(ap, fmt);
	if (log_enabled(LOG_TRACE)) {
		char buf[600];
		va_list aq;

		va_copy(aq, ap);
		vsnprintf(buf, sizeof(buf), fmt, aq);
		va_end(aq);
		if (str_iprefix(buf, "AUTH "))
			snprintf(buf, sizeof(buf), "AUTH PLAIN ********");
		log_trace("event=smtp_send sid=%s line=\"%s\"", c->sid, buf);
	}
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

/* Handlers nest (owner callbacks may call back into us): free at the end. */
static void
conn_destroy(struct smtp_conn *c)
{
	if (c->bev)
		bufferevent_free(c->bev);
	if (c->body_fd >= 0)
		close(c->body_fd);
	event_free(c->tmo);
	event_free(c->defer);
	free(c->hosts);
	free(c->source_addr);
	free(c->ehlo_name);
	free(c->auth_user);
	free(c->auth_pass);
	free(c->log_id);
	free(c);
}

static void
enter(struct smtp_conn *c)
{
	c->depth++;
}

/* The outermost handler returns: write what it queued, or free. */
static void
leave(struct smtp_conn *c)
{
	if (--c->depth > 0)
		return;
	if (c->dead)
		conn_destroy(c);
	else
		out_flush(c);
}

static void
io_teardown(struct smtp_conn *c)
{
	if (c->bev) {
		bufferevent_free(c->bev);       /* frees the SSL with the filter */
		c->bev = NULL;
	} else if (c->ssl)
		SSL_free(c->ssl);
	c->ssl = NULL;
	c->tls_on = false;
	evtimer_del(c->tmo);
}

/* ---- TLS contexts ---- */

int
smtp_client_tls_init(char *err, size_t errlen)
{
	SSL_CTX *p, *v;

	if ((p = tls_client_ctx(false, err, errlen)) == NULL)
		return -1;
	if ((v = tls_client_ctx(true, err, errlen)) == NULL) {
		SSL_CTX_free(p);
		return -1;
	}
	pthread_mutex_lock(&tls_lock);
	if (ctx_plain)
		SSL_CTX_free(ctx_plain);
	if (ctx_verify)
		SSL_CTX_free(ctx_verify);
	ctx_plain = p;
	ctx_verify = v;
	pthread_mutex_unlock(&tls_lock);
	return 0;
}

/* An SSL for this connection, or NULL with err set. */
static SSL *
tls_new(struct smtp_conn *c, char *err, size_t errlen)
{
	bool verify = c->tls_mode == TLS_VERIFY;
	const char *name = mx_name(c);
	unsigned char tmp[16];
	bool is_ip;
	SSL *ssl = NULL;

	pthread_mutex_lock(&tls_lock);
	if (!ctx_plain) {
		pthread_mutex_unlock(&tls_lock);
		if (smtp_client_tls_init(err, errlen) < 0)
			return NULL;
		pthread_mutex_lock(&tls_lock);
	}
	ssl = SSL_new(verify ? ctx_verify : ctx_plain);
	pthread_mutex_unlock(&tls_lock);
	if (!ssl) {
		snprintf(err, errlen, "SSL_new: %s", tls_error_string());
		return NULL;
	}
	is_ip = inet_pton(AF_INET, name, tmp) == 1 || inet_pton(AF_INET6, name, tmp) == 1;
	if (!is_ip && name[0] != '[')
		SSL_set_tlsext_host_name(ssl, name);
	if (verify) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
		int ok;

		if (is_ip)
			ok = X509_VERIFY_PARAM_set1_ip_asc(vp, name);
		else if (name[0] == '[')
			ok = X509_VERIFY_PARAM_set1_ip_asc(vp, c->mx_addr);
		else {
			X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			ok = SSL_set1_host(ssl, name);
		}
		if (ok != 1) {
			snprintf(err, errlen, "cannot set the expected name %.100s", name);
			SSL_free(ssl);
			return NULL;
		}
		SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
	}
	return ssl;
}

/* ---- targets ---- */

/* Advance to the next usable address; false when none is left. */
static bool
next_target(struct smtp_conn *c)
{
	if (c->attempts >= MAX_TARGETS)
		return false;
	for (;;) {
		if (c->host_i < 0) {
			c->host_i = 0;
			c->addr_i = 0;
		} else
			c->addr_i++;
		while (c->host_i < c->nhosts && c->addr_i >= c->hosts[c->host_i].naddrs) {
			c->host_i++;
			c->addr_i = 0;
		}
		if (c->host_i >= c->nhosts)
			return false;
		if (!c->has_source ||
		    c->hosts[c->host_i].addrs[c->addr_i].ss_family == c->source_sa.ss_family)
			return true;
	}
}

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);

/* Start a TCP connection to the current target. 0, or -1 with last_err set. */
static int
start_connect(struct smtp_conn *c)
{
	struct sockaddr_storage sa = c->hosts[c->host_i].addrs[c->addr_i];
	socklen_t salen;
	int fd;

	c->attempts++;
	if (sa.ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa;
		s6->sin6_port = htons(c->port);
		salen = sizeof(*s6);
		inet_ntop(AF_INET6, &s6->sin6_addr, c->mx_addr, sizeof(c->mx_addr));
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&sa;
		s4->sin_port = htons(c->port);
		salen = sizeof(*s4);
		inet_ntop(AF_INET, &s4->sin_addr, c->mx_addr, sizeof(c->mx_addr));
	}
	fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		smtp_reply_set(&c->last_err, 451, "4.4.0", "socket: %s", strerror(errno));
		return -1;
	}
	/* commands and the end of the body go out as soon as they are written:
	 * Nagle would hold ".\r\n" behind the peer's delayed ACK (40 ms) */
	int nodelay = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof(nodelay));
	if (c->has_source) {
		int one = 1;
		socklen_t sl = c->source_sa.ss_family == AF_INET6 ?
		    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);

#ifdef IP_BIND_ADDRESS_NO_PORT
		/* the port is picked at connect: many sources x many MXs share ports */
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
#endif
		if (bind(fd, (struct sockaddr *)&c->source_sa, sl) < 0) {
			smtp_reply_set(&c->last_err, 451, "4.4.0", "bind to source %s: %s",
			    c->source_addr, strerror(errno));
			close(fd);
			return -1;
		}
	}
	c->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		close(fd);
		smtp_reply_set(&c->last_err, 451, "4.3.0", "cannot create a connection buffer");
		return -1;
	}
	bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
	/* writing is out_flush's (the connect is watched all the same) */
	bufferevent_disable(c->bev, EV_WRITE);
	bufferevent_enable(c->bev, EV_READ);
	state_enter(c, SC_CONNECT);
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&sa, (int)salen) < 0) {
		smtp_reply_set(&c->last_err, 451, "4.4.1", "connect to %s[%s]:%u: %s",
		    mx_name(c), c->mx_addr, c->port, strerror(errno));
		io_teardown(c);
		return -1;
	}
	return 0;
}

/* Connect to the current target or the ones after it, or give up. */
static void
try_targets(struct smtp_conn *c)
{
	for (;;) {
		if (c->quit_wanted) {
			conn_close(c, c->last_err.code ? &c->last_err : NULL);
			return;
		}
		if (c->plain_retry) {
			/* same target again, without STARTTLS */
			c->plain_retry = false;
			c->no_starttls = true;
		} else {
			c->no_starttls = false;
			if (!next_target(c)) {
				if (c->last_err.code == 0)
					smtp_reply_set(&c->last_err, 451, "4.4.4",
					    "no usable address for %s", c->log_id);
				conn_close(c, &c->last_err);
				return;
			}
		}
		if (start_connect(c) == 0)
			return;
		log_info("event=connect_failed sid=%s site=%s mx=%s ip=%s reply=\"%d %s %s\"",
		    c->sid, c->log_id, mx_name(c), c->mx_addr, c->last_err.code,
		    c->last_err.enh, c->last_err.text);
	}
}

/* The current target failed before the session was usable: next one. */
static void
target_fail(struct smtp_conn *c, const struct smtp_reply *why)
{
	char buf[1200];

	c->last_err = *why;
	log_info("event=connect_failed sid=%s site=%s mx=%s ip=%s state=%s reply=\"%s\"%s",
	    c->sid, c->log_id, mx_name(c), c->mx_addr, smtp_client_strstate(c->state),
	    reply_log(why, buf, sizeof(buf)), c->plain_retry ? " retry=plaintext" : "");
	io_teardown(c);
	c->state = SC_INIT;
	try_targets(c);
}

/* ---- transactions ---- */

static void
txn_fill(struct smtp_conn *c, const struct smtp_reply *why, bool accepted_too)
{
	struct txn *t = c->txn;

	for (int i = 0; i < t->nrcpt; i++) {
		struct smtp_reply *r = &t->rcpt[i].reply;
		int cls = r->code ? smtp_reply_class(r) : 0;

		if (r->code == 0 && !c->mail_ok && c->mail_reply.code)
			*r = c->mail_reply;
		else if (r->code == 0 || (accepted_too && cls == 2))
			*r = *why;
	}
}

/* Every recipient has its reply: give the transaction back. */
static void
txn_end(struct smtp_conn *c, bool go_on)
{
	struct txn *t = c->txn;
	int ok = 0;
	char buf[1200];

	if (c->body_fd >= 0) {
		close(c->body_fd);
		c->body_fd = -1;
	}
	for (int i = 0; i < t->nrcpt; i++) {
		if (t->rcpt[i].reply.code == 0)
			smtp_reply_set(&t->rcpt[i].reply, 451, "4.3.0", "no reply recorded");
		if (smtp_reply_class(&t->rcpt[i].reply) == 2)
			ok++;
	}
	log_info("event=txn sid=%s site=%s id=%s mx=%s ip=%s rcpts=%d delivered=%d reply=\"%s\"",
	    c->sid, c->log_id, t->msg->sm.id, mx_name(c), c->mx_addr, t->nrcpt, ok,
	    t->nrcpt ? reply_log(&t->rcpt[t->nrcpt - 1].reply, buf, sizeof(buf)) : "");
	c->txn = NULL;
	c->state = SC_READY;
	evtimer_del(c->tmo);
	c->in_cb++;
	c->ops->txn_done(c->owner, c, t);
	c->in_cb--;
	if (go_on && !c->dead)
		ask_next(c);
}

/* Give every recipient without a final answer `why` and close. */
static void
conn_fail(struct smtp_conn *c, const struct smtp_reply *why)
{
	if (c->dead)
		return;
	if (c->state < SC_READY) {
		target_fail(c, why);
		return;
	}
	if (c->txn) {
		txn_fill(c, why, true);
		txn_end(c, false);
		if (c->dead)
			return;
	}
	conn_close(c, why);
}

static int64_t
reply_timeout(const struct smtp_conn *c, int cmd)
{
	if (cmd == 0)
		return lim_ms(c->lim.mail_timeout, 300000);
	if (cmd <= c->txn->nrcpt)
		return lim_ms(c->lim.rcpt_timeout, 300000);
	return lim_ms(c->lim.data_timeout, 120000);
}

static void
send_cmd(struct smtp_conn *c, int i)
{
	struct txn *t = c->txn;
	const struct spool_msg *sm = &t->msg->sm;
	bool dsn = c->ext.ext & EXT_DSN;

	if (i == 0) {
		char params[512] = "";
		size_t n = 0;

		if (c->ext.ext & EXT_SIZE)
			n += (size_t)snprintf(params + n, sizeof(params) - n, " SIZE=%zu", sm->body_len);
		if ((sm->flags & MF_8BITMIME) && (c->ext.ext & EXT_8BITMIME) && n < sizeof(params))
			n += (size_t)snprintf(params + n, sizeof(params) - n, " BODY=8BITMIME");
		if ((sm->flags & MF_SMTPUTF8) && n < sizeof(params))
			n += (size_t)snprintf(params + n, sizeof(params) - n, " SMTPUTF8");
		if (dsn && (sm->flags & MF_RET_HDRS) && n < sizeof(params))
			n += (size_t)snprintf(params + n, sizeof(params) - n, " RET=HDRS");
		if (dsn && sm->envid && n < sizeof(params)) {
			char *x = xtext_encode(sm->envid);
			n += (size_t)snprintf(params + n, sizeof(params) - n, " ENVID=%s", x);
			free(x);
		}
		send_line(c, "MAIL FROM:<%s>%s", t->sender ? t->sender : "", params);
	} else if (i <= t->nrcpt) {
		const struct spool_rcpt *sr = &sm->rcpts[t->rcpt[i - 1].r->idx];
		char params[1600] = "";
		size_t n = 0;

		if (dsn && sr->notify) {
			n += (size_t)snprintf(params, sizeof(params), " NOTIFY=%s%s%s%s",
			    (sr->notify & NOTIFY_NEVER) ? "NEVER" : "",
			    (sr->notify & NOTIFY_SUCCESS) ? "SUCCESS" : "",
			    (sr->notify & NOTIFY_FAILURE) ?
			    ((sr->notify & NOTIFY_SUCCESS) ? ",FAILURE" : "FAILURE") : "",
			    (sr->notify & NOTIFY_DELAY) ?
			    ((sr->notify & (NOTIFY_SUCCESS | NOTIFY_FAILURE)) ? ",DELAY" : "DELAY") : "");
		}
		if (dsn && sr->orcpt && strchr(sr->orcpt, ';') && n < sizeof(params)) {
			const char *semi = strchr(sr->orcpt, ';');
			char *x = xtext_encode(semi + 1);
			snprintf(params + n, sizeof(params) - n, " ORCPT=%.*s;%s",
			    (int)(semi - sr->orcpt), sr->orcpt, x);
			free(x);
		}
		send_line(c, "RCPT TO:<%s>%s", sr->addr, params);
	} else
		send_line(c, "DATA");
}

/* Send while the window allows (see the file comment). */
static void
pump_send(struct smtp_conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	int window = (c->ext.ext & EXT_PIPELINING) ? c->ncmd : 1;

	while (c->snd < c->ncmd && c->snd - c->rcv < window &&
	    evbuffer_get_length(out) < PIPE_MAX_BYTES)
		send_cmd(c, c->snd++);
	arm(c, reply_timeout(c, c->rcv));
}

/* Start t. True when it finished at once (refused without a word to the
 * server): the caller asks for the next one, without recursing. */
static bool
txn_begin(struct smtp_conn *c, struct txn *t)
{
	const struct spool_msg *sm = &t->msg->sm;
	struct smtp_reply why;

	c->txn = t;
	c->ntxn++;
	c->snd = c->rcv = 0;
	c->ncmd = t->nrcpt + 2;
	c->mail_ok = false;
	c->accepted = 0;
	c->bogus_354 = false;
	c->body_pending = false;
	memset(&c->mail_reply, 0, sizeof(c->mail_reply));
	for (int i = 0; i < t->nrcpt; i++)
		memset(&t->rcpt[i].reply, 0, sizeof(t->rcpt[i].reply));

	/* refusals decided here, without a word to the server */
	if (t->nrcpt == 0) {
		txn_end(c, false);
		return true;
	}
	if ((sm->flags & MF_SMTPUTF8) && !(c->ext.ext & EXT_SMTPUTF8)) {
		smtp_reply_set(&why, 553, "5.6.7",
		    "message needs SMTPUTF8 but %s does not support it", mx_name(c));
		txn_fill(c, &why, true);
		txn_end(c, false);
		return true;
	}
	if ((c->ext.ext & EXT_SIZE) && c->ext.size > 0 && sm->body_len > c->ext.size) {
		smtp_reply_set(&why, 552, "5.3.4",
		    "message size %zu exceeds the limit of %llu of %s", sm->body_len,
		    (unsigned long long)c->ext.size, mx_name(c));
		txn_fill(c, &why, true);
		txn_end(c, false);
		return true;
	}
	c->body_fd = spool_open(sm);
	if (c->body_fd < 0) {
		smtp_reply_set(&why, 451, "4.3.0", "cannot read the queued message: %s",
		    strerror(errno));
		txn_fill(c, &why, true);
		txn_end(c, false);
		return true;
	}
	state_enter(c, SC_MAIL);
	return false;
}

/* len bytes at off, whatever pread(2) hands out per call; 0 or -1. */
static int
pread_full(int fd, char *buf, size_t len, off_t off)
{
	while (len > 0) {
		ssize_t n = pread(fd, buf, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/* The body and its final dot, from memory: one buffer, one write. */
static int
add_body_copy(struct smtp_conn *c, struct evbuffer *out)
{
	const struct spool_msg *sm = &c->txn->msg->sm;
	struct evbuffer_iovec v;
	char *p;
	size_t n = sm->body_len;

	if (evbuffer_reserve_space(out, (ev_ssize_t)(n + 5), &v, 1) < 1)
		return -1;
	p = v.iov_base;
	if (pread_full(c->body_fd, p, n, sm->body_off) < 0)
		return -1;                  /* nothing committed: the output is as it was */
	if (n > 0 && (n < 2 || p[n - 2] != '\r' || p[n - 1] != '\n')) {
		memcpy(p + n, "\r\n", 2);
		n += 2;
	}
	memcpy(p + n, ".\r\n", 3);
	v.iov_len = n + 3;
	return evbuffer_commit_space(out, &v, 1);
}

/* The body straight from the spool file, then the final dot. */
static int
add_body_file(struct smtp_conn *c, struct evbuffer *out)
{
	const struct spool_msg *sm = &c->txn->msg->sm;
	struct evbuffer_file_segment *seg;
	char tail[2];
	bool crlf;
	int rc;

	if (pread_full(c->body_fd, tail, 2, sm->body_off + (off_t)sm->body_len - 2) < 0)
		return -1;
	crlf = tail[0] == '\r' && tail[1] == '\n';
	/* plaintext: sendfile(2); TLS must see the bytes: mmap (or read) */
	seg = evbuffer_file_segment_new(c->body_fd, sm->body_off, (ev_off_t)sm->body_len,
	    EVBUF_FS_CLOSE_ON_FREE | (c->tls_on ? EVBUF_FS_DISABLE_SENDFILE : 0));
	if (!seg)
		return -1;
	c->body_fd = -1;                    /* the segment owns (and closes) it now */
	rc = evbuffer_add_file_segment(out, seg, 0, (ev_off_t)sm->body_len);
	evbuffer_file_segment_free(seg);
	if (rc < 0)
		return -1;
	if (!crlf)
		evbuffer_add(out, "\r\n", 2);
	evbuffer_add(out, ".\r\n", 3);
	return 0;
}

static void
send_body(struct smtp_conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	const struct spool_msg *sm = &c->txn->msg->sm;
	struct timeval tv;
	int64_t blk = lim_ms(c->lim.data_block_timeout, 180000);
	int rc;

	rc = sm->body_len <= BODY_COPY_MAX ? add_body_copy(c, out) : add_body_file(c, out);
	if (c->body_fd >= 0) {
		close(c->body_fd);
		c->body_fd = -1;
	}
	if (rc < 0) {
		struct smtp_reply why;
		smtp_reply_set(&why, 451, "4.3.0", "cannot read the queued message");
		conn_fail(c, &why);
		return;
	}
	c->body_pending = true;
	/* no write progress for data_block_timeout: the bufferevent says so */
	tv.tv_sec = (time_t)(blk / 1000);
	tv.tv_usec = (suseconds_t)((blk % 1000) * 1000);
	bufferevent_set_timeouts(c->bev, NULL, &tv);
	evtimer_del(c->tmo);
}

/* Reply number c->rcv of the envelope. */
static void
envelope_reply(struct smtp_conn *c, const struct smtp_reply *r)
{
	struct txn *t = c->txn;
	int i = c->rcv++;
	bool pipelining = c->ext.ext & EXT_PIPELINING;

	if (r->code == 421) {
		conn_fail(c, r);
		return;
	}
	if (i == 0) {
		if (smtp_reply_class(r) == 2)
			c->mail_ok = true;
		else {
			c->mail_reply = *r;
			if (!pipelining) {
				txn_fill(c, r, false);
				txn_end(c, true);
				return;
			}
		}
	} else if (i <= t->nrcpt) {
		if (c->mail_ok) {
			t->rcpt[i - 1].reply = *r;
			if (smtp_reply_class(r) == 2)
				c->accepted++;
		}
		if (!pipelining && i == t->nrcpt && c->accepted == 0) {
			/* nobody accepted: no DATA; the server holds a transaction */
			c->need_rset = true;
			txn_end(c, true);
			return;
		}
	} else {
		if (r->code == 354) {
			c->bogus_354 = !(c->mail_ok && c->accepted > 0);
			state_enter(c, SC_DOT);
			return;
		}
		for (int k = 0; k < t->nrcpt; k++)
			if (t->rcpt[k].reply.code && smtp_reply_class(&t->rcpt[k].reply) == 2)
				t->rcpt[k].reply = *r;
		txn_fill(c, r, false);
		c->need_rset = c->mail_ok;
		txn_end(c, true);
		return;
	}
	if (c->rcv == c->ncmd - 1)
		state_enter(c, SC_DATA);
	else if (c->rcv >= 1 && c->state != SC_RCPT)
		state_enter(c, SC_RCPT);
	pump_send(c);
}

static void
dot_reply(struct smtp_conn *c, const struct smtp_reply *r)
{
	struct txn *t = c->txn;

	if (r->code == 421 && !c->bogus_354) {
		conn_fail(c, r);
		return;
	}
	if (c->bogus_354) {
		/* we sent an empty message to end a DATA nobody should get */
		struct smtp_reply why;
		smtp_reply_set(&why, 554, "5.5.0", "no valid recipients");
		txn_fill(c, &why, false);
	} else {
		for (int k = 0; k < t->nrcpt; k++)
			if (smtp_reply_class(&t->rcpt[k].reply) == 2)
				t->rcpt[k].reply = *r;
	}
	c->need_rset = false;
	txn_end(c, r->code != 421);
	if (r->code == 421 && !c->dead)
		conn_close(c, r);
}

/* ---- the session ---- */

static void
ready(struct smtp_conn *c)
{
	if (!c->greeted) {
		c->greeted = true;
		c->connected_ms = mono_ms();
		log_info("event=connected sid=%s site=%s mx=%s ip=%s port=%u source=%s tls=%s%s%s "
		    "pipelining=%s size=%llu",
		    c->sid, c->log_id, mx_name(c), c->mx_addr, c->port,
		    c->source_addr ? c->source_addr : "any", c->tls_on ? "yes" : "no",
		    c->tls_on ? " tls_version=" : "", c->tls_on ? c->tls_desc : "",
		    (c->ext.ext & EXT_PIPELINING) ? "yes" : "no",
		    (unsigned long long)c->ext.size);
	}
	ask_next(c);
}

static void
after_ehlo(struct smtp_conn *c)
{
	struct smtp_reply why;

	if (!c->tls_on && c->tls_mode != TLS_NONE && !c->no_starttls &&
	    (c->ext.ext & EXT_STARTTLS)) {
		state_enter(c, SC_STARTTLS);
		return;
	}
	if (!c->tls_on && (c->tls_mode == TLS_REQUIRED || c->tls_mode == TLS_VERIFY)) {
		smtp_reply_set(&why, 451, "4.7.4", "TLS required but not offered by %s[%s]",
		    mx_name(c), c->mx_addr);
		target_fail(c, &why);
		return;
	}
	if (c->auth_user) {
		if (!(c->ext.ext & EXT_AUTH_PLAIN)) {
			smtp_reply_set(&why, 451, "4.7.0", "%s[%s] does not offer AUTH PLAIN",
			    mx_name(c), c->mx_addr);
			target_fail(c, &why);
			return;
		}
		state_enter(c, SC_AUTH);
		return;
	}
	c->state = SC_READY;
	ready(c);
}

static void
start_tls(struct smtp_conn *c)
{
	char err[256];
	struct smtp_reply why;
	struct bufferevent *tb;
	SSL *ssl = tls_new(c, err, sizeof(err));

	if (!ssl) {
		smtp_reply_set(&why, 451, "4.7.5", "TLS setup: %s", err);
		c->plain_retry = c->tls_mode == TLS_OPPORTUNISTIC;
		target_fail(c, &why);
		return;
	}
	/* nothing the server sent before the handshake may count (RFC 3207 6) */
	evbuffer_drain(bufferevent_get_input(c->bev),
	    evbuffer_get_length(bufferevent_get_input(c->bev)));
	/* the filter writes through the socket bufferevent: libevent's job now */
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	tb = bufferevent_openssl_filter_new(c->base, c->bev, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (!tb) {
		SSL_free(ssl);
		smtp_reply_set(&why, 451, "4.7.5", "TLS setup failed");
		c->plain_retry = c->tls_mode == TLS_OPPORTUNISTIC;
		target_fail(c, &why);
		return;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(tb, 1);
	c->bev = tb;
	c->ssl = ssl;
	bufferevent_setcb(tb, read_cb, write_cb, event_cb, c);
	bufferevent_enable(tb, EV_READ | EV_WRITE);
	state_enter(c, SC_TLS);
}

static void
tls_failed(struct smtp_conn *c)
{
	struct smtp_reply why;
	char detail[256] = "";
	unsigned long e;
	long vr = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;

	while ((e = bufferevent_get_openssl_error(c->bev)) != 0)
		if (!detail[0])
			ERR_error_string_n(e, detail, sizeof(detail));
	if (c->tls_mode == TLS_VERIFY && vr != X509_V_OK)
		smtp_reply_set(&why, 451, "4.7.5", "certificate of %s[%s] not trusted: %s",
		    mx_name(c), c->mx_addr, X509_verify_cert_error_string(vr));
	else
		smtp_reply_set(&why, 451, "4.7.5", "TLS handshake with %s[%s] failed%s%s",
		    mx_name(c), c->mx_addr, detail[0] ? ": " : "", detail);
	c->plain_retry = c->tls_mode == TLS_OPPORTUNISTIC;
	target_fail(c, &why);
}

static void
tls_done(struct smtp_conn *c)
{
	c->tls_on = true;
	tls_describe(c->ssl, c->tls_desc, sizeof(c->tls_desc));
	for (char *p = c->tls_desc; *p; p++)
		if (*p == ' ')
			*p = '_';
	if (c->tls_mode == TLS_VERIFY && SSL_get_verify_result(c->ssl) != X509_V_OK) {
		tls_failed(c);
		return;
	}
	log_debug("event=tls sid=%s mx=%s ip=%s %s", c->sid, mx_name(c), c->mx_addr, c->tls_desc);
	state_enter(c, SC_EHLO);      /* RFC 3207: EHLO again, forget what we knew */
}

static void
send_auth(struct smtp_conn *c)
{
	size_t ul = strlen(c->auth_user), pl = c->auth_pass ? strlen(c->auth_pass) : 0;
	size_t n = ul + pl + 2;
	unsigned char *raw = xmalloc(n);
	char *b64 = xmalloc(4 * ((n + 2) / 3) + 1);

	raw[0] = '\0';
	memcpy(raw + 1, c->auth_user, ul);
	raw[1 + ul] = '\0';
	if (pl)
		memcpy(raw + 2 + ul, c->auth_pass, pl);
	EVP_EncodeBlock((unsigned char *)b64, raw, (int)n);
	send_line(c, "AUTH PLAIN %s", b64);
	OPENSSL_cleanse(raw, n);
	OPENSSL_cleanse(b64, strlen(b64));
	free(raw);
	free(b64);
}

static void
state_enter(struct smtp_conn *c, enum sc_state st)
{
	log_trace("event=smtp_state sid=%s from=%s to=%s", c->sid,
	    smtp_client_strstate(c->state), smtp_client_strstate(st));
	c->state = st;
	switch (st) {
	case SC_INIT:
	case SC_READY:
	case SC_CLOSED:
		break;
	case SC_CONNECT:
		c->reply_first = true;
		arm(c, lim_ms(c->lim.connect_timeout, 30000));
		break;
	case SC_GREETING:
		arm(c, lim_ms(c->lim.greeting_timeout, 300000));
		break;
	case SC_EHLO:
		memset(&c->ehlo_tmp, 0, sizeof(c->ehlo_tmp));
		memset(&c->ext, 0, sizeof(c->ext));
		send_line(c, "EHLO %s", c->ehlo_name);
		arm(c, lim_ms(c->lim.ehlo_timeout, 300000));
		break;
	case SC_HELO:
		send_line(c, "HELO %s", c->ehlo_name);
		arm(c, lim_ms(c->lim.ehlo_timeout, 300000));
		break;
	case SC_STARTTLS:
		send_line(c, "STARTTLS");
		arm(c, lim_ms(c->lim.ehlo_timeout, 300000));
		break;
	case SC_TLS:
		arm(c, lim_ms(c->lim.ehlo_timeout, 300000));
		break;
	case SC_AUTH:
		send_auth(c);
		arm(c, lim_ms(c->lim.ehlo_timeout, 300000));
		break;
	case SC_IDLE:
		arm(c, lim_ms(c->lim.idle_timeout, 5000));
		break;
	case SC_MAIL:
		pump_send(c);
		break;
	case SC_RCPT:
	case SC_DATA:
		break;          /* replies arrive; pump_send keeps sending */
	case SC_DOT:
		if (c->bogus_354) {
			send_line(c, ".");
			arm(c, lim_ms(c->lim.dot_timeout, 600000));
		} else
			send_body(c);
		break;
	case SC_RSET:
		send_line(c, "RSET");
		arm(c, lim_ms(c->lim.mail_timeout, 300000));
		break;
	case SC_QUIT:
		send_line(c, "QUIT");
		arm(c, MIN(lim_ms(c->lim.ehlo_timeout, QUIT_TIMEOUT_MS), QUIT_TIMEOUT_MS));
		break;
	}
}

/* Between transactions: quit, reset, or ask the owner for work. */
static void
ask_next(struct smtp_conn *c)
{
	for (;;) {
		struct txn *t = NULL;

		c->state = SC_READY;
		if (c->quit_wanted) {
			state_enter(c, SC_QUIT);
			return;
		}
		if (c->need_rset) {
			c->need_rset = false;
			state_enter(c, SC_RSET);
			return;
		}
		for (int round = 0; round < 3 && !t; round++) {
			c->kicked = false;
			c->in_cb++;
			t = c->ops->next_txn(c->owner, c);
			c->in_cb--;
			if (c->dead)
				return;
			if (!c->kicked || c->quit_wanted)
				break;
		}
		if (!t)
			break;
		if (!txn_begin(c, t) || c->dead)
			return;
	}
	if (c->quit_wanted) {
		state_enter(c, SC_QUIT);
		return;
	}
	state_enter(c, SC_IDLE);
}

static void
handle_reply(struct smtp_conn *c, const struct smtp_reply *r)
{
	char buf[1200];
	int cls = smtp_reply_class(r);

	log_trace("event=smtp_reply sid=%s state=%s reply=\"%s\"", c->sid,
	    smtp_client_strstate(c->state), reply_log(r, buf, sizeof(buf)));
	switch (c->state) {
	case SC_GREETING:
		if (cls == 2)
			state_enter(c, SC_EHLO);
		else
			target_fail(c, r);
		break;
	case SC_EHLO:
		if (cls == 2) {
			c->ext = c->ehlo_tmp;
			after_ehlo(c);
		} else if (cls == 5 && !c->tls_on && r->code != 421)
			state_enter(c, SC_HELO);
		else
			target_fail(c, r);
		break;
	case SC_HELO:
		if (cls == 2) {
			memset(&c->ext, 0, sizeof(c->ext));
			after_ehlo(c);
		} else
			target_fail(c, r);
		break;
	case SC_STARTTLS:
		if (r->code == 220)
			start_tls(c);
		else if (c->tls_mode == TLS_OPPORTUNISTIC && r->code != 421) {
			c->no_starttls = true;
			after_ehlo(c);
		} else
			target_fail(c, r);
		break;
	case SC_AUTH:
		if (r->code == 235) {
			c->state = SC_READY;
			ready(c);
		} else
			target_fail(c, r);
		break;
	case SC_MAIL:
	case SC_RCPT:
	case SC_DATA:
		envelope_reply(c, r);
		break;
	case SC_DOT:
		if (c->body_pending) {
			/* answered before the body was out: take it as final */
			c->body_pending = false;
			bufferevent_set_timeouts(c->bev, NULL, NULL);
		}
		dot_reply(c, r);
		break;
	case SC_RSET:
		if (r->code == 421)
			conn_close(c, r);
		else if (cls == 2)
			ask_next(c);
		else
			state_enter(c, SC_QUIT);
		break;
	case SC_QUIT:
		conn_close(c, NULL);
		break;
	case SC_IDLE:
	case SC_READY:
		if (r->code == 421)
			conn_close(c, r);
		else
			log_debug("event=smtp_unexpected sid=%s reply=\"%s\"", c->sid,
			    reply_log(r, buf, sizeof(buf)));
		break;
	case SC_INIT:
	case SC_CONNECT:
	case SC_TLS:
	case SC_CLOSED:
		break;
	}
}

static void
protocol_error(struct smtp_conn *c, const char *what)
{
	struct smtp_reply why;

	smtp_reply_set(&why, 451, "4.5.0", "%s from %s[%s] in state %s", what, mx_name(c),
	    c->mx_addr, smtp_client_strstate(c->state));
	if (c->state == SC_QUIT)
		conn_close(c, NULL);
	else
		conn_fail(c, &why);
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t len;

	enter(c);
	while (!c->dead && c->bev == bev && c->state != SC_TLS &&
	    (line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) != NULL) {
		int rc;

		if (c->state == SC_EHLO && !c->reply_first && len > 4)
			smtp_ehlo_line(&c->ehlo_tmp, line + 4);
		rc = smtp_reply_feed(&c->reply, line, len, c->reply_first);
		free(line);
		if (rc < 0) {
			c->reply_first = true;
			protocol_error(c, "malformed reply");
			break;
		}
		if (rc == 0) {
			c->reply_first = false;
			continue;
		}
		c->reply_first = true;
		{
			struct smtp_reply r = c->reply;
			handle_reply(c, &r);
		}
	}
	if (!c->dead && c->bev == bev && evbuffer_get_length(in) > MAX_REPLY_LINE)
		protocol_error(c, "reply line too long");
	leave(c);
}

/* The output is all written: after the body, the dot timeout starts. */
static void
out_drained(struct smtp_conn *c)
{
	if (c->state == SC_DOT && c->body_pending) {
		c->body_pending = false;
		bufferevent_set_timeouts(c->bev, NULL, NULL);
		arm(c, lim_ms(c->lim.dot_timeout, 600000));
	}
}

/*
 * Write the queued output (plain socket) while the write event is off: one
 * writev per batch (a sendfile segment takes a call of its own). What the
 * socket does not take arms the write event; an error too, and libevent
 * then reports it to event_cb like any other.
 */
static void
out_flush(struct smtp_conn *c)
{
	if (!c->bev || c->ssl || (bufferevent_get_enabled(c->bev) & EV_WRITE) ||
	    evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		return;
	if (!bev_write_now(c->bev, bufferevent_getfd(c->bev)))
		bufferevent_enable(c->bev, EV_WRITE);
	else
		out_drained(c);
}

/* libevent wrote the rest (it calls this at the low watermark, 0). */
static void
write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_conn *c = arg;

	if (bev != c->bev)
		return;
	if (!c->ssl)
		bufferevent_disable(bev, EV_WRITE);   /* out_flush writes directly again */
	out_drained(c);
}

static const char *
phase_name(const struct smtp_conn *c)
{
	switch (c->state) {
	case SC_MAIL: return "MAIL FROM";
	case SC_RCPT: return "RCPT TO";
	case SC_DATA: return "DATA";
	case SC_DOT: return c->body_pending ? "the message body" : "end of data";
	case SC_RSET: return "RSET";
	default: return smtp_client_strstate(c->state);
	}
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_conn *c = arg;
	struct smtp_reply why;
	int err = EVUTIL_SOCKET_ERROR();

	if (bev != c->bev)
		return;
	enter(c);
	if (what & BEV_EVENT_CONNECTED) {
		if (c->state == SC_CONNECT) {
			log_debug("event=tcp_connected sid=%s mx=%s ip=%s", c->sid, mx_name(c), c->mx_addr);
			state_enter(c, SC_GREETING);
		} else if (c->state == SC_TLS)
			tls_done(c);
		leave(c);
		return;
	}
	if (c->state == SC_TLS && (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF))) {
		tls_failed(c);
		leave(c);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		smtp_reply_set(&why, 451, "4.4.2", "timeout sending the message body to %s[%s]",
		    mx_name(c), c->mx_addr);
		conn_fail(c, &why);
		leave(c);
		return;
	}
	switch (c->state) {
	case SC_CONNECT:
		smtp_reply_set(&why, 451, "4.4.1", "connect to %s[%s]:%u: %s", mx_name(c),
		    c->mx_addr, c->port, (what & BEV_EVENT_ERROR) && err ?
		    evutil_socket_error_to_string(err) : "connection closed");
		target_fail(c, &why);
		break;
	case SC_QUIT:
	case SC_IDLE:
	case SC_READY:
		/* nothing was in flight: closing an idle connection is not a failure */
		conn_close(c, NULL);
		break;
	default:
		smtp_reply_set(&why, 451, "4.4.2", "connection with %s[%s] %s during %s",
		    mx_name(c), c->mx_addr, (what & BEV_EVENT_EOF) ? "closed" : "lost",
		    phase_name(c));
		conn_fail(c, &why);
		break;
	}
	leave(c);
}

static void
tmo_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct smtp_conn *c = arg;
	struct smtp_reply why;

	enter(c);
	switch (c->state) {
	case SC_IDLE:
		state_enter(c, SC_QUIT);
		break;
	case SC_QUIT:
		conn_close(c, NULL);
		break;
	case SC_CONNECT:
		smtp_reply_set(&why, 451, "4.4.1", "connect to %s[%s]:%u timed out", mx_name(c),
		    c->mx_addr, c->port);
		target_fail(c, &why);
		break;
	case SC_INIT:
	case SC_READY:
	case SC_CLOSED:
		break;
	default:
		smtp_reply_set(&why, 451, "4.4.2", "timeout waiting for %s from %s[%s]",
		    c->state == SC_GREETING ? "the greeting" :
		    c->state == SC_TLS ? "the TLS handshake" : "a reply", mx_name(c), c->mx_addr);
		if (c->state >= SC_MAIL)
			smtp_reply_set(&why, 451, "4.4.2", "timeout after %s to %s[%s]",
			    phase_name(c), mx_name(c), c->mx_addr);
		conn_fail(c, &why);
		break;
	}
	leave(c);
}

static void
conn_close(struct smtp_conn *c, const struct smtp_reply *why)
{
	char buf[1200];

	if (c->dead)
		return;
	io_teardown(c);
	evtimer_del(c->defer);
	log_info("event=disconnected sid=%s site=%s mx=%s ip=%s txns=%d greeted=%s%s%s%s",
	    c->sid, c->log_id, mx_name(c), c->mx_addr, c->ntxn, c->greeted ? "yes" : "no",
	    why ? " reason=\"" : "", why ? reply_log(why, buf, sizeof(buf)) : "", why ? "\"" : "");
	c->state = SC_CLOSED;
	c->dead = true;
	if (c->ops)
		c->ops->closed(c->owner, c, why, c->greeted);
}

static void
defer_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct smtp_conn *c = arg;

	enter(c);
	try_targets(c);
	leave(c);
}

/* ---- public ---- */

struct smtp_conn *
smtp_conn_open(struct event_base *base, const struct conn_params *p,
    const struct smtp_conn_ops *ops, void *owner)
{
	struct smtp_conn *c = xcalloc(1, sizeof(*c));
	struct timeval zero = { 0, 0 };

	c->base = base;
	c->ops = ops;
	c->owner = owner;
	snprintf(c->sid, sizeof(c->sid), "o%lu", atomic_fetch_add(&conn_seq, 1) + 1);
	c->nhosts = MIN(p->nhosts, DNS_MAX_HOSTS);
	c->hosts = xcalloc((size_t)MAX(c->nhosts, 1), sizeof(*c->hosts));
	if (c->nhosts > 0)
		memcpy(c->hosts, p->hosts, sizeof(*c->hosts) * (size_t)c->nhosts);
	c->port = p->port ? p->port : 25;
	c->source_addr = p->source_addr ? xstrdup(p->source_addr) : NULL;
	c->ehlo_name = xstrdup(p->ehlo ? p->ehlo : "localhost");
	c->auth_user = p->auth_user ? xstrdup(p->auth_user) : NULL;
	c->auth_pass = p->auth_pass ? xstrdup(p->auth_pass) : NULL;
	c->log_id = xstrdup(p->log_id ? p->log_id : "-");
	c->tls_mode = p->tls;
	if (p->lim)
		c->lim = *p->lim;
	c->host_i = -1;
	c->body_fd = -1;
	c->reply_first = true;
	if (c->source_addr) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&c->source_sa;
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&c->source_sa;

		if (inet_pton(AF_INET, c->source_addr, &s4->sin_addr) == 1) {
			s4->sin_family = AF_INET;
			c->has_source = true;
		} else if (inet_pton(AF_INET6, c->source_addr, &s6->sin6_addr) == 1) {
			s6->sin6_family = AF_INET6;
			c->has_source = true;
		} else
			log_warnx("event=bad_source sid=%s source=%s: not an IP address, not binding",
			    c->sid, c->source_addr);
	}
	c->tmo = evtimer_new(base, tmo_cb, c);
	c->defer = evtimer_new(base, defer_cb, c);
	if (!c->tmo || !c->defer)
		fatal("smtp_client: evtimer_new failed");
	/* the owner hears from us only from the loop, never inside this call */
	evtimer_add(c->defer, &zero);
	log_debug("event=connecting sid=%s site=%s hosts=%d port=%u source=%s", c->sid,
	    c->log_id, c->nhosts, c->port, c->source_addr ? c->source_addr : "any");
	return c;
}

void
smtp_conn_kick(struct smtp_conn *c)
{
	if (c->dead)
		return;
	if (c->state != SC_IDLE || c->in_cb) {
		c->kicked = true;
		return;
	}
	enter(c);
	evtimer_del(c->tmo);
	ask_next(c);
	leave(c);
}

void
smtp_conn_quit(struct smtp_conn *c)
{
	if (c->dead)
		return;
	c->quit_wanted = true;
	if (c->state != SC_IDLE || c->in_cb)
		return;         /* after the transaction, or once ready */
	enter(c);
	state_enter(c, SC_QUIT);
	leave(c);
}

bool
smtp_conn_idle(const struct smtp_conn *c)
{
	return !c->dead && c->state == SC_IDLE && !c->quit_wanted;
}

struct txn *
smtp_conn_free(struct smtp_conn *c)
{
	struct txn *t = c->txn;

	c->txn = NULL;
	c->ops = NULL;
	if (!c->dead) {
		io_teardown(c);
		evtimer_del(c->defer);
		c->state = SC_CLOSED;
		c->dead = true;
		log_debug("event=disconnected sid=%s site=%s reason=shutdown", c->sid, c->log_id);
	}
	if (c->depth == 0)
		conn_destroy(c);
	return t;
}

const char *
smtp_conn_mx(const struct smtp_conn *c)
{
	return c->host_i >= 0 && c->host_i < c->nhosts ? c->hosts[c->host_i].name : NULL;
}

const char *
smtp_conn_mx_addr(const struct smtp_conn *c)
{
	return c->mx_addr[0] ? c->mx_addr : NULL;
}

bool
smtp_conn_tls(const struct smtp_conn *c)
{
	return c->tls_on;
}
