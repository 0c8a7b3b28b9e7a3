/*
 * strbuf.h - a growing string, and PostgreSQL array literals built in it.
 *
 * Array literals are how a batch travels as one parameter ($1::bigint[]):
 * every element is double-quoted with '"' and '\' escaped, so any message
 * content is safe as an element. On allocation failure a strbuf latches an
 * error (sb->oom) and further appends do nothing; check once at the end.
 */
#ifndef EXACTLY_STRBUF_H
#define EXACTLY_STRBUF_H

#include <stddef.h>

typedef struct strbuf {
    char *data;
    size_t len;
    size_t cap;
    int oom;
    int n_elems; /* elements in the array being built */
} strbuf;

void strbuf_reset(strbuf *sb);
void strbuf_free(strbuf *sb);
void strbuf_append(strbuf *sb, const char *s, size_t n);
void strbuf_puts(strbuf *sb, const char *s);
void strbuf_printf(strbuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* "{" ... "}" with elements in between. */
void strbuf_array_begin(strbuf *sb);
void strbuf_array_elem(strbuf *sb, const char *s, size_t n);
void strbuf_array_elem_str(strbuf *sb, const char *s); /* NULL: SQL NULL */
void strbuf_array_elem_int(strbuf *sb, long long v);
void strbuf_array_elem_hex(strbuf *sb, const void *data, size_t n); /* NULL data: SQL NULL */
void strbuf_array_end(strbuf *sb);

/* The NUL-terminated text, or "" when empty. */
const char *strbuf_str(const strbuf *sb);

/* Hands the string over (the caller frees it) and empties sb; NULL after an
 * allocation failed (sb's memory is freed then) or when nothing was
 * appended. */
char *strbuf_take(strbuf *sb);

/* Appends name[0..n) as a quoted SQL identifier: in double quotes, each
 * '"' doubled (what PQescapeIdentifier produces for valid text). The one
 * quoting of identifiers in statements built without a connection; with a
 * connection, exactly_pg_ident (pg/pg_conn.h) asks libpq. */
void strbuf_ident(strbuf *sb, const char *name, size_t n);

#endif
