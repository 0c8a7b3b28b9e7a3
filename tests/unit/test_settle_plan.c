/*
 * test_settle_plan.c - what the worker decides on a batch's outcome
 * (lib/worker/settle.h): the plan for each code and kind of batch, taken
 * on the error value's fields and the worker's facts alone (the message
 * is never read), and the backoff schedule a retried partition waits by
 * (worker_backoff_ms: capped exponential with full jitter).
 */
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "settle.h"
#include "testkit.h"
#include "worker_internal.h"

enum { F = WORKER_BATCH_FLUSH, I = WORKER_BATCH_IDLE, R = WORKER_BATCH_REVOKE };
enum { MORE = WORKER_NEXT_MORE, WAIT = WORKER_NEXT_WAIT, NO_DB = WORKER_NEXT_NO_DB };

typedef struct plan_case {
    int kind;
    exactly_err code;
    int deferred, conn, buffered, full;
    /* expected */
    int stop, resume, back_off, breaker, pause, next;
} plan_case;

static const plan_case cases[] = {
    /* kind code                   def conn buf full  stop res back brk pause next */
    /* A flush: committed, more or nothing buffered; a paused partition
     * resumes. */
    {F, EXACTLY_OK,                 0, 1, 1, 0,        0, 1, 0, 0, 0, MORE},
    {F, EXACTLY_OK,                 0, 1, 0, 0,        0, 1, 0, 0, 0, WAIT},
    /* Fenced: the position moved back, the partition resumes from it. */
    {F, EXACTLY_EFENCED,            0, 1, 1, 0,        0, 1, 0, 0, 0, WAIT},
    {F, EXACTLY_EFENCED,            0, 0, 1, 0,        0, 1, 0, 0, 0, WAIT},
    /* Retriable with a connection: backoff, a full buffer paused. */
    {F, EXACTLY_ERETRY,             0, 1, 1, 0,        0, 0, 1, 0, 0, WAIT},
    {F, EXACTLY_ERETRY,             0, 1, 1, 1,        0, 0, 1, 0, 1, WAIT},
    {F, EXACTLY_EDATABASE,          0, 1, 1, 1,        0, 0, 1, 0, 1, WAIT},
    /* Retriable and no connection left: the breaker opens (it pauses
     * every partition itself). */
    {F, EXACTLY_ERETRY,             0, 0, 1, 0,        0, 0, 1, 1, 0, NO_DB},
    {F, EXACTLY_ERETRY,             0, 0, 1, 1,        0, 0, 1, 1, 0, NO_DB},
    {F, EXACTLY_EDATABASE,          0, 0, 1, 0,        0, 0, 1, 1, 0, NO_DB},
    /* The handler stopped the worker, or halted the partition. */
    {F, EXACTLY_EFATAL,             0, 1, 1, 0,        1, 0, 0, 0, 0, WAIT},
    {F, EXACTLY_EFATAL,             0, 0, 1, 1,        1, 0, 0, 0, 0, WAIT},
    {F, EXACTLY_EHANDLER,           0, 1, 1, 1,        0, 0, 0, 0, 0, WAIT},
    /* Not retriable: no backoff, no breaker. */
    {F, EXACTLY_ENOMEM,             0, 0, 1, 1,        0, 0, 0, 0, 0, WAIT},
    /* A rebalance arrived during the flush: the stop and nothing else. */
    {F, EXACTLY_OK,                 1, 1, 1, 0,        0, 0, 0, 0, 0, MORE},
    {F, EXACTLY_ERETRY,             1, 0, 1, 1,        0, 0, 0, 0, 0, WAIT},
    {F, EXACTLY_EFENCED,            1, 1, 1, 0,        0, 0, 0, 0, 0, WAIT},
    {F, EXACTLY_EFATAL,             1, 1, 1, 0,        1, 0, 0, 0, 0, WAIT},
    /* The idle advance and the flush on revoke: no backoff, no breaker,
     * no resumption; a revoke goes on while batches commit. */
    {I, EXACTLY_OK,                 0, 1, 0, 0,        0, 0, 0, 0, 0, WAIT},
    {I, EXACTLY_ERETRY,             0, 0, 0, 0,        0, 0, 0, 0, 0, WAIT},
    {I, EXACTLY_EFENCED,            0, 1, 0, 0,        0, 0, 0, 0, 0, WAIT},
    {I, EXACTLY_EFATAL,             0, 1, 0, 0,        1, 0, 0, 0, 0, WAIT},
    {R, EXACTLY_OK,                 0, 1, 1, 0,        0, 0, 0, 0, 0, MORE},
    {R, EXACTLY_OK,                 0, 1, 0, 0,        0, 0, 0, 0, 0, WAIT},
    {R, EXACTLY_ERETRY,             0, 0, 1, 1,        0, 0, 0, 0, 0, WAIT},
    {R, EXACTLY_EDATABASE,          0, 1, 1, 1,        0, 0, 0, 0, 0, WAIT},
    {R, EXACTLY_EFENCED,            0, 1, 1, 0,        0, 0, 0, 0, 0, WAIT},
    {R, EXACTLY_EFATAL,             0, 1, 1, 0,        1, 0, 0, 0, 0, WAIT},
};

static void check_plans(void)
{
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const plan_case *c = &cases[i];
        worker_settle_facts f;
        exactly_error err;
        worker_plan p;

        f.kind = (worker_batch_kind)c->kind;
        f.deferred = c->deferred;
        f.conn = c->conn;
        f.buffered = c->buffered;
        f.buffer_full = c->full;
        exactly_error_clear(&err);
        if (c->code != EXACTLY_OK)
            exactly_error_note(&err, "08006", "server closed the connection");
        exactly_error_set_code(&err, c->code);
        p = worker_settle_plan(&err, &f);
        TK_CHECK(p.stop == c->stop && p.resume == c->resume &&
                     p.back_off == c->back_off &&
                     p.open_breaker == c->breaker && p.pause == c->pause &&
                     (int)p.next == c->next,
                 "case %zu (kind %d, %s): got stop %d resume %d back_off %d "
                 "breaker %d pause %d next %d",
                 i, c->kind, exactly_err_name(c->code), p.stop, p.resume,
                 p.back_off, p.open_breaker, p.pause, (int)p.next);
    }
    tk_note("%zu plans checked", sizeof(cases) / sizeof(cases[0]));
}

/* The text decides nothing: the same fields with another message, or
 * none, give the same plan. */
static void check_text_ignored(void)
{
    static const char *msgs[] = {NULL, "deadlock detected",
                                 "terminating connection due to administrator command",
                                 "fatal", "fenced"};
    worker_settle_facts f = {WORKER_BATCH_FLUSH, 0, 0, 1, 1};
    exactly_error a, b;
    worker_plan pa, pb;
    size_t i;

    exactly_error_clear(&a);
    exactly_error_set_code(&a, EXACTLY_ERETRY);
    pa = worker_settle_plan(&a, &f);
    for (i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
        exactly_error_clear(&b);
        exactly_error_note(&b, "40P01", msgs[i]);
        exactly_error_set_code(&b, EXACTLY_ERETRY);
        pb = worker_settle_plan(&b, &f);
        TK_CHECK(memcmp(&pa, &pb, sizeof(pa)) == 0,
                 "the plan changed with the message %s",
                 msgs[i] ? msgs[i] : "(none)");
    }
}

/* After `attempts` failures: a wait in [cap/2, cap], cap = 100 ms doubled
 * per failure up to 30 s. */
static void check_backoff(void)
{
    long long cap = 100;
    int attempts, k;

    for (attempts = 0; attempts <= 40; attempts++) {
        long long lo = cap / 2, hi = cap;
        long long min = -1, max = -1;

        for (k = 0; k < 2000; k++) {
            long long ms = worker_backoff_ms(attempts);
            TK_CHECK(ms >= lo && ms <= hi,
                     "attempts %d: %lld ms outside [%lld, %lld]", attempts, ms,
                     lo, hi);
            if (min < 0 || ms < min)
                min = ms;
            if (ms > max)
                max = ms;
        }
        /* Full jitter: the draws spread over the range, not one value. */
        TK_CHECK(max - min >= (hi - lo) / 2,
                 "attempts %d: draws within [%lld, %lld] only", attempts, min,
                 max);
        cap = cap * 2 > 30000 ? 30000 : cap * 2;
    }
}

int main(void)
{
    check_plans();
    check_text_ignored();
    check_backoff();
    return 0;
}
