/*
 * produce_line_parse(): one line of exactly-produce's input becomes one
 * message, byte for byte as the documented format says (produce_line.h):
 * null and empty keys, values and header values are told apart, every
 * escape yields its byte, and anything the format does not define is
 * refused with a reason instead of being sent as something else.
 *
 * Table-driven: each row is one line and the message (or refusal) it must
 * give.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "produce_line.h"
#include "testkit.h"

/* A byte string that may be null: NUL marks null, else len bytes of s. */
typedef struct bytes {
    const char *s; /* NULL: null */
    size_t len;
} bytes;

#define NUL_ {NULL, 0}
#define B(lit) {(lit), sizeof(lit) - 1}

typedef struct line_case {
    const char *name;
    const char *line;
    size_t len;      /* 0: strlen(line) */
    int skip;        /* the line is no message */
    const char *err; /* refusal: a substring of the reason */
    bytes key;
    size_t n_headers;
    bytes hname[3];
    bytes hvalue[3];
    bytes value;
} line_case;

static const line_case cases[] = {
    {"key only", "42", 0, 0, NULL, B("42"), 0, {{0}}, {{0}}, NUL_},
    {"empty line", "", 0, 1, NULL, NUL_, 0, {{0}}, {{0}}, NUL_},
    {"comment", "# a comment\tx", 0, 1, NULL, NUL_, 0, {{0}}, {{0}}, NUL_},
    {"CR alone", "\r", 0, 1, NULL, NUL_, 0, {{0}}, {{0}}, NUL_},
    {"empty key", "\t", 0, 0, NULL, B(""), 0, {{0}}, {{0}}, NUL_},
    {"null key", "\\N", 0, 0, NULL, NUL_, 0, {{0}}, {{0}}, NUL_},
    {"null key and value", "\\N\t\t7", 0, 0, NULL, NUL_, 0, {{0}}, {{0}},
     B("7")},
    {"headers", "43\tevent-id=e-1,source=test", 0, 0, NULL, B("43"), 2,
     {B("event-id"), B("source")}, {B("e-1"), B("test")}, NUL_},
    {"header with null value", "k\tflag", 0, 0, NULL, B("k"), 1,
     {B("flag")}, {NUL_}, NUL_},
    {"header with \\N value", "k\th=\\N", 0, 0, NULL, B("k"), 1, {B("h")},
     {NUL_}, NUL_},
    {"header with empty value", "k\th=", 0, 0, NULL, B("k"), 1, {B("h")},
     {B("")}, NUL_},
    {"no headers, a value", "k\t\tv", 0, 0, NULL, B("k"), 0, {{0}}, {{0}},
     B("v")},
    {"empty value", "k\t\t", 0, 0, NULL, B("k"), 0, {{0}}, {{0}}, B("")},
    {"null value", "k\t\t\\N", 0, 0, NULL, B("k"), 0, {{0}}, {{0}}, NUL_},
    {"escapes", "a\\tb\\x00c\\\\d\\,\\=\\#\\n\\r\\xfF", 0, 0, NULL,
     B("a\tb\0c\\d,=#\n\r\xff"), 0, {{0}}, {{0}}, NUL_},
    {"escaped hash starts a key", "\\#x", 0, 0, NULL, B("#x"), 0, {{0}},
     {{0}}, NUL_},
    {"escaped separators in a header", "k\ta\\=b=c\\,d=e,x=\\x01", 0, 0,
     NULL, B("k"), 2, {B("a=b"), B("x")}, {B("c,d=e"), B("\x01")}, NUL_},
    {"CRLF", "k\t\tv\r", 0, 0, NULL, B("k"), 0, {{0}}, {{0}}, B("v")},
    {"a raw NUL byte in a value", "k\t\ta\0b", 6, 0, NULL, B("k"), 0, {{0}},
     {{0}}, B("a\0b")},
    {"four fields", "a\tb\tc\td", 0, 0, "more than three", NUL_, 0, {{0}},
     {{0}}, NUL_},
    {"unknown escape", "a\\q", 0, 0, "unknown escape \\q", NUL_, 0, {{0}},
     {{0}}, NUL_},
    {"lone backslash", "a\\", 0, 0, "lone backslash", NUL_, 0, {{0}}, {{0}},
     NUL_},
    {"short hex", "a\\x4", 0, 0, "two hex digits", NUL_, 0, {{0}}, {{0}},
     NUL_},
    {"bad hex", "a\\xZZ", 0, 0, "two hex digits", NUL_, 0, {{0}}, {{0}},
     NUL_},
    {"\\N inside a field", "x\\Ny", 0, 0, "whole field", NUL_, 0, {{0}},
     {{0}}, NUL_},
    {"\\N in a value", "k\t\tv\\N", 0, 0, "value: \\N", NUL_, 0, {{0}},
     {{0}}, NUL_},
    {"header without a name", "k\t=v", 0, 0, "has no name", NUL_, 0, {{0}},
     {{0}}, NUL_},
    {"empty header item", "k\ta=1,,b=2", 0, 0, "header 2 has no name",
     NUL_, 0, {{0}}, {{0}}, NUL_},
    {"NUL in a header name", "k\t\\x00=1", 0, 0, "NUL byte", NUL_, 0,
     {{0}}, {{0}}, NUL_},
    {"null header name", "k\t\\N=1", 0, 0, "has no name", NUL_, 0, {{0}},
     {{0}}, NUL_},
};

static void check_bytes(const char *what, const char *cname,
                        const produce_bytes *got, const bytes *want)
{
    if (!want->s) {
        TK_CHECK(got->data == NULL, "%s: %s: want null, got %zu bytes",
                 cname, what, got->len);
        return;
    }
    TK_CHECK(got->data != NULL, "%s: %s: want %zu bytes, got null", cname,
             what, want->len);
    TK_CHECK(got->len == want->len && memcmp(got->data, want->s, want->len) == 0,
             "%s: %s: want %zu bytes \"%.*s\", got %zu bytes \"%.*s\"", cname,
             what, want->len, (int)want->len, want->s, got->len,
             (int)got->len, got->data);
}

static void run_case(const line_case *c)
{
    produce_msg m;
    char err[512] = "";
    int is_message = -1;
    size_t len = c->len ? c->len : strlen(c->line);
    exactly_err rc;
    size_t i;

    memset(&m, 0, sizeof(m));
    rc = produce_line_parse(c->line, len, &m, &is_message, err, sizeof(err));
    if (c->err) {
        TK_CHECK(rc == EXACTLY_EINVAL, "%s: want a refusal, got rc %d",
                 c->name, (int)rc);
        TK_CHECK(strstr(err, c->err) != NULL,
                 "%s: reason \"%s\" lacks \"%s\"", c->name, err, c->err);
        TK_CHECK(m.key.data == NULL && m.headers == NULL && m.value.data == NULL,
                 "%s: a refused line left a message behind", c->name);
        return;
    }
    TK_CHECK(rc == EXACTLY_OK, "%s: refused: %s", c->name, err);
    if (c->skip) {
        TK_CHECK_EQ_INT64(is_message, 0, c->name);
        return;
    }
    TK_CHECK_EQ_INT64(is_message, 1, c->name);
    check_bytes("key", c->name, &m.key, &c->key);
    check_bytes("value", c->name, &m.value, &c->value);
    TK_CHECK(m.n_headers == c->n_headers, "%s: %zu headers, want %zu",
             c->name, m.n_headers, c->n_headers);
    for (i = 0; i < c->n_headers; i++) {
        check_bytes("header name", c->name, &m.headers[i].name, &c->hname[i]);
        check_bytes("header value", c->name, &m.headers[i].value,
                    &c->hvalue[i]);
    }
    produce_msg_free(&m);
    TK_CHECK(m.key.data == NULL && m.n_headers == 0,
             "%s: produce_msg_free left data", c->name);
}

int main(void)
{
    size_t i, n = sizeof(cases) / sizeof(cases[0]);

    for (i = 0; i < n; i++)
        run_case(&cases[i]);
    tk_note("%zu produce line cases passed", n);
    return 0;
}
