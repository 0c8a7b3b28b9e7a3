/*
 * Commit marks (lib/pg/pg_xact.h, store_marks.h; schema step 12): the
 * question an operator command asks on a new connection when the answer
 * to its COMMIT was lost, asked here directly of exactly_pg_xact_outcome()
 * on connections of the test's choosing, against the fixture PostgreSQL.
 *
 *   1. a committed mark, asked on a session with
 *      default_transaction_read_only on (what a hot standby answers: the
 *      claim's insert is refused with 25006 either way): unknown, saying
 *      the server takes no writes; never committed, never rolled back;
 *      the mark is still there. Asked on a writable session: committed,
 *      and the mark is deleted;
 *   2. a mark whose transaction rolled back, asked read-only: unknown,
 *      never rolled back; asked on a writable session: rolled back, and
 *      the question leaves no row behind;
 *   3. a mark whose transaction is still open, asked read-only: unknown at
 *      once; asked on a writable session: unknown (still in progress) once
 *      the client's bound (postgres.client_timeout_ms) ends, not before;
 *   4. exactly_pg_xact_forget() after a COMMIT that succeeded deletes that
 *      command's mark and every mark older than a day, and no other: a
 *      recent mark of another command that has yet to ask stays;
 *   5. a command that asks more than a day after it wrote its mark cannot
 *      tell a rolled-back transaction from a mark deleted as older than a
 *      day: unknown, never rolled back;
 *   6. the age from which marks are deleted is elapsed time, whatever the
 *      session's time zone: on the day a clock moves forward, a calendar
 *      day before noon is 23 hours, which would leave the question no
 *      margin at all for its "more than 23 hours".
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "ledger_check.h"
#include "pg_conn.h"
#include "pg_xact.h"
#include "store_marks.h"
#include "testkit.h"

#define BOUND_MS 1000
#define NO_WRITES "takes no writes"
#define IN_PROGRESS "still in progress"
#define EXPIRED "older than a day"

static const char *outcome_name(exactly_xact_outcome o)
{
    return o == EXACTLY_XACT_COMMITTED  ? "committed"
           : o == EXACTLY_XACT_ABORTED ? "rolled back"
                                        : "unknown";
}

static PGconn *connect_cfg(const exactly_config *cfg, int read_only)
{
    char err[512];
    PGconn *conn = exactly_pg_connect(cfg, "test-commit-marks", err,
                                      sizeof err);

    TK_CHECK(conn != NULL, "cannot connect: %s", err);
    if (read_only)
        TK_CHECK(exactly_pg_exec(conn, "SET default_transaction_read_only"
                                       " = on",
                                 0, NULL, NULL, err, sizeof err) == EXACTLY_OK,
                 "SET default_transaction_read_only: %s", err);
    return conn;
}

/* On conn: BEGIN and a mark into *ref; the transaction is left open. */
static void begin_marked(PGconn *conn, const exactly_config *cfg,
                         exactly_xact_ref *ref)
{
    char err[512];

    memset(ref, 0, sizeof *ref);
    TK_CHECK(exactly_pg_exec(conn, "BEGIN", 0, NULL, NULL, err, sizeof err) ==
                 EXACTLY_OK,
             "BEGIN: %s", err);
    TK_CHECK(exactly_pg_xact_mark(conn, cfg->postgres.schema, ref, err,
                                  sizeof err) == EXACTLY_OK &&
                 ref->mark[0],
             "cannot write a mark: %s", err);
}

static void end_marked(PGconn *conn, const char *how)
{
    char err[512];

    TK_CHECK(exactly_pg_exec(conn, how, 0, NULL, NULL, err, sizeof err) ==
                 EXACTLY_OK,
             "%s: %s", how, err);
}

static int64_t marks(PGconn *db, const exactly_xact_ref *ref)
{
    return tk_sql_int64(db, "SELECT count(*) FROM exactly.commit_marks"
                            " WHERE token = '%s'",
                        ref->mark);
}

/* Asks on a new connection (read-only or not) about ref; the outcome must
 * be want, and why must hold needle (unless NULL). Returns how long the
 * question took, in ms. */
#define expect(...) expect_at(__LINE__, __VA_ARGS__)

static long long expect_at(int line, const exactly_config *cfg,
                           const exactly_xact_ref *ref, int read_only,
                           exactly_xact_outcome want, const char *needle,
                           const char *what)
{
    char why[1024] = "";
    PGconn *conn = connect_cfg(cfg, read_only);
    long long t0 = exactly_now_ms();
    exactly_xact_outcome got =
        exactly_pg_xact_outcome(conn, cfg, ref, why, sizeof why);
    long long took = exactly_now_ms() - t0;

    tk_note("%s, asked on a %s session: %s (%s)", what,
            read_only ? "read-only" : "writable", outcome_name(got), why);
    TK_CHECK(got == want,
             "line %d: %s, asked on a %s session: %s, expected %s (why: %s)",
             line, what, read_only ? "read-only" : "writable",
             outcome_name(got), outcome_name(want), why);
    TK_CHECK(!needle || strstr(why, needle),
             "line %d: %s: the reason does not say \"%s\": %s", line, what,
             needle, why);
    PQfinish(conn);
    return took;
}

int main(void)
{
    char dir[256], conninfo[1024], path[512], log[512], err[1024];
    exactly_config *cfg = NULL;
    exactly_xact_ref ref, other;
    ledger_config lc;
    PGconn *db, *writer;
    long long waited;

    tk_tmpdir("exactly-commit-marks", dir, sizeof dir);
    tk_pg_create_db("commit_marks", conninfo, sizeof conninfo);
    db = tk_pg_connect(conninfo);
    memset(&lc, 0, sizeof lc);
    lc.bootstraps = "127.0.0.1:9"; /* never reached */
    lc.conninfo = conninfo;
    lc.topic = "commit-marks";
    lc.max_messages = 10;
    lc.max_wait_ms = 50;
    lc.postgres_yaml = "  client_timeout_ms: 1000\n";
    snprintf(path, sizeof path, "%s/marks.yaml", dir);
    snprintf(log, sizeof log, "%s/migrate.log", dir);
    ledger_write_config(path, &lc);
    ledger_migrate(path, log);
    TK_CHECK(exactly_config_load(path, &cfg, err, sizeof err) == EXACTLY_OK,
             "config: %s", err);
    TK_CHECK_EQ_INT64(exactly_pg_wait_bound_ms(cfg), BOUND_MS,
                      "the client's wait bound");
    writer = connect_cfg(cfg, 0);

    /* 1. Committed. Its token starts with the time of its insert, in ms,
     * which is also its created_at (the delete of old marks reads that). */
    begin_marked(writer, cfg, &ref);
    end_marked(writer, "COMMIT");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM"
                                       " exactly.commit_marks WHERE token ="
                                       " '%s' AND abs(extract(epoch FROM"
                                       " created_at) * 1000 - ('x' ||"
                                       " left(replace(token::text, '-',"
                                       " ''), 12))::bit(48)::bigint) < 1",
                                   ref.mark),
                      1, "marks whose token starts with their created_at");
    expect(cfg, &ref, 1, EXACTLY_XACT_UNKNOWN, NO_WRITES,
           "a committed mark");
    TK_CHECK_EQ_INT64(marks(db, &ref), 1,
                      "the committed mark after a read-only question");
    expect(cfg, &ref, 0, EXACTLY_XACT_COMMITTED, NULL, "a committed mark");
    TK_CHECK_EQ_INT64(marks(db, &ref), 0,
                      "the committed mark once known committed");

    /* 2. Rolled back. */
    begin_marked(writer, cfg, &ref);
    end_marked(writer, "ROLLBACK");
    expect(cfg, &ref, 1, EXACTLY_XACT_UNKNOWN, NO_WRITES,
           "a rolled-back mark");
    expect(cfg, &ref, 0, EXACTLY_XACT_ABORTED, NULL, "a rolled-back mark");
    TK_CHECK_EQ_INT64(marks(db, &ref), 0,
                      "rows of the rolled-back mark after the question");

    /* 3. Still open. */
    begin_marked(writer, cfg, &ref);
    waited = expect(cfg, &ref, 1, EXACTLY_XACT_UNKNOWN, NO_WRITES,
                    "a mark still being written");
    TK_CHECK(waited < BOUND_MS, "the read-only question waited %lld ms",
             waited);
    waited = expect(cfg, &ref, 0, EXACTLY_XACT_UNKNOWN, IN_PROGRESS,
                    "a mark still being written");
    TK_CHECK(waited >= BOUND_MS - 50 && waited < 3 * BOUND_MS,
             "the question about a transaction still open took %lld ms,"
             " the bound is %d ms",
             waited, BOUND_MS);
    end_marked(writer, "ROLLBACK");

    /* 4. What a command deletes after its COMMIT succeeded. */
    tk_sql(db, "INSERT INTO exactly.commit_marks (created_at) VALUES"
               " (now() - interval '25 hours')");
    begin_marked(writer, cfg, &other);
    end_marked(writer, "COMMIT");
    begin_marked(writer, cfg, &ref);
    end_marked(writer, "COMMIT");
    exactly_pg_xact_forget(writer, cfg->postgres.schema, &ref);
    TK_CHECK_EQ_INT64(marks(db, &ref), 0, "the command's own mark after"
                                          " exactly_pg_xact_forget");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM"
                                       " exactly.commit_marks WHERE"
                                       " created_at < now() - interval"
                                       " '1 day'"),
                      0, "marks older than a day after"
                         " exactly_pg_xact_forget");
    TK_CHECK_EQ_INT64(marks(db, &other), 1,
                      "another command's recent mark after"
                      " exactly_pg_xact_forget");
    expect(cfg, &other, 0, EXACTLY_XACT_COMMITTED, NULL,
           "another command's recent mark");

    /* 5. A command frozen (SIGSTOP, a paused machine) for two days between
     * its COMMIT, which landed, and its question: meanwhile another
     * command's delete took its mark as older than a day. Its mark is
     * written here as store_marks_add() writes one (store_marks.h: the
     * token's first 48 bits are the time it was written, in ms since
     * 1970), two days ago. */
    {
        char *token = tk_sql_text(
            db, "INSERT INTO exactly.commit_marks (token, created_at)"
                " SELECT encode(overlay(uuid_send(gen_random_uuid())"
                " PLACING substring(int8send((extract(epoch FROM t) *"
                " 1000)::bigint) FROM 3) FROM 1 FOR 6), 'hex')::uuid, t"
                " FROM (SELECT now() - interval '2 days' AS t) s"
                " RETURNING token::text");
        memset(&ref, 0, sizeof ref);
        snprintf(ref.mark, sizeof ref.mark, "%s", token);
        free(token);
    }
    begin_marked(writer, cfg, &other);
    end_marked(writer, "COMMIT");
    exactly_pg_xact_forget(writer, cfg->postgres.schema, &other);
    TK_CHECK_EQ_INT64(marks(db, &ref), 0,
                      "the mark written two days ago, after another"
                      " command's delete");
    expect(cfg, &ref, 0, EXACTLY_XACT_UNKNOWN, EXPIRED,
           "a committed mark written two days ago and deleted since");

    /* 6. The delete's age under a time zone whose clocks moved forward. */
    tk_sql(db, "SET TimeZone = 'Europe/Berlin'");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT extract(epoch FROM t - (t -"
                                       " interval '" STORE_MARKS_KEPT "'))"
                                       "::bigint FROM (SELECT timestamptz"
                                       " '2024-03-31 12:00+02' AS t) s"),
                      24 * 3600,
                      "seconds between noon on the day Berlin's clocks "
                      "moved forward and the age marks are deleted at");

    PQfinish(writer);
    PQfinish(db);
    exactly_config_free(cfg);
    tk_pg_drop_db(conninfo);
    tk_cleanup_dir(dir);
    return 0;
}
