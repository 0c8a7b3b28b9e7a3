/*
 * `exactly run` ends with one line per pipeline that adds up its workers:
 * `pipeline P total (N workers, R restarts): consumed ...`, the counters
 * of every process each worker slot ran.
 *
 * Two workers share 4 partitions of 400 messages and stop once idle. The
 * total line must name 2 workers and 0 restarts, its counters must equal
 * the sums of the two workers' own summary lines, and its consumed and
 * applied must be the 400 messages the exactly-once check finds applied.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define PARTITIONS 4
#define N_MSGS 400
#define N_ENTITIES 60

int main(void)
{
    static int64_t per_entity[N_ENTITIES];
    static const char total_prefix[] = "pipeline " LEDGER_PIPELINE " total (";
    ledger_fixture f;
    ledger_config c;
    char *text;
    const char *p;
    long long sum[9] = {0}, t[9];
    int n_workers, total_workers = -1, restarts = -1, status, k, lines = 0;
    tk_run_summary w[4];
    PGconn *db;

    ledger_fixture_start(&f, "run_summary", "run-summary", PARTITIONS);
    tk_produce_ids(f.mock->bootstraps, f.topic, N_MSGS, N_ENTITIES, PARTITIONS,
                   11, per_entity);
    memset(&c, 0, sizeof c);
    c.max_messages = 50;
    c.max_wait_ms = 50;
    c.pipeline_yaml = "    workers: 2\n";
    ledger_fixture_config(&f, &c);
    status = tk_exactly(f.log, 90000, "run", "-c", f.config, "--exit-idle",
                        "4000", NULL);
    LEDGER_CHECK_LOG(status == 0, f.log, "exactly run exited %d", status);

    text = tk_read_file(f.log);
    TK_CHECK(text != NULL, "no log");
    n_workers = tk_summaries(f.log, LEDGER_PIPELINE, w, 4);
    for (k = 0; k < n_workers && k < 4; k++) {
        sum[0] += w[k].consumed;
        sum[1] += w[k].applied;
        sum[2] += w[k].deduplicated;
        sum[3] += w[k].dead_lettered;
        sum[4] += w[k].skipped;
        sum[5] += w[k].committed;
        sum[6] += w[k].rolled_back;
        sum[7] += w[k].fenced;
        sum[8] += w[k].retries;
    }
    for (p = strstr(text, total_prefix); p; p = strstr(p + 1, total_prefix)) {
        lines++;
        TK_CHECK(sscanf(p, "pipeline " LEDGER_PIPELINE " total (%d workers, "
                           "%d restarts): consumed %lld, applied %lld, "
                           "deduplicated %lld, dead-lettered %lld, skipped "
                           "(no row) %lld; batches committed %lld, rolled back "
                           "%lld, fenced %lld; retries %lld",
                        &total_workers, &restarts, &t[0], &t[1], &t[2], &t[3],
                        &t[4], &t[5], &t[6], &t[7], &t[8]) == 11,
                 "the total line does not parse: %.300s", p);
        tk_note("%.*s", (int)strcspn(p, "\n"), p);
    }
    free(text);
    TK_CHECK(n_workers == 2, "%d worker summaries, expected 2", n_workers);
    TK_CHECK(lines == 1, "%d total lines, expected 1", lines);
    TK_CHECK(total_workers == 2 && restarts == 0,
             "total names %d workers, %d restarts", total_workers, restarts);
    for (k = 0; k < 9; k++)
        TK_CHECK(t[k] == sum[k], "total counter %d is %lld, the workers' sum "
                 "%lld", k, t[k], sum[k]);
    TK_CHECK(t[0] == N_MSGS && t[1] == N_MSGS,
             "total consumed %lld, applied %lld, expected %d", t[0], t[1],
             N_MSGS);

    db = tk_pg_connect(f.conninfo);
    ledger_check_exactly_once(db, f.mock->bootstraps, f.topic, PARTITIONS,
                              N_MSGS, per_entity, N_ENTITIES);
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
