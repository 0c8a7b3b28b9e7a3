/*
 * Rebalances mid-stream: workers joining and leaving a consumer group while
 * messages keep arriving lose nothing and apply nothing twice.
 *
 * Worker 1 consumes while the test produces waves of ids (each wave its own
 * seed; per-entity counts summed). Worker 2 joins, then worker 3; each is
 * waited for until it has claimed partitions (`partition claimed` in its
 * log), with production going on. Then worker 2 and worker 3 leave
 * (SIGTERM), each of which must flush, leave the group and exit 0 in time,
 * after which the others must claim the partitions it held. Between the
 * steps the ledger must agree with the stored offsets (writes and offset
 * advance commit together). Finally worker 1 stops, a worker runs to
 * completion and the exactly-once check runs.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "rebalance"
#define N_PARTITIONS 6
#define N_WORKERS 3
#define WAVE_IDS 1500
/* While waiting for a rebalance, a wave every this many ms. */
#define PRODUCE_EVERY_MS 1000
#define FIRST_SEED 9300
/* How long a join or a leave may take to show in the claims: a mock
 * rebalance waits up to session.timeout.ms - 1 s for members to rejoin. */
#define REBALANCE_TIMEOUT_MS 45000
/* How long a worker may take to flush, leave and exit after SIGTERM. */
#define LEAVE_TIMEOUT_MS 30000

/* Short sessions and frequent heartbeats keep each mock rebalance to a
 * few seconds (its rejoin wait is derived from session.timeout.ms). */
static const char *const kafka_overrides[] = {
    "session.timeout.ms", "6000", "heartbeat.interval.ms", "500", NULL};

typedef struct stream {
    const char *bootstraps;
    int64_t counts[LEDGER_ACCOUNTS];
    int64_t produced;
    int waves;
} stream;

/* Produce one more wave (its own seed) and add its per-entity counts. */
static void produce_wave(stream *s)
{
    int64_t wave[LEDGER_ACCOUNTS];
    int i;

    tk_produce_ids(s->bootstraps, TOPIC, WAVE_IDS, LEDGER_ACCOUNTS,
                   N_PARTITIONS, FIRST_SEED + (uint64_t)s->waves, wave);
    for (i = 0; i < LEDGER_ACCOUNTS; i++)
        s->counts[i] += wave[i];
    s->produced += WAVE_IDS;
    s->waves++;
}

typedef struct worker_proc {
    pid_t pid;
    char log[512];
    int running;
} worker_proc;

/* `partition claimed` lines in the logs of all workers. */
static int total_claims(const worker_proc *w, int n)
{
    int i, claims = 0;

    for (i = 0; i < n; i++)
        claims += ledger_log_count(w[i].log, "partition claimed");
    return claims;
}

/* Fail, naming its log, if a running worker has exited. */
static void check_running(worker_proc *w, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        int status;

        if (!w[i].running)
            continue;
        status = tk_wait(w[i].pid, 0);
        LEDGER_CHECK_LOG(status == -1, w[i].log,
                         "worker %d exited with %d while it should run; "
                         "log: %s", i + 1, status, w[i].log);
    }
}

/* Wait until the workers w[first .. first+n_logs) have logged at least
 * `want` claims, producing a wave every PRODUCE_EVERY_MS meanwhile (the
 * stream goes on during the rebalance) and checking that every running
 * worker still runs and that the ledger agrees with the stored offsets.
 * Fails after REBALANCE_TIMEOUT_MS. */
static void produce_until_claims(stream *s, worker_proc *w, int n_workers,
                                 int first, int n_logs, int want,
                                 PGconn *db, const char *what)
{
    int64_t deadline = tk_now_ms() + REBALANCE_TIMEOUT_MS;
    int64_t next_wave = tk_now_ms() + PRODUCE_EVERY_MS;

    while (total_claims(w + first, n_logs) < want) {
        check_running(w, n_workers);
        LEDGER_CHECK_LOG(tk_now_ms() < deadline, w[first].log,
                         "%s: only %d of %d claims after %d ms; log: %s",
                         what, total_claims(w + first, n_logs), want,
                         REBALANCE_TIMEOUT_MS, w[first].log);
        if (tk_now_ms() >= next_wave) {
            produce_wave(s);
            (void)ledger_check_consistent(db, TOPIC, N_PARTITIONS);
            next_wave = tk_now_ms() + PRODUCE_EVERY_MS;
        }
        tk_sleep_ms(50);
    }
}

/* SIGTERM a worker and require a clean exit (0) within LEAVE_TIMEOUT_MS. */
static void leave(worker_proc *w, int index)
{
    int status;

    LEDGER_CHECK_LOG(tk_kill(w->pid, SIGTERM) == 0, w->log,
                     "worker %d is gone before SIGTERM; log: %s", index,
                     w->log);
    status = tk_wait(w->pid, LEAVE_TIMEOUT_MS);
    if (status == -1)
        tk_kill(w->pid, SIGKILL);
    w->running = 0;
    LEDGER_CHECK_LOG(status == 0, w->log,
                     "worker %d: exit status %d after SIGTERM (-1: still "
                     "running after %d ms), expected 0; log: %s",
                     index, status, LEAVE_TIMEOUT_MS, w->log);
}

int main(void)
{
    char dir[256], config[512], log[512], conninfo[1024];
    worker_proc w[N_WORKERS];
    int64_t t0 = tk_now_ms(), rows;
    int claims, i, status, rebalances[N_WORKERS], fenced = 0;
    ledger_summary sums[N_WORKERS], fin;
    ledger_config cfg;
    stream s;
    pid_t final_pid;
    PGconn *db;
    tk_mock *m;

    memset(&s, 0, sizeof s);
    memset(w, 0, sizeof w);
    m = tk_mock_start(1);
    s.bootstraps = m->bootstraps;
    tk_mock_create_topic(m, TOPIC, N_PARTITIONS);
    tk_pg_create_db("rebalance", conninfo, sizeof conninfo);
    ledger_setup_db(conninfo);
    tk_tmpdir("exactly-rebalance", dir, sizeof dir);
    snprintf(config, sizeof config, "%s/worker.yaml", dir);
    memset(&cfg, 0, sizeof cfg);
    cfg.bootstraps = m->bootstraps;
    cfg.conninfo = conninfo;
    cfg.topic = TOPIC;
    cfg.max_messages = 200;
    cfg.max_wait_ms = 50;
    cfg.kafka = kafka_overrides;
    ledger_write_config(config, &cfg);
    snprintf(log, sizeof log, "%s/migrate.log", dir);
    ledger_migrate(config, log);
    db = tk_pg_connect(conninfo);
    for (i = 0; i < N_WORKERS; i++)
        snprintf(w[i].log, sizeof w[i].log, "%s/worker-%d.log", dir, i + 1);
    tk_note("logs in %s", dir);

    /* Worker 1 alone: it claims every partition and makes progress. */
    produce_wave(&s);
    w[0].pid = ledger_start_worker(config, 0, w[0].log);
    w[0].running = 1;
    produce_until_claims(&s, w, N_WORKERS, 0, 1, N_PARTITIONS, db,
                         "worker 1 joining");
    tk_note("worker 1 claimed all %d partitions at %.1f s", N_PARTITIONS,
            (double)(tk_now_ms() - t0) / 1000.0);

    /* Workers 2 and 3 join mid-stream, one after the other. */
    for (i = 1; i < N_WORKERS; i++) {
        w[i].pid = ledger_start_worker(config, 0, w[i].log);
        w[i].running = 1;
        produce_until_claims(&s, w, N_WORKERS, i, 1, 1, db,
                             i == 1 ? "worker 2 joining"
                                    : "worker 3 joining");
        rows = ledger_check_consistent(db, TOPIC, N_PARTITIONS);
        tk_note("worker %d joined and claimed %d partition(s) at %.1f s; "
                "ledger %" PRId64 " of %" PRId64 " produced",
                i + 1, ledger_log_count(w[i].log, "partition claimed"),
                (double)(tk_now_ms() - t0) / 1000.0, rows, s.produced);
    }

    /* Then they leave mid-stream; the remaining workers take over. */
    for (i = 1; i < N_WORKERS; i++) {
        int before;

        produce_wave(&s);
        leave(&w[i], i + 1);
        /* Counted once it has left, so that only claims of the rebalance
         * its leaving caused can satisfy the wait below. */
        before = total_claims(w, N_WORKERS);
        /* Whoever is left claims at least one partition again. */
        produce_until_claims(&s, w, N_WORKERS, 0, N_WORKERS, before + 1, db,
                             i == 1 ? "after worker 2 left"
                                    : "after worker 3 left");
        rows = ledger_check_consistent(db, TOPIC, N_PARTITIONS);
        tk_note("worker %d left cleanly; partitions reclaimed at %.1f s; "
                "ledger %" PRId64 " of %" PRId64 " produced",
                i + 1, (double)(tk_now_ms() - t0) / 1000.0, rows,
                s.produced);
    }
    produce_wave(&s);
    leave(&w[0], 1);

    /* A worker runs until everything is applied. */
    snprintf(log, sizeof log, "%s/worker-final.log", dir);
    final_pid = ledger_start_worker(config, 3000, log);
    status = tk_wait(final_pid, 60000);
    if (status == -1)
        tk_kill(final_pid, SIGKILL);
    LEDGER_CHECK_LOG(status == 0, log,
                     "final worker: exit status %d; log: %s", status, log);
    LEDGER_CHECK_LOG(ledger_read_summary(log, &fin), log,
                     "final worker printed no summary; log: %s", log);
    ledger_check_exactly_once(db, m->bootstraps, TOPIC, N_PARTITIONS,
                              s.produced, s.counts, LEDGER_ACCOUNTS);

    /* Figures: every worker left through its summary. */
    claims = total_claims(w, N_WORKERS);
    for (i = 0; i < N_WORKERS; i++) {
        LEDGER_CHECK_LOG(ledger_read_summary(w[i].log, &sums[i]), w[i].log,
                         "worker %d printed no summary; log: %s", i + 1,
                         w[i].log);
        rebalances[i] = (int)ledger_log_last_int(w[i].log, " rebalances=");
        fenced += (int)sums[i].fenced;
    }
    /* The workers' own accounting agrees: each message applied by one. */
    TK_CHECK_EQ_INT64(sums[0].applied + sums[1].applied + sums[2].applied +
                          fin.applied,
                      s.produced, "messages applied according to the "
                      "workers' summaries");
    /* Each claim bumps a partition's epoch by one (the first sets 1), so
     * the epochs count at least the claims the logs show. */
    TK_CHECK(tk_sql_int64(db, "SELECT sum(owner_epoch) FROM exactly.offsets "
                              "WHERE topic = '%s'", TOPIC) >=
                 claims + ledger_log_count(log, "partition claimed"),
             "owner epochs add up to less than the claims logged");
    tk_note("rebalance test passed: %" PRId64 " messages in %d waves; %d "
            "partition claims by workers 1-3 (+%d by the final worker); "
            "rebalance callbacks per worker: %d, %d, %d; applied per worker: "
            "%" PRId64 ", %" PRId64 ", %" PRId64 " (+%" PRId64 " final); "
            "fenced batches %d; %.1f s",
            s.produced, s.waves, claims,
            ledger_log_count(log, "partition claimed"), rebalances[0],
            rebalances[1], rebalances[2], sums[0].applied, sums[1].applied,
            sums[2].applied, fin.applied, fenced,
            (double)(tk_now_ms() - t0) / 1000.0);
    PQfinish(db);
    tk_mock_stop(m);
    ledger_cleanup_dir(dir);
    return 0;
}
