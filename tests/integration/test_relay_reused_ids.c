/*
 * The default mode (idempotent), an outbox emptied with TRUNCATE ...
 * RESTART IDENTITY between the broker's acknowledgement of a batch and
 * the recording of its outcome (relay.h, invariant 3): the batch's ids
 * now belong to other rows, which were never sent. Recording the outcome
 * must not mark, delete or dead-letter them:
 *   - a relay reads a batch of ROWS rows, one of them refused for good
 *     (headers that are not a JSON object), and stalls after the delivery
 *     reports (the relay_acked fault);
 *   - the outbox is truncated, its ids restarted, and NEW_ROWS rows are
 *     written (ids 1..NEW_ROWS again, the refused row's among them);
 *   - the relay goes on, records the batch, then publishes what is
 *     pending: every new row must be on the topic, none dead-lettered,
 *     none left pending.
 * Once with cleanup: mark (a reused id would be marked published or
 * dead-lettered), once with cleanup: delete (deleted), and once in mode
 * transactional, where the relay stalls between the Kafka commit and the
 * mark (the relay_txn_committed fault) and then marks the batch itself,
 * its position record not needed (no refused row there: the batch's
 * transaction must commit).
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

#define ROWS 10
#define NEW_ROWS 5
#define DEAD_ID 3 /* the refused row of the first batch; <= NEW_ROWS */
#define ACKED_PAUSE "paused between acknowledgement and mark"

/* How one phase runs the relay. */
typedef struct phase_mode {
    const char *what;
    int delete_published;
    int transactional;
    int dead_id; /* the refused row's id in the first batch; 0: none */
    const char *fault, *paused; /* EXACTLY_FAULTS, the line it logs */
} phase_mode;

static void phase(relay_fixture *f, const phase_mode *m, const char *topic,
                  const char *log)
{
    char positions[128];
    const char *extra[] = {"--exit-idle", "1000", NULL};
    PGconn *q = f->db;
    pid_t relay;
    int status;
    int64_t on_topic, dead, pending, marked_unsent, gone;

    snprintf(positions, sizeof(positions), "%s-positions", topic);
    tk_mock_create_topic(f->mock, topic, 1);
    tk_mock_create_topic(f->mock, positions, 1);
    relay_fixture_config(f, &(relay_config){
                                .name = "reused",
                                .topic = topic,
                                .transactional = m->transactional,
                                .position_topic =
                                    m->transactional ? positions : NULL,
                                .batch_size = 50,
                                .delete_published = m->delete_published});
    tk_sql(q, "TRUNCATE exactly.outbox RESTART IDENTITY");
    tk_sql(q, "INSERT INTO exactly.outbox (key, value, headers) SELECT "
              "convert_to('old-' || g, 'UTF8'), 'old', CASE WHEN g = %d "
              "THEN '[1, 2]'::jsonb END FROM generate_series(1, %d) g",
           m->dead_id, ROWS);
    setenv("EXACTLY_FAULTS", m->fault, 1);
    relay = relay_start(f->config, extra, log);
    unsetenv("EXACTLY_FAULTS");
    LEDGER_CHECK_LOG(ledger_wait_log(log, m->paused, 1, relay, 20000,
                                     &status),
                     log, "the relay never reached the fault");

    /* The same ids, other rows, while the relay holds the batch's. */
    tk_sql(q, "TRUNCATE exactly.outbox RESTART IDENTITY");
    tk_sql(q, "INSERT INTO exactly.outbox (key, value) SELECT "
              "convert_to('new-' || g, 'UTF8'), 'new' FROM "
              "generate_series(1, %d) g",
           NEW_ROWS);
    TK_CHECK_EQ_INT64(tk_sql_int64(q, "SELECT max(id) FROM exactly.outbox"),
                      NEW_ROWS, "the new rows took ids 1..NEW_ROWS");
    status = tk_wait(relay, 40000);
    LEDGER_CHECK_LOG(status == 0, log, "relay exit status %d", status);

    relay_load_seen(q, f->bootstraps, topic, 1, NULL, NULL);
    on_topic = tk_sql_int64(q, "SELECT count(DISTINCT key) FROM seen "
                               "WHERE key LIKE 'new-%%'");
    dead = tk_sql_int64(q, "SELECT count(*) FROM exactly.outbox "
                           "WHERE dead_reason IS NOT NULL");
    pending = tk_sql_int64(q, "SELECT count(*) FROM exactly.outbox WHERE "
                              "published_at IS NULL AND dead_reason IS NULL");
    marked_unsent = tk_sql_int64(
        q, "SELECT count(*) FROM exactly.outbox o WHERE published_at IS "
           "NOT NULL AND NOT EXISTS (SELECT 1 FROM seen s WHERE s.eid = "
           "o.event_id::text)");
    gone = tk_sql_int64(
        q, "SELECT count(*) FROM generate_series(1, %d) g WHERE NOT EXISTS "
           "(SELECT 1 FROM exactly.outbox o WHERE o.key = convert_to('new-' "
           "|| g, 'UTF8')) AND NOT EXISTS (SELECT 1 FROM seen s WHERE s.key "
           "= 'new-' || g)",
        NEW_ROWS);
    LEDGER_CHECK_LOG(on_topic == NEW_ROWS && dead == 0 && pending == 0 &&
                         marked_unsent == 0 && gone == 0,
                     log,
                     "%s: of the %d rows written after the "
                     "truncate, %lld are on %s; %lld marked published "
                     "without being sent, %lld deleted without being sent, "
                     "%lld dead-lettered, %lld pending (the outcome of the "
                     "batch whose ids they took)",
                     m->what, NEW_ROWS,
                     (long long)on_topic, topic, (long long)marked_unsent,
                     (long long)gone, (long long)dead, (long long)pending);
    tk_note("%s: the rows that took the batch's ids were sent", m->what);
}

int main(void)
{
    const char *faults_built = getenv("EXACTLY_TEST_FAULTS_BUILT");
    relay_fixture f;
    char log3[600];

    if (!faults_built || strcmp(faults_built, "1") != 0) {
        tk_note("skipped: the relay_acked fault site needs a build with "
                "EXACTLY_FAULT_INJECTION");
        return 77;
    }
    relay_fixture_start(&f, "relay_reused_ids", NULL);
    snprintf(log3, sizeof(log3), "%s/relay3.log", f.dir);
    phase(&f,
          &(phase_mode){"cleanup: mark", 0, 0, DEAD_ID, "relay_acked:1",
                        ACKED_PAUSE},
          "relay-reused-mark", f.log);
    phase(&f,
          &(phase_mode){"cleanup: delete", 1, 0, DEAD_ID, "relay_acked:1",
                        ACKED_PAUSE},
          "relay-reused-delete", f.log2);
    phase(&f,
          &(phase_mode){"mode: transactional", 0, 1, 0,
                        "relay_txn_committed:1",
                        "paused between the kafka commit and the mark"},
          "relay-reused-txn", log3);
    relay_fixture_stop(&f);
    return 0;
}
