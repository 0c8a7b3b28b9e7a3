/*
 * tk_pg.h: the PostgreSQL test cluster, databases and SQL helpers.
 * Part of testkit (testkit.h includes every part).
 */
#ifndef EXACTLY_TK_PG_H
#define EXACTLY_TK_PG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <libpq-fe.h>

#include "tk_checks.h"

/* ------------------------------------------------------------------ */
/* PostgreSQL                                                          */
/* ------------------------------------------------------------------ */

/* The superuser conninfo of the test cluster: the environment variable
 * EXACTLY_TEST_PG_CONNINFO if set (to run against a server of your own),
 * else the contents of $EXACTLY_TEST_PG_DIR/conninfo written by
 * `scripts/pg.sh start`. Fails the test if neither is available. The string
 * is cached and lives until exit. */
const char *tk_pg_admin_conninfo(void);

/* Create a fresh database named <prefix>_<pid>_<counter> (prefix lower-cased,
 * characters other than [a-z0-9_] replaced by '_', cut to fit) and write
 * its conninfo (the admin conninfo with dbname replaced) into
 * conninfo_out. Fails the test on error or if conninfo_out is too small
 * (1024 bytes is plenty). Returns conninfo_out. */
char *tk_pg_create_db(const char *name_prefix, char *conninfo_out,
                      size_t conninfo_size);

/* Drop the database a conninfo from tk_pg_create_db() names (WITH FORCE, so
 * leftover connections do not block it). Optional: the cluster is thrown
 * away after the run anyway. */
void tk_pg_drop_db(const char *conninfo);

/* Connect, or fail the test naming the caller. The caller PQfinish()es. */
PGconn *tk_pg_connect_at(const char *file, int line, const char *conninfo);
#define tk_pg_connect(conninfo) tk_pg_connect_at(__FILE__, __LINE__, (conninfo))

/* Run a printf-formatted SQL string (one or more statements, simple query
 * protocol) and fail the test, naming the caller and the statement, unless
 * it succeeds. Never format untrusted text into SQL: tests only. */
void tk_sql_at(const char *file, int line, PGconn *conn, const char *fmt, ...)
    TK_PRINTF(4, 5);
#define tk_sql(conn, ...) tk_sql_at(__FILE__, __LINE__, (conn), __VA_ARGS__)

/* Run a query that must return exactly one row of one non-NULL column
 * holding an integer, and return it. Anything else fails the test. */
int64_t tk_sql_int64_at(const char *file, int line, PGconn *conn,
                        const char *fmt, ...) TK_PRINTF(4, 5);
#define tk_sql_int64(conn, ...) \
    tk_sql_int64_at(__FILE__, __LINE__, (conn), __VA_ARGS__)

/* The transaction id of the session of application app on conn's
 * database whose COMMIT waits on wait_event ("SyncRep", "advisory"),
 * polled every 5 ms; fails the test after timeout_ms. */
int64_t tk_pg_commit_waiting_xid(PGconn *conn, const char *app,
                                 const char *wait_event, int timeout_ms);

/* Runs that query (as tk_sql_int64) every 20 ms until it returns want or
 * timeout_ms have passed, and returns the last value it returned: the
 * caller asserts on it, with its own words and log. */
int64_t tk_sql_wait_int64_at(const char *file, int line, PGconn *conn,
                             int64_t want, int timeout_ms, const char *fmt,
                             ...) TK_PRINTF(6, 7);
#define tk_sql_wait_int64(conn, want, timeout_ms, ...)                         \
    tk_sql_wait_int64_at(__FILE__, __LINE__, (conn), (want), (timeout_ms),    \
                         __VA_ARGS__)

/* Run a query that must return exactly one row of one column and return
 * the value as a malloc'd string (NULL for SQL NULL). The caller frees. */
char *tk_sql_text_at(const char *file, int line, PGconn *conn,
                     const char *fmt, ...) TK_PRINTF(4, 5);
#define tk_sql_text(conn, ...) \
    tk_sql_text_at(__FILE__, __LINE__, (conn), __VA_ARGS__)

/* Transactions committed and rolled back in conninfo's database, once no
 * backend but this call's own is connected to it (each backend reports
 * its statistics when it exits; a busy one only about once a second):
 * waits up to 30 s for the others to exit, else fails the test. */
int64_t tk_pg_xacts_settled(const char *conninfo);

/* Wait until backend `bpid` has gone from pg_stat_activity (its
 * termination has completed); fails the test after 30 s. */
void tk_pg_wait_backend_gone(PGconn *db, int64_t bpid);

/* Terminate the backend of worker process `worker_pid` (application_name
 * HOST:PID:INDEX) in db's database while it runs COMMIT (state 'active')
 * waiting on wait_event, trying every millisecond until deadline_ms
 * (tk_now_ms() clock), then wait until it has gone. One statement finds
 * and terminates it, so the condition holds when the signal is sent.
 * Returns 1 on a hit, 0 when none came before the deadline. */
int tk_pg_terminate_in_commit(PGconn *db, pid_t worker_pid,
                              const char *wait_event, int64_t deadline_ms);

/* Create function slow_commit() and a deferred constraint trigger
 * slow_commit on `table` calling it: the COMMIT of a transaction that
 * inserted into table sleeps 0.2 s (wait_event PgSleep), once however many
 * rows it inserted (a transaction-local setting says it slept). The caller
 * ends it with DROP TRIGGER slow_commit ON table. */
void tk_pg_slow_commit(PGconn *db, const char *table);

/* Set synchronous_standby_names to `names` (NULL resets it) and reload the
 * configuration. The reload reaches the server asynchronously: what
 * follows waits for its effect. The setting is server-wide. */
void tk_pg_set_sync_standby(PGconn *db, const char *names);

#endif /* EXACTLY_TK_PG_H */
