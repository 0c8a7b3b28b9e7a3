/*
 * `exactly run` and the signals that reach its processes from outside,
 * one at a time (test_supervisor_stop.c has the stop of all of them). A
 * ledger pipeline with `workers: 2` on an empty 4-partition topic, run
 * without --exit-idle; the processes are found in the log (`worker
 * started ... worker_pid=N`).
 *
 *   exit0    SIGTERM to worker 0 alone (an operator's kill, a tool): it
 *            stops cleanly (exit 0), and the supervisor, which asked
 *            nothing, starts it again (after 0.5 s, not counted as a
 *            crash); worker 1 runs on; a SIGTERM of the supervisor then
 *            exits 0.
 *   hup      log rotation: the log file renamed, SIGHUP to the supervisor:
 *            the workers and the status server (--metrics) all write to
 *            the new file (their stderr, /proc/PID/fd/2), none to the
 *            renamed one.
 *   mask     the status server's signals (/proc/PID/status), in the first
 *            process and in one the supervisor starts again after a
 *            SIGKILL: SIGTERM, SIGINT and SIGHUP blocked in its server
 *            threads (the main thread takes them by sigwait, which shows
 *            them unblocked while it waits) and none of them caught: a
 *            handler
 *            inherited from the supervisor would take a signal that
 *            arrives before the block (the supervisor's SIGTERM, or the
 *            one of its death) and lose it.
 *   early    SIGTERM during the start of `exactly run` (--metrics on),
 *            EARLY_STARTS times, from at once to past the line "starting"
 *            (the delays spread over the time a start took): each run
 *            either died before it opened its log file (the default action
 *            of a process that has not begun yet) or exits 0; none dies of
 *            the signal after it began, and none leaves a process behind
 *            (the test, a subreaper, has no child left 3 s later).
 *
 * The test process is a child subreaper, so that nothing the supervisor
 * leaves behind outlives the test unseen.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ledger_check.h"
#include "testkit.h"

#define N_PARTITIONS 4
#define SHUTDOWN_TIMEOUT_S 20
/* How long a restart may take: the first restart delay (0.5 s) and the
 * sanitizer build's start of a process, with room. */
#define RESTART_WAIT_MS 10000

static tk_mock *g_mock;
static char g_dir[256];
static char g_lockdir[512];
static char g_conninfo[1024];
static char g_config[512];

/* One topic, group and database for every scenario (one supervisor runs
 * at a time: the group's lock). */
static void setup(void)
{
    ledger_config lc;
    tk_config cfg;
    tk_pipeline *pl = &cfg.pipelines[0];
    char log[512];

    tk_mock_create_topic(g_mock, "sup_signals", N_PARTITIONS);
    tk_pg_create_db("sup_signals", g_conninfo, sizeof g_conninfo);
    ledger_setup_db(g_conninfo);
    snprintf(g_config, sizeof g_config, "%s/sup_signals.yaml", g_dir);
    memset(&lc, 0, sizeof lc);
    lc.bootstraps = tk_mock_bootstraps(g_mock);
    lc.conninfo = g_conninfo;
    lc.topic = "sup_signals";
    lc.group = "sup_signals";
    lc.max_messages = 50;
    lc.max_wait_ms = 20;
    ledger_config_fill(&cfg, &lc);
    pl->workers = 2;
    pl->kafka[0] = (tk_prop){"session.timeout.ms", "6000"};
    pl->kafka[1] = (tk_prop){"heartbeat.interval.ms", "500"};
    tk_config_write(g_config, &cfg);
    snprintf(log, sizeof log, "%s/migrate.log", g_dir);
    tk_migrate(g_config, log);
}

/* `exactly run` of the configuration, logging to log; with metrics, its
 * status server on a free loopback port. */
static pid_t start_run(const char *log, const char *out, int metrics)
{
    const char *args[] = {"run", "-c", g_config, "--lock-dir", g_lockdir,
                          "--log-file", log, "--shutdown-timeout", "20",
                          NULL, NULL, NULL};

    if (metrics) {
        args[9] = "--metrics";
        args[10] = "127.0.0.1:0";
    }
    return tk_exactly_startv(out, args);
}

/* SIGTERM to the supervisor; it must exit 0 in time. */
static void stop_run(const char *what, pid_t sup, const char *log)
{
    int st;

    TK_CHECK_EQ_INT64(tk_kill(sup, SIGTERM), 0, "SIGTERM of the supervisor");
    st = tk_exactly_wait(sup, (SHUTDOWN_TIMEOUT_S + 10) * 1000, log, what);
    if (st != 0)
        tk_log_tail(log, 40);
    TK_CHECK(st == 0, "%s: exactly run exited %d after SIGTERM, expected 0; "
             "log: %s", what, st, log);
}

/* A worker stopped cleanly by someone else's SIGTERM is started again. */
static void scenario_exit0(void)
{
    char log[512], out[512];
    pid_t sup, w0, w1, again;

    snprintf(log, sizeof log, "%s/exit0.log", g_dir);
    snprintf(out, sizeof out, "%s/exit0.out", g_dir);
    sup = start_run(log, out, 0);
    w0 = tk_worker_pid(log, 0, sup, 30000);
    w1 = tk_worker_pid(log, 1, sup, 30000);
    /* Worker 0 in its steady state: it holds partitions. */
    tk_wait_claims(log, w0, 1, sup, 60000);
    TK_CHECK_EQ_INT64(tk_kill(w0, SIGTERM), 0, "SIGTERM of worker 0");
    if (!tk_wait_log(log, "msg=\"worker started\"", 3, sup, RESTART_WAIT_MS,
                     NULL)) {
        tk_log_tail(log, 40);
        tk_fail("worker 0 (pid %d), stopped with exit 0 by a SIGTERM the "
                "supervisor did not send, was not started again within "
                "%d ms; log: %s", (int)w0, RESTART_WAIT_MS, log);
    }
    again = tk_worker_pid(log, 2, sup, 1000);
    TK_CHECK(again != w0 && again != w1, "the third start names pid %d, "
             "already used", (int)again);
    TK_CHECK_EQ_INT64(tk_log_lines_with(log, "msg=\"worker exited with "
                                        "status 0 while run goes on; "
                                        "starting it again\"",
                                        " worker=0"), 1,
                      "the supervisor's line for worker 0's clean exit");
    TK_CHECK_EQ_INT64(tk_log_lines_with(log, "msg=\"worker exited\"", NULL) +
                          tk_log_lines_with(log, "msg=\"worker finished\"",
                                            NULL),
                      0, "a clean exit before the stop is neither a failure "
                      "(\"worker exited\") nor the end (\"worker finished\")");
    TK_CHECK_EQ_INT64(tk_kill(w1, 0), 0, "worker 1 still runs");
    stop_run("exit0", sup, log);
    tk_note("[exit0] worker 0 (pid %d) started again as pid %d", (int)w0,
            (int)again);
}

/* Whether pid's stderr is the file at path (not one renamed from it). */
static int stderr_is(pid_t pid, const char *path)
{
    char link[64], target[1024];
    ssize_t n;

    snprintf(link, sizeof link, "/proc/%d/fd/2", (int)pid);
    n = readlink(link, target, sizeof target - 1);
    if (n < 0)
        return 0;
    target[n] = '\0';
    return strcmp(target, path) == 0;
}

/* Waits up to 5 s until pid (named what) writes its log to path. */
static void wait_stderr(pid_t pid, const char *what, const char *path)
{
    int64_t t0 = tk_now_ms();
    char link[64], target[1024];
    ssize_t n;

    while (!stderr_is(pid, path) && tk_now_ms() - t0 < 5000)
        tk_sleep_ms(20);
    if (stderr_is(pid, path))
        return;
    snprintf(link, sizeof link, "/proc/%d/fd/2", (int)pid);
    n = readlink(link, target, sizeof target - 1);
    target[n > 0 ? n : 0] = '\0';
    tk_fail("%s (pid %d) writes its log to %s 5 s after SIGHUP, not to %s: "
            "the rotated file", what, (int)pid, target, path);
}

/* SIGHUP after the log file was renamed: every process follows. */
static void scenario_hup(void)
{
    char log[512], rotated[520], out[512];
    pid_t sup, w0, w1, server;

    snprintf(log, sizeof log, "%s/hup.log", g_dir);
    snprintf(rotated, sizeof rotated, "%s.1", log);
    snprintf(out, sizeof out, "%s/hup.out", g_dir);
    sup = start_run(log, out, 1);
    w0 = tk_worker_pid(log, 0, sup, 30000);
    w1 = tk_worker_pid(log, 1, sup, 30000);
    server = (pid_t)tk_log_last_int(log, " server_pid=");
    TK_CHECK(server > 0, "no server_pid in the \"serving metrics\" line; "
             "log: %s", log);
    TK_CHECK(stderr_is(server, log), "the status server (pid %d) does not "
             "write to %s before the rotation", (int)server, log);
    TK_CHECK(rename(log, rotated) == 0, "rename %s", log);
    TK_CHECK_EQ_INT64(tk_kill(sup, SIGHUP), 0, "SIGHUP of the supervisor");
    wait_stderr(sup, "the supervisor", log);
    wait_stderr(w0, "worker 0", log);
    wait_stderr(w1, "worker 1", log);
    wait_stderr(server, "the status server", log);
    stop_run("hup", sup, log);
    TK_CHECK_EQ_INT64(tk_log_lines_with(rotated, "msg=\"stopped\"", NULL),
                      0, "a worker's final line went to the rotated file");
}

/* The hex mask after key ("SigBlk:", "SigCgt:") in the status of task
 * tid of process pid; 0 when it cannot be read. */
static unsigned long long sig_mask(pid_t pid, pid_t tid, const char *key)
{
    char path[96];
    char *text, *k;
    unsigned long long v = 0;

    snprintf(path, sizeof path, "/proc/%d/task/%d/status", (int)pid,
             (int)tid);
    text = tk_read_file(path);
    if (!text)
        return 0;
    k = strstr(text, key);
    if (k)
        v = strtoull(k + strlen(key), NULL, 16);
    free(text);
    return v;
}

#define SIGBIT(sig) (1ULL << ((sig) - 1))
#define STOP_SIGNALS (SIGBIT(SIGTERM) | SIGBIT(SIGINT) | SIGBIT(SIGHUP))

/* The mask the threads of pid other than its main one block (the AND of
 * theirs); 0 while it has no other thread. */
static unsigned long long threads_blocked(pid_t pid)
{
    char path[64], *end;
    unsigned long long all = ~0ULL;
    int n = 0;
    DIR *d;
    struct dirent *e;

    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    d = opendir(path);
    if (!d)
        return 0;
    while ((e = readdir(d)) != NULL) {
        long tid = strtol(e->d_name, &end, 10);
        if (end == e->d_name || *end || tid == pid)
            continue;
        all &= sig_mask(pid, (pid_t)tid, "SigBlk:");
        n++;
    }
    closedir(d);
    return n ? all : 0;
}

/* The status server (pid, named what) blocks the stop signals in its
 * server threads and has no handler of them. */
static void check_server_signals(pid_t pid, const char *what)
{
    int64_t t0 = tk_now_ms();
    unsigned long long blk, cgt;

    /* A process just forked starts its threads within moments. */
    while ((threads_blocked(pid) & STOP_SIGNALS) != STOP_SIGNALS &&
           tk_now_ms() - t0 < 5000)
        tk_sleep_ms(10);
    blk = threads_blocked(pid);
    cgt = sig_mask(pid, pid, "SigCgt:");
    TK_CHECK((blk & STOP_SIGNALS) == STOP_SIGNALS, "%s (pid %d): SIGTERM, "
             "SIGINT and SIGHUP not all blocked in its threads (SigBlk "
             "%llx)", what, (int)pid, blk);
    TK_CHECK((cgt & STOP_SIGNALS) == 0, "%s (pid %d) has handlers of SIGTERM, "
             "SIGINT or SIGHUP (SigCgt %llx): the supervisor's, inherited",
             what, (int)pid, cgt);
}

/* The supervisor's child that is neither of the workers nor old: the
 * status server started again; waits up to 5 s for it. */
static pid_t new_server(pid_t sup, pid_t w0, pid_t w1, pid_t old)
{
    int64_t t0 = tk_now_ms();
    char path[96];

    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)sup,
             (int)sup);
    while (tk_now_ms() - t0 < 5000) {
        char *text = tk_read_file(path), *p, *end;
        pid_t found = 0;

        for (p = text; p && *p && !found; p = end) {
            long v = strtol(p, &end, 10);
            if (end == p)
                break;
            if (v > 0 && v != w0 && v != w1 && v != old)
                found = (pid_t)v;
        }
        free(text);
        if (found)
            return found;
        tk_sleep_ms(20);
    }
    tk_fail("the supervisor (pid %d) did not start its status server again "
            "within 5 s of its death", (int)sup);
    return 0;
}

/* The status server's signal mask and handlers, first and restarted. */
static void scenario_mask(void)
{
    char log[512], out[512];
    pid_t sup, w0, w1, server, again;

    snprintf(log, sizeof log, "%s/mask.log", g_dir);
    snprintf(out, sizeof out, "%s/mask.out", g_dir);
    sup = start_run(log, out, 1);
    w0 = tk_worker_pid(log, 0, sup, 30000);
    w1 = tk_worker_pid(log, 1, sup, 30000);
    server = (pid_t)tk_log_last_int(log, " server_pid=");
    TK_CHECK(server > 0, "no server_pid in the \"serving metrics\" line; "
             "log: %s", log);
    check_server_signals(server, "the status server");
    TK_CHECK_EQ_INT64(tk_kill(server, SIGKILL), 0, "SIGKILL of the server");
    again = new_server(sup, w0, w1, server);
    check_server_signals(again, "the status server started again");
    stop_run("mask", sup, log);
}

/* Waits up to 3 s until no process is left that the supervisor left
 * behind (they become the test's children: it is a subreaper). */
static void check_no_orphans(const char *what)
{
    int64_t t0 = tk_now_ms();
    pid_t pid;
    int st;

    for (;;) {
        pid = waitpid(-1, &st, WNOHANG);
        if (pid < 0 && errno == ECHILD)
            return;
        if (pid == 0 && tk_now_ms() - t0 > 3000)
            break;
        if (pid == 0)
            tk_sleep_ms(10);
    }
    tk_fail("%s: a process of the supervisor still runs 3 s after it "
            "exited", what);
}

/* One start of run with SIGTERM delay_us after it; returns whether the
 * run got as far as its log file. */
static int start_and_stop(int i, long delay_us)
{
    char log[512], out[512], what[64];
    struct stat st_log;
    pid_t sup;
    int st, began;

    snprintf(log, sizeof log, "%s/early-%d.log", g_dir, i);
    snprintf(out, sizeof out, "%s/early-%d.out", g_dir, i);
    snprintf(what, sizeof what, "start %d, SIGTERM after %ld us", i, delay_us);
    sup = start_run(log, out, 1);
    if (delay_us > 0)
        usleep((useconds_t)delay_us);
    TK_CHECK_EQ_INT64(tk_kill(sup, SIGTERM), 0, "SIGTERM of the supervisor");
    st = tk_exactly_wait(sup, (SHUTDOWN_TIMEOUT_S + 10) * 1000, log, what);
    began = stat(log, &st_log) == 0;
    if (began && st != 0)
        tk_log_tail(log, 20);
    TK_CHECK(st == 0 || (st == 128 + SIGTERM && !began),
             "%s: exactly run exited %d (%s); a stop during its start must "
             "exit 0; log: %s", what, st,
             st == 128 + SIGTERM ? "killed by the signal after it opened its "
                                   "log: no handler yet" : "not 0", log);
    check_no_orphans(what);
    return began;
}

#define EARLY_STARTS 50

/* SIGTERM at every moment of the start. */
static void scenario_early(void)
{
    char log[512], out[512];
    int64_t t0;
    long span_us;
    pid_t sup;
    int i, began = 0;

    /* How long a start takes, up to its "starting" line. */
    snprintf(log, sizeof log, "%s/early-measure.log", g_dir);
    snprintf(out, sizeof out, "%s/early-measure.out", g_dir);
    t0 = tk_now_ms();
    sup = start_run(log, out, 1);
    TK_CHECK(tk_wait_log(log, "msg=\"starting\"", 1, sup, 30000, NULL),
             "no \"starting\" line within 30 s; log: %s", log);
    span_us = (long)(tk_now_ms() - t0) * 1000;
    stop_run("early-measure", sup, log);
    check_no_orphans("early-measure");
    for (i = 0; i < EARLY_STARTS; i++)
        began += start_and_stop(i, span_us * 3 / 2 * i / EARLY_STARTS);
    tk_note("[early] %d of %d starts began before the signal (start: %ld ms)",
            began, EARLY_STARTS, span_us / 1000);
}

int main(void)
{
    int64_t t0 = tk_now_ms();

    TK_CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0, "PR_SET_CHILD_SUBREAPER");
    g_mock = tk_mock_start(1);
    tk_tmpdir("exactly-supervisor-signals", g_dir, sizeof g_dir);
    snprintf(g_lockdir, sizeof g_lockdir, "%s/locks", g_dir);
    TK_CHECK(mkdir(g_lockdir, 0755) == 0, "mkdir %s", g_lockdir);
    tk_note("logs in %s", g_dir);
    setup();

    if (tk_wanted("exit0"))
        scenario_exit0();
    if (tk_wanted("hup"))
        scenario_hup();
    if (tk_wanted("mask"))
        scenario_mask();
    if (tk_wanted("early"))
        scenario_early();

    tk_note("supervisor signal tests passed in %.1f s",
            (double)(tk_now_ms() - t0) / 1000.0);
    tk_mock_stop(g_mock);
    ledger_cleanup_dir(g_dir);
    return 0;
}
