/*
 * tk_kafka.h: librdkafka's mock cluster, producing, consuming, watermarks.
 * Part of testkit (testkit.h includes every part).
 */
#ifndef EXACTLY_TK_KAFKA_H
#define EXACTLY_TK_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "tk_checks.h"

/* ------------------------------------------------------------------ */
/* Kafka: the in-process mock cluster                                  */
/* ------------------------------------------------------------------ */

/* A running mock cluster. `bootstraps` ("127.0.0.1:port,...") is the
 * bootstrap.servers string; the other members are testkit's. */
typedef struct tk_mock {
    const char *bootstraps;          /* read-only, lives until tk_mock_stop */
    rd_kafka_t *rk;                  /* private: the handle hosting the mock */
    rd_kafka_mock_cluster_t *cluster; /* private: use tk_mock_cluster() */
} tk_mock;

/* Start a mock cluster of `brokers` brokers (>= 1) listening on loopback.
 * Fails the test on error. Stop it with tk_mock_stop(). */
tk_mock *tk_mock_start(int brokers);

/* Create `topic` with `partitions` partitions, replication factor 1. */
void tk_mock_create_topic(tk_mock *m, const char *topic, int partitions);

/* The bootstrap.servers string of m. */
const char *tk_mock_bootstraps(const tk_mock *m);

/* The mock cluster, for error injection (rd_kafka_mock_push_request_errors,
 * rd_kafka_mock_broker_set_down, ...). Borrowed: valid until tk_mock_stop. */
rd_kafka_mock_cluster_t *tk_mock_cluster(const tk_mock *m);

/* A Kafka outage as /readyz on 127.0.0.1:port must show it: broker of m
 * down, /readyz 503 within 10 s while /healthz stays 200, the broker up,
 * /readyz 200 within 15 s; notes both times. Fails the test, showing
 * log's tail, otherwise. */
void tk_mock_readyz_outage(tk_mock *m, int32_t broker, int port,
                           const char *log);

/* Stop the cluster and free m. Accepts NULL. */
void tk_mock_stop(tk_mock *m);

/* ------------------------------------------------------------------ */
/* Kafka: producing and consuming                                      */
/* ------------------------------------------------------------------ */

#define TK_MSG_MAX_HEADERS 4

/* One message header; value NULL means a null header value. */
typedef struct tk_header {
    const char *name;
    const void *value;
    size_t value_len;
} tk_header;

/* One message to produce. Key or value NULL means a null key/value. */
typedef struct tk_msg {
    int32_t partition;        /* -1: chosen by key hash (murmur2, as Java) */
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
    size_t n_headers;         /* <= TK_MSG_MAX_HEADERS */
    tk_header headers[TK_MSG_MAX_HEADERS];
} tk_msg;

/* Produce n messages to topic with an idempotent producer (acks=all,
 * linger.ms=5) and wait for every delivery report. Fails the test on any
 * delivery error or if not all are delivered within 60 s. Key, value and
 * header bytes are copied; the caller keeps ownership of msgs. */
void tk_produce(const char *bootstraps, const char *topic,
                const tk_msg *msgs, size_t n);

/* Produce n_messages zero-payload messages (empty value) whose key is a
 * decimal entity id in 1..n_entities drawn pseudo-randomly (deterministic
 * for a given seed); message i goes to partition i % n_partitions. If
 * counts_out is not NULL it must hold n_entities elements:
 * counts_out[id - 1] receives how many messages named entity id. Returns
 * how many distinct entities were named. Fails the test on any error. */
size_t tk_produce_ids(const char *bootstraps, const char *topic,
                      size_t n_messages, size_t n_entities,
                      int32_t n_partitions, uint64_t seed,
                      int64_t *counts_out);

/* Produce n messages with empty values whose keys are the decimal ids[i],
 * message i to partitions[i] (partitions NULL: by key hash), in order, so
 * that the offsets of one partition follow the order of ids. Fails the test
 * on any error. */
void tk_produce_int_keys(const char *bootstraps, const char *topic,
                         const int *partitions, const int *ids, size_t n);

/* The entity id tk_produce_ids() uses for its i-th message with that seed
 * and n_entities; lets a test predict what was produced. */
int64_t tk_id_for(uint64_t seed, size_t i, size_t n_entities);

/* The high watermark of topic/partition as the broker reports it; fails
 * the test when it cannot be read. */
int64_t tk_high_watermark(const char *bootstraps, const char *topic,
                          int32_t partition);

/* Consume topic from the beginning in consumer group `group`
 * (auto.offset.reset=earliest, isolation.level=read_committed) until
 * `expected` messages arrived or timeout_ms passed; then wait a further
 * 500 ms for surplus messages. Returns how many were seen. If
 * per_partition is not NULL it must hold n_partitions elements and
 * receives per-partition counts (messages of higher partitions fail the
 * test). A consumer group join on the mock takes about 3 s. */
int64_t tk_consume_count(const char *bootstraps, const char *topic,
                         const char *group, int64_t expected, int timeout_ms,
                         int64_t *per_partition, int32_t n_partitions);

#endif /* EXACTLY_TK_KAFKA_H */
