/*
 * suppress: the suppression list in the LMDB store (store.h).
 *
 * Addresses are normalised (domain lower-cased; local part kept, except
 * provider rules such as Gmail's dots when enabled). An entry has a reason,
 * a scope (global, or one sender domain, or one pool), a time and the event
 * that caused it. Lookups are read-only transactions on the caller's
 * thread; changes go through the store's writer thread.
 */
#ifndef SLUICE_SUPPRESS_H
#define SLUICE_SUPPRESS_H

#include <stdbool.h>
#include <stdint.h>

enum suppress_reason {
	SUP_HARD_BOUNCE,
	SUP_COMPLAINT,
	SUP_UNSUBSCRIBE,
	SUP_MANUAL,
	SUP_SPAM_TRAP,
	SUP_SOFT_BOUNCES,       /* N consecutive soft bounces over M days */
};

struct suppress_entry {
	char address[320];
	enum suppress_reason reason;
	char scope[256];        /* "" = global, "domain:example.com", "pool:NAME" */
	int64_t time;           /* ms since the epoch */
	char source[128];       /* what added it: queue id + event type, "api", "import" */
};

const char *suppress_reason_name(enum suppress_reason r);
int suppress_reason_parse(const char *s, enum suppress_reason *out);

/* Queue an entry (asynchronous, durable after the store's next commit). */
void suppress_add(const char *address, enum suppress_reason reason, const char *scope,
    const char *source);
/* A bounce for address: permanent adds it at once (hard-bounce); a soft one
 * is counted and adds it after the configured run of soft bounces. */
void suppress_note_bounce(const char *address, bool permanent, const char *category,
    const char *source);
/* A delivery: resets the soft-bounce run. */
void suppress_note_delivery(const char *address);
/* Is address suppressed for mail from sender_domain through pool (either
 * may be NULL)? 1 yes (entry filled, may be NULL), 0 no, -1 store error. */
int suppress_check(const char *address, const char *sender_domain, const char *pool,
    struct suppress_entry *e);

#endif
