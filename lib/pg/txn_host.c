/*
 * txn_host.c - the calls a handler makes on the transaction it is given
 * (exactly_host in include/exactly/handler.h): its statements go into the
 * batch's pipeline in phase TXN_HANDLER, a query reads its answer at once
 * (a sync), failed records and its error message are kept on the txn for
 * the cycle, and emit queues the outbox row. plugin/host.c assembles these
 * with the option getters and the log into the table plugins receive.
 */
#include "txn_host.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "escape.h"
#include "fault.h"
#include "strbuf.h"

exactly_err exactly_txn_host_exec(exactly_txn *t, const char *sql,
                                  int n_params, const char *const *params)
{
    return exactly_txn_send(t, TXN_HANDLER, sql, n_params, params, NULL);
}

exactly_err exactly_txn_host_exec_params(exactly_txn *t, const char *sql,
                                         int n_params,
                                         const char *const *params,
                                         const int *lengths,
                                         const int *formats)
{
    return exactly_txn_send_params(t, TXN_HANDLER, sql, n_params, params,
                                   lengths, formats, NULL);
}

exactly_err exactly_txn_host_query(exactly_txn *t, const char *sql,
                                   int n_params, const char *const *params,
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
            exactly_utf8_copy(t->query_errmsg, sizeof(t->query_errmsg),
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

size_t exactly_txn_host_result_rows(const exactly_result *r)
{
    return (size_t)PQntuples((const PGresult *)r);
}

size_t exactly_txn_host_result_columns(const exactly_result *r)
{
    return (size_t)PQnfields((const PGresult *)r);
}

const char *exactly_txn_host_result_value(const exactly_result *r,
                                          size_t row, size_t col)
{
    const PGresult *res = (const PGresult *)r;

    if ((int)row >= PQntuples(res) || (int)col >= PQnfields(res) ||
        PQgetisnull(res, (int)row, (int)col))
        return NULL;
    return PQgetvalue(res, (int)row, (int)col);
}

void exactly_txn_host_result_free(exactly_result *r)
{
    PQclear((PGresult *)r);
}

/* A record failed twice keeps its first reason: the dead-letter insert
 * must name each message once. When the failure cannot be recorded, the
 * batch fails as a whole (fails_oom) rather than lose the record. */
void exactly_txn_host_fail_record(exactly_txn *t, size_t index,
                                  const char *reason)
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
    t->fails[t->n_fails].reason =
        exactly_utf8_dup(reason ? reason : "failed by handler");
    if (!t->fails[t->n_fails].reason) {
        t->fails_oom = 1;
        return;
    }
    t->n_fails++;
}

void exactly_txn_host_set_error(exactly_txn *t, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    exactly_utf8_vformat(t->handler_err, sizeof(t->handler_err), fmt, ap);
    va_end(ap);
    t->handler_err_set = 1;
}

const char *exactly_txn_host_query_error(const exactly_txn *t,
                                         const char **message)
{
    if (message)
        *message = t->query_failed ? t->query_errmsg : NULL;
    return t->query_failed ? t->query_sqlstate : NULL;
}

void exactly_txn_host_fail_recordf(exactly_txn *t, size_t index,
                                   const char *fmt, ...)
{
    char reason[1024];
    va_list ap;

    va_start(ap, fmt);
    exactly_utf8_vformat(reason, sizeof(reason),
                         fmt ? fmt : "failed by handler", ap);
    va_end(ap);
    exactly_txn_host_fail_record(t, index, reason);
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
exactly_err exactly_txn_host_emit(exactly_txn *t, const char *topic,
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
