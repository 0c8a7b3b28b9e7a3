/* source.h - the Kafka consumer configuration a pipeline runs with. */
#ifndef EXACTLY_SOURCE_H
#define EXACTLY_SOURCE_H

#include <librdkafka/rdkafka.h>

#include "config.h"

/* The consumer configuration of pipeline pl: every property from the file,
 * checked against the ones exactly owns, plus its fixed settings. Writes
 * the reset policy for partitions without a stored offset into auto_reset
 * (16 bytes). NULL with errbuf set when a property is refused. */
rd_kafka_conf_t *exactly_kafka_conf(const exactly_config *cfg,
                                    const cfg_pipeline *pl, char *auto_reset,
                                    const char *client_id, char *errbuf,
                                    size_t errbuf_size);

#endif
