/*
 * dsn: delivery status notifications (RFC 3464 multipart/report) for
 * recipients that bounced or expired, sent to the envelope sender unless it
 * is null, the message asked for none (X-Sluice-Notify: never), the
 * recipient's NOTIFY excludes FAILURE, or the message is itself a DSN.
 * The returned content is the original header block (RET=HDRS behaviour,
 * also for RET=FULL: an ESP does not mail bodies back).
 */
#ifndef SLUICE_DSN_H
#define SLUICE_DSN_H

#include "queue.h"

/*
 * Build the DSN message (headers and body; CRLF line ends, not dot-stuffed:
 * dot_stuff() makes it wire form) for recipient idx of m, malloc'd. The
 * original headers are read from the spool file (m->path at body_off);
 * when that fails the report has no third part. For tests too.
 */
char *dsn_build(const struct qmsg *m, int idx, const struct smtp_reply *reply,
    const struct attempt_info *ai, bool expired, size_t *len);
/* The same with the original header block given (wire form, dot-stuffed,
 * or NULL): pure apart from the clock and the global config's hostname. */
char *dsn_build_with(const struct qmsg *m, int idx, const struct smtp_reply *reply,
    const struct attempt_info *ai, bool expired, const char *hdrs, size_t hlen,
    size_t *len);
/* Whether a failure of recipient idx of m gets a DSN. */
bool dsn_wanted(const struct qmsg *m, int idx);

#endif
