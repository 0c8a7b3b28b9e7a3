/*
 * test_status_dead_letters.c - the status server's reading of the dead
 * letters costs the same however many there are, and the page says so.
 *
 * A pipeline has DEAD rows in its dead_letters table, far more than the
 * page counts (STATUS_DEAD_LETTERS_COUNTED, 10,000). `exactly run
 * --metrics` reads the status every 2 s. Over ROUNDS of its rounds, the
 * rows PostgreSQL read from dead_letters (pg_stat_user_tables: heap rows
 * of sequential scans plus rows fetched through indexes) must stay under
 * PER_ROUND a round, whatever DEAD is: a count over every dead letter of
 * the pipeline would read DEAD rows a round, holding the status session's
 * backend busy and growing with the table.
 *
 * The page stays true: its total is 10,000 marked as a lower bound
 * (total_at_least; the HTML page says "at least"), the counts by reason
 * add up to it, and the 10 newest are the 10 highest ids.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define DEAD 100000
#define COUNTED 10000
#define ROUNDS 2
/* The newest COUNTED rows by reason and the 10 newest: with some margin. */
#define PER_ROUND 15000

/* /status.json's pipeline object (and the database's read_at in
 * *read_at, malloc'd), or NULL when it does not answer yet. */
static json_t *status_pipeline(int port, char **read_at, json_t **root)
{
    char *body = NULL;
    const char *at;

    *read_at = NULL;
    if (tk_http_get(port, "/status.json", &body) != 200 || !body) {
        free(body);
        return NULL;
    }
    *root = json_loads(body, 0, NULL);
    free(body);
    TK_CHECK(*root != NULL, "/status.json is not JSON");
    at = json_string_value(json_object_get(
        json_object_get(*root, "database"), "rows_read_at"));
    *read_at = at ? strdup(at) : NULL;
    return json_array_get(json_object_get(*root, "pipelines"), 0);
}

/* Waits until the status reader finished a round later than the one that
 * read *at (NULL: any round); *at becomes that round's. */
static void wait_round(int port, char **at, const char *log)
{
    int64_t until = tk_now_ms() + 15000;

    for (;;) {
        json_t *root = NULL;
        char *now = NULL;
        json_t *pipe = status_pipeline(port, &now, &root);
        int later = pipe && now && (!*at || strcmp(now, *at) != 0);
        json_decref(root);
        if (later) {
            free(*at);
            *at = now;
            return;
        }
        free(now);
        LEDGER_CHECK_LOG(tk_now_ms() < until, log, "the status reader "
                         "finished no round within 15 s");
        tk_sleep_ms(50);
    }
}

/* Rows of dead_letters PostgreSQL read so far, by any session. */
static int64_t rows_read(PGconn *db)
{
    return tk_sql_int64(db, "SELECT coalesce(seq_tup_read, 0)"
                            " + coalesce(idx_tup_fetch, 0)"
                            " FROM pg_stat_user_tables"
                            " WHERE schemaname = 'exactly'"
                            " AND relname = 'dead_letters'");
}

int main(void)
{
    ledger_fixture f;
    ledger_config cfg;
    PGconn *db;
    json_t *root = NULL, *pipe, *dl, *r;
    char addr[32], *at = NULL;
    int port = tk_free_port(), status;
    int64_t before, after, by_reason = 0, top;
    size_t k;
    pid_t run;

    ledger_fixture_start(&f, "status_dead_letters", "status_dl", 1);
    memset(&cfg, 0, sizeof cfg);
    cfg.max_messages = 100;
    cfg.max_wait_ms = 20;
    ledger_fixture_config(&f, &cfg);
    db = tk_pg_connect(f.conninfo);
    tk_sql(db, "INSERT INTO exactly.dead_letters"
               " (pipeline, topic, partition, \"offset\", entity_id, reason)"
               " SELECT '%s', 'status_dl', 0, g, g::text,"
               " (ARRAY['bad amount', 'no such account', 'too long'])[1 + g %% 3]"
               " FROM generate_series(1, %d) g",
           LEDGER_PIPELINE, DEAD);
    tk_sql(db, "ANALYZE exactly.dead_letters");
    top = tk_sql_int64(db, "SELECT max(id) FROM exactly.dead_letters");

    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    {
        char *argv[] = {(char *)ledger_exactly_bin(), "run", "-c", f.config,
                        "--metrics", addr, "--lock-dir", f.dir, NULL};
        run = tk_spawn(argv, f.log);
    }
    LEDGER_CHECK_LOG(tk_wait_log(f.log, "serving metrics", 1, run, 15000,
                                 NULL),
                     f.log, "exactly run did not serve metrics");

    /* A first round, then ROUNDS more, counted from the one after it: the
     * status session's figures reach pg_stat when its backend goes idle,
     * at most a round late. */
    wait_round(port, &at, f.log);
    wait_round(port, &at, f.log);
    before = rows_read(db);
    for (k = 0; k < ROUNDS; k++)
        wait_round(port, &at, f.log);
    after = rows_read(db);
    tk_note("%" PRId64 " rows of dead_letters read over %d status rounds "
            "(%d dead letters)", after - before, ROUNDS, DEAD);
    LEDGER_CHECK_LOG(after - before <= (int64_t)PER_ROUND * (ROUNDS + 1),
                     f.log, "the status reader read %" PRId64 " rows of "
                     "dead_letters in %d rounds, more than %d a round: its "
                     "cost grows with the %d dead letters", after - before,
                     ROUNDS, PER_ROUND, DEAD);

    /* What the page says of them. */
    free(at);
    pipe = status_pipeline(port, &at, &root);
    TK_CHECK(pipe != NULL, "/status.json did not answer");
    dl = json_object_get(pipe, "dead_letters");
    TK_CHECK_EQ_INT64(json_integer_value(json_object_get(dl, "total")),
                      COUNTED, "dead letters total (capped)");
    TK_CHECK(json_is_true(json_object_get(dl, "total_at_least")),
             "the capped total is not marked as a lower bound");
    json_array_foreach(json_object_get(dl, "by_reason"), k, r)
        by_reason += json_integer_value(json_object_get(r, "count"));
    TK_CHECK_EQ_INT64(by_reason, COUNTED, "dead letters counted by reason");
    TK_CHECK_EQ_INT64(json_array_size(json_object_get(dl, "newest")), 10,
                      "newest dead letters");
    json_array_foreach(json_object_get(dl, "newest"), k, r)
        TK_CHECK_EQ_INT64(json_integer_value(json_object_get(r, "id")),
                          top - (int64_t)k, "id of a newest dead letter");
    json_decref(root);
    free(at);
    {
        char *page = NULL;
        TK_CHECK(tk_http_get(port, "/", &page) == 200 && page,
                 "GET / did not answer 200");
        TK_CHECK(strstr(page, "at least <span class=\"dl-total\">10000<") != NULL,
                 "the page does not say \"at least 10000\" dead letters");
        free(page);
    }

    status = tk_terminate(run, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log, "exactly run exited %d", status);
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
