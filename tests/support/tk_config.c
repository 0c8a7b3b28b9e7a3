/*
 * tk_config.c: the YAML configuration writer of tests.
 * The contract and the line order are in tk_config.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "testkit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tk_yaml_quoted(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'' || *s == '$')
            fputc(*s, f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

/* `indent key: 'value'` and a newline, when value is set. */
static void put_str(FILE *f, const char *indent, const char *key,
                    const char *value)
{
    if (value == NULL)
        return;
    fprintf(f, "%s%s: ", indent, key);
    tk_yaml_quoted(f, value);
    fputc('\n', f);
}

/* `indent key: n` and a newline, when n is set (> 0). */
static void put_int(FILE *f, const char *indent, const char *key, int n)
{
    if (n > 0)
        fprintf(f, "%s%s: %d\n", indent, key, n);
}

/* The pairs of props as `indent 'name': 'value'` lines. */
static void put_props(FILE *f, const char *indent, const tk_prop *props)
{
    size_t i;

    for (i = 0; i < TK_CONFIG_MAX_PROPS && props[i].name; i++) {
        fputs(indent, f);
        tk_yaml_quoted(f, props[i].name);
        fputs(": ", f);
        tk_yaml_quoted(f, props[i].value ? props[i].value : "");
        fputc('\n', f);
    }
}

/* A flow list `key: ['a', 'b']` of the NULL-terminated items, if any. */
static void put_list(FILE *f, const char *indent, const char *key,
                     const char *const *items, size_t max)
{
    size_t i;

    if (items[0] == NULL)
        return;
    fprintf(f, "%s%s: [", indent, key);
    for (i = 0; i < max && items[i]; i++) {
        if (i > 0)
            fputs(", ", f);
        tk_yaml_quoted(f, items[i]);
    }
    fputs("]\n", f);
}

/* One item of a flow mapping: `{k: 'v'` or `, k: 'v'`. */
static void flow_str(FILE *f, int *n, const char *key, const char *value)
{
    if (value == NULL)
        return;
    fprintf(f, "%s%s: ", (*n)++ ? ", " : "{", key);
    tk_yaml_quoted(f, value);
}

static void flow_int(FILE *f, int *n, const char *key, int value, int set)
{
    if (set)
        fprintf(f, "%s%s: %d", (*n)++ ? ", " : "{", key, value);
}

static int props_set(const tk_prop *props, const char *name)
{
    size_t i;

    for (i = 0; i < TK_CONFIG_MAX_PROPS && props[i].name; i++)
        if (strcmp(props[i].name, name) == 0)
            return 1;
    return 0;
}

static void put_pipeline(FILE *f, const tk_pipeline *p)
{
    int n;

    TK_CHECK(p->topics[0] != NULL, "tk_config: pipeline %s has no topic",
             p->name);
    TK_CHECK(p->plugin == NULL || p->builtin == NULL,
             "tk_config: pipeline %s has both a plugin and a builtin",
             p->name);
    fputs("  ", f);
    tk_yaml_quoted(f, p->name);
    fputs(":\n", f);
    put_list(f, "    ", "topics", p->topics, TK_CONFIG_MAX_TOPICS);
    put_str(f, "    ", "group", p->group);
    put_int(f, "    ", "workers", p->workers);
    put_str(f, "    ", "on_error", p->on_error);
    put_int(f, "    ", "max_crashes", p->max_crashes);
    if (p->unsafe_read_uncommitted)
        fputs("    unsafe_read_uncommitted: true\n", f);

    n = 0;
    if (p->id_from || p->id_type || p->id_header || p->id_max_length > 0 ||
        p->id_non_canonical) {
        fputs("    id: ", f);
        flow_str(f, &n, "from", p->id_from);
        flow_str(f, &n, "type", p->id_type);
        flow_str(f, &n, "header", p->id_header);
        flow_int(f, &n, "max_length", p->id_max_length,
                 p->id_max_length > 0);
        flow_str(f, &n, "non_canonical", p->id_non_canonical);
        fputs("}\n", f);
    }

    if (p->lookup_table || p->lookup_id_column || p->lookup_columns[0] ||
        p->lookup_sql || p->lookup_key_column || p->on_missing ||
        p->missing_retry_ms > 0)
        fputs("    lookup:\n", f);
    put_str(f, "      ", "table", p->lookup_table);
    put_str(f, "      ", "id_column", p->lookup_id_column);
    put_list(f, "      ", "columns", p->lookup_columns,
             TK_CONFIG_MAX_COLUMNS);
    put_str(f, "      ", "sql", p->lookup_sql);
    put_str(f, "      ", "key_column", p->lookup_key_column);
    put_str(f, "      ", "on_missing", p->on_missing);
    put_int(f, "      ", "missing_retry_ms", p->missing_retry_ms);

    if (p->plugin || p->builtin || p->options[0].name || p->upsert_key[0] ||
        p->upsert_columns[0].name || p->options_yaml)
        fputs("    handler:\n", f);
    if (p->plugin != NULL) {
        char path[4096];

        if (strchr(p->plugin, '/') != NULL)
            snprintf(path, sizeof path, "%s", p->plugin);
        else
            snprintf(path, sizeof path, "%s/%s",
                     tk_env_required("EXACTLY_PLUGIN_DIR"), p->plugin);
        put_str(f, "      ", "plugin", path);
    }
    put_str(f, "      ", "builtin", p->builtin);
    if (p->options[0].name || p->upsert_key[0] || p->upsert_columns[0].name ||
        p->options_yaml) {
        fputs("      options:\n", f);
        put_props(f, "        ", p->options);
        put_list(f, "        ", "key", p->upsert_key, TK_CONFIG_MAX_COLUMNS);
        if (p->upsert_columns[0].name) {
            size_t i;

            fputs("        columns: {", f);
            for (i = 0; i < TK_CONFIG_MAX_PROPS && p->upsert_columns[i].name;
                 i++) {
                if (i > 0)
                    fputs(", ", f);
                tk_yaml_quoted(f, p->upsert_columns[i].name);
                fputs(": ", f);
                tk_yaml_quoted(f, p->upsert_columns[i].value);
            }
            fputs("}\n", f);
        }
        if (p->options_yaml)
            fputs(p->options_yaml, f);
    }

    n = 0;
    if (p->max_messages > 0 || p->max_wait_ms > 0 || p->max_wait_set) {
        fputs("    batch: ", f);
        flow_int(f, &n, "max_messages", p->max_messages,
                 p->max_messages > 0);
        flow_int(f, &n, "max_wait_ms", p->max_wait_ms,
                 p->max_wait_ms > 0 || p->max_wait_set);
        fputs("}\n", f);
    }
    n = 0;
    if (p->dedup_from != NULL) {
        fputs("    dedup: ", f);
        flow_str(f, &n, "from", p->dedup_from);
        flow_str(f, &n, "header", p->dedup_header);
        flow_str(f, &n, "retention", p->dedup_retention);
        fputs("}\n", f);
    }
    if (p->kafka[0].name) {
        fputs("    kafka:\n", f);
        put_props(f, "      ", p->kafka);
    }
    if (p->pipeline_yaml)
        fputs(p->pipeline_yaml, f);
}

void tk_config_fwrite(FILE *f, const tk_config *c)
{
    size_t i;

    if (c->log_format || c->log_level) {
        fputs("log:\n", f);
        put_str(f, "  ", "format", c->log_format);
        put_str(f, "  ", "level", c->log_level);
    }

    fputs("kafka:\n", f);
    if (c->bootstraps) {
        fputs("  ", f);
        tk_yaml_quoted(f, "bootstrap.servers");
        fputs(": ", f);
        tk_yaml_quoted(f, c->bootstraps);
        fputc('\n', f);
    }
    put_props(f, "  ", c->kafka);
    if (!props_set(c->kafka, "auto.offset.reset") &&
        !(c->kafka_yaml && strstr(c->kafka_yaml, "auto.offset.reset")))
        fputs("  'auto.offset.reset': 'earliest'\n", f);
    if (c->kafka_yaml)
        fputs(c->kafka_yaml, f);

    fputs("postgres:\n", f);
    put_str(f, "  ", "conninfo", c->conninfo);
    put_str(f, "  ", "schema", c->schema);
    put_int(f, "  ", "statement_timeout_ms", c->statement_timeout_ms);
    put_int(f, "  ", "lock_timeout_ms", c->lock_timeout_ms);
    put_int(f, "  ", "connect_timeout_s", c->connect_timeout_s);
    put_int(f, "  ", "idle_in_transaction_timeout_ms",
            c->idle_in_transaction_timeout_ms);
    put_int(f, "  ", "client_timeout_ms", c->client_timeout_ms);
    if (c->postgres_yaml)
        fputs(c->postgres_yaml, f);

    if (c->pipelines[0].name)
        fputs("pipelines:\n", f);
    for (i = 0; i < TK_CONFIG_MAX_PIPELINES && c->pipelines[i].name; i++)
        put_pipeline(f, &c->pipelines[i]);
    if (c->yaml)
        fputs(c->yaml, f);
}

void tk_config_init(tk_config *c, const char *bootstraps,
                    const char *conninfo)
{
    memset(c, 0, sizeof *c);
    c->bootstraps = bootstraps;
    c->conninfo = conninfo;
}

void tk_lookup_sql(tk_pipeline *p, const char *sql, const char *key_column,
                   int delete_missing)
{
    if (sql) {
        p->lookup_table = NULL;
        p->lookup_sql = sql;
        p->lookup_key_column = key_column;
    }
    p->options_yaml = delete_missing ? "        delete_missing: true\n"
                                     : "        delete_missing: false\n";
}

void tk_upsert_handler(tk_pipeline *p, const char *table,
                       const char *const *columns)
{
    size_t i;

    p->builtin = "upsert";
    p->options[0] = (tk_prop){"table", table};
    p->upsert_key[0] = "id";
    for (i = 0; columns[i]; i++) {
        TK_CHECK(i < TK_CONFIG_MAX_PROPS, "tk_upsert_handler: too many "
                                          "columns");
        p->upsert_columns[i] = (tk_prop){columns[i], columns[i]};
    }
}

void tk_config_write(const char *path, const tk_config *c)
{
    FILE *f = fopen(path, "w");

    TK_CHECK(f != NULL, "cannot write %s: %s", path, strerror(errno));
    tk_config_fwrite(f, c);
    TK_CHECK(fclose(f) == 0, "cannot write %s: %s", path, strerror(errno));
}
