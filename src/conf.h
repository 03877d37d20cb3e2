/*
 * conf: sluice.conf, parsed by one table of directives (name, type, default,
 * limits, where it may appear, man page line). Every error names file:line
 * and what was expected. A loaded config is immutable; reload builds a new
 * one and swaps the global pointer, old ones are kept until exit.
 */
#ifndef SLUICE_CONF_H
#define SLUICE_CONF_H

#include <stdbool.h>
#include <stdint.h>
#include "util.h"

struct warmup_schedule;

enum tls_mode { TLS_NONE, TLS_OPPORTUNISTIC, TLS_REQUIRED, TLS_VERIFY };
enum auth_mode { AUTH_NONE, AUTH_OPTIONAL, AUTH_REQUIRED };
enum dkim_alg { DKIM_RSA, DKIM_ED25519 };
/* A recipient on the suppression list: refused at RCPT, or accepted and dropped. */
enum suppressed_mode { SUPPRESSED_REJECT, SUPPRESSED_DROP };

#define MAX_RETRY_STEPS 32

/*
 * Per-destination settings: in `domain NAME {}` and `provider NAME {}`
 * blocks and the `domain * {}` default. Each field has an index so that the
 * merge (default < provider < domain) can remember where a value came from.
 */
enum limit_idx {
	L_MAX_SMTP_OUT, L_MAX_MSG_PER_CONN, L_MAX_RCPT_PER_MSG, L_MAX_MSG_RATE,
	L_MAX_CONNECT_RATE, L_RETRY_AFTER, L_BOUNCE_AFTER, L_MX_ROLLUP, L_TLS,
	L_ROUTE, L_ROUTE_AUTH, L_CONNECT_TIMEOUT, L_GREETING_TIMEOUT,
	L_EHLO_TIMEOUT, L_MAIL_TIMEOUT, L_RCPT_TIMEOUT, L_DATA_TIMEOUT,
	L_DATA_BLOCK_TIMEOUT, L_DOT_TIMEOUT, L_IDLE_TIMEOUT, L_SMTP_PORT,
	L_COUNT
};

struct site_limits {
	int max_smtp_out;              /* concurrent connections per source */
	int max_msg_per_conn;
	int max_rcpt_per_msg;
	struct rate max_msg_rate;      /* count 0 = unlimited */
	struct rate max_connect_rate;
	int64_t retry_after[MAX_RETRY_STEPS]; /* ms; the last step repeats */
	int nretry;
	int64_t bounce_after;          /* ms */
	bool mx_rollup;
	enum tls_mode tls;
	bool has_route;
	struct hostport route;         /* static route: [host]:port */
	char *route_user, *route_pass; /* AUTH to the smart host (route-auth USER PASSFILE) */
	int64_t connect_timeout, greeting_timeout, ehlo_timeout, mail_timeout,
	    rcpt_timeout, data_timeout, data_block_timeout, dot_timeout,
	    idle_timeout;
	int smtp_port;                 /* 0 = the global smtp-port */
	uint32_t set;                  /* bit (1 << L_x): set in this block */
	const char *origin[L_COUNT];   /* "file:line" of each value, or "default" */
};

struct domain_conf {
	char *name;                    /* "example.com", or "*" */
	struct site_limits lim;
	const char *file; int line;
};

struct provider_conf {
	char *name;                    /* "gmail" */
	char **mx;                     /* MX host globs: "*.google.com" */
	int nmx;
	struct site_limits lim;
	const char *file; int line;
};

struct listener_conf {
	char *name;                    /* as written: "127.0.0.1:2525" */
	struct hostport addr;
	struct cidr *relay_from;
	int nrelay;
	enum auth_mode auth;
	char *auth_users;              /* credentials file */
	char *tls_cert, *tls_key;
	uint64_t max_message_size;
	int max_recipients;
	int max_line_length;
	int max_headers;
	int max_connections;
	int max_conn_per_ip;
	int max_errors;
	int64_t command_timeout, data_timeout;
	bool smtputf8;
	enum suppressed_mode suppressed;   /* suppressed-recipients */
	const char *file; int line;
};

struct source_conf {
	char *name;
	char *address;                 /* local IP to bind; NULL = any */
	char *ehlo;                    /* EHLO name; default: global hostname */
	char *warmup;                  /* warm-up schedule name, "default", "off"; NULL = none */
	int warmup_line;
	const struct warmup_schedule *wsched; /* resolved; NULL = no warm-up */
	bool has_warmup_start;
	int64_t warmup_start;          /* warmup-start: UTC days since the epoch */
	const char *file; int line;
};

struct pool_member {
	char *name;                    /* as written; resolved after parsing */
	struct source_conf *source;    /* NULL until then (or when unknown) */
	int weight;
	int line;
};
struct pool_conf {
	char *name;
	struct pool_member *members;
	int nmembers;
	char **sender_domains;         /* sender domains that pick this pool */
	int nsender_domains;
	char *dkim_domain;             /* also sign as this domain (ESP signature) */
	const char *file; int line;
};

struct dkim_selector {
	char *name;
	enum dkim_alg alg;
	char *keyfile;
	void *key;                     /* loaded by dkim_key_load(): EVP_PKEY * */
	const char *file; int line;
};
struct dkim_conf {
	char *domain;
	struct dkim_selector *sel;
	int nsel;
	int64_t expire;                /* x= after this many ms; 0 = none */
	const char *file; int line;
};

struct config {
	char *path;                    /* main config file */
	char *hostname;
	char *spool;
	char *pidfile;
	char *control_socket;
	char *log, *accounting, *store;
	uint64_t store_map_size;
	int64_t engage_half_life;      /* engagement-half-life, ms */
	int log_level;
	int workers;                   /* 0 = auto */
	int spool_threads;
	bool has_resolver;
	struct hostport resolver;
	int smtp_port;
	char *user;
	char *bounce_from;             /* envelope/From of DSNs; default MAILER-DAEMON@hostname */
	char *bounce_rules;            /* reply classification rules file; NULL = built-in */
	int bounce_rules_line;
	struct bounce_rules *bounce;   /* loaded rules (bounce.h) */
	char *backoff_rules;           /* throttling reply rules file; NULL = built-in */
	int backoff_rules_line;
	struct backoff_rules *backoff; /* loaded rules (backoff.h) */
	char *bounce_domain;           /* VERP Return-Path domain; NULL = no VERP */
	int bounce_domain_line;
	char *verp_keyfile;            /* HMAC secret of VERP tokens */
	int verp_key_line;
	uint8_t *verp_key;             /* loaded at validation (verp.h) */
	size_t verp_keylen;
	int64_t verp_expire;           /* ms a send record is kept after arrival */
	char **fbl;                    /* feedback-loop addresses (fbl-address) */
	int nfbl;
	int suppress_soft_n;           /* soft bounces in a run that suppress; 0 = off */
	int64_t suppress_soft_window;  /* ms: the run must fit in this */
	bool suppress_gmail;           /* Gmail rule in address normalisation */
	/* list hygiene of marketing campaigns (hygiene.h) */
	int64_t sunset_after;          /* ms without engagement; 0 = no sunset */
	int sunset_min_sends, sunset_reengage;
	int bounce_risk_soft;          /* soft bounces that make a bounce risk; 0 = off */
	int64_t bounce_risk_no_mx;     /* how long a domain without MX is skipped; 0 = off */
	bool skip_role_addresses;
	int64_t trap_suspect_age;

	struct listener_conf *listeners; int nlisteners;
	struct source_conf *sources;     int nsources;
	struct pool_conf *pools;         int npools;
	struct domain_conf *domains;     int ndomains;   /* domains[0] is "*" */
	struct provider_conf *providers; int nproviders;
	struct dkim_conf *dkim;          int ndkim;
	struct warmup_schedule **wscheds; int nwscheds; /* warmup-schedule blocks (+ "default") */
	int nwarmup;                   /* sources with a warm-up schedule */

	char **strings; int nstrings;  /* file names for origins, freed with the config */
};

/*
 * Parse a file. On error returns NULL and fills err with every problem,
 * one "file:line: message" per line. The embedded default config is used
 * when path is NULL.
 */
struct config *conf_load(const char *path, char *err, size_t errlen);
struct config *conf_load_string(const char *text, const char *name, char *err, size_t errlen);
void conf_free(struct config *c);

/* The running config. Swapped on reload; old configs stay valid until exit. */
extern struct config *volatile conf;
void conf_install(struct config *c);   /* make c current (keeps the old one alive) */
void conf_free_all(void);              /* at exit */

/* Lookups on a config. */
struct pool_conf *conf_pool(const struct config *c, const char *name);
struct pool_conf *conf_pool_for_sender(const struct config *c, const char *sender);
struct pool_conf *conf_default_pool(const struct config *c);
struct source_conf *conf_source(const struct config *c, const char *name);
struct dkim_conf *conf_dkim(const struct config *c, const char *domain);
const struct provider_conf *conf_provider_for_mx(const struct config *c, const char *mxhost);
const struct domain_conf *conf_domain(const struct config *c, const char *domain);
/* Effective limits for a domain (and the provider its MX matched, may be NULL). */
void conf_limits(const struct config *c, const char *domain,
    const struct provider_conf *prov, struct site_limits *out);
int64_t conf_retry_delay(const struct site_limits *l, int attempt);  /* attempt >= 1 */

/* The directive table, for docs and `sluicectl site` provenance. */
const char *conf_limit_name(enum limit_idx i);
/* Dump the directive table as man page lines (sluiced -D). */
void conf_print_directives(void);

/* The embedded default config (conf/dev.conf equivalent). */
extern const char conf_default_text[];

#endif
