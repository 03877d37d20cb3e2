/*
 * dns: c-ares on the worker loops. MX lookups with the A/AAAA of each MX
 * (or of the domain itself when it has no MX, RFC 5321 5.1), null MX
 * (RFC 7505), a per-loop cache honouring TTLs, and TXT lookups for
 * `sluicectl dkim check`. Each worker has its own struct dns.
 */
#ifndef SLUICE_DNS_H
#define SLUICE_DNS_H

#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct config;

enum dns_status {
	DNS_OK = 0,
	DNS_NXDOMAIN,      /* domain does not exist: permanent (5.1.2) */
	DNS_NULLMX,        /* RFC 7505 "MX 0 .": permanent (5.1.10) */
	DNS_NOHOST,        /* no MX and no A/AAAA: permanent (5.1.2) */
	DNS_TEMPFAIL,      /* SERVFAIL, timeout, refused: transient (4.4.3) */
};

#define DNS_MAX_ADDRS 8
#define DNS_MAX_HOSTS 16
struct dns_host {
	char name[256];                /* MX host name, lower case, no trailing dot */
	uint16_t pref;
	int naddrs;
	struct sockaddr_storage addrs[DNS_MAX_ADDRS]; /* port 0; IPv4 first */
};

struct dns_result {
	enum dns_status status;
	char errmsg[128];              /* human text for failures */
	int nhosts;                    /* MX order: by preference, shuffled among equals */
	struct dns_host hosts[DNS_MAX_HOSTS];
	int64_t expires_ms;            /* wall clock; min TTL of what was used */
	int implicit_mx;               /* 1 when no MX: the domain's own A/AAAA */
};

typedef void (*dns_cb)(const struct dns_result *res, void *arg);

/* resolver from the config (resolver HOST:PORT) or /etc/resolv.conf.
 * Aborts (fatal) when c-ares cannot be set up: a worker without a
 * resolver cannot deliver anything. */
struct dns *dns_new(struct event_base *base, const struct config *c);
/* Same with explicit servers ("127.0.0.1:5353,[::1]:53"; NULL =
 * resolv.conf) and query timeout/tries (0 = defaults: 2500 ms, doubled on the second of 2 tries). */
struct dns *dns_new_servers(struct event_base *base, const char *servers,
    int timeout_ms, int tries);
/* Take a new resolver setting (reload) and flush the cache. 0 or -1. */
int dns_reconfigure(struct dns *d, const struct config *c);
/*
 * Pending lookups are dropped without calling back: call it after the loop
 * has stopped, never from inside a dns callback.
 */
void dns_free(struct dns *d);

/*
 * Resolve the delivery targets of a domain. cb is always called exactly
 * once, possibly before dns_resolve_mx returns (cache hit). res is only
 * valid during the callback. Concurrent lookups of one name are merged.
 * Results: DNS_OK (hosts with at least one address each), DNS_NXDOMAIN,
 * DNS_NULLMX, DNS_NOHOST (no MX and no address, or no MX host has an
 * address), DNS_TEMPFAIL (also when every MX host failed temporarily).
 */
void dns_resolve_mx(struct dns *d, const char *domain, dns_cb cb, void *arg);
/* Resolve one host name (static routes): a result with one host, pref 0.
 * An IP literal ("192.0.2.1", "[192.0.2.1]", "[IPv6:2001:db8::1]")
 * resolves at once without a query. */
void dns_resolve_host(struct dns *d, const char *host, dns_cb cb, void *arg);

/* TXT records of a name, concatenated strings per record, joined by "\n".
 * status is an enum dns_status: DNS_OK with txt, DNS_NXDOMAIN, DNS_NOHOST
 * (name exists, no TXT), DNS_TEMPFAIL; txt is NULL unless DNS_OK and only
 * valid during the callback. Not cached. */
typedef void (*dns_txt_cb)(int status, const char *txt, void *arg);
void dns_lookup_txt(struct dns *d, const char *name, dns_txt_cb cb, void *arg);

/* Drop cached entries (reload). */
void dns_flush(struct dns *d);

/* Tests: replace the wall clock used for cache expiry (NULL = now_ms). */
void dns_set_clock(struct dns *d, int64_t (*clock)(void));

#endif
