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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_kit.h"
#include "dlq_kit.h"
#include "testkit.h"

#define TOPIC "deferred"
#define PIPELINE "deferred"
#define WAIT_MS 45000

int main(void)
{
    cli_kit c;
    int64_t stored, refused;
    int status;

    cli_kit_start(&c, "deferred_constraint", TOPIC, 1, "deferred.yaml", 0);
    dlq_bad_pair_setup(&c, PIPELINE, TOPIC,
                       "CREATE TABLE groups (id int PRIMARY KEY);"
                       "INSERT INTO groups VALUES (1);"
                       "CREATE TABLE view (id bigint PRIMARY KEY, grp int"
                       " REFERENCES groups (id) DEFERRABLE INITIALLY"
                       " DEFERRED)");
    stored = cli_kit_worker_to_offset(&c, PIPELINE, 6, WAIT_MS,
                                      "violates foreign key constraint",
                                      &refused, &status);
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
