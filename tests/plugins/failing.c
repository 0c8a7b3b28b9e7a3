/*
 * failing.c - a handler for the failure tests: it fails the whole batch
 * (set_error + EXACTLY_EHANDLER) whenever a record's ID is listed in
 * fail_ids, and otherwise counts messages per ID like a small ledger:
 *
 *   INSERT INTO "failing_applied" AS c (id, n)
 *   SELECT u.id, u.n FROM unnest($1::text[], $2::bigint[]) AS u(id, n)
 *   ON CONFLICT (id) DO UPDATE SET n = c.n + EXCLUDED.n
 *
 * Failing the batch rather than one record is the point: the runtime must
 * retry, bisect down to the listed records, dead-letter exactly those and
 * apply the rest, which the counts then show.
 *
 * A batch holding an ID listed in query_ids runs a query that fails on the
 * server (SELECT 1/0), logs the SQLSTATE and message host->query_error
 * gives it, and returns EXACTLY_EHANDLER: the runtime judges the batch by
 * that query's error.
 *
 * The table must exist:
 *   CREATE TABLE failing_applied (id text PRIMARY KEY, n bigint NOT NULL);
 *
 * Options:
 *   fail_ids  list    empty              IDs that fail any batch holding them
 *   query_ids list    empty              IDs whose batch runs a failing query
 *   table     string  "failing_applied"  the counter table
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exactly/exactly.h"
#include "exactly/sqlbuf.h"

/* ---- the handler ---- */

typedef struct failing {
    const exactly_host *host;
    char *sql;
    const char **fail_ids; /* our copy of the option's array */
    size_t n_fail_ids;
    const char *const *query_ids; /* borrowed: valid until close() */
    size_t n_query_ids;
    exactly_sqlbuf ids, counts;       /* parameters, memory reused across batches */
} failing;

static const exactly_option_decl failing_options[] = {
    {"fail_ids", EXACTLY_OPT_LIST, NULL,
     "IDs that make apply() fail the whole batch"},
    {"query_ids", EXACTLY_OPT_LIST, NULL,
     "IDs whose batch runs a query that fails on the server"},
    {"table", EXACTLY_OPT_STRING, "failing_applied",
     "counter table (id text primary key, n bigint)"},
};

static void failing_close(void *state)
{
    failing *f = state;

    if (!f)
        return;
    free(f->sql);
    free(f->fail_ids);
    exactly_sqlbuf_free(&f->ids);
    exactly_sqlbuf_free(&f->counts);
    free(f);
}

static exactly_err failing_open(const exactly_open_args *args, void **state)
{
    const exactly_host *h = args->host;
    const char *const *ids = NULL;
    const char *table = h->opt_string(args->opts, "table");
    failing *f;
    exactly_sqlbuf b = {0};
    size_t i;

    *state = NULL;
    f = calloc(1, sizeof(*f));
    if (!f)
        goto nomem;
    f->host = h;

    exactly_sqlbuf_puts(&b, "INSERT INTO ");
    if (exactly_sqlbuf_relation(&b, table) != 0) {
        snprintf(args->errbuf, args->errbuf_size,
                 "failing: table name \"%s\" is not name or schema.name",
                 table ? table : "");
        exactly_sqlbuf_free(&b);
        failing_close(f);
        return EXACTLY_ECONFIG;
    }
    exactly_sqlbuf_puts(&b, " AS c (id, n) "
                 "SELECT u.id, u.n FROM unnest($1::text[], $2::bigint[]) "
                 "AS u(id, n) "
                 "ON CONFLICT (id) DO UPDATE SET n = c.n + EXCLUDED.n");
    f->sql = exactly_sqlbuf_take(&b);
    if (!f->sql)
        goto nomem;

    f->n_fail_ids = h->opt_list(args->opts, "fail_ids", &ids);
    if (f->n_fail_ids > 0) {
        f->fail_ids = malloc(f->n_fail_ids * sizeof(*f->fail_ids));
        if (!f->fail_ids)
            goto nomem;
        for (i = 0; i < f->n_fail_ids; i++)
            f->fail_ids[i] = ids[i];
    }
    f->n_query_ids = h->opt_list(args->opts, "query_ids", &f->query_ids);
    *state = f;
    return EXACTLY_OK;

nomem:
    snprintf(args->errbuf, args->errbuf_size, "failing: out of memory");
    failing_close(f);
    return EXACTLY_ENOMEM;
}

/* A query the server refuses, and what host->query_error says about it. */
static exactly_err failing_query(failing *f, exactly_txn *txn, const char *id)
{
    const exactly_host *h = f->host;
    exactly_result *res = NULL;
    const char *state = NULL, *msg = NULL;

    if (h->query(txn, "SELECT 1/0", 0, NULL, &res) == EXACTLY_OK) {
        h->result_free(res);
        h->set_error(txn, "failing: SELECT 1/0 succeeded");
        return EXACTLY_EHANDLER;
    }
    if (h->size >= offsetof(exactly_host, query_error) + sizeof(h->query_error))
        state = h->query_error(txn, &msg);
    h->log(EXACTLY_LOG_WARN,
           "failing: the query for record %s failed: SQLSTATE %s: %s", id,
           state ? state : "(none)", msg ? msg : "(none)");
    return EXACTLY_EHANDLER;
}

static exactly_err failing_apply(void *state, exactly_txn *txn,
                                 const exactly_batch *batch)
{
    failing *f = state;
    const exactly_host *h = f->host;
    const char *params[2];
    char num[32];
    size_t i, k;
    exactly_err rc;

    if (batch->n_records == 0)
        return EXACTLY_OK;
    for (i = 0; i < batch->n_records; i++)
        for (k = 0; k < f->n_fail_ids; k++)
            if (strcmp(batch->records[i].id, f->fail_ids[k]) == 0) {
                h->set_error(txn, "failing: record %s is listed in fail_ids",
                             batch->records[i].id);
                return EXACTLY_EHANDLER;
            }

    for (i = 0; i < batch->n_records; i++)
        for (k = 0; k < f->n_query_ids; k++)
            if (strcmp(batch->records[i].id, f->query_ids[k]) == 0)
                return failing_query(f, txn, batch->records[i].id);

    exactly_sqlbuf_reset(&f->ids);
    exactly_sqlbuf_reset(&f->counts);
    exactly_sqlbuf_puts(&f->ids, "{");
    exactly_sqlbuf_puts(&f->counts, "{");
    for (i = 0; i < batch->n_records; i++) {
        snprintf(num, sizeof(num), "%zu", batch->records[i].n_messages);
        exactly_sqlbuf_elem(&f->ids, batch->records[i].id);
        exactly_sqlbuf_elem(&f->counts, num);
    }
    exactly_sqlbuf_puts(&f->ids, "}");
    exactly_sqlbuf_puts(&f->counts, "}");
    if (f->ids.oom || f->counts.oom) {
        h->set_error(txn, "failing: out of memory");
        return EXACTLY_ENOMEM;
    }
    params[0] = f->ids.s;
    params[1] = f->counts.s;
    rc = h->exec(txn, f->sql, 2, params);
    if (rc != EXACTLY_OK)
        h->set_error(txn, "failing: could not queue the upsert");
    return rc;
}

static const exactly_handler failing_handler = {
    EXACTLY_HANDLER_HEADER,
    .name = "failing",
    .description = "fails every batch holding an ID from fail_ids; "
                   "otherwise counts messages per ID",
    .options = failing_options,
    .n_options = sizeof(failing_options) / sizeof(failing_options[0]),
    .skips_lookup = 0,
    .open = failing_open,
    .apply = failing_apply,
    .close = failing_close,
};

EXACTLY_HANDLER(failing_handler)
