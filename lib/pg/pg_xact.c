/*
 * pg_xact.c - a transaction's outcome by its id on its history (see
 * pg_xact.h).
 */
#include "pg_xact.h"

#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "pg_conn.h"

/* How often a transaction still in progress is asked about again. */
#define XACT_POLL_MS 100

/* The server's history as "system S timeline T", NULL on a server in
 * recovery (its timeline is the one it replays, and it may lag). The
 * timeline is the current insert timeline, read from the name of the WAL
 * file being written: it changes at the promotion itself, while
 * pg_control_checkpoint() names it only after the next checkpoint. */
#define HISTORY_SQL                                                           \
    "CASE WHEN pg_is_in_recovery() THEN NULL ELSE"                            \
    " format('system %s timeline %s', (SELECT system_identifier FROM"         \
    " pg_control_system()), ('x' || substr(pg_walfile_name("                  \
    "pg_current_wal_lsn()), 1, 8))::bit(32)::bigint) END"

void exactly_pg_xact_history(PGconn *conn, exactly_xact_ref *ref)
{
    PGresult *res = NULL;
    char err[512];

    ref->history[0] = '\0';
    if (exactly_pg_exec(conn, "SELECT " HISTORY_SQL, 0, NULL, &res, err,
                        sizeof(err)) != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_WARN, "postgres",
                    "cannot read the server's history: a COMMIT whose answer "
                    "is lost will be reported unknown",
                    LOG_STR("error", err));
    } else if (!PQgetisnull(res, 0, 0)) {
        snprintf(ref->history, sizeof(ref->history), "%s",
                 PQgetvalue(res, 0, 0));
    }
    PQclear(res);
}

exactly_err exactly_pg_xact_id(PGconn *conn, exactly_xact_ref *ref,
                               char *err, size_t errsz)
{
    PGresult *res = NULL;
    exactly_err rc;

    ref->xid[0] = '\0';
    rc = exactly_pg_exec(conn, "SELECT pg_current_xact_id()::text", 0, NULL,
                         &res, err, errsz);
    if (rc == EXACTLY_OK)
        snprintf(ref->xid, sizeof(ref->xid), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return rc;
}

/* Whether conn's server is on ref's history. Returns 1 when it is, 0 with
 * the reason in why when it is not or that cannot be read. */
static int same_history(PGconn *conn, const exactly_xact_ref *ref, char *why,
                        size_t whysz)
{
    PGresult *res = NULL;
    char now[EXACTLY_XACT_HISTORY_SIZE];
    int same;

    if (exactly_pg_exec(conn, "SELECT " HISTORY_SQL, 0, NULL, &res, why,
                        whysz) != EXACTLY_OK)
        return 0;
    if (PQgetisnull(res, 0, 0)) {
        PQclear(res);
        snprintf(why, whysz,
                 "the server now answering is a standby in recovery, which "
                 "may not have received transaction %s yet",
                 ref->xid);
        return 0;
    }
    snprintf(now, sizeof(now), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    if (!ref->history[0]) {
        snprintf(why, whysz,
                 "the history of the server transaction %s ran on could not "
                 "be read, so no server can answer for that id",
                 ref->xid);
        return 0;
    }
    same = strcmp(now, ref->history) == 0;
    if (!same)
        snprintf(why, whysz,
                 "the server now answering (%s) is not on the history "
                 "transaction %s ran on (%s): after a failover or a restore "
                 "it may never have seen that transaction, and the same id "
                 "may name another one there",
                 now, ref->xid, ref->history);
    return same;
}

exactly_xact_outcome exactly_pg_xact_outcome(PGconn *conn,
                                             const exactly_config *cfg,
                                             const exactly_xact_ref *ref,
                                             char *why, size_t whysz)
{
    long long until = exactly_now_ms() + exactly_pg_wait_bound_ms(cfg);
    const char *params[1] = {ref->xid};
    char status[32];

    if (!same_history(conn, ref, why, whysz))
        return EXACTLY_XACT_UNKNOWN;
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
                     ref->xid);
            return EXACTLY_XACT_UNKNOWN;
        }
        if (exactly_now_ms() >= until) {
            snprintf(why, whysz, "transaction %s is still in progress",
                     ref->xid);
            return EXACTLY_XACT_UNKNOWN;
        }
        exactly_sleep_ms(XACT_POLL_MS);
    }
}
