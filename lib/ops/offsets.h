/*
 * offsets.h - where each partition of a pipeline stands (`exactly
 * offsets`), and the rules of moving its stored offset (`exactly offsets
 * reset`): the plan, the guard while the group is active, and the apply
 * with its audit rows.
 *
 * The offset stored in PostgreSQL is the truth; Kafka's committed offset
 * is shown, and written after a reset, for monitoring only.
 */
#ifndef EXACTLY_OPS_OFFSETS_H
#define EXACTLY_OPS_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "config.h"

#define OPS_KAFKA_TIMEOUT_MS 10000

/* ---- show --------------------------------------------------------------- */

/* What `exactly offsets` can tell of a partition from PostgreSQL and
 * Kafka (a worker's memory is not read). */
typedef enum ops_part_state {
    OPS_PART_NONE,      /* no row and no worker: nothing to say */
    OPS_PART_IDLE,      /* no worker session owns the row */
    OPS_PART_RUNNING,   /* a worker holding a PostgreSQL session owns it */
    OPS_PART_ISOLATING, /* the crash guard applies the batch at the stored
                           offset one message at a time */
    OPS_PART_HALTED     /* cannot move without `exactly offsets reset`: the
                           stored offset left the log, or a live owner has
                           no stored offset to start from */
} ops_part_state;

/* The name of a state as the table and --json print it ("-" for none). */
const char *ops_part_state_name(ops_part_state s);

/* One partition as `exactly offsets` shows it. */
typedef struct ops_offset_view {
    const char *pipeline; /* the configuration's */
    char *topic;
    int32_t partition;
    int row;              /* a row exists at all */
    int stored_set;       /* ... with a next_offset */
    int64_t stored;
    int64_t epoch;
    char *owner;
    char *updated;
    int owner_live;
    int isolating;
    int in_kafka;
    int64_t committed;    /* RD_KAFKA_OFFSET_INVALID: none */
    int wm_ok;
    int64_t low, lso;
    char auto_reset[16];
} ops_offset_view;

typedef struct ops_offsets {
    ops_offset_view *v;
    size_t n, cap;
} ops_offsets;

void ops_offsets_free(ops_offsets *l);

/* The stored rows of pipeline p, added to l. */
exactly_err ops_offsets_read_pg(PGconn *conn, const exactly_config *cfg,
                                const cfg_pipeline *p, ops_offsets *l,
                                char *err, size_t errsz);

/* Called with each problem met while reading Kafka; the reading goes on. */
typedef void ops_warn_fn(void *arg, const cfg_pipeline *p, const char *msg);

/* Kafka's side of pipeline p: every partition of its topics (added to l
 * when no row exists yet), the group's committed offsets, the watermarks.
 * Returns 0, or -1 after reporting each problem through warn (what could
 * be read stays in l). */
int ops_offsets_read_kafka(const exactly_config *cfg, const cfg_pipeline *p,
                           ops_offsets *l, ops_warn_fn *warn, void *arg);

/* Both sides of every pipeline of cfg (only the one named only, when not
 * NULL) into l: what PostgreSQL stores, then Kafka's view. Returns 0, or
 * -1 after reporting each problem through warn (p NULL for one that is
 * not a pipeline's); what could be read stays in l. */
int ops_offsets_read(const exactly_config *cfg, const char *only,
                     ops_offsets *l, ops_warn_fn *warn, void *arg);

/* By pipeline, topic, partition. */
void ops_offsets_sort(ops_offsets *l);

/* Lag in messages (offsets, counting control records): from the stored
 * offset, or for a partition without one from where a worker would
 * start. 0 when it cannot be said. */
int ops_offset_lag(const ops_offset_view *r, int64_t *lag);

ops_part_state ops_offset_state(const ops_offset_view *r);

/* ---- reset -------------------------------------------------------------- */

typedef enum ops_reset_mode {
    OPS_RESET_NONE = 0,
    OPS_RESET_EARLIEST,
    OPS_RESET_LATEST,
    OPS_RESET_OFFSET,
    OPS_RESET_TIME,
    OPS_RESET_SHIFT
} ops_reset_mode;

/* One partition's reset. */
typedef struct ops_reset_part {
    int32_t partition;
    int from_set;
    int64_t from;
    int64_t low, lso;
    int64_t by_time;  /* --to-time: Kafka's answer (-1: none that recent) */
    int64_t want;     /* before clamping */
    int64_t to;
    int64_t forgotten; /* --forget-dedup: dedup keys deleted */
    char note[96];
} ops_reset_part;

/* A reset: the request (set by the caller), then what each step found. */
typedef struct ops_reset {
    const exactly_config *cfg;
    const cfg_pipeline *p;
    const char *topic;
    int64_t partition;     /* -1: every partition */
    ops_reset_mode mode;
    int64_t arg;           /* --to-offset K, --shift-by N */
    const char *time_text; /* --to-time */
    const char *reason;    /* NULL: none */
    /* --forget-dedup: the apply also deletes, for each partition moved
     * back, the dedup keys recorded at offsets from its new offset
     * (store_dedup_forget), so that those messages are applied again. */
    int forget_dedup;

    char mode_text[128];   /* 'to-offset 42', for messages and the audit */
    ops_reset_part *v;
    size_t n;
    /* the guard */
    int members;           /* active members, Kafka's or PostgreSQL's count */
    int unknown;           /* the group's state could not be read */
    char group_err[1024];  /* why, when unknown */
    char **owners;         /* live workers owning the pipeline's rows */
    size_t n_owners;

    /* ops_reset_apply: the answer to its COMMIT was lost, and what
     * became of the transaction was asked on a new connection */
    int commit_lost;
    int outcome_unknown;   /* ... and could not be learnt */
    char commit_note[1536]; /* what was asked and answered, when lost */

    PGconn *conn;
    rd_kafka_t *rk;
} ops_reset;

/*
 * Connects to both services, checks the schema, and plans the reset: the
 * partitions, their watermarks and, for --to-time, Kafka's offsets by
 * time. The connection must be a server session of its own
 * (exactly_pg_connect_own_session), a dry run's too, which shows what the
 * reset would do. EXACTLY_EINVAL or EXACTLY_ECONFIG (the request or the
 * configuration is refused, a transaction-mode pooler included),
 * EXACTLY_EKAFKA (Kafka did not answer),
 * EXACTLY_ENOMEM or PostgreSQL's error, with the reason in err.
 */
exactly_err ops_reset_plan(ops_reset *r, char *err, size_t errsz);

/* Reads the stored offsets and computes every partition's target without
 * changing anything (--dry-run). EXACTLY_EINVAL when a partition cannot
 * be shifted. */
exactly_err ops_reset_preview(ops_reset *r, char *err, size_t errsz);

/* The guard: counts the group's active members (the broker's count when
 * it gives one; the workers' PostgreSQL sessions always, which also catch
 * a worker that left the group but still runs). */
exactly_err ops_reset_guard(ops_reset *r, char *err, size_t errsz);

/* Whether the guard forbids the reset unless forced. */
int ops_reset_blocked(const ops_reset *r);

/*
 * One transaction: locks the rows, recomputes (a shift follows the locked
 * value), sets next_offset, clears the crash guard's counters and adds an
 * audit row per partition. The plan is updated to what was written.
 * EXACTLY_EINVAL when a partition cannot be shifted. When the connection
 * is lost before COMMIT is answered, the transaction is asked about by
 * the mark it wrote, on a new connection (pg_xact.h), and r->commit_lost
 * is set, with r->commit_note saying what was found: EXACTLY_OK when it
 * committed;
 * otherwise the error, r->outcome_unknown set when it may have committed.
 * On any other error nothing changed.
 */
exactly_err ops_reset_apply(ops_reset *r, char *err, size_t errsz);

/* Commits the new offsets to the group in Kafka (monitoring only: the
 * database already holds them). EXACTLY_EKAFKA with librdkafka's reason
 * in err, EXACTLY_ENOMEM. */
exactly_err ops_reset_commit_kafka(ops_reset *r, char *err, size_t errsz);

/* Frees what the steps allocated and closes both connections. */
void ops_reset_free(ops_reset *r);

#endif
