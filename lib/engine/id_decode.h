/*
 * id_decode.h - turning the bytes a message carries into an entity ID.
 *
 * An ID has one canonical text form per type, the one PostgreSQL prints:
 *   bigint  an optional '-' and digits, no leading zero (0 is "0"), no '+',
 *           no "-0", within the range of int8;
 *   uuid    36 characters, lower-case hex in groups 8-4-4-4-12 with '-';
 *   text    any valid UTF-8 without NUL: every text is its own canonical
 *           form (bytes are compared exactly, nothing is normalised).
 * Kafka partitions by the key's bytes, so two spellings of one entity
 * ("007" and "7") would land on two partitions and could be applied by
 * two workers at once: another spelling is refused ("not canonical")
 * unless the pipeline accepts it (id.non_canonical: accept), and then it
 * becomes the canonical form. Message content is never put into SQL text.
 */
#ifndef EXACTLY_ID_DECODE_H
#define EXACTLY_ID_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* A buffer this large always holds a decode failure's reason. */
#define EXACTLY_ID_REASON_MAX 160

/*
 * Decodes len bytes at data as an ID of type t, at most max_len bytes long.
 * Another spelling of a valid ID ("007", "+7", "-0", an upper-case or
 * unhyphenated uuid) is refused unless accept_non_canonical is nonzero.
 * On success returns EXACTLY_OK and a malloc'd NUL-terminated canonical ID
 * in *out (the caller frees it). On failure returns EXACTLY_EINVAL and
 * writes a short reason (no message bytes beyond a safe, escaped prefix)
 * into reason; *out is NULL. Out of memory is EXACTLY_ENOMEM with an empty
 * reason. data may be NULL when len is 0.
 */
exactly_err exactly_id_decode(cfg_id_type t, size_t max_len,
                              int accept_non_canonical, const void *data,
                              size_t len, char **out, char *reason,
                              size_t reason_size);

/* The bytes exactly_id_decode_to() needs for an input of len bytes. */
static inline size_t exactly_id_decode_room(size_t len)
{
    return (len > 36 ? len : 36) + 1;
}

/*
 * Whether the len bytes at data are a bigint ID already in its canonical
 * form with at most 18 digits (so within int8 whatever they are), and then
 * its value in *v and the bytes, with a NUL, in out (which holds at least
 * exactly_id_decode_room(len) bytes; on 0 its content is unspecified).
 * The common case of exactly_id_decode_to() for bigint, without its
 * general path: where this says yes, that one returns the same bytes
 * (within its max_len, which the caller checks). Where it says no, that
 * one decides (another spelling, 19 digits, not a number). The copy is
 * made as the digits are read: the batch's common case, one pass.
 */
static inline int exactly_id_bigint_copy(char *out, const void *data,
                                         size_t len, int64_t *v)
{
    const unsigned char *p = data;
    size_t i = 0;
    uint64_t u = 0;

    if (!data || len == 0)
        return 0;
    if (p[0] == '-')
        i = 1;
    /* No digits, too many, a leading zero ("007"), or "-0". */
    if (len == i || len - i > 18 || (p[i] == '0' && (len > 1)))
        return 0;
    out[0] = (char)p[0];
    for (; i < len; i++) {
        unsigned d = (unsigned)p[i] - '0';
        if (d > 9)
            return 0;
        out[i] = (char)p[i];
        u = u * 10 + d;
    }
    out[len] = '\0';
    *v = p[0] == '-' ? -(int64_t)u : (int64_t)u;
    return 1;
}

/* exactly_id_bigint_copy() without the copy. */
static inline int exactly_id_bigint_plain(const void *data, size_t len,
                                          int64_t *v)
{
    char out[20]; /* '-', 18 digits and the NUL: the longest it copies */

    return exactly_id_bigint_copy(out, data, len, v);
}

/*
 * exactly_id_decode() without allocation: the canonical ID is written to
 * out, which holds at least exactly_id_decode_room(len) bytes, and its
 * length to *out_len. On failure out is "" and *out_len 0.
 */
exactly_err exactly_id_decode_to(cfg_id_type t, size_t max_len,
                                 int accept_non_canonical, const void *data,
                                 size_t len, char *out, size_t *out_len,
                                 char *reason, size_t reason_size);

#endif
