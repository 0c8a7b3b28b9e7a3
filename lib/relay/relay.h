/*
 * relay.h - the outbox relay: publishes the rows of an outbox table to
 * Kafka (DESIGN 6a), the producer side of exactly.
 *
 * Invariants (each one has a test in tests/integration/test_relay*.c):
 *
 *  1. No row is skipped. A cycle reads only rows whose inserting
 *     transaction id (`created`, xid8) is below the xmin of the reading
 *     statement's own snapshot: every transaction below that horizon has
 *     ended, so a row that is not visible now never will be, and a row of
 *     a transaction still running is at or above the horizon and waits.
 *     There is no cursor (no `id > last`): a row is pending until the relay
 *     marks or deletes it, so a long transaction that commits after later
 *     rows were published is still published. Transaction ids are
 *     cluster-wide, so any transaction with an id, in any database, holds
 *     back younger rows until it ends: latency, never a loss.
 *  2. Order. Rows are read in (created, id) order, and the horizon only
 *     moves forward, so rows are published in the order of their
 *     transactions' ids (ids of one transaction in insert order). Two
 *     transactions that write the same key and lock the same row commit in
 *     the order they took the lock, which is their id order when that lock
 *     is their first write. An idempotent producer with at most 5 requests
 *     in flight keeps a partition's order across its own retries.
 *  3. A row is marked published or deleted only after the broker
 *     acknowledged it (its delivery report), in a transaction that runs
 *     after the acknowledgement. A relay that dies in between sends the row
 *     again on its next start, with the same `event-id` header (the row's
 *     event_id): at least once on the topic, exactly once behind a
 *     consumer's `dedup: {from: header, header: event-id}`. The
 *     transaction names each row by its id and its `created` together:
 *     ids come back after TRUNCATE ... RESTART IDENTITY (or a sequence
 *     reset) while a batch awaits its reports, transaction ids never do,
 *     so rows that took a batch's ids are neither marked, deleted nor
 *     dead-lettered by its outcome.
 *  4. A record refused for good (larger than message.max.bytes, a topic
 *     that does not exist, a topic the relay's principal may not write,
 *     headers that are not a JSON object, no topic) is dead-lettered in
 *     the outbox row itself (dead_reason, dead_at) and never stops the
 *     rows behind it, even of the same key: the events are notifications
 *     ("entity 42 changed"), the next one of that key supersedes it, and
 *     a blocked key would hold the whole outbox back behind one bad row.
 *     An error about the row or its topic that no resend cures is refused
 *     for good: a denied topic (TOPIC_AUTHORIZATION_FAILED, which
 *     librdkafka keeps for the topic) would otherwise fail in every
 *     cycle, and in mode transactional abort every batch it is in; its
 *     reason says to grant the ACL and clear dead_reason. A record that
 *     failed for a transient reason (timeout, broker down, a partition
 *     without a leader) stays pending and is sent again next cycle; it
 *     can then land after a later row of its key. Such a record is never
 *     dead-lettered for how long it keeps failing, nor set aside for
 *     later: a lasting transient error is an outage that ends, after
 *     which a time limit would leave rows for an operator to send again,
 *     and setting rows aside would reorder their keys after every outage.
 *     So in mode transactional, where one failed record aborts its whole
 *     batch (6), it holds the rows behind it back until it goes through:
 *     latency, logged each cycle ("records failed; sending them again",
 *     with the reason) and shown by the age of the oldest pending row,
 *     never a loss. A broker refuses a record batch as a whole, and
 *     librdkafka reports that error (INVALID_RECORD, INVALID_MSG,
 *     MSG_SIZE_TOO_LARGE, RECORD_LIST_TOO_LARGE) for every record of it,
 *     though one record may be the cause (no key on a compacted topic)
 *     or none alone (a batch over the topic's max.message.bytes). So such
 *     an error dead-letters a row only when the row was sent alone; rows
 *     refused with others stay pending, and the next cycles read one row
 *     each (in mode transactional one row per transaction), in order,
 *     until each of them was published or, refused alone, dead-lettered.
 *     In mode idempotent they can land after later rows of the batch
 *     that went out in another record batch. A topic that does not
 *     exist is refused only once the broker said so (after librdkafka's
 *     topic.metadata.propagation.max.ms); librdkafka caches that answer,
 *     so before a record is refused on the cached answer the relay asks
 *     the broker again (once per topic and cycle) and refuses the
 *     topic's rows of that cycle only when that answer says the topic
 *     does not exist; no answer, or another error for the topic (its
 *     leader not yet elected), leaves them pending: a row sent again
 *     after its topic was created is published.
 *  5. One relay per outbox table at a time: a session advisory lock on the
 *     table's name; a second relay waits as a standby. When the first
 *     loses its connection the second takes over, and the rows the first
 *     still had in flight may be published twice (same event-id). The
 *     lock holds only on a server session of the relay's own: through a
 *     pooler in transaction mode it would stay on a pooled backend (a
 *     second relay could take another, or every later relay wait behind
 *     it), so such a connection is refused (exactly_pg_open_session).
 *  6. mode: transactional. Each row once among the committed records (what
 *     a read_committed consumer sees), the way Kafka Connect's exactly-once
 *     source connectors commit their source offsets (KIP-618). The outbox
 *     is read by commit visibility (1), not by an `id > last` cursor, so
 *     the relay's position is not a number: it is the set of rows the last
 *     committed batch published. One batch is one Kafka transaction:
 *       a. begin; produce the batch's records; wait for every delivery
 *          report (any failure: abort, below);
 *       b. produce one position record to `position_topic`, partition 0,
 *          key = the relay's name, value = JSON {"relay", "outbox",
 *          "rows", "ids": [[first, last], ...], "created": [low, high]}
 *          naming the batch's rows by id and the range of their
 *          transaction ids (it goes last, once the batch is
 *          acknowledged, so a position record never names a record that
 *          is not in the log);
 *       c. commit the transaction;
 *       d. then, in PostgreSQL, mark or delete those rows (3).
 *     A relay that dies (or whose PostgreSQL fails) between c and d left
 *     committed records whose rows are still pending. So whenever a relay
 *     takes the outbox lock (5), before reading a batch it
 *       - calls init_transactions() with a stable transactional.id
 *         (`exactly-relay-NAME` unless written), on a new producer when
 *         the lock is taken back in the same process: this fences every
 *         other producer of that id, aborts its open transaction, whose
 *         records no read_committed reader will see, and waits until a
 *         commit in progress is complete (its markers written: before,
 *         a read_committed reader does not see it);
 *       - reads the last record keyed by its name in `position_topic`
 *         with read_committed (the newest committed position) and marks
 *         or deletes the rows it names that are still pending: a row
 *         whose id is named and whose `created` lies in the record's
 *         range. Ids come back after TRUNCATE ... RESTART IDENTITY (or a
 *         sequence reset), transaction ids never do, so the rows that
 *         took over a batch's ids are not marked; a record without the
 *         range (written before it was added) is applied by ids alone.
 *     Only the last position matters: a relay starts no batch before the
 *     previous batch's rows are marked, and a relay that cannot mark them
 *     drops its session and re-applies the position when it has the lock
 *     again. Rows of an aborted transaction stay pending and go out in a
 *     later one.
 *     Errors. A delivery report with an error, a failed position record,
 *     a commit that failed (one that timed out is called again until it
 *     answers, its outcome being unknown; a stop request meanwhile ends
 *     the relay within RELAY_TXN_STEP_MS with the batch neither marked
 *     nor aborted, settled by the next start as after a crash between c
 *     and d): abort the transaction,
 *     dead-letter the rows refused for good (4), leave the others
 *     pending, back off, send the batch again (a record batch the broker
 *     refused as a whole: its rows one per transaction, 4). init_transactions() (60 s
 *     in all), the abort (30 s), the position record's delivery report
 *     and the read of the position topic are waited for in steps of
 *     RELAY_TXN_STEP_MS: a stop request while Kafka does not answer ends
 *     the relay within about one step, exit 0, marking nothing of the
 *     batch (an abort left unanswered is completed by the next start's
 *     init_transactions). The position record names
 *     every row of the batch, so batch_size is at most 10000 in this
 *     mode (a record well below message.max.bytes). A fatal error, and
 *     above all being fenced (another relay initialised the same
 *     transactional.id: it holds the lock since this one lost its
 *     session), ends the relay with exit code 1 and the line "fenced:
 *     another relay took over this transactional.id; exiting"; it does
 *     not retry. A relay fenced between batches notices its lost session
 *     first and waits for the lock; taking it back, it initialises a new
 *     producer (above), which fences the other.
 *     What it needs: the relay that takes an outbox over must have the
 *     same name and position topic (a differently named relay neither
 *     fences the first nor reads its position, so the rows of a batch
 *     committed but not marked would go out again), and the position
 *     topic must have no other writer (one partition, compacted: only the
 *     last record per key is read). A relay configured with another outbox
 *     ignores a position record naming a different table.
 */
#ifndef EXACTLY_RELAY_H
#define EXACTLY_RELAY_H

#include <signal.h>
#include <stdint.h>

#include "config.h"
#include "util/metrics.h"

typedef struct exactly_relay_opts {
    const exactly_config *cfg;
    const cfg_relay *relay;
    volatile sig_atomic_t *stop; /* set: finish the cycle and exit 0;
                                    a Kafka commit without an answer is
                                    left to the next start (invariant
                                    6); with Kafka not answering, the
                                    records not delivered within 5 s,
                                    or not queued for a full producer
                                    queue, stay pending */
    volatile sig_atomic_t *reopen_log; /* set: reopen the log file; NULL */
    int exit_idle_ms;            /* > 0: exit 0 after this long with no
                                    row to publish */
    /* Under `exactly run`: the slot shared with the supervisor (metrics.h),
     * where the relay keeps its counters, its backlog (read from the
     * outbox every METRICS_RELAY_BACKLOG_MS) and its last warnings and
     * errors. NULL: none. */
    metrics_slot *metrics;
} exactly_relay_opts;

typedef struct exactly_relay_stats {
    int64_t published;     /* acknowledged by the broker and marked */
    int64_t dead_lettered;
    int64_t resends;       /* records that failed transiently */
    int64_t cycles;
} exactly_relay_stats;

/* Runs the relay until stopped. Returns 0 (stopped or idle), 1 (a fatal
 * producer error, being fenced among them) or 2 (refused: librdkafka
 * refused the producer's configuration, or its first connection to
 * PostgreSQL is not a server session of its own, as through PgBouncer in
 * pool_mode = transaction; nothing is produced). Nothing else ends it:
 * PostgreSQL unreachable, and an outbox table that is missing or cannot
 * be read, are logged ("postgres unreachable", "reading the outbox
 * failed") and tried again with the cycle's backoff (0.1 s doubling to
 * 5 s), so a relay may start before `exactly migrate` has created its
 * table; `exactly check` is what refuses a missing one. */
int exactly_relay_run(const exactly_relay_opts *opts, exactly_relay_stats *st);

/* Prints "relay NAME: published N, dead-lettered N, sent again N; cycles
 * N" on stdout: what one relay process did. */
void exactly_relay_print_summary(const char *name,
                                 const exactly_relay_stats *st);

/* One relay's figures for `exactly relay status`. */
typedef struct exactly_relay_status {
    int64_t pending;
    double oldest_pending_s;  /* age of the oldest pending row; 0: none */
    int64_t dead;             /* rows dead-lettered, still in the table */
    int64_t published_total;  /* from relay_state; -1: no relay of this
                                 name ever took the outbox */
    double rate_per_s;        /* rows published since the relay took the
                                 outbox / seconds since then (at least 1) */
    double last_publish_s;    /* seconds since a row was last published;
                                 -1: never */
    /* Whether a session holds the outbox's advisory lock now (pg_locks):
     * a relay publishes it. Then its backend's pid, and, when this role
     * may see them (pg_stat_activity), its application_name and when it
     * started (ISO 8601 UTC); "" when not. */
    int running;
    long long holder_pid;
    char holder_app[128];
    char holder_start[40];
} exactly_relay_status;

/* Reads r's figures; 0, or -1 with the reason in errbuf. */
int exactly_relay_read_status(const exactly_config *cfg, const cfg_relay *r,
                              exactly_relay_status *out, char *errbuf,
                              size_t errbuf_size);

#endif
