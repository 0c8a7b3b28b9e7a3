/*
 * strset.h - a set of borrowed strings (open addressing), sized per use,
 * each key carrying a value (an index into the caller's array: a batch's
 * dedup keys carry none, a dead-letter replay's entity IDs their record).
 * It hashes with exactly_hash_str (hash.h), as the batch's ID index does.
 *
 * The set borrows its keys: they must outlive it or the next reset.
 */
#ifndef EXACTLY_STRSET_H
#define EXACTLY_STRSET_H

#include <stddef.h>

#include "hash.h"

typedef struct strset {
    const char **slots;
    size_t *values; /* per slot: its key's value */
    size_t n_slots;
} strset;

/* Empties s and makes room for n keys. 0, or -1 when out of memory (s is
 * then empty and as large as before: reset again or free it). */
int strset_reset(strset *s, size_t n);

/* Frees what s holds (not the keys); s is then empty. NULL-safe. */
void strset_free(strset *s);

/* Adds key with value 0: 1 when added, 0 when already there, -1 when full
 * (reset was too small). */
int strset_add(strset *s, const char *key);

/* 1 when key is in s, else 0. */
int strset_has(const strset *s, const char *key);

/* Adds key with *value when it is not there (1); when it is, sets *value to
 * the value it has (0); -1 when full (reset was too small). */
int strset_put(strset *s, const char *key, size_t *value);

/* The value of key, or SIZE_MAX when it is not in s. */
size_t strset_get(const strset *s, const char *key);

#endif
