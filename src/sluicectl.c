/*
 * sluicectl: the command-line client of the control API (HTTP/1.1 + JSON
 * on the daemon's Unix socket, through libcurl), plus `dkim`, the local
 * key tools (ctl_dkim.c).
 *
 * Human output is aligned tables and key/value lines; --json prints the
 * API's JSON instead. Exit codes: 0 success, 1 error (usage, refused
 * request, bad answer), 2 the daemon cannot be reached.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "auth.h"
#include "conf.h"
#include "sluicectl.h"
#include "util.h"

#define DEFAULT_SOCKET RUNSTATEDIR "/sluice/control.sock"
#define EXIT_ERR 1
#define EXIT_CONNECT 2

static const char usage_text[] =
"usage: sluicectl [-s SOCKET] [-c CONFIG] [--json] COMMAND [ARGS]\n"
"\n"
"Commands:\n"
"  status                        daemon status and counters\n"
"  queue                         queue summary, by state and by site\n"
"  site                          list the destination sites\n"
"  site NAME                     a site's state, MX hosts and limits (with origin)\n"
"  site NAME suspend [DURATION [REASON...]]\n"
"                                stop deliveries to a site (default: until resumed)\n"
"  site NAME resume              resume deliveries to a site\n"
"  site NAME bounce [REASON...]  bounce everything queued at a site\n"
"  site NAME set LIMIT VALUE [LIMIT VALUE...]\n"
"                                change a site's limits until the next reload\n"
"                                (max-smtp-out, max-msg-per-connection,\n"
"                                max-rcpt-per-message, max-msg-rate,\n"
"                                max-connect-rate, retry-after, bounce-after, tls)\n"
"  message ID                    a queued message and its recipients\n"
"  message ID delete             drop a message from the queue (no bounce)\n"
"  reload                        reload the configuration\n"
"  suppression add ADDRESS [--reason R] [--scope S]\n"
"  suppression remove ADDRESS [--scope S]\n"
"  suppression lookup ADDRESS\n"
"  suppression list [--reason R] [--since TIME] [--scope S] [--limit N]\n"
"  suppression import FILE [--format csv|ndjson] [--reason R] [--scope S]\n"
"  suppression export [--format csv|ndjson] [FILE]\n"
"                                the suppression list (sluicectl suppression help)\n"
"  campaign create|plan FILE     create a campaign from NDJSON (plan: dry run)\n"
"  campaign add ID FILE          more recipients for a campaign\n"
"  campaign status|cancel ID     a campaign's counts per state; cancel it\n"
"  campaign list                 every campaign\n"
"  campaign explain ID ADDRESS   why a recipient's send time was chosen\n"
"  events import FILE            import engagement events (NDJSON)\n"
"  warmup                        IP warm-up: each source's schedule, day, and\n"
"                                today's cap and count per provider\n"
"  segment list                  segments and their sizes\n"
"  segment get NAME [--members N [--after ADDRESS]]\n"
"                                a segment's size, prior (busiest hours), members\n"
"  segment put NAME [--replace] [FILE|-]\n"
"                                add the addresses of FILE (one a line, or NDJSON\n"
"                                {\"email\": ...}; default standard input) to a\n"
"                                segment, streamed; --replace drops the others\n"
"  segment delete NAME           delete a segment and its memberships\n"
"  variants CAMPAIGN             a campaign's variants: sends, opens, clicks,\n"
"                                posterior mean, probability of being the best\n"
"  recipient EMAIL               a recipient's engagement, score with its parts,\n"
"                                segment and list-hygiene verdict\n"
"  dkim ...                      DKIM key tools (sluicectl dkim help)\n"
"  verp keygen FILE              write a new VERP key (verp-key)\n"
"  verp check ADDRESS            is ADDRESS a valid VERP address, and of which send\n"
"  user hash USER                read a password on standard input and print\n"
"                                the auth-users line (salted PBKDF2-SHA256)\n"
"  help                          this text\n"
"\n"
"Options:\n"
"  -s, --socket SOCKET   control socket (default: CONFIG's control-socket,\n"
"                        else $SLUICE_SOCKET, else " DEFAULT_SOCKET ")\n"
"  -c, --config CONFIG   read the socket path (and dkim settings) from CONFIG\n"
"  -j, --json            print the API's JSON\n"
"  -h, --help            this text\n"
"  -V, --version         print the version\n"
"\n"
"Exit status: 0 ok, 1 error, 2 cannot connect to the daemon.\n";

/* `sluicectl user hash USER`: one line for the auth-users file. The
 * password comes from standard input (first line), never the command line. */
static int
ctl_user(int argc, char **argv)
{
	char pass[1024];

	if (argc != 3 || strcmp(argv[1], "hash") != 0) {
		fputs("usage: sluicectl user hash USER   (password on standard input)\n", stderr);
		return EXIT_ERR;
	}
	if (strchr(argv[2], ':') || argv[2][0] == '\0') {
		fputs("sluicectl: user names cannot be empty or contain ':'\n", stderr);
		return EXIT_ERR;
	}
	if (isatty(0))
		fputs("password: ", stderr);
	if (fgets(pass, sizeof(pass), stdin) == NULL) {
		fputs("sluicectl: no password on standard input\n", stderr);
		return EXIT_ERR;
	}
	pass[strcspn(pass, "\r\n")] = '\0';
	if (pass[0] == '\0') {
		fputs("sluicectl: empty password\n", stderr);
		return EXIT_ERR;
	}
	char *h = auth_hash(pass);
	printf("%s:%s\n", argv[2], h);
	explicit_bzero(pass, sizeof(pass));
	free(h);
	return 0;
}

void
ctl_die(int code, const char *fmt, ...)
{
	va_list ap;

	fputs("sluicectl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

static void usage_error(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

static void
usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("sluicectl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'sluicectl help'.\n", stderr);
	exit(EXIT_ERR);
}

/* ---------------------------------------------------------------- HTTP */

struct resp {
	long status;
	char *body;
	size_t len;
	json_t *json;
};

static size_t
on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct resp *r = arg;
	size_t n = size * nmemb;

	r->body = xrealloc(r->body, r->len + n + 1);
	memcpy(r->body + r->len, ptr, n);
	r->len += n;
	r->body[r->len] = '\0';
	return n;
}

/*
 * One request. Returns with r filled (any HTTP status); exits 2 when the
 * socket cannot be reached and 1 on any other transport problem.
 */
static size_t
on_read(char *buf, size_t size, size_t nmemb, void *arg)
{
	FILE *in = arg;
	size_t n = fread(buf, 1, size * nmemb, in);

	if (n == 0 && ferror(in))
		return CURL_READFUNC_ABORT;
	return n;
}

CURL *
ctl_curl(const struct ctl_opts *o, const char *method, const char *path, char *errbuf,
    curl_write_callback on_body, void *arg)
{
	char *url = xasprintf("http://localhost%s", path);
	CURL *h;

	if ((h = curl_easy_init()) == NULL)
		ctl_die(EXIT_ERR, "cannot initialise libcurl");
	errbuf[0] = '\0';
	curl_easy_setopt(h, CURLOPT_URL, url);
	free(url);
	curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, o->socket);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, arg);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	return h;
}

CURLcode
ctl_perform(const struct ctl_opts *o, CURL *h, struct curl_slist *hdrs, const char *errbuf,
    long *status)
{
	long oserr = 0;
	CURLcode rc;

	*status = 0;
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	rc = curl_easy_perform(h);
	if (rc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
	else if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST)
		curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &oserr);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST)
		ctl_die(EXIT_CONNECT, "cannot connect to %s: %s (is sluiced running?)", o->socket,
		    oserr ? strerror((int)oserr) : errbuf[0] ? errbuf : curl_easy_strerror(rc));
	return rc;
}

/* The request body comes from `in` when not NULL (NDJSON, sent chunked as
 * it is read), else from body. */
static void
api_in(const struct ctl_opts *o, const char *method, const char *path, json_t *body,
    FILE *in, struct resp *r)
{
	char errbuf[CURL_ERROR_SIZE];
	struct curl_slist *hdrs = NULL;
	char *text = NULL;
	json_error_t jerr;
	CURLcode rc;
	CURL *h;

	memset(r, 0, sizeof(*r));
	h = ctl_curl(o, method, path, errbuf, on_data, r);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 300L);
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	if (in != NULL) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(h, CURLOPT_READDATA, in);
		curl_easy_setopt(h, CURLOPT_TIMEOUT, 0L);       /* as long as the input lasts */
		hdrs = curl_slist_append(hdrs, "Content-Type: application/x-ndjson");
		hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
		hdrs = curl_slist_append(hdrs, "Expect:");
	} else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
		text = body ? json_dumps(body, JSON_COMPACT) : xstrdup("");
		if (text == NULL)
			ctl_die(EXIT_ERR, "cannot encode the request");
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, text);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(text));
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		hdrs = curl_slist_append(hdrs, "Expect:");
	}
	rc = ctl_perform(o, h, hdrs, errbuf, &r->status);
	free(text);
	if (rc != CURLE_OK) {
		free(r->body);
		curl_global_cleanup();
		ctl_die(EXIT_ERR, "%s %s on %s: %s", method, path, o->socket,
		    errbuf[0] ? errbuf : curl_easy_strerror(rc));
	}

	if (r->len > 0)
		r->json = json_loadb(r->body, r->len, 0, &jerr);
	if (r->json == NULL)
		ctl_die(EXIT_ERR, "%s %s: HTTP %ld with a body that is not JSON: %.200s", method, path,
		    r->status, r->body ? r->body : "(empty)");
}

static void
resp_free(struct resp *r)
{
	json_decref(r->json);
	free(r->body);
	r->json = NULL;
	r->body = NULL;
}

void
ctl_print_json(const json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	if (s != NULL) {
		puts(s);
		free(s);
	}
}

const char *
ctl_js(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : "-";
}

char *
ctl_escape(const char *s)
{
	char *e = curl_easy_escape(NULL, s, 0), *r;

	if (e == NULL)
		ctl_die(EXIT_ERR, "out of memory");
	r = xstrdup(e);
	curl_free(e);
	return r;
}

void
ctl_progress(const char *what, long long done, long long total, const char *unit, bool final)
{
	if (total > 0) {
		int pct = (int)MIN(100, done * 100 / total);
		int fill = pct * 30 / 100;
		char bar[31];

		memset(bar, '#', (size_t)fill);
		memset(bar + fill, '-', (size_t)(30 - fill));
		bar[30] = '\0';
		fprintf(stderr, "\r%s [%s] %3d%%  %lld/%lld%s", what, bar, pct, done, total, unit);
	} else
		fprintf(stderr, "\r%s %lld%s", what, done, unit);
	if (final)
		fputc('\n', stderr);
	fflush(stderr);
}

/*
 * The common path: request, then --json printing or an error report.
 * Returns the JSON (owned by r) for human output; NULL when there is
 * nothing more to print (--json, or an error), with the exit code in
 * call_rc and r already freed.
 */
static int call_rc;

static json_t *
call_in(const struct ctl_opts *o, const char *method, const char *path, json_t *body,
    FILE *in, struct resp *r)
{
	json_t *err;

	api_in(o, method, path, body, in, r);
	if (r->status >= 200 && r->status < 300) {
		if (!o->json)
			return r->json;
		ctl_print_json(r->json);
		call_rc = 0;
		resp_free(r);
		return NULL;
	}
	if (o->json)
		ctl_print_json(r->json);
	err = json_object_get(r->json, "error");
	if (err != NULL) {
		const char *msg = json_string_value(json_object_get(err, "message"));
		json_t *lines = json_object_get(err, "errors");
		size_t i;
		json_t *l;

		if (json_array_size(lines) > 0) {
			fprintf(stderr, "sluicectl: refused (HTTP %ld, %s):\n", r->status,
			    json_string_value(json_object_get(err, "code")) ?
			    json_string_value(json_object_get(err, "code")) : "error");
			json_array_foreach(lines, i, l)
				fprintf(stderr, "  %s\n", json_string_value(l) ? json_string_value(l) : "?");
		} else {
			fprintf(stderr, "sluicectl: %s\n", msg ? msg : "request failed");
		}
	} else {
		fprintf(stderr, "sluicectl: %s %s: HTTP %ld\n", method, path, r->status);
	}
	call_rc = EXIT_ERR;
	resp_free(r);
	return NULL;
}

static json_t *
call(const struct ctl_opts *o, const char *method, const char *path, json_t *body,
    struct resp *r)
{
	return call_in(o, method, path, body, NULL, r);
}

/* "/v1/sites/" + escaped name + suffix */
static char *
path_with(const char *prefix, const char *name, const char *suffix)
{
	char *esc = curl_easy_escape(NULL, name, 0), *p;

	if (esc == NULL)
		ctl_die(EXIT_ERR, "out of memory");
	p = xasprintf("%s%s%s", prefix, esc, suffix);
	curl_free(esc);
	return p;
}

/* ---------------------------------------------------------------- output */

/* A JSON value as text: strings as is, numbers, yes/no, "-" for null. */
static const char *
jtext(const json_t *v, char *buf, size_t len)
{
	if (v == NULL || json_is_null(v))
		return "-";
	if (json_is_string(v))
		return json_string_value(v);
	if (json_is_integer(v)) {
		snprintf(buf, len, "%lld", (long long)json_integer_value(v));
		return buf;
	}
	if (json_is_real(v)) {
		snprintf(buf, len, "%g", json_real_value(v));
		return buf;
	}
	if (json_is_boolean(v))
		return json_is_true(v) ? "yes" : "no";
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	snprintf(buf, len, "%s", s ? s : "?");
	free(s);
	return buf;
}

/* Field text; the buffer rotates so a few can be used in one printf. */
static const char *
jf(const json_t *obj, const char *key)
{
	static char bufs[8][256];
	static int next;
	char *b = bufs[next++ % 8];

	return jtext(json_object_get(obj, key), b, 256);
}

static long long
ji(const json_t *obj, const char *key)
{
	return (long long)json_integer_value(json_object_get(obj, key));
}

/* 93784 -> "1d2h" (the two largest units). */
static const char *
fmt_age(long long s, char *buf, size_t len)
{
	static const struct { const char *u; long long n; } units[] = {
		{ "d", 86400 }, { "h", 3600 }, { "m", 60 }, { "s", 1 } };
	size_t i = 0;
	long long rest;

	if (s <= 0) {
		snprintf(buf, len, "0s");
		return buf;
	}
	while (i + 1 < ARRAY_SIZE(units) && s < units[i].n)
		i++;
	rest = s % units[i].n;
	if (i + 1 < ARRAY_SIZE(units) && rest / units[i + 1].n > 0)
		snprintf(buf, len, "%lld%s%lld%s", s / units[i].n, units[i].u,
		    rest / units[i + 1].n, units[i + 1].u);
	else
		snprintf(buf, len, "%lld%s", s / units[i].n, units[i].u);
	return buf;
}

static void
kv(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
kv(const char *key, const char *fmt, ...)
{
	va_list ap;

	printf("%-13s ", key);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* A table with aligned columns; right-aligned columns are numeric. */
#define TBL_MAXCOL 10
struct table {
	int ncol;
	const char *head[TBL_MAXCOL];
	bool right[TBL_MAXCOL];
	char **cells;                  /* nrows * ncol */
	int nrows;
};

static void
table_init(struct table *t, const char *spec)
{
	/* spec: "NAME,>QUEUED,..." ('>' = right-aligned) */
	char *copy = xstrdup(spec), *save = NULL;

	memset(t, 0, sizeof(*t));
	for (char *tok = strtok_r(copy, ",", &save); tok && t->ncol < TBL_MAXCOL;
	    tok = strtok_r(NULL, ",", &save)) {
		t->right[t->ncol] = *tok == '>';
		t->head[t->ncol++] = xstrdup(*tok == '>' ? tok + 1 : tok);
	}
	free(copy);
}

static void
table_row(struct table *t, ...)
{
	va_list ap;

	t->cells = xrealloc(t->cells, sizeof(char *) * (size_t)(t->nrows + 1) * (size_t)t->ncol);
	va_start(ap, t);
	for (int i = 0; i < t->ncol; i++) {
		const char *s = va_arg(ap, const char *);
		t->cells[t->nrows * t->ncol + i] = xstrdup(s ? s : "-");
	}
	va_end(ap);
	t->nrows++;
}

/* Display width of UTF-8 text (code points). */
static int
text_width(const char *s)
{
	int n = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	return n;
}

static void
table_print(struct table *t)
{
	int w[TBL_MAXCOL];

	for (int c = 0; c < t->ncol; c++) {
		w[c] = text_width(t->head[c]);
		for (int r = 0; r < t->nrows; r++)
			w[c] = MAX(w[c], text_width(t->cells[r * t->ncol + c]));
	}
	for (int r = -1; r < t->nrows; r++) {
		for (int c = 0; c < t->ncol; c++) {
			const char *s = r < 0 ? t->head[c] : t->cells[r * t->ncol + c];
			int pad = w[c] - text_width(s);
			bool last = c == t->ncol - 1;

			if (t->right[c])
				printf("%*s%s", pad, "", s);
			else
				printf("%s%*s", s, last ? 0 : pad, "");
			if (!last)
				fputs("  ", stdout);
		}
		putchar('\n');
	}
	for (int i = 0; i < t->nrows * t->ncol; i++)
		free(t->cells[i]);
	for (int c = 0; c < t->ncol; c++)
		free((char *)t->head[c]);
	free(t->cells);
}

/* "active", "suspended until resumed", "suspended until T" */
static const char *
site_state(const json_t *s, char *buf, size_t len)
{
	const json_t *until = json_object_get(s, "suspended_until");

	if (!json_is_true(json_object_get(s, "suspended")))
		return "active";
	if (json_is_string(until))
		snprintf(buf, len, "suspended until %s", json_string_value(until));
	else
		snprintf(buf, len, "suspended until resumed");
	return buf;
}

/* ---------------------------------------------------------------- commands */

static int
cmd_status(const struct ctl_opts *o)
{
	struct resp r;
	json_t *j = call(o, "GET", "/v1/status", NULL, &r), *c = json_object_get(j, "counters");
	char age[64];

	if (j == NULL)
		return call_rc;
	kv("version", "%s", jf(j, "version"));
	kv("pid", "%s", jf(j, "pid"));
	kv("uptime", "%s (since %s)", fmt_age(ji(j, "uptime"), age, sizeof(age)), jf(j, "started"));
	kv("hostname", "%s", jf(j, "hostname"));
	kv("config", "%s", jf(j, "config"));
	kv("workers", "%s", jf(j, "workers"));
	kv("messages", "%s", jf(c, "messages"));
	kv("recipients", "%s", jf(c, "recipients"));
	kv("scheduled", "%s", jf(c, "scheduled"));
	kv("received", "%s", jf(c, "received"));
	kv("delivered", "%s", jf(c, "delivered"));
	kv("transient", "%s", jf(c, "transient"));
	kv("bounced", "%s", jf(c, "bounced"));
	kv("expired", "%s", jf(c, "expired"));
	resp_free(&r);
	return 0;
}

static int
cmd_queue(const struct ctl_opts *o)
{
	struct resp r;
	json_t *j = call(o, "GET", "/v1/queue", NULL, &r), *st = json_object_get(j, "by_state");
	json_t *sites = json_object_get(j, "sites"), *s;
	struct table t;
	char age[64];
	size_t i;

	if (j == NULL)
		return call_rc;
	kv("messages", "%s", jf(j, "messages"));
	kv("recipients", "%s", jf(j, "recipients"));
	kv("scheduled", "%s", jf(st, "scheduled"));
	kv("ready", "%s", jf(st, "ready"));
	kv("in flight", "%s", jf(st, "in_flight"));
	kv("suspended", "%s", jf(st, "suspended"));
	if (json_is_integer(json_object_get(j, "oldest_age")))
		kv("oldest", "%s (%s)", fmt_age(ji(j, "oldest_age"), age, sizeof(age)), jf(j, "oldest"));
	else
		kv("oldest", "-");
	putchar('\n');
	if (json_array_size(sites) == 0) {
		puts("no sites");
	} else {
		table_init(&t, "SITE,>QUEUED,>CONNECTIONS,STATE");
		json_array_foreach(sites, i, s)
			table_row(&t, jf(s, "name"), jf(s, "queued"), jf(s, "connections"),
			    json_is_true(json_object_get(s, "suspended")) ? "suspended" : "active");
		table_print(&t);
	}
	resp_free(&r);
	return 0;
}

static int
cmd_sites(const struct ctl_opts *o)
{
	struct resp r;
	json_t *j = call(o, "GET", "/v1/sites", NULL, &r), *sites = json_object_get(j, "sites"), *s;
	struct table t;
	char st[128];
	size_t i;

	if (j == NULL)
		return call_rc;
	if (json_array_size(sites) == 0) {
		puts("no sites (a site appears when mail is routed to it)");
		resp_free(&r);
		return 0;
	}
	table_init(&t, "SITE,DOMAIN,>WORKER,>QUEUED,>CONNECTIONS,STATE,LAST ERROR");
	json_array_foreach(sites, i, s)
		table_row(&t, jf(s, "name"), jf(s, "domain"), jf(s, "worker"), jf(s, "queued"),
		    jf(s, "connections"), site_state(s, st, sizeof(st)), jf(s, "last_error"));
	table_print(&t);
	resp_free(&r);
	return 0;
}

/* One row per source and provider column of today's schedule day. */
static int
cmd_warmup(const struct ctl_opts *o)
{
	struct resp r;
	json_t *j = call(o, "GET", "/v1/warmup", NULL, &r), *s, *p;
	json_t *sources = json_object_get(j, "sources");
	struct table t;
	size_t i, k;

	if (j == NULL)
		return call_rc;
	kv("date", "%s (UTC; the next day starts %s)", jf(j, "date"), jf(j, "next_day"));
	putchar('\n');
	if (json_array_size(sources) == 0) {
		puts("no sources");
		resp_free(&r);
		return 0;
	}
	table_init(&t, "SOURCE,ADDRESS,SCHEDULE,>DAY,START,PROVIDER,>CAP,>COUNT,STATE");
	json_array_foreach(sources, i, s) {
		json_t *provs = json_object_get(s, "providers");
		char day[64], start[64];

		if (!json_is_string(json_object_get(s, "schedule"))) {
			table_row(&t, jf(s, "source"), jf(s, "address"), "-", "-", "-", "-", "-", "-",
			    "warm (no warm-up)");
			continue;
		}
		snprintf(day, sizeof(day), "%s/%s", jf(s, "day"), jf(s, "days"));
		if (json_is_string(json_object_get(s, "start")))
			snprintf(start, sizeof(start), "%s (%s)", jf(s, "start"), jf(s, "start_from"));
		else
			snprintf(start, sizeof(start), "at first send");
		if (json_is_true(json_object_get(s, "complete")) || json_array_size(provs) == 0) {
			table_row(&t, jf(s, "source"), jf(s, "address"), jf(s, "schedule"), day, start,
			    "-", "-", "-", "complete (no caps)");
			continue;
		}
		json_array_foreach(provs, k, p)
			table_row(&t, jf(s, "source"), jf(s, "address"), jf(s, "schedule"), day, start,
			    jf(p, "provider"), jf(p, "cap"), jf(p, "count"),
			    json_is_true(json_object_get(p, "reached")) ? "cap reached" : "sending");
	}
	table_print(&t);
	resp_free(&r);
	return 0;
}

/* The LIMIT,VALUE,FROM table of a limits object. */
static void
print_limits(const json_t *limits)
{
	struct table t;
	const char *key;
	json_t *v;
	char vbuf[256];

	table_init(&t, "LIMIT,VALUE,FROM");
	json_object_foreach((json_t *)limits, key, v)
		table_row(&t, key, jtext(json_object_get(v, "value"), vbuf, sizeof(vbuf)),
		    jf(v, "origin"));
	table_print(&t);
}

static void
print_site(const json_t *s)
{
	json_t *mx = json_object_get(s, "mx"), *lanes = json_object_get(s, "lanes");
	json_t *limits = json_object_get(s, "limits"), *e;
	struct table t;
	char st[512];
	size_t i;

	kv("site", "%s", jf(s, "name"));
	kv("domain", "%s", jf(s, "domain"));
	kv("worker", "%s", jf(s, "worker"));
	kv("static route", "%s", jf(s, "route"));
	kv("provider", "%s", jf(s, "provider"));
	kv("queued", "%s", jf(s, "queued"));
	kv("connections", "%s", jf(s, "connections"));
	if (json_is_string(json_object_get(s, "suspend_reason")))
		kv("state", "%s (%s)", site_state(s, st, sizeof(st)), jf(s, "suspend_reason"));
	else
		kv("state", "%s", site_state(s, st, sizeof(st)));
	if (json_is_string(json_object_get(s, "last_error")))
		kv("last error", "%s (%s)", jf(s, "last_error"), jf(s, "last_error_time"));
	else
		kv("last error", "-");
	if (json_array_size(mx) == 0)
		kv("mx", "%s", json_is_string(json_object_get(s, "mx_error")) ?
		    jf(s, "mx_error") : "-");
	json_array_foreach(mx, i, e) {
		char addrs[512] = "";
		size_t off = 0, k;
		json_t *a;

		json_array_foreach(json_object_get(e, "addrs"), k, a)
			if (off < sizeof(addrs))
				off += (size_t)snprintf(addrs + off, sizeof(addrs) - off, "%s%s",
				    k ? " " : "", json_string_value(a) ? json_string_value(a) : "?");
		kv(i == 0 ? "mx" : "", "%s (pref %s) %s", jf(e, "host"), jf(e, "pref"), addrs);
	}
	if (json_array_size(lanes) > 0) {
		putchar('\n');
		table_init(&t, "SOURCE,>READY,>CONNECTIONS,>DELIVERED,>TRANSIENT,>BOUNCED");
		json_array_foreach(lanes, i, e) {
			const char *src = jf(e, "source");

			table_row(&t, *src ? src : "(default)", jf(e, "ready"), jf(e, "connections"),
			    jf(e, "delivered"), jf(e, "transient"), jf(e, "bounced"));
		}
		table_print(&t);
	}
	if (json_object_size(limits) > 0) {
		putchar('\n');
		print_limits(limits);
	}
}

static int
cmd_site_show(const struct ctl_opts *o, const char *name)
{
	struct resp r;
	char *path = path_with("/v1/sites/", name, "");
	json_t *j = call(o, "GET", path, NULL, &r);

	free(path);
	if (j == NULL)
		return call_rc;
	print_site(j);
	resp_free(&r);
	return 0;
}

static char *
join_args(int argc, char **argv)
{
	size_t len = 1;
	char *s;

	for (int i = 0; i < argc; i++)
		len += strlen(argv[i]) + 1;
	s = xcalloc(1, len);
	for (int i = 0; i < argc; i++) {
		if (i > 0)
			strcat(s, " ");
		strcat(s, argv[i]);
	}
	return s;
}

/* Usage errors of `site NAME ACTION ARGS` (before anything is allocated). */
static void
check_site_args(const char *action, int argc, char **argv)
{
	if (strcmp(action, "suspend") == 0) {
		const char *perr = NULL;
		int64_t ms;

		if (argc > 0 && strcmp(argv[0], "forever") != 0 &&
		    (parse_duration(argv[0], &ms, &perr) < 0 || ms <= 0))
			usage_error("bad duration \"%s\" (e.g. 30m, 4h, 2d, or forever)", argv[0]);
	} else if (strcmp(action, "resume") == 0) {
		if (argc > 0)
			usage_error("site NAME resume takes no arguments (got \"%s\")", argv[0]);
	} else if (strcmp(action, "set") == 0) {
		if (argc == 0 || argc % 2 != 0)
			usage_error("site NAME set needs LIMIT VALUE pairs (e.g. max-msg-rate 100/h)");
	} else if (strcmp(action, "bounce") != 0) {
		usage_error("unknown site action \"%s\" (suspend, resume, bounce or set)", action);
	}
}

/*
 * site NAME set LIMIT VALUE ...: one request, so the daemon checks every
 * value before it changes any. Values go as strings; the daemon parses them.
 */
static int
cmd_site_set(const struct ctl_opts *o, const char *name, int argc, char **argv)
{
	json_t *body = json_object(), *j;
	struct resp r;
	char *path;

	for (int i = 0; i + 1 < argc; i += 2) {
		if (json_object_get(body, argv[i]) != NULL) {
			json_decref(body);
			ctl_die(EXIT_ERR, "%s is given twice", argv[i]);
		}
		json_object_set_new(body, argv[i], json_string(argv[i + 1]));
	}
	path = path_with("/v1/sites/", name, "/limits");
	j = call(o, "POST", path, body, &r);
	free(path);
	json_decref(body);
	if (j == NULL)
		return call_rc;
	printf("site %s: limits changed until the next reload\n\n", name);
	print_limits(json_object_get(j, "limits"));
	resp_free(&r);
	return 0;
}

/* site NAME suspend|resume|bounce ARGS */
static int
cmd_site_action(const struct ctl_opts *o, const char *name, const char *action,
    int argc, char **argv)
{
	const char *duration = NULL, *suffix;
	json_t *body, *j;
	struct resp r;
	char *path, *reason = NULL;
	char st[256];

	if (strcmp(action, "suspend") == 0) {
		if (argc > 0) {
			duration = argv[0];
			argc--;
			argv++;
		}
		suffix = "/suspend";
	} else if (strcmp(action, "bounce") == 0) {
		suffix = "/bounce";
	} else {
		suffix = "/resume";
	}

	body = json_object();
	if (duration != NULL)
		json_object_set_new(body, "duration", json_string(duration));
	if (argc > 0) {
		reason = join_args(argc, argv);
		json_object_set_new(body, "reason", json_string(reason));
		free(reason);
	}
	path = path_with("/v1/sites/", name, suffix);
	j = call(o, "POST", path, body, &r);
	free(path);
	json_decref(body);
	if (j == NULL)
		return call_rc;
	if (strcmp(action, "bounce") == 0)
		printf("site %s: %lld recipient(s) bounced\n", name, ji(j, "bounced"));
	else if (strcmp(action, "resume") == 0)
		printf("site %s resumed\n", name);
	else
		printf("site %s %s\n", name, site_state(j, st, sizeof(st)));
	resp_free(&r);
	return 0;
}

static int
cmd_message(const struct ctl_opts *o, const char *id, int argc, char **argv)
{
	bool delete = argc > 0 && strcmp(argv[0], "delete") == 0;
	struct resp r;
	json_t *j, *rcpts, *e, *flags, *meta, *v;
	const char *key;
	struct table t;
	char *path;
	size_t i;

	path = path_with("/v1/messages/", id, "");
	j = call(o, delete ? "DELETE" : "GET", path, NULL, &r);
	free(path);
	if (j == NULL)
		return call_rc;
	if (delete) {
		printf("message %s deleted\n", id);
		resp_free(&r);
		return 0;
	}
	rcpts = json_object_get(j, "recipients");
	flags = json_object_get(j, "flags");
	meta = json_object_get(j, "meta");
	kv("id", "%s", jf(j, "id"));
	kv("sender", "<%s>", jf(j, "sender"));
	kv("created", "%s", jf(j, "created"));
	kv("size", "%s", jf(j, "size"));
	kv("pool", "%s", jf(j, "pool"));
	kv("campaign", "%s", jf(j, "campaign"));
	kv("priority", "%s", jf(j, "priority"));
	kv("dkim signed", "%s", jf(flags, "dkim_signed"));
	json_object_foreach(meta, key, v)
		kv(key, "%s", json_string_value(v) ? json_string_value(v) : "-");
	if (json_is_true(json_object_get(j, "deleted")))
		kv("deleted", "yes (recipients are dropped as they come up)");
	putchar('\n');
	table_init(&t, "RECIPIENT,STATE,>ATTEMPTS,NEXT ATTEMPT");
	json_array_foreach(rcpts, i, e)
		table_row(&t, jf(e, "address"), jf(e, "state"), jf(e, "attempts"),
		    jf(e, "next_attempt"));
	table_print(&t);
	resp_free(&r);
	return 0;
}

static int
cmd_reload(const struct ctl_opts *o)
{
	struct resp r;
	json_t *j = call(o, "POST", "/v1/reload", NULL, &r);

	if (j == NULL)
		return call_rc;
	printf("reloaded %s\n", jf(j, "config"));
	resp_free(&r);
	return 0;
}

/* ---------------------------------------------------------------- segments, variants, recipients */

static int
cmd_segment(const struct ctl_opts *o, int argc, char **argv)
{
	const char *action = argv[0], *name = argc > 1 ? argv[1] : NULL;
	struct resp r;
	struct table t;
	json_t *j, *e;
	char *path;
	size_t i;

	if (strcmp(action, "list") == 0) {
		if ((j = call(o, "GET", "/v1/segments", NULL, &r)) == NULL)
			return call_rc;
		table_init(&t, "SEGMENT,>SIZE");
		json_array_foreach(json_object_get(j, "segments"), i, e)
			table_row(&t, jf(e, "segment"), jf(e, "size"));
		table_print(&t);
		resp_free(&r);
		return 0;
	}
	if (strcmp(action, "put") == 0) {
		bool replace = false;
		const char *file = NULL;
		FILE *in;

		for (int k = 2; k < argc; k++) {
			if (strcmp(argv[k], "--replace") == 0)
				replace = true;
			else
				file = argv[k];
		}
		if (file == NULL || strcmp(file, "-") == 0)
			in = stdin;
		else if ((in = fopen(file, "r")) == NULL)
			ctl_die(EXIT_ERR, "%s: %s", file, strerror(errno));
		path = path_with("/v1/segments/", name, replace ? "?mode=replace" : "?mode=add");
		j = call_in(o, "PUT", path, NULL, in, &r);
		free(path);
		if (in != stdin)
			fclose(in);
		if (j == NULL)
			return call_rc;
		printf("segment %s: %s addresses read, %s new, %s removed, size %s\n", name,
		    jf(j, "written"), jf(j, "added"), jf(j, "removed"), jf(j, "size"));
		resp_free(&r);
		return 0;
	}
	if (strcmp(action, "delete") == 0) {
		path = path_with("/v1/segments/", name, "");
		j = call(o, "DELETE", path, NULL, &r);
		free(path);
		if (j == NULL)
			return call_rc;
		printf("segment %s deleted (%s members)\n", name, jf(j, "removed"));
		resp_free(&r);
		return 0;
	}
	/* get */
	const char *members = NULL, *after = NULL;
	for (int k = 2; k + 1 < argc; k += 2) {
		if (strcmp(argv[k], "--members") == 0)
			members = argv[k + 1];
		else if (strcmp(argv[k], "--after") == 0)
			after = argv[k + 1];
	}
	path = path_with("/v1/segments/", name, "");
	if (members != NULL) {
		char *esc = curl_easy_escape(NULL, after ? after : "", 0), *p2;

		p2 = xasprintf("%s?members=%s%s%s", path, members, after ? "&after=" : "",
		    after ? esc : "");
		curl_free(esc);
		free(path);
		path = p2;
	}
	j = call(o, "GET", path, NULL, &r);
	free(path);
	if (j == NULL)
		return call_rc;
	json_t *prior = json_object_get(j, "prior");
	kv("segment", "%s", jf(j, "segment"));
	kv("size", "%s", jf(j, "size"));
	if (json_is_object(prior)) {
		kv("prior", "%s events (%s opens, %s clicks), decayed weight %s", jf(prior, "events"),
		    jf(prior, "opens"), jf(prior, "clicks"), jf(prior, "weight"));
		json_array_foreach(json_object_get(prior, "top_hours"), i, e)
			kv(i == 0 ? "busiest hours" : "", "%s UTC  %.1f%%", jf(e, "hour"),
			    100 * json_number_value(json_object_get(e, "share")));
	} else {
		kv("prior", "none (no opens or clicks from its members yet)");
	}
	if (json_is_array(json_object_get(j, "members"))) {
		putchar('\n');
		json_array_foreach(json_object_get(j, "members"), i, e)
			puts(json_string_value(e));
		if (json_is_true(json_object_get(j, "more")))
			puts("...");
	}
	resp_free(&r);
	return 0;
}

static int
cmd_variants(const struct ctl_opts *o, const char *campaign)
{
	struct resp r;
	struct table t;
	json_t *j, *g, *v;
	char *path = path_with("/v1/campaigns/", campaign, "/variants");
	size_t i, k;

	j = call(o, "GET", path, NULL, &r);
	free(path);
	if (j == NULL)
		return call_rc;
	kv("campaign", "%s", jf(j, "campaign"));
	kv("reward", "%s", jf(j, "reward"));
	kv("explore until", "%s sends per variant", jf(j, "explore_until"));
	kv("winner after", "%s", jf(j, "winner_after"));
	putchar('\n');
	table_init(&t, "SEGMENT,VARIANT,>SENDS,>OPENS,>CLICKS,>MEAN,>P(BEST),WINNER");
	json_array_foreach(json_object_get(j, "segments"), i, g) {
		const char *winner = json_string_value(json_object_get(g, "winner"));

		json_array_foreach(json_object_get(g, "variants"), k, v) {
			char mean[32], pb[32];

			snprintf(mean, sizeof(mean), "%.4f", json_number_value(json_object_get(v, "mean")));
			snprintf(pb, sizeof(pb), "%.3f", json_number_value(json_object_get(v, "p_best")));
			table_row(&t, jf(g, "segment"), jf(v, "id"), jf(v, "sends"), jf(v, "opens"),
			    jf(v, "clicks"), mean, pb,
			    winner && strcmp(winner, jf(v, "id")) == 0 ? "yes" : "");
		}
	}
	table_print(&t);
	resp_free(&r);
	return 0;
}

static int
cmd_recipient(const struct ctl_opts *o, const char *email)
{
	static const char *const inputs[] = { "sends", "opens", "clicks", "bounces", "soft_bounces",
		"complaints", "unsubscribes", "first_seen", "last_send", "last_open", "last_click",
		"last_bounce" };
	static const char *const parts[] = { "base", "recency", "frequency", "idle", "bounces",
		"complaints" };
	struct resp r;
	json_t *j, *in, *sp, *h, *sup;
	char *path = path_with("/v1/recipients/", email, "");

	j = call(o, "GET", path, NULL, &r);
	free(path);
	if (j == NULL)
		return call_rc;
	in = json_object_get(j, "inputs");
	sp = json_object_get(j, "score_parts");
	h = json_object_get(j, "hygiene");
	sup = json_object_get(j, "suppression");
	kv("recipient", "%s", jf(j, "recipient"));
	kv("known", "%s", jf(j, "known"));
	kv("segment", "%s", jf(j, "segment"));
	kv("score", "%s / 100", jf(j, "score"));
	for (size_t i = 0; i < ARRAY_SIZE(parts); i++)
		kv("", "%-10s %+.1f", parts[i], json_number_value(json_object_get(sp, parts[i])));
	for (size_t i = 0; i < ARRAY_SIZE(inputs); i++)
		kv(inputs[i], "%s", jf(in, inputs[i]));
	kv("marketing", "%s%s%s", jf(h, "marketing"), json_is_string(json_object_get(h, "detail")) ?
	    ": " : "", json_is_string(json_object_get(h, "detail")) ? jf(h, "detail") : "");
	kv("sunset", "%s (%s re-engagement sends)", jf(h, "sunset"), jf(h, "reengage_sent"));
	kv("role address", "%s", jf(h, "role"));
	kv("trap suspect", "%s (domain trap hits %s)", jf(h, "trap_suspect"), jf(h, "domain_trap_hits"));
	if (json_is_object(sup))
		kv("suppressed", "%s (%s, %s)", jf(sup, "suppressed"), jf(sup, "reason"), jf(sup, "time"));
	resp_free(&r);
	return 0;
}

/* ---------------------------------------------------------------- main */

/* The control-socket of a config file: the parsed value, else the line. */
static char *
socket_from_config(const char *path)
{
	char err[4096] = "", line[1024];
	struct config *c = conf_load(path, err, sizeof(err));
	char *sock = NULL;
	FILE *f;

	if (c != NULL) {
		if (c->control_socket != NULL)
			sock = xstrdup(c->control_socket);
		conf_free(c);
		return sock ? sock : xstrdup(DEFAULT_SOCKET);
	}
	/* A config the daemon would refuse may still name its socket. */
	if ((f = fopen(path, "r")) == NULL)
		ctl_die(EXIT_ERR, "%s: %s", path, strerror(errno));
	while (sock == NULL && fgets(line, sizeof(line), f) != NULL) {
		char *p = line + strspn(line, " \t"), *end;

		if (strncmp(p, "control-socket", 14) != 0 || (p[14] != ' ' && p[14] != '\t'))
			continue;
		p += 14 + strspn(p + 14, " \t");
		end = p + strcspn(p, " \t\r\n#");
		if (end > p)
			sock = xstrndup(p, (size_t)(end - p));
	}
	fclose(f);
	if (sock == NULL)
		ctl_die(EXIT_ERR, "cannot read the control socket from %s:\n%s", path, err);
	return sock;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket",  required_argument, NULL, 's' },
		{ "config",  required_argument, NULL, 'c' },
		{ "json",    no_argument,       NULL, 'j' },
		{ "help",    no_argument,       NULL, 'h' },
		{ "version", no_argument,       NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl_opts o = { NULL, NULL, 0 };
	char *sock = NULL;
	const char *cmd;
	int ch, rc, n;

	while ((ch = getopt_long(argc, argv, "+s:c:jhV", longopts, NULL)) != -1) {
		switch (ch) {
		case 's': o.socket = optarg; break;
		case 'c': o.config = optarg; break;
		case 'j': o.json = 1; break;
		case 'h': fputs(usage_text, stdout); return 0;
		case 'V': printf("sluicectl %s\n", PACKAGE_VERSION); return 0;
		default:
			fputs("Try 'sluicectl help'.\n", stderr);
			return EXIT_ERR;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0) {
		fputs(usage_text, stderr);
		return EXIT_ERR;
	}
	cmd = argv[0];
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (strcmp(cmd, "dkim") == 0)
		return ctl_dkim(&o, argc, argv);    /* argv[0] is "dkim" */
	if (strcmp(cmd, "verp") == 0)
		return ctl_verp(&o, argc, argv);    /* argv[0] is "verp" */
	if (strcmp(cmd, "user") == 0)
		return ctl_user(argc, argv);

	/* --json is also accepted after the command. */
	n = 0;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "-j") == 0)
			o.json = 1;
		else
			argv[n++] = argv[i];
	}
	argc = n;

	/* usage errors before anything is allocated */
	if (strcmp(cmd, "site") == 0 || strcmp(cmd, "sites") == 0) {
		if (argc > 2)
			check_site_args(argv[2], argc - 3, argv + 3);
	} else if (strcmp(cmd, "message") == 0) {
		if (argc < 2)
			usage_error("message needs a message id");
		if (argc > 2 && strcmp(argv[2], "delete") != 0)
			usage_error("unknown message action \"%s\" (delete)", argv[2]);
		if (argc > 3)
			usage_error("message ID delete takes no more arguments (got \"%s\")", argv[3]);
	} else if (strcmp(cmd, "campaign") == 0 || strcmp(cmd, "events") == 0) {
		if (argc < 2)
			usage_error("%s needs a subcommand (sluicectl campaign help)", cmd);
	} else if (strcmp(cmd, "suppression") == 0) {
		if (argc < 2)
			usage_error("suppression needs add, remove, lookup, list, import or export");
	} else if (strcmp(cmd, "segment") == 0 || strcmp(cmd, "segments") == 0) {
		if (argc < 2)
			usage_error("segment needs an action: list, get, put or delete");
		if (strcmp(argv[1], "list") == 0) {
			if (argc > 2)
				usage_error("segment list takes no arguments");
		} else if (strcmp(argv[1], "get") == 0 || strcmp(argv[1], "put") == 0 ||
		    strcmp(argv[1], "delete") == 0) {
			if (argc < 3)
				usage_error("segment %s needs a segment name", argv[1]);
			if (strcmp(argv[1], "delete") == 0 && argc > 3)
				usage_error("segment delete takes one name");
			if (strcmp(argv[1], "get") == 0)
				for (int k = 3; k < argc; k += 2)
					if ((strcmp(argv[k], "--members") != 0 && strcmp(argv[k], "--after") != 0) ||
					    k + 1 >= argc)
						usage_error("segment get NAME [--members N [--after ADDRESS]]");
			if (strcmp(argv[1], "put") == 0) {
				int files = 0;
				for (int k = 3; k < argc; k++)
					if (strcmp(argv[k], "--replace") != 0)
						files++;
				if (files > 1)
					usage_error("segment put NAME [--replace] [FILE|-]: one input");
			}
		} else {
			usage_error("unknown segment action \"%s\" (list, get, put, delete)", argv[1]);
		}
	} else if (strcmp(cmd, "variants") == 0 || strcmp(cmd, "recipient") == 0) {
		if (argc != 2)
			usage_error("%s needs exactly one %s", cmd,
			    strcmp(cmd, "variants") == 0 ? "campaign id" : "address");
	} else if (strcmp(cmd, "status") == 0 || strcmp(cmd, "queue") == 0 ||
	    strcmp(cmd, "reload") == 0 || strcmp(cmd, "warmup") == 0) {
		if (argc > 1)
			usage_error("%s takes no arguments", cmd);
	} else {
		usage_error("unknown command \"%s\"", cmd);
	}

	if (o.socket == NULL && o.config != NULL)
		o.socket = sock = socket_from_config(o.config);
	if (o.socket == NULL)
		o.socket = getenv("SLUICE_SOCKET");
	if (o.socket == NULL || *o.socket == '\0')
		o.socket = DEFAULT_SOCKET;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		ctl_die(EXIT_ERR, "cannot initialise libcurl");

	if (strcmp(cmd, "status") == 0)
		rc = cmd_status(&o);
	else if (strcmp(cmd, "queue") == 0)
		rc = cmd_queue(&o);
	else if (strcmp(cmd, "reload") == 0)
		rc = cmd_reload(&o);
	else if (strcmp(cmd, "warmup") == 0)
		rc = cmd_warmup(&o);
	else if (strcmp(cmd, "message") == 0)
		rc = cmd_message(&o, argv[1], argc - 2, argv + 2);
	else if (strcmp(cmd, "suppression") == 0)
		rc = ctl_suppression(&o, argc, argv);
	else if (strcmp(cmd, "campaign") == 0 || strcmp(cmd, "events") == 0)
		rc = ctl_campaign(&o, argc, argv);
	else if (strcmp(cmd, "segment") == 0 || strcmp(cmd, "segments") == 0)
		rc = cmd_segment(&o, argc - 1, argv + 1);
	else if (strcmp(cmd, "variants") == 0)
		rc = cmd_variants(&o, argv[1]);
	else if (strcmp(cmd, "recipient") == 0)
		rc = cmd_recipient(&o, argv[1]);
	else if (argc == 1)
		rc = cmd_sites(&o);
	else if (argc == 2)
		rc = cmd_site_show(&o, argv[1]);
	else if (strcmp(argv[2], "set") == 0)
		rc = cmd_site_set(&o, argv[1], argc - 3, argv + 3);
	else
		rc = cmd_site_action(&o, argv[1], argv[2], argc - 3, argv + 3);
	curl_global_cleanup();
	free(sock);
	return rc;
}
