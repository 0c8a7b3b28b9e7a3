/*
 * store_exec.c - see store_exec.h.
 */
#include "store_exec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "pg_conn.h"
#include "strbuf.h"

exactly_err store_exec(PGconn *conn, const char *schema, const char *fmt,
                       int n_params, const char *const *params,
                       PGresult **res, char *err, size_t errsz)
{
    char *q = exactly_pg_ident(conn, schema);
    strbuf sql = {0};
    exactly_err rc;

    if (res)
        *res = NULL;
    if (!q) {
        snprintf(err, errsz, "%s", exactly_strerror(EXACTLY_ENOMEM));
        return EXACTLY_ENOMEM;
    }
    strbuf_printf(&sql, fmt, q);
    PQfreemem(q);
    if (sql.oom) {
        strbuf_free(&sql);
        snprintf(err, errsz, "%s", exactly_strerror(EXACTLY_ENOMEM));
        return EXACTLY_ENOMEM;
    }
    rc = exactly_pg_exec(conn, strbuf_str(&sql), n_params, params, res, err,
                         errsz);
    strbuf_free(&sql);
    return rc;
}

char *store_strdup(const PGresult *res, int row, int col, int *oom)
{
    char *s;

    if (PQgetisnull(res, row, col))
        return NULL;
    s = strdup(PQgetvalue(res, row, col));
    if (!s)
        *oom = 1;
    return s;
}

int64_t store_int64(const PGresult *res, int row, int col)
{
    return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

void store_strings_free(char **v, size_t n)
{
    size_t i;

    for (i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

char *store_format_schema(const char *fmt, const char *schema_q)
{
    strbuf sb = {0};

    strbuf_printf(&sb, fmt, schema_q);
    if (sb.oom) {
        strbuf_free(&sb);
        return NULL;
    }
    return sb.data;
}
