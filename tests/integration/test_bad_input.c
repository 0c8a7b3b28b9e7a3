/*
 * Bad input (DESIGN 3): a message whose ID cannot be decoded goes to
 * exactly.dead_letters with a clear reason, in the same transaction as the
 * rest of its batch, and the partition moves on; it never crashes the
 * worker, never stops the good messages around it and never reaches SQL.
 *
 * Five pipelines run side by side, one worker each, on topics of their own:
 *
 *   bigint  id from the key, max_length 32: empty, NULL, non-numeric,
 *           whitespace, out of range, oversized (100 bytes), binary and
 *           non-canonical ("007", "+1", "-0") keys, interleaved with good
 *           IDs (good ones after the bad ones
 *           too, and a stretch of bad ones longer than a batch, so that a
 *           batch holding no good message at all commits as well);
 *   text    invalid UTF-8 and an embedded NUL;
 *   uuid    malformed UUIDs, and upper-case or unhyphenated ones, which
 *           are another spelling of a UUID and so refused as not
 *           canonical (Kafka would put the two spellings of one entity
 *           on different partitions);
 *   header  id from header 'x': missing header, null header value,
 *           non-numeric value;
 *   lenient id.non_canonical: accept: "007", "+8", "+0012" are applied as
 *           7, 8, 12; what is no bigint is still dead-lettered.
 *
 * For each bad message: one dead_letters row at its partition and offset,
 * message_key equal to the key bytes (NULL for a NULL key), entity_id NULL,
 * a reason naming the problem and holding only printable bytes. For each
 * good message: a ledger row at its offset naming the canonical ID, and
 * per-ID counters. Stored offsets reach the partition ends; every worker
 * exits 0 and its summary counts the dead letters.
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

#define N_PARTITIONS 2
#define WORKER_TIMEOUT_MS 120000
#define MAX_CASE_MSGS 32

/* Bytes of a string literal, NULs included. */
#define BYTES(s) (s), (sizeof(s) - 1)

/* One message: where it goes, what it carries, and what must happen. */
typedef struct case_msg {
    int32_t partition;
    const char *key; /* NULL: a NULL key */
    size_t key_len;
    const char *header; /* the id header's value; NULL: see header_null */
    size_t header_len;
    int header_null;    /* 1: header present with a null value */
    const char *want_id; /* canonical ID when good; NULL: dead-lettered */
    const char *reason;  /* substring the dead letter's reason must hold */
} case_msg;

typedef struct pipeline_case {
    const char *name;
    const char *topic;
    const char *id_from;
    const char *id_type;
    const char *id_header;
    int id_max_length;
    const char *id_non_canonical;
    const char *lookup_table;
    const case_msg *msgs;
    size_t n_msgs;
    int64_t offsets[MAX_CASE_MSGS]; /* filled in produce order */
    pid_t pid;
    char log[512];
} pipeline_case;

static char oversized[101]; /* 100 digits: a "valid" number, but too long */

#define GOOD(p, k, id) {(p), BYTES(k), NULL, 0, 0, (id), NULL}
#define BAD(p, k, why) {(p), BYTES(k), NULL, 0, 0, NULL, (why)}

static case_msg bigint_msgs[] = {
    GOOD(0, "1", "1"),
    BAD(0, "", "empty"),
    GOOD(0, "2", "2"),
    {0, NULL, 0, NULL, 0, 0, NULL, "the key is null"}, /* not "empty" */
    /* Nine bad messages in a row: with max_messages 5 at least one batch
     * holds nothing to apply and must still commit its offsets. */
    BAD(0, "abc", "not a bigint"),
    BAD(0, "12x", "not a bigint"),
    BAD(0, " 7", "not a bigint"),
    BAD(0, "99999999999999999999", "out of range"),
    {0, oversized, 100, NULL, 0, 0, NULL, "too long"},
    BAD(0, "\x00\xff\xfe\x01\x80\n", "not a bigint"),
    BAD(0, "+1", "not canonical (bigint 1)"),
    BAD(0, "-", "not a bigint"),
    BAD(0, "7 ", "not a bigint"),
    GOOD(0, "3", "3"),
    /* Another spelling of 7 would be 7 on another partition. */
    BAD(0, "007", "not canonical (bigint 7)"),
    BAD(0, "\xff\xfe", "not a bigint"),
    GOOD(0, "4", "4"),
    GOOD(0, "4", "4"),
    BAD(1, "9223372036854775808", "out of range"),
    GOOD(1, "9", "9"),
    BAD(1, "1.5", "not a bigint"),
    GOOD(1, "500", "500"),
    BAD(1, "-9223372036854775809", "out of range"),
    BAD(1, "-0", "not canonical (bigint 0)"),
    BAD(1, "0500", "not canonical (bigint 500)"),
    GOOD(1, "10", "10"),
};

static const case_msg text_msgs[] = {
    GOOD(0, "alpha", "alpha"),
    BAD(0, "\xc3\x28", "UTF-8"),
    GOOD(0, "b\xc3\xa9ta", "b\xc3\xa9ta"),
    BAD(0, "a\xff", "UTF-8"),
    BAD(0, "\xed\xa0\x80", "UTF-8"), /* a surrogate */
    BAD(1, "a\000b", "NUL"),
    GOOD(1, "gamma", "gamma"),
    BAD(1, "\xe2\x82", "UTF-8"), /* truncated */
    GOOD(1, "alpha", "alpha"),
};

static const case_msg uuid_msgs[] = {
    GOOD(0, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
         "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    BAD(0, "not-a-uuid", "not a uuid"),
    BAD(0, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g", "not a uuid"),
    BAD(0, "B1EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12",
        "not canonical (uuid b1eebc99-9c0b-4ef8-bb6d-6bb9bd380a12)"),
    GOOD(0, "b1eebc99-9c0b-4ef8-bb6d-6bb9bd380a12",
         "b1eebc99-9c0b-4ef8-bb6d-6bb9bd380a12"),
    BAD(1, "a0eebc999c0b-4ef8-bb6d-6bb9bd380a11x", "not a uuid"),
    BAD(1, "c2eebc999c0b4ef8bb6d6bb9bd380a13", "not canonical"),
    GOOD(1, "c2eebc99-9c0b-4ef8-bb6d-6bb9bd380a13",
         "c2eebc99-9c0b-4ef8-bb6d-6bb9bd380a13"),
};

/* id.non_canonical: accept: another spelling is applied as the canonical
 * ID (and coalesced with it); what is no bigint is still dead-lettered. */
static const case_msg lenient_msgs[] = {
    GOOD(0, "007", "7"),
    GOOD(0, "7", "7"),
    GOOD(0, "+8", "8"),
    BAD(0, "abc", "not a bigint"),
    GOOD(1, "0009", "9"),
    BAD(1, " 7", "not a bigint"),
    GOOD(1, "+0012", "12"),
};

/* The key is a label here; the ID comes from header 'x'. */
static const case_msg header_msgs[] = {
    {0, BYTES("k1"), BYTES("5"), 0, "5", NULL},
    {0, BYTES("k2"), NULL, 0, 0, NULL, "header 'x' missing"},
    {0, BYTES("k3"), BYTES("abc"), 0, NULL, "not a bigint"},
    {0, BYTES("k4"), NULL, 0, 1, NULL, "header 'x' is null"},
    {0, NULL, 0, BYTES("6"), 0, "6", NULL},
    {1, BYTES("k6"), NULL, 0, 0, NULL, "header 'x' missing"},
    {1, BYTES("k7"), BYTES("7"), 0, "7", NULL},
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static pipeline_case pipelines[] = {
    {"bigint", "bad-bigint", "key", "bigint", NULL, 32, NULL, "accounts",
     bigint_msgs, N_OF(bigint_msgs), {0}, 0, ""},
    {"text", "bad-text", "key", "text", NULL, 0, NULL, "text_entities",
     text_msgs, N_OF(text_msgs), {0}, 0, ""},
    {"uuid", "bad-uuid", "key", "uuid", NULL, 0, NULL, "uuid_entities",
     uuid_msgs, N_OF(uuid_msgs), {0}, 0, ""},
    {"header", "bad-header", "header", "bigint", "x", 0, NULL, "accounts",
     header_msgs, N_OF(header_msgs), {0}, 0, ""},
    {"lenient", "bad-lenient", "key", "bigint", NULL, 0, "accept",
     "accounts", lenient_msgs, N_OF(lenient_msgs), {0}, 0, ""},
};

#define N_PIPELINES N_OF(pipelines)

static void hex(const void *data, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = data;
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Produces one pipeline's messages in order and records each one's offset
 * (per partition, from 0: one idempotent producer keeps the order). */
static void produce(const char *bootstraps, pipeline_case *pc)
{
    tk_msg msgs[MAX_CASE_MSGS];
    int64_t next[N_PARTITIONS] = {0};
    size_t i;

    TK_CHECK(pc->n_msgs <= MAX_CASE_MSGS, "too many messages");
    memset(msgs, 0, sizeof msgs);
    for (i = 0; i < pc->n_msgs; i++) {
        const case_msg *c = &pc->msgs[i];
        msgs[i].partition = c->partition;
        msgs[i].key = c->key;
        msgs[i].key_len = c->key_len;
        if (c->header || c->header_null) {
            msgs[i].n_headers = 1;
            msgs[i].headers[0].name = "x";
            msgs[i].headers[0].value = c->header_null ? NULL : c->header;
            msgs[i].headers[0].value_len = c->header_len;
        }
        pc->offsets[i] = next[c->partition]++;
    }
    tk_produce(bootstraps, pc->topic, msgs, pc->n_msgs);
}

/* The worker's summary counters from its log. */
static void check_summary(const pipeline_case *pc, int64_t good, int64_t bad)
{
    char *text = tk_read_file(pc->log);
    tk_run_summary s;

    TK_CHECK(text != NULL, "cannot read %s", pc->log);
    tk_summary_required(pc->log, pc->name, &s);
    TK_CHECK_EQ_INT64(s.consumed, good + bad, "summary 'consumed'");
    TK_CHECK_EQ_INT64(s.applied, good, "summary 'applied'");
    TK_CHECK_EQ_INT64(s.dead_lettered, bad, "summary 'dead-lettered'");
    TK_CHECK_EQ_INT64(s.skipped, 0, "summary 'skipped (no row)'");
    /* Never a crash or an error line for bad input: a dead letter is an
     * expected outcome (logged as a warning at most). */
    TK_CHECK(strstr(text, "level=error") == NULL,
             "[%s] error logged for bad input:\n%s", pc->name, text);
    free(text);
}

static void check_pipeline(PGconn *conn, const char *bootstraps,
                           const pipeline_case *pc)
{
    int64_t good = 0, bad = 0;
    size_t i;
    int32_t p;

    for (i = 0; i < pc->n_msgs; i++) {
        const case_msg *c = &pc->msgs[i];
        char where[256];

        snprintf(where, sizeof where,
                 "pipeline = '%s' AND topic = '%s' AND partition = %d AND"
                 " \"offset\" = %" PRId64,
                 pc->name, pc->topic, (int)c->partition, pc->offsets[i]);
        if (c->want_id) {
            char *id;
            good++;
            TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM "
                                                 "exactly.dead_letters "
                                                 "WHERE %s",
                                           where),
                              0, "dead letters for a good message");
            id = tk_sql_text(conn,
                             "SELECT entity_id FROM ledger_%s WHERE topic ="
                             " '%s' AND partition = %d AND \"offset\" = %"
                             PRId64,
                             pc->name, pc->topic, (int)c->partition,
                             pc->offsets[i]);
            TK_CHECK(id != NULL, "[%s] good message %zu (partition %d offset "
                     "%" PRId64 ") not applied", pc->name, i,
                     (int)c->partition, pc->offsets[i]);
            TK_CHECK_EQ_STR(id, c->want_id, "ledger entity_id (canonical)");
            free(id);
        } else {
            char keyhex[2 * 128 + 1];
            char *reason;
            bad++;
            TK_CHECK(c->key_len <= 128, "key too long for the test buffer");
            hex(c->key ? c->key : "", c->key_len, keyhex);
            TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM "
                                                 "exactly.dead_letters "
                                                 "WHERE %s",
                                           where),
                              1, "dead letters for a bad message");
            reason = tk_sql_text(conn, "SELECT reason FROM "
                                       "exactly.dead_letters WHERE %s",
                                 where);
            tk_note("[%s] offset %d/%" PRId64 " dead-lettered: %s", pc->name,
                    (int)c->partition, pc->offsets[i], reason);
            TK_CHECK(reason && strstr(reason, c->reason) != NULL,
                     "[%s] message %zu: reason \"%s\" lacks \"%s\"", pc->name,
                     i, reason ? reason : "(null)", c->reason);
            free(reason);
            /* Exactly the key bytes, NULL for a NULL key; no entity (it
             * could not be decoded); no SQL error; one attempt; a reason
             * of printable ASCII only. */
            TK_CHECK_EQ_INT64(
                tk_sql_int64(conn,
                             "SELECT count(*) FROM exactly.dead_letters"
                             " WHERE %s AND message_key IS NOT DISTINCT FROM"
                             " %s%s%s AND entity_id IS NULL AND sqlstate IS"
                             " NULL AND attempts = 1 AND reason ~ '^[ -~]+$'",
                             where, c->key ? "decode('" : "NULL",
                             c->key ? keyhex : "",
                             c->key ? "', 'hex')" : ""),
                1, "dead letter with the right key bytes, no entity_id, "
                   "printable reason");
        }
    }
    TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM "
                                         "exactly.dead_letters WHERE "
                                         "pipeline = '%s'",
                                   pc->name),
                      bad, "dead letters of the pipeline");
    TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM ledger_%s",
                                   pc->name),
                      good, "ledger rows of the pipeline");
    /* Counters: per canonical ID, the number of good messages naming it. */
    {
        char values[4096];
        size_t o = 0;
        int first = 1;
        for (i = 0; i < pc->n_msgs; i++) {
            if (!pc->msgs[i].want_id)
                continue;
            o += (size_t)snprintf(values + o, sizeof values - o,
                                  "%s('%s')", first ? "" : ",",
                                  pc->msgs[i].want_id);
            first = 0;
            TK_CHECK(o < sizeof values, "values buffer too small");
        }
        TK_CHECK_EQ_INT64(
            tk_sql_int64(conn,
                         "SELECT count(*) FROM (SELECT id, count(*) AS n FROM"
                         " (VALUES %s) v(id) GROUP BY id) x FULL JOIN"
                         " counters_%s c ON c.entity_id = x.id"
                         " WHERE c.n IS DISTINCT FROM x.n",
                         values, pc->name),
            0, "IDs whose counter is wrong");
    }
    for (p = 0; p < N_PARTITIONS; p++) {
        int64_t hw = tk_high_watermark(bootstraps, pc->topic, p);
        int64_t n = 0;
        for (i = 0; i < pc->n_msgs; i++)
            n += pc->msgs[i].partition == p;
        TK_CHECK_EQ_INT64(hw, n, "high watermark vs messages produced");
        TK_CHECK_EQ_INT64(tk_sql_int64(conn,
                                       "SELECT next_offset FROM "
                                       "exactly.offsets WHERE pipeline = "
                                       "'%s' AND topic = '%s' AND partition "
                                       "= %d",
                                       pc->name, pc->topic, (int)p),
                          hw, "stored next_offset vs partition end");
    }
    check_summary(pc, good, bad);
    tk_note("[%s] %" PRId64 " good applied, %" PRId64 " bad dead-lettered",
            pc->name, good, bad);
}

int main(void)
{
    char conninfo[1024], dir[256], config[512];
    char ledger_tables[N_PIPELINES][32], counter_tables[N_PIPELINES][32];
    int64_t t0 = tk_now_ms();
    tk_config cfg;
    size_t i;
    PGconn *conn;
    tk_mock *m;

    memset(oversized, '1', 100);

    m = tk_mock_start(1);
    for (i = 0; i < N_PIPELINES; i++)
        tk_mock_create_topic(m, pipelines[i].topic, N_PARTITIONS);

    tk_pg_create_db("bad_input", conninfo, sizeof conninfo);
    conn = tk_pg_connect(conninfo);
    ledger_create_accounts(conn, "accounts", LEDGER_ACCOUNTS);
    tk_sql(conn, "CREATE TABLE text_entities (id text PRIMARY KEY);"
                 "INSERT INTO text_entities VALUES ('alpha'), ('b\xc3\xa9ta'),"
                 " ('gamma');"
                 "CREATE TABLE uuid_entities (id uuid PRIMARY KEY);"
                 "INSERT INTO uuid_entities VALUES"
                 " ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),"
                 " ('b1eebc99-9c0b-4ef8-bb6d-6bb9bd380a12'),"
                 " ('c2eebc99-9c0b-4ef8-bb6d-6bb9bd380a13')");
    for (i = 0; i < N_PIPELINES; i++) {
        snprintf(ledger_tables[i], sizeof ledger_tables[i], "ledger_%s",
                 pipelines[i].name);
        snprintf(counter_tables[i], sizeof counter_tables[i], "counters_%s",
                 pipelines[i].name);
        ledger_create_tables(conn, ledger_tables[i], counter_tables[i]);
    }

    tk_tmpdir("exactly-bad-input", dir, sizeof dir);
    snprintf(config, sizeof config, "%s/bad.yaml", dir);
    /* session.timeout.ms: the mock of librdkafka 2.0.2 keeps a member that
     * left until its session times out; short sessions keep reruns fast. */
    tk_config_init(&cfg, tk_mock_bootstraps(m), conninfo);
    cfg.kafka[0] = (tk_prop){"session.timeout.ms", "6000"};
    for (i = 0; i < N_PIPELINES; i++) {
        const pipeline_case *pc = &pipelines[i];
        tk_pipeline *pl = &cfg.pipelines[i];

        /* max_messages 5: bad messages are spread over several batches. */
        ledger_pipeline(pl, pc->name, pc->topic);
        pl->group = pc->topic;
        pl->id_from = pc->id_from;
        pl->id_type = pc->id_type;
        pl->id_header = pc->id_header;
        pl->id_max_length = pc->id_max_length;
        pl->id_non_canonical = pc->id_non_canonical;
        pl->lookup_table = pc->lookup_table;
        pl->on_missing = "skip";
        pl->options[0] = (tk_prop){"table", ledger_tables[i]};
        pl->options[1] = (tk_prop){"counters", counter_tables[i]};
        pl->max_messages = 5;
        pl->max_wait_ms = 100;
    }
    tk_config_write(config, &cfg);
    {
        char log[512];
        snprintf(log, sizeof log, "%s/migrate.log", dir);
        tk_migrate(config, log);
    }

    for (i = 0; i < N_PIPELINES; i++)
        produce(tk_mock_bootstraps(m), &pipelines[i]);

    /* One worker per pipeline, all at once: they share nothing but the
     * database, and the group joins overlap. */
    for (i = 0; i < N_PIPELINES; i++) {
        pipeline_case *pc = &pipelines[i];
        const char *args[] = {"run",         "-c",   config, "--pipeline",
                              pc->name,      "--exit-idle", "3000", NULL};
        snprintf(pc->log, sizeof pc->log, "%s/%s.log", dir, pc->name);
        pc->pid = tk_exactly_startv(pc->log, args);
    }
    for (i = 0; i < N_PIPELINES; i++) {
        pipeline_case *pc = &pipelines[i];
        int status = tk_worker_wait(pc->pid, WORKER_TIMEOUT_MS, pc->log);

        LEDGER_CHECK_LOG(status == 0, pc->log, "[%s] worker exited %d; log %s",
                         pc->name, status, pc->log);
    }
    tk_note("workers done in %" PRId64 " ms", tk_now_ms() - t0);

    for (i = 0; i < N_PIPELINES; i++)
        check_pipeline(conn, tk_mock_bootstraps(m), &pipelines[i]);

    PQfinish(conn);
    tk_mock_stop(m);
    tk_rm_rf(dir);
    tk_note("bad input test passed in %" PRId64 " ms", tk_now_ms() - t0);
    return 0;
}
