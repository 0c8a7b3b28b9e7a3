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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "dlq-fused"
#define PIPELINE "fused"
#define CMD_TIMEOUT_MS 60000
#define WORKER_TIMEOUT_MS 120000

typedef struct ctx {
    char dir[256];
    char cfg[512];
    char conninfo[1024];
    const char *bootstraps;
    PGconn *db;
    int n_cmd;
} ctx;

/* The fused pipeline; on_missing and delete_missing vary. */
static void write_config(ctx *c, const char *on_missing, int delete_missing)
{
    tk_config cfg;
    tk_pipeline *pl = &cfg.pipelines[0];

    tk_config_init(&cfg, c->bootstraps, c->conninfo);
    cfg.kafka[0] = (tk_prop){"session.timeout.ms", "6000"};
    pl->name = PIPELINE;
    pl->topics[0] = TOPIC;
    pl->id_from = "key";
    pl->id_type = "bigint";
    pl->lookup_table = "src";
    pl->on_missing = on_missing;
    tk_upsert_handler(pl, "view",
                      (const char *[]){"id", "name", NULL});
    pl->options_yaml = delete_missing ? "        delete_missing: true\n"
                                      : "        delete_missing: false\n";
    pl->max_messages = 10;
    pl->max_wait_ms = 50;
    tk_config_write(c->cfg, &cfg);
}

/* Runs `exactly ARGS... -c cfg` (ARGS NULL-terminated); exit status,
 * output in *out. */
static int exactly(ctx *c, char **out, ...)
{
    const char *args[16];
    char log[512];
    va_list ap;
    const char *a;
    int n = 0, status;

    va_start(ap, out);
    while ((a = va_arg(ap, const char *)) != NULL && n < 12)
        args[n++] = a;
    va_end(ap);
    args[n++] = "-c";
    args[n++] = c->cfg;
    args[n] = NULL;
    snprintf(log, sizeof log, "%s/cmd-%02d.log", c->dir, ++c->n_cmd);
    status = tk_exactlyv(log, CMD_TIMEOUT_MS, args);
    *out = tk_read_file(log);
    if (!*out)
        *out = strdup("");
    return status;
}

static int64_t dead_letters(ctx *c, const char *entity)
{
    return tk_sql_int64(c->db, "SELECT count(*) FROM exactly.dead_letters"
                               " WHERE pipeline = '" PIPELINE "'%s%s%s",
                        entity ? " AND entity_id = '" : "",
                        entity ? entity : "", entity ? "'" : "");
}

static char *view_name(ctx *c, int id)
{
    return tk_sql_text(c->db, "SELECT coalesce((SELECT name FROM view WHERE"
                              " id = %d), '(no row)')", id);
}

int main(void)
{
    ctx c;
    tk_mock *m;
    tk_msg msgs[6];
    char keys[6][8];
    char *out, *name;
    int status, i;

    memset(&c, 0, sizeof c);
    memset(msgs, 0, sizeof msgs);
    m = tk_mock_start(1);
    c.bootstraps = tk_mock_bootstraps(m);
    tk_mock_create_topic(m, TOPIC, 1);
    for (i = 0; i < 6; i++) {
        snprintf(keys[i], sizeof keys[i], "%d", i + 1);
        msgs[i].partition = 0;
        msgs[i].key = keys[i];
        msgs[i].key_len = strlen(keys[i]);
    }
    tk_produce(c.bootstraps, TOPIC, msgs, 6);

    tk_tmpdir("exactly-dlq-fused", c.dir, sizeof c.dir);
    tk_pg_create_db("dlq_fused", c.conninfo, sizeof c.conninfo);
    c.db = tk_pg_connect(c.conninfo);
    tk_sql(c.db, "CREATE TABLE src (id bigint PRIMARY KEY, name text);"
                 "INSERT INTO src SELECT g, 'name ' || g FROM"
                 " generate_series(1, 6) g;"
                 "UPDATE src SET name = 'bad ' || id WHERE id IN (3, 4);"
                 "CREATE TABLE view (id bigint PRIMARY KEY, name text"
                 " CHECK (name NOT LIKE 'bad%%'))");
    snprintf(c.cfg, sizeof c.cfg, "%s/fused.yaml", c.dir);
    write_config(&c, "skip", 0);
    {
        char log[512];
        pid_t pid;
        char *argv[] = {(char *)ledger_exactly_bin(), "worker", "-c", c.cfg,
                        "--exit-idle", "3000", NULL};
        snprintf(log, sizeof log, "%s/migrate.log", c.dir);
        ledger_migrate(c.cfg, log);
        status = exactly(&c, &out, "check", NULL);
        TK_CHECK(status == 0 && strstr(out, "lookup fused into the write"),
                 "check of the fused pipeline exited %d:\n%s", status, out);
        free(out);
        snprintf(log, sizeof log, "%s/worker.log", c.dir);
        pid = tk_spawn(argv, log);
        status = tk_wait(pid, WORKER_TIMEOUT_MS);
        if (status == -1)
            tk_terminate(pid, 5000);
        LEDGER_CHECK_LOG(status == 0, log, "worker exited %d", status);
    }
    TK_CHECK_EQ_INT64(dead_letters(&c, NULL), 2, "dead letters after the run");
    TK_CHECK_EQ_INT64(dead_letters(&c, "3") + dead_letters(&c, "4"), 2,
                      "dead letters of IDs 3 and 4");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM view"), 4,
                      "view rows after the run (1, 2, 5, 6)");

    /* The entity 3 is gone from the source; 4 is fixed. */
    tk_sql(c.db, "DELETE FROM src WHERE id = 3;"
                 "UPDATE src SET name = 'good 4' WHERE id = 4");

    status = exactly(&c, &out, "dlq", "replay", "--all", NULL);
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
    status = exactly(&c, &out, "dlq", "replay", "--all", NULL);
    tk_note("dlq replay --all (on_missing: handler, delete_missing):\n%s",
            out);
    TK_CHECK(status == 0 && strstr(out, "replayed 1 dead letter(s)"),
             "replay with on_missing: handler exited %d:\n%s", status, out);
    free(out);
    name = view_name(&c, 3);
    TK_CHECK_EQ_STR(name, "(no row)", "view row of 3 after the deletion");
    free(name);
    TK_CHECK_EQ_INT64(dead_letters(&c, NULL), 0, "dead letters at the end");

    PQfinish(c.db);
    tk_mock_stop(m);
    ledger_cleanup_dir(c.dir);
    return 0;
}
