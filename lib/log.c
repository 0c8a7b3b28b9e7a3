#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static exactly_log_level g_level = EXACTLY_LOG_INFO;
static char g_pipeline[128];
static int g_worker = -1;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void exactly_log_set_level(exactly_log_level level) { g_level = level; }

void exactly_log_set_context(const char *pipeline, int worker)
{
    snprintf(g_pipeline, sizeof(g_pipeline), "%s", pipeline ? pipeline : "");
    g_worker = worker;
}

int exactly_log_enabled(exactly_log_level level) { return level <= g_level; }

static void log_line(exactly_log_level level, const char *component,
                     const char *fmt, va_list ap)
{
    char msg[2048];
    char line[2400];
    struct timeval tv;
    struct tm tm;
    int n;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = snprintf(line, sizeof(line),
                 "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ level=%s comp=%s pid=%d",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000),
                 level_names[level], component, (int)getpid());
    if (g_pipeline[0] && n > 0 && (size_t)n < sizeof(line))
        n += snprintf(line + n, sizeof(line) - (size_t)n, " pipeline=%s",
                      g_pipeline);
    if (g_worker >= 0 && n > 0 && (size_t)n < sizeof(line))
        n += snprintf(line + n, sizeof(line) - (size_t)n, " worker=%d",
                      g_worker);
    if (n > 0 && (size_t)n < sizeof(line))
        snprintf(line + n, sizeof(line) - (size_t)n, " %s%s", msg[0] == '\0' || strchr(msg, '=') ? "" : "msg=", msg);
    /* One write per line keeps lines whole when several processes share
     * the stream. */
    fprintf(stderr, "%s\n", line);
}

void exactly_log(exactly_log_level level, const char *component,
                 const char *fmt, ...)
{
    va_list ap;

    if (!exactly_log_enabled(level))
        return;
    va_start(ap, fmt);
    log_line(level, component, fmt, ap);
    va_end(ap);
}

void exactly_log_handler(exactly_log_level level, const char *fmt, ...)
{
    va_list ap;

    if (level > EXACTLY_LOG_DEBUG)
        level = EXACTLY_LOG_DEBUG;
    if (!exactly_log_enabled(level))
        return;
    va_start(ap, fmt);
    log_line(level, "handler", fmt, ap);
    va_end(ap);
}
