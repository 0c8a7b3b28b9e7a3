/*
 * A batch whose COMMIT went unanswered and did not land, then an
 * `exactly offsets reset --force` forward before the worker reads its
 * row again: the stored offset is ahead of the worker's, but not because
 * its batch committed. The worker follows the row and does not count
 * that batch (no `earlier commit confirmed`): its summary's applied is
 * what the ledger holds.
 *
 * A deferred constraint trigger on the ledger sleeps at commit; the test
 * catches the worker's backend running COMMIT in that sleep, stops the
 * worker (SIGSTOP), terminates the backend (the transaction is rolled
 * back), moves the partition to its end with the reset and lets the
 * worker go on (SIGCONT).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "commit-unknown-reset"
#define MESSAGES 400
#define ENTITIES 50
#define SEED 7411
#define HUNT_MS 20000

/* Stops the worker while its backend runs COMMIT in the trigger's sleep,
 * and terminates that backend. Returns 1 on a hit (the worker is left
 * stopped), 0 when none was caught before the deadline. */
static int stop_in_commit(PGconn *db, pid_t pid, int64_t deadline)
{
    while (tk_now_ms() < deadline) {
        char *bpid = tk_sql_text(
            db,
            "SELECT max(pid) FROM pg_stat_activity WHERE datname = "
            "current_database() AND application_name LIKE '%%:' || %d || "
            "':%%' AND state = 'active' AND query = 'COMMIT' AND wait_event "
            "= 'PgSleep'",
            (int)pid);
        char *hit;

        if (!bpid) {
            tk_sleep_ms(1);
            continue;
        }
        TK_CHECK(tk_kill(pid, SIGSTOP) == 0, "cannot stop the worker");
        /* Still in that COMMIT once the worker is stopped: terminate it.
         * OFFSET 0 keeps the filter ahead of pg_terminate_backend(). */
        hit = tk_sql_text(
            db,
            "SELECT max(pid) FROM (SELECT pid FROM pg_stat_activity WHERE "
            "pid = %s AND state = 'active' AND query = 'COMMIT' AND "
            "wait_event = 'PgSleep' OFFSET 0) s WHERE "
            "pg_terminate_backend(pid)",
            bpid);
        if (hit) {
            tk_pg_wait_backend_gone(db, strtoll(bpid, NULL, 10));
            free(hit);
            free(bpid);
            return 1;
        }
        free(bpid);
        TK_CHECK(tk_kill(pid, SIGCONT) == 0, "cannot continue the worker");
    }
    return 0;
}

int main(void)
{
    char reset_log[600];
    const char *done[] = {"stored offset is ahead", "earlier commit confirmed"};
    ledger_fixture f;
    ledger_config c;
    ledger_summary s;
    PGconn *db;
    pid_t pid;
    int64_t deadline, rows;
    int st, confirmed, seen = 0;

    ledger_fixture_start(&f, "commit_unknown_reset", TOPIC, 1);
    tk_produce_ids(f.mock->bootstraps, TOPIC, MESSAGES, ENTITIES, 1, SEED,
                   NULL);
    memset(&c, 0, sizeof c);
    c.max_messages = 20;
    c.max_wait_ms = 50;
    ledger_fixture_config(&f, &c);
    db = tk_pg_connect(f.conninfo);
    tk_pg_slow_commit(db, "ledger");
    pid = ledger_start_worker(f.config, 0, f.log);

    LEDGER_CHECK_LOG(stop_in_commit(db, pid, tk_now_ms() + HUNT_MS), f.log,
                     "no COMMIT of the worker caught in %d ms", HUNT_MS);
    tk_sql(db, "DROP TRIGGER slow_commit ON ledger");
    snprintf(reset_log, sizeof reset_log, "%s/reset.log", f.dir);
    st = tk_exactly(reset_log, 60000, "offsets", "reset", "-c", f.config,
                    "--pipeline", LEDGER_PIPELINE, "--topic", TOPIC,
                    "--to-latest", "--force", NULL);
    TK_CHECK(st == 0, "offsets reset --to-latest --force exited %d; log %s",
             st, reset_log);
    TK_CHECK(tk_kill(pid, SIGCONT) == 0, "cannot continue the worker");

    /* The worker reads its row again: it follows it, one way or the
     * other. */
    deadline = tk_now_ms() + 30000;
    while (!seen && tk_now_ms() < deadline) {
        seen = tk_log_count(f.log, done[0]) + tk_log_count(f.log, done[1]);
        if (!seen)
            tk_sleep_ms(20);
    }
    LEDGER_CHECK_LOG(seen, f.log, "the worker did not follow the stored "
                     "offset within 30 s");
    confirmed = tk_log_count(f.log, "earlier commit confirmed");
    LEDGER_CHECK_LOG(confirmed == 0, f.log,
                     "a batch whose COMMIT was rolled back was counted as "
                     "committed after a reset moved the row forward (%d x "
                     "`earlier commit confirmed`)", confirmed);
    TK_CHECK_EQ_INT64(ledger_wait_stored(db, 0, MESSAGES, 30000),
                          MESSAGES, "stored offset after the reset");

    st = tk_terminate(pid, 30000);
    TK_CHECK(st == 0, "worker exited with %d; log %s", st, f.log);
    tk_summary_required(f.log, LEDGER_PIPELINE, &s);
    rows = ledger_rows(db);
    TK_CHECK_EQ_INT64(s.applied, rows, "summary's applied against the "
                      "ledger's rows");
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
