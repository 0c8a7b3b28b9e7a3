/*
 * exactly/sqlbuf.h - building SQL text and array parameters in a handler.
 *
 * Header-only (static inline), so a plugin that uses it still links
 * nothing from exactly. A batch usually travels as array parameters
 * ($1::bigint[]) built here as PostgreSQL array literals: every element is
 * double-quoted with '"' and '\' escaped, so no value can change the
 * array's shape. Identifiers from options are quoted ("a""b"); values
 * never go into SQL text.
 *
 * After a failed allocation every append is a no-op and oom stays set:
 * check once, at the end. A zeroed exactly_sqlbuf is empty and valid.
 *
 * <exactly/exactly.h> does not include this header: add
 * #include <exactly/sqlbuf.h> where you use it.
 */
#ifndef EXACTLY_SQLBUF_H
#define EXACTLY_SQLBUF_H

#include <stdlib.h>
#include <string.h>

typedef struct exactly_sqlbuf {
    char *s;   /* NUL-terminated once anything was appended */
    size_t len;
    size_t cap;
    int oom;
} exactly_sqlbuf;

static inline void exactly_sqlbuf_putn(exactly_sqlbuf *b, const char *p,
                                       size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *s;
        while (cap < b->len + n + 1)
            cap *= 2;
        s = (char *)realloc(b->s, cap);
        if (!s) {
            b->oom = 1;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static inline void exactly_sqlbuf_puts(exactly_sqlbuf *b, const char *p)
{
    exactly_sqlbuf_putn(b, p, strlen(p));
}

/* Empties the buffer, keeping its memory for the next batch. */
static inline void exactly_sqlbuf_reset(exactly_sqlbuf *b)
{
    b->len = 0;
    b->oom = 0;
    if (b->s)
        b->s[0] = '\0';
}

static inline void exactly_sqlbuf_free(exactly_sqlbuf *b)
{
    free(b->s);
    memset(b, 0, sizeof(*b));
}

/* Empties the buffer and opens an array literal: "{". */
static inline void exactly_sqlbuf_array(exactly_sqlbuf *b)
{
    exactly_sqlbuf_reset(b);
    exactly_sqlbuf_putn(b, "{", 1);
}

/* Appends one element to an array literal opened with "{" (NULL: SQL
 * NULL). Close it with exactly_sqlbuf_puts(b, "}"). */
static inline void exactly_sqlbuf_elem(exactly_sqlbuf *b, const char *v)
{
    const char *p, *run;

    if (b->len > 1)
        exactly_sqlbuf_putn(b, ",", 1);
    if (!v) {
        exactly_sqlbuf_puts(b, "NULL");
        return;
    }
    exactly_sqlbuf_putn(b, "\"", 1);
    for (run = p = v; *p; p++) {
        if (*p == '"' || *p == '\\') {
            exactly_sqlbuf_putn(b, run, (size_t)(p - run));
            exactly_sqlbuf_putn(b, "\\", 1);
            run = p;
        }
    }
    exactly_sqlbuf_putn(b, run, (size_t)(p - run));
    exactly_sqlbuf_putn(b, "\"", 1);
}

/* Appends name[0..len) as a quoted identifier: a"b becomes "a""b". */
static inline void exactly_sqlbuf_ident(exactly_sqlbuf *b, const char *name,
                                        size_t len)
{
    size_t i;

    exactly_sqlbuf_putn(b, "\"", 1);
    for (i = 0; i < len; i++) {
        if (name[i] == '"')
            exactly_sqlbuf_putn(b, "\"", 1);
        exactly_sqlbuf_putn(b, name + i, 1);
    }
    exactly_sqlbuf_putn(b, "\"", 1);
}

/* Appends a table name, quoted: "t", or "s"."t" for s.t (literal and
 * case-sensitive). Returns -1 for an empty name, an empty part or more
 * than one dot. */
static inline int exactly_sqlbuf_relation(exactly_sqlbuf *b, const char *name)
{
    const char *dot = name ? strchr(name, '.') : NULL;

    if (!name || !*name ||
        (dot && (dot == name || !dot[1] || strchr(dot + 1, '.'))))
        return -1;
    if (!dot) {
        exactly_sqlbuf_ident(b, name, strlen(name));
        return 0;
    }
    exactly_sqlbuf_ident(b, name, (size_t)(dot - name));
    exactly_sqlbuf_putn(b, ".", 1);
    exactly_sqlbuf_ident(b, dot + 1, strlen(dot + 1));
    return 0;
}

/*
 * Hands the built string over: returns it (NUL-terminated, malloc'd: the
 * caller frees it with free()) and leaves b empty, ready to build again
 * with nothing to free. A buffer nothing was appended to gives "" (also
 * malloc'd), so NULL means only one thing: an allocation failed at some
 * point since the buffer was last empty (the partial text is freed then).
 * Use it instead of exactly_sqlbuf_free() when the string must outlive b.
 */
static inline char *exactly_sqlbuf_take(exactly_sqlbuf *b)
{
    char *s = b->oom ? NULL : b->s;

    if (!s)
        free(b->s);
    if (!s && !b->oom) {
        s = (char *)malloc(1);
        if (s)
            s[0] = '\0';
    }
    memset(b, 0, sizeof(*b));
    return s;
}

#endif
