/*
 * ledger_check.c - see ledger_check.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "ledger_check.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* At most this many offending items are listed in a failure message. */
#define SHOW_MAX 10

/* ------------------------------------------------------------------ */
/* Database and configuration                                          */
/* ------------------------------------------------------------------ */

/* Run one statement naming an identifier: fmt has one %s, which receives
 * ident quoted by PQescapeIdentifier. */
static void sql_ident(PGconn *db, const char *fmt, const char *ident)
{
    char *q = PQescapeIdentifier(db, ident, strlen(ident));

    TK_CHECK(q != NULL, "cannot quote %s: %s", ident, PQerrorMessage(db));
    tk_sql(db, fmt, q);
    PQfreemem(q);
}

void ledger_create_accounts(PGconn *db, const char *table, int n)
{
    char *q = PQescapeIdentifier(db, table, strlen(table));

    TK_CHECK(q != NULL, "cannot quote %s: %s", table, PQerrorMessage(db));
    tk_sql(db, "CREATE TABLE %s (id bigint PRIMARY KEY, name text, "
               "balance numeric)", q);
    tk_sql(db, "INSERT INTO %s SELECT g, 'account ' || g, g * 10 "
               "FROM generate_series(1, %d) g", q, n);
    PQfreemem(q);
}

void ledger_create_tables(PGconn *db, const char *ledger,
                          const char *counters)
{
    /* DDL of plugins/README.md, section "ledger". */
    sql_ident(db, "CREATE TABLE %s ("
                  "    topic      text   NOT NULL,"
                  "    partition  int    NOT NULL,"
                  "    \"offset\"   bigint NOT NULL,"
                  "    entity_id  text   NOT NULL,"
                  "    applied_at timestamptz NOT NULL DEFAULT now(),"
                  "    PRIMARY KEY (topic, partition, \"offset\"))",
              ledger);
    sql_ident(db, "CREATE TABLE %s ("
                  "    entity_id text PRIMARY KEY,"
                  "    n         bigint NOT NULL)",
              counters);
}

void ledger_create_reprocess_table(PGconn *db)
{
    /* DDL of plugins/README.md, section "ledger". */
    tk_sql(db, "CREATE TABLE ledger_reprocess ("
               "    run        bigint NOT NULL,"
               "    topic      text   NOT NULL,"
               "    partition  int    NOT NULL,"
               "    \"offset\"   bigint NOT NULL,"
               "    entity_id  text   NOT NULL,"
               "    PRIMARY KEY (run, topic, partition, \"offset\"))");
}

int64_t ledger_forget_from(PGconn *db, const char *topic, int partition,
                           int64_t from)
{
    int64_t n = tk_sql_int64(db,
                             "SELECT count(*) FROM ledger WHERE topic = '%s'"
                             " AND partition = %d AND \"offset\" >= %" PRId64,
                             topic, partition, from);

    tk_sql(db,
           "UPDATE ledger_counters c SET n = c.n - d.k FROM (SELECT entity_id,"
           " count(*) AS k FROM ledger WHERE topic = '%s' AND partition = %d"
           " AND \"offset\" >= %" PRId64 " GROUP BY entity_id) d"
           " WHERE c.entity_id = d.entity_id;"
           "DELETE FROM ledger WHERE topic = '%s' AND partition = %d"
           " AND \"offset\" >= %" PRId64,
           topic, partition, from, topic, partition, from);
    return n;
}

void ledger_setup_db(const char *conninfo)
{
    PGconn *db = tk_pg_connect(conninfo);

    ledger_create_accounts(db, "accounts", LEDGER_ACCOUNTS);
    ledger_create_tables(db, "ledger", "ledger_counters");
    PQfinish(db);
}

const char *const ledger_short_session[] = {
    "session.timeout.ms", "6000", "heartbeat.interval.ms", "500", NULL};

void ledger_pipeline(tk_pipeline *p, const char *name, const char *topic)
{
    memset(p, 0, sizeof *p);
    p->name = name;
    p->topics[0] = topic;
    p->id_from = "key";
    p->id_type = "bigint";
    p->lookup_table = "accounts";
    p->plugin = "ledger.so";
}

void ledger_config_fill(tk_config *out, const ledger_config *c)
{
    tk_pipeline *p = &out->pipelines[0];
    size_t i, n = 0;

    TK_CHECK(c->bootstraps && c->conninfo && c->topic,
             "ledger_write_config: bootstraps, conninfo and topic are "
             "required");
    TK_CHECK(c->max_messages > 0 && c->max_wait_ms >= 0,
             "ledger_write_config: batch limits %d/%d ms", c->max_messages,
             c->max_wait_ms);
    memset(out, 0, sizeof *out);
    out->bootstraps = c->bootstraps;
    out->conninfo = c->conninfo;
    out->lock_timeout_ms = c->lock_timeout_ms;
    out->idle_in_transaction_timeout_ms = c->idle_in_transaction_timeout_ms;
    out->postgres_yaml = c->postgres_yaml;
    ledger_pipeline(p, LEDGER_PIPELINE, c->topic);
    p->group = c->group ? c->group : "ledger";
    p->lookup_id_column = "id";
    p->options_yaml = c->handler_options_yaml;
    p->max_messages = c->max_messages;
    p->max_wait_ms = c->max_wait_ms;
    p->max_wait_set = 1;
    p->max_crashes = c->max_crashes;
    p->pipeline_yaml = c->pipeline_yaml;
    for (i = 0; c->kafka && c->kafka[i] && c->kafka[i + 1]; i += 2) {
        TK_CHECK(n < TK_CONFIG_MAX_PROPS, "too many kafka properties");
        p->kafka[n].name = c->kafka[i];
        p->kafka[n++].value = c->kafka[i + 1];
    }
}

void ledger_write_config(const char *path, const ledger_config *c)
{
    tk_config cfg;

    ledger_config_fill(&cfg, c);
    tk_config_write(path, &cfg);
}

const char *ledger_exactly_bin(void)
{
    return tk_exactly_bin();
}

void ledger_migrate(const char *config, const char *log)
{
    tk_migrate(config, log);
}

pid_t ledger_start_worker(const char *config, int exit_idle_ms,
                          const char *log)
{
    return tk_worker_start(config, exit_idle_ms, log, NULL);
}

void ledger_fixture_start(ledger_fixture *f, const char *name,
                          const char *topic, int partitions)
{
    char prefix[128];

    memset(f, 0, sizeof *f);
    snprintf(prefix, sizeof prefix, "exactly-%s", name);
    tk_tmpdir(prefix, f->dir, sizeof f->dir);
    snprintf(f->config, sizeof f->config, "%s/ledger.yaml", f->dir);
    snprintf(f->log, sizeof f->log, "%s/worker.log", f->dir);
    tk_pg_create_db(name, f->conninfo, sizeof f->conninfo);
    ledger_setup_db(f->conninfo);
    f->mock = tk_mock_start(1);
    f->topic = topic;
    f->partitions = partitions;
    tk_mock_create_topic(f->mock, topic, partitions);
}

void ledger_fixture_config(ledger_fixture *f, ledger_config *c)
{
    c->bootstraps = f->mock->bootstraps;
    c->conninfo = f->conninfo;
    c->topic = f->topic;
    ledger_write_config(f->config, c);
    ledger_migrate(f->config, f->log);
}

void ledger_fixture_stop(ledger_fixture *f)
{
    tk_mock_stop(f->mock);
    f->mock = NULL;
    ledger_cleanup_dir(f->dir);
}

void ledger_produce_wave(const ledger_fixture *f, size_t n, uint64_t seed,
                         int64_t *counts)
{
    int64_t more[LEDGER_ACCOUNTS];
    int i;

    tk_produce_ids(f->mock->bootstraps, f->topic, n, LEDGER_ACCOUNTS,
                   f->partitions, seed, more);
    for (i = 0; i < LEDGER_ACCOUNTS; i++)
        counts[i] += more[i];
}

int ledger_run_to_idle(const char *config, int idle_ms, int timeout_ms,
                       const char *log)
{
    return tk_worker_run(config, idle_ms, timeout_ms, log, NULL);
}

int64_t ledger_rows(PGconn *db)
{
    return tk_sql_int64(db, "SELECT count(*) FROM ledger");
}

/* ------------------------------------------------------------------ */
/* Logs                                                                */
/* ------------------------------------------------------------------ */

int ledger_read_summary(const char *log, ledger_summary *out)
{
    return tk_summary(log, LEDGER_PIPELINE, out);
}

/* ------------------------------------------------------------------ */
/* Kafka                                                               */
/* ------------------------------------------------------------------ */

int64_t ledger_wait_stored(PGconn *db, int p, int64_t want, int timeout_ms)
{
    return tk_sql_wait_int64(db, want, timeout_ms,
                             "SELECT next_offset FROM exactly.offsets "
                             "WHERE pipeline = '%s' AND partition = %d",
                             LEDGER_PIPELINE, p);
}

const char *const ledger_kafka_eager[] = {
    "session.timeout.ms", "6000", "heartbeat.interval.ms", "500", NULL};
const char *const ledger_kafka_cooperative[] = {
    "session.timeout.ms", "6000", "heartbeat.interval.ms", "500",
    "partition.assignment.strategy", "cooperative-sticky", NULL};

void ledger_high_watermarks(const char *bootstraps, const char *topic,
                            int partitions, int64_t *hw)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt;
    rd_kafka_resp_err_t err;
    char errstr[512];
    rd_kafka_t *rk;
    int p;

    TK_CHECK(rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, errstr,
                               sizeof errstr) == RD_KAFKA_CONF_OK &&
                 rd_kafka_conf_set(conf, "client.id", "ledger-check", errstr,
                                   sizeof errstr) == RD_KAFKA_CONF_OK,
             "watermark client config: %s", errstr);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    TK_CHECK(rk != NULL, "rd_kafka_new (watermarks): %s", errstr);

    /* The topic must have exactly the partitions the test expects, or
     * offsets on an unexpected partition would go unchecked. */
    rkt = rd_kafka_topic_new(rk, topic, NULL);
    TK_CHECK(rkt != NULL, "rd_kafka_topic_new(%s)", topic);
    err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    TK_CHECK(err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1,
             "metadata of %s: %s", topic, rd_kafka_err2str(err));
    TK_CHECK_EQ_INT64(md->topics[0].partition_cnt, partitions,
                      "partitions of the topic");
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);

    for (p = 0; p < partitions; p++) {
        int64_t lo = -1, hi = -1;

        err = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000);
        TK_CHECK(err == RD_KAFKA_RESP_ERR_NO_ERROR,
                 "watermarks of %s [%d]: %s", topic, p, rd_kafka_err2str(err));
        TK_CHECK(lo == 0,
                 "%s [%d] starts at offset %" PRId64 ", not 0: the mock "
                 "dropped old messages (topic too large for it), so the "
                 "check cannot tell losses of the runtime from the mock's",
                 topic, p, lo);
        hw[p] = hi;
    }
    rd_kafka_destroy(rk);
}

/* ------------------------------------------------------------------ */
/* The check                                                           */
/* ------------------------------------------------------------------ */

/* Run a query and return its result, failing the test unless it returns
 * tuples. The caller PQclear()s. */
static PGresult *query_rows(PGconn *db, const char *sql)
{
    PGresult *res = PQexec(db, sql);

    TK_CHECK(res && PQresultStatus(res) == PGRES_TUPLES_OK,
             "query failed: %s  statement: %.600s",
             res ? PQresultErrorMessage(res) : PQerrorMessage(db), sql);
    return res;
}

/* Fill counts[0..n_entities) from a two-column result (entity_id text, n
 * bigint). Entities outside 1..n_entities are counted in *extra and the
 * first few are described in extra_desc. */
static void collect_counts(PGresult *res, int64_t *counts, int n_entities,
                           int *extra, char *extra_desc, size_t desc_size)
{
    size_t used = strlen(extra_desc);
    int r;

    for (r = 0; r < PQntuples(res); r++) {
        const char *id = PQgetvalue(res, r, 0);
        int64_t n = strtoll(PQgetvalue(res, r, 1), NULL, 10);
        char *end;
        long long v = strtoll(id, &end, 10);

        if (*id == '\0' || *end != '\0' || v < 1 || v > n_entities) {
            if ((*extra)++ < SHOW_MAX && used < desc_size)
                used += (size_t)snprintf(extra_desc + used, desc_size - used,
                                         " \"%s\"=%" PRId64, id, n);
            continue;
        }
        counts[v - 1] = n;
    }
}

/* Compare per-entity counts with what was produced; fail naming the first
 * few entities that differ. `what` names the source of got[]. */
static void compare_counts(const int64_t *got, const int64_t *expected,
                           int n_entities, const char *what)
{
    char desc[1024] = "";
    size_t used = 0;
    int i, bad = 0;

    for (i = 0; i < n_entities; i++) {
        if (got[i] == expected[i])
            continue;
        if (bad++ < SHOW_MAX && used < sizeof desc)
            used += (size_t)snprintf(desc + used, sizeof desc - used,
                                     " id %d: %" PRId64 " (produced %" PRId64
                                     ")",
                                     i + 1, got[i], expected[i]);
    }
    TK_CHECK(bad == 0, "%s differ from the produced counts for %d of %d "
             "entities:%s%s", what, bad, n_entities, desc,
             bad > SHOW_MAX ? " ..." : "");
}

void ledger_check_exactly_once(PGconn *db, const char *bootstraps,
                               const char *topic, int partitions,
                               int64_t total_messages,
                               const int64_t *per_entity, int n_entities)
{
    ledger_check_exactly_once_except(db, bootstraps, topic, partitions,
                                     total_messages, per_entity, n_entities,
                                     0);
}

void ledger_check_exactly_once_except(PGconn *db, const char *bootstraps,
                                      const char *topic, int partitions,
                                      int64_t total_messages,
                                      const int64_t *per_entity,
                                      int n_entities, int dead_entity)
{
    int64_t *applied = calloc((size_t)n_entities, sizeof *applied);
    int64_t n_dead = dead_entity > 0 ? per_entity[dead_entity - 1] : 0;
    int64_t *hw = calloc((size_t)partitions, sizeof *hw);
    int64_t *counters = calloc((size_t)n_entities, sizeof *counters);
    int64_t *rows = calloc((size_t)n_entities, sizeof *rows);
    char extra_desc[1024] = "";
    char *qtopic;
    int64_t sum_hw = 0, produced = 0, n, entities = 0;
    int extra = 0, p, i;
    char what[160];
    PGresult *res;

    TK_CHECK(hw && counters && rows && applied, "out of memory");
    TK_CHECK(dead_entity >= 0 && dead_entity <= n_entities,
             "dead entity %d out of range", dead_entity);
    for (i = 0; i < n_entities; i++)
        applied[i] = i + 1 == dead_entity ? 0 : per_entity[i];
    TK_CHECK(partitions > 0 && n_entities > 0,
             "ledger_check_exactly_once: %d partitions, %d entities",
             partitions, n_entities);
    qtopic = PQescapeLiteral(db, topic, strlen(topic));
    TK_CHECK(qtopic != NULL, "PQescapeLiteral: %s", PQerrorMessage(db));

    for (i = 0; i < n_entities; i++) {
        produced += per_entity[i];
        entities += per_entity[i] > 0;
    }
    TK_CHECK_EQ_INT64(produced, total_messages,
                      "sum of the per-entity counts the test kept");

    /* What Kafka holds: offsets 0 .. hw-1 of every partition. */
    ledger_high_watermarks(bootstraps, topic, partitions, hw);
    for (p = 0; p < partitions; p++)
        sum_hw += hw[p];
    TK_CHECK_EQ_INT64(sum_hw, total_messages,
                      "messages in the topic (sum of high watermarks)");

    /* Nothing was set aside but the dead entity's messages, each once. */
    if (dead_entity > 0) {
        TK_CHECK_EQ_INT64(
            tk_sql_int64(db, "SELECT count(*) FROM exactly.dead_letters "
                             "WHERE entity_id = '%d' AND topic = %s",
                         dead_entity, qtopic),
            n_dead, "dead letters of the dead entity");
        TK_CHECK_EQ_INT64(
            tk_sql_int64(db, "SELECT count(*) FROM exactly.dead_letters d "
                             "JOIN ledger l USING (topic, partition, "
                             "\"offset\")"),
            0, "offsets both applied and dead-lettered");
    }
    n = tk_sql_int64(db, "SELECT count(*) FROM exactly.dead_letters");
    if (n != n_dead) {
        char *why = tk_sql_text(
            db, "SELECT format('partition %%s offset %%s: %%s (sqlstate %%s)',"
                " partition, \"offset\", reason, sqlstate) "
                "FROM exactly.dead_letters ORDER BY id LIMIT 1");
        tk_fail("exactly.dead_letters has %" PRId64 " rows, expected %" PRId64
                "; the first: %s", n, n_dead, why ? why : "?");
    }

    /* One ledger row per offset (or, for the dead entity, one dead
     * letter): the count, then holes, then strays. */
    TK_CHECK_EQ_INT64(ledger_rows(db), total_messages - n_dead,
                      "rows in the ledger");
    for (p = 0; p < partitions; p++) {
        n = tk_sql_int64(db,
                         "SELECT count(*) FROM generate_series(0, %" PRId64
                         " - 1) AS o WHERE NOT EXISTS (SELECT 1 FROM ledger l "
                         "WHERE l.topic = %s AND l.partition = %d AND "
                         "l.\"offset\" = o) AND NOT EXISTS (SELECT 1 FROM "
                         "exactly.dead_letters d WHERE d.topic = %s AND "
                         "d.partition = %d AND d.\"offset\" = o)",
                         hw[p], qtopic, p, qtopic, p);
        if (n != 0) {
            char *first = tk_sql_text(
                db,
                "SELECT string_agg(o::text, ', ' ORDER BY o) FROM (SELECT o "
                "FROM generate_series(0, %" PRId64 " - 1) AS o WHERE NOT "
                "EXISTS (SELECT 1 FROM ledger l WHERE l.topic = %s AND "
                "l.partition = %d AND l.\"offset\" = o) AND NOT EXISTS "
                "(SELECT 1 FROM exactly.dead_letters d WHERE d.topic = %s "
                "AND d.partition = %d AND d.\"offset\" = o) ORDER BY o "
                "LIMIT %d) s",
                hw[p], qtopic, p, qtopic, p, SHOW_MAX);
            tk_fail("partition %d: %" PRId64 " of its %" PRId64
                    " offsets have no ledger row (never applied), first: %s",
                    p, n, hw[p], first ? first : "?");
        }
    }
    {
        /* (partition, high watermark) pairs as a VALUES list: at most 40
         * bytes a pair. */
        size_t cap = (size_t)partitions * 40 + 1, used = 0;
        char *values = malloc(cap);

        TK_CHECK(values != NULL, "out of memory");
        values[0] = '\0';
        for (p = 0; p < partitions; p++)
            used += (size_t)snprintf(values + used, cap - used,
                                     "%s(%d, %" PRId64 "::bigint)",
                                     p ? ", " : "", p, hw[p]);
        TK_CHECK(used < cap, "partition list overflow");
        n = tk_sql_int64(db,
                         "SELECT count(*) FROM ledger l LEFT JOIN (VALUES %s) "
                         "AS w(p, hw) ON w.p = l.partition WHERE l.topic <> %s "
                         "OR w.p IS NULL OR l.\"offset\" < 0 OR "
                         "l.\"offset\" >= w.hw",
                         values, qtopic);
        free(values);
        TK_CHECK(n == 0,
                 "%" PRId64 " ledger rows name a topic, partition or offset "
                 "that was never produced",
                 n);
    }

    /* Per entity: the counters and the ledger rows both match. */
    res = query_rows(db, "SELECT entity_id, n FROM ledger_counters");
    collect_counts(res, counters, n_entities, &extra, extra_desc,
                   sizeof extra_desc);
    PQclear(res);
    TK_CHECK(extra == 0, "ledger_counters has %d entities that were never "
             "produced:%s", extra, extra_desc);
    compare_counts(counters, applied, n_entities, "ledger_counters.n");
    res = query_rows(db, "SELECT entity_id, count(*) FROM ledger GROUP BY 1");
    collect_counts(res, rows, n_entities, &extra, extra_desc,
                   sizeof extra_desc);
    PQclear(res);
    TK_CHECK(extra == 0, "the ledger has rows for %d entities that were "
             "never produced:%s", extra, extra_desc);
    compare_counts(rows, applied, n_entities, "ledger rows per entity");

    /* The stored positions: one row per partition, at the high watermark. */
    n = tk_sql_int64(db, "SELECT count(*) FROM exactly.offsets "
                         "WHERE pipeline = '%s' AND topic = %s",
                     LEDGER_PIPELINE, qtopic);
    TK_CHECK_EQ_INT64(n, partitions, "rows of the topic in exactly.offsets");
    for (p = 0; p < partitions; p++) {
        snprintf(what, sizeof what, "next_offset of partition %d in "
                 "exactly.offsets (its high watermark)", p);
        TK_CHECK_EQ_INT64(
            tk_sql_int64(db,
                         "SELECT coalesce(max(next_offset), -1) FROM "
                         "exactly.offsets WHERE pipeline = '%s' AND "
                         "topic = %s AND partition = %d",
                         LEDGER_PIPELINE, qtopic, p),
            hw[p], what);
    }

    tk_note("exactly-once verified: topic %s, %d partitions, %" PRId64
            " offsets (= high watermarks), %" PRId64 " ledger rows, one per "
            "offset, none missing or extra; %" PRId64 " entities' counters "
            "and rows equal the produced counts; next_offset = high "
            "watermark on every partition; %" PRId64 " dead letters",
            topic, partitions, sum_hw, total_messages - n_dead, entities,
            n_dead);
    PQfreemem(qtopic);
    free(applied);
    free(hw);
    free(counters);
    free(rows);
}

int64_t ledger_check_consistent(PGconn *db, const char *topic, int partitions)
{
    char *qtopic = PQescapeLiteral(db, topic, strlen(topic));
    PGresult *res;
    char sql[2048];
    int64_t rows;

    TK_CHECK(qtopic != NULL, "PQescapeLiteral: %s", PQerrorMessage(db));
    /* One statement, so one snapshot even while a worker commits. */
    snprintf(sql, sizeof sql,
             "WITH per_part AS ("
             " SELECT p, coalesce(o.next_offset, 0) AS stored, l.c, l.m"
             " FROM generate_series(0, %d - 1) AS p"
             " LEFT JOIN exactly.offsets o ON o.pipeline = '%s'"
             "  AND o.topic = %s AND o.partition = p"
             " CROSS JOIN LATERAL (SELECT count(*) AS c,"
             "  coalesce(max(\"offset\") + 1, 0) AS m FROM ledger l"
             "  WHERE l.topic = %s AND l.partition = p) l)"
             " SELECT (SELECT count(*) FROM ledger),"
             "  (SELECT coalesce(sum(n), 0) FROM ledger_counters),"
             "  (SELECT string_agg(format('partition %%s: next_offset %%s,"
             " %%s ledger rows up to offset %%s', p, stored, c, m - 1), '; ')"
             "   FROM per_part WHERE stored <> c OR c <> m)",
             partitions, LEDGER_PIPELINE, qtopic, qtopic);
    res = query_rows(db, sql);
    TK_CHECK(PQntuples(res) == 1, "consistency query returned %d rows",
             PQntuples(res));
    rows = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    TK_CHECK(PQgetisnull(res, 0, 2),
             "stored offsets and ledger disagree (a batch's writes and its "
             "offset advance did not commit together): %s",
             PQgetvalue(res, 0, 2));
    TK_CHECK(strtoll(PQgetvalue(res, 0, 1), NULL, 10) == rows,
             "ledger_counters add up to %s but the ledger has %" PRId64
             " rows: counter and ledger writes did not commit together",
             PQgetvalue(res, 0, 1), rows);
    PQclear(res);
    PQfreemem(qtopic);
    return rows;
}
