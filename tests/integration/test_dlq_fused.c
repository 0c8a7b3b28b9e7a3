/*
 * `exactly dlq replay` with the built-in upsert in its fused form
 * (lookup: {table: ...}: one INSERT ... SELECT reads the source and writes
 * the target, so the runtime never sees the looked-up rows).
 *
 * A dead letter may be deleted only when its record was applied. The
 * fused statement writes nothing for an ID whose source row is gone, so
 * replay must find that out itself:
 *
 *   - a worker dead-letters IDs 3 and 4 (their source rows break a CHECK
 *     constraint of the target), and applies 1, 2, 5 and 6;
 *   - then the source row of 3 is deleted and the row of 4 is fixed;
 *   - `dlq replay --all` with on_missing: skip applies 4 (target row
 *     written, dead letter deleted) and leaves the dead letter of 3 in
 *     place, saying that its lookup found no row;
 *   - with on_missing: handler and delete_missing: true, the same dead
 *     letter goes through the handler as a deletion (the target has no
 *     row 3) and is deleted.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_kit.h"
#include "dlq_kit.h"
#include "testkit.h"

#define TOPIC "dlq-fused"
#define PIPELINE "fused"
#define WORKER_TIMEOUT_MS 120000

/* The fused pipeline; on_missing and delete_missing vary. */
static void write_config(cli_kit *c, const char *on_missing, int delete_missing)
{
    tk_config cfg;
    tk_pipeline *pl = dlq_view_pipeline(c, &cfg, PIPELINE, TOPIC, "bigint",
                                        (const char *[]){"id", "name", NULL});

    cfg.kafka[0] = (tk_prop){"session.timeout.ms", "6000"};
    pl->on_missing = on_missing;
    pl->options_yaml = delete_missing ? "        delete_missing: true\n"
                                      : "        delete_missing: false\n";
    pl->max_messages = 10;
    pl->max_wait_ms = 50;
    tk_config_write(c->cfg, &cfg);
}

static int64_t dead_letters(cli_kit *c, const char *entity)
{
    return tk_sql_int64(c->db, "SELECT count(*) FROM exactly.dead_letters"
                               " WHERE pipeline = '" PIPELINE "'%s%s%s",
                        entity ? " AND entity_id = '" : "",
                        entity ? entity : "", entity ? "'" : "");
}

static char *view_name(cli_kit *c, int id)
{
    return tk_sql_text(c->db, "SELECT coalesce((SELECT name FROM view WHERE"
                              " id = %d), '(no row)')", id);
}

int main(void)
{
    cli_kit c;
    char *out, *name;
    int status;

    cli_kit_start(&c, "dlq_fused", TOPIC, 1, "fused.yaml", 0);
    cli_kit_produce_ids(&c, TOPIC, 6, 6, 1, NULL);
    tk_sql(c.db, "CREATE TABLE src (id bigint PRIMARY KEY, name text);"
                 "INSERT INTO src SELECT g, 'name ' || g FROM"
                 " generate_series(1, 6) g;"
                 "UPDATE src SET name = 'bad ' || id WHERE id IN (3, 4);"
                 "CREATE TABLE view (id bigint PRIMARY KEY, name text"
                 " CHECK (name NOT LIKE 'bad%%'))");
    write_config(&c, "skip", 0);
    cli_kit_migrate(&c);
    status = cli_exactly(&c, &out, "check", NULL);
    TK_CHECK(status == 0 && strstr(out, "lookup fused into the write"),
             "check of the fused pipeline exited %d:\n%s", status, out);
    free(out);
    cli_kit_worker_to_idle(&c, WORKER_TIMEOUT_MS);
    TK_CHECK_EQ_INT64(dead_letters(&c, NULL), 2, "dead letters after the run");
    TK_CHECK_EQ_INT64(dead_letters(&c, "3") + dead_letters(&c, "4"), 2,
                      "dead letters of IDs 3 and 4");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM view"), 4,
                      "view rows after the run (1, 2, 5, 6)");

    /* The entity 3 is gone from the source; 4 is fixed. */
    tk_sql(c.db, "DELETE FROM src WHERE id = 3;"
                 "UPDATE src SET name = 'good 4' WHERE id = 4");

    status = cli_exactly(&c, &out, "dlq", "replay", "--all", NULL);
    tk_note("dlq replay --all (on_missing: skip):\n%s", out);
    TK_CHECK(status == 0, "replay exited %d:\n%s", status, out);
    name = view_name(&c, 4);
    TK_CHECK_EQ_STR(name, "good 4", "view row of 4 after the replay");
    free(name);
    name = view_name(&c, 3);
    TK_CHECK_EQ_STR(name, "(no row)", "view row of 3 after the replay");
    free(name);
    /* The point: 3 was not applied, so its dead letter stays. */
    TK_CHECK_EQ_INT64(dead_letters(&c, "3"), 1,
                      "dead letters of ID 3 (no source row: nothing was "
                      "written, so it must stay)");
    TK_CHECK_EQ_INT64(dead_letters(&c, "4"), 0,
                      "dead letters of ID 4 (applied)");
    TK_CHECK(strstr(out, "replayed 1 dead letter(s) of pipeline " PIPELINE) &&
                 strstr(out, "1 without a looked-up row") &&
                 strstr(out, "lookup found no row"),
             "replay does not say what it applied and what it left:\n%s", out);
    free(out);

    /* With on_missing: handler the record without a row is the handler's
     * to apply: delete_missing removes its target row, and it counts as
     * applied. */
    tk_sql(c.db, "INSERT INTO view VALUES (3, 'stale 3')");
    write_config(&c, "handler", 1);
    status = cli_exactly(&c, &out, "dlq", "replay", "--all", NULL);
    tk_note("dlq replay --all (on_missing: handler, delete_missing):\n%s",
            out);
    TK_CHECK(status == 0 && strstr(out, "replayed 1 dead letter(s)"),
             "replay with on_missing: handler exited %d:\n%s", status, out);
    free(out);
    name = view_name(&c, 3);
    TK_CHECK_EQ_STR(name, "(no row)", "view row of 3 after the deletion");
    free(name);
    TK_CHECK_EQ_INT64(dead_letters(&c, NULL), 0, "dead letters at the end");

    cli_kit_stop(&c);
    return 0;
}
