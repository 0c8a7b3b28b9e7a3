/*
 * part_state.c - the states of an assigned partition and the moves
 * between them (part_state.h): a table, checked on every move.
 */
#include "part_state.h"

#include "log.h"

static const char *const names[PART_S_COUNT] = {
    [PART_S_UNCHECKED] = "unchecked", [PART_S_SERVING] = "serving",
    [PART_S_ISOLATING] = "isolating", [PART_S_HALTED] = "halted",
    [PART_S_NO_START] = "no_start",   [PART_S_FENCED] = "fenced",
    [PART_S_OUT_OF_LOG] = "out_of_log",
};

#define TO(s) (1u << (s))

/* allowed[from]: the states `from` may move to (besides itself). */
static const unsigned allowed[PART_S_COUNT] = {
    [PART_S_UNCHECKED] = TO(PART_S_SERVING) | TO(PART_S_ISOLATING) |
                       TO(PART_S_HALTED) | TO(PART_S_FENCED) |
                       TO(PART_S_OUT_OF_LOG),
    [PART_S_SERVING] = TO(PART_S_UNCHECKED) | TO(PART_S_ISOLATING) |
                     TO(PART_S_HALTED) | TO(PART_S_FENCED) |
                     TO(PART_S_OUT_OF_LOG),
    [PART_S_ISOLATING] = TO(PART_S_SERVING) | TO(PART_S_HALTED) |
                       TO(PART_S_FENCED) | TO(PART_S_OUT_OF_LOG),
    [PART_S_HALTED] = 0,
    [PART_S_NO_START] = TO(PART_S_UNCHECKED) | TO(PART_S_FENCED),
    [PART_S_FENCED] = 0,
    [PART_S_OUT_OF_LOG] = TO(PART_S_UNCHECKED) | TO(PART_S_FENCED),
};

static int valid(enum part_state s)
{
    return (unsigned)s < PART_S_COUNT;
}

const char *part_state_name(enum part_state s)
{
    return valid(s) ? names[s] : "invalid";
}

int part_state_allowed(enum part_state from, enum part_state to)
{
    if (!valid(from) || !valid(to))
        return 0;
    return from == to || (allowed[from] & TO(to)) != 0;
}

int part_state_move(enum part_state *st, enum part_state to,
                    const char *topic, int32_t partition)
{
    enum part_state from = *st;

    if (!part_state_allowed(from, to)) {
        exactly_log(EXACTLY_LOG_ERROR, "part", "impossible state change refused",
                    LOG_STR("topic", topic), LOG_INT("partition", partition),
                    LOG_STR("from", part_state_name(from)),
                    LOG_STR("to", part_state_name(to)));
        return -1;
    }
    if (from == to)
        return 0;
    *st = to;
    exactly_log(EXACTLY_LOG_DEBUG, "part", "state changed",
                LOG_STR("topic", topic), LOG_INT("partition", partition),
                LOG_STR("from", part_state_name(from)),
                LOG_STR("to", part_state_name(to)));
    return 0;
}

void part_state_claimed(enum part_state *st, int no_start, const char *topic,
                        int32_t partition)
{
    enum part_state from = *st;

    *st = no_start ? PART_S_NO_START : PART_S_UNCHECKED;
    exactly_log(EXACTLY_LOG_DEBUG, "part", "state on claim",
                LOG_STR("topic", topic), LOG_INT("partition", partition),
                LOG_STR("from", part_state_name(from)),
                LOG_STR("to", part_state_name(*st)));
}
