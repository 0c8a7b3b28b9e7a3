/*
 * test_config_tables.c - the schema tables of the configuration
 * (lib/config/tables*.c) as the one place defaults and descriptions live:
 *
 * - every default in the tables is read by the walker like a value from a
 *   file, and gives the values the runtime relies on;
 * - every key has a description and every optional scalar key a default
 *   (or words saying what its absence means), so docs/CONFIGURATION.md
 *   has no hole;
 * - config/ledger.yaml, which the README points at as the example of every
 *   key, writes every key of the tables (set or commented out), and each
 *   "default X" in its comments is the table's default of that key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/schema.h"
#include "config/tables.h"
#include "exactly/handler.h"
#include "testkit.h"

static int failures;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "FAIL: %s:%d: ", __FILE__, __LINE__);              \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            failures++;                                                        \
        }                                                                      \
    } while (0)

/* ------------------------------------------------------------------ */
/* Defaults                                                            */
/* ------------------------------------------------------------------ */

static void test_defaults(void)
{
    exactly_config cfg = {0};
    cfg_pipeline p = {0};
    cfg_ctx c = {.file = "tables"};
    char err[512] = "";

    c.err = err;
    c.err_size = sizeof(err);
    CHECK(exactly_cfg_defaults(&c, (cfg_pos){1, 1},
                               &exactly_cfg_root_section, &cfg) == 0,
          "top-level defaults refused: %s", err);
    CHECK(exactly_cfg_defaults(&c, (cfg_pos){1, 1},
                               &exactly_cfg_pipeline_section, &p) == 0,
          "pipeline defaults refused: %s", err);
    CHECK(c.rc == EXACTLY_OK, "rc %d: %s", (int)c.rc, err);

    CHECK(cfg.log.format == CFG_LOG_LOGFMT, "log.format %d", cfg.log.format);
    CHECK(cfg.log.level == EXACTLY_LOG_INFO, "log.level %d", cfg.log.level);
    CHECK(cfg.postgres.schema && !strcmp(cfg.postgres.schema, "exactly"),
          "postgres.schema %s", cfg.postgres.schema);
    CHECK(cfg.postgres.statement_timeout_ms == 30000, "statement_timeout %d",
          cfg.postgres.statement_timeout_ms);
    CHECK(cfg.postgres.lock_timeout_ms == 10000, "lock_timeout %d",
          cfg.postgres.lock_timeout_ms);
    CHECK(cfg.postgres.connect_timeout_s == 10, "connect_timeout %d",
          cfg.postgres.connect_timeout_s);
    CHECK(cfg.postgres.idle_in_transaction_timeout_ms == 60000,
          "idle_in_transaction %d",
          cfg.postgres.idle_in_transaction_timeout_ms);
    CHECK(cfg.postgres.client_timeout_ms == 0, "client_timeout %d",
          cfg.postgres.client_timeout_ms);

    CHECK(p.workers == 1, "workers %d", p.workers);
    CHECK(p.on_error == CFG_ERROR_DEAD_LETTER, "on_error %d", p.on_error);
    CHECK(p.max_crashes == 3, "max_crashes %d", p.max_crashes);
    CHECK(p.id.from == CFG_FROM_KEY && p.id.type == CFG_ID_BIGINT &&
              p.id.max_length == 256 &&
              p.id.non_canonical == CFG_NONCANON_DEAD_LETTER,
          "id %d %d %zu %d", p.id.from, p.id.type, p.id.max_length,
          p.id.non_canonical);
    CHECK(p.lookup.id_column && !strcmp(p.lookup.id_column, "id"),
          "lookup.id_column %s", p.lookup.id_column);
    CHECK(p.lookup.on_missing == CFG_MISSING_SKIP &&
              p.lookup.missing_retry_ms == 30000,
          "lookup %d %d", p.lookup.on_missing, p.lookup.missing_retry_ms);
    CHECK(p.batch.max_messages == 1000 && p.batch.max_wait_ms == 100,
          "batch %d %d", p.batch.max_messages, p.batch.max_wait_ms);
    CHECK(p.dedup.enabled == 0 && p.dedup.retention_s == 7 * 86400,
          "dedup %d %lld", p.dedup.enabled, (long long)p.dedup.retention_s);
    CHECK(p.unsafe_read_uncommitted == 0, "unsafe_read_uncommitted %d",
          p.unsafe_read_uncommitted);
    exactly_cfg_release(&exactly_cfg_root_section, &cfg);
    exactly_cfg_release(&exactly_cfg_pipeline_section, &p);
}

/* ------------------------------------------------------------------ */
/* Walking the tables                                                  */
/* ------------------------------------------------------------------ */

/* Calls fn for every field below s, with its dotted path (pipelines.NAME
 * for the entries of a mapping of sections). */
static void each_field(const char *path, const cfg_section *s,
                       void (*fn)(const char *path, const cfg_field *f,
                                  void *arg),
                       void *arg)
{
    char sub[256];
    size_t i;

    for (i = 0; i < s->n_fields; i++) {
        const cfg_field *f = &s->fields[i];

        snprintf(sub, sizeof(sub), "%s%s%s", path, path[0] ? "." : "",
                 f->key);
        fn(sub, f, arg);
        if (f->type == CFG_F_SECTION)
            each_field(sub, f->sub, fn, arg);
        else if (f->type == CFG_F_CUSTOM && f->sub)
            each_field(strcat(sub, ".NAME"), f->sub, fn, arg);
    }
}

static void check_documented(const char *path, const cfg_field *f, void *arg)
{
    (void)arg;
    if (f->type == CFG_F_SECTION) {
        CHECK(f->sub && f->sub->doc && f->sub->doc[0],
              "section %s has no description", path);
        return;
    }
    CHECK(f->doc && f->doc[0], "%s has no description", path);
    /* An optional key either has a default or says what its absence
     * means; a collection is empty, a section takes its keys' defaults. */
    if (!(f->flags & CFG_REQUIRED) && f->type != CFG_F_PROPS)
        CHECK(f->def || f->def_doc || f->type == CFG_F_STR,
              "%s is optional but has no default", path);
    CHECK(!(f->def && f->def_doc), "%s has two defaults", path);
}

static void test_documented(void)
{
    CHECK(exactly_cfg_root_section.doc && exactly_cfg_pipeline_section.doc,
          "the top level or pipelines.NAME has no description");
    each_field("", &exactly_cfg_root_section, check_documented, NULL);
}

/* ------------------------------------------------------------------ */
/* config/ledger.yaml                                                  */
/* ------------------------------------------------------------------ */

#define MAX_KEYS 200

/* One key line of the example: its dotted path (a pipeline's name
 * replaced by NAME) and the "default X" of its comment, if any. */
typedef struct example_key {
    char path[256];
    char def[128];
    int has_def;
    int line;
} example_key;

typedef struct example {
    example_key keys[MAX_KEYS];
    size_t n;
} example;

/* The field at a dotted path written in the example, or NULL when the
 * path leaves the tables (librdkafka properties, handler options). */
static const cfg_field *field_at(const char *path)
{
    const cfg_section *s = &exactly_cfg_root_section;
    char buf[256], *seg, *save = NULL;
    const cfg_field *f = NULL;
    size_t i;

    snprintf(buf, sizeof(buf), "%s", path);
    for (seg = strtok_r(buf, ".", &save); seg;
         seg = strtok_r(NULL, ".", &save)) {
        if (f && f->type == CFG_F_CUSTOM && f->sub &&
            strcmp(seg, "NAME") == 0) {
            s = f->sub;
            f = NULL;
            continue;
        }
        if (f && f->type != CFG_F_SECTION)
            return NULL;
        if (f)
            s = f->sub;
        for (i = 0, f = NULL; i < s->n_fields && !f; i++)
            if (strcmp(s->fields[i].key, seg) == 0)
                f = &s->fields[i];
        if (!f)
            return NULL;
    }
    return f;
}

/* A key line: KEY: ... with KEY in [a-z0-9_.], written or commented out
 * ("# KEY: ..."). *indent gets its depth: for a commented-out line the
 * column of '#' plus the spaces after it, less the one space of "# ". */
static const char *key_of(const char *line, size_t *indent, size_t *len)
{
    const char *p = line + strspn(line, " ");

    *indent = (size_t)(p - line);
    if (*p == '#') {
        size_t spaces = strspn(p + 1, " ");

        if (spaces == 0)
            return NULL;
        *indent += spaces - 1;
        p += 1 + spaces;
    }
    *len = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_.");
    if (*len == 0 || p[*len] != ':' || (p[*len + 1] && p[*len + 1] != ' '))
        return NULL;
    return p;
}

/* "default X" in the comment after the key's value: X up to ';' or the
 * end of the line. */
static int comment_default(const char *key, char *out, size_t size)
{
    const char *hash = strstr(key, " #");
    const char *d = hash ? strstr(hash, "default ") : NULL;
    size_t n;

    if (!d)
        return 0;
    d += strlen("default ");
    n = strcspn(d, ";\n");
    while (n > 0 && d[n - 1] == ' ')
        n--;
    snprintf(out, size, "%.*s", (int)n, d);
    return 1;
}

static void read_example(const char *path, example *ex)
{
    char *text = tk_read_file(path), *line, *save = NULL;
    struct {
        size_t indent;
        char key[64];
    } stack[16];
    size_t depth = 0, i;
    int lineno = 0;

    TK_CHECK(text != NULL, "cannot read %s", path);
    for (line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        size_t indent, len;
        const char *key = key_of(line, &indent, &len);
        example_key *k;

        lineno++;
        if (!key)
            continue;
        while (depth > 0 && stack[depth - 1].indent >= indent)
            depth--;
        TK_CHECK(depth < 16 && ex->n < MAX_KEYS, "%s: too deep or too long",
                 path);
        snprintf(stack[depth].key, sizeof(stack[depth].key), "%.*s",
                 (int)len, key);
        /* A pipeline's or relay's name: the second level under pipelines
         * or relays. */
        if (depth == 1 && (strcmp(stack[0].key, "pipelines") == 0 ||
                           strcmp(stack[0].key, "relays") == 0))
            snprintf(stack[depth].key, sizeof(stack[depth].key), "NAME");
        stack[depth++].indent = indent;
        k = &ex->keys[ex->n++];
        k->line = lineno;
        k->path[0] = '\0';
        for (i = 0; i < depth; i++)
            snprintf(k->path + strlen(k->path),
                     sizeof(k->path) - strlen(k->path), "%s%s",
                     i ? "." : "", stack[i].key);
        k->has_def = comment_default(key, k->def, sizeof(k->def));
    }
    free(text);
}

/* A default as the example writes it: the table's text, or the words of
 * def_doc without their backticks. */
static void default_text(const cfg_field *f, char *out, size_t size)
{
    const char *s = f->def ? f->def : f->def_doc;
    size_t n = 0;

    for (; s && *s && n + 1 < size; s++)
        if (*s != '`')
            out[n++] = *s;
    out[n] = '\0';
}

static void check_in_example(const char *path, const cfg_field *f, void *arg)
{
    const example *ex = arg;
    const example_key *k = NULL;
    char want[128];
    size_t i;

    for (i = 0; i < ex->n && !k; i++)
        if (strcmp(ex->keys[i].path, path) == 0)
            k = &ex->keys[i];
    CHECK(k != NULL, "config/ledger.yaml does not write '%s'", path);
    if (!k || f->type == CFG_F_SECTION || (!f->def && !f->def_doc))
        return;
    default_text(f, want, sizeof(want));
    CHECK(k->has_def, "config/ledger.yaml:%d: '%s' does not say its default "
          "('# ... default %s')", k->line, path, want);
    CHECK(!k->has_def || strcmp(k->def, want) == 0,
          "config/ledger.yaml:%d: '%s' says 'default %s', the tables say "
          "'default %s'", k->line, path, k->def, want);
}

static void test_example(void)
{
    const char *src = getenv("EXACTLY_SOURCE_DIR");
    char path[1024];
    example *ex = calloc(1, sizeof(*ex));
    size_t i;

    TK_CHECK(src != NULL, "EXACTLY_SOURCE_DIR is not set");
    TK_CHECK(ex != NULL, "out of memory");
    snprintf(path, sizeof(path), "%s/config/ledger.yaml", src);
    read_example(path, ex);
    each_field("", &exactly_cfg_root_section, check_in_example, ex);
    /* A default stated for a key of the tables must be the table's. */
    for (i = 0; i < ex->n; i++) {
        const cfg_field *f = field_at(ex->keys[i].path);

        if (ex->keys[i].has_def)
            CHECK(f && (f->def || f->def_doc),
                  "config/ledger.yaml:%d: '%s' states a default the tables "
                  "do not have",
                  ex->keys[i].line, ex->keys[i].path);
    }
    tk_note("config/ledger.yaml: %zu key lines checked", ex->n);
    free(ex);
}

int main(void)
{
    test_defaults();
    test_documented();
    test_example();
    if (failures)
        fprintf(stderr, "test_config_tables: %d check(s) failed\n", failures);
    else
        printf("test_config_tables: all checks passed\n");
    return failures ? 1 : 0;
}
