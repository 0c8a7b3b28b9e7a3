/*
 * check_relay.c - `exactly check` on a relay: its grants, its outbox
 * table, its producer configuration and its topics (check.h).
 */
#include "ops/check_relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka/producer.h"
#include "ops/grants.h"
#include "pg_conn.h"
#include "strbuf.h"


/* The columns the relay's statements name (lib/relay/relay_outbox.c), with
 * the types they rely on, as format_type() spells them. */
static const struct {
    const char *name;
    const char *type;
    const char *alt; /* another type that works too; NULL: none */
} outbox_columns[] = {
    {"id", "bigint", "integer"},
    {"topic", "text", "character varying"},
    {"key", "bytea", NULL},
    {"value", "bytea", NULL},
    {"headers", "jsonb", "json"},
    {"event_id", "uuid", NULL},
    {"created", "xid8", NULL},
    {"created_at", "timestamp with time zone", NULL},
    {"published_at", "timestamp with time zone", NULL},
    {"dead_reason", "text", "character varying"},
    {"dead_at", "timestamp with time zone", NULL},
};

/* Whether r's outbox is the one `exactly migrate` creates. */
static int framework_outbox(const exactly_config *cfg, const cfg_relay *r)
{
    return strcmp(r->schema, cfg->postgres.schema) == 0 &&
           strcmp(r->table, "outbox") == 0;
}

/* Compares the outbox's columns (res: name, type, default, NOT NULL) with
 * outbox_columns; writes what is missing, of another type or may not hold
 * what the relay relies on into why and returns how many. */
static size_t outbox_mismatches(const PGresult *res, strbuf *why)
{
    size_t c, n = 0;
    int i;

    for (c = 0; c < sizeof(outbox_columns) / sizeof(outbox_columns[0]); c++) {
        const char *want = outbox_columns[c].type, *alt = outbox_columns[c].alt;
        const char *have = NULL, *dflt = "";
        int notnull = 0;

        for (i = 0; i < PQntuples(res); i++)
            if (strcmp(PQgetvalue(res, i, 0), outbox_columns[c].name) == 0) {
                have = PQgetvalue(res, i, 1);
                dflt = PQgetvalue(res, i, 2);
                notnull = strcmp(PQgetvalue(res, i, 3), "t") == 0;
            }
        if (!have)
            strbuf_printf(why, "%sno column %s (%s)", n++ ? "; " : "",
                          outbox_columns[c].name, want);
        else if (strcmp(have, want) != 0 && !(alt && strcmp(have, alt) == 0))
            strbuf_printf(why, "%scolumn %s is %s, the relay needs %s",
                          n++ ? "; " : "", outbox_columns[c].name, have, want);
        /* Without it a row's created is NULL, below no horizon: the relay
         * never publishes the row. */
        else if (strcmp(outbox_columns[c].name, "created") == 0 &&
                 !strstr(dflt, "pg_current_xact_id()"))
            strbuf_printf(why, "%scolumn created has no DEFAULT "
                               "pg_current_xact_id(): rows inserted "
                               "without it are never published",
                          n++ ? "; " : "");
        /* A row without one goes out with an empty event-id header, which
         * a consumer's dedup takes for no key and applies every time it
         * comes: at least once, without a word. NOT NULL is enough; a
         * table without a default has every insert write its own. */
        else if (strcmp(outbox_columns[c].name, "event_id") == 0 && !notnull)
            strbuf_printf(why, "%scolumn event_id may be NULL: a row "
                               "without one goes out with an empty "
                               "event-id header, which a consumer's dedup "
                               "does not apply; make it NOT NULL DEFAULT "
                               "gen_random_uuid()",
                          n++ ? "; " : "");
    }
    return n;
}

/*
 * The outbox table of r: it exists and has every column the relay's
 * statements name, with the types they rely on, created with its
 * default and event_id NOT NULL. A missing framework
 * outbox is a migration to run (exit 1); a table of the user's that is
 * missing or lacks columns is the configuration naming the wrong table,
 * as a lookup's table is (exit 2).
 */
static void check_outbox(checker *ck, const exactly_config *cfg,
                         const cfg_relay *r, PGconn *conn)
{
    static const char *sql =
        "SELECT a.attname, format_type(a.atttypid, NULL),"
        " coalesce(pg_get_expr(d.adbin, d.adrelid), ''), a.attnotnull"
        " FROM pg_attribute a LEFT JOIN pg_attrdef d"
        " ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        " WHERE a.attrelid = $1::regclass AND a.attnum > 0"
        " AND NOT a.attisdropped";
    char what[160], err[1024];
    char *s = exactly_pg_ident(conn, r->schema);
    char *t = exactly_pg_ident(conn, r->table);
    strbuf name = {0}, why = {0};
    const char *params[1];
    PGresult *res = NULL;
    int fw = framework_outbox(cfg, r);

    snprintf(what, sizeof(what), "outbox [relay %s]", r->name);
    if (!s || !t) {
        bad(ck, 0, what, "out of memory");
        goto cleanup;
    }
    strbuf_printf(&name, "%s.%s", s, t);
    if (name.oom) {
        bad(ck, 0, what, "out of memory");
        goto cleanup;
    }
    params[0] = strbuf_str(&name);
    if (check_ro_begin(ck, conn, what) != 0)
        goto cleanup;
    if (exactly_pg_exec(conn, "SELECT to_regclass($1) IS NOT NULL", 1,
                        params, &res, err, sizeof(err)) != EXACTLY_OK) {
        check_ro_end(conn);
        bad(ck, 0, what, err);
        goto cleanup;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        check_ro_end(conn);
        if (fw)
            strbuf_printf(&why, "table %s does not exist: run 'exactly "
                                "migrate -c %s'",
                          strbuf_str(&name), cfg->path);
        else
            strbuf_printf(&why, "%s:%d: relays.%s: table %s does not exist: "
                                "create it with the outbox's columns "
                                "(docs/CONFIGURATION.md, relays.NAME.table) "
                                "or set table and schema to the outbox",
                          cfg->path, r->pos.line, r->name, strbuf_str(&name));
        bad(ck, !fw, what, why.oom ? "out of memory" : strbuf_str(&why));
        goto cleanup;
    }
    PQclear(res);
    res = NULL;
    if (exactly_pg_exec(conn, sql, 1, params, &res, err, sizeof(err)) !=
        EXACTLY_OK) {
        check_ro_end(conn);
        bad(ck, 0, what, err);
        goto cleanup;
    }
    check_ro_end(conn);
    strbuf_printf(&why, "%s:%d: relays.%s: table %s: ", cfg->path,
                  r->pos.line, r->name, strbuf_str(&name));
    if (outbox_mismatches(res, &why) > 0) {
        strbuf_printf(&why, " (docs/CONFIGURATION.md, relays.NAME.table, "
                            "lists the outbox's columns)");
        /* The framework's own outbox was changed after migrate: that is
         * the database to fix, not the file. */
        bad(ck, !fw, what, why.oom ? "out of memory" : strbuf_str(&why));
        goto cleanup;
    }
    strbuf_reset(&why);
    strbuf_printf(&why, "%s has the relay's %zu columns", strbuf_str(&name),
                  sizeof(outbox_columns) / sizeof(outbox_columns[0]));
    ok(ck, what, why.oom ? "out of memory" : strbuf_str(&why));
cleanup:
    PQclear(res);
    PQfreemem(s);
    PQfreemem(t);
    strbuf_free(&name);
    strbuf_free(&why);
}

/* CONFWARN lines librdkafka logs while the producer is created: the
 * properties it accepted but will ignore. Other lines (from its own
 * threads, later) are not kept. */
static void confwarn_cb(const rd_kafka_t *rk, int level, const char *fac,
                        const char *buf)
{
    strbuf *warn = rd_kafka_opaque(rk);
    const char *text = strstr(buf, "]: ");

    (void)level;
    if (!warn || strcmp(fac, "CONFWARN") != 0)
        return;
    strbuf_printf(warn, "; librdkafka warns: %s", text ? text + 3 : buf);
}

/* Whether topic is among the cluster's topics, with its partition count.
 * Reads every topic's metadata rather than this one's: a producer asking
 * for one topic lets a broker with auto.create.topics.enable create it,
 * and check changes nothing. Returns 0 found, 1 not found, -1 (err). */
static int find_topic(rd_kafka_t *rk, const char *topic, int *partitions,
                      char *err, size_t errsz)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e;
    int i, rc = 1;

    e = rd_kafka_metadata(rk, 1, NULL, &md, KAFKA_TIMEOUT_MS);
    if (e) {
        snprintf(err, errsz, "cannot read metadata: %s", rd_kafka_err2str(e));
        return -1;
    }
    for (i = 0; i < md->topic_cnt; i++)
        if (strcmp(md->topics[i].topic, topic) == 0) {
            if (md->topics[i].err) {
                snprintf(err, errsz, "%s",
                         rd_kafka_err2str(md->topics[i].err));
                rc = -1;
            } else {
                *partitions = md->topics[i].partition_cnt;
                rc = 0;
            }
            break;
        }
    rd_kafka_metadata_destroy(md);
    return rc;
}

/* One topic the relay's configuration fixes: role says what for. */
static void check_relay_topic(checker *ck, const exactly_config *cfg,
                              const cfg_relay *r, rd_kafka_t *rk,
                              const char *topic, const char *key,
                              const char *role)
{
    char what[400], err[512];
    strbuf detail = {0};
    int parts = 0, rc;

    snprintf(what, sizeof(what), "kafka topic %s [relay %s]", topic, r->name);
    rc = find_topic(rk, topic, &parts, err, sizeof(err));
    if (rc < 0)
        strbuf_printf(&detail, "%s", err);
    else if (rc > 0)
        strbuf_printf(&detail,
                      "not found (%s:%d: relays.%s.%s, %s): create it%s",
                      cfg->path, r->pos.line, r->name, key, role,
                      strcmp(key, "position_topic") == 0
                          ? " with one partition and cleanup.policy=compact"
                          : "");
    else
        strbuf_printf(&detail, "%d partitions; %s", parts, role);
    if (detail.oom)
        bad(ck, 0, what, "out of memory");
    else if (rc == 0)
        ok(ck, what, strbuf_str(&detail));
    else
        bad(ck, 0, what, strbuf_str(&detail));
    strbuf_free(&detail);
}

/*
 * The relay's producer: its configuration as the relay builds it, which
 * librdkafka must accept (rd_kafka_new, no transaction begun: a
 * transactional producer fences nobody before init_transactions()), then
 * the topics the configuration fixes. With mode: transactional, the
 * position reader's configuration too.
 */
static void check_relay_kafka(checker *ck, const exactly_config *cfg,
                              const cfg_relay *r)
{
    char what[160], err[2048];
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    strbuf detail = {0}, warn = {0};

    snprintf(what, sizeof(what), "kafka config [relay %s]", r->name);
    conf = exactly_kafka_producer_conf(cfg, r, "exactly-check", err,
                                       sizeof(err));
    if (!conf) {
        bad(ck, 1, what, err);
        return;
    }
    if (r->mode == CFG_RELAY_TRANSACTIONAL) {
        rd_kafka_conf_t *reader =
            exactly_kafka_position_reader_conf(cfg, r, err, sizeof(err));
        if (!reader) {
            rd_kafka_conf_destroy(conf);
            bad(ck, 1, what, err);
            return;
        }
        rd_kafka_conf_destroy(reader);
    }
    rd_kafka_conf_set_opaque(conf, &warn);
    rd_kafka_conf_set_log_cb(conf, confwarn_cb);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        bad(ck, 1, what, err);
        strbuf_free(&warn);
        return;
    }
    /* Later lines of its threads are not kept (confwarn_cb). */
    strbuf_printf(&detail, "librdkafka accepts the %s producer",
                  r->mode == CFG_RELAY_TRANSACTIONAL ? "transactional"
                                                     : "idempotent");
    if (r->mode == CFG_RELAY_TRANSACTIONAL) {
        size_t n = sizeof(err);
        if (rd_kafka_conf_get(rd_kafka_conf(rk), "transactional.id", err,
                              &n) == RD_KAFKA_CONF_OK)
            strbuf_printf(&detail, " (transactional.id %s; not initialised: "
                                   "that would fence a running relay)",
                          err);
    }
    strbuf_printf(&detail, "%s", warn.oom ? "" : strbuf_str(&warn));
    ok(ck, what, detail.oom ? "out of memory" : strbuf_str(&detail));
    if (r->topic)
        check_relay_topic(ck, cfg, r, rk, r->topic, "topic",
                          "rows whose topic is NULL go there");
    if (r->mode == CFG_RELAY_TRANSACTIONAL && r->position_topic)
        check_relay_topic(ck, cfg, r, rk, r->position_topic,
                          "position_topic",
                          "each batch's position record goes there");
    rd_kafka_destroy(rk);
    strbuf_free(&detail);
    strbuf_free(&warn);
}

/* The transactional.id r's producer gets (producer.h). */
static void relay_txn_id(const cfg_relay *r, char *out, size_t size)
{
    size_t i;

    snprintf(out, size, "exactly-relay-%s", r->name);
    for (i = 0; i < r->n_kafka; i++)
        if (strcmp(r->kafka[i].name, "transactional.id") == 0)
            snprintf(out, size, "%s", r->kafka[i].value);
}

/*
 * What the relays of one file must not share (relay.h, invariants 5 and
 * 6): a transactional relay's outbox with another relay (the one that
 * takes the outbox over would neither read the other's position nor
 * fence it, and the rows of a batch committed but not marked would go
 * out again), and a transactional.id (each would fence the other).
 * Relays sharing an idempotent outbox are one publisher and its standby.
 */
static void check_relay_shared(checker *ck, const exactly_config *cfg,
                               const cfg_relay *r)
{
    char what[160], tid[256], other_tid[256];
    strbuf why = {0};
    size_t j;

    snprintf(what, sizeof(what), "relay [%s]", r->name);
    relay_txn_id(r, tid, sizeof(tid));
    for (j = 0; j < cfg->n_relays; j++) {
        const cfg_relay *o = &cfg->relays[j];

        if (o == r)
            continue;
        relay_txn_id(o, other_tid, sizeof(other_tid));
        if (strcmp(o->schema, r->schema) == 0 &&
            strcmp(o->table, r->table) == 0 &&
            (r->mode == CFG_RELAY_TRANSACTIONAL ||
             o->mode == CFG_RELAY_TRANSACTIONAL))
            strbuf_printf(&why,
                          "%s%s:%d: relays.%s and relays.%s (line %d) "
                          "publish the same outbox %s.%s and one is "
                          "transactional: a relay that takes a transactional "
                          "outbox over must have its name and position_topic, "
                          "or the rows of a committed batch go out again; "
                          "give each relay its own outbox",
                          why.len ? "; " : "", cfg->path, r->pos.line,
                          r->name, o->name, o->pos.line, r->schema, r->table);
        else if (r->mode == CFG_RELAY_TRANSACTIONAL &&
                 o->mode == CFG_RELAY_TRANSACTIONAL &&
                 strcmp(tid, other_tid) == 0)
            strbuf_printf(&why,
                          "%s%s:%d: relays.%s and relays.%s (line %d) have "
                          "the same transactional.id %s: each would fence "
                          "the other; give each its own",
                          why.len ? "; " : "", cfg->path, r->pos.line,
                          r->name, o->name, o->pos.line, tid);
    }
    if (why.oom)
        bad(ck, 0, what, "out of memory");
    else if (why.len)
        bad(ck, 1, what, strbuf_str(&why));
    strbuf_free(&why);
}

void check_relay(checker *ck, const exactly_config *cfg,
                        const cfg_relay *r, PGconn *conn)
{
    check_relay_shared(ck, cfg, r);
    char what[160], err[2048];
    ops_grants g = {0};

    if (conn) {
        snprintf(what, sizeof(what), "privileges [relay %s]", r->name);
        if (ops_grants_relay(cfg, r, &g, err, sizeof(err)) != EXACTLY_OK)
            bad(ck, 1, what, err);
        else
            (void)check_grants(ck, conn, what, &g);
        ops_grants_free(&g);
        check_outbox(ck, cfg, r, conn);
    }
    check_relay_kafka(ck, cfg, r);
}

