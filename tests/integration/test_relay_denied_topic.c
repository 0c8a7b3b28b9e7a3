/*
 * An outbox row whose topic the relay may not write to (relay.h,
 * invariant 4): the broker answers TOPIC_AUTHORIZATION_FAILED for it, an
 * answer librdkafka keeps for the topic, so no resend gets through until
 * an operator grants the producer its ACL. Such a row is refused for good,
 * like a row of a topic that does not exist, and never holds back the
 * rows behind it:
 *   1. mode: transactional, the denied row first, then ROWS rows of a
 *      topic the relay may write: those are published within a bound, the
 *      denied row is dead-lettered with a reason that says what to do; a
 *      batch aborted for the denied row is not what read_committed readers
 *      see, so the check is that every published row's event-id is on the
 *      topic;
 *   2. mode: idempotent with batch_size 2 and two denied rows first (a
 *      whole batch of them): the rows behind them are published too.
 *
 * A broker answers a producer that may not use a topic with
 * TOPIC_AUTHORIZATION_FAILED and no partitions in Metadata; librdkafka
 * then fails the topic's queued records with that error and refuses the
 * next ones at once. The mock answers so for a topic created with no
 * partitions and that error set (rd_kafka_mock_topic_set_error; with
 * partitions it would list them, and the records would wait for a
 * partition until message.timeout.ms instead).
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

#define TOPIC "relay-open"
#define DENIED "relay-denied"
#define POSITIONS "relay-denied-positions"
#define ROWS 20

/* The denied rows are dead-lettered with a reason naming the error and
 * the remedy, and kept; every other row is published, its event-id on
 * TOPIC. */
static void check_outcome(PGconn *q, const char *bootstraps, int64_t denied,
                          int64_t open, const char *what)
{
    char *why;

    TK_CHECK_EQ_INT64(tk_sql_int64(q, "SELECT count(*) FROM exactly.outbox "
                                      "WHERE topic = '" DENIED "' AND "
                                      "published_at IS NULL AND dead_at IS "
                                      "NOT NULL AND dead_reason LIKE "
                                      "'%%TOPIC_AUTHORIZATION_FAILED%%'"),
                      denied, "denied rows dead-lettered with their reason");
    why = tk_sql_text(q, "SELECT min(dead_reason) FROM exactly.outbox WHERE "
                         "topic = '" DENIED "'");
    tk_note("%s: dead_reason: %s", what, why ? why : "(null)");
    TK_CHECK(why && strstr(why, "grant") != NULL,
             "the dead_reason says what to do: %s", why ? why : "(null)");
    free(why);
    TK_CHECK_EQ_INT64(tk_sql_int64(q, "SELECT count(*) FROM exactly.outbox "
                                      "WHERE topic IS NULL AND published_at "
                                      "IS NOT NULL AND dead_reason IS NULL"),
                      open, "rows behind the denied ones published");
    relay_load_seen(q, bootstraps, TOPIC, 1, NULL, NULL);
    TK_CHECK_EQ_INT64(tk_sql_int64(q, "SELECT count(*) FROM exactly.outbox o "
                                      "WHERE published_at IS NOT NULL AND NOT "
                                      "EXISTS (SELECT 1 FROM seen s WHERE "
                                      "s.eid = o.event_id::text)"),
                      0, "published rows missing from " TOPIC);
}

int main(void)
{
    char config2[512];
    relay_fixture f;
    const char *bs;
    PGconn *q;
    pid_t relay;

    relay_fixture_start(&f, "relay_denied", NULL);
    bs = f.bootstraps;
    q = f.db;
    tk_mock_create_topic(f.mock, TOPIC, 1);
    TK_CHECK(rd_kafka_mock_topic_create(tk_mock_cluster(f.mock), DENIED, 0,
                                        1) == RD_KAFKA_RESP_ERR_NO_ERROR,
             "rd_kafka_mock_topic_create " DENIED);
    tk_mock_create_topic(f.mock, POSITIONS, 1);
    rd_kafka_mock_topic_set_error(tk_mock_cluster(f.mock), DENIED,
                                  RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    snprintf(config2, sizeof(config2), "%s/relay2.yaml", f.dir);
    relay_write_config(&f, config2, &(relay_config){.name = "denied_idem",
                                                    .topic = TOPIC,
                                                    .batch_size = 2});
    relay_fixture_config(&f, &(relay_config){.name = "denied",
                                             .topic = TOPIC,
                                             .transactional = 1,
                                             .position_topic = POSITIONS,
                                             .batch_size = 50});

    /* 1. transactional: the denied row first, in a transaction of its
     * own, so it is read before every other row. */
    tk_sql(q, "INSERT INTO exactly.outbox (topic, key, value) VALUES "
              "('" DENIED "', 'a', 'denied')");
    tk_sql(q, "INSERT INTO exactly.outbox (key, value) SELECT "
              "convert_to(g::text, 'UTF8'), 'open' FROM generate_series(1, "
              "%d) g", ROWS);
    relay = relay_start(f.config, NULL, f.log);
    relay_wait_settled(q, f.log, 30000, "transactional");
    check_outcome(q, bs, 1, ROWS, "transactional");
    relay_stop(relay, 20000, f.log);

    /* 2. idempotent: a whole batch of denied rows first. */
    tk_sql(q, "INSERT INTO exactly.outbox (topic, key, value) SELECT '"
              DENIED "', 'b', 'denied' FROM generate_series(1, 2)");
    tk_sql(q, "INSERT INTO exactly.outbox (key, value) SELECT "
              "convert_to(g::text, 'UTF8'), 'open' FROM generate_series(1, "
              "%d) g", ROWS);
    relay = relay_start(config2, NULL, f.log2);
    relay_wait_settled(q, f.log2, 30000, "idempotent");
    check_outcome(q, bs, 3, 2 * ROWS, "idempotent");
    relay_stop(relay, 20000, f.log2);
    tk_note("rows of a topic the relay may not write were dead-lettered "
            "with their reason; the rows behind them were published");
    relay_fixture_stop(&f);
    return 0;
}
