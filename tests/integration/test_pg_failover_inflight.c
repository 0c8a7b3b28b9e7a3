/*
 * Failover to a lagging asynchronous standby while messages wait: the
 * setup of test_pg_failover_async (wave 1 replicated, wave 2 on the
 * primary only, worker frozen, primary crashed, standby promoted), plus a
 * wave 3 produced into every partition before the worker resumes.
 *
 * The worker's first batches after resuming fail on the dead connection
 * and are retried on the new primary, whose stored offsets are behind the
 * batches' starts. A retry must start from the stored offset, never
 * advance it over messages it did not apply: once the stored offsets
 * reach the partition ends, every offset below them has its ledger row.
 * Then consumed = produced + what was lost, no batch fenced and the
 * exactly-once check holds.
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

/* Offsets below the stored ones without a ledger row, as
 * "partition:first-last" ranges; returns how many. */
static int64_t unapplied(PGconn *db, char *out, size_t out_size)
{
    PGresult *res = PQexec(db,
        "WITH missing AS ("
        " SELECT o.partition, g AS off FROM exactly.offsets o,"
        "  generate_series(0, o.next_offset - 1) g"
        " WHERE o.pipeline = '" LEDGER_PIPELINE "' AND NOT EXISTS ("
        "  SELECT 1 FROM ledger l WHERE l.topic = o.topic"
        "   AND l.partition = o.partition AND l.\"offset\" = g)),"
        " runs AS (SELECT partition, off, off - row_number() OVER"
        "  (PARTITION BY partition ORDER BY off) AS grp FROM missing)"
        " SELECT partition, min(off), max(off), count(*) FROM runs"
        " GROUP BY partition, grp ORDER BY partition, min(off)");
    int64_t n = 0;
    int r;

    TK_CHECK(PQresultStatus(res) == PGRES_TUPLES_OK, "query: %s",
             PQerrorMessage(db));
    out[0] = '\0';
    for (r = 0; r < PQntuples(res); r++) {
        size_t len = strlen(out);
        snprintf(out + len, out_size - len, "%s%s:%s-%s", len ? ", " : "",
                 PQgetvalue(res, r, 0), PQgetvalue(res, r, 1),
                 PQgetvalue(res, r, 2));
        n += strtoll(PQgetvalue(res, r, 3), NULL, 10);
    }
    PQclear(res);
    return n;
}

int main(void)
{
    static failover f;
    char behind[512], gaps[1024];
    int64_t t_resume, recovered_ms, missing;
    ledger_summary sum;
    int status;
    PGconn *db;
    pid_t pid;

    failover_start(&f, "failover_inflight", "async", 100, 10000);
    tk_note("logs in %s", f.dir);

    failover_produce(&f, WAVE);
    pid = ledger_start_worker(f.config, 0, f.log);
    failover_wait_at_end(&f, f.conninfo, 60000, "after wave 1");
    failover_wait_at_end(&f, f.standby, 30000, "on the standby after wave 1");
    replica_cmd("detach");
    failover_produce(&f, WAVE);
    failover_wait_at_end(&f, f.conninfo, 60000, "after wave 2");

    TK_CHECK(tk_kill(pid, SIGSTOP) == 0, "the worker is gone");
    tk_note("primary crashed, standby promoted in %" PRId64 " ms",
            failover_crash_and_promote(&f));
    failover_produce(&f, 2 * WAVE); /* wave 3: waits in every partition */

    TK_CHECK(tk_kill(pid, SIGCONT) == 0, "the worker is gone");
    t_resume = tk_now_ms();
    if (!failover_at_end_within(&f, f.multi, RECOVER_MS, behind,
                                sizeof behind)) {
        ledger_log_tail(f.log, 40);
        tk_fail("%d ms after the failover the stored offsets on the new "
                "primary are still behind the partition ends (%s)",
                RECOVER_MS, behind);
    }
    recovered_ms = tk_now_ms() - t_resume;
    db = tk_pg_connect(f.multi);
    missing = unapplied(db, gaps, sizeof gaps);
    LEDGER_CHECK_LOG(missing == 0, f.log,
                     "the stored offsets reached the partition ends, but "
                     "%" PRId64 " offsets below them were never applied on "
                     "the new primary (partition:first-last: %s): a retried "
                     "batch advanced the stored offset over them",
                     missing, gaps);
    tk_note("caught up %" PRId64 " ms after the worker resumed",
            recovered_ms);

    status = tk_terminate(pid, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited %d", status);
    LEDGER_CHECK_LOG(ledger_read_summary(f.log, &sum), f.log, "no summary");
    LEDGER_CHECK_LOG(sum.fenced == 0, f.log, "%" PRId64 " fenced batches",
                     sum.fenced);
    LEDGER_CHECK_LOG(sum.consumed == f.produced + WAVE, f.log,
                     "consumed %" PRId64 ", want produced %" PRId64
                     " + lost %d", sum.consumed, f.produced, WAVE);
    ledger_check_exactly_once(db, f.mock->bootstraps, FAILOVER_TOPIC,
                              FAILOVER_PARTITIONS, f.produced, f.counts,
                              LEDGER_ACCOUNTS);
    PQfinish(db);
    failover_stop(&f);
    return 0;
}
