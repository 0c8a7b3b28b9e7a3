/*
 * cmd_check.c - `exactly check`: everything a worker needs before it
 * starts, each item printed with OK or the reason, changing nothing.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "cli.h"
#include "handler_upsert.h"
#include "lookup.h"
#include "options.h"
#include "pg_conn.h"
#include "plugin.h"
#include "source.h"
#include "store.h"
#include "strbuf.h"

typedef struct checker {
    int refused; /* config or plugin problems: exit 2 */
    int failed;  /* services unreachable or not ready: exit 1 */
} checker;

static void ok(const char *what, const char *detail)
{
    cli_line(stdout, "OK    %-26s %s", what, detail);
}

static void bad(checker *ck, int refusal, const char *what, const char *why)
{
    cli_line(stdout, "FAIL  %-26s %s", what, why);
    if (refusal)
        ck->refused = 1;
    else
        ck->failed = 1;
}

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
    snprintf(what, sizeof(what), "kafka config [%s]", p->name);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        bad(ck, 1, what, err);
        return;
    }
    for (i = 0; i < p->n_topics; i++) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *t = rd_kafka_topic_new(rk, p->topics[i], NULL);
        rd_kafka_resp_err_t e;

        snprintf(what, sizeof(what), "kafka topic %s", p->topics[i]);
        e = t ? rd_kafka_metadata(rk, 0, t, &md, 10000)
              : RD_KAFKA_RESP_ERR__INVALID_ARG;
        if (e) {
            snprintf(detail, sizeof(detail), "cannot read metadata: %s",
                     rd_kafka_err2str(e));
            bad(ck, 0, what, detail);
        } else if (md->topic_cnt < 1 || md->topics[0].err) {
            snprintf(detail, sizeof(detail), "%s",
                     md->topic_cnt ? rd_kafka_err2str(md->topics[0].err)
                                   : "not found");
            bad(ck, 0, what, detail);
        } else {
            snprintf(detail, sizeof(detail), "%d partitions, %d brokers",
                     md->topics[0].partition_cnt, md->broker_cnt);
            ok(what, detail);
        }
        if (md)
            rd_kafka_metadata_destroy(md);
        if (t)
            rd_kafka_topic_destroy(t);
    }
    rd_kafka_destroy(rk);
}

/*
 * Opens the transaction every SQL item of check runs in: read only, and
 * always rolled back with ro_end(). Returns 0, or -1 after reporting why
 * under what.
 */
static int ro_begin(checker *ck, PGconn *conn, const char *what)
{
    char err[1024];

    if (exactly_pg_exec(conn, "BEGIN READ ONLY", 0, NULL, NULL, err,
                        sizeof(err)) != EXACTLY_OK) {
        bad(ck, 0, what, err);
        return -1;
    }
    return 0;
}

static void ro_end(PGconn *conn)
{
    char ignore[256];

    (void)exactly_pg_exec(conn, "ROLLBACK", 0, NULL, NULL, ignore,
                          sizeof(ignore));
}

/*
 * For the built-in upsert when it reads the looked-up rows (not fused):
 * every source column its `columns` option maps must be in the lookup's
 * result, or the worker fails every record and dead-letters it. Writes
 * the missing ones into why and returns how many there are.
 */
static size_t upsert_missing_columns(const exactly_plugin *pl,
                                     const PGresult *res, strbuf *why)
{
    const char *const *targets = NULL, *const *sources = NULL;
    size_t n, i, missing = 0;

    if (!pl || pl->fused || pl->h != exactly_builtin_upsert())
        return 0;
    n = exactly_options_map(pl->opts, "columns", &targets, &sources);
    for (i = 0; i < n; i++) {
        if (exactly_lookup_column(res, sources[i]) >= 0)
            continue;
        strbuf_printf(why, "%s\"%s\" (mapped to \"%s\")", missing ? ", " : "",
                      sources[i], targets[i]);
        missing++;
    }
    return missing;
}

/*
 * Runs the pipeline's lookup exactly as the worker builds it (lib/lookup.c:
 * identifiers quoted, the configured columns, the IDs as its one
 * parameter, so the extended protocol refuses a second statement) on no
 * IDs, in a read-only transaction that is rolled back. Reports the columns
 * the handler will get, and refuses what would fail every batch: no key
 * column, or a column the built-in upsert maps that the lookup lacks.
 */
static void check_lookup(checker *ck, PGconn *conn, const cfg_pipeline *p,
                         const exactly_plugin *pl)
{
    char what[128], err[1024];
    char *sql = NULL, *key = NULL;
    strbuf detail = {0}, missing = {0};
    PGresult *res = NULL;
    const char *params[1] = {"{}"};
    int c;

    snprintf(what, sizeof(what), "lookup [%s]", p->name);
    if (exactly_lookup_sql(conn, p, &sql, &key) != EXACTLY_OK) {
        bad(ck, 0, what, "out of memory");
        return;
    }
    if (ro_begin(ck, conn, what) != 0)
        goto cleanup;
    if (exactly_pg_exec(conn, sql, 1, params, &res, err, sizeof(err)) !=
        EXACTLY_OK) {
        bad(ck, 1, what, err);
    } else if (exactly_lookup_column(res, key) < 0) {
        snprintf(err, sizeof(err),
                 "the result has no column \"%s\" to match IDs on (set "
                 "lookup.key_column)",
                 key);
        bad(ck, 1, what, err);
    } else {
        strbuf_printf(&detail, "runs; %d columns: ", PQnfields(res));
        for (c = 0; c < PQnfields(res); c++)
            strbuf_printf(&detail, "%s%s", c ? ", " : "", PQfname(res, c));
        if (upsert_missing_columns(pl, res, &missing) > 0) {
            strbuf_printf(&detail, "; the upsert's columns option needs %s, "
                                   "which the lookup does not return",
                          strbuf_str(&missing));
            bad(ck, 1, what, strbuf_str(&detail));
        } else {
            ok(what, strbuf_str(&detail));
        }
    }
    ro_end(conn);

cleanup:
    PQclear(res);
    strbuf_free(&detail);
    strbuf_free(&missing);
    free(sql);
    free(key);
}

/*
 * Verifies that the connected role holds every grant of g (the list that
 * 'exactly migrate --print-grants' prints): one FAIL line per object it
 * lacks something on, naming the privileges, the object and the GRANT
 * that gives them, or one OK line. Read only, rolled back. Returns how
 * many objects lack something (1 when the check itself failed).
 */
static size_t check_grants(checker *ck, PGconn *conn, const char *what,
                           const admin_grants *g)
{
    char err[1024];
    PGresult *res = NULL;
    strbuf detail = {0};
    const char *role;
    size_t i, n_checked = 0, n_bad = 0;

    if (ro_begin(ck, conn, what) != 0)
        return 1;
    if (exactly_pg_exec(conn, "SELECT current_user", 0, NULL, &res, err,
                        sizeof(err)) != EXACTLY_OK) {
        bad(ck, 0, what, err);
        n_bad = 1;
        goto done;
    }
    role = PQgetvalue(res, 0, 0);
    for (i = 0; i < g->n; i++) {
        const admin_grant *x = &g->v[i];
        char *missing = NULL;
        int exists = 0;

        if (x->kind == ADMIN_OBJ_NOTE)
            continue;
        if (admin_grant_missing(conn, x, &missing, &exists, err,
                                sizeof(err)) != EXACTLY_OK) {
            bad(ck, 0, what, err);
            free(missing);
            n_bad++;
            goto done;
        }
        n_checked += exists;
        if (exists && missing[0]) {
            strbuf_reset(&detail);
            strbuf_printf(&detail,
                          "role %s lacks %s on %s %s (%s): GRANT %s ON %s %s "
                          "TO %s",
                          role, missing, admin_object_keyword(x->kind),
                          x->object, x->why, missing,
                          admin_object_keyword(x->kind), x->object, role);
            bad(ck, 0, what, strbuf_str(&detail));
            n_bad++;
        }
        free(missing);
    }
    if (n_bad == 0) {
        strbuf_reset(&detail);
        strbuf_printf(&detail, "role %s holds the %zu grants checked", role,
                      n_checked);
        for (i = 0; i < g->n; i++)
            if (g->v[i].kind == ADMIN_OBJ_NOTE)
                strbuf_printf(&detail, "; not checked: %s", g->v[i].why);
        ok(what, strbuf_str(&detail));
    }

done:
    PQclear(res);
    strbuf_free(&detail);
    ro_end(conn);
    return n_bad;
}

/* One validated item, as a line. */
static void report(void *arg, const char *item, const char *err,
                   const char *detail)
{
    if (err)
        bad(arg, 1, item, err);
    else
        ok(item, detail);
}

static void check_pipeline(checker *ck, const exactly_config *cfg,
                           const cfg_pipeline *p, PGconn *conn)
{
    char what[128], err[2048];
    exactly_plugin *pl = NULL;

    /* The configuration itself: what migrate refuses too. */
    (void)admin_validate_pipeline(cfg, p, report, ck, &pl);
    if (conn && pl) {
        /* Privileges first: without them the lookup and open() fail for
         * that reason alone, which is a grant to add (exit 1), not a
         * configuration to fix (exit 2). */
        admin_grants g = {0};
        size_t lacking = 0;

        snprintf(what, sizeof(what), "privileges [%s]", p->name);
        if (admin_grants_pipeline(cfg, p, &g, err, sizeof(err)) != EXACTLY_OK)
            bad(ck, 1, what, err);
        else
            lacking = check_grants(ck, conn, what, &g);
        admin_grants_free(&g);
        if (lacking > 0) {
            snprintf(what, sizeof(what), "lookup [%s]", p->name);
            bad(ck, 0, what, "not run: the role lacks the grants above");
            snprintf(what, sizeof(what), "handler open [%s]", p->name);
            bad(ck, 0, what, "not run: the role lacks the grants above");
            goto kafka;
        }
    }
    if (conn) {
        check_lookup(ck, conn, p, pl);
        if (pl) {
            snprintf(what, sizeof(what), "handler open [%s]", p->name);
            if (exactly_plugin_open(pl, conn, p, 30000, err, sizeof(err)) !=
                EXACTLY_OK)
                bad(ck, 1, what, err);
            else
                ok(what, "open() accepted the options and the database");
        }
    }
kafka:
    exactly_plugin_free(pl);
    check_kafka(ck, cfg, p);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: exactly check -c FILE [--pipeline NAME]\n"
            "\n"
            "Validates the configuration, loads each pipeline's handler and\n"
            "calls its open(), runs each lookup on no IDs (the statement the\n"
            "worker runs, reporting the columns the handler will get), checks\n"
            "the framework schema version, and reads each topic's metadata\n"
            "from Kafka. Prints one line per item with OK or the reason.\n"
            "Writes nothing: every statement runs in a read-only transaction\n"
            "that is rolled back.\n"
            "\n"
            "options:\n"
            "  -c, --config FILE     the YAML configuration (required)\n"
            "  -p, --pipeline NAME   check only this pipeline\n"
            "  -h, --help            this text\n"
            "\n"
            "It also verifies, as the role of the configuration's conninfo (the\n"
            "workers' role), every grant the workers need that exactly can name\n"
            "('exactly migrate --print-grants ROLE' prints them); a missing one\n"
            "is a FAIL line naming the privilege, the object and the GRANT.\n"
            "\n"
            "Exit codes: 0 all OK, 1 a service is unreachable, not migrated, or\n"
            "a grant is missing, 2 the configuration or a plugin is refused.\n");
}

int cmd_check(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"pipeline", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *only = NULL;
    exactly_config *cfg;
    PGconn *conn;
    checker ck = {0, 0};
    char err[2048], detail[512];
    int c, version = 0, framework_ready = 0;
    size_t i;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:p:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'p': only = optarg; break;
        case 'h': usage(stdout); return CLI_OK;
        default: usage(stderr); return CLI_REFUSED;
        }
    }
    if (!path) {
        fprintf(stderr, "exactly check: missing -c FILE\n");
        return CLI_REFUSED;
    }
    if (exactly_config_load(path, &cfg, err, sizeof(err)) != EXACTLY_OK) {
        cli_line(stdout, "FAIL  %-26s %s", "config", err);
        return CLI_REFUSED;
    }
    snprintf(detail, sizeof(detail), "%s, %zu pipeline(s)", path, cfg->n_pipelines);
    ok("config", detail);
    if (only && !cli_pick_pipeline(cfg, only)) {
        exactly_config_free(cfg);
        return CLI_REFUSED;
    }
    conn = exactly_pg_connect(cfg, "exactly-check", err, sizeof(err));
    if (!conn) {
        bad(&ck, 0, "postgres", err);
    } else {
        snprintf(detail, sizeof(detail), "connected, server %d.%d",
                 PQserverVersion(conn) / 10000, PQserverVersion(conn) % 10000);
        ok("postgres", detail);
        /* Whatever runs on this session is read only unless it says
         * otherwise, and nothing here says otherwise. */
        if (exactly_pg_exec(conn, "SET default_transaction_read_only = on", 0,
                            NULL, NULL, err, sizeof(err)) != EXACTLY_OK) {
            bad(&ck, 0, "postgres", err);
            PQfinish(conn);
            conn = NULL;
        }
    }
    if (conn && ro_begin(&ck, conn, "framework schema") == 0) {
        if (exactly_store_version(conn, cfg->postgres.schema, &version, err,
                                  sizeof(err)) != EXACTLY_OK) {
            bad(&ck, 0, "framework schema", err);
        } else if (version != EXACTLY_SCHEMA_VERSION) {
            snprintf(detail, sizeof(detail),
                     "schema %s at version %d, need %d: run 'exactly migrate -c %s'",
                     cfg->postgres.schema, version, EXACTLY_SCHEMA_VERSION, path);
            bad(&ck, 0, "framework schema", detail);
        } else {
            snprintf(detail, sizeof(detail), "%s at version %d",
                     cfg->postgres.schema, version);
            ok("framework schema", detail);
            framework_ready = 1;
        }
        ro_end(conn);
    }
    if (framework_ready) {
        admin_grants g = {0};
        if (admin_grants_framework(cfg, &g, err, sizeof(err)) != EXACTLY_OK)
            bad(&ck, 1, "privileges [framework]", err);
        else
            check_grants(&ck, conn, "privileges [framework]", &g);
        admin_grants_free(&g);
    }
    for (i = 0; i < cfg->n_pipelines; i++)
        if (!only || strcmp(only, cfg->pipelines[i].name) == 0)
            check_pipeline(&ck, cfg, &cfg->pipelines[i], conn);
    if (conn)
        PQfinish(conn);
    exactly_config_free(cfg);
    return ck.refused ? CLI_REFUSED : ck.failed ? CLI_FAILED : CLI_OK;
}
