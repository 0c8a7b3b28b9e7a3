/*
 * reach.h - whether a Kafka client reaches its cluster, for /readyz.
 *
 * librdkafka says that every broker is down (the error callback's
 * RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) but not when one is usable again.
 * The owner of a client (a worker's consumer, a relay's producer) records
 * the first (kafka_reach_down), looks for the second itself
 * (kafka_reach_probe, once a second: it never waits) and counts itself
 * not ready once the outage has lasted KAFKA_DOWN_NOT_READY_MS
 * (kafka_reach_ok). Used by the one thread that serves the client's
 * callbacks.
 */
#ifndef EXACTLY_KAFKA_REACH_H
#define EXACTLY_KAFKA_REACH_H

#include <librdkafka/rdkafka.h>

/* How long every broker may be down before the client's owner is not
 * ready: a broker that closes an idle connection (reconnected at once),
 * or one back within this time, does not flip /readyz. */
#define KAFKA_DOWN_NOT_READY_MS 3000

typedef struct kafka_reach {
    /* > 0: since when every broker is down, as librdkafka said, with
     * none found usable since. 0: no outage. */
    long long down_since_ms;
} kafka_reach;

/* librdkafka said every broker is down (said again at each such error:
 * the outage starts at the first). */
void kafka_reach_down(kafka_reach *k, long long now);

/* A broker is usable again (kafka_reach_probe, or an answer of the
 * cluster the owner saw): ends the outage. Returns how long it lasted,
 * in ms, or -1 when there was none. */
long long kafka_reach_up(kafka_reach *k, long long now);

/* During an outage: whether a broker of rk is usable now, asked without
 * waiting (librdkafka returns __TRANSPORT at once when none is up; with
 * one up it sends a metadata request, whose answer nobody waits for: one
 * request per outage). 0 outside an outage. The caller ends the outage
 * (kafka_reach_up) when this says 1. */
int kafka_reach_probe(const kafka_reach *k, rd_kafka_t *rk);

/* 1 unless every broker has been down for KAFKA_DOWN_NOT_READY_MS at
 * now. */
int kafka_reach_ok(const kafka_reach *k, long long now);

#endif
