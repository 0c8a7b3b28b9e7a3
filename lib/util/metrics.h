/*
 * metrics.h - counters the workers share with their supervisor.
 *
 * The layout of the shared region and the calls of its writers; it sits
 * under every layer that writes a slot (lib/worker, lib/relay) and the
 * supervisor that reads them (process/metrics_render.h).
 *
 * The supervisor maps one region (MAP_SHARED) before it forks; each worker
 * writes only its own slot, with relaxed atomic stores, and the supervisor
 * reads every slot to answer /metrics. One writer process per slot: no
 * locks between processes (the ring of errors, which the threads of that
 * process share, is a seqlock: see metrics_error), and a worker that dies
 * leaves its last figures for the next one to continue.
 *
 * Per-partition counters are kept per slot and exposed with a `worker`
 * label: each series has one writer and only grows, whichever worker owns
 * the partition now (sum by topic and partition for the total). Gauges of
 * a partition (stored offset, watermark, lag, halted) are exposed once,
 * without a `worker` label, from its current owner only: a slot whose
 * worker is up and has it assigned, the highest owner epoch winning.
 *
 * A slot runs either a pipeline's worker (pipeline set) or an outbox relay
 * (relay.name set, pipeline empty): the relay process writes its counters
 * and what it last read of its outbox's backlog into `relay`; up, ready,
 * meant, pid, restarts and the ring of errors are the slot's, as for a
 * worker.
 */
#ifndef EXACTLY_METRICS_H
#define EXACTLY_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* Partitions one slot reports at once: a worker owning more reports the
 * first ones only (metrics_part). */
#define METRICS_MAX_PARTITIONS 1024
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

/* What a partition is doing, as its worker last published it
 * (metrics_partition.state). */
typedef enum metrics_part_state {
    PART_RUNNING = 0,
    PART_BACKING_OFF,  /* a batch failed; retried after a backoff */
    PART_BREAKER_OPEN, /* the database is gone: every partition paused */
    PART_HALTED,       /* stopped loudly: see the worker's log */
    PART_FENCED,       /* another owner took it */
    PART_ISOLATING,    /* applying one record at a time (crash guard) */
    PART_N_STATES
} metrics_part_state;

extern const char *const metrics_part_state_names[PART_N_STATES];

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
    int32_t state;           /* metrics_part_state */
} metrics_partition;

/* The last warnings and errors a worker logged: error number e (counted
 * from 0 over the slot's life) is in entry e % METRICS_N_ERRORS, the
 * newest is n_errors - 1. The writers of a ring are the threads of the
 * one process running the slot (its own lines, and librdkafka's from its
 * threads): metrics_note_error takes them one at a time. Each entry is a
 * seqlock: seq is 2e + 1 while error e is written into it and 2e + 2
 * once it is whole, so a reader (metrics_error_read) copies an entry and
 * keeps it only if seq said 2e + 2 before and after the copy; a line
 * being rewritten, or cut short by a writer that died, is skipped. */
#define METRICS_N_ERRORS 8
#define METRICS_ERROR_MAX 320
typedef struct metrics_error {
    uint64_t seq;            /* see above */
    int64_t at_ms;           /* wall clock, ms since the epoch */
    char line[METRICS_ERROR_MAX];
} metrics_error;

/* What a relay process publishes (lib/relay/). Counters only grow over
 * the processes the slot ran; the backlog gauges are those of the running
 * relay, read from its outbox at most every METRICS_RELAY_BACKLOG_MS. */
#define METRICS_RELAY_BACKLOG_MS 1000
typedef struct metrics_relay {
    char name[128];          /* set: the slot runs this relay */
    uint64_t published;      /* rows acknowledged and marked or deleted */
    uint64_t dead_lettered;  /* rows refused for good, kept with a reason */
    uint64_t resent;         /* records that failed for now: sent again */
    uint64_t connects;       /* sessions opened (its progress, to the
                                supervisor's crash-loop rule) */
    int32_t publishing;      /* holds the outbox's lock; 0: a standby */
    int32_t backlog_known;   /* the two below were read by this process */
    int64_t pending;         /* rows neither published nor dead-lettered */
    int64_t oldest_pending_ms; /* age of the oldest of them; 0: none */
} metrics_relay;

typedef struct metrics_slot {
    char pipeline[128];
    int32_t worker;
    int32_t up;              /* process alive */
    int32_t ready;           /* /readyz: a worker's worker_ready(), a
                                relay's relay_publish_ready() */
    int32_t pid;             /* of the running worker; 0: none */
    uint64_t restarts;
    uint64_t batches_committed, batches_rolled_back, batches_fenced;
    uint64_t retries[RETRY_N_CAUSES];
    uint64_t dedup_expired;  /* dedup keys deleted after their retention */
    /* Batches per bound, each counted in the first bucket it fits
     * (cumulative at render); a batch is in latency_count before it is
     * in a bucket (metrics_observe_batch). */
    uint64_t latency_buckets[METRICS_N_BUCKETS];
    uint64_t latency_count;
    uint64_t latency_sum_us;
    metrics_partition parts[METRICS_MAX_PARTITIONS];
    /* The slot's totals over every process it ran, whatever partitions
     * they held: `exactly run`'s summary per pipeline adds them up. */
    uint64_t consumed, applied, deduplicated, dead_lettered, skipped_missing;
    uint64_t retries_total;
    uint64_t n_errors;
    metrics_error errors[METRICS_N_ERRORS];
    metrics_relay relay;     /* a relay's slot only */
    /* Written by the supervisor only: 1 while it means the slot to run,
     * running or waiting for its restart (a backoff, a crash loop); 0
     * once it finished it on purpose (an exit 0 in a stop or with
     * --exit-idle, a refusal, its handler's stop). /readyz wants every
     * such slot up and ready. */
    int32_t meant;
    /* Written by the supervisor only: when (CLOCK_MONOTONIC, ms) it starts
     * the slot's process again while it waits for its restart; 0 while it
     * runs or is finished. */
    int64_t restart_at_ms;
} metrics_slot;

/* Maps n zeroed slots shared with future children; NULL on failure. */
metrics_slot *metrics_map(size_t n);
void metrics_unmap(metrics_slot *slots, size_t n);

/* The entry of topic/partition in slot s, taking a free one, or else the
 * entry of a partition the slot no longer owns (assigned 0), emptied.
 * NULL when every entry belongs to a partition the slot owns: such a
 * partition is not reported. */
metrics_partition *metrics_part(metrics_slot *s, const char *topic,
                                int32_t partition);

void metrics_add(uint64_t *counter, uint64_t n);
void metrics_set(int64_t *gauge, int64_t v);
void metrics_observe_batch(metrics_slot *s, long long micros);

/* A worker process starts or ended in slot s: it owns no partition. */
void metrics_slot_disown(metrics_slot *s);

/* Records one log line (cut to fit) in slot s's ring of errors; safe
 * from any thread of the process that runs slot s. */
void metrics_note_error(metrics_slot *s, const char *line, size_t len);

/* Copies error number e of slot s into out (line NUL-terminated). Returns
 * 1 when the copy is that error whole; 0 when the entry holds another
 * one, or is being written, or was left half written: out means nothing. */
int metrics_error_read(const metrics_slot *s, uint64_t e, metrics_error *out);

#endif
