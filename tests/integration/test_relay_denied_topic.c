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

/* Waits until no row of the outbox is pending, for at most bound_ms;
 * fails the test (showing the relay's log) otherwise. */
static void wait_settled(PGconn *q, const char *log, int bound_ms,
                         const char *what)
{
    int64_t t0 = tk_now_ms();
    int64_t pending = tk_sql_wait_int64(q, 0, bound_ms,
                                        "SELECT count(*) FROM exactly.outbox "
                                        "WHERE published_at IS NULL AND "
                                        "dead_reason IS NULL");

    LEDGER_CHECK_LOG(pending == 0, log, "%s: %lld rows still pending after "
                     "%d ms", what, (long long)pending, bound_ms);
    tk_note("%s: every row published or dead-lettered in %lld ms", what,
            (long long)(tk_now_ms() - t0));
}

/* The denied rows are dead-lettered with a reason naming the error and
 * the remedy, and kept; every other row is published, its event-id on
 * TOPIC. */
static void check_outcome(PGconn *q, const char *bootstraps, int64_t denied,
                          int64_t open, const char *what)
{
    relay_rec *recs;
    size_t n, i;
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
    recs = relay_read_topic(bootstraps, TOPIC, 1, &n);
    tk_sql(q, "DROP TABLE IF EXISTS seen");
    tk_sql(q, "CREATE TABLE seen (eid text)");
    for (i = 0; i < n; i++)
        tk_sql(q, "INSERT INTO seen VALUES ('%s')", recs[i].event_id);
    free(recs);
    TK_CHECK_EQ_INT64(tk_sql_int64(q, "SELECT count(*) FROM exactly.outbox o "
                                      "WHERE published_at IS NOT NULL AND NOT "
                                      "EXISTS (SELECT 1 FROM seen s WHERE "
                                      "s.eid = o.event_id::text)"),
                      0, "published rows missing from " TOPIC);
}

int main(void)
{
    char dir[256], conninfo[1024], config[512], config2[512], log[512],
        log2[512], mlog[512];
    tk_mock *mock;
    const char *bs;
    PGconn *q;
    pid_t relay;
    int status;

    tk_tmpdir("relay-denied", dir, sizeof(dir));
    snprintf(config, sizeof(config), "%s/relay.yaml", dir);
    snprintf(config2, sizeof(config2), "%s/relay2.yaml", dir);
    snprintf(log, sizeof(log), "%s/relay.log", dir);
    snprintf(log2, sizeof(log2), "%s/relay2.log", dir);
    snprintf(mlog, sizeof(mlog), "%s/migrate.log", dir);
    tk_pg_create_db("relay_denied", conninfo, sizeof(conninfo));
    mock = tk_mock_start(1);
    bs = tk_mock_bootstraps(mock);
    tk_mock_create_topic(mock, TOPIC, 1);
    TK_CHECK(rd_kafka_mock_topic_create(tk_mock_cluster(mock), DENIED, 0,
                                        1) == RD_KAFKA_RESP_ERR_NO_ERROR,
             "rd_kafka_mock_topic_create " DENIED);
    tk_mock_create_topic(mock, POSITIONS, 1);
    rd_kafka_mock_topic_set_error(tk_mock_cluster(mock), DENIED,
                                  RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    tk_write_file(config,
                  "kafka:\n  bootstrap.servers: \"%s\"\n"
                  "postgres:\n  conninfo: \"%s\"\n"
                  "relays:\n  denied:\n    topic: " TOPIC "\n"
                  "    mode: transactional\n"
                  "    position_topic: " POSITIONS "\n"
                  "    batch_size: 50\n    poll_interval_ms: 20\n"
                  "    cleanup: mark\n",
                  bs, conninfo);
    tk_write_file(config2,
                  "kafka:\n  bootstrap.servers: \"%s\"\n"
                  "postgres:\n  conninfo: \"%s\"\n"
                  "relays:\n  denied_idem:\n    topic: " TOPIC "\n"
                  "    batch_size: 2\n    poll_interval_ms: 20\n"
                  "    cleanup: mark\n",
                  bs, conninfo);
    ledger_migrate(config, mlog);
    q = tk_pg_connect(conninfo);

    /* 1. transactional: the denied row first, in a transaction of its
     * own, so it is read before every other row. */
    tk_sql(q, "INSERT INTO exactly.outbox (topic, key, value) VALUES "
              "('" DENIED "', 'a', 'denied')");
    tk_sql(q, "INSERT INTO exactly.outbox (key, value) SELECT "
              "convert_to(g::text, 'UTF8'), 'open' FROM generate_series(1, "
              "%d) g", ROWS);
    relay = relay_start(config, NULL, log);
    wait_settled(q, log, 30000, "transactional");
    check_outcome(q, bs, 1, ROWS, "transactional");
    status = tk_terminate(relay, 20000);
    LEDGER_CHECK_LOG(status == 0, log, "relay exit status %d after SIGTERM",
                     status);

    /* 2. idempotent: a whole batch of denied rows first. */
    tk_sql(q, "INSERT INTO exactly.outbox (topic, key, value) SELECT '"
              DENIED "', 'b', 'denied' FROM generate_series(1, 2)");
    tk_sql(q, "INSERT INTO exactly.outbox (key, value) SELECT "
              "convert_to(g::text, 'UTF8'), 'open' FROM generate_series(1, "
              "%d) g", ROWS);
    relay = relay_start(config2, NULL, log2);
    wait_settled(q, log2, 30000, "idempotent");
    check_outcome(q, bs, 3, 2 * ROWS, "idempotent");
    status = tk_terminate(relay, 20000);
    LEDGER_CHECK_LOG(status == 0, log2, "relay exit status %d after SIGTERM",
                     status);
    tk_note("rows of a topic the relay may not write were dead-lettered "
            "with their reason; the rows behind them were published");
    PQfinish(q);
    tk_mock_stop(mock);
    ledger_cleanup_dir(dir);
    return 0;
}
