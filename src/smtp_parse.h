/*
 * smtp_parse: pure parsers for the SMTP protocol, shared by the server and
 * the client: commands and their parameters (RFC 5321, 1870, 6152, 6531,
 * 3030, 3461, 4954), mailbox syntax, replies (multi-line, enhanced status
 * codes, RFC 3463), xtext. No I/O here; everything is unit-tested.
 */
#ifndef SLUICE_SMTP_PARSE_H
#define SLUICE_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum smtp_verb {
	CMD_UNKNOWN, CMD_HELO, CMD_EHLO, CMD_MAIL, CMD_RCPT, CMD_DATA, CMD_BDAT,
	CMD_RSET, CMD_NOOP, CMD_QUIT, CMD_VRFY, CMD_EXPN, CMD_HELP, CMD_STARTTLS,
	CMD_AUTH
};

#define SMTP_MAX_PARAMS 8
struct smtp_cmd {
	enum smtp_verb verb;
	char *arg;                     /* rest of the line after the verb (trimmed), or "" */
	/* MAIL / RCPT */
	char *path;                    /* address without <>; "" for the null path */
	int nparams;
	struct { char *key, *value; } params[SMTP_MAX_PARAMS]; /* key upper-cased; value may be NULL */
	bool path_utf8;                /* path has non-ASCII (UTF-8) bytes */
	/* BDAT */
	uint64_t bdat_size;
	bool bdat_last;
	/* AUTH */
	char *auth_mech;               /* upper-cased mechanism name */
	char *auth_initial;            /* initial response (base64 or "="), or NULL */
};

/*
 * Parse one command line (without CRLF) in place: buf is modified and the
 * struct points into it. Returns 0, or -1 with *err set to a full SMTP
 * reply ("501 5.5.4 Syntax: MAIL FROM:<address>") suitable to send; cmd->verb
 * is still set when the verb was recognised. Syntax only: paths are checked
 * with smtp_valid_mailbox() allowing UTF-8 (cmd->path_utf8 tells the caller,
 * which decides whether SMTPUTF8 permits it); known parameters (SIZE BODY
 * SMTPUTF8 RET ENVID AUTH on MAIL, NOTIFY ORCPT on RCPT) are checked for
 * syntax, unknown ones are refused with 555 5.5.4.
 */
int smtp_parse_cmd(char *buf, struct smtp_cmd *cmd, const char **err);
const char *smtp_verb_name(enum smtp_verb v);
const char *smtp_cmd_param(const struct smtp_cmd *cmd, const char *key);

/*
 * Mailbox syntax check (RFC 5321 4.1.2, with RFC 6531 UTF-8 when allowed):
 * local@domain, quoted local parts, address literals. Sets *utf8 when the
 * address has non-ASCII bytes. Returns true when valid.
 */
bool smtp_valid_mailbox(const char *addr, bool allow_utf8, bool *utf8);
/* Pointer to the domain part (after the last '@'), or NULL. */
const char *smtp_addr_domain(const char *addr);
/* Whether s[0..len) is well-formed UTF-8 (no overlongs, surrogates, > U+10FFFF). */
bool smtp_utf8_valid(const char *s, size_t len);
/* NOTIFY= value (RFC 3461) as NOTIFY_* bits of spool.h, or -1 when invalid. */
int smtp_notify_bits(const char *value);

/* xtext (RFC 3461): decode in place, return -1 on bad encoding. */
int xtext_decode(char *s);
/* Encode into a malloc'd string. */
char *xtext_encode(const char *s);

/* A server reply, possibly multi-line. */
struct smtp_reply {
	int code;                      /* 250, 421 ... ; 0 = none */
	char enh[16];                  /* "5.1.1" or "" */
	char text[1024];               /* lines joined with " / ", enhanced code removed from each */
};

/*
 * Incremental reply reader: feed lines (without CRLF) one by one.
 * Returns 1 when the reply is complete (last line "NNN " or "NNN"),
 * 0 when more lines are needed, -1 on a malformed line (then r->code = 0).
 */
int smtp_reply_feed(struct smtp_reply *r, const char *line, size_t len, bool first);
/* Set a synthetic reply ("451 4.4.2 connection lost"). */
void smtp_reply_set(struct smtp_reply *r, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* "250 2.0.0 text" into buf. */
void smtp_reply_fmt(const struct smtp_reply *r, char *buf, size_t len);
/* Class: 2, 3, 4, 5 from the basic code (RFC 5321 is authoritative when the
 * enhanced code disagrees); from the enhanced code when there is no basic
 * code; 4 when there is neither. */
int smtp_reply_class(const struct smtp_reply *r);

/* EHLO keywords parsed from a 250 multi-line reply (client side). */
#define EXT_PIPELINING  0x001
#define EXT_SIZE        0x002
#define EXT_8BITMIME    0x004
#define EXT_SMTPUTF8    0x008
#define EXT_STARTTLS    0x010
#define EXT_ENHANCED    0x020
#define EXT_CHUNKING    0x040
#define EXT_AUTH_PLAIN  0x080
#define EXT_AUTH_LOGIN  0x100
#define EXT_DSN         0x200
struct smtp_ehlo {
	uint32_t ext;
	uint64_t size;                 /* SIZE limit, 0 = none given */
};
void smtp_ehlo_line(struct smtp_ehlo *e, const char *line); /* one keyword line (after "250-"/"250 ") */

#endif
