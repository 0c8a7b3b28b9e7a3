/*
 * A batch that keeps failing with a connection-class error is retried
 * with capped exponential backoff, not as fast as the worker can
 * reconnect (DESIGN section 3: "connection lost ... reconnect with capped
 * exponential backoff and jitter, retry the batch").
 *
 * The error is SQLSTATE 08P01 (protocol_violation): a connection
 * exception, so the worker ends the connection (a fresh session also
 * drops its prepared statements, the one way this client can provoke the
 * server's 08P01) and retries the batch. A trigger on the ledger raises
 * it for every statement, counting each attempt in a sequence, which a
 * rollback does not undo. While the trigger is there the worker must
 * back off between attempts: the backoff (100 ms doubling to 30 s, half
 * of it jitter) allows at most 7 attempts in WATCH_MS, however fast the
 * machine; a reconnect that forgets the backoff makes hundreds. Nothing
 * is dead-lettered (not a record's fault) and the stored offset does not
 * move; once the trigger is gone every message is applied exactly once.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define PARTITIONS 1
#define MESSAGES 100
#define ENTITIES 40
#define WATCH_MS 8000
/* First attempt plus six backoffs of at least 100, 200, 400, 800, 1600
 * and 3200 ms fit in 8 s; three more for the jitter of a loaded machine
 * (an attempt counted just before the watch starts, a batch split). */
#define MAX_ATTEMPTS 10

static int64_t attempts(PGconn *db)
{
    return tk_sql_int64(db, "SELECT CASE WHEN is_called THEN last_value "
                            "ELSE 0 END FROM pv_attempts");
}

int main(void)
{
    int64_t counts[ENTITIES] = {0};
    int64_t first, seen, deadline;
    ledger_fixture f;
    ledger_config c;
    PGconn *db;
    pid_t pid;
    int status;

    ledger_fixture_start(&f, "protocol_violation", "protocol_violation",
                         PARTITIONS);
    memset(&c, 0, sizeof c);
    c.max_messages = 20;
    c.max_wait_ms = 50;
    ledger_fixture_config(&f, &c);
    db = tk_pg_connect(f.conninfo);
    tk_sql(db,
           "CREATE SEQUENCE pv_attempts;"
           "CREATE FUNCTION pv_refuse() RETURNS trigger LANGUAGE plpgsql AS "
           "$$BEGIN PERFORM nextval('pv_attempts'); "
           "RAISE EXCEPTION 'protocol violation (test)' "
           "USING ERRCODE = '08P01'; END$$;"
           "CREATE TRIGGER pv_refuse BEFORE INSERT ON ledger "
           "FOR EACH STATEMENT EXECUTE FUNCTION pv_refuse()");

    tk_produce_ids(f.mock->bootstraps, f.topic, MESSAGES, ENTITIES,
                   PARTITIONS, 1, counts);
    pid = ledger_start_worker(f.config, 0, f.log);

    deadline = tk_now_ms() + 60000;
    while ((first = attempts(db)) == 0) {
        LEDGER_CHECK_LOG(tk_now_ms() < deadline, f.log,
                         "no batch reached the ledger in 60 s");
        tk_sleep_ms(20);
    }
    tk_sleep_ms(WATCH_MS);
    seen = attempts(db) - first + 1;
    tk_note("attempts of the refused batch in %d ms: %" PRId64, WATCH_MS,
            seen);
    LEDGER_CHECK_LOG(seen <= MAX_ATTEMPTS, f.log,
                     "%" PRId64 " attempts in %d ms: the batch is retried "
                     "without backoff (at most %d expected)",
                     seen, WATCH_MS, MAX_ATTEMPTS);
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                       "exactly.dead_letters"),
                      0, "dead letters while the batch is refused");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT sum(next_offset) FROM "
                                       "exactly.offsets"),
                      0, "stored offset while the batch is refused");

    tk_sql(db, "DROP TRIGGER pv_refuse ON ledger");
    deadline = tk_now_ms() + 90000;
    while (ledger_rows(db) < MESSAGES) {
        LEDGER_CHECK_LOG(tk_now_ms() < deadline, f.log,
                         "the ledger did not reach %d rows (has %" PRId64 ")",
                         MESSAGES, ledger_rows(db));
        tk_sleep_ms(100);
    }
    status = tk_terminate(pid, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited with %d", status);
    ledger_check_exactly_once(db, f.mock->bootstraps, f.topic, PARTITIONS,
                              MESSAGES, counts, ENTITIES);
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
