/*
 * log: the operational log (key=value lines, levels, one session id per
 * connection) and the accounting log (one JSON object per line per event).
 * Both are safe to call from any thread; each line is one write(2).
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_ERR, LOG_WARN, LOG_INFO, LOG_DEBUG, LOG_TRACE };

/* path "-" (or NULL) = stderr. Returns -1 with errno when the file can't open. */
int log_open(const char *path, enum log_level level);
int log_reopen(void);           /* SIGHUP / logrotate */
void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);
void log_to_stderr(bool also);  /* echo to stderr until daemonized */

/* Format is free text, by convention "event=... key=value key=\"quoted\"". */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap);
#define log_err(...)   log_msg(LOG_ERR, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_trace(...) do { if (log_enabled(LOG_TRACE)) log_msg(LOG_TRACE, __VA_ARGS__); } while (0)
/* Appends err="strerror(errno)" and keeps errno unchanged. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * JSON line builder for accounting events. Not thread-shared: build on the
 * stack, then acct_emit() writes the finished line atomically.
 *   struct jbuf j; jb_init(&j); jb_str(&j, "type", "delivery"); ...; acct_emit(&j);
 * jb_init sets "time" first. Strings are escaped; NULL values are skipped.
 */
struct jbuf {
	char *buf;
	size_t len, cap;
	char stack[1024];
};
void jb_init(struct jbuf *j);          /* "{" + "time": now */
void jb_init_bare(struct jbuf *j);     /* "{" only (API responses) */
void jb_str(struct jbuf *j, const char *key, const char *val);
void jb_strn(struct jbuf *j, const char *key, const char *val, size_t n);
void jb_int(struct jbuf *j, const char *key, int64_t val);
void jb_double(struct jbuf *j, const char *key, double val);
void jb_bool(struct jbuf *j, const char *key, bool val);
void jb_time(struct jbuf *j, const char *key, int64_t ms);   /* RFC 3339 */
void jb_raw(struct jbuf *j, const char *key, const char *json);
/* Arrays of strings: jb_array(j, "recipients"); jb_elem(j, a); ...; jb_array_end(j); */
void jb_array(struct jbuf *j, const char *key);
void jb_elem(struct jbuf *j, const char *val);
void jb_array_end(struct jbuf *j);
const char *jb_finish(struct jbuf *j, size_t *len);          /* closes "}" */
void jb_free(struct jbuf *j);
void json_escape(struct jbuf *j, const char *s, size_t n);   /* appends "..." */

int acct_open(const char *path);       /* NULL or "" = no accounting */
int acct_reopen(void);
void acct_emit(struct jbuf *j);        /* finishes, writes one line, frees */
/*
 * A thread with an event loop (the workers) batches its events: acct_emit
 * keeps the line and the loop writes all it holds in one write() at the
 * end of the turn (or at 64 KB). Lines stay whole and in order per thread.
 * acct_batch_stop writes what is held and goes back to one write per line.
 */
struct event_base;
void acct_batch_start(struct event_base *base);
void acct_batch_stop(void);

#endif
