/*
 * id_decode.h - turning the bytes a message carries into an entity ID.
 *
 * The decoded ID is in its canonical text form (bigint without leading
 * zeros or '+', uuid lower-case with hyphens, text unchanged), so that it
 * compares equal to PostgreSQL's text output of the same value and can be
 * passed as a query parameter. Message content is never put into SQL text.
 */
#ifndef EXACTLY_ID_DECODE_H
#define EXACTLY_ID_DECODE_H

#include <stddef.h>

#include "config.h"

/* A buffer this large always holds a decode failure's reason. */
#define EXACTLY_ID_REASON_MAX 160

/*
 * Decodes len bytes at data as an ID of type t, at most max_len bytes long.
 * On success returns EXACTLY_OK and a malloc'd NUL-terminated canonical ID
 * in *out (the caller frees it). On failure returns EXACTLY_EINVAL and
 * writes a short reason (no message bytes beyond a safe, escaped prefix)
 * into reason; *out is NULL. data may be NULL when len is 0.
 */
exactly_err exactly_id_decode(cfg_id_type t, size_t max_len, const void *data,
                              size_t len, char **out, char *reason,
                              size_t reason_size);

#endif
