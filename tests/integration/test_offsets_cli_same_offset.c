/*
 * A partition halted because its stored offset was not in the log resumes
 * when `exactly offsets reset` puts it at that very offset again, once
 * the log holds it, while the worker runs.
 *
 * Partition 0's row says next_offset AHEAD, past the log's end (as after
 * a topic was recreated or truncated), before the worker starts. The
 * worker halts that partition and serves partition 1.
 *
 * First the row is written again at AHEAD while AHEAD is still out of the
 * log, as a reset would leave it whose offset left the log before the
 * worker fetched it (the command itself clamps to the log's range): the
 * worker must try AHEAD again and halt a second time, and only once, not
 * retrying without another write.
 *
 * Then more messages arrive, so that AHEAD is in the log; the operator
 * resets partition 0 to AHEAD (`--to-offset`, `--force`: the group is
 * active), the offset that failed. Within RESUME_TIMEOUT_MS, without a
 * restart, partition 0's stored offset must reach its high watermark,
 * with exactly the offsets [AHEAD, high watermark) applied once each and
 * none before AHEAD, and no third halt.
 *
 * Both rebalance protocols, as in test_offsets_cli_out_of_range.c: eager
 * and cooperative start a partition's fetching again in different ways.
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
/* tk_produce_ids puts message i in partition i % PARTITIONS: each wave
 * adds WAVE / PARTITIONS messages to every partition. */
#define WAVE 200
#define PER_PART (WAVE / PARTITIONS)
/* Past the end of the first wave, inside the log after the second. */
#define AHEAD (PER_PART + PER_PART / 2)
/* The recheck of a halted partition runs every few seconds; two cores
 * shared with other work: a bound well above that, below a restart's. */
#define RESUME_TIMEOUT_MS 30000
#define SERVE_TIMEOUT_MS 90000
#define HALTED "stored offset is no longer in the log"
/* Longer than two rechecks of a halted partition (RESET_RECHECK_MS). */
#define NO_RETRY_MS 8000

/* `exactly offsets reset` of partition 0 to AHEAD, with output in
 * reset_log; fails unless it exits 0. */
static void reset_to_ahead(const ledger_fixture *f, const char *reset_log)
{
    char to[32];
    int status;

    snprintf(to, sizeof to, "%d", AHEAD);
    status = tk_exactly(reset_log, 60000, "offsets", "reset", "-c", f->config,
                        "--pipeline", LEDGER_PIPELINE, "--topic", f->topic,
                        "--partition", "0", "--to-offset", to, "--force",
                        NULL);
    LEDGER_CHECK_LOG(status == 0, reset_log, "the reset exited %d", status);
}

/* Fails unless the ledger holds, for partition p, exactly the offsets
 * [from, to), once each. */
static void check_applied(PGconn *db, const char *log, int p, int64_t from,
                          int64_t to)
{
    int64_t rows, lo, hi;

    rows = tk_sql_int64(db, "SELECT count(*) FROM ledger WHERE partition = %d",
                        p);
    lo = tk_sql_int64(db, "SELECT coalesce(min(\"offset\"), -1) FROM ledger "
                          "WHERE partition = %d", p);
    hi = tk_sql_int64(db, "SELECT coalesce(max(\"offset\"), -1) FROM ledger "
                          "WHERE partition = %d", p);
    LEDGER_CHECK_LOG(rows == to - from && lo == from && hi == to - 1, log,
                     "partition %d: ledger holds %" PRId64 " rows, offsets "
                     "%" PRId64 "..%" PRId64 "; expected offsets %" PRId64
                     "..%" PRId64 " once each",
                     p, rows, lo, hi, from, to - 1);
}

static void run_case(const char *name, const char *const *kafka)
{
    int64_t counts[LEDGER_ACCOUNTS] = {0};
    int64_t hw[PARTITIONS], stored;
    char reset_log[600];
    ledger_fixture f;
    ledger_config c;
    PGconn *db;
    pid_t pid;
    int status;

    ledger_fixture_start(&f, name, name, PARTITIONS);
    memset(&c, 0, sizeof c);
    c.max_messages = 50;
    c.max_wait_ms = 20;
    c.kafka = kafka;
    ledger_fixture_config(&f, &c);
    snprintf(reset_log, sizeof reset_log, "%s/reset.log", f.dir);
    db = tk_pg_connect(f.conninfo);

    ledger_produce_wave(&f, WAVE, 1, counts);
    ledger_high_watermarks(f.mock->bootstraps, f.topic, PARTITIONS, hw);
    TK_CHECK(hw[0] == PER_PART && hw[1] == PER_PART,
             "first wave: high watermarks %" PRId64 ", %" PRId64
             ", expected %d each", hw[0], hw[1], PER_PART);
    tk_sql(db, "INSERT INTO exactly.offsets (pipeline, topic, partition, "
               "next_offset) VALUES ('%s', '%s', 0, %d)",
           LEDGER_PIPELINE, f.topic, AHEAD);

    pid = ledger_start_worker(f.config, 0, f.log);
    LEDGER_CHECK_LOG(tk_wait_log(f.log, HALTED, 1, pid, 60000, &status),
                     f.log, "partition 0 was not halted (status %d)", status);
    stored = ledger_wait_stored(db, 1, hw[1], SERVE_TIMEOUT_MS);
    LEDGER_CHECK_LOG(stored == hw[1], f.log,
                     "partition 1 was not served beside the halted one: "
                     "stored %" PRId64 ", high watermark %" PRId64,
                     stored, hw[1]);

    /* Written again, still out of the log: tried, halted again, and not
     * tried a third time. */
    tk_sql(db, "UPDATE exactly.offsets SET updated_at = now() "
               "WHERE pipeline = '%s' AND partition = 0", LEDGER_PIPELINE);
    LEDGER_CHECK_LOG(tk_wait_log(f.log, HALTED, 2, pid, RESUME_TIMEOUT_MS,
                                 &status),
                     f.log, "partition 0 was not tried again after its row "
                     "was written at %d (status %d)", AHEAD, status);
    LEDGER_CHECK_LOG(!tk_wait_log(f.log, HALTED, 3, pid, NO_RETRY_MS,
                                  &status),
                     f.log, "partition 0 was tried again without another "
                     "reset");

    /* The log grows past the offset that failed; the operator puts the
     * partition there again. */
    ledger_produce_wave(&f, WAVE, 2, counts);
    ledger_high_watermarks(f.mock->bootstraps, f.topic, PARTITIONS, hw);
    TK_CHECK(hw[0] > AHEAD, "second wave: high watermark %" PRId64
             " of partition 0 is not past %d", hw[0], AHEAD);
    reset_to_ahead(&f, reset_log);
    TK_CHECK(tk_sql_int64(db, "SELECT count(*) FROM exactly.offset_resets "
                              "WHERE partition = 0 AND from_offset = %d "
                              "AND to_offset = %d", AHEAD, AHEAD) == 1,
             "the reset of partition 0 from %d to %d was not recorded",
             AHEAD, AHEAD);

    stored = ledger_wait_stored(db, 0, hw[0], RESUME_TIMEOUT_MS);
    LEDGER_CHECK_LOG(stored == hw[0], f.log,
                     "partition 0 after exactly offsets reset to the offset "
                     "that failed (%d, now in the log): stored offset %"
                     PRId64 ", high watermark %" PRId64 " after %d s",
                     AHEAD, stored, hw[0], RESUME_TIMEOUT_MS / 1000);
    stored = ledger_wait_stored(db, 1, hw[1], SERVE_TIMEOUT_MS);
    LEDGER_CHECK_LOG(stored == hw[1], f.log,
                     "partition 1: stored %" PRId64 ", high watermark %"
                     PRId64, stored, hw[1]);
    check_applied(db, f.log, 0, AHEAD, hw[0]);
    check_applied(db, f.log, 1, 0, hw[1]);
    LEDGER_CHECK_LOG(tk_log_count(f.log, HALTED) == 2, f.log,
                     "partition 0 was halted %d times, expected twice",
                     tk_log_count(f.log, HALTED));

    status = tk_terminate(pid, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited with %d", status);
    TK_CHECK(tk_sql_int64(db, "SELECT count(*) FROM exactly.dead_letters")
                 == 0, "dead letters were written");
    PQfinish(db);
    ledger_fixture_stop(&f);
}

/* With an argument (eager or cooperative), runs that case alone. */
int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "eager") == 0)
        run_case("same_offset_eager", ledger_kafka_eager);
    if (argc < 2 || strcmp(argv[1], "cooperative") == 0)
        run_case("same_offset_coop", ledger_kafka_cooperative);
    return 0;
}
