/*
 * log: operational log and accounting log. Each line is built in a local
 * buffer and written with one write(2) to an O_APPEND descriptor, so lines
 * from different threads never interleave and no lock is needed. Reopening
 * (SIGHUP, logrotate) dup2()s a new descriptor over the old one.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "util.h"

static int log_fd = 2;
static char *log_path;
static atomic_int log_lvl = LOG_INFO;
static bool log_echo;

static int acct_fd = -1;
static char *acct_path;

static const char *const level_names[] = { "error", "warn", "info", "debug", "trace" };

static int
open_append(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int
log_open(const char *path, enum log_level level)
{
	log_lvl = level;
	free(log_path);
	log_path = NULL;
	if (path == NULL || strcmp(path, "-") == 0) {
		log_fd = 2;
		return 0;
	}
	int fd = open_append(path);
	if (fd < 0)
		return -1;
	log_path = xstrdup(path);
	log_fd = fd;
	return 0;
}

static int
reopen(int *fdp, const char *path)
{
	if (path == NULL)
		return 0;
	int fd = open_append(path);
	if (fd < 0)
		return -1;
	if (*fdp >= 0 && *fdp != 2) {
		dup2(fd, *fdp);
		close(fd);
	} else
		*fdp = fd;
	return 0;
}

int
log_reopen(void)
{
	return reopen(&log_fd, log_path);
}

void
log_set_level(enum log_level level)
{
	log_lvl = level;
}

bool
log_enabled(enum log_level level)
{
	return (int)level <= atomic_load_explicit(&log_lvl, memory_order_relaxed);
}

void
log_to_stderr(bool also)
{
	log_echo = also;
}

void
log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	char buf[4096], ts[40];
	int n, m;

	if (!log_enabled(level))
		return;
	fmt_time3339(ts, sizeof(ts), now_ms());
	n = snprintf(buf, sizeof(buf), "%s level=%s ", ts, level_names[level]);
	m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	if (m < 0)
		m = 0;
	n += m;
	if ((size_t)n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	(void)write_all(log_fd, buf, (size_t)n);
	if (log_echo && log_fd != 2)
		(void)write_all(2, buf, (size_t)n);
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

static void
log_warn_common(bool with_errno, const char *fmt, va_list ap)
{
	int saved = errno;
	char msg[3000];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (with_errno)
		log_msg(LOG_WARN, "%s err=\"%s\"", msg, strerror(saved));
	else
		log_msg(LOG_WARN, "%s", msg);
	errno = saved;
}

void
log_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_warn_common(true, fmt, ap);
	va_end(ap);
}

void
log_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_warn_common(false, fmt, ap);
	va_end(ap);
}

/* JSON line builder */

static void
jb_reserve(struct jbuf *j, size_t more)
{
	if (j->len + more <= j->cap)
		return;
	size_t cap = j->cap * 2;
	while (cap < j->len + more)
		cap *= 2;
	if (j->buf == j->stack) {
		j->buf = xmalloc(cap);
		memcpy(j->buf, j->stack, j->len);
	} else
		j->buf = xrealloc(j->buf, cap);
	j->cap = cap;
}

static void
jb_put(struct jbuf *j, const char *s, size_t n)
{
	jb_reserve(j, n);
	memcpy(j->buf + j->len, s, n);
	j->len += n;
}

void
json_escape(struct jbuf *j, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	jb_reserve(j, n + 2);
	j->buf[j->len++] = '"';
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f) {
			jb_reserve(j, 2);
			j->buf[j->len++] = (char)c;
			continue;
		}
		char e[6];
		switch (c) {
		case '"': jb_put(j, "\\\"", 2); break;
		case '\\': jb_put(j, "\\\\", 2); break;
		case '\n': jb_put(j, "\\n", 2); break;
		case '\r': jb_put(j, "\\r", 2); break;
		case '\t': jb_put(j, "\\t", 2); break;
		default:
			e[0] = '\\'; e[1] = 'u'; e[2] = '0'; e[3] = '0';
			e[4] = hex[c >> 4]; e[5] = hex[c & 15];
			jb_put(j, e, 6);
		}
	}
	jb_put(j, "\"", 1);
}

void
jb_init_bare(struct jbuf *j)
{
	j->buf = j->stack;
	j->cap = sizeof(j->stack);
	j->len = 0;
	j->buf[j->len++] = '{';
}

void
jb_init(struct jbuf *j)
{
	jb_init_bare(j);
	jb_time(j, "time", now_ms());
}

static void
jb_key(struct jbuf *j, const char *key)
{
	if (j->len > 1)
		jb_put(j, ",", 1);
	json_escape(j, key, strlen(key));
	jb_put(j, ":", 1);
}

void
jb_strn(struct jbuf *j, const char *key, const char *val, size_t n)
{
	if (val == NULL)
		return;
	jb_key(j, key);
	json_escape(j, val, n);
}

void
jb_str(struct jbuf *j, const char *key, const char *val)
{
	if (val != NULL)
		jb_strn(j, key, val, strlen(val));
}

void
jb_int(struct jbuf *j, const char *key, int64_t val)
{
	char num[32];
	int n = snprintf(num, sizeof(num), "%" PRId64, val);

	jb_key(j, key);
	jb_put(j, num, (size_t)n);
}

void
jb_double(struct jbuf *j, const char *key, double val)
{
	char num[64];
	int n = snprintf(num, sizeof(num), "%.6g", val);

	jb_key(j, key);
	jb_put(j, num, (size_t)n);
}

void
jb_bool(struct jbuf *j, const char *key, bool val)
{
	jb_key(j, key);
	jb_put(j, val ? "true" : "false", val ? 4 : 5);
}

void
jb_time(struct jbuf *j, const char *key, int64_t ms)
{
	char ts[40];

	fmt_time3339(ts, sizeof(ts), ms);
	jb_str(j, key, ts);
}

void
jb_raw(struct jbuf *j, const char *key, const char *json)
{
	jb_key(j, key);
	jb_put(j, json, strlen(json));
}

void
jb_array(struct jbuf *j, const char *key)
{
	jb_key(j, key);
	jb_put(j, "[", 1);
}

void
jb_elem(struct jbuf *j, const char *val)
{
	if (j->buf[j->len - 1] != '[')
		jb_put(j, ",", 1);
	json_escape(j, val, strlen(val));
}

void
jb_array_end(struct jbuf *j)
{
	jb_put(j, "]", 1);
}

const char *
jb_finish(struct jbuf *j, size_t *len)
{
	jb_put(j, "}", 1);
	jb_reserve(j, 1);
	j->buf[j->len] = '\0';
	if (len)
		*len = j->len;
	return j->buf;
}

void
jb_free(struct jbuf *j)
{
	if (j->buf != j->stack)
		free(j->buf);
	j->buf = j->stack;
	j->len = 0;
}

int
acct_open(const char *path)
{
	free(acct_path);
	acct_path = NULL;
	if (acct_fd >= 0)
		close(acct_fd);
	acct_fd = -1;
	if (path == NULL || *path == '\0')
		return 0;
	if (strcmp(path, "-") == 0) {
		acct_fd = dup(1);
		return acct_fd < 0 ? -1 : 0;
	}
	acct_fd = open_append(path);
	if (acct_fd < 0)
		return -1;
	acct_path = xstrdup(path);
	return 0;
}

int
acct_reopen(void)
{
	return reopen(&acct_fd, acct_path);
}

/* This thread's batch: lines held until the end of its loop turn. */
#define ACCT_HOLD_MAX (64 * 1024)
static __thread struct sbuf acct_held;
static __thread struct event *acct_ev;
static __thread bool acct_armed;

static void
acct_write(const char *p, size_t n)
{
	if (acct_fd >= 0 && write_all(acct_fd, p, n) < 0)
		log_warn("event=accounting-write-failed");
}

static void
acct_flush(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	acct_armed = false;
	if (acct_held.len > 0)
		acct_write(acct_held.p, acct_held.len);
	acct_held.len = 0;
}

void
acct_batch_start(struct event_base *base)
{
	acct_ev = event_new(base, -1, 0, acct_flush, NULL);
}

void
acct_batch_stop(void)
{
	acct_flush(-1, 0, NULL);
	if (acct_ev != NULL)
		event_free(acct_ev);
	acct_ev = NULL;
	free(acct_held.p);
	memset(&acct_held, 0, sizeof(acct_held));
}

void
acct_emit(struct jbuf *j)
{
	jb_finish(j, NULL);
	jb_put(j, "\n", 1);
	if (acct_ev == NULL) {
		acct_write(j->buf, j->len);
	} else {
		sb_add(&acct_held, j->buf, j->len);
		if (acct_held.len >= ACCT_HOLD_MAX)
			acct_flush(-1, 0, NULL);
		else if (!acct_armed) {
			/* runs after the callbacks already active in this turn */
			event_active(acct_ev, EV_TIMEOUT, 0);
			acct_armed = true;
		}
	}
	jb_free(j);
}
