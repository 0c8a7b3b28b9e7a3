/*
 * store_dead_letters.h - the statements of the operator commands on the
 * dead_letters table (the worker writes its dead letters with store.c's
 * statement, in the batch's transaction).
 *
 * schema is the framework schema's name, unquoted. Every function writes
 * one sentence into err when it fails and returns the exactly_err of
 * exactly_pg_exec() (EXACTLY_ENOMEM with "out of memory").
 */
#ifndef EXACTLY_STORE_DEAD_LETTERS_H
#define EXACTLY_STORE_DEAD_LETTERS_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "exactly/error.h"

/* Which dead letters a statement works on; every condition is ANDed, and
 * an unset one matches everything. */
typedef struct store_dl_filter {
    const char *pipeline;     /* the name they are kept under: a pipeline's,
                                 or PIPELINE:reprocess:RUN (required) */
    const char *topic;        /* NULL: any */
    int64_t partition;        /* -1: any */
    const int64_t *ids;       /* dead letter ids; n_ids 0: any */
    size_t n_ids;
    const char *const *entities; /* entity IDs; n_entities 0: any */
    size_t n_entities;
    const char *since;        /* last_failed_at at or after this
                                 timestamptz text; NULL: any */
    int64_t limit;            /* at most this many, lowest id first; -1: all */
} store_dl_filter;

/* One dead letter. */
typedef struct store_dl_row {
    int64_t id;
    char *pipeline;
    char *topic;
    int32_t partition;
    int64_t offset;
    int has_key;              /* message_key is not NULL */
    unsigned char *key;       /* the stored key bytes (key_len), never NULL */
    size_t key_len;
    char *entity;             /* NULL: the message could not be decoded */
    char *reason;
    char *sqlstate;           /* NULL: none */
    int64_t attempts;
    char *first_failed_at;    /* UTC, microseconds: 2024-05-01T12:00:00.000000Z */
    char *last_failed_at;
    char *trace_id;           /* W3C trace-id of the message; NULL: none */
    /* The whole key's length and SHA-256 (hex): key holds only its first
     * 1,024 bytes. -1 and NULL: not recorded (no key). */
    int64_t key_full_len;
    char *key_sha256;
} store_dl_row;

/* The matching dead letters, lowest id first, at most f->limit. lock: FOR
 * UPDATE (a concurrent replay or discard waits, then sees them gone).
 * Free with store_dl_rows_free. */
exactly_err store_dl_select(PGconn *conn, const char *schema,
                            const store_dl_filter *f, int lock,
                            store_dl_row **rows, size_t *n_rows, char *err,
                            size_t errsz);
void store_dl_rows_free(store_dl_row *rows, size_t n);

/* How many dead letters match f, whatever its limit. */
exactly_err store_dl_count(PGconn *conn, const char *schema,
                           const store_dl_filter *f, int64_t *total,
                           char *err, size_t errsz);

/* Deletes the dead letters store_dl_select would return; *n how many. */
exactly_err store_dl_discard(PGconn *conn, const char *schema,
                             const store_dl_filter *f, int64_t *n, char *err,
                             size_t errsz);

/* Deletes dead letters ids[0..n). */
exactly_err store_dl_delete(PGconn *conn, const char *schema,
                            const int64_t *ids, size_t n, char *err,
                            size_t errsz);

/* The attempts of dead letters ids[0..n) as they are now: attempts[i] is
 * that of ids[i], or -1 when it is gone. Reads without locking and
 * writes nothing, so it never waits for a row lock or for a commit to
 * reach a standby. */
exactly_err store_dl_attempts(PGconn *conn, const char *schema,
                              const int64_t *ids, size_t n, int64_t *attempts,
                              char *err, size_t errsz);

/* Records one more failure of dead letters ids[0..n): attempts + 1,
 * last_failed_at now, reasons[i] and sqlstates[i] (NULL, or a NULL
 * sqlstates: none). */
exactly_err store_dl_failed_again(PGconn *conn, const char *schema,
                                  const int64_t *ids,
                                  const char *const *reasons,
                                  const char *const *sqlstates, size_t n,
                                  char *err, size_t errsz);

/* The reprocess runs of pipeline that have dead letters (kept under
 * PIPELINE:reprocess:RUN), oldest first: runs[i] is the run's id as text
 * and counts[i] how many. Free runs with store_strings_free. */
exactly_err store_dl_runs(PGconn *conn, const char *schema,
                          const char *pipeline, char ***runs,
                          int64_t **counts, size_t *n, char *err,
                          size_t errsz);

#endif
