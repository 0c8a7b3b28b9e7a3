/* dlq_kit: see dlq_kit.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "dlq_kit.h"

#include <stdio.h>
#include <stdlib.h>

tk_pipeline *dlq_view_pipeline(cli_kit *k, tk_config *cfg, const char *name,
                               const char *topic, const char *id_type,
                               const char *const *columns)
{
    tk_pipeline *pl = &cfg->pipelines[0];

    tk_config_init(cfg, k->bootstraps, k->conninfo);
    pl->name = name;
    pl->topics[0] = topic;
    pl->id_from = "key";
    pl->id_type = id_type;
    pl->lookup_table = "src";
    tk_upsert_handler(pl, "view", columns);
    return pl;
}

void dlq_named_tables_at(const char *file, int line, cli_kit *k, int n)
{
    tk_sql_at(file, line, k->db,
              "CREATE TABLE src (id bigint PRIMARY KEY, name text);"
              "INSERT INTO src SELECT g, 'name ' || g FROM"
              " generate_series(1, %d) g;"
              "CREATE TABLE view (id bigint PRIMARY KEY, name text)",
              n);
}

void dlq_bad_pair_setup_at(const char *file, int line, cli_kit *k,
                           const char *pipeline, const char *topic,
                           const char *view_sql)
{
    tk_config cfg;
    tk_pipeline *pl;

    cli_kit_produce_ids(k, topic, 6, 6, 1, NULL);
    tk_sql_at(file, line, k->db,
              "CREATE TABLE src (id bigint PRIMARY KEY, grp int);"
              "INSERT INTO src SELECT g, CASE WHEN g IN (3, 4) THEN 9"
              " ELSE 1 END FROM generate_series(1, 6) g");
    tk_sql_at(file, line, k->db, "%s", view_sql);
    pl = dlq_view_pipeline(k, &cfg, pipeline, topic, "bigint",
                           (const char *[]){"id", "grp", NULL});
    cfg.kafka[0] = (tk_prop){"session.timeout.ms", "6000"};
    pl->max_messages = 10;
    pl->max_wait_ms = 50;
    tk_config_write(k->cfg, &cfg);
    cli_kit_migrate(k);
}

/* Plants a dead letter of pipeline on partition 0 of topic per row of
 * rows, an SQL query giving the offset, the whole key (bytea) and the
 * entity ID (text); the key kept as the worker keeps it. Returns the
 * highest id planted, as text (malloc'd; NULL when rows gave none). */
static char *plant(const char *file, int line, cli_kit *k,
                   const char *pipeline, const char *topic, const char *rows)
{
    return tk_sql_text_at(
        file, line, k->db,
        "WITH l AS (INSERT INTO exactly.dead_letters (pipeline, topic,"
        " partition, \"offset\", message_key, message_key_length,"
        " message_key_sha256, entity_id, reason)"
        " SELECT '%s', '%s', 0, r.off, substring(r.k FROM 1 FOR 1024),"
        " octet_length(r.k), sha256(r.k), r.entity_id, 'planted'"
        " FROM (%s) r (off, k, entity_id) RETURNING id)"
        " SELECT max(id)::text FROM l",
        pipeline, topic, rows);
}

void dlq_plant_series_at(const char *file, int line, cli_kit *k,
                         const char *pipeline, const char *topic, int n)
{
    char rows[256];

    snprintf(rows, sizeof rows,
             "SELECT g - 1, convert_to(g::text, 'UTF8'), g::text"
             " FROM generate_series(1, %d) g",
             n);
    free(plant(file, line, k, pipeline, topic, rows));
}

char *dlq_plant_key_at(const char *file, int line, cli_kit *k,
                       const char *pipeline, const char *topic, int offset,
                       const char *key_sql)
{
    char rows[1024];
    int len = snprintf(rows, sizeof rows,
                       "SELECT %d, convert_to(%s, 'UTF8'), NULL::text",
                       offset, key_sql);

    if (len < 0 || (size_t)len >= sizeof rows)
        tk_fail_at(file, line, "dlq_plant_key: key expression too long: %s",
                   key_sql);
    return plant(file, line, k, pipeline, topic, rows);
}
