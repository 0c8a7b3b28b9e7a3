/*
 * A relay in mode transactional that cannot record a committed batch's
 * outcome because it is out of memory (the fault site
 * relay_outcome_collect: the arrays of the batch's ids cannot be built)
 * treats it as any other failed mark (relay.h, invariant 6): it drops its
 * session, and when it has the outbox lock again it applies the last
 * committed position before reading a batch. So the batch's rows, whose
 * records are committed, are marked and not sent again: every row once
 * among the committed records, the position applied once.
 *
 * Runs only in a build with -DEXACTLY_FAULT_INJECTION=ON; skipped
 * otherwise.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "relay_kit.h"
#include "testkit.h"

#define TOPIC "relay-oom"
#define POSITIONS "relay-oom-positions"
#define N_PARTITIONS 2
#define ROWS 40

int main(void)
{
    const char *faults_built = getenv("EXACTLY_TEST_FAULTS_BUILT");
    relay_fixture f;
    size_t n;
    int status;

    if (!faults_built || strcmp(faults_built, "1") != 0)
        tk_skip("the relay_outcome_collect fault site needs a build with "
                "EXACTLY_FAULT_INJECTION");
    relay_fixture_start_txn(&f, "relay_oom", "oom", TOPIC, N_PARTITIONS,
                            POSITIONS, NULL);
    relay_insert_rows(f.db, ROWS);

    /* The first batch (all the rows) is committed in Kafka; recording
     * its outcome in PostgreSQL then runs out of memory. */
    setenv("EXACTLY_FAULTS", "relay_outcome_collect:1", 1);
    status = relay_run_to_idle(f.config, 1000, 30000, f.log);
    unsetenv("EXACTLY_FAULTS");
    LEDGER_CHECK_LOG(status == 0, f.log, "relay exit status %d", status);

    n = relay_check_exactly_once(f.db, f.bootstraps, TOPIC, N_PARTITIONS,
                                 NULL, "after the failed mark");
    TK_CHECK_EQ_INT64((int64_t)n, ROWS, "committed records");
    LEDGER_CHECK_LOG(ledger_log_count(f.log, "position applied") >= 1, f.log,
                     "the committed position was not applied after the "
                     "failed mark");
    LEDGER_CHECK_LOG(tk_file_contains(f.log, "out of memory"), f.log,
                     "the failed mark was not logged");
    relay_fixture_stop(&f);
    return 0;
}
