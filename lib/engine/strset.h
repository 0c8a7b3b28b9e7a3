/*
 * strset.h - a set of borrowed strings (open addressing), sized per
 * batch. It hashes with exactly_hash_str (hash.h), as the batch's ID
 * index does.
 */
#ifndef EXACTLY_STRSET_H
#define EXACTLY_STRSET_H

#include <stddef.h>

#include "hash.h"

/* A set of borrowed strings (open addressing), sized per batch. */
typedef struct strset {
    const char **slots;
    size_t n_slots;
} strset;

int strset_reset(strset *s, size_t n);
int strset_add(strset *s, const char *key);
int strset_has(const strset *s, const char *key);

#endif
