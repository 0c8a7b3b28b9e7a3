/* cmd_migrate.c - `exactly migrate`: create or upgrade the framework tables. */
#include <getopt.h>
#include <stdio.h>

#include "admin.h"
#include "cli.h"
#include "pg_conn.h"
#include "store.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: exactly migrate -c FILE\n"
            "\n"
            "Creates the framework tables (offsets, dedup keys, dead letters)\n"
            "in the schema named by postgres.schema, or upgrades them to this\n"
            "version of exactly. Idempotent; concurrent runs wait for each\n"
            "other. Each applied step is recorded in SCHEMA.schema_version.\n"
            "A configuration that 'exactly check' refuses (a handler that does\n"
            "not load or whose options are wrong, a Kafka property exactly\n"
            "owns) is refused first, with exit code 2, and nothing is done.\n"
            "\n"
            "options:\n"
            "  -c, --config FILE   the YAML configuration (required)\n"
            "  -h, --help          this text\n");
}

/* Prints a refused item of the configuration. */
static void report_refusal(void *arg, const char *item, const char *err,
                           const char *detail)
{
    (void)arg;
    (void)detail;
    if (err)
        fprintf(stderr, "exactly migrate: %s: %s\n", item, err);
}

int cmd_migrate(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    exactly_config *cfg;
    PGconn *conn;
    char err[2048];
    int from, to, c, code = CLI_OK, refused = 0;
    size_t i;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'h': usage(stdout); return CLI_OK;
        default: usage(stderr); return CLI_REFUSED;
        }
    }
    cfg = cli_load_config(path);
    if (!cfg)
        return CLI_REFUSED;
    /* A configuration that check refuses is not set up halfway. */
    for (i = 0; i < cfg->n_pipelines; i++)
        refused += admin_validate_pipeline(cfg, &cfg->pipelines[i],
                                           report_refusal, NULL, NULL);
    if (refused > 0) {
        fprintf(stderr, "exactly migrate: %d refusal(s), nothing was done "
                        "(exactly check -c %s shows every item)\n",
                refused, path);
        exactly_config_free(cfg);
        return CLI_REFUSED;
    }
    conn = exactly_pg_connect(cfg, "exactly-migrate", err, sizeof(err));
    if (!conn) {
        fprintf(stderr, "exactly migrate: %s\n", err);
        exactly_config_free(cfg);
        return CLI_FAILED;
    }
    if (exactly_store_migrate(conn, cfg->postgres.schema, &from, &to, err,
                              sizeof(err)) != EXACTLY_OK) {
        fprintf(stderr, "exactly migrate: %s\n", err);
        code = CLI_FAILED;
    } else if (from == to) {
        printf("schema %s is up to date (version %d)\n", cfg->postgres.schema, to);
    } else {
        printf("schema %s migrated from version %d to %d\n",
               cfg->postgres.schema, from, to);
    }
    PQfinish(conn);
    exactly_config_free(cfg);
    return code;
}
