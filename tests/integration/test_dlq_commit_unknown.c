/*
 * `exactly dlq replay` whose COMMIT lands but whose answer never comes
 * (DESIGN §3: outcome unknown, re-read to decide).
 *
 * synchronous_standby_names names a standby that does not exist, so the
 * replay's COMMIT is written locally and then waits (SyncRep); a thread of
 * the test terminates the replay's backend there. The commit stands: the
 * entities are written and the dead letters deleted. The replay must not
 * tell the operator it rolled back; it asks on a new connection what
 * became of its transaction (by the mark the transaction wrote, which
 * the commit made visible), says the replay committed and exits 0. The setting is server-wide: the
 * test runs a cluster of its own.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_kit.h"
#include "dlq_kit.h"
#include "own_cluster.h"
#include "testkit.h"

#define TOPIC "dlq-unknown"
#define PIPELINE "unknown"
#define N_LETTERS 20
#define HUNT_MS 30000

typedef struct hunter {
    const char *conninfo;
    int hit;
} hunter;

static void write_config(cli_kit *c)
{
    tk_config cfg;
    tk_pipeline *pl = dlq_view_pipeline(c, &cfg, PIPELINE, TOPIC, "bigint",
                                        (const char *[]){"id", "name", NULL});

    pl->on_missing = "skip";
    pl->max_messages = 100;
    pl->max_wait_ms = 50;
    tk_config_write(c->cfg, &cfg);
}

/* Terminates the replay's backend while its COMMIT waits in SyncRep, then
 * lets commits through again (the replay's re-read must not wait). */
static void *hunt(void *arg)
{
    hunter *h = arg;
    PGconn *db = tk_pg_connect(h->conninfo);
    int64_t deadline = tk_now_ms() + HUNT_MS;

    tk_sql(db, "SET synchronous_commit = local");
    while (!h->hit && tk_now_ms() < deadline) {
        /* OFFSET 0: the filter runs before pg_terminate_backend(). */
        char *pid = tk_sql_text(
            db, "SELECT max(pid) FROM (SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name ="
                " 'exactly-dlq' AND state = 'active' AND query = 'COMMIT'"
                " AND wait_event = 'SyncRep' OFFSET 0) s"
                " WHERE pg_terminate_backend(pid)");
        if (pid) {
            tk_pg_wait_backend_gone(db, strtoll(pid, NULL, 10));
            free(pid);
            h->hit = 1;
        } else {
            tk_sleep_ms(1);
        }
    }
    tk_pg_set_sync_standby(db, NULL);
    PQfinish(db);
    return NULL;
}

int main(void)
{
    char dir[256], *out;
    hunter h = {NULL, 0};
    pthread_t th;
    int64_t left, written;
    cli_kit c;
    int status;

    tk_tmpdir("exactly-dlq-commit-unknown", dir, sizeof dir);
    own_cluster_start(dir);
    cli_kit_start(&c, "dlq_commit_unknown", TOPIC, 1, "unknown.yaml", 0);
    dlq_named_tables(&c, N_LETTERS);
    write_config(&c);
    cli_kit_migrate(&c);
    dlq_plant_series(&c, PIPELINE, TOPIC, N_LETTERS);

    /* Every commit from here on waits for a standby that does not exist;
     * the test's own session does not. */
    own_cluster_hold_commits(c.db);

    h.conninfo = c.conninfo;
    TK_CHECK(pthread_create(&th, NULL, hunt, &h) == 0, "pthread_create");
    status = cli_exactly(&c, &out, "dlq", "replay", "--all", NULL);
    pthread_join(th, NULL);
    tk_note("dlq replay --all, COMMIT terminated in SyncRep: exit %d:\n%s",
            status, out);
    TK_CHECK(h.hit, "the replay's COMMIT was not caught waiting in SyncRep "
             "within %d ms", HUNT_MS);

    /* The commit landed: that is the truth the replay must tell. */
    left = cli_dead_letters(&c, NULL);
    written = tk_sql_int64(c.db, "SELECT count(*) FROM view");
    TK_CHECK_EQ_INT64(left, 0, "dead letters after the landed commit");
    TK_CHECK_EQ_INT64(written, N_LETTERS, "entities written by it");
    TK_CHECK(!strstr(out, "rolled back"),
             "the replay committed (dead letters gone, entities written) but "
             "it said it rolled back, exit %d:\n%s", status, out);
    TK_CHECK(status == 0 && strstr(out, "committed") &&
                 strstr(out, "replayed 20 dead letter(s)"),
             "the replay did not say it committed, exit %d:\n%s", status,
             out);
    free(out);

    cli_kit_stop(&c);
    own_cluster_remove();
    tk_cleanup_dir(dir);
    return 0;
}
