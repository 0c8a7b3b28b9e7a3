/*
 * tk_checks.c: outcomes, checks, environment, formatting and time.
 * The contract of each function is in the header.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "testkit.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Checks and outcomes                                                 */
/* ------------------------------------------------------------------ */

/* The outcome is decided: flush what the test printed and leave without
 * running atexit handlers, so a failing test's live librdkafka threads,
 * connections and the leak checker do not bury the message. */
static TK_NORETURN void tk_exit_now(int code)
{
    fflush(NULL);
    _exit(code);
}

void tk_fail_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    fprintf(stderr, "FAIL: %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    tk_exit_now(1);
}

void tk_skip(const char *reason)
{
    fflush(stdout);
    fprintf(stderr, "SKIP: %s\n", reason ? reason : "(no reason given)");
    tk_exit_now(TK_EXIT_SKIP);
}

void tk_note(const char *fmt, ...)
{
    va_list ap;

    fputs("# ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int tk_str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

int tk_wanted(const char *name)
{
    const char *only = getenv("EXACTLY_TEST_ONLY");

    return !only || !*only || strstr(only, name) != NULL;
}

const char *tk_env_required(const char *name)
{
    const char *v = getenv(name);

    if (v == NULL || v[0] == '\0')
        tk_fail("environment variable %s is not set (run the test through "
                "ctest, or set it by hand)", name);
    return v;
}

/* vsnprintf into a fresh malloc'd buffer, or fail the test. */
char *tk_vformat(const char *fmt, va_list ap)
{
    va_list ap2;
    int len;
    char *buf;

    va_copy(ap2, ap);
    len = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (len < 0)
        tk_fail("bad format string \"%s\"", fmt);
    buf = malloc((size_t)len + 1);
    if (buf == NULL)
        tk_fail("out of memory");
    vsnprintf(buf, (size_t)len + 1, fmt, ap);
    return buf;
}

/* ------------------------------------------------------------------ */
/* Time                                                                */
/* ------------------------------------------------------------------ */

int64_t tk_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tk_sleep_ms(int ms)
{
    struct timespec req, rem;

    if (ms <= 0)
        return;
    req.tv_sec = ms / 1000;
    req.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&req, &rem) != 0 && errno == EINTR)
        req = rem;
}
