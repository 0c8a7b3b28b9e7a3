/*
 * escape.c - see escape.h.
 */
#include "escape.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t exactly_utf8_len(const unsigned char *p, size_t n)
{
    uint32_t cp;
    size_t len, k;

    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        len = 2;
        cp = p[0] & 0x1fu;
    } else if ((p[0] & 0xf0) == 0xe0) {
        len = 3;
        cp = p[0] & 0x0fu;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        len = 4;
        cp = p[0] & 0x07u;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (k = 1; k < len; k++) {
        if ((p[k] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[k] & 0x3fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

int exactly_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, len;

    while (i < n) {
        len = p[i] ? exactly_utf8_len(p + i, n - i) : 0;
        if (len == 0)
            return 0;
        i += len;
    }
    return 1;
}

size_t exactly_utf8_copy(char *dst, size_t size, const char *src)
{
    const unsigned char *p = (const unsigned char *)(src ? src : "");
    size_t n = strlen((const char *)p), i = 0, out = 0, len;

    while (i < n) {
        len = exactly_utf8_len(p + i, n - i);
        if (len > 0) {
            if (len >= size - out)
                break;
            memcpy(dst + out, p + i, len);
            out += len;
            i += len;
        } else {
            if (4 >= size - out)
                break;
            snprintf(dst + out, 5, "\\x%02x", p[i]);
            out += 4;
            i++;
        }
    }
    dst[out] = '\0';
    return out;
}

/* 1 when p[0..n) (1 <= n <= 3) is the start of a well-formed sequence
 * longer than n bytes: a character cut after n bytes. Completed with each
 * continuation byte that some lead byte needs next (E0 wants A0..BF, F0
 * 90..BF, ED 80..9F, F4 80..8F), one of them makes it whole. */
static int cut_character(const unsigned char *p, size_t n)
{
    static const unsigned char fill[] = {0x80, 0x90, 0xa0};
    unsigned char buf[4];
    size_t f, k;

    for (f = 0; f < sizeof(fill); f++) {
        memcpy(buf, p, n);
        for (k = n; k < 4; k++)
            buf[k] = fill[f];
        if (exactly_utf8_len(buf, 4) > n)
            return 1;
    }
    return 0;
}

size_t exactly_utf8_vformat(char *dst, size_t size, const char *fmt,
                            va_list ap)
{
    char text[EXACTLY_UTF8_FORMAT_MAX];
    int k = vsnprintf(text, sizeof(text), fmt, ap);
    size_t n, back;

    if (k < 0)
        text[0] = '\0';
    n = strlen(text);
    /* vsnprintf cuts at a byte: a character it cut is left out. */
    if (k >= 0 && (size_t)k > n)
        for (back = 1; back <= 3 && back <= n; back++) {
            if ((text[n - back] & 0xc0) == 0x80)
                continue;
            if (cut_character((const unsigned char *)text + n - back, back))
                text[n - back] = '\0';
            break;
        }
    return exactly_utf8_copy(dst, size, text);
}

size_t exactly_utf8_format(char *dst, size_t size, const char *fmt, ...)
{
    va_list ap;
    size_t n;

    va_start(ap, fmt);
    n = exactly_utf8_vformat(dst, size, fmt, ap);
    va_end(ap);
    return n;
}

char *exactly_utf8_dup(const char *s)
{
    strbuf sb = {0};

    strbuf_append(&sb, "", 0);
    exactly_escape_utf8(&sb, s, strlen(s));
    if (sb.oom) {
        strbuf_free(&sb);
        return NULL;
    }
    return sb.data;
}

/* The code point of a well-formed sequence of len bytes. */
static uint32_t code_point(const unsigned char *p, size_t len)
{
    static const unsigned char lead_mask[] = {0, 0x7f, 0x1f, 0x0f, 0x07};
    uint32_t cp = p[0] & lead_mask[len];
    size_t k;

    for (k = 1; k < len; k++)
        cp = cp << 6 | (p[k] & 0x3fu);
    return cp;
}

static void put_hex(strbuf *out, const char *form, unsigned v)
{
    char buf[8];
    int k = snprintf(buf, sizeof(buf), form, v);

    if (k > 0)
        strbuf_append(out, buf, (size_t)k);
}

static int bare_byte(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '"' && c != '=' && c != '\\';
}

void exactly_escape_logfmt(strbuf *out, const char *s, size_t n, int quote)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run;

    if (!quote && n > 0) {
        while (i < n && bare_byte(p[i]))
            i++;
        if (i == n) {
            strbuf_append(out, s, n);
            return;
        }
        i = 0;
    }
    strbuf_append(out, "\"", 1);
    while (i < n) {
        unsigned char c = p[i];
        size_t len;

        /* A run that needs nothing. */
        for (run = i; run < n && p[run] >= 0x20 && p[run] < 0x7f &&
                      p[run] != '"' && p[run] != '\\';
             run++)
            ;
        if (run > i) {
            strbuf_append(out, s + i, run - i);
            i = run;
            continue;
        }
        if (c == '"' || c == '\\') {
            strbuf_append(out, c == '"' ? "\\\"" : "\\\\", 2);
            i++;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            strbuf_append(out, c == '\n' ? "\\n" : c == '\r' ? "\\r" : "\\t", 2);
            i++;
        } else if (c < 0x80) { /* the other C0 controls, DEL */
            put_hex(out, "\\u%04x", c);
            i++;
        } else if ((len = exactly_utf8_len(p + i, n - i)) == 0) {
            put_hex(out, "\\x%02x", c);
            i++;
        } else {
            uint32_t cp = code_point(p + i, len);
            if (cp <= 0x9f || cp == 0x2028 || cp == 0x2029)
                put_hex(out, "\\u%04x", cp);
            else
                strbuf_append(out, s + i, len);
            i += len;
        }
    }
    strbuf_append(out, "\"", 1);
}

void exactly_escape_utf8(strbuf *out, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, start = 0, len;

    while (i < n) {
        len = p[i] ? exactly_utf8_len(p + i, n - i) : 0;
        if (len > 0) {
            i += len;
            continue;
        }
        strbuf_append(out, s + start, i - start);
        put_hex(out, "\\x%02x", p[i]);
        start = ++i;
    }
    strbuf_append(out, s + start, i - start);
}

void exactly_escape_printable(strbuf *out, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, start = 0, len, k;

    while (i < n) {
        unsigned char c = p[i];
        if (c >= 0x20 && c < 0x7f) {
            i++;
            continue;
        }
        len = c >= 0x80 ? exactly_utf8_len(p + i, n - i) : 0;
        if (len > 0 && code_point(p + i, len) > 0x9f) {
            i += len;
            continue;
        }
        strbuf_append(out, s + start, i - start);
        if (c == '\n' || c == '\r' || c == '\t') {
            strbuf_append(out, c == '\n' ? "\\n" : c == '\r' ? "\\r" : "\\t", 2);
            len = 1;
        } else {
            /* A C1 control shows both of its bytes. */
            if (len == 0)
                len = 1;
            for (k = 0; k < len; k++)
                put_hex(out, "\\x%02x", p[i + k]);
        }
        i += len;
        start = i;
    }
    strbuf_append(out, s + start, i - start);
}

char *exactly_printable(const char *s)
{
    strbuf sb = {0};

    if (!s)
        return NULL;
    strbuf_append(&sb, "", 0);
    exactly_escape_printable(&sb, s, strlen(s));
    if (sb.oom) {
        strbuf_free(&sb);
        return NULL;
    }
    return sb.data;
}
