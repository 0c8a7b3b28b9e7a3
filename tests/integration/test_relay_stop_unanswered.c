/*
 * A stop request (SIGTERM) ends a transactional relay within STOP_BOUND_MS
 * while the broker does not answer one of its bounded waits, exit 0 as
 * on any stop, with nothing marked that was not committed; a relay
 * started afterwards publishes every row once (invariant 6):
 *   1. init_transactions: the coordinator refuses every InitProducerId
 *      with COORDINATOR_LOAD_IN_PROGRESS (retriable), so the call would
 *      wait its full minute. No row is marked. Then refusals for a few
 *      seconds, longer than one of the relay's calls: init_transactions
 *      is resumed until it answers, with no failure logged.
 *   2. abort_transaction: once the relay has published a batch, the
 *      broker answers nothing (a response time of minutes). The next
 *      batch's records get no answer; SIGTERM, after the grace the relay
 *      gives a batch in flight (5 s), purges them and aborts, and the
 *      abort gets no answer either. No row of that batch is marked.
 *   3. The position record's delivery report (with fault injection
 *      built: EXACTLY_TEST_FAULTS_BUILT=1): the broker stops answering
 *      while the relay pauses before the position record (fault
 *      relay_txn_sent), so the record waits for a report that would take
 *      message.timeout.ms. No row of that batch is marked.
 *
 * The mock's limits (DESIGN 7, test_relay_stop_in_retry): it does not
 * hide the records of a transaction that never committed. In part 3 the
 * batch's records are in the log and its position record is not (its
 * partition was never added to the transaction), so the next relay sends
 * the rows again; a real broker aborts the stopped transaction when the
 * next relay initialises the transactional.id, hiding its records, which
 * the check below skips as a read_committed reader would. Each row must be
 * once among the rest.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "relay_kit.h"
#include "testkit.h"

#define TOPIC "relay-unanswered"
#define POSITIONS "relay-unanswered-positions"
#define N_PARTITIONS 2
#define ROWS 30
/* What a stop may take: one short wait on the broker, not a minute. */
#define STOP_BOUND_MS 5000
/* The mock's only broker. */
#define BROKER_ID 1
/* Kafka's API key of InitProducerId (librdkafka keeps its names
 * private). */
#define API_INIT_PRODUCER_ID 22
/* More refusals than init_transactions can use up in a test run. */
#define INIT_REFUSALS 5000
/* Refusals that end within a few seconds (librdkafka asks again every
 * 500 ms). */
#define SLOW_INIT_REFUSALS 8
/* A response time no wait of the relay outlasts. */
#define NO_ANSWER_RTT_MS 600000
/* The grace a batch in flight gets after a stop request (relay.c,
 * wait_reports), and a margin. */
#define IN_FLIGHT_GRACE_MS 5000

/* Gives the broker's answers a response time of rtt_ms (0: at once). */
static void set_rtt(rd_kafka_mock_cluster_t *mc, int rtt_ms)
{
    TK_CHECK(rd_kafka_mock_broker_set_rtt(mc, BROKER_ID, rtt_ms) ==
                 RD_KAFKA_RESP_ERR_NO_ERROR,
             "rd_kafka_mock_broker_set_rtt(%d ms)", rtt_ms);
}

/* Fails the test unless the relay said that a stop ended its wait for
 * call. */
static void check_said_stopped(const char *log, const char *call,
                               const char *what)
{
    LEDGER_CHECK_LOG(tk_file_contains(log, "stopped before kafka answered") &&
                         tk_file_contains(log, call),
                     log, "%s: the relay did not say a stop ended its wait "
                          "for %s", what, call);
}

/* Fails the test unless no row is published (none dead-lettered). */
static void check_none_marked(PGconn *db, int64_t pending, const char *what)
{
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM exactly.outbox "
                                       "WHERE published_at IS NULL AND "
                                       "dead_reason IS NULL"),
                      pending, what);
}

/* Per partition of TOPIC, the offsets [from, to) of the records of the
 * transaction a stop left open in part 3. */
static int64_t open_from[N_PARTITIONS], open_to[N_PARTITIONS];

/* Whether r belongs to the transaction left open: a read_committed
 * reader of a real broker does not see it. */
static int in_open_txn(const relay_rec *r)
{
    return r->offset >= open_from[r->partition] &&
           r->offset < open_to[r->partition];
}

/* Runs the next relay to its end with the broker answering again: every
 * row once among the records that skip does not pick. */
static void settle(relay_fixture *f, int (*skip)(const relay_rec *),
                   const char *what)
{
    int status = relay_run_to_idle(f->config, 300, 60000, f->log2);

    LEDGER_CHECK_LOG(status == 0, f->log2, "%s: next relay exit status %d",
                     what, status);
    relay_check_exactly_once(f->db, f->bootstraps, TOPIC, N_PARTITIONS, skip,
                             what);
}

int main(void)
{
    relay_fixture f;
    rd_kafka_mock_cluster_t *mc;
    const char *faults_built = getenv("EXACTLY_TEST_FAULTS_BUILT");
    static rd_kafka_resp_err_t refusals[INIT_REFUSALS];
    char log[600];
    pid_t relay;
    int64_t positions;
    int status, p;
    size_t i;

    relay_fixture_start_txn(&f, "relay_unanswered", "unanswered", TOPIC,
                            N_PARTITIONS, POSITIONS, NULL);
    mc = tk_mock_cluster(f.mock);

    /* 1. init_transactions gets no answer. */
    relay_insert_rows(f.db, ROWS);
    for (i = 0; i < INIT_REFUSALS; i++)
        refusals[i] = RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS;
    rd_kafka_mock_push_request_errors_array(mc, API_INIT_PRODUCER_ID,
                                            INIT_REFUSALS, refusals);
    snprintf(log, sizeof(log), "%s/init.log", f.dir);
    relay = relay_start(f.config, NULL, log);
    /* It holds the outbox: init_transactions comes next. */
    LEDGER_CHECK_LOG(tk_wait_log(log, "relay publishes", 1, relay, 20000,
                                 &status),
                     log, "the relay never took the outbox (status %d)",
                     status);
    tk_sleep_ms(1500);
    LEDGER_CHECK_LOG(tk_wait(relay, 0) == -1, log,
                     "init: the relay ended before it was asked to stop");
    relay_stop_within(relay, STOP_BOUND_MS, log, "init");
    check_said_stopped(log, "init_transactions", "init");
    check_none_marked(f.db, ROWS, "init: rows marked without a producer");
    rd_kafka_mock_clear_request_errors(mc, API_INIT_PRODUCER_ID);
    settle(&f, NULL, "init");
    snprintf(log, sizeof(log), "%s/slow_init.log", f.dir);
    relay_insert_rows(f.db, ROWS);
    rd_kafka_mock_push_request_errors_array(mc, API_INIT_PRODUCER_ID,
                                            SLOW_INIT_REFUSALS, refusals);
    status = relay_run_to_idle(f.config, 300, 60000, log);
    LEDGER_CHECK_LOG(status == 0, log, "slow init: relay exit status %d",
                     status);
    LEDGER_CHECK_LOG(tk_wait_log(log, "Coordinator load in progress", 3, 0, 0,
                                 NULL),
                     log, "slow init: the refusals were not seen");
    LEDGER_CHECK_LOG(!tk_file_contains(log, "kafka transaction call failed"),
                     log, "slow init: init_transactions was not resumed");
    relay_check_exactly_once(f.db, f.bootstraps, TOPIC, N_PARTITIONS, NULL,
                             "slow init");

    /* 2. abort_transaction gets no answer. */
    snprintf(log, sizeof(log), "%s/abort.log", f.dir);
    relay = relay_start(f.config, NULL, log);
    relay_insert_rows(f.db, ROWS);
    relay_wait_settled(f.db, log, 20000, "abort: first batch");
    set_rtt(mc, NO_ANSWER_RTT_MS);
    relay_insert_rows(f.db, ROWS);
    tk_sleep_ms(IN_FLIGHT_GRACE_MS + 1000);
    LEDGER_CHECK_LOG(tk_wait(relay, 0) == -1, log,
                     "abort: the relay ended before it was asked to stop");
    relay_stop_within(relay, STOP_BOUND_MS, log, "abort");
    check_said_stopped(log, "abort_transaction", "abort");
    check_none_marked(f.db, ROWS, "abort: rows of the unanswered batch "
                                  "marked");
    set_rtt(mc, 0);
    settle(&f, NULL, "abort");

    /* 3. The position record's delivery report does not come. */
    if (!faults_built || strcmp(faults_built, "1") != 0) {
        tk_note("position: skipped (needs EXACTLY_FAULT_INJECTION)");
        relay_fixture_stop(&f);
        return 0;
    }
    snprintf(log, sizeof(log), "%s/position.log", f.dir);
    for (p = 0; p < N_PARTITIONS; p++)
        open_from[p] = tk_high_watermark(f.bootstraps, TOPIC, p);
    positions = tk_high_watermark(f.bootstraps, POSITIONS, 0);
    relay_insert_rows(f.db, ROWS);
    setenv("EXACTLY_FAULTS", "relay_txn_sent:1", 1);
    relay = relay_start(f.config, NULL, log);
    unsetenv("EXACTLY_FAULTS");
    LEDGER_CHECK_LOG(tk_wait_log(log, "paused inside the transaction", 1,
                                 relay, 20000, &status),
                     log, "position: the relay never reached the fault "
                          "(status %d)", status);
    set_rtt(mc, NO_ANSWER_RTT_MS);
    /* The pause lasts 6 s; then the position record waits. */
    tk_sleep_ms(6000 + 1500);
    LEDGER_CHECK_LOG(tk_wait(relay, 0) == -1, log,
                     "position: the relay ended before it was asked to "
                     "stop");
    relay_stop_within(relay, STOP_BOUND_MS, log, "position");
    LEDGER_CHECK_LOG(tk_file_contains(log, "the position record failed"),
                     log, "position: the relay did not give the position "
                          "record up");
    check_said_stopped(log, "abort_transaction", "position");
    check_none_marked(f.db, ROWS, "position: rows marked though the "
                                  "transaction did not commit");
    set_rtt(mc, 0);
    for (p = 0; p < N_PARTITIONS; p++)
        open_to[p] = tk_high_watermark(f.bootstraps, TOPIC, p);
    TK_CHECK_EQ_INT64(tk_high_watermark(f.bootstraps, POSITIONS, 0),
                      positions, "position: position records written by the "
                                 "stopped relay");
    settle(&f, in_open_txn, "position");

    relay_fixture_stop(&f);
    return 0;
}
