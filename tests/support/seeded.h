/*
 * seeded.h - random choices a seed replays: a test prints its seed, and
 * EXACTLY_TEST_SEED runs the same choices again, whatever the libc.
 */
#ifndef EXACTLY_TEST_SEEDED_H
#define EXACTLY_TEST_SEEDED_H

#include <stdint.h>

/* EXACTLY_TEST_SEED if set, else one from the clock and the pid. */
uint64_t seeded_pick(void);

/* Starts the sequence (a seed of 0 counts as 1). */
void seeded_init(uint64_t seed);

/* A number in [0, n). */
int seeded_below(int n);

#endif
