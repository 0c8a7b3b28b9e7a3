/*
 * hash.h - the one string hash of the project (64-bit FNV-1a), for the
 * in-memory tables that index short keys: a batch's IDs, its dedup set,
 * a session's prepared statements, a YAML mapping's keys.
 *
 * Not keyed: an adversary who controls the keys can make them collide,
 * which costs probes (a slower batch), never a wrong answer, because every
 * caller compares the keys themselves once the hashes are equal. Values
 * are never stored outside the process, so the function may change.
 */
#ifndef EXACTLY_HASH_H
#define EXACTLY_HASH_H

#include <stddef.h>
#include <stdint.h>

#define EXACTLY_FNV1A_OFFSET UINT64_C(14695981039346656037)
#define EXACTLY_FNV1A_PRIME UINT64_C(1099511628211)

/* The FNV-1a hash of the NUL-terminated string s. */
static inline uint64_t exactly_hash_str(const char *s)
{
    uint64_t h = EXACTLY_FNV1A_OFFSET;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= EXACTLY_FNV1A_PRIME;
    }
    return h;
}

#endif
