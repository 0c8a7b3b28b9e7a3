/*
 * Many partitions at a low rate each cost about one PostgreSQL
 * transaction per flush round, not one per partition (issue 9): the
 * partitions that have small batches ready when one is due are applied
 * in one transaction, one fence per partition and one COMMIT.
 *
 * One worker runs while the test produces ROUNDS rounds of one message
 * per partition, ROUND_MS apart, with batch.max_wait_ms below that; the
 * transactions its backends committed and rolled back (pg_stat_database,
 * read once they have exited) must stay below the batches its summary
 * counts divided by MIN_GROUP, plus OVERHEAD. One transaction per batch,
 * as before grouping, is ROUNDS * PARTITIONS. Then the exactly-once check.
 *
 * EXACTLY_GROUP_PARTITIONS (16 to 256, default 16) runs it with another
 * number of partitions, to measure the figure at scale; the figure is
 * printed. (Fewer partitions cannot make MIN_GROUP batches a transaction
 * beside their fixed transactions.)
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

#define ROUNDS 25
#define ROUND_MS 80
#define ENTITIES 50
#define MAX_PARTITIONS 256
/* Batches per transaction, on average, at least. */
#define MIN_GROUP 4

int main(void)
{
    int64_t counts[ENTITIES], round[ENTITIES];
    int64_t x0, x1, xacts, overhead;
    const char *env = getenv("EXACTLY_GROUP_PARTITIONS");
    int partitions = env && *env ? atoi(env) : 16;
    ledger_summary sum;
    ledger_fixture f;
    ledger_config c;
    PGconn *db;
    pid_t pid;
    int status, r, k;

    TK_CHECK(partitions >= 16 && partitions <= MAX_PARTITIONS,
             "EXACTLY_GROUP_PARTITIONS must be 16 to %d", MAX_PARTITIONS);
    /* Transactions that are not batches: connecting, the claim, per
     * partition a start offset, the guard's question, the first batch
     * after the claim (alone: the guard asks about it) and the release,
     * and the test's own reads. */
    overhead = 4 * (int64_t)partitions + 20;
    ledger_fixture_start(&f, "group_commit", "group-commit", partitions);
    memset(&c, 0, sizeof c);
    c.max_messages = 1000;
    c.max_wait_ms = 20;
    c.kafka = (const char *const[]){"fetch.wait.max.ms", "10", NULL};
    /* A group's members carry their IDs' values too (ABI 1.3). */
    c.handler_options_yaml = "        require_id_values: true\n";
    ledger_fixture_config(&f, &c);

    x0 = tk_pg_xacts_settled(f.conninfo);
    memset(counts, 0, sizeof counts);
    pid = ledger_start_worker(f.config, 2000, f.log);
    /* A low rate, not a backlog: the rounds start once it serves. */
    tk_wait_claims(f.log, 0, partitions, pid, 30000);
    for (r = 0; r < ROUNDS; r++) {
        tk_produce_ids(f.mock->bootstraps, f.topic, (size_t)partitions,
                       ENTITIES, partitions, 4200 + (uint64_t)r, round);
        for (k = 0; k < ENTITIES; k++)
            counts[k] += round[k];
        tk_sleep_ms(ROUND_MS);
    }
    status = tk_worker_wait(pid, 60000, f.log);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited with %d", status);
    x1 = tk_pg_xacts_settled(f.conninfo);
    LEDGER_CHECK_LOG(ledger_read_summary(f.log, &sum), f.log,
                     "the worker printed no summary");
    xacts = x1 - x0;
    tk_note("%d partitions, %d rounds: %" PRId64 " batches committed, %"
            PRId64 " rolled back; %" PRId64 " PostgreSQL transactions "
            "(%.2f per batch)",
            partitions, ROUNDS, sum.committed, sum.rolled_back, xacts,
            sum.committed > 0 ? (double)xacts / (double)sum.committed : 0.0);
    LEDGER_CHECK_LOG(sum.committed >= partitions, f.log,
                     "%" PRId64 " batches committed, expected at least %d",
                     sum.committed, partitions);
    LEDGER_CHECK_LOG(xacts <= sum.committed / MIN_GROUP + overhead, f.log,
                     "%" PRId64 " transactions for %" PRId64 " batches: "
                     "fewer than %d batches per transaction (+%" PRId64 ")",
                     xacts, sum.committed, MIN_GROUP, overhead);

    db = tk_pg_connect(f.conninfo);
    ledger_check_exactly_once(db, f.mock->bootstraps, f.topic, partitions,
                              (int64_t)ROUNDS * partitions, counts, ENTITIES);
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
