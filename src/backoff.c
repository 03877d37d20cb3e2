/*
 * backoff: rules that turn throttling replies into actions on a site.
 *
 * A rule set is an array of compiled rules tried in file order; the first
 * whose matchers all match is the answer. The matchers are bounce-rules'
 * (basic code, enhanced status, case-insensitive regex on the text), and
 * the cheap ones are checked before the regex. Regexes are compiled once,
 * REG_EXTENDED | REG_ICASE | REG_NOSUB; a loaded set is never written again
 * and glibc's regexec() on a shared regex_t is thread-safe, so every worker
 * matches with the same set.
 *
 * Actions are words with a "=" (rate=600/h holds a "/"), so the regex is
 * found first: it starts at the first word that begins with "/" and runs to
 * the last "/" of the line.
 *
 * backoff_rules_builtin[] is conf/backoff-rules.conf, byte for byte
 * (test_backoff.c compares them). After editing the file, regenerate it with
 *   sed 's/\\/\\\\/g; s/"/\\"/g; s/^/\t"/; s/$/\\n"/' conf/backoff-rules.conf
 * and paste the output between the braces below.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "reply_match.h"
#include "util.h"

#define MAX_CONNECTIONS 10000
#define MAX_RECOVER_AFTER 1000000

struct rule {
	struct backoff_rule act;       /* what backoff_match() hands out */
	struct reply_match m;           /* code=, status=, /regex/ */
};

struct backoff_rules {
	char *name;                    /* file name, for reasons */
	struct rule *v;
	size_t n;
};

const char backoff_rules_builtin[] = {
	"# sluice backoff rules: what a site does when a remote server throttles.\n"
	"#\n"
	"# Every non-2xx reply a lane gets (per recipient, and the reply a connection\n"
	"# ends with, such as a 421 greeting) is checked against these rules. The\n"
	"# first rule that matches acts on the site and the source (lane) that got\n"
	"# the reply; when none matches nothing happens beyond the usual retry.\n"
	"#\n"
	"# Syntax: one rule per line, words separated by blanks,\n"
	"#\n"
	"#     MATCHERS... ACTIONS... [/REGEX/]\n"
	"#\n"
	"# Matchers (as in bounce-rules.conf; at least one, all must match):\n"
	"#   code=     the basic reply code: three characters, each a digit or \"x\"\n"
	"#             (\"421\", \"45x\", \"4xx\").\n"
	"#   status=   the enhanced status code: \"X.Y.Z\", \"X.Y.*\" or \"X.*\"\n"
	"#             (\"4.7.28\", \"4.7.*\"). A reply without one never matches.\n"
	"#   /REGEX/   a POSIX extended regular expression, case-insensitive, searched\n"
	"#             in the reply text (without the code and the enhanced code; the\n"
	"#             lines of a multi-line reply are joined with \" / \"). It runs\n"
	"#             from the first word that starts with \"/\" to the last \"/\" of\n"
	"#             the line, so it may hold \"/\" and blanks; it comes last.\n"
	"#\n"
	"# Actions (at least one of suspend=, rate=, connections=):\n"
	"#   suspend=DURATION  suspend the whole site (no new transactions from any\n"
	"#                     source) for DURATION; it resumes by itself.\n"
	"#   rate=N/UNIT       lower the lane's max-msg-rate to N/UNIT until recovery\n"
	"#                     (never raises it above the configured rate).\n"
	"#   connections=N     cap the lane's max-smtp-out at N until recovery.\n"
	"#   recover=DURATION  quiet period: when no reply has matched a rule for\n"
	"#                     this long (counted from the end of the suspension),\n"
	"#                     the lane returns to its configured limits. Default 15m.\n"
	"#   recover-after=N   ... or as soon as N recipients were delivered (2xx)\n"
	"#                     since the last match, whichever comes first.\n"
	"# recover= and recover-after= need rate= or connections=.\n"
	"#\n"
	"# A new match while a lane is backing off keeps the lower of the two rates\n"
	"# and connection caps, and extends the quiet period. Durations: 500ms, 30s,\n"
	"# 10m, 4h, 2d. A line whose first non-blank character is \"#\" is a comment;\n"
	"# blank lines are ignored.\n"
	"#\n"
	"# Only replies that throttle the sending IP belong here. Replies about one\n"
	"# recipient (\"450 4.2.1 The user you are trying to contact is receiving mail\n"
	"# at a rate that prevents additional messages from being delivered\") must\n"
	"# not slow down the site: the retry schedule handles them.\n"
	"#\n"
	"# The built-in rules (used when sluice.conf has no \"backoff-rules FILE\") are\n"
	"# a copy of this file compiled into sluiced.\n"
	"#\n"
	"# Above each rule: the real replies it is meant for.\n"
	"\n"
	"# ---------------------------------------------------------------------------\n"
	"# Gmail / Google Workspace\n"
	"# ---------------------------------------------------------------------------\n"
	"\n"
	"# 421-4.7.28 [192.0.2.1      15] Our system has detected an unusual rate of\n"
	"# 421-4.7.28 unsolicited mail originating from your IP address. To protect our\n"
	"# 421-4.7.28 users from spam, mail sent from your IP address has been\n"
	"# 421-4.7.28 temporarily rate limited. Please visit\n"
	"# 421-4.7.28  https://support.google.com/mail/?p=UnsolicitedRateLimitError to\n"
	"# 421 4.7.28 review our Bulk Email Senders Guidelines. a1si123.456 - gsmtp\n"
	"code=4xx status=4.7.28 suspend=10m rate=600/h recover=1h\n"
	"# 421-4.7.0 [192.0.2.1      15] Our system has detected an unusual rate of\n"
	"# 421-4.7.0 unsolicited mail originating from your IP address. To protect our\n"
	"# 421-4.7.0 users from spam, mail sent from your IP address has been temporarily\n"
	"# 421 4.7.0 blocked. a1si123.456 - gsmtp\n"
	"code=4xx suspend=15m rate=600/h recover=1h /unusual rate( of)?[ /]+unsolicited/\n"
	"# 421-4.7.0 Try again later, closing connection. (EHLO)\n"
	"# 421 4.7.0  a1si123.456 - gsmtp\n"
	"code=421 status=4.7.0 suspend=1m connections=2 recover=30m /Try again later, closing connection/\n"
	"# (Not here: \"450-4.2.1 The user you are trying to contact is receiving mail\n"
	"# at a rate that prevents additional messages from being delivered.\" and\n"
	"# \"450-4.2.1 ... is receiving mail too quickly\": one recipient, not the IP.)\n"
	"\n"
	"# ---------------------------------------------------------------------------\n"
	"# Microsoft (outlook.com, hotmail.com, live.com, Exchange Online)\n"
	"# ---------------------------------------------------------------------------\n"
	"\n"
	"# 451 4.7.650 The mail server [192.0.2.1] has been temporarily rate limited due\n"
	"# to IP reputation. For e-mail delivery information, see\n"
	"# https://postmaster.live.com (S775) [DM6NAM12FT012.eop-nam12.prod.protection.outlook.com]\n"
	"code=4xx suspend=15m rate=300/h recover=2h /temporarily rate limited due to IP reputation/\n"
	"# 451 4.7.500 Server busy. Please try again later from [192.0.2.1]. (S77719)\n"
	"# [BN8NAM12FT053.eop-nam12.prod.protection.outlook.com]\n"
	"# 451 4.7.500 Server busy. Please try again later from [192.0.2.1]. (S3150)\n"
	"# [AM6EUR05FT012.eop-eur05.prod.protection.outlook.com]\n"
	"code=4xx suspend=5m rate=1200/h recover=30m /Server busy\\. Please try again later from/\n"
	"# 451 4.7.651 The mail server [192.0.2.1] has been temporarily rate limited due\n"
	"# to IP reputation... and the other 4.7.500-4.7.699 deferrals, all of which\n"
	"# carry Microsoft's \"(Snnnn)\" reference:\n"
	"# 452 4.7.603 Temporarily deferred due to unexpected volume or user\n"
	"# complaints (S844) [...]\n"
	"code=4xx status=4.7.* suspend=5m rate=600/h recover=1h /\\(S[0-9]{3,6}\\)/\n"
	"# 550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please\n"
	"# contact your Internet service provider since part of their network is on our\n"
	"# block list (S3150). You can also refer your provider to\n"
	"# http://mail.live.com/mail/troubleshooting.aspx#errors.\n"
	"# (a block of the IP: every further message would bounce)\n"
	"code=5xx suspend=1h /on our block list \\(S3[0-9]{3}\\)/\n"
	"# 421 4.3.2 The maximum number of concurrent connections has exceeded a limit,\n"
	"# closing transmission channel\n"
	"code=4xx connections=2 recover=30m /maximum number of concurrent connections has exceeded/\n"
	"\n"
	"# ---------------------------------------------------------------------------\n"
	"# Yahoo / AOL (Yahoo Inc.)\n"
	"# ---------------------------------------------------------------------------\n"
	"\n"
	"# 421 4.7.0 [TS03] All messages from 192.0.2.1 will be permanently deferred;\n"
	"# Retrying will NOT succeed. See https://postmaster.yahooinc.com/error-codes\n"
	"# (stop for a long while: retrying only deepens the block)\n"
	"code=4xx suspend=6h /\\[TS03\\]|will be permanently deferred/\n"
	"# 421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to\n"
	"# unexpected volume or user complaints - 4.16.55.1; see\n"
	"# https://postmaster.yahooinc.com/error-codes\n"
	"code=4xx suspend=30m rate=300/h recover=2h /\\[TSS04\\]/\n"
	"# 421 4.7.0 [TS01] Messages from 192.0.2.1 temporarily deferred due to user\n"
	"# complaints - 4.16.55.1; see https://help.yahoo.com/kb/postmaster/SLN3434.html\n"
	"# 421 4.7.0 [TS02] Messages from 192.0.2.1 temporarily deferred due to user\n"
	"# complaints - 4.16.56.1; see https://help.yahoo.com/kb/postmaster/SLN3434.html\n"
	"code=4xx suspend=15m rate=300/h recover=2h /\\[TS0[12]\\]|temporarily deferred due to (unexpected volume or )?user complaints/\n"
};





/* A positive integer up to max, nothing after it. */
static bool
parse_count(const char *s, long max, int *out)
{
	char *end;
	long v;

	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 1 || v > max)
		return false;
	*out = (int)v;
	return true;
}

static void
rules_free_n(struct rule *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].m.has_re)
			regfree(&v[i].m.re);
	free(v);
}

void
backoff_rules_free(struct backoff_rules *r)
{
	if (r == NULL)
		return;
	rules_free_n(r->v, r->n);
	free(r->name);
	free(r);
}

size_t
backoff_rules_count(const struct backoff_rules *r)
{
	return r == NULL ? 0 : r->n;
}

/* Word tok is "key=..."; the value in *val. */
static bool
is_key(const char *tok, const char *key, const char **val)
{
	size_t n = strlen(key);

	if (strncmp(tok, key, n) != 0 || tok[n] != '=')
		return false;
	*val = tok + n + 1;
	return true;
}

#define FAIL(...) do { \
	int o_ = snprintf(err, errlen, "%s:%d: ", name, line); \
	if (o_ >= 0 && (size_t)o_ < errlen) \
		snprintf(err + o_, errlen - (size_t)o_, __VA_ARGS__); \
	return false; \
} while (0)

/*
 * Parse one rule line (NUL-terminated, no newline, not blank, not a
 * comment) into *ru. On error write "name:line: message" and return false;
 * *ru then holds nothing to free.
 */
static bool
parse_rule(char *s, const char *name, int line, struct rule *ru,
    char *err, size_t errlen)
{
	char *re_start = NULL, *re_end, *tok, *save = NULL;
	bool has_suspend = false, has_recover = false;
	const char *v, *e;

	memset(ru, 0, sizeof(*ru));
	ru->act.line = line;
	ru->act.recover_ms = BACKOFF_RECOVER_DEFAULT_MS;

	/* The regex starts at the first word that begins with '/' and runs to
	 * the last '/': it may hold blanks and slashes. */
	for (char *p = s; *p != '\0'; p++)
		if (*p == '/' && (p == s || *(p - 1) == ' ' || *(p - 1) == '\t')) {
			re_start = p;
			break;
		}
	if (re_start != NULL) {
		re_end = strrchr(re_start, '/');
		if (re_end == re_start)
			FAIL("regex not closed: %s", re_start);
		const char *after = re_end + 1;

		while (isspace((unsigned char)*after))
			after++;
		if (*after != '\0')
			FAIL("text after the regex: %s", after);
		*re_start = '\0';
		*re_end = '\0';
	}

	for (tok = strtok_r(s, " \t", &save); tok != NULL; tok = strtok_r(NULL, " \t", &save)) {
		if (is_key(tok, "code", &v)) {
			if (ru->m.has_code)
				FAIL("duplicate code=");
			if (!reply_code_pattern(v, ru->m.code))
				FAIL("bad code pattern \"%s\" (NNN, NNx or Nxx)", v);
			ru->m.has_code = true;
		} else if (is_key(tok, "status", &v)) {
			if (ru->m.has_status)
				FAIL("duplicate status=");
			if (!reply_status_pattern(v, ru->m.status))
				FAIL("bad status pattern \"%s\" (X.Y.Z, X.Y.* or X.*)", v);
			ru->m.has_status = true;
		} else if (is_key(tok, "suspend", &v)) {
			if (has_suspend)
				FAIL("duplicate suspend=");
			if (parse_duration(v, &ru->act.suspend_ms, &e) < 0)
				FAIL("suspend=%s: %s", v, e);
			if (ru->act.suspend_ms <= 0)
				FAIL("suspend= must be longer than 0");
			has_suspend = true;
		} else if (is_key(tok, "rate", &v)) {
			if (ru->act.rate.count != 0)
				FAIL("duplicate rate=");
			if (parse_rate(v, &ru->act.rate, &e) < 0)
				FAIL("rate=%s: %s", v, e);
			if (ru->act.rate.count == 0)
				FAIL("rate= must allow at least 1 message (use suspend= to stop)");
		} else if (is_key(tok, "connections", &v)) {
			if (ru->act.connections != 0)
				FAIL("duplicate connections=");
			if (!parse_count(v, MAX_CONNECTIONS, &ru->act.connections))
				FAIL("connections=%s: expected a number from 1 to %d", v,
				    MAX_CONNECTIONS);
		} else if (is_key(tok, "recover", &v)) {
			if (has_recover)
				FAIL("duplicate recover=");
			if (parse_duration(v, &ru->act.recover_ms, &e) < 0)
				FAIL("recover=%s: %s", v, e);
			if (ru->act.recover_ms <= 0)
				FAIL("recover= must be longer than 0");
			has_recover = true;
		} else if (is_key(tok, "recover-after", &v)) {
			if (ru->act.recover_after != 0)
				FAIL("duplicate recover-after=");
			if (!parse_count(v, MAX_RECOVER_AFTER, &ru->act.recover_after))
				FAIL("recover-after=%s: expected a number from 1 to %d", v,
				    MAX_RECOVER_AFTER);
		} else
			FAIL("unknown word \"%s\" (code=, status=, suspend=, rate=, "
			    "connections=, recover=, recover-after= or /regex/)", tok);
	}

	if (re_start != NULL) {
		const char *pat = re_start + 1;
		int rc;

		if (*pat == '\0')
			FAIL("empty regex");
		rc = regcomp(&ru->m.re, pat, REG_EXTENDED | REG_ICASE | REG_NOSUB);
		if (rc != 0) {
			char msg[256];

			regerror(rc, &ru->m.re, msg, sizeof(msg));
			regfree(&ru->m.re);
			FAIL("bad regex /%s/: %s", pat, msg);
		}
		ru->m.has_re = true;
	}
	if (!ru->m.has_code && !ru->m.has_status && !ru->m.has_re) {
		FAIL("rule has no matcher (code=, status= or /regex/)");
	}
	if (!has_suspend && ru->act.rate.count == 0 && ru->act.connections == 0) {
		if (ru->m.has_re)
			regfree(&ru->m.re);
		FAIL("rule has no action (suspend=, rate= or connections=)");
	}
	if ((has_recover || ru->act.recover_after != 0) && ru->act.rate.count == 0 &&
	    ru->act.connections == 0) {
		if (ru->m.has_re)
			regfree(&ru->m.re);
		FAIL("recover= and recover-after= need rate= or connections=");
	}
	return true;
}

static bool
parse_one(char *s, int line, void *elem, const struct rule_file *f)
{
	return parse_rule(s, f->name, line, elem, f->err, f->errlen);
}

struct backoff_rules *
backoff_rules_parse(const char *text, const char *name, char *err, size_t errlen)
{
	struct backoff_rules *r = xcalloc(1, sizeof(*r));
	struct rule_file f = { name, err, errlen };
	void *v;

	r->name = xstrdup(name);
	bool ok = reply_rules_array(text, sizeof(*r->v), parse_one, &f, &v, &r->n);
	r->v = v;
	if (!ok) {
		backoff_rules_free(r);
		return NULL;
	}
	/* the file name is fixed now that the array no longer moves */
	for (size_t i = 0; i < r->n; i++)
		r->v[i].act.file = r->name;
	return r;
}

struct backoff_rules *
backoff_rules_load(const char *path, char *err, size_t errlen)
{
	struct backoff_rules *r;
	char *text;

	if (path == NULL)
		return backoff_rules_parse(backoff_rules_builtin, "built-in backoff rules", err, errlen);
	if ((text = reply_rules_text(path, err, errlen)) == NULL)
		return NULL;
	r = backoff_rules_parse(text, path, err, errlen);
	free(text);
	return r;
}


const struct backoff_rule *
backoff_match(const struct backoff_rules *r, int code, const char *enh,
    const char *text)
{
	struct reply_in in;

	if (r == NULL || r->n == 0)
		return NULL;
	reply_in_init(&in, code, enh, text);
	for (size_t i = 0; i < r->n; i++)
		if (reply_match_test(&r->v[i].m, &in))
			return &r->v[i].act;
	return NULL;
}

void
backoff_rule_fmt(const struct backoff_rule *ru, char *buf, size_t len)
{
	char d[32];
	size_t o = 0;

	buf[0] = '\0';
#define ADD(...) do { \
	int n_ = snprintf(buf + o, len - o, "%s", o ? " " : ""); \
	if (n_ > 0 && o + (size_t)n_ < len) o += (size_t)n_; \
	n_ = snprintf(buf + o, len - o, __VA_ARGS__); \
	if (n_ > 0) o = MIN(len - 1, o + (size_t)n_); \
} while (0)
	if (len == 0)
		return;
	if (ru->suspend_ms > 0) {
		fmt_duration(d, sizeof(d), ru->suspend_ms);
		ADD("suspend=%s", d);
	}
	if (ru->rate.count > 0) {
		fmt_rate(d, sizeof(d), &ru->rate);
		ADD("rate=%s", d);
	}
	if (ru->connections > 0)
		ADD("connections=%d", ru->connections);
	if (ru->rate.count > 0 || ru->connections > 0) {
		fmt_duration(d, sizeof(d), ru->recover_ms);
		ADD("recover=%s", d);
		if (ru->recover_after > 0)
			ADD("recover-after=%d", ru->recover_after);
	}
#undef ADD
}
