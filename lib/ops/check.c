/*
 * check.c - see check.h.
 */
#include "ops/check.h"
#include "ops/check_item.h"
#include "ops/check_relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "handler_upsert.h"
#include "kafka/admin.h"
#include "lookup_probe.h"
#include "ops/grants.h"
#include "ops/validate.h"
#include "options.h"
#include "pg_conn.h"
#include "pg_open.h"
#include "plugin.h"
#include "source.h"
#include "store.h"
#include "store_version.h"
#include "strbuf.h"



static void check_kafka(checker *ck, const exactly_config *cfg,
                        const cfg_pipeline *p)
{
    char err[1024], reset[16], what[128], detail[512];
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    size_t i;

    /* Refused properties were reported by the validation. */
    conf = exactly_kafka_conf(cfg, p, reset, "exactly-check", err, sizeof(err));
    if (!conf)
        return;
    rd_kafka_conf_destroy(conf);
    snprintf(what, sizeof(what), "kafka config [%s]", p->name);
    rk = kafka_admin_new(cfg, p, "check", reset, err, sizeof(err));
    if (!rk) {
        bad(ck, 1, what, err);
        return;
    }
    for (i = 0; i < p->n_topics; i++) {
        int parts = 0, brokers = 0;

        snprintf(what, sizeof(what), "kafka topic %s", p->topics[i]);
        if (kafka_admin_topic_meta(rk, p->topics[i], KAFKA_TIMEOUT_MS, &parts,
                                   &brokers, err, sizeof(err)) != 0) {
            bad(ck, 0, what, err);
            continue;
        }
        snprintf(detail, sizeof(detail), "%d partitions, %d brokers", parts,
                 brokers);
        ok(ck, what, detail);
    }
    kafka_admin_free(rk);
}

/*
 * For the built-in upsert when it reads the looked-up rows (not fused):
 * every source column its `columns` option maps must be in the lookup's
 * result, or the worker fails every record and dead-letters it. Writes
 * the missing ones into why and returns how many there are.
 */
static size_t upsert_missing_columns(const exactly_plugin *pl,
                                     const lookup_shape *shape, strbuf *why)
{
    const char *const *targets = NULL, *const *sources = NULL;
    size_t n, i, missing = 0;

    if (!pl || pl->fused || pl->h != exactly_builtin_upsert())
        return 0;
    n = exactly_options_map(pl->opts, "columns", &targets, &sources);
    for (i = 0; i < n; i++) {
        if (lookup_shape_has(shape, sources[i]))
            continue;
        strbuf_printf(why, "%s\"%s\" (mapped to \"%s\")", missing ? ", " : "",
                      sources[i], targets[i]);
        missing++;
    }
    return missing;
}

/*
 * Runs the pipeline's lookup exactly as the worker builds it on no IDs
 * (lookup_probe), in a read-only transaction that is rolled back. Reports
 * the columns the handler will get, and refuses what would fail every
 * batch: no key column, or a column the built-in upsert maps that the
 * lookup lacks.
 */
static void check_lookup(checker *ck, PGconn *conn, const cfg_pipeline *p,
                         const exactly_plugin *pl)
{
    char what[128], err[1024];
    strbuf detail = {0}, missing = {0};
    lookup_shape shape;
    exactly_err rc;
    size_t c;

    snprintf(what, sizeof(what), "lookup [%s]", p->name);
    if (check_ro_begin(ck, conn, what) != 0)
        return;
    rc = lookup_probe(conn, p, &shape, err, sizeof(err));
    check_ro_end(conn);
    if (rc != EXACTLY_OK) {
        bad(ck, rc != EXACTLY_ENOMEM, what, err);
        return;
    }
    if (!shape.has_key) {
        snprintf(err, sizeof(err),
                 "the result has no column \"%s\" to match IDs on (set "
                 "lookup.key_column)",
                 shape.key_column);
        bad(ck, 1, what, err);
        goto cleanup;
    }
    strbuf_printf(&detail, "runs; %zu columns: ", shape.n_columns);
    for (c = 0; c < shape.n_columns; c++)
        strbuf_printf(&detail, "%s%s", c ? ", " : "", shape.columns[c]);
    if (upsert_missing_columns(pl, &shape, &missing) > 0) {
        strbuf_printf(&detail, "; the upsert's columns option needs %s, "
                               "which the lookup does not return",
                      strbuf_str(&missing));
        bad(ck, 1, what, strbuf_str(&detail));
    } else {
        ok(ck, what, strbuf_str(&detail));
    }
cleanup:
    lookup_shape_free(&shape);
    strbuf_free(&detail);
    strbuf_free(&missing);
}

/* One validated item. */
static void report_validated(void *arg, const char *item, const char *err,
                             const char *detail)
{
    if (err)
        bad(arg, 1, item, err);
    else
        ok(arg, item, detail);
}

/* Privileges first: without them the lookup and open() fail for that
 * reason alone, which is a grant to add (exit 1), not a configuration to
 * fix (exit 2). Returns how many grants are lacking. */
static size_t check_pipeline_grants(checker *ck, const exactly_config *cfg,
                                    const cfg_pipeline *p, PGconn *conn)
{
    char what[128], err[2048];
    ops_grants g = {0};
    size_t lacking = 0;

    snprintf(what, sizeof(what), "privileges [%s]", p->name);
    if (ops_grants_pipeline(cfg, p, &conn, &g, err, sizeof(err)) !=
        EXACTLY_OK)
        bad(ck, 1, what, err);
    else
        lacking = check_grants(ck, conn, what, &g);
    ops_grants_free(&g);
    if (lacking > 0) {
        snprintf(what, sizeof(what), "lookup [%s]", p->name);
        bad(ck, 0, what, "not run: the role lacks the grants above");
        snprintf(what, sizeof(what), "handler open [%s]", p->name);
        bad(ck, 0, what, "not run: the role lacks the grants above");
    }
    return lacking;
}

static void check_pipeline(checker *ck, const exactly_config *cfg,
                           const cfg_pipeline *p, PGconn *conn)
{
    char what[128], err[2048];
    exactly_plugin *pl = NULL;

    /* The configuration itself: what migrate refuses too. */
    (void)ops_validate_pipeline(cfg, p, report_validated, ck, &pl);
    if (conn && pl && check_pipeline_grants(ck, cfg, p, conn) > 0)
        goto kafka;
    if (conn) {
        check_lookup(ck, conn, p, pl);
        if (pl) {
            snprintf(what, sizeof(what), "handler open [%s]", p->name);
            if (exactly_plugin_open(pl, conn, p, 30000, err, sizeof(err)) !=
                EXACTLY_OK)
                bad(ck, 1, what, err);
            else
                ok(ck, what, "open() accepted the options and the database");
        }
    }
kafka:
    exactly_plugin_free(pl);
    check_kafka(ck, cfg, p);
}

/* The session every item runs on, or NULL after reporting why. */
static PGconn *connect_ro(checker *ck, const exactly_config *cfg)
{
    char err[2048], detail[512];
    PGconn *conn = NULL;
    exactly_err rc;

    /* The worker refuses a connection that is not a session of its own,
     * and the read-only default below is a session setting. */
    rc = exactly_pg_connect_own_session(cfg, "exactly-check", &conn, err,
                                        sizeof(err));
    if (rc != EXACTLY_OK) {
        bad(ck, rc == EXACTLY_ECONFIG, "postgres", err);
        return NULL;
    }
    snprintf(detail, sizeof(detail), "connected, server %d.%d",
             PQserverVersion(conn) / 10000, PQserverVersion(conn) % 10000);
    ok(ck, "postgres", detail);
    /* Whatever runs on this session is read only unless it says otherwise,
     * and nothing here says otherwise. */
    if (exactly_pg_exec(conn, "SET default_transaction_read_only = on", 0,
                        NULL, NULL, err, sizeof(err)) != EXACTLY_OK) {
        bad(ck, 0, "postgres", err);
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

/* The schema version, then the framework's grants when workers is set
 * (the relays' own are checked per relay: a file of relays alone needs
 * none of the workers' tables). */
static void check_framework(checker *ck, const exactly_config *cfg,
                            PGconn *conn, int workers)
{
    char err[2048], detail[512];
    ops_grants g = {0};
    int version = 0;
    exactly_err rc;

    if (check_ro_begin(ck, conn, "framework schema") != 0)
        return;
    rc = store_check_version(conn, cfg, &version, err, sizeof(err));
    check_ro_end(conn);
    if (rc == EXACTLY_EDATABASE) {
        snprintf(detail, sizeof(detail),
                 "schema %s at version %d, need %d: run 'exactly migrate -c %s'",
                 cfg->postgres.schema, version, EXACTLY_SCHEMA_VERSION,
                 cfg->path);
        bad(ck, 0, "framework schema", detail);
        return;
    }
    if (rc != EXACTLY_OK) {
        bad(ck, 0, "framework schema", err);
        return;
    }
    snprintf(detail, sizeof(detail), "%s at version %d", cfg->postgres.schema,
             version);
    ok(ck, "framework schema", detail);
    if (!workers)
        return;
    if (ops_grants_framework(cfg, &g, err, sizeof(err)) != EXACTLY_OK)
        bad(ck, 1, "privileges [framework]", err);
    else
        check_grants(ck, conn, "privileges [framework]", &g);
    ops_grants_free(&g);
}

void ops_check(const exactly_config *cfg, const char *only,
               const char *only_relay, ops_check_fn *report, void *arg)
{
    checker ck = {report, arg};
    PGconn *conn = connect_ro(&ck, cfg);
    size_t i;

    if (conn)
        check_framework(&ck, cfg, conn, cfg->n_pipelines > 0 && !only_relay);
    for (i = 0; i < cfg->n_pipelines; i++)
        if ((!only && !only_relay) ||
            (only && strcmp(only, cfg->pipelines[i].name) == 0))
            check_pipeline(&ck, cfg, &cfg->pipelines[i], conn);
    for (i = 0; i < cfg->n_relays; i++)
        if ((!only && !only_relay) ||
            (only_relay && strcmp(only_relay, cfg->relays[i].name) == 0))
            check_relay(&ck, cfg, &cfg->relays[i], conn);
    if (conn)
        PQfinish(conn);
}
