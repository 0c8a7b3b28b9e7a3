/*
 * A dead letter keeps a bounded prefix of a huge message key and a digest
 * of all of it (minor defect: keys were hex-encoded whole into one
 * parameter, so a batch of large keys could pass PostgreSQL's message
 * limit and be retried forever).
 *
 * Keys of 100,000 bytes cannot be bigint IDs: each message is
 * dead-lettered. The stored key must be at most 1,024 bytes, its full
 * length and SHA-256 recorded, and the partition must reach its end.
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

#define N 5
#define KEY_BYTES 100000

int main(void)
{
    static char keys[N][KEY_BYTES];
    tk_msg m[N];
    ledger_fixture f;
    ledger_config c;
    PGconn *db;
    int i, status;

    ledger_fixture_start(&f, "dl_keys", "dl-keys", 1);
    memset(m, 0, sizeof m);
    for (i = 0; i < N; i++) {
        memset(keys[i], 'k' + i, KEY_BYTES);
        m[i].partition = 0;
        m[i].key = keys[i];
        m[i].key_len = KEY_BYTES;
    }
    tk_produce(f.mock->bootstraps, f.topic, m, N);
    memset(&c, 0, sizeof c);
    c.max_messages = 10;
    c.max_wait_ms = 50;
    ledger_fixture_config(&f, &c);
    status = ledger_run_to_idle(f.config, 3000, 90000, f.log);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited with %d", status);

    db = tk_pg_connect(f.conninfo);
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                       "exactly.dead_letters"),
                      N, "dead letters");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT max(octet_length(message_key))"
                                       " FROM exactly.dead_letters"),
                      1024, "longest stored key prefix");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                       "exactly.dead_letters WHERE "
                                       "message_key_length = %d AND "
                                       "message_key_sha256 = sha256(convert_to("
                                       "repeat(chr(ascii('k') + \"offset\"::int), "
                                       "%d), 'UTF8'))",
                                   KEY_BYTES, KEY_BYTES),
                      N, "dead letters with the full key's length and digest");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT next_offset FROM "
                                       "exactly.offsets"),
                      N, "stored offset");
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
