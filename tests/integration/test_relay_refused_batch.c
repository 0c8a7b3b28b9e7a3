/*
 * A broker refuses a whole record batch, never one record of it, and
 * librdkafka gives every record of that batch the same error (relay.h,
 * invariant 4): INVALID_RECORD for one record without a key on a
 * compacted topic, MSG_SIZE_TOO_LARGE for a batch over the topic's
 * max.message.bytes. Such an error dead-letters a row only when the row
 * was refused alone; the rows refused beside it are sent again, each on
 * its own, and published.
 *
 * ROWS rows go out in one produce request (linger.ms long enough to
 * gather them all), which the mock refuses with INVALID_RECORD; so is the
 * next produce request, which after the first refusal holds the oldest
 * row alone. That row, refused alone, is dead-lettered with its reason;
 * the other ROWS - 1 are on the topic once each. Both modes:
 *   1. idempotent;
 *   2. transactional: the refused batch aborts its transaction; the rows
 *      go out again one per transaction, the oldest refused alone.
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

#define TOPIC_IDEM "relay-refused-idem"
#define TOPIC_TXN "relay-refused-txn"
#define POSITIONS "relay-refused-positions"
#define ROWS 10
/* Kafka's API key of Produce (librdkafka keeps its names private). */
#define API_PRODUCE 0

/* Inserts ROWS rows in one transaction, refuses the next two produce
 * requests with INVALID_RECORD, runs the relay of config to idle and
 * checks the outcome: the oldest row dead-lettered, every other row once
 * on topic. */
static void run_refused(relay_fixture *f, const char *config,
                        const char *topic, const char *what)
{
    static const rd_kafka_resp_err_t refusals[2] = {
        RD_KAFKA_RESP_ERR_INVALID_RECORD, RD_KAFKA_RESP_ERR_INVALID_RECORD};
    PGconn *q = f->db;
    char *why;
    int64_t t0;
    int status;
    size_t n;

    tk_sql(q, "DELETE FROM exactly.outbox");
    tk_sql(q, "INSERT INTO exactly.outbox (key, value) SELECT "
              "convert_to(g::text, 'UTF8'), 'v' FROM generate_series(1, %d) "
              "g", ROWS);
    rd_kafka_mock_push_request_errors_array(tk_mock_cluster(f->mock),
                                            API_PRODUCE, 2, refusals);
    t0 = tk_now_ms();
    status = relay_run_to_idle(config, 1500, 60000, f->log);
    tk_note("%s: the relay ran %lld ms (1500 of them idle)", what,
            (long long)(tk_now_ms() - t0));
    rd_kafka_mock_clear_request_errors(tk_mock_cluster(f->mock), API_PRODUCE);
    LEDGER_CHECK_LOG(status == 0, f->log, "%s: relay exit status %d", what,
                     status);
    why = tk_sql_text(q, "SELECT string_agg(id || ': ' || dead_reason, "
                         "' | ' ORDER BY id) FROM exactly.outbox WHERE "
                         "dead_reason IS NOT NULL");
    tk_note("%s: dead-lettered: %s", what, why ? why : "(none)");
    free(why);
    TK_CHECK_EQ_INT64(tk_sql_int64(q, "SELECT count(*) FROM exactly.outbox "
                                      "WHERE dead_reason IS NOT NULL"),
                      1, "rows dead-lettered for a refused batch");
    TK_CHECK_EQ_INT64(tk_sql_int64(q, "SELECT count(*) FROM exactly.outbox "
                                      "WHERE dead_reason LIKE "
                                      "'%%INVALID_RECORD%%' AND id = (SELECT "
                                      "min(id) FROM exactly.outbox)"),
                      1, "the row refused alone, dead-lettered with its "
                         "reason");
    TK_CHECK_EQ_INT64(tk_sql_int64(q, "SELECT count(*) FROM exactly.outbox "
                                      "WHERE published_at IS NULL AND "
                                      "dead_reason IS NULL"),
                      0, "rows still pending");
    n = relay_load_seen(q, f->bootstraps, topic, 1, NULL, NULL);
    TK_CHECK_EQ_INT64(n, ROWS - 1, "records on the topic");
    TK_CHECK_EQ_INT64(tk_sql_int64(q, "SELECT count(*) FROM exactly.outbox o "
                                      "WHERE dead_reason IS NULL AND (SELECT "
                                      "count(*) FROM seen s WHERE s.eid = "
                                      "o.event_id::text) <> 1"),
                      0, "published rows not once on the topic");
    tk_note("%s: %d rows refused in one batch: 1 dead-lettered (refused "
            "alone), %d published once", what, ROWS, ROWS - 1);
}

int main(void)
{
    char config_txn[512];
    relay_fixture f;

    relay_fixture_start(&f, "relay_refused", NULL);
    tk_mock_create_topic(f.mock, TOPIC_IDEM, 1);
    tk_mock_create_topic(f.mock, TOPIC_TXN, 1);
    tk_mock_create_topic(f.mock, POSITIONS, 1);
    snprintf(config_txn, sizeof(config_txn), "%s/relay_txn.yaml", f.dir);
    relay_write_config(&f, config_txn, &(relay_config){
                                           .name = "refused_txn",
                                           .topic = TOPIC_TXN,
                                           .transactional = 1,
                                           .position_topic = POSITIONS,
                                           .batch_size = 50,
                                           .kafka = "linger.ms: 1000"});
    relay_fixture_config(&f, &(relay_config){.name = "refused",
                                             .topic = TOPIC_IDEM,
                                             .batch_size = 50,
                                             .kafka = "linger.ms: 1000"});

    run_refused(&f, f.config, TOPIC_IDEM, "idempotent");
    run_refused(&f, config_txn, TOPIC_TXN, "transactional");
    relay_fixture_stop(&f);
    return 0;
}
