/*
 * Every wait for PostgreSQL is bounded, and a wait that runs out ends the
 * connection (defects 2 and 17).
 *
 *   overflow  statement_timeout_ms and lock_timeout_ms at their largest
 *             allowed value (INT_MAX): the client's own bound is computed
 *             without overflowing, and the worker applies the topic.
 *   sleep     statement_timeout_ms: 0 (no server-side bound) and a handler
 *             that waits longer than the client's bound (client_timeout_ms,
 *             short here; by default 30 s after both server timeouts, a
 *             sum the overflow case covers): the client gives up, ends the
 *             connection (so no later statement can read the old one's
 *             results) and retries; the exactly-once ledger check holds.
 *   claim     the same bound on a statement outside a batch: the test locks
 *             exactly.offsets before the worker claims its partitions; the
 *             claim must give up after the client's bound, say so, and try
 *             again on a new connection, and finish once the lock is gone.
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

#define PARTITIONS 2
#define MESSAGES 100
#define ENTITIES 20
/* The client's own bound (postgres.client_timeout_ms). */
#define CLIENT_BOUND_MS 2000
#define CLIENT_BOUND_YAML "  client_timeout_ms: 2000\n"
#define GAVE_UP "connection ended"

static void start(ledger_fixture *f, ledger_config *c, const char *name,
                  int64_t *counts)
{
    ledger_fixture_start(f, name, name, PARTITIONS);
    tk_produce_ids(f->mock->bootstraps, f->topic, MESSAGES, ENTITIES,
                   PARTITIONS, 17, counts);
    memset(c, 0, sizeof *c);
    c->max_messages = 20;
    c->max_wait_ms = 50;
}

static void finish(ledger_fixture *f, const int64_t *counts)
{
    PGconn *db = tk_pg_connect(f->conninfo);

    ledger_check_exactly_once(db, f->mock->bootstraps, f->topic, PARTITIONS,
                              MESSAGES, counts, ENTITIES);
    PQfinish(db);
    ledger_fixture_stop(f);
}

static void case_overflow(void)
{
    int64_t counts[ENTITIES];
    ledger_fixture f;
    ledger_config c;
    int status;

    start(&f, &c, "timeout_overflow", counts);
    c.postgres_yaml = "  statement_timeout_ms: 2147483647\n"
                      "  lock_timeout_ms: 2147483647\n";
    ledger_fixture_config(&f, &c);
    status = ledger_run_to_idle(f.config, 3000, 90000, f.log);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited with %d", status);
    finish(&f, counts);
}

static void case_sleep(void)
{
    char opts[128];
    int64_t counts[ENTITIES];
    ledger_fixture f;
    ledger_config c;
    int status;

    start(&f, &c, "timeout_sleep", counts);
    snprintf(opts, sizeof opts,
             "        sleep_on_id: '%d'\n        sleep_ms: %d\n",
             (int)tk_id_for(17, 5, ENTITIES), CLIENT_BOUND_MS + 3000);
    c.postgres_yaml = "  statement_timeout_ms: 0\n  lock_timeout_ms: 0\n"
                      CLIENT_BOUND_YAML;
    c.handler_options_yaml = opts;
    ledger_fixture_config(&f, &c);
    status = ledger_run_to_idle(f.config, 3000, 150000, f.log);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited with %d", status);
    /* Results matched to the wrong statements show up as answers the
     * cycle cannot make sense of. */
    LEDGER_CHECK_LOG(ledger_log_count(f.log, "unexpected") == 0, f.log,
                     "a statement read another statement's result");
    LEDGER_CHECK_LOG(ledger_log_count(f.log, GAVE_UP) >= 1, f.log,
                     "the worker did not end the connection after its wait "
                     "ran out");
    finish(&f, counts);
}

static void case_claim(void)
{
    int64_t counts[ENTITIES];
    ledger_fixture f;
    ledger_config c;
    PGconn *locker;
    pid_t pid;
    int status;

    start(&f, &c, "timeout_claim", counts);
    c.postgres_yaml = "  statement_timeout_ms: 0\n  lock_timeout_ms: 0\n"
                      CLIENT_BOUND_YAML;
    ledger_fixture_config(&f, &c);
    locker = tk_pg_connect(f.conninfo);
    tk_sql(locker, "BEGIN; LOCK TABLE exactly.offsets IN ACCESS EXCLUSIVE "
                   "MODE");
    pid = ledger_start_worker(f.config, 3000, f.log);
    LEDGER_CHECK_LOG(ledger_wait_log(f.log, GAVE_UP, 1, pid,
                                     CLIENT_BOUND_MS + 30000, &status),
                     f.log, "the claim did not give up after the client's "
                     "bound (status %d)", status);
    tk_sql(locker, "COMMIT");
    PQfinish(locker);
    status = tk_wait(pid, 120000);
    if (status == -1)
        tk_terminate(pid, 5000);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited with %d", status);
    finish(&f, counts);
}

/* With an argument (overflow, sleep or claim), runs that case alone. */
int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "overflow") == 0)
        case_overflow();
    if (argc < 2 || strcmp(argv[1], "sleep") == 0)
        case_sleep();
    if (argc < 2 || strcmp(argv[1], "claim") == 0)
        case_claim();
    return 0;
}
