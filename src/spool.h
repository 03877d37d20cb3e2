/*
 * spool: one file per message, in slots. A slot is a file q/XX/N that
 * keeps its name for ever; a message is written into a spare slot in place
 * and fdatasync'd, which is its commit: the END line carries a CRC-32C of
 * envelope and message, so a torn rewrite is never taken for a message. A
 * new slot (no spare left) is created and its directory fsync'd too.
 * After the END line, per-recipient status records are appended (not
 * fsync'd: losing one can only cause the documented duplicate delivery).
 * A finished message's first byte is overwritten ("XLUICE") and its slot
 * becomes a spare. The layout is described in queue/README.
 *
 * The body is stored in wire form: CRLF line ends, dot-stuffed, without the
 * final ".\r\n", so delivery sends it as is (sendfile) and adds ".\r\n".
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
 * Write a message durably into a slot (blocking: call from a job thread)
 * and set m->slot. The body is the concatenation of iov (wire form).
 * Returns 0, or an errno value (ENOSPC, EIO ...) after removing the file.
 */
int spool_write(struct spool_msg *m, const struct iovec *iov, int iovcnt);

/* Serialise just the envelope header (unit tests, spool_write). malloc'd. */
char *spool_format_header(const struct spool_msg *m, size_t *len);

/* A read-only descriptor of m's file (delivery, DSNs), or -1 with errno. */
int spool_open(const struct spool_msg *m);

/*
 * Read a message's envelope and status records (not the body). Returns 0;
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

/* Finish a slot's message: its file is marked and kept as a spare. */
int spool_remove(uint32_t slot);

/*
 * Walk the spool at startup with nthreads threads (the caller and
 * nthreads - 1 more; each reads whole bucket directories, a bucket's files
 * in inode order): cb(slot, buf, len, args[t]) on thread t for every file
 * that starts with "SLUICE" (a message, or a torn rewrite:
 * spool_load_buf tells them apart), buf its whole content (len bytes,
 * writable up to buf[len], valid until cb returns). Every such file is
 * handed over exactly once; calls on different threads run concurrently.
 * Other slot files become spares; tmp/ is emptied; an older sluice's files
 * (q/XX/ID, f.SEQ) are renamed to slots, t.* removed. Returns the number
 * of files handed to cb.
 */
typedef void (*spool_scan_fn)(uint32_t slot, char *buf, size_t len, void *arg);
long spool_scan(int nthreads, spool_scan_fn cb, void *const *args);

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
