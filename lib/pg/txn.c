/*
 * txn.c - the life of a batch transaction and the reading of its results:
 * start (pipeline mode, every earlier error, failed record and kept
 * result forgotten), the sync that reads each queued statement's answer
 * in order and keeps the first error with its phase, and the end of a
 * connection whose answers did not come or came out of step. Queuing
 * statements and the prepared-statement cache are txn_send.c's; the
 * calls a handler makes on its transaction are txn_host.c's.
 */
#include "txn.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "escape.h"
#include "pg_conn.h"
#include "txn_internal.h"

/* Frees the kept results and the failed records of the last apply(). */
static void forget_results(exactly_txn *t)
{
    size_t i;

    for (i = 0; i < t->n_kept; i++)
        PQclear(t->kept[i]);
    t->n_kept = 0;
}

exactly_err exactly_txn_start(exactly_txn *t, PGconn *conn, int timeout_ms)
{
    size_t i;

    /* Prepared statements live in one server session. */
    if (conn != t->prep_conn || PQbackendPID(conn) != t->prep_pid) {
        txn_forget_prepared(t);
        t->prep_conn = conn;
        t->prep_pid = PQbackendPID(conn);
    }
    /* A Parse whose answer was never read (the connection was given up
     * on) counts as not done: the next use sends it again, renamed. One
     * of a held transaction is still to be answered. */
    for (i = 0; i < t->n_prep && t->n_held == 0; i++)
        if (t->prep[i].state == 1)
            t->prep[i].state = 0;
    t->conn = conn;
    t->timeout_ms = timeout_ms;
    t->n_pending = 0;
    t->failed = 0;
    t->send_rc = EXACTLY_OK;
    t->commit_rolled_back = 0;
    t->sqlstate[0] = '\0';
    t->errmsg[0] = '\0';
    forget_results(t);
    exactly_txn_forget_fails(t);
    if (PQpipelineStatus(conn) == PQ_PIPELINE_OFF &&
        PQenterPipelineMode(conn) != 1) {
        exactly_utf8_format(t->errmsg, sizeof(t->errmsg),
                            "cannot enter pipeline mode: %s",
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
    t->fails_oom = 0;
    t->handler_err_set = 0;
    t->handler_err[0] = '\0';
    t->query_failed = 0;
    t->query_sqlstate[0] = '\0';
    t->query_errmsg[0] = '\0';
}

void exactly_txn_clear(exactly_txn *t)
{
    if (!t)
        return;
    exactly_txn_forget_fails(t);
    forget_results(t);
    txn_forget_prepared(t);
    free(t->kept);
    free(t->fails);
    free(t->pending);
    free(t->held);
    memset(t, 0, sizeof(*t));
}

const PGresult *exactly_txn_result(const exactly_txn *t, txn_result r)
{
    return r >= 0 && (size_t)r < t->n_kept ? t->kept[r] : NULL;
}

PGresult *exactly_txn_take(exactly_txn *t, txn_result r)
{
    PGresult *res;

    if (r < 0 || (size_t)r >= t->n_kept)
        return NULL;
    res = t->kept[r];
    t->kept[r] = NULL;
    return res;
}

/* No answer in time, a broken connection, or answers out of step: the
 * connection is ended, so that nothing sent on it later can be matched
 * with what this sync left unread. */
static exactly_err lost(exactly_txn *t, txn_phase phase, const char *why)
{
    char msg[512];

    snprintf(msg, sizeof(msg), "%s: %s", why,
             PQstatus(t->conn) == CONNECTION_OK ? "connection ended"
                                                : PQerrorMessage(t->conn));
    txn_set_error(t, phase, NULL, msg);
    exactly_pg_abandon(t->conn);
    t->n_pending = 0;
    t->n_held = 0;
    txn_forget_prepared(t);
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
        /* Anything else here answers a statement we did not send. */
        if (st != PGRES_PIPELINE_ABORTED)
            return -1;
    }
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

/* Takes one statement's result: keeps it, records its error, or checks
 * the COMMIT's command tag. */
static void take_result(exactly_txn *t, const struct txn_pending *p,
                        PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);

    if (p->prepare >= 0 && (size_t)p->prepare < t->n_prep) {
        /* A Parse: ready when it succeeded; else it is sent again, under a
         * new name, the next time the statement runs. Its error is the
         * statement's own (the statement then answers "aborted"). */
        t->prep[p->prepare].state = st == PGRES_COMMAND_OK ? 2 : 0;
        if (st == PGRES_FATAL_ERROR)
            txn_set_error(t, p->phase, PQresultErrorField(res, PG_DIAG_SQLSTATE),
                      PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
        PQclear(res);
        return;
    }
    if (st == PGRES_FATAL_ERROR && p->executes >= 0 &&
        (size_t)p->executes < t->n_prep) {
        /* A prepared statement the server no longer takes as it is (a
         * table's columns changed: "cached plan must not change result
         * type"), or that is gone: prepared again next time. */
        const char *ss = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (ss && (strcmp(ss, "0A000") == 0 || strcmp(ss, "26000") == 0))
            t->prep[p->executes].state = 0;
    }
    if (st == PGRES_FATAL_ERROR) {
        txn_set_error(t, p->phase, PQresultErrorField(res, PG_DIAG_SQLSTATE),
                  PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
    } else if (st == PGRES_COMMAND_OK && p->phase == TXN_COMMIT &&
               strcmp(PQcmdStatus(res), "COMMIT") != 0) {
        /* The server had aborted the transaction already and says so only
         * here: nothing of it committed. */
        txn_set_error(t, TXN_COMMIT, NULL,
                  "COMMIT was answered ROLLBACK: a statement of the "
                  "transaction had failed");
        if (t->err_phase == TXN_COMMIT)
            t->commit_rolled_back = 1;
    } else if (st != PGRES_PIPELINE_ABORTED && p->keep >= 0 &&
               (size_t)p->keep < t->n_kept && !t->kept[p->keep]) {
        t->kept[p->keep] = res;
        return;
    }
    PQclear(res);
}

/* Each sync reports on what it sends: an error of an earlier one was
 * already returned and handled. */
static void reset_error(exactly_txn *t)
{
    t->failed = 0;
    t->commit_rolled_back = 0;
    t->sqlstate[0] = '\0';
    t->errmsg[0] = '\0';
}

/* Reads the answers of the n entries q, then the sync point that ends
 * them; the outcome as exactly_txn_sync returns it. */
static exactly_err read_entries(exactly_txn *t, const struct txn_pending *q,
                                size_t n)
{
    size_t i;
    PGresult *res;

    for (i = 0; i < n; i++) {
        const struct txn_pending *p = &q[i];
        int got = 0;
        int empty = 0;

        if (p->phase == TXN_SYNC) {
            if (read_sync(t) != 0)
                return lost(t, TXN_SYNC, "no answer in time");
            continue;
        }

        /* Each statement yields its result, then NULL. */
        for (;;) {
            if (exactly_pg_wait_result_idle(t->conn, t->timeout_ms, t->idle,
                                            t->idle_arg) != 0)
                return lost(t, p->phase, "no answer in time");
            res = PQgetResult(t->conn);
            if (!res) {
                if (got)
                    break;
                /* A NULL before any result: the connection broke. */
                if (PQstatus(t->conn) != CONNECTION_OK || ++empty > 2)
                    return lost(t, p->phase, "no result");
                continue;
            }
            if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
                /* A sync where a statement's result belongs. */
                PQclear(res);
                return lost(t, p->phase, "answers out of step");
            }
            got = 1;
            take_result(t, p, res);
        }
    }
    /* Then the sync point itself. */
    if (read_sync(t) != 0)
        return lost(t, TXN_CONTROL, "no answer in time");
    if (!t->failed)
        return EXACTLY_OK;
    if (PQstatus(t->conn) != CONNECTION_OK)
        return EXACTLY_ERETRY;
    if (t->commit_rolled_back)
        return EXACTLY_EDATABASE;
    return exactly_pg_classify(t->sqlstate);
}

/* The outcome of a sync whose own outcome is rc: a statement that could
 * not be queued since the last sync (send_rc) fails it, unless rc is a
 * failure already; either way the refusal is reported once. */
static exactly_err sent_whole(exactly_txn *t, exactly_err rc)
{
    exactly_err refused = t->send_rc;

    t->send_rc = EXACTLY_OK;
    if (refused == EXACTLY_OK || rc != EXACTLY_OK)
        return rc;
    txn_set_error(t, t->send_phase, NULL, t->send_errmsg);
    return refused;
}

exactly_err exactly_txn_sync(exactly_txn *t)
{
    exactly_err rc;

    /* A held transaction's answers come first on the wire: its owner
     * reads them before this sync's. */
    if (t->n_held > 0 && t->held_read)
        t->held_read(t->held_arg);
    reset_error(t);
    if (t->n_held > 0)
        return sent_whole(t, lost(t, TXN_CONTROL,
                                  "a held transaction was not read"));
    if (PQpipelineSync(t->conn) != 1)
        return sent_whole(t, lost(t, t->n_pending ? t->pending[0].phase
                                                  : TXN_CONTROL,
                                  "cannot send"));
    rc = read_entries(t, t->pending, t->n_pending);
    t->n_pending = 0;
    return sent_whole(t, rc);
}

exactly_err exactly_txn_rollback(exactly_txn *t)
{
    exactly_err rc;

    if (!t->conn)
        return EXACTLY_ERETRY;
    if (PQpipelineStatus(t->conn) == PQ_PIPELINE_OFF) {
        /* Left already (exactly_txn_finish) by another batch's commit or
         * rollback since: outside pipeline mode the transaction status is
         * exact, and with none open there is nothing to end. */
        if (PQtransactionStatus(t->conn) == PQTRANS_IDLE)
            return EXACTLY_OK;
        if (PQenterPipelineMode(t->conn) != 1)
            return lost(t, TXN_CONTROL, "cannot enter pipeline mode");
    }
    /* A statement refused since the last sync (send_rc) is moot: all of
     * it is undone, and what was queued before it is read with this. */
    t->send_rc = EXACTLY_OK;
    rc = exactly_txn_send(t, TXN_CONTROL, "ROLLBACK", 0, NULL, NULL);
    if (rc == EXACTLY_OK)
        rc = exactly_txn_sync(t);
    if (rc == EXACTLY_OK)
        exactly_txn_finish(t);
    return rc;
}

int exactly_txn_rolled_back(const exactly_txn *t)
{
    if (!t->failed)
        return 0;
    if (t->commit_rolled_back)
        return 1;
    /* lost() notes no SQLSTATE, and keeps an earlier statement's error. */
    return t->sqlstate[0] != '\0' && t->err_phase != TXN_COMMIT;
}

exactly_err exactly_txn_sync_later(exactly_txn *t)
{
    size_t i;

    /* A statement that could not be queued is reported by a sync. */
    if (t->n_held > 0 || t->send_rc != EXACTLY_OK)
        return EXACTLY_EINVAL;
    for (i = 0; i < t->n_pending; i++)
        if (t->pending[i].keep != TXN_NO_RESULT ||
            t->pending[i].phase == TXN_SYNC)
            return EXACTLY_EINVAL;
    if (t->cap_held < t->n_pending) {
        struct txn_pending *h = realloc(t->held, t->n_pending * sizeof(*h));
        if (!h)
            return EXACTLY_ENOMEM;
        t->held = h;
        t->cap_held = t->n_pending;
    }
    reset_error(t);
    if (PQpipelineSync(t->conn) != 1 || exactly_txn_flush(t) != 0)
        return lost(t, t->n_pending ? t->pending[0].phase : TXN_CONTROL,
                    "cannot send");
    if (t->n_pending > 0)
        memcpy(t->held, t->pending, t->n_pending * sizeof(*t->held));
    t->n_held = t->n_pending;
    t->n_pending = 0;
    return EXACTLY_OK;
}

exactly_err exactly_txn_read_held(exactly_txn *t)
{
    size_t n = t->n_held;

    reset_error(t);
    if (n == 0) {
        txn_set_error(t, TXN_COMMIT, NULL,
                      "the connection was given up on before the commit was "
                      "answered");
        return EXACTLY_ERETRY;
    }
    t->n_held = 0;
    return read_entries(t, t->held, n);
}
