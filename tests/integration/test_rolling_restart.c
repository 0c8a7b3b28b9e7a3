/*
 * A rolling restart (label `long`): three hosts (supervisors with their
 * own EXACTLY_HOST_ID and lock directory, two workers each) serve one
 * group while messages flow; each host in turn is stopped with SIGTERM
 * (it must exit 0), started again, and serves again before the next one
 * goes. No batch may be lost or applied twice (the exactly-once check),
 * and no partition may pause longer than the group's rebalance time: each
 * partition's longest gap between consecutive applied messages (the
 * ledger's applied_at; the feed never stops) stays below session.timeout.ms
 * + two join rounds (PAUSE_BOUND_MS). Prints every host's restart time and
 * the pauses.
 */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hosts.h"
#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "rolling"
#define NP 6
#define WORKERS 2
#define STEP_MS 90000

static ledger_fixture fx;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t counts[LEDGER_ACCOUNTS], produced;
static int waves;
static atomic_int stop_feed;

static void produce(int64_t n)
{
    int64_t wave[LEDGER_ACCOUNTS];
    int i;

    pthread_mutex_lock(&mu);
    tk_produce_ids(fx.mock->bootstraps, TOPIC, (size_t)n, LEDGER_ACCOUNTS, NP,
                   0xa011u + (uint64_t)waves++, wave);
    for (i = 0; i < LEDGER_ACCOUNTS; i++)
        counts[i] += wave[i];
    produced += n;
    pthread_mutex_unlock(&mu);
}

static void *feeder(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_feed)) {
        produce(60);
        tk_sleep_ms(100);
    }
    return NULL;
}

/* Owners and stored offsets of every partition. */
static void positions(PGconn *db, char owners[NP][128], int64_t *stored)
{
    PGresult *res = PQexec(db, "SELECT partition, coalesce(owner, ''),"
                               " coalesce(next_offset, -1) FROM exactly.offsets"
                               " WHERE pipeline = '" LEDGER_PIPELINE "'");
    int r, p;

    TK_CHECK(PQresultStatus(res) == PGRES_TUPLES_OK, "offsets: %s",
             PQerrorMessage(db));
    for (p = 0; p < NP; p++) {
        owners[p][0] = '\0';
        stored[p] = -1;
    }
    for (r = 0; r < PQntuples(res); r++) {
        p = atoi(PQgetvalue(res, r, 0));
        if (p < 0 || p >= NP)
            continue;
        snprintf(owners[p], 128, "%s", PQgetvalue(res, r, 1));
        stored[p] = strtoll(PQgetvalue(res, r, 2), NULL, 10);
    }
    PQclear(res);
}

/* Waits until every partition is owned by one of the hosts `on` (n of
 * them), each of them owns one, and every partition advanced past where it
 * was when the wait began; returns the ms it took. */
static int64_t wait_spread(PGconn *db, host *const *on, int n,
                           const char *what)
{
    int64_t t0 = tk_now_ms(), start[NP], stored[NP];
    char owners[NP][128];
    int p, i, ok;

    positions(db, owners, start);
    for (;;) {
        int has[8] = {0};
        positions(db, owners, stored);
        ok = 1;
        for (p = 0; p < NP; p++) {
            int mine = 0;
            for (i = 0; i < n; i++)
                if (host_owns(on[i], owners[p])) {
                    mine = 1;
                    has[i] = 1;
                }
            if (!mine || stored[p] <= start[p])
                ok = 0;
        }
        for (i = 0; i < n; i++)
            if (!has[i])
                ok = 0;
        if (ok)
            return tk_now_ms() - t0;
        if (tk_now_ms() - t0 > STEP_MS) {
            for (p = 0; p < NP; p++)
                tk_note("partition %d: owner '%s' at %" PRId64, p, owners[p],
                        stored[p]);
            ledger_log_tail(on[0]->log, 30);
            tk_fail("%s: partitions not spread over the %d hosts and "
                    "advancing within %d ms", what, n, STEP_MS);
        }
        tk_sleep_ms(20);
    }
}

/* session.timeout.ms 6000 + two join rounds of up to 10 s. */
#define PAUSE_BOUND_MS 26000

int main(void)
{
    static const char *const kafka[] = {"session.timeout.ms", "6000",
                                        "heartbeat.interval.ms", "500", NULL};
    static host a, b, c;
    host *abc[] = {&a, &b, &c};
    ledger_config cfg;
    pthread_t th;
    PGconn *db;
    PGresult *res;
    int64_t t0, restart_ms[3], worst = 0;
    int status, i, r;

    ledger_fixture_start(&fx, "rolling_restart", TOPIC, NP);
    memset(&cfg, 0, sizeof cfg);
    cfg.max_messages = 50;
    cfg.max_wait_ms = 20;
    cfg.max_crashes = 1000;
    cfg.kafka = kafka;
    cfg.pipeline_yaml = "    workers: 2\n";
    ledger_fixture_config(&fx, &cfg);
    host_init(&a, fx.dir, "host-a");
    host_init(&b, fx.dir, "host-b");
    host_init(&c, fx.dir, "host-c");
    tk_note("logs in %s", fx.dir);
    db = tk_pg_connect(fx.conninfo);

    produce(600);
    TK_CHECK(pthread_create(&th, NULL, feeder, NULL) == 0, "pthread_create");
    for (i = 0; i < 3; i++)
        host_start(abc[i], fx.config);
    tk_note("three hosts serve in %" PRId64 " ms",
            wait_spread(db, abc, 3, "start"));
    /* Pauses count from here: the start's first join is not a restart. */
    tk_sql(db, "CREATE TABLE restart_mark AS SELECT clock_timestamp() AS t");

    for (i = 0; i < 3; i++) {
        host *h = abc[i];
        t0 = tk_now_ms();
        status = tk_terminate(h->pid, 60000);
        LEDGER_CHECK_LOG(status == 0, h->log, "%s exited %d on SIGTERM",
                         h->id, status);
        host_start(h, fx.config);
        wait_spread(db, abc, 3, h->id);
        restart_ms[i] = tk_now_ms() - t0;
        tk_note("%s stopped, started and serving again in %" PRId64 " ms",
                h->id, restart_ms[i]);
    }

    atomic_store(&stop_feed, 1);
    pthread_join(th, NULL);
    {
        int64_t hw[NP], stored[NP], deadline = tk_now_ms() + 60000;
        char owners[NP][128];
        int p, done;
        ledger_high_watermarks(fx.mock->bootstraps, TOPIC, NP, hw);
        do {
            TK_CHECK(tk_now_ms() < deadline, "not everything applied");
            tk_sleep_ms(50);
            positions(db, owners, stored);
            for (done = 1, p = 0; p < NP; p++)
                done &= stored[p] == hw[p];
        } while (!done);
    }
    for (i = 0; i < 3; i++) {
        status = tk_terminate(abc[i]->pid, 60000);
        LEDGER_CHECK_LOG(status == 0, abc[i]->log, "%s exited %d",
                         abc[i]->id, status);
    }

    res = PQexec(db,
        "SELECT partition, coalesce(max(gap), 0) FROM ("
        " SELECT partition, applied_at, (extract(epoch FROM applied_at - lag("
        "  applied_at) OVER (PARTITION BY partition ORDER BY \"offset\"))"
        "  * 1000)::bigint AS gap FROM ledger) g"
        " WHERE applied_at >= (SELECT t FROM restart_mark)"
        " GROUP BY partition ORDER BY partition");
    TK_CHECK(PQresultStatus(res) == PGRES_TUPLES_OK, "pauses: %s",
             PQerrorMessage(db));
    TK_CHECK(PQntuples(res) == NP, "%d partitions applied during the "
             "restarts", PQntuples(res));
    for (r = 0; r < PQntuples(res); r++) {
        int64_t gap = strtoll(PQgetvalue(res, r, 1), NULL, 10);
        tk_note("partition %s: longest pause %" PRId64 " ms",
                PQgetvalue(res, r, 0), gap);
        worst = gap > worst ? gap : worst;
        TK_CHECK(gap < PAUSE_BOUND_MS, "partition %s paused %" PRId64
                 " ms during the rolling restart, more than the group's "
                 "rebalance time (%d ms)", PQgetvalue(res, r, 0), gap,
                 PAUSE_BOUND_MS);
    }
    PQclear(res);
    tk_sql(db, "DROP TABLE restart_mark");
    ledger_check_exactly_once(db, fx.mock->bootstraps, TOPIC, NP, produced,
                              counts, LEDGER_ACCOUNTS);
    tk_note("figures: rolling restart, per host %" PRId64 "/%" PRId64
            "/%" PRId64 " ms from SIGTERM to serving again; longest "
            "partition pause %" PRId64 " ms", restart_ms[0], restart_ms[1],
            restart_ms[2], worst);
    PQfinish(db);
    ledger_fixture_stop(&fx);
    return 0;
}
