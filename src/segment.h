/*
 * segment: named sets of recipients pushed over the control API
 * (PUT/GET/DELETE /v1/segments/NAME, GET /v1/segments), kept in the LMDB
 * store: DB_SEGMEMBER (segment \0 address -> the load that wrote it) and,
 * through engage.h, each member's one segment (the last one set wins) and
 * the segment's prior histogram.
 *
 * A PUT body is read line by line as it arrives (NDJSON {"email": ...}
 * objects or plain addresses, one a line) and written in batches; every
 * batch is durable before the next is read and the reply says how many
 * members were written. `add` keeps the members already there; `replace`
 * removes, when the body is complete, every member the body did not name.
 * A bad line ends the request with 400 naming the line: members written
 * before it stay (nothing is lost or half-written), and a replace that
 * failed removes nobody.
 *
 * Functions here run on the control thread; replies are an HTTP status and
 * a JSON body.
 */
#ifndef SLUICE_SEGMENT_H
#define SLUICE_SEGMENT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#define SEGMENT_BATCH 10000            /* addresses per store write */

struct seg_load;
/* A PUT /v1/segments/NAME?mode=... request: NULL with *status and *err for a
 * bad name or mode. */
struct seg_load *segment_load_begin(const char *name, const char *mode, int *status,
    json_t **err);
void segment_load_line(struct seg_load *l, const char *line, size_t len, long n);
void segment_load_too_long(struct seg_load *l, long n);
void segment_load_end(struct seg_load *l);
int segment_load_reply(struct seg_load *l, json_t **out);
void segment_load_free(struct seg_load *l);

int segment_get(const char *name, json_t **out);
int segment_list(json_t **out);
int segment_delete(const char *name, json_t **out);

/* The members of name (up to max, from after `after`, "" = the start) as a
 * JSON array; *more when there are others after them. */
json_t *segment_members(const char *name, const char *after, size_t max, bool *more);

/* {"error": {"code": code, "message": ...}} */
json_t *segment_json_error(const char *code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
