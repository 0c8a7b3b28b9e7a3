/*
 * The crash invariant: a worker killed with SIGKILL at any moment, and
 * restarted, applies every message exactly once.
 *
 * One worker consumes N_IDS messages naming LEDGER_ACCOUNTS entities over
 * N_PARTITIONS partitions in small batches. A worker is fast (tens of
 * thousands of messages a second here), so when fewer than REFILL_BELOW
 * messages are left before a life starts, the test produces another wave
 * of REFILL_IDS (another seed, counts summed): every life has work. Each
 * life runs until the ledger grows (it made progress), then dies by
 * SIGKILL:
 *   - at a random moment (a seeded delay after the progress was seen), or
 *   - for a seeded subset, inside the first batch transaction open after
 *     such a random moment: the test polls pg_stat_activity for the
 *     worker's backend with a transaction open, stops the worker
 *     (SIGSTOP), lets the backend drain what was already sent, and kills
 *     only if the backend then sits "idle in transaction". A stopped
 *     process cannot send COMMIT, so such a kill provably lands inside an
 *     open transaction; with backend_xid set, after the fence already
 *     advanced the stored offset.
 * After every kill the ledger and the stored offsets must agree (the
 * batch's writes and its offset advance commit together or not at all).
 * A last worker then runs to completion (--exit-idle) and the full
 * exactly-once check runs.
 *
 * EXACTLY_TEST_SEED=<n> replays one run's choices.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "crash"
#define N_PARTITIONS 4
#define N_IDS 24000
#define REFILL_BELOW 12000
#define REFILL_IDS 12000
#define N_KILLS 12
#define MIN_KILLS_IN_TXN 3
/* Kills aimed at a transaction: at least this many of the N_KILLS. */
#define TXN_TARGETS 6
/* Small batches and a short wait keep transactions frequent and the run
 * long enough for N_KILLS lives. */
#define BATCH_MAX 50
#define BATCH_WAIT_MS 20
/* Longest random delay between seeing progress and a random kill. */
#define MAX_KILL_DELAY_MS 150
/* How long to hunt for an open transaction before killing anyway. */
#define TXN_HUNT_MS 10000
/* How long a stopped worker's backend gets to process what the worker sent
 * before it stopped (bytes in flight), so that "idle in transaction" means
 * the backend waits for a client that can no longer send COMMIT. */
#define SETTLE_MS 20
/* A killed member stays in the consumer group until its session times out,
 * and the next life's join waits for that: keep it short. */
static const char *const kafka_overrides[] = {
    "session.timeout.ms", "3000", "heartbeat.interval.ms", "300", NULL};

/* xorshift64*: the test's own generator, so a seed replays the same
 * choices whatever the libc. */
static uint64_t rng_state;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static int rng_below(int n)
{
    return (int)(rng_next() % (uint64_t)n);
}

static uint64_t pick_seed(void)
{
    const char *env = getenv("EXACTLY_TEST_SEED");

    if (env && *env)
        return strtoull(env, NULL, 10);
    return (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
}

/* What the test saw of one kill. */
typedef struct kill_result {
    int in_txn;      /* backend idle in transaction while the worker stood */
    int had_xid;     /* ... and the transaction had written (fence ran) */
} kill_result;

/* pg_stat_activity rows of the worker's backend with an open transaction.
 * The worker's application_name is HOST:PID:0. */
static int64_t open_txns(PGconn *db, pid_t pid)
{
    return tk_sql_int64(db,
                        "SELECT count(*) FROM pg_stat_activity WHERE datname "
                        "= current_database() AND application_name LIKE "
                        "'%%:' || %d || ':%%' AND xact_start IS NOT NULL",
                        (int)pid);
}

/* Kill pid inside a batch transaction if one shows up within TXN_HUNT_MS;
 * otherwise kill it at the deadline. */
static kill_result kill_in_transaction(PGconn *db, pid_t pid, const char *log)
{
    kill_result r = {0, 0};
    int64_t deadline = tk_now_ms() + TXN_HUNT_MS;

    while (tk_now_ms() < deadline) {
        char *state;

        /* Tight loop on purpose: a batch transaction lasts milliseconds. */
        if (open_txns(db, pid) == 0)
            continue;
        LEDGER_CHECK_LOG(tk_kill(pid, SIGSTOP) == 0, log,
                         "worker %d vanished; log: %s", (int)pid, log);
        tk_sleep_ms(SETTLE_MS);
        state = tk_sql_text(
            db,
            "SELECT max(state || CASE WHEN backend_xid IS NULL THEN '' "
            "ELSE ' xid' END) FROM pg_stat_activity WHERE datname = "
            "current_database() AND application_name LIKE '%%:' || %d || "
            "':%%' AND xact_start IS NOT NULL",
            (int)pid);
        if (state && strncmp(state, "idle in transaction", 19) == 0 &&
            strstr(state, "(aborted)") == NULL) {
            TK_CHECK_EQ_INT64(tk_kill(pid, SIGKILL), 0, "SIGKILL of a "
                              "stopped worker");
            r.in_txn = 1;
            r.had_xid = strstr(state, " xid") != NULL;
            free(state);
            return r;
        }
        /* Between statements of its own or committing: let it go on. */
        free(state);
        LEDGER_CHECK_LOG(tk_kill(pid, SIGCONT) == 0, log,
                         "worker %d vanished; log: %s", (int)pid, log);
    }
    tk_note("no open transaction caught in %d ms; killing anyway",
            TXN_HUNT_MS);
    tk_kill(pid, SIGKILL);
    return r;
}

/* Wait until the killed worker's backend has gone: it finishes the command
 * it was running (a COMMIT the worker sent just before dying completes),
 * then exits. Only then is the ledger the dead worker's final word. */
static void wait_backend_gone(PGconn *db, pid_t pid)
{
    int64_t deadline = tk_now_ms() + 30000;

    while (tk_sql_int64(db,
                        "SELECT count(*) FROM pg_stat_activity WHERE "
                        "application_name LIKE '%%:' || %d || ':%%'",
                        (int)pid) > 0) {
        TK_CHECK(tk_now_ms() < deadline,
                 "the backend of killed worker %d still exists after 30 s",
                 (int)pid);
        tk_sleep_ms(5);
    }
}

/* Wait until the ledger has more than `before` rows while pid runs. */
static int64_t wait_for_progress(PGconn *db, pid_t pid, int64_t before,
                                 const char *log)
{
    int64_t deadline = tk_now_ms() + 60000;
    int64_t rows;

    while ((rows = ledger_rows(db)) <= before) {
        int status = tk_wait(pid, 0);

        LEDGER_CHECK_LOG(status == -1, log,
                         "worker exited with %d before making progress; "
                         "log: %s", status, log);
        LEDGER_CHECK_LOG(tk_now_ms() < deadline, log,
                         "no progress in 60 s (ledger stays at %" PRId64
                         " rows); log: %s", before, log);
        tk_sleep_ms(5);
    }
    return rows;
}

/* Produce n more ids with seed; add their per-entity counts to counts. */
static void produce_wave(const char *bootstraps, size_t n, uint64_t seed,
                         int64_t *counts)
{
    int64_t wave[LEDGER_ACCOUNTS];
    int i;

    tk_produce_ids(bootstraps, TOPIC, n, LEDGER_ACCOUNTS, N_PARTITIONS, seed,
                   wave);
    for (i = 0; i < LEDGER_ACCOUNTS; i++)
        counts[i] += wave[i];
}

/* Which of the N_KILLS kills hunt for a transaction: a seeded choice of
 * TXN_TARGETS of them. */
static void choose_txn_targets(int *target)
{
    int chosen = 0;

    memset(target, 0, N_KILLS * sizeof *target);
    while (chosen < TXN_TARGETS) {
        int k = rng_below(N_KILLS);
        if (!target[k]) {
            target[k] = 1;
            chosen++;
        }
    }
}

int main(void)
{
    char dir[256], config[512], log[512], conninfo[1024];
    int64_t counts[LEDGER_ACCOUNTS] = {0};
    int target[N_KILLS];
    int64_t t0 = tk_now_ms(), rows = 0, rows_at_kill[N_KILLS];
    int64_t produced = 0;
    int kills = 0, kills_in_txn = 0, kills_with_xid = 0, waves = 0, k;
    int status;
    uint64_t seed = pick_seed();
    ledger_summary final;
    ledger_config cfg;
    PGconn *db;
    pid_t pid;
    tk_mock *m;

    rng_state = seed ? seed : 1;
    tk_note("seed %" PRIu64 " (replay with EXACTLY_TEST_SEED=%" PRIu64 ")",
            seed, seed);
    choose_txn_targets(target);

    m = tk_mock_start(1);
    tk_mock_create_topic(m, TOPIC, N_PARTITIONS);
    tk_pg_create_db("crash", conninfo, sizeof conninfo);
    ledger_setup_db(conninfo);
    tk_tmpdir("exactly-crash", dir, sizeof dir);
    snprintf(config, sizeof config, "%s/worker.yaml", dir);
    memset(&cfg, 0, sizeof cfg);
    cfg.bootstraps = m->bootstraps;
    cfg.conninfo = conninfo;
    cfg.topic = TOPIC;
    cfg.max_messages = BATCH_MAX;
    /* These SIGKILLs come from outside; the crash guard would count kills
     * that hit one batch three times as a poison record. That behaviour has
     * its own test; here every record must be applied. */
    cfg.max_crashes = 1000;
    cfg.max_wait_ms = BATCH_WAIT_MS;
    cfg.kafka = kafka_overrides;
    ledger_write_config(config, &cfg);
    snprintf(log, sizeof log, "%s/migrate.log", dir);
    ledger_migrate(config, log);

    produce_wave(m->bootstraps, N_IDS, seed, counts);
    produced = N_IDS;
    waves = 1;
    tk_note("produced %d ids over %d partitions; logs in %s", N_IDS,
            N_PARTITIONS, dir);

    db = tk_pg_connect(conninfo);
    for (k = 0; k < N_KILLS; k++) {
        kill_result r = {0, 0};

        if (produced - rows < REFILL_BELOW) {
            produce_wave(m->bootstraps, REFILL_IDS, seed + (uint64_t)waves,
                         counts);
            produced += REFILL_IDS;
            waves++;
            tk_note("produced another %d ids (wave %d): %" PRId64
                    " in all", REFILL_IDS, waves, produced);
        }
        snprintf(log, sizeof log, "%s/worker-%02d.log", dir, k);
        pid = ledger_start_worker(config, 0, log);
        rows = wait_for_progress(db, pid, rows, log);
        /* A random moment into the life, so that kills land on different
         * partitions and batches (not always the first after a claim). */
        tk_sleep_ms(rng_below(MAX_KILL_DELAY_MS + 1));
        if (target[k]) {
            r = kill_in_transaction(db, pid, log);
        } else {
            LEDGER_CHECK_LOG(tk_kill(pid, SIGKILL) == 0, log,
                             "worker exited before its kill; log: %s", log);
        }
        status = tk_wait(pid, 30000);
        LEDGER_CHECK_LOG(status == 128 + SIGKILL, log,
                         "worker %d: exit status %d, expected death by "
                         "SIGKILL; log: %s", k, status, log);
        kills++;
        kills_in_txn += r.in_txn;
        kills_with_xid += r.had_xid;
        wait_backend_gone(db, pid);
        rows = ledger_check_consistent(db, TOPIC, N_PARTITIONS);
        rows_at_kill[k] = rows;
        tk_note("kill %d/%d (%s) at %.1f s: ledger %" PRId64 " of %" PRId64
                " rows, consistent with the stored offsets",
                k + 1, N_KILLS,
                r.in_txn ? (r.had_xid ? "in transaction, fence written"
                                      : "in transaction")
                         : (target[k] ? "hunt timed out" : "random moment"),
                (double)(tk_now_ms() - t0) / 1000.0, rows, produced);
    }

    /* The last life runs until the topic is drained. */
    snprintf(log, sizeof log, "%s/worker-final.log", dir);
    pid = ledger_start_worker(config, 3000, log);
    status = tk_wait(pid, 90000);
    if (status == -1)
        tk_kill(pid, SIGKILL);
    LEDGER_CHECK_LOG(status == 0, log,
                     "final worker: exit status %d (-1: still running after "
                     "90 s); log: %s", status, log);
    LEDGER_CHECK_LOG(ledger_read_summary(log, &final), log,
                     "final worker printed no summary; log: %s", log);
    /* The final worker starts from the stored offsets: it applies exactly
     * what the killed ones left. */
    LEDGER_CHECK_LOG(final.applied == produced - rows_at_kill[N_KILLS - 1],
                     log, "final worker applied %" PRId64 ", expected the %"
                     PRId64 " the killed ones left; log: %s", final.applied,
                     produced - rows_at_kill[N_KILLS - 1], log);

    TK_CHECK(rows_at_kill[N_KILLS - 1] > 0,
             "the killed workers applied nothing");
    ledger_check_exactly_once(db, m->bootstraps, TOPIC, N_PARTITIONS,
                              produced, counts, LEDGER_ACCOUNTS);
    TK_CHECK(kills_in_txn >= MIN_KILLS_IN_TXN,
             "only %d of %d kills hit an open transaction (need %d); seed "
             "%" PRIu64, kills_in_txn, kills, MIN_KILLS_IN_TXN, seed);

    tk_note("crash test passed: %d kills, %d inside an open transaction "
            "(%d after the fence had advanced the offset); %" PRId64
            " messages in %d wave(s), %" PRId64 " applied by killed workers, "
            "the rest by the final one; %.1f s; seed %" PRIu64,
            kills, kills_in_txn, kills_with_xid, produced, waves,
            rows_at_kill[N_KILLS - 1], (double)(tk_now_ms() - t0) / 1000.0,
            seed);
    PQfinish(db);
    tk_mock_stop(m);
    ledger_cleanup_dir(dir);
    return 0;
}
