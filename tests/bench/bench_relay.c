/*
 * exactly-bench-relay: the outbox relay's throughput (scripts/bench.sh).
 *
 * From one run, against the mock cluster and the PostgreSQL of
 * EXACTLY_TEST_PG_DIR:
 *   (p) the ceiling: a tight producer loop in this process with the
 *       relay's settings (idempotent, acks=all, murmur2_random, an
 *       event-id header of 36 bytes), N records, until every delivery
 *       report arrived;
 *   (r) `exactly relay` on an outbox of N committed rows, from its start
 *       until no row is pending (rows/s), cleanup: delete;
 *   (e) end to end: outbox -> relay -> Kafka -> an `exactly worker` of the
 *       ledger pipeline with dedup on event-id, from the relay's start
 *       until the ledger holds N rows (the worker joined its group before).
 * and the ratios r/p and e/r.
 *
 * usage: exactly-bench-relay [--rows N] (default 50000)
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

#define N_PARTITIONS 4

static int64_t in_flight;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *op)
{
    (void)rk;
    (void)op;
    if (m->err)
        tk_fail("ceiling: delivery failed: %s", rd_kafka_err2str(m->err));
    in_flight--;
}

/* (p): records per second of a tight idempotent producer loop. */
static double ceiling(const char *bootstraps, int64_t n)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[512], key[32];
    static const char eid[] = "00000000-0000-4000-8000-000000000000";
    rd_kafka_t *rk;
    int64_t i, t0;

    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, err,
                          sizeof(err)) ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", err,
                          sizeof(err)) ||
        rd_kafka_conf_set(conf, "acks", "all", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "partitioner", "murmur2_random", err,
                          sizeof(err)))
        tk_fail("ceiling config: %s", err);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    TK_CHECK(rk != NULL, "ceiling producer: %s", err);
    t0 = tk_now_ms();
    for (i = 0; i < n; i++) {
        rd_kafka_headers_t *h = rd_kafka_headers_new(1);
        rd_kafka_resp_err_t e;
        int len = snprintf(key, sizeof(key), "%lld",
                           (long long)(1 + i % LEDGER_ACCOUNTS));

        rd_kafka_header_add(h, "event-id", -1, eid, -1);
        for (;;) {
            e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("bench-ceiling"),
                                  RD_KAFKA_V_KEY(key, (size_t)len),
                                  RD_KAFKA_V_HEADERS(h),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_END);
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                break;
            rd_kafka_poll(rk, 10);
        }
        TK_CHECK(e == RD_KAFKA_RESP_ERR_NO_ERROR, "produce: %s",
                 rd_kafka_err2str(e));
        in_flight++;
        rd_kafka_poll(rk, 0);
    }
    while (in_flight > 0)
        rd_kafka_poll(rk, 50);
    t0 = tk_now_ms() - t0;
    rd_kafka_destroy(rk);
    return (double)n * 1000.0 / (double)(t0 > 0 ? t0 : 1);
}

static void fill_outbox(PGconn *db, int64_t n)
{
    tk_sql(db, "INSERT INTO exactly.outbox (key) SELECT convert_to((1 + g %% "
               "%d)::text, 'UTF8') FROM generate_series(0, %lld) g",
           LEDGER_ACCOUNTS, (long long)n - 1);
}

/* Waits until q (one integer) reaches want; returns the ms it took from
 * t0. */
static int64_t wait_until(PGconn *db, const char *q, int64_t want, int64_t t0,
                          const char *log)
{
    int64_t deadline = tk_now_ms() + 600000, v;

    while ((v = tk_sql_int64(db, "%s", q)) < want) {
        LEDGER_CHECK_LOG(tk_now_ms() < deadline, log, "timed out: %s = %lld",
                         q, (long long)v);
        tk_sleep_ms(20);
    }
    return tk_now_ms() - t0;
}

int main(int argc, char **argv)
{
    ledger_fixture f;
    ledger_config c;
    PGconn *db;
    int64_t n = 50000, t0, ms_r, ms_e;
    double p, r, e;
    char relay_log[600], worker_log[600];
    pid_t relay, worker;
    int i;

    for (i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--rows") == 0)
            n = strtoll(argv[++i], NULL, 10);
    TK_CHECK(n > 0 && n <= 200000, "--rows must be 1..200000 (the mock "
                                   "keeps ~5 MiB per partition)");
    /* The pipeline reads bench-e2e only: what (r) publishes to
     * bench-relay must not count in (e). */
    ledger_fixture_start(&f, "bench_relay", "bench-e2e", N_PARTITIONS);
    tk_mock_create_topic(f.mock, "bench-ceiling", N_PARTITIONS);
    tk_mock_create_topic(f.mock, "bench-relay", N_PARTITIONS);
    memset(&c, 0, sizeof(c));
    c.max_messages = 1000;
    c.max_wait_ms = 100;
    c.pipeline_yaml = "    dedup: {from: header, header: event-id}\n";
    ledger_fixture_config(&f, &c);
    relay_config_append(f.config, &(relay_config){.name = "bench",
                                                  .topic = "bench-relay",
                                                  .batch_size = 5000,
                                                  .delete_published = 1});
    snprintf(relay_log, sizeof(relay_log), "%s/relay.log", f.dir);
    snprintf(worker_log, sizeof(worker_log), "%s/worker.log", f.dir);
    db = tk_pg_connect(f.conninfo);

    p = ceiling(tk_mock_bootstraps(f.mock), n);
    printf("(p) producer loop, same settings:  %10.0f records/s (%lld)\n",
           p, (long long)n);
    fflush(stdout);

    /* (r) the relay alone. */
    fill_outbox(db, n);
    t0 = tk_now_ms();
    relay = relay_start(f.config, NULL, relay_log);
    ms_r = wait_until(db, "SELECT -count(*) FROM exactly.outbox", 0, t0,
                      relay_log);
    tk_terminate(relay, 10000);
    r = (double)n * 1000.0 / (double)(ms_r > 0 ? ms_r : 1);
    printf("(r) exactly relay, outbox -> acked: %10.0f rows/s (%lld in %lld "
           "ms, start included)\n",
           r, (long long)n, (long long)ms_r);
    fflush(stdout);

    /* (e) end to end, the worker already in its group. */
    {
        FILE *cf = fopen(f.config, "a");
        TK_CHECK(cf != NULL, "cannot append to %s", f.config);
        fprintf(cf, "  e2e:\n    topic: bench-e2e\n"
                    "    batch_size: 5000\n    poll_interval_ms: 20\n"
                    "    table: outbox_e2e\n");
        TK_CHECK(fclose(cf) == 0, "cannot write %s", f.config);
    }
    tk_sql(db, "CREATE TABLE exactly.outbox_e2e (LIKE exactly.outbox "
               "INCLUDING ALL)");
    tk_sql(db, "INSERT INTO exactly.outbox_e2e (key) SELECT convert_to((1 + "
               "g %% %d)::text, 'UTF8') FROM generate_series(0, %lld) g",
           LEDGER_ACCOUNTS, (long long)n - 1);
    worker = ledger_start_worker(f.config, 0, worker_log);
    LEDGER_CHECK_LOG(ledger_wait_log(worker_log, "partition claimed", 1,
                                     worker, 60000, NULL),
                     worker_log, "the worker never joined");
    tk_sleep_ms(500);
    t0 = tk_now_ms();
    {
        const char *extra[] = {"--relay", "e2e", NULL};
        relay = relay_start(f.config, extra, relay_log);
    }
    ms_e = wait_until(db, "SELECT count(*) FROM ledger", n, t0, worker_log);
    tk_terminate(relay, 10000);
    tk_terminate(worker, 20000);
    e = (double)n * 1000.0 / (double)(ms_e > 0 ? ms_e : 1);
    printf("(e) outbox -> relay -> kafka -> exactly (dedup): %10.0f rows/s "
           "(%lld in %lld ms)\n",
           e, (long long)n, (long long)ms_e);
    printf("r/p = %.2f, e/r = %.2f\n", r / p, e / r);
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
