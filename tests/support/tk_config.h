/*
 * tk_config.h: the one writer of a worker's YAML configuration in tests.
 * Part of testkit (testkit.h includes every part).
 *
 * A test fills a tk_config (zero fields are left out, so the runtime's
 * defaults apply) and tk_config_write() writes it, always in this order,
 * one key (or one flow mapping) per line:
 *
 *   log:                      only when format or level is set
 *     format, level
 *   kafka:
 *     'bootstrap.servers', the kafka[] properties in order,
 *     'auto.offset.reset': 'earliest' unless kafka[] or kafka_yaml sets it,
 *     kafka_yaml
 *   postgres:
 *     conninfo, schema, statement_timeout_ms, lock_timeout_ms,
 *     connect_timeout_s, idle_in_transaction_timeout_ms,
 *     client_timeout_ms, postgres_yaml
 *   pipelines:                one entry per named pipeline, in order
 *     'NAME':
 *       topics, group, workers, on_error, max_crashes,
 *       unsafe_read_uncommitted,
 *       id: {from, type, header, max_length, non_canonical}
 *                                           (flow mapping, set keys only;
 *                                           none set: no id line)
 *       lookup:                             table, id_column, columns,
 *                                           sql, key_column, on_missing,
 *                                           missing_retry_ms (no lookup
 *                                           line when none is set)
 *       handler:                            (none when nothing is set)
 *         plugin or builtin
 *         options:  the options[] pairs, key (upsert_key), columns
 *                   (upsert_columns), then options_yaml
 *       batch: {max_messages, max_wait_ms}  (flow mapping, set keys only)
 *       dedup: {from, header, retention}    (flow mapping, set keys only)
 *       kafka:    the pipeline's kafka[] properties
 *       pipeline_yaml
 *   yaml                      raw top-level lines (relays:, ...)
 *
 * Every string value, property name and pipeline name is written as a
 * single-quoted YAML scalar with ' doubled and $ doubled (exactly expands
 * ${VAR} in every scalar and reads $$ as $), so what the test sets is what
 * the worker reads. Integers are written bare. The *_yaml fields are the
 * escape hatch for what the fields do not cover (an odd spelling, ${VAR},
 * a refusal test's broken key): their text is copied as is, already
 * indented for its place (2 spaces in a section, 4 in a pipeline, 8 in
 * handler options).
 */
#ifndef EXACTLY_TK_CONFIG_H
#define EXACTLY_TK_CONFIG_H

#include <stdio.h>

#include "tk_checks.h"

#define TK_CONFIG_MAX_PROPS 16
#define TK_CONFIG_MAX_PIPELINES 8
#define TK_CONFIG_MAX_TOPICS 4
#define TK_CONFIG_MAX_COLUMNS 8

/* A name/value pair: a librdkafka property or a handler option. The first
 * pair whose name is NULL ends a list. */
typedef struct tk_prop {
    const char *name;
    const char *value;
} tk_prop;

typedef struct tk_pipeline {
    const char *name;          /* NULL ends the list of pipelines */
    const char *topics[TK_CONFIG_MAX_TOPICS]; /* NULL-terminated */
    const char *group;         /* NULL: the runtime's exactly-NAME */
    int workers;               /* 0: not written */
    const char *on_error;      /* dead_letter, stop */
    int max_crashes;
    int unsafe_read_uncommitted; /* 1: true */

    const char *id_from;       /* key, value, header */
    const char *id_type;       /* bigint, text, uuid */
    const char *id_header;
    int id_max_length;
    const char *id_non_canonical; /* dead_letter, accept */

    const char *lookup_table;
    const char *lookup_id_column;
    const char *lookup_columns[TK_CONFIG_MAX_COLUMNS]; /* NULL-terminated */
    const char *lookup_sql;
    const char *lookup_key_column;
    const char *on_missing;    /* skip, dead_letter, handler, retry */
    int missing_retry_ms;

    /* The handler: plugin is a file name in $EXACTLY_PLUGIN_DIR
     * ("ledger.so") or a path with a '/' (taken as is); or builtin. */
    const char *plugin;
    const char *builtin;
    tk_prop options[TK_CONFIG_MAX_PROPS];
    /* The built-in upsert's list and mapping options: key: [...] and
     * columns: {target: source, ...}; written when set. */
    const char *upsert_key[TK_CONFIG_MAX_COLUMNS]; /* NULL-terminated */
    tk_prop upsert_columns[TK_CONFIG_MAX_PROPS];
    const char *options_yaml;  /* lines indented 8 */

    int max_messages;          /* 0: not written */
    int max_wait_ms;           /* 0: not written, unless max_wait_set */
    int max_wait_set;          /* 1: max_wait_ms is written, even 0 */

    const char *dedup_from;    /* key, header: writes the dedup section */
    const char *dedup_header;
    const char *dedup_retention;

    tk_prop kafka[TK_CONFIG_MAX_PROPS];
    const char *pipeline_yaml; /* lines indented 4 */
} tk_pipeline;

typedef struct tk_config {
    const char *log_format;
    const char *log_level;

    const char *bootstraps;    /* bootstrap.servers; NULL: not written */
    tk_prop kafka[TK_CONFIG_MAX_PROPS];
    const char *kafka_yaml;    /* lines indented 2 */

    const char *conninfo;      /* NULL: not written */
    const char *schema;
    /* The postgres settings; 0 is not written (a test that wants 0, which
     * disables a timeout, writes it in postgres_yaml). */
    int statement_timeout_ms;
    int lock_timeout_ms;
    int connect_timeout_s;
    int idle_in_transaction_timeout_ms;
    int client_timeout_ms;
    const char *postgres_yaml; /* lines indented 2 */

    tk_pipeline pipelines[TK_CONFIG_MAX_PIPELINES];
    const char *yaml;          /* top-level lines, after pipelines */
} tk_config;

/* Write c as YAML to f / to path (created or truncated). Fails the test on
 * an unwritable file, a pipeline without topics or one with both a plugin
 * and a builtin. A section the runtime requires (lookup, handler) may be
 * left to pipeline_yaml, or out, for a test of the refusal. */
void tk_config_fwrite(FILE *f, const tk_config *c);
void tk_config_write(const char *path, const tk_config *c);

/* Zero c and set bootstrap.servers and conninfo. */
void tk_config_init(tk_config *c, const char *bootstraps,
                    const char *conninfo);

/* p's handler as the built-in upsert into table, keyed by id, each of the
 * NULL-terminated columns written from the looked-up column of its name;
 * options[0] is the table, so further options go from options[1]. */
void tk_upsert_handler(tk_pipeline *p, const char *table,
                       const char *const *columns);

/* p's lookup as sql (no table; NULL: the lookup stays as it was), its
 * rows keyed by key_column, and the upsert's delete_missing option (true
 * or false, as given) as p's options_yaml. */
void tk_lookup_sql(tk_pipeline *p, const char *sql, const char *key_column,
                   int delete_missing);

/* Write s to f as a single-quoted YAML scalar (' and $ doubled). */
void tk_yaml_quoted(FILE *f, const char *s);

#endif /* EXACTLY_TK_CONFIG_H */
