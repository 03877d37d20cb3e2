/*
 * smtp_server: the injection listener (RFC 5321 with PIPELINING, SIZE,
 * 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, CHUNKING, STARTTLS, AUTH, DSN).
 * One session per connection, an explicit state machine on a bufferevent.
 * Every worker accepts on every listener (SO_REUSEPORT).
 */
#ifndef SLUICE_SMTP_SERVER_H
#define SLUICE_SMTP_SERVER_H

#include <stddef.h>

struct worker;
struct config;

/* Bind every listener of c (as root, before dropping privileges), build the
 * TLS contexts and load the auth-users files. Returns 0 or -1 with err. The
 * sockets are kept for the workers. */
/* How many workers will accept (before smtp_server_bind): one socket each. */
void smtp_server_set_workers(int n);
int smtp_server_bind(const struct config *c, char *err, size_t errlen);
/* Start accepting on w's loop (called on each worker's thread). */
void smtp_server_start(struct worker *w);
/* Stop accepting (graceful stop): idle sessions get 421 4.3.2 at once,
 * sessions in a transaction finish it and get 421 at their next command.
 * Safe from any thread (posts to w when called elsewhere). */
void smtp_server_stop(struct worker *w);
/* Sessions still open on this worker (including those waiting for the
 * spool after their client left). Safe from any thread. */
int smtp_server_sessions(struct worker *w);
/* Reload: new limits, TLS contexts and auth-users apply to new sessions.
 * On error nothing changes. Adding or moving listeners needs a restart. */
int smtp_server_reload(const struct config *c, char *err, size_t errlen);
/* Release sockets, TLS contexts and credentials (after workers_stop). */
void smtp_server_free(void);

#endif
