#include "log.h"

#include <fcntl.h>
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

static char g_file[4096];
static int g_json;

void exactly_log_set_json(int json) { g_json = json; }

/* Appends s as a JSON string (quoted, escaped). */
static size_t json_str(char *out, size_t size, size_t o, const char *s,
                       size_t n)
{
    size_t i;

    if (o + 1 < size)
        out[o++] = '"';
    for (i = 0; i < n && o + 7 < size; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch < 0x20) {
            o += (size_t)snprintf(out + o, size - o, "\\u%04x", ch);
        } else {
            out[o++] = (char)ch;
        }
    }
    if (o + 1 < size)
        out[o++] = '"';
    return o;
}

/* Rewrites one logfmt line (k=v k="v w" ...) as a JSON object; values
 * that are whole numbers stay numbers. */
static void logfmt_to_json(const char *line, char *out, size_t size)
{
    const char *p = line;
    size_t o = 0;
    int first = 1;

    out[o++] = '{';
    while (*p && o + 8 < size) {
        const char *k = p, *v, *ve;
        size_t kn;
        char val[2048];
        size_t vn = 0;
        int quoted = 0, numeric;

        while (*p && *p != '=' && *p != ' ')
            p++;
        kn = (size_t)(p - k);
        if (*p != '=') { /* a stray word: skip it */
            while (*p == ' ')
                p++;
            continue;
        }
        p++;
        if (*p == '"') {
            quoted = 1;
            p++;
            while (*p && *p != '"' && vn + 1 < sizeof(val)) {
                if (*p == '\\' && p[1])
                    p++;
                val[vn++] = *p++;
            }
            if (*p == '"')
                p++;
        } else {
            v = p;
            while (*p && *p != ' ')
                p++;
            ve = p;
            vn = (size_t)(ve - v) < sizeof(val) ? (size_t)(ve - v) : sizeof(val) - 1;
            memcpy(val, v, vn);
        }
        val[vn] = '\0';
        while (*p == ' ')
            p++;
        if (!first && o + 1 < size)
            out[o++] = ',';
        first = 0;
        o = json_str(out, size, o, k, kn);
        if (o + 1 < size)
            out[o++] = ':';
        numeric = !quoted && vn > 0 && vn < 19 &&
                  strspn(val + (val[0] == '-'), "0123456789") == vn - (val[0] == '-') &&
                  vn > (size_t)(val[0] == '-');
        if (numeric && o + vn < size) {
            memcpy(out + o, val, vn);
            o += vn;
        } else {
            o = json_str(out, size, o, val, vn);
        }
    }
    if (o + 2 < size)
        out[o++] = '}';
    out[o < size ? o : size - 1] = '\0';
}

int exactly_log_reopen(void)
{
    int fd;

    if (!g_file[0])
        return 0;
    fd = open(g_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        return -1;
    /* Everything that writes to stderr (librdkafka included) follows. */
    if (dup2(fd, STDERR_FILENO) < 0) {
        close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

int exactly_log_set_file(const char *path)
{
    snprintf(g_file, sizeof(g_file), "%s", path ? path : "");
    return exactly_log_reopen();
}

void exactly_log_set_context(const char *pipeline, int worker)
{
    snprintf(g_pipeline, sizeof(g_pipeline), "%s", pipeline ? pipeline : "");
    g_worker = worker;
}

int exactly_log_enabled(exactly_log_level level) { return level <= g_level; }

/* Where the key=value fields of a message start: the first word made of
 * [a-z_] followed by '='. Callers write "what happened k=v k2=v2". */
static const char *fields_start(const char *msg)
{
    const char *p = msg;

    while (*p) {
        const char *w = p;
        while ((*p >= 'a' && *p <= 'z') || *p == '_')
            p++;
        if (p > w && *p == '=' && (w == msg || w[-1] == ' '))
            return w;
        while (*p && *p != ' ')
            p++;
        while (*p == ' ')
            p++;
    }
    return p;
}

/* Appends ` msg="text" fields`, with the text's quotes and backslashes
 * escaped, so every line parses as logfmt. */
static void format_message(const char *msg, char *out, size_t size)
{
    const char *fields = fields_start(msg);
    size_t text_len = (size_t)(fields - msg);
    size_t o = 0, i;

    while (text_len > 0 && msg[text_len - 1] == ' ')
        text_len--;
    if (text_len > 0 && o + 6 < size) {
        memcpy(out, " msg=\"", 6);
        o = 6;
        for (i = 0; i < text_len && o + 3 < size; i++) {
            if (msg[i] == '"' || msg[i] == '\\')
                out[o++] = '\\';
            out[o++] = msg[i] == '\n' ? ' ' : msg[i];
        }
        if (o + 1 < size)
            out[o++] = '"';
    }
    if (*fields && o + 1 < size)
        o += (size_t)snprintf(out + o, size - o, " %s", fields);
    out[o < size ? o : size - 1] = '\0';
}

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
        format_message(msg, line + n, sizeof(line) - (size_t)n);
    /* One write per line keeps lines whole when several processes share
     * the stream. */
    if (g_json) {
        char json[sizeof(line) * 2];
        logfmt_to_json(line, json, sizeof(json));
        fprintf(stderr, "%s\n", json);
        return;
    }
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
