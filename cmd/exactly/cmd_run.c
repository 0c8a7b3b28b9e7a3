/* cmd_run.c - `exactly run`: the supervisor of a config's workers and
 * relays. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "log.h"
#include "supervisor.h"
#include "util/host_id.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: exactly run -c FILE [--pipeline NAME] [--relay NAME] [options]\n"
            "\n"
            "Starts `workers` worker processes for every pipeline of FILE and\n"
            "one process for every relay of it (`relays`, the outbox relay of\n"
            "`exactly relay`); with --pipeline or --relay, only the pipeline and\n"
            "the relay they name. The workers of a pipeline share its consumer\n"
            "group. A worker or relay that dies is restarted with backoff\n"
            "(0.5 s doubling to 30 s); a relay that dies 5 times in a row, or\n"
            "a worker 2 x max_crashes + 2 times (at least 5; 8 by default, so\n"
            "that the crash guard dead-letters a record that kills workers\n"
            "first), each within 10 s of starting or before it committed\n"
            "anything (a relay: before it reached PostgreSQL; a worker that\n"
            "cannot claim its partitions gives up after max.poll.interval.ms,\n"
            "at most 120 s), is in a crash loop, and out of it once a\n"
            "restarted process outlives that window (10 s with a commit, else\n"
            "5 minutes); when a relay or all workers of a pipeline are in one,\n"
            "run stops and exits 1. Each worker slot is a static member of its\n"
            "group (group.instance.id PIPELINE-HOST-INDEX): a restarted worker\n"
            "takes its partitions back without a rebalance, and a stopped one\n"
            "keeps them for session.timeout.ms. SIGTERM or SIGINT: every worker\n"
            "commits its batch and stops, every relay finishes the batch in\n"
            "flight and stops; after --shutdown-timeout the rest are killed;\n"
            "a second signal kills them at once. A worker or relay that gets\n"
            "the stop signal from elsewhere too (Ctrl-C, pkill) still stops\n"
            "cleanly; only a second one of its own from elsewhere ends it at\n"
            "once. One that exits 0 while run goes on (a SIGTERM to its pid\n"
            "alone, a plugin that ends it) is started again after 0.5 s,\n"
            "doubling to 30 s with each further exit 0 within 10 s of its\n"
            "start, not counted as a crash; with --exit-idle, exit 0 means it\n"
            "finished.\n"
            "SIGHUP reopens the log file.\n"
            "Workers and relays never outlive this process. A lock file per\n"
            "consumer group stops a second `exactly run` of the same pipeline\n"
            "on this host; a second relay of an outbox waits for the first.\n"
            "\n"
            "options:\n"
            "  -c, --config FILE          the YAML configuration (required)\n"
            "  -p, --pipeline NAME        run this pipeline and no other\n"
            "                             pipeline, nor a relay unless\n"
            "                             --relay names it\n"
            "  -r, --relay NAME           run this relay and no other relay,\n"
            "                             nor a pipeline unless --pipeline\n"
            "                             names it\n"
            "      --shutdown-timeout S   seconds to wait for workers and\n"
            "                             relays to stop (default 30)\n"
            "      --lock-dir DIR         where lock files go (default\n"
            "                             $EXACTLY_LOCK_DIR, else\n"
            "                             $XDG_RUNTIME_DIR/exactly, else\n"
            "                             /run/exactly); refused when other\n"
            "                             users can write to it\n"
            "      --log-file PATH        log there instead of stderr\n"
            "      --metrics ADDR:PORT    serve Prometheus text on a loopback\n"
            "                             address (PORT 0: any free port, the\n"
            "                             log says which): /metrics (per worker and\n"
            "                             partition: consumed, applied, deduplicated,\n"
            "                             dead-lettered; batches committed, rolled\n"
            "                             back, fenced; retries by cause; batch\n"
            "                             latency; restarts; per partition from its\n"
            "                             owner: stored offset, high watermark, lag,\n"
            "                             halted, state; per relay: rows published,\n"
            "                             dead-lettered, sent again, pending, age\n"
            "                             of the oldest pending, up, publishing,\n"
            "                             restarts), /healthz, /readyz, and\n"
            "                             a status page: / (HTML) and /status.json\n"
            "      --exit-idle MS         workers exit once nothing arrived for\n"
            "                             MS ms and all is committed, relays once\n"
            "                             they found no row for MS ms; run exits\n"
            "                             when all have (scripts, tests)\n"
            "  -v, --verbose              debug logging (one line per batch)\n"
            "  -q, --quiet                warnings and errors only\n"
            "  -h, --help                 this text\n"
            "\n"
            "Environment: EXACTLY_HOST_ID names this host in owner strings\n"
            "(HOST:PID:WORKER in the offset rows) and in group.instance.id,\n"
            "instead of the hostname: set it, unique per host, where hostnames\n"
            "are not (containers); 1 to 63 letters, digits, '.', '_', '-'.\n"
            "\n"
            "Under systemd (Type=notify, NOTIFY_SOCKET set) run reports READY=1\n"
            "once the configuration, plugins and locks are in place, and\n"
            "STOPPING=1 when SIGTERM starts the drain.\n"
            "\n"
            "Exit codes: 0 every worker and relay stopped cleanly, 1 a pipeline\n"
            "or a relay in a crash loop, or a worker or relay that did not stop\n"
            "cleanly (killed at --shutdown-timeout or by a second signal, or\n"
            "ending otherwise than with exit 0 during the stop), 2 refused\n"
            "(configuration, plugin, lock, or a worker or relay that refused\n"
            "to start), 3 a handler stopped its worker (EXACTLY_EFATAL), which\n"
            "is not restarted; run exits once the others are done.\n");
}

/* Fills *o (defaults first: a 30 s shutdown timeout, $EXACTLY_LOCK_DIR)
 * and *path from argv. Returns -1 when the command should go on, else its
 * exit code: CLI_OK after --help, CLI_REFUSED after printing why. */
static int parse_run_args(int argc, char **argv, exactly_supervisor_opts *o,
                          const char **path)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"pipeline", required_argument, NULL, 'p'},
        {"relay", required_argument, NULL, 'r'},
        {"shutdown-timeout", required_argument, NULL, 't'},
        {"lock-dir", required_argument, NULL, 'l'},
        {"log-file", required_argument, NULL, 'f'},
        {"exit-idle", required_argument, NULL, 'i'},
        {"metrics", required_argument, NULL, 'm'},
        {"verbose", no_argument, NULL, 'v'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int64_t v;
    int c;

    memset(o, 0, sizeof(*o));
    *path = NULL;
    o->shutdown_timeout_ms = 30000;
    o->lock_dir = getenv("EXACTLY_LOCK_DIR"); /* NULL: the supervisor's default */
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:p:r:vqh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': *path = optarg; break;
        case 'p': o->only_pipeline = optarg; break;
        case 'r': o->only_relay = optarg; break;
        case 't':
            if (cli_parse_int64("run", "--shutdown-timeout", optarg, 1, 86400, &v))
                return CLI_REFUSED;
            o->shutdown_timeout_ms = (int)v * 1000;
            break;
        case 'l': o->lock_dir = optarg; break;
        case 'f': o->log_file = optarg; break;
        case 'm': o->metrics_addr = optarg; break;
        case 'i':
            if (cli_parse_int64("run", "--exit-idle", optarg, 1, 86400000, &v))
                return CLI_REFUSED;
            o->exit_idle_ms = (int)v;
            break;
        case 'v': cli_set_log_level(EXACTLY_LOG_DEBUG); break;
        case 'q': cli_set_log_level(EXACTLY_LOG_WARN); break;
        case 'h': usage(stdout); return CLI_OK;
        default: usage(stderr); return CLI_REFUSED;
        }
    }
    if (optind < argc) {
        cli_line(stderr, "exactly run: unexpected argument '%s'", argv[optind]);
        return CLI_REFUSED;
    }
    return -1;
}

/* Whether the --pipeline and --relay of o name a pipeline and a relay of
 * cfg: 1, or 0 after printing which is missing (and, for a relay, the
 * relays there are). */
static int selection_exists(exactly_config *cfg,
                            const exactly_supervisor_opts *o)
{
    size_t i;

    if (o->only_pipeline && !cli_pick_pipeline(cfg, o->only_pipeline))
        return 0;
    if (o->only_relay && !exactly_config_relay(cfg, o->only_relay)) {
        cli_line(stderr, "exactly: %s: no relay '%s'", cfg->path,
                 o->only_relay);
        for (i = 0; i < cfg->n_relays; i++)
            cli_line(stderr, "  have: %s", cfg->relays[i].name);
        return 0;
    }
    return 1;
}

int cmd_run(int argc, char **argv)
{
    exactly_supervisor_opts o;
    exactly_config *cfg;
    const char *path;
    int code;

    code = parse_run_args(argc, argv, &o, &path);
    if (code >= 0)
        return code;
    if (getenv("EXACTLY_HOST_ID") &&
        exactly_host_id_problem(getenv("EXACTLY_HOST_ID"))) {
        cli_line(stderr, "exactly run: %s",
                 exactly_host_id_problem(getenv("EXACTLY_HOST_ID")));
        return CLI_REFUSED;
    }
    cfg = cli_load_config(path);
    if (!cfg)
        return CLI_REFUSED;
    if (!selection_exists(cfg, &o)) {
        exactly_config_free(cfg);
        return CLI_REFUSED;
    }
    o.cfg = cfg;
    code = exactly_supervise(&o);
    exactly_config_free(cfg);
    return code;
}
