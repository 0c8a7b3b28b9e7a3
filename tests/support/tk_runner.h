/*
 * tk_runner.h: running the exactly binary from tests: a command to its end
 * with a deadline, workers started, waited for and stopped, the pids and
 * claims their logs show, and the one parser of a worker's summary line.
 * Part of testkit (testkit.h includes every part).
 *
 * Every wait has a deadline; a process still running at it is stopped and
 * the test fails, printing the last 40 lines of its log first.
 */
#ifndef EXACTLY_TK_RUNNER_H
#define EXACTLY_TK_RUNNER_H

#include <stdint.h>
#include <sys/types.h>

#include "tk_checks.h"

/* $EXACTLY_BIN, or fail. */
const char *tk_exactly_bin(void);

/* Start `exactly ARGS...` (args: NULL-terminated, args[0] the command),
 * output appended to log. */
pid_t tk_exactly_startv(const char *log, const char *const *args);

/* Wait up to timeout_ms for pid; still running then: SIGTERM (SIGKILL after
 * 5 s), print log's tail and fail the test, naming `what`. Returns the exit
 * status (as tk_wait). */
int tk_exactly_wait(pid_t pid, int timeout_ms, const char *log,
                    const char *what);

/* Run `exactly ARGS...` to its end within timeout_ms (see tk_exactly_wait)
 * and return its exit status. tk_exactly takes the arguments inline,
 * NULL-terminated: tk_exactly(log, 60000, "offsets", "-c", cfg, NULL). */
int tk_exactlyv(const char *log, int timeout_ms, const char *const *args);
int tk_exactly(const char *log, int timeout_ms, const char *arg, ...);

/* tk_exactlyv, then the log's whole text in *out (malloc'd, "" when it
 * cannot be read; the caller frees): a command whose output is checked. */
int tk_exactly_output(const char *log, int timeout_ms,
                      const char *const *args, char **out);

/* `exactly migrate -c config`, output appended to log; fails (showing the
 * log's tail) unless it exits 0 within 60 s. */
void tk_migrate(const char *config, const char *log);

/* Start `exactly worker -c config [--exit-idle MS] [extra...]` (exit_idle_ms
 * <= 0: no --exit-idle; extra NULL or NULL-terminated, e.g. {"--pipeline",
 * "p", NULL}), output appended to log. */
pid_t tk_worker_start(const char *config, int exit_idle_ms, const char *log,
                      const char *const *extra);

/* tk_exactly_wait for a worker. */
int tk_worker_wait(pid_t pid, int timeout_ms, const char *log);

/* tk_worker_start + tk_worker_wait: a worker run to its idle exit. */
int tk_worker_run(const char *config, int exit_idle_ms, int timeout_ms,
                  const char *log, const char *const *extra);

/* SIGTERM, up to timeout_ms, then SIGKILL; returns the exit status. */
int tk_worker_stop(pid_t pid, int timeout_ms);

/* Lines of the file holding a and (unless NULL) b. */
int tk_log_lines_with(const char *path, const char *a, const char *b);

/* The worker_pid of the n-th (from 0) `msg="worker started"` line of a
 * supervisor's log; waits up to timeout_ms for it while sup (> 0) runs. */
pid_t tk_worker_pid(const char *log, int n, pid_t sup, int timeout_ms);

/* Lines of log where a process said it claimed a partition; with pid > 0
 * only those of that process (its " pid=N " field). */
int tk_claims(const char *log, pid_t pid);

/* Wait up to timeout_ms until tk_claims(log, pid) >= count; fails the test
 * (showing the log) on the deadline or when proc (> 0) exits first. */
void tk_wait_claims(const char *log, pid_t pid, int count, pid_t proc,
                    int timeout_ms);

/* ------------------------------------------------------------------ */
/* The summary line                                                    */
/* ------------------------------------------------------------------ */

/* The counters of a worker's summary on stdout, one line per pipeline:
 * "pipeline NAME: consumed N, applied N, deduplicated N, dead-lettered N,
 * skipped (no row) N; batches committed N, rolled back N, fenced N;
 * retries N". */
typedef struct tk_run_summary {
    char pipeline[101];
    int64_t consumed, applied, deduplicated, dead_lettered, skipped;
    int64_t committed, rolled_back, fenced, retries;
} tk_run_summary;

/* Every summary line of log, in order, of pipeline (NULL: any); the first
 * max go to out (may be NULL with max 0). Returns how many there are. */
int tk_summaries(const char *log, const char *pipeline, tk_run_summary *out,
                 int max);

/* The last summary line of pipeline in log into *out: 1, or 0 when there
 * is none (the worker did not exit through its end); *out is zeroed. */
int tk_summary(const char *log, const char *pipeline, tk_run_summary *out);

/* The last summary line of any pipeline: 1, or 0 when there is none. */
int tk_last_summary(const char *log, tk_run_summary *out);

/* tk_summary, failing the test (showing the log's tail) when the line is
 * missing. */
void tk_summary_required_at(const char *file, int line, const char *log,
                            const char *pipeline, tk_run_summary *out);
#define tk_summary_required(log, pipeline, out) \
    tk_summary_required_at(__FILE__, __LINE__, (log), (pipeline), (out))

#endif /* EXACTLY_TK_RUNNER_H */
