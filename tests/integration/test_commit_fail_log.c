/*
 * A failed Kafka offset commit is not a problem of the worker's: the
 * stored offsets in PostgreSQL are the truth, and Kafka's committed offset
 * only lets lag tools see progress (README "The contract"). librdkafka
 * reports such a failure as a log line of facility COMMITFAIL at warning
 * level, which during every rebalance (REBALANCE_IN_PROGRESS,
 * ILLEGAL_GENERATION) looked like trouble. It must be logged at debug.
 *
 * Every OffsetCommit (ApiKey 8) is answered REBALANCE_IN_PROGRESS while a
 * worker (-v: debug lines on) applies 200 messages in batches of 20. The
 * commit failures must show, at debug and nowhere at warn or error, and
 * the exactly-once check must hold.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define APIKEY_OFFSETCOMMIT 8
#define N_MSGS 200
#define N_ENTITIES 50

int main(void)
{
    static int64_t per_entity[N_ENTITIES];
    rd_kafka_resp_err_t errs[64];
    ledger_fixture f;
    ledger_config c;
    char *text, *line, *save = NULL;
    char *argv[8];
    int i, status, at_debug = 0, louder = 0;
    pid_t pid;
    PGconn *db;

    ledger_fixture_start(&f, "commit_fail", "commit-fail", 1);
    tk_produce_ids(f.mock->bootstraps, f.topic, N_MSGS, N_ENTITIES, 1, 3,
                   per_entity);
    for (i = 0; i < 64; i++)
        errs[i] = RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS;
    rd_kafka_mock_push_request_errors_array(tk_mock_cluster(f.mock),
                                            APIKEY_OFFSETCOMMIT, 64, errs);
    memset(&c, 0, sizeof c);
    c.max_messages = 20;
    c.max_wait_ms = 50;
    ledger_fixture_config(&f, &c);

    argv[0] = (char *)ledger_exactly_bin();
    argv[1] = "worker";
    argv[2] = "-c";
    argv[3] = f.config;
    argv[4] = "--exit-idle";
    argv[5] = "3000";
    argv[6] = "-v";
    argv[7] = NULL;
    pid = tk_spawn(argv, f.log);
    status = tk_wait(pid, 60000);
    if (status == -1)
        tk_terminate(pid, 5000);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited with %d", status);

    text = tk_read_file(f.log);
    TK_CHECK(text != NULL, "no log %s", f.log);
    for (line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        if (!strstr(line, "facility=COMMITFAIL"))
            continue;
        if (strstr(line, "level=debug")) {
            at_debug++;
        } else {
            louder++;
            tk_note("louder than debug: %s", line);
        }
    }
    free(text);
    TK_CHECK(at_debug + louder > 0,
             "no COMMITFAIL line at all: the injected commit errors did not "
             "happen (log %s)", f.log);
    TK_CHECK(louder == 0, "%d COMMITFAIL line(s) above debug, %d at debug",
             louder, at_debug);
    tk_note("%d COMMITFAIL line(s), all at debug", at_debug);

    db = tk_pg_connect(f.conninfo);
    ledger_check_exactly_once(db, f.mock->bootstraps, f.topic, 1, N_MSGS,
                              per_entity, N_ENTITIES);
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
