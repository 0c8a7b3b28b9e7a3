/*
 * inproc_worker.h - a worker run in the test's own process: the worker's
 * own functions (lib/worker) on a real consumer of the mock cluster and
 * the test database, for the tests that drive a flush themselves to reach
 * a state no timing would reach reliably (test_held_*, test_*_refused_*).
 *
 * Unlike the rest of the test kit it needs lib/ (exactly_core): it is its
 * own library, exactly_inproc.
 */
#ifndef EXACTLY_INPROC_WORKER_H
#define EXACTLY_INPROC_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "config.h"
#include "ledger_check.h"
#include "testkit.h"
#include "worker_internal.h"

typedef struct inproc_worker {
    exactly_config *cfg;
    worker w;
    part *x, *y;    /* after inproc_held_start: the first two partitions */
} inproc_worker;

/* Loads the configuration at config_path and starts a worker of its first
 * pipeline: plugin loaded and opened, connected, consumer subscribed (the
 * claims come with the polls); with metrics, a metrics slot of its own
 * (iw->w.m). Fails the test on any error. */
void inproc_worker_start(inproc_worker *iw, const char *config_path,
                         int metrics);

/* Closes the consumer and frees what inproc_worker_start made. */
void inproc_worker_stop(inproc_worker *iw);

/* Whether w holds n partitions, each served once (SERVING) with nothing
 * buffered. */
int inproc_all_serving(const worker *w, size_t n);

/* Produces n messages to partition of topic with keys first_id, first_id
 * + 1, ...; counts[id - 1] counts each. */
void inproc_produce(const char *bootstraps, const char *topic, int partition,
                    int n, int first_id, int64_t *counts);

/* Produces per_part messages to each of the n_parts partitions (IDs 1, 2,
 * ..., partition by partition) and runs the worker until every partition
 * was served once (inproc_all_serving) and the ledger in db holds them
 * all; fails the test otherwise. Returns the messages produced. */
int inproc_serve_once(inproc_worker *iw, PGconn *db, const char *bootstraps,
                      const char *topic, int n_parts, int per_part,
                      int64_t *counts);

/* The setting the held-batch tests share (inproc_held_start). */
typedef struct inproc_held {
    const char *name;    /* the fixture's, for its directory and database */
    const char *topic;
    int partitions;
    int max_messages;    /* batch.max_messages */
    int max_wait_ms;     /* batch.max_wait_ms */
    int stall_ms;        /* the ledger handler's stall in apply(); 0: none */
    int metrics;         /* a metrics slot for the worker (iw->w.m) */
    int per_part;        /* messages per partition of the first round */
} inproc_held;

/* Starts the ledger fixture h->name (h->topic, h->partitions) into *f and
 * a worker in process on it (inproc_worker_start), connects *db to the
 * test database and serves every partition once with h->per_part messages
 * (inproc_serve_once, counted in counts). Returns the messages produced. */
int inproc_held_start(inproc_worker *iw, ledger_fixture *f, PGconn **db,
                      const inproc_held *h, int64_t *counts);

/* Produces x_msgs to iw->x and y_msgs to iw->y (IDs from *next_id on,
 * which it moves; counted in counts) and polls the worker, without
 * flushing, until both are buffered; fails the test otherwise. */
void inproc_buffer_xy(inproc_worker *iw, const char *bootstraps,
                      const char *topic, int x_msgs, int y_msgs, int *next_id,
                      int64_t *counts);

/* Makes the COMMIT of the batch holding partition's offset slow, once: a
 * deferred trigger on the ledger raises a flag (the sequence
 * commit_running, seen at once by other sessions), then sleeps seconds.
 * inproc_wait_commit_running() waits for the flag. */
void inproc_slow_commit(PGconn *db, int partition, int64_t offset,
                        int seconds);
void inproc_wait_commit_running(PGconn *db);

/* Runs the worker until the ledger holds total messages and every batch
 * is committed, checks that each was applied exactly once (counts: what
 * was produced), then stops the worker, closes db and the fixture. */
void inproc_held_finish(inproc_worker *iw, ledger_fixture *f, PGconn *db,
                        const inproc_held *h, int total,
                        const int64_t *counts);

/* The setting of the tests of a transaction refused where the refusal is
 * read only with the COMMIT's answer (test_*_refused_*): the ledger
 * fixture name (topic, partitions) into *f, whose pipeline (lookup:
 * {table: accounts}) has the fused built-in upsert into the table
 * `mirror` (id, name, balance) instead of the ledger handler, no dedup,
 * and batches of up to 100 messages due after 20 ms; migrated, *db
 * connected to the test database, and a worker in process with a
 * metrics slot started on it (inproc_worker_start). With that handler
 * and no dedup nothing is read before the COMMIT, so an error of the
 * batch's writes or of its fence is first read with the COMMIT's answer. */
void inproc_mirror_start(inproc_worker *iw, ledger_fixture *f, PGconn **db,
                         const char *name, const char *topic,
                         int partitions);

/* One flush of w (worker_flush_ready) with its log sent to path instead
 * of stderr, for the test to read; then the last tail_lines lines of that
 * log are shown on stderr. */
void inproc_flush_logged(worker *w, const char *path, int tail_lines);

/* One comparison of w's idle partitions' offset rows (worker_follow_idle,
 * due at once) with its log sent to path, shown as inproc_flush_logged
 * shows it. */
void inproc_follow_logged(worker *w, const char *path, int tail_lines);

/* Polls w (and, with flush, flushes what is due) until cond holds or ms
 * pass. */
#define INPROC_RUN_UNTIL(w, cond, ms, flush)                                   \
    do {                                                                       \
        long long t0_ = tk_now_ms();                                           \
        while (!(cond) && tk_now_ms() - t0_ < (ms)) {                          \
            worker_assign_pending(w);                                          \
            if (flush)                                                         \
                (void)worker_flush_ready((w), 0);                              \
            (void)worker_poll((w), 50);                                        \
        }                                                                      \
    } while (0)

#endif
