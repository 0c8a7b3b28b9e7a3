/*
 * Careful mode's savepoints do not pile up while it bisects. Each set of
 * records is applied under SAVEPOINT exactly_apply; PostgreSQL keeps a
 * savepoint after ROLLBACK TO it, so a failed set must also RELEASE it,
 * or the next set's savepoint nests inside it. Nested ones cost the
 * server: every level is a subtransaction with its own memory context,
 * each later write gives every level above it a transaction ID (beyond
 * 64 the backend's subtransaction cache overflows, which slows every
 * snapshot on the server), and each visibility check walks the levels.
 *
 * A trigger on the ledger fails every record of entities divisible by 3
 * (SQLSTATE P0001: the record is to blame, so careful mode bisects a
 * batch of 100 messages with many failed sets), and for every row that
 * passes records how deep the subtransactions are: the number of
 * CurTransactionContext memory contexts of the backend, one per open
 * subtransaction (the top level's is TopTransactionContext). Rows of
 * sets that apply survive: their depth must be 1, the set's own
 * savepoint. The bad records are dead letters, the rest applied once.
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

int main(void)
{
    int64_t counts[ENTITIES] = {0};
    int64_t bad = 0, depth, rows;
    ledger_fixture f;
    ledger_config c;
    PGconn *db;
    int i, status;

    ledger_fixture_start(&f, "savepoint_depth", "savepoint_depth",
                         PARTITIONS);
    memset(&c, 0, sizeof c);
    c.max_messages = MESSAGES;
    c.max_wait_ms = 2000; /* one batch of all of them */
    ledger_fixture_config(&f, &c);
    db = tk_pg_connect(f.conninfo);
    tk_sql(db,
           "CREATE TABLE sp_depth (entity_id text, depth bigint);"
           "CREATE FUNCTION sp_check() RETURNS trigger LANGUAGE plpgsql AS "
           "$$BEGIN "
           "IF NEW.entity_id::bigint %% 3 = 0 THEN "
           "RAISE EXCEPTION 'entity %% refused (test)', NEW.entity_id; "
           "END IF; "
           "INSERT INTO sp_depth SELECT NEW.entity_id, count(*) "
           "FROM pg_backend_memory_contexts "
           "WHERE name = 'CurTransactionContext'; "
           "RETURN NEW; END$$;"
           "CREATE TRIGGER sp_check BEFORE INSERT ON ledger "
           "FOR EACH ROW EXECUTE FUNCTION sp_check()");

    tk_produce_ids(f.mock->bootstraps, f.topic, MESSAGES, ENTITIES,
                   PARTITIONS, 1, counts);
    for (i = 0; i < ENTITIES; i++)
        if ((i + 1) % 3 == 0)
            bad += counts[i];
    status = ledger_run_to_idle(f.config, 3000, 120000, f.log);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited with %d", status);

    rows = ledger_rows(db);
    depth = tk_sql_int64(db, "SELECT coalesce(max(depth), 0) FROM sp_depth");
    tk_note("bad messages %" PRId64 ", applied %" PRId64 ", deepest "
            "subtransaction nesting seen by an applied record: %" PRId64,
            bad, rows, depth);
    TK_CHECK(bad > 0 && bad < MESSAGES, "the seed gives %" PRId64 " bad "
             "messages of %d", bad, MESSAGES);
    TK_CHECK_EQ_INT64(rows, MESSAGES - bad, "ledger rows");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                       "exactly.dead_letters"),
                      bad, "dead letters");
    LEDGER_CHECK_LOG(depth == 1, f.log,
                     "savepoints nested %" PRId64 " deep while bisecting "
                     "(1 expected: each set's own)", depth);
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
