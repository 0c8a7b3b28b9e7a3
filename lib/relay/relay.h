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
 *     consumer's `dedup: {from: header, header: event-id}`.
 *  4. A record refused for good (larger than message.max.bytes, a topic
 *     that does not exist, headers that are not a JSON object, no topic)
 *     is dead-lettered in the outbox row itself (dead_reason, dead_at) and
 *     never stops the rows behind it, even of the same key: the events are
 *     notifications ("entity 42 changed"), the next one of that key
 *     supersedes it, and a blocked key would hold the whole outbox back
 *     behind one bad row. A record that failed for a transient reason
 *     (timeout, broker down) stays pending and is sent again next cycle;
 *     it can then land after a later row of its key. A topic that does not
 *     exist is refused only once the broker said so (after librdkafka's
 *     topic.metadata.propagation.max.ms); librdkafka caches that answer,
 *     so before a record is refused on the cached answer the relay asks
 *     the broker again (once per topic and cycle): a row sent again after
 *     its topic was created is published.
 *  5. One relay per outbox table at a time: a session advisory lock on the
 *     table's name; a second relay waits as a standby. When the first
 *     loses its connection the second takes over, and the rows the first
 *     still had in flight may be published twice (same event-id).
 */
#ifndef EXACTLY_RELAY_H
#define EXACTLY_RELAY_H

#include <signal.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"

typedef struct exactly_relay_opts {
    const exactly_config *cfg;
    const cfg_relay *relay;
    volatile sig_atomic_t *stop; /* set: finish the cycle and exit 0 */
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
 * producer error) or 2 (refused at start: configuration, schema). */
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
    int64_t published_total;  /* from relay_state; -1: never ran */
    double rate_per_s;        /* since the running relay started */
    double last_publish_s;    /* seconds since relay_state changed; -1 */
} exactly_relay_status;

/* Reads r's figures; 0, or -1 with the reason in errbuf. */
int exactly_relay_read_status(const exactly_config *cfg, const cfg_relay *r,
                              exactly_relay_status *out, char *errbuf,
                              size_t errbuf_size);

#endif
