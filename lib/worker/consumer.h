/*
 * consumer.h - the worker's Kafka consumer: created from the pipeline's
 * configuration, with static membership, its error and rebalance events
 * handed to its owner through a table of callbacks. It calls nothing of
 * its owner but that table.
 */
#ifndef EXACTLY_WORKER_CONSUMER_H
#define EXACTLY_WORKER_CONSUMER_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "config.h"
#include "err.h"

/* What the consumer's owner hears. arg is handed back to each. */
typedef struct worker_consumer_cbs {
    /* A fatal consumer error (logged): the owner stops. */
    void (*fatal)(void *arg);
    /* Whether a (non-fatal) consumer error is logged now. */
    int (*error_due)(void *arg);
    /* librdkafka found every broker of the cluster down
     * (RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN); said again at each such
     * moment, never when one is back. */
    void (*all_brokers_down)(void *arg);
    /* A rebalance: err is RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS (assign
     * parts) or a revoke; lost: the assignment was lost; cooperative: the
     * group's protocol is cooperative. librdkafka waits for the owner's
     * assign/unassign, which may come after the callback returns. */
    void (*rebalance)(void *arg, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *parts, int lost,
                      int cooperative);
    void *arg;
} worker_consumer_cbs;

/* The consumer, its opaque for librdkafka: it must stay where it is
 * while rk lives. */
typedef struct worker_consumer {
    /* Set by the owner before worker_consumer_create. */
    const exactly_config *cfg;
    const cfg_pipeline *p;
    const char *owner;         /* host:pid:index, in the client.id */
    /* The supervisor's slot identity, or NULL: a dynamic member. */
    const char *slot_instance;
    worker_consumer_cbs cbs;

    /* Set by worker_consumer_create. */
    rd_kafka_t *rk;
    int max_poll_ms;           /* the consumer's max.poll.interval.ms */
    /* For partitions without a stored offset: "earliest", "latest" or
     * "error" (auto.offset.reset). */
    char auto_reset[16];
    /* The group.instance.id the consumer joins with ("" for none). */
    char instance_id[256];
} worker_consumer;

/* Creates the consumer c->rk (the configuration is checked:
 * EXACTLY_ECONFIG) without joining the group; worker_consumer_subscribe
 * joins it, once the owner can serve partitions. */
exactly_err worker_consumer_create(worker_consumer *c, char *errbuf,
                                   size_t errbuf_size);
exactly_err worker_consumer_subscribe(worker_consumer *c, char *errbuf,
                                      size_t errbuf_size);

#endif
