/*
 * test_utf8_copy.c - error texts kept in fixed buffers (lib/util/escape.h:
 * exactly_utf8_copy, exactly_utf8_format, exactly_utf8_dup). Whatever
 * the text and the room, what is kept is well-formed UTF-8 that the
 * database takes as a dead letter's reason: shortened only between
 * characters, the longest such prefix that fits, and a byte that is not
 * part of UTF-8 written \xNN.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "escape.h"
#include "testkit.h"

/* One character of each length, and text made of them. */
static const char *const chars[] = {"a", "\xd0\x96", "\xe2\x82\xac",
                                    "\xf0\x9f\x98\x80"};

static void check_valid(const char *s, const char *what)
{
    TK_CHECK(exactly_utf8_valid(s, strlen(s)), "%s: not UTF-8", what);
}

/* Every room from 1 byte to the whole text plus one: the copy is the
 * longest prefix of whole characters that leaves room for the NUL. */
static void copy_at_every_size(const char *text)
{
    size_t n = strlen(text), size, want, len;
    char *dst = malloc(n + 2), what[64];
    const unsigned char *p = (const unsigned char *)text;

    TK_CHECK(dst != NULL, "out of memory");
    for (size = 1; size <= n + 1; size++) {
        snprintf(what, sizeof(what), "room %zu of %zu", size, n + 1);
        memset(dst, 'X', n + 2);
        /* The longest prefix of whole characters under size bytes. */
        for (want = 0;
             want < n && (len = exactly_utf8_len(p + want, n - want)) > 0 &&
             want + len < size;
             want += len)
            ;
        TK_CHECK_EQ_INT64(exactly_utf8_copy(dst, size, text), want, what);
        TK_CHECK(memcmp(dst, text, want) == 0 && dst[want] == '\0',
                 "%s: not the prefix", what);
        TK_CHECK(dst[size] == 'X' || size == n + 1, "%s: wrote past it",
                 what);
        check_valid(dst, what);
    }
    free(dst);
}

/* A text cut by the formatting limit loses the cut character whole (dst
 * has room for more: the limit cuts, not the room). */
static void format_cut_at_every_position(void)
{
    char text[EXACTLY_UTF8_FORMAT_MAX + 8], dst[EXACTLY_UTF8_FORMAT_MAX + 16];
    size_t c, pad, n;

    for (c = 1; c < sizeof(chars) / sizeof(chars[0]); c++) {
        size_t w = strlen(chars[c]);
        for (pad = 0; pad < w; pad++) {
            /* pad ASCII bytes, then the character as often as fits and
             * once more, so that the limit falls at each of its bytes. */
            memset(text, 'a', pad);
            n = pad;
            while (n + w < sizeof(text) - 1) {
                memcpy(text + n, chars[c], w);
                n += w;
            }
            text[n] = '\0';
            n = exactly_utf8_format(dst, sizeof(dst), "%s", text);
            check_valid(dst, "formatted");
            TK_CHECK(n > EXACTLY_UTF8_FORMAT_MAX - 1 - w,
                     "formatted text of %zu-byte characters after %zu bytes "
                     "kept %zu bytes",
                     w, pad, n);
            TK_CHECK(memcmp(dst, text, n) == 0, "formatted: not the prefix");
        }
    }
}

typedef struct bad_case {
    const char *in, *out;
} bad_case;

/* Text that is not UTF-8: each such byte as \xNN, the rest as it is. */
static const bad_case bad[] = {
    {"\xff", "\\xff"},
    {"ab\x80" "cd", "ab\\x80cd"},
    {"\xd0", "\\xd0"},                       /* cut at the end */
    {"\xd0" "a", "\\xd0a"},                   /* cut in the middle */
    {"\xe2\x82", "\\xe2\\x82"},
    {"\xc0\xaf", "\\xc0\\xaf"},               /* overlong */
    {"\xed\xa0\x80", "\\xed\\xa0\\x80"},      /* a surrogate */
    {"\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"}, /* above U+10FFFF */
    {"rejected: \xd0\x96\xfe", "rejected: \xd0\x96\\xfe"},
};

int main(void)
{
    char big[600], dst[16], out[8];
    size_t i, c, n;

    for (c = 0; c < sizeof(chars) / sizeof(chars[0]); c++) {
        for (n = 0; n + strlen(chars[c]) < 40; n += strlen(chars[c]))
            memcpy(big + n, chars[c], strlen(chars[c]));
        big[n] = '\0';
        copy_at_every_size(big);
    }
    /* Mixed lengths, at every offset of each. */
    snprintf(big, sizeof(big), "x%s%s%s%sy%s%s", chars[3], chars[1], chars[2],
             chars[0], chars[2], chars[3]);
    copy_at_every_size(big);
    format_cut_at_every_position();

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *dup = exactly_utf8_dup(bad[i].in);
        TK_CHECK(!exactly_utf8_valid(bad[i].in, strlen(bad[i].in)),
                 "case %zu taken as UTF-8", i);
        exactly_utf8_copy(big, sizeof(big), bad[i].in);
        TK_CHECK_EQ_STR(big, bad[i].out, "copy of a text that is not UTF-8");
        TK_CHECK(dup != NULL, "out of memory");
        TK_CHECK_EQ_STR(dup, bad[i].out, "dup of a text that is not UTF-8");
        free(dup);
        /* Shortened, an escape is never cut either. */
        copy_at_every_size(bad[i].out);
        for (n = 1; n <= strlen(bad[i].out) + 1 && n <= sizeof(dst); n++) {
            exactly_utf8_copy(dst, n, bad[i].in);
            check_valid(dst, "shortened copy of a text that is not UTF-8");
            TK_CHECK(strncmp(dst, bad[i].out, strlen(dst)) == 0,
                     "case %zu in %zu bytes: '%s' is no prefix of '%s'", i, n,
                     dst, bad[i].out);
            TK_CHECK(strlen(dst) + 4 >= n ||
                         strlen(dst) == strlen(bad[i].out),
                     "case %zu in %zu bytes: only %zu kept", i, n, strlen(dst));
        }
    }
    /* An escape that does not fit whole is left out. */
    TK_CHECK_EQ_INT64(exactly_utf8_copy(out, 7, "a\xff\xff"), 5, "escapes");
    TK_CHECK_EQ_STR(out, "a\\xff", "second escape left out");
    TK_CHECK_EQ_INT64(exactly_utf8_copy(out, 1, "abc"), 0, "no room");
    TK_CHECK_EQ_STR(out, "", "no room");
    exactly_utf8_copy(out, sizeof(out), NULL);
    TK_CHECK_EQ_STR(out, "", "NULL");
    TK_CHECK(exactly_utf8_valid("a\xd0\x96", 3) && exactly_utf8_valid("", 0),
             "valid text refused");
    TK_CHECK(!exactly_utf8_valid("a\0b", 3), "NUL taken as text");
    return 0;
}
