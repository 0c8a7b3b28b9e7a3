/*
 * Refusals (DESIGN 3, 4, 5): a configuration or plugin that is wrong stops
 * `exactly run` and `exactly check` with exit code 2 and one sentence that
 * names the problem (file:line:col and the key for YAML, the path and the
 * reason for plugins), and nothing is written to PostgreSQL.
 *
 * The cases are a table. Each is a YAML document (a template: @BOOT@,
 * @CONN@, @PLUGINS@ and @DIR@ are filled in) and the message both commands
 * must print. Every case is run against a freshly migrated database, whose
 * framework tables must stay empty (a refused worker claims no partition,
 * stores no offset, dead-letters nothing), and, when the refusal comes
 * before the database is touched, also against a fresh database where
 * migrate never ran, which must still have no `exactly` schema afterwards
 * (`run` never creates it). The topic holds messages, so a worker that
 * started by mistake would leave traces.
 *
 * Two control cases (a valid config, and read_uncommitted with the unsafe
 * flag set) must pass `check`, so that an exit code 2 above is the defect's
 * doing and not the harness's. Last, `run` against a database where
 * migrate never ran exits 2 and says to run `exactly migrate`.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exactly/handler.h"
#include "store.h"
#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "refusals"
#define UNSET_VAR "EXACTLY_TEST_SURELY_UNSET_VAR"
#define CMD_TIMEOUT_MS 60000

/* The valid document, piece by piece, so that a case can leave out or
 * replace one line and the line numbers in its message stay obvious:
 * line 1 kafka, 2 bootstrap.servers, 3 auto.offset.reset, 4 postgres,
 * 5 conninfo, 6 pipelines, 7 refused, 8 topics, 9 id, 10 lookup,
 * 11 handler, 12 plugin; a case's extra lines start at 13. */
#define Y_KAFKA "kafka:\n  bootstrap.servers: \"@BOOT@\"\n"
#define Y_RESET "  auto.offset.reset: earliest\n"
#define Y_PG "postgres:\n  conninfo: \"@CONN@\"\n"
#define Y_PIPE "pipelines:\n  refused:\n"
#define Y_TOPICS "    topics: [" TOPIC "]\n"
#define Y_BODY                                                                \
    "    id: {from: key, type: bigint}\n"                                     \
    "    lookup: {table: accounts}\n"                                         \
    "    handler:\n"
#define Y_PLUGIN(so) "      plugin: @PLUGINS@/" so "\n"
#define Y_VALID Y_KAFKA Y_RESET Y_PG Y_PIPE Y_TOPICS Y_BODY Y_PLUGIN("ledger.so")

typedef struct refusal {
    const char *name;
    const char *yaml;
    /* What run and check must print (@CFG@: the config's path). */
    const char *expect;
    /* 1 when the refusal comes before any database connection. */
    int before_db;
} refusal;

static const refusal cases[] = {
    {"yaml_syntax",
     Y_KAFKA "   auto.offset.reset: earliest\n" Y_PG Y_PIPE Y_TOPICS Y_BODY
         Y_PLUGIN("ledger.so"),
     "@CFG@:3:4: invalid YAML", 1},
    {"yaml_unclosed_flow",
     Y_KAFKA Y_RESET Y_PG Y_PIPE "    topics: [" TOPIC "\n" Y_BODY
         Y_PLUGIN("ledger.so"),
     "@CFG@:9:", 1},
    {"unknown_key", Y_VALID "    batch: {max_mesages: 10}\n",
     "@CFG@:13:13: unknown key 'pipelines.refused.batch.max_mesages'", 1},
    {"unknown_top_level_key", Y_VALID "kafak: {}\n",
     "@CFG@:13:1: unknown key 'kafak'", 1},
    {"wrong_type", Y_VALID "    batch: {max_messages: abc}\n",
     "@CFG@:13:27: 'pipelines.refused.batch.max_messages' must be an "
     "integer, got 'abc'",
     1},
    {"out_of_range", Y_VALID "    batch: {max_messages: 0}\n",
     "@CFG@:13:27: 'pipelines.refused.batch.max_messages' must be between", 1},
    {"missing_topics",
     Y_KAFKA Y_RESET Y_PG Y_PIPE Y_BODY Y_PLUGIN("ledger.so"),
     "@CFG@:7:3: missing required key 'pipelines.refused.topics'", 1},
    {"unset_variable",
     Y_KAFKA Y_RESET "postgres:\n  conninfo: ${" UNSET_VAR "}\n" Y_PIPE
         Y_TOPICS Y_BODY Y_PLUGIN("ledger.so"),
     "@CFG@:5:13: environment variable '" UNSET_VAR "' is not set", 1},
    {"plugin_not_shared_object",
     Y_KAFKA Y_RESET Y_PG Y_PIPE Y_TOPICS Y_BODY
     "      plugin: @DIR@/not-a-plugin.so\n",
     "plugin @DIR@/not-a-plugin.so: cannot load", 1},
    {"plugin_missing_file",
     Y_KAFKA Y_RESET Y_PG Y_PIPE Y_TOPICS Y_BODY Y_PLUGIN("no-such-plugin.so"),
     "plugin @PLUGINS@/no-such-plugin.so: cannot load", 1},
    {"plugin_no_entry_symbol",
     Y_KAFKA Y_RESET Y_PG Y_PIPE Y_TOPICS Y_BODY Y_PLUGIN("broken_nosym.so"),
     "plugin @PLUGINS@/broken_nosym.so: no symbol exactly_handler_entry", 1},
    {"plugin_wrong_abi",
     Y_KAFKA Y_RESET Y_PG Y_PIPE Y_TOPICS Y_BODY Y_PLUGIN("broken_abi.so"),
     "was built for ABI 2, this exactly speaks ABI 1", 1},
    /* broken_minor claims EXACTLY_ABI_MINOR + 1 (checked in main). */
    {"plugin_newer_minor_abi",
     Y_KAFKA Y_RESET Y_PG Y_PIPE Y_TOPICS Y_BODY Y_PLUGIN("broken_minor.so"),
     "plugin @PLUGINS@/broken_minor.so: handler 'broken_minor' was built for "
     "ABI 1.4, this exactly speaks ABI 1.3",
     1},
    /* open() runs against the database (after the schema check), so this
     * one is tried on the migrated database only. */
    {"plugin_open_fails",
     Y_KAFKA Y_RESET Y_PG Y_PIPE Y_TOPICS Y_BODY Y_PLUGIN("broken_open.so"),
     "handler 'broken_open' refused to open: broken_open: refusing to open "
     "on purpose",
     0},
    {"unknown_handler_option", Y_VALID "      options: {tabel: x}\n",
     "@CFG@:13:17: handler 'ledger': unknown option 'tabel'", 1},
    {"missing_handler_option",
     Y_KAFKA Y_RESET Y_PG Y_PIPE Y_TOPICS Y_BODY Y_PLUGIN("projection.so")
     "      options: {}\n",
     "handler 'projection': missing required option 'table'", 1},
    {"wrong_handler_option_type",
     Y_VALID "      options: {fail_on_ids: {a: b}}\n",
     "@CFG@:13:30: handler 'ledger': option 'fail_on_ids' must be a list", 1},
    {"unknown_builtin",
     Y_KAFKA Y_RESET Y_PG Y_PIPE Y_TOPICS Y_BODY "      builtin: upsret\n",
     "'pipelines.refused.handler.builtin' must be one of upsert, got "
     "'upsret'",
     1},
    {"read_uncommitted",
     Y_KAFKA "  isolation.level: read_uncommitted\n" Y_PG Y_PIPE Y_TOPICS Y_BODY
         Y_PLUGIN("ledger.so"),
     "@CFG@:3:3: pipeline 'refused' would read uncommitted messages", 1},
    {"read_uncommitted_per_pipeline",
     Y_VALID "    kafka: {isolation.level: read_uncommitted}\n",
     "pipeline 'refused' would read uncommitted messages", 1},
    {"enable_auto_commit",
     Y_KAFKA "  enable.auto.commit: true\n" Y_PG Y_PIPE Y_TOPICS Y_BODY
         Y_PLUGIN("ledger.so"),
     "@CFG@:3:3: kafka property 'enable.auto.commit' must stay false", 1},
};

#define N_CASES (sizeof cases / sizeof cases[0])

/* Configs that must pass `check` (exit 0) against a migrated database. */
static const struct {
    const char *name;
    const char *yaml;
} controls[] = {
    {"valid", Y_VALID},
    {"read_uncommitted_allowed",
     Y_KAFKA "  isolation.level: read_uncommitted\n" Y_PG Y_PIPE Y_TOPICS Y_BODY
         Y_PLUGIN("ledger.so") "    unsafe_read_uncommitted: true\n"},
};

typedef struct ctx {
    const char *bin;
    const char *plugins;
    const char *bootstraps;
    char dir[256];
} ctx;

/* Returns a malloc'd copy of s with every @NAME@ from the list replaced. */
static char *fill(const char *s, const ctx *c, const char *conn,
                  const char *cfg)
{
    const char *names[] = {"@BOOT@", "@CONN@", "@PLUGINS@", "@DIR@", "@CFG@"};
    const char *values[] = {c->bootstraps, conn ? conn : "", c->plugins,
                            c->dir, cfg ? cfg : ""};
    size_t cap = strlen(s) + 1, len = 0, i;
    char *out;

    for (i = 0; i < 5; i++)
        cap += 8 * strlen(values[i]);
    out = malloc(cap);
    TK_CHECK(out != NULL, "out of memory");
    while (*s) {
        for (i = 0; i < 5; i++) {
            size_t n = strlen(names[i]);
            if (strncmp(s, names[i], n) == 0) {
                size_t v = strlen(values[i]);
                TK_CHECK(len + v < cap, "template too long");
                memcpy(out + len, values[i], v);
                len += v;
                s += n;
                break;
            }
        }
        if (i == 5) {
            TK_CHECK(len + 1 < cap, "template too long");
            out[len++] = *s++;
        }
    }
    out[len] = '\0';
    return out;
}

/* Runs exactly with args; returns the exit status and the combined output
 * (stdout + stderr) in *out (malloc'd). */
static int exactly(const ctx *c, const char *log, char **out, const char *a1,
                   const char *a2, const char *a3)
{
    const char *args[] = {a1, a2, a3, NULL};
    int status;

    (void)c;
    tk_rm_rf(log);
    status = tk_exactlyv(log, CMD_TIMEOUT_MS, args);
    *out = tk_read_file(log);
    if (!*out)
        *out = strdup("");
    return status;
}

/* A fresh database with accounts and the ledger tables; migrated if asked
 * (through a valid config of its own, not the case's). */
static void fresh_db(const ctx *c, const char *tag, int migrated,
                     char *conninfo, size_t size)
{
    PGconn *conn;

    tk_pg_create_db(tag, conninfo, size);
    conn = tk_pg_connect(conninfo);
    ledger_create_accounts(conn, "accounts", LEDGER_ACCOUNTS);
    ledger_create_tables(conn, "ledger", "ledger_counters");
    PQfinish(conn);
    if (migrated) {
        char cfg[512], log[512];
        char *yaml = fill(Y_VALID, c, conninfo, NULL);
        char *out;
        snprintf(cfg, sizeof cfg, "%s/migrate-%s.yaml", c->dir, tag);
        snprintf(log, sizeof log, "%s/migrate-%s.log", c->dir, tag);
        tk_write_file(cfg, "%s", yaml);
        free(yaml);
        TK_CHECK(exactly(c, log, &out, "migrate", "-c", cfg) == 0,
                 "migrate of %s failed:\n%s", tag, out);
        free(out);
    }
}

/* What a refused command may leave in a database: nothing. */
static void check_untouched(const char *conninfo, int migrated,
                            const char *what)
{
    PGconn *conn = tk_pg_connect(conninfo);

    if (migrated) {
        TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM "
                                             "exactly.offsets"),
                          0, what);
        TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM "
                                             "exactly.dedup_keys"),
                          0, what);
        TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM "
                                             "exactly.dead_letters"),
                          0, what);
        /* One row per migration step: a refused run added none. */
        TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM "
                                             "exactly.schema_version"),
                          EXACTLY_SCHEMA_VERSION, what);
    } else {
        TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM "
                                             "pg_namespace WHERE nspname = "
                                             "'exactly'"),
                          0, what);
    }
    TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM ledger"), 0,
                      what);
    TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM "
                                         "ledger_counters"),
                      0, what);
    /* No table appeared anywhere but in the schema migrate made. */
    TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM pg_tables"
                                         " WHERE schemaname NOT IN"
                                         " ('pg_catalog',"
                                         " 'information_schema', 'exactly')"
                                         " AND tablename NOT IN ('accounts',"
                                         " 'ledger', 'ledger_counters')"),
                      0, what);
    PQfinish(conn);
}

/* One case against one database: run and check both exit 2 and print the
 * expected sentence; the database is untouched afterwards. */
static void try_case(const ctx *c, const refusal *r, int migrated)
{
    char conninfo[1024], cfg[512], log[512], what[256];
    char *yaml, *expect, *out;
    int status;

    fresh_db(c, migrated ? "refusal_m" : "refusal_u", migrated, conninfo,
             sizeof conninfo);
    snprintf(cfg, sizeof cfg, "%s/%s-%s.yaml", c->dir, r->name,
             migrated ? "migrated" : "unmigrated");
    yaml = fill(r->yaml, c, conninfo, NULL);
    tk_write_file(cfg, "%s", yaml);
    free(yaml);
    expect = fill(r->expect, c, conninfo, cfg);

    snprintf(log, sizeof log, "%s/%s-run.log", c->dir, r->name);
    status = exactly(c, log, &out, "run", "-c", cfg);
    TK_CHECK(status == 2, "[%s] exactly run exited %d, expected 2:\n%s",
             r->name, status, out);
    TK_CHECK(strstr(out, expect) != NULL,
             "[%s] exactly run did not say \"%s\":\n%s", r->name, expect,
             out);
    free(out);

    snprintf(log, sizeof log, "%s/%s-check.log", c->dir, r->name);
    status = exactly(c, log, &out, "check", "-c", cfg);
    TK_CHECK(status == 2, "[%s] exactly check exited %d, expected 2:\n%s",
             r->name, status, out);
    TK_CHECK(strstr(out, expect) != NULL,
             "[%s] exactly check did not say \"%s\":\n%s", r->name, expect,
             out);
    TK_CHECK(strstr(out, "FAIL") != NULL,
             "[%s] exactly check printed no FAIL line:\n%s", r->name, out);
    free(out);
    free(expect);

    snprintf(what, sizeof what, "[%s] %s database after the refusals",
             r->name, migrated ? "migrated" : "unmigrated");
    check_untouched(conninfo, migrated, what);
}

int main(void)
{
    ctx c;
    tk_mock *m;
    int64_t t0 = tk_now_ms();
    size_t i;

    /* The newer-minor case's message names these versions. */
    TK_CHECK(EXACTLY_ABI_MAJOR == 1 && EXACTLY_ABI_MINOR == 3,
             "the ABI is %d.%d: update the plugin_newer_minor_abi case",
             EXACTLY_ABI_MAJOR, EXACTLY_ABI_MINOR);
    memset(&c, 0, sizeof c);
    c.bin = tk_env_required("EXACTLY_BIN");
    c.plugins = tk_env_required("EXACTLY_PLUGIN_DIR");
    /* The unset-variable case needs it unset in the children too. */
    unsetenv(UNSET_VAR);

    m = tk_mock_start(1);
    c.bootstraps = tk_mock_bootstraps(m);
    tk_mock_create_topic(m, TOPIC, 2);
    tk_produce_ids(c.bootstraps, TOPIC, 40, 10, 2, 1, NULL);

    tk_tmpdir("exactly-refusals", c.dir, sizeof c.dir);
    /* A text file named like a plugin: dlopen must refuse it. */
    {
        char path[512];
        snprintf(path, sizeof path, "%s/not-a-plugin.so", c.dir);
        tk_write_file(path, "this is a text file, not a shared object\n");
    }

    /* The cases' expectations must be distinct, or one case could pass on
     * another's message. */
    for (i = 0; i < N_CASES; i++) {
        size_t j;
        for (j = i + 1; j < N_CASES; j++)
            TK_CHECK(strcmp(cases[i].expect, cases[j].expect) != 0,
                     "cases %s and %s expect the same message",
                     cases[i].name, cases[j].name);
    }

    /* Controls first: check accepts a valid config with these services. */
    for (i = 0; i < sizeof controls / sizeof controls[0]; i++) {
        char conninfo[1024], cfg[512], log[512];
        char *yaml, *out;
        int status;
        fresh_db(&c, "refusal_ctl", 1, conninfo, sizeof conninfo);
        snprintf(cfg, sizeof cfg, "%s/control-%s.yaml", c.dir,
                 controls[i].name);
        snprintf(log, sizeof log, "%s/control-%s.log", c.dir,
                 controls[i].name);
        yaml = fill(controls[i].yaml, &c, conninfo, NULL);
        tk_write_file(cfg, "%s", yaml);
        free(yaml);
        status = exactly(&c, log, &out, "check", "-c", cfg);
        TK_CHECK(status == 0, "control %s: exactly check exited %d:\n%s",
                 controls[i].name, status, out);
        TK_CHECK(strstr(out, "FAIL") == NULL, "control %s: FAIL line:\n%s",
                 controls[i].name, out);
        free(out);
        check_untouched(conninfo, 1, "control database after check");
    }
    tk_note("controls pass check");

    for (i = 0; i < N_CASES; i++) {
        try_case(&c, &cases[i], 1);
        if (cases[i].before_db)
            try_case(&c, &cases[i], 0);
        tk_note("refused as expected: %s", cases[i].name);
    }

    /* A valid config against a database where migrate never ran. */
    {
        char conninfo[1024], cfg[512], log[512];
        char *yaml, *out, *expect;
        int status;
        fresh_db(&c, "refusal_nomig", 0, conninfo, sizeof conninfo);
        snprintf(cfg, sizeof cfg, "%s/not-migrated.yaml", c.dir);
        yaml = fill(Y_VALID, &c, conninfo, NULL);
        tk_write_file(cfg, "%s", yaml);
        free(yaml);
        expect = fill("run 'exactly migrate -c @CFG@'", &c, conninfo, cfg);

        snprintf(log, sizeof log, "%s/not-migrated-run.log", c.dir);
        status = exactly(&c, log, &out, "run", "-c", cfg);
        TK_CHECK(status == 2, "run before migrate exited %d, expected 2:\n%s",
                 status, out);
        TK_CHECK(strstr(out, expect) != NULL,
                 "run before migrate did not say \"%s\":\n%s", expect, out);
        free(out);
        /* check reports it too; by its documented exit codes an
         * unmigrated database is "not ready" (1), not a refusal (2). */
        snprintf(log, sizeof log, "%s/not-migrated-check.log", c.dir);
        status = exactly(&c, log, &out, "check", "-c", cfg);
        TK_CHECK(status == 1, "check before migrate exited %d, expected 1:\n%s",
                 status, out);
        TK_CHECK(strstr(out, expect) != NULL,
                 "check before migrate did not say \"%s\":\n%s", expect, out);
        free(out);
        free(expect);
        check_untouched(conninfo, 0, "unmigrated database after run");
        tk_note("refused as expected: run before migrate");
    }

    tk_mock_stop(m);
    tk_rm_rf(c.dir);
    tk_note("%zu refusal cases passed in %" PRId64 " ms", N_CASES,
            tk_now_ms() - t0);
    return 0;
}
