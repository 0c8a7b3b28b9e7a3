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
 * The owner tells kafka_refill_due the queue's length after each take
 * and how many it took; once the queue was (about) full and has since
 * fallen below half of both limits, kafka_refill_wake sends each leader
 * of the owner's partitions a ListOffsets request for their latest
 * offsets, which wakes its thread: the partitions are fetched again while
 * half a queue is still there to take. The answer is not needed and not
 * waited for. No memory is added: the queue's limits stay what they
 * were. Used by the one thread that consumes.
 */
#ifndef EXACTLY_KAFKA_REFILL_H
#define EXACTLY_KAFKA_REFILL_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

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

/* A take of taken messages left queued in the queue: 1 when the fetchers
 * are to be woken now (the queue held within a tenth of a limit, where
 * librdkafka stops fetching, when a take began, and is now below half of
 * both), else 0. */
int kafka_refill_due(kafka_refill *r, size_t queued, size_t taken);

/* Wakes the broker threads that lead parts (the offsets in parts are left
 * as they were), without waiting: the requests are handed to those
 * threads and their answers dropped when they come. Returns 0 when
 * nothing was asked: no partition, no memory, or librdkafka refused at
 * once (every broker down); else 1 (it cannot tell a partition whose
 * leader it does not know, which it asks nothing about, from the rest). */
int kafka_refill_wake(rd_kafka_t *rk,
                      const rd_kafka_topic_partition_list_t *parts);

#endif
