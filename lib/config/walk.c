/*
 * walk.c - the schema walker (schema.h): a YAML mapping checked against a
 * table of fields, each value read by its field's type into the struct
 * being filled, defaults filled in from the same table.
 */
#include "config/schema.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_env.h"

static void *field_at(void *base, size_t off)
{
    return (char *)base + off;
}

/* ------------------------------------------------------------------ */
/* Scalars                                                             */
/* ------------------------------------------------------------------ */

static int need_scalar(cfg_ctx *c, const cfg_value *v, const char *what)
{
    if (v->kind == CFG_SCALAR)
        return 0;
    return exactly_cfg_fail_at(c, v->pos, "%s must be %s, got %s",
                               exactly_cfg_subject(c), what,
                               exactly_cfg_kind_name(v));
}

static int read_str(cfg_ctx *c, const cfg_field *f, const cfg_value *v,
                    void *base)
{
    char **dst = field_at(base, f->off);

    if (need_scalar(c, v, "a string"))
        return -1;
    if ((f->flags & CFG_NONEMPTY) && v->scalar[0] == '\0')
        return exactly_cfg_fail_at(c, v->pos, "%s must not be empty",
                                   exactly_cfg_subject(c));
    if (f->max > 0 && strlen(v->scalar) > (size_t)f->max)
        return exactly_cfg_fail_at(c, v->pos,
                                   "%s must be at most %lld bytes long",
                                   exactly_cfg_subject(c), (long long)f->max);
    free(*dst);
    *dst = strdup(v->scalar);
    return *dst ? 0 : exactly_cfg_fail_nomem(c);
}

static int read_int(cfg_ctx *c, const cfg_field *f, const cfg_value *v,
                    void *base)
{
    int64_t n;

    if (need_scalar(c, v, "an integer"))
        return -1;
    if (exactly_cfg_parse_int64(v->scalar, &n))
        return exactly_cfg_fail_at(
            c, v->pos, "%s must be an integer, got '%s'",
            exactly_cfg_subject(c), exactly_cfg_shown(v));
    if (n < f->min || n > f->max)
        return exactly_cfg_fail_at(
            c, v->pos, "%s must be between %lld and %lld, got '%s'",
            exactly_cfg_subject(c), (long long)f->min, (long long)f->max,
            exactly_cfg_shown(v));
    if (f->type == CFG_F_SIZE)
        *(size_t *)field_at(base, f->off) = (size_t)n;
    else if (f->type == CFG_F_INT64)
        *(int64_t *)field_at(base, f->off) = n;
    else
        *(int *)field_at(base, f->off) = (int)n;
    return 0;
}

static int read_bool(cfg_ctx *c, const cfg_field *f, const cfg_value *v,
                     void *base)
{
    if (need_scalar(c, v, "true or false"))
        return -1;
    if (exactly_cfg_parse_bool(v->scalar, field_at(base, f->off)))
        return exactly_cfg_fail_at(
            c, v->pos, "%s must be true or false, got '%s'",
            exactly_cfg_subject(c), exactly_cfg_shown(v));
    return 0;
}

/* "a, b, c" from a NULL-terminated name table, cut to fit out. */
static void join_names(const cfg_enum_name *names, char *out, size_t size)
{
    size_t i, n = 0;

    out[0] = '\0';
    for (i = 0; names[i].name && n < size; i++)
        n += (size_t)snprintf(out + n, size - n, "%s%s", i ? ", " : "",
                              names[i].name);
}

static int read_enum(cfg_ctx *c, const cfg_field *f, const cfg_value *v,
                     void *base)
{
    char valid[200];
    size_t i;

    if (need_scalar(c, v, "a string"))
        return -1;
    for (i = 0; f->names[i].name; i++) {
        if (strcmp(v->scalar, f->names[i].name) == 0) {
            *(int *)field_at(base, f->off) = f->names[i].value;
            return 0;
        }
    }
    join_names(f->names, valid, sizeof(valid));
    return exactly_cfg_fail_at(c, v->pos, "%s must be one of %s, got '%s'",
                               exactly_cfg_subject(c), valid,
                               exactly_cfg_shown(v));
}

/* "7d", "12h", "30m", "45s" or plain seconds; positive, no overflow. */
static int parse_duration(const char *s, int64_t *out)
{
    static const struct {
        char suffix;
        int64_t seconds;
    } units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
    char digits[32];
    size_t len = strlen(s), i;
    int64_t n, unit = 1;

    if (len == 0 || len >= sizeof(digits))
        return -1;
    memcpy(digits, s, len + 1);
    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (digits[len - 1] == units[i].suffix) {
            unit = units[i].seconds;
            digits[--len] = '\0';
            break;
        }
    }
    if (digits[0] == '-' || exactly_cfg_parse_int64(digits, &n) || n <= 0 ||
        n > INT64_MAX / unit)
        return -1;
    *out = n * unit;
    return 0;
}

static int read_duration(cfg_ctx *c, const cfg_field *f, const cfg_value *v,
                         void *base)
{
    if (need_scalar(c, v, "a duration"))
        return -1;
    if (parse_duration(v->scalar, field_at(base, f->off)))
        return exactly_cfg_fail_at(c, v->pos,
                                   "%s must be a positive duration such as "
                                   "7d, 12h, 30m or 3600s, got '%s'",
                                   exactly_cfg_subject(c),
                                   exactly_cfg_shown(v));
    return 0;
}

/* ------------------------------------------------------------------ */
/* Collections                                                         */
/* ------------------------------------------------------------------ */

static void free_strings(char **items, size_t n)
{
    size_t i;

    for (i = 0; items && i < n; i++)
        free(items[i]);
    free(items);
}

/* One item of a list: a non-empty scalar where the field says so. */
static int check_item(cfg_ctx *c, const cfg_field *f, const cfg_value *item,
                      size_t i)
{
    size_t saved;
    int rc = 0;

    if (exactly_cfg_voice(c)->by_key) {
        if (item->kind != CFG_SCALAR)
            return exactly_cfg_fail_at(
                c, item->pos, "%s must be a list of strings, item %zu is %s",
                exactly_cfg_subject(c), i + 1, exactly_cfg_kind_name(item));
        if ((f->flags & CFG_NONEMPTY) && item->scalar[0] == '\0')
            return exactly_cfg_fail_at(c, item->pos,
                                       "%s must not hold empty strings, item "
                                       "%zu is empty",
                                       exactly_cfg_subject(c), i + 1);
        return 0;
    }
    saved = exactly_cfg_path_push_index(&c->path, i);
    if (need_scalar(c, item, "a string"))
        rc = -1;
    else if ((f->flags & CFG_NONEMPTY) && item->scalar[0] == '\0')
        rc = exactly_cfg_fail_at(c, item->pos, "%s must not be empty",
                                 exactly_cfg_subject(c));
    exactly_cfg_path_pop(&c->path, saved);
    return rc;
}

static int read_strlist(cfg_ctx *c, const cfg_field *f, const cfg_value *v,
                        void *base)
{
    char ***dst = field_at(base, f->off);
    size_t *dst_n = field_at(base, f->off_n);
    const cfg_value *items = v->kind == CFG_SEQ ? v->items : v;
    size_t n = v->kind == CFG_SEQ ? v->n_items : 1, i;

    if (v->kind == CFG_MAP)
        return exactly_cfg_fail_at(c, v->pos,
                                   "%s must be a list of strings, got a "
                                   "mapping",
                                   exactly_cfg_subject(c));
    if (n == 0 || exactly_cfg_is_empty(v)) {
        if (f->flags & CFG_NONEMPTY)
            return exactly_cfg_fail_at(c, v->pos, "%s must not be empty",
                                       exactly_cfg_subject(c));
        return 0;
    }
    free_strings(*dst, *dst_n);
    *dst_n = 0;
    if (!(*dst = calloc(n, sizeof(char *))))
        return exactly_cfg_fail_nomem(c);
    for (i = 0; i < n; i++) {
        if (check_item(c, f, &items[i], i))
            return -1;
        if (!((*dst)[i] = strdup(items[i].scalar)))
            return exactly_cfg_fail_nomem(c);
        *dst_n = i + 1;
    }
    return 0;
}

/* A mapping of scalars to scalars, into two arrays. */
static int read_strmap(cfg_ctx *c, const cfg_field *f, const cfg_value *v,
                       void *base)
{
    char ***keys = field_at(base, f->off), ***values = field_at(base, f->off_v);
    size_t *dst_n = field_at(base, f->off_n);
    size_t i;

    if (exactly_cfg_is_empty(v))
        return 0;
    if (v->kind != CFG_MAP)
        return exactly_cfg_fail_at(c, v->pos, "%s must be a mapping, got %s",
                                   exactly_cfg_subject(c),
                                   exactly_cfg_kind_name(v));
    if (v->n_items == 0)
        return 0;
    if (!(*keys = calloc(v->n_items, sizeof(char *))) ||
        !(*values = calloc(v->n_items, sizeof(char *))))
        return exactly_cfg_fail_nomem(c);
    for (i = 0; i < v->n_items; i++) {
        const cfg_value *item = &v->items[i];

        if (item->kind != CFG_SCALAR)
            return exactly_cfg_fail_at(
                c, item->pos, "%s must map strings to strings, '%s' holds %s",
                exactly_cfg_subject(c), v->keys[i],
                exactly_cfg_kind_name(item));
        *dst_n = i + 1;
        if (!((*keys)[i] = strdup(v->keys[i])) ||
            !((*values)[i] = strdup(item->scalar)))
            return exactly_cfg_fail_nomem(c);
    }
    return 0;
}

static void free_strmap(char **keys, char **values, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (keys)
            free(keys[i]);
        if (values)
            free(values[i]);
    }
    free(keys);
    free(values);
}

static void free_props(cfg_prop *props, size_t n)
{
    size_t i;

    for (i = 0; props && i < n; i++) {
        free(props[i].name);
        free(props[i].value);
    }
    free(props);
}

static int read_props(cfg_ctx *c, const cfg_field *f, const cfg_value *v,
                      void *base)
{
    cfg_prop **dst = field_at(base, f->off);
    size_t *dst_n = field_at(base, f->off_n);
    size_t i;

    if (exactly_cfg_is_empty(v))
        return 0;
    if (v->kind != CFG_MAP)
        return exactly_cfg_fail_at(c, v->pos,
                                   "%s must be a mapping of librdkafka "
                                   "properties, got %s",
                                   exactly_cfg_subject(c),
                                   exactly_cfg_kind_name(v));
    if (v->n_items == 0)
        return 0;
    if (!(*dst = calloc(v->n_items, sizeof(cfg_prop))))
        return exactly_cfg_fail_nomem(c);
    for (i = 0; i < v->n_items; i++) {
        cfg_prop *p = &(*dst)[i];
        size_t saved = exactly_cfg_path_push(&c->path, v->keys[i]);

        if (v->keys[i][0] == '\0')
            return exactly_cfg_fail_at(
                c, v->key_pos[i], "empty property name in '%s'", c->path.buf);
        /* librdkafka takes only strings; nested YAML here is a typo for a
         * dotted name. */
        if (need_scalar(c, &v->items[i], "a scalar"))
            return -1;
        exactly_cfg_path_pop(&c->path, saved);
        p->pos = v->key_pos[i];
        p->name = strdup(v->keys[i]);
        p->value = strdup(v->items[i].scalar);
        *dst_n = i + 1;
        if (!p->name || !p->value)
            return exactly_cfg_fail_nomem(c);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Sections                                                            */
/* ------------------------------------------------------------------ */

static int read_section(cfg_ctx *c, const cfg_field *f, cfg_value *v,
                        cfg_pos key_pos, void *base)
{
    cfg_value empty = {.kind = CFG_MAP, .pos = v->pos};

    if (exactly_cfg_is_empty(v))
        return exactly_cfg_walk(c, &empty, key_pos, f->sub, base);
    if (v->kind != CFG_MAP)
        return exactly_cfg_fail_at(c, v->pos, "%s must be a mapping, got %s",
                                   exactly_cfg_subject(c),
                                   exactly_cfg_kind_name(v));
    return exactly_cfg_walk(c, v, key_pos, f->sub, base);
}

static int read_field(cfg_ctx *c, const cfg_field *f, cfg_value *v,
                      cfg_pos key_pos, void *base)
{
    switch (f->type) {
    case CFG_F_STR:
        return read_str(c, f, v, base);
    case CFG_F_INT:
    case CFG_F_SIZE:
    case CFG_F_INT64:
        return read_int(c, f, v, base);
    case CFG_F_BOOL:
        return read_bool(c, f, v, base);
    case CFG_F_ENUM:
        return read_enum(c, f, v, base);
    case CFG_F_DURATION:
        return read_duration(c, f, v, base);
    case CFG_F_STRLIST:
        return read_strlist(c, f, v, base);
    case CFG_F_STRMAP:
        return read_strmap(c, f, v, base);
    case CFG_F_PROPS:
        return read_props(c, f, v, base);
    case CFG_F_SECTION:
        return read_section(c, f, v, key_pos, base);
    case CFG_F_CUSTOM:
        return f->read(c, f, v, key_pos, base);
    }
    return exactly_cfg_fail_at(c, v->pos, "internal error: no reader for '%s'",
                               c->path.buf);
}

static int unknown_key(cfg_ctx *c, cfg_pos pos, const cfg_section *s)
{
    char valid[400] = "";
    size_t i, n = 0;

    if (s->n_fields == 0)
        return exactly_cfg_fail_at(
            c, pos, "unknown %s '%s' (%s)", exactly_cfg_voice(c)->noun,
            exactly_cfg_name(c), exactly_cfg_voice(c)->no_fields);
    for (i = 0; i < s->n_fields && n < sizeof(valid); i++)
        n += (size_t)snprintf(valid + n, sizeof(valid) - n, "%s%s",
                              i ? ", " : "", s->fields[i].key);
    return exactly_cfg_fail_at(c, pos, "unknown %s '%s' (valid: %s)",
                               exactly_cfg_voice(c)->noun, exactly_cfg_name(c),
                               valid);
}

/* The default of f, read as if it were written at at. */
static int apply_default(cfg_ctx *c, const cfg_field *f, cfg_pos at,
                         void *base)
{
    cfg_value v = {.kind = CFG_SCALAR, .pos = at, .scalar = (char *)f->def};
    size_t saved;
    int rc;

    if (f->type == CFG_F_SECTION)
        return exactly_cfg_defaults(c, at, f->sub, base);
    if (!f->def)
        return 0;
    saved = exactly_cfg_path_push(&c->path, f->key);
    c->key = f->key;
    rc = read_field(c, f, &v, at, base);
    exactly_cfg_path_pop(&c->path, saved);
    return rc;
}

int exactly_cfg_defaults(cfg_ctx *c, cfg_pos at, const cfg_section *s,
                         void *base)
{
    size_t j;

    for (j = 0; j < s->n_fields; j++)
        if (apply_default(c, &s->fields[j], at, base))
            return -1;
    return 0;
}

/* The field of s called key, or NULL. */
static const cfg_field *find_field(const cfg_section *s, const char *key)
{
    size_t j;

    for (j = 0; j < s->n_fields; j++)
        if (strcmp(s->fields[j].key, key) == 0)
            return &s->fields[j];
    return NULL;
}

/* Reads the keys of map; seen[j] is set for each field given. */
static int read_keys(cfg_ctx *c, cfg_value *map, const cfg_section *s,
                     void *base, unsigned char *seen)
{
    size_t i;

    for (i = 0; i < map->n_items; i++) {
        size_t saved = exactly_cfg_path_push(&c->path, map->keys[i]);
        const cfg_field *f = find_field(s, map->keys[i]);

        c->key = map->keys[i];
        if (!f)
            return unknown_key(c, map->key_pos[i], s);
        /* The tree refuses duplicate keys; a tree built by hand may not. */
        if (seen[f - s->fields])
            return exactly_cfg_fail_at(c, map->key_pos[i], "%s is given twice",
                                       exactly_cfg_subject(c));
        seen[f - s->fields] = 1;
        if (read_field(c, f, &map->items[i], map->key_pos[i], base))
            return -1;
        exactly_cfg_path_pop(&c->path, saved);
    }
    return 0;
}

int exactly_cfg_walk(cfg_ctx *c, cfg_value *map, cfg_pos at,
                     const cfg_section *s, void *base)
{
    unsigned char local[64] = {0}, *seen = local;
    size_t j;
    int rc = -1;

    if (s->n_fields > sizeof(local) &&
        !(seen = calloc(s->n_fields, sizeof(*seen))))
        return exactly_cfg_fail_nomem(c);
    if (read_keys(c, map, s, base, seen))
        goto cleanup;
    for (j = 0; j < s->n_fields; j++) {
        if (seen[j])
            continue;
        if (s->fields[j].flags & CFG_REQUIRED) {
            exactly_cfg_fail_missing(c, at, s->fields[j].key);
            goto cleanup;
        }
        if (apply_default(c, &s->fields[j], at, base))
            goto cleanup;
    }
    rc = s->check ? s->check(c, map, at, base) : 0;

cleanup:
    if (seen != local)
        free(seen);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Freeing                                                             */
/* ------------------------------------------------------------------ */

static void release_field(const cfg_field *f, void *base)
{
    switch (f->type) {
    case CFG_F_STR:
        free(*(char **)field_at(base, f->off));
        *(char **)field_at(base, f->off) = NULL;
        break;
    case CFG_F_STRLIST:
        free_strings(*(char ***)field_at(base, f->off),
                     *(size_t *)field_at(base, f->off_n));
        *(char ***)field_at(base, f->off) = NULL;
        *(size_t *)field_at(base, f->off_n) = 0;
        break;
    case CFG_F_STRMAP:
        free_strmap(*(char ***)field_at(base, f->off),
                    *(char ***)field_at(base, f->off_v),
                    *(size_t *)field_at(base, f->off_n));
        *(char ***)field_at(base, f->off) = NULL;
        *(char ***)field_at(base, f->off_v) = NULL;
        *(size_t *)field_at(base, f->off_n) = 0;
        break;
    case CFG_F_PROPS:
        free_props(*(cfg_prop **)field_at(base, f->off),
                   *(size_t *)field_at(base, f->off_n));
        *(cfg_prop **)field_at(base, f->off) = NULL;
        *(size_t *)field_at(base, f->off_n) = 0;
        break;
    case CFG_F_SECTION:
        exactly_cfg_release(f->sub, base);
        break;
    case CFG_F_CUSTOM:
        if (f->release)
            f->release(f, base);
        break;
    default:
        break;
    }
}

void exactly_cfg_release(const cfg_section *s, void *base)
{
    size_t j;

    if (!base)
        return;
    for (j = 0; j < s->n_fields; j++)
        release_field(&s->fields[j], base);
}
