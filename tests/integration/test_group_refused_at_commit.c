/*
 * A group transaction (several partitions' small batches, one fence
 * statement for all) refused by its fence where the refusal is read only
 * at the COMMIT's sync: with the fused built-in upsert and no dedup no
 * member reads anything, so the fence's error (EX001) is first read with
 * the COMMIT's answer. That is a definite answer - the fence failed, the
 * transaction aborted there, COMMIT was answered ROLLBACK - not a COMMIT
 * whose outcome is unknown. Taken for one, every member was marked
 * unconfirmed, and a member whose stored row had moved forward (an
 * `exactly offsets reset --force` while the worker runs) counted the
 * batch that never committed as an earlier commit confirmed: its
 * messages consumed and applied on /metrics, though none of them was.
 *
 * Deterministic, in process (tests/support/inproc_worker.h): two
 * partitions of a pipeline of the fused built-in upsert, each served
 * once; X and Y then buffer SMALL messages each, both due and small, so
 * one flush runs them as one group; before it, X's stored row is moved
 * past X's buffered messages. Asserted: the group was rolled back with
 * its COMMIT sent (the test reached its state); the log has no "earlier
 * commit confirmed" line; X's consumed and applied counters on its
 * metrics did not grow; none of X's skipped messages reached the target;
 * Y's did, once the worker ran on. The group's rollback line names the
 * partition its fence refused (X: at its batch's end, but not moved by
 * this transaction), by topic and partition.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inproc_worker.h"
#include "ledger_check.h"
#include "metrics.h"
#include "testkit.h"

#define TOPIC "group-refused-at-commit"
#define PARTITIONS 2
#define SMALL 3

int main(void)
{
    static int64_t counts[LEDGER_ACCOUNTS];
    ledger_fixture f;
    inproc_worker iw;
    worker *w = &iw.w;
    metrics_partition *mx;
    uint64_t consumed0, applied0;
    int64_t x_start;
    char flush_log[512];
    char x_named[128];
    PGconn *db;
    int next_id = 1 + PARTITIONS, x_first;

    inproc_mirror_start(&iw, &f, &db, "group_refused_at_commit", TOPIC,
                        PARTITIONS);

    /* Every partition claimed and served once. */
    inproc_produce(f.mock->bootstraps, TOPIC, 0, 1, 1, counts);
    inproc_produce(f.mock->bootstraps, TOPIC, 1, 1, 2, counts);
    INPROC_RUN_UNTIL(w,
                     inproc_all_serving(w, PARTITIONS) &&
                         tk_sql_int64(db, "SELECT count(*) FROM mirror") ==
                             PARTITIONS,
                     60000, 1);
    TK_CHECK(inproc_all_serving(w, PARTITIONS) &&
                 tk_sql_int64(db, "SELECT count(*) FROM mirror") ==
                     PARTITIONS,
             "the first batches were not applied");
    iw.x = w->eng.parts[0];
    iw.y = w->eng.parts[1];
    tk_note("X is partition %d, Y partition %d", (int)iw.x->partition,
            (int)iw.y->partition);

    /* X and Y buffer a small batch each; X's row moves past X's. */
    x_first = next_id;
    x_start = iw.x->next_offset;
    inproc_buffer_xy(&iw, f.mock->bootstraps, TOPIC, SMALL, SMALL, &next_id,
                     counts);
    tk_sql(db, "UPDATE exactly.offsets SET next_offset = next_offset + %d "
               "WHERE pipeline = '" LEDGER_PIPELINE "' AND partition = %d",
           SMALL, (int)iw.x->partition);
    mx = metrics_part(w->m, TOPIC, iw.x->partition);
    TK_CHECK(mx != NULL, "no metrics of X");
    consumed0 = mx->consumed;
    applied0 = mx->applied;
    tk_sleep_ms(40); /* both due (max_wait_ms) */
    snprintf(flush_log, sizeof flush_log, "%s/flush.log", f.dir);
    inproc_flush_logged(w, flush_log, 30);

    TK_CHECK(tk_log_lines_with(flush_log, "group rolled back",
                               "commit_sent=1") >= 1,
             "no group was rolled back with its COMMIT sent: the test did "
             "not reach the state it is about");
    snprintf(x_named, sizeof x_named, "partition " TOPIC " [%d] of",
             (int)iw.x->partition);
    TK_CHECK(tk_log_lines_with(flush_log, "group rolled back", x_named) >= 1,
             "the group's rollback line does not name X's refused row as "
             "'%s' (\"partition <NULL>\": %d line(s))",
             x_named, tk_log_count(flush_log, "partition <NULL>"));
    TK_CHECK(tk_log_count(flush_log, "earlier commit confirmed") == 0,
             "the group's refused COMMIT was taken for an unknown outcome: "
             "X's row, moved forward, was counted as an earlier commit "
             "confirmed");
    TK_CHECK(mx->consumed == consumed0 && mx->applied == applied0,
             "X's counters grew by %" PRIu64 " consumed, %" PRIu64
             " applied for a batch that never committed",
             mx->consumed - consumed0, mx->applied - applied0);
    TK_CHECK(iw.x->next_offset == x_start + SMALL,
             "X stands at %" PRId64 ", not at its moved row's %" PRId64,
             iw.x->next_offset, x_start + SMALL);

    INPROC_RUN_UNTIL(w,
                     worker_all_committed(w) &&
                         tk_sql_int64(db, "SELECT count(*) FROM mirror") >=
                             PARTITIONS + SMALL,
                     20000, 1);
    TK_CHECK(tk_sql_int64(db, "SELECT count(*) FROM mirror WHERE id "
                              "BETWEEN %d AND %d",
                          x_first + SMALL, x_first + 2 * SMALL - 1) == SMALL,
             "Y's batch was not applied");
    TK_CHECK(tk_sql_int64(db, "SELECT count(*) FROM mirror WHERE id "
                              "BETWEEN %d AND %d",
                          x_first, x_first + SMALL - 1) == 0,
             "X's messages below its moved row were applied");

    inproc_worker_stop(&iw);
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
