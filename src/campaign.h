/*
 * campaign: campaigns (one template, many recipients with variables), the
 * scheduled queue, send-time optimisation and the engagement import.
 *
 * A campaign is stored once in the store (DB_CAMPAIGN: a small header with
 * the counters, and the definition with its templates); each recipient is
 * one record (DB_CRCPT: address, variables, segment, the planned send time
 * and why) and one entry in the scheduled queue (DB_CSCHED, ordered by send
 * time). Nothing of a campaign sits in the delivery queue until it is due:
 * a timer on worker 0 takes due entries in batches, renders each message
 * from the template and the recipient's variables, and injects it like any
 * other message (inject.c: headers, DKIM, spool fsync, queue_add). The
 * scheduled queue is the store, so it survives a restart.
 *
 * Request bodies are NDJSON streamed line by line (ctl_stream.h) and
 * written in batches; a campaign or a recipient batch is durable before
 * the 2xx, and a request that fails half-way leaves nothing behind.
 */
#ifndef SLUICE_CAMPAIGN_H
#define SLUICE_CAMPAIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "sto.h"

struct evbuffer;
struct spool_msg;
struct sbuf;

#define CAMP_ID_MAX 64
#define CAMP_BATCH 10000       /* recipients per store write while loading */

/* Recipient states (and the campaign's counters, one per state). */
enum crcpt_state {
	CR_SCHEDULED, CR_QUEUED, CR_DELIVERED, CR_BOUNCED, CR_SUPPRESSED, CR_SKIPPED,
	CR_CANCELLED, CR_NSTATES
};
const char *crcpt_state_name(enum crcpt_state s);

/* ---- templates: text with {{name}} and {{name|default}} ---- */
struct tpl;
struct tpl *tpl_compile(const char *src, char *err, size_t errlen);
void tpl_free(struct tpl *t);
/* The first variable that vars (an object, may be NULL) lacks and that has
 * no default; NULL when every one has a value. "email" is always given. */
const char *tpl_missing(const struct tpl *t, json_t *vars);
/* Append the rendering; html escapes the values (not the template). */
void tpl_render(const struct tpl *t, json_t *vars, const char *email, bool html,
    struct sbuf *out);

/* ---- a send-time decision ---- */
struct camp_decision {
	int64_t send_at;
	enum sto_reason reason;
	uint32_t events;               /* the recipient's opens + clicks (raw count) */
	double effective_events;       /* decayed to the planning time */
	double weight;                 /* the recipient's own weight; the prior has 1 - weight */
	bool segment_prior;            /* the prior was the segment's (else the global one) */
	char segment[128];
	int64_t window_start, window_end;
	struct sto_choice choice;
};
/* Priors read once per batch of recipients. */
struct prior_cache;
struct prior_cache *prior_cache_new(void);
void prior_cache_reset(struct prior_cache *pc);
void prior_cache_free(struct prior_cache *pc);
/*
 * Plan one recipient inside a read transaction (txn from store_rtxn()):
 * window [max(start_at, now), start_at + max_delay]; max_delay 0 or sto
 * off sends at the window's start.
 */
void campaign_plan(void *txn, struct prior_cache *pc, const char *campaign_id,
    int64_t start_at, int64_t max_delay, bool sto, int64_t now, const char *email,
    const char *segment, struct camp_decision *d);

/* ---- streamed NDJSON requests (control thread) ---- */
struct nd_load;
/* POST /v1/campaigns, POST /v1/campaigns/ID/recipients, POST /v1/events:
 * a load for the request, NULL for any other. */
struct nd_load *nd_load_begin(const char *method, const char *path);
void nd_load_line(struct nd_load *l, const char *line, size_t len, long n);
void nd_load_too_long(struct nd_load *l, long n);
void nd_load_end(struct nd_load *l);
/* The answer: HTTP status and a JSON body, or (dry run) an NDJSON plan. */
int nd_load_reply(struct nd_load *l, json_t **json, struct evbuffer **ndjson);
/* Free; a load that did not succeed is rolled back. */
void nd_load_free(struct nd_load *l);

/* ---- the other endpoints (control thread); status code, JSON in *out ---- */
int campaign_status(const char *id, json_t **out);
int campaign_cancel(const char *id, json_t **out);
int campaign_explain(const char *id, const char *email, json_t **out);
int campaign_list(json_t **out);
/* GET /v1/campaigns/ID/variants (Thompson sampling figures, bandit.h). */
int campaign_variants(const char *id, json_t **out);

/* ---- the scheduler (worker 0) and the hooks of the queue ---- */
void campaign_start(void);             /* after the spool is loaded */
struct worker;
/* From a worker's fini (after its loop): the scheduler's timer and caches. */
void campaign_worker_fini(struct worker *w);
/* A delivery, bounce or expiry of a message that carries a campaign. */
void campaign_note_outcome(const struct spool_msg *m, int idx, int rcpt_state);
/* A campaign message found in the spool at startup: its recipients are
 * queued already (a crash between the spool write and the store commit). */
void campaign_note_spooled(const struct spool_msg *m);

#endif
