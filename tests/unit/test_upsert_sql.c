/*
 * test_upsert_sql.c - the exact statements the built-in upsert handler
 * generates, its identifier quoting and its array literals.
 *
 * Pure: needs no database. Self-contained checks (no testkit) so it also
 * builds on its own:
 *   gcc -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE \
 *       -fsanitize=address,undefined -Iinclude -Ilib \
 *       lib/builtin/upsert_sql.c tests/unit/test_upsert_sql.c -o /tmp/tu && /tmp/tu
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upsert_sql.h"

static int g_failed;

/* Compares and frees got; a mismatch prints both and fails the test. */
static void check_sql_at(int line, char *got, const char *want)
{
    if (!got || strcmp(got, want) != 0) {
        fprintf(stderr, "FAIL: %s:%d:\n  want: %s\n  got:  %s\n", __FILE__,
                line, want, got ? got : "(null)");
        g_failed = 1;
    }
    free(got);
}
#define CHECK_SQL(got, want) check_sql_at(__LINE__, (got), (want))

/* got must be NULL and errbuf must contain needle. */
static void check_refused_at(int line, char *got, const char *errbuf,
                             const char *needle)
{
    if (got || !strstr(errbuf, needle)) {
        fprintf(stderr,
                "FAIL: %s:%d: want refusal mentioning \"%s\"\n  got: %s\n  "
                "errbuf: %s\n",
                __FILE__, line, needle, got ? got : "(null)", errbuf);
        g_failed = 1;
    }
    free(got);
}
#define CHECK_REFUSED(got, errbuf, needle)                                     \
    check_refused_at(__LINE__, (got), (errbuf), (needle))

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "FAIL: %s:%d: %s\n", __FILE__, __LINE__, #cond);   \
            g_failed = 1;                                                      \
        }                                                                      \
    } while (0)

static const char *const id_key[] = {"id"};
static const char *const cols[] = {"id", "name"};
static const char *const srcs[] = {"id", "name"};
static const char *const types[] = {"bigint", "text"};

/* The common spec: t(id, name) keyed on id. */
static upsert_sql_spec base(int fused)
{
    upsert_sql_spec s;

    memset(&s, 0, sizeof(s));
    s.table = "t";
    s.key = id_key;
    s.n_key = 1;
    s.columns = cols;
    s.sources = srcs;
    s.types = types;
    s.n_columns = 2;
    s.lookup_table = fused ? "src" : NULL;
    s.lookup_id_column = fused ? "id" : NULL;
    s.id_type = "bigint";
    return s;
}

static void test_fused(void)
{
    upsert_sql_spec s = base(1);
    char err[256] = "";

    CHECK_SQL(upsert_sql_insert(&s, err, sizeof(err)),
              "INSERT INTO \"t\" AS t (\"id\", \"name\") "
              "SELECT s.\"id\", s.\"name\" FROM \"src\" AS s "
              "WHERE s.\"id\" = ANY($1::bigint[]) "
              "ON CONFLICT (\"id\") DO UPDATE SET \"name\" = EXCLUDED.\"name\" "
              "WHERE (t.\"name\") IS DISTINCT FROM (EXCLUDED.\"name\")");

    /* An extra writer's: the source rows locked as they are read, in
     * the order of their IDs. */
    s.lock_source = 1;
    CHECK_SQL(upsert_sql_insert(&s, err, sizeof(err)),
              "INSERT INTO \"t\" AS t (\"id\", \"name\") "
              "SELECT s.\"id\", s.\"name\" FROM \"src\" AS s "
              "WHERE s.\"id\" = ANY($1::bigint[]) "
              "ORDER BY s.\"id\" FOR SHARE OF s "
              "ON CONFLICT (\"id\") DO UPDATE SET \"name\" = EXCLUDED.\"name\" "
              "WHERE (t.\"name\") IS DISTINCT FROM (EXCLUDED.\"name\")");
    s.lock_source = 0;
    CHECK_SQL(upsert_sql_lock_targets(&s, err, sizeof(err)),
              "SELECT 1 FROM \"t\" AS t WHERE t.\"id\" = ANY($1::bigint[]) "
              "ORDER BY t.\"id\" FOR UPDATE OF t");

    /* Renamed columns, a uuid ID, a schema-qualified source. */
    {
        static const char *const c[] = {"order_id", "total", "status"};
        static const char *const src[] = {"id", "amount", "state"};
        static const char *const k[] = {"order_id"};
        s.columns = c;
        s.sources = src;
        s.n_columns = 3;
        s.key = k;
        s.table = "read.orders";
        s.lookup_table = "sales.orders";
        s.id_type = "uuid";
        CHECK_SQL(upsert_sql_insert(&s, err, sizeof(err)),
                  "INSERT INTO \"read\".\"orders\" AS t "
                  "(\"order_id\", \"total\", \"status\") "
                  "SELECT s.\"id\", s.\"amount\", s.\"state\" "
                  "FROM \"sales\".\"orders\" AS s "
                  "WHERE s.\"id\" = ANY($1::uuid[]) "
                  "ON CONFLICT (\"order_id\") DO UPDATE SET "
                  "\"total\" = EXCLUDED.\"total\", "
                  "\"status\" = EXCLUDED.\"status\" "
                  "WHERE (t.\"total\", t.\"status\") IS DISTINCT FROM "
                  "(EXCLUDED.\"total\", EXCLUDED.\"status\")");
    }
}

/* emit_topic: the insert wrapped so that each changed row writes an
 * outbox event keyed by the conflict key. */
static void test_emit(void)
{
    upsert_sql_spec s = base(1);
    char err[256] = "";
    char *ins = upsert_sql_insert(&s, err, sizeof(err));

    CHECK(ins != NULL);
    CHECK_SQL(upsert_sql_emit(ins, &s, "exactly.outbox", 2, err, sizeof(err)),
              "WITH w AS (INSERT INTO \"t\" AS t (\"id\", \"name\") "
              "SELECT s.\"id\", s.\"name\" FROM \"src\" AS s "
              "WHERE s.\"id\" = ANY($1::bigint[]) "
              "ON CONFLICT (\"id\") DO UPDATE SET \"name\" = EXCLUDED.\"name\" "
              "WHERE (t.\"name\") IS DISTINCT FROM (EXCLUDED.\"name\") "
              "RETURNING t.\"id\") INSERT INTO \"exactly\".\"outbox\" "
              "(topic, key) SELECT $2::text, convert_to(w.\"id\"::text, "
              "'UTF8') FROM w");
    {
        static const char *const k[] = {"id", "name"};
        s.key = k;
        s.n_key = 2;
        CHECK_SQL(upsert_sql_emit("INSERT x", &s, "ob", 3, err, sizeof(err)),
                  "WITH w AS (INSERT x RETURNING t.\"id\", t.\"name\") "
                  "INSERT INTO \"ob\" (topic, key) SELECT $3::text, "
                  "convert_to(jsonb_build_array(w.\"id\", w.\"name\")::text, "
                  "'UTF8') FROM w");
    }
    CHECK_REFUSED(upsert_sql_emit("INSERT x", &s, "a.b.c", 2, err,
                                  sizeof(err)),
                  err, "outbox table");
    free(ins);
}

static void test_unfused(void)
{
    upsert_sql_spec s = base(0);
    char err[256] = "";

    CHECK_SQL(upsert_sql_insert(&s, err, sizeof(err)),
              "INSERT INTO \"t\" AS t (\"id\", \"name\") "
              "SELECT u.c1::bigint, u.c2::text "
              "FROM unnest($1::text[], $2::text[]) AS u(c1, c2) "
              "ON CONFLICT (\"id\") DO UPDATE SET \"name\" = EXCLUDED.\"name\" "
              "WHERE (t.\"name\") IS DISTINCT FROM (EXCLUDED.\"name\")");

    /* Multi-word and array types are written as the catalog renders them;
     * the id type plays no part in the unfused insert. */
    {
        static const char *const c[] = {"a", "b", "c"};
        static const char *const ty[] = {"integer", "timestamp with time zone",
                                         "text[]"};
        static const char *const k[] = {"a", "b"};
        s.columns = c;
        s.sources = c;
        s.types = ty;
        s.n_columns = 3;
        s.key = k;
        s.n_key = 2;
        s.id_type = NULL;
        CHECK_SQL(upsert_sql_insert(&s, err, sizeof(err)),
                  "INSERT INTO \"t\" AS t (\"a\", \"b\", \"c\") "
                  "SELECT u.c1::integer, u.c2::timestamp with time zone, "
                  "u.c3::text[] "
                  "FROM unnest($1::text[], $2::text[], $3::text[]) "
                  "AS u(c1, c2, c3) "
                  "ON CONFLICT (\"a\", \"b\") DO UPDATE SET "
                  "\"c\" = EXCLUDED.\"c\" "
                  "WHERE (t.\"c\") IS DISTINCT FROM (EXCLUDED.\"c\")");
    }
}

static void test_do_nothing(void)
{
    static const char *const c[] = {"user_id", "group_id"};
    static const char *const ty[] = {"bigint", "bigint"};
    upsert_sql_spec s = base(0);
    char err[256] = "";

    s.columns = c;
    s.sources = c;
    s.types = ty;
    s.key = c;
    s.n_key = 2;
    CHECK_SQL(upsert_sql_insert(&s, err, sizeof(err)),
              "INSERT INTO \"t\" AS t (\"user_id\", \"group_id\") "
              "SELECT u.c1::bigint, u.c2::bigint "
              "FROM unnest($1::text[], $2::text[]) AS u(c1, c2) "
              "ON CONFLICT (\"user_id\", \"group_id\") DO NOTHING");

    s = base(1);
    s.n_columns = 1;
    CHECK_SQL(upsert_sql_insert(&s, err, sizeof(err)),
              "INSERT INTO \"t\" AS t (\"id\") SELECT s.\"id\" "
              "FROM \"src\" AS s WHERE s.\"id\" = ANY($1::bigint[]) "
              "ON CONFLICT (\"id\") DO NOTHING");
}

static void test_quoting(void)
{
    static const char *const c[] = {"id", "we\"ird", "Mixed Case"};
    static const char *const src[] = {"id", "odd\"\"src", "select"};
    static const char *const ty[] = {"bigint", "text", "\"MyType\""};
    upsert_sql_spec s = base(1);
    char err[256] = "";

    CHECK_SQL(upsert_sql_quote_ident("a\"b", err, sizeof(err)), "\"a\"\"b\"");
    CHECK_SQL(upsert_sql_quote_ident("\"", err, sizeof(err)), "\"\"\"\"");
    CHECK_SQL(upsert_sql_quote_ident("Robert'); DROP TABLE x;--", err,
                                     sizeof(err)),
              "\"Robert'); DROP TABLE x;--\"");
    CHECK_SQL(upsert_sql_quote_relation("Public.My\"Table", err, sizeof(err)),
              "\"Public\".\"My\"\"Table\"");

    s.columns = c;
    s.sources = src;
    s.n_columns = 3;
    s.table = "sch\"ema.ta\"ble";
    s.lookup_table = "s\"rc";
    s.lookup_id_column = "id";
    CHECK_SQL(upsert_sql_insert(&s, err, sizeof(err)),
              "INSERT INTO \"sch\"\"ema\".\"ta\"\"ble\" AS t "
              "(\"id\", \"we\"\"ird\", \"Mixed Case\") "
              "SELECT s.\"id\", s.\"odd\"\"\"\"src\", s.\"select\" "
              "FROM \"s\"\"rc\" AS s WHERE s.\"id\" = ANY($1::bigint[]) "
              "ON CONFLICT (\"id\") DO UPDATE SET "
              "\"we\"\"ird\" = EXCLUDED.\"we\"\"ird\", "
              "\"Mixed Case\" = EXCLUDED.\"Mixed Case\" "
              "WHERE (t.\"we\"\"ird\", t.\"Mixed Case\") IS DISTINCT FROM "
              "(EXCLUDED.\"we\"\"ird\", EXCLUDED.\"Mixed Case\")");

    /* A quoted user type from format_type passes the type check. */
    s.lookup_table = NULL;
    s.types = ty;
    s.table = "t";
    CHECK_SQL(upsert_sql_insert(&s, err, sizeof(err)),
              "INSERT INTO \"t\" AS t (\"id\", \"we\"\"ird\", \"Mixed Case\") "
              "SELECT u.c1::bigint, u.c2::text, u.c3::\"MyType\" "
              "FROM unnest($1::text[], $2::text[], $3::text[]) "
              "AS u(c1, c2, c3) "
              "ON CONFLICT (\"id\") DO UPDATE SET "
              "\"we\"\"ird\" = EXCLUDED.\"we\"\"ird\", "
              "\"Mixed Case\" = EXCLUDED.\"Mixed Case\" "
              "WHERE (t.\"we\"\"ird\", t.\"Mixed Case\") IS DISTINCT FROM "
              "(EXCLUDED.\"we\"\"ird\", EXCLUDED.\"Mixed Case\")");
}

static void test_delete(void)
{
    upsert_sql_spec s = base(0);
    char err[256] = "";

    CHECK_SQL(upsert_sql_delete(&s, err, sizeof(err)),
              "DELETE FROM \"t\" AS t WHERE t.\"id\" = ANY($1::bigint[])");

    s = base(1);
    CHECK_SQL(upsert_sql_delete(&s, err, sizeof(err)),
              "DELETE FROM \"t\" AS t WHERE t.\"id\" = ANY($1::bigint[]) "
              "AND NOT EXISTS (SELECT 1 FROM \"src\" AS s "
              "WHERE s.\"id\" = t.\"id\")");

    /* Key filled from a differently named lookup ID column. */
    {
        static const char *const c[] = {"customer_id", "name"};
        static const char *const src[] = {"cid", "name"};
        static const char *const k[] = {"customer_id"};
        s.columns = c;
        s.sources = src;
        s.key = k;
        s.table = "crm.customers_view";
        s.lookup_table = "crm.customers";
        s.lookup_id_column = "cid";
        s.id_type = "text";
        CHECK_SQL(upsert_sql_delete(&s, err, sizeof(err)),
                  "DELETE FROM \"crm\".\"customers_view\" AS t "
                  "WHERE t.\"customer_id\" = ANY($1::text[]) "
                  "AND NOT EXISTS (SELECT 1 FROM \"crm\".\"customers\" AS s "
                  "WHERE s.\"cid\" = t.\"customer_id\")");
    }
}

static void test_errors(void)
{
    static const char *const two[] = {"id", "name"};
    static const char *const nokey[] = {"nope"};
    static const char *const dup[] = {"id", "id"};
    static const char *const empty[] = {""};
    static const char *const bad_types[] = {"bigint", "text; DROP TABLE t"};
    static const char *const swapped[] = {"name", "id"};
    char long_name[UPSERT_SQL_MAX_IDENT + 2];
    char err[256];
    upsert_sql_spec s;

    memset(long_name, 'x', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';

    s = base(0);
    s.n_key = 0;
    CHECK_REFUSED(upsert_sql_insert(&s, err, sizeof(err)), err,
                  "key names no column");

    s = base(0);
    s.key = nokey;
    CHECK_REFUSED(upsert_sql_insert(&s, err, sizeof(err)), err,
                  "key column \"nope\" is not one of the written columns");

    s = base(0);
    s.key = dup;
    s.n_key = 2;
    CHECK_REFUSED(upsert_sql_insert(&s, err, sizeof(err)), err,
                  "key column \"id\" appears twice");

    s = base(0);
    s.columns = dup;
    CHECK_REFUSED(upsert_sql_insert(&s, err, sizeof(err)), err,
                  "column \"id\" appears twice");

    s = base(0);
    s.n_columns = 0;
    CHECK_REFUSED(upsert_sql_insert(&s, err, sizeof(err)), err,
                  "no columns");

    s = base(0);
    s.columns = empty;
    s.n_columns = 1;
    CHECK_REFUSED(upsert_sql_insert(&s, err, sizeof(err)), err,
                  "column name is empty");

    s = base(0);
    s.types = bad_types;
    CHECK_REFUSED(upsert_sql_insert(&s, err, sizeof(err)), err,
                  "column \"name\" has no usable type");

    s = base(0);
    s.types = NULL;
    CHECK_REFUSED(upsert_sql_insert(&s, err, sizeof(err)), err,
                  "has no usable type");

    s = base(0);
    s.table = "";
    CHECK_REFUSED(upsert_sql_insert(&s, err, sizeof(err)), err,
                  "table name is empty");

    s = base(0);
    s.table = "a.b.c";
    CHECK_REFUSED(upsert_sql_insert(&s, err, sizeof(err)), err,
                  "more than one dot");

    s = base(0);
    s.table = ".t";
    CHECK_REFUSED(upsert_sql_insert(&s, err, sizeof(err)), err,
                  "empty schema or table part");

    s = base(0);
    s.table = long_name;
    CHECK_REFUSED(upsert_sql_insert(&s, err, sizeof(err)), err,
                  "is longer than 63 bytes");
    long_name[UPSERT_SQL_MAX_IDENT] = '\0'; /* exactly 63: accepted */
    {
        char *q = upsert_sql_insert(&s, err, sizeof(err));
        CHECK(q != NULL);
        free(q);
        q = upsert_sql_quote_ident(long_name, err, sizeof(err));
        CHECK(q && strlen(q) == UPSERT_SQL_MAX_IDENT + 2);
        free(q);
    }

    s = base(1);
    s.id_type = "integer";
    CHECK_REFUSED(upsert_sql_insert(&s, err, sizeof(err)), err,
                  "id type \"integer\" is not bigint, text or uuid");

    s = base(1);
    s.lookup_id_column = NULL;
    CHECK_REFUSED(upsert_sql_insert(&s, err, sizeof(err)), err,
                  "lookup id column name is empty");

    s = base(1);
    s.lookup_table = "x.";
    CHECK_REFUSED(upsert_sql_insert(&s, err, sizeof(err)), err,
                  "lookup table name \"x.\" has an empty schema or table part");

    /* Deletes need one key column, and (fused) that it holds the ID. */
    s = base(0);
    s.key = two;
    s.n_key = 2;
    CHECK_REFUSED(upsert_sql_delete(&s, err, sizeof(err)), err,
                  "key of exactly one column");

    s = base(0);
    s.id_type = NULL;
    CHECK_REFUSED(upsert_sql_delete(&s, err, sizeof(err)), err,
                  "is not bigint, text or uuid");

    s = base(1);
    s.sources = swapped;
    CHECK_REFUSED(upsert_sql_delete(&s, err, sizeof(err)), err,
                  "needs key column \"id\" filled from the lookup's id column");

    s = base(1);
    s.key = two;
    s.n_key = 2;
    CHECK_REFUSED(upsert_sql_lock_targets(&s, err, sizeof(err)), err,
                  "key of exactly one column");

    /* A NULL or zero-size errbuf is allowed. */
    s = base(0);
    s.n_key = 0;
    CHECK(upsert_sql_insert(&s, NULL, 0) == NULL);
    CHECK(upsert_sql_insert(NULL, err, sizeof(err)) == NULL);
}

static void test_type_check(void)
{
    CHECK(upsert_sql_type_is_safe("bigint"));
    CHECK(upsert_sql_type_is_safe("character varying"));
    CHECK(upsert_sql_type_is_safe("numeric(10,2)"));
    CHECK(upsert_sql_type_is_safe("integer[]"));
    CHECK(upsert_sql_type_is_safe("public.\"My Type\""));
    CHECK(!upsert_sql_type_is_safe(""));
    CHECK(!upsert_sql_type_is_safe(NULL));
    CHECK(!upsert_sql_type_is_safe("text;"));
    CHECK(!upsert_sql_type_is_safe("text'"));
    CHECK(!upsert_sql_type_is_safe("text -- x"));
    CHECK(!upsert_sql_type_is_safe("t\xc3\xa9xt"));
}

static void test_arrays(void)
{
    upsert_array a = {0};
    const char *s;

    /* Zeroed is empty. */
    s = upsert_array_finish(&a);
    CHECK(s && strcmp(s, "{}") == 0);
    /* finish is idempotent */
    CHECK(upsert_array_finish(&a) == s);

    upsert_array_reset(&a);
    CHECK(upsert_array_add(&a, "1") == 0);
    CHECK(upsert_array_add(&a, NULL) == 0);
    CHECK(upsert_array_add(&a, "") == 0);
    CHECK(upsert_array_add(&a, "NULL") == 0);
    CHECK(upsert_array_add(&a, "a \"q\" \\ b") == 0);
    CHECK(upsert_array_add(&a, "{,}") == 0);
    CHECK(upsert_array_add(&a, "\\\\\"") == 0);
    CHECK(upsert_array_add(&a, " pad ") == 0);
    CHECK(a.n == 8);
    s = upsert_array_finish(&a);
    CHECK(s && strcmp(s, "{\"1\",NULL,\"\",\"NULL\",\"a \\\"q\\\" \\\\ b\","
                         "\"{,}\",\"\\\\\\\\\\\"\",\" pad \"}") == 0);
    if (s && strcmp(s, "{\"1\",NULL,\"\",\"NULL\",\"a \\\"q\\\" \\\\ b\","
                       "\"{,}\",\"\\\\\\\\\\\"\",\" pad \"}") != 0)
        fprintf(stderr, "  array was: %s\n", s);
    /* Adding after finish is a caller bug and is reported. */
    CHECK(upsert_array_add(&a, "x") == -1);
    CHECK(upsert_array_finish(&a) == NULL);

    /* Reset reuses the memory and clears the error. */
    upsert_array_reset(&a);
    CHECK(a.n == 0 && !a.oom);
    CHECK(upsert_array_add(&a, "z") == 0);
    s = upsert_array_finish(&a);
    CHECK(s && strcmp(s, "{\"z\"}") == 0);

    /* Large: growth keeps the content. */
    upsert_array_reset(&a);
    for (int i = 0; i < 10000; i++)
        CHECK(upsert_array_add(&a, "0123456789") == 0);
    s = upsert_array_finish(&a);
    CHECK(s && strlen(s) == 2 + 10000 * 12 + 9999);

    upsert_array_free(&a);
    upsert_array_free(&a); /* twice is fine */
    upsert_array_free(NULL);
}

int main(void)
{
    test_fused();
    test_emit();
    test_unfused();
    test_do_nothing();
    test_quoting();
    test_delete();
    test_errors();
    test_type_check();
    test_arrays();
    if (g_failed) {
        fprintf(stderr, "test_upsert_sql: FAILED\n");
        return 1;
    }
    printf("test_upsert_sql: ok\n");
    return 0;
}
