/*
 * exactly_trace_parse(): the trace-id of a W3C traceparent, or nothing.
 * A malformed header must be ignored (never fail a message), so every
 * rule of the format is a refusal case here, next to the values that must
 * be read.
 */
#include <string.h>

#include "testkit.h"
#include "trace.h"

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define PID "00f067aa0ba902b7"

typedef struct trace_case {
    const char *in;
    const char *want; /* NULL: refused */
} trace_case;

static const trace_case cases[] = {
    {"00-" TID "-" PID "-01", TID},
    {"00-" TID "-" PID "-00", TID},
    {"00-" TID "-" PID "-ff", TID},        /* unknown flags are kept */
    {"01-" TID "-" PID "-01", TID},        /* a later version */
    {"01-" TID "-" PID "-01-extra", TID},  /* ... with fields of its own */
    {"01-" TID "-" PID "-01extra", NULL},  /* ... that must start with '-' */
    {"00-" TID "-" PID "-01-extra", NULL}, /* version 00 is exactly 55 bytes */
    {"00-" TID "-" PID "-01 ", NULL},
    {"ff-" TID "-" PID "-01", NULL},       /* version ff is invalid */
    {"0g-" TID "-" PID "-01", NULL},
    {"00-" "4BF92F3577B34DA6A3CE929D0E0E4736" "-" PID "-01", NULL}, /* upper case */
    {"00-00000000000000000000000000000000-" PID "-01", NULL},      /* zero trace */
    {"00-" TID "-0000000000000000-01", NULL},                      /* zero parent */
    {"00-" TID "-" PID "-0x", NULL},
    {"00_" TID "-" PID "-01", NULL},
    {"00-" TID "_" PID "-01", NULL},
    {"00-" TID "-" PID "_01", NULL},
    {"00-" TID "-" PID "-1", NULL},        /* short */
    {"00-4bf92f3577b34da6a3ce929d0e0e473-" PID "-01", NULL},
    {"", NULL},
    {"traceparent", NULL},
};

int main(void)
{
    size_t i, n = sizeof(cases) / sizeof(cases[0]);
    char out[EXACTLY_TRACE_ID_SIZE];
    char nul[56];

    for (i = 0; i < n; i++) {
        int rc = exactly_trace_parse(cases[i].in, strlen(cases[i].in), out);
        if (cases[i].want) {
            TK_CHECK(rc == 0, "case %zu '%s' refused", i, cases[i].in);
            TK_CHECK_EQ_STR(out, cases[i].want, cases[i].in);
        } else {
            TK_CHECK(rc == -1 && out[0] == '\0',
                     "case %zu '%s' accepted as '%s'", i, cases[i].in, out);
        }
    }
    /* A NUL inside the value is a refusal, not the end of the text. */
    memcpy(nul, "00-" TID "-" PID "-01", 55);
    nul[20] = '\0';
    TK_CHECK(exactly_trace_parse(nul, 55, out) == -1, "a NUL was accepted");
    TK_CHECK(exactly_trace_parse(NULL, 0, out) == -1, "NULL was accepted");
    tk_note("%zu traceparent cases passed", n);
    return 0;
}
