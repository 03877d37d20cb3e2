/*
 * conf: the config parser. The file is read into tokens (words, "quoted
 * strings", '{', '}', with line numbers), then one loop walks the tokens
 * and looks every directive up in a single table that says where it may
 * appear, how many arguments it takes, its type, default and range, and
 * the line for the man page. Errors are collected (not just the first) as
 * "file:line: message" so `sluiced -n` shows them all.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "conf.h"
#include "backoff.h"
#include "bounce.h"
#include "dkim.h"
#include "log.h"
#include "util.h"
#include "verp.h"
#include "warmup.h"

enum ctx {
	CX_GLOBAL = 1, CX_LISTENER = 2, CX_SOURCE = 4, CX_POOL = 8,
	CX_DOMAIN = 16, CX_PROVIDER = 32, CX_DKIM = 64, CX_WSCHED = 128,
};
#define CX_SITE (CX_DOMAIN | CX_PROVIDER)

enum ctype {
	T_STR, T_INT, T_BOOL, T_SIZE, T_DURATION, T_RATE, T_HOSTPORT, T_ENUM,
	T_DURLIST, T_CIDRLIST, T_LOGLEVEL, T_WORKERS, T_BLOCK, T_CUSTOM,
};

struct pstate;
typedef int (*custom_fn)(struct pstate *ps, void *obj, char **args, int nargs);

struct directive {
	const char *name;
	int ctx;
	enum ctype type;
	int nargs;                      /* -1: to end of line */
	size_t off;                     /* into the block's struct (site_limits for CX_SITE) */
	const char *def;                /* default, parsed like a value; NULL = none */
	int64_t min, max;               /* T_INT / T_DURATION / T_SIZE range (max 0 = none) */
	const char *enums;              /* T_ENUM: "none|opportunistic|required|verify" */
	int limit;                      /* enum limit_idx for CX_SITE, else -1 */
	custom_fn fn;
	const char *args, *doc;         /* man page: argument synopsis and text */
};

struct pstate {
	struct config *c;
	const char *file;               /* interned in c->strings */
	int line;
	char *err;
	size_t errlen, errused;
	int nerr;
};

static void
perr(struct pstate *ps, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
perr(struct pstate *ps, int line, const char *fmt, ...)
{
	va_list ap;
	char msg[512];
	int n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ps->nerr++;
	if (ps->err == NULL || ps->errused + 1 >= ps->errlen)
		return;
	n = snprintf(ps->err + ps->errused, ps->errlen - ps->errused, "%s%s:%d: %s",
	    ps->errused ? "\n" : "", ps->file, line, msg);
	if (n > 0)
		ps->errused = MIN(ps->errlen - 1, ps->errused + (size_t)n);
}

static const char *
intern(struct config *c, const char *s)
{
	c->strings = xrealloc(c->strings, sizeof(char *) * (size_t)(c->nstrings + 1));
	c->strings[c->nstrings] = xstrdup(s);
	return c->strings[c->nstrings++];
}

static const char *
origin(struct pstate *ps)
{
	char buf[600];
	snprintf(buf, sizeof(buf), "%s:%d", ps->file, ps->line);
	return intern(ps->c, buf);
}

/* Custom handlers (defined below the table). */
static int d_relay_from(struct pstate *, void *, char **, int);
static int d_pool_source(struct pstate *, void *, char **, int);
static int d_sender_domain(struct pstate *, void *, char **, int);
static int d_selector(struct pstate *, void *, char **, int);
static int d_mx(struct pstate *, void *, char **, int);
static int d_route(struct pstate *, void *, char **, int);
static int d_route_auth(struct pstate *, void *, char **, int);
static int d_fbl_address(struct pstate *, void *, char **, int);
static int d_soft_bounces(struct pstate *, void *, char **, int);
static int d_warmup(struct pstate *, void *, char **, int);
static int d_warmup_start(struct pstate *, void *, char **, int);
static int d_wday(struct pstate *, void *, char **, int);
static int d_wfile(struct pstate *, void *, char **, int);

#define G(f) offsetof(struct config, f)
#define LI(f) offsetof(struct listener_conf, f)
#define SO(f) offsetof(struct source_conf, f)
#define PO(f) offsetof(struct pool_conf, f)
#define SL(f) offsetof(struct site_limits, f)
#define DK(f) offsetof(struct dkim_conf, f)

static const struct directive table[] = {
	/* global */
	{ "hostname", CX_GLOBAL, T_STR, 1, G(hostname), NULL, 0, 0, NULL, -1, NULL,
	  "NAME", "Host name used in the SMTP greeting, Received lines and DSNs. Default: the system host name." },
	{ "spool", CX_GLOBAL, T_STR, 1, G(spool), LOCALSTATEDIR "/spool/sluice", 0, 0, NULL, -1, NULL,
	  "DIR", "Spool directory (one file per message, see queue/README)." },
	{ "pidfile", CX_GLOBAL, T_STR, 1, G(pidfile), RUNSTATEDIR "/sluice/sluiced.pid", 0, 0, NULL, -1, NULL,
	  "FILE", "Where sluiced writes its process id." },
	{ "control-socket", CX_GLOBAL, T_STR, 1, G(control_socket), RUNSTATEDIR "/sluice/control.sock", 0, 0, NULL, -1, NULL,
	  "PATH", "Unix socket of the HTTP/JSON control API (mode 0660)." },
	{ "log", CX_GLOBAL, T_STR, 1, G(log), "-", 0, 0, NULL, -1, NULL,
	  "FILE|-", "Operational log (key=value lines); - is standard error." },
	{ "log-level", CX_GLOBAL, T_LOGLEVEL, 1, G(log_level), "info", 0, 0, "error|warn|info|debug|trace", -1, NULL,
	  "LEVEL", "error, warn, info, debug or trace." },
	{ "accounting", CX_GLOBAL, T_STR, 1, G(accounting), NULL, 0, 0, NULL, -1, NULL,
	  "FILE|-", "Accounting log: one JSON object per line per event; - is standard output." },
	{ "store", CX_GLOBAL, T_STR, 1, G(store), LOCALSTATEDIR "/lib/sluice/store", 0, 0, NULL, -1, NULL,
	  "DIR", "LMDB environment of the intelligence store (suppression, warm-up counters, engagement, campaigns)." },
	{ "store-map-size", CX_GLOBAL, T_SIZE, 1, G(store_map_size), "64G", 16777216, 0, NULL, -1, NULL,
	  "SIZE", "Largest size the store may grow to (address space, not disk: the file grows as data is written)." },
	{ "engagement-half-life", CX_GLOBAL, T_DURATION, 1, G(engage_half_life), "30d", 3600000, 0, NULL, -1, NULL,
	  "DURATION", "Half-life of the engagement histograms (opens and clicks per hour of the week): an event this old counts half, three half-lives old an eighth." },
	{ "workers", CX_GLOBAL, T_WORKERS, 1, G(workers), "auto", 0, 64, NULL, -1, NULL,
	  "auto|N", "Event-loop threads; auto = number of cores." },
	{ "spool-threads", CX_GLOBAL, T_INT, 1, G(spool_threads), "8", 1, 64, NULL, -1, NULL,
	  "N", "Threads that prepare, DKIM-sign and spool injected messages; the messages they spool at the same time share one file and one fsync (group commit)." },
	{ "resolver", CX_GLOBAL, T_HOSTPORT, 1, G(resolver), NULL, 0, 0, NULL, -1, NULL,
	  "HOST[:PORT]", "DNS server to use instead of /etc/resolv.conf." },
	{ "smtp-port", CX_GLOBAL, T_INT, 1, G(smtp_port), "25", 1, 65535, NULL, -1, NULL,
	  "PORT", "Remote port for direct MX delivery." },
	{ "user", CX_GLOBAL, T_STR, 1, G(user), NULL, 0, 0, NULL, -1, NULL,
	  "NAME", "When started as root: the user to run as after binding ports." },
	{ "bounce-rules", CX_GLOBAL, T_STR, 1, G(bounce_rules), NULL, 0, 0, NULL, -1, NULL,
	  "FILE", "Ordered rules that classify remote replies into bounce categories. Default: the built-in copy of conf/bounce-rules.conf." },
	{ "backoff-rules", CX_GLOBAL, T_STR, 1, G(backoff_rules), NULL, 0, 0, NULL, -1, NULL,
	  "FILE", "Ordered rules that suspend a site or lower its rate or connections when a remote reply says it throttles the sending IP. Default: the built-in copy of conf/backoff-rules.conf." },
	{ "bounce-from", CX_GLOBAL, T_STR, 1, G(bounce_from), NULL, 0, 0, NULL, -1, NULL,
	  "ADDRESS", "From address of delivery status notifications. Default MAILER-DAEMON@hostname." },
	{ "bounce-domain", CX_GLOBAL, T_STR, 1, G(bounce_domain), NULL, 0, 0, NULL, -1, NULL,
	  "DOMAIN", "Send with VERP: the envelope sender of each recipient is bounce+TOKEN@DOMAIN, and the listeners take bounces and complaints for DOMAIN from anyone. Needs verp-key. Default: none (the envelope sender is the message's own)." },
	{ "verp-key", CX_GLOBAL, T_STR, 1, G(verp_keyfile), NULL, 0, 0, NULL, -1, NULL,
	  "FILE", "HMAC-SHA256 secret of VERP tokens: 16 to 4096 bytes, not world-readable (head -c 32 /dev/urandom > FILE)." },
	{ "verp-expire", CX_GLOBAL, T_DURATION, 1, G(verp_expire), "14d", 3600000, 0, NULL, -1, NULL,
	  "DURATION", "How long after a message's arrival its VERP send records are kept (a bounce or complaint arriving later still counts, without the recipient)." },
	{ "fbl-address", CX_GLOBAL, T_CUSTOM, 1, 0, NULL, 0, 0, NULL, -1, d_fbl_address,
	  "ADDRESS", "A feedback-loop mailbox (repeatable): the listeners take mail for it from anyone and read it as a complaint or bounce report." },
	{ "suppress-soft-bounces", CX_GLOBAL, T_CUSTOM, -1, 0, "3 7d", 0, 0, NULL, -1, d_soft_bounces,
	  "N DURATION|off", "Suppress an address (reason soft-bounces) after N soft bounces in a row within DURATION: messages that expired, and 5xx replies that are Transient for SES (mailbox full). A delivery ends the run." },
	{ "suppress-normalize-gmail", CX_GLOBAL, T_BOOL, 1, G(suppress_gmail), "no", 0, 0, NULL, -1, NULL,
	  "yes|no", "In the suppression list, treat gmail.com and googlemail.com addresses as Gmail does: local part without dots, case or +tag." },
	{ "sunset-after", CX_GLOBAL, T_DURATION, 1, G(sunset_after), "120d", 0, 0, NULL, -1, NULL,
	  "DURATION", "Marketing campaigns: a recipient with no open or click for this long (counted from its first send when it never engaged), after sunset-min-sends sends, gets sunset-reengage more sends and is then skipped (event skipped, reason sunset) until it engages again. 0 turns the sunset off. Transactional campaigns are never skipped." },
	{ "sunset-min-sends", CX_GLOBAL, T_INT, 1, G(sunset_min_sends), "5", 0, 1000000, NULL, -1, NULL,
	  "N", "Sends a recipient must have had before the sunset can apply." },
	{ "sunset-reengage", CX_GLOBAL, T_INT, 1, G(sunset_reengage), "3", 0, 1000, NULL, -1, NULL,
	  "N", "Re-engagement sends an inactive recipient still gets before it is skipped." },
	{ "bounce-risk-soft-bounces", CX_GLOBAL, T_INT, 1, G(bounce_risk_soft), "3", 0, 1000, NULL, -1, NULL,
	  "N", "Marketing campaigns skip (reason bounce-risk) a recipient with this many soft bounces and no open or click since the last one. 0 = off." },
	{ "bounce-risk-no-mx", CX_GLOBAL, T_DURATION, 1, G(bounce_risk_no_mx), "3d", 0, 0, NULL, -1, NULL,
	  "DURATION", "Marketing campaigns skip (reason bounce-risk) recipients on a domain found without MX or address (or with a null MX) this recently. 0 = off." },
	{ "skip-role-addresses", CX_GLOBAL, T_BOOL, 1, G(skip_role_addresses), "no", 0, 0, NULL, -1, NULL,
	  "yes|no", "Marketing campaigns skip (reason role-address) role addresses such as abuse@, postmaster@, noreply@." },
	{ "trap-suspect-age", CX_GLOBAL, T_DURATION, 1, G(trap_suspect_age), "365d", 86400000, 0, NULL, -1, NULL,
	  "DURATION", "A recipient known this long that never opened or clicked, on a domain with spam-trap history, is flagged as a spam-trap suspect: reported in its delivery event and by GET /v1/recipients, not dropped." },

	/* blocks */
	{ "listener", CX_GLOBAL, T_BLOCK, 1, 0, NULL, 0, 0, NULL, -1, NULL,
	  "ADDRESS:PORT { ... }", "An SMTP injection listener." },
	{ "source", CX_GLOBAL, T_BLOCK, 1, 0, NULL, 0, 0, NULL, -1, NULL,
	  "NAME { ... }", "A sending source: local address and EHLO name." },
	{ "pool", CX_GLOBAL, T_BLOCK, 1, 0, NULL, 0, 0, NULL, -1, NULL,
	  "NAME { ... }", "A weighted set of sources." },
	{ "domain", CX_GLOBAL, T_BLOCK, 1, 0, NULL, 0, 0, NULL, -1, NULL,
	  "NAME|* { ... }", "Delivery settings for a recipient domain; * holds the defaults." },
	{ "provider", CX_GLOBAL, T_BLOCK, 1, 0, NULL, 0, 0, NULL, -1, NULL,
	  "NAME { ... }", "A mailbox provider recognised by its MX host names; its domains share one queue." },
	{ "dkim", CX_GLOBAL, T_BLOCK, 1, 0, NULL, 0, 0, NULL, -1, NULL,
	  "DOMAIN { ... }", "DKIM signing keys for a From domain." },
	{ "warmup-schedule", CX_GLOBAL, T_BLOCK, 1, 0, NULL, 0, 0, NULL, -1, NULL,
	  "NAME { ... }", "An IP warm-up schedule: daily caps per provider, day by day (day and file lines)." },

	/* listener */
	{ "relay-from", CX_LISTENER, T_CUSTOM, 1, 0, NULL, 0, 0, NULL, -1, d_relay_from,
	  "NET[,NET...]", "Client networks allowed to relay (repeatable). Others need AUTH." },
	{ "auth", CX_LISTENER, T_ENUM, 1, LI(auth), "none", 0, 0, "none|optional|required", -1, NULL,
	  "none|optional|required", "SMTP AUTH (PLAIN, LOGIN) after STARTTLS: off, allowed, or needed before MAIL." },
	{ "auth-users", CX_LISTENER, T_STR, 1, LI(auth_users), NULL, 0, 0, NULL, -1, NULL,
	  "FILE", "Credentials: user:hash lines (sluicectl user hash)." },
	{ "tls-certificate", CX_LISTENER, T_STR, 1, LI(tls_cert), NULL, 0, 0, NULL, -1, NULL,
	  "FILE", "PEM certificate chain for STARTTLS." },
	{ "tls-key", CX_LISTENER, T_STR, 1, LI(tls_key), NULL, 0, 0, NULL, -1, NULL,
	  "FILE", "PEM private key for STARTTLS." },
	{ "max-message-size", CX_LISTENER, T_SIZE, 1, LI(max_message_size), "50M", 1024, 0, NULL, -1, NULL,
	  "SIZE", "Largest message accepted (552 5.3.4 above)." },
	{ "max-recipients", CX_LISTENER, T_INT, 1, LI(max_recipients), "1000", 1, 100000, NULL, -1, NULL,
	  "N", "Recipients per message (452 4.5.3 above)." },
	{ "max-line-length", CX_LISTENER, T_INT, 1, LI(max_line_length), "4096", 512, 1048576, NULL, -1, NULL,
	  "N", "Longest command or message line in bytes." },
	{ "max-headers", CX_LISTENER, T_INT, 1, LI(max_headers), "1000", 10, 100000, NULL, -1, NULL,
	  "N", "Most header lines in a message." },
	{ "max-connections", CX_LISTENER, T_INT, 1, LI(max_connections), "1000", 1, 1000000, NULL, -1, NULL,
	  "N", "Concurrent sessions on this listener, over all workers." },
	{ "max-connections-per-ip", CX_LISTENER, T_INT, 1, LI(max_conn_per_ip), "100", 1, 1000000, NULL, -1, NULL,
	  "N", "Concurrent sessions from one client address." },
	{ "max-errors", CX_LISTENER, T_INT, 1, LI(max_errors), "10", 1, 1000, NULL, -1, NULL,
	  "N", "Protocol errors before the session is closed with 421." },
	{ "command-timeout", CX_LISTENER, T_DURATION, 1, LI(command_timeout), "5m", 1000, 0, NULL, -1, NULL,
	  "DURATION", "Idle time allowed between commands." },
	{ "data-timeout", CX_LISTENER, T_DURATION, 1, LI(data_timeout), "5m", 1000, 0, NULL, -1, NULL,
	  "DURATION", "Idle time allowed inside DATA or between BDAT chunks." },
	{ "smtputf8", CX_LISTENER, T_BOOL, 1, LI(smtputf8), "yes", 0, 0, NULL, -1, NULL,
	  "yes|no", "Offer SMTPUTF8 (RFC 6531)." },
	{ "suppressed-recipients", CX_LISTENER, T_ENUM, 1, LI(suppressed), "reject", 0, 0, "reject|drop", -1, NULL,
	  "reject|drop", "A recipient on the suppression list: reject refuses it at RCPT (550 5.7.1 with the reason); drop accepts it, never queues it and writes a suppressed event." },

	/* source */
	{ "address", CX_SOURCE, T_STR, 1, SO(address), NULL, 0, 0, NULL, -1, NULL,
	  "IP", "Local address outgoing connections bind to." },
	{ "ehlo", CX_SOURCE, T_STR, 1, SO(ehlo), NULL, 0, 0, NULL, -1, NULL,
	  "NAME", "EHLO name for this source (should match the address's PTR). Default: hostname." },
	{ "warmup", CX_SOURCE, T_CUSTOM, 1, 0, NULL, 0, 0, NULL, -1, d_warmup,
	  "SCHEDULE|default|off", "Warm this source up: daily caps per provider from a warmup-schedule (default: the built-in 30-day plan, conf/warmup-default.conf). Above a cap, mail goes to another source of its pool with room, or waits for the next UTC day." },
	{ "warmup-start", CX_SOURCE, T_CUSTOM, 1, 0, NULL, 0, 0, NULL, -1, d_warmup_start,
	  "YYYY-MM-DD", "Day 1 of the warm-up (UTC). Default: the day the source first sends under its schedule, kept in the store." },

	/* warmup-schedule */
	{ "day", CX_WSCHED, T_CUSTOM, -1, 0, NULL, 0, 0, NULL, -1, d_wday,
	  "N PROVIDER CAP [PROVIDER CAP ...]", "Caps from day N on (until the next listed day): recipients per UTC day to a provider (a provider block's name; * = every other destination), or unlimited. Days ascend from day 1; after the last listed day the warm-up is complete." },
	{ "file", CX_WSCHED, T_CUSTOM, 1, 0, NULL, 0, 0, NULL, -1, d_wfile,
	  "FILE", "Read day lines from FILE (the format of conf/warmup-default.conf)." },

	/* pool */
	{ "source", CX_POOL, T_CUSTOM, 1, 0, NULL, 0, 0, NULL, -1, d_pool_source,
	  "NAME [weight N]", "A member source and its weight (default 1)." },
	{ "sender-domain", CX_POOL, T_CUSTOM, 1, 0, NULL, 0, 0, NULL, -1, d_sender_domain,
	  "DOMAIN[,DOMAIN...]", "Messages from these sender domains use this pool unless told otherwise." },
	{ "dkim-domain", CX_POOL, T_STR, 1, PO(dkim_domain), NULL, 0, 0, NULL, -1, NULL,
	  "DOMAIN", "Also sign this pool's mail with DOMAIN's keys (ESP signature)." },

	/* dkim */
	{ "selector", CX_DKIM, T_CUSTOM, 3, 0, NULL, 0, 0, NULL, -1, d_selector,
	  "NAME rsa|ed25519 KEYFILE", "A signing key; several selectors all sign (RSA + Ed25519 = dual signature)." },
	{ "signature-expiry", CX_DKIM, T_DURATION, 1, DK(expire), NULL, 60000, 0, NULL, -1, NULL,
	  "DURATION", "Add x= this long after signing." },

	/* provider */
	{ "mx", CX_PROVIDER, T_CUSTOM, 1, 0, NULL, 0, 0, NULL, -1, d_mx,
	  "GLOB[,GLOB...]", "MX host name patterns of this provider, e.g. *.google.com." },

	/* site limits: domain and provider blocks */
	{ "max-smtp-out", CX_SITE, T_INT, 1, SL(max_smtp_out), "20", 1, 10000, NULL, L_MAX_SMTP_OUT, NULL,
	  "N", "Concurrent connections per source to this destination." },
	{ "max-msg-per-connection", CX_SITE, T_INT, 1, SL(max_msg_per_conn), "100", 1, 1000000, NULL, L_MAX_MSG_PER_CONN, NULL,
	  "N", "Messages sent on one connection before it is closed." },
	{ "max-rcpt-per-message", CX_SITE, T_INT, 1, SL(max_rcpt_per_msg), "100", 1, 1000, NULL, L_MAX_RCPT_PER_MSG, NULL,
	  "N", "Recipients per SMTP transaction." },
	{ "max-msg-rate", CX_SITE, T_RATE, 1, SL(max_msg_rate), "0/h", 0, 0, NULL, L_MAX_MSG_RATE, NULL,
	  "N/UNIT", "Messages per time per source (token bucket); 0/h = unlimited." },
	{ "max-connect-rate", CX_SITE, T_RATE, 1, SL(max_connect_rate), "0/h", 0, 0, NULL, L_MAX_CONNECT_RATE, NULL,
	  "N/UNIT", "New connections per time per source; 0/h = unlimited." },
	{ "retry-after", CX_SITE, T_DURLIST, 1, SL(retry_after), "5m,10m,20m,40m,1h,2h,4h", 0, 0, NULL, L_RETRY_AFTER, NULL,
	  "DURATION[,DURATION...]", "Delays before each retry; the last repeats. A random jitter of up to 10% is added." },
	{ "bounce-after", CX_SITE, T_DURATION, 1, SL(bounce_after), "4d", 1000, 0, NULL, L_BOUNCE_AFTER, NULL,
	  "DURATION", "Queue lifetime: a recipient still failing after this expires (message-expired)." },
	{ "mx-rollup", CX_SITE, T_BOOL, 1, SL(mx_rollup), "yes", 0, 0, NULL, L_MX_ROLLUP, NULL,
	  "yes|no", "Domains with the same MX hosts share one queue and one set of limits." },
	{ "tls", CX_SITE, T_ENUM, 1, SL(tls), "opportunistic", 0, 0, "none|opportunistic|required|verify", L_TLS, NULL,
	  "none|opportunistic|required|verify", "STARTTLS policy: verify checks the chain and the MX host name." },
	{ "route", CX_DOMAIN, T_CUSTOM, 1, 0, NULL, 0, 0, NULL, L_ROUTE, d_route,
	  "[HOST]:PORT", "Static route (smart host) instead of MX lookup." },
	{ "route-auth", CX_DOMAIN, T_CUSTOM, 2, 0, NULL, 0, 0, NULL, L_ROUTE_AUTH, d_route_auth,
	  "USER PASSWORD-FILE", "AUTH PLAIN to the smart host; the password is read from a file." },
	{ "connect-timeout", CX_SITE, T_DURATION, 1, SL(connect_timeout), "30s", 100, 0, NULL, L_CONNECT_TIMEOUT, NULL,
	  "DURATION", "TCP connect." },
	{ "greeting-timeout", CX_SITE, T_DURATION, 1, SL(greeting_timeout), "5m", 100, 0, NULL, L_GREETING_TIMEOUT, NULL,
	  "DURATION", "Waiting for the 220 greeting (RFC 5321 4.5.3.2)." },
	{ "ehlo-timeout", CX_SITE, T_DURATION, 1, SL(ehlo_timeout), "5m", 100, 0, NULL, L_EHLO_TIMEOUT, NULL,
	  "DURATION", "EHLO/HELO, STARTTLS and AUTH replies." },
	{ "mail-timeout", CX_SITE, T_DURATION, 1, SL(mail_timeout), "5m", 100, 0, NULL, L_MAIL_TIMEOUT, NULL,
	  "DURATION", "MAIL FROM reply." },
	{ "rcpt-timeout", CX_SITE, T_DURATION, 1, SL(rcpt_timeout), "5m", 100, 0, NULL, L_RCPT_TIMEOUT, NULL,
	  "DURATION", "RCPT TO reply." },
	{ "data-timeout", CX_SITE, T_DURATION, 1, SL(data_timeout), "2m", 100, 0, NULL, L_DATA_TIMEOUT, NULL,
	  "DURATION", "DATA's 354 reply." },
	{ "data-block-timeout", CX_SITE, T_DURATION, 1, SL(data_block_timeout), "3m", 100, 0, NULL, L_DATA_BLOCK_TIMEOUT, NULL,
	  "DURATION", "Progress while sending the message body." },
	{ "dot-timeout", CX_SITE, T_DURATION, 1, SL(dot_timeout), "10m", 100, 0, NULL, L_DOT_TIMEOUT, NULL,
	  "DURATION", "Reply to the final dot." },
	{ "idle-timeout", CX_SITE, T_DURATION, 1, SL(idle_timeout), "5s", 0, 0, NULL, L_IDLE_TIMEOUT, NULL,
	  "DURATION", "How long an idle connection is kept for reuse." },
	{ "smtp-port", CX_SITE, T_INT, 1, SL(smtp_port), "0", 0, 65535, NULL, L_SMTP_PORT, NULL,
	  "PORT", "Remote port for this destination (0 = the global smtp-port)." },
};

static const char *const limit_names[L_COUNT] = {
	[L_MAX_SMTP_OUT] = "max-smtp-out", [L_MAX_MSG_PER_CONN] = "max-msg-per-connection",
	[L_MAX_RCPT_PER_MSG] = "max-rcpt-per-message", [L_MAX_MSG_RATE] = "max-msg-rate",
	[L_MAX_CONNECT_RATE] = "max-connect-rate", [L_RETRY_AFTER] = "retry-after",
	[L_BOUNCE_AFTER] = "bounce-after", [L_MX_ROLLUP] = "mx-rollup", [L_TLS] = "tls",
	[L_ROUTE] = "route", [L_ROUTE_AUTH] = "route-auth",
	[L_CONNECT_TIMEOUT] = "connect-timeout", [L_GREETING_TIMEOUT] = "greeting-timeout",
	[L_EHLO_TIMEOUT] = "ehlo-timeout", [L_MAIL_TIMEOUT] = "mail-timeout",
	[L_RCPT_TIMEOUT] = "rcpt-timeout", [L_DATA_TIMEOUT] = "data-timeout",
	[L_DATA_BLOCK_TIMEOUT] = "data-block-timeout", [L_DOT_TIMEOUT] = "dot-timeout",
	[L_IDLE_TIMEOUT] = "idle-timeout", [L_SMTP_PORT] = "smtp-port",
};

const char *
conf_limit_name(enum limit_idx i)
{
	return i < L_COUNT ? limit_names[i] : "?";
}

static const char *
ctx_name(int ctx)
{
	switch (ctx) {
	case CX_GLOBAL: return "the top level";
	case CX_LISTENER: return "a listener block";
	case CX_SOURCE: return "a source block";
	case CX_POOL: return "a pool block";
	case CX_DOMAIN: return "a domain block";
	case CX_PROVIDER: return "a provider block";
	case CX_DKIM: return "a dkim block";
	case CX_WSCHED: return "a warmup-schedule block";
	}
	return "?";
}

static const struct directive *
lookup(const char *name, int ctx, bool *elsewhere)
{
	*elsewhere = false;
	for (size_t i = 0; i < ARRAY_SIZE(table); i++) {
		if (strcmp(table[i].name, name) != 0)
			continue;
		if (table[i].ctx & ctx)
			return &table[i];
		*elsewhere = true;
	}
	return NULL;
}

/* Set a typed value. Returns 0, or -1 after reporting. */
static int
set_value(struct pstate *ps, const struct directive *d, void *obj, char **args, int nargs)
{
	char *p = (char *)obj + d->off;
	const char *e = NULL;
	const char *v = args[0];

	switch (d->type) {
	case T_STR: {
		char **s = (char **)p;
		free(*s);
		*s = xstrdup(v);
		if (d->off == G(bounce_rules) && d->ctx == CX_GLOBAL)
			ps->c->bounce_rules_line = ps->line;
		if (d->off == G(backoff_rules) && d->ctx == CX_GLOBAL)
			ps->c->backoff_rules_line = ps->line;
		if (d->off == G(bounce_domain) && d->ctx == CX_GLOBAL)
			ps->c->bounce_domain_line = ps->line;
		if (d->off == G(verp_keyfile) && d->ctx == CX_GLOBAL)
			ps->c->verp_key_line = ps->line;
		return 0;
	}
	case T_INT: {
		uint64_t n;
		if (parse_uint(v, &n, &e) < 0)
			break;
		if ((int64_t)n < d->min || (d->max && (int64_t)n > d->max)) {
			perr(ps, ps->line, "%s: %s is out of range (%" PRId64 "-%" PRId64 ")",
			    d->name, v, d->min, d->max);
			return -1;
		}
		*(int *)p = (int)n;
		return 0;
	}
	case T_WORKERS: {
		uint64_t n;
		if (strcmp(v, "auto") == 0) {
			*(int *)p = 0;
			return 0;
		}
		if (parse_uint(v, &n, &e) < 0) {
			e = "expected auto or a number of threads";
			break;
		}
		if (n < 1 || n > (uint64_t)d->max) {
			perr(ps, ps->line, "%s: %s is out of range (1-%" PRId64 ")", d->name, v, d->max);
			return -1;
		}
		*(int *)p = (int)n;
		return 0;
	}
	case T_BOOL:
		if (parse_bool(v, (bool *)p, &e) < 0)
			break;
		return 0;
	case T_SIZE: {
		uint64_t n;
		if (parse_size(v, &n, &e) < 0)
			break;
		if ((int64_t)n < d->min || (d->max && (int64_t)n > d->max)) {
			perr(ps, ps->line, "%s: %s is out of range", d->name, v);
			return -1;
		}
		*(uint64_t *)p = n;
		return 0;
	}
	case T_DURATION: {
		int64_t ms;
		if (parse_duration(v, &ms, &e) < 0)
			break;
		if (ms < d->min || (d->max && ms > d->max)) {
			char a[32];
			fmt_duration(a, sizeof(a), d->min);
			perr(ps, ps->line, "%s: %s is too short (at least %s)", d->name, v, a);
			return -1;
		}
		*(int64_t *)p = ms;
		return 0;
	}
	case T_RATE:
		if (parse_rate(v, (struct rate *)p, &e) < 0)
			break;
		return 0;
	case T_HOSTPORT:
		if (parse_hostport(v, (struct hostport *)p, &e) < 0)
			break;
		if (d->off == G(resolver))
			ps->c->has_resolver = true;
		return 0;
	case T_LOGLEVEL:
	case T_ENUM: {
		const char *opts = d->enums;
		int idx = 0;
		size_t n = strlen(v);
		for (const char *o = opts; *o; idx++) {
			const char *bar = strchr(o, '|');
			size_t len = bar ? (size_t)(bar - o) : strlen(o);
			if (len == n && strncmp(o, v, n) == 0) {
				*(int *)p = idx;
				return 0;
			}
			if (!bar)
				break;
			o = bar + 1;
		}
		perr(ps, ps->line, "%s: expected one of %s, not \"%s\"", d->name, opts, v);
		return -1;
	}
	case T_DURLIST: {
		struct site_limits *l = obj;
		char *copy = xstrdup(v), *save = NULL;
		int n = 0;
		for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			int64_t ms;
			if (n == MAX_RETRY_STEPS) {
				perr(ps, ps->line, "%s: at most %d steps", d->name, MAX_RETRY_STEPS);
				free(copy);
				return -1;
			}
			if (parse_duration(t, &ms, &e) < 0 || ms <= 0) {
				perr(ps, ps->line, "%s: \"%s\": %s", d->name, t, e ? e : "must be positive");
				free(copy);
				return -1;
			}
			l->retry_after[n++] = ms;
		}
		free(copy);
		if (n == 0) {
			perr(ps, ps->line, "%s: expected a list like 5m,15m,1h", d->name);
			return -1;
		}
		l->nretry = n;
		return 0;
	}
	case T_BLOCK:
	case T_CUSTOM:
	case T_CIDRLIST:
		return d->fn(ps, obj, args, nargs);
	}
	perr(ps, ps->line, "%s: \"%s\": %s", d->name, v, e ? e : "bad value");
	return -1;
}

/* Custom directives */

static int
d_relay_from(struct pstate *ps, void *obj, char **args, int nargs)
{
	struct listener_conf *l = obj;
	char *copy = xstrdup(args[0]), *save = NULL;
	int rc = 0;

	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		struct cidr c;
		const char *e;
		if (parse_cidr(t, &c, &e) < 0) {
			perr(ps, ps->line, "relay-from: \"%s\": %s", t, e);
			rc = -1;
			continue;
		}
		l->relay_from = xrealloc(l->relay_from, sizeof(c) * (size_t)(l->nrelay + 1));
		l->relay_from[l->nrelay++] = c;
	}
	free(copy);
	return rc;
}

static int
d_pool_source(struct pstate *ps, void *obj, char **args, int nargs)
{
	struct pool_conf *p = obj;
	uint64_t w = 1;
	const char *e;

	if (nargs != 1 && !(nargs == 3 && strcmp(args[1], "weight") == 0)) {
		perr(ps, ps->line, "source: expected \"source NAME [weight N]\"");
		return -1;
	}
	if (nargs == 3 && (parse_uint(args[2], &w, &e) < 0 || w < 1 || w > 1000000)) {
		perr(ps, ps->line, "source: weight must be 1-1000000, not \"%s\"", args[2]);
		return -1;
	}
	for (int i = 0; i < p->nmembers; i++) {
		if (strcmp(p->members[i].name, args[0]) == 0) {
			perr(ps, ps->line, "source %s is already in pool %s", args[0], p->name);
			return -1;
		}
	}
	/* a source may be defined after the pool: resolved in validate() */
	p->members = xrealloc(p->members, sizeof(*p->members) * (size_t)(p->nmembers + 1));
	p->members[p->nmembers] = (struct pool_member){
		.name = xstrdup(args[0]), .weight = (int)w, .line = ps->line,
	};
	p->nmembers++;
	return 0;
}

static int
d_sender_domain(struct pstate *ps, void *obj, char **args, int nargs)
{
	struct pool_conf *p = obj;
	char *copy = xstrdup(args[0]), *save = NULL;

	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		p->sender_domains = xrealloc(p->sender_domains, sizeof(char *) * (size_t)(p->nsender_domains + 1));
		p->sender_domains[p->nsender_domains++] = str_lower(xstrdup(t));
	}
	free(copy);
	return 0;
}

static int
d_selector(struct pstate *ps, void *obj, char **args, int nargs)
{
	struct dkim_conf *d = obj;
	struct dkim_selector s = { 0 };

	if (strcmp(args[1], "rsa") == 0)
		s.alg = DKIM_RSA;
	else if (strcmp(args[1], "ed25519") == 0)
		s.alg = DKIM_ED25519;
	else {
		perr(ps, ps->line, "selector: algorithm must be rsa or ed25519, not \"%s\"", args[1]);
		return -1;
	}
	for (int i = 0; i < d->nsel; i++) {
		if (strcmp(d->sel[i].name, args[0]) == 0) {
			perr(ps, ps->line, "selector %s is given twice for %s", args[0], d->domain);
			return -1;
		}
	}
	s.name = xstrdup(args[0]);
	s.keyfile = xstrdup(args[2]);
	s.file = ps->file;
	s.line = ps->line;
	d->sel = xrealloc(d->sel, sizeof(s) * (size_t)(d->nsel + 1));
	d->sel[d->nsel++] = s;
	return 0;
}

static int
d_mx(struct pstate *ps, void *obj, char **args, int nargs)
{
	struct provider_conf *p = (struct provider_conf *)((char *)obj - offsetof(struct provider_conf, lim));
	char *copy = xstrdup(args[0]), *save = NULL;

	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		p->mx = xrealloc(p->mx, sizeof(char *) * (size_t)(p->nmx + 1));
		p->mx[p->nmx++] = str_lower(xstrdup(t));
	}
	free(copy);
	return 0;
}

static int
d_route(struct pstate *ps, void *obj, char **args, int nargs)
{
	struct site_limits *l = obj;
	const char *e;

	if (parse_hostport(args[0], &l->route, &e) < 0) {
		perr(ps, ps->line, "route: \"%s\": %s", args[0], e);
		return -1;
	}
	l->has_route = true;
	return 0;
}

static int
d_route_auth(struct pstate *ps, void *obj, char **args, int nargs)
{
	struct site_limits *l = obj;
	size_t len;
	char *pw = read_file(args[1], &len);

	if (pw == NULL) {
		perr(ps, ps->line, "route-auth: cannot read password file %s: %s", args[1], strerror(errno));
		return -1;
	}
	while (len > 0 && (pw[len - 1] == '\n' || pw[len - 1] == '\r'))
		pw[--len] = '\0';
	free(l->route_user);
	free(l->route_pass);
	l->route_user = xstrdup(args[0]);
	l->route_pass = pw;
	return 0;
}

static int
d_fbl_address(struct pstate *ps, void *obj, char **args, int nargs)
{
	struct config *c = obj;
	const char *at = strrchr(args[0], '@');

	if (at == NULL || at == args[0] || at[1] == '\0' || strchr(args[0], '<') != NULL) {
		perr(ps, ps->line, "fbl-address: \"%s\": expected local@domain", args[0]);
		return -1;
	}
	c->fbl = xrealloc(c->fbl, sizeof(char *) * (size_t)(c->nfbl + 1));
	c->fbl[c->nfbl++] = xstrdup(args[0]);
	return 0;
}

static int
d_warmup(struct pstate *ps, void *obj, char **args, int nargs)
{
	struct source_conf *s = obj;

	free(s->warmup);
	s->warmup = xstrdup(args[0]);
	s->warmup_line = ps->line;
	return 0;
}

static int
d_soft_bounces(struct pstate *ps, void *obj, char **args, int nargs)
{
	struct config *c = obj;
	uint64_t n;
	int64_t ms;
	const char *e = NULL;
	char *split[2], copy[64];

	if (nargs == 1 && strchr(args[0], ' ') != NULL) {
		/* the built-in default comes as one string */
		snprintf(copy, sizeof(copy), "%s", args[0]);
		char *sp = strchr(copy, ' ');
		*sp = '\0';
		split[0] = copy;
		split[1] = sp + 1;
		args = split;
		nargs = 2;
	}
	if (nargs == 1 && (strcmp(args[0], "off") == 0 || strcmp(args[0], "0") == 0)) {
		c->suppress_soft_n = 0;
		c->suppress_soft_window = 0;
		return 0;
	}
	if (nargs != 2) {
		perr(ps, ps->line, "suppress-soft-bounces: expected N DURATION (e.g. 3 7d) or off");
		return -1;
	}
	if (parse_uint(args[0], &n, &e) < 0 || n < 1 || n > 1000) {
		perr(ps, ps->line, "suppress-soft-bounces: \"%s\": expected a count from 1 to 1000", args[0]);
		return -1;
	}
	if (parse_duration(args[1], &ms, &e) < 0 || ms < 60000) {
		perr(ps, ps->line, "suppress-soft-bounces: \"%s\": %s", args[1],
		    e ? e : "expected a duration of at least 1m");
		return -1;
	}
	c->suppress_soft_n = (int)n;
	c->suppress_soft_window = ms;
	return 0;
}

static int
d_warmup_start(struct pstate *ps, void *obj, char **args, int nargs)
{
	struct source_conf *s = obj;

	if (warmup_parse_date(args[0], &s->warmup_start) < 0) {
		perr(ps, ps->line, "warmup-start: \"%s\": expected a date YYYY-MM-DD", args[0]);
		return -1;
	}
	s->has_warmup_start = true;
	return 0;
}

static int
d_wday(struct pstate *ps, void *obj, char **args, int nargs)
{
	char err[512];

	if (warmup_schedule_add_day(obj, args, nargs, ps->line, err, sizeof(err)) < 0) {
		perr(ps, ps->line, "%s", err);
		return -1;
	}
	return 0;
}

static int
d_wfile(struct pstate *ps, void *obj, char **args, int nargs)
{
	struct warmup_schedule *s = obj;
	char err[512];
	char *text = read_file(args[0], NULL);

	if (text == NULL) {
		perr(ps, ps->line, "file: cannot read %s: %s", args[0], strerror(errno));
		return -1;
	}
	int rc = warmup_schedule_parse(s, text, err, sizeof(err));
	free(text);
	if (rc < 0)
		perr(ps, ps->line, "file: %s:%s", args[0], err);
	return rc;
}

/* Tokenizer */

struct token {
	char *s;
	int line;
	bool quoted;
	char brace;                     /* '{' or '}' for an unquoted brace, else 0 */
};

static int
tokenize(struct pstate *ps, const char *text, struct token **out)
{
	struct token *t = NULL;
	int n = 0, cap = 0, line = 1;
	const char *p = text;

	while (*p) {
		if (*p == '\n') {
			line++;
			p++;
			continue;
		}
		if (isspace((unsigned char)*p) || *p == ';') {
			p++;
			continue;
		}
		if (*p == '#') {
			while (*p && *p != '\n')
				p++;
			continue;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			t = xrealloc(t, sizeof(*t) * (size_t)cap);
		}
		t[n].line = line;
		t[n].quoted = false;
		t[n].brace = 0;
		if (*p == '{' || *p == '}') {
			t[n].brace = *p;
			t[n++].s = xstrndup(p, 1);
			p++;
			continue;
		}
		if (*p == '"') {
			const char *q = ++p;
			char *buf = xmalloc(strlen(q) + 1);
			size_t bl = 0;
			while (*q && *q != '"' && *q != '\n') {
				if (*q == '\\' && q[1] && q[1] != '\n')
					q++;
				buf[bl++] = *q++;
			}
			if (*q != '"') {
				perr(ps, line, "unterminated quoted string");
				free(buf);
				p = q;
				continue;
			}
			buf[bl] = '\0';
			t[n].s = buf;
			t[n++].quoted = true;
			p = q + 1;
			continue;
		}
		const char *s = p;
		while (*p && !isspace((unsigned char)*p) && *p != '{' && *p != '}' && *p != '#' && *p != ';' && *p != '"')
			p++;
		t[n++].s = xstrndup(s, (size_t)(p - s));
	}
	*out = t;
	return n;
}

/* Defaults */

static void
apply_defaults(struct pstate *ps, int ctx, void *obj)
{
	int saved_nerr = ps->nerr;

	for (size_t i = 0; i < ARRAY_SIZE(table); i++) {
		const struct directive *d = &table[i];
		if (!(d->ctx & ctx) || d->def == NULL || d->type == T_BLOCK)
			continue;
		if (ctx == CX_PROVIDER || (ctx == CX_DOMAIN && obj != &ps->c->domains[0].lim))
			continue;       /* only "*" carries defaults; others inherit */
		char *args[1] = { (char *)d->def };
		set_value(ps, d, obj, args, 1);
		if (d->limit >= 0)
			((struct site_limits *)obj)->origin[d->limit] = "default";
	}
	if (ps->nerr != saved_nerr)
		fatal("event=bug msg=\"built-in config default does not parse\"");
}

/* Blocks */

static void *
open_block(struct pstate *ps, const char *kind, const char *arg, int line, int *ctx)
{
	struct config *c = ps->c;

#define DUP_CHECK(arr, n, field, what)                                            \
	for (int i = 0; i < (n); i++)                                                 \
		if (strcasecmp((arr)[i].field, arg) == 0) {                               \
			perr(ps, line, what " %s is defined twice (first at %s:%d)", arg,     \
			    (arr)[i].file, (arr)[i].line);                                    \
			return NULL;                                                          \
		}
#define GROW(arr, n) ((arr) = xrealloc((arr), sizeof(*(arr)) * (size_t)((n) + 1)), \
	memset(&(arr)[(n)], 0, sizeof(*(arr))), &(arr)[(n)++])

	if (strcmp(kind, "listener") == 0) {
		struct hostport hp;
		const char *e;
		if (parse_hostport(arg, &hp, &e) < 0 || hp.port == 0) {
			perr(ps, line, "listener: \"%s\": expected ADDRESS:PORT", arg);
			return NULL;
		}
		DUP_CHECK(c->listeners, c->nlisteners, name, "listener");
		struct listener_conf *l = GROW(c->listeners, c->nlisteners);
		l->name = xstrdup(arg);
		l->addr = hp;
		l->file = ps->file;
		l->line = line;
		*ctx = CX_LISTENER;
		apply_defaults(ps, CX_LISTENER, l);
		return l;
	}
	if (strcmp(kind, "source") == 0) {
		DUP_CHECK(c->sources, c->nsources, name, "source");
		struct source_conf *s = GROW(c->sources, c->nsources);
		s->name = xstrdup(arg);
		s->file = ps->file;
		s->line = line;
		*ctx = CX_SOURCE;
		return s;
	}
	if (strcmp(kind, "pool") == 0) {
		DUP_CHECK(c->pools, c->npools, name, "pool");
		struct pool_conf *p = GROW(c->pools, c->npools);
		p->name = xstrdup(arg);
		p->file = ps->file;
		p->line = line;
		*ctx = CX_POOL;
		return p;
	}
	if (strcmp(kind, "domain") == 0) {
		struct domain_conf *d;
		if (strcmp(arg, "*") == 0) {
			d = &c->domains[0];
			if (d->line != 0) {
				perr(ps, line, "domain * is defined twice (first at %s:%d)", d->file, d->line);
				return NULL;
			}
		} else {
			DUP_CHECK(c->domains, c->ndomains, name, "domain");
			d = GROW(c->domains, c->ndomains);
			d->name = str_lower(xstrdup(arg));
		}
		d->file = ps->file;
		d->line = line;
		*ctx = CX_DOMAIN;
		return &d->lim;
	}
	if (strcmp(kind, "provider") == 0) {
		DUP_CHECK(c->providers, c->nproviders, name, "provider");
		struct provider_conf *p = GROW(c->providers, c->nproviders);
		p->name = xstrdup(arg);
		p->file = ps->file;
		p->line = line;
		*ctx = CX_PROVIDER;
		return &p->lim;
	}
	if (strcmp(kind, "dkim") == 0) {
		DUP_CHECK(c->dkim, c->ndkim, domain, "dkim");
		struct dkim_conf *d = GROW(c->dkim, c->ndkim);
		d->domain = str_lower(xstrdup(arg));
		d->file = ps->file;
		d->line = line;
		*ctx = CX_DKIM;
		return d;
	}
	if (strcmp(kind, "warmup-schedule") == 0) {
		for (int i = 0; i < c->nwscheds; i++)
			if (strcasecmp(c->wscheds[i]->name, arg) == 0) {
				perr(ps, line, "warmup-schedule %s is defined twice (first at %s:%d)", arg,
				    c->wscheds[i]->file, c->wscheds[i]->line);
				return NULL;
			}
		struct warmup_schedule *s = warmup_schedule_new(arg);
		s->file = ps->file;
		s->line = line;
		c->wscheds = xrealloc(c->wscheds, sizeof(*c->wscheds) * (size_t)(c->nwscheds + 1));
		c->wscheds[c->nwscheds++] = s;
		*ctx = CX_WSCHED;
		return s;
	}
	return NULL;
#undef DUP_CHECK
#undef GROW
}

/*
 * Pointers into growing arrays go stale when the array is reallocated; the
 * parser only holds the current block's pointer while no other block of
 * the same kind can be opened (blocks do not nest), so that is safe.
 */
static void
parse_tokens(struct pstate *ps, struct token *t, int n)
{
	int ctx = CX_GLOBAL;
	void *obj = ps->c;
	int block_line = 0;
	uint64_t seen[3] = { 0 };       /* directive indexes seen in this block */
	uint64_t gseen[3] = { 0 };
	const char *block_kind = NULL;

	for (int i = 0; i < n;) {
		ps->line = t[i].line;
		const char *name = t[i].s;

		if (t[i].brace == '}') {
			if (ctx == CX_GLOBAL)
				perr(ps, t[i].line, "unexpected '}'");
			ctx = CX_GLOBAL;
			obj = ps->c;
			block_kind = NULL;
			i++;
			continue;
		}
		if (t[i].brace == '{') {
			perr(ps, t[i].line, "unexpected '{'");
			i++;
			continue;
		}
		bool elsewhere;
		const struct directive *d = lookup(name, ctx, &elsewhere);
		if (d == NULL) {
			if (elsewhere)
				perr(ps, t[i].line, "%s is not allowed in %s", name, ctx_name(ctx));
			else
				perr(ps, t[i].line, "unknown directive \"%s\"", name);
			/* skip to the end of the line (or of a block it opens) */
			int line = t[i].line;
			i++;
			while (i < n && t[i].line == line && t[i].brace != '}') {
				if (t[i].brace == '{') {
					while (i < n && t[i].brace != '}')
						i++;
				}
				i++;
			}
			continue;
		}
		int line = t[i].line;
		int di = (int)(d - table);
		i++;
		/* gather arguments */
		char *args[132];
		int nargs = 0;
		if (d->nargs < 0) {
			while (i < n && t[i].line == line && t[i].brace != '}' &&
			    t[i].brace != '{' && nargs < (int)ARRAY_SIZE(args))
				args[nargs++] = t[i++].s;
			if (nargs == 0) {
				perr(ps, line, "%s: expected %s", d->name, d->args);
				continue;
			}
			if (i < n && t[i].line == line && !t[i].brace) {
				perr(ps, line, "%s: more than %d words", d->name, (int)ARRAY_SIZE(args));
				while (i < n && t[i].line == line && !t[i].brace)
					i++;
				continue;
			}
		} else {
			while (nargs < d->nargs && i < n && t[i].brace != '{' &&
			    t[i].brace != '}' && t[i].line == line)
				args[nargs++] = t[i++].s;
			/* optional "weight N" after a pool's source name */
			if (d->fn == d_pool_source && nargs == 1 && i + 1 < n && t[i].line == line &&
			    !t[i].brace && strcmp(t[i].s, "weight") == 0) {
				args[nargs++] = t[i++].s;
				if (i < n && t[i].line == line && !t[i].brace)
					args[nargs++] = t[i++].s;
			}
			if (nargs < d->nargs) {
				perr(ps, line, "%s: expected %s", d->name, d->args);
				while (i < n && t[i].line == line && t[i].brace != '}' && t[i].brace != '{')
					i++;
				if (d->type != T_BLOCK)
					continue;
			}
		}
		if (d->type == T_BLOCK) {
			if (i >= n || t[i].brace != '{') {
				perr(ps, line, "%s %s: expected '{'", d->name, nargs ? args[0] : "");
				continue;
			}
			i++;
			if (nargs < 1)
				continue;
			int bctx;
			void *b = open_block(ps, d->name, args[0], line, &bctx);
			if (b == NULL) {
				/* skip the block */
				while (i < n && t[i].brace != '}')
					i++;
				i++;
				continue;
			}
			ctx = bctx;
			obj = b;
			block_line = line;
			block_kind = d->name;
			memset(seen, 0, sizeof(seen));
			continue;
		}
		/* repeatable: custom list directives; everything else once per block */
		bool repeatable = d->type == T_CUSTOM && d->fn != d_route && d->fn != d_route_auth &&
		    d->fn != d_soft_bounces && d->fn != d_warmup && d->fn != d_warmup_start;
		uint64_t *s = ctx == CX_GLOBAL ? gseen : seen;
		if (!repeatable && (s[di / 64] & (1ULL << (di % 64)))) {
			perr(ps, line, "%s is given twice in %s", d->name, ctx == CX_GLOBAL ? "the config" : ctx_name(ctx));
			continue;
		}
		s[di / 64] |= 1ULL << (di % 64);
		if (set_value(ps, d, obj, args, nargs) == 0 && d->limit >= 0) {
			struct site_limits *l = obj;
			l->set |= 1U << d->limit;
			l->origin[d->limit] = origin(ps);
		}
	}
	if (ctx != CX_GLOBAL)
		perr(ps, block_line, "%s block is not closed with '}'", block_kind);
}

/* LDH labels separated by dots (a name we can put after the @ of a
 * Return-Path). */
static bool
domain_name_ok(const char *d)
{
	size_t len = strlen(d), label = 0;

	if (len == 0 || len > 253 || d[0] == '.' || d[len - 1] == '.')
		return false;
	for (const char *p = d; *p; p++) {
		if (*p == '.') {
			if (label == 0 || p[-1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!isalnum((unsigned char)*p) && !(*p == '-' && label > 0))
			return false;
		if (++label > 63)
			return false;
	}
	return true;
}

/* Checks after parsing: references, required pairs, keys. */
static void
validate(struct pstate *ps)
{
	struct config *c = ps->c;

	if (c->hostname == NULL) {
		char h[256];
		if (gethostname(h, sizeof(h)) < 0 || h[0] == '\0')
			snprintf(h, sizeof(h), "localhost");
		h[sizeof(h) - 1] = '\0';
		c->hostname = xstrdup(h);
	}
	if (c->bounce_from == NULL)
		c->bounce_from = xasprintf("MAILER-DAEMON@%s", c->hostname);
	for (int i = 0; i < c->nlisteners; i++) {
		struct listener_conf *l = &c->listeners[i];
		if ((l->tls_cert == NULL) != (l->tls_key == NULL))
			perr(ps, l->line, "listener %s: tls-certificate and tls-key go together", l->name);
		if (l->auth != AUTH_NONE && l->auth_users == NULL)
			perr(ps, l->line, "listener %s: auth needs auth-users", l->name);
		if (l->auth != AUTH_NONE && l->tls_cert == NULL)
			perr(ps, l->line, "listener %s: auth is only offered over TLS; add tls-certificate and tls-key", l->name);
		if (l->tls_cert && access(l->tls_cert, R_OK) < 0)
			perr(ps, l->line, "listener %s: cannot read tls-certificate %s: %s", l->name, l->tls_cert, strerror(errno));
		if (l->tls_key && access(l->tls_key, R_OK) < 0)
			perr(ps, l->line, "listener %s: cannot read tls-key %s: %s", l->name, l->tls_key, strerror(errno));
		if (l->auth_users && access(l->auth_users, R_OK) < 0)
			perr(ps, l->line, "listener %s: cannot read auth-users %s: %s", l->name, l->auth_users, strerror(errno));
	}
	for (int i = 0; i < c->npools; i++) {
		struct pool_conf *p = &c->pools[i];
		if (p->nmembers == 0)
			perr(ps, p->line, "pool %s has no source", p->name);
		for (int m = 0; m < p->nmembers; m++) {
			struct pool_member *pm = &p->members[m];
			if ((pm->source = conf_source(c, pm->name)) == NULL)
				perr(ps, pm->line, "pool %s: unknown source \"%s\"", p->name, pm->name);
		}
	}
	for (int i = 0; i < c->nproviders; i++)
		if (c->providers[i].nmx == 0)
			perr(ps, c->providers[i].line, "provider %s has no mx patterns", c->providers[i].name);
	for (int i = 0; i < c->ndomains; i++) {
		struct domain_conf *d = &c->domains[i];
		if ((d->lim.set & (1U << L_ROUTE_AUTH)) && !(d->lim.set & (1U << L_ROUTE)))
			perr(ps, d->line, "domain %s: route-auth needs a route", d->name);
	}
	for (int i = 0; i < c->npools; i++) {
		struct pool_conf *p = &c->pools[i];
		if (p->dkim_domain && conf_dkim(c, p->dkim_domain) == NULL)
			perr(ps, p->line, "pool %s: dkim-domain %s has no dkim block", p->name, p->dkim_domain);
	}
	for (int i = 0; i < c->nwscheds; i++)
		if (c->wscheds[i]->ndays == 0)
			perr(ps, c->wscheds[i]->line, "warmup-schedule %s has no day lines",
			    c->wscheds[i]->name);
	for (int i = 0; i < c->nsources; i++) {
		struct source_conf *s = &c->sources[i];
		const struct warmup_schedule *ws = NULL;
		if (s->warmup == NULL || strcmp(s->warmup, "off") == 0) {
			if (s->has_warmup_start)
				perr(ps, s->line, "source %s: warmup-start needs warmup", s->name);
			continue;
		}
		for (int k = 0; k < c->nwscheds && ws == NULL; k++)
			if (strcasecmp(c->wscheds[k]->name, s->warmup) == 0)
				ws = c->wscheds[k];
		if (ws == NULL && strcmp(s->warmup, "default") == 0) {
			/* the built-in plan, unless the config defines its own "default" */
			char werr[512];
			struct warmup_schedule *d = warmup_schedule_new("default");
			d->file = intern(c, "(built-in warmup-default.conf)");
			if (warmup_schedule_parse(d, warmup_default_text, werr, sizeof(werr)) < 0)
				fatal("event=bug msg=\"built-in warm-up schedule does not parse: %s\"", werr);
			c->wscheds = xrealloc(c->wscheds, sizeof(*c->wscheds) * (size_t)(c->nwscheds + 1));
			c->wscheds[c->nwscheds++] = d;
			ws = d;
		}
		if (ws == NULL) {
			perr(ps, s->warmup_line, "source %s: warmup: no warmup-schedule named \"%s\"",
			    s->name, s->warmup);
			continue;
		}
		if (ws->ndays == 0)
			continue;
		s->wsched = ws;
		c->nwarmup++;
	}
	char berr[1024];
	c->bounce = bounce_rules_load(c->bounce_rules, berr, sizeof(berr));
	if (c->bounce == NULL)
		perr(ps, c->bounce_rules_line, "bounce-rules: %s", berr);
	c->backoff = backoff_rules_load(c->backoff_rules, berr, sizeof(berr));
	if (c->backoff == NULL)
		perr(ps, c->backoff_rules_line, "backoff-rules: %s", berr);
	if (c->bounce_domain != NULL) {
		if (!domain_name_ok(c->bounce_domain))
			perr(ps, c->bounce_domain_line, "bounce-domain: \"%s\": expected a domain name",
			    c->bounce_domain);
		str_lower(c->bounce_domain);
		if (c->verp_keyfile == NULL)
			perr(ps, c->bounce_domain_line, "bounce-domain needs verp-key (the HMAC secret of the tokens)");
	}
	if (c->verp_keyfile != NULL) {
		char e[512];
		if (c->bounce_domain == NULL)
			perr(ps, c->verp_key_line, "verp-key needs bounce-domain");
		else if ((c->verp_key = verp_key_load(c->verp_keyfile, &c->verp_keylen, e, sizeof(e))) == NULL)
			perr(ps, c->verp_key_line, "verp-key: %s", e);
	}
	for (int i = 0; i < c->ndkim; i++) {
		struct dkim_conf *d = &c->dkim[i];
		if (d->nsel == 0)
			perr(ps, d->line, "dkim %s has no selector", d->domain);
		for (int s = 0; s < d->nsel; s++) {
			char e[256];
			if (dkim_key_load(&d->sel[s], e, sizeof(e)) < 0)
				perr(ps, d->sel[s].line, "dkim %s selector %s: %s", d->domain, d->sel[s].name, e);
		}
	}
}

static struct config *
parse_text(const char *text, const char *name, char *err, size_t errlen)
{
	struct config *c = xcalloc(1, sizeof(*c));
	struct pstate ps = { .c = c, .err = err, .errlen = errlen };
	struct token *t = NULL;
	int n;

	if (err && errlen)
		err[0] = '\0';
	ps.file = intern(c, name);
	c->path = xstrdup(name);
	c->domains = xcalloc(1, sizeof(*c->domains));
	c->domains[0].name = xstrdup("*");
	c->domains[0].file = ps.file;
	c->ndomains = 1;
	apply_defaults(&ps, CX_GLOBAL, c);
	apply_defaults(&ps, CX_DOMAIN, &c->domains[0].lim);
	n = tokenize(&ps, text, &t);
	parse_tokens(&ps, t, n);
	for (int i = 0; i < n; i++)
		free(t[i].s);
	free(t);
	validate(&ps);
	if (ps.nerr > 0) {
		conf_free(c);
		return NULL;
	}
	return c;
}

struct config *
conf_load_string(const char *text, const char *name, char *err, size_t errlen)
{
	return parse_text(text, name, err, errlen);
}

struct config *
conf_load(const char *path, char *err, size_t errlen)
{
	if (path == NULL)
		return parse_text(conf_default_text, "(built-in default config)", err, errlen);
	char *text = read_file(path, NULL);
	if (text == NULL) {
		snprintf(err, errlen, "%s:0: cannot read config: %s", path, strerror(errno));
		return NULL;
	}
	struct config *c = parse_text(text, path, err, errlen);
	free(text);
	return c;
}

static void
free_limits(struct site_limits *l)
{
	free(l->route_user);
	free(l->route_pass);
}

void
conf_free(struct config *c)
{
	if (c == NULL)
		return;
	free(c->path);
	free(c->hostname);
	free(c->spool);
	free(c->pidfile);
	free(c->control_socket);
	free(c->log);
	free(c->accounting);
	free(c->store);
	free(c->user);
	free(c->bounce_from);
	free(c->bounce_rules);
	bounce_rules_free(c->bounce);
	free(c->backoff_rules);
	backoff_rules_free(c->backoff);
	free(c->bounce_domain);
	free(c->verp_keyfile);
	if (c->verp_key != NULL) {
		OPENSSL_cleanse(c->verp_key, c->verp_keylen);
		free(c->verp_key);
	}
	for (int i = 0; i < c->nfbl; i++)
		free(c->fbl[i]);
	free(c->fbl);
	for (int i = 0; i < c->nlisteners; i++) {
		struct listener_conf *l = &c->listeners[i];
		free(l->name);
		free(l->relay_from);
		free(l->auth_users);
		free(l->tls_cert);
		free(l->tls_key);
	}
	free(c->listeners);
	for (int i = 0; i < c->npools; i++) {
		struct pool_conf *p = &c->pools[i];
		for (int m = 0; m < p->nmembers; m++)
			free(p->members[m].name);
		free(p->members);
		for (int s = 0; s < p->nsender_domains; s++)
			free(p->sender_domains[s]);
		free(p->sender_domains);
		free(p->dkim_domain);
		free(p->name);
	}
	free(c->pools);
	for (int i = 0; i < c->nsources; i++) {
		free(c->sources[i].name);
		free(c->sources[i].address);
		free(c->sources[i].ehlo);
		free(c->sources[i].warmup);
	}
	for (int i = 0; i < c->nwscheds; i++)
		warmup_schedule_free(c->wscheds[i]);
	free(c->wscheds);
	free(c->sources);
	for (int i = 0; i < c->ndomains; i++) {
		free(c->domains[i].name);
		free_limits(&c->domains[i].lim);
	}
	free(c->domains);
	for (int i = 0; i < c->nproviders; i++) {
		for (int m = 0; m < c->providers[i].nmx; m++)
			free(c->providers[i].mx[m]);
		free(c->providers[i].mx);
		free(c->providers[i].name);
		free_limits(&c->providers[i].lim);
	}
	free(c->providers);
	for (int i = 0; i < c->ndkim; i++) {
		for (int s = 0; s < c->dkim[i].nsel; s++) {
			dkim_key_free(&c->dkim[i].sel[s]);
			free(c->dkim[i].sel[s].name);
			free(c->dkim[i].sel[s].keyfile);
		}
		free(c->dkim[i].sel);
		free(c->dkim[i].domain);
	}
	free(c->dkim);
	for (int i = 0; i < c->nstrings; i++)
		free(c->strings[i]);
	free(c->strings);
	free(c);
}

/* The running config and the ones it replaced. */
struct config *volatile conf;
static struct config **old_confs;
static int nold;
static pthread_mutex_t conf_lock = PTHREAD_MUTEX_INITIALIZER;

void
conf_install(struct config *c)
{
	pthread_mutex_lock(&conf_lock);
	if (conf != NULL) {
		old_confs = xrealloc(old_confs, sizeof(*old_confs) * (size_t)(nold + 1));
		old_confs[nold++] = conf;
	}
	__atomic_store_n(&conf, c, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&conf_lock);
}

void
conf_free_all(void)
{
	pthread_mutex_lock(&conf_lock);
	for (int i = 0; i < nold; i++)
		conf_free(old_confs[i]);
	free(old_confs);
	old_confs = NULL;
	nold = 0;
	conf_free(conf);
	conf = NULL;
	pthread_mutex_unlock(&conf_lock);
}

/* Lookups */

struct source_conf *
conf_source(const struct config *c, const char *name)
{
	for (int i = 0; i < c->nsources; i++)
		if (strcmp(c->sources[i].name, name) == 0)
			return &c->sources[i];
	return NULL;
}

struct pool_conf *
conf_pool(const struct config *c, const char *name)
{
	for (int i = 0; i < c->npools; i++)
		if (strcasecmp(c->pools[i].name, name) == 0)
			return &c->pools[i];
	return NULL;
}

struct pool_conf *
conf_default_pool(const struct config *c)
{
	struct pool_conf *p = conf_pool(c, "default");
	if (p == NULL && c->npools > 0)
		p = &c->pools[0];
	return p;
}

struct pool_conf *
conf_pool_for_sender(const struct config *c, const char *sender)
{
	const char *at = strrchr(sender, '@');
	if (at == NULL)
		return NULL;
	for (int i = 0; i < c->npools; i++)
		for (int d = 0; d < c->pools[i].nsender_domains; d++)
			if (strcasecmp(c->pools[i].sender_domains[d], at + 1) == 0)
				return &c->pools[i];
	return NULL;
}

struct dkim_conf *
conf_dkim(const struct config *c, const char *domain)
{
	for (int i = 0; i < c->ndkim; i++)
		if (strcasecmp(c->dkim[i].domain, domain) == 0)
			return &c->dkim[i];
	return NULL;
}

const struct provider_conf *
conf_provider_for_mx(const struct config *c, const char *mxhost)
{
	for (int i = 0; i < c->nproviders; i++)
		for (int m = 0; m < c->providers[i].nmx; m++)
			if (glob_match(c->providers[i].mx[m], mxhost))
				return &c->providers[i];
	return NULL;
}

const struct domain_conf *
conf_domain(const struct config *c, const char *domain)
{
	for (int i = 1; i < c->ndomains; i++)
		if (strcasecmp(c->domains[i].name, domain) == 0)
			return &c->domains[i];
	return NULL;
}

static void
overlay(struct site_limits *out, const struct site_limits *in)
{
	for (size_t i = 0; i < ARRAY_SIZE(table); i++) {
		const struct directive *d = &table[i];
		if (d->limit < 0 || !(in->set & (1U << d->limit)))
			continue;
		switch (d->limit) {
		case L_ROUTE:
			out->has_route = in->has_route;
			out->route = in->route;
			break;
		case L_ROUTE_AUTH:
			out->route_user = in->route_user;   /* borrowed from the config */
			out->route_pass = in->route_pass;
			break;
		case L_RETRY_AFTER:
			memcpy(out->retry_after, in->retry_after, sizeof(out->retry_after));
			out->nretry = in->nretry;
			break;
		default: {
			size_t sz = d->type == T_RATE ? sizeof(struct rate) :
			    d->type == T_DURATION ? sizeof(int64_t) :
			    d->type == T_BOOL ? sizeof(bool) : sizeof(int);
			memcpy((char *)out + d->off, (const char *)in + d->off, sz);
		}
		}
		out->origin[d->limit] = in->origin[d->limit];
		out->set |= 1U << d->limit;
	}
}

void
conf_limits(const struct config *c, const char *domain, const struct provider_conf *prov,
    struct site_limits *out)
{
	const struct domain_conf *d = domain ? conf_domain(c, domain) : NULL;

	*out = c->domains[0].lim;
	out->set = 0;
	/* "*" values keep their own origins; route-auth strings are borrowed */
	if (prov)
		overlay(out, &prov->lim);
	if (d)
		overlay(out, &d->lim);
	out->set = c->domains[0].lim.set | (prov ? prov->lim.set : 0) | (d ? d->lim.set : 0);
	if (out->smtp_port == 0)
		out->smtp_port = c->smtp_port;
}

int64_t
conf_retry_delay(const struct site_limits *l, int attempt)
{
	if (l->nretry == 0)
		return 300000;
	int i = attempt - 1;
	if (i < 0)
		i = 0;
	if (i >= l->nretry)
		i = l->nretry - 1;
	return l->retry_after[i];
}

void
conf_print_directives(void)
{
	static const int order[] = { CX_GLOBAL, CX_LISTENER, CX_SOURCE, CX_POOL, CX_DKIM, CX_PROVIDER, CX_DOMAIN, CX_WSCHED };
	for (size_t o = 0; o < ARRAY_SIZE(order); o++) {
		printf("# %s\n", ctx_name(order[o]));
		for (size_t i = 0; i < ARRAY_SIZE(table); i++) {
			const struct directive *d = &table[i];
			if (!(d->ctx & order[o]))
				continue;
			printf("%s %s\t%s%s%s%s\n", d->name, d->args, d->doc,
			    d->def ? " Default: " : "", d->def ? d->def : "", d->def ? "." : "");
		}
	}
}

/* The built-in config: what conf/dev.conf says, for a first run. */
const char conf_default_text[] =
	"# built-in default: accept on 127.0.0.1:2525, deliver everything to 127.0.0.1:2526\n"
	"spool queue\n"
	"pidfile sluiced.pid\n"
	"control-socket sluice.sock\n"
	"log -\n"
	"accounting -\n"
	"store store\n"
	"listener 127.0.0.1:2525 {\n"
	"    relay-from 127.0.0.0/8\n"
	"}\n"
	"domain * {\n"
	"    route [127.0.0.1]:2526\n"
	"    retry-after 10s,1m,5m\n"
	"    bounce-after 1h\n"
	"}\n";
