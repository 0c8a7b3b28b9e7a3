/*
 * fail_record() called twice for one record (defect 5).
 *
 * A handler that fails the same record twice must cost that record's
 * messages one dead letter each, not a dead-letter insert that touches one
 * row twice (SQLSTATE 21000) and is retried forever. The first reason
 * given is the one kept. Everything else is applied exactly once and the
 * stored offsets reach the end.
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

#define TOPIC "fail-twice"
#define PARTITIONS 2
#define MESSAGES 200
#define ENTITIES 50
#define SEED 5005

int main(void)
{
    char opts[128];
    int64_t counts[ENTITIES];
    ledger_fixture f;
    ledger_config c;
    PGconn *db;
    int bad, status;

    ledger_fixture_start(&f, "fail_twice", TOPIC, PARTITIONS);
    tk_produce_ids(f.mock->bootstraps, TOPIC, MESSAGES, ENTITIES, PARTITIONS,
                   SEED, counts);
    bad = (int)tk_id_for(SEED, 3, ENTITIES);
    snprintf(opts, sizeof opts, "        fail_twice_on_ids: ['%d']\n", bad);
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
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                       "exactly.dead_letters WHERE reason <> "
                                       "'ledger: failed once'"),
                      0, "dead letters whose reason is not the first given");
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
