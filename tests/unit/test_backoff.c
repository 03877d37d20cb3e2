/*
 * backoff.c: the shipped rules against the real throttling replies of
 * Gmail, Microsoft and Yahoo (and per-recipient replies that must not
 * act); first match wins; every parse error with its exact
 * "name:LINE: message"; and the built-in rules being a byte for byte copy
 * of conf/backoff-rules.conf.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backoff.h"
#include "util.h"
#include "unit.h"

#define MIN_MS (60 * 1000LL)
#define HOUR_MS (60 * MIN_MS)

static char errbuf[1024];

/* The line of the first rule in the built-in text that starts with prefix. */
static int
builtin_line(const char *prefix)
{
	int line = 1;
	size_t n = strlen(prefix);

	for (const char *p = backoff_rules_builtin; *p != '\0'; p++) {
		if ((p == backoff_rules_builtin || p[-1] == '\n') && strncmp(p, prefix, n) == 0)
			return line;
		if (*p == '\n')
			line++;
	}
	fail_msg("no rule starting with \"%s\" in the built-in rules", prefix);
	return 0;
}

struct reply_case {
	int code;
	const char *enh;
	const char *text;              /* as smtp_reply keeps it: enhanced code off */
	const char *rule;              /* start of the rule that must match; NULL: none */
	int64_t suspend_ms;
	uint64_t rate_count;           /* per hour */
	int connections;
};

static const struct reply_case cases[] = {
	/* Gmail: 4.7.28, multi-line as smtp_reply joins it */
	{ 421, "4.7.28", "[192.0.2.1      15] Our system has detected an unusual rate of / "
	  "unsolicited mail originating from your IP address. To protect our / users from "
	  "spam, mail sent from your IP address has been / temporarily rate limited. Please "
	  "visit / https://support.google.com/mail/?p=UnsolicitedRateLimitError to / review "
	  "our Bulk Email Senders Guidelines. a1si123.456 - gsmtp",
	  "code=4xx status=4.7.28", 10 * MIN_MS, 600, 0 },
	/* ... the same on one line */
	{ 421, "4.7.28", "Our system has detected an unusual rate of unsolicited mail "
	  "originating from your IP address. To protect our users from spam, mail sent from "
	  "your IP address has been temporarily rate limited. Please visit "
	  "https://support.google.com/mail/?p=UnsolicitedRateLimitError to review our Bulk "
	  "Email Senders Guidelines.",
	  "code=4xx status=4.7.28", 10 * MIN_MS, 600, 0 },
	/* 4.7.0 "unusual rate", split across lines as Gmail sends it */
	{ 421, "4.7.0", "[192.0.2.1      15] Our system has detected an unusual rate of / "
	  "unsolicited mail originating from your IP address. To protect our / users from "
	  "spam, mail sent from your IP address has been temporarily / blocked. a1si - gsmtp",
	  "code=4xx suspend=15m", 15 * MIN_MS, 600, 0 },
	{ 421, "4.7.0", "Try again later, closing connection. (EHLO) / a1si123.456 - gsmtp",
	  "code=421 status=4.7.0", MIN_MS, 0, 2 },
	/* per recipient: no site action */
	{ 450, "4.2.1", "The user you are trying to contact is receiving mail at a rate that / "
	  "prevents additional messages from being delivered. Please resend your / message at "
	  "a later time. If the user is able to receive mail at that time, your / message will "
	  "be delivered. a1si - gsmtp", NULL, 0, 0, 0 },
	{ 450, "4.2.1", "The user you are trying to contact is receiving mail too quickly. "
	  "Please resend your message at a later time.", NULL, 0, 0, 0 },
	/* ... nor the ordinary permanent failures */
	{ 550, "5.7.1", "Our system has detected that this message is likely unsolicited mail. "
	  "To reduce the amount of spam sent to Gmail, this message has been blocked.",
	  NULL, 0, 0, 0 },
	{ 550, "5.1.1", "The email account that you tried to reach does not exist.", NULL, 0, 0, 0 },

	/* Microsoft */
	{ 451, "4.7.650", "The mail server [192.0.2.1] has been temporarily rate limited due to "
	  "IP reputation. For e-mail delivery information, see https://postmaster.live.com "
	  "(S775) [DM6NAM12FT012.eop-nam12.prod.protection.outlook.com]",
	  "code=4xx suspend=15m rate=300/h recover=2h /temporarily rate limited", 15 * MIN_MS, 300, 0 },
	{ 451, "4.7.500", "Server busy. Please try again later from [192.0.2.1]. (S77719) "
	  "[BN8NAM12FT053.eop-nam12.prod.protection.outlook.com]",
	  "code=4xx suspend=5m rate=1200/h", 5 * MIN_MS, 1200, 0 },
	{ 451, "4.7.500", "Server busy. Please try again later from [192.0.2.1]. (S3150) "
	  "[AM6EUR05FT012.eop-eur05.prod.protection.outlook.com]",
	  "code=4xx suspend=5m rate=1200/h", 5 * MIN_MS, 1200, 0 },
	{ 452, "4.7.603", "Temporarily deferred due to unexpected volume or user complaints "
	  "(S844) [AM6EUR05FT012.eop-eur05.prod.protection.outlook.com]",
	  "code=4xx status=4.7.* suspend=5m", 5 * MIN_MS, 600, 0 },
	{ 550, "5.7.1", "Unfortunately, messages from [192.0.2.1] weren't sent. Please contact "
	  "your Internet service provider since part of their network is on our block list "
	  "(S3150). You can also refer your provider to "
	  "http://mail.live.com/mail/troubleshooting.aspx#errors. [AM6EUR05FT012.eop-eur05]",
	  "code=5xx suspend=1h", HOUR_MS, 0, 0 },
	{ 421, "4.3.2", "The maximum number of concurrent connections has exceeded a limit, "
	  "closing transmission channel", "code=4xx connections=2", 0, 0, 2 },
	/* an unknown mailbox at Outlook is not throttling */
	{ 550, "5.5.0", "Requested action not taken: mailbox unavailable (S2017) [...]",
	  NULL, 0, 0, 0 },

	/* Yahoo */
	{ 421, "4.7.0", "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected "
	  "volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
	  "code=4xx suspend=30m", 30 * MIN_MS, 300, 0 },
	{ 421, "4.7.0", "[TS01] Messages from 192.0.2.1 temporarily deferred due to user "
	  "complaints - 4.16.55.1; see https://help.yahoo.com/kb/postmaster/SLN3434.html",
	  "code=4xx suspend=15m rate=300/h recover=2h /\\[TS0[12]", 15 * MIN_MS, 300, 0 },
	{ 421, "4.7.0", "[TS02] Messages from 192.0.2.1 temporarily deferred due to user "
	  "complaints - 4.16.56.1; see https://help.yahoo.com/kb/postmaster/SLN3434.html",
	  "code=4xx suspend=15m rate=300/h recover=2h /\\[TS0[12]", 15 * MIN_MS, 300, 0 },
	{ 421, "4.7.0", "[TS03] All messages from 192.0.2.1 will be permanently deferred; "
	  "Retrying will NOT succeed. See https://postmaster.yahooinc.com/error-codes",
	  "code=4xx suspend=6h", 6 * HOUR_MS, 0, 0 },
	{ 554, "5.7.9", "Message not accepted for policy reasons.  See "
	  "https://postmaster.yahooinc.com/error-codes", NULL, 0, 0, 0 },
	{ 250, "2.0.0", "OK 1693238520 a1si", NULL, 0, 0, 0 },
};

static void
test_real_replies(void **state)
{
	struct backoff_rules *r = backoff_rules_load(NULL, errbuf, sizeof(errbuf));

	(void)state;
	assert_non_null(r);
	assert_true(backoff_rules_count(r) >= 10);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct reply_case *c = &cases[i];
		const struct backoff_rule *ru = backoff_match(r, c->code, c->enh, c->text);

		if (c->rule == NULL) {
			if (ru != NULL)
				fail_msg("case %zu (%d %s %.50s): matched line %d, expected none",
				    i, c->code, c->enh, c->text, ru->line);
			continue;
		}
		if (ru == NULL)
			fail_msg("case %zu (%d %s %.50s): no rule matched", i, c->code, c->enh,
			    c->text);
		if (ru->line != builtin_line(c->rule))
			fail_msg("case %zu (%d %s %.50s): line %d, expected %d (%s)", i, c->code,
			    c->enh, c->text, ru->line, builtin_line(c->rule), c->rule);
		assert_string_equal(ru->file, "built-in backoff rules");
		assert_int_equal(ru->suspend_ms, c->suspend_ms);
		if (c->rate_count) {
			assert_int_equal(ru->rate.per_ms, HOUR_MS);
			assert_int_equal(ru->rate.count, c->rate_count);
		} else
			assert_int_equal(ru->rate.count, 0);
		assert_int_equal(ru->connections, c->connections);
	}
	/* the enhanced code may also lead the text */
	const struct backoff_rule *ru = backoff_match(r, 421, NULL,
	    "4.7.28 Our system has detected an unusual rate of unsolicited mail");
	assert_non_null(ru);
	assert_int_equal(ru->line, builtin_line("code=4xx status=4.7.28"));
	backoff_rules_free(r);
}

static void
test_first_match_wins(void **state)
{
	struct backoff_rules *r;
	const struct backoff_rule *ru;

	(void)state;
	r = backoff_rules_parse(
	    "# comment\n"
	    "\n"
	    "code=421 status=4.7.28 suspend=3s\n"
	    "   code=4xx rate=10/m recover=30s recover-after=5 /rate limit/\n"
	    "status=4.* connections=1 suspend=500ms\n"
	    "\tsuspend=1m /a/b c/\n", "t.conf", errbuf, sizeof(errbuf));
	assert_non_null(r);
	assert_int_equal(backoff_rules_count(r), 4);

	ru = backoff_match(r, 421, "4.7.28", "rate limit");
	assert_non_null(ru);
	assert_int_equal(ru->line, 3);
	assert_string_equal(ru->file, "t.conf");
	assert_int_equal(ru->suspend_ms, 3000);
	assert_int_equal(ru->rate.count, 0);
	assert_int_equal(ru->recover_ms, BACKOFF_RECOVER_DEFAULT_MS);

	ru = backoff_match(r, 451, "4.7.0", "you hit our RATE LIMIT, slow down");
	assert_non_null(ru);
	assert_int_equal(ru->line, 4);
	assert_int_equal(ru->rate.count, 10);
	assert_int_equal(ru->rate.per_ms, 60000);
	assert_int_equal(ru->recover_ms, 30000);
	assert_int_equal(ru->recover_after, 5);
	assert_int_equal(ru->suspend_ms, 0);

	ru = backoff_match(r, 451, "4.4.1", "connect failed");
	assert_non_null(ru);
	assert_int_equal(ru->line, 5);
	assert_int_equal(ru->connections, 1);
	assert_int_equal(ru->suspend_ms, 500);

	/* status= never matches a reply without one; the regex holds / and blanks */
	ru = backoff_match(r, 550, NULL, "x a/b c y");
	assert_non_null(ru);
	assert_int_equal(ru->line, 6);
	assert_null(backoff_match(r, 550, NULL, "a/b"));
	assert_null(backoff_match(r, 0, NULL, NULL));
	assert_null(backoff_match(NULL, 421, "4.7.28", "x"));

	char buf[128];
	backoff_rule_fmt(backoff_match(r, 451, "4.7.0", "rate limit"), buf, sizeof(buf));
	assert_string_equal(buf, "rate=10/m recover=30s recover-after=5");
	backoff_rule_fmt(backoff_match(r, 421, "4.7.28", ""), buf, sizeof(buf));
	assert_string_equal(buf, "suspend=3s");
	backoff_rule_fmt(backoff_match(r, 451, "4.4.1", ""), buf, sizeof(buf));
	assert_string_equal(buf, "suspend=500ms connections=1 recover=15m");
	backoff_rules_free(r);

	/* an empty file is no rules: nothing matches */
	r = backoff_rules_parse("# nothing\n", "e.conf", errbuf, sizeof(errbuf));
	assert_non_null(r);
	assert_int_equal(backoff_rules_count(r), 0);
	assert_null(backoff_match(r, 421, "4.7.28", "x"));
	backoff_rules_free(r);
	/* last line without a newline */
	r = backoff_rules_parse("code=421 suspend=1s", "n.conf", errbuf, sizeof(errbuf));
	assert_non_null(r);
	assert_int_equal(backoff_match(r, 421, NULL, "")->line, 1);
	backoff_rules_free(r);
}

struct err_case {
	const char *text;
	const char *err;
};

static const struct err_case errs[] = {
	{ "suspend=1m /unclosed\n", "x.conf:1: regex not closed: /unclosed" },
	{ "code=421 suspend=1m /a/ b\n", "x.conf:1: text after the regex: b" },
	{ "code=421 code=451 suspend=1m\n", "x.conf:1: duplicate code=" },
	{ "code=621 suspend=1m\n", "x.conf:1: bad code pattern \"621\" (NNN, NNx or Nxx)" },
	{ "code=42 suspend=1m\n", "x.conf:1: bad code pattern \"42\" (NNN, NNx or Nxx)" },
	{ "status=4.7.1 status=4.7.2 suspend=1m\n", "x.conf:1: duplicate status=" },
	{ "status=4.7 suspend=1m\n",
	  "x.conf:1: bad status pattern \"4.7\" (X.Y.Z, X.Y.* or X.*)" },
	{ "code=421 suspend=1m suspend=2m\n", "x.conf:1: duplicate suspend=" },
	{ "code=421 suspend=soon\n",
	  "x.conf:1: suspend=soon: expected a duration like 500ms, 30s, 10m, 4h or 2d" },
	{ "code=421 suspend=0s\n", "x.conf:1: suspend= must be longer than 0" },
	{ "code=421 rate=1/m rate=2/m\n", "x.conf:1: duplicate rate=" },
	{ "code=421 rate=fast\n",
	  "x.conf:1: rate=fast: expected a rate like 3600/h, 20/m, 5/s or 100/10m" },
	{ "code=421 rate=0/h\n",
	  "x.conf:1: rate= must allow at least 1 message (use suspend= to stop)" },
	{ "code=421 connections=1 connections=2\n", "x.conf:1: duplicate connections=" },
	{ "code=421 connections=0\n",
	  "x.conf:1: connections=0: expected a number from 1 to 10000" },
	{ "code=421 connections=2x\n",
	  "x.conf:1: connections=2x: expected a number from 1 to 10000" },
	{ "code=421 rate=1/m recover=1m recover=2m\n", "x.conf:1: duplicate recover=" },
	{ "code=421 rate=1/m recover=later\n",
	  "x.conf:1: recover=later: expected a duration like 500ms, 30s, 10m, 4h or 2d" },
	{ "code=421 rate=1/m recover=0m\n", "x.conf:1: recover= must be longer than 0" },
	{ "code=421 rate=1/m recover-after=1 recover-after=2\n",
	  "x.conf:1: duplicate recover-after=" },
	{ "code=421 rate=1/m recover-after=-1\n",
	  "x.conf:1: recover-after=-1: expected a number from 1 to 1000000" },
	{ "code=421 suspend=1m pause=1m\n",
	  "x.conf:1: unknown word \"pause=1m\" (code=, status=, suspend=, rate=, "
	  "connections=, recover=, recover-after= or /regex/)" },
	{ "code=421 suspend=1m //\n", "x.conf:1: empty regex" },
	{ "code=421 suspend=1m /(/\n", "x.conf:1: bad regex /(/: " },
	{ "suspend=1m\n", "x.conf:1: rule has no matcher (code=, status= or /regex/)" },
	{ "code=421 /x/\n", "x.conf:1: rule has no action (suspend=, rate= or connections=)" },
	{ "code=421 recover=1m\n",
	  "x.conf:1: rule has no action (suspend=, rate= or connections=)" },
	{ "code=421 suspend=1m recover=1m\n",
	  "x.conf:1: recover= and recover-after= need rate= or connections=" },
	{ "code=421 suspend=1m recover-after=3 /x/\n",
	  "x.conf:1: recover= and recover-after= need rate= or connections=" },
	/* line numbers count comments and blank lines */
	{ "# c\n\ncode=421 suspend=1m\n  \ncode=421\n",
	  "x.conf:5: rule has no action (suspend=, rate= or connections=)" },
};

static void
test_parse_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		struct backoff_rules *r = backoff_rules_parse(errs[i].text, "x.conf", errbuf,
		    sizeof(errbuf));

		if (r != NULL)
			fail_msg("case %zu (%s): parsed", i, errs[i].text);
		/* regerror() texts differ between C libraries: compare the prefix */
		if (strncmp(errbuf, errs[i].err, strlen(errs[i].err)) != 0)
			fail_msg("case %zu: got \"%s\", expected \"%s\"", i, errbuf, errs[i].err);
	}
}

static void
test_load_errors(void **state)
{
	char path[] = "/tmp/test_backoff_XXXXXX";
	int fd;
	struct backoff_rules *r;

	(void)state;
	r = backoff_rules_load("/nonexistent/backoff.conf", errbuf, sizeof(errbuf));
	assert_null(r);
	assert_string_equal(errbuf, "/nonexistent/backoff.conf: No such file or directory");

	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "code=421 suspend=1m\n\0x\n", 23), 23);
	close(fd);
	r = backoff_rules_load(path, errbuf, sizeof(errbuf));
	assert_null(r);
	char want[128];
	snprintf(want, sizeof(want), "%s: contains a NUL byte", path);
	assert_string_equal(errbuf, want);

	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "code=421 suspend=1m\ncode=999 suspend=1m\n", 40), 40);
	close(fd);
	r = backoff_rules_load(path, errbuf, sizeof(errbuf));
	assert_null(r);
	snprintf(want, sizeof(want), "%s:2: bad code pattern \"999\" (NNN, NNx or Nxx)", path);
	assert_string_equal(errbuf, want);

	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "code=421 suspend=2s\n", 20), 20);
	close(fd);
	r = backoff_rules_load(path, errbuf, sizeof(errbuf));
	assert_non_null(r);
	const struct backoff_rule *ru = backoff_match(r, 421, "", "x");
	assert_non_null(ru);
	assert_string_equal(ru->file, path);
	assert_int_equal(ru->suspend_ms, 2000);
	backoff_rules_free(r);
	unlink(path);
}

static void
test_builtin_matches_file(void **state)
{
	(void)state;
	unit_builtin_matches_file("backoff-rules.conf", backoff_rules_builtin, "backoff_rules_builtin", "backoff.c");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_real_replies),
		cmocka_unit_test(test_first_match_wins),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_builtin_matches_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
