/*
 * `exactly check` on the relays of a file (lib/ops/check.c): what a relay
 * needs before it starts, checked without changing anything.
 *
 *   good        a file with an idempotent relay and a transactional one,
 *               each on its own outbox, both topics created: every relay
 *               item is OK (outbox columns, privileges, producer
 *               configuration with the transactional.id, topic and
 *               position_topic), exit 0; a consumer property in the
 *               transactional relay's own kafka section is shown as
 *               librdkafka's warning, the top-level auto.offset.reset
 *               (the pipelines') is not passed to the producer. --relay txn checks
 *               that relay alone.
 *   shared      an idempotent relay and a transactional one on the same
 *               outbox: a FAIL line naming both, exit 2 (the one that
 *               takes the outbox over would not read the other's
 *               position).
 *   table       a relay whose table does not exist: a FAIL line naming
 *               the table and the file's line, exit 2.
 *   column      a table of the user's without `created`, and one whose
 *               `key` is text: FAIL naming the missing column and its
 *               type, and the wrong type, exit 2.
 *   event_id    a table of the user's whose event_id may be NULL: FAIL
 *               naming the table and the column (a row without one goes
 *               out with an empty event-id header, which a consumer's
 *               dedup does not apply: at least once, silently), exit 2;
 *               one whose event_id is NOT NULL without a default (every
 *               insert writes its own) passes.
 *   privilege   a role with every relay grant but UPDATE on the outbox:
 *               a FAIL line naming UPDATE, the table and the GRANT, exit
 *               1.
 *   printed     `exactly migrate --print-grants ROLE` on the good file
 *               prints the relays' grants; a role given just those
 *               passes check (exit 0).
 *   topic       a relay whose topic does not exist: a FAIL line naming it
 *               with "not found", exit 1; check asked for no topic by
 *               name, so the mock cluster (which creates any topic a
 *               client names) still has no such topic: a second check
 *               fails the same way.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "check-relay"
#define POSITIONS "check-relay-positions"
#define CMD_TIMEOUT_MS 30000

/* The relays of "good": good, then txn. */
#define GOOD_RELAYS                                                           \
    "    topic: " TOPIC "\n"                                                  \
    "  txn:\n    topic: " TOPIC "\n    mode: transactional\n"                 \
    "    schema: public\n    table: txn_outbox\n"                             \
    "    position_topic: " POSITIONS "\n"                                     \
    "    kafka: {session.timeout.ms: 6000}\n"

typedef struct ctx {
    char dir[256];
    char conninfo[1024];
    const char *bootstraps;
    PGconn *db;
    int n;
} ctx;

/* Writes a file of one relay (body: its keys, indented 4) as conninfo;
 * several relays: body holds the others too, with their names. */
static void write_config(ctx *c, char *path, size_t size, const char *name,
                         const char *conninfo, const char *body)
{
    snprintf(path, size, "%s/%s.yaml", c->dir, name);
    tk_write_file(path,
                  "kafka:\n  bootstrap.servers: \"%s\"\n"
                  "  auto.offset.reset: earliest\n"
                  "postgres:\n  conninfo: \"%s\"\n"
                  "relays:\n  %s:\n%s",
                  c->bootstraps, conninfo, name, body);
}

static int check_args(ctx *c, const char *cfg, const char *relay,
                      char **out)
{
    const char *args[] = {"check", "-c", cfg, relay ? "--relay" : NULL,
                          relay, NULL};
    char log[512];

    snprintf(log, sizeof log, "%s/check-%02d.log", c->dir, ++c->n);
    return tk_exactly_output(log, CMD_TIMEOUT_MS, args, out);
}

static int check(ctx *c, const char *cfg, char **out)
{
    return check_args(c, cfg, NULL, out);
}

/* The line of out that starts with status and has a and b, or NULL. */
static const char *line_with(const char *out, const char *status,
                             const char *a, const char *b)
{
    const char *l = out;

    while (l && *l) {
        const char *end = strchr(l, '\n');
        size_t len = end ? (size_t)(end - l) : strlen(l);
        char *line = strndup(l, len);
        int hit = line && strncmp(line, status, strlen(status)) == 0 &&
                  strstr(line, a) && (!b || strstr(line, b));
        free(line);
        if (hit)
            return l;
        l = end ? end + 1 : NULL;
    }
    return NULL;
}

#define EXPECT_LINE(out, status, a, b)                                        \
    TK_CHECK(line_with((out), (status), (a), (b)) != NULL,                    \
             "no %s line with \"%s\" and \"%s\":\n%s", (status), (a),         \
             (b) ? (b) : "", (out))

static void scenario_good(ctx *c)
{
    char cfg[512], *out;
    int st;

    write_config(c, cfg, sizeof cfg, "good", c->conninfo, GOOD_RELAYS);
    tk_sql(c->db, "CREATE TABLE public.txn_outbox (LIKE exactly.outbox"
                  " INCLUDING ALL)");
    st = check(c, cfg, &out);
    tk_note("check (good relays):\n%s", out);
    EXPECT_LINE(out, "OK", "config", "2 relay(s)");
    EXPECT_LINE(out, "OK", "outbox [relay good]", "has the relay's 11 columns");
    EXPECT_LINE(out, "OK", "privileges [relay good]", "holds the");
    EXPECT_LINE(out, "OK", "kafka config [relay good]", "idempotent");
    EXPECT_LINE(out, "OK", "kafka topic " TOPIC " [relay good]",
                "1 partitions");
    EXPECT_LINE(out, "OK", "kafka config [relay txn]",
                "transactional.id exactly-relay-txn");
    EXPECT_LINE(out, "OK", "kafka topic " POSITIONS " [relay txn]",
                "1 partitions");
    /* A consumer property written for the relay is shown; the top-level
     * auto.offset.reset, the pipelines', is not passed to the producer. */
    EXPECT_LINE(out, "OK", "kafka config [relay txn]",
                "librdkafka warns: Configuration property session.timeout.ms "
                "is a consumer property");
    TK_CHECK(!strstr(out, "auto.offset.reset"),
             "librdkafka warned about the top-level auto.offset.reset:\n%s",
             out);
    TK_CHECK(!strstr(out, "FAIL"), "a FAIL line:\n%s", out);
    TK_CHECK(st == 0, "check exited %d:\n%s", st, out);
    free(out);

    st = check_args(c, cfg, "txn", &out);
    tk_note("check --relay txn:\n%s", out);
    EXPECT_LINE(out, "OK", "outbox [relay txn]", "11 columns");
    TK_CHECK(!strstr(out, "[relay good]"), "--relay txn checked good:\n%s",
             out);
    TK_CHECK(st == 0, "check --relay txn exited %d:\n%s", st, out);
    free(out);
}

static void scenario_shared(ctx *c)
{
    char cfg[512], *out;
    int st;

    write_config(c, cfg, sizeof cfg, "idem", c->conninfo,
                 "    topic: " TOPIC "\n"
                 "  txn:\n    topic: " TOPIC "\n    mode: transactional\n"
                 "    position_topic: " POSITIONS "\n");
    st = check(c, cfg, &out);
    tk_note("check (a transactional relay's outbox shared):\n%s", out);
    EXPECT_LINE(out, "FAIL", "relay [txn]",
                "relays.txn and relays.idem (line 7) publish the same outbox");
    TK_CHECK(st == 2, "check exited %d, expected 2:\n%s", st, out);
    free(out);
}

static void scenario_table(ctx *c)
{
    char cfg[512], *out;
    int st;

    write_config(c, cfg, sizeof cfg, "notable", c->conninfo,
                 "    topic: " TOPIC "\n    table: nosuch_outbox\n");
    st = check(c, cfg, &out);
    tk_note("check (no outbox table):\n%s", out);
    EXPECT_LINE(out, "FAIL", "outbox [relay notable]",
                "\"exactly\".\"nosuch_outbox\" does not exist");
    EXPECT_LINE(out, "FAIL", "outbox [relay notable]", "notable.yaml:7: relays.notable");
    TK_CHECK(st == 2, "check exited %d, expected 2:\n%s", st, out);
    free(out);
}

static void scenario_column(ctx *c)
{
    char cfg[512], *out;
    int st;

    tk_sql(c->db, "CREATE TABLE public.no_created (LIKE exactly.outbox"
                  " INCLUDING DEFAULTS); ALTER TABLE public.no_created"
                  " DROP COLUMN created");
    tk_sql(c->db, "CREATE TABLE public.text_key (LIKE exactly.outbox"
                  " INCLUDING DEFAULTS); ALTER TABLE public.text_key"
                  " ALTER COLUMN key TYPE text");
    write_config(c, cfg, sizeof cfg, "nocreated", c->conninfo,
                 "    topic: " TOPIC "\n    schema: public\n"
                 "    table: no_created\n"
                 "  textkey:\n    topic: " TOPIC "\n    schema: public\n"
                 "    table: text_key\n");
    st = check(c, cfg, &out);
    tk_note("check (outbox tables lacking a column, of another type):\n%s",
            out);
    EXPECT_LINE(out, "FAIL", "outbox [relay nocreated]",
                "no column created (xid8)");
    EXPECT_LINE(out, "FAIL", "outbox [relay textkey]",
                "column key is text, the relay needs bytea");
    TK_CHECK(st == 2, "check exited %d, expected 2:\n%s", st, out);
    free(out);
}

static void scenario_event_id(ctx *c)
{
    char cfg[512], *out;
    int st;

    tk_sql(c->db, "CREATE TABLE public.null_eid (LIKE exactly.outbox"
                  " INCLUDING DEFAULTS); ALTER TABLE public.null_eid"
                  " ALTER COLUMN event_id DROP NOT NULL");
    tk_sql(c->db, "CREATE TABLE public.own_eid (LIKE exactly.outbox"
                  " INCLUDING DEFAULTS); ALTER TABLE public.own_eid"
                  " ALTER COLUMN event_id DROP DEFAULT");
    write_config(c, cfg, sizeof cfg, "nulleid", c->conninfo,
                 "    topic: " TOPIC "\n    schema: public\n"
                 "    table: null_eid\n"
                 "  owneid:\n    topic: " TOPIC "\n    schema: public\n"
                 "    table: own_eid\n");
    st = check(c, cfg, &out);
    tk_note("check (event_id nullable; NOT NULL without a default):\n%s",
            out);
    EXPECT_LINE(out, "FAIL", "outbox [relay nulleid]",
                "table \"public\".\"null_eid\": column event_id may be "
                "NULL");
    EXPECT_LINE(out, "OK", "outbox [relay owneid]", "own_eid");
    TK_CHECK(st == 2, "check exited %d, expected 2:\n%s", st, out);
    free(out);
}

static void scenario_privilege(ctx *c)
{
    char cfg[512], role[64], conninfo[1200], *out;
    int st;

    snprintf(role, sizeof role, "check_relay_%d", (int)getpid());
    tk_sql(c->db, "CREATE ROLE %s LOGIN", role);
    tk_sql(c->db, "GRANT USAGE ON SCHEMA exactly TO %s;"
                  " GRANT SELECT ON exactly.schema_version TO %s;"
                  " GRANT SELECT, DELETE ON exactly.outbox TO %s;"
                  " GRANT SELECT, INSERT, UPDATE ON exactly.relay_state TO %s",
           role, role, role, role);
    snprintf(conninfo, sizeof conninfo, "%s user=%s", c->conninfo, role);
    write_config(c, cfg, sizeof cfg, "lacking", conninfo,
                 "    topic: " TOPIC "\n");
    st = check(c, cfg, &out);
    tk_note("check as a role without UPDATE on the outbox:\n%s", out);
    EXPECT_LINE(out, "FAIL", "privileges [relay lacking]",
                "lacks UPDATE on TABLE \"exactly\".\"outbox\"");
    EXPECT_LINE(out, "FAIL", "privileges [relay lacking]",
                "GRANT UPDATE ON TABLE \"exactly\".\"outbox\" TO");
    EXPECT_LINE(out, "OK", "outbox [relay lacking]", "11 columns");
    TK_CHECK(st == 1, "check exited %d, expected 1:\n%s", st, out);
    free(out);
    tk_sql(c->db, "DROP OWNED BY %s; DROP ROLE %s", role, role);
}

/* The grants --print-grants prints for the relays suffice. */
static void scenario_printed(ctx *c)
{
    char cfg[512], role[64], conninfo[1200], log[512], *out;
    const char *args[] = {"migrate", "-c", NULL, "--print-grants", role,
                          NULL};
    int st;

    snprintf(role, sizeof role, "check_relay_printed_%d", (int)getpid());
    tk_sql(c->db, "CREATE ROLE %s LOGIN", role);
    snprintf(conninfo, sizeof conninfo, "%s user=%s", c->conninfo, role);
    write_config(c, cfg, sizeof cfg, "good", conninfo, GOOD_RELAYS);
    args[2] = cfg;
    snprintf(log, sizeof log, "%s/print-grants.log", c->dir);
    st = tk_exactly_output(log, CMD_TIMEOUT_MS, args, &out);
    tk_note("migrate --print-grants %s:\n%s", role, out);
    TK_CHECK(st == 0, "migrate --print-grants exited %d:\n%s", st, out);
    TK_CHECK(strstr(out, "GRANT SELECT, UPDATE, DELETE ON TABLE "
                         "\"public\".\"txn_outbox\"") &&
                 strstr(out, "GRANT SELECT, INSERT, UPDATE ON TABLE "
                             "\"exactly\".\"relay_state\""),
             "--print-grants does not print the relays' grants:\n%s", out);
    tk_sql(c->db, "%s", out);
    free(out);
    st = check(c, cfg, &out);
    tk_note("check as a role with the printed grants:\n%s", out);
    EXPECT_LINE(out, "OK", "privileges [relay txn]", "holds the");
    TK_CHECK(st == 0 && !strstr(out, "FAIL"),
             "check as a role with the printed grants exited %d:\n%s", st,
             out);
    free(out);
    tk_sql(c->db, "DROP OWNED BY %s; DROP ROLE %s", role, role);
}

static void scenario_topic(ctx *c)
{
    char cfg[512], *out;
    int st, i;

    write_config(c, cfg, sizeof cfg, "notopic", c->conninfo,
                 "    topic: check-relay-nosuch\n");
    for (i = 0; i < 2; i++) {
        st = check(c, cfg, &out);
        tk_note("check (no such topic), run %d:\n%s", i + 1, out);
        EXPECT_LINE(out, "FAIL", "kafka topic check-relay-nosuch [relay notopic]",
                    "not found");
        EXPECT_LINE(out, "FAIL", "[relay notopic]", "relays.notopic.topic");
        TK_CHECK(st == 1, "check exited %d, expected 1:\n%s", st, out);
        free(out);
    }
}

int main(void)
{
    ctx c;
    tk_mock *mock;
    char cfg[512], mlog[512];
    int64_t t0 = tk_now_ms();

    memset(&c, 0, sizeof c);
    tk_tmpdir("check-relay", c.dir, sizeof c.dir);
    tk_pg_create_db("check_relay", c.conninfo, sizeof c.conninfo);
    mock = tk_mock_start(1);
    tk_mock_create_topic(mock, TOPIC, 1);
    tk_mock_create_topic(mock, POSITIONS, 1);
    c.bootstraps = tk_mock_bootstraps(mock);
    write_config(&c, cfg, sizeof cfg, "migrate", c.conninfo,
                 "    topic: " TOPIC "\n");
    snprintf(mlog, sizeof mlog, "%s/migrate.log", c.dir);
    ledger_migrate(cfg, mlog);
    c.db = tk_pg_connect(c.conninfo);

    scenario_good(&c);
    scenario_shared(&c);
    scenario_table(&c);
    scenario_column(&c);
    scenario_event_id(&c);
    scenario_privilege(&c);
    scenario_printed(&c);
    scenario_topic(&c);

    tk_note("all scenarios in %lld ms", (long long)(tk_now_ms() - t0));
    PQfinish(c.db);
    tk_mock_stop(mock);
    tk_pg_drop_db(c.conninfo);
    return 0;
}
