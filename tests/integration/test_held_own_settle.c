/*
 * A flush that reaches a partition whose own batch is held (engine.h,
 * pipelining) settles that batch first (cycle_run_once). Two outcomes of
 * that settle must end the run there:
 *   - the held batch committed and was all the run was sized for (its
 *     messages were the front of the buffer): nothing is left to run,
 *     and no batch may be reported (a report of a run that did nothing
 *     puts a batch of about 0 ms into the batch-duration histogram,
 *     whose count then passes the batches committed);
 *   - the held batch was rolled back by a retriable error: its report set
 *     the partition's backoff, and running the same messages again at
 *     once ignores it.
 *
 * Deterministic, in process (the worker's own functions on a real
 * consumer of the mock cluster and the test database), like
 * test_held_group_member. Two partitions, each served once; X is the one
 * the flush visits first, Y the other. Y is buffered full and backs off
 * until just after the flush begins, and the handler takes STALL_MS over
 * every batch: the flush runs X's full batch and holds it (Y not due when
 * the flush began); once X's apply() is over, Y is due and full, so the
 * flush makes another pass, which reaches X while X's batch is held.
 *   Case 1: X buffers one batch. Asserted: over that flush and what
 *     follows, the histogram counts as many batches as were committed.
 *   Case 2: X buffers two batches, and the first one's COMMIT fails once
 *     with a serialization failure (40001) from a deferred trigger, which
 *     notes the time (setval: it outlives the rolled-back transaction).
 *     Asserted: the transaction that applied that batch again began at
 *     least the least backoff (50 ms) after the failure.
 * Afterwards every message must be in the ledger exactly once.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "inproc_worker.h"
#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "held-own-settle"
#define PARTITIONS 2
#define BATCH 10
#define STALL_MS 50
/* Y is due this long after it is set, well inside X's STALL_MS. */
#define Y_DUE_MS 20
/* The least backoff a retriable batch waits (lib/worker/db.c). */
#define LEAST_BACKOFF_MS 50

/* Buffers x_msgs on x and BATCH on y (polled, not flushed), makes y due
 * just after the flush begins and flushes once. */
static void held_flush(inproc_worker *iw, const char *bootstraps,
                       int x_msgs, int *next_id, int64_t *counts)
{
    inproc_buffer_xy(iw, bootstraps, TOPIC, x_msgs, BATCH, next_id, counts);
    iw->y->retry_at_ms = exactly_now_ms() + Y_DUE_MS;
    (void)worker_flush_ready(&iw->w, 0);
}

int main(void)
{
    static int64_t counts[LEDGER_ACCOUNTS];
    static const inproc_held h = {"held_own_settle", TOPIC, PARTITIONS, BATCH,
                                  10000, STALL_MS, 1, 1};
    ledger_fixture f;
    inproc_worker iw;
    worker *w = &iw.w;
    part *x;
    PGconn *db;
    uint64_t observed0, committed0;
    int64_t start, attempts, gap;
    int total, next_id;

    /* Every partition claimed and served once. */
    total = inproc_held_start(&iw, &f, &db, &h, counts);
    next_id = 1 + total;
    x = iw.x;

    /* Case 1: the held batch is all of X's run. */
    observed0 = w->m->latency_count;
    committed0 = w->m->batches_committed;
    held_flush(&iw, f.mock->bootstraps, BATCH, &next_id, counts);
    total += 2 * BATCH;
    INPROC_RUN_UNTIL(w, ledger_rows(db) >= total && worker_all_committed(w),
                     20000, 1);
    TK_CHECK(ledger_rows(db) == total, "%" PRId64 " rows of %d",
             ledger_rows(db), total);
    TK_CHECK(w->m->batches_committed - committed0 == 2,
             "%" PRIu64 " batches committed, expected 2 (X's and Y's)",
             w->m->batches_committed - committed0);
    TK_CHECK(w->m->latency_count - observed0 == w->m->batches_committed -
                                                   committed0,
             "the batch-duration histogram counted %" PRIu64 " batches for "
             "%" PRIu64 " committed: a run that found its partition's held "
             "batch was all it had to do was reported as a batch",
             w->m->latency_count - observed0,
             w->m->batches_committed - committed0);

    /* Case 2: X's held batch fails once, retriably. */
    start = x->next_offset;
    tk_sql(db, "CREATE SEQUENCE fail_once");
    tk_sql(db, "CREATE SEQUENCE failed_at_ms");
    tk_sql(db, "CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql "
               "AS $$ BEGIN IF nextval('fail_once') = 1 THEN PERFORM "
               "setval('failed_at_ms', (extract(epoch FROM clock_timestamp()) "
               "* 1000)::bigint); RAISE EXCEPTION 'injected serialization "
               "failure' USING ERRCODE = '40001'; END IF; RETURN NEW; END $$");
    /* Deferred: it fires at COMMIT, so the client learns of the failure
     * only when it reads the held batch's answers. */
    tk_sql(db, "CREATE CONSTRAINT TRIGGER fail_once AFTER INSERT ON ledger "
               "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
               "WHEN (NEW.partition = %d AND NEW.\"offset\" = %" PRId64 ") "
               "EXECUTE FUNCTION fail_once()",
           (int)x->partition, start);
    held_flush(&iw, f.mock->bootstraps, 2 * BATCH, &next_id, counts);
    total += 3 * BATCH;
    INPROC_RUN_UNTIL(w, ledger_rows(db) >= total && worker_all_committed(w),
                     20000, 1);
    attempts = tk_sql_int64(db, "SELECT last_value FROM fail_once");
    TK_CHECK(attempts >= 2, "the batch at X's offset %" PRId64 " was tried "
             "%" PRId64 " time(s), expected the failure and a retry",
             start, attempts);
    gap = tk_sql_int64(db,
                       "SELECT (extract(epoch FROM applied_at) * 1000)::bigint "
                       "- (SELECT last_value FROM failed_at_ms) FROM ledger "
                       "WHERE partition = %d AND \"offset\" = %" PRId64,
                       (int)x->partition, start);
    tk_note("X's batch applied again %" PRId64 " ms after it failed", gap);
    TK_CHECK(gap >= LEAST_BACKOFF_MS,
             "X's failed held batch was applied again %" PRId64 " ms after "
             "the failure, less than the least backoff (%d ms): the run "
             "that settled it retried it at once",
             gap, LEAST_BACKOFF_MS);

    inproc_held_finish(&iw, &f, db, &h, total, counts);
    return 0;
}
