/*
 * lookup_probe.h - the pipeline's lookup run on no IDs, to see what it
 * returns without reading anything (`exactly check`).
 */
#ifndef EXACTLY_LOOKUP_PROBE_H
#define EXACTLY_LOOKUP_PROBE_H

#include <stddef.h>

#include <libpq-fe.h>

#include "config.h"

/* What the lookup returns. */
typedef struct lookup_shape {
    char **columns;   /* the result's column names, in order */
    size_t n_columns;
    char *key_column; /* the column IDs are matched on */
    int has_key;      /* the result has it (byte for byte) */
} lookup_shape;

/*
 * Runs p's lookup exactly as the worker builds it (exactly_lookup_sql) on
 * an empty ID array, in the caller's transaction. On success fills
 * *shape (free with lookup_shape_free). EXACTLY_ENOMEM, or the statement's
 * error with the server's message in err.
 */
exactly_err lookup_probe(PGconn *conn, const cfg_pipeline *p,
                         lookup_shape *shape, char *err, size_t errsz);
void lookup_shape_free(lookup_shape *shape);

/* Whether column name is in shape (byte for byte). */
int lookup_shape_has(const lookup_shape *shape, const char *name);

#endif
