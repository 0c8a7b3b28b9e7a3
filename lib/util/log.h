/*
 * log.h - the process's one log: one line per event on stderr (or the
 * file of exactly_log_set_file), logfmt by default or one JSON object per
 * line.
 *
 * A line holds ts, level, comp, pid, then pipeline and worker once
 * exactly_log_set_context() set them, trace_id while exactly_log_set_trace()
 * holds one, then msg, then the call's fields in
 * the order given. The message is a short lower-case sentence and a string
 * literal; every fact that varies is a typed field:
 *
 *   exactly_log(EXACTLY_LOG_WARN, "cycle", "batch rolled back",
 *               LOG_STR("topic", pt->topic), LOG_INT("partition", p),
 *               LOG_STR("sqlstate", st), LOG_STR("error", msg));
 *
 * exactly_log is a macro that evaluates nothing but its level when that
 * level is off, so fields may be costly to compute.
 *
 * Every value is escaped where it is written (escape.h), so no text from
 * a message, the server or librdkafka can end a line, add a key or
 * reach a terminal as a control sequence:
 *   logfmt  keys are [A-Za-z0-9_.-]; msg is always quoted; other values
 *           are bare when they can be, else quoted with \" \\ \n \r \t
 *           \uXXXX (other controls, U+2028/9) and \xNN (a byte that is not
 *           UTF-8);
 *   json    built with jansson, ASCII only (\uXXXX for the rest, DEL
 *           included); integer fields are numbers, every LOG_STR a string
 *           (sqlstate too), booleans true/false; a byte that is not UTF-8
 *           becomes the text \xNN.
 * A string value longer than EXACTLY_LOG_VALUE_MAX bytes is cut there (at
 * a character boundary) and ends in "...". A NULL string leaves its field
 * out. A field whose key is already on the line gets _2 (_3, ...) added.
 * Each line is one write(2), so lines of processes that share the stream
 * stay whole. Safe to call from any thread (librdkafka's log_cb).
 */
#ifndef EXACTLY_LOG_H
#define EXACTLY_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "exactly/handler.h"

/* Longest string value written, in bytes of the original text. */
#define EXACTLY_LOG_VALUE_MAX 4096

typedef enum exactly_log_type {
    EXACTLY_LOG_T_END = 0, /* ends the field list */
    EXACTLY_LOG_T_STR,
    EXACTLY_LOG_T_INT,
    EXACTLY_LOG_T_UINT,
    EXACTLY_LOG_T_DOUBLE,
    EXACTLY_LOG_T_BOOL
} exactly_log_type;

/* One key and its typed value. Borrowed for the call only. */
typedef struct exactly_log_field {
    const char *key;
    exactly_log_type type;
    size_t len; /* EXACTLY_LOG_T_STR: bytes of s; SIZE_MAX: strlen(s) */
    union {
        const char *s;
        int64_t i;
        uint64_t u;
        double d;
        int b;
    };
} exactly_log_field;

/* Fields; the key must be a string literal. */
#define LOG_STR(k, v)                                                          \
    ((exactly_log_field){.key = "" k "", .type = EXACTLY_LOG_T_STR,           \
                         .len = SIZE_MAX, .s = (v)})
/* n bytes of v, which need not be NUL-terminated. */
#define LOG_STRN(k, v, n)                                                      \
    ((exactly_log_field){.key = "" k "", .type = EXACTLY_LOG_T_STR,           \
                         .len = (size_t)(n), .s = (v)})
#define LOG_INT(k, v)                                                          \
    ((exactly_log_field){.key = "" k "", .type = EXACTLY_LOG_T_INT,           \
                         .i = (int64_t)(v)})
#define LOG_UINT(k, v)                                                         \
    ((exactly_log_field){.key = "" k "", .type = EXACTLY_LOG_T_UINT,          \
                         .u = (uint64_t)(v)})
#define LOG_DOUBLE(k, v)                                                       \
    ((exactly_log_field){.key = "" k "", .type = EXACTLY_LOG_T_DOUBLE,        \
                         .d = (double)(v)})
#define LOG_BOOL(k, v)                                                         \
    ((exactly_log_field){.key = "" k "", .type = EXACTLY_LOG_T_BOOL,          \
                         .b = (v) != 0})

void exactly_log_set_level(exactly_log_level level);

/* 0: logfmt (default), 1: one JSON object per line. Call before any
 * thread that logs exists. */
void exactly_log_set_json(int json);

/* Sends the log (the process's stderr) to path, appending; NULL keeps
 * stderr. Returns 0, or -1 with errno set. */
int exactly_log_set_file(const char *path);

/* Opens the log file again (after logrotate moved it: SIGHUP). */
int exactly_log_reopen(void);

/* The pipeline and worker index every later line carries (NULL / -1:
 * none). */
void exactly_log_set_context(const char *pipeline, int worker);

/* The W3C trace-id(s) every later line carries as `trace_id`, after
 * `worker` (NULL or "": none): set by the cycle for the lines about one
 * batch. Longer than 299 bytes is cut. */
void exactly_log_set_trace(const char *trace_id);
/* The trace-id(s) of the lines to come, found only if a line is written:
 * at the first line the calling thread writes, fn(arg, out, size) writes
 * them (NUL-terminated, cut to size) and the result is kept as if
 * exactly_log_set_trace() had set it; lines of other threads carry what
 * was set before. The cycle names a batch's traces so without reading
 * every message's headers when nothing is logged. A later
 * exactly_log_set_trace() or exactly_log_set_trace_fn() replaces it. */
typedef void exactly_log_trace_fn(void *arg, char *out, size_t size);
void exactly_log_set_trace_fn(exactly_log_trace_fn *fn, void *arg);
/* A function that sees every written line of level WARN or more severe,
 * formatted as written (its newline included), after it is written; NULL
 * removes it. The worker keeps its last errors for the status page with
 * it. Call before any thread that logs exists. */
typedef void exactly_log_tap_fn(void *arg, exactly_log_level level,
                                const char *line, size_t len);
void exactly_log_set_tap(exactly_log_tap_fn *fn, void *arg);

/* Whether a line of this level is written: the cheap check. */
int exactly_log_enabled(exactly_log_level level);

/*
 * Writes one line. msg is any text (escaped like a value); fields ends
 * with an entry of type EXACTLY_LOG_T_END. Call it through exactly_log(),
 * which checks the level first and builds the list.
 */
void exactly_log_write(exactly_log_level level, const char *component,
                       const char *msg, const exactly_log_field *fields);

#define EXACTLY_LOG_END_ ((exactly_log_field){.type = EXACTLY_LOG_T_END})
#define EXACTLY_LOG_ARGS_(msg, ...)                                            \
    "" msg "", (const exactly_log_field[]) { __VA_ARGS__ }

/* exactly_log(level, "component", "message", LOG_...(...), ...): see the
 * top of this file. */
#define exactly_log(level, comp, ...)                                          \
    do {                                                                       \
        exactly_log_level exactly_log_level_ = (level);                        \
        if (exactly_log_enabled(exactly_log_level_))                           \
            exactly_log_write(                                                 \
                exactly_log_level_, "" comp "",                                \
                EXACTLY_LOG_ARGS_(__VA_ARGS__, EXACTLY_LOG_END_));             \
    } while (0)

/* For exactly_host.log (the plugin ABI): the formatted text is the msg,
 * component "handler"; a level past debug counts as debug. */
void exactly_log_handler(exactly_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
