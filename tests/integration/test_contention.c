/*
 * Lock contention between workers: deadlocks (40P01) and lock timeouts
 * (55P03) are transient; the runtime rolls the batch back and retries it,
 * and nothing is lost or applied twice.
 *
 * Three workers of one consumer group share six partitions. Their handler
 * (tests/plugins/contention.c) writes the ledger and, in the same transaction,
 * adds the batch's message count to every row of a small shared table
 * `hot`, one UPDATE per row, in an order that differs between partitions
 * (up from one key for even partitions, down for odd ones), sleeping
 * HOLD_MS after each with the lock held. Transactions of different workers
 * thus wait for each other in cycles: PostgreSQL breaks each cycle by
 * failing one transaction with 40P01 (deadlock_timeout is lowered for the
 * test database so that it does so quickly), and waits longer than the
 * pipeline's lock_timeout_ms fail with 55P03.
 *
 * The three workers are those of one `exactly run --metrics` supervisor
 * (workers: 3). Messages are produced once every worker holds partitions,
 * so that the three run side by side. When everything is applied the test
 * scrapes /metrics, stops the supervisor (SIGTERM, exit 0) and asserts:
 *   - exactly-once (the ledger check);
 *   - every hot row equals the number of messages produced, exactly: a
 *     retried batch counted twice or a rolled-back one counted at all
 *     would show there;
 *   - at least one batch was rolled back with 40P01 or 55P03 (counted
 *     from the workers' `batch rolled back` lines, printed per SQLSTATE);
 *   - the metrics say so too: exactly_transaction_retries_total counts the
 *     deadlocks under cause="deadlock" and the lock timeouts under
 *     cause="timeout", as many as the log shows.
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

#define TOPIC "contention"
#define N_PARTITIONS 6
#define N_WORKERS 3
#define N_IDS 12000
#define SEED 4711
#define BATCH_MAX 50
#define BATCH_WAIT_MS 20
#define HOT_KEYS 4
/* Long enough that transactions of different workers overlap on the hot
 * rows, short enough that the run takes seconds. */
#define HOLD_MS 3
/* Some waits outlast this (three workers queue on the same rows); most do
 * not, so batches still get through. */
#define LOCK_TIMEOUT_MS 30
/* PostgreSQL checks for a deadlock only after waiting this long (default
 * 1 s, which would make every deadlock cost a second). */
#define DEADLOCK_TIMEOUT "20ms"
#define JOIN_TIMEOUT_MS 60000
#define DRAIN_TIMEOUT_MS 150000

static const char *const kafka_overrides[] = {
    "session.timeout.ms", "6000", "heartbeat.interval.ms", "500", NULL};

/* Point the config ledger_write_config wrote at the contention plugin,
 * with its options. */
static void config_use_contention(const char *path)
{
    static const char from[] = "/ledger.so'";
    char *text = tk_read_file(path);
    char *at;
    FILE *f;

    TK_CHECK(text != NULL, "cannot read %s", path);
    at = strstr(text, from);
    TK_CHECK(at != NULL, "no ledger.so plugin line in %s", path);
    f = fopen(path, "w");
    TK_CHECK(f != NULL, "cannot write %s", path);
    fprintf(f, "%.*s/contention.so'\n      options: {hot_keys: %d, "
               "hold_ms: %d}%s",
            (int)(at - text), text, HOT_KEYS, HOLD_MS, at + strlen(from));
    TK_CHECK(fclose(f) == 0, "cannot write %s", path);
    free(text);
}

/* SQLSTATEs of a log's `batch rolled back` lines. */
typedef struct rollbacks {
    int deadlock;     /* 40P01 */
    int lock_timeout; /* 55P03 */
    int other;
    char other_desc[256];
} rollbacks;

static void count_rollbacks(const char *log, rollbacks *rb)
{
    char *text = tk_read_file(log);
    char *line, *save = NULL;

    if (!text)
        return;
    for (line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        const char *st;

        if (!strstr(line, "batch rolled back"))
            continue;
        st = strstr(line, "sqlstate=");
        st = st ? st + 9 : "?";
        if (strncmp(st, "40P01", 5) == 0) {
            rb->deadlock++;
        } else if (strncmp(st, "55P03", 5) == 0) {
            rb->lock_timeout++;
        } else {
            size_t used = strlen(rb->other_desc);
            if (rb->other++ < 5 && used < sizeof rb->other_desc)
                snprintf(rb->other_desc + used, sizeof rb->other_desc - used,
                         " %.5s", st);
        }
    }
    free(text);
}

/* Every worker=N of the supervisor's log has claimed a partition. */
static int all_claimed(const char *log)
{
    char *text = tk_read_file(log);
    char *line, *save = NULL;
    int seen[N_WORKERS] = {0}, w, n = 0;

    if (!text)
        return 0;
    for (line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        const char *at = strstr(line, " worker=");
        if (!strstr(line, "partition claimed") || !at)
            continue;
        w = atoi(at + 8);
        if (w >= 0 && w < N_WORKERS)
            seen[w] = 1;
    }
    free(text);
    for (w = 0; w < N_WORKERS; w++)
        n += seen[w];
    return n == N_WORKERS;
}

/* Adds up every worker summary line of the log. */
static void sum_summaries(const char *log, ledger_summary *total, int *n)
{
    tk_run_summary all[64];
    int i;

    memset(total, 0, sizeof *total);
    TK_CHECK(access(log, R_OK) == 0, "cannot read %s", log);
    *n = tk_summaries(log, LEDGER_PIPELINE, all, 64);
    TK_CHECK(*n <= 64, "%d summary lines in %s", *n, log);
    for (i = 0; i < *n; i++) {
        total->applied += all[i].applied;
        total->committed += all[i].committed;
        total->rolled_back += all[i].rolled_back;
        total->retries += all[i].retries;
    }
}

int main(void)
{
    char dir[256], config[512], conninfo[1024], listen[64], port_s[16];
    char log[512], mlog[512];
    int64_t counts[LEDGER_ACCOUNTS] = {0};
    int64_t t0 = tk_now_ms(), deadline, rows, bad, min_n, max_n;
    ledger_summary sum;
    rollbacks rb;
    ledger_config cfg;
    pid_t pid;
    PGconn *db;
    tk_mock *m;
    char *body = NULL;
    double m_deadlock, m_timeout;
    int port, n_sum, status;

    m = tk_mock_start(1);
    tk_mock_create_topic(m, TOPIC, N_PARTITIONS);
    tk_pg_create_db("contention", conninfo, sizeof conninfo);
    ledger_setup_db(conninfo);
    db = tk_pg_connect(conninfo);
    tk_sql(db, "CREATE TABLE hot (k int PRIMARY KEY, n bigint NOT NULL "
               "DEFAULT 0);"
               "INSERT INTO hot (k) SELECT generate_series(1, %d)",
           HOT_KEYS);
    /* For the workers' sessions (new connections of this database). */
    tk_sql(db, "DO $$ BEGIN EXECUTE format('ALTER DATABASE %%I SET "
               "deadlock_timeout = %%L', current_database(), '%s'); END $$",
           DEADLOCK_TIMEOUT);

    tk_tmpdir("exactly-contention", dir, sizeof dir);
    snprintf(config, sizeof config, "%s/worker.yaml", dir);
    memset(&cfg, 0, sizeof cfg);
    cfg.bootstraps = m->bootstraps;
    cfg.conninfo = conninfo;
    cfg.topic = TOPIC;
    cfg.max_messages = BATCH_MAX;
    cfg.max_wait_ms = BATCH_WAIT_MS;
    cfg.lock_timeout_ms = LOCK_TIMEOUT_MS;
    cfg.kafka = kafka_overrides;
    cfg.pipeline_yaml = "    workers: 3\n";
    ledger_write_config(config, &cfg);
    config_use_contention(config);
    snprintf(mlog, sizeof mlog, "%s/migrate.log", dir);
    ledger_migrate(config, mlog);

    snprintf(log, sizeof log, "%s/run.log", dir);
    port = tk_free_port();
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    snprintf(port_s, sizeof port_s, "%d", port);
    {
        char *argv[] = {(char *)ledger_exactly_bin(), "run", "-c", config,
                        "--metrics", listen, NULL};
        pid = tk_spawn(argv, log);
    }
    /* Every worker holds partitions before there is work, so that they
     * contend from the first batch on. */
    deadline = tk_now_ms() + JOIN_TIMEOUT_MS;
    while (!all_claimed(log)) {
        LEDGER_CHECK_LOG(tk_now_ms() < deadline && tk_wait(pid, 0) == -1, log,
                         "not every worker claimed a partition within %d ms",
                         JOIN_TIMEOUT_MS);
        tk_sleep_ms(50);
    }
    tk_produce_ids(m->bootstraps, TOPIC, N_IDS, LEDGER_ACCOUNTS, N_PARTITIONS,
                   SEED, counts);
    tk_note("%d workers hold partitions; produced %d ids over %d partitions; "
            "logs in %s", N_WORKERS, N_IDS, N_PARTITIONS, dir);

    deadline = tk_now_ms() + DRAIN_TIMEOUT_MS;
    while ((rows = ledger_rows(db)) < N_IDS) {
        LEDGER_CHECK_LOG(tk_wait(pid, 0) == -1, log,
                         "the supervisor exited before the topic was "
                         "applied");
        LEDGER_CHECK_LOG(tk_now_ms() < deadline, log,
                         "ledger at %" PRId64 " of %d rows after %d ms; "
                         "logs in %s", rows, N_IDS, DRAIN_TIMEOUT_MS, dir);
        tk_sleep_ms(50);
    }
    LEDGER_CHECK_LOG(tk_http_get(port, "/metrics", &body) == 200 && body, log,
                     "GET /metrics on port %d failed", port);
    m_deadlock = tk_metric_sum(body, "exactly_transaction_retries_total",
                               "cause=\"deadlock\"");
    m_timeout = tk_metric_sum(body, "exactly_transaction_retries_total",
                              "cause=\"timeout\"");
    free(body);
    status = tk_terminate(pid, 30000);
    LEDGER_CHECK_LOG(status == 0, log, "supervisor: exit status %d after "
                     "SIGTERM, expected 0", status);
    sum_summaries(log, &sum, &n_sum);
    LEDGER_CHECK_LOG(n_sum >= N_WORKERS, log, "%d worker summaries, expected "
                     "%d", n_sum, N_WORKERS);

    ledger_check_exactly_once(db, m->bootstraps, TOPIC, N_PARTITIONS, N_IDS,
                              counts, LEDGER_ACCOUNTS);
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM hot"), HOT_KEYS,
                      "rows in hot");
    bad = tk_sql_int64(db, "SELECT count(*) FROM hot WHERE n <> %d", N_IDS);
    min_n = tk_sql_int64(db, "SELECT min(n) FROM hot");
    max_n = tk_sql_int64(db, "SELECT max(n) FROM hot");
    TK_CHECK(bad == 0, "%" PRId64 " of %d hot rows differ from the %d "
             "messages produced (min %" PRId64 ", max %" PRId64 "): a "
             "batch's shared-row update was lost or applied twice",
             bad, HOT_KEYS, N_IDS, min_n, max_n);

    memset(&rb, 0, sizeof rb);
    count_rollbacks(log, &rb);
    tk_note("workers: applied %" PRId64 ", batches committed %" PRId64
            ", rolled back %" PRId64 " (40P01 %d, 55P03 %d, other %d%s), "
            "retries %" PRId64 "; metrics: deadlock %.0f, timeout %.0f",
            sum.applied, sum.committed, sum.rolled_back, rb.deadlock,
            rb.lock_timeout, rb.other, rb.other_desc, sum.retries,
            m_deadlock, m_timeout);
    TK_CHECK(rb.deadlock + rb.lock_timeout > 0,
             "no batch was rolled back with 40P01 (deadlock) or 55P03 (lock "
             "timeout): the test did not provoke the contention it is "
             "about; logs in %s", dir);
    /* The scrape came before the stop, so it may lag the log by the
     * retries of the last moments, never lead it. */
    TK_CHECK(m_deadlock > 0 || rb.deadlock == 0,
             "%d deadlocks in the log, but exactly_transaction_retries_total"
             "{cause=\"deadlock\"} is %.0f", rb.deadlock, m_deadlock);
    TK_CHECK(m_timeout > 0 || rb.lock_timeout == 0,
             "%d lock timeouts in the log, but exactly_transaction_retries_"
             "total{cause=\"timeout\"} is %.0f", rb.lock_timeout, m_timeout);
    TK_CHECK(m_deadlock <= rb.deadlock && m_timeout <= rb.lock_timeout,
             "metrics count more retries (deadlock %.0f, timeout %.0f) than "
             "the log (%d, %d)", m_deadlock, m_timeout, rb.deadlock,
             rb.lock_timeout);
    tk_note("contention test passed: %d workers on %d partitions, %d "
            "messages; retries by SQLSTATE: 40P01 (deadlock) %d, 55P03 "
            "(lock timeout) %d, other %d; all %d hot rows = %d; %.1f s",
            N_WORKERS, N_PARTITIONS, N_IDS, rb.deadlock, rb.lock_timeout,
            rb.other, HOT_KEYS, N_IDS, (double)(tk_now_ms() - t0) / 1000.0);
    PQfinish(db);
    tk_mock_stop(m);
    ledger_cleanup_dir(dir);
    return 0;
}
