/* producer.h - the Kafka producer configuration an outbox relay runs with. */
#ifndef EXACTLY_PRODUCER_H
#define EXACTLY_PRODUCER_H

#include <librdkafka/rdkafka.h>

#include "config.h"

/*
 * The producer configuration of relay r: every property of the top-level
 * kafka section, then the relay's own (which win), then the defaults the
 * relay relies on unless written: enable.idempotence=true, acks=all and
 * partitioner=murmur2_random (a key lands where a Java producer puts it).
 * The configuration loader has already refused properties that would break
 * order or idempotence (tables_relay.c). Returns NULL with errbuf set
 * ("FILE:LINE:COLUMN: kafka property 'x': why") when librdkafka refuses a
 * property.
 */
rd_kafka_conf_t *exactly_kafka_producer_conf(const exactly_config *cfg,
                                             const cfg_relay *r,
                                             const char *client_id,
                                             char *errbuf, size_t errbuf_size);

#endif
