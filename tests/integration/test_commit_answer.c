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
    char opts[128];
    int64_t counts[ENTITIES];
    ledger_fixture f;
    ledger_config c;
    PGconn *db;
    int bad, status;
    char *reason;

    ledger_fixture_start(&f, "commit_answer", TOPIC, PARTITIONS);
    tk_produce_ids(f.mock->bootstraps, TOPIC, MESSAGES, ENTITIES, PARTITIONS,
                   SEED, counts);
    bad = (int)tk_id_for(SEED, 0, ENTITIES);
    snprintf(opts, sizeof opts, "        swallow_on_id: '%d'\n", bad);
    memset(&c, 0, sizeof c);
    c.max_messages = 50;
    c.max_wait_ms = 50;
    c.handler_options_yaml = opts;
    ledger_fixture_config(&f, &c);

    status = ledger_run_to_idle(f.config, 3000, 90000, f.log);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited with %d", status);

    db = tk_pg_connect(f.conninfo);
    ledger_check_exactly_once_except(db, f.mock->bootstraps, TOPIC,
                                     PARTITIONS, MESSAGES, counts, ENTITIES,
                                     bad);
    reason = tk_sql_text(db, "SELECT min(reason || ' sqlstate=' || "
                             "coalesce(sqlstate, '')) FROM "
                             "exactly.dead_letters");
    TK_CHECK(reason && strstr(reason, "division by zero") &&
                 strstr(reason, "22012"),
             "the dead letter should carry the swallowed error, got: %s",
             reason ? reason : "(null)");
    free(reason);
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
