/*
 * recipient: what the store knows about one recipient, for the control
 * API (GET /v1/recipients/ADDRESS): its engagement record, its segment,
 * its engagement score with every part and input, and what list hygiene
 * would do with it in a marketing campaign now (nothing is recorded by
 * looking). POST /v1/recipients/ADDRESS/spam-trap records a trap hit on
 * its domain. Control thread; an HTTP status and a JSON body.
 */
#ifndef SLUICE_RECIPIENT_H
#define SLUICE_RECIPIENT_H

#include <jansson.h>

int recipient_info(const char *address, json_t **out);
int recipient_spam_trap(const char *address, json_t **out);

#endif
