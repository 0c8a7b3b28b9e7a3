/*
 * refill.h - keeps a consumer's fetchers from sleeping while its owner
 * empties a queue that was full.
 *
 * librdkafka 2.0 stops fetching a partition while the consumer's local
 * queue holds queued.min.messages messages or queued.max.messages.kbytes
 * of payload (a subscribed consumer has one queue for all its
 * partitions), and looks at the partition again only when its broker's
 * thread next wakes: on an answer or an operation for that broker, at the
 * latest a second later. A consumer that takes the queue's worth in less
 * than a second then runs dry and waits for the rest of that second, at
 * every refill (librdkafka 2.2 added fetch.queue.backoff.ms for this
 * wait; 2.0 refuses it).
 *
 * The owner tells kafka_refill_due the queue's length after each take;
 * once the queue was (about) full and has since fallen below half of
 * both limits, kafka_refill_wake sends each leader of the owner's
 * partitions a ListOffsets request for their latest offsets, which wakes
 * its thread: the partitions are fetched again while half a queue is
 * still there to take. The answer is not needed. No memory is added: the
 * queue's limits stay what they were. Used by the one thread that
 * consumes.
 */
#ifndef EXACTLY_KAFKA_REFILL_H
#define EXACTLY_KAFKA_REFILL_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

/* How long kafka_refill_wake waits for the answers it does not need: the
 * requests are on their way before it waits at all, so a slow broker
 * costs the caller at most this. */
#define KAFKA_REFILL_WAIT_MS 50

typedef struct kafka_refill {
    double max_msgs;  /* the consumer's queued.min.messages */
    double max_bytes; /* its queued.max.messages.kbytes, in bytes */
    double mean_len;  /* payload bytes per message taken, a running mean */
    int full;         /* the queue was full since the last wake */
} kafka_refill;

/* Reads the limits from rk's configuration (librdkafka's defaults when
 * they cannot be read). */
void kafka_refill_init(kafka_refill *r, rd_kafka_t *rk);

/* A message of len payload bytes was taken (one per take is enough: the
 * mean only scales the length into bytes). */
void kafka_refill_sample(kafka_refill *r, size_t len);

/* The queue holds queued messages after a take: 1 when the fetchers are
 * to be woken now (the queue was within a tenth of a limit, where
 * librdkafka stops fetching, and is now below half of both), else 0. */
int kafka_refill_due(kafka_refill *r, size_t queued);

/* Wakes the broker threads that lead parts (the offsets in parts are left
 * as they were). Waits at most KAFKA_REFILL_WAIT_MS. Returns 1 when the
 * requests went out, 0 when there was nothing to ask (no partition) or
 * no memory. */
int kafka_refill_wake(rd_kafka_t *rk,
                      const rd_kafka_topic_partition_list_t *parts);

#endif
