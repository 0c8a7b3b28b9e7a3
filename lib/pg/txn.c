#include "txn.h"

#include <jansson.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "log.h"
#include "options.h"
#include "pg_conn.h"
#include "strbuf.h"

/* Frees the kept results and the failed records of the last apply(). */
static void forget_results(exactly_txn *t)
{
    size_t i;

    for (i = 0; i < t->n_kept; i++)
        PQclear(t->kept[i]);
    t->n_kept = 0;
}

static void forget_prepared(exactly_txn *t)
{
    size_t i;

    for (i = 0; i < t->n_prep; i++)
        free(t->prep[i].sql);
    free(t->prep);
    t->prep = NULL;
    t->n_prep = 0;
    t->prep_conn = NULL;
    t->prep_pid = 0;
}

exactly_err exactly_txn_start(exactly_txn *t, PGconn *conn, int timeout_ms)
{
    size_t i;

    /* Prepared statements live in one server session. */
    if (conn != t->prep_conn || PQbackendPID(conn) != t->prep_pid) {
        forget_prepared(t);
        t->prep_conn = conn;
        t->prep_pid = PQbackendPID(conn);
    }
    /* A Parse whose answer was never read (the connection was given up
     * on) counts as not done: the next use sends it again, renamed. */
    for (i = 0; i < t->n_prep; i++)
        if (t->prep[i].state == 1)
            t->prep[i].state = 0;
    t->conn = conn;
    t->timeout_ms = timeout_ms;
    t->n_pending = 0;
    t->failed = 0;
    t->commit_rolled_back = 0;
    t->sqlstate[0] = '\0';
    t->errmsg[0] = '\0';
    forget_results(t);
    exactly_txn_forget_fails(t);
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
    forget_prepared(t);
    free(t->kept);
    free(t->fails);
    free(t->pending);
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

/* Room for one more pending entry; -1 when out of memory. */
static int reserve_pending(exactly_txn *t)
{
    if (t->n_pending == t->cap_pending) {
        size_t cap = t->cap_pending ? t->cap_pending * 2 : 16;
        struct txn_pending *p = realloc(t->pending, cap * sizeof(*p));
        if (!p)
            return -1;
        t->pending = p;
        t->cap_pending = cap;
    }
    return 0;
}

/* A new empty slot for a kept result; TXN_NO_RESULT when out of memory. */
static txn_result reserve_kept(exactly_txn *t)
{
    if (t->n_kept == t->cap_kept) {
        size_t cap = t->cap_kept ? t->cap_kept * 2 : 8;
        PGresult **k = realloc(t->kept, cap * sizeof(*k));
        if (!k)
            return TXN_NO_RESULT;
        t->kept = k;
        t->cap_kept = cap;
    }
    t->kept[t->n_kept] = NULL;
    return (txn_result)t->n_kept++;
}

exactly_err exactly_txn_send(exactly_txn *t, txn_phase phase, const char *sql,
                             int n_params, const char *const *params,
                             txn_result *keep)
{
    return exactly_txn_send_params(t, phase, sql, n_params, params, NULL, NULL,
                                   keep);
}

static size_t hash_sql(const char *s)
{
    size_t h = (size_t)1469598103934665603ULL;

    while (*s) {
        h ^= (unsigned char)*s++;
        h *= (size_t)1099511628211ULL;
    }
    return h;
}

/* The cache entry of sql, added on first sight; -1 when the cache is full
 * or out of memory (the statement is then sent unnamed). */
static int prepared_entry(exactly_txn *t, const char *sql, int n_params)
{
    size_t h = hash_sql(sql);
    size_t i;
    struct txn_prepared *p;

    for (i = 0; i < t->n_prep; i++)
        if (t->prep[i].hash == h && t->prep[i].n_params == n_params &&
            strcmp(t->prep[i].sql, sql) == 0)
            return (int)i;
    if (t->n_prep == TXN_MAX_PREPARED)
        return -1;
    p = realloc(t->prep, (t->n_prep + 1) * sizeof(*p));
    if (!p)
        return -1;
    t->prep = p;
    p = &t->prep[t->n_prep];
    memset(p, 0, sizeof(*p));
    p->sql = strdup(sql);
    if (!p->sql)
        return -1;
    p->hash = h;
    p->n_params = n_params;
    return (int)t->n_prep++;
}

static void push_pending(exactly_txn *t, txn_phase phase, txn_result keep,
                         int prepare, int executes)
{
    t->pending[t->n_pending].phase = phase;
    t->pending[t->n_pending].keep = keep;
    t->pending[t->n_pending].prepare = prepare;
    t->pending[t->n_pending].executes = executes;
    t->n_pending++;
}

exactly_err exactly_txn_send_params(exactly_txn *t, txn_phase phase,
                                    const char *sql, int n_params,
                                    const char *const *params,
                                    const int *lengths, const int *formats,
                                    txn_result *keep)
{
    txn_result slot = TXN_NO_RESULT;
    int e = -1;
    int ok;

    if (keep)
        *keep = TXN_NO_RESULT;
    /* Two pending entries at most: a Parse and the statement. */
    if (reserve_pending(t) != 0 || (keep && (slot = reserve_kept(t)) < 0))
        return EXACTLY_ENOMEM;
    if (n_params > 0 && t->conn == t->prep_conn)
        e = prepared_entry(t, sql, n_params);
    if (e >= 0 && t->prep[e].state == 0 && ++t->prep[e].seen >= 2) {
        struct txn_prepared *p = &t->prep[e];
        snprintf(p->name, sizeof(p->name), "exactly_%u", ++t->prep_gen);
        if (!PQsendPrepare(t->conn, p->name, sql, n_params, NULL)) {
            set_error(t, phase, NULL, PQerrorMessage(t->conn));
            return EXACTLY_ERETRY;
        }
        p->state = 1;
        push_pending(t, phase, TXN_NO_RESULT, e, -1);
        if (reserve_pending(t) != 0)
            return EXACTLY_ENOMEM;
    }
    if (e >= 0 && t->prep[e].state != 0)
        ok = PQsendQueryPrepared(t->conn, t->prep[e].name, n_params, params,
                                 lengths, formats, 0);
    else
        ok = PQsendQueryParams(t->conn, sql, n_params, NULL, params, lengths,
                               formats, 0);
    if (!ok) {
        set_error(t, phase, NULL, PQerrorMessage(t->conn));
        return EXACTLY_ERETRY;
    }
    push_pending(t, phase, slot, -1, e >= 0 && t->prep[e].state ? e : -1);
    if (keep)
        *keep = slot;
    return EXACTLY_OK;
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
    set_error(t, phase, NULL, msg);
    exactly_pg_abandon(t->conn);
    t->n_pending = 0;
    forget_prepared(t);
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

exactly_err exactly_txn_push_sync(exactly_txn *t)
{
    if (reserve_pending(t) != 0)
        return EXACTLY_ENOMEM;
    if (PQpipelineSync(t->conn) != 1) {
        set_error(t, TXN_SYNC, NULL, PQerrorMessage(t->conn));
        return EXACTLY_ERETRY;
    }
    push_pending(t, TXN_SYNC, TXN_NO_RESULT, -1, -1);
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
            set_error(t, p->phase, PQresultErrorField(res, PG_DIAG_SQLSTATE),
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
        set_error(t, p->phase, PQresultErrorField(res, PG_DIAG_SQLSTATE),
                  PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
    } else if (st == PGRES_COMMAND_OK && p->phase == TXN_COMMIT &&
               strcmp(PQcmdStatus(res), "COMMIT") != 0) {
        /* The server had aborted the transaction already and says so only
         * here: nothing of it committed. */
        set_error(t, TXN_COMMIT, NULL,
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

exactly_err exactly_txn_sync(exactly_txn *t)
{
    size_t i;
    PGresult *res;

    /* Each sync reports on what it sends: an error of an earlier one was
     * already returned and handled. */
    t->failed = 0;
    t->commit_rolled_back = 0;
    t->sqlstate[0] = '\0';
    t->errmsg[0] = '\0';

    if (PQpipelineSync(t->conn) != 1)
        return lost(t, t->n_pending ? t->pending[0].phase : TXN_CONTROL,
                    "cannot send");
    for (i = 0; i < t->n_pending; i++) {
        struct txn_pending *p = &t->pending[i];
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
    t->n_pending = 0;
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

/* ---- the host table ---------------------------------------------------- */

static exactly_err host_exec(exactly_txn *t, const char *sql, int n_params,
                             const char *const *params)
{
    return exactly_txn_send(t, TXN_HANDLER, sql, n_params, params, NULL);
}

static exactly_err host_exec_params(exactly_txn *t, const char *sql,
                                    int n_params, const char *const *params,
                                    const int *lengths, const int *formats)
{
    return exactly_txn_send_params(t, TXN_HANDLER, sql, n_params, params,
                                   lengths, formats, NULL);
}

static exactly_err host_query(exactly_txn *t, const char *sql, int n_params,
                              const char *const *params,
                              exactly_result **result)
{
    txn_result slot;
    PGresult *res;
    exactly_err rc;

    *result = NULL;
    rc = exactly_txn_send(t, TXN_HANDLER, sql, n_params, params, &slot);
    if (rc == EXACTLY_OK)
        rc = exactly_txn_sync(t);
    if (rc != EXACTLY_OK) {
        /* The transaction is aborted now: remembered, so that apply()
         * cannot succeed past it by ignoring this answer. */
        if (!t->query_failed) {
            t->query_failed = 1;
            snprintf(t->query_sqlstate, sizeof(t->query_sqlstate), "%s",
                     t->sqlstate);
            snprintf(t->query_errmsg, sizeof(t->query_errmsg), "%s",
                     t->errmsg);
        }
        return rc;
    }
    res = exactly_txn_take(t, slot);
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

/* A record failed twice keeps its first reason: the dead-letter insert
 * must name each message once. When the failure cannot be recorded, the
 * batch fails as a whole (fails_oom) rather than lose the record. */
static void host_fail_record(exactly_txn *t, size_t index, const char *reason)
{
    size_t i;

    for (i = 0; i < t->n_fails; i++)
        if (t->fails[i].index == index)
            return;
    if (t->n_fails == t->cap_fails) {
        size_t cap = t->cap_fails ? t->cap_fails * 2 : 8;
        txn_failed_record *f = EXACTLY_FAULT("fail_record")
                                   ? NULL
                                   : realloc(t->fails, cap * sizeof(*f));
        if (!f) {
            t->fails_oom = 1;
            return;
        }
        t->fails = f;
        t->cap_fails = cap;
    }
    t->fails[t->n_fails].index = index;
    t->fails[t->n_fails].reason = strdup(reason ? reason : "failed by handler");
    if (!t->fails[t->n_fails].reason) {
        t->fails_oom = 1;
        return;
    }
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

static const char *host_query_error(const exactly_txn *t,
                                    const char **message)
{
    if (message)
        *message = t->query_failed ? t->query_errmsg : NULL;
    return t->query_failed ? t->query_sqlstate : NULL;
}

static void host_fail_recordf(exactly_txn *t, size_t index, const char *fmt,
                              ...)
{
    char reason[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt ? fmt : "failed by handler", ap);
    va_end(ap);
    host_fail_record(t, index, reason);
}

/* Hex text of n bytes into sb (bytea travels as text parameters here). */
static void hex_into(strbuf *sb, const void *data, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = data;
    size_t i;

    for (i = 0; i < n; i++) {
        char pair[2] = {digits[p[i] >> 4], digits[p[i] & 15]};
        strbuf_append(sb, pair, 2);
    }
}

/* The outbox row goes into the batch's pipeline like any handler write:
 * it commits with the batch or not at all (a retry, a bisect step or a
 * fenced batch rolls it back with everything else). */
static exactly_err host_emit(exactly_txn *t, const char *topic,
                             const void *key, size_t key_len,
                             const void *value, size_t value_len,
                             const char *const *headers)
{
    strbuf k = {0}, v = {0};
    json_t *h = NULL;
    char *h_text = NULL;
    const char *params[4];
    exactly_err rc = EXACTLY_ENOMEM;
    size_t i;

    if (!topic || !*topic || !t->emit_sql)
        return EXACTLY_EINVAL;
    if (key)
        hex_into(&k, key, key_len);
    if (value)
        hex_into(&v, value, value_len);
    if (headers && headers[0]) {
        if (!(h = json_object()))
            goto cleanup;
        for (i = 0; headers[i]; i += 2) {
            json_t *val = headers[i + 1] ? json_string(headers[i + 1])
                                         : json_null();
            /* json_string refuses text that is not UTF-8. */
            if (!val) {
                rc = EXACTLY_EINVAL;
                goto cleanup;
            }
            if (json_object_set_new(h, headers[i], val) != 0)
                goto cleanup;
        }
        if (!(h_text = json_dumps(h, JSON_COMPACT)))
            goto cleanup;
    }
    if (k.oom || v.oom)
        goto cleanup;
    params[0] = topic;
    params[1] = key ? strbuf_str(&k) : NULL;
    params[2] = value ? strbuf_str(&v) : NULL;
    params[3] = h_text;
    rc = exactly_txn_send(t, TXN_HANDLER, t->emit_sql, 4, params, NULL);
cleanup:
    strbuf_free(&k);
    strbuf_free(&v);
    json_decref(h);
    free(h_text);
    return rc;
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
    .emit = host_emit,
    .fail_recordf = host_fail_recordf,
    .exec_params = host_exec_params,
    .query_error = host_query_error,
};

const exactly_host *exactly_txn_host(void) { return &host_table; }
