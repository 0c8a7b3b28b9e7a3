/*
 * A stop request (SIGTERM) ends the relay while it retries a commit that
 * does not go through (relay.h: `stop`), in mode transactional, and a
 * relay started afterwards publishes every row exactly once (invariant 6):
 *   1. PostgreSQL: the outbox is locked by another session (LOCK TABLE
 *      ... IN EXCLUSIVE MODE), so the mark after the Kafka commit, and
 *      then the position applied on each reconnect, fail on lock_timeout
 *      and are tried again with the cycle's backoff. SIGTERM ends the
 *      relay within STOP_BOUND_MS, exit 0. With the lock gone, the next
 *      relay applies the committed position: the rows are marked, none
 *      sent again.
 *   2. Kafka: the transaction coordinator answers every EndTxn with
 *      COORDINATOR_LOAD_IN_PROGRESS (an injected error, retriable), so
 *      commit_transaction() gets no answer and its outcome is unknown.
 *      SIGTERM ends the relay within STOP_BOUND_MS, exit 0, saying the
 *      commit went unanswered; it marks nothing. With the coordinator
 *      back, the next relay settles the batch from the position topic, as
 *      after a crash between the commit and the mark.
 *   3. A commit refused for a few seconds, longer than one of the relay's
 *      waits on commit_transaction(), is resumed until it goes through:
 *      the rows are published once and marked.
 *
 * The mock's limits (DESIGN 7): it does not hide the records of a
 * transaction that never committed from read_committed readers, so in
 * part 2 the next relay finds the stopped relay's position record and
 * marks the rows it names; a real broker aborts that transaction when the
 * next relay initialises the transactional.id, hides the position record,
 * and the rows go out again in a committed transaction. Either way each
 * row is once among what a read_committed reader of that broker sees,
 * which is what the checks below count.
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

#define TOPIC "relay-stop"
#define POSITIONS "relay-stop-positions"
#define N_PARTITIONS 2
#define ROWS 30
/* What a stop may take: the current wait step (a lock_timeout of 300 ms,
 * a read of the position topic, a slice of the backoff), not a retry
 * that never ends. */
#define STOP_BOUND_MS 5000
/* Kafka's API key of EndTxn (librdkafka keeps its names private). */
#define API_END_TXN 26
/* More refusals than a relay's commit retry can use up in a test run. */
#define END_TXN_REFUSALS 5000
/* Refusals that end within a few seconds (retry.backoff.ms: 100). */
#define SLOW_REFUSALS 30

int main(void)
{
    relay_fixture f;
    const char *bs;
    PGconn *db, *locker;
    int64_t positions, t0;
    pid_t relay;
    static rd_kafka_resp_err_t refusals[END_TXN_REFUSALS];
    int status, waited;
    size_t i;

    relay_fixture_start_txn(&f, "relay_stop", "stopper", TOPIC, N_PARTITIONS,
                            POSITIONS, "  lock_timeout_ms: 300\n");
    bs = f.bootstraps;
    db = f.db;

    /* 1. The PostgreSQL side of the commit does not go through. */
    relay_insert_rows(db, ROWS);
    locker = tk_pg_connect(f.conninfo);
    tk_sql(locker, "BEGIN");
    tk_sql(locker, "LOCK TABLE exactly.outbox IN EXCLUSIVE MODE");
    relay = relay_start(f.config, NULL, f.log);
    LEDGER_CHECK_LOG(tk_wait_log(f.log, "marking published rows failed", 1,
                                 relay, 20000, &status),
                     f.log, "the mark was not refused (status %d)", status);
    /* Retried: each reconnect applies the position, and fails likewise. */
    LEDGER_CHECK_LOG(tk_wait_log(f.log, "applying the position failed", 2,
                                 relay, 20000, &status),
                     f.log, "the relay did not retry (status %d)", status);
    relay_stop_within(relay, STOP_BOUND_MS, f.log, "postgres");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM exactly.outbox "
                                       "WHERE published_at IS NOT NULL"),
                      0, "rows marked through the lock");
    tk_sql(locker, "ROLLBACK");
    PQfinish(locker);
    status = relay_run_to_idle(f.config, 300, 30000, f.log2);
    LEDGER_CHECK_LOG(status == 0, f.log2, "next relay exit status %d", status);
    LEDGER_CHECK_LOG(tk_file_contains(f.log2, "position applied"), f.log2,
                     "the next relay did not apply the position");
    relay_check_exactly_once(db, bs, TOPIC, N_PARTITIONS, NULL, "postgres");

    /* 2. The Kafka commit gets no answer. */
    relay_insert_rows(db, ROWS);
    positions = tk_high_watermark(bs, POSITIONS, 0);
    for (i = 0; i < END_TXN_REFUSALS; i++)
        refusals[i] = RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS;
    rd_kafka_mock_push_request_errors_array(tk_mock_cluster(f.mock),
                                            API_END_TXN, END_TXN_REFUSALS,
                                            refusals);
    relay = relay_start(f.config, NULL, f.log);
    /* The position record goes last before the commit: once it is on the
     * topic, the relay is in commit_transaction(). */
    for (waited = 0; tk_high_watermark(bs, POSITIONS, 0) == positions;
         waited += 100) {
        LEDGER_CHECK_LOG(waited < 20000, f.log,
                         "no position record within 20 s");
        tk_sleep_ms(100);
    }
    tk_sleep_ms(1000);
    LEDGER_CHECK_LOG(tk_wait(relay, 0) == -1, f.log,
                     "the relay ended before it was asked to stop");
    relay_stop_within(relay, STOP_BOUND_MS, f.log, "kafka");
    LEDGER_CHECK_LOG(tk_file_contains(f.log, "stopped before the kafka commit "
                                             "was answered"),
                     f.log, "the relay did not say the commit went "
                            "unanswered");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM exactly.outbox "
                                       "WHERE published_at IS NULL"),
                      ROWS, "rows marked though the commit went unanswered");
    rd_kafka_mock_clear_request_errors(tk_mock_cluster(f.mock), API_END_TXN);
    status = relay_run_to_idle(f.config, 300, 30000, f.log2);
    LEDGER_CHECK_LOG(status == 0, f.log2, "next relay exit status %d", status);
    relay_check_exactly_once(db, bs, TOPIC, N_PARTITIONS, NULL, "kafka");

    /* 3. A commit that needs several of the relay's waits (the refusals
     * last about 3 s) is resumed until it answers, not abandoned. */
    relay_insert_rows(db, ROWS);
    rd_kafka_mock_push_request_errors_array(tk_mock_cluster(f.mock),
                                            API_END_TXN, SLOW_REFUSALS,
                                            refusals);
    t0 = tk_now_ms();
    status = relay_run_to_idle(f.config, 300, 30000, f.log2);
    LEDGER_CHECK_LOG(status == 0, f.log2, "slow commit: relay exit status %d",
                     status);
    tk_note("slow commit: the relay ran %lld ms",
            (long long)(tk_now_ms() - t0));
    relay_check_exactly_once(db, bs, TOPIC, N_PARTITIONS, NULL, "slow commit");

    relay_fixture_stop(&f);
    return 0;
}
