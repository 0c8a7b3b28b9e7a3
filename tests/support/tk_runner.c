/*
 * tk_runner.c: running exactly from tests and reading its summary lines.
 * The contract of each function is in tk_runner.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "testkit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The most arguments one exactly command line takes here. */
#define TK_MAX_ARGS 32

const char *tk_exactly_bin(void)
{
    return tk_env_required("EXACTLY_BIN");
}

pid_t tk_exactly_startv(const char *log, const char *const *args)
{
    char *argv[TK_MAX_ARGS + 2];
    size_t i;

    argv[0] = (char *)tk_exactly_bin();
    for (i = 0; args[i]; i++) {
        TK_CHECK(i < TK_MAX_ARGS, "tk_exactly: more than %d arguments",
                 TK_MAX_ARGS);
        argv[i + 1] = (char *)args[i];
    }
    argv[i + 1] = NULL;
    return tk_spawn(argv, log);
}

int tk_exactly_wait(pid_t pid, int timeout_ms, const char *log,
                    const char *what)
{
    int status = tk_wait(pid, timeout_ms);

    if (status == -1) {
        tk_terminate(pid, 5000);
        tk_log_tail(log, 40);
        tk_fail("%s still running after %d ms; log %s", what, timeout_ms,
                log);
    }
    return status;
}

int tk_exactlyv(const char *log, int timeout_ms, const char *const *args)
{
    char what[128];

    snprintf(what, sizeof what, "exactly %s", args[0] ? args[0] : "");
    return tk_exactly_wait(tk_exactly_startv(log, args), timeout_ms, log,
                           what);
}

int tk_exactly(const char *log, int timeout_ms, const char *arg, ...)
{
    const char *args[TK_MAX_ARGS + 1];
    va_list ap;
    size_t n = 0;

    va_start(ap, arg);
    for (; arg; arg = va_arg(ap, const char *)) {
        TK_CHECK(n < TK_MAX_ARGS, "tk_exactly: more than %d arguments",
                 TK_MAX_ARGS);
        args[n++] = arg;
    }
    va_end(ap);
    args[n] = NULL;
    return tk_exactlyv(log, timeout_ms, args);
}

int tk_exactly_output(const char *log, int timeout_ms,
                      const char *const *args, char **out)
{
    int status = tk_exactlyv(log, timeout_ms, args);

    *out = tk_read_file(log);
    if (*out == NULL) {
        *out = strdup("");
        TK_CHECK(*out != NULL, "out of memory");
    }
    return status;
}

void tk_migrate(const char *config, const char *log)
{
    int status = tk_exactly(log, 60000, "migrate", "-c", config, NULL);

    if (status != 0) {
        tk_log_tail(log, 40);
        tk_fail("exactly migrate -c %s exited with %d; log: %s", config,
                status, log);
    }
}

pid_t tk_worker_start(const char *config, int exit_idle_ms, const char *log,
                      const char *const *extra)
{
    const char *args[TK_MAX_ARGS + 1];
    char idle[24];
    size_t n = 0, i;

    args[n++] = "worker";
    args[n++] = "-c";
    args[n++] = config;
    if (exit_idle_ms > 0) {
        snprintf(idle, sizeof idle, "%d", exit_idle_ms);
        args[n++] = "--exit-idle";
        args[n++] = idle;
    }
    for (i = 0; extra && extra[i]; i++) {
        TK_CHECK(n < TK_MAX_ARGS, "tk_worker_start: too many arguments");
        args[n++] = extra[i];
    }
    args[n] = NULL;
    return tk_exactly_startv(log, args);
}

int tk_worker_wait(pid_t pid, int timeout_ms, const char *log)
{
    return tk_exactly_wait(pid, timeout_ms, log, "worker");
}

int tk_worker_run(const char *config, int exit_idle_ms, int timeout_ms,
                  const char *log, const char *const *extra)
{
    pid_t pid = tk_worker_start(config, exit_idle_ms, log, extra);
    int status = tk_wait(pid, timeout_ms);

    if (status == -1) {
        tk_terminate(pid, 5000);
        tk_log_tail(log, 40);
        tk_fail("worker still running after %d ms (--exit-idle %d); log %s",
                timeout_ms, exit_idle_ms, log);
    }
    return status;
}

int tk_worker_stop(pid_t pid, int timeout_ms)
{
    return tk_terminate(pid, timeout_ms);
}

int tk_log_lines_with(const char *path, const char *a, const char *b)
{
    char *text = tk_read_file(path);
    char *line, *save = NULL;
    int n = 0;

    if (text == NULL)
        return 0;
    for (line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save))
        if (strstr(line, a) && (b == NULL || strstr(line, b)))
            n++;
    free(text);
    return n;
}

pid_t tk_worker_pid(const char *log, int n, pid_t sup, int timeout_ms)
{
    static const char started[] = "msg=\"worker started\"";
    char *text, *line, *save = NULL;
    pid_t pid = -1;
    int seen = 0;

    if (!tk_wait_log(log, started, n + 1, sup, timeout_ms, NULL)) {
        tk_log_tail(log, 40);
        tk_fail("no %d. \"worker started\" line within %d ms (or the "
                "supervisor exited); log: %s", n + 1, timeout_ms, log);
    }
    text = tk_read_file(log);
    TK_CHECK(text != NULL, "cannot read %s", log);
    for (line = strtok_r(text, "\n", &save); line && pid < 0;
         line = strtok_r(NULL, "\n", &save)) {
        const char *k;

        if (!strstr(line, started) || seen++ < n)
            continue;
        k = strstr(line, "worker_pid=");
        TK_CHECK(k != NULL, "\"worker started\" line without worker_pid: %s",
                 line);
        pid = (pid_t)strtol(k + strlen("worker_pid="), NULL, 10);
    }
    free(text);
    TK_CHECK(pid > 0, "no worker_pid in the %d. start line of %s", n + 1, log);
    return pid;
}

int tk_claims(const char *log, pid_t pid)
{
    char tag[32];

    if (pid <= 0)
        return tk_log_lines_with(log, "partition claimed", NULL);
    /* The leading space keeps "worker_pid=N" out. */
    snprintf(tag, sizeof tag, " pid=%d ", (int)pid);
    return tk_log_lines_with(log, tag, "msg=\"partition claimed\"");
}

void tk_wait_claims(const char *log, pid_t pid, int count, pid_t proc,
                    int timeout_ms)
{
    int64_t deadline = tk_now_ms() + timeout_ms;

    while (tk_claims(log, pid) < count) {
        if (proc > 0 && tk_wait(proc, 0) != -1) {
            tk_log_tail(log, 40);
            tk_fail("process %d exited before %d claim(s)%s; log: %s",
                    (int)proc, count, pid > 0 ? " of that worker" : "", log);
        }
        if (tk_now_ms() >= deadline) {
            tk_log_tail(log, 40);
            tk_fail("%d claim(s) not seen within %d ms (pid %d); log: %s",
                    count, timeout_ms, (int)pid, log);
        }
        tk_sleep_ms(20);
    }
}

/* ------------------------------------------------------------------ */
/* The summary line                                                    */
/* ------------------------------------------------------------------ */

/* Parse one summary line starting at "pipeline NAME: consumed"; 1 if it
 * has all nine counters. */
static int parse_summary(const char *line, tk_run_summary *out)
{
    const char *name = line + strlen("pipeline ");
    const char *colon = strstr(name, ": consumed ");
    const char *eol = strchr(name, '\n');
    long long v[9];
    size_t len;

    if (colon == NULL || (eol && colon > eol))
        return 0;
    len = (size_t)(colon - name);
    if (len >= sizeof out->pipeline || memchr(name, ' ', len))
        return 0;
    if (sscanf(colon, ": consumed %lld, applied %lld, deduplicated %lld, "
                      "dead-lettered %lld, skipped (no row) %lld; batches "
                      "committed %lld, rolled back %lld, fenced %lld; "
                      "retries %lld",
               &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7],
               &v[8]) != 9)
        return 0;
    memset(out, 0, sizeof *out);
    memcpy(out->pipeline, name, len);
    out->consumed = v[0];
    out->applied = v[1];
    out->deduplicated = v[2];
    out->dead_lettered = v[3];
    out->skipped = v[4];
    out->committed = v[5];
    out->rolled_back = v[6];
    out->fenced = v[7];
    out->retries = v[8];
    return 1;
}

int tk_summaries(const char *log, const char *pipeline, tk_run_summary *out,
                 int max)
{
    char *text = tk_read_file(log);
    const char *p;
    int n = 0;

    if (text == NULL)
        return 0;
    for (p = text; (p = strstr(p, "pipeline ")) != NULL; p++) {
        tk_run_summary s;

        if (!parse_summary(p, &s))
            continue;
        if (pipeline && strcmp(s.pipeline, pipeline) != 0)
            continue;
        if (n < max)
            out[n] = s;
        n++;
    }
    free(text);
    return n;
}

/* The last summary of pipeline (NULL: any). */
static int last_summary(const char *log, const char *pipeline,
                        tk_run_summary *out)
{
    int n = tk_summaries(log, pipeline, NULL, 0);
    tk_run_summary *all;

    memset(out, 0, sizeof *out);
    if (n == 0)
        return 0;
    all = calloc((size_t)n, sizeof *all);
    TK_CHECK(all != NULL, "out of memory");
    n = tk_summaries(log, pipeline, all, n);
    if (n > 0)
        *out = all[n - 1];
    free(all);
    return n > 0;
}

int tk_summary(const char *log, const char *pipeline, tk_run_summary *out)
{
    return last_summary(log, pipeline, out);
}

int tk_last_summary(const char *log, tk_run_summary *out)
{
    return last_summary(log, NULL, out);
}

void tk_summary_required_at(const char *file, int line, const char *log,
                            const char *pipeline, tk_run_summary *out)
{
    if (!tk_summary(log, pipeline, out)) {
        tk_log_tail(log, 40);
        tk_fail_at(file, line, "[%s] no summary line in %s", pipeline, log);
    }
}
