/*
 * An idle partition follows `exactly offsets reset --force --to-latest`
 * forward past messages it has not taken yet, with no batch refused on
 * the way (worker/follow.c).
 *
 * Deterministic, in process: the worker serves both partitions once and
 * is not polled while SKIPPED messages arrive on X and the operator
 * resets X to its end, so X stays idle (nothing buffered) with its fetch
 * position behind the moved row. One comparison of the idle rows
 * (worker_follow_idle) must move X to the row: its stored offset, no
 * batch fenced. Then one more message arrives: it alone is applied, none
 * of the skipped ones.
 *
 * Then another owner claims the idle partition Y (a higher epoch) and
 * moves its row: the comparison finds Y taken over, not followed, and
 * its log says nothing of following.
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
#include "testkit.h"

#define TOPIC "reset-idle-forward"
#define PARTITIONS 2
#define SKIPPED 10

int main(void)
{
    static int64_t counts[LEDGER_ACCOUNTS], skipped[LEDGER_ACCOUNTS];
    static const inproc_held h = {"reset_idle_forward", TOPIC, PARTITIONS,
                                  10, 20, 0, 0, 5};
    ledger_fixture f;
    inproc_worker iw;
    worker *w = &iw.w;
    char reset_log[600], follow_log[600], part_s[16];
    int64_t end, rows;
    part *x;
    PGconn *db;
    int total, status;

    total = inproc_held_start(&iw, &f, &db, &h, counts);
    x = iw.x;
    end = x->next_offset;
    snprintf(reset_log, sizeof reset_log, "%s/reset.log", f.dir);
    snprintf(part_s, sizeof part_s, "%d", (int)x->partition);

    /* Not counted: the reset skips them. */
    inproc_produce(f.mock->bootstraps, TOPIC, x->partition, SKIPPED, 1,
                   skipped);
    TK_CHECK_EQ_INT64(tk_high_watermark(f.mock->bootstraps, TOPIC,
                                        x->partition),
                      end + SKIPPED, "X's end after the skipped messages");
    status = tk_exactly(reset_log, 60000, "offsets", "reset", "-c", f.config,
                        "--pipeline", LEDGER_PIPELINE, "--topic", TOPIC,
                        "--partition", part_s, "--to-latest", "--force",
                        NULL);
    LEDGER_CHECK_LOG(status == 0, reset_log, "the reset exited %d", status);
    TK_CHECK(x->n_buf == 0 && x->next_offset == end,
             "X is not idle at %" PRId64 " before the comparison (buffered "
             "%zu, next_offset %" PRId64 ")", end, x->n_buf, x->next_offset);

    w->follow_at_ms = 0;
    worker_follow_idle(w);
    TK_CHECK_EQ_INT64(x->next_offset, end + SKIPPED,
                      "X's position after one comparison of the idle rows");
    TK_CHECK_EQ_INT64(w->eng.st.batches_fenced, 0, "batches fenced");

    inproc_produce(f.mock->bootstraps, TOPIC, x->partition, 1, 1, counts);
    total++;
    INPROC_RUN_UNTIL(w, x->next_offset == end + SKIPPED + 1 &&
                            worker_all_committed(w),
                     20000, 1);
    TK_CHECK_EQ_INT64(x->next_offset, end + SKIPPED + 1,
                      "X's stored offset after the message past the reset");
    rows = tk_sql_int64(db, "SELECT count(*) FROM ledger WHERE partition = "
                            "%d AND \"offset\" >= %" PRId64,
                        (int)x->partition, end);
    TK_CHECK_EQ_INT64(rows, 1, "ledger rows of X past the reset");
    TK_CHECK_EQ_INT64(ledger_rows(db), total, "ledger rows");
    TK_CHECK_EQ_INT64(w->eng.st.batches_fenced, 0, "batches fenced");

    /* Y's row, claimed by another owner, moved on. */
    tk_sql(db, "UPDATE exactly.offsets SET owner_epoch = owner_epoch + 1,"
               " next_offset = next_offset + 5 WHERE topic = '" TOPIC "'"
               " AND partition = %d",
           (int)iw.y->partition);
    TK_CHECK(iw.y->n_buf == 0 && !part_state_stopped(iw.y->state),
             "Y is not idle before the takeover is compared");
    snprintf(follow_log, sizeof follow_log, "%s/follow.log", f.dir);
    inproc_follow_logged(w, follow_log, 5);
    TK_CHECK(iw.y->state == PART_S_FENCED,
             "Y, claimed by another owner, is not taken over after a "
             "comparison of the idle rows (state %d)",
             (int)iw.y->state);
    TK_CHECK(tk_log_count(follow_log, "following it") == 0,
             "the log says Y's moved row is followed, though another "
             "owner took Y over");

    inproc_worker_stop(&iw);
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
