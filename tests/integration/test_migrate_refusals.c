/*
 * `exactly migrate` refuses what `exactly check` refuses about the
 * configuration itself: both go through one validation of each pipeline
 * (handler loaded with its options checked, Kafka properties exactly
 * owns), so a configuration that no worker would run is not half set up.
 *
 * Refusals that need the database (a handler's open(), the lookup) are
 * not the configuration's own and stay check's.
 *
 * For each case (a config that is valid YAML but refused): check exits 2
 * with the reason on a FAIL line; migrate exits 2 with the same reason and
 * creates nothing (no framework schema afterwards). A valid control config
 * passes both, and migrate creates the schema.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testkit.h"

#define TOPIC "migrate-refusals"
#define CMD_TIMEOUT_MS 60000

/* The document: @BOOT@, @CONN@, @PLUGINS@ and @EXTRA@ (the case's lines
 * under the pipeline, or under kafka for @KAFKA@) are filled in. */
static const char doc[] =
    "kafka:\n"
    "  bootstrap.servers: \"@BOOT@\"\n"
    "  auto.offset.reset: earliest\n"
    "@KAFKA@"
    "postgres:\n"
    "  conninfo: \"@CONN@\"\n"
    "pipelines:\n"
    "  refused:\n"
    "    topics: [" TOPIC "]\n"
    "    id: {from: key, type: bigint}\n"
    "    lookup: {table: accounts}\n"
    "    handler:\n"
    "@HANDLER@";

#define LEDGER "      plugin: @PLUGINS@/ledger.so\n"

static const struct {
    const char *name;
    const char *kafka;   /* lines under kafka: */
    const char *handler; /* lines under handler: */
    const char *expect;  /* what both commands print */
} cases[] = {
    {"plugin_missing_file", "", "      plugin: @PLUGINS@/no-such-plugin.so\n",
     "no-such-plugin.so: cannot load"},
    {"plugin_wrong_abi", "", "      plugin: @PLUGINS@/broken_abi.so\n",
     "was built for ABI 2, this exactly speaks ABI 1"},
    {"plugin_no_entry_symbol", "", "      plugin: @PLUGINS@/broken_nosym.so\n",
     "no symbol exactly_handler_entry"},
    {"unknown_handler_option", "", LEDGER "      options: {tabel: x}\n",
     "handler 'ledger': unknown option 'tabel'"},
    {"missing_handler_option", "",
     "      plugin: @PLUGINS@/projection.so\n      options: {}\n",
     "handler 'projection': missing required option 'table'"},
    {"read_uncommitted", "  isolation.level: read_uncommitted\n", LEDGER,
     "would read uncommitted messages"},
    {"enable_auto_commit", "  enable.auto.commit: true\n", LEDGER,
     "kafka property 'enable.auto.commit' must stay false"},
};

typedef struct ctx {
    const char *bin;
    const char *plugins;
    const char *bootstraps;
    char dir[256];
} ctx;

/* s with every @NAME@ replaced; malloc'd. */
static char *fill(const char *s, const char *const *names,
                  const char *const *values, size_t n)
{
    size_t cap = strlen(s) + 1, len = 0, i;
    char *out;

    for (i = 0; i < n; i++)
        cap += 4 * strlen(values[i]);
    out = malloc(cap);
    TK_CHECK(out != NULL, "out of memory");
    while (*s) {
        for (i = 0; i < n; i++) {
            size_t k = strlen(names[i]);
            if (strncmp(s, names[i], k) == 0) {
                size_t v = strlen(values[i]);
                TK_CHECK(len + v < cap, "template too long");
                memcpy(out + len, values[i], v);
                len += v;
                s += k;
                break;
            }
        }
        if (i == n) {
            TK_CHECK(len + 1 < cap, "template too long");
            out[len++] = *s++;
        }
    }
    out[len] = '\0';
    return out;
}

static char *config(const ctx *c, const char *conninfo, const char *kafka,
                    const char *handler)
{
    const char *names[] = {"@KAFKA@", "@HANDLER@"};
    const char *values[] = {kafka, handler};
    const char *names2[] = {"@BOOT@", "@CONN@", "@PLUGINS@"};
    const char *values2[] = {c->bootstraps, conninfo, c->plugins};
    char *a = fill(doc, names, values, 2);
    char *b = fill(a, names2, values2, 3);

    free(a);
    return b;
}

static int exactly(const ctx *c, const char *cmd, const char *cfg,
                   const char *log, char **out)
{
    char *argv[] = {(char *)c->bin, (char *)cmd, "-c", (char *)cfg, NULL};
    pid_t pid;
    int status;

    tk_rm_rf(log);
    pid = tk_spawn(argv, log);
    status = tk_wait(pid, CMD_TIMEOUT_MS);
    if (status == -1) {
        tk_terminate(pid, 5000);
        tk_fail("exactly %s -c %s did not finish; log %s", cmd, cfg, log);
    }
    *out = tk_read_file(log);
    if (!*out)
        *out = strdup("");
    return status;
}

static int64_t framework_schemas(const char *conninfo)
{
    PGconn *db = tk_pg_connect(conninfo);
    int64_t n = tk_sql_int64(db, "SELECT count(*) FROM pg_namespace WHERE"
                                 " nspname = 'exactly'");

    PQfinish(db);
    return n;
}

static void fresh_db(char *conninfo, size_t size)
{
    PGconn *db;

    tk_pg_create_db("migrate_refusals", conninfo, size);
    db = tk_pg_connect(conninfo);
    tk_sql(db, "CREATE TABLE accounts (id bigint PRIMARY KEY, name text);"
               "CREATE TABLE ledger (topic text NOT NULL, partition int NOT"
               " NULL, \"offset\" bigint NOT NULL, entity_id text NOT NULL,"
               " applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY"
               " (topic, partition, \"offset\"));"
               "CREATE TABLE ledger_counters (entity_id text PRIMARY KEY,"
               " n bigint NOT NULL)");
    PQfinish(db);
}

int main(void)
{
    ctx c;
    tk_mock *m;
    size_t i;

    memset(&c, 0, sizeof c);
    c.bin = tk_env_required("EXACTLY_BIN");
    c.plugins = tk_env_required("EXACTLY_PLUGIN_DIR");
    m = tk_mock_start(1);
    c.bootstraps = tk_mock_bootstraps(m);
    tk_mock_create_topic(m, TOPIC, 1);
    tk_tmpdir("exactly-migrate-refusals", c.dir, sizeof c.dir);

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char conninfo[1024], cfg[512], log[512];
        char *yaml, *out;
        int st;

        fresh_db(conninfo, sizeof conninfo);
        yaml = config(&c, conninfo, cases[i].kafka, cases[i].handler);
        snprintf(cfg, sizeof cfg, "%s/%s.yaml", c.dir, cases[i].name);
        tk_write_file(cfg, "%s", yaml);
        free(yaml);

        /* check refuses it (that is what migrate must agree with) ... */
        snprintf(log, sizeof log, "%s/%s-check.log", c.dir, cases[i].name);
        st = exactly(&c, "check", cfg, log, &out);
        TK_CHECK(st == 2 && strstr(out, "FAIL") &&
                     strstr(out, cases[i].expect),
                 "[%s] check exited %d, expected 2 and a FAIL line saying "
                 "\"%s\":\n%s",
                 cases[i].name, st, cases[i].expect, out);
        free(out);
        TK_CHECK_EQ_INT64(framework_schemas(conninfo), 0,
                          "framework schemas after check");

        /* ... and so does migrate, before it creates anything. */
        snprintf(log, sizeof log, "%s/%s-migrate.log", c.dir, cases[i].name);
        st = exactly(&c, "migrate", cfg, log, &out);
        TK_CHECK(st == 2, "[%s] migrate exited %d, expected 2 (check "
                 "refuses this configuration):\n%s",
                 cases[i].name, st, out);
        TK_CHECK(strstr(out, cases[i].expect) != NULL,
                 "[%s] migrate did not say \"%s\":\n%s", cases[i].name,
                 cases[i].expect, out);
        free(out);
        TK_CHECK_EQ_INT64(framework_schemas(conninfo), 0,
                          "framework schemas after a refused migrate");
        tk_note("refused by check and migrate alike: %s", cases[i].name);
    }

    /* The control: a valid config passes both, and migrate does its job. */
    {
        char conninfo[1024], cfg[512], log[512];
        char *yaml, *out;
        int st;

        fresh_db(conninfo, sizeof conninfo);
        yaml = config(&c, conninfo, "", LEDGER);
        snprintf(cfg, sizeof cfg, "%s/valid.yaml", c.dir);
        tk_write_file(cfg, "%s", yaml);
        free(yaml);
        snprintf(log, sizeof log, "%s/valid-migrate.log", c.dir);
        st = exactly(&c, "migrate", cfg, log, &out);
        TK_CHECK(st == 0, "migrate of a valid config exited %d:\n%s", st, out);
        free(out);
        TK_CHECK_EQ_INT64(framework_schemas(conninfo), 1,
                          "framework schemas after migrate");
        snprintf(log, sizeof log, "%s/valid-check.log", c.dir);
        st = exactly(&c, "check", cfg, log, &out);
        TK_CHECK(st == 0, "check of a valid config exited %d:\n%s", st, out);
        free(out);
    }

    tk_mock_stop(m);
    tk_rm_rf(c.dir);
    return 0;
}
