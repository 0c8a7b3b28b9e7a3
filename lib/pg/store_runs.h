/*
 * store_runs.h - the statements of the operator commands on
 * reprocess_runs (a run's own position and fence are in store.c and
 * ops/reprocess.c).
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

/* Adds n to run's applied count (dead letters replayed as part of it). */
exactly_err store_runs_add_applied(PGconn *conn, const char *schema,
                                   int64_t run, int64_t n, char *err,
                                   size_t errsz);

#endif
