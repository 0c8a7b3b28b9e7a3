/*
 * The projection plugin (plugins/projection.c) end to end: every looked-up
 * column must arrive in the read model exactly as the lookup read it,
 * whatever way the column travels. Columns of bigint, integer, smallint,
 * text, varchar and numeric go as binary arrays, converted from the
 * lookup's text by the plugin: extremes of each integer type, negative,
 * fractional and long numerics, zero, NULLs, quotes, backslashes and
 * non-ASCII text. A numeric filled from a float8 ("1e+20", "NaN") is not
 * in the form the binary encoder reads: that column of that batch goes as
 * a text literal instead, and the server reads it as a cast would. An
 * int[] and a timestamptz column go as text.
 *
 * With on_missing: handler, the view's rows of named IDs the lookup does
 * not find are deleted; those of IDs never named stay.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testkit.h"

#define TOPIC "projection"
#define N_PARTITIONS 2
#define N_ENTITIES 60 /* 1..50 have source rows, 51..60 do not */
#define N_MESSAGES 240
#define WORKER_TIMEOUT_MS 120000

/* The view's columns, compared with the source through the lookup's
 * expressions (f feeds the numeric big). */
#define DIFF                                                                  \
    " WHERE v.id IS NULL OR e.id IS NULL OR (v.n, v.s, v.name, v.v,"          \
    " v.amount, v.big, v.tags, v.at) IS DISTINCT FROM (e.n, e.s, e.name,"     \
    " e.v, e.amount, e.f::numeric, e.tags, e.at)"

int main(void)
{
    char conninfo[1024], dir[256], cfgpath[512], log[512];
    const char *bootstraps;
    int64_t counts[N_ENTITIES];
    int64_t wrong, named_src = 0, named_gone = 0, kept = 0;
    const char *args[] = {"run", "-c", cfgpath, "--exit-idle", "3000", NULL};
    tk_config cfg;
    tk_pipeline *pl = &cfg.pipelines[0];
    PGconn *conn;
    tk_mock *m;
    pid_t pid;
    int status, i;

    m = tk_mock_start(1);
    bootstraps = tk_mock_bootstraps(m);
    tk_mock_create_topic(m, TOPIC, N_PARTITIONS);
    tk_pg_create_db("projection", conninfo, sizeof conninfo);
    conn = tk_pg_connect(conninfo);
    tk_sql(conn,
           "CREATE TABLE src (id bigint PRIMARY KEY, n int, s smallint,"
           " name text, v varchar(20), amount numeric, f float8, tags int[],"
           " at timestamptz);"
           "INSERT INTO src SELECT g, g * 1000 - 25000, g - 25,"
           " 'name \"' || g || E'\" \\\\ \xc3\xa9', 'v' || g,"
           " (g - 25) * 1234.5678 / 7, g / 4.0, ARRAY[g, -g],"
           " '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 h'"
           " FROM generate_series(1, 50) g;"
           "UPDATE src SET n = 2147483647, s = 32767, amount ="
           " 123456789012345678901234567890.000123456789, f = 1e20 WHERE id = 1;"
           "UPDATE src SET n = -2147483648, s = -32768, amount = -0.0001,"
           " f = 'NaN' WHERE id = 2;"
           "UPDATE src SET n = 0, s = 0, amount = 0, name = '', v = '' WHERE id = 3;"
           "UPDATE src SET n = NULL, s = NULL, name = NULL, v = NULL, amount ="
           " NULL, f = NULL, tags = NULL, at = NULL WHERE id = 4;"
           "UPDATE src SET amount = 'NaN' WHERE id = 5;"
           "UPDATE src SET amount = 10000.00000, f = -2.5 WHERE id = 6;"
           "CREATE TABLE view (id bigint PRIMARY KEY, n int, s smallint,"
           " name text, v varchar(20), amount numeric, big numeric,"
           " tags int[], at timestamptz);"
           "INSERT INTO view (id, name) SELECT g, 'stale' FROM"
           " generate_series(45, 60) g");

    tk_tmpdir("exactly-projection", dir, sizeof dir);
    snprintf(cfgpath, sizeof cfgpath, "%s/projection.yaml", dir);
    tk_config_init(&cfg, bootstraps, conninfo);
    pl->name = "projection";
    pl->topics[0] = TOPIC;
    pl->group = "projection";
    pl->id_from = "key";
    pl->id_type = "bigint";
    pl->lookup_sql = "SELECT id, n, s, name, v, amount, f AS big, tags, at"
                     " FROM src WHERE id = ANY($1)";
    pl->lookup_key_column = "id";
    pl->on_missing = "handler";
    pl->plugin = "projection.so";
    pl->options[0] = (tk_prop){"table", "view"};
    pl->max_messages = 20;
    pl->max_wait_ms = 100;
    tk_config_write(cfgpath, &cfg);
    snprintf(log, sizeof log, "%s/migrate.log", dir);
    tk_migrate(cfgpath, log);

    tk_produce_ids(bootstraps, TOPIC, N_MESSAGES, N_ENTITIES, N_PARTITIONS, 7,
                   counts);
    snprintf(log, sizeof log, "%s/run.log", dir);
    pid = tk_exactly_startv(log, args);
    status = tk_worker_wait(pid, WORKER_TIMEOUT_MS, log);
    TK_CHECK(status == 0, "worker exited %d; log %s", status, log);
    TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM "
                                         "exactly.dead_letters"),
                      0, "dead letters");

    tk_sql(conn, "CREATE TABLE named (id bigint)");
    for (i = 0; i < N_ENTITIES; i++) {
        if (counts[i] == 0) {
            kept += i + 1 >= 45;
            continue;
        }
        tk_sql(conn, "INSERT INTO named VALUES (%d)", i + 1);
        named_src += i + 1 <= 50;
        named_gone += i + 1 > 50;
    }
    TK_CHECK(named_src > 40 && named_gone > 5, "too few IDs named");
    /* The expected view: the source's rows of named IDs, and the stale
     * rows of IDs never named. */
    tk_sql(conn, "CREATE TABLE expected AS SELECT * FROM src WHERE id IN"
                 " (SELECT id FROM named) UNION ALL SELECT id, NULL, NULL,"
                 " 'stale', NULL, NULL, NULL, NULL, NULL FROM view WHERE"
                 " id NOT IN (SELECT id FROM named) AND id >= 45");
    wrong = tk_sql_int64(conn, "SELECT count(*) FROM view v FULL JOIN "
                               "expected e ON e.id = v.id" DIFF);
    if (wrong != 0) {
        char *diff = tk_sql_text(
            conn, "SELECT string_agg(format('%%s / %%s', v, e), '; ') FROM "
                  "view v FULL JOIN expected e ON e.id = v.id" DIFF);
        tk_fail("%" PRId64 " row(s) of the view differ: %.3000s", wrong,
                diff ? diff : "");
    }
    TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM view"),
                      named_src + kept, "rows in the view");
    tk_note("projection: %" PRId64 " rows projected, %" PRId64
            " named missing IDs deleted, %" PRId64 " unnamed kept",
            named_src, named_gone, kept);
    PQfinish(conn);
    tk_mock_stop(m);
    tk_rm_rf(dir);
    return 0;
}
