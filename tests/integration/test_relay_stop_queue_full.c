/*
 * A stop request (SIGTERM) ends the relay within STOP_BOUND_MS, exit 0,
 * while the broker is down and the producer's queue is full (relay.h:
 * `stop`): the relay waits for room in the queue, which comes only when
 * the queued records time out (message.timeout.ms, a minute here), and a
 * stop must not wait for that. Nothing is lost: with the broker back, a
 * relay started afterwards publishes every row once.
 *   1. idempotent: the broker down from the start;
 *   2. transactional: the broker goes down once the relay initialised its
 *      transactions and published a row.
 * queue.buffering.max.messages is 5 and a batch holds ROWS rows, so the
 * sixth record of the batch finds the queue full.
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

#define TOPIC_IDEM "relay-qfull-idem"
#define TOPIC_TXN "relay-qfull-txn"
#define POSITIONS "relay-qfull-positions"
#define ROWS 50
/* The mock's only broker. */
#define BROKER_ID 1
/* What a stop may take: the grace a batch in flight gets (5 s, relay.c
 * wait_reports) and a margin, far below message.timeout.ms. */
#define STOP_BOUND_MS 10000
/* How long the relay runs against the full queue before the stop. */
#define STUCK_MS 3000
#define KAFKA "queue.buffering.max.messages: 5, message.timeout.ms: 60000"

/* Inserts ROWS rows, lets the relay (running, or started now when relay
 * is 0) hit the full queue with the broker down, stops it within
 * STOP_BOUND_MS, then brings the broker back and checks that a relay run
 * to idle publishes every row once on topic. */
static void stop_while_full(relay_fixture *f, const char *config,
                            pid_t relay, const char *topic, const char *what)
{
    int64_t t0;
    int status;

    tk_sql(f->db, "INSERT INTO exactly.outbox (key, value) SELECT "
                  "convert_to(g::text, 'UTF8'), 'v' FROM generate_series(1, "
                  "%d) g", ROWS);
    if (!relay)
        relay = relay_start(config, NULL, f->log);
    tk_sleep_ms(STUCK_MS);
    LEDGER_CHECK_LOG(tk_wait(relay, 0) == -1, f->log,
                     "%s: the relay ended before it was asked to stop", what);
    t0 = tk_now_ms();
    tk_kill(relay, SIGTERM);
    status = tk_wait(relay, STOP_BOUND_MS);
    LEDGER_CHECK_LOG(status != -1, f->log,
                     "%s: the relay still runs %d ms after SIGTERM with the "
                     "producer's queue full", what, STOP_BOUND_MS);
    tk_note("%s: the relay ended %lld ms after SIGTERM, status %d", what,
            (long long)(tk_now_ms() - t0), status);
    LEDGER_CHECK_LOG(status == 0, f->log, "%s: relay exit status %d after "
                     "SIGTERM", what, status);
    TK_CHECK_EQ_INT64(tk_sql_int64(f->db, "SELECT count(*) FROM "
                                          "exactly.outbox WHERE published_at "
                                          "IS NULL AND dead_reason IS NULL"),
                      ROWS, "rows pending after the stop");
    rd_kafka_mock_broker_set_up(tk_mock_cluster(f->mock), BROKER_ID);
    status = relay_run_to_idle(config, 500, 60000, f->log2);
    LEDGER_CHECK_LOG(status == 0, f->log2, "%s: next relay exit status %d",
                     what, status);
    relay_check_exactly_once(f->db, f->bootstraps, topic, 1, NULL, what);
}

int main(void)
{
    char config_txn[512];
    relay_fixture f;
    pid_t relay;

    relay_fixture_start(&f, "relay_qfull", NULL);
    tk_mock_create_topic(f.mock, TOPIC_IDEM, 1);
    tk_mock_create_topic(f.mock, TOPIC_TXN, 1);
    tk_mock_create_topic(f.mock, POSITIONS, 1);
    snprintf(config_txn, sizeof(config_txn), "%s/relay_txn.yaml", f.dir);
    relay_write_config(&f, config_txn, &(relay_config){
                                           .name = "qfull_txn",
                                           .topic = TOPIC_TXN,
                                           .transactional = 1,
                                           .position_topic = POSITIONS,
                                           .batch_size = ROWS,
                                           .kafka = KAFKA});
    relay_fixture_config(&f, &(relay_config){.name = "qfull",
                                             .topic = TOPIC_IDEM,
                                             .batch_size = ROWS,
                                             .kafka = KAFKA});

    /* 1. idempotent, the broker down from the start. */
    rd_kafka_mock_broker_set_down(tk_mock_cluster(f.mock), BROKER_ID);
    stop_while_full(&f, f.config, 0, TOPIC_IDEM, "idempotent");

    /* 2. transactional: initialised and publishing, then the broker
     * goes down. */
    tk_sql(f.db, "DELETE FROM exactly.outbox");
    tk_sql(f.db, "INSERT INTO exactly.outbox (key, value) VALUES ('0', "
                 "'first')");
    relay = relay_start(config_txn, NULL, f.log);
    relay_wait_settled(f.db, f.log, 30000, "transactional, first row");
    rd_kafka_mock_broker_set_down(tk_mock_cluster(f.mock), BROKER_ID);
    stop_while_full(&f, config_txn, relay, TOPIC_TXN, "transactional");
    relay_fixture_stop(&f);
    return 0;
}
