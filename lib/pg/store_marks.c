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
    /* The token's first 48 bits are the time of this insert (ms since
     * 1970), the rest random; created_at is that same time, not the
     * transaction's start, so that the age the delete of old marks reads
     * is the age a question reads in the token. */
    rc = store_exec(conn, schema,
                    "INSERT INTO %1$s.commit_marks (token, created_at)"
                    " SELECT encode(overlay(uuid_send(gen_random_uuid())"
                    " PLACING substring(int8send((extract(epoch FROM t) *"
                    " 1000)::bigint) FROM 3) FROM 1 FOR 6), 'hex')::uuid, t"
                    " FROM (SELECT clock_timestamp() AS t) AS c"
                    " RETURNING token::text",
                    0, NULL, &res, err, errsz);
    if (rc == EXACTLY_OK)
        snprintf(token, token_size, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return rc;
}

/* The claim's insert, with sqlstate said (store_exec does not say it).
 * Its RETURNING reads the time in the token (store_marks_add) against
 * the clock after the conflict check, so after any delete that took the
 * token. */
static exactly_err claim_insert(PGconn *conn, const char *schema,
                                const char *token, int *taken, int *aged,
                                char sqlstate[6], char *err, size_t errsz)
{
    const char *params[1] = {token};
    char *q = exactly_pg_ident(conn, schema);
    char *sql = q ? store_format_schema(
                        "INSERT INTO %1$s.commit_marks (token) VALUES"
                        " ($1::uuid) ON CONFLICT (token) DO NOTHING"
                        " RETURNING clock_timestamp() - to_timestamp(('x'"
                        " || left(replace(token::text, '-', ''), 12))"
                        "::bit(48)::bigint / 1000.0) > interval '"
                        STORE_MARKS_AGED "'",
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
    if (rc == EXACTLY_OK) {
        *taken = PQntuples(res) == 1;
        *aged = *taken && PQgetvalue(res, 0, 0)[0] == 't';
    }
    PQclear(res);
    free(sql);
    return rc;
}

exactly_err store_marks_claim(PGconn *conn, const char *schema,
                              const char *token, int wait_ms, int *taken,
                              int *aged, char sqlstate[6], char *err,
                              size_t errsz)
{
    char wait_s[24], ignore[256];
    const char *wait_p[1] = {wait_s};
    exactly_err rc;

    *taken = 0;
    *aged = 0;
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
        rc = claim_insert(conn, schema, token, taken, aged, sqlstate, err,
                          errsz);
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
                      " OR created_at < now() - interval '" STORE_MARKS_KEPT
                      "'",
                      1, params, NULL, err, errsz);
}
