#include "produce_line.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The end of the raw field that starts at p: the first unescaped byte in
 * stops, or end. An escape is a backslash and the byte after it. */
static const char *field_end(const char *p, const char *end, const char *stops)
{
    while (p < end) {
        if (*p == '\\' && p + 1 < end) {
            p += 2;
            continue;
        }
        if (strchr(stops, *p) && *p != '\0')
            return p;
        p++;
    }
    return end;
}

/* Decodes the raw field [p, end) into *out (NULL data for "\N"). what
 * names the field in errors. */
static exactly_err decode(const char *p, const char *end, produce_bytes *out,
                          const char *what, char *err, size_t errsz)
{
    size_t n = (size_t)(end - p);
    char *o;

    out->data = NULL;
    out->len = 0;
    if (n == 2 && p[0] == '\\' && p[1] == 'N')
        return EXACTLY_OK;
    o = malloc(n + 1);
    if (!o)
        return EXACTLY_ENOMEM;
    out->data = o;
    while (p < end) {
        int hi, lo;

        if (*p != '\\') {
            *o++ = *p++;
            continue;
        }
        if (p + 1 == end) {
            snprintf(err, errsz, "%s ends with a lone backslash (write \\\\ "
                     "for one)", what);
            goto invalid;
        }
        switch (p[1]) {
        case '\\': *o++ = '\\'; break;
        case 't': *o++ = '\t'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case ',': *o++ = ','; break;
        case '=': *o++ = '='; break;
        case '#': *o++ = '#'; break;
        case 'x':
            if (end - p < 4 || (hi = hexval(p[2])) < 0 ||
                (lo = hexval(p[3])) < 0) {
                snprintf(err, errsz, "%s: \\x needs two hex digits", what);
                goto invalid;
            }
            *o++ = (char)(hi * 16 + lo);
            p += 4;
            continue;
        case 'N':
            snprintf(err, errsz, "%s: \\N (null) must be the whole field",
                     what);
            goto invalid;
        default:
            snprintf(err, errsz, "%s: unknown escape \\%c (known: \\\\ \\t "
                     "\\n \\r \\, \\= \\# \\xHH, and \\N alone)", what,
                     p[1] >= 0x20 && p[1] < 0x7f ? p[1] : '?');
            goto invalid;
        }
        p += 2;
    }
    *o = '\0';
    out->len = (size_t)(o - out->data);
    return EXACTLY_OK;
invalid:
    free(out->data);
    out->data = NULL;
    return EXACTLY_EINVAL;
}

/* Parses HEADERS [p, end) into m->headers. */
static exactly_err parse_headers(const char *p, const char *end,
                                 produce_msg *m, char *err, size_t errsz)
{
    size_t cap = 1, i;
    const char *q;
    exactly_err rc;

    if (p == end)
        return EXACTLY_OK;
    for (q = p; (q = field_end(q, end, ",")) < end; q++)
        cap++;
    m->headers = calloc(cap, sizeof(*m->headers));
    if (!m->headers)
        return EXACTLY_ENOMEM;
    for (i = 0; i < cap; i++) {
        const char *item_end = field_end(p, end, ",");
        const char *eq = field_end(p, item_end, "=");
        produce_header *h = &m->headers[m->n_headers];
        char what[48];

        snprintf(what, sizeof(what), "header %zu", i + 1);
        rc = decode(p, eq, &h->name, what, err, errsz);
        if (rc != EXACTLY_OK)
            return rc;
        m->n_headers++;
        if (!h->name.data || h->name.len == 0) {
            snprintf(err, errsz, "%s has no name (NAME=VALUE or NAME)", what);
            return EXACTLY_EINVAL;
        }
        if (memchr(h->name.data, '\0', h->name.len)) {
            snprintf(err, errsz, "%s: a header name cannot hold a NUL byte",
                     what);
            return EXACTLY_EINVAL;
        }
        if (eq < item_end) {
            rc = decode(eq + 1, item_end, &h->value, what, err, errsz);
            if (rc != EXACTLY_OK)
                return rc;
        }
        p = item_end + 1;
    }
    return EXACTLY_OK;
}

exactly_err produce_line_parse(const char *line, size_t len, produce_msg *m,
                               int *is_message, char *err, size_t errsz)
{
    const char *end = line + len;
    const char *tab1, *tab2;
    exactly_err rc;

    *is_message = 0;
    if (len > 0 && line[len - 1] == '\r')
        end--;
    if (end == line || line[0] == '#')
        return EXACTLY_OK;
    memset(m, 0, sizeof(*m));
    tab1 = memchr(line, '\t', (size_t)(end - line));
    tab2 = tab1 ? memchr(tab1 + 1, '\t', (size_t)(end - tab1 - 1)) : NULL;
    if (tab2 && memchr(tab2 + 1, '\t', (size_t)(end - tab2 - 1))) {
        snprintf(err, errsz, "more than three TAB-separated fields (KEY, "
                 "HEADERS, VALUE); write a tab within a field as \\t");
        return EXACTLY_EINVAL;
    }
    rc = decode(line, tab1 ? tab1 : end, &m->key, "key", err, errsz);
    if (rc == EXACTLY_OK && tab1)
        rc = parse_headers(tab1 + 1, tab2 ? tab2 : end, m, err, errsz);
    if (rc == EXACTLY_OK && tab2)
        rc = decode(tab2 + 1, end, &m->value, "value", err, errsz);
    if (rc != EXACTLY_OK) {
        produce_msg_free(m);
        return rc;
    }
    *is_message = 1;
    return EXACTLY_OK;
}

void produce_msg_free(produce_msg *m)
{
    size_t i;

    free(m->key.data);
    free(m->value.data);
    for (i = 0; i < m->n_headers; i++) {
        free(m->headers[i].name.data);
        free(m->headers[i].value.data);
    }
    free(m->headers);
    memset(m, 0, sizeof(*m));
}
