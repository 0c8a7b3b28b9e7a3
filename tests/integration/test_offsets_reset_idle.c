/*
 * A running worker follows `exactly offsets reset --force` on a partition
 * where nothing arrives: no batch of its own meets the offset
 * compare-and-set there, so it must notice the moved row by reading it
 * (1). Part 2 is a regression check of a reset forward under a worker
 * that then meets messages it had buffered: those are refused by the
 * compare-and-set as before the idle comparison existed, so it passes
 * without it; test_offsets_reset_idle_forward.c shows the forward case
 * on an idle partition.
 *
 *   1. back: a worker applies a wave on 2 partitions and goes idle; the
 *      ledger rows (and counters) of partition 0 from K are removed, as
 *      a target to repair, and partition 0 is reset to K. Within
 *      FOLLOW_MS, with no new message, its stored offset must be back at
 *      the partition's end: the worker read the moved row, went back to
 *      K and applied K..end again; its log says it followed the moved
 *      row, and the run is exactly once.
 *   2. forward: the worker is stopped (SIGSTOP), messages are produced
 *      to partition 1 and the partition is reset to its end past them,
 *      the worker goes on (SIGCONT); one message produced after them is
 *      applied, and none of the skipped ones is.
 *
 * EXACTLY_TEST_ONLY=back or =forward runs one of them.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "offsets-reset-idle"
#define PARTITIONS 2
#define WAVE 200
#define K 30
#define K_TEXT "30"
#define SKIPPED 10
/* The bound on following a reset on an idle partition. */
#define FOLLOW_MS 10000
#define APPLY_TIMEOUT_MS 60000
#define FOLLOWED "stored offset moved; following it"

/* `exactly offsets reset --force` of partition p, how (a mode and its
 * argument, or a mode and NULL); fails the test unless it exits 0. */
static void reset(const ledger_fixture *f, const char *log, const char *p,
                  const char *mode, const char *arg)
{
    int status;

    if (arg)
        status = tk_exactly(log, 60000, "offsets", "reset", "-c", f->config,
                            "--pipeline", LEDGER_PIPELINE, "--topic", TOPIC,
                            "--partition", p, mode, arg, "--force", NULL);
    else
        status = tk_exactly(log, 60000, "offsets", "reset", "-c", f->config,
                            "--pipeline", LEDGER_PIPELINE, "--topic", TOPIC,
                            "--partition", p, mode, "--force", NULL);
    LEDGER_CHECK_LOG(status == 0, log, "the reset exited %d", status);
}

int main(void)
{
    int64_t counts[LEDGER_ACCOUNTS] = {0};
    int64_t hw[PARTITIONS], stored, again, t0;
    int parts[SKIPPED + 1], ids[SKIPPED + 1];
    char reset_log[600];
    ledger_fixture f;
    ledger_config c;
    ledger_summary sum;
    PGconn *db;
    pid_t pid;
    int status, p, i;

    ledger_fixture_start(&f, "offsets_reset_idle", TOPIC, PARTITIONS);
    memset(&c, 0, sizeof c);
    c.max_messages = 50;
    c.max_wait_ms = 20;
    ledger_fixture_config(&f, &c);
    snprintf(reset_log, sizeof reset_log, "%s/reset.log", f.dir);
    db = tk_pg_connect(f.conninfo);

    ledger_produce_wave(&f, WAVE, 1, counts);
    ledger_high_watermarks(f.mock->bootstraps, TOPIC, PARTITIONS, hw);
    pid = ledger_start_worker(f.config, 0, f.log);
    tk_wait_claims(f.log, 0, PARTITIONS, pid, APPLY_TIMEOUT_MS);
    for (p = 0; p < PARTITIONS; p++) {
        stored = ledger_wait_stored(db, p, hw[p], APPLY_TIMEOUT_MS);
        LEDGER_CHECK_LOG(stored == hw[p], f.log,
                         "partition %d not applied: stored %" PRId64
                         ", high watermark %" PRId64, p, stored, hw[p]);
    }

    /* 1. Back: nothing arrives after the reset. */
    again = 0;
    if (tk_wanted("back")) {
        again = ledger_forget_from(db, TOPIC, 0, K);
        TK_CHECK_EQ_INT64(again, hw[0] - K, "ledger rows removed");
        reset(&f, reset_log, "0", "--to-offset", K_TEXT);
        stored = tk_sql_int64(db, "SELECT next_offset FROM exactly.offsets"
                                  " WHERE partition = 0");
        TK_CHECK_EQ_INT64(stored, K, "stored offset right after the reset");
        t0 = tk_now_ms();
        stored = ledger_wait_stored(db, 0, hw[0], FOLLOW_MS);
        LEDGER_CHECK_LOG(stored == hw[0], f.log,
                         "an idle worker did not follow a reset back on its "
                         "partition: stored %" PRId64 ", partition end "
                         "%" PRId64 " after %d ms",
                         stored, hw[0], FOLLOW_MS);
        tk_note("followed the reset back and applied again within %" PRId64
                " ms", tk_now_ms() - t0);
        LEDGER_CHECK_LOG(tk_log_lines_with(f.log, FOLLOWED, NULL) >= 1, f.log,
                         "the worker did not log \"" FOLLOWED "\"");
        ledger_check_exactly_once(db, f.mock->bootstraps, TOPIC, PARTITIONS,
                                  WAVE, counts, LEDGER_ACCOUNTS);
    }

    /* 2. Forward, past messages the worker did not take yet. */
    if (!tk_wanted("forward"))
        goto stop;
    for (i = 0; i <= SKIPPED; i++) {
        parts[i] = 1;
        ids[i] = i + 1;
    }
    TK_CHECK(tk_kill(pid, SIGSTOP) == 0, "cannot stop the worker");
    tk_produce_int_keys(f.mock->bootstraps, TOPIC, parts, ids, SKIPPED);
    reset(&f, reset_log, "1", "--to-latest", NULL);
    TK_CHECK(tk_kill(pid, SIGCONT) == 0, "cannot continue the worker");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT next_offset FROM "
                                       "exactly.offsets WHERE partition = 1"),
                      hw[1] + SKIPPED, "stored offset after the reset forward");
    tk_produce_int_keys(f.mock->bootstraps, TOPIC, parts + SKIPPED,
                        ids + SKIPPED, 1);
    stored = ledger_wait_stored(db, 1, hw[1] + SKIPPED + 1, APPLY_TIMEOUT_MS);
    LEDGER_CHECK_LOG(stored == hw[1] + SKIPPED + 1, f.log,
                     "the message after the reset forward was not applied: "
                     "stored %" PRId64 ", expected %" PRId64,
                     stored, hw[1] + SKIPPED + 1);
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM ledger WHERE "
                                       "partition = 1 AND \"offset\" >= %"
                                       PRId64, hw[1]),
                      1, "ledger rows of partition 1 past the reset forward");

stop:
    status = tk_terminate(pid, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited %d", status);
    LEDGER_CHECK_LOG(ledger_read_summary(f.log, &sum), f.log, "no summary");
    TK_CHECK_EQ_INT64(sum.applied,
                      WAVE + again + (tk_wanted("forward") ? 1 : 0),
                      "messages the worker applied");
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
