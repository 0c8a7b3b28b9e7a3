/*
 * pg_xact.c - a transaction's outcome by its id (see pg_xact.h).
 */
#include "pg_xact.h"

#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "pg_conn.h"

/* How often a transaction still in progress is asked about again. */
#define XACT_POLL_MS 100

exactly_err exactly_pg_xact_id(PGconn *conn, char *xid, size_t xidsz,
                               char *err, size_t errsz)
{
    PGresult *res = NULL;
    exactly_err rc;

    xid[0] = '\0';
    rc = exactly_pg_exec(conn, "SELECT pg_current_xact_id()::text", 0, NULL,
                         &res, err, errsz);
    if (rc == EXACTLY_OK)
        snprintf(xid, xidsz, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return rc;
}

exactly_xact_outcome exactly_pg_xact_outcome(PGconn *conn,
                                             const exactly_config *cfg,
                                             const char *xid, char *why,
                                             size_t whysz)
{
    long long until = exactly_now_ms() + exactly_pg_wait_bound_ms(cfg);
    const char *params[1] = {xid};
    char status[32];

    for (;;) {
        PGresult *res = NULL;

        if (exactly_pg_exec(conn, "SELECT pg_xact_status($1::xid8)", 1,
                            params, &res, why, whysz) != EXACTLY_OK)
            return EXACTLY_XACT_UNKNOWN;
        /* NULL: too old for the server to remember. */
        snprintf(status, sizeof(status), "%s",
                 PQgetisnull(res, 0, 0) ? "" : PQgetvalue(res, 0, 0));
        PQclear(res);
        if (strcmp(status, "committed") == 0)
            return EXACTLY_XACT_COMMITTED;
        if (strcmp(status, "aborted") == 0)
            return EXACTLY_XACT_ABORTED;
        if (strcmp(status, "in progress") != 0) {
            snprintf(why, whysz, "the server no longer knows transaction %s",
                     xid);
            return EXACTLY_XACT_UNKNOWN;
        }
        if (exactly_now_ms() >= until) {
            snprintf(why, whysz, "transaction %s is still in progress", xid);
            return EXACTLY_XACT_UNKNOWN;
        }
        exactly_sleep_ms(XACT_POLL_MS);
    }
}
