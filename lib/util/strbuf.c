/*
 * strbuf.c - the one growable string of exactly, the array literals built
 * in it and the quoting of SQL identifiers. Contract: strbuf.h.
 */
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int grow(strbuf *sb, size_t need)
{
    size_t cap;
    char *p;

    if (sb->oom)
        return -1;
    if (sb->len + need + 1 <= sb->cap)
        return 0;
    cap = sb->cap ? sb->cap : 256;
    while (cap < sb->len + need + 1)
        cap *= 2;
    p = realloc(sb->data, cap);
    if (!p) {
        sb->oom = 1;
        return -1;
    }
    sb->data = p;
    sb->cap = cap;
    return 0;
}

void strbuf_reset(strbuf *sb)
{
    sb->len = 0;
    sb->oom = 0;
    sb->n_elems = 0;
    if (sb->data)
        sb->data[0] = '\0';
}

void strbuf_free(strbuf *sb)
{
    free(sb->data);
    memset(sb, 0, sizeof(*sb));
}

void strbuf_append(strbuf *sb, const char *s, size_t n)
{
    if (grow(sb, n) != 0)
        return;
    memcpy(sb->data + sb->len, s, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
}

void strbuf_puts(strbuf *sb, const char *s) { strbuf_append(sb, s, strlen(s)); }

void strbuf_printf(strbuf *sb, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || grow(sb, (size_t)n) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
}

void strbuf_array_begin(strbuf *sb)
{
    strbuf_append(sb, "{", 1);
    sb->n_elems = 0;
}

static void sep(strbuf *sb)
{
    if (sb->n_elems++ > 0)
        strbuf_append(sb, ",", 1);
}

void strbuf_array_elem(strbuf *sb, const char *s, size_t n)
{
    size_t i;
    size_t run = 0;

    sep(sb);
    if (grow(sb, n + 2) != 0)
        return;
    strbuf_append(sb, "\"", 1);
    for (i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') {
            strbuf_append(sb, s + run, i - run);
            strbuf_append(sb, "\\", 1);
            run = i;
        }
    }
    strbuf_append(sb, s + run, n - run);
    strbuf_append(sb, "\"", 1);
}

void strbuf_array_elem_str(strbuf *sb, const char *s)
{
    if (!s) {
        sep(sb);
        strbuf_append(sb, "NULL", 4);
        return;
    }
    strbuf_array_elem(sb, s, strlen(s));
}

void strbuf_array_elem_int(strbuf *sb, long long v)
{
    sep(sb);
    strbuf_printf(sb, "%lld", v);
}

void strbuf_array_elem_hex(strbuf *sb, const void *data, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = data;
    size_t i;

    sep(sb);
    if (!data) {
        strbuf_append(sb, "NULL", 4);
        return;
    }
    if (grow(sb, n * 2 + 2) != 0)
        return;
    sb->data[sb->len++] = '"';
    for (i = 0; i < n; i++) {
        sb->data[sb->len++] = hex[p[i] >> 4];
        sb->data[sb->len++] = hex[p[i] & 15];
    }
    sb->data[sb->len++] = '"';
    sb->data[sb->len] = '\0';
}

void strbuf_array_end(strbuf *sb) { strbuf_append(sb, "}", 1); }

const char *strbuf_str(const strbuf *sb) { return sb->data ? sb->data : ""; }

char *strbuf_take(strbuf *sb)
{
    char *s = sb->oom ? NULL : sb->data;

    if (!s)
        free(sb->data);
    memset(sb, 0, sizeof(*sb));
    return s;
}

void strbuf_ident(strbuf *sb, const char *name, size_t n)
{
    size_t i, run = 0;

    strbuf_append(sb, "\"", 1);
    for (i = 0; i < n; i++) {
        if (name[i] != '"')
            continue;
        /* The quote goes out twice: once in the run, once here. */
        strbuf_append(sb, name + run, i + 1 - run);
        strbuf_append(sb, "\"", 1);
        run = i + 1;
    }
    strbuf_append(sb, name + run, n - run);
    strbuf_append(sb, "\"", 1);
}
