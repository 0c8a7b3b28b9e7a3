/*
 * Kafka faults injected into the mock cluster while one ledger worker
 * consumes (DESIGN 3: Kafka trouble that is not fatal must not stop a
 * worker; errors are logged once per episode, not once per poll).
 *
 * A producer thread keeps producing waves of messages for the whole run,
 * through every fault (a wave produced while a broker is down is delivered
 * when it is back: the producer is idempotent, so retries add nothing).
 * Meanwhile the main thread, once the worker makes progress, injects in
 * turn:
 *
 *   1. broker_down   rd_kafka_mock_broker_set_down for BROKER_DOWN_MS, then
 *                    set_up;
 *   2. fetch         Fetch (ApiKey 1) answered NOT_LEADER_FOR_PARTITION a
 *                    few times (the consumer refreshes metadata and retries);
 *   3. heartbeat     Heartbeat (ApiKey 12) answered COORDINATOR_NOT_AVAILABLE
 *                    and NOT_COORDINATOR (coordinator re-query), then
 *                    REBALANCE_IN_PROGRESS (the member rejoins: partitions
 *                    are revoked and claimed again, epochs bumped);
 *   4. joingroup     JoinGroup (ApiKey 11) answered COORDINATOR_LOAD_IN_
 *                    PROGRESS a few times, reached by forcing one more
 *                    rejoin with a Heartbeat REBALANCE_IN_PROGRESS.
 *
 * Before each fault the worker has caught up with what was delivered; once
 * the fault is over (broker up, every pushed error answered, which the
 * broker's error stack count tells) the worker must still run and apply
 * messages produced after it (it resumed); after a forced rejoin it must
 * have claimed all partitions again. At the end the producer stops, the worker drains the
 * topic, stops on SIGTERM with exit 0, and ledger_check_exactly_once holds:
 * every produced message applied once, offsets at the partition ends, no
 * dead letters. The log must name the broker outage a bounded number of
 * times: the worker says a Kafka error once per episode (a new error code,
 * or a minute of silence), so a 3 s outage polled hundreds of times gives a
 * handful of "consumer error" lines, not hundreds.
 *
 * One broker: the mock of librdkafka 2.0.2 stays usable when its only
 * broker goes down and comes back (clients reconnect; the topic and the
 * group state survive, since set_down only closes the listener and its
 * connections), and with one broker the outage hits everything at once:
 * every partition leader and the group coordinator. With several brokers
 * set_down does not move leadership, so only some partitions would stall
 * while the rest flowed, which tests less.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

/* Kafka protocol ApiKeys (rdkafka_mock.h takes the number; the enum lives
 * in librdkafka's private rdkafka_protocol.h). */
#define APIKEY_FETCH 1
#define APIKEY_JOINGROUP 11
#define APIKEY_HEARTBEAT 12

#define TOPIC "kafka_faults"
#define N_PARTITIONS 4
#define BROKER_ID 1
#define BROKER_DOWN_MS 3000
#define INITIAL_MSGS 6000
#define WAVE_MSGS 200
#define WAVE_PAUSE_MS 150
/* How long the worker may take to catch up after a fault: a forced rejoin
 * costs a group join (~3 s on the mock), and after an outage librdkafka
 * reconnects on its own exponential backoff (reconnect.backoff.max.ms,
 * 10 s by default; measured here: the fetch connection retried ~5 s after
 * the broker was back). */
#define RESUME_TIMEOUT_MS 60000
/* Upper bounds on log lines about Kafka errors over the whole run: one per
 * episode and error code, with several codes per fault. Hundreds would
 * mean one per poll. */
#define MAX_CONSUMER_ERROR_LINES 12
/* ... and for the broker outage alone: librdkafka reports a few codes in
 * turn (_TRANSPORT, _ALL_BROKERS_DOWN, _TRANSPORT again for the group
 * coordinator's connection); each change of code is a line. */
#define MAX_OUTAGE_ERROR_LINES 4
/* All comp=kafka lines, librdkafka's own warnings and errors included
 * (it suppresses repeats of a connect failure itself). */
#define MAX_KAFKA_LINES 60

/* A forced rejoin must not wait for long sessions to time out. The last
 * pair is filled from EXACTLY_TEST_KAFKA_DEBUG (librdkafka's `debug`
 * contexts, e.g. "broker,fetch,cgrp") to see what the client did. */
static const char *kafka_overrides[] = {
    "session.timeout.ms", "6000", "heartbeat.interval.ms", "500",
    NULL, NULL, NULL};

/* ------------------------------------------------------------------ */
/* The producer thread                                                 */
/* ------------------------------------------------------------------ */

static struct {
    pthread_mutex_t lock;
    const char *bootstraps;
    atomic_int stop;
    int64_t produced;                 /* delivered messages */
    int64_t counts[LEDGER_ACCOUNTS];  /* per entity, delivered */
    int waves;
    int64_t longest_wave_ms;
} prod = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, {0}, 0, 0};

static void add_wave(const int64_t *wave, int64_t n, int64_t ms)
{
    int i;

    pthread_mutex_lock(&prod.lock);
    for (i = 0; i < LEDGER_ACCOUNTS; i++)
        prod.counts[i] += wave[i];
    prod.produced += n;
    prod.waves++;
    if (ms > prod.longest_wave_ms)
        prod.longest_wave_ms = ms;
    pthread_mutex_unlock(&prod.lock);
}

/* Waves of WAVE_MSGS until told to stop. tk_produce_ids returns only when
 * every message of the wave is delivered (or fails the test), so a wave
 * that starts during an outage spans it. */
static void *producer_main(void *arg)
{
    int64_t wave[LEDGER_ACCOUNTS];
    uint64_t seed = 1000;

    (void)arg;
    while (!atomic_load(&prod.stop)) {
        int64_t t = tk_now_ms();
        tk_produce_ids(prod.bootstraps, TOPIC, WAVE_MSGS, LEDGER_ACCOUNTS,
                       N_PARTITIONS, seed++, wave);
        add_wave(wave, WAVE_MSGS, tk_now_ms() - t);
        tk_sleep_ms(WAVE_PAUSE_MS);
    }
    return NULL;
}

static int64_t produced_now(void)
{
    int64_t n;

    pthread_mutex_lock(&prod.lock);
    n = prod.produced;
    pthread_mutex_unlock(&prod.lock);
    return n;
}

/* ------------------------------------------------------------------ */
/* Watching the worker                                                 */
/* ------------------------------------------------------------------ */

typedef struct run {
    PGconn *db;
    pid_t pid;
    const char *log;
    int64_t t0;
} run;

static void check_alive(const run *r, const char *when)
{
    int status = tk_wait(r->pid, 0);

    LEDGER_CHECK_LOG(status == -1, r->log,
                     "the worker exited with status %d %s; log %s", status,
                     when, r->log);
}

/* Wait until the ledger holds at least `target` rows, the worker alive all
 * the while. Returns the rows seen and the time it took. */
static int64_t wait_rows(const run *r, int64_t target, const char *what,
                         int64_t *took_ms)
{
    int64_t start = tk_now_ms(), rows;

    while ((rows = ledger_rows(r->db)) < target) {
        check_alive(r, what);
        LEDGER_CHECK_LOG(tk_now_ms() - start < RESUME_TIMEOUT_MS, r->log,
                         "%s: the ledger stays at %" PRId64 " rows, below %"
                         PRId64 ", for %d ms (produced so far: %" PRId64 ")",
                         what, rows, target, RESUME_TIMEOUT_MS,
                         produced_now());
        tk_sleep_ms(50);
    }
    if (took_ms)
        *took_ms = tk_now_ms() - start;
    return rows;
}

/* What one fault did, for the closing figures. */
typedef struct phase {
    const char *name;
    int64_t injected_ms;   /* since the test started */
    int64_t served_ms;     /* fault over (broker up, errors all served) */
    int64_t resume_ms;     /* from then until the worker caught up */
    int consumer_errors;   /* "consumer error" lines logged meanwhile */
    int kafka_lines;       /* comp=kafka lines logged meanwhile */
    int claims_before;     /* "partition claimed" lines before it */
    int claims;            /* partitions claimed meanwhile (rejoins) */
} phase;

/* Lines of the log holding needle. */
static int log_lines(const char *log, const char *needle)
{
    return ledger_log_count(log, needle);
}

/* Before a fault: the worker has applied everything delivered so far
 * (the producer goes on), so that what it applies after the fault is new. */
static void begin_fault(const run *r, phase *ph, const char *name)
{
    int64_t took;

    memset(ph, 0, sizeof *ph);
    ph->name = name;
    wait_rows(r, produced_now(), "catching up before a fault", &took);
    ph->consumer_errors = -log_lines(r->log, "consumer error");
    ph->kafka_lines = -log_lines(r->log, "comp=kafka");
    ph->claims_before = log_lines(r->log, "partition claimed");
    ph->injected_ms = tk_now_ms() - r->t0;
}

/* Wait until the broker's error stack for api_key is empty: the worker
 * sent one request per pushed error and got each error back. */
static void wait_served(const run *r, rd_kafka_mock_cluster_t *mc,
                        int16_t api_key, const char *what)
{
    int64_t start = tk_now_ms();
    size_t left = 1;

    for (;;) {
        TK_CHECK(rd_kafka_mock_broker_error_stack_cnt(mc, BROKER_ID, api_key,
                                                      &left) ==
                     RD_KAFKA_RESP_ERR_NO_ERROR,
                 "rd_kafka_mock_broker_error_stack_cnt");
        if (left == 0)
            break;
        check_alive(r, what);
        LEDGER_CHECK_LOG(tk_now_ms() - start < RESUME_TIMEOUT_MS, r->log,
                         "%s: %zu injected errors still unserved after %d ms "
                         "(the worker stopped sending such requests)",
                         what, left, RESUME_TIMEOUT_MS);
        tk_sleep_ms(20);
    }
}

/* After a fault that forces a rejoin: wait until the worker has claimed
 * `want` partitions since the fault began. The worker may catch up on the
 * ledger before the coordinator has answered its JoinGroup, so catching up
 * says nothing about the rejoin; the claim lines do. Returns the claims seen
 * (fewer than want only after RESUME_TIMEOUT_MS). */
static int wait_claims(const run *r, phase *ph, int want)
{
    int status = -1;

    tk_wait_log(r->log, "partition claimed", ph->claims_before + want, r->pid,
                RESUME_TIMEOUT_MS, &status);
    LEDGER_CHECK_LOG(status == -1, r->log,
                     "%s: the worker exited with status %d waiting for its "
                     "rejoin", ph->name, status);
    ph->claims = log_lines(r->log, "partition claimed") - ph->claims_before;
    return ph->claims;
}

/* After a fault: still running, and applying again: the ledger reaches
 * what was delivered by then plus a wave more, i.e. messages produced
 * after the fault. */
static void end_fault(const run *r, phase *ph)
{
    int64_t target, rows, took;

    ph->served_ms = tk_now_ms() - r->t0;
    check_alive(r, ph->name);
    target = produced_now() + WAVE_MSGS;
    rows = wait_rows(r, target, ph->name, &took);
    ph->resume_ms = took;
    ph->consumer_errors += log_lines(r->log, "consumer error");
    ph->kafka_lines += log_lines(r->log, "comp=kafka");
    ph->claims = log_lines(r->log, "partition claimed") - ph->claims_before;
    tk_note("%-11s injected at t=%.1f s, over at t=%.1f s; caught up %" PRId64 " ms later (ledger "
            "%" PRId64 " rows); meanwhile %d 'consumer error' lines, %d "
            "comp=kafka lines, %d partitions claimed",
            ph->name, (double)ph->injected_ms / 1000.0,
            (double)ph->served_ms / 1000.0, ph->resume_ms, rows,
            ph->consumer_errors, ph->kafka_lines, ph->claims);
}

int main(void)
{
    char conninfo[1024], dir[256], config[512], log[512], mlog[512];
    rd_kafka_mock_cluster_t *mc;
    int64_t rows, took, total;
    int64_t counts0[LEDGER_ACCOUNTS];
    int consumer_errors, consume_errors, kafka_lines, error_lines;
    int status;
    ledger_summary fin;
    ledger_config cfg;
    phase ph[4];
    pthread_t producer;
    run r;
    tk_mock *m;

    memset(&r, 0, sizeof r);
    r.t0 = tk_now_ms();
    m = tk_mock_start(1);
    mc = tk_mock_cluster(m);
    tk_mock_create_topic(m, TOPIC, N_PARTITIONS);
    tk_pg_create_db("kafka_faults", conninfo, sizeof conninfo);
    ledger_setup_db(conninfo);
    tk_tmpdir("exactly-kafka-faults", dir, sizeof dir);
    snprintf(config, sizeof config, "%s/worker.yaml", dir);
    snprintf(log, sizeof log, "%s/worker.log", dir);
    snprintf(mlog, sizeof mlog, "%s/migrate.log", dir);
    memset(&cfg, 0, sizeof cfg);
    cfg.bootstraps = tk_mock_bootstraps(m);
    cfg.conninfo = conninfo;
    cfg.topic = TOPIC;
    cfg.max_messages = 200;
    cfg.max_wait_ms = 50;
    if (getenv("EXACTLY_TEST_KAFKA_DEBUG")) {
        kafka_overrides[4] = "debug";
        kafka_overrides[5] = getenv("EXACTLY_TEST_KAFKA_DEBUG");
    }
    cfg.kafka = kafka_overrides;
    ledger_write_config(config, &cfg);
    ledger_migrate(config, mlog);

    tk_produce_ids(cfg.bootstraps, TOPIC, INITIAL_MSGS, LEDGER_ACCOUNTS,
                   N_PARTITIONS, 1, counts0);
    add_wave(counts0, INITIAL_MSGS, 0);
    tk_note("produced %d messages; logs in %s", INITIAL_MSGS, dir);

    r.db = tk_pg_connect(conninfo);
    r.log = log;
    /* No --exit-idle: an outage is idle time, and the worker must not
     * leave because of it. It stops on SIGTERM at the end. */
    if (getenv("EXACTLY_TEST_KAFKA_DEBUG")) {
        /* librdkafka's debug lines reach the log only at -v. */
        char *argv[] = {(char *)ledger_exactly_bin(), "worker", "-c", config,
                        "-v", NULL};
        r.pid = tk_spawn(argv, log);
    } else {
        r.pid = ledger_start_worker(config, 0, log);
    }
    rows = wait_rows(&r, 1000, "first progress", &took);
    tk_note("worker applying: %" PRId64 " rows after %.1f s", rows,
            (double)(tk_now_ms() - r.t0) / 1000.0);

    prod.bootstraps = cfg.bootstraps;
    TK_CHECK(pthread_create(&producer, NULL, producer_main, NULL) == 0,
             "pthread_create");

    /* 1. The broker goes away mid-stream and comes back. */
    begin_fault(&r, &ph[0], "broker_down");
    TK_CHECK(rd_kafka_mock_broker_set_down(mc, BROKER_ID) ==
                 RD_KAFKA_RESP_ERR_NO_ERROR,
             "rd_kafka_mock_broker_set_down");
    tk_note("broker %d down at t=%.1f s (ledger %" PRId64 " rows)", BROKER_ID,
            (double)(tk_now_ms() - r.t0) / 1000.0, ledger_rows(r.db));
    tk_sleep_ms(BROKER_DOWN_MS);
    check_alive(&r, "during the broker outage");
    TK_CHECK(rd_kafka_mock_broker_set_up(mc, BROKER_ID) ==
                 RD_KAFKA_RESP_ERR_NO_ERROR,
             "rd_kafka_mock_broker_set_up");
    end_fault(&r, &ph[0]);
    /* The outage was noticed, and said a few times, not once per poll. */
    LEDGER_CHECK_LOG(ph[0].consumer_errors >= 1, log,
                     "the broker outage logged no 'consumer error' line");
    LEDGER_CHECK_LOG(ph[0].consumer_errors <= MAX_OUTAGE_ERROR_LINES, log,
                     "a %d ms outage logged %d 'consumer error' lines (at "
                     "most %d: once per episode and error code)",
                     BROKER_DOWN_MS, ph[0].consumer_errors,
                     MAX_OUTAGE_ERROR_LINES);

    /* 2. Fetches answered "not leader": metadata refresh, refetch.
     * Pushed on the broker's stack rather than the cluster's
     * (rd_kafka_mock_push_request_errors): same effect with one broker, but
     * rd_kafka_mock_broker_error_stack_cnt tells when all were served. */
    begin_fault(&r, &ph[1], "fetch");
    TK_CHECK(rd_kafka_mock_broker_push_request_error_rtts(
                 mc, BROKER_ID, APIKEY_FETCH, 6,
                 RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 0,
                 RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 0,
                 RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 0,
                 RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 0,
                 RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 0,
                 RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 0) ==
                 RD_KAFKA_RESP_ERR_NO_ERROR,
             "push Fetch errors");
    wait_served(&r, mc, APIKEY_FETCH, "Fetch errors");
    end_fault(&r, &ph[1]);

    /* 3. Heartbeats: the coordinator "moves" twice, then the group
     * rebalances; the worker must claim its partitions again. */
    begin_fault(&r, &ph[2], "heartbeat");
    TK_CHECK(rd_kafka_mock_broker_push_request_error_rtts(
                 mc, BROKER_ID, APIKEY_HEARTBEAT, 3,
                 RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE, 0,
                 RD_KAFKA_RESP_ERR_NOT_COORDINATOR, 0,
                 RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS, 0) ==
                 RD_KAFKA_RESP_ERR_NO_ERROR,
             "push Heartbeat errors");
    wait_served(&r, mc, APIKEY_HEARTBEAT, "Heartbeat errors");
    end_fault(&r, &ph[2]);
    LEDGER_CHECK_LOG(wait_claims(&r, &ph[2], N_PARTITIONS) >= N_PARTITIONS,
                     log,
                     "heartbeat REBALANCE_IN_PROGRESS: the worker claimed %d "
                     "partitions in the %d ms after, expected a rejoin "
                     "claiming all %d",
                     ph[2].claims, RESUME_TIMEOUT_MS, N_PARTITIONS);

    /* 4. One more forced rejoin, which meets a coordinator that is still
     * loading: JoinGroup fails three times before it succeeds. */
    begin_fault(&r, &ph[3], "joingroup");
    TK_CHECK(rd_kafka_mock_broker_push_request_error_rtts(
                 mc, BROKER_ID, APIKEY_JOINGROUP, 3,
                 RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS, 0,
                 RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS, 0,
                 RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS, 0) ==
                 RD_KAFKA_RESP_ERR_NO_ERROR,
             "push JoinGroup errors");
    TK_CHECK(rd_kafka_mock_broker_push_request_error_rtts(
                 mc, BROKER_ID, APIKEY_HEARTBEAT, 1,
                 RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS, 0) ==
                 RD_KAFKA_RESP_ERR_NO_ERROR,
             "push Heartbeat error");
    wait_served(&r, mc, APIKEY_HEARTBEAT, "Heartbeat error");
    wait_served(&r, mc, APIKEY_JOINGROUP, "JoinGroup errors");
    end_fault(&r, &ph[3]);
    LEDGER_CHECK_LOG(wait_claims(&r, &ph[3], N_PARTITIONS) >= N_PARTITIONS,
                     log,
                     "JoinGroup errors: the worker claimed %d partitions in "
                     "the %d ms after, expected a rejoin claiming all %d",
                     ph[3].claims, RESUME_TIMEOUT_MS, N_PARTITIONS);

    /* Done injecting: stop producing, let the worker drain the topic. */
    atomic_store(&prod.stop, 1);
    TK_CHECK(pthread_join(producer, NULL) == 0, "pthread_join");
    total = produced_now();
    tk_note("producer stopped: %" PRId64 " messages in %d waves (longest "
            "wave %" PRId64 " ms: the outage)", total, prod.waves,
            prod.longest_wave_ms);
    wait_rows(&r, total, "draining", &took);
    check_alive(&r, "after draining");
    status = tk_terminate(r.pid, 30000);
    LEDGER_CHECK_LOG(status == 0, log, "worker exit status %d after SIGTERM",
                     status);
    LEDGER_CHECK_LOG(ledger_read_summary(log, &fin), log,
                     "the worker printed no summary");
    TK_CHECK_EQ_INT64(fin.applied, total, "summary applied");
    TK_CHECK_EQ_INT64(fin.dead_lettered, 0, "summary dead-lettered");

    ledger_check_exactly_once(r.db, cfg.bootstraps, TOPIC, N_PARTITIONS,
                              total, prod.counts, LEDGER_ACCOUNTS);

    /* Logged once per episode, not per poll. */
    consumer_errors = log_lines(log, "consumer error");
    consume_errors = log_lines(log, "consume error");
    kafka_lines = log_lines(log, "comp=kafka");
    error_lines = log_lines(log, "level=error");
    tk_note("faults: broker down %d ms: worker caught up %" PRId64 " ms "
            "after the broker came back; Fetch errors: %" PRId64 " ms; "
            "Heartbeat errors + rejoin: %" PRId64 " ms; JoinGroup errors + "
            "rejoin: %" PRId64 " ms", BROKER_DOWN_MS, ph[0].resume_ms,
            ph[1].resume_ms, ph[2].resume_ms, ph[3].resume_ms);
    tk_note("log: %d 'consumer error' lines, %d 'consume error' lines, %d "
            "comp=kafka lines (librdkafka's own included), %d level=error "
            "lines; %" PRId64 " rebalances; summary: committed %" PRId64
            " batches, rolled back %" PRId64 ", fenced %" PRId64
            ", retries %" PRId64,
            consumer_errors, consume_errors, kafka_lines, error_lines,
            ledger_log_last_int(log, " rebalances="), fin.committed,
            fin.rolled_back, fin.fenced, fin.retries);
    LEDGER_CHECK_LOG(consumer_errors >= 1, log,
                     "the broker outage was not logged at all");
    LEDGER_CHECK_LOG(consumer_errors + consume_errors <=
                         MAX_CONSUMER_ERROR_LINES,
                     log, "%d Kafka error lines (consumer + consume): more "
                     "than %d for four fault episodes, so not once per "
                     "episode", consumer_errors + consume_errors,
                     MAX_CONSUMER_ERROR_LINES);
    /* (librdkafka's debug lines, when asked for, are not counted.) */
    LEDGER_CHECK_LOG(getenv("EXACTLY_TEST_KAFKA_DEBUG") ||
                         kafka_lines <= MAX_KAFKA_LINES,
                     log,
                     "%d comp=kafka log lines (at most %d expected)",
                     kafka_lines, MAX_KAFKA_LINES);
    PQfinish(r.db);
    tk_mock_stop(m);
    ledger_cleanup_dir(dir);
    tk_note("kafka faults test passed in %.1f s",
            (double)(tk_now_ms() - r.t0) / 1000.0);
    return 0;
}
