/*
 * Hostile dedup keys cost at most a dead letter, never a stuck partition
 * or a silent drop (defects 21 and 22).
 *
 *   empty  two messages whose event-id header is empty (and two without
 *          the header): an empty key is no key, it never deduplicates, so
 *          all four are applied.
 *   long   an event-id of 3,000 random bytes (past PostgreSQL's btree
 *          limit for a raw key: random bytes do not compress), sent twice,
 *          and another long one: each distinct event
 *          is applied once, the copy is dropped, and the partition reaches
 *          its end.
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

#define LONG_KEY 3000

static void msg(tk_msg *m, const char *key, const char *eid, size_t eid_len)
{
    memset(m, 0, sizeof *m);
    m->partition = 0;
    m->key = key;
    m->key_len = strlen(key);
    if (eid) {
        m->n_headers = 1;
        m->headers[0].name = "event-id";
        m->headers[0].value = eid;
        m->headers[0].value_len = eid_len;
    }
}

/* n pseudo-random letters and digits, different for each seed. */
static void random_text(char *out, size_t n, uint32_t seed)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    size_t i;

    for (i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        out[i] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
    }
}

static void run(const char *name, const tk_msg *msgs, size_t n,
                int64_t want_rows, int64_t want_dedup)
{
    ledger_fixture f;
    ledger_config c;
    ledger_summary s;
    PGconn *db;
    int status;

    ledger_fixture_start(&f, name, name, 1);
    tk_produce(f.mock->bootstraps, f.topic, msgs, n);
    memset(&c, 0, sizeof c);
    c.max_messages = 10;
    c.max_wait_ms = 50;
    c.pipeline_yaml = "    dedup: {from: header, header: event-id}\n";
    ledger_fixture_config(&f, &c);
    status = ledger_run_to_idle(f.config, 3000, 90000, f.log);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited with %d", status);
    db = tk_pg_connect(f.conninfo);
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT next_offset FROM "
                                       "exactly.offsets"),
                      (int64_t)n, "stored offset");
    TK_CHECK_EQ_INT64(ledger_rows(db), want_rows, "ledger rows");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                       "exactly.dead_letters"),
                      0, "dead letters");
    LEDGER_CHECK_LOG(ledger_read_summary(f.log, &s), f.log, "no summary");
    TK_CHECK_EQ_INT64(s.deduplicated, want_dedup, "deduplicated messages");
    PQfinish(db);
    ledger_fixture_stop(&f);
}

/* With an argument (empty or long), runs that case alone. */
int main(int argc, char **argv)
{
    static char long_a[LONG_KEY], long_b[LONG_KEY];
    tk_msg m[4];

    if (argc < 2 || strcmp(argv[1], "empty") == 0) {
        msg(&m[0], "2", "", 0);
        msg(&m[1], "3", "", 0);
        msg(&m[2], "4", NULL, 0);
        msg(&m[3], "4", NULL, 0);
        run("dedup_empty", m, 4, 4, 0);
    }
    if (argc < 2 || strcmp(argv[1], "long") == 0) {
        random_text(long_a, sizeof long_a, 1);
        random_text(long_b, sizeof long_b, 2);
        msg(&m[0], "1", long_a, sizeof long_a);
        msg(&m[1], "1", long_a, sizeof long_a);
        msg(&m[2], "7", long_b, sizeof long_b);
        run("dedup_long", m, 3, 2, 1);
    }
    return 0;
}
