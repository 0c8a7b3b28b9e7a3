/*
 * metrics.h - counters the workers share with their supervisor.
 *
 * The supervisor maps one region (MAP_SHARED) before it forks; each worker
 * writes only its own slot, with relaxed atomic stores, and the supervisor
 * reads every slot to answer /metrics. One writer per slot: no locks, and a
 * worker that dies leaves its last figures for the next one to continue.
 *
 * Per-partition counters are kept per slot and exposed with a `worker`
 * label: each series has one writer and only grows, whichever worker owns
 * the partition now (sum by topic and partition for the total). Gauges of
 * a partition (stored offset, watermark, lag, halted) are exposed once,
 * without a `worker` label, from its current owner only: a slot whose
 * worker is up and has it assigned, the highest owner epoch winning.
 */
#ifndef EXACTLY_METRICS_H
#define EXACTLY_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define METRICS_MAX_PARTITIONS 128
#define METRICS_TOPIC_MAX 128
/* Batch latency histogram bounds, seconds. */
#define METRICS_N_BUCKETS 12
extern const double metrics_buckets[METRICS_N_BUCKETS];

typedef enum metrics_retry_cause {
    RETRY_CONNECTION = 0, /* lost connection, shutdown */
    RETRY_SERIALIZATION,  /* 40001 */
    RETRY_DEADLOCK,       /* 40P01 */
    RETRY_TIMEOUT,        /* statement or lock timeout */
    RETRY_HANDLER,        /* careful mode after a handler failure, or apply()
                             asked to retry */
    RETRY_ENVIRONMENT,    /* privilege, missing object, ...: a person must act */
    RETRY_OTHER,
    RETRY_N_CAUSES
} metrics_retry_cause;

typedef struct metrics_partition {
    char topic[METRICS_TOPIC_MAX];
    int32_t partition;
    int32_t assigned;        /* this slot's worker owns it now */
    int32_t halted;          /* stopped loudly: see the worker's log */
    int64_t epoch;           /* owner epoch of that ownership: of two slots
                                claiming one partition, the newer owns it */
    uint64_t consumed, applied, deduplicated, dead_lettered, skipped_missing;
    int64_t stored_offset;   /* next_offset in PostgreSQL */
    int64_t high_watermark;  /* -1: unknown */
} metrics_partition;

typedef struct metrics_slot {
    char pipeline[128];
    int32_t worker;
    int32_t up;              /* process alive */
    int32_t ready;           /* connected to both services and assigned */
    uint64_t restarts;
    uint64_t batches_committed, batches_rolled_back, batches_fenced;
    uint64_t retries[RETRY_N_CAUSES];
    uint64_t dedup_expired;  /* dedup keys deleted after their retention */
    uint64_t latency_buckets[METRICS_N_BUCKETS]; /* cumulative at render */
    uint64_t latency_count;
    uint64_t latency_sum_us;
    metrics_partition parts[METRICS_MAX_PARTITIONS];
    /* The slot's totals over every process it ran, whatever partitions
     * they held: `exactly run`'s summary per pipeline adds them up. */
    uint64_t consumed, applied, deduplicated, dead_lettered, skipped_missing;
    uint64_t retries_total;
} metrics_slot;

/* Maps n zeroed slots shared with future children; NULL on failure. */
metrics_slot *metrics_map(size_t n);
void metrics_unmap(metrics_slot *slots, size_t n);

/* The entry of topic/partition in slot s, taking a free one (NULL when
 * full: such a partition is simply not reported). */
metrics_partition *metrics_part(metrics_slot *s, const char *topic,
                                int32_t partition);

void metrics_add(uint64_t *counter, uint64_t n);
void metrics_set(int64_t *gauge, int64_t v);
void metrics_observe_batch(metrics_slot *s, long long micros);

/* A worker process starts or ended in slot s: it owns no partition. */
void metrics_slot_disown(metrics_slot *s);

/* Renders every slot as Prometheus text into a malloc'd string: each
 * series once (see the top of this file). */
char *metrics_render(const metrics_slot *slots, size_t n);

/* 1 when every slot with a live worker is ready. */
int metrics_ready(const metrics_slot *slots, size_t n);

/*
 * A tiny HTTP/1.0 server for /metrics, /healthz and /readyz on a loopback
 * address ("127.0.0.1:9464"; a port is required, 0 meaning any free one).
 * metrics_listen returns the socket and writes the address it is bound to
 * into bound, or returns -1 with errbuf set. metrics_serve answers at most
 * one pending connection without blocking for long (exact paths only, a
 * query string ignored; anything else is 404), and is called from the
 * supervisor's loop.
 */
int metrics_listen(const char *addr, char *bound, size_t bound_size,
                   char *errbuf, size_t errbuf_size);
void metrics_serve(int fd, const metrics_slot *slots, size_t n);

#endif
