/*
 * warmup: IP warm-up. A source may carry a schedule of daily caps per
 * provider that rise day by day; while it warms up, the recipients it
 * sends to a provider in one UTC day never exceed that day's cap. What is
 * above the cap goes to another source of the message's pool that still
 * has room (a warmed one, or one under its own cap), or waits for the next
 * UTC day. Counts live in the LMDB store (DB_WARMUP), so a restart does not
 * reset a day.
 *
 * Schedules are parsed with the config (immutable afterwards); the counters
 * are process-wide and shared by the workers (atomics: the `*` column of a
 * source is shared by sites owned by different workers).
 */
#ifndef SLUICE_WARMUP_H
#define SLUICE_WARMUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define WARMUP_UNLIMITED INT64_MAX
#define WARMUP_MAX_DAY 3650
#define WARMUP_MAX_CAP 1000000000LL

/* One column of a day: the provider (a `provider` block's name, or "*" for
 * every destination not named on that day) and its cap. */
struct warmup_cap {
	char *provider;
	int64_t cap;                   /* recipients per UTC day; WARMUP_UNLIMITED */
};

struct warmup_day {
	int day;                       /* 1 = the first day */
	struct warmup_cap *caps;
	int ncaps;
	int line;
};

/* Days ascending; a day's caps hold until the next listed day; after the
 * last listed day the warm-up is complete (no caps). */
struct warmup_schedule {
	char *name;
	struct warmup_day *days;
	int ndays;
	const char *file;              /* where it was defined (borrowed) */
	int line;
};

/* The built-in 30-day schedule "default": conf/warmup-default.conf, byte
 * for byte (test_warmup.c compares them). */
extern const char warmup_default_text[];

struct warmup_schedule *warmup_schedule_new(const char *name);
void warmup_schedule_free(struct warmup_schedule *s);
/*
 * Add one "day N PROVIDER CAP [PROVIDER CAP ...]" line; args[0] is N (the
 * words after "day"). Days must ascend, the first is day 1, CAP is a
 * number or "unlimited". Returns 0, or -1 with the reason in err.
 */
int warmup_schedule_add_day(struct warmup_schedule *s, char **args, int nargs, int line,
    char *err, size_t errlen);
/* Every "day ..." line of a schedule file (# comments, blank lines). On
 * error returns -1 with "LINE: reason" in err. */
int warmup_schedule_parse(struct warmup_schedule *s, const char *text, char *err, size_t errlen);

/* UTC days since 1970-01-01 of a wall-clock time in ms. */
int64_t warmup_today(int64_t now_ms);
/* The start of the next UTC day after now_ms. */
int64_t warmup_next_midnight(int64_t now_ms);
/* "YYYY-MM-DD" <-> UTC days since the epoch; parse returns -1 on error. */
int warmup_parse_date(const char *s, int64_t *day);
void warmup_fmt_date(char *buf, size_t len, int64_t day);
/* The schedule day of `today` for a warm-up that started on `start` (day
 * 1); a start in the future counts as day 1. */
int warmup_day_number(int64_t start, int64_t today);
/* The listed day in force on day n, or NULL: the warm-up is complete. */
const struct warmup_day *warmup_schedule_day(const struct warmup_schedule *s, int n);
/* The column that applies to `provider` (NULL: not a provider site) on a
 * day: the cap naming it, else "*", else NULL (no cap that day). */
const struct warmup_cap *warmup_day_cap(const struct warmup_day *d, const char *provider);

/*
 * Runtime (any worker). `provider` is the site's provider name, NULL for
 * sites that belong to no provider. `site` names the site in events.
 *
 * warmup_room: recipients `source` may still send to `provider` today
 * (INT64_MAX when it has no cap now). Reserves nothing.
 * warmup_take: reserve up to `want` of them; returns how many (0 = the
 * cap is reached). Counts are written to the store behind the caller.
 */
int64_t warmup_room(const char *source, const char *provider);
int warmup_take(const char *source, const char *provider, const char *site, int want);
/* Give back n reserved recipients that got neither a 2xx nor a 5xx (a
 * deferral or a failed connection): a throttled new IP must not spend its
 * day's cap on retries. Only while it is still the day they were taken. */
void warmup_give_back(const char *source, const char *provider, int n);
/*
 * Another member of the pool `pool` (NULL = the default pool) than
 * `exclude` with room for `provider`, chosen by weight; NULL when none.
 */
const char *warmup_pick_source(const char *pool, const char *exclude, const char *provider);
/* Any source of the running config in warm-up (a fast way out). */
bool warmup_active(void);

/* GET /v1/warmup: every source, its schedule, day, caps and counts. */
json_t *warmup_status_json(void);
/* At exit, after the store is closed. */
void warmup_shutdown(void);

#endif
