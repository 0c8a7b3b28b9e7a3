#include "seeded.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* xorshift64*: a seed replays the same choices whatever the libc. */
static uint64_t state = 1;

static uint64_t next(void)
{
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 2685821657736338717ULL;
}

uint64_t seeded_pick(void)
{
    const char *env = getenv("EXACTLY_TEST_SEED");

    if (env && *env)
        return strtoull(env, NULL, 10);
    return (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
}

void seeded_init(uint64_t seed) { state = seed ? seed : 1; }

int seeded_below(int n) { return (int)(next() % (uint64_t)n); }
