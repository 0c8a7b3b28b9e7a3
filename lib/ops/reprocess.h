/*
 * reprocess.h - `exactly reprocess`: apply a pipeline's lookup and handler
 * again to an offset range of one partition, or to a range (of offsets or
 * of time) of every partition of a topic.
 *
 * It reads with assign (no group membership) and read_committed, applies
 * the range in batch transactions through the same cycle as a worker, and
 * keeps its own position in a reprocess_runs row, fenced like a pipeline's
 * offset row: each message is applied once per run, an interrupted run
 * resumes where it committed, and the pipeline's stored offsets, dedup keys
 * and Kafka commits are never touched. Running it beside the live pipeline
 * is safe because handler writes are upserts.
 *
 * A run over a topic is one row per partition, each naming the first as
 * its parent: the partitions are applied one after the other, with one
 * progress display; the run resumes, and keeps its dead letters, as one.
 */
#ifndef EXACTLY_REPROCESS_H
#define EXACTLY_REPROCESS_H

#include <signal.h>
#include <stdint.h>

#include "config.h"

typedef struct exactly_reprocess_opts {
    const exactly_config *cfg;
    const cfg_pipeline *p;
    const char *topic;        /* new run */
    int32_t partition;        /* < 0: every partition of the topic */
    /* Offsets, inclusive; < 0: the partition's first / last. One partition
     * by offsets: the range must lie within it (else refused); over a
     * topic or a time range each partition's range is cut to what it
     * holds, and partitions with nothing in it are left out. */
    int64_t from;
    int64_t to;
    /* Or a time range: from the first message at or after from_time to
     * the last before to_time (as PostgreSQL reads a timestamptz; NULL:
     * the partition's start / end), found with offsets_for_times. */
    const char *from_time;
    const char *to_time;
    int64_t resume_run;       /* > 0: continue this run instead */
    int dry_run;
    int batch;                /* messages per transaction; 0: the pipeline's */
    double rate;              /* messages per second at most; 0: no limit */
    int tty;                  /* progress as one updating line */
    int quiet;                /* no progress at all */
    volatile sig_atomic_t *stop;
} exactly_reprocess_opts;

/* The exit code of a run that went through its whole range but
 * dead-lettered some messages: it is finished (a resume would do nothing),
 * and what it could not apply is in the dead-letter table under
 * "PIPELINE:reprocess:RUN" (`exactly dlq ... --run RUN`). */
#define EXACTLY_REPROCESS_DEAD_LETTERED 3

/* Returns an exit code: 0 done (or dry run), 1 failed or interrupted
 * (resume it), 2 refused (bad range, configuration, plugin, unknown run),
 * EXACTLY_REPROCESS_DEAD_LETTERED. */
int exactly_reprocess(const exactly_reprocess_opts *o);

#endif
