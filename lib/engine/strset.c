#include "strset.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int strset_reset(strset *s, size_t n)
{
    size_t want = 16;

    while (want < n * 2)
        want *= 2;
    if (want > s->n_slots) {
        const char **k = realloc(s->slots, want * sizeof(*k));
        size_t *v;
        if (!k)
            return -1;
        s->slots = k;
        v = realloc(s->values, want * sizeof(*v));
        if (!v) {
            memset(s->slots, 0, s->n_slots * sizeof(*s->slots));
            return -1;
        }
        s->values = v;
        s->n_slots = want;
    }
    memset(s->slots, 0, s->n_slots * sizeof(*s->slots));
    return 0;
}

void strset_free(strset *s)
{
    if (!s)
        return;
    free(s->slots);
    free(s->values);
    memset(s, 0, sizeof(*s));
}

/* The slot of key, or the empty slot where it would go; n_slots when the
 * set is full without it (or has no slots). */
static size_t find_slot(const strset *s, const char *key)
{
    size_t mask = s->n_slots - 1;
    size_t h, probes;

    if (s->n_slots == 0)
        return 0;
    h = (size_t)exactly_hash_str(key) & mask;
    for (probes = 0; probes < s->n_slots; probes++) {
        if (!s->slots[h] || strcmp(s->slots[h], key) == 0)
            return h;
        h = (h + 1) & mask;
    }
    return s->n_slots;
}

int strset_put(strset *s, const char *key, size_t *value)
{
    size_t h = find_slot(s, key);

    if (h == s->n_slots)
        return -1;
    if (s->slots[h]) {
        *value = s->values[h];
        return 0;
    }
    s->slots[h] = key;
    s->values[h] = *value;
    return 1;
}

int strset_add(strset *s, const char *key)
{
    size_t value = 0;

    return strset_put(s, key, &value);
}

size_t strset_get(const strset *s, const char *key)
{
    size_t h = find_slot(s, key);

    return h < s->n_slots && s->slots[h] ? s->values[h] : SIZE_MAX;
}

int strset_has(const strset *s, const char *key)
{
    size_t h = find_slot(s, key);

    return h < s->n_slots && s->slots[h] != NULL;
}
