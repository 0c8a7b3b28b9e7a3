/*
 * The harness tests itself: a database of our own, the in-process mock
 * cluster, producing and consuming, child processes, and (under CTest) the
 * exactly-mock-cluster tool serving another process over TCP. If this
 * fails, every other integration test's result means nothing.
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

#include "testkit.h"

#define N_IDS 1000
#define N_ENTITIES 50
#define N_PARTITIONS 4
#define SEED 42

static void check_postgres(void)
{
    char conninfo[1024], other[1024];
    PGconn *conn;
    char *text;

    tk_pg_create_db("smoke", conninfo, sizeof conninfo);
    tk_pg_create_db("smoke", other, sizeof other);
    TK_CHECK(strcmp(conninfo, other) != 0, "two databases share \"%s\"",
             conninfo);
    tk_note("database: %s", conninfo);

    conn = tk_pg_connect(conninfo);
    tk_sql(conn, "CREATE TABLE t (id bigint PRIMARY KEY, n int NOT NULL)");
    tk_sql(conn, "INSERT INTO t SELECT g, g %% 7 FROM generate_series(1, %d) g",
           100);
    TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM t"), 100,
                      "rows in t");
    TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT sum(id) FROM t WHERE n = %d",
                                   3),
                      3 + 10 + 17 + 24 + 31 + 38 + 45 + 52 + 59 + 66 + 73 +
                          80 + 87 + 94,
                      "sum of ids with n = 3");
    text = tk_sql_text(conn, "SELECT current_database()");
    TK_CHECK(text != NULL && strncmp(text, "smoke_", 6) == 0,
             "current_database() is %s", text ? text : "NULL");
    free(text);
    text = tk_sql_text(conn, "SELECT NULL::text");
    TK_CHECK(text == NULL, "SQL NULL came back as \"%s\"", text);
    TK_CHECK_EQ_STR(PQparameterStatus(conn, "server_encoding"), "UTF8",
                    "server encoding");
    PQfinish(conn);

    /* The second database is independent of the first and can be dropped. */
    conn = tk_pg_connect(other);
    TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM pg_class "
                                         "WHERE relname = 't'"),
                      0, "tables named t in the second database");
    text = tk_sql_text(conn, "SELECT current_database()");
    PQfinish(conn);
    tk_pg_drop_db(other);
    conn = tk_pg_connect(tk_pg_admin_conninfo());
    TK_CHECK_EQ_INT64(tk_sql_int64(conn, "SELECT count(*) FROM pg_database "
                                         "WHERE datname = '%s'", text),
                      0, "databases still named like the dropped one");
    PQfinish(conn);
    free(text);
}

/* Consume N_IDS messages and check partition, key range and per-entity
 * counts against what the producer reported. */
static void check_consume_ids(const char *bootstraps, const char *topic,
                              const int64_t *counts)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *subs;
    int64_t seen_per_entity[N_ENTITIES] = {0};
    int64_t per_partition[N_PARTITIONS] = {0};
    int64_t seen = 0, deadline;
    char errstr[512];
    rd_kafka_t *rk;
    int i;

    TK_CHECK(rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, errstr,
                               sizeof errstr) == RD_KAFKA_CONF_OK &&
                 rd_kafka_conf_set(conf, "group.id", "smoke-ids", errstr,
                                   sizeof errstr) == RD_KAFKA_CONF_OK &&
                 rd_kafka_conf_set(conf, "auto.offset.reset", "earliest",
                                   errstr, sizeof errstr) == RD_KAFKA_CONF_OK,
             "consumer config: %s", errstr);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    TK_CHECK(rk != NULL, "rd_kafka_new: %s", errstr);
    rd_kafka_poll_set_consumer(rk);
    subs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(subs, topic, RD_KAFKA_PARTITION_UA);
    TK_CHECK(rd_kafka_subscribe(rk, subs) == RD_KAFKA_RESP_ERR_NO_ERROR,
             "subscribe %s", topic);
    rd_kafka_topic_partition_list_destroy(subs);

    deadline = tk_now_ms() + 30000;
    while (seen < N_IDS && tk_now_ms() < deadline) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, 200);
        char key[24];
        long id;

        if (msg == NULL)
            continue;
        if (msg->err) {
            tk_note("consumer: %s", rd_kafka_message_errstr(msg));
            rd_kafka_message_destroy(msg);
            continue;
        }
        TK_CHECK(msg->partition >= 0 && msg->partition < N_PARTITIONS,
                 "message on partition %" PRId32, msg->partition);
        TK_CHECK(msg->len == 0, "zero-payload message has %zu bytes",
                 msg->len);
        TK_CHECK(msg->key != NULL && msg->key_len > 0 &&
                     msg->key_len < sizeof key,
                 "bad key length %zu", msg->key_len);
        memcpy(key, msg->key, msg->key_len);
        key[msg->key_len] = '\0';
        id = strtol(key, NULL, 10);
        TK_CHECK(id >= 1 && id <= N_ENTITIES, "key \"%s\" out of range", key);
        /* Message i went to partition i % 4, so offset o of partition p
         * is message 4 * o + p: its id is predictable. */
        TK_CHECK_EQ_INT64(id,
                          tk_id_for(SEED,
                                    (size_t)(msg->offset * N_PARTITIONS +
                                             msg->partition),
                                    N_ENTITIES),
                          "entity id at this partition/offset");
        seen_per_entity[id - 1]++;
        per_partition[msg->partition]++;
        seen++;
        rd_kafka_message_destroy(msg);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);

    TK_CHECK_EQ_INT64(seen, N_IDS, "messages consumed back");
    for (i = 0; i < N_PARTITIONS; i++)
        TK_CHECK_EQ_INT64(per_partition[i], N_IDS / N_PARTITIONS,
                          "messages in one partition");
    for (i = 0; i < N_ENTITIES; i++)
        TK_CHECK_EQ_INT64(seen_per_entity[i], counts[i],
                          "messages naming one entity");
}

static void check_kafka(void)
{
    int64_t counts[N_ENTITIES];
    int64_t per_partition[2];
    int64_t sum = 0, t0;
    tk_msg msgs[3];
    size_t distinct;
    tk_mock *m;
    int i;

    m = tk_mock_start(1);
    TK_CHECK(strncmp(m->bootstraps, "127.0.0.1:", 10) == 0 ||
                 strncmp(m->bootstraps, "localhost:", 10) == 0,
             "bootstraps \"%s\" not on loopback", m->bootstraps);
    TK_CHECK(tk_mock_cluster(m) != NULL, "no mock cluster handle");
    TK_CHECK_EQ_STR(tk_mock_bootstraps(m), m->bootstraps, "bootstraps");
    tk_note("mock cluster: %s", m->bootstraps);
    tk_mock_create_topic(m, "ids", N_PARTITIONS);
    tk_mock_create_topic(m, "misc", 2);

    t0 = tk_now_ms();
    distinct = tk_produce_ids(m->bootstraps, "ids", N_IDS, N_ENTITIES,
                              N_PARTITIONS, SEED, counts);
    tk_note("produced %d ids in %" PRId64 " ms", N_IDS, tk_now_ms() - t0);
    for (i = 0; i < N_ENTITIES; i++)
        sum += counts[i];
    TK_CHECK_EQ_INT64(sum, N_IDS, "sum of per-entity counts");
    TK_CHECK(distinct > 1 && distinct <= N_ENTITIES,
             "%zu distinct entities", distinct);
    check_consume_ids(m->bootstraps, "ids", counts);

    /* tk_produce with explicit partitions, keyed partitioning and headers;
     * tk_consume_count sees exactly these. */
    memset(msgs, 0, sizeof msgs);
    msgs[0].partition = 0;
    msgs[0].key = "a";
    msgs[0].key_len = 1;
    msgs[1].partition = 1;
    msgs[1].value = "payload";
    msgs[1].value_len = 7;
    msgs[1].n_headers = 1;
    msgs[1].headers[0].name = "event-id";
    msgs[1].headers[0].value = "e-1";
    msgs[1].headers[0].value_len = 3;
    msgs[2].partition = -1;
    msgs[2].key = "by-hash";
    msgs[2].key_len = 7;
    tk_produce(m->bootstraps, "misc", msgs, 3);
    TK_CHECK_EQ_INT64(tk_consume_count(m->bootstraps, "misc", "smoke-misc", 3,
                                       30000, per_partition, 2),
                      3, "messages in misc");
    TK_CHECK(per_partition[0] >= 1 && per_partition[1] >= 1,
             "misc partitions got %" PRId64 " and %" PRId64, per_partition[0],
             per_partition[1]);

    tk_mock_stop(m);
}

static void check_processes(void)
{
    char dir[256], log[512];
    char *exit3[] = {"/bin/sh", "-c", "exit 3", NULL};
    char *echo[] = {"sh", "-c", "echo out; echo err >&2", NULL};
    char *sleeper[] = {"sleep", "30", NULL};
    char *missing[] = {"/nonexistent/program", NULL};
    pid_t pid;
    int64_t t0;

    tk_tmpdir("tk-smoke", dir, sizeof dir);
    snprintf(log, sizeof log, "%s/child.log", dir);

    pid = tk_spawn(exit3, NULL);
    TK_CHECK_EQ_INT64(tk_wait(pid, 10000), 3, "exit status of sh -c 'exit 3'");

    pid = tk_spawn(echo, log);
    TK_CHECK_EQ_INT64(tk_wait(pid, 10000), 0, "exit status of echo");
    TK_CHECK(tk_file_contains(log, "out\n") && tk_file_contains(log, "err\n"),
             "log %s lacks the child's stdout and stderr", log);

    pid = tk_spawn(missing, log);
    TK_CHECK_EQ_INT64(tk_wait(pid, 10000), 127, "exit status of exec failure");
    TK_CHECK(tk_file_contains(log, "cannot execute /nonexistent/program"),
             "log %s does not say why exec failed", log);

    t0 = tk_now_ms();
    pid = tk_spawn(sleeper, NULL);
    TK_CHECK_EQ_INT64(tk_wait(pid, 100), -1, "tk_wait on a sleeper");
    TK_CHECK(tk_now_ms() - t0 < 5000, "tk_wait(100 ms) took too long");
    TK_CHECK_EQ_INT64(tk_kill(pid, SIGKILL), 0, "tk_kill");
    TK_CHECK_EQ_INT64(tk_wait(pid, 10000), 128 + SIGKILL,
                      "status of a killed child");
    TK_CHECK_EQ_INT64(tk_kill(pid, 0), -1, "tk_kill on a reaped child");

    pid = tk_spawn(sleeper, NULL);
    TK_CHECK_EQ_INT64(tk_terminate(pid, 5000), 128 + SIGTERM,
                      "status after tk_terminate");

    tk_write_file(log, "%s=%d\n", "answer", 42);
    {
        char *text = tk_read_file(log);
        TK_CHECK_EQ_STR(text, "answer=42\n", "file contents");
        free(text);
    }
    TK_CHECK(tk_read_file("/nonexistent/file") == NULL,
             "reading a missing file");
    tk_rm_rf(dir);
    TK_CHECK(access(dir, F_OK) != 0, "%s still exists", dir);
}

/* The exactly-mock-cluster tool serves a consumer in another process. */
static void check_mock_tool(void)
{
    const char *bin = getenv("EXACTLY_MOCK_CLUSTER_BIN");
    char dir[256], file[512], log[512];
    char *bootstraps;
    pid_t pid;
    int64_t deadline;

    if (bin == NULL || bin[0] == '\0') {
        tk_note("EXACTLY_MOCK_CLUSTER_BIN not set: tool check left out");
        return;
    }
    tk_tmpdir("tk-smoke-tool", dir, sizeof dir);
    snprintf(file, sizeof file, "%s/bootstrap", dir);
    snprintf(log, sizeof log, "%s/tool.log", dir);
    {
        char *argv[] = {(char *)bin, "--topic", "tool:3", "--bootstrap-file",
                        file, "--produce-ids", "300", "--entities", "20",
                        NULL};
        pid = tk_spawn(argv, log);
    }
    deadline = tk_now_ms() + 30000;
    while (access(file, F_OK) != 0) {
        TK_CHECK(tk_wait(pid, 0) == -1, "exactly-mock-cluster exited early; "
                 "log: %s", log);
        TK_CHECK(tk_now_ms() < deadline,
                 "exactly-mock-cluster not ready in 30 s; log: %s", log);
        tk_sleep_ms(20);
    }
    bootstraps = tk_read_file(file);
    TK_CHECK(bootstraps != NULL && strchr(bootstraps, '\n') != NULL,
             "bootstrap file %s", file);
    *strchr(bootstraps, '\n') = '\0';
    TK_CHECK_EQ_INT64(tk_consume_count(bootstraps, "tool", "smoke-tool", 300,
                                       30000, NULL, 0),
                      300, "messages from exactly-mock-cluster");
    TK_CHECK_EQ_INT64(tk_terminate(pid, 10000), 0,
                      "exactly-mock-cluster exit status after SIGTERM");
    TK_CHECK(tk_file_contains(log, "produced 300 id message(s)"),
             "summary line missing from %s", log);
    free(bootstraps);
    tk_rm_rf(dir);
}

int main(void)
{
    int64_t t0 = tk_now_ms();

    check_processes();
    tk_note("processes ok");
    check_postgres();
    tk_note("postgres ok");
    check_kafka();
    tk_note("kafka ok");
    check_mock_tool();
    tk_note("harness smoke test passed in %" PRId64 " ms", tk_now_ms() - t0);
    return 0;
}
