/* cmd_worker.c - `exactly worker`: one pipeline worker in the foreground,
 * without a supervisor (for containers that supervise, debugging, tests). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "log.h"
#include "worker.h"

static volatile sig_atomic_t stop_requested;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: exactly worker -c FILE [--pipeline NAME] [options]\n"
            "\n"
            "Runs one worker of a pipeline in the foreground, with no\n"
            "supervisor (`exactly run` starts and watches them): joins the\n"
            "pipeline's consumer group, and for each batch of messages looks\n"
            "the entities up, applies the handler and stores the offsets in one\n"
            "PostgreSQL transaction. It joins the group only once PostgreSQL\n"
            "answers and the handler is open. SIGTERM or SIGINT commits the current\n"
            "batch, leaves the group and exits 0; a second signal stops at once.\n"
            "\n"
            "options:\n"
            "  -c, --config FILE     the YAML configuration (required)\n"
            "  -p, --pipeline NAME   the pipeline to run (required when the file\n"
            "                        has more than one)\n"
            "      --exit-idle MS    exit 0 once no message arrived for MS\n"
            "                        milliseconds and everything is committed\n"
            "                        (for scripts, demos and tests); exit 1\n"
            "                        when no broker answered for MS ms and\n"
            "                        nothing is assigned\n"
            "  -v, --verbose         debug logging (one line per batch)\n"
            "  -q, --quiet           warnings and errors only\n"
            "  -h, --help            this text\n"
            "\n"
            "Logs are logfmt lines on stderr. A summary of the counters is\n"
            "printed on stdout at exit.\n"
            "Exit codes: 0 stopped cleanly, 1 runtime failure, 2 refused\n"
            "(configuration, plugin or schema version; nothing was written),\n"
            "3 the handler stopped the worker (EXACTLY_EFATAL).\n");
}

int cmd_worker(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"pipeline", required_argument, NULL, 'p'},
        {"exit-idle", required_argument, NULL, 'i'},
        {"verbose", no_argument, NULL, 'v'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    const char *pipeline = NULL;
    int exit_idle = 0;
    exactly_config *cfg;
    const cfg_pipeline *p;
    exactly_worker_opts opts;
    exactly_worker_stats st;
    int c, code;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:p:vqh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'p': pipeline = optarg; break;
        case 'i': {
            int64_t v;
            if (cli_parse_int64("worker", "--exit-idle", optarg, 1, 86400000, &v))
                return CLI_REFUSED;
            exit_idle = (int)v;
            break;
        }
        case 'v': cli_set_log_level(EXACTLY_LOG_DEBUG); break;
        case 'q': cli_set_log_level(EXACTLY_LOG_WARN); break;
        case 'h': usage(stdout); return CLI_OK;
        default: usage(stderr); return CLI_REFUSED;
        }
    }
    if (optind < argc) {
        cli_line(stderr, "exactly worker: unexpected argument '%s'", argv[optind]);
        return CLI_REFUSED;
    }
    cfg = cli_load_config(path);
    if (!cfg)
        return CLI_REFUSED;
    p = cli_pick_pipeline(cfg, pipeline);
    if (!p) {
        exactly_config_free(cfg);
        return CLI_REFUSED;
    }
    cli_stop_on_signals(&stop_requested);

    memset(&opts, 0, sizeof(opts));
    opts.cfg = cfg;
    opts.pipeline = p;
    opts.worker_index = 0;
    opts.exit_idle_ms = exit_idle;
    opts.stop = &stop_requested;
    memset(&st, 0, sizeof(st));
    code = exactly_worker_run(&opts, &st);
    if (code == CLI_REFUSED) {
        /* Refused before consuming anything: no summary to give. */
        exactly_config_free(cfg);
        return code;
    }
    exactly_worker_print_summary(p->name, &st);
    exactly_config_free(cfg);
    return code;
}
