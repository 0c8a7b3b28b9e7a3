/*
 * store_runs.c - see store_runs.h.
 */
#include "store_runs.h"

#include <inttypes.h>
#include <stdio.h>

#include "store_exec.h"

exactly_err store_runs_exists(PGconn *conn, const char *schema,
                              const char *pipeline, int64_t run, int *found,
                              char *err, size_t errsz)
{
    char run_s[24];
    const char *params[2] = {run_s, pipeline};
    PGresult *res = NULL;
    exactly_err rc;

    *found = 0;
    snprintf(run_s, sizeof(run_s), "%" PRId64, run);
    rc = store_exec(conn, schema,
                    "SELECT 1 FROM %1$s.reprocess_runs WHERE id = $1::bigint"
                    " AND pipeline = $2",
                    2, params, &res, err, errsz);
    if (rc != EXACTLY_OK)
        return rc;
    *found = PQntuples(res) > 0;
    PQclear(res);
    return EXACTLY_OK;
}

exactly_err store_runs_add_applied(PGconn *conn, const char *schema,
                                   int64_t run, int64_t n, char *err,
                                   size_t errsz)
{
    char run_s[24], n_s[24];
    const char *params[2] = {run_s, n_s};

    snprintf(run_s, sizeof(run_s), "%" PRId64, run);
    snprintf(n_s, sizeof(n_s), "%" PRId64, n);
    return store_exec(conn, schema,
                      "UPDATE %1$s.reprocess_runs SET applied = applied +"
                      " $2::bigint, updated_at = now() WHERE id = $1::bigint",
                      2, params, NULL, err, errsz);
}
