/*
 * log.c - see log.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* vasprintf */
#endif

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "escape.h"
#include "strbuf.h"

static exactly_log_level g_level = EXACTLY_LOG_INFO;
static char g_pipeline[128];
static int g_worker = -1;
static char g_trace[300];
/* Set: g_trace is found by g_trace_fn at the first line g_trace_thread
 * writes. */
static exactly_log_trace_fn *g_trace_fn;
static void *g_trace_arg;
static pthread_t g_trace_thread;
static char g_file[4096];
static int g_json;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* The keys every line starts with; a field of the same name is renamed. */
static const char *const base_keys[] = {"ts",       "level",  "comp", "pid",
                                        "pipeline", "worker", "trace_id",
                                        "msg"};
#define N_BASE_KEYS (sizeof(base_keys) / sizeof(base_keys[0]))
/* Fields of one line beyond which the rest are not written. */
#define MAX_FIELDS 48
#define FIELD_KEY_MAX 72

static exactly_log_tap_fn *g_tap;
static void *g_tap_arg;

void exactly_log_set_level(exactly_log_level level) { g_level = level; }

void exactly_log_set_tap(exactly_log_tap_fn *fn, void *arg)
{
    g_tap = fn;
    g_tap_arg = arg;
}

void exactly_log_set_json(int json)
{
    g_json = json;
    /* jansson seeds its hash on first use; doing it here, before
     * librdkafka's threads exist, keeps that out of any race. */
    if (json)
        json_object_seed(0);
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

void exactly_log_set_trace(const char *trace_id)
{
    g_trace_fn = NULL;
    snprintf(g_trace, sizeof(g_trace), "%s", trace_id ? trace_id : "");
}

void exactly_log_set_trace_fn(exactly_log_trace_fn *fn, void *arg)
{
    g_trace[0] = '\0';
    g_trace_arg = arg;
    g_trace_thread = pthread_self();
    g_trace_fn = fn;
}

/* A line is written: a pending trace function of this thread runs now. */
static void trace_resolve(void)
{
    exactly_log_trace_fn *fn = g_trace_fn;

    if (!fn || !pthread_equal(g_trace_thread, pthread_self()))
        return;
    g_trace_fn = NULL;
    g_trace[0] = '\0';
    fn(g_trace_arg, g_trace, sizeof(g_trace));
}

int exactly_log_enabled(exactly_log_level level) { return level <= g_level; }

/* ---- one line ----------------------------------------------------------- */

/* Whether a line carries base key k: pipeline and worker only once the
 * context set them (the supervisor names them in fields instead). */
static int base_key_written(const char *k)
{
    if (strcmp(k, "pipeline") == 0)
        return g_pipeline[0] != '\0';
    if (strcmp(k, "worker") == 0)
        return g_worker >= 0;
    if (strcmp(k, "trace_id") == 0)
        return g_trace[0] != '\0';
    return 1;
}

/* The keys the fields are written under: the given one with anything
 * outside [A-Za-z0-9_.-] as '_', and _2, _3, ... added while it is taken
 * by a key of the line or an earlier field. keys[i] is "" for a field that
 * is left out (a NULL string). */
static void field_keys(const exactly_log_field *fields, size_t n,
                       char (*keys)[FIELD_KEY_MAX])
{
    size_t i, j, len;
    int suffix, taken;

    for (i = 0; i < n; i++) {
        const char *k = fields[i].key && fields[i].key[0] ? fields[i].key
                                                          : "field";
        keys[i][0] = '\0';
        if (fields[i].type == EXACTLY_LOG_T_STR && !fields[i].s)
            continue;
        for (len = 0; k[len] && len + 5 < FIELD_KEY_MAX; len++) {
            char c = k[len];
            int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                     (c >= '0' && c <= '9') || c == '_' || c == '.' ||
                     c == '-';
            keys[i][len] = ok ? c : '_';
        }
        keys[i][len] = '\0';
        suffix = 1;
        do {
            taken = 0;
            for (j = 0; j < N_BASE_KEYS && !taken; j++)
                taken = strcmp(keys[i], base_keys[j]) == 0 &&
                        base_key_written(base_keys[j]);
            for (j = 0; j < i && !taken; j++)
                taken = strcmp(keys[i], keys[j]) == 0;
            if (taken)
                snprintf(keys[i] + len, FIELD_KEY_MAX - len, "_%d", ++suffix);
        } while (taken && suffix < 99);
    }
}

/* The bytes of a string field to write: cut at EXACTLY_LOG_VALUE_MAX on
 * a character boundary (*cut set). */
static size_t value_len(const char *s, size_t len, int *cut)
{
    size_t n = len == SIZE_MAX ? strlen(s) : len;

    *cut = 0;
    if (n <= EXACTLY_LOG_VALUE_MAX)
        return n;
    *cut = 1;
    n = EXACTLY_LOG_VALUE_MAX;
    /* Back to the start of a UTF-8 character: at most 3 bytes. */
    while (EXACTLY_LOG_VALUE_MAX - n < 3 &&
           ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    return n;
}

static void format_double(double d, char *buf, size_t size)
{
    if (isnan(d))
        snprintf(buf, size, "nan");
    else if (isinf(d))
        snprintf(buf, size, d > 0 ? "inf" : "-inf");
    else
        snprintf(buf, size, "%.15g", d);
}

static void timestamp(char *buf, size_t size)
{
    struct timeval tv;
    struct tm tm;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
}

static void logfmt_str(strbuf *sb, const char *key, const char *s, size_t len,
                       int quote)
{
    int cut;
    size_t n = value_len(s, len, &cut);

    strbuf_printf(sb, " %s=", key);
    if (!cut) {
        exactly_escape_logfmt(sb, s, n, quote);
    } else {
        strbuf text = {0};
        strbuf_append(&text, s, n);
        strbuf_append(&text, "...", 3);
        if (text.oom)
            sb->oom = 1;
        exactly_escape_logfmt(sb, strbuf_str(&text), text.len, quote);
        strbuf_free(&text);
    }
}

static void logfmt_line(strbuf *sb, const char *ts, exactly_log_level level,
                        const char *component, const char *msg,
                        const exactly_log_field *fields, size_t n_fields,
                        char (*keys)[FIELD_KEY_MAX])
{
    char num[40];
    size_t i;

    strbuf_printf(sb, "ts=%s level=%s", ts, level_names[level]);
    logfmt_str(sb, "comp", component, SIZE_MAX, 0);
    strbuf_printf(sb, " pid=%d", (int)getpid());
    if (g_pipeline[0])
        logfmt_str(sb, "pipeline", g_pipeline, SIZE_MAX, 0);
    if (g_worker >= 0)
        strbuf_printf(sb, " worker=%d", g_worker);
    if (g_trace[0])
        logfmt_str(sb, "trace_id", g_trace, SIZE_MAX, 0);
    logfmt_str(sb, "msg", msg, SIZE_MAX, 1);
    for (i = 0; i < n_fields; i++) {
        const exactly_log_field *f = &fields[i];
        const char *key = keys[i];
        if (!key[0])
            continue;
        switch (f->type) {
        case EXACTLY_LOG_T_STR:
            logfmt_str(sb, key, f->s, f->len, 0);
            break;
        case EXACTLY_LOG_T_INT:
            strbuf_printf(sb, " %s=%" PRId64, key, f->i);
            break;
        case EXACTLY_LOG_T_UINT:
            strbuf_printf(sb, " %s=%" PRIu64, key, f->u);
            break;
        case EXACTLY_LOG_T_DOUBLE:
            format_double(f->d, num, sizeof(num));
            strbuf_printf(sb, " %s=%s", key, num);
            break;
        case EXACTLY_LOG_T_BOOL:
            strbuf_printf(sb, " %s=%s", key, f->b ? "true" : "false");
            break;
        case EXACTLY_LOG_T_END:
            break;
        }
    }
}

/* A JSON string of s[0..len) (cut as in logfmt), or NULL. */
static json_t *json_str(const char *s, size_t len)
{
    strbuf text = {0};
    json_t *v = NULL;
    int cut;
    size_t n = value_len(s, len, &cut);

    strbuf_append(&text, "", 0);
    exactly_escape_utf8(&text, s, n);
    if (cut)
        strbuf_append(&text, "...", 3);
    if (!text.oom)
        v = json_stringn(strbuf_str(&text), text.len);
    strbuf_free(&text);
    return v;
}

/* Sets key to v (a new reference, taken); -1 when v is NULL or the set
 * failed. */
static int json_put(json_t *obj, const char *key, json_t *v)
{
    return v ? json_object_set_new(obj, key, v) : -1;
}

/* The JSON value of field f (a new reference), or NULL when out of memory
 * or f is the END marker. A uint past jansson's signed range and a double
 * that is not finite become their text. */
static json_t *json_field_value(const exactly_log_field *f)
{
    char num[40];

    switch (f->type) {
    case EXACTLY_LOG_T_STR:
        return json_str(f->s, f->len);
    case EXACTLY_LOG_T_INT:
        return json_integer(f->i);
    case EXACTLY_LOG_T_UINT:
        /* Past the signed range jansson has: the digits, as text. */
        if (f->u <= (uint64_t)INT64_MAX)
            return json_integer((json_int_t)f->u);
        snprintf(num, sizeof(num), "%" PRIu64, f->u);
        return json_string(num);
    case EXACTLY_LOG_T_DOUBLE:
        if (isfinite(f->d))
            return json_real(f->d);
        format_double(f->d, num, sizeof(num));
        return json_string(num);
    case EXACTLY_LOG_T_BOOL:
        return json_boolean(f->b);
    case EXACTLY_LOG_T_END:
        break;
    }
    return NULL;
}

/* Appends obj to sb as compact, ASCII-only JSON with DEL escaped too.
 * Returns 0, or -1 when jansson could not write it (sb unchanged). */
static int json_append(strbuf *sb, const json_t *obj)
{
    char *text = json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII), *del;
    const char *rest;

    if (!text)
        return -1;
    /* jansson writes DEL as it is (JSON allows it); a terminal that shows
     * the log gets no control byte from us. */
    for (rest = text; (del = strchr(rest, 0x7f)) != NULL; rest = del + 1) {
        strbuf_append(sb, rest, (size_t)(del - rest));
        strbuf_append(sb, "\\u007f", 6);
    }
    strbuf_puts(sb, rest);
    free(text);
    return 0;
}

/* Appends the JSON form of one log line to sb: the fixed members (ts,
 * level, comp, pid, and pipeline, worker and trace_id when set), msg, then
 * each field under keys[i] (a field whose key is empty is left out).
 * Returns 0, or -1 when out of memory (sb may then hold nothing of it). */
static int json_line(strbuf *sb, const char *ts, exactly_log_level level,
                     const char *component, const char *msg,
                     const exactly_log_field *fields, size_t n_fields,
                     char (*keys)[FIELD_KEY_MAX])
{
    json_t *obj = json_object();
    int rc = -1;
    size_t i;

    if (!obj)
        return -1;
    if (json_put(obj, "ts", json_string(ts)) ||
        json_put(obj, "level", json_string(level_names[level])) ||
        json_put(obj, "comp", json_str(component, SIZE_MAX)) ||
        json_put(obj, "pid", json_integer(getpid())) ||
        (g_pipeline[0] &&
         json_put(obj, "pipeline", json_str(g_pipeline, SIZE_MAX))) ||
        (g_worker >= 0 && json_put(obj, "worker", json_integer(g_worker))) ||
        (g_trace[0] && json_put(obj, "trace_id", json_str(g_trace, SIZE_MAX))) ||
        json_put(obj, "msg", json_str(msg, SIZE_MAX)))
        goto cleanup;
    for (i = 0; i < n_fields; i++)
        if (keys[i][0] && json_put(obj, keys[i], json_field_value(&fields[i])))
            goto cleanup;
    rc = json_append(sb, obj);

cleanup:
    json_decref(obj);
    return rc;
}

/* write(2) all of buf to stderr; a failure is dropped (there is nowhere
 * left to report it). */
static void write_all(const char *buf, size_t n)
{
    while (n > 0) {
        ssize_t k = write(STDERR_FILENO, buf, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return;
        buf += k;
        n -= (size_t)k;
    }
}

void exactly_log_write(exactly_log_level level, const char *component,
                       const char *msg, const exactly_log_field *fields)
{
    strbuf sb = {0};
    char ts[96]; /* room for any int the format may see */
    char keys[MAX_FIELDS][FIELD_KEY_MAX];
    size_t n_fields = 0;
    int saved_errno = errno;
    int failed;

    if ((unsigned)level > EXACTLY_LOG_DEBUG)
        level = EXACTLY_LOG_DEBUG;
    if (!component)
        component = "";
    if (!msg)
        msg = "";
    while (fields && n_fields < MAX_FIELDS &&
           fields[n_fields].type != EXACTLY_LOG_T_END)
        n_fields++;
    trace_resolve();
    field_keys(fields, n_fields, keys);
    timestamp(ts, sizeof(ts));
    if (g_json) {
        failed = json_line(&sb, ts, level, component, msg, fields, n_fields,
                           keys);
    } else {
        logfmt_line(&sb, ts, level, component, msg, fields, n_fields, keys);
        failed = 0;
    }
    strbuf_append(&sb, "\n", 1);
    if (failed || sb.oom) {
        /* Only constant text: nothing here needs escaping. */
        char line[256];
        int k = snprintf(line, sizeof(line),
                         g_json ? "{\"ts\":\"%s\",\"level\":\"error\",\"comp\":"
                                  "\"log\",\"pid\":%d,\"msg\":\"out of memory "
                                  "writing a log line\"}\n"
                                : "ts=%s level=error comp=log pid=%d msg=\"out "
                                  "of memory writing a log line\"\n",
                         ts, (int)getpid());
        if (k > 0 && (size_t)k < sizeof(line))
            write_all(line, (size_t)k);
    } else {
        write_all(sb.data, sb.len);
        if (g_tap && level <= EXACTLY_LOG_WARN)
            g_tap(g_tap_arg, level, sb.data, sb.len);
    }
    strbuf_free(&sb);
    errno = saved_errno;
}

void exactly_log_handler(exactly_log_level level, const char *fmt, ...)
{
    va_list ap;
    char *text = NULL;
    size_t n;
    int k;

    if ((unsigned)level > EXACTLY_LOG_DEBUG)
        level = EXACTLY_LOG_DEBUG;
    if (!exactly_log_enabled(level))
        return;
    va_start(ap, fmt);
    k = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (k < 0) {
        exactly_log_write(level, "handler",
                          "a handler's message was lost: out of memory", NULL);
        return;
    }
    /* A handler that ends its message with a newline means no second
     * line by it. */
    n = (size_t)k;
    while (n > 0 && text[n - 1] == '\n')
        text[--n] = '\0';
    exactly_log_write(level, "handler", text, NULL);
    free(text);
}
