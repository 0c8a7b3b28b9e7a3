/*
 * Workers killed while idle never get a good message dead-lettered.
 *
 * The crash guard counts an owner that let go of a partition without a
 * release (SIGKILL, a crash) as one death at the partition's next offset,
 * whether it died inside apply() or idle (lib/engine/guard.c). With
 * max_crashes 1, LIVES workers are SIGKILLed while idle at the end of the
 * partition (everything applied, nothing buffered), each after its claim:
 * every claim after the first counts one. Then more messages arrive: the
 * guard isolates the batch at that offset (applied one message at a time,
 * "isolating records" in the log), and none of those messages kills
 * anything, so none is dead-lettered: everything is applied exactly once.
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

#define PARTITIONS 1
#define WAVE 20
#define ENTITIES 10
#define LIVES 2
/* A killed member stays in the group until its session times out, and the
 * next life's join waits for that: keep it short. */
static const char *const kafka_overrides[] = {
    "session.timeout.ms", "3000", "heartbeat.interval.ms", "300", NULL};

int main(void)
{
    int64_t counts[ENTITIES], wave2[ENTITIES];
    char log[600];
    ledger_fixture f;
    ledger_config c;
    PGconn *db;
    int life, i, status;

    ledger_fixture_start(&f, "guard_idle", "guard-idle", PARTITIONS);
    tk_produce_ids(f.mock->bootstraps, f.topic, WAVE, ENTITIES, PARTITIONS,
                   31, counts);
    memset(&c, 0, sizeof c);
    c.max_messages = 5;
    c.max_wait_ms = 20;
    c.kafka = kafka_overrides;
    c.max_crashes = 1;
    ledger_fixture_config(&f, &c);

    db = tk_pg_connect(f.conninfo);
    for (life = 1; life <= LIVES; life++) {
        int64_t deadline = tk_now_ms() + 60000;
        pid_t pid;

        snprintf(log, sizeof log, "%s/life-%d.log", f.dir, life);
        pid = ledger_start_worker(f.config, 0, log);
        LEDGER_CHECK_LOG(ledger_wait_log(log, "partition claimed", 1, pid,
                                         60000, &status),
                         log, "life %d: no claim (status %d)", life, status);
        /* Idle: every message applied, nothing left to fetch. */
        while (tk_sql_int64(db, "SELECT coalesce(max(next_offset), 0) FROM "
                                "exactly.offsets") < WAVE) {
            LEDGER_CHECK_LOG(tk_now_ms() < deadline, log,
                             "life %d: the first wave is not applied after "
                             "60 s", life);
            tk_sleep_ms(20);
        }
        tk_sleep_ms(300);
        LEDGER_CHECK_LOG(tk_kill(pid, SIGKILL) == 0, log,
                         "life %d exited before its kill", life);
        status = tk_wait(pid, 30000);
        LEDGER_CHECK_LOG(status == 128 + SIGKILL, log,
                         "life %d: exit status %d, expected SIGKILL", life,
                         status);
    }

    tk_produce_ids(f.mock->bootstraps, f.topic, WAVE, ENTITIES, PARTITIONS,
                   32, wave2);
    for (i = 0; i < ENTITIES; i++)
        counts[i] += wave2[i];
    status = ledger_run_to_idle(f.config, 3000, 90000, f.log);
    LEDGER_CHECK_LOG(status == 0, f.log, "last worker exited with %d",
                     status);
    /* The kills were counted: the batch at their offset was isolated. */
    LEDGER_CHECK_LOG(ledger_log_count(f.log, "isolating records") >= 1,
                     f.log, "the last worker did not isolate the batch at "
                     "offset %d after %d kills with max_crashes 1", WAVE,
                     LIVES);
    /* ... and verified one message at a time: none of them is poison. */
    ledger_check_exactly_once(db, f.mock->bootstraps, f.topic, PARTITIONS,
                              2 * WAVE, counts, ENTITIES);
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
