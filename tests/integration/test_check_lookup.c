/*
 * `exactly check` runs the lookup the worker runs, and nothing else.
 *
 * The lookup a worker runs comes from one builder (lib/lookup.c):
 * identifiers quoted, the configured columns, one statement sent with the
 * extended protocol. check must run that same statement, report the
 * columns the handler will get, and write nothing (a read-only
 * transaction it rolls back).
 *
 *   columns     lookup.columns lists 4 of the table's 6 columns: check says
 *               "4 columns: id, a, b, c" (not the table's 6).
 *   missing     lookup.columns lists 2 columns and the built-in upsert
 *               (unfused) maps a third: check FAILs naming the column,
 *               exit 2; a worker with that config dead-letters every
 *               record (which is why check must refuse it).
 *   quoted      lookup.table Sales.Orders (a schema and a table created
 *               with capitals): the worker's quoted name finds it, so
 *               check must too ("2 columns: id, status").
 *   injection   lookup.table `x; CREATE TABLE pwned()`, a schema-qualified
 *               variant that ends the transaction before its CREATE, and a
 *               lookup.sql that does the same: check treats the names as
 *               identifiers (relation does not exist) and refuses the
 *               multi-statement SQL; no table pwned* exists afterwards.
 *
 * EXACTLY_TEST_ONLY=name[,name] runs only those scenarios.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "check-lookup"
#define CMD_TIMEOUT_MS 60000
#define WORKER_TIMEOUT_MS 120000

typedef struct ctx {
    char dir[256];
    char conninfo[1024];
    const char *bootstraps;
    PGconn *db;
    int n;
} ctx;

/* A single-quoted YAML scalar ('' for ', $$ for $). */
static void yaml_quoted(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'' || *s == '$')
            fputc(*s, f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

/* Writes a one-pipeline config named after the pipeline; lookup and
 * handler are YAML lines (indented for the pipeline's body). */
static void write_config(ctx *c, char *path, size_t size, const char *name,
                         const char *lookup, const char *handler)
{
    FILE *f;

    snprintf(path, size, "%s/%s.yaml", c->dir, name);
    f = fopen(path, "w");
    TK_CHECK(f != NULL, "cannot write %s", path);
    fprintf(f, "kafka:\n  bootstrap.servers: ");
    yaml_quoted(f, c->bootstraps);
    fprintf(f, "\n  auto.offset.reset: earliest\n"
               "  session.timeout.ms: 6000\n"
               "postgres:\n  conninfo: ");
    yaml_quoted(f, c->conninfo);
    fprintf(f, "\npipelines:\n"
               "  %s:\n"
               "    topics: [" TOPIC "]\n"
               "    id: {from: key, type: bigint}\n"
               "%s%s"
               "    batch: {max_messages: 10, max_wait_ms: 50}\n",
            name, lookup, handler);
    TK_CHECK(fclose(f) == 0, "cannot write %s", path);
}

/* Runs `exactly CMD -c cfg [extra]`; exit status and output. */
static int exactly(ctx *c, const char *cmd, const char *cfg,
                   const char *extra1, const char *extra2, char **out)
{
    char *argv[] = {(char *)ledger_exactly_bin(), (char *)cmd, "-c",
                    (char *)cfg, (char *)extra1, (char *)extra2, NULL};
    char log[512];
    int status, timeout = strcmp(cmd, "worker") == 0 ? WORKER_TIMEOUT_MS
                                                    : CMD_TIMEOUT_MS;
    pid_t pid;

    snprintf(log, sizeof log, "%s/%s-%02d.log", c->dir, cmd, ++c->n);
    pid = tk_spawn(argv, log);
    status = tk_wait(pid, timeout);
    if (status == -1) {
        tk_terminate(pid, 5000);
        tk_fail("exactly %s -c %s did not finish; log %s", cmd, cfg, log);
    }
    *out = tk_read_file(log);
    if (!*out)
        *out = strdup("");
    return status;
}

/* The line of check's output that starts with status and names what. */
static const char *line_of(const char *out, const char *status,
                           const char *what)
{
    const char *l = out;

    while (l && *l) {
        const char *end = strchr(l, '\n');
        size_t len = end ? (size_t)(end - l) : strlen(l);
        if (strncmp(l, status, strlen(status)) == 0) {
            const char *w = strstr(l, what);
            if (w && w < l + len)
                return l;
        }
        l = end ? end + 1 : NULL;
    }
    return NULL;
}

static int wanted(const char *name)
{
    const char *only = getenv("EXACTLY_TEST_ONLY");

    return !only || !*only || strstr(only, name) != NULL;
}

#define UNFUSED_UPSERT(target, map)                                           \
    "    handler:\n"                                                          \
    "      builtin: upsert\n"                                                 \
    "      options: {table: " target ", key: [id], columns: " map "}\n"

static void scenario_columns(ctx *c)
{
    char cfg[512];
    char *out;
    int st;

    /* on_missing: dead_letter keeps the upsert unfused: the rows travel
     * through the worker, so their columns matter. */
    write_config(c, cfg, sizeof cfg, "four",
                 "    lookup: {table: src6, columns: [id, a, b, c],"
                 " on_missing: dead_letter}\n",
                 UNFUSED_UPSERT("view4", "{id: id, a: a, b: b, c: c}"));
    st = exactly(c, "check", cfg, NULL, NULL, &out);
    tk_note("check (4 of 6 columns):\n%s", out);
    TK_CHECK(line_of(out, "OK", "lookup [four]") &&
                 strstr(line_of(out, "OK", "lookup [four]"),
                        "4 columns: id, a, b, c\n"),
             "check does not report the lookup's 4 columns (id, a, b, c):\n%s",
             out);
    TK_CHECK(st == 0, "check exited %d:\n%s", st, out);
    free(out);
}

static void scenario_missing(ctx *c)
{
    char cfg[512];
    char *out;
    const char *fail;
    int st;

    write_config(c, cfg, sizeof cfg, "missing",
                 "    lookup: {table: src6, columns: [id, a],"
                 " on_missing: dead_letter}\n",
                 UNFUSED_UPSERT("view2", "{id: id, a: a, b: b}"));
    st = exactly(c, "check", cfg, NULL, NULL, &out);
    tk_note("check (upsert maps a column the lookup lacks):\n%s", out);
    fail = line_of(out, "FAIL", "[missing]");
    TK_CHECK(fail && strstr(fail, "\"b\""),
             "check printed no FAIL line naming the missing column \"b\":\n%s",
             out);
    TK_CHECK(st == 2, "check exited %d, expected 2:\n%s", st, out);
    free(out);

    /* What check guards against: the worker with this config fails every
     * record and dead-letters it. */
    st = exactly(c, "worker", cfg, "--exit-idle", "3000", &out);
    TK_CHECK(st == 0, "worker exited %d:\n%s", st, out);
    free(out);
    TK_CHECK_EQ_INT64(tk_sql_int64(c->db, "SELECT count(*) FROM view2"), 0,
                      "view2 rows written by the worker");
    TK_CHECK_EQ_INT64(tk_sql_int64(c->db, "SELECT count(*) FROM"
                                          " exactly.dead_letters WHERE"
                                          " pipeline = 'missing' AND reason"
                                          " LIKE '%%no column \"b\"%%'"),
                      3, "records the worker dead-lettered for the missing "
                         "column");
}

static void scenario_quoted(ctx *c)
{
    char cfg[512];
    char *out;
    int st;

    write_config(c, cfg, sizeof cfg, "quoted",
                 "    lookup: {table: Sales.Orders, columns: [id, status],"
                 " on_missing: dead_letter}\n",
                 UNFUSED_UPSERT("orders_view", "{id: id, status: status}"));
    st = exactly(c, "check", cfg, NULL, NULL, &out);
    tk_note("check (lookup.table Sales.Orders):\n%s", out);
    TK_CHECK(line_of(out, "OK", "lookup [quoted]") &&
                 strstr(line_of(out, "OK", "lookup [quoted]"),
                        "2 columns: id, status\n"),
             "check does not find \"Sales\".\"Orders\" as the worker does:\n%s",
             out);
    TK_CHECK(st == 0, "check exited %d:\n%s", st, out);
    free(out);

    /* The worker reads the same table. */
    st = exactly(c, "worker", cfg, "--exit-idle", "3000", &out);
    TK_CHECK(st == 0, "worker exited %d:\n%s", st, out);
    free(out);
    TK_CHECK_EQ_INT64(tk_sql_int64(c->db, "SELECT count(*) FROM orders_view"),
                      3, "orders_view rows written by the worker");
}

static int64_t pwned(ctx *c)
{
    return tk_sql_int64(c->db, "SELECT count(*) FROM pg_class WHERE relname"
                               " LIKE 'pwned%%'");
}

static void scenario_injection(ctx *c)
{
    static const struct {
        const char *name;
        const char *lookup;
        const char *expect; /* in the lookup's FAIL line */
    } cases[] = {
        {"inject_plain",
         "    lookup: {table: 'x; CREATE TABLE pwned()'}\n",
         "does not exist"},
        {"inject_qualified",
         "    lookup: {table: 'pg_catalog.pg_class; COMMIT; CREATE TABLE"
         " pwned_q(); SELECT 1 FROM pg_catalog.pg_class'}\n",
         "does not exist"},
        {"inject_sql",
         "    lookup: {sql: 'SELECT id FROM accounts WHERE id = ANY($1);"
         " COMMIT; CREATE TABLE pwned_sql()', key_column: id}\n",
         "multiple commands"},
    };
    char plugin[1024], handler[1200];
    size_t i;

    snprintf(plugin, sizeof plugin, "%s/ledger.so",
             tk_env_required("EXACTLY_PLUGIN_DIR"));
    snprintf(handler, sizeof handler, "    handler:\n      plugin: '%s'\n",
             plugin);
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char cfg[512];
        char *out;
        const char *fail;
        int st;

        write_config(c, cfg, sizeof cfg, cases[i].name, cases[i].lookup,
                     handler);
        st = exactly(c, "check", cfg, NULL, NULL, &out);
        tk_note("check (%s):\n%s", cases[i].name, out);
        TK_CHECK_EQ_INT64(pwned(c), 0,
                          "tables pwned* after check (SQL from the config "
                          "was executed and committed)");
        fail = line_of(out, "FAIL", "lookup [");
        TK_CHECK(fail && strstr(fail, cases[i].expect),
                 "[%s] check printed no FAIL line for the lookup saying "
                 "\"%s\":\n%s",
                 cases[i].name, cases[i].expect, out);
        TK_CHECK(st == 2, "[%s] check exited %d, expected 2:\n%s",
                 cases[i].name, st, out);
        free(out);
    }
}

int main(void)
{
    ctx c;
    tk_mock *m;
    tk_msg msgs[3];
    char keys[3][4];
    int i;

    memset(&c, 0, sizeof c);
    memset(msgs, 0, sizeof msgs);
    m = tk_mock_start(1);
    c.bootstraps = tk_mock_bootstraps(m);
    tk_mock_create_topic(m, TOPIC, 1);
    for (i = 0; i < 3; i++) {
        snprintf(keys[i], sizeof keys[i], "%d", i + 1);
        msgs[i].partition = 0;
        msgs[i].key = keys[i];
        msgs[i].key_len = strlen(keys[i]);
    }
    tk_produce(c.bootstraps, TOPIC, msgs, 3);

    tk_tmpdir("exactly-check-lookup", c.dir, sizeof c.dir);
    tk_pg_create_db("check_lookup", c.conninfo, sizeof c.conninfo);
    ledger_setup_db(c.conninfo);
    c.db = tk_pg_connect(c.conninfo);
    tk_sql(c.db,
           "CREATE TABLE src6 (id bigint PRIMARY KEY, a text, b text, c text,"
           " d text, e text);"
           "INSERT INTO src6 SELECT g, 'a' || g, 'b' || g, 'c' || g, 'd' || g,"
           " 'e' || g FROM generate_series(1, 3) g;"
           "CREATE TABLE view4 (id bigint PRIMARY KEY, a text, b text,"
           " c text);"
           "CREATE TABLE view2 (id bigint PRIMARY KEY, a text, b text);"
           "CREATE SCHEMA \"Sales\";"
           "CREATE TABLE \"Sales\".\"Orders\" (id bigint PRIMARY KEY,"
           " status text, total numeric);"
           "INSERT INTO \"Sales\".\"Orders\" SELECT g, 'open', g FROM"
           " generate_series(1, 3) g;"
           "CREATE TABLE orders_view (id bigint PRIMARY KEY, status text)");
    {
        char cfg[512], log[512];
        write_config(&c, cfg, sizeof cfg, "migrate",
                     "    lookup: {table: accounts}\n",
                     "    handler: {builtin: upsert, options: {table: view2,"
                     " key: [id], columns: {id: id}}}\n");
        snprintf(log, sizeof log, "%s/migrate.log", c.dir);
        ledger_migrate(cfg, log);
    }

    if (wanted("columns"))
        scenario_columns(&c);
    if (wanted("missing"))
        scenario_missing(&c);
    if (wanted("quoted"))
        scenario_quoted(&c);
    if (wanted("injection"))
        scenario_injection(&c);

    PQfinish(c.db);
    tk_mock_stop(m);
    ledger_cleanup_dir(c.dir);
    return 0;
}
