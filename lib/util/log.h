/*
 * log.h - the process's one log: logfmt lines on stderr.
 *
 * Every line carries the level, the component and, once set, the pipeline
 * and worker. librdkafka's log_cb and libpq's notice processor are routed
 * here too. exactly_log_enabled() is the cheap check to put in front of
 * expensive debug formatting.
 */
#ifndef EXACTLY_LOG_H
#define EXACTLY_LOG_H

#include "exactly/handler.h"

void exactly_log_set_level(exactly_log_level level);

/* 0: logfmt (default), 1: one JSON object per line. */
void exactly_log_set_json(int json);

/* Sends the log (the process's stderr) to path, appending; NULL keeps
 * stderr. Returns 0, or -1 with errno set. */
int exactly_log_set_file(const char *path);

/* Opens the log file again (after logrotate moved it: SIGHUP). */
int exactly_log_reopen(void);
void exactly_log_set_context(const char *pipeline, int worker);
int exactly_log_enabled(exactly_log_level level);

/* msg is a short lower-case sentence; fields is logfmt "k=v k2=v2" or NULL. */
void exactly_log(exactly_log_level level, const char *component,
                 const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* For exactly_host.log: component "handler". */
void exactly_log_handler(exactly_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define EXACTLY_LOG(level, comp, ...)                                          \
    do {                                                                       \
        if (exactly_log_enabled(level))                                        \
            exactly_log(level, comp, __VA_ARGS__);                             \
    } while (0)

#endif
