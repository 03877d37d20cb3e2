/*
 * variant: parsing and checking a campaign's variants, and the choice per
 * recipient (variant.h). Every error names the place in the object
 * ("variants[1].variants[3].id") so a client can fix its request.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "variant.h"

bool
variant_segment_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n >= VARIANT_SEGMENT_MAX)
		return false;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p < 0x20 || *p == 0x7f || *p == '/')
			return false;
	return true;
}

static bool
id_ok(const char *id)
{
	size_t n = strlen(id);

	if (n == 0 || n >= BANDIT_ID_MAX)
		return false;
	for (const char *p = id; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
			return false;
	return true;
}

/* A string member or absent; -1 when present and not a string. */
static int
opt_str(json_t *o, const char *key, char **out)
{
	json_t *v = json_object_get(o, key);

	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
		return -1;
	*out = xstrdup(json_string_value(v));
	return 0;
}

static int
parse_group(json_t *g, int gi, struct variant_group *out, char *err, size_t errlen)
{
	json_t *seg = json_object_get(g, "segment"), *vs = json_object_get(g, "variants"), *v;
	const char *key;
	json_t *val;
	size_t i;

	if (!json_is_object(g)) {
		snprintf(err, errlen, "variants[%d] must be an object {\"segment\": ..., \"variants\": [...]}", gi);
		return -1;
	}
	json_object_foreach(g, key, val)
		if (strcmp(key, "segment") != 0 && strcmp(key, "variants") != 0) {
			snprintf(err, errlen, "variants[%d]: unknown member \"%s\"", gi, key);
			return -1;
		}
	if (!json_is_string(seg) || (strcmp(json_string_value(seg), VARIANT_DEFAULT_GROUP) != 0 &&
	    !variant_segment_ok(json_string_value(seg)))) {
		snprintf(err, errlen, "variants[%d].segment must be a segment name (1-%d bytes, no "
		    "control characters or '/') or \"*\" for everyone else", gi, VARIANT_SEGMENT_MAX - 1);
		return -1;
	}
	snprintf(out->segment, sizeof(out->segment), "%s", json_string_value(seg));
	if (!json_is_array(vs) || json_array_size(vs) == 0 ||
	    json_array_size(vs) > BANDIT_MAX_ARMS) {
		snprintf(err, errlen, "variants[%d].variants must be an array of 1 to %d variants", gi,
		    BANDIT_MAX_ARMS);
		return -1;
	}
	json_array_foreach(vs, i, v) {
		struct variant *x = &out->v[i];
		json_t *id = json_object_get(v, "id");

		if (!json_is_object(v)) {
			snprintf(err, errlen, "variants[%d].variants[%zu] must be an object", gi, i);
			return -1;
		}
		json_object_foreach(v, key, val)
			if (strcmp(key, "id") != 0 && strcmp(key, "subject") != 0 &&
			    strcmp(key, "html") != 0 && strcmp(key, "text") != 0) {
				snprintf(err, errlen, "variants[%d].variants[%zu]: unknown member \"%s\" "
				    "(id, subject, html, text)", gi, i, key);
				return -1;
			}
		if (!json_is_string(id) || !id_ok(json_string_value(id))) {
			snprintf(err, errlen, "variants[%d].variants[%zu].id must be 1-%d letters, digits, "
			    "'-', '_' or '.'", gi, i, BANDIT_ID_MAX - 1);
			return -1;
		}
		snprintf(x->id, sizeof(x->id), "%s", json_string_value(id));
		for (size_t k = 0; k < i; k++)
			if (strcmp(out->v[k].id, x->id) == 0) {
				snprintf(err, errlen, "variants[%d]: variant id \"%s\" appears twice", gi, x->id);
				return -1;
			}
		out->n = (int)i + 1;
		out->ids[i] = x->id;
		if (opt_str(v, "subject", &x->subject) < 0 || opt_str(v, "html", &x->html) < 0 ||
		    opt_str(v, "text", &x->text) < 0) {
			snprintf(err, errlen, "variants[%d].variants[%zu]: subject, html and text must be "
			    "strings without NUL", gi, i);
			return -1;
		}
		if (x->subject == NULL && x->html == NULL && x->text == NULL) {
			snprintf(err, errlen, "variants[%d].variants[%zu] (\"%s\") has no subject, html or "
			    "text", gi, i, x->id);
			return -1;
		}
	}
	return 0;
}

int
variant_spec_parse(json_t *campaign, bool own_content, struct variant_spec *out,
    char *err, size_t errlen)
{
	json_t *vs = json_object_get(campaign, "variants"), *g;
	json_t *rw = json_object_get(campaign, "reward");
	json_t *eu = json_object_get(campaign, "explore_until");
	json_t *wa = json_object_get(campaign, "winner_after");
	bool has_default = false;
	size_t i;

	memset(out, 0, sizeof(*out));
	out->policy.reward = BANDIT_OPEN;
	if (rw != NULL && !json_is_null(rw) && (!json_is_string(rw) ||
	    bandit_reward_parse(json_string_value(rw), &out->policy.reward) < 0)) {
		snprintf(err, errlen, "\"reward\" must be \"open\" or \"click\"");
		return -1;
	}
	if (eu != NULL && !json_is_null(eu)) {
		if (!json_is_integer(eu) || json_integer_value(eu) < 0 ||
		    json_integer_value(eu) > 1000000) {
			snprintf(err, errlen, "\"explore_until\" must be an integer from 0 to 1000000 "
			    "(sends per variant before sampling)");
			return -1;
		}
		out->policy.explore_until = (uint32_t)json_integer_value(eu);
	}
	if (wa != NULL && !json_is_null(wa)) {
		double x = json_is_number(wa) ? json_number_value(wa) : -1;

		if (!(x == 0 || (x >= 0.5 && x < 1.0))) {
			snprintf(err, errlen, "\"winner_after\" must be 0 (never) or a probability from "
			    "0.5 to below 1, e.g. 0.95");
			return -1;
		}
		out->policy.winner_after = x;
	}
	if (vs == NULL || json_is_null(vs)) {
		if ((rw && !json_is_null(rw)) || (eu && !json_is_null(eu)) || (wa && !json_is_null(wa))) {
			snprintf(err, errlen, "\"reward\", \"explore_until\" and \"winner_after\" need "
			    "\"variants\"");
			return -1;
		}
		return 0;
	}
	if (!json_is_array(vs) || json_array_size(vs) == 0 || json_array_size(vs) > 1000) {
		snprintf(err, errlen, "\"variants\" must be an array of 1 to 1000 segment groups");
		return -1;
	}
	out->groups = xcalloc(json_array_size(vs), sizeof(*out->groups));
	json_array_foreach(vs, i, g) {
		if (parse_group(g, (int)i, &out->groups[i], err, errlen) < 0) {
			out->ngroups = (int)i + 1;
			variant_spec_free(out);
			return -1;
		}
		out->ngroups = (int)i + 1;
		for (size_t k = 0; k < i; k++)
			if (strcmp(out->groups[k].segment, out->groups[i].segment) == 0) {
				snprintf(err, errlen, "variants[%zu]: segment \"%s\" appears twice", i,
				    out->groups[i].segment);
				variant_spec_free(out);
				return -1;
			}
		if (strcmp(out->groups[i].segment, VARIANT_DEFAULT_GROUP) == 0)
			has_default = true;
	}
	if (!has_default && !own_content) {
		snprintf(err, errlen, "recipients outside the listed segments need content: a "
		    "\"segment\": \"*\" group or the campaign's own subject, html or text");
		variant_spec_free(out);
		return -1;
	}
	return 0;
}

void
variant_spec_free(struct variant_spec *s)
{
	for (int g = 0; g < s->ngroups; g++)
		for (int i = 0; i < BANDIT_MAX_ARMS; i++) {
			free(s->groups[g].v[i].subject);
			free(s->groups[g].v[i].html);
			free(s->groups[g].v[i].text);
		}
	free(s->groups);
	memset(s, 0, sizeof(*s));
}

const struct variant_group *
variant_group_for(const struct variant_spec *s, const char *segment)
{
	const struct variant_group *def = NULL;

	for (int g = 0; g < s->ngroups; g++) {
		if (segment != NULL && *segment != '\0' && strcmp(s->groups[g].segment, segment) == 0)
			return &s->groups[g];
		if (strcmp(s->groups[g].segment, VARIANT_DEFAULT_GROUP) == 0)
			def = &s->groups[g];
	}
	return def;
}

const struct variant *
variant_choose(const struct variant_spec *s, const char *campaign, const char *segment,
    const char *address, const struct variant_group **group, enum bandit_why *why)
{
	const struct variant_group *g = variant_group_for(s, segment);
	int i;

	*group = g;
	if (g == NULL)
		return NULL;
	i = bandit_send(campaign, g->segment, g->ids, g->n, &s->policy, address, why);
	return i >= 0 ? &g->v[i] : NULL;
}
