/*
 * store_offsets.c - see store_offsets.h.
 */
#include "store_offsets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "store_exec.h"
#include "strbuf.h"

/* application_name is visible for every session, whoever owns it, and the
 * server cuts it to 63 bytes: an owner is live when that much of it names
 * a session other than ours. */
#define OWNER_LIVE(o)                                                          \
    "EXISTS (SELECT 1 FROM pg_stat_activity a"                                 \
    " WHERE a.application_name = left(" o ", 63)"                              \
    " AND a.pid <> pg_backend_pid())"

static exactly_err oom(char *err, size_t errsz)
{
    snprintf(err, errsz, "%s", exactly_strerror(EXACTLY_ENOMEM));
    return EXACTLY_ENOMEM;
}

/* n integers as an array literal in sb: i32[0..n) (an int[] of
 * partitions) when given, else i64[0..n) (a bigint[] of offsets); -1 when
 * out of memory. */
static int ints_literal(strbuf *sb, const int32_t *i32, const int64_t *i64,
                        size_t n)
{
    size_t i;

    strbuf_array_begin(sb);
    for (i = 0; i < n; i++)
        strbuf_array_elem_int(sb, i32 ? (long long)i32[i] : (long long)i64[i]);
    strbuf_array_end(sb);
    return sb->oom ? -1 : 0;
}

/* params[0..4) of a statement over pipeline ($1), topic ($2) and the
 * pairs (parts[i], v[i]): $3 an int[] literal built in lp, $4 a bigint[]
 * one in lv (the caller frees both). -1 when out of memory. */
static int pair_params(const char *params[4], strbuf *lp, strbuf *lv,
                       const char *pipeline, const char *topic,
                       const int32_t *parts, const int64_t *v, size_t n)
{
    if (ints_literal(lp, parts, NULL, n) != 0 ||
        ints_literal(lv, NULL, v, n) != 0)
        return -1;
    params[0] = pipeline;
    params[1] = topic;
    params[2] = strbuf_str(lp);
    params[3] = strbuf_str(lv);
    return 0;
}

void store_offset_rows_free(store_offset_row *rows, size_t n)
{
    size_t i;

    for (i = 0; rows && i < n; i++) {
        free(rows[i].topic);
        free(rows[i].owner);
        free(rows[i].updated_at);
    }
    free(rows);
}

exactly_err store_offsets_list(PGconn *conn, const char *schema,
                               const char *pipeline, store_offset_row **rows,
                               size_t *n_rows, char *err, size_t errsz)
{
    const char *params[1] = {pipeline};
    PGresult *res = NULL;
    store_offset_row *v;
    exactly_err rc;
    int r, nomem = 0;

    *rows = NULL;
    *n_rows = 0;
    rc = store_exec(conn, schema,
                    "SELECT o.topic, o.partition, o.next_offset, o.owner_epoch,"
                    " o.owner, to_char(o.updated_at AT TIME ZONE 'UTC',"
                    " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
                    " o.owner IS NOT NULL AND " OWNER_LIVE("o.owner") ","
                    " o.isolate_until IS NOT NULL"
                    " AND o.next_offset < o.isolate_until"
                    " FROM %1$s.offsets o WHERE o.pipeline = $1"
                    " ORDER BY o.topic, o.partition",
                    1, params, &res, err, errsz);
    if (rc != EXACTLY_OK)
        return rc;
    v = calloc((size_t)PQntuples(res) + 1, sizeof(*v));
    if (!v) {
        PQclear(res);
        return oom(err, errsz);
    }
    for (r = 0; r < PQntuples(res); r++) {
        store_offset_row *o = &v[r];
        o->topic = store_strdup(res, r, 0, &nomem);
        o->partition = (int32_t)store_int64(res, r, 1);
        o->has_next = !PQgetisnull(res, r, 2);
        o->next_offset = store_int64(res, r, 2);
        o->owner_epoch = store_int64(res, r, 3);
        o->owner = store_strdup(res, r, 4, &nomem);
        o->updated_at = store_strdup(res, r, 5, &nomem);
        o->owner_live = strcmp(PQgetvalue(res, r, 6), "t") == 0;
        o->isolating = strcmp(PQgetvalue(res, r, 7), "t") == 0;
    }
    *n_rows = (size_t)PQntuples(res);
    PQclear(res);
    if (nomem) {
        store_offset_rows_free(v, *n_rows);
        *n_rows = 0;
        return oom(err, errsz);
    }
    *rows = v;
    return EXACTLY_OK;
}

exactly_err store_offsets_read(PGconn *conn, const char *schema,
                               const char *pipeline, const char *topic,
                               const int32_t *parts, size_t n, int lock,
                               int *has, int64_t *next, char *err,
                               size_t errsz)
{
    strbuf lit = {0};
    const char *params[3];
    PGresult *res = NULL;
    exactly_err rc;
    size_t i;
    int r;

    for (i = 0; i < n; i++)
        has[i] = 0;
    if (ints_literal(&lit, parts, NULL, n) != 0) {
        strbuf_free(&lit);
        return oom(err, errsz);
    }
    params[0] = pipeline;
    params[1] = topic;
    params[2] = strbuf_str(&lit);
    rc = store_exec(conn, schema,
                    lock ? "SELECT partition, next_offset FROM %1$s.offsets"
                           " WHERE pipeline = $1 AND topic = $2"
                           " AND partition = ANY($3::int[]) FOR UPDATE"
                         : "SELECT partition, next_offset FROM %1$s.offsets"
                           " WHERE pipeline = $1 AND topic = $2"
                           " AND partition = ANY($3::int[])",
                    3, params, &res, err, errsz);
    strbuf_free(&lit);
    if (rc != EXACTLY_OK)
        return rc;
    for (r = 0; r < PQntuples(res); r++) {
        int32_t part = (int32_t)store_int64(res, r, 0);
        for (i = 0; i < n; i++) {
            if (parts[i] != part || PQgetisnull(res, r, 1))
                continue;
            has[i] = 1;
            next[i] = store_int64(res, r, 1);
        }
    }
    PQclear(res);
    return EXACTLY_OK;
}

exactly_err store_offsets_set(PGconn *conn, const char *schema,
                              const char *pipeline, const char *topic,
                              const int32_t *parts, const int64_t *to,
                              size_t n, char *err, size_t errsz)
{
    strbuf lp = {0}, lt = {0};
    const char *params[4];
    exactly_err rc;

    if (pair_params(params, &lp, &lt, pipeline, topic, parts, to, n) != 0) {
        rc = oom(err, errsz);
        goto cleanup;
    }
    rc = store_exec(conn, schema,
                    "INSERT INTO %1$s.offsets AS o (pipeline, topic, partition,"
                    " next_offset) SELECT $1, $2, p, t"
                    " FROM unnest($3::int[], $4::bigint[]) AS u(p, t)"
                    " ON CONFLICT (pipeline, topic, partition) DO UPDATE"
                    " SET next_offset = EXCLUDED.next_offset, attempts = 0,"
                    " attempt_start = NULL, isolate_until = NULL,"
                    " unreleased = 0, unreleased_at = NULL,"
                    " updated_at = now()",
                    4, params, NULL, err, errsz);
cleanup:
    strbuf_free(&lp);
    strbuf_free(&lt);
    return rc;
}

exactly_err store_dedup_forget(PGconn *conn, const char *schema,
                               const char *pipeline, const char *topic,
                               const int32_t *parts, const int64_t *from,
                               size_t n, int64_t *deleted, char *err,
                               size_t errsz)
{
    strbuf lp = {0}, lf = {0};
    const char *params[4];
    PGresult *res = NULL;
    exactly_err rc;
    size_t i;
    int r;

    for (i = 0; i < n; i++)
        deleted[i] = 0;
    if (pair_params(params, &lp, &lf, pipeline, topic, parts, from, n) != 0) {
        rc = oom(err, errsz);
        goto cleanup;
    }
    rc = store_exec(conn, schema,
                    "WITH d AS (DELETE FROM %1$s.dedup_keys k"
                    " USING unnest($3::int[], $4::bigint[]) AS u(p, f)"
                    " WHERE k.pipeline = $1 AND k.topic = $2"
                    " AND k.partition = u.p AND k.\"offset\" >= u.f"
                    " RETURNING k.partition)"
                    " SELECT partition, count(*) FROM d GROUP BY partition",
                    4, params, &res, err, errsz);
    if (rc != EXACTLY_OK)
        goto cleanup;
    for (r = 0; r < PQntuples(res); r++)
        for (i = 0; i < n; i++)
            if (parts[i] == (int32_t)store_int64(res, r, 0))
                deleted[i] = store_int64(res, r, 1);
    PQclear(res);
cleanup:
    strbuf_free(&lp);
    strbuf_free(&lf);
    return rc;
}

exactly_err store_offset_resets_add(PGconn *conn, const char *schema,
                                    const store_reset_audit *a,
                                    const int32_t *parts, const int *has_from,
                                    const int64_t *from, const int64_t *to,
                                    size_t n, char *err, size_t errsz)
{
    strbuf lp = {0}, lf = {0}, lt = {0};
    const char *params[8];
    exactly_err rc;
    size_t i;

    strbuf_array_begin(&lf);
    strbuf_array_begin(&lt);
    for (i = 0; i < n; i++) {
        if (has_from[i])
            strbuf_array_elem_int(&lf, from[i]);
        else
            strbuf_array_elem_str(&lf, NULL);
        strbuf_array_elem_int(&lt, to[i]);
    }
    strbuf_array_end(&lf);
    strbuf_array_end(&lt);
    if (ints_literal(&lp, parts, NULL, n) != 0 || lf.oom || lt.oom) {
        rc = oom(err, errsz);
        goto cleanup;
    }
    params[0] = a->pipeline;
    params[1] = a->topic;
    params[2] = strbuf_str(&lp);
    params[3] = strbuf_str(&lf);
    params[4] = strbuf_str(&lt);
    params[5] = a->mode;
    params[6] = a->reason;
    params[7] = a->requested_by;
    rc = store_exec(conn, schema,
                    "INSERT INTO %1$s.offset_resets (pipeline, topic, partition,"
                    " from_offset, to_offset, mode, reason, requested_by)"
                    " SELECT $1, $2, p, f, t, $6, $7, $8"
                    " FROM unnest($3::int[], $4::bigint[], $5::bigint[])"
                    " AS u(p, f, t)",
                    8, params, NULL, err, errsz);
cleanup:
    strbuf_free(&lp);
    strbuf_free(&lf);
    strbuf_free(&lt);
    return rc;
}

exactly_err store_offsets_live_owners(PGconn *conn, const char *schema,
                                      const char *pipeline, const char *topic,
                                      char ***owners, size_t *n_owners,
                                      char *err, size_t errsz)
{
    const char *params[2] = {pipeline, topic};
    PGresult *res = NULL;
    exactly_err rc;
    int r, nomem = 0;

    *owners = NULL;
    *n_owners = 0;
    rc = store_exec(conn, schema,
                    "SELECT DISTINCT o.owner FROM %1$s.offsets o"
                    " WHERE o.pipeline = $1 AND ($2::text IS NULL OR o.topic = $2)"
                    " AND o.owner IS NOT NULL AND " OWNER_LIVE("o.owner")
                    " ORDER BY 1",
                    2, params, &res, err, errsz);
    if (rc != EXACTLY_OK)
        return rc;
    *owners = calloc((size_t)PQntuples(res) + 1, sizeof(char *));
    for (r = 0; *owners && r < PQntuples(res); r++)
        (*owners)[r] = store_strdup(res, r, 0, &nomem);
    if (!*owners || nomem) {
        store_strings_free(*owners, (size_t)PQntuples(res));
        *owners = NULL;
        PQclear(res);
        return oom(err, errsz);
    }
    *n_owners = (size_t)PQntuples(res);
    PQclear(res);
    return EXACTLY_OK;
}
