/*
 * tk_kafka.c: the mock cluster, producing, consuming and watermarks.
 * The contract of each function is in the header.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "testkit.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Kafka: mock cluster                                                 */
/* ------------------------------------------------------------------ */

/* rd_kafka_conf_set or fail. */
static void tk_conf_set(rd_kafka_conf_t *conf, const char *name,
                        const char *value)
{
    char errstr[512];

    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr) !=
        RD_KAFKA_CONF_OK)
        tk_fail("librdkafka property %s=%s: %s", name, value, errstr);
}

tk_mock *tk_mock_start(int brokers)
{
    tk_mock *m;
    rd_kafka_conf_t *conf;
    char errstr[512];

    if (brokers < 1)
        tk_fail("tk_mock_start: brokers must be >= 1, got %d", brokers);
    m = calloc(1, sizeof *m);
    if (m == NULL)
        tk_fail("out of memory");

    /* The handle only hosts the mock's threads; it never connects, so say
     * nothing about bootstrap servers and keep its log to warnings. */
    conf = rd_kafka_conf_new();
    tk_conf_set(conf, "client.id", "tk-mock-host");
    tk_conf_set(conf, "log_level", "4");
    m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (m->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        tk_fail("rd_kafka_new for the mock cluster: %s", errstr);
    }
    m->cluster = rd_kafka_mock_cluster_new(m->rk, brokers);
    if (m->cluster == NULL)
        tk_fail("rd_kafka_mock_cluster_new(%d brokers) failed", brokers);
    m->bootstraps = rd_kafka_mock_cluster_bootstraps(m->cluster);
    if (m->bootstraps == NULL || m->bootstraps[0] == '\0')
        tk_fail("the mock cluster has no bootstrap servers");
    return m;
}

void tk_mock_create_topic(tk_mock *m, const char *topic, int partitions)
{
    rd_kafka_resp_err_t err;

    if (partitions < 1)
        tk_fail("topic %s: partitions must be >= 1, got %d", topic,
                partitions);
    err = rd_kafka_mock_topic_create(m->cluster, topic, partitions, 1);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        tk_fail("creating mock topic %s (%d partitions): %s", topic,
                partitions, rd_kafka_err2str(err));
}

const char *tk_mock_bootstraps(const tk_mock *m)
{
    return m->bootstraps;
}

rd_kafka_mock_cluster_t *tk_mock_cluster(const tk_mock *m)
{
    return m->cluster;
}

void tk_mock_stop(tk_mock *m)
{
    if (m == NULL)
        return;
    if (m->cluster != NULL)
        rd_kafka_mock_cluster_destroy(m->cluster);
    if (m->rk != NULL)
        rd_kafka_destroy(m->rk);
    free(m);
}

/* ------------------------------------------------------------------ */
/* Kafka: producing                                                    */
/* ------------------------------------------------------------------ */

typedef struct tk_producer {
    rd_kafka_t *rk;
    const char *topic;
    int64_t sent;
    int64_t delivered;
    int64_t failed;
    char first_error[512];
} tk_producer;

static void tk_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg,
                           void *opaque)
{
    tk_producer *p = opaque;

    (void)rk;
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        p->delivered++;
        return;
    }
    if (p->failed++ == 0)
        snprintf(p->first_error, sizeof p->first_error,
                 "partition %" PRId32 ": %s", msg->partition,
                 rd_kafka_err2str(msg->err));
}

static void tk_producer_open(tk_producer *p, const char *bootstraps,
                             const char *topic)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[512];

    memset(p, 0, sizeof *p);
    p->topic = topic;
    tk_conf_set(conf, "bootstrap.servers", bootstraps);
    tk_conf_set(conf, "client.id", "tk-producer");
    tk_conf_set(conf, "enable.idempotence", "true");
    tk_conf_set(conf, "linger.ms", "5");
    tk_conf_set(conf, "partitioner", "murmur2_random");
    tk_conf_set(conf, "message.timeout.ms", "60000");
    tk_conf_set(conf, "queue.buffering.max.messages", "500000");
    rd_kafka_conf_set_dr_msg_cb(conf, tk_on_delivery);
    rd_kafka_conf_set_opaque(conf, p);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (p->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        tk_fail("rd_kafka_new (producer to %s): %s", bootstraps, errstr);
    }
}

/* Queue one message (payloads copied); waits while the queue is full. */
static void tk_producer_send(tk_producer *p, const tk_msg *msg)
{
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_resp_err_t err;
    size_t i;

    if (msg->n_headers > TK_MSG_MAX_HEADERS)
        tk_fail("tk_msg has %zu headers, at most %d allowed", msg->n_headers,
                TK_MSG_MAX_HEADERS);
    for (;;) {
        if (msg->n_headers > 0) {
            hdrs = rd_kafka_headers_new(msg->n_headers);
            for (i = 0; i < msg->n_headers; i++) {
                const tk_header *h = &msg->headers[i];
                err = rd_kafka_header_add(hdrs, h->name, -1, h->value,
                                          h->value ? (ssize_t)h->value_len : 0);
                if (err)
                    tk_fail("header %s: %s", h->name, rd_kafka_err2str(err));
            }
        }
        /* librdkafka copies the payloads (F_COPY) and never writes them:
         * casting away const is safe. */
        err = rd_kafka_producev(
            p->rk, RD_KAFKA_V_TOPIC(p->topic),
            RD_KAFKA_V_PARTITION(msg->partition < 0 ? RD_KAFKA_PARTITION_UA
                                                    : msg->partition),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY((void *)(uintptr_t)msg->key, msg->key_len),
            RD_KAFKA_V_VALUE((void *)(uintptr_t)msg->value, msg->value_len),
            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            break; /* hdrs now belong to the message */
        if (hdrs != NULL)
            rd_kafka_headers_destroy(hdrs);
        hdrs = NULL;
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            tk_fail("producing to %s: %s", p->topic, rd_kafka_err2str(err));
        rd_kafka_poll(p->rk, 10);
    }
    p->sent++;
    rd_kafka_poll(p->rk, 0);
}

/* Wait for every delivery report, fail on any error, destroy. */
static void tk_producer_finish(tk_producer *p)
{
    rd_kafka_resp_err_t err = rd_kafka_flush(p->rk, 60000);

    if (p->failed > 0)
        tk_fail("%" PRId64 " of %" PRId64 " message(s) to %s not delivered; "
                "first: %s", p->failed, p->sent, p->topic, p->first_error);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR || p->delivered != p->sent)
        tk_fail("only %" PRId64 " of %" PRId64 " message(s) to %s delivered "
                "within 60 s (%s)", p->delivered, p->sent, p->topic,
                rd_kafka_err2str(err));
    rd_kafka_destroy(p->rk);
    p->rk = NULL;
}

void tk_produce(const char *bootstraps, const char *topic,
                const tk_msg *msgs, size_t n)
{
    tk_producer p;
    size_t i;

    tk_producer_open(&p, bootstraps, topic);
    for (i = 0; i < n; i++)
        tk_producer_send(&p, &msgs[i]);
    tk_producer_finish(&p);
}

/* splitmix64: a fixed, well-mixed function of its input. */
static uint64_t tk_mix64(uint64_t x)
{
    x += UINT64_C(0x9e3779b97f4a7c15);
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

int64_t tk_id_for(uint64_t seed, size_t i, size_t n_entities)
{
    if (n_entities == 0)
        tk_fail("tk_id_for: n_entities must be >= 1");
    return (int64_t)(tk_mix64(tk_mix64(seed) ^ (uint64_t)i) % n_entities) + 1;
}

size_t tk_produce_ids(const char *bootstraps, const char *topic,
                      size_t n_messages, size_t n_entities,
                      int32_t n_partitions, uint64_t seed,
                      int64_t *counts_out)
{
    tk_producer p;
    int64_t *counts = counts_out;
    size_t i, distinct = 0;
    char key[24];
    tk_msg msg;

    if (n_entities == 0 || n_partitions < 1)
        tk_fail("tk_produce_ids: need n_entities >= 1 and n_partitions >= 1");
    if (counts == NULL) {
        counts = calloc(n_entities, sizeof *counts);
        if (counts == NULL)
            tk_fail("out of memory");
    } else {
        memset(counts, 0, n_entities * sizeof *counts);
    }

    memset(&msg, 0, sizeof msg);
    tk_producer_open(&p, bootstraps, topic);
    for (i = 0; i < n_messages; i++) {
        int64_t id = tk_id_for(seed, i, n_entities);
        int len = snprintf(key, sizeof key, "%" PRId64, id);

        msg.partition = (int32_t)(i % (size_t)n_partitions);
        msg.key = key;
        msg.key_len = (size_t)len;
        tk_producer_send(&p, &msg);
        if (counts[id - 1]++ == 0)
            distinct++;
    }
    tk_producer_finish(&p);
    if (counts != counts_out)
        free(counts);
    return distinct;
}

void tk_produce_int_keys(const char *bootstraps, const char *topic,
                         const int *partitions, const int *ids, size_t n)
{
    tk_producer p;
    char key[24];
    tk_msg msg;
    size_t i;

    memset(&msg, 0, sizeof msg);
    tk_producer_open(&p, bootstraps, topic);
    for (i = 0; i < n; i++) {
        msg.partition = partitions ? (int32_t)partitions[i] : -1;
        msg.key_len = (size_t)snprintf(key, sizeof key, "%d", ids[i]);
        msg.key = key;
        tk_producer_send(&p, &msg);
    }
    tk_producer_finish(&p);
}

/* ------------------------------------------------------------------ */
/* Kafka: consuming                                                    */
/* ------------------------------------------------------------------ */

int64_t tk_consume_count(const char *bootstraps, const char *topic,
                         const char *group, int64_t expected, int timeout_ms,
                         int64_t *per_partition, int32_t n_partitions)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *subs;
    rd_kafka_t *rk;
    rd_kafka_resp_err_t err;
    char errstr[512];
    int64_t seen = 0, deadline, reached_at = -1;

    if (per_partition != NULL)
        memset(per_partition, 0, (size_t)n_partitions * sizeof *per_partition);
    tk_conf_set(conf, "bootstrap.servers", bootstraps);
    tk_conf_set(conf, "client.id", "tk-consumer");
    tk_conf_set(conf, "group.id", group);
    tk_conf_set(conf, "auto.offset.reset", "earliest");
    tk_conf_set(conf, "enable.auto.commit", "false");
    tk_conf_set(conf, "isolation.level", "read_committed");
    tk_conf_set(conf, "queued.min.messages", "100000");
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        tk_fail("rd_kafka_new (consumer of %s): %s", topic, errstr);
    }
    rd_kafka_poll_set_consumer(rk);
    subs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(subs, topic, RD_KAFKA_PARTITION_UA);
    err = rd_kafka_subscribe(rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (err)
        tk_fail("subscribe to %s: %s", topic, rd_kafka_err2str(err));

    deadline = tk_now_ms() + timeout_ms;
    for (;;) {
        int64_t now = tk_now_ms();
        rd_kafka_message_t *msg;

        if (reached_at < 0 && seen >= expected)
            reached_at = now;
        if (reached_at >= 0 && now - reached_at >= 500)
            break;
        if (reached_at < 0 && now >= deadline)
            break;
        msg = rd_kafka_consumer_poll(rk, 100);
        if (msg == NULL)
            continue;
        if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            seen++;
            if (per_partition != NULL) {
                if (msg->partition < 0 || msg->partition >= n_partitions)
                    tk_fail("message from partition %" PRId32 " of %s, "
                            "expected fewer than %" PRId32, msg->partition,
                            topic, n_partitions);
                per_partition[msg->partition]++;
            }
        } else if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            /* Transient ones (topic metadata not there yet) heal; a real
             * problem shows as a short count at the deadline. */
            tk_note("consumer of %s: %s", topic, rd_kafka_message_errstr(msg));
        }
        rd_kafka_message_destroy(msg);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return seen;
}

int64_t tk_high_watermark(const char *bootstraps, const char *topic,
                          int32_t partition)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[512];
    int64_t lo = -1, hi = -1;
    rd_kafka_resp_err_t err;
    rd_kafka_t *rk;

    TK_CHECK(rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, errstr,
                               sizeof errstr) == RD_KAFKA_CONF_OK,
             "%s", errstr);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    TK_CHECK(rk != NULL, "rd_kafka_new: %s", errstr);
    err = rd_kafka_query_watermark_offsets(rk, topic, partition, &lo, &hi,
                                           10000);
    TK_CHECK(err == RD_KAFKA_RESP_ERR_NO_ERROR, "watermarks of %s [%d]: %s",
             topic, (int)partition, rd_kafka_err2str(err));
    rd_kafka_destroy(rk);
    return hi;
}

/* Sets broker of m down or up, failing the test if the mock refuses. */
static void broker_set(tk_mock *m, int32_t broker, int up)
{
    rd_kafka_resp_err_t err =
        up ? rd_kafka_mock_broker_set_up(tk_mock_cluster(m), broker)
           : rd_kafka_mock_broker_set_down(tk_mock_cluster(m), broker);

    TK_CHECK(err == RD_KAFKA_RESP_ERR_NO_ERROR, "rd_kafka_mock_broker_set_%s",
             up ? "up" : "down");
}

/* Fails the test with msg (a code filled in), showing log's tail. */
#define READYZ_CHECK(cond, log, ...)                                       \
    do {                                                                   \
        if (!(cond)) {                                                     \
            tk_log_tail((log), 40);                                        \
            tk_fail(__VA_ARGS__);                                          \
        }                                                                  \
    } while (0)

void tk_mock_readyz_outage(tk_mock *m, int32_t broker, int port,
                           const char *log)
{
    int64_t t0;
    int code;

    broker_set(m, broker, 0);
    t0 = tk_now_ms();
    code = tk_http_wait_code(port, "/readyz", 503, 10000);
    READYZ_CHECK(code == 503, log, "/readyz answered %d 10 s after every "
                 "broker went down, expected 503", code);
    tk_note("every broker down: /readyz 503 after %.1f s",
            (double)(tk_now_ms() - t0) / 1000.0);
    READYZ_CHECK(tk_http_wait_code(port, "/healthz", 200, 1000) == 200, log,
                 "/healthz does not answer 200 during a Kafka outage");
    broker_set(m, broker, 1);
    t0 = tk_now_ms();
    code = tk_http_wait_code(port, "/readyz", 200, 15000);
    READYZ_CHECK(code == 200, log, "/readyz answered %d 15 s after the "
                 "broker came back, expected 200", code);
    tk_note("broker back: /readyz 200 after %.1f s",
            (double)(tk_now_ms() - t0) / 1000.0);
}
