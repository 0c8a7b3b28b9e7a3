/*
 * scale.c - see scale.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "scale.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>

int64_t scale_proc_kib(pid_t pid, const char *field)
{
    char path[64], line[256];
    size_t len = strlen(field);
    int64_t kib = -1;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, field, len) == 0 && line[len] == ':') {
            kib = strtoll(line + len + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kib;
}

int scale_wait_rusage(pid_t pid, int timeout_ms, int64_t *maxrss_kib)
{
    int64_t deadline = tk_now_ms() + timeout_ms;
    struct rusage ru;
    int status;

    *maxrss_kib = -1;
    for (;;) {
        pid_t r = wait4(pid, &status, timeout_ms < 0 ? 0 : WNOHANG, &ru);

        if (r == pid) {
            if (!WIFEXITED(status) && !WIFSIGNALED(status))
                continue; /* stopped or continued: keep waiting */
            *maxrss_kib = ru.ru_maxrss;
            return WIFEXITED(status) ? WEXITSTATUS(status)
                                     : 128 + WTERMSIG(status);
        }
        if (r < 0 && errno != EINTR)
            tk_fail("wait4(%ld): %s", (long)pid, strerror(errno));
        if (timeout_ms >= 0 && tk_now_ms() >= deadline)
            return -1;
        if (r == 0)
            tk_sleep_ms(20);
    }
}

int64_t scale_stored_total(PGconn *db, const char *pipeline,
                           const char *topic)
{
    const char *params[2] = {pipeline, topic};
    PGresult *res = PQexecParams(
        db,
        "SELECT coalesce(sum(next_offset), 0) FROM exactly.offsets "
        "WHERE pipeline = $1 AND topic = $2",
        2, NULL, params, NULL, NULL, 0);
    int64_t total;

    TK_CHECK(res && PQresultStatus(res) == PGRES_TUPLES_OK &&
                 PQntuples(res) == 1,
             "reading the stored offsets: %s",
             res ? PQresultErrorMessage(res) : PQerrorMessage(db));
    total = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return total;
}

/* 1 when the child pid has ended, its status (as tk_wait() gives it) in
 * *status; the child is not reaped (WNOWAIT), so that a later
 * scale_wait_rusage() still finds its figures. 0 while it runs. */
static int ended_unreaped(pid_t pid, int *status)
{
    siginfo_t info;

    memset(&info, 0, sizeof info);
    if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
        TK_CHECK(errno == EINTR, "waitid(%ld): %s", (long)pid,
                 strerror(errno));
        return 0;
    }
    if (info.si_pid != pid)
        return 0;
    *status = info.si_code == CLD_EXITED ? info.si_status
                                         : 128 + info.si_status;
    return 1;
}

void scale_wait_stored(PGconn *db, const char *pipeline, const char *topic,
                       int64_t want, pid_t pid, const char *log,
                       int timeout_ms)
{
    int64_t deadline = tk_now_ms() + timeout_ms;
    int64_t got;

    while ((got = scale_stored_total(db, pipeline, topic)) < want) {
        int st = -1;

        if (pid > 0) {
            (void)ended_unreaped(pid, &st);
            LEDGER_CHECK_LOG(st == -1, log,
                             "pid %ld exited with %d while the stored "
                             "offsets of %s were at %" PRId64 " of %" PRId64
                             "; log: %s",
                             (long)pid, st, topic, got, want, log);
        }
        LEDGER_CHECK_LOG(tk_now_ms() < deadline, log,
                         "the stored offsets of %s reached %" PRId64
                         " of %" PRId64 " in %d ms; log: %s",
                         topic, got, want, timeout_ms, log);
        tk_sleep_ms(100);
    }
    TK_CHECK(got == want,
             "the stored offsets of %s add up to %" PRId64 ", more than the "
             "%" PRId64 " messages produced",
             topic, got, want);
}

static int cmp_int64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

int64_t scale_median(const int64_t *v, size_t n)
{
    int64_t *copy, m;

    TK_CHECK(n > 0, "scale_median of no values");
    copy = malloc(n * sizeof *copy);
    TK_CHECK(copy != NULL, "out of memory");
    memcpy(copy, v, n * sizeof *copy);
    qsort(copy, n, sizeof *copy, cmp_int64);
    m = copy[(n - 1) / 2];
    free(copy);
    return m;
}
