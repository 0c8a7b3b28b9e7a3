/*
 * conninfo.h - the PostgreSQL conninfo of the configuration: whether libpq
 * reads it as written, and keeping its passwords out of every message.
 *
 * libpq's conninfo parser quotes what it rejects (a token around a bad
 * percent-escape, the rest of a URI after an unclosed '[', a word without
 * '='), and a password with an unescaped '/' or '@' parses into the wrong
 * options, whose later errors quote pieces of it. So a conninfo libpq
 * cannot parse is described by a fixed sentence, never by libpq's message;
 * a URI that libpq would read differently from what it says is refused;
 * and any message produced while connecting passes through
 * exactly_conninfo_scrub() before it is shown.
 */
#ifndef EXACTLY_CONNINFO_H
#define EXACTLY_CONNINFO_H

#include <stddef.h>

/*
 * Why conninfo cannot be used as written, as a fixed sentence that quotes
 * nothing of it (static storage), or NULL when it is fine. A conninfo is
 * keyword=value pairs, a postgresql:// (or postgres://) URI, or, as libpq
 * has it, a bare database name; text that looks like a mistyped URI (a bare
 * name holding ':', '/' or '@') is refused rather than sent to the server
 * as a database name.
 */
const char *exactly_conninfo_problem(const char *conninfo);

/*
 * Copies msg into out (cut to out_size, always terminated) with every
 * password of conninfo (password=, sslpassword=, a URI's user:password@,
 * percent-encoded or decoded, quoted or unquoted) replaced by "****".
 * msg is any text produced while using conninfo: a libpq error, a server
 * message.
 */
void exactly_conninfo_scrub(const char *conninfo, const char *msg, char *out,
                            size_t out_size);

/* Copies conninfo into out with any password value replaced by "****". */
void exactly_config_redact_conninfo(const char *conninfo, char *out,
                                    size_t out_size);

#endif
