/*
 * inbound: reports in, events and suppression out (inbound.h).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bounce.h"
#include "conf.h"
#include "inbound.h"
#include "log.h"
#include "report.h"
#include "store.h"
#include "suppress.h"
#include "util.h"
#include "verp.h"

/* The send a report is about: a token (verified) and what the store
 * remembers of it (found), or nothing. */
struct target {
	bool verified, found;
	struct verp_token tok;
	struct verp_send vs;
};

static void
target_load(struct target *t, const struct verp_token *tok)
{
	memset(t, 0, sizeof(*t));
	t->verified = true;
	t->tok = *tok;
	t->found = verp_lookup(tok->qid, tok->idx, &t->vs) == 1;
	if (!t->found) {
		/* the record is written behind the delivery: a report that comes
		 * right after it may find it still queued (we are on the job
		 * pool, where waiting for the writer is allowed) */
		store_flush();
		t->found = verp_lookup(tok->qid, tok->idx, &t->vs) == 1;
	}
}

/* A token in the original message's Return-Path (FBL reports, and bounces
 * that reach an FBL mailbox). */
static bool
token_from_original(const struct report *rep, struct verp_token *tok)
{
	const struct config *c = conf;
	const char *local;
	size_t llen;

	return rep->orig_return_path != NULL && c->verp_key != NULL &&
	    verp_is_bounce_domain(c, rep->orig_return_path, &local, &llen) &&
	    verp_check(c->verp_key, c->verp_keylen, local, llen, tok) == 1;
}

static void
common_fields(struct jbuf *j, const struct inbound *in, const struct target *t,
    const struct report *rep)
{
	jb_str(j, "id", t->verified ? t->tok.qid : NULL);
	if (t->verified)
		jb_int(j, "rcpt_index", t->tok.idx);
	if (t->found) {
		jb_str(j, "message_id", t->vs.message_id[0] ? t->vs.message_id : NULL);
		jb_str(j, "sender", t->vs.sender);
		jb_str(j, "campaign", t->vs.campaign[0] ? t->vs.campaign : NULL);
		jb_str(j, "pool", t->vs.pool[0] ? t->vs.pool : NULL);
	} else
		jb_str(j, "message_id", rep->orig_message_id);
	jb_bool(j, "async", true);
	jb_bool(j, "verified", t->verified);
	jb_str(j, "report", report_type_name(rep->type));
	jb_str(j, "report_ip", in->ip);
}

/*
 * Suppression of a verified send, as queue.c does for synchronous replies
 * (suppress_note_failure). Returns 1 when an entry (or a soft-bounce count)
 * was queued.
 */
static int
suppress_async_bounce(const char *rcpt, const struct bounce_class *bc, const char *qid)
{
	char src[64];

	snprintf(src, sizeof(src), "async-bounce %s", qid);
	return suppress_note_failure(rcpt, bc->ses_type, bc->ses_subtype, bc->category, src);
}

static int
suppress_complaint(const char *rcpt, const char *qid)
{
	char src[64];

	snprintf(src, sizeof(src), "complaint %s", qid);
	suppress_add(rcpt, SUP_COMPLAINT, "", src);
	return 1;
}

/* The reply code a DSN recipient stands for: the one its diagnostic
 * starts with, else its status class. */
static int
reply_code(const struct report_rcpt *rc)
{
	const char *d = rc->diag;

	if (d && d[0] >= '2' && d[0] <= '5' && d[1] >= '0' && d[1] <= '9' && d[2] >= '0' &&
	    d[2] <= '9' && (d[3] == ' ' || d[3] == '-' || d[3] == '\0'))
		return (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
	if (rc->status && (rc->status[0] == '4' || rc->status[0] == '5'))
		return (rc->status[0] - '0') * 100;
	return 0;
}

static void
bounce_event(struct inbound *in, const struct target *t, const struct report *rep)
{
	const struct report_rcpt *rc = report_pick(rep, t->found ? t->vs.rcpt : NULL);
	const char *rcpt;
	struct bounce_class bc;
	struct jbuf j;
	bool delayed;
	int code;

	if (rc == NULL)
		return;
	rcpt = t->found ? t->vs.rcpt : rc->final_rcpt ? rc->final_rcpt : rc->orig_rcpt;
	if (rc->action == NULL || (strcmp(rc->action, "failed") != 0 &&
	    strcmp(rc->action, "delayed") != 0)) {
		log_info("event=report-notice sid=%s id=%s rcpt=%s action=%s", in->sid,
		    t->verified ? t->tok.qid : "-", rcpt ? rcpt : "-", rc->action ? rc->action : "-");
		return;
	}
	delayed = strcmp(rc->action, "delayed") == 0;
	code = reply_code(rc);
	bounce_classify(conf->bounce, code, rc->status, rc->diag, &bc);
	jb_init(&j);
	jb_str(&j, "type", delayed ? "transient" : "bounce");
	jb_str(&j, "recipient", rcpt);
	common_fields(&j, in, t, rep);
	jb_str(&j, "status", rc->status);
	if (code)
		jb_int(&j, "code", code);
	jb_str(&j, "reply", rc->diag);
	jb_str(&j, "category", bc.category);
	jb_str(&j, "ses_type", bc.ses_type);
	jb_str(&j, "ses_subtype", bc.ses_subtype);
	jb_str(&j, "remote_mta", rc->remote_mta);
	jb_str(&j, "reporting_mta", rep->reporting_mta);
	acct_emit(&j);
	in->events++;
	log_info("event=async-%s sid=%s id=%s rcpt=%s status=%s category=%s verified=%s",
	    delayed ? "transient" : "bounce", in->sid, t->verified ? t->tok.qid : "-",
	    rcpt ? rcpt : "-", rc->status ? rc->status : "-", bc.category,
	    t->verified ? "yes" : "no");
	/* only the address the send record binds to the token: the body of a
	 * report is the sender's word, and a token without a record (never
	 * delivered, or older than verp-expire) must not suppress whoever the
	 * report names */
	if (!delayed && t->found)
		in->suppressed += suppress_async_bounce(t->vs.rcpt, &bc, t->tok.qid);
	else if (!delayed && t->verified)
		log_info("event=report-unbound sid=%s id=%s rcpt=%s msg=\"no send record: not suppressed\"",
		    in->sid, t->tok.qid, rcpt ? rcpt : "-");
}

static void
complaint_event(struct inbound *in, const struct target *t, const struct report *rep)
{
	char *to = NULL;
	const char *rcpt;
	struct jbuf j;

	if (t->found)
		rcpt = t->vs.rcpt;
	else if (rep->norig_rcpt_to > 0)
		rcpt = rep->original_rcpt_to[0];
	else
		rcpt = to = report_addr(rep->orig_to);
	if (rep->feedback_type && strcmp(rep->feedback_type, "not-spam") == 0) {
		log_info("event=report-not-spam sid=%s id=%s rcpt=%s", in->sid,
		    t->verified ? t->tok.qid : "-", rcpt ? rcpt : "-");
		free(to);
		return;
	}
	jb_init(&j);
	jb_str(&j, "type", "complaint");
	jb_str(&j, "recipient", rcpt);
	common_fields(&j, in, t, rep);
	jb_str(&j, "feedback_type", rep->feedback_type);
	jb_str(&j, "user_agent", rep->user_agent);
	jb_str(&j, "source_ip", rep->source_ip);
	jb_str(&j, "arrival_date", rep->arrival_date);
	jb_str(&j, "reported_domain", rep->reported_domain);
	acct_emit(&j);
	in->events++;
	log_info("event=complaint sid=%s id=%s rcpt=%s feedback-type=%s verified=%s", in->sid,
	    t->verified ? t->tok.qid : "-", rcpt ? rcpt : "-", rep->feedback_type,
	    t->verified ? "yes" : "no");
	if (t->found)
		in->suppressed += suppress_complaint(t->vs.rcpt, t->tok.qid);
	else if (t->verified)
		log_info("event=report-unbound sid=%s id=%s rcpt=%s msg=\"no send record: not suppressed\"",
		    in->sid, t->tok.qid, rcpt ? rcpt : "-");
	free(to);
}

void
inbound_process(struct inbound *in)
{
	struct report rep;
	struct target *targets;
	int nt = 0;

	report_parse(in->data, in->len, &rep);
	targets = xcalloc((size_t)in->ntok + 1, sizeof(*targets));
	for (int i = 0; i < in->ntok; i++)
		target_load(&targets[nt++], &in->tok[i]);
	if (nt == 0) {
		struct verp_token tok;
		if (token_from_original(&rep, &tok))
			target_load(&targets[nt++], &tok);
		else
			memset(&targets[nt++], 0, sizeof(*targets));   /* unverified */
	}
	log_info("event=report sid=%s ip=%s type=%s targets=%d%s", in->sid, in->ip,
	    report_type_name(rep.type), nt, rep.broken ? " mime=broken" : "");

	for (int i = 0; i < nt; i++) {
		const struct target *t = &targets[i];
		if (t->verified && !t->found)
			log_info("event=verp-unknown sid=%s id=%s rcpt-index=%u "
			    "msg=\"no send record (expired?)\"", in->sid, t->tok.qid, t->tok.idx);
		switch (rep.type) {
		case REPORT_DSN:
		case REPORT_BOUNCE:
			bounce_event(in, t, &rep);
			break;
		case REPORT_ARF:
			complaint_event(in, t, &rep);
			break;
		case REPORT_AUTOREPLY:
			log_info("event=auto-reply sid=%s id=%s rcpt=%s sign=%s subject=\"%.80s\"",
			    in->sid, t->verified ? t->tok.qid : "-", t->found ? t->vs.rcpt : "-",
			    rep.autoreply_sign, rep.subject ? rep.subject : "");
			break;
		case REPORT_UNKNOWN:
			log_info("event=report-unrecognised sid=%s id=%s subject=\"%.80s\"", in->sid,
			    t->verified ? t->tok.qid : "-", rep.subject ? rep.subject : "");
			break;
		}
	}
	free(targets);
	report_free(&rep);
}

void
inbound_free(struct inbound *in)
{
	if (in == NULL)
		return;
	free(in->sender);
	free(in->data);
	free(in);
}
