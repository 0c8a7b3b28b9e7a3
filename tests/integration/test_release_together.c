/*
 * A worker that stops cleanly lets go of all its offset rows (the crash
 * guard's release, DESIGN section 2) in one transaction, not one per
 * partition: a stop or a revoke of many partitions costs one round trip
 * and one commit.
 *
 * A trigger on the offsets table records the transaction id of every
 * release (held going from true to false). The worker applies a few
 * messages per partition and exits idle; every row was released, all in
 * one transaction. Then the exactly-once check.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define PARTITIONS 16
#define MESSAGES (PARTITIONS * 4)
#define ENTITIES 40

int main(void)
{
    int64_t counts[ENTITIES];
    ledger_fixture f;
    ledger_config c;
    PGconn *db;
    int status;
    int64_t rows, txns;

    ledger_fixture_start(&f, "release_together", "release-together",
                         PARTITIONS);
    memset(&c, 0, sizeof c);
    c.max_messages = 100;
    c.max_wait_ms = 20;
    ledger_fixture_config(&f, &c);
    db = tk_pg_connect(f.conninfo);
    tk_sql(db, "CREATE TABLE released (xid xid8 NOT NULL, partition int)");
    tk_sql(db, "CREATE FUNCTION note_release() RETURNS trigger LANGUAGE "
               "plpgsql AS $$ BEGIN INSERT INTO released VALUES "
               "(pg_current_xact_id(), NEW.partition); RETURN NEW; END $$");
    tk_sql(db, "CREATE TRIGGER note_release AFTER UPDATE ON exactly.offsets "
               "FOR EACH ROW WHEN (OLD.held AND NOT NEW.held) EXECUTE "
               "FUNCTION note_release()");
    tk_produce_ids(f.mock->bootstraps, f.topic, MESSAGES, ENTITIES,
                   PARTITIONS, 77, counts);
    status = ledger_run_to_idle(f.config, 1500, 60000, f.log);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited with %d", status);

    rows = tk_sql_int64(db, "SELECT count(DISTINCT partition) FROM released");
    txns = tk_sql_int64(db, "SELECT count(DISTINCT xid) FROM released");
    tk_note("%" PRId64 " offset rows released in %" PRId64
            " transaction(s)", rows, txns);
    LEDGER_CHECK_LOG(rows == PARTITIONS, f.log,
                     "%" PRId64 " of %d offset rows were released at the "
                     "clean stop", rows, PARTITIONS);
    LEDGER_CHECK_LOG(txns == 1, f.log,
                     "the %d offset rows were released in %" PRId64
                     " transactions, not one", PARTITIONS, txns);
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM exactly.offsets "
                                       "WHERE held"),
                      0, "rows still held after the clean stop");

    ledger_check_exactly_once(db, f.mock->bootstraps, f.topic, PARTITIONS,
                              MESSAGES, counts, ENTITIES);
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
