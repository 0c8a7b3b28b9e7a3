/*
 * Settings in the user's conninfo are honoured, not silently replaced, and
 * the ones exactly cannot honour are refused naming the key.
 *
 * The lookup and the target table live only in schema `app`, so a worker
 * finds them only when the conninfo's `options=-c search_path=app` reaches
 * its session. The lookup selects the session's search_path and
 * statement_timeout next to each row and the built-in upsert stores them,
 * so the table shows, per applied entity, that the worker's own session had
 * both the user's option and exactly's timeout (postgres.statement_timeout_ms
 * 4000: "4s"). `exactly check` must pass with that conninfo.
 *
 * Refused with exit 2, naming the key, by check and run:
 *   - application_name in the conninfo: each worker's session carries its
 *     owner string there, which the offsets reset guard relies on;
 *   - options setting statement_timeout, lock_timeout or
 *     idle_in_transaction_session_timeout, which postgres.*_ms set;
 *   - connect_timeout in the conninfo and postgres.connect_timeout_s both.
 * connect_timeout and keepalives in the conninfo alone are accepted.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testkit.h"

#define TOPIC "settings"
#define N_IDS 20
#define CMD_TIMEOUT_MS 60000
#define WORKER_TIMEOUT_MS 120000

typedef struct ctx {
    const char *bin;
    const char *bootstraps;
    char dir[256];
    char conninfo[1024];
} ctx;

/* Writes a config with conninfo extra appended to the test conninfo and
 * extra_pg lines in the postgres section; returns its path in cfg. */
static void write_config(const ctx *c, const char *name, const char *extra,
                         const char *extra_pg, char *cfg, size_t size)
{
    char conninfo[2048];
    tk_config config;
    tk_pipeline *pl = &config.pipelines[0];

    snprintf(cfg, size, "%s/%s.yaml", c->dir, name);
    snprintf(conninfo, sizeof conninfo, "%s %s", c->conninfo, extra);
    tk_config_init(&config, c->bootstraps, conninfo);
    config.kafka[0] = (tk_prop){"session.timeout.ms", "6000"};
    config.statement_timeout_ms = 4000;
    config.postgres_yaml = extra_pg;
    pl->name = "p";
    pl->topics[0] = TOPIC;
    pl->lookup_sql = "SELECT id, current_setting('search_path') AS sp, "
                     "current_setting('statement_timeout') AS st FROM "
                     "accounts WHERE id = ANY($1)";
    pl->lookup_key_column = "id";
    tk_upsert_handler(pl, "accounts_view",
                      (const char *[]){"id", "sp", "st", NULL});
    tk_config_write(cfg, &config);
}

/* Runs exactly with argv (NULL-terminated after the binary); returns the
 * exit status and the output in *out. */
static int exactly(const ctx *c, const char *log, char **out, int timeout_ms,
                   char *const args[])
{
    (void)c;
    tk_rm_rf(log);
    return tk_exactly_output(log, timeout_ms, (const char *const *)args, out);
}

static void expect_refused(const ctx *c, const char *name, const char *extra,
                           const char *extra_pg, const char *says)
{
    char cfg[512], log[512];
    const char *cmds[] = {"check", "run"};
    size_t i;

    write_config(c, name, extra, extra_pg, cfg, sizeof cfg);
    for (i = 0; i < 2; i++) {
        char *args[] = {(char *)cmds[i], "-c", cfg, NULL};
        char *out;
        int status;

        snprintf(log, sizeof log, "%s/%s-%s.log", c->dir, name, cmds[i]);
        status = exactly(c, log, &out, CMD_TIMEOUT_MS, args);
        TK_CHECK(status == 2, "[%s] exactly %s exited %d, expected 2 "
                 "(refused):\n%s", name, cmds[i], status, out);
        TK_CHECK(strstr(out, says) != NULL,
                 "[%s] exactly %s did not say \"%s\":\n%s", name, cmds[i],
                 says, out);
        free(out);
    }
    tk_note("refused as expected: %s", name);
}

int main(void)
{
    char cfg[512], log[512];
    char *out;
    PGconn *db;
    tk_mock *m;
    ctx c;
    int64_t named;
    int status;

    memset(&c, 0, sizeof c);
    c.bin = tk_env_required("EXACTLY_BIN");
    m = tk_mock_start(1);
    c.bootstraps = tk_mock_bootstraps(m);
    tk_mock_create_topic(m, TOPIC, 1);
    named = (int64_t)tk_produce_ids(c.bootstraps, TOPIC, 60, N_IDS, 1, 7,
                                    NULL);

    tk_pg_create_db("conninfo_settings", c.conninfo, sizeof c.conninfo);
    db = tk_pg_connect(c.conninfo);
    tk_sql(db, "CREATE SCHEMA app;"
               "CREATE TABLE app.accounts (id bigint PRIMARY KEY, name text);"
               "INSERT INTO app.accounts SELECT g, 'a' || g"
               " FROM generate_series(1, %d) g;"
               "CREATE TABLE app.accounts_view (id bigint PRIMARY KEY,"
               " sp text, st text)",
               N_IDS);
    tk_tmpdir("exactly-conninfo-settings", c.dir, sizeof c.dir);

    /* migrate, then check, with the user's search_path in the conninfo. */
    write_config(&c, "search-path", "options='-c search_path=app'", "", cfg,
                 sizeof cfg);
    {
        char *args[] = {"migrate", "-c", cfg, NULL};
        snprintf(log, sizeof log, "%s/migrate.log", c.dir);
        status = exactly(&c, log, &out, CMD_TIMEOUT_MS, args);
        TK_CHECK(status == 0, "migrate exited %d:\n%s", status, out);
        free(out);
    }
    {
        char *args[] = {"check", "-c", cfg, NULL};
        snprintf(log, sizeof log, "%s/check.log", c.dir);
        status = exactly(&c, log, &out, CMD_TIMEOUT_MS, args);
        TK_CHECK(status == 0,
                 "check with options=-c search_path=app exited %d (the "
                 "lookup of 'accounts' must resolve to app.accounts):\n%s",
                 status, out);
        free(out);
    }
    tk_note("check passes with the user's search_path");

    /* The worker's own session: its lookup reports its settings. */
    {
        char *args[] = {"worker", "-c", cfg, "--exit-idle", "3000", NULL};
        snprintf(log, sizeof log, "%s/worker.log", c.dir);
        status = exactly(&c, log, &out, WORKER_TIMEOUT_MS, args);
        TK_CHECK(status == 0, "worker exited %d:\n%s", status, out);
        free(out);
    }
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM"
                                       " app.accounts_view"),
                      named, "entities applied through app.accounts");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM"
                                       " app.accounts_view WHERE sp = 'app'"
                                       " AND st = '4s'"),
                      named,
                      "rows written by a session with search_path=app (the "
                      "user's option) and statement_timeout=4s (exactly's)");
    tk_note("the worker's session had the user's search_path and "
            "exactly's statement_timeout");

    /* connect_timeout and keepalives of the user's are accepted. */
    write_config(&c, "keepalives",
                 "options='-c search_path=app' connect_timeout=7"
                 " keepalives=1 keepalives_idle=30",
                 "", cfg, sizeof cfg);
    {
        char *args[] = {"check", "-c", cfg, NULL};
        snprintf(log, sizeof log, "%s/check-keepalives.log", c.dir);
        status = exactly(&c, log, &out, CMD_TIMEOUT_MS, args);
        TK_CHECK(status == 0, "check with the user's connect_timeout and "
                 "keepalives exited %d:\n%s", status, out);
        free(out);
    }

    expect_refused(&c, "application-name", "application_name=mine", "",
                   "'postgres.conninfo' sets application_name");
    expect_refused(&c, "statement-timeout-option",
                   "options='-c search_path=app -c statement_timeout=0'", "",
                   "'postgres.statement_timeout_ms'");
    expect_refused(&c, "lock-timeout-option",
                   "options='--lock-timeout=0'", "",
                   "'postgres.lock_timeout_ms'");
    expect_refused(&c, "idle-timeout-option",
                   "options='-cidle_in_transaction_session_timeout=0'", "",
                   "'postgres.idle_in_transaction_timeout_ms'");
    expect_refused(&c, "connect-timeout-twice", "connect_timeout=7",
                   "  connect_timeout_s: 3\n",
                   "'postgres.connect_timeout_s'");

    PQfinish(db);
    tk_mock_stop(m);
    tk_rm_rf(c.dir);
    tk_note("conninfo settings test passed");
    return 0;
}
