/*
 * What apply()'s return code means (defect 9; README "Return codes of
 * apply()").
 *
 *   retry  apply() returns EXACTLY_ERETRY for every batch holding entity R:
 *          the batch is rolled back and tried again later, as a whole;
 *          nothing is dead-lettered, R's partition does not move while the
 *          handler asks to retry, the other partition completes. Once the
 *          handler stops asking (a second run without the option), every
 *          message is applied exactly once.
 *   fatal  apply() returns EXACTLY_EFATAL for a batch holding entity F: the
 *          worker rolls the batch back and exits with status 3 (the
 *          documented "stopped by its handler"); nothing is dead-lettered
 *          and F's partition's stored offset has not passed F's first
 *          message. Under `exactly run` the supervisor does not restart
 *          that worker, and run itself exits 3 once its workers are done.
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

#define PARTITIONS 2
#define MESSAGES 200
#define ENTITIES 50
#define SEED 9009
/* retry restarts the worker in the group its first run left; the mock
 * makes that join wait about session.timeout.ms - 1 s: keep it short. */
static const char *const kafka_overrides[] = {
    "session.timeout.ms", "3000", "heartbeat.interval.ms", "300", NULL};

/* The lowest offset of partition p holding entity id (-1: none). */
static int64_t first_offset_of(int id, int p)
{
    int64_t next[PARTITIONS] = {0};
    size_t i;

    for (i = 0; i < MESSAGES; i++) {
        int part = (int)(i % PARTITIONS);
        int64_t off = next[part]++;
        if (part == p && tk_id_for(SEED, i, ENTITIES) == id)
            return off;
    }
    return -1;
}

static void case_retry(void)
{
    char opts[256];
    int64_t counts[ENTITIES];
    ledger_fixture f;
    ledger_config c;
    PGconn *db;
    pid_t pid;
    int id, part, status;
    int64_t first, stored;

    ledger_fixture_start(&f, "rc_retry", "rc-retry", PARTITIONS);
    tk_produce_ids(f.mock->bootstraps, f.topic, MESSAGES, ENTITIES,
                   PARTITIONS, SEED, counts);
    /* Message 0 is on partition 0. */
    id = (int)tk_id_for(SEED, 0, ENTITIES);
    part = 0;
    first = first_offset_of(id, part);
    snprintf(opts, sizeof opts,
             "        return_on_id: '%d'\n"
             "        return_code: %d\n"
             "        return_times: 0\n",
             id, (int)EXACTLY_ERETRY);
    memset(&c, 0, sizeof c);
    c.max_messages = 20;
    c.max_wait_ms = 50;
    c.kafka = kafka_overrides;
    c.handler_options_yaml = opts;
    ledger_fixture_config(&f, &c);

    pid = ledger_start_worker(f.config, 0, f.log);
    /* Several retries of the same batch, then look. */
    LEDGER_CHECK_LOG(ledger_wait_log(f.log, "returning -1 on purpose", 4, pid,
                                     60000, &status),
                     f.log, "the handler was not asked again (status %d)",
                     status);
    db = tk_pg_connect(f.conninfo);
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                       "exactly.dead_letters"),
                      0, "dead letters while the handler asks to retry");
    stored = tk_sql_int64(db, "SELECT coalesce(max(next_offset), 0) FROM "
                              "exactly.offsets WHERE partition = %d", part);
    TK_CHECK(stored <= first,
             "partition %d moved to %" PRId64 " past offset %" PRId64
             " while its handler asked to retry", part, stored, first);
    status = tk_terminate(pid, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited with %d on SIGTERM",
                     status);

    /* The handler recovers. */
    c.handler_options_yaml = NULL;
    ledger_write_config(f.config, &c);
    status = ledger_run_to_idle(f.config, 3000, 90000, f.log);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited with %d", status);
    ledger_check_exactly_once(db, f.mock->bootstraps, f.topic, PARTITIONS,
                              MESSAGES, counts, ENTITIES);
    PQfinish(db);
    ledger_fixture_stop(&f);
}

static void case_fatal(int supervised)
{
    char opts[256];
    int64_t counts[ENTITIES];
    ledger_fixture f;
    ledger_config c;
    PGconn *db;
    int id, status;
    int64_t first, stored;

    ledger_fixture_start(&f, supervised ? "rc_fatal_run" : "rc_fatal",
                         "rc-fatal", PARTITIONS);
    tk_produce_ids(f.mock->bootstraps, f.topic, MESSAGES, ENTITIES,
                   PARTITIONS, SEED, counts);
    id = (int)tk_id_for(SEED, 1, ENTITIES); /* message 1: partition 1 */
    first = first_offset_of(id, 1);
    snprintf(opts, sizeof opts,
             "        return_on_id: '%d'\n"
             "        return_code: %d\n",
             id, -11 /* EXACTLY_EFATAL */);
    memset(&c, 0, sizeof c);
    c.max_messages = 20;
    c.max_wait_ms = 50;
    c.kafka = kafka_overrides;
    c.handler_options_yaml = opts;
    ledger_fixture_config(&f, &c);

    if (supervised) {
        char *argv[] = {(char *)ledger_exactly_bin(), "run", "-c", f.config,
                        NULL};
        pid_t pid = tk_spawn(argv, f.log);
        status = tk_wait(pid, 90000);
        if (status == -1)
            tk_terminate(pid, 5000);
        LEDGER_CHECK_LOG(status == 3, f.log,
                         "exactly run exited with %d, expected 3 (its only "
                         "worker was stopped by its handler)", status);
        LEDGER_CHECK_LOG(ledger_log_count(f.log, "not restarted") == 1 &&
                             ledger_log_count(f.log, "msg=\"started\"") == 1,
                         f.log, "the stopped worker was restarted");
    } else {
        status = ledger_run_to_idle(f.config, 3000, 90000, f.log);
        LEDGER_CHECK_LOG(status == 3, f.log,
                         "worker exited with %d, expected 3 (stopped by its "
                         "handler)", status);
    }
    db = tk_pg_connect(f.conninfo);
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                       "exactly.dead_letters"),
                      0, "dead letters after a fatal handler error");
    stored = tk_sql_int64(db, "SELECT coalesce(max(next_offset), 0) FROM "
                              "exactly.offsets WHERE partition = 1");
    TK_CHECK(stored <= first,
             "partition 1 stored %" PRId64 ", past offset %" PRId64
             " whose batch the handler refused", stored, first);
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM ledger WHERE "
                                       "entity_id = '%d'", id),
                      0, "ledger rows of the refused entity");
    PQfinish(db);
    ledger_fixture_stop(&f);
}

/* With an argument ("retry", "fatal" or "fatal_run"), runs that case
 * alone. */
int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "retry") == 0)
        case_retry();
    if (argc < 2 || strcmp(argv[1], "fatal") == 0)
        case_fatal(0);
    if (argc < 2 || strcmp(argv[1], "fatal_run") == 0)
        case_fatal(1);
    return 0;
}
