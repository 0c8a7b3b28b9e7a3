/*
 * A row is refused for an unknown topic only on the broker's answer about
 * that topic in the same cycle (relay.h, invariant 4). librdkafka
 * remembers a topic the broker called missing and refuses its records at
 * once; the relay then asks the broker again, once per topic and cycle.
 * When that question gets no answer, every row of the topic in the cycle
 * stays pending, not only the first:
 *   - two rows of MISSING are dead-lettered while the broker lacks it;
 *   - dead_reason is cleared on both, which one batch reads; librdkafka
 *     refuses the first from its cache, the relay asks, and the question
 *     gets no answer (the fault site relay_ask_unanswered, below);
 *   - that cycle dead-letters neither row again;
 *   - once the topic exists, the next cycle's question is answered and
 *     both rows are published.
 *
 * The fault site stands in for a broker that does not answer within
 * RELAY_ASK_TIMEOUT_MS. The mock cannot play it: librdkafka 2.0.2 forgets
 * a "does not exist" answer within about a second and asks again on its
 * own, so a broker slowed down for longer than the question lets the
 * producer queue the rows behind the first (they wait for the answer)
 * instead of refusing them from its cache; a broker that lags behind
 * another, as a real cluster's can after a topic is created, gives the
 * relay a cached refusal after an unanswered question.
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
#define MISSING "relay-late"

static const char *ASKED =
    "asked the broker again about a topic it called unknown";
static const char *RESENT = "records failed; sending them again";

int main(void)
{
    char *text, *from, *to, *dead;
    const char *faults_built = getenv("EXACTLY_TEST_FAULTS_BUILT");
    relay_fixture f;
    rd_kafka_mock_cluster_t *mc;
    PGconn *q;
    int64_t t0;
    pid_t relay;

    if (!faults_built || strcmp(faults_built, "1") != 0) {
        tk_note("skipped: the relay_ask_unanswered fault site needs a build "
                "with EXACTLY_FAULT_INJECTION");
        return 77;
    }
    relay_fixture_start(&f, "relay_unanswered", NULL);
    q = f.db;
    mc = tk_mock_cluster(f.mock);
    tk_mock_create_topic(f.mock, TOPIC, 1);
    rd_kafka_mock_topic_set_error(mc, MISSING,
                                  RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
    relay_fixture_config(
        &f, &(relay_config){.name = "unanswered",
                            .topic = TOPIC,
                            .batch_size = 10,
                            .kafka = "topic.metadata.propagation.max.ms: "
                                     "1000"});
    tk_sql(q, "INSERT INTO exactly.outbox (topic, key, value) SELECT '"
              MISSING "', 'a', 'kept' FROM generate_series(1, 2)");
    /* The relay's first question about a topic gets no answer. */
    setenv("EXACTLY_FAULTS", "relay_ask_unanswered:1", 1);
    relay = relay_start(f.config, NULL, f.log);
    unsetenv("EXACTLY_FAULTS");
    LEDGER_CHECK_LOG(tk_sql_wait_int64(q, 2, 20000, "SELECT count(*) FROM "
                                                    "exactly.outbox WHERE "
                                                    "dead_reason IS NOT NULL")
                         == 2,
                     f.log, "the rows of the missing topic were not "
                            "dead-lettered");
    LEDGER_CHECK_LOG(tk_log_count(f.log, ASKED) == 0, f.log,
                     "the relay asked about " MISSING " before its rows "
                     "were sent again");

    /* Sent again while librdkafka still holds "does not exist". */
    tk_sql(q, "UPDATE exactly.outbox SET dead_reason = NULL, dead_at = NULL");
    LEDGER_CHECK_LOG(tk_wait_log(f.log, ASKED, 1, relay, 20000, NULL), f.log,
                     "the relay did not ask about " MISSING " again");
    /* The cycle that asked records its outcome, logs each row it
     * dead-lettered, then reports the rows that failed for now. What that
     * cycle did is read from the log: the next one, a backoff later, may
     * ask again and be told the topic is missing, which refuses the rows
     * rightly. */
    LEDGER_CHECK_LOG(tk_wait_log(f.log, RESENT, 1, relay, 20000, NULL), f.log,
                     "the cycle that asked did not end");
    text = tk_read_file(f.log);
    TK_CHECK(text != NULL, "reading %s", f.log);
    from = strstr(text, ASKED);
    to = from ? strstr(from, RESENT) : NULL;
    TK_CHECK(from && to, "the cycle's lines in %s", f.log);
    *to = '\0';
    dead = strstr(from, "msg=\"row dead-lettered\"");
    if (dead)
        *strchrnul(dead, '\n') = '\0';
    LEDGER_CHECK_LOG(!dead, f.log,
                     "a row dead-lettered again though the broker did not "
                     "answer: %s", dead ? dead : "");
    free(text);

    /* The topic exists: clearing dead_reason (for the rows a later
     * cycle was told are missing, if any) sends both again, and the next
     * question is answered. */
    rd_kafka_mock_topic_set_error(mc, MISSING, RD_KAFKA_RESP_ERR_NO_ERROR);
    tk_sql(q, "UPDATE exactly.outbox SET dead_reason = NULL, dead_at = NULL "
              "WHERE dead_reason IS NOT NULL");
    t0 = tk_now_ms();
    LEDGER_CHECK_LOG(tk_sql_wait_int64(q, 2, 20000, "SELECT count(*) FROM "
                                                    "exactly.outbox WHERE "
                                                    "published_at IS NOT NULL")
                         == 2,
                     f.log, "the rows were not published once the topic "
                            "existed");
    tk_note("published %lld ms after the topic was created",
            (long long)(tk_now_ms() - t0));
    relay_stop(relay, 20000, f.log);
    relay_fixture_stop(&f);
    return 0;
}
