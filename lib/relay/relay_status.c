/*
 * relay_status.c - `exactly relay status`: a relay's figures from its
 * outbox and relay_state rows, and whether a relay runs now: which
 * session, if any, holds the outbox's advisory lock (relay_outbox.c takes
 * it with pg_try_advisory_lock(hashtextextended(key, 0))). Rows alone
 * cannot tell a running relay from one that stopped.
 */
#include "relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_conn.h"
#include "relay_internal.h"
#include "strbuf.h"

/* pg_locks shows a lock on one bigint key with its high 32 bits in
 * classid, its low 32 bits in objid and objsubid 1; only granted locks
 * of this database count. The holder's application_name and
 * backend_start are NULL where pg_stat_activity hides them from this
 * role. */
static const char holder_sql[] =
    "SELECT l.pid, a.application_name,"
    " to_char(a.backend_start AT TIME ZONE 'UTC',"
    "  'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
    " FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
    " AND l.database = (SELECT oid FROM pg_database"
    "  WHERE datname = current_database())"
    " AND l.classid::bigint = (hashtextextended($1, 0) >> 32) & 4294967295"
    " AND l.objid::bigint = hashtextextended($1, 0) & 4294967295"
    " LIMIT 1";

/* Fills out's running and holder from rl's lock key. Returns 0, or -1
 * with the reason in errbuf. */
static int read_holder(relay *rl, exactly_relay_status *out, char *errbuf,
                       size_t errbuf_size)
{
    const char *params[1] = {rl->lock_key};
    PGresult *res = NULL;

    if (exactly_pg_exec(rl->conn, holder_sql, 1, params, &res, errbuf,
                        errbuf_size) != EXACTLY_OK)
        return -1;
    if (PQntuples(res) == 1) {
        out->running = 1;
        out->holder_pid = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        snprintf(out->holder_app, sizeof(out->holder_app), "%s",
                 PQgetvalue(res, 0, 1));
        snprintf(out->holder_start, sizeof(out->holder_start), "%s",
                 PQgetvalue(res, 0, 2));
    }
    PQclear(res);
    return 0;
}

/* The statement of the figures from r's outbox (table) and relay_state
 * (state), malloc'd; NULL when out of memory. */
static char *figures_sql(const char *state, const char *table)
{
    strbuf sb = {0};

    strbuf_printf(&sb,
               "SELECT"
               " count(*) FILTER (WHERE published_at IS NULL"
               "  AND dead_reason IS NULL),"
               " coalesce(extract(epoch FROM now() - min(created_at)"
               "  FILTER (WHERE published_at IS NULL AND dead_reason IS NULL)),"
               "  0)::float8,"
               " count(*) FILTER (WHERE dead_reason IS NOT NULL),"
               " (SELECT published FROM %1$s WHERE relay = $1),"
               /* README, `exactly relay status`: the rows published since
                * the relay took the outbox over the seconds since then,
                * at least one. */
               " (SELECT (published_since_start / greatest(extract(epoch"
               "  FROM now() - started_at), 1))::float8 FROM %1$s"
               "  WHERE relay = $1),"
               " (SELECT extract(epoch FROM now() - last_published_at)::float8"
               "  FROM %1$s WHERE relay = $1)"
               " FROM %2$s",
               state, table);
    if (sb.oom) {
        strbuf_free(&sb);
        return NULL;
    }
    return sb.data;
}

int exactly_relay_read_status(const exactly_config *cfg, const cfg_relay *r,
                              exactly_relay_status *out, char *errbuf,
                              size_t errbuf_size)
{
    relay rl;
    PGresult *res = NULL;
    char *sql = NULL;
    const char *params[1];
    int rc = -1;

    memset(out, 0, sizeof(*out));
    memset(&rl, 0, sizeof(rl));
    rl.cfg = cfg;
    rl.r = r;
    rl.conn = exactly_pg_connect(cfg, "exactly-relay-status", errbuf,
                                 errbuf_size);
    if (!rl.conn)
        return -1;
    if (relay_build_sql(&rl) != 0 ||
        !(sql = figures_sql(rl.state_q, rl.table_q))) {
        snprintf(errbuf, errbuf_size, "out of memory");
        goto cleanup;
    }
    params[0] = r->name;
    if (exactly_pg_exec(rl.conn, sql, 1, params, &res, errbuf, errbuf_size) !=
        EXACTLY_OK)
        goto cleanup;
    out->pending = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    out->oldest_pending_s = strtod(PQgetvalue(res, 0, 1), NULL);
    out->dead = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    out->published_total =
        PQgetisnull(res, 0, 3) ? -1 : strtoll(PQgetvalue(res, 0, 3), NULL, 10);
    out->rate_per_s = PQgetisnull(res, 0, 4) ? 0
                                              : strtod(PQgetvalue(res, 0, 4), NULL);
    out->last_publish_s =
        PQgetisnull(res, 0, 5) ? -1 : strtod(PQgetvalue(res, 0, 5), NULL);
    if (read_holder(&rl, out, errbuf, errbuf_size) != 0)
        goto cleanup;
    rc = 0;
cleanup:
    PQclear(res);
    free(sql);
    relay_drop_conn(&rl);
    free(rl.table_q);
    free(rl.state_q);
    free(rl.sql_select);
    free(rl.sql_acked);
    free(rl.sql_done);
    free(rl.sql_dead);
    free(rl.sql_state);
    free(rl.sql_expire);
    free(rl.sql_backlog);
    free(rl.sql_position);
    return rc;
}
