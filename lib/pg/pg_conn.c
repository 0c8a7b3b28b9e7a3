#include "pg_conn.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <time.h>

#include "conninfo.h"
#include "log.h"

static void notice_to_log(void *arg, const char *message)
{
    size_t n = strlen(message);

    (void)arg;
    while (n > 0 && (message[n - 1] == '\n'))
        n--;
    exactly_log(EXACTLY_LOG_INFO, "postgres", "server notice",
                LOG_STRN("text", message, n));
}

/* The bound of exactly_pg_exec: set from the configuration of the last
 * connection made (one process, one configuration). */
static int g_exec_wait_ms = 30000;

int exactly_pg_wait_bound_ms(const exactly_config *cfg)
{
    long long ms = cfg->postgres.client_timeout_ms;

    if (ms <= 0)
        ms = (long long)cfg->postgres.statement_timeout_ms +
             (long long)cfg->postgres.lock_timeout_ms + 30000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

void exactly_pg_abandon(PGconn *conn)
{
    int fd = conn ? PQsocket(conn) : -1;

    if (fd < 0)
        return;
    (void)shutdown(fd, SHUT_RDWR);
    /* libpq reads the end of the stream and marks the connection bad. */
    (void)PQconsumeInput(conn);
}

/* Writes "what: libpq's message" into errbuf, the message on one line and
 * with every password of the conninfo hidden: libpq and the server may
 * quote any option (a host, a database name) that holds a piece of it. */
static void fail_connect(const exactly_config *cfg, PGconn *conn,
                         const char *what, char *errbuf, size_t errbuf_size)
{
    const char *m = conn ? PQerrorMessage(conn) : "out of memory";
    char scrubbed[1024];
    size_t n;

    exactly_conninfo_scrub(cfg->postgres.conninfo, m, scrubbed,
                           sizeof(scrubbed));
    n = strlen(scrubbed);
    while (n > 0 && scrubbed[n - 1] == '\n')
        n--;
    snprintf(errbuf, errbuf_size, "%s: %.*s", what, (int)n, scrubbed);
}

/* Every wait on the server stays bounded, so a stuck database turns into
 * a retriable error instead of a worker that stops polling. A client that
 * ended its connection after its own bound (a wait that ran out) leaves
 * its statement running on the server, holding its locks, until the
 * server next writes to it; from PostgreSQL 14 on the server can look for
 * a vanished client while a statement runs. Returns 0, or -1 when the
 * settings were refused. */
static int set_timeouts(PGconn *conn, const exactly_config *cfg)
{
    char statement_ms[16], lock_ms[16], idle_ms[16];
    const char *set_params[4];
    PGresult *res;
    int ok;

    snprintf(statement_ms, sizeof(statement_ms), "%d",
             cfg->postgres.statement_timeout_ms);
    snprintf(lock_ms, sizeof(lock_ms), "%d", cfg->postgres.lock_timeout_ms);
    snprintf(idle_ms, sizeof(idle_ms), "%d",
             cfg->postgres.idle_in_transaction_timeout_ms);
    set_params[0] = statement_ms;
    set_params[1] = lock_ms;
    set_params[2] = idle_ms;
    set_params[3] = "5s";
    res = PQexecParams(
        conn,
        PQserverVersion(conn) >= 140000
            ? "SELECT set_config('statement_timeout', $1, false),"
              " set_config('lock_timeout', $2, false),"
              " set_config('idle_in_transaction_session_timeout', $3, false),"
              " set_config('client_connection_check_interval', $4, false)"
            : "SELECT set_config('statement_timeout', $1, false),"
              " set_config('lock_timeout', $2, false),"
              " set_config('idle_in_transaction_session_timeout', $3, false)",
        PQserverVersion(conn) >= 140000 ? 4 : 3, NULL, set_params, NULL,
        NULL, 0);
    ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    PQclear(res);
    return ok ? 0 : -1;
}

PGconn *exactly_pg_connect_unset(const exactly_config *cfg,
                                 const char *app_name, char *errbuf,
                                 size_t errbuf_size)
{
    char timeout[16];
    exactly_conn_settings ours;
    exactly_conn_params params;
    const char *problem;
    PGconn *conn = NULL;

    /* libpq's own messages about a conninfo it cannot read quote pieces of
     * it, the password included: say what is wrong in our own words. */
    problem = exactly_conninfo_problem(cfg->postgres.conninfo);
    if (problem) {
        snprintf(errbuf, errbuf_size,
                 "cannot connect to PostgreSQL: 'postgres.conninfo' %s",
                 problem);
        return NULL;
    }
    snprintf(timeout, sizeof(timeout), "%d", cfg->postgres.connect_timeout_s);
    g_exec_wait_ms = exactly_pg_wait_bound_ms(cfg);
    /* The user's settings stay (their options, their connect_timeout and
     * keepalives over our defaults); the session's name is ours. Our own
     * settings are SET once connected, not sent as startup options:
     * PgBouncer refuses a startup packet with options. */
    ours.application_name = app_name;
    ours.connect_timeout = timeout;
    ours.options = NULL;
    if (exactly_conninfo_params(cfg->postgres.conninfo, &ours, &params) !=
        EXACTLY_OK) {
        snprintf(errbuf, errbuf_size, "cannot connect to PostgreSQL: %s",
                 "out of memory");
        exactly_conninfo_params_free(&params);
        return NULL;
    }
    conn = PQconnectdbParams(params.keys, params.vals, 0);
    exactly_conninfo_params_free(&params);
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        fail_connect(cfg, conn, "cannot connect to PostgreSQL", errbuf,
                     errbuf_size);
        PQfinish(conn);
        return NULL;
    }
    PQsetNoticeProcessor(conn, notice_to_log, NULL);
    if (PQsetnonblocking(conn, 1) != 0) {
        fail_connect(cfg, conn, "cannot set non-blocking mode", errbuf,
                     errbuf_size);
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

int exactly_pg_apply_settings(PGconn *conn, const exactly_config *cfg,
                              char *errbuf, size_t errbuf_size)
{
    /* PQexecParams in set_timeouts waits as if blocking, whatever the
     * connection's mode. */
    if (set_timeouts(conn, cfg) == 0)
        return 0;
    fail_connect(cfg, conn, "cannot set the session's timeouts", errbuf,
                 errbuf_size);
    return -1;
}

PGconn *exactly_pg_connect(const exactly_config *cfg, const char *app_name,
                           char *errbuf, size_t errbuf_size)
{
    PGconn *conn = exactly_pg_connect_unset(cfg, app_name, errbuf,
                                            errbuf_size);

    if (conn && exactly_pg_apply_settings(conn, cfg, errbuf, errbuf_size)) {
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

/* Set by the first exactly_pg_check_session() that passed. */
static int g_session_checked;

exactly_err exactly_pg_check_session(PGconn *conn, const exactly_config *cfg,
                                     char *errbuf, size_t errbuf_size)
{
    static const char set_sql[] =
        "SELECT set_config('exactly.session_check', $1, false),"
        " pg_backend_pid()::text";
    /* Reads the probe, then clears it (OFFSET 0 keeps the read in a
     * subquery of its own, evaluated first): in the session it was set in
     * when that is this one, else in the pooled backend that kept it,
     * which would otherwise hand it to the pool's next client. Reading
     * it is what the check decides by; clearing it afterwards changes
     * nothing it decides. */
    static const char get_sql[] =
        "SELECT v, p, set_config('exactly.session_check', '', false) FROM"
        " (SELECT coalesce(current_setting('exactly.session_check', true),"
        " '') AS v, pg_backend_pid()::text AS p OFFSET 0) AS probe";
    char token[64], pid_a[16] = "", err[512];
    const char *params[1] = {token};
    PGresult *res = NULL;
    PGconn *other = NULL;
    const char *why = NULL;
    exactly_err rc;
    struct timespec ts;

    if (g_session_checked)
        return EXACTLY_OK;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(token, sizeof(token), "%d-%ld-%ld", (int)getpid(),
             (long)ts.tv_sec, (long)ts.tv_nsec);
    rc = exactly_pg_exec(conn, set_sql, 1, params, &res, err, sizeof(err));
    if (rc != EXACTLY_OK)
        goto fail;
    snprintf(pid_a, sizeof(pid_a), "%s", PQgetvalue(res, 0, 1));
    PQclear(res);
    res = NULL;
    /* Without the session settings: it only reads the probe, and through
     * a pooler in transaction mode they would stay on a pooled backend. */
    other = exactly_pg_connect_unset(cfg, "exactly-session-check", err,
                                     sizeof(err));
    if (!other) {
        rc = EXACTLY_ERETRY;
        goto fail;
    }
    rc = exactly_pg_exec(other, get_sql, 0, NULL, &res, err, sizeof(err));
    if (rc != EXACTLY_OK)
        goto fail;
    if (strcmp(PQgetvalue(res, 0, 1), pid_a) == 0 ||
        strcmp(PQgetvalue(res, 0, 0), token) == 0)
        why = "a second connection was given the same server session";
    PQclear(res);
    res = NULL;
    rc = exactly_pg_exec(conn, get_sql, 0, NULL, &res, err, sizeof(err));
    if (rc != EXACTLY_OK)
        goto fail;
    if (!why && (strcmp(PQgetvalue(res, 0, 0), token) != 0 ||
                 strcmp(PQgetvalue(res, 0, 1), pid_a) != 0))
        why = "the connection's next statement ran in another server session";
    PQclear(res);
    PQfinish(other);
    if (why) {
        snprintf(errbuf, errbuf_size,
                 "the connection is not a PostgreSQL session of its own (%s): "
                 "a connection pooler in transaction or statement mode "
                 "(PgBouncer pool_mode = transaction) would drop the "
                 "session's statement, lock and idle-in-transaction timeouts "
                 "between transactions; connect to PostgreSQL directly or "
                 "through a pool in session mode",
                 why);
        return EXACTLY_ECONFIG;
    }
    g_session_checked = 1;
    return EXACTLY_OK;

fail:
    PQclear(res);
    PQfinish(other);
    snprintf(errbuf, errbuf_size, "cannot check the session: %s", err);
    return rc == EXACTLY_ECONFIG ? EXACTLY_ERETRY : rc;
}

exactly_pg_class exactly_pg_class_of(const char *sqlstate)
{
    /* Classes about the data in hand (PostgreSQL Appendix A). */
    static const char *const record_classes[] = {
        "09", /* triggered action exception */
        "21", /* cardinality violation */
        "22", /* data exception */
        "23", /* integrity constraint violation */
        "27", /* triggered data change violation */
        "44", /* WITH CHECK OPTION violation */
        "54", /* program limit exceeded: this row is too big */
        "P0", /* raised by PL/pgSQL: RAISE, ASSERT, no/too many rows */
    };
    size_t i;

    if (!sqlstate || !sqlstate[0])
        return PG_TRANSIENT;
    if (strcmp(sqlstate, EXACTLY_SQLSTATE_FENCED) == 0)
        return PG_FENCED;
    if (strncmp(sqlstate, "08", 2) == 0 || /* connection exception */
        strncmp(sqlstate, "53", 2) == 0 || /* insufficient resources */
        strncmp(sqlstate, "57", 2) == 0 || /* canceled, shutdown, timeouts */
        strncmp(sqlstate, "58", 2) == 0 || /* system error (I/O) */
        strcmp(sqlstate, "40001") == 0 ||  /* serialization_failure */
        strcmp(sqlstate, "40P01") == 0 ||  /* deadlock_detected */
        strcmp(sqlstate, "55P03") == 0 ||  /* lock_not_available */
        strcmp(sqlstate, "25P03") == 0 ||  /* idle_in_transaction timeout */
        strcmp(sqlstate, "25006") == 0)    /* read-only: a standby */
        return PG_TRANSIENT;
    if (strcmp(sqlstate, "40002") == 0) /* integrity constraint at commit */
        return PG_RECORD;
    for (i = 0; i < sizeof(record_classes) / sizeof(record_classes[0]); i++)
        if (strncmp(sqlstate, record_classes[i], 2) == 0)
            return PG_RECORD;
    /* 42 (privilege, missing object, syntax), 3D/3F (no such database or
     * schema), 28 (authentication), 0A (not supported), XX (internal) and
     * anything unknown: a person must look; good records stay put. */
    return PG_ENVIRONMENT;
}

exactly_err exactly_pg_classify(const char *sqlstate)
{
    switch (exactly_pg_class_of(sqlstate)) {
    case PG_FENCED:
        return EXACTLY_EFENCED;
    case PG_RECORD:
        return EXACTLY_EDATABASE;
    case PG_TRANSIENT:
    case PG_ENVIRONMENT:
        break;
    }
    return EXACTLY_ERETRY;
}

int exactly_pg_needs_reconnect(const char *sqlstate)
{
    return !sqlstate || !sqlstate[0] || strncmp(sqlstate, "08", 2) == 0 ||
           strncmp(sqlstate, "57P", 3) == 0 || strcmp(sqlstate, "25006") == 0;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int exactly_pg_wait_result(PGconn *conn, int timeout_ms)
{
    return exactly_pg_wait_result_idle(conn, timeout_ms, NULL, NULL);
}

int exactly_pg_wait_result_idle(PGconn *conn, int timeout_ms,
                                int (*idle)(void *), void *arg)
{
    long long deadline = now_ms() + timeout_ms;

    for (;;) {
        struct pollfd pfd;
        int flush = PQflush(conn);
        int left;

        if (flush < 0)
            return -1;
        if (flush == 0 && !PQisBusy(conn))
            return 0;
        left = (int)(deadline - now_ms());
        if (left <= 0)
            return -1;
        if (idle && flush == 0) {
            /* Work found: look at the socket again soon; none: sleep on
             * it a little longer, still bounded so new work is noticed. */
            int wait = idle(arg) > 0 ? 0 : 2;
            if (left > wait)
                left = wait;
        }
        pfd.fd = PQsocket(conn);
        if (pfd.fd < 0)
            return -1;
        /* Read while writing: the server may block on its output while we
         * are still sending a long pipeline. */
        pfd.events = POLLIN | (flush == 1 ? POLLOUT : 0);
        pfd.revents = 0;
        if (poll(&pfd, 1, left) < 0 && errno != EINTR)
            return -1;
        if (left == 0 && !(pfd.revents & (POLLIN | POLLERR | POLLHUP)))
            continue;
        if ((pfd.revents & (POLLIN | POLLERR | POLLHUP)) &&
            !PQconsumeInput(conn))
            return -1;
    }
}

exactly_err exactly_pg_exec(PGconn *conn, const char *sql, int n_params,
                            const char *const *params, PGresult **out,
                            char *errbuf, size_t errbuf_size)
{
    return exactly_pg_exec_state(conn, sql, n_params, params, out, NULL,
                                 errbuf, errbuf_size);
}

exactly_err exactly_pg_exec_state(PGconn *conn, const char *sql,
                                  int n_params, const char *const *params,
                                  PGresult **out, char *sqlstate,
                                  char *errbuf, size_t errbuf_size)
{
    PGresult *res = NULL;
    PGresult *last = NULL;
    exactly_err rc = EXACTLY_OK;
    ExecStatusType st;

    if (out)
        *out = NULL;
    /* Without parameters use the simple protocol, which allows several
     * statements in one string (migrations). */
    if (!(n_params == 0 ? PQsendQuery(conn, sql)
                        : PQsendQueryParams(conn, sql, n_params, NULL, params,
                                            NULL, NULL, 0))) {
        snprintf(errbuf, errbuf_size, "%s", PQerrorMessage(conn));
        return EXACTLY_ERETRY;
    }
    for (;;) {
        if (exactly_pg_wait_result(conn, g_exec_wait_ms) != 0) {
            if (PQstatus(conn) == CONNECTION_OK) {
                snprintf(errbuf, errbuf_size,
                         "no answer from PostgreSQL within %d ms; connection "
                         "ended",
                         g_exec_wait_ms);
                exactly_pg_abandon(conn);
            } else {
                snprintf(errbuf, errbuf_size, "connection lost: %s",
                         PQerrorMessage(conn));
            }
            PQclear(last);
            return EXACTLY_ERETRY;
        }
        res = PQgetResult(conn);
        if (!res)
            break;
        PQclear(last);
        last = res;
    }
    if (!last) {
        snprintf(errbuf, errbuf_size, "no result: %s", PQerrorMessage(conn));
        return EXACTLY_ERETRY;
    }
    st = PQresultStatus(last);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        const char *m = PQresultErrorMessage(last);
        size_t n = strlen(m);
        while (n > 0 && m[n - 1] == '\n')
            n--;
        snprintf(errbuf, errbuf_size, "%.*s", (int)n, m);
        if (sqlstate)
            snprintf(sqlstate, 6, "%s",
                     PQresultErrorField(last, PG_DIAG_SQLSTATE)
                         ? PQresultErrorField(last, PG_DIAG_SQLSTATE)
                         : "");
        rc = exactly_pg_classify(PQresultErrorField(last, PG_DIAG_SQLSTATE));
        if (PQstatus(conn) != CONNECTION_OK)
            rc = EXACTLY_ERETRY;
        PQclear(last);
        return rc;
    }
    if (out)
        *out = last;
    else
        PQclear(last);
    return EXACTLY_OK;
}

char *exactly_pg_ident(PGconn *conn, const char *ident)
{
    return PQescapeIdentifier(conn, ident, strlen(ident));
}
