/*
 * A buffer dropped on a fence is never skipped (defect 3).
 *
 * While a worker runs, its partition's offset row loses its position:
 *   null    next_offset is set to NULL;
 *   deleted the row is deleted.
 * Every batch is then refused by the fence without a takeover (same epoch
 * or no row at all). The worker must not drop its buffered messages and
 * carry on fetching past them: either it seeks back to the stored position
 * or it halts the partition loudly. Then an operator puts the row back as
 * it was, more messages arrive, and the worker is restarted: every offset
 * is applied exactly once (nothing between the dropped buffer and the new
 * messages is skipped).
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
#define WAVE 50
#define ENTITIES 20
/* The restarted worker joins the group its predecessor left; the mock
 * makes that join wait about session.timeout.ms - 1 s: keep it short. */
static const char *const kafka_overrides[] = {
    "session.timeout.ms", "3000", "heartbeat.interval.ms", "300", NULL};

static void wait_rows(PGconn *db, int64_t rows, const char *log)
{
    int64_t deadline = tk_now_ms() + 60000;

    while (ledger_rows(db) < rows) {
        LEDGER_CHECK_LOG(tk_now_ms() < deadline, log,
                         "the ledger did not reach %" PRId64 " rows", rows);
        tk_sleep_ms(50);
    }
}

static void add(int64_t *total, const int64_t *more)
{
    int i;

    for (i = 0; i < ENTITIES; i++)
        total[i] += more[i];
}

static void run_case(const char *name, int delete_row)
{
    int64_t counts[ENTITIES] = {0}, more[ENTITIES];
    ledger_fixture f;
    ledger_config c;
    PGconn *db;
    pid_t pid;
    int status;
    int64_t epoch;

    ledger_fixture_start(&f, name, name, PARTITIONS);
    memset(&c, 0, sizeof c);
    c.max_messages = 10;
    c.max_wait_ms = 50;
    c.kafka = kafka_overrides;
    ledger_fixture_config(&f, &c);
    db = tk_pg_connect(f.conninfo);

    pid = ledger_start_worker(f.config, 0, f.log);
    tk_produce_ids(f.mock->bootstraps, f.topic, WAVE, ENTITIES, PARTITIONS,
                   1, more);
    add(counts, more);
    wait_rows(db, WAVE, f.log);
    epoch = tk_sql_int64(db, "SELECT owner_epoch FROM exactly.offsets");

    /* The position goes away while messages keep coming. */
    if (delete_row)
        tk_sql(db, "DELETE FROM exactly.offsets");
    else
        tk_sql(db, "UPDATE exactly.offsets SET next_offset = NULL");
    tk_produce_ids(f.mock->bootstraps, f.topic, WAVE, ENTITIES, PARTITIONS,
                   2, more);
    add(counts, more);
    LEDGER_CHECK_LOG(ledger_wait_log(f.log, "fenced", 1, pid, 60000, &status),
                     f.log, "no batch was refused (status %d)", status);
    tk_sleep_ms(2000);
    TK_CHECK_EQ_INT64(ledger_rows(db), WAVE,
                      "ledger rows while the offset row is broken");

    /* An operator restores the row as it was; more messages arrive. */
    if (delete_row)
        tk_sql(db, "INSERT INTO exactly.offsets (pipeline, topic, partition, "
                   "next_offset, owner_epoch) VALUES ('%s', '%s', 0, %d, %"
                   PRId64 ")", LEDGER_PIPELINE, f.topic, WAVE, epoch);
    else
        tk_sql(db, "UPDATE exactly.offsets SET next_offset = %d", WAVE);
    tk_produce_ids(f.mock->bootstraps, f.topic, WAVE, ENTITIES, PARTITIONS,
                   3, more);
    add(counts, more);
    tk_sleep_ms(3000);
    status = tk_terminate(pid, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited with %d", status);

    status = ledger_run_to_idle(f.config, 3000, 90000, f.log);
    LEDGER_CHECK_LOG(status == 0, f.log, "restarted worker exited with %d",
                     status);
    ledger_check_exactly_once(db, f.mock->bootstraps, f.topic, PARTITIONS,
                              3 * WAVE, counts, ENTITIES);
    PQfinish(db);
    ledger_fixture_stop(&f);
}

/* With an argument (null or deleted), runs that case alone. */
int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "null") == 0)
        run_case("row_null", 0);
    if (argc < 2 || strcmp(argv[1], "deleted") == 0)
        run_case("row_deleted", 1);
    return 0;
}
