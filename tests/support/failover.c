#include "failover.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "own_cluster.h"
#include "replica.h"

void failover_start(failover *f, const char *name, const char *mode,
                    int batch_max, int session_ms)
{
    char prefix[128], session[16], log[600];
    const char *kafka[] = {"session.timeout.ms", session,
                           "heartbeat.interval.ms", "500", NULL};
    ledger_config c;

    memset(f, 0, sizeof *f);
    snprintf(prefix, sizeof prefix, "exactly-%s", name);
    tk_tmpdir(prefix, f->dir, sizeof f->dir);
    own_cluster_start(f->dir);
    replica_start(f->dir, mode);
    f->mock = tk_mock_start(1);
    tk_mock_create_topic(f->mock, FAILOVER_TOPIC, FAILOVER_PARTITIONS);
    tk_pg_create_db(name, f->conninfo, sizeof f->conninfo);
    ledger_setup_db(f->conninfo);
    replica_multihost(f->conninfo, f->multi, sizeof f->multi);
    replica_direct(f->conninfo, f->standby, sizeof f->standby);
    snprintf(session, sizeof session, "%d", session_ms);
    snprintf(f->config, sizeof f->config, "%s/worker.yaml", f->dir);
    snprintf(f->config2, sizeof f->config2, "%s/worker2.yaml", f->dir);
    snprintf(f->log, sizeof f->log, "%s/worker.log", f->dir);
    memset(&c, 0, sizeof c);
    c.bootstraps = f->mock->bootstraps;
    c.conninfo = f->multi;
    c.topic = FAILOVER_TOPIC;
    c.max_messages = batch_max;
    c.max_wait_ms = 20;
    c.max_crashes = 1000;
    c.kafka = kafka;
    /* A connect attempt to a server that is gone must not take 10 s. */
    c.postgres_yaml = "  connect_timeout_s: 2\n";
    ledger_write_config(f->config, &c);
    ledger_write_config(f->config2, &c);
    snprintf(log, sizeof log, "%s/migrate.log", f->dir);
    ledger_migrate(f->config, log);
    f->seed = 0x5eed0000u + (uint64_t)tk_now_ms() % 1000;
}

void failover_produce(failover *f, int64_t n)
{
    int64_t wave[LEDGER_ACCOUNTS];
    int i;

    tk_produce_ids(f->mock->bootstraps, FAILOVER_TOPIC, (size_t)n,
                   LEDGER_ACCOUNTS, FAILOVER_PARTITIONS,
                   f->seed + (uint64_t)f->waves++, wave);
    for (i = 0; i < LEDGER_ACCOUNTS; i++)
        f->counts[i] += wave[i];
    f->produced += n;
}

void failover_stored(PGconn *db, int64_t *stored)
{
    PGresult *res;
    int p, r;

    for (p = 0; p < FAILOVER_PARTITIONS; p++)
        stored[p] = -1;
    res = PQexec(db, "SELECT partition, next_offset FROM exactly.offsets"
                     " WHERE pipeline = '" LEDGER_PIPELINE
                     "' AND next_offset IS NOT NULL");
    TK_CHECK(PQresultStatus(res) == PGRES_TUPLES_OK, "reading offsets: %s",
             PQerrorMessage(db));
    for (r = 0; r < PQntuples(res); r++) {
        p = atoi(PQgetvalue(res, r, 0));
        if (p >= 0 && p < FAILOVER_PARTITIONS)
            stored[p] = strtoll(PQgetvalue(res, r, 1), NULL, 10);
    }
    PQclear(res);
}

int failover_at_end_within(failover *f, const char *conninfo, int timeout_ms,
                           char *behind, size_t behind_size)
{
    int64_t hw[FAILOVER_PARTITIONS], stored[FAILOVER_PARTITIONS];
    int64_t deadline = tk_now_ms() + timeout_ms;
    PGconn *db = tk_pg_connect(conninfo);
    int p, at_end;

    ledger_high_watermarks(f->mock->bootstraps, FAILOVER_TOPIC,
                           FAILOVER_PARTITIONS, hw);
    for (;;) {
        failover_stored(db, stored);
        at_end = 1;
        behind[0] = '\0';
        for (p = 0; p < FAILOVER_PARTITIONS; p++)
            if (stored[p] != hw[p]) {
                size_t len = strlen(behind);
                at_end = 0;
                snprintf(behind + len, behind_size - len,
                         "%spartition %d at %" PRId64 " of %" PRId64,
                         len ? ", " : "", p, stored[p], hw[p]);
            }
        if (at_end || tk_now_ms() >= deadline)
            break;
        tk_sleep_ms(20);
    }
    PQfinish(db);
    return at_end;
}

void failover_wait_at_end(failover *f, const char *conninfo, int timeout_ms,
                          const char *what)
{
    char behind[512];

    LEDGER_CHECK_LOG(failover_at_end_within(f, conninfo, timeout_ms, behind,
                                            sizeof behind),
                     f->log, "%d ms: the stored offsets %s are not at the "
                     "partition ends (%s)", timeout_ms, what, behind);
}

int64_t failover_crash_and_promote(failover *f)
{
    int64_t t0 = tk_now_ms();

    (void)f;
    own_cluster_cmd("kill");
    replica_cmd("promote");
    return tk_now_ms() - t0;
}

char *failover_offsets_json(failover *f)
{
    char out[600];
    char *argv[] = {(char *)ledger_exactly_bin(), "offsets", "-c", f->config,
                    "--json", NULL};
    char *text;
    int status;

    snprintf(out, sizeof out, "%s/offsets.json", f->dir);
    tk_rm_rf(out);
    status = tk_wait(tk_spawn(argv, out), 60000);
    text = tk_read_file(out);
    TK_CHECK(status == 0, "exactly offsets --json exited %d: %s", status,
             text ? text : "");
    return text;
}

void failover_stop(failover *f)
{
    tk_mock_stop(f->mock);
    f->mock = NULL;
    replica_remove();
    own_cluster_remove();
    ledger_cleanup_dir(f->dir);
}

/* ---- under load --------------------------------------------------------- */

typedef struct feeder {
    failover *f;
    pthread_mutex_t mu;
    atomic_int stop;
    pthread_t thread;
} feeder;

static void *feed(void *arg)
{
    feeder *fd = arg;

    while (!atomic_load(&fd->stop)) {
        pthread_mutex_lock(&fd->mu);
        failover_produce(fd->f, 200);
        pthread_mutex_unlock(&fd->mu);
        tk_sleep_ms(100);
    }
    return NULL;
}

static int64_t rows_via(const char *conninfo)
{
    PGconn *db = tk_pg_connect(conninfo);
    int64_t n = ledger_rows(db);

    PQfinish(db);
    return n;
}

void failover_under_load(failover *f, int *behind, int64_t *consumed,
                         int64_t *promote_ms, int64_t *first_commit_ms)
{
    static feeder fd;
    ledger_summary sum;
    int64_t t_promoted, before, deadline;
    int status;
    PGconn *db;
    pid_t pid;

    memset(&fd, 0, sizeof fd);
    fd.f = f;
    TK_CHECK(pthread_mutex_init(&fd.mu, NULL) == 0, "pthread_mutex_init");
    failover_produce(f, 1000);
    pid = ledger_start_worker(f->config, 0, f->log);
    failover_wait_at_end(f, f->conninfo, 60000, "before the load");
    TK_CHECK(pthread_create(&fd.thread, NULL, feed, &fd) == 0,
             "pthread_create");
    /* Load for a while: batches are in flight when the primary goes. */
    before = rows_via(f->conninfo);
    deadline = tk_now_ms() + 30000;
    while (rows_via(f->conninfo) < before + 2000) {
        LEDGER_CHECK_LOG(tk_now_ms() < deadline, f->log,
                         "no progress under load");
        tk_sleep_ms(50);
    }
    *promote_ms = failover_crash_and_promote(f);
    t_promoted = tk_now_ms();
    before = rows_via(f->multi);
    deadline = t_promoted + 60000;
    while (rows_via(f->multi) <= before) {
        LEDGER_CHECK_LOG(tk_now_ms() < deadline, f->log,
                         "nothing applied on the new primary within 60 s");
        tk_sleep_ms(5);
    }
    *first_commit_ms = tk_now_ms() - t_promoted;
    tk_sleep_ms(2000);
    atomic_store(&fd.stop, 1);
    pthread_join(fd.thread, NULL);
    failover_wait_at_end(f, f->multi, 90000, "after the failover under load");
    status = tk_terminate(pid, 30000);
    LEDGER_CHECK_LOG(status == 0, f->log, "worker exited %d", status);
    LEDGER_CHECK_LOG(ledger_read_summary(f->log, &sum), f->log, "no summary");
    LEDGER_CHECK_LOG(sum.fenced == 0, f->log, "%" PRId64 " fenced batches",
                     sum.fenced);
    *consumed = sum.consumed;
    *behind = ledger_log_count(f->log, "stored offset is behind");
    db = tk_pg_connect(f->multi);
    ledger_check_exactly_once(db, f->mock->bootstraps, FAILOVER_TOPIC,
                              FAILOVER_PARTITIONS, f->produced, f->counts,
                              LEDGER_ACCOUNTS);
    PQfinish(db);
}
