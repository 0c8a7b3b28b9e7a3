/*
 * store_marks.c - see store_marks.h.
 */
#include "store_marks.h"

#include <stdio.h>
#include <stdlib.h>

#include "err.h"
#include "pg_conn.h"
#include "store_exec.h"

exactly_err store_marks_add(PGconn *conn, const char *schema, char *token,
                            size_t token_size, char *err, size_t errsz)
{
    PGresult *res = NULL;
    exactly_err rc;

    token[0] = '\0';
    rc = store_exec(conn, schema,
                    "INSERT INTO %1$s.commit_marks DEFAULT VALUES"
                    " RETURNING token::text",
                    0, NULL, &res, err, errsz);
    if (rc == EXACTLY_OK)
        snprintf(token, token_size, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return rc;
}

/* The claim's insert, with sqlstate said (store_exec does not say it). */
static exactly_err claim_insert(PGconn *conn, const char *schema,
                                const char *token, int *taken,
                                char sqlstate[6], char *err, size_t errsz)
{
    const char *params[1] = {token};
    char *q = exactly_pg_ident(conn, schema);
    char *sql = q ? store_format_schema(
                        "INSERT INTO %1$s.commit_marks (token) VALUES"
                        " ($1::uuid) ON CONFLICT (token) DO NOTHING"
                        " RETURNING true",
                        q)
                  : NULL;
    PGresult *res = NULL;
    exactly_err rc;

    PQfreemem(q);
    if (!sql) {
        snprintf(err, errsz, "%s", exactly_strerror(EXACTLY_ENOMEM));
        return EXACTLY_ENOMEM;
    }
    rc = exactly_pg_exec_state(conn, sql, 1, params, &res, sqlstate, err,
                               errsz);
    if (rc == EXACTLY_OK)
        *taken = PQntuples(res) == 1;
    PQclear(res);
    free(sql);
    return rc;
}

exactly_err store_marks_claim(PGconn *conn, const char *schema,
                              const char *token, int wait_ms, int *taken,
                              char sqlstate[6], char *err, size_t errsz)
{
    char wait_s[24], ignore[256];
    const char *wait_p[1] = {wait_s};
    exactly_err rc;

    *taken = 0;
    sqlstate[0] = '\0';
    snprintf(wait_s, sizeof(wait_s), "%d", wait_ms);
    rc = exactly_pg_exec_state(conn, "BEGIN", 0, NULL, NULL, sqlstate, err,
                               errsz);
    /* Both bounds for this transaction only: the session's statement
     * timeout may be shorter than the wait (it would answer 57014 rather
     * than 55P03), and a longer lock timeout would outlast the client's
     * own wait for the answer. */
    if (rc == EXACTLY_OK)
        rc = exactly_pg_exec_state(
            conn,
            "SELECT set_config('lock_timeout', $1, true),"
            " set_config('statement_timeout', '0', true)",
            1, wait_p, NULL, sqlstate, err, errsz);
    if (rc == EXACTLY_OK)
        rc = claim_insert(conn, schema, token, taken, sqlstate, err, errsz);
    /* Rolled back whatever the answer: a claim that took the token leaves
     * nothing behind. */
    if (PQstatus(conn) == CONNECTION_OK)
        (void)exactly_pg_exec(conn, "ROLLBACK", 0, NULL, NULL, ignore,
                              sizeof(ignore));
    return rc;
}

exactly_err store_marks_forget(PGconn *conn, const char *schema,
                               const char *token, char *err, size_t errsz)
{
    const char *params[1] = {token};

    return store_exec(conn, schema,
                      "DELETE FROM %1$s.commit_marks WHERE token = $1::uuid"
                      " OR created_at < now() - interval '1 day'",
                      1, params, NULL, err, errsz);
}
