/*
 * The outbox relay with mode: transactional (relay.h, invariant 6), on
 * the mock cluster:
 *   1. rows published in transactions appear once each among the
 *      committed records, and each batch wrote one position record; a
 *      transaction the broker refuses (an injected error) is aborted and
 *      its batch sent again, once;
 *   2. (fault hooks) N_LIVES relays killed by SIGKILL, alternately
 *      - between the Kafka commit and the PostgreSQL mark (the
 *        relay_txn_committed fault stalls there): the next relay must
 *        apply the committed position record and not send those rows
 *        again;
 *      - inside the open transaction, its records acknowledged, before
 *        the position record (relay_txn_sent): those records belong to a
 *        transaction that never commits, and the rows are sent again;
 *      then a last relay empties the outbox, and every row appears
 *      exactly once among the committed records;
 *   3. (fault hooks) fencing: a relay stalled inside its transaction
 *      (and frozen by SIGSTOP while the rest happens) loses its
 *      PostgreSQL session, a second relay with the same name
 *      takes the outbox over and publishes it, and the first, answered
 *      PRODUCER_FENCED by the broker, exits 1 saying it was fenced,
 *      marking nothing.
 *
 * The mock's limits (DESIGN 7), and what stands in for them here:
 * librdkafka 2.0.2's mock neither hides the records of a transaction that
 * never committed from read_committed readers nor fences an older
 * producer when a newer one initialises the same transactional.id. So the
 * test computes the committed records itself: the records a relay killed
 * inside its transaction wrote are the offsets between each partition's
 * end before that relay started (no other writer runs) and its end at
 * the stall; a broker aborts them when the next relay initialises the
 * transactional.id. And the broker's fencing answer is injected
 * (rd_kafka_mock_push_request_errors) once the second relay is done. The
 * same checks against a real broker, with read_committed, random kills
 * and real fencing, are test_relay_txn_broker (EXACTLY_TEST_BOOTSTRAP_
 * SERVERS).
 *
 * EXACTLY_TEST_SEED=<n> replays one run's choices.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "relay_kit.h"
#include "seeded.h"
#include "testkit.h"

#define TOPIC "relay-txn"
#define POSITIONS "relay-txn-positions"
#define N_PARTITIONS 4
#define N_LIVES 10
#define ROWS_PER_LIFE 60
#define MAX_ABORTED 64
/* Kafka's API keys (librdkafka keeps its names of them private). */
#define API_ADD_PARTITIONS_TO_TXN 24

/* Offsets [from, to) of one partition that a transaction left uncommitted. */
typedef struct aborted_range {
    int partition;
    int64_t from, to;
} aborted_range;

static aborted_range aborted[MAX_ABORTED];
static int n_aborted;

static void insert_rows(PGconn *db, int n)
{
    /* Transactions of 20 rows, keys 1..50. */
    int i;

    for (i = 0; i < n; i += 20)
        tk_sql(db, "INSERT INTO exactly.outbox (key, value) SELECT "
                   "convert_to((1 + (random() * 49)::int)::text, 'UTF8'), "
                   "'v' FROM generate_series(1, %d)",
               n - i < 20 ? n - i : 20);
}

/* Notes the offsets written since `before` as a transaction that never
 * commits. */
static void note_aborted(const char *bootstraps, const int64_t *before)
{
    int64_t now[N_PARTITIONS];
    int p;

    ledger_high_watermarks(bootstraps, TOPIC, N_PARTITIONS, now);
    for (p = 0; p < N_PARTITIONS; p++) {
        if (now[p] == before[p])
            continue;
        TK_CHECK(n_aborted < MAX_ABORTED, "too many aborted ranges");
        aborted[n_aborted].partition = p;
        aborted[n_aborted].from = before[p];
        aborted[n_aborted].to = now[p];
        n_aborted++;
    }
}

static int is_aborted(const relay_rec *r)
{
    int i;

    for (i = 0; i < n_aborted; i++)
        if (aborted[i].partition == r->partition &&
            r->offset >= aborted[i].from && r->offset < aborted[i].to)
            return 1;
    return 0;
}

int main(void)
{
    const char *faults_built = getenv("EXACTLY_TEST_FAULTS_BUILT");
    int use_faults = faults_built && strcmp(faults_built, "1") == 0;
    relay_fixture f;
    const char *bs;
    PGconn *db;
    uint64_t seed = seeded_pick();
    int64_t t0 = tk_now_ms(), before[N_PARTITIONS], positions;
    int life, status, committed_kills = 0, open_kills = 0;

    seeded_init(seed);
    tk_note("seed %llu (EXACTLY_TEST_SEED replays it)",
            (unsigned long long)seed);

    relay_fixture_start_txn(&f, "relay_txn", "txn", TOPIC, N_PARTITIONS,
                            POSITIONS, NULL);
    bs = f.bootstraps;
    db = f.db;

    /* 1. Published in transactions, once each; the first batch's
     * transaction fails (the broker refuses to add the topic's partitions,
     * an injected error), is aborted, and the batch is sent again. */
    insert_rows(db, 200);
    rd_kafka_mock_push_request_errors(
        tk_mock_cluster(f.mock), API_ADD_PARTITIONS_TO_TXN, 1,
        RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    status = relay_run_to_idle(f.config, 300, 30000, f.log);
    LEDGER_CHECK_LOG(status == 0, f.log, "relay exit status %d", status);
    LEDGER_CHECK_LOG(tk_file_contains(f.log, "records failed; sending them "
                                             "again"),
                     f.log, "no transaction was refused");
    relay_check_exactly_once(db, bs, TOPIC, N_PARTITIONS, is_aborted,
                             "one transaction refused");
    positions = tk_high_watermark(bs, POSITIONS, 0);
    TK_CHECK(positions >= 200 / 50,
             "%lld position records for 4 batches or more",
             (long long)positions);
    tk_note("part 1 at %lld ms", (long long)(tk_now_ms() - t0));

    if (!use_faults) {
        tk_note("kills and fencing need the fault hooks "
                "(-DEXACTLY_FAULT_INJECTION=ON): not run in this build");
        goto done;
    }

    /* 2. SIGKILL between the commit and the mark, and inside the
     * transaction. */
    for (life = 0; life < N_LIVES; life++) {
        int in_txn = life % 2 == 1;
        char faults[64];
        pid_t pid;

        insert_rows(db, ROWS_PER_LIFE);
        ledger_high_watermarks(bs, TOPIC, N_PARTITIONS, before);
        snprintf(faults, sizeof(faults), "%s:%d",
                 in_txn ? "relay_txn_sent" : "relay_txn_committed",
                 in_txn ? 1 : 1 + seeded_below(2));
        setenv("EXACTLY_FAULTS", faults, 1);
        pid = relay_start(f.config, NULL, f.log);
        unsetenv("EXACTLY_FAULTS");
        LEDGER_CHECK_LOG(ledger_wait_log(f.log, "fault: paused",
                                         committed_kills + open_kills + 1,
                                         pid, 20000, &status),
                         f.log, "life %d never reached the fault (%s)", life,
                         faults);
        if (in_txn)
            note_aborted(bs, before);
        tk_kill(pid, SIGKILL);
        status = tk_wait(pid, 10000);
        TK_CHECK(status == 128 + SIGKILL, "life %d ended with status %d",
                 life, status);
        if (in_txn)
            open_kills++;
        else
            committed_kills++;
    }
    tk_note("lives done at %lld ms", (long long)(tk_now_ms() - t0));
    status = relay_run_to_idle(f.config, 300, 30000, f.log);
    LEDGER_CHECK_LOG(status == 0, f.log, "last relay exit status %d", status);
    TK_CHECK(n_aborted > 0, "no kill inside a transaction left records");
    relay_check_exactly_once(db, bs, TOPIC, N_PARTITIONS, is_aborted,
                             "after the kills");
    /* Each kill after the commit left its batch committed and unmarked:
     * the next relay applied the position record. */
    LEDGER_CHECK_LOG(ledger_log_count(f.log, "position applied") >=
                         committed_kills,
                     f.log, "fewer positions applied than the %d kills "
                            "between commit and mark", committed_kills);

    /* 3. Fencing. The first relay stalls inside its transaction. */
    insert_rows(db, 40);
    ledger_high_watermarks(bs, TOPIC, N_PARTITIONS, before);
    {
        pid_t first;
        int64_t marked_before;

        setenv("EXACTLY_FAULTS", "relay_txn_sent:1", 1);
        first = relay_start(f.config, NULL, f.log);
        unsetenv("EXACTLY_FAULTS");
        LEDGER_CHECK_LOG(ledger_wait_log(f.log, "fault: paused",
                                         N_LIVES + 1, first, 20000,
                                         &status),
                         f.log, "the first relay never reached the fault");
        note_aborted(bs, before);
        /* Frozen there (so that the second relay has all the time it
         * needs), it loses its session, so its outbox lock ... */
        tk_kill(first, SIGSTOP);
        relay_terminate_sessions(db);
        /* ... and a second relay of the same name takes over. */
        status = relay_run_to_idle(f.config, 300, 30000, f.log2);
        LEDGER_CHECK_LOG(status == 0, f.log2, "second relay exit status %d",
                         status);
        marked_before = tk_sql_int64(db, "SELECT count(*) FROM "
                                         "exactly.outbox WHERE "
                                         "published_at IS NOT NULL");
        /* What a broker answers the first relay's next transactional
         * request once the second initialised the transactional.id. */
        rd_kafka_mock_push_request_errors(tk_mock_cluster(f.mock),
                                          API_ADD_PARTITIONS_TO_TXN, 1,
                                          RD_KAFKA_RESP_ERR_PRODUCER_FENCED);
        tk_kill(first, SIGCONT);
        status = tk_wait(first, 20000);
        LEDGER_CHECK_LOG(status == 1, f.log, "fenced relay exit status %d",
                         status);
        LEDGER_CHECK_LOG(tk_file_contains(f.log, "fenced: another relay took "
                                                 "over this transactional.id"),
                         f.log, "the fenced relay did not say so");
        TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                           "exactly.outbox WHERE "
                                           "published_at IS NOT NULL"),
                          marked_before, "rows marked after the fence");
    }
    relay_check_exactly_once(db, bs, TOPIC, N_PARTITIONS, is_aborted,
                             "after the fence");
    tk_note("%d kills between commit and mark, %d inside the transaction, "
            "one relay fenced; %lld ms",
            committed_kills, open_kills, (long long)(tk_now_ms() - t0));
done:
    relay_fixture_stop(&f);
    return 0;
}
