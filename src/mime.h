/*
 * mime: RFC 5322 / MIME messages from structured fields (from, to, subject,
 * text and/or html, extra headers), for POST /v1/messages and for
 * campaign messages rendered at send time. Non-ASCII header text becomes
 * RFC 2047 encoded words; bodies are 7bit, quoted-printable or base64,
 * whichever fits; text + html is multipart/alternative.
 */
#ifndef SLUICE_MIME_H
#define SLUICE_MIME_H

#include <stdbool.h>
#include <stddef.h>

struct evbuffer;

struct mime_header {
	const char *name, *value;
};

/*
 * Append the message (CRLF line ends, not dot-stuffed) to out. From and To
 * come from `from` and `to` unless given among the headers; *utf8 is set
 * when an address needs SMTPUTF8. Callers check the headers first with
 * mime_header_name_ok() and mime_header_reserved().
 */
void mime_build(struct evbuffer *out, const char *from, const char *const *to, size_t nto,
    const char *subject, const struct mime_header *h, size_t nh, const char *text,
    const char *html, bool *utf8);
bool mime_header_name_ok(const char *name);
/* Headers sluice writes itself for structured messages (MIME-Version...). */
bool mime_header_reserved(const char *name);
bool mime_has_8bit(const char *s, size_t n);

#endif
