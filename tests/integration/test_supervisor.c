/*
 * `exactly run`, the supervisor (DESIGN 5), driven from outside the way an
 * operator or an init system would: its processes are found in its log
 * (`worker started ... worker_pid=N`) and sent signals.
 *
 * Every scenario runs a ledger pipeline with `workers: 2` on its own
 * 4-partition topic, consumer group and database (so each exactly-once
 * check sees only its own messages), session.timeout.ms 3000 so that a
 * dead member leaves the group in seconds, and max_crashes 1000: the kills
 * here come from outside, and the crash guard would otherwise count a kill
 * that lands twice on one batch as a poison record (but in loop: 1, which
 * keeps its crash loop at 5 deaths).
 *
 *   kill     SIGKILL of one worker mid-stream: the ledger still agrees
 *            with the stored offsets; the supervisor logs the death,
 *            restarts the worker after its backoff (>= 0.5 s), the
 *            restarted worker takes partitions and applies messages, and
 *            the run, ended by --exit-idle once production stops, exits 0
 *            with every message applied exactly once.
 *   term     SIGTERM mid-stream (after a SIGHUP has rotated the log file):
 *            the supervisor exits 0 well within --shutdown-timeout, its
 *            workers are gone, the ledger agrees with the stored offsets,
 *            and a later `exactly worker --exit-idle` applies exactly what
 *            was left; the lines written after the SIGHUP are in the new
 *            file only.
 *   lock     a second `exactly run` of the same pipeline (lock dir taken
 *            from $EXACTLY_LOCK_DIR this time) exits 2 naming the lock
 *            file and the first supervisor's pid, starting nothing; SIGKILL
 *            of the first supervisor takes its workers with it
 *            (PR_SET_PDEATHSIG) within 5 s; the lock file it left behind
 *            does not block the next supervisor; a worker that ignores the
 *            stop (SIGSTOP) is killed at --shutdown-timeout (exit 1); and a
 *            second SIGTERM kills at once without waiting for that timeout.
 *   loop     a handler that abort()s in open(), before its worker joins
 *            the group (a crash the crash guard never sees: a poison
 *            record is the guard's, test_supervisor_poison.c): both
 *            workers die 5 times within 10 s of their start, with restart
 *            delays of 0.5, 1, 2 and 4 s between; the supervisor says
 *            "crash loop" and exits 1, and nothing was applied.
 *
 * The test process makes itself a child subreaper, so that the workers of
 * a SIGKILLed supervisor become its children: it can then reap them and
 * tell "gone" from "a zombie nobody reaps" (PID 1 of a container may not).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <inttypes.h>
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
/* Small batches keep the workers busy long enough to be caught mid-stream. */
#define BATCH_MAX 50
#define BATCH_WAIT_MS 20
/* term: a worker applies some 30,000 messages a second in batches of 50,
 * faster than the test can produce and signal; batches of 5 (a
 * transaction, so a commit, each) make it about 3,000 for both, so that
 * SIGTERM lands while most of a 40,000-message stream still waits. */
#define BATCH_SLOW 5
#define TERM_MESSAGES 40000
#define WAVE 1000
/* The supervisor's first restart delay (lib/process/supervisor.c RESTART_MIN_MS),
 * less the granularity of the clocks compared. */
#define MIN_RESTART_MS 450
#define SHUTDOWN_TIMEOUT_S 20
/* A dead member leaves the group when its session expires, and the mock
 * makes a join wait about the session less 1 s: keep it short. */
#define SESSION_MS 3000
#define HEARTBEAT_MS "300"
#define LOOP_SESSION_MS 3000
/* The ID the crash-loop pipeline's poison records carry (they never reach
 * apply(): the handler dies in open()). */
#define POISON_ID 499

static tk_mock *g_mock;
static char g_dir[256];
static char g_lockdir[512];

/* One scenario: a topic, a consumer group, a database of its own. */
typedef struct scen {
    const char *name;   /* topic, group and database prefix */
    char conninfo[1024];
    char config[512];
    int64_t counts[LEDGER_ACCOUNTS];
    int64_t produced;
    uint64_t seed;
    int waves;
    PGconn *db;
} scen;

/* ------------------------------------------------------------------ */
/* Set-up                                                              */
/* ------------------------------------------------------------------ */

/* The ledger pipeline with two workers; crash_id > 0 makes its handler
 * abort() in open() (crash_in_open), with max_crashes 1: the guard never
 * sees those deaths, and the supervisor's crash loop takes its fewest
 * (5) fast failures. */
static void write_config(const scen *s, int crash_id, int batch_max,
                         int session_ms)
{
    ledger_config lc;
    tk_config cfg;
    tk_pipeline *pl = &cfg.pipelines[0];
    char session[24];

    memset(&lc, 0, sizeof lc);
    lc.bootstraps = tk_mock_bootstraps(g_mock);
    lc.conninfo = s->conninfo;
    lc.topic = s->name;
    lc.group = s->name;
    lc.max_messages = batch_max;
    lc.max_wait_ms = BATCH_WAIT_MS;
    lc.max_crashes = crash_id > 0 ? 1 : 1000;
    ledger_config_fill(&cfg, &lc);
    pl->workers = 2;
    if (crash_id > 0)
        pl->options[0] = (tk_prop){"crash_in_open", "true"};
    snprintf(session, sizeof session, "%d", session_ms);
    pl->kafka[0] = (tk_prop){"session.timeout.ms", session};
    pl->kafka[1] = (tk_prop){"heartbeat.interval.ms", HEARTBEAT_MS};
    tk_config_write(s->config, &cfg);
}

static void setup(scen *s, const char *name, int crash_id, int batch_max,
                  int session_ms, uint64_t seed)
{
    char log[512];

    memset(s, 0, sizeof *s);
    s->name = name;
    s->seed = seed;
    tk_mock_create_topic(g_mock, name, N_PARTITIONS);
    tk_pg_create_db(name, s->conninfo, sizeof s->conninfo);
    ledger_setup_db(s->conninfo);
    snprintf(s->config, sizeof s->config, "%s/%s.yaml", g_dir, name);
    write_config(s, crash_id, batch_max, session_ms);
    snprintf(log, sizeof log, "%s/%s-migrate.log", g_dir, name);
    tk_migrate(s->config, log);
    s->db = tk_pg_connect(s->conninfo);
}

/* Produce n more IDs (another seed per wave) and count them. */
static void produce_wave(scen *s, size_t n)
{
    int64_t wave[LEDGER_ACCOUNTS];
    int i;

    tk_produce_ids(tk_mock_bootstraps(g_mock), s->name, n, LEDGER_ACCOUNTS,
                   N_PARTITIONS, s->seed + (uint64_t)s->waves, wave);
    for (i = 0; i < LEDGER_ACCOUNTS; i++)
        s->counts[i] += wave[i];
    s->produced += (int64_t)n;
    s->waves++;
}

/* `exactly run` of the scenario's config, logging to log (its stdout and
 * stderr to out); exit_idle_ms <= 0: no --exit-idle. */
static pid_t start_run(const scen *s, const char *log, const char *out,
                       int exit_idle_ms, int shutdown_s)
{
    char idle[24], shutdown[24];
    const char *args[12] = {"run", "-c", s->config, "--lock-dir", g_lockdir,
                            "--log-file", log, "--shutdown-timeout",
                            shutdown, NULL};

    snprintf(shutdown, sizeof shutdown, "%d", shutdown_s);
    if (exit_idle_ms > 0) {
        snprintf(idle, sizeof idle, "%d", exit_idle_ms);
        args[9] = "--exit-idle";
        args[10] = idle;
    }
    return tk_exactly_startv(out, args);
}

/* ------------------------------------------------------------------ */
/* Logs and processes                                                  */
/* ------------------------------------------------------------------ */

/* The integers after key in the lines holding a and b, in order, into
 * out[0..max); returns how many lines had one. */
static int ints_in_lines_with(const char *path, const char *a, const char *b,
                              const char *key, int64_t *out, int max)
{
    char *text = tk_read_file(path);
    char *line, *save = NULL;
    int n = 0;

    if (!text)
        return 0;
    for (line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        const char *k;
        if (strstr(line, a) && (!b || strstr(line, b)) &&
            (k = strstr(line, key)) != NULL && n < max)
            out[n++] = strtoll(k + strlen(key), NULL, 10);
    }
    free(text);
    return n;
}

/* The integer after key in the last line holding a and b, or -1. */
static int64_t last_int_in_lines_with(const char *path, const char *a,
                                      const char *b, const char *key)
{
    char *text = tk_read_file(path);
    char *line, *save = NULL;
    int64_t v = -1;

    if (!text)
        return -1;
    for (line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        const char *k;
        if (strstr(line, a) && (!b || strstr(line, b)) &&
            (k = strstr(line, key)) != NULL)
            v = strtoll(k + strlen(key), NULL, 10);
    }
    free(text);
    return v;
}

/* The first line of the file holding a, into buf ("" if none). */
static void first_line_with(const char *path, const char *a, char *buf,
                            size_t size)
{
    char *text = tk_read_file(path);
    char *line, *save = NULL;

    buf[0] = '\0';
    for (line = text ? strtok_r(text, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save))
        if (strstr(line, a)) {
            snprintf(buf, size, "%s", line);
            break;
        }
    free(text);
}

/* " pid=N " as it stands in a log line of process N (the leading space
 * keeps "worker_pid=N" out). */
static const char *pid_tag(pid_t pid, char *buf, size_t size)
{
    snprintf(buf, size, " pid=%d ", (int)pid);
    return buf;
}

/* Waits until worker pid is in its loop (its own "started" line), with
 * its signal handlers in place. */
static void wait_worker_running(const char *log, pid_t pid, pid_t sup)
{
    int64_t deadline = tk_now_ms() + 30000;
    char tag[32];

    pid_tag(pid, tag, sizeof tag);
    while (tk_log_lines_with(log, tag, "msg=\"started\"") == 0) {
        LEDGER_CHECK_LOG(tk_wait(sup, 0) == -1 && tk_now_ms() < deadline, log,
                         "worker %d did not start within 30 s (or the "
                         "supervisor exited); log: %s", (int)pid, log);
        tk_sleep_ms(10);
    }
}

/* 1 when the process no longer exists. Reaps it first when it became our
 * child (subreaper) and stores how it ended in *how (128 + signal, or the
 * exit code), so that a zombie is not mistaken for a live worker. */
static int pid_gone(pid_t pid, int *how)
{
    int st;

    if (waitpid(pid, &st, WNOHANG) == pid && how)
        *how = WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
    return kill(pid, 0) == -1 && errno == ESRCH;
}

/* Polls up to timeout_ms until every pid is gone; returns the ms it took,
 * or fails naming the survivors. */
static int64_t wait_gone(const pid_t *pids, int n, int timeout_ms, int *how,
                         const char *what)
{
    int64_t t0 = tk_now_ms();
    int i, left;

    for (;;) {
        left = 0;
        for (i = 0; i < n; i++)
            left += !pid_gone(pids[i], how ? &how[i] : NULL);
        if (left == 0)
            return tk_now_ms() - t0;
        if (tk_now_ms() - t0 > timeout_ms)
            break;
        tk_sleep_ms(10);
    }
    /* Leave nothing running behind a failed test. */
    for (i = 0; i < n; i++)
        if (!pid_gone(pids[i], NULL)) {
            tk_note("worker %d still exists; killing it", (int)pids[i]);
            kill(pids[i], SIGKILL);
        }
    tk_fail("%s: %d of %d worker(s) still exist after %d ms", what, left, n,
            timeout_ms);
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

/* ------------------------------------------------------------------ */
/* kill: SIGKILL of one worker                                         */
/* ------------------------------------------------------------------ */

static void scenario_kill(void)
{
    char log[512], out[512], tag[32];
    int64_t t0 = tk_now_ms(), t_kill, restart_ms, rows_at_kill, applied;
    pid_t sup, w0, w1, w0b;
    int st;
    scen s;

    setup(&s, "sup_kill", 0, BATCH_MAX, SESSION_MS, 101);
    snprintf(log, sizeof log, "%s/sup_kill.log", g_dir);
    snprintf(out, sizeof out, "%s/sup_kill.out", g_dir);
    produce_wave(&s, 16 * WAVE);
    sup = start_run(&s, log, out, 3000, SHUTDOWN_TIMEOUT_S);
    w0 = tk_worker_pid(log, 0, sup, 30000);
    w1 = tk_worker_pid(log, 1, sup, 30000);
    TK_CHECK(w0 != w1 && w0 != sup && w1 != sup,
             "worker pids %d, %d, supervisor %d", (int)w0, (int)w1, (int)sup);
    tk_wait_claims(log, w0, 1, sup, 60000);
    tk_wait_claims(log, w1, 1, sup, 60000);
    /* Some batches of both workers committed, most of the stream left. */
    while ((rows_at_kill = ledger_rows(s.db)) < 1000) {
        LEDGER_CHECK_LOG(tk_now_ms() - t0 < 60000 && tk_wait(sup, 0) == -1,
                         log, "nothing applied in 60 s; log: %s", log);
        tk_sleep_ms(10);
    }

    /* Mid-stream: messages are waiting for the worker that dies. */
    t_kill = tk_now_ms();
    TK_CHECK_EQ_INT64(tk_kill(w0, SIGKILL), 0, "SIGKILL of worker 0");
    TK_CHECK(rows_at_kill < s.produced, "the workers had applied all %"
             PRId64 " messages before the kill: not mid-stream",
             s.produced);
    w0b = tk_worker_pid(log, 2, sup, 10000);
    /* A batch and its offset commit together or not at all, even for the
     * worker killed inside one. */
    ledger_check_consistent(s.db, s.name, N_PARTITIONS);
    restart_ms = tk_now_ms() - t_kill;
    LEDGER_CHECK_LOG(tk_log_lines_with(log, "msg=\"worker killed by signal\"",
                                "worker=0 signal=9") == 1,
                     log, "no \"worker killed by signal ... worker=0 "
                     "signal=9\" line; log: %s", log);
    LEDGER_CHECK_LOG(restart_ms >= MIN_RESTART_MS, log,
                     "worker 0 restarted %" PRId64 " ms after its death: "
                     "no backoff; log: %s", restart_ms, log);
    LEDGER_CHECK_LOG(tk_log_lines_with(log, "msg=\"worker started\"",
                                "worker=0 worker_pid=") == 2,
                     log, "the restarted worker is not worker 0; log: %s",
                     log);
    /* The stream goes on while the new worker joins; it must get work. */
    pid_tag(w0b, tag, sizeof tag);
    while (tk_log_lines_with(log, tag, "msg=\"partition claimed\"") == 0) {
        LEDGER_CHECK_LOG(tk_now_ms() - t_kill < 60000 && tk_wait(sup, 0) == -1,
                         log, "restarted worker %d claimed nothing within "
                         "60 s; log: %s", (int)w0b, log);
        /* About 4,000 messages a second: a stream, not a flood (the mock
         * keeps only so much per partition). */
        produce_wave(&s, WAVE);
        tk_sleep_ms(200);
    }
    produce_wave(&s, 2 * WAVE);
    tk_note("[kill] worker %d killed with %" PRId64 " of %" PRId64
            " messages applied; restarted as %d after %" PRId64 " ms",
            (int)w0, rows_at_kill, s.produced, (int)w0b, restart_ms);

    /* No more production: the workers go idle and the run ends. */
    st = wait_exit(sup, 120000, log);
    LEDGER_CHECK_LOG(st == 0, log, "exactly run --exit-idle exited %d; "
                     "log: %s", st, log);
    LEDGER_CHECK_LOG(tk_log_lines_with(log, "msg=\"worker started\"", NULL) == 3 &&
                         tk_log_lines_with(log, "msg=\"worker finished\"", NULL) ==
                             2 &&
                         tk_log_lines_with(log, "msg=\"stopped\" code=0", NULL) == 1,
                     log, "expected 3 starts, 2 clean finishes and "
                     "\"stopped code=0\"; log: %s", log);
    applied = last_int_in_lines_with(log, tag, "msg=\"stopped\"", " applied=");
    LEDGER_CHECK_LOG(applied > 0, log, "the restarted worker %d applied %"
                     PRId64 " messages; log: %s", (int)w0b, applied, log);
    ledger_check_exactly_once(s.db, tk_mock_bootstraps(g_mock), s.name,
                              N_PARTITIONS, s.produced, s.counts,
                              LEDGER_ACCOUNTS);
    tk_note("[kill] passed in %.1f s: %" PRId64 " messages in %d waves, "
            "the restarted worker applied %" PRId64,
            (double)(tk_now_ms() - t0) / 1000.0, s.produced, s.waves,
            applied);
    PQfinish(s.db);
}

/* ------------------------------------------------------------------ */
/* term: SIGHUP, then SIGTERM mid-stream                               */
/* ------------------------------------------------------------------ */

static void scenario_term(void)
{
    char log[512], rotated[512], out[512], wlog[512], tag[32];
    int64_t t0 = tk_now_ms(), t_term, stop_ms, rows_at_term, rows_after;
    pid_t sup, w[2];
    ledger_summary sum;
    int st, i;
    scen s;

    setup(&s, "sup_term", 0, BATCH_SLOW, SESSION_MS, 202);
    snprintf(log, sizeof log, "%s/sup_term.log", g_dir);
    snprintf(rotated, sizeof rotated, "%s/sup_term.log.1", g_dir);
    snprintf(out, sizeof out, "%s/sup_term.out", g_dir);
    sup = start_run(&s, log, out, 0, SHUTDOWN_TIMEOUT_S);
    for (i = 0; i < 2; i++)
        w[i] = tk_worker_pid(log, i, sup, 30000);
    /* Both in the group, each with its partitions (empty so far). */
    for (i = 0; i < 2; i++)
        tk_wait_claims(log, w[i], 1, sup, 60000);

    /* Log rotation: move the file away, SIGHUP; from then on every
     * process writes to a new file at the configured path. Nothing is
     * logged on reopening, so give the workers' loops (100 ms poll) time
     * to see the flag. */
    TK_CHECK(rename(log, rotated) == 0, "rename %s: %s", log,
             strerror(errno));
    TK_CHECK_EQ_INT64(tk_kill(sup, SIGHUP), 0, "SIGHUP of the supervisor");
    tk_sleep_ms(1000);

    /* The stream, and SIGTERM while it is being applied. */
    produce_wave(&s, TERM_MESSAGES);
    while (ledger_rows(s.db) < 1000) {
        LEDGER_CHECK_LOG(tk_now_ms() - t0 < 60000 && tk_wait(sup, 0) == -1,
                         log, "nothing applied in 60 s; log: %s", log);
        tk_sleep_ms(5);
    }
    rows_at_term = ledger_rows(s.db);
    t_term = tk_now_ms();
    TK_CHECK_EQ_INT64(tk_kill(sup, SIGTERM), 0, "SIGTERM of the supervisor");
    st = wait_exit(sup, (SHUTDOWN_TIMEOUT_S + 10) * 1000, log);
    stop_ms = tk_now_ms() - t_term;
    LEDGER_CHECK_LOG(st == 0, log, "exactly run exited %d after SIGTERM; "
                     "log: %s", st, log);
    LEDGER_CHECK_LOG(stop_ms < SHUTDOWN_TIMEOUT_S * 1000, log,
                     "stopping took %" PRId64 " ms, not within the "
                     "shutdown timeout", stop_ms);
    /* The supervisor reaped them before it exited. */
    wait_gone(w, 2, 0, NULL, "after the supervisor's clean exit");
    LEDGER_CHECK_LOG(tk_log_lines_with(log, "msg=\"stopping: workers commit their "
                                     "batch and leave\"", NULL) == 1 &&
                         tk_log_lines_with(log, "msg=\"worker finished\"", NULL) ==
                             2 &&
                         tk_log_lines_with(log, "msg=\"stopped\" code=0", NULL) == 1 &&
                         tk_log_lines_with(log, "msg=\"killing\"", NULL) == 0,
                     log, "expected a drain (stopping, 2 workers finished, "
                     "code 0, nobody killed); log: %s", log);
    /* After the SIGHUP each process wrote to the new file: the workers'
     * final counters are there and not in the rotated one. */
    for (i = 0; i < 2; i++) {
        pid_tag(w[i], tag, sizeof tag);
        LEDGER_CHECK_LOG(tk_log_lines_with(log, tag, "msg=\"stopped\"") == 1, log,
                         "worker %d's final line is not in the reopened log "
                         "file; log: %s", (int)w[i], log);
        LEDGER_CHECK_LOG(tk_log_lines_with(rotated, tag, "msg=\"stopped\"") == 0,
                         rotated, "worker %d wrote its final line into the "
                         "rotated file %s", (int)w[i], rotated);
    }
    TK_CHECK(tk_log_lines_with(rotated, "msg=\"worker started\"", NULL) == 2 &&
                 tk_log_lines_with(rotated, "stopping:", NULL) == 0,
             "the rotated file %s should hold the start and nothing of the "
             "stop", rotated);

    /* What committed is consistent, and some of the stream was left. */
    rows_after = ledger_check_consistent(s.db, s.name, N_PARTITIONS);
    TK_CHECK(rows_after < s.produced, "all %" PRId64 " messages were applied "
             "before SIGTERM took effect: not mid-stream", s.produced);
    tk_note("[term] SIGTERM with %" PRId64 " of %" PRId64 " applied; the "
            "supervisor exited 0 after %" PRId64 " ms with %" PRId64
            " applied, both workers gone",
            rows_at_term, s.produced, stop_ms, rows_after);

    /* One worker finishes the rest. */
    snprintf(wlog, sizeof wlog, "%s/sup_term-final.log", g_dir);
    st = tk_wait(ledger_start_worker(s.config, 3000, wlog), 120000);
    LEDGER_CHECK_LOG(st == 0, wlog, "final exactly worker exited %d; log: %s",
                     st, wlog);
    LEDGER_CHECK_LOG(ledger_read_summary(wlog, &sum), wlog,
                     "no summary from the final worker; log: %s", wlog);
    TK_CHECK_EQ_INT64(sum.applied, s.produced - rows_after,
                      "messages the final worker applied (what the stopped "
                      "supervisor left)");
    ledger_check_exactly_once(s.db, tk_mock_bootstraps(g_mock), s.name,
                              N_PARTITIONS, s.produced, s.counts,
                              LEDGER_ACCOUNTS);
    tk_note("[term] passed in %.1f s: the final worker applied the %" PRId64
            " left", (double)(tk_now_ms() - t0) / 1000.0, sum.applied);
    PQfinish(s.db);
}

/* ------------------------------------------------------------------ */
/* lock: the lock file, SIGKILL of the supervisor, forced stops        */
/* ------------------------------------------------------------------ */

static void scenario_lock(void)
{
    char log[512], out[512], lock[600], blog[512], slog[512], cout[512];
    char needle[1024], *text;
    int64_t t0 = tk_now_ms(), t, gone_ms, ms;
    pid_t a, b, c, wa[2], wc[2];
    int how[2] = {-1, -1};
    int st, i;
    scen s;

    setup(&s, "sup_lock", 0, BATCH_MAX, SESSION_MS, 303);
    produce_wave(&s, 4 * WAVE);
    snprintf(log, sizeof log, "%s/sup_lock-a.log", g_dir);
    snprintf(out, sizeof out, "%s/sup_lock-a.out", g_dir);
    snprintf(lock, sizeof lock, "%s/exactly-%s.lock", g_lockdir, s.name);

    a = start_run(&s, log, out, 0, SHUTDOWN_TIMEOUT_S);
    for (i = 0; i < 2; i++)
        wa[i] = tk_worker_pid(log, i, a, 30000);
    text = tk_read_file(lock);
    TK_CHECK(text && strtol(text, NULL, 10) == (long)a,
             "lock file %s holds \"%s\", not the supervisor's pid %d", lock,
             text ? text : "(missing)", (int)a);
    free(text);

    /* A second supervisor of the same pipeline, finding the lock directory
     * through the environment. */
    snprintf(blog, sizeof blog, "%s/sup_lock-b.out", g_dir);
    TK_CHECK(setenv("EXACTLY_LOCK_DIR", g_lockdir, 1) == 0, "setenv");
    {
        char *argv[] = {(char *)ledger_exactly_bin(), "run", "-c", s.config,
                        NULL};
        b = tk_spawn(argv, blog);
    }
    TK_CHECK(unsetenv("EXACTLY_LOCK_DIR") == 0, "unsetenv");
    st = wait_exit(b, 30000, blog);
    LEDGER_CHECK_LOG(st == 2, blog, "second exactly run exited %d, expected "
                     "2 (lock held); output: %s", st, blog);
    snprintf(needle, sizeof needle, " supervisor_pid=%d ", (int)a);
    LEDGER_CHECK_LOG(tk_file_contains(blog, lock) &&
                         tk_file_contains(blog, needle),
                     blog, "the refusal names neither the lock file %s nor "
                     "\"%s\"", lock, needle);
    LEDGER_CHECK_LOG(!tk_file_contains(blog, "worker started"), blog,
                     "the refused supervisor started workers");
    TK_CHECK(tk_wait(a, 0) == -1 && !pid_gone(wa[0], NULL) &&
                 !pid_gone(wa[1], NULL),
             "the first supervisor or its workers died of the refusal");
    first_line_with(blog, "lock file", needle, sizeof needle);
    tk_note("[lock] a second exactly run exited 2: %s", needle);

    /* SIGKILL of the supervisor: the workers follow (PR_SET_PDEATHSIG). */
    TK_CHECK_EQ_INT64(tk_kill(a, SIGKILL), 0, "SIGKILL of the supervisor");
    st = tk_wait(a, 10000);
    TK_CHECK_EQ_INT64(st, 128 + SIGKILL, "supervisor exit status");
    gone_ms = wait_gone(wa, 2, 5000, how, "after SIGKILL of the supervisor");
    tk_note("[lock] supervisor SIGKILLed: its 2 workers gone after %" PRId64
            " ms (reaped here with status %d and %d; 137 = SIGKILL, -1 = "
            "reaped elsewhere)", gone_ms, how[0], how[1]);

    /* The lock file it left (with its pid) does not block the next one;
     * a worker that cannot stop (SIGSTOP) is killed at the timeout. */
    snprintf(slog, sizeof slog, "%s/sup_lock-c.log", g_dir);
    snprintf(cout, sizeof cout, "%s/sup_lock-c.out", g_dir);
    c = start_run(&s, slog, cout, 0, 2);
    for (i = 0; i < 2; i++) {
        wc[i] = tk_worker_pid(slog, i, c, 30000);
        wait_worker_running(slog, wc[i], c);
    }
    text = tk_read_file(lock);
    TK_CHECK(text && strtol(text, NULL, 10) == (long)c,
             "lock file holds \"%s\", not the new supervisor's pid %d",
             text ? text : "(missing)", (int)c);
    free(text);
    TK_CHECK_EQ_INT64(tk_kill(wc[0], SIGSTOP), 0, "SIGSTOP of a worker");
    t = tk_now_ms();
    TK_CHECK_EQ_INT64(tk_kill(c, SIGTERM), 0, "SIGTERM of the supervisor");
    st = wait_exit(c, 20000, slog);
    ms = tk_now_ms() - t;
    LEDGER_CHECK_LOG(st == 1, slog, "exactly run with a stuck worker exited "
                     "%d, expected 1 (forced stop); log: %s", st, slog);
    LEDGER_CHECK_LOG(ms >= 1900 && ms < 8000, slog,
                     "the forced stop came after %" PRId64 " ms, expected "
                     "about --shutdown-timeout 2 s", ms);
    LEDGER_CHECK_LOG(tk_log_lines_with(slog, "msg=\"killing\" workers=1", NULL) ==
                             1 &&
                         tk_log_lines_with(slog, "msg=\"worker finished\"",
                                    "worker=1") == 1,
                     slog, "expected worker 1 to finish and worker 0 to be "
                     "killed; log: %s", slog);
    wait_gone(wc, 2, 0, NULL, "after the forced stop");
    tk_note("[lock] the next supervisor took the stale lock; with a stopped "
            "worker SIGTERM ended in SIGKILL after %" PRId64 " ms, exit 1",
            ms);

    /* A second signal kills at once, without the 60 s timeout. */
    snprintf(slog, sizeof slog, "%s/sup_lock-d.log", g_dir);
    snprintf(cout, sizeof cout, "%s/sup_lock-d.out", g_dir);
    c = start_run(&s, slog, cout, 0, 60);
    for (i = 0; i < 2; i++) {
        wc[i] = tk_worker_pid(slog, i, c, 30000);
        wait_worker_running(slog, wc[i], c);
    }
    TK_CHECK_EQ_INT64(tk_kill(wc[0], SIGSTOP), 0, "SIGSTOP of a worker");
    TK_CHECK_EQ_INT64(tk_kill(c, SIGTERM), 0, "SIGTERM of the supervisor");
    LEDGER_CHECK_LOG(ledger_wait_log(slog, "stopping:", 1, c, 10000, NULL),
                     slog, "no \"stopping\" line after SIGTERM; log: %s",
                     slog);
    tk_sleep_ms(300); /* draining, the stopped worker holding it up */
    TK_CHECK(tk_wait(c, 0) == -1, "the supervisor did not wait for its "
             "stopped worker");
    t = tk_now_ms();
    TK_CHECK_EQ_INT64(tk_kill(c, SIGTERM), 0, "second SIGTERM");
    st = wait_exit(c, 20000, slog);
    ms = tk_now_ms() - t;
    LEDGER_CHECK_LOG(st == 1 && ms < 3000, slog,
                     "after a second SIGTERM exactly run exited %d in %"
                     PRId64 " ms, expected 1 at once; log: %s", st, ms, slog);
    LEDGER_CHECK_LOG(tk_log_lines_with(slog, "msg=\"killing\"", NULL) == 1, slog,
                     "no \"killing\" line; log: %s", slog);
    wait_gone(wc, 2, 0, NULL, "after the second signal");
    tk_note("[lock] passed in %.1f s: a second SIGTERM ended the drain in %"
            PRId64 " ms, exit 1", (double)(tk_now_ms() - t0) / 1000.0, ms);
    PQfinish(s.db);
}

/* ------------------------------------------------------------------ */
/* loop: workers that die at once, again and again                     */
/* ------------------------------------------------------------------ */

static void scenario_loop(void)
{
    char log[512], out[512];
    char keys[N_PARTITIONS * 11][16];
    tk_msg msgs[N_PARTITIONS * 11];
    int64_t t0 = tk_now_ms();
    size_t n = 0;
    int p, k, st, deaths, w;
    pid_t sup;
    scen s;

    /* Migrated from the configuration without the crash: only the run's
     * workers may die of it. */
    setup(&s, "sup_loop", 0, BATCH_MAX, LOOP_SESSION_MS, 404);
    write_config(&s, POISON_ID, BATCH_MAX, LOOP_SESSION_MS);
    /* Messages wait on every partition: none may be applied, since no
     * worker lives to open its handler. */
    memset(msgs, 0, sizeof msgs);
    for (p = 0; p < N_PARTITIONS; p++)
        for (k = 0; k < 11; k++, n++) {
            snprintf(keys[n], sizeof keys[n], "%d",
                     k == 0 ? POISON_ID : p * 10 + k);
            msgs[n].partition = p;
            msgs[n].key = keys[n];
            msgs[n].key_len = strlen(keys[n]);
        }
    tk_produce(tk_mock_bootstraps(g_mock), s.name, msgs, n);

    snprintf(log, sizeof log, "%s/sup_loop.log", g_dir);
    snprintf(out, sizeof out, "%s/sup_loop.out", g_dir);
    sup = start_run(&s, log, out, 0, SHUTDOWN_TIMEOUT_S);
    st = wait_exit(sup, 120000, log);
    deaths = tk_log_lines_with(log, "msg=\"worker killed by signal\"", "signal=6");
    LEDGER_CHECK_LOG(st == 1, log, "exactly run exited %d, expected 1 (crash "
                     "loop); log: %s", st, log);
    LEDGER_CHECK_LOG(tk_log_lines_with(log, "crash loop", "worker=0") >= 1 &&
                         tk_log_lines_with(log, "crash loop", "worker=1") >= 1 &&
                         tk_log_lines_with(log, "msg=\"every worker of the "
                                         "pipeline is in a crash loop",
                                    " pipeline=" LEDGER_PIPELINE) == 1,
                     log, "expected both workers in a crash loop and the "
                     "supervisor giving up; log: %s", log);
    LEDGER_CHECK_LOG(deaths >= 10, log, "only %d deaths by SIGABRT logged "
                     "(5 per worker make a crash loop); log: %s", deaths, log);
    TK_CHECK_EQ_INT64(ledger_rows(s.db), 0,
                      "ledger rows (every batch held the poison)");
    /* The restart delay doubles with each fast failure: 0.5, 1, 2, 4 s
     * before the 5th death, which makes the loop. */
    for (w = 0; w < 2; w++) {
        char which[32];
        int64_t delay[16];
        int n_delays, i;

        snprintf(which, sizeof which, "worker=%d signal=6", w);
        n_delays = ints_in_lines_with(log, "msg=\"worker killed by signal\"",
                                      which, " restart_in_ms=", delay, 16);
        LEDGER_CHECK_LOG(n_delays >= 5, log, "worker %d died %d times", w,
                         n_delays);
        for (i = 0; i < 5; i++)
            LEDGER_CHECK_LOG(delay[i] <= 500LL << i &&
                                 delay[i] >= (500LL << i) - 50,
                             log, "worker %d: restart delay after death %d "
                             "is %" PRId64 " ms, expected %lld (0.5 s "
                             "doubling)", w, i + 1, delay[i], 500LL << i);
    }
    tk_note("[loop] passed in %.1f s: exit 1 after %d deaths by SIGABRT, "
            "%d worker starts",
            (double)(tk_now_ms() - t0) / 1000.0, deaths,
            tk_log_lines_with(log, "msg=\"worker started\"", NULL));
    PQfinish(s.db);
}

int main(void)
{
    int64_t t0 = tk_now_ms();

    /* The workers of a SIGKILLed supervisor become our children, so that
     * we can reap them (see the top of the file). */
    TK_CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0, "PR_SET_CHILD_SUBREAPER");
    g_mock = tk_mock_start(1);
    tk_tmpdir("exactly-supervisor", g_dir, sizeof g_dir);
    snprintf(g_lockdir, sizeof g_lockdir, "%s/locks", g_dir);
    TK_CHECK(mkdir(g_lockdir, 0755) == 0, "mkdir %s", g_lockdir);
    tk_note("logs in %s", g_dir);

    if (tk_wanted("kill"))
        scenario_kill();
    if (tk_wanted("term"))
        scenario_term();
    if (tk_wanted("lock"))
        scenario_lock();
    if (tk_wanted("loop"))
        scenario_loop();

    tk_note("supervisor tests passed in %.1f s",
            (double)(tk_now_ms() - t0) / 1000.0);
    tk_mock_stop(g_mock);
    ledger_cleanup_dir(g_dir);
    return 0;
}
