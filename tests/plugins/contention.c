/*
 * contention.c - a handler that fights other workers for rows, for the
 * lock-contention test (tests/integration/test_contention.c).
 *
 * Per batch it adds the batch's message count to every row of a shared
 * table
 *
 *   CREATE TABLE hot (k int PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
 *
 * holding keys 1..hot_keys, one UPDATE per key, in an order that depends
 * on the partition: partition p starts at key p % hot_keys + 1 and walks
 * up for even p, down for odd p. Batches of different partitions, run by
 * different workers at the same time, thus take the same row locks in
 * different orders: deadlocks (40P01) and, with a short lock_timeout, lock
 * timeouts (55P03), which the runtime must roll back and retry. With
 * hold_ms > 0 it sleeps that long after each UPDATE, with the lock held,
 * so that the transactions overlap. Then it writes what tests/plugins/ledger.c
 * writes: one `ledger` row per message, without ON CONFLICT, and the
 * per-ID `ledger_counters`.
 *
 * After a run every hot row must equal the number of messages produced:
 * a retried batch that counted twice, or a lost one, shows there.
 *
 * Options:
 *   hot_keys  int  4  rows 1..hot_keys of `hot` that every batch updates
 *   hold_ms   int  0  sleep after each hot-row update, lock held
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exactly/exactly.h"
#include "exactly/sqlbuf.h"

/* ---- the handler ---- */

static const char ledger_sql[] =
    "INSERT INTO ledger (topic, partition, \"offset\", entity_id) "
    "SELECT $1::text, $2::integer, u.o, u.e "
    "FROM unnest($3::bigint[], $4::text[]) AS u(o, e)";
/* Entity rows in one global order: no deadlock comes from here. */
static const char counters_sql[] =
    "INSERT INTO ledger_counters AS c (entity_id, n) "
    "SELECT u.e, u.n FROM unnest($1::text[], $2::bigint[]) AS u(e, n) "
    "ORDER BY u.e ON CONFLICT (entity_id) DO UPDATE SET n = c.n + EXCLUDED.n";
static const char hot_sql[] = "UPDATE hot SET n = n + $2 WHERE k = $1";
static const char hold_sql[] = "SELECT pg_sleep($1::double precision / 1000)";

typedef struct contention {
    const exactly_host *host;
    int64_t hot_keys;
    int64_t hold_ms;
    exactly_sqlbuf offsets, entities, ids, counts;
} contention;

static const exactly_option_decl contention_options[] = {
    {"hot_keys", EXACTLY_OPT_INT, "4",
     "rows 1..hot_keys of table hot that every batch updates"},
    {"hold_ms", EXACTLY_OPT_INT, "0",
     "sleep after each hot-row update, with its lock held"},
};

static void contention_close(void *state)
{
    contention *c = state;

    if (!c)
        return;
    free(c->offsets.s);
    free(c->entities.s);
    free(c->ids.s);
    free(c->counts.s);
    free(c);
}

static exactly_err contention_open(const exactly_open_args *args,
                                   void **state)
{
    contention *c = calloc(1, sizeof(*c));

    *state = NULL;
    if (!c) {
        snprintf(args->errbuf, args->errbuf_size,
                 "contention: out of memory");
        return EXACTLY_ENOMEM;
    }
    c->host = args->host;
    c->hot_keys = c->host->opt_int(args->opts, "hot_keys");
    c->hold_ms = c->host->opt_int(args->opts, "hold_ms");
    if (c->hot_keys < 1 || c->hot_keys > 1000 || c->hold_ms < 0) {
        snprintf(args->errbuf, args->errbuf_size,
                 "contention: hot_keys must be 1..1000 and hold_ms >= 0");
        contention_close(c);
        return EXACTLY_ECONFIG;
    }
    *state = c;
    return EXACTLY_OK;
}

static exactly_err contention_apply(void *state, exactly_txn *txn,
                                    const exactly_batch *batch)
{
    contention *c = state;
    const exactly_host *h = c->host;
    const char *params[4];
    char partition[16], num[32], key[24], total_s[24], hold[24];
    int64_t total = 0, start, step, j;
    size_t i, m;
    exactly_err rc;

    exactly_sqlbuf_array(&c->offsets);
    exactly_sqlbuf_array(&c->entities);
    exactly_sqlbuf_array(&c->ids);
    exactly_sqlbuf_array(&c->counts);
    for (i = 0; i < batch->n_records; i++) {
        const exactly_record *r = &batch->records[i];

        for (m = 0; m < r->n_messages; m++) {
            snprintf(num, sizeof(num), "%" PRId64, r->messages[m].offset);
            exactly_sqlbuf_elem(&c->offsets, num);
            exactly_sqlbuf_elem(&c->entities, r->id);
        }
        snprintf(num, sizeof(num), "%zu", r->n_messages);
        exactly_sqlbuf_elem(&c->ids, r->id);
        exactly_sqlbuf_elem(&c->counts, num);
        total += (int64_t)r->n_messages;
    }
    if (total == 0)
        return EXACTLY_OK;
    exactly_sqlbuf_puts(&c->offsets, "}");
    exactly_sqlbuf_puts(&c->entities, "}");
    exactly_sqlbuf_puts(&c->ids, "}");
    exactly_sqlbuf_puts(&c->counts, "}");
    if (c->offsets.oom || c->entities.oom || c->ids.oom || c->counts.oom) {
        h->set_error(txn, "contention: out of memory");
        return EXACTLY_ENOMEM;
    }

    /* The hot rows first, in this partition's order: after the counters
     * upsert they would never deadlock, because the counters (entity rows
     * taken in one global order, shared by most batches) already make the
     * transactions wait for each other in a line. */
    start = batch->partition % c->hot_keys;
    step = batch->partition % 2 == 0 ? 1 : c->hot_keys - 1;
    snprintf(total_s, sizeof(total_s), "%" PRId64, total);
    snprintf(hold, sizeof(hold), "%" PRId64, c->hold_ms);
    rc = EXACTLY_OK;
    for (j = 0; j < c->hot_keys && rc == EXACTLY_OK; j++) {
        snprintf(key, sizeof(key), "%" PRId64,
                 (start + j * step) % c->hot_keys + 1);
        params[0] = key;
        params[1] = total_s;
        rc = h->exec(txn, hot_sql, 2, params);
        if (rc == EXACTLY_OK && c->hold_ms > 0) {
            params[0] = hold;
            rc = h->exec(txn, hold_sql, 1, params);
        }
    }

    snprintf(partition, sizeof(partition), "%" PRId32, batch->partition);
    if (rc == EXACTLY_OK) {
        params[0] = batch->topic;
        params[1] = partition;
        params[2] = c->offsets.s;
        params[3] = c->entities.s;
        rc = h->exec(txn, ledger_sql, 4, params);
    }
    if (rc == EXACTLY_OK) {
        params[0] = c->ids.s;
        params[1] = c->counts.s;
        rc = h->exec(txn, counters_sql, 2, params);
    }
    if (rc != EXACTLY_OK)
        h->set_error(txn, "contention: could not queue a statement");
    return rc;
}

static const exactly_handler contention_handler = {
    EXACTLY_HANDLER_HEADER,
    .name = "contention",
    .description = "ledger rows plus updates of shared hot rows in a "
                   "per-partition order (deadlock and lock-timeout tests)",
    .options = contention_options,
    .n_options = sizeof(contention_options) / sizeof(contention_options[0]),
    .skips_lookup = 0,
    .open = contention_open,
    .apply = contention_apply,
    .close = contention_close,
};

EXACTLY_HANDLER(contention_handler)
