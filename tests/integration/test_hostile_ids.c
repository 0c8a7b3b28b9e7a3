/*
 * Hostile IDs through the whole pipeline (DESIGN 3, "the message content is
 * hostile"): malformed IDs of every type and SQL-injection strings, each
 * produced as a message key and consumed by a worker. Each one either goes
 * to exactly.dead_letters with its reason, or, as a text ID, is applied as
 * the literal text it is (the lookup finds the row keyed by exactly those
 * bytes and the ledger records exactly those bytes). Nothing else
 * happens: a canary table and the lookup tables are unchanged, no table
 * appears or disappears, every offset is accounted for once, and the
 * stored offsets reach the partition ends.
 *
 * Text IDs include what could break out of the array literal the runtime
 * binds the batch's IDs as ('a","b', '{x}', 'NULL', a lone '"' or '\'),
 * not only out of SQL quoting. The checks read back with parameters only,
 * never by formatting an ID into SQL.
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

#define WORKER_TIMEOUT_MS 120000
#define MAX_MSGS 64

#define BYTES(s) (s), (sizeof(s) - 1)

typedef struct hostile {
    const char *key;
    size_t key_len;
    const char *reason; /* NULL: applied as the literal text */
} hostile;

#define BAD(k, why) {BYTES(k), (why)}
#define LITERAL(k) {BYTES(k), NULL}

/* SQL that must never run, whatever the quoting. */
#define DROP "1; DROP TABLE canary; --"
#define OR_TRUE "1' OR '1'='1"
#define DELETE "'); DELETE FROM canary; --"
#define UNION "1 UNION SELECT name FROM t --"
#define DQUOTE "\"; DROP TABLE canary; --"

static const hostile bigint_ids[] = {
    BAD("", "empty"),
    BAD(" ", "not a bigint"),
    BAD("abc", "not a bigint"),
    BAD("1a", "not a bigint"),
    BAD("a1", "not a bigint"),
    BAD("1.0", "not a bigint"),
    BAD("1e3", "not a bigint"),
    BAD("0x1F", "not a bigint"),
    BAD("1_000", "not a bigint"),
    BAD("1,000", "not a bigint"),
    BAD("--1", "not a bigint"),
    BAD("+-1", "not a bigint"),
    BAD("-", "not a bigint"),
    BAD("+", "not a bigint"),
    BAD("\t1", "not a bigint"),
    BAD("1\n", "not a bigint"),
    BAD("1\0002", "not a bigint"),
    BAD("\xef\xbc\x91", "not a bigint"), /* a full-width digit one */
    BAD("\xff\xfe\x00\x01", "not a bigint"),
    BAD("9223372036854775808", "out of range"),
    BAD("-9223372036854775809", "out of range"),
    BAD("18446744073709551616", "out of range"),
    BAD("000000000000000000000000000000001", "too long"),
    BAD("007", "not canonical (bigint 7)"),
    BAD("+7", "not canonical (bigint 7)"),
    BAD("-0", "not canonical (bigint 0)"),
    BAD(DROP, "not a bigint"),
    BAD(OR_TRUE, "not a bigint"),
    BAD(DELETE, "not a bigint"),
    BAD(UNION, "not a bigint"),
    BAD("$1", "not a bigint"),
    BAD("{1,2}", "not a bigint"),
    BAD("1) OR (1=1", "not a bigint"),
    BAD("NULL", "not a bigint"),
    LITERAL("7"),
};

static const hostile uuid_ids[] = {
    BAD("", "empty"),
    BAD("not-a-uuid", "not a uuid"),
    BAD("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1", "not a uuid"),
    BAD("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111", "not a uuid"),
    BAD("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g", "not a uuid"),
    BAD("{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}", "not a uuid"),
    BAD("a0eebc99 9c0b 4ef8 bb6d 6bb9bd380a11", "not a uuid"),
    BAD("a0eebc999c0b4ef8bb6d6bb9bd380a1", "not a uuid"),
    BAD("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "not canonical"),
    BAD("a0eebc999c0b4ef8bb6d6bb9bd380a11", "not canonical"),
    BAD("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'; DROP TABLE canary; --",
        "not a uuid"),
    BAD(OR_TRUE, "not a uuid"),
    BAD("$1", "not a uuid"),
    LITERAL("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
};

static const hostile text_ids[] = {
    BAD("", "empty"),
    BAD("\xc3\x28", "UTF-8"),
    BAD("\xed\xa0\x80", "UTF-8"),
    BAD("\xc0\xaf", "UTF-8"),
    BAD("\xf4\x90\x80\x80", "UTF-8"),
    BAD("a\000b", "NUL"),
    BAD("\x80", "UTF-8"),
    BAD("01234567890123456789012345678901234567890123456789x", "too long"),
    LITERAL(DROP),
    LITERAL(OR_TRUE),
    LITERAL(DELETE),
    LITERAL(UNION),
    LITERAL(DQUOTE),
    LITERAL("\\'; DROP TABLE canary; --"),
    LITERAL("$1"),
    LITERAL("${EXACTLY_BIN}"),
    LITERAL("%s%s%n"),
    LITERAL("a\",\"b"),
    LITERAL("{x}"),
    LITERAL("{"),
    LITERAL("NULL"),
    LITERAL("\""),
    LITERAL("\\"),
    LITERAL(" spaced "),
    LITERAL("tab\tand\nnewline"),
    LITERAL("E'\\x41'"),
    LITERAL("\xf0\x9f\x98\x80"),
    LITERAL("plain"),
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

typedef struct pipeline {
    const char *name;
    const char *type;
    const char *lookup;
    int max_length;
    const hostile *ids;
    size_t n_ids;
} pipeline;

static const pipeline pipelines[] = {
    {"hbigint", "bigint", "accounts", 32, bigint_ids, N_OF(bigint_ids)},
    {"huuid", "uuid", "uuid_entities", 64, uuid_ids, N_OF(uuid_ids)},
    {"htext", "text", "text_entities", 32, text_ids, N_OF(text_ids)},
};

#define N_PIPELINES N_OF(pipelines)

/* Runs sql with text parameters; fails the test unless it succeeds. The
 * caller PQclear()s. */
static PGresult *q(PGconn *db, const char *sql, int n, const char *const *p,
                   const int *lens)
{
    int formats[4] = {0, 0, 0, 0};
    PGresult *r = PQexecParams(db, sql, n, NULL, p, lens, formats, 0);
    ExecStatusType st = PQresultStatus(r);

    TK_CHECK(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "%s: %s", sql,
             PQresultErrorMessage(r));
    return r;
}

static void check_pipeline(PGconn *db, const char *bootstraps,
                           const pipeline *pl)
{
    int64_t good = 0, bad = 0;
    size_t i;

    for (i = 0; i < pl->n_ids; i++) {
        const hostile *h = &pl->ids[i];
        char offset[24];
        const char *params[3] = {pl->name, offset, NULL};
        PGresult *r;

        snprintf(offset, sizeof offset, "%zu", i);
        if (h->reason) {
            bad++;
            r = q(db,
                  "SELECT reason, entity_id IS NULL, message_key"
                  " FROM exactly.dead_letters WHERE pipeline = $1"
                  " AND partition = 0 AND \"offset\" = $2::bigint",
                  2, params, NULL);
            TK_CHECK(PQntuples(r) == 1, "[%s] offset %zu: %d dead letters, "
                     "expected 1", pl->name, i, PQntuples(r));
            TK_CHECK(strstr(PQgetvalue(r, 0, 0), h->reason) != NULL,
                     "[%s] offset %zu: reason \"%s\" lacks \"%s\"", pl->name,
                     i, PQgetvalue(r, 0, 0), h->reason);
            TK_CHECK(strcmp(PQgetvalue(r, 0, 1), "t") == 0,
                     "[%s] offset %zu: a refused ID has an entity_id",
                     pl->name, i);
            PQclear(r);
            /* The key is stored as the bytes it was, compared as bytea. */
            {
                const char *kp[3] = {pl->name, offset, h->key};
                int lens[3] = {0, 0, (int)h->key_len};
                int formats[3] = {0, 0, 1};
                r = PQexecParams(db,
                                 "SELECT count(*) FROM exactly.dead_letters"
                                 " WHERE pipeline = $1 AND \"offset\" ="
                                 " $2::bigint AND message_key = $3::bytea",
                                 3, NULL, kp, lens, formats, 0);
                TK_CHECK(PQresultStatus(r) == PGRES_TUPLES_OK, "%s",
                         PQresultErrorMessage(r));
                TK_CHECK(strcmp(PQgetvalue(r, 0, 0), "1") == 0,
                         "[%s] offset %zu: message_key differs from the key",
                         pl->name, i);
                PQclear(r);
            }
        } else {
            good++;
            params[0] = pl->name;
            r = q(db,
                  "SELECT entity_id FROM ledger_hostile WHERE topic = $1"
                  " AND partition = 0 AND \"offset\" = $2::bigint",
                  2, params, NULL);
            TK_CHECK(PQntuples(r) == 1, "[%s] offset %zu: not applied",
                     pl->name, i);
            TK_CHECK(strlen(PQgetvalue(r, 0, 0)) == h->key_len &&
                         memcmp(PQgetvalue(r, 0, 0), h->key, h->key_len) == 0,
                     "[%s] offset %zu: applied as \"%s\", not as the literal "
                     "text", pl->name, i, PQgetvalue(r, 0, 0));
            PQclear(r);
        }
    }
    {
        const char *params[1] = {pl->name};
        PGresult *r = q(db,
                        "SELECT (SELECT count(*) FROM exactly.dead_letters"
                        " WHERE pipeline = $1),"
                        " (SELECT count(*) FROM ledger_hostile WHERE topic ="
                        " $1),"
                        " (SELECT next_offset FROM exactly.offsets WHERE"
                        " pipeline = $1 AND topic = $1 AND partition = 0)",
                        1, params, NULL);
        TK_CHECK_EQ_INT64(atoll(PQgetvalue(r, 0, 0)), bad, "dead letters");
        TK_CHECK_EQ_INT64(atoll(PQgetvalue(r, 0, 1)), good, "ledger rows");
        TK_CHECK_EQ_INT64(atoll(PQgetvalue(r, 0, 2)),
                          tk_high_watermark(bootstraps, pl->name, 0),
                          "stored next_offset vs partition end");
        PQclear(r);
    }
    tk_note("[%s] %" PRId64 " dead-lettered with their reason, %" PRId64
            " applied as the literal text", pl->name, bad, good);
}

int main(void)
{
    char conninfo[1024], dir[256], config[512], log[512];
    size_t i, k, total = 0;
    tk_config cfg;
    PGconn *db;
    tk_mock *m;
    int status;

    m = tk_mock_start(1);
    for (i = 0; i < N_PIPELINES; i++)
        tk_mock_create_topic(m, pipelines[i].name, 1);

    tk_pg_create_db("hostile_ids", conninfo, sizeof conninfo);
    db = tk_pg_connect(conninfo);
    tk_sql(db, "CREATE TABLE canary (x int);"
               "INSERT INTO canary VALUES (1);"
               "CREATE TABLE accounts (id bigint PRIMARY KEY, name text);"
               "INSERT INTO accounts SELECT g, 'a' || g"
               " FROM generate_series(1, 10) g;"
               "CREATE TABLE uuid_entities (id uuid PRIMARY KEY);"
               "INSERT INTO uuid_entities VALUES"
               " ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');"
               "CREATE TABLE text_entities (id text PRIMARY KEY)");
    ledger_create_tables(db, "ledger_hostile", "counters_hostile");
    /* Every text ID that must be applied has its row, keyed by exactly its
     * bytes (inserted as a parameter). */
    for (i = 0; i < N_OF(text_ids); i++) {
        if (!text_ids[i].reason) {
            const char *p[1] = {text_ids[i].key};
            PQclear(q(db, "INSERT INTO text_entities VALUES ($1)", 1, p,
                      NULL));
        }
    }

    tk_tmpdir("exactly-hostile-ids", dir, sizeof dir);
    snprintf(config, sizeof config, "%s/hostile.yaml", dir);
    tk_config_init(&cfg, tk_mock_bootstraps(m), conninfo);
    cfg.kafka[0] = (tk_prop){"session.timeout.ms", "6000"};
    for (i = 0; i < N_PIPELINES; i++) {
        tk_pipeline *pl = &cfg.pipelines[i];

        ledger_pipeline(pl, pipelines[i].name, pipelines[i].name);
        pl->id_type = pipelines[i].type;
        pl->id_max_length = pipelines[i].max_length;
        pl->lookup_table = pipelines[i].lookup;
        pl->on_missing = "dead_letter";
        pl->options[0] = (tk_prop){"table", "ledger_hostile"};
        pl->options[1] = (tk_prop){"counters", "counters_hostile"};
        pl->max_messages = 7;
        pl->max_wait_ms = 100;
    }
    tk_config_write(config, &cfg);
    snprintf(log, sizeof log, "%s/migrate.log", dir);
    tk_migrate(config, log);

    for (i = 0; i < N_PIPELINES; i++) {
        tk_msg msgs[MAX_MSGS];
        TK_CHECK(pipelines[i].n_ids <= MAX_MSGS, "too many IDs");
        memset(msgs, 0, sizeof msgs);
        for (k = 0; k < pipelines[i].n_ids; k++) {
            msgs[k].partition = 0;
            msgs[k].key = pipelines[i].ids[k].key;
            msgs[k].key_len = pipelines[i].ids[k].key_len;
        }
        tk_produce(tk_mock_bootstraps(m), pipelines[i].name, msgs,
                   pipelines[i].n_ids);
        total += pipelines[i].n_ids;
    }

    {
        snprintf(log, sizeof log, "%s/run.log", dir);
        status = tk_exactly(log, WORKER_TIMEOUT_MS, "run", "-c", config,
                            "--exit-idle", "3000", NULL);
        TK_CHECK(status == 0, "exactly run exited %d; log %s", status, log);
        TK_CHECK(!tk_file_contains(log, "level=error"),
                 "an error was logged for bad input; log %s", log);
    }

    for (i = 0; i < N_PIPELINES; i++)
        check_pipeline(db, tk_mock_bootstraps(m), &pipelines[i]);

    /* Nothing else happened. */
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM canary"), 1,
                      "canary rows");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM accounts"), 10,
                      "accounts rows");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM uuid_entities"),
                      1, "uuid_entities rows");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM pg_tables"
                                       " WHERE schemaname = 'public'"),
                      6, "tables in public");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM"
                                       " exactly.dead_letters WHERE sqlstate"
                                       " IS NOT NULL"),
                      0, "dead letters caused by an SQL error");

    PQfinish(db);
    tk_mock_stop(m);
    tk_rm_rf(dir);
    tk_note("%zu hostile IDs: each dead-lettered with its reason or applied "
            "as its literal text, nothing else changed",
            total);
    return 0;
}
