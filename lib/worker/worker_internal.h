/*
 * worker_internal.h - state shared by the files of the worker; its Kafka
 * consumer (consumer.h) knows none of it. The partition table and everything a batch
 * needs are the engine's (engine/engine.h), embedded here; the worker
 * hands it the connection and hears what its batches did (engine_ops).
 */
#ifndef EXACTLY_WORKER_INTERNAL_H
#define EXACTLY_WORKER_INTERNAL_H

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "consumer.h"
#include "engine.h"
#include "log.h"
#include "reach.h"
#include "refill.h"
#include "settle.h"
#include "worker.h"

typedef struct worker {
    const exactly_config *cfg;
    const cfg_pipeline *p;
    /* The worker's own counters; the batches' are in eng.st, merged by
     * worker_stats(). */
    exactly_worker_stats st;

    /* The partition table, the connection's handle and SQL, the handler,
     * the txn, the batch builder, dead letters, the batches' counters. */
    engine eng;

    /* The consumer (con.rk), its reset policy and group identity; its
     * events come back through con.cbs. */
    worker_consumer con;
    rd_kafka_t *rk;           /* con.rk; also eng.rk, which borrows it */
    int cooperative;
    /* A member of its group: the last assignment it was given (possibly
     * empty: a standby when the group has more members than partitions)
     * stands. Set by worker_assign; cleared by a revoke of everything
     * (eager protocol) or of a lost assignment. */
    int joined;

    /* The connection (eng.conn) and its circuit breaker. */
    long long reconnect_at_ms;
    int reconnect_attempts;
    long long db_down_since_ms; /* > 0: circuit open, every partition paused */

    /* A batch started from the loop is in flight: Kafka is drained into
     * the buffers meanwhile, and a rebalance is deferred until it ends. */
    int in_cycle;
    struct deferred_rebalance {
        rd_kafka_resp_err_t err;
        rd_kafka_topic_partition_list_t *list;
        int lost;
    } deferred[4];
    size_t n_deferred;

    metrics_slot *m;          /* NULL: nobody reads counters */

    /* Where the report of the batch in flight goes (worker_run_batch);
     * NULL: no batch in flight. */
    engine_batch_report *report;
    /* The same for a group in flight (worker_run_group): the report of
     * group[i].pt goes to group_reports[i]. */
    const engine_group_member *group;
    engine_batch_report *group_reports;
    size_t n_group;

    int fatal;                /* exit 1 at the next turn */
    long long last_msg_ms;
    /* A Kafka error episode starts at the first error and ends when a
     * message arrives again; within it errors are logged once a minute. */
    long long kafka_episode_ms; /* 0: no episode */
    long long kafka_logged_ms;
    /* Whether every broker is down, as librdkafka said, with none found
     * usable since (worker_kafka_probe) and no rebalance answered:
     * nothing can be fetched. Not ready after KAFKA_DOWN_NOT_READY_MS. */
    kafka_reach kafka;
    /* Whether the consumer's queue was full since the fetchers were last
     * woken (kafka/refill.h): take_queued wakes them once it half
     * empties. */
    kafka_refill refill;
    long long dedup_expire_at_ms; /* next slice of expired dedup keys */
    long long follow_at_ms;   /* next read of the idle partitions' rows */

    /* Set from a signal handler: stop at the next turn. NULL: never. */
    volatile sig_atomic_t *stop;
    /* An assignment whose claim could not be made yet: the loop retries
     * it (polling meanwhile, so the worker stays in its group and sees
     * SIGTERM) until pending_deadline_ms, then gives up. NULL: none. */
    rd_kafka_topic_partition_list_t *pending_assign;
    long long pending_retry_ms;
    long long pending_deadline_ms;
    int pending_attempts;
} worker;

/* A zeroed worker of pipeline p whose engine calls back into it: the
 * connection (worker_db, worker_db_lost) and the metrics. */
void worker_init(worker *w, const exactly_config *cfg, const cfg_pipeline *p);
/* The worker's counters with its engine's. */
void worker_stats(const worker *w, exactly_worker_stats *out);
/* Whether a Kafka error should be logged now (once per episode, then once
 * a minute); starts the episode. */
int worker_kafka_error_due(worker *w);
/* Creates the worker's consumer (worker_consumer_create) with the worker
 * as the receiver of its events; sets rk and eng.rk. */
exactly_err worker_consumer_start(worker *w, char *errbuf, size_t errbuf_size);

/* Ensures a connection (eng.conn, its SQL prepared): EXACTLY_OK,
 * EXACTLY_ERETRY (backing off, or the new one failed a check),
 * EXACTLY_EDATABASE (refused: wrong schema version or pooler mode; fatal
 * set) or EXACTLY_ENOMEM. */
exactly_err worker_db(worker *w);
/* Drops a broken connection so that worker_db() reconnects. */
void worker_db_lost(worker *w);

/* ---- settle.c: a batch run, and its outcome settled ----------------------- */

/* Runs one batch of pt (engine_run) and settles it (worker_settle): what
 * the caller does next. */
worker_next worker_run_batch(worker *w, part *pt, size_t n, int64_t end,
                             worker_batch_kind kind);
/* Settles what a batch of pt run from `kind` did: the one place a batch's
 * error value is decided on (worker_settle_plan, settle.h). A failure
 * that stops the process sets fatal; the batch's figures and its retry,
 * by cause, go to the metrics; after a flush the partition backs off
 * (retry_at_ms from its attempts) or resumes, and the breaker opens when
 * a retriable failure left no connection. */
worker_next worker_settle(worker *w, part *pt, const engine_batch_report *r,
                          worker_batch_kind kind);
/* Runs the batches m[0..k) of a flush in one transaction
 * (engine_run_group) and settles each as worker_run_batch does; when the
 * group did not commit, each partition runs alone (worker_run_batch).
 * What the caller does next: WORKER_NEXT_NO_DB if any said so, else
 * WORKER_NEXT_MORE if any did, else WORKER_NEXT_WAIT. */
worker_next worker_run_group(worker *w, const engine_group_member *m,
                             size_t k);
/* engine_ops.batch_done: keeps the report of pt's batch for
 * worker_run_batch or worker_run_group. */
void worker_batch_done(worker *w, const part *pt,
                       const engine_batch_report *r);

/* Publishes a partition's position (after a claim or a commit; assigned
 * 0 when it is let go, so that no gauge of it shows). */
void worker_metrics_position(worker *w, const part *pt, int assigned);
/* Publishes the high watermark of pt's last fetch into mp, pt's gauges:
 * between commits too, so that the lag moves while nothing commits. */
void worker_metrics_watermark(worker *w, const part *pt,
                              metrics_partition *mp);

/* ---- rebalance.c ---------------------------------------------------------- */

/* Claim and assign, or flush and release. */
void worker_assign(worker *w, rd_kafka_topic_partition_list_t *list);
void worker_revoke(worker *w, rd_kafka_topic_partition_list_t *list, int lost);
/* Records a rebalance that arrived while a batch was in flight. */
void worker_defer_rebalance(worker *w, rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *list, int lost);

/* Retries the claim of a pending assignment when its backoff is over;
 * assigns on success, sets fatal after the deadline. */
void worker_assign_pending(worker *w);
/* Runs the rebalances deferred during a batch (the table may change). */
void worker_replay_deferred(worker *w);
/* At exit: answers an assignment that never got its claim, so that
 * leaving the group does not wait for it. */
void worker_release_pending(worker *w);
/* Partitions halted until an operator sets their offset (none stored,
 * or one no longer in the log): once exactly offsets reset gave their
 * row one to resume from, they resume there. Also publishes every
 * partition's halted state. recheck.c. */
void worker_recheck_halted(worker *w);
/* How often such a partition reads its row again. */
#define RESET_RECHECK_MS 3000
/* Idle partitions (served, nothing buffered, not backing off): once
 * every FOLLOW_IDLE_MS, while no batch or rebalance is under way and the
 * breaker is closed, one statement compares their offset rows with what
 * the worker holds; a partition whose row was moved (exactly offsets
 * reset --force) or claimed follows it as a refused batch would
 * (engine_reread). Nothing is sent when no partition is idle. follow.c. */
void worker_follow_idle(worker *w);
#define FOLLOW_IDLE_MS 2000
/* The `exactly offsets reset` command that gives topic/partition a new
 * start, for a log line that asks an operator to run it; truncated to
 * size. */
#define WORKER_RESET_COMMAND_MAX 4600
void worker_reset_command(const worker *w, const char *topic,
                          int32_t partition, char *out, size_t size);

/* ---- loop.c: messages and batches ----------------------------------------- */

/* Waits up to timeout ms for a message or event of the consumer, then
 * takes what else is there without waiting, up to a batch. Returns how
 * many messages it took (0: none came). */
int worker_poll(worker *w, int timeout);
/* Buffers m in its partition (or acts on its error); takes m. */
void worker_on_message(worker *w, rd_kafka_message_t *m);
/* Flushes every partition whose batch is full or old enough (force: every
 * buffered one). Returns how many ms until the next deadline. */
int worker_flush_ready(worker *w, int force);
/* The size of pt's next batch, and the offset it stores. */
size_t worker_batch_size(worker *w, part *pt);
int64_t worker_batch_end(worker *w, part *pt, size_t n);
/* A partition whose tail is only transaction markers: its stored offset
 * moves to the consumer's position so lag reads zero. */
void worker_advance_idle(worker *w);
/* Whether nothing is buffered but in halted or fenced partitions. */
int worker_all_committed(const worker *w);

/* The next offset a partition expects from Kafka (part.c). */
int64_t worker_expected_next(const part *pt);

/* ---- db.c: the connection and its breaker --------------------------------- */

/* Capped exponential backoff with full jitter, after attempts failures. */
long long worker_backoff_ms(int attempts);
/* The database is gone: every partition paused (logged once). */
void worker_breaker_open(worker *w);
/* Tries the database at the reconnect backoff's pace; on success every
 * position is read again and the partitions resume. 1: closed. */
int worker_breaker_try_close(worker *w);
/* Finds a connection that died while idle (opens the breaker). */
void worker_db_probe(worker *w);
/* Expires a slice of old dedup keys when one is due. */
void worker_expire_dedup(worker *w);

/* ---- worker.c -------------------------------------------------------------- */

/* What each partition is doing, for the status page and
 * exactly_partition_state: the most severe condition wins. */
void worker_publish_states(worker *w);

#endif
