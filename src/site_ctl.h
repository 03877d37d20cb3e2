/*
 * site_ctl: live changes to a site's limits from the control API. A value
 * is parsed and range-checked exactly as the config would (the same parsers,
 * the same ranges) before anything changes; applying a parsed value cannot
 * fail. A live value lasts until the next reload, which recomputes every
 * site's limits from the config.
 */
#ifndef SLUICE_SITE_CTL_H
#define SLUICE_SITE_CTL_H

#include <stddef.h>
#include <stdint.h>
#include "conf.h"

struct site;

/* The origin recorded for a live value (site_limits.origin[]). */
#define SITE_LIMIT_LIVE_ORIGIN "live (control API)"

/* One parsed, range-checked limit value, ready to apply. */
struct limit_set {
	enum limit_idx idx;
	union {
		int n;                             /* max-smtp-out, max-msg-per-connection, max-rcpt-per-message */
		struct rate rate;                  /* max-msg-rate, max-connect-rate */
		int64_t ms;                        /* bounce-after */
		enum tls_mode tls;
		struct {
			int64_t ms[MAX_RETRY_STEPS];
			int n;
		} retry;                           /* retry-after */
	} v;
};

/* "max-smtp-out, max-msg-per-connection, ...": the limits that can be set live. */
const char *site_limit_names(void);

/*
 * Parse `value` for the limit `name` (any thread: touches no site). On
 * error returns -1 with err "NAME: why" (the parser's text, or the range),
 * or, for a name that cannot be set live, a message listing those that can.
 */
int site_limit_parse(const char *name, const char *value, struct limit_set *out,
    char *err, size_t errlen);

/*
 * On the owner worker: make v the site's effective value, with origin
 * SITE_LIMIT_LIVE_ORIGIN. A changed rate restarts the lanes' buckets (full
 * burst, as at start). The lanes are woken at once so that a raised limit
 * is used now; a lowered one applies to what is taken from then on
 * (connections over a lowered max-smtp-out finish their work and close).
 */
void site_limit_apply(struct site *s, const struct limit_set *v);

/* site_limit_parse then site_limit_apply (on the owner worker). */
int site_set_limit(struct site *s, const char *name, const char *value,
    char *err, size_t errlen);

#endif
