/*
 * util: allocation wrappers that abort on OOM, fatal(), clocks, and the
 * value parsers used by the config and the API. Parsers never allocate and
 * report a static error text, so callers can prefix file:line.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "log.h"
#include "util.h"

static void
oom(size_t n)
{
	static const char msg[] = "sluice: out of memory\n";
	(void)n;
	(void)!write(2, msg, sizeof(msg) - 1);
	abort();
}

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		oom(n);
	return p;
}

void *
xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
	if (p == NULL)
		oom(nmemb * size);
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (p == NULL)
		oom(n);
	return p;
}

char *
xstrdup(const char *s)
{
	char *p = strdup(s);
	if (p == NULL)
		oom(strlen(s));
	return p;
}

char *
xstrndup(const char *s, size_t n)
{
	char *p = strndup(s, n);
	if (p == NULL)
		oom(n);
	return p;
}

char *
xstrndup_trim(const char *s, size_t n)
{
	while (n > 0 && isspace((unsigned char)*s)) {
		s++;
		n--;
	}
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		n--;
	return xstrndup(s, n);
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	if (vasprintf(&p, fmt, ap) < 0)
		oom(0);
	va_end(ap);
	return p;
}

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_ERR, fmt, ap);
	va_end(ap);
	exit(1);
}

int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
fmt_time3339(char *buf, size_t len, int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char tmp[32];

	gmtime_r(&t, &tm);
	strftime(tmp, sizeof(tmp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%03dZ", tmp, (int)(ms % 1000));
}

/* Parse a decimal number followed by an optional unit; *end gets the rest. */
static int
parse_num(const char *s, uint64_t *out, const char **end)
{
	uint64_t v = 0;
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return -1;
	for (; isdigit((unsigned char)*p); p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*out = v;
	*end = p;
	return 0;
}

int
parse_uint(const char *s, uint64_t *out, const char **err)
{
	const char *end;

	if (parse_num(s, out, &end) < 0 || *end != '\0') {
		*err = "expected a non-negative integer";
		return -1;
	}
	return 0;
}

int
parse_size(const char *s, uint64_t *out, const char **err)
{
	uint64_t v, mul = 1;
	const char *u;

	if (parse_num(s, &v, &u) < 0) {
		*err = "expected a size like 512, 64K, 50M or 1G";
		return -1;
	}
	switch (toupper((unsigned char)*u)) {
	case '\0': break;
	case 'K': mul = 1024; u++; break;
	case 'M': mul = 1024 * 1024; u++; break;
	case 'G': mul = 1024ULL * 1024 * 1024; u++; break;
	default: *err = "unknown size unit (use K, M or G)"; return -1;
	}
	if (toupper((unsigned char)*u) == 'B')
		u++;
	if (*u != '\0') {
		*err = "expected a size like 512, 64K, 50M or 1G";
		return -1;
	}
	if (v > UINT64_MAX / mul) {
		*err = "size too large";
		return -1;
	}
	*out = v * mul;
	return 0;
}

static int
unit_ms(const char *u, int64_t *mul)
{
	if (strcmp(u, "ms") == 0) *mul = 1;
	else if (strcmp(u, "s") == 0 || *u == '\0') *mul = 1000;
	else if (strcmp(u, "m") == 0 || strcmp(u, "min") == 0) *mul = 60 * 1000;
	else if (strcmp(u, "h") == 0) *mul = 3600 * 1000;
	else if (strcmp(u, "d") == 0) *mul = 86400 * 1000;
	else if (strcmp(u, "w") == 0) *mul = 7 * 86400 * 1000LL;
	else return -1;
	return 0;
}

int
parse_duration(const char *s, int64_t *out_ms, const char **err)
{
	uint64_t v;
	int64_t mul;
	const char *u;

	if (parse_num(s, &v, &u) < 0 || unit_ms(u, &mul) < 0) {
		*err = "expected a duration like 500ms, 30s, 10m, 4h or 2d";
		return -1;
	}
	if (v > (uint64_t)INT64_MAX / (uint64_t)mul) {
		*err = "duration too large";
		return -1;
	}
	*out_ms = (int64_t)v * mul;
	return 0;
}

int
parse_bool(const char *s, bool *out, const char **err)
{
	if (!strcasecmp(s, "yes") || !strcasecmp(s, "true") || !strcasecmp(s, "on") || !strcmp(s, "1"))
		*out = true;
	else if (!strcasecmp(s, "no") || !strcasecmp(s, "false") || !strcasecmp(s, "off") || !strcmp(s, "0"))
		*out = false;
	else {
		*err = "expected yes or no";
		return -1;
	}
	return 0;
}

int
parse_rate(const char *s, struct rate *out, const char **err)
{
	uint64_t n, per = 1;
	const char *p, *u;
	int64_t mul;

	*err = "expected a rate like 3600/h, 20/m, 5/s or 100/10m";
	if (parse_num(s, &n, &p) < 0 || *p != '/')
		return -1;
	p++;
	if (isdigit((unsigned char)*p)) {
		if (parse_num(p, &per, &u) < 0 || per == 0)
			return -1;
		p = u;
	}
	if (*p == '\0' || unit_ms(p, &mul) < 0 || per > (uint64_t)(INT64_MAX / mul))
		return -1;
	out->count = n;
	out->per_ms = (int64_t)per * mul;
	return 0;
}

void
fmt_duration(char *buf, size_t len, int64_t ms)
{
	static const struct { int64_t ms; const char *u; } units[] = {
		{ 7 * 86400000LL, "w" }, { 86400000, "d" }, { 3600000, "h" },
		{ 60000, "m" }, { 1000, "s" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (ms != 0 && ms % units[i].ms == 0) {
			snprintf(buf, len, "%" PRId64 "%s", ms / units[i].ms, units[i].u);
			return;
		}
	}
	snprintf(buf, len, "%" PRId64 "ms", ms);
}

void
fmt_rate(char *buf, size_t len, const struct rate *r)
{
	char d[32];

	if (r->count == 0) {
		snprintf(buf, len, "unlimited");
		return;
	}
	fmt_duration(d, sizeof(d), r->per_ms);
	/* "3600/1h" reads better as "3600/h" */
	snprintf(buf, len, "%" PRIu64 "/%s", r->count, d[0] == '1' && !isdigit((unsigned char)d[1]) ? d + 1 : d);
}

int
parse_hostport(const char *s, struct hostport *out, const char **err)
{
	const char *colon, *hend;
	size_t hlen;

	memset(out, 0, sizeof(*out));
	if (*s == '[') {
		hend = strchr(s, ']');
		if (hend == NULL) {
			*err = "missing ']' in [host]:port";
			return -1;
		}
		s++;
		hlen = (size_t)(hend - s);
		colon = hend[1] == ':' ? hend + 1 : NULL;
		if (hend[1] != '\0' && colon == NULL) {
			*err = "expected [host]:port";
			return -1;
		}
	} else {
		colon = strrchr(s, ':');
		if (colon != NULL && strchr(s, ':') != colon) {
			/* bare IPv6 without brackets: no port */
			colon = NULL;
		}
		hlen = colon ? (size_t)(colon - s) : strlen(s);
	}
	if (hlen == 0 || hlen >= sizeof(out->host)) {
		*err = "expected a host name or address";
		return -1;
	}
	memcpy(out->host, s, hlen);
	out->host[hlen] = '\0';
	if (colon != NULL) {
		uint64_t p;
		const char *e;
		if (parse_uint(colon + 1, &p, &e) < 0 || p == 0 || p > 65535) {
			*err = "port must be 1-65535";
			return -1;
		}
		out->port = (uint16_t)p;
	}
	return 0;
}

int
parse_cidr(const char *s, struct cidr *out, const char **err)
{
	char buf[64];
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	int maxbits;

	*err = "expected an address or network like 127.0.0.0/8 or ::1/128";
	if (n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = AF_INET;
		maxbits = 32;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		out->family = AF_INET6;
		maxbits = 128;
	} else
		return -1;
	out->bits = maxbits;
	if (slash != NULL) {
		uint64_t b;
		const char *e;
		if (parse_uint(slash + 1, &b, &e) < 0 || b > (uint64_t)maxbits) {
			*err = "bad prefix length";
			return -1;
		}
		out->bits = (int)b;
	}
	return 0;
}

static bool
bits_match(const uint8_t *a, const uint8_t *b, int bits)
{
	int full = bits / 8, rem = bits % 8;

	if (memcmp(a, b, (size_t)full) != 0)
		return false;
	if (rem == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rem));
	return (a[full] & mask) == (b[full] & mask);
}

bool
cidr_match(const struct cidr *c, const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		if (c->family == AF_INET)
			return bits_match(c->addr, (const uint8_t *)&in->sin_addr, c->bits);
		return false;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		const uint8_t *a = (const uint8_t *)&in6->sin6_addr;
		if (c->family == AF_INET6)
			return bits_match(c->addr, a, c->bits);
		/* IPv4-mapped IPv6 against an IPv4 network */
		static const uint8_t mapped[12] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff };
		if (memcmp(a, mapped, 12) == 0)
			return bits_match(c->addr, a + 12, c->bits);
	}
	return false;
}

char *
str_lower(char *s)
{
	for (char *p = s; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return s;
}

bool
str_iprefix(const char *s, const char *prefix)
{
	return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

uint64_t
hash_str(const char *s)
{
	uint64_t h = 14695981039346656037ULL;

	for (; *s; s++) {
		h ^= (uint8_t)tolower((unsigned char)*s);
		h *= 1099511628211ULL;
	}
	return h;
}

bool
glob_match(const char *pat, const char *s)
{
	const char *star = NULL, *ss = NULL;

	while (*s) {
		if (*pat == '*') {
			star = pat++;
			ss = s;
		} else if (tolower((unsigned char)*pat) == tolower((unsigned char)*s)) {
			pat++;
			s++;
		} else if (star) {
			pat = star + 1;
			s = ++ss;
		} else
			return false;
	}
	while (*pat == '*')
		pat++;
	return *pat == '\0';
}

void
random_bytes(void *buf, size_t n)
{
	if (RAND_bytes(buf, (int)n) != 1)
		fatal("event=fatal msg=\"RAND_bytes failed\"");
}

void
random_id(char out[27])
{
	static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
	uint8_t r[18];

	/* Time-ordered prefix (ms, 40 bits = 8 chars) keeps spool scans and
	 * listings roughly chronological; the rest is random. */
	uint64_t t = (uint64_t)now_ms();
	for (int i = 7; i >= 0; i--) {
		out[i] = b32[t & 31];
		t >>= 5;
	}
	random_bytes(r, sizeof(r));
	for (int i = 8; i < 26; i++)
		out[i] = b32[r[i - 8] & 31];
	out[26] = '\0';
}

void
sb_grow(struct sbuf *b, size_t more)
{
	if (b->len + more + 1 > b->cap) {
		b->cap = MAX(b->cap * 2, b->len + more + 256);
		b->p = xrealloc(b->p, b->cap);
	}
}

void
sb_add(struct sbuf *b, const void *s, size_t n)
{
	sb_grow(b, n);
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void
sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

void
sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	char tmp[256];
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(tmp)) {
		sb_add(b, tmp, (size_t)n);
		return;
	}
	char *big = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	sb_add(b, big, (size_t)n);
	free(big);
}

int
write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

char *
read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;
	size_t have = 0;

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return NULL;
	}
	size_t cap = (size_t)st.st_size + 1;
	buf = xmalloc(cap);
	for (;;) {
		if (have + 1 >= cap) {
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
		ssize_t r = read(fd, buf + have, cap - have - 1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			free(buf);
			close(fd);
			errno = e;
			return NULL;
		}
		if (r == 0)
			break;
		have += (size_t)r;
	}
	close(fd);
	buf[have] = '\0';
	if (len)
		*len = have;
	return buf;
}

int
parse_time3339(const char *s, int64_t *out_ms)
{
	int y, mo, d, h, mi, sec, n = 0;
	int64_t ms = 0;
	const char *p;

	if (sscanf(s, "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n == 0)
		return -1;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || y < 1970)
		return -1;
	p = s + n;
	if (*p == '.') {
		int digits = 0;
		for (p++; isdigit((unsigned char)*p); p++, digits++)
			if (digits < 3)
				ms = ms * 10 + (*p - '0');
		if (digits == 0)
			return -1;
		for (; digits < 3; digits++)
			ms *= 10;
	}
	int64_t off = 0;
	if (*p == 'Z' || *p == 'z')
		p++;
	else if (*p == '+' || *p == '-') {
		int oh, om;
		if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2 || oh > 23 || om > 59)
			return -1;
		off = (*p == '+' ? 1 : -1) * ((int64_t)oh * 3600 + om * 60);
		p += 6;
	} else
		return -1;
	if (*p != '\0')
		return -1;
	/* days from civil (proleptic Gregorian) */
	int yy = y - (mo <= 2);
	int era = yy / 400;
	int yoe = yy - era * 400;
	int doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	int64_t days = (int64_t)era * 146097 + doe - 719468;
	*out_ms = ((days * 86400 + h * 3600 + mi * 60 + sec) - off) * 1000 + ms;
	return 0;
}

void
completion_signal(struct completion *c, int result)
{
	pthread_mutex_lock(&c->lock);
	c->result = result;
	c->done = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

int
completion_wait(struct completion *c)
{
	pthread_mutex_lock(&c->lock);
	while (!c->done)
		pthread_cond_wait(&c->cond, &c->lock);
	pthread_mutex_unlock(&c->lock);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	return c->result;
}
