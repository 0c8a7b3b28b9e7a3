/*
 * A COMMIT that answers ROLLBACK is not a commit (defect 4).
 *
 * The ledger handler, told to misbehave with swallow_on_id, runs a query
 * that fails (division by zero) after queuing its writes and ignores the
 * error. PostgreSQL has then aborted the batch's transaction, writes and
 * offset advance alike, and answers the COMMIT with the command tag
 * ROLLBACK. The runtime must see that: the batch did not commit, the
 * handler failed, and bisect isolates the record whose handler swallowed
 * the error into the dead-letter table with the real error text, while
 * every other message is applied exactly once and the stored offsets reach
 * the end of each partition.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "commit-answer"
#define PARTITIONS 2
#define MESSAGES 200
#define ENTITIES 50
#define SEED 4004

int main(void)
{
    char dir[256], conninfo[1024], config[512], log[512], opts[128];
    int64_t counts[ENTITIES];
    tk_mock *mock;
    PGconn *db;
    int bad, status;
    char *reason;
    ledger_config c;

    tk_tmpdir("exactly-commit-answer", dir, sizeof dir);
    snprintf(config, sizeof config, "%s/ledger.yaml", dir);
    snprintf(log, sizeof log, "%s/worker.log", dir);
    tk_pg_create_db("commit_answer", conninfo, sizeof conninfo);
    ledger_setup_db(conninfo);
    mock = tk_mock_start(1);
    tk_mock_create_topic(mock, TOPIC, PARTITIONS);
    tk_produce_ids(mock->bootstraps, TOPIC, MESSAGES, ENTITIES, PARTITIONS,
                   SEED, counts);
    bad = (int)tk_id_for(SEED, 0, ENTITIES);
    snprintf(opts, sizeof opts, "        swallow_on_id: '%d'\n", bad);

    memset(&c, 0, sizeof c);
    c.bootstraps = mock->bootstraps;
    c.conninfo = conninfo;
    c.topic = TOPIC;
    c.max_messages = 50;
    c.max_wait_ms = 50;
    c.handler_options_yaml = opts;
    ledger_write_config(config, &c);
    ledger_migrate(config, log);

    status = ledger_run_to_idle(config, 3000, 90000, log);
    LEDGER_CHECK_LOG(status == 0, log, "worker exited with %d", status);

    db = tk_pg_connect(conninfo);
    ledger_check_exactly_once_except(db, mock->bootstraps, TOPIC, PARTITIONS,
                                     MESSAGES, counts, ENTITIES, bad);
    reason = tk_sql_text(db, "SELECT min(reason || ' sqlstate=' || "
                             "coalesce(sqlstate, '')) FROM "
                             "exactly.dead_letters");
    TK_CHECK(reason && strstr(reason, "division by zero") &&
                 strstr(reason, "22012"),
             "the dead letter should carry the swallowed error, got: %s",
             reason ? reason : "(null)");
    free(reason);
    PQfinish(db);
    tk_mock_stop(mock);
    ledger_cleanup_dir(dir);
    return 0;
}
