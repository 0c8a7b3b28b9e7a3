/*
 * Fencing: a worker that lost its partitions while it was stopped (a
 * zombie: SIGSTOP, a long GC pause, a stuck host) must not commit the
 * batch it buffered before, once a new owner has claimed the partitions.
 * Kafka cannot stop that commit; the owner epoch in exactly.offsets does
 * (DESIGN 1.3).
 *
 *   1. Worker A claims all partitions and commits a small first wave (so
 *      that the crash guard's check, which A waits for only on its first
 *      batch after a claim, is behind it). Then it buffers a batch it
 *      holds for seconds (max_messages 100000, max_wait_ms 4000); the test
 *      stops it (SIGSTOP) about a second after that wave was produced.
 *   2. More messages are produced; worker B joins the same group. Once A's
 *      Kafka session (3 s) times out, B gets every partition, claims them
 *      (owner_epoch above A's) and applies everything.
 *   3. A continues (SIGCONT). Its held batch is due: the fence must refuse
 *      it (`batch fenced` in its log, `fenced N` >= 1 and `applied` only
 *      the first small wave, which A committed before it stopped, in
 *      its summary after SIGTERM).
 *   4. A worker runs to completion and the exactly-once check runs: a
 *      batch applied twice would be a unique violation in the ledger, so a
 *      dead letter or a count mismatch.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "fencing"
#define N_PARTITIONS 4
/* A small first wave that A commits before it is stopped: after a batch
 * has committed, A no longer waits for the crash guard's answer (whose
 * epoch check would also refuse a zombie's first batch after a claim), so
 * only the fence inside the batch transaction can stop A's late batch. */
#define N_WAVE0 40
#define SEED0 7100
#define N_WAVE1 3000
#define N_WAVE2 3000
#define SEED1 7101
#define SEED2 7102

/* A short Kafka session so that the stopped worker loses its partitions in
 * seconds; frequent heartbeats so that a live worker keeps them. */
static const char *const kafka_overrides[] = {
    "session.timeout.ms", "3000", "heartbeat.interval.ms", "300", NULL};

typedef struct test_env {
    tk_mock *m;
    char conninfo[1024];
    char dir[256];
    char config_a[512], config_b[512];
    char log_a[512], log_b[512], log_final[512];
    int64_t counts[LEDGER_ACCOUNTS];
} test_env;

static void setup(test_env *e)
{
    ledger_config cfg;
    char log[512];

    e->m = tk_mock_start(1);
    tk_mock_create_topic(e->m, TOPIC, N_PARTITIONS);
    tk_pg_create_db("fencing", e->conninfo, sizeof e->conninfo);
    ledger_setup_db(e->conninfo);
    tk_tmpdir("exactly-fencing", e->dir, sizeof e->dir);
    snprintf(e->config_a, sizeof e->config_a, "%s/worker-a.yaml", e->dir);
    snprintf(e->config_b, sizeof e->config_b, "%s/worker-b.yaml", e->dir);
    snprintf(e->log_a, sizeof e->log_a, "%s/worker-a.log", e->dir);
    snprintf(e->log_b, sizeof e->log_b, "%s/worker-b.log", e->dir);
    snprintf(e->log_final, sizeof e->log_final, "%s/worker-final.log",
             e->dir);

    /* A holds one big batch for seconds; if it is stopped inside a
     * transaction after all, the database ends that transaction (idle
     * timeout) and a waiting B gives up on the row lock instead of
     * hanging. */
    memset(&cfg, 0, sizeof cfg);
    cfg.bootstraps = e->m->bootstraps;
    cfg.conninfo = e->conninfo;
    cfg.topic = TOPIC;
    cfg.max_messages = 100000;
    cfg.max_wait_ms = 4000;
    cfg.lock_timeout_ms = 2000;
    cfg.idle_in_transaction_timeout_ms = 3000;
    cfg.kafka = kafka_overrides;
    ledger_write_config(e->config_a, &cfg);
    /* B batches normally. */
    cfg.max_messages = 200;
    cfg.max_wait_ms = 20;
    ledger_write_config(e->config_b, &cfg);

    snprintf(log, sizeof log, "%s/migrate.log", e->dir);
    ledger_migrate(e->config_a, log);
}

/* Epoch and owner of every partition's offset row. */
static void read_owners(PGconn *db, int64_t *epoch, char **owner)
{
    int p;

    for (p = 0; p < N_PARTITIONS; p++) {
        epoch[p] = tk_sql_int64(db,
                                "SELECT owner_epoch FROM exactly.offsets "
                                "WHERE pipeline = '%s' AND topic = '%s' AND "
                                "partition = %d",
                                LEDGER_PIPELINE, TOPIC, p);
        owner[p] = tk_sql_text(db,
                               "SELECT owner FROM exactly.offsets WHERE "
                               "pipeline = '%s' AND topic = '%s' AND "
                               "partition = %d",
                               LEDGER_PIPELINE, TOPIC, p);
    }
}

/* 1 if owner is the owner string of process pid ("HOST:PID:0"). */
static int owned_by(const char *owner, pid_t pid)
{
    char mid[32];

    snprintf(mid, sizeof mid, ":%d:", (int)pid);
    return owner != NULL && strstr(owner, mid) != NULL;
}

/* Wait until the ledger holds `want` rows while pid runs. */
static void wait_rows(PGconn *db, int64_t want, pid_t pid, const char *log,
                      int timeout_ms)
{
    int64_t deadline = tk_now_ms() + timeout_ms;
    int64_t rows;

    while ((rows = ledger_rows(db)) < want) {
        int status = tk_wait(pid, 0);

        LEDGER_CHECK_LOG(status == -1, log,
                         "worker exited with %d at %" PRId64 " of %" PRId64
                         " ledger rows; log: %s", status, rows, want, log);
        LEDGER_CHECK_LOG(tk_now_ms() < deadline, log,
                         "ledger at %" PRId64 " of %" PRId64 " rows after "
                         "%d ms; log: %s", rows, want, timeout_ms, log);
        tk_sleep_ms(20);
    }
    TK_CHECK_EQ_INT64(rows, want, "ledger rows");
}

/* Every `batch fenced` line of A ("batch fenced topic=T partition=P
 * epoch=E start=S ...") must be a refusal of A's own, older epoch on a
 * partition that B owns under a newer one. Returns how many there are. */
static int check_fenced_lines(const char *log, const int64_t *epoch_a,
                              const int64_t *epoch_b)
{
    static const char key[] = "batch fenced topic=" TOPIC " ";
    char *text = tk_read_file(log);
    const char *line;
    int n = 0;

    LEDGER_CHECK_LOG(text != NULL, log, "cannot read %s", log);
    for (line = strstr(text, key); line; line = strstr(line + 1, key)) {
        int partition = -1;
        long long epoch = -1, start = -1;

        LEDGER_CHECK_LOG(sscanf(line + strlen(key),
                                "partition=%d epoch=%lld start=%lld",
                                &partition, &epoch, &start) == 3 &&
                             partition >= 0 && partition < N_PARTITIONS,
                         log, "cannot read a `batch fenced` line; log: %s",
                         log);
        LEDGER_CHECK_LOG(epoch == epoch_a[partition] &&
                             epoch < epoch_b[partition],
                         log, "partition %d fenced at epoch %lld; A claimed "
                         "epoch %" PRId64 ", B epoch %" PRId64 "; log: %s",
                         partition, epoch, epoch_a[partition],
                         epoch_b[partition], log);
        tk_note("A's batch refused: partition %d, A's epoch %lld, start "
                "offset %lld; B owns it at epoch %" PRId64,
                partition, epoch, start, epoch_b[partition]);
        n++;
    }
    free(text);
    return n;
}

int main(void)
{
    int64_t wave[LEDGER_ACCOUNTS];
    int64_t epoch_a[N_PARTITIONS], epoch_b[N_PARTITIONS];
    char *owner_a[N_PARTITIONS], *owner_b[N_PARTITIONS];
    int64_t t0 = tk_now_ms(), t_stop, t_takeover;
    ledger_summary sum_a, sum_b;
    test_env e;
    PGconn *db;
    pid_t a, b, fin;
    int p, i, status, fenced_lines;

    memset(&e, 0, sizeof e);
    setup(&e);
    tk_produce_ids(e.m->bootstraps, TOPIC, N_WAVE0, LEDGER_ACCOUNTS,
                   N_PARTITIONS, SEED0, e.counts);
    db = tk_pg_connect(e.conninfo);
    tk_note("logs in %s", e.dir);

    /* 1. A claims everything and buffers. */
    a = ledger_start_worker(e.config_a, 0, e.log_a);
    LEDGER_CHECK_LOG(ledger_wait_log(e.log_a, "partition claimed",
                                     N_PARTITIONS, a, 30000, &status),
                     e.log_a, "worker A did not claim %d partitions in 30 s "
                     "(status %d); log: %s", N_PARTITIONS, status, e.log_a);
    read_owners(db, epoch_a, owner_a);
    for (p = 0; p < N_PARTITIONS; p++)
        TK_CHECK(owned_by(owner_a[p], a),
                 "partition %d is owned by \"%s\", not worker A (pid %d)", p,
                 owner_a[p] ? owner_a[p] : "(null)", (int)a);
    /* Let A fetch and buffer (its batch is due only 4 s after the first
     * message), then freeze it with the batch in hand. */
    wait_rows(db, N_WAVE0, a, e.log_a, 30000);
    tk_produce_ids(e.m->bootstraps, TOPIC, N_WAVE1, LEDGER_ACCOUNTS,
                   N_PARTITIONS, SEED1, wave);
    for (i = 0; i < LEDGER_ACCOUNTS; i++)
        e.counts[i] += wave[i];
    tk_sleep_ms(1000);
    LEDGER_CHECK_LOG(tk_kill(a, SIGSTOP) == 0, e.log_a,
                     "worker A is gone; log: %s", e.log_a);
    t_stop = tk_now_ms();
    TK_CHECK_EQ_INT64(ledger_rows(db), N_WAVE0,
                      "ledger rows when A is stopped (A committed the "
                      "first wave and holds its next batch)");

    /* 2. More messages; B takes over once A's session times out. */
    tk_produce_ids(e.m->bootstraps, TOPIC, N_WAVE2, LEDGER_ACCOUNTS,
                   N_PARTITIONS, SEED2, wave);
    for (i = 0; i < LEDGER_ACCOUNTS; i++)
        e.counts[i] += wave[i];
    b = ledger_start_worker(e.config_b, 10000, e.log_b);
    LEDGER_CHECK_LOG(ledger_wait_log(e.log_b, "partition claimed",
                                     N_PARTITIONS, b, 45000, &status),
                     e.log_b, "worker B did not take over %d partitions in "
                     "45 s (status %d); log: %s", N_PARTITIONS, status,
                     e.log_b);
    t_takeover = tk_now_ms();
    wait_rows(db, N_WAVE0 + N_WAVE1 + N_WAVE2, b, e.log_b, 30000);
    read_owners(db, epoch_b, owner_b);
    for (p = 0; p < N_PARTITIONS; p++) {
        TK_CHECK(owned_by(owner_b[p], b),
                 "partition %d is owned by \"%s\", not worker B (pid %d)", p,
                 owner_b[p] ? owner_b[p] : "(null)", (int)b);
        TK_CHECK(epoch_b[p] > epoch_a[p],
                 "partition %d: B's epoch %" PRId64 " is not above A's %"
                 PRId64, p, epoch_b[p], epoch_a[p]);
    }
    tk_note("B took over %.1f s after A stopped and applied all %d "
            "messages; epochs A -> B: %" PRId64 "->%" PRId64 ", %" PRId64
            "->%" PRId64 ", %" PRId64 "->%" PRId64 ", %" PRId64 "->%" PRId64,
            (double)(t_takeover - t_stop) / 1000.0, N_WAVE1 + N_WAVE2,
            epoch_a[0], epoch_b[0], epoch_a[1], epoch_b[1], epoch_a[2],
            epoch_b[2], epoch_a[3], epoch_b[3]);

    /* 3. The zombie wakes up with its batch due. */
    LEDGER_CHECK_LOG(tk_kill(a, SIGCONT) == 0, e.log_a,
                     "worker A is gone; log: %s", e.log_a);
    LEDGER_CHECK_LOG(ledger_wait_log(e.log_a, "batch fenced", 1, a, 30000,
                                     &status),
                     e.log_a, "worker A's late batch was not fenced within "
                     "30 s (status %d); log: %s", status, e.log_a);
    /* Nothing of A's reached the ledger, and what B committed stands. */
    TK_CHECK_EQ_INT64(ledger_check_consistent(db, TOPIC, N_PARTITIONS),
                      N_WAVE0 + N_WAVE1 + N_WAVE2,
                      "ledger rows after A's refusal");

    status = tk_wait(b, 60000);
    LEDGER_CHECK_LOG(status == 0, e.log_b,
                     "worker B: exit status %d, expected 0 (--exit-idle); "
                     "log: %s", status, e.log_b);
    LEDGER_CHECK_LOG(tk_kill(a, SIGTERM) == 0, e.log_a,
                     "worker A exited before SIGTERM; log: %s", e.log_a);
    status = tk_wait(a, 30000);
    if (status == -1)
        tk_kill(a, SIGKILL);
    LEDGER_CHECK_LOG(status == 0, e.log_a,
                     "worker A: exit status %d after SIGTERM, expected 0; "
                     "log: %s", status, e.log_a);
    LEDGER_CHECK_LOG(ledger_read_summary(e.log_a, &sum_a), e.log_a,
                     "worker A printed no summary; log: %s", e.log_a);
    LEDGER_CHECK_LOG(sum_a.fenced >= 1, e.log_a,
                     "worker A's summary says fenced %" PRId64 "; log: %s",
                     sum_a.fenced, e.log_a);
    fenced_lines = check_fenced_lines(e.log_a, epoch_a, epoch_b);
    LEDGER_CHECK_LOG(sum_a.applied == N_WAVE0, e.log_a,
                     "worker A applied %" PRId64 " messages although B had "
                     "applied all of them first; log: %s", sum_a.applied,
                     e.log_a);
    LEDGER_CHECK_LOG(ledger_read_summary(e.log_b, &sum_b), e.log_b,
                     "worker B printed no summary; log: %s", e.log_b);
    LEDGER_CHECK_LOG(sum_b.applied == N_WAVE1 + N_WAVE2, e.log_b,
                     "worker B applied %" PRId64 ", expected %d; log: %s",
                     sum_b.applied, N_WAVE1 + N_WAVE2, e.log_b);

    /* 4. Run to completion, then the full check. */
    fin = ledger_start_worker(e.config_b, 3000, e.log_final);
    status = tk_wait(fin, 60000);
    if (status == -1)
        tk_kill(fin, SIGKILL);
    LEDGER_CHECK_LOG(status == 0, e.log_final,
                     "final worker: exit status %d; log: %s", status,
                     e.log_final);
    ledger_check_exactly_once(db, e.m->bootstraps, TOPIC, N_PARTITIONS,
                              N_WAVE0 + N_WAVE1 + N_WAVE2, e.counts,
                              LEDGER_ACCOUNTS);

    tk_note("fencing test passed: A fenced %" PRId64 " batch(es) (%d `batch "
            "fenced` lines), applied %" PRId64 "; B applied %" PRId64
            " in %" PRId64 " batches; %.1f s",
            sum_a.fenced, fenced_lines, sum_a.applied, sum_b.applied,
            sum_b.committed,
            (double)(tk_now_ms() - t0) / 1000.0);
    for (p = 0; p < N_PARTITIONS; p++) {
        free(owner_a[p]);
        free(owner_b[p]);
    }
    PQfinish(db);
    tk_mock_stop(e.m);
    ledger_cleanup_dir(e.dir);
    return 0;
}
