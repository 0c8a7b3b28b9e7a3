/*
 * worker.h - one worker process of a pipeline: a consumer in the
 * pipeline's group, one PostgreSQL connection, the handler, and the cycle
 * of DESIGN section 2.
 */
#ifndef EXACTLY_WORKER_H
#define EXACTLY_WORKER_H

#include <signal.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"

typedef struct exactly_worker_stats {
    uint64_t consumed;        /* messages taken into committed batches */
    uint64_t applied;         /* of those, handed to the handler */
    uint64_t deduplicated;
    uint64_t dead_lettered;
    uint64_t skipped_missing; /* lookup found no row, on_missing: skip */
    uint64_t skipped_below;   /* redelivered below the stored offset */
    uint64_t batches_committed;
    uint64_t batches_rolled_back;
    uint64_t batches_fenced;
    uint64_t retries;
    uint64_t handler_failures;
    uint64_t rebalances;
    uint64_t fetch_wakes; /* fetchers woken after a full queue (refill.h) */
    uint64_t partitions_halted; /* at exit: on_error stop, offset out of range */
} exactly_worker_stats;

typedef struct exactly_worker_opts {
    const exactly_config *cfg;
    const cfg_pipeline *pipeline;
    int worker_index;
    /* > 0: exit once nothing arrived for this long and all is committed. */
    int exit_idle_ms;
    /* Set from a signal handler to ask for a clean stop. */
    volatile sig_atomic_t *stop;
    /* Set from a SIGHUP handler: reopen the log file. May be NULL. */
    volatile sig_atomic_t *reopen_log;
    /* This worker's slot in the supervisor's shared counters, or NULL. */
    metrics_slot *metrics;
    /* Static group membership: the supervisor's slot identity (stable
     * across restarts of the slot), or NULL for a dynamic member. A
     * group.instance.id in the configuration is suffixed with
     * "-<worker_index>" when this is set, used as it is otherwise. */
    const char *instance_id;
} exactly_worker_opts;

/* The exit status of a worker whose handler returned EXACTLY_EFATAL: the
 * batch was rolled back and the worker stopped; its supervisor does not
 * restart it. */
#define EXACTLY_EXIT_HANDLER_STOP 3

/*
 * Runs until *stop is set (or exit_idle_ms passes idle). Returns 0 on a
 * clean stop, 2 when the configuration or plugin is refused (nothing was
 * written), 1 on a fatal runtime error (logged), EXACTLY_EXIT_HANDLER_STOP
 * when the handler asked to stop. stats, when not NULL, receives the
 * counters.
 */
int exactly_worker_run(const exactly_worker_opts *o,
                       exactly_worker_stats *stats);

/* The one-line summary a worker prints on stdout when it ends. */
void exactly_worker_print_summary(const char *pipeline,
                                  const exactly_worker_stats *st);

#endif
