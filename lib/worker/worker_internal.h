/*
 * worker_internal.h - state shared by the worker's loop (worker.c), its
 * Kafka side (source.c) and its batch transaction (cycle.c).
 */
#ifndef EXACTLY_WORKER_INTERNAL_H
#define EXACTLY_WORKER_INTERNAL_H

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "batch.h"
#include "plugin.h"
#include "store.h"
#include "txn.h"
#include "source.h"
#include "worker.h"
#include "log.h"

/* The two log fields that name a partition (pt: a part *). */
#define LOG_PART(pt)                                                           \
    LOG_STR("topic", (pt)->topic), LOG_INT("partition", (pt)->partition)

/* One assigned partition. */
typedef struct part {
    char *topic;
    int32_t partition;
    int64_t next_offset;  /* stored in PostgreSQL, as far as we know */
    int64_t epoch;        /* our owner epoch from the claim */
    /* The connection (w->conn_serial) on which next_offset was last read
     * or advanced. On another one it is read again before it is used: the
     * server may be a promoted standby that lacks our last commits. */
    unsigned long pos_conn;

    rd_kafka_message_t **buf; /* buffered messages, ascending offsets */
    size_t n_buf;
    size_t cap_buf;
    long long first_at_ms;    /* when buf[0] arrived */

    long long retry_at_ms;    /* > 0: backing off until then */
    int attempts;
    int paused;
    int halted;               /* offset left the log: never moves silently */
    /* Halted because it has no stored offset and auto.offset.reset is
     * error: its row is read again every few seconds, and once
     * `exactly offsets reset` gave it an offset it resumes there. */
    int no_start;
    long long recheck_at_ms;
    int fenced;               /* another worker owns it now */
    long long missing_since_ms; /* on_missing: retry: first miss of this batch */
    /* What the last attempt held when its COMMIT went unanswered: if the
     * stored offset later shows it committed, these are what it did. */
    uint64_t unconfirmed_applied;
    uint64_t unconfirmed_dead;
    int unconfirmed;          /* such an attempt exists */
    int guard_checked;        /* crash guard answered once since the claim */
    int isolating;            /* applying one record at a time */
} part;

typedef struct worker {
    const exactly_config *cfg;
    const cfg_pipeline *p;
    exactly_worker_stats st;
    char owner[128];          /* host:pid:worker, stored with the claim */

    rd_kafka_t *rk;
    int cooperative;
    char auto_reset[16];      /* "earliest" or "latest" for new partitions */
    /* The group.instance.id the consumer joins with ("" for none), and
     * what the supervisor asked for (NULL: a dynamic member). */
    char instance_id[256];
    const char *slot_instance;

    PGconn *conn;
    /* Connections opened so far; a part's pos_conn names one of them. */
    unsigned long conn_serial;
    long long reconnect_at_ms;
    int reconnect_attempts;
    long long db_down_since_ms; /* > 0: circuit open, every partition paused */
    exactly_store_sql sql;
    int sql_ready;
    char *lookup_sql;
    char *key_column;

    /* Reprocess runs (reprocess.c) reuse the cycle with a run row as the
     * position: fence_key replaces the pipeline name in the fence; no
     * dedup, no crash guard, nothing committed to Kafka, dead letters under
     * dl_key. Zero/NULL for a live worker. */
    int64_t reprocess_run;
    const char *fence_key;
    const char *dl_key;       /* pipeline name in dead letters; NULL: p->name */
    char *run_applied_sql;    /* reprocess: $1 run, $2 messages applied */

    exactly_plugin *plugin;
    exactly_txn txn;
    batch_builder bb;
    strbuf dl_offs, dl_keys, dl_key_lens, dl_key_digests, dl_ids, dl_reasons,
        dl_states, dl_traces;
    size_t dl_count;

    part **parts;
    size_t n_parts;
    size_t cap_parts;

    /* A batch started from the loop is in flight: Kafka is drained into
     * the buffers meanwhile, and a rebalance is deferred until it ends. */
    int in_cycle;
    struct deferred_rebalance {
        rd_kafka_resp_err_t err;
        rd_kafka_topic_partition_list_t *list;
        int lost;
    } deferred[4];
    size_t n_deferred;

    /* Batch starts this process attempted, per partition; outlives the
     * part structs, which a rebalance frees. */
    struct attempted { char *topic; int32_t partition; int64_t start; } *attempted;
    size_t n_attempted;

    metrics_slot *m;          /* NULL: nobody reads counters */

    int fatal;                /* exit 1 at the next turn */
    long long last_msg_ms;
    /* A Kafka error episode starts at the first error and ends when a
     * message arrives again; within it errors are logged once a minute. */
    long long kafka_episode_ms; /* 0: no episode */
    long long kafka_logged_ms;
    int timeout_ms;           /* bound on one wait for the database */
    long long dedup_expire_at_ms; /* next slice of expired dedup keys */

    /* Set from a signal handler: stop at the next turn. NULL: never. */
    volatile sig_atomic_t *stop;
    /* An assignment whose claim could not be made yet: the loop retries
     * it (polling meanwhile, so the worker stays in its group and sees
     * SIGTERM) until pending_deadline_ms, then gives up. NULL: none. */
    rd_kafka_topic_partition_list_t *pending_assign;
    long long pending_retry_ms;
    long long pending_deadline_ms;
    int pending_attempts;
    int max_poll_ms;          /* the consumer's max.poll.interval.ms */
} worker;

long long worker_now_ms(void);
/* Whether a Kafka error should be logged now (once per episode, then once
 * a minute); starts the episode. */
int worker_kafka_error_due(worker *w);
/* Frees what a worker holds besides its partitions and Kafka handle. */
void worker_release(worker *w);
/* Whether this process already attempted a batch of pt at start: the crash
 * guard counts an attempt once per process. */
int worker_attempted(worker *w, const part *pt, int64_t start);
void worker_set_attempted(worker *w, const part *pt, int64_t start);
part *worker_find_part(worker *w, const char *topic, int32_t partition);
void part_drop_buffer(part *pt, size_t n);

/* Ensures a connection; EXACTLY_ERETRY while backing off. */
exactly_err worker_db(worker *w);
/* Drops a broken connection so that worker_db() reconnects. */
void worker_db_lost(worker *w);

/*
 * Runs one batch transaction for the first n buffered messages of pt
 * (n may be 0: only advance the stored offset to end, for control records).
 * end is the offset stored on commit. Returns EXACTLY_OK (committed; the
 * messages are released), EXACTLY_EFENCED (rolled back; pt now follows the
 * stored row: its buffer was dropped and its fetch position moved there,
 * or it was taken over (pt->fenced) or its position is gone (pt->halted)),
 * EXACTLY_ERETRY (rolled back; try again later: transient, an environment
 * error, or the handler asked to retry), EXACTLY_EDATABASE (rolled back; a
 * persistent error, logged), EXACTLY_EHANDLER (on_error: stop halted pt)
 * or EXACTLY_EFATAL (the handler asked to stop the worker: w->fatal set).
 */
exactly_err cycle_run(worker *w, part *pt, size_t n, int64_t end);

/* Reads pt's stored position again on the current connection and follows
 * it (a reconnect: the server may have lost what we committed, or be a
 * promoted standby). Returns EXACTLY_OK (pt follows the row; its buffer
 * was dropped and its fetch position moved if the row is behind it),
 * EXACTLY_EFENCED (taken over or halted, as cycle_run says) or
 * EXACTLY_ERETRY (the row could not be read). */
exactly_err cycle_reread(worker *w, part *pt);

/* Clears the crash guard's in_apply mark of pt (a clean stop or revoke:
 * no death happened inside apply()). Best effort; logged on failure. */
void cycle_release(worker *w, part *pt);

/* Publishes a partition's position (after a claim or a commit). */
void worker_metrics_position(worker *w, part *pt, int assigned);

/* Rebalance (worker.c): claim and assign, or flush and release. */
void worker_assign(worker *w, rd_kafka_topic_partition_list_t *list);
void worker_revoke(worker *w, rd_kafka_topic_partition_list_t *list, int lost);
/* Records a rebalance that arrived while a batch was in flight. */
void worker_defer_rebalance(worker *w, rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *list, int lost);

/* Retries the claim of a pending assignment when its backoff is over;
 * assigns on success, sets fatal after the deadline. */
void worker_assign_pending(worker *w);

/* Kafka side (source.c). */

/* Creates the consumer (the configuration is checked: EXACTLY_ECONFIG)
 * without joining the group; source_subscribe joins it, once the worker
 * can serve partitions. */
exactly_err source_create(worker *w, char *errbuf, size_t errbuf_size);
exactly_err source_subscribe(worker *w, char *errbuf, size_t errbuf_size);
void source_commit(worker *w, part *pt);
void source_seek(worker *w, part *pt, int64_t offset);
void source_pause(worker *w, part *pt, int pause);
int64_t source_position(worker *w, part *pt);

#endif
