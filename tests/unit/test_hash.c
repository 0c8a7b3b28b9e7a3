/* exactly_hash_str: the published 64-bit FNV-1a vectors, so every table
 * that indexes strings hashes them the same, documented way. */
#include <inttypes.h>

#include "testkit.h"
#include "util/hash.h"

int main(void)
{
    static const struct {
        const char *s;
        uint64_t h;
    } vectors[] = {
        {"", UINT64_C(0xcbf29ce484222325)},
        {"a", UINT64_C(0xaf63dc4c8601ec8c)},
        {"foobar", UINT64_C(0x85944171f73967e8)},
        {"\xff", UINT64_C(0xaf64724c8602eb6e)},
    };
    size_t i;

    for (i = 0; i < sizeof vectors / sizeof *vectors; i++)
        TK_CHECK(exactly_hash_str(vectors[i].s) == vectors[i].h,
                 "vector %zu: got %016" PRIx64 ", want %016" PRIx64, i,
                 exactly_hash_str(vectors[i].s), vectors[i].h);
    return 0;
}
