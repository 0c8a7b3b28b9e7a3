/*
 * relay_internal.h - the state of one relay process and the calls its
 * files make on each other: relay.c (the loop), relay_outbox.c
 * (PostgreSQL), relay_produce.c (records and delivery reports) and
 * relay_txn.c (mode: transactional). Private to lib/relay.
 */
#ifndef EXACTLY_RELAY_INTERNAL_H
#define EXACTLY_RELAY_INTERNAL_H

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>

#include "reach.h"
#include "relay.h"

/* Topics a cycle asks the broker about again, at most. */
#define RELAY_ASKED_MAX 4
/* How long one such question may take. */
#define RELAY_ASK_TIMEOUT_MS 5000
/* How long one call of a transactional API (init_transactions,
 * commit_transaction, abort_transaction) or one wait for the position
 * record's report lasts before the stop request is looked at: a stop is
 * seen within it while the broker does not answer. */
#define RELAY_TXN_STEP_MS 1000
/* The whole of an init_transactions() and of an abort_transaction(),
 * after which the relay backs off and calls it again. */
#define RELAY_INIT_TIMEOUT_MS 60000
#define RELAY_ABORT_TIMEOUT_MS 30000

/* What the broker answered this cycle about a topic librdkafka called
 * unknown (see ask_topic). */
typedef enum topic_answer {
    TOPIC_EXISTS = 1,  /* listed without error: produce once more */
    TOPIC_MISSING,     /* it does not exist (or its name is invalid) */
    TOPIC_UNANSWERED   /* no answer, or the topic came back with another
                          error (LEADER_NOT_AVAILABLE while it is being
                          created): its rows wait for the next cycle */
} topic_answer;

typedef struct relay_asked {
    char topic[256];
    topic_answer answer;
} relay_asked;

/* Where one row of a batch stands. */
typedef enum row_state {
    ROW_UNSENT = 0,
    ROW_IN_FLIGHT,
    ROW_ACKED,    /* the broker has it: mark or delete */
    ROW_DEAD,     /* refused for good: dead-letter with reason */
    ROW_RETRY     /* failed for now: stays pending, sent next cycle */
} row_state;

typedef struct relay_row {
    int64_t id;
    uint64_t created;  /* the inserting transaction's id (xid8) */
    row_state state;
    /* ROW_RETRY for an error the broker gives a whole record batch (see
     * relay_produce.c, batch_refusal) while other rows were sent with
     * it: which record caused it is unknown, so the row is sent again
     * alone (relay.c, plan_singles). */
    int refused_with_others;
    char reason[256];
} relay_row;

typedef struct relay {
    const exactly_config *cfg;
    const cfg_relay *r;
    PGconn *conn;
    rd_kafka_t *rk;
    char *table_q;          /* "schema"."table" */
    char *state_q;          /* "schema".relay_state of the framework */
    char *sql_select, *sql_acked, *sql_done, *sql_dead, *sql_state;
    char *sql_expire, *sql_backlog, *sql_position;
    char lock_key[300];
    relay_row *rows;
    size_t n_rows;
    size_t in_flight;
    size_t sent;            /* rows handed to the producer this cycle */
    /* > 0: the next cycles read one row each, until this many rows have
     * been acknowledged or dead-lettered: the rows of a batch the broker
     * refused as a whole, each sent alone (relay.c, plan_singles). */
    size_t singles;
    int backoff_ms;
    int locked;             /* this session holds the outbox's lock */
    int waiting;            /* another relay holds it (said once) */
    volatile sig_atomic_t *stop;
    int purged;
    /* Topics whose metadata this cycle asked the broker for again, with
     * the answer (see ask_topic). */
    relay_asked asked[RELAY_ASKED_MAX];
    int n_asked;
    exactly_relay_stats *st;
    /* mode: transactional (invariant 6) */
    int txn;                /* the relay runs transactions */
    int txn_ready;          /* init_transactions() succeeded */
    int txn_open;           /* a transaction was begun, not yet ended */
    int commit_unanswered;  /* stopped while its commit had no answer:
                               the transaction is left as it is */
    int abort_unanswered;   /* stopped while its abort had no answer:
                               left to the next start's init_transactions,
                               which aborts it */
    int need_position;      /* the lock was (re)taken: apply the position */
    int dr_failed;          /* delivery reports with an error, this batch */
    int pos_in_flight;      /* the position record awaits its report */
    rd_kafka_resp_err_t pos_err;
    metrics_slot *m;        /* NULL: not under a supervisor */
    long long backlog_at;   /* when the backlog was last read */
    kafka_reach kafka;      /* every broker down, as librdkafka said */
    long long kafka_probed_ms; /* when relay_watch_kafka last looked */
} relay;

/* Runs inside rd_kafka_poll() on the relay's thread. */
void relay_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);

/* The producer's error callback (the relay's thread, inside a poll or a
 * flush): logs the error and records an outage of every broker. */
void relay_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque);

/* Publishes in the slot whether the relay is ready (/readyz): connected
 * to PostgreSQL, holding its outbox's lock or waiting for it, and not
 * every Kafka broker down for KAFKA_DOWN_NOT_READY_MS. */
void relay_publish_ready(relay *rl);

/* Once per turn of the loop, and in every wait of the relay (a backoff, a
 * nap, each step of a transactional call): serves the producer's error
 * callback, looks for a usable broker once a second during an outage
 * (without waiting), and publishes the readiness. With records in flight
 * (rl->in_flight, rl->pos_in_flight) it only publishes: their delivery
 * reports are the waits' own to serve. */
void relay_watch_kafka(relay *rl);

/* Builds rl's statements, the quoted names of its outbox and relay_state
 * and its advisory lock's key (quoting with rl->conn). Returns 0, or -1
 * when out of memory. */
int relay_build_sql(relay *rl);

/* Ends the session (its advisory lock goes with it); the next cycle
 * connects again. */
void relay_drop_conn(relay *rl);

/* Connects and takes the outbox's advisory lock. Returns 0 when this relay
 * may publish, 1 when PostgreSQL failed (back off), 2 when another relay
 * holds the lock (try again after the poll interval), 3 when the
 * connection is not a server session of its own (a transaction-mode
 * pooler; logged): the relay must not run. */
int relay_ensure_conn(relay *rl);

/* Creates the relay's producer (relay_produce.c), its delivery reports
 * going to relay_dr_cb and its errors to relay_error_cb. Returns 0, or 2
 * when the configuration or librdkafka refused it. */
int relay_start_producer(relay *rl);

/* Replaces the relay's producer by a new one, not yet initialised
 * (txn_ready 0), and destroys the old one. Returns 0, or -1 when the new
 * one could not be made (the old one stays). */
int relay_renew_producer(relay *rl);

/* Produces row i of res. The row's state says what became of it. */
void relay_produce_row(relay *rl, const PGresult *res, int i);

/* After producev() answered QUEUE_FULL: -1 when a stop was asked for (the
 * record is not queued: while the broker does not answer there is room
 * only once queued records time out, after message.timeout.ms, which a
 * stop does not wait for), else 0 after polling for up to 50 ms (the
 * delivery reports served make room): produce again. */
int relay_wait_room(relay *rl);

/* Whether err says another producer took this transactional.id. */
int relay_is_fenced(rd_kafka_resp_err_t err);

/* Logs a failed transactional call and frees e. Returns -2 when the
 * producer cannot go on (fenced, or another fatal error: the relay exits
 * 1), -1 otherwise (the caller aborts; the rows stay pending). */
int relay_txn_failed(rd_kafka_error_t *e, const char *call);

/* Aborts the open transaction, if any. Returns 0, -1 (the abort itself
 * failed for now: tried again before the next batch) or -2 (fatal). A
 * stop request while the abort gets no answer also returns -1, with
 * abort_unanswered set and the transaction still open: none of its rows
 * is published, and the next start's init_transactions aborts it. */
int relay_txn_abort(relay *rl);

/* After an abort nothing of the batch counts as published. */
void relay_demote_acked(relay *rl, const char *why);

/* Ends the batch's transaction: the position record, then the commit.
 * On success every acknowledged row of the batch is published among the
 * committed records; on failure the transaction is aborted and none is.
 * Returns 0, -1 (aborted: the rows stay pending) or -2 (fatal). A stop
 * request while the commit gets no answer also returns -1, with
 * commit_unanswered set and the transaction neither committed nor
 * aborted here: its outcome is unknown, so nothing of it may be marked
 * (the next start settles it, invariant 6). */
int relay_txn_commit(relay *rl);

/* Before the first batch after the lock was taken: init_transactions()
 * (it fences every other producer of this transactional.id, aborts its
 * open transaction and waits until a commit in progress is complete), on
 * a new producer when the lock was taken back in the same process, then
 * the last committed position applied to the outbox. Returns 0, -1 (try again
 * after a backoff; also when a stop request came while Kafka did not
 * answer, nothing applied) or -2 (fatal). */
int relay_txn_prepare(relay *rl);

/* Marks, deletes and dead-letters what the batch's delivery reports said,
 * in one transaction, with the relay_state counters (last_published_at
 * only when a row was published). Returns 0, or -1 (the rows stay pending: sent again,
 * same event-id; in mode transactional marked by the position applied
 * first). Every failure, running out of memory among them, ends the
 * session (relay_drop_conn), which makes the next lock taken apply the
 * position. */
int relay_record_outcome(relay *rl, int64_t *acked, int64_t *dead);

/* Reads the outbox's backlog into the metrics slot, at most every
 * METRICS_RELAY_BACKLOG_MS; a failed read leaves it unknown (not shown)
 * until the next one. */
void relay_read_backlog(relay *rl);

/* The most published rows one statement of the expiry deletes. */
#define RELAY_EXPIRE_CHUNK 10000

/* Deletes every published row past the relay's retention (cleanup:
 * mark), RELAY_EXPIRE_CHUNK rows a statement, until a statement deletes
 * fewer, PostgreSQL fails (logged; the next expiry goes on) or a stop is
 * asked for. */
void relay_expire(relay *rl);

#endif
