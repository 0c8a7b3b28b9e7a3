/*
 * A record whose failure has a long message in multi-byte UTF-8.
 *
 * The server's error message becomes the dead letter's reason. Kept in a
 * buffer of fixed size, a message longer than it is shortened; shortened
 * inside a multi-byte character, the reason is no longer UTF-8, the
 * database refuses the dead letter (22021) and with it the batch, which
 * is retried for ever: hostile content would cost a stuck partition
 * instead of one dead letter with a reason (DESIGN.md §3). The same
 * reason is written again by `exactly dlq replay` when a record fails
 * again.
 *
 * Six IDs on one partition, one batch; a trigger on the target rejects
 * the rows of 3 and 4 with 'rejected: ' and 600 times U+0416 (1,210
 * bytes). Asserted: the stored offset reaches the end of the log; 3 and
 * 4 are dead-lettered with a reason that starts with the server's text
 * and ends on a whole character of it; 1, 2, 5 and 6 are in the target;
 * the worker exits at idle; a replay with the trigger still in place
 * exits 0 and keeps both dead letters, failed again with the same kind
 * of reason.
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

#define TOPIC "long-reason"
#define PIPELINE "long_reason"
#define WAIT_MS 45000

/* The dead letters of 3 and 4 whose reason is the trigger's message, or
 * a shortened copy of it ending on a whole character. */
#define REJECTED                                                               \
    "entity_id IN ('3', '4') AND reason LIKE 'rejected: %' AND "             \
    "right(reason, 1) = U&'\\0416'"

int main(void)
{
    cli_kit c;
    char *out = NULL;
    int64_t stored, refused;
    int status;

    cli_kit_start(&c, "dead_letter_long_reason", TOPIC, 1, "long.yaml", 0);
    dlq_bad_pair_setup(&c, PIPELINE, TOPIC,
                       "CREATE TABLE view (id bigint PRIMARY KEY, grp int);"
                       "CREATE FUNCTION rej() RETURNS trigger LANGUAGE plpgsql"
                       " AS $f$BEGIN IF NEW.grp = 9 THEN RAISE EXCEPTION"
                       " 'rejected: %', repeat(U&'\\0416', 600); END IF;"
                       " RETURN NEW; END$f$;"
                       "CREATE TRIGGER rej BEFORE INSERT OR UPDATE ON view"
                       " FOR EACH ROW EXECUTE FUNCTION rej()");
    stored = cli_kit_worker_to_offset(&c, PIPELINE, 6, WAIT_MS,
                                      "invalid byte sequence", &refused,
                                      &status);
    TK_CHECK(stored == 6,
             "%d ms after the start the stored offset is %lld of 6, and the "
             "log holds %lld line(s) of the database refusing text that is "
             "not UTF-8: the long reason of a dead letter was cut inside a "
             "character, and the partition is stuck behind the records that "
             "failed",
             WAIT_MS, (long long)stored, (long long)refused);
    TK_CHECK(status == 0, "worker exited %d", status);
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, NULL), 2, "dead letters");
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, REJECTED), 2,
                      "dead letters of 3 and 4 giving the trigger's message");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM view WHERE "
                                         "id IN (1, 2, 5, 6)"),
                      4, "target rows of the good records");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM view"), 4,
                      "target rows");

    /* The replay fails them again and writes the reason again. */
    status = cli_exactly(&c, &out, "dlq", "replay", "--all", NULL);
    TK_CHECK(status == 0, "replay (still rejected) exited %d:\n%s", status,
             out);
    free(out);
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, NULL), 2,
                      "dead letters after a failed replay");
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, REJECTED " AND attempts = 2"), 2,
                      "dead letters of 3 and 4 failed again by the replay, "
                      "giving the trigger's message");
    cli_kit_stop(&c);
    return 0;
}
