/*
 * A batch of one partition (no group) whose transaction was answered an
 * error before its COMMIT, where the error is read only with the COMMIT's
 * answer: with the fused built-in upsert and no dedup nothing is read
 * first, so the writes, the COMMIT and the sync go out together. A write
 * answered an error aborts the transaction there; COMMIT then runs
 * nothing. That is a definite answer - nothing committed - not a COMMIT
 * whose outcome is unknown. Taken for one, the partition was marked
 * unconfirmed, and when its stored row had moved forward before the
 * retry (an `exactly offsets reset --force` while the worker runs), the
 * batch that never committed was counted as an earlier commit confirmed:
 * its messages consumed on /metrics and a batch committed, though none
 * of them was.
 *
 * Deterministic, in process (tests/support/inproc_worker.h): one
 * partition X of a pipeline of the fused built-in upsert into `mirror`,
 * served once; a row trigger on `mirror` fails the INSERT of the next
 * batch's IDs with a serialization failure (40001, retried) a given
 * number of times.
 *   held:   one failure; the batch was the flush's first attempt, so it
 *           was held (engine_holds) and settled at the flush's end.
 *   single: two failures; the second attempt, a retry, is never held:
 *           it is synced at once (cycle_run_once).
 * After the failures X's row is moved past the batch, and X is flushed
 * again. Asserted: the failures were rolled back with their COMMIT sent
 * (the test reached its state); the row was followed ("stored offset is
 * ahead; following it"); no "earlier commit confirmed" line; X's
 * consumed and applied counters on its metrics did not grow, nor did the
 * worker's batches committed; X stands at the moved row; none of the
 * skipped messages reached `mirror`.
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

#define TOPIC "single-refused-before-commit"
#define SMALL 3

/* The INSERT into mirror of an ID in [first, first + n) fails with 40001,
 * fails times (a sequence counts them: it is not rolled back). */
static void fail_writes(PGconn *db, const char *name, int first, int n,
                        int fails)
{
    tk_sql(db, "CREATE SEQUENCE %s_seq", name);
    tk_sql(db, "CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $$ "
               "BEGIN IF nextval('%s_seq') <= %d THEN RAISE EXCEPTION "
               "'injected failure %s' USING ERRCODE = '40001'; END IF; "
               "RETURN NEW; END $$",
           name, name, fails, name);
    tk_sql(db, "CREATE TRIGGER %s BEFORE INSERT ON mirror FOR EACH ROW "
               "WHEN (NEW.id BETWEEN %d AND %d) EXECUTE FUNCTION %s()",
           name, first, first + n - 1, name);
}

/* X buffers SMALL messages whose writes fail fails times; after the
 * failures its row moves past them, and X is flushed once more. */
static void refused_case(inproc_worker *iw, PGconn *db, const char *dir,
                         const char *bootstraps, const char *what, int fails,
                         int *next_id, int64_t *counts)
{
    worker *w = &iw->w;
    part *x = iw->x;
    metrics_partition *mx = metrics_part(w->m, TOPIC, x->partition);
    int64_t x_start = x->next_offset;
    uint64_t rolled_back = w->eng.st.batches_rolled_back;
    uint64_t consumed0, applied0, committed0;
    int first = *next_id, i, refused = 0;
    char path[512];

    TK_CHECK(mx != NULL, "no metrics of X");
    fail_writes(db, what, first, SMALL, fails);
    inproc_produce(bootstraps, TOPIC, x->partition, SMALL, first, counts);
    *next_id += SMALL;
    INPROC_RUN_UNTIL(w, x->n_buf == SMALL, 10000, 0);
    TK_CHECK(x->n_buf == SMALL, "%s: X buffers %zu of %d", what, x->n_buf,
             SMALL);

    for (i = 0; i < fails; i++) {
        x->retry_at_ms = 0;
        tk_sleep_ms(40); /* due (max_wait_ms) */
        snprintf(path, sizeof path, "%s/%s-%d.log", dir, what, i);
        inproc_flush_logged(w, path, 20);
        refused += tk_log_lines_with(path, "batch rolled back",
                                     "commit_sent=1");
    }
    TK_CHECK(x->next_offset == x_start &&
                 w->eng.st.batches_rolled_back == rolled_back + fails &&
                 refused == fails,
             "%s: X's batch was not refused %d times with its COMMIT sent "
             "(%d; X at %" PRId64 ", was %" PRId64 "): the test did not "
             "reach the state it is about",
             what, fails, refused, x->next_offset, x_start);

    /* The row moves past X's batch (no transaction holds it now). */
    tk_sql(db, "UPDATE exactly.offsets SET next_offset = next_offset + %d "
               "WHERE pipeline = '" LEDGER_PIPELINE "' AND partition = %d",
           SMALL, (int)x->partition);
    consumed0 = mx->consumed;
    applied0 = mx->applied;
    committed0 = w->m->batches_committed;
    x->retry_at_ms = 0;
    snprintf(path, sizeof path, "%s/%s-after.log", dir, what);
    inproc_flush_logged(w, path, 20);

    TK_CHECK(tk_log_count(path, "earlier commit confirmed") == 0,
             "%s: the batch answered an error before its COMMIT was taken "
             "for an unknown outcome: X's row, moved forward, was counted as "
             "an earlier commit confirmed", what);
    TK_CHECK(tk_log_count(path, "stored offset is ahead; following it") == 1,
             "%s: X did not follow its moved row", what);
    TK_CHECK(mx->consumed == consumed0 && mx->applied == applied0 &&
                 w->m->batches_committed == committed0,
             "%s: %" PRIu64 " consumed, %" PRIu64 " applied, %" PRIu64
             " batches committed counted for a batch that never committed",
             what, mx->consumed - consumed0, mx->applied - applied0,
             w->m->batches_committed - committed0);
    TK_CHECK(x->next_offset == x_start + SMALL,
             "%s: X stands at %" PRId64 ", not at its moved row's %" PRId64,
             what, x->next_offset, x_start + SMALL);
    TK_CHECK(tk_sql_int64(db, "SELECT count(*) FROM mirror WHERE id "
                              "BETWEEN %d AND %d",
                          first, first + SMALL - 1) == 0,
             "%s: X's messages below its moved row were applied", what);
}

int main(void)
{
    static int64_t counts[LEDGER_ACCOUNTS];
    ledger_fixture f;
    inproc_worker iw;
    worker *w = &iw.w;
    PGconn *db;
    int next_id = 2;

    inproc_mirror_start(&iw, &f, &db, "single_refused_before_commit",
                        TOPIC, 1);

    /* X claimed and served once. */
    inproc_produce(f.mock->bootstraps, TOPIC, 0, 1, 1, counts);
    INPROC_RUN_UNTIL(w,
                     inproc_all_serving(w, 1) &&
                         tk_sql_int64(db, "SELECT count(*) FROM mirror") == 1,
                     60000, 1);
    TK_CHECK(inproc_all_serving(w, 1) &&
                 tk_sql_int64(db, "SELECT count(*) FROM mirror") == 1,
             "the first batch was not applied");
    iw.x = w->eng.parts[0];

    refused_case(&iw, db, f.dir, f.mock->bootstraps, "held", 1, &next_id,
                 counts);
    refused_case(&iw, db, f.dir, f.mock->bootstraps, "single", 2, &next_id,
                 counts);

    inproc_worker_stop(&iw);
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
