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
 *   report      on a terminal (a pseudo-terminal: stdout line-buffered, as
 *               an operator sees it), a lookup that raises a NOTICE while
 *               check runs: the notice's log line comes before the report,
 *               never between its OK/FAIL lines, and the details of every
 *               item start in one column although "handler open [P]" of a
 *               long pipeline name is wider than the others.
 *
 * EXACTLY_TEST_ONLY=name[,name] runs only those scenarios.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <inttypes.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
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

/* Writes a one-pipeline config named after the pipeline; lookup and
 * handler are YAML lines (indented for the pipeline's body): the hostile
 * ones are the point of this test. */
static void write_config(ctx *c, char *path, size_t size, const char *name,
                         const char *lookup, const char *handler)
{
    char body[8192];
    tk_config cfg;
    tk_pipeline *pl = &cfg.pipelines[0];

    snprintf(path, size, "%s/%s.yaml", c->dir, name);
    TK_CHECK((size_t)snprintf(body, sizeof body, "%s%s", lookup, handler) <
                 sizeof body,
             "lookup and handler too long");
    tk_config_init(&cfg, c->bootstraps, c->conninfo);
    cfg.kafka[0] = (tk_prop){"session.timeout.ms", "6000"};
    pl->name = name;
    pl->topics[0] = TOPIC;
    pl->id_from = "key";
    pl->id_type = "bigint";
    pl->max_messages = 10;
    pl->max_wait_ms = 50;
    pl->pipeline_yaml = body;
    tk_config_write(path, &cfg);
}

/* Runs `exactly CMD -c cfg [extra]`; exit status and output. */
static int exactly(ctx *c, const char *cmd, const char *cfg,
                   const char *extra1, const char *extra2, char **out)
{
    const char *args[] = {cmd, "-c", cfg, extra1, extra2, NULL};
    char log[512];
    int status, timeout = strcmp(cmd, "worker") == 0 ? WORKER_TIMEOUT_MS
                                                    : CMD_TIMEOUT_MS;

    snprintf(log, sizeof log, "%s/%s-%02d.log", c->dir, cmd, ++c->n);
    status = tk_exactlyv(log, timeout, args);
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

/* Runs `exactly check -c cfg` on a pseudo-terminal (stdout and stderr
 * both), as an operator at a terminal runs it; its exit status, and what
 * the terminal showed in *out ("\r\n" turned into "\n"). */
static int check_on_tty(const char *cfg, char **out)
{
    char *argv[] = {(char *)ledger_exactly_bin(), "check", "-c", (char *)cfg,
                    NULL};
    size_t len = 0, cap = 65536, i, j;
    char *buf = malloc(cap);
    time_t deadline = time(NULL) + CMD_TIMEOUT_MS / 1000;
    int fd, status = -1;
    pid_t pid;

    TK_CHECK(buf != NULL, "out of memory");
    pid = forkpty(&fd, NULL, NULL, NULL);
    TK_CHECK(pid >= 0, "forkpty: %s", strerror(errno));
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    for (;;) {
        ssize_t n;
        if (len + 4096 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            TK_CHECK(buf != NULL, "out of memory");
        }
        n = read(fd, buf + len, cap - len - 1);
        if (n > 0) {
            len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        break; /* EIO: the child closed the terminal */
    }
    close(fd);
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (time(NULL) > deadline) {
            kill(pid, SIGKILL);
            (void)waitpid(pid, &status, 0);
            tk_fail("exactly check on a terminal did not finish");
        }
        tk_sleep_ms(50);
    }
    for (i = j = 0; i < len; i++)
        if (buf[i] != '\r')
            buf[j++] = buf[i];
    buf[j] = '\0';
    *out = buf;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The column where the detail of check's line l for item starts (after
 * the status, the item and the blanks that pad it), or -1. */
static int detail_column(const char *l, const char *item)
{
    const char *w = strstr(l, item), *d;

    if (!w)
        return -1;
    d = w + strlen(item);
    while (*d == ' ')
        d++;
    return (int)(d - l);
}

static void scenario_report(ctx *c)
{
    static const char *const items[] = {
        "config", "postgres", "framework schema",
        "lookup [a_pipeline_with_a_rather_long_name]",
        "handler open [a_pipeline_with_a_rather_long_name]",
        "kafka topic " TOPIC};
    char cfg[512], plugin[1024], handler[1200];
    const char *l, *first = NULL, *last = NULL;
    int st, col = -1;
    size_t i;
    char *out;

    tk_sql(c->db,
           "CREATE OR REPLACE FUNCTION noisy_lookup(ids text[])"
           " RETURNS TABLE (id bigint, a text) LANGUAGE plpgsql AS $f$"
           " BEGIN RAISE NOTICE 'noisy lookup runs';"
           " RETURN QUERY SELECT s.id, s.a FROM src6 s"
           " WHERE s.id::text = ANY(ids); END $f$");
    snprintf(plugin, sizeof plugin, "%s/ledger.so",
             tk_env_required("EXACTLY_PLUGIN_DIR"));
    snprintf(handler, sizeof handler, "    handler:\n      plugin: '%s'\n",
             plugin);
    write_config(c, cfg, sizeof cfg, "a_pipeline_with_a_rather_long_name",
                 "    lookup: {sql: 'SELECT * FROM noisy_lookup($1::text[])',"
                 " key_column: id}\n",
                 handler);
    st = check_on_tty(cfg, &out);
    tk_note("check on a terminal:\n%s", out);
    TK_CHECK(strstr(out, "noisy lookup runs") != NULL,
             "the lookup's notice was not logged, so this proves nothing:\n%s",
             out);
    /* The report is one block: nothing else between its first and last
     * line. */
    for (l = out; *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : l + strlen(l))
        if (strncmp(l, "OK    ", 6) == 0 || strncmp(l, "FAIL  ", 6) == 0) {
            if (!first)
                first = l;
            last = l;
        }
    TK_CHECK(first != NULL, "check printed no OK/FAIL line:\n%s", out);
    for (l = first; l < last; l = strchr(l, '\n') + 1)
        TK_CHECK(strncmp(l, "OK    ", 6) == 0 || strncmp(l, "FAIL  ", 6) == 0,
                 "a line that is not check's report lies inside it: "
                 "\"%.*s\":\n%s",
                 (int)strcspn(l, "\n"), l, out);
    for (i = 0; i < sizeof items / sizeof items[0]; i++) {
        const char *line = line_of(out, "OK", items[i]);
        int at;
        TK_CHECK(line != NULL, "no OK line for %s:\n%s", items[i], out);
        at = detail_column(line, items[i]);
        TK_CHECK(col < 0 || at == col,
                 "the detail of %s starts in column %d, the one of %s in "
                 "column %d:\n%s",
                 items[i], at, items[0], col, out);
        col = at;
    }
    TK_CHECK(st == 0, "check exited %d:\n%s", st, out);
    free(out);
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
    if (wanted("report"))
        scenario_report(&c);

    PQfinish(c.db);
    tk_mock_stop(m);
    ledger_cleanup_dir(c.dir);
    return 0;
}
