/*
 * smtp_server: the injection listener (RFC 5321 with PIPELINING, SIZE,
 * 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, CHUNKING, STARTTLS, AUTH). One
 * session per connection, an explicit state machine on a bufferevent. Every
 * worker accepts on every listener (SO_REUSEPORT).
 */
#ifndef SLUICE_SMTP_SERVER_H
#define SLUICE_SMTP_SERVER_H

struct worker;
struct config;

/* Bind every listener of c (as root, before dropping privileges). Returns
 * 0 or -1 with err. The sockets are kept for the workers. */
int smtp_server_bind(const struct config *c, char *err, size_t errlen);
/* Start accepting on w's loop (called on each worker's thread). */
void smtp_server_start(struct worker *w);
/* Stop accepting (graceful stop); sessions in a transaction finish. */
void smtp_server_stop(struct worker *w);
/* Sessions still open on this worker. */
int smtp_server_sessions(struct worker *w);
/* Reload: new limits apply to new sessions; TLS contexts rebuilt. */
int smtp_server_reload(const struct config *c, char *err, size_t errlen);

#endif
