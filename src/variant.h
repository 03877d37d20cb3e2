/*
 * variant: the content variants of a campaign, per segment, and the
 * policy that picks among them (bandit.h).
 *
 * In a campaign object:
 *   "variants": [
 *     {"segment": "young", "variants": [
 *         {"id": "A", "subject": "...", "html": "...", "text": "..."}, ...]},
 *     {"segment": "*", "variants": [...]}          (the default group)
 *   ],
 *   "reward": "open" | "click",                   (default open)
 *   "explore_until": 100,                         (sends per variant first)
 *   "winner_after": 0.95                          (P(best) that ends the test)
 * A recipient in a listed segment gets one of that segment's variants; any
 * other recipient one of the "*" group's, or the campaign's own content
 * when there is no "*" group. A variant's missing subject, html or text
 * is the campaign's own.
 */
#ifndef SLUICE_VARIANT_H
#define SLUICE_VARIANT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "bandit.h"

#define VARIANT_DEFAULT_GROUP "*"
#define VARIANT_SEGMENT_MAX   128      /* bytes of a segment name, NUL included */

struct variant {
	char id[BANDIT_ID_MAX];
	char *subject, *html, *text;    /* NULL = the campaign's own */
};

struct variant_group {
	char segment[VARIANT_SEGMENT_MAX];
	struct variant v[BANDIT_MAX_ARMS];
	const char *ids[BANDIT_MAX_ARMS];   /* v[i].id, for bandit_send() */
	int n;
};

struct variant_spec {
	struct variant_group *groups;
	int ngroups;
	struct bandit_policy policy;
};

/* A segment name: 1..127 bytes, no control characters, no '/'. */
bool variant_segment_ok(const char *name);

/*
 * Parse and check the variant members of campaign (absent: an empty spec,
 * 0). own_content says whether the campaign has its own subject/html/text,
 * the default when there is no "*" group. -1 with err on any problem.
 */
int variant_spec_parse(json_t *campaign, bool own_content, struct variant_spec *out,
    char *err, size_t errlen);
void variant_spec_free(struct variant_spec *s);

/* The group for a recipient in segment (NULL or "" = none): the segment's,
 * else the "*" group, else NULL (the campaign's own content). */
const struct variant_group *variant_group_for(const struct variant_spec *s,
    const char *segment);

/*
 * Pick the variant for one recipient and record the send (bandit_send).
 * NULL when the spec sends the campaign's own content to this segment.
 */
const struct variant *variant_choose(const struct variant_spec *s, const char *campaign,
    const char *segment, const char *address, const struct variant_group **group,
    enum bandit_why *why);

#endif
