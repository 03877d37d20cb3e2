/*
 * sluicectl suppression: the suppression list through the control API
 * (add, remove, lookup, list, import, export).
 *
 * Import sends the file in parts of IMPORT_PART lines (each a request that
 * the daemon writes through before it answers), so the progress bar on a
 * terminal shows what is really stored; a CSV header line goes with every
 * part. Export streams the chunked reply into the file as it arrives.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "sluicectl.h"
#include "util.h"

#define EXIT_ERR 1
#define EXIT_CONNECT 2
#define IMPORT_PART 50000       /* lines per request */
#define LIST_PAGE 1000

static const char supp_usage[] =
"usage: sluicectl suppression add ADDRESS [--reason R] [--scope S] [--source TEXT]\n"
"       sluicectl suppression remove ADDRESS [--scope S]\n"
"       sluicectl suppression lookup ADDRESS\n"
"       sluicectl suppression list [--reason R] [--since TIME] [--scope S] [--limit N]\n"
"       sluicectl suppression import FILE|- [--format csv|ndjson] [--reason R] [--scope S]\n"
"       sluicectl suppression export [--format csv|ndjson] [FILE]\n"
"\n"
"Reasons: hard-bounce complaint unsubscribe manual spam-trap soft-bounces.\n"
"Scopes: global (default), domain:SENDER-DOMAIN, pool:NAME.\n"
"TIME: RFC 3339 (2026-11-01 or 2026-11-01T08:00:00Z), epoch seconds, or a\n"
"duration back from now (7d).\n";

struct sresp {
	long status;
	struct sbuf body;              /* the body, unless streamed to out */
	FILE *out;                     /* export: a 200 body goes here */
	long lines;                    /* newlines streamed */
	char tail[256];                /* the last bytes streamed (error line) */
	size_t taillen;
	bool progress;
	long total;
	CURL *h;
	bool write_failed;
};

static size_t
on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct sresp *r = arg;
	size_t n = size * nmemb;
	long code = 0;

	curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &code);
	if (r->out == NULL || code != 200) {
		sb_add(&r->body, ptr, n);
		return n;
	}
	if (fwrite(ptr, 1, n, r->out) != n) {
		r->write_failed = true;
		return 0;
	}
	long before = r->lines;
	for (size_t i = 0; i < n; i++)
		if (ptr[i] == '\n')
			r->lines++;
	if (n >= sizeof(r->tail)) {
		memcpy(r->tail, ptr + n - sizeof(r->tail), sizeof(r->tail));
		r->taillen = sizeof(r->tail);
	} else {
		size_t keep = MIN(r->taillen, sizeof(r->tail) - n);
		memmove(r->tail, r->tail + r->taillen - keep, keep);
		memcpy(r->tail + keep, ptr, n);
		r->taillen = keep + n;
	}
	if (r->progress && r->lines / 20000 != before / 20000)
		ctl_progress("export", r->lines, r->total, "", false);
	return n;
}

/* One request; exits 2 when the daemon cannot be reached. */
static void
request(const struct ctl_opts *o, const char *method, const char *path, const char *ctype,
    const char *body, size_t len, struct sresp *r)
{
	char errbuf[CURL_ERROR_SIZE];
	struct curl_slist *hdrs = NULL;
	CURLcode rc;
	CURL *h;

	h = r->h = ctl_curl(o, method, path, errbuf, on_body, r);
	if (body != NULL) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
		char ct[128];
		snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
		hdrs = curl_slist_append(hdrs, ct);
		hdrs = curl_slist_append(hdrs, "Expect:");
	}
	rc = ctl_perform(o, h, hdrs, errbuf, &r->status);
	r->h = NULL;
	if (rc != CURLE_OK) {
		fprintf(stderr, "sluicectl: %s %s: %s\n", method, path,
		    r->write_failed ? strerror(errno) : errbuf[0] ? errbuf : curl_easy_strerror(rc));
		exit(EXIT_ERR);
	}
}

/* The JSON answer, or NULL (error printed) when it is not 2xx or not JSON.
 * not_found: print nothing for a 404 (the caller says it its way). */
static json_t *
answer(const struct ctl_opts *o, struct sresp *r, bool quiet_404)
{
	json_error_t jerr;
	json_t *j = r->body.len ? json_loadb(r->body.p, r->body.len, 0, &jerr) : NULL;

	if (j == NULL) {
		fprintf(stderr, "sluicectl: HTTP %ld with a body that is not JSON: %.200s\n", r->status,
		    r->body.p ? r->body.p : "(empty)");
		return NULL;
	}
	if (r->status >= 200 && r->status < 300)
		return j;
	if (o->json && !(quiet_404 && r->status == 404)) {
		char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		if (s)
			puts(s);
		free(s);
	}
	if (!(quiet_404 && r->status == 404)) {
		const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
		fprintf(stderr, "sluicectl: %s\n", msg ? msg : "request failed");
	}
	json_decref(j);
	return NULL;
}

/* Append "&key=escaped" (or "?key=" first) to a query. */
static void
qadd(struct sbuf *q, const char *key, const char *val)
{
	if (val == NULL)
		return;
	char *e = ctl_escape(val);
	sb_printf(q, "%s%s=%s", strchr(q->p ? q->p : "", '?') ? "&" : "?", key, e);
	free(e);
}

/* ---- options -------------------------------------------------------- */

struct sopts {
	const char *reason, *scope, *source, *since, *format;
	long limit;
	const char *arg;                /* the one positional argument */
};

static int
parse_opts(int argc, char **argv, struct sopts *so, const char *allowed, bool positional)
{
	memset(so, 0, sizeof(*so));
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (strncmp(a, "--", 2) != 0 || strcmp(a, "-") == 0) {
			if (!positional || so->arg != NULL) {
				fprintf(stderr, "sluicectl: unexpected argument \"%s\"\n%s", a, supp_usage);
				return -1;
			}
			so->arg = a;
			continue;
		}
		const char *name = a + 2, *val = NULL;
		char nbuf[32];
		const char *eq = strchr(name, '=');
		if (eq != NULL) {
			snprintf(nbuf, sizeof(nbuf), "%.*s", (int)(eq - name), name);
			name = nbuf;
			val = eq + 1;
		} else if (i + 1 < argc)
			val = argv[++i];
		char word[40];
		snprintf(word, sizeof(word), " %s ", name);
		char *list = xasprintf(" %s ", allowed);
		bool known = strstr(list, word) != NULL;
		free(list);
		if (!known || val == NULL) {
			fprintf(stderr, "sluicectl: %s: %s\n%s", a,
			    !known ? "not an option of this command" : "needs a value", supp_usage);
			return -1;
		}
		if (strcmp(name, "reason") == 0)
			so->reason = val;
		else if (strcmp(name, "scope") == 0)
			so->scope = val;
		else if (strcmp(name, "source") == 0)
			so->source = val;
		else if (strcmp(name, "since") == 0)
			so->since = val;
		else if (strcmp(name, "format") == 0) {
			if (strcmp(val, "csv") != 0 && strcmp(val, "ndjson") != 0) {
				fprintf(stderr, "sluicectl: --format is csv or ndjson\n");
				return -1;
			}
			so->format = val;
		} else if (strcmp(name, "limit") == 0) {
			char *end;
			so->limit = strtol(val, &end, 10);
			if (*end != '\0' || so->limit < 1) {
				fprintf(stderr, "sluicectl: --limit needs a positive number\n");
				return -1;
			}
		} else {
			fprintf(stderr, "sluicectl: unknown option %s\n%s", a, supp_usage);
			return -1;
		}
	}
	return 0;
}

/* ---- commands ------------------------------------------------------- */

static int
s_add(const struct ctl_opts *o, const char *addr, const struct sopts *so)
{
	struct sresp r = { 0 };
	json_t *body = json_object(), *j;
	char *path, *text, *e = ctl_escape(addr);

	if (so->reason)
		json_object_set_new(body, "reason", json_string(so->reason));
	if (so->scope)
		json_object_set_new(body, "scope", json_string(so->scope));
	json_object_set_new(body, "source", json_string(so->source ? so->source : "sluicectl"));
	text = json_dumps(body, JSON_COMPACT);
	path = xasprintf("/v1/suppression/%s", e);
	request(o, "PUT", path, "application/json", text, strlen(text), &r);
	free(text);
	free(path);
	free(e);
	json_decref(body);
	j = answer(o, &r, false);
	free(r.body.p);
	if (j == NULL)
		return EXIT_ERR;
	if (o->json)
		ctl_print_json(j);
	else
		printf("suppressed %s (%s, %s)\n", ctl_js(j, "address"), ctl_js(j, "reason"), ctl_js(j, "scope"));
	json_decref(j);
	return 0;
}

static int
s_remove(const struct ctl_opts *o, const char *addr, const struct sopts *so)
{
	struct sresp r = { 0 };
	struct sbuf path = { 0 };
	char *e = ctl_escape(addr);
	json_t *j, *v;
	size_t i;

	sb_printf(&path, "/v1/suppression/%s", e);
	free(e);
	qadd(&path, "scope", so->scope);
	request(o, "DELETE", path.p, NULL, NULL, 0, &r);
	free(path.p);
	j = answer(o, &r, false);
	free(r.body.p);
	if (j == NULL)
		return EXIT_ERR;
	if (o->json)
		ctl_print_json(j);
	else {
		printf("removed %s:", addr);
		json_array_foreach(json_object_get(j, "removed"), i, v)
			printf(" %s", json_string_value(v));
		putchar('\n');
	}
	json_decref(j);
	return 0;
}

static void
print_entries(json_t *arr, bool header)
{
	size_t i, w = 7;
	json_t *e;

	json_array_foreach(arr, i, e)
		w = MAX(w, strlen(ctl_js(e, "address")));
	if (header)
		printf("%-*s  %-12s  %-24s  %-24s  %s\n", (int)w, "ADDRESS", "REASON", "SCOPE", "TIME", "SOURCE");
	json_array_foreach(arr, i, e)
		printf("%-*s  %-12s  %-24s  %-24s  %s\n", (int)w, ctl_js(e, "address"), ctl_js(e, "reason"),
		    ctl_js(e, "scope"), ctl_js(e, "time"), ctl_js(e, "source"));
}

static int
s_lookup(const struct ctl_opts *o, const char *addr)
{
	struct sresp r = { 0 };
	char *e = ctl_escape(addr), *path = xasprintf("/v1/suppression/%s", e);
	json_t *j;

	request(o, "GET", path, NULL, NULL, 0, &r);
	free(path);
	free(e);
	if (r.status == 404) {
		if (o->json)
			fwrite(r.body.p, 1, r.body.len, stdout);
		else
			printf("%s is not suppressed\n", addr);
		free(r.body.p);
		return EXIT_ERR;
	}
	j = answer(o, &r, false);
	free(r.body.p);
	if (j == NULL)
		return EXIT_ERR;
	if (o->json)
		ctl_print_json(j);
	else
		print_entries(json_object_get(j, "entries"), true);
	json_decref(j);
	return 0;
}

static int
s_list(const struct ctl_opts *o, const struct sopts *so)
{
	char *cursor = NULL;
	long shown = 0;
	json_t *all = o->json ? json_array() : NULL;
	int rc = 0;

	for (;;) {
		struct sresp r = { 0 };
		struct sbuf path = { 0 };
		char lim[32];
		long want = so->limit ? MIN(LIST_PAGE, so->limit - shown) : LIST_PAGE;

		snprintf(lim, sizeof(lim), "%ld", want);
		sb_str(&path, "/v1/suppression");
		qadd(&path, "reason", so->reason);
		qadd(&path, "since", so->since);
		qadd(&path, "scope", so->scope);
		qadd(&path, "cursor", cursor);
		qadd(&path, "limit", lim);
		request(o, "GET", path.p, NULL, NULL, 0, &r);
		free(path.p);
		json_t *j = answer(o, &r, false);
		free(r.body.p);
		if (j == NULL) {
			rc = EXIT_ERR;
			break;
		}
		json_t *arr = json_object_get(j, "entries");
		if (all != NULL)
			json_array_extend(all, arr);
		else
			print_entries(arr, shown == 0);
		shown += (long)json_array_size(arr);
		free(cursor);
		cursor = NULL;
		const char *next = json_string_value(json_object_get(j, "next_cursor"));
		if (next != NULL)
			cursor = xstrdup(next);
		json_decref(j);
		if (cursor == NULL || (so->limit && shown >= so->limit))
			break;
	}
	free(cursor);
	if (all != NULL) {
		if (rc == 0) {
			json_t *o2 = json_pack("{s:O,s:I}", "entries", all, "count", (json_int_t)shown);
			ctl_print_json(o2);
			json_decref(o2);
		}
		json_decref(all);
	} else if (rc == 0 && shown == 0)
		fputs("(no entries)\n", stderr);
	return rc;
}

/* The daemon's rule (suppress_io.c): no '@', a column named address,
 * email or recipient. */
static bool
csv_header_line(const char *line)
{
	if (strchr(line, '@') != NULL)
		return false;
	for (const char *p = line; *p;) {
		p += strspn(p, " \t\"");
		size_t n = strcspn(p, ",\"\r\n");
		if ((n == 7 && strncasecmp(p, "address", 7) == 0) ||
		    (n == 5 && strncasecmp(p, "email", 5) == 0) ||
		    (n == 9 && strncasecmp(p, "recipient", 9) == 0))
			return true;
		p += n;
		p += strspn(p, ",\"");
		if (*p == '\r' || *p == '\n')
			break;
	}
	return false;
}

struct import_totals {
	long imported, invalid, skipped, parts, last_line;
	json_t *errors;
};

static int
import_part(const struct ctl_opts *o, const struct sopts *so, bool ndjson, struct sbuf *buf,
    long first_line, struct import_totals *t)
{
	struct sresp r = { 0 };
	struct sbuf path = { 0 };
	char fl[32];

	snprintf(fl, sizeof(fl), "%ld", first_line);
	sb_str(&path, "/v1/suppression/import");
	qadd(&path, "reason", so->reason);
	qadd(&path, "scope", so->scope);
	qadd(&path, "source", so->source);
	qadd(&path, "first_line", fl);
	request(o, "POST", path.p, ndjson ? "application/x-ndjson" : "text/csv", buf->p ? buf->p : "",
	    buf->len, &r);
	free(path.p);
	json_error_t jerr;
	json_t *j = r.body.len ? json_loadb(r.body.p, r.body.len, 0, &jerr) : NULL;
	if (j == NULL || r.status >= 300) {
		json_t *a = j ? json_incref(j) : NULL;
		int rc = EXIT_ERR;
		if (j == NULL || json_object_get(j, "imported") == NULL) {
			json_decref(a);
			a = answer(o, &r, false);      /* prints the error */
			json_decref(a);
			free(r.body.p);
			json_decref(j);
			return rc;
		}
		json_decref(a);
		const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
		fprintf(stderr, "\nsluicectl: import failed: %s\n", msg ? msg : "HTTP error");
		t->imported += (long)json_integer_value(json_object_get(j, "imported"));
		free(r.body.p);
		json_decref(j);
		return rc;
	}
	free(r.body.p);
	t->imported += (long)json_integer_value(json_object_get(j, "imported"));
	t->invalid += (long)json_integer_value(json_object_get(j, "invalid"));
	t->skipped += (long)json_integer_value(json_object_get(j, "skipped"));
	t->last_line = (long)json_integer_value(json_object_get(j, "last_line"));
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(j, "errors"), i, e)
		if (json_array_size(t->errors) < 10)
			json_array_append(t->errors, e);
	t->parts++;
	json_decref(j);
	return 0;
}

static int
s_import(const struct ctl_opts *o, const struct sopts *so)
{
	FILE *f;
	struct stat st;
	long total = 0, lineno = 0, part_first = 1;
	char *line = NULL, *header = NULL;
	size_t cap = 0;
	ssize_t n;
	struct sbuf buf = { 0 };
	long inpart = 0;
	bool ndjson, progress = isatty(2) && !o->json;
	struct import_totals t = { .errors = json_array() };
	int64_t t0 = mono_ms();
	int rc = 0;

	if (so->arg == NULL) {
		fprintf(stderr, "sluicectl: import needs a FILE (or - for standard input)\n");
		return EXIT_ERR;
	}
	if (strcmp(so->arg, "-") == 0)
		f = stdin;
	else if ((f = fopen(so->arg, "r")) == NULL) {
		fprintf(stderr, "sluicectl: %s: %s\n", so->arg, strerror(errno));
		return EXIT_ERR;
	}
	if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode))
		total = (long)st.st_size;
	if (so->format != NULL)
		ndjson = strcmp(so->format, "ndjson") == 0;
	else {
		const char *dot = strrchr(so->arg, '.');
		ndjson = dot && (!strcmp(dot, ".ndjson") || !strcmp(dot, ".jsonl") || !strcmp(dot, ".json"));
	}
	while ((n = getline(&line, &cap, f)) > 0) {
		lineno++;
		if (lineno == 1 && !ndjson && so->format == NULL && line[strspn(line, " \t")] == '{')
			ndjson = true;  /* JSON lines in a file without a telling name */
		if (!ndjson && header == NULL && lineno == 1 && csv_header_line(line)) {
			header = xstrdup(line);
			sb_add(&buf, line, (size_t)n);
			continue;
		}
		if (inpart == 0 && buf.len == 0 && header != NULL) {
			/* the header goes with every part, numbered just before it */
			sb_str(&buf, header);
			part_first = lineno - 1;
		} else if (inpart == 0 && buf.len == 0)
			part_first = lineno;
		sb_add(&buf, line, (size_t)n);
		if (line[n - 1] != '\n')
			sb_add(&buf, "\n", 1);
		if (++inpart == IMPORT_PART) {
			if ((rc = import_part(o, so, ndjson, &buf, part_first, &t)) != 0)
				break;
			buf.len = 0;
			inpart = 0;
			if (progress)
				ctl_progress("import", total ? ftell(f) : t.imported, total, "", false);
		}
	}
	if (rc == 0 && ferror(f)) {
		fprintf(stderr, "sluicectl: %s: %s\n", so->arg, strerror(errno));
		rc = EXIT_ERR;
	}
	if (rc == 0 && (inpart > 0 || t.parts == 0))
		rc = import_part(o, so, ndjson, &buf, part_first, &t);
	if (progress && rc == 0)
		ctl_progress("import", total ? total : t.imported, total, "", true);
	else if (progress)
		fputc('\n', stderr);
	/* the header sent again with each later part is not a skipped line */
	if (header != NULL && t.parts > 1)
		t.skipped -= t.parts - 1;
	free(buf.p);
	free(line);
	free(header);
	if (f != stdin)
		fclose(f);
	double secs = (double)(mono_ms() - t0) / 1000.0;
	if (o->json) {
		json_t *j = json_pack("{s:I,s:I,s:I,s:O,s:f}", "imported", (json_int_t)t.imported,
		    "invalid", (json_int_t)t.invalid, "skipped", (json_int_t)t.skipped,
		    "errors", t.errors, "seconds", secs);
		ctl_print_json(j);
		json_decref(j);
	} else {
		size_t i;
		json_t *e;
		printf("imported %ld addresses (%ld invalid, %ld lines skipped) in %.1fs\n", t.imported,
		    t.invalid, t.skipped, secs);
		json_array_foreach(t.errors, i, e)
			fprintf(stderr, "  line %lld: %s\n",
			    (long long)json_integer_value(json_object_get(e, "line")), ctl_js(e, "message"));
		if (t.invalid > (long)json_array_size(t.errors))
			fprintf(stderr, "  (%ld more invalid lines)\n", t.invalid - (long)json_array_size(t.errors));
	}
	json_decref(t.errors);
	if (rc == 0 && t.invalid > 0)
		rc = EXIT_ERR;
	return rc;
}

static int
s_export(const struct ctl_opts *o, const struct sopts *so)
{
	struct sresp r = { 0 };
	struct sbuf path = { 0 };
	FILE *out = stdout;
	bool tofile = so->arg != NULL && strcmp(so->arg, "-") != 0;

	if (tofile && (out = fopen(so->arg, "w")) == NULL) {
		fprintf(stderr, "sluicectl: %s: %s\n", so->arg, strerror(errno));
		return EXIT_ERR;
	}
	r.out = out;
	r.progress = isatty(2) && (tofile || !isatty(1));
	if (r.progress) {
		/* the total for the bar */
		struct sresp c = { 0 };
		request(o, "GET", "/v1/suppression?limit=1", NULL, NULL, 0, &c);
		json_t *j = answer(o, &c, false);
		free(c.body.p);
		if (j != NULL)
			r.total = (long)json_integer_value(json_object_get(j, "total"));
		json_decref(j);
	}
	sb_str(&path, "/v1/suppression/export");
	qadd(&path, "format", so->format ? so->format : "csv");
	request(o, "GET", path.p, NULL, NULL, 0, &r);
	free(path.p);
	int rc = 0;
	if (r.status != 200) {
		json_t *j = answer(o, &r, false);
		json_decref(j);
		rc = EXIT_ERR;
	} else {
		/* a store failure after the status line is the last line */
		r.tail[MIN(r.taillen, sizeof(r.tail) - 1)] = '\0';
		char *last = r.taillen > 1 ? r.tail + r.taillen - 1 : r.tail;
		while (last > r.tail && last[-1] != '\n')
			last--;
		if (strncmp(last, "# error:", 8) == 0 || strncmp(last, "{\"error\"", 8) == 0) {
			fprintf(stderr, "sluicectl: export incomplete: %s", last);
			rc = EXIT_ERR;
		}
	}
	if (fflush(out) != 0 || (tofile && fclose(out) != 0)) {
		fprintf(stderr, "sluicectl: %s: %s\n", so->arg, strerror(errno));
		rc = EXIT_ERR;
	}
	long entries = so->format && strcmp(so->format, "ndjson") == 0 ? r.lines : MAX(0, r.lines - 1);
	if (r.progress)
		ctl_progress("export", entries, r.total ? r.total : entries, "", true);
	if (rc == 0 && tofile)
		fprintf(o->json ? stderr : stdout, "exported %ld entries to %s\n", entries, so->arg);
	free(r.body.p);
	return rc;
}

/* The options of a command on one ADDRESS (so->arg): 0, or -1 (said why). */
static int
addr_opts(const char *sub, int argc, char **argv, struct sopts *so, const char *allowed)
{
	if (parse_opts(argc, argv, so, allowed, true) < 0)
		return -1;
	if (so->arg == NULL) {
		fprintf(stderr, "sluicectl: suppression %s needs an ADDRESS\n", sub);
		return -1;
	}
	return 0;
}

int
ctl_suppression(const struct ctl_opts *o, int argc, char **argv)
{
	struct sopts so;
	const char *sub = argc > 1 ? argv[1] : NULL;

	if (sub == NULL || strcmp(sub, "help") == 0) {
		fputs(supp_usage, sub ? stdout : stderr);
		return sub ? 0 : EXIT_ERR;
	}
	argc -= 2;
	argv += 2;
	if (strcmp(sub, "add") == 0)
		return addr_opts(sub, argc, argv, &so, "reason scope source") < 0 ? EXIT_ERR : s_add(o, so.arg, &so);
	if (strcmp(sub, "remove") == 0 || strcmp(sub, "delete") == 0)
		return addr_opts(sub, argc, argv, &so, "scope") < 0 ? EXIT_ERR : s_remove(o, so.arg, &so);
	if (strcmp(sub, "lookup") == 0 || strcmp(sub, "show") == 0)
		return addr_opts(sub, argc, argv, &so, "") < 0 ? EXIT_ERR : s_lookup(o, so.arg);
	if (strcmp(sub, "list") == 0) {
		if (parse_opts(argc, argv, &so, "reason since scope limit", false) < 0)
			return EXIT_ERR;
		return s_list(o, &so);
	}
	if (strcmp(sub, "import") == 0) {
		if (parse_opts(argc, argv, &so, "format reason scope source", true) < 0)
			return EXIT_ERR;
		return s_import(o, &so);
	}
	if (strcmp(sub, "export") == 0) {
		if (parse_opts(argc, argv, &so, "format", true) < 0)
			return EXIT_ERR;
		return s_export(o, &so);
	}
	fprintf(stderr, "sluicectl: unknown suppression command \"%s\"\n%s", sub, supp_usage);
	return EXIT_ERR;
}
