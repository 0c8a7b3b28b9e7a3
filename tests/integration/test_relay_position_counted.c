/*
 * Rows a relay in mode transactional marks from its last position record
 * (a batch committed in Kafka whose mark failed: here the fault site
 * relay_outcome_collect, so the relay drops its session and applies the
 * position when it has the outbox lock again) are published rows like
 * any other: counted in relay_state.published and in the metrics counter
 * exactly_relay_rows_published_total of `exactly run --metrics`, so both
 * agree with the table.
 *
 * Runs only in a build with -DEXACTLY_FAULT_INJECTION=ON; skipped
 * otherwise.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "relay_kit.h"
#include "testkit.h"

#define TOPIC "relay-counted"
#define POSITIONS "relay-counted-positions"
#define ROWS 40

int main(void)
{
    const char *faults_built = getenv("EXACTLY_TEST_FAULTS_BUILT");
    relay_fixture f;
    char addr[64], *body = NULL;
    int64_t deadline;
    double published = -1;
    pid_t run;
    int port, status;

    if (!faults_built || strcmp(faults_built, "1") != 0)
        tk_skip("the relay_outcome_collect fault site needs a build with "
                "EXACTLY_FAULT_INJECTION");
    relay_fixture_start_txn(&f, "relay_counted", "counted", TOPIC, 1,
                            POSITIONS, NULL);
    relay_insert_rows(f.db, ROWS);

    /* The first batch (all the rows) is committed in Kafka; recording
     * its outcome in PostgreSQL then fails. */
    port = tk_free_port();
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    setenv("EXACTLY_FAULTS", "relay_outcome_collect:1", 1);
    {
        char *argv[] = {(char *)ledger_exactly_bin(), "run", "-c", f.config,
                        "--metrics", addr, "--lock-dir", f.dir,
                        "--shutdown-timeout", "20", NULL};
        run = tk_spawn(argv, f.log);
    }
    unsetenv("EXACTLY_FAULTS");
    relay_wait_settled(f.db, f.log, 30000, "rows marked");
    LEDGER_CHECK_LOG(ledger_log_count(f.log, "position applied") >= 1, f.log,
                     "the rows were not marked from the position record");
    TK_CHECK_EQ_INT64(tk_sql_int64(f.db, "SELECT count(*) FROM exactly.outbox"
                                         " WHERE published_at IS NOT NULL"),
                      ROWS, "rows marked published");
    TK_CHECK_EQ_INT64(tk_sql_int64(f.db, "SELECT published FROM"
                                         " exactly.relay_state"
                                         " WHERE relay = 'counted'"),
                      ROWS, "relay_state.published");
    /* The counter follows the mark at once; the scrape may lag a little. */
    deadline = tk_now_ms() + 10000;
    for (;;) {
        free(body);
        body = NULL;
        if (tk_http_get(port, "/metrics", &body) == 200 && body) {
            published = tk_metric_sum(body,
                                      "exactly_relay_rows_published_total",
                                      "relay=\"counted\"");
            if (published == ROWS)
                break;
        }
        if (tk_now_ms() >= deadline)
            break;
        tk_sleep_ms(100);
    }
    free(body);
    TK_CHECK_EQ_INT64((int64_t)published, ROWS,
                      "exactly_relay_rows_published_total");
    status = tk_terminate(run, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log, "exactly run exited %d after "
                     "SIGTERM", status);
    relay_fixture_stop(&f);
    return 0;
}
