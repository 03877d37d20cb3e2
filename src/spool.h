/*
 * spool: messages in slot files. A slot is a file q/XX/N that keeps its
 * name for ever. spool_write() group-commits: concurrent writers' messages
 * go one after another into one spare slot, rewritten in place, with one
 * fdatasync for all of them, which is their commit; each message's END
 * line carries a CRC-32C of its envelope and body, and the messages of a
 * batch share a random nonce, so a torn rewrite or an older batch's bytes
 * are never taken for a message. A new slot (no spare left) is created and
 * its directory fsync'd too. Per-recipient status records are appended
 * after the messages (not fsync'd: losing one can only cause the
 * documented duplicate delivery). When every message of a slot is
 * finished, its first byte is overwritten ("XLUICE") and it becomes a
 * spare. The layout is described in queue/README.
 *
 * The body is stored in wire form: CRLF line ends, dot-stuffed, without the
 * final ".\r\n", so delivery sends it as is and adds ".\r\n".
 */
#ifndef SLUICE_SPOOL_H
#define SLUICE_SPOOL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define QID_LEN 26                  /* random_id() */

/* Message flags (stored). */
#define MF_8BITMIME    0x01         /* body has 8-bit content / BODY=8BITMIME */
#define MF_SMTPUTF8    0x02         /* needs SMTPUTF8 (UTF-8 envelope or headers) */
#define MF_NOTIFY_NEVER 0x04        /* X-Sluice-Notify: never: no DSN on failure */
#define MF_DSN         0x08         /* this message is a bounce we generated */
#define MF_RET_HDRS    0x10         /* DSN RET=HDRS */
#define MF_SIGNED      0x20         /* DKIM signature is in the stored headers */
#define MF_RET_FULL    0x40         /* DSN RET=FULL: a failure returns the whole message */

/* Recipient states (stored as status records). */
enum rcpt_state { RS_QUEUED = 0, RS_DELIVERED, RS_BOUNCED, RS_EXPIRED, RS_DELETED };

/* DSN NOTIFY bits (RFC 3461). */
#define NOTIFY_SUCCESS 0x1
#define NOTIFY_FAILURE 0x2
#define NOTIFY_DELAY   0x4
#define NOTIFY_NEVER   0x8

struct spool_rcpt {
	char *addr;
	char *orcpt;                    /* ORCPT= as given (xtext decoded), or NULL */
	uint8_t notify;                 /* NOTIFY_* ; 0 = default (failure) */
	uint8_t state;                  /* enum rcpt_state */
	uint16_t attempts;
	int64_t next_ms;                /* next attempt (0 = now) */
};

struct spool_meta { char *key, *value; };   /* X-Sluice-* values, e.g. "campaign" */

/* Fields ordered so that a queued message wastes no padding (queue.h). */
struct spool_msg {
	char id[QID_LEN + 1];
	int priority;                   /* higher first; default 0 */
	int64_t created_ms;
	char *sender;                   /* "" = null reverse-path */
	char *pool, *campaign, *envid;  /* may be NULL */
	struct spool_meta *meta;
	struct spool_rcpt *rcpts;
	off_t body_off;                 /* set by spool_write / spool_load */
	size_t body_len;
	uint32_t flags;                 /* MF_* */
	int nmeta, nrcpt;
	uint32_t slot;                  /* its file; set by spool_write / spool_scan */
};

/*
 * Open the spool: create DIR/tmp and DIR/q/XX and keep a descriptor of each
 * q/XX. One spool per process; calling it again switches to another (unit
 * tests). Returns 0 or -1 with a message in err.
 */
int spool_init(const char *dir, char *err, size_t errlen);

/* Path of a slot's file, DIR/q/XX/N, into buf (logs, tests). */
const char *spool_file(uint32_t slot, char *buf, size_t len);

/*
 * Write a message durably into a slot, with whatever other threads are
 * writing at the same time (blocking: call from a job thread), and set
 * m->slot and m->body_off. The body is the concatenation of iov (wire
 * form). Returns 0, or an errno value (ENOSPC, EIO ...): then nothing of
 * it is left in the spool.
 */
int spool_write(struct spool_msg *m, const struct iovec *iov, int iovcnt);

/*
 * The same without waiting: m is queued for the next flush, and done(arg,
 * err) runs once it is durable (err 0: m->slot and m->body_off are set) or
 * failed, on the thread that runs spool_commit_run(). m and iov (what it
 * points to) must stay valid until then. Returns true when no commit is
 * running: the caller must then call spool_commit_run() on a thread that
 * may block (a job), which commits until nothing is queued.
 */
typedef void (*spool_write_fn)(void *arg, int err);
bool spool_write_async(struct spool_msg *m, const struct iovec *iov, int iovcnt,
    spool_write_fn done, void *arg);
void spool_commit_run(void);

/* Serialise just the envelope header of a batch's message (unit tests,
 * spool_write). malloc'd. */
char *spool_format_header(const struct spool_msg *m, uint32_t nonce, size_t *len);

/* A read-only descriptor of m's file (delivery, DSNs), or -1 with errno. */
int spool_open(const struct spool_msg *m);

/*
 * Read a file's (first) message: envelope and status records, not the
 * body. Returns 0;
 * -1 with err set for a partial file (no END marker) or a corrupt one,
 * which may be removed; -2 for an I/O error (open, read), which must not.
 * spool_load_fd reads an open file from its start (it does not close fd);
 * spool_load_buf parses a whole file already read (buf[len] must be
 * writable: it is set to NUL; buf is changed).
 */
int spool_load(const char *path, struct spool_msg *m, char *err, size_t errlen);
int spool_load_fd(int fd, struct spool_msg *m, char *err, size_t errlen);
int spool_load_buf(char *buf, size_t len, struct spool_msg *m, char *err, size_t errlen);
void spool_msg_free(struct spool_msg *m);   /* frees members, not m */
/* The value of meta key in an envelope as written or loaded (a packed,
 * queued message: qmsg_meta, queue.h), or NULL. */
const char *spool_meta(const struct spool_msg *m, const char *key);

/* Append a status record for recipient idx of m (O_APPEND, one write). */
int spool_record(const struct spool_msg *m, int idx, enum rcpt_state state, int attempts,
    int64_t next_ms);

/* CRC-32C (Castagnoli) of buf, continuing crc (0 to start). */
uint32_t spool_crc32c(uint32_t crc, const void *buf, size_t len);

/*
 * m is finished: none of its recipients is queued any more, recipient idx
 * (>= 0) last, now in state. When m was its slot's last message, the file
 * is marked and kept as a spare; otherwise idx's record is appended (idx
 * < 0: the records already say so). Exactly once per message.
 */
int spool_done(const struct spool_msg *m, int idx, enum rcpt_state state, int attempts);

/*
 * Walk the spool at startup with nthreads threads (the caller and
 * nthreads - 1 more; each reads whole bucket directories, a bucket's files
 * in inode order): cb(m, args[t]) on thread t for every message found,
 * status records applied, m->slot set; cb owns m's members (spool_msg_free
 * or keep them). Calls on different threads run concurrently. Partial
 * files are logged (event=spool-discard), counted in *discarded (may be
 * NULL) and become spares, as do other slot files; tmp/ is emptied; an
 * older sluice's files (q/XX/ID, f.SEQ) are renamed to slots, t.* removed.
 * Returns the number of messages handed to cb.
 */
typedef void (*spool_scan_fn)(struct spool_msg *m, void *arg);
long spool_scan(int nthreads, spool_scan_fn cb, void *const *args, long *discarded);

/* Dot-stuffing helpers (wire form). */
/* Append src (raw lines, CRLF or bare LF) to dst in wire form: CRLF line
 * ends, a leading '.' doubled. *state carries line state across chunks;
 * start it at DOT_STATE_INIT. Returns bytes written to dst. */
#define DOT_STATE_INIT 1
size_t dot_stuff(char *dst, const char *src, size_t len, int *state);
/* Worst case output size of dot_stuff. */
#define DOT_STUFF_MAX(len) ((len) * 2 + 2)
/* Remove dot-stuffing in place (wire form in, CRLF kept); *state as above.
 * Returns the new length. */
size_t dot_unstuff(char *buf, size_t len, int *state);

#endif
