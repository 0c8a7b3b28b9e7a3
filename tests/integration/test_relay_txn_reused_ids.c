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
    const char *faults_built = getenv("EXACTLY_TEST_FAULTS_BUILT");
    relay_fixture f;
    PGconn *q;
    pid_t relay;
    int status;

    if (!faults_built || strcmp(faults_built, "1") != 0) {
        tk_note("skipped: the relay_txn_committed fault site needs a build "
                "with EXACTLY_FAULT_INJECTION");
        return 77;
    }
    relay_fixture_start(&f, "relay_reused", NULL);
    q = f.db;
    tk_mock_create_topic(f.mock, TOPIC, 1);
    tk_mock_create_topic(f.mock, POSITIONS, 1);
    relay_fixture_config(&f, &(relay_config){.name = "reused",
                                             .topic = TOPIC,
                                             .transactional = 1,
                                             .position_topic = POSITIONS,
                                             .batch_size = 50});

    /* A batch committed in Kafka, its rows not marked. */
    tk_sql(q, "INSERT INTO exactly.outbox (key, value) SELECT "
              "convert_to(g::text, 'UTF8'), 'old' FROM generate_series(1, "
              "%d) g", ROWS);
    setenv("EXACTLY_FAULTS", "relay_txn_committed:1", 1);
    relay = relay_start(f.config, NULL, f.log);
    unsetenv("EXACTLY_FAULTS");
    LEDGER_CHECK_LOG(ledger_wait_log(f.log, "fault: paused", 1, relay, 20000,
                                     &status),
                     f.log, "the relay never reached the fault");
    tk_kill(relay, SIGKILL);
    status = tk_wait(relay, 10000);
    TK_CHECK(status == 128 + SIGKILL, "relay ended with status %d", status);

    /* The same ids, other rows. */
    tk_sql(q, "TRUNCATE exactly.outbox RESTART IDENTITY");
    tk_sql(q, "INSERT INTO exactly.outbox (key, value) SELECT "
              "convert_to(g::text, 'UTF8'), 'new' FROM generate_series(1, "
              "%d) g", ROWS);
    status = relay_run_to_idle(f.config, 300, 30000, f.log);
    LEDGER_CHECK_LOG(status == 0, f.log, "relay exit status %d", status);

    relay_load_seen(q, f.bootstraps, TOPIC, 1, NULL, NULL);
    TK_CHECK_EQ_INT64(tk_sql_int64(q, "SELECT count(*) FROM exactly.outbox "
                                      "WHERE published_at IS NULL"),
                      0, "rows left pending");
    LEDGER_CHECK_LOG(tk_sql_int64(q, "SELECT count(*) FROM exactly.outbox o "
                                     "WHERE NOT EXISTS (SELECT 1 FROM seen s "
                                     "WHERE s.eid = o.event_id::text)") == 0,
                     f.log, "%lld rows marked published that are not on "
                     TOPIC " (marked by the position of the rows their ids "
                     "belonged to)",
                     (long long)tk_sql_int64(q, "SELECT count(*) FROM "
                                                "exactly.outbox o WHERE NOT "
                                                "EXISTS (SELECT 1 FROM seen s "
                                                "WHERE s.eid = "
                                                "o.event_id::text)"));
    tk_note("the rows written after the outbox was truncated were all sent");
    relay_fixture_stop(&f);
    return 0;
}
