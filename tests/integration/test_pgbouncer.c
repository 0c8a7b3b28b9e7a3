/*
 * The worker behind PgBouncer (scripts/pgbouncer.sh starts one in front of
 * the fixture's PostgreSQL, on a socket of its own, and stops it).
 *
 *   session      pool_mode = session: migrate and a worker run through it;
 *                2,000 messages over 4 partitions pass the exactly-once
 *                check (one ledger row per offset, counters exact, stored
 *                offsets at the partition ends). PgBouncer refuses startup
 *                options, so exactly SETs its timeouts once connected.
 *   transaction  pool_mode = transaction: the worker refuses to start
 *                (exit 2) with a line naming the reason (the session's
 *                timeouts would not stay with it) and PgBouncer's
 *                pool_mode; it claims no partition and writes nothing.
 *                `exactly migrate` refuses the same way (its session
 *                advisory lock would stay on a pooled backend).
 *   operators    through that transaction pool, the commands that write
 *                refuse too, exit 2 with the same line, and touch
 *                nothing: `offsets reset` (its transaction's lock and
 *                statement bounds are the session's, set on connect),
 *                `dlq replay` and `dlq discard` (the same, and the
 *                handler's open() runs outside the transaction),
 *                `reprocess` (as the worker) and `check` (it reports what
 *                the worker will do, and its read-only default is a
 *                session setting). The read-only `offsets` and `dlq
 *                list` still work: each of their statements stands alone.
 *   relay        `exactly relay` through that transaction pool refuses
 *                the same way (exit 2, the same line): its one relay per
 *                outbox is a session advisory lock, which such a pool
 *                would leave on a pooled backend. Nothing reaches its
 *                topic, the outbox rows stay pending and no relay_state
 *                row is written.
 *   nothing left the transaction pool has one server connection, so every
 *                refused command above ran its statements on the one
 *                backend that a plain client of the pool then gets:
 *                there, in several transactions, statement_timeout,
 *                lock_timeout, idle_in_transaction_session_timeout,
 *                client_connection_check_interval and the session
 *                check's probe (exactly.session_check) read as in a
 *                session of the server's own. A refused exactly must
 *                leave no setting of its own to other clients of the
 *                pool (their reports would run under its
 *                statement_timeout). Then the read-only commands, which
 *                do set them (they run where a pooler is fine), run.
 *
 * Skipped (77) when pgbouncer is not installed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "relay_kit.h"
#include "testkit.h"

#define PARTITIONS 4
#define N_MSGS 2000
#define N_ENTITIES 300
#define SEED 7
#define RELAY_TOPIC "pgb-outbox"
#define N_OUTBOX 5

static char g_session_dir[512], g_txn_dir[512];

/* `exactly ARGS` through the transaction pool: exit 2 with the worker's
 * refusal line. */
static void refused(const char *dir, const char *tag, const char *const *args)
{
    char log[600], *text = NULL;
    int status;

    snprintf(log, sizeof log, "%s/%s-transaction.log", dir, tag);
    status = tk_exactly_output(log, 60000, args, &text);
    tk_note("%s through a transaction pool:\n%s", tag, text);
    TK_CHECK(status == 2, "exactly %s through a transaction pool exited %d, "
             "expected 2 (refused)", tag, status);
    TK_CHECK(strstr(text, "refusing to run through this connection") &&
                 strstr(text, "not a PostgreSQL session of its own") &&
                 strstr(text, "pool_mode = transaction"),
             "the refusal of %s does not say why", tag);
    free(text);
}

/* Every setting exactly makes on its sessions, and the session check's
 * probe, as one line. */
#define SETTINGS_SQL                                                          \
    "SELECT current_setting('statement_timeout') || ' '"                      \
    " || current_setting('lock_timeout') || ' '"                              \
    " || current_setting('idle_in_transaction_session_timeout') || ' '"       \
    " || current_setting('client_connection_check_interval') || ' '"          \
    " || coalesce(current_setting('exactly.session_check', true), '')"

/* A plain client of the transaction pool via_txn finds, in a few
 * transactions, the settings a session of the server's own has (direct):
 * none of exactly's stayed on the pool's backend. */
static void no_settings_left(const char *via_txn, PGconn *direct)
{
    char *want = tk_sql_text(direct, SETTINGS_SQL);
    PGconn *pooled = tk_pg_connect(via_txn);
    int i;

    for (i = 0; i < 3; i++) {
        char *got = tk_sql_text(pooled, SETTINGS_SQL);

        TK_CHECK(got && want && strcmp(got, want) == 0,
                 "a client of the transaction pool finds '%s' in its "
                 "session, a session of the server's own '%s': a refused "
                 "exactly left its settings on the pooled backend",
                 got ? got : "", want ? want : "");
        free(got);
    }
    PQfinish(pooled);
    free(want);
}

/* `exactly ARGS` through the transaction pool: exit 0. */
static void works(const char *dir, const char *tag, const char *const *args)
{
    char log[600], *text = NULL;
    int status;

    snprintf(log, sizeof log, "%s/%s-transaction.log", dir, tag);
    status = tk_exactly_output(log, 60000, args, &text);
    TK_CHECK(status == 0, "exactly %s through a transaction pool exited %d, "
             "expected 0:\n%s", tag, status, text);
    free(text);
}

static void stop_bouncers(void)
{
    char cmd[2048];
    char *dirs[2] = {g_session_dir, g_txn_dir};
    int i;

    for (i = 0; i < 2; i++) {
        if (!dirs[i][0])
            continue;
        snprintf(cmd, sizeof cmd, "bash '%s/scripts/pgbouncer.sh' stop '%s'",
                 tk_env_required("EXACTLY_SOURCE_DIR"), dirs[i]);
        if (system(cmd) != 0)
            tk_note("stopping pgbouncer in %s failed", dirs[i]);
        dirs[i][0] = '\0';
    }
}

/* Starts PgBouncer in mode, with at most pool_size server connections, in
 * front of the fixture's server; its conninfo for database db into out. */
static void start_bouncer(char *dir, const char *mode, int pool_size,
                          const char *db, char *out, size_t out_size)
{
    char cmd[4096], path[600], *ci;
    int st;
    size_t n;

    snprintf(cmd, sizeof cmd,
             "bash '%s/scripts/pgbouncer.sh' start '%s' '%s' %s %d",
             tk_env_required("EXACTLY_SOURCE_DIR"), dir,
             tk_pg_admin_conninfo(), mode, pool_size);
    st = system(cmd);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
        tk_skip("pgbouncer is not installed (scripts/deps.sh installs it)");
    TK_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
             "pgbouncer.sh start %s failed (%d)", mode, st);
    snprintf(path, sizeof path, "%s/conninfo", dir);
    ci = tk_read_file(path);
    TK_CHECK(ci != NULL, "no %s", path);
    n = strcspn(ci, "\n");
    ci[n] = '\0';
    snprintf(out, out_size, "%s dbname=%s", ci, db);
    free(ci);
}

/* The value of dbname= in a conninfo from tk_pg_create_db. */
static void db_name(const char *conninfo, char *out, size_t size)
{
    const char *p = strstr(conninfo, "dbname=");

    TK_CHECK(p != NULL, "no dbname in %s", conninfo);
    p += 7;
    snprintf(out, size, "%.*s", (int)strcspn(p, " "), p);
}

int main(void)
{
    static int64_t per_entity[N_ENTITIES];
    ledger_fixture f;
    ledger_config c;
    char db[128], via_session[1024], via_txn[1024];
    char relay_yaml[600];
    int64_t hw;
    PGconn *conn;
    int status;

    ledger_fixture_start(&f, "pgbouncer", "pgb", PARTITIONS);
    snprintf(g_session_dir, sizeof g_session_dir, "%s/pgb-session", f.dir);
    snprintf(g_txn_dir, sizeof g_txn_dir, "%s/pgb-transaction", f.dir);
    atexit(stop_bouncers);
    db_name(f.conninfo, db, sizeof db);
    start_bouncer(g_session_dir, "session", 20, db, via_session,
                  sizeof via_session);
    /* One server connection: whatever a refused command leaves in its
     * session, the next client of the pool gets (nothing left). */
    start_bouncer(g_txn_dir, "transaction", 1, db, via_txn, sizeof via_txn);
    tk_note("session pool: %s; transaction pool: %s", via_session, via_txn);

    tk_produce_ids(f.mock->bootstraps, f.topic, N_MSGS, N_ENTITIES, PARTITIONS,
                   SEED, per_entity);

    /* transaction: refused at start, nothing written. */
    memset(&c, 0, sizeof c);
    c.bootstraps = f.mock->bootstraps;
    c.conninfo = f.conninfo;
    c.topic = f.topic;
    c.max_messages = 200;
    c.max_wait_ms = 50;
    ledger_write_config(f.config, &c);
    ledger_migrate(f.config, f.log); /* directly: the schema exists */
    c.conninfo = via_txn;
    ledger_write_config(f.config, &c);
    {
        const char *const migrate[] = {"migrate", "-c", f.config, NULL};
        const char *const worker[] = {"worker", "-c", f.config,
                                      "--exit-idle", "2000", NULL};
        refused(f.dir, "migrate", migrate);
        refused(f.dir, "worker", worker);
    }
    conn = tk_pg_connect(f.conninfo);
    TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM exactly.offsets"),
                      0, "offset rows claimed through the transaction pool");
    TK_CHECK_EQ_INT64(ledger_rows(conn), 0, "ledger rows");

    /* operators: the writing ones refused and nothing touched. */
    tk_sql(conn, "INSERT INTO exactly.dead_letters (pipeline, topic,"
                 " partition, \"offset\", entity_id, reason)"
                 " VALUES ('" LEDGER_PIPELINE "', '%s', 0, 0, '1', 'planted')",
           f.topic);
    {
        const char *reset[] = {"offsets", "reset", "-c", f.config,
                               "--pipeline", LEDGER_PIPELINE, "--topic",
                               f.topic, "--to-offset", "0", "--force", NULL};
        const char *replay[] = {"dlq", "replay", "-c", f.config, "--all",
                                NULL};
        const char *discard[] = {"dlq", "discard", "-c", f.config, "--all",
                                 NULL};
        const char *reprocess[] = {"reprocess", "-c", f.config, "--pipeline",
                                   LEDGER_PIPELINE, "--topic", f.topic,
                                   "--partition", "0", "--from", "0", "--to",
                                   "9", "-q", NULL};
        const char *check[] = {"check", "-c", f.config, NULL};

        refused(f.dir, "offsets-reset", reset);
        refused(f.dir, "dlq-replay", replay);
        refused(f.dir, "dlq-discard", discard);
        refused(f.dir, "reprocess", reprocess);
        refused(f.dir, "check", check);
    }
    TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM exactly.offsets"),
                      0, "offset rows written by refused commands");
    TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM"
                                         " exactly.offset_resets"),
                      0, "audit rows of a refused reset");
    TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM"
                                         " exactly.dead_letters WHERE"
                                         " attempts = 1"),
                      1, "the planted dead letter, untouched");
    TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM"
                                         " exactly.reprocess_runs"),
                      0, "reprocess runs recorded");
    TK_CHECK_EQ_INT64(ledger_rows(conn), 0, "ledger rows");
    tk_sql(conn, "DELETE FROM exactly.dead_letters");

    /* relay: refused, nothing published or marked. */
    tk_mock_create_topic(f.mock, RELAY_TOPIC, 1);
    relay_insert_rows(conn, N_OUTBOX);
    snprintf(relay_yaml, sizeof relay_yaml, "%s/relay-transaction.yaml",
             f.dir);
    ledger_write_config(relay_yaml, &c);
    relay_config_append(relay_yaml, &(relay_config){.name = "pgb",
                                                    .topic = RELAY_TOPIC});
    {
        const char *relay[] = {"relay", "-c", relay_yaml, "--exit-idle",
                               "1000", NULL};

        refused(f.dir, "relay", relay);
    }
    ledger_high_watermarks(f.mock->bootstraps, RELAY_TOPIC, 1, &hw);
    TK_CHECK_EQ_INT64(hw, 0, "records the refused relay produced");
    TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM exactly.outbox"
                                         " WHERE published_at IS NULL AND"
                                         " dead_reason IS NULL"),
                      N_OUTBOX, "outbox rows still pending");
    TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM"
                                         " exactly.relay_state"),
                      0, "relay_state rows of a refused relay");
    tk_sql(conn, "DELETE FROM exactly.outbox");

    /* nothing left, then the read-only commands through the pool. */
    no_settings_left(via_txn, conn);
    {
        const char *offsets[] = {"offsets", "-c", f.config, NULL};
        const char *list[] = {"dlq", "list", "-c", f.config, NULL};

        works(f.dir, "offsets", offsets);
        works(f.dir, "dlq-list", list);
    }

    /* session: migrate (idempotent) and the whole topic through it. */
    c.conninfo = via_session;
    ledger_write_config(f.config, &c);
    ledger_migrate(f.config, f.log);
    status = ledger_run_to_idle(f.config, 3000, 120000, f.log);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker through a session pool "
                     "exited %d", status);
    ledger_check_exactly_once(conn, f.mock->bootstraps, f.topic, PARTITIONS,
                              N_MSGS, per_entity, N_ENTITIES);
    PQfinish(conn);

    TK_CHECK(!tk_file_contains(f.log, "unsupported startup parameter"),
             "PgBouncer refused a startup parameter");

    stop_bouncers(); /* before their handles go with the directory */
    ledger_fixture_stop(&f);
    return 0;
}
