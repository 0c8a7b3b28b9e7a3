/*
 * The outbox relay under SIGKILL (relay.h, invariants 2 and 3), and the
 * whole path outbox -> relay -> Kafka -> exactly pipeline exactly once.
 *
 * N_LIVES relays each find fresh rows in the outbox (ROWS_PER_LIFE, in
 * transactions of TXN_ROWS, keys drawn from the ledger's accounts) and die
 * by SIGKILL:
 *   - every third life (in a build with fault hooks) inside the window
 *     between the broker's acknowledgement and the mark: the relay_acked
 *     fault stalls there, the test waits for its log line and kills; the
 *     rows of that batch are on the topic but still pending;
 *   - the others at a seeded random moment after the relay started.
 * A last relay runs until the outbox is empty. Then:
 *   - no row is pending or dead-lettered, and every row's event_id is on
 *     the topic; every record carries exactly one event-id header, naming
 *     a row whose key is the record's key;
 *   - duplicates exist only as copies of a row (same event-id); with the
 *     fault hooks, at least one per kill between acknowledgement and mark;
 *   - per key, one partition, and the rows' first copies in the order of
 *     their outbox ids;
 *   - the ledger pipeline with dedup on the event-id header applies each
 *     row once: one ledger row per outbox row, counters per entity equal
 *     to the outbox's rows per key, stored offsets at the high watermarks.
 *
 * EXACTLY_TEST_SEED=<n> replays one run's choices.
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
#include "seeded.h"
#include "testkit.h"

#define TOPIC "relay-crash"
#define N_PARTITIONS 4
#define N_LIVES 22
#define ROWS_PER_LIFE 100
#define TXN_ROWS 25
#define MAX_KILL_DELAY_MS 150

static void insert_rows(PGconn *db, int n)
{
    int i;

    for (i = 0; i < n; i += TXN_ROWS) {
        char keys[TXN_ROWS * 8 + 8];
        size_t len = 0;
        int j;

        for (j = 0; j < TXN_ROWS && i + j < n; j++)
            len += (size_t)snprintf(keys + len, sizeof(keys) - len, "%s%d",
                                    j ? "," : "",
                                    1 + seeded_below(LEDGER_ACCOUNTS));
        /* One transaction per statement, rows in array order. */
        tk_sql(db,
               "INSERT INTO exactly.outbox (key) SELECT convert_to(k::text, "
               "'UTF8') FROM unnest('{%s}'::int[]) WITH ORDINALITY AS u(k, o) "
               "ORDER BY o",
               keys);
    }
}

int main(void)
{
    ledger_fixture f;
    ledger_config c;
    PGconn *db;
    char relay_log[600], worker_log[600];
    const char *faults_built = getenv("EXACTLY_TEST_FAULTS_BUILT");
    int use_faults = faults_built && strcmp(faults_built, "1") == 0;
    uint64_t seed = seeded_pick();
    int64_t rows, dups, t0 = tk_now_ms();
    int life, paused_kills = 0, random_kills = 0, status;
    size_t n_records;
    int64_t hw[N_PARTITIONS];
    int p;

    seeded_init(seed);
    tk_note("seed %llu (EXACTLY_TEST_SEED replays it)",
            (unsigned long long)seed);

    ledger_fixture_start(&f, "relay_crash", TOPIC, N_PARTITIONS);
    memset(&c, 0, sizeof(c));
    c.max_messages = 200;
    c.max_wait_ms = 20;
    c.pipeline_yaml = "    dedup: {from: header, header: event-id}\n";
    ledger_fixture_config(&f, &c);
    /* The relay beside the pipeline, in the same file. */
    relay_config_append(f.config, &(relay_config){.name = "crash",
                                                  .topic = TOPIC,
                                                  .batch_size = 50,
                                                  .kafka = "linger.ms: 5"});
    snprintf(relay_log, sizeof(relay_log), "%s/relay.log", f.dir);
    snprintf(worker_log, sizeof(worker_log), "%s/worker.log", f.dir);
    db = tk_pg_connect(f.conninfo);

    for (life = 0; life < N_LIVES; life++) {
        int pause = use_faults && life % 3 == 0;
        char faults[64];
        pid_t pid;

        insert_rows(db, ROWS_PER_LIFE);
        if (pause) {
            snprintf(faults, sizeof(faults), "relay_acked:%d",
                     1 + seeded_below(2));
            setenv("EXACTLY_FAULTS", faults, 1);
        }
        pid = relay_start(f.config, NULL, relay_log);
        unsetenv("EXACTLY_FAULTS");
        if (pause) {
            LEDGER_CHECK_LOG(ledger_wait_log(relay_log, "paused between "
                                             "acknowledgement and mark",
                                             paused_kills + 1, pid, 20000,
                                             &status),
                             relay_log, "life %d never reached the fault",
                             life);
            paused_kills++;
        } else {
            LEDGER_CHECK_LOG(ledger_wait_log(relay_log, "relay publishes",
                                             life + 1, pid, 20000, &status),
                             relay_log, "life %d never started", life);
            tk_sleep_ms(seeded_below(MAX_KILL_DELAY_MS));
            random_kills++;
        }
        tk_kill(pid, SIGKILL);
        if (life == 0)
            tk_note("first life ended after %lld ms",
                    (long long)(tk_now_ms() - t0));
        status = tk_wait(pid, 10000);
        TK_CHECK(status == 128 + SIGKILL || status == 0,
                 "life %d ended with status %d", life, status);
    }
    tk_note("lives done at %lld ms", (long long)(tk_now_ms() - t0));
    status = relay_run_to_idle(f.config, 1000, 60000, relay_log);
    tk_note("outbox empty at %lld ms", (long long)(tk_now_ms() - t0));
    LEDGER_CHECK_LOG(status == 0, relay_log, "last relay exit status %d",
                     status);

    rows = tk_sql_int64(db, "SELECT count(*) FROM exactly.outbox");
    TK_CHECK_EQ_INT64(rows, (int64_t)N_LIVES * ROWS_PER_LIFE, "outbox rows");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM exactly.outbox "
                                       "WHERE published_at IS NULL OR "
                                       "dead_reason IS NOT NULL"),
                      0, "rows pending or dead-lettered");

    n_records = relay_load_seen(db, tk_mock_bootstraps(f.mock), TOPIC,
                                N_PARTITIONS, NULL, NULL);
    {
        char *bad = tk_sql_text(db, "SELECT min(part || '/' || off) FROM "
                                    "seen WHERE eid !~ '^[0-9a-f-]*$' OR "
                                    "key !~ '^[0-9]*$'");

        TK_CHECK(bad == NULL, "record %s: unexpected key or event-id", bad);
    }
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM seen WHERE "
                                       "n_eids <> 1"),
                      0, "records without exactly one event-id header");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM exactly.outbox "
                                       "o WHERE NOT EXISTS (SELECT 1 FROM "
                                       "seen s WHERE s.eid = "
                                       "o.event_id::text)"),
                      0, "outbox rows missing from the topic");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM seen s WHERE "
                                       "NOT EXISTS (SELECT 1 FROM "
                                       "exactly.outbox o WHERE s.eid = "
                                       "o.event_id::text AND convert_from("
                                       "o.key, 'UTF8') = s.key)"),
                      0, "records whose event-id names no row of their key");
    dups = (int64_t)n_records - rows;
    TK_CHECK(dups >= paused_kills,
             "%lld duplicates, fewer than the %d kills between "
             "acknowledgement and mark", (long long)dups, paused_kills);
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM (SELECT key "
                                       "FROM seen GROUP BY key HAVING "
                                       "count(DISTINCT part) > 1) k"),
                      0, "keys on more than one partition");
    TK_CHECK_EQ_INT64(
        tk_sql_int64(db,
                     "SELECT count(*) FROM (SELECT o.id, f.off, lag(f.off) "
                     "OVER (PARTITION BY o.key ORDER BY o.id) AS prev FROM "
                     "exactly.outbox o JOIN (SELECT eid, min(off) AS off "
                     "FROM seen GROUP BY eid) f ON f.eid = "
                     "o.event_id::text) x WHERE off < prev"),
        0, "rows of a key whose first copies are out of id order");

    tk_note("topic checked at %lld ms", (long long)(tk_now_ms() - t0));
    /* The consuming side: dedup on event-id applies each row once. */
    status = ledger_run_to_idle(f.config, 2000, 90000, worker_log);
    LEDGER_CHECK_LOG(status == 0, worker_log, "worker exit status %d",
                     status);
    TK_CHECK_EQ_INT64(ledger_rows(db), rows, "ledger rows (applied once)");
    TK_CHECK_EQ_INT64(
        tk_sql_int64(db,
                     "SELECT count(*) FROM (SELECT convert_from(key, 'UTF8') "
                     "AS entity_id, count(*) AS n FROM exactly.outbox GROUP "
                     "BY 1) w FULL JOIN ledger_counters l USING (entity_id) "
                     "WHERE w.n IS DISTINCT FROM l.n"),
        0, "entities whose applied count differs from their outbox rows");
    ledger_high_watermarks(tk_mock_bootstraps(f.mock), TOPIC, N_PARTITIONS,
                           hw);
    for (p = 0; p < N_PARTITIONS; p++)
        TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT coalesce(max(next_offset), "
                                           "0) FROM exactly.offsets WHERE "
                                           "partition = %d",
                                       p),
                          hw[p], "stored offset at the high watermark");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                       "exactly.dead_letters"),
                      0, "dead letters");
    tk_note("%d kills (%d between acknowledgement and mark, %d at random), "
            "%lld rows, %zu records (%lld duplicates), each applied once; "
            "%lld ms",
            N_LIVES, paused_kills, random_kills, (long long)rows, n_records,
            (long long)dups, (long long)(tk_now_ms() - t0));
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
