/*
 * store_dead_letters.c - see store_dead_letters.h.
 */
#include "store_dead_letters.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "store_exec.h"
#include "strbuf.h"

/* The condition of a filter: $1 pipeline, $2 topic, $3 partition, $4 ids,
 * $5 since, $6 entity IDs (NULL: no condition); $7 is the limit. */
#define WHERE_FILTER                                                           \
    " WHERE pipeline = $1 AND ($2::text IS NULL OR topic = $2)"                \
    " AND ($3::int IS NULL OR partition = $3)"                                 \
    " AND ($4::bigint[] IS NULL OR id = ANY($4::bigint[]))"                    \
    " AND ($5::timestamptz IS NULL OR last_failed_at >= $5::timestamptz)"      \
    " AND ($6::text[] IS NULL OR entity_id = ANY($6::text[]))"

#define SELECT_COLUMNS                                                         \
    "SELECT id, pipeline, topic, partition, \"offset\", entity_id,"           \
    " encode(message_key, 'hex'), reason, sqlstate, attempts,"                \
    " to_char(first_failed_at AT TIME ZONE 'UTC',"                            \
    " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"                                  \
    " to_char(last_failed_at AT TIME ZONE 'UTC',"                             \
    " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), trace_id,"                        \
    " message_key_length, encode(message_key_sha256, 'hex')"                  \
    " FROM %1$s.dead_letters" WHERE_FILTER " ORDER BY id LIMIT $7"

/* A filter's parameters, with the text they point into. */
typedef struct filter_params {
    const char *v[7];
    char part[24];
    char limit[24];
    strbuf ids;
    strbuf entities;
} filter_params;

static exactly_err oom(char *err, size_t errsz)
{
    snprintf(err, errsz, "%s", exactly_strerror(EXACTLY_ENOMEM));
    return EXACTLY_ENOMEM;
}

static void params_free(filter_params *fp)
{
    strbuf_free(&fp->ids);
    strbuf_free(&fp->entities);
}

/* Fills fp from f; -1 when out of memory (fp freed). */
static int params_fill(filter_params *fp, const store_dl_filter *f)
{
    size_t i;

    memset(fp, 0, sizeof(*fp));
    snprintf(fp->part, sizeof(fp->part), "%" PRId64, f->partition);
    snprintf(fp->limit, sizeof(fp->limit), "%" PRId64, f->limit);
    strbuf_array_begin(&fp->ids);
    for (i = 0; i < f->n_ids; i++)
        strbuf_array_elem_int(&fp->ids, (long long)f->ids[i]);
    strbuf_array_end(&fp->ids);
    strbuf_array_begin(&fp->entities);
    for (i = 0; i < f->n_entities; i++)
        strbuf_array_elem_str(&fp->entities, f->entities[i]);
    strbuf_array_end(&fp->entities);
    if (fp->ids.oom || fp->entities.oom) {
        params_free(fp);
        return -1;
    }
    fp->v[0] = f->pipeline;
    fp->v[1] = f->topic;
    fp->v[2] = f->partition >= 0 ? fp->part : NULL;
    fp->v[3] = f->n_ids > 0 ? strbuf_str(&fp->ids) : NULL;
    fp->v[4] = f->since;
    fp->v[5] = f->n_entities > 0 ? strbuf_str(&fp->entities) : NULL;
    fp->v[6] = f->limit >= 0 ? fp->limit : NULL; /* LIMIT NULL: all */
    return 0;
}

/* Runs fmt (%1$s the schema) with f's parameters, the first n_params of
 * them. */
static exactly_err exec_filter(PGconn *conn, const char *schema,
                               const char *fmt, int n_params,
                               const store_dl_filter *f, PGresult **res,
                               char *err, size_t errsz)
{
    filter_params fp;
    exactly_err rc;

    if (params_fill(&fp, f) != 0)
        return oom(err, errsz);
    rc = store_exec(conn, schema, fmt, n_params, fp.v, res, err, errsz);
    params_free(&fp);
    return rc;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                  : 0;
}

/* Row r of res (SELECT_COLUMNS) into d; -1 when out of memory. */
static int read_row(const PGresult *res, int r, store_dl_row *d)
{
    const char *hex = PQgetvalue(res, r, 6);
    int nomem = 0;
    size_t k;

    d->id = store_int64(res, r, 0);
    d->pipeline = store_strdup(res, r, 1, &nomem);
    d->topic = store_strdup(res, r, 2, &nomem);
    d->partition = (int32_t)store_int64(res, r, 3);
    d->offset = store_int64(res, r, 4);
    d->entity = store_strdup(res, r, 5, &nomem);
    d->has_key = !PQgetisnull(res, r, 6);
    d->key_len = strlen(hex) / 2;
    d->key = malloc(d->key_len + 1);
    for (k = 0; d->key && k < d->key_len; k++)
        d->key[k] = (unsigned char)(hexval(hex[2 * k]) << 4 |
                                    hexval(hex[2 * k + 1]));
    if (d->key)
        d->key[d->key_len] = '\0';
    d->reason = store_strdup(res, r, 7, &nomem);
    d->sqlstate = store_strdup(res, r, 8, &nomem);
    d->attempts = store_int64(res, r, 9);
    d->first_failed_at = store_strdup(res, r, 10, &nomem);
    d->last_failed_at = store_strdup(res, r, 11, &nomem);
    d->trace_id = store_strdup(res, r, 12, &nomem);
    d->key_full_len = PQgetisnull(res, r, 13) ? -1 : store_int64(res, r, 13);
    d->key_sha256 = store_strdup(res, r, 14, &nomem);
    return nomem || !d->key ? -1 : 0;
}

void store_dl_rows_free(store_dl_row *rows, size_t n)
{
    size_t i;

    for (i = 0; rows && i < n; i++) {
        free(rows[i].pipeline);
        free(rows[i].topic);
        free(rows[i].key);
        free(rows[i].entity);
        free(rows[i].reason);
        free(rows[i].sqlstate);
        free(rows[i].first_failed_at);
        free(rows[i].last_failed_at);
        free(rows[i].trace_id);
        free(rows[i].key_sha256);
    }
    free(rows);
}

exactly_err store_dl_select(PGconn *conn, const char *schema,
                            const store_dl_filter *f, int lock,
                            store_dl_row **rows, size_t *n_rows, char *err,
                            size_t errsz)
{
    PGresult *res = NULL;
    store_dl_row *v;
    exactly_err rc;
    int r, failed = 0;

    *rows = NULL;
    *n_rows = 0;
    rc = exec_filter(conn, schema,
                     lock ? SELECT_COLUMNS " FOR UPDATE" : SELECT_COLUMNS, 7, f,
                     &res, err, errsz);
    if (rc != EXACTLY_OK)
        return rc;
    v = calloc((size_t)PQntuples(res) + 1, sizeof(*v));
    for (r = 0; v && r < PQntuples(res); r++)
        failed |= read_row(res, r, &v[r]);
    if (!v || failed) {
        store_dl_rows_free(v, (size_t)PQntuples(res));
        PQclear(res);
        return oom(err, errsz);
    }
    *rows = v;
    *n_rows = (size_t)PQntuples(res);
    PQclear(res);
    return EXACTLY_OK;
}

exactly_err store_dl_count(PGconn *conn, const char *schema,
                           const store_dl_filter *f, int64_t *total,
                           char *err, size_t errsz)
{
    PGresult *res = NULL;
    exactly_err rc;

    *total = 0;
    rc = exec_filter(conn, schema,
                     "SELECT count(*) FROM %1$s.dead_letters" WHERE_FILTER, 6,
                     f, &res, err, errsz);
    if (rc != EXACTLY_OK)
        return rc;
    *total = store_int64(res, 0, 0);
    PQclear(res);
    return EXACTLY_OK;
}

exactly_err store_dl_discard(PGconn *conn, const char *schema,
                             const store_dl_filter *f, int64_t *n, char *err,
                             size_t errsz)
{
    PGresult *res = NULL;
    exactly_err rc;

    *n = 0;
    rc = exec_filter(conn, schema,
                     "WITH gone AS (DELETE FROM %1$s.dead_letters WHERE id ="
                     " ANY(ARRAY(SELECT id FROM %1$s.dead_letters" WHERE_FILTER
                     " ORDER BY id LIMIT $7)) RETURNING 1)"
                     " SELECT count(*) FROM gone",
                     7, f, &res, err, errsz);
    if (rc != EXACTLY_OK)
        return rc;
    *n = store_int64(res, 0, 0);
    PQclear(res);
    return EXACTLY_OK;
}

/* ids as a bigint[] literal in *lit; -1 when out of memory (lit freed). */
static int ids_literal(strbuf *lit, const int64_t *ids, size_t n)
{
    size_t i;

    strbuf_array_begin(lit);
    for (i = 0; i < n; i++)
        strbuf_array_elem_int(lit, (long long)ids[i]);
    strbuf_array_end(lit);
    if (lit->oom) {
        strbuf_free(lit);
        return -1;
    }
    return 0;
}

exactly_err store_dl_delete(PGconn *conn, const char *schema,
                            const int64_t *ids, size_t n, char *err,
                            size_t errsz)
{
    strbuf lit = {0};
    const char *params[1];
    exactly_err rc;

    if (ids_literal(&lit, ids, n) != 0)
        return oom(err, errsz);
    params[0] = strbuf_str(&lit);
    rc = store_exec(conn, schema,
                    "DELETE FROM %1$s.dead_letters WHERE id = ANY($1::bigint[])",
                    1, params, NULL, err, errsz);
    strbuf_free(&lit);
    return rc;
}

exactly_err store_dl_attempts(PGconn *conn, const char *schema,
                              const int64_t *ids, size_t n, int64_t *attempts,
                              char *err, size_t errsz)
{
    strbuf lit = {0};
    const char *params[1];
    PGresult *res = NULL;
    exactly_err rc;
    size_t i;

    if (ids_literal(&lit, ids, n) != 0)
        return oom(err, errsz);
    params[0] = strbuf_str(&lit);
    /* One row per id, in the order given. */
    rc = store_exec(conn, schema,
                    "SELECT coalesce(d.attempts, -1) FROM"
                    " unnest($1::bigint[]) WITH ORDINALITY a(id, ord)"
                    " LEFT JOIN %1$s.dead_letters d ON d.id = a.id"
                    " ORDER BY a.ord",
                    1, params, &res, err, errsz);
    if (rc == EXACTLY_OK && (size_t)PQntuples(res) != n) {
        snprintf(err, errsz, "reading dead letters back: %d rows for %zu ids",
                 PQntuples(res), n);
        rc = EXACTLY_EDATABASE;
    }
    for (i = 0; rc == EXACTLY_OK && i < n; i++)
        attempts[i] = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
    PQclear(res);
    strbuf_free(&lit);
    return rc;
}

exactly_err store_dl_failed_again(PGconn *conn, const char *schema,
                                  const int64_t *ids,
                                  const char *const *reasons,
                                  const char *const *sqlstates, size_t n,
                                  char *err, size_t errsz)
{
    strbuf li = {0}, lr = {0}, ls = {0};
    const char *params[3];
    exactly_err rc;
    size_t i;

    strbuf_array_begin(&li);
    strbuf_array_begin(&lr);
    strbuf_array_begin(&ls);
    for (i = 0; i < n; i++) {
        strbuf_array_elem_int(&li, (long long)ids[i]);
        strbuf_array_elem_str(&lr, reasons[i]);
        strbuf_array_elem_str(&ls, sqlstates ? sqlstates[i] : NULL);
    }
    strbuf_array_end(&li);
    strbuf_array_end(&lr);
    strbuf_array_end(&ls);
    if (li.oom || lr.oom || ls.oom) {
        rc = oom(err, errsz);
        goto cleanup;
    }
    params[0] = strbuf_str(&li);
    params[1] = strbuf_str(&lr);
    params[2] = strbuf_str(&ls);
    rc = store_exec(conn, schema,
                    "UPDATE %1$s.dead_letters d SET attempts = d.attempts + 1,"
                    " last_failed_at = now(), reason = u.r, sqlstate = u.s"
                    " FROM unnest($1::bigint[], $2::text[], $3::text[])"
                    " AS u(i, r, s) WHERE d.id = u.i",
                    3, params, NULL, err, errsz);
cleanup:
    strbuf_free(&li);
    strbuf_free(&lr);
    strbuf_free(&ls);
    return rc;
}

exactly_err store_dl_runs(PGconn *conn, const char *schema,
                          const char *pipeline, char ***runs,
                          int64_t **counts, size_t *n, char *err,
                          size_t errsz)
{
    char prefix[200];
    const char *params[1] = {prefix};
    PGresult *res = NULL;
    exactly_err rc;
    int r, nomem = 0;

    *runs = NULL;
    *counts = NULL;
    *n = 0;
    snprintf(prefix, sizeof(prefix), "%s:reprocess:", pipeline);
    rc = store_exec(conn, schema,
                    "SELECT substr(pipeline, length($1) + 1), count(*)"
                    " FROM %1$s.dead_letters WHERE left(pipeline, length($1)) = $1"
                    " GROUP BY pipeline ORDER BY min(id)",
                    1, params, &res, err, errsz);
    if (rc != EXACTLY_OK)
        return rc;
    *runs = calloc((size_t)PQntuples(res) + 1, sizeof(char *));
    *counts = calloc((size_t)PQntuples(res) + 1, sizeof(int64_t));
    for (r = 0; *runs && *counts && r < PQntuples(res); r++) {
        (*runs)[r] = store_strdup(res, r, 0, &nomem);
        (*counts)[r] = store_int64(res, r, 1);
    }
    if (!*runs || !*counts || nomem) {
        store_strings_free(*runs, (size_t)PQntuples(res));
        free(*counts);
        *runs = NULL;
        *counts = NULL;
        PQclear(res);
        return oom(err, errsz);
    }
    *n = (size_t)PQntuples(res);
    PQclear(res);
    return EXACTLY_OK;
}
