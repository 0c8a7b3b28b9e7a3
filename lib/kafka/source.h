/* source.h - the Kafka consumer configuration a pipeline runs with, and
 * the calls on one of its partitions. */
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

/* Calls on one partition of consumer rk. */

/* Commits offset to the group: for monitoring (lag) only, PostgreSQL
 * holds the positions; a failure is ignored. */
void exactly_kafka_commit(rd_kafka_t *rk, const char *topic,
                          int32_t partition, int64_t offset);
/* Moves the fetch position to offset: EXACTLY_OK, or EXACTLY_EKAFKA
 * (logged) when the consumer did not, for the call or for the partition:
 * it may then still fetch from where it was. */
exactly_err exactly_kafka_seek(rd_kafka_t *rk, const char *topic,
                               int32_t partition, int64_t offset);
/* Pauses (pause 1) or resumes (0) fetching. */
void exactly_kafka_pause(rd_kafka_t *rk, const char *topic, int32_t partition,
                         int pause);
/* The consumer's fetch position, or -1 when it has none. */
int64_t exactly_kafka_position(rd_kafka_t *rk, const char *topic,
                               int32_t partition);

#endif
