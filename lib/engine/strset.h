/*
 * strset.h - a set of borrowed strings (open addressing), sized per
 * batch, and the string hash it shares with the batch's ID index.
 */
#ifndef EXACTLY_STRSET_H
#define EXACTLY_STRSET_H

#include <stddef.h>

static inline size_t hash_str(const char *s)
{
    /* FNV-1a: short keys, no adversary gains anything but a slow batch. */
    size_t h = (size_t)1469598103934665603ULL;
    while (*s) {
        h ^= (unsigned char)*s++;
        h *= (size_t)1099511628211ULL;
    }
    return h;
}

/* A set of borrowed strings (open addressing), sized per batch. */
typedef struct strset {
    const char **slots;
    size_t n_slots;
} strset;

int strset_reset(strset *s, size_t n);
int strset_add(strset *s, const char *key);
int strset_has(const strset *s, const char *key);

#endif
