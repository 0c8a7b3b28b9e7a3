/*
 * admin.h - Kafka as the operator commands see it: a handle with the
 * pipeline's configuration that never joins its group, topic metadata,
 * watermarks, the group's committed offsets and members, offsets by time,
 * and a commit of given offsets (monitoring only: the truth is in
 * PostgreSQL).
 *
 * Every function writes one sentence into err when it fails; none prints.
 */
#ifndef EXACTLY_KAFKA_ADMIN_H
#define EXACTLY_KAFKA_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "config.h"

/*
 * A consumer handle with the pipeline's configuration (its group.id, so
 * committed offsets are the group's) that never subscribes, so it never
 * joins the group. client_tag names the command in client.id. Writes the
 * pipeline's auto.offset.reset policy into auto_reset (16 bytes).
 */
rd_kafka_t *kafka_admin_new(const exactly_config *cfg, const cfg_pipeline *p,
                            const char *client_tag, char *auto_reset,
                            char *err, size_t errsz);
/* Closes and destroys; NULL-safe. */
void kafka_admin_free(rd_kafka_t *rk);

/* The topic's partition count and the cluster's broker count. Returns 0,
 * or -1 with the reason in err ("not found", "cannot read metadata: ..."),
 * without the topic's name. */
int kafka_admin_topic_meta(rd_kafka_t *rk, const char *topic, int timeout_ms,
                           int *partitions, int *brokers, char *err,
                           size_t errsz);

/* The topic's partition count, or -1 with err set ("topic T: ..."). */
int kafka_admin_partition_count(rd_kafka_t *rk, const char *topic,
                                int timeout_ms, char *err, size_t errsz);

/* The low watermark and, for this read_committed handle, the last stable
 * offset as the high end: what a worker can reach. 0, or -1 with err. */
int kafka_admin_watermarks(rd_kafka_t *rk, const char *topic,
                           int32_t partition, int64_t *low, int64_t *lso,
                           int timeout_ms, char *err, size_t errsz);

/* The group's committed offsets of partitions parts[0..n) of topic into
 * out[i] (RD_KAFKA_OFFSET_INVALID: none). 0, or -1 with err. */
int kafka_admin_committed(rd_kafka_t *rk, const char *topic,
                          const int32_t *parts, size_t n, int64_t *out,
                          int timeout_ms, char *err, size_t errsz);

/* The first offset of each partition whose timestamp is at or after ms
 * into out[i] (-1: no message that recent). 0, or -1 with err. */
int kafka_admin_offsets_for_time(rd_kafka_t *rk, const char *topic,
                                 const int32_t *parts, size_t n, int64_t ms,
                                 int64_t *out, int timeout_ms, char *err,
                                 size_t errsz);

/* Commits offsets[i] of parts[i] to the handle's group. 0, or -1 with
 * librdkafka's reason in err. */
int kafka_admin_commit(rd_kafka_t *rk, const char *topic,
                       const int32_t *parts, const int64_t *offsets, size_t n,
                       char *err, size_t errsz);

/*
 * Members of a consumer group as the broker reports them. Returns 0 with
 * *members and state set, 1 when the broker cannot say (librdkafka's mock
 * cluster and brokers without ListGroups/DescribeGroups), -1 on an error
 * (err).
 */
int kafka_admin_group_members(rd_kafka_t *rk, const char *group,
                              int timeout_ms, int *members, char *state,
                              size_t state_size, char *err, size_t errsz);

#endif
