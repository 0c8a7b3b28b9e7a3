/*
 * A batch whose COMMIT went unanswered (the client's wait ran out) and
 * that committed after all is counted once, wherever its commit is
 * confirmed. When the circuit breaker closes, every position is read
 * again (worker_breaker_try_close, engine_reread); a stored offset found
 * past the partition's is that earlier commit, which the engine then
 * counts (consumed, applied, batches committed). /metrics must count it
 * too, and show the new stored offset: otherwise the worker's own totals
 * and its metrics slot part for good, and the stored-offset gauge shows
 * lag that is not there until the partition's next batch.
 *
 * Deterministic, in process (tests/support/inproc_worker.h), like
 * test_held_breaker: two partitions, each served once; X then buffers a
 * full batch, whose COMMIT is slow once (a deferred trigger sleeps 2 s),
 * and the worker's wait for an answer is cut to 300 ms. One flush holds
 * X's batch and, at its end, gives up on its answer: the connection is
 * ended and the breaker opens. The test waits until that COMMIT has
 * landed (the stored row shows X's end), then lets the breaker close.
 * Asserted: the worker's totals and its metrics slot agree before the
 * test and once the breaker closed; X's stored-offset gauge is X's next
 * offset; afterwards every message is in the ledger exactly once.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inproc_worker.h"
#include "ledger_check.h"
#include "metrics.h"
#include "testkit.h"

#define TOPIC "breaker-confirm-metrics"
#define PARTITIONS 2
#define BATCH 10
#define WAIT_MS 300
#define COMMIT_SLEEP_S 2

/* The worker's totals (w->eng.st) and its metrics slot agree. */
static void check_agree(const worker *w, const char *when)
{
    const engine_stats *st = &w->eng.st;

    TK_CHECK(w->m->consumed == st->consumed && w->m->applied == st->applied &&
                 w->m->batches_committed == st->batches_committed,
             "%s: /metrics counts %" PRIu64 " consumed, %" PRIu64
             " applied, %" PRIu64 " batches committed; the worker %" PRIu64
             ", %" PRIu64 ", %" PRIu64,
             when, w->m->consumed, w->m->applied, w->m->batches_committed,
             st->consumed, st->applied, st->batches_committed);
}

int main(void)
{
    static int64_t counts[LEDGER_ACCOUNTS];
    static const inproc_held h = {"breaker_confirm_metrics", TOPIC,
                                  PARTITIONS, BATCH, 10000, 0, 1, 1};
    ledger_fixture f;
    inproc_worker iw;
    worker *w = &iw.w;
    metrics_partition *mx;
    PGconn *db;
    int64_t x_end;
    int total, next_id, timeout_ms;
    part *x;

    total = inproc_held_start(&iw, &f, &db, &h, counts);
    next_id = 1 + total;
    x = iw.x;
    mx = metrics_part(w->m, TOPIC, x->partition);
    TK_CHECK(mx != NULL, "no metrics of X");
    check_agree(w, "before");

    /* X's next batch: its COMMIT sleeps, once, longer than the worker
     * waits for an answer. */
    x_end = x->next_offset + BATCH;
    inproc_slow_commit(db, x->partition, x->next_offset, COMMIT_SLEEP_S);
    inproc_produce(f.mock->bootstraps, TOPIC, x->partition, BATCH, next_id,
                   counts);
    next_id += BATCH;
    total += BATCH;
    INPROC_RUN_UNTIL(w, x->n_buf == BATCH, 10000, 0);
    TK_CHECK(x->n_buf == BATCH, "X buffers %zu of %d", x->n_buf, BATCH);
    timeout_ms = w->eng.timeout_ms;
    w->eng.timeout_ms = WAIT_MS;
    (void)worker_flush_ready(w, 0);
    TK_CHECK(w->db_down_since_ms != 0 && x->unconfirmed,
             "the breaker did not open with X's commit unknown: the test "
             "did not reach the state it is about");

    /* The COMMIT lands meanwhile; then the breaker closes. */
    TK_CHECK(tk_sql_wait_int64(db, x_end, 20000,
                               "SELECT next_offset FROM exactly.offsets "
                               "WHERE pipeline = '" LEDGER_PIPELINE "' AND "
                               "partition = %d", (int)x->partition) == x_end,
             "X's slow COMMIT did not land within 20 s");
    w->eng.timeout_ms = timeout_ms;
    INPROC_RUN_UNTIL(w, worker_breaker_try_close(w), 20000, 0);
    TK_CHECK(w->db_down_since_ms == 0, "the breaker did not close");
    TK_CHECK(x->next_offset == x_end && !x->unconfirmed,
             "X stands at %" PRId64 ", not at its confirmed commit's end "
             "%" PRId64,
             x->next_offset, x_end);
    check_agree(w, "once the breaker closed");
    TK_CHECK(mx->stored_offset == x->next_offset,
             "X's stored-offset gauge shows %" PRId64 ", X stands at %" PRId64,
             mx->stored_offset, x->next_offset);

    inproc_held_finish(&iw, &f, db, &h, total, counts);
    return 0;
}
