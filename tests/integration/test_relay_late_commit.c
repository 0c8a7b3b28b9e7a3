/*
 * The outbox relay never skips a row that commits late (relay.h,
 * invariant 1).
 *
 * Transaction C takes its transaction id first; then A takes a later one
 * and inserts the row "late" (the lowest outbox id); then C inserts rows
 * with higher ids and commits. While A stays open the relay publishes C's
 * rows (their transaction is older than A's) over several cycles: a relay
 * reading `id > last_id` would now be past "late" for good. Rows that B
 * commits meanwhile (younger than A) wait behind A. When A commits,
 * "late" and B's rows are published, each exactly once, in transaction
 * order: C's, then A's, then B's (one partition, so the topic's order is
 * the publish order). A row of a rolled-back transaction is never
 * published.
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

#define TOPIC "outbox-late"
#define N_C 20
#define N_B 5
#define POLL_MS 50

static void insert(PGconn *db, const char *key)
{
    tk_sql(db,
           "INSERT INTO exactly.outbox (key, value, headers) VALUES "
           "(convert_to('%s', 'UTF8'), NULL, '{\"origin\": \"test\"}')",
           key);
}

int main(void)
{
    relay_fixture f;
    PGconn *a, *b, *c, *q;
    pid_t relay;
    relay_rec *recs;
    size_t n, i;
    int64_t deadline, published;

    relay_fixture_start(&f, "relay_late", NULL);
    tk_mock_create_topic(f.mock, TOPIC, 1);
    relay_fixture_config(&f, &(relay_config){.name = "late",
                                             .topic = TOPIC,
                                             .batch_size = 4,
                                             .poll_interval_ms = POLL_MS});

    a = tk_pg_connect(f.conninfo);
    b = tk_pg_connect(f.conninfo);
    c = tk_pg_connect(f.conninfo);
    q = f.db;

    /* C's transaction id, then A's: A is the younger. */
    tk_sql(c, "BEGIN; SELECT pg_current_xact_id()");
    tk_sql(a, "BEGIN");
    insert(a, "late");
    for (i = 0; i < N_C; i++) {
        char key[32];
        snprintf(key, sizeof(key), "c%02zu", i);
        insert(c, key);
    }
    tk_sql(c, "COMMIT");
    /* Rolled back: never visible, never published. */
    tk_sql(c, "BEGIN");
    insert(c, "aborted");
    tk_sql(c, "ROLLBACK");

    relay = relay_start(f.config, (const char *const[]){"-v", NULL}, f.log);
    /* C's rows go out while A is open, in batches of 4: several cycles. */
    deadline = tk_now_ms() + 30000;
    do {
        published = tk_sql_int64(q, "SELECT count(*) FROM exactly.outbox "
                                    "WHERE published_at IS NOT NULL");
        if (published >= N_C)
            break;
        tk_sleep_ms(20);
    } while (tk_now_ms() < deadline);
    LEDGER_CHECK_LOG(published == N_C, f.log, "published %lld of C's %d rows "
                     "while A is open", (long long)published, N_C);
    /* B commits rows younger than A: they wait behind A. */
    for (i = 0; i < N_B; i++) {
        char key[32];
        snprintf(key, sizeof(key), "b%02zu", i);
        insert(b, key);
    }
    /* A stays open across many more relay cycles. */
    tk_sleep_ms(20 * POLL_MS);
    TK_CHECK_EQ_INT64(tk_sql_int64(q, "SELECT count(*) FROM exactly.outbox "
                                      "WHERE published_at IS NOT NULL"),
                      N_C, "rows published while A is open");
    TK_CHECK_EQ_INT64(tk_high_watermark(f.bootstraps, TOPIC, 0),
                      N_C, "records on the topic while A is open");
    TK_CHECK(ledger_log_count(f.log, "batch published") >= N_C / 4,
             "the relay ran at least %d cycles", N_C / 4);

    tk_sql(a, "COMMIT");
    TK_CHECK_EQ_INT64(tk_sql_int64(q, "SELECT min(id) FROM exactly.outbox "
                                      "WHERE key = 'late'"),
                      tk_sql_int64(q, "SELECT min(id) FROM exactly.outbox"),
                      "id of the late row (lowest)");
    deadline = tk_now_ms() + 30000;
    do {
        published = tk_sql_int64(q, "SELECT count(*) FROM exactly.outbox "
                                    "WHERE published_at IS NOT NULL");
        if (published >= N_C + 1 + N_B)
            break;
        tk_sleep_ms(20);
    } while (tk_now_ms() < deadline);
    LEDGER_CHECK_LOG(published == N_C + 1 + N_B, f.log,
                     "published %lld of %d rows after A committed",
                     (long long)published, N_C + 1 + N_B);
    relay_stop(relay, 10000, f.log);

    recs = relay_read_topic(f.bootstraps, TOPIC, 1, &n);
    TK_CHECK_EQ_INT64(n, N_C + 1 + N_B, "records on the topic");
    for (i = 0; i < n; i++) {
        char *eid;
        char want[32];

        if (i < N_C)
            snprintf(want, sizeof(want), "c%02zu", i);
        else if (i == N_C)
            snprintf(want, sizeof(want), "late");
        else
            snprintf(want, sizeof(want), "b%02zu", i - N_C - 1);
        TK_CHECK_EQ_STR(recs[i].key, want, "key at this offset");
        TK_CHECK_EQ_INT64(recs[i].n_event_ids, 1, "event-id headers");
        eid = tk_sql_text(q, "SELECT event_id::text FROM exactly.outbox "
                             "WHERE key = convert_to('%s', 'UTF8')",
                          want);
        TK_CHECK_EQ_STR(recs[i].event_id, eid, "event-id of the row");
        free(eid);
    }
    TK_CHECK_EQ_INT64(tk_sql_int64(q, "SELECT published FROM "
                                      "exactly.relay_state WHERE relay = "
                                      "'late'"),
                      N_C + 1 + N_B, "relay_state.published");
    tk_note("late row published after %d rows of an older transaction; "
            "%d younger rows waited behind it", N_C, N_B);
    free(recs);
    PQfinish(a);
    PQfinish(b);
    PQfinish(c);
    relay_fixture_stop(&f);
    return 0;
}
