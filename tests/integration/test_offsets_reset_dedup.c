/*
 * `exactly offsets reset` back, on a pipeline with `dedup`, against a real
 * PostgreSQL and the mock cluster, with the ledger pipeline as the witness
 * (dedup on the key; every message has a key of its own):
 *
 *   1. a worker applies the whole partition: one ledger row per offset;
 *   2. the ledger rows of offsets >= K are removed (a target to repair),
 *      and the partition is reset back to K: the dry run's plan and the
 *      reset's outcome both say that messages whose dedup key is still
 *      kept are skipped as duplicates, and name `exactly reprocess`;
 *   3. what they say holds: a worker reads the offsets from K again and
 *      applies none of them (all deduplicated), the stored offset back at
 *      the end;
 *   4. `exactly reprocess` of K..end applies every one of them (it uses
 *      no dedup): one ledger_reprocess row per offset;
 *   5. a reset back to K with --forget-dedup deletes, in its transaction,
 *      the dedup keys recorded at offsets from K of that partition (its
 *      dry run deletes none), and a worker applies those offsets again.
 *
 * A reset forward says nothing of dedup: nothing is read again.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_kit.h"
#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "offsets-dedup"
#define N_MSGS 40
#define K 20
#define WORKER_TIMEOUT_MS 60000
#define SKIPPED "skipped as duplicates"
#define POINTER "exactly reprocess"
#define FORGET_PLANNED "would delete the dedup keys recorded at offsets from"
#define FORGOTTEN "deleted 20 dedup key(s) recorded at offsets from"

static const char *const short_session[] = {
    "session.timeout.ms", "3000", "heartbeat.interval.ms", "300", NULL};

static void run_worker_to_end(cli_kit *c, const char *tag, ledger_summary *sum)
{
    cli_kit_worker_summary(c, tag, 1000, WORKER_TIMEOUT_MS, sum);
}

static int64_t ledger_count(cli_kit *c, const char *where)
{
    return tk_sql_int64(c->db, "SELECT count(*) FROM ledger WHERE topic = '"
                               TOPIC "' AND %s", where);
}

int main(void)
{
    cli_kit c;
    ledger_config lc;
    ledger_summary sum;
    char *out;
    int status;

    cli_kit_start(&c, "offsets_reset_dedup", TOPIC, 1, "worker.yaml", 1);
    /* N_MSGS keys, one per message: dedup drops nothing the first time. */
    cli_kit_produce_ids(&c, TOPIC, N_MSGS, N_MSGS, 1, NULL);
    ledger_create_reprocess_table(c.db);
    memset(&lc, 0, sizeof lc);
    lc.bootstraps = c.bootstraps;
    lc.conninfo = c.conninfo;
    lc.topic = TOPIC;
    lc.max_messages = 10;
    lc.max_wait_ms = 50;
    lc.kafka = short_session;
    lc.pipeline_yaml = "    dedup: {from: key}\n";
    ledger_write_config(c.cfg, &lc);
    cli_kit_migrate(&c);

    /* 1. */
    run_worker_to_end(&c, "first", &sum);
    TK_CHECK_EQ_INT64(ledger_count(&c, "true"), N_MSGS, "ledger rows");
    TK_CHECK_EQ_INT64(sum.deduplicated, 0, "deduplicated the first time");

    /* 2. The target loses what it holds from K; the operator goes back. */
    tk_sql(c.db, "DELETE FROM ledger WHERE topic = '" TOPIC "' AND "
                 "\"offset\" >= %d", K);
    status = cli_exactly(&c, &out, "offsets", "reset", "--pipeline",
                         LEDGER_PIPELINE, "--topic", TOPIC, "--partition", "0",
                         "--to-offset", "20", "--dry-run", NULL);
    TK_CHECK(status == 0, "dry run exited %d:\n%s", status, out);
    TK_CHECK(strstr(out, SKIPPED) && strstr(out, POINTER),
             "the dry run of a reset back on a pipeline with dedup does not "
             "say that kept dedup keys skip the messages, nor name `"
             POINTER "`:\n%s", out);
    free(out);
    status = cli_exactly(&c, &out, "offsets", "reset", "--pipeline",
                         LEDGER_PIPELINE, "--topic", TOPIC, "--partition", "0",
                         "--to-offset", "20", NULL);
    TK_CHECK(status == 0, "reset exited %d:\n%s", status, out);
    TK_CHECK(strstr(out, SKIPPED) && strstr(out, POINTER),
             "a reset back on a pipeline with dedup does not say that kept "
             "dedup keys skip the messages, nor name `" POINTER "`:\n%s",
             out);
    free(out);

    /* 3. What it said holds: nothing from K is applied again. */
    run_worker_to_end(&c, "after-reset", &sum);
    TK_CHECK_EQ_INT64(sum.deduplicated, N_MSGS - K,
                      "messages read again and deduplicated");
    TK_CHECK_EQ_INT64(sum.applied, 0, "messages applied after the reset");
    TK_CHECK_EQ_INT64(ledger_count(&c, "\"offset\" >= 20"), 0,
                      "ledger rows from K after the reset");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT next_offset FROM "
                                         "exactly.offsets"),
                      N_MSGS, "stored offset after the worker");

    /* 4. A reprocess of the range applies every message of it. */
    status = cli_exactly(&c, &out, "reprocess", "--pipeline",
                         LEDGER_PIPELINE, "--topic", TOPIC, "--partition", "0",
                         "--from", "20", "--to", "39", "-q", NULL);
    TK_CHECK(status == 0, "reprocess exited %d:\n%s", status, out);
    free(out);
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(DISTINCT \"offset\") "
                                         "FROM ledger_reprocess WHERE "
                                         "\"offset\" BETWEEN 20 AND 39"),
                      N_MSGS - K, "offsets the reprocess applied");

    /* A reset forward reads nothing again: no word of dedup. */
    status = cli_exactly(&c, &out, "offsets", "reset", "--pipeline",
                         LEDGER_PIPELINE, "--topic", TOPIC, "--partition", "0",
                         "--to-offset", "30", NULL);
    TK_CHECK(status == 0, "reset exited %d:\n%s", status, out);
    free(out);
    status = cli_exactly(&c, &out, "offsets", "reset", "--pipeline",
                         LEDGER_PIPELINE, "--topic", TOPIC, "--partition", "0",
                         "--to-latest", NULL);
    TK_CHECK(status == 0, "reset exited %d:\n%s", status, out);
    TK_CHECK(strstr(out, SKIPPED) == NULL,
             "a reset forward speaks of dedup:\n%s", out);
    free(out);

    /* 5. Back to K with --forget-dedup: the keys recorded at offsets from
     * K go in the reset's transaction (the dry run only says it would),
     * and a worker applies those offsets again. */
    status = cli_exactly(&c, &out, "offsets", "reset", "--pipeline",
                         LEDGER_PIPELINE, "--topic", TOPIC, "--partition", "0",
                         "--to-offset", "20", "--forget-dedup", "--dry-run",
                         NULL);
    TK_CHECK(status == 0, "dry run with --forget-dedup exited %d:\n%s",
             status, out);
    TK_CHECK(strstr(out, FORGET_PLANNED) != NULL,
             "the dry run does not say \"" FORGET_PLANNED "\":\n%s", out);
    free(out);
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM "
                                         "exactly.dedup_keys"),
                      N_MSGS, "dedup keys after the dry run");
    status = cli_exactly(&c, &out, "offsets", "reset", "--pipeline",
                         LEDGER_PIPELINE, "--topic", TOPIC, "--partition", "0",
                         "--to-offset", "20", "--forget-dedup", NULL);
    TK_CHECK(status == 0, "reset --forget-dedup exited %d:\n%s", status,
             out);
    TK_CHECK(strstr(out, FORGOTTEN) != NULL && strstr(out, SKIPPED) == NULL,
             "the reset with --forget-dedup does not say \"" FORGOTTEN
             "\" (or still says that keys skip messages):\n%s", out);
    free(out);
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM "
                                         "exactly.dedup_keys WHERE \"offset\""
                                         " >= 20"),
                      0, "dedup keys from K after --forget-dedup");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM "
                                         "exactly.dedup_keys"),
                      K, "dedup keys before K after --forget-dedup");
    run_worker_to_end(&c, "after-forget", &sum);
    TK_CHECK_EQ_INT64(sum.applied, N_MSGS - K,
                      "messages applied after the reset with --forget-dedup");
    TK_CHECK_EQ_INT64(sum.deduplicated, 0,
                      "deduplicated after the reset with --forget-dedup");
    TK_CHECK_EQ_INT64(ledger_count(&c, "\"offset\" >= 20"), N_MSGS - K,
                      "ledger rows from K after --forget-dedup");

    cli_kit_stop(&c);
    return 0;
}
