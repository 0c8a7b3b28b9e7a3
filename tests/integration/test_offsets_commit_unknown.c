/*
 * `exactly offsets reset` whose COMMIT lands but whose answer never comes
 * (DESIGN §3: outcome unknown, read back to decide).
 *
 * synchronous_standby_names names a standby that does not exist, so the
 * reset's COMMIT is written locally and then waits (SyncRep); a thread of
 * the test terminates the reset's backend there. The commit stands: the
 * stored offset moved by --shift-by and the audit row is there. The reset
 * must not say "nothing changed" (an operator would run --shift-by again
 * and skip the messages twice over): it asks on a new connection what
 * became of its transaction, says it committed and exits 0.
 *
 * Then a reset whose COMMIT is still waiting when the client gives up on
 * it (postgres.client_timeout_ms 1 s; the server session lives on until
 * its client check, every 5 s): the transaction that wrote its mark is
 * still under way for as long as the reset asks, so it cannot know; it says the outcome is unknown,
 * tells to check with `exactly offsets`, and exits 3, not "nothing
 * changed" (the commit lands once the session ends).
 *
 * The setting is server-wide: the test runs a cluster of its own.
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

#define TOPIC "offsets-unknown"
#define PIPELINE "unknown"
#define N_MSGS 40
#define STORED 10
#define SHIFT 5
#define HUNT_MS 30000
#define CLIENT_TIMEOUT_MS 1000

typedef struct hunter {
    const char *conninfo;
    int hit;
} hunter;

static void write_config(cli_kit *c, int client_timeout_ms)
{
    tk_config cfg;
    tk_pipeline *pl = dlq_view_pipeline(c, &cfg, PIPELINE, TOPIC, "bigint",
                                        (const char *[]){"id", "name", NULL});

    pl->on_missing = "skip";
    cfg.client_timeout_ms = client_timeout_ms;
    tk_config_write(c->cfg, &cfg);
}

/* The second reset: its COMMIT still waits in SyncRep when the client
 * gives up, and for as long as it asks. Commits wait for the absent
 * standby (set by the caller). */
static void scenario_unanswered(cli_kit *c)
{
    char shift[16], *out;
    int64_t until;
    int status;

    write_config(c, CLIENT_TIMEOUT_MS);
    snprintf(shift, sizeof shift, "%d", SHIFT);
    status = cli_exactly(c, &out, "offsets", "reset", "--pipeline", PIPELINE,
                         "--topic", TOPIC, "--shift-by", shift, NULL);
    tk_note("offsets reset --shift-by %d, COMMIT unanswered in SyncRep: exit "
            "%d:\n%s", SHIFT, status, out);
    tk_pg_set_sync_standby(c->db, NULL);
    TK_CHECK(!strstr(out, "nothing changed"),
             "the reset's COMMIT was still under way, but it said nothing "
             "changed, exit %d:\n%s", status, out);
    TK_CHECK(status == 3 && strstr(out, "outcome unknown") &&
                 strstr(out, "check with `exactly offsets`"),
             "the reset did not say its outcome is unknown (exit 3), exit "
             "%d:\n%s", status, out);
    free(out);
    /* It lands once its session ends. */
    for (until = tk_now_ms() + 20000;; tk_sleep_ms(50)) {
        if (tk_sql_int64(c->db, "SELECT count(*) FROM exactly.offset_resets")
            == 2)
            break;
        TK_CHECK(tk_now_ms() < until, "the second reset never landed");
    }
    TK_CHECK_EQ_INT64(tk_sql_int64(c->db, "SELECT next_offset FROM "
                                          "exactly.offsets WHERE pipeline = '"
                                          PIPELINE "'"),
                      STORED + 2 * SHIFT, "stored offset after both resets");
}

/* Terminates the reset's backend while its COMMIT waits in SyncRep, then
 * lets commits through again (the read-back must not wait). */
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
                " 'exactly-offsets-reset' AND state = 'active' AND query ="
                " 'COMMIT' AND wait_event = 'SyncRep' OFFSET 0) s"
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
    char dir[256], shift[16], *out;
    hunter h = {NULL, 0};
    pthread_t th;
    int64_t stored, audits;
    cli_kit c;
    int status;

    tk_tmpdir("exactly-offsets-commit-unknown", dir, sizeof dir);
    own_cluster_start(dir);
    cli_kit_start(&c, "offsets_commit_unknown", TOPIC, 1, "unknown.yaml", 0);
    dlq_named_tables(&c, 1);
    write_config(&c, 0);
    cli_kit_migrate(&c);
    cli_kit_produce_ids(&c, TOPIC, N_MSGS, 10, 1, NULL);
    tk_sql(c.db, "INSERT INTO exactly.offsets (pipeline, topic, partition, "
                 "next_offset) VALUES ('" PIPELINE "', '" TOPIC "', 0, %d)",
           STORED);

    /* Every commit from here on waits for a standby that does not exist;
     * the test's own session does not. */
    own_cluster_hold_commits(c.db);

    h.conninfo = c.conninfo;
    TK_CHECK(pthread_create(&th, NULL, hunt, &h) == 0, "pthread_create");
    snprintf(shift, sizeof shift, "%d", SHIFT);
    status = cli_exactly(&c, &out, "offsets", "reset", "--pipeline", PIPELINE,
                         "--topic", TOPIC, "--shift-by", shift, NULL);
    pthread_join(th, NULL);
    tk_note("offsets reset --shift-by %d, COMMIT terminated in SyncRep: exit "
            "%d:\n%s", SHIFT, status, out);
    TK_CHECK(h.hit, "the reset's COMMIT was not caught waiting in SyncRep "
             "within %d ms", HUNT_MS);

    /* The commit landed: that is the truth the reset must tell. */
    stored = tk_sql_int64(c.db, "SELECT next_offset FROM exactly.offsets "
                                "WHERE pipeline = '" PIPELINE "'");
    audits = tk_sql_int64(c.db, "SELECT count(*) FROM exactly.offset_resets");
    TK_CHECK_EQ_INT64(stored, STORED + SHIFT, "stored offset after the "
                      "landed commit");
    TK_CHECK_EQ_INT64(audits, 1, "audit rows after the landed commit");
    TK_CHECK(!strstr(out, "nothing changed"),
             "the reset committed (offset %" PRId64 ", audit row there) but "
             "it said nothing changed, exit %d:\n%s", stored, status, out);
    TK_CHECK(status == 0 && strstr(out, "committed") &&
                 strstr(out, "reset 1 partition(s)"),
             "the reset did not say it committed, exit %d:\n%s", status, out);
    free(out);

    own_cluster_hold_commits(c.db);
    scenario_unanswered(&c);

    cli_kit_stop(&c);
    own_cluster_remove();
    tk_cleanup_dir(dir);
    return 0;
}
