/*
 * A batch sent behind a held one (engine.h, pipelining) whose transaction
 * fails inside, before its COMMIT: the server refuses every statement of
 * the batch behind it (in_failed_sql_transaction) until the held one's
 * ROLLBACK. The batch behind must run again in full, the held one be
 * rolled back (its commit unknown, the stored row read again) and run
 * again, and every message applied exactly once, the stored offsets at
 * each partition's end, nothing dead-lettered.
 *
 * The failure is injected (fault.h, commit_segment: a failing statement
 * before one batch's COMMIT), so this needs the build with fault
 * injection; without it the test reports itself skipped. A backlog over
 * four partitions, every buffered partition flushed in each pass, so that
 * the failing batch is held with another sent behind it: the log must
 * show that it was.
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

#define TOPIC "pipelined-failure"
#define PARTITIONS 4
#define MESSAGES 2000
#define ENTITIES 400
#define SEED 9109

int main(void)
{
    const char *built = getenv("EXACTLY_TEST_FAULTS_BUILT");
    int64_t counts[ENTITIES];
    ledger_fixture f;
    ledger_config c;
    PGconn *db;
    int status;
    char *log;

    if (!built || strcmp(built, "1") != 0)
        tk_skip("needs a build with -DEXACTLY_FAULT_INJECTION=ON");
    ledger_fixture_start(&f, "pipelined_failure", TOPIC, PARTITIONS);
    tk_produce_ids(f.mock->bootstraps, TOPIC, MESSAGES, ENTITIES, PARTITIONS,
                   SEED, counts);
    memset(&c, 0, sizeof c);
    c.max_messages = 50;
    c.max_wait_ms = 1; /* every buffered partition flushed each pass */
    ledger_fixture_config(&f, &c);

    /* Well past the first batches, where every partition has a
     * backlog. */
    setenv("EXACTLY_FAULTS", "commit_segment:12", 1);
    status = ledger_run_to_idle(f.config, 3000, 90000, f.log);
    unsetenv("EXACTLY_FAULTS");
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited with %d", status);

    db = tk_pg_connect(f.conninfo);
    ledger_check_exactly_once(db, f.mock->bootstraps, TOPIC, PARTITIONS,
                              MESSAGES, counts, ENTITIES);
    log = tk_read_file(f.log);
    TK_CHECK(log && strstr(log, "division by zero"),
             "the injected failure did not happen; see %s", f.log);
    TK_CHECK(strstr(log, "batch sent behind a batch that failed"),
             "no batch was sent behind the refused one; see %s", f.log);
    free(log);
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
