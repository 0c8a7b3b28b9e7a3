/*
 * Statements the worker runs batch after batch are prepared once on its
 * connection. A prepared SELECT * answers "cached plan must not change
 * result type" once its table gains a column, where an unprepared one
 * would simply return the new column: the worker must go on applying
 * every message (no dead letter, no exit), the lookup prepared again.
 *
 * One worker runs throughout; the first half of the messages is applied,
 * then accounts gains a column and changes its values, then the second
 * half is produced: the view must hold the values after the change for
 * the IDs of the second half.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "testkit.h"

#define TOPIC "ddl"
#define PARTS 2
#define ENTITIES 200
#define HALF 400

static int64_t committed(PGconn *c)
{
    return tk_sql_int64(c, "SELECT coalesce(sum(next_offset), 0) FROM "
                           "exactly.offsets WHERE pipeline = 'ddl'");
}

static void wait_committed(PGconn *c, int64_t n, pid_t pid, const char *log)
{
    int64_t t0 = tk_now_ms();
    int st;

    while (committed(c) < n) {
        TK_CHECK(tk_now_ms() - t0 < 60000, "only %" PRId64 " of %" PRId64
                 " messages committed in 60 s (log %s)", committed(c), n, log);
        TK_CHECK(waitpid(pid, &st, WNOHANG) == 0, "worker exited (log %s)", log);
        tk_sleep_ms(50);
    }
}

int main(void)
{
    char conninfo[1024], dir[512], cfg[700], logp[700];
    const char *verbose[] = {"-v", NULL};
    int64_t t0 = tk_now_ms();
    tk_config config;
    tk_pipeline *pl = &config.pipelines[0];
    tk_mock *m;
    PGconn *c;
    pid_t pid;

    tk_tmpdir("exactly-prepared-ddl", dir, sizeof(dir));
    tk_pg_create_db("prepared_ddl", conninfo, sizeof(conninfo));
    c = tk_pg_connect(conninfo);
    tk_sql(c, "CREATE TABLE accounts (id bigint PRIMARY KEY, name text, "
              "balance numeric)");
    tk_sql(c, "INSERT INTO accounts SELECT g, 'a' || g, g FROM "
              "generate_series(1, %d) g", ENTITIES);
    tk_sql(c, "CREATE TABLE view (id bigint PRIMARY KEY, name text, "
              "balance numeric)");
    m = tk_mock_start(1);
    tk_mock_create_topic(m, TOPIC, PARTS);
    snprintf(cfg, sizeof(cfg), "%s/ddl.yaml", dir);
    snprintf(logp, sizeof(logp), "%s/worker.log", dir);
    tk_config_init(&config, tk_mock_bootstraps(m), conninfo);
    pl->name = "ddl";
    pl->topics[0] = TOPIC;
    pl->group = "ddl";
    pl->id_from = "key";
    pl->id_type = "bigint";
    pl->max_messages = 50;
    pl->max_wait_ms = 20;
    pl->lookup_sql = "SELECT * FROM accounts WHERE id = ANY($1)";
    pl->lookup_key_column = "id";
    tk_upsert_handler(pl, "view",
                      (const char *[]){"id", "name", "balance", NULL});
    tk_config_write(cfg, &config);
    tk_migrate(cfg, "/dev/null");
    pid = tk_worker_start(cfg, 0, logp, verbose);

    tk_produce_ids(tk_mock_bootstraps(m), TOPIC, HALF, ENTITIES, PARTS, 1, NULL);
    wait_committed(c, HALF, pid, logp);
    /* Many batches ran: the lookup is prepared by now. */
    TK_CHECK(tk_sql_int64(c, "SELECT count(*) FROM view") > 0, "first half");

    tk_sql(c, "ALTER TABLE accounts ADD COLUMN note text DEFAULT 'new'");
    tk_sql(c, "UPDATE accounts SET name = 'after ' || id, balance = -id");
    tk_produce_ids(tk_mock_bootstraps(m), TOPIC, HALF, ENTITIES, PARTS, 2, NULL);
    wait_committed(c, 2 * HALF, pid, logp);

    TK_CHECK_EQ_INT64(tk_sql_int64(c, "SELECT count(*) FROM exactly.dead_letters"),
                      0, "dead letters");
    /* Every ID of the second half shows the values after the change. */
    for (size_t i = 0; i < HALF; i++) {
        int64_t id = tk_id_for(2, i, ENTITIES);
        TK_CHECK_EQ_INT64(tk_sql_int64(c, "SELECT count(*) FROM view WHERE id = "
                                          "%" PRId64 " AND name = 'after ' || id "
                                          "AND balance = -id", id),
                          1, "second-half row has the new values");
    }
    TK_CHECK_EQ_INT64(tk_terminate(pid, 10000), 0, "worker stops cleanly");
    PQfinish(c);
    tk_mock_stop(m);
    tk_pg_drop_db(conninfo);
    tk_rm_rf(dir);
    tk_note("prepared statements survive a changed table in %" PRId64 " ms",
            tk_now_ms() - t0);
    return 0;
}
