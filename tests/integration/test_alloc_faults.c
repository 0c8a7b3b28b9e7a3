/*
 * Allocation failures injected on purpose (lib/fault.h; defects 5 and 6).
 * Runs only in a build with -DEXACTLY_FAULT_INJECTION=ON (scripts/test.sh's
 * sanitizer build); skipped otherwise.
 *
 *   batch_build  building the second batch fails (out of memory) after the
 *                crash guard's statement was queued: nothing queued may
 *                keep a pointer into a returned stack frame (ASan with
 *                detect_stack_use_after_return watches), the batch is
 *                retried and everything is applied exactly once.
 *   fail_record  the handler's first fail_record() cannot allocate: the
 *                record must not vanish (neither applied nor
 *                dead-lettered); the batch fails, is retried, and the
 *                record's messages end in dead_letters, the rest applied.
 *   txn_send_fence  a batch's fence cannot be queued (out of memory): no
 *                statement queued after it may run, or the batch's writes
 *                would commit without its offset and be applied again;
 *                the batch is retried and everything applied exactly once.
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
#define MESSAGES 200
#define ENTITIES 40
#define SEED 606

static void run_case(const char *name, const char *faults, int fail_entity)
{
    char opts[128];
    int64_t counts[ENTITIES];
    ledger_fixture f;
    ledger_config c;
    PGconn *db;
    int status;

    ledger_fixture_start(&f, name, name, PARTITIONS);
    tk_produce_ids(f.mock->bootstraps, f.topic, MESSAGES, ENTITIES,
                   PARTITIONS, SEED, counts);
    memset(&c, 0, sizeof c);
    c.max_messages = 20;
    c.max_wait_ms = 50;
    if (fail_entity) {
        snprintf(opts, sizeof opts, "        fail_on_ids: ['%d']\n",
                 fail_entity);
        c.handler_options_yaml = opts;
    }
    ledger_fixture_config(&f, &c);
    setenv("EXACTLY_FAULTS", faults, 1);
    status = ledger_run_to_idle(f.config, 3000, 90000, f.log);
    unsetenv("EXACTLY_FAULTS");
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited with %d", status);
    db = tk_pg_connect(f.conninfo);
    ledger_check_exactly_once_except(db, f.mock->bootstraps, f.topic,
                                     PARTITIONS, MESSAGES, counts, ENTITIES,
                                     fail_entity);
    PQfinish(db);
    ledger_fixture_stop(&f);
}

/* With an argument (batch_build, fail_record or txn_send_fence), runs
 * that case alone. */
int main(int argc, char **argv)
{
    const char *built = getenv("EXACTLY_TEST_FAULTS_BUILT");
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[512];

    if (!built || strcmp(built, "1") != 0)
        tk_skip("needs a build with -DEXACTLY_FAULT_INJECTION=ON");
    snprintf(opts, sizeof opts, "%s%sdetect_stack_use_after_return=1",
             asan ? asan : "", asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    if (argc < 2 || strcmp(argv[1], "batch_build") == 0)
        run_case("fault_batch_build", "batch_build:2", 0);
    if (argc < 2 || strcmp(argv[1], "fail_record") == 0)
        run_case("fault_fail_record", "fail_record:1",
                 (int)tk_id_for(SEED, 4, ENTITIES));
    if (argc < 2 || strcmp(argv[1], "txn_send_fence") == 0)
        run_case("fault_txn_send_fence", "txn_send_fence:3", 0);
    return 0;
}
