/*
 * The extra writers (`exactly dlq replay`, `exactly reprocess`) have no
 * queue behind them: a write of theirs from a stale read is not corrected
 * by a later message. So a change of a source row they read must not
 * commit before they do (they hold share locks on what they read), and a
 * message of that change is applied by the worker after them, from the
 * new state.
 *
 * A live worker runs throughout. Each case, for the built-in upsert
 * unfused (on_missing: dead_letter: lookup, then write) and fused
 * (on_missing: skip: one INSERT ... SELECT from the source), with the
 * source rows 1 and 2 and their view rows in place:
 *
 *   - the test holds view row 1 (SELECT ... FOR UPDATE);
 *   - the extra writer starts on IDs 1 and 2 (dead letters 1 and 2 at
 *     offsets 0 and 1 for replay; offsets 0..1, keys 1 and 2, for
 *     reprocess), reads them and waits on view row 1;
 *   - another session changes source row 2 (sent asynchronously: with the
 *     share lock it waits for the extra writer; the fused statement of
 *     reprocess locks each row as it reaches it, so there the change may
 *     commit first and be read in its new state); once that change has
 *     committed, a message naming 2 is produced and the worker applies it;
 *   - the hold is released whenever the change has committed or waits on
 *     a lock, and the extra writer runs to its end.
 *
 * At the end view row 2 must equal source row 2. Without the locks the
 * extra writer commits the name it read before the change over the
 * worker's newer write, and no message is left to correct it.
 *
 * The deletion of the fused upsert (on_missing: handler, delete_missing)
 * is raced the same way, with source rows 1 and 2 gone and their view
 * rows still there: the extra writer's DELETE ... NOT EXISTS (source)
 * waits on view row 1 while source row 2 is inserted again and the
 * worker writes view row 2 from it; the DELETE must then leave view row
 * 2 alone. A row that does not exist cannot be locked, so this needs the
 * target rows locked before the DELETE reads the source.
 *
 * A lookup: {sql: ...} is raced as the unfused case (dlq replay; its
 * text, ending in a semicolon, is wrapped to lock). One PostgreSQL cannot
 * lock (GROUP BY) makes reprocess warn and read unlocked, and still run.
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

#define TOPIC "xw"
#define PIPELINE "xw"
#define WAIT_MS 30000

static cli_kit c;
static char unfused_cfg[600];
static char delete_cfg[600];
static char sql_cfg[600];
static char group_cfg[600];
static char wlog[600];
static int64_t next_offset; /* the live pipeline's, once caught up */

/* The pipeline with the built-in upsert of src into view; on_missing skip
 * fuses the lookup into the write, dead_letter keeps it apart. */
static void write_config(const char *path, const char *on_missing,
                         int delete_missing, const char *lookup_sql)
{
    tk_config cfg;
    tk_pipeline *pl = dlq_view_pipeline(&c, &cfg, PIPELINE, TOPIC, "bigint",
                                        (const char *[]){"id", "name", NULL});

    cfg.kafka[0] = (tk_prop){"session.timeout.ms", "6000"};
    pl->on_missing = on_missing;
    tk_lookup_sql(pl, lookup_sql, "id", delete_missing);
    pl->max_messages = 10;
    pl->max_wait_ms = 20;
    tk_config_write(path, &cfg);
}

static void wait_worker_at(int64_t want)
{
    int64_t got = tk_sql_wait_int64(
        c.db, want, WAIT_MS,
        "SELECT coalesce((SELECT next_offset FROM exactly.offsets WHERE"
        " pipeline = '" PIPELINE "'), 0)");
    TK_CHECK_EQ_INT64(got, want, "live pipeline's stored offset");
}

/* Waits until the update sent on conn has ended (1) or waits on a lock
 * (0); fails the test at the deadline. */
static int update_ended(PGconn *conn)
{
    int pid = PQbackendPID(conn), i;

    for (i = 0; i < WAIT_MS / 20; i++) {
        TK_CHECK(PQconsumeInput(conn), "update connection: %s",
                 PQerrorMessage(conn));
        if (!PQisBusy(conn))
            return 1;
        if (tk_sql_int64(c.db,
                         "SELECT count(*) FROM pg_stat_activity WHERE"
                         " pid = %d AND wait_event_type = 'Lock'",
                         pid) == 1)
            return 0;
        usleep(20 * 1000);
    }
    TK_CHECK(0, "the update of source row 2 neither ended nor waited");
    return 0;
}

static void update_result(PGconn *conn)
{
    PGresult *res;

    while ((res = PQgetResult(conn)) != NULL) {
        TK_CHECK(PQresultStatus(res) == PGRES_COMMAND_OK,
                 "update of source row 2 failed: %s",
                 PQresultErrorMessage(res));
        PQclear(res);
    }
}

/* What one case ended with. */
typedef struct outcome {
    const char *what;
    const char *prepare; /* SQL run first: the source rows as they start */
    const char *change;  /* the change of source row 2 */
    int status;  /* the extra writer's exit status */
    char *view;  /* view row 2's name at the end (malloc'd) */
    char *src;   /* source row 2's */
} outcome;

/* One case: the extra writer of argv races a change of source row 2 and
 * its message. */
static void race(outcome *o, const char *const *argv)
{
    char log[700];
    PGconn *hold = tk_pg_connect(c.conninfo);
    PGconn *user = tk_pg_connect(c.conninfo);
    pid_t pid;
    const char *what = o->what;
    int ended;

    tk_sql(c.db, "%s", o->prepare);
    tk_sql(c.db, "UPDATE view SET name = 'old' WHERE id IN (1, 2)");
    tk_sql(hold, "BEGIN; SELECT 1 FROM view WHERE id = 1 FOR UPDATE");
    snprintf(log, sizeof(log), "%s/%s.log", c.dir, what);
    pid = tk_exactly_startv(log, argv);
    TK_CHECK_EQ_INT64(
        tk_sql_wait_int64(c.db, 1, WAIT_MS,
                          "SELECT count(*) FROM pg_stat_activity WHERE"
                          " datname = current_database() AND"
                          " wait_event_type = 'Lock'"),
        1, "sessions waiting on a lock (the extra writer on view row 1)");

    TK_CHECK(PQsendQuery(user, o->change),
             "cannot send the update: %s", PQerrorMessage(user));
    ended = update_ended(user);
    tk_note("%s: the change of source row 2 %s", what,
            ended ? "committed at once" : "waits for the extra writer");
    if (ended) {
        update_result(user);
        tk_produce_int_keys(c.bootstraps, TOPIC, (const int[]){0},
                            (const int[]){2}, 1);
        wait_worker_at(++next_offset);
    }
    tk_sql(hold, "ROLLBACK");
    o->status = tk_exactly_wait(pid, WAIT_MS, log, what);
    if (!ended) {
        update_result(user);
        tk_produce_int_keys(c.bootstraps, TOPIC, (const int[]){0},
                            (const int[]){2}, 1);
        wait_worker_at(++next_offset);
    }
    PQfinish(hold);
    PQfinish(user);
    o->src = tk_sql_text(c.db, "SELECT name FROM src WHERE id = 2");
    o->view = tk_sql_text(c.db, "SELECT coalesce((SELECT name FROM view"
                                " WHERE id = 2), '(no row)')");
    tk_note("%s: exit status %d, view row 2 '%s', source row 2 '%s'", what,
            o->status, o->view, o->src);
}

static void replay(outcome *o, const char *cfg)
{
    const char *argv[] = {"dlq", "replay", "-c", cfg, "--all", NULL};

    /* A failed replay leaves its dead letters: planted once. */
    if (cli_dead_letters(&c, NULL) == 0)
        dlq_plant_series(&c, PIPELINE, TOPIC, 2);
    race(o, argv);
}

static void reprocess(outcome *o, const char *cfg)
{
    const char *argv[] = {"reprocess", "-c",  cfg,   "--pipeline", PIPELINE,
                          "--topic",   TOPIC, "--partition",       "0",
                          "--from",    "0",   "--to",  "1",        NULL};

    race(o, argv);
}

/* A lookup PostgreSQL cannot lock: reprocess says so and runs unlocked. */
static void group_lookup(void)
{
    const char *argv[] = {"reprocess", "-c",  group_cfg, "--pipeline",
                          PIPELINE,    "--topic", TOPIC, "--partition",
                          "0",         "--from",  "0",   "--to",
                          "1",         NULL};
    char log[700], *out;
    int status;

    snprintf(log, sizeof(log), "%s/reprocess-group.log", c.dir);
    status = tk_exactly_output(log, WAIT_MS, argv, &out);
    TK_CHECK(status == 0 &&
                 strstr(out, "the lookup cannot lock the rows it reads") &&
                 strstr(out, "GROUP BY"),
             "reprocess with a GROUP BY lookup exited %d without the warning "
             "that it reads unlocked:\n%s",
             status, out);
    free(out);
}

int main(void)
{
    static const char *update_prep = "UPDATE src SET name = 'before ' || id";
    static const char *update = "UPDATE src SET name = 'after' WHERE id = 2";
    /* After the delete cases: the rows 1 and 2 back in both tables. */
    static const char *restore_prep =
        "INSERT INTO src SELECT g, 'before ' || g FROM generate_series(1, 2) g"
        " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name;"
        "INSERT INTO view SELECT g, 'old' FROM generate_series(1, 2) g"
        " ON CONFLICT (id) DO NOTHING";
    /* Source rows gone, view rows 1 and 2 there; enough other view rows
     * that the DELETE reads view by its key, in ID order: it waits on row
     * 1 before it reaches row 2. */
    static const char *delete_prep =
        "DELETE FROM src;"
        "INSERT INTO view SELECT g, 'old' FROM generate_series(1, 2) g"
        " ON CONFLICT (id) DO NOTHING;"
        "INSERT INTO view SELECT g, 'other' FROM generate_series(1000, 3000) g"
        " ON CONFLICT (id) DO NOTHING;"
        "ANALYZE view";
    static const char *insert = "INSERT INTO src VALUES (2, 'after')";
    outcome o[7] = {
        {"replay-unfused", update_prep, update, 0, NULL, NULL},
        {"replay-fused", update_prep, update, 0, NULL, NULL},
        {"reprocess-unfused", update_prep, update, 0, NULL, NULL},
        {"reprocess-fused", update_prep, update, 0, NULL, NULL},
        {"replay-delete", delete_prep, insert, 0, NULL, NULL},
        {"reprocess-delete", delete_prep, insert, 0, NULL, NULL},
        {"replay-sql", restore_prep, update, 0, NULL, NULL},
    };
    pid_t worker;
    int i;

    cli_kit_start(&c, "extra_writer_race", TOPIC, 1, "fused.yaml", 0);
    snprintf(unfused_cfg, sizeof(unfused_cfg), "%s/unfused.yaml", c.dir);
    snprintf(wlog, sizeof(wlog), "%s/worker.log", c.dir);
    dlq_named_tables(&c, 2);
    snprintf(delete_cfg, sizeof(delete_cfg), "%s/delete.yaml", c.dir);
    snprintf(sql_cfg, sizeof(sql_cfg), "%s/sql.yaml", c.dir);
    snprintf(group_cfg, sizeof(group_cfg), "%s/group.yaml", c.dir);
    write_config(c.cfg, "skip", 0, NULL);
    write_config(unfused_cfg, "dead_letter", 0, NULL);
    write_config(delete_cfg, "handler", 1, NULL);
    write_config(sql_cfg, "skip", 0,
                 "SELECT id, name FROM src WHERE id = ANY($1::bigint[]);");
    write_config(group_cfg, "skip", 0,
                 "SELECT id, max(name) AS name FROM src"
                 " WHERE id = ANY($1::bigint[]) GROUP BY id");
    cli_kit_migrate(&c);

    /* The live worker applies offsets 0 and 1 (IDs 1 and 2), which the
     * reprocess cases run again. */
    worker = tk_worker_start(c.cfg, 0, wlog, NULL);
    cli_kit_produce_ids(&c, TOPIC, 2, 2, 1, NULL);
    next_offset = 2;
    wait_worker_at(next_offset);

    /* Every case runs before any is judged, so that a failure shows
     * them all. */
    replay(&o[0], unfused_cfg);
    replay(&o[1], c.cfg);
    reprocess(&o[2], unfused_cfg);
    reprocess(&o[3], c.cfg);
    replay(&o[4], delete_cfg);
    reprocess(&o[5], delete_cfg);
    replay(&o[6], sql_cfg);
    group_lookup();
    TK_CHECK(tk_worker_stop(worker, 20000) == 0, "worker did not stop cleanly");

    for (i = 0; i < 7; i++) {
        TK_CHECK(strcmp(o[i].view, o[i].src) == 0,
                 "%s: view row 2 is '%s' but source row 2 is '%s': the extra "
                 "writer's stale read undid the worker's newer write",
                 o[i].what, o[i].view, o[i].src);
        TK_CHECK(o[i].status == 0, "%s exited %d (see its log)", o[i].what,
                 o[i].status);
        free(o[i].view);
        free(o[i].src);
    }
    cli_kit_stop(&c);
    return 0;
}
