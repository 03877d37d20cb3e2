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
/* A classified failure (bounce.c's SES type and subtype): an address that
 * does not exist (Permanent/NoEmail: bad-mailbox, bad-domain,
 * inactive-mailbox) is added at once; a full mailbox or an unclassified
 * reply counts as a soft bounce; anything else (policy and reputation
 * blocks, content, our own configuration) says nothing about the address.
 * Returns 1 when something was queued. */
int suppress_note_failure(const char *address, const char *ses_type, const char *ses_subtype,
    const char *category, const char *source);
/* A delivery: resets the soft-bounce run. */
void suppress_note_delivery(const char *address);
/* Is address suppressed for mail from sender_domain through pool (either
 * may be NULL)? 1 yes (entry filled, may be NULL), 0 no, -1 store error. */
int suppress_check(const char *address, const char *sender_domain, const char *pool,
    struct suppress_entry *e);

/* ---- below: added by the implementation (API, CLI, import, tests) ---- */

/*
 * The accounting event of a recipient left out because it is suppressed:
 * type "suppressed", action "rejected" (refused at RCPT; no id) or
 * "dropped" (accepted, never queued), the entry's reason, scope, time and
 * source, category "suppressed" and SES type Permanent/Suppressed.
 */
void suppress_event(const char *action, const char *id, const char *message_id,
    const char *sender, const char *recipient, const char *pool, const char *campaign,
    const struct suppress_entry *e);

#define SUP_ADDR_MAX   254      /* normalised address, bytes (RFC 5321 path) */
#define SUP_SCOPE_MAX  255      /* scope, bytes; address + NUL + scope fits an LMDB key */
#define SUP_KEY_MAX    (SUP_ADDR_MAX + 1 + SUP_SCOPE_MAX)
#define SUP_SOURCE_MAX 127

/*
 * Normalise an address into out (cap >= SUP_ADDR_MAX + 1): surrounding
 * blanks and one pair of <> removed, the domain lower-cased without a
 * trailing dot, a non-ASCII domain label lower-cased and turned into its
 * A-label (xn--, RFC 3492), the local part kept as it is except for the
 * Gmail rule when gmail is true (gmail.com and googlemail.com: local part
 * lower-cased, dots and +tag removed, domain gmail.com). 0, or -1 when the
 * address is not a mailbox.
 */
int suppress_normalize(const char *address, bool gmail, char *out, size_t cap);
/* A scope as written ("", "global", "domain:Example.COM", "pool:NAME") into
 * its stored form ("", "domain:example.com", "pool:NAME"). 0 or -1. */
int suppress_scope_norm(const char *scope, char *out, size_t cap);

/* The store's key of (normalised address, stored scope); its length. */
size_t suppress_key(const char *norm, const char *scope, char *key);
/* Record (the value under the key): encode into buf (cap >= 12 +
 * SUP_SOURCE_MAX), returns the length; decode fills reason, time, source
 * and returns 0, or -1 for a record it cannot read. */
size_t suppress_rec_encode(const struct suppress_entry *e, unsigned char *buf, size_t cap);
int suppress_rec_decode(const void *val, size_t len, struct suppress_entry *e);
/* Split a key into e->address and e->scope. */
void suppress_key_split(const void *key, size_t klen, struct suppress_entry *e);

/* The soft-bounce run of an address (DB_SOFTBOUNCE record). */
struct suppress_softrun {
	uint32_t count;
	int64_t first_ms, last_ms;
};
/* Add one soft bounce at now_ms to run (a run older than window_ms starts
 * again); true when the run reaches n (n 0 = rule off: never). */
bool suppress_softrun_step(struct suppress_softrun *run, int64_t now_ms, int n,
    int64_t window_ms);
/* 1 and *run filled when address has a run, 0 none, -1 error. */
int suppress_softrun_get(const char *address, struct suppress_softrun *run);

/* Exact entry of (address, scope as written): 1 found, 0 none, -1 error or
 * a bad address/scope (errno EINVAL). */
int suppress_get(const char *address, const char *scope, struct suppress_entry *e);
/* Every entry of an address (each scope): calls fn per entry; returns the
 * number found, or -1. */
int suppress_get_all(const char *address, void (*fn)(const struct suppress_entry *, void *),
    void *arg);
/*
 * Synchronous changes for the control thread (never a loop): durable on
 * return. e->address and e->scope as written (put leaves them in stored
 * form); e->time 0 = now. put: 0, or -1 with err (bad address, scope or
 * store failure). remove: 1 removed, 0 there was none, -1 error.
 */
int suppress_put_wait(struct suppress_entry *e, char *err, size_t errlen);
int suppress_remove_wait(const char *address, const char *scope);

/*
 * Bulk writes: a batch of entries (already normalised: address and scope in
 * stored form, time set) applied in one write of the store's writer.
 * suppress_batch_submit() queues it and takes ownership; *failed (atomic,
 * may be NULL) is increased by the number of entries not written.
 */
struct suppress_batch {
	struct suppress_entry *v;
	size_t n, cap;
	unsigned long *failed;
};
struct suppress_batch *suppress_batch_new(size_t cap, unsigned long *failed);
void suppress_batch_submit(struct suppress_batch *b);

/*
 * Listing by time (the DB_SUPPRESS_T index), paged. Filters: reason (< 0 =
 * any), since (ms, 0 = from the start), scope (NULL = any; stored form).
 * cursor: NULL for the first page, else an opaque string from an earlier
 * page. fn gets each matching entry; at most limit entries are given and
 * at most `scan` index entries are read. next (cap >= SUP_CURSOR_MAX) is
 * set to the cursor of the next page, or "" at the end. Returns the
 * number of entries given, or -1 (bad cursor: errno EINVAL; store error).
 */
#define SUP_CURSOR_MAX (2 * (8 + SUP_KEY_MAX) + 1)
struct suppress_filter {
	int reason;
	int64_t since;
	const char *scope;
};
int suppress_list(const struct suppress_filter *f, const char *cursor, int limit, long scan,
    void (*fn)(const struct suppress_entry *, void *), void *arg, char *next);

/* Number of entries (every scope), or -1. */
long suppress_count(void);

/*
 * Walk every entry in key (address) order, `max` at a time: after is the
 * last key of the previous call (NULL/0 at the start); the last key given
 * is copied to last (cap SUP_KEY_MAX) with its length. Returns the number
 * of entries given (0 at the end), or -1.
 */
int suppress_scan(const void *after, size_t afterlen, int max,
    void (*fn)(const struct suppress_entry *, void *), void *arg, void *last,
    size_t *lastlen);

#endif
