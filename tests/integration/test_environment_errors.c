/*
 * Errors about the environment, not about a record, never dead-letter
 * good records (defect 23; DESIGN section 3).
 *
 *   privilege  the worker runs as a role of its own; while it runs, the
 *              test revokes INSERT on the ledger. Every batch then fails
 *              with SQLSTATE 42501. The worker must back off and retry,
 *              loudly, without moving the stored offsets and without a
 *              single dead letter; once the grant is back it applies
 *              everything exactly once.
 *   table      the same with the ledger table renamed away (42P01) and
 *              renamed back.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ledger_check.h"
#include "testkit.h"

#define PARTITIONS 2
#define PHASE 100
#define ENTITIES 40
/* How long the broken environment is watched. */
#define WATCH_MS 5000

/* Waits until the ledger holds rows rows; fails after timeout_ms. */
static void wait_rows(PGconn *db, int64_t rows, const char *log,
                      int timeout_ms)
{
    int64_t deadline = tk_now_ms() + timeout_ms;

    while (ledger_rows(db) < rows) {
        LEDGER_CHECK_LOG(tk_now_ms() < deadline, log,
                         "the ledger did not reach %" PRId64 " rows (has %"
                         PRId64 ")", rows, ledger_rows(db));
        tk_sleep_ms(100);
    }
}

static void add_counts(int64_t *total, const int64_t *more)
{
    int i;

    for (i = 0; i < ENTITIES; i++)
        total[i] += more[i];
}

/* Runs one case: break() makes every batch fail with an environment
 * error whose message contains needle, mend() repairs it. */
static void run_case(const char *name, int as_role, const char *break_sql,
                     const char *mend_sql, const char *needle)
{
    char role[64], conninfo[1200];
    int64_t counts[ENTITIES] = {0}, more[ENTITIES];
    ledger_fixture f;
    ledger_config c;
    PGconn *db;
    pid_t pid;
    int status;

    ledger_fixture_start(&f, name, name, PARTITIONS);
    memset(&c, 0, sizeof c);
    c.max_messages = 20;
    c.max_wait_ms = 50;
    ledger_fixture_config(&f, &c);
    db = tk_pg_connect(f.conninfo);
    snprintf(conninfo, sizeof conninfo, "%s", f.conninfo);
    if (as_role) {
        snprintf(role, sizeof role, "exw_%d", (int)getpid());
        tk_sql(db, "DROP ROLE IF EXISTS %s; CREATE ROLE %s LOGIN", role, role);
        tk_sql(db, "GRANT USAGE ON SCHEMA exactly TO %s;"
                   "GRANT ALL ON ALL TABLES IN SCHEMA exactly, public TO %s;"
                   "GRANT ALL ON ALL SEQUENCES IN SCHEMA exactly TO %s",
               role, role, role);
        snprintf(conninfo, sizeof conninfo, "%s user=%s", f.conninfo, role);
        c.conninfo = conninfo;
        ledger_write_config(f.config, &c);
    }

    tk_produce_ids(f.mock->bootstraps, f.topic, PHASE, ENTITIES, PARTITIONS,
                   1, more);
    add_counts(counts, more);
    pid = ledger_start_worker(f.config, 0, f.log);
    wait_rows(db, PHASE, f.log, 60000);

    tk_sql(db, "%s", break_sql);
    tk_produce_ids(f.mock->bootstraps, f.topic, PHASE, ENTITIES, PARTITIONS,
                   2, more);
    add_counts(counts, more);
    /* The first failure, then watch a while: a bisect that dead-letters
     * records takes well under a second. */
    LEDGER_CHECK_LOG(ledger_wait_log(f.log, needle, 1, pid, 60000, &status),
                     f.log, "[%s] no '%s' in the log (status %d)", name,
                     needle, status);
    for (int64_t until = tk_now_ms() + WATCH_MS; tk_now_ms() < until;) {
        TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                           "exactly.dead_letters"),
                          0, "dead letters while the environment is broken");
        TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT sum(next_offset) FROM "
                                           "exactly.offsets"),
                          PHASE,
                          "stored offsets while the environment is broken");
        tk_sleep_ms(200);
    }

    tk_sql(db, "%s", mend_sql);
    wait_rows(db, 2 * PHASE, f.log, 90000);
    status = tk_terminate(pid, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited with %d", status);
    ledger_check_exactly_once(db, f.mock->bootstraps, f.topic, PARTITIONS,
                              2 * PHASE, counts, ENTITIES);
    if (as_role) {
        tk_sql(db, "DROP OWNED BY %s; DROP ROLE %s", role, role);
    }
    PQfinish(db);
    ledger_fixture_stop(&f);
}

/* With an argument ("privilege" or "table"), runs that case alone. */
int main(int argc, char **argv)
{
    char revoke[128], grant[128];

    snprintf(revoke, sizeof revoke, "REVOKE INSERT ON ledger FROM exw_%d",
             (int)getpid());
    snprintf(grant, sizeof grant, "GRANT INSERT ON ledger TO exw_%d",
             (int)getpid());
    if (argc < 2 || strcmp(argv[1], "privilege") == 0)
        run_case("env_privilege", 1, revoke, grant, "permission denied");
    if (argc < 2 || strcmp(argv[1], "table") == 0)
        run_case("env_table", 0, "ALTER TABLE ledger RENAME TO ledger_away",
                 "ALTER TABLE ledger_away RENAME TO ledger",
                 "does not exist");
    return 0;
}
