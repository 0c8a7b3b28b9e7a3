/*
 * The locks of the extra writers (`exactly dlq replay`, `exactly
 * reprocess`) beyond the race of test_extra_writer_race.c, each case
 * ordered by the test's own sessions (no live worker: a session writes
 * what the worker would):
 *
 *   - probe: whether the lookup can lock is tried once at start; a
 *     transient failure of that try (here a lock timeout: the test holds
 *     an EXCLUSIVE lock on the source table, which a plain read passes
 *     but a locking one waits for) must not make the command read
 *     unlocked. Only a lookup PostgreSQL refuses to lock does that.
 *   - order: a user transaction updates source rows 1 then 2 (ascending
 *     IDs) while a replay of both reads them, the rows stored 2 before 1
 *     so that a scan meets 2 first. The replay waits on row 1; if it
 *     already holds row 2 the user's update of it waits for the replay
 *     and the two deadlock (SQLSTATE 40P01). Locking in key order it
 *     holds nothing the user needs, and both end well.
 *   - retried: the user updates 2 then 1 (descending), which deadlocks
 *     with any replay that locks in key order; PostgreSQL aborts the
 *     replay (the user's session waits longer before it looks for a
 *     deadlock). The replay is run again once the user has committed,
 *     with a line that says so, rather than failing.
 *   - delete: with a lookup given as sql, on_missing: handler and the
 *     upsert's delete_missing (unfused), source row 2 is missing when
 *     the extra writer looks 1 and 2 up; while it waits on view row 1
 *     (held by the test) source row 2 is inserted and view row 2 written
 *     from it, as the worker would, and committed. The extra writer's
 *     delete of view row 2 must not then remove that row: view row 2 must
 *     equal source row 2 at the end. For dlq replay and for reprocess.
 *   - delete-chunks: the same for dlq replay in batches of one message,
 *     the test holding view row 2: the replay's first try sends the
 *     lookup twice (the second time as a named prepared statement) before
 *     the recheck rolls it back; its second try, on the same session,
 *     must not fail on a statement name the first one left prepared.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_kit.h"
#include "dlq_kit.h"
#include "testkit.h"

#define TOPIC "xl"
#define PIPELINE "xl"
#define WAIT_MS 30000

static cli_kit c;
static char table_cfg[600];
static char order_cfg[600]; /* table_cfg with a lock timeout of 10 s */
static char delete_cfg[600];
static char delete1_cfg[600]; /* delete_cfg in batches of one message */
static char outer_cfg[600];   /* a lookup whose key is null for a miss */
static char twice_cfg[600];   /* a lookup that names its key column twice */

/* The pipeline reading src by a table lookup into view with the unfused
 * upsert (on_missing: dead_letter keeps lookup and write apart). */
static void write_config(const char *path, int lock_timeout_ms,
                         const char *on_missing, int delete_missing,
                         const char *lookup_sql, int max_messages)
{
    tk_config cfg;
    tk_pipeline *pl = dlq_view_pipeline(&c, &cfg, PIPELINE, TOPIC, "bigint",
                                        (const char *[]){"id", "name", NULL});

    cfg.lock_timeout_ms = lock_timeout_ms;
    pl->on_missing = on_missing;
    tk_lookup_sql(pl, lookup_sql, "id", delete_missing);
    if (max_messages > 0)
        pl->max_messages = max_messages;
    tk_config_write(path, &cfg);
}

/* Dead letters 1 and 2 (offsets 0 and 1), planted unless still there. */
static void letters(void)
{
    if (cli_dead_letters(&c, NULL) == 0)
        dlq_plant_series(&c, PIPELINE, TOPIC, 2);
}

/* A probe that meets a lock timeout: the replay must not go on unlocked
 * (it fails, or waits for the lock); once the lock is gone it replays. */
static void probe_lock_timeout(void)
{
    const char *argv[] = {"dlq", "replay", "-c", table_cfg, "--all", NULL};
    PGconn *hold = tk_pg_connect(c.conninfo);
    char log[700], *out = NULL;
    int status;

    letters();
    tk_sql(hold, "BEGIN; LOCK TABLE src IN EXCLUSIVE MODE");
    snprintf(log, sizeof(log), "%s/probe-held.log", c.dir);
    status = tk_exactly_output(log, WAIT_MS, argv, &out);
    tk_note("probe: replay under the table lock exited %d", status);
    TK_CHECK(!strstr(out, "reads them unlocked"),
             "a lock timeout of the lookup's probe made the replay read "
             "unlocked (exit %d):\n%s",
             status, out);
    free(out);
    tk_sql(hold, "ROLLBACK");
    PQfinish(hold);

    letters();
    snprintf(log, sizeof(log), "%s/probe-free.log", c.dir);
    status = tk_exactly_output(log, WAIT_MS, argv, &out);
    TK_CHECK(status == 0 && !strstr(out, "reads them unlocked"),
             "replay with the table free exited %d:\n%s", status, out);
    free(out);
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM view"), 2,
                      "view rows after the replay");
}

/* Sessions of the database waiting on a lock, polled until there are
 * want (the replay waits on the user's row); fails at the deadline. */
static void wait_lock_waiters(int64_t want, const char *what)
{
    int64_t got = tk_sql_wait_int64(c.db, want, WAIT_MS,
                                    "SELECT count(*) FROM pg_stat_activity"
                                    " WHERE datname = current_database() AND"
                                    " wait_event_type = 'Lock'");

    TK_CHECK(got == want, "%s: %lld sessions wait on a lock, not %lld", what,
             (long long)got, (long long)want);
}

/* Waits until the statement sent on conn has its answer; returns NULL
 * when it succeeded, else its error (malloc'd). Fails at the deadline. */
static char *sent_result(PGconn *conn, const char *what)
{
    PGresult *res;
    char *why = NULL;
    int i;

    for (i = 0; i < WAIT_MS / 20; i++) {
        TK_CHECK(PQconsumeInput(conn), "%s: %s", what, PQerrorMessage(conn));
        if (!PQisBusy(conn))
            break;
        usleep(20 * 1000);
    }
    TK_CHECK(!PQisBusy(conn), "%s: the user's update never ended", what);
    while ((res = PQgetResult(conn)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK && !why)
            why = strdup(PQresultErrorMessage(res));
        PQclear(res);
    }
    return why;
}

/* The user's transaction updates source rows first and then second; the
 * replay of dead letters 1 and 2 starts once it holds first. */
static void deadlock(const char *what, int first, int second)
{
    const char *argv[] = {"dlq", "replay", "-c", order_cfg, "--all", NULL};
    PGconn *user = tk_pg_connect(c.conninfo);
    char log[700], *out, *why;
    pid_t pid;
    int status;

    letters();
    /* Stored second before first: for "order" 2 before 1 (a scan meets 2
     * first), for "retried" 1 before 2 (any order meets 1 first). */
    tk_sql(c.db, "DELETE FROM view; TRUNCATE src;"
                 "INSERT INTO src VALUES (%d, 'name %d'), (%d, 'name %d');"
                 "ANALYZE src",
           second, second, first, first);
    /* The replay, not the user, looks for the deadlock first. */
    tk_sql(user, "SET deadlock_timeout = '20s'; BEGIN;"
                 "UPDATE src SET name = 'user' WHERE id = %d",
           first);
    snprintf(log, sizeof(log), "%s/%s.log", c.dir, what);
    pid = tk_exactly_startv(log, argv);
    wait_lock_waiters(1, what);
    TK_CHECK(PQsendQueryParams(user, "UPDATE src SET name = 'user' WHERE"
                                     " id = $1::bigint",
                               1, NULL,
                               (const char *[]){second == 1 ? "1" : "2"},
                               NULL, NULL, 0),
             "%s: cannot send the update: %s", what, PQerrorMessage(user));
    why = sent_result(user, what);
    tk_note("%s: the user's update of row %d %s%s", what, second,
            why ? "failed: " : "succeeded", why ? why : "");
    tk_sql(user, why ? "ROLLBACK" : "COMMIT");
    PQfinish(user);
    status = tk_exactly_wait(pid, WAIT_MS, log, what);
    out = tk_read_file(log);
    tk_note("%s: replay exited %d", what, status);
    TK_CHECK(status == 0 && !why,
             "%s: the replay exited %d and the user's update %s:\n%s", what,
             status, why ? why : "succeeded", out ? out : "");
    if (strcmp(what, "retried") == 0)
        TK_CHECK(out && strstr(out, "run again") && strstr(out, "40P01"),
                 "%s: no line says the replay was run again after the "
                 "deadlock:\n%s",
                 what, out ? out : "");
    TK_CHECK(tk_sql_int64(c.db, "SELECT count(*) FROM view v JOIN src s"
                                " USING (id, name)") == 2,
             "%s: view rows 1 and 2 do not equal their source rows", what);
    free(out);
    free(why);
}

/* The extra writer of argv on IDs 1 and 2, source row 2 missing when it
 * looks them up and inserted (with its view row) while it waits. */
static void deleted(const char *what, const char *const *argv)
{
    PGconn *hold = tk_pg_connect(c.conninfo);
    char log[700], *src, *view;
    pid_t pid;
    int status;

    letters();
    tk_sql(c.db, "DELETE FROM view; TRUNCATE src;"
                 "INSERT INTO src VALUES (1, 'name 1');"
                 "INSERT INTO view VALUES (1, 'old'), (2, 'old')");
    tk_sql(hold, "BEGIN; SELECT 1 FROM view WHERE id = 1 FOR UPDATE");
    snprintf(log, sizeof(log), "%s/%s.log", c.dir, what);
    pid = tk_exactly_startv(log, argv);
    /* It looked up (2 missing) and waits to write view row 1. */
    wait_lock_waiters(1, what);
    /* What the worker does for the message of source row 2's insert. */
    tk_sql(c.db, "INSERT INTO src VALUES (2, 'after');"
                 "INSERT INTO view VALUES (2, 'after') ON CONFLICT (id)"
                 " DO UPDATE SET name = EXCLUDED.name");
    tk_sql(hold, "ROLLBACK");
    PQfinish(hold);
    status = tk_exactly_wait(pid, WAIT_MS, log, what);
    src = tk_sql_text(c.db, "SELECT name FROM src WHERE id = 2");
    view = tk_sql_text(c.db, "SELECT coalesce((SELECT name FROM view"
                             " WHERE id = 2), '(no row)')");
    tk_note("%s: exit status %d, view row 2 '%s', source row 2 '%s'; %d "
            "line(s) say a source row was inserted meanwhile",
            what, status, view, src,
            tk_log_lines_with(log, "inserted", "meanwhile"));
    TK_CHECK(strcmp(view, src) == 0,
             "%s: view row 2 is '%s' but source row 2 is '%s': the extra "
             "writer deleted the row written for a source row inserted "
             "after its lookup",
             what, view, src);
    TK_CHECK(status == 0, "%s exited %d (see its log)", what, status);
    free(src);
    free(view);
}

/* dlq replay in batches of one message of dead letters 1, 2 and 3,
 * source row 3 missing when it looks 3 up and inserted (its view row
 * written by the session that holds that row) while the replay waits to
 * delete view row 3: the first try sends the upsert of 1 and of 2 (the
 * second time prepared, by name) and is rolled back by the recheck; the
 * second try, on the same session, must apply all three. */
static void deleted_chunks(const char *const *argv)
{
    PGconn *hold = tk_pg_connect(c.conninfo);
    char log[700], *view;
    pid_t pid;
    int status;

    tk_sql(c.db, "DELETE FROM exactly.dead_letters");
    dlq_plant_series(&c, PIPELINE, TOPIC, 3);
    tk_sql(c.db, "DELETE FROM view; TRUNCATE src;"
                 "INSERT INTO src VALUES (1, 'name 1'), (2, 'name 2');"
                 "INSERT INTO view VALUES (3, 'old')");
    tk_sql(hold, "BEGIN; SELECT 1 FROM view WHERE id = 3 FOR UPDATE");
    snprintf(log, sizeof(log), "%s/delete-chunks.log", c.dir);
    pid = tk_exactly_startv(log, argv);
    wait_lock_waiters(1, "delete-chunks");
    tk_sql(c.db, "INSERT INTO src VALUES (3, 'after')");
    tk_sql(hold, "UPDATE view SET name = 'after' WHERE id = 3; COMMIT");
    PQfinish(hold);
    status = tk_exactly_wait(pid, WAIT_MS, log, "delete-chunks");
    view = tk_sql_text(c.db, "SELECT string_agg(id || '=' || name, ', '"
                             " ORDER BY id) FROM view");
    tk_note("delete-chunks: exit status %d, view %s; %d line(s) say a "
            "source row was inserted meanwhile",
            status, view, tk_log_lines_with(log, "inserted", "meanwhile"));
    if (status != 0 || strcmp(view, "1=name 1, 2=name 2, 3=after") != 0)
        tk_log_tail(log, 10);
    TK_CHECK(status == 0 && strcmp(view, "1=name 1, 2=name 2, 3=after") == 0,
             "delete-chunks: the replay run again after its recheck exited "
             "%d with view %s (want 1=name 1, 2=name 2, 3=after)",
             status, view);
    free(view);
}

/* Replays dead letters 1 and 2 (planted anew) with the config cfg after
 * the statements setup; returns its exit status, *view the view's rows
 * as "id=name, ..." (malloc'd), and its log's path in log. The log's
 * tail is shown when the status is not 0 or the view not want. */
static int replay_two(const char *what, const char *cfg, const char *setup,
                      const char *want, char **view, char *log, size_t size)
{
    const char *argv[] = {"dlq", "replay", "-c", cfg, "--all", NULL};
    int status;

    tk_sql(c.db, "DELETE FROM exactly.dead_letters");
    dlq_plant_series(&c, PIPELINE, TOPIC, 2);
    tk_sql(c.db, "%s", setup);
    snprintf(log, size, "%s/%s.log", c.dir, what);
    status = tk_exactly_wait(tk_exactly_startv(log, argv), WAIT_MS, log, what);
    *view = tk_sql_text(c.db, "SELECT coalesce(string_agg(id || '=' || name,"
                              " ', ' ORDER BY id), '') FROM view");
    if (status != 0 || strcmp(*view, want) != 0)
        tk_log_tail(log, 10);
    return status;
}

/* A lookup whose row for an ID it does not find has a null key (an outer
 * join): such a row names no record, for the check before COMMIT as for
 * the lookup itself. A replay of dead letters 1 and 2, source row 2
 * missing all along, deletes view row 2 and commits, the first time. */
static void outer_miss(void)
{
    char log[700], *view;
    int status = replay_two("outer-miss", outer_cfg,
                            "DELETE FROM view; TRUNCATE src;"
                            "INSERT INTO src VALUES (1, 'name 1');"
                            "INSERT INTO view VALUES (2, 'old')",
                            "1=name 1", &view, log, sizeof(log));

    TK_CHECK(status == 0 && strcmp(view, "1=name 1") == 0,
             "outer-miss: a replay whose lookup returns a null key for the "
             "missing ID exited %d with view %s (want 1=name 1): the check "
             "before COMMIT took that row for a source row inserted "
             "meanwhile", status, view);
    TK_CHECK(tk_log_lines_with(log, "inserted", "meanwhile") == 0,
             "outer-miss: the replay said a source row was inserted "
             "meanwhile; none was");
    free(view);
}

/* A lookup given as sql whose select list names the key column twice
 * (s.*, s.id): the locked form cannot order by that name, and the replay
 * still runs locked, in the order the rows come, as before the order was
 * asked for. */
static void twice_named(void)
{
    char log[700], *view;
    int status = replay_two("twice-named", twice_cfg,
                            "DELETE FROM view; TRUNCATE src;"
                            "INSERT INTO src VALUES (1, 'name 1'),"
                            " (2, 'name 2')",
                            "1=name 1, 2=name 2", &view, log, sizeof(log));

    TK_CHECK(status == 0 && strcmp(view, "1=name 1, 2=name 2") == 0,
             "twice-named: a replay whose lookup names its key column twice "
             "exited %d with view '%s' (want 1=name 1, 2=name 2)",
             status, view);
    TK_CHECK(tk_log_lines_with(log, "reads them unlocked", "") == 0,
             "twice-named: the replay read unlocked; the lookup can lock");
    free(view);
}

int main(void)
{
    cli_kit_start(&c, "extra_writer_locks", TOPIC, 1, "table.yaml", 0);
    snprintf(table_cfg, sizeof(table_cfg), "%s", c.cfg);
    dlq_named_tables(&c, 2);
    snprintf(order_cfg, sizeof(order_cfg), "%s/order.yaml", c.dir);
    write_config(table_cfg, 300, "dead_letter", 0, NULL, 0);
    write_config(order_cfg, 10000, "dead_letter", 0, NULL, 0);
    snprintf(delete_cfg, sizeof(delete_cfg), "%s/delete.yaml", c.dir);
    write_config(delete_cfg, 10000, "handler", 1,
                 "SELECT id, name FROM src WHERE id = ANY($1::bigint[])", 0);
    snprintf(outer_cfg, sizeof(outer_cfg), "%s/outer.yaml", c.dir);
    write_config(outer_cfg, 10000, "handler", 1,
                 "SELECT s.id, s.name FROM unnest($1::bigint[]) AS x(id)"
                 " LEFT JOIN src s ON s.id = x.id",
                 0);
    snprintf(twice_cfg, sizeof(twice_cfg), "%s/twice.yaml", c.dir);
    write_config(twice_cfg, 10000, "dead_letter", 0,
                 "SELECT s.*, s.id FROM src s WHERE s.id = ANY($1::bigint[])",
                 0);
    snprintf(delete1_cfg, sizeof(delete1_cfg), "%s/delete1.yaml", c.dir);
    write_config(delete1_cfg, 10000, "handler", 1,
                 "SELECT id, name FROM src WHERE id = ANY($1::bigint[])", 1);
    cli_kit_migrate(&c);

    probe_lock_timeout();
    deadlock("order", 1, 2);
    deadlock("retried", 2, 1);
    {
        const char *replay[] = {"dlq", "replay", "-c", delete_cfg, "--all",
                                NULL};
        const char *reprocess[] = {"reprocess", "-c",  delete_cfg,
                                   "--pipeline", PIPELINE, "--topic",
                                   TOPIC,       "--partition", "0",
                                   "--from",    "0",   "--to",
                                   "1",         NULL};
        /* Offsets 0 and 1 name IDs 1 and 2, for reprocess. */
        cli_kit_produce_ids(&c, TOPIC, 2, 2, 1, NULL);
        const char *replay1[] = {"dlq", "replay", "-c", delete1_cfg,
                                 "--all", NULL};
        deleted("delete-replay", replay);
        deleted("delete-reprocess", reprocess);
        deleted_chunks(replay1);
        outer_miss();
        twice_named();
    }

    cli_kit_stop(&c);
    return 0;
}
