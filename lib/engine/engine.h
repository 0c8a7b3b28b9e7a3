/*
 * engine.h - the exactly-once engine of one pipeline: its partition table
 * (part) and the batch cycle that applies a partition's buffered messages
 * and moves its stored position in one transaction (DESIGN section 2).
 *
 * The engine owns what a batch needs: the transaction, the prepared SQL,
 * the handler, the batch builder, the dead-letter accumulator, the crash
 * guard's memory and the counters. What belongs to its owner (a consumer
 * loop, a reprocess run) comes in through an engine_ops table: opening the
 * connection and dropping a broken one (the owner's backoff and circuit
 * breaker), and where to publish positions and batch figures. The Kafka
 * handle is a lower layer: the engine seeks, pauses and commits its
 * partitions itself (kafka/source.h).
 *
 * Nothing here knows its owner: data flows down, never back.
 */
#ifndef EXACTLY_ENGINE_H
#define EXACTLY_ENGINE_H

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "batch.h"
#include "dead_letters.h"
#include "error_value.h"
#include "log.h"
#include "part_state.h"
#include "plugin.h"
#include "store.h"
#include "strbuf.h"
#include "txn.h"

/* The two log fields that name a partition (pt: a part *). */
#define LOG_PART(pt)                                                           \
    LOG_STR("topic", (pt)->topic), LOG_INT("partition", (pt)->partition)

/* One assigned partition. */
typedef struct part {
    char *topic;
    int32_t partition;
    int64_t next_offset;  /* stored in PostgreSQL, as far as we know */
    int64_t epoch;        /* our owner epoch from the claim */
    /* The connection (engine.conn_serial) on which next_offset was last
     * read or advanced. On another one it is read again before it is used:
     * the server may be a promoted standby that lacks our last commits. */
    unsigned long pos_conn;

    rd_kafka_message_t **buf; /* buffered messages, ascending offsets */
    size_t n_buf;
    size_t cap_buf;
    long long first_at_ms;    /* when buf[0] arrived */
    int backlog;              /* a backlog is being worked off: a full
                                 batch ran with another one waiting, and
                                 no partial batch that took all the log
                                 held since (worker/backlog.h) */

    /* What it is doing (part_state.h); moved only by part_state_move()
     * (PART_MOVE) and part_state_claimed(). */
    enum part_state state;
    long long retry_at_ms;    /* > 0: backing off until then */
    int attempts;
    int paused;               /* its fetching is paused on the consumer */
    /* A seek the consumer did not make, to seek_to: until it is made
     * (engine_part_seek_owed), what the consumer delivers comes from
     * where it was, so none of it is taken, and its position is not
     * known. */
    int seek_owed;
    int64_t seek_to;
    /* no_start, out_of_log: when its row is read again (every few
     * seconds); once `exactly offsets reset` gave it an offset to resume
     * from, it resumes there. */
    long long recheck_at_ms;
    /* out_of_log: when it halted (our clock), the row's updated_at
     * (store.h, sql.recheck) as a recheck last read it, and
     * row_read_since_halt once a recheck read it after the halt (the halt
     * clears it). A row written since the halt (an exactly offsets reset,
     * also one to the offset that failed) resumes the partition
     * (worker/recheck.c). */
    long long halted_at_ms;
    int64_t row_stamp;
    int row_read_since_halt;
    long long missing_since_ms; /* on_missing: retry: first miss of this batch */
    /* What the last attempt held when its COMMIT went unanswered: if the
     * stored offset later shows it committed, these are what it did. */
    uint64_t unconfirmed_applied;
    uint64_t unconfirmed_dead;
    int64_t unconfirmed_end;  /* the next_offset its commit stores */
    int unconfirmed;          /* such an attempt exists */
} part;

/* Moves pt to state `to` (part_state_move: checked and logged). */
#define PART_MOVE(pt, to)                                                      \
    part_state_move(&(pt)->state, (to), (pt)->topic, (pt)->partition)

/* What the engine's batches did, summed since it started. */
typedef struct engine_stats {
    uint64_t consumed;        /* messages taken into committed batches */
    uint64_t applied;         /* of those, handed to the handler */
    uint64_t deduplicated;
    uint64_t dead_lettered;
    uint64_t skipped_missing; /* lookup found no row, on_missing: skip */
    uint64_t batches_committed;
    uint64_t batches_rolled_back;
    uint64_t batches_fenced;
    uint64_t retries;
    uint64_t handler_failures;
} engine_stats;

/* What one engine_run() did, handed to engine_ops.batch_done: the owner
 * settles it (decides on err's fields, never on its text). */
typedef struct engine_batch_report {
    exactly_err rc;           /* what engine_run returns */
    /* The batch's error value, filled where the failure happened;
     * err.code is rc. A batch committed in careful mode keeps the
     * handler's failure that sent it there. */
    exactly_error err;
    int retried;              /* rolled back to be retried, or committed
                                 after careful mode: counted by
                                 exactly_error_cause(&err) */
    engine_stats delta;       /* the counters this batch moved */
    long long elapsed_ms;
    int late;                 /* a held batch (engine_holds), heard after
                                 the engine_run that sent it returned: its
                                 owner settles it where it hears it */
    int noop;                 /* nothing ran: pt's own held batch was
                                 settled instead (reported first, late)
                                 and left nothing to run now, all of it
                                 committed or its failure to wait out; the
                                 owner settles nothing for this run */
    int confirmed;            /* no run either: engine_reread found that
                                 an earlier batch whose COMMIT went
                                 unanswered committed after all (delta:
                                 what it did, pt following its end); the
                                 owner counts it and settles nothing */
} engine_batch_report;

/* What the engine asks of its owner. arg is engine.ops_arg. */
typedef struct engine_ops {
    /* Makes engine.conn an open, checked connection with engine.sql
     * prepared: EXACTLY_OK (a new connection increments
     * engine.conn_serial), EXACTLY_ERETRY (not now: backing off), or
     * another error (no usable connection; the batch is not tried). */
    exactly_err (*db_open)(void *arg);
    /* engine.conn is broken: closed (engine.conn NULL, the txn cleared);
     * db_open reconnects, after the owner's backoff. */
    void (*db_lost)(void *arg);
    /* pt's stored offset and epoch changed outside a batch (its claim
     * made again after a failover lost it); a commit is told by
     * batch_done. May be NULL. */
    void (*position)(void *arg, const part *pt);
    /* An engine_run() ended. May be NULL. */
    void (*batch_done)(void *arg, const part *pt, const engine_batch_report *r);
} engine_ops;

/*
 * What a batch moves (DESIGN section 2): the pipeline's offset rows
 * (engine_use_offsets), or the row of a reprocess run (ops/reprocess.c).
 * The engine decides on these fields alone, never on who its owner is.
 * The strings are borrowed: they outlive every batch.
 */
typedef struct engine_position {
    const char *key;         /* $1 of fence and read: the pipeline's name,
                                or the run row's id */
    const char *fence_sql;   /* $1 key $2 topic $3 partition $4 epoch
                                $5 start $6 end: compare-and-set */
    const char *group_fence_sql; /* NULL, or the fence of a group's
                                partitions at once: $1 key, $2 topics[]
                                $3 partitions[] $4 epochs[] $5 starts[]
                                $6 ends[] (engine_run_group) */
    const char *read_sql;    /* $1 key $2 topic $3 partition: next_offset,
                                owner_epoch */
    const char *dl_key;      /* the pipeline name dead letters are kept
                                under */
    const char *applied_sql; /* NULL, or $1 key $2 messages applied: a
                                count kept in the batch's transaction */
    int64_t run;             /* handed to the handler as
                                batch.reprocess_run; 0: none */
    int crash_guard;         /* attempts are marked and judged by the
                                crash guard (a process that owns the row
                                over many batches) */
    int dedup;               /* the dedup filter applies and keys are
                                written */
    int kafka_commit;        /* committed positions are told to Kafka (a
                                member of the group) */
    int reclaim;             /* a stored epoch below ours is our claim,
                                lost in a failover: claimed again */
} engine_position;

typedef struct engine {
    const cfg_pipeline *p;
    char owner[128];          /* host:pid:index, stored with a claim;
                                 the owner writes it */
    /* The consumer the partitions are fetched by (borrowed): seek, pause
     * and commit go to it. NULL: nothing to tell Kafka. */
    rd_kafka_t *rk;

    /* Filled by ops->db_open; conn_serial names each new connection (a
     * part's pos_conn). */
    PGconn *conn;
    unsigned long conn_serial;
    int timeout_ms;           /* bound on one wait for the database */
    exactly_store_sql sql;
    int sql_ready;
    char *lookup_sql;
    char *key_column;
    /* Set by an owner that writes beside the live worker with no queue
     * behind it (a reprocess run), before its first connection: the
     * lookup takes SHARE locks on the rows it reads
     * (exactly_lookup_sql_shared), and the IDs it found no row for that
     * went to the handler are looked up again before COMMIT (attempt.c,
     * recheck_missing). The worker's own lookup does neither: a stale
     * read of its own is followed by the message that corrects it. */
    int extra_writer;

    /* What batches move (engine_position); set by the owner before its
     * first batch. */
    engine_position pos;

    exactly_plugin *plugin;
    exactly_txn txn;
    batch_builder bb;
    dead_letters dl;          /* of the attempt in flight */

    /* The partition table. */
    part **parts;
    size_t n_parts;
    size_t cap_parts;
    /* Partitions removed from the table while paused on the consumer,
     * which keeps that pause into a later assignment (NULL: none). */
    rd_kafka_topic_partition_list_t *paused_gone;
    size_t last_part; /* engine_part_of's last answer, an index (checked) */

    /* Batch starts this process attempted, per partition; outlives the
     * part structs, which a rebalance frees (the crash guard counts an
     * attempt once per process). */
    struct engine_attempted {
        char *topic;
        int32_t partition;
        int64_t start;
    } *attempted;
    size_t n_attempted;

    engine_stats st;

    /* Set by the owner around the engine_run() calls it lets hold their
     * batch (engine_holds), with ops->batch_done set. */
    int pipeline_ok;
    /* The held batch: sent whole (COMMIT and sync included), its answers
     * not read yet; NULL: none. What settling it needs is kept here, its
     * outcome once read (held_read) too. */
    struct engine_held {
        part *pt;
        size_t n;
        int64_t end;
        uint64_t applied, dead;
        long long t0;
        int read;
        exactly_err rc;
        exactly_error err;
    } held;
    engine_stats *run_before; /* the engine_run in progress's baseline */

    const engine_ops *ops;
    void *ops_arg;
} engine;

/* A zeroed engine for pipeline p with its owner's callbacks. */
void engine_init(engine *e, const cfg_pipeline *p, const engine_ops *ops,
                 void *ops_arg);

/* e->pos becomes the pipeline's offset rows (e->sql prepared): keyed by
 * the pipeline's name, crash guard on, dedup as configured, positions
 * committed to Kafka, a lost claim claimed again. */
void engine_use_offsets(engine *e);

/* The owner opened a new connection (e->conn, checked): the framework's
 * SQL and the lookup are built on first use, the outbox insert is set on
 * the txn, and conn_serial moves on, so that every position read on an
 * earlier connection is read again. EXACTLY_OK or EXACTLY_ENOMEM (the
 * owner drops the connection). */
exactly_err engine_conn_ready(engine *e, const char *schema);

/* The owner's connection attempt number `attempt` (for the log): opens
 * and checks e->conn (pg/pg_open.h, named e->owner), then
 * engine_conn_ready(). EXACTLY_OK, EXACTLY_ERETRY (unreachable, or a check
 * could not run), EXACTLY_EDATABASE (refused: schema version or pooler
 * mode) or EXACTLY_ENOMEM; on an error e->conn is closed and NULL (as
 * engine_conn_drop()). The backoff is the owner's. */
exactly_err engine_connect(engine *e, const exactly_config *cfg, int attempt);

/* Closes a broken e->conn: the txn cleared, the connection finished and
 * NULL. Returns 1, or 0 when there was none (nothing done). */
int engine_conn_drop(engine *e);

/* Frees what e holds: the partition table, handler, SQL, txn, dead
 * letters, crash guard memory and connection. Parts still in the table
 * are freed with their buffered messages, which must happen before e->rk
 * is destroyed: an owner that destroys it first empties the table. */
void engine_free(engine *e);

/* ---- the partition table ------------------------------------------------ */

part *engine_part_find(engine *e, const char *topic, int32_t partition);
/* The partition of message m (m->rkt set), or NULL: engine_part_find
 * without comparing the topic's name in the common case, for the path
 * every message takes. Messages come in runs of one partition, so the
 * last answer is tried first, inline; engine_part_scan looks at all. A
 * message the partition still buffers holds a reference on its topic, so
 * that topic is alive and a handle equal to its handle is the same topic
 * (no other live topic can have its address); without buffered messages
 * the handle proves nothing and the name decides. */
part *engine_part_scan(engine *e, const rd_kafka_message_t *m);
static inline int engine_part_holds(const part *pt, const rd_kafka_message_t *m)
{
    return pt->partition == m->partition && pt->n_buf > 0 &&
           pt->buf[0]->rkt == m->rkt;
}
static inline part *engine_part_of(engine *e, const rd_kafka_message_t *m)
{
    if (e->last_part < e->n_parts &&
        engine_part_holds(e->parts[e->last_part], m))
        return e->parts[e->last_part];
    return engine_part_scan(e, m);
}
/* Adds a new zeroed partition to the table; NULL when out of memory. */
part *engine_part_add(engine *e, const char *topic, int32_t partition);
/* Removes pt from the table and frees it with its buffer. */
void engine_part_remove(engine *e, part *pt);
/* Destroys the first n buffered messages of pt. */
void engine_part_drop(part *pt, size_t n);

/* The partition on the consumer. pause also records pt->paused, and
 * does nothing when pt->paused already says so; pause_assigned tells the
 * consumer whatever pt->paused says, for a partition just assigned, whose
 * pause the consumer may keep from an earlier assignment (librdkafka
 * keeps an application's pause across an unassign and an assign; it
 * sends a resume only for a partition that left the table paused, since
 * resuming one that fetches makes the consumer fetch it again); seek
 * that the consumer does not make is owed (pt->seek_owed) until
 * engine_part_seek_owed, which the owner calls for it every second or
 * so, makes it; commit tells Kafka pt->next_offset, for monitoring only
 * (nothing unless pos.kafka_commit: a reprocess run is no member of the
 * group); position is the consumer's fetch position, -1 when not known
 * (none yet, or a seek owed). */
void engine_part_pause(engine *e, part *pt, int pause);
void engine_part_pause_assigned(engine *e, part *pt, int pause);
void engine_part_seek(engine *e, part *pt, int64_t offset);
void engine_part_seek_owed(engine *e, part *pt);
void engine_part_commit(engine *e, part *pt);
int64_t engine_part_position(engine *e, part *pt);

/* ---- the cycle ------------------------------------------------------------ */

/*
 * Runs one batch transaction for the first n buffered messages of pt
 * (n may be 0: only advance the stored offset to end, for control records).
 * end is the offset stored on commit. Returns EXACTLY_OK (committed; the
 * messages are released), EXACTLY_EFENCED (rolled back; pt now follows the
 * stored row: its buffer was dropped and its fetch position moved there,
 * or it was taken over (PART_S_FENCED) or its position is gone (PART_S_HALTED)),
 * EXACTLY_ERETRY (rolled back; try again later: transient, an environment
 * error, or the handler asked to retry), EXACTLY_EDATABASE (rolled back; a
 * persistent error, logged), EXACTLY_EHANDLER (on_error: stop halted pt)
 * or EXACTLY_EFATAL (the handler asked to stop: pt halted; the owner
 * stops its process). ops->batch_done hears what it did.
 */
exactly_err engine_run(engine *e, part *pt, size_t n, int64_t end);

/*
 * Pipelining (e->pipeline_ok): a batch whose transaction needs no answer
 * before its COMMIT (nothing read, no record failed: the optimistic path's
 * one round trip) is sent whole and held: engine_run returns EXACTLY_OK
 * without reporting it, and the next engine_run of another partition
 * sends its own transaction before the held one's answers are read, so
 * that the server runs one while the client reads the other. The held
 * batch is settled as any batch (committed: pt moves on and Kafka hears
 * of it only then; else rolled back, its commit unknown unless the server
 * answered that nothing committed) and reported to ops->batch_done with
 * late set, by the engine_run that follows it or by engine_settle_held.
 * Nothing else may use the connection meanwhile: the owner settles it
 * before anything but engine_run.
 */
int engine_holds(const engine *e, const part *pt);
/* Settles the held batch, if any: EXACTLY_OK when none was held or it
 * committed, else what it ended with (already reported, late). */
exactly_err engine_settle_held(engine *e);

/* ---- a group: several partitions' batches in one transaction ---------- */

/* One partition's batch in a group: its first n (> 0) buffered messages,
 * end stored on commit, as engine_run takes them. */
typedef struct engine_group_member {
    part *pt;
    size_t n;
    int64_t end;
} engine_group_member;

/* Whether pt's next batch may join a group: served, with nothing for the
 * crash guard to ask (serving: not just claimed, not isolating), its last
 * batch ended well (no attempt to check again: attempts 0, no unconfirmed
 * COMMIT, no on_missing: retry wait) and its position read on the current
 * connection; and not the partition whose batch is held (engine_holds):
 * the front of its buffer is that batch's until it is settled, so a count
 * taken from the front now would include messages the settle frees. The
 * owner also leaves out a partition that backs off, and a full batch (it
 * is a transaction of its own). */
int engine_groupable(const engine *e, const part *pt);

/*
 * Runs the batches m[0..k) in ONE transaction (group.c): BEGIN; per
 * partition its fence, dedup, lookup, apply() and dead letters; COMMIT.
 * Returns EXACTLY_OK: all committed, and ops->batch_done heard each
 * partition's batch, in order, as engine_run's. Anything else: nothing of
 * them committed and nothing was heard; the owner runs each partition
 * alone (engine_run). A member whose state changed (not groupable on the
 * connection db_open gave) makes the group refuse to start (EXACTLY_ERETRY).
 * After a COMMIT whose answer never came each member is marked as a batch
 * of its own would be (attempts, unconfirmed), so that its own run reads
 * the stored row first: counted once if it did commit, applied again if not.
 */
exactly_err engine_run_group(engine *e, const engine_group_member *m,
                             size_t k);

/* Reads pt's stored position again on the current connection and follows
 * it (a reconnect: the server may have lost what we committed, or be a
 * promoted standby; or its row was seen moved while pt was idle: a reset
 * under a running worker). Returns EXACTLY_OK (pt follows the row; its buffer
 * was dropped and its fetch position moved if the row is behind it),
 * EXACTLY_EFENCED (taken over or halted, as engine_run says) or
 * EXACTLY_ERETRY (the row could not be read). An earlier batch whose
 * COMMIT went unanswered, found committed, is reported to
 * ops->batch_done (confirmed); any other move of pt's position to
 * ops->position. */
exactly_err engine_reread(engine *e, part *pt);

/* Lets go of pt's offset row for the crash guard (a clean stop or revoke:
 * no death happened inside apply()): the next claim counts none. Best
 * effort; logged on failure. */
void engine_release(engine *e, part *pt);
/* engine_release for n partitions in one transaction (a fenced one is
 * skipped: the row is another owner's). */
void engine_release_parts(engine *e, part *const *pts, size_t n);

#endif
