/*
 * A flush that reaches a partition whose own batch is held settles that
 * batch first (cycle_run_once). While it waits for the held batch's
 * answers the worker drains Kafka into its buffers, so new messages of
 * that very partition may join its buffer behind the held ones. What the
 * run does next must depend on the offsets it was sized for, never on how
 * the buffer's length changed: the held batch was all of it, so nothing is
 * left to run. A run that counted the held messages by the buffer's
 * length took the new messages for what follows the held batch and
 * applied them under the held batch's end: their writes committed while
 * the stored offset stayed below them, and a worker that then stops or
 * loses the partition leaves them to be applied a second time.
 *
 * Deterministic, in process, like test_held_own_settle: three partitions
 * (the drain's cap is a batch per partition: X's held batch and Y's full
 * one leave room), X the one the flush visits first, Y full and due just
 * after the flush begins, Z empty, and the handler takes STALL_MS over
 * each batch, so the flush holds X's batch and comes back to X in a
 * second pass. X's held COMMIT is slow (a deferred trigger sleeps at
 * COMMIT, after it raised a flag the test's thread watches); while the
 * worker waits on it, the thread produces NEW messages to X, which the
 * drain takes.
 * Asserted: the new messages did reach the worker during the flush; once
 * the flush is over, no message of X is applied at or above X's stored
 * offset; afterwards every message is in the ledger exactly once.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "inproc_worker.h"
#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "held-own-drain"
#define PARTITIONS 3
#define BATCH 10
#define STALL_MS 50
/* Y is due this long after it is set, well inside X's STALL_MS. */
#define Y_DUE_MS 20
/* Messages produced to X while its held COMMIT sleeps. */
#define NEW 5
/* How long that COMMIT sleeps: time for the mock to deliver them. */
#define COMMIT_SLEEP_S 3

typedef struct producer_arg {
    const char *conninfo;
    const char *bootstraps;
    int partition;
    int first_id;
    int64_t *counts;
} producer_arg;

/* Waits until X's held COMMIT is running (the trigger's flag), then
 * produces NEW messages to X. */
static void *produce_during_commit(void *p)
{
    producer_arg *a = p;
    PGconn *db = tk_pg_connect(a->conninfo);

    inproc_wait_commit_running(db);
    inproc_produce(a->bootstraps, TOPIC, a->partition, NEW, a->first_id,
                   a->counts);
    PQfinish(db);
    return NULL;
}

int main(void)
{
    static int64_t counts[LEDGER_ACCOUNTS];
    static const inproc_held h = {"held_own_drain", TOPIC, PARTITIONS, BATCH,
                                  10000, STALL_MS, 1, 1};
    ledger_fixture f;
    inproc_worker iw;
    worker *w = &iw.w;
    part *x, *y;
    PGconn *db;
    pthread_t th;
    producer_arg pa;
    int64_t start, stored, above, rows_before;
    int total, next_id;

    total = inproc_held_start(&iw, &f, &db, &h, counts);
    next_id = 1 + total;
    x = iw.x;
    y = iw.y;

    /* X's next batch: its COMMIT raises the flag, then sleeps. */
    start = x->next_offset;
    inproc_slow_commit(db, x->partition, start, COMMIT_SLEEP_S);

    /* X and Y buffer a batch each (polled, not flushed). */
    inproc_buffer_xy(&iw, f.mock->bootstraps, TOPIC, BATCH, BATCH, &next_id,
                     counts);
    total += 2 * BATCH;

    pa = (producer_arg){f.conninfo, f.mock->bootstraps, x->partition,
                        next_id, counts};
    next_id += NEW;
    total += NEW;
    TK_CHECK(pthread_create(&th, NULL, produce_during_commit, &pa) == 0,
             "pthread_create");
    rows_before = tk_sql_int64(db, "SELECT count(*) FROM ledger WHERE "
                                   "partition = %d", (int)x->partition);
    y->retry_at_ms = exactly_now_ms() + Y_DUE_MS;
    (void)worker_flush_ready(w, 0);
    TK_CHECK(pthread_join(th, NULL) == 0, "pthread_join");

    /* Taken during the flush: buffered still, or applied. */
    TK_CHECK(x->n_buf + (size_t)(tk_sql_int64(db, "SELECT count(*) FROM "
                                                  "ledger WHERE partition = "
                                                  "%d", (int)x->partition) -
                                     rows_before - BATCH) ==
                 NEW,
             "X took %zu new message(s) into its buffer during the flush, "
             "expected %d: the test did not reach the state it is about",
             x->n_buf, NEW);
    stored = tk_sql_int64(db, "SELECT next_offset FROM exactly.offsets "
                              "WHERE partition = %d", (int)x->partition);
    above = tk_sql_int64(db, "SELECT count(*) FROM ledger WHERE partition = "
                             "%d AND \"offset\" >= %" PRId64,
                         (int)x->partition, stored);
    tk_note("X's stored offset %" PRId64 " after the flush, %" PRId64
            " message(s) applied at or above it", stored, above);
    TK_CHECK(above == 0,
             "%" PRId64 " message(s) of X are applied at or above X's stored "
             "offset %" PRId64 ": the run that settled X's held batch took "
             "the messages drained meanwhile for what follows it and "
             "committed them under the held batch's end",
             above, stored);

    inproc_held_finish(&iw, &f, db, &h, total, counts);
    return 0;
}
