/*
 * A held batch (engine.h, pipelining) that fails after another
 * partition's batch was sent behind it costs that batch one rolled-back
 * attempt, never the connection. Settling the failed held batch rolls it
 * back (engine_rollback) after the batch behind it has already left
 * libpq's pipeline mode (exactly_txn_finish, after its own commit or
 * rollback): that ROLLBACK must work whatever the connection's pipeline
 * state. Were it sent as if in pipeline mode, its sync could not be sent,
 * the connection would be ended, and the failed batch's report, retriable
 * with no connection left, would open the circuit breaker: every
 * partition paused and every position read again, for one failed batch.
 *
 * Deterministic, in process, like test_held_own_settle: two partitions,
 * each served once, X the one a flush visits first, Y the other, both
 * buffered full and due at once, so one pass holds X's batch and sends
 * Y's behind it.
 *   Case 1: X's batch fails at its COMMIT (a deferred trigger raises a
 *     serialization failure, 40001, once); Y's, behind it, commits.
 *   Case 2: X's batch fails before its COMMIT (fault.h, commit_segment: a
 *     failing statement queued before it, armed for X's batch alone); the
 *     server refuses Y's whole transaction (25P02), which is rolled back
 *     and sent again once X's is settled. Only in the build with fault
 *     injection; without it the case is left out, and says so.
 * Asserted after that one flush, in each case: the worker holds the same
 * connection (the same backend), the breaker did not open and did not log
 * "database unavailable; pausing all partitions". Afterwards every message
 * is in the ledger exactly once.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "inproc_worker.h"
#include "ledger_check.h"
#include "log.h"
#include "testkit.h"

#define TOPIC "held-failed-behind"
#define PARTITIONS 2
#define BATCH 10
#define BREAKER_LINE "database unavailable; pausing all partitions"

/* Lines of the breaker opening, seen by the log's tap. */
static _Atomic int breaker_lines;

static void tap(void *arg, exactly_log_level level, const char *line,
                size_t len)
{
    (void)arg;
    (void)level;
    (void)len;
    if (strstr(line, BREAKER_LINE))
        breaker_lines++;
}

/* Makes the COMMIT of the batch holding partition's offset fail once with
 * sqlstate (a deferred trigger on the ledger). */
static void fail_once(PGconn *db, const char *name, int partition,
                      int64_t offset, const char *sqlstate)
{
    tk_sql(db, "CREATE SEQUENCE %s_seq", name);
    tk_sql(db, "CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $$ "
               "BEGIN IF nextval('%s_seq') = 1 THEN RAISE EXCEPTION "
               "'injected failure %s' USING ERRCODE = '%s'; END IF; "
               "RETURN NEW; END $$",
           name, name, sqlstate, sqlstate);
    tk_sql(db, "CREATE CONSTRAINT TRIGGER %s AFTER INSERT ON ledger "
               "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN "
               "(NEW.partition = %d AND NEW.\"offset\" = %" PRId64 ") "
               "EXECUTE FUNCTION %s()",
           name, partition, offset, name);
}

/* Buffers a full batch on X and on Y, both due (with arm, arms the
 * fault for the first commit from there on, X's), flushes once and checks
 * that the connection and the partitions' fetching outlived X's failure. */
static void failed_behind(inproc_worker *iw, const char *bootstraps,
                          const char *what, int arm, int *next_id,
                          int64_t *counts)
{
    worker *w = &iw->w;
    int64_t x_start = iw->x->next_offset, y_start = iw->y->next_offset;
    uint64_t rolled_back = w->eng.st.batches_rolled_back;
    int pid;

    inproc_buffer_xy(iw, bootstraps, TOPIC, BATCH, BATCH, next_id, counts);
    iw->x->retry_at_ms = iw->y->retry_at_ms = 0;
    TK_CHECK(w->eng.conn != NULL, "the worker holds no connection");
    pid = PQbackendPID(w->eng.conn);
    breaker_lines = 0;
#ifdef EXACTLY_FAULT_INJECTION
    if (arm) {
        setenv("EXACTLY_FAULTS", "commit_segment:1", 1);
        exactly_fault_reload();
    }
#else
    (void)arm;
#endif
    (void)worker_flush_ready(w, 0);
    TK_CHECK(iw->x->next_offset == x_start &&
                 w->eng.st.batches_rolled_back > rolled_back,
             "%s: X's batch was not rolled back: the test did not reach the "
             "state it is about", what);
    TK_CHECK(w->eng.conn != NULL && PQbackendPID(w->eng.conn) == pid,
             "%s: the flush ended the connection when it settled X's failed "
             "held batch (%s)", what,
             w->eng.conn ? "another backend now" : "none left");
    TK_CHECK(w->db_down_since_ms == 0 && breaker_lines == 0,
             "%s: X's failed held batch opened the circuit breaker "
             "(%d line(s) \"" BREAKER_LINE "\")", what, (int)breaker_lines);
    TK_CHECK(iw->y->next_offset > y_start,
             "%s: Y's batch, sent behind X's, did not commit during the "
             "flush", what);
}

int main(void)
{
    static int64_t counts[LEDGER_ACCOUNTS];
    static const inproc_held h = {"held_failed_behind", TOPIC, PARTITIONS,
                                  BATCH, 10000, 0, 1, 1};
    ledger_fixture f;
    inproc_worker iw;
    worker *w = &iw.w;
    PGconn *db;
    int total, next_id;

    exactly_log_set_tap(tap, NULL);
    total = inproc_held_start(&iw, &f, &db, &h, counts);
    next_id = 1 + total;

    /* Case 1: X fails at COMMIT; Y, behind it, commits. */
    fail_once(db, "at_commit", iw.x->partition, iw.x->next_offset, "40001");
    failed_behind(&iw, f.mock->bootstraps, "at_commit", 0, &next_id, counts);
    total += 2 * BATCH;
    INPROC_RUN_UNTIL(w, ledger_rows(db) >= total && worker_all_committed(w),
                     20000, 1);
    TK_CHECK(ledger_rows(db) == total, "%" PRId64 " rows of %d",
             ledger_rows(db), total);

    /* Case 2: X fails before COMMIT; Y, behind it, is refused whole. */
#ifdef EXACTLY_FAULT_INJECTION
    failed_behind(&iw, f.mock->bootstraps, "in_txn", 1, &next_id, counts);
    total += 2 * BATCH;
    unsetenv("EXACTLY_FAULTS");
    exactly_fault_reload();
#else
    tk_note("case 2 left out: it needs a build with "
            "-DEXACTLY_FAULT_INJECTION=ON");
#endif

    inproc_held_finish(&iw, &f, db, &h, total, counts);
    exactly_log_set_tap(NULL, NULL);
    return 0;
}
