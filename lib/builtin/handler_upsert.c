/*
 * handler_upsert.c - the built-in `upsert` handler (see handler_upsert.h).
 *
 * It is written against the plugin ABI only, like any shipped plugin, so
 * the runtime treats it the same way; the one privilege of living in lib/
 * is sharing the pure SQL generator with its unit test.
 */
#include "handler_upsert.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgarray.h"
#include "upsert_internal.h"
#include "upsert_sql.h"

static const exactly_option_decl upsert_options[] = {
    {"table", EXACTLY_OPT_STRING, NULL,
     "target table, name or schema.name (taken literally, case-sensitive)"},
    {"key", EXACTLY_OPT_LIST, NULL,
     "conflict key: target columns carrying a unique index on exactly them "
     "(required)"},
    {"columns", EXACTLY_OPT_MAP, NULL,
     "target column -> looked-up source column (required)"},
    {"delete_missing", EXACTLY_OPT_BOOL, "false",
     "delete the target row of an ID whose lookup found nothing; the key "
     "must be one column holding the ID"},
    {"emit_topic", EXACTLY_OPT_STRING, "",
     "when set, every row the upsert actually changes (inserted, or updated "
     "because a column differs) writes one zero-payload event for this "
     "topic into the outbox, in the batch's transaction, keyed by the "
     "conflict key (its text; several columns: a JSON array); deleted rows "
     "emit nothing"},
    {"emit_outbox", EXACTLY_OPT_STRING, "exactly.outbox",
     "the outbox table of emit_topic: `outbox` in postgres.schema"},
};

static exactly_err open_unfused(const exactly_open_args *args, void **state)
{
    return upsert_open(args, state, 0, 0);
}

static exactly_err open_fused(const exactly_open_args *args, void **state)
{
    return upsert_open(args, state, 1, 0);
}

static exactly_err open_unfused_extra(const exactly_open_args *args,
                                      void **state)
{
    return upsert_open(args, state, 0, 1);
}

static exactly_err open_fused_extra(const exactly_open_args *args,
                                    void **state)
{
    return upsert_open(args, state, 1, 1);
}

/* Queues sql with one array parameter, unless the array is empty. */
static exactly_err exec_ids(upsert_state *st, exactly_txn *txn,
                            const char *sql, const char *what)
{
    const char *param;
    exactly_err rc;

    if (st->ids.n == 0)
        return EXACTLY_OK;
    param = upsert_array_finish(&st->ids);
    if (!param) {
        st->host->set_error(txn, "upsert: out of memory");
        return EXACTLY_ENOMEM;
    }
    rc = st->host->exec(txn, sql, 1, &param);
    if (rc != EXACTLY_OK)
        st->host->set_error(txn, "upsert: could not queue the %s", what);
    return rc;
}

/* Builds the batch's IDs as one binary array of st->id_oid in st->ids_bin:
 * EXACTLY_OK, EXACTLY_EHANDLER (an ID is not of that type) or
 * EXACTLY_ENOMEM, with the txn's error set. */
static exactly_err ids_binary(upsert_state *st, exactly_txn *txn,
                              const exactly_batch *b, const char **data,
                              int *len)
{
    size_t i;

    pgarray_begin(&st->ids_bin, st->id_oid);
    if (b->id_values && st->id_oid == PGARRAY_INT8_OID) {
        /* The values decoding found (ABI 1.3): no text to parse again. */
        pgarray_add_int8s(&st->ids_bin, b->id_values, b->n_records);
    } else {
        for (i = 0; i < b->n_records; i++)
            if (pgarray_add_text_as(&st->ids_bin, b->records[i].id,
                                    strlen(b->records[i].id)) != 0) {
                st->host->set_error(txn, "upsert: ID '%.40s' is not a %s",
                                    b->records[i].id, b->id_type);
                return EXACTLY_EHANDLER;
            }
    }
    *data = pgarray_finish(&st->ids_bin, len);
    if (!*data) {
        st->host->set_error(txn, "upsert: out of memory");
        return EXACTLY_ENOMEM;
    }
    return EXACTLY_OK;
}

/* Queues sql with the batch's IDs as the binary array ids ($1) and, when
 * topic is not NULL, topic as text ($2: the insert's emit_topic). */
static exactly_err exec_ids_binary(upsert_state *st, exactly_txn *txn,
                                   const char *ids, int ids_len,
                                   const char *sql, const char *topic,
                                   const char *what)
{
    const char *params[2] = {ids, topic};
    int lens[2] = {ids_len, 0}, fmts[2] = {1, 0};
    exactly_err rc;

    rc = st->host->exec_params(txn, sql, topic ? 2 : 1, params, lens, fmts);
    if (rc != EXACTLY_OK)
        st->host->set_error(txn, "upsert: could not queue the %s", what);
    return rc;
}

static exactly_err apply_fused(upsert_state *st, exactly_txn *txn,
                               const exactly_batch *b)
{
    exactly_err rc;
    size_t i;

    /* The IDs in PostgreSQL's binary form: no text array to escape here
     * nor to parse in the server. */
    if (st->id_oid && b->id_type && pgarray_oid_of(b->id_type) == st->id_oid) {
        /* One array for both statements: they take the same IDs. */
        const char *ids;
        int ids_len;
        rc = ids_binary(st, txn, b, &ids, &ids_len);
        if (rc == EXACTLY_OK)
            rc = exec_ids_binary(st, txn, ids, ids_len, st->insert_sql,
                                 st->emit_topic, "insert");
        if (rc == EXACTLY_OK && st->lock_sql)
            rc = exec_ids_binary(st, txn, ids, ids_len, st->lock_sql, NULL,
                                 "lock");
        if (rc == EXACTLY_OK && st->delete_sql)
            rc = exec_ids_binary(st, txn, ids, ids_len, st->delete_sql, NULL,
                                 "delete");
        return rc;
    }

    upsert_array_reset(&st->ids);
    for (i = 0; i < b->n_records; i++)
        upsert_array_add(&st->ids, b->records[i].id);
    if (st->emit_topic) {
        const char *params[2];

        params[0] = upsert_array_finish(&st->ids);
        params[1] = st->emit_topic;
        if (!params[0]) {
            st->host->set_error(txn, "upsert: out of memory");
            return EXACTLY_ENOMEM;
        }
        rc = st->host->exec(txn, st->insert_sql, 2, params);
        if (rc != EXACTLY_OK)
            st->host->set_error(txn, "upsert: could not queue the insert");
    } else {
        rc = exec_ids(st, txn, st->insert_sql, "insert");
    }
    /* Every ID again: NOT EXISTS in the statement picks the vanished ones
     * (an extra writer's after locking their target rows). */
    if (rc == EXACTLY_OK && st->lock_sql)
        rc = exec_ids(st, txn, st->lock_sql, "lock");
    if (rc == EXACTLY_OK && st->delete_sql)
        rc = exec_ids(st, txn, st->delete_sql, "delete");
    return rc;
}

/* Finds where each mapped source column sits in the lookup's result. */
static exactly_err resolve_columns(upsert_state *st, exactly_txn *txn,
                                   const exactly_batch *b)
{
    size_t i, k;

    for (i = 0; i < st->n_columns; i++) {
        for (k = 0; k < b->n_columns; k++)
            if (b->column_names[k] &&
                strcmp(b->column_names[k], st->sources[i]) == 0)
                break;
        if (k == b->n_columns) {
            st->host->set_error(txn,
                                "upsert: the lookup returned no column \"%s\" "
                                "(columns maps \"%s\" to it)",
                                st->sources[i], st->targets[i]);
            return EXACTLY_EHANDLER;
        }
        st->src_index[i] = k;
    }
    return EXACTLY_OK;
}

static exactly_err apply_unfused(upsert_state *st, exactly_txn *txn,
                                 const exactly_batch *b)
{
    size_t i, j, row, n_rows = 0;
    exactly_err rc;

    /* The lookup's column list is fixed per pipeline, but checking it per
     * batch costs nothing next to a round trip and needs no invalidation. */
    rc = resolve_columns(st, txn, b);
    if (rc != EXACTLY_OK)
        return rc;
    for (j = 0; j < st->n_columns; j++)
        upsert_array_reset(&st->arrays[j]);
    upsert_array_reset(&st->ids);

    for (i = 0; i < b->n_records; i++) {
        const exactly_record *r = &b->records[i];

        if (r->n_rows == 0) {
            if (st->delete_sql)
                upsert_array_add(&st->ids, r->id);
            continue;
        }
        for (row = 0; row < r->n_rows; row++) {
            const char *const *v = r->values + row * b->n_columns;
            for (j = 0; j < st->n_columns; j++)
                upsert_array_add(&st->arrays[j], v[st->src_index[j]]);
        }
        n_rows += r->n_rows;
    }

    if (n_rows > 0) {
        for (j = 0; j < st->n_columns; j++) {
            st->params[j] = upsert_array_finish(&st->arrays[j]);
            if (!st->params[j]) {
                st->host->set_error(txn, "upsert: out of memory");
                return EXACTLY_ENOMEM;
            }
        }
        st->params[st->n_columns] = st->emit_topic;
        rc = st->host->exec(txn, st->insert_sql,
                            (int)st->n_columns + (st->emit_topic ? 1 : 0),
                            st->params);
        if (rc != EXACTLY_OK) {
            st->host->set_error(txn, "upsert: could not queue the insert");
            return rc;
        }
    }
    if (st->delete_sql)
        return exec_ids(st, txn, st->delete_sql, "delete");
    return EXACTLY_OK;
}

static exactly_err upsert_apply(void *state, exactly_txn *txn,
                                const exactly_batch *batch)
{
    upsert_state *st = state;

    if (batch->n_records == 0)
        return EXACTLY_OK;
    return st->fused ? apply_fused(st, txn, batch)
                     : apply_unfused(st, txn, batch);
}

/* One descriptor of the built-in upsert: the four differ only in what
 * they say, whether they read in the write, and how they open. */
#define UPSERT_HANDLER(desc, fused, open_fn)                                  \
    {                                                                         \
        EXACTLY_HANDLER_HEADER, .name = "upsert", .description = (desc),      \
        .options = upsert_options,                                            \
        .n_options = sizeof(upsert_options) / sizeof(upsert_options[0]),      \
        .skips_lookup = (fused), .open = (open_fn), .apply = upsert_apply,    \
        .close = upsert_close,                                                \
    }

#define UNFUSED_DESC                                                          \
    "upsert looked-up rows into a table, one INSERT ... ON CONFLICT per batch"

static const exactly_handler upsert_unfused_handler =
    UPSERT_HANDLER(UNFUSED_DESC, 0, open_unfused);

static const exactly_handler upsert_fused_handler = UPSERT_HANDLER(
    "upsert rows of the lookup's table into a table, reading and writing in "
    "one INSERT ... SELECT ... ON CONFLICT",
    1, open_fused);

/* The same two, opened by an extra writer (see handler_upsert.h). */
static const exactly_handler upsert_unfused_extra_handler =
    UPSERT_HANDLER(UNFUSED_DESC, 0, open_unfused_extra);

static const exactly_handler upsert_fused_extra_handler = UPSERT_HANDLER(
    "upsert rows of the lookup's table into a table, reading (FOR SHARE) and "
    "writing in one INSERT ... SELECT ... ON CONFLICT",
    1, open_fused_extra);

const exactly_handler *exactly_builtin_upsert_extra(int fused)
{
    return fused ? &upsert_fused_extra_handler : &upsert_unfused_extra_handler;
}

const exactly_handler *exactly_builtin_upsert(void)
{
    return &upsert_unfused_handler;
}

const exactly_handler *exactly_builtin_upsert_fused(void)
{
    return &upsert_fused_handler;
}
