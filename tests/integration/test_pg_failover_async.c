/*
 * Failover to an asynchronous standby that lacks the last committed
 * transactions, with nothing new to consume afterwards.
 *
 * The worker's conninfo names the primary and a streaming standby
 * (host=a,b target_session_attrs=read-write). Wave 1 is applied and
 * replicated; then the standby stops streaming (as a lagging asynchronous
 * standby) and wave 2 is applied on the primary only. The worker is frozen
 * (SIGSTOP), the primary crashes (immediate stop) and the standby is
 * promoted: it holds wave 1 with its stored offsets and nothing of wave 2,
 * which data and offsets lose together.
 *
 * While the worker is frozen `exactly offsets --json` shows the database's
 * view: stored = what the new primary holds, Kafka's committed offset (for
 * monitoring only) ahead at the partition end, lag = LSO - stored.
 *
 * Resumed with no new message, the worker must notice the new connection,
 * read its positions from the database again and apply the lost range:
 * within 90 s every stored offset is back at the partition end, with no
 * rebalance and no fenced batch; consumed = produced + what was lost; at
 * the end committed = stored = LSO and lag 0; the exactly-once check holds
 * on the new primary.
 */
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "failover.h"
#include "ledger_check.h"
#include "replica.h"
#include "testkit.h"

#define WAVE 1000 /* per wave: 250 per partition */
#define RECOVER_MS 90000

/* Checks one partition's row of `exactly offsets --json`. */
static void check_json(const char *text, int64_t stored_want,
                       int64_t committed_want, const int64_t *hw,
                       const char *when)
{
    json_error_t jerr;
    json_t *all = json_loads(text, 0, &jerr), *row;
    size_t i;
    int seen = 0;

    TK_CHECK(all != NULL && json_is_array(all),
             "offsets --json (%s) is not a JSON array (%s):\n%s", when,
             jerr.text, text);
    json_array_foreach(all, i, row) {
        int p = (int)json_integer_value(json_object_get(row, "partition"));
        int64_t stored = json_integer_value(json_object_get(row, "stored"));
        int64_t committed = json_integer_value(json_object_get(row, "committed"));
        int64_t lso = json_integer_value(json_object_get(row, "lso"));
        int64_t lag = json_integer_value(json_object_get(row, "lag"));

        TK_CHECK(p >= 0 && p < FAILOVER_PARTITIONS, "partition %d", p);
        seen++;
        TK_CHECK(lso == hw[p], "%s: partition %d: lso %" PRId64 ", want %"
                 PRId64 ":\n%s", when, p, lso, hw[p], text);
        TK_CHECK(stored == stored_want / FAILOVER_PARTITIONS,
                 "%s: partition %d: stored %" PRId64 ", want %" PRId64
                 " (what the database holds):\n%s", when, p, stored,
                 stored_want / FAILOVER_PARTITIONS, text);
        TK_CHECK(committed == committed_want / FAILOVER_PARTITIONS,
                 "%s: partition %d: Kafka's committed %" PRId64 ", want %"
                 PRId64 ":\n%s", when, p, committed,
                 committed_want / FAILOVER_PARTITIONS, text);
        TK_CHECK(lag == lso - stored, "%s: partition %d: lag %" PRId64
                 " is not LSO - stored (%" PRId64 "): lag must follow the "
                 "database:\n%s", when, p, lag, lso - stored, text);
    }
    TK_CHECK(seen == FAILOVER_PARTITIONS, "%s: %d rows in offsets --json",
             when, seen);
    json_decref(all);
}

int main(void)
{
    static failover f;
    int64_t hw[FAILOVER_PARTITIONS];
    int64_t promote_ms, t_resume, recovered_ms;
    char behind[512], *json;
    ledger_summary sum;
    int claims, status;
    PGconn *db;
    pid_t pid;

    failover_start(&f, "failover_async", "async", 100, 10000);
    tk_note("logs in %s", f.dir);

    failover_produce(&f, WAVE);
    pid = ledger_start_worker(f.config, 0, f.log);
    failover_wait_at_end(&f, f.conninfo, 60000, "after wave 1");
    failover_wait_at_end(&f, f.standby, 30000, "on the standby after wave 1");

    replica_cmd("detach");
    failover_produce(&f, WAVE);
    failover_wait_at_end(&f, f.conninfo, 60000, "after wave 2");
    /* Kafka's committed offsets follow each commit asynchronously. */
    tk_sleep_ms(1500);
    claims = ledger_log_count(f.log, "partition claimed");

    TK_CHECK(tk_kill(pid, SIGSTOP) == 0, "the worker is gone");
    promote_ms = failover_crash_and_promote(&f);
    tk_note("primary crashed, standby promoted in %" PRId64 " ms", promote_ms);
    ledger_high_watermarks(f.mock->bootstraps, FAILOVER_TOPIC,
                           FAILOVER_PARTITIONS, hw);
    json = failover_offsets_json(&f);
    check_json(json, WAVE, 2 * WAVE, hw, "while the worker is frozen");
    tk_note("offsets while frozen (stored = new primary, committed = Kafka):"
            "\n%s", json);
    free(json);

    TK_CHECK(tk_kill(pid, SIGCONT) == 0, "the worker is gone");
    t_resume = tk_now_ms();
    if (!failover_at_end_within(&f, f.multi, RECOVER_MS, behind,
                                sizeof behind)) {
        ledger_log_tail(f.log, 40);
        tk_fail("%d ms after the failover the stored offsets on the new "
                "primary are still behind the partition ends (%s): the "
                "worker did not re-read its positions from the database and "
                "the %d messages the standby lacked are not applied",
                RECOVER_MS, behind, WAVE);
    }
    recovered_ms = tk_now_ms() - t_resume;
    tk_note("stored offsets back at the partition ends %" PRId64
            " ms after the worker resumed", recovered_ms);
    tk_sleep_ms(1500);
    json = failover_offsets_json(&f);
    check_json(json, 2 * WAVE, 2 * WAVE, hw, "at the end");
    free(json);

    status = tk_terminate(pid, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited %d", status);
    LEDGER_CHECK_LOG(ledger_read_summary(f.log, &sum), f.log, "no summary");
    LEDGER_CHECK_LOG(ledger_log_count(f.log, "partition claimed") == claims,
                     f.log, "a rebalance happened after the failover (%d "
                     "claims, %d before)",
                     ledger_log_count(f.log, "partition claimed"), claims);
    LEDGER_CHECK_LOG(sum.fenced == 0, f.log, "%" PRId64 " fenced batches",
                     sum.fenced);
    LEDGER_CHECK_LOG(sum.consumed == f.produced + WAVE, f.log,
                     "consumed %" PRId64 ", want produced %" PRId64
                     " + lost %d", sum.consumed, f.produced, WAVE);
    db = tk_pg_connect(f.multi);
    ledger_check_exactly_once(db, f.mock->bootstraps, FAILOVER_TOPIC,
                              FAILOVER_PARTITIONS, f.produced, f.counts,
                              LEDGER_ACCOUNTS);
    PQfinish(db);
    tk_note("failover (async, lagging standby): crash to promoted %" PRId64
            " ms, resume to caught up %" PRId64 " ms", promote_ms,
            recovered_ms);
    failover_stop(&f);
    return 0;
}
