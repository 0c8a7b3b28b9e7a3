/*
 * settle.c - what a batch did, settled in one place (worker_settle): the
 * engine hands its report (engine_batch_report: the counters it moved and
 * its one error value) to the worker before engine_run returns. Decisions
 * are taken on the error's fields, never on its text.
 */
#include "error_value.h"
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
        metrics_observe_batch(w->m, r->elapsed_ms * 1000);
        worker_metrics_position(w, pt, 1);
    }
}

void worker_settle(worker *w, const part *pt, const engine_batch_report *r)
{
    /* The handler asked to stop the worker: it stops at the next turn. */
    if (r->err.fatal)
        w->fatal = EXACTLY_EXIT_HANDLER_STOP;
    if (w->m)
        count(w, pt, r);
}
