/* cmd_reprocess.c - `exactly reprocess`: apply a range of one partition again. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"
#include "reprocess.h"

static volatile sig_atomic_t stop_requested;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: exactly reprocess -c FILE --pipeline NAME --topic T --partition N\n"
            "                         --from A --to B [--dry-run] [--batch K] [--rate R]\n"
            "       exactly reprocess -c FILE --pipeline NAME --resume RUN [--batch K] [--rate R]\n"
            "\n"
            "Applies the pipeline's lookup and handler again to offsets A..B\n"
            "(both included) of one partition, in batch transactions, reading\n"
            "with read_committed and no consumer group. The pipeline's stored\n"
            "offsets, dedup keys and Kafka commits are not touched, and no\n"
            "dedup filter applies: re-applying is the point. Each run is a row\n"
            "in SCHEMA.reprocess_runs (range, position, messages applied,\n"
            "status, start and end) and applies each message once; Ctrl-C stops\n"
            "after the current batch and --resume RUN continues from where it\n"
            "committed. Safe beside the live pipeline: handlers write upserts.\n"
            "A range that is inverted or outside the partition's watermarks is\n"
            "refused with the watermarks in its error line.\n"
            "\n"
            "options:\n"
            "  -c, --config FILE     the YAML configuration (required)\n"
            "  -p, --pipeline NAME   the pipeline whose lookup and handler apply\n"
            "      --topic T         the topic (one of the pipeline's)\n"
            "      --partition N     the partition\n"
            "      --from A          first offset\n"
            "      --to B            last offset (included)\n"
            "      --resume RUN      continue an interrupted run\n"
            "      --dry-run         say what would happen, change nothing\n"
            "      --batch K         messages per transaction (default: the\n"
            "                        pipeline's batch.max_messages)\n"
            "      --rate R          at most R messages per second\n"
            "  -q, --quiet           no progress; warnings, errors and the result\n"
            "  -h, --help            this text\n"
            "\n"
            "Progress (offset, messages per second, ETA) goes to stderr: one\n"
            "updating line on a terminal, a line every 5 s otherwise. The ETA\n"
            "is the remaining offsets over the measured rate, or over --rate\n"
            "when that is lower.\n"
            "\n"
            "Messages the handler fails on are dead-lettered under the name\n"
            "PIPELINE:reprocess:RUN, apart from the live pipeline's: see them\n"
            "with 'exactly dlq list --pipeline PIPELINE --run RUN', apply them\n"
            "again with 'exactly dlq replay --pipeline PIPELINE --run RUN --all'.\n"
            "\n"
            "Exit codes:\n"
            "  0 done: every message of the range applied (or a dry run)\n"
            "  1 failed or interrupted: resume it with --resume RUN\n"
            "  2 refused: usage, range, configuration, plugin, unknown run\n"
            "  3 finished, but some messages were dead-lettered (not applied):\n"
            "    the run is done (a resume does nothing); see and replay them\n"
            "    with 'exactly dlq ... --run RUN'\n");
}

int cmd_reprocess(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"pipeline", required_argument, NULL, 'p'},
        {"topic", required_argument, NULL, 't'},
        {"partition", required_argument, NULL, 'n'},
        {"from", required_argument, NULL, 'f'},
        {"to", required_argument, NULL, 'u'},
        {"resume", required_argument, NULL, 'r'},
        {"dry-run", no_argument, NULL, 'd'},
        {"batch", required_argument, NULL, 'b'},
        {"rate", required_argument, NULL, 'R'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    exactly_reprocess_opts o;
    exactly_config *cfg;
    const char *path = NULL, *pipeline = NULL;
    int64_t v, partition = -1, from = -1, to = -1;
    size_t i;
    int c, code, known = 0;

    memset(&o, 0, sizeof(o));
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:p:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'p': pipeline = optarg; break;
        case 't': o.topic = optarg; break;
        case 'n': if (cli_parse_int64("reprocess", "--partition", optarg, 0, INT32_MAX, &partition)) return CLI_REFUSED; break;
        case 'f': if (cli_parse_int64("reprocess", "--from", optarg, 0, INT64_MAX, &from)) return CLI_REFUSED; break;
        case 'u': if (cli_parse_int64("reprocess", "--to", optarg, 0, INT64_MAX, &to)) return CLI_REFUSED; break;
        case 'r': if (cli_parse_int64("reprocess", "--resume", optarg, 1, INT64_MAX, &o.resume_run)) return CLI_REFUSED; break;
        case 'd': o.dry_run = 1; break;
        case 'b':
            if (cli_parse_int64("reprocess", "--batch", optarg, 1, 100000, &v))
                return CLI_REFUSED;
            o.batch = (int)v;
            break;
        case 'R':
            if (cli_parse_int64("reprocess", "--rate", optarg, 1, INT64_MAX, &v))
                return CLI_REFUSED;
            o.rate = (double)v;
            break;
        case 'q':
            cli_set_log_level(EXACTLY_LOG_WARN);
            o.quiet = 1;
            break;
        case 'h': usage(stdout); return CLI_OK;
        default: usage(stderr); return CLI_REFUSED;
        }
    }
    if (!pipeline) {
        fprintf(stderr, "exactly reprocess: --pipeline is required\n");
        return CLI_REFUSED;
    }
    if (o.resume_run == 0 && (!o.topic || partition < 0 || from < 0 || to < 0)) {
        fprintf(stderr, "exactly reprocess: a new run needs --topic, --partition, "
                        "--from and --to (or --resume RUN)\n");
        return CLI_REFUSED;
    }
    if (o.resume_run > 0 && o.dry_run) {
        fprintf(stderr, "exactly reprocess: --dry-run is for a new range, not --resume\n");
        return CLI_REFUSED;
    }
    cfg = cli_load_config(path);
    if (!cfg)
        return CLI_REFUSED;
    o.cfg = cfg;
    o.p = cli_pick_pipeline(cfg, pipeline);
    if (!o.p) {
        exactly_config_free(cfg);
        return CLI_REFUSED;
    }
    for (i = 0; o.topic && i < o.p->n_topics; i++)
        known |= strcmp(o.p->topics[i], o.topic) == 0;
    if (o.topic && !known) {
        cli_line(stderr, "exactly reprocess: topic '%s' is not one of pipeline %s's",
                 o.topic, o.p->name);
        exactly_config_free(cfg);
        return CLI_REFUSED;
    }
    o.partition = (int32_t)partition;
    o.from = from;
    o.to = to;
    o.tty = isatty(STDERR_FILENO);
    o.stop = &stop_requested;
    cli_stop_on_signals(&stop_requested);
    code = exactly_reprocess(&o);
    exactly_config_free(cfg);
    return code;
}
