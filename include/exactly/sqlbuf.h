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

#include <stdint.h>
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

/*
 * ---- binary array parameters ----
 *
 * PostgreSQL's binary wire format of a one-dimensional array, for a
 * parameter sent with format 1 through host->exec_params (ABI 1.2): the
 * server then parses no text. The buffer holds binary data: pass b->len as
 * the parameter's length. elem_oid is the element type of the parameter's
 * type as the statement declares it ($1::bigint[] takes 20): int8 20,
 * int2 21, int4 23, text 25, varchar 1043, numeric 1700; the server
 * refuses any other. A binary value must be exactly the type's wire
 * format; when a value is not in the plain form the helpers below accept,
 * they append nothing and return -1: send that array as a text literal
 * instead (the same $1::bigint[] takes either format).
 */

/* Appends v as 4 bytes, most significant first (the wire's order). */
static inline void exactly_sqlbuf_put_be32(exactly_sqlbuf *b, uint32_t v)
{
    char be[4];

    be[0] = (char)(v >> 24);
    be[1] = (char)(v >> 16);
    be[2] = (char)(v >> 8);
    be[3] = (char)v;
    exactly_sqlbuf_putn(b, be, 4);
}

/* Empties the buffer and opens a binary array of elem_oid elements: the
 * header of an array with no element yet. */
static inline void exactly_sqlbuf_binarray(exactly_sqlbuf *b, uint32_t elem_oid)
{
    exactly_sqlbuf_reset(b);
    exactly_sqlbuf_put_be32(b, 1);        /* dimensions */
    exactly_sqlbuf_put_be32(b, 0);        /* has nulls */
    exactly_sqlbuf_put_be32(b, elem_oid);
    exactly_sqlbuf_put_be32(b, 0);        /* elements, counted below */
    exactly_sqlbuf_put_be32(b, 1);        /* lower bound */
}

/* Appends one element of a binary array opened with exactly_sqlbuf_binarray:
 * its n bytes of wire format, or SQL NULL for v NULL. */
static inline void exactly_sqlbuf_binelem(exactly_sqlbuf *b, const void *v,
                                          size_t n)
{
    unsigned char *h;
    uint32_t count;

    if (b->oom || b->len < 20)
        return;
    h = (unsigned char *)b->s;
    count = ((uint32_t)h[12] << 24 | (uint32_t)h[13] << 16 |
             (uint32_t)h[14] << 8 | h[15]) + 1;
    h[12] = (unsigned char)(count >> 24);
    h[13] = (unsigned char)(count >> 16);
    h[14] = (unsigned char)(count >> 8);
    h[15] = (unsigned char)count;
    if (!v) {
        h[7] = 1;
        exactly_sqlbuf_put_be32(b, 0xFFFFFFFFu); /* length -1: NULL */
        return;
    }
    exactly_sqlbuf_put_be32(b, (uint32_t)n);
    exactly_sqlbuf_putn(b, (const char *)v, n);
}

/*
 * Appends the integer in text (an optional '-' and decimal digits, as
 * PostgreSQL prints integers) as an int2, int4 or int8 element (bytes 2,
 * 4 or 8); NULL text is SQL NULL. Returns -1, appending nothing, for any
 * other text or a value out of the type's range.
 */
static inline int exactly_sqlbuf_binelem_int(exactly_sqlbuf *b,
                                             const char *text, int bytes)
{
    const char *p = text;
    uint64_t v = 0, max;
    unsigned char be[8];
    int i, neg = 0;

    if (!text) {
        exactly_sqlbuf_binelem(b, NULL, 0);
        return 0;
    }
    if (bytes != 2 && bytes != 4 && bytes != 8)
        return -1;
    max = (uint64_t)1 << (bytes * 8 - 1); /* |minimum|; maximum + 1 */
    if (*p == '-') {
        neg = 1;
        p++;
    }
    if (!*p)
        return -1;
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || v > (max - (uint64_t)(*p - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (!neg && v == max)
        return -1;
    if (neg)
        v = ~v + 1; /* two's complement */
    for (i = 0; i < bytes; i++)
        be[i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
    exactly_sqlbuf_binelem(b, be, (size_t)bytes);
    return 0;
}

/*
 * Appends the number in text (an optional '-', decimal digits, an
 * optional '.' and digits, as PostgreSQL prints a finite numeric; at most
 * 1000 digits on each side of the point) as a numeric element; NULL text
 * is SQL NULL. Returns -1, appending nothing, for any other text (NaN,
 * Infinity, an exponent, spaces).
 */
static inline int exactly_sqlbuf_binelem_numeric(exactly_sqlbuf *b,
                                                 const char *text)
{
    /* Base-10000 digits: 4 header fields, then up to 2 * 251 digits. */
    unsigned char v[8 + 2 * 2 * 251];
    const char *p = text, *ip, *fp = "";
    size_t il, fl = 0, ig, fg, g, k, n = 8;
    int neg = 0;

    if (!text) {
        exactly_sqlbuf_binelem(b, NULL, 0);
        return 0;
    }
    if (*p == '-') {
        neg = 1;
        p++;
    }
    for (ip = p; *p >= '0' && *p <= '9'; p++)
        ;
    il = (size_t)(p - ip);
    if (*p == '.') {
        for (fp = ++p; *p >= '0' && *p <= '9'; p++)
            ;
        fl = (size_t)(p - fp);
    }
    if (*p || il + fl == 0 || il > 1000 || fl > 1000)
        return -1;
    ig = (il + 3) / 4; /* groups left of the point */
    fg = (fl + 3) / 4;
    v[0] = (unsigned char)((ig + fg) >> 8); /* ndigits */
    v[1] = (unsigned char)(ig + fg);
    v[2] = (unsigned char)((uint16_t)(ig - 1) >> 8); /* weight, int16 */
    v[3] = (unsigned char)(ig - 1);
    v[4] = neg ? 0x40 : 0; /* sign: 0x4000 negative */
    v[5] = 0;
    v[6] = (unsigned char)(fl >> 8); /* display scale */
    v[7] = (unsigned char)fl;
    /* Leading and trailing zero groups are allowed: the server strips
     * them (an integer part "0" is one zero group of weight 0). */
    for (g = 0, k = 0; g < ig; g++) {
        size_t c, cnt = g == 0 ? il - 4 * (ig - 1) : 4;
        unsigned d = 0;
        for (c = 0; c < cnt; c++)
            d = d * 10 + (unsigned)(ip[k++] - '0');
        v[n++] = (unsigned char)(d >> 8);
        v[n++] = (unsigned char)d;
    }
    for (g = 0, k = 0; g < fg; g++) {
        size_t c;
        unsigned d = 0;
        for (c = 0; c < 4; c++, k++)
            d = d * 10 + (k < fl ? (unsigned)(fp[k] - '0') : 0);
        v[n++] = (unsigned char)(d >> 8);
        v[n++] = (unsigned char)d;
    }
    exactly_sqlbuf_binelem(b, v, n);
    return 0;
}

#endif
