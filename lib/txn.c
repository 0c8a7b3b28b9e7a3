#include "txn.h"

#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "log.h"
#include "options.h"
#include "pg_conn.h"

exactly_err exactly_txn_start(exactly_txn *t, PGconn *conn, int timeout_ms)
{
    size_t i;

    t->conn = conn;
    t->timeout_ms = timeout_ms;
    t->n_pending = 0;
    t->failed = 0;
    t->sqlstate[0] = '\0';
    t->errmsg[0] = '\0';
    t->handler_err[0] = '\0';
    t->handler_err_set = 0;
    for (i = 0; i < t->n_fails; i++)
        free(t->fails[i].reason);
    t->n_fails = 0;
    if (PQpipelineStatus(conn) == PQ_PIPELINE_OFF &&
        PQenterPipelineMode(conn) != 1) {
        snprintf(t->errmsg, sizeof(t->errmsg), "cannot enter pipeline mode: %s",
                 PQerrorMessage(conn));
        return EXACTLY_ERETRY;
    }
    return EXACTLY_OK;
}

void exactly_txn_finish(exactly_txn *t)
{
    if (t->conn && PQpipelineStatus(t->conn) != PQ_PIPELINE_OFF)
        (void)PQexitPipelineMode(t->conn);
}

void exactly_txn_forget_fails(exactly_txn *t)
{
    size_t i;

    for (i = 0; i < t->n_fails; i++)
        free(t->fails[i].reason);
    t->n_fails = 0;
    t->handler_err_set = 0;
    t->handler_err[0] = '\0';
}

void exactly_txn_clear(exactly_txn *t)
{
    if (!t)
        return;
    exactly_txn_forget_fails(t);
    free(t->fails);
    free(t->pending);
    memset(t, 0, sizeof(*t));
}

static void set_error(exactly_txn *t, txn_phase phase, const char *sqlstate,
                      const char *msg)
{
    size_t n;

    if (t->failed)
        return;
    t->failed = 1;
    t->err_phase = phase;
    snprintf(t->sqlstate, sizeof(t->sqlstate), "%s", sqlstate ? sqlstate : "");
    snprintf(t->errmsg, sizeof(t->errmsg), "%s", msg ? msg : "unknown error");
    n = strlen(t->errmsg);
    while (n > 0 && t->errmsg[n - 1] == '\n')
        t->errmsg[--n] = '\0';
}

exactly_err exactly_txn_send(exactly_txn *t, txn_phase phase, const char *sql,
                             int n_params, const char *const *params,
                             PGresult **keep)
{
    if (t->n_pending == t->cap_pending) {
        size_t cap = t->cap_pending ? t->cap_pending * 2 : 16;
        struct txn_pending *p = realloc(t->pending, cap * sizeof(*p));
        if (!p)
            return EXACTLY_ENOMEM;
        t->pending = p;
        t->cap_pending = cap;
    }
    if (keep)
        *keep = NULL;
    if (!PQsendQueryParams(t->conn, sql, n_params, NULL, params, NULL, NULL,
                           0)) {
        set_error(t, phase, NULL, PQerrorMessage(t->conn));
        return EXACTLY_ERETRY;
    }
    t->pending[t->n_pending].phase = phase;
    t->pending[t->n_pending].keep = keep;
    t->n_pending++;
    return EXACTLY_OK;
}

static exactly_err lost(exactly_txn *t, txn_phase phase)
{
    set_error(t, phase, NULL, PQerrorMessage(t->conn));
    t->n_pending = 0;
    return EXACTLY_ERETRY;
}

/* Reads up to and including the next PGRES_PIPELINE_SYNC. */
static int read_sync(exactly_txn *t)
{
    int empty = 0;

    for (;;) {
        PGresult *res;
        ExecStatusType st;

        if (exactly_pg_wait_result_idle(t->conn, t->timeout_ms, t->idle,
                                        t->idle_arg) != 0)
            return -1;
        res = PQgetResult(t->conn);
        if (!res) {
            if (PQstatus(t->conn) != CONNECTION_OK || ++empty > 2)
                return -1;
            continue;
        }
        st = PQresultStatus(res);
        PQclear(res);
        if (st == PGRES_PIPELINE_SYNC)
            return 0;
    }
}

exactly_err exactly_txn_push_sync(exactly_txn *t)
{
    if (t->n_pending == t->cap_pending) {
        size_t cap = t->cap_pending ? t->cap_pending * 2 : 16;
        struct txn_pending *p = realloc(t->pending, cap * sizeof(*p));
        if (!p)
            return EXACTLY_ENOMEM;
        t->pending = p;
        t->cap_pending = cap;
    }
    if (PQpipelineSync(t->conn) != 1) {
        set_error(t, TXN_SYNC, NULL, PQerrorMessage(t->conn));
        return EXACTLY_ERETRY;
    }
    t->pending[t->n_pending].phase = TXN_SYNC;
    t->pending[t->n_pending].keep = NULL;
    t->n_pending++;
    return EXACTLY_OK;
}

int exactly_txn_flush(exactly_txn *t)
{
    for (;;) {
        struct pollfd pfd;
        int r = PQflush(t->conn);
        if (r <= 0)
            return r;
        pfd.fd = PQsocket(t->conn);
        pfd.events = POLLOUT | POLLIN;
        pfd.revents = 0;
        if (poll(&pfd, 1, t->timeout_ms) <= 0)
            return -1;
        /* Results may arrive while we send; take them in so the server
         * never blocks on a full socket. */
        if ((pfd.revents & POLLIN) && !PQconsumeInput(t->conn))
            return -1;
    }
}

exactly_err exactly_txn_sync(exactly_txn *t)
{
    size_t i;
    PGresult *res;

    /* Each sync reports on what it sends: an error of an earlier one was
     * already returned and handled. */
    t->failed = 0;
    t->sqlstate[0] = '\0';
    t->errmsg[0] = '\0';

    if (PQpipelineSync(t->conn) != 1)
        return lost(t, t->n_pending ? t->pending[0].phase : TXN_CONTROL);
    for (i = 0; i < t->n_pending; i++) {
        struct txn_pending *p = &t->pending[i];
        int got = 0;
        int empty = 0;

        if (p->phase == TXN_SYNC) {
            if (read_sync(t) != 0)
                return lost(t, TXN_SYNC);
            continue;
        }

        /* Each statement yields its result, then NULL. */
        for (;;) {
            ExecStatusType st;

            if (exactly_pg_wait_result_idle(t->conn, t->timeout_ms, t->idle,
                                            t->idle_arg) != 0)
                return lost(t, p->phase);
            res = PQgetResult(t->conn);
            if (!res) {
                if (got)
                    break;
                /* A NULL before any result: the connection broke. */
                if (PQstatus(t->conn) != CONNECTION_OK || ++empty > 2)
                    return lost(t, p->phase);
                continue;
            }
            got = 1;
            st = PQresultStatus(res);
            if (st == PGRES_FATAL_ERROR) {
                set_error(t, p->phase,
                          PQresultErrorField(res, PG_DIAG_SQLSTATE),
                          PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
                PQclear(res);
            } else if (st == PGRES_PIPELINE_ABORTED) {
                PQclear(res);
            } else if (p->keep && !*p->keep) {
                *p->keep = res;
            } else {
                PQclear(res);
            }
        }
    }
    t->n_pending = 0;
    /* Then the sync point itself. */
    if (read_sync(t) != 0)
        return lost(t, TXN_CONTROL);
    if (!t->failed)
        return EXACTLY_OK;
    if (PQstatus(t->conn) != CONNECTION_OK)
        return EXACTLY_ERETRY;
    return exactly_pg_classify(t->sqlstate);
}

/* ---- the host table ---------------------------------------------------- */

static exactly_err host_exec(exactly_txn *t, const char *sql, int n_params,
                             const char *const *params)
{
    return exactly_txn_send(t, TXN_HANDLER, sql, n_params, params, NULL);
}

static exactly_err host_query(exactly_txn *t, const char *sql, int n_params,
                              const char *const *params,
                              exactly_result **result)
{
    PGresult *res = NULL;
    exactly_err rc;

    *result = NULL;
    rc = exactly_txn_send(t, TXN_HANDLER, sql, n_params, params, &res);
    if (rc != EXACTLY_OK)
        return rc;
    rc = exactly_txn_sync(t);
    if (rc != EXACTLY_OK) {
        PQclear(res);
        return rc;
    }
    if (!res)
        return EXACTLY_EDATABASE;
    *result = (exactly_result *)res;
    return EXACTLY_OK;
}

static size_t host_result_rows(const exactly_result *r)
{
    return (size_t)PQntuples((const PGresult *)r);
}

static size_t host_result_columns(const exactly_result *r)
{
    return (size_t)PQnfields((const PGresult *)r);
}

static const char *host_result_value(const exactly_result *r, size_t row,
                                     size_t col)
{
    const PGresult *res = (const PGresult *)r;

    if ((int)row >= PQntuples(res) || (int)col >= PQnfields(res) ||
        PQgetisnull(res, (int)row, (int)col))
        return NULL;
    return PQgetvalue(res, (int)row, (int)col);
}

static void host_result_free(exactly_result *r) { PQclear((PGresult *)r); }

static void host_fail_record(exactly_txn *t, size_t index, const char *reason)
{
    if (t->n_fails == t->cap_fails) {
        size_t cap = t->cap_fails ? t->cap_fails * 2 : 8;
        txn_failed_record *f = EXACTLY_FAULT("fail_record")
                                   ? NULL
                                   : realloc(t->fails, cap * sizeof(*f));
        if (!f)
            return; /* the batch then fails as a whole and is bisected */
        t->fails = f;
        t->cap_fails = cap;
    }
    t->fails[t->n_fails].index = index;
    t->fails[t->n_fails].reason = strdup(reason ? reason : "failed by handler");
    t->n_fails++;
}

static void host_set_error(exactly_txn *t, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(t->handler_err, sizeof(t->handler_err), fmt, ap);
    va_end(ap);
    t->handler_err_set = 1;
}

static const exactly_host host_table = {
    .size = sizeof(exactly_host),
    .log = exactly_log_handler,
    .opt_string = exactly_options_string,
    .opt_int = exactly_options_int,
    .opt_bool = exactly_options_bool,
    .opt_list = exactly_options_list,
    .opt_map = exactly_options_map,
    .exec = host_exec,
    .query = host_query,
    .result_rows = host_result_rows,
    .result_columns = host_result_columns,
    .result_value = host_result_value,
    .result_free = host_result_free,
    .fail_record = host_fail_record,
    .set_error = host_set_error,
};

const exactly_host *exactly_txn_host(void) { return &host_table; }
