/*
 * The crash guard costs no transaction of its own in steady state (issue
 * 9): a worker that applies many small batches commits one PostgreSQL
 * transaction per batch, plus a few per claim and per stop (the claim,
 * the guard's question on the first batch after it, the release).
 *
 * One worker drains MESSAGES messages over PARTITIONS partitions in
 * batches of at most BATCH (so at least MESSAGES / BATCH batches) in a
 * database of its own; the transactions its backends committed and
 * rolled back (pg_stat_database, read once they have exited) must not
 * exceed the batches its summary counts by more than OVERHEAD. Then the
 * exactly-once check.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define PARTITIONS 2
#define MESSAGES 600
#define ENTITIES 50
#define BATCH 10
/* Transactions that are not batches: connecting (version and session
 * checks, statements prepared), the claim, a start offset per partition,
 * the guard's question per partition, the release per partition, and the
 * test's own reads. A guard transaction per batch would be 60 and more. */
#define OVERHEAD 30

int main(void)
{
    int64_t counts[ENTITIES];
    int64_t x0, x1, xacts;
    ledger_summary sum;
    ledger_fixture f;
    ledger_config c;
    PGconn *db;
    int status;

    ledger_fixture_start(&f, "guard_steady", "guard-steady", PARTITIONS);
    tk_produce_ids(f.mock->bootstraps, f.topic, MESSAGES, ENTITIES,
                   PARTITIONS, 909, counts);
    memset(&c, 0, sizeof c);
    c.max_messages = BATCH;
    c.max_wait_ms = 20;
    c.kafka = ledger_short_session;
    ledger_fixture_config(&f, &c);

    x0 = tk_pg_xacts_settled(f.conninfo);
    status = ledger_run_to_idle(f.config, 2000, 90000, f.log);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited with %d", status);
    x1 = tk_pg_xacts_settled(f.conninfo);
    LEDGER_CHECK_LOG(ledger_read_summary(f.log, &sum), f.log,
                     "the worker printed no summary");
    xacts = x1 - x0;
    tk_note("%" PRId64 " batches committed, %" PRId64 " rolled back; %"
            PRId64 " PostgreSQL transactions (%.2f per batch)",
            sum.committed, sum.rolled_back, xacts,
            sum.committed > 0 ? (double)xacts / (double)sum.committed : 0.0);
    TK_CHECK(sum.committed >= MESSAGES / BATCH,
             "%" PRId64 " batches committed, expected at least %d",
             sum.committed, MESSAGES / BATCH);
    LEDGER_CHECK_LOG(xacts <= sum.committed + sum.rolled_back + OVERHEAD,
                     f.log, "%" PRId64 " transactions for %" PRId64
                     " batches: more than one per batch (+%d)", xacts,
                     sum.committed + sum.rolled_back, OVERHEAD);

    db = tk_pg_connect(f.conninfo);
    ledger_check_exactly_once(db, f.mock->bootstraps, f.topic, PARTITIONS,
                              MESSAGES, counts, ENTITIES);
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
