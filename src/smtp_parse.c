/*
 * smtp_parse: the SMTP grammar, with no I/O, shared by the server (commands,
 * mailboxes, xtext) and the client (replies, EHLO keywords).
 *
 * The command parser is strict where sloppiness costs us (addresses end up
 * in spool files, logs and other MTAs' envelopes: RFC 5321 4.1.2 mailbox
 * syntax, RFC 6531 UTF-8 only as well-formed UTF-8, no control characters)
 * and tolerant where real clients deviate harmlessly (verb case, a space
 * after "FROM:", trailing blanks). Every error is a complete reply with an
 * enhanced status code, so the server can send it as is.
 *
 * The reply reader trusts the basic code over the enhanced one (RFC 5321
 * is the authority; RFC 3463 codes are advisory) and never overflows: long
 * multi-line replies are truncated in r->text.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "smtp_parse.h"
#include "spool.h"
#include "util.h"

#define MAX_LOCAL   64              /* RFC 5321 4.5.3.1.1 */
#define MAX_ADDR    254             /* RFC 5321 path 256 minus the brackets */
#define MAX_LABEL   63
#define MAX_ENVID   100             /* RFC 3461 4.4 */
#define MAX_ORCPT   500             /* RFC 3461 4.2 */

enum argpol { ARG_NONE, ARG_OPT, ARG_REQ, ARG_SPECIAL };

static const struct {
	const char *name;
	enum smtp_verb verb;
	enum argpol arg;
	const char *syntax;             /* reply for a bad argument */
} verbs[] = {
	{ "HELO", CMD_HELO, ARG_REQ, "501 5.5.4 Syntax: HELO hostname" },
	{ "EHLO", CMD_EHLO, ARG_REQ, "501 5.5.4 Syntax: EHLO hostname" },
	{ "MAIL", CMD_MAIL, ARG_SPECIAL, "501 5.5.4 Syntax: MAIL FROM:<address>" },
	{ "RCPT", CMD_RCPT, ARG_SPECIAL, "501 5.5.4 Syntax: RCPT TO:<address>" },
	{ "DATA", CMD_DATA, ARG_NONE, "501 5.5.4 Syntax: DATA" },
	{ "BDAT", CMD_BDAT, ARG_SPECIAL, "501 5.5.4 Syntax: BDAT size [LAST]" },
	{ "RSET", CMD_RSET, ARG_NONE, "501 5.5.4 Syntax: RSET" },
	{ "NOOP", CMD_NOOP, ARG_OPT, "501 5.5.4 Syntax: NOOP" },
	{ "QUIT", CMD_QUIT, ARG_NONE, "501 5.5.4 Syntax: QUIT" },
	{ "VRFY", CMD_VRFY, ARG_REQ, "501 5.5.4 Syntax: VRFY address" },
	{ "EXPN", CMD_EXPN, ARG_REQ, "501 5.5.4 Syntax: EXPN list" },
	{ "HELP", CMD_HELP, ARG_OPT, "501 5.5.4 Syntax: HELP [topic]" },
	{ "STARTTLS", CMD_STARTTLS, ARG_NONE, "501 5.5.4 Syntax: STARTTLS" },
	{ "AUTH", CMD_AUTH, ARG_SPECIAL, "501 5.5.4 Syntax: AUTH mechanism [initial-response]" },
};

const char *
smtp_verb_name(enum smtp_verb v)
{
	for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
		if (verbs[i].verb == v)
			return verbs[i].name;
	return "UNKNOWN";
}

const char *
smtp_cmd_param(const struct smtp_cmd *cmd, const char *key)
{
	for (int i = 0; i < cmd->nparams; i++)
		if (strcasecmp(cmd->params[i].key, key) == 0)
			return cmd->params[i].value ? cmd->params[i].value : "";
	return NULL;
}

static bool
is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool
is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

static char
up(char c)
{
	return (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
}

bool
smtp_utf8_valid(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		uint32_t cp;
		int n;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1; cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2; cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3; cp = c & 0x07;
		} else
			return false;   /* continuation byte, overlong lead, > U+10FFFF */
		if (len - i <= (size_t)n)
			return false;
		for (int k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += (size_t)n + 1;
	}
	return true;
}

/* atext of RFC 5322 (as used by RFC 5321 Atom). */
static bool
is_atext(unsigned char c)
{
	return is_alpha(c) || is_digit(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* Address literal body (between the brackets): IPv4 or "IPv6:" + IPv6.
 * General address literals (tag:content) are refused: nothing can route them. */
static bool
valid_addr_literal(const char *s, size_t len)
{
	char buf[64];
	unsigned char tmp[16];

	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (strncasecmp(buf, "IPv6:", 5) == 0)
		return inet_pton(AF_INET6, buf + 5, tmp) == 1;
	return inet_pton(AF_INET, buf, tmp) == 1;
}

/* Domain or address literal; U-labels (UTF-8) when allow_utf8. */
static bool
valid_domain(const char *d, size_t len, bool allow_utf8)
{
	size_t lab = 0;

	if (len == 0 || len > 255)
		return false;
	if (d[0] == '[')
		return len >= 2 && d[len - 1] == ']' && valid_addr_literal(d + 1, len - 2);
	for (size_t i = 0; i <= len; i++) {
		unsigned char c = i < len ? (unsigned char)d[i] : '.';

		if (c == '.') {
			/* Let-dig [Ldh-str]: no empty label, no hyphen at either end */
			if (lab == 0 || lab > MAX_LABEL || d[i - lab] == '-' || d[i - 1] == '-')
				return false;
			lab = 0;
			continue;
		}
		if (!(is_alpha(c) || is_digit(c) || c == '-' || (c >= 0x80 && allow_utf8)))
			return false;
		lab++;
	}
	return true;
}

bool
smtp_valid_mailbox(const char *addr, bool allow_utf8, bool *utf8)
{
	size_t len = strlen(addr), i, local_len;
	bool eight = false;

	if (utf8)
		*utf8 = false;
	if (len == 0 || len > MAX_ADDR)
		return false;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)addr[i];
		if (is_ctl(c))
			return false;
		if (c >= 0x80)
			eight = true;
	}
	if (eight && (!allow_utf8 || !smtp_utf8_valid(addr, len)))
		return false;

	if (addr[0] == '"') {
		/* Quoted-string: qtextSMTP / quoted-pairSMTP, then the closing quote */
		for (i = 1; i < len; i++) {
			char c = addr[i];
			if (c == '\\') {
				unsigned char n = (unsigned char)addr[i + 1];
				if (n < 32 || n > 126)
					return false;
				i++;
			} else if (c == '"')
				break;
			/* anything else is qtextSMTP (or UTF-8, checked above) */
		}
		if (i >= len)
			return false;   /* unbalanced quote */
		local_len = i + 1;
		if (local_len == 2)
			return false;   /* "" is not a useful mailbox */
	} else {
		/* Dot-string: atoms separated by single dots */
		bool prev_dot = true;
		for (i = 0; i < len && addr[i] != '@'; i++) {
			unsigned char c = (unsigned char)addr[i];
			if (c == '.') {
				if (prev_dot)
					return false;
				prev_dot = true;
			} else if (is_atext(c) || c >= 0x80)
				prev_dot = false;
			else
				return false;
		}
		if (i == 0 || prev_dot)
			return false;
		local_len = i;
	}
	if (local_len > MAX_LOCAL || local_len >= len || addr[local_len] != '@')
		return false;
	if (!valid_domain(addr + local_len + 1, len - local_len - 1, allow_utf8))
		return false;
	if (utf8)
		*utf8 = eight;
	return true;
}

const char *
smtp_addr_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at ? at + 1 : NULL;
}

/* xtext (RFC 3461 4): "+" HEX HEX or printable ASCII except '+' and '='. */
int
xtext_decode(char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *o = s;

	for (char *p = s; *p; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '+') {
			const char *h1, *h2;
			if (!p[1] || !p[2] || !(h1 = strchr(hex, up(p[1]))) ||
			    !(h2 = strchr(hex, up(p[2]))))
				return -1;
			c = (unsigned char)(((h1 - hex) << 4) | (h2 - hex));
			if (c == 0)
				return -1;  /* would truncate the string */
			p += 2;
		} else if (c < 33 || c > 126 || c == '=')
			return -1;
		*o++ = (char)c;
	}
	*o = '\0';
	return 0;
}

char *
xtext_encode(const char *s)
{
	size_t n = strlen(s);
	char *out = xmalloc(n * 3 + 1), *o = out;

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 33 || c > 126 || c == '+' || c == '=')
			o += sprintf(o, "+%02X", c);
		else
			*o++ = (char)c;
	}
	*o = '\0';
	return out;
}

int
smtp_notify_bits(const char *value)
{
	int bits = 0;
	const char *p = value;

	if (!value || !*value)
		return -1;
	while (*p) {
		size_t n = strcspn(p, ",");
		int b;

		if (n == 5 && strncasecmp(p, "NEVER", 5) == 0)
			b = NOTIFY_NEVER;
		else if (n == 7 && strncasecmp(p, "SUCCESS", 7) == 0)
			b = NOTIFY_SUCCESS;
		else if (n == 7 && strncasecmp(p, "FAILURE", 7) == 0)
			b = NOTIFY_FAILURE;
		else if (n == 5 && strncasecmp(p, "DELAY", 5) == 0)
			b = NOTIFY_DELAY;
		else
			return -1;
		if (bits & b)
			return -1;
		bits |= b;
		p += n;
		if (*p == ',' && !*++p)
			return -1;      /* trailing comma */
	}
	/* NEVER excludes the others (RFC 3461 4.1) */
	if ((bits & NOTIFY_NEVER) && bits != NOTIFY_NEVER)
		return -1;
	return bits;
}

static bool
all_digits(const char *s, size_t maxlen)
{
	size_t n = strlen(s);

	if (n == 0 || n > maxlen)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_digit((unsigned char)s[i]))
			return false;
	return true;
}

/* A decimal that fits in uint64_t. */
static bool
parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (!all_digits(s, 20))
		return false;
	for (; *s; s++) {
		uint64_t d = (uint64_t)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* A copy of an xtext value decodes cleanly and is at most max bytes. */
static bool
xtext_ok(const char *v, size_t max)
{
	char buf[MAX_ORCPT * 3 + 1];
	size_t n = strlen(v);

	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, v, n + 1);
	return xtext_decode(buf) == 0 && strlen(buf) <= max;
}

static const char *
check_mail_param(const char *k, const char *v)
{
	uint64_t n;

	if (strcmp(k, "SIZE") == 0)
		return v && parse_u64(v, &n) ? NULL : "501 5.5.4 Syntax: SIZE=number";
	if (strcmp(k, "BODY") == 0) {
		if (v && (strcasecmp(v, "7BIT") == 0 || strcasecmp(v, "8BITMIME") == 0 ||
		    strcasecmp(v, "BINARYMIME") == 0))
			return NULL;
		return "501 5.5.4 Syntax: BODY=7BIT|8BITMIME";
	}
	if (strcmp(k, "SMTPUTF8") == 0)
		return v ? "501 5.5.4 Syntax: SMTPUTF8 takes no value" : NULL;
	if (strcmp(k, "RET") == 0) {
		if (v && (strcasecmp(v, "FULL") == 0 || strcasecmp(v, "HDRS") == 0))
			return NULL;
		return "501 5.5.4 Syntax: RET=FULL|HDRS";
	}
	if (strcmp(k, "ENVID") == 0)
		return v && xtext_ok(v, MAX_ENVID) ? NULL : "501 5.5.4 Syntax: ENVID=xtext";
	if (strcmp(k, "AUTH") == 0)     /* RFC 4954 5: accepted and ignored */
		return v && (strcmp(v, "<>") == 0 || xtext_ok(v, MAX_ADDR)) ? NULL :
		    "501 5.5.4 Syntax: AUTH=xtext";
	return "555 5.5.4 Unsupported parameter";
}

static const char *
check_rcpt_param(const char *k, const char *v)
{
	if (strcmp(k, "NOTIFY") == 0)
		return v && smtp_notify_bits(v) > 0 ? NULL :
		    "501 5.5.4 Syntax: NOTIFY=NEVER or SUCCESS,FAILURE,DELAY";
	if (strcmp(k, "ORCPT") == 0) {
		/* addr-type ";" xtext; addr-type is an atom (rfc822, utf-8) */
		const char *semi = v ? strchr(v, ';') : NULL;
		if (!semi || semi == v)
			return "501 5.5.4 Syntax: ORCPT=addr-type;xtext";
		for (const char *p = v; p < semi; p++)
			if (!is_alpha((unsigned char)*p) && !is_digit((unsigned char)*p) && *p != '-')
				return "501 5.5.4 Syntax: ORCPT=addr-type;xtext";
		if (!xtext_ok(semi + 1, MAX_ORCPT))
			return "501 5.5.4 Syntax: ORCPT=addr-type;xtext";
		return NULL;
	}
	return "555 5.5.4 Unsupported parameter";
}

/* esmtp-keyword: (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
static bool
valid_keyword(const char *k)
{
	if (!is_alpha((unsigned char)*k) && !is_digit((unsigned char)*k))
		return false;
	for (; *k; k++)
		if (!is_alpha((unsigned char)*k) && !is_digit((unsigned char)*k) && *k != '-')
			return false;
	return true;
}

/* esmtp-value: %d33-60 / %d62-126, plus UTF-8 (RFC 6531 3.3) */
static bool
valid_value(const char *v)
{
	if (!*v)
		return false;
	for (; *v; v++) {
		unsigned char c = (unsigned char)*v;
		if (c == '=' || (c < 33) || c == 127)
			return false;
	}
	return true;
}

/* MAIL FROM:<path> params / RCPT TO:<path> params */
static int
parse_path_cmd(char *arg, struct smtp_cmd *cmd, const char **err, const char *syntax)
{
	const char *prefix = cmd->verb == CMD_MAIL ? "FROM:" : "TO:";
	size_t plen = strlen(prefix);
	char *p, *path, *end;
	bool inq = false;

	if (!str_iprefix(arg, prefix)) {
		*err = syntax;
		return -1;
	}
	p = arg + plen;
	while (*p == ' ')
		p++;                    /* "MAIL FROM: <x>" is common and harmless */
	if (*p != '<') {
		*err = syntax;
		return -1;
	}
	path = ++p;
	/* find the closing '>' outside a quoted local part */
	for (end = path; *end; end++) {
		if (inq && *end == '\\' && end[1])
			end++;
		else if (*end == '"')
			inq = !inq;
		else if (!inq && *end == '>')
			break;
	}
	if (*end != '>') {
		*err = syntax;
		return -1;
	}
	*end++ = '\0';
	if (*end && *end != ' ') {
		*err = syntax;
		return -1;
	}

	/* A-d-l source route "@a,@b:user@d": accepted and ignored (RFC 5321 4.1.1.3) */
	if (path[0] == '@') {
		char *colon = strchr(path, ':');
		if (!colon) {
			*err = syntax;
			return -1;
		}
		path = colon + 1;
	}
	cmd->path = path;
	if (*path == '\0') {
		if (cmd->verb == CMD_RCPT) {
			*err = "501 5.1.3 Bad recipient address syntax";
			return -1;
		}
	} else if (cmd->verb == CMD_RCPT && strcasecmp(path, "postmaster") == 0) {
		/* RFC 5321 4.5.1: <Postmaster> without a domain must be accepted */
	} else if (!smtp_valid_mailbox(path, true, &cmd->path_utf8)) {
		*err = cmd->verb == CMD_MAIL ? "501 5.1.7 Bad sender address syntax" :
		    "501 5.1.3 Bad recipient address syntax";
		return -1;
	}

	/* parameters */
	p = end;
	while (*p) {
		char *key, *val;

		while (*p == ' ')
			p++;
		if (!*p)
			break;
		key = p;
		while (*p && *p != ' ')
			p++;
		if (*p)
			*p++ = '\0';
		val = strchr(key, '=');
		if (val)
			*val++ = '\0';
		if (!valid_keyword(key) || (val && !valid_value(val))) {
			*err = "501 5.5.4 Syntax error in parameters";
			return -1;
		}
		for (char *k = key; *k; k++)
			*k = up(*k);
		if (smtp_cmd_param(cmd, key)) {
			*err = "501 5.5.4 Duplicate parameter";
			return -1;
		}
		if (cmd->nparams == SMTP_MAX_PARAMS) {
			*err = "501 5.5.4 Too many parameters";
			return -1;
		}
		if ((*err = cmd->verb == CMD_MAIL ? check_mail_param(key, val) :
		    check_rcpt_param(key, val)) != NULL)
			return -1;
		cmd->params[cmd->nparams].key = key;
		cmd->params[cmd->nparams].value = val;
		cmd->nparams++;
	}
	return 0;
}

static int
parse_bdat(char *arg, struct smtp_cmd *cmd, const char **err, const char *syntax)
{
	char *sp = strchr(arg, ' ');

	if (sp) {
		*sp++ = '\0';
		while (*sp == ' ')
			sp++;
		if (strcasecmp(sp, "LAST") != 0) {
			*err = syntax;
			return -1;
		}
		cmd->bdat_last = true;
	}
	if (!parse_u64(arg, &cmd->bdat_size)) {
		*err = syntax;
		return -1;
	}
	return 0;
}

static int
parse_auth(char *arg, struct smtp_cmd *cmd, const char **err, const char *syntax)
{
	char *sp = strchr(arg, ' ');
	size_t n;

	if (sp) {
		*sp++ = '\0';
		while (*sp == ' ')
			sp++;
		/* base64 or "=" (an empty initial response), one word */
		if (strcmp(sp, "=") != 0) {
			size_t len = strlen(sp), pad = 0;
			for (size_t i = 0; i < len; i++) {
				unsigned char c = (unsigned char)sp[i];
				if (c == '=')
					pad++;
				else if (pad || !(is_alpha(c) || is_digit(c) || c == '+' || c == '/')) {
					*err = "501 5.5.2 Invalid base64 data";
					return -1;
				}
			}
			if (len == 0 || len % 4 || pad > 2) {
				*err = "501 5.5.2 Invalid base64 data";
				return -1;
			}
		}
		cmd->auth_initial = sp;
	}
	n = strlen(arg);
	if (n == 0 || n > 20) {
		*err = syntax;
		return -1;
	}
	for (char *p = arg; *p; p++) {
		if (!is_alpha((unsigned char)*p) && !is_digit((unsigned char)*p) &&
		    *p != '-' && *p != '_') {
			*err = syntax;
			return -1;
		}
		*p = up(*p);
	}
	cmd->auth_mech = arg;
	return 0;
}

int
smtp_parse_cmd(char *buf, struct smtp_cmd *cmd, const char **err)
{
	char *p = buf, *verb, *arg, *e;
	size_t vi;

	memset(cmd, 0, sizeof(*cmd));
	cmd->verb = CMD_UNKNOWN;
	cmd->arg = (char *)"";
	*err = NULL;

	for (unsigned char *q = (unsigned char *)buf; *q; q++)
		if (is_ctl(*q)) {
			*err = "500 5.5.2 Syntax error: control character in command";
			return -1;
		}
	while (*p == ' ')
		p++;
	e = p + strlen(p);
	while (e > p && e[-1] == ' ')
		*--e = '\0';
	verb = p;
	while (*p && *p != ' ')
		p++;
	if (*p)
		*p++ = '\0';
	while (*p == ' ')
		p++;
	arg = p;

	for (vi = 0; vi < ARRAY_SIZE(verbs); vi++)
		if (strcasecmp(verb, verbs[vi].name) == 0)
			break;
	if (vi == ARRAY_SIZE(verbs)) {
		*err = *verb ? "500 5.5.1 Command unrecognized" : "500 5.5.2 Empty command";
		return -1;
	}
	cmd->verb = verbs[vi].verb;
	cmd->arg = arg;

	switch (verbs[vi].arg) {
	case ARG_NONE:
		if (*arg) {
			*err = verbs[vi].syntax;
			return -1;
		}
		return 0;
	case ARG_OPT:
		return 0;
	case ARG_REQ:
		if (!*arg) {
			*err = verbs[vi].syntax;
			return -1;
		}
		if (cmd->verb == CMD_HELO || cmd->verb == CMD_EHLO) {
			/* the name goes into Received:; keep it printable ASCII */
			for (char *q = arg; *q; q++)
				if ((unsigned char)*q >= 0x80) {
					*err = "501 5.5.4 Invalid hostname";
					return -1;
				}
		}
		return 0;
	case ARG_SPECIAL:
		break;
	}
	if (!*arg) {
		*err = verbs[vi].syntax;
		return -1;
	}
	switch (cmd->verb) {
	case CMD_MAIL:
	case CMD_RCPT:
		return parse_path_cmd(arg, cmd, err, verbs[vi].syntax);
	case CMD_BDAT:
		return parse_bdat(arg, cmd, err, verbs[vi].syntax);
	case CMD_AUTH:
		return parse_auth(arg, cmd, err, verbs[vi].syntax);
	default:
		break;
	}
	return 0;
}

/* ---- replies ---- */

/* "C.S.D" with C in 2/4/5, S and D 1-3 digits, followed by SP or the end.
 * Returns its length or 0. */
static size_t
enh_code_len(const char *s, size_t len)
{
	size_t i = 0, n;

	if (len < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return 0;
	i = 2;
	for (int part = 0; part < 2; part++) {
		for (n = 0; i < len && is_digit((unsigned char)s[i]) && n < 4; i++, n++)
			;
		if (n == 0 || n > 3)
			return 0;
		if (part == 0) {
			if (i >= len || s[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < len && s[i] != ' ')
		return 0;
	return i;
}

static void
text_append(struct smtp_reply *r, const char *s, size_t n)
{
	size_t have = strlen(r->text), room;

	if (n == 0)
		return;
	if (have > 0) {
		if (have + 3 >= sizeof(r->text))
			return;
		memcpy(r->text + have, " / ", 3);
		have += 3;
	}
	room = sizeof(r->text) - 1 - have;
	if (n > room)
		n = room;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		/* the text lands in logs and JSON events: no control characters */
		r->text[have + i] = is_ctl(c) ? ' ' : (char)c;
	}
	r->text[have + n] = '\0';
}

int
smtp_reply_feed(struct smtp_reply *r, const char *line, size_t len, bool first)
{
	int code;
	bool last;
	const char *t;
	size_t tl, el;

	if (first)
		memset(r, 0, sizeof(*r));
	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
		len--;
	if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' ||
	    !is_digit((unsigned char)line[2]))
		goto bad;
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (!first && code != r->code)
		goto bad;
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		goto bad;
	last = len == 3 || line[3] == ' ';
	t = len > 4 ? line + 4 : "";
	tl = len > 4 ? len - 4 : 0;
	if ((el = enh_code_len(t, tl)) > 0) {
		if (!r->enh[0]) {
			memcpy(r->enh, t, el);
			r->enh[el] = '\0';
		}
		t += el;
		tl -= el;
		while (tl > 0 && *t == ' ')
			t++, tl--;
	}
	text_append(r, t, tl);
	r->code = code;
	return last ? 1 : 0;
bad:
	r->code = 0;
	return -1;
}

void
smtp_reply_set(struct smtp_reply *r, int code, const char *enh, const char *fmt, ...)
{
	va_list ap;

	r->code = code;
	snprintf(r->enh, sizeof(r->enh), "%s", enh ? enh : "");
	va_start(ap, fmt);
	vsnprintf(r->text, sizeof(r->text), fmt, ap);
	va_end(ap);
}

void
smtp_reply_fmt(const struct smtp_reply *r, char *buf, size_t len)
{
	if (r->enh[0])
		snprintf(buf, len, "%03d %s %s", r->code, r->enh, r->text);
	else
		snprintf(buf, len, "%03d %s", r->code, r->text);
}

int
smtp_reply_class(const struct smtp_reply *r)
{
	if (r->code >= 200 && r->code < 600)
		return r->code / 100;
	if (r->enh[0] >= '2' && r->enh[0] <= '5')
		return r->enh[0] - '0';
	return 4;
}

/* ---- EHLO keywords ---- */

void
smtp_ehlo_line(struct smtp_ehlo *e, const char *line)
{
	static const struct { const char *kw; uint32_t bit; } kws[] = {
		{ "PIPELINING", EXT_PIPELINING }, { "8BITMIME", EXT_8BITMIME },
		{ "SMTPUTF8", EXT_SMTPUTF8 }, { "STARTTLS", EXT_STARTTLS },
		{ "ENHANCEDSTATUSCODES", EXT_ENHANCED }, { "CHUNKING", EXT_CHUNKING },
		{ "DSN", EXT_DSN },
	};
	char kw[32];
	size_t n = 0;
	const char *p = line;

	while (*p == ' ')
		p++;
	while (p[n] && p[n] != ' ' && p[n] != '=' && n < sizeof(kw) - 1) {
		kw[n] = up(p[n]);
		n++;
	}
	kw[n] = '\0';
	if (p[n] && p[n] != ' ' && p[n] != '=')
		return;                 /* longer than any keyword we know */
	p += n;

	for (size_t i = 0; i < ARRAY_SIZE(kws); i++)
		if (strcmp(kw, kws[i].kw) == 0 && *p != '=') {
			e->ext |= kws[i].bit;
			return;
		}
	if (strcmp(kw, "SIZE") == 0 && *p != '=') {
		uint64_t v;
		char num[24];
		size_t k = 0;

		e->ext |= EXT_SIZE;
		e->size = 0;
		while (*p == ' ')
			p++;
		while (p[k] && p[k] != ' ' && k < sizeof(num) - 1) {
			num[k] = p[k];
			k++;
		}
		num[k] = '\0';
		if (k > 0 && parse_u64(num, &v))
			e->size = v;
		return;
	}
	if (strcmp(kw, "AUTH") == 0) {
		/* "AUTH PLAIN LOGIN" or the pre-standard "AUTH=PLAIN LOGIN" */
		while (*p) {
			size_t m;

			while (*p == ' ' || *p == '=')
				p++;
			m = strcspn(p, " ");
			if (m == 5 && strncasecmp(p, "PLAIN", 5) == 0)
				e->ext |= EXT_AUTH_PLAIN;
			else if (m == 5 && strncasecmp(p, "LOGIN", 5) == 0)
				e->ext |= EXT_AUTH_LOGIN;
			p += m;
		}
	}
}
