/*
 * The built-in upsert's emit_topic: one zero-payload outbox event per row
 * the upsert actually changed, in the batch's transaction, for the fused
 * form (lookup of one table) and the unfused one (lookup by SQL).
 *
 * Round 1 names ids 1..N_IDS: every row is new, N_IDS events. Round 2
 * names them again with the source unchanged: the IS DISTINCT FROM rows
 * are none, no event. Round 3 after two source rows changed: two events,
 * keyed by their ids. A projection chained behind it would therefore see
 * one event per real change.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "upsert-emit-in"
#define N_IDS 20

static void produce_round(const char *bootstraps)
{
    int parts[N_IDS], ids[N_IDS];
    int i;

    for (i = 0; i < N_IDS; i++) {
        parts[i] = 0;
        ids[i] = i + 1;
    }
    tk_produce_int_keys(bootstraps, TOPIC, parts, ids, N_IDS);
}

static int64_t events(PGconn *db, const char *topic)
{
    return tk_sql_int64(db, "SELECT count(*) FROM exactly.outbox WHERE "
                            "topic = '%s' AND value IS NULL",
                        topic);
}

int main(void)
{
    static const struct {
        const char *name, *table, *sql, *target;
    } flavours[] = {
        {"fused", "src", NULL, "dst_fused"},
        {"unfused", NULL, "SELECT id, name FROM src WHERE id = ANY($1)",
         "dst_unfused"},
    };
    char dir[256], conninfo[1024], config[2][512], log[512], emit[64];
    tk_config cfg;
    tk_pipeline *pl = &cfg.pipelines[0];
    tk_mock *mock;
    PGconn *db;
    int round, f, status;

    tk_tmpdir("upsert-emit", dir, sizeof(dir));
    tk_pg_create_db("upsert_emit", conninfo, sizeof(conninfo));
    mock = tk_mock_start(1);
    tk_mock_create_topic(mock, TOPIC, 1);
    db = tk_pg_connect(conninfo);
    tk_sql(db, "CREATE TABLE src (id bigint PRIMARY KEY, name text);"
               "INSERT INTO src SELECT g, 'n' || g FROM "
               "generate_series(1, %d) g;"
               "CREATE TABLE dst_fused (id bigint PRIMARY KEY, name text);"
               "CREATE TABLE dst_unfused (id bigint PRIMARY KEY, name text)",
           N_IDS);
    for (f = 0; f < 2; f++) {
        snprintf(config[f], sizeof(config[f]), "%s/%s.yaml", dir,
                 flavours[f].name);
        snprintf(emit, sizeof(emit), "changes-%s", flavours[f].name);
        tk_config_init(&cfg, tk_mock_bootstraps(mock), conninfo);
        cfg.kafka[0] = (tk_prop){"session.timeout.ms", "6000"};
        pl->name = flavours[f].name;
        pl->topics[0] = TOPIC;
        pl->id_from = "key";
        pl->id_type = "bigint";
        pl->lookup_table = flavours[f].table;
        pl->lookup_id_column = flavours[f].table ? "id" : NULL;
        pl->lookup_sql = flavours[f].sql;
        pl->lookup_key_column = flavours[f].sql ? "id" : NULL;
        tk_upsert_handler(pl, flavours[f].target,
                          (const char *[]){"id", "name", NULL});
        pl->options[1] = (tk_prop){"emit_topic", emit};
        pl->max_messages = 100;
        pl->max_wait_ms = 50;
        tk_config_write(config[f], &cfg);
    }
    snprintf(log, sizeof(log), "%s/migrate.log", dir);
    tk_migrate(config[0], log);

    for (round = 1; round <= 3; round++) {
        if (round == 3)
            tk_sql(db, "UPDATE src SET name = 'changed' WHERE id IN (3, 4)");
        produce_round(tk_mock_bootstraps(mock));
        for (f = 0; f < 2; f++) {
            char topic[64];
            int64_t want = round == 1 ? N_IDS : round == 2 ? N_IDS : N_IDS + 2;

            snprintf(log, sizeof(log), "%s/%s-%d.log", dir, flavours[f].name,
                     round);
            status = tk_worker_run(config[f], 1000, 60000, log, NULL);
            LEDGER_CHECK_LOG(status == 0, log, "%s round %d: exit status %d",
                             flavours[f].name, round, status);
            snprintf(topic, sizeof(topic), "changes-%s", flavours[f].name);
            TK_CHECK_EQ_INT64(events(db, topic), want,
                              "events after this round");
        }
    }
    for (f = 0; f < 2; f++) {
        char *keys = tk_sql_text(
            db,
            "SELECT string_agg(convert_from(key, 'UTF8'), ',' ORDER BY id) "
            "FROM exactly.outbox WHERE topic = 'changes-%s' AND id > (SELECT "
            "min(id) + %d - 1 FROM exactly.outbox WHERE topic = "
            "'changes-%s')",
            flavours[f].name, N_IDS, flavours[f].name);
        TK_CHECK_EQ_STR(keys, "3,4", "keys of round 3's events");
        free(keys);
    }
    tk_note("upsert emitted %d events for new rows, none for unchanged ones, "
            "2 for 2 changed rows (fused and unfused)", N_IDS);
    PQfinish(db);
    tk_mock_stop(mock);
    ledger_cleanup_dir(dir);
    return 0;
}
