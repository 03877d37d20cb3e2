/*
 * reply_match: the matchers shared by the rule files that look at remote
 * replies (bounce-rules, backoff-rules): a reply code pattern ("421",
 * "4xx", "55x"), an enhanced status pattern ("4.7.28", "5.1.*", "5.*") and
 * a case-insensitive POSIX extended regex on the text. A rule matches when
 * every matcher it has matches.
 */
#ifndef SLUICE_REPLY_MATCH_H
#define SLUICE_REPLY_MATCH_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>

#define ST_ANY (-1)                    /* wildcard part of a status pattern */

struct reply_match {
	bool has_code, has_status, has_re;
	char code[3];                  /* '0'-'9' or 'x' per digit */
	int status[3];                 /* class, subject, detail; ST_ANY */
	regex_t re;
};

/* "421", "42x", "4xx": first digit 2-5, then digits or 'x'. */
bool reply_code_pattern(const char *s, char out[3]);
/* "X.Y.Z", "X.Y.*", "X.*" with X one of 2, 4, 5. */
bool reply_status_pattern(const char *s, int out[3]);
/* An enhanced status code at s ("4.7.28"); its length in *len. */
bool reply_status_parse(const char *s, int out[3], size_t *len);
/* A remote reply as the matchers see it: the code as three digits (or ""),
 * the enhanced status (from enh, else from the head of the text) and the
 * text without that leading status. */
struct reply_in {
	char code[3];
	int st[3];
	bool have_st;
	const char *text;
};
void reply_in_init(struct reply_in *in, int code, const char *enh, const char *text);
bool reply_match_test(const struct reply_match *m, const struct reply_in *in);
void reply_match_free(struct reply_match *m);

/* Rule files. The text of a file (malloc'd), or NULL with err set to
 * "path: reason" (unreadable, or a NUL byte in it). */
char *reply_rules_text(const char *path, char *err, size_t errlen);
/* Where rule lines come from, for "name:line: message" errors. */
struct rule_file {
	const char *name;
	char *err;
	size_t errlen;
};
/*
 * Parse each rule line of text (trimmed; blank lines and '#' comments
 * skipped) into an array of `size`-byte elements with parse(). Returns
 * true; false at the first line parse() refuses (it sets f->err), with *v
 * and *n holding the rules parsed so far for the caller to free.
 */
bool reply_rules_array(const char *text, size_t size,
    bool (*parse)(char *line, int lineno, void *elem, const struct rule_file *f),
    const struct rule_file *f, void **v, size_t *n);

#endif
