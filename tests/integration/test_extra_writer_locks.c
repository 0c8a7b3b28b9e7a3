/*
 * The locks of the extra writers (`exactly dlq replay`, `exactly
 * reprocess`) beyond the race of test_extra_writer_race.c, each case
 * ordered by the test's own sessions (no live worker: a session writes
 * what the worker would):
 *
 *   - probe: whether the lookup can lock is tried once at start; a
 *     transient failure of that try (here a lock timeout: the test holds
 *     an EXCLUSIVE lock on the source table, which a plain read passes
 *     but a locking one waits for) must not make the command read
 *     unlocked. Only a lookup PostgreSQL refuses to lock does that.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_kit.h"
#include "dlq_kit.h"
#include "testkit.h"

#define TOPIC "xl"
#define PIPELINE "xl"
#define WAIT_MS 30000

static cli_kit c;
static char table_cfg[600];

/* The pipeline reading src by a table lookup into view with the unfused
 * upsert (on_missing: dead_letter keeps lookup and write apart). */
static void write_config(const char *path, const char *on_missing,
                         int delete_missing, const char *lookup_sql)
{
    tk_config cfg;
    tk_pipeline *pl = dlq_view_pipeline(&c, &cfg, PIPELINE, TOPIC, "bigint",
                                        (const char *[]){"id", "name", NULL});

    cfg.lock_timeout_ms = 300;
    pl->on_missing = on_missing;
    if (lookup_sql) {
        pl->lookup_table = NULL;
        pl->lookup_sql = lookup_sql;
        pl->lookup_key_column = "id";
    }
    pl->options_yaml = delete_missing ? "        delete_missing: true\n"
                                      : "        delete_missing: false\n";
    tk_config_write(path, &cfg);
}

/* Dead letters 1 and 2 (offsets 0 and 1), planted unless still there. */
static void letters(void)
{
    if (cli_dead_letters(&c, NULL) == 0)
        dlq_plant_series(&c, PIPELINE, TOPIC, 2);
}

/* A probe that meets a lock timeout: the replay must not go on unlocked
 * (it fails, or waits for the lock); once the lock is gone it replays. */
static void probe_lock_timeout(void)
{
    const char *argv[] = {"dlq", "replay", "-c", table_cfg, "--all", NULL};
    PGconn *hold = tk_pg_connect(c.conninfo);
    char log[700], *out = NULL;
    int status;

    letters();
    tk_sql(hold, "BEGIN; LOCK TABLE src IN EXCLUSIVE MODE");
    snprintf(log, sizeof(log), "%s/probe-held.log", c.dir);
    status = tk_exactly_output(log, WAIT_MS, argv, &out);
    tk_note("probe: replay under the table lock exited %d", status);
    TK_CHECK(!strstr(out, "reads them unlocked"),
             "a lock timeout of the lookup's probe made the replay read "
             "unlocked (exit %d):\n%s",
             status, out);
    free(out);
    tk_sql(hold, "ROLLBACK");
    PQfinish(hold);

    letters();
    snprintf(log, sizeof(log), "%s/probe-free.log", c.dir);
    status = tk_exactly_output(log, WAIT_MS, argv, &out);
    TK_CHECK(status == 0 && !strstr(out, "reads them unlocked"),
             "replay with the table free exited %d:\n%s", status, out);
    free(out);
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM view"), 2,
                      "view rows after the replay");
}

int main(void)
{
    cli_kit_start(&c, "extra_writer_locks", TOPIC, 1, "table.yaml", 0);
    snprintf(table_cfg, sizeof(table_cfg), "%s", c.cfg);
    dlq_named_tables(&c, 2);
    write_config(table_cfg, "dead_letter", 0, NULL);
    cli_kit_migrate(&c);

    probe_lock_timeout();

    cli_kit_stop(&c);
    return 0;
}
