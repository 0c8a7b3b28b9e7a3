/*
 * options.c - a handler's `options:` mapping checked against the options
 * the handler declares, and the typed getters plugins read them with.
 *
 * Everything is copied out of the YAML tree and the declarations, so the
 * result outlives both (a plugin's declarations vanish with dlclose()).
 */
#include "options.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_env.h"
#include "log.h"

typedef struct opt_value {
    char *name;
    exactly_option_type type;
    int set;       /* given in YAML or filled from the default */
    char *str;     /* STRING */
    int64_t num;   /* INT; BOOL as 0/1 */
    char **items;  /* LIST items, MAP keys */
    char **values; /* MAP values */
    size_t n;      /* LIST / MAP length */
} opt_value;

struct exactly_options {
    char *handler;
    opt_value *v;
    size_t n;
};

typedef struct opt_ctx {
    const char *file;
    const char *handler;
    char *err;
    size_t err_size;
} opt_ctx;

static const char *type_name(exactly_option_type t)
{
    switch (t) {
    case EXACTLY_OPT_STRING:
        return "string";
    case EXACTLY_OPT_INT:
        return "integer";
    case EXACTLY_OPT_BOOL:
        return "bool";
    case EXACTLY_OPT_LIST:
        return "list";
    case EXACTLY_OPT_MAP:
        return "map";
    }
    return "unknown type";
}

static const char *kind_name(const cfg_value *v)
{
    switch (v->kind) {
    case CFG_MAP:
        return "a mapping";
    case CFG_SEQ:
        return "a list";
    case CFG_SCALAR:
        return "a scalar";
    }
    return "nothing";
}

/* Secrets from ${VAR} stay out of messages: echo what the file says. */
static const char *shown(const cfg_value *v)
{
    return v->raw ? v->raw : v->scalar;
}

/* "FILE:LINE:COLUMN: handler 'NAME': message". Returns EXACTLY_ECONFIG. */
static exactly_err fail_at(opt_ctx *c, cfg_pos pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static exactly_err fail_at(opt_ctx *c, cfg_pos pos, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    int n;

    if (c->err_size == 0)
        return EXACTLY_ECONFIG;
    n = snprintf(msg, sizeof(msg), "%s:%d:%d: handler '%s': ", c->file,
                 pos.line, pos.column, c->handler);
    if (n >= 0 && (size_t)n < sizeof(msg)) {
        va_start(ap, fmt);
        vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
        va_end(ap);
    }
    /* Option names and values from the file may hold control bytes. */
    exactly_cfg_escape(c->err, c->err_size, msg);
    return EXACTLY_ECONFIG;
}

/* A bad declaration is the plugin's bug, not the user's: no position. */
static exactly_err fail_decl(opt_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static exactly_err fail_decl(opt_ctx *c, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (c->err_size == 0)
        return EXACTLY_EPLUGIN;
    n = snprintf(c->err, c->err_size, "handler '%s' ", c->handler);
    if (n >= 0 && (size_t)n < c->err_size) {
        va_start(ap, fmt);
        vsnprintf(c->err + n, c->err_size - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return EXACTLY_EPLUGIN;
}

static exactly_err fail_nomem(opt_ctx *c)
{
    if (c->err_size > 0)
        snprintf(c->err, c->err_size, "handler '%s': out of memory while "
                                      "reading its options",
                 c->handler);
    return EXACTLY_ENOMEM;
}

static exactly_err check_decls(opt_ctx *c, const exactly_option_decl *decls,
                               size_t n)
{
    size_t i, j;
    int64_t num;
    int b;

    for (i = 0; i < n; i++) {
        const exactly_option_decl *d = &decls[i];

        if (!d->name || d->name[0] == '\0')
            return fail_decl(c, "declares an option with no name (#%zu)", i);
        for (j = 0; j < i; j++)
            if (strcmp(decls[j].name, d->name) == 0)
                return fail_decl(c, "declares option '%s' twice", d->name);
        if (d->type < EXACTLY_OPT_STRING || d->type > EXACTLY_OPT_MAP)
            return fail_decl(c, "declares option '%s' with unknown type %d",
                             d->name, (int)d->type);
        if (!d->default_value)
            continue;
        if (d->type == EXACTLY_OPT_LIST || d->type == EXACTLY_OPT_MAP)
            return fail_decl(c, "declares a default for %s option '%s', "
                                "which cannot have one",
                             type_name(d->type), d->name);
        if (d->type == EXACTLY_OPT_INT &&
            exactly_cfg_parse_int64(d->default_value, &num))
            return fail_decl(c, "declares option '%s' with default '%s', "
                                "which is not an integer",
                             d->name, d->default_value);
        if (d->type == EXACTLY_OPT_BOOL &&
            exactly_cfg_parse_bool(d->default_value, &b))
            return fail_decl(c, "declares option '%s' with default '%s', "
                                "which is not true or false",
                             d->name, d->default_value);
    }
    return EXACTLY_OK;
}

static void value_clear(opt_value *v)
{
    size_t i;

    for (i = 0; i < v->n; i++) {
        if (v->items)
            free(v->items[i]);
        if (v->values)
            free(v->values[i]);
    }
    free(v->items);
    free(v->values);
    free(v->str);
    v->items = v->values = NULL;
    v->str = NULL;
    v->n = 0;
}

/* Fills v from a scalar text: the YAML value or the declared default. */
static int from_text(opt_value *v, const char *text)
{
    int b = 0;

    switch (v->type) {
    case EXACTLY_OPT_STRING:
        return (v->str = strdup(text)) ? 0 : -1;
    case EXACTLY_OPT_INT:
        return exactly_cfg_parse_int64(text, &v->num);
    case EXACTLY_OPT_BOOL:
        if (exactly_cfg_parse_bool(text, &b))
            return -1;
        v->num = b;
        return 0;
    default:
        return -1;
    }
}

static exactly_err read_scalar(opt_ctx *c, opt_value *v, const cfg_value *y)
{
    static const char *const want[] = {
        [EXACTLY_OPT_STRING] = "a string",
        [EXACTLY_OPT_INT] = "an integer",
        [EXACTLY_OPT_BOOL] = "true or false",
    };

    if (y->kind != CFG_SCALAR)
        return fail_at(c, y->pos, "option '%s' must be %s, got %s", v->name,
                       want[v->type], kind_name(y));
    if (from_text(v, y->scalar) == 0)
        return EXACTLY_OK;
    if (v->type == EXACTLY_OPT_STRING)
        return fail_nomem(c);
    return fail_at(c, y->pos, "option '%s' must be %s, got '%s'", v->name,
                   want[v->type], shown(y));
}

/* A sequence of scalars; one scalar is a one-item list, an empty one
 * (`key:` with no value) an empty list. */
static exactly_err read_list(opt_ctx *c, opt_value *v, const cfg_value *y)
{
    const cfg_value *items = y->kind == CFG_SEQ ? y->items : y;
    size_t n = y->kind == CFG_SEQ ? y->n_items : 1, i;

    if (y->kind == CFG_MAP)
        return fail_at(c, y->pos, "option '%s' must be a list of strings, got "
                                  "a mapping",
                       v->name);
    if (y->kind == CFG_SCALAR && y->scalar[0] == '\0')
        return EXACTLY_OK;
    if (n == 0)
        return EXACTLY_OK;
    if (!(v->items = calloc(n, sizeof(char *))))
        return fail_nomem(c);
    for (i = 0; i < n; i++) {
        if (items[i].kind != CFG_SCALAR)
            return fail_at(c, items[i].pos, "option '%s' must be a list of "
                                            "strings, item %zu is %s",
                           v->name, i + 1, kind_name(&items[i]));
        if (!(v->items[i] = strdup(items[i].scalar)))
            return fail_nomem(c);
        v->n = i + 1;
    }
    return EXACTLY_OK;
}

static exactly_err read_map(opt_ctx *c, opt_value *v, const cfg_value *y)
{
    size_t i;

    if (y->kind == CFG_SCALAR && y->scalar[0] == '\0')
        return EXACTLY_OK;
    if (y->kind != CFG_MAP)
        return fail_at(c, y->pos, "option '%s' must be a mapping, got %s",
                       v->name, kind_name(y));
    if (y->n_items == 0)
        return EXACTLY_OK;
    if (!(v->items = calloc(y->n_items, sizeof(char *))) ||
        !(v->values = calloc(y->n_items, sizeof(char *))))
        return fail_nomem(c);
    for (i = 0; i < y->n_items; i++) {
        const cfg_value *item = &y->items[i];

        if (item->kind != CFG_SCALAR)
            return fail_at(c, item->pos, "option '%s' must map strings to "
                                         "strings, '%s' holds %s",
                           v->name, y->keys[i], kind_name(item));
        v->n = i + 1;
        if (!(v->items[i] = strdup(y->keys[i])) ||
            !(v->values[i] = strdup(item->scalar)))
            return fail_nomem(c);
    }
    return EXACTLY_OK;
}

static exactly_err read_value(opt_ctx *c, opt_value *v, const cfg_value *y)
{
    switch (v->type) {
    case EXACTLY_OPT_LIST:
        return read_list(c, v, y);
    case EXACTLY_OPT_MAP:
        return read_map(c, v, y);
    default:
        return read_scalar(c, v, y);
    }
}

static exactly_err unknown_option(opt_ctx *c, cfg_pos pos, const char *key,
                                  const exactly_option_decl *decls, size_t n)
{
    char valid[400] = "";
    size_t i, len = 0;

    if (n == 0)
        return fail_at(c, pos, "unknown option '%s' (this handler takes no "
                               "options)",
                       key);
    for (i = 0; i < n && len < sizeof(valid); i++)
        len += (size_t)snprintf(valid + len, sizeof(valid) - len, "%s%s",
                                i ? ", " : "", decls[i].name);
    return fail_at(c, pos, "unknown option '%s' (valid: %s)", key, valid);
}

/* Every option the YAML did not give: its default, an empty list or map,
 * or an error when it is required. */
static exactly_err fill_defaults(opt_ctx *c, exactly_options *o,
                                 const exactly_option_decl *decls,
                                 cfg_pos at)
{
    size_t i;

    for (i = 0; i < o->n; i++) {
        opt_value *v = &o->v[i];

        if (v->set)
            continue;
        v->set = 1;
        if (v->type == EXACTLY_OPT_LIST || v->type == EXACTLY_OPT_MAP)
            continue;
        if (!decls[i].default_value)
            return fail_at(c, at, "missing required option '%s'", v->name);
        /* check_decls() proved the default parses; only strdup can fail. */
        if (from_text(v, decls[i].default_value))
            return fail_nomem(c);
    }
    return EXACTLY_OK;
}

static exactly_options *options_new(const exactly_option_decl *decls,
                                    size_t n, const char *handler)
{
    exactly_options *o = calloc(1, sizeof(*o));
    size_t i;

    if (!o)
        return NULL;
    if (!(o->handler = strdup(handler)))
        goto fail;
    if (n > 0 && !(o->v = calloc(n, sizeof(opt_value))))
        goto fail;
    o->n = n;
    for (i = 0; i < n; i++) {
        o->v[i].type = decls[i].type;
        if (!(o->v[i].name = strdup(decls[i].name)))
            goto fail;
    }
    return o;

fail:
    exactly_options_free(o);
    return NULL;
}

exactly_err exactly_options_build(const char *file, const char *handler_name,
                                  const cfg_value *yaml_options,
                                  const exactly_option_decl *decls,
                                  size_t n_decls, exactly_options **out,
                                  char *errbuf, size_t errbuf_size)
{
    opt_ctx c = {file ? file : "?", handler_name ? handler_name : "?", errbuf,
                 errbuf_size};
    exactly_options *o = NULL;
    cfg_pos at = yaml_options ? yaml_options->pos : (cfg_pos){1, 1};
    exactly_err rc;
    size_t i, j;

    if (errbuf_size > 0)
        errbuf[0] = '\0';
    if (!out || (n_decls > 0 && !decls))
        return EXACTLY_EINVAL;
    *out = NULL;
    if ((rc = check_decls(&c, decls, n_decls)) != EXACTLY_OK)
        return rc;
    /* kind 0 is a zeroed cfg_value: no options were written. */
    if (yaml_options && yaml_options->kind != 0 &&
        yaml_options->kind != CFG_MAP)
        return fail_at(&c, at, "options must be a mapping, got %s",
                       kind_name(yaml_options));
    if (!(o = options_new(decls, n_decls, c.handler)))
        return fail_nomem(&c);

    for (i = 0; yaml_options && i < yaml_options->n_items; i++) {
        const char *key = yaml_options->keys[i];
        opt_value *v = NULL;

        for (j = 0; j < o->n && !v; j++)
            if (strcmp(o->v[j].name, key) == 0)
                v = &o->v[j];
        if (!v) {
            rc = unknown_option(&c, yaml_options->key_pos[i], key, decls,
                                n_decls);
            goto fail;
        }
        if (v->set) {
            rc = fail_at(&c, yaml_options->key_pos[i],
                         "option '%s' is given twice", key);
            goto fail;
        }
        v->set = 1;
        if ((rc = read_value(&c, v, &yaml_options->items[i])) != EXACTLY_OK)
            goto fail;
    }
    if ((rc = fill_defaults(&c, o, decls, at)) != EXACTLY_OK)
        goto fail;
    *out = o;
    return EXACTLY_OK;

fail:
    exactly_options_free(o);
    return rc;
}

void exactly_options_free(exactly_options *opts)
{
    size_t i;

    if (!opts)
        return;
    for (i = 0; i < opts->n; i++) {
        value_clear(&opts->v[i]);
        free(opts->v[i].name);
    }
    free(opts->v);
    free(opts->handler);
    free(opts);
}

/* The option called name if it is declared with type want; otherwise the
 * plugin asked for something it never declared, which is logged. */
static const opt_value *find(const exactly_options *opts, const char *name,
                             exactly_option_type want)
{
    size_t i;

    if (!opts || !name) {
        exactly_log(EXACTLY_LOG_ERROR, "options",
                    "option getter called without options or a name");
        return NULL;
    }
    for (i = 0; i < opts->n; i++) {
        const opt_value *v = &opts->v[i];

        if (strcmp(v->name, name) != 0)
            continue;
        if (v->type == want)
            return v;
        exactly_log(EXACTLY_LOG_ERROR, "options",
                    "handler read an option with a getter of another type",
                    LOG_STR("handler", opts->handler), LOG_STR("option", name),
                    LOG_STR("getter", type_name(want)),
                    LOG_STR("declared", type_name(v->type)));
        return NULL;
    }
    exactly_log(EXACTLY_LOG_ERROR, "options",
                "handler read an option it does not declare",
                LOG_STR("handler", opts->handler), LOG_STR("option", name));
    return NULL;
}

const char *exactly_options_string(const exactly_options *opts,
                                   const char *name)
{
    const opt_value *v = find(opts, name, EXACTLY_OPT_STRING);

    return v ? v->str : NULL;
}

int64_t exactly_options_int(const exactly_options *opts, const char *name)
{
    const opt_value *v = find(opts, name, EXACTLY_OPT_INT);

    return v ? v->num : 0;
}

int exactly_options_bool(const exactly_options *opts, const char *name)
{
    const opt_value *v = find(opts, name, EXACTLY_OPT_BOOL);

    return v ? (int)v->num : 0;
}

size_t exactly_options_list(const exactly_options *opts, const char *name,
                            const char *const **items)
{
    const opt_value *v = find(opts, name, EXACTLY_OPT_LIST);

    if (items)
        *items = v ? (const char *const *)v->items : NULL;
    return v ? v->n : 0;
}

size_t exactly_options_map(const exactly_options *opts, const char *name,
                           const char *const **keys,
                           const char *const **values)
{
    const opt_value *v = find(opts, name, EXACTLY_OPT_MAP);

    if (keys)
        *keys = v ? (const char *const *)v->items : NULL;
    if (values)
        *values = v ? (const char *const *)v->values : NULL;
    return v ? v->n : 0;
}
