/*
 * upsert_internal.h - what the built-in upsert's two files share: the
 * handler's state, which upsert_open.c builds from the options (the
 * statements generated and checked once) and handler_upsert.c applies
 * batches with.
 */
#ifndef EXACTLY_UPSERT_INTERNAL_H
#define EXACTLY_UPSERT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "exactly/handler.h"
#include "pgarray.h"
#include "upsert_sql.h"

typedef struct upsert_state {
    const exactly_host *host;
    int fused;
    int extra_writer;      /* opened for reprocess or dlq replay */
    const char *table;     /* option string, for messages */
    char *insert_sql;
    char *delete_sql;      /* NULL unless delete_missing */
    char *lock_sql;        /* fused delete_missing of an extra writer: the
                              target rows locked before the DELETE
                              (upsert_sql_lock_targets); else NULL */
    size_t n_columns;
    const char **targets;  /* option strings (live until close) */
    const char **sources;
    size_t *src_index;     /* unfused: source column -> lookup column */
    upsert_array *arrays;  /* unfused: one parameter per column */
    const char **params;
    upsert_array ids;      /* fused: every ID; unfused: IDs without rows */
    const char *emit_topic;/* NULL: no events; else insert_sql also writes
                              one outbox row per changed row */
    pgarray ids_bin;       /* fused: every ID, binary, when the host can */
    uint32_t id_oid;       /* element type of ids_bin; 0: text only */
} upsert_state;

/*
 * Opens the handler, fused (one INSERT ... SELECT from the lookup table)
 * or not, for the worker or (extra_writer) for `exactly reprocess` and
 * `exactly dlq replay`, whose fused statement locks the source rows it
 * reads (FOR SHARE OF s): reads the options, generates the statements, has the server
 * check them when a setup connection is given. On success *out is the
 * state; on failure *out is NULL, errbuf says why and nothing is left
 * allocated.
 */
exactly_err upsert_open(const exactly_open_args *args, void **out, int fused,
                        int extra_writer);

/* Frees a state upsert_open returned (NULL is allowed): the handler's
 * close. */
void upsert_close(void *state);

#endif
