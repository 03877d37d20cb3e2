/*
 * sluicectl: the command-line client of the control API, plus local tools
 * (dkim keygen/check) that need no running daemon.
 */
#ifndef SLUICE_SLUICECTL_H
#define SLUICE_SLUICECTL_H

#include <stdbool.h>

#include <curl/curl.h>
#include <jansson.h>

struct ctl_opts {
	const char *socket;            /* -s SOCKET */
	const char *config;            /* -c FILE (for local tools: resolver, key paths) */
	int json;                      /* --json */
};

/* Helpers shared by the sub-command files (sluicectl.c). */

/* "sluicectl: MESSAGE" on stderr, then exit(code). */
void ctl_die(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
/* A curl handle for METHOD PATH on the control socket (connect timeout,
 * no signals, errors into errbuf[CURL_ERROR_SIZE], the reply to on_body). */
CURL *ctl_curl(const struct ctl_opts *o, const char *method, const char *path, char *errbuf,
    curl_write_callback on_body, void *arg);
/* Performs h with hdrs, then frees both. Exits 2 when the daemon cannot be
 * reached; otherwise returns curl's result, with the HTTP status in *status
 * when it is CURLE_OK (the caller reports any other failure its way). */
CURLcode ctl_perform(const struct ctl_opts *o, CURL *h, struct curl_slist *hdrs, const char *errbuf,
    long *status);
/* JSON pretty-printed on stdout (--json output). */
void ctl_print_json(const json_t *j);
/* The string member k of o, or "-". */
const char *ctl_js(const json_t *o, const char *k);
/* s escaped for a URL path or query (free it). */
char *ctl_escape(const char *s);
/* The progress bar on stderr: "\rWHAT [###---]  P%  DONE/TOTAL UNIT", or
 * "\rWHAT DONE UNIT" when the total is not known (total <= 0); unit is
 * "" or " bytes". final ends the line. */
void ctl_progress(const char *what, long long done, long long total, const char *unit, bool final);

/* `sluicectl dkim keygen|check ...` (ctl_dkim.c). Returns the exit code. */
int ctl_dkim(const struct ctl_opts *o, int argc, char **argv);
/* `sluicectl suppression add|remove|lookup|list|import|export ...`
 * (ctl_suppress.c; argv[0] is "suppression"). Returns the exit code. */
int ctl_suppression(const struct ctl_opts *o, int argc, char **argv);

/* `sluicectl campaign ...` and `sluicectl events import FILE` (ctl_campaign.c;
 * argv[0] is "campaign" or "events"). Returns the exit code. */
int ctl_campaign(const struct ctl_opts *o, int argc, char **argv);

/* `sluicectl verp keygen|check ...` (ctl_verp.c). Returns the exit code. */
int ctl_verp(const struct ctl_opts *o, int argc, char **argv);

#endif
