/*
 * guard_answer.c - the crash guard's "mode:n" answer read into a
 * guard_answer (guard_answer.h).
 */
#include "guard_answer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *prefix; /* the mode and its ':' */
    guard_mode mode;
} modes[] = {
    {"batch:", GUARD_BATCH},
    {"single:", GUARD_SINGLE},
    {"dead_letter:", GUARD_DEAD_LETTER},
    {"fenced:", GUARD_FENCED},
};

int guard_answer_parse(const char *text, guard_answer *out)
{
    size_t i;

    out->mode = GUARD_UNKNOWN;
    out->deaths = 0;
    if (!text)
        return -1;
    for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        size_t len = strlen(modes[i].prefix);
        if (strncmp(text, modes[i].prefix, len) == 0) {
            char *end;
            long n;
            errno = 0;
            n = strtol(text + len, &end, 10);
            /* The mode decides; a count that does not read is kept as 0
             * (it is only logged). */
            out->mode = modes[i].mode;
            out->deaths = errno == 0 && end != text + len && *end == '\0' ? n : 0;
            return 0;
        }
    }
    return -1;
}

const char *guard_mode_name(guard_mode m)
{
    switch (m) {
    case GUARD_BATCH:
        return "batch";
    case GUARD_SINGLE:
        return "single";
    case GUARD_DEAD_LETTER:
        return "dead_letter";
    case GUARD_FENCED:
        return "fenced";
    case GUARD_UNKNOWN:
        break;
    }
    return "unknown";
}
