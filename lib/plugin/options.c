/*
 * options.c - a handler's `options:` mapping checked against the options
 * the handler declares, and the typed getters plugins read them with.
 *
 * The declarations become a field table of the configuration's schema
 * walker (config/schema.h) when the handler is loaded, so options are
 * typed, defaulted and refused exactly as the configuration's own keys
 * are; only the words differ ("option 'x'" for "'pipelines.p.x'", and the
 * handler named in each message).
 *
 * Everything is copied out of the YAML tree and the declarations, so the
 * result outlives both (a plugin's declarations vanish with dlclose()).
 */
#include "plugin/options.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_env.h"
#include "config/reference.h"
#include "config/schema.h"
#include "log.h"

typedef struct opt_value {
    char *name;
    exactly_option_type type;
    char *str;     /* STRING */
    int64_t num;   /* INT */
    int on;        /* BOOL */
    char **items;  /* LIST items, MAP keys */
    char **values; /* MAP values */
    size_t n;      /* LIST / MAP length */
} opt_value;

struct exactly_options {
    char *handler;
    opt_value *v;
    size_t n;
};

/* How messages about a handler's options speak. */
static const cfg_voice options_voice = {
    .noun = "option",
    .subject = "option '%s'",
    .who = "handler '%s': ",
    .no_fields = "this handler takes no options",
    .nomem = "out of memory while reading its options",
    .by_key = 1,
};

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

/* A bad declaration is the plugin's bug, not the user's: no position. */
static exactly_err fail_decl(cfg_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static exactly_err fail_decl(cfg_ctx *c, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (c->err_size == 0)
        return EXACTLY_EPLUGIN;
    n = snprintf(c->err, c->err_size, "handler '%s' ", c->who);
    if (n >= 0 && (size_t)n < c->err_size) {
        va_start(ap, fmt);
        vsnprintf(c->err + n, c->err_size - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return EXACTLY_EPLUGIN;
}

static exactly_err check_decls(cfg_ctx *c, const exactly_option_decl *decls,
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

/*
 * The walker's field for declaration d, filling element i of an opt_value
 * array (the walk's base). An option without a default is required, except
 * a list or a map, which is then empty.
 */
static cfg_field decl_field(const exactly_option_decl *d, size_t i)
{
    static const cfg_field_type types[] = {
        [EXACTLY_OPT_STRING] = CFG_F_STR, [EXACTLY_OPT_INT] = CFG_F_INT64,
        [EXACTLY_OPT_BOOL] = CFG_F_BOOL,  [EXACTLY_OPT_LIST] = CFG_F_STRLIST,
        [EXACTLY_OPT_MAP] = CFG_F_STRMAP,
    };
    size_t at = i * sizeof(opt_value);
    cfg_field f = {.key = d->name,
                   .type = types[d->type],
                   .def = d->default_value,
                   .doc = d->description};

    switch (d->type) {
    case EXACTLY_OPT_STRING:
        f.off = at + offsetof(opt_value, str);
        break;
    case EXACTLY_OPT_INT:
        f.off = at + offsetof(opt_value, num);
        f.min = INT64_MIN;
        f.max = INT64_MAX;
        break;
    case EXACTLY_OPT_BOOL:
        f.off = at + offsetof(opt_value, on);
        break;
    case EXACTLY_OPT_LIST:
    case EXACTLY_OPT_MAP:
        f.off = at + offsetof(opt_value, items);
        f.off_v = at + offsetof(opt_value, values);
        f.off_n = at + offsetof(opt_value, n);
        f.def_doc = "empty";
        break;
    }
    if (!d->default_value && d->type != EXACTLY_OPT_LIST &&
        d->type != EXACTLY_OPT_MAP)
        f.flags = CFG_REQUIRED;
    return f;
}

/* The field table of decls, which check_decls() accepted, in a new array
 * the caller frees (NULL when n is 0 or out of memory). */
static cfg_field *decl_fields(const exactly_option_decl *decls, size_t n)
{
    cfg_field *fields = n ? calloc(n, sizeof(*fields)) : NULL;
    size_t i;

    for (i = 0; fields && i < n; i++)
        fields[i] = decl_field(&decls[i], i);
    return fields;
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

static exactly_options *options_new(const exactly_option_decl *decls, size_t n,
                                    const char *handler)
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
    cfg_ctx c = {.file = file ? file : "?",
                 .who = handler_name ? handler_name : "?",
                 .voice = &options_voice,
                 .err = errbuf,
                 .err_size = errbuf_size};
    cfg_pos at = yaml_options ? yaml_options->pos : (cfg_pos){1, 1};
    cfg_value none = {.kind = CFG_MAP, .pos = at};
    cfg_section s = {0};
    cfg_field *fields = NULL;
    exactly_options *o = NULL;
    exactly_err rc;

    if (errbuf_size > 0)
        errbuf[0] = '\0';
    if (!out || (n_decls > 0 && !decls))
        return EXACTLY_EINVAL;
    *out = NULL;
    if ((rc = check_decls(&c, decls, n_decls)) != EXACTLY_OK)
        return rc;
    /* kind 0 is a zeroed cfg_value: no options were written. */
    if (yaml_options && yaml_options->kind != 0 &&
        yaml_options->kind != CFG_MAP) {
        exactly_cfg_fail_at(&c, at, "options must be a mapping, got %s",
                            exactly_cfg_kind_name(yaml_options));
        return c.rc;
    }
    if (!(o = options_new(decls, n_decls, c.who)) ||
        (n_decls > 0 && !(fields = decl_fields(decls, n_decls)))) {
        exactly_cfg_fail_nomem(&c);
        goto cleanup;
    }
    s.fields = fields;
    s.n_fields = n_decls;
    /* The walker changes a tree only through custom fields, which options
     * do not have. */
    if (exactly_cfg_walk(&c,
                         yaml_options && yaml_options->kind == CFG_MAP
                             ? (cfg_value *)yaml_options
                             : &none,
                         at, &s, o->v))
        goto cleanup;
    *out = o;
    o = NULL;

cleanup:
    free(fields);
    exactly_options_free(o);
    return c.rc;
}

exactly_err exactly_options_reference(strbuf *out, const char *path,
                                      const char *doc,
                                      const char *handler_name,
                                      const exactly_option_decl *decls,
                                      size_t n_decls, char *errbuf,
                                      size_t errbuf_size)
{
    cfg_ctx c = {.who = handler_name, .err = errbuf, .err_size = errbuf_size};
    cfg_section s = {.n_fields = n_decls, .doc = doc};
    cfg_field *fields = NULL;
    exactly_err rc;

    if (errbuf_size > 0)
        errbuf[0] = '\0';
    if ((rc = check_decls(&c, decls, n_decls)) != EXACTLY_OK)
        return rc;
    if (n_decls > 0 && !(fields = decl_fields(decls, n_decls)))
        return EXACTLY_ENOMEM;
    s.fields = fields;
    exactly_cfg_reference(out, path, &s);
    free(fields);
    return out->oom ? EXACTLY_ENOMEM : EXACTLY_OK;
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

    return v ? v->on : 0;
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
