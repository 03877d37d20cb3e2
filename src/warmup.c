/*
 * warmup: warm-up schedules and the per-source daily counters (warmup.h).
 *
 * Counting: a recipient is reserved when a transaction carrying it starts
 * (warmup_take, called by the lane as it builds the transaction); one that
 * gets neither a 2xx nor a 5xx is given back (warmup_give_back, from the
 * lane's txn_done), so deferrals do not spend the cap. Reserving before sending is what
 * keeps concurrent connections and the workers sharing a `*` column from
 * ever sending more than the cap.
 *
 * A counter is one 64-bit atomic, (UTC day << 32) | count, so a reservation
 * is one compare-and-swap, and a counter of an older day reads as zero for
 * today. The first use of a counter on a day loads that day's count from
 * the store, which is what makes a restart keep the day's count.
 *
 * Persistence: after a reservation the counter is queued to the store
 * writer unless a write of it is already queued; that write stores the
 * counter's value at the moment it runs (never lowering what is stored),
 * so one write carries every reservation made while it waited. A kill -9
 * can lose only what the writer had not committed yet: the reservations of
 * the last batch, a few milliseconds of sending (the documented overshoot).
 *
 * The first day of a warm-up is `warmup-start DATE` when configured, else
 * the UTC day the source first sent under its schedule, kept in the store
 * (DB_META "warmup-start/SOURCE").
 *
 * warmup_default_text[] is conf/warmup-default.conf, byte for byte
 * (test_warmup.c compares them). After editing the file, regenerate it with
 *   sed 's/\\/\\\\/g; s/"/\\"/g; s/^/\t"/; s/$/\\n"/' conf/warmup-default.conf
 * and paste the output between the braces below.
 */
#include "config.h"

#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf.h"
#include "log.h"
#include "store.h"
#include "util.h"
#include "warmup.h"

#define DAY_MS 86400000LL

const char warmup_default_text[] = {
	"# sluice warm-up schedule \"default\": 30 days of daily caps per provider.\n"
	"#\n"
	"# A new sending IP has no reputation; mailbox providers judge it by the\n"
	"# first weeks of traffic. Published warm-up plans (the ESPs' guides:\n"
	"# SendGrid's and Mailgun's automated warm-up, SparkPost's and Amazon SES's\n"
	"# dedicated-IP schedules, Microsoft's and Google's sender guidelines) share\n"
	"# one shape: start with a few dozen messages a day per large provider,\n"
	"# grow by roughly 1.3-2x a day while bounce and complaint rates stay low,\n"
	"# and reach full volume after four to six weeks. This plan starts at 350\n"
	"# recipients on day 1 and grows about 1.3x a day to about 1,000,000 on\n"
	"# day 30; from day 31 on the source is warm and has no caps.\n"
	"#\n"
	"# Syntax: one line per listed day,\n"
	"#\n"
	"#     day N PROVIDER CAP [PROVIDER CAP ...]\n"
	"#\n"
	"# PROVIDER is the name of a `provider` block of sluice.conf (its MX\n"
	"# patterns say which domains it covers); \"*\" is one shared cap for every\n"
	"# other destination. CAP is recipients per UTC day, or \"unlimited\". A\n"
	"# listed day's caps hold until the next listed day. A provider that a day\n"
	"# does not name counts under \"*\" that day (no cap when \"*\" is not named\n"
	"# either). Provider names that no `provider` block defines never match a\n"
	"# site: that traffic counts under \"*\".\n"
	"#\n"
	"# To change it, copy this file, edit it and load it as a schedule of your\n"
	"# own:  warmup-schedule slow { file /etc/sluice/warmup-slow.conf }\n"
	"#\n"
	"# sluice compiles this file in (src/warmup.c, warmup_default_text): the\n"
	"# unit test test_warmup keeps the two identical.\n"
	"\n"
	"#   day gmail         microsoft         yahoo           others     (total)\n"
	"day  1  gmail     50  microsoft     50  yahoo     50  *     200  #     350\n"
	"day  2  gmail     65  microsoft     65  yahoo     65  *     260  #     455\n"
	"day  3  gmail     90  microsoft     90  yahoo     85  *     330  #     595\n"
	"day  4  gmail    120  microsoft    120  yahoo    110  *     430  #     780\n"
	"day  5  gmail    170  microsoft    160  yahoo    150  *     550  #    1030\n"
	"day  6  gmail    220  microsoft    220  yahoo    200  *     710  #    1350\n"
	"day  7  gmail    300  microsoft    290  yahoo    260  *     910  #    1760\n"
	"day  8  gmail    410  microsoft    390  yahoo    350  *    1200  #    2350\n"
	"day  9  gmail    550  microsoft    520  yahoo    460  *    1500  #    3030\n"
	"day 10  gmail    740  microsoft    700  yahoo    600  *    1900  #    3940\n"
	"day 11  gmail   1000  microsoft    940  yahoo    790  *    2500  #    5230\n"
	"day 12  gmail   1400  microsoft   1300  yahoo   1000  *    3200  #    6900\n"
	"day 13  gmail   1800  microsoft   1700  yahoo   1400  *    4100  #    9000\n"
	"day 14  gmail   2500  microsoft   2300  yahoo   1800  *    5300  #   11900\n"
	"day 15  gmail   3300  microsoft   3100  yahoo   2400  *    6800  #   15600\n"
	"day 16  gmail   4500  microsoft   4100  yahoo   3100  *    8800  #   20500\n"
	"day 17  gmail   6100  microsoft   5500  yahoo   4100  *   11000  #   26700\n"
	"day 18  gmail   8200  microsoft   7400  yahoo   5500  *   15000  #   36100\n"
	"day 19  gmail  11000  microsoft   9900  yahoo   7200  *   19000  #   47100\n"
	"day 20  gmail  15000  microsoft  13000  yahoo   9500  *   24000  #   61500\n"
	"day 21  gmail  20000  microsoft  18000  yahoo  13000  *   31000  #   82000\n"
	"day 22  gmail  27000  microsoft  24000  yahoo  16000  *   40000  #  107000\n"
	"day 23  gmail  37000  microsoft  32000  yahoo  22000  *   51000  #  142000\n"
	"day 24  gmail  50000  microsoft  43000  yahoo  29000  *   66000  #  188000\n"
	"day 25  gmail  67000  microsoft  58000  yahoo  38000  *   85000  #  248000\n"
	"day 26  gmail  90000  microsoft  77000  yahoo  50000  *  110000  #  327000\n"
	"day 27  gmail 120000  microsoft 100000  yahoo  66000  *  140000  #  426000\n"
	"day 28  gmail 160000  microsoft 140000  yahoo  86000  *  180000  #  566000\n"
	"day 29  gmail 220000  microsoft 190000  yahoo 110000  *  230000  #  750000\n"
	"day 30  gmail 300000  microsoft 250000  yahoo 150000  *  300000  # 1000000\n"
};

/* Schedules */

struct warmup_schedule *
warmup_schedule_new(const char *name)
{
	struct warmup_schedule *s = xcalloc(1, sizeof(*s));

	s->name = xstrdup(name);
	return s;
}

void
warmup_schedule_free(struct warmup_schedule *s)
{
	if (s == NULL)
		return;
	for (int i = 0; i < s->ndays; i++) {
		for (int k = 0; k < s->days[i].ncaps; k++)
			free(s->days[i].caps[k].provider);
		free(s->days[i].caps);
	}
	free(s->days);
	free(s->name);
	free(s);
}

static int
parse_cap(const char *v, int64_t *out)
{
	uint64_t n;
	const char *e;

	if (strcmp(v, "unlimited") == 0) {
		*out = WARMUP_UNLIMITED;
		return 0;
	}
	if (parse_uint(v, &n, &e) < 0 || n > (uint64_t)WARMUP_MAX_CAP)
		return -1;
	*out = (int64_t)n;
	return 0;
}

int
warmup_schedule_add_day(struct warmup_schedule *s, char **args, int nargs, int line,
    char *err, size_t errlen)
{
	struct warmup_day d = { .line = line };
	uint64_t n;
	const char *e;

	if (nargs < 3 || nargs % 2 == 0) {
		snprintf(err, errlen, "day: expected \"day N PROVIDER CAP [PROVIDER CAP ...]\"");
		return -1;
	}
	if (parse_uint(args[0], &n, &e) < 0 || n < 1 || n > WARMUP_MAX_DAY) {
		snprintf(err, errlen, "day: \"%s\" is not a day number (1-%d)", args[0], WARMUP_MAX_DAY);
		return -1;
	}
	if (s->ndays == 0 && n != 1) {
		snprintf(err, errlen, "day: the first listed day must be day 1, not day %s", args[0]);
		return -1;
	}
	if (s->ndays > 0 && (int)n <= s->days[s->ndays - 1].day) {
		snprintf(err, errlen, "day %d comes after day %d: days must ascend", (int)n,
		    s->days[s->ndays - 1].day);
		return -1;
	}
	d.day = (int)n;
	for (int i = 1; i < nargs; i += 2) {
		int64_t cap;

		for (int k = 0; k < d.ncaps; k++)
			if (strcasecmp(d.caps[k].provider, args[i]) == 0) {
				snprintf(err, errlen, "day %d: provider %s is named twice", d.day, args[i]);
				goto fail;
			}
		if (parse_cap(args[i + 1], &cap) < 0) {
			snprintf(err, errlen, "day %d: %s: cap \"%s\" is not a number (0-%lld) or unlimited",
			    d.day, args[i], args[i + 1], WARMUP_MAX_CAP);
			goto fail;
		}
		d.caps = xrealloc(d.caps, sizeof(*d.caps) * (size_t)(d.ncaps + 1));
		d.caps[d.ncaps].provider = xstrdup(args[i]);
		d.caps[d.ncaps++].cap = cap;
	}
	s->days = xrealloc(s->days, sizeof(*s->days) * (size_t)(s->ndays + 1));
	s->days[s->ndays++] = d;
	return 0;
fail:
	for (int k = 0; k < d.ncaps; k++)
		free(d.caps[k].provider);
	free(d.caps);
	return -1;
}

#define MAX_WORDS 130

int
warmup_schedule_parse(struct warmup_schedule *s, const char *text, char *err, size_t errlen)
{
	int line = 0;
	const char *p = text;

	while (*p) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		char *buf = xstrndup(p, len), *save = NULL;
		char *words[MAX_WORDS];
		int n = 0;

		line++;
		p += len + (eol ? 1 : 0);
		char *hash = strchr(buf, '#');
		if (hash)
			*hash = '\0';
		for (char *w = strtok_r(buf, " \t\r", &save); w; w = strtok_r(NULL, " \t\r", &save)) {
			if (n == MAX_WORDS) {
				snprintf(err, errlen, "%d: more than %d words on a line", line, MAX_WORDS);
				free(buf);
				return -1;
			}
			words[n++] = w;
		}
		if (n == 0) {
			free(buf);
			continue;
		}
		char why[400];
		if (strcmp(words[0], "day") != 0) {
			snprintf(err, errlen, "%d: expected \"day N PROVIDER CAP ...\", not \"%s\"",
			    line, words[0]);
			free(buf);
			return -1;
		}
		if (warmup_schedule_add_day(s, words + 1, n - 1, line, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "%d: %s", line, why);
			free(buf);
			return -1;
		}
		free(buf);
	}
	if (s->ndays == 0) {
		snprintf(err, errlen, "%d: no \"day\" lines", line);
		return -1;
	}
	return 0;
}

/* Days */

int64_t
warmup_today(int64_t now)
{
	return now >= 0 ? now / DAY_MS : -((-now + DAY_MS - 1) / DAY_MS);
}

int64_t
warmup_next_midnight(int64_t now)
{
	return (warmup_today(now) + 1) * DAY_MS;
}

/* Proleptic Gregorian calendar <-> days since 1970-01-01 (H. Hinnant's
 * public-domain civil calendar algorithms). */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void
civil_from_days(int64_t z, int *y, int *m, int *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = (int)((int64_t)yoe + era * 400 + (*m <= 2));
}

int
warmup_parse_date(const char *s, int64_t *day)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, m, d;

	if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return -1;
	for (int i = 0; i < 10; i++)
		if (i != 4 && i != 7 && !isdigit((unsigned char)s[i]))
			return -1;
	y = atoi(s);
	m = atoi(s + 5);
	d = atoi(s + 8);
	if (y < 1970 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
		return -1;
	if (m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return -1;
	*day = days_from_civil(y, (unsigned)m, (unsigned)d);
	return 0;
}

void
warmup_fmt_date(char *buf, size_t len, int64_t day)
{
	int y, m, d;

	civil_from_days(day, &y, &m, &d);
	snprintf(buf, len, "%04d-%02d-%02d", y, m, d);
}

int
warmup_day_number(int64_t start, int64_t today)
{
	if (today < start)
		return 1;
	int64_t n = today - start + 1;
	return n > INT_MAX ? INT_MAX : (int)n;
}

const struct warmup_day *
warmup_schedule_day(const struct warmup_schedule *s, int n)
{
	const struct warmup_day *in_force = NULL;

	if (s->ndays == 0 || n > s->days[s->ndays - 1].day)
		return NULL;
	for (int i = 0; i < s->ndays && s->days[i].day <= n; i++)
		in_force = &s->days[i];
	return in_force;
}

const struct warmup_cap *
warmup_day_cap(const struct warmup_day *d, const char *provider)
{
	const struct warmup_cap *star = NULL;

	for (int i = 0; i < d->ncaps; i++) {
		if (provider != NULL && strcasecmp(d->caps[i].provider, provider) == 0)
			return &d->caps[i];
		if (strcmp(d->caps[i].provider, "*") == 0)
			star = &d->caps[i];
	}
	return star;
}

/* Counters */

#define START_UNREAD INT64_MIN          /* the store was not asked yet */
#define START_NONE (INT64_MIN + 1)      /* it has no start: not started */

struct wu_source;

struct wu_counter {
	char *column;                   /* provider name or "*" */
	_Atomic uint64_t v;             /* (UTC day << 32) | count */
	atomic_bool queued;             /* a store write of it is waiting */
	struct wu_source *src;
	struct wu_counter *next;
};

struct wu_source {
	char *name;
	_Atomic int64_t start;          /* first day kept in the store */
	struct wu_counter *counters;
	struct wu_source *next;
};

/* Entries are created under the lock and never freed before exit, so a
 * pointer found once stays valid without it. */
static pthread_mutex_t wu_lock = PTHREAD_MUTEX_INITIALIZER;
static struct wu_source *wu_sources;

static struct wu_source *
wu_source_get(const char *name, bool create)
{
	struct wu_source *ws;

	pthread_mutex_lock(&wu_lock);
	for (ws = wu_sources; ws; ws = ws->next)
		if (strcmp(ws->name, name) == 0)
			break;
	if (ws == NULL && create) {
		ws = xcalloc(1, sizeof(*ws));
		ws->name = xstrdup(name);
		atomic_init(&ws->start, START_UNREAD);
		ws->next = wu_sources;
		wu_sources = ws;
	}
	pthread_mutex_unlock(&wu_lock);
	return ws;
}

static struct wu_counter *
wu_counter_get(struct wu_source *ws, const char *column, bool create)
{
	struct wu_counter *c;

	pthread_mutex_lock(&wu_lock);
	for (c = ws->counters; c; c = c->next)
		if (strcasecmp(c->column, column) == 0)
			break;
	if (c == NULL && create) {
		c = xcalloc(1, sizeof(*c));
		c->column = xstrdup(column);
		c->src = ws;
		atomic_init(&c->v, 0);
		atomic_init(&c->queued, false);
		c->next = ws->counters;
		ws->counters = c;
	}
	pthread_mutex_unlock(&wu_lock);
	return c;
}

/* DB_WARMUP key: source \0 column \0 YYYY-MM-DD */
static size_t
count_key(char *buf, size_t len, const char *source, const char *column, int64_t day)
{
	char date[16];
	size_t sl = strlen(source), cl = strlen(column);

	warmup_fmt_date(date, sizeof(date), day);
	if (sl + cl + strlen(date) + 2 > len)
		fatal("warmup: key too long for source %s", source);
	memcpy(buf, source, sl + 1);
	memcpy(buf + sl + 1, column, cl + 1);
	memcpy(buf + sl + cl + 2, date, strlen(date));
	return sl + cl + 2 + strlen(date);
}

static uint64_t
parse_count(const void *p, size_t len)
{
	char buf[24];

	if (len == 0 || len >= sizeof(buf))
		return 0;
	memcpy(buf, p, len);
	buf[len] = '\0';
	return strtoull(buf, NULL, 10);
}

static uint64_t
stored_count(const char *source, const char *column, int64_t day)
{
	char key[1200], val[24];
	size_t klen = count_key(key, sizeof(key), source, column, day), len;

	if (store_get(DB_WARMUP, key, klen, val, sizeof(val), &len) != 1)
		return 0;
	return parse_count(val, MIN(len, sizeof(val)));
}

/* The counter's value for today: loaded from the store on its first use
 * of the day (the restart case), zero when the store has nothing. */
static uint64_t
counter_today(struct wu_counter *c, int64_t today)
{
	uint64_t v = atomic_load(&c->v);

	if ((int64_t)(v >> 32) == today)
		return v;
	uint64_t nv = ((uint64_t)today << 32) | stored_count(c->src->name, c->column, today);
	while ((int64_t)(v >> 32) != today)
		if (atomic_compare_exchange_weak(&c->v, &v, nv))
			return nv;
	return v;
}

/* On the writer thread: store the counter as it is now, never lower. */
static int
persist_fn(MDB_txn *txn, void *arg)
{
	struct wu_counter *c = arg;
	char key[1200], buf[24];
	MDB_val k, old, val;

	atomic_store(&c->queued, false);
	uint64_t v = atomic_load(&c->v);
	uint64_t n = v & 0xffffffffULL;
	k.mv_data = key;
	k.mv_size = count_key(key, sizeof(key), c->src->name, c->column, (int64_t)(v >> 32));
	if (mdb_get(txn, store_dbi(DB_WARMUP), &k, &old) == 0 &&
	    parse_count(old.mv_data, old.mv_size) >= n)
		return 0;
	val.mv_data = buf;
	val.mv_size = (size_t)snprintf(buf, sizeof(buf), "%" PRIu64, n);
	return mdb_put(txn, store_dbi(DB_WARMUP), &k, &val, 0);
}

static void
persist_done(void *arg, bool ok)
{
	struct wu_counter *c = arg;

	if (!ok) {
		atomic_store(&c->queued, false);
		log_warnx("event=warmup-store-failed source=%s provider=%s", c->src->name, c->column);
	}
}

static void
persist(struct wu_counter *c)
{
	bool expect = false;

	if (atomic_compare_exchange_strong(&c->queued, &expect, true))
		store_write(persist_fn, persist_done, c);
}

static void
start_key(char *buf, size_t len, const char *source)
{
	snprintf(buf, len, "warmup-start/%s", source);
}

/* The first day kept in the store, START_NONE when there is none. */
static int64_t
stored_start(struct wu_source *ws)
{
	int64_t v = atomic_load(&ws->start);

	if (v != START_UNREAD)
		return v;
	char key[600], val[16];
	size_t len;
	int64_t day = START_NONE, d;
	start_key(key, sizeof(key), ws->name);
	if (store_get(DB_META, key, strlen(key), val, sizeof(val) - 1, &len) == 1 &&
	    len < sizeof(val)) {
		val[len] = '\0';
		if (warmup_parse_date(val, &d) == 0)
			day = d;
	}
	int64_t expect = START_UNREAD;
	atomic_compare_exchange_strong(&ws->start, &expect, day);
	return atomic_load(&ws->start);
}

/* The first send under a schedule without warmup-start: today is day 1. */
static int64_t
start_now(struct wu_source *ws, int64_t today)
{
	int64_t expect = START_NONE;
	char key[600], date[16];

	if (!atomic_compare_exchange_strong(&ws->start, &expect, today))
		return expect;
	start_key(key, sizeof(key), ws->name);
	warmup_fmt_date(date, sizeof(date), today);
	store_put(DB_META, key, strlen(key), date, strlen(date));
	log_info("event=warmup-started source=%s date=%s", ws->name, date);
	return today;
}

/* Where a source stands today for a provider. */
struct standing {
	const struct source_conf *sc;
	struct wu_source *ws;
	int64_t today;
	int day;                        /* schedule day */
	const struct warmup_cap *cap;   /* NULL: no cap now */
};

static bool
standing(const char *source, const char *provider, bool starting, struct standing *st)
{
	const struct config *c = conf;

	if (c == NULL || c->nwarmup == 0 || source == NULL || source[0] == '\0')
		return false;
	if ((st->sc = conf_source(c, source)) == NULL || st->sc->wsched == NULL)
		return false;
	st->today = warmup_today(now_ms());
	st->ws = wu_source_get(source, true);
	int64_t start = st->sc->has_warmup_start ? st->sc->warmup_start : stored_start(st->ws);
	if (start == START_NONE)
		start = starting ? start_now(st->ws, st->today) : st->today;
	st->day = warmup_day_number(start, st->today);
	const struct warmup_day *d = warmup_schedule_day(st->sc->wsched, st->day);
	st->cap = d ? warmup_day_cap(d, provider) : NULL;
	return st->cap != NULL && st->cap->cap != WARMUP_UNLIMITED;
}

int64_t
warmup_room(const char *source, const char *provider)
{
	struct standing st;

	if (!standing(source, provider, false, &st))
		return INT64_MAX;
	struct wu_counter *ct = wu_counter_get(st.ws, st.cap->provider, true);
	int64_t n = (int64_t)(counter_today(ct, st.today) & 0xffffffffULL);
	return n >= st.cap->cap ? 0 : st.cap->cap - n;
}

static void
cap_reached(const struct standing *st, const char *site, int64_t count)
{
	char until[40];
	int64_t next = warmup_next_midnight(now_ms());

	fmt_time3339(until, sizeof(until), next);
	log_info("event=warmup-cap-reached source=%s provider=%s site=%s schedule=%s day=%d "
	    "cap=%" PRId64 " until=%s", st->sc->name, st->cap->provider, site ? site : "-",
	    st->sc->wsched->name, st->day, st->cap->cap, until);
	struct jbuf j;
	jb_init(&j);
	jb_str(&j, "type", "warmup-cap-reached");
	jb_str(&j, "source", st->sc->name);
	jb_str(&j, "source_ip", st->sc->address);
	jb_str(&j, "provider", st->cap->provider);
	jb_str(&j, "site", site);
	jb_str(&j, "schedule", st->sc->wsched->name);
	jb_int(&j, "day", st->day);
	jb_int(&j, "cap", st->cap->cap);
	jb_int(&j, "count", count);
	jb_time(&j, "until", next);
	acct_emit(&j);
}

int
warmup_take(const char *source, const char *provider, const char *site, int want)
{
	struct standing st;

	if (want <= 0 || !standing(source, provider, true, &st))
		return want;
	struct wu_counter *ct = wu_counter_get(st.ws, st.cap->provider, true);
	uint64_t v = counter_today(ct, st.today), nv;
	int64_t n, take;
	do {
		if ((int64_t)(v >> 32) != st.today)
			v = counter_today(ct, st.today);
		n = (int64_t)(v & 0xffffffffULL);
		take = MIN((int64_t)want, st.cap->cap - n);
		if (take <= 0)
			return 0;
		nv = ((uint64_t)st.today << 32) | (uint64_t)(n + take);
	} while (!atomic_compare_exchange_weak(&ct->v, &v, nv));
	persist(ct);
	if (n + take >= st.cap->cap)
		cap_reached(&st, site, n + take);
	return (int)take;
}

void
warmup_give_back(const char *source, const char *provider, int n)
{
	struct standing st;

	if (n <= 0 || !standing(source, provider, true, &st))
		return;
	struct wu_counter *ct = wu_counter_get(st.ws, st.cap->provider, true);
	uint64_t v = atomic_load(&ct->v), nv;
	do {
		int64_t have = (int64_t)(v & 0xffffffffULL);
		/* taken on an earlier day: that day's count stands */
		if ((int64_t)(v >> 32) != st.today || have == 0)
			return;
		nv = ((uint64_t)st.today << 32) | (uint64_t)(have - MIN((int64_t)n, have));
	} while (!atomic_compare_exchange_weak(&ct->v, &v, nv));
	persist(ct);
}

bool
warmup_active(void)
{
	const struct config *c = conf;

	return c != NULL && c->nwarmup > 0;
}

const char *
warmup_pick_source(const char *pool, const char *exclude, const char *provider)
{
	const struct config *c = conf;
	struct pool_conf *p = pool ? conf_pool(c, pool) : NULL;
	long total = 0;

	if (p == NULL)
		p = conf_default_pool(c);
	if (p == NULL)
		return NULL;
	bool *ok = xcalloc((size_t)p->nmembers, sizeof(*ok));
	for (int i = 0; i < p->nmembers; i++) {
		const char *name = p->members[i].name;
		if (exclude != NULL && strcmp(name, exclude) == 0)
			continue;
		if (warmup_room(name, provider) <= 0)
			continue;
		ok[i] = true;
		total += p->members[i].weight;
	}
	const char *pick = NULL;
	if (total > 0) {
		long x = random() % total;
		for (int i = 0; i < p->nmembers && pick == NULL; i++) {
			if (!ok[i])
				continue;
			x -= p->members[i].weight;
			if (x < 0)
				pick = p->members[i].name;
		}
	}
	free(ok);
	return pick;
}

/* Control */

static json_t *
cap_json(int64_t cap)
{
	return cap == WARMUP_UNLIMITED ? json_string("unlimited") : json_integer(cap);
}

static json_t *
date_json(int64_t day)
{
	char buf[16];

	warmup_fmt_date(buf, sizeof(buf), day);
	return json_string(buf);
}

static json_t *
source_json(const struct source_conf *sc, int64_t today)
{
	json_t *o = json_object();

	json_object_set_new(o, "source", json_string(sc->name));
	json_object_set_new(o, "address", sc->address ? json_string(sc->address) : json_null());
	if (sc->wsched == NULL) {
		json_object_set_new(o, "schedule", json_null());
		json_object_set_new(o, "complete", json_true());
		return o;
	}
	const struct warmup_schedule *s = sc->wsched;
	struct wu_source *ws = wu_source_get(sc->name, true);
	int64_t start = sc->has_warmup_start ? sc->warmup_start : stored_start(ws);
	bool started = start != START_NONE;
	int day = warmup_day_number(started ? start : today, today);
	const struct warmup_day *d = warmup_schedule_day(s, day);

	json_object_set_new(o, "schedule", json_string(s->name));
	json_object_set_new(o, "start", started ? date_json(start) : json_null());
	json_object_set_new(o, "start_from", json_string(sc->has_warmup_start ? "config" :
	    started ? "store" : "first send"));
	json_object_set_new(o, "day", json_integer(day));
	json_object_set_new(o, "days", json_integer(s->days[s->ndays - 1].day));
	json_object_set_new(o, "complete", json_boolean(d == NULL));
	json_t *caps = json_array();
	for (int i = 0; d != NULL && i < d->ncaps; i++) {
		const struct warmup_cap *cap = &d->caps[i];
		int64_t n = 0;
		if (cap->cap != WARMUP_UNLIMITED) {
			struct wu_counter *ct = wu_counter_get(ws, cap->provider, true);
			n = (int64_t)(counter_today(ct, today) & 0xffffffffULL);
		}
		json_array_append_new(caps, json_pack("{s:s,s:o,s:I,s:b}",
		    "provider", cap->provider, "cap", cap_json(cap->cap), "count", (json_int_t)n,
		    "reached", cap->cap != WARMUP_UNLIMITED && n >= cap->cap));
	}
	json_object_set_new(o, "providers", caps);
	return o;
}

json_t *
warmup_status_json(void)
{
	const struct config *c = conf;
	int64_t now = now_ms(), today = warmup_today(now);
	char next[40];
	json_t *arr = json_array();

	fmt_time3339(next, sizeof(next), warmup_next_midnight(now));
	for (int i = 0; c != NULL && i < c->nsources; i++)
		json_array_append_new(arr, source_json(&c->sources[i], today));
	return json_pack("{s:o,s:s,s:o}", "date", date_json(today), "next_day", next,
	    "sources", arr);
}

void
warmup_shutdown(void)
{
	pthread_mutex_lock(&wu_lock);
	for (struct wu_source *ws = wu_sources, *wn; ws; ws = wn) {
		wn = ws->next;
		for (struct wu_counter *c = ws->counters, *cn; c; c = cn) {
			cn = c->next;
			free(c->column);
			free(c);
		}
		free(ws->name);
		free(ws);
	}
	wu_sources = NULL;
	pthread_mutex_unlock(&wu_lock);
}
