/*
 * engage: per-recipient engagement records in the LMDB store (store.h),
 * the input of send-time optimisation, scoring and list hygiene.
 *
 * The histogram is 168 hour-of-week slots (UTC; slot 0 = Monday 00:00),
 * exponentially decayed: each slot holds sum(weight), weight =
 * 2^(-(hist_time - event_time) / half-life); reading it at a later time
 * multiplies every slot by 2^(-(now - hist_time) / half-life).
 */
#ifndef SLUICE_ENGAGE_H
#define SLUICE_ENGAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENGAGE_SLOTS 168

enum engage_type {
	EV_OPEN, EV_CLICK, EV_UNSUBSCRIBE, EV_COMPLAINT, EV_CONVERSION, EV_SEND, EV_BOUNCE,
	EV_SOFT_BOUNCE,        /* a transient failure; soft_bounces counts the run since the last send */
};

struct engage_rec {
	float hist[ENGAGE_SLOTS];      /* decayed open/click weight per hour of week */
	int64_t hist_time;             /* ms: the time the slots are decayed to */
	int64_t first_seen, last_send, last_open, last_click, last_bounce, last_complaint;
	uint32_t sends, opens, clicks, bounces, soft_bounces, complaints, unsubscribes,
	    conversions;
	uint32_t events;               /* opens + clicks counted into the histogram */
};

const char *engage_type_name(enum engage_type t);
int engage_type_parse(const char *s, enum engage_type *out);

/* Read a recipient's record (address normalised by the caller or not):
 * 1 found, 0 none (rec zeroed), -1 store error. */
int engage_get(const char *address, struct engage_rec *rec);
/* Queue one event for address (asynchronous, batched by the writer). */
void engage_note(const char *address, enum engage_type type, int64_t time_ms,
    const char *campaign);

/* A recipient's segment (one per recipient; the last one set wins), set by
 * the segments API and by a campaign recipient's "segment". */
void engage_set_segment(const char *address, const char *segment);
int engage_get_segment(const char *address, char *segment, size_t cap);
/* Priors: a segment's histogram (the decayed events of its members) and
 * the global one (every event). 1 found, 0 none, -1 error. */
int engage_segment_get(const char *segment, struct engage_rec *rec);
int engage_global_get(struct engage_rec *rec);

/* ---- additions for the campaign engine, the importer and tests ---- */

#include <lmdb.h>

/* The half-life of the histograms (the engagement-half-life directive). */
int64_t engage_half_life(void);
/* The store key of an address (lower-cased); returns its length. */
size_t engage_key(const char *address, char *out, size_t cap);
/* The compact on-disk form (see engage.c): at most ENGAGE_MAX_ENCODED bytes. */
#define ENGAGE_MAX_ENCODED (72 + 3 * ENGAGE_SLOTS)
size_t engage_encode(const struct engage_rec *r, unsigned char *buf);
int engage_decode(const void *data, size_t len, struct engage_rec *r);
/* Inside a write transaction (the writer thread): apply one event to the
 * recipient keyed `key` (engage_key form) and to the priors. */
int engage_apply_txn(MDB_txn *txn, const char *key, size_t klen, enum engage_type type,
    int64_t time_ms);
/* Inside a write transaction: set the segment (its history joins the
 * segment's prior when the recipient moves in). */
int engage_set_segment_txn(MDB_txn *txn, const char *address, const char *segment);
/* In a caller's read transaction: 1 found, 0 none (zeroed), -1 error. */
int engage_get_txn(MDB_txn *txn, const char *address, struct engage_rec *rec);

#endif
