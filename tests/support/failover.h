/*
 * failover.h - what the PostgreSQL failover tests share: a test's own
 * primary with a streaming standby (own_cluster.h, replica.h), a mock
 * Kafka topic, the ledger pipeline configured with the multi-host conninfo
 * of both servers (target_session_attrs=read-write), and the waves
 * produced so far.
 *
 * Everything fails the test on error.
 */
#ifndef EXACTLY_TEST_FAILOVER_H
#define EXACTLY_TEST_FAILOVER_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ledger_check.h"
#include "testkit.h"

#define FAILOVER_TOPIC "failover"
#define FAILOVER_PARTITIONS 4

typedef struct failover {
    char dir[256];
    char config[512];
    char config2[512];   /* a second worker's config (same pipeline) */
    char log[512];       /* the worker's log */
    char conninfo[1024]; /* the database on the primary alone */
    char multi[1024];    /* both servers, read-write */
    char standby[1024];  /* the database on the standby alone */
    tk_mock *mock;
    uint64_t seed;
    int waves;
    int64_t produced;
    int64_t counts[LEDGER_ACCOUNTS];
} failover;

/* Starts the primary and its standby (mode "async" or "sync"), the mock
 * and the topic, creates the ledger database, writes the worker config
 * (batches of batch_max, session.timeout.ms session_ms) and migrates. Call
 * before any thread exists. */
void failover_start(failover *f, const char *name, const char *mode,
                    int batch_max, int session_ms);

/* Produces n more ids over the partitions; adds them to the totals. */
void failover_produce(failover *f, int64_t n);

/* The stored next_offset of every partition in the database conn names
 * (-1: no row). */
void failover_stored(PGconn *db, int64_t *stored);

/* Waits until every stored offset in the database conninfo names equals
 * the partition's high watermark. Returns 1 when they do, 0 after
 * timeout_ms with the partitions still behind described in behind
 * ("partition 0 at 500 of 1000, ..."). */
int failover_at_end_within(failover *f, const char *conninfo, int timeout_ms,
                           char *behind, size_t behind_size);

/* The same, failing the test after timeout_ms (what: which database). */
void failover_wait_at_end(failover *f, const char *conninfo, int timeout_ms,
                          const char *what);

/* Crashes the primary (immediate stop) and promotes the standby; returns
 * the milliseconds from the crash to the end of the promotion. */
int64_t failover_crash_and_promote(failover *f);

/* Runs `exactly offsets --json` with config; returns its output (free). */
char *failover_offsets_json(failover *f);

/* The primary crashes under steady load: a thread produces while one
 * worker applies; after a while the primary is stopped with -m immediate
 * and the standby promoted; the feed goes on for a while, then stops, and
 * the worker must catch up. Checks the exactly-once contract and returns,
 * in *behind, how many times the worker found a stored offset behind its
 * own ("stored offset is behind"), in *consumed the worker's consumed
 * count, and the times crash -> promoted and promoted -> first new ledger
 * row on the new primary. Call after failover_start. */
void failover_under_load(failover *f, int *behind, int64_t *consumed,
                         int64_t *promote_ms, int64_t *first_commit_ms);

/* Stops the mock, removes both servers and the directory. */
void failover_stop(failover *f);

#endif
