/*
 * util: allocation that aborts on OOM, fatal errors, time, and the small
 * value parsers (sizes, durations, rates) shared by the config, the SMTP
 * code and the control API.
 */
#ifndef SLUICE_UTIL_H
#define SLUICE_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <time.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif
#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* The first n bytes of s without leading and trailing white space. */
char *xstrndup_trim(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print to the log (and stderr while not daemonized) and exit(1). */
void fatal(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* Wall clock in milliseconds and seconds; monotonic clock in milliseconds. */
int64_t now_ms(void);
int64_t mono_ms(void);

/* RFC 3339 UTC timestamp with milliseconds into buf (>= 32 bytes). */
void fmt_time3339(char *buf, size_t len, int64_t ms);
/* Parse RFC 3339 ("2026-11-24T19:00:00Z", fraction and offset allowed). 0 or -1. */
int parse_time3339(const char *s, int64_t *out_ms);

/* Value parsers: return 0 on success, -1 with *err set to a static text. */
int parse_size(const char *s, uint64_t *out, const char **err);      /* 64K 50M 1G */
int parse_duration(const char *s, int64_t *out_ms, const char **err); /* 500ms 30s 10m 4h 2d 1w */
int parse_uint(const char *s, uint64_t *out, const char **err);
int parse_bool(const char *s, bool *out, const char **err);           /* yes/no true/false on/off */

/* A rate: `count` events per `per_ms` milliseconds (3600/h, 20/m, 5/s, 100/10m). */
struct rate {
	uint64_t count;
	int64_t per_ms;
};
int parse_rate(const char *s, struct rate *out, const char **err);
void fmt_rate(char *buf, size_t len, const struct rate *r);
void fmt_duration(char *buf, size_t len, int64_t ms);

/* Network address with optional port: 127.0.0.1:25, [::1]:25, [host]:port. */
struct hostport {
	char host[256];
	uint16_t port;      /* 0 when absent */
};
int parse_hostport(const char *s, struct hostport *out, const char **err);

/* CIDR network (IPv4 or IPv6) and a membership test on a sockaddr. */
struct cidr {
	int family;         /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	int bits;
};
int parse_cidr(const char *s, struct cidr *out, const char **err);
struct sockaddr;
bool cidr_match(const struct cidr *c, const struct sockaddr *sa);

/* Lower-case ASCII in place; returns s. */
char *str_lower(char *s);
/* Case-insensitive ASCII prefix test. */
bool str_iprefix(const char *s, const char *prefix);
/* FNV-1a over a string, case-folded (site and domain names). */
uint64_t hash_str(const char *s);
/* Glob with '*' only, case-insensitive ("*.google.com"). */
bool glob_match(const char *pattern, const char *s);

/* Queue ids: 26 base32 chars + NUL, a 40-bit millisecond time prefix
 * (ids sort by arrival) then 90 random bits. */
void random_id(char out[27]);
/* Cryptographically random bytes (OpenSSL); aborts on failure. */
void random_bytes(void *buf, size_t n);

/* A growing NUL-terminated string buffer. Start it zeroed; free(b.p). */
struct sbuf {
	char *p;
	size_t len, cap;
};
/* Make room for `more` bytes (plus the NUL) after len. */
void sb_grow(struct sbuf *b, size_t more);
void sb_add(struct sbuf *b, const void *s, size_t n);
void sb_str(struct sbuf *b, const char *s);
void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A one-shot hand-over: one thread waits until another has reported. */
struct completion {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int result;
};
#define COMPLETION_INIT { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0 }
void completion_signal(struct completion *c, int result);
/* Wait for the report, free the completion's resources, return the result. */
int completion_wait(struct completion *c);

/* Write all of buf, retrying on EINTR and short writes. */
int write_all(int fd, const void *buf, size_t n);
/* Read a whole small file into a NUL-terminated buffer. */
char *read_file(const char *path, size_t *len);

#endif
