/*
 * An outbox row whose topic does not exist on the broker (relay.h,
 * invariant 4).
 *
 * librdkafka 2.0.2's mock cluster creates any topic a client asks about
 * (allow.auto.create.topics=false does not stop it), as a real broker with
 * auto.create.topics.enable does: there such a row is simply published to
 * the new topic. A broker that does not create topics answers
 * UNKNOWN_TOPIC_OR_PART for it, which the test sets up with
 * rd_kafka_mock_topic_set_error. Then:
 *   - the row is dead-lettered in the outbox with a reason that names the
 *     unknown topic error, after the producer waited
 *     topic.metadata.propagation.max.ms for the topic to appear; it is
 *     kept (topic, key, value), never lost;
 *   - the rows behind it, of its own key in the same batch and of another
 *     key in the next batch, are published, in order;
 *   - once the topic exists, clearing dead_reason sends the row again:
 *     the relay that found it missing publishes it at its next cycle, not
 *     only once librdkafka's cached "does not exist" expires
 *     (topic.metadata.refresh.interval.ms, 5 minutes by default).
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

#define TOPIC "relay-known"
#define MISSING "relay-missing"

int main(void)
{
    relay_fixture f;
    PGconn *q;
    relay_rec *recs;
    size_t n, i;
    int64_t t0;
    pid_t relay;

    relay_fixture_start(&f, "relay_unknown", NULL);
    q = f.db;
    tk_mock_create_topic(f.mock, TOPIC, 1);
    /* A broker without the topic, and which does not create it. */
    rd_kafka_mock_topic_set_error(tk_mock_cluster(f.mock), MISSING,
                                  RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
    /* Batches of 2: the bad row shares its batch with a row of its key,
     * and the next batch holds the row of another key. */
    relay_fixture_config(
        &f, &(relay_config){.name = "unknown",
                            .topic = TOPIC,
                            .batch_size = 2,
                            .kafka = "topic.metadata.propagation.max.ms: "
                                     "2000"});
    tk_sql(q, "INSERT INTO exactly.outbox (key, value) VALUES ('a', 'one')");
    tk_sql(q, "INSERT INTO exactly.outbox (topic, key, value) VALUES "
              "('" MISSING "', 'a', 'kept')");
    tk_sql(q, "INSERT INTO exactly.outbox (key, value) VALUES ('a', 'two')");
    tk_sql(q, "INSERT INTO exactly.outbox (key, value) VALUES ('b', "
              "'three')");

    relay = relay_start(f.config, NULL, f.log);
    relay_wait_settled(q, f.log, 30000, "first rows");
    TK_CHECK_EQ_INT64(tk_sql_int64(q, "SELECT count(*) FROM exactly.outbox "
                                      "WHERE topic = '" MISSING "' AND key = "
                                      "'a' AND value = 'kept' AND "
                                      "published_at IS NULL AND dead_at IS "
                                      "NOT NULL AND dead_reason LIKE "
                                      "'%%UNKNOWN_TOPIC%%'"),
                      1, "the row of the missing topic, dead-lettered with "
                         "its reason and kept");
    {
        char *why = tk_sql_text(q, "SELECT dead_reason FROM exactly.outbox "
                                   "WHERE topic = '" MISSING "'");
        tk_note("dead_reason: %s", why ? why : "(null)");
        free(why);
    }
    LEDGER_CHECK_LOG(tk_file_contains(f.log, "msg=\"row dead-lettered\""),
                     f.log, "the relay did not log the dead-lettered row");
    {
        char *v = tk_sql_text(q, "SELECT string_agg(convert_from(value, "
                                 "'UTF8'), ',' ORDER BY id) FROM "
                                 "exactly.outbox WHERE published_at IS NOT "
                                 "NULL");
        TK_CHECK_EQ_STR(v, "one,two,three", "rows published behind it");
        free(v);
    }
    recs = relay_read_topic(f.bootstraps, TOPIC, 1, &n);
    TK_CHECK_EQ_INT64(n, 3, "records on " TOPIC);
    for (i = 0; i < n; i++)
        TK_CHECK_EQ_STR(recs[i].key, i < 2 ? "a" : "b", "record key, in order");
    free(recs);

    /* Another row for it while it is still missing: librdkafka refuses it
     * from its cache; the relay asks the broker, which still says no, and
     * dead-letters it too. */
    tk_sql(q, "INSERT INTO exactly.outbox (topic, key, value) VALUES "
              "('" MISSING "', 'c', 'kept too')");
    t0 = tk_now_ms();
    while (tk_sql_int64(q, "SELECT count(*) FROM exactly.outbox WHERE value = "
                           "'kept too' AND dead_reason LIKE '%%Unknown "
                           "topic%%'") == 0) {
        LEDGER_CHECK_LOG(tk_now_ms() - t0 < 20000, f.log,
                         "a second row of the missing topic was not "
                         "dead-lettered");
        tk_sleep_ms(20);
    }

    /* The topic exists now: clearing dead_reason sends the rows again. */
    rd_kafka_mock_topic_set_error(tk_mock_cluster(f.mock), MISSING,
                                  RD_KAFKA_RESP_ERR_NO_ERROR);
    tk_sql(q, "UPDATE exactly.outbox SET dead_reason = NULL, dead_at = NULL "
              "WHERE topic = '" MISSING "'");
    t0 = tk_now_ms();
    while (tk_sql_int64(q, "SELECT count(*) FROM exactly.outbox WHERE "
                           "published_at IS NULL AND dead_reason IS NULL") >
               0 &&
           tk_now_ms() - t0 < 20000)
        tk_sleep_ms(20);
    {
        char *why = tk_sql_text(q, "SELECT string_agg(DISTINCT coalesce("
                                   "dead_reason, CASE WHEN published_at IS "
                                   "NULL THEN 'pending' ELSE 'published' "
                                   "END), '; ') FROM exactly.outbox WHERE "
                                   "topic = '" MISSING "'");
        LEDGER_CHECK_LOG(why && strcmp(why, "published") == 0, f.log,
                         "the rows sent again once their topic exists: %s",
                         why ? why : "(null)");
        free(why);
    }
    tk_note("sent again and published %lld ms after dead_reason was cleared",
            (long long)(tk_now_ms() - t0));
    relay_stop(relay, 20000, f.log);
    tk_note("a row of a missing topic was dead-lettered with its reason, the "
            "rows behind it published, and the row sent once the topic "
            "existed");
    relay_fixture_stop(&f);
    return 0;
}
