/*
 * A partition's backlog and its tail (lib/worker/backlog.h), as the
 * worker's loop sees batches run one after another: a backlog is a full
 * batch with another one behind it; its last, partial batch runs at once
 * once the buffer reaches the end of the log. A partial batch that runs
 * while more of the log is still to come (it waited max_wait_ms for a
 * slow fetch, or another partition's small batch took it along) does not
 * end the backlog: the log's real end is still its tail.
 */
#include "backlog.h"
#include "testkit.h"

#define MAX 1000

/* Runs a batch of n of n_buf buffered messages with beyond more in the
 * log and returns the flag after it. */
static int run(int backlog, size_t n, size_t n_buf, int64_t beyond)
{
    return worker_backlog_after(backlog, n, MAX, n_buf, beyond);
}

int main(void)
{
    int b;

    /* 2,500 waiting: full, full, then the 500 left are the tail. */
    b = run(0, MAX, MAX, 1500);
    TK_CHECK(b, "a full batch with 1,500 behind it is no backlog");
    b = run(b, MAX, MAX, 500);
    TK_CHECK(b, "the backlog ended with 500 still behind a full batch");
    TK_CHECK(worker_backlog_tail(b, 500, 0),
             "the 500 left at the end of the log are not the tail");
    TK_CHECK(!worker_backlog_tail(b, 500, 3),
             "a tail while 3 more are in the log");
    b = run(b, 500, 500, 0);
    TK_CHECK(!b, "the backlog goes on after its tail ran");

    /* A live stream: a full batch with 5 behind it is no backlog; its
     * next small batch waits to fill. */
    b = run(0, MAX, 1005, 0);
    TK_CHECK(!b, "one full batch and 5 behind it counted as a backlog");
    TK_CHECK(!worker_backlog_tail(b, 5, 0), "a live stream's 5 taken as a tail");

    /* The log's end not known: no tail. */
    TK_CHECK(!worker_backlog_tail(1, 500, -1), "a tail of a log not known");

    /* A partial batch of 915 ran (it waited max_wait_ms for a slow fetch)
     * with 1,187 more in the log: a full batch follows with 187 behind,
     * and those 187, at the end of the log, are the backlog's tail. */
    b = run(0, MAX, MAX, 70000);
    b = run(b, 915, 915, 1187);
    TK_CHECK(b, "a partial batch with 1,187 more in the log ended the "
                "backlog: the backlog's last 187 would wait max_wait_ms");
    b = run(b, MAX, MAX, 187);
    TK_CHECK(worker_backlog_tail(b, 187, 0),
             "the last 187 of a backlog are not its tail after a partial "
             "batch ran with more in the log");

    /* Taken along (90 buffered) into another partition's transaction
     * while 80 more are in the log: the backlog goes on. */
    b = run(1, 90, 90, 80);
    TK_CHECK(b, "a small batch taken along with 80 more in the log ended "
                "the backlog");

    /* A partial batch that takes all the log holds ends it, as does one
     * whose log's end is not known. */
    TK_CHECK(!run(1, 300, 300, 0), "the backlog goes on past its end");
    TK_CHECK(!run(1, 300, 300, -1),
             "the backlog goes on past a partial batch, the log not known");
    return 0;
}
