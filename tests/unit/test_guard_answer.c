/*
 * test_guard_answer.c - the crash guard's "mode:n" answer read into a
 * typed value (lib/engine/guard_answer.h): every mode attempt() gives,
 * its count, and what is no answer.
 */
#include <string.h>

#include "guard_answer.h"
#include "testkit.h"

typedef struct answer_case {
    const char *in;
    int rc;
    guard_mode mode;
    long deaths;
} answer_case;

static const answer_case cases[] = {
    {"batch:0", 0, GUARD_BATCH, 0},
    {"batch:2", 0, GUARD_BATCH, 2},
    {"single:0", 0, GUARD_SINGLE, 0},
    {"single:3", 0, GUARD_SINGLE, 3},
    {"dead_letter:5", 0, GUARD_DEAD_LETTER, 5},
    {"fenced:0", 0, GUARD_FENCED, 0},
    /* The mode decides; a count that does not read is only a 0. */
    {"batch:", 0, GUARD_BATCH, 0},
    {"single:x", 0, GUARD_SINGLE, 0},
    /* No answer attempt() gives. */
    {"", -1, GUARD_UNKNOWN, 0},
    {"batch", -1, GUARD_UNKNOWN, 0},
    {"BATCH:0", -1, GUARD_UNKNOWN, 0},
    {"dead:1", -1, GUARD_UNKNOWN, 0},
    {"isolate:1", -1, GUARD_UNKNOWN, 0},
    {" batch:0", -1, GUARD_UNKNOWN, 0},
};

int main(void)
{
    size_t i, n = sizeof(cases) / sizeof(cases[0]);
    guard_answer g;

    for (i = 0; i < n; i++) {
        int rc = guard_answer_parse(cases[i].in, &g);
        TK_CHECK(rc == cases[i].rc, "'%s': rc %d", cases[i].in, rc);
        TK_CHECK(g.mode == cases[i].mode, "'%s': mode %s", cases[i].in,
                 guard_mode_name(g.mode));
        TK_CHECK(g.deaths == cases[i].deaths, "'%s': deaths %ld",
                 cases[i].in, g.deaths);
    }
    TK_CHECK(guard_answer_parse(NULL, &g) == -1 && g.mode == GUARD_UNKNOWN,
             "no answer read as %s", guard_mode_name(g.mode));
    TK_CHECK(strcmp(guard_mode_name(GUARD_DEAD_LETTER), "dead_letter") == 0,
             "name of dead_letter: %s", guard_mode_name(GUARD_DEAD_LETTER));
    tk_note("%zu crash guard answers read", n);
    return 0;
}
