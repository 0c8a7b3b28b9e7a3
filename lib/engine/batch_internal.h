/*
 * batch_internal.h - what batch.c (building, the ID index) and
 * batch_group.c (records and their rows) share.
 */
#ifndef EXACTLY_BATCH_INTERNAL_H
#define EXACTLY_BATCH_INTERNAL_H

#include <stddef.h>

#include "batch.h"

/* Grows array *p (element size `size`, room *cap) to hold at least need
 * elements, doubling from 64. 0, or -1 when out of memory (*p is kept). */
int batch_grow(void **p, size_t *cap, size_t need, size_t size);

/* The index in b->ids of the batch's ID `id` (a lookup row's key, compared
 * with the canonical text exactly), or SIZE_MAX when it is none of them. */
size_t batch_lookup_id(const batch_builder *b, const char *id);

#endif
