/*
 * store_runs.c - see store_runs.h.
 */
#include "store_runs.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "store_exec.h"
#include "strbuf.h"

/* A run's row as store_run_row reads it (read_row). */
#define RUN_COLUMNS                                                            \
    " id, topic, partition, from_offset, to_offset, next_offset,"             \
    " owner_epoch, parent, status = 'done', applied"
#define RUN_RETURNING " RETURNING" RUN_COLUMNS

/* The row `id` of pipeline's reprocess runs: *found whether there is
 * one, *parent its parent (-1: none, or no row). */
static exactly_err run_row(PGconn *conn, const char *schema,
                           const char *pipeline, int64_t id, int *found,
                           int64_t *parent, char *err, size_t errsz)
{
    char id_s[24];
    const char *params[2] = {id_s, pipeline};
    PGresult *res = NULL;
    exactly_err rc;

    *found = 0;
    *parent = -1;
    snprintf(id_s, sizeof(id_s), "%" PRId64, id);
    rc = store_exec(conn, schema,
                    "SELECT parent FROM %1$s.reprocess_runs WHERE id ="
                    " $1::bigint AND pipeline = $2",
                    2, params, &res, err, errsz);
    if (rc != EXACTLY_OK)
        return rc;
    *found = PQntuples(res) > 0;
    if (*found && !PQgetisnull(res, 0, 0))
        *parent = store_int64(res, 0, 0);
    PQclear(res);
    return EXACTLY_OK;
}

exactly_err store_runs_exists(PGconn *conn, const char *schema,
                              const char *pipeline, int64_t run, int *found,
                              char *err, size_t errsz)
{
    int64_t parent;

    return run_row(conn, schema, pipeline, run, found, &parent, err, errsz);
}

exactly_err store_runs_number(PGconn *conn, const char *schema,
                              const char *pipeline, int64_t id,
                              int64_t *number, char *err, size_t errsz)
{
    int64_t parent;
    int found;
    exactly_err rc = run_row(conn, schema, pipeline, id, &found, &parent,
                             err, errsz);

    *number = rc == EXACTLY_OK && parent >= 0 ? parent : id;
    return rc;
}

exactly_err store_runs_add_applied(PGconn *conn, const char *schema,
                                   int64_t run, const char *topic,
                                   int32_t partition, int64_t n, char *err,
                                   size_t errsz)
{
    char run_s[24], n_s[24], part_s[16];
    const char *params[4] = {run_s, n_s, topic, part_s};

    snprintf(run_s, sizeof(run_s), "%" PRId64, run);
    snprintf(n_s, sizeof(n_s), "%" PRId64, n);
    snprintf(part_s, sizeof(part_s), "%d", (int)partition);
    return store_exec(conn, schema,
                      "UPDATE %1$s.reprocess_runs SET applied = applied +"
                      " $2::bigint, updated_at = now() WHERE (id = $1::bigint"
                      " OR parent = $1::bigint) AND topic = $3 AND partition"
                      " = $4::int",
                      4, params, NULL, err, errsz);
}

void store_run_rows_free(store_run_row *rows, size_t n)
{
    size_t i;

    for (i = 0; rows && i < n; i++)
        free(rows[i].topic);
    free(rows);
}

/* Row i of a RUN_RETURNING result into *row; -1 when out of memory. */
static int read_row(const PGresult *res, int i, store_run_row *row)
{
    int oom = 0;

    free(row->topic);
    row->id = store_int64(res, i, 0);
    row->topic = store_strdup(res, i, 1, &oom);
    row->partition = (int32_t)store_int64(res, i, 2);
    row->from = store_int64(res, i, 3);
    row->to = store_int64(res, i, 4);
    row->next = store_int64(res, i, 5);
    row->epoch = store_int64(res, i, 6);
    row->parent = PQgetisnull(res, i, 7) ? 0 : store_int64(res, i, 7);
    row->done = strcmp(PQgetvalue(res, i, 8), "t") == 0;
    row->applied = store_int64(res, i, 9);
    return oom || !row->topic ? -1 : 0;
}

/* The rows of res (RUN_COLUMNS) into *rows, *n; res is cleared. */
static exactly_err read_rows(PGresult *res, store_run_row **rows, size_t *n,
                             char *err, size_t errsz)
{
    int i, nt = PQntuples(res);

    *rows = calloc((size_t)nt + 1, sizeof(**rows));
    for (i = 0; *rows && i < nt; i++)
        if (read_row(res, i, &(*rows)[i]) != 0)
            break;
    PQclear(res);
    if (!*rows || i < nt) {
        store_run_rows_free(*rows, (size_t)nt);
        *rows = NULL;
        snprintf(err, errsz, "%s", exactly_strerror(EXACTLY_ENOMEM));
        return EXACTLY_ENOMEM;
    }
    *n = (size_t)nt;
    return EXACTLY_OK;
}

exactly_err store_runs_claim(PGconn *conn, const char *schema,
                             const char *pipeline, int64_t run,
                             const char *owner, store_run_row **rows,
                             size_t *n, char *err, size_t errsz)
{
    char run_s[24];
    const char *params[3] = {run_s, pipeline, owner};
    PGresult *res = NULL;
    exactly_err rc;

    *rows = NULL;
    *n = 0;
    snprintf(run_s, sizeof(run_s), "%" PRId64, run);
    rc = store_exec(conn, schema,
                    "UPDATE %1$s.reprocess_runs SET owner_epoch = owner_epoch"
                    " + 1, status = 'running', owner = $3, updated_at = now(),"
                    " ended_at = NULL WHERE (id = $1::bigint OR parent ="
                    " $1::bigint) AND pipeline = $2 AND status <> 'done'"
                    RUN_RETURNING,
                    3, params, &res, err, errsz);
    if (rc != EXACTLY_OK)
        return rc;
    return read_rows(res, rows, n, err, errsz);
}

exactly_err store_runs_read(PGconn *conn, const char *schema, int64_t run,
                            store_run_row **rows, size_t *n, char *err,
                            size_t errsz)
{
    char run_s[24];
    const char *params[1] = {run_s};
    PGresult *res = NULL;
    exactly_err rc;

    *rows = NULL;
    *n = 0;
    snprintf(run_s, sizeof(run_s), "%" PRId64, run);
    rc = store_exec(conn, schema,
                    "SELECT" RUN_COLUMNS " FROM %1$s.reprocess_runs"
                    " WHERE id = $1::bigint OR parent = $1::bigint",
                    1, params, &res, err, errsz);
    if (rc != EXACTLY_OK)
        return rc;
    return read_rows(res, rows, n, err, errsz);
}

exactly_err store_runs_insert(PGconn *conn, const char *schema,
                              const char *pipeline, const char *owner,
                              store_run_row *row, char *err, size_t errsz)
{
    char part_s[16], from_s[24], to_s[24], parent_s[24];
    const char *params[7] = {pipeline, row->topic, part_s, from_s, to_s,
                             owner, row->parent > 0 ? parent_s : NULL};
    PGresult *res = NULL;
    exactly_err rc;

    snprintf(part_s, sizeof(part_s), "%d", (int)row->partition);
    snprintf(from_s, sizeof(from_s), "%" PRId64, row->from);
    snprintf(to_s, sizeof(to_s), "%" PRId64, row->to);
    snprintf(parent_s, sizeof(parent_s), "%" PRId64, row->parent);
    rc = store_exec(conn, schema,
                    "INSERT INTO %1$s.reprocess_runs (pipeline, topic,"
                    " partition, from_offset, to_offset, next_offset, owner,"
                    " parent) VALUES ($1, $2, $3, $4, $5, $4, $6, $7::bigint)"
                    RUN_RETURNING,
                    7, params, &res, err, errsz);
    if (rc != EXACTLY_OK)
        return rc;
    if (PQntuples(res) != 1) {
        snprintf(err, errsz, "inserting a run row returned %d rows",
                 PQntuples(res));
        rc = EXACTLY_EDATABASE;
    } else {
        row->id = store_int64(res, 0, 0);
        row->next = store_int64(res, 0, 5);
        row->epoch = store_int64(res, 0, 6);
        row->applied = store_int64(res, 0, 9);
    }
    PQclear(res);
    return rc;
}

exactly_err store_runs_set_own_parent(PGconn *conn, const char *schema,
                                      int64_t id, char *err, size_t errsz)
{
    char id_s[24];
    const char *params[1] = {id_s};

    snprintf(id_s, sizeof(id_s), "%" PRId64, id);
    return store_exec(conn, schema,
                      "UPDATE %1$s.reprocess_runs SET parent = id"
                      " WHERE id = $1::bigint",
                      1, params, NULL, err, errsz);
}

exactly_err store_runs_close(PGconn *conn, const char *schema, int64_t id,
                             int64_t epoch, const char *status, char *err,
                             size_t errsz)
{
    char id_s[24], epoch_s[24];
    const char *params[3] = {id_s, status, epoch_s};

    snprintf(id_s, sizeof(id_s), "%" PRId64, id);
    snprintf(epoch_s, sizeof(epoch_s), "%" PRId64, epoch);
    return store_exec(conn, schema,
                      "UPDATE %1$s.reprocess_runs SET status = $2, ended_at ="
                      " now(), updated_at = now() WHERE id = $1::bigint AND"
                      " owner_epoch = $3",
                      3, params, NULL, err, errsz);
}

char *store_runs_applied_sql(const char *schema_q)
{
    strbuf q = {0};

    strbuf_printf(&q,
                  "UPDATE %s.reprocess_runs SET applied = applied + $2::bigint"
                  " WHERE id = $1::bigint",
                  schema_q);
    if (q.oom) {
        strbuf_free(&q);
        return NULL;
    }
    return q.data;
}
