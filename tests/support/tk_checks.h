/*
 * tk_checks.h: checks and outcomes (TK_CHECK*, tk_fail, tk_skip, tk_note),
 * the environment, formatting and time.
 * Part of testkit (testkit.h includes every part).
 */
#ifndef EXACTLY_TK_CHECKS_H
#define EXACTLY_TK_CHECKS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define TK_PRINTF(fmt_idx, args_idx) \
    __attribute__((format(printf, fmt_idx, args_idx)))
#else
#define TK_PRINTF(fmt_idx, args_idx)
#endif
#define TK_NORETURN _Noreturn

/* Exit code that CTest maps to "skipped" (SKIP_RETURN_CODE). */
#define TK_EXIT_SKIP 77

/* ------------------------------------------------------------------ */
/* Checks and outcomes                                                 */
/* ------------------------------------------------------------------ */

/* Print "FAIL: file:line: <message>" to stderr and exit(1). Use the
 * tk_fail() macro, which fills in the caller's location. */
TK_NORETURN void tk_fail_at(const char *file, int line, const char *fmt, ...)
    TK_PRINTF(3, 4);
#define tk_fail(...) tk_fail_at(__FILE__, __LINE__, __VA_ARGS__)

/* Print "SKIP: <reason>" to stderr and exit(TK_EXIT_SKIP). */
TK_NORETURN void tk_skip(const char *reason);

/* Print "# <message>" to stderr: progress notes that keep a failing test's
 * output readable under `ctest --output-on-failure`. */
void tk_note(const char *fmt, ...) TK_PRINTF(1, 2);

/* Fail the test with the printf-style message unless cond holds. */
#define TK_CHECK(cond, ...)                                   \
    do {                                                      \
        if (!(cond))                                          \
            tk_fail_at(__FILE__, __LINE__, __VA_ARGS__);      \
    } while (0)

/* Fail unless actual == expected; `what` names the quantity. Both sides are
 * evaluated once. */
#define TK_CHECK_EQ_INT64(actual, expected, what)                           \
    do {                                                                    \
        int64_t tk_a_ = (int64_t)(actual), tk_e_ = (int64_t)(expected);     \
        if (tk_a_ != tk_e_)                                                 \
            tk_fail_at(__FILE__, __LINE__, "%s: expected %lld, got %lld",  \
                       (what), (long long)tk_e_, (long long)tk_a_);         \
    } while (0)

/* Fail unless the two strings are equal (NULL equals only NULL). */
#define TK_CHECK_EQ_STR(actual, expected, what)                             \
    do {                                                                    \
        const char *tk_a_ = (actual), *tk_e_ = (expected);                  \
        if (!tk_str_eq(tk_a_, tk_e_))                                       \
            tk_fail_at(__FILE__, __LINE__, "%s: expected \"%s\", got \"%s\"", \
                       (what), tk_e_ ? tk_e_ : "(null)",                    \
                       tk_a_ ? tk_a_ : "(null)");                           \
    } while (0)

/* 1 if both are NULL or both are equal strings, else 0. */
int tk_str_eq(const char *a, const char *b);

/* The value of environment variable `name`; fails the test when it is unset
 * or empty. */
const char *tk_env_required(const char *name);


/* vsnprintf into a fresh malloc'd string, or fail the test. The caller
 * frees. */
char *tk_vformat(const char *fmt, va_list ap) TK_PRINTF(1, 0);

/* Whether scenario name runs: EXACTLY_TEST_ONLY=name[,name] runs only
 * those (for debugging one scenario of a test); unset or empty: all. */
int tk_wanted(const char *name);

/* ------------------------------------------------------------------ */
/* Time                                                                */
/* ------------------------------------------------------------------ */

/* Monotonic clock in milliseconds. */
int64_t tk_now_ms(void);

/* Sleep ms milliseconds (resumes after signals). */
void tk_sleep_ms(int ms);

#endif /* EXACTLY_TK_CHECKS_H */
