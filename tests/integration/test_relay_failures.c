/*
 * The outbox relay's failure cases (relay.h, invariant 4):
 *   - a record over message.max.bytes and a row whose headers are not a
 *     JSON object are dead-lettered in their row with a reason, and the
 *     rows behind them, of the same key too, are published in order;
 *   - the broker down: rows wait, pending, and are published once it is
 *     back, none lost;
 *   - the relay's PostgreSQL session terminated: it reconnects, takes the
 *     outbox lock again and goes on;
 *   - a second relay on the same outbox waits while the first runs;
 *   - SIGTERM with the broker down: the relay stops within seconds, the
 *     undelivered row stays pending;
 *   - `exactly relay status --json` reports pending, dead and published;
 *   - cleanup: mark deletes published rows past retention, and only them.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "relay_kit.h"
#include "testkit.h"

#define TOPIC "relay-fail"

static int64_t count(PGconn *q, const char *where)
{
    return tk_sql_int64(q, "SELECT count(*) FROM exactly.outbox WHERE %s",
                        where);
}

/* Waits until count(where) reaches want; fails after 30 s. */
static void wait_count(PGconn *q, const char *where, int64_t want,
                       const char *log)
{
    int64_t deadline = tk_now_ms() + 30000, n;

    while ((n = count(q, where)) < want && tk_now_ms() < deadline)
        tk_sleep_ms(20);
    LEDGER_CHECK_LOG(n == want, log, "%lld rows where %s, expected %lld",
                     (long long)n, where, (long long)want);
}

int main(void)
{
    char slog[512];
    relay_fixture f;
    PGconn *q;
    pid_t relay, second;
    relay_rec *recs;
    size_t n;
    int status;

    relay_fixture_start(&f, "relay_fail", NULL);
    q = f.db;
    snprintf(slog, sizeof(slog), "%s/status.out", f.dir);
    tk_mock_create_topic(f.mock, TOPIC, 1);
    relay_fixture_config(&f, &(relay_config){.name = "fail",
                                             .topic = TOPIC,
                                             .kafka = "message.max.bytes: "
                                                      "10000"});

    /* Bad rows between good rows of the same key. */
    tk_sql(q, "INSERT INTO exactly.outbox (key, value) VALUES ('k', 'one')");
    tk_sql(q, "INSERT INTO exactly.outbox (key, value) VALUES ('k', "
              "convert_to(repeat('x', 20000), 'UTF8'))");
    tk_sql(q, "INSERT INTO exactly.outbox (key, value, headers) VALUES "
              "('k', 'bad headers', '[1, 2]')");
    tk_sql(q, "INSERT INTO exactly.outbox (key, value) VALUES ('k', 'two')");

    relay = relay_start(f.config, NULL, f.log);
    wait_count(q, "published_at IS NOT NULL", 2, f.log);
    wait_count(q, "dead_reason IS NOT NULL", 2, f.log);
    TK_CHECK_EQ_INT64(count(q, "dead_reason LIKE '%%too large%%' AND "
                               "octet_length(value) = 20000"),
                      1, "the oversized row, dead-lettered with its reason");
    TK_CHECK_EQ_INT64(count(q, "dead_reason = 'headers must be a JSON "
                               "object' AND value = 'bad headers'"),
                      1, "the row with bad headers, dead-lettered");

    /* A second relay on the same outbox waits. */
    second = relay_start(f.config, NULL, f.log2);
    LEDGER_CHECK_LOG(ledger_wait_log(f.log2, "another relay publishes this "
                                     "outbox; waiting", 1, second, 20000,
                                     NULL),
                     f.log2, "the second relay did not wait");
    tk_terminate(second, 10000);

    /* The broker down: rows wait, then go out. */
    rd_kafka_mock_broker_set_down(tk_mock_cluster(f.mock), 1);
    tk_sql(q, "INSERT INTO exactly.outbox (key, value) VALUES ('k', "
              "'three')");
    tk_sleep_ms(1500);
    TK_CHECK_EQ_INT64(count(q, "published_at IS NULL AND dead_reason IS "
                               "NULL"),
                      1, "rows pending while the broker is down");
    rd_kafka_mock_broker_set_up(tk_mock_cluster(f.mock), 1);
    wait_count(q, "published_at IS NOT NULL", 3, f.log);

    /* Its session terminated: the relay reconnects. */
    relay_terminate_sessions(q);
    tk_sql(q, "INSERT INTO exactly.outbox (key, value) VALUES ('k', 'four')");
    wait_count(q, "published_at IS NOT NULL", 4, f.log);

    /* SIGTERM while the broker is down: the relay purges what it could
     * not deliver and exits 0 well before message.timeout.ms (300 s); the
     * row stays pending. */
    rd_kafka_mock_broker_set_down(tk_mock_cluster(f.mock), 1);
    tk_sql(q, "INSERT INTO exactly.outbox (key, value) VALUES ('k', 'five')");
    tk_sleep_ms(500);
    {
        int64_t t0 = tk_now_ms();

        status = tk_terminate(relay, 20000);
        LEDGER_CHECK_LOG(status == 0, f.log, "relay exit status %d after "
                         "SIGTERM with the broker down", status);
        tk_note("stopped in %lld ms with the broker down",
                (long long)(tk_now_ms() - t0));
    }
    TK_CHECK_EQ_INT64(count(q, "published_at IS NULL AND dead_reason IS "
                               "NULL"),
                      1, "rows pending after a stop with the broker down");
    rd_kafka_mock_broker_set_up(tk_mock_cluster(f.mock), 1);

    recs = relay_read_topic(f.bootstraps, TOPIC, 1, &n);
    TK_CHECK_EQ_INT64(n, 4, "records on the topic");
    {
        char *v = tk_sql_text(q, "SELECT string_agg(convert_from(value, "
                                 "'UTF8'), ',' ORDER BY id) FROM "
                                 "exactly.outbox WHERE published_at IS NOT "
                                 "NULL");
        TK_CHECK_EQ_STR(v, "one,two,three,four", "published rows");
        free(v);
    }
    free(recs);

    /* relay status --json */
    {
        char *argv[] = {(char *)ledger_exactly_bin(), "relay", "status",
                        "-c", f.config, "--json", NULL};
        char *out;
        json_t *o;
        json_error_t jerr;

        status = tk_wait(tk_spawn(argv, slog), 30000);
        out = tk_read_file(slog);
        TK_CHECK(status == 0 && out, "relay status exit %d: %s", status,
                 out ? out : "");
        o = json_loads(out, 0, &jerr);
        TK_CHECK(o != NULL, "relay status printed no JSON: %s", out);
        TK_CHECK_EQ_STR(json_string_value(json_object_get(o, "relay")),
                        "fail", "status relay");
        TK_CHECK_EQ_INT64(json_integer_value(json_object_get(o, "pending")),
                          1, "status pending");
        TK_CHECK_EQ_INT64(json_integer_value(json_object_get(o, "dead")), 2,
                          "status dead");
        TK_CHECK_EQ_INT64(json_integer_value(json_object_get(o,
                                                             "published")),
                          4, "status published");
        json_decref(o);
        free(out);
    }
    /* cleanup: mark keeps published rows for retention (7 d), then the
     * relay deletes them; pending and dead-lettered rows stay. */
    tk_sql(q, "UPDATE exactly.outbox SET published_at = now() - interval "
              "'8 days' WHERE value = 'one'");
    tk_sql(q, "UPDATE exactly.outbox SET published_at = now() - interval "
              "'6 days' WHERE value = 'two'");
    status = relay_run_to_idle(f.config, 300, 30000, f.log);
    LEDGER_CHECK_LOG(status == 0, f.log, "relay exit status %d", status);
    {
        char *v = tk_sql_text(q, "SELECT string_agg(coalesce(convert_from("
                                 "value, 'UTF8'), '?'), ',' ORDER BY id) "
                                 "FROM exactly.outbox WHERE octet_length("
                                 "value) < 100");
        TK_CHECK_EQ_STR(v, "bad headers,two,three,four,five",
                        "rows left after the retention expiry");
        free(v);
    }
    tk_note("dead-lettered 2 bad rows without stopping their key; waited "
            "out a broker outage and a terminated session");
    relay_fixture_stop(&f);
    return 0;
}
