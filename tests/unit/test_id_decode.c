/*
 * exactly_id_decode(): the bytes of a message become an entity ID in the
 * canonical text form PostgreSQL itself prints, or a reason to dead-letter
 * the message. Canonical matters because IDs are compared as text with
 * looked-up rows (batch_group) and coalesced per batch, and because Kafka
 * partitions by the key's bytes: "007" and "7" would be one entity on two
 * partitions, applied by two workers at once, so by default any spelling
 * but the canonical one is refused ("not canonical"). Refusals
 * matter because a bad ID must never reach SQL, and the reason lands in a
 * log line and a text column, so it must never carry raw binary bytes.
 *
 * Table-driven: each row is one input and what must come out of it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "id_decode.h"
#include "testkit.h"

/* Inputs are written as C string literals with an explicit length, so a
 * case can hold NUL bytes and invalid UTF-8. B(s) is "bytes of literal s". */
#define B(s) (s), (sizeof(s) - 1)

typedef struct id_case {
    const char *name;
    cfg_id_type type;
    size_t max_len;
    const char *in;
    size_t in_len;
    /* NULL: the input must be refused. Otherwise the canonical ID. */
    const char *want;
    /* For refusals: a substring the reason must contain (NULL: any). */
    const char *reason_has;
} id_case;

static const id_case cases[] = {
    /* ---- bigint: canonical form is PostgreSQL's int8out ---- */
    {"plain", CFG_ID_BIGINT, 256, B("42"), "42", NULL},
    {"zero", CFG_ID_BIGINT, 256, B("0"), "0", NULL},
    /* Kafka partitions by the key's bytes: "007" and "7" would land on
     * two partitions, so one entity could be applied by two workers at
     * once. Another spelling of a number is refused, naming the form. */
    {"leading zeros", CFG_ID_BIGINT, 256, B("007"), NULL,
     "not canonical (bigint 7)"},
    {"all zeros", CFG_ID_BIGINT, 256, B("0000"), NULL,
     "not canonical (bigint 0)"},
    {"negative zero", CFG_ID_BIGINT, 256, B("-0"), NULL,
     "not canonical (bigint 0)"},
    {"negative zeros", CFG_ID_BIGINT, 256, B("-000"), NULL,
     "not canonical (bigint 0)"},
    {"negative leading zeros", CFG_ID_BIGINT, 256, B("-007"), NULL,
     "not canonical (bigint -7)"},
    {"negative", CFG_ID_BIGINT, 256, B("-12345"), "-12345", NULL},
    {"INT64_MAX", CFG_ID_BIGINT, 256, B("9223372036854775807"),
     "9223372036854775807", NULL},
    {"INT64_MIN", CFG_ID_BIGINT, 256, B("-9223372036854775808"),
     "-9223372036854775808", NULL},
    {"INT64_MAX, zero-padded to 20 bytes", CFG_ID_BIGINT, 256,
     B("09223372036854775807"), NULL,
     "not canonical (bigint 9223372036854775807)"},
    {"INT64_MIN + 1", CFG_ID_BIGINT, 256, B("-9223372036854775807"),
     "-9223372036854775807", NULL},
    {"INT64_MAX + 1", CFG_ID_BIGINT, 256, B("9223372036854775808"), NULL,
     "out of range"},
    {"INT64_MIN - 1", CFG_ID_BIGINT, 256, B("-9223372036854775809"), NULL,
     "out of range"},
    {"20 nines", CFG_ID_BIGINT, 256, B("99999999999999999999"), NULL,
     "out of range"},
    {"UINT64_MAX", CFG_ID_BIGINT, 256, B("18446744073709551615"), NULL,
     "out of range"},
    /* One past UINT64_MAX would wrap a naive uint64 accumulator to 0. */
    {"UINT64_MAX + 1", CFG_ID_BIGINT, 256, B("18446744073709551616"), NULL,
     "out of range"},
    {"plus sign", CFG_ID_BIGINT, 256, B("+1"), NULL,
     "not canonical (bigint 1)"},
    {"plus zero", CFG_ID_BIGINT, 256, B("+0"), NULL,
     "not canonical (bigint 0)"},
    {"plus only", CFG_ID_BIGINT, 256, B("+"), NULL, "not a bigint"},
    {"plus minus", CFG_ID_BIGINT, 256, B("+-1"), NULL, "not a bigint"},
    {"leading space", CFG_ID_BIGINT, 256, B(" 7"), NULL, "not a bigint"},
    {"trailing space", CFG_ID_BIGINT, 256, B("7 "), NULL, "not a bigint"},
    {"trailing newline", CFG_ID_BIGINT, 256, B("7\n"), NULL, "not a bigint"},
    {"tab", CFG_ID_BIGINT, 256, B("\t7"), NULL, "not a bigint"},
    {"letters", CFG_ID_BIGINT, 256, B("abc"), NULL, "not a bigint"},
    {"digits then letter", CFG_ID_BIGINT, 256, B("12x"), NULL,
     "not a bigint"},
    {"hex", CFG_ID_BIGINT, 256, B("0x10"), NULL, "not a bigint"},
    {"decimal point", CFG_ID_BIGINT, 256, B("1.0"), NULL, "not a bigint"},
    {"exponent", CFG_ID_BIGINT, 256, B("1e3"), NULL, "not a bigint"},
    {"minus only", CFG_ID_BIGINT, 256, B("-"), NULL, "not a bigint"},
    {"double minus", CFG_ID_BIGINT, 256, B("--1"), NULL, "not a bigint"},
    {"embedded NUL", CFG_ID_BIGINT, 256, B("1\0002"), NULL, "not a bigint"},
    {"empty", CFG_ID_BIGINT, 256, B(""), NULL, "empty"},
    {"binary", CFG_ID_BIGINT, 256, B("\x00\xff\x7f\x80"), NULL,
     "not a bigint"},

    /* ---- uuid: lower-case, hyphenated 8-4-4-4-12 ---- */
    {"uuid canonical", CFG_ID_UUID, 256,
     B("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
     "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", NULL},
    {"uuid upper case", CFG_ID_UUID, 256,
     B("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"), NULL,
     "not canonical (uuid a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11)"},
    {"uuid mixed case", CFG_ID_UUID, 256,
     B("A0eEbC99-9c0B-4Ef8-bB6d-6bB9bD380a11"), NULL,
     "not canonical (uuid a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11)"},
    {"uuid 32 hex", CFG_ID_UUID, 256, B("a0eebc999c0b4ef8bb6d6bb9bd380a11"),
     NULL, "not canonical (uuid a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11)"},
    {"uuid 32 hex upper", CFG_ID_UUID, 256,
     B("A0EEBC999C0B4EF8BB6D6BB9BD380A11"), NULL,
     "not canonical (uuid a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11)"},
    {"uuid nil", CFG_ID_UUID, 256, B("00000000-0000-0000-0000-000000000000"),
     "00000000-0000-0000-0000-000000000000", NULL},
    {"uuid hyphen shifted left", CFG_ID_UUID, 256,
     B("a0eebc9-99c0b-4ef8-bb6d-6bb9bd380a11"), NULL, "not a uuid"},
    {"uuid hyphen shifted right", CFG_ID_UUID, 256,
     B("a0eebc99-9c0b4-ef8-bb6d-6bb9bd380a11"), NULL, "not a uuid"},
    {"uuid hyphens every 4", CFG_ID_UUID, 256,
     B("a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11"), NULL, "not a uuid"},
    {"uuid 36 chars, no hyphens", CFG_ID_UUID, 256,
     B("a0eebc999c0b4ef8bb6d6bb9bd380a11abcd"), NULL, "not a uuid"},
    {"uuid 32 chars with hyphens", CFG_ID_UUID, 256,
     B("a0eebc99-9c0b-4ef8-bb6d-6bb9bd38"), NULL, "not a uuid"},
    {"uuid non-hex digit", CFG_ID_UUID, 256,
     B("g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), NULL, "not a uuid"},
    {"uuid braces", CFG_ID_UUID, 256,
     B("{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}"), NULL, "not a uuid"},
    {"uuid too short", CFG_ID_UUID, 256, B("a0eebc99"), NULL, "not a uuid"},
    {"uuid with NUL", CFG_ID_UUID, 256,
     B("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1\000"), NULL, "not a uuid"},
    {"uuid empty", CFG_ID_UUID, 256, B(""), NULL, "empty"},

    /* ---- text: strict UTF-8, no NUL (PostgreSQL text cannot hold it) ---- */
    {"ascii", CFG_ID_TEXT, 256, B("order-17"), "order-17", NULL},
    {"kept as is, spaces too", CFG_ID_TEXT, 256, B(" 007 "), " 007 ", NULL},
    {"2-byte UTF-8", CFG_ID_TEXT, 256, B("h\xc3\xa9llo"), "h\xc3\xa9llo",
     NULL},
    {"3-byte UTF-8", CFG_ID_TEXT, 256, B("\xe6\x97\xa5\xe6\x9c\xac"),
     "\xe6\x97\xa5\xe6\x9c\xac", NULL},
    {"4-byte UTF-8", CFG_ID_TEXT, 256, B("\xf0\x9f\x98\x80"),
     "\xf0\x9f\x98\x80", NULL},
    {"U+10FFFF", CFG_ID_TEXT, 256, B("\xf4\x8f\xbf\xbf"), "\xf4\x8f\xbf\xbf",
     NULL},
    {"U+FFFF", CFG_ID_TEXT, 256, B("\xef\xbf\xbf"), "\xef\xbf\xbf", NULL},
    {"last before surrogates", CFG_ID_TEXT, 256, B("\xed\x9f\xbf"),
     "\xed\x9f\xbf", NULL},
    {"overlong 2-byte '/'", CFG_ID_TEXT, 256, B("\xc0\xaf"), NULL, "UTF-8"},
    {"overlong 2-byte NUL", CFG_ID_TEXT, 256, B("a\xc0\x80" "b"), NULL,
     "UTF-8"},
    {"overlong 3-byte", CFG_ID_TEXT, 256, B("\xe0\x80\xaf"), NULL, "UTF-8"},
    {"overlong 4-byte", CFG_ID_TEXT, 256, B("\xf0\x80\x80\xaf"), NULL,
     "UTF-8"},
    {"surrogate high", CFG_ID_TEXT, 256, B("\xed\xa0\x80"), NULL, "UTF-8"},
    {"surrogate low", CFG_ID_TEXT, 256, B("\xed\xbf\xbf"), NULL, "UTF-8"},
    {"above U+10FFFF", CFG_ID_TEXT, 256, B("\xf4\x90\x80\x80"), NULL,
     "UTF-8"},
    {"truncated 2-byte at end", CFG_ID_TEXT, 256, B("ab\xc3"), NULL,
     "UTF-8"},
    {"truncated 3-byte at end", CFG_ID_TEXT, 256, B("\xe6\x97"), NULL,
     "UTF-8"},
    {"truncated 4-byte at end", CFG_ID_TEXT, 256, B("x\xf0\x9f\x98"), NULL,
     "UTF-8"},
    {"truncated sequence mid-string", CFG_ID_TEXT, 256, B("\xe6\x97" "abc"),
     NULL, "UTF-8"},
    {"lone continuation byte", CFG_ID_TEXT, 256, B("a\x80" "b"), NULL,
     "UTF-8"},
    {"5-byte lead", CFG_ID_TEXT, 256, B("\xf8\x88\x80\x80\x80"), NULL,
     "UTF-8"},
    {"0xff", CFG_ID_TEXT, 256, B("\xff"), NULL, "UTF-8"},
    {"NUL inside", CFG_ID_TEXT, 256, B("ab\000cd"), NULL, "NUL"},
    {"NUL only", CFG_ID_TEXT, 256, B("\000"), NULL, "NUL"},
    {"text empty", CFG_ID_TEXT, 256, B(""), NULL, "empty"},

    /* ---- max_length, counted in bytes, checked before the type ---- */
    {"text at max_length", CFG_ID_TEXT, 5, B("abcde"), "abcde", NULL},
    {"text one over max_length", CFG_ID_TEXT, 5, B("abcdef"), NULL,
     "too long (6 bytes, max 5)"},
    /* Two 3-byte characters are 6 bytes: the limit is bytes, not chars. */
    {"multibyte over max_length", CFG_ID_TEXT, 5, B("\xe6\x97\xa5\xe6\x9c\xac"),
     NULL, "too long"},
    {"bigint at max_length", CFG_ID_BIGINT, 3, B("123"), "123", NULL},
    /* "1007" is a valid bigint but longer than allowed: length wins. */
    {"bigint over max_length", CFG_ID_BIGINT, 3, B("1007"), NULL,
     "too long (4 bytes, max 3)"},
    {"uuid over max_length", CFG_ID_UUID, 32,
     B("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), NULL, "too long"},
    {"uuid 32 hex at max_length 32", CFG_ID_UUID, 32,
     B("a0eebc999c0b4ef8bb6d6bb9bd380a11"), NULL, "not canonical"},
    {"binary over max_length", CFG_ID_TEXT, 4, B("\x01\x02\x03\xfe\xff"),
     NULL, "too long"},
};

/* Every byte of s is printable ASCII: a reason goes into logfmt lines and
 * a text column, where raw control or binary bytes must never appear. */
static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return 0;
    return 1;
}

/* The printable rendering of a case's input, for failure messages. */
static const char *show(const char *in, size_t len)
{
    static char out[512];
    size_t o = 0, i;

    for (i = 0; i < len && o + 5 < sizeof out; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, sizeof out - o, "\\x%02x", c);
    }
    out[o] = '\0';
    return out;
}

static void run_case(const id_case *c)
{
    char reason[EXACTLY_ID_REASON_MAX];
    char *out = (char *)"sentinel";
    exactly_err rc;

    memset(reason, 0, sizeof reason);
    rc = exactly_id_decode(c->type, c->max_len, 0, c->in, c->in_len, &out,
                           reason, sizeof reason);
    if (c->want) {
        TK_CHECK(rc == EXACTLY_OK, "%s: \"%s\" refused: %s", c->name,
                 show(c->in, c->in_len), reason);
        TK_CHECK_EQ_STR(out, c->want, c->name);
        free(out);
        return;
    }
    TK_CHECK(rc == EXACTLY_EINVAL,
             "%s: \"%s\" accepted as \"%s\" (rc %d), should be refused",
             c->name, show(c->in, c->in_len), rc == EXACTLY_OK ? out : "?",
             (int)rc);
    TK_CHECK(out == NULL, "%s: *out is not NULL after a refusal", c->name);
    TK_CHECK(reason[0] != '\0', "%s: refused without a reason", c->name);
    TK_CHECK(printable(reason),
             "%s: reason holds non-printable bytes: \"%s\"", c->name,
             show(reason, strlen(reason)));
    if (c->reason_has)
        TK_CHECK(strstr(reason, c->reason_has) != NULL,
                 "%s: reason \"%s\" lacks \"%s\"", c->name, reason,
                 c->reason_has);
}

/* A reason quotes only a short, escaped prefix of what it refused: a large
 * binary key must not end up whole in a log line or in dead_letters. */
static void check_reason_bounds(void)
{
    unsigned char big[4096];
    char reason[512];
    char small[16];
    char *out = NULL;
    size_t i, k, b;
    cfg_id_type types[] = {CFG_ID_BIGINT, CFG_ID_TEXT, CFG_ID_UUID};
    size_t max_lens[] = {16, sizeof big};
    /* The size the runtime uses (batch_msg.reason) and a roomy one that
     * shows the quote is cut by the decoder itself, not by snprintf. */
    size_t sizes[] = {EXACTLY_ID_REASON_MAX, sizeof reason};

    for (i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)(i * 37 + 11); /* every byte value */
    for (i = 0; i < sizeof types / sizeof types[0]; i++) {
        for (k = 0; k < 2; k++) {
            for (b = 0; b < 2; b++) {
                memset(reason, 'Z', sizeof reason);
                TK_CHECK(exactly_id_decode(types[i], max_lens[k], 0, big,
                                           sizeof big, &out, reason,
                                           sizes[b]) == EXACTLY_EINVAL,
                         "4096 binary bytes accepted as %s (max_len %zu)",
                         exactly_id_type_name(types[i]), max_lens[k]);
                TK_CHECK(out == NULL, "*out set after refusal");
                TK_CHECK(memchr(reason, '\0', sizes[b]) != NULL,
                         "reason is not NUL-terminated within %zu bytes",
                         sizes[b]);
                TK_CHECK(sizes[b] == sizeof reason || reason[sizes[b]] == 'Z',
                         "reason overran its %zu-byte buffer", sizes[b]);
                TK_CHECK(printable(reason),
                         "reason for binary %s holds raw bytes: \"%s\"",
                         exactly_id_type_name(types[i]),
                         show(reason, strlen(reason)));
                if (b == 1) {
                    /* At most 32 input bytes quoted, each at most 4
                     * characters once escaped, and marked as cut. */
                    TK_CHECK(strlen(reason) < 32 * 4 + 64,
                             "reason is %zu bytes long: \"%s\"",
                             strlen(reason), reason);
                    TK_CHECK(strstr(reason, "...") != NULL,
                             "reason \"%s\" does not mark the quote as cut",
                             reason);
                }
            }
        }
    }

    /* A tiny reason buffer is filled and terminated, never overrun. */
    memset(small, 'Z', sizeof small);
    TK_CHECK(exactly_id_decode(CFG_ID_BIGINT, 256, 0, "definitely not a number",
                               23, &out, small, 8) == EXACTLY_EINVAL,
             "text accepted as bigint");
    TK_CHECK(memchr(small, '\0', 8) != NULL, "8-byte reason not terminated");
    TK_CHECK(small[8] == 'Z', "reason overran its 8-byte buffer");

    /* Quote and backslash are escaped too: a reason quotes with '...'. */
    TK_CHECK(exactly_id_decode(CFG_ID_BIGINT, 256, 0, "a'b\\c", 5, &out, reason,
                               sizeof reason) == EXACTLY_EINVAL,
             "a'b\\c accepted as bigint");
    TK_CHECK(strstr(reason, "a\\x27b\\x5cc") != NULL,
             "quote/backslash not escaped in reason \"%s\"", reason);

    /* NULL data with length 0 is the missing key of a Kafka message. */
    TK_CHECK(exactly_id_decode(CFG_ID_BIGINT, 256, 0, NULL, 0, &out, reason,
                               sizeof reason) == EXACTLY_EINVAL,
             "NULL key accepted");
    TK_CHECK(out == NULL && strstr(reason, "empty") != NULL,
             "NULL key: reason \"%s\"", reason);
}

/* Every bigint the decoder accepts round-trips through the canonical form:
 * decoding the output again gives the same string (the form is a fixed
 * point), for a sweep of values near the edges and powers of ten. */
static void check_bigint_fixed_point(void)
{
    int64_t vals[] = {0, 1, -1, 9, 10, -10, 99, 100, 999999999, 1000000000,
                      INT64_MAX, INT64_MAX - 1, INT64_MIN, INT64_MIN + 1,
                      INT64_MAX / 10, INT64_MIN / 10};
    char in[32], reason[EXACTLY_ID_REASON_MAX];
    char *out = NULL;
    size_t i;

    for (i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        snprintf(in, sizeof in, "%" PRId64, vals[i]);
        TK_CHECK(exactly_id_decode(CFG_ID_BIGINT, 256, 0, in, strlen(in), &out,
                                   reason, sizeof reason) == EXACTLY_OK,
                 "%s refused: %s", in, reason);
        TK_CHECK_EQ_STR(out, in, "canonical form of a canonical bigint");
        free(out);
    }
}

/* With id.non_canonical: accept, another spelling becomes the canonical
 * form; what is not an ID at all is still refused, with the same reason. */
static void check_accept_non_canonical(void)
{
    static const struct {
        cfg_id_type type;
        const char *in;
        const char *want; /* NULL: refused */
    } cases[] = {
        {CFG_ID_BIGINT, "007", "7"},
        {CFG_ID_BIGINT, "+7", "7"},
        {CFG_ID_BIGINT, "-0", "0"},
        {CFG_ID_BIGINT, "-007", "-7"},
        {CFG_ID_BIGINT, "+0", "0"},
        {CFG_ID_BIGINT, "09223372036854775807", "9223372036854775807"},
        {CFG_ID_BIGINT, "7", "7"},
        {CFG_ID_BIGINT, "+", NULL},
        {CFG_ID_BIGINT, " 7", NULL},
        {CFG_ID_BIGINT, "0x7", NULL},
        {CFG_ID_BIGINT, "9223372036854775808", NULL},
        {CFG_ID_UUID, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
         "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
        {CFG_ID_UUID, "a0eebc999c0b4ef8bb6d6bb9bd380a11",
         "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
        {CFG_ID_UUID, "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}", NULL},
        {CFG_ID_TEXT, " 007 ", " 007 "},
    };
    char reason[EXACTLY_ID_REASON_MAX];
    size_t i;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = NULL;
        exactly_err rc = exactly_id_decode(cases[i].type, 256, 1, cases[i].in,
                                           strlen(cases[i].in), &out, reason,
                                           sizeof reason);
        if (cases[i].want) {
            TK_CHECK(rc == EXACTLY_OK, "accept: \"%s\" refused: %s",
                     cases[i].in, reason);
            TK_CHECK_EQ_STR(out, cases[i].want, "accepted spelling");
        } else {
            TK_CHECK(rc == EXACTLY_EINVAL && out == NULL,
                     "accept: \"%s\" is no %s but was accepted",
                     cases[i].in, exactly_id_type_name(cases[i].type));
            TK_CHECK(strstr(reason, "not canonical") == NULL,
                     "accept: \"%s\" refused as \"%s\"", cases[i].in,
                     reason);
        }
        free(out);
    }
}

/* Whether exactly_id_bigint_plain() agrees with the general decoder on
 * in: where it says yes, strict decoding gives the same bytes and that
 * value. 1 when it said yes. */
static int check_plain_agrees(const char *in, size_t len)
{
    char out[64], reason[EXACTLY_ID_REASON_MAX];
    size_t out_len = 0;
    int64_t v = 0;
    exactly_err rc;

    char copy[64];
    int64_t cv = -1;
    int plain = exactly_id_bigint_plain(len ? in : NULL, len, &v);

    /* The copying form gives the same answer and, on yes, the same value
     * and the text with a NUL, whatever its buffer held before. */
    if (len > 0) {
        memset(copy, 0xaa, sizeof copy);
        TK_CHECK(exactly_id_bigint_copy(copy, in, len, &cv) == plain,
                 "copy and plain disagree on \"%.*s\": %d, %d", (int)len, in,
                 !plain, plain);
        TK_CHECK(!plain || (memcmp(copy, in, len) == 0 && copy[len] == '\0'),
                 "copy of \"%.*s\" is not the text and a NUL", (int)len, in);
        TK_CHECK(!plain || cv == v, "copy's value of \"%.*s\": %" PRId64
                 ", plain's %" PRId64, (int)len, in, cv, v);
    }
    if (!plain)
        return 0;
    rc = exactly_id_decode_to(CFG_ID_BIGINT, 256, 0, in, len, out, &out_len,
                              reason, sizeof reason);
    TK_CHECK(rc == EXACTLY_OK, "plain took \"%.*s\", the decoder refused: %s",
             (int)len, in, reason);
    TK_CHECK(out_len == len && memcmp(out, in, len) == 0,
             "plain took \"%.*s\", the decoder made \"%s\"", (int)len, in,
             out);
    TK_CHECK(strtoll(out, NULL, 10) == v, "plain's value of \"%s\": %" PRId64,
             out, v);
    return 1;
}

/* The bigint fast path batches use says yes only to canonical bigints of
 * up to 18 digits, and then agrees with the decoder: the fixed cases, then
 * every short string over an alphabet of digits, signs and another
 * character. */
static void check_bigint_plain(void)
{
    static const struct {
        const char *in;
        int plain;
    } cases[] = {
        {"0", 1}, {"7", 1}, {"-7", 1}, {"10", 1}, {"-0", 0}, {"007", 0},
        {"-07", 0}, {"+7", 0}, {"", 0}, {"-", 0}, {"7a", 0}, {" 7", 0},
        {"123456789012345678", 1}, {"-999999999999999999", 1},
        {"1234567890123456789", 0}, {"9223372036854775807", 0},
    };
    static const char alpha[] = "-+019a";
    char in[8];
    size_t i, len, yes = 0;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
        TK_CHECK(check_plain_agrees(cases[i].in, strlen(cases[i].in)) ==
                     cases[i].plain,
                 "plain(\"%s\") should be %d", cases[i].in, cases[i].plain);
    for (len = 1; len <= 5; len++) {
        size_t combos = 1, c;
        for (i = 0; i < len; i++)
            combos *= sizeof alpha - 1;
        for (c = 0; c < combos; c++) {
            size_t k = c;
            for (i = 0; i < len; i++, k /= sizeof alpha - 1)
                in[i] = alpha[k % (sizeof alpha - 1)];
            yes += (size_t)check_plain_agrees(in, len);
        }
    }
    TK_CHECK(yes > 0, "plain accepted none of the sweep");
    /* Every text of up to 8 bytes over the digits' edges ('/' and ':'
     * border '0' and '9') and a byte with the high bit, then numbers of
     * every length up to 8 digits. */
    {
        static const char edge[] = "/09:\xb0";
        char w[32];
        size_t ok = 0;
        for (len = 1; len <= 8; len++) {
            size_t combos = 1, c;
            for (i = 0; i < len; i++)
                combos *= sizeof edge - 1;
            for (c = 0; c < combos; c++) {
                size_t k = c;
                for (i = 0; i < len; i++, k /= sizeof edge - 1)
                    w[i] = edge[k % (sizeof edge - 1)];
                ok += (size_t)check_plain_agrees(w, len);
            }
        }
        for (i = 0; i < 10000; i++) {
            snprintf(w, sizeof w, "9876%04zu", i);
            TK_CHECK(check_plain_agrees(w, 8), "plain refused %s", w);
            snprintf(w, sizeof w, "%zu", i);
            TK_CHECK(check_plain_agrees(w, strlen(w)), "plain refused %s", w);
        }
        TK_CHECK(ok > 0, "plain accepted none of the edge sweep");
    }
}

int main(void)
{
    size_t i, n = sizeof cases / sizeof cases[0];

    for (i = 0; i < n; i++)
        run_case(&cases[i]);
    tk_note("%zu table cases passed", n);
    check_reason_bounds();
    check_bigint_fixed_point();
    check_accept_non_canonical();
    check_bigint_plain();
    tk_note("id_decode unit test passed");
    return 0;
}
