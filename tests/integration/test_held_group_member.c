/*
 * A batch held by pipelining (engine.h, engine_holds) taken into a group.
 *
 * worker_flush_ready sizes a group's members from the front of each
 * member's buffer (worker_batch_size), held messages included, and only
 * then settles the held batch (engine_settle_held before
 * worker_run_group), which, once it committed, drops and frees its
 * messages. engine_groupable does not leave the held partition out, so a
 * held partition that joins a group keeps a member count (and end) that
 * still includes the messages its held batch took: engine_run_group then
 * builds that member's batch from pt->buf[0..n) with n > pt->n_buf
 * (freed messages: heap-use-after-free in batch_build; or, with more
 * messages behind them, entries of the buffer counted twice). The same
 * defect b882a5c fixed for engine_run, on the group path.
 *
 * Deterministic, in process (the worker's own functions on a real
 * consumer of the mock cluster and the test database):
 *   - three partitions, each served once (SERVING: groupable);
 *   - 5 messages buffered on the partition the flush visits first (X),
 *     3 more produced to the one it visits second (Y) and left in
 *     librdkafka's queue (not polled);
 *   - worker_flush_ready(force): X runs alone (Y is empty when X's group
 *     is chosen) and is held; its lookup's wait drains Kafka, so Y now
 *     has its 3; Y's small batch takes X (held, 5 buffered) along into a
 *     group; the held batch is settled (X's 5 freed) and the group builds
 *     X's member of 5 from an empty buffer.
 * Afterwards every message must be in the ledger exactly once.
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
#include "testkit.h"

#define TOPIC "held-group-member"
#define PARTITIONS 3
#define MAX_MESSAGES 20

int main(void)
{
    static int64_t counts[LEDGER_ACCOUNTS];
    static const inproc_held h = {"held_group_member", TOPIC, PARTITIONS,
                                  MAX_MESSAGES, 1, 0, 0, MAX_MESSAGES};
    ledger_fixture f;
    inproc_worker iw;
    worker *w = &iw.w;
    part *x, *y;
    PGconn *db;
    int total;

    /* Every partition claimed and served once: groupable from now on. */
    total = inproc_held_start(&iw, &f, &db, &h, counts);

    x = iw.x;
    y = iw.y;

    /* 5 buffered on X (not flushed). */
    inproc_produce(f.mock->bootstraps, TOPIC, x->partition, 5, 101, counts);
    total += 5;
    INPROC_RUN_UNTIL(w, x->n_buf == 5, 10000, 0);
    TK_CHECK(x->n_buf == 5 && y->n_buf == 0, "X buffers %zu, Y %zu",
             x->n_buf, y->n_buf);
    /* 3 for Y, left in librdkafka's queue: the flush's drain takes them. */
    inproc_produce(f.mock->bootstraps, TOPIC, y->partition, 3, 201, counts);
    total += 3;
    tk_sleep_ms(1500);
    TK_CHECK(y->n_buf == 0, "Y was buffered before the flush");

    (void)worker_flush_ready(w, 1);
    tk_note("after the flush: X buffers %zu, Y %zu; %" PRId64 " rows",
            x->n_buf, y->n_buf, ledger_rows(db));

    inproc_held_finish(&iw, &f, db, &h, total, counts);
    return 0;
}
