/*
 * bounce: classification of remote replies into bounce categories.
 *
 * An ordered rule file (conf/bounce-rules.conf; its header comment is the
 * syntax reference) maps a reply (basic code, enhanced status, text) to a
 * category in the PowerMTA/KumoMTA tradition (bad-mailbox, quota-issues,
 * spam-related, ...); the first matching rule wins, and when none matches
 * the RFC 3463 subject of the enhanced status decides, then "other".
 * Each category maps to the SES bounce type and subtype so that consumers
 * written for SES events can switch without a translation table.
 *
 * Rules are compiled once at load; a loaded rule set is immutable, so any
 * number of threads may classify with it at once.
 */
#ifndef SLUICE_BOUNCE_H
#define SLUICE_BOUNCE_H

#include <stdbool.h>
#include <stddef.h>

struct bounce_rules;

struct bounce_class {
	const char *category;          /* "bad-mailbox", ...; static storage */
	const char *ses_type;          /* "Permanent", "Transient", "Undetermined" */
	const char *ses_subtype;       /* "General", "NoEmail", "MailboxFull", ... */
	int rule_line;                 /* line of the matching rule; 0 = fallback */
};

/* The built-in rules: the text of conf/bounce-rules.conf. */
extern const char bounce_rules_builtin[];

/*
 * Load and compile the rules in path (NULL: the built-in rules). On error
 * return NULL with "path:LINE: message" (or "path: message") in err.
 */
struct bounce_rules *bounce_rules_load(const char *path, char *err, size_t errlen);
/* The same from text in memory; name is the file name in error messages. */
struct bounce_rules *bounce_rules_parse(const char *text, const char *name,
    char *err, size_t errlen);
void bounce_rules_free(struct bounce_rules *r);
/* Number of rules (for logs: "loaded N bounce rules from FILE"). */
size_t bounce_rules_count(const struct bounce_rules *r);

/*
 * Classify a reply: code (550; 0 when there is none), enh ("5.1.1", "" or
 * NULL), text (the reply text; a leading enhanced code is skipped; lines
 * joined with " / " as smtp_reply keeps them). r NULL: the fallback only.
 */
void bounce_classify(const struct bounce_rules *r, int code, const char *enh,
    const char *text, struct bounce_class *out);
/*
 * An expiry (sluice gave up retrying): category "message-expired",
 * Permanent/General. The last attempt's reply is classified separately
 * with bounce_classify() when the event wants it.
 */
void bounce_class_expired(struct bounce_class *out);

/*
 * The SES type for a category and reply code; *subtype (when subtype is
 * not NULL) gets the SES subtype. The class of code decides Permanent (5xx)
 * or Transient (4xx); message-expired is Permanent/General; "other" and
 * codes outside 4xx/5xx are Undetermined. Mailbox full, message too large,
 * content, spam (5xx) and virus rejections are Transient with their SES
 * subtype whatever the class, as SES reports them: the address itself is
 * fine and must not be suppressed. The pseudo-category "suppressed" (a
 * recipient on sluice's suppression list) is Permanent/Suppressed.
 * Unknown categories are Undetermined.
 */
const char *bounce_ses_type(const char *category, int code, const char **subtype);

/* Whether name is a category rules may use. */
bool bounce_category_valid(const char *name);

#endif
