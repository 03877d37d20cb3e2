/*
 * suppress_io: import and export of the suppression list (suppress_io.h).
 *
 * Import reads one line at a time and keeps one batch of entries
 * (SUP_IMPORT_BATCH); a full batch becomes one write of the store's writer
 * thread, and the importer waits while more than SUP_IMPORT_BACKLOG writes
 * are queued, so a million lines never become a million-element structure.
 * CSV is RFC 4180 (quoted fields, "" inside quotes); a first line without
 * an '@' that has a field "address" (or "email", "recipient") is a header
 * and says which column is which. NDJSON lines are objects with the same member names.
 */
#include "config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "conf.h"
#include "log.h"
#include "store.h"
#include "suppress_io.h"

const char suppress_csv_header[] = "address,reason,scope,time,source\n";

/* ---- times --------------------------------------------------------- */

static bool
digits(const char *s, int n)
{
	for (int i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]))
			return false;
	return true;
}

static int
num(const char *s, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

int
suppress_parse_time(const char *s, int64_t now, int64_t *out)
{
	size_t len = s ? strlen(s) : 0;
	const char *err;
	int64_t d;

	if (len == 0)
		return -1;
	if (digits(s, (int)len)) {
		if (len > 15)
			return -1;
		int64_t v = strtoll(s, NULL, 10);
		*out = len > 11 ? v : v * 1000;
		return 0;
	}
	if (len >= 10 && digits(s, 4) && s[4] == '-' && digits(s + 5, 2) && s[7] == '-' &&
	    digits(s + 8, 2)) {
		struct tm tm = { 0 };
		int ms = 0;
		int64_t off = 0;
		const char *p = s + 10;

		tm.tm_year = num(s, 4) - 1900;
		tm.tm_mon = num(s + 5, 2) - 1;
		tm.tm_mday = num(s + 8, 2);
		if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31)
			return -1;
		if (*p == 'T' || *p == 't' || *p == ' ') {
			p++;
			if (!digits(p, 2) || p[2] != ':' || !digits(p + 3, 2))
				return -1;
			tm.tm_hour = num(p, 2);
			tm.tm_min = num(p + 3, 2);
			p += 5;
			if (*p == ':') {
				if (!digits(p + 1, 2))
					return -1;
				tm.tm_sec = num(p + 1, 2);
				p += 3;
				if (*p == '.') {
					int nd = 0;
					p++;
					while (isdigit((unsigned char)*p)) {
						if (nd < 3)
							ms = ms * 10 + (*p - '0');
						nd++;
						p++;
					}
					if (nd == 0)
						return -1;
					for (; nd < 3; nd++)
						ms *= 10;
				}
			}
			if (tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
				return -1;
			if (*p == 'Z' || *p == 'z')
				p++;
			else if ((*p == '+' || *p == '-') && digits(p + 1, 2) && p[3] == ':' &&
			    digits(p + 4, 2)) {
				off = (num(p + 1, 2) * 60 + num(p + 4, 2)) * 60000LL;
				if (*p == '-')
					off = -off;
				p += 6;
			}
		}
		if (*p != '\0')
			return -1;
		time_t t = timegm(&tm);
		if (t == (time_t)-1)
			return -1;
		*out = (int64_t)t * 1000 + ms - off;
		return 0;
	}
	if (parse_duration(s, &d, &err) == 0) {
		*out = now - d;
		return 0;
	}
	return -1;
}

/* ---- entries ------------------------------------------------------- */

int
suppress_entry_prepare(struct suppress_entry *e, char *err, size_t errlen)
{
	const struct config *c = conf;
	char a[SUP_ADDR_MAX + 1], s[SUP_SCOPE_MAX + 1];

	if (suppress_normalize(e->address, c != NULL && c->suppress_gmail, a, sizeof(a)) < 0) {
		snprintf(err, errlen, "not a valid address: \"%.200s\"", e->address);
		return -1;
	}
	if (suppress_scope_norm(e->scope, s, sizeof(s)) < 0) {
		snprintf(err, errlen, "bad scope \"%.100s\" (global, domain:DOMAIN or pool:NAME)", e->scope);
		return -1;
	}
	if ((unsigned)e->reason > SUP_SOFT_BOUNCES) {
		snprintf(err, errlen, "bad reason");
		return -1;
	}
	memcpy(e->address, a, strlen(a) + 1);
	memcpy(e->scope, s, strlen(s) + 1);
	if (e->time <= 0)
		e->time = now_ms();
	return 0;
}

/* ---- import -------------------------------------------------------- */

void
suppress_import_init(struct suppress_import *im, bool ndjson, enum suppress_reason reason,
    const char *scope, const char *source, long first_line)
{
	memset(im, 0, sizeof(*im));
	im->ndjson = ndjson;
	im->reason = reason;
	snprintf(im->scope, sizeof(im->scope), "%s", scope ? scope : "");
	snprintf(im->source, sizeof(im->source), "%s", source ? source : "import");
	im->line = first_line > 0 ? first_line - 1 : 0;
	im->first = true;
	im->cols[0] = SC_ADDRESS;
	im->cols[1] = SC_REASON;
	im->cols[2] = SC_SCOPE;
	im->cols[3] = SC_TIME;
	im->cols[4] = SC_SOURCE;
	im->ncols = 5;
	im->now = now_ms();
}

static void
import_error(struct suppress_import *im, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
import_error(struct suppress_import *im, const char *fmt, ...)
{
	va_list ap;

	im->invalid++;
	if (im->nerr >= SUP_IMPORT_ERRORS)
		return;
	im->err[im->nerr].line = im->line;
	va_start(ap, fmt);
	vsnprintf(im->err[im->nerr].msg, sizeof(im->err[im->nerr].msg), fmt, ap);
	va_end(ap);
	im->nerr++;
}

static void
batch_flush(struct suppress_import *im)
{
	if (im->b == NULL)
		return;
	/* back-pressure: the writer works through what is queued first */
	while (store_backlog() > SUP_IMPORT_BACKLOG)
		usleep(500);
	suppress_batch_submit(im->b);
	im->b = NULL;
}

/* A field set from a column value: the fields not given keep their defaults. */
static int
set_field(struct suppress_import *im, struct suppress_entry *e, enum sup_col col, const char *v)
{
	switch (col) {
	case SC_ADDRESS:
		if (strlen(v) >= sizeof(e->address)) {
			import_error(im, "address too long");
			return -1;
		}
		strcpy(e->address, v);
		return 0;
	case SC_REASON:
		if (*v && suppress_reason_parse(v, &e->reason) < 0) {
			import_error(im, "unknown reason \"%.40s\"", v);
			return -1;
		}
		return 0;
	case SC_SCOPE:
		if (*v) {
			if (strlen(v) >= sizeof(e->scope)) {
				import_error(im, "scope too long");
				return -1;
			}
			strcpy(e->scope, v);
		}
		return 0;
	case SC_TIME:
		if (*v && suppress_parse_time(v, im->now, &e->time) < 0) {
			import_error(im, "bad time \"%.40s\"", v);
			return -1;
		}
		return 0;
	case SC_SOURCE:
		if (*v)
			snprintf(e->source, sizeof(e->source), "%.*s", SUP_SOURCE_MAX, v);
		return 0;
	case SC_IGNORE:
		return 0;
	}
	return 0;
}

static enum sup_col
col_named(const char *name)
{
	if (!strcasecmp(name, "address") || !strcasecmp(name, "email") || !strcasecmp(name, "recipient"))
		return SC_ADDRESS;
	if (!strcasecmp(name, "reason"))
		return SC_REASON;
	if (!strcasecmp(name, "scope"))
		return SC_SCOPE;
	if (!strcasecmp(name, "time") || !strcasecmp(name, "suppressed_at"))
		return SC_TIME;
	if (!strcasecmp(name, "source"))
		return SC_SOURCE;
	return SC_IGNORE;
}

/* Split a CSV line in place: up to max fields; -1 on a bad quote. */
static int
csv_split(char *line, char **f, int max)
{
	int n = 0;
	char *p = line;

	for (;;) {
		char *start = p, *o = p;
		if (*p == '"') {
			p++;
			for (;;) {
				if (*p == '\0')
					return -1;
				if (*p == '"') {
					if (p[1] == '"') {
						*o++ = '"';
						p += 2;
						continue;
					}
					p++;
					break;
				}
				*o++ = *p++;
			}
			if (*p != ',' && *p != '\0')
				return -1;
		} else {
			while (*p && *p != ',')
				*o++ = *p++;
		}
		char end = *p;
		*o = '\0';
		/* trim blanks around an unquoted value */
		while (*start == ' ' || *start == '\t')
			start++;
		for (char *q = o; q > start && (q[-1] == ' ' || q[-1] == '\t'); q--)
			q[-1] = '\0';
		if (n < max)
			f[n++] = start;
		if (end == '\0')
			return n;
		p++;
	}
}

static int
ndjson_entry(struct suppress_import *im, const char *line, size_t len, struct suppress_entry *e)
{
	json_error_t jerr;
	json_t *o = json_loadb(line, len, 0, &jerr);
	const char *k;
	json_t *v;
	int rc = 0;
	bool have_addr = false;

	if (o == NULL || !json_is_object(o)) {
		import_error(im, "not a JSON object%s%s", o ? "" : ": ", o ? "" : jerr.text);
		json_decref(o);
		return -1;
	}
	json_object_foreach(o, k, v) {
		enum sup_col c = col_named(k);
		char buf[32];
		const char *s;
		if (c == SC_IGNORE)
			continue;
		if (json_is_string(v))
			s = json_string_value(v);
		else if (c == SC_TIME && json_is_integer(v)) {
			snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
			s = buf;
		} else if (json_is_null(v))
			continue;
		else {
			import_error(im, "\"%s\" must be a string", k);
			rc = -1;
			break;
		}
		if (c == SC_ADDRESS)
			have_addr = true;
		if ((rc = set_field(im, e, c, s)) < 0)
			break;
	}
	json_decref(o);
	if (rc == 0 && !have_addr) {
		import_error(im, "no \"address\"");
		rc = -1;
	}
	return rc;
}

void
suppress_import_line(struct suppress_import *im, char *line, size_t len)
{
	struct suppress_entry e;
	char err[200];

	im->line++;
	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
		line[--len] = '\0';
	const char *p = line;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '\0' || *p == '#') {
		im->skipped++;
		return;
	}
	memset(&e, 0, sizeof(e));
	e.reason = im->reason;
	snprintf(e.scope, sizeof(e.scope), "%s", im->scope);
	snprintf(e.source, sizeof(e.source), "%s", im->source);
	if (im->ndjson) {
		if (ndjson_entry(im, line, len, &e) < 0)
			return;
	} else {
		char *f[8];
		int n = csv_split(line, f, (int)ARRAY_SIZE(f));
		if (n < 0) {
			import_error(im, "unbalanced quotes");
			return;
		}
		bool header = im->first;
		bool named = false;
		for (int i = 0; header && i < n; i++) {
			if (strchr(f[i], '@') != NULL)
				header = false;
			else if (col_named(f[i]) == SC_ADDRESS)
				named = true;
		}
		if (header && named) {
			/* a header: it names the columns */
			im->ncols = n;
			for (int i = 0; i < n; i++)
				im->cols[i] = col_named(f[i]);
			im->first = false;
			im->skipped++;
			return;
		}
		for (int i = 0; i < n && i < im->ncols; i++)
			if (set_field(im, &e, im->cols[i], f[i]) < 0)
				return;
		if (e.address[0] == '\0') {
			import_error(im, "no address");
			return;
		}
	}
	im->first = false;
	if (suppress_entry_prepare(&e, err, sizeof(err)) < 0) {
		import_error(im, "%s", err);
		return;
	}
	if (im->b == NULL)
		im->b = suppress_batch_new(SUP_IMPORT_BATCH, &im->failed);
	im->b->v[im->b->n++] = e;
	im->imported++;
	if (im->b->n == im->b->cap)
		batch_flush(im);
}

int
suppress_import_finish(struct suppress_import *im)
{
	batch_flush(im);
	store_flush();
	unsigned long failed = __atomic_load_n(&im->failed, __ATOMIC_RELAXED);
	if (failed > 0) {
		im->imported = im->imported > failed ? im->imported - failed : 0;
		return -1;
	}
	return 0;
}

/* ---- export -------------------------------------------------------- */

static void
csv_field(struct sbuf *out, const char *s)
{
	if (strpbrk(s, ",\"\r\n") == NULL) {
		sb_str(out, s);
		return;
	}
	sb_add(out, "\"", 1);
	for (; *s; s++) {
		if (*s == '"')
			sb_add(out, "\"", 1);
		sb_add(out, s, 1);
	}
	sb_add(out, "\"", 1);
}

void
suppress_format_csv(const struct suppress_entry *e, struct sbuf *out)
{
	char t[40];

	fmt_time3339(t, sizeof(t), e->time);
	csv_field(out, e->address);
	sb_add(out, ",", 1);
	sb_str(out, suppress_reason_name(e->reason));
	sb_add(out, ",", 1);
	csv_field(out, e->scope[0] ? e->scope : "global");
	sb_add(out, ",", 1);
	sb_str(out, t);
	sb_add(out, ",", 1);
	csv_field(out, e->source);
	sb_add(out, "\n", 1);
}

void
suppress_format_ndjson(const struct suppress_entry *e, struct sbuf *out)
{
	struct jbuf j;
	const char *s;
	size_t n;

	jb_init_bare(&j);
	jb_str(&j, "address", e->address);
	jb_str(&j, "reason", suppress_reason_name(e->reason));
	jb_str(&j, "scope", e->scope[0] ? e->scope : "global");
	jb_time(&j, "time", e->time);
	jb_str(&j, "source", e->source);
	s = jb_finish(&j, &n);
	sb_add(out, s, n);
	sb_add(out, "\n", 1);
	jb_free(&j);
}
