/*
 * `exactly dlq replay` through PgBouncer (pool_mode = session, which the
 * README supports) whose COMMIT goes unanswered while the server still
 * holds it.
 *
 * synchronous_standby_names names a standby that does not exist, so the
 * replay's COMMIT is written locally and then waits (SyncRep);
 * postgres.client_timeout_ms (2 s) makes the replay give up on the answer
 * and end its connection while the server session still waits there,
 * its commit not yet visible. PgBouncer then drops that server session,
 * which notices the vanished client at its next connection check (5 s)
 * and ends: the commit stands, the dead letters are deleted. The replay
 * must not say it rolled back. Through a pooler the client's backend pid
 * (PQbackendPID) is the pooler's, not the server's, so it cannot wait for
 * that session to end by its pid; it asks by the mark its transaction
 * wrote, whose insert still waits in that session. The
 * setting is server-wide: the test runs a cluster of its own.
 *
 * Skipped (77) when pgbouncer is not installed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "cli_kit.h"
#include "dlq_kit.h"
#include "own_cluster.h"
#include "testkit.h"

#define TOPIC "dlq-pooled"
#define PIPELINE "pooled"
#define N_LETTERS 10
#define CLIENT_TIMEOUT_MS 2000

static char g_bouncer[512];

static void stop_bouncer(void)
{
    char cmd[2048];

    if (!g_bouncer[0])
        return;
    snprintf(cmd, sizeof cmd, "bash '%s/scripts/pgbouncer.sh' stop '%s'",
             tk_env_required("EXACTLY_SOURCE_DIR"), g_bouncer);
    if (system(cmd) != 0)
        tk_note("stopping pgbouncer in %s failed", g_bouncer);
    g_bouncer[0] = '\0';
}

/* Starts PgBouncer (session pool) in front of the test's cluster; its
 * conninfo for k's database into out. */
static void start_bouncer(cli_kit *k, char *out, size_t out_size)
{
    char cmd[4096], path[600], *ci;
    const char *db = strstr(k->conninfo, "dbname=");
    int st;

    TK_CHECK(db != NULL, "no dbname in %s", k->conninfo);
    snprintf(g_bouncer, sizeof g_bouncer, "%s/pgb", k->dir);
    snprintf(cmd, sizeof cmd,
             "bash '%s/scripts/pgbouncer.sh' start '%s' '%s' session",
             tk_env_required("EXACTLY_SOURCE_DIR"), g_bouncer,
             tk_pg_admin_conninfo());
    st = system(cmd);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
        tk_skip("pgbouncer is not installed (scripts/deps.sh installs it)");
    TK_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
             "pgbouncer.sh start failed (%d)", st);
    atexit(stop_bouncer);
    snprintf(path, sizeof path, "%s/conninfo", g_bouncer);
    ci = tk_read_file(path);
    TK_CHECK(ci != NULL, "no %s", path);
    ci[strcspn(ci, "\n")] = '\0';
    snprintf(out, out_size, "%s %.*s", ci, (int)strcspn(db, " "), db);
    free(ci);
}

static void write_config(cli_kit *c, const char *conninfo)
{
    tk_config cfg;
    tk_pipeline *pl = dlq_view_pipeline(c, &cfg, PIPELINE, TOPIC, "bigint",
                                        (const char *[]){"id", "name", NULL});

    pl->on_missing = "skip";
    pl->max_messages = 100;
    pl->max_wait_ms = 50;
    if (conninfo) {
        cfg.conninfo = conninfo;
        cfg.client_timeout_ms = CLIENT_TIMEOUT_MS;
    }
    tk_config_write(c->cfg, &cfg);
}

int main(void)
{
    char dir[256], via[1024], *out;
    int64_t left, written, waiting;
    cli_kit c;
    int status;

    tk_tmpdir("exactly-dlq-commit-pooled", dir, sizeof dir);
    own_cluster_start(dir);
    cli_kit_start(&c, "dlq_commit_pooled", TOPIC, 1, "pooled.yaml", 0);
    start_bouncer(&c, via, sizeof via);
    dlq_named_tables(&c, N_LETTERS);
    write_config(&c, NULL);
    cli_kit_migrate(&c);
    dlq_plant_series(&c, PIPELINE, TOPIC, N_LETTERS);
    write_config(&c, via);

    /* Every commit from here on waits for a standby that does not exist;
     * the test's own session does not. */
    own_cluster_hold_commits(c.db);

    status = cli_exactly(&c, &out, "dlq", "replay", "--all", NULL);
    tk_note("dlq replay --all through PgBouncer, COMMIT unanswered in "
            "SyncRep: exit %d:\n%s", status, out);
    tk_pg_set_sync_standby(c.db, NULL);
    /* The abandoned session ends at its next client check; its commit
     * stands whatever the replay said. */
    for (int64_t until = tk_now_ms() + 20000;; tk_sleep_ms(50)) {
        waiting = tk_sql_int64(c.db, "SELECT count(*) FROM pg_stat_activity"
                                     " WHERE datname = current_database()"
                                     " AND application_name = 'exactly-dlq'");
        if (waiting == 0)
            break;
        TK_CHECK(tk_now_ms() < until, "the replay's sessions did not end");
    }
    left = cli_dead_letters(&c, NULL);
    written = tk_sql_int64(c.db, "SELECT count(*) FROM view");
    TK_CHECK_EQ_INT64(left, 0, "dead letters after the landed commit");
    TK_CHECK_EQ_INT64(written, N_LETTERS, "entities written by it");
    TK_CHECK(!strstr(out, "rolled back"),
             "the replay committed (dead letters gone, entities written) but "
             "it said it rolled back, exit %d:\n%s", status, out);
    free(out);

    stop_bouncer();
    cli_kit_stop(&c);
    own_cluster_remove();
    tk_cleanup_dir(dir);
    return 0;
}
