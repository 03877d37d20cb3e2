/*
 * suppress_io: the suppression list in and out of text — bulk import of CSV
 * or NDJSON lines (streamed: a bounded batch at a time through the store's
 * writer, with back-pressure), export lines, JSON objects for the API, and
 * the time values the API and the CLI take.
 */
#ifndef SLUICE_SUPPRESS_IO_H
#define SLUICE_SUPPRESS_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "suppress.h"
#include "util.h"

#define SUP_IMPORT_BATCH   2000     /* entries per store write */
#define SUP_IMPORT_BACKLOG 4        /* store writes queued before the importer waits */
#define SUP_IMPORT_ERRORS  10       /* errors reported by line */

/*
 * A time: RFC 3339 ("2026-11-23T10:00:00Z", "2026-11-23", with .mmm or
 * +HH:MM), seconds or milliseconds since the epoch (digits; more than 11
 * digits = ms), or a duration back from now ("7d" = seven days ago).
 * 0 or -1.
 */
int suppress_parse_time(const char *s, int64_t now, int64_t *out_ms);

/* Normalise e->address and e->scope in place (stored form); checks the
 * reason; sets time to now when 0. 0, or -1 with err. */
int suppress_entry_prepare(struct suppress_entry *e, char *err, size_t errlen);

enum sup_col { SC_ADDRESS, SC_REASON, SC_SCOPE, SC_TIME, SC_SOURCE, SC_IGNORE };

struct suppress_import {
	/* set by the caller (suppress_import_init) */
	bool ndjson;
	enum suppress_reason reason;   /* for lines without one */
	char scope[SUP_SCOPE_MAX + 1]; /* for lines without one (as written) */
	char source[SUP_SOURCE_MAX + 1];
	long line;                     /* number of the last line read */
	/* results */
	unsigned long imported, invalid, skipped;
	unsigned long failed;          /* entries the store did not write (atomic) */
	int nerr;
	struct { long line; char msg[200]; } err[SUP_IMPORT_ERRORS];
	/* private */
	bool first;                    /* no data line seen yet: a header may come */
	enum sup_col cols[8];
	int ncols;
	int64_t now;
	struct suppress_batch *b;
};

/* first_line: the number of the first line (a client sending a file in
 * parts numbers each part from where it is in the file). */
void suppress_import_init(struct suppress_import *im, bool ndjson, enum suppress_reason reason,
    const char *scope, const char *source, long first_line);
/* One line (without its line end; modified in place). */
void suppress_import_line(struct suppress_import *im, char *line, size_t len);
/* Write what is left and wait until everything is durable. 0, or -1 when
 * the store failed to write some entries (im->failed). */
int suppress_import_finish(struct suppress_import *im);

/* Export lines (with "\n"); the CSV header line. */
extern const char suppress_csv_header[];
void suppress_format_csv(const struct suppress_entry *e, struct sbuf *out);
void suppress_format_ndjson(const struct suppress_entry *e, struct sbuf *out);

#endif
