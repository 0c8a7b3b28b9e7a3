/*
 * How `exactly run` stops when the stop signal reaches its workers too,
 * not the supervisor alone (test_supervisor.c signals the supervisor
 * only). A ledger pipeline with `workers: 2` on a 4-partition topic,
 * default max_crashes, session.timeout.ms 6000; the processes are found
 * in the log (`worker started ... worker_pid=N`).
 *
 *   ctrlc    Ctrl-C at a terminal: SIGINT to the supervisor and to each
 *            worker, back to back, mid-stream. Each worker stops as for a
 *            SIGTERM of the supervisor alone: its final "stopped" line and
 *            its summary, the supervisor's "worker finished" for both, no
 *            "worker exited", exit 0, the ledger consistent with the
 *            stored offsets, and no offset row left held or in_apply (the
 *            crash guard would count each such row as a worker lost at
 *            its offset).
 *   pkill    `pkill exactly`: SIGTERM to each worker, then to the
 *            supervisor: the same clean stop.
 *   twice    SIGINT and SIGTERM to worker 0 (held with SIGSTOP), then
 *            SIGINT to the supervisor, whose SIGTERM finds the user's
 *            pending (a user's second signal, not the supervisor's): worker 0
 *            exits 1 at once, worker 1 finishes, and the run exits 1, not
 *            0: not every worker stopped cleanly.
 *   segv     a worker that dies of SIGSEGV during the drain (stopped with
 *            SIGSTOP before the supervisor's SIGTERM, then sent SIGSEGV
 *            and SIGCONT): the run exits 1.
 *
 * The test process is a child subreaper, so that nothing the supervisor
 * leaves behind outlives the test unseen.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ledger_check.h"
#include "testkit.h"

#define N_PARTITIONS 4
/* Batches of 5, each its own transaction: a few thousand messages a
 * second, so that the signal lands while most of the stream waits. */
#define BATCH_SLOW 5
#define BATCH_WAIT_MS 20
#define MESSAGES 40000
#define SHUTDOWN_TIMEOUT_S 20

static tk_mock *g_mock;
static char g_dir[256];
static char g_lockdir[512];

typedef struct scen {
    const char *name;   /* topic, group and database prefix */
    char conninfo[1024];
    char config[512];
    int64_t produced;
    PGconn *db;
} scen;

static void setup(scen *s, const char *name, uint64_t seed)
{
    ledger_config lc;
    tk_config cfg;
    tk_pipeline *pl = &cfg.pipelines[0];
    int64_t counts[LEDGER_ACCOUNTS];
    char log[512];

    memset(s, 0, sizeof *s);
    s->name = name;
    tk_mock_create_topic(g_mock, name, N_PARTITIONS);
    tk_pg_create_db(name, s->conninfo, sizeof s->conninfo);
    ledger_setup_db(s->conninfo);
    snprintf(s->config, sizeof s->config, "%s/%s.yaml", g_dir, name);
    memset(&lc, 0, sizeof lc);
    lc.bootstraps = tk_mock_bootstraps(g_mock);
    lc.conninfo = s->conninfo;
    lc.topic = name;
    lc.group = name;
    lc.max_messages = BATCH_SLOW;
    lc.max_wait_ms = BATCH_WAIT_MS;
    ledger_config_fill(&cfg, &lc);
    pl->workers = 2;
    pl->kafka[0] = (tk_prop){"session.timeout.ms", "6000"};
    pl->kafka[1] = (tk_prop){"heartbeat.interval.ms", "500"};
    tk_config_write(s->config, &cfg);
    snprintf(log, sizeof log, "%s/%s-migrate.log", g_dir, name);
    tk_migrate(s->config, log);
    s->db = tk_pg_connect(s->conninfo);
    tk_produce_ids(tk_mock_bootstraps(g_mock), name, MESSAGES,
                   LEDGER_ACCOUNTS, N_PARTITIONS, seed, counts);
    s->produced = MESSAGES;
}

static pid_t start_run(const scen *s, const char *log, const char *out)
{
    char shutdown[24];
    const char *args[] = {"run", "-c", s->config, "--lock-dir", g_lockdir,
                          "--log-file", log, "--shutdown-timeout", shutdown,
                          NULL};

    snprintf(shutdown, sizeof shutdown, "%d", SHUTDOWN_TIMEOUT_S);
    return tk_exactly_startv(out, args);
}

/* Waits for sup to exit; fails (killing it) after timeout_ms. */
static int wait_exit(pid_t sup, int timeout_ms, const char *log)
{
    int st = tk_wait(sup, timeout_ms);

    if (st == -1) {
        tk_kill(sup, SIGKILL);
        tk_wait(sup, 10000);
        ledger_log_tail(log, 40);
        tk_fail("exactly run still running after %d ms; log: %s", timeout_ms,
                log);
    }
    return st;
}

/* Starts the run, waits until both workers claimed partitions and some of
 * the stream is applied; w[0..2) gets the workers' pids. */
static pid_t start_mid_stream(scen *s, const char *log, const char *out,
                              pid_t *w)
{
    int64_t t0 = tk_now_ms();
    pid_t sup = start_run(s, log, out);
    int i;

    for (i = 0; i < 2; i++)
        w[i] = tk_worker_pid(log, i, sup, 30000);
    for (i = 0; i < 2; i++)
        tk_wait_claims(log, w[i], 1, sup, 60000);
    while (ledger_rows(s->db) < 500) {
        LEDGER_CHECK_LOG(tk_now_ms() - t0 < 90000 && tk_wait(sup, 0) == -1,
                         log, "nothing applied in 90 s; log: %s", log);
        tk_sleep_ms(5);
    }
    return sup;
}

/* What a clean stop of both workers leaves: each worker's own final line,
 * the supervisor's "worker finished" for each and no "worker exited", a
 * summary per worker, exit 0, and every offset row released. */
static void check_clean_stop(const scen *s, const char *what, const char *log,
                             const char *out, const pid_t *w, int st)
{
    char tag[32];
    int64_t rows;
    int i;

    for (i = 0; i < 2; i++) {
        snprintf(tag, sizeof tag, " pid=%d ", (int)w[i]);
        LEDGER_CHECK_LOG(tk_log_lines_with(log, tag, "msg=\"stopped\"") == 1,
                         log, "%s: worker %d has no final \"stopped\" line: "
                         "it did not stop cleanly; log: %s", what, (int)w[i],
                         log);
    }
    LEDGER_CHECK_LOG(tk_log_lines_with(log, "msg=\"worker exited\"", NULL) == 0 &&
                         tk_log_lines_with(log, "msg=\"worker killed by signal\"",
                                           NULL) == 0 &&
                         tk_log_lines_with(log, "msg=\"worker finished\"",
                                           NULL) == 2,
                     log, "%s: expected 2 \"worker finished\", no \"worker "
                     "exited\" nor \"killed\"; log: %s", what, log);
    LEDGER_CHECK_LOG(tk_log_lines_with(out, "pipeline " LEDGER_PIPELINE
                                       ": consumed", NULL) == 2,
                     out, "%s: expected a summary of each worker in %s", what,
                     out);
    LEDGER_CHECK_LOG(st == 0, log, "%s: exactly run exited %d, expected 0; "
                     "log: %s", what, st, log);
    TK_CHECK_EQ_INT64(tk_sql_int64(s->db, "SELECT count(*) FROM "
                                   "exactly.offsets WHERE held OR in_apply"),
                      0, "offset rows left held or in_apply (each one counts "
                      "as a worker lost at its offset)");
    rows = ledger_check_consistent(s->db, s->name, N_PARTITIONS);
    TK_CHECK(rows < s->produced, "%s: all %" PRId64 " messages applied "
             "before the signal: not mid-stream", what, s->produced);
    tk_note("[%s] clean stop with %" PRId64 " of %" PRId64 " applied", what,
            rows, s->produced);
}

/* Ctrl-C: SIGINT to the process group, the supervisor first. */
static void scenario_ctrlc(void)
{
    char log[512], out[512];
    pid_t sup, w[2];
    int st;
    scen s;

    setup(&s, "stop_ctrlc", 505);
    snprintf(log, sizeof log, "%s/stop_ctrlc.log", g_dir);
    snprintf(out, sizeof out, "%s/stop_ctrlc.out", g_dir);
    sup = start_mid_stream(&s, log, out, w);
    TK_CHECK_EQ_INT64(tk_kill(sup, SIGINT), 0, "SIGINT of the supervisor");
    TK_CHECK_EQ_INT64(tk_kill(w[0], SIGINT), 0, "SIGINT of worker 0");
    TK_CHECK_EQ_INT64(tk_kill(w[1], SIGINT), 0, "SIGINT of worker 1");
    st = wait_exit(sup, (SHUTDOWN_TIMEOUT_S + 10) * 1000, log);
    check_clean_stop(&s, "ctrlc", log, out, w, st);
    PQfinish(s.db);
}

/* pkill: SIGTERM to every process, the workers first this time. */
static void scenario_pkill(void)
{
    char log[512], out[512];
    pid_t sup, w[2];
    int st;
    scen s;

    setup(&s, "stop_pkill", 606);
    snprintf(log, sizeof log, "%s/stop_pkill.log", g_dir);
    snprintf(out, sizeof out, "%s/stop_pkill.out", g_dir);
    sup = start_mid_stream(&s, log, out, w);
    TK_CHECK_EQ_INT64(tk_kill(w[0], SIGTERM), 0, "SIGTERM of worker 0");
    TK_CHECK_EQ_INT64(tk_kill(w[1], SIGTERM), 0, "SIGTERM of worker 1");
    TK_CHECK_EQ_INT64(tk_kill(sup, SIGTERM), 0, "SIGTERM of the supervisor");
    st = wait_exit(sup, (SHUTDOWN_TIMEOUT_S + 10) * 1000, log);
    check_clean_stop(&s, "pkill", log, out, w, st);
    PQfinish(s.db);
}

/* Waits for the supervisor's "stopping:" line. */
static void wait_stopping(const char *log, pid_t sup)
{
    LEDGER_CHECK_LOG(ledger_wait_log(log, "stopping:", 1, sup, 10000, NULL),
                     log, "no \"stopping\" line after the signal; log: %s",
                     log);
}

/* What a stop in which worker 0 ended badly leaves: the supervisor's
 * "worker exited" or "worker killed by signal" for it and no final line of
 * its own, worker 1 finished, and exit 1. */
static void check_unclean_stop(const char *what, const char *log,
                               const pid_t *w, int st)
{
    const char *how = "msg=\"worker exited\"";
    char tag[32];

    if (tk_log_lines_with(log, "msg=\"worker killed by signal\"",
                          "worker=0") > 0)
        how = "msg=\"worker killed by signal\"";
    snprintf(tag, sizeof tag, " pid=%d ", (int)w[0]);
    LEDGER_CHECK_LOG(tk_log_lines_with(log, how, "worker=0") == 1 &&
                         tk_log_lines_with(log, tag, "msg=\"stopped\"") == 0 &&
                         tk_log_lines_with(log, "msg=\"worker finished\"",
                                           "worker=1") == 1,
                     log, "%s: expected worker 0 to end with \"%s\" and "
                     "worker 1 to finish; log: %s", what, how, log);
    LEDGER_CHECK_LOG(st == 1, log, "%s: exactly run exited %d although worker "
                     "0 did not stop cleanly, expected 1; log: %s", what, st,
                     log);
    tk_note("[%s] worker 0 ended with \"%s\"; exit 1", what, how);
}

/* A user's second signal to a worker ends it at once. */
static void scenario_twice(void)
{
    char log[512], out[512];
    pid_t sup, w[2];
    int st;
    scen s;

    setup(&s, "stop_twice", 707);
    snprintf(log, sizeof log, "%s/stop_twice.log", g_dir);
    snprintf(out, sizeof out, "%s/stop_twice.out", g_dir);
    sup = start_mid_stream(&s, log, out, w);
    /* Worker 0 is held while the user's two signals and then the
     * supervisor's SIGTERM reach it: a standard signal does not queue, so
     * a SIGTERM already pending keeps its sender, and the supervisor's
     * cannot take the place of the user's second signal, as it could when
     * it came first. */
    TK_CHECK_EQ_INT64(tk_kill(w[0], SIGSTOP), 0, "SIGSTOP of worker 0");
    TK_CHECK_EQ_INT64(tk_kill(w[0], SIGINT), 0, "SIGINT of worker 0");
    TK_CHECK_EQ_INT64(tk_kill(w[0], SIGTERM), 0, "SIGTERM of worker 0");
    TK_CHECK_EQ_INT64(tk_kill(sup, SIGINT), 0, "SIGINT of the supervisor");
    wait_stopping(log, sup);
    TK_CHECK_EQ_INT64(tk_kill(w[0], SIGCONT), 0, "SIGCONT of worker 0");
    st = wait_exit(sup, (SHUTDOWN_TIMEOUT_S + 10) * 1000, log);
    check_unclean_stop("twice", log, w, st);
    ledger_check_consistent(s.db, s.name, N_PARTITIONS);
    PQfinish(s.db);
}

/* A worker dies of SIGSEGV while the supervisor drains. */
static void scenario_segv(void)
{
    char log[512], out[512];
    pid_t sup, w[2];
    int st;
    scen s;

    setup(&s, "stop_segv", 808);
    snprintf(log, sizeof log, "%s/stop_segv.log", g_dir);
    snprintf(out, sizeof out, "%s/stop_segv.out", g_dir);
    sup = start_mid_stream(&s, log, out, w);
    TK_CHECK_EQ_INT64(tk_kill(w[0], SIGSTOP), 0, "SIGSTOP of worker 0");
    TK_CHECK_EQ_INT64(tk_kill(sup, SIGTERM), 0, "SIGTERM of the supervisor");
    wait_stopping(log, sup);
    /* Pending with the supervisor's SIGTERM; a synchronous signal is
     * delivered first when the worker runs again (a sanitizer's SIGSEGV
     * handler makes it an exit 1 instead of a death by signal 11). */
    TK_CHECK_EQ_INT64(tk_kill(w[0], SIGSEGV), 0, "SIGSEGV of worker 0");
    TK_CHECK_EQ_INT64(tk_kill(w[0], SIGCONT), 0, "SIGCONT of worker 0");
    st = wait_exit(sup, (SHUTDOWN_TIMEOUT_S + 10) * 1000, log);
    check_unclean_stop("segv", log, w, st);
    ledger_check_consistent(s.db, s.name, N_PARTITIONS);
    PQfinish(s.db);
}

int main(void)
{
    int64_t t0 = tk_now_ms();

    TK_CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0, "PR_SET_CHILD_SUBREAPER");
    g_mock = tk_mock_start(1);
    tk_tmpdir("exactly-supervisor-stop", g_dir, sizeof g_dir);
    snprintf(g_lockdir, sizeof g_lockdir, "%s/locks", g_dir);
    TK_CHECK(mkdir(g_lockdir, 0755) == 0, "mkdir %s", g_lockdir);
    tk_note("logs in %s", g_dir);

    if (tk_wanted("ctrlc"))
        scenario_ctrlc();
    if (tk_wanted("pkill"))
        scenario_pkill();
    if (tk_wanted("twice"))
        scenario_twice();
    if (tk_wanted("segv"))
        scenario_segv();

    tk_note("supervisor stop tests passed in %.1f s",
            (double)(tk_now_ms() - t0) / 1000.0);
    tk_mock_stop(g_mock);
    ledger_cleanup_dir(g_dir);
    return 0;
}
