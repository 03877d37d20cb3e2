/*
 * smtp_client: one outbound SMTP connection as an explicit state machine
 * (CONNECT -> GREETING -> EHLO [-> STARTTLS -> EHLO] [-> AUTH] -> READY ->
 * MAIL/RCPT.../DATA -> DOT -> READY ... -> QUIT). It tries the hosts and
 * addresses it is given in order until one greets. It knows nothing of
 * queues: it asks its owner (a site lane) for the next transaction when it
 * is ready, reports each transaction's per-recipient replies, and tells the
 * owner when it is gone.
 *
 * Pipelining rule (when the server offers PIPELINING): MAIL, all RCPTs and
 * DATA go in one write (the sender stops early only when 64 KB of commands
 * are unsent, and resumes as replies come); the client then waits for all
 * their replies. It always waits after DATA's 354 before the body, and
 * after the final "." before the next MAIL, RSET or QUIT. Without
 * PIPELINING it waits after each command.
 *
 * Callbacks are never called from inside smtp_conn_open(); next_txn may be
 * called from inside smtp_conn_kick(). smtp_conn_quit() and smtp_conn_kick()
 * may be called from inside any callback. After closed() the connection is
 * gone: do not touch it.
 */
#ifndef SLUICE_SMTP_CLIENT_H
#define SLUICE_SMTP_CLIENT_H

#include <stdbool.h>
#include "conf.h"
#include "dns.h"
#include "smtp_parse.h"

struct event_base;
struct qmsg;
struct qrcpt;
struct smtp_conn;

#define TXN_MAX_RCPT 1000

struct txn_rcpt {
	struct qrcpt *r;
	struct smtp_reply reply;       /* set by the client for every recipient */
};

/* One transaction: one message to some of its recipients. */
struct txn {
	struct qmsg *msg;              /* holds a reference for the txn's life */
	const char *sender;            /* MAIL FROM (VERP applied), "" = null */
	char verp[128];                /* the VERP sender when sender points here */
	int nrcpt;
	struct txn_rcpt *rcpt;
	bool warmup;                   /* its recipients count against a warm-up cap */
};

struct conn_params {
	const struct dns_host *hosts;  /* try in order */
	int nhosts;
	uint16_t port;                 /* remote port */
	const char *source_addr;       /* local IP to bind, NULL = any */
	const char *ehlo;              /* EHLO name */
	enum tls_mode tls;
	const struct site_limits *lim; /* timeouts */
	const char *auth_user, *auth_pass; /* AUTH to a smart host, or NULL */
	const char *log_id;            /* site name, for log lines */
};

struct smtp_conn_ops {
	/* The connection is ready for a transaction. Return one, or NULL: the
	 * connection then idles (idle-timeout) until smtp_conn_kick or close. */
	struct txn *(*next_txn)(void *owner, struct smtp_conn *c);
	/* The transaction finished: every t->rcpt[i].reply is set. */
	void (*txn_done)(void *owner, struct smtp_conn *c, struct txn *t);
	/* The connection is gone (after any txn_done). why is NULL after a clean
	 * QUIT (also an idle timeout, or the server closing an idle
	 * connection), else the reply/condition that ended it (e.g. 421,
	 * timeout, connection lost mid-transaction). greeted is true when the
	 * session ever became ready (EHLO, STARTTLS, AUTH done); false when no
	 * host/address could be used: why is then the last failure (connect
	 * error, timeout, 4xx/5xx greeting, "4.7.4 TLS required but not
	 * offered", "4.7.5" TLS failure, AUTH refusal). */
	void (*closed)(void *owner, struct smtp_conn *c, const struct smtp_reply *why, bool greeted);
};

struct smtp_conn *smtp_conn_open(struct event_base *base, const struct conn_params *p,
    const struct smtp_conn_ops *ops, void *owner);
/* An idle connection has work again: it calls next_txn. */
void smtp_conn_kick(struct smtp_conn *c);
/* QUIT when idle (or after the current transaction, or once the session
 * is ready) and close. */
void smtp_conn_quit(struct smtp_conn *c);
bool smtp_conn_idle(const struct smtp_conn *c);
/* Shutdown: close at once and free, calling no callback. Returns the
 * transaction in flight, if any, for the owner to let go of (its
 * recipients stay in the spool). */
struct txn *smtp_conn_free(struct smtp_conn *c);
/* The host/IP of the connected MX (for events), valid while connected. */
const char *smtp_conn_mx(const struct smtp_conn *c);
const char *smtp_conn_mx_addr(const struct smtp_conn *c);
bool smtp_conn_tls(const struct smtp_conn *c);

/* Client TLS context (per process; built at startup and on reload). */
int smtp_client_tls_init(char *err, size_t errlen);

#endif
