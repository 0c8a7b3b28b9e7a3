/*
 * test_metrics.c - `exactly run --metrics` during a run: the counters it
 * serves match what the test produced and what the database holds.
 *
 * A supervisor with one ledger worker consumes a produced topic; once the
 * ledger holds every message the test scrapes /metrics and checks, per
 * partition, messages consumed and applied, the stored offset (= the high
 * watermark) and lag 0, and per worker the committed batches (= the batch
 * latency histogram's count) and worker_up. /healthz and /readyz answer
 * 200. A second wave must move the counters by exactly its size. Then
 * SIGTERM, exit 0, and the exactly-once check.
 *
 * The server answers exact paths only: /metricsXYZ, /healthzz and
 * /readyz/x are 404, /metrics?x=1 is /metrics. An address without a port
 * ("127.0.0.1:") is refused (exit 2) instead of binding a port nobody
 * knows; port 0 is taken as "any free port" and the bound one is logged.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "metrics"
#define N_PARTITIONS 4
#define WAVE1 4000
#define WAVE2 1000

/* Polls until the ledger holds n rows. */
static void wait_ledger(PGconn *db, int64_t n, pid_t run, const char *log)
{
    int64_t deadline = tk_now_ms() + 90000;

    while (ledger_rows(db) < n) {
        LEDGER_CHECK_LOG(tk_now_ms() < deadline && tk_wait(run, 0) == -1, log,
                         "ledger did not reach %" PRId64 " rows (has %" PRId64 ")",
                         n, ledger_rows(db));
        tk_sleep_ms(50);
    }
}

static void check_scrape(int port, int64_t total, const int64_t *hw,
                         const char *log)
{
    char *body = NULL, match[64];
    double committed, count;
    int p;

    LEDGER_CHECK_LOG(tk_http_get(port, "/metrics", &body) == 200 && body, log,
                     "GET /metrics did not answer 200");
    TK_CHECK_EQ_INT64((int64_t)tk_metric_sum(body, "exactly_messages_consumed_total", NULL),
                      total, "messages consumed (all partitions)");
    TK_CHECK_EQ_INT64((int64_t)tk_metric_sum(body, "exactly_messages_applied_total", NULL),
                      total, "messages applied (all partitions)");
    TK_CHECK_EQ_INT64((int64_t)tk_metric_sum(body, "exactly_messages_dead_lettered_total", NULL),
                      0, "messages dead-lettered");
    for (p = 0; p < N_PARTITIONS; p++) {
        snprintf(match, sizeof(match), "partition=\"%d\"", p);
        TK_CHECK_EQ_INT64((int64_t)tk_metric_sum(body, "exactly_messages_consumed_total", match),
                          hw[p], "messages consumed of one partition");
        TK_CHECK_EQ_INT64((int64_t)tk_metric_sum(body, "exactly_partition_stored_offset", match),
                          hw[p], "stored offset of one partition");
        TK_CHECK_EQ_INT64((int64_t)tk_metric_sum(body, "exactly_partition_lag", match),
                          0, "lag of one partition");
    }
    committed = tk_metric_sum(body, "exactly_batches_committed_total", NULL);
    count = tk_metric_sum(body, "exactly_batch_duration_seconds_count", NULL);
    TK_CHECK(committed >= 1, "no committed batch counted");
    TK_CHECK_EQ_INT64((int64_t)count, (int64_t)committed,
                      "batch latency observations vs committed batches");
    TK_CHECK_EQ_INT64((int64_t)tk_metric_sum(body, "exactly_worker_up", NULL), 1,
                      "workers up");
    tk_note("scrape: %" PRId64 " messages over %d partitions, %.0f batches, "
            "lag 0 everywhere", total, N_PARTITIONS, committed);
    free(body);
}

int main(void)
{
    static const char *const kafka[] = {"session.timeout.ms", "6000",
                                        "heartbeat.interval.ms", "500", NULL};
    int64_t counts[LEDGER_ACCOUNTS] = {0}, wave[LEDGER_ACCOUNTS] = {0};
    int64_t hw[N_PARTITIONS];
    char conninfo[1024], dir[256], cfg_path[512], log[512], addr[64];
    char *body = NULL;
    ledger_config cfg;
    tk_mock *m;
    PGconn *db;
    pid_t run;
    int port, i, status;

    m = tk_mock_start(1);
    tk_mock_create_topic(m, TOPIC, N_PARTITIONS);
    tk_pg_create_db("metrics", conninfo, sizeof conninfo);
    ledger_setup_db(conninfo);
    tk_tmpdir("exactly-metrics", dir, sizeof dir);
    snprintf(cfg_path, sizeof cfg_path, "%s/run.yaml", dir);
    snprintf(log, sizeof log, "%s/run.log", dir);
    memset(&cfg, 0, sizeof cfg);
    cfg.bootstraps = m->bootstraps;
    cfg.conninfo = conninfo;
    cfg.topic = TOPIC;
    cfg.max_messages = 200;
    cfg.max_wait_ms = 20;
    cfg.kafka = kafka;
    ledger_write_config(cfg_path, &cfg);
    ledger_migrate(cfg_path, log);
    tk_produce_ids(m->bootstraps, TOPIC, WAVE1, LEDGER_ACCOUNTS, N_PARTITIONS,
                   4101, counts);
    db = tk_pg_connect(conninfo);

    port = tk_free_port();
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    {
        char *argv[] = {(char *)ledger_exactly_bin(), "run", "-c", cfg_path,
                        "--metrics", addr, "--lock-dir", dir, NULL};
        run = tk_spawn(argv, log);
    }
    /* The supervisor answers before any worker is assigned. */
    for (i = 0; i < 100 && tk_http_get(port, "/healthz", &body) != 200; i++) {
        free(body);
        body = NULL;
        tk_sleep_ms(50);
    }
    LEDGER_CHECK_LOG(body && strcmp(body, "ok\n") == 0, log, "GET /healthz did not answer ok");
    free(body);

    /* Exact paths only. */
    {
        static const char *const not_found[] = {"/metricsXYZ", "/healthzz",
                                                "/readyz/x", "/metrics/"};
        size_t k;
        for (k = 0; k < sizeof not_found / sizeof not_found[0]; k++) {
            int code = tk_http_get(port, not_found[k], &body);
            LEDGER_CHECK_LOG(code == 404, log, "GET %s answered %d, expected "
                             "404", not_found[k], code);
            free(body);
        }
        LEDGER_CHECK_LOG(tk_http_get(port, "/metrics?x=1", &body) == 200 &&
                             strstr(body, "# TYPE exactly_worker_up gauge"),
                         log, "GET /metrics?x=1 is not /metrics");
        free(body);
    }

    wait_ledger(db, WAVE1, run, log);
    ledger_high_watermarks(m->bootstraps, TOPIC, N_PARTITIONS, hw);
    TK_CHECK_EQ_INT64(tk_http_get(port, "/readyz", &body), 200,
                      "/readyz while assigned and connected");
    free(body);
    /* Offsets are published after each commit: wait for the last ones. */
    tk_sleep_ms(200);
    check_scrape(port, WAVE1, hw, log);

    tk_produce_ids(m->bootstraps, TOPIC, WAVE2, LEDGER_ACCOUNTS, N_PARTITIONS,
                   4102, wave);
    for (i = 0; i < LEDGER_ACCOUNTS; i++)
        counts[i] += wave[i];
    wait_ledger(db, WAVE1 + WAVE2, run, log);
    ledger_high_watermarks(m->bootstraps, TOPIC, N_PARTITIONS, hw);
    tk_sleep_ms(200);
    check_scrape(port, WAVE1 + WAVE2, hw, log);

    TK_CHECK(tk_kill(run, SIGTERM) == 0, "cannot signal the supervisor");
    status = tk_wait(run, 30000);
    LEDGER_CHECK_LOG(status == 0, log, "exactly run exited %d after SIGTERM", status);

    /* No port: refused. Port 0: a free port, and the log says which. */
    {
        char nolog[512], zlog[512], *text, *at;
        pid_t r;
        char *argv[] = {(char *)ledger_exactly_bin(), "run", "-c", cfg_path,
                        "--metrics", "127.0.0.1:", "--lock-dir", dir, NULL};
        snprintf(nolog, sizeof nolog, "%s/noport.log", dir);
        r = tk_spawn(argv, nolog);
        status = tk_wait(r, 15000);
        if (status == -1)
            (void)tk_terminate(r, 30000);
        LEDGER_CHECK_LOG(status == 2, nolog, "--metrics 127.0.0.1: exited "
                         "%d, expected 2 (no port given)", status);
        LEDGER_CHECK_LOG(tk_file_contains(nolog, "port"), nolog,
                         "the refusal of \"127.0.0.1:\" does not say port");
        snprintf(zlog, sizeof zlog, "%s/port0.log", dir);
        argv[5] = "127.0.0.1:0";
        r = tk_spawn(argv, zlog);
        LEDGER_CHECK_LOG(ledger_wait_log(zlog, "serving metrics", 1, r, 15000,
                                         NULL), zlog,
                         "no \"serving metrics\" line with port 0");
        text = tk_read_file(zlog);
        at = text ? strstr(text, "address=127.0.0.1:") : NULL;
        port = at ? atoi(at + strlen("address=127.0.0.1:")) : 0;
        free(text);
        LEDGER_CHECK_LOG(port > 0 && tk_http_get(port, "/healthz", &body) == 200,
                         zlog, "the logged metrics address (port %d) does "
                         "not answer", port);
        free(body);
        status = tk_terminate(r, 30000);
        LEDGER_CHECK_LOG(status == 0, zlog, "exactly run exited %d", status);
        tk_note("missing port refused; port 0 bound and logged as %d", port);
    }
    ledger_check_exactly_once(db, m->bootstraps, TOPIC, N_PARTITIONS,
                              WAVE1 + WAVE2, counts, LEDGER_ACCOUNTS);
    PQfinish(db);
    tk_mock_stop(m);
    ledger_cleanup_dir(dir);
    printf("test_metrics: ok\n");
    return 0;
}
