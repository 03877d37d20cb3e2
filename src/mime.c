/*
 * mime: building messages from structured fields (mime.h).
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <openssl/evp.h>

#include "mime.h"
#include "util.h"

bool
mime_has_8bit(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return true;
	return false;
}

static void
b64_append(struct evbuffer *b, const unsigned char *s, size_t n)
{
	unsigned char out[4 * 48 / 3 + 1];

	while (n > 0) {
		size_t k = MIN(n, (size_t)48);
		int len = EVP_EncodeBlock(out, s, (int)k);

		evbuffer_add(b, out, (size_t)len);
		s += k;
		n -= k;
	}
}

/*
 * RFC 2047 encoded words for UTF-8 text, split at character boundaries so
 * that every word stays within 75 characters; words are separated by a
 * space, where the header folder may break the line.
 */
static void
encoded_words(struct evbuffer *b, const char *s, size_t n)
{
	bool first = true;

	while (n > 0) {
		size_t k = MIN(n, (size_t)45);

		while (k < n && k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
			k--;
		if (k == 0)
			k = MIN(n, (size_t)45);
		evbuffer_add_printf(b, "%s=?UTF-8?B?", first ? "" : " ");
		b64_append(b, (const unsigned char *)s, k);
		evbuffer_add(b, "?=", 2);
		s += k;
		n -= k;
		first = false;
	}
}

/* Header value text: as is when ASCII, else encoded words (unstructured fields). */
static void
header_text(struct evbuffer *b, const char *s)
{
	if (mime_has_8bit(s, strlen(s)))
		encoded_words(b, s, strlen(s));
	else
		evbuffer_add(b, s, strlen(s));
}

/*
 * An address list: display names with non-ASCII become encoded words; the
 * addresses are kept (a UTF-8 address needs SMTPUTF8, flagged by *utf8).
 */
static void
header_addrs(struct evbuffer *b, const char *s, bool *utf8)
{
	const char *p = s;

	if (!mime_has_8bit(s, strlen(s))) {
		evbuffer_add(b, s, strlen(s));
		return;
	}
	while (*p != '\0') {
		const char *start = p, *lt = NULL;
		bool q = false;
		int angle = 0;

		for (; *p != '\0'; p++) {
			if (*p == '"' && (p == start || p[-1] != '\\'))
				q = !q;
			else if (!q && *p == '<') {
				angle++;
				lt = p;
			} else if (!q && *p == '>' && angle > 0)
				angle--;
			else if (!q && angle == 0 && *p == ',')
				break;
		}
		const char *end = p;
		while (start < end && isspace((unsigned char)*start))
			start++;
		while (end > start && isspace((unsigned char)end[-1]))
			end--;
		if (lt != NULL && lt >= start && mime_has_8bit(start, (size_t)(lt - start))) {
			const char *ps = start, *pe = lt;

			while (pe > ps && isspace((unsigned char)pe[-1]))
				pe--;
			if (pe - ps >= 2 && *ps == '"' && pe[-1] == '"') {
				ps++;
				pe--;
			}
			encoded_words(b, ps, (size_t)(pe - ps));
			evbuffer_add(b, " ", 1);
			evbuffer_add(b, lt, (size_t)(end - lt));
			if (mime_has_8bit(lt, (size_t)(end - lt)))
				*utf8 = true;
		} else {
			evbuffer_add(b, start, (size_t)(end - start));
			if (mime_has_8bit(start, (size_t)(end - start)))
				*utf8 = true;
		}
		if (*p == ',') {
			evbuffer_add(b, ", ", 2);
			p++;
		}
	}
}

/*
 * Write "Name: value" CRLF, folding at spaces so that lines stay near 78
 * characters where the value allows it.
 */
static void
header_fold(struct evbuffer *out, const char *name, const char *value, size_t vlen)
{
	size_t col = strlen(name) + 2, i = 0;

	evbuffer_add_printf(out, "%s: ", name);
	while (i < vlen) {
		size_t j = i;

		/* a word: the space(s) before it, then non-spaces */
		while (j < vlen && value[j] == ' ')
			j++;
		while (j < vlen && value[j] != ' ')
			j++;
		if (i > 0 && col + (j - i) > 78 && value[i] == ' ') {
			evbuffer_add(out, "\r\n", 2);
			col = 0;
		}
		evbuffer_add(out, value + i, j - i);
		col += j - i;
		i = j;
	}
	evbuffer_add(out, "\r\n", 2);
}

static void
header_add(struct evbuffer *out, const char *name, struct evbuffer *val)
{
	size_t n = evbuffer_get_length(val);
	const char *v = (const char *)evbuffer_pullup(val, -1);

	header_fold(out, name, v ? v : "", n);
	evbuffer_drain(val, n);
}

static bool
is_addr_header(const char *name)
{
	static const char *const names[] = { "From", "To", "Cc", "Reply-To", "Sender" };

	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (strcasecmp(name, names[i]) == 0)
			return true;
	return false;
}

/* Quoted-printable (RFC 2045 6.7), line breaks in the text are hard breaks. */
static void
qp_append(struct evbuffer *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t col = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char enc[4];
		size_t len;

		if (c == '\n' || (c == '\r' && i + 1 < n && s[i + 1] == '\n')) {
			if (c == '\r')
				i++;
			evbuffer_add(b, "\r\n", 2);
			col = 0;
			continue;
		}
		bool eol = i + 1 == n || s[i + 1] == '\n' || s[i + 1] == '\r';
		if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !eol)) {
			enc[0] = (char)c;
			len = 1;
		} else {
			enc[0] = '=';
			enc[1] = hex[c >> 4];
			enc[2] = hex[c & 15];
			len = 3;
		}
		if (col + len > 75) {
			evbuffer_add(b, "=\r\n", 3);
			col = 0;
		}
		evbuffer_add(b, enc, len);
		col += len;
	}
	evbuffer_add(b, "\r\n", 2);
}

static void
b64_body(struct evbuffer *b, const char *s, size_t n)
{
	while (n > 0) {
		size_t k = MIN(n, (size_t)57);   /* 76 characters a line */

		b64_append(b, (const unsigned char *)s, k);
		evbuffer_add(b, "\r\n", 2);
		s += k;
		n -= k;
	}
}

/* Text as plain 7bit lines (CRLF), when it is ASCII with short lines. */
static bool
plain_ok(const char *s, size_t n)
{
	size_t line = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x80 || c == '\0' || (c == '\r' && (i + 1 == n || s[i + 1] != '\n')))
			return false;
		line = c == '\n' ? 0 : line + 1;
		if (line > 998)
			return false;
	}
	return true;
}

static void
plain_append(struct evbuffer *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\r')
			continue;
		if (s[i] == '\n')
			evbuffer_add(b, "\r\n", 2);
		else
			evbuffer_add(b, s + i, 1);
	}
	if (n == 0 || s[n - 1] != '\n')
		evbuffer_add(b, "\r\n", 2);
}

/* One body part's headers (content-type family) and content. */
static void
mime_part(struct evbuffer *b, const char *subtype, const char *s, size_t n)
{
	size_t high = 0;

	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			high++;
	if (plain_ok(s, n)) {
		evbuffer_add_printf(b, "Content-Type: text/%s; charset=us-ascii\r\n"
		    "Content-Transfer-Encoding: 7bit\r\n\r\n", subtype);
		plain_append(b, s, n);
	} else if (high * 3 > n) {
		evbuffer_add_printf(b, "Content-Type: text/%s; charset=utf-8\r\n"
		    "Content-Transfer-Encoding: base64\r\n\r\n", subtype);
		b64_body(b, s, n);
	} else {
		evbuffer_add_printf(b, "Content-Type: text/%s; charset=utf-8\r\n"
		    "Content-Transfer-Encoding: quoted-printable\r\n\r\n", subtype);
		qp_append(b, s, n);
	}
}

bool
mime_header_name_ok(const char *s)
{
	if (*s == '\0' || strlen(s) > 76)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s < 33 || (unsigned char)*s > 126 || *s == ':')
			return false;
	return true;
}

bool
mime_header_reserved(const char *name)
{
	static const char *const reserved[] = { "MIME-Version", "Content-Type",
	    "Content-Transfer-Encoding", "Bcc" };

	for (size_t i = 0; i < ARRAY_SIZE(reserved); i++)
		if (strcasecmp(name, reserved[i]) == 0)
			return true;
	return false;
}

static bool
header_given(const struct mime_header *h, size_t nh, const char *name)
{
	for (size_t i = 0; i < nh; i++)
		if (strcasecmp(h[i].name, name) == 0)
			return true;
	return false;
}

void
mime_build(struct evbuffer *out, const char *from, const char *const *to, size_t nto,
    const char *subject, const struct mime_header *h, size_t nh, const char *text,
    const char *html, bool *utf8)
{
	struct evbuffer *v = evbuffer_new();
	size_t tlen = 0, hlen = 0;

	/* From and To from the envelope unless given as headers. */
	if (!header_given(h, nh, "From")) {
		header_addrs(v, from, utf8);
		header_add(out, "From", v);
	}
	if (!header_given(h, nh, "To") && nto > 0) {
		for (size_t i = 0; i < nto; i++) {
			if (i > 0)
				evbuffer_add(v, ", ", 2);
			header_addrs(v, to[i], utf8);
		}
		header_add(out, "To", v);
	}
	if (subject != NULL) {
		header_text(v, subject);
		header_add(out, "Subject", v);
	}
	for (size_t i = 0; i < nh; i++) {
		if (is_addr_header(h[i].name))
			header_addrs(v, h[i].value, utf8);
		else
			header_text(v, h[i].value);
		header_add(out, h[i].name, v);
	}
	evbuffer_add_printf(out, "MIME-Version: 1.0\r\n");

	if (text != NULL)
		tlen = strlen(text);
	if (html != NULL)
		hlen = strlen(html);
	if (text != NULL && html != NULL) {
		char id[27], boundary[64];

		random_id(id);
		snprintf(boundary, sizeof(boundary), "=_sluice_%s", id);
		evbuffer_add_printf(out, "Content-Type: multipart/alternative;\r\n"
		    " boundary=\"%s\"\r\n\r\n", boundary);
		evbuffer_add_printf(out, "This is a multi-part message in MIME format.\r\n\r\n");
		evbuffer_add_printf(out, "--%s\r\n", boundary);
		mime_part(out, "plain", text, tlen);
		evbuffer_add_printf(out, "--%s\r\n", boundary);
		mime_part(out, "html", html, hlen);
		evbuffer_add_printf(out, "--%s--\r\n", boundary);
	} else if (text != NULL) {
		mime_part(out, "plain", text, tlen);
	} else {
		mime_part(out, "html", html != NULL ? html : "", hlen);
	}
	evbuffer_free(v);
}
