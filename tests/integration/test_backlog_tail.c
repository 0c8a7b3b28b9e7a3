/*
 * A batch waits up to max_wait_ms to fill with messages still coming. The
 * last, partial batch of a backlog has nothing more coming: once a
 * partition's last batch was full and its buffer reaches the end of the
 * log as the consumer last saw it, that tail is applied at once, and a
 * catch-up ends with lag 0 rather than max_wait_ms later. A live stream
 * never holds a second batch behind the one that runs, so its batches
 * still wait to fill, however fast it is.
 *
 *   - 2,500 messages waiting on one partition, max_messages 1000,
 *     max_wait_ms 40000: all 2,500 are stored within 15 s of the worker's
 *     start (the last 500 used to wait the 40 s);
 *   - 1,005 more after that: the full batch of 1,000 is applied, the 5
 *     behind it are not within 3 s (one batch at a time is no backlog:
 *     they wait to fill, as before);
 *   - run again with a short max_wait_ms, every message is applied once.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define N_BACKLOG 2500
#define N_MORE 1005
#define N_ENTITIES 50

static const char *const kafka_overrides[] = {
    "session.timeout.ms", "3000", "heartbeat.interval.ms", "300", NULL};

static void write_config(ledger_fixture *f, int max_wait_ms)
{
    ledger_config c;

    memset(&c, 0, sizeof c);
    c.max_messages = 1000;
    c.max_wait_ms = max_wait_ms;
    /* The second run joins the group the first one left; the mock makes
     * that join wait about session.timeout.ms - 1 s: keep it short. */
    c.kafka = kafka_overrides;
    c.bootstraps = f->mock->bootstraps;
    c.conninfo = f->conninfo;
    c.topic = f->topic;
    ledger_write_config(f->config, &c);
}

static int64_t stored(PGconn *db)
{
    return tk_sql_int64(db, "SELECT coalesce(sum(next_offset), 0) FROM "
                            "exactly.offsets");
}

int main(void)
{
    static int64_t per_entity[N_ENTITIES], more[N_ENTITIES];
    ledger_fixture f;
    long long t0, done_ms = -1;
    PGconn *db;
    pid_t pid;
    int st, i;

    ledger_fixture_start(&f, "backlog_tail", "backlog-tail", 1);
    write_config(&f, 40000);
    ledger_migrate(f.config, f.log);
    db = tk_pg_connect(f.conninfo);
    tk_produce_ids(f.mock->bootstraps, f.topic, N_BACKLOG, N_ENTITIES, 1, 7,
                   per_entity);

    t0 = tk_now_ms();
    pid = tk_worker_start(f.config, 0, f.log, NULL);
    while (tk_now_ms() - t0 < 15000) {
        if (stored(db) == N_BACKLOG) {
            done_ms = tk_now_ms() - t0;
            break;
        }
        tk_sleep_ms(50);
    }
    LEDGER_CHECK_LOG(done_ms >= 0, f.log,
                     "15 s after the worker started %lld of the %d messages "
                     "waiting are stored: the backlog's last partial batch "
                     "waits max_wait_ms (40 s) for messages that are not "
                     "coming",
                     (long long)stored(db), N_BACKLOG);
    tk_note("the backlog of %d was stored %lld ms after the worker started",
            N_BACKLOG, done_ms);

    /* One full batch and a few behind it, as a fast live stream brings:
     * the few wait to fill. */
    tk_produce_ids(f.mock->bootstraps, f.topic, N_MORE, N_ENTITIES, 1, 8,
                   more);
    tk_sleep_ms(3000);
    LEDGER_CHECK_LOG(stored(db) == N_BACKLOG + 1000, f.log,
                     "%lld messages stored 3 s after %d more were produced, "
                     "not %d: the %d behind a full batch were applied before "
                     "max_wait_ms, as if one batch were a backlog",
                     (long long)stored(db), N_MORE, N_BACKLOG + 1000,
                     N_MORE - 1000);
    st = tk_worker_stop(pid, 20000);
    LEDGER_CHECK_LOG(st == 0, f.log, "worker exited %d on SIGTERM", st);

    write_config(&f, 50);
    st = ledger_run_to_idle(f.config, 1500, 60000, f.log);
    LEDGER_CHECK_LOG(st == 0, f.log, "second worker exited %d", st);
    for (i = 0; i < N_ENTITIES; i++)
        per_entity[i] += more[i];
    ledger_check_exactly_once(db, f.mock->bootstraps, f.topic, 1,
                              N_BACKLOG + N_MORE, per_entity, N_ENTITIES);

    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
