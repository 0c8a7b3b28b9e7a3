/*
 * The connection dies while the worker waits on a held batch's answers
 * (engine.h, pipelining), inside a flush that reaches the held partition
 * again (cycle_run_once settles it first). The held batch's report opens
 * the circuit breaker: every partition paused, the next connection
 * attempt at the reconnect backoff's pace (worker_db, which every
 * reconnect goes through, the breaker's own included). The flush goes on
 * to the next partition due, whose run asks for the connection again: it
 * must not get one before that backoff (against a server that does not
 * answer, a connect timeout spent inside the flush), nor apply its batch
 * while every partition is paused.
 *
 * Deterministic, in process, like test_held_own_settle: X's batch is held
 * and Y is full and due when the flush makes its second pass, which
 * reaches X first. X's held COMMIT is slow (a deferred trigger raises a
 * flag, then sleeps); the test's thread sees the flag and terminates the
 * worker's backend. Asserted: the breaker opened during the flush (the
 * test reached its state); once the flush is over the worker holds no
 * connection and Y's batch is not applied; afterwards the breaker closes
 * and every message is in the ledger exactly once. (With the backoff
 * after a lost connection set to zero, the second check fails.)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "inproc_worker.h"
#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "held-breaker"
#define PARTITIONS 2
#define BATCH 10
#define STALL_MS 50
/* Y is due this long after it is set, well inside X's STALL_MS. */
#define Y_DUE_MS 20

typedef struct killer_arg {
    const char *conninfo;
    int backend_pid;
} killer_arg;

/* Waits until X's held COMMIT is running (the trigger's flag), then
 * terminates the worker's backend. */
static void *kill_during_commit(void *p)
{
    killer_arg *a = p;
    PGconn *db = tk_pg_connect(a->conninfo);

    inproc_wait_commit_running(db);
    TK_CHECK(tk_sql_int64(db, "SELECT pg_terminate_backend(%d)::int",
                          a->backend_pid) == 1,
             "the worker's backend %d was not terminated", a->backend_pid);
    PQfinish(db);
    return NULL;
}

int main(void)
{
    static int64_t counts[LEDGER_ACCOUNTS];
    static const inproc_held h = {"held_breaker", TOPIC, PARTITIONS, BATCH,
                                  10000, STALL_MS, 1, 1};
    ledger_fixture f;
    inproc_worker iw;
    worker *w = &iw.w;
    part *x, *y;
    PGconn *db;
    pthread_t th;
    killer_arg ka;
    int64_t y_rows;
    int total, next_id;

    total = inproc_held_start(&iw, &f, &db, &h, counts);
    next_id = 1 + total;
    x = iw.x;
    y = iw.y;

    /* X's next batch, once: its COMMIT raises the flag, then sleeps. */
    inproc_slow_commit(db, x->partition, x->next_offset, 5);
    inproc_buffer_xy(&iw, f.mock->bootstraps, TOPIC, BATCH, BATCH, &next_id,
                     counts);
    total += 2 * BATCH;

    TK_CHECK(w->eng.conn != NULL, "the worker holds no connection");
    ka = (killer_arg){f.conninfo, PQbackendPID(w->eng.conn)};
    TK_CHECK(pthread_create(&th, NULL, kill_during_commit, &ka) == 0,
             "pthread_create");
    y_rows = tk_sql_int64(db, "SELECT count(*) FROM ledger WHERE "
                              "partition = %d", (int)y->partition);
    y->retry_at_ms = exactly_now_ms() + Y_DUE_MS;
    (void)worker_flush_ready(w, 0);
    TK_CHECK(pthread_join(th, NULL) == 0, "pthread_join");

    TK_CHECK(w->db_down_since_ms != 0,
             "the breaker did not open when the connection died under X's "
             "held batch: the test did not reach the state it is about");
    TK_CHECK(w->eng.conn == NULL,
             "the flush opened a new connection right after the breaker "
             "opened, for the next partition's run, before the reconnect "
             "backoff");
    TK_CHECK(tk_sql_int64(db, "SELECT count(*) FROM ledger WHERE "
                              "partition = %d", (int)y->partition) == y_rows,
             "Y's batch was applied while the breaker had every partition "
             "paused");

    inproc_held_finish(&iw, &f, db, &h, total, counts);
    return 0;
}
