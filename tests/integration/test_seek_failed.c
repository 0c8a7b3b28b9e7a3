/*
 * test_seek_failed.c - a seek the consumer does not make skips nothing.
 *
 * A worker applies offsets 0..99 of one partition. Then, as after a
 * failover to a standby that lacked the last commits, one transaction
 * moves the stored offset back to 50 and removes what 50..99 wrote. The
 * next batch (offsets 100..) is refused by the offset compare-and-set and
 * the worker follows the row back: it seeks to 50, and with
 * EXACTLY_FAULTS=kafka_seek:1 that seek fails. The worker must not go on
 * from where its consumer was: within 30 s the stored offset reaches the
 * partition's end, the ledger holds a row for every offset, and the
 * ledger check holds (every offset applied once).
 *
 * Needs a fault-injection build (EXACTLY_TEST_FAULTS_BUILT=1); skipped
 * otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define SEED 5

int main(void)
{
    static int64_t counts[LEDGER_ACCOUNTS];
    const char *faults_built = getenv("EXACTLY_TEST_FAULTS_BUILT");
    ledger_fixture f;
    ledger_config cfg;
    PGconn *db;
    pid_t w;
    int64_t stored;
    int status;

    if (!faults_built || strcmp(faults_built, "1") != 0)
        tk_skip("the kafka_seek fault site needs a build with "
                "EXACTLY_FAULT_INJECTION");
    ledger_fixture_start(&f, "seek_failed", "seek_failed", 1);
    memset(&cfg, 0, sizeof cfg);
    cfg.max_messages = 100;
    cfg.max_wait_ms = 20;
    cfg.kafka = ledger_short_session;
    ledger_fixture_config(&f, &cfg);
    db = tk_pg_connect(f.conninfo);

    setenv("EXACTLY_FAULTS", "kafka_seek:1", 1);
    w = tk_worker_start(f.config, 0, f.log, NULL);
    unsetenv("EXACTLY_FAULTS");
    tk_wait_claims(f.log, 0, 1, w, 30000);
    ledger_produce_wave(&f, 100, SEED, counts);
    LEDGER_CHECK_LOG(tk_sql_wait_int64(db, 100, 30000, "SELECT coalesce(sum("
                                       "next_offset), 0) FROM exactly.offsets")
                         == 100,
                     f.log, "the first 100 messages were not applied");

    /* The commits of 50..99 lost, as a failover to a lagging standby
     * loses them: their rows, their counts and the offset together. */
    tk_sql(db,
           "BEGIN; "
           "WITH d AS (DELETE FROM ledger WHERE \"offset\" >= 50 RETURNING "
           "entity_id), k AS (SELECT entity_id, count(*) AS n FROM d GROUP "
           "BY entity_id) UPDATE ledger_counters c SET n = c.n - k.n FROM k "
           "WHERE c.entity_id = k.entity_id; "
           "DELETE FROM ledger_counters WHERE n = 0; "
           "UPDATE exactly.offsets SET next_offset = 50; "
           "COMMIT");
    ledger_produce_wave(&f, 100, SEED + 1, counts);
    stored = tk_sql_wait_int64(db, 200, 30000, "SELECT next_offset FROM "
                                                "exactly.offsets");
    LEDGER_CHECK_LOG(tk_log_count(f.log, "seek failed") == 1, f.log,
                     "the fault did not fail the seek to the stored offset");
    LEDGER_CHECK_LOG(stored == 200, f.log,
                     "30000 ms after the row moved back to 50 and 100 more "
                     "messages came, the stored offset is %lld, not 200: the "
                     "seek to 50 failed and the worker went on from where "
                     "its consumer was",
                     (long long)stored);
    {
        int64_t rows = ledger_rows(db);
        LEDGER_CHECK_LOG(rows == 200, f.log,
                         "the stored offset is 200 but the ledger holds %lld "
                         "rows: after the seek to 50 failed the worker went "
                         "on from where its consumer was, and its next batch "
                         "stored offsets it never applied",
                         (long long)rows);
    }
    status = tk_worker_stop(w, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log, "the worker exited %d", status);
    ledger_check_exactly_once(db, tk_mock_bootstraps(f.mock), f.topic, 1, 200,
                              counts, LEDGER_ACCOUNTS);
    PQfinish(db);
    ledger_fixture_stop(&f);
    tk_note("seek_failed passed");
    return 0;
}
