/*
 * test_part_state.c - the moves of a partition's state (part_state.h):
 * every pair of states is checked against the table the header states,
 * a refused move leaves the state as it was, and a claim starts afresh
 * from any state.
 */
#include <stdio.h>
#include <string.h>

#include "part_state.h"
#include "testkit.h"

/* The table of part_state.h, written out again: expected[from][to]. */
static const int expected[PART_S_COUNT][PART_S_COUNT] = {
    /*                  unch ser iso hal nos fen ool */
    [PART_S_UNCHECKED]  = {1, 1, 1, 1, 0, 1, 1},
    [PART_S_SERVING]    = {1, 1, 1, 1, 0, 1, 1},
    [PART_S_ISOLATING]  = {0, 1, 1, 1, 0, 1, 1},
    [PART_S_HALTED]     = {0, 0, 0, 1, 0, 0, 0},
    [PART_S_NO_START]   = {1, 0, 0, 0, 1, 1, 0},
    [PART_S_FENCED]     = {0, 0, 0, 0, 0, 1, 0},
    [PART_S_OUT_OF_LOG] = {1, 0, 0, 0, 0, 1, 1},
};

int main(void)
{
    int from, to;

    for (from = 0; from < PART_S_COUNT; from++) {
        for (to = 0; to < PART_S_COUNT; to++) {
            enum part_state st = (enum part_state)from;
            int rc = part_state_move(&st, (enum part_state)to, "t", 0);
            char what[64];

            snprintf(what, sizeof(what), "%s -> %s",
                     part_state_name((enum part_state)from),
                     part_state_name((enum part_state)to));
            TK_CHECK(part_state_allowed((enum part_state)from,
                                        (enum part_state)to) ==
                         expected[from][to],
                     "%s: allowed should be %d", what, expected[from][to]);
            if (expected[from][to]) {
                TK_CHECK(rc == 0 && st == (enum part_state)to, "%s refused", what);
            } else {
                TK_CHECK(rc == -1 && st == (enum part_state)from, "%s made", what);
            }
        }
    }
    /* Out of range: refused, unchanged. */
    {
        enum part_state st = PART_S_SERVING;
        TK_CHECK(!part_state_allowed(PART_S_SERVING, PART_S_COUNT),
                 "a move to an invalid state allowed");
        TK_CHECK(!part_state_allowed(PART_S_COUNT, PART_S_SERVING),
                 "a move from an invalid state allowed");
        TK_CHECK(part_state_move(&st, PART_S_COUNT, "t", 0) == -1 &&
                     st == PART_S_SERVING,
                 "a move to an invalid state made");
        TK_CHECK(strcmp(part_state_name(PART_S_COUNT), "invalid") == 0,
                 "an invalid state named %s", part_state_name(PART_S_COUNT));
    }
    /* A claim starts afresh, whatever the partition was. */
    for (from = 0; from < PART_S_COUNT; from++) {
        enum part_state st = (enum part_state)from;
        part_state_claimed(&st, 0, "t", 0);
        TK_CHECK(st == PART_S_UNCHECKED, "claim from %s: %s",
                 part_state_name((enum part_state)from), part_state_name(st));
        st = (enum part_state)from;
        part_state_claimed(&st, 1, "t", 0);
        TK_CHECK(st == PART_S_NO_START, "no-start claim from %s: %s",
                 part_state_name((enum part_state)from), part_state_name(st));
    }
    /* The groupings the worker reads. */
    for (from = 0; from < PART_S_COUNT; from++) {
        enum part_state s = (enum part_state)from;
        TK_CHECK(part_state_halted(s) ==
                     (s == PART_S_HALTED || s == PART_S_NO_START ||
                      s == PART_S_OUT_OF_LOG),
                 "halted(%s)", part_state_name(s));
        TK_CHECK(part_state_awaits_reset(s) ==
                     (s == PART_S_NO_START || s == PART_S_OUT_OF_LOG),
                 "awaits_reset(%s)", part_state_name(s));
        TK_CHECK(part_state_stopped(s) ==
                     (part_state_halted(s) || s == PART_S_FENCED),
                 "stopped(%s)", part_state_name(s));
    }
    tk_note("%d x %d moves checked", PART_S_COUNT, PART_S_COUNT);
    return 0;
}
