/*
 * One topic of 200 partitions served by `exactly run` with workers: 2.
 *
 * A first wave of messages (every partition gets the same number) waits in
 * the topic before the supervisor starts its two workers, which join the
 * group together. Once exactly.offsets shows all 200 partitions claimed
 * and owned by two different worker processes, a second wave follows.
 * When the stored positions add up to everything produced, the ledger must
 * agree with them, SIGTERM must end the run with exit 0, the two workers'
 * summaries must each show work done and add up to every message, every
 * partition's stored offset must be at its end, and the exactly-once check
 * must hold (one ledger row per offset, counters exact, no dead letters).
 *
 * The mock cluster keeps ~5 MiB per partition (DESIGN.md 7): 20 messages a
 * partition is far below that, and ledger_high_watermarks() fails if a
 * low watermark moved anyway. A 6 s session keeps a rebalance short, should
 * one worker join well after the other (the mock's rejoin wait derives from
 * session.timeout.ms).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ledger_check.h"
#include "scale.h"
#include "testkit.h"

#define TOPIC "many_partitions"
#define N_PARTITIONS 200
#define N_WORKERS 2
/* Per wave; a multiple of N_PARTITIONS, so every partition gets the same
 * share (tk_produce_ids sends message i to partition i % N_PARTITIONS). */
#define WAVE 2000
#define SEED 20200
/* Generous deadlines for a loaded 2-core machine; conditions, not sleeps. */
#define CLAIM_TIMEOUT_MS 90000
#define APPLY_TIMEOUT_MS 90000
#define STOP_TIMEOUT_MS 60000

static const char *const kafka_overrides[] = {
    "session.timeout.ms", "6000", "heartbeat.interval.ms", "500", NULL};

/* Claimed partitions of the topic, and how many distinct owners (one per
 * worker process) hold them. */
static void claims(PGconn *db, int64_t *rows, int64_t *owners)
{
    *rows = tk_sql_int64(db, "SELECT count(*) FROM exactly.offsets WHERE "
                             "pipeline = '" LEDGER_PIPELINE "' AND topic = '"
                             TOPIC "' AND owner IS NOT NULL");
    *owners = tk_sql_int64(db, "SELECT count(DISTINCT owner) FROM "
                               "exactly.offsets WHERE pipeline = '"
                               LEDGER_PIPELINE "' AND topic = '" TOPIC "'");
}

/* Add a wave's per-entity counts to the running totals. */
static void produce_wave(const char *bootstraps, uint64_t seed,
                         int64_t *counts)
{
    int64_t wave[LEDGER_ACCOUNTS];
    int i;

    tk_produce_ids(bootstraps, TOPIC, WAVE, LEDGER_ACCOUNTS, N_PARTITIONS,
                   seed, wave);
    for (i = 0; i < LEDGER_ACCOUNTS; i++)
        counts[i] += wave[i];
}

int main(void)
{
    char dir[256], config[512], log[512], lockdir[512], conninfo[1024];
    int64_t counts[LEDGER_ACCOUNTS] = {0};
    int64_t t0 = tk_now_ms(), t_claimed, t_applied, rows = 0, owners = 0;
    int64_t total = 0, consumed = 0, deadline;
    ledger_summary sums[N_WORKERS + 2];
    ledger_config cfg;
    const char *bootstraps;
    char *split;
    int i, n_sums, status;
    PGconn *db;
    pid_t run;
    tk_mock *m;
    FILE *f;

    m = tk_mock_start(1);
    bootstraps = tk_mock_bootstraps(m);
    tk_mock_create_topic(m, TOPIC, N_PARTITIONS);
    tk_pg_create_db("many_partitions", conninfo, sizeof conninfo);
    ledger_setup_db(conninfo);
    tk_tmpdir("exactly-many-partitions", dir, sizeof dir);
    tk_note("logs in %s", dir);
    snprintf(config, sizeof config, "%s/run.yaml", dir);
    snprintf(log, sizeof log, "%s/run.log", dir);
    snprintf(lockdir, sizeof lockdir, "%s/locks", dir);
    TK_CHECK(mkdir(lockdir, 0700) == 0, "mkdir %s", lockdir);

    memset(&cfg, 0, sizeof cfg);
    cfg.bootstraps = bootstraps;
    cfg.conninfo = conninfo;
    cfg.topic = TOPIC;
    cfg.group = TOPIC;
    cfg.max_messages = 500;
    cfg.max_wait_ms = 50;
    cfg.kafka = kafka_overrides;
    ledger_write_config(config, &cfg);
    /* The pipeline's last key is at pipeline level: append the count. */
    f = fopen(config, "a");
    TK_CHECK(f && fprintf(f, "    workers: %d\n", N_WORKERS) > 0 &&
                 fclose(f) == 0,
             "cannot append to %s", config);
    ledger_migrate(config, log);
    db = tk_pg_connect(conninfo);

    produce_wave(bootstraps, SEED, counts);
    total += WAVE;
    {
        char *argv[] = {(char *)ledger_exactly_bin(), "run", "-c", config,
                        "--lock-dir", lockdir, NULL};
        run = tk_spawn(argv, log);
    }

    /* Every partition claimed, by two worker processes. */
    deadline = tk_now_ms() + CLAIM_TIMEOUT_MS;
    for (;;) {
        claims(db, &rows, &owners);
        if (rows == N_PARTITIONS && owners >= N_WORKERS)
            break;
        LEDGER_CHECK_LOG(tk_wait(run, 0) == -1, log,
                         "exactly run exited before both workers claimed "
                         "partitions; log: %s", log);
        LEDGER_CHECK_LOG(tk_now_ms() < deadline, log,
                         "after %d ms, %" PRId64 " of %d partitions are "
                         "claimed, by %" PRId64 " owner(s), expected %d; "
                         "log: %s",
                         CLAIM_TIMEOUT_MS, rows, N_PARTITIONS, owners,
                         N_WORKERS, log);
        tk_sleep_ms(100);
    }
    t_claimed = tk_now_ms() - t0;
    split = tk_sql_text(db, "SELECT string_agg(n::text, ' + ' ORDER BY n) "
                            "FROM (SELECT count(*) AS n FROM exactly.offsets "
                            "WHERE pipeline = '" LEDGER_PIPELINE "' AND "
                            "topic = '" TOPIC "' GROUP BY owner) s");
    tk_note("all %d partitions claimed by %" PRId64 " workers (%s) at "
            "%.1f s; ledger %" PRId64 " of %" PRId64 " so far",
            N_PARTITIONS, owners, split ? split : "?",
            (double)t_claimed / 1000.0,
            ledger_check_consistent(db, TOPIC, N_PARTITIONS), total);
    free(split);

    /* The second wave reaches both workers' partitions. */
    produce_wave(bootstraps, SEED + 1, counts);
    total += WAVE;
    scale_wait_stored(db, LEDGER_PIPELINE, TOPIC, total, run, log,
                      APPLY_TIMEOUT_MS);
    t_applied = tk_now_ms() - t0;
    TK_CHECK_EQ_INT64(ledger_check_consistent(db, TOPIC, N_PARTITIONS),
                      total, "ledger rows once the stored offsets are at the "
                             "end");

    status = tk_terminate(run, STOP_TIMEOUT_MS);
    LEDGER_CHECK_LOG(status == 0, log,
                     "exactly run: exit status %d after SIGTERM, expected 0; "
                     "log: %s", status, log);

    /* Each worker printed one summary: none died, both worked, and their
     * counts add up to every message (a batch counts once, where it
     * committed). */
    n_sums = tk_summaries(log, LEDGER_PIPELINE, sums, N_WORKERS + 2);
    LEDGER_CHECK_LOG(n_sums == N_WORKERS, log,
                     "%d worker summaries in the log, expected %d (one per "
                     "worker; more means a worker was restarted); log: %s",
                     n_sums, N_WORKERS, log);
    for (i = 0; i < N_WORKERS; i++) {
        tk_note("worker %d: consumed %" PRId64 ", batches committed %"
                PRId64 ", rolled back %" PRId64 ", fenced %" PRId64
                ", retries %" PRId64, i + 1, sums[i].consumed,
                sums[i].committed, sums[i].rolled_back, sums[i].fenced,
                sums[i].retries);
        LEDGER_CHECK_LOG(sums[i].consumed > 0, log,
                         "worker %d consumed nothing: the partitions were "
                         "not shared; log: %s", i + 1, log);
        LEDGER_CHECK_LOG(sums[i].dead_lettered == 0, log,
                         "worker %d dead-lettered %" PRId64 " message(s)",
                         i + 1, sums[i].dead_lettered);
        consumed += sums[i].consumed;
    }
    TK_CHECK_EQ_INT64(consumed, total, "messages consumed by the two "
                                       "workers together");

    /* Spread over every partition, and every stored offset at its end. */
    TK_CHECK_EQ_INT64(
        tk_sql_int64(db, "SELECT count(*) FROM exactly.offsets WHERE "
                         "pipeline = '" LEDGER_PIPELINE "' AND topic = '"
                         TOPIC "' AND next_offset = %d",
                     2 * WAVE / N_PARTITIONS),
        N_PARTITIONS, "partitions whose stored offset is the 2 * WAVE / "
                      "N_PARTITIONS messages each received");
    ledger_check_exactly_once(db, bootstraps, TOPIC, N_PARTITIONS, total,
                              counts, LEDGER_ACCOUNTS);
    tk_note("%d partitions, %d workers: %" PRId64 " messages applied "
            "exactly once; claimed at %.1f s, all applied at %.1f s, done at "
            "%.1f s", N_PARTITIONS, N_WORKERS, total,
            (double)t_claimed / 1000.0, (double)t_applied / 1000.0,
            (double)(tk_now_ms() - t0) / 1000.0);

    PQfinish(db);
    tk_mock_stop(m);
    ledger_cleanup_dir(dir);
    return 0;
}
