/*
 * settle.c - a partition's batch run (worker_run_batch) and what it did,
 * settled in one place (worker_settle): the engine hands its report
 * (engine_batch_report: the counters it moved and its one error value)
 * before engine_run returns; once it has returned, the worker decides on
 * the error's fields, never on its text (worker_settle_plan): the stop,
 * the partition's backoff or resumption, the circuit breaker, the figures.
 */
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "error_value.h"
#include "settle.h"
#include "worker_internal.h"

static metrics_retry_cause metrics_cause(exactly_cause c)
{
    switch (c) {
    case EXACTLY_CAUSE_CONNECTION:
        return RETRY_CONNECTION;
    case EXACTLY_CAUSE_SERIALIZATION:
        return RETRY_SERIALIZATION;
    case EXACTLY_CAUSE_DEADLOCK:
        return RETRY_DEADLOCK;
    case EXACTLY_CAUSE_TIMEOUT:
        return RETRY_TIMEOUT;
    case EXACTLY_CAUSE_HANDLER:
        return RETRY_HANDLER;
    case EXACTLY_CAUSE_ENVIRONMENT:
        return RETRY_ENVIRONMENT;
    case EXACTLY_CAUSE_OTHER:
        break;
    }
    return RETRY_OTHER;
}

/* What a batch did, into the worker's metrics slot. */
static void count(worker *w, const part *pt, const engine_batch_report *r)
{
    const engine_stats *d = &r->delta;
    metrics_partition *mp = metrics_part(w->m, pt->topic, pt->partition);

    if (mp) {
        metrics_add(&mp->consumed, d->consumed);
        metrics_add(&mp->applied, d->applied);
        metrics_add(&mp->deduplicated, d->deduplicated);
        metrics_add(&mp->dead_lettered, d->dead_lettered);
        metrics_add(&mp->skipped_missing, d->skipped_missing);
    }
    metrics_add(&w->m->consumed, d->consumed);
    metrics_add(&w->m->applied, d->applied);
    metrics_add(&w->m->deduplicated, d->deduplicated);
    metrics_add(&w->m->dead_lettered, d->dead_lettered);
    metrics_add(&w->m->skipped_missing, d->skipped_missing);
    metrics_add(&w->m->retries_total, d->retries);
    metrics_add(&w->m->batches_committed, d->batches_committed);
    metrics_add(&w->m->batches_rolled_back, d->batches_rolled_back);
    metrics_add(&w->m->batches_fenced, d->batches_fenced);
    if (r->retried)
        metrics_add(&w->m->retries[metrics_cause(exactly_error_cause(&r->err))],
                    1);
    if (r->rc == EXACTLY_OK) {
        /* A confirmed commit was timed by no run. */
        if (!r->confirmed)
            metrics_observe_batch(w->m, r->elapsed_ms * 1000);
        worker_metrics_position(w, pt, 1);
    }
}

worker_plan worker_settle_plan(const exactly_error *err,
                               const worker_settle_facts *f)
{
    worker_plan p;

    memset(&p, 0, sizeof(p));
    p.stop = err->fatal;
    p.next = err->code == EXACTLY_OK && f->buffered ? WORKER_NEXT_MORE
                                                    : WORKER_NEXT_WAIT;
    if (f->kind != WORKER_BATCH_FLUSH || f->deferred)
        return p;
    if (err->code == EXACTLY_OK || err->code == EXACTLY_EFENCED) {
        /* Committed, or fenced: the position moved back to the stored
         * offset (or the partition stopped). */
        p.resume = 1;
    } else if (err->retriable) {
        p.back_off = 1;
        if (!f->conn) {
            p.open_breaker = 1;
            p.next = WORKER_NEXT_NO_DB;
        } else {
            p.pause = f->buffer_full;
        }
    }
    return p;
}

worker_next worker_settle(worker *w, part *pt, const engine_batch_report *r,
                          worker_batch_kind kind)
{
    worker_settle_facts f;
    worker_plan p;

    f.kind = kind;
    f.deferred = w->n_deferred > 0;
    f.conn = w->eng.conn != NULL;
    f.buffered = pt->n_buf > 0;
    f.buffer_full = pt->n_buf >= (size_t)w->p->batch.max_messages * 4;
    p = worker_settle_plan(&r->err, &f);

    /* The handler asked to stop the worker: it stops at the next turn. */
    if (p.stop)
        w->fatal = EXACTLY_EXIT_HANDLER_STOP;
    if (w->m)
        count(w, pt, r);
    if (p.resume) {
        pt->retry_at_ms = 0;
        /* A partition an earlier rolled-back attempt paused fetches
         * again from where its buffer ends. */
        if (pt->paused && !part_state_stopped(pt->state)) {
            engine_part_seek(&w->eng, pt, worker_expected_next(pt));
            engine_part_pause(&w->eng, pt, 0);
        }
    }
    if (p.back_off)
        pt->retry_at_ms = exactly_now_ms() + worker_backoff_ms(pt->attempts);
    if (p.open_breaker)
        worker_breaker_open(w);
    /* Bound the buffer while the database is away. */
    if (p.pause)
        engine_part_pause(&w->eng, pt, 1);
    return p.next;
}

void worker_batch_done(worker *w, const part *pt,
                       const engine_batch_report *r)
{
    size_t i;

    if (r->confirmed) {
        /* No run (engine_reread: the breaker closing, or an idle
         * partition's row seen moved, follow.c): an earlier commit
         * confirmed. Its figures; pt follows the stored row already (the
         * breaker, when closing, resumes it). */
        if (w->m)
            count(w, pt, r);
        return;
    }
    if (r->late) {
        /* A held batch (engine_holds), settled after its run returned. */
        part *held = engine_part_find(&w->eng, pt->topic, pt->partition);
        if (held == pt)
            (void)worker_settle(w, held, r, WORKER_BATCH_FLUSH);
        return;
    }
    for (i = 0; i < w->n_group; i++)
        if (w->group[i].pt == pt) {
            w->group_reports[i] = *r;
            return;
        }
    if (w->report)
        *w->report = *r;
}

worker_next worker_run_batch(worker *w, part *pt, size_t n, int64_t end,
                             worker_batch_kind kind)
{
    engine_batch_report r;
    exactly_err rc;

    memset(&r, 0, sizeof(r));
    w->report = &r;
    rc = engine_run(&w->eng, pt, n, end);
    w->report = NULL;
    /* Held: settled when its answers are read (worker_batch_done). */
    if (rc == EXACTLY_OK && engine_holds(&w->eng, pt))
        return WORKER_NEXT_MORE;
    /* Nothing ran: pt's own held batch was settled instead, and its
     * report (worker_batch_done, late) decided what pt does next. */
    if (r.noop)
        return pt->n_buf > 0 && pt->retry_at_ms == 0 &&
                       !part_state_stopped(pt->state)
                   ? WORKER_NEXT_MORE
                   : WORKER_NEXT_WAIT;
    /* engine_run reports every batch (engine_ops.batch_done); should it
     * not, its code alone is what is known. */
    if (r.rc != rc) {
        memset(&r, 0, sizeof(r));
        r.rc = rc;
        exactly_error_set_code(&r.err, rc);
    }
    return worker_settle(w, pt, &r, kind);
}

/* The next step of a flush that ran several batches: the breaker first,
 * then more to do. */
static worker_next next_of_both(worker_next a, worker_next b)
{
    if (a == WORKER_NEXT_NO_DB || b == WORKER_NEXT_NO_DB)
        return WORKER_NEXT_NO_DB;
    if (a == WORKER_NEXT_MORE || b == WORKER_NEXT_MORE)
        return WORKER_NEXT_MORE;
    return WORKER_NEXT_WAIT;
}

worker_next worker_run_group(worker *w, const engine_group_member *m,
                             size_t k)
{
    engine_batch_report *reps = calloc(k, sizeof(*reps));
    worker_next next = WORKER_NEXT_WAIT;
    exactly_err rc = EXACTLY_ENOMEM;
    uint64_t rolled_back = w->eng.st.batches_rolled_back;
    size_t i;

    if (reps) {
        w->group = m;
        w->group_reports = reps;
        w->n_group = k;
        rc = engine_run_group(&w->eng, m, k);
        w->group = NULL;
        w->group_reports = NULL;
        w->n_group = 0;
    }
    /* A group that rolled back reports no batch (its partitions report
     * their own runs below); its transaction counts here. */
    if (w->m && w->eng.st.batches_rolled_back > rolled_back)
        metrics_add(&w->m->batches_rolled_back,
                    w->eng.st.batches_rolled_back - rolled_back);
    if (rc == EXACTLY_OK) {
        for (i = 0; i < k; i++)
            next = next_of_both(next, worker_settle(w, m[i].pt, &reps[i],
                                                    WORKER_BATCH_FLUSH));
        free(reps);
        return next;
    }
    free(reps);
    /* Rolled back (or never started): each runs alone, as it would have
     * without the group, until the loop must stop. */
    for (i = 0; i < k; i++) {
        part *pt = m[i].pt;
        size_t n;

        if (part_state_stopped(pt->state) || pt->n_buf == 0)
            continue;
        n = worker_batch_size(w, pt);
        next = next_of_both(next, worker_run_batch(w, pt, n,
                                                   worker_batch_end(w, pt, n),
                                                   WORKER_BATCH_FLUSH));
        if (next == WORKER_NEXT_NO_DB || w->fatal || w->n_deferred > 0)
            break;
    }
    return next;
}
