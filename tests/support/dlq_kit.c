/* dlq_kit: see dlq_kit.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "dlq_kit.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void dlq_commit_lost_check(pid_t dlq, pid_t reset, const char *log_dlq,
                           const char *log_reset, const char *conninfo,
                           int letters, int stored, const char *lost,
                           const char *where, const char *why)
{
    char *out_dlq, *out_reset;
    int st_dlq, st_reset;
    PGconn *db;

    TK_CHECK(tk_kill(dlq, SIGCONT) == 0 && tk_kill(reset, SIGCONT) == 0,
             "a frozen command is gone");
    st_dlq = tk_exactly_wait(dlq, 60000, log_dlq, "dlq replay");
    st_reset = tk_exactly_wait(reset, 60000, log_reset, "offsets reset");
    out_dlq = tk_read_file(log_dlq);
    out_reset = tk_read_file(log_reset);
    tk_note("dlq replay, COMMIT lost %s: exit %d:\n%s", lost, st_dlq,
            out_dlq ? out_dlq : "");
    tk_note("offsets reset, COMMIT lost %s: exit %d:\n%s", lost, st_reset,
            out_reset ? out_reset : "");
    TK_CHECK(out_dlq && out_reset, "no output of the commands");

    /* Nothing of either transaction landed. */
    db = tk_pg_connect(conninfo);
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                       "exactly.dead_letters"),
                      letters, "dead letters");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM view"), 0,
                      "entities written");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT next_offset FROM "
                                       "exactly.offsets"),
                      stored, "stored offset");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                       "exactly.offset_resets"),
                      0, "reset audit rows");
    PQfinish(db);

    TK_CHECK(st_dlq != 0 && !strstr(out_dlq, "committed: the replay"),
             "the replay said its COMMIT committed, but %s holds all %d "
             "dead letters and none of its writes %s, exit %d:\n%s",
             where, letters, why, st_dlq, out_dlq);
    TK_CHECK(st_reset != 0,
             "the reset said its COMMIT committed, but %s holds the stored "
             "offset %d unmoved and no audit row %s, exit %d:\n%s",
             where, stored, why, st_reset, out_reset);
    TK_CHECK(st_dlq == 1 && strstr(out_dlq, "rolled back") &&
                 strstr(out_dlq, "dead letters are unchanged"),
             "the replay did not say it was rolled back (exit 1), exit "
             "%d:\n%s", st_dlq, out_dlq);
    TK_CHECK(st_reset == 1 && strstr(out_reset, "rolled back") &&
                 strstr(out_reset, "nothing changed"),
             "the reset did not say it was rolled back (exit 1), exit "
             "%d:\n%s", st_reset, out_reset);
    free(out_dlq);
    free(out_reset);
}
