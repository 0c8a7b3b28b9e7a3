/*
 * tables_pipeline.c - the schema of one pipeline (pipelines.NAME) and of
 * its sections, with the rules across keys that the walker runs once a
 * section is read (tables.h).
 */
#include "config/tables.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define P(member) offsetof(cfg_pipeline, member)

/* The position of key in map (where the section is, when it is absent),
 * and the complaint "'PATH.key' why" there. */
static int fail_key(cfg_ctx *c, cfg_value *map, const char *key,
                    const char *why)
{
    cfg_pos pos = {1, 1};

    exactly_cfg_map_find(map, key, &pos);
    exactly_cfg_path_push(&c->path, key);
    return exactly_cfg_fail_at(c, pos, "'%s' %s", c->path.buf, why);
}

/* A header name goes with from: header and only with it. */
static int check_header_rule(cfg_ctx *c, cfg_value *map, cfg_pos at,
                             cfg_id_from from, const char *header)
{
    if (from == CFG_FROM_HEADER && !header)
        return exactly_cfg_fail_missing(c, at, "header");
    if (from != CFG_FROM_HEADER && header)
        return fail_key(c, map, "header", "applies only with 'from: header'");
    return 0;
}

/* ------------------------------------------------------------------ */
/* pipelines.NAME.id                                                   */
/* ------------------------------------------------------------------ */

static const cfg_enum_name id_from_names[] = {{"key", CFG_FROM_KEY},
                                              {"value", CFG_FROM_VALUE},
                                              {"header", CFG_FROM_HEADER},
                                              {NULL, 0}};
static const cfg_enum_name id_type_names[] = {{"bigint", CFG_ID_BIGINT},
                                              {"text", CFG_ID_TEXT},
                                              {"uuid", CFG_ID_UUID},
                                              {NULL, 0}};
static const cfg_enum_name non_canonical_names[] = {
    {"dead_letter", CFG_NONCANON_DEAD_LETTER},
    {"accept", CFG_NONCANON_ACCEPT},
    {NULL, 0}};

static int id_check(cfg_ctx *c, cfg_value *map, cfg_pos at, void *base)
{
    cfg_pipeline *p = base;

    return check_header_rule(c, map, at, p->id.from, p->id.header);
}

static const cfg_field id_fields[] = {
    {.key = "from", .type = CFG_F_ENUM, .off = P(id.from),
     .names = id_from_names, .def = "key",
     .doc = "Where each message carries the entity's ID: its key, its "
            "value, or a header."},
    {.key = "header", .type = CFG_F_STR, .flags = CFG_NONEMPTY,
     .off = P(id.header),
     .doc = "The header holding the ID: required with `from: header`, "
            "refused otherwise."},
    {.key = "type", .type = CFG_F_ENUM, .off = P(id.type),
     .names = id_type_names, .def = "bigint",
     .doc = "The SQL type of the IDs; the lookup's `$1` is an array of it."},
    {.key = "max_length", .type = CFG_F_SIZE, .off = P(id.max_length),
     .min = 1, .max = 65536, .def = "256",
     .doc = "The longest ID accepted, in bytes as it arrives; a longer one "
            "is dead-lettered as `id too long`."},
    {.key = "non_canonical", .type = CFG_F_ENUM, .off = P(id.non_canonical),
     .names = non_canonical_names, .def = "dead_letter",
     .doc = "An ID written in another spelling than the one PostgreSQL "
            "prints (`007`, `+7`, an upper-case uuid): `dead_letter` "
            "refuses it, since Kafka would put the spellings of one entity "
            "on different partitions; `accept` applies it as the canonical "
            "ID."},
};
static const cfg_section id_section = {
    id_fields, CFG_N_FIELDS(id_fields), id_check,
    "How the entity ID is taken from each message."};

/* ------------------------------------------------------------------ */
/* pipelines.NAME.lookup                                               */
/* ------------------------------------------------------------------ */

static const cfg_enum_name on_missing_names[] = {
    {"skip", CFG_MISSING_SKIP},
    {"dead_letter", CFG_MISSING_DEAD_LETTER},
    {"handler", CFG_MISSING_HANDLER},
    {"retry", CFG_MISSING_RETRY},
    {NULL, 0}};

static int has_string(char **items, size_t n, const char *s)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(items[i], s) == 0)
            return 1;
    return 0;
}

static int lookup_check(cfg_ctx *c, cfg_value *map, cfg_pos at, void *base)
{
    cfg_pipeline *p = base;
    char why[200];

    if (p->lookup.table && p->lookup.sql)
        return fail_key(c, map, "sql",
                        "cannot be set together with 'table': set exactly "
                        "one of them");
    if (!p->lookup.table && !p->lookup.sql)
        return exactly_cfg_fail_at(c, at,
                                   "'%s' needs exactly one of 'table' or "
                                   "'sql'",
                                   c->path.buf);
    if (p->lookup.sql) {
        /* The runtime binds the batch's IDs as one array parameter. */
        if (!strstr(p->lookup.sql, "$1"))
            return fail_key(c, map, "sql",
                            "must take the IDs as $1, as in 'WHERE id = "
                            "ANY($1)'");
        if (exactly_cfg_map_find(map, "id_column", NULL))
            return fail_key(c, map, "id_column", "applies only with 'table'");
        if (exactly_cfg_map_find(map, "columns", NULL))
            return fail_key(c, map, "columns", "applies only with 'table'");
    }
    if (!p->lookup.key_column &&
        !(p->lookup.key_column =
              strdup(p->lookup.table ? p->lookup.id_column : "id")))
        return exactly_cfg_fail_nomem(c);
    /* Rows are matched back to IDs through the key column. */
    if (p->lookup.columns && !has_string(p->lookup.columns,
                                         p->lookup.n_columns,
                                         p->lookup.key_column)) {
        snprintf(why, sizeof(why), "must include the key column '%s'",
                 p->lookup.key_column);
        return fail_key(c, map, "columns", why);
    }
    return 0;
}

static const cfg_field lookup_fields[] = {
    {.key = "table", .type = CFG_F_STR, .flags = CFG_NONEMPTY,
     .off = P(lookup.table),
     .doc = "The table the batch's rows are read from (`name` or "
            "`schema.name`), by `id_column = ANY($1)`; with it the built-in "
            "upsert fuses lookup and write into one statement."},
    {.key = "id_column", .type = CFG_F_STR, .flags = CFG_NONEMPTY,
     .off = P(lookup.id_column), .def = "id",
     .doc = "The table's column holding the ID (with `table` only)."},
    {.key = "columns", .type = CFG_F_STRLIST, .flags = CFG_NONEMPTY,
     .off = P(lookup.columns), .off_n = P(lookup.n_columns),
     .def_doc = "all columns",
     .doc = "The columns read, and so the columns a handler gets (with "
            "`table` only); must include the key column."},
    {.key = "sql", .type = CFG_F_STR, .flags = CFG_NONEMPTY,
     .off = P(lookup.sql),
     .doc = "Your own query instead of `table`; it takes all IDs of the "
            "batch as the array `$1`, as in `WHERE id = ANY($1)`."},
    {.key = "key_column", .type = CFG_F_STR, .flags = CFG_NONEMPTY,
     .off = P(lookup.key_column),
     .def_doc = "`id_column` with `table`, `id` with `sql`",
     .doc = "The result column holding the ID, by which rows are matched "
            "to messages."},
    {.key = "on_missing", .type = CFG_F_ENUM, .off = P(lookup.on_missing),
     .names = on_missing_names, .def = "skip",
     .doc = "An ID the lookup finds no row for: `skip` it, `dead_letter` "
            "it, hand it to the `handler` with no row (a deletion), or "
            "`retry` for `missing_retry_ms`, then dead-letter it."},
    {.key = "missing_retry_ms", .type = CFG_F_INT,
     .off = P(lookup.missing_retry_ms), .min = 0, .max = 3600000,
     .def = "30000",
     .doc = "With `on_missing: retry`: how long to wait for the row."},
};
static const cfg_section lookup_section = {
    lookup_fields, CFG_N_FIELDS(lookup_fields), lookup_check,
    "The entity's current rows, read in the batch's transaction. Set "
    "exactly one of `table` and `sql`."};

/* ------------------------------------------------------------------ */
/* pipelines.NAME.handler                                              */
/* ------------------------------------------------------------------ */

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

static int read_options(cfg_ctx *c, const cfg_field *f, cfg_value *v,
                        cfg_pos key_pos, void *base)
{
    cfg_pipeline *p = base;

    (void)f;
    if (v->kind != CFG_MAP && !exactly_cfg_is_empty(v))
        return exactly_cfg_fail_at(c, v->pos, "'%s' must be a mapping, got %s",
                                   c->path.buf, exactly_cfg_kind_name(v));
    /* Take the subtree: the plugin's declarations check it later. It is
     * located where `options:` is written, so "missing option" errors point
     * there. */
    exactly_cfg_value_clear(&p->handler.options);
    p->handler.options = *v;
    memset(v, 0, sizeof(*v));
    if (p->handler.options.kind != CFG_MAP) {
        /* "options:" with no value: an empty mapping. */
        exactly_cfg_value_clear(&p->handler.options);
        p->handler.options.kind = CFG_MAP;
    }
    p->handler.options.pos = key_pos;
    return 0;
}

static void release_options(const cfg_field *f, void *base)
{
    cfg_pipeline *p = base;

    (void)f;
    exactly_cfg_value_clear(&p->handler.options);
}

/* Names the value of key in a complaint. */
static int fail_value(cfg_ctx *c, cfg_value *map, const char *key,
                      const char *fmt, const char *arg)
{
    cfg_pos pos;
    const cfg_value *v = exactly_cfg_map_find(map, key, &pos);

    exactly_cfg_path_push(&c->path, key);
    return exactly_cfg_fail_at(c, v->pos, fmt, c->path.buf, arg);
}

static int handler_check(cfg_ctx *c, cfg_value *map, cfg_pos at, void *base)
{
    cfg_pipeline *p = base;
    char *resolved;

    p->handler.pos = at;
    if (p->handler.options.kind != CFG_MAP) {
        p->handler.options.kind = CFG_MAP;
        p->handler.options.pos = at;
    }
    p->handler.options_pos = p->handler.options.pos;

    if (p->handler.plugin && p->handler.builtin)
        return fail_key(c, map, "builtin",
                        "cannot be set together with 'plugin': set exactly "
                        "one of them");
    if (!p->handler.plugin && !p->handler.builtin)
        return exactly_cfg_fail_at(c, at,
                                   "'%s' needs exactly one of 'plugin' or "
                                   "'builtin'",
                                   c->path.buf);
    if (p->handler.builtin && strcmp(p->handler.builtin, "upsert") != 0)
        return fail_value(
            c, map, "builtin", "'%s' must be one of upsert, got '%s'",
            exactly_cfg_shown(exactly_cfg_map_find(map, "builtin", NULL)));
    if (p->handler.plugin) {
        resolved = resolve_path(c->file, p->handler.plugin);
        if (!resolved)
            return fail_value(c, map, "plugin", "cannot resolve '%s': %s",
                              strerror(errno));
        free(p->handler.plugin);
        p->handler.plugin = resolved;
    }
    return 0;
}

static const cfg_field handler_fields[] = {
    {.key = "plugin", .type = CFG_F_STR, .flags = CFG_NONEMPTY,
     .off = P(handler.plugin),
     .doc = "The path of a handler plugin (a shared object); a relative "
            "path is resolved against the directory of the configuration "
            "file."},
    {.key = "builtin", .type = CFG_F_STR, .flags = CFG_NONEMPTY,
     .off = P(handler.builtin),
     .doc = "A handler built into exactly: `upsert` (its options are "
            "listed below)."},
    {.key = "options", .type = CFG_F_CUSTOM, .read = read_options,
     .release = release_options, .type_doc = "mapping",
     .def_doc = "empty",
     .doc = "The handler's options, checked against the options it "
            "declares when it is loaded."},
};
static const cfg_section handler_section = {
    handler_fields, CFG_N_FIELDS(handler_fields), handler_check,
    "What applies each batch. Set exactly one of `plugin` and `builtin`."};

/* ------------------------------------------------------------------ */
/* pipelines.NAME.batch and pipelines.NAME.dedup                       */
/* ------------------------------------------------------------------ */

static const cfg_field batch_fields[] = {
    {.key = "max_messages", .type = CFG_F_INT, .off = P(batch.max_messages),
     .min = 1, .max = 100000, .def = "1000",
     .doc = "The most messages applied in one transaction: one "
            "partition's batch, or the small batches of several partitions "
            "together (`max_partitions`)."},
    {.key = "max_wait_ms", .type = CFG_F_INT, .off = P(batch.max_wait_ms),
     .min = 0, .max = 600000, .def = "100",
     .doc = "How long a batch waits to fill before it is applied as it "
            "is. The last batch of a backlog does not wait: once a "
            "partition that had more than a batch waiting has taken all "
            "its log holds, the rest is applied at once. (Not on a topic "
            "written in Kafka transactions: the commit marker after the "
            "last message is never delivered, so the buffer never reaches "
            "the log's end and that batch waits as any other.)"},
    {.key = "max_partitions", .type = CFG_F_INT,
     .off = P(batch.max_partitions), .min = 1, .max = 100000, .def = "256",
     .doc = "The most partitions whose batches are applied in one "
            "transaction. When a partition's batch is due, other partitions "
            "with messages waiting join it, as long as all of them together "
            "hold at most `max_messages` messages (a full batch stays "
            "alone): one fence statement for all of them, one commit. "
            "Should one of them fail, the transaction is rolled back and "
            "each partition "
            "runs alone. 1: one partition per transaction."},
};
static const cfg_section batch_section = {
    batch_fields, CFG_N_FIELDS(batch_fields), NULL,
    "How many messages go into one transaction."};

static const cfg_enum_name dedup_from_names[] = {{"key", CFG_FROM_KEY},
                                                 {"header", CFG_FROM_HEADER},
                                                 {NULL, 0}};

static int dedup_check(cfg_ctx *c, cfg_value *map, cfg_pos at, void *base)
{
    cfg_pipeline *p = base;

    p->dedup.enabled = 1;
    return check_header_rule(c, map, at, p->dedup.from, p->dedup.header);
}

/* No default for from: deduplicating by the message key would drop every
 * later event of the same entity, so the choice must be explicit. */
static const cfg_field dedup_fields[] = {
    {.key = "from", .type = CFG_F_ENUM, .flags = CFG_REQUIRED,
     .off = P(dedup.from), .names = dedup_from_names,
     .doc = "Where the event's unique key is. No default: the message key "
            "would drop every later event of the same entity unless keys "
            "are unique per event."},
    {.key = "header", .type = CFG_F_STR, .flags = CFG_NONEMPTY,
     .off = P(dedup.header),
     .doc = "The header holding the key (such as `event-id`): required "
            "with `from: header`, refused otherwise."},
    {.key = "retention", .type = CFG_F_DURATION, .off = P(dedup.retention_s),
     .def = "7d",
     .doc = "How long a key is kept; older keys are deleted by the running "
            "workers, and the same event arriving after that is applied "
            "again."},
};
static const cfg_section dedup_section = {
    dedup_fields, CFG_N_FIELDS(dedup_fields), dedup_check,
    "Drops an event that arrives twice at different offsets (a producer "
    "retry, an outbox relay publishing again). Writing the section turns it "
    "on. Each key is stored as its SHA-256 in the batch's transaction; a "
    "message whose key is empty or missing is applied without dedup."};

/* ------------------------------------------------------------------ */
/* pipelines.NAME                                                      */
/* ------------------------------------------------------------------ */

static const cfg_enum_name on_error_names[] = {
    {"dead_letter", CFG_ERROR_DEAD_LETTER},
    {"stop", CFG_ERROR_STOP},
    {NULL, 0}};

static int pipeline_check(cfg_ctx *c, cfg_value *map, cfg_pos at, void *base)
{
    cfg_pipeline *p = base;

    (void)map;
    (void)at;
    if (!p->group && asprintf(&p->group, "exactly-%s", p->name) < 0) {
        p->group = NULL;
        return exactly_cfg_fail_nomem(c);
    }
    return 0;
}

static const cfg_field pipeline_fields[] = {
    {.key = "topics", .type = CFG_F_STRLIST,
     .flags = CFG_REQUIRED | CFG_NONEMPTY, .off = P(topics),
     .off_n = P(n_topics),
     .doc = "The Kafka topics read; one topic may be written as a "
            "scalar."},
    {.key = "group", .type = CFG_F_STR, .flags = CFG_NONEMPTY,
     .off = P(group), .def_doc = "`exactly-NAME`",
     .doc = "The Kafka consumer group (`group.id`) of the pipeline's "
            "workers."},
    {.key = "workers", .type = CFG_F_INT, .off = P(workers), .min = 1,
     .max = 1024, .def = "1",
     .doc = "Worker processes `exactly run` starts for the pipeline, all "
            "in its group; a worker beyond the partition count waits as a "
            "standby."},
    {.key = "on_error", .type = CFG_F_ENUM, .off = P(on_error),
     .names = on_error_names, .def = "dead_letter",
     .doc = "A record the handler fails on: `dead_letter` writes it to the "
            "dead-letter table in the batch's transaction and moves on; "
            "`stop` halts the partition."},
    {.key = "max_crashes", .type = CFG_F_INT, .off = P(max_crashes),
     .min = 1, .max = 1000, .def = "3",
     .doc = "Workers lost without a clean stop (killed, crashed) while "
            "one batch was next, before its records are applied one at a "
            "time; a record that kills this many workers alone, inside "
            "the handler, is dead-lettered."},
    {.key = "id", .type = CFG_F_SECTION, .sub = &id_section},
    {.key = "lookup", .type = CFG_F_SECTION, .flags = CFG_REQUIRED,
     .sub = &lookup_section},
    {.key = "handler", .type = CFG_F_SECTION, .flags = CFG_REQUIRED,
     .sub = &handler_section},
    {.key = "batch", .type = CFG_F_SECTION, .sub = &batch_section},
    {.key = "dedup", .type = CFG_F_SECTION, .sub = &dedup_section},
    {.key = "kafka", .type = CFG_F_PROPS, .off = P(kafka),
     .off_n = P(n_kafka),
     .doc = "librdkafka properties of this pipeline's consumer, over those "
            "of the top-level `kafka` section, passed whole (librdkafka "
            "warns that the consumer ignores a producer property written "
            "here); `group.id` is refused (set `group`)."},
    {.key = "unsafe_read_uncommitted", .type = CFG_F_BOOL,
     .off = P(unsafe_read_uncommitted), .def = "false",
     .doc = "Allows `isolation.level: read_uncommitted`, under which "
            "messages of aborted producer transactions reach the "
            "handler."},
};
const cfg_section exactly_cfg_pipeline_section = {
    pipeline_fields, CFG_N_FIELDS(pipeline_fields), pipeline_check,
    "One pipeline: topics read by one consumer group, each message's "
    "entity looked up and handed to one handler. NAME is 1 to 100 letters, "
    "digits, `_`, `-` or `.`."};

const char *exactly_id_type_name(cfg_id_type t)
{
    size_t i;

    for (i = 0; id_type_names[i].name; i++)
        if (id_type_names[i].value == (int)t)
            return id_type_names[i].name;
    return "unknown";
}
