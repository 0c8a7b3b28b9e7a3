/*
 * A group transaction (several partitions' small batches in one
 * transaction) that is rolled back counts as a batch transaction rolled
 * back: in exactly_batches_rolled_back_total on /metrics and in the
 * worker's summary, as a batch of its own does. Its partitions then run
 * alone and count what they do then.
 *
 * PARTITIONS partitions get one message each per round, ROUND_MS apart,
 * into a running `exactly run --metrics` (a low rate: small batches that
 * group). apply() answers EXACTLY_ERETRY once, for the first batch that
 * holds one entity of round 5: that round's group rolls back, and the
 * batch then commits alone. Every rollback the log names, of a group or
 * of a batch alone, must be in the counter, and nothing else.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exactly/error.h"
#include "ledger_check.h"
#include "testkit.h"

#define PARTITIONS 4
#define ROUNDS 10
#define ROUND_MS 80
#define ENTITIES 50
#define SEED 5300

static const char *const kafka_fast[] = {"fetch.wait.max.ms", "10", NULL};

int main(void)
{
    int64_t counts[ENTITIES] = {0}, round[ENTITIES], deadline;
    int64_t groups, alone, rolled;
    ledger_fixture f;
    ledger_config c;
    ledger_summary sum;
    char opts[256], addr[64], *body = NULL;
    PGconn *db;
    pid_t run;
    int port, r, k, status;
    int bad = (int)tk_id_for(SEED + 5, 1, ENTITIES);

    ledger_fixture_start(&f, "group_rollback_metrics",
                         "group-rollback-metrics", PARTITIONS);
    snprintf(opts, sizeof opts,
             "        return_on_id: '%d'\n"
             "        return_code: %d\n"
             "        return_times: 1\n",
             bad, (int)EXACTLY_ERETRY);
    memset(&c, 0, sizeof c);
    c.max_messages = 1000;
    c.max_wait_ms = 20;
    c.kafka = kafka_fast;
    c.handler_options_yaml = opts;
    ledger_fixture_config(&f, &c);

    port = tk_free_port();
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    {
        char *argv[] = {(char *)ledger_exactly_bin(), "run", "-c", f.config,
                        "--metrics", addr, "--lock-dir", f.dir, NULL};
        run = tk_spawn(argv, f.log);
    }
    tk_wait_claims(f.log, 0, PARTITIONS, run, 30000);
    for (r = 0; r < ROUNDS; r++) {
        tk_produce_ids(f.mock->bootstraps, f.topic, PARTITIONS, ENTITIES,
                       PARTITIONS, SEED + (uint64_t)r, round);
        for (k = 0; k < ENTITIES; k++)
            counts[k] += round[k];
        tk_sleep_ms(ROUND_MS);
    }
    db = tk_pg_connect(f.conninfo);
    deadline = tk_now_ms() + 60000;
    while (ledger_rows(db) < ROUNDS * PARTITIONS) {
        LEDGER_CHECK_LOG(tk_now_ms() < deadline && tk_wait(run, 0) == -1,
                         f.log, "the ledger did not reach %d rows (has %"
                         PRId64 ")", ROUNDS * PARTITIONS, ledger_rows(db));
        tk_sleep_ms(50);
    }

    groups = tk_log_lines_with(f.log, "group rolled back", NULL);
    alone = tk_log_lines_with(f.log, "batch rolled back", NULL);
    LEDGER_CHECK_LOG(tk_http_get(port, "/metrics", &body) == 200 && body,
                     f.log, "GET /metrics did not answer 200");
    rolled = (int64_t)tk_metric_sum(body, "exactly_batches_rolled_back_total",
                                    NULL);
    free(body);
    tk_note("rolled back: %" PRId64 " groups and %" PRId64 " batches alone "
            "in the log, %" PRId64 " in exactly_batches_rolled_back_total",
            groups, alone, rolled);
    LEDGER_CHECK_LOG(groups >= 1, f.log, "the refused batch was not in a "
                     "group: nothing to check (entity %d)", bad);
    LEDGER_CHECK_LOG(rolled == groups + alone, f.log,
                     "exactly_batches_rolled_back_total is %" PRId64 "; the "
                     "log names %" PRId64 " group and %" PRId64 " lone "
                     "rollbacks", rolled, groups, alone);

    status = tk_terminate(run, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log, "exactly run exited with %d",
                     status);
    LEDGER_CHECK_LOG(ledger_read_summary(f.log, &sum), f.log,
                     "the worker printed no summary");
    LEDGER_CHECK_LOG(sum.rolled_back == groups + alone, f.log,
                     "the summary says %" PRId64 " batches rolled back; the "
                     "log names %" PRId64 " group and %" PRId64 " lone "
                     "rollbacks", sum.rolled_back, groups, alone);
    ledger_check_exactly_once(db, f.mock->bootstraps, f.topic, PARTITIONS,
                              (int64_t)ROUNDS * PARTITIONS, counts, ENTITIES);
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
