/*
 * bounce: classification of remote replies into bounce categories.
 */
#ifndef SLUICE_BOUNCE_H
#define SLUICE_BOUNCE_H
#endif
