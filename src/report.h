/*
 * report: reading the mail that comes back to the bounce domain and the
 * feedback-loop mailboxes. Pure functions over one message (header and
 * body, CRLF or LF lines, without SMTP dot-stuffing): a MIME walker
 * (nested multiparts, missing final boundaries, base64 and
 * quoted-printable parts), the RFC 3464 delivery-status fields, the RFC
 * 5965 feedback-report fields, the headers of the original message (an
 * attached message/rfc822 or text/rfc822-headers part, or headers quoted
 * in the text), heuristics for bounces that are not RFC 3464 (qmail,
 * Exim, Exchange, old Gmail, Postfix texts) and the signs of an auto-reply.
 *
 * What it decides, in this order: an ARF report (a feedback-report part),
 * a DSN (a delivery-status part), a bounce recognised by its text, an
 * auto-reply, or nothing it knows. Bounded: at most REPORT_MAX_PARTS parts,
 * REPORT_MAX_DEPTH levels, REPORT_MAX_RCPT recipients.
 */
#ifndef SLUICE_REPORT_H
#define SLUICE_REPORT_H

#include <stdbool.h>
#include <stddef.h>

#define REPORT_MAX_PARTS 64
#define REPORT_MAX_DEPTH 8
#define REPORT_MAX_RCPT  100

enum report_type {
	REPORT_UNKNOWN,
	REPORT_DSN,                    /* RFC 3464 */
	REPORT_ARF,                    /* RFC 5965 */
	REPORT_BOUNCE,                 /* a non-standard bounce, by heuristics */
	REPORT_AUTOREPLY,              /* out of office and the like */
};

/* One recipient of a DSN (or the one a heuristic bounce names). Strings
 * are NULL when absent; addresses without the "rfc822;" type. */
struct report_rcpt {
	char *final_rcpt, *orig_rcpt;
	char *action;                  /* lower case: failed, delayed, delivered, relayed, expanded */
	char *status;                  /* "5.1.1" */
	char *diag;                    /* Diagnostic-Code without its "smtp;" type */
	char *remote_mta;
};

struct report {
	enum report_type type;
	bool broken;                   /* MIME damage was worked around */
	char *subject, *from;
	/* DSN per-message fields */
	char *reporting_mta;
	struct report_rcpt *rcpts;
	int nrcpt;
	/* ARF */
	char *feedback_type;           /* lower case: abuse, fraud, virus, not-spam, other ... */
	char *user_agent, *original_mail_from, *arrival_date, *source_ip, *reported_domain;
	char **original_rcpt_to;
	int norig_rcpt_to;
	/* the original message's headers, wherever they were found */
	char *orig_return_path, *orig_to, *orig_from, *orig_message_id, *orig_subject;
	/* auto-reply: which sign gave it away ("Auto-Submitted", "subject", ...);
	 * static storage */
	const char *autoreply_sign;
};

/* Parse msg (len bytes). Always fills r (type REPORT_UNKNOWN at worst);
 * free with report_free(). */
void report_parse(const char *msg, size_t len, struct report *r);
void report_free(struct report *r);
const char *report_type_name(enum report_type t);

/* The recipient block a consumer should act on: the first whose
 * Final-Recipient or Original-Recipient is rcpt (case-insensitive; rcpt
 * may be NULL), else the first failed one, else the first delayed one,
 * else the first. NULL when there is none. */
const struct report_rcpt *report_pick(const struct report *r, const char *rcpt);

/* The address inside "Name <a@b>", "<a@b>" or "a@b" (malloc'd), or NULL. */
char *report_addr(const char *s);

#endif
