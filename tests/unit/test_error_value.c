/*
 * test_error_value.c - the one error value of a batch (lib/util/
 * error_value.h): what its code makes of it (retried, fatal), and why a
 * retried batch failed, read from its marks and its SQLSTATE alone.
 */
#include <string.h>

#include "error_value.h"
#include "testkit.h"

typedef struct cause_case {
    const char *sqlstate;
    exactly_err code;
    int environment, handler_retry;
    exactly_cause cause;
} cause_case;

static const cause_case cases[] = {
    /* No server error: the connection broke. */
    {"", EXACTLY_ERETRY, 0, 0, EXACTLY_CAUSE_CONNECTION},
    {"08006", EXACTLY_ERETRY, 0, 0, EXACTLY_CAUSE_CONNECTION},
    {"08003", EXACTLY_ERETRY, 0, 0, EXACTLY_CAUSE_CONNECTION},
    {"57P01", EXACTLY_ERETRY, 0, 0, EXACTLY_CAUSE_CONNECTION},
    {"40001", EXACTLY_ERETRY, 0, 0, EXACTLY_CAUSE_SERIALIZATION},
    {"40P01", EXACTLY_ERETRY, 0, 0, EXACTLY_CAUSE_DEADLOCK},
    {"57014", EXACTLY_ERETRY, 0, 0, EXACTLY_CAUSE_TIMEOUT},
    {"55P03", EXACTLY_ERETRY, 0, 0, EXACTLY_CAUSE_TIMEOUT},
    {"25P03", EXACTLY_ERETRY, 0, 0, EXACTLY_CAUSE_TIMEOUT},
    {"53300", EXACTLY_ERETRY, 0, 0, EXACTLY_CAUSE_OTHER},
    {"23505", EXACTLY_EDATABASE, 0, 0, EXACTLY_CAUSE_OTHER},
    /* The marks set where the failure was judged come first. */
    {"42501", EXACTLY_ERETRY, 1, 0, EXACTLY_CAUSE_ENVIRONMENT},
    {"", EXACTLY_ERETRY, 1, 0, EXACTLY_CAUSE_ENVIRONMENT},
    {"", EXACTLY_ERETRY, 0, 1, EXACTLY_CAUSE_HANDLER},
    {"40001", EXACTLY_ERETRY, 0, 1, EXACTLY_CAUSE_HANDLER},
    /* A batch the handler's failure sent through careful mode, committed
     * there or stopped (on_error: stop). */
    {"23505", EXACTLY_OK, 0, 0, EXACTLY_CAUSE_HANDLER},
    {"23505", EXACTLY_EHANDLER, 0, 0, EXACTLY_CAUSE_HANDLER},
};

typedef struct code_case {
    exactly_err code;
    int retriable, fatal;
} code_case;

static const code_case codes[] = {
    {EXACTLY_OK, 0, 0},        {EXACTLY_ERETRY, 1, 0},
    {EXACTLY_EDATABASE, 1, 0}, {EXACTLY_EFATAL, 0, 1},
    {EXACTLY_EFENCED, 0, 0},   {EXACTLY_EHANDLER, 0, 0},
    {EXACTLY_ENOMEM, 0, 0},
};

int main(void)
{
    size_t i, n = sizeof(cases) / sizeof(cases[0]);
    size_t m = sizeof(codes) / sizeof(codes[0]);
    exactly_error e;

    for (i = 0; i < n; i++) {
        exactly_error_clear(&e);
        exactly_error_note(&e, cases[i].sqlstate, "msg");
        exactly_error_set_code(&e, cases[i].code);
        e.environment = cases[i].environment;
        e.handler_retry = cases[i].handler_retry;
        TK_CHECK(exactly_error_cause(&e) == cases[i].cause,
                 "case %zu '%s': cause %d, want %d", i, cases[i].sqlstate,
                 (int)exactly_error_cause(&e), (int)cases[i].cause);
    }
    for (i = 0; i < m; i++) {
        exactly_error_clear(&e);
        exactly_error_set_code(&e, codes[i].code);
        TK_CHECK(e.retriable == codes[i].retriable && e.fatal == codes[i].fatal,
                 "code %d: retriable %d fatal %d", (int)codes[i].code,
                 e.retriable, e.fatal);
    }
    /* The text is for people: an empty one still says something, and a
     * long one is cut, never overflowing. */
    exactly_error_clear(&e);
    exactly_error_note(&e, NULL, NULL);
    TK_CHECK(strcmp(e.message, "unknown error") == 0 && !e.sqlstate[0] &&
                 exactly_error_sqlstate(&e) == NULL,
             "no text: '%s' '%s'", e.message, e.sqlstate);
    exactly_error_note(&e, "40P01xx", "deadlock");
    TK_CHECK(strcmp(exactly_error_sqlstate(&e), "40P01") == 0,
             "sqlstate cut to five: '%s'", e.sqlstate);
    tk_note("%zu causes and %zu codes judged", n, m);
    return 0;
}
