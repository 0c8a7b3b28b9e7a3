/*
 * pgarray: the binary array parameters the lookup and the fused upsert
 * send. The server reads these bytes as they are (array_recv), so every
 * byte of the header and of each element is checked here against the
 * wire format: ndim 1, has-null flag, element OID, length, lower bound 1,
 * then per element a 4-byte length (-1 for NULL) and its bytes, all
 * big-endian.
 */
#include <stdint.h>
#include <string.h>

#include "pgarray.h"
#include "testkit.h"

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
}

static void check_header(const unsigned char *p, uint32_t has_null,
                         uint32_t oid, uint32_t n)
{
    TK_CHECK_EQ_INT64(get32(p), 1, "ndim");
    TK_CHECK_EQ_INT64(get32(p + 4), has_null, "has-null flag");
    TK_CHECK_EQ_INT64(get32(p + 8), oid, "element oid");
    TK_CHECK_EQ_INT64(get32(p + 12), n, "length");
    TK_CHECK_EQ_INT64(get32(p + 16), 1, "lower bound");
}

static int64_t get_int8(const unsigned char *p)
{
    return (int64_t)((uint64_t)get32(p) << 32 | get32(p + 4));
}

int main(void)
{
    pgarray a;
    const unsigned char *p;
    int len = -1;
    static const char *const ints[] = {"0", "7", "-1", "9223372036854775807",
                                       "-9223372036854775808"};
    static const int64_t want[] = {0, 7, -1, INT64_MAX, INT64_MIN};
    size_t i;

    memset(&a, 0, sizeof(a));
    pgarray_begin(&a, PGARRAY_INT8_OID);
    for (i = 0; i < 5; i++)
        TK_CHECK(pgarray_add_text_as(&a, ints[i], strlen(ints[i])) == 0,
                 "int8 %s accepted", ints[i]);
    pgarray_add_int8(&a, 42);
    p = (const unsigned char *)pgarray_finish(&a, &len);
    TK_CHECK(p != NULL, "int8 array built");
    TK_CHECK_EQ_INT64(len, 20 + 6 * 12, "int8 array length");
    check_header(p, 0, 20, 6);
    for (i = 0; i < 5; i++) {
        TK_CHECK_EQ_INT64(get32(p + 20 + i * 12), 8, "int8 element length");
        TK_CHECK_EQ_INT64(get_int8(p + 24 + i * 12), want[i], ints[i]);
    }
    TK_CHECK_EQ_INT64(get_int8(p + 24 + 5 * 12), 42, "pgarray_add_int8");
    /* pgarray_add_int8s: the same bytes as one pgarray_add_int8 each,
     * after what the array held, across the buffer's first growth. */
    {
        static int64_t many[400];
        for (i = 0; i < 400; i++)
            many[i] = (int64_t)(i * 0x0102030405060708ULL) - 7;
        pgarray_begin(&a, PGARRAY_INT8_OID);
        pgarray_add_int8(&a, 5);
        pgarray_add_int8s(&a, many, 0);
        pgarray_add_int8s(&a, many, 400);
        p = (const unsigned char *)pgarray_finish(&a, &len);
        TK_CHECK(p != NULL, "int8 array built in bulk");
        TK_CHECK_EQ_INT64(len, 20 + 401 * 12, "bulk int8 array length");
        check_header(p, 0, 20, 401);
        TK_CHECK_EQ_INT64(get_int8(p + 24), 5, "the element before the bulk");
        for (i = 0; i < 400; i++) {
            TK_CHECK_EQ_INT64(get32(p + 20 + (i + 1) * 12), 8,
                              "bulk int8 element length");
            TK_CHECK_EQ_INT64(get_int8(p + 24 + (i + 1) * 12), many[i],
                              "bulk int8 element");
        }
    }
    TK_CHECK(pgarray_add_text_as(&a, "", 0) != 0, "empty int8 refused");
    TK_CHECK(pgarray_add_text_as(&a, "-", 1) != 0, "lone minus refused");
    TK_CHECK(pgarray_add_text_as(&a, "12a", 3) != 0, "non-digit refused");

    /* Reused: begin starts over with the same buffer. */
    pgarray_begin(&a, PGARRAY_UUID_OID);
    TK_CHECK(pgarray_add_text_as(&a, "0123abcd-4567-89ef-0123-456789abcdef",
                                 36) == 0, "uuid accepted");
    TK_CHECK(pgarray_add_text_as(&a, "0123abcd-4567", 13) != 0,
             "short uuid refused");
    TK_CHECK(pgarray_add_text_as(&a, "0123abcd-4567-89ef-0123-456789abcdeg",
                                 36) != 0, "non-hex uuid refused");
    pgarray_add_null(&a);
    p = (const unsigned char *)pgarray_finish(&a, &len);
    TK_CHECK(p != NULL, "uuid array built");
    TK_CHECK_EQ_INT64(len, 20 + 4 + 16 + 4, "uuid array length");
    check_header(p, 1, 2950, 2);
    TK_CHECK_EQ_INT64(get32(p + 20), 16, "uuid element length");
    TK_CHECK(memcmp(p + 24, "\x01\x23\xab\xcd\x45\x67\x89\xef\x01\x23\x45\x67"
                            "\x89\xab\xcd\xef", 16) == 0, "uuid bytes");
    TK_CHECK_EQ_INT64(get32(p + 40), 0xffffffffu, "NULL element");

    pgarray_begin(&a, PGARRAY_TEXT_OID);
    TK_CHECK(pgarray_add_text_as(&a, "a\"b\\c,{}", 8) == 0, "text accepted");
    p = (const unsigned char *)pgarray_finish(&a, &len);
    TK_CHECK(p != NULL, "text array built");
    check_header(p, 0, 25, 1);
    TK_CHECK_EQ_INT64(get32(p + 20), 8, "text element length");
    TK_CHECK(memcmp(p + 24, "a\"b\\c,{}", 8) == 0, "text bytes unescaped");

    TK_CHECK_EQ_INT64(pgarray_oid_of("bigint"), 20, "bigint oid");
    TK_CHECK_EQ_INT64(pgarray_oid_of("uuid"), 2950, "uuid oid");
    TK_CHECK_EQ_INT64(pgarray_oid_of("text"), 25, "text oid");
    TK_CHECK_EQ_INT64(pgarray_oid_of("numeric"), 0, "other type");
    pgarray_free(&a);
    pgarray_free(&a);
    tk_note("pgarray: int8, uuid, text and NULL elements byte for byte");
    return 0;
}
