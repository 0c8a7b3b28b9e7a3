/*
 * mode: transactional, an outbox emptied with TRUNCATE ... RESTART
 * IDENTITY between a Kafka commit and the mark (relay.h, invariant 6):
 * the last committed position names row ids that now belong to other
 * rows, which were never sent. Applying that position must not mark them:
 *   - a relay commits a batch of ROWS rows and is killed before it marks
 *     them (the relay_txn_committed fault stalls it there);
 *   - the outbox is truncated, its ids restarted, and ROWS new rows are
 *     written (ids 1..ROWS again);
 *   - the next relay applies the position, then publishes: every new row
 *     must be on the topic, with its own event-id, before it is marked.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "relay_kit.h"
#include "testkit.h"

#define TOPIC "relay-reused"
#define POSITIONS "relay-reused-positions"
#define ROWS 10

int main(void)
{
    char dir[256], conninfo[1024], config[512], log[512], mlog[512];
    const char *faults_built = getenv("EXACTLY_TEST_FAULTS_BUILT");
    const char *bs;
    tk_mock *mock;
    relay_rec *recs;
    size_t n, i;
    PGconn *q;
    pid_t relay;
    int status;

    if (!faults_built || strcmp(faults_built, "1") != 0) {
        tk_note("skipped: the relay_txn_committed fault site needs a build "
                "with EXACTLY_FAULT_INJECTION");
        return 77;
    }
    tk_tmpdir("relay-reused", dir, sizeof(dir));
    snprintf(config, sizeof(config), "%s/relay.yaml", dir);
    snprintf(log, sizeof(log), "%s/relay.log", dir);
    snprintf(mlog, sizeof(mlog), "%s/migrate.log", dir);
    tk_pg_create_db("relay_reused", conninfo, sizeof(conninfo));
    mock = tk_mock_start(1);
    bs = tk_mock_bootstraps(mock);
    tk_mock_create_topic(mock, TOPIC, 1);
    tk_mock_create_topic(mock, POSITIONS, 1);
    tk_write_file(config,
                  "kafka:\n  bootstrap.servers: \"%s\"\n"
                  "postgres:\n  conninfo: \"%s\"\n"
                  "relays:\n  reused:\n    topic: " TOPIC "\n"
                  "    mode: transactional\n"
                  "    position_topic: " POSITIONS "\n"
                  "    batch_size: 50\n    poll_interval_ms: 20\n"
                  "    cleanup: mark\n",
                  bs, conninfo);
    ledger_migrate(config, mlog);
    q = tk_pg_connect(conninfo);

    /* A batch committed in Kafka, its rows not marked. */
    tk_sql(q, "INSERT INTO exactly.outbox (key, value) SELECT "
              "convert_to(g::text, 'UTF8'), 'old' FROM generate_series(1, "
              "%d) g", ROWS);
    setenv("EXACTLY_FAULTS", "relay_txn_committed:1", 1);
    relay = relay_start(config, NULL, log);
    unsetenv("EXACTLY_FAULTS");
    LEDGER_CHECK_LOG(ledger_wait_log(log, "fault: paused", 1, relay, 20000,
                                     &status),
                     log, "the relay never reached the fault");
    tk_kill(relay, SIGKILL);
    status = tk_wait(relay, 10000);
    TK_CHECK(status == 128 + SIGKILL, "relay ended with status %d", status);

    /* The same ids, other rows. */
    tk_sql(q, "TRUNCATE exactly.outbox RESTART IDENTITY");
    tk_sql(q, "INSERT INTO exactly.outbox (key, value) SELECT "
              "convert_to(g::text, 'UTF8'), 'new' FROM generate_series(1, "
              "%d) g", ROWS);
    status = relay_run_to_idle(config, 300, 30000, log);
    LEDGER_CHECK_LOG(status == 0, log, "relay exit status %d", status);

    recs = relay_read_topic(bs, TOPIC, 1, &n);
    tk_sql(q, "CREATE TABLE seen (eid text)");
    for (i = 0; i < n; i++)
        tk_sql(q, "INSERT INTO seen VALUES ('%s')", recs[i].event_id);
    free(recs);
    TK_CHECK_EQ_INT64(tk_sql_int64(q, "SELECT count(*) FROM exactly.outbox "
                                      "WHERE published_at IS NULL"),
                      0, "rows left pending");
    LEDGER_CHECK_LOG(tk_sql_int64(q, "SELECT count(*) FROM exactly.outbox o "
                                     "WHERE NOT EXISTS (SELECT 1 FROM seen s "
                                     "WHERE s.eid = o.event_id::text)") == 0,
                     log, "%lld rows marked published that are not on "
                     TOPIC " (marked by the position of the rows their ids "
                     "belonged to)",
                     (long long)tk_sql_int64(q, "SELECT count(*) FROM "
                                                "exactly.outbox o WHERE NOT "
                                                "EXISTS (SELECT 1 FROM seen s "
                                                "WHERE s.eid = "
                                                "o.event_id::text)"));
    tk_note("the rows written after the outbox was truncated were all sent");
    PQfinish(q);
    tk_mock_stop(mock);
    ledger_cleanup_dir(dir);
    return 0;
}
