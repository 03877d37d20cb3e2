/*
 * sluicectl campaign / events: campaigns and the engagement import through
 * the control API.
 *
 * Files are streamed: the NDJSON goes to the daemon as it is read (with a
 * Content-Length for a regular file, chunked from a pipe), so a million
 * recipients never sit in sluicectl's memory either; on a terminal a
 * progress bar follows the bytes sent.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "sluicectl.h"
#include "util.h"

#define EXIT_ERR 1
#define EXIT_CONNECT 2

static const char camp_usage[] =
"usage: sluicectl campaign create FILE|-     campaign object, then one recipient a line (NDJSON)\n"
"       sluicectl campaign plan FILE|-       the same as a dry run: print the send plan\n"
"       sluicectl campaign add ID FILE|-     more recipients (NDJSON, one a line)\n"
"       sluicectl campaign status ID\n"
"       sluicectl campaign list\n"
"       sluicectl campaign cancel ID\n"
"       sluicectl campaign explain ID ADDRESS\n"
"       sluicectl events import FILE|-       engagement events (NDJSON)\n";

struct upload {
	FILE *in;
	const char *prefix;            /* sent before the file (the rewritten first line) */
	size_t prefix_len, prefix_off;
	long long sent, total;
	bool progress;
	const char *what;
	struct sbuf body;              /* the reply */
	int last_pct;
};

static void
bar(struct upload *u, bool final)
{
	if (!u->progress)
		return;
	if (u->total > 0) {
		int pct = (int)MIN(100, u->sent * 100 / u->total);
		if (pct == u->last_pct && !final)
			return;
		u->last_pct = pct;
	}
	ctl_progress(u->what, u->sent, u->total, " bytes", final);
}

static size_t
on_read(char *buf, size_t size, size_t nmemb, void *arg)
{
	struct upload *u = arg;
	size_t cap = size * nmemb, n = 0;

	if (u->prefix_off < u->prefix_len) {
		n = MIN(cap, u->prefix_len - u->prefix_off);
		memcpy(buf, u->prefix + u->prefix_off, n);
		u->prefix_off += n;
	} else if (u->in != NULL) {
		n = fread(buf, 1, cap, u->in);
		if (n == 0 && ferror(u->in))
			return CURL_READFUNC_ABORT;
	}
	u->sent += (long long)n;
	bar(u, false);
	return n;
}

static size_t
on_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct upload *u = arg;

	sb_add(&u->body, ptr, size * nmemb);
	return size * nmemb;
}

/* One request; body from u (may have no file). Returns the HTTP status. */
static long
request(const struct ctl_opts *o, const char *method, const char *path, struct upload *u,
    const char *ctype)
{
	char errbuf[CURL_ERROR_SIZE];
	struct curl_slist *hdrs = NULL;
	CURL *h = ctl_curl(o, method, path, errbuf, on_write, u);
	long status;
	CURLcode rc;

	if (strcmp(method, "POST") == 0) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(h, CURLOPT_READDATA, u);
		if (u->total >= 0)
			curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)u->total);
		else
			hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
		hdrs = curl_slist_append(hdrs, ctype);
		hdrs = curl_slist_append(hdrs, "Expect:");
	}
	rc = ctl_perform(o, h, hdrs, errbuf, &status);
	if (u->progress && u->sent > 0)
		bar(u, true);
	if (rc != CURLE_OK)
		ctl_die(EXIT_ERR, "%s %s: %s", method, path, errbuf[0] ? errbuf : curl_easy_strerror(rc));
	return status;
}

static json_t *
reply_json(const char *method, const char *path, struct upload *u, long status)
{
	json_t *j = u->body.len ? json_loadb(u->body.p, u->body.len, 0, NULL) : NULL;

	if (j == NULL)
		ctl_die(EXIT_ERR, "%s %s: HTTP %ld with a body that is not JSON: %.200s", method, path,
		    status, u->body.p ? u->body.p : "(empty)");
	return j;
}

/* An error reply: message on stderr (JSON on stdout with --json); exit 1. */
static int
refused(const struct ctl_opts *o, json_t *j, long status)
{
	const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));

	if (o->json)
		ctl_print_json(j);
	fprintf(stderr, "sluicectl: %s (HTTP %ld)\n", msg ? msg : "request failed", status);
	json_decref(j);
	return EXIT_ERR;
}

/* The JSON of a 2xx reply for the caller to print (frees u's body). NULL
 * when there is nothing more to print: the reply went out as --json (*rc
 * 0) or was an error, reported (*rc the exit code). */
static json_t *
answer(const struct ctl_opts *o, const char *method, const char *path, struct upload *u,
    long status, int *rc)
{
	json_t *j = reply_json(method, path, u, status);

	free(u->body.p);
	*rc = 0;
	if (status < 200 || status >= 300) {
		*rc = refused(o, j, status);
		return NULL;
	}
	if (o->json) {
		ctl_print_json(j);
		json_decref(j);
		return NULL;
	}
	return j;
}

static void
open_input(struct upload *u, const char *file, const char *what, const struct ctl_opts *o)
{
	struct stat st;

	memset(u, 0, sizeof(*u));
	u->what = what;
	u->last_pct = -1;
	u->total = -1;
	if (strcmp(file, "-") == 0)
		u->in = stdin;
	else if ((u->in = fopen(file, "r")) == NULL)
		ctl_die(EXIT_ERR, "%s: %s", file, strerror(errno));
	if (fstat(fileno(u->in), &st) == 0 && S_ISREG(st.st_mode))
		u->total = (long long)st.st_size;
	u->progress = isatty(2) && !o->json;
}

static void
print_status(const json_t *j)
{
	json_t *c = json_object_get(j, "counts");
	const char *k;
	json_t *v;

	printf("campaign    %s (%s, %s)\n", ctl_js(j, "id"), ctl_js(j, "state"), ctl_js(j, "type"));
	if (json_object_get(j, "from"))
		printf("from        %s\n", ctl_js(j, "from"));
	if (json_object_get(j, "subject"))
		printf("subject     %s\n", ctl_js(j, "subject"));
	printf("start_at    %s\n", ctl_js(j, "start_at"));
	printf("max_delay   %s%s\n", ctl_js(j, "max_delay"),
	    json_is_true(json_object_get(j, "sto")) ? " (send-time optimisation)" : "");
	printf("recipients  %lld\n", (long long)json_integer_value(json_object_get(j, "recipients")));
	json_object_foreach(c, k, v)
		printf("  %-10s %lld\n", k, (long long)json_integer_value(v));
}

static int
create(const struct ctl_opts *o, const char *file, bool plan)
{
	struct upload u;
	long status;
	char *first = NULL;

	open_input(&u, file, plan ? "plan" : "create", o);
	if (plan) {
		/* the first line gets "dry_run": true; the rest streams as is */
		size_t cap = 0;
		ssize_t n = getline(&first, &cap, u.in);
		json_t *c = n > 0 ? json_loadb(first, (size_t)n, 0, NULL) : NULL;
		if (!json_is_object(c))
			ctl_die(EXIT_ERR, "%s: the first line must be the campaign object", file);
		json_object_set_new(c, "dry_run", json_true());
		free(first);
		first = json_dumps(c, JSON_COMPACT);
		json_decref(c);
		first = xrealloc(first, strlen(first) + 2);
		strcat(first, "\n");
		u.prefix = first;
		u.prefix_len = strlen(first);
		if (u.total >= 0)
			u.total = u.total - n + (long long)u.prefix_len;
	}
	status = request(o, "POST", "/v1/campaigns", &u, "Content-Type: application/x-ndjson");
	if (u.in != stdin)
		fclose(u.in);
	free(first);
	if (plan && status == 200) {
		fwrite(u.body.p ? u.body.p : "", 1, u.body.len, stdout);
		free(u.body.p);
		return 0;
	}
	int rc;
	json_t *j = answer(o, "POST", "/v1/campaigns", &u, status, &rc);
	if (j == NULL)
		return rc;
	printf("campaign %s created: %lld recipients, %lld duplicates\n", ctl_js(j, "id"),
	    (long long)json_integer_value(json_object_get(j, "accepted")),
	    (long long)json_integer_value(json_object_get(j, "duplicates")));
	json_decref(j);
	return 0;
}

static int
add(const struct ctl_opts *o, const char *id, const char *file)
{
	struct upload u;
	char *eid = ctl_escape(id), path[600];

	snprintf(path, sizeof(path), "/v1/campaigns/%s/recipients", eid);
	free(eid);
	open_input(&u, file, "add", o);
	long status = request(o, "POST", path, &u, "Content-Type: application/x-ndjson");
	if (u.in != stdin)
		fclose(u.in);
	int rc;
	json_t *j = answer(o, "POST", path, &u, status, &rc);
	if (j == NULL)
		return rc;
	printf("campaign %s: %lld recipients added, %lld duplicates\n", id,
	    (long long)json_integer_value(json_object_get(j, "accepted")),
	    (long long)json_integer_value(json_object_get(j, "duplicates")));
	json_decref(j);
	return 0;
}

static int
simple(const struct ctl_opts *o, const char *method, const char *path, int kind)
{
	struct upload u;

	memset(&u, 0, sizeof(u));
	u.total = 0;
	long status = request(o, method, path, &u, "Content-Type: application/json");
	int rc;
	json_t *j = answer(o, method, path, &u, status, &rc);

	if (j == NULL)
		return rc;
	if (kind == 0) {
		print_status(j);
	} else if (kind == 1) {
		size_t i;
		json_t *c;
		printf("%-24s %-10s %-13s %10s %10s %10s\n", "CAMPAIGN", "STATE", "TYPE", "RECIPIENTS",
		    "SCHEDULED", "DELIVERED");
		json_array_foreach(json_object_get(j, "campaigns"), i, c) {
			json_t *n = json_object_get(c, "counts");
			printf("%-24s %-10s %-13s %10lld %10lld %10lld\n", ctl_js(c, "id"), ctl_js(c, "state"),
			    ctl_js(c, "type"), (long long)json_integer_value(json_object_get(c, "recipients")),
			    (long long)json_integer_value(json_object_get(n, "scheduled")),
			    (long long)json_integer_value(json_object_get(n, "delivered")));
		}
	} else {
		size_t i;
		json_t *s;
		printf("recipient   %s (%s)\n", ctl_js(j, "email"), ctl_js(j, "state"));
		printf("send_at     %s\n", ctl_js(j, "send_at"));
		printf("reason      %s\n", ctl_js(j, "reason"));
		printf("segment     %s\n", ctl_js(j, "segment"));
		printf("events      %lld (%.2f after decay)\n",
		    (long long)json_integer_value(json_object_get(j, "events")),
		    json_number_value(json_object_get(j, "effective_events")));
		printf("prior       %s, weight %.3f\n", ctl_js(j, "prior"),
		    json_number_value(json_object_get(j, "prior_weight")));
		printf("window      %s .. %s\n", ctl_js(json_object_get(j, "window"), "start"),
		    ctl_js(json_object_get(j, "window"), "end"));
		json_array_foreach(json_object_get(j, "top_slots"), i, s)
			printf("  %s  %-9s  %.6f\n", ctl_js(s, "hour"), ctl_js(s, "slot"),
			    json_number_value(json_object_get(s, "score")));
	}
	json_decref(j);
	return 0;
}

int
ctl_campaign(const struct ctl_opts *o, int argc, char **argv)
{
	char path[1200];
	const char *a = argc > 1 ? argv[1] : "help";

	if (strcmp(argv[0], "events") == 0) {
		if (argc != 3 || strcmp(argv[1], "import") != 0) {
			fputs(camp_usage, stderr);
			return EXIT_ERR;
		}
		struct upload u;
		open_input(&u, argv[2], "import", o);
		long status = request(o, "POST", "/v1/events", &u, "Content-Type: application/x-ndjson");
		if (u.in != stdin)
			fclose(u.in);
		json_t *j = reply_json("POST", "/v1/events", &u, status);
		free(u.body.p);
		if (status != 200)
			return refused(o, j, status);
		if (o->json)
			ctl_print_json(j);
		else {
			size_t i;
			json_t *e;
			printf("%lld events imported, %lld rejected\n",
			    (long long)json_integer_value(json_object_get(j, "accepted")),
			    (long long)json_integer_value(json_object_get(j, "rejected")));
			json_array_foreach(json_object_get(j, "errors"), i, e)
				fprintf(stderr, "  line %lld: %s\n",
				    (long long)json_integer_value(json_object_get(e, "line")), ctl_js(e, "message"));
		}
		int rc = json_integer_value(json_object_get(j, "rejected")) > 0 ? EXIT_ERR : 0;
		json_decref(j);
		return rc;
	}
	if (strcmp(a, "help") == 0) {
		fputs(camp_usage, stdout);
		return 0;
	}
	if ((strcmp(a, "create") == 0 || strcmp(a, "plan") == 0) && argc == 3)
		return create(o, argv[2], a[0] == 'p');
	if (strcmp(a, "add") == 0 && argc == 4)
		return add(o, argv[2], argv[3]);
	if (strcmp(a, "list") == 0 && argc == 2)
		return simple(o, "GET", "/v1/campaigns", 1);
	if ((strcmp(a, "status") == 0 || strcmp(a, "cancel") == 0) && argc == 3) {
		char *id = ctl_escape(argv[2]);
		snprintf(path, sizeof(path), "/v1/campaigns/%s%s", id, a[0] == 'c' ? "/cancel" : "");
		free(id);
		return simple(o, a[0] == 'c' ? "POST" : "GET", path, 0);
	}
	if (strcmp(a, "explain") == 0 && argc == 4) {
		char *id = ctl_escape(argv[2]), *addr = ctl_escape(argv[3]);
		snprintf(path, sizeof(path), "/v1/campaigns/%s/recipients/%s", id, addr);
		free(id);
		free(addr);
		return simple(o, "GET", path, 2);
	}
	fputs(camp_usage, stderr);
	return EXIT_ERR;
}
