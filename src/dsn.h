/*
 * dsn: delivery status notifications (RFC 3464 multipart/report) for
 * recipients that bounced or expired, sent to the envelope sender unless it
 * is null or the message asked for none.
 */
#ifndef SLUICE_DSN_H
#define SLUICE_DSN_H

#include "queue.h"

/* Build the DSN message text in wire form (malloc'd), for tests too. */
char *dsn_build(const struct qmsg *m, int idx, const struct smtp_reply *reply,
    const struct attempt_info *ai, bool expired, size_t *len);

#endif
