/*
 * store_migrate_run.c - applying the framework schema's steps
 * (store_migrate.c) under one advisory lock per schema, and the version a
 * schema is at.
 *
 * Steps of transactional DDL run in one transaction, each recorded in
 * schema_version in it; a step that builds an index concurrently commits
 * the steps before, then runs outside any transaction, so that the
 * workers writing the table go on while it builds, and is recorded on its
 * own. An interrupted migration leaves the schema at the last step
 * committed, and the next one goes on from there. An index on a table the
 * open transaction created (a new install) is built in that transaction
 * without CONCURRENTLY: no one else can see the table, so the build waits
 * for nothing.
 */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "pg_conn.h"
#include "store_exec.h"
#include "store_steps.h"

/* How often a migration waiting for another one's lock asks again. */
#define MIGRATE_LOCK_POLL_MS 100
/* After how long a waiting migration first says which session holds the
 * lock, and how often again. */
#define MIGRATE_LOCK_FIRST_LOG_MS 2000
#define MIGRATE_LOCK_LOG_MS 10000

exactly_err exactly_store_version(PGconn *conn, const char *schema,
                                  int *version, char *errbuf,
                                  size_t errbuf_size)
{
    const char *params[1] = {schema};
    PGresult *res = NULL;
    exactly_err rc;

    *version = 0;
    /* to_regclass avoids an error (and a log line) when nothing exists. */
    rc = exactly_pg_exec(conn,
                         "SELECT to_regclass(quote_ident($1) || '.schema_version')"
                         " IS NOT NULL",
                         1, params, &res, errbuf, errbuf_size);
    if (rc != EXACTLY_OK)
        return rc;
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        PQclear(res);
        return EXACTLY_OK;
    }
    PQclear(res);
    {
        char *q = exactly_pg_ident(conn, schema);
        char *sql = q ? store_format_schema(
                            "SELECT coalesce(max(version), 0) FROM %1$s.schema_version", q)
                      : NULL;
        PQfreemem(q);
        if (!sql)
            return EXACTLY_ENOMEM;
        rc = exactly_pg_exec(conn, sql, 0, NULL, &res, errbuf, errbuf_size);
        free(sql);
    }
    if (rc != EXACTLY_OK)
        return rc;
    *version = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return EXACTLY_OK;
}

/* Runs fmt, the quoted schema q as its %1$s, with params; a server
 * error's SQLSTATE into sqlstate (6 bytes) unless it is NULL. */
static exactly_err exec_q(PGconn *conn, const char *q, const char *fmt,
                          int n_params, const char *const *params,
                          PGresult **res, char *sqlstate, char *errbuf,
                          size_t errbuf_size)
{
    char *sql = store_format_schema(fmt, q);
    exactly_err rc;

    if (!sql) {
        snprintf(errbuf, errbuf_size, "out of memory");
        return EXACTLY_ENOMEM;
    }
    rc = exactly_pg_exec_state(conn, sql, n_params, params, res, sqlstate,
                               errbuf, errbuf_size);
    free(sql);
    return rc;
}

/* What to change when a step failed with sqlstate: the setting whose
 * timeout fired, by SQLSTATE (55P03 lock_not_available: a lock or a
 * transaction waited for longer than lock_timeout; 57014
 * query_canceled: statement_timeout, or a cancel request); "" for any
 * other error. */
static const char *step_hint(const char *sqlstate)
{
    if (strcmp(sqlstate, "55P03") == 0)
        return "; a transaction of another session (a worker's batch, a "
               "long transaction) held what the step waited for longer "
               "than postgres.lock_timeout_ms: run migrate again, or with "
               "a longer postgres.lock_timeout_ms";
    if (strcmp(sqlstate, "57014") == 0)
        return "; the statement was canceled (postgres.statement_timeout_ms "
               "or a cancel request): a big table, or a build behind a "
               "long transaction, may need a longer "
               "postgres.statement_timeout_ms";
    return "";
}

/* Records step i (version i + 1) in q's schema_version, in the current
 * transaction or, outside one, on its own. */
static exactly_err record_step(PGconn *conn, const char *q, size_t i,
                               char *errbuf, size_t errbuf_size)
{
    char vbuf[24];
    const char *vparams[1] = {vbuf};

    snprintf(vbuf, sizeof(vbuf), "%zu", i + 1);
    return exec_q(conn, q,
                  "INSERT INTO %1$s.schema_version (version) VALUES ($1)", 1,
                  vparams, NULL, NULL, errbuf, errbuf_size);
}

/* Logs which session holds schema's migration lock (pg_locks: an
 * advisory lock on a bigint key is classid = its high 32 bits, objid =
 * its low 32, objsubid = 1), so that a wait says whom it waits for. Not
 * reading it is no reason to fail. */
static void log_lock_holder(PGconn *conn, const char *schema,
                            long long waited_ms)
{
    const char *params[1] = {schema};
    PGresult *res = NULL;
    char err[256];

    if (exactly_pg_exec(
            conn,
            "WITH k AS (SELECT hashtext('exactly.migrate.' || $1)::bigint"
            " AS v) SELECT coalesce(string_agg(format('pid %s (%s, %s,"
            " connected at %s)', l.pid, coalesce(nullif(a.application_name, ''), '-'),"
            " a.state,"
            " date_trunc('second', a.backend_start)), ', '), '')"
            " FROM k, pg_locks l LEFT JOIN pg_stat_activity a"
            " ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted"
            " AND l.database = (SELECT oid FROM pg_database"
            " WHERE datname = current_database())"
            " AND l.classid = ((k.v >> 32) & 4294967295)::oid"
            " AND l.objid = (k.v & 4294967295)::oid AND l.objsubid = 1",
            1, params, &res, err, sizeof(err)) != EXACTLY_OK)
        return;
    exactly_log(EXACTLY_LOG_INFO, "migrate",
                "another migration of the schema holds the lock: waiting "
                "for it to end",
                LOG_STR("schema", schema), LOG_INT("waited_ms", waited_ms),
                LOG_STR("holder", PQgetvalue(res, 0, 0)));
    PQclear(res);
}

/* Takes the session's advisory lock of schema's migrations, waiting for
 * another migration that holds it as long as it does (a build on a big
 * table takes long), and saying which session that is after
 * MIGRATE_LOCK_FIRST_LOG_MS, then every MIGRATE_LOCK_LOG_MS. The lock is
 * asked for again every MIGRATE_LOCK_POLL_MS rather than waited for in
 * one statement: a statement waiting that long would hold its snapshot,
 * and the holder's CREATE INDEX CONCURRENTLY waits for every older
 * snapshot to go (a deadlock). */
static exactly_err take_lock(PGconn *conn, const char *schema, char *errbuf,
                             size_t errbuf_size)
{
    const char *params[1] = {schema};
    long long start = exactly_now_ms();
    long long next_log = start + MIGRATE_LOCK_FIRST_LOG_MS;

    for (;;) {
        PGresult *res = NULL;
        long long now;
        int got;
        exactly_err rc = exactly_pg_exec(
            conn,
            "SELECT pg_try_advisory_lock(hashtext('exactly.migrate.' || $1))",
            1, params, &res, errbuf, errbuf_size);
        if (rc != EXACTLY_OK)
            return rc;
        got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        if (got)
            return EXACTLY_OK;
        now = exactly_now_ms();
        if (now >= next_log) {
            log_lock_holder(conn, schema, now - start);
            next_log = now + MIGRATE_LOCK_LOG_MS;
        }
        exactly_sleep_ms(MIGRATE_LOCK_POLL_MS);
    }
}

/* Logs the sessions of conn's database, other than conn's, that hold a
 * snapshot now, oldest first (ten at most): a concurrent build waits for
 * every transaction whose snapshot is older than its own to end, whatever
 * it reads, so a build that waits says for whom. Not reading them is no
 * reason to fail. */
static void log_older_snapshots(PGconn *conn, const char *index)
{
    PGresult *res = NULL;
    char err[256];

    if (exactly_pg_exec(
            conn,
            "SELECT coalesce(max(n), 0), coalesce(string_agg(format("
            "'pid %s (%s, %s, transaction since %s)', pid,"
            " coalesce(nullif(application_name, ''), '-'), state,"
            " date_trunc('second', xact_start)), ', ' ORDER BY xact_start),"
            " '') FROM (SELECT pid, application_name, state, xact_start,"
            " count(*) OVER () AS n FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_xmin IS NOT NULL"
            " ORDER BY xact_start LIMIT 10) s",
            0, NULL, &res, err, sizeof(err)) != EXACTLY_OK)
        return;
    if (strcmp(PQgetvalue(res, 0, 0), "0") != 0)
        exactly_log(EXACTLY_LOG_INFO, "migrate",
                    "the concurrent index build waits for the older "
                    "transactions of these sessions to end",
                    LOG_STR("index", index),
                    LOG_INT("sessions", atoi(PQgetvalue(res, 0, 0))),
                    LOG_STR("oldest_first", PQgetvalue(res, 0, 1)));
    PQclear(res);
}

/* Runs step i's concurrent build with lock_timeout 0, the session's value
 * restored after: the build waits for every older snapshot in the
 * database however long it is kept (a report, a pg_dump), which is no
 * lock of the table's, so only statement_timeout bounds it. */
static exactly_err build_without_lock_timeout(PGconn *conn, const char *q,
                                              size_t i, char *sqlstate,
                                              char *errbuf,
                                              size_t errbuf_size)
{
    PGresult *res = NULL;
    char saved[64], ignore[256];
    const char *params[1] = {saved};
    exactly_err rc;

    rc = exactly_pg_exec(conn, "SELECT current_setting('lock_timeout')", 0,
                         NULL, &res, errbuf, errbuf_size);
    if (rc != EXACTLY_OK)
        return rc;
    snprintf(saved, sizeof(saved), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    rc = exactly_pg_exec(conn, "SET lock_timeout = 0", 0, NULL, NULL, errbuf,
                         errbuf_size);
    if (rc != EXACTLY_OK)
        return rc;
    rc = exec_q(conn, q, store_step_sql(i), 0, NULL, NULL, sqlstate, errbuf,
                errbuf_size);
    if (rc == EXACTLY_OK)
        return exactly_pg_exec(conn,
                               "SELECT set_config('lock_timeout', $1, false)",
                               1, params, NULL, errbuf, errbuf_size);
    (void)exactly_pg_exec(conn,
                          "SELECT set_config('lock_timeout', $1, false)", 1,
                          params, NULL, ignore, sizeof(ignore));
    return rc;
}

/* Step i, which builds index `index` concurrently, outside any
 * transaction: an invalid index of that name (a concurrent build that was
 * interrupted: it is never used, but IF NOT EXISTS would keep it) is
 * dropped first; then the build, then its record. */
static exactly_err build_index(PGconn *conn, const char *schema,
                               const char *q, size_t i, const char *index,
                               char *errbuf, size_t errbuf_size)
{
    const char *params[2] = {schema, index};
    char inner[1024], sqlstate[6] = "";
    PGresult *res = NULL;
    exactly_err rc;
    int invalid;

    rc = exactly_pg_exec(conn,
                         "SELECT count(*) FROM pg_index x"
                         " JOIN pg_class c ON c.oid = x.indexrelid"
                         " JOIN pg_namespace n ON n.oid = c.relnamespace"
                         " WHERE n.nspname = $1 AND c.relname = $2"
                         " AND NOT x.indisvalid",
                         2, params, &res, inner, sizeof(inner));
    if (rc != EXACTLY_OK)
        goto fail;
    invalid = strcmp(PQgetvalue(res, 0, 0), "0") != 0;
    PQclear(res);
    if (invalid) {
        char *ident = exactly_pg_ident(conn, index);
        size_t n = ident ? strlen(q) + strlen(ident) + 64 : 0;
        char *sql = ident ? malloc(n) : NULL;

        if (sql)
            snprintf(sql, n, "DROP INDEX CONCURRENTLY IF EXISTS %s.%s", q,
                     ident);
        PQfreemem(ident);
        if (!sql) {
            snprintf(inner, sizeof(inner), "out of memory");
            rc = EXACTLY_ENOMEM;
            goto fail;
        }
        rc = exactly_pg_exec_state(conn, sql, 0, NULL, NULL, sqlstate, inner,
                                   sizeof(inner));
        free(sql);
        if (rc != EXACTLY_OK)
            goto fail;
    }
    log_older_snapshots(conn, index);
    rc = build_without_lock_timeout(conn, q, i, sqlstate, inner,
                                    sizeof(inner));
    if (rc == EXACTLY_OK)
        rc = record_step(conn, q, i, inner, sizeof(inner));
    if (rc == EXACTLY_OK)
        return EXACTLY_OK;
fail:
    snprintf(errbuf, errbuf_size,
             "step %zu, building index %s concurrently: %s (the next "
             "migrate builds it again%s)",
             i + 1, index, inner, step_hint(sqlstate));
    return rc;
}

/* Step i in the open transaction, recorded there. A step that builds an
 * index concurrently runs here only when the transaction created its
 * table: then as the same CREATE INDEX without CONCURRENTLY. */
static exactly_err step_in_txn(PGconn *conn, const char *q, size_t i,
                               char *errbuf, size_t errbuf_size)
{
    static const char concurrently[] = "CREATE INDEX CONCURRENTLY ";
    const char *sql = store_step_sql(i);
    char *plain = NULL, inner[1024], sqlstate[6] = "";
    exactly_err rc;

    if (store_step_index(i)) {
        size_t n = strlen(sql) + 1;

        if (strncmp(sql, concurrently, strlen(concurrently)) != 0) {
            snprintf(errbuf, errbuf_size, "step %zu does not start with %s",
                     i + 1, concurrently);
            return EXACTLY_EINVAL;
        }
        plain = malloc(n);
        if (!plain) {
            snprintf(errbuf, errbuf_size, "out of memory");
            return EXACTLY_ENOMEM;
        }
        snprintf(plain, n, "CREATE INDEX %s", sql + strlen(concurrently));
        sql = plain;
    }
    rc = exec_q(conn, q, sql, 0, NULL, NULL, sqlstate, inner,
                sizeof(inner));
    free(plain);
    if (rc == EXACTLY_OK)
        rc = record_step(conn, q, i, inner, sizeof(inner));
    if (rc != EXACTLY_OK)
        snprintf(errbuf, errbuf_size, "step %zu: %s (rolled back, with "
                 "the steps before it in its transaction%s)",
                 i + 1, inner, step_hint(sqlstate));
    return rc;
}

/* BEGIN (begin 1) or COMMIT (begin 0); *in_txn says whether a
 * transaction is open afterwards (a COMMIT that failed ended it too). */
static exactly_err txn(PGconn *conn, int begin, int *in_txn, char *errbuf,
                       size_t errbuf_size)
{
    exactly_err rc = exactly_pg_exec(conn, begin ? "BEGIN" : "COMMIT", 0,
                                     NULL, NULL, errbuf, errbuf_size);
    *in_txn = begin && rc == EXACTLY_OK;
    return rc;
}

exactly_err exactly_store_migrate(PGconn *conn, const char *schema,
                                  int *from_version, int *to_version,
                                  char *errbuf, size_t errbuf_size)
{
    char *q = exactly_pg_ident(conn, schema);
    const char *lock_params[1] = {schema};
    exactly_err rc = EXACTLY_ENOMEM;
    size_t n = store_steps_count(), i;
    int version = 0, in_txn = 0, locked = 0;
    int done = 0;      /* steps applied, committed or in the transaction */
    int committed = -1; /* steps committed; -1: not read yet */

    *from_version = 0;
    *to_version = -1;
    if (!q)
        goto cleanup;
    rc = exactly_pg_exec(conn, "SET client_min_messages = warning", 0, NULL,
                         NULL, errbuf, errbuf_size);
    if (rc != EXACTLY_OK)
        goto cleanup;
    /* Concurrent migrations of one schema queue up here. */
    rc = take_lock(conn, schema, errbuf, errbuf_size);
    if (rc != EXACTLY_OK)
        goto cleanup;
    locked = 1;
    rc = txn(conn, 1, &in_txn, errbuf, errbuf_size);
    if (rc == EXACTLY_OK)
        rc = exec_q(conn, q,
                    "CREATE SCHEMA IF NOT EXISTS %1$s;"
                    "CREATE TABLE IF NOT EXISTS %1$s.schema_version ("
                    " version integer PRIMARY KEY,"
                    " applied_at timestamptz NOT NULL DEFAULT now())",
                    0, NULL, NULL, NULL, errbuf, errbuf_size);
    if (rc == EXACTLY_OK)
        rc = exactly_store_version(conn, schema, &version, errbuf,
                                   errbuf_size);
    if (rc != EXACTLY_OK)
        goto cleanup;
    *from_version = done = committed = version;
    if (version > (int)n) {
        snprintf(errbuf, errbuf_size,
                 "schema %s is at version %d, newer than this exactly "
                 "(version %d): upgrade exactly",
                 schema, version, (int)n);
        rc = EXACTLY_EDATABASE;
        goto cleanup;
    }
    for (i = (size_t)version; i < n; i++) {
        const char *index = store_step_index(i);

        /* On a table the open transaction created, the build goes in
         * that transaction (step_in_txn). */
        if (index && store_step_index_table(i) <= (size_t)committed) {
            /* The steps before land first and their locks go: the build
             * runs outside any transaction. */
            rc = txn(conn, 0, &in_txn, errbuf, errbuf_size);
            if (rc != EXACTLY_OK)
                goto cleanup;
            committed = done;
            rc = build_index(conn, schema, q, i, index, errbuf, errbuf_size);
            if (rc != EXACTLY_OK)
                goto cleanup;
            committed = done = (int)(i + 1);
            rc = txn(conn, 1, &in_txn, errbuf, errbuf_size);
        } else {
            rc = step_in_txn(conn, q, i, errbuf, errbuf_size);
            if (rc == EXACTLY_OK)
                done = (int)(i + 1);
        }
        if (rc != EXACTLY_OK)
            goto cleanup;
    }
    rc = txn(conn, 0, &in_txn, errbuf, errbuf_size);
    if (rc == EXACTLY_OK)
        committed = done;

cleanup:
    if (in_txn) {
        char ignore[256];
        (void)exactly_pg_exec(conn, "ROLLBACK", 0, NULL, NULL, ignore,
                              sizeof(ignore));
    }
    if (locked) {
        char ignore[256];
        (void)exactly_pg_exec(
            conn,
            "SELECT pg_advisory_unlock(hashtext('exactly.migrate.' || $1))",
            1, lock_params, NULL, ignore, sizeof(ignore));
    }
    *to_version = committed;
    PQfreemem(q);
    return rc;
}
