/*
 * tree.c - libyaml's event stream as a tree of cfg_value (tree.h), and the
 * helpers that read such a tree (schema.h).
 */
#include "config/tree.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "config/config_env.h"
#include "hash.h"

/* Deeper nesting than any real config needs; the tree builder and the free
 * function recurse, so a hostile file must not be able to go deeper. */
#define MAX_DEPTH 64

/* ------------------------------------------------------------------ */
/* Reading a tree                                                      */
/* ------------------------------------------------------------------ */

void exactly_cfg_value_clear(cfg_value *v)
{
    size_t i;

    if (!v)
        return;
    for (i = 0; i < v->n_items; i++) {
        exactly_cfg_value_clear(&v->items[i]);
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

cfg_value *exactly_cfg_map_find(const cfg_value *map, const char *key,
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

const char *exactly_cfg_shown(const cfg_value *v)
{
    return v->raw ? v->raw : v->scalar;
}

const char *exactly_cfg_kind_name(const cfg_value *v)
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

/* So that a section whose entries are all commented out is still valid. */
int exactly_cfg_is_empty(const cfg_value *v)
{
    return v->kind == CFG_SCALAR && v->scalar[0] == '\0';
}

/* ------------------------------------------------------------------ */
/* Building a tree                                                     */
/* ------------------------------------------------------------------ */

/* Key comparisons made by duplicate detection in the last load. */
static unsigned long long key_comparisons;

typedef struct builder {
    cfg_ctx *c;
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
        return exactly_cfg_fail_nomem(b->c);
    if (p->error == YAML_READER_ERROR)
        return exactly_cfg_fail_at(b->c, offset_pos(b, p->problem_offset),
                                   "invalid YAML: %s", problem);
    at = mark_pos(p->problem_mark);
    if (p->context) {
        cfg_pos ctx = mark_pos(p->context_mark);
        return exactly_cfg_fail_at(b->c, at, "invalid YAML: %s (%s at %d:%d)",
                                   problem, p->context, ctx.line, ctx.column);
    }
    return exactly_cfg_fail_at(b->c, at, "invalid YAML: %s", problem);
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
                return exactly_cfg_fail_at(b->c, pos,
                                           "YAML tag '!!%.100s' does not fit "
                                           "%s (in '%s')",
                                           name, fits[i].what, where);
        return exactly_cfg_fail_at(b->c, pos,
                                   "YAML tag '!!%.100s' is not supported (in "
                                   "'%s'): only !!str, !!map and !!seq are",
                                   name, where);
    }
    return exactly_cfg_fail_at(b->c, pos,
                               "YAML tag '%s%.100s%s' is not supported (in "
                               "'%s'): only !!str, !!map and !!seq are",
                               tag[0] == '!' ? "" : "!<", tag,
                               tag[0] == '!' ? "" : ">", where);
}

static int build_scalar(builder *b, const yaml_event_t *ev, cfg_value *out)
{
    cfg_ctx *c = b->c;
    const char *text = (const char *)ev->data.scalar.value;
    char why[300];
    int used_env = 0;
    exactly_err rc;

    out->kind = CFG_SCALAR;
    out->pos = mark_pos(ev->start_mark);
    if (has_nul(ev))
        return exactly_cfg_fail_at(c, out->pos, "'%s' contains a NUL byte",
                                   c->path.buf);
    /* A plain null word is no value, unless tagged !!str (the only tag
     * check_tag lets through on a scalar). */
    if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !event_tag(ev) &&
        is_null_word(text))
        text = "";
    rc = exactly_env_expand(text, &out->scalar, &used_env, why, sizeof(why));
    if (rc == EXACTLY_ENOMEM)
        return exactly_cfg_fail_nomem(c);
    if (rc != EXACTLY_OK) {
        if (c->path.len == 0)
            return exactly_cfg_fail_at(c, out->pos, "%s", why);
        return exactly_cfg_fail_at(c, out->pos, "%s (in '%s')", why,
                                   c->path.buf);
    }
    if (used_env && !(out->raw = strdup(text)))
        return exactly_cfg_fail_nomem(c);
    return 0;
}

static int build_node(builder *b, yaml_event_t *ev, cfg_value *out, int depth);

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
    cfg_ctx *c = b->c;
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
            exactly_cfg_fail_at(c, key_pos,
                                "keys must be plain strings (in '%s')",
                                c->path.len ? c->path.buf : "the top level");
            goto cleanup;
        }
        if (check_tag(b, &ev, key_pos)) {
            yaml_event_delete(&ev);
            goto cleanup;
        }
        key = (const char *)ev.data.scalar.value;
        saved = exactly_cfg_path_push(&c->path, key);
        if (key_index_reserve(&ix) || grow(out, &cap)) {
            yaml_event_delete(&ev);
            exactly_cfg_fail_nomem(c);
            goto cleanup;
        }
        h = exactly_hash_str(key);
        dup = key_index_find(&ix, out, key, h);
        if (dup != SIZE_MAX) {
            yaml_event_delete(&ev);
            exactly_cfg_fail_at(
                c, key_pos, "duplicate key '%s' (first at %d:%d)", c->path.buf,
                out->key_pos[dup].line, out->key_pos[dup].column);
            goto cleanup;
        }
        n = out->n_items;
        out->keys[n] = strdup(key);
        yaml_event_delete(&ev);
        if (!out->keys[n]) {
            exactly_cfg_fail_nomem(c);
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
        exactly_cfg_path_pop(&c->path, saved);
    }

cleanup:
    free(ix.slots);
    return rc;
}

static int build_sequence(builder *b, cfg_value *out, int depth)
{
    cfg_ctx *c = b->c;
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
            return exactly_cfg_fail_nomem(c);
        }
        n = out->n_items;
        memset(&out->items[n], 0, sizeof(out->items[n]));
        out->n_items++;
        saved = exactly_cfg_path_push_index(&c->path, n);
        rc = build_node(b, &ev, &out->items[n], depth + 1);
        exactly_cfg_path_pop(&c->path, saved);
        if (rc)
            return -1;
    }
}

/* Builds the node that ev starts into out and consumes ev. */
static int build_node(builder *b, yaml_event_t *ev, cfg_value *out, int depth)
{
    cfg_ctx *c = b->c;
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
        return exactly_cfg_fail_at(
            c, pos, "YAML aliases are not supported (in '%s')", c->path.buf);
    if (type != YAML_MAPPING_START_EVENT && type != YAML_SEQUENCE_START_EVENT)
        return exactly_cfg_fail_at(
            c, pos, "unexpected YAML structure (in '%s')", c->path.buf);
    if (depth >= MAX_DEPTH)
        return exactly_cfg_fail_at(c, pos,
                                   "nesting deeper than %d levels (in '%s')",
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
        exactly_cfg_fail_at(b->c, mark_pos(ev.start_mark), "%s", what);
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
        return (root->scalar = strdup("")) ? 0 : exactly_cfg_fail_nomem(b->c);
    }
    yaml_event_delete(&ev);
    if (next_event(b, &ev))
        return -1;
    if (build_node(b, &ev, root, 0))
        return -1;
    if (expect_event(b, YAML_DOCUMENT_END_EVENT,
                     "expected the end of the "
                     "document"))
        return -1;
    return expect_event(b, YAML_STREAM_END_EVENT,
                        "the file must hold one YAML document, found more");
}

int exactly_cfg_read_tree(cfg_ctx *c, cfg_value *root)
{
    builder b = {.c = c};
    int rc;

    b.text = exactly_cfg_read_file(c, &b.text_len);
    if (!b.text)
        return -1;
    if (!yaml_parser_initialize(&b.parser)) {
        free((char *)b.text);
        return exactly_cfg_fail_nomem(c);
    }
    yaml_parser_set_input_string(&b.parser, (const unsigned char *)b.text,
                                 b.text_len);
    rc = parse_document(&b, root);
    yaml_parser_delete(&b.parser);
    free((char *)b.text);
    return rc;
}

void exactly_cfg_tree_reset_stats(void)
{
    key_comparisons = 0;
}

unsigned long long exactly_config_key_comparisons(void)
{
    return key_comparisons;
}
