/*
 * Dedup keys expire (defect 1; README "dedup.retention").
 *
 * A pipeline with dedup on the event-id header and a retention of two
 * seconds, run under `exactly run --metrics`:
 *   - an event is applied and its key stored;
 *   - while the worker runs, the key disappears once it is older than the
 *     retention, and exactly_dedup_keys_expired_total counts it;
 *   - the same event after the retention is applied again (documented);
 *   - a duplicate inside the retention is still dropped.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

static void produce_event(const char *bootstraps, const char *topic,
                          const char *key, const char *event_id, int copies)
{
    tk_msg msgs[4];
    int i;

    memset(msgs, 0, sizeof msgs);
    for (i = 0; i < copies; i++) {
        msgs[i].partition = 0;
        msgs[i].key = key;
        msgs[i].key_len = strlen(key);
        msgs[i].n_headers = 1;
        msgs[i].headers[0].name = "event-id";
        msgs[i].headers[0].value = event_id;
        msgs[i].headers[0].value_len = strlen(event_id);
    }
    tk_produce(bootstraps, topic, msgs, (size_t)copies);
}

static void wait_sql(PGconn *db, const char *sql, int64_t want,
                     const char *log, const char *what)
{
    int64_t deadline = tk_now_ms() + 30000, got;

    while ((got = tk_sql_int64(db, "%s", sql)) != want) {
        LEDGER_CHECK_LOG(tk_now_ms() < deadline, log,
                         "%s: %" PRId64 ", expected %" PRId64
                         " within 30 s", what, got, want);
        tk_sleep_ms(100);
    }
}

int main(void)
{
    char listen[64], *body = NULL;
    ledger_fixture f;
    ledger_config c;
    PGconn *db;
    pid_t pid;
    int port, status;
    double expired;

    ledger_fixture_start(&f, "dedup_retention", "dedup-retention", 1);
    memset(&c, 0, sizeof c);
    c.max_messages = 10;
    c.max_wait_ms = 50;
    c.pipeline_yaml = "    dedup: {from: header, header: event-id, "
                      "retention: 2s}\n";
    ledger_fixture_config(&f, &c);
    db = tk_pg_connect(f.conninfo);

    port = tk_free_port();
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    {
        char *argv[] = {(char *)ledger_exactly_bin(), "run", "-c", f.config,
                        "--metrics", listen, NULL};
        pid = tk_spawn(argv, f.log);
    }
    produce_event(f.mock->bootstraps, f.topic, "5", "e-1", 1);
    wait_sql(db, "SELECT count(*) FROM ledger", 1, f.log, "ledger rows");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                       "exactly.dedup_keys"),
                      1, "dedup keys after the first event");

    /* Older than the retention: gone while the worker runs. */
    wait_sql(db, "SELECT count(*) FROM exactly.dedup_keys", 0, f.log,
             "dedup keys left after the retention");
    LEDGER_CHECK_LOG(tk_http_get(port, "/metrics", &body) == 200 && body,
                     f.log, "GET /metrics failed");
    expired = tk_metric_sum(body, "exactly_dedup_keys_expired_total", NULL);
    free(body);
    TK_CHECK(expired >= 1, "exactly_dedup_keys_expired_total is %.0f",
             expired);

    /* The same event again: applied again, as documented. */
    produce_event(f.mock->bootstraps, f.topic, "5", "e-1", 1);
    wait_sql(db, "SELECT count(*) FROM ledger", 2, f.log, "ledger rows");
    /* A duplicate inside the retention is still dropped. */
    produce_event(f.mock->bootstraps, f.topic, "6", "e-2", 2);
    wait_sql(db, "SELECT coalesce(max(next_offset), 0) FROM exactly.offsets",
             4, f.log, "stored offset");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM ledger WHERE "
                                       "entity_id = '6'"),
                      1, "ledger rows of a duplicated event");
    status = tk_terminate(pid, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log, "exactly run exited with %d",
                     status);
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                       "exactly.dead_letters"),
                      0, "dead letters");
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
