/*
 * store_offsets.h - the statements of the operator commands on the
 * offsets table and its audit trail, offset_resets (the worker's own
 * statements on offsets are in store.c).
 *
 * schema is the framework schema's name, unquoted. Every function writes
 * one sentence into err when it fails and returns the exactly_err of
 * exactly_pg_exec() (EXACTLY_ENOMEM with "out of memory").
 */
#ifndef EXACTLY_STORE_OFFSETS_H
#define EXACTLY_STORE_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "exactly/error.h"

/* One row of the offsets table, as `exactly offsets` shows it. */
typedef struct store_offset_row {
    char *topic;
    int32_t partition;
    int has_next;        /* next_offset is not NULL */
    int64_t next_offset;
    int64_t owner_epoch;
    char *owner;         /* NULL: never claimed */
    char *updated_at;    /* UTC, seconds: 2024-05-01T12:00:00Z */
    int owner_live;      /* the owner holds a PostgreSQL session */
    int isolating;       /* the crash guard applies the batch from
                            next_offset one message at a time */
} store_offset_row;

/* Every row of pipeline, by topic and partition. Free with
 * store_offset_rows_free. */
exactly_err store_offsets_list(PGconn *conn, const char *schema,
                               const char *pipeline, store_offset_row **rows,
                               size_t *n_rows, char *err, size_t errsz);
void store_offset_rows_free(store_offset_row *rows, size_t n);

/*
 * The stored next_offset of partitions parts[0..n) of pipeline/topic:
 * has[i] is 0 when the partition has no row or a NULL next_offset, else 1
 * with next[i] set. lock: FOR UPDATE, inside the caller's transaction.
 */
exactly_err store_offsets_read(PGconn *conn, const char *schema,
                               const char *pipeline, const char *topic,
                               const int32_t *parts, size_t n, int lock,
                               int *has, int64_t *next, char *err,
                               size_t errsz);

/*
 * Sets next_offset of partitions parts[0..n) to to[i], creating missing
 * rows, and clears the crash guard's counters. The owner epoch is left
 * as it is (see ops/offsets.c).
 */
exactly_err store_offsets_set(PGconn *conn, const char *schema,
                              const char *pipeline, const char *topic,
                              const int32_t *parts, const int64_t *to,
                              size_t n, char *err, size_t errsz);

/*
 * `exactly offsets reset --forget-dedup`, in the reset's transaction:
 * deletes pipeline's dedup keys recorded (first seen) in topic's
 * partition parts[i] at an offset at or after from[i], so that the
 * messages read again from there are applied again; keys first seen
 * before from[i], or in another partition, stay and still drop their
 * duplicates. deleted[i] gets the count per partition.
 */
exactly_err store_dedup_forget(PGconn *conn, const char *schema,
                               const char *pipeline, const char *topic,
                               const int32_t *parts, const int64_t *from,
                               size_t n, int64_t *deleted, char *err,
                               size_t errsz);

/* What one `exactly offsets reset` records per partition. */
typedef struct store_reset_audit {
    const char *pipeline, *topic;
    const char *mode;         /* 'to-offset 42', 'shift-by -5', ... */
    const char *reason;       /* NULL: none given */
    const char *requested_by; /* user@host */
} store_reset_audit;

/* Adds one offset_resets row per partition: from (NULL where has_from[i]
 * is 0) -> to. */
exactly_err store_offset_resets_add(PGconn *conn, const char *schema,
                                    const store_reset_audit *a,
                                    const int32_t *parts, const int *has_from,
                                    const int64_t *from, const int64_t *to,
                                    size_t n, char *err, size_t errsz);

/*
 * The owners recorded on pipeline's offset rows (of topic, or of every
 * topic when NULL) that still hold a PostgreSQL session: a worker's
 * connection carries its owner string as application_name. *owners is a
 * malloc'd array of malloc'd strings (store_strings_free).
 */
exactly_err store_offsets_live_owners(PGconn *conn, const char *schema,
                                      const char *pipeline, const char *topic,
                                      char ***owners, size_t *n_owners,
                                      char *err, size_t errsz);

#endif
