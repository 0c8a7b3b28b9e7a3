/*
 * Failover that loses a claim: worker 1 applies wave 1 (owner epoch 1),
 * replicated. The standby stops streaming; worker 1 stops and worker 2
 * claims every partition (epoch 2) and applies wave 2, on the primary
 * only. Worker 2 is frozen, the primary crashes and the standby is
 * promoted: it holds epoch 1 and the offsets of wave 1.
 *
 * Owner epochs only grow, so a stored epoch below the worker's own means
 * the database lost the worker's claim, not that another worker took the
 * partition. Resumed, worker 2 must claim the rows again and apply wave 2
 * again: within 90 s every stored offset is at the partition end, with no
 * rebalance, every row's epoch >= 2, worker 2's consumed = wave 2 + what
 * was lost (wave 2), and the exactly-once check holds.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "failover.h"
#include "ledger_check.h"
#include "replica.h"
#include "testkit.h"

#define WAVE 1000
#define RECOVER_MS 90000

int main(void)
{
    static failover f;
    char behind[512], log2[600];
    int64_t t_resume, recovered_ms, low_epoch;
    ledger_summary sum;
    int status, claims;
    PGconn *db;
    pid_t w1, w2;

    /* 15 s: the mock waits that long for a member that left to go. */
    failover_start(&f, "failover_claim_lost", "async", 100, 15000);
    snprintf(log2, sizeof log2, "%s/worker2.log", f.dir);
    tk_note("logs in %s", f.dir);

    failover_produce(&f, WAVE);
    w1 = ledger_start_worker(f.config, 0, f.log);
    failover_wait_at_end(&f, f.conninfo, 60000, "after wave 1");
    failover_wait_at_end(&f, f.standby, 30000, "on the standby after wave 1");
    replica_cmd("detach");
    status = tk_terminate(w1, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker 1 exited %d", status);

    w2 = ledger_start_worker(f.config2, 0, log2);
    LEDGER_CHECK_LOG(ledger_wait_log(log2, "partition claimed",
                                     FAILOVER_PARTITIONS, w2, 60000, NULL),
                     log2, "worker 2 did not claim the partitions");
    failover_produce(&f, WAVE);
    failover_wait_at_end(&f, f.conninfo, 60000, "after wave 2");
    db = tk_pg_connect(f.conninfo);
    TK_CHECK(tk_sql_int64(db, "SELECT min(owner_epoch) FROM exactly.offsets")
                 == 2, "worker 2's claim is not epoch 2");
    PQfinish(db);
    claims = ledger_log_count(log2, "partition claimed");

    TK_CHECK(tk_kill(w2, SIGSTOP) == 0, "worker 2 is gone");
    tk_note("primary crashed, standby promoted in %" PRId64 " ms",
            failover_crash_and_promote(&f));
    db = tk_pg_connect(f.multi);
    TK_CHECK(tk_sql_int64(db, "SELECT max(owner_epoch) FROM exactly.offsets")
                 == 1, "the new primary has worker 2's claim: the standby "
                 "did not lag");
    PQfinish(db);

    TK_CHECK(tk_kill(w2, SIGCONT) == 0, "worker 2 is gone");
    t_resume = tk_now_ms();
    if (!failover_at_end_within(&f, f.multi, RECOVER_MS, behind,
                                sizeof behind)) {
        ledger_log_tail(log2, 40);
        tk_fail("%d ms after the failover the stored offsets on the new "
                "primary are still behind the partition ends (%s): the "
                "worker took the lost claim for another owner's and stopped "
                "serving partitions Kafka still assigns it",
                RECOVER_MS, behind);
    }
    recovered_ms = tk_now_ms() - t_resume;
    tk_note("caught up %" PRId64 " ms after the worker resumed",
            recovered_ms);

    status = tk_terminate(w2, 30000);
    LEDGER_CHECK_LOG(status == 0, log2, "worker 2 exited %d", status);
    LEDGER_CHECK_LOG(ledger_log_count(log2, "partition claimed") == claims,
                     log2, "a rebalance happened after the failover");
    LEDGER_CHECK_LOG(ledger_read_summary(log2, &sum), log2, "no summary");
    LEDGER_CHECK_LOG(sum.consumed == 2 * WAVE, log2,
                     "worker 2 consumed %" PRId64 ", want wave 2 (%d) + "
                     "lost (%d)", sum.consumed, WAVE, WAVE);
    db = tk_pg_connect(f.multi);
    low_epoch = tk_sql_int64(db, "SELECT min(owner_epoch) FROM exactly.offsets");
    LEDGER_CHECK_LOG(low_epoch >= 2, log2, "an offset row has epoch %" PRId64
                     " after worker 2 served it again", low_epoch);
    ledger_check_exactly_once(db, f.mock->bootstraps, FAILOVER_TOPIC,
                              FAILOVER_PARTITIONS, f.produced, f.counts,
                              LEDGER_ACCOUNTS);
    PQfinish(db);
    failover_stop(&f);
    return 0;
}
