/*
 * A partition halted because its stored offset is not in the log resumes
 * from where `exactly offsets reset` puts it, while the worker runs.
 *
 * Partition 0's row says next_offset OUT_OF_LOG, far beyond the log's end
 * (as after a topic was recreated), before the worker starts. The worker
 * halts that partition with an error that tells the operator to reset
 * it, and serves partition 1. The operator does as told (`exactly offsets
 * reset --to-earliest --force`: the group is active); more messages
 * arrive. Within a generous bound every stored offset must reach its high
 * watermark, without a restart, and the run must be exactly once.
 *
 * Both rebalance protocols: eager (the default assignors) and
 * cooperative (cooperative-sticky), which start a partition's fetching
 * again in different ways.
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
#define WAVE 200
#define OUT_OF_LOG 100000
/* Two cores shared with other work: generous. */
#define APPLY_TIMEOUT_MS 90000

static void run_case(const char *name, const char *const *kafka)
{
    int64_t counts[LEDGER_ACCOUNTS] = {0};
    int64_t hw[PARTITIONS], stored;
    char reset_log[600];
    ledger_fixture f;
    ledger_config c;
    PGconn *db;
    pid_t pid;
    int status, p;

    ledger_fixture_start(&f, name, name, PARTITIONS);
    memset(&c, 0, sizeof c);
    c.max_messages = 50;
    c.max_wait_ms = 20;
    c.kafka = kafka;
    ledger_fixture_config(&f, &c);
    snprintf(reset_log, sizeof reset_log, "%s/reset.log", f.dir);
    db = tk_pg_connect(f.conninfo);

    ledger_produce_wave(&f, WAVE, 1, counts);
    tk_sql(db, "INSERT INTO exactly.offsets (pipeline, topic, partition, "
               "next_offset) VALUES ('%s', '%s', 0, %d)",
           LEDGER_PIPELINE, f.topic, OUT_OF_LOG);

    pid = ledger_start_worker(f.config, 0, f.log);
    LEDGER_CHECK_LOG(tk_wait_log(f.log, "stored offset is no longer in the "
                                        "log", 1, pid, 60000, &status),
                     f.log, "partition 0 was not halted (status %d)", status);
    ledger_high_watermarks(f.mock->bootstraps, f.topic, PARTITIONS, hw);
    stored = ledger_wait_stored(db, 1, hw[1], APPLY_TIMEOUT_MS);
    LEDGER_CHECK_LOG(stored == hw[1], f.log,
                     "partition 1 was not served beside the halted one: "
                     "stored %" PRId64 ", high watermark %" PRId64,
                     stored, hw[1]);

    /* What the log told the operator to do. */
    status = tk_exactly(reset_log, 60000, "offsets", "reset", "-c", f.config,
                        "--pipeline", LEDGER_PIPELINE, "--topic", f.topic,
                        "--partition", "0", "--to-earliest", "--force",
                        NULL);
    LEDGER_CHECK_LOG(status == 0, reset_log, "the reset exited %d", status);

    ledger_produce_wave(&f, WAVE, 2, counts);
    ledger_high_watermarks(f.mock->bootstraps, f.topic, PARTITIONS, hw);
    for (p = 0; p < PARTITIONS; p++) {
        stored = ledger_wait_stored(db, p, hw[p], APPLY_TIMEOUT_MS);
        LEDGER_CHECK_LOG(stored == hw[p], f.log,
                         "partition %d after exactly offsets reset: stored "
                         "offset %" PRId64 ", high watermark %" PRId64
                         ", %d s after the last wave",
                         p, stored, hw[p], APPLY_TIMEOUT_MS / 1000);
    }

    status = tk_terminate(pid, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited with %d", status);
    ledger_check_exactly_once(db, f.mock->bootstraps, f.topic, PARTITIONS,
                              2 * WAVE, counts, LEDGER_ACCOUNTS);
    PQfinish(db);
    ledger_fixture_stop(&f);
}

/* With an argument (eager or cooperative), runs that case alone. */
int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "eager") == 0)
        run_case("out_of_range_eager", ledger_kafka_eager);
    if (argc < 2 || strcmp(argv[1], "cooperative") == 0)
        run_case("out_of_range_coop", ledger_kafka_cooperative);
    return 0;
}
