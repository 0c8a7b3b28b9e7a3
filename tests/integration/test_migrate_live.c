/*
 * test_migrate_live.c - `exactly migrate` upgrades a schema that running
 * workers write without making them wait for an index build.
 *
 * Schema step 10 builds dead_letters_newest on dead_letters, a table the
 * workers write in their batches. A plain CREATE INDEX holds a SHARE lock
 * on the table for the whole build (and queues for it behind any writer):
 * every dead-letter insert waits that long, and with it the batch and its
 * offset rows. CREATE INDEX CONCURRENTLY takes a lock that writers do not
 * conflict with, and waits for them instead.
 *
 * Deterministically, without a big table: a schema at step 9; a writer
 * transaction (A) inserts a dead letter and stays open; `exactly migrate`
 * starts and, once its session waits for a lock (behind A), a second
 * dead-letter insert (B) must finish without waiting for any lock. Then A
 * commits and the migration completes with the index valid.
 *
 * An interrupted concurrent build leaves an INVALID index under the name
 * (one is made here by a unique build that fails on duplicates): the next
 * migrate drops it and builds the step's index. A valid index already
 * there (built, but the step not recorded) is kept and the step recorded.
 * Two migrations at once, one of them building, both end well.
 *
 * A build waits for every transaction of the database holding a snapshot
 * older than its own, whatever it reads: a report query or an idle
 * session in REPEATABLE READ. On a new install (dead_letters created in
 * the same run, empty, seen by no one else) the index is built in the
 * steps' transaction and waits for nothing, with the default
 * lock_timeout; on an existing table the concurrent build waits for the
 * old snapshot longer than postgres.lock_timeout_ms, bounded by
 * statement_timeout only, and the log names the session it waits for.
 *
 * A migration that fails on a lock timeout (dropping an invalid index
 * behind a writer; step 11's ALTER TABLE behind a transaction that holds
 * relay_state) names postgres.lock_timeout_ms, not statement_timeout_ms,
 * and the version the schema stays at.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "migrate_live"
#define WAIT_MS 15000

/* The schema as it was after step 9: what steps 10 and later made is
 * undone (each named here), their rows of schema_version deleted. With
 * keep_index the index of step 10 stays, as after a build whose step was
 * not recorded. */
static void back_to_step_9(PGconn *db, int keep_index)
{
    if (!keep_index)
        tk_sql(db, "DROP INDEX IF EXISTS exactly.dead_letters_newest");
    tk_sql(db, "ALTER TABLE exactly.relay_state"
               " DROP COLUMN IF EXISTS last_published_at;"
               "DROP TABLE IF EXISTS exactly.commit_marks;"
               "DELETE FROM exactly.schema_version WHERE version >= 10");
}

/* Indexes named dead_letters_newest in the framework schema that are
 * valid (valid = 1) or not (valid = 0). */
static int64_t newest_index(PGconn *db, int valid)
{
    return tk_sql_int64(db, "SELECT count(*) FROM pg_index i"
                            " JOIN pg_class c ON c.oid = i.indexrelid"
                            " JOIN pg_namespace n ON n.oid = c.relnamespace"
                            " WHERE n.nspname = 'exactly'"
                            " AND c.relname = 'dead_letters_newest'"
                            " AND i.indisvalid = %s",
                        valid ? "true" : "false");
}

/* The step's index is there, valid, on (pipeline, id), not unique. */
static void check_newest_index(PGconn *db, const char *log)
{
    char *def;

    LEDGER_CHECK_LOG(newest_index(db, 1) == 1 && newest_index(db, 0) == 0,
                     log, "dead_letters_newest is not one valid index after "
                     "migrate (%" PRId64 " valid, %" PRId64 " invalid)",
                     newest_index(db, 1), newest_index(db, 0));
    def = tk_sql_text(db, "SELECT pg_get_indexdef("
                          "'exactly.dead_letters_newest'::regclass)");
    TK_CHECK(def && strstr(def, "(pipeline, id)") != NULL &&
                 strstr(def, "UNIQUE") == NULL,
             "dead_letters_newest is not the step's index: %s",
             def ? def : "(null)");
    free(def);
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT max(version) FROM"
                                       " exactly.schema_version"),
                      tk_sql_int64(db, "SELECT count(*) FROM"
                                       " exactly.schema_version"),
                      "schema version after migrate (one row per step)");
    TK_CHECK(tk_sql_int64(db, "SELECT max(version) FROM"
                              " exactly.schema_version") >= 11,
             "migrate did not go past step 10");
}

/* Runs `exactly migrate` to its end and checks it exits 0. */
static void migrate_ok(const ledger_fixture *f)
{
    int status = tk_exactly(f->log, 60000, "migrate", "-c", f->config, NULL);
    LEDGER_CHECK_LOG(status == 0, f->log, "exactly migrate exited %d",
                     status);
}

/* The lock migrate's session waits for, as "locktype mode", or "" while
 * it waits for none. malloc'd. */
static char *migrate_waits_for(PGconn *db)
{
    char *s = tk_sql_text(db, "SELECT coalesce(string_agg(l.locktype || ' '"
                              " || l.mode, ', '), '') FROM pg_locks l"
                              " JOIN pg_stat_activity a ON a.pid = l.pid"
                              " WHERE a.application_name = 'exactly-migrate'"
                              " AND a.datname = current_database()"
                              " AND NOT l.granted");
    return s ? s : strdup("");
}

/* Opens writer a's transaction (a dead letter at offset, uncommitted),
 * starts `exactly migrate` and returns once its session waits for a lock
 * (behind a), with *waits the lock it waits for (malloc'd). */
static pid_t migrate_behind_writer(ledger_fixture *f, PGconn *db, PGconn *a,
                                   int offset, char **waits)
{
    const char *args[] = {"migrate", "-c", f->config, NULL};
    int64_t until;
    pid_t mig;

    tk_sql(a, "BEGIN;"
              "INSERT INTO exactly.dead_letters"
              " (pipeline, topic, partition, \"offset\", reason)"
              " VALUES ('" LEDGER_PIPELINE "', '" TOPIC "', 0, %d, 'A')",
           offset);
    mig = tk_exactly_startv(f->log, args);
    until = tk_now_ms() + WAIT_MS;
    for (*waits = NULL;; tk_sleep_ms(20)) {
        free(*waits);
        *waits = migrate_waits_for(db);
        if ((*waits)[0] != '\0')
            return mig;
        LEDGER_CHECK_LOG(tk_now_ms() < until, f->log, "exactly migrate "
                         "did not come to wait behind the open writer "
                         "within %d ms", WAIT_MS);
    }
}

/* Case 1: a dead-letter insert while migrate builds the index behind an
 * open writer does not wait. */
static void insert_not_blocked(ledger_fixture *f, PGconn *db)
{
    PGconn *a = tk_pg_connect(f->conninfo), *b = tk_pg_connect(f->conninfo);
    char *waits = NULL;
    int64_t until, b_pid = PQbackendPID(b);
    int done = 0, status;
    pid_t mig;

    back_to_step_9(db, 0);
    /* migrate has reached the build: its session waits behind A. */
    mig = migrate_behind_writer(f, db, a, 1, &waits);
    tk_note("migrate waits for: %s", waits);

    TK_CHECK(PQsendQuery(b, "INSERT INTO exactly.dead_letters"
                            " (pipeline, topic, partition, \"offset\","
                            " reason) VALUES ('" LEDGER_PIPELINE "', '"
                            TOPIC "', 0, 2, 'B')") == 1,
             "cannot send the second insert: %s", PQerrorMessage(b));
    until = tk_now_ms() + WAIT_MS;
    while (!done) {
        int64_t b_waits;

        TK_CHECK(PQconsumeInput(b) == 1, "second insert: %s",
                 PQerrorMessage(b));
        if (!PQisBusy(b)) {
            PGresult *r = PQgetResult(b);
            TK_CHECK(PQresultStatus(r) == PGRES_COMMAND_OK,
                     "second insert failed: %s", PQresultErrorMessage(r));
            PQclear(r);
            while ((r = PQgetResult(b)) != NULL)
                PQclear(r);
            done = 1;
            break;
        }
        b_waits = tk_sql_int64(db, "SELECT count(*) FROM pg_locks"
                                   " WHERE pid = %" PRId64
                                   " AND NOT granted", b_pid);
        TK_CHECK(b_waits == 0, "a dead-letter insert waits for a lock on "
                 "dead_letters while exactly migrate builds "
                 "dead_letters_newest (migrate waits for: %s)", waits);
        TK_CHECK(tk_now_ms() < until, "the second insert did not finish "
                 "within %d ms", WAIT_MS);
        tk_sleep_ms(20);
    }
    free(waits);

    tk_sql(a, "COMMIT");
    status = tk_exactly_wait(mig, 60000, f->log, "exactly migrate");
    LEDGER_CHECK_LOG(status == 0, f->log, "exactly migrate exited %d",
                     status);
    check_newest_index(db, f->log);
    PQfinish(a);
    PQfinish(b);
}

/* Case 2: an INVALID index under the step's name (an interrupted
 * concurrent build) is dropped and the index built anew. */
static void invalid_index_rebuilt(ledger_fixture *f, PGconn *db)
{
    PGresult *r;

    back_to_step_9(db, 0);
    /* Two dead letters of one pipeline are there (case 1): a unique
     * build on pipeline fails and leaves its index invalid. */
    r = PQexec(db, "CREATE UNIQUE INDEX CONCURRENTLY dead_letters_newest"
                   " ON exactly.dead_letters (pipeline)");
    TK_CHECK(PQresultStatus(r) == PGRES_FATAL_ERROR,
             "the unique build did not fail: %s", PQresultErrorMessage(r));
    PQclear(r);
    TK_CHECK_EQ_INT64(newest_index(db, 0), 1,
                      "invalid dead_letters_newest indexes before migrate");
    migrate_ok(f);
    check_newest_index(db, f->log);
}

/* Case 3: the index is there and valid but step 10 not recorded. */
static void valid_index_kept(ledger_fixture *f, PGconn *db)
{
    int64_t oid;

    back_to_step_9(db, 1);
    oid = tk_sql_int64(db, "SELECT 'exactly.dead_letters_newest'::regclass"
                           "::oid::bigint");
    migrate_ok(f);
    check_newest_index(db, f->log);
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT 'exactly.dead_letters_newest'"
                                       "::regclass::oid::bigint"),
                      oid, "oid of the valid index (kept, not rebuilt)");
}

/* Case 4: two migrations at once, the first building behind an open
 * writer: the second waits for the first's lock without holding a
 * snapshot the build would wait for in turn, says which session holds
 * the lock, and both end well. */
static void two_at_once(ledger_fixture *f, PGconn *db)
{
    PGconn *a = tk_pg_connect(f->conninfo);
    const char *args[] = {"migrate", "-c", f->config, NULL};
    char *waits = NULL, *holder, log2[600];
    pid_t m1, m2;
    int s1, s2;

    back_to_step_9(db, 0);
    m1 = migrate_behind_writer(f, db, a, 3, &waits);
    free(waits);
    /* The first's session: the one waiting behind the writer. */
    holder = tk_sql_text(db, "SELECT a.pid::text FROM pg_stat_activity a"
                             " WHERE a.application_name = 'exactly-migrate'"
                             " AND a.datname = current_database()"
                             " AND EXISTS (SELECT 1 FROM pg_locks l"
                             " WHERE l.pid = a.pid AND NOT l.granted)");
    snprintf(log2, sizeof log2, "%s/migrate-second.log", f->dir);
    m2 = tk_exactly_startv(log2, args);
    /* The second is connected and asking for the lock. */
    TK_CHECK(tk_sql_wait_int64(db, 2, WAIT_MS,
                               "SELECT count(*) FROM pg_stat_activity"
                               " WHERE application_name = 'exactly-migrate'"
                               " AND datname = current_database()") == 2,
             "the second exactly migrate did not connect");
    LEDGER_CHECK_LOG(tk_wait_log(log2, "holds the lock", 1, m2, WAIT_MS,
                                 NULL) &&
                         tk_log_lines_with(log2, "holds the lock", holder) > 0,
                     log2, "the second exactly migrate did not say that "
                     "session %s holds the lock it waits for", holder);
    free(holder);
    tk_sql(a, "COMMIT");
    s1 = tk_exactly_wait(m1, 60000, f->log, "the first exactly migrate");
    s2 = tk_exactly_wait(m2, 60000, log2, "the second exactly migrate");
    LEDGER_CHECK_LOG(s1 == 0 && s2 == 0, f->log, "two exactly migrate at "
                     "once exited %d and %d", s1, s2);
    check_newest_index(db, f->log);
    PQfinish(a);
}

/* A config at path like the fixture's, with postgres.lock_timeout_ms
 * lock_ms (0: the default). */
static void write_config(const ledger_fixture *f, const char *path,
                         int lock_ms)
{
    ledger_config c;

    memset(&c, 0, sizeof c);
    c.bootstraps = f->mock->bootstraps;
    c.conninfo = f->conninfo;
    c.topic = f->topic;
    c.max_messages = 100;
    c.max_wait_ms = 20;
    c.lock_timeout_ms = lock_ms;
    ledger_write_config(path, &c);
}

/* Opens a transaction on h that holds a snapshot until it ends. */
static void hold_snapshot(PGconn *h)
{
    tk_sql(h, "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1");
}

/* Case 5: a new install with the default settings while another session
 * holds an old snapshot (for longer than the default lock_timeout, 10 s,
 * were migrate to wait for it) ends well at once. */
static void fresh_behind_old_snapshot(ledger_fixture *f, PGconn *db)
{
    PGconn *h = tk_pg_connect(f->conninfo);
    char cfg[600];
    int status;

    snprintf(cfg, sizeof cfg, "%s/defaults.yaml", f->dir);
    write_config(f, cfg, 0);
    tk_sql(db, "DROP SCHEMA exactly CASCADE");
    hold_snapshot(h);
    status = tk_exactly(f->log, 60000, "migrate", "-c", cfg, NULL);
    LEDGER_CHECK_LOG(status == 0, f->log, "exactly migrate of a new install "
                     "exited %d while another session held a snapshot",
                     status);
    tk_sql(h, "COMMIT");
    check_newest_index(db, f->log);
    PQfinish(h);
}

/* Case 6: on an existing dead_letters the concurrent build waits for an
 * old snapshot past postgres.lock_timeout_ms (1 s here), says whose, and
 * ends well once that transaction does. */
static void existing_waits_past_lock_timeout(ledger_fixture *f, PGconn *db)
{
    PGconn *h = tk_pg_connect(f->conninfo);
    char cfg[600], log[600], pid[32];
    const char *args[] = {"migrate", "-c", cfg, NULL};
    int64_t until, waiting_since = 0;
    int status;
    pid_t mig;

    snprintf(cfg, sizeof cfg, "%s/lock1s.yaml", f->dir);
    snprintf(log, sizeof log, "%s/migrate-snapshot.log", f->dir);
    write_config(f, cfg, 1000);
    back_to_step_9(db, 0);
    hold_snapshot(h);
    snprintf(pid, sizeof pid, "%d", PQbackendPID(h));
    mig = tk_exactly_startv(log, args);
    /* Three lock timeouts after it came to wait, it still waits. */
    until = tk_now_ms() + WAIT_MS;
    while (!waiting_since || tk_now_ms() < waiting_since + 3000) {
        char *waits = migrate_waits_for(db);

        if (!waiting_since && waits[0] != '\0')
            waiting_since = tk_now_ms();
        free(waits);
        status = tk_wait(mig, 0);
        LEDGER_CHECK_LOG(status == -1, log, "exactly migrate exited %d "
                         "while another session held a snapshot older than "
                         "its build (lock_timeout 1 s)", status);
        LEDGER_CHECK_LOG(tk_now_ms() < until, log, "exactly migrate did not "
                         "come to wait behind the old snapshot within %d ms",
                         WAIT_MS);
        tk_sleep_ms(20);
    }
    LEDGER_CHECK_LOG(tk_log_lines_with(log, "older transactions", pid) > 0,
                     log, "the log does not say that the build waits for "
                     "session %s", pid);
    tk_sql(h, "COMMIT");
    status = tk_exactly_wait(mig, 60000, log, "exactly migrate");
    LEDGER_CHECK_LOG(status == 0, log, "exactly migrate exited %d", status);
    check_newest_index(db, log);
    PQfinish(h);
}

/* Case 7: lock timeouts name postgres.lock_timeout_ms (1 s here) and the
 * version the schema stays at. */
static void lock_timeout_named(ledger_fixture *f, PGconn *db)
{
    PGconn *a = tk_pg_connect(f->conninfo);
    char cfg[600], log[600], *out = NULL;
    const char *args[] = {"migrate", "-c", cfg, NULL};
    PGresult *r;
    int status;

    snprintf(cfg, sizeof cfg, "%s/lock1s.yaml", f->dir);
    snprintf(log, sizeof log, "%s/migrate-lock-timeout.log", f->dir);
    write_config(f, cfg, 1000);

    /* Step 10: the invalid index is dropped behind an open writer. */
    back_to_step_9(db, 0);
    r = PQexec(db, "CREATE UNIQUE INDEX CONCURRENTLY dead_letters_newest"
                   " ON exactly.dead_letters (pipeline)");
    TK_CHECK(PQresultStatus(r) == PGRES_FATAL_ERROR,
             "the unique build did not fail: %s", PQresultErrorMessage(r));
    PQclear(r);
    tk_sql(a, "BEGIN;"
              "INSERT INTO exactly.dead_letters"
              " (pipeline, topic, partition, \"offset\", reason)"
              " VALUES ('" LEDGER_PIPELINE "', '" TOPIC "', 0, 20, 'A')");
    status = tk_exactly_output(log, 60000, args, &out);
    TK_CHECK(status == 1 && strstr(out, "lock timeout"),
             "migrate behind a writer with lock_timeout 1 s exited %d:\n%s",
             status, out);
    TK_CHECK(strstr(out, "postgres.lock_timeout_ms") &&
                 !strstr(out, "statement_timeout_ms"),
             "a lock timeout of step 10 does not name "
             "postgres.lock_timeout_ms (and only it):\n%s", out);
    TK_CHECK(strstr(out, "at version 9") != NULL,
             "a failed step 10 does not say the schema is at version 9:\n%s",
             out);
    free(out);
    tk_sql(a, "ROLLBACK");

    /* Step 11: relay_state is held by an open transaction. */
    snprintf(log, sizeof log, "%s/migrate-lock-timeout-11.log", f->dir);
    back_to_step_9(db, 0); /* the invalid index goes too */
    tk_sql(db, "CREATE INDEX dead_letters_newest ON exactly.dead_letters"
               " (pipeline, id);"
               "INSERT INTO exactly.schema_version (version) VALUES (10)");
    tk_sql(a, "BEGIN; LOCK TABLE exactly.relay_state IN ROW EXCLUSIVE MODE");
    status = tk_exactly_output(log, 60000, args, &out);
    TK_CHECK(status == 1 && strstr(out, "lock timeout"),
             "migrate behind a holder of relay_state exited %d:\n%s", status,
             out);
    TK_CHECK(strstr(out, "step 11") && strstr(out, "postgres.lock_timeout_ms"),
             "a lock timeout of step 11 does not name the step and "
             "postgres.lock_timeout_ms:\n%s", out);
    TK_CHECK(strstr(out, "at version 10") != NULL,
             "a failed step 11 does not say the schema is at version 10:\n%s",
             out);
    free(out);
    tk_sql(a, "ROLLBACK");
    migrate_ok(f);
    check_newest_index(db, f->log);
    PQfinish(a);
}

int main(void)
{
    ledger_fixture f;
    ledger_config cfg;
    PGconn *db;

    ledger_fixture_start(&f, "migrate_live", TOPIC, 1);
    memset(&cfg, 0, sizeof cfg);
    cfg.max_messages = 100;
    cfg.max_wait_ms = 20;
    /* Bounds above the test's own waits: what migrate waits for is the
     * test's open writer. */
    cfg.lock_timeout_ms = 60000;
    ledger_fixture_config(&f, &cfg);
    db = tk_pg_connect(f.conninfo);

    insert_not_blocked(&f, db);
    invalid_index_rebuilt(&f, db);
    valid_index_kept(&f, db);
    two_at_once(&f, db);
    existing_waits_past_lock_timeout(&f, db);
    lock_timeout_named(&f, db);
    fresh_behind_old_snapshot(&f, db);

    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
