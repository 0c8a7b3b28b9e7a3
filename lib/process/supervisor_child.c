/*
 * supervisor_child.c - the supervisor's children: forking a worker or a
 * relay into its slot (its signals, its group.instance.id, the
 * descriptors it must not inherit, death with its parent), reading how it
 * ended, and the restart rules (capped exponential backoff, fast failures
 * counted into a crash loop, a pipeline lost when all its workers are in
 * one).
 */
#include "supervisor.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "relay.h"
#include "supervisor_internal.h"
#include "util/host_id.h"
#include "util/metrics.h"
#include "worker.h"

static volatile sig_atomic_t w_stop;
static volatile sig_atomic_t w_reopen;
static volatile sig_atomic_t w_outside_stops;
static pid_t w_parent; /* the supervisor, set before the handlers */

/* A child's SIGTERM or SIGINT asks it to stop cleanly (final commit, its
 * rows released). The supervisor's own stop signal never escalates: a
 * Ctrl-C (SIGINT to the whole process group) or a `pkill exactly`
 * (SIGTERM to every process) reaches a child once from outside and once
 * more from the supervisor's drain, which must not turn the first into a
 * kill; the supervisor escalates by itself (SIGKILL at its deadline or on
 * a second signal of its own). A second stop signal from anyone else ends
 * the child at once (exit 1). */
static void worker_on_stop(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)ctx;
    w_stop = 1;
    if (si && si->si_code == SI_USER && si->si_pid == w_parent)
        return;
    if (w_outside_stops)
        _exit(1);
    w_outside_stops = 1;
}

static void worker_on_hup(int sig) { (void)sig; w_reopen = 1; }

void sup_handle_signals(void (*on_stop)(int), void (*on_hup)(int))
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
}

/* The handlers of a worker or relay child of supervisor parent. */
static void install_worker_signals(pid_t parent)
{
    struct sigaction sa;

    w_parent = parent;
    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = worker_on_hup;
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &sa, NULL);
    /* Both stop signals blocked while either runs: one count. */
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaddset(&sa.sa_mask, SIGINT);
    sa.sa_flags = SA_SIGINFO;
    sa.sa_sigaction = worker_on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

/* The slot's identity in its consumer group, the same for every process
 * the slot runs: "<pipeline>-<host>-<index>" with bytes outside
 * [A-Za-z0-9._-] replaced by '_' (what Kafka accepts in an id). One
 * supervisor per group and host (the lock) keeps it unique. */
static void slot_instance_id(const slot *s, char *out, size_t size)
{
    char host[128];
    size_t i;

    if (exactly_host_id(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "unknown"); /* refused before: cmd_run */
    snprintf(out, size, "%s-%s-%d", s->p->name, host, s->index);
    for (i = 0; out[i]; i++)
        if (!((out[i] >= 'a' && out[i] <= 'z') || (out[i] >= 'A' && out[i] <= 'Z') ||
              (out[i] >= '0' && out[i] <= '9') || out[i] == '.' ||
              out[i] == '_' || out[i] == '-'))
            out[i] = '_';
}

static void run_worker(const exactly_supervisor_opts *o, slot *s, pid_t parent)
{
    exactly_worker_opts wo;
    exactly_worker_stats st;
    char instance[256];
    int code;

    /* Never outlive the supervisor; and if it died before this line ran,
     * the signal will never come, so look. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(1);

    memset(&wo, 0, sizeof(wo));
    wo.cfg = o->cfg;
    wo.pipeline = s->p;
    wo.worker_index = s->index;
    wo.exit_idle_ms = o->exit_idle_ms;
    wo.stop = &w_stop;
    wo.reopen_log = &w_reopen;
    wo.metrics = s->m;
    slot_instance_id(s, instance, sizeof(instance));
    wo.instance_id = instance;
    memset(&st, 0, sizeof(st));
    code = exactly_worker_run(&wo, &st);
    if (code != 2)
        exactly_worker_print_summary(s->p->name, &st);
    fflush(NULL);
    _exit(code);
}

static void run_relay(const exactly_supervisor_opts *o, slot *s, pid_t parent)
{
    exactly_relay_opts ro;
    exactly_relay_stats st;
    int code;

    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(1);
    memset(&ro, 0, sizeof(ro));
    ro.cfg = o->cfg;
    ro.relay = s->r;
    ro.stop = &w_stop;
    ro.reopen_log = &w_reopen;
    ro.exit_idle_ms = o->exit_idle_ms;
    ro.metrics = s->m;
    memset(&st, 0, sizeof(st));
    code = exactly_relay_run(&ro, &st);
    if (code != 2)
        exactly_relay_print_summary(s->r->name, &st);
    fflush(NULL);
    _exit(code);
}

/* The figure whose growth during a process's life shows it did more than
 * start: batches committed by a worker, sessions opened by a relay. */
static uint64_t progress_mark(const slot *s)
{
    if (!s->m)
        return 0;
    return s->r ? __atomic_load_n(&s->m->relay.connects, __ATOMIC_RELAXED)
                : __atomic_load_n(&s->m->batches_committed, __ATOMIC_RELAXED);
}

/* Shows in slot s's metrics when its process starts again (the status
 * page's restart_in_s). */
static void publish_restart(slot *s)
{
    if (s->m)
        __atomic_store_n(&s->m->restart_at_ms, (int64_t)s->restart_at_ms,
                         __ATOMIC_RELAXED);
}

void sup_start(const exactly_supervisor_opts *o, slot *s, const int *fds,
               size_t n_fds)
{
    pid_t parent = getpid();
    pid_t pid;

    sigset_t all, old;

    fflush(NULL); /* nothing buffered twice */
    /* The new process owns nothing until it claims (before the fork: the
     * child's claims must not be undone). */
    if (s->m)
        metrics_slot_disown(s->m);
    /* A signal between fork and the worker's own handlers would run the
     * supervisor's handler in the child and be lost: hold them until the
     * child has installed its own. */
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid = fork();
    if (pid == 0) {
        size_t i;
        for (i = 0; i < n_fds; i++)
            if (fds[i] >= 0)
                close(fds[i]);
        install_worker_signals(parent);
        sigprocmask(SIG_SETMASK, &old, NULL);
        if (s->r)
            run_relay(o, s, parent);
        run_worker(o, s, parent);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        exactly_log(EXACTLY_LOG_ERROR, "supervisor", "fork failed",
                    LOG_STR("error", strerror(errno)));
        s->restart_at_ms = sup_now_ms() + RESTART_MAX_MS;
        publish_restart(s);
        return;
    }
    s->pid = pid;
    s->started_ms = sup_now_ms();
    s->committed_at_start = progress_mark(s);
    if (s->m) {
        __atomic_store_n(&s->m->restart_at_ms, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->m->up, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&s->m->pid, (int32_t)pid, __ATOMIC_RELAXED);
        if (s->starts > 0)
            metrics_add(&s->m->restarts, 1);
    }
    s->starts++;
    if (s->r)
        exactly_log(EXACTLY_LOG_INFO, "supervisor", "relay started",
                    LOG_STR("relay", s->r->name), LOG_INT("relay_pid", pid),
                    LOG_INT("restarts", s->starts - 1));
    else
        exactly_log(EXACTLY_LOG_INFO, "supervisor", "worker started",
                    LOG_STR("pipeline", s->p->name),
                    LOG_INT("worker", s->index), LOG_INT("worker_pid", pid));
}

static long long restart_delay(int failures)
{
    long long d = RESTART_MIN_MS;
    int i;

    for (i = 1; i < failures && d < RESTART_MAX_MS; i++)
        d *= 2;
    return d < RESTART_MAX_MS ? d : RESTART_MAX_MS;
}

/* Logs how the relay of slot s ended (reaped() decided the rest). */
static void log_relay_end(const slot *s, int status, int code,
                          long long lived)
{
    const char *name = s->r->name;

    if (code == 0)
        exactly_log(EXACTLY_LOG_INFO, "supervisor", "relay finished",
                    LOG_STR("relay", name));
    else if (code == 2)
        exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                    "relay refused to start (configuration or schema; see "
                    "its log)", LOG_STR("relay", name));
    else if (WIFSIGNALED(status))
        exactly_log(EXACTLY_LOG_WARN, "supervisor", "relay killed by signal",
                    LOG_STR("relay", name), LOG_INT("signal", WTERMSIG(status)),
                    LOG_INT("lived_ms", lived),
                    LOG_INT("restart_in_ms", s->restart_at_ms - sup_now_ms()));
    else
        exactly_log(EXACTLY_LOG_WARN, "supervisor", "relay exited",
                    LOG_STR("relay", name), LOG_INT("code", code),
                    LOG_INT("lived_ms", lived),
                    LOG_INT("restart_in_ms", s->restart_at_ms - sup_now_ms()));
}

int sup_crash_loop_after(const slot *s)
{
    int guard;

    if (s->r || !s->p)
        return CRASH_LOOP_AFTER;
    guard = 2 * s->p->max_crashes + 2; /* max_crashes <= 1000 (config) */
    return guard > CRASH_LOOP_AFTER ? guard : CRASH_LOOP_AFTER;
}

/* 1 when a death of slot s's process after lived ms would be a fast
 * failure: soon after its start, or before it made any progress. */
static int fails_fast(const slot *s, long long lived)
{
    int progressed = progress_mark(s) > s->committed_at_start;

    return lived < FAST_FAILURE_MS ||
           (!progressed && lived < PROGRESS_WINDOW_MS);
}

/* A child that died (not refused, not stopped by its handler): counts a
 * fast failure (fails_fast), sets when it starts again, and says so once
 * when the fast failures make a crash loop. */
static void count_failure(slot *s, long long lived)
{
    int failed_start = fails_fast(s, lived);

    s->fast_failures = failed_start ? s->fast_failures + 1 : 1;
    /* A long run ends the quick exits 0 before it too. */
    if (!failed_start)
        s->quick_exits = 0;
    s->restart_at_ms = sup_now_ms() + restart_delay(s->fast_failures);
    if (s->fast_failures >= sup_crash_loop_after(s) && !s->crash_loop) {
        s->crash_loop = 1;
        if (s->r)
            exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                        "relay is in a crash loop",
                        LOG_STR("relay", s->r->name),
                        LOG_INT("failures", s->fast_failures));
        else
            exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                        "worker is in a crash loop",
                        LOG_STR("pipeline", s->p->name),
                        LOG_INT("worker", s->index),
                        LOG_INT("failures", s->fast_failures));
    }
}

/* A child that exited 0 while run goes on: it starts again, after a
 * backoff that grows with each such exit in a row that came soon after
 * its start (a plugin or a configuration that makes it end at once must
 * not make a hot restart loop); one that ran longer starts it anew. Not a
 * failure: it never makes a crash loop. */
static void restart_after_exit0(slot *s, long long lived)
{
    long long delay;

    s->quick_exits = lived < FAST_FAILURE_MS ? s->quick_exits + 1 : 1;
    /* A long run ends the fast failures before it too; a quick exit 0
     * leaves them as they were. */
    if (lived >= FAST_FAILURE_MS)
        s->fast_failures = 0;
    delay = restart_delay(s->quick_exits);
    s->restart_at_ms = sup_now_ms() + delay;
    publish_restart(s);
    if (s->r)
        exactly_log(EXACTLY_LOG_WARN, "supervisor",
                    "relay exited with status 0 while run goes on; starting "
                    "it again",
                    LOG_STR("relay", s->r->name), LOG_INT("code", 0),
                    LOG_INT("lived_ms", lived),
                    LOG_INT("quick_exits", s->quick_exits),
                    LOG_INT("restart_in_ms", delay));
    else
        exactly_log(EXACTLY_LOG_WARN, "supervisor",
                    "worker exited with status 0 while run goes on; starting "
                    "it again",
                    LOG_STR("pipeline", s->p->name),
                    LOG_INT("worker", s->index), LOG_INT("code", 0),
                    LOG_INT("lived_ms", lived),
                    LOG_INT("quick_exits", s->quick_exits),
                    LOG_INT("restart_in_ms", delay));
}

/* The supervisor finished slot s on purpose: not restarted, and no
 * longer counted by /readyz. */
static void slot_done(slot *s)
{
    s->done = 1;
    if (s->m) {
        __atomic_store_n(&s->m->meant, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->m->restart_at_ms, 0, __ATOMIC_RELAXED);
    }
}

int sup_reaped(slot *s, int status, int exit0_ends)
{
    long long lived = sup_now_ms() - s->started_ms;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;

    s->pid = 0;
    if (s->m) {
        /* A dead worker owns nothing: its gauges go, its counters stay. */
        metrics_slot_disown(s->m);
        __atomic_store_n(&s->m->up, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->m->pid, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->m->ready, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->m->relay.publishing, 0, __ATOMIC_RELAXED);
    }
    if (code == 0 && !exit0_ends) {
        /* A clean stop nobody here asked for: a SIGTERM sent to this
         * process alone, or a child that ended on its own. Without
         * --exit-idle a child ends only when the supervisor stops, so it
         * starts again; not a failure. */
        restart_after_exit0(s, lived);
        return 0;
    }
    if (code == 0 || code == 2) {
        if (s->r)
            log_relay_end(s, status, code, lived);
        else if (code == 0)
            exactly_log(EXACTLY_LOG_INFO, "supervisor", "worker finished",
                        LOG_STR("pipeline", s->p->name),
                        LOG_INT("worker", s->index));
        else
            exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                        "worker refused to start (configuration, plugin or "
                        "schema; see its log)",
                        LOG_STR("pipeline", s->p->name),
                        LOG_INT("worker", s->index));
        slot_done(s);
        return code;
    }
    if (code == EXACTLY_EXIT_HANDLER_STOP && !s->r) {
        exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                    "worker stopped by its handler (EXACTLY_EFATAL; see its "
                    "log); not restarted",
                    LOG_STR("pipeline", s->p->name),
                    LOG_INT("worker", s->index));
        slot_done(s);
        return EXACTLY_EXIT_HANDLER_STOP;
    }
    count_failure(s, lived);
    publish_restart(s);
    if (s->r)
        log_relay_end(s, status, code, lived);
    else if (WIFSIGNALED(status))
        exactly_log(EXACTLY_LOG_WARN, "supervisor", "worker killed by signal",
                    LOG_STR("pipeline", s->p->name),
                    LOG_INT("worker", s->index),
                    LOG_INT("signal", WTERMSIG(status)),
                    LOG_INT("lived_ms", lived),
                    LOG_INT("restart_in_ms", s->restart_at_ms - sup_now_ms()));
    else
        exactly_log(EXACTLY_LOG_WARN, "supervisor", "worker exited",
                    LOG_STR("pipeline", s->p->name),
                    LOG_INT("worker", s->index),
                    LOG_INT("code", code), LOG_INT("lived_ms", lived),
                    LOG_INT("restart_in_ms", s->restart_at_ms - sup_now_ms()));
    if (s->fast_failures == 1)
        s->crash_loop = 0;
    return 0;
}

/* Ends the crash loop of slot s when its process has run past the point
 * where its death would still be a fast failure: it started for good. */
static void note_recovery(slot *s, long long now)
{
    if (!s->crash_loop || s->pid <= 0 || fails_fast(s, now - s->started_ms))
        return;
    s->crash_loop = 0;
    s->fast_failures = 0;
    if (s->r)
        exactly_log(EXACTLY_LOG_INFO, "supervisor",
                    "relay is out of its crash loop",
                    LOG_STR("relay", s->r->name));
    else
        exactly_log(EXACTLY_LOG_INFO, "supervisor",
                    "worker is out of its crash loop",
                    LOG_STR("pipeline", s->p->name),
                    LOG_INT("worker", s->index));
}

int sup_pipeline_lost(slot *slots, size_t n)
{
    long long now = sup_now_ms();
    size_t i, j;

    for (i = 0; i < n; i++)
        note_recovery(&slots[i], now);
    for (i = 0; i < n; i++) {
        int all = 1;
        if (slots[i].r) {
            if (!slots[i].crash_loop)
                continue;
            exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                        "the relay is in a crash loop; giving up",
                        LOG_STR("relay", slots[i].r->name));
            return 1;
        }
        for (j = 0; j < n; j++)
            if (slots[j].p == slots[i].p && !slots[j].crash_loop)
                all = 0;
        if (all) {
            exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                        "every worker of the pipeline is in a crash loop; "
                        "giving up",
                        LOG_STR("pipeline", slots[i].p->name));
            return 1;
        }
    }
    return 0;
}

void sup_signal_all(slot *slots, size_t n, int sig)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (slots[i].pid > 0)
            kill(slots[i].pid, sig);
}

size_t sup_running(const slot *slots, size_t n)
{
    size_t i, r = 0;

    for (i = 0; i < n; i++)
        r += slots[i].pid > 0;
    return r;
}
