/*
 * test_metrics_fresh.c - a worker's per-partition gauges tell the truth
 * between its commits, and after it lets a partition go.
 *
 * lag: `exactly run --metrics` on one partition. Another session holds
 * an ACCESS EXCLUSIVE lock on the ledger and the pipeline's lock_timeout
 * is 200 ms, so every batch fails and backs off. 50 messages produced
 * meanwhile are fetched but not committed: exactly_partition_lag must
 * show them within 15 s (it was 0 after the last commit). Once the lock
 * goes, everything commits and the lag is 0 again.
 *
 * revoked: `exactly run --metrics` (A) on two partitions holds a batch
 * for each (max_wait_ms of 10 minutes) when a second worker (B, an
 * `exactly worker` of its own) joins the group. A's revoke commits both
 * batches and the group splits the partitions. A's /metrics must then
 * show no gauge of the partition B got (A no longer owns it) and one
 * stored-offset series, equal to the stored offset, for the one it kept.
 *
 * EXACTLY_TEST_ONLY=lag or =revoked runs one of them.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define SEED 11

/* Starts `exactly run -c config --metrics 127.0.0.1:port` and waits until
 * it serves metrics and its worker claimed `claims` partitions. */
static pid_t start_run(ledger_fixture *f, int port, int claims)
{
    char addr[32];
    pid_t run;

    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    {
        char *argv[] = {(char *)ledger_exactly_bin(), "run", "-c", f->config,
                        "--metrics", addr, "--lock-dir", f->dir, NULL};
        run = tk_spawn(argv, f->log);
    }
    LEDGER_CHECK_LOG(tk_wait_log(f->log, "serving metrics", 1, run, 15000,
                                 NULL),
                     f->log, "exactly run did not serve metrics");
    tk_wait_claims(f->log, 0, claims, run, 30000);
    return run;
}

/* The sum of metric name's samples for partition p in a scrape of port,
 * and their count in *n; -1 (and *n 0) when /metrics does not answer. */
static double partition_metric(int port, const char *name, int p, int *n)
{
    char match[32], *text = tk_metrics_scrape(port);
    double v;

    *n = 0;
    if (!text)
        return -1;
    snprintf(match, sizeof match, "partition=\"%d\"", p);
    v = tk_metric_sum_n(text, name, match, n);
    free(text);
    return v;
}

/* Scrapes until partition p's lag is at least want or timeout_ms passed;
 * returns the last lag seen (-1: none). */
static double wait_lag(int port, int p, double want, int timeout_ms)
{
    int64_t until = tk_now_ms() + timeout_ms;
    double lag = -1;
    int n;

    for (;;) {
        lag = partition_metric(port, "exactly_partition_lag", p, &n);
        if (n == 1 && lag >= want)
            return lag;
        if (tk_now_ms() >= until)
            return n == 1 ? lag : -1;
        tk_sleep_ms(200);
    }
}

static void case_lag(void)
{
    static const char *const kafka[] = {"session.timeout.ms", "6000",
                                        "heartbeat.interval.ms", "500", NULL};
    ledger_fixture f;
    ledger_config cfg;
    static int64_t counts[LEDGER_ACCOUNTS];
    PGconn *db, *locker;
    int port = tk_free_port(), n = 0, status;
    double lag;
    pid_t run;

    ledger_fixture_start(&f, "metrics_fresh_lag", "fresh_lag", 1);
    memset(&cfg, 0, sizeof cfg);
    cfg.max_messages = 100;
    cfg.max_wait_ms = 20;
    cfg.lock_timeout_ms = 200;
    cfg.kafka = kafka;
    ledger_fixture_config(&f, &cfg);
    db = tk_pg_connect(f.conninfo);
    run = start_run(&f, port, 1);

    ledger_produce_wave(&f, 10, SEED, counts);
    LEDGER_CHECK_LOG(tk_sql_wait_int64(db, 10, 30000, "SELECT coalesce(sum("
                                       "next_offset), 0) FROM exactly.offsets")
                         == 10,
                     f.log, "lag: the first 10 messages were not committed");
    lag = wait_lag(port, 0, 0, 5000);
    LEDGER_CHECK_LOG(lag == 0, f.log, "lag: %g after the first commit, "
                     "expected 0", lag);

    locker = tk_pg_connect(f.conninfo);
    tk_sql(locker, "BEGIN; LOCK TABLE ledger IN ACCESS EXCLUSIVE MODE");
    ledger_produce_wave(&f, 50, SEED + 1, counts);
    lag = wait_lag(port, 0, 50, 15000);
    LEDGER_CHECK_LOG(
        tk_sql_int64(db, "SELECT next_offset FROM exactly.offsets") == 10, f.log,
        "lag: a batch committed though the ledger was locked");
    LEDGER_CHECK_LOG(lag >= 50, f.log,
                     "lag: 15000 ms after 50 messages were produced that "
                     "cannot commit, exactly_partition_lag is %g: the gauge "
                     "shows the log's end as of the last commit", lag);
    tk_note("lag: %g with 50 messages fetched and not committed", lag);

    tk_sql(locker, "COMMIT");
    PQfinish(locker);
    LEDGER_CHECK_LOG(tk_sql_wait_int64(db, 60, 60000, "SELECT next_offset "
                                       "FROM exactly.offsets") == 60,
                     f.log, "lag: the 50 messages did not commit after the "
                     "lock went");
    lag = partition_metric(port, "exactly_partition_lag", 0, &n);
    {
        int64_t until = tk_now_ms() + 5000;
        while ((n != 1 || lag != 0) && tk_now_ms() < until) {
            tk_sleep_ms(200);
            lag = partition_metric(port, "exactly_partition_lag", 0, &n);
        }
    }
    LEDGER_CHECK_LOG(n == 1 && lag == 0, f.log, "lag: %g (%d series) after "
                     "everything committed, expected 0", lag, n);
    status = tk_terminate(run, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log, "lag: exactly run exited %d", status);
    ledger_check_exactly_once(db, tk_mock_bootstraps(f.mock), f.topic, 1, 60,
                              counts, LEDGER_ACCOUNTS);
    PQfinish(db);
    ledger_fixture_stop(&f);
}

static void case_revoked(void)
{
    static int64_t counts[LEDGER_ACCOUNTS];
    ledger_fixture f;
    ledger_config cfg;
    PGconn *db;
    char blog[600], owner_b[64];
    int port = tk_free_port(), n_b = 0, n_a = 0, status;
    int64_t p_b;
    double stored_a;
    pid_t run, b;

    ledger_fixture_start(&f, "metrics_fresh_revoked", "fresh_revoked", 2);
    memset(&cfg, 0, sizeof cfg);
    cfg.max_messages = 1000;
    cfg.max_wait_ms = 600000;
    cfg.kafka = ledger_short_session;
    ledger_fixture_config(&f, &cfg);
    db = tk_pg_connect(f.conninfo);
    run = start_run(&f, port, 2);

    /* 10 messages per partition, held in A's buffers. */
    ledger_produce_wave(&f, 20, SEED, counts);
    tk_sleep_ms(3000);
    LEDGER_CHECK_LOG(tk_sql_int64(db, "SELECT coalesce(sum(next_offset), 0) "
                                      "FROM exactly.offsets") == 0,
                     f.log, "revoked: a batch committed before the rebalance "
                     "(max_wait_ms is 10 minutes)");

    snprintf(blog, sizeof blog, "%s/b.log", f.dir);
    b = tk_worker_start(f.config, 0, blog, NULL);
    tk_wait_claims(blog, 0, 1, b, 60000);
    snprintf(owner_b, sizeof owner_b, "%%:%d:%%", (int)b);
    LEDGER_CHECK_LOG(tk_sql_wait_int64(db, 20, 30000, "SELECT coalesce(sum("
                                       "next_offset), 0) FROM exactly.offsets")
                         == 20,
                     f.log, "revoked: A's revoke did not commit its batches");
    LEDGER_CHECK_LOG(tk_sql_wait_int64(db, 1, 30000, "SELECT count(*) FROM "
                                       "exactly.offsets WHERE owner LIKE '%s'",
                                       owner_b) == 1,
                     blog, "revoked: B owns no partition in exactly.offsets");
    p_b = tk_sql_int64(db, "SELECT partition FROM exactly.offsets WHERE "
                           "owner LIKE '%s'", owner_b);
    /* A's gauges settle within its publishing pace. */
    tk_sleep_ms(1000);
    (void)partition_metric(port, "exactly_partition_stored_offset", (int)p_b,
                           &n_b);
    stored_a = partition_metric(port, "exactly_partition_stored_offset",
                                (int)(1 - p_b), &n_a);
    LEDGER_CHECK_LOG(n_a == 1 && stored_a == 10, f.log,
                     "revoked: A's /metrics has %d stored-offset series for "
                     "partition %d, which it kept (value %g, expected one of "
                     "10)", n_a, (int)(1 - p_b), stored_a);
    LEDGER_CHECK_LOG(n_b == 0, f.log,
                     "revoked: A's /metrics still has %d stored-offset "
                     "series for partition %" PRId64 ", which B owns: the "
                     "revoke's commit marked it assigned again", n_b, p_b);
    tk_note("revoked: B owns partition %" PRId64 "; A's /metrics shows only "
            "partition %d", p_b, (int)(1 - p_b));

    status = tk_terminate(b, 30000);
    LEDGER_CHECK_LOG(status == 0, blog, "revoked: B exited %d", status);
    status = tk_terminate(run, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log, "revoked: A exited %d", status);
    ledger_check_exactly_once(db, tk_mock_bootstraps(f.mock), f.topic, 2, 20,
                              counts, LEDGER_ACCOUNTS);
    PQfinish(db);
    ledger_fixture_stop(&f);
}

int main(void)
{
    if (tk_wanted("lag"))
        case_lag();
    if (tk_wanted("revoked"))
        case_revoked();
    tk_note("metrics_fresh passed");
    return 0;
}
