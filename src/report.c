/*
 * report: the parser of bounces, complaints and auto-replies (report.h).
 *
 * Everything here works on a read-only view of the message and copies out
 * what it keeps, so a damaged message can cost a wrong answer but never a
 * crash: every scan is bounded by the end of its part, headers by
 * MAX_HEADERS, the walk by REPORT_MAX_PARTS and REPORT_MAX_DEPTH.
 */
#include "config.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "report.h"
#include "util.h"

#define MAX_HEADERS   300
#define MAX_TEXT      (256 * 1024)   /* text looked at by the heuristics */
#define MAX_DIAG      500
#define VERP_LIKE_PREFIX "bounce+"     /* our own Return-Path, never the recipient */

/* ---- small string helpers ---- */

static void
set_once(char **dst, const char *v)
{
	if (*dst == NULL && v != NULL && *v != '\0')
		*dst = xstrdup(v);
}

/* Case-insensitive search for needle in [h, h + n). */
static const char *
find_ci(const char *h, size_t n, const char *needle)
{
	size_t nl = strlen(needle);

	if (nl == 0 || nl > n)
		return NULL;
	for (size_t i = 0; i + nl <= n; i++)
		if (tolower((unsigned char)h[i]) == tolower((unsigned char)needle[0]) &&
		    strncasecmp(h + i, needle, nl) == 0)
			return h + i;
	return NULL;
}

/* The next line of [*p, end): its start and length without CR/LF. */
static bool
next_line(const char **p, const char *end, const char **line, size_t *len)
{
	const char *s = *p, *nl;

	if (s >= end)
		return false;
	nl = memchr(s, '\n', (size_t)(end - s));
	*line = s;
	*len = nl ? (size_t)(nl - s) : (size_t)(end - s);
	*p = nl ? nl + 1 : end;
	if (*len > 0 && s[*len - 1] == '\r')
		(*len)--;
	return true;
}

char *
report_addr(const char *s)
{
	const char *lt, *gt, *b, *e;

	if (s == NULL)
		return NULL;
	if ((lt = strrchr(s, '<')) != NULL && (gt = strchr(lt, '>')) != NULL) {
		b = lt + 1;
		e = gt;
	} else {
		b = s;
		e = s + strlen(s);
	}
	while (b < e && (isspace((unsigned char)*b) || *b == '"'))
		b++;
	while (e > b && (isspace((unsigned char)e[-1]) || e[-1] == '"' || e[-1] == ','))
		e--;
	if (b == e || memchr(b, '@', (size_t)(e - b)) == NULL)
		return NULL;
	/* a bare address is one word */
	for (const char *q = b; q < e; q++)
		if (isspace((unsigned char)*q))
			return NULL;
	return xstrndup(b, (size_t)(e - b));
}

/* ---- header blocks ---- */

struct hdr {
	char *name, *value;
};
struct hdrs {
	struct hdr h[MAX_HEADERS];
	int n;
};

/*
 * Parse a header block at the start of [p, end); unfolds continuation
 * lines. Returns where the body starts (after the blank line). A line that
 * is neither a field nor a continuation ends the block (*broken set).
 */
static const char *
parse_headers(const char *p, const char *end, struct hdrs *hs, bool *broken)
{
	const char *line;
	size_t len;
	struct sbuf cur = { 0 };
	const char *prev = p;

	hs->n = 0;
	while (prev = p, next_line(&p, end, &line, &len)) {
		if (len == 0)
			break;
		if ((line[0] == ' ' || line[0] == '\t') && cur.len > 0) {
			sb_add(&cur, " ", 1);
			size_t k = 0;
			while (k < len && (line[k] == ' ' || line[k] == '\t'))
				k++;
			sb_add(&cur, line + k, len - k);
			continue;
		}
		const char *colon = memchr(line, ':', len);
		bool field = colon != NULL && colon > line;
		for (const char *q = line; field && q < colon; q++)
			if ((unsigned char)*q <= 32 || (unsigned char)*q >= 127)
				field = false;
		if (!field) {
			if (broken)
				*broken = true;
			p = prev;               /* the body starts on this line */
			break;
		}
		if (cur.len > 0 && hs->n < MAX_HEADERS) {
			char *c = strchr(cur.p, ':');
			hs->h[hs->n].name = xstrndup(cur.p, (size_t)(c - cur.p));
			hs->h[hs->n].value = xstrndup_trim(c + 1, strlen(c + 1));
			hs->n++;
		}
		cur.len = 0;
		sb_add(&cur, line, len);
	}
	if (cur.len > 0 && hs->n < MAX_HEADERS) {
		char *c = strchr(cur.p, ':');
		hs->h[hs->n].name = xstrndup(cur.p, (size_t)(c - cur.p));
		hs->h[hs->n].value = xstrndup_trim(c + 1, strlen(c + 1));
		hs->n++;
	}
	free(cur.p);
	return p;
}

static void
hdrs_free(struct hdrs *hs)
{
	for (int i = 0; i < hs->n; i++) {
		free(hs->h[i].name);
		free(hs->h[i].value);
	}
	hs->n = 0;
}

static const char *
hdr_get(const struct hdrs *hs, const char *name)
{
	for (int i = 0; i < hs->n; i++)
		if (strcasecmp(hs->h[i].name, name) == 0)
			return hs->h[i].value;
	return NULL;
}

/* ---- Content-Type ---- */

struct ctype {
	char type[128];                /* lower case "multipart/report" */
	char boundary[256];
	char report_type[64];          /* lower case */
};

static void
parse_ctype(const char *v, struct ctype *ct, const char *dflt)
{
	const char *p;
	size_t n = 0;

	memset(ct, 0, sizeof(*ct));
	if (v == NULL || *v == '\0')
		v = dflt;
	for (p = v; *p && *p != ';' && !isspace((unsigned char)*p) && n + 1 < sizeof(ct->type); p++)
		ct->type[n++] = (char)tolower((unsigned char)*p);
	ct->type[n] = '\0';
	if (strchr(ct->type, '/') == NULL)
		snprintf(ct->type, sizeof(ct->type), "%s", dflt);
	while (*p) {
		char name[64], val[256];
		size_t nn = 0, vn = 0;

		while (*p && *p != ';')
			p++;
		if (*p == ';')
			p++;
		while (isspace((unsigned char)*p))
			p++;
		while (*p && *p != '=' && *p != ';' && !isspace((unsigned char)*p)) {
			if (nn + 1 < sizeof(name))
				name[nn++] = (char)tolower((unsigned char)*p);
			p++;
		}
		name[nn] = '\0';
		while (isspace((unsigned char)*p))
			p++;
		if (*p != '=')
			continue;
		p++;
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '"') {
			p++;
			while (*p && *p != '"') {
				if (*p == '\\' && p[1])
					p++;
				if (vn + 1 < sizeof(val))
					val[vn++] = *p;
				p++;
			}
			if (*p == '"')
				p++;
		} else {
			while (*p && *p != ';' && !isspace((unsigned char)*p)) {
				if (vn + 1 < sizeof(val))
					val[vn++] = *p;
				p++;
			}
		}
		val[vn] = '\0';
		if (strcmp(name, "boundary") == 0 && ct->boundary[0] == '\0')
			snprintf(ct->boundary, sizeof(ct->boundary), "%s", val);
		else if (strcmp(name, "report-type") == 0 && ct->report_type[0] == '\0') {
			size_t k = MIN(vn, sizeof(ct->report_type) - 1);
			memcpy(ct->report_type, val, k);
			ct->report_type[k] = '\0';
			str_lower(ct->report_type);
		}
	}
}

/* ---- transfer decodings ---- */

static int
b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

/* Lenient: characters outside the alphabet are skipped, '=' ends it. */
static char *
decode_base64(const char *s, size_t n, size_t *outlen)
{
	char *out = xmalloc(n / 4 * 3 + 4);
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '=')
			break;
		int v = b64_val((unsigned char)s[i]);
		if (v < 0)
			continue;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	out[o] = '\0';
	*outlen = o;
	return out;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	return -1;
}

static char *
decode_qp(const char *s, size_t n, size_t *outlen)
{
	char *out = xmalloc(n + 1);
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] != '=') {
			out[o++] = s[i];
			continue;
		}
		if (i + 1 < n && s[i + 1] == '\n') {          /* soft break */
			i++;
			continue;
		}
		if (i + 2 < n && s[i + 1] == '\r' && s[i + 2] == '\n') {
			i += 2;
			continue;
		}
		if (i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
			out[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			i += 2;
			continue;
		}
		out[o++] = '=';                               /* broken: kept */
	}
	out[o] = '\0';
	*outlen = o;
	return out;
}

/* The part's content decoded (malloc'd, NUL-terminated). */
static char *
decode_part(const struct hdrs *hs, const char *body, size_t n, size_t *outlen)
{
	const char *cte = hdr_get(hs, "Content-Transfer-Encoding");

	if (cte && strncasecmp(cte, "base64", 6) == 0)
		return decode_base64(body, n, outlen);
	if (cte && strncasecmp(cte, "quoted-printable", 16) == 0)
		return decode_qp(body, n, outlen);
	char *copy = xmalloc(n + 1);           /* not xstrndup: a NUL may be inside */
	memcpy(copy, body, n);
	copy[n] = '\0';
	*outlen = n;
	return copy;
}

/* ---- RFC 3464 delivery-status ---- */

/* "rfc822; a@b" -> "a@b"; "smtp; 550 ..." -> "550 ..." */
static char *
typed_value(const char *v)
{
	const char *semi = strchr(v, ';');
	const char *s = semi ? semi + 1 : v;
	char *a;

	while (isspace((unsigned char)*s))
		s++;
	a = xstrndup_trim(s, strlen(s));
	if (a[0] == '<' && a[strlen(a) - 1] == '>') {
		char *b = xstrndup(a + 1, strlen(a) - 2);
		free(a);
		a = b;
	}
	return a;
}

static struct report_rcpt *
new_rcpt(struct report *r)
{
	if (r->nrcpt >= REPORT_MAX_RCPT)
		return NULL;
	r->rcpts = xrealloc(r->rcpts, sizeof(*r->rcpts) * (size_t)(r->nrcpt + 1));
	memset(&r->rcpts[r->nrcpt], 0, sizeof(*r->rcpts));
	return &r->rcpts[r->nrcpt++];
}

static void
rcpt_free(struct report_rcpt *rc)
{
	free(rc->final_rcpt);
	free(rc->orig_rcpt);
	free(rc->action);
	free(rc->status);
	free(rc->diag);
	free(rc->remote_mta);
}

/*
 * The per-message block, then one block per recipient, separated by blank
 * lines. Tolerated: no per-message block, no blank line between
 * recipients (a repeated field starts the next one), indented lines.
 */
static void
parse_dsn(struct report *r, const char *p, const char *end)
{
	struct report_rcpt *cur = NULL;
	int first = r->nrcpt;

	while (p < end) {
		struct hdrs *hs = xcalloc(1, sizeof(*hs));
		const char *before = p;

		/* skip blank lines between blocks */
		const char *line;
		size_t len;
		const char *q = p;
		while (next_line(&q, end, &line, &len) && len == 0)
			p = q;
		if (p >= end) {
			free(hs);
			break;
		}
		p = parse_headers(p, end, hs, NULL);
		cur = NULL;                 /* a blank line closes a recipient */
		for (int i = 0; i < hs->n; i++) {
			const char *n = hs->h[i].name, *v = hs->h[i].value;
			char **slot = NULL;

			if (strcasecmp(n, "Reporting-MTA") == 0) {
				if (r->reporting_mta == NULL)
					r->reporting_mta = typed_value(v);
				continue;
			}
			if (cur == NULL && (strcasecmp(n, "Final-Recipient") == 0 ||
			    strcasecmp(n, "Original-Recipient") == 0 || strcasecmp(n, "Action") == 0 ||
			    strcasecmp(n, "Status") == 0))
				cur = new_rcpt(r);
			if (cur == NULL)
				continue;
			if (strcasecmp(n, "Final-Recipient") == 0)
				slot = &cur->final_rcpt;
			else if (strcasecmp(n, "Original-Recipient") == 0)
				slot = &cur->orig_rcpt;
			else if (strcasecmp(n, "Action") == 0)
				slot = &cur->action;
			else if (strcasecmp(n, "Status") == 0)
				slot = &cur->status;
			else if (strcasecmp(n, "Diagnostic-Code") == 0)
				slot = &cur->diag;
			else if (strcasecmp(n, "Remote-MTA") == 0)
				slot = &cur->remote_mta;
			else
				continue;
			if (*slot != NULL) {
				/* the same field again: the next recipient began
				 * without a blank line (new_rcpt may move the array) */
				size_t off = (size_t)((char *)slot - (char *)cur);
				if ((cur = new_rcpt(r)) == NULL)
					break;
				slot = (char **)((char *)cur + off);
			}
			if (slot == &cur->action || slot == &cur->status) {
				size_t k = 0;
				while (v[k] && !isspace((unsigned char)v[k]) && v[k] != '(' && v[k] != ';')
					k++;
				*slot = str_lower(xstrndup(v, k));
			} else
				*slot = typed_value(v);
		}
		hdrs_free(hs);
		free(hs);
		if (p == before)            /* not a field: skip the line */
			next_line(&p, end, &line, &len);
	}
	/* drop blocks that name nobody */
	int w = first;
	for (int i = first; i < r->nrcpt; i++) {
		struct report_rcpt *rc = &r->rcpts[i];
		if (rc->final_rcpt == NULL && rc->orig_rcpt == NULL) {
			rcpt_free(rc);
			continue;
		}
		r->rcpts[w++] = *rc;
	}
	r->nrcpt = w;
}

/* ---- RFC 5965 feedback-report ---- */

static void
parse_arf(struct report *r, const char *p, const char *end)
{
	struct hdrs *hs = xcalloc(1, sizeof(*hs));

	parse_headers(p, end, hs, NULL);
	for (int i = 0; i < hs->n; i++) {
		const char *n = hs->h[i].name, *v = hs->h[i].value;
		if (strcasecmp(n, "Feedback-Type") == 0 && r->feedback_type == NULL) {
			size_t k = 0;
			while (v[k] && !isspace((unsigned char)v[k]) && v[k] != ';')
				k++;
			r->feedback_type = str_lower(xstrndup(v, k));
		} else if (strcasecmp(n, "User-Agent") == 0)
			set_once(&r->user_agent, v);
		else if (strcasecmp(n, "Original-Mail-From") == 0) {
			if (r->original_mail_from == NULL)
				r->original_mail_from = typed_value(v);
		} else if (strcasecmp(n, "Original-Rcpt-To") == 0) {
			if (r->norig_rcpt_to < REPORT_MAX_RCPT) {
				r->original_rcpt_to = xrealloc(r->original_rcpt_to,
				    sizeof(char *) * (size_t)(r->norig_rcpt_to + 1));
				r->original_rcpt_to[r->norig_rcpt_to++] = typed_value(v);
			}
		} else if (strcasecmp(n, "Arrival-Date") == 0 || strcasecmp(n, "Received-Date") == 0)
			set_once(&r->arrival_date, v);
		else if (strcasecmp(n, "Source-IP") == 0)
			set_once(&r->source_ip, v);
		else if (strcasecmp(n, "Reported-Domain") == 0)
			set_once(&r->reported_domain, v);
	}
	if (r->feedback_type == NULL)
		r->feedback_type = xstrdup("other");   /* a feedback part without its type */
	hdrs_free(hs);
	free(hs);
}

/* ---- the original message ---- */

static void
take_original(struct report *r, const struct hdrs *hs)
{
	const char *v;

	if ((v = hdr_get(hs, "Return-Path")) != NULL && r->orig_return_path == NULL)
		r->orig_return_path = report_addr(v);
	if ((v = hdr_get(hs, "Message-ID")) != NULL)
		set_once(&r->orig_message_id, v);
	if ((v = hdr_get(hs, "To")) != NULL)
		set_once(&r->orig_to, v);
	if ((v = hdr_get(hs, "From")) != NULL)
		set_once(&r->orig_from, v);
	if ((v = hdr_get(hs, "Subject")) != NULL)
		set_once(&r->orig_subject, v);
}

static void
parse_original(struct report *r, const char *p, const char *end)
{
	struct hdrs *hs = xcalloc(1, sizeof(*hs));

	parse_headers(p, end, hs, NULL);
	take_original(r, hs);
	hdrs_free(hs);
	free(hs);
}

/*
 * Headers of the original quoted in a text (qmail, Exim, Exchange copy the
 * message or its headers below their explanation, sometimes indented or
 * behind "> ").
 */
static void
quoted_original(struct report *r, const char *p, const char *end)
{
	static const char *const names[] = { "Return-Path:", "Message-ID:", "To:", "From:", "Subject:" };
	const char *line;
	size_t len;
	bool seen_rp = r->orig_return_path != NULL, seen_mid = r->orig_message_id != NULL;

	while (next_line(&p, end, &line, &len)) {
		while (len > 0 && (*line == ' ' || *line == '\t' || *line == '>')) {
			line++;
			len--;
		}
		for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
			size_t nl = strlen(names[i]);
			if (len <= nl || strncasecmp(line, names[i], nl) != 0)
				continue;
			char *v = xstrndup_trim(line + nl, len - nl);
			if (i == 0 && !seen_rp) {
				r->orig_return_path = report_addr(v);
				seen_rp = r->orig_return_path != NULL;
			} else if (i == 1 && !seen_mid) {
				set_once(&r->orig_message_id, v);
				seen_mid = true;
			} else if (i == 2 && seen_rp)
				set_once(&r->orig_to, v);       /* only next to a quoted Return-Path */
			else if (i == 3 && seen_rp)
				set_once(&r->orig_from, v);
			else if (i == 4 && seen_rp)
				set_once(&r->orig_subject, v);
			free(v);
		}
	}
}

/* ---- the MIME walk ---- */

struct walk {
	struct report *r;
	int parts;
	char *text;                    /* first text/plain part, decoded */
	size_t textlen;
	char *html;                    /* first text/html part, when no text/plain */
	size_t htmllen;
	struct hdrs *top;              /* the message's own headers */
};

static void walk_entity(struct walk *w, const char *p, const char *end, int depth,
    const char *dflt_type);

/* A delimiter line: "--boundary" or "--boundary--", trailing blanks allowed. */
static int
delimiter(const char *line, size_t len, const char *b, size_t blen)
{
	if (len < blen + 2 || line[0] != '-' || line[1] != '-' || memcmp(line + 2, b, blen) != 0)
		return 0;
	size_t k = blen + 2;
	int kind = 1;
	if (len >= k + 2 && line[k] == '-' && line[k + 1] == '-') {
		kind = 2;
		k += 2;
	}
	for (; k < len; k++)
		if (line[k] != ' ' && line[k] != '\t')
			return 0;
	return kind;
}

static void
walk_multipart(struct walk *w, const char *p, const char *end, const char *boundary,
    int depth, const char *dflt_type)
{
	size_t blen = strlen(boundary);
	const char *start = p, *line, *part = NULL, *prev;
	size_t len;
	bool closed = false, any = false;

	while (prev = p, next_line(&p, end, &line, &len)) {
		int k = delimiter(line, len, boundary, blen);
		if (k == 0)
			continue;
		any = true;
		if (part != NULL) {
			/* the CRLF before a delimiter belongs to the delimiter */
			const char *e = prev;
			if (e > part && e[-1] == '\n')
				e--;
			if (e > part && e[-1] == '\r')
				e--;
			walk_entity(w, part, e, depth + 1, dflt_type);
		}
		if (k == 2) {
			closed = true;
			break;
		}
		part = p;
	}
	if (!any) {
		/* a multipart without its boundary: read it as text */
		w->r->broken = true;
		walk_entity(w, start, end, depth + 1, "text/plain");
		return;
	}
	if (!closed) {
		w->r->broken = true;        /* missing final boundary: the rest is the last part */
		if (part != NULL && part < end)
			walk_entity(w, part, end, depth + 1, dflt_type);
	}
}

static void
walk_entity(struct walk *w, const char *p, const char *end, int depth, const char *dflt_type)
{
	struct report *r = w->r;
	struct hdrs *hs;
	struct ctype ct;
	const char *body;

	if (depth > REPORT_MAX_DEPTH || ++w->parts > REPORT_MAX_PARTS) {
		r->broken = true;
		return;
	}
	hs = xcalloc(1, sizeof(*hs));
	body = parse_headers(p, end, hs, &r->broken);
	parse_ctype(hdr_get(hs, "Content-Type"), &ct, dflt_type);
	if (depth == 0)
		w->top = hs;

	if (strncmp(ct.type, "multipart/", 10) == 0) {
		if (ct.boundary[0] == '\0') {
			r->broken = true;
			parse_ctype(NULL, &ct, "text/plain");
		} else {
			walk_multipart(w, body, end, ct.boundary, depth,
			    strcmp(ct.type, "multipart/digest") == 0 ? "message/rfc822" : "text/plain");
			goto done;
		}
	}
	size_t n;
	char *d = decode_part(hs, body, (size_t)(end - body), &n);
	if (strcmp(ct.type, "message/delivery-status") == 0 ||
	    strcmp(ct.type, "message/global-delivery-status") == 0)
		parse_dsn(r, d, d + n);
	else if (strcmp(ct.type, "message/feedback-report") == 0)
		parse_arf(r, d, d + n);
	else if (strcmp(ct.type, "message/rfc822") == 0 || strcmp(ct.type, "message/global") == 0 ||
	    strcmp(ct.type, "text/rfc822-headers") == 0 ||
	    strcmp(ct.type, "message/rfc822-headers") == 0 ||
	    strcmp(ct.type, "message/global-headers") == 0) {
		if (depth > 0)
			parse_original(r, d, d + n);
	} else if (strcmp(ct.type, "text/plain") == 0 && w->text == NULL) {
		w->text = d;
		w->textlen = n;
		d = NULL;
	} else if (strcmp(ct.type, "text/html") == 0 && w->html == NULL) {
		w->html = d;
		w->htmllen = n;
		d = NULL;
	}
	free(d);
done:
	if (depth > 0) {
		hdrs_free(hs);
		free(hs);
	}
}

/* ---- heuristics ---- */

/* Phrases that only bounces use (lower case, single spaces). */
static const char *const bounce_phrases[] = {
	"this is the qmail-send program",
	"delivery to the following recipient failed permanently",
	"delivery to the following recipients failed",
	"delivery has failed to these recipients or groups",
	"your message did not reach some or all of the intended recipients",
	"your message couldn't be delivered",
	"your message wasn't delivered",
	"could not be delivered to one or more of its recipients",
	"could not be delivered to one or more recipients",
	"i'm sorry to have to inform you that your message could not be delivered",
	"the following address(es) failed",
	"the following addresses had permanent fatal errors",
	"the following recipient(s) could not be reached",
	"unable to deliver your message to the following addresses",
	"message could not be delivered",
	"your message cannot be delivered",
	"the email account that you tried to reach does not exist",
	"delivery status notification (failure)",
	"undeliverable mail",
};
/* ... and the ones that say it is only delayed. */
static const char *const delay_phrases[] = {
	"has not yet been delivered",
	"delivery has been delayed",
	"delivery is delayed",
	"will continue to try",
	"will retry",
	"this is a warning message only",
	"delivery status notification (delay)",
	"delayed mail",
	"temporary failure",
};
static const char *const permanent_phrases[] = {
	"permanent", "failed permanently", "fatal error", "does not exist", "user unknown",
	"no such user", "i'm not going to try again", "giving up",
};
/* Subjects of bounces, for senders that are mail systems. */
static const char *const bounce_subjects[] = {
	"undeliverable", "undelivered mail", "delivery status notification", "mail delivery failed",
	"returned mail", "failure notice", "delivery failure", "delivery failed",
	"unzustellbar", "non remis", "non recapitabile", "mail delivery system",
	"warning: could not send message", "delayed mail",
};
static const char *const autoreply_subjects[] = {
	"out of office", "out of the office", "automatic reply", "auto reply", "auto-reply",
	"autoreply", "autoresponse", "auto response", "abwesenheitsnotiz", "automatische antwort",
	"réponse automatique", "reponse automatique", "respuesta automática",
	"respuesta automatica", "risposta automatica", "on vacation", "vacation reply",
};

/* Lower case with runs of white space made one space (max bytes). */
static char *
normalise(const char *s, size_t n, size_t max)
{
	char *o = xmalloc(MIN(n, max) + 1);
	size_t k = 0;
	bool sp = false;

	for (size_t i = 0; i < n && k < max; i++) {
		unsigned char c = (unsigned char)s[i];
		if (isspace(c)) {
			sp = k > 0;
			continue;
		}
		if (sp && k < max)
			o[k++] = ' ';
		sp = false;
		if (k < max)
			o[k++] = (char)tolower(c);
	}
	o[k] = '\0';
	return o;
}

static bool
has_any(const char *norm, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strstr(norm, list[i]) != NULL)
			return true;
	return false;
}

/* An enhanced status code "c.d.d" at a word start in [s, s + n); class 4 or 5. */
static const char *
find_status(const char *s, size_t n, size_t *len)
{
	for (size_t i = 0; i + 5 <= n; i++) {
		if ((s[i] != '4' && s[i] != '5') || s[i + 1] != '.' ||
		    (i > 0 && (isalnum((unsigned char)s[i - 1]) || s[i - 1] == '.')))
			continue;
		size_t k = i + 2, d1 = 0, d2 = 0;
		while (k < n && isdigit((unsigned char)s[k]) && d1 < 3) {
			k++;
			d1++;
		}
		if (d1 == 0 || k >= n || s[k] != '.')
			continue;
		k++;
		while (k < n && isdigit((unsigned char)s[k]) && d2 < 3) {
			k++;
			d2++;
		}
		if (d2 == 0 || (k < n && (isalnum((unsigned char)s[k]) || s[k] == '.')))
			continue;
		*len = k - i;
		return s + i;
	}
	return NULL;
}

/* A reply code 4xx/5xx starting a word and followed by a space or '-'. */
static const char *
find_code(const char *s, size_t n)
{
	for (size_t i = 0; i + 4 <= n; i++) {
		if ((s[i] != '4' && s[i] != '5') || !isdigit((unsigned char)s[i + 1]) ||
		    !isdigit((unsigned char)s[i + 2]) || (s[i + 3] != ' ' && s[i + 3] != '-') ||
		    (i > 0 && (isalnum((unsigned char)s[i - 1]) || s[i - 1] == '.' || s[i - 1] == ':')))
			continue;
		return s + i;
	}
	return NULL;
}

/* The line of [s, e) around p, trimmed and bounded. */
static char *
line_around(const char *s, const char *e, const char *p)
{
	const char *b = p, *f = p;

	while (b > s && b[-1] != '\n')
		b--;
	while (f < e && *f != '\n' && *f != '\r')
		f++;
	return xstrndup_trim(b, MIN((size_t)(f - b), MAX_DIAG));
}

static bool
addr_char(char c)
{
	return isalnum((unsigned char)c) || strchr(".!#$%&'*+/=?^_`{|}~-", c) != NULL;
}

/* The first address in [s, e) that is not skip1/skip2 nor a mail system's own. */
static char *
first_address(const char *s, const char *e, const char *skip1, const char *skip2)
{
	for (const char *p = s; p < e; p++) {
		if (*p != '@')
			continue;
		const char *b = p, *f = p + 1;
		while (b > s && addr_char(b[-1]))
			b--;
		while (f < e && (isalnum((unsigned char)*f) || *f == '.' || *f == '-'))
			f++;
		while (f > p + 1 && f[-1] == '.')
			f--;
		if (b == p || f == p + 1 || memchr(p + 1, '.', (size_t)(f - p - 1)) == NULL)
			continue;
		char *a = xstrndup(b, (size_t)(f - b));
		if ((skip1 && strcasecmp(a, skip1) == 0) || (skip2 && strcasecmp(a, skip2) == 0) ||
		    strncasecmp(a, "mailer-daemon@", 14) == 0 || strncasecmp(a, "postmaster@", 11) == 0 ||
		    strncasecmp(a, VERP_LIKE_PREFIX, sizeof(VERP_LIKE_PREFIX) - 1) == 0) {
			free(a);
			p = f - 1;
			continue;
		}
		return a;
	}
	return NULL;
}

static bool
is_mail_system(const char *from)
{
	return from && (find_ci(from, strlen(from), "mailer-daemon") ||
	    find_ci(from, strlen(from), "postmaster") ||
	    find_ci(from, strlen(from), "mail delivery") ||
	    find_ci(from, strlen(from), "microsoftexchange"));
}

/* A bounce by its text: fills one recipient block. */
static bool
heuristic_bounce(struct report *r, const char *text, size_t n, const char *norm,
    const char *nsubj)
{
	bool strong = has_any(norm, bounce_phrases, ARRAY_SIZE(bounce_phrases));
	bool delay = has_any(norm, delay_phrases, ARRAY_SIZE(delay_phrases)) ||
	    has_any(nsubj, delay_phrases, ARRAY_SIZE(delay_phrases));
	bool subj = has_any(nsubj, bounce_subjects, ARRAY_SIZE(bounce_subjects));
	size_t slen = 0;
	const char *st = find_status(text, n, &slen), *code = NULL;

	if (!strong && !(subj && is_mail_system(r->from) && (delay || st || find_code(text, n) ||
	    has_any(norm, permanent_phrases, ARRAY_SIZE(permanent_phrases)))))
		return false;
	if (strong && has_any(norm, permanent_phrases, ARRAY_SIZE(permanent_phrases)))
		delay = false;
	if (st && *st == '5')
		delay = false;

	struct report_rcpt *rc = new_rcpt(r);
	rc->action = xstrdup(delay ? "delayed" : "failed");
	if (st) {
		rc->status = xstrndup(st, slen);
		rc->diag = line_around(text, text + n, st);
	} else if ((code = find_code(text, n)) != NULL) {
		rc->status = xstrdup(code[0] == '5' ? "5.0.0" : "4.0.0");
		rc->diag = line_around(text, text + n, code);
		if (code[0] == '5') {
			free(rc->action);
			rc->action = xstrdup("failed");
		}
	} else
		rc->status = xstrdup(delay ? "4.0.0" : "5.0.0");
	if (rc->status[0] == '4' && !delay) {
		free(rc->action);
		rc->action = xstrdup("delayed");
	}
	char *from = report_addr(r->from);
	rc->final_rcpt = first_address(text, text + n, from, r->orig_return_path);
	free(from);
	return true;
}

static const char *
autoreply_sign(const struct hdrs *top, const char *nsubj)
{
	const char *v;

	if (top != NULL) {
		if ((v = hdr_get(top, "Auto-Submitted")) != NULL && strncasecmp(v, "auto-replied", 12) == 0)
			return "Auto-Submitted";
		if (hdr_get(top, "X-Autoreply") != NULL)
			return "X-Autoreply";
		if (hdr_get(top, "X-Autorespond") != NULL)
			return "X-Autorespond";
		if (hdr_get(top, "X-Autoresponder") != NULL)
			return "X-Autoresponder";
		if ((v = hdr_get(top, "Precedence")) != NULL && strncasecmp(v, "auto_reply", 10) == 0)
			return "Precedence";
		if ((v = hdr_get(top, "X-Auto-Response-Suppress")) != NULL &&
		    (v = hdr_get(top, "Auto-Submitted")) != NULL && strncasecmp(v, "auto-generated", 14) == 0)
			return "Auto-Submitted";
	}
	for (size_t i = 0; i < ARRAY_SIZE(autoreply_subjects); i++)
		if (strstr(nsubj, autoreply_subjects[i]) != NULL)
			return "Subject";
	if (strncmp(nsubj, "auto:", 5) == 0)
		return "Subject";
	return NULL;
}

/* ---- entry points ---- */

void
report_parse(const char *msg, size_t len, struct report *r)
{
	struct walk w = { .r = r };
	const char *v;

	memset(r, 0, sizeof(*r));
	walk_entity(&w, msg, msg + len, 0, "text/plain");
	if (w.top != NULL) {
		if ((v = hdr_get(w.top, "Subject")) != NULL)
			r->subject = xstrdup(v);
		if ((v = hdr_get(w.top, "From")) != NULL)
			r->from = xstrdup(v);
	}
	const char *text = w.text ? w.text : w.html ? w.html : "";
	size_t tlen = w.text ? w.textlen : w.html ? w.htmllen : 0;
	if (tlen > MAX_TEXT)
		tlen = MAX_TEXT;
	quoted_original(r, text, text + tlen);

	char *norm = normalise(text, tlen, MAX_TEXT);
	char *nsubj = normalise(r->subject ? r->subject : "", r->subject ? strlen(r->subject) : 0, 1024);
	if (r->feedback_type != NULL)
		r->type = REPORT_ARF;
	else if (r->nrcpt > 0)
		r->type = REPORT_DSN;
	else {
		const char *sign = autoreply_sign(w.top, nsubj);
		/* a strong bounce phrase wins over auto-reply signs (Exim marks
		 * its bounces Auto-Submitted: auto-replied) */
		bool strong = has_any(norm, bounce_phrases, ARRAY_SIZE(bounce_phrases));
		if ((strong || sign == NULL) && heuristic_bounce(r, text, tlen, norm, nsubj))
			r->type = REPORT_BOUNCE;
		else if (sign != NULL) {
			r->type = REPORT_AUTOREPLY;
			r->autoreply_sign = sign;
		}
	}
	free(norm);
	free(nsubj);
	if (w.top != NULL) {
		hdrs_free(w.top);
		free(w.top);
	}
	free(w.text);
	free(w.html);
}

void
report_free(struct report *r)
{
	for (int i = 0; i < r->nrcpt; i++)
		rcpt_free(&r->rcpts[i]);
	free(r->rcpts);
	for (int i = 0; i < r->norig_rcpt_to; i++)
		free(r->original_rcpt_to[i]);
	free(r->original_rcpt_to);
	free(r->subject);
	free(r->from);
	free(r->reporting_mta);
	free(r->feedback_type);
	free(r->user_agent);
	free(r->original_mail_from);
	free(r->arrival_date);
	free(r->source_ip);
	free(r->reported_domain);
	free(r->orig_return_path);
	free(r->orig_to);
	free(r->orig_from);
	free(r->orig_message_id);
	free(r->orig_subject);
	memset(r, 0, sizeof(*r));
}

const char *
report_type_name(enum report_type t)
{
	switch (t) {
	case REPORT_DSN: return "dsn";
	case REPORT_ARF: return "arf";
	case REPORT_BOUNCE: return "bounce-text";
	case REPORT_AUTOREPLY: return "auto-reply";
	case REPORT_UNKNOWN: break;
	}
	return "unknown";
}

const struct report_rcpt *
report_pick(const struct report *r, const char *rcpt)
{
	if (r->nrcpt == 0)
		return NULL;
	if (rcpt != NULL && *rcpt != '\0')
		for (int i = 0; i < r->nrcpt; i++) {
			const struct report_rcpt *rc = &r->rcpts[i];
			if ((rc->final_rcpt && strcasecmp(rc->final_rcpt, rcpt) == 0) ||
			    (rc->orig_rcpt && strcasecmp(rc->orig_rcpt, rcpt) == 0))
				return rc;
		}
	for (int i = 0; i < r->nrcpt; i++)
		if (r->rcpts[i].action && strcmp(r->rcpts[i].action, "failed") == 0)
			return &r->rcpts[i];
	for (int i = 0; i < r->nrcpt; i++)
		if (r->rcpts[i].action && strcmp(r->rcpts[i].action, "delayed") == 0)
			return &r->rcpts[i];
	return &r->rcpts[0];
}
