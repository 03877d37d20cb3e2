/*
 * Unit tests for smtp_parse: commands, parameters, mailboxes, xtext, the
 * reply reader and EHLO keywords. Good and bad inputs for every path.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "smtp_parse.h"
#include "spool.h"

/* Parse a copy of line; returns the result, *errp the reply on error. */
static int
parse(const char *line, struct smtp_cmd *cmd, char **bufp, const char **errp)
{
	*bufp = strdup(line);
	return smtp_parse_cmd(*bufp, cmd, errp);
}

static void
expect_ok(const char *line, enum smtp_verb verb)
{
	struct smtp_cmd c;
	char *b;
	const char *err;
	int rc = parse(line, &c, &b, &err);

	if (rc != 0)
		fail_msg("'%s' refused: %s", line, err);
	assert_int_equal(c.verb, verb);
	free(b);
}

/* Refused with a reply that starts with prefix ("501 5.5.4"). */
static void
expect_err(const char *line, const char *prefix)
{
	struct smtp_cmd c;
	char *b;
	const char *err = NULL;
	int rc = parse(line, &c, &b, &err);

	if (rc != -1)
		fail_msg("'%s' accepted", line);
	assert_non_null(err);
	if (strncmp(err, prefix, strlen(prefix)) != 0)
		fail_msg("'%s': got '%s', want '%s...'", line, err, prefix);
	free(b);
}

static void
test_verbs(void **state)
{
	(void)state;
	expect_ok("HELO client.example", CMD_HELO);
	expect_ok("ehlo client.example", CMD_EHLO);
	expect_ok("EhLo [127.0.0.1]", CMD_EHLO);
	expect_ok("DATA", CMD_DATA);
	expect_ok("data   ", CMD_DATA);
	expect_ok("RSET", CMD_RSET);
	expect_ok("NOOP", CMD_NOOP);
	expect_ok("NOOP anything goes", CMD_NOOP);
	expect_ok("QUIT", CMD_QUIT);
	expect_ok("VRFY user", CMD_VRFY);
	expect_ok("EXPN list", CMD_EXPN);
	expect_ok("HELP", CMD_HELP);
	expect_ok("HELP MAIL", CMD_HELP);
	expect_ok("STARTTLS", CMD_STARTTLS);
	expect_ok("  QUIT", CMD_QUIT);

	assert_string_equal(smtp_verb_name(CMD_STARTTLS), "STARTTLS");
	assert_string_equal(smtp_verb_name(CMD_MAIL), "MAIL");
	assert_string_equal(smtp_verb_name(CMD_UNKNOWN), "UNKNOWN");
}

static void
test_verb_errors(void **state)
{
	struct smtp_cmd c;
	char *b;
	const char *err;

	(void)state;
	expect_err("FOO bar", "500 5.5.1");
	expect_err("MAILFROM:<a@b.c>", "500 5.5.1");
	expect_err("", "500 5.5.2");
	expect_err("   ", "500 5.5.2");
	expect_err("HELO", "501 5.5.4");
	expect_err("EHLO", "501 5.5.4");
	expect_err("EHLO h\xc3\xa9llo", "501 5.5.4");
	expect_err("DATA now", "501 5.5.4");
	expect_err("RSET x", "501 5.5.4");
	expect_err("QUIT please", "501 5.5.4");
	expect_err("STARTTLS x", "501 5.5.4");
	expect_err("VRFY", "501 5.5.4");
	expect_err("EXPN", "501 5.5.4");
	/* control characters anywhere */
	expect_err("NOOP \x01", "500 5.5.2");
	expect_err("HELO a\tb", "500 5.5.2");
	expect_err("QUIT\r", "500 5.5.2");
	expect_err("NOOP \x7f", "500 5.5.2");
	expect_err("\x1b[0mQUIT", "500 5.5.2");

	/* the verb is known even when its argument is bad */
	assert_int_equal(parse("DATA x", &c, &b, &err), -1);
	assert_int_equal(c.verb, CMD_DATA);
	free(b);
	assert_int_equal(parse("BOGUS", &c, &b, &err), -1);
	assert_int_equal(c.verb, CMD_UNKNOWN);
	free(b);
	/* argument is trimmed */
	assert_int_equal(parse("HELO   host.example  ", &c, &b, &err), 0);
	assert_string_equal(c.arg, "host.example");
	free(b);
	assert_int_equal(parse("RSET", &c, &b, &err), 0);
	assert_string_equal(c.arg, "");
	free(b);
}

static void
test_mail(void **state)
{
	struct smtp_cmd c;
	char *b;
	const char *err;

	(void)state;
	assert_int_equal(parse("MAIL FROM:<user@example.com>", &c, &b, &err), 0);
	assert_int_equal(c.verb, CMD_MAIL);
	assert_string_equal(c.path, "user@example.com");
	assert_int_equal(c.nparams, 0);
	assert_false(c.path_utf8);
	free(b);

	assert_int_equal(parse("mail from:<>", &c, &b, &err), 0);
	assert_string_equal(c.path, "");
	free(b);

	/* a space after the colon is tolerated */
	assert_int_equal(parse("MAIL FROM: <a@b.example>", &c, &b, &err), 0);
	assert_string_equal(c.path, "a@b.example");
	free(b);

	assert_int_equal(parse("MAIL FROM:<a@b.example> size=1000 BODY=8bitmime SMTPUTF8 "
	    "RET=HDRS ENVID=abc+2Bdef AUTH=<>", &c, &b, &err), 0);
	assert_int_equal(c.nparams, 6);
	assert_string_equal(c.params[0].key, "SIZE");
	assert_string_equal(c.params[0].value, "1000");
	assert_string_equal(smtp_cmd_param(&c, "size"), "1000");
	assert_string_equal(smtp_cmd_param(&c, "BODY"), "8bitmime");
	assert_string_equal(smtp_cmd_param(&c, "SMTPUTF8"), "");
	assert_null(c.params[2].value);
	assert_string_equal(smtp_cmd_param(&c, "RET"), "HDRS");
	assert_string_equal(smtp_cmd_param(&c, "ENVID"), "abc+2Bdef");
	assert_null(smtp_cmd_param(&c, "NOTIFY"));
	free(b);

	/* multiple spaces between parameters */
	assert_int_equal(parse("MAIL FROM:<a@b.example>   SIZE=1    BODY=7BIT", &c, &b, &err), 0);
	assert_int_equal(c.nparams, 2);
	free(b);

	/* source route is dropped */
	assert_int_equal(parse("MAIL FROM:<@relay.example,@r2.example:u@d.example>", &c, &b, &err), 0);
	assert_string_equal(c.path, "u@d.example");
	free(b);

	/* quoted local part with '>' and spaces inside */
	assert_int_equal(parse("MAIL FROM:<\"john > doe\"@example.com> SIZE=5", &c, &b, &err), 0);
	assert_string_equal(c.path, "\"john > doe\"@example.com");
	assert_string_equal(smtp_cmd_param(&c, "SIZE"), "5");
	free(b);

	/* escaped quote inside a quoted local part */
	assert_int_equal(parse("MAIL FROM:<\"a\\\">b\"@example.com>", &c, &b, &err), 0);
	assert_string_equal(c.path, "\"a\\\">b\"@example.com");
	free(b);

	/* UTF-8 path */
	assert_int_equal(parse("MAIL FROM:<j\xc3\xb6rg@b\xc3\xbc" "cher.example> SMTPUTF8", &c, &b, &err), 0);
	assert_true(c.path_utf8);
	free(b);

	/* BODY=BINARYMIME is syntactically fine; the server decides */
	expect_ok("MAIL FROM:<a@b.example> BODY=BINARYMIME", CMD_MAIL);
	expect_ok("MAIL FROM:<a@b.example> SIZE=18446744073709551615", CMD_MAIL);
}

static void
test_mail_errors(void **state)
{
	(void)state;
	expect_err("MAIL", "501 5.5.4");
	expect_err("MAIL TO:<a@b.example>", "501 5.5.4");
	expect_err("MAIL FROM:a@b.example", "501 5.5.4");
	expect_err("MAIL FROM:<a@b.example", "501 5.5.4");
	expect_err("MAIL FROM:<a@b.example>SIZE=1", "501 5.5.4");
	expect_err("MAIL FROM:<@relay.example>", "501 5.5.4");
	expect_err("MAIL FROM:<a>", "501 5.1.7");
	expect_err("MAIL FROM:<a@>", "501 5.1.7");
	expect_err("MAIL FROM:<\"unbalanced@b.example>", "501 5.5.4");
	expect_err("MAIL FROM:<a@b.example> SIZE=", "501 5.5.4");
	expect_err("MAIL FROM:<a@b.example> SIZE=12x", "501 5.5.4");
	expect_err("MAIL FROM:<a@b.example> SIZE", "501 5.5.4");
	expect_err("MAIL FROM:<a@b.example> SIZE=18446744073709551616", "501 5.5.4");
	expect_err("MAIL FROM:<a@b.example> SIZE=99999999999999999999", "501 5.5.4");
	expect_err("MAIL FROM:<a@b.example> SIZE=1 SIZE=2", "501 5.5.4 Duplicate");
	expect_err("MAIL FROM:<a@b.example> BODY=9BIT", "501 5.5.4");
	expect_err("MAIL FROM:<a@b.example> SMTPUTF8=yes", "501 5.5.4");
	expect_err("MAIL FROM:<a@b.example> RET=ALL", "501 5.5.4");
	expect_err("MAIL FROM:<a@b.example> ENVID=a+ZZ", "501 5.5.4");
	expect_err("MAIL FROM:<a@b.example> ENVID=a+00", "501 5.5.4");
	expect_err("MAIL FROM:<a@b.example> XFOO=1", "555 5.5.4");
	expect_err("MAIL FROM:<a@b.example> NOTIFY=NEVER", "555 5.5.4");
	expect_err("MAIL FROM:<a@b.example> -BAD=1", "501 5.5.4");
	expect_err("MAIL FROM:<a@b.example> SIZE=1=2", "501 5.5.4");
	expect_err("MAIL FROM:<a@b.example> A=1 B=2 C=3 D=4 E=5 F=6 G=7 H=8 I=9", "5");
	{
		/* ENVID longer than 100 decoded bytes */
		char line[300] = "MAIL FROM:<a@b.example> ENVID=";
		memset(line + strlen(line), 'x', 101);
		expect_err(line, "501 5.5.4");
	}
}

static void
test_rcpt(void **state)
{
	struct smtp_cmd c;
	char *b;
	const char *err;

	(void)state;
	assert_int_equal(parse("RCPT TO:<rcpt@example.net> NOTIFY=SUCCESS,FAILURE "
	    "ORCPT=rfc822;rcpt+2Bx@example.net", &c, &b, &err), 0);
	assert_int_equal(c.verb, CMD_RCPT);
	assert_string_equal(c.path, "rcpt@example.net");
	assert_string_equal(smtp_cmd_param(&c, "NOTIFY"), "SUCCESS,FAILURE");
	assert_string_equal(smtp_cmd_param(&c, "ORCPT"), "rfc822;rcpt+2Bx@example.net");
	free(b);

	expect_ok("RCPT TO:<Postmaster>", CMD_RCPT);
	expect_ok("rcpt to:<a@[127.0.0.1]>", CMD_RCPT);
	expect_ok("RCPT TO:<a@[IPv6:::1]>", CMD_RCPT);
	expect_ok("RCPT TO:<a@b.example> NOTIFY=never", CMD_RCPT);

	expect_err("RCPT TO:<>", "501 5.1.3");
	expect_err("RCPT FROM:<a@b.example>", "501 5.5.4");
	expect_err("RCPT TO:<a@b..example>", "501 5.1.3");
	expect_err("RCPT TO:<a@b.example> NOTIFY=NEVER,SUCCESS", "501 5.5.4");
	expect_err("RCPT TO:<a@b.example> NOTIFY=SOMETIMES", "501 5.5.4");
	expect_err("RCPT TO:<a@b.example> NOTIFY=", "501 5.5.4");
	expect_err("RCPT TO:<a@b.example> ORCPT=a@b.example", "501 5.5.4");
	expect_err("RCPT TO:<a@b.example> ORCPT=;a@b.example", "501 5.5.4");
	expect_err("RCPT TO:<a@b.example> ORCPT=rf c822;x", "501 5.5.4");
	expect_err("RCPT TO:<a@b.example> ORCPT=rf@c822;x", "501 5.5.4");
	{
		/* ORCPT over 500 decoded bytes, and longer than any xtext of it */
		char line[2000] = "RCPT TO:<a@b.example> ORCPT=rfc822;";
		memset(line + strlen(line), 'x', 501);
		expect_err(line, "501 5.5.4");
		memset(line + strlen(line), 'x', 1100);
		expect_err(line, "501 5.5.4");
	}
	expect_err("RCPT TO:<a@b.example> ORCPT=rfc822;a+G0", "501 5.5.4");
	expect_err("RCPT TO:<a@b.example> SIZE=10", "555 5.5.4");
}

static void
test_notify_bits(void **state)
{
	(void)state;
	assert_int_equal(smtp_notify_bits("NEVER"), NOTIFY_NEVER);
	assert_int_equal(smtp_notify_bits("success,Failure,DELAY"),
	    NOTIFY_SUCCESS | NOTIFY_FAILURE | NOTIFY_DELAY);
	assert_int_equal(smtp_notify_bits("FAILURE"), NOTIFY_FAILURE);
	assert_int_equal(smtp_notify_bits(""), -1);
	assert_int_equal(smtp_notify_bits(NULL), -1);
	assert_int_equal(smtp_notify_bits("FAILURE,"), -1);
	assert_int_equal(smtp_notify_bits(",FAILURE"), -1);
	assert_int_equal(smtp_notify_bits("FAILURE,FAILURE"), -1);
	assert_int_equal(smtp_notify_bits("NEVER,DELAY"), -1);
	assert_int_equal(smtp_notify_bits("FAIL"), -1);
}

static void
test_bdat(void **state)
{
	struct smtp_cmd c;
	char *b;
	const char *err;

	(void)state;
	assert_int_equal(parse("BDAT 1000", &c, &b, &err), 0);
	assert_int_equal(c.verb, CMD_BDAT);
	assert_int_equal(c.bdat_size, 1000);
	assert_false(c.bdat_last);
	free(b);
	assert_int_equal(parse("bdat 0  last", &c, &b, &err), 0);
	assert_int_equal(c.bdat_size, 0);
	assert_true(c.bdat_last);
	free(b);
	expect_err("BDAT", "501 5.5.4");
	expect_err("BDAT x", "501 5.5.4");
	expect_err("BDAT -1", "501 5.5.4");
	expect_err("BDAT 10 FIRST", "501 5.5.4");
	expect_err("BDAT 10 LAST x", "501 5.5.4");
	expect_err("BDAT 99999999999999999999999", "501 5.5.4");
	expect_err("BDAT LAST", "501 5.5.4");
}

static void
test_auth(void **state)
{
	struct smtp_cmd c;
	char *b;
	const char *err;

	(void)state;
	assert_int_equal(parse("AUTH plain AHVzZXIAcGFzcw==", &c, &b, &err), 0);
	assert_int_equal(c.verb, CMD_AUTH);
	assert_string_equal(c.auth_mech, "PLAIN");
	assert_string_equal(c.auth_initial, "AHVzZXIAcGFzcw==");
	free(b);
	assert_int_equal(parse("AUTH LOGIN", &c, &b, &err), 0);
	assert_string_equal(c.auth_mech, "LOGIN");
	assert_null(c.auth_initial);
	free(b);
	assert_int_equal(parse("AUTH PLAIN  =", &c, &b, &err), 0);
	assert_string_equal(c.auth_initial, "=");
	free(b);
	expect_err("AUTH", "501 5.5.4");
	expect_err("AUTH PL@IN", "501 5.5.4");
	expect_err("AUTH PLAIN abc", "501 5.5.2");
	expect_err("AUTH PLAIN ab=c", "501 5.5.2");
	expect_err("AUTH PLAIN a===", "501 5.5.2");
	expect_err("AUTH PLAIN ab*d", "501 5.5.2");
	expect_err("AUTH PLAIN AAAA BBBB", "501 5.5.2");
	expect_err("AUTH ABCDEFGHIJKLMNOPQRSTUVWXYZ", "501 5.5.4");
}

static void
test_mailbox(void **state)
{
	bool u = true;
	char buf[400];

	(void)state;
	assert_true(smtp_valid_mailbox("user@example.com", false, &u));
	assert_false(u);
	assert_true(smtp_valid_mailbox("first.last+tag@sub.example.co.uk", false, NULL));
	assert_true(smtp_valid_mailbox("!#$%&'*+-/=?^_`{|}~@example.com", false, NULL));
	assert_true(smtp_valid_mailbox("\"quoted string\"@example.com", false, NULL));
	assert_true(smtp_valid_mailbox("\"q\\\"uote\"@example.com", false, NULL));
	assert_true(smtp_valid_mailbox("\"a@b\"@example.com", false, NULL));
	assert_true(smtp_valid_mailbox("u@[192.0.2.1]", false, NULL));
	assert_true(smtp_valid_mailbox("u@[IPv6:2001:db8::1]", false, NULL));
	assert_true(smtp_valid_mailbox("u@localhost", false, NULL));
	assert_true(smtp_valid_mailbox("u@a-b.c-d.example", false, NULL));
	assert_true(smtp_valid_mailbox("u@123.example", false, NULL));

	/* UTF-8 only when allowed, and only well-formed */
	assert_false(smtp_valid_mailbox("j\xc3\xb6rg@example.com", false, &u));
	assert_true(smtp_valid_mailbox("j\xc3\xb6rg@example.com", true, &u));
	assert_true(u);
	assert_true(smtp_valid_mailbox("user@\xe4\xbe\x8b\xe3\x81\x88.jp", true, &u));
	assert_true(u);
	assert_true(smtp_valid_mailbox("\"\xc3\xb6 x\"@example.com", true, NULL));
	assert_false(smtp_valid_mailbox("j\xc3@example.com", true, NULL));        /* truncated */
	assert_false(smtp_valid_mailbox("j\xc0\xafrg@example.com", true, NULL));   /* overlong */
	assert_false(smtp_valid_mailbox("\xed\xa0\x80@example.com", true, NULL)); /* surrogate */
	assert_false(smtp_valid_mailbox("\xf5\x80\x80\x80@example.com", true, NULL));
	assert_false(smtp_valid_mailbox("\x80x@example.com", true, NULL));

	/* structure */
	assert_false(smtp_valid_mailbox("", false, NULL));
	assert_false(smtp_valid_mailbox("user", false, NULL));
	assert_false(smtp_valid_mailbox("@example.com", false, NULL));
	assert_false(smtp_valid_mailbox("user@", false, NULL));
	assert_false(smtp_valid_mailbox("a@b@c.example", false, NULL));
	assert_false(smtp_valid_mailbox(".user@example.com", false, NULL));
	assert_false(smtp_valid_mailbox("user.@example.com", false, NULL));
	assert_false(smtp_valid_mailbox("us..er@example.com", false, NULL));
	assert_false(smtp_valid_mailbox("us er@example.com", false, NULL));
	assert_false(smtp_valid_mailbox("us(er@example.com", false, NULL));
	assert_false(smtp_valid_mailbox("\"unbalanced@example.com", false, NULL));
	assert_false(smtp_valid_mailbox("\"a\"b@example.com", false, NULL));
	assert_false(smtp_valid_mailbox("\"\"@example.com", false, NULL));
	assert_false(smtp_valid_mailbox("\"a\\\"@example.com", false, NULL));
	assert_false(smtp_valid_mailbox("\"ab\\", false, NULL));
	assert_false(smtp_valid_mailbox("u\x01@example.com", false, NULL));
	assert_false(smtp_valid_mailbox("u@exa\x7fmple.com", false, NULL));
	assert_false(smtp_valid_mailbox("\"u\r\n\"@example.com", false, NULL));
	assert_false(smtp_valid_mailbox("u@-example.com", false, NULL));
	assert_false(smtp_valid_mailbox("u@example-.com", false, NULL));
	assert_false(smtp_valid_mailbox("u@example..com", false, NULL));
	assert_false(smtp_valid_mailbox("u@.example.com", false, NULL));
	assert_false(smtp_valid_mailbox("u@example.com.", false, NULL));
	assert_false(smtp_valid_mailbox("u@exa_mple.com", false, NULL));
	assert_false(smtp_valid_mailbox("u@[192.0.2.256]", false, NULL));
	assert_false(smtp_valid_mailbox("u@[192.0.2.1", false, NULL));
	assert_false(smtp_valid_mailbox("u@[IPv6:zz::1]", false, NULL));
	assert_false(smtp_valid_mailbox("u@[x-tag:content]", false, NULL));
	assert_false(smtp_valid_mailbox("u@[]", false, NULL));

	/* lengths: local part 64, label 63, whole 254 */
	memset(buf, 'a', 64);
	strcpy(buf + 64, "@example.com");
	assert_true(smtp_valid_mailbox(buf, false, NULL));
	memset(buf, 'a', 65);
	strcpy(buf + 65, "@example.com");
	assert_false(smtp_valid_mailbox(buf, false, NULL));
	strcpy(buf, "u@");
	memset(buf + 2, 'b', 63);
	strcpy(buf + 65, ".example");
	assert_true(smtp_valid_mailbox(buf, false, NULL));
	strcpy(buf, "u@");
	memset(buf + 2, 'b', 64);
	strcpy(buf + 66, ".example");
	assert_false(smtp_valid_mailbox(buf, false, NULL));
	/* 254 total: "u@" + 4 labels of 62 + 3 dots = 253, + "x" on the last label */
	{
		char *p = buf;
		p += sprintf(p, "u@");
		for (int i = 0; i < 4; i++) {
			memset(p, 'c', 62);
			p += 62;
			if (i < 3)
				*p++ = '.';
		}
		*p++ = 'x';
		*p = '\0';
		assert_int_equal(strlen(buf), 254);
		assert_true(smtp_valid_mailbox(buf, false, NULL));
		/* 255: the trailing "x" becomes a label ".y" */
		p[-1] = '.';
		*p++ = 'y';
		*p = '\0';
		assert_int_equal(strlen(buf), 255);
		assert_false(smtp_valid_mailbox(buf, false, NULL));
	}
}

static void
test_addr_domain(void **state)
{
	(void)state;
	assert_string_equal(smtp_addr_domain("a@b.example"), "b.example");
	assert_string_equal(smtp_addr_domain("\"a@x\"@b.example"), "b.example");
	assert_null(smtp_addr_domain("postmaster"));
}

static void
test_utf8(void **state)
{
	(void)state;
	assert_true(smtp_utf8_valid("", 0));
	assert_true(smtp_utf8_valid("abc", 3));
	assert_true(smtp_utf8_valid("\xc3\xa9", 2));
	assert_true(smtp_utf8_valid("\xe2\x82\xac", 3));
	assert_true(smtp_utf8_valid("\xf0\x9f\x98\x80", 4));
	assert_true(smtp_utf8_valid("\xf4\x8f\xbf\xbf", 4));
	assert_false(smtp_utf8_valid("\xc3", 1));
	assert_false(smtp_utf8_valid("\xc1\xbf", 2));
	assert_false(smtp_utf8_valid("\xe0\x80\xaf", 3));
	assert_false(smtp_utf8_valid("\xf0\x80\x80\xaf", 4));
	assert_false(smtp_utf8_valid("\xf4\x90\x80\x80", 4));
	assert_false(smtp_utf8_valid("\xed\xbf\xbf", 3));
	assert_false(smtp_utf8_valid("\xe2\x28\xa1", 3));
	assert_false(smtp_utf8_valid("\xff", 1));
}

static void
test_xtext(void **state)
{
	char s[64];
	char *e;

	(void)state;
	strcpy(s, "abc+2Bdef+3D");
	assert_int_equal(xtext_decode(s), 0);
	assert_string_equal(s, "abc+def=");
	strcpy(s, "lower+2b");
	assert_int_equal(xtext_decode(s), 0);
	assert_string_equal(s, "lower+");
	strcpy(s, "");
	assert_int_equal(xtext_decode(s), 0);
	strcpy(s, "a+2");
	assert_int_equal(xtext_decode(s), -1);
	strcpy(s, "a+");
	assert_int_equal(xtext_decode(s), -1);
	strcpy(s, "a+G1");
	assert_int_equal(xtext_decode(s), -1);
	strcpy(s, "a+00b");
	assert_int_equal(xtext_decode(s), -1);
	strcpy(s, "a=b");
	assert_int_equal(xtext_decode(s), -1);
	strcpy(s, "a b");
	assert_int_equal(xtext_decode(s), -1);
	strcpy(s, "a\xc3\xa9");
	assert_int_equal(xtext_decode(s), -1);

	e = xtext_encode("a+b=c d\x01\xc3\xa9");
	assert_string_equal(e, "a+2Bb+3Dc+20d+01+C3+A9");
	strcpy(s, e);
	assert_int_equal(xtext_decode(s), 0);
	assert_string_equal(s, "a+b=c d\x01\xc3\xa9");
	free(e);
	e = xtext_encode("");
	assert_string_equal(e, "");
	free(e);
}

/* Feed a whole reply (lines separated by \n); returns the last feed result. */
static int
feed_all(struct smtp_reply *r, const char *text)
{
	const char *p = text;
	bool first = true;
	int rc = -2;

	while (*p) {
		size_t n = strcspn(p, "\n");
		rc = smtp_reply_feed(r, p, n, first);
		if (rc != 0)
			return rc;
		first = false;
		p += n;
		if (*p)
			p++;
	}
	return rc;
}

static void
test_reply_single(void **state)
{
	struct smtp_reply r;

	(void)state;
	assert_int_equal(feed_all(&r, "250 2.1.0 Ok"), 1);
	assert_int_equal(r.code, 250);
	assert_string_equal(r.enh, "2.1.0");
	assert_string_equal(r.text, "Ok");
	assert_int_equal(smtp_reply_class(&r), 2);

	assert_int_equal(feed_all(&r, "550 5.1.1 <x@y>: Recipient address rejected"), 1);
	assert_string_equal(r.enh, "5.1.1");
	assert_string_equal(r.text, "<x@y>: Recipient address rejected");
	assert_int_equal(smtp_reply_class(&r), 5);

	/* no enhanced code */
	assert_int_equal(feed_all(&r, "354 End data with <CR><LF>.<CR><LF>"), 1);
	assert_int_equal(r.code, 354);
	assert_string_equal(r.enh, "");
	assert_string_equal(r.text, "End data with <CR><LF>.<CR><LF>");
	assert_int_equal(smtp_reply_class(&r), 3);

	/* bare code, code + space, CRLF left on */
	assert_int_equal(feed_all(&r, "220"), 1);
	assert_int_equal(r.code, 220);
	assert_string_equal(r.text, "");
	assert_int_equal(smtp_reply_feed(&r, "221 \r\n", 6, true), 1);
	assert_int_equal(r.code, 221);
	assert_string_equal(r.text, "");

	/* enhanced-looking text that is not a code stays text */
	assert_int_equal(feed_all(&r, "250 2.0 Ok"), 1);
	assert_string_equal(r.enh, "");
	assert_string_equal(r.text, "2.0 Ok");
	assert_int_equal(feed_all(&r, "250 3.1.1 Ok"), 1);
	assert_string_equal(r.enh, "");
	assert_int_equal(feed_all(&r, "250 2.1.1000 Ok"), 1);
	assert_string_equal(r.enh, "");
	assert_int_equal(feed_all(&r, "250 2.1.1x Ok"), 1);
	assert_string_equal(r.enh, "");
	assert_int_equal(feed_all(&r, "451 4.7.28 Rate limited"), 1);
	assert_string_equal(r.enh, "4.7.28");
	assert_int_equal(feed_all(&r, "451 4.7.650"), 1);
	assert_string_equal(r.enh, "4.7.650");
	assert_string_equal(r.text, "");

	/* basic code wins over a disagreeing enhanced code */
	assert_int_equal(feed_all(&r, "550 4.2.2 Mailbox full"), 1);
	assert_int_equal(smtp_reply_class(&r), 5);
	/* control characters in the text are neutralised */
	assert_int_equal(smtp_reply_feed(&r, "250 a\x01" "b\x00" "c", 9, true), 1);
	assert_int_equal(memcmp(r.text, "a b c", 5), 0);
}

static void
test_reply_multi(void **state)
{
	struct smtp_reply r;

	(void)state;
	assert_int_equal(smtp_reply_feed(&r, "250-mx.example.net", 18, true), 0);
	assert_int_equal(smtp_reply_feed(&r, "250-PIPELINING", 14, false), 0);
	assert_int_equal(smtp_reply_feed(&r, "250 8BITMIME", 12, false), 1);
	assert_int_equal(r.code, 250);
	assert_string_equal(r.text, "mx.example.net / PIPELINING / 8BITMIME");

	assert_int_equal(feed_all(&r, "550-5.7.1 Message rejected\n550-5.7.1 see https://x/y\n"
	    "550 5.7.1 bye"), 1);
	assert_string_equal(r.enh, "5.7.1");
	assert_string_equal(r.text, "Message rejected / see https://x/y / bye");

	/* enhanced code on a later line only */
	assert_int_equal(feed_all(&r, "421-mx busy\n421 4.7.0 try later"), 1);
	assert_string_equal(r.enh, "4.7.0");
	assert_string_equal(r.text, "mx busy / try later");

	/* empty continuation lines add no separators */
	assert_int_equal(feed_all(&r, "250-\n250-a\n250"), 1);
	assert_string_equal(r.text, "a");

	/* a long reply is truncated, never overflowed */
	{
		char line[600];
		memset(line, 'x', sizeof(line));
		memcpy(line, "250-", 4);
		assert_int_equal(smtp_reply_feed(&r, line, sizeof(line), true), 0);
		for (int i = 0; i < 5; i++)
			assert_int_equal(smtp_reply_feed(&r, line, sizeof(line), false), 0);
		line[3] = ' ';
		assert_int_equal(smtp_reply_feed(&r, line, sizeof(line), false), 1);
		assert_int_equal(strlen(r.text), sizeof(r.text) - 1);
	}
}

static void
test_reply_bad(void **state)
{
	struct smtp_reply r;

	(void)state;
	assert_int_equal(feed_all(&r, ""), -2); /* nothing fed */
	assert_int_equal(smtp_reply_feed(&r, "", 0, true), -1);
	assert_int_equal(r.code, 0);
	assert_int_equal(feed_all(&r, "25"), -1);
	assert_int_equal(feed_all(&r, "abc hello"), -1);
	assert_int_equal(feed_all(&r, "150 too low"), -1);
	assert_int_equal(feed_all(&r, "650 too high"), -1);
	assert_int_equal(feed_all(&r, "260 bad second digit"), -1);
	assert_int_equal(feed_all(&r, "25x no"), -1);
	assert_int_equal(feed_all(&r, "250Ok"), -1);
	assert_int_equal(feed_all(&r, "250_Ok"), -1);
	assert_int_equal(r.code, 0);
	/* continuation with a different code */
	assert_int_equal(feed_all(&r, "250-a\n251 b"), -1);
	assert_int_equal(r.code, 0);
	assert_int_equal(feed_all(&r, "250-a\ngarbage"), -1);
}

static void
test_reply_set_fmt(void **state)
{
	struct smtp_reply r;
	char buf[128];

	(void)state;
	smtp_reply_set(&r, 451, "4.4.2", "connection lost after %d bytes", 12);
	assert_int_equal(r.code, 451);
	assert_string_equal(r.enh, "4.4.2");
	assert_string_equal(r.text, "connection lost after 12 bytes");
	smtp_reply_fmt(&r, buf, sizeof(buf));
	assert_string_equal(buf, "451 4.4.2 connection lost after 12 bytes");
	assert_int_equal(smtp_reply_class(&r), 4);

	smtp_reply_set(&r, 250, NULL, "Ok");
	smtp_reply_fmt(&r, buf, sizeof(buf));
	assert_string_equal(buf, "250 Ok");

	/* class without a basic code */
	memset(&r, 0, sizeof(r));
	assert_int_equal(smtp_reply_class(&r), 4);
	strcpy(r.enh, "5.1.1");
	assert_int_equal(smtp_reply_class(&r), 5);
}

static void
test_ehlo(void **state)
{
	struct smtp_ehlo e;
	struct smtp_reply r;
	const char *lines[] = {
		"mx.example.net Hello", "PIPELINING", "SIZE 52428800", "8bitmime",
		"SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING", "STARTTLS",
		"AUTH PLAIN LOGIN CRAM-MD5", "DSN",
	};

	(void)state;
	memset(&e, 0, sizeof(e));
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		smtp_ehlo_line(&e, lines[i]);
	assert_int_equal(e.ext, EXT_PIPELINING | EXT_SIZE | EXT_8BITMIME | EXT_SMTPUTF8 |
	    EXT_ENHANCED | EXT_CHUNKING | EXT_STARTTLS | EXT_AUTH_PLAIN | EXT_AUTH_LOGIN |
	    EXT_DSN);
	assert_int_equal(e.size, 52428800);

	memset(&e, 0, sizeof(e));
	smtp_ehlo_line(&e, "AUTH=LOGIN");
	assert_int_equal(e.ext, EXT_AUTH_LOGIN);
	smtp_ehlo_line(&e, "auth cram-md5 plain");
	assert_int_equal(e.ext, EXT_AUTH_LOGIN | EXT_AUTH_PLAIN);

	memset(&e, 0, sizeof(e));
	smtp_ehlo_line(&e, "SIZE");
	assert_int_equal(e.ext, EXT_SIZE);
	assert_int_equal(e.size, 0);
	smtp_ehlo_line(&e, "SIZE abc");
	assert_int_equal(e.size, 0);
	smtp_ehlo_line(&e, "SIZE 1000");
	assert_int_equal(e.size, 1000);

	/* near misses are not keywords */
	memset(&e, 0, sizeof(e));
	smtp_ehlo_line(&e, "PIPELININGX");
	smtp_ehlo_line(&e, "XPIPELINING");
	smtp_ehlo_line(&e, "STARTTLS=yes");
	smtp_ehlo_line(&e, "DSNX");
	smtp_ehlo_line(&e, "AUTHX PLAIN");
	smtp_ehlo_line(&e, "X-VERY-LONG-KEYWORD-THAT-GOES-ON-AND-ON PIPELINING");
	smtp_ehlo_line(&e, "");
	smtp_ehlo_line(&e, "AUTH");
	smtp_ehlo_line(&e, "AUTH PLAINX LOGINX");
	assert_int_equal(e.ext, 0);
	smtp_ehlo_line(&e, "  pipelining  ");
	assert_int_equal(e.ext, EXT_PIPELINING);

	/* driven from a reply, as the client does: the lines after the first */
	assert_int_equal(feed_all(&r, "250-mx\n250-STARTTLS\n250 CHUNKING"), 1);
	memset(&e, 0, sizeof(e));
	{
		char copy[sizeof(r.text)];
		char *save, *tok;
		int i = 0;
		strcpy(copy, r.text);
		for (tok = strtok_r(copy, "/", &save); tok; tok = strtok_r(NULL, "/", &save))
			if (i++ > 0)
				smtp_ehlo_line(&e, tok);
	}
	assert_int_equal(e.ext, EXT_STARTTLS | EXT_CHUNKING);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verbs),
		cmocka_unit_test(test_verb_errors),
		cmocka_unit_test(test_mail),
		cmocka_unit_test(test_mail_errors),
		cmocka_unit_test(test_rcpt),
		cmocka_unit_test(test_notify_bits),
		cmocka_unit_test(test_bdat),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_mailbox),
		cmocka_unit_test(test_addr_domain),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_xtext),
		cmocka_unit_test(test_reply_single),
		cmocka_unit_test(test_reply_multi),
		cmocka_unit_test(test_reply_bad),
		cmocka_unit_test(test_reply_set_fmt),
		cmocka_unit_test(test_ehlo),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
