/*
 * qalloc: the allocator of queued messages' blocks (queue.h qmsg_pack).
 * Blocks up to QALLOC_MAX bytes come from slabs of one size class each (16
 * byte steps), apart from everything else the process allocates; larger
 * ones from malloc.
 *
 * Why: a queued message lives for minutes to days, while the allocations
 * around its arrival (the SMTP session's buffers, the envelope being
 * parsed, routing tickets) live for milliseconds. In malloc's arenas the
 * long-lived blocks end up between the holes the short-lived ones leave,
 * and with a million messages queued those holes were about 60 bytes a
 * message (15 % of the process). Slabs hold nothing but queued messages,
 * a freed block is reused by the next one of its class, and a slab whose
 * blocks are all free is given back to the system.
 */
#ifndef SLUICE_QALLOC_H
#define SLUICE_QALLOC_H

#include <stddef.h>

#define QALLOC_MAX 2048

/* n bytes, 16-byte aligned; aborts when memory is exhausted. Any thread. */
void *qalloc(size_t n);
/* Free p, allocated by qalloc(n) with the same n. Any thread. */
void qfree(void *p, size_t n);

/* Bytes held in slabs (mapped) and in blocks handed out (tests, status). */
void qalloc_stats(size_t *mapped, size_t *used);

#endif
