/*
 * Handler emits under SIGKILL: consume -> write -> produce happens once.
 *
 * The ledger handler with emit_topic writes one ledger row and emits one
 * outbox event (key TOPIC/PARTITION/OFFSET) per applied message, both in
 * the batch's transaction (host->emit). Workers are killed N_KILLS times
 * (fewer when every message is applied before the last) at random moments
 * after they made progress; after each kill the outbox
 * and the ledger must match one to one (they commit together or not at
 * all). A last worker drains the topic; then:
 *   - the ledger passes the exactly-once check;
 *   - the outbox holds exactly one event per ledger row, keyed by its
 *     message, with the entity as value, never more, never fewer;
 *   - `exactly relay` publishes them: the emitted topic holds every event
 *     once (no kill here), each with its event-id and the handler's
 *     header.
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
#include <time.h>
#include <unistd.h>

#include "ledger_check.h"
#include "relay_kit.h"
#include "testkit.h"

#define TOPIC "emit-in"
#define EMITTED "emit-out"
#define N_PARTITIONS 2
#define N_IDS 6000
#define N_KILLS 6
#define MAX_KILL_DELAY_MS 200

static const char *const kafka_overrides[] = {
    "session.timeout.ms", "3000", "heartbeat.interval.ms", "300", NULL};

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

/* Events without their message in the ledger, or the reverse. */
static int64_t mismatches(PGconn *db)
{
    return tk_sql_int64(
        db, "SELECT count(*) FROM ledger l FULL JOIN exactly.outbox o ON "
            "convert_from(o.key, 'UTF8') = l.topic || '/' || l.partition || "
            "'/' || l.\"offset\" AND convert_from(o.value, 'UTF8') = "
            "l.entity_id AND o.topic = '" EMITTED "' WHERE l.topic IS NULL "
            "OR o.id IS NULL");
}

int main(void)
{
    ledger_fixture f;
    ledger_config c;
    PGconn *db;
    int64_t counts[LEDGER_ACCOUNTS] = {0};
    int64_t rows = 0, t0 = tk_now_ms();
    const char *env_seed = getenv("EXACTLY_TEST_SEED");
    char log[600], relay_log[600];
    uint64_t seed;
    relay_rec *recs;
    size_t n, i;
    int k, status;

    seed = env_seed && *env_seed ? strtoull(env_seed, NULL, 10)
                                 : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    rng_state = seed ? seed : 1;
    tk_note("seed %llu (EXACTLY_TEST_SEED replays it)",
            (unsigned long long)seed);

    ledger_fixture_start(&f, "emit_crash", TOPIC, N_PARTITIONS);
    tk_mock_create_topic(f.mock, EMITTED, N_PARTITIONS);
    memset(&c, 0, sizeof(c));
    c.max_messages = 50;
    c.max_wait_ms = 20;
    c.max_crashes = 1000;
    c.kafka = kafka_overrides;
    c.handler_options_yaml = "        emit_topic: " EMITTED "\n";
    ledger_fixture_config(&f, &c);
    {
        FILE *cf = fopen(f.config, "a");
        TK_CHECK(cf != NULL, "cannot append to %s", f.config);
        fprintf(cf, "relays:\n  emitted:\n    batch_size: 500\n"
                    "    poll_interval_ms: 20\n    cleanup: mark\n");
        TK_CHECK(fclose(cf) == 0, "cannot write %s", f.config);
    }
    tk_produce_ids(tk_mock_bootstraps(f.mock), TOPIC, N_IDS, LEDGER_ACCOUNTS,
                   N_PARTITIONS, seed, counts);
    db = tk_pg_connect(f.conninfo);

    for (k = 0; k < N_KILLS; k++) {
        int64_t deadline = tk_now_ms() + 60000, before = rows;
        pid_t pid;

        /* A fast build can apply everything before the last kill: a
         * worker started then has nothing to make progress on. */
        if (rows >= N_IDS) {
            tk_note("every message applied after %d of %d kills", k,
                    N_KILLS);
            break;
        }
        snprintf(log, sizeof(log), "%s/worker-%d.log", f.dir, k);
        pid = ledger_start_worker(f.config, 0, log);
        while ((rows = ledger_rows(db)) <= before) {
            LEDGER_CHECK_LOG(tk_wait(pid, 0) == -1, log,
                             "worker %d exited before making progress", k);
            LEDGER_CHECK_LOG(tk_now_ms() < deadline, log,
                             "worker %d made no progress in 60 s", k);
            tk_sleep_ms(5);
        }
        tk_sleep_ms((int)(rng_next() % (MAX_KILL_DELAY_MS + 1)));
        tk_kill(pid, SIGKILL);
        status = tk_wait(pid, 30000);
        LEDGER_CHECK_LOG(status == 128 + SIGKILL, log,
                         "worker %d: exit status %d", k, status);
        rows = ledger_check_consistent(db, TOPIC, N_PARTITIONS);
        TK_CHECK_EQ_INT64(mismatches(db), 0,
                          "events and ledger rows that do not pair up "
                          "after a kill");
        tk_note("kill %d/%d at %.1f s: %lld ledger rows, as many events",
                k + 1, N_KILLS, (double)(tk_now_ms() - t0) / 1000.0,
                (long long)rows);
    }
    TK_CHECK(k >= 2, "only %d kill(s) landed before every message was "
             "applied: the test shows nothing about kills", k);
    snprintf(log, sizeof(log), "%s/worker-final.log", f.dir);
    status = ledger_run_to_idle(f.config, 2000, 90000, log);
    LEDGER_CHECK_LOG(status == 0, log, "final worker exit status %d", status);
    ledger_check_exactly_once(db, tk_mock_bootstraps(f.mock), TOPIC,
                              N_PARTITIONS, N_IDS, counts, LEDGER_ACCOUNTS);
    TK_CHECK_EQ_INT64(mismatches(db), 0, "events and ledger rows that do "
                                         "not pair up");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM exactly.outbox"),
                      N_IDS, "events emitted");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM exactly.outbox "
                                       "WHERE headers <> '{\"source\": "
                                       "\"ledger\"}'"),
                      0, "events without the handler's header");

    /* The relay publishes them, each once. */
    snprintf(relay_log, sizeof(relay_log), "%s/relay.log", f.dir);
    status = relay_run_to_idle(f.config, 1000, 60000, relay_log);
    LEDGER_CHECK_LOG(status == 0, relay_log, "relay exit status %d", status);
    recs = relay_read_topic(tk_mock_bootstraps(f.mock), EMITTED, N_PARTITIONS,
                            &n);
    TK_CHECK_EQ_INT64(n, N_IDS, "records on the emitted topic");
    for (i = 0; i < n; i++)
        TK_CHECK(recs[i].n_event_ids == 1 && recs[i].event_id[0],
                 "record %zu has no single event-id", i);
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM exactly.outbox "
                                       "WHERE published_at IS NULL"),
                      0, "events still pending");
    free(recs);
    tk_note("%d kills; %d messages applied once and %d events emitted and "
            "published once; %.1f s",
            k, N_IDS, N_IDS, (double)(tk_now_ms() - t0) / 1000.0);
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
