/*
 * A record that breaks a deferred constraint of the target.
 *
 * A DEFERRABLE INITIALLY DEFERRED constraint (here a foreign key) is
 * checked at COMMIT, not by the statement that broke it: the handler's
 * writes succeed, and COMMIT is answered with the violation (23503) and
 * rolls the whole batch back. That is a failure of the batch's records,
 * like the same violation raised by the statement itself: the batch goes
 * through careful mode, which must find the record, dead-letter it and
 * commit the others, never a batch retried for ever behind one bad row.
 *
 * Six IDs on one partition, one batch; the source rows of 3 and 4 name a
 * group the groups table lacks. Asserted: the partition reaches the end
 * of its log; 3 and 4 are dead-lettered with the violation as the reason;
 * 1, 2, 5 and 6 are in the target; the worker exits at idle.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_kit.h"
#include "testkit.h"

#define TOPIC "deferred"
#define PIPELINE "deferred"
#define WAIT_MS 45000

int main(void)
{
    cli_kit c;
    tk_config cfg;
    tk_pipeline *pl = &cfg.pipelines[0];
    char log[600];
    int64_t stored, refused;
    pid_t pid;
    int status;

    cli_kit_start(&c, "deferred_constraint", TOPIC, 1, "deferred.yaml", 0);
    cli_kit_produce_ids(&c, TOPIC, 6, 6, 1, NULL);
    tk_sql(c.db, "CREATE TABLE groups (id int PRIMARY KEY);"
                 "INSERT INTO groups VALUES (1);"
                 "CREATE TABLE src (id bigint PRIMARY KEY, grp int);"
                 "INSERT INTO src SELECT g, CASE WHEN g IN (3, 4) THEN 9"
                 " ELSE 1 END FROM generate_series(1, 6) g;"
                 "CREATE TABLE view (id bigint PRIMARY KEY, grp int"
                 " REFERENCES groups (id) DEFERRABLE INITIALLY DEFERRED)");

    tk_config_init(&cfg, c.bootstraps, c.conninfo);
    cfg.kafka[0] = (tk_prop){"session.timeout.ms", "6000"};
    pl->name = PIPELINE;
    pl->topics[0] = TOPIC;
    pl->id_from = "key";
    pl->id_type = "bigint";
    pl->lookup_table = "src";
    tk_upsert_handler(pl, "view", (const char *[]){"id", "grp", NULL});
    pl->max_messages = 10;
    pl->max_wait_ms = 50;
    tk_config_write(c.cfg, &cfg);
    cli_kit_migrate(&c);

    snprintf(log, sizeof(log), "%s/worker.log", c.dir);
    pid = tk_worker_start(c.cfg, 3000, log, NULL);
    stored = tk_sql_wait_int64(c.db, 6, WAIT_MS,
                               "SELECT coalesce((SELECT next_offset FROM"
                               " exactly.offsets WHERE pipeline = '"
                               PIPELINE "'), 0)");
    refused = tk_log_lines_with(log, "violates foreign key constraint", NULL);
    if (stored != 6)
        kill(pid, SIGTERM);
    status = tk_worker_wait(pid, 60000, log);
    TK_CHECK(stored == 6,
             "%d ms after the start the stored offset is %lld of 6, and the "
             "log holds %lld line(s) of the deferred foreign key's "
             "violation: a COMMIT refused by a deferred constraint is "
             "retried as a database error, and the partition is stuck "
             "behind the records that break it",
             WAIT_MS, (long long)stored, (long long)refused);
    TK_CHECK(status == 0, "worker exited %d", status);
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, NULL), 2, "dead letters");
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, "entity_id IN ('3', '4') AND "
                                           "reason LIKE '%violates foreign "
                                           "key constraint%'"),
                      2, "dead letters of 3 and 4 giving the violation");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM view WHERE "
                                         "id IN (1, 2, 5, 6)"),
                      4, "target rows of the good records");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM view"), 4,
                      "target rows");
    cli_kit_stop(&c);
    return 0;
}
