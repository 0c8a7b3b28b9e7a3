/*
 * exactly_sqlbuf_take() (include/exactly/sqlbuf.h): NULL must mean only
 * "an allocation failed". A buffer nothing was appended to used to give
 * NULL too, so a handler that builds an optional clause could not tell an
 * empty string from out of memory.
 *
 * The binary array helpers: the exact bytes of PostgreSQL's wire format
 * (header, element count, NULLs, integers at their range's ends, numerics
 * in base 10000), and -1 with nothing appended for text they do not read.
 */
#include <stdio.h>
#include <string.h>

#include <exactly/sqlbuf.h>

#include "testkit.h"

/* The bytes of b from offset at, as hex. */
static const char *hex(const exactly_sqlbuf *b, size_t at)
{
    static char out[512];
    size_t i, n = 0;

    for (i = at; i < b->len && n + 3 < sizeof out; i++)
        n += (size_t)snprintf(out + n, sizeof out - n, "%02x",
                              (unsigned char)b->s[i]);
    out[n] = '\0';
    return out;
}

/* One element appended to a fresh array: its bytes after the header. */
static const char *one(exactly_sqlbuf *b, int kind, const char *text, int *rc)
{
    exactly_sqlbuf_binarray(b, 1700);
    *rc = kind ? exactly_sqlbuf_binelem_int(b, text, kind)
               : exactly_sqlbuf_binelem_numeric(b, text);
    return hex(b, 20);
}

static void binary_arrays(void)
{
    static const struct {
        int kind; /* 0 numeric, else the integer's bytes */
        const char *text, *bytes; /* NULL bytes: refused */
    } cases[] = {
        {8, "0", "0000000800000000" "00000000"},
        {8, "-1", "00000008ffffffff" "ffffffff"},
        {8, "9223372036854775807", "000000087fffffff" "ffffffff"},
        {8, "-9223372036854775808", "0000000880000000" "00000000"},
        {8, "9223372036854775808", NULL},
        {8, "-9223372036854775809", NULL},
        {4, "2147483647", "000000047fffffff"},
        {4, "-2147483648", "0000000480000000"},
        {4, "2147483648", NULL},
        {2, "-32768", "000000028000"},
        {2, "32768", NULL},
        {8, "", NULL},
        {8, "-", NULL},
        {8, " 1", NULL},
        {8, "1.0", NULL},
        {8, "+1", NULL},
        /* ndigits, weight, sign, dscale, base-10000 digits */
        {0, "0", "0000000a" "0001" "0000" "0000" "0000" "0000"},
        {0, "12345.678", "0000000e" "0003" "0001" "0000" "0003" "0001"
                         "0929" "1a7c"},
        {0, "-0.0001", "0000000c" "0002" "0000" "4000" "0004" "0000"
                       "0001"},
        {0, ".5", "0000000a" "0001" "ffff" "0000" "0001" "1388"},
        {0, "NaN", NULL},
        {0, "Infinity", NULL},
        {0, "1e+20", NULL},
        {0, "-", NULL},
        {0, ".", NULL},
        {0, "1.2.3", NULL},
    };
    exactly_sqlbuf b;
    size_t i;
    int rc;

    memset(&b, 0, sizeof b);
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = one(&b, cases[i].kind, cases[i].text, &rc);
        if (!cases[i].bytes) {
            TK_CHECK(rc == -1 && b.len == 20,
                     "'%s' (kind %d) accepted: %s", cases[i].text,
                     cases[i].kind, got);
            continue;
        }
        TK_CHECK(rc == 0, "'%s' (kind %d) refused", cases[i].text,
                 cases[i].kind);
        TK_CHECK_EQ_STR(got, cases[i].bytes, cases[i].text);
    }

    /* Header, count and the has-nulls flag. */
    exactly_sqlbuf_binarray(&b, 25);
    exactly_sqlbuf_binelem(&b, "ab", 2);
    exactly_sqlbuf_binelem(&b, NULL, 0);
    TK_CHECK(exactly_sqlbuf_binelem_int(&b, NULL, 8) == 0, "NULL integer");
    TK_CHECK_EQ_STR(hex(&b, 0),
                    "00000001" "00000001" "00000019" "00000003" "00000001"
                    "00000002" "6162" "ffffffff" "ffffffff",
                    "text[] with NULLs");
    exactly_sqlbuf_free(&b);
    tk_note("binary arrays: integers, numerics, NULLs, refusals");
}

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
    binary_arrays();
    return 0;
}
