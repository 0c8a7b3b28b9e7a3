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
    char dir[256], conninfo[1024], config[512], log[512], mlog[512];
    const char *faults_built = getenv("EXACTLY_TEST_FAULTS_BUILT");
    const char *bs;
    relay_rec *recs;
    tk_mock *mock;
    PGconn *db;
    size_t n, i;
    int status;

    if (!faults_built || strcmp(faults_built, "1") != 0)
        tk_skip("the relay_outcome_collect fault site needs a build with "
                "EXACTLY_FAULT_INJECTION");
    tk_tmpdir("relay-oom", dir, sizeof(dir));
    snprintf(config, sizeof(config), "%s/relay.yaml", dir);
    snprintf(log, sizeof(log), "%s/relay.log", dir);
    snprintf(mlog, sizeof(mlog), "%s/migrate.log", dir);
    tk_pg_create_db("relay_oom", conninfo, sizeof(conninfo));
    mock = tk_mock_start(1);
    bs = tk_mock_bootstraps(mock);
    tk_mock_create_topic(mock, TOPIC, N_PARTITIONS);
    tk_mock_create_topic(mock, POSITIONS, 1);
    tk_write_file(config,
                  "kafka:\n  bootstrap.servers: \"%s\"\n"
                  "postgres:\n  conninfo: \"%s\"\n"
                  "relays:\n  oom:\n    topic: " TOPIC "\n"
                  "    mode: transactional\n"
                  "    position_topic: " POSITIONS "\n"
                  "    batch_size: 50\n    poll_interval_ms: 20\n"
                  "    cleanup: mark\n"
                  "    kafka: {linger.ms: 5}\n",
                  bs, conninfo);
    ledger_migrate(config, mlog);
    db = tk_pg_connect(conninfo);
    tk_sql(db, "INSERT INTO exactly.outbox (key, value) SELECT "
               "convert_to(g::text, 'UTF8'), 'v' FROM generate_series(1, %d) "
               "g", ROWS);

    /* The first batch (all the rows) is committed in Kafka; recording
     * its outcome in PostgreSQL then runs out of memory. */
    setenv("EXACTLY_FAULTS", "relay_outcome_collect:1", 1);
    status = relay_run_to_idle(config, 1000, 30000, log);
    unsetenv("EXACTLY_FAULTS");
    LEDGER_CHECK_LOG(status == 0, log, "relay exit status %d", status);

    recs = relay_read_topic(bs, TOPIC, N_PARTITIONS, &n);
    tk_sql(db, "CREATE TABLE seen (eid text)");
    for (i = 0; i < n; i++) {
        TK_CHECK(recs[i].n_event_ids == 1 &&
                     strspn(recs[i].event_id, "0123456789abcdef-") ==
                         strlen(recs[i].event_id),
                 "record %d/%lld without a single event-id",
                 recs[i].partition, (long long)recs[i].offset);
        tk_sql(db, "INSERT INTO seen VALUES ('%s')", recs[i].event_id);
    }
    free(recs);
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM exactly.outbox "
                                       "WHERE published_at IS NULL OR "
                                       "dead_reason IS NOT NULL"),
                      0, "rows pending or dead-lettered");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM exactly.outbox "
                                       "o WHERE (SELECT count(*) FROM seen s "
                                       "WHERE s.eid = o.event_id::text) "
                                       "<> 1"),
                      0, "rows not exactly once among the committed records");
    TK_CHECK_EQ_INT64((int64_t)n, ROWS, "committed records");
    LEDGER_CHECK_LOG(ledger_log_count(log, "position applied") >= 1, log,
                     "the committed position was not applied after the "
                     "failed mark");
    LEDGER_CHECK_LOG(tk_file_contains(log, "out of memory"), log,
                     "the failed mark was not logged");
    tk_note("%zu committed records for %d rows", n, ROWS);
    PQfinish(db);
    tk_mock_stop(mock);
    ledger_cleanup_dir(dir);
    return 0;
}
