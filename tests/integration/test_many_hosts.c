/*
 * Several hosts in one consumer group (label `long`): supervisors started
 * as separate hosts (their own EXACTLY_HOST_ID, lock directory and log),
 * two workers each, one PostgreSQL, messages flowing all along.
 *
 *  1. hosts a and b start: every partition is owned by a worker of one of
 *     them, the owner strings ("HOST:PID:WORKER", shown by `exactly
 *     offsets --json`) name them, each host holds exactly one PostgreSQL
 *     session per worker and its supervisor none;
 *  2. host c is added: it gets partitions and they advance (timed);
 *  3. host b's supervisor is SIGKILLed (its workers die with it): its
 *     sessions disappear (timed), its partitions are claimed by a and c
 *     and advance (timed);
 *  4. b is started again and gets partitions back (timed);
 *  5. the feed stops, everything is applied, every host stops with
 *     SIGTERM (exit 0) and the exactly-once check holds.
 */
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hosts.h"
#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "hosts"
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
                   0xfeed00u + (uint64_t)waves++, wave);
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

/* `exactly offsets --json`: every owner names one of the hosts on. */
static void check_offsets_cli(host *const *on, int n)
{
    char out[600];
    char *argv[] = {(char *)ledger_exactly_bin(), "offsets", "-c", fx.config,
                    "--json", NULL};
    json_error_t jerr;
    json_t *all, *row;
    char *text;
    size_t i;
    int status, k, mine;

    snprintf(out, sizeof out, "%s/offsets.json", fx.dir);
    tk_rm_rf(out);
    status = tk_wait(tk_spawn(argv, out), 60000);
    text = tk_read_file(out);
    TK_CHECK(status == 0 && text, "exactly offsets --json exited %d", status);
    all = json_loads(text, 0, &jerr);
    TK_CHECK(all && json_array_size(all) == NP, "offsets --json:\n%s", text);
    json_array_foreach(all, i, row) {
        const char *owner = json_string_value(json_object_get(row, "owner"));
        mine = 0;
        for (k = 0; k < n; k++)
            mine |= owner && host_owns(on[k], owner);
        TK_CHECK(mine, "partition %zu: owner '%s' is not HOST:pid:worker "
                 "with one of the hosts' identities:\n%s", i,
                 owner ? owner : "(null)", text);
    }
    tk_note("exactly offsets --json:\n%s", text);
    json_decref(all);
    free(text);
}

static void check_sessions(PGconn *db, host *const *on, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        int64_t s = host_sessions(db, on[i]);
        TK_CHECK(s == WORKERS, "%s holds %" PRId64 " PostgreSQL sessions, "
                 "want one per worker (%d), none for its supervisor",
                 on[i]->id, s, WORKERS);
    }
}

int main(void)
{
    static const char *const kafka[] = {"session.timeout.ms", "6000",
                                        "heartbeat.interval.ms", "500", NULL};
    static host a, b, c;
    host *ab[] = {&a, &b}, *abc[] = {&a, &b, &c}, *ac[] = {&a, &c};
    int64_t added_ms, gone_ms, moved_ms, back_ms, t0;
    char instance[64];
    ledger_config cfg;
    pthread_t th;
    PGconn *db;
    int status;

    ledger_fixture_start(&fx, "many_hosts", TOPIC, NP);
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
    host_start(&a, fx.config);
    host_start(&b, fx.config);
    tk_note("a and b serve in %" PRId64 " ms", wait_spread(db, ab, 2, "a+b"));
    check_sessions(db, ab, 2);
    check_offsets_cli(ab, 2);
    snprintf(instance, sizeof instance, "group_instance_id=%s-host-b-1",
             LEDGER_PIPELINE);
    LEDGER_CHECK_LOG(ledger_log_count(b.log, instance) >= 1, b.log,
                     "no worker of b joined as %s", instance + 18);

    t0 = tk_now_ms();
    host_start(&c, fx.config);
    added_ms = wait_spread(db, abc, 3, "c added");
    (void)t0;
    check_sessions(db, abc, 3);
    tk_note("host added: c serves in %" PRId64 " ms", added_ms);

    TK_CHECK(tk_kill(b.pid, SIGKILL) == 0, "b is gone");
    t0 = tk_now_ms();
    TK_CHECK(tk_wait(b.pid, 10000) == 128 + SIGKILL, "b did not die");
    while (host_sessions(db, &b) > 0) {
        TK_CHECK(tk_now_ms() - t0 < 30000, "b's sessions outlive it");
        tk_sleep_ms(5);
    }
    gone_ms = tk_now_ms() - t0;
    moved_ms = wait_spread(db, ac, 2, "b killed") + gone_ms;
    check_sessions(db, ac, 2);
    tk_note("host SIGKILLed: sessions gone in %" PRId64 " ms, partitions "
            "moved and advancing in %" PRId64 " ms", gone_ms, moved_ms);

    host_start(&b, fx.config);
    back_ms = wait_spread(db, abc, 3, "b back");
    tk_note("host added back: b serves in %" PRId64 " ms", back_ms);
    check_offsets_cli(abc, 3);

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
    status = tk_terminate(a.pid, 60000);
    LEDGER_CHECK_LOG(status == 0, a.log, "a exited %d", status);
    status = tk_terminate(b.pid, 60000);
    LEDGER_CHECK_LOG(status == 0, b.log, "b exited %d", status);
    status = tk_terminate(c.pid, 60000);
    LEDGER_CHECK_LOG(status == 0, c.log, "c exited %d", status);
    ledger_check_exactly_once(db, fx.mock->bootstraps, TOPIC, NP, produced,
                              counts, LEDGER_ACCOUNTS);
    tk_note("figures: host added %" PRId64 " ms; host SIGKILL: sessions gone "
            "%" PRId64 " ms, partitions moved and advancing %" PRId64
            " ms; host added back %" PRId64 " ms", added_ms, gone_ms,
            moved_ms, back_ms);
    PQfinish(db);
    ledger_fixture_stop(&fx);
    return 0;
}
