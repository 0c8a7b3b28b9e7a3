/*
 * The COMMIT of a group of partitions (several partitions' small batches
 * in one transaction) whose answer never comes: each partition's own next
 * run reads its stored row, as after a batch of its own, so nothing is
 * applied twice, nothing is lost, and the counters are right.
 *
 *   lost    a deferred constraint trigger on the ledger sleeps at commit;
 *           the test terminates the worker's backend while COMMIT waits
 *           in it: the commit did not happen, and each partition applies
 *           its messages again, alone.
 *   landed  synchronous_standby_names names a standby that does not
 *           exist, so a commit is written locally and then waits
 *           (SyncRep); terminating the backend then leaves it committed
 *           without an answer: each partition must see from its stored
 *           offset that it committed (`earlier commit confirmed`, once per
 *           partition of the group) and count it once.
 *
 * A moment counts only when the worker's log shows it was a group's
 * COMMIT (`group rolled back` with commit_sent=1); the test hunts again
 * otherwise. The worker runs at a low rate (a round of one message per
 * partition at a time), so its batches are small and grouped. At the end
 * the summary's consumed and applied equal what was produced and the
 * exactly-once check holds. The setting is server-wide: the test runs a
 * cluster of its own.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "own_cluster.h"
#include "testkit.h"

#define TOPIC "group-unknown"
#define PARTITIONS 8
#define ENTITIES 50
#define SEED 7300
#define TRIES 10
#define HUNT_MS 3000
#define ABSENT_STANDBY "exactly_absent_standby"

typedef struct run {
    tk_mock *mock;
    PGconn *db;
    pid_t pid;
    const char *log;
    int64_t counts[ENTITIES];
    int64_t produced;
    int rounds;
} run;

/* One message per partition. */
static void produce_round(run *r)
{
    int64_t round[ENTITIES];
    int k;

    tk_produce_ids(r->mock->bootstraps, TOPIC, PARTITIONS, ENTITIES,
                   PARTITIONS, SEED + (uint64_t)r->rounds, round);
    for (k = 0; k < ENTITIES; k++)
        r->counts[k] += round[k];
    r->produced += PARTITIONS;
    r->rounds++;
}

/* Waits until the ledger holds everything produced. */
static void wait_applied(run *r)
{
    int64_t deadline = tk_now_ms() + 30000;

    while (ledger_rows(r->db) < r->produced) {
        LEDGER_CHECK_LOG(tk_now_ms() < deadline, r->log,
                         "the ledger did not reach %" PRId64 " rows in 30 s",
                         r->produced);
        LEDGER_CHECK_LOG(tk_wait(r->pid, 0) == -1, r->log,
                         "the worker exited");
        tk_sleep_ms(10);
    }
}

/* Produces a round and terminates the worker's backend while it runs
 * COMMIT waiting on wait_event. 1 on a hit, 0 when none came. */
static int kill_in_commit(run *r, const char *wait_event)
{
    produce_round(r);
    return tk_pg_terminate_in_commit(r->db, r->pid, wait_event,
                                     tk_now_ms() + HUNT_MS);
}

/* Lines saying a group's COMMIT went unanswered. */
static int group_unknown(const run *r)
{
    return tk_log_lines_with(r->log, "group rolled back", "commit_sent=1");
}

/* Hunts until a group's COMMIT is terminated on wait_event. */
static void hunt(run *r, const char *wait_event, int standby)
{
    int before = group_unknown(r), i;

    for (i = 0; i < TRIES; i++) {
        int hit;

        if (standby)
            tk_pg_set_sync_standby(r->db, ABSENT_STANDBY);
        hit = kill_in_commit(r, wait_event);
        if (standby)
            tk_pg_set_sync_standby(r->db, NULL);
        wait_applied(r);
        (void)ledger_check_consistent(r->db, TOPIC, PARTITIONS);
        if (hit && group_unknown(r) > before)
            return;
    }
    ledger_log_tail(r->log, 40);
    tk_fail("no group COMMIT waiting on %s caught in %d tries", wait_event,
            TRIES);
}

int main(void)
{
    static const char *const kafka[] = {"fetch.wait.max.ms", "10", NULL};
    char dir[256], config[512], log[512], conninfo[1024];
    int confirmed, status;
    ledger_summary sum;
    ledger_config cfg;
    run r;

    memset(&r, 0, sizeof r);
    tk_tmpdir("exactly-group-unknown", dir, sizeof dir);
    own_cluster_start(dir);
    r.mock = tk_mock_start(1);
    tk_mock_create_topic(r.mock, TOPIC, PARTITIONS);
    tk_pg_create_db("group_unknown", conninfo, sizeof conninfo);
    ledger_setup_db(conninfo);
    snprintf(config, sizeof config, "%s/worker.yaml", dir);
    memset(&cfg, 0, sizeof cfg);
    cfg.bootstraps = r.mock->bootstraps;
    cfg.conninfo = conninfo;
    cfg.topic = TOPIC;
    cfg.max_messages = 1000;
    cfg.max_wait_ms = 20;
    cfg.kafka = kafka;
    ledger_write_config(config, &cfg);
    snprintf(log, sizeof log, "%s/migrate.log", dir);
    ledger_migrate(config, log);
    snprintf(log, sizeof log, "%s/worker.log", dir);
    r.log = log;
    r.db = tk_pg_connect(conninfo);
    /* The standby wait is for the worker's commits, not the test's. */
    tk_sql(r.db, "SET synchronous_commit = local");
    r.pid = ledger_start_worker(config, 0, log);
    tk_wait_claims(log, 0, PARTITIONS, r.pid, 30000);
    /* The first batch after a claim runs alone (the crash guard asks
     * about it); from the second on they group. */
    produce_round(&r);
    wait_applied(&r);
    produce_round(&r);
    wait_applied(&r);

    /* lost */
    tk_pg_slow_commit(r.db, "ledger");
    hunt(&r, "PgSleep", 0);
    tk_sql(r.db, "DROP TRIGGER slow_commit ON ledger");
    tk_note("lost: a group's COMMIT terminated before it landed; applied "
            "again, ledger consistent");

    /* landed */
    confirmed = tk_log_lines_with(log, "earlier commit confirmed", NULL);
    hunt(&r, "SyncRep", 1);
    /* The ledger holds the landed commit at once; each partition confirms
     * it once the worker has reconnected and runs it again. */
    for (int64_t until = tk_now_ms() + 15000;
         tk_log_lines_with(log, "earlier commit confirmed", NULL) <
             confirmed + 2 && tk_now_ms() < until;)
        tk_sleep_ms(20);
    LEDGER_CHECK_LOG(tk_log_lines_with(log, "earlier commit confirmed",
                                       NULL) >= confirmed + 2,
                     log, "a group's COMMIT that landed was confirmed by "
                     "%d partitions, expected at least 2",
                     tk_log_lines_with(log, "earlier commit confirmed",
                                       NULL) - confirmed);
    tk_note("landed: %d partitions confirmed the group's commit from their "
            "stored offsets",
            tk_log_lines_with(log, "earlier commit confirmed", NULL) -
                confirmed);

    status = tk_terminate(r.pid, 30000);
    LEDGER_CHECK_LOG(status == 0, log, "worker exited with %d on SIGTERM",
                     status);
    LEDGER_CHECK_LOG(ledger_read_summary(log, &sum), log,
                     "the worker printed no summary");
    LEDGER_CHECK_LOG(sum.consumed == r.produced && sum.applied == r.produced,
                     log, "summary: consumed %" PRId64 ", applied %" PRId64
                     " of %" PRId64 " produced",
                     sum.consumed, sum.applied, r.produced);
    ledger_check_exactly_once(r.db, r.mock->bootstraps, TOPIC, PARTITIONS,
                              r.produced, r.counts, ENTITIES);
    PQfinish(r.db);
    tk_mock_stop(r.mock);
    own_cluster_remove();
    tk_cleanup_dir(dir);
    return 0;
}
