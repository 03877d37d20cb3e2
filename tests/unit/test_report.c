/*
 * report.c and verp.c: DSNs, ARF reports, text bounces and auto-replies in
 * the formats real MTAs and providers send (tests/unit/samples/: RFC 3464
 * and 5965 examples, Postfix, Gmail, Exim, qmail, Exchange, Yahoo CFL,
 * Outlook.com JMRP), damaged MIME; VERP tokens (round trip, case, every
 * kind of alteration, the 64-octet local part) and the send records in the
 * store (encoding, lookup, expiry).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "report.h"
#include "store.h"
#include "util.h"
#include "verp.h"

/* A sample by name: $srcdir/tests/unit/samples/NAME, or next to this file. */
static char *
sample(const char *name, size_t *len)
{
	char path[4096];
	const char *srcdir = getenv("srcdir");
	char *text = NULL;

	if (srcdir != NULL) {
		snprintf(path, sizeof(path), "%s/tests/unit/samples/%s", srcdir, name);
		text = read_file(path, len);
	}
	if (text == NULL) {
		const char *f = __FILE__, *cut = strstr(f, "test_report.c");
		if (cut != NULL) {
			snprintf(path, sizeof(path), "%.*ssamples/%s", (int)(cut - f), f, name);
			text = read_file(path, len);
		}
	}
	if (text == NULL)
		fail_msg("cannot read sample %s (set srcdir)", name);
	return text;
}

static void
parse_sample(const char *name, struct report *r)
{
	size_t len;
	char *m = sample(name, &len);

	report_parse(m, len, r);
	free(m);
}

#define VERP_RP "bounce+01JD8ZQ3M4X7K2P9R5T6V8W0YB1ABCDEFGHJKMN0@bounces.example.com"

static void
test_dsn_postfix(void **state)
{
	struct report r;

	(void)state;
	parse_sample("dsn-postfix.eml", &r);
	assert_int_equal(r.type, REPORT_DSN);
	assert_false(r.broken);
	assert_string_equal(r.reporting_mta, "mx.example.net");
	assert_int_equal(r.nrcpt, 1);
	assert_string_equal(r.rcpts[0].final_rcpt, "nobody@example.net");
	assert_string_equal(r.rcpts[0].orig_rcpt, "nobody@example.net");
	assert_string_equal(r.rcpts[0].action, "failed");
	assert_string_equal(r.rcpts[0].status, "5.1.1");
	assert_string_equal(r.rcpts[0].remote_mta, "mail.example.net");
	/* folded Diagnostic-Code unfolded, "smtp;" dropped */
	assert_string_equal(r.rcpts[0].diag, "550 5.1.1 <nobody@example.net>: Recipient address "
	    "rejected: User unknown in virtual mailbox table");
	/* the original's headers from text/rfc822-headers */
	assert_string_equal(r.orig_return_path, VERP_RP);
	assert_string_equal(r.orig_message_id, "<20261123100209.4711@example.com>");
	assert_string_equal(r.orig_to, "nobody@example.net");
	assert_string_equal(r.subject, "Undelivered Mail Returned to Sender");
	report_free(&r);
}

static void
test_dsn_gmail(void **state)
{
	struct report r;

	(void)state;
	parse_sample("dsn-gmail.eml", &r);
	assert_int_equal(r.type, REPORT_DSN);
	assert_int_equal(r.nrcpt, 1);
	assert_string_equal(r.rcpts[0].final_rcpt, "nobody.here@gmail.com");
	assert_null(r.rcpts[0].orig_rcpt);
	assert_string_equal(r.rcpts[0].status, "5.1.1");
	assert_non_null(strstr(r.rcpts[0].diag, "550-5.1.1 The email account that you tried to reach does not exist."));
	assert_non_null(strstr(r.rcpts[0].remote_mta, "gmail-smtp-in.l.google.com."));
	/* the original: an attached message/rfc822 */
	assert_string_equal(r.orig_return_path, VERP_RP);
	assert_string_equal(r.orig_message_id, "<20261123100209.4711@example.com>");
	const struct report_rcpt *p = report_pick(&r, "NOBODY.HERE@gmail.com");
	assert_ptr_equal(p, &r.rcpts[0]);
	report_free(&r);
}

static void
test_dsn_multi_recipient(void **state)
{
	struct report r;

	(void)state;
	/* RFC 3464's example, with the blank line between two recipients
	 * missing, and a delivered one */
	parse_sample("dsn-rfc3464-multi.eml", &r);
	assert_int_equal(r.type, REPORT_DSN);
	assert_int_equal(r.nrcpt, 3);
	assert_string_equal(r.rcpts[0].final_rcpt, "louisl@larry.slip.umd.example");
	assert_string_equal(r.rcpts[0].action, "failed");
	assert_string_equal(r.rcpts[0].status, "4.0.0");
	assert_string_equal(r.rcpts[0].diag, "426 connection timed out");
	assert_string_equal(r.rcpts[1].final_rcpt, "pwe@larry.slip.umd.example");
	assert_string_equal(r.rcpts[1].action, "delayed");
	assert_null(r.rcpts[1].diag);
	assert_string_equal(r.rcpts[2].action, "delivered");
	/* picking: by address, else the failed one */
	assert_ptr_equal(report_pick(&r, "pwe@larry.slip.umd.example"), &r.rcpts[1]);
	assert_ptr_equal(report_pick(&r, "other@example.com"), &r.rcpts[0]);
	assert_ptr_equal(report_pick(&r, NULL), &r.rcpts[0]);
	/* the message/rfc822 part is not headers: nothing taken from it */
	assert_null(r.orig_return_path);
	report_free(&r);
}

static void
test_dsn_base64_lf_no_final_boundary(void **state)
{
	struct report r;

	(void)state;
	parse_sample("dsn-delayed-base64-lf-nofinal.eml", &r);
	assert_int_equal(r.type, REPORT_DSN);
	assert_true(r.broken);              /* the final boundary is missing */
	assert_int_equal(r.nrcpt, 1);
	assert_string_equal(r.rcpts[0].final_rcpt, "slow@example.org");
	assert_string_equal(r.rcpts[0].action, "delayed");
	assert_string_equal(r.rcpts[0].status, "4.4.7");
	assert_string_equal(r.rcpts[0].diag, "451 4.4.7 Try again later");
	/* the last, unterminated part still read */
	assert_string_equal(r.orig_message_id, "<delay-1@example.com>");
	report_free(&r);
}

static void
test_arf_rfc5965(void **state)
{
	struct report r;

	(void)state;
	parse_sample("arf-rfc5965.eml", &r);
	assert_int_equal(r.type, REPORT_ARF);
	assert_string_equal(r.feedback_type, "abuse");
	assert_string_equal(r.user_agent, "SomeGenerator/1.0");
	assert_string_equal(r.original_mail_from, "somespammer@example.net");
	assert_int_equal(r.norig_rcpt_to, 1);
	assert_string_equal(r.original_rcpt_to[0], "user@example.com");
	assert_string_equal(r.arrival_date, "Thu, 8 Mar 2005 14:00:00 EDT");
	assert_string_equal(r.source_ip, "192.0.2.1");
	assert_string_equal(r.reported_domain, "example.net");
	assert_string_equal(r.orig_message_id, "8787KJKJ3K4J3K4J3K4J3.mail@example.net");
	assert_string_equal(r.orig_subject, "Earn money");
	assert_null(r.orig_return_path);
	report_free(&r);
}

static void
test_arf_yahoo(void **state)
{
	struct report r;

	(void)state;
	parse_sample("arf-yahoo.eml", &r);
	assert_int_equal(r.type, REPORT_ARF);
	assert_string_equal(r.feedback_type, "abuse");
	assert_string_equal(r.user_agent, "Yahoo!-Mail-Feedback/2.0");
	assert_string_equal(r.original_rcpt_to[0], "reader@yahoo.example");
	assert_string_equal(r.arrival_date, "Mon, 23 Nov 2026 11:58:00 +0000");   /* Received-Date */
	assert_string_equal(r.original_mail_from, VERP_RP);
	assert_string_equal(r.orig_return_path, VERP_RP);
	assert_string_equal(r.orig_message_id, "<20261123100209.4712@example.com>");
	report_free(&r);
}

static void
test_arf_outlook_redacted(void **state)
{
	struct report r;

	(void)state;
	/* JMRP: no Original-Rcpt-To, recipient redacted; quoted-printable
	 * text part; the VERP Return-Path without angle brackets */
	parse_sample("arf-outlook-jmrp.eml", &r);
	assert_int_equal(r.type, REPORT_ARF);
	assert_string_equal(r.user_agent, "Hotmail FBL");
	assert_int_equal(r.norig_rcpt_to, 0);
	assert_string_equal(r.source_ip, "198.51.100.7");
	assert_string_equal(r.orig_return_path, VERP_RP);
	assert_string_equal(r.orig_to, "<redacted>");
	char *a = report_addr(r.orig_to);
	assert_null(a);
	report_free(&r);
}

static void
test_bounce_qmail(void **state)
{
	struct report r;

	(void)state;
	parse_sample("bounce-qmail.eml", &r);
	assert_int_equal(r.type, REPORT_BOUNCE);
	assert_int_equal(r.nrcpt, 1);
	assert_string_equal(r.rcpts[0].final_rcpt, "nobody@example.net");
	assert_string_equal(r.rcpts[0].action, "failed");
	assert_string_equal(r.rcpts[0].status, "5.1.1");
	assert_string_equal(r.rcpts[0].diag, "Remote host said: 550 5.1.1 <nobody@example.net>: "
	    "Recipient address rejected: User unknown");
	assert_string_equal(r.orig_return_path, VERP_RP);
	assert_string_equal(r.orig_message_id, "<20261123100209.4711@example.com>");
	report_free(&r);
}

static void
test_bounce_exim(void **state)
{
	struct report r;

	(void)state;
	/* marked Auto-Submitted: auto-replied, and still a bounce */
	parse_sample("bounce-exim.eml", &r);
	assert_int_equal(r.type, REPORT_BOUNCE);
	assert_string_equal(r.rcpts[0].final_rcpt, "nobody@example.org");
	assert_string_equal(r.rcpts[0].action, "failed");
	assert_string_equal(r.rcpts[0].status, "5.1.1");
	assert_string_equal(r.orig_return_path, VERP_RP);
	report_free(&r);
}

static void
test_bounce_exchange(void **state)
{
	struct report r;

	(void)state;
	/* multipart/alternative, quoted-printable with soft breaks, CRLF */
	parse_sample("bounce-exchange-qp-crlf.eml", &r);
	assert_int_equal(r.type, REPORT_BOUNCE);
	assert_string_equal(r.rcpts[0].final_rcpt, "nobody@contoso.example");
	assert_string_equal(r.rcpts[0].status, "5.1.10");
	assert_string_equal(r.rcpts[0].diag, "Remote Server returned '550 5.1.10 "
	    "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup'");
	report_free(&r);
}

static void
test_bounce_gmail_legacy(void **state)
{
	struct report r;

	(void)state;
	parse_sample("bounce-gmail-legacy.eml", &r);
	assert_int_equal(r.type, REPORT_BOUNCE);
	assert_string_equal(r.rcpts[0].final_rcpt, "old.user@gmail.com");
	assert_string_equal(r.rcpts[0].action, "failed");
	assert_string_equal(r.rcpts[0].status, "5.1.1");
	assert_string_equal(r.orig_return_path, VERP_RP);
	assert_string_equal(r.orig_message_id, "<20261123100209.4714@example.com>");
	report_free(&r);
}

static void
test_autoreplies(void **state)
{
	static const struct { const char *file, *sign; } cases[] = {
		{ "autoreply-exchange.eml", "Auto-Submitted" },
		{ "autoreply-vacation-de.eml", "Auto-Submitted" },
		{ "autoreply-xautoreply.eml", "X-Autoreply" },
	};
	struct report r;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		parse_sample(cases[i].file, &r);
		assert_int_equal(r.type, REPORT_AUTOREPLY);
		assert_string_equal(r.autoreply_sign, cases[i].sign);
		assert_int_equal(r.nrcpt, 0);
		report_free(&r);
	}
	/* subject only */
	const char *m = "From: a@example.org\r\nSubject: Out of Office: November offers\r\n\r\n"
	    "Back on Monday.\r\n";
	report_parse(m, strlen(m), &r);
	assert_int_equal(r.type, REPORT_AUTOREPLY);
	assert_string_equal(r.autoreply_sign, "Subject");
	report_free(&r);
	m = "From: a@example.org\nSubject: Automatische Antwort: Angebot\n\nNicht da.\n";
	report_parse(m, strlen(m), &r);
	assert_int_equal(r.type, REPORT_AUTOREPLY);
	report_free(&r);
}

static void
test_unknown(void **state)
{
	struct report r;

	(void)state;
	parse_sample("human-reply.eml", &r);
	assert_int_equal(r.type, REPORT_UNKNOWN);
	assert_int_equal(r.nrcpt, 0);
	report_free(&r);
	/* a bounce-like subject from a person is not a bounce */
	const char *m = "From: bob@example.org\nSubject: Returned mail\n\nI returned it.\n";
	report_parse(m, strlen(m), &r);
	assert_int_equal(r.type, REPORT_UNKNOWN);
	report_free(&r);
	report_parse("", 0, &r);
	assert_int_equal(r.type, REPORT_UNKNOWN);
	report_free(&r);
}

static void
test_broken_mime(void **state)
{
	struct report r;

	(void)state;
	/* the boundary never appears: the body is read as text */
	parse_sample("broken-no-boundary.eml", &r);
	assert_true(r.broken);
	assert_int_equal(r.type, REPORT_BOUNCE);
	assert_string_equal(r.rcpts[0].final_rcpt, "gone@example.org");
	assert_string_equal(r.rcpts[0].status, "5.1.1");
	report_free(&r);
	/* multipart without a boundary, NUL and 8-bit junk */
	parse_sample("broken-garbage.eml", &r);
	assert_true(r.broken);
	assert_int_equal(r.type, REPORT_UNKNOWN);
	report_free(&r);
	/* nested deeper than the limit: bounded, no crash */
	struct sbuf b = { 0 };
	sb_add(&b, "Subject: deep\n", 14);
	for (int i = 0; i < 40; i++) {
		char l[160];
		int n = snprintf(l, sizeof(l), "Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n", i, i);
		sb_add(&b, l, (size_t)n);
	}
	report_parse(b.p, b.len, &r);
	assert_true(r.broken);
	report_free(&r);
	free(b.p);
	/* every prefix of a real report parses without harm */
	size_t len;
	char *m = sample("dsn-gmail.eml", &len);
	for (size_t cut = 0; cut < len; cut += 7) {
		char *c = xstrndup(m, cut);
		report_parse(c, cut, &r);
		report_free(&r);
		free(c);
	}
	free(m);
}

static void
test_report_addr(void **state)
{
	char *a;

	(void)state;
	assert_string_equal(a = report_addr("News <news@example.com>"), "news@example.com");
	free(a);
	assert_string_equal(a = report_addr("<a@b.example>"), "a@b.example");
	free(a);
	assert_string_equal(a = report_addr(" a@b.example "), "a@b.example");
	free(a);
	assert_null(report_addr("Undisclosed Recipients"));
	assert_null(report_addr("<>"));
	assert_null(report_addr(NULL));
}

/* ---- VERP ---- */

static const uint8_t key[32] = "0123456789abcdef0123456789abcdef";
static const uint8_t key2[32] = "0123456789abcdef0123456789abcdeF";
#define QID "01JD8ZQ3M4X7K2P9R5T6V8W0YB"

static void
test_verp_roundtrip(void **state)
{
	char tok[VERP_TOKEN_MAX + 1], local[128];
	struct verp_token t;
	static const uint32_t idxs[] = { 0, 1, 31, 32, 1023, 99999, VERP_IDX_MAX };

	(void)state;
	for (size_t i = 0; i < sizeof(idxs) / sizeof(idxs[0]); i++) {
		size_t n = verp_token(key, sizeof(key), QID, idxs[i], tok);
		assert_true(n > 0);
		int l = snprintf(local, sizeof(local), VERP_PREFIX "%s", tok);
		assert_true(l <= 64);           /* RFC 5321 4.5.3.1.1 */
		assert_int_equal(verp_check(key, sizeof(key), local, (size_t)l, &t), 1);
		assert_string_equal(t.qid, QID);
		assert_int_equal(t.idx, idxs[i]);
		/* lower-cased by some MTA on the way back: still valid */
		for (int k = 0; k < l; k++)
			local[k] = (char)tolower((unsigned char)local[k]);
		assert_int_equal(verp_check(key, sizeof(key), local, (size_t)l, &t), 1);
		assert_string_equal(t.qid, QID);
		/* another key: forged */
		assert_int_equal(verp_check(key2, sizeof(key2), local, (size_t)l, &t), -1);
	}
	/* a lower-case queue id gives the same token */
	char tok2[VERP_TOKEN_MAX + 1];
	verp_token(key, sizeof(key), QID, 5, tok);
	verp_token(key, sizeof(key), "01jd8zq3m4x7k2p9r5t6v8w0yb", 5, tok2);
	assert_string_equal(tok, tok2);
	/* what cannot be encoded */
	assert_int_equal(verp_token(key, sizeof(key), "short", 1, tok), 0);
	assert_int_equal(verp_token(key, sizeof(key), "01JD8ZQ3M4X7K2P9R5T6V8W0YU", 1, tok), 0);
	assert_int_equal(verp_token(key, sizeof(key), QID, VERP_IDX_MAX + 1, tok), 0);
}

static void
test_verp_alterations(void **state)
{
	char tok[VERP_TOKEN_MAX + 1], local[128];
	struct verp_token t;
	static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

	(void)state;
	size_t n = verp_token(key, sizeof(key), QID, 7, tok);
	int l = snprintf(local, sizeof(local), VERP_PREFIX "%s", tok);
	assert_int_equal(verp_check(key, sizeof(key), local, (size_t)l, &t), 1);
	/* every single-character change anywhere in the token is refused */
	for (size_t pos = VERP_PREFIX_LEN; pos < (size_t)l; pos++) {
		char saved = local[pos];
		for (const char *c = alphabet; *c; c++) {
			if (*c == saved)
				continue;
			local[pos] = *c;
			int rc = verp_check(key, sizeof(key), local, (size_t)l, &t);
			if (rc != -1)
				fail_msg("altered token accepted: %s (pos %zu)", local, pos);
		}
		local[pos] = saved;
	}
	/* shortened, lengthened, a leading zero on the index */
	assert_int_equal(verp_check(key, sizeof(key), local, (size_t)l - 1, &t), -1);
	char longer[130];
	snprintf(longer, sizeof(longer), "%sA", local);
	assert_int_equal(verp_check(key, sizeof(key), longer, strlen(longer), &t), -1);
	char zero[130];
	snprintf(zero, sizeof(zero), VERP_PREFIX "%.*s0%s", QID_LEN, tok, tok + QID_LEN);
	assert_int_equal(verp_check(key, sizeof(key), zero, strlen(zero), &t), -1);
	/* not a VERP local part at all */
	assert_int_equal(verp_check(key, sizeof(key), "postmaster", 10, &t), 0);
	assert_int_equal(verp_check(key, sizeof(key), "bounce", 6, &t), 0);
	assert_int_equal(verp_check(key, sizeof(key), "bounce+", 7, &t), -1);
	assert_int_equal(verp_check(key, sizeof(key), "bounce+garbage!", 15, &t), -1);
	(void)n;
}

static void
test_verp_key_file(void **state)
{
	char path[256], err[512];
	size_t len = 0;
	uint8_t *k;
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "/tmp/sluice-test-verp-key.%ld", (long)getpid());
	f = fopen(path, "w");
	fwrite(key, 1, sizeof(key), f);
	fclose(f);
	chmod(path, 0600);
	k = verp_key_load(path, &len, err, sizeof(err));
	assert_non_null(k);
	assert_int_equal(len, sizeof(key));
	assert_memory_equal(k, key, sizeof(key));
	free(k);
	chmod(path, 0644);
	assert_null(verp_key_load(path, &len, err, sizeof(err)));
	assert_non_null(strstr(err, "world-readable"));
	f = fopen(path, "w");
	fwrite(key, 1, 8, f);
	fclose(f);
	chmod(path, 0600);
	assert_null(verp_key_load(path, &len, err, sizeof(err)));
	assert_non_null(strstr(err, "8 bytes"));
	unlink(path);
	assert_null(verp_key_load(path, &len, err, sizeof(err)));
	assert_non_null(strstr(err, "No such file"));
}

static void
test_verp_record_codec(void **state)
{
	struct verp_send s, d;
	uint8_t buf[2048];

	(void)state;
	memset(&s, 0, sizeof(s));
	s.time = 1732356131000;
	strcpy(s.rcpt, "nobody@example.net");
	strcpy(s.sender, "news@example.com");
	strcpy(s.campaign, "nov-offers");
	strcpy(s.message_id, "<20261123100209.4711@example.com>");
	size_t n = verp_send_encode(&s, buf, sizeof(buf));
	assert_true(n > 0);
	assert_true(verp_send_decode(buf, n, &d));
	assert_int_equal(d.time, s.time);
	assert_string_equal(d.rcpt, s.rcpt);
	assert_string_equal(d.sender, s.sender);
	assert_string_equal(d.campaign, s.campaign);
	assert_string_equal(d.message_id, s.message_id);
	assert_string_equal(d.pool, "");
	assert_false(verp_send_decode(buf, n - 1, &d));     /* truncated */
	buf[0] = 99;
	assert_false(verp_send_decode(buf, n, &d));         /* unknown version */
}

/* Records in a real store: lookup and expiry by arrival time. */
static int64_t expire_cutoff;
static int expired;

static int
expire_fn(MDB_txn *txn, void *arg)
{
	(void)arg;
	expired = verp_expire_txn(txn, expire_cutoff, 1000);
	return expired < 0 ? expired : 0;
}

static void
qid_at(char out[QID_LEN + 1], int64_t ms, char fill)
{
	static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
	uint64_t t = (uint64_t)ms;
	for (int i = 7; i >= 0; i--) {
		out[i] = b32[t & 31];
		t >>= 5;
	}
	memset(out + 8, fill, QID_LEN - 8);
	out[QID_LEN] = '\0';
}

static void
test_verp_store(void **state)
{
	char dir[256], err[256], cmd[300];
	char old[QID_LEN + 1], mid[QID_LEN + 1], young[QID_LEN + 1];
	struct verp_send s, got;
	int64_t now = now_ms();

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/sluice-test-verp.%ld", (long)getpid());
	assert_int_equal(store_open(dir, 64 << 20, err, sizeof(err)), 0);
	qid_at(old, now - 20LL * 86400000, 'A');
	qid_at(mid, now - 15LL * 86400000, 'B');
	qid_at(young, now - 86400000, 'C');
	memset(&s, 0, sizeof(s));
	s.time = now;
	/* the first record also queues a sweep (with the 14-day default) */
	strcpy(s.rcpt, "young@example.net");
	verp_record(young, 2, &s);
	store_flush();
	strcpy(s.rcpt, "old@example.net");
	verp_record(old, 0, &s);
	verp_record(old, 1, &s);
	strcpy(s.rcpt, "mid@example.net");
	verp_record(mid, 3, &s);
	store_flush();
	assert_int_equal(verp_lookup(old, 1, &got), 1);
	assert_string_equal(got.rcpt, "old@example.net");
	assert_int_equal(verp_lookup(young, 2, &got), 1);
	assert_string_equal(got.rcpt, "young@example.net");
	assert_int_equal(verp_lookup(young, 3, &got), 0);
	/* expire what arrived more than 14 days ago */
	expire_cutoff = now - 14LL * 86400000;
	assert_true(store_write_wait(expire_fn, NULL));
	assert_int_equal(expired, 3);
	assert_int_equal(verp_lookup(old, 0, &got), 0);
	assert_int_equal(verp_lookup(mid, 3, &got), 0);
	assert_int_equal(verp_lookup(young, 2, &got), 1);
	store_stop_writer();
	store_close();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dsn_postfix),
		cmocka_unit_test(test_dsn_gmail),
		cmocka_unit_test(test_dsn_multi_recipient),
		cmocka_unit_test(test_dsn_base64_lf_no_final_boundary),
		cmocka_unit_test(test_arf_rfc5965),
		cmocka_unit_test(test_arf_yahoo),
		cmocka_unit_test(test_arf_outlook_redacted),
		cmocka_unit_test(test_bounce_qmail),
		cmocka_unit_test(test_bounce_exim),
		cmocka_unit_test(test_bounce_exchange),
		cmocka_unit_test(test_bounce_gmail_legacy),
		cmocka_unit_test(test_autoreplies),
		cmocka_unit_test(test_unknown),
		cmocka_unit_test(test_broken_mime),
		cmocka_unit_test(test_report_addr),
		cmocka_unit_test(test_verp_roundtrip),
		cmocka_unit_test(test_verp_alterations),
		cmocka_unit_test(test_verp_key_file),
		cmocka_unit_test(test_verp_record_codec),
		cmocka_unit_test(test_verp_store),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
