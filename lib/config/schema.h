/*
 * schema.h - one walker that checks a YAML tree (cfg_value, config.h)
 * against a table of fields and fills a struct with what it reads.
 *
 * exactly's own configuration (config/tables.c) and a handler's declared
 * options (plugin/options.c) are both read with it, so a key is looked up,
 * typed, range-checked, defaulted and named in messages the same way
 * wherever it is written. Each field carries where its value goes in the
 * struct being filled (the base), its type, its range, its default (as
 * YAML text, read exactly like a value written in the file) and a
 * description; docs/CONFIGURATION.md is generated from the same tables
 * (config/reference.h).
 *
 * Errors: every function that can fail returns -1 after writing one
 * message into the context (the first error wins, later ones are
 * dropped) and setting ctx->rc; 0 on success.
 */
#ifndef EXACTLY_CONFIG_SCHEMA_H
#define EXACTLY_CONFIG_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "exactly/error.h"

/* How messages name what they are about: the configuration speaks of
 * keys by their dotted path, a handler of its options by name. */
typedef struct cfg_voice {
    const char *noun;      /* "unknown NOUN 'x'", "missing required NOUN" */
    const char *subject;   /* names the key at the path before a complaint,
                              with one %s: "'%s'", "option '%s'" */
    const char *who;       /* NULL, or what follows "FILE:LINE:COLUMN: ",
                              with one %s for cfg_ctx.who */
    const char *no_fields; /* ends "unknown NOUN 'x' (...)" when the table
                              has no fields */
    const char *nomem;     /* out of memory: after "FILE: ", or after who */
    int by_key;            /* 0: a key is named by its dotted path and a
                              list item by its index ('a.b[0]'); 1 (a flat
                              table): by the key alone, and a list item is
                              counted from 1 ("item 1") */
} cfg_voice;

/* The dotted path of the key being read ("pipelines.ledger.batch"). */
typedef struct cfg_key_path {
    char buf[512];
    size_t len;
} cfg_key_path;

/* One walk (or one tree build): where messages go and what they say. */
typedef struct cfg_ctx {
    const char *file;       /* as the caller gave it: messages use it
                               verbatim */
    const char *who;        /* fills voice->who */
    const cfg_voice *voice; /* NULL: the configuration's */
    char *err;
    size_t err_size;
    exactly_err rc;         /* EXACTLY_OK until the first failure */
    cfg_key_path path;
    const char *key;        /* the key being read, for a by_key voice */
    char subject[2048];     /* scratch for exactly_cfg_subject() */
} cfg_ctx;

typedef enum cfg_field_type {
    CFG_F_STR = 1,  /* char *; min..max unused, max > 0: at most max bytes */
    CFG_F_INT,      /* int, range min..max */
    CFG_F_SIZE,     /* size_t, range min..max */
    CFG_F_INT64,    /* int64_t, range min..max */
    CFG_F_BOOL,     /* int 0/1 */
    CFG_F_ENUM,     /* int, one of names */
    CFG_F_DURATION, /* int64_t seconds, from "7d", "12h", "30m", "45s", "60" */
    CFG_F_STRLIST,  /* char ** + size_t count at off_n; a scalar is one item */
    CFG_F_STRMAP,   /* char ** keys at off, char ** values at off_v, size_t
                       count at off_n: a mapping of scalars */
    CFG_F_PROPS,    /* cfg_prop * + size_t count at off_n: librdkafka
                       properties, passed through */
    CFG_F_SECTION,  /* a mapping read with sub, into the same base */
    CFG_F_CUSTOM    /* read by read(); sub, when set, is the section each
                       entry of the mapping it reads follows (NAME in
                       pipelines.NAME) */
} cfg_field_type;

#define CFG_REQUIRED 1u /* a missing key is an error */
#define CFG_NONEMPTY 2u /* STR: not ""; STRLIST: at least one item, and no
                           item "" */

typedef struct cfg_enum_name {
    const char *name;
    int value;
} cfg_enum_name;

typedef struct cfg_section cfg_section;
typedef struct cfg_field cfg_field;

struct cfg_field {
    const char *key;
    cfg_field_type type;
    unsigned flags;
    size_t off;                 /* where the value goes in the base */
    size_t off_n;               /* STRLIST, STRMAP, PROPS: the count */
    size_t off_v;               /* STRMAP: the values */
    int64_t min, max;           /* see cfg_field_type */
    const cfg_enum_name *names; /* ENUM: NULL-terminated */
    const cfg_section *sub;     /* SECTION, CUSTOM */
    /* CUSTOM: reads v (it may take v's subtree, leaving v zeroed). */
    int (*read)(cfg_ctx *c, const cfg_field *f, cfg_value *v,
                cfg_pos key_pos, void *base);
    /* CUSTOM: frees what read() stored in base. */
    void (*release)(const cfg_field *f, void *base);
    const char *def;       /* the default, as YAML text; NULL: none */
    /* For the reference only: a default that other keys decide (computed
     * by the section's check), or what no value means. */
    const char *def_doc;
    const char *type_doc;  /* for the reference: CUSTOM's type */
    const char *doc;       /* for the reference: what the key does */
};

struct cfg_section {
    const cfg_field *fields;
    size_t n_fields;
    /* Rules across keys and defaults that depend on other keys: run after
     * every key was read, required keys were found and defaults were
     * filled in; at is where the section is named. NULL: none. */
    int (*check)(cfg_ctx *c, cfg_value *map, cfg_pos at, void *base);
    const char *doc; /* for the reference: the section, and its check's
                        rules in words */
};

#define CFG_N_FIELDS(a) (sizeof(a) / sizeof((a)[0]))

/*
 * Reads every key of map with the fields of s into base: an unknown key is
 * refused naming the valid ones, a key given twice is refused, each value
 * is read by its field's type; then every field not given is checked
 * (CFG_REQUIRED: refused, at is where the section is named) or gets its
 * default (a SECTION not given gets its fields' defaults, and no check);
 * then s->check runs. Returns 0, or -1 with the message in c.
 */
int exactly_cfg_walk(cfg_ctx *c, cfg_value *map, cfg_pos at,
                     const cfg_section *s, void *base);

/* Gives every field of s (and of its sections) its default, as if the
 * section were written with no keys but without refusing missing required
 * keys or running checks. Returns 0, or -1 with the message in c. */
int exactly_cfg_defaults(cfg_ctx *c, cfg_pos at, const cfg_section *s,
                         void *base);

/* Frees everything the fields of s hold in base (NULL-safe members) and
 * zeroes those members. */
void exactly_cfg_release(const cfg_section *s, void *base);

/* ---- messages ---- */

/* Writes "FILE:LINE:COLUMN: [who] message", control bytes escaped, unless
 * an error is already recorded; sets c->rc to EXACTLY_ECONFIG. Returns -1. */
int exactly_cfg_fail_at(cfg_ctx *c, cfg_pos pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A failure with no position in the file: "FILE: what", with rc. */
int exactly_cfg_fail_file(cfg_ctx *c, exactly_err rc, const char *what);

/* Out of memory (EXACTLY_ENOMEM), in the voice's words. Returns -1. */
int exactly_cfg_fail_nomem(cfg_ctx *c);

/* "missing required key 'PATH.key'" at at. Returns -1. */
int exactly_cfg_fail_missing(cfg_ctx *c, cfg_pos at, const char *key);

/* How c's messages speak: c->voice, or the configuration's. */
const cfg_voice *exactly_cfg_voice(const cfg_ctx *c);

/* The key being read as the voice names it: its dotted path, or the key
 * alone. */
const char *exactly_cfg_name(const cfg_ctx *c);

/* The key at the current path as a complaint names it ("'a.b'", "option
 * 'b'"), in c's scratch buffer: valid until the next call. */
const char *exactly_cfg_subject(cfg_ctx *c);

/* Appends ".key" (or "key" at the root), or "[index]", and returns the
 * length to restore with exactly_cfg_path_pop(). A path too long for the
 * buffer is cut, never overrun. */
size_t exactly_cfg_path_push(cfg_key_path *p, const char *key);
size_t exactly_cfg_path_push_index(cfg_key_path *p, size_t index);
void exactly_cfg_path_pop(cfg_key_path *p, size_t saved);

/* ---- the tree ---- */

/* Frees what v holds and zeroes it (NULL-safe). */
void exactly_cfg_value_clear(cfg_value *v);

/* The value under key in map, or NULL; *key_pos (if given) gets the key's
 * position. */
cfg_value *exactly_cfg_map_find(const cfg_value *map, const char *key,
                                cfg_pos *key_pos);

/* "a mapping", "a list", "a scalar". */
const char *exactly_cfg_kind_name(const cfg_value *v);

/* A scalar as messages may show it: as written when it held ${...}, so a
 * value from the environment (a secret) is never echoed. */
const char *exactly_cfg_shown(const cfg_value *v);

/* Whether v is an empty scalar, which is what "key:" with no value gives:
 * it stands for an empty mapping or list. */
int exactly_cfg_is_empty(const cfg_value *v);

#endif
