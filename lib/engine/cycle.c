/*
 * cycle.c - one batch of a partition, from its first attempt to its
 * outcome (engine_run): the position checked when it may be stale, an
 * optimistic attempt and after a handler failure a careful one
 * (attempt.c), then committed, fenced (pt follows the stored row),
 * stopped (the handler asked to) or rolled back to be retried; the
 * owner hears what the batch did (engine_ops.batch_done). The helpers
 * every step uses are in cycle_note.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "cycle_internal.h"
#include "log.h"
#include "pg_conn.h"
#include "trace.h"

/* ---- a batch, from first attempt to its outcome ------------------------- */

/* cycle_internal.h says what it does. */
void cycle_committed(engine *e, part *pt, const cycle *c, size_t n,
                     int64_t end, uint64_t dead)
{
    e->st.consumed += n;
    e->st.applied += c->applied_msgs;
    e->st.dead_lettered += dead;
    e->st.batches_committed++;
    exactly_txn_finish(&e->txn);
    pt->next_offset = end;
    pt->pos_conn = e->conn_serial;
    pt->unconfirmed = 0;
    pt->unconfirmed_applied = pt->unconfirmed_dead = 0;
    pt->attempts = 0;
    pt->missing_since_ms = 0;
    engine_part_drop(pt, n);
    engine_part_commit(e, pt);
    exactly_log(EXACTLY_LOG_DEBUG, "cycle", "batch committed",
                LOG_PART(pt),
                LOG_UINT("messages", n), LOG_UINT("records", c->n_recs),
                LOG_INT("next_offset", end));
}

/* Logs a rolled-back attempt by what it was. */
static void log_rollback(const part *pt, const cycle *c, exactly_err rc,
                         int commit_sent)
{
    if (c->err.environment)
        exactly_log(EXACTLY_LOG_ERROR, "cycle",
                    "batch rolled back: an error about the environment, not "
                    "a record; retried with backoff, nothing dead-lettered "
                    "until it is fixed",
                    LOG_PART(pt),
                    LOG_STR("sqlstate", exactly_error_sqlstate(&c->err)),
                    LOG_STR("error", c->err.message));
    else if (c->err.handler_retry)
        exactly_log(EXACTLY_LOG_WARN, "cycle",
                    "batch rolled back: the handler asked to retry it",
                    LOG_PART(pt), LOG_STR("error", c->err.message));
    else
        exactly_log(rc == EXACTLY_ERETRY ? EXACTLY_LOG_WARN : EXACTLY_LOG_ERROR,
                    "cycle", "batch rolled back",
                    LOG_PART(pt),
                    LOG_STR("sqlstate", exactly_error_sqlstate(&c->err)),
                    LOG_INT("commit_sent", commit_sent),
                    LOG_STR("error", c->err.message));
}

/* After a failed attempt, or on a connection that did not read pt's
 * position yet, the row says where pt stands. Returns 1 when the batch
 * ends here with *rc; otherwise 0, *n less what is already committed. */
static int check_position(engine *e, part *pt, size_t *n, int64_t end,
                          exactly_err *rc)
{
    int back;

    if (pt->attempts == 0 && pt->pos_conn == e->conn_serial)
        return 0;
    *rc = engine_follow_stored(e, pt, 0, &back);
    if (*rc == EXACTLY_EFENCED) {
        e->st.batches_fenced++;
        return 1;
    }
    if (*rc != EXACTLY_OK)
        return 1;
    if (back) {
        /* This attempt started above the stored offset: it stops, and
         * the next one starts there, from the messages fetched again.
         * Not a fence: the row is still ours. */
        pt->attempts = 0;
        *rc = EXACTLY_EFENCED;
        return 1;
    }
    /* Part of what we meant to apply may be committed already: it left
     * the buffer. What is left is what lies below end (by offset, not by
     * how the buffer's length moved: the buffer may also have grown). */
    *n = engine_part_below(pt, end);
    if (*n == 0 && end <= pt->next_offset) {
        pt->attempts = 0;
        *rc = EXACTLY_OK;
        return 1;
    }
    return 0;
}

static void cycle_reset(cycle *c, engine *e, part *pt)
{
    free(c->recs);
    memset(c, 0, sizeof(*c));
    c->e = e;
    c->pt = pt;
}

/* The optimistic attempt, and after a handler failure the careful one.
 * A careful attempt that still fails on a record (on_error: stop) halts
 * pt: EXACTLY_EHANDLER, nothing of the batch committed. */
static exactly_err attempt_batch(cycle *c, size_t *n, int64_t *end,
                                 int *commit_sent)
{
    engine *e = c->e;
    part *pt = c->pt;
    exactly_err rc = cycle_attempt(c, n, end, commit_sent, 0);
    exactly_error optimistic;

    if (rc != EXACTLY_EHANDLER)
        return rc;
    exactly_log(EXACTLY_LOG_WARN, "cycle",
                "handler failed, isolating the failing records",
                LOG_PART(pt),
                LOG_STR("sqlstate", exactly_error_sqlstate(&c->err)),
                LOG_STR("error", c->err.message));
    engine_rollback(e);
    e->st.retries++;
    optimistic = c->err;
    cycle_reset(c, e, pt);
    *commit_sent = 0;
    rc = engine_db_open(e);
    if (rc == EXACTLY_OK)
        rc = cycle_attempt(c, n, end, commit_sent, 1);
    if (rc == EXACTLY_EHANDLER) {
        /* on_error: stop. Nothing of the batch commits. */
        e->st.batches_rolled_back++;
        engine_rollback(e);
        (void)PART_MOVE(pt, PART_S_HALTED);
        engine_part_pause(e, pt, 1);
    } else if (rc == EXACTLY_OK) {
        /* Committed in careful mode: the report tells what sent it
         * there; the outcome is known. */
        c->err = optimistic;
        c->err.commit_unknown = 0;
    }
    return rc;
}

/* The attempt was refused by the fence: pt follows the stored row. */
static exactly_err fenced(engine *e, part *pt, const cycle *c)
{
    int back;

    exactly_log(EXACTLY_LOG_WARN, "cycle", "batch fenced",
                LOG_PART(pt),
                LOG_INT("epoch", pt->epoch),
                LOG_INT("start", pt->next_offset),
                LOG_STR("detail", c->err.message));
    e->st.batches_fenced++;
    engine_rollback(e);
    if (e->conn && engine_follow_stored(e, pt, 1, &back) == EXACTLY_ERETRY) {
        /* Not known where to go on: keep the buffer and ask again. */
        pt->attempts++;
        return EXACTLY_ERETRY;
    }
    if (!e->conn)
        pt->attempts++;
    return EXACTLY_EFENCED;
}

/* The attempt up to end was rolled back (rc): what pt and the engine do
 * next. */
static exactly_err rolled_back(engine *e, part *pt, const cycle *c,
                               exactly_err rc, int64_t end, int commit_sent,
                               int *retried)
{
    e->st.batches_rolled_back++;
    if (rc == EXACTLY_EFENCED)
        return fenced(e, pt, c);
    if (rc == EXACTLY_EFATAL) {
        exactly_log(EXACTLY_LOG_ERROR, "cycle",
                    "the handler asked to stop the worker; batch rolled "
                    "back, nothing of it committed",
                    LOG_PART(pt),
                    LOG_INT("offset", pt->next_offset),
                    LOG_STR("error", c->err.message));
        engine_rollback(e);
        (void)PART_MOVE(pt, PART_S_HALTED);
        engine_part_pause(e, pt, 1);
        return EXACTLY_EFATAL;
    }
    log_rollback(pt, c, rc, commit_sent);
    /* Remembered in case the stored offset shows it committed after all:
     * only when its outcome is unknown (cycle_judge_commit). A batch the
     * server answered that nothing committed is not, though its COMMIT
     * was sent: a row moved forward meanwhile (a reset) must not count as
     * its commit. */
    pt->unconfirmed = c->err.commit_unknown;
    pt->unconfirmed_applied = pt->unconfirmed ? c->applied_msgs : 0;
    pt->unconfirmed_dead = pt->unconfirmed ? e->dl.count : 0;
    pt->unconfirmed_end = end;
    engine_rollback(e);
    if (e->conn && exactly_pg_needs_reconnect(c->err.sqlstate) && c->err.sqlstate[0])
        engine_db_lost(e);
    pt->attempts++;
    e->st.retries++;
    *retried = 1;
    return rc == EXACTLY_ENOMEM ? EXACTLY_ERETRY : rc;
}

/* ---- the held batch (engine.h, pipelining) ------------------------------- */

int engine_holds(const engine *e, const part *pt)
{
    return e->held.pt && e->held.pt == pt;
}

static void txn_held_read(void *arg)
{
    cycle_held_read(arg);
}

/* Reads the held batch's answers if need be and settles it as
 * cycle_run_once settles a batch whose COMMIT was sent; the owner hears
 * of it with late set. Its counters are its own: an engine_run in
 * progress leaves them out of its report. The connection must be quiet
 * (nothing queued after the held transaction) unless it committed. */
exactly_err engine_settle_held(engine *e)
{
    struct engine_held h;
    engine_batch_report r;
    engine_stats before = e->st, moved;
    cycle c;

    if (!e->held.pt)
        return EXACTLY_OK;
    cycle_held_read(e);
    h = e->held;
    memset(&e->held, 0, sizeof(e->held));
    memset(&r, 0, sizeof(r));
    memset(&c, 0, sizeof(c));
    c.e = e;
    c.pt = h.pt;
    c.applied_msgs = h.applied;
    c.err = h.err;
    cycle_trace_batch(h.pt, h.n);
    if (h.rc == EXACTLY_OK) {
        cycle_committed(e, h.pt, &c, h.n, h.end, h.dead);
        r.rc = EXACTLY_OK;
    } else {
        r.rc = rolled_back(e, h.pt, &c, h.rc, h.end, 1, &r.retried);
        if (h.pt->unconfirmed)
            h.pt->unconfirmed_dead = h.dead; /* its own, not e->dl's */
    }
    exactly_log_set_trace(NULL);
    r.err = c.err;
    exactly_error_set_code(&r.err, r.rc);
    memset(&moved, 0, sizeof(moved));
    engine_stats_add(&moved, &e->st, &before);
    r.delta = moved;
    if (e->run_before)
        engine_stats_add(e->run_before, &e->st, &before);
    r.elapsed_ms = exactly_now_ms() - h.t0;
    r.late = 1;
    if (e->ops->batch_done)
        e->ops->batch_done(e->ops_arg, h.pt, &r);
    return r.rc;
}

/* r: the run settled pt's own held batch and has nothing left to do. */
static void report_noop(engine_batch_report *r)
{
    r->noop = 1;
    r->rc = EXACTLY_OK;
    exactly_error_set_code(&r->err, EXACTLY_OK);
}

/* Runs the batch; r->err is its error value (code: what it returns; a
 * batch committed in careful mode keeps the handler's failure that sent
 * it there) and r->retried whether it was rolled back to be retried. */
static void cycle_run_once(engine *e, part *pt, size_t n, int64_t end,
                           engine_batch_report *r)
{
    cycle c;
    exactly_err rc;
    int commit_sent = 0;

again:
    exactly_error_clear(&r->err);
    r->retried = 0;
    /* Sent behind the held batch only when nothing must be read first
     * (the position is known on this connection, the crash guard need
     * not be asked), and never the same partition's next batch (it
     * starts where the held one ends). */
    if (e->held.pt && (e->held.pt == pt || !e->pipeline_ok ||
                       pt->attempts != 0 || pt->pos_conn != e->conn_serial ||
                       (e->pos.crash_guard && pt->state != PART_S_SERVING) ||
                       !e->conn || PQstatus(e->conn) != CONNECTION_OK)) {
        int own = e->held.pt == pt;
        exactly_err held_rc = engine_settle_held(e);
        if (own && held_rc != EXACTLY_OK) {
            /* pt's own held batch failed: its report set what comes
             * next (a backoff, a halt), which running the same messages
             * again now would ignore. */
            report_noop(r);
            return;
        }
        if (own) {
            /* The held batch was the front of the n counted here, and
             * what it committed has left the buffer: this batch is what
             * is left below the same end. Counted by offset: messages
             * drained while the settle waited may have joined the buffer
             * behind, and they lie at or above end. */
            n = engine_part_below(pt, end);
            if (n == 0) {
                report_noop(r);
                return;
            }
        }
    }
    rc = engine_db_open(e);
    if (rc == EXACTLY_OK && !check_position(e, pt, &n, end, &rc)) {
        memset(&c, 0, sizeof(c));
        c.e = e;
        c.pt = pt;
        e->txn.held_read = txn_held_read;
        e->txn.held_arg = e;
        rc = attempt_batch(&c, &n, &end, &commit_sent);
        if (rc != EXACTLY_OK && e->held.pt && e->held.read &&
            e->held.rc != EXACTLY_OK && strcmp(c.err.sqlstate, "25P02") == 0) {
            /* Sent behind a held batch that failed inside its
             * transaction: the server refused every statement of this
             * one (in_failed_sql_transaction), none of them ran. Once
             * the held one is settled (its ROLLBACK ends that
             * transaction), this batch starts again. */
            exactly_log(EXACTLY_LOG_INFO, "cycle",
                        "batch sent behind a batch that failed; sent again",
                        LOG_PART(pt),
                        LOG_INT("behind_partition", e->held.pt->partition));
            free(c.recs);
            engine_rollback(e);
            (void)engine_settle_held(e);
            commit_sent = 0;
            goto again;
        }
        if (rc == EXACTLY_OK && c.held) {
            /* The one held before it was read, and committed. */
            (void)engine_settle_held(e);
            e->held.pt = pt;
            e->held.n = n;
            e->held.end = end;
            e->held.applied = c.applied_msgs;
            e->held.dead = e->dl.count;
        } else if (rc == EXACTLY_OK)
            cycle_committed(e, pt, &c, n, end, e->dl.count);
        else if (rc != EXACTLY_EHANDLER)
            rc = rolled_back(e, pt, &c, rc, end, commit_sent,
                             &r->retried);
        r->err = c.err;
        free(c.recs);
    }
    r->rc = rc;
    exactly_error_set_code(&r->err, rc);
}

#define DELTA(f) r.delta.f = e->st.f - before.f

/* Runs one batch and tells the owner what it did: the counters are the
 * difference of the engine's totals, so the cycle itself stays unaware. */
exactly_err engine_run(engine *e, part *pt, size_t n, int64_t end)
{
    engine_stats before = e->st;
    long long t0 = exactly_now_ms();
    engine_batch_report r;

    memset(&r, 0, sizeof(r));
    e->run_before = &before;
    cycle_trace_batch(pt, n);
    cycle_run_once(e, pt, n, end, &r);
    exactly_log_set_trace(NULL);
    /* A held batch read meanwhile: settled now, the connection quiet or
     * this batch held behind a committed one (settled already). */
    if (e->held.pt && e->held.read)
        (void)engine_settle_held(e);
    e->run_before = NULL;
    if (engine_holds(e, pt)) {
        e->held.t0 = t0;
        return EXACTLY_OK; /* reported when settled */
    }
    if (!e->ops->batch_done)
        return r.rc;
    if (r.noop) {
        /* Nothing ran: no batch to count, time or settle. */
        e->ops->batch_done(e->ops_arg, pt, &r);
        return r.rc;
    }
    DELTA(consumed);
    DELTA(applied);
    DELTA(deduplicated);
    DELTA(dead_lettered);
    DELTA(skipped_missing);
    DELTA(batches_committed);
    DELTA(batches_rolled_back);
    DELTA(batches_fenced);
    DELTA(retries);
    DELTA(handler_failures);
    if (r.rc == EXACTLY_OK && r.delta.retries > 0)
        r.retried = 1; /* careful mode after a handler failure */
    r.elapsed_ms = exactly_now_ms() - t0;
    e->ops->batch_done(e->ops_arg, pt, &r);
    return r.rc;
}

