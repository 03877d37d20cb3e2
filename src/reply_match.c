/*
 * reply_match: matchers on remote replies, shared by bounce.c and
 * backoff.c (see reply_match.h).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reply_match.h"
#include "util.h"

/* "550", "55x", "5xx": first digit 2-5, then digits or 'x'. */
bool
reply_code_pattern(const char *s, char out[3])
{
	if (strlen(s) != 3 || s[0] < '2' || s[0] > '5')
		return false;
	out[0] = s[0];
	for (int i = 1; i < 3; i++) {
		if (isdigit((unsigned char)s[i]))
			out[i] = s[i];
		else if (s[i] == 'x' || s[i] == 'X')
			out[i] = 'x';
		else
			return false;
	}
	return true;
}

/* One to three digits at *sp; advances *sp. */
static int
parse_status_num(const char **sp)
{
	const char *s = *sp;
	int v = 0, n = 0;

	while (isdigit((unsigned char)*s) && n < 3) {
		v = v * 10 + (*s - '0');
		s++;
		n++;
	}
	if (n == 0 || isdigit((unsigned char)*s))
		return -1;
	*sp = s;
	return v;
}

/* "X.Y.Z", "X.Y.*", "X.*" with X one of 2, 4, 5. */
bool
reply_status_pattern(const char *s, int out[3])
{
	if ((s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return false;
	out[0] = s[0] - '0';
	s += 2;
	if (strcmp(s, "*") == 0) {
		out[1] = out[2] = ST_ANY;
		return true;
	}
	if ((out[1] = parse_status_num(&s)) < 0 || *s++ != '.')
		return false;
	if (strcmp(s, "*") == 0) {
		out[2] = ST_ANY;
		return true;
	}
	if ((out[2] = parse_status_num(&s)) < 0 || *s != '\0')
		return false;
	return true;
}

bool
reply_status_parse(const char *s, int out[3], size_t *len)
{
	const char *p = s;

	if (!isdigit((unsigned char)p[0]) || p[1] != '.')
		return false;
	out[0] = p[0] - '0';
	p += 2;
	if ((out[1] = parse_status_num(&p)) < 0 || *p++ != '.')
		return false;
	if ((out[2] = parse_status_num(&p)) < 0)
		return false;
	if (len != NULL)
		*len = (size_t)(p - s);
	return true;
}

void
reply_in_init(struct reply_in *in, int code, const char *enh, const char *text)
{
	size_t n;
	int tmp[3];

	memset(in, 0, sizeof(*in));
	if (code >= 100 && code <= 599) {
		in->code[0] = (char)('0' + code / 100);
		in->code[1] = (char)('0' + code / 10 % 10);
		in->code[2] = (char)('0' + code % 10);
	}
	if (enh != NULL && reply_status_parse(enh, in->st, &n) && enh[n] == '\0')
		in->have_st = true;
	if (text == NULL)
		text = "";
	while (*text == ' ')
		text++;
	/* the enhanced code may still lead the text; regexes do not see it */
	if (reply_status_parse(text, tmp, &n) && (text[n] == ' ' || text[n] == '\0')) {
		if (!in->have_st) {
			memcpy(in->st, tmp, sizeof(tmp));
			in->have_st = true;
		}
		text += n;
		while (*text == ' ')
			text++;
	}
	in->text = text;
}

bool
reply_match_test(const struct reply_match *ru, const struct reply_in *in)
{
	if (ru->has_code) {
		if (in->code[0] == '\0')
			return false;
		for (int i = 0; i < 3; i++)
			if (ru->code[i] != 'x' && ru->code[i] != in->code[i])
				return false;
	}
	if (ru->has_status) {
		if (!in->have_st)
			return false;
		for (int i = 0; i < 3; i++)
			if (ru->status[i] != ST_ANY && ru->status[i] != in->st[i])
				return false;
	}
	if (ru->has_re && regexec(&ru->re, in->text, 0, NULL, 0) != 0)
		return false;
	return true;
}

void
reply_match_free(struct reply_match *m)
{
	if (m->has_re)
		regfree(&m->re);
	m->has_re = false;
}

char *
reply_rules_text(const char *path, char *err, size_t errlen)
{
	size_t len;
	char *text = read_file(path, &len);

	if (text == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (strlen(text) != len) {
		snprintf(err, errlen, "%s: contains a NUL byte", path);
		free(text);
		return NULL;
	}
	return text;
}

bool
reply_rules_array(const char *text, size_t size,
    bool (*parse)(char *line, int lineno, void *elem, const struct rule_file *f),
    const struct rule_file *f, void **v, size_t *n)
{
	char *buf = xstrdup(text), *p, *nl, *arr = NULL;
	size_t cap = 0;
	int line = 0;
	bool ok = true;

	*n = 0;
	if (f->errlen > 0)
		f->err[0] = '\0';
	for (p = buf; ok && *p != '\0'; p = nl + 1) {
		char *s, *e;

		line++;
		nl = strchr(p, '\n');
		if (nl == NULL)
			nl = p + strlen(p) - 1;       /* last line, no newline */
		else
			*nl = '\0';
		s = p;
		while (*s == ' ' || *s == '\t')
			s++;
		e = s + strlen(s);
		while (e > s && isspace((unsigned char)e[-1]))
			*--e = '\0';
		if (*s == '\0' || *s == '#')
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 64;
			arr = xrealloc(arr, cap * size);
		}
		if ((ok = parse(s, line, arr + *n * size, f)))
			(*n)++;
	}
	free(buf);
	*v = arr;
	return ok;
}
