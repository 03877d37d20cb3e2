/*
 * backoff: automatic reaction to throttling replies.
 *
 * An ordered rule file (conf/backoff-rules.conf; its header comment is the
 * syntax reference) maps a remote reply (basic code, enhanced status, text;
 * the same matchers as bounce-rules) to an action on the site and source
 * lane that got it: suspend the site for a while, lower the lane's message
 * rate, cap its connections, and how the lane returns to its configured
 * limits (a quiet period without a further match, and/or a number of
 * successful deliveries). The first matching rule wins; no match, no action.
 *
 * Rules are compiled once at load; a loaded rule set is immutable, so any
 * number of threads may match with it at once. What the action does to a
 * site lives in site.c.
 */
#ifndef SLUICE_BACKOFF_H
#define SLUICE_BACKOFF_H

#include <stddef.h>
#include <stdint.h>
#include "util.h"

#define BACKOFF_RECOVER_DEFAULT_MS (15 * 60 * 1000)

struct backoff_rules;

/* The action of a rule; at least one of suspend_ms, rate, connections. */
struct backoff_rule {
	const char *file;              /* rules file name (for reasons and logs) */
	int line;                      /* line of the rule in it */
	int64_t suspend_ms;            /* suspend the site this long; 0 = no */
	struct rate rate;              /* lane's max-msg-rate until recovery; count 0 = no */
	int connections;               /* lane's max-smtp-out until recovery; 0 = no */
	int64_t recover_ms;            /* quiet period (after the suspension) */
	int recover_after;             /* or this many 2xx replies; 0 = time only */
};

/* The built-in rules: the text of conf/backoff-rules.conf. */
extern const char backoff_rules_builtin[];

/*
 * Load and compile the rules in path (NULL: the built-in rules). On error
 * return NULL with "path:LINE: message" (or "path: message") in err.
 */
struct backoff_rules *backoff_rules_load(const char *path, char *err, size_t errlen);
/* The same from text in memory; name is the file name in error messages. */
struct backoff_rules *backoff_rules_parse(const char *text, const char *name,
    char *err, size_t errlen);
void backoff_rules_free(struct backoff_rules *r);
size_t backoff_rules_count(const struct backoff_rules *r);

/*
 * The first rule matching a reply: code (421; 0 when none), enh ("4.7.28",
 * "" or NULL), text (the reply text; a leading enhanced code is skipped).
 * NULL when no rule matches or r is NULL. The result lives as long as r.
 */
const struct backoff_rule *backoff_match(const struct backoff_rules *r, int code,
    const char *enh, const char *text);

/* "suspend=3s rate=10/m recover=15m" into buf (for events and logs). */
void backoff_rule_fmt(const struct backoff_rule *ru, char *buf, size_t len);

#endif
