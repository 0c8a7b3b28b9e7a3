/*
 * upsert_sql.c - statement generation for the built-in upsert handler.
 * Pure: no I/O, no libpq, no global state.
 */
#include "upsert_sql.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

static void set_err(char *errbuf, size_t errbuf_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *errbuf, size_t errbuf_size, const char *fmt, ...)
{
    va_list ap;

    if (!errbuf || errbuf_size == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(errbuf, errbuf_size, fmt, ap);
    va_end(ap);
}

/* ---- identifiers ---- */

static int ident_ok(const char *name, size_t len, const char *what,
                    char *errbuf, size_t errbuf_size)
{
    if (!name || len == 0) {
        set_err(errbuf, errbuf_size, "%s name is empty", what);
        return 0;
    }
    if (len > UPSERT_SQL_MAX_IDENT) {
        set_err(errbuf, errbuf_size,
                "%s name \"%.*s\" is longer than %d bytes", what, (int)len,
                name, UPSERT_SQL_MAX_IDENT);
        return 0;
    }
    return 1;
}

/* Appends name quoted (util/strbuf.h's one quoting). The caller has
 * checked it. */
static void put_ident(strbuf *b, const char *name)
{
    strbuf_ident(b, name, strlen(name));
}

/* Appends a relation name quoted part by part; 0 or -1 with errbuf set. */
static int put_relation(strbuf *b, const char *name, const char *what,
                       char *errbuf, size_t errbuf_size)
{
    const char *dot;
    size_t len;

    if (!name || !*name) {
        set_err(errbuf, errbuf_size, "%s name is empty", what);
        return -1;
    }
    len = strlen(name);
    dot = strchr(name, '.');
    if (!dot) {
        if (!ident_ok(name, len, what, errbuf, errbuf_size))
            return -1;
        strbuf_ident(b, name, len);
        return 0;
    }
    if (strchr(dot + 1, '.')) {
        set_err(errbuf, errbuf_size,
                "%s name \"%s\" has more than one dot (use schema.table)",
                what, name);
        return -1;
    }
    if (dot == name || dot[1] == '\0') {
        set_err(errbuf, errbuf_size,
                "%s name \"%s\" has an empty schema or table part", what,
                name);
        return -1;
    }
    if (!ident_ok(name, (size_t)(dot - name), what, errbuf, errbuf_size) ||
        !ident_ok(dot + 1, strlen(dot + 1), what, errbuf, errbuf_size))
        return -1;
    strbuf_ident(b, name, (size_t)(dot - name));
    strbuf_append(b, ".", 1);
    put_ident(b, dot + 1);
    return 0;
}

static char *oom(char *errbuf, size_t errbuf_size)
{
    set_err(errbuf, errbuf_size, "out of memory");
    return NULL;
}

char *upsert_sql_quote_ident(const char *name, char *errbuf,
                             size_t errbuf_size)
{
    strbuf b = {0};
    char *s;

    if (!ident_ok(name, name ? strlen(name) : 0, "column", errbuf,
                  errbuf_size))
        return NULL;
    put_ident(&b, name);
    s = strbuf_take(&b);
    return s ? s : oom(errbuf, errbuf_size);
}

char *upsert_sql_quote_relation(const char *name, char *errbuf,
                                size_t errbuf_size)
{
    strbuf b = {0};
    char *s;

    if (put_relation(&b, name, "table", errbuf, errbuf_size) != 0) {
        strbuf_free(&b);
        return NULL;
    }
    s = strbuf_take(&b);
    return s ? s : oom(errbuf, errbuf_size);
}

int upsert_sql_type_is_safe(const char *type)
{
    const char *p;

    if (!type || !*type)
        return 0;
    for (p = type; *p; p++) {
        char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9') || strchr("_ ()[],.\"", c))
            continue;
        return 0;
    }
    return 1;
}

/* ---- spec validation ---- */

static int find_column(const upsert_sql_spec *spec, const char *name)
{
    size_t i;

    for (i = 0; i < spec->n_columns; i++)
        if (strcmp(spec->columns[i], name) == 0)
            return (int)i;
    return -1;
}

static int is_key(const upsert_sql_spec *spec, const char *name)
{
    size_t i;

    for (i = 0; i < spec->n_key; i++)
        if (strcmp(spec->key[i], name) == 0)
            return 1;
    return 0;
}

static int id_type_ok(const char *t)
{
    return t && (strcmp(t, "bigint") == 0 || strcmp(t, "text") == 0 ||
                 strcmp(t, "uuid") == 0);
}

/* Checks what both statements need. Returns 1 when spec is usable. */
static int spec_ok(const upsert_sql_spec *spec, char *errbuf,
                   size_t errbuf_size)
{
    size_t i, j;
    int fused = spec->lookup_table != NULL;

    if (!spec->columns || spec->n_columns == 0) {
        set_err(errbuf, errbuf_size, "no columns to write");
        return 0;
    }
    if (!spec->key || spec->n_key == 0) {
        set_err(errbuf, errbuf_size, "the conflict key names no column");
        return 0;
    }
    for (i = 0; i < spec->n_columns; i++) {
        const char *c = spec->columns[i];
        if (!ident_ok(c, c ? strlen(c) : 0, "column", errbuf, errbuf_size))
            return 0;
        for (j = 0; j < i; j++)
            if (strcmp(spec->columns[j], c) == 0) {
                set_err(errbuf, errbuf_size, "column \"%s\" appears twice",
                        c);
                return 0;
            }
        if (fused) {
            const char *s = spec->sources ? spec->sources[i] : NULL;
            if (!ident_ok(s, s ? strlen(s) : 0, "source column", errbuf,
                          errbuf_size))
                return 0;
        } else {
            const char *t = spec->types ? spec->types[i] : NULL;
            if (!upsert_sql_type_is_safe(t)) {
                set_err(errbuf, errbuf_size,
                        "column \"%s\" has no usable type (got \"%s\")", c,
                        t ? t : "");
                return 0;
            }
        }
    }
    for (i = 0; i < spec->n_key; i++) {
        const char *k = spec->key[i];
        if (!k || find_column(spec, k) < 0) {
            set_err(errbuf, errbuf_size,
                    "key column \"%s\" is not one of the written columns",
                    k ? k : "");
            return 0;
        }
        for (j = 0; j < i; j++)
            if (strcmp(spec->key[j], k) == 0) {
                set_err(errbuf, errbuf_size, "key column \"%s\" appears twice",
                        k);
                return 0;
            }
    }
    if (fused) {
        const char *id = spec->lookup_id_column;
        if (!ident_ok(id, id ? strlen(id) : 0, "lookup id column", errbuf,
                      errbuf_size))
            return 0;
    }
    return 1;
}

/* "TABLE AS t WHERE t.KEY = ANY($1::TYPE[])": the target rows of the
 * batch's IDs, for the delete of missing rows and for locking them. */
static int put_targets_of_ids(strbuf *b, const upsert_sql_spec *spec,
                              char *errbuf, size_t errbuf_size)
{
    if (put_relation(b, spec->table, "table", errbuf, errbuf_size) != 0)
        return -1;
    strbuf_puts(b, " AS t WHERE t.");
    put_ident(b, spec->key[0]);
    strbuf_puts(b, " = ANY($1::");
    strbuf_puts(b, spec->id_type);
    strbuf_puts(b, "[])");
    return 0;
}

/* Appends "ON CONFLICT (...) DO ...". */
static void put_conflict(strbuf *b, const upsert_sql_spec *spec)
{
    size_t i;
    int first;

    strbuf_puts(b, " ON CONFLICT (");
    for (i = 0; i < spec->n_key; i++) {
        if (i)
            strbuf_puts(b, ", ");
        put_ident(b, spec->key[i]);
    }
    strbuf_puts(b, ")");
    if (spec->n_key == spec->n_columns) {
        strbuf_puts(b, " DO NOTHING");
        return;
    }
    strbuf_puts(b, " DO UPDATE SET ");
    first = 1;
    for (i = 0; i < spec->n_columns; i++) {
        if (is_key(spec, spec->columns[i]))
            continue;
        if (!first)
            strbuf_puts(b, ", ");
        first = 0;
        put_ident(b, spec->columns[i]);
        strbuf_puts(b, " = EXCLUDED.");
        put_ident(b, spec->columns[i]);
    }
    /* Skipping unchanged rows saves a dead tuple, WAL and index work for
     * every replayed or repeated ID, which is the common case here. */
    for (int side = 0; side < 2; side++) {
        strbuf_puts(b, side == 0 ? " WHERE (" : ") IS DISTINCT FROM (");
        first = 1;
        for (i = 0; i < spec->n_columns; i++) {
            if (is_key(spec, spec->columns[i]))
                continue;
            if (!first)
                strbuf_puts(b, ", ");
            first = 0;
            strbuf_puts(b, side == 0 ? "t." : "EXCLUDED.");
            put_ident(b, spec->columns[i]);
        }
    }
    strbuf_puts(b, ")");
}

char *upsert_sql_insert(const upsert_sql_spec *spec, char *errbuf,
                        size_t errbuf_size)
{
    strbuf b = {0};
    size_t i;
    char *s;
    int fused;

    if (!spec || !spec_ok(spec, errbuf, errbuf_size))
        return NULL;
    fused = spec->lookup_table != NULL;
    if (fused && !id_type_ok(spec->id_type)) {
        set_err(errbuf, errbuf_size,
                "id type \"%s\" is not bigint, text or uuid",
                spec->id_type ? spec->id_type : "");
        return NULL;
    }

    strbuf_puts(&b, "INSERT INTO ");
    if (put_relation(&b, spec->table, "table", errbuf, errbuf_size) != 0)
        goto fail;
    strbuf_puts(&b, " AS t (");
    for (i = 0; i < spec->n_columns; i++) {
        if (i)
            strbuf_puts(&b, ", ");
        put_ident(&b, spec->columns[i]);
    }
    strbuf_puts(&b, ") SELECT ");

    if (fused) {
        for (i = 0; i < spec->n_columns; i++) {
            if (i)
                strbuf_puts(&b, ", ");
            strbuf_puts(&b, "s.");
            put_ident(&b, spec->sources[i]);
        }
        strbuf_puts(&b, " FROM ");
        if (put_relation(&b, spec->lookup_table, "lookup table", errbuf,
                        errbuf_size) != 0)
            goto fail;
        strbuf_puts(&b, " AS s WHERE s.");
        put_ident(&b, spec->lookup_id_column);
        strbuf_puts(&b, " = ANY($1::");
        strbuf_puts(&b, spec->id_type);
        strbuf_puts(&b, "[])");
        /* Each source row is locked as it is read, in the order of the
         * entity IDs (the lock is taken above the sort), so that two
         * writers, or a user transaction changing several rows in that
         * order, never wait on each other in a cycle; at READ COMMITTED
         * a row changed since the statement began is read in its latest
         * committed version. */
        if (spec->lock_source) {
            strbuf_puts(&b, " ORDER BY s.");
            put_ident(&b, spec->lookup_id_column);
            strbuf_puts(&b, " FOR SHARE OF s");
        }
    } else {
        /* Every parameter is a text[] and each column is cast after unnest:
         * a typed array cannot carry a column that is itself an array
         * (integer[][] would flatten), a cast per column can. */
        for (i = 0; i < spec->n_columns; i++) {
            if (i)
                strbuf_puts(&b, ", ");
            strbuf_printf(&b, "u.c%zu::", i + 1);
            strbuf_puts(&b, spec->types[i]);
        }
        strbuf_puts(&b, " FROM unnest(");
        for (i = 0; i < spec->n_columns; i++)
            strbuf_printf(&b, "%s$%zu::text[]", i ? ", " : "", i + 1);
        strbuf_puts(&b, ") AS u(");
        for (i = 0; i < spec->n_columns; i++)
            strbuf_printf(&b, "%sc%zu", i ? ", " : "", i + 1);
        strbuf_puts(&b, ")");
    }
    put_conflict(&b, spec);

    s = strbuf_take(&b);
    return s ? s : oom(errbuf, errbuf_size);

fail:
    strbuf_free(&b);
    return NULL;
}

char *upsert_sql_delete(const upsert_sql_spec *spec, char *errbuf,
                        size_t errbuf_size)
{
    strbuf b = {0};
    char *s;
    int fused;

    if (!spec || !spec_ok(spec, errbuf, errbuf_size))
        return NULL;
    fused = spec->lookup_table != NULL;
    if (spec->n_key != 1) {
        set_err(errbuf, errbuf_size,
                "deleting missing rows needs a key of exactly one column "
                "(the entity ID), not %zu",
                spec->n_key);
        return NULL;
    }
    if (!id_type_ok(spec->id_type)) {
        set_err(errbuf, errbuf_size,
                "id type \"%s\" is not bigint, text or uuid",
                spec->id_type ? spec->id_type : "");
        return NULL;
    }
    if (fused) {
        int k = find_column(spec, spec->key[0]);
        if (strcmp(spec->sources[k], spec->lookup_id_column) != 0) {
            set_err(errbuf, errbuf_size,
                    "deleting missing rows needs key column \"%s\" filled "
                    "from the lookup's id column \"%s\", not \"%s\"",
                    spec->key[0], spec->lookup_id_column, spec->sources[k]);
            return NULL;
        }
    }

    strbuf_puts(&b, "DELETE FROM ");
    if (put_targets_of_ids(&b, spec, errbuf, errbuf_size) != 0)
        goto fail;
    if (fused) {
        strbuf_puts(&b, " AND NOT EXISTS (SELECT 1 FROM ");
        if (put_relation(&b, spec->lookup_table, "lookup table", errbuf,
                        errbuf_size) != 0)
            goto fail;
        strbuf_puts(&b, " AS s WHERE s.");
        put_ident(&b, spec->lookup_id_column);
        strbuf_puts(&b, " = t.");
        put_ident(&b, spec->key[0]);
        strbuf_puts(&b, ")");
    }

    s = strbuf_take(&b);
    return s ? s : oom(errbuf, errbuf_size);

fail:
    strbuf_free(&b);
    return NULL;
}

char *upsert_sql_lock_targets(const upsert_sql_spec *spec, char *errbuf,
                              size_t errbuf_size)
{
    strbuf b = {0};
    char *s;

    if (!spec || !spec_ok(spec, errbuf, errbuf_size))
        return NULL;
    if (spec->n_key != 1 || !id_type_ok(spec->id_type)) {
        set_err(errbuf, errbuf_size,
                "locking target rows needs a key of exactly one column and "
                "an id type of bigint, text or uuid");
        return NULL;
    }
    strbuf_puts(&b, "SELECT 1 FROM ");
    if (put_targets_of_ids(&b, spec, errbuf, errbuf_size) != 0)
        goto fail;
    strbuf_puts(&b, " ORDER BY t.");
    put_ident(&b, spec->key[0]);
    strbuf_puts(&b, " FOR UPDATE OF t");
    s = strbuf_take(&b);
    return s ? s : oom(errbuf, errbuf_size);

fail:
    strbuf_free(&b);
    return NULL;
}

/* ---- array literals: util/strbuf.h's builder ---- */

void upsert_array_reset(upsert_array *a)
{
    strbuf_reset(&a->sb);
    a->n = 0;
    a->oom = 0;
    a->finished = 0;
}

int upsert_array_add(upsert_array *a, const char *value)
{
    if (a->finished)
        a->oom = 1; /* a caller bug; make it visible rather than silent */
    if (a->oom)
        return -1;
    if (a->n == 0)
        strbuf_array_begin(&a->sb);
    a->n++;
    strbuf_array_elem_str(&a->sb, value);
    if (a->sb.oom) {
        a->oom = 1;
        return -1;
    }
    return 0;
}

const char *upsert_array_finish(upsert_array *a)
{
    if (a->finished || a->oom)
        return a->oom ? NULL : a->sb.data;
    if (a->n == 0)
        strbuf_array_begin(&a->sb);
    strbuf_array_end(&a->sb);
    if (a->sb.oom) {
        a->oom = 1;
        return NULL;
    }
    a->finished = 1;
    return a->sb.data;
}

void upsert_array_free(upsert_array *a)
{
    if (!a)
        return;
    strbuf_free(&a->sb);
    memset(a, 0, sizeof(*a));
}

char *upsert_sql_emit(const char *insert_sql, const upsert_sql_spec *spec,
                      const char *outbox, int topic_param, char *errbuf,
                      size_t errbuf_size)
{
    strbuf b = {0};
    size_t i;
    char *s;

    if (!insert_sql || !spec || spec->n_key == 0 || topic_param < 1) {
        set_err(errbuf, errbuf_size, "nothing to emit from");
        return NULL;
    }
    /* RETURNING of INSERT ... ON CONFLICT DO UPDATE ... WHERE yields the
     * rows inserted and the rows updated, never those the IS DISTINCT
     * FROM condition skipped: exactly the rows that changed. */
    strbuf_puts(&b, "WITH w AS (");
    strbuf_puts(&b, insert_sql);
    strbuf_puts(&b, " RETURNING ");
    for (i = 0; i < spec->n_key; i++) {
        if (i)
            strbuf_puts(&b, ", ");
        strbuf_puts(&b, "t.");
        put_ident(&b, spec->key[i]);
    }
    strbuf_puts(&b, ") INSERT INTO ");
    if (put_relation(&b, outbox, "outbox table", errbuf, errbuf_size) != 0)
        goto fail;
    strbuf_printf(&b, " (topic, key) SELECT $%d::text, convert_to(", topic_param);
    if (spec->n_key == 1) {
        strbuf_puts(&b, "w.");
        put_ident(&b, spec->key[0]);
        strbuf_puts(&b, "::text");
    } else {
        strbuf_puts(&b, "jsonb_build_array(");
        for (i = 0; i < spec->n_key; i++) {
            if (i)
                strbuf_puts(&b, ", ");
            strbuf_puts(&b, "w.");
            put_ident(&b, spec->key[i]);
        }
        strbuf_puts(&b, ")::text");
    }
    strbuf_puts(&b, ", 'UTF8') FROM w");
    s = strbuf_take(&b);
    return s ? s : oom(errbuf, errbuf_size);

fail:
    strbuf_free(&b);
    return NULL;
}
