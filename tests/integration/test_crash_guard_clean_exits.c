/*
 * The crash guard counts only deaths inside apply() (defect 24).
 *
 * A batch that keeps failing for a reason that is not a crash (here a lock
 * the test holds on the ledger, so every attempt ends in lock_timeout) and
 * a worker that is stopped cleanly and started again, several times: none
 * of those lives died in the handler, so the guard must not isolate the
 * batch or dead-letter its first record as "killed the worker", whatever
 * max_crashes is. Once the lock is gone, everything is applied exactly
 * once and nothing is dead-lettered.
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

#define PARTITIONS 1
#define MESSAGES 30
#define ENTITIES 10
#define LIVES 4
/* Each life joins the group its predecessor left; the mock makes that
 * join wait about session.timeout.ms - 1 s, so keep the session short. */
static const char *const kafka_overrides[] = {
    "session.timeout.ms", "3000", "heartbeat.interval.ms", "300", NULL};

int main(void)
{
    int64_t counts[ENTITIES];
    ledger_fixture f;
    ledger_config c;
    PGconn *db, *locker;
    int life, status;

    ledger_fixture_start(&f, "guard_clean", "guard-clean", PARTITIONS);
    tk_produce_ids(f.mock->bootstraps, f.topic, MESSAGES, ENTITIES,
                   PARTITIONS, 24, counts);
    memset(&c, 0, sizeof c);
    c.max_messages = 10;
    c.max_wait_ms = 50;
    c.kafka = kafka_overrides;
    c.max_crashes = 1;
    c.lock_timeout_ms = 300;
    ledger_fixture_config(&f, &c);

    locker = tk_pg_connect(f.conninfo);
    tk_sql(locker, "BEGIN; LOCK TABLE ledger IN SHARE MODE");
    for (life = 1; life <= LIVES; life++) {
        pid_t pid = ledger_start_worker(f.config, 0, f.log);
        /* This life's own failed attempt: an earlier life may have logged
         * more than one before it stopped, so lines are matched by pid. */
        char needle[96];

        snprintf(needle, sizeof needle,
                 "pid=%d pipeline=ledger worker=0 msg=\"batch rolled back\"",
                 (int)pid);
        LEDGER_CHECK_LOG(ledger_wait_log(f.log, needle, 1, pid, 60000,
                                         &status),
                         f.log, "life %d: no failed attempt (status %d)",
                         life, status);
        status = tk_terminate(pid, 30000);
        LEDGER_CHECK_LOG(status == 0, f.log, "life %d exited with %d", life,
                         status);
    }
    tk_sql(locker, "COMMIT");
    PQfinish(locker);

    status = ledger_run_to_idle(f.config, 3000, 90000, f.log);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited with %d", status);
    db = tk_pg_connect(f.conninfo);
    ledger_check_exactly_once(db, f.mock->bootstraps, f.topic, PARTITIONS,
                              MESSAGES, counts, ENTITIES);
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
