/*
 * A handler that emits keeps emitting after the worker lost its database
 * session and reconnected: every applied message has its outbox event, no
 * record is dead-lettered for want of an outbox.
 *
 * The worker's backend is terminated (pg_terminate_backend) twice while it
 * consumes; the worker reconnects on its own (same process). At the end the
 * ledger passes the exactly-once check (no dead letters) and events and
 * ledger rows pair up one to one.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "emit-reconnect"
#define EMITTED "emit-reconnect-out"
#define N_IDS 4000

int main(void)
{
    ledger_fixture f;
    ledger_config c;
    PGconn *db;
    int64_t counts[LEDGER_ACCOUNTS] = {0};
    int64_t rows = 0, deadline;
    pid_t pid;
    int k, status;

    ledger_fixture_start(&f, "emit_reconnect", TOPIC, 2);
    memset(&c, 0, sizeof(c));
    c.max_messages = 50;
    c.max_wait_ms = 20;
    c.handler_options_yaml = "        emit_topic: " EMITTED "\n";
    ledger_fixture_config(&f, &c);
    tk_produce_ids(tk_mock_bootstraps(f.mock), TOPIC, N_IDS, LEDGER_ACCOUNTS,
                   2, 7, counts);
    db = tk_pg_connect(f.conninfo);
    pid = ledger_start_worker(f.config, 3000, f.log);
    for (k = 0; k < 2; k++) {
        int64_t before = rows;

        deadline = tk_now_ms() + 60000;
        while ((rows = ledger_rows(db)) <= before + 200) {
            LEDGER_CHECK_LOG(tk_now_ms() < deadline && tk_wait(pid, 0) == -1,
                             f.log, "no progress before termination %d", k);
            tk_sleep_ms(5);
        }
        TK_CHECK(tk_sql_int64(db, "SELECT count(pg_terminate_backend(pid)) "
                                  "FROM pg_stat_activity WHERE datname = "
                                  "current_database() AND pid <> "
                                  "pg_backend_pid() AND application_name "
                                  "LIKE '%%:%d:%%'",
                              (int)pid) >= 1,
                 "no backend of worker %d to terminate", (int)pid);
        tk_note("terminated the worker's session at %lld ledger rows",
                (long long)rows);
    }
    status = tk_wait(pid, 120000);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exit status %d", status);
    ledger_check_exactly_once(db, tk_mock_bootstraps(f.mock), TOPIC, 2,
                              N_IDS, counts, LEDGER_ACCOUNTS);
    TK_CHECK_EQ_INT64(
        tk_sql_int64(db,
                     "SELECT count(*) FROM ledger l FULL JOIN exactly.outbox "
                     "o ON convert_from(o.key, 'UTF8') = l.topic || '/' || "
                     "l.partition || '/' || l.\"offset\" WHERE l.topic IS "
                     "NULL OR o.id IS NULL"),
        0, "events and ledger rows that do not pair up");
    tk_note("%d messages applied once, each with its event, across 2 "
            "reconnects", N_IDS);
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
