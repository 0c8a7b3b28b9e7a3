/*
 * cmd_check.c - `exactly check`: everything a worker needs before it
 * starts, each item printed with OK or the reason, changing nothing. The
 * checks are in lib/ops/check.c; this file parses the arguments and
 * prints the report once every check ran, so that what handlers log on
 * the way never lands between its lines.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ops/check.h"

/* The width the item column has at least, so that short reports look as
 * they always did. */
#define ITEM_MIN_WIDTH 26

typedef struct item {
    ops_check_status status;
    char *what;
    char *detail;
} item;

typedef struct report {
    item *v;
    size_t n, cap;
    int oom;
    int refused; /* config or plugin problems: exit 2 */
    int failed;  /* services unreachable or not ready: exit 1 */
} report;

static void collect(void *arg, ops_check_status status, const char *what,
                    const char *detail)
{
    report *r = arg;
    item *it;

    if (status == OPS_CHECK_REFUSED)
        r->refused = 1;
    else if (status == OPS_CHECK_FAILED)
        r->failed = 1;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 32;
        item *v = realloc(r->v, cap * sizeof(*v));
        if (!v) {
            r->oom = 1;
            return;
        }
        r->v = v;
        r->cap = cap;
    }
    it = &r->v[r->n];
    it->status = status;
    it->what = strdup(what);
    it->detail = strdup(detail ? detail : "");
    if (!it->what || !it->detail) {
        free(it->what);
        free(it->detail);
        r->oom = 1;
        return;
    }
    r->n++;
}

/* Every item, one line each: the status, the item padded to the widest
 * one, the detail. */
static void print_report(const report *r)
{
    size_t i, width = ITEM_MIN_WIDTH;

    for (i = 0; i < r->n; i++)
        if (strlen(r->v[i].what) > width)
            width = strlen(r->v[i].what);
    fflush(stderr);
    for (i = 0; i < r->n; i++)
        cli_line(stdout, "%-4s  %-*s %s",
                 r->v[i].status == OPS_CHECK_OK ? "OK" : "FAIL", (int)width,
                 r->v[i].what, r->v[i].detail);
    if (r->oom)
        cli_line(stdout, "FAIL  %-*s %s", (int)width, "check",
                 "out of memory: some items are missing above");
    fflush(stdout);
}

static void report_free(report *r)
{
    size_t i;

    for (i = 0; i < r->n; i++) {
        free(r->v[i].what);
        free(r->v[i].detail);
    }
    free(r->v);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: exactly check -c FILE [--pipeline NAME | --relay NAME]\n"
            "\n"
            "Validates the configuration, loads each pipeline's handler and\n"
            "calls its open(), runs each lookup on no IDs (the statement the\n"
            "worker runs, reporting the columns the handler will get), checks\n"
            "the framework schema version, and reads each topic's metadata\n"
            "from Kafka. For each relay: its outbox table exists with the\n"
            "columns the relay reads and writes (and their types), librdkafka\n"
            "accepts its producer configuration (a transactional producer is\n"
            "created but not initialised, so no running relay is fenced), and\n"
            "its topic and position_topic exist; two relays on one outbox when\n"
            "either is transactional, or with one transactional.id, are\n"
            "refused. Prints one line per item with OK or the reason. Writes\n"
            "nothing: every statement runs in a read-only transaction that is\n"
            "rolled back, and nothing is produced.\n"
            "\n"
            "options:\n"
            "  -c, --config FILE     the YAML configuration (required)\n"
            "  -p, --pipeline NAME   check only this pipeline (no relay)\n"
            "  -r, --relay NAME      check only this relay (no pipeline)\n"
            "  -h, --help            this text\n"
            "\n"
            "It also verifies, as the role of the configuration's conninfo (the\n"
            "workers' role), every grant the workers and relays need that\n"
            "exactly can name ('exactly migrate --print-grants ROLE' prints\n"
            "them); a missing one is a FAIL line naming the privilege, the\n"
            "object and the GRANT.\n"
            "\n"
            "A conninfo that is not a PostgreSQL session of its own (a pooler\n"
            "in transaction mode, such as PgBouncer's pool_mode = transaction),\n"
            "which the worker refuses, is a FAIL line on postgres (exit 2) and\n"
            "nothing is read through it: connect directly or in session mode.\n"
            "\n"
            "Exit codes: 0 all OK, 1 a service is unreachable, not migrated, a\n"
            "grant is missing or a topic does not exist, 2 the configuration\n"
            "or a plugin is refused (a relay's outbox table missing or lacking\n"
            "columns, unless it is the framework's own: exit 1, migrate; a\n"
            "transaction-mode pooler).\n");
}

int cmd_check(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"pipeline", required_argument, NULL, 'p'},
        {"relay", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *only = NULL, *only_relay = NULL;
    exactly_config *cfg;
    report r;
    char err[2048], detail[512];
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:p:r:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'p': only = optarg; break;
        case 'r': only_relay = optarg; break;
        case 'h': usage(stdout); return CLI_OK;
        default: usage(stderr); return CLI_REFUSED;
        }
    }
    if (!path) {
        fprintf(stderr, "exactly check: missing -c FILE\n");
        return CLI_REFUSED;
    }
    if (exactly_config_load(path, &cfg, err, sizeof(err)) != EXACTLY_OK) {
        cli_line(stdout, "FAIL  %-*s %s", ITEM_MIN_WIDTH, "config", err);
        return CLI_REFUSED;
    }
    if (only && only_relay) {
        fprintf(stderr, "exactly check: --pipeline and --relay exclude each "
                        "other\n");
        exactly_config_free(cfg);
        return CLI_REFUSED;
    }
    if (only && !cli_pick_pipeline(cfg, only)) {
        exactly_config_free(cfg);
        return CLI_REFUSED;
    }
    if (only_relay && !exactly_config_relay(cfg, only_relay)) {
        size_t i;

        fprintf(stderr, "exactly: %s: no relay '%s' (have:", cfg->path,
                only_relay);
        for (i = 0; i < cfg->n_relays; i++)
            fprintf(stderr, " %s", cfg->relays[i].name);
        fprintf(stderr, ")\n");
        exactly_config_free(cfg);
        return CLI_REFUSED;
    }
    memset(&r, 0, sizeof(r));
    snprintf(detail, sizeof(detail), "%s, %zu pipeline(s), %zu relay(s)",
             path, cfg->n_pipelines, cfg->n_relays);
    collect(&r, OPS_CHECK_OK, "config", detail);
    ops_check(cfg, only, only_relay, collect, &r);
    print_report(&r);
    report_free(&r);
    exactly_config_free(cfg);
    return r.refused ? CLI_REFUSED : r.failed || r.oom ? CLI_FAILED : CLI_OK;
}
