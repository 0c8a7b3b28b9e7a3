/*
 * The test configuration writer (tests/support/tk_config.h): its fixed line
 * order, its quoting (' and $ doubled, so values are literal), the default
 * auto.offset.reset, and that what it writes loads as written.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "testkit.h"

static const char expected_full[] =
    "log:\n"
    "  format: 'json'\n"
    "  level: 'debug'\n"
    "kafka:\n"
    "  'bootstrap.servers': '127.0.0.1:9'\n"
    "  'session.timeout.ms': '6000'\n"
    "  'auto.offset.reset': 'earliest'\n"
    "postgres:\n"
    "  conninfo: 'dbname=''it\\''s'' password=a$$b'\n"
    "  schema: 'fw'\n"
    "  statement_timeout_ms: 5000\n"
    "  lock_timeout_ms: 100\n"
    "  connect_timeout_s: 3\n"
    "  idle_in_transaction_timeout_ms: 7000\n"
    "  client_timeout_ms: 9000\n"
    "pipelines:\n"
    "  'p-1':\n"
    "    topics: ['t''1', 't$$2']\n"
    "    group: 'g'\n"
    "    workers: 2\n"
    "    on_error: 'stop'\n"
    "    max_crashes: 5\n"
    "    unsafe_read_uncommitted: true\n"
    "    id: {from: 'header', type: 'text', header: 'x-id', max_length: 64, "
    "non_canonical: 'accept'}\n"
    "    lookup:\n"
    "      table: 'accounts'\n"
    "      id_column: 'id'\n"
    "      columns: ['id', 'name']\n"
    "      on_missing: 'retry'\n"
    "      missing_retry_ms: 250\n"
    "    handler:\n"
    "      plugin: '/plugins/ledger.so'\n"
    "      options:\n"
    "        'table': 'led''ger'\n"
    "        extra: 1\n"
    "    batch: {max_messages: 7, max_wait_ms: 0}\n"
    "    dedup: {from: 'header', header: 'event-id', retention: '1h'}\n"
    "    kafka:\n"
    "      'fetch.wait.max.ms': '10'\n"
    "    # pipeline\n"
    "  'q':\n"
    "    topics: ['u']\n"
    "    lookup:\n"
    "      sql: 'SELECT * FROM x WHERE id = ANY($$1)'\n"
    "      key_column: 'id'\n"
    "    handler:\n"
    "      builtin: 'upsert'\n"
    "      options:\n"
    "        'table': 'out'\n"
    "        key: ['id']\n"
    "        columns: {'id': 'id', 'na''me': 'name'}\n"
    "    batch: {max_wait_ms: 20}\n"
    "# top\n";

static char *written(const tk_config *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    TK_CHECK(f != NULL, "open_memstream");
    tk_config_fwrite(f, c);
    TK_CHECK(fclose(f) == 0, "fclose");
    return buf;
}

static void full_config(tk_config *c)
{
    tk_pipeline *p = &c->pipelines[0], *q = &c->pipelines[1];

    memset(c, 0, sizeof *c);
    c->log_format = "json";
    c->log_level = "debug";
    c->bootstraps = "127.0.0.1:9";
    c->kafka[0] = (tk_prop){"session.timeout.ms", "6000"};
    c->conninfo = "dbname='it\\'s' password=a$b";
    c->schema = "fw";
    c->statement_timeout_ms = 5000;
    c->lock_timeout_ms = 100;
    c->connect_timeout_s = 3;
    c->idle_in_transaction_timeout_ms = 7000;
    c->client_timeout_ms = 9000;
    p->name = "p-1";
    p->topics[0] = "t'1";
    p->topics[1] = "t$2";
    p->group = "g";
    p->workers = 2;
    p->on_error = "stop";
    p->max_crashes = 5;
    p->unsafe_read_uncommitted = 1;
    p->id_from = "header";
    p->id_type = "text";
    p->id_header = "x-id";
    p->id_max_length = 64;
    p->id_non_canonical = "accept";
    p->lookup_table = "accounts";
    p->lookup_id_column = "id";
    p->lookup_columns[0] = "id";
    p->lookup_columns[1] = "name";
    p->on_missing = "retry";
    p->missing_retry_ms = 250;
    p->plugin = "ledger.so";
    p->options[0] = (tk_prop){"table", "led'ger"};
    p->options_yaml = "        extra: 1\n";
    p->max_messages = 7;
    p->max_wait_set = 1;
    p->dedup_from = "header";
    p->dedup_header = "event-id";
    p->dedup_retention = "1h";
    p->kafka[0] = (tk_prop){"fetch.wait.max.ms", "10"};
    p->pipeline_yaml = "    # pipeline\n";
    q->name = "q";
    q->topics[0] = "u";
    q->lookup_sql = "SELECT * FROM x WHERE id = ANY($1)";
    q->lookup_key_column = "id";
    q->builtin = "upsert";
    q->options[0] = (tk_prop){"table", "out"};
    q->upsert_key[0] = "id";
    q->upsert_columns[0] = (tk_prop){"id", "id"};
    q->upsert_columns[1] = (tk_prop){"na'me", "name"};
    q->max_wait_ms = 20;
    c->yaml = "# top\n";
}

/* Every field, in the documented order, quoted. */
static void test_layout(void)
{
    tk_config c;
    char *text;

    full_config(&c);
    text = written(&c);
    TK_CHECK_EQ_STR(text, expected_full, "the full configuration");
    free(text);
}

/* auto.offset.reset: earliest unless the test sets it. */
static void test_offset_reset(void)
{
    tk_config c;
    char *text;

    memset(&c, 0, sizeof c);
    c.bootstraps = "b";
    c.conninfo = "c";
    text = written(&c);
    TK_CHECK_EQ_STR(text,
                    "kafka:\n"
                    "  'bootstrap.servers': 'b'\n"
                    "  'auto.offset.reset': 'earliest'\n"
                    "postgres:\n"
                    "  conninfo: 'c'\n",
                    "the minimal configuration");
    free(text);

    c.kafka[0] = (tk_prop){"auto.offset.reset", "latest"};
    text = written(&c);
    TK_CHECK(strstr(text, "'auto.offset.reset': 'latest'\n") != NULL &&
                 strstr(text, "earliest") == NULL,
             "a set auto.offset.reset is written once: %s", text);
    free(text);

    memset(&c.kafka, 0, sizeof c.kafka);
    c.kafka_yaml = "  auto.offset.reset: error\n";
    text = written(&c);
    TK_CHECK(strstr(text, "earliest") == NULL,
             "kafka_yaml's auto.offset.reset wins: %s", text);
    free(text);
}

/* The helpers for the common shapes. */
static void test_helpers(void)
{
    tk_config c;
    tk_pipeline *p = &c.pipelines[0];
    char *text;

    tk_config_init(&c, "b", "c");
    p->name = "v";
    p->topics[0] = "t";
    tk_upsert_handler(p, "view", (const char *[]){"id", "name", NULL});
    text = written(&c);
    TK_CHECK_EQ_STR(text,
                    "kafka:\n"
                    "  'bootstrap.servers': 'b'\n"
                    "  'auto.offset.reset': 'earliest'\n"
                    "postgres:\n"
                    "  conninfo: 'c'\n"
                    "pipelines:\n"
                    "  'v':\n"
                    "    topics: ['t']\n"
                    "    handler:\n"
                    "      builtin: 'upsert'\n"
                    "      options:\n"
                    "        'table': 'view'\n"
                    "        key: ['id']\n"
                    "        columns: {'id': 'id', 'name': 'name'}\n",
                    "an upsert pipeline from the helpers");
    free(text);
}

/* What the writer quoted reads back as the test's own strings. */
static void test_loads(void)
{
    char dir[256], path[512], err[512];
    exactly_config *cfg = NULL;
    const cfg_pipeline *p;
    tk_config c;
    exactly_err rc;

    full_config(&c);
    c.pipelines[1].name = NULL; /* the upsert's options need its table */
    tk_tmpdir("tk-config", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/worker.yaml", dir);
    tk_config_write(path, &c);
    rc = exactly_config_load(path, &cfg, err, sizeof err);
    TK_CHECK(rc == EXACTLY_OK, "the written configuration is refused: %s",
             err);
    TK_CHECK_EQ_STR(cfg->postgres.conninfo, c.conninfo, "conninfo");
    TK_CHECK_EQ_INT64(cfg->postgres.lock_timeout_ms, 100, "lock_timeout_ms");
    p = exactly_config_pipeline(cfg, "p-1");
    TK_CHECK(p != NULL, "pipeline p-1 not loaded");
    TK_CHECK_EQ_INT64(p->n_topics, 2, "topics");
    TK_CHECK_EQ_STR(p->topics[0], "t'1", "topic 1");
    TK_CHECK_EQ_STR(p->topics[1], "t$2", "topic 2");
    TK_CHECK_EQ_INT64(p->id.max_length, 64, "id max_length");
    TK_CHECK(p->id.non_canonical == CFG_NONCANON_ACCEPT, "non_canonical");
    TK_CHECK_EQ_STR(p->id.header, "x-id", "id header");
    TK_CHECK_EQ_STR(p->handler.plugin, "/plugins/ledger.so", "plugin");
    TK_CHECK_EQ_INT64(p->batch.max_messages, 7, "max_messages");
    TK_CHECK_EQ_INT64(p->batch.max_wait_ms, 0, "max_wait_ms");
    TK_CHECK_EQ_INT64(p->max_crashes, 5, "max_crashes");
    TK_CHECK(p->dedup.enabled, "dedup not enabled");
    TK_CHECK_EQ_INT64(p->dedup.retention_s, 3600, "dedup retention");
    exactly_config_free(cfg);
    tk_rm_rf(dir);
}

int main(void)
{
    /* Where a plugin given by file name is looked for. */
    setenv("EXACTLY_PLUGIN_DIR", "/plugins", 1);
    test_layout();
    test_offset_reset();
    test_helpers();
    test_loads();
    printf("tk_config: layout, quoting and loading checked\n");
    return 0;
}
