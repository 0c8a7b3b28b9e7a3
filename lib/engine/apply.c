/*
 * apply.c - the handler's part of a batch: its writes queued (in a
 * savepoint in careful mode), what its answer and the server's mean
 * (judged once, where it happens), and the bisection of a failing set
 * until the failing records are alone: those go to the dead letters (or
 * halt the partition under on_error: stop), everything else is applied.
 *
 * A failure is judged into one of: the records in hand failed
 * (EXACTLY_EHANDLER: bisect), the batch must wait and run again
 * (EXACTLY_ERETRY: transient, an environment error, or the handler asked
 * to), the process must stop (EXACTLY_EFATAL), or the partition is not
 * ours to advance (EXACTLY_EFENCED). Its SQLSTATE and text are kept in
 * the cycle, because the rollback that follows resets the txn's own.
 */
#include <stdio.h>
#include <string.h>

#include "cycle_internal.h"
#include "judge.h"
#include "log.h"
#include "pg_conn.h"

/*
 * What apply()'s answer, and what it did to the transaction, mean (README
 * "Return codes of apply()"; judge.h). A failed query() aborts the transaction
 * whatever apply() returns afterwards; a fail_record() that could not be
 * recorded fails the batch rather than lose the record.
 */
exactly_err engine_judge_apply(const exactly_txn *t, exactly_err ret,
                               exactly_error *err)
{
    char msg[64];

    if (t->fails_oom) {
        exactly_error_note(err, NULL,
                           "out of memory recording a record the handler failed");
        return EXACTLY_ERETRY;
    }
    if (t->query_failed) {
        exactly_error_note(err, t->query_sqlstate, t->query_errmsg);
        switch (exactly_pg_class_of(t->query_sqlstate)) {
        case PG_RECORD:
            return EXACTLY_EHANDLER;
        case PG_ENVIRONMENT:
            err->environment = 1;
            return EXACTLY_ERETRY;
        case PG_TRANSIENT:
        case PG_FENCED:
            return EXACTLY_ERETRY;
        }
    }
    snprintf(msg, sizeof(msg), "apply() returned %d", (int)ret);
    switch (ret) {
    case EXACTLY_OK:
        return EXACTLY_OK;
    case EXACTLY_ERETRY:
    case EXACTLY_ENOMEM:
        exactly_error_note(err, NULL, t->handler_err_set ? t->handler_err : msg);
        err->handler_retry = 1;
        return EXACTLY_ERETRY;
    case EXACTLY_EFATAL:
        exactly_error_note(err, NULL, t->handler_err_set ? t->handler_err : msg);
        return EXACTLY_EFATAL;
    default:
        exactly_error_note(err, NULL, t->handler_err_set ? t->handler_err : msg);
        return EXACTLY_EHANDLER;
    }
}

exactly_err cycle_judge_apply(cycle *c, exactly_err ret)
{
    return engine_judge_apply(&c->e->txn, ret, &c->err);
}

/*
 * What a failed sync means. A statement of the handler that failed on the
 * data, or a COMMIT answered ROLLBACK (only a query() error that apply()
 * ignored does that), is a failure of these records; an environment error
 * anywhere is marked as such; the rest is returned as the txn classed it.
 */
exactly_err engine_judge_sync(const exactly_txn *t, exactly_err rc,
                              exactly_error *err)
{
    if (rc == EXACTLY_OK)
        return EXACTLY_OK;
    if (t->commit_rolled_back) {
        if (t->query_failed)
            return engine_judge_apply(t, EXACTLY_OK, err);
        exactly_error_note(err, NULL, t->errmsg);
        return EXACTLY_EHANDLER;
    }
    exactly_error_note(err, t->sqlstate, t->errmsg);
    if (rc == EXACTLY_ERETRY &&
        exactly_pg_class_of(t->sqlstate) == PG_ENVIRONMENT)
        err->environment = 1;
    if (rc == EXACTLY_EDATABASE && t->err_phase == TXN_HANDLER)
        return EXACTLY_EHANDLER;
    return rc;
}

exactly_err cycle_judge_sync(cycle *c, exactly_err rc)
{
    return engine_judge_sync(&c->e->txn, rc, &c->err);
}

/* Queues SAVEPOINT (careful mode), the handler's writes for recs[0..n)
 * and RELEASE. Returns EXACTLY_OK or cycle_judge_apply()'s verdict. */
exactly_err cycle_queue_apply(cycle *c, exactly_record *recs, size_t n,
                               int savepoint)
{
    engine *e = c->e;
    exactly_batch b;
    exactly_err rc;

    memset(&b, 0, sizeof(b));
    b.pipeline = e->p->name;
    b.topic = c->pt->topic;
    b.partition = c->pt->partition;
    b.records = recs;
    b.n_records = n;
    b.column_names = e->bb.colnames;
    b.n_columns = e->bb.n_columns;
    b.id_type = exactly_id_type_name(e->p->id.type);
    b.reprocess_run = e->pos.run;

    exactly_txn_forget_fails(&e->txn);
    if (savepoint) {
        rc = exactly_txn_send(&e->txn, TXN_CONTROL, "SAVEPOINT exactly_apply",
                              0, NULL, NULL);
        if (rc != EXACTLY_OK)
            return rc;
    }
    rc = cycle_judge_apply(c, e->plugin->h->apply(e->plugin->state, &e->txn, &b));
    if (rc != EXACTLY_OK || !savepoint)
        return rc;
    return exactly_txn_send(&e->txn, TXN_HANDLER,
                            "RELEASE SAVEPOINT exactly_apply", 0, NULL, NULL);
}

/* Records the handler failed on purpose (fail_record) go to dead letters;
 * the rest count as applied. Call only once their writes are known to be
 * part of the transaction. */
void cycle_account_applied(cycle *c, exactly_record *recs, size_t n)
{
    engine *e = c->e;
    size_t i;

    for (i = 0; i < n; i++)
        c->applied_msgs += recs[i].n_messages;
    for (i = 0; i < e->txn.n_fails; i++) {
        size_t idx = e->txn.fails[i].index;
        if (idx >= n)
            continue;
        cycle_dl_record(c, &recs[idx], e->txn.fails[i].reason, NULL);
        c->applied_msgs -= recs[idx].n_messages;
        c->failed_msgs += recs[idx].n_messages;
    }
    exactly_txn_forget_fails(&e->txn);
}

/* Applies recs[0..n) with a sync, rolling back to the savepoint when these
 * records failed (EXACTLY_EHANDLER, the reason in c). Any other failure is
 * returned as is: it ends the whole attempt. */
static exactly_err try_apply(cycle *c, exactly_record *recs, size_t n)
{
    engine *e = c->e;
    exactly_err rc = cycle_queue_apply(c, recs, n, 1);
    exactly_err s;
    exactly_error failed;

    if (rc == EXACTLY_OK) {
        rc = cycle_judge_sync(c, exactly_txn_sync(&e->txn));
        if (rc == EXACTLY_OK) {
            cycle_account_applied(c, recs, n);
            return EXACTLY_OK;
        }
    } else if (rc == EXACTLY_EHANDLER) {
        /* What apply() queued before it refused runs now: an error of it
         * is part of the same failure, a lost connection is not. */
        s = exactly_txn_sync(&e->txn);
        if (s != EXACTLY_OK && PQstatus(e->conn) != CONNECTION_OK)
            return cycle_judge_sync(c, s);
    }
    if (rc != EXACTLY_EHANDLER)
        return rc;
    /* Undo these records' writes in a sync of its own (one queued behind
     * a failed statement would be skipped), keeping their error. */
    failed = c->err;
    (void)exactly_txn_send(&e->txn, TXN_CONTROL,
                           "ROLLBACK TO SAVEPOINT exactly_apply", 0, NULL,
                           NULL);
    s = cycle_judge_sync(c, exactly_txn_sync(&e->txn));
    if (s != EXACTLY_OK)
        return s;
    c->err = failed;
    return EXACTLY_EHANDLER;
}

/* Splits a failing set until the failing records are alone; those are
 * dead-lettered, everything else is applied. */
exactly_err cycle_bisect(cycle *c, exactly_record *recs, size_t n)
{
    exactly_err rc;
    size_t half;

    if (n == 0)
        return EXACTLY_OK;
    rc = try_apply(c, recs, n);
    if (rc != EXACTLY_EHANDLER)
        return rc;
    if (n == 1)
        cycle_trace_record(c->pt, &recs[0]);
    if (n == 1 && c->e->p->on_error == CFG_ERROR_STOP) {
        exactly_log(EXACTLY_LOG_ERROR, "cycle",
                    "handler failed on a record and on_error is stop: "
                    "partition halted, offset not advanced",
                    LOG_PART(c->pt), LOG_STR("id", recs[0].id),
                    LOG_INT("offset", recs[0].messages[0].offset),
                    LOG_STR("sqlstate", exactly_error_sqlstate(&c->err)),
                    LOG_STR("error", c->err.message));
        cycle_trace_batch_again();
        return EXACTLY_EHANDLER;
    }
    if (n == 1) {
        exactly_log(EXACTLY_LOG_WARN, "cycle", "record dead-lettered",
                    LOG_PART(c->pt), LOG_STR("id", recs[0].id),
                    LOG_STR("sqlstate", exactly_error_sqlstate(&c->err)),
                    LOG_STR("error", c->err.message));
        cycle_dl_record(c, &recs[0], c->err.message, c->err.sqlstate);
        c->failed_msgs += recs[0].n_messages;
        c->e->st.handler_failures++;
        cycle_trace_batch_again();
        return EXACTLY_OK;
    }
    half = n / 2;
    rc = cycle_bisect(c, recs, half);
    if (rc != EXACTLY_OK)
        return rc;
    return cycle_bisect(c, recs + half, n - half);
}
