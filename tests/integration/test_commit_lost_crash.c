/*
 * `exactly dlq replay` and `exactly offsets reset` whose COMMIT answer is
 * lost in a crash of the server that came before the commit record, or
 * any record naming the transaction, left the WAL buffers. The server
 * comes back by crash recovery on the same history (the same system
 * identifier and timeline), hands the same transaction ids to new
 * transactions, and those commit.
 *
 * Each command's COMMIT is held before its commit record is written: a
 * deferred constraint trigger of the test, on the table the command
 * writes, waits for an advisory lock the test holds. The server processes
 * that write WAL out by themselves (walwriter, background writer,
 * checkpointer, autovacuum launcher) are frozen (SIGSTOP) before the
 * commands start, and autovacuum is off (its transactions' commits would
 * write out everything before them), so nothing of the commands'
 * transactions reaches the WAL files.
 * Once both COMMITs wait there, the commands are frozen, and the frozen
 * server processes are killed (SIGKILL): the postmaster takes that as a
 * crash, drops every session (the test's, which holds the lock, among
 * them), resets shared memory (the WAL buffers with it) and recovers. On a new connection transactions are committed until
 * their ids pass both commands' ids, which then name committed
 * transactions of somebody else. The commands are resumed, find their
 * connections gone, connect again and ask.
 *
 * Neither may say its COMMIT committed: every dead letter is still there,
 * nothing was written, the stored offset did not move and there is no
 * audit row. The server they ask is the one that will answer every later
 * question: their transactions did not commit there, and can no longer.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_kit.h"
#include "dlq_kit.h"
#include "own_cluster.h"
#include "testkit.h"

#define TOPIC "lost-crash"
#define PIPELINE "lostcrash"
#define N_LETTERS 10
#define N_MSGS 40
#define STORED 10
#define SHIFT "5"
#define HOLD_LOCK 4242
#define WAIT_MS 30000
#define MAX_AUX 8

/* The test's hold: at COMMIT, before the commit record, the transaction
 * waits for the advisory lock HOLD_LOCK. */
static void install_hold(PGconn *db)
{
    tk_sql(db, "CREATE FUNCTION public.hold_commit() RETURNS trigger"
               " LANGUAGE plpgsql AS $$ BEGIN"
               " PERFORM pg_advisory_xact_lock(%d); RETURN NULL; END $$",
           HOLD_LOCK);
    tk_sql(db, "CREATE CONSTRAINT TRIGGER hold_commit AFTER DELETE ON"
               " exactly.dead_letters DEFERRABLE INITIALLY DEFERRED"
               " FOR EACH ROW EXECUTE FUNCTION public.hold_commit()");
    tk_sql(db, "CREATE CONSTRAINT TRIGGER hold_commit AFTER INSERT ON"
               " exactly.offset_resets DEFERRABLE INITIALLY DEFERRED"
               " FOR EACH ROW EXECUTE FUNCTION public.hold_commit()");
}

/* Turns autovacuum off on the test's cluster, before any table exists. */
static void no_autovacuum(void)
{
    PGconn *admin = tk_pg_connect(tk_pg_admin_conninfo());

    tk_sql(admin, "ALTER SYSTEM SET autovacuum = off");
    tk_sql(admin, "SELECT pg_reload_conf()");
    PQfinish(admin);
}

/* Freezes the server processes that write WAL out by themselves; their
 * pids into aux. Returns how many. */
static int freeze_wal_writers(PGconn *db, pid_t aux[MAX_AUX])
{
    char *list = tk_sql_text(db, "SELECT string_agg(pid::text, ' ') FROM"
                                 " pg_stat_activity WHERE backend_type IN"
                                 " ('walwriter', 'background writer',"
                                 " 'checkpointer', 'autovacuum launcher')");
    char *p = list, *end;
    int n = 0;

    TK_CHECK(list != NULL, "no walwriter, background writer or "
             "checkpointer in pg_stat_activity");
    while (n < MAX_AUX) {
        long v = strtol(p, &end, 10);
        if (end == p)
            break;
        aux[n++] = (pid_t)v;
        p = end;
    }
    free(list);
    TK_CHECK(n >= 3, "only %d of the server's WAL writing processes found",
             n);
    for (int i = 0; i < n; i++)
        TK_CHECK(tk_kill(aux[i], SIGSTOP) == 0, "server process %ld is gone",
                 (long)aux[i]);
    return n;
}

/* Waits, at most WAIT_MS, until the server has ended db's session. */
static void wait_session_gone(PGconn *db)
{
    int64_t until = tk_now_ms() + WAIT_MS;

    for (;; tk_sleep_ms(10)) {
        PGresult *res = PQexec(db, "SELECT 1");
        int alive = PQresultStatus(res) == PGRES_TUPLES_OK;

        PQclear(res);
        if (!alive)
            return;
        TK_CHECK(tk_now_ms() < until, "the test's session outlived the "
                 "crash by %d ms", WAIT_MS);
    }
}

/* Connects to conninfo once the server accepts connections again (crash
 * recovery), waiting at most WAIT_MS. */
static PGconn *reconnect(const char *conninfo)
{
    int64_t until = tk_now_ms() + WAIT_MS;

    for (;; tk_sleep_ms(50)) {
        PGconn *db = PQconnectdb(conninfo);
        if (PQstatus(db) == CONNECTION_OK)
            return db;
        TK_CHECK(tk_now_ms() < until, "the server did not come back "
                 "within %d ms: %s", WAIT_MS, PQerrorMessage(db));
        PQfinish(db);
    }
}

/* Commits transactions on db until its ids pass upto, then checks that
 * xid1 and xid2 name committed transactions: the ids the commands took
 * were handed out again. An id some record of which reached the WAL
 * files before the crash (something on the server wrote them out) is not
 * handed out again: noted; that command's question is then the plain
 * rolled back case. One of them at least must be. */
static void burn_ids(PGconn *db, int64_t upto, int64_t xid1, int64_t xid2)
{
    int64_t got = 0;
    int i, reused = 0;

    for (i = 0; i < 100000 && got < upto; i++)
        got = tk_sql_int64(db, "SELECT pg_current_xact_id()::text::bigint");
    TK_CHECK(got >= upto, "the ids after recovery stayed below %" PRId64,
             upto);
    for (i = 0; i < 2; i++) {
        int64_t x = i == 0 ? xid1 : xid2;
        char *st = tk_sql_text(db, "SELECT pg_xact_status('%" PRId64
                                   "'::xid8)", x);
        TK_CHECK(st && (strcmp(st, "committed") == 0 ||
                        strcmp(st, "aborted") == 0),
                 "after recovery transaction %" PRId64 " is '%s'", x,
                 st ? st : "NULL");
        if (strcmp(st, "committed") == 0)
            reused++;
        else
            tk_note("transaction %" PRId64 " reached the WAL files before "
                    "the crash: its id was not handed out again", x);
        free(st);
    }
    TK_CHECK(reused > 0, "neither command's transaction id was handed out "
             "again after the crash");
}

int main(void)
{
    char dir[256], log_dlq[600], log_reset[600];
    const char *dlq_args[] = {"dlq", "replay", "--all", "-c", NULL, NULL};
    const char *reset_args[] = {"offsets", "reset", "--pipeline", PIPELINE,
                                "--topic", TOPIC, "--shift-by", SHIFT, "-c",
                                NULL, NULL};
    pid_t aux[MAX_AUX], dlq, reset;
    int64_t xid_dlq, xid_reset;
    int n_aux, i;
    tk_config cfg;
    tk_pipeline *pl;
    cli_kit c;

    tk_tmpdir("exactly-commit-lost-crash", dir, sizeof dir);
    own_cluster_start(dir);
    no_autovacuum();
    cli_kit_start(&c, "commit_lost_crash", TOPIC, 1, "crash.yaml", 0);
    dlq_named_tables(&c, N_LETTERS);
    pl = dlq_view_pipeline(&c, &cfg, PIPELINE, TOPIC, "bigint",
                           (const char *[]){"id", "name", NULL});
    pl->on_missing = "skip";
    pl->max_messages = 100;
    pl->max_wait_ms = 50;
    cfg.connect_timeout_s = 2;
    tk_config_write(c.cfg, &cfg);
    cli_kit_migrate(&c);
    cli_kit_produce_ids(&c, TOPIC, N_MSGS, 10, 1, NULL);
    dlq_plant_series(&c, PIPELINE, TOPIC, N_LETTERS);
    tk_sql(c.db, "INSERT INTO exactly.offsets (pipeline, topic, partition, "
                 "next_offset) VALUES ('" PIPELINE "', '" TOPIC "', 0, %d)",
           STORED);
    install_hold(c.db);
    tk_sql(c.db, "SELECT pg_advisory_lock(%d)", HOLD_LOCK);
    n_aux = freeze_wal_writers(c.db, aux);

    snprintf(log_dlq, sizeof log_dlq, "%s/dlq-replay.log", c.dir);
    snprintf(log_reset, sizeof log_reset, "%s/offsets-reset.log", c.dir);
    dlq_args[4] = c.cfg;
    reset_args[9] = c.cfg;
    /* One after the other: a commit one command made before its own
     * transaction would write out the WAL of the other's. */
    dlq = tk_exactly_startv(log_dlq, dlq_args);
    xid_dlq = tk_pg_commit_waiting_xid(c.db, "exactly-dlq", "advisory",
                                       WAIT_MS);
    reset = tk_exactly_startv(log_reset, reset_args);
    xid_reset = tk_pg_commit_waiting_xid(c.db, "exactly-offsets-reset",
                                         "advisory", WAIT_MS);
    tk_note("COMMITs held before their commit records: replay %" PRId64
            ", reset %" PRId64, xid_dlq, xid_reset);
    TK_CHECK(tk_kill(dlq, SIGSTOP) == 0 && tk_kill(reset, SIGSTOP) == 0,
             "a command ended before its COMMIT was answered");

    /* The crash: the postmaster sees its processes killed and ends every
     * session. The test's own, which holds the lock the COMMITs wait for,
     * must end by the crash too: ended by the test, it would let them
     * through first. */
    for (i = 0; i < n_aux; i++)
        (void)tk_kill(aux[i], SIGKILL);
    wait_session_gone(c.db);
    PQfinish(c.db);
    c.db = reconnect(c.conninfo);
    burn_ids(c.db, xid_dlq > xid_reset ? xid_dlq : xid_reset, xid_dlq,
             xid_reset);

    dlq_commit_lost_check(dlq, reset, log_dlq, log_reset, c.conninfo,
                          N_LETTERS, STORED, "in the crash", "the server",
                          "(its transaction id was handed to another "
                          "transaction after the crash)");

    cli_kit_stop(&c);
    own_cluster_remove();
    tk_cleanup_dir(dir);
    return 0;
}
