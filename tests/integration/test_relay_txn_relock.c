/*
 * mode: transactional (relay.h, invariant 6), a relay that loses its
 * PostgreSQL session, and with it the outbox lock, between a Kafka commit
 * and the mark, and takes the lock back in the same process:
 *   - it commits a batch of ROWS rows and stalls before the mark (the
 *     relay_txn_committed fault), while its session is terminated;
 *   - the mark fails, the relay connects again and takes the lock back;
 *   - before it reads a batch it must have initialised its transactions
 *     again (a new producer of its transactional.id): that fences every
 *     other producer of the id, aborts a transaction left open and, on a
 *     broker, waits until the last commit's markers are written, so that
 *     the position read next with read_committed holds that commit
 *     rather than one before it (whose rows would be sent a second time);
 *   - it applies the position, publishes MORE rows written meanwhile, and
 *     every row is once among the records, none marked without being
 *     there.
 * librdkafka 2.0.2's mock moves its last stable offset with every write,
 * so a read there never misses a commit; what the test sees of the new
 * initialisation is the broker's answer it injects for it
 * (CONCURRENT_TRANSACTIONS, what a broker answers while a commit's markers
 * are still being written, after which librdkafka asks again): it must be
 * taken by the time the rows are settled.
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

#define TOPIC "relay-relock"
#define POSITIONS "relay-relock-positions"
#define ROWS 20
#define MORE 10
/* Kafka's API key of InitProducerId (librdkafka keeps its names private). */
#define API_INIT_PRODUCER_ID 22

int main(void)
{
    const char *faults_built = getenv("EXACTLY_TEST_FAULTS_BUILT");
    relay_fixture f;
    size_t left = 99;
    pid_t relay;
    int status;

    if (!faults_built || strcmp(faults_built, "1") != 0) {
        tk_note("skipped: the relay_txn_committed fault site needs a build "
                "with EXACTLY_FAULT_INJECTION");
        return 77;
    }
    relay_fixture_start_txn(&f, "relay_relock", "relock", TOPIC, 1,
                            POSITIONS, NULL);

    /* A batch committed in Kafka; the relay stalls before the mark. */
    relay_insert_rows(f.db, ROWS);
    setenv("EXACTLY_FAULTS", "relay_txn_committed:1", 1);
    relay = relay_start(f.config, NULL, f.log);
    unsetenv("EXACTLY_FAULTS");
    LEDGER_CHECK_LOG(ledger_wait_log(f.log, "fault: paused", 1, relay, 20000,
                                     &status),
                     f.log, "the relay never reached the fault");

    /* The next InitProducerId the broker gets is answered once as while
     * markers are written; then the relay loses its session and lock. */
    TK_CHECK(rd_kafka_mock_broker_push_request_error_rtts(
                 tk_mock_cluster(f.mock), 1, API_INIT_PRODUCER_ID, 1,
                 RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS, 0) ==
                 RD_KAFKA_RESP_ERR_NO_ERROR,
             "cannot inject the InitProducerId answer");
    relay_terminate_sessions(f.db);
    tk_sql(f.db, "INSERT INTO exactly.outbox (key, value) SELECT "
                 "convert_to(g::text, 'UTF8'), 'more' FROM "
                 "generate_series(1, %d) g", MORE);

    /* The mark failed; the relay takes the lock back, applies the
     * position and goes on. */
    relay_wait_settled(f.db, f.log, 20000, "after the lock was taken back");
    LEDGER_CHECK_LOG(tk_file_contains(f.log, "position applied"), f.log,
                     "the committed batch was not marked by its position");
    relay_stop(relay, 10000, f.log);

    relay_check_exactly_once(f.db, f.bootstraps, TOPIC, 1, NULL,
                             "after the lock was taken back");
    TK_CHECK(rd_kafka_mock_broker_error_stack_cnt(
                 tk_mock_cluster(f.mock), 1, API_INIT_PRODUCER_ID, &left) ==
                 RD_KAFKA_RESP_ERR_NO_ERROR,
             "cannot read the injected answers left");
    LEDGER_CHECK_LOG(left == 0, f.log,
                     "the relay took the outbox lock back and published "
                     "without initialising its transactions again (the "
                     "InitProducerId answer injected is still unused)");
    tk_note("the relay took its lock back, initialised its transactions "
            "again and published %d rows once each", ROWS + MORE);
    relay_fixture_stop(&f);
    return 0;
}
