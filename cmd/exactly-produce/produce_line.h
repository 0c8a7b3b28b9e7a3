/*
 * produce_line.h - one line of exactly-produce's input as one message.
 *
 * The format (exactly-produce --help says it to users):
 *
 *   KEY [TAB HEADERS [TAB VALUE]]
 *
 * HEADERS is NAME=VALUE items separated by commas (NAME alone: a null
 * header value; an empty field: no headers); a missing VALUE field is a
 * null value. In every field "\N" alone means null, and \\ \t \n \r \, \=
 * \# \xHH stand for a backslash, tab, newline, carriage return, comma,
 * equals sign, hash and the byte HH. Any other backslash is an error, so a
 * typo never turns silently into different bytes. A line that is empty or
 * starts with '#' is no message; a carriage return ending the line is
 * dropped.
 */
#ifndef EXACTLY_PRODUCE_LINE_H
#define EXACTLY_PRODUCE_LINE_H

#include <stddef.h>

#include "exactly/error.h"

/* Bytes that may be null; data is NUL-terminated (for header names) but
 * may hold NUL bytes within len. */
typedef struct produce_bytes {
    char *data; /* NULL when null */
    size_t len;
} produce_bytes;

typedef struct produce_header {
    produce_bytes name; /* never null, never empty, no NUL byte */
    produce_bytes value;
} produce_header;

/* One message. Owns everything it points to. */
typedef struct produce_msg {
    produce_bytes key;
    produce_bytes value;
    produce_header *headers;
    size_t n_headers;
} produce_msg;

/* Parses line (len bytes, no newline) into *m, which the caller zeroed or
 * freed before. Returns EXACTLY_OK with *is_message 1 for a message, 0
 * for a line to skip (m untouched); EXACTLY_EINVAL with the reason in err
 * (m then holds nothing); EXACTLY_ENOMEM. */
exactly_err produce_line_parse(const char *line, size_t len, produce_msg *m,
                               int *is_message, char *err, size_t errsz);

/* Frees what m holds and zeroes it. Accepts a zeroed message. */
void produce_msg_free(produce_msg *m);

#endif
