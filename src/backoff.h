/*
 * backoff: automatic reaction to throttling replies (being written).
 */
#ifndef SLUICE_BACKOFF_H
#define SLUICE_BACKOFF_H
#endif
