/*
 * A partition the worker paused, revoked and assigned back to the same
 * worker by a rebalance, fetches again once it is claimed.
 *
 * librdkafka keeps an application's pause of a partition across an
 * unassign and a later assign; the group's default assignors are eager,
 * so every rebalance revokes all of a member's partitions and mostly
 * gives the same ones back. Two ways a worker pauses its partitions:
 *
 *   fenced   a batch of partition 0 is refused by the fence (the test
 *            bumps the row's owner_epoch), which stops and pauses that
 *            partition until a new claim;
 *   breaker  the database goes away (its backends terminated and
 *            ALLOW_CONNECTIONS false), so the circuit breaker pauses every
 *            partition; the claims of the rebalance wait for the database,
 *            which then comes back.
 *
 * Then a bystander joins the group (subscribed to another topic), which
 * makes the worker's eager rebalance revoke and re-assign every
 * partition. More messages arrive; within a generous bound every stored
 * offset must reach its high watermark, and the run must be exactly once.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "ledger_check.h"
#include "testkit.h"

#define PARTITIONS 3
#define WAVE 300
#define BYSTANDER_TOPIC "bystander"
/* A mock rebalance waits up to session.timeout.ms for members to rejoin;
 * two cores shared with other work: generous. */
#define REBALANCE_TIMEOUT_MS 60000
/* How long the worker may take to apply a wave it can fetch. */
#define APPLY_TIMEOUT_MS 90000

/* Sum of the stored offsets, waited for until it is want (or the bound). */
static int64_t wait_stored(PGconn *db, int64_t want)
{
    return tk_sql_wait_int64(db, want, APPLY_TIMEOUT_MS,
                             "SELECT coalesce(sum(next_offset), 0) FROM "
                             "exactly.offsets WHERE pipeline = '%s'",
                             LEDGER_PIPELINE);
}

/* A plain consumer in the worker's group, subscribed to another topic:
 * its join makes the group rebalance. */
static rd_kafka_t *bystander_join(const char *bootstraps)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *t;
    rd_kafka_t *rk;

    TK_CHECK(rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, err,
                               sizeof err) == RD_KAFKA_CONF_OK &&
                 rd_kafka_conf_set(conf, "group.id", "ledger", err,
                                   sizeof err) == RD_KAFKA_CONF_OK &&
                 rd_kafka_conf_set(conf, "session.timeout.ms", "6000", err,
                                   sizeof err) == RD_KAFKA_CONF_OK &&
                 rd_kafka_conf_set(conf, "heartbeat.interval.ms", "500", err,
                                   sizeof err) == RD_KAFKA_CONF_OK &&
                 rd_kafka_conf_set(conf, "enable.auto.commit", "false", err,
                                   sizeof err) == RD_KAFKA_CONF_OK,
             "bystander config: %s", err);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    TK_CHECK(rk != NULL, "bystander: %s", err);
    rd_kafka_poll_set_consumer(rk);
    t = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(t, BYSTANDER_TOPIC,
                                      RD_KAFKA_PARTITION_UA);
    TK_CHECK(rd_kafka_subscribe(rk, t) == RD_KAFKA_RESP_ERR_NO_ERROR,
             "bystander subscribe");
    rd_kafka_topic_partition_list_destroy(t);
    return rk;
}

/* Polls the bystander until it holds its topic's partition: the group
 * has rebalanced, so the worker was revoked and assigned again. */
static void bystander_wait_assigned(rd_kafka_t *rk, const char *log)
{
    int64_t deadline = tk_now_ms() + REBALANCE_TIMEOUT_MS;
    int held = 0;

    while (!held && tk_now_ms() < deadline) {
        rd_kafka_topic_partition_list_t *a = NULL;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m)
            rd_kafka_message_destroy(m);
        if (rd_kafka_assignment(rk, &a) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            held = a->cnt > 0;
            rd_kafka_topic_partition_list_destroy(a);
        }
    }
    LEDGER_CHECK_LOG(held, log, "the bystander never joined the group");
}

static void bystander_leave(rd_kafka_t *rk)
{
    (void)rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

/* Lets connections to dbname in (allow) or keeps them out, on the
 * server's maintenance database; kept out, every backend connected to it
 * is terminated too. */
static void database_allow(const char *dbname, int allow)
{
    PGconn *admin = tk_pg_connect(tk_pg_admin_conninfo());

    tk_sql(admin, "ALTER DATABASE \"%s\" ALLOW_CONNECTIONS %s", dbname,
           allow ? "true" : "false");
    if (!allow)
        tk_sql(admin, "SELECT count(pg_terminate_backend(pid)) FROM "
                      "pg_stat_activity WHERE datname = '%s'",
               dbname);
    PQfinish(admin);
}

static void run_case(const char *name, int breaker)
{
    int64_t counts[LEDGER_ACCOUNTS] = {0};
    ledger_fixture f;
    ledger_config c;
    rd_kafka_t *by;
    PGconn *db;
    char *dbname;
    int64_t stored;
    pid_t pid;
    int status, claims;

    ledger_fixture_start(&f, name, name, PARTITIONS);
    tk_mock_create_topic(f.mock, BYSTANDER_TOPIC, 1);
    memset(&c, 0, sizeof c);
    c.max_messages = 50;
    c.max_wait_ms = 20;
    c.kafka = ledger_short_session;
    ledger_fixture_config(&f, &c);
    db = tk_pg_connect(f.conninfo);
    dbname = tk_sql_text(db, "SELECT current_database()");

    pid = ledger_start_worker(f.config, 0, f.log);
    tk_wait_claims(f.log, 0, PARTITIONS, pid, REBALANCE_TIMEOUT_MS);
    ledger_produce_wave(&f, WAVE, 1, counts);
    stored = wait_stored(db, WAVE);
    LEDGER_CHECK_LOG(stored == WAVE, f.log,
                     "first wave: stored offsets add up to %" PRId64
                     ", not %d", stored, WAVE);
    claims = tk_claims(f.log, 0);

    if (breaker) {
        /* The database goes away: every partition is paused. */
        PQfinish(db);
        database_allow(dbname, 0);
        LEDGER_CHECK_LOG(tk_wait_log(f.log, "pausing all partitions", 1, pid,
                                     60000, &status),
                         f.log, "the breaker did not open (status %d)",
                         status);
    } else {
        /* Another owner's epoch: partition 0's next batch is fenced and
         * the partition stopped (paused). */
        tk_sql(db, "UPDATE exactly.offsets SET owner_epoch = owner_epoch + 1 "
                   "WHERE partition = 0");
        ledger_produce_wave(&f, WAVE, 2, counts);
        LEDGER_CHECK_LOG(tk_wait_log(f.log, "partition taken over", 1, pid,
                                     60000, &status),
                         f.log, "partition 0 was not fenced (status %d)",
                         status);
    }

    /* An eager rebalance: revoked and assigned again, to the same worker. */
    by = bystander_join(f.mock->bootstraps);
    bystander_wait_assigned(by, f.log);

    if (breaker) {
        LEDGER_CHECK_LOG(tk_wait_log(f.log, "cannot claim assigned partitions "
                                            "yet", 1, pid, 60000, &status),
                         f.log, "the claims did not wait for the database "
                                "(status %d)", status);
        database_allow(dbname, 1);
        db = tk_pg_connect(f.conninfo);
    }
    tk_wait_claims(f.log, 0, claims + PARTITIONS, pid, REBALANCE_TIMEOUT_MS);

    ledger_produce_wave(&f, WAVE, 3, counts);
    stored = wait_stored(db, breaker ? 2 * WAVE : 3 * WAVE);
    LEDGER_CHECK_LOG(stored == (breaker ? 2 * WAVE : 3 * WAVE), f.log,
                     "partitions paused before the rebalance do not fetch "
                     "after it: stored offsets add up to %" PRId64
                     ", not %d, %d s after the last wave",
                     stored, breaker ? 2 * WAVE : 3 * WAVE,
                     APPLY_TIMEOUT_MS / 1000);

    bystander_leave(by);
    status = tk_terminate(pid, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited with %d", status);
    ledger_check_exactly_once(db, f.mock->bootstraps, f.topic, PARTITIONS,
                              breaker ? 2 * WAVE : 3 * WAVE, counts,
                              LEDGER_ACCOUNTS);
    free(dbname);
    PQfinish(db);
    ledger_fixture_stop(&f);
}

/* With an argument (fenced or breaker), runs that case alone. */
int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "fenced") == 0)
        run_case("paused_fenced", 0);
    if (argc < 2 || strcmp(argv[1], "breaker") == 0)
        run_case("paused_breaker", 1);
    return 0;
}
