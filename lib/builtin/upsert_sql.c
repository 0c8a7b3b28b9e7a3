/*
 * upsert_sql.c - statement generation for the built-in upsert handler.
 * Pure: no I/O, no libpq, no global state.
 */
#include "upsert_sql.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a growable string; after a failed allocation every append is a
 * no-op and sb_take() returns NULL, so callers check once at the end ---- */

typedef struct sbuf {
    char *s;
    size_t len;
    size_t cap;
    int oom;
} sbuf;

static int sb_reserve(sbuf *b, size_t extra)
{
    size_t want;
    char *p;

    if (b->oom)
        return -1;
    if (b->len + extra + 1 <= b->cap)
        return 0;
    want = b->cap ? b->cap : 256;
    while (want < b->len + extra + 1)
        want *= 2;
    p = realloc(b->s, want);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->s = p;
    b->cap = want;
    return 0;
}

static void sb_putn(sbuf *b, const char *p, size_t n)
{
    if (sb_reserve(b, n) != 0)
        return;
    memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_puts(sbuf *b, const char *p) { sb_putn(b, p, strlen(p)); }

static void sb_printf(sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    int n;

    /* Only used for small numeric pieces ("$12", "c3"). */
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        b->oom = 1;
        return;
    }
    sb_putn(b, tmp, (size_t)n);
}

/* Returns the string (ownership to the caller) or NULL after a failure. */
static char *sb_take(sbuf *b)
{
    char *s;

    if (b->oom || !b->s) {
        free(b->s);
        memset(b, 0, sizeof(*b));
        return NULL;
    }
    s = b->s;
    memset(b, 0, sizeof(*b));
    return s;
}

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

/* Appends name[0..len) quoted. The caller has checked it. */
static void sb_ident_n(sbuf *b, const char *name, size_t len)
{
    size_t i;

    sb_putn(b, "\"", 1);
    for (i = 0; i < len; i++) {
        if (name[i] == '"')
            sb_putn(b, "\"", 1);
        sb_putn(b, name + i, 1);
    }
    sb_putn(b, "\"", 1);
}

static void sb_ident(sbuf *b, const char *name)
{
    sb_ident_n(b, name, strlen(name));
}

/* Appends a relation name quoted part by part; 0 or -1 with errbuf set. */
static int sb_relation(sbuf *b, const char *name, const char *what,
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
        sb_ident_n(b, name, len);
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
    sb_ident_n(b, name, (size_t)(dot - name));
    sb_putn(b, ".", 1);
    sb_ident(b, dot + 1);
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
    sbuf b = {0};
    char *s;

    if (!ident_ok(name, name ? strlen(name) : 0, "column", errbuf,
                  errbuf_size))
        return NULL;
    sb_ident(&b, name);
    s = sb_take(&b);
    return s ? s : oom(errbuf, errbuf_size);
}

char *upsert_sql_quote_relation(const char *name, char *errbuf,
                                size_t errbuf_size)
{
    sbuf b = {0};
    char *s;

    if (sb_relation(&b, name, "table", errbuf, errbuf_size) != 0) {
        free(b.s);
        return NULL;
    }
    s = sb_take(&b);
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

/* Appends "ON CONFLICT (...) DO ...". */
static void sb_conflict(sbuf *b, const upsert_sql_spec *spec)
{
    size_t i;
    int first;

    sb_puts(b, " ON CONFLICT (");
    for (i = 0; i < spec->n_key; i++) {
        if (i)
            sb_puts(b, ", ");
        sb_ident(b, spec->key[i]);
    }
    sb_puts(b, ")");
    if (spec->n_key == spec->n_columns) {
        sb_puts(b, " DO NOTHING");
        return;
    }
    sb_puts(b, " DO UPDATE SET ");
    first = 1;
    for (i = 0; i < spec->n_columns; i++) {
        if (is_key(spec, spec->columns[i]))
            continue;
        if (!first)
            sb_puts(b, ", ");
        first = 0;
        sb_ident(b, spec->columns[i]);
        sb_puts(b, " = EXCLUDED.");
        sb_ident(b, spec->columns[i]);
    }
    /* Skipping unchanged rows saves a dead tuple, WAL and index work for
     * every replayed or repeated ID, which is the common case here. */
    for (int side = 0; side < 2; side++) {
        sb_puts(b, side == 0 ? " WHERE (" : ") IS DISTINCT FROM (");
        first = 1;
        for (i = 0; i < spec->n_columns; i++) {
            if (is_key(spec, spec->columns[i]))
                continue;
            if (!first)
                sb_puts(b, ", ");
            first = 0;
            sb_puts(b, side == 0 ? "t." : "EXCLUDED.");
            sb_ident(b, spec->columns[i]);
        }
    }
    sb_puts(b, ")");
}

char *upsert_sql_insert(const upsert_sql_spec *spec, char *errbuf,
                        size_t errbuf_size)
{
    sbuf b = {0};
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

    sb_puts(&b, "INSERT INTO ");
    if (sb_relation(&b, spec->table, "table", errbuf, errbuf_size) != 0)
        goto fail;
    sb_puts(&b, " AS t (");
    for (i = 0; i < spec->n_columns; i++) {
        if (i)
            sb_puts(&b, ", ");
        sb_ident(&b, spec->columns[i]);
    }
    sb_puts(&b, ") SELECT ");

    if (fused) {
        for (i = 0; i < spec->n_columns; i++) {
            if (i)
                sb_puts(&b, ", ");
            sb_puts(&b, "s.");
            sb_ident(&b, spec->sources[i]);
        }
        sb_puts(&b, " FROM ");
        if (sb_relation(&b, spec->lookup_table, "lookup table", errbuf,
                        errbuf_size) != 0)
            goto fail;
        sb_puts(&b, " AS s WHERE s.");
        sb_ident(&b, spec->lookup_id_column);
        sb_puts(&b, " = ANY($1::");
        sb_puts(&b, spec->id_type);
        sb_puts(&b, "[])");
    } else {
        /* Every parameter is a text[] and each column is cast after unnest:
         * a typed array cannot carry a column that is itself an array
         * (integer[][] would flatten), a cast per column can. */
        for (i = 0; i < spec->n_columns; i++) {
            if (i)
                sb_puts(&b, ", ");
            sb_printf(&b, "u.c%zu::", i + 1);
            sb_puts(&b, spec->types[i]);
        }
        sb_puts(&b, " FROM unnest(");
        for (i = 0; i < spec->n_columns; i++)
            sb_printf(&b, "%s$%zu::text[]", i ? ", " : "", i + 1);
        sb_puts(&b, ") AS u(");
        for (i = 0; i < spec->n_columns; i++)
            sb_printf(&b, "%sc%zu", i ? ", " : "", i + 1);
        sb_puts(&b, ")");
    }
    sb_conflict(&b, spec);

    s = sb_take(&b);
    return s ? s : oom(errbuf, errbuf_size);

fail:
    free(b.s);
    return NULL;
}

char *upsert_sql_delete(const upsert_sql_spec *spec, char *errbuf,
                        size_t errbuf_size)
{
    sbuf b = {0};
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

    sb_puts(&b, "DELETE FROM ");
    if (sb_relation(&b, spec->table, "table", errbuf, errbuf_size) != 0)
        goto fail;
    sb_puts(&b, " AS t WHERE t.");
    sb_ident(&b, spec->key[0]);
    sb_puts(&b, " = ANY($1::");
    sb_puts(&b, spec->id_type);
    sb_puts(&b, "[])");
    if (fused) {
        sb_puts(&b, " AND NOT EXISTS (SELECT 1 FROM ");
        if (sb_relation(&b, spec->lookup_table, "lookup table", errbuf,
                        errbuf_size) != 0)
            goto fail;
        sb_puts(&b, " AS s WHERE s.");
        sb_ident(&b, spec->lookup_id_column);
        sb_puts(&b, " = t.");
        sb_ident(&b, spec->key[0]);
        sb_puts(&b, ")");
    }

    s = sb_take(&b);
    return s ? s : oom(errbuf, errbuf_size);

fail:
    free(b.s);
    return NULL;
}

/* ---- array literals ---- */

static int arr_put(upsert_array *a, const char *p, size_t n)
{
    size_t want;
    char *q;

    if (a->oom)
        return -1;
    if (a->len + n + 1 > a->cap) {
        want = a->cap ? a->cap : 1024;
        while (want < a->len + n + 1)
            want *= 2;
        q = realloc(a->text, want);
        if (!q) {
            a->oom = 1;
            return -1;
        }
        a->text = q;
        a->cap = want;
    }
    memcpy(a->text + a->len, p, n);
    a->len += n;
    a->text[a->len] = '\0';
    return 0;
}

void upsert_array_reset(upsert_array *a)
{
    a->len = 0;
    a->n = 0;
    a->oom = 0;
    a->finished = 0;
    if (a->text)
        a->text[0] = '\0';
}

int upsert_array_add(upsert_array *a, const char *value)
{
    const char *p, *run;

    if (a->finished) {
        a->oom = 1; /* a caller bug; make it visible rather than silent */
        return -1;
    }
    if (a->len == 0 && arr_put(a, "{", 1) != 0)
        return -1;
    if (a->n > 0 && arr_put(a, ",", 1) != 0)
        return -1;
    a->n++;
    if (!value)
        return arr_put(a, "NULL", 4);
    if (arr_put(a, "\"", 1) != 0)
        return -1;
    /* Copy runs between characters that need a backslash. */
    for (run = p = value; *p; p++) {
        if (*p != '"' && *p != '\\')
            continue;
        if (arr_put(a, run, (size_t)(p - run)) != 0 ||
            arr_put(a, "\\", 1) != 0)
            return -1;
        run = p;
    }
    if (arr_put(a, run, (size_t)(p - run)) != 0)
        return -1;
    return arr_put(a, "\"", 1);
}

const char *upsert_array_finish(upsert_array *a)
{
    if (a->finished)
        return a->oom ? NULL : a->text;
    if (a->len == 0 && arr_put(a, "{", 1) != 0)
        return NULL;
    if (arr_put(a, "}", 1) != 0)
        return NULL;
    a->finished = 1;
    return a->oom ? NULL : a->text;
}

void upsert_array_free(upsert_array *a)
{
    if (!a)
        return;
    free(a->text);
    memset(a, 0, sizeof(*a));
}

char *upsert_sql_emit(const char *insert_sql, const upsert_sql_spec *spec,
                      const char *outbox, int topic_param, char *errbuf,
                      size_t errbuf_size)
{
    sbuf b = {0};
    size_t i;
    char *s;

    if (!insert_sql || !spec || spec->n_key == 0 || topic_param < 1) {
        set_err(errbuf, errbuf_size, "nothing to emit from");
        return NULL;
    }
    /* RETURNING of INSERT ... ON CONFLICT DO UPDATE ... WHERE yields the
     * rows inserted and the rows updated, never those the IS DISTINCT
     * FROM condition skipped: exactly the rows that changed. */
    sb_puts(&b, "WITH w AS (");
    sb_puts(&b, insert_sql);
    sb_puts(&b, " RETURNING ");
    for (i = 0; i < spec->n_key; i++) {
        if (i)
            sb_puts(&b, ", ");
        sb_puts(&b, "t.");
        sb_ident(&b, spec->key[i]);
    }
    sb_puts(&b, ") INSERT INTO ");
    if (sb_relation(&b, outbox, "outbox table", errbuf, errbuf_size) != 0)
        goto fail;
    sb_printf(&b, " (topic, key) SELECT $%d::text, convert_to(", topic_param);
    if (spec->n_key == 1) {
        sb_puts(&b, "w.");
        sb_ident(&b, spec->key[0]);
        sb_puts(&b, "::text");
    } else {
        sb_puts(&b, "jsonb_build_array(");
        for (i = 0; i < spec->n_key; i++) {
            if (i)
                sb_puts(&b, ", ");
            sb_puts(&b, "w.");
            sb_ident(&b, spec->key[i]);
        }
        sb_puts(&b, ")::text");
    }
    sb_puts(&b, ", 'UTF8') FROM w");
    s = sb_take(&b);
    return s ? s : oom(errbuf, errbuf_size);

fail:
    free(b.s);
    return NULL;
}
