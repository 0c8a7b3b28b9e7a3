/*
 * escape.h - text that came from outside (message keys, IDs, server and
 * librdkafka messages) made safe for where it is written: a logfmt value,
 * a JSON string, a terminal, a fixed buffer or a text column of the
 * database (which refuses bytes that are not UTF-8, SQLSTATE 22021).
 *
 * None of these ever lets such text end a line, start an escape sequence
 * of a terminal (ESC, the C1 controls) or pass as structure (a quote, an
 * '='). Every function appends to a strbuf (which latches sb->oom on
 * allocation failure; check it once at the end) and reads exactly n bytes,
 * NUL bytes included.
 */
#ifndef EXACTLY_ESCAPE_H
#define EXACTLY_ESCAPE_H

#include <stdarg.h>
#include <stddef.h>

#include "strbuf.h"

/* The length of the well-formed UTF-8 character at p (n >= 1 bytes left):
 * 1 for ASCII, 2 to 4 for a shortest-form sequence of a scalar value
 * (no surrogate, at most U+10FFFF); 0 when p does not start one. */
size_t exactly_utf8_len(const unsigned char *p, size_t n);

/* 1 when s[0..n) is well-formed UTF-8 without a NUL byte, else 0. */
int exactly_utf8_valid(const char *s, size_t n);

/*
 * Copies src (NUL-terminated; NULL copies as "") into dst[0..size)
 * (size >= 1) as well-formed UTF-8, always NUL-terminated: every byte of
 * src that is not part of well-formed UTF-8 is written as the four
 * characters \xNN (as exactly_escape_utf8), and when it does not all fit,
 * the copy ends before the first character or \xNN that does not fit
 * whole, never inside one. Returns the bytes written before the NUL.
 * For error texts kept in the fixed buffers of an error value: they end
 * up in dead letters, which the database refuses when they are not UTF-8.
 */
size_t exactly_utf8_copy(char *dst, size_t size, const char *src);

/* exactly_utf8_copy of the text fmt and its arguments format as printf
 * does, of which at most the first EXACTLY_UTF8_FORMAT_MAX - 1 bytes are
 * kept; a multi-byte character cut by that limit is left out whole. */
#define EXACTLY_UTF8_FORMAT_MAX 1024
size_t exactly_utf8_format(char *dst, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
size_t exactly_utf8_vformat(char *dst, size_t size, const char *fmt,
                            va_list ap) __attribute__((format(printf, 3, 0)));

/* s (NUL-terminated) as well-formed UTF-8, every byte that is not part of
 * it written \xNN (exactly_escape_utf8), in a new string the caller
 * frees; NULL when out of memory. Nothing is shortened. */
char *exactly_utf8_dup(const char *s);

/*
 * Appends s[0..n) as one logfmt value. Bare when it is not empty and every
 * byte is printable ASCII other than '"', '=' and '\'; otherwise in double
 * quotes, where '"' and '\' are written \" and \\, newline, carriage return
 * and tab \n, \r and \t, the other C0 controls, DEL, the C1 controls
 * (U+0080..U+009F) and the line and paragraph separators (U+2028, U+2029)
 * \uXXXX, and a byte that is not part of well-formed UTF-8 \xNN (always
 * 80..FF). Other UTF-8 passes as it is. quote forces the quotes.
 */
void exactly_escape_logfmt(strbuf *out, const char *s, size_t n, int quote);

/* Appends s[0..n) with every byte that is not part of well-formed UTF-8
 * (and every NUL) written as the four characters \xNN: text a JSON
 * library accepts as a string, which then escapes the rest. */
void exactly_escape_utf8(strbuf *out, const char *s, size_t n);

/*
 * Appends s[0..n) for a person's terminal: newline, carriage return and
 * tab as \n, \r and \t; every other control byte (C0, DEL), both bytes of
 * a C1 control and every byte that is not part of well-formed UTF-8 as
 * \xNN. Printable text (UTF-8 included) and '\' pass as they are.
 */
void exactly_escape_printable(strbuf *out, const char *s, size_t n);

/* s (NUL-terminated; NULL gives NULL) as exactly_escape_printable writes
 * it, in a new string the caller frees; NULL when out of memory. */
char *exactly_printable(const char *s);

#endif
