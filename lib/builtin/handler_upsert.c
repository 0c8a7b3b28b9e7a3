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
#include "upsert_sql.h"

typedef struct upsert_state {
    const exactly_host *host;
    int fused;
    const char *table;     /* option string, for messages */
    char *insert_sql;
    char *delete_sql;      /* NULL unless delete_missing */
    size_t n_columns;
    const char **targets;  /* option strings (live until close) */
    const char **sources;
    size_t *src_index;     /* unfused: source column -> lookup column */
    upsert_array *arrays;  /* unfused: one parameter per column */
    const char **params;
    upsert_array ids;      /* fused: every ID; unfused: IDs without rows */
    const char *emit_topic;/* NULL: no events; else insert_sql also writes
                              one outbox row per changed row */
    pgarray ids_bin;       /* fused: every ID, binary, when the host can */
    uint32_t id_oid;       /* element type of ids_bin; 0: text only */
} upsert_state;

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

static void upsert_close(void *state)
{
    upsert_state *st = state;
    size_t i;

    if (!st)
        return;
    free(st->insert_sql);
    free(st->delete_sql);
    free(st->targets);
    free(st->sources);
    free(st->src_index);
    if (st->arrays)
        for (i = 0; i < st->n_columns; i++)
            upsert_array_free(&st->arrays[i]);
    free(st->arrays);
    free(st->params);
    upsert_array_free(&st->ids);
    pgarray_free(&st->ids_bin);
    free(st);
}

static void free_types(char **types, size_t n)
{
    size_t i;

    if (!types)
        return;
    for (i = 0; i < n; i++)
        free(types[i]);
    free(types);
}

/*
 * Learns the type of every mapped target column from the catalog, for the
 * casts of the unfused form. On success *out holds n malloc'd strings.
 */
static exactly_err learn_types(const exactly_open_args *args,
                               const upsert_state *st, char ***out)
{
    const exactly_host *h = args->host;
    exactly_result *res = NULL;
    char **types = NULL;
    char *rel = NULL;
    char msg[256];
    const char *params[1];
    exactly_err rc;
    size_t i, r, n_rows;

    *out = NULL;
    rel = upsert_sql_quote_relation(st->table, msg, sizeof(msg));
    if (!rel) {
        snprintf(args->errbuf, args->errbuf_size, "upsert: %s", msg);
        return EXACTLY_ECONFIG;
    }
    params[0] = rel;
    rc = h->query(args->setup, UPSERT_SQL_COLUMN_TYPES, 1, params, &res);
    if (rc != EXACTLY_OK) {
        snprintf(args->errbuf, args->errbuf_size,
                 "upsert: cannot read the columns of table %s (does it "
                 "exist?)",
                 rel);
        goto done;
    }
    rc = EXACTLY_ENOMEM;
    types = calloc(st->n_columns, sizeof(*types));
    if (!types)
        goto done;
    n_rows = h->result_rows(res);
    for (i = 0; i < st->n_columns; i++) {
        for (r = 0; r < n_rows; r++) {
            const char *name = h->result_value(res, r, 0);
            const char *type = h->result_value(res, r, 1);
            if (name && type && strcmp(name, st->targets[i]) == 0) {
                types[i] = strdup(type);
                if (!types[i])
                    goto done;
                break;
            }
        }
        if (!types[i]) {
            snprintf(args->errbuf, args->errbuf_size,
                     "upsert: table %s has no column \"%s\"", rel,
                     st->targets[i]);
            rc = EXACTLY_ECONFIG;
            goto done;
        }
    }
    *out = types;
    types = NULL;
    rc = EXACTLY_OK;

done:
    if (rc == EXACTLY_ENOMEM)
        snprintf(args->errbuf, args->errbuf_size, "upsert: out of memory");
    if (res)
        h->result_free(res);
    free_types(types, st->n_columns);
    free(rel);
    return rc;
}

/*
 * Has the server parse and plan sql (EXPLAIN runs nothing, so it is allowed
 * in the read-only setup transaction) with every parameter an empty array.
 * That finds at start-up what would otherwise fail every batch: no unique
 * index matching the key, an unknown column, a type that does not assign.
 */
static exactly_err check_sql(const exactly_open_args *args,
                             const upsert_state *st, const char *sql,
                             size_t n_params, const char *what)
{
    const exactly_host *h = args->host;
    exactly_result *res = NULL;
    const char **params = NULL;
    char *explain = NULL;
    exactly_err rc = EXACTLY_ENOMEM;
    size_t i, len = strlen(sql);

    params = malloc(n_params * sizeof(*params));
    explain = malloc(len + sizeof("EXPLAIN "));
    if (!params || !explain) {
        snprintf(args->errbuf, args->errbuf_size, "upsert: out of memory");
        goto done;
    }
    for (i = 0; i < n_params; i++)
        params[i] = "{}";
    memcpy(explain, "EXPLAIN ", 8);
    memcpy(explain + 8, sql, len + 1);
    rc = h->query(args->setup, explain, (int)n_params, params, &res);
    if (rc != EXACTLY_OK) {
        /* The server's reason sits in the setup transaction, which only
         * the runtime sees; say what to look for, and log the statement
         * rather than crowd it into errbuf. */
        h->log(EXACTLY_LOG_ERROR, "upsert: refused statement: %s", sql);
        snprintf(args->errbuf, args->errbuf_size,
                 "upsert: the database refused the %s for table %s: is there "
                 "a unique index on exactly the key columns, and do all "
                 "columns exist with assignable types?",
                 what, st->table);
        rc = EXACTLY_ECONFIG;
    }

done:
    if (res)
        h->result_free(res);
    free(params);
    free(explain);
    return rc;
}

/* Says "out of memory" in errbuf; returns EXACTLY_ENOMEM. */
static exactly_err open_nomem(const exactly_open_args *args)
{
    snprintf(args->errbuf, args->errbuf_size, "upsert: out of memory");
    return EXACTLY_ENOMEM;
}

/* The SQL generator's refusal msg as the open's error: EXACTLY_ENOMEM when
 * it ran out of memory, else EXACTLY_ECONFIG with msg in errbuf. */
static exactly_err open_refuse(const exactly_open_args *args, const char *msg)
{
    if (strcmp(msg, "out of memory") == 0)
        return open_nomem(args);
    snprintf(args->errbuf, args->errbuf_size, "upsert: %s", msg);
    return EXACTLY_ECONFIG;
}

/*
 * Reads the options into st (table, the column map copied into
 * st->targets / st->sources, and for the fused form the IDs' binary type)
 * and the conflict key into *key / *n_key (borrowed from the options).
 * Returns EXACTLY_OK, EXACTLY_ECONFIG when key or columns is empty, or
 * EXACTLY_ENOMEM, with the reason in errbuf.
 */
static exactly_err read_options(const exactly_open_args *args,
                                upsert_state *st, const char *const **key,
                                size_t *n_key)
{
    const exactly_host *h = args->host;
    const char *const *targets = NULL, *const *sources = NULL;
    size_t i;

    /* A host older than ABI 1.2 has no exec_params: text arrays then. */
    if (st->fused && h->size >= offsetof(exactly_host, exec_params) +
                                     sizeof(h->exec_params) &&
        h->exec_params)
        st->id_oid = pgarray_oid_of(args->id_type);
    st->table = h->opt_string(args->opts, "table");
    *n_key = h->opt_list(args->opts, "key", key);
    st->n_columns = h->opt_map(args->opts, "columns", &targets, &sources);
    /* Lists and maps cannot be declared required; enforce it here. */
    if (*n_key == 0) {
        snprintf(args->errbuf, args->errbuf_size,
                 "upsert: option key must name at least one column");
        return EXACTLY_ECONFIG;
    }
    if (st->n_columns == 0) {
        snprintf(args->errbuf, args->errbuf_size,
                 "upsert: option columns must map at least one target "
                 "column to a source column");
        return EXACTLY_ECONFIG;
    }

    /* The option arrays are borrowed; keep our own copies of them. */
    st->targets = malloc(st->n_columns * sizeof(*st->targets));
    st->sources = malloc(st->n_columns * sizeof(*st->sources));
    if (!st->targets || !st->sources)
        return open_nomem(args);
    for (i = 0; i < st->n_columns; i++) {
        st->targets[i] = targets[i];
        st->sources[i] = sources[i];
    }
    return EXACTLY_OK;
}

/* The unfused form's target column types (learn_types), which need the
 * setup connection: without one, EXACTLY_ECONFIG with the reason in
 * errbuf. */
static exactly_err unfused_types(const exactly_open_args *args,
                                 const upsert_state *st, char ***types)
{
    if (!args->setup) {
        snprintf(args->errbuf, args->errbuf_size,
                 "upsert: needs a database connection at open to learn "
                 "the column types of %s",
                 st->table);
        return EXACTLY_ECONFIG;
    }
    return learn_types(args, st, types);
}

/*
 * Generates st->insert_sql (wrapped to write outbox events when
 * emit_topic is set, which also sets st->emit_topic) and, with
 * delete_missing, st->delete_sql. types are the unfused form's column
 * types (NULL when fused). Returns EXACTLY_OK, or the generator's refusal
 * through open_refuse.
 */
static exactly_err build_statements(const exactly_open_args *args,
                                    upsert_state *st, const char *const *key,
                                    size_t n_key, char **types)
{
    const exactly_host *h = args->host;
    upsert_sql_spec spec;
    char msg[512];

    msg[0] = '\0';
    memset(&spec, 0, sizeof(spec));
    spec.table = st->table;
    spec.key = key;
    spec.n_key = n_key;
    spec.columns = st->targets;
    spec.sources = st->sources;
    spec.types = (const char *const *)types;
    spec.n_columns = st->n_columns;
    spec.lookup_table = st->fused ? args->lookup_table : NULL;
    spec.lookup_id_column = st->fused ? args->lookup_id_column : NULL;
    spec.id_type = args->id_type;

    st->insert_sql = upsert_sql_insert(&spec, msg, sizeof(msg));
    if (!st->insert_sql)
        return open_refuse(args, msg);
    st->emit_topic = h->opt_string(args->opts, "emit_topic");
    if (st->emit_topic && !*st->emit_topic)
        st->emit_topic = NULL;
    if (st->emit_topic) {
        char *wrapped = upsert_sql_emit(
            st->insert_sql, &spec, h->opt_string(args->opts, "emit_outbox"),
            st->fused ? 2 : (int)st->n_columns + 1, msg, sizeof(msg));
        if (!wrapped)
            return open_refuse(args, msg);
        free(st->insert_sql);
        st->insert_sql = wrapped;
    }
    if (h->opt_bool(args->opts, "delete_missing")) {
        st->delete_sql = upsert_sql_delete(&spec, msg, sizeof(msg));
        if (!st->delete_sql)
            return open_refuse(args, msg);
    }
    return EXACTLY_OK;
}

/* With a setup connection, has the server plan the generated statements
 * (check_sql); without one there is nothing to ask and it returns
 * EXACTLY_OK. */
static exactly_err check_statements(const exactly_open_args *args,
                                    const upsert_state *st)
{
    exactly_err rc;

    if (!args->setup)
        return EXACTLY_OK;
    rc = check_sql(args, st, st->insert_sql,
                   (st->fused ? 1 : st->n_columns) + (st->emit_topic ? 1 : 0),
                   "generated insert");
    if (rc == EXACTLY_OK && st->delete_sql)
        rc = check_sql(args, st, st->delete_sql, 1, "generated delete");
    return rc;
}

/* The unfused form's per-batch buffers (one array parameter per column,
 * plus one parameter for emit_topic's topic); nothing for the fused form.
 * Returns EXACTLY_OK or open_nomem. */
static exactly_err alloc_buffers(const exactly_open_args *args,
                                 upsert_state *st)
{
    if (st->fused)
        return EXACTLY_OK;
    st->src_index = calloc(st->n_columns, sizeof(*st->src_index));
    st->arrays = calloc(st->n_columns, sizeof(*st->arrays));
    /* One more for emit_topic's topic. */
    st->params = calloc(st->n_columns + 1, sizeof(*st->params));
    if (!st->src_index || !st->arrays || !st->params)
        return open_nomem(args);
    return EXACTLY_OK;
}

/*
 * Opens the handler, fused (one INSERT ... SELECT from the lookup table)
 * or not: reads the options, generates the statements, has the server
 * check them when a setup connection is given. On success *out is the
 * state; on failure *out is NULL, errbuf says why and nothing is left
 * allocated.
 */
static exactly_err upsert_open(const exactly_open_args *args, void **out,
                               int fused)
{
    const char *const *key = NULL;
    upsert_state *st;
    char **types = NULL;
    size_t n_key = 0;
    exactly_err rc;

    *out = NULL;
    if (fused && !args->lookup_table) {
        snprintf(args->errbuf, args->errbuf_size,
                 "upsert: the fused form needs a lookup that reads one table");
        return EXACTLY_ECONFIG;
    }
    st = calloc(1, sizeof(*st));
    if (!st)
        return open_nomem(args);
    st->host = args->host;
    st->fused = fused;

    rc = read_options(args, st, &key, &n_key);
    if (rc == EXACTLY_OK && !fused)
        rc = unfused_types(args, st, &types);
    if (rc == EXACTLY_OK)
        rc = build_statements(args, st, key, n_key, types);
    if (rc == EXACTLY_OK)
        rc = check_statements(args, st);
    if (rc == EXACTLY_OK)
        rc = alloc_buffers(args, st);
    free_types(types, st->n_columns);
    if (rc != EXACTLY_OK) {
        upsert_close(st);
        return rc;
    }
    args->host->log(EXACTLY_LOG_DEBUG, "upsert: %s", st->insert_sql);
    *out = st;
    return EXACTLY_OK;
}

static exactly_err open_unfused(const exactly_open_args *args, void **state)
{
    return upsert_open(args, state, 0);
}

static exactly_err open_fused(const exactly_open_args *args, void **state)
{
    return upsert_open(args, state, 1);
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

/* Queues sql with every ID of the batch as one binary array ($1) and, when
 * topic is not NULL, topic as text ($2: the insert's emit_topic). */
static exactly_err exec_ids_binary(upsert_state *st, exactly_txn *txn,
                                   const exactly_batch *b, const char *sql,
                                   const char *topic, const char *what)
{
    const char *params[2];
    int lens[2] = {0, 0}, fmts[2] = {1, 0};
    exactly_err rc;
    size_t i;

    pgarray_begin(&st->ids_bin, st->id_oid);
    for (i = 0; i < b->n_records; i++)
        if (pgarray_add_text_as(&st->ids_bin, b->records[i].id,
                                strlen(b->records[i].id)) != 0) {
            st->host->set_error(txn, "upsert: ID '%.40s' is not a %s",
                                b->records[i].id, b->id_type);
            return EXACTLY_EHANDLER;
        }
    params[0] = pgarray_finish(&st->ids_bin, &lens[0]);
    if (!params[0]) {
        st->host->set_error(txn, "upsert: out of memory");
        return EXACTLY_ENOMEM;
    }
    params[1] = topic;
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
        rc = exec_ids_binary(st, txn, b, st->insert_sql, st->emit_topic,
                             "insert");
        if (rc == EXACTLY_OK && st->delete_sql)
            rc = exec_ids_binary(st, txn, b, st->delete_sql, NULL, "delete");
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
    /* Every ID again: NOT EXISTS in the statement picks the vanished ones. */
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

static const exactly_handler upsert_unfused_handler = {
    EXACTLY_HANDLER_HEADER,
    .name = "upsert",
    .description = "upsert looked-up rows into a table, one INSERT ... ON "
                   "CONFLICT per batch",
    .options = upsert_options,
    .n_options = sizeof(upsert_options) / sizeof(upsert_options[0]),
    .skips_lookup = 0,
    .open = open_unfused,
    .apply = upsert_apply,
    .close = upsert_close,
};

static const exactly_handler upsert_fused_handler = {
    EXACTLY_HANDLER_HEADER,
    .name = "upsert",
    .description = "upsert rows of the lookup's table into a table, reading "
                   "and writing in one INSERT ... SELECT ... ON CONFLICT",
    .options = upsert_options,
    .n_options = sizeof(upsert_options) / sizeof(upsert_options[0]),
    .skips_lookup = 1,
    .open = open_fused,
    .apply = upsert_apply,
    .close = upsert_close,
};

const exactly_handler *exactly_builtin_upsert(void)
{
    return &upsert_unfused_handler;
}

const exactly_handler *exactly_builtin_upsert_fused(void)
{
    return &upsert_fused_handler;
}
