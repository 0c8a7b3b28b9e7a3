/*
 * store_runs.h - the statements on reprocess_runs: the operator commands'
 * and those of `exactly reprocess` on its run's rows (the fence that
 * advances a row inside a batch is store.c's run_fence and run_read).
 *
 * schema is the framework schema's name, unquoted. Every function writes
 * one sentence into err when it fails and returns the exactly_err of
 * exactly_pg_exec().
 */
#ifndef EXACTLY_STORE_RUNS_H
#define EXACTLY_STORE_RUNS_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "exactly/error.h"

/* *found is 1 when reprocess run `run` exists and is pipeline's, else 0. */
exactly_err store_runs_exists(PGconn *conn, const char *schema,
                              const char *pipeline, int64_t run, int *found,
                              char *err, size_t errsz);

/* *number is the run that row id of pipeline belongs to: its parent (a
 * partition's row of a run over a topic), else id itself (also when no
 * such row exists). */
exactly_err store_runs_number(PGconn *conn, const char *schema,
                              const char *pipeline, int64_t id,
                              int64_t *number, char *err, size_t errsz);

/* Adds n to the applied count of run's row of topic and partition (its
 * own row, or the partition's row under it: dead letters of that
 * partition replayed as part of the run). */
exactly_err store_runs_add_applied(PGconn *conn, const char *schema,
                                   int64_t run, const char *topic,
                                   int32_t partition, int64_t n, char *err,
                                   size_t errsz);

/* One row of a run, as claimed or created. */
typedef struct store_run_row {
    int64_t id;
    char *topic;
    int32_t partition;
    int64_t from, to;      /* from_offset, to_offset: inclusive */
    int64_t next;          /* next_offset */
    int64_t epoch;         /* owner_epoch */
    int64_t parent;        /* 0: none (a run of one partition) */
    int done;              /* status is 'done' */
    int64_t applied;       /* applications counted in the row */
} store_run_row;

void store_run_rows_free(store_run_row *rows, size_t n);

/* Claims the rows of run `run` of pipeline that are not done (the run's
 * own row and those naming it as parent): status running, owner, epoch +
 * 1, so two resumes of one run fence each other. *n 0: no such run, or
 * it is done. Free with store_run_rows_free. */
exactly_err store_runs_claim(PGconn *conn, const char *schema,
                             const char *pipeline, int64_t run,
                             const char *owner, store_run_row **rows,
                             size_t *n, char *err, size_t errsz);

/* Reads every row of run `run` (its own row and those naming it as
 * parent), whatever their status, as the database holds them now. Free
 * with store_run_rows_free. */
exactly_err store_runs_read(PGconn *conn, const char *schema, int64_t run,
                            store_run_row **rows, size_t *n, char *err,
                            size_t errsz);

/* Inserts one row of a new run: topic, partition, from, to and parent of
 * *row (parent 0: none), next = from; fills in row->id, next and epoch
 * (row->topic stays the caller's). */
exactly_err store_runs_insert(PGconn *conn, const char *schema,
                              const char *pipeline, const char *owner,
                              store_run_row *row, char *err, size_t errsz);

/* Makes row id its own parent: the first row of a run over a topic. */
exactly_err store_runs_set_own_parent(PGconn *conn, const char *schema,
                                      int64_t id, char *err, size_t errsz);

/* Ends row id with status ("done", "interrupted", "failed"), if its
 * epoch is still epoch (else nothing changes). */
exactly_err store_runs_close(PGconn *conn, const char *schema, int64_t id,
                             int64_t epoch, const char *status, char *err,
                             size_t errsz);

/* The statement a batch of a run runs in its own transaction to count
 * what it applied ($1 the row's id, $2 how many), for schema_q (quoted).
 * malloc'd; NULL when out of memory. */
char *store_runs_applied_sql(const char *schema_q);

#endif
