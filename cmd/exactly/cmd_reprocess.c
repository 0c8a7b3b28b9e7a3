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

static void on_signal(int sig)
{
    if (stop_requested) {
        signal(sig, SIG_DFL);
        raise(sig);
    }
    stop_requested = 1;
}

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
            "refused with the watermarks in the message.\n"
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
            "  -q, --quiet           warnings and errors only\n"
            "  -h, --help            this text\n"
            "\n"
            "Progress (offset, messages per second, ETA) goes to stderr: one\n"
            "updating line on a terminal, a line every 5 s otherwise.\n"
            "Exit codes: 0 done, 1 failed or interrupted (resume it), 2 refused.\n");
}

static int parse_i64(const char *opt, const char *v, int64_t min, int64_t *out)
{
    char *end;
    long long n;

    errno = 0;
    n = strtoll(v, &end, 10);
    if (errno || *end || end == v || n < min) {
        fprintf(stderr, "exactly reprocess: %s takes a whole number >= %" PRId64
                        ", got '%s'\n", opt, min, v);
        return -1;
    }
    *out = n;
    return 0;
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
    struct sigaction sa;
    size_t i;
    int c, code, known = 0;

    memset(&o, 0, sizeof(o));
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:p:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'p': pipeline = optarg; break;
        case 't': o.topic = optarg; break;
        case 'n': if (parse_i64("--partition", optarg, 0, &partition)) return CLI_REFUSED; break;
        case 'f': if (parse_i64("--from", optarg, 0, &from)) return CLI_REFUSED; break;
        case 'u': if (parse_i64("--to", optarg, 0, &to)) return CLI_REFUSED; break;
        case 'r': if (parse_i64("--resume", optarg, 1, &o.resume_run)) return CLI_REFUSED; break;
        case 'd': o.dry_run = 1; break;
        case 'b':
            if (parse_i64("--batch", optarg, 1, &v) || v > 100000)
                return CLI_REFUSED;
            o.batch = (int)v;
            break;
        case 'R':
            if (parse_i64("--rate", optarg, 1, &v))
                return CLI_REFUSED;
            o.rate = (double)v;
            break;
        case 'q': cli_set_log_level(EXACTLY_LOG_WARN); break;
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
        fprintf(stderr, "exactly reprocess: topic '%s' is not one of pipeline %s's\n",
                o.topic, o.p->name);
        exactly_config_free(cfg);
        return CLI_REFUSED;
    }
    o.partition = (int32_t)partition;
    o.from = from;
    o.to = to;
    o.tty = isatty(STDERR_FILENO);
    o.stop = &stop_requested;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    code = exactly_reprocess(&o);
    exactly_config_free(cfg);
    return code;
}
