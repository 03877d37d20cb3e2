/*
 * segment: segment membership over the control API (segment.h).
 *
 * A member record's value is the generation of the load that last wrote
 * it (the load's start time in ms, made unique): a replace keeps the
 * members of its own generation and deletes the others in one write at
 * the end, so a replace that fails half-way deletes nothing.
 */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "engage.h"
#include "log.h"
#include "segment.h"
#include "smtp_parse.h"
#include "store.h"
#include "util.h"
#include "variant.h"

#define ADDR_MAX 320

struct seg_load {
	char name[VARIANT_SEGMENT_MAX];
	bool replace;
	uint64_t gen;
	char **batch;                  /* addresses waiting to be written */
	size_t nbatch;
	long lines;                    /* addresses read */
	size_t written, added, removed;
	/* the first problem, which ends the load */
	int status;
	char err[512];
	const char *errcode;
	long errline;
	bool ended;
};

json_t *
segment_json_error(const char *code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';      /* the message echoes input: keep it valid UTF-8 */
	return json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
}

/* The store key of an address (engage's: members and recipients agree). */
static size_t
member_addr(const char *address, char *out, size_t cap)
{
	size_t n = engage_key(address, out, cap);

	if (n == 0 || n >= cap)
		return 0;
	out[n] = '\0';
	return n;
}

static size_t
member_key(const char *name, const char *addr, char *out, size_t cap)
{
	size_t ln = strlen(name), la = strlen(addr);

	if (ln + 1 + la > cap || ln + 1 + la > 511)
		return 0;
	memcpy(out, name, ln);
	out[ln] = '\0';
	memcpy(out + ln + 1, addr, la);
	return ln + 1 + la;
}

/* ---------------------------------------------------------------- writes */

struct batch_op {
	struct seg_load *l;
	char **addrs;
	size_t n;
};

static int
batch_apply(MDB_txn *txn, void *arg)
{
	struct batch_op *op = arg;
	struct seg_load *l = op->l;
	char key[600];
	size_t added = 0;
	int rc;

	for (size_t i = 0; i < op->n; i++) {
		size_t klen = member_key(l->name, op->addrs[i], key, sizeof(key));
		MDB_val k = { klen, key }, v;

		if (klen == 0)
			continue;               /* checked when read: cannot happen */
		rc = mdb_get(txn, store_dbi(DB_SEGMEMBER), &k, &v);
		if (rc == MDB_NOTFOUND)
			added++;
		else if (rc != 0)
			return rc;
		/* the recipient's one segment: engage moves it here (from the old
		 * segment's members, its history into this prior) */
		if ((rc = engage_set_segment_txn(txn, op->addrs[i], l->name)) != 0)
			return rc;
		/* then the generation, for a replace */
		v.mv_size = sizeof(l->gen);
		v.mv_data = &l->gen;
		if ((rc = mdb_put(txn, store_dbi(DB_SEGMEMBER), &k, &v, 0)) != 0)
			return rc;
	}
	l->added += added;
	return 0;
}

static void
flush_batch(struct seg_load *l)
{
	struct batch_op op = { l, l->batch, l->nbatch };

	if (l->nbatch == 0)
		return;
	if (l->status == 0 && !store_write_wait(batch_apply, &op)) {
		l->status = 503;
		l->errcode = "store_error";
		snprintf(l->err, sizeof(l->err), "the store refused the write (see the log); "
		    "%zu members were written before it", l->written);
	} else if (l->status == 0) {
		l->written += l->nbatch;
	}
	for (size_t i = 0; i < l->nbatch; i++)
		free(l->batch[i]);
	l->nbatch = 0;
}

/* Delete the members of other generations (replace) or all (gen 0). */
struct prune_op {
	const char *name;
	uint64_t keep;                 /* 0 = delete every member */
	size_t removed;
};

static int
prune_apply(MDB_txn *txn, void *arg)
{
	struct prune_op *op = arg;
	size_t plen = strlen(op->name) + 1, nold = 0, cap = 0;
	char **old = NULL;
	MDB_cursor *cur;
	MDB_val k = { plen, (void *)op->name }, v;
	int rc;

	/* first the members to remove, then the removal (no cursor games) */
	if ((rc = mdb_cursor_open(txn, store_dbi(DB_SEGMEMBER), &cur)) != 0)
		return rc;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		uint64_t gen = 0;

		if (k.mv_size < plen || memcmp(k.mv_data, op->name, plen) != 0)
			break;
		if (v.mv_size == sizeof(gen))
			memcpy(&gen, v.mv_data, sizeof(gen));
		if (op->keep != 0 && gen == op->keep)
			continue;
		if (nold == cap) {
			cap = cap ? cap * 2 : 1024;
			old = xrealloc(old, cap * sizeof(*old));
		}
		old[nold++] = xstrndup((const char *)k.mv_data + plen, k.mv_size - plen);
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		goto out;
	rc = 0;
	for (size_t i = 0; i < nold && rc == 0; i++) {
		char key[600];
		size_t klen = member_key(op->name, old[i], key, sizeof(key));
		MDB_val mk = { klen, key }, ak = { strlen(old[i]), old[i] }, av;

		if ((rc = mdb_del(txn, store_dbi(DB_SEGMEMBER), &mk, NULL)) != 0)
			break;
		op->removed++;
		/* its recipient record leaves the segment too (unless it moved on) */
		rc = mdb_get(txn, store_dbi(DB_RCPTSEG), &ak, &av);
		if (rc == 0 && av.mv_size == plen - 1 && memcmp(av.mv_data, op->name, plen - 1) == 0)
			rc = mdb_del(txn, store_dbi(DB_RCPTSEG), &ak, NULL);
		else if (rc == MDB_NOTFOUND)
			rc = 0;
	}
out:
	for (size_t i = 0; i < nold; i++)
		free(old[i]);
	free(old);
	return rc;
}

/* ---------------------------------------------------------------- the load */

struct seg_load *
segment_load_begin(const char *name, const char *mode, int *status, json_t **err)
{
	static uint64_t last_gen;
	struct seg_load *l;
	uint64_t gen;

	if (!variant_segment_ok(name) || strcmp(name, VARIANT_DEFAULT_GROUP) == 0) {
		*status = 400;
		*err = segment_json_error("bad_request", "invalid segment name (1-%d bytes, no control "
		    "characters or '/', not \"*\")", VARIANT_SEGMENT_MAX - 1);
		return NULL;
	}
	if (mode != NULL && strcmp(mode, "add") != 0 && strcmp(mode, "replace") != 0) {
		*status = 400;
		*err = segment_json_error("bad_request", "mode must be add or replace");
		return NULL;
	}
	if (!store_is_open()) {
		*status = 503;
		*err = segment_json_error("unavailable", "the store is not open");
		return NULL;
	}
	l = xcalloc(1, sizeof(*l));
	snprintf(l->name, sizeof(l->name), "%s", name);
	l->replace = mode != NULL && strcmp(mode, "replace") == 0;
	/* unique and never 0 (loads run on the control thread only) */
	gen = (uint64_t)now_ms();
	if (gen <= last_gen)
		gen = last_gen + 1;
	last_gen = l->gen = gen;
	l->batch = xcalloc(SEGMENT_BATCH, sizeof(*l->batch));
	return l;
}

static void
load_fail(struct seg_load *l, long n, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
load_fail(struct seg_load *l, long n, const char *code, const char *fmt, ...)
{
	va_list ap;

	if (l->status != 0)
		return;
	/* the lines before this one are written: the reply counts them */
	flush_batch(l);
	if (l->status != 0)
		return;
	l->status = 400;
	l->errcode = code;
	l->errline = n;
	va_start(ap, fmt);
	vsnprintf(l->err, sizeof(l->err), fmt, ap);
	va_end(ap);
}

void
segment_load_line(struct seg_load *l, const char *line, size_t len, long n)
{
	char buf[ADDR_MAX], addr[ADDR_MAX];
	const char *email;
	json_t *j = NULL;
	bool utf8 = false;

	if (l->status != 0)
		return;
	while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t' || line[len - 1] == '\r'))
		len--;
	while (len > 0 && (*line == ' ' || *line == '\t')) {
		line++;
		len--;
	}
	if (len == 0)
		return;
	if (*line == '{') {
		json_error_t je;
		json_t *e;

		j = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
		if (j == NULL || !json_is_object(j)) {
			load_fail(l, n, "bad_json", "line %ld: %s", n, j ? "not an object" : je.text);
			json_decref(j);
			return;
		}
		e = json_object_get(j, "email");
		if (!json_is_string(e)) {
			load_fail(l, n, "bad_request", "line %ld: \"email\" (a string) is required", n);
			json_decref(j);
			return;
		}
		email = json_string_value(e);
	} else {
		if (len >= sizeof(buf)) {
			load_fail(l, n, "invalid_address", "line %ld: the address is too long", n);
			return;
		}
		memcpy(buf, line, len);
		buf[len] = '\0';
		email = buf;
	}
	if (strlen(email) >= ADDR_MAX || !smtp_valid_mailbox(email, true, &utf8) ||
	    strchr(email, '@') == NULL) {
		load_fail(l, n, "invalid_address", "line %ld: invalid address \"%.200s\"", n, email);
		json_decref(j);
		return;
	}
	member_addr(email, addr, sizeof(addr));
	json_decref(j);
	l->lines++;
	l->batch[l->nbatch++] = xstrdup(addr);
	if (l->nbatch == SEGMENT_BATCH)
		flush_batch(l);
}

void
segment_load_too_long(struct seg_load *l, long n)
{
	load_fail(l, n, "line_too_long", "line %ld is too long", n);
}

void
segment_load_end(struct seg_load *l)
{
	if (l->ended)
		return;
	l->ended = true;
	flush_batch(l);
	if (l->status == 0 && l->replace) {
		struct prune_op op = { l->name, l->gen, 0 };

		if (!store_write_wait(prune_apply, &op)) {
			l->status = 503;
			l->errcode = "store_error";
			snprintf(l->err, sizeof(l->err), "the store refused removing the old members; "
			    "the %zu new ones are written", l->written);
		} else {
			l->removed = op.removed;
		}
	}
	log_info("event=segment-load segment=\"%s\" mode=%s lines=%ld written=%zu added=%zu "
	    "removed=%zu status=%d", l->name, l->replace ? "replace" : "add", l->lines, l->written,
	    l->added, l->removed, l->status ? l->status : 200);
}

static size_t
count_members(MDB_txn *txn, const char *name)
{
	size_t plen = strlen(name) + 1, n = 0;
	MDB_cursor *cur;
	MDB_val k = { plen, (void *)name }, v;
	int rc;

	if (mdb_cursor_open(txn, store_dbi(DB_SEGMEMBER), &cur) != 0)
		return 0;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size < plen || memcmp(k.mv_data, name, plen) != 0)
			break;
		n++;
	}
	mdb_cursor_close(cur);
	return n;
}

int
segment_load_reply(struct seg_load *l, json_t **out)
{
	MDB_txn *txn;
	size_t size = 0;

	segment_load_end(l);
	if (l->status != 0) {
		json_t *e = segment_json_error(l->errcode, "%s", l->err);

		json_object_set_new(json_object_get(e, "error"), "written", json_integer((json_int_t)l->written));
		if (l->errline > 0)
			json_object_set_new(json_object_get(e, "error"), "line", json_integer(l->errline));
		*out = e;
		return l->status;
	}
	if ((txn = store_rtxn()) != NULL) {
		size = count_members(txn, l->name);
		store_rdone(txn);
	}
	*out = json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I}", "segment", l->name,
	    "mode", l->replace ? "replace" : "add", "lines", (json_int_t)l->lines,
	    "written", (json_int_t)l->written, "added", (json_int_t)l->added,
	    "removed", (json_int_t)l->removed, "size", (json_int_t)size);
	return 200;
}

void
segment_load_free(struct seg_load *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->nbatch; i++)
		free(l->batch[i]);
	free(l->batch);
	free(l);
}

/* ---------------------------------------------------------------- reads */

/* The prior: the segment's decayed events, and its busiest hours of the week. */
static json_t *
prior_json(const char *name)
{
	static const char *const days[] = { "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun" };
	struct engage_rec rec;
	json_t *top = json_array();
	double total = 0, w[ENGAGE_SLOTS], decay = 1.0;
	int order[5], n = 0;
	int rc = engage_segment_get(name, &rec);

	if (rc <= 0) {
		json_decref(top);
		return json_null();
	}
	if (rec.hist_time > 0 && engage_half_life() > 0) {
		int64_t age = now_ms() - rec.hist_time;
		if (age > 0)
			decay = exp2(-(double)age / (double)engage_half_life());
	}
	for (int i = 0; i < ENGAGE_SLOTS; i++) {
		w[i] = rec.hist[i] * decay;
		total += w[i];
	}
	/* the five heaviest slots */
	for (int k = 0; k < 5; k++) {
		int best = -1;

		for (int i = 0; i < ENGAGE_SLOTS; i++) {
			bool taken = false;

			for (int j = 0; j < n; j++)
				taken |= order[j] == i;
			if (!taken && w[i] > 0 && (best < 0 || w[i] > w[best]))
				best = i;
		}
		if (best < 0)
			break;
		order[n++] = best;
	}
	for (int j = 0; j < n; j++) {
		char label[16];

		snprintf(label, sizeof(label), "%s %02d:00", days[order[j] / 24], order[j] % 24);
		json_array_append_new(top, json_pack("{s:s,s:i,s:f}", "hour", label,
		    "slot", order[j], "share", total > 0 ? w[order[j]] / total : 0.0));
	}
	return json_pack("{s:f,s:I,s:I,s:I,s:o}", "weight", total,
	    "events", (json_int_t)rec.events, "opens", (json_int_t)rec.opens,
	    "clicks", (json_int_t)rec.clicks, "top_hours", top);
}

json_t *
segment_members(const char *name, const char *after, size_t max, bool *more)
{
	json_t *a = json_array();
	MDB_txn *txn = store_rtxn();
	size_t plen = strlen(name) + 1;
	char key[600];
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	*more = false;
	if (txn == NULL)
		return a;
	if (after != NULL && *after != '\0') {
		char addr[ADDR_MAX];

		member_addr(after, addr, sizeof(addr));
		k.mv_size = member_key(name, addr, key, sizeof(key));
	} else {
		k.mv_size = plen;
		memcpy(key, name, plen);
	}
	k.mv_data = key;
	if (k.mv_size == 0 || mdb_cursor_open(txn, store_dbi(DB_SEGMEMBER), &cur) != 0) {
		store_rdone(txn);
		return a;
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size < plen || memcmp(k.mv_data, name, plen) != 0)
			break;
		/* "after" is exclusive */
		if (after != NULL && *after != '\0' && k.mv_size - plen == strlen(after) &&
		    strncasecmp((const char *)k.mv_data + plen, after, k.mv_size - plen) == 0)
			continue;
		if (json_array_size(a) == max) {
			*more = true;
			break;
		}
		json_array_append_new(a, json_stringn((const char *)k.mv_data + plen, k.mv_size - plen));
	}
	mdb_cursor_close(cur);
	store_rdone(txn);
	return a;
}

/* The member count of segment name (a valid name, the store open): 0, or
 * the HTTP status with the error reply in *out. */
static int
named_size(const char *name, size_t *size, json_t **out)
{
	MDB_txn *txn;

	if (!variant_segment_ok(name)) {
		*out = segment_json_error("bad_request", "invalid segment name");
		return 400;
	}
	if ((txn = store_rtxn()) == NULL) {
		*out = segment_json_error("unavailable", "the store is not open");
		return 503;
	}
	*size = count_members(txn, name);
	store_rdone(txn);
	return 0;
}

int
segment_get(const char *name, json_t **out)
{
	size_t size;
	int status;
	json_t *prior;

	if ((status = named_size(name, &size, out)) != 0)
		return status;
	prior = prior_json(name);
	if (size == 0 && json_is_null(prior)) {
		json_decref(prior);
		*out = segment_json_error("not_found", "no segment \"%s\"", name);
		return 404;
	}
	*out = json_pack("{s:s,s:I,s:o}", "segment", name, "size", (json_int_t)size, "prior", prior);
	return 200;
}

int
segment_list(json_t **out)
{
	MDB_txn *txn = store_rtxn();
	json_t *a = json_array();
	MDB_cursor *cur;
	MDB_val k, v;
	char name[VARIANT_SEGMENT_MAX] = "";
	size_t count = 0;
	int rc;

	if (txn == NULL) {
		json_decref(a);
		*out = segment_json_error("unavailable", "the store is not open");
		return 503;
	}
	if (mdb_cursor_open(txn, store_dbi(DB_SEGMEMBER), &cur) != 0) {
		store_rdone(txn);
		json_decref(a);
		*out = segment_json_error("store_error", "cannot read the segments");
		return 500;
	}
	/* one pass: members are sorted by segment */
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		const char *seg = k.mv_data;
		size_t sl = strnlen(seg, k.mv_size);

		if (sl == k.mv_size || sl >= sizeof(name))
			continue;
		if (strlen(name) != sl || memcmp(name, seg, sl) != 0) {
			if (count > 0)
				json_array_append_new(a, json_pack("{s:s,s:I}", "segment", name,
				    "size", (json_int_t)count));
			memcpy(name, seg, sl);
			name[sl] = '\0';
			count = 0;
		}
		count++;
	}
	if (count > 0)
		json_array_append_new(a, json_pack("{s:s,s:I}", "segment", name, "size", (json_int_t)count));
	mdb_cursor_close(cur);
	store_rdone(txn);
	*out = json_pack("{s:o}", "segments", a);
	return 200;
}

static int
drop_prior(MDB_txn *txn, void *arg)
{
	const char *name = arg;
	MDB_val k = { strlen(name), (void *)name };
	int rc = mdb_del(txn, store_dbi(DB_SEGMENT), &k, NULL);

	return rc == MDB_NOTFOUND ? 0 : rc;
}

int
segment_delete(const char *name, json_t **out)
{
	struct prune_op op = { name, 0, 0 };
	size_t size;
	struct engage_rec rec;
	int prior, status;

	if ((status = named_size(name, &size, out)) != 0)
		return status;
	prior = engage_segment_get(name, &rec);
	if (size == 0 && prior <= 0) {
		*out = segment_json_error("not_found", "no segment \"%s\"", name);
		return 404;
	}
	if (!store_write_wait(prune_apply, &op) || !store_write_wait(drop_prior, (void *)name)) {
		*out = segment_json_error("store_error", "the store refused the delete (see the log)");
		return 503;
	}
	log_info("event=segment-delete segment=\"%s\" removed=%zu", name, op.removed);
	*out = json_pack("{s:s,s:b,s:I}", "segment", name, "deleted", 1,
	    "removed", (json_int_t)op.removed);
	return 200;
}
