/*
 * config.c - reads the worker's YAML file in two steps.
 *
 * First libyaml's event stream becomes a tree of cfg_value (positions kept,
 * ${VAR} expanded, duplicate keys and aliases refused). Then a table-driven
 * walker checks that tree against the schema below and fills an
 * exactly_config. Keeping the steps apart lets handler.options leave as a
 * raw subtree that the plugin's declarations validate later.
 */
#include "config.h"
#include "exactly/handler.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "config_env.h"

/* Deeper nesting than any real config needs; the tree builder and the free
 * function recurse, so a hostile file must not be able to go deeper. */
#define MAX_DEPTH 64
#define MAX_FILE_SIZE (16u * 1024u * 1024u)
#define MAX_PIPELINE_NAME 100

/* ------------------------------------------------------------------ */
/* Key paths and errors                                                */
/* ------------------------------------------------------------------ */

/* The dotted path of the key being read ("pipelines.ledger.batch"). */
typedef struct key_path {
    char buf[512];
    size_t len;
} key_path;

typedef struct load_ctx {
    const char *file; /* as the caller gave it: messages use it verbatim */
    char *err;
    size_t err_size;
    exactly_err rc;
    key_path path;
} load_ctx;

/* Appends ".key" (or "key" at the root) and returns the length to restore
 * with path_pop(). A path too long for the buffer is cut, never overrun. */
static size_t path_push(key_path *p, const char *key)
{
    size_t saved = p->len;
    int n = snprintf(p->buf + p->len, sizeof(p->buf) - p->len, "%s%s",
                     p->len ? "." : "", key);

    if (n > 0)
        p->len += (size_t)n;
    if (p->len >= sizeof(p->buf))
        p->len = sizeof(p->buf) - 1;
    return saved;
}

static size_t path_push_index(key_path *p, size_t index)
{
    size_t saved = p->len;
    int n = snprintf(p->buf + p->len, sizeof(p->buf) - p->len, "[%zu]",
                     index);

    if (n > 0)
        p->len += (size_t)n;
    if (p->len >= sizeof(p->buf))
        p->len = sizeof(p->buf) - 1;
    return saved;
}

static void path_pop(key_path *p, size_t saved)
{
    p->len = saved;
    p->buf[saved] = '\0';
}

/* Writes "FILE:LINE:COLUMN: message" unless an error is already recorded
 * (the first error is the one the user must fix). Always returns -1. */
static int fail_at(load_ctx *c, cfg_pos pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_at(load_ctx *c, cfg_pos pos, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    int n;

    if (c->rc != EXACTLY_OK)
        return -1;
    c->rc = EXACTLY_ECONFIG;
    if (c->err_size == 0)
        return -1;
    n = snprintf(msg, sizeof(msg), "%s:%d:%d: ", c->file, pos.line,
                 pos.column);
    if (n >= 0 && (size_t)n < sizeof(msg)) {
        va_start(ap, fmt);
        vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
        va_end(ap);
    }
    /* Keys and values quoted from the file may hold control bytes. */
    exactly_cfg_escape(c->err, c->err_size, msg);
    return -1;
}

/* A failure with no position in the file (cannot open, out of memory). */
static int fail_file(load_ctx *c, exactly_err rc, const char *what)
{
    char msg[2048];

    if (c->rc != EXACTLY_OK)
        return -1;
    c->rc = rc;
    snprintf(msg, sizeof(msg), "%s: %s", c->file, what);
    exactly_cfg_escape(c->err, c->err_size, msg);
    return -1;
}

static int fail_nomem(load_ctx *c)
{
    return fail_file(c, EXACTLY_ENOMEM, "out of memory while reading the "
                                        "configuration");
}

/* Names the current path plus key in a "missing required key" error. */
static int fail_missing(load_ctx *c, cfg_pos at, const char *key)
{
    path_push(&c->path, key);
    return fail_at(c, at, "missing required key '%s'", c->path.buf);
}

/* ------------------------------------------------------------------ */
/* The raw tree                                                        */
/* ------------------------------------------------------------------ */

static void value_clear(cfg_value *v)
{
    size_t i;

    if (!v)
        return;
    for (i = 0; i < v->n_items; i++) {
        value_clear(&v->items[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->key_pos);
    free(v->scalar);
    free(v->raw);
    memset(v, 0, sizeof(*v));
}

/* The value under key in map, or NULL; *key_pos gets the key's position. */
static cfg_value *map_find(const cfg_value *map, const char *key,
                           cfg_pos *key_pos)
{
    size_t i;

    if (!map || map->kind != CFG_MAP)
        return NULL;
    for (i = 0; i < map->n_items; i++) {
        if (strcmp(map->keys[i], key) == 0) {
            if (key_pos)
                *key_pos = map->key_pos[i];
            return &map->items[i];
        }
    }
    return NULL;
}

/* What a scalar looks like in a message: the text as written when it held
 * ${...}, so that a secret from the environment is never echoed. */
static const char *shown(const cfg_value *v)
{
    return v->raw ? v->raw : v->scalar;
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

/* An empty scalar (what "key:" with no value gives) stands for an empty
 * mapping or list, so a section whose entries are all commented out is
 * still valid. */
static int is_empty_scalar(const cfg_value *v)
{
    return v->kind == CFG_SCALAR && v->scalar[0] == '\0';
}

/* Key comparisons made by duplicate detection in the last load. */
static unsigned long long key_comparisons;

typedef struct builder {
    load_ctx *c;
    yaml_parser_t parser;
    const char *text; /* the whole file, to place reader errors */
    size_t text_len;
} builder;

static cfg_pos mark_pos(yaml_mark_t m)
{
    cfg_pos pos = {(int)m.line + 1, (int)m.column + 1};
    return pos;
}

/* libyaml's reader reports a bad byte only by offset: count lines to it. */
static cfg_pos offset_pos(const builder *b, size_t offset)
{
    cfg_pos pos = {1, 1};
    size_t i;

    for (i = 0; i < offset && i < b->text_len; i++) {
        if (b->text[i] == '\n') {
            pos.line++;
            pos.column = 1;
        } else {
            pos.column++;
        }
    }
    return pos;
}

static int syntax_error(builder *b)
{
    const yaml_parser_t *p = &b->parser;
    const char *problem = p->problem ? p->problem : "malformed document";
    cfg_pos at;

    if (p->error == YAML_MEMORY_ERROR)
        return fail_nomem(b->c);
    if (p->error == YAML_READER_ERROR)
        return fail_at(b->c, offset_pos(b, p->problem_offset),
                       "invalid YAML: %s", problem);
    at = mark_pos(p->problem_mark);
    if (p->context) {
        cfg_pos ctx = mark_pos(p->context_mark);
        return fail_at(b->c, at, "invalid YAML: %s (%s at %d:%d)", problem,
                       p->context, ctx.line, ctx.column);
    }
    return fail_at(b->c, at, "invalid YAML: %s", problem);
}

static int next_event(builder *b, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&b->parser, ev))
        return syntax_error(b);
    return 0;
}

/* YAML spells null several ways; all of them mean "no value" here. */
static int is_null_word(const char *s)
{
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

static int has_nul(const yaml_event_t *ev)
{
    return strlen((const char *)ev->data.scalar.value) !=
           ev->data.scalar.length;
}

#define CORE_TAG "tag:yaml.org,2002:"

/* The tag of the node ev starts, as libyaml resolved it, or NULL. */
static const char *event_tag(const yaml_event_t *ev)
{
    const yaml_char_t *tag = NULL;

    if (ev->type == YAML_SCALAR_EVENT)
        tag = ev->data.scalar.tag;
    else if (ev->type == YAML_MAPPING_START_EVENT)
        tag = ev->data.mapping_start.tag;
    else if (ev->type == YAML_SEQUENCE_START_EVENT)
        tag = ev->data.sequence_start.tag;
    return (const char *)tag;
}

/*
 * Tags change what a node means, so one that is ignored silently changes
 * the configuration. The core tags that fit the node are honoured (!!str
 * keeps a null word such as '~' as text; !!map and !!seq say what the node
 * is anyway); every other tag is refused at its position.
 */
static int check_tag(builder *b, const yaml_event_t *ev, cfg_pos pos)
{
    static const struct {
        yaml_event_type_t type;
        const char *core;
        const char *what;
    } fits[] = {{YAML_SCALAR_EVENT, "str", "a scalar"},
                {YAML_MAPPING_START_EVENT, "map", "a mapping"},
                {YAML_SEQUENCE_START_EVENT, "seq", "a list"}};
    const char *tag = event_tag(ev);
    const char *where = b->c->path.len ? b->c->path.buf : "the top level";
    size_t i;

    if (!tag)
        return 0;
    if (strncmp(tag, CORE_TAG, sizeof(CORE_TAG) - 1) == 0) {
        const char *name = tag + sizeof(CORE_TAG) - 1;
        int core = 0;

        for (i = 0; i < sizeof(fits) / sizeof(fits[0]); i++) {
            if (strcmp(name, fits[i].core) != 0)
                continue;
            core = 1;
            if (ev->type == fits[i].type)
                return 0;
        }
        for (i = 0; core && i < sizeof(fits) / sizeof(fits[0]); i++)
            if (ev->type == fits[i].type)
                return fail_at(b->c, pos, "YAML tag '!!%.100s' does not fit "
                                          "%s (in '%s')",
                               name, fits[i].what, where);
        return fail_at(b->c, pos, "YAML tag '!!%.100s' is not supported (in "
                                  "'%s'): only !!str, !!map and !!seq are",
                       name, where);
    }
    return fail_at(b->c, pos, "YAML tag '%s%.100s%s' is not supported (in "
                              "'%s'): only !!str, !!map and !!seq are",
                   tag[0] == '!' ? "" : "!<", tag, tag[0] == '!' ? "" : ">",
                   where);
}

static int build_scalar(builder *b, const yaml_event_t *ev, cfg_value *out)
{
    load_ctx *c = b->c;
    const char *text = (const char *)ev->data.scalar.value;
    char why[300];
    int used_env = 0;
    exactly_err rc;

    out->kind = CFG_SCALAR;
    out->pos = mark_pos(ev->start_mark);
    if (has_nul(ev))
        return fail_at(c, out->pos, "'%s' contains a NUL byte", c->path.buf);
    /* A plain null word is no value, unless tagged !!str (the only tag
     * check_tag lets through on a scalar). */
    if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
        !event_tag(ev) && is_null_word(text))
        text = "";
    rc = exactly_env_expand(text, &out->scalar, &used_env, why, sizeof(why));
    if (rc == EXACTLY_ENOMEM)
        return fail_nomem(c);
    if (rc != EXACTLY_OK) {
        if (c->path.len == 0)
            return fail_at(c, out->pos, "%s", why);
        return fail_at(c, out->pos, "%s (in '%s')", why, c->path.buf);
    }
    if (used_env && !(out->raw = strdup(text)))
        return fail_nomem(c);
    return 0;
}

static int build_node(builder *b, yaml_event_t *ev, cfg_value *out,
                      int depth);

/* Grows the arrays of a collection by one zeroed item (and key slot for a
 * mapping). *cap is the capacity shared by all of them. */
static int grow(cfg_value *v, size_t *cap)
{
    size_t n = *cap ? *cap * 2 : 4;
    cfg_value *items;

    if (v->n_items < *cap)
        return 0;
    items = realloc(v->items, n * sizeof(*items));
    if (!items)
        return -1;
    v->items = items;
    if (v->kind == CFG_MAP) {
        char **keys = realloc(v->keys, n * sizeof(*keys));
        cfg_pos *key_pos;

        if (!keys)
            return -1;
        v->keys = keys;
        key_pos = realloc(v->key_pos, n * sizeof(*key_pos));
        if (!key_pos)
            return -1;
        v->key_pos = key_pos;
    }
    *cap = n;
    return 0;
}

/*
 * The keys of one mapping being built, hashed, so that finding a duplicate
 * costs about one probe per key, not a scan of every earlier key (which
 * made a 9 MB mapping take minutes). Open addressing, at most half full.
 */
typedef struct key_slot {
    uint64_t hash;
    size_t index; /* 1 + the key's index in the mapping; 0: empty */
} key_slot;

typedef struct key_index {
    key_slot *slots;
    size_t cap; /* a power of two, or 0 */
    size_t used;
} key_index;

static uint64_t key_hash(const char *key)
{
    uint64_t h = 14695981039346656037u; /* FNV-1a */

    for (; *key; key++) {
        h ^= (unsigned char)*key;
        h *= 1099511628211u;
    }
    return h;
}

/* The empty slot where a key of hash h goes. */
static key_slot *key_probe(const key_index *ix, uint64_t h)
{
    size_t i = (size_t)h & (ix->cap - 1);

    while (ix->slots[i].index != 0)
        i = (i + 1) & (ix->cap - 1);
    return &ix->slots[i];
}

/* The index of key (of hash h) in map, or SIZE_MAX when it is new. Keys are
 * compared only when their hashes are equal. */
static size_t key_index_find(const key_index *ix, const cfg_value *map,
                             const char *key, uint64_t h)
{
    size_t i = (size_t)h & (ix->cap - 1);

    for (; ix->slots[i].index != 0; i = (i + 1) & (ix->cap - 1)) {
        if (ix->slots[i].hash != h)
            continue;
        key_comparisons++;
        if (strcmp(map->keys[ix->slots[i].index - 1], key) == 0)
            return ix->slots[i].index - 1;
    }
    return SIZE_MAX;
}

/* Makes room for one more key. Returns 0, or -1 when out of memory. */
static int key_index_reserve(key_index *ix)
{
    key_index grown;
    size_t i;

    if ((ix->used + 1) * 2 <= ix->cap)
        return 0;
    grown.cap = ix->cap ? ix->cap * 2 : 16;
    grown.used = ix->used;
    if (!(grown.slots = calloc(grown.cap, sizeof(key_slot))))
        return -1;
    for (i = 0; i < ix->cap; i++)
        if (ix->slots[i].index != 0)
            *key_probe(&grown, ix->slots[i].hash) = ix->slots[i];
    free(ix->slots);
    *ix = grown;
    return 0;
}

/* Reads a mapping's keys and values into out; duplicate keys are refused
 * naming both places. */
static int build_mapping(builder *b, cfg_value *out, int depth)
{
    load_ctx *c = b->c;
    key_index ix = {0};
    size_t cap = 0;
    int rc = -1;

    for (;;) {
        yaml_event_t ev;
        cfg_pos key_pos;
        const char *key;
        size_t saved, n, dup;
        uint64_t h;

        if (next_event(b, &ev))
            goto cleanup;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            rc = 0;
            goto cleanup;
        }
        key_pos = mark_pos(ev.start_mark);
        if (ev.type != YAML_SCALAR_EVENT || has_nul(&ev)) {
            yaml_event_delete(&ev);
            fail_at(c, key_pos, "keys must be plain strings (in '%s')",
                    c->path.len ? c->path.buf : "the top level");
            goto cleanup;
        }
        if (check_tag(b, &ev, key_pos)) {
            yaml_event_delete(&ev);
            goto cleanup;
        }
        key = (const char *)ev.data.scalar.value;
        saved = path_push(&c->path, key);
        if (key_index_reserve(&ix) || grow(out, &cap)) {
            yaml_event_delete(&ev);
            fail_nomem(c);
            goto cleanup;
        }
        h = key_hash(key);
        dup = key_index_find(&ix, out, key, h);
        if (dup != SIZE_MAX) {
            yaml_event_delete(&ev);
            fail_at(c, key_pos, "duplicate key '%s' (first at %d:%d)",
                    c->path.buf, out->key_pos[dup].line,
                    out->key_pos[dup].column);
            goto cleanup;
        }
        n = out->n_items;
        out->keys[n] = strdup(key);
        yaml_event_delete(&ev);
        if (!out->keys[n]) {
            fail_nomem(c);
            goto cleanup;
        }
        out->key_pos[n] = key_pos;
        memset(&out->items[n], 0, sizeof(out->items[n]));
        out->n_items++;
        *key_probe(&ix, h) = (key_slot){h, n + 1};
        ix.used++;

        if (next_event(b, &ev))
            goto cleanup;
        if (build_node(b, &ev, &out->items[n], depth + 1))
            goto cleanup;
        path_pop(&c->path, saved);
    }

cleanup:
    free(ix.slots);
    return rc;
}

static int build_sequence(builder *b, cfg_value *out, int depth)
{
    load_ctx *c = b->c;
    size_t cap = 0;

    for (;;) {
        yaml_event_t ev;
        size_t saved, n;
        int rc;

        if (next_event(b, &ev))
            return -1;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        if (grow(out, &cap)) {
            yaml_event_delete(&ev);
            return fail_nomem(c);
        }
        n = out->n_items;
        memset(&out->items[n], 0, sizeof(out->items[n]));
        out->n_items++;
        saved = path_push_index(&c->path, n);
        rc = build_node(b, &ev, &out->items[n], depth + 1);
        path_pop(&c->path, saved);
        if (rc)
            return -1;
    }
}

/* Builds the node that ev starts into out and consumes ev. */
static int build_node(builder *b, yaml_event_t *ev, cfg_value *out, int depth)
{
    load_ctx *c = b->c;
    cfg_pos pos = mark_pos(ev->start_mark);
    yaml_event_type_t type = ev->type;
    int rc;

    if (check_tag(b, ev, pos)) {
        yaml_event_delete(ev);
        return -1;
    }
    if (type == YAML_SCALAR_EVENT) {
        rc = build_scalar(b, ev, out);
        yaml_event_delete(ev);
        return rc;
    }
    yaml_event_delete(ev);
    if (type == YAML_ALIAS_EVENT)
        return fail_at(c, pos, "YAML aliases are not supported (in '%s')",
                       c->path.buf);
    if (type != YAML_MAPPING_START_EVENT && type != YAML_SEQUENCE_START_EVENT)
        return fail_at(c, pos, "unexpected YAML structure (in '%s')",
                       c->path.buf);
    if (depth >= MAX_DEPTH)
        return fail_at(c, pos, "nesting deeper than %d levels (in '%s')",
                       MAX_DEPTH, c->path.buf);
    out->pos = pos;
    if (type == YAML_MAPPING_START_EVENT) {
        out->kind = CFG_MAP;
        return build_mapping(b, out, depth);
    }
    out->kind = CFG_SEQ;
    return build_sequence(b, out, depth);
}

/* Expects an event of type want next; anything else is the caller's
 * message. */
static int expect_event(builder *b, yaml_event_type_t want, const char *what)
{
    yaml_event_t ev;
    int ok;

    if (next_event(b, &ev))
        return -1;
    ok = ev.type == want;
    if (!ok)
        fail_at(b->c, mark_pos(ev.start_mark), "%s", what);
    yaml_event_delete(&ev);
    return ok ? 0 : -1;
}

static int parse_document(builder *b, cfg_value *root)
{
    yaml_event_t ev;

    if (expect_event(b, YAML_STREAM_START_EVENT, "expected a YAML stream"))
        return -1;
    if (next_event(b, &ev))
        return -1;
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        root->kind = CFG_SCALAR;
        root->pos = (cfg_pos){1, 1};
        return (root->scalar = strdup("")) ? 0 : fail_nomem(b->c);
    }
    yaml_event_delete(&ev);
    if (next_event(b, &ev))
        return -1;
    if (build_node(b, &ev, root, 0))
        return -1;
    if (expect_event(b, YAML_DOCUMENT_END_EVENT, "expected the end of the "
                                                 "document"))
        return -1;
    return expect_event(b, YAML_STREAM_END_EVENT,
                        "the file must hold one YAML document, found more");
}

/* Reads the whole file: libyaml then parses from memory, and reader errors
 * (bad UTF-8), which libyaml reports by byte offset, can be placed. */
/* What a file that is not a regular file is, for the refusal. */
static const char *file_kind(mode_t mode)
{
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISDIR(mode))
        return "a directory";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    if (S_ISSOCK(mode))
        return "a socket";
    return "a special file";
}

/*
 * Opens the configuration for reading. Only a regular file is accepted:
 * opening a FIFO would wait for a writer forever and a device can be read
 * without end. O_NONBLOCK keeps open() itself from waiting; it makes no
 * difference to reading a regular file.
 */
static FILE *open_config(load_ctx *c)
{
    char why[300];
    struct stat st;
    FILE *f;
    int fd = open(c->file, O_RDONLY | O_NONBLOCK | O_CLOEXEC);

    if (fd < 0) {
        snprintf(why, sizeof(why), "cannot open: %s", strerror(errno));
        fail_file(c, EXACTLY_ECONFIG, why);
        return NULL;
    }
    if (fstat(fd, &st) != 0) {
        snprintf(why, sizeof(why), "cannot read: %s", strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, sizeof(why), "not a regular file (%s); give the path "
                                   "of a YAML file",
                 file_kind(st.st_mode));
        goto fail;
    }
    if (!(f = fdopen(fd, "rb"))) {
        snprintf(why, sizeof(why), "cannot read: %s", strerror(errno));
        goto fail;
    }
    return f;

fail:
    close(fd);
    fail_file(c, EXACTLY_ECONFIG, why);
    return NULL;
}

static char *read_file(load_ctx *c, size_t *len)
{
    FILE *f = open_config(c);
    char *data = NULL;
    size_t cap = 0, n = 0;
    char why[300];

    if (!f)
        return NULL;
    for (;;) {
        size_t got;

        if (n == cap) {
            char *grown;

            if (cap >= MAX_FILE_SIZE) {
                fail_file(c, EXACTLY_ECONFIG, "file is larger than 16 MiB");
                goto fail;
            }
            cap = cap ? cap * 2 : 8192;
            grown = realloc(data, cap + 1);
            if (!grown) {
                fail_nomem(c);
                goto fail;
            }
            data = grown;
        }
        got = fread(data + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        snprintf(why, sizeof(why), "cannot read: %s", strerror(errno));
        fail_file(c, EXACTLY_ECONFIG, why);
        goto fail;
    }
    fclose(f);
    data[n] = '\0';
    *len = n;
    return data;

fail:
    fclose(f);
    free(data);
    return NULL;
}

static int read_tree(load_ctx *c, cfg_value *root)
{
    builder b = {.c = c};
    int rc;

    b.text = read_file(c, &b.text_len);
    if (!b.text)
        return -1;
    if (!yaml_parser_initialize(&b.parser)) {
        free((char *)b.text);
        return fail_nomem(c);
    }
    yaml_parser_set_input_string(&b.parser, (const unsigned char *)b.text,
                                 b.text_len);
    rc = parse_document(&b, root);
    yaml_parser_delete(&b.parser);
    free((char *)b.text);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Scalar conversions                                                  */
/* ------------------------------------------------------------------ */

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

/* ------------------------------------------------------------------ */
/* The schema walker                                                   */
/* ------------------------------------------------------------------ */

typedef enum field_kind {
    F_STR,      /* char * */
    F_INT,      /* int, range min..max */
    F_SIZE,     /* size_t, range min..max */
    F_BOOL,     /* int 0/1 */
    F_ENUM,     /* int, one of names */
    F_DURATION, /* int64_t seconds */
    F_STRLIST,  /* char ** + size_t count at off_n; a scalar is one item */
    F_PROPS,    /* cfg_prop * + size_t count at off_n: librdkafka pass-through */
    F_SECTION,  /* a mapping read with sub, into the same base */
    F_CUSTOM    /* read by fn */
} field_kind;

#define F_REQUIRED 1u
#define F_NONEMPTY 2u

typedef struct enum_name {
    const char *name;
    int value;
} enum_name;

typedef struct section section;

typedef struct field {
    const char *key;
    field_kind kind;
    unsigned flags;
    size_t off;             /* where the value goes in base */
    size_t off_n;           /* F_STRLIST, F_PROPS: where the count goes */
    int64_t min, max;       /* F_INT, F_SIZE: range; F_STR: max bytes if > 0 */
    const enum_name *names; /* F_ENUM: NULL-terminated */
    const section *sub;     /* F_SECTION */
    int (*fn)(load_ctx *c, cfg_value *v, cfg_pos key_pos, void *base);
} field;

struct section {
    const field *fields;
    size_t n_fields;
    /* Rules across keys and derived defaults, run after every key was read
     * and required keys were checked; at is where the section is named. */
    int (*check)(load_ctx *c, cfg_value *map, cfg_pos at, void *base);
};

static void *slot(void *base, size_t off)
{
    return (char *)base + off;
}

static int need_scalar(load_ctx *c, const cfg_value *v, const char *what)
{
    if (v->kind == CFG_SCALAR)
        return 0;
    return fail_at(c, v->pos, "'%s' must be %s, got %s", c->path.buf, what,
                   kind_name(v));
}

static int read_str(load_ctx *c, const field *f, const cfg_value *v,
                    void *base)
{
    char **dst = slot(base, f->off);

    if (need_scalar(c, v, "a string"))
        return -1;
    if ((f->flags & F_NONEMPTY) && v->scalar[0] == '\0')
        return fail_at(c, v->pos, "'%s' must not be empty", c->path.buf);
    if (f->max > 0 && strlen(v->scalar) > (size_t)f->max)
        return fail_at(c, v->pos, "'%s' must be at most %lld bytes long",
                       c->path.buf, (long long)f->max);
    free(*dst);
    *dst = strdup(v->scalar);
    return *dst ? 0 : fail_nomem(c);
}

static int read_int(load_ctx *c, const field *f, const cfg_value *v,
                    void *base)
{
    int64_t n;

    if (need_scalar(c, v, "an integer"))
        return -1;
    if (exactly_cfg_parse_int64(v->scalar, &n))
        return fail_at(c, v->pos, "'%s' must be an integer, got '%s'",
                       c->path.buf, shown(v));
    if (n < f->min || n > f->max)
        return fail_at(c, v->pos, "'%s' must be between %lld and %lld, got "
                                  "'%s'",
                       c->path.buf, (long long)f->min, (long long)f->max,
                       shown(v));
    if (f->kind == F_SIZE)
        *(size_t *)slot(base, f->off) = (size_t)n;
    else
        *(int *)slot(base, f->off) = (int)n;
    return 0;
}

static int read_bool(load_ctx *c, const field *f, const cfg_value *v,
                     void *base)
{
    if (need_scalar(c, v, "true or false"))
        return -1;
    if (exactly_cfg_parse_bool(v->scalar, slot(base, f->off)))
        return fail_at(c, v->pos, "'%s' must be true or false, got '%s'",
                       c->path.buf, shown(v));
    return 0;
}

/* "a, b, c" from a NULL-terminated name table, cut to fit out. */
static void join_names(const enum_name *names, char *out, size_t size)
{
    size_t i, n = 0;

    out[0] = '\0';
    for (i = 0; names[i].name && n < size; i++)
        n += (size_t)snprintf(out + n, size - n, "%s%s", i ? ", " : "",
                              names[i].name);
}

static int read_enum(load_ctx *c, const field *f, const cfg_value *v,
                     void *base)
{
    char valid[200];
    size_t i;

    if (need_scalar(c, v, "a string"))
        return -1;
    for (i = 0; f->names[i].name; i++) {
        if (strcmp(v->scalar, f->names[i].name) == 0) {
            *(int *)slot(base, f->off) = f->names[i].value;
            return 0;
        }
    }
    join_names(f->names, valid, sizeof(valid));
    return fail_at(c, v->pos, "'%s' must be one of %s, got '%s'", c->path.buf,
                   valid, shown(v));
}

static int read_duration(load_ctx *c, const field *f, const cfg_value *v,
                         void *base)
{
    if (need_scalar(c, v, "a duration"))
        return -1;
    if (parse_duration(v->scalar, slot(base, f->off)))
        return fail_at(c, v->pos, "'%s' must be a positive duration such as "
                                  "7d, 12h, 30m or 3600s, got '%s'",
                       c->path.buf, shown(v));
    return 0;
}

static void free_strings(char **items, size_t n)
{
    size_t i;

    for (i = 0; items && i < n; i++)
        free(items[i]);
    free(items);
}

static int read_strlist(load_ctx *c, const field *f, const cfg_value *v,
                        void *base)
{
    char ***dst = slot(base, f->off);
    size_t *dst_n = slot(base, f->off_n);
    const cfg_value *items = v->kind == CFG_SEQ ? v->items : v;
    size_t n = v->kind == CFG_SEQ ? v->n_items : 1, i;

    if (v->kind == CFG_MAP)
        return fail_at(c, v->pos, "'%s' must be a list of strings, got a "
                                  "mapping",
                       c->path.buf);
    if (n == 0 || is_empty_scalar(v))
        return fail_at(c, v->pos, "'%s' must not be empty", c->path.buf);
    free_strings(*dst, *dst_n);
    *dst_n = 0;
    if (!(*dst = calloc(n, sizeof(char *))))
        return fail_nomem(c);
    for (i = 0; i < n; i++) {
        size_t saved = path_push_index(&c->path, i);

        if (need_scalar(c, &items[i], "a string"))
            return -1;
        if (items[i].scalar[0] == '\0')
            return fail_at(c, items[i].pos, "'%s' must not be empty",
                           c->path.buf);
        path_pop(&c->path, saved);
        if (!((*dst)[i] = strdup(items[i].scalar)))
            return fail_nomem(c);
        *dst_n = i + 1;
    }
    return 0;
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

static int read_props(load_ctx *c, const field *f, const cfg_value *v,
                      void *base)
{
    cfg_prop **dst = slot(base, f->off);
    size_t *dst_n = slot(base, f->off_n);
    size_t i;

    if (is_empty_scalar(v))
        return 0;
    if (v->kind != CFG_MAP)
        return fail_at(c, v->pos, "'%s' must be a mapping of librdkafka "
                                  "properties, got %s",
                       c->path.buf, kind_name(v));
    if (v->n_items == 0)
        return 0;
    if (!(*dst = calloc(v->n_items, sizeof(cfg_prop))))
        return fail_nomem(c);
    for (i = 0; i < v->n_items; i++) {
        cfg_prop *p = &(*dst)[i];
        size_t saved = path_push(&c->path, v->keys[i]);

        if (v->keys[i][0] == '\0')
            return fail_at(c, v->key_pos[i], "empty property name in '%s'",
                           c->path.buf);
        /* librdkafka takes only strings; nested YAML here is a typo for a
         * dotted name. */
        if (need_scalar(c, &v->items[i], "a scalar"))
            return -1;
        path_pop(&c->path, saved);
        p->pos = v->key_pos[i];
        p->name = strdup(v->keys[i]);
        p->value = strdup(v->items[i].scalar);
        *dst_n = i + 1;
        if (!p->name || !p->value)
            return fail_nomem(c);
    }
    return 0;
}

static int walk_section(load_ctx *c, cfg_value *map, cfg_pos at,
                        const section *s, void *base);

static int read_section(load_ctx *c, const field *f, cfg_value *v,
                        cfg_pos key_pos, void *base)
{
    cfg_value empty = {.kind = CFG_MAP, .pos = v->pos};

    if (is_empty_scalar(v))
        return walk_section(c, &empty, key_pos, f->sub, base);
    if (v->kind != CFG_MAP)
        return fail_at(c, v->pos, "'%s' must be a mapping, got %s",
                       c->path.buf, kind_name(v));
    return walk_section(c, v, key_pos, f->sub, base);
}

static int read_field(load_ctx *c, const field *f, cfg_value *v,
                      cfg_pos key_pos, void *base)
{
    switch (f->kind) {
    case F_STR:
        return read_str(c, f, v, base);
    case F_INT:
    case F_SIZE:
        return read_int(c, f, v, base);
    case F_BOOL:
        return read_bool(c, f, v, base);
    case F_ENUM:
        return read_enum(c, f, v, base);
    case F_DURATION:
        return read_duration(c, f, v, base);
    case F_STRLIST:
        return read_strlist(c, f, v, base);
    case F_PROPS:
        return read_props(c, f, v, base);
    case F_SECTION:
        return read_section(c, f, v, key_pos, base);
    case F_CUSTOM:
        return f->fn(c, v, key_pos, base);
    }
    return fail_at(c, v->pos, "internal error: no reader for '%s'",
                   c->path.buf);
}

static int unknown_key(load_ctx *c, cfg_pos pos, const section *s)
{
    char valid[400] = "";
    size_t i, n = 0;

    for (i = 0; i < s->n_fields && n < sizeof(valid); i++)
        n += (size_t)snprintf(valid + n, sizeof(valid) - n, "%s%s",
                              i ? ", " : "", s->fields[i].key);
    return fail_at(c, pos, "unknown key '%s' (valid: %s)", c->path.buf,
                   valid);
}

/* Reads every key of map with the fields of s into base; at is where the
 * map is named, for "missing required key" errors. */
static int walk_section(load_ctx *c, cfg_value *map, cfg_pos at,
                        const section *s, void *base)
{
    size_t i, j;

    for (i = 0; i < map->n_items; i++) {
        const field *f = NULL;
        size_t saved = path_push(&c->path, map->keys[i]);

        for (j = 0; j < s->n_fields && !f; j++)
            if (strcmp(s->fields[j].key, map->keys[i]) == 0)
                f = &s->fields[j];
        if (!f)
            return unknown_key(c, map->key_pos[i], s);
        if (read_field(c, f, &map->items[i], map->key_pos[i], base))
            return -1;
        path_pop(&c->path, saved);
    }
    for (j = 0; j < s->n_fields; j++)
        if ((s->fields[j].flags & F_REQUIRED) &&
            !map_find(map, s->fields[j].key, NULL))
            return fail_missing(c, at, s->fields[j].key);
    return s->check ? s->check(c, map, at, base) : 0;
}

/* ------------------------------------------------------------------ */
/* The schema                                                          */
/* ------------------------------------------------------------------ */

static const enum_name id_from_names[] = {{"key", CFG_FROM_KEY},
                                          {"value", CFG_FROM_VALUE},
                                          {"header", CFG_FROM_HEADER},
                                          {NULL, 0}};
static const enum_name dedup_from_names[] = {{"key", CFG_FROM_KEY},
                                             {"header", CFG_FROM_HEADER},
                                             {NULL, 0}};
static const enum_name id_type_names[] = {{"bigint", CFG_ID_BIGINT},
                                          {"text", CFG_ID_TEXT},
                                          {"uuid", CFG_ID_UUID},
                                          {NULL, 0}};
static const enum_name non_canonical_names[] = {
    {"dead_letter", CFG_NONCANON_DEAD_LETTER},
    {"accept", CFG_NONCANON_ACCEPT},
    {NULL, 0}};
static const enum_name on_missing_names[] = {
    {"skip", CFG_MISSING_SKIP},
    {"dead_letter", CFG_MISSING_DEAD_LETTER},
    {"handler", CFG_MISSING_HANDLER},
    {"retry", CFG_MISSING_RETRY},
    {NULL, 0}};
static const enum_name on_error_names[] = {
    {"dead_letter", CFG_ERROR_DEAD_LETTER},
    {"stop", CFG_ERROR_STOP},
    {NULL, 0}};

#define N_FIELDS(a) (sizeof(a) / sizeof((a)[0]))
#define P(member) offsetof(cfg_pipeline, member)
#define C(member) offsetof(exactly_config, member)

#define STR(k, off_, fl) {.key = k, .kind = F_STR, .flags = fl, .off = off_}
#define INT(k, off_, lo, hi)                                                   \
    {.key = k, .kind = F_INT, .off = off_, .min = lo, .max = hi}
#define BOOL(k, off_) {.key = k, .kind = F_BOOL, .off = off_}
#define ENUM(k, off_, fl, nm)                                                  \
    {.key = k, .kind = F_ENUM, .flags = fl, .off = off_, .names = nm}
#define LIST(k, off_, offn, fl)                                                \
    {.key = k, .kind = F_STRLIST, .flags = fl, .off = off_, .off_n = offn}
#define PROPS(k, off_, offn)                                                   \
    {.key = k, .kind = F_PROPS, .off = off_, .off_n = offn}
#define SECTION(k, s, fl) {.key = k, .kind = F_SECTION, .flags = fl, .sub = &s}
#define CUSTOM(k, f, fl) {.key = k, .kind = F_CUSTOM, .flags = fl, .fn = f}

/* --- postgres --- */

static int postgres_check(load_ctx *c, cfg_value *map, cfg_pos at, void *base)
{
    exactly_config *cfg = base;
    const cfg_value *v;
    const char *problem;
    char why[300];
    cfg_pos key_pos;

    cfg->postgres.pos = at;
    /* A conninfo libpq cannot read as written is refused here, in a
     * sentence of our own: libpq's message would quote the password. */
    problem = exactly_conninfo_problem(cfg->postgres.conninfo);
    if (problem) {
        v = map_find(map, "conninfo", &key_pos);
        path_push(&c->path, "conninfo");
        return fail_at(c, v ? v->pos : key_pos, "'%s' %s", c->path.buf,
                       problem);
    }
    /* Settings of the user's that exactly would have to override. */
    problem = exactly_conninfo_conflict(cfg->postgres.conninfo,
                                        map_find(map, "connect_timeout_s",
                                                 NULL) != NULL,
                                        why, sizeof(why));
    if (problem) {
        v = map_find(map, "conninfo", &key_pos);
        return fail_at(c, v ? v->pos : key_pos, "%s", problem);
    }
    if (!cfg->postgres.schema && !(cfg->postgres.schema = strdup("exactly")))
        return fail_nomem(c);
    return 0;
}

static const field postgres_fields[] = {
    STR("conninfo", C(postgres.conninfo), F_REQUIRED),
    /* PostgreSQL cuts identifiers at 63 bytes; refuse rather than surprise. */
    {.key = "schema", .kind = F_STR, .flags = F_NONEMPTY,
     .off = C(postgres.schema), .max = 63},
    INT("statement_timeout_ms", C(postgres.statement_timeout_ms), 0, INT_MAX),
    INT("lock_timeout_ms", C(postgres.lock_timeout_ms), 0, INT_MAX),
    INT("connect_timeout_s", C(postgres.connect_timeout_s), 0, 86400),
    INT("idle_in_transaction_timeout_ms",
        C(postgres.idle_in_transaction_timeout_ms), 0, INT_MAX),
    INT("client_timeout_ms", C(postgres.client_timeout_ms), 0, INT_MAX),
};
static const section postgres_section = {postgres_fields,
                                         N_FIELDS(postgres_fields),
                                         postgres_check};

/* --- pipelines.NAME.id --- */

/* A header name goes with from: header and only with it. */
static int check_header_rule(load_ctx *c, cfg_value *map, cfg_pos at,
                             cfg_id_from from, const char *header)
{
    cfg_pos pos;

    if (from == CFG_FROM_HEADER && !header)
        return fail_missing(c, at, "header");
    if (from != CFG_FROM_HEADER && header) {
        map_find(map, "header", &pos);
        path_push(&c->path, "header");
        return fail_at(c, pos, "'%s' applies only with 'from: header'",
                       c->path.buf);
    }
    return 0;
}

static int id_check(load_ctx *c, cfg_value *map, cfg_pos at, void *base)
{
    cfg_pipeline *p = base;

    return check_header_rule(c, map, at, p->id.from, p->id.header);
}

static const field id_fields[] = {
    ENUM("from", P(id.from), 0, id_from_names),
    STR("header", P(id.header), F_NONEMPTY),
    ENUM("type", P(id.type), 0, id_type_names),
    {.key = "max_length", .kind = F_SIZE, .off = P(id.max_length), .min = 1,
     .max = 65536},
    ENUM("non_canonical", P(id.non_canonical), 0, non_canonical_names),
};
static const section id_section = {id_fields, N_FIELDS(id_fields), id_check};

/* --- pipelines.NAME.lookup --- */

static int fail_key(load_ctx *c, cfg_value *map, const char *key,
                    const char *why)
{
    cfg_pos pos = {1, 1};

    map_find(map, key, &pos);
    path_push(&c->path, key);
    return fail_at(c, pos, "'%s' %s", c->path.buf, why);
}

static int has_string(char **items, size_t n, const char *s)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(items[i], s) == 0)
            return 1;
    return 0;
}

static int lookup_check(load_ctx *c, cfg_value *map, cfg_pos at, void *base)
{
    cfg_pipeline *p = base;
    char why[200];

    if (p->lookup.table && p->lookup.sql)
        return fail_key(c, map, "sql", "cannot be set together with 'table': "
                                       "set exactly one of them");
    if (!p->lookup.table && !p->lookup.sql)
        return fail_at(c, at, "'%s' needs exactly one of 'table' or 'sql'",
                       c->path.buf);
    if (p->lookup.sql) {
        /* The runtime binds the batch's IDs as one array parameter. */
        if (!strstr(p->lookup.sql, "$1"))
            return fail_key(c, map, "sql", "must take the IDs as $1, as in "
                                           "'WHERE id = ANY($1)'");
        if (map_find(map, "id_column", NULL))
            return fail_key(c, map, "id_column", "applies only with 'table'");
        if (map_find(map, "columns", NULL))
            return fail_key(c, map, "columns", "applies only with 'table'");
    }
    if (!p->lookup.id_column && !(p->lookup.id_column = strdup("id")))
        return fail_nomem(c);
    if (!p->lookup.key_column &&
        !(p->lookup.key_column =
              strdup(p->lookup.table ? p->lookup.id_column : "id")))
        return fail_nomem(c);
    /* Rows are matched back to IDs through the key column. */
    if (p->lookup.columns &&
        !has_string(p->lookup.columns, p->lookup.n_columns,
                    p->lookup.key_column)) {
        snprintf(why, sizeof(why), "must include the key column '%s'",
                 p->lookup.key_column);
        return fail_key(c, map, "columns", why);
    }
    return 0;
}

static const field lookup_fields[] = {
    STR("table", P(lookup.table), F_NONEMPTY),
    STR("id_column", P(lookup.id_column), F_NONEMPTY),
    LIST("columns", P(lookup.columns), P(lookup.n_columns), 0),
    STR("sql", P(lookup.sql), F_NONEMPTY),
    STR("key_column", P(lookup.key_column), F_NONEMPTY),
    ENUM("on_missing", P(lookup.on_missing), 0, on_missing_names),
    INT("missing_retry_ms", P(lookup.missing_retry_ms), 0, 3600000),
};
static const section lookup_section = {lookup_fields, N_FIELDS(lookup_fields),
                                       lookup_check};

/* --- pipelines.NAME.handler --- */

/* A relative plugin path means "next to the config file", not "wherever
 * the worker happens to run"; the result is absolute, so a later chdir or
 * dlopen's library search cannot change which file loads. */
static char *resolve_path(const char *config_file, const char *path)
{
    const char *slash = strrchr(config_file, '/');
    char *cwd = NULL, *out = NULL;
    int dir_len = slash ? (int)(slash - config_file) : 0;
    int n;

    if (path[0] == '/')
        return strdup(path);
    if (slash && config_file[0] == '/') {
        n = asprintf(&out, "%.*s/%s", dir_len, config_file, path);
    } else {
        if (!(cwd = getcwd(NULL, 0)))
            return NULL;
        if (slash)
            n = asprintf(&out, "%s/%.*s/%s", strcmp(cwd, "/") ? cwd : "",
                         dir_len, config_file, path);
        else
            n = asprintf(&out, "%s/%s", strcmp(cwd, "/") ? cwd : "", path);
    }
    free(cwd);
    return n < 0 ? NULL : out;
}

static int read_options(load_ctx *c, cfg_value *v, cfg_pos key_pos,
                        void *base)
{
    cfg_pipeline *p = base;

    if (v->kind != CFG_MAP && !is_empty_scalar(v))
        return fail_at(c, v->pos, "'%s' must be a mapping, got %s",
                       c->path.buf, kind_name(v));
    /* Take the subtree: the plugin's declarations check it later. It is
     * located where `options:` is written, so "missing option" errors point
     * there. */
    value_clear(&p->handler.options);
    p->handler.options = *v;
    memset(v, 0, sizeof(*v));
    if (p->handler.options.kind != CFG_MAP) {
        /* "options:" with no value: an empty mapping. */
        value_clear(&p->handler.options);
        p->handler.options.kind = CFG_MAP;
    }
    p->handler.options.pos = key_pos;
    return 0;
}

static int handler_check(load_ctx *c, cfg_value *map, cfg_pos at, void *base)
{
    cfg_pipeline *p = base;
    const cfg_value *v;
    cfg_pos pos;
    char *resolved;

    p->handler.pos = at;
    if (p->handler.options.kind != CFG_MAP) {
        p->handler.options.kind = CFG_MAP;
        p->handler.options.pos = at;
    }
    p->handler.options_pos = p->handler.options.pos;

    if (p->handler.plugin && p->handler.builtin)
        return fail_key(c, map, "builtin", "cannot be set together with "
                                           "'plugin': set exactly one of "
                                           "them");
    if (!p->handler.plugin && !p->handler.builtin)
        return fail_at(c, at, "'%s' needs exactly one of 'plugin' or "
                              "'builtin'",
                       c->path.buf);
    if (p->handler.builtin && strcmp(p->handler.builtin, "upsert") != 0) {
        v = map_find(map, "builtin", &pos);
        path_push(&c->path, "builtin");
        return fail_at(c, v->pos, "'%s' must be one of upsert, got '%s'",
                       c->path.buf, shown(v));
    }
    if (p->handler.plugin) {
        resolved = resolve_path(c->file, p->handler.plugin);
        if (!resolved) {
            v = map_find(map, "plugin", &pos);
            path_push(&c->path, "plugin");
            return fail_at(c, v->pos, "cannot resolve '%s': %s", c->path.buf,
                           strerror(errno));
        }
        free(p->handler.plugin);
        p->handler.plugin = resolved;
    }
    return 0;
}

static const field handler_fields[] = {
    STR("plugin", P(handler.plugin), F_NONEMPTY),
    STR("builtin", P(handler.builtin), F_NONEMPTY),
    CUSTOM("options", read_options, 0),
};
static const section handler_section = {
    handler_fields, N_FIELDS(handler_fields), handler_check};

/* --- pipelines.NAME.batch --- */

static const field batch_fields[] = {
    INT("max_messages", P(batch.max_messages), 1, 100000),
    INT("max_wait_ms", P(batch.max_wait_ms), 0, 600000),
};
static const section batch_section = {batch_fields, N_FIELDS(batch_fields),
                                      NULL};

/* --- pipelines.NAME.dedup --- */

static int dedup_check(load_ctx *c, cfg_value *map, cfg_pos at, void *base)
{
    cfg_pipeline *p = base;

    p->dedup.enabled = 1;
    return check_header_rule(c, map, at, p->dedup.from, p->dedup.header);
}

/* No default for from: deduplicating by the message key would drop every
 * later event of the same entity, so the choice must be explicit. */
static const field dedup_fields[] = {
    ENUM("from", P(dedup.from), F_REQUIRED, dedup_from_names),
    STR("header", P(dedup.header), F_NONEMPTY),
    {.key = "retention", .kind = F_DURATION, .off = P(dedup.retention_s)},
};
static const section dedup_section = {dedup_fields, N_FIELDS(dedup_fields),
                                      dedup_check};

/* --- pipelines.NAME --- */

static int pipeline_check(load_ctx *c, cfg_value *map, cfg_pos at, void *base)
{
    cfg_pipeline *p = base;

    (void)map;
    (void)at;
    if (!p->group && asprintf(&p->group, "exactly-%s", p->name) < 0) {
        p->group = NULL;
        return fail_nomem(c);
    }
    return 0;
}

static const field pipeline_fields[] = {
    LIST("topics", P(topics), P(n_topics), F_REQUIRED),
    STR("group", P(group), F_NONEMPTY),
    INT("workers", P(workers), 1, 1024),
    ENUM("on_error", P(on_error), 0, on_error_names),
    INT("max_crashes", P(max_crashes), 1, 1000),
    SECTION("id", id_section, 0),
    SECTION("lookup", lookup_section, F_REQUIRED),
    SECTION("handler", handler_section, F_REQUIRED),
    SECTION("batch", batch_section, 0),
    SECTION("dedup", dedup_section, 0),
    PROPS("kafka", P(kafka), P(n_kafka)),
    BOOL("unsafe_read_uncommitted", P(unsafe_read_uncommitted)),
};
static const section pipeline_section = {
    pipeline_fields, N_FIELDS(pipeline_fields), pipeline_check};

static void pipeline_defaults(cfg_pipeline *p)
{
    p->id.from = CFG_FROM_KEY;
    p->id.type = CFG_ID_BIGINT;
    p->id.max_length = 256;
    p->id.non_canonical = CFG_NONCANON_DEAD_LETTER;
    p->lookup.on_missing = CFG_MISSING_SKIP;
    p->lookup.missing_retry_ms = 30000;
    p->on_error = CFG_ERROR_DEAD_LETTER;
    p->max_crashes = 3;
    p->batch.max_messages = 1000;
    p->batch.max_wait_ms = 100;
    p->dedup.retention_s = 7 * 86400;
    p->workers = 1;
}

/* Pipeline names end up in group ids, log lines and table rows. */
static int valid_pipeline_name(const char *name)
{
    size_t len = strlen(name);

    if (len == 0 || len > MAX_PIPELINE_NAME)
        return 0;
    return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                        "0123456789_.-") == len;
}

static int read_pipelines(load_ctx *c, cfg_value *v, cfg_pos key_pos,
                          void *base)
{
    exactly_config *cfg = base;
    size_t i;

    if (is_empty_scalar(v) || (v->kind == CFG_MAP && v->n_items == 0))
        return fail_at(c, key_pos, "'pipelines' must define at least one "
                                   "pipeline");
    if (v->kind != CFG_MAP)
        return fail_at(c, v->pos, "'pipelines' must be a mapping of pipeline "
                                  "names to pipelines, got %s",
                       kind_name(v));
    if (!(cfg->pipelines = calloc(v->n_items, sizeof(cfg_pipeline))))
        return fail_nomem(c);
    cfg->n_pipelines = v->n_items;
    for (i = 0; i < v->n_items; i++) {
        cfg_pipeline *p = &cfg->pipelines[i];
        cfg_value *body = &v->items[i];
        size_t saved = path_push(&c->path, v->keys[i]);

        pipeline_defaults(p);
        p->pos = v->key_pos[i];
        if (!(p->name = strdup(v->keys[i])))
            return fail_nomem(c);
        if (!valid_pipeline_name(p->name))
            return fail_at(c, p->pos, "pipeline name '%s' must be 1 to %d "
                                      "letters, digits, '_', '-' or '.'",
                           p->name, MAX_PIPELINE_NAME);
        if (body->kind != CFG_MAP)
            return fail_at(c, body->pos, "'%s' must be a mapping, got %s",
                           c->path.buf, kind_name(body));
        if (walk_section(c, body, p->pos, &pipeline_section, p))
            return -1;
        path_pop(&c->path, saved);
    }
    return 0;
}

/* --- the top level --- */

static const cfg_prop *find_prop(const cfg_prop *props, size_t n,
                                 const char *name)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(props[i].name, name) == 0)
            return &props[i];
    return NULL;
}

/* The property a pipeline's consumer gets: its own override, else the
 * top-level one. */
static const cfg_prop *effective_prop(const exactly_config *cfg,
                                      const cfg_pipeline *p, const char *name)
{
    const cfg_prop *prop = find_prop(p->kafka, p->n_kafka, name);

    return prop ? prop : find_prop(cfg->kafka, cfg->n_kafka, name);
}

static int check_pipeline_kafka(load_ctx *c, const exactly_config *cfg,
                                const cfg_pipeline *p)
{
    const cfg_prop *prop;

    /* Each pipeline's group is its own; a shared group.id would mix them. */
    if ((prop = find_prop(p->kafka, p->n_kafka, "group.id")))
        return fail_at(c, prop->pos, "'pipelines.%s.kafka.group.id' is not "
                                     "allowed: set 'pipelines.%s.group' "
                                     "instead",
                       p->name, p->name);
    prop = effective_prop(cfg, p, "bootstrap.servers");
    if (!prop)
        return fail_at(c, p->pos, "pipeline '%s' has no 'bootstrap.servers': "
                                  "set it in the top-level 'kafka' section "
                                  "or in 'pipelines.%s.kafka'",
                       p->name, p->name);
    if (prop->value[0] == '\0')
        return fail_at(c, prop->pos, "'bootstrap.servers' must not be empty "
                                     "(pipeline '%s')",
                       p->name);
    /* DESIGN 1.4: aborted transactions must never reach a handler. */
    prop = effective_prop(cfg, p, "isolation.level");
    if (prop && strcmp(prop->value, "read_uncommitted") == 0 &&
        !p->unsafe_read_uncommitted)
        return fail_at(c, prop->pos, "pipeline '%s' would read uncommitted "
                                     "messages: set "
                                     "'pipelines.%s.unsafe_read_uncommitted: "
                                     "true' to allow it",
                       p->name, p->name);
    return 0;
}

static int root_check(load_ctx *c, cfg_value *map, cfg_pos at, void *base)
{
    exactly_config *cfg = base;
    const cfg_prop *prop;
    size_t i;

    (void)map;
    (void)at;
    if ((prop = find_prop(cfg->kafka, cfg->n_kafka, "group.id")))
        return fail_at(c, prop->pos, "'kafka.group.id' is not allowed: each "
                                     "pipeline sets its own 'group'");
    for (i = 0; i < cfg->n_pipelines; i++)
        if (check_pipeline_kafka(c, cfg, &cfg->pipelines[i]))
            return -1;
    return 0;
}

static const enum_name log_format_names[] = {{"logfmt", CFG_LOG_LOGFMT},
                                             {"json", CFG_LOG_JSON},
                                             {NULL, 0}};
static const enum_name log_level_names[] = {{"error", EXACTLY_LOG_ERROR},
                                            {"warn", EXACTLY_LOG_WARN},
                                            {"info", EXACTLY_LOG_INFO},
                                            {"debug", EXACTLY_LOG_DEBUG},
                                            {NULL, 0}};
static const field log_fields[] = {
    ENUM("format", C(log.format), 0, log_format_names),
    ENUM("level", C(log.level), 0, log_level_names),
};
static const section log_section = {log_fields, N_FIELDS(log_fields), NULL};

static const field root_fields[] = {
    SECTION("log", log_section, 0),
    PROPS("kafka", C(kafka), C(n_kafka)),
    SECTION("postgres", postgres_section, F_REQUIRED),
    CUSTOM("pipelines", read_pipelines, F_REQUIRED),
};
static const section root_section = {root_fields, N_FIELDS(root_fields),
                                     root_check};

static void config_defaults(exactly_config *cfg)
{
    cfg->log.format = CFG_LOG_LOGFMT;
    cfg->log.level = EXACTLY_LOG_INFO;
    cfg->postgres.statement_timeout_ms = 30000;
    cfg->postgres.lock_timeout_ms = 10000;
    cfg->postgres.connect_timeout_s = 10;
    cfg->postgres.idle_in_transaction_timeout_ms = 60000;
}

/* ------------------------------------------------------------------ */
/* Public functions                                                    */
/* ------------------------------------------------------------------ */

exactly_err exactly_config_load(const char *path, exactly_config **out,
                                char *errbuf, size_t errbuf_size)
{
    load_ctx c = {.file = path, .err = errbuf, .err_size = errbuf_size};
    cfg_value root = {0};
    exactly_config *cfg = NULL;

    if (errbuf_size > 0)
        errbuf[0] = '\0';
    key_comparisons = 0;
    if (!out || !path)
        return EXACTLY_EINVAL;
    *out = NULL;
    if (read_tree(&c, &root))
        goto fail;
    if (root.kind != CFG_MAP) {
        if (is_empty_scalar(&root))
            fail_at(&c, root.pos, "the configuration is empty: expected a "
                                  "mapping with 'postgres' and 'pipelines'");
        else
            fail_at(&c, root.pos, "the configuration must be a mapping, got "
                                  "%s",
                    kind_name(&root));
        goto fail;
    }
    if (!(cfg = calloc(1, sizeof(*cfg))) || !(cfg->path = strdup(path))) {
        fail_nomem(&c);
        goto fail;
    }
    config_defaults(cfg);
    if (walk_section(&c, &root, root.pos, &root_section, cfg))
        goto fail;
    value_clear(&root);
    *out = cfg;
    return EXACTLY_OK;

fail:
    value_clear(&root);
    exactly_config_free(cfg);
    return c.rc != EXACTLY_OK ? c.rc : EXACTLY_ECONFIG;
}

static void pipeline_free(cfg_pipeline *p)
{
    free(p->name);
    free_strings(p->topics, p->n_topics);
    free(p->group);
    free(p->id.header);
    free(p->lookup.table);
    free(p->lookup.id_column);
    free_strings(p->lookup.columns, p->lookup.n_columns);
    free(p->lookup.sql);
    free(p->lookup.key_column);
    free(p->handler.plugin);
    free(p->handler.builtin);
    value_clear(&p->handler.options);
    free(p->dedup.header);
    free_props(p->kafka, p->n_kafka);
}

void exactly_config_free(exactly_config *cfg)
{
    size_t i;

    if (!cfg)
        return;
    free(cfg->path);
    free_props(cfg->kafka, cfg->n_kafka);
    free(cfg->postgres.conninfo);
    free(cfg->postgres.schema);
    for (i = 0; i < cfg->n_pipelines; i++)
        pipeline_free(&cfg->pipelines[i]);
    free(cfg->pipelines);
    free(cfg);
}

const cfg_pipeline *exactly_config_pipeline(const exactly_config *cfg,
                                            const char *name)
{
    size_t i;

    if (!cfg || !name)
        return NULL;
    for (i = 0; i < cfg->n_pipelines; i++)
        if (strcmp(cfg->pipelines[i].name, name) == 0)
            return &cfg->pipelines[i];
    return NULL;
}

int exactly_config_is_secret(const char *property)
{
    static const char *const marks[] = {"password", "secret",
                                        "sasl.oauthbearer.config",
                                        "ssl.key.pem", "ssl_key"};
    size_t i;

    if (!property)
        return 0;
    for (i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
        if (strcasestr(property, marks[i]))
            return 1;
    return 0;
}

unsigned long long exactly_config_key_comparisons(void)
{
    return key_comparisons;
}

const char *exactly_id_type_name(cfg_id_type t)
{
    size_t i;

    for (i = 0; id_type_names[i].name; i++)
        if (id_type_names[i].value == (int)t)
            return id_type_names[i].name;
    return "unknown";
}
