/* producer.h - the Kafka producer configuration an outbox relay runs with. */
#ifndef EXACTLY_PRODUCER_H
#define EXACTLY_PRODUCER_H

#include <librdkafka/rdkafka.h>

#include "config.h"

/*
 * The producer configuration of relay r: the properties of the top-level
 * kafka section that apply to a producer (that section also configures
 * the pipelines' consumers: the ones librdkafka marks consumer-only are
 * left out), then every one of the relay's own (which win), then the
 * defaults the relay relies on unless written: enable.idempotence=true,
 * acks=all and partitioner=murmur2_random (a key lands where a Java
 * producer puts it). With mode: transactional, transactional.id is
 * "exactly-relay-NAME" unless written. The configuration loader has
 * already refused properties that would break order or idempotence
 * (tables_relay.c). Returns NULL with errbuf set
 * ("FILE:LINE:COLUMN: kafka property 'x': why") when librdkafka refuses a
 * property.
 */
rd_kafka_conf_t *exactly_kafka_producer_conf(const exactly_config *cfg,
                                             const cfg_relay *r,
                                             const char *client_id,
                                             char *errbuf, size_t errbuf_size);

/*
 * The consumer a transactional relay reads its last position record with:
 * the same properties as its producer (servers, security), then
 * isolation.level=read_committed, no offset commits, partition EOF
 * events. Returns NULL with errbuf set.
 */
rd_kafka_conf_t *exactly_kafka_position_reader_conf(const exactly_config *cfg,
                                                    const cfg_relay *r,
                                                    char *errbuf,
                                                    size_t errbuf_size);

#endif
