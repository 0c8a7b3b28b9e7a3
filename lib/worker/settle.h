/*
 * settle.h - what the worker decides on a batch's outcome, as a function
 * of the batch's error value and a few facts about the worker alone
 * (worker_settle_plan); settle.c applies the plan. Nothing here reads
 * the error's text.
 */
#ifndef EXACTLY_WORKER_SETTLE_H
#define EXACTLY_WORKER_SETTLE_H

#include "error_value.h"

/* Where a batch was run from: what follows its outcome differs. */
typedef enum worker_batch_kind {
    WORKER_BATCH_FLUSH,  /* worker_flush_ready: a partition's buffer was
                            due; it backs off, resumes or opens the
                            breaker by the outcome */
    WORKER_BATCH_IDLE,   /* worker_advance_idle: no message, the stored
                            offset moves past transaction markers */
    WORKER_BATCH_REVOKE  /* worker_revoke: the buffer of a partition that
                            goes away, committed if that works at once */
} worker_batch_kind;

/* What the caller of the batch does next. */
typedef enum worker_next {
    WORKER_NEXT_MORE,  /* committed and more is buffered: the
                          partition's next batch may go at once */
    WORKER_NEXT_WAIT,  /* the partition waits (its backoff, its state,
                          its position moved, or nothing is buffered);
                          the other partitions go on */
    WORKER_NEXT_NO_DB  /* the breaker opened: no batch goes until the
                          database answers */
} worker_next;

/* What the plan needs besides the error value. */
typedef struct worker_settle_facts {
    worker_batch_kind kind;
    int deferred;     /* a rebalance arrived during the batch: the
                         partition table changes next, and nothing but
                         the stop and the figures is settled */
    int conn;         /* the worker still holds a connection */
    int buffered;     /* the partition still has messages buffered */
    int buffer_full;  /* its buffer holds 4 batches or more */
} worker_settle_facts;

/* What follows a batch's outcome. */
typedef struct worker_plan {
    int stop;         /* the handler asked to stop the process */
    int resume;       /* its backoff ends; a paused partition fetches
                         again from where its buffer ends */
    int back_off;     /* retried after worker_backoff_ms(attempts) */
    int open_breaker; /* the database is gone: every partition paused */
    int pause;        /* its fetching paused: the buffer is bounded while
                         the database is away */
    worker_next next;
} worker_plan;

/*
 * The decisions on a batch whose error value is err:
 * - every kind: err->fatal stops the process; a batch that committed
 *   (EXACTLY_OK) with more buffered is followed at once (MORE);
 * - a flush (and no rebalance deferred) also: a committed or fenced batch
 *   (the position is known again) resumes the partition; a retriable one
 *   backs off, and opens the breaker when it left no connection (NO_DB),
 *   else pauses a full buffer.
 * The idle advance and the flush on revoke decide nothing else: their
 * partition is not backed off, and a failure there does not open the
 * breaker (the next flush finds it).
 */
worker_plan worker_settle_plan(const exactly_error *err,
                                        const worker_settle_facts *f);

#endif
