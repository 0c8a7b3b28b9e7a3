/*
 * Duplicate events (DESIGN 1.5): the same event sits at two offsets (a
 * producer retry without idempotence, an outbox relay publishing twice).
 * Offsets cannot catch that; the dedup key (here the `event-id` header)
 * can. This test produces every shape of duplicate we know of:
 *
 *   - adjacent in one partition (almost surely inside one batch),
 *   - far apart in one partition (different batches of one run, since
 *     batch.max_messages is small),
 *   - on another partition (always another batch: batches are per
 *     partition, so only the dedup table can catch it),
 *   - in a later run, after the first copy was committed (across runs),
 *
 * plus messages without the header, which are never deduplicated even when
 * they name the same entity. Then it checks the database against a model of
 * what was produced, which the test loads into a table of its own so that
 * every comparison is one SQL statement:
 *
 *   - the ledger holds exactly one row per distinct event, at one of that
 *     event's offsets, and one row per header-less message;
 *   - ledger_counters equals the number of applied events per entity;
 *   - exactly.dedup_keys holds one row per distinct key, pointing at the
 *     offset that was applied;
 *   - the stored offsets reach the end of every partition: a duplicate's
 *     offset counts as consumed;
 *   - each run's stdout summary reports `deduplicated N` with N the number
 *     of duplicates that run saw.
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

#define TOPIC "dedup-events"
#define N_PARTITIONS 3
#define PIPELINE "dedup"
#define MAX_MSGS 1024
#define WORKER_TIMEOUT_MS 120000

/* One produced message as the model knows it. */
typedef struct model_msg {
    int32_t partition;
    int64_t offset;  /* assigned in produce order per partition */
    int64_t entity;  /* the key: an accounts.id */
    char eid[32];    /* event-id header; "" means no header */
    int run;         /* 1 or 2 */
} model_msg;

static model_msg model[MAX_MSGS];
static size_t n_model;
static int64_t next_offset_of[N_PARTITIONS];


/* Appends a message to the model (it is produced later, in this order). */
static void add_msg(int run, int32_t partition, int64_t entity,
                    const char *eid)
{
    model_msg *m;

    TK_CHECK(n_model < MAX_MSGS, "model full");
    m = &model[n_model++];
    m->run = run;
    m->partition = partition;
    m->offset = next_offset_of[partition]++;
    m->entity = entity;
    snprintf(m->eid, sizeof m->eid, "%s", eid ? eid : "");
}

/* The first model message carrying event id eid, or NULL. */
static const model_msg *find_event(const char *eid)
{
    size_t i;

    for (i = 0; i < n_model; i++)
        if (strcmp(model[i].eid, eid) == 0)
            return &model[i];
    return NULL;
}

/* Produces the model's messages of one run, in model order. tk_produce
 * uses one idempotent producer, so each partition's messages land in the
 * order given and the offsets the model assigned are the real ones (the
 * ledger check below would notice otherwise). */
static void produce_run(const char *bootstraps, int run)
{
    tk_msg *msgs = calloc(n_model, sizeof *msgs);
    char (*keys)[24] = calloc(n_model, sizeof *keys);
    size_t i, n = 0;

    TK_CHECK(msgs && keys, "out of memory");
    for (i = 0; i < n_model; i++) {
        const model_msg *m = &model[i];
        tk_msg *t;
        if (m->run != run)
            continue;
        t = &msgs[n++];
        snprintf(keys[i], sizeof keys[i], "%" PRId64, m->entity);
        t->partition = m->partition;
        t->key = keys[i];
        t->key_len = strlen(keys[i]);
        if (m->eid[0]) {
            t->n_headers = 1;
            t->headers[0].name = "event-id";
            t->headers[0].value = m->eid;
            t->headers[0].value_len = strlen(m->eid);
        }
    }
    tk_produce(bootstraps, TOPIC, msgs, n);
    free(msgs);
    free(keys);
}

/* How many of run's messages are duplicates: they carry an event id that
 * an earlier message (this run or before) already carried. */
static int64_t duplicates_in_run(int run)
{
    int64_t dups = 0;
    size_t i, j;

    for (i = 0; i < n_model; i++) {
        if (model[i].run != run || !model[i].eid[0])
            continue;
        for (j = 0; j < i; j++)
            if (strcmp(model[j].eid, model[i].eid) == 0)
                break;
        if (j < i)
            dups++;
    }
    return dups;
}

static int64_t messages_in_run(int run)
{
    int64_t n = 0;
    size_t i;

    for (i = 0; i < n_model; i++)
        n += model[i].run == run;
    return n;
}

/* Builds the two runs. Entities repeat across events on purpose: dedup is
 * by event, not by entity. */
static void build_model(void)
{
    char eid[32];
    int i, j;

    /* Run 1: 240 events over three partitions; every 8th has no header. */
    for (i = 0; i < 240; i++) {
        int32_t part = i % N_PARTITIONS;
        int64_t entity = (i * 13) % 50 + 1;
        int has_eid = i % 8 != 7;

        snprintf(eid, sizeof eid, "evt-%d", i);
        add_msg(1, part, entity, has_eid ? eid : NULL);
        if (!has_eid) {
            /* The same entity again without a header: both apply. */
            add_msg(1, part, entity, NULL);
            continue;
        }
        if (i % 20 == 5) /* adjacent: same batch, same partition */
            add_msg(1, part, entity, eid);
        if (i % 30 == 10) /* another partition: another batch */
            add_msg(1, (part + 1) % N_PARTITIONS, entity, eid);
        if (i >= 150 && i % 25 == 0) {
            /* Event i - 150 is on this same partition (150 % 3 == 0) about
             * 50 messages back: with max_messages 20 that is another batch
             * of the same run. */
            const model_msg *old;
            snprintf(eid, sizeof eid, "evt-%d", i - 150);
            old = find_event(eid);
            if (old)
                add_msg(1, part, old->entity, eid);
        }
    }
    /* Run 2, after run 1 has committed: new events, re-sent old ones (on
     * their own partition and on others) and duplicates among the new. */
    for (j = 0; j < 60; j++) {
        int ev = 240 + j;
        int32_t part = ev % N_PARTITIONS;
        int64_t entity = (ev * 13) % 50 + 1;

        snprintf(eid, sizeof eid, "evt-%d", ev);
        add_msg(2, part, entity, j % 8 == 7 ? NULL : eid);
        if (j % 10 == 3 && j % 8 != 7)
            add_msg(2, part, entity, eid);
        if (j % 6 == 0) {
            const model_msg *old;
            snprintf(eid, sizeof eid, "evt-%d", j * 4);
            old = find_event(eid);
            if (old)
                add_msg(2, (int32_t)(j / 6) % N_PARTITIONS, old->entity, eid);
        }
        if (j == 59) {
            /* A run-2 event re-sent on another partition within run 2. */
            const model_msg *old;
            snprintf(eid, sizeof eid, "evt-%d", 241);
            old = find_event(eid);
            TK_CHECK(old != NULL, "evt-241 not in the model");
            add_msg(2, (old->partition + 1) % N_PARTITIONS, old->entity, eid);
        }
    }
}

/* Loads the model into table expected_msgs, so the checks are SQL. */
static void load_model(PGconn *conn)
{
    size_t i;

    tk_sql(conn, "CREATE TABLE expected_msgs (partition int, \"offset\" bigint,"
                 " entity bigint, eid text, run int,"
                 " PRIMARY KEY (partition, \"offset\"))");
    for (i = 0; i < n_model; i++) {
        const model_msg *m = &model[i];
        if (m->eid[0])
            tk_sql(conn, "INSERT INTO expected_msgs VALUES (%d, %" PRId64
                         ", %" PRId64 ", '%s', %d)",
                   (int)m->partition, m->offset, m->entity, m->eid, m->run);
        else
            tk_sql(conn, "INSERT INTO expected_msgs VALUES (%d, %" PRId64
                         ", %" PRId64 ", NULL, %d)",
                   (int)m->partition, m->offset, m->entity, m->run);
    }
}

/* Runs the worker until it is idle for 3 s; returns its summary. */
static tk_run_summary run_worker(const char *dir, const char *config, int run)
{
    char log[512];
    int64_t t0 = tk_now_ms();
    tk_run_summary s;
    int status;

    snprintf(log, sizeof log, "%s/run%d.log", dir, run);
    status = tk_exactly(log, WORKER_TIMEOUT_MS, "run", "-c", config,
                        "--exit-idle", "3000", NULL);
    LEDGER_CHECK_LOG(status == 0, log, "run %d: worker exited %d; log %s",
                     run, status, log);
    tk_note("run %d: worker done in %" PRId64 " ms", run, tk_now_ms() - t0);
    tk_summary_required(log, PIPELINE, &s);
    return s;
}

/* Every comparison of the database with the model, after `runs` runs. */
static void check_database(PGconn *conn, const char *bootstraps, int runs)
{
    int64_t distinct_events, headerless, produced;
    int32_t p;

    distinct_events = tk_sql_int64(conn, "SELECT count(DISTINCT eid) FROM "
                                         "expected_msgs WHERE run <= %d",
                                   runs);
    headerless = tk_sql_int64(conn, "SELECT count(*) FROM expected_msgs "
                                    "WHERE eid IS NULL AND run <= %d",
                              runs);
    produced = tk_sql_int64(conn, "SELECT count(*) FROM expected_msgs "
                                  "WHERE run <= %d",
                            runs);
    tk_note("after run %d: %" PRId64 " messages, %" PRId64
            " distinct events, %" PRId64 " without event-id",
            runs, produced, distinct_events, headerless);

    TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM ledger"),
                      distinct_events + headerless,
                      "ledger rows (one per distinct event + one per "
                      "header-less message)");
    /* Each event applied once, at one of its own offsets. */
    TK_CHECK_EQ_INT64(
        tk_sql_int64(conn,
                     "SELECT count(*) FROM (SELECT e.eid, count(l.\"offset\")"
                     " AS n FROM expected_msgs e LEFT JOIN ledger l"
                     " ON l.topic = '" TOPIC "' AND l.partition = e.partition"
                     " AND l.\"offset\" = e.\"offset\""
                     " WHERE e.eid IS NOT NULL AND e.run <= %d"
                     " GROUP BY e.eid) s WHERE n <> 1",
                     runs),
        0, "events not applied exactly once");
    /* Header-less messages are never deduplicated: every one applied. */
    TK_CHECK_EQ_INT64(
        tk_sql_int64(conn,
                     "SELECT count(*) FROM expected_msgs e WHERE e.eid IS NULL"
                     " AND e.run <= %d AND NOT EXISTS (SELECT 1 FROM ledger l"
                     " WHERE l.topic = '" TOPIC "' AND l.partition ="
                     " e.partition AND l.\"offset\" = e.\"offset\")",
                     runs),
        0, "header-less messages missing from the ledger");
    /* Nothing in the ledger that the model does not expect, and each row
     * names the entity its message's key carried. */
    TK_CHECK_EQ_INT64(
        tk_sql_int64(conn,
                     "SELECT count(*) FROM ledger l LEFT JOIN expected_msgs e"
                     " ON l.partition = e.partition AND l.\"offset\" ="
                     " e.\"offset\" WHERE l.topic <> '" TOPIC "'"
                     " OR e.\"offset\" IS NULL OR l.entity_id <> e.entity::text"
                     " OR e.run > %d",
                     runs),
        0, "ledger rows that match no expected message");
    /* Counters: per entity, its distinct events plus header-less messages. */
    TK_CHECK_EQ_INT64(
        tk_sql_int64(conn,
                     "SELECT count(*) FROM (SELECT entity::text AS id,"
                     " count(DISTINCT eid) + count(*) FILTER (WHERE eid IS"
                     " NULL) AS n FROM expected_msgs WHERE run <= %d"
                     " GROUP BY entity) x FULL JOIN ledger_counters c"
                     " ON c.entity_id = x.id WHERE c.n IS DISTINCT FROM x.n",
                     runs),
        0, "entities whose ledger_counters.n is wrong");
    /* One dedup key per distinct event, pointing at its applied offset. */
    TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM "
                                         "exactly.dedup_keys"),
                      distinct_events, "rows in exactly.dedup_keys");
    TK_CHECK_EQ_INT64(
        tk_sql_int64(conn,
                     "SELECT count(*) FROM exactly.dedup_keys d"
                     " JOIN expected_msgs e ON e.partition = d.partition"
                     " AND e.\"offset\" = d.\"offset\""
                     " AND sha256(convert_to(e.eid, 'UTF8')) = d.dedup_key"
                     " JOIN ledger l ON l.topic = d.topic AND l.partition ="
                     " d.partition AND l.\"offset\" = d.\"offset\""
                     " WHERE d.pipeline = '" PIPELINE "' AND d.topic = '"
                     TOPIC "'"),
        distinct_events,
        "dedup keys that name their event at the offset that was applied");
    TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM "
                                         "exactly.dead_letters"),
                      0, "dead letters");

    /* The stored offsets reach the partition ends: duplicates count as
     * consumed, so no partition shows lag for them. */
    for (p = 0; p < N_PARTITIONS; p++) {
        int64_t hw = tk_high_watermark(bootstraps, TOPIC, p);
        TK_CHECK_EQ_INT64(hw,
                          tk_sql_int64(conn, "SELECT count(*) FROM "
                                             "expected_msgs WHERE partition = "
                                             "%d AND run <= %d",
                                       (int)p, runs),
                          "high watermark vs messages produced to partition");
        TK_CHECK_EQ_INT64(
            tk_sql_int64(conn,
                         "SELECT next_offset FROM exactly.offsets WHERE"
                         " pipeline = '" PIPELINE "' AND topic = '" TOPIC "'"
                         " AND partition = %d",
                         (int)p),
            hw, "stored next_offset vs the partition's high watermark");
    }
}

int main(void)
{
    char conninfo[1024], dir[256], config[512];
    int64_t t0 = tk_now_ms();
    PGconn *conn;
    tk_mock *m;
    tk_config cfg;
    tk_pipeline *pl = &cfg.pipelines[0];
    tk_run_summary s;
    int run;

    build_model();
    tk_note("model: %zu messages, run 1: %" PRId64 " (%" PRId64
            " duplicates), run 2: %" PRId64 " (%" PRId64 " duplicates)",
            n_model, messages_in_run(1), duplicates_in_run(1),
            messages_in_run(2), duplicates_in_run(2));
    /* The model must exercise what the test claims to test. */
    TK_CHECK(duplicates_in_run(1) >= 10 && duplicates_in_run(2) >= 10,
             "too few duplicates in the model");

    m = tk_mock_start(1);
    tk_mock_create_topic(m, TOPIC, N_PARTITIONS);

    tk_pg_create_db("dedup", conninfo, sizeof conninfo);
    conn = tk_pg_connect(conninfo);
    ledger_create_accounts(conn, "accounts", LEDGER_ACCOUNTS);
    ledger_create_tables(conn, "ledger", "ledger_counters");
    load_model(conn);

    tk_tmpdir("exactly-dedup", dir, sizeof dir);
    snprintf(config, sizeof config, "%s/dedup.yaml", dir);
    /* max_messages 20 splits each partition's run into several batches, so
     * far-apart duplicates in one partition meet only in dedup_keys.
     * session.timeout.ms 3000: librdkafka 2.0.2's mock keeps a member that
     * left the group until its session expires (45 s by default), which
     * would stall the second run's join for that long (the session less
     * 1 s). */
    tk_config_init(&cfg, tk_mock_bootstraps(m), conninfo);
    cfg.kafka[0] = (tk_prop){"session.timeout.ms", "3000"};
    cfg.kafka[1] = (tk_prop){"heartbeat.interval.ms", "300"};
    ledger_pipeline(pl, PIPELINE, TOPIC);
    pl->group = "dedup-test";
    pl->on_missing = "skip";
    pl->max_messages = 20;
    pl->max_wait_ms = 200;
    pl->dedup_from = "header";
    pl->dedup_header = "event-id";
    pl->dedup_retention = "7d";
    tk_config_write(config, &cfg);
    {
        char mlog[512];
        snprintf(mlog, sizeof mlog, "%s/migrate.log", dir);
        tk_migrate(config, mlog);
    }

    for (run = 1; run <= 2; run++) {
        produce_run(tk_mock_bootstraps(m), run);
        s = run_worker(dir, config, run);
        tk_note("run %d summary: consumed %" PRId64 " applied %" PRId64
                " deduplicated %" PRId64,
                run, s.consumed, s.applied, s.deduplicated);
        TK_CHECK_EQ_INT64(s.deduplicated, duplicates_in_run(run),
                          "summary 'deduplicated' vs duplicates produced");
        TK_CHECK_EQ_INT64(s.consumed, messages_in_run(run),
                          "summary 'consumed' vs messages produced");
        TK_CHECK_EQ_INT64(s.applied,
                          messages_in_run(run) - duplicates_in_run(run),
                          "summary 'applied'");
        TK_CHECK_EQ_INT64(s.dead_lettered, 0, "summary 'dead-lettered'");
        check_database(conn, tk_mock_bootstraps(m), run);
    }

    PQfinish(conn);
    tk_mock_stop(m);
    tk_rm_rf(dir);
    tk_note("dedup test passed in %" PRId64 " ms", tk_now_ms() - t0);
    return 0;
}
