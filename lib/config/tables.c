/*
 * tables.c - the schema of the configuration's top level: log, kafka,
 * postgres and the mapping of pipelines, with the rules across sections
 * (tables.h). The pipelines themselves are in tables_pipeline.c.
 */
#include "config/tables.h"

#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "config/conninfo.h"
#include "exactly/handler.h"

#define C(member) offsetof(exactly_config, member)

/* ------------------------------------------------------------------ */
/* log                                                                 */
/* ------------------------------------------------------------------ */

static const cfg_enum_name log_format_names[] = {{"logfmt", CFG_LOG_LOGFMT},
                                                 {"json", CFG_LOG_JSON},
                                                 {NULL, 0}};
static const cfg_enum_name log_level_names[] = {{"error", EXACTLY_LOG_ERROR},
                                                {"warn", EXACTLY_LOG_WARN},
                                                {"info", EXACTLY_LOG_INFO},
                                                {"debug", EXACTLY_LOG_DEBUG},
                                                {NULL, 0}};

static const cfg_field log_fields[] = {
    {.key = "format", .type = CFG_F_ENUM, .off = C(log.format),
     .names = log_format_names, .def = "logfmt",
     .doc = "One line per event on standard error: `key=value` pairs "
            "(logfmt) or a JSON object."},
    {.key = "level", .type = CFG_F_ENUM, .off = C(log.level),
     .names = log_level_names, .def = "info",
     .doc = "The least severe level written."},
};
static const cfg_section log_section = {log_fields, CFG_N_FIELDS(log_fields),
                                        NULL, "What the processes log."};

/* ------------------------------------------------------------------ */
/* postgres                                                            */
/* ------------------------------------------------------------------ */

static int postgres_check(cfg_ctx *c, cfg_value *map, cfg_pos at, void *base)
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
        v = exactly_cfg_map_find(map, "conninfo", &key_pos);
        exactly_cfg_path_push(&c->path, "conninfo");
        return exactly_cfg_fail_at(c, v ? v->pos : key_pos, "'%s' %s",
                                   c->path.buf, problem);
    }
    /* Settings of the user's that exactly would have to override. */
    problem = exactly_conninfo_conflict(
        cfg->postgres.conninfo,
        exactly_cfg_map_find(map, "connect_timeout_s", NULL) != NULL, why,
        sizeof(why));
    if (problem) {
        v = exactly_cfg_map_find(map, "conninfo", &key_pos);
        return exactly_cfg_fail_at(c, v ? v->pos : key_pos, "%s", problem);
    }
    return 0;
}

static const cfg_field postgres_fields[] = {
    {.key = "conninfo", .type = CFG_F_STR, .flags = CFG_REQUIRED,
     .off = C(postgres.conninfo),
     .doc = "libpq's connection string: keyword=value pairs, a "
            "`postgresql://` URI or a bare database name. Its passwords are "
            "never shown; one libpq cannot read as written is refused, and "
            "so are `application_name` and, in its `options`, the three "
            "timeouts below."},
    /* PostgreSQL cuts identifiers at 63 bytes; refuse rather than
     * surprise. */
    {.key = "schema", .type = CFG_F_STR, .flags = CFG_NONEMPTY,
     .off = C(postgres.schema), .max = 63, .def = "exactly",
     .doc = "The schema of exactly's own tables (offsets, dedup keys, dead "
            "letters, reprocess runs)."},
    {.key = "statement_timeout_ms", .type = CFG_F_INT,
     .off = C(postgres.statement_timeout_ms), .min = 0, .max = INT_MAX,
     .def = "30000",
     .doc = "`statement_timeout` of every session; 0 disables it."},
    {.key = "lock_timeout_ms", .type = CFG_F_INT,
     .off = C(postgres.lock_timeout_ms), .min = 0, .max = INT_MAX,
     .def = "10000",
     .doc = "`lock_timeout` of every session; 0 disables it."},
    {.key = "connect_timeout_s", .type = CFG_F_INT,
     .off = C(postgres.connect_timeout_s), .min = 0, .max = 86400,
     .def = "10",
     .doc = "libpq's `connect_timeout`, unless the conninfo sets one "
            "(setting both is refused); 0 waits without end."},
    {.key = "idle_in_transaction_timeout_ms", .type = CFG_F_INT,
     .off = C(postgres.idle_in_transaction_timeout_ms), .min = 0,
     .max = INT_MAX, .def = "60000",
     .doc = "`idle_in_transaction_session_timeout` of every session: a "
            "frozen worker cannot hold its row locks forever; 0 disables "
            "it."},
    {.key = "client_timeout_ms", .type = CFG_F_INT,
     .off = C(postgres.client_timeout_ms), .min = 0, .max = INT_MAX,
     .def = "0",
     .doc = "The worker's own bound on any wait for an answer, after which "
            "it ends the connection and retries on a new one; 0: "
            "`statement_timeout_ms` + `lock_timeout_ms` + 30000."},
};
static const cfg_section postgres_section = {
    postgres_fields, CFG_N_FIELDS(postgres_fields), postgres_check,
    "How the workers reach PostgreSQL, and the bounds of every wait "
    "there."};

/* ------------------------------------------------------------------ */
/* pipelines                                                           */
/* ------------------------------------------------------------------ */

/* Pipeline names end up in group ids, log lines and table rows. */
static int valid_pipeline_name(const char *name)
{
    size_t len = strlen(name);

    if (len == 0 || len > EXACTLY_CFG_MAX_PIPELINE_NAME)
        return 0;
    return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                        "0123456789_.-") == len;
}

/* Reads pipeline i of the mapping v into p. */
static int read_pipeline(cfg_ctx *c, const cfg_field *f, cfg_value *v,
                         size_t i, cfg_pipeline *p)
{
    cfg_value *body = &v->items[i];
    size_t saved = exactly_cfg_path_push(&c->path, v->keys[i]);

    p->pos = v->key_pos[i];
    if (!(p->name = strdup(v->keys[i])))
        return exactly_cfg_fail_nomem(c);
    if (!valid_pipeline_name(p->name))
        return exactly_cfg_fail_at(c, p->pos,
                                   "pipeline name '%s' must be 1 to %d "
                                   "letters, digits, '_', '-' or '.'",
                                   p->name, EXACTLY_CFG_MAX_PIPELINE_NAME);
    if (body->kind != CFG_MAP)
        return exactly_cfg_fail_at(c, body->pos,
                                   "'%s' must be a mapping, got %s",
                                   c->path.buf, exactly_cfg_kind_name(body));
    if (exactly_cfg_walk(c, body, p->pos, f->sub, p))
        return -1;
    exactly_cfg_path_pop(&c->path, saved);
    return 0;
}

static int read_pipelines(cfg_ctx *c, const cfg_field *f, cfg_value *v,
                          cfg_pos key_pos, void *base)
{
    exactly_config *cfg = base;
    size_t i;

    if (exactly_cfg_is_empty(v) || (v->kind == CFG_MAP && v->n_items == 0))
        return exactly_cfg_fail_at(c, key_pos,
                                   "'pipelines' must define at least one "
                                   "pipeline");
    if (v->kind != CFG_MAP)
        return exactly_cfg_fail_at(c, v->pos,
                                   "'pipelines' must be a mapping of "
                                   "pipeline names to pipelines, got %s",
                                   exactly_cfg_kind_name(v));
    if (!(cfg->pipelines = calloc(v->n_items, sizeof(cfg_pipeline))))
        return exactly_cfg_fail_nomem(c);
    cfg->n_pipelines = v->n_items;
    for (i = 0; i < v->n_items; i++)
        if (read_pipeline(c, f, v, i, &cfg->pipelines[i]))
            return -1;
    return 0;
}

static void release_pipelines(const cfg_field *f, void *base)
{
    exactly_config *cfg = base;
    size_t i;

    for (i = 0; i < cfg->n_pipelines; i++) {
        free(cfg->pipelines[i].name);
        exactly_cfg_release(f->sub, &cfg->pipelines[i]);
    }
    free(cfg->pipelines);
    cfg->pipelines = NULL;
    cfg->n_pipelines = 0;
}

/* relays.NAME: the same rules for names as pipelines. */
static int read_relays(cfg_ctx *c, const cfg_field *f, cfg_value *v,
                       cfg_pos key_pos, void *base)
{
    exactly_config *cfg = base;
    size_t i;

    if (exactly_cfg_is_empty(v) || (v->kind == CFG_MAP && v->n_items == 0))
        return 0;
    if (v->kind != CFG_MAP)
        return exactly_cfg_fail_at(c, v->pos,
                                   "'relays' must be a mapping of relay "
                                   "names to relays, got %s",
                                   exactly_cfg_kind_name(v));
    (void)key_pos;
    if (!(cfg->relays = calloc(v->n_items, sizeof(cfg_relay))))
        return exactly_cfg_fail_nomem(c);
    cfg->n_relays = v->n_items;
    for (i = 0; i < v->n_items; i++) {
        cfg_relay *r = &cfg->relays[i];
        cfg_value *body = &v->items[i];
        size_t saved = exactly_cfg_path_push(&c->path, v->keys[i]);

        r->pos = v->key_pos[i];
        if (!(r->name = strdup(v->keys[i])))
            return exactly_cfg_fail_nomem(c);
        if (!valid_pipeline_name(r->name))
            return exactly_cfg_fail_at(c, r->pos,
                                       "relay name '%s' must be 1 to %d "
                                       "letters, digits, '_', '-' or '.'",
                                       r->name,
                                       EXACTLY_CFG_MAX_PIPELINE_NAME);
        if (body->kind != CFG_MAP)
            return exactly_cfg_fail_at(c, body->pos,
                                       "'%s' must be a mapping, got %s",
                                       c->path.buf,
                                       exactly_cfg_kind_name(body));
        if (exactly_cfg_walk(c, body, r->pos, f->sub, r))
            return -1;
        exactly_cfg_path_pop(&c->path, saved);
    }
    return 0;
}

static void release_relays(const cfg_field *f, void *base)
{
    exactly_config *cfg = base;
    size_t i;

    for (i = 0; i < cfg->n_relays; i++) {
        free(cfg->relays[i].name);
        exactly_cfg_release(f->sub, &cfg->relays[i]);
    }
    free(cfg->relays);
    cfg->relays = NULL;
    cfg->n_relays = 0;
}

/* ------------------------------------------------------------------ */
/* The top level                                                       */
/* ------------------------------------------------------------------ */

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

static int check_pipeline_kafka(cfg_ctx *c, const exactly_config *cfg,
                                const cfg_pipeline *p)
{
    const cfg_prop *prop;

    /* Each pipeline's group is its own; a shared group.id would mix them. */
    if ((prop = find_prop(p->kafka, p->n_kafka, "group.id")))
        return exactly_cfg_fail_at(c, prop->pos,
                                   "'pipelines.%s.kafka.group.id' is not "
                                   "allowed: set 'pipelines.%s.group' "
                                   "instead",
                                   p->name, p->name);
    prop = effective_prop(cfg, p, "bootstrap.servers");
    if (!prop)
        return exactly_cfg_fail_at(c, p->pos,
                                   "pipeline '%s' has no 'bootstrap.servers': "
                                   "set it in the top-level 'kafka' section "
                                   "or in 'pipelines.%s.kafka'",
                                   p->name, p->name);
    if (prop->value[0] == '\0')
        return exactly_cfg_fail_at(c, prop->pos,
                                   "'bootstrap.servers' must not be empty "
                                   "(pipeline '%s')",
                                   p->name);
    /* DESIGN 1.4: aborted transactions must never reach a handler. */
    prop = effective_prop(cfg, p, "isolation.level");
    if (prop && strcmp(prop->value, "read_uncommitted") == 0 &&
        !p->unsafe_read_uncommitted)
        return exactly_cfg_fail_at(c, prop->pos,
                                   "pipeline '%s' would read uncommitted "
                                   "messages: set "
                                   "'pipelines.%s.unsafe_read_uncommitted: "
                                   "true' to allow it",
                                   p->name, p->name);
    return 0;
}

static int root_check(cfg_ctx *c, cfg_value *map, cfg_pos at, void *base)
{
    exactly_config *cfg = base;
    const cfg_prop *prop;
    size_t i;

    (void)map;
    /* A file runs pipelines, relays or both; one with neither is a
     * mistake. */
    if (cfg->n_pipelines == 0 && cfg->n_relays == 0 &&
        !exactly_cfg_map_find(map, "pipelines", NULL))
        return exactly_cfg_fail_missing(c, at, "pipelines");
    if ((prop = find_prop(cfg->kafka, cfg->n_kafka, "group.id")))
        return exactly_cfg_fail_at(c, prop->pos,
                                   "'kafka.group.id' is not allowed: each "
                                   "pipeline sets its own 'group'");
    for (i = 0; i < cfg->n_pipelines; i++)
        if (check_pipeline_kafka(c, cfg, &cfg->pipelines[i]))
            return -1;
    for (i = 0; i < cfg->n_relays; i++)
        if (exactly_cfg_check_relay(c, cfg, &cfg->relays[i]))
            return -1;
    return 0;
}

static const cfg_field root_fields[] = {
    {.key = "log", .type = CFG_F_SECTION, .sub = &log_section},
    {.key = "kafka", .type = CFG_F_PROPS, .off = C(kafka), .off_n = C(n_kafka),
     .doc = "librdkafka properties every pipeline's consumer and every "
            "relay's producer gets, passed through as written "
            "(`bootstrap.servers`, `security.protocol`, `sasl.*`, ...), "
            "except that a consumer leaves out those librdkafka marks "
            "producer-only (`P` in its CONFIGURATION.md: `linger.ms`, "
            "`acks`, `compression.type`, ...) and a producer those it marks "
            "consumer-only (`C`), which the other kind would ignore with a "
            "warning at every start. `group.id` is refused (each pipeline has its "
            "own `group`), `enable.auto.commit` and "
            "`enable.auto.offset.store` must stay false, "
            "`isolation.level: read_uncommitted` needs the pipeline's "
            "`unsafe_read_uncommitted`, and `auto.offset.reset` (earliest, "
            "latest or error) applies only to partitions with no stored "
            "offset. Unless set here or in the pipeline, a consumer gets "
            "`queued.min.messages: 100000` and "
            "`queued.max.messages.kbytes: 32768`, the memory a backlog "
            "may take (a deeper queue is not needed for speed: "
            "[OPERATIONS.md](OPERATIONS.md#a-workers-consumer-queue))."},
    {.key = "postgres", .type = CFG_F_SECTION, .flags = CFG_REQUIRED,
     .sub = &postgres_section},
    {.key = "pipelines", .type = CFG_F_CUSTOM,
     .sub = &exactly_cfg_pipeline_section, .read = read_pipelines,
     .release = release_pipelines,
     .type_doc = "mapping of names to pipelines", .def_doc = "none",
     .doc = "The pipelines, by name; at least one, unless the file "
            "defines `relays`."},
    {.key = "relays", .type = CFG_F_CUSTOM,
     .sub = &exactly_cfg_relay_section, .read = read_relays,
     .release = release_relays,
     .type_doc = "mapping of names to relays", .def_doc = "none",
     .doc = "Outbox relays, by name: `exactly run` runs them beside the "
            "pipelines, `exactly relay` one alone."},
};
const cfg_section exactly_cfg_root_section = {
    root_fields, CFG_N_FIELDS(root_fields), root_check,
    "A worker's YAML file. Any scalar may use `${VAR}` (the environment "
    "variable VAR; refused when it is unset), `${VAR:-default}` (the "
    "default may itself hold references) and `$$` for a literal `$`: keep "
    "secrets in the environment."};
