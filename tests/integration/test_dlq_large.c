/*
 * `exactly dlq replay --all` of a large backlog finishes in its one
 * transaction.
 *
 * Between the statements of that transaction the client builds the
 * records (one per entity ID, its looked-up rows attached); while it does,
 * the session is idle in transaction, and the server ends it after
 * postgres.idle_in_transaction_timeout_ms. Building must therefore cost
 * time linear in the letters, not one pass over them per entity:
 *
 *   - N_LETTERS dead letters of one partition, each of its own entity, and
 *     a source row for each, planted with SQL (no worker: the point is the
 *     replay, not how the letters came to be);
 *   - the built-in upsert in its fused form, as the reviewer ran it, and
 *     an idle-in-transaction timeout of IDLE_MS;
 *   - `dlq replay --all` exits 0, the dead-letter table is empty and every
 *     entity is in the target.
 *
 * With a scan per entity (N_LETTERS squared string compares) the client
 * stays idle in transaction far longer than IDLE_MS and the server
 * terminates the session.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_kit.h"
#include "dlq_kit.h"
#include "testkit.h"

#define TOPIC "dlq-large"
#define PIPELINE "large"
#define N_LETTERS 30000
#define IDLE_MS 2000
#define CMD_TIMEOUT_MS 240000

static void write_config(cli_kit *c)
{
    tk_config cfg;
    tk_pipeline *pl = dlq_view_pipeline(c, &cfg, PIPELINE, TOPIC, "bigint",
                                        (const char *[]){"id", "name", NULL});

    cfg.idle_in_transaction_timeout_ms = IDLE_MS;
    pl->on_missing = "skip";
    pl->max_messages = 1000;
    pl->max_wait_ms = 50;
    tk_config_write(c->cfg, &cfg);
}

int main(void)
{
    cli_kit c;
    char *out;
    int64_t t0, ms;
    int status;

    cli_kit_start(&c, "dlq_large", TOPIC, 1, "large.yaml", 0);
    c.cmd_timeout_ms = CMD_TIMEOUT_MS;
    dlq_named_tables(&c, N_LETTERS);
    write_config(&c);
    cli_kit_migrate(&c);
    /* Letter g: offset g - 1, key and entity ID g, as the worker would
     * have written them (key length and digest included). */
    dlq_plant_series(&c, PIPELINE, TOPIC, N_LETTERS);
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, NULL), N_LETTERS,
                      "dead letters planted");

    t0 = tk_now_ms();
    status = cli_exactly(&c, &out, "dlq", "replay", "--all", NULL);
    ms = tk_now_ms() - t0;
    tk_note("dlq replay --all of %d letters: exit %d in %" PRId64 " ms:\n%s",
            N_LETTERS, status, ms, out);
    TK_CHECK(status == 0, "replay of %d letters exited %d:\n%s", N_LETTERS,
             status, out);
    free(out);
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, NULL), 0,
                      "dead letters after the replay");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM view v JOIN"
                                         " src s USING (id, name)"),
                      N_LETTERS, "target rows written by the replay");

    cli_kit_stop(&c);
    return 0;
}
