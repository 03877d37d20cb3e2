/*
 * qalloc: slabs for queued messages (see qalloc.h for why).
 *
 * A slab is SLAB_SIZE bytes of anonymous memory aligned to SLAB_SIZE, so a
 * block's slab is its address with the low bits cleared. The slab's header
 * says its class; its blocks are handed out from a bump pointer (pages are
 * touched only when used) and, once freed, from the slab's free list.
 * Each class keeps the slabs that have room on a list under its own lock;
 * a full slab is off the list until one of its blocks is freed. A slab
 * left empty is unmapped unless it is its class's only one with room (so
 * a class at a boundary does not map and unmap at every message).
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "qalloc.h"
#include "util.h"

#define SLAB_SIZE (256 * 1024)
#define STEP 16
#define NCLASSES (QALLOC_MAX / STEP)

struct slab {
	struct slab *prev, *next;      /* in its class's list with room */
	void *free;                    /* freed blocks, linked through their first word */
	char *bump, *end;              /* never handed out: [bump, end) */
	uint32_t size;                 /* block size */
	uint32_t live;                 /* blocks handed out */
	bool listed;                   /* on the class's list */
};

/* blocks start after the header, 16-byte aligned */
#define SLAB_HDR ((sizeof(struct slab) + STEP - 1) / STEP * STEP)

struct klass {
	pthread_mutex_t lock;
	struct slab *avail;            /* slabs with room */
	int navail;
};

static struct klass classes[NCLASSES];
static pthread_once_t classes_once = PTHREAD_ONCE_INIT;
static atomic_size_t mapped_bytes, used_bytes;

static void
classes_init(void)
{
	for (int i = 0; i < NCLASSES; i++)
		pthread_mutex_init(&classes[i].lock, NULL);
}

static void
link_slab(struct klass *k, struct slab *s)
{
	s->prev = NULL;
	s->next = k->avail;
	if (k->avail)
		k->avail->prev = s;
	k->avail = s;
	s->listed = true;
	k->navail++;
}

static void
unlink_slab(struct klass *k, struct slab *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		k->avail = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
	s->listed = false;
	k->navail--;
}

static struct slab *
slab_new(uint32_t size)
{
	/* map twice the size and keep the aligned middle */
	char *p = mmap(NULL, 2 * SLAB_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		fatal("event=fatal msg=\"out of memory (qalloc slab)\"");
	uintptr_t a = ((uintptr_t)p + SLAB_SIZE - 1) & ~(uintptr_t)(SLAB_SIZE - 1);
	char *s0 = (char *)a;
	if (s0 > p)
		munmap(p, (size_t)(s0 - p));
	if (s0 + SLAB_SIZE < p + 2 * SLAB_SIZE)
		munmap(s0 + SLAB_SIZE, (size_t)(p + 2 * SLAB_SIZE - (s0 + SLAB_SIZE)));
	struct slab *s = (struct slab *)s0;
	s->prev = s->next = NULL;
	s->free = NULL;
	s->bump = s0 + SLAB_HDR;
	s->end = s0 + SLAB_SIZE;
	s->size = size;
	s->live = 0;
	s->listed = false;
	atomic_fetch_add(&mapped_bytes, SLAB_SIZE);
	return s;
}

static bool
slab_full(const struct slab *s)
{
	return s->free == NULL && s->bump + s->size > s->end;
}

void *
qalloc(size_t n)
{
	if (n == 0)
		n = 1;
	if (n > QALLOC_MAX)
		return xmalloc(n);
	pthread_once(&classes_once, classes_init);
	size_t ci = (n - 1) / STEP;
	struct klass *k = &classes[ci];
	uint32_t size = (uint32_t)((ci + 1) * STEP);
	void *p;

	pthread_mutex_lock(&k->lock);
	struct slab *s = k->avail;
	if (s == NULL) {
		s = slab_new(size);
		link_slab(k, s);
	}
	if (s->free != NULL) {
		p = s->free;
		s->free = *(void **)p;
	} else {
		p = s->bump;
		s->bump += size;
	}
	s->live++;
	if (slab_full(s))
		unlink_slab(k, s);
	pthread_mutex_unlock(&k->lock);
	atomic_fetch_add(&used_bytes, size);
	return p;
}

void
qfree(void *p, size_t n)
{
	if (p == NULL)
		return;
	if (n == 0)
		n = 1;
	if (n > QALLOC_MAX) {
		free(p);
		return;
	}
	struct slab *s = (struct slab *)((uintptr_t)p & ~(uintptr_t)(SLAB_SIZE - 1));
	size_t ci = (n - 1) / STEP;
	struct klass *k = &classes[ci];
	bool release = false;

	pthread_mutex_lock(&k->lock);
	*(void **)p = s->free;
	s->free = p;
	s->live--;
	if (!s->listed)
		link_slab(k, s);
	if (s->live == 0 && k->navail > 1) {
		unlink_slab(k, s);
		release = true;
	}
	pthread_mutex_unlock(&k->lock);
	/* s may be unmapped by another thread from here on, unless it is ours */
	atomic_fetch_sub(&used_bytes, (ci + 1) * STEP);
	if (release) {
		munmap(s, SLAB_SIZE);
		atomic_fetch_sub(&mapped_bytes, SLAB_SIZE);
	}
}

void
qalloc_stats(size_t *mapped, size_t *used)
{
	*mapped = atomic_load(&mapped_bytes);
	*used = atomic_load(&used_bytes);
}
