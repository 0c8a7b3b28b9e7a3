/*
 * Least privilege (docs/PRIVILEGES.md): an admin role runs `exactly
 * migrate` and owns the framework schema; the worker role owns nothing
 * and holds exactly the documented grants.
 *
 *   1. roles admin, worker and lacking (LOGIN, nothing else; admin may
 *      CREATE in the database); the application's tables (accounts,
 *      account_view, the ledger's) belong to the superuser;
 *   2. `exactly migrate` as admin; the framework tables are admin's;
 *   3. the documented grants (GRANTS below, the statements of
 *      docs/PRIVILEGES.md) to worker and lacking;
 *   4. `exactly check` as worker: every item OK; `exactly run` as worker
 *      with two pipelines, the ledger plugin and the built-in upsert
 *      (fused), applies every message: one ledger row per offset, one
 *      account_view row per named account; worker owns no relation and
 *      no schema;
 *   5. `exactly check` as lacking, once without UPDATE on exactly.offsets
 *      and once without SELECT on accounts: a FAIL line naming the
 *      privilege and the object, exit code 1;
 *   6. `exactly migrate --print-grants ROLE` prints these statements (the
 *      plugin's own tables as a note), without connecting; applied to a
 *      fresh role (plus the plugin's grants) they pass check;
 *   7. docs/PRIVILEGES.md carries every statement;
 *   8. a pipeline with dedup (retention 1s) and the built-in upsert with
 *      emit_topic, run as a role holding exactly what --print-grants
 *      prints for it: check passes, and the worker expires the keys past
 *      the retention (exactly_dedup_keys_expired_total counts them)
 *      without "cannot expire dedup keys", and writes one outbox event per
 *      row it inserted, with no dead letter; without DELETE on dedup_keys
 *      check prints a FAIL line naming both; without INSERT on the
 *      target the worker's open is refused with advice naming the
 *      privilege and --print-grants, not a unique index (without the
 *      unique index, a column or the table, with advice about that alone);
 *      --print-grants (each statement once) and docs/PRIVILEGES.md give
 *      the grants the expiry and the emit need.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "privileges"
#define NP 2
#define N_MSGS 200
#define N_ENTITIES 50
#define CMD_TIMEOUT_MS 60000
#define RUN_TIMEOUT_MS 120000
#define EXPIRY_TIMEOUT_MS 10000

/* The dedup_keys grant of a pipeline with dedup: INSERT ... ON CONFLICT DO
 * NOTHING RETURNING stores the keys; the expiry deletes them under a
 * locking read (FOR UPDATE SKIP LOCKED), which needs UPDATE. */
#define DEDUP_GRANT                                                       \
    "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE \"exactly\".\"dedup_keys\" " \
    "TO %1$s;"

/* The upsert's emit_topic inserts into emit_outbox (exactly.outbox), whose
 * id is a bigserial. */
static const char *const EMIT_GRANTS[] = {
    "GRANT INSERT ON TABLE \"exactly\".\"outbox\" TO %1$s;",
    "GRANT USAGE ON SEQUENCE \"exactly\".\"outbox_id_seq\" TO %1$s;",
};
#define N_EMIT_GRANTS (sizeof EMIT_GRANTS / sizeof EMIT_GRANTS[0])
#define EMITTED "priv-emitted"

/* The worker's grants, as docs/PRIVILEGES.md and --print-grants give them
 * (%1$s: the quoted role). Framework first, then the two pipelines. */
static const char *const GRANTS[] = {
    "GRANT USAGE ON SCHEMA \"exactly\" TO %1$s;",
    "GRANT SELECT ON TABLE \"exactly\".\"schema_version\" TO %1$s;",
    "GRANT SELECT, INSERT, UPDATE ON TABLE \"exactly\".\"offsets\" TO %1$s;",
    "GRANT SELECT, INSERT, UPDATE ON TABLE \"exactly\".\"dead_letters\" TO "
    "%1$s;",
    "GRANT USAGE ON SEQUENCE \"exactly\".\"dead_letters_id_seq\" TO %1$s;",
    "GRANT EXECUTE ON FUNCTION \"exactly\".\"advance\"(text, text, integer, "
    "bigint, bigint, bigint) TO %1$s;",
    "GRANT EXECUTE ON FUNCTION \"exactly\".\"advance_group\"(text, text[], "
    "integer[], bigint[], bigint[], bigint[]) TO %1$s;",
    "GRANT EXECUTE ON FUNCTION \"exactly\".\"attempt\"(text, text, integer, "
    "bigint, bigint, bigint, integer, integer) TO %1$s;",
    "GRANT SELECT ON TABLE \"accounts\" TO %1$s;",
    "GRANT SELECT, INSERT, UPDATE ON TABLE \"account_view\" TO %1$s;",
};
#define N_GRANTS (sizeof GRANTS / sizeof GRANTS[0])

/* The ledger plugin's own tables: exactly cannot know them; its
 * documentation (and docs/PRIVILEGES.md's example) lists them. */
static const char *const PLUGIN_GRANTS[] = {
    "GRANT INSERT ON TABLE \"ledger\" TO %1$s;",
    "GRANT SELECT, INSERT, UPDATE ON TABLE \"ledger_counters\" TO %1$s;",
};
#define N_PLUGIN_GRANTS (sizeof PLUGIN_GRANTS / sizeof PLUGIN_GRANTS[0])

typedef struct ctx {
    char dir[256];
    char conninfo[1024]; /* superuser */
    const char *bootstraps;
    PGconn *db;
    char admin[64], worker[64], lacking[64], printed[64], dedup[64];
    int n;
    size_t named; /* the accounts the messages name */
} ctx;

static void write_config(ctx *c, const char *path, const char *role)
{
    char conninfo[1200];
    tk_config cfg;
    tk_pipeline *pl = cfg.pipelines;

    snprintf(conninfo, sizeof conninfo, "%s user=%s", c->conninfo, role);
    tk_config_init(&cfg, c->bootstraps, conninfo);
    cfg.kafka[0] = (tk_prop){"session.timeout.ms", "6000"};
    ledger_pipeline(&pl[0], "ledger", TOPIC);
    pl[0].group = "priv-ledger";
    pl[0].max_messages = 20;
    pl[0].max_wait_ms = 50;
    pl[1].name = "projection";
    pl[1].topics[0] = TOPIC;
    pl[1].group = "priv-projection";
    pl[1].id_from = "key";
    pl[1].id_type = "bigint";
    pl[1].lookup_table = "accounts";
    pl[1].on_missing = "skip";
    tk_upsert_handler(&pl[1], "account_view",
                      (const char *[]){"id", "name", "balance", NULL});
    pl[1].max_messages = 20;
    pl[1].max_wait_ms = 50;
    tk_config_write(path, &cfg);
}

/* Runs `exactly ARGS...` (NULL-terminated); status and output. */
static int exactly(ctx *c, char **out, ...)
{
    char *argv[16];
    char log[512];
    va_list ap;
    const char *a;
    int n = 0, status, timeout;
    pid_t pid;

    argv[n++] = (char *)ledger_exactly_bin();
    va_start(ap, out);
    while ((a = va_arg(ap, const char *)) != NULL && n < 15)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    timeout = strcmp(argv[1], "run") == 0 ? RUN_TIMEOUT_MS : CMD_TIMEOUT_MS;
    snprintf(log, sizeof log, "%s/%s-%02d.log", c->dir, argv[1], ++c->n);
    pid = tk_spawn(argv, log);
    status = tk_wait(pid, timeout);
    if (status == -1) {
        tk_terminate(pid, 5000);
        tk_fail("exactly %s did not finish; log %s", argv[1], log);
    }
    *out = tk_read_file(log);
    if (!*out)
        *out = strdup("");
    return status;
}

/* One grant statement for role (quoted), malloc'd. */
static char *grant(const char *fmt, const char *role)
{
    char q[80], *s;

    snprintf(q, sizeof q, "\"%s\"", role);
    TK_CHECK(asprintf(&s, fmt, q) > 0, "out of memory");
    return s;
}

static void apply_grants(ctx *c, const char *const *list, size_t n,
                         const char *role)
{
    size_t i;

    for (i = 0; i < n; i++) {
        char *g = grant(list[i], role);
        tk_sql(c->db, "%s", g);
        free(g);
    }
}

/* The line of check's output starting with FAIL that has all of the
 * needles, or NULL. */
static const char *fail_line(const char *out, const char *a, const char *b)
{
    const char *l = out;

    while (l && *l) {
        const char *end = strchr(l, '\n');
        size_t len = end ? (size_t)(end - l) : strlen(l);
        char *line = strndup(l, len);
        int hit = line && strncmp(line, "FAIL", 4) == 0 && strstr(line, a) &&
                  strstr(line, b);
        free(line);
        if (hit)
            return l;
        l = end ? end + 1 : NULL;
    }
    return NULL;
}

static void check_lacking(ctx *c, const char *cfg, const char *revoke,
                          const char *restore, const char *priv,
                          const char *object)
{
    char *out;
    int st;

    tk_sql(c->db, revoke, c->lacking);
    st = exactly(c, &out, "check", "-c", cfg, NULL);
    tk_note("check as a role without %s on %s:\n%s", priv, object, out);
    TK_CHECK(fail_line(out, priv, object) != NULL,
             "check as a role without %s on %s printed no FAIL line naming "
             "both:\n%s",
             priv, object, out);
    TK_CHECK(st == 1, "check without %s on %s exited %d, expected 1:\n%s",
             priv, object, st, out);
    free(out);
    tk_sql(c->db, restore, c->lacking);
}

/* One pipeline with dedup on the message key and a retention of one
 * second, writing account_emit with emit_topic. */
static void write_dedup_config(ctx *c, const char *path, const char *role)
{
    char conninfo[1200];
    tk_config cfg;
    tk_pipeline *pl = cfg.pipelines;

    snprintf(conninfo, sizeof conninfo, "%s user=%s", c->conninfo, role);
    tk_config_init(&cfg, c->bootstraps, conninfo);
    cfg.kafka[0] = (tk_prop){"session.timeout.ms", "6000"};
    pl[0].name = "dedup";
    pl[0].topics[0] = TOPIC;
    pl[0].group = "priv-dedup";
    pl[0].id_from = "key";
    pl[0].id_type = "bigint";
    pl[0].lookup_table = "accounts";
    pl[0].on_missing = "skip";
    pl[0].dedup_from = "key";
    pl[0].dedup_retention = "1s";
    tk_upsert_handler(&pl[0], "account_emit",
                      (const char *[]){"id", "name", "balance", NULL});
    pl[0].options[1] = (tk_prop){"emit_topic", EMITTED};
    pl[0].max_messages = 20;
    pl[0].max_wait_ms = 50;
    tk_config_write(path, &cfg);
}

/* Runs the dedup pipeline's worker, which must refuse to start (exit 2)
 * for want of state; returns its open failure line (malloc'd). */
static char *open_refused(ctx *c, const char *cfg, const char *state)
{
    char *out, *line;
    int st = exactly(c, &out, "run", "-c", cfg, NULL);

    line = strstr(out, "handler's open() failed");
    line = line ? strndup(line, strcspn(line, "\n")) : NULL;
    TK_CHECK(st == 2 && line, "run %s exited %d (want 2) with no open"
             " failure:\n%s", state, st, out);
    free(out);
    return line;
}

/* 8. The dedup pipeline under the printed grants: its keys expire, its
 * upsert emits. */
static void dedup_expiry(ctx *c)
{
    char cfg[512], log[512], listen[64], *out, *body = NULL, *g;
    int64_t deadline, left;
    double expired = 0;
    int st, port;
    size_t i;
    pid_t pid;

    tk_sql(c->db, "CREATE TABLE account_emit (id bigint PRIMARY KEY, name"
                  " text, balance numeric)");
    snprintf(cfg, sizeof cfg, "%s/dedup.yaml", c->dir);
    snprintf(log, sizeof log, "%s/run-dedup.log", c->dir);
    write_dedup_config(c, cfg, c->dedup);
    st = exactly(c, &out, "migrate", "-c", cfg, "--print-grants", c->dedup,
                 NULL);
    tk_note("migrate --print-grants %s:\n%s", c->dedup, out);
    TK_CHECK(st == 0, "migrate --print-grants exited %d:\n%s", st, out);
    tk_sql(c->db, "%s", out);
    free(out);
    st = exactly(c, &out, "check", "-c", cfg, NULL);
    TK_CHECK(st == 0 && strstr(out, "FAIL") == NULL,
             "check as a role with the printed dedup grants exited %d:\n%s",
             st, out);
    free(out);

    port = tk_free_port();
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    {
        char *argv[] = {(char *)ledger_exactly_bin(), "run", "-c", cfg,
                        "--metrics", listen, NULL};
        pid = tk_spawn(argv, log);
    }
    /* Every message consumed, so every key stored; then each one past the
     * retention goes within a few expiry turns. */
    deadline = tk_now_ms() + RUN_TIMEOUT_MS;
    while (tk_sql_int64(c->db, "SELECT coalesce(sum(next_offset), 0) FROM"
                               " exactly.offsets WHERE pipeline = 'dedup'") !=
           N_MSGS) {
        LEDGER_CHECK_LOG(tk_now_ms() < deadline, log,
                         "the dedup pipeline did not consume %d messages",
                         N_MSGS);
        tk_sleep_ms(100);
    }
    deadline = tk_now_ms() + EXPIRY_TIMEOUT_MS;
    while ((left = tk_sql_int64(c->db, "SELECT count(*) FROM"
                                       " exactly.dedup_keys WHERE pipeline ="
                                       " 'dedup'")) != 0 ||
           expired < 1) {
        LEDGER_CHECK_LOG(tk_now_ms() < deadline, log,
                         "%" PRId64 " dedup keys left and %.0f expired %d s"
                         " after the last message (retention 1s) under the"
                         " printed grants; \"cannot expire dedup keys\" in"
                         " the log: %s",
                         left, expired, EXPIRY_TIMEOUT_MS / 1000,
                         tk_file_contains(log, "cannot expire dedup keys")
                             ? "yes"
                             : "no");
        if (left == 0 && tk_http_get(port, "/metrics", &body) == 200 && body)
            expired = tk_metric_sum(body, "exactly_dedup_keys_expired_total",
                                    NULL);
        free(body);
        body = NULL;
        if (left != 0 || expired < 1)
            tk_sleep_ms(100);
    }
    st = tk_terminate(pid, 30000);
    LEDGER_CHECK_LOG(st == 0, log, "exactly run exited with %d", st);
    LEDGER_CHECK_LOG(!tk_file_contains(log, "cannot expire dedup keys"), log,
                     "the worker could not expire dedup keys under the"
                     " printed grants");
    LEDGER_CHECK_LOG(tk_sql_int64(c->db, "SELECT count(*) FROM"
                                         " exactly.dead_letters WHERE"
                                         " pipeline = 'dedup'") == 0,
                     log, "dead letters of the emitting upsert under the"
                          " printed grants: %" PRId64 " (reason: %s)",
                     tk_sql_int64(c->db, "SELECT count(*) FROM"
                                         " exactly.dead_letters WHERE"
                                         " pipeline = 'dedup'"),
                     tk_sql_text(c->db, "SELECT coalesce(min(reason), '')"
                                        " FROM exactly.dead_letters WHERE"
                                        " pipeline = 'dedup'"));
    TK_CHECK_EQ_INT64(tk_sql_int64(c->db, "SELECT count(*) FROM"
                                          " exactly.outbox WHERE topic = '%s'",
                                   EMITTED),
                      (int64_t)c->named,
                      "outbox events of the emitting upsert (one per row"
                      " inserted)");

    /* check verifies the same grants: without DELETE on dedup_keys, a FAIL
     * line naming both. */
    tk_sql(c->db, "REVOKE DELETE ON exactly.dedup_keys FROM %s", c->dedup);
    st = exactly(c, &out, "check", "-c", cfg, NULL);
    TK_CHECK(fail_line(out, "DELETE", "dedup_keys") != NULL && st == 1,
             "check as a role without DELETE on dedup_keys exited %d with no"
             " FAIL line naming both:\n%s",
             st, out);
    free(out);

    /* Refused at open, the worker says what the SQLSTATE points to: for
     * want of INSERT (42501) the privilege and --print-grants; without a
     * unique index on the key (42P10) that; for a missing column (42703)
     * its name. Never another refusal's advice. */
    tk_sql(c->db, "REVOKE INSERT ON account_emit FROM %s", c->dedup);
    g = open_refused(c, cfg, "without INSERT on account_emit");
    TK_CHECK(strstr(g, "permission denied") && strstr(g, "INSERT") &&
                 strstr(g, "--print-grants") && !strstr(g, "unique index") &&
                 !strstr(g, "assignable"),
             "the open refused for want of INSERT on account_emit does not"
             " name the privilege and --print-grants, or gives the"
             " unique-index advice: %s",
             g);
    free(g);
    tk_sql(c->db, "GRANT INSERT ON account_emit TO %s; ALTER TABLE"
                  " account_emit DROP CONSTRAINT account_emit_pkey", c->dedup);
    g = open_refused(c, cfg, "without a unique index on account_emit's key");
    TK_CHECK(strstr(g, "no unique index") && !strstr(g, "--print-grants"),
             "open refused for want of a unique index: %s", g);
    free(g);
    tk_sql(c->db, "ALTER TABLE account_emit ADD PRIMARY KEY (id);"
                  " ALTER TABLE account_emit RENAME balance TO bal");
    g = open_refused(c, cfg, "with account_emit.balance renamed");
    /* The log escapes the quotes around the name. */
    TK_CHECK(strstr(g, "names a column that does not exist: \\\"balance") &&
                 !strstr(g, "--print-grants") && !strstr(g, "unique index"),
             "open refused for a missing column: %s", g);
    free(g);
    tk_sql(c->db, "ALTER TABLE account_emit RENAME bal TO balance;"
                  " ALTER TABLE account_emit RENAME TO account_emit_gone");
    g = open_refused(c, cfg, "with account_emit renamed (42P01)");
    TK_CHECK(strstr(g, "names a table that does not exist: \\\"account_emit"),
             "open refused for a missing table: %s", g);
    free(g);
    tk_sql(c->db, "ALTER TABLE account_emit_gone RENAME TO account_emit");

    /* What the expiry needs is what --print-grants and the documentation
     * give, each statement once (the outbox's schema is the framework's). */
    st = exactly(c, &out, "migrate", "-c", cfg, "--print-grants",
                 "exactly_worker", NULL);
    g = strstr(out, "GRANT USAGE ON SCHEMA \"exactly\"");
    TK_CHECK(g && !strstr(g + 1, "GRANT USAGE ON SCHEMA \"exactly\""),
             "--print-grants does not print USAGE on schema exactly exactly"
             " once:\n%s",
             out);
    for (i = 0; i <= N_EMIT_GRANTS; i++) {
        g = grant(i < N_EMIT_GRANTS ? EMIT_GRANTS[i] : DEDUP_GRANT,
                  "exactly_worker");
        TK_CHECK(strstr(out, g) != NULL,
                 "--print-grants does not print \"%s\":\n%s", g, out);
        free(g);
    }
    free(out);
    {
        char path[1024];
        char *doc;
        snprintf(path, sizeof path, "%s/docs/PRIVILEGES.md",
                 tk_env_required("EXACTLY_SOURCE_DIR"));
        doc = tk_read_file(path);
        TK_CHECK(doc != NULL, "cannot read %s", path);
        for (i = 0; i <= N_EMIT_GRANTS; i++) {
            TK_CHECK(asprintf(&g, i < N_EMIT_GRANTS ? EMIT_GRANTS[i]
                                                    : DEDUP_GRANT,
                              "exactly_worker") > 0,
                     "out of memory");
            TK_CHECK(strstr(doc, g) != NULL, "%s lacks \"%s\"", path, g);
            free(g);
        }
        free(doc);
    }
}

int main(void)
{
    ctx c;
    tk_mock *m;
    char admin_cfg[512], worker_cfg[512], lacking_cfg[512], printed_cfg[512];
    char *out;
    size_t i, named;
    int st;

    memset(&c, 0, sizeof c);
    m = tk_mock_start(1);
    c.bootstraps = tk_mock_bootstraps(m);
    tk_mock_create_topic(m, TOPIC, NP);
    c.named = named = tk_produce_ids(c.bootstraps, TOPIC, N_MSGS, N_ENTITIES, NP, 5,
                           NULL);

    tk_tmpdir("exactly-privileges", c.dir, sizeof c.dir);
    tk_pg_create_db("privileges", c.conninfo, sizeof c.conninfo);
    ledger_setup_db(c.conninfo);
    c.db = tk_pg_connect(c.conninfo);
    tk_sql(c.db, "CREATE TABLE account_view (id bigint PRIMARY KEY, name"
                 " text, balance numeric)");

    /* 1. Roles: cluster-wide, so named after this process. */
    snprintf(c.admin, sizeof c.admin, "exactly_admin_%d", (int)getpid());
    snprintf(c.worker, sizeof c.worker, "exactly_worker_%d", (int)getpid());
    snprintf(c.lacking, sizeof c.lacking, "exactly_lacking_%d", (int)getpid());
    snprintf(c.printed, sizeof c.printed, "exactly_printed_%d", (int)getpid());
    snprintf(c.dedup, sizeof c.dedup, "exactly_dedup_%d", (int)getpid());
    tk_sql(c.db, "CREATE ROLE %s LOGIN; CREATE ROLE %s LOGIN;"
                 " CREATE ROLE %s LOGIN; CREATE ROLE %s LOGIN;"
                 " CREATE ROLE %s LOGIN",
           c.admin, c.worker, c.lacking, c.printed, c.dedup);
    tk_sql(c.db, "GRANT CREATE ON DATABASE %s TO %s", PQdb(c.db), c.admin);

    snprintf(admin_cfg, sizeof admin_cfg, "%s/admin.yaml", c.dir);
    snprintf(worker_cfg, sizeof worker_cfg, "%s/worker.yaml", c.dir);
    snprintf(lacking_cfg, sizeof lacking_cfg, "%s/lacking.yaml", c.dir);
    snprintf(printed_cfg, sizeof printed_cfg, "%s/printed.yaml", c.dir);
    write_config(&c, admin_cfg, c.admin);
    write_config(&c, worker_cfg, c.worker);
    write_config(&c, lacking_cfg, c.lacking);
    write_config(&c, printed_cfg, c.printed);

    /* 2. migrate as admin. */
    st = exactly(&c, &out, "migrate", "-c", admin_cfg, NULL);
    TK_CHECK(st == 0, "migrate as %s exited %d:\n%s", c.admin, st, out);
    free(out);
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM pg_class WHERE"
                                         " relnamespace = 'exactly'::regnamespace"
                                         " AND relkind = 'r' AND"
                                         " relowner::regrole::text <> '%s'",
                                   c.admin),
                      0, "framework tables not owned by the admin role");

    /* 3. The documented grants. */
    apply_grants(&c, GRANTS, N_GRANTS, c.worker);
    apply_grants(&c, PLUGIN_GRANTS, N_PLUGIN_GRANTS, c.worker);
    apply_grants(&c, GRANTS, N_GRANTS, c.lacking);
    apply_grants(&c, PLUGIN_GRANTS, N_PLUGIN_GRANTS, c.lacking);

    /* 4. The worker role: check passes, the pipelines apply. */
    st = exactly(&c, &out, "check", "-c", worker_cfg, NULL);
    tk_note("check as %s:\n%s", c.worker, out);
    TK_CHECK(st == 0 && strstr(out, "FAIL") == NULL,
             "check as the worker role exited %d:\n%s", st, out);
    free(out);
    st = exactly(&c, &out, "run", "-c", worker_cfg, "--exit-idle", "3000",
                 NULL);
    TK_CHECK(st == 0, "run as the worker role exited %d:\n%s", st, out);
    free(out);
    TK_CHECK_EQ_INT64(ledger_rows(c.db), N_MSGS,
                      "ledger rows written by the worker role");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM account_view"),
                      (int64_t)named,
                      "account_view rows written by the worker role");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT sum(next_offset) FROM"
                                         " exactly.offsets"),
                      2 * N_MSGS, "stored offsets of both pipelines");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM"
                                         " exactly.dead_letters"),
                      0, "dead letters");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT (SELECT count(*) FROM"
                                         " pg_class WHERE relowner ="
                                         " '%s'::regrole) + (SELECT count(*)"
                                         " FROM pg_namespace WHERE nspowner ="
                                         " '%s'::regrole)",
                                   c.worker, c.worker),
                      0, "relations and schemas the worker role owns");

    /* 5. One grant missing: check names it. */
    check_lacking(&c, lacking_cfg,
                  "REVOKE UPDATE ON exactly.offsets FROM %s",
                  "GRANT UPDATE ON exactly.offsets TO %s", "UPDATE",
                  "offsets");
    check_lacking(&c, lacking_cfg, "REVOKE SELECT ON accounts FROM %s",
                  "GRANT SELECT ON accounts TO %s", "SELECT", "accounts");

    /* 6. --print-grants prints them, and they suffice. */
    st = exactly(&c, &out, "migrate", "-c", printed_cfg, "--print-grants",
                 c.printed, NULL);
    tk_note("migrate --print-grants %s:\n%s", c.printed, out);
    TK_CHECK(st == 0, "migrate --print-grants exited %d:\n%s", st, out);
    for (i = 0; i < N_GRANTS; i++) {
        char *g = grant(GRANTS[i], c.printed);
        TK_CHECK(strstr(out, g) != NULL,
                 "--print-grants does not print \"%s\":\n%s", g, out);
        free(g);
    }
    TK_CHECK(strstr(out, "ledger.so") != NULL,
             "--print-grants says nothing about the plugin's own tables:\n%s",
             out);
    tk_sql(c.db, "%s", out);
    free(out);
    apply_grants(&c, PLUGIN_GRANTS, N_PLUGIN_GRANTS, c.printed);
    st = exactly(&c, &out, "check", "-c", printed_cfg, NULL);
    TK_CHECK(st == 0 && strstr(out, "FAIL") == NULL,
             "check as a role with the printed grants exited %d:\n%s", st,
             out);
    free(out);

    /* 7. The documentation says the same. */
    {
        char path[1024];
        char *doc;
        snprintf(path, sizeof path, "%s/docs/PRIVILEGES.md",
                 tk_env_required("EXACTLY_SOURCE_DIR"));
        doc = tk_read_file(path);
        TK_CHECK(doc != NULL, "cannot read %s", path);
        for (i = 0; i < N_GRANTS + N_PLUGIN_GRANTS; i++) {
            const char *fmt = i < N_GRANTS ? GRANTS[i]
                                           : PLUGIN_GRANTS[i - N_GRANTS];
            char *g;
            TK_CHECK(asprintf(&g, fmt, "exactly_worker") > 0, "out of memory");
            TK_CHECK(strstr(doc, g) != NULL, "%s lacks \"%s\"", path, g);
            free(g);
        }
        free(doc);
    }

    /* 8. Dedup keys expire under the printed grants. */
    dedup_expiry(&c);

    tk_sql(c.db, "DROP OWNED BY %s, %s, %s, %s, %s CASCADE", c.worker,
           c.lacking, c.printed, c.dedup, c.admin);
    tk_sql(c.db, "DROP ROLE %s, %s, %s, %s, %s", c.worker, c.lacking,
           c.printed, c.dedup, c.admin);
    PQfinish(c.db);
    tk_mock_stop(m);
    ledger_cleanup_dir(c.dir);
    return 0;
}
