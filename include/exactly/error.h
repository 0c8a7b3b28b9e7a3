/*
 * exactly/error.h - the one error convention of exactly.
 *
 * Every function that can fail returns an exactly_err: 0 is success, a
 * negative value says what kind of failure it was. EXACTLY_ERETRY is its own
 * code ("try again later", a transient condition) so that callers never have
 * to parse text to decide whether to retry.
 *
 * This list is append only: codes keep their numbers across releases.
 */
#ifndef EXACTLY_ERROR_H
#define EXACTLY_ERROR_H

#define EXACTLY_ERR_MAP(X)                                                     \
    X(OK, 0, "success")                                                        \
    X(ERETRY, -1, "transient failure, retry later")                            \
    X(EFAIL, -2, "failed")                                                     \
    X(ECONFIG, -3, "invalid configuration")                                    \
    X(ENOMEM, -4, "out of memory")                                             \
    X(EPLUGIN, -5, "handler plugin error")                                     \
    X(EFENCED, -6, "partition fenced by a newer owner")                        \
    X(EDATABASE, -7, "database error")                                         \
    X(EKAFKA, -8, "kafka error")                                               \
    X(EINVAL, -9, "invalid argument")                                          \
    X(EHANDLER, -10, "handler failed")                                         \
    X(EFATAL, -11, "fatal: stop the worker")

typedef enum exactly_err {
#define EXACTLY_ERR_ENUM(name, value, text) EXACTLY_##name = value,
    EXACTLY_ERR_MAP(EXACTLY_ERR_ENUM)
#undef EXACTLY_ERR_ENUM
} exactly_err;

#endif
