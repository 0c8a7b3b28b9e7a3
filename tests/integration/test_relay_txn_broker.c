/*
 * The outbox relay with mode: transactional against a real broker
 * (relay.h, invariant 6): what the mock cluster cannot show
 * (test_relay_txn, DESIGN 7), namely that records of a transaction that
 * never committed stay hidden from read_committed readers and that a
 * second relay's init_transactions fences the first.
 *
 * Without EXACTLY_TEST_BOOTSTRAP_SERVERS it reports itself skipped (exit
 * 77), never passed.
 *
 * With a broker: uniquely named topics (admin API) and relay (so its
 * transactional.id is new), then
 *   1. N_LIVES relays, each finding fresh rows, killed by SIGKILL at a
 *      seeded random moment; with the fault hooks, every third life
 *      between the Kafka commit and the mark (relay_txn_committed) and
 *      every third inside the open transaction (relay_txn_sent); a last
 *      relay empties the outbox; then, read with read_committed, every
 *      outbox row is on the topic exactly once and nothing else is;
 *   2. (fault hooks) a relay stalled inside its transaction (and frozen
 *      by SIGSTOP meanwhile) loses its PostgreSQL session, a second relay of the same name takes over
 *      (its init_transactions fences the first) and publishes the
 *      outbox; the first exits 1 saying it was fenced; still every row
 *      exactly once among the committed records.
 *
 * EXACTLY_TEST_SEED=<n> replays one run's choices.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ledger_check.h"
#include "relay_kit.h"
#include "seeded.h"
#include "testkit.h"

#define N_PARTITIONS 4
#define N_LIVES 21
#define ROWS_PER_LIFE 100
#define MAX_KILL_DELAY_MS 2000

static void conf_set(rd_kafka_conf_t *conf, const char *name,
                     const char *value)
{
    char errstr[512];

    TK_CHECK(rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr) ==
                 RD_KAFKA_CONF_OK,
             "%s=%s: %s", name, value, errstr);
}

/* Creates topic (compacted when asked) with the admin API and waits until
 * every partition has a leader. */
static void create_topic(const char *bootstraps, const char *topic,
                         int partitions, int compact)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_NewTopic_t *nt;
    rd_kafka_queue_t *q;
    rd_kafka_event_t *ev;
    const rd_kafka_CreateTopics_result_t *res;
    const rd_kafka_topic_result_t **results;
    size_t n_results;
    char errstr[512];
    rd_kafka_t *rk;
    int64_t deadline;

    conf_set(conf, "bootstrap.servers", bootstraps);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    TK_CHECK(rk != NULL, "rd_kafka_new (admin): %s", errstr);
    nt = rd_kafka_NewTopic_new(topic, partitions, -1, errstr, sizeof errstr);
    TK_CHECK(nt != NULL, "NewTopic %s: %s", topic, errstr);
    if (compact)
        TK_CHECK(rd_kafka_NewTopic_set_config(nt, "cleanup.policy",
                                              "compact") ==
                     RD_KAFKA_RESP_ERR_NO_ERROR,
                 "NewTopic %s: cleanup.policy", topic);
    q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    ev = rd_kafka_queue_poll(q, 60000);
    TK_CHECK(ev != NULL, "CreateTopics %s: no result in 60 s", topic);
    TK_CHECK(rd_kafka_event_error(ev) == RD_KAFKA_RESP_ERR_NO_ERROR,
             "CreateTopics %s: %s", topic, rd_kafka_event_error_string(ev));
    res = rd_kafka_event_CreateTopics_result(ev);
    TK_CHECK(res != NULL, "CreateTopics %s: unexpected event", topic);
    results = rd_kafka_CreateTopics_result_topics(res, &n_results);
    TK_CHECK(n_results == 1 && rd_kafka_topic_result_error(results[0]) ==
                                   RD_KAFKA_RESP_ERR_NO_ERROR,
             "CreateTopics %s: %s", topic,
             n_results ? rd_kafka_topic_result_error_string(results[0])
                       : "no result");
    rd_kafka_event_destroy(ev);
    rd_kafka_NewTopic_destroy(nt);
    deadline = tk_now_ms() + 60000;
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        int ready = 0, p;

        if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
            md->topic_cnt == 1 && md->topics[0].err == 0 &&
            md->topics[0].partition_cnt == partitions) {
            ready = 1;
            for (p = 0; p < partitions; p++)
                if (md->topics[0].partitions[p].leader < 0)
                    ready = 0;
        }
        if (md)
            rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        if (ready)
            break;
        TK_CHECK(tk_now_ms() < deadline, "topic %s not ready in 60 s", topic);
        tk_sleep_ms(200);
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

/* Reads every committed record of topic (read_committed, to the end of
 * each partition) into table seen(eid, part, off, n_eids). */
static void load_committed(PGconn *db, const char *bootstraps,
                           const char *topic)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *parts;
    rd_kafka_t *rk;
    char errstr[512], group[160];
    int eof = 0, p;
    int64_t deadline = tk_now_ms() + 120000;

    snprintf(group, sizeof group, "%s-reader", topic);
    conf_set(conf, "bootstrap.servers", bootstraps);
    conf_set(conf, "group.id", group);
    conf_set(conf, "enable.auto.commit", "false");
    conf_set(conf, "isolation.level", "read_committed");
    conf_set(conf, "enable.partition.eof", "true");
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    TK_CHECK(rk != NULL, "reader: %s", errstr);
    rd_kafka_poll_set_consumer(rk);
    parts = rd_kafka_topic_partition_list_new(N_PARTITIONS);
    for (p = 0; p < N_PARTITIONS; p++)
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    TK_CHECK(rd_kafka_assign(rk, parts) == RD_KAFKA_RESP_ERR_NO_ERROR,
             "assign failed");
    rd_kafka_topic_partition_list_destroy(parts);
    tk_sql(db, "DROP TABLE IF EXISTS seen");
    tk_sql(db, "CREATE TABLE seen (eid text, part int, off bigint, "
               "n_eids int)");
    while (eof < N_PARTITIONS) {
        rd_kafka_message_t *m;
        rd_kafka_headers_t *h = NULL;
        const void *v;
        size_t vlen, i;
        char eid[64] = "";

        TK_CHECK(tk_now_ms() < deadline, "reading %s: no end in 120 s",
                 topic);
        if (!(m = rd_kafka_consumer_poll(rk, 500)))
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eof++;
        } else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (rd_kafka_message_headers(m, &h) ==
                RD_KAFKA_RESP_ERR_NO_ERROR) {
                for (i = 0; rd_kafka_header_get(h, i, "event-id", &v,
                                                &vlen) ==
                            RD_KAFKA_RESP_ERR_NO_ERROR;
                     i++)
                    if (i == 0 && v)
                        snprintf(eid, sizeof eid, "%.*s",
                                 (int)(vlen < 63 ? vlen : 63),
                                 (const char *)v);
            } else {
                i = 0;
            }
            TK_CHECK(strspn(eid, "0123456789abcdef-") == strlen(eid),
                     "record %d/%" PRId64 ": unexpected event-id",
                     (int)m->partition, (int64_t)m->offset);
            tk_sql(db, "INSERT INTO seen VALUES ('%s', %d, %" PRId64 ", %d)",
                   eid, (int)m->partition, (int64_t)m->offset, (int)i);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

static void check_exactly_once(PGconn *db, const char *bootstraps,
                               const char *topic, const char *what)
{
    load_committed(db, bootstraps, topic);
    relay_check_seen_once(db, what);
    tk_note("%s: every row exactly once among the committed records", what);
}

int main(void)
{
    const char *bs = getenv("EXACTLY_TEST_BOOTSTRAP_SERVERS");
    const char *faults_built = getenv("EXACTLY_TEST_FAULTS_BUILT");
    int use_faults = faults_built && strcmp(faults_built, "1") == 0;
    char topic[96], positions[128], name[64];
    relay_fixture f;
    PGconn *db;
    uint64_t seed;
    int64_t t0 = tk_now_ms();
    int life, status, paused = 0;

    if (bs == NULL || bs[0] == '\0')
        tk_skip("needs a real Kafka broker: set "
                "EXACTLY_TEST_BOOTSTRAP_SERVERS");
    seed = seeded_pick();
    seeded_init(seed);
    tk_note("seed %llu (EXACTLY_TEST_SEED replays it)",
            (unsigned long long)seed);

    /* A broker outlives test runs: names of our own every time. */
    snprintf(name, sizeof name, "txn%d-%" PRId64, (int)getpid(),
             tk_now_ms());
    snprintf(topic, sizeof topic, "exactly-relay-%s", name);
    snprintf(positions, sizeof positions, "%s-positions", topic);
    tk_note("topics %s, %s on %s", topic, positions, bs);
    create_topic(bs, topic, N_PARTITIONS, 0);
    create_topic(bs, positions, 1, 1);

    relay_fixture_start(&f, "relay_txn_broker", bs);
    db = f.db;
    relay_fixture_config(&f, &(relay_config){.name = name,
                                             .topic = topic,
                                             .transactional = 1,
                                             .position_topic = positions,
                                             .batch_size = 50,
                                             .kafka = "linger.ms: 5"});

    /* 1. Kills. */
    for (life = 0; life < N_LIVES; life++) {
        const char *site = !use_faults        ? NULL
                           : life % 3 == 1 ? "relay_txn_committed"
                           : life % 3 == 2 ? "relay_txn_sent"
                                           : NULL;
        char faults[64];
        pid_t pid;

        tk_sql(db, "INSERT INTO exactly.outbox (key, value) SELECT "
                   "convert_to((1 + (random() * 49)::int)::text, 'UTF8'), "
                   "'v' FROM generate_series(1, %d)",
               ROWS_PER_LIFE);
        if (site) {
            snprintf(faults, sizeof(faults), "%s:%d", site,
                     1 + seeded_below(2));
            setenv("EXACTLY_FAULTS", faults, 1);
        }
        pid = relay_start(f.config, NULL, f.log);
        unsetenv("EXACTLY_FAULTS");
        if (site) {
            LEDGER_CHECK_LOG(ledger_wait_log(f.log, "fault: paused",
                                             paused + 1, pid, 60000,
                                             &status),
                             f.log, "life %d never reached %s", life, faults);
            paused++;
        } else {
            LEDGER_CHECK_LOG(ledger_wait_log(f.log, "relay publishes",
                                             life + 1, pid, 60000, &status),
                             f.log, "life %d never started", life);
            tk_sleep_ms(seeded_below(MAX_KILL_DELAY_MS));
        }
        tk_kill(pid, SIGKILL);
        status = tk_wait(pid, 10000);
        TK_CHECK(status == 128 + SIGKILL || status == 0,
                 "life %d ended with status %d", life, status);
    }
    status = relay_run_to_idle(f.config, 1000, 120000, f.log);
    LEDGER_CHECK_LOG(status == 0, f.log, "last relay exit status %d", status);
    check_exactly_once(db, bs, topic, "after the kills");
    tk_note("%d kills (%d at a fault) at %" PRId64 " ms", N_LIVES, paused,
            tk_now_ms() - t0);

    /* 2. Fencing. */
    if (use_faults) {
        pid_t first;

        tk_sql(db, "INSERT INTO exactly.outbox (key, value) SELECT "
                   "'k', 'v' FROM generate_series(1, 40)");
        setenv("EXACTLY_FAULTS", "relay_txn_sent:1", 1);
        first = relay_start(f.config, NULL, f.log);
        unsetenv("EXACTLY_FAULTS");
        LEDGER_CHECK_LOG(ledger_wait_log(f.log, "fault: paused", paused + 1,
                                         first, 60000, &status),
                         f.log, "the first relay never reached the fault");
        /* Frozen inside its transaction while it loses its session and
         * the second relay takes over and empties the outbox. */
        tk_kill(first, SIGSTOP);
        relay_terminate_sessions(db);
        status = relay_run_to_idle(f.config, 1000, 120000, f.log2);
        LEDGER_CHECK_LOG(status == 0, f.log2, "second relay exit status %d",
                         status);
        tk_kill(first, SIGCONT);
        status = tk_wait(first, 60000);
        LEDGER_CHECK_LOG(status == 1, f.log, "fenced relay exit status %d",
                         status);
        LEDGER_CHECK_LOG(tk_file_contains(f.log, "fenced: another relay took "
                                                 "over this transactional.id"),
                         f.log, "the fenced relay did not say so");
        check_exactly_once(db, bs, topic, "after the fence");
    } else {
        tk_note("fencing needs the fault hooks: not run in this build");
    }
    tk_note("done in %" PRId64 " ms", tk_now_ms() - t0);
    relay_fixture_stop(&f);
    return 0;
}
