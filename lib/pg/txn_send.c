/*
 * txn_send.c - queuing statements on a batch transaction, and the cache of
 * prepared statements of its session.
 *
 * A statement is sent at once (libpq pipeline mode) and an entry that
 * says which phase it belongs to and where its result goes is queued, to
 * be matched with its answer at the next sync (txn.c). A statement with
 * parameters seen a second time on the same session is prepared (its
 * Parse is a queued entry of its own) and then only executed; the cache
 * is emptied when the session changes or is given up. Also the
 * transaction's first error (txn_set_error), which sending and the sync
 * both record.
 */
#include "txn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "escape.h"
#include "fault.h"
#include "hash.h"
#include "txn_internal.h"

void txn_set_error(exactly_txn *t, txn_phase phase, const char *sqlstate,
                   const char *msg)
{
    size_t n;

    if (t->failed)
        return;
    t->failed = 1;
    t->err_phase = phase;
    snprintf(t->sqlstate, sizeof(t->sqlstate), "%s", sqlstate ? sqlstate : "");
    exactly_utf8_copy(t->errmsg, sizeof(t->errmsg),
                      msg ? msg : "unknown error");
    n = strlen(t->errmsg);
    while (n > 0 && t->errmsg[n - 1] == '\n')
        t->errmsg[--n] = '\0';
}

void txn_forget_prepared(exactly_txn *t)
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

/* A statement of phase could not be queued (rc, why): remembered for the
 * next sync, and nothing is queued until then (txn.h, send_rc). Returns
 * rc. */
static exactly_err send_refused(exactly_txn *t, txn_phase phase,
                                exactly_err rc, const char *why)
{
    size_t n;

    if (t->send_rc == EXACTLY_OK) {
        t->send_rc = rc;
        t->send_phase = phase;
        exactly_utf8_format(t->send_errmsg, sizeof(t->send_errmsg),
                            "a statement could not be queued: %s", why);
        n = strlen(t->send_errmsg);
        while (n > 0 && t->send_errmsg[n - 1] == '\n')
            t->send_errmsg[--n] = '\0';
    }
    return rc;
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

/* The name of the next Parse: one counter for the whole process, so a
 * name is new on the session whatever transaction object sends it (a
 * session keeps its prepared statements across ROLLBACK, and a command
 * that runs its transaction again builds a new object on the same
 * session), never "already exists". */
static void next_prepared_name(char *name, size_t size)
{
    static unsigned serial;

    snprintf(name, size, "exactly_%u",
             __atomic_add_fetch(&serial, 1, __ATOMIC_RELAXED));
}

/* The cache entry of sql, added on first sight; -1 when the cache is full
 * or out of memory (the statement is then sent unnamed). */
static int prepared_entry(exactly_txn *t, const char *sql, int n_params)
{
    size_t h = (size_t)exactly_hash_str(sql);
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
    if (t->send_rc != EXACTLY_OK)
        return t->send_rc;
    /* Test-only (fault.h): a fence that cannot be queued, as when out of
     * memory. */
    if (phase == TXN_FENCE && EXACTLY_FAULT("txn_send_fence"))
        return send_refused(t, phase, EXACTLY_ENOMEM, "out of memory");
    /* Two pending entries at most: a Parse and the statement. */
    if (reserve_pending(t) != 0 || (keep && (slot = reserve_kept(t)) < 0))
        return send_refused(t, phase, EXACTLY_ENOMEM, "out of memory");
    if (n_params > 0 && t->conn == t->prep_conn)
        e = prepared_entry(t, sql, n_params);
    if (e >= 0 && t->prep[e].state == 0 && ++t->prep[e].seen >= 2) {
        struct txn_prepared *p = &t->prep[e];
        next_prepared_name(p->name, sizeof(p->name));
        if (!PQsendPrepare(t->conn, p->name, sql, n_params, NULL))
            return send_refused(t, phase, EXACTLY_ERETRY,
                                PQerrorMessage(t->conn));
        p->state = 1;
        push_pending(t, phase, TXN_NO_RESULT, e, -1);
        if (reserve_pending(t) != 0)
            return send_refused(t, phase, EXACTLY_ENOMEM, "out of memory");
    }
    if (e >= 0 && t->prep[e].state != 0)
        ok = PQsendQueryPrepared(t->conn, t->prep[e].name, n_params, params,
                                 lengths, formats, 0);
    else
        ok = PQsendQueryParams(t->conn, sql, n_params, NULL, params, lengths,
                               formats, 0);
    if (!ok)
        return send_refused(t, phase, EXACTLY_ERETRY, PQerrorMessage(t->conn));
    push_pending(t, phase, slot, -1, e >= 0 && t->prep[e].state ? e : -1);
    if (keep)
        *keep = slot;
    return EXACTLY_OK;
}


exactly_err exactly_txn_push_sync(exactly_txn *t)
{
    if (t->send_rc != EXACTLY_OK)
        return t->send_rc;
    if (reserve_pending(t) != 0)
        return send_refused(t, TXN_SYNC, EXACTLY_ENOMEM, "out of memory");
    if (PQpipelineSync(t->conn) != 1)
        return send_refused(t, TXN_SYNC, EXACTLY_ERETRY,
                            PQerrorMessage(t->conn));
    push_pending(t, TXN_SYNC, TXN_NO_RESULT, -1, -1);
    return EXACTLY_OK;
}
