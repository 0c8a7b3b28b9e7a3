/*
 * `exactly dlq replay` and `exactly offsets reset` whose COMMIT answer is
 * lost in a failover to an asynchronous standby that never saw their
 * transactions, on which the transactions' ids name other, committed
 * transactions.
 *
 * The config's conninfo names the primary and a streaming standby
 * (host=a,b target_session_attrs=read-write). Once the dead letters and
 * the stored offset are on the standby, it stops streaming (a lagging
 * asynchronous standby), and synchronous_standby_names on the primary
 * names a standby that does not exist, so every COMMIT there is written
 * locally and then waits (SyncRep). Both commands run; while both COMMITs
 * wait, the standby is promoted and transactions are committed on it until
 * its transaction ids pass both commands' ids (read from pg_stat_activity
 * on the primary): on the new primary those ids are "committed", by
 * somebody else. The commands are frozen (SIGSTOP) meanwhile, so that
 * nothing of theirs can reach the old primary again; it crashes (immediate
 * stop), they are resumed, find their connections gone, connect again and
 * reach the new primary, the one server left, which holds nothing of
 * them: every dead letter is there, nothing was written, the stored
 * offset did not move, no audit row.
 *
 * Neither command may report its COMMIT as committed: a replay that says
 * so would leave the operator thinking the dead letters were applied (and
 * those it deleted would be gone), a reset would be reported done that did
 * not happen. The id cannot answer: it names another transaction there.
 * The transaction's own mark can: the new primary does not hold it and no
 * transaction is writing it, so there, the server every later read goes
 * to, neither committed and neither can any more: both say they were
 * rolled back (exit 1; the reset says nothing changed).
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
#include "replica.h"
#include "testkit.h"

#define TOPIC "xid-failover"
#define PIPELINE "xidfo"
#define N_LETTERS 10
#define N_MSGS 40
#define STORED 10
#define SHIFT "5"
#define WAIT_MS 30000

/* Waits until the standby has replayed everything the primary wrote. */
static void wait_standby_caught_up(PGconn *primary)
{
    PGconn *sb = tk_pg_connect(replica_conninfo());
    char *lsn = tk_sql_text(primary, "SELECT pg_current_wal_lsn()::text");
    int64_t until = tk_now_ms() + WAIT_MS;

    TK_CHECK(lsn != NULL, "no WAL position on the primary");
    while (tk_sql_int64(sb, "SELECT (pg_last_wal_replay_lsn() >= '%s')::int",
                        lsn) != 1) {
        TK_CHECK(tk_now_ms() < until, "the standby did not replay up to %s",
                 lsn);
        tk_sleep_ms(10);
    }
    free(lsn);
    PQfinish(sb);
}

/* On the promoted standby: commits transactions until its ids pass upto,
 * then checks that xid1 and xid2 name committed transactions there. */
static void burn_ids(const char *conninfo, int64_t upto, int64_t xid1,
                     int64_t xid2)
{
    PGconn *db = tk_pg_connect(conninfo);
    int64_t got = 0;
    int i;

    for (i = 0; i < 100000 && got < upto; i++)
        got = tk_sql_int64(db, "SELECT pg_current_xact_id()::text::bigint");
    TK_CHECK(got >= upto, "the new primary's ids stayed below %" PRId64, upto);
    for (i = 0; i < 2; i++) {
        int64_t x = i == 0 ? xid1 : xid2;
        char *st = tk_sql_text(db, "SELECT pg_xact_status('%" PRId64
                                   "'::xid8)", x);
        TK_CHECK(st && strcmp(st, "committed") == 0,
                 "on the new primary transaction %" PRId64 " is '%s', not "
                 "another transaction's commit", x, st ? st : "NULL");
        free(st);
    }
    PQfinish(db);
}

int main(void)
{
    char dir[256], multi[1024], standby[1024], log_dlq[600], log_reset[600];
    const char *dlq_args[] = {"dlq", "replay", "--all", "-c", NULL, NULL};
    const char *reset_args[] = {"offsets", "reset", "--pipeline", PIPELINE,
                                "--topic", TOPIC, "--shift-by", SHIFT, "-c",
                                NULL, NULL};
    int64_t xid_dlq, xid_reset;
    pid_t dlq, reset;
    tk_config cfg;
    tk_pipeline *pl;
    cli_kit c;

    tk_tmpdir("exactly-commit-unknown-failover", dir, sizeof dir);
    own_cluster_start(dir);
    replica_start(dir, "async");
    cli_kit_start(&c, "commit_unknown_failover", TOPIC, 1, "xid.yaml", 0);
    replica_multihost(c.conninfo, multi, sizeof multi);
    replica_direct(c.conninfo, standby, sizeof standby);
    dlq_named_tables(&c, N_LETTERS);
    pl = dlq_view_pipeline(&c, &cfg, PIPELINE, TOPIC, "bigint",
                           (const char *[]){"id", "name", NULL});
    pl->on_missing = "skip";
    pl->max_messages = 100;
    pl->max_wait_ms = 50;
    cfg.conninfo = multi;
    /* A connect attempt to the crashed primary must fail fast. */
    cfg.connect_timeout_s = 2;
    tk_config_write(c.cfg, &cfg);
    cli_kit_migrate(&c);
    cli_kit_produce_ids(&c, TOPIC, N_MSGS, 10, 1, NULL);
    dlq_plant_series(&c, PIPELINE, TOPIC, N_LETTERS);
    tk_sql(c.db, "INSERT INTO exactly.offsets (pipeline, topic, partition, "
                 "next_offset) VALUES ('" PIPELINE "', '" TOPIC "', 0, %d)",
           STORED);
    wait_standby_caught_up(c.db);
    replica_cmd("detach");

    /* Every commit from here on waits for a standby that does not exist;
     * the test's own session does not. */
    own_cluster_hold_commits(c.db);

    snprintf(log_dlq, sizeof log_dlq, "%s/dlq-replay.log", c.dir);
    snprintf(log_reset, sizeof log_reset, "%s/offsets-reset.log", c.dir);
    dlq_args[4] = c.cfg;
    reset_args[9] = c.cfg;
    dlq = tk_exactly_startv(log_dlq, dlq_args);
    reset = tk_exactly_startv(log_reset, reset_args);
    xid_dlq = tk_pg_commit_waiting_xid(c.db, "exactly-dlq", "SyncRep",
                                       WAIT_MS);
    xid_reset = tk_pg_commit_waiting_xid(c.db, "exactly-offsets-reset",
                                         "SyncRep", WAIT_MS);
    tk_note("COMMITs waiting on the primary: replay %" PRId64 ", reset %"
            PRId64, xid_dlq, xid_reset);

    TK_CHECK(tk_kill(dlq, SIGSTOP) == 0 && tk_kill(reset, SIGSTOP) == 0,
             "a command ended before its COMMIT was answered");
    replica_cmd("promote");
    burn_ids(standby, xid_dlq > xid_reset ? xid_dlq : xid_reset, xid_dlq,
             xid_reset);
    own_cluster_cmd("kill");
    dlq_commit_lost_check(dlq, reset, log_dlq, log_reset, standby, N_LETTERS,
                          STORED, "in the failover", "the new primary",
                          "(its transaction id names another transaction "
                          "there)");

    cli_kit_stop(&c);
    replica_remove();
    own_cluster_remove();
    tk_cleanup_dir(dir);
    return 0;
}
