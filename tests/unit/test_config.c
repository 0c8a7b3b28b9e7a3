/*
 * test_config.c - the YAML config reader: a full valid document, a table of
 * broken ones (each with the exact message it must produce), secrets kept
 * out of messages, conninfo redaction and secret property names.
 *
 * Documents are written into a fresh temp directory, which is also the
 * working directory, so messages start with the relative path given.
 */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"

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

#define CHECK_STR(actual, expected)                                            \
    do {                                                                       \
        const char *a_ = (actual), *e_ = (expected);                           \
        CHECK((a_ == NULL && e_ == NULL) ||                                    \
                  (a_ && e_ && strcmp(a_, e_) == 0),                           \
              "%s: expected \"%s\", got \"%s\"", #actual, e_ ? e_ : "(null)",  \
              a_ ? a_ : "(null)");                                             \
    } while (0)

#define CHECK_INT(actual, expected)                                            \
    do {                                                                       \
        long long a_ = (long long)(actual), e_ = (long long)(expected);        \
        CHECK(a_ == e_, "%s: expected %lld, got %lld", #actual, e_, a_);       \
    } while (0)

#define CHECK_POS(pos, l, c)                                                   \
    CHECK((pos).line == (l) && (pos).column == (c),                            \
          "%s: expected %d:%d, got %d:%d", #pos, (l), (c), (pos).line,         \
          (pos).column)

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "FAIL: cannot write %s\n", path);
        exit(1);
    }
}

static const char *prop(const cfg_prop *props, size_t n, const char *name)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(props[i].name, name) == 0)
            return props[i].value;
    return NULL;
}

/* ------------------------------------------------------------------ */
/* A valid document                                                    */
/* ------------------------------------------------------------------ */

static const char valid_doc[] =
    "# every key, and a second pipeline that relies on defaults\n"   /* 1 */
    "kafka:\n"                                                      /* 2 */
    "  bootstrap.servers: ${EXACTLY_TEST_BS}\n"                     /* 3 */
    "  auto.offset.reset: earliest\n"                               /* 4 */
    "  client.id: ${EXACTLY_TEST_UNSET:-fallback-id}\n"             /* 5 */
    "postgres:\n"                                                   /* 6 */
    "  conninfo: \"host=db password=${EXACTLY_TEST_PW}\"\n"         /* 7 */
    "  schema: ex\n"                                                /* 8 */
    "  statement_timeout_ms: 5000\n"                                /* 9 */
    "  lock_timeout_ms: 0\n"                                        /* 10 */
    "  connect_timeout_s: 3\n"                                      /* 11 */
    "  idle_in_transaction_timeout_ms: 7000\n"                      /* 12 */
    "pipelines:\n"                                                  /* 13 */
    "  ledger:\n"                                                   /* 14 */
    "    topics: [events, more-events]\n"                           /* 15 */
    "    group: ledger-group\n"                                     /* 16 */
    "    workers: 4\n"                                              /* 17 */
    "    id:\n"                                                     /* 18 */
    "      from: header\n"                                          /* 19 */
    "      header: entity-id\n"                                     /* 20 */
    "      type: uuid\n"                                            /* 21 */
    "      max_length: 64\n"                                        /* 22 */
    "    lookup:\n"                                                 /* 23 */
    "      sql: \"SELECT id, n FROM t WHERE id = ANY($1) AND c = '$$x'\"\n"
    "      key_column: id\n"                                        /* 25 */
    "      on_missing: dead_letter\n"                               /* 26 */
    "    handler:\n"                                                /* 27 */
    "      plugin: ../plugins/ledger.so\n"                          /* 28 */
    "      options:\n"                                              /* 29 */
    "        table: ledger\n"                                       /* 30 */
    "        limit: ${EXACTLY_TEST_BS}\n"                           /* 31 */
    "        cols: [a, b]\n"                                        /* 32 */
    "        map: {x: y}\n"                                         /* 33 */
    "    batch:\n"                                                  /* 34 */
    "      max_messages: 500\n"                                     /* 35 */
    "      max_wait_ms: 0\n"                                        /* 36 */
    "    dedup:\n"                                                  /* 37 */
    "      from: header\n"                                          /* 38 */
    "      header: event-id\n"                                      /* 39 */
    "      retention: 12h\n"                                        /* 40 */
    "    kafka:\n"                                                  /* 41 */
    "      fetch.max.bytes: 1048576\n"                              /* 42 */
    "      isolation.level: read_uncommitted\n"                     /* 43 */
    "    unsafe_read_uncommitted: yes\n"                            /* 44 */
    "  projection:\n"                                               /* 45 */
    "    topics: accounts\n"                                        /* 46 */
    "    lookup:\n"                                                 /* 47 */
    "      table: accounts\n"                                       /* 48 */
    "      id_column: account_id\n"                                 /* 49 */
    "      columns: [account_id, name]\n"                           /* 50 */
    "    handler:\n"                                                /* 51 */
    "      builtin: upsert\n"                                       /* 52 */
    "    dedup:\n"                                                  /* 53 */
    "      from: key\n";                                            /* 54 */

static void test_valid(void)
{
    char err[1024] = "", cwd[PATH_MAX], want[PATH_MAX + 64];
    exactly_config *cfg = NULL;
    const cfg_pipeline *p, *q;
    const cfg_value *o;
    exactly_err rc;

    setenv("EXACTLY_TEST_BS", "broker1:9092,broker2:9092", 1);
    setenv("EXACTLY_TEST_PW", "s3cret", 1);
    unsetenv("EXACTLY_TEST_UNSET");
    write_file("valid.yaml", valid_doc);
    rc = exactly_config_load("valid.yaml", &cfg, err, sizeof(err));
    CHECK(rc == EXACTLY_OK, "valid.yaml: rc %d: %s", (int)rc, err);
    if (!cfg)
        return;

    CHECK_STR(cfg->path, "valid.yaml");
    CHECK_INT(cfg->n_kafka, 3);
    CHECK_STR(prop(cfg->kafka, cfg->n_kafka, "bootstrap.servers"),
              "broker1:9092,broker2:9092");
    CHECK_STR(prop(cfg->kafka, cfg->n_kafka, "auto.offset.reset"), "earliest");
    CHECK_STR(prop(cfg->kafka, cfg->n_kafka, "client.id"), "fallback-id");
    CHECK_STR(cfg->kafka[0].name, "bootstrap.servers");
    CHECK_POS(cfg->kafka[0].pos, 3, 3);

    CHECK_STR(cfg->postgres.conninfo, "host=db password=s3cret");
    CHECK_STR(cfg->postgres.schema, "ex");
    CHECK_INT(cfg->postgres.statement_timeout_ms, 5000);
    CHECK_INT(cfg->postgres.lock_timeout_ms, 0);
    CHECK_INT(cfg->postgres.connect_timeout_s, 3);
    CHECK_INT(cfg->postgres.idle_in_transaction_timeout_ms, 7000);
    CHECK_POS(cfg->postgres.pos, 6, 1);

    CHECK_INT(cfg->n_pipelines, 2);
    p = exactly_config_pipeline(cfg, "ledger");
    q = exactly_config_pipeline(cfg, "projection");
    CHECK(p == &cfg->pipelines[0], "pipeline 'ledger' not found first");
    CHECK(q == &cfg->pipelines[1], "pipeline 'projection' not found second");
    CHECK(exactly_config_pipeline(cfg, "nope") == NULL, "found 'nope'");
    CHECK(exactly_config_pipeline(NULL, "ledger") == NULL, "NULL cfg");
    if (!p || !q)
        goto out;

    CHECK_POS(p->pos, 14, 3);
    CHECK_INT(p->n_topics, 2);
    CHECK_STR(p->topics[0], "events");
    CHECK_STR(p->topics[1], "more-events");
    CHECK_STR(p->group, "ledger-group");
    CHECK_INT(p->workers, 4);
    CHECK_INT(p->id.from, CFG_FROM_HEADER);
    CHECK_STR(p->id.header, "entity-id");
    CHECK_INT(p->id.type, CFG_ID_UUID);
    CHECK_INT(p->id.max_length, 64);
    CHECK(p->lookup.table == NULL, "ledger: lookup.table set");
    /* $1 survives expansion; $$ is one '$'. */
    CHECK_STR(p->lookup.sql,
              "SELECT id, n FROM t WHERE id = ANY($1) AND c = '$x'");
    CHECK_STR(p->lookup.key_column, "id");
    CHECK(p->lookup.columns == NULL, "ledger: lookup.columns set");
    CHECK_INT(p->lookup.on_missing, CFG_MISSING_DEAD_LETTER);

    /* A relative plugin path is resolved against the file's directory,
     * and made absolute. */
    CHECK(getcwd(cwd, sizeof(cwd)) != NULL, "getcwd");
    snprintf(want, sizeof(want), "%s/../plugins/ledger.so", cwd);
    CHECK_STR(p->handler.plugin, want);
    CHECK(p->handler.builtin == NULL, "ledger: builtin set");
    CHECK_POS(p->handler.pos, 27, 5);
    CHECK_POS(p->handler.options_pos, 29, 7);

    o = &p->handler.options;
    CHECK_INT(o->kind, CFG_MAP);
    CHECK_INT(o->n_items, 4);
    if (o->kind == CFG_MAP && o->n_items == 4) {
        CHECK_STR(o->keys[0], "table");
        CHECK_POS(o->key_pos[0], 30, 9);
        CHECK_INT(o->items[0].kind, CFG_SCALAR);
        CHECK_STR(o->items[0].scalar, "ledger");
        CHECK_POS(o->items[0].pos, 30, 16);
        CHECK(o->items[0].raw == NULL, "plain option has raw text");
        /* Expanded, with the text as written kept for messages. */
        CHECK_STR(o->items[1].scalar, "broker1:9092,broker2:9092");
        CHECK_STR(o->items[1].raw, "${EXACTLY_TEST_BS}");
        CHECK_INT(o->items[2].kind, CFG_SEQ);
        CHECK_INT(o->items[2].n_items, 2);
        if (o->items[2].n_items == 2)
            CHECK_STR(o->items[2].items[1].scalar, "b");
        CHECK_INT(o->items[3].kind, CFG_MAP);
        CHECK_INT(o->items[3].n_items, 1);
        if (o->items[3].n_items == 1) {
            CHECK_STR(o->items[3].keys[0], "x");
            CHECK_STR(o->items[3].items[0].scalar, "y");
        }
    }

    CHECK_INT(p->batch.max_messages, 500);
    CHECK_INT(p->batch.max_wait_ms, 0);
    CHECK_INT(p->dedup.enabled, 1);
    CHECK_INT(p->dedup.from, CFG_FROM_HEADER);
    CHECK_STR(p->dedup.header, "event-id");
    CHECK_INT(p->dedup.retention_s, 12 * 3600);
    CHECK_INT(p->n_kafka, 2);
    CHECK_STR(prop(p->kafka, p->n_kafka, "fetch.max.bytes"), "1048576");
    CHECK_INT(p->unsafe_read_uncommitted, 1);

    /* The second pipeline: defaults everywhere it says nothing. */
    CHECK_INT(q->n_topics, 1);
    CHECK_STR(q->topics[0], "accounts");
    CHECK_STR(q->group, "exactly-projection");
    CHECK_INT(q->workers, 1);
    CHECK_INT(q->id.from, CFG_FROM_KEY);
    CHECK(q->id.header == NULL, "projection: id.header set");
    CHECK_INT(q->id.type, CFG_ID_BIGINT);
    CHECK_INT(q->id.max_length, 256);
    CHECK_INT(q->id.non_canonical, CFG_NONCANON_DEAD_LETTER);
    CHECK_STR(q->lookup.table, "accounts");
    CHECK_STR(q->lookup.id_column, "account_id");
    CHECK_STR(q->lookup.key_column, "account_id");
    CHECK_INT(q->lookup.n_columns, 2);
    if (q->lookup.n_columns == 2)
        CHECK_STR(q->lookup.columns[1], "name");
    CHECK(q->lookup.sql == NULL, "projection: lookup.sql set");
    CHECK_INT(q->lookup.on_missing, CFG_MISSING_SKIP);
    CHECK_STR(q->handler.builtin, "upsert");
    CHECK(q->handler.plugin == NULL, "projection: plugin set");
    /* No options: an empty mapping placed at `handler:`. */
    CHECK_INT(q->handler.options.kind, CFG_MAP);
    CHECK_INT(q->handler.options.n_items, 0);
    CHECK_POS(q->handler.options.pos, 51, 5);
    CHECK_POS(q->handler.options_pos, 51, 5);
    CHECK_INT(q->batch.max_messages, 1000);
    CHECK_INT(q->batch.max_wait_ms, 100);
    CHECK_INT(q->dedup.enabled, 1);
    CHECK_INT(q->dedup.from, CFG_FROM_KEY);
    CHECK_INT(q->dedup.retention_s, 7 * 86400);
    CHECK_INT(q->n_kafka, 0);
    CHECK_INT(q->unsafe_read_uncommitted, 0);

out:
    exactly_config_free(cfg);
}

/* Defaults of a minimal document, loaded by absolute path, with the
 * bootstrap servers given per pipeline only. */
static void test_minimal(const char *dir)
{
    char path[PATH_MAX], want[PATH_MAX + 32], err[1024] = "";
    exactly_config *cfg = NULL;
    const cfg_pipeline *p;
    exactly_err rc;

    snprintf(path, sizeof(path), "%s/minimal.yaml", dir);
    write_file(path, "postgres:\n"
                     "  conninfo: ''\n"
                     "pipelines:\n"
                     "  p-1.x_y:\n"
                     "    topics: [t]\n"
                     "    kafka:\n"
                     "      bootstrap.servers: localhost:9092\n"
                     "    lookup: {table: t}\n"
                     "    handler:\n"
                     "      plugin: h.so\n"
                     "      options:\n"
                     "kafka:\n");
    rc = exactly_config_load(path, &cfg, err, sizeof(err));
    CHECK(rc == EXACTLY_OK, "minimal.yaml: rc %d: %s", (int)rc, err);
    if (!cfg)
        return;
    CHECK_STR(cfg->postgres.conninfo, "");
    CHECK_STR(cfg->postgres.schema, "exactly");
    CHECK_INT(cfg->postgres.statement_timeout_ms, 30000);
    CHECK_INT(cfg->postgres.lock_timeout_ms, 10000);
    CHECK_INT(cfg->postgres.connect_timeout_s, 10);
    CHECK_INT(cfg->postgres.idle_in_transaction_timeout_ms, 60000);
    CHECK_INT(cfg->n_kafka, 0);
    p = &cfg->pipelines[0];
    CHECK_STR(p->name, "p-1.x_y");
    CHECK_STR(p->group, "exactly-p-1.x_y");
    CHECK_STR(p->lookup.id_column, "id");
    CHECK_STR(p->lookup.key_column, "id");
    CHECK(p->lookup.columns == NULL, "columns default is all (NULL)");
    CHECK_INT(p->dedup.enabled, 0);
    snprintf(want, sizeof(want), "%s/h.so", dir);
    CHECK_STR(p->handler.plugin, want);
    CHECK_INT(p->handler.options.kind, CFG_MAP);
    CHECK_INT(p->handler.options.n_items, 0);
    CHECK_POS(p->handler.options_pos, 11, 7);
    CHECK_STR(exactly_id_type_name(p->id.type), "bigint");
    CHECK_STR(exactly_id_type_name(CFG_ID_TEXT), "text");
    CHECK_STR(exactly_id_type_name(CFG_ID_UUID), "uuid");
    exactly_config_free(cfg);
}

/* A file with relays only, and the relay's defaults. */
static void test_relay_only(const char *dir)
{
    char path[PATH_MAX], err[1024] = "";
    exactly_config *cfg = NULL;
    const cfg_relay *r;
    exactly_err rc;

    snprintf(path, sizeof(path), "%s/relay.yaml", dir);
    write_file(path, "kafka:\n"
                     "  bootstrap.servers: localhost:9092\n"
                     "postgres:\n"
                     "  conninfo: ''\n"
                     "  schema: fw\n"
                     "relays:\n"
                     "  orders: {}\n"
                     "  billing:\n"
                     "    schema: app\n"
                     "    cleanup: mark\n"
                     "    retention: 2h\n"
                     "    kafka: {acks: -1, linger.ms: 20}\n"
                     "  shipping:\n"
                     "    mode: transactional\n"
                     "  audit:\n"
                     "    mode: transactional\n"
                     "    position_topic: audit.pos\n"
                     "    kafka: {transactional.id: audit-1}\n");
    rc = exactly_config_load(path, &cfg, err, sizeof(err));
    CHECK(rc == EXACTLY_OK, "relay.yaml: rc %d: %s", (int)rc, err);
    if (!cfg)
        return;
    CHECK_INT(cfg->n_pipelines, 0);
    CHECK_INT(cfg->n_relays, 4);
    r = exactly_config_relay(cfg, "orders");
    CHECK(r != NULL, "relay orders found");
    if (r) {
        CHECK_STR(r->schema, "fw");
        CHECK_STR(r->table, "outbox");
        CHECK(r->topic == NULL, "no default topic");
        CHECK_INT(r->batch_size, 1000);
        CHECK_INT(r->poll_interval_ms, 100);
        CHECK_INT(r->cleanup, CFG_CLEANUP_DELETE);
        CHECK_INT(r->mode, CFG_RELAY_IDEMPOTENT);
        CHECK(r->position_topic == NULL, "no position topic");
    }
    r = exactly_config_relay(cfg, "shipping");
    CHECK(r != NULL, "relay shipping found");
    if (r) {
        CHECK_INT(r->mode, CFG_RELAY_TRANSACTIONAL);
        CHECK_STR(r->position_topic, "exactly-relay-shipping-positions");
    }
    r = exactly_config_relay(cfg, "audit");
    CHECK(r != NULL, "relay audit found");
    if (r) {
        CHECK_INT(r->mode, CFG_RELAY_TRANSACTIONAL);
        CHECK_STR(r->position_topic, "audit.pos");
        CHECK_INT(r->n_kafka, 1);
    }
    r = exactly_config_relay(cfg, "billing");
    CHECK(r != NULL, "relay billing found");
    if (r) {
        CHECK_STR(r->schema, "app");
        CHECK_INT(r->cleanup, CFG_CLEANUP_MARK);
        CHECK_INT(r->retention_s, 7200);
        CHECK_INT(r->n_kafka, 2);
    }
    CHECK(exactly_config_relay(cfg, "nope") == NULL, "no relay nope");
    exactly_config_free(cfg);
}

/* ------------------------------------------------------------------ */
/* Broken documents                                                    */
/* ------------------------------------------------------------------ */

/* Lines 1-6 of most cases; the pipeline body starts on line 7. */
#define HEAD                                                                   \
    "kafka:\n"                                                                 \
    "  bootstrap.servers: localhost:9092\n"                                    \
    "postgres:\n"                                                              \
    "  conninfo: dbname=test\n"                                                \
    "pipelines:\n"                                                             \
    "  ledger:\n"
#define TOPICS "    topics: [events]\n"
#define LOOKUP "    lookup:\n      table: accounts\n"
#define HANDLER "    handler:\n      builtin: upsert\n"
/* HEAD TOPICS LOOKUP HANDLER fill lines 1-11. */
#define BODY HEAD TOPICS LOOKUP HANDLER

typedef struct bad_case {
    const char *name;
    const char *doc;
    const char *message; /* the whole message */
} bad_case;

static const bad_case bad_cases[] = {
    {"syntax error", HEAD "    topics: [events\n" LOOKUP HANDLER,
     "worker.yaml:8:11: invalid YAML: did not find expected ',' or ']' "
     "(while parsing a flow sequence at 7:13)"},
    {"bad indentation", HEAD TOPICS "   lookup:\n",
     "worker.yaml:8:4: invalid YAML: did not find expected key (while "
     "parsing a block mapping at 6:3)"},
    {"unknown key", BODY "    batch:\n      max_mesages: 10\n",
     "worker.yaml:13:7: unknown key 'pipelines.ledger.batch.max_mesages' "
     "(valid: max_messages, max_wait_ms, max_partitions)"},
    /* Relays: a file with relays only is valid; producer settings that
     * break order or idempotence are refused with file:line:key. */
#define RHEAD                                                                  \
    "kafka:\n"                                                                 \
    "  bootstrap.servers: localhost:9092\n"                                    \
    "postgres:\n"                                                              \
    "  conninfo: dbname=test\n"                                                \
    "relays:\n"                                                                \
    "  orders:\n"                                                              \
    "    topic: events\n"                                                      \
    "    kafka:\n"
    {"relay without idempotence", RHEAD "      enable.idempotence: false\n",
     "worker.yaml:9:7: 'relays.orders.kafka.enable.idempotence' must be "
     "true: the relay needs an idempotent producer"},
    {"relay acks=1", RHEAD "      acks: 1\n",
     "worker.yaml:9:7: 'relays.orders.kafka.acks' must be all: a row is "
     "deleted once the broker acknowledged it, which must mean every "
     "in-sync replica has it"},
    {"relay in flight 6", RHEAD
     "      max.in.flight.requests.per.connection: 6\n",
     "worker.yaml:9:7: 'relays.orders.kafka.max.in.flight.requests.per."
     "connection' must be 1 to 5: more requests in flight can reorder a "
     "partition's records"},
    {"relay retries 0", RHEAD "      retries: 0\n",
     "worker.yaml:9:7: 'relays.orders.kafka.retries' must be at least 1: a "
     "record the broker failed to take must be sent again"},
    {"relay acks in the kafka section",
     "kafka:\n  bootstrap.servers: localhost:9092\n  acks: 0\n"
     "postgres:\n  conninfo: dbname=test\nrelays:\n  orders: {}\n",
     "worker.yaml:3:3: 'kafka.acks' must be all: a row is deleted once the "
     "broker acknowledged it, which must mean every in-sync replica has it "
     "(relay 'orders')"},
    {"relay transactional.id", RHEAD "      transactional.id: x\n",
     "worker.yaml:9:7: 'relays.orders.kafka.transactional.id' is not "
     "allowed with 'mode: idempotent'"},
    {"relay transactional.id in the kafka section",
     "kafka:\n  bootstrap.servers: localhost:9092\n  transactional.id: t\n"
     "postgres:\n  conninfo: dbname=test\nrelays:\n"
     "  orders: {mode: transactional}\n",
     "worker.yaml:3:3: 'kafka.transactional.id' must be set per relay "
     "('relays.NAME.kafka'): relays sharing one would fence each other "
     "(relay 'orders')"},
    {"relay position_topic without transactions",
     "kafka:\n  bootstrap.servers: localhost:9092\n"
     "postgres:\n  conninfo: dbname=test\nrelays:\n"
     "  orders:\n    position_topic: p\n",
     "worker.yaml:6:3: 'relays.orders.position_topic' is not allowed with "
     "'mode: idempotent'"},
    {"relay transactional batch too big",
     "kafka:\n  bootstrap.servers: localhost:9092\n"
     "postgres:\n  conninfo: dbname=test\nrelays:\n"
     "  orders:\n    mode: transactional\n    batch_size: 20000\n",
     "worker.yaml:6:3: 'relays.orders.batch_size' must be at most 10000 "
     "with 'mode: transactional': the batch's position record names every "
     "row"},
    {"relay transactional batch over message.max.bytes",
     "kafka:\n  bootstrap.servers: localhost:9092\n"
     "postgres:\n  conninfo: dbname=test\nrelays:\n"
     "  orders:\n    mode: transactional\n    batch_size: 5000\n"
     "    kafka: {message.max.bytes: 100000}\n",
     "worker.yaml:9:13: 'relays.orders.kafka.message.max.bytes' 100000 "
     "cannot hold the position record of a batch of 5000 rows (up to "
     "211024 bytes, 42 a row with scattered ids): lower "
     "'relays.orders.batch_size' to at most 2356, or raise it"},
    {"relay unknown mode", RHEAD "      acks: all\n    mode: exactly\n",
     "worker.yaml:10:11: 'relays.orders.mode' must be one of idempotent, "
     "transactional, got 'exactly'"},
    {"relay unknown key", RHEAD "      acks: all\n    batch: 3\n",
     "worker.yaml:10:5: unknown key 'relays.orders.batch' (valid: schema, "
     "table, topic, batch_size, poll_interval_ms, cleanup, retention, mode, "
     "position_topic, kafka)"},
    {"relay bad name", "kafka:\n  bootstrap.servers: x\npostgres:\n"
     "  conninfo: dbname=test\nrelays:\n  'a b': {}\n",
     "worker.yaml:6:3: relay name 'a b' must be 1 to 100 letters, digits, "
     "'_', '-' or '.'"},
    {"neither pipelines nor relays",
     "kafka:\n  bootstrap.servers: x\npostgres:\n  conninfo: dbname=test\n",
     "worker.yaml:1:1: missing required key 'pipelines'"},
#undef RHEAD
    {"unknown top-level key", "kafak:\n  a: b\n",
     "worker.yaml:1:1: unknown key 'kafak' (valid: log, kafka, postgres, "
     "pipelines, relays)"},
    {"wrong type",
     "postgres:\n  conninfo: x\n  statement_timeout_ms: abc\n",
     "worker.yaml:3:25: 'postgres.statement_timeout_ms' must be an integer, "
     "got 'abc'"},
    {"int with trailing junk", BODY "    workers: 2x\n",
     "worker.yaml:12:14: 'pipelines.ledger.workers' must be an integer, got "
     "'2x'"},
    {"int with plus sign", BODY "    workers: +2\n",
     "worker.yaml:12:14: 'pipelines.ledger.workers' must be an integer, got "
     "'+2'"},
    {"int overflow", BODY "    workers: 99999999999999999999\n",
     "worker.yaml:12:14: 'pipelines.ledger.workers' must be an integer, got "
     "'99999999999999999999'"},
    {"mapping for an int", BODY "    workers: {a: 1}\n",
     "worker.yaml:12:14: 'pipelines.ledger.workers' must be an integer, got "
     "a mapping"},
    {"out-of-range int", BODY "    batch:\n      max_messages: 0\n",
     "worker.yaml:13:21: 'pipelines.ledger.batch.max_messages' must be "
     "between 1 and 100000, got '0'"},
    {"out-of-range size", BODY "    id: {max_length: 65537}\n",
     "worker.yaml:12:22: 'pipelines.ledger.id.max_length' must be between 1 "
     "and 65536, got '65537'"},
    {"bad bool", BODY "    unsafe_read_uncommitted: maybe\n",
     "worker.yaml:12:30: 'pipelines.ledger.unsafe_read_uncommitted' must be "
     "true or false, got 'maybe'"},
    {"missing required key", HEAD LOOKUP HANDLER,
     "worker.yaml:6:3: missing required key 'pipelines.ledger.topics'"},
    {"missing postgres.conninfo",
     "postgres:\n  schema: x\npipelines:\n  p:\n    topics: t\n",
     "worker.yaml:1:1: missing required key 'postgres.conninfo'"},
    {"unparsable conninfo", "postgres:\n  conninfo: \"host=db password='pw\"\n",
     "worker.yaml:2:13: 'postgres.conninfo' cannot be parsed: a quoted value "
     "is not closed (libpq's own message is not shown, as it can quote the "
     "password)"},
    {"missing pipelines", "postgres:\n  conninfo: x\n",
     "worker.yaml:1:1: missing required key 'pipelines'"},
    {"missing handler", HEAD TOPICS LOOKUP,
     "worker.yaml:6:3: missing required key 'pipelines.ledger.handler'"},
    {"unset variable",
     "kafka:\n  bootstrap.servers: x\npostgres:\n"
     "  conninfo: ${EXACTLY_TEST_UNSET}\n",
     "worker.yaml:4:13: environment variable 'EXACTLY_TEST_UNSET' is not set "
     "(in 'postgres.conninfo')"},
    {"unset variable in a list", HEAD "    topics: [a, \"${EXACTLY_TEST_UNSET}\"]\n",
     "worker.yaml:7:17: environment variable 'EXACTLY_TEST_UNSET' is not set "
     "(in 'pipelines.ledger.topics[1]')"},
    {"unterminated reference", HEAD "    group: ${OOPS\n",
     "worker.yaml:7:12: unterminated '${' (write '$$' for a literal '$') (in "
     "'pipelines.ledger.group')"},
    {"bad variable name", HEAD "    group: ${1X}\n",
     "worker.yaml:7:12: invalid reference '${1X}': expected ${NAME} or "
     "${NAME:-default} (in 'pipelines.ledger.group')"},
    {"duplicate key", HEAD TOPICS "    workers: 1\n    workers: 2\n",
     "worker.yaml:9:5: duplicate key 'pipelines.ledger.workers' (first at "
     "8:5)"},
    {"duplicate pipeline", BODY "  ledger:\n    topics: x\n",
     "worker.yaml:12:3: duplicate key 'pipelines.ledger' (first at 6:3)"},
    {"both table and sql",
     HEAD TOPICS LOOKUP "      sql: SELECT * FROM a WHERE id = ANY($1)\n" HANDLER,
     "worker.yaml:10:7: 'pipelines.ledger.lookup.sql' cannot be set together "
     "with 'table': set exactly one of them"},
    {"neither table nor sql",
     HEAD TOPICS "    lookup:\n      on_missing: skip\n" HANDLER,
     "worker.yaml:8:5: 'pipelines.ledger.lookup' needs exactly one of 'table' "
     "or 'sql'"},
    {"sql without $1", HEAD TOPICS "    lookup: {sql: SELECT 1}\n" HANDLER,
     "worker.yaml:8:14: 'pipelines.ledger.lookup.sql' must take the IDs as "
     "$1, as in 'WHERE id = ANY($1)'"},
    {"columns without the key column",
     HEAD TOPICS LOOKUP "      columns: [name]\n" HANDLER,
     "worker.yaml:10:7: 'pipelines.ledger.lookup.columns' must include the "
     "key column 'id'"},
    {"neither plugin nor builtin",
     HEAD TOPICS LOOKUP "    handler:\n      options: {}\n",
     "worker.yaml:10:5: 'pipelines.ledger.handler' needs exactly one of "
     "'plugin' or 'builtin'"},
    {"both plugin and builtin",
     HEAD TOPICS LOOKUP "    handler:\n      plugin: a.so\n"
                        "      builtin: upsert\n",
     "worker.yaml:12:7: 'pipelines.ledger.handler.builtin' cannot be set "
     "together with 'plugin': set exactly one of them"},
    {"unknown builtin", HEAD TOPICS LOOKUP "    handler: {builtin: merge}\n",
     "worker.yaml:10:24: 'pipelines.ledger.handler.builtin' must be one of "
     "upsert, got 'merge'"},
    {"options not a mapping",
     HEAD TOPICS LOOKUP "    handler:\n      builtin: upsert\n"
                        "      options: [a]\n",
     "worker.yaml:12:16: 'pipelines.ledger.handler.options' must be a "
     "mapping, got a list"},
    {"bad enum value", BODY "    id:\n      from: body\n",
     "worker.yaml:13:13: 'pipelines.ledger.id.from' must be one of key, "
     "value, header, got 'body'"},
    {"bad on_missing", HEAD TOPICS "    lookup: {table: a, on_missing: later}\n"
                                   HANDLER,
     "worker.yaml:8:36: 'pipelines.ledger.lookup.on_missing' must be one of "
     "skip, dead_letter, handler, retry, got 'later'"},
    {"bad non_canonical", BODY "    id: {non_canonical: fix}\n",
     "worker.yaml:12:25: 'pipelines.ledger.id.non_canonical' must be one of "
     "dead_letter, accept, got 'fix'"},
    {"id header without from: header", BODY "    id: {header: h}\n",
     "worker.yaml:12:10: 'pipelines.ledger.id.header' applies only with "
     "'from: header'"},
    {"id from header without header", BODY "    id:\n      from: header\n",
     "worker.yaml:12:5: missing required key 'pipelines.ledger.id.header'"},
    {"dedup without from", BODY "    dedup:\n      retention: 1d\n",
     "worker.yaml:12:5: missing required key 'pipelines.ledger.dedup.from'"},
    {"dedup from value", BODY "    dedup: {from: value}\n",
     "worker.yaml:12:19: 'pipelines.ledger.dedup.from' must be one of key, "
     "header, got 'value'"},
    {"bad retention", BODY "    dedup: {from: key, retention: 2w}\n",
     "worker.yaml:12:35: 'pipelines.ledger.dedup.retention' must be a "
     "positive duration such as 7d, 12h, 30m or 3600s, got '2w'"},
    {"zero retention", BODY "    dedup: {from: key, retention: 0s}\n",
     "worker.yaml:12:35: 'pipelines.ledger.dedup.retention' must be a "
     "positive duration such as 7d, 12h, 30m or 3600s, got '0s'"},
    {"empty topics", HEAD "    topics: []\n",
     "worker.yaml:7:13: 'pipelines.ledger.topics' must not be empty"},
    {"nested topic", HEAD "    topics: [[a]]\n",
     "worker.yaml:7:14: 'pipelines.ledger.topics[0]' must be a string, got a "
     "list"},
    {"empty group", HEAD "    group: ''\n",
     "worker.yaml:7:12: 'pipelines.ledger.group' must not be empty"},
    {"schema too long",
     "postgres:\n  conninfo: x\n  schema: "
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
     "worker.yaml:3:11: 'postgres.schema' must be at most 63 bytes long"},
    {"nested kafka value", "kafka:\n  bootstrap:\n    servers: x\n",
     "worker.yaml:3:5: 'kafka.bootstrap' must be a scalar, got a mapping"},
    {"kafka not a mapping", "kafka: [a]\n",
     "worker.yaml:1:8: 'kafka' must be a mapping of librdkafka properties, "
     "got a list"},
    {"kafka group.id",
     "kafka:\n  group.id: g\n  bootstrap.servers: b\npostgres:\n"
     "  conninfo: x\npipelines:\n  ledger:\n" TOPICS LOOKUP HANDLER,
     "worker.yaml:2:3: 'kafka.group.id' is not allowed: each pipeline sets "
     "its own 'group'"},
    {"no bootstrap.servers",
     "postgres:\n  conninfo: x\npipelines:\n  a:\n    topics: t\n"
     "    lookup: {table: t}\n    handler: {builtin: upsert}\n"
     "    kafka: {bootstrap.servers: b}\n"
     "  ledger:\n    topics: t\n"
     "    lookup: {table: t}\n    handler: {builtin: upsert}\n",
     "worker.yaml:9:3: pipeline 'ledger' has no 'bootstrap.servers': set it "
     "in the top-level 'kafka' section or in 'pipelines.ledger.kafka'"},
    {"read_uncommitted without opt-in",
     BODY "    kafka: {isolation.level: read_uncommitted}\n",
     "worker.yaml:12:13: pipeline 'ledger' would read uncommitted messages: "
     "set 'pipelines.ledger.unsafe_read_uncommitted: true' to allow it"},
    {"no pipelines", "postgres: {conninfo: x}\npipelines: {}\n",
     "worker.yaml:2:1: 'pipelines' must define at least one pipeline"},
    {"bad pipeline name", "postgres: {conninfo: x}\npipelines:\n  a b: {}\n",
     "worker.yaml:3:3: pipeline name 'a b' must be 1 to 100 letters, digits, "
     "'_', '-' or '.'"},
    {"pipeline not a mapping",
     "postgres: {conninfo: x}\npipelines:\n  a: [1]\n",
     "worker.yaml:3:6: 'pipelines.a' must be a mapping, got a list"},
    {"alias", "postgres: &pg {conninfo: x}\nextra: *pg\n",
     "worker.yaml:2:8: YAML aliases are not supported (in 'extra')"},
    {"complex key", "? [a]\n: b\n",
     "worker.yaml:1:3: keys must be plain strings (in 'the top level')"},
    {"two documents", "postgres: {conninfo: x}\n---\npostgres: {}\n",
     "worker.yaml:2:1: the file must hold one YAML document, found more"},
    {"empty file", "# nothing here\n",
     "worker.yaml:1:1: the configuration is empty: expected a mapping with "
     "'postgres' and 'pipelines'"},
    {"top level not a mapping", "- a\n- b\n",
     "worker.yaml:1:1: the configuration must be a mapping, got a list"},
    {"bad UTF-8", "postgres:\n  conninfo: \"\xff\"\n",
     "worker.yaml:2:14: invalid YAML: invalid leading UTF-8 octet"},
    /* A message is one line: control bytes of the file are escaped. */
    {"newline in a bad value", BODY "    workers: \"1\\n2\\r\\x7f\"\n",
     "worker.yaml:12:14: 'pipelines.ledger.workers' must be an integer, got "
     "'1\\n2\\r\\x7f'"},
    {"newline in an unknown key", BODY "    \"bat\\nch\": 1\n",
     "worker.yaml:12:5: unknown key 'pipelines.ledger.bat\\nch' (valid: "},
    {"newline in a bad reference", HEAD "    group: \"${A\\nB}\"\n",
     "worker.yaml:7:12: invalid reference '${A\\nB}': expected ${NAME} or "
     "${NAME:-default} (in 'pipelines.ledger.group')"},
    {"unknown local tag", BODY "    workers: !foo 2\n",
     "worker.yaml:12:14: YAML tag '!foo' is not supported (in "
     "'pipelines.ledger.workers'): only !!str, !!map and !!seq are"},
    {"core tag not honoured", BODY "    workers: !!int 2\n",
     "worker.yaml:12:14: YAML tag '!!int' is not supported (in "
     "'pipelines.ledger.workers'): only !!str, !!map and !!seq are"},
    {"tag on a mapping", BODY "    batch: !limits {max_messages: 5}\n",
     "worker.yaml:12:12: YAML tag '!limits' is not supported (in "
     "'pipelines.ledger.batch'): only !!str, !!map and !!seq are"},
    {"tag on a sequence", HEAD "    topics: !set [a]\n",
     "worker.yaml:7:13: YAML tag '!set' is not supported (in "
     "'pipelines.ledger.topics'): only !!str, !!map and !!seq are"},
    {"verbatim tag", BODY "    workers: !<tag:example.com,2000:x> 2\n",
     "worker.yaml:12:14: YAML tag '!<tag:example.com,2000:x>' is not "
     "supported (in 'pipelines.ledger.workers'): only !!str, !!map and "
     "!!seq are"},
    {"tag on a key", BODY "    !foo workers: 2\n",
     "worker.yaml:12:5: YAML tag '!foo' is not supported (in "
     "'pipelines.ledger'): only !!str, !!map and !!seq are"},
    {"!!seq on a mapping", BODY "    batch: !!seq {max_messages: 5}\n",
     "worker.yaml:12:12: YAML tag '!!seq' does not fit a mapping (in "
     "'pipelines.ledger.batch')"},
    {"too deep",
     "a: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
     "1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
     "worker.yaml:1:67: nesting deeper than 64 levels (in 'a[0][0][0][0][0]"},
};

static void test_bad_documents(void)
{
    size_t i;

    unsetenv("EXACTLY_TEST_UNSET");
    for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const bad_case *bc = &bad_cases[i];
        char err[1024];
        exactly_config *cfg = (exactly_config *)&err; /* must become NULL */
        exactly_err rc;

        memset(err, 'x', sizeof(err));
        write_file("worker.yaml", bc->doc);
        rc = exactly_config_load("worker.yaml", &cfg, err, sizeof(err));
        CHECK(rc == EXACTLY_ECONFIG, "%s: expected EXACTLY_ECONFIG, got %d",
              bc->name, (int)rc);
        CHECK(cfg == NULL, "%s: *out not NULL on failure", bc->name);
        CHECK(strncmp(err, bc->message, strlen(bc->message)) == 0,
              "%s:\n  expected: %s\n  got:      %s", bc->name, bc->message,
              err);
        CHECK(strchr(err, '\n') == NULL, "%s: message has a newline",
              bc->name);
        if (rc == EXACTLY_OK)
            exactly_config_free(cfg);
    }
}

/* A value from the environment never shows in a message, only the text as
 * written; unknown files name the path as given. */
static void test_secrets_in_messages(void)
{
    char err[1024];
    exactly_config *cfg = NULL;
    exactly_err rc;

    setenv("EXACTLY_TEST_SECRET", "hunter2", 1);
    write_file("worker.yaml",
               "postgres:\n  conninfo: x\n"
               "  lock_timeout_ms: \"${EXACTLY_TEST_SECRET}ms\"\n");
    rc = exactly_config_load("worker.yaml", &cfg, err, sizeof(err));
    CHECK(rc == EXACTLY_ECONFIG, "secret: rc %d", (int)rc);
    CHECK(strstr(err, "hunter2") == NULL, "secret leaked: %s", err);
    CHECK_STR(err, "worker.yaml:3:20: 'postgres.lock_timeout_ms' must be an "
                   "integer, got '${EXACTLY_TEST_SECRET}ms'");

    write_file("worker.yaml",
               "postgres:\n  conninfo: x\n"
               "  schema: ${EXACTLY_TEST_SECRET}"
               "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n");
    rc = exactly_config_load("worker.yaml", &cfg, err, sizeof(err));
    CHECK(rc == EXACTLY_ECONFIG, "secret: rc %d", (int)rc);
    CHECK(strstr(err, "hunter2") == NULL, "secret leaked: %s", err);

    rc = exactly_config_load("missing.yaml", &cfg, err, sizeof(err));
    CHECK(rc == EXACTLY_ECONFIG, "missing: rc %d", (int)rc);
    CHECK_STR(err, "missing.yaml: cannot open: No such file or directory");

    /* A tiny buffer is cut, not overrun. */
    rc = exactly_config_load("missing.yaml", &cfg, err, 8);
    CHECK(rc == EXACTLY_ECONFIG, "missing, small buffer: rc %d", (int)rc);
    CHECK_STR(err, "missing");
    CHECK(exactly_config_load("missing.yaml", &cfg, NULL, 0) ==
              EXACTLY_ECONFIG,
          "missing, no buffer");
    exactly_config_free(NULL);
}

/* ------------------------------------------------------------------ */
/* Redaction and secret names                                          */
/* ------------------------------------------------------------------ */

static void test_redact(void)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"host=db user=app password=hunter2 dbname=x",
         "host=db user=app password=**** dbname=x"},
        {"password='pa ss\\' word' host=db", "password=**** host=db"},
        {"host=db password = hunter2", "host=db password = ****"},
        {"PASSWORD=hunter2", "PASSWORD=****"},
        {"sslpassword=hunter2 sslmode=verify-full",
         "sslpassword=**** sslmode=verify-full"},
        {"host=db  port=5432", "host=db  port=5432"},
        {"", ""},
        {"postgresql://app:hunter2@db:5432/x", "postgresql://app:****@db:5432/x"},
        {"postgres://app:hunter2@db/x", "postgres://app:****@db/x"},
        {"postgresql://app@db/x", "postgresql://app@db/x"},
        {"postgresql://db:5432/x", "postgresql://db:5432/x"},
        {"postgresql://app:p@ss/w@db/x?sslmode=require&password=hunter2",
         "postgresql://app:****@db/x?sslmode=require&password=****"},
        {"postgresql:///x?host=/tmp&password=hunter2",
         "postgresql:///x?host=/tmp&password=****"},
    };
    char out[256];
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(out, 'x', sizeof(out));
        exactly_config_redact_conninfo(cases[i].in, out, sizeof(out));
        CHECK(strcmp(out, cases[i].out) == 0,
              "redact '%s': expected '%s', got '%s'", cases[i].in,
              cases[i].out, out);
    }
    /* Cut to the buffer, still terminated, still no secret. */
    memset(out, 'x', sizeof(out));
    exactly_config_redact_conninfo("password=hunter2", out, 12);
    CHECK_STR(out, "password=**");
    CHECK(out[12] == 'x', "wrote past the buffer");
    exactly_config_redact_conninfo(NULL, out, sizeof(out));
    CHECK_STR(out, "");
    exactly_config_redact_conninfo("password=x", out, 0); /* no crash */
}

/* Which conninfos are refused, and in words that quote none of them. */
static void test_conninfo_problem(void)
{
    static const struct {
        const char *conninfo;
        const char *has; /* NULL: accepted */
    } cases[] = {
        {"host=db user=app password=hunter2 dbname=x", NULL},
        {"", NULL},
        {"mydb", NULL},
        {"postgresql://app:hunter2@db:5432/x?sslmode=require", NULL},
        {"postgresql://app:hun%2Fter@db/x", NULL},
        {"postgresql://app:hun?ter@db/x", NULL},
        {"postgresql:///x?host=/tmp&password=hunter2", NULL},
        {"postgresql://app:hunter2%zz@db/x", "invalid percent-escape"},
        {"postgresql://app:hunter2@[::1/x", "IPv6 host address"},
        {"host=db password=hunter2 more", "a word is not followed by '='"},
        {"host=db password='hunter2", "a quoted value is not closed"},
        {"host=db passwrd=hunter2", "unknown connection option"},
        {"postgresql://db/x?passwrd=hunter2", "unknown connection option"},
        {"postgresql://app:hun/ter2@db/x", "must be percent-encoded"},
        {"postgresql://app:hun@ter2@db/x", "must be percent-encoded"},
        {"postgresql:/app:hunter2@db/x", "neither keyword=value pairs"},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *why = exactly_conninfo_problem(cases[i].conninfo);

        if (!cases[i].has) {
            CHECK(why == NULL, "'%s' refused: %s", cases[i].conninfo, why);
            continue;
        }
        CHECK(why && strstr(why, cases[i].has), "'%s': expected '%s', got "
              "'%s'", cases[i].conninfo, cases[i].has, why ? why : "(null)");
        CHECK(!why || (!strstr(why, "hunter") && !strstr(why, "ter2")),
              "'%s': the reason quotes the password: %s", cases[i].conninfo,
              why);
    }
}

/* Messages lose every form of the password: as written, percent-decoded,
 * unquoted, and pieces of a URI password libpq read as other options. */
static void test_conninfo_scrub(void)
{
    static const struct {
        const char *conninfo, *msg, *want;
    } cases[] = {
        {"postgresql://u:Sec%2Fret@h/d", "a \"Sec/ret\" b \"Sec%2Fret\"",
         "a \"****\" b \"****\""},
        {"host=h password='a b\\'c' dbname=d", "x a b'c y 'a b\\'c'",
         "x **** y ****"},
        {"host=h sslpassword=k3y password=pw1", "k3y pw1 pw",
         "**** **** pw"},
        {"postgresql://u:pw@h/d?password=q%41", "pw qA q%41",
         "**** **** ****"},
        {"postgresql://u:Pw/Xy@h:5/d", "invalid port \"Pw/Xy\"",
         "invalid port \"****\""},
        {"host=h", "nothing to hide", "nothing to hide"},
    };
    char out[256];
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        exactly_conninfo_scrub(cases[i].conninfo, cases[i].msg, out,
                               sizeof(out));
        CHECK(strcmp(out, cases[i].want) == 0,
              "scrub '%s' with '%s': expected '%s', got '%s'",
              cases[i].msg, cases[i].conninfo, cases[i].want, out);
    }
    memset(out, 'x', sizeof(out));
    exactly_conninfo_scrub("password=pw", "pw pw pw", out, 6);
    CHECK_STR(out, "**** ");
    CHECK(out[6] == 'x', "scrub wrote past the buffer");
}

/* The user's conninfo settings are kept; exactly's fill the gaps. */
static void test_conninfo_params(void)
{
    const exactly_conn_settings ours = {"host:1:0", "10",
                                        "-c statement_timeout=5"};
    exactly_conn_params p;
    char why[300];

    CHECK(exactly_conninfo_params("host=h keepalives_idle=99 "
                                  "options='-c search_path=a' "
                                  "connect_timeout=3 sslmode=disable",
                                  &ours, &p) == EXACTLY_OK,
          "params: refused");
    CHECK_STR(exactly_conninfo_param(&p, "host"), "h");
    CHECK_STR(exactly_conninfo_param(&p, "sslmode"), "disable");
    CHECK_STR(exactly_conninfo_param(&p, "keepalives_idle"), "99");
    CHECK_STR(exactly_conninfo_param(&p, "keepalives"), "1");
    CHECK_STR(exactly_conninfo_param(&p, "keepalives_interval"), "5");
    CHECK_STR(exactly_conninfo_param(&p, "keepalives_count"), "3");
    CHECK_STR(exactly_conninfo_param(&p, "connect_timeout"), "3");
    CHECK_STR(exactly_conninfo_param(&p, "options"),
              "-c search_path=a -c statement_timeout=5");
    CHECK_STR(exactly_conninfo_param(&p, "application_name"), "host:1:0");
    CHECK(exactly_conninfo_param(&p, "dbname") == NULL, "dbname set");
    exactly_conninfo_params_free(&p);

    CHECK(exactly_conninfo_params("postgresql://u@h/db?keepalives=0", &ours,
                                  &p) == EXACTLY_OK,
          "params (URI): refused");
    CHECK_STR(exactly_conninfo_param(&p, "dbname"), "db");
    CHECK_STR(exactly_conninfo_param(&p, "user"), "u");
    CHECK_STR(exactly_conninfo_param(&p, "keepalives"), "0");
    CHECK_STR(exactly_conninfo_param(&p, "connect_timeout"), "10");
    CHECK_STR(exactly_conninfo_param(&p, "options"), "-c statement_timeout=5");
    exactly_conninfo_params_free(&p);

    CHECK(exactly_conninfo_params("mydb", &ours, &p) == EXACTLY_OK,
          "params (bare name): refused");
    CHECK_STR(exactly_conninfo_param(&p, "dbname"), "mydb");
    exactly_conninfo_params_free(&p);
    CHECK(exactly_conninfo_params("host='x", &ours, &p) == EXACTLY_ECONFIG,
          "params: unparsable conninfo accepted");
    exactly_conninfo_params_free(&p);
    exactly_conninfo_params_free(NULL);

    /* Conflicts, in every spelling of a server setting. */
    CHECK(exactly_conninfo_conflict("host=h options='-c search_path=a'", 1,
                                    why, sizeof(why)) == NULL,
          "search_path refused: %s", why);
    CHECK(exactly_conninfo_conflict("host=h connect_timeout=3", 0, why,
                                    sizeof(why)) == NULL,
          "connect_timeout alone refused: %s", why);
    CHECK(exactly_conninfo_conflict("host=h connect_timeout=3", 1, why,
                                    sizeof(why)) != NULL,
          "connect_timeout twice accepted");
    CHECK(exactly_conninfo_conflict("host=h application_name=x", 0, why,
                                    sizeof(why)) != NULL,
          "application_name accepted");
    CHECK(exactly_conninfo_conflict("host=h options='-c Statement_Timeout=0'",
                                    0, why, sizeof(why)) != NULL &&
              strstr(why, "'postgres.statement_timeout_ms'"),
          "statement_timeout in options: %s", why);
    CHECK(exactly_conninfo_conflict("host=h options='-clock_timeout=0'", 0,
                                    why, sizeof(why)) != NULL &&
              strstr(why, "'postgres.lock_timeout_ms'"),
          "-clock_timeout: %s", why);
    CHECK(exactly_conninfo_conflict(
              "host=h options='-c a=b --idle-in-transaction-session-timeout=1'",
              0, why, sizeof(why)) != NULL &&
              strstr(why, "'postgres.idle_in_transaction_timeout_ms'"),
          "--idle-in-transaction-session-timeout: %s", why);
    /* The options value -c a=b\ -c\ statement_timeout=1 (libpq turns
     * each doubled backslash of the conninfo into one) is one switch that
     * sets a: escaped spaces do not start new switches. */
    CHECK(exactly_conninfo_conflict(
              "host=h options='-c a=b\\\\ -c\\\\ statement_timeout=1'",
              0, why, sizeof(why)) == NULL,
          "escaped space read as a switch: %s", why);
}

static void test_is_secret(void)
{
    static const struct {
        const char *name;
        int secret;
    } cases[] = {
        {"sasl.password", 1},          {"ssl.key.password", 1},
        {"ssl.keystore.password", 1},  {"SASL.PASSWORD", 1},
        {"sasl.oauthbearer.config", 1}, {"sasl.oauthbearer.client.secret", 1},
        {"ssl.key.pem", 1},            {"ssl_key", 1},
        {"bootstrap.servers", 0},      {"sasl.username", 0},
        {"ssl.ca.location", 0},        {"ssl.key.location", 0},
        {"", 0},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        CHECK(exactly_config_is_secret(cases[i].name) == cases[i].secret,
              "is_secret('%s') != %d", cases[i].name, cases[i].secret);
    CHECK(exactly_config_is_secret(NULL) == 0, "is_secret(NULL)");
}

/* The core tags !!str, !!map and !!seq are honoured: !!str keeps a null
 * word as the text it is. */
static void test_core_tags(void)
{
    char err[1024] = "";
    exactly_config *cfg = NULL;
    exactly_err rc;

    write_file("tags.yaml",
               "kafka: !!map\n  bootstrap.servers: !!str b\n"
               "postgres:\n  conninfo: x\n"
               "pipelines:\n  p:\n    topics: !!seq [t]\n"
               "    group: !!str null\n"
               "    lookup: {table: !!str ~}\n"
               "    handler: {builtin: upsert}\n");
    rc = exactly_config_load("tags.yaml", &cfg, err, sizeof(err));
    CHECK(rc == EXACTLY_OK, "tags.yaml: rc %d: %s", (int)rc, err);
    if (cfg) {
        CHECK_STR(cfg->pipelines[0].group, "null");
        CHECK_STR(cfg->pipelines[0].lookup.table, "~");
        CHECK_STR(cfg->pipelines[0].topics[0], "t");
        exactly_config_free(cfg);
    }
    unlink("tags.yaml");
}

/* id.non_canonical: accept is read; dead_letter is the default. */
static void test_non_canonical_option(void)
{
    char err[1024] = "";
    exactly_config *cfg = NULL;
    exactly_err rc;

    write_file("noncanon.yaml",
               "kafka: {bootstrap.servers: b}\npostgres: {conninfo: x}\n"
               "pipelines:\n  p:\n    topics: [t]\n"
               "    id: {type: uuid, non_canonical: accept}\n"
               "    lookup: {table: t}\n    handler: {builtin: upsert}\n");
    rc = exactly_config_load("noncanon.yaml", &cfg, err, sizeof(err));
    CHECK(rc == EXACTLY_OK, "noncanon.yaml: rc %d: %s", (int)rc, err);
    if (cfg) {
        CHECK_INT(cfg->pipelines[0].id.non_canonical, CFG_NONCANON_ACCEPT);
        exactly_config_free(cfg);
    }
    unlink("noncanon.yaml");
}

/* Loads path in a child killed after deadline_ms; returns 1 if it ended
 * in time, with the first line it printed (the load's message) in msg. */
static int load_in_child(const char *path, int deadline_ms, char *msg,
                         size_t msg_size)
{
    int fds[2];
    int status = 0, waited = 0;
    pid_t pid;
    ssize_t n;

    msg[0] = '\0';
    if (pipe(fds) != 0)
        return 0;
    pid = fork();
    if (pid == 0) {
        char err[1024];
        exactly_config *cfg = NULL;
        exactly_err rc;

        close(fds[0]);
        rc = exactly_config_load(path, &cfg, err, sizeof(err));
        if (rc == EXACTLY_OK)
            snprintf(err, sizeof(err), "loaded");
        if (write(fds[1], err, strlen(err)) < 0)
            _exit(3);
        exactly_config_free(cfg);
        _exit(0);
    }
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        return 0;
    }
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (waited >= deadline_ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            close(fds[0]);
            return 0;
        }
        usleep(20000);
        waited += 20;
    }
    n = read(fds[0], msg, msg_size - 1);
    msg[n > 0 ? n : 0] = '\0';
    close(fds[0]);
    return 1;
}

/* -c on a FIFO (or a directory, or a device) is refused at once with a
 * clear message; it must not wait for a writer. */
static void test_not_regular_file(void)
{
    char msg[1024];

    CHECK(mkfifo("fifo.yaml", 0600) == 0, "mkfifo failed");
    CHECK(load_in_child("fifo.yaml", 10000, msg, sizeof(msg)),
          "loading a FIFO did not return within 10 s");
    CHECK_STR(msg, "fifo.yaml: not a regular file (a FIFO); give the path "
                   "of a YAML file");
    unlink("fifo.yaml");

    CHECK(mkdir("dir.yaml", 0700) == 0, "mkdir failed");
    CHECK(load_in_child("dir.yaml", 10000, msg, sizeof(msg)),
          "loading a directory did not return within 10 s");
    CHECK_STR(msg, "dir.yaml: not a regular file (a directory); give the "
                   "path of a YAML file");
    rmdir("dir.yaml");

    CHECK(load_in_child("/dev/null", 10000, msg, sizeof(msg)),
          "loading /dev/null did not return within 10 s");
    CHECK_STR(msg, "/dev/null: not a regular file (a character device); "
                   "give the path of a YAML file");
}

/* ------------------------------------------------------------------ */
/* Large files                                                         */
/* ------------------------------------------------------------------ */

/* A valid document whose handler options hold one mapping of n_keys
 * distinct keys ("k0: 0", "k1: 1", ...), written to path. Returns the
 * file's size. */
static size_t write_big_map(const char *path, size_t n_keys)
{
    FILE *f = fopen(path, "w");
    size_t i;
    long size;

    if (!f) {
        fprintf(stderr, "FAIL: cannot write %s\n", path);
        exit(1);
    }
    fputs("kafka:\n  bootstrap.servers: b\npostgres:\n  conninfo: x\n"
          "pipelines:\n  big:\n    topics: [t]\n    lookup: {table: t}\n"
          "    handler:\n      plugin: h.so\n      options:\n"
          "        big:\n",
          f);
    for (i = 0; i < n_keys; i++)
        fprintf(f, "          k%zu: %zu\n", i, i);
    size = ftell(f);
    if (size < 0 || fclose(f) != 0) {
        fprintf(stderr, "FAIL: cannot write %s\n", path);
        exit(1);
    }
    return (size_t)size;
}

/* Duplicate keys are found with work linear in the number of keys: a map
 * of N keys costs O(N) key comparisons, not N*(N-1)/2 (which made a 9 MB
 * file take ten minutes to load). */
static void test_large_map_comparisons(void)
{
    const size_t n = 20000;
    char err[1024] = "";
    exactly_config *cfg = NULL;
    unsigned long long cmp;
    exactly_err rc;

    write_big_map("big.yaml", n);
    rc = exactly_config_load("big.yaml", &cfg, err, sizeof(err));
    cmp = exactly_config_key_comparisons();
    CHECK(rc == EXACTLY_OK, "big.yaml: rc %d: %s", (int)rc, err);
    if (cfg) {
        const cfg_value *o = &cfg->pipelines[0].handler.options;
        CHECK(o->n_items == 1 && o->items[0].n_items == n,
              "big.yaml: the big map lost keys");
        exactly_config_free(cfg);
    }
    /* Every key is compared with a few others at most. */
    CHECK(cmp <= 4 * (unsigned long long)n,
          "a map of %zu keys took %llu key comparisons (more than %llu): "
          "duplicate detection is not linear",
          n, cmp, 4 * (unsigned long long)n);
    unlink("big.yaml");
}

/* A 9 MB map loads within a generous bound of CPU time (CPU, not wall
 * time: other work on a loaded machine does not count against it). The
 * load runs in a child that is killed at a wall-clock deadline, so a
 * quadratic loader fails this check instead of hanging the test. */
static void test_large_map_time(void)
{
    const long long cpu_limit_ms = 10000, wall_limit_ms = 45000;
    size_t size = write_big_map("huge.yaml", 360000);
    struct timespec t0, t1;
    struct rusage ru;
    long long wall_ms = 0, cpu_ms = 0;
    int status = 0, done = 0;
    pid_t pid;

    CHECK(size > 9u * 1000u * 1000u, "huge.yaml is only %zu bytes", size);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid = fork();
    if (pid == 0) {
        char err[1024];
        exactly_config *cfg = NULL;
        exactly_err rc = exactly_config_load("huge.yaml", &cfg, err,
                                             sizeof(err));
        if (rc != EXACTLY_OK)
            fprintf(stderr, "huge.yaml: %s\n", err);
        exactly_config_free(cfg);
        _exit(rc == EXACTLY_OK ? 0 : 1);
    }
    CHECK(pid > 0, "fork failed");
    memset(&ru, 0, sizeof(ru));
    while (pid > 0 && !done) {
        pid_t r = wait4(pid, &status, WNOHANG, &ru);

        clock_gettime(CLOCK_MONOTONIC, &t1);
        wall_ms = (t1.tv_sec - t0.tv_sec) * 1000LL +
                  (t1.tv_nsec - t0.tv_nsec) / 1000000;
        if (r == pid) {
            done = 1;
        } else if (wall_ms > wall_limit_ms) {
            kill(pid, SIGKILL);
            wait4(pid, &status, 0, &ru);
            break;
        } else {
            usleep(20000);
        }
    }
    cpu_ms = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000LL +
             (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
    CHECK(done, "a %zu-byte map did not load within %lld ms (wall clock)",
          size, wall_limit_ms);
    CHECK(!done || (WIFEXITED(status) && WEXITSTATUS(status) == 0),
          "a %zu-byte map was refused (status %d)", size, status);
    CHECK(cpu_ms <= cpu_limit_ms,
          "a %zu-byte map took %lld ms of CPU time to load (limit %lld)",
          size, cpu_ms, cpu_limit_ms);
    fprintf(stderr, "# a %zu-byte map: %lld ms CPU, %lld ms wall%s\n", size,
            cpu_ms, wall_ms, done ? "" : " (killed)");
    unlink("huge.yaml");
}

/* ${A:-${B}} is resolved as the shell does: B when A is unset or empty;
 * an unset B is an error naming the place. */
static void test_nested_default(void)
{
    char err[1024] = "";
    exactly_config *cfg = NULL;
    exactly_err rc;

    setenv("EXACTLY_TEST_INNER", "inner-value", 1);
    setenv("EXACTLY_TEST_OUTER", "outer-value", 1);
    unsetenv("EXACTLY_TEST_UNSET");
    unsetenv("EXACTLY_TEST_UNSET2");
    write_file("nested.yaml",
               "kafka:\n  bootstrap.servers: b\n"
               "  a: \"${EXACTLY_TEST_UNSET:-${EXACTLY_TEST_INNER}}\"\n"
               "  b: \"${EXACTLY_TEST_OUTER:-${EXACTLY_TEST_UNSET2}}\"\n"
               "  c: \"<${EXACTLY_TEST_UNSET:-x${EXACTLY_TEST_UNSET2:-y}z}>\"\n"
               "  d: \"${EXACTLY_TEST_UNSET:-$${EXACTLY_TEST_INNER}}\"\n"
               "postgres:\n  conninfo: x\n"
               "pipelines:\n  p:\n    topics: [t]\n    lookup: {table: t}\n"
               "    handler: {builtin: upsert}\n");
    rc = exactly_config_load("nested.yaml", &cfg, err, sizeof(err));
    CHECK(rc == EXACTLY_OK, "nested.yaml: rc %d: %s", (int)rc, err);
    if (cfg) {
        CHECK_STR(prop(cfg->kafka, cfg->n_kafka, "a"), "inner-value");
        /* The default is not evaluated when the variable is set. */
        CHECK_STR(prop(cfg->kafka, cfg->n_kafka, "b"), "outer-value");
        CHECK_STR(prop(cfg->kafka, cfg->n_kafka, "c"), "<xyz>");
        CHECK_STR(prop(cfg->kafka, cfg->n_kafka, "d"),
                  "${EXACTLY_TEST_INNER}");
        exactly_config_free(cfg);
        cfg = NULL;
    }

    write_file("nested.yaml",
               "kafka:\n  bootstrap.servers: b\n"
               "  a: \"${EXACTLY_TEST_UNSET:-${EXACTLY_TEST_UNSET2}}\"\n");
    rc = exactly_config_load("nested.yaml", &cfg, err, sizeof(err));
    CHECK(rc == EXACTLY_ECONFIG, "nested unset: rc %d", (int)rc);
    CHECK_STR(err, "nested.yaml:3:6: environment variable "
                   "'EXACTLY_TEST_UNSET2' is not set (in 'kafka.a')");
    exactly_config_free(cfg);
    unlink("nested.yaml");
}

/* The shipped examples load with only the documented variables set. */
static void test_examples(const char *src_config_dir)
{
    static const char *const names[] = {"ledger.yaml", "projection.yaml"};
    char path[2 * PATH_MAX], err[1024];
    size_t i;

    setenv("EXACTLY_BOOTSTRAP_SERVERS", "localhost:9092", 1);
    setenv("EXACTLY_PG_CONNINFO", "dbname=app", 1);
    for (i = 0; i < 2; i++) {
        exactly_config *cfg = NULL;
        exactly_err rc;

        snprintf(path, sizeof(path), "%s/%s", src_config_dir, names[i]);
        if (access(path, R_OK) != 0) {
            fprintf(stderr, "# %s not found, not checked\n", path);
            continue;
        }
        rc = exactly_config_load(path, &cfg, err, sizeof(err));
        CHECK(rc == EXACTLY_OK, "%s: %s", path, err);
        exactly_config_free(cfg);
    }
}

/* The source tree: EXACTLY_SOURCE_DIR if set, else found from this file's
 * own path (absolute under CMake, relative to the build's working
 * directory otherwise). Must run before the test changes directory. */
static void source_dir(char *out, size_t size)
{
    const char *env = getenv("EXACTLY_SOURCE_DIR");
    const char *self = __FILE__;
    const char *suffix = "tests/unit/test_config.c";
    size_t len = strlen(self), slen = strlen(suffix);
    char cwd[PATH_MAX] = ".";
    int n;

    if (env) {
        snprintf(out, size, "%s", env);
        return;
    }
    if (self[0] != '/' && !getcwd(cwd, sizeof(cwd)))
        snprintf(cwd, sizeof(cwd), ".");
    if (len >= slen && strcmp(self + len - slen, suffix) == 0)
        len -= slen;
    else
        len = 0;
    if (self[0] == '/')
        n = snprintf(out, size, "%.*s.", (int)len, self);
    else
        n = snprintf(out, size, "%s/%.*s.", cwd, (int)len, self);
    if (n < 0 || (size_t)n >= size)
        snprintf(out, size, "."); /* too long: the examples are not found */
}

int main(void)
{
    char dir[] = "/tmp/exactly-test-config-XXXXXX";
    char src[PATH_MAX], config_dir[PATH_MAX + 16];
    static const char *const files[] = {"valid.yaml", "minimal.yaml", "relay.yaml",
                                        "worker.yaml"};
    size_t i;

    source_dir(src, sizeof(src));
    snprintf(config_dir, sizeof(config_dir), "%s/config", src);
    if (!mkdtemp(dir) || chdir(dir) != 0) {
        perror("FAIL: temp dir");
        return 1;
    }
    test_valid();
    test_minimal(dir);
    test_relay_only(dir);
    test_bad_documents();
    test_secrets_in_messages();
    test_redact();
    test_conninfo_problem();
    test_conninfo_scrub();
    test_conninfo_params();
    test_is_secret();
    test_nested_default();
    test_core_tags();
    test_non_canonical_option();
    test_not_regular_file();
    test_large_map_comparisons();
    test_large_map_time();
    test_examples(config_dir);

    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        unlink(files[i]);
    if (chdir("/") != 0 || rmdir(dir) != 0) {
        fprintf(stderr, "FAIL: cannot remove %s\n", dir);
        failures++;
    }
    if (failures)
        fprintf(stderr, "test_config: %d check(s) failed\n", failures);
    else
        printf("test_config: all checks passed\n");
    return failures ? 1 : 0;
}
