/*
 * A handler's open() that fails for a reason that goes away by itself is
 * retried; it is not a refusal. The built-in upsert has the server plan its
 * statements at open(); while another session holds ACCESS EXCLUSIVE on the
 * target table (an ALTER TABLE, a VACUUM FULL), that planning ends in
 * lock_timeout (55P03). `exactly run` must not exit 2 (a refused
 * configuration, which the unit file never restarts): the worker says why
 * it waits, tries again with backoff and, once the lock is released,
 * applies every message produced meanwhile.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testkit.h"

#define TOPIC "openretry"
#define PARTS 2
#define ENTITIES 50
#define MESSAGES 200

/* Fails the test when pid ended, saying how. */
static void check_running(pid_t pid, const char *log, const char *when)
{
    int st = tk_wait(pid, 0);

    if (st != -1) {
        tk_log_tail(log, 40);
        TK_CHECK(0, "exactly run exited %s with status %d: a transient "
                 "failure of open() (55P03) must be retried, not refused",
                 when, st);
    }
}

int main(void)
{
    char conninfo[1024], dir[512], cfg[700], logp[700];
    int64_t t0 = tk_now_ms(), distinct;
    tk_config config;
    tk_pipeline *pl = &config.pipelines[0];
    tk_mock *m;
    PGconn *c, *locker;
    pid_t pid;
    int st = -1;

    tk_tmpdir("exactly-open-transient", dir, sizeof(dir));
    tk_pg_create_db("open_transient", conninfo, sizeof(conninfo));
    c = tk_pg_connect(conninfo);
    tk_sql(c, "CREATE TABLE accounts (id bigint PRIMARY KEY, name text)");
    tk_sql(c, "INSERT INTO accounts SELECT g, 'a' || g FROM "
              "generate_series(1, %d) g", ENTITIES);
    tk_sql(c, "CREATE TABLE view (id bigint PRIMARY KEY, name text)");
    m = tk_mock_start(1);
    tk_mock_create_topic(m, TOPIC, PARTS);
    snprintf(cfg, sizeof(cfg), "%s/openretry.yaml", dir);
    snprintf(logp, sizeof(logp), "%s/run.log", dir);
    tk_config_init(&config, tk_mock_bootstraps(m), conninfo);
    config.lock_timeout_ms = 200;
    pl->name = "openretry";
    pl->topics[0] = TOPIC;
    pl->group = "openretry";
    pl->workers = 1;
    pl->id_from = "key";
    pl->id_type = "bigint";
    pl->max_messages = 50;
    pl->max_wait_ms = 20;
    pl->lookup_sql = "SELECT * FROM accounts WHERE id = ANY($1)";
    pl->lookup_key_column = "id";
    tk_upsert_handler(pl, "view", (const char *[]){"id", "name", NULL});
    tk_config_write(cfg, &config);
    tk_migrate(cfg, "/dev/null");
    distinct = (int64_t)tk_produce_ids(tk_mock_bootstraps(m), TOPIC, MESSAGES,
                                       ENTITIES, PARTS, 1, NULL);

    /* The lock is held before the worker starts and for a while after. */
    locker = tk_pg_connect(conninfo);
    tk_sql(locker, "BEGIN");
    tk_sql(locker, "LOCK TABLE view IN ACCESS EXCLUSIVE MODE");
    pid = tk_exactly_startv(logp, (const char *[]){"run", "-c", cfg, "-v", NULL});

    /* open() fails on the lock at least twice: it was tried again. */
    if (!tk_wait_log(logp, "55P03", 2, pid, 60000, &st)) {
        tk_log_tail(logp, 40);
        TK_CHECK(st == -1, "exactly run exited with status %d while the "
                 "target table was locked: a transient failure of open() "
                 "(55P03) must be retried, not refused",
                 st);
        TK_CHECK(0, "no second open() failing with 55P03 within 60 s");
    }
    tk_sleep_ms(3000);
    check_running(pid, logp, "with the table locked 3 s more");
    /* Said as a wait, never as the handler refusing its options. */
    TK_CHECK(tk_log_lines_with(logp, "retrying", "55P03") >= 2,
             "the transient cause is logged with its SQLSTATE (log %s)", logp);
    TK_CHECK_EQ_INT64(tk_log_count(logp, "refused to open"), 0,
                      "no refusal logged for a lock timeout");
    TK_CHECK_EQ_INT64(tk_log_count(logp, "worker refused to start"), 0,
                      "the supervisor saw no refusal");
    TK_CHECK_EQ_INT64(tk_sql_int64(c, "SELECT count(*) FROM exactly.offsets "
                                      "WHERE pipeline = 'openretry' AND "
                                      "next_offset > 0"),
                      0, "nothing applied while the handler could not open");

    tk_sql(locker, "ROLLBACK");
    /* The next attempt opens: every message is applied. */
    TK_CHECK_EQ_INT64(
        tk_sql_wait_int64(c, MESSAGES, 90000,
                          "SELECT coalesce(sum(next_offset), 0) FROM "
                          "exactly.offsets WHERE pipeline = 'openretry'"),
        MESSAGES, "every message committed after the lock went");
    check_running(pid, logp, "after the lock was released");
    TK_CHECK_EQ_INT64(tk_sql_int64(c, "SELECT count(*) FROM view v JOIN "
                                      "accounts a USING (id, name)"),
                      distinct, "each named entity's row was written");
    TK_CHECK_EQ_INT64(tk_sql_int64(c, "SELECT count(*) FROM exactly.dead_letters"),
                      0, "dead letters");
    TK_CHECK_EQ_INT64(tk_terminate(pid, 30000), 0, "exactly run stops cleanly");

    PQfinish(locker);
    PQfinish(c);
    tk_mock_stop(m);
    tk_pg_drop_db(conninfo);
    tk_cleanup_dir(dir);
    tk_note("open() retried past a locked table in %" PRId64 " ms",
            tk_now_ms() - t0);
    return 0;
}
