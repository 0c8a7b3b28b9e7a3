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
#include "config.h"
#include "ledger_check.h"
#include "metrics.h"
#include "plugin.h"
#include "testkit.h"
#include "worker_internal.h"

#define TOPIC "held-own-settle"
#define PARTITIONS 2
#define BATCH 10
#define STALL_MS 50
/* Y is due this long after it is set, well inside X's STALL_MS. */
#define Y_DUE_MS 20
/* The least backoff a retriable batch waits (lib/worker/db.c). */
#define LEAST_BACKOFF_MS 50

/* Polls and flushes until cond holds or ms pass. */
#define RUN_UNTIL(w, cond, ms, flush)                                          \
    do {                                                                       \
        long long t0_ = tk_now_ms();                                           \
        while (!(cond) && tk_now_ms() - t0_ < (ms)) {                          \
            worker_assign_pending(w);                                          \
            if (flush)                                                         \
                (void)worker_flush_ready((w), 0);                              \
            (void)worker_poll((w), 50);                                        \
        }                                                                      \
    } while (0)

static void produce(const char *bootstraps, int partition, int n, int first_id,
                    int64_t *counts)
{
    int parts[2 * BATCH], ids[2 * BATCH], i;

    TK_CHECK(n <= 2 * BATCH, "produce: %d messages", n);
    for (i = 0; i < n; i++) {
        parts[i] = partition;
        ids[i] = first_id + i;
        counts[ids[i] - 1]++;
    }
    tk_produce_int_keys(bootstraps, TOPIC, parts, ids, (size_t)n);
}

static int all_serving(worker *w)
{
    size_t i;

    if (w->eng.n_parts != PARTITIONS)
        return 0;
    for (i = 0; i < w->eng.n_parts; i++)
        if (w->eng.parts[i]->state != PART_S_SERVING ||
            w->eng.parts[i]->n_buf > 0)
            return 0;
    return 1;
}

/* Buffers x_msgs on x and BATCH on y (polled, not flushed), makes y due
 * just after the flush begins and flushes once. */
static void held_flush(worker *w, const char *bootstraps, part *x, part *y,
                       int x_msgs, int *next_id, int64_t *counts)
{
    produce(bootstraps, x->partition, x_msgs, *next_id, counts);
    *next_id += x_msgs;
    produce(bootstraps, y->partition, BATCH, *next_id, counts);
    *next_id += BATCH;
    RUN_UNTIL(w, x->n_buf == (size_t)x_msgs && y->n_buf == BATCH, 10000, 0);
    TK_CHECK(x->n_buf == (size_t)x_msgs && y->n_buf == BATCH,
             "X buffers %zu of %d, Y %zu of %d", x->n_buf, x_msgs, y->n_buf,
             BATCH);
    y->retry_at_ms = exactly_now_ms() + Y_DUE_MS;
    (void)worker_flush_ready(w, 0);
}

int main(void)
{
    static int64_t counts[LEDGER_ACCOUNTS];
    ledger_fixture f;
    ledger_config c;
    exactly_config *cfg = NULL;
    const cfg_pipeline *p;
    char err[2048];
    worker w;
    part *x, *y;
    PGconn *db;
    uint64_t observed0, committed0;
    int64_t start, attempts, gap;
    int i, total = 0, next_id;

    ledger_fixture_start(&f, "held_own_settle", TOPIC, PARTITIONS);
    memset(&c, 0, sizeof c);
    c.max_messages = BATCH;
    c.max_wait_ms = 10000;
    c.handler_options_yaml = "        stall_ms: 50\n";
    ledger_fixture_config(&f, &c);
    db = tk_pg_connect(f.conninfo);

    TK_CHECK(exactly_config_load(f.config, &cfg, err, sizeof err) == EXACTLY_OK,
             "config: %s", err);
    p = &cfg->pipelines[0];
    worker_init(&w, cfg, p);
    snprintf(w.eng.owner, sizeof w.eng.owner, "test:%d:0", (int)getpid());
    w.m = metrics_map(1);
    TK_CHECK(w.m != NULL, "metrics_map");
    TK_CHECK(exactly_plugin_load(cfg, p, &w.eng.plugin, err, sizeof err) ==
                 EXACTLY_OK, "plugin: %s", err);
    TK_CHECK(worker_consumer_start(&w, err, sizeof err) == EXACTLY_OK,
             "consumer: %s", err);
    TK_CHECK(worker_db(&w) == EXACTLY_OK, "cannot connect");
    TK_CHECK(exactly_plugin_open(w.eng.plugin, w.eng.conn, p, w.eng.timeout_ms,
                                 err, sizeof err) == EXACTLY_OK,
             "open: %s", err);
    TK_CHECK(worker_consumer_subscribe(&w.con, err, sizeof err) == EXACTLY_OK,
             "subscribe: %s", err);

    /* Every partition claimed and served once. */
    for (i = 0; i < PARTITIONS; i++) {
        produce(f.mock->bootstraps, i, 1, 1 + i, counts);
        total++;
    }
    next_id = 1 + PARTITIONS;
    RUN_UNTIL(&w, all_serving(&w) && ledger_rows(db) == total, 60000, 1);
    TK_CHECK(all_serving(&w) && ledger_rows(db) == total,
             "the first batches were not applied (%" PRId64 " rows of %d)",
             ledger_rows(db), total);
    x = w.eng.parts[0];
    y = w.eng.parts[1];
    tk_note("X is partition %d, Y partition %d", (int)x->partition,
            (int)y->partition);

    /* Case 1: the held batch is all of X's run. */
    observed0 = w.m->latency_count;
    committed0 = w.m->batches_committed;
    held_flush(&w, f.mock->bootstraps, x, y, BATCH, &next_id, counts);
    total += 2 * BATCH;
    RUN_UNTIL(&w, ledger_rows(db) >= total && worker_all_committed(&w), 20000,
              1);
    TK_CHECK(ledger_rows(db) == total, "%" PRId64 " rows of %d",
             ledger_rows(db), total);
    TK_CHECK(w.m->batches_committed - committed0 == 2,
             "%" PRIu64 " batches committed, expected 2 (X's and Y's)",
             w.m->batches_committed - committed0);
    TK_CHECK(w.m->latency_count - observed0 == w.m->batches_committed -
                                                   committed0,
             "the batch-duration histogram counted %" PRIu64 " batches for "
             "%" PRIu64 " committed: a run that found its partition's held "
             "batch was all it had to do was reported as a batch",
             w.m->latency_count - observed0,
             w.m->batches_committed - committed0);

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
    held_flush(&w, f.mock->bootstraps, x, y, 2 * BATCH, &next_id, counts);
    total += 3 * BATCH;
    RUN_UNTIL(&w, ledger_rows(db) >= total && worker_all_committed(&w), 20000,
              1);
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

    ledger_check_exactly_once(db, f.mock->bootstraps, TOPIC, PARTITIONS, total,
                              counts, LEDGER_ACCOUNTS);

    rd_kafka_consumer_close(w.rk);
    while (w.eng.n_parts > 0)
        engine_part_remove(&w.eng, w.eng.parts[w.eng.n_parts - 1]);
    rd_kafka_destroy(w.rk);
    engine_free(&w.eng);
    metrics_unmap(w.m, 1);
    exactly_config_free(cfg);
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
