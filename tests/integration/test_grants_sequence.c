/*
 * The grants `exactly migrate --print-grants ROLE` prints for an outbox
 * table of the user's (docs/PRIVILEGES.md): the id's sequence is the one
 * the catalog names, not one guessed from the table's name.
 *
 *   1. the application's outbox app.events draws its ids from a sequence
 *      named app.event_numbers (a column default, owned by nothing), and
 *      app.events2 has an identity column; a pipeline with the built-in
 *      upsert emits into each (emit_outbox), and a relay publishes
 *      app.events; everything else belongs to the superuser;
 *   2. --print-grants for a fresh role names USAGE on "app"."event_numbers"
 *      (quoted), no sequence named after a table, and applies as it is;
 *   3. `exactly check` as that role passes; `exactly run --exit-idle` as
 *      that role applies every message, writes one outbox event per row it
 *      inserted into each outbox, with no dead letter, and the relay as
 *      that role publishes app.events' rows.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "grants-seq"
#define EMITTED "grants-seq-emitted"
#define N_MSGS 40
#define N_ENTITIES 10
#define CMD_TIMEOUT_MS 60000

typedef struct ctx {
    char dir[256];
    char conninfo[1024]; /* superuser */
    const char *bootstraps;
    PGconn *db;
    char role[64];
    int n;
} ctx;

/* Two pipelines on TOPIC, each upserting accounts into a table of its own
 * and emitting into an outbox of the user's; a relay of app.events. */
static void write_config(ctx *c, const char *path, const char *role)
{
    char conninfo[1200];
    tk_config cfg;
    tk_pipeline *pl = cfg.pipelines;
    int i;

    snprintf(conninfo, sizeof conninfo, "%s user=%s", c->conninfo, role);
    tk_config_init(&cfg, c->bootstraps, conninfo);
    cfg.kafka[0] = (tk_prop){"session.timeout.ms", "6000"};
    for (i = 0; i < 2; i++) {
        pl[i].name = i ? "emit2" : "emit1";
        pl[i].topics[0] = TOPIC;
        pl[i].group = i ? "grants-seq-2" : "grants-seq-1";
        pl[i].id_from = "key";
        pl[i].id_type = "bigint";
        pl[i].lookup_table = "accounts";
        pl[i].on_missing = "skip";
        tk_upsert_handler(&pl[i], i ? "account_emit2" : "account_emit1",
                          (const char *[]){"id", "name", "balance", NULL});
        pl[i].options[1] = (tk_prop){"emit_topic", EMITTED};
        pl[i].options[2] =
            (tk_prop){"emit_outbox", i ? "app.events2" : "app.events"};
        pl[i].max_messages = 20;
        pl[i].max_wait_ms = 50;
    }
    cfg.yaml = "relays:\n"
               "  events:\n"
               "    topic: '" EMITTED "'\n"
               "    schema: app\n"
               "    table: events\n"
               "    poll_interval_ms: 20\n";
    tk_config_write(path, &cfg);
}

/* Runs `exactly ARGS...` (NULL-terminated); status and output. */
static int exactly(ctx *c, char **out, ...)
{
    char *argv[16];
    char log[512];
    va_list ap;
    const char *a;
    int n = 0, status;
    pid_t pid;

    argv[n++] = (char *)ledger_exactly_bin();
    va_start(ap, out);
    while ((a = va_arg(ap, const char *)) != NULL && n < 15)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    snprintf(log, sizeof log, "%s/%s-%02d.log", c->dir, argv[1], ++c->n);
    pid = tk_spawn(argv, log);
    status = tk_wait(pid, CMD_TIMEOUT_MS);
    if (status == -1) {
        tk_terminate(pid, 5000);
        tk_fail("exactly %s did not finish; log %s", argv[1], log);
    }
    *out = tk_read_file(log);
    if (!*out)
        *out = strdup("");
    return status;
}

int main(void)
{
    ctx c;
    tk_mock *m;
    char admin_cfg[512], role_cfg[512], *out;
    PGresult *res;
    size_t named;
    int st;

    memset(&c, 0, sizeof c);
    m = tk_mock_start(1);
    c.bootstraps = tk_mock_bootstraps(m);
    tk_mock_create_topic(m, TOPIC, 1);
    tk_mock_create_topic(m, EMITTED, 1);
    named = tk_produce_ids(c.bootstraps, TOPIC, N_MSGS, N_ENTITIES, 1, 7,
                           NULL);

    /* 1. The database, the framework (as the superuser), the outboxes. */
    tk_tmpdir("exactly-grants-seq", c.dir, sizeof c.dir);
    tk_pg_create_db("grants_seq", c.conninfo, sizeof c.conninfo);
    ledger_setup_db(c.conninfo);
    c.db = tk_pg_connect(c.conninfo);
    snprintf(c.role, sizeof c.role, "exactly_seq_%d", (int)getpid());
    tk_sql(c.db, "CREATE ROLE %s LOGIN", c.role);
    tk_sql(c.db, "CREATE TABLE account_emit1 (id bigint PRIMARY KEY, name"
                 " text, balance numeric);"
                 " CREATE TABLE account_emit2 (LIKE account_emit1"
                 " INCLUDING ALL)");
    snprintf(admin_cfg, sizeof admin_cfg, "%s/admin.yaml", c.dir);
    snprintf(role_cfg, sizeof role_cfg, "%s/role.yaml", c.dir);
    tk_sql(c.db, "CREATE SCHEMA app");
    write_config(&c, admin_cfg, PQuser(c.db));
    write_config(&c, role_cfg, c.role);
    st = exactly(&c, &out, "migrate", "-c", admin_cfg, NULL);
    TK_CHECK(st == 0, "migrate exited %d:\n%s", st, out);
    free(out);
    /* The framework outbox's columns; the ids from a sequence of another
     * name (app.events) or an identity column (app.events2). */
    tk_sql(c.db, "CREATE SEQUENCE app.event_numbers;"
                 " CREATE TABLE app.events (LIKE exactly.outbox INCLUDING ALL);"
                 " ALTER TABLE app.events ALTER id SET DEFAULT"
                 "  nextval('app.event_numbers');"
                 " CREATE TABLE app.events2 (LIKE exactly.outbox INCLUDING ALL);"
                 " ALTER TABLE app.events2 ALTER id DROP DEFAULT;"
                 " ALTER TABLE app.events2 ALTER id ADD GENERATED BY DEFAULT"
                 "  AS IDENTITY");

    /* 2. The printed grants name the sequence the catalog names. */
    st = exactly(&c, &out, "migrate", "-c", role_cfg, "--print-grants",
                 c.role, NULL);
    tk_note("migrate --print-grants %s:\n%s", c.role, out);
    TK_CHECK(st == 0, "migrate --print-grants exited %d:\n%s", st, out);
    TK_CHECK(strstr(out, "GRANT USAGE ON SEQUENCE \"app\".\"event_numbers\"")
                 != NULL,
             "--print-grants does not grant USAGE on app.events' sequence "
             "\"app\".\"event_numbers\":\n%s", out);
    TK_CHECK(strstr(out, "\"events_id_seq\"") == NULL,
             "--print-grants names a sequence guessed from the table's "
             "name:\n%s", out);
    res = PQexec(c.db, out);
    TK_CHECK(PQresultStatus(res) == PGRES_COMMAND_OK,
             "the printed grants do not apply: %s",
             PQresultErrorMessage(res));
    PQclear(res);
    free(out);

    /* 3. As that role: check, the pipelines, the relay. */
    st = exactly(&c, &out, "check", "-c", role_cfg, NULL);
    TK_CHECK(st == 0 && strstr(out, "FAIL") == NULL,
             "check as a role with the printed grants exited %d:\n%s", st,
             out);
    free(out);
    st = exactly(&c, &out, "run", "-c", role_cfg, "--pipeline", "emit1",
                 "--exit-idle", "2000", NULL);
    TK_CHECK(st == 0, "run emit1 as the role exited %d:\n%s", st, out);
    free(out);
    st = exactly(&c, &out, "run", "-c", role_cfg, "--pipeline", "emit2",
                 "--exit-idle", "2000", NULL);
    TK_CHECK(st == 0, "run emit2 as the role exited %d:\n%s", st, out);
    free(out);
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM"
                                         " exactly.dead_letters"),
                      0, "dead letters under the printed grants");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM app.events"),
                      (int64_t)named, "events emitted into app.events");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM app.events2"),
                      (int64_t)named, "events emitted into app.events2");
    st = exactly(&c, &out, "relay", "-c", role_cfg, "--relay", "events",
                 "--exit-idle", "1000", NULL);
    TK_CHECK(st == 0, "the relay as the role exited %d:\n%s", st, out);
    free(out);
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM app.events"
                                         " WHERE published_at IS NULL"),
                      0, "app.events rows the relay left unpublished");
    /* Each row goes to its own topic (the emit's). */
    TK_CHECK_EQ_INT64(tk_high_watermark(c.bootstraps, EMITTED, 0),
                      (int64_t)named, "records the relay published");
    tk_sql(c.db, "DROP OWNED BY %s CASCADE; DROP ROLE %s", c.role, c.role);
    PQfinish(c.db);
    tk_mock_stop(m);
    ledger_cleanup_dir(c.dir);
    return 0;
}
