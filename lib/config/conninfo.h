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

#include "exactly/error.h"

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

/*
 * Why conninfo's own settings clash with what exactly sets itself, as a
 * sentence naming the keys (written into why), or NULL when they do not:
 * application_name (exactly names each session: a worker's owner string,
 * which `exactly offsets reset` uses to find running workers); options
 * setting statement_timeout, lock_timeout or
 * idle_in_transaction_session_timeout (postgres.*_ms set those);
 * connect_timeout when yaml_connect_timeout says postgres.connect_timeout_s
 * is set too. conninfo must have passed exactly_conninfo_problem().
 */
const char *exactly_conninfo_conflict(const char *conninfo,
                                      int yaml_connect_timeout, char *why,
                                      size_t why_size);

/* What exactly adds to the user's conninfo. */
typedef struct exactly_conn_settings {
    const char *application_name; /* always exactly's */
    const char *connect_timeout;  /* unless the conninfo has one */
    const char *options;          /* after the conninfo's own options */
} exactly_conn_settings;

/* Keyword and value arrays for PQconnectdbParams(keys, vals, 0), and the
 * storage behind them. */
typedef struct exactly_conn_params {
    const char **keys; /* NULL-terminated */
    const char **vals;
    void *parsed;      /* private */
    char *options;     /* private */
} exactly_conn_params;

/*
 * Merges conninfo with exactly's settings: every option the conninfo sets
 * is kept as it is (its keepalives and connect_timeout win over exactly's
 * defaults: keepalives on, idle 10 s, interval 5 s, count 3), options is
 * the conninfo's own followed by s->options, and application_name is
 * exactly's. A conninfo libpq reads as a bare database name becomes
 * dbname. Returns EXACTLY_OK, EXACTLY_ECONFIG when conninfo cannot be
 * parsed (say why with exactly_conninfo_problem()), or EXACTLY_ENOMEM.
 * Free with exactly_conninfo_params_free() (NULL-safe, also on failure).
 */
exactly_err exactly_conninfo_params(const char *conninfo,
                                    const exactly_conn_settings *s,
                                    exactly_conn_params *out);
void exactly_conninfo_params_free(exactly_conn_params *p);

/* The value of key in p, or NULL. */
const char *exactly_conninfo_param(const exactly_conn_params *p,
                                   const char *key);

/* The length of conninfo's "postgresql://" or "postgres://" prefix: 0 when
 * it is not a URI. */
size_t exactly_conninfo_uri_prefix(const char *conninfo);

/* Copies conninfo into out with any password value replaced by "****". */
void exactly_config_redact_conninfo(const char *conninfo, char *out,
                                    size_t out_size);

#endif
