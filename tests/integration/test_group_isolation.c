/*
 * A failure inside a group of partitions (several partitions' small
 * batches in one transaction) stays that partition's: the group is
 * rolled back and each partition runs alone, as it would without the
 * group.
 *
 *   fence    one partition's offset row is taken over (its owner_epoch
 *            bumped from the test) while the worker groups it with the
 *            others: the others still commit everything, that partition
 *            is given up as a fence is, with nothing applied past its
 *            stored offset.
 *   handler  apply() fails every batch holding one entity: that
 *            partition's batch goes through careful mode alone, the
 *            entity's messages are dead-lettered and nothing else; every
 *            other message is applied exactly once.
 *
 * Both produce ROUNDS rounds of one message per partition, ROUND_MS
 * apart, into a running worker (a low rate: small batches that group).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exactly/error.h"
#include "ledger_check.h"
#include "testkit.h"

#define PARTITIONS 8
#define ROUNDS 16
#define ROUND_MS 80
#define ENTITIES 50
#define SEED 5100
#define FENCED_PARTITION 3
#define FENCE_AFTER_ROUND 6

static const char *const kafka_fast[] = {"fetch.wait.max.ms", "10", NULL};

/* Starts the worker of f (written from c), waits for its claims and
 * produces the rounds, calling at_round(f, r) after round r when given.
 * Returns the worker's exit status; counts gets what was produced per
 * entity. */
static int run_rounds(ledger_fixture *f, ledger_config *c, int64_t *counts,
                      void (*at_round)(ledger_fixture *, int))
{
    int64_t round[ENTITIES];
    pid_t pid;
    int r, k;

    c->max_messages = 1000;
    c->max_wait_ms = 20;
    c->kafka = kafka_fast;
    ledger_fixture_config(f, c);
    memset(counts, 0, ENTITIES * sizeof *counts);
    pid = ledger_start_worker(f->config, 2000, f->log);
    tk_wait_claims(f->log, 0, PARTITIONS, pid, 30000);
    for (r = 0; r < ROUNDS; r++) {
        tk_produce_ids(f->mock->bootstraps, f->topic, PARTITIONS, ENTITIES,
                       PARTITIONS, SEED + (uint64_t)r, round);
        for (k = 0; k < ENTITIES; k++)
            counts[k] += round[k];
        tk_sleep_ms(ROUND_MS);
        if (at_round)
            at_round(f, r);
    }
    return tk_worker_wait(pid, 60000, f->log);
}

/* ---- fence ---------------------------------------------------------------- */

static void take_over(ledger_fixture *f, int r)
{
    PGconn *db;

    if (r != FENCE_AFTER_ROUND)
        return;
    db = tk_pg_connect(f->conninfo);
    tk_sql(db, "UPDATE exactly.offsets SET owner_epoch = owner_epoch + 1 "
                    "WHERE pipeline = '" LEDGER_PIPELINE "' AND partition = %d",
                FENCED_PARTITION);
    PQfinish(db);
}

static void fence_case(void)
{
    int64_t counts[ENTITIES], hw[PARTITIONS], stored;
    ledger_fixture f;
    ledger_config c;
    PGconn *db;
    int status, p;

    ledger_fixture_start(&f, "group_fence", "group-fence", PARTITIONS);
    memset(&c, 0, sizeof c);
    status = run_rounds(&f, &c, counts, take_over);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited with %d", status);
    /* The group's one fence names the partitions it refused. */
    LEDGER_CHECK_LOG(tk_log_lines_with(f.log, "group rolled back",
                                       "[3] of pipeline") >= 1,
                     f.log, "no group was rolled back by partition 3's fence");
    LEDGER_CHECK_LOG(tk_log_lines_with(f.log, "partition taken over",
                                       "partition=3 ") == 1,
                     f.log, "partition 3 was not given up once as taken over");

    db = tk_pg_connect(f.conninfo);
    /* Every partition: the ledger holds offsets 0 .. next_offset - 1, no
     * more, no less, and the counters add up. */
    (void)ledger_check_consistent(db, f.topic, PARTITIONS);
    ledger_high_watermarks(f.mock->bootstraps, f.topic, PARTITIONS, hw);
    for (p = 0; p < PARTITIONS; p++) {
        stored = tk_sql_int64(db, "SELECT next_offset FROM exactly.offsets "
                                  "WHERE pipeline = '" LEDGER_PIPELINE "' "
                                  "AND partition = %d", p);
        if (p == FENCED_PARTITION)
            TK_CHECK(stored < hw[p],
                     "the fenced partition stored %" PRId64 " (of %" PRId64
                     "): it went on after the take-over", stored, hw[p]);
        else
            TK_CHECK(stored == hw[p],
                     "partition %d stored %" PRId64 " of %" PRId64 ": not "
                     "all of it committed beside the fenced one",
                     p, stored, hw[p]);
    }
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                       "exactly.dead_letters"),
                      0, "dead letters after a fence");
    tk_note("fence: partition %d stopped at its row's offset, the other %d "
            "committed everything",
            FENCED_PARTITION, PARTITIONS - 1);
    PQfinish(db);
    ledger_fixture_stop(&f);
}

/* ---- handler failure ------------------------------------------------------ */

static void handler_case(void)
{
    int64_t counts[ENTITIES];
    ledger_fixture f;
    ledger_config c;
    char opts[256];
    PGconn *db;
    int status;
    /* An entity of round 5, partition 2: it appears in a few batches. */
    int bad = (int)tk_id_for(SEED + 5, 2, ENTITIES);

    ledger_fixture_start(&f, "group_handler", "group-handler", PARTITIONS);
    snprintf(opts, sizeof opts,
             "        return_on_id: '%d'\n"
             "        return_code: %d\n"
             "        return_times: 0\n"
             /* so do the bisect's halves (ABI 1.3) */
             "        require_id_values: true\n",
             bad, (int)EXACTLY_EHANDLER);
    memset(&c, 0, sizeof c);
    c.handler_options_yaml = opts;
    status = run_rounds(&f, &c, counts, NULL);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited with %d", status);
    LEDGER_CHECK_LOG(tk_log_lines_with(f.log, "group rolled back",
                                       NULL) >= 1,
                     f.log, "no group was rolled back by the handler");
    LEDGER_CHECK_LOG(tk_log_lines_with(f.log, "handler failed, isolating",
                                       NULL) >= 1,
                     f.log, "careful mode never ran");
    db = tk_pg_connect(f.conninfo);
    ledger_check_exactly_once_except(db, f.mock->bootstraps, f.topic,
                                     PARTITIONS, (int64_t)ROUNDS * PARTITIONS,
                                     counts, ENTITIES, bad);
    PQfinish(db);
    ledger_fixture_stop(&f);
}

int main(void)
{
    fence_case();
    handler_case();
    return 0;
}
