/*
 * exactly_sqlbuf_take() (include/exactly/sqlbuf.h): NULL must mean only
 * "an allocation failed". A buffer nothing was appended to used to give
 * NULL too, so a handler that builds an optional clause could not tell an
 * empty string from out of memory.
 */
#include <string.h>

#include <exactly/sqlbuf.h>

#include "testkit.h"

int main(void)
{
    exactly_sqlbuf b;
    char *s;

    memset(&b, 0, sizeof b);
    s = exactly_sqlbuf_take(&b);
    TK_CHECK(s != NULL, "take of an empty buffer returned NULL (out of memory?)");
    TK_CHECK_EQ_STR(s, "", "take of an empty buffer");
    free(s);
    TK_CHECK(b.s == NULL && b.len == 0 && !b.oom, "buffer not left empty");

    exactly_sqlbuf_puts(&b, "SELECT ");
    exactly_sqlbuf_ident(&b, "a\"b", 3);
    s = exactly_sqlbuf_take(&b);
    TK_CHECK_EQ_STR(s, "SELECT \"a\"\"b\"", "take of a built string");
    free(s);
    TK_CHECK(b.s == NULL && b.len == 0, "buffer not left empty after take");

    /* Reusable after take, and an allocation failure gives NULL. */
    exactly_sqlbuf_puts(&b, "x");
    b.oom = 1;
    s = exactly_sqlbuf_take(&b);
    TK_CHECK(s == NULL, "take after a failed allocation returned '%s'", s);
    TK_CHECK(b.s == NULL && !b.oom, "buffer not reset after a failure");
    tk_note("sqlbuf_take: empty, built and failed buffers");
    return 0;
}
