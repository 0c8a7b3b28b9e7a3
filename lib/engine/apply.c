/*
 * apply.c - the handler's part of a batch: its writes queued (optimistic
 * mode: no savepoint), the cycle's use of the one judgement of what its
 * answer and the server's mean (judge.c, also used by `dlq replay`), and careful
 * mode's callbacks for the one bisect step (bisect.c): a set that applies
 * is counted, a record that fails alone goes to the dead letters (or
 * halts the partition under on_error: stop).
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

#include "bisect.h"
#include "cycle_internal.h"
#include "judge.h"
#include "log.h"
#include "pg_conn.h"

exactly_err cycle_judge_apply(cycle *c, exactly_err ret)
{
    return engine_judge_apply(&c->e->txn, ret, &c->err);
}

exactly_err cycle_judge_sync(cycle *c, exactly_err rc)
{
    return engine_judge_sync(&c->e->txn, rc, &c->err);
}

/* cycle_internal.h says what it does. */
exactly_err cycle_judge_commit(cycle *c, exactly_err rc)
{
    rc = cycle_judge_sync(c, rc);
    c->err.commit_unknown =
        rc != EXACTLY_OK && !exactly_txn_rolled_back(&c->e->txn);
    return rc;
}

/* The handler's apply() on recs[0..n) of c's partition (vals: their IDs'
 * values, or NULL): its answer as is. */
static exactly_err call_apply(cycle *c, exactly_record *recs,
                              const int64_t *vals, size_t n)
{
    engine *e = c->e;
    exactly_batch b;

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
    b.id_values = vals;
    return e->plugin->h->apply(e->plugin->state, &e->txn, &b);
}

/* Queues the handler's writes for recs[0..n), no savepoint (optimistic
 * mode). Returns EXACTLY_OK or cycle_judge_apply()'s verdict. */
exactly_err cycle_queue_apply(cycle *c, exactly_record *recs,
                              const int64_t *vals, size_t n)
{
    exactly_txn_forget_fails(&c->e->txn);
    return cycle_judge_apply(c, call_apply(c, recs, vals, n));
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

/* ---- the bisect step's callbacks (bisect.h) ------------------------------ */

static exactly_err bisect_apply(void *arg, exactly_txn *t, size_t first,
                                size_t n)
{
    cycle *c = arg;

    (void)t;
    return call_apply(c, c->recs + first, c->vals ? c->vals + first : NULL,
                      n);
}

static exactly_err bisect_applied(void *arg, exactly_txn *t, size_t first,
                                  size_t n)
{
    cycle *c = arg;

    (void)t;
    cycle_account_applied(c, c->recs + first, n);
    return EXACTLY_OK;
}

/* A record that fails alone: dead-lettered, or under on_error: stop the
 * partition halts (EXACTLY_EHANDLER ends the attempt). */
static exactly_err bisect_failed(void *arg, size_t idx,
                                 const exactly_error *err)
{
    cycle *c = arg;
    exactly_record *r = &c->recs[idx];

    cycle_trace_record(c->pt, r);
    if (c->e->p->on_error == CFG_ERROR_STOP) {
        exactly_log(EXACTLY_LOG_ERROR, "cycle",
                    "handler failed on a record and on_error is stop: "
                    "partition halted, offset not advanced",
                    LOG_PART(c->pt), LOG_STR("id", r->id),
                    LOG_INT("offset", r->messages[0].offset),
                    LOG_STR("sqlstate", exactly_error_sqlstate(err)),
                    LOG_STR("error", err->message));
        cycle_trace_batch_again();
        return EXACTLY_EHANDLER;
    }
    exactly_log(EXACTLY_LOG_WARN, "cycle", "record dead-lettered",
                LOG_PART(c->pt), LOG_STR("id", r->id),
                LOG_STR("sqlstate", exactly_error_sqlstate(err)),
                LOG_STR("error", err->message));
    cycle_dl_record(c, r, err->message, err->sqlstate);
    c->failed_msgs += r->n_messages;
    c->e->st.handler_failures++;
    cycle_trace_batch_again();
    return EXACTLY_OK;
}

/* No start (the attempt's txn is open), not tidy (a failure ends the
 * attempt, whose ROLLBACK undoes what is left). */
static const engine_bisect_ops cycle_bisect_ops = {
    .apply = bisect_apply, .applied = bisect_applied, .failed = bisect_failed,
};

exactly_err cycle_bisect(cycle *c)
{
    return engine_bisect(&cycle_bisect_ops, c, &c->e->txn, 0, c->n_recs,
                         &c->err);
}
