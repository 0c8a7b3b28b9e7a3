#include "strset.h"

#include <stdlib.h>
#include <string.h>

int strset_reset(strset *s, size_t n)
{
    size_t want = 16;

    while (want < n * 2)
        want *= 2;
    if (want > s->n_slots) {
        const char **k = realloc(s->slots, want * sizeof(*k));
        if (!k)
            return -1;
        s->slots = k;
        s->n_slots = want;
    }
    memset(s->slots, 0, s->n_slots * sizeof(*s->slots));
    return 0;
}

/* 1 when added, 0 when already there, -1 when full (reset was too small). */
int strset_add(strset *s, const char *key)
{
    size_t mask = s->n_slots - 1;
    size_t h = (size_t)exactly_hash_str(key) & mask;
    size_t probes = 0;

    while (s->slots[h]) {
        if (strcmp(s->slots[h], key) == 0)
            return 0;
        h = (h + 1) & mask;
        if (++probes == s->n_slots)
            return -1;
    }
    s->slots[h] = key;
    return 1;
}

int strset_has(const strset *s, const char *key)
{
    size_t mask = s->n_slots - 1;
    size_t h = (size_t)exactly_hash_str(key) & mask;
    size_t probes = 0;

    while (s->slots[h] && probes++ < s->n_slots) {
        if (strcmp(s->slots[h], key) == 0)
            return 1;
        h = (h + 1) & mask;
    }
    return 0;
}
