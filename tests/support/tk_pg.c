/*
 * tk_pg.c: the test cluster, databases and SQL helpers.
 * The contract of each function is in the header.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "testkit.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* PostgreSQL                                                          */
/* ------------------------------------------------------------------ */

const char *tk_pg_admin_conninfo(void)
{
    static char *cached;
    const char *dir;
    char path[4096];
    char *text;
    size_t len;

    if (cached != NULL)
        return cached;
    if (getenv("EXACTLY_TEST_PG_CONNINFO") != NULL &&
        getenv("EXACTLY_TEST_PG_CONNINFO")[0] != '\0') {
        cached = strdup(getenv("EXACTLY_TEST_PG_CONNINFO"));
        if (cached == NULL)
            tk_fail("out of memory");
        return cached;
    }
    dir = getenv("EXACTLY_TEST_PG_DIR");
    if (dir == NULL || dir[0] == '\0')
        tk_fail("neither EXACTLY_TEST_PG_DIR nor EXACTLY_TEST_PG_CONNINFO is "
                "set: run through ctest (fixture `pg`) or start a cluster "
                "with scripts/pg.sh start DIR and export "
                "EXACTLY_TEST_PG_DIR=DIR");
    if ((size_t)snprintf(path, sizeof path, "%s/conninfo", dir) >= sizeof path)
        tk_fail("EXACTLY_TEST_PG_DIR is too long");
    text = tk_read_file(path);
    if (text == NULL)
        tk_fail("cannot read %s (%s): did the pg_start fixture run?", path,
                strerror(errno));
    len = strlen(text);
    while (len > 0 && isspace((unsigned char)text[len - 1]))
        text[--len] = '\0';
    if (len == 0)
        tk_fail("%s is empty", path);
    cached = text;
    return cached;
}

/* Append `keyword='value'` (value quoted as libpq wants) to buf. */
static void tk_conninfo_append(char *buf, size_t size, size_t *pos,
                               const char *keyword, const char *value)
{
    size_t need = strlen(keyword) + 4 + 2 * strlen(value) + 1;
    const char *p;

    if (*pos + need >= size)
        tk_fail("conninfo buffer of %zu bytes is too small", size);
    *pos += (size_t)sprintf(buf + *pos, "%s%s='", *pos ? " " : "", keyword);
    for (p = value; *p; p++) {
        if (*p == '\'' || *p == '\\')
            buf[(*pos)++] = '\\';
        buf[(*pos)++] = *p;
    }
    buf[(*pos)++] = '\'';
    buf[*pos] = '\0';
}

/* Write `base` with dbname replaced by `dbname` into out. */
static void tk_conninfo_with_db(const char *base, const char *dbname,
                                char *out, size_t out_size)
{
    PQconninfoOption *opts, *o;
    char *err = NULL;
    size_t pos = 0;

    opts = PQconninfoParse(base, &err);
    if (opts == NULL)
        tk_fail("cannot parse conninfo \"%s\": %s", base,
                err ? err : "out of memory");
    if (out_size > 0)
        out[0] = '\0';
    for (o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL || strcmp(o->keyword, "dbname") == 0)
            continue;
        tk_conninfo_append(out, out_size, &pos, o->keyword, o->val);
    }
    tk_conninfo_append(out, out_size, &pos, "dbname", dbname);
    PQconninfoFree(opts);
}

char *tk_pg_create_db(const char *name_prefix, char *conninfo_out,
                      size_t conninfo_size)
{
    static unsigned counter;
    char name[64];
    char prefix[41];
    size_t i;
    PGconn *admin;
    char *ident;

    for (i = 0; name_prefix && name_prefix[i] && i < sizeof prefix - 1; i++) {
        unsigned char c = (unsigned char)tolower((unsigned char)name_prefix[i]);
        prefix[i] = (isalnum(c) || c == '_') ? (char)c : '_';
    }
    prefix[i] = '\0';
    snprintf(name, sizeof name, "%s_%ld_%u", i ? prefix : "tk",
             (long)getpid(), ++counter);

    admin = tk_pg_connect(tk_pg_admin_conninfo());
    ident = PQescapeIdentifier(admin, name, strlen(name));
    if (ident == NULL)
        tk_fail("cannot quote database name %s: %s", name,
                PQerrorMessage(admin));
    tk_sql(admin, "CREATE DATABASE %s", ident);
    PQfreemem(ident);
    PQfinish(admin);

    tk_conninfo_with_db(tk_pg_admin_conninfo(), name, conninfo_out,
                        conninfo_size);
    return conninfo_out;
}

void tk_pg_drop_db(const char *conninfo)
{
    PQconninfoOption *opts, *o;
    char *err = NULL;
    char *ident = NULL;
    PGconn *admin;

    opts = PQconninfoParse(conninfo, &err);
    if (opts == NULL)
        tk_fail("cannot parse conninfo \"%s\": %s", conninfo,
                err ? err : "out of memory");
    admin = tk_pg_connect(tk_pg_admin_conninfo());
    for (o = opts; o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "dbname") == 0 && o->val != NULL)
            ident = PQescapeIdentifier(admin, o->val, strlen(o->val));
    }
    PQconninfoFree(opts);
    if (ident == NULL)
        tk_fail("conninfo \"%s\" names no database", conninfo);
    tk_sql(admin, "DROP DATABASE IF EXISTS %s WITH (FORCE)", ident);
    PQfreemem(ident);
    PQfinish(admin);
}

PGconn *tk_pg_connect_at(const char *file, int line, const char *conninfo)
{
    PGconn *conn = PQconnectdb(conninfo);

    if (conn == NULL)
        tk_fail_at(file, line, "PQconnectdb: out of memory");
    if (PQstatus(conn) != CONNECTION_OK)
        tk_fail_at(file, line, "cannot connect to \"%s\": %s", conninfo,
                   PQerrorMessage(conn));
    return conn;
}

/* Run sql; on failure name the caller, the error and the statement. */
static PGresult *tk_exec_checked(const char *file, int line, PGconn *conn,
                                 const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK &&
        st != PGRES_EMPTY_QUERY)
        tk_fail_at(file, line, "SQL failed: %s  statement: %.600s",
                   res ? PQresultErrorMessage(res) : PQerrorMessage(conn),
                   sql);
    return res;
}

void tk_sql_at(const char *file, int line, PGconn *conn, const char *fmt, ...)
{
    va_list ap;
    char *sql;

    va_start(ap, fmt);
    sql = tk_vformat(fmt, ap);
    va_end(ap);
    PQclear(tk_exec_checked(file, line, conn, sql));
    free(sql);
}

/* Run a query that must yield one row and one column. */
static PGresult *tk_exec_one(const char *file, int line, PGconn *conn,
                             const char *fmt, va_list ap) TK_PRINTF(4, 0);
static PGresult *tk_exec_one(const char *file, int line, PGconn *conn,
                             const char *fmt, va_list ap)
{
    char *sql = tk_vformat(fmt, ap);
    PGresult *res = tk_exec_checked(file, line, conn, sql);

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
        PQnfields(res) != 1)
        tk_fail_at(file, line,
                   "expected one row of one column, got %d row(s) of %d "
                   "column(s)  statement: %.600s",
                   PQntuples(res), PQnfields(res), sql);
    free(sql);
    return res;
}

/* The integer the query fmt (with ap) returns; see tk_sql_int64. */
static int64_t sql_vint64(const char *file, int line, PGconn *conn,
                          const char *fmt, va_list ap) TK_PRINTF(4, 0);
static int64_t sql_vint64(const char *file, int line, PGconn *conn,
                          const char *fmt, va_list ap)
{
    PGresult *res = tk_exec_one(file, line, conn, fmt, ap);
    const char *text;
    char *end;
    long long v;

    if (PQgetisnull(res, 0, 0))
        tk_fail_at(file, line, "query returned NULL, expected an integer");
    text = PQgetvalue(res, 0, 0);
    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0')
        tk_fail_at(file, line, "query returned \"%s\", expected an integer",
                   text);
    PQclear(res);
    return (int64_t)v;
}

int64_t tk_sql_int64_at(const char *file, int line, PGconn *conn,
                        const char *fmt, ...)
{
    va_list ap;
    int64_t v;

    va_start(ap, fmt);
    v = sql_vint64(file, line, conn, fmt, ap);
    va_end(ap);
    return v;
}

int64_t tk_sql_wait_int64_at(const char *file, int line, PGconn *conn,
                             int64_t want, int timeout_ms, const char *fmt,
                             ...)
{
    int64_t t0 = tk_now_ms(), v;
    va_list ap;

    for (;;) {
        va_start(ap, fmt);
        v = sql_vint64(file, line, conn, fmt, ap);
        va_end(ap);
        if (v == want || tk_now_ms() - t0 >= timeout_ms)
            return v;
        tk_sleep_ms(20);
    }
}

char *tk_sql_text_at(const char *file, int line, PGconn *conn,
                     const char *fmt, ...)
{
    va_list ap;
    PGresult *res;
    char *out = NULL;

    va_start(ap, fmt);
    res = tk_exec_one(file, line, conn, fmt, ap);
    va_end(ap);
    if (!PQgetisnull(res, 0, 0)) {
        out = strdup(PQgetvalue(res, 0, 0));
        if (out == NULL)
            tk_fail("out of memory");
    }
    PQclear(res);
    return out;
}

int64_t tk_pg_xacts_settled(const char *conninfo)
{
    PGconn *db = tk_pg_connect(conninfo);
    int64_t deadline = tk_now_ms() + 30000;
    int64_t n;

    while (tk_sql_int64(db, "SELECT count(*) FROM pg_stat_activity WHERE "
                            "datname = current_database() AND pid <> "
                            "pg_backend_pid()") > 0) {
        TK_CHECK(tk_now_ms() < deadline,
                 "other backends still exist in the database after 30 s");
        tk_sleep_ms(20);
    }
    /* A new transaction: the statistics snapshot is taken afresh. */
    PQfinish(db);
    db = tk_pg_connect(conninfo);
    n = tk_sql_int64(db, "SELECT xact_commit + xact_rollback FROM "
                         "pg_stat_database WHERE datname = "
                         "current_database()");
    PQfinish(db);
    return n;
}

void tk_pg_wait_backend_gone(PGconn *db, int64_t bpid)
{
    int64_t deadline = tk_now_ms() + 30000;

    while (tk_sql_int64(db, "SELECT count(*) FROM pg_stat_activity WHERE "
                            "pid = %" PRId64, bpid) > 0) {
        TK_CHECK(tk_now_ms() < deadline,
                 "backend %" PRId64 " still exists 30 s after its "
                 "termination", bpid);
        tk_sleep_ms(2);
    }
}

int tk_pg_terminate_in_commit(PGconn *db, pid_t worker_pid,
                              const char *wait_event, int64_t deadline_ms)
{
    while (tk_now_ms() < deadline_ms) {
        /* OFFSET 0 keeps the filter inside: the planner may not run
         * pg_terminate_backend() on a row before the filter picked it. */
        char *bpid = tk_sql_text(
            db,
            "SELECT max(pid) FROM (SELECT pid FROM pg_stat_activity WHERE "
            "datname = current_database() AND application_name LIKE "
            "'%%:' || %d || ':%%' AND state = 'active' AND query = 'COMMIT' "
            "AND wait_event = '%s' OFFSET 0) s WHERE "
            "pg_terminate_backend(pid)",
            (int)worker_pid, wait_event);

        if (bpid) {
            tk_pg_wait_backend_gone(db, strtoll(bpid, NULL, 10));
            free(bpid);
            return 1;
        }
        tk_sleep_ms(1);
    }
    return 0;
}

void tk_pg_set_sync_standby(PGconn *db, const char *names)
{
    if (names != NULL)
        tk_sql(db, "ALTER SYSTEM SET synchronous_standby_names = '%s'", names);
    else
        tk_sql(db, "ALTER SYSTEM RESET synchronous_standby_names");
    tk_sql(db, "SELECT pg_reload_conf()");
}

void tk_pg_slow_commit(PGconn *db, const char *table)
{
    tk_sql(db,
           "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql "
           "AS $$ BEGIN IF current_setting('exactly_test.slept', true) IS "
           "DISTINCT FROM 'yes' THEN PERFORM set_config("
           "'exactly_test.slept', 'yes', true); PERFORM pg_sleep(0.2); "
           "END IF; RETURN NULL; END $$;"
           "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON %s "
           "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION "
           "slow_commit()", table);
}

int64_t tk_pg_commit_waiting_xid(PGconn *conn, const char *app,
                                 const char *wait_event, int timeout_ms)
{
    int64_t until = tk_now_ms() + timeout_ms;
    char *xid;

    for (;; tk_sleep_ms(5)) {
        xid = tk_sql_text(conn, "SELECT max(backend_xid::text) FROM"
                                " pg_stat_activity WHERE datname ="
                                " current_database() AND application_name ="
                                " '%s' AND state = 'active' AND query ="
                                " 'COMMIT' AND wait_event = '%s'",
                          app, wait_event);
        if (xid) {
            int64_t v = strtoll(xid, NULL, 10);
            free(xid);
            return v;
        }
        TK_CHECK(tk_now_ms() < until, "the COMMIT of %s was not seen waiting "
                 "(%s) within %d ms", app, wait_event, timeout_ms);
    }
}
