/*
 * test_supervisor_slots.c - the supervisor's restart rules on plain slots
 * (lib/process/supervisor_child.c): how many fast failures make a crash
 * loop (sup_crash_loop_after), and when a pipeline is lost
 * (sup_pipeline_lost): only while every worker of it is in a crash loop,
 * a slot whose restarted process outlived the fast-failure window no
 * longer being in one; and that an exit 0 is an end only in a stop or
 * with --exit-idle (sup_reaped), quick ones in a row backing off as
 * crashes do; and what /readyz makes of the slots
 * (metrics_ready): a slot waiting for its restart is missing, one the
 * supervisor finished on purpose no longer counts; and that the status
 * says how long a slot waits for its restart.
 */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "http_internal.h"
#include "metrics_render.h"
#include "supervisor_internal.h"
#include "testkit.h"
#include "util/metrics.h"

/* A wait status: the process died of SIGABRT. */
#define DIED_OF_ABRT 6

/* Starts slot s's process at now - lived_ms (no fork: a made-up pid). */
static void run_for(slot *s, long long lived_ms)
{
    s->pid = 4242;
    s->started_ms = sup_now_ms() - lived_ms;
}

/* n deaths of slot s, each 100 ms after its start: fast failures. */
static void die_fast(slot *s, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        run_for(s, 100);
        TK_CHECK_EQ_INT64(sup_reaped(s, DIED_OF_ABRT, 0), 0,
                          "sup_reaped of a crash");
    }
}

static void test_threshold(void)
{
    cfg_pipeline p;
    cfg_relay r;
    slot s;

    memset(&p, 0, sizeof p);
    memset(&r, 0, sizeof r);
    memset(&s, 0, sizeof s);
    p.name = "p";
    s.p = &p;
    p.max_crashes = 3;
    TK_CHECK_EQ_INT64(sup_crash_loop_after(&s), 8,
                      "fast failures for a worker's crash loop, max_crashes 3");
    p.max_crashes = 1;
    TK_CHECK_EQ_INT64(sup_crash_loop_after(&s), CRASH_LOOP_AFTER,
                      "fast failures for a worker's crash loop, max_crashes 1");
    s.p = NULL;
    s.r = &r;
    TK_CHECK_EQ_INT64(sup_crash_loop_after(&s), CRASH_LOOP_AFTER,
                      "fast failures for a relay's crash loop");

    /* The loop begins at the threshold, not before. */
    memset(&s, 0, sizeof s);
    p.max_crashes = 3;
    s.p = &p;
    die_fast(&s, 7);
    TK_CHECK(!s.crash_loop, "a crash loop after 7 fast failures "
             "(max_crashes 3 needs 8)");
    die_fast(&s, 1);
    TK_CHECK(s.crash_loop, "no crash loop after 8 fast failures");
}

/* Worker 0 is in a crash loop, then recovers: its restarted process runs
 * past the fast-failure window. Worker 1's crash loop later must not lose
 * the pipeline. */
static void test_recovered(void)
{
    cfg_pipeline p;
    metrics_slot m;
    slot s[2];

    memset(&p, 0, sizeof p);
    memset(s, 0, sizeof s);
    memset(&m, 0, sizeof m);
    p.name = "p";
    p.max_crashes = 3;
    s[0].p = s[1].p = &p;
    s[1].index = 1;

    die_fast(&s[0], 8);
    TK_CHECK(s[0].crash_loop, "worker 0 not in a crash loop");
    TK_CHECK_EQ_INT64(sup_pipeline_lost(s, 2), 0,
                      "pipeline lost with worker 1 fine");

    /* Still within the window: the slot stays in its loop. */
    run_for(&s[0], 100);
    die_fast(&s[1], 8);
    s[0].pid = 4242; /* die_fast left worker 0 running */
    TK_CHECK_EQ_INT64(sup_pipeline_lost(s, 2), 1,
                      "pipeline lost while both are in a crash loop");

    /* Worker 0 ran past the window without committing: recovered. */
    memset(&s[1], 0, sizeof s[1]);
    s[1].p = &p;
    s[1].index = 1;
    run_for(&s[0], PROGRESS_WINDOW_MS + 1000);
    die_fast(&s[1], 8);
    TK_CHECK(s[1].crash_loop, "worker 1 not in a crash loop");
    TK_CHECK_EQ_INT64(sup_pipeline_lost(s, 2), 0,
                      "pipeline lost although worker 0 has run for longer "
                      "than the fast-failure window since its crash loop");
    TK_CHECK(!s[0].crash_loop, "worker 0 still marked as in a crash loop");

    /* A slot that committed and outlived FAST_FAILURE_MS recovered too. */
    memset(&s[0], 0, sizeof s[0]);
    s[0].p = &p;
    die_fast(&s[0], 8);
    s[0].m = &m;
    run_for(&s[0], FAST_FAILURE_MS + 1000);
    s[0].committed_at_start = 0;
    m.batches_committed = 3;
    TK_CHECK_EQ_INT64(sup_pipeline_lost(s, 2), 0,
                      "pipeline lost although worker 0 committed and ran "
                      "past FAST_FAILURE_MS");
    TK_CHECK(!s[0].crash_loop, "worker 0 (committed) still in a crash loop");
}

/* The wait before slot s's next start, in ms (within the time taken). */
static long long restart_wait(const slot *s)
{
    return s->restart_at_ms - sup_now_ms();
}

/* An exit 0: while run goes on without --exit-idle (exit0_ends 0) the
 * slot starts again, its fast failures and crash loop untouched; in a
 * stop or with --exit-idle it is done. Quick exits 0 in a row (each
 * within FAST_FAILURE_MS of the start) back off as crashes do, 0.5 s
 * doubling to RESTART_MAX_MS, and never make a crash loop; a process
 * that ran longer starts the backoff anew. */
static void test_clean_exit(void)
{
    cfg_pipeline p;
    long long before, wait;
    slot s;
    int i;

    memset(&p, 0, sizeof p);
    memset(&s, 0, sizeof s);
    p.name = "p";
    p.max_crashes = 1;
    s.p = &p;
    die_fast(&s, 2);
    run_for(&s, 100);
    before = sup_now_ms();
    TK_CHECK_EQ_INT64(sup_reaped(&s, 0, 0), 0, "sup_reaped of an exit 0");
    TK_CHECK(!s.done, "an exit 0 while run goes on made the slot done");
    TK_CHECK_EQ_INT64(s.fast_failures, 2, "fast failures after an exit 0");
    TK_CHECK(s.restart_at_ms >= before + RESTART_MIN_MS &&
                 s.restart_at_ms <= sup_now_ms() + RESTART_MIN_MS,
             "a first exit 0 restarts after RESTART_MIN_MS");
    /* The second quick exit 0 in a row waits twice as long, and so on. */
    run_for(&s, 100);
    TK_CHECK_EQ_INT64(sup_reaped(&s, 0, 0), 0, "sup_reaped of an exit 0");
    wait = restart_wait(&s);
    TK_CHECK(wait > RESTART_MIN_MS + 100 && wait <= 2 * RESTART_MIN_MS,
             "a second quick exit 0 in a row restarts after %lld ms, not "
             "after a backoff of %d ms", wait, 2 * RESTART_MIN_MS);
    for (i = 0; i < 2 * CRASH_LOOP_AFTER + 8; i++) {
        run_for(&s, 100);
        TK_CHECK_EQ_INT64(sup_reaped(&s, 0, 0), 0, "sup_reaped of an exit 0");
    }
    wait = restart_wait(&s);
    TK_CHECK(wait > RESTART_MAX_MS - 1000 && wait <= RESTART_MAX_MS,
             "after many quick exits 0 the restart waits %lld ms, not the "
             "cap of %d ms", wait, RESTART_MAX_MS);
    TK_CHECK(!s.crash_loop, "quick exits 0 made a crash loop");
    TK_CHECK_EQ_INT64(s.fast_failures, 2, "fast failures after exits 0");
    /* A process that ran past FAST_FAILURE_MS: the backoff starts anew. */
    run_for(&s, FAST_FAILURE_MS + 1000);
    TK_CHECK_EQ_INT64(sup_reaped(&s, 0, 0), 0, "sup_reaped of an exit 0");
    wait = restart_wait(&s);
    TK_CHECK(wait > 0 && wait <= RESTART_MIN_MS,
             "an exit 0 after a long run restarts after %lld ms, not "
             "RESTART_MIN_MS", wait);
    run_for(&s, 100);
    TK_CHECK_EQ_INT64(sup_reaped(&s, 0, 1), 0, "sup_reaped of a last exit 0");
    TK_CHECK(s.done, "an exit 0 in a stop (or with --exit-idle) did not "
             "make the slot done");
}

/* A long run ends either count of quick deaths, whichever way it ends:
 * quick exits 0, then a run of an hour that crashes, then a quick exit 0
 * restarts after RESTART_MIN_MS (not after the backoff of the exits 0
 * before the long run); fast failures, then a long run that exits 0, then
 * a fast failure counts one fast failure, not a crash loop's worth. */
static void test_long_run_resets(void)
{
    cfg_pipeline p;
    long long wait;
    slot s;
    int i;

    memset(&p, 0, sizeof p);
    memset(&s, 0, sizeof s);
    p.name = "p";
    s.p = &p;
    for (i = 0; i < 6; i++) {
        run_for(&s, 100);
        TK_CHECK_EQ_INT64(sup_reaped(&s, 0, 0), 0, "sup_reaped of an exit 0");
    }
    run_for(&s, 3600 * 1000);
    TK_CHECK_EQ_INT64(sup_reaped(&s, DIED_OF_ABRT, 0), 0,
                      "sup_reaped of a crash");
    run_for(&s, 100);
    TK_CHECK_EQ_INT64(sup_reaped(&s, 0, 0), 0, "sup_reaped of an exit 0");
    wait = restart_wait(&s);
    TK_CHECK(wait > 0 && wait <= RESTART_MIN_MS,
             "a quick exit 0 after a run of an hour (that crashed) restarts "
             "after %lld ms, the backoff of the quick exits 0 before that "
             "run, not RESTART_MIN_MS", wait);

    memset(&s, 0, sizeof s);
    s.p = &p;
    die_fast(&s, 2);
    run_for(&s, 3600 * 1000);
    TK_CHECK_EQ_INT64(sup_reaped(&s, 0, 0), 0, "sup_reaped of an exit 0");
    run_for(&s, 100);
    TK_CHECK_EQ_INT64(sup_reaped(&s, DIED_OF_ABRT, 0), 0,
                      "sup_reaped of a crash");
    TK_CHECK_EQ_INT64(s.fast_failures, 1,
                      "fast failures of a crash after a run of an hour that "
                      "exited 0, after 2 fast failures before it");
}

/* A worker that keeps exiting 0 at once, as the status shows it: not up,
 * not ready (so /readyz says 503), and waiting for its restart, with the
 * seconds left before it (restart_in_s); a running one has none. */
static void test_status_waiting(void)
{
    cfg_pipeline p;
    metrics_slot *m = metrics_map(2);
    exactly_http h;
    char *names[] = {"p"};
    json_t *st, *workers, *w0, *w1, *in;
    slot s[2];
    int i;

    TK_CHECK(m != NULL, "metrics_map");
    memset(&p, 0, sizeof p);
    memset(s, 0, sizeof s);
    memset(&h, 0, sizeof h);
    p.name = "p";
    p.max_crashes = 1;
    for (i = 0; i < 2; i++) {
        s[i].p = &p;
        s[i].index = i;
        s[i].m = &m[i];
        snprintf(m[i].pipeline, sizeof m[i].pipeline, "p");
        m[i].worker = i;
        m[i].meant = 1;
        m[i].up = 1;
        m[i].ready = 1;
        m[i].pid = 4242;
        run_for(&s[i], 100);
    }
    for (i = 0; i < 4; i++) {
        run_for(&s[1], 100);
        TK_CHECK_EQ_INT64(sup_reaped(&s[1], 0, 0), 0, "sup_reaped of exit 0");
    }
    TK_CHECK(!metrics_ready(m, 2), "ready while a worker that keeps "
             "exiting 0 waits for its restart");
    h.slots = m;
    h.n = 2;
    h.pipelines = names;
    h.n_pipelines = 1;
    pthread_mutex_init(&h.mu, NULL);
    st = http_status_json(&h);
    workers = json_object_get(json_array_get(json_object_get(st, "pipelines"),
                                             0), "workers");
    w0 = json_array_get(workers, 0);
    w1 = json_array_get(workers, 1);
    TK_CHECK(w0 && w1, "the status lists two workers");
    TK_CHECK(json_is_false(json_object_get(w1, "up")),
             "the status shows the waiting worker as up");
    in = json_object_get(w1, "restart_in_s");
    TK_CHECK(json_is_number(in) && json_number_value(in) > 2.0 &&
                 json_number_value(in) <= 4.0,
             "the status does not say the worker waits about 4 s for its "
             "restart (restart_in_s)");
    TK_CHECK(json_is_null(json_object_get(w0, "restart_in_s")),
             "a running worker has a restart_in_s");
    json_decref(st);
    pthread_mutex_destroy(&h.mu);
    metrics_unmap(m, 2);
}

/* Two workers of a pipeline, both meant to run (as the supervisor fills
 * them), up and ready: ready. One crashes: not ready while it waits for
 * its restart, though the other is. It runs again, then finishes for good
 * (exit 0 with --exit-idle): ready again with the other alone, and not
 * ready once none is left to run. */
static void test_ready(void)
{
    cfg_pipeline p;
    metrics_slot *m = metrics_map(2);
    slot s[2];
    int i;

    TK_CHECK(m != NULL, "metrics_map");
    memset(&p, 0, sizeof p);
    memset(s, 0, sizeof s);
    p.name = "p";
    p.max_crashes = 1;
    for (i = 0; i < 2; i++) {
        s[i].p = &p;
        s[i].index = i;
        s[i].m = &m[i];
        m[i].meant = 1;
        m[i].up = 1;
        m[i].ready = 1;
        run_for(&s[i], 100);
    }
    TK_CHECK(metrics_ready(m, 2), "two workers up and ready: not ready");
    TK_CHECK_EQ_INT64(sup_reaped(&s[1], DIED_OF_ABRT, 0), 0, "sup_reaped");
    TK_CHECK(!s[1].done && m[1].meant, "a crashed worker is no longer "
             "meant to run");
    TK_CHECK(!metrics_ready(m, 2), "ready while a worker waits for its "
             "restart");
    run_for(&s[1], 100);
    m[1].up = 1;
    m[1].ready = 1;
    TK_CHECK(metrics_ready(m, 2), "not ready once the worker is back");
    TK_CHECK_EQ_INT64(sup_reaped(&s[1], 0, 1), 0, "sup_reaped");
    TK_CHECK(s[1].done && !m[1].meant, "a finished worker is still meant "
             "to run");
    TK_CHECK(metrics_ready(m, 2), "a finished worker keeps /readyz at 503");
    TK_CHECK_EQ_INT64(sup_reaped(&s[0], 0, 1), 0, "sup_reaped");
    TK_CHECK(!metrics_ready(m, 2), "ready with no worker left to run");
    metrics_unmap(m, 2);
}

int main(void)
{
    test_threshold();
    test_recovered();
    test_clean_exit();
    test_long_run_resets();
    test_ready();
    test_status_waiting();
    printf("supervisor slot tests passed\n");
    return 0;
}
