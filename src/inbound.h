/*
 * inbound: what happens to a message that came in for the bounce domain or
 * a feedback-loop address (the SMTP listener accepts those from anyone).
 * The message is parsed (report.h), mapped back to the send it is about
 * (the VERP token of the envelope recipient, or the one in the original
 * message's Return-Path), and turned into accounting events: `bounce` and
 * `transient` (async: true) for DSNs and text bounces, `complaint` for ARF
 * reports; permanent bounces and complaints enter the suppression list.
 * Auto-replies and unrecognised mail are logged, nothing more.
 *
 * Only a send named by a token whose HMAC is valid is "verified": reports
 * that name an address without one (anyone can mail an FBL address) give
 * an event with verified: false and never suppress anything.
 */
#ifndef SLUICE_INBOUND_H
#define SLUICE_INBOUND_H

#include <stdbool.h>
#include <stddef.h>

#include "verp.h"

#define INBOUND_MAX_TOKENS 16

struct inbound {
	char sid[16];                  /* SMTP session, for log lines */
	char ip[64];                   /* client that delivered the report */
	char *sender;                  /* its MAIL FROM ("" = null) */
	struct verp_token tok[INBOUND_MAX_TOKENS];   /* valid tokens of the RCPTs */
	int ntok;
	bool fbl;                      /* (also) addressed to an FBL mailbox */
	char *data;                    /* the message, not dot-stuffed */
	size_t len;
	int events;                    /* out: accounting events written */
	int suppressed;                /* out: suppression entries queued */
};

/* Parse and act (any thread; blocking reads of the store). */
void inbound_process(struct inbound *in);
void inbound_free(struct inbound *in);

#endif
