/*
 * projection.c - an example handler to copy: keeps a read model in step
 * with the looked-up rows.
 *
 * Every column the lookup returns is written to the target column of the
 * same name. Per batch it queues at most two statements:
 *
 *   INSERT INTO "customer_view" AS t ("id", "name", "email", "tags")
 *   SELECT unnest($1::bigint[]), unnest($2::text[]), unnest($3::text[]),
 *          unnest($4::text[])::text[]
 *   ON CONFLICT ("id") DO UPDATE SET "name" = EXCLUDED."name",
 *       "email" = EXCLUDED."email", "tags" = EXCLUDED."tags"
 *   WHERE (t."name", t."email", t."tags") IS DISTINCT FROM
 *         (EXCLUDED."name", EXCLUDED."email", EXCLUDED."tags")
 *
 * for the records whose lookup found rows (each parameter is one array
 * holding a column of the whole batch, of the target column's type), and
 *
 *   DELETE FROM "customer_view" AS t WHERE t."id" = ANY($1::bigint[])
 *
 * for the records whose lookup found nothing: with `on_missing: handler`
 * that is how a deleted entity leaves the read model.
 *
 * Options:
 *   table  string, required  the read model, "name" or "schema.name"
 *   key    string, "id"      its unique column; it holds the entity ID
 *
 * A pipeline using it, with the read model's DDL:
 *
 *   CREATE TABLE customer_view (id bigint PRIMARY KEY, name text,
 *                               email text);
 *   lookup: SELECT id, name, email FROM customers WHERE id = ANY($1)
 *
 * What it costs the server: the arrays are unnested in the select list (a
 * ProjectSet, which walks them in step; unnest() in FROM would first copy
 * them into a tuplestore), and each is typed as its target column, so
 * every value is parsed once, not read as text and then cast. A column
 * that is itself an array travels as text[] and is cast after unnest: a
 * typed array cannot carry it (integer[][] would flatten). Columns of
 * type bigint, integer, smallint, text, varchar and numeric travel in
 * binary (host->exec_params): the server parses no text at all. The
 * lookup's values arrive as text, so the handler converts them, and a
 * value not in the form PostgreSQL prints (say a numeric column filled
 * from a float8 "1e+20") sends that column of that batch as a text
 * literal instead: the statement is the same, and the server then reads
 * the text as the cast would have.
 *
 * Safety: values only ever travel as parameters. Identifiers (the table
 * option, lookup column names) are double-quoted with embedded quotes
 * doubled. Column types come from the catalog in open() and are checked
 * to look like type names before they are written into the SQL.
 */
/* strdup() is POSIX, not C11: ask for it, so that a copy of this file
 * builds with -std=c11 outside this tree too. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exactly/exactly.h"
#include "exactly/sqlbuf.h"

/* ---- the handler ---- */

/* One column of the target table, as the catalog describes it. */
typedef struct column {
    char *name;
    char *type; /* format_type() without the modifier, e.g. "text[]" */
    unsigned long oid; /* pg_type's */
    int wire;   /* binary encoding, WIRE_*; WIRE_TEXT: a text literal */
} column;

/* How a column's values travel (see the top of the file). */
enum { WIRE_TEXT, WIRE_INT2, WIRE_INT4, WIRE_INT8, WIRE_STRING, WIRE_NUMERIC };

/* The binary encoding of values of type oid (a binary array names the
 * same oid as its element type). */
static int wire_of(unsigned long oid)
{
    switch (oid) {
    case 20: return WIRE_INT8;
    case 21: return WIRE_INT2;
    case 23: return WIRE_INT4;
    case 25: return WIRE_STRING;   /* text */
    case 1043: return WIRE_STRING; /* varchar: text's wire format */
    case 1700: return WIRE_NUMERIC;
    default: return WIRE_TEXT;
    }
}

/* One lookup column of the batch being applied: the array parameter its
 * values are built into, the table column they go to, and how they
 * travel (1 binary; 0 a text literal; -1 binary given up on a value that
 * did not fit, rebuilt as text). Kept across batches to reuse the
 * array's memory. */
typedef struct lookup_column {
    exactly_sqlbuf values;
    const column *target;
    int format;
} lookup_column;

typedef struct projection {
    const exactly_host *host;
    char *table;       /* quoted */
    const char *key;   /* option string, lives until close */
    column *cols;
    size_t n_cols;
    char *delete_sql;
    /* Per-batch work space, kept to reuse its memory. */
    exactly_sqlbuf sql;
    exactly_sqlbuf ids;
    lookup_column *lookup; /* n_lookup of them, zeroed when added */
    size_t n_lookup;
    /* The upsert's parameter vectors as exec_params takes them, n_lookup
     * entries each, in one block that params points to; they hold
     * nothing between batches. */
    const char **params;
    int *lengths, *formats;
    int binary;             /* the host has exec_params (ABI 1.2) */
} projection;

static const exactly_option_decl projection_options[] = {
    {"table", EXACTLY_OPT_STRING, NULL,
     "read-model table, name or schema.name (case-sensitive)"},
    {"key", EXACTLY_OPT_STRING, "id",
     "unique column of the table that holds the entity ID"},
};

/*
 * The target's columns and their types. The type is rendered without its
 * modifier because an explicit cast to varchar(5) truncates silently; left
 * to the INSERT's assignment, a value that does not fit is an error.
 */
static const char column_types_sql[] =
    "SELECT a.attname, format_type(a.atttypid, NULL), a.atttypid::int8 "
    "FROM pg_attribute a "
    "WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped";

/* A type name goes into SQL unquoted; the server made it, but accept only
 * what a type name can contain. */
static int type_ok(const char *t)
{
    if (!t || !*t)
        return 0;
    for (; *t; t++)
        if (!((*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z') ||
              (*t >= '0' && *t <= '9') || strchr("_ ()[],.\"", *t)))
            return 0;
    return 1;
}

static const column *column_of(const projection *p, const char *name)
{
    size_t i;

    for (i = 0; i < p->n_cols; i++)
        if (strcmp(p->cols[i].name, name) == 0)
            return &p->cols[i];
    return NULL;
}

/* Whether a type name (format_type's) is an array type. */
static int is_array_type(const char *type)
{
    size_t n = strlen(type);

    return n >= 2 && strcmp(type + n - 2, "[]") == 0;
}

static void projection_close(void *state)
{
    projection *p = state;
    size_t i;

    if (!p)
        return;
    for (i = 0; i < p->n_cols; i++) {
        free(p->cols[i].name);
        free(p->cols[i].type);
    }
    free(p->cols);
    free(p->table);
    free(p->delete_sql);
    exactly_sqlbuf_free(&p->sql);
    exactly_sqlbuf_free(&p->ids);
    for (i = 0; i < p->n_lookup; i++)
        exactly_sqlbuf_free(&p->lookup[i].values);
    free(p->lookup);
    free(p->params);
    free(p);
}

/* Copies the target's columns out of the catalog into p->cols. */
static exactly_err load_columns(projection *p, const exactly_open_args *args)
{
    const exactly_host *h = p->host;
    exactly_result *res = NULL;
    const char *param = p->table;
    exactly_err rc;
    size_t i, n;

    /* The quoted name, so ::regclass finds the very table the INSERT
     * names (an unquoted Orders would be folded to orders). */
    rc = h->query(args->setup, column_types_sql, 1, &param, &res);
    if (rc != EXACTLY_OK) {
        snprintf(args->errbuf, args->errbuf_size,
                 "projection: cannot read the columns of table %s (does it "
                 "exist?)",
                 p->table);
        return rc;
    }
    n = h->result_rows(res);
    p->cols = calloc(n ? n : 1, sizeof(*p->cols));
    if (!p->cols)
        goto nomem;
    for (i = 0; i < n; i++) {
        const char *name = h->result_value(res, i, 0);
        const char *type = h->result_value(res, i, 1);
        const char *oid = h->result_value(res, i, 2);

        if (!name || !type_ok(type)) {
            snprintf(args->errbuf, args->errbuf_size,
                     "projection: column \"%s\" of %s has an unexpected "
                     "type name \"%s\"",
                     name ? name : "", p->table, type ? type : "");
            h->result_free(res);
            return EXACTLY_ECONFIG;
        }
        p->cols[i].name = strdup(name);
        p->cols[i].type = strdup(type);
        p->cols[i].oid = oid ? strtoul(oid, NULL, 10) : 0;
        p->cols[i].wire = wire_of(p->cols[i].oid);
        p->n_cols = i + 1;
        if (!p->cols[i].name || !p->cols[i].type)
            goto nomem;
    }
    h->result_free(res);
    return EXACTLY_OK;

nomem:
    h->result_free(res);
    snprintf(args->errbuf, args->errbuf_size, "projection: out of memory");
    return EXACTLY_ENOMEM;
}

static exactly_err projection_open(const exactly_open_args *args,
                                   void **state)
{
    const exactly_host *h = args->host;
    const char *table = h->opt_string(args->opts, "table");
    const column *key_col;
    projection *p;
    exactly_sqlbuf b = {0};
    exactly_err rc = EXACTLY_ECONFIG;

    *state = NULL;
    p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(args->errbuf, args->errbuf_size, "projection: out of memory");
        return EXACTLY_ENOMEM;
    }
    p->host = h;
    /* A host older than ABI 1.2 has no exec_params: text literals only. */
    p->binary = h->size >= offsetof(exactly_host, exec_params) +
                               sizeof(h->exec_params) &&
                h->exec_params != NULL;
    p->key = h->opt_string(args->opts, "key");
    if (!args->setup) {
        snprintf(args->errbuf, args->errbuf_size,
                 "projection: needs a database connection at open");
        goto fail;
    }
    if (exactly_sqlbuf_relation(&b, table) != 0) {
        snprintf(args->errbuf, args->errbuf_size,
                 "projection: table name \"%s\" is not name or schema.name",
                 table ? table : "");
        exactly_sqlbuf_free(&b);
        goto fail;
    }
    p->table = exactly_sqlbuf_take(&b);
    if (!p->table) {
        snprintf(args->errbuf, args->errbuf_size, "projection: out of memory");
        rc = EXACTLY_ENOMEM;
        goto fail;
    }
    if (!p->key || !*p->key) {
        snprintf(args->errbuf, args->errbuf_size,
                 "projection: option key is empty");
        goto fail;
    }
    rc = load_columns(p, args);
    if (rc != EXACTLY_OK)
        goto fail;

    key_col = column_of(p, p->key);
    if (!key_col) {
        snprintf(args->errbuf, args->errbuf_size,
                 "projection: table %s has no key column \"%s\"", p->table,
                 p->key);
        rc = EXACTLY_ECONFIG;
        goto fail;
    }
    /* The delete is the same for every batch: build it once. */
    exactly_sqlbuf_puts(&b, "DELETE FROM ");
    exactly_sqlbuf_puts(&b, p->table);
    exactly_sqlbuf_puts(&b, " AS t WHERE t.");
    exactly_sqlbuf_ident(&b, p->key, strlen(p->key));
    exactly_sqlbuf_puts(&b, " = ANY($1::");
    exactly_sqlbuf_puts(&b, key_col->type);
    exactly_sqlbuf_puts(&b, "[])");
    p->delete_sql = exactly_sqlbuf_take(&b);
    if (!p->delete_sql) {
        snprintf(args->errbuf, args->errbuf_size, "projection: out of memory");
        rc = EXACTLY_ENOMEM;
        goto fail;
    }
    *state = p;
    return EXACTLY_OK;

fail:
    projection_close(p);
    return rc;
}

/* Makes room for n lookup columns. On failure nothing is lost: the
 * count only grows once the columns and the vectors have. */
static int ensure_lookup(projection *p, size_t n)
{
    lookup_column *lookup;
    const char **params;

    if (n <= p->n_lookup)
        return 0;
    lookup = realloc(p->lookup, n * sizeof(*lookup));
    if (!lookup)
        return -1;
    p->lookup = lookup;
    memset(lookup + p->n_lookup, 0, (n - p->n_lookup) * sizeof(*lookup));
    /* The pointers first, then the two int vectors: each part is aligned
     * for what it holds. Nothing to copy, so a new block, not realloc. */
    params = malloc(n * (sizeof(*params) + 2 * sizeof(int)));
    if (!params)
        return -1;
    free(p->params);
    p->params = params;
    p->lengths = (int *)(params + n);
    p->formats = p->lengths + n;
    p->n_lookup = n;
    return 0;
}

/* Appends value v (NULL: SQL NULL) to a binary array of encoding wire;
 * -1 when v is not in the form the encoding reads. */
static int put_binary(exactly_sqlbuf *a, int wire, const char *v)
{
    switch (wire) {
    case WIRE_INT2: return exactly_sqlbuf_binelem_int(a, v, 2);
    case WIRE_INT4: return exactly_sqlbuf_binelem_int(a, v, 4);
    case WIRE_INT8: return exactly_sqlbuf_binelem_int(a, v, 8);
    case WIRE_NUMERIC: return exactly_sqlbuf_binelem_numeric(a, v);
    case WIRE_STRING:
        exactly_sqlbuf_binelem(a, v, v ? strlen(v) : 0);
        return 0;
    default: return -1;
    }
}

/* Column j of the batch's rows as a text array literal, closed. */
static void text_column(projection *p, const exactly_batch *b, size_t j)
{
    exactly_sqlbuf *a = &p->lookup[j].values;
    size_t i, row;

    exactly_sqlbuf_array(a);
    for (i = 0; i < b->n_records; i++) {
        const exactly_record *r = &b->records[i];
        for (row = 0; row < r->n_rows; row++)
            exactly_sqlbuf_elem(a, r->values[row * b->n_columns + j]);
    }
    exactly_sqlbuf_puts(a, "}");
}

/* Builds the upsert for the lookup's columns into p->sql. */
static void build_upsert(projection *p, const exactly_batch *b)
{
    exactly_sqlbuf *s = &p->sql;
    char num[48];
    size_t i;
    int first, side;

    exactly_sqlbuf_reset(s);
    exactly_sqlbuf_puts(s, "INSERT INTO ");
    exactly_sqlbuf_puts(s, p->table);
    exactly_sqlbuf_puts(s, " AS t (");
    for (i = 0; i < b->n_columns; i++) {
        if (i)
            exactly_sqlbuf_puts(s, ", ");
        exactly_sqlbuf_ident(s, b->column_names[i], strlen(b->column_names[i]));
    }
    /* One array per column, of the column's type, unnested in step in
     * the select list; a column that is itself an array comes as text[]
     * and is cast after unnest (the top of the file says why). */
    exactly_sqlbuf_puts(s, ") SELECT ");
    for (i = 0; i < b->n_columns; i++) {
        const char *type = p->lookup[i].target->type;
        int arr = is_array_type(type);

        snprintf(num, sizeof(num), "%sunnest($%zu::", i ? ", " : "", i + 1);
        exactly_sqlbuf_puts(s, num);
        exactly_sqlbuf_puts(s, arr ? "text" : type);
        exactly_sqlbuf_puts(s, "[])");
        if (arr) {
            exactly_sqlbuf_puts(s, "::");
            exactly_sqlbuf_puts(s, type);
        }
    }
    exactly_sqlbuf_puts(s, " ON CONFLICT (");
    exactly_sqlbuf_ident(s, p->key, strlen(p->key));
    exactly_sqlbuf_puts(s, ")");
    if (b->n_columns == 1) {
        exactly_sqlbuf_puts(s, " DO NOTHING");
        return;
    }
    exactly_sqlbuf_puts(s, " DO UPDATE SET ");
    first = 1;
    for (i = 0; i < b->n_columns; i++) {
        const char *c = b->column_names[i];
        if (strcmp(c, p->key) == 0)
            continue;
        if (!first)
            exactly_sqlbuf_puts(s, ", ");
        first = 0;
        exactly_sqlbuf_ident(s, c, strlen(c));
        exactly_sqlbuf_puts(s, " = EXCLUDED.");
        exactly_sqlbuf_ident(s, c, strlen(c));
    }
    /* An unchanged row is left alone: no dead tuple, no WAL, no index
     * churn when the same entity is announced again and again. */
    for (side = 0; side < 2; side++) {
        exactly_sqlbuf_puts(s, side == 0 ? " WHERE (" : ") IS DISTINCT FROM (");
        first = 1;
        for (i = 0; i < b->n_columns; i++) {
            const char *c = b->column_names[i];
            if (strcmp(c, p->key) == 0)
                continue;
            if (!first)
                exactly_sqlbuf_puts(s, ", ");
            first = 0;
            exactly_sqlbuf_puts(s, side == 0 ? "t." : "EXCLUDED.");
            exactly_sqlbuf_ident(s, c, strlen(c));
        }
    }
    exactly_sqlbuf_puts(s, ")");
}

static exactly_err projection_apply(void *state, exactly_txn *txn,
                                    const exactly_batch *b)
{
    projection *p = state;
    const exactly_host *h = p->host;
    size_t i, j, row, n_rows = 0;
    int has_key = 0, any_binary = 0;
    exactly_err rc;

    /* 1. Every lookup column must be a target column; the key among them. */
    if (ensure_lookup(p, b->n_columns ? b->n_columns : 1) != 0) {
        h->set_error(txn, "projection: out of memory");
        return EXACTLY_ENOMEM;
    }
    for (j = 0; j < b->n_columns; j++) {
        p->lookup[j].target = column_of(p, b->column_names[j]);
        if (!p->lookup[j].target) {
            h->set_error(txn,
                         "projection: lookup column \"%s\" is not a column "
                         "of %s",
                         b->column_names[j], p->table);
            return EXACTLY_EHANDLER;
        }
        if (strcmp(b->column_names[j], p->key) == 0)
            has_key = 1;
    }

    /* 2. Rows become one array per column, binary where the column's
     * type has an encoding here (format 1; -1 once a value did not fit
     * it: the column is then built again as text below); IDs without
     * rows are deleted. */
    for (j = 0; j < b->n_columns; j++) {
        lookup_column *l = &p->lookup[j];
        const column *c = l->target;

        l->format = p->binary && c->wire != WIRE_TEXT &&
                    !is_array_type(c->type);
        if (l->format)
            exactly_sqlbuf_binarray(&l->values, (uint32_t)c->oid);
        else
            exactly_sqlbuf_array(&l->values);
    }
    exactly_sqlbuf_array(&p->ids);
    for (i = 0; i < b->n_records; i++) {
        const exactly_record *r = &b->records[i];

        if (r->n_rows == 0) {
            exactly_sqlbuf_elem(&p->ids, r->id);
            continue;
        }
        for (row = 0; row < r->n_rows; row++)
            for (j = 0; j < b->n_columns; j++) {
                lookup_column *l = &p->lookup[j];
                const char *v = r->values[row * b->n_columns + j];

                if (l->format == 0)
                    exactly_sqlbuf_elem(&l->values, v);
                else if (l->format == 1 &&
                         put_binary(&l->values, l->target->wire, v) != 0)
                    l->format = -1;
            }
        n_rows += r->n_rows;
    }

    /* 3. Queue the upsert. */
    if (n_rows > 0) {
        if (!has_key) {
            h->set_error(txn, "projection: the lookup returns no column "
                              "\"%s\" (the key)", p->key);
            return EXACTLY_EHANDLER;
        }
        build_upsert(p, b);
        for (j = 0; j < b->n_columns; j++) {
            lookup_column *l = &p->lookup[j];

            if (l->format == 1) {
                any_binary = 1;
                p->formats[j] = 1;
                p->lengths[j] = (int)l->values.len;
            } else {
                if (l->format < 0)
                    text_column(p, b, j);
                else
                    exactly_sqlbuf_puts(&l->values, "}");
                p->formats[j] = p->lengths[j] = 0;
            }
            if (l->values.oom)
                p->sql.oom = 1;
            p->params[j] = l->values.s;
        }
        if (p->sql.oom) {
            h->set_error(txn, "projection: out of memory");
            return EXACTLY_ENOMEM;
        }
        if (any_binary)
            rc = h->exec_params(txn, p->sql.s, (int)b->n_columns, p->params,
                                p->lengths, p->formats);
        else
            rc = h->exec(txn, p->sql.s, (int)b->n_columns, p->params);
        if (rc != EXACTLY_OK) {
            h->set_error(txn, "projection: could not queue the upsert");
            return rc;
        }
    }

    /* 4. Queue the delete. */
    if (p->ids.len > 1) {
        const char *param;

        exactly_sqlbuf_puts(&p->ids, "}");
        if (p->ids.oom) {
            h->set_error(txn, "projection: out of memory");
            return EXACTLY_ENOMEM;
        }
        param = p->ids.s;
        rc = h->exec(txn, p->delete_sql, 1, &param);
        if (rc != EXACTLY_OK) {
            h->set_error(txn, "projection: could not queue the delete");
            return rc;
        }
    }
    return EXACTLY_OK;
}

static const exactly_handler projection_handler = {
    EXACTLY_HANDLER_HEADER,
    .name = "projection",
    .description = "projects looked-up rows into a read model; deletes the "
                   "rows of IDs whose lookup found nothing",
    .options = projection_options,
    .n_options = sizeof(projection_options) / sizeof(projection_options[0]),
    .skips_lookup = 0,
    .open = projection_open,
    .apply = projection_apply,
    .close = projection_close,
};

EXACTLY_HANDLER(projection_handler)
