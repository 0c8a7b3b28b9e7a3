/*
 * lookup_probe.c - see lookup_probe.h.
 */
#include "lookup_probe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lookup.h"
#include "pg_conn.h"

void lookup_shape_free(lookup_shape *shape)
{
    size_t i;

    for (i = 0; shape->columns && i < shape->n_columns; i++)
        free(shape->columns[i]);
    free(shape->columns);
    free(shape->key_column);
    memset(shape, 0, sizeof(*shape));
}

int lookup_shape_has(const lookup_shape *shape, const char *name)
{
    size_t i;

    for (i = 0; i < shape->n_columns; i++)
        if (strcmp(shape->columns[i], name) == 0)
            return 1;
    return 0;
}

exactly_err lookup_probe(PGconn *conn, const cfg_pipeline *p,
                         lookup_shape *shape, char *err, size_t errsz)
{
    const char *params[1] = {"{}"};
    char *sql = NULL;
    PGresult *res = NULL;
    exactly_err rc;
    int c;

    memset(shape, 0, sizeof(*shape));
    if (exactly_lookup_sql(conn, p, &sql, &shape->key_column) != EXACTLY_OK)
        goto oom;
    rc = exactly_pg_exec(conn, sql, 1, params, &res, err, errsz);
    free(sql);
    if (rc != EXACTLY_OK) {
        lookup_shape_free(shape);
        return rc;
    }
    shape->has_key = exactly_lookup_column(res, shape->key_column) >= 0;
    shape->columns = calloc((size_t)PQnfields(res) + 1, sizeof(char *));
    if (!shape->columns)
        goto oom;
    for (c = 0; c < PQnfields(res); c++) {
        shape->columns[c] = strdup(PQfname(res, c));
        if (!shape->columns[c])
            goto oom;
        shape->n_columns++;
    }
    PQclear(res);
    return EXACTLY_OK;
oom:
    PQclear(res);
    lookup_shape_free(shape);
    snprintf(err, errsz, "out of memory");
    return EXACTLY_ENOMEM;
}
