/* cmd_migrate.c - `exactly migrate`: create or upgrade the framework tables. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/grants.h"
#include "ops/validate.h"
#include "cli.h"
#include "pg_open.h"
#include "store.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: exactly migrate -c FILE\n"
            "       exactly migrate -c FILE --print-grants ROLE\n"
            "\n"
            "Creates the framework tables (offsets, dedup keys, dead letters)\n"
            "in the schema named by postgres.schema, or upgrades them to this\n"
            "version of exactly. Idempotent; concurrent runs wait for each\n"
            "other (a waiting run logs which session holds the lock).\n"
            "Consecutive steps run in one transaction, each recorded in\n"
            "SCHEMA.schema_version inside it; it commits before a concurrent\n"
            "index build and at the end, so an interrupted run leaves the\n"
            "schema at the last step committed and the next goes on from\n"
            "there; a failed run names the step, the setting whose timeout\n"
            "fired and the version the schema stays at (exit code 1).\n"
            "An index on a table the workers write is built concurrently,\n"
            "outside a transaction, so running workers go on (it waits for\n"
            "every older transaction of the database, bounded by\n"
            "postgres.statement_timeout_ms, not lock_timeout_ms; on a new\n"
            "install it is built in the steps' transaction and waits for\n"
            "nothing); an invalid one left by an interrupted build is built\n"
            "again.\n"
            "A configuration that 'exactly check' refuses (a handler that does\n"
            "not load or whose options are wrong, a Kafka property exactly\n"
            "owns) is refused first, with exit code 2, and nothing is done;\n"
            "so is a connection that is not a PostgreSQL session of its own\n"
            "(a pooler in transaction mode, such as PgBouncer's\n"
            "pool_mode = transaction): connect directly or in session mode.\n"
            "\n"
            "Run it as the role that owns the framework schema (or may create\n"
            "it), not as the role of the workers: that one owns nothing and\n"
            "needs only the grants --print-grants prints (docs/PRIVILEGES.md).\n"
            "\n"
            "options:\n"
            "  -c, --config FILE         the YAML configuration (required)\n"
            "      --print-grants ROLE   print the GRANT statements ROLE needs to\n"
            "                            run this configuration's workers, and\n"
            "                            nothing else; connects only to find\n"
            "                            the id sequence of an emit_outbox\n"
            "                            (exit 1 when it cannot)\n"
            "  -h, --help                this text\n");
}

/* Prints a refused item of the configuration. */
static void report_refusal(void *arg, const char *item, const char *err,
                           const char *detail)
{
    (void)arg;
    (void)detail;
    if (err)
        cli_line(stderr, "exactly migrate: %s: %s", item, err);
}

/* Whether g[i] repeats an earlier statement (a source read by two
 * pipelines). */
static int printed_before(const ops_grants *g, size_t i)
{
    size_t j;

    for (j = 0; j < i; j++)
        if (g->v[j].kind == g->v[i].kind && g->v[i].object &&
            g->v[j].object && strcmp(g->v[j].object, g->v[i].object) == 0 &&
            strcmp(g->v[j].privileges, g->v[i].privileges) == 0)
            return 1;
    return 0;
}

/* Prints the GRANT statements role needs for cfg's workers. Reads the
 * database only for the sequence of a built-in upsert's emit_outbox.
 * Returns an exit code. */
static int print_grants(const exactly_config *cfg, const char *role)
{
    ops_grants g = {0};
    PGconn *conn = NULL; /* connected only when a grant needs the catalog */
    char err[2048];
    char *role_q = NULL;
    exactly_err rc;
    size_t i;
    int code = CLI_OK;

    rc = ops_grants_quote_role(role, &role_q, err, sizeof(err));
    if (rc != EXACTLY_OK) {
        cli_line(stderr, "exactly migrate: --print-grants '%s': %s", role,
                 err);
        return rc == EXACTLY_ENOMEM ? CLI_FAILED : CLI_REFUSED;
    }
    rc = ops_grants_framework(cfg, &g, err, sizeof(err));
    for (i = 0; rc == EXACTLY_OK && i < cfg->n_pipelines; i++)
        rc = ops_grants_pipeline(cfg, &cfg->pipelines[i], &conn, &g, err,
                                 sizeof(err));
    for (i = 0; rc == EXACTLY_OK && i < cfg->n_relays; i++)
        rc = ops_grants_relay(cfg, &cfg->relays[i], &g, err, sizeof(err));
    if (rc != EXACTLY_OK) {
        cli_line(stderr, "exactly migrate: --print-grants: %s", err);
        code = rc == EXACTLY_ENOMEM || rc == EXACTLY_EDATABASE ? CLI_FAILED
                                                              : CLI_REFUSED;
        goto cleanup;
    }
    printf("-- What role %s needs to run the workers of\n"
           "-- %s, and nothing more (docs/PRIVILEGES.md).\n"
           "-- Run as the owner of each object (the framework's: the role\n"
           "-- that ran exactly migrate) or a superuser, and again after a\n"
           "-- migrate that upgrades the schema.\n",
           role_q, cfg->path);
    for (i = 0; i < g.n; i++) {
        const ops_grant *x = &g.v[i];
        if (x->kind == OPS_OBJ_NOTE) {
            cli_line(stdout, "-- and by hand: %s", x->why);
            continue;
        }
        if (printed_before(&g, i))
            continue;
        /* The comment stays one line whatever the names hold. */
        cli_line(stdout, "-- %s", x->why);
        printf("GRANT %s ON %s %s TO %s;\n", x->privileges,
               ops_object_keyword(x->kind), x->object, role_q);
    }

cleanup:
    PQfinish(conn);
    ops_grants_free(&g);
    free(role_q);
    return code;
}

int cmd_migrate(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"print-grants", required_argument, NULL, 'g'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *grants_role = NULL;
    exactly_config *cfg;
    PGconn *conn;
    char err[2048];
    int from, to, c, code = CLI_OK, refused = 0;
    exactly_err rc;
    size_t i;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'g': grants_role = optarg; break;
        case 'h': usage(stdout); return CLI_OK;
        default: usage(stderr); return CLI_REFUSED;
        }
    }
    cfg = cli_load_config(path);
    if (!cfg)
        return CLI_REFUSED;
    /* A configuration that check refuses is not set up halfway. */
    for (i = 0; i < cfg->n_pipelines; i++)
        refused += ops_validate_pipeline(cfg, &cfg->pipelines[i],
                                           report_refusal, NULL, NULL);
    if (refused > 0) {
        cli_line(stderr, "exactly migrate: %d refusal(s), nothing was done "
                 "(exactly check -c %s shows every item)",
                 refused, path);
        exactly_config_free(cfg);
        return CLI_REFUSED;
    }
    if (grants_role) {
        code = print_grants(cfg, grants_role);
        exactly_config_free(cfg);
        return code;
    }
    /* A pooler in transaction mode would keep the session's advisory lock
     * on a pooled backend, and the unlock could run on another: refused
     * as the workers refuse it, before the session settings are set. */
    rc = exactly_pg_open_session(cfg, "exactly-migrate", &conn, err,
                                 sizeof(err));
    if (rc != EXACTLY_OK) {
        cli_line(stderr, "exactly migrate: %s%s",
                 rc == EXACTLY_ECONFIG
                     ? "refusing to run through this connection: "
                     : "",
                 err);
        exactly_config_free(cfg);
        return rc == EXACTLY_ECONFIG ? CLI_REFUSED : CLI_FAILED;
    }
    if (exactly_store_migrate(conn, cfg->postgres.schema, &from, &to, err,
                              sizeof(err)) != EXACTLY_OK) {
        cli_line(stderr, "exactly migrate: %s", err);
        if (to >= 0)
            cli_line(stderr, "exactly migrate: schema %s stays at version %d "
                     "(this exactly's is %d); the next migrate goes on from "
                     "there", cfg->postgres.schema, to,
                     EXACTLY_SCHEMA_VERSION);
        code = CLI_FAILED;
    } else if (from == to) {
        cli_line(stdout, "schema %s is up to date (version %d)", cfg->postgres.schema, to);
    } else {
        cli_line(stdout, "schema %s migrated from version %d to %d",
                 cfg->postgres.schema, from, to);
    }
    PQfinish(conn);
    exactly_config_free(cfg);
    return code;
}
