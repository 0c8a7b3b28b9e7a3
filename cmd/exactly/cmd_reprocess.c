/* cmd_reprocess.c - `exactly reprocess`: apply a range of one partition, or
 * of every partition of a topic, again. */
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
            "       exactly reprocess -c FILE --pipeline NAME --topic T [--partition N]\n"
            "                         (--from A | --to B | --from-time T1 | --to-time T2)...\n"
            "                         [--dry-run] [--batch K] [--rate R]\n"
            "       exactly reprocess -c FILE --pipeline NAME --resume RUN [--batch K] [--rate R]\n"
            "\n"
            "Applies the pipeline's lookup and handler again to offsets A..B\n"
            "(both included) of one partition, in batch transactions, reading\n"
            "with read_committed and no consumer group. Without --partition\n"
            "it does so for every partition of the topic, one after the other,\n"
            "as one run: --from A and --to B apply to each partition, cut to\n"
            "the offsets it holds (an omitted one: its first or last offset),\n"
            "and a partition with nothing in the range is left out. A time\n"
            "range (--from-time, --to-time) selects in each partition the\n"
            "messages from the first whose timestamp is at or after T1 up to\n"
            "the last before the first at or after T2 (Kafka's offsets for\n"
            "times; an omitted one: the partition's start or end).\n"
            "The pipeline's stored offsets, dedup keys and Kafka commits are\n"
            "not touched, and no dedup filter applies: re-applying is the\n"
            "point. Each run is a row per partition in SCHEMA.reprocess_runs\n"
            "(range, position, messages applied,\n"
            "status, start and end) and applies each message once; Ctrl-C stops\n"
            "after the current batch and --resume RUN continues from where it\n"
            "committed. Safe beside the live pipeline: handlers write upserts.\n"
            "A range of one partition by offsets that is inverted or outside\n"
            "its watermarks is refused with the watermarks in its error line;\n"
            "a range with no offset of the topic in it is refused.\n"
            "\n"
            "options:\n"
            "  -c, --config FILE     the YAML configuration (required)\n"
            "  -p, --pipeline NAME   the pipeline whose lookup and handler apply\n"
            "      --topic T         the topic (one of the pipeline's)\n"
            "      --partition N     the partition (default: every partition)\n"
            "      --from A          first offset\n"
            "      --to B            last offset (included)\n"
            "      --from-time T1    from the first message at or after T1\n"
            "                        (ISO 8601, e.g. 2024-05-01T12:00:00Z; without\n"
            "                        a zone PostgreSQL's TimeZone applies)\n"
            "      --to-time T2      up to the messages before T2 (excluded)\n"
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
            "when that is lower. A run over a topic shows the partitions done\n"
            "and the offsets behind it of all of them, and a line as each\n"
            "partition is done; its RUN resumes all of its partitions, and so\n"
            "does the id of one of its partitions' rows (as the logs print).\n"
            "\n"
            "The lookup (and the fused upsert's read) locks the source rows it\n"
            "reads FOR SHARE, in the order of their IDs, until its batch\n"
            "commits (a deadlock rolls the batch back to be retried, as any\n"
            "transient failure), so that a change of them\n"
            "meanwhile is applied by the live worker after the batch, never\n"
            "under it; this needs UPDATE on the lookup's tables. A lookup\n"
            "PostgreSQL cannot lock (GROUP BY, DISTINCT, ...) reads unlocked,\n"
            "with a warning. A row the lookup did not find cannot be locked:\n"
            "with on_missing: handler (delete_missing) those IDs are looked up\n"
            "again before the batch commits, and a row inserted meanwhile\n"
            "rolls the batch back to be retried, with a warning (README,\n"
            "\"Extra writers and row locks\").\n"
            "\n"
            "Messages the handler fails on are dead-lettered under the name\n"
            "PIPELINE:reprocess:RUN, apart from the live pipeline's: see them\n"
            "with 'exactly dlq list --pipeline PIPELINE --run RUN', apply them\n"
            "again with 'exactly dlq replay --pipeline PIPELINE --run RUN --all'.\n"
            "\n"
            "Exit codes:\n"
            "  0 done: every message of the range applied (or a dry run)\n"
            "  1 failed or interrupted: resume it with --resume RUN; when the\n"
            "    run's position left the log (retention), no resume can apply\n"
            "    it: the output says so and gives the new runs to start\n"
            "  2 refused: usage, range, configuration, plugin, unknown run\n"
            "  3 finished, but some messages were dead-lettered (not applied):\n"
            "    the run is done (a resume does nothing); see and replay them\n"
            "    with 'exactly dlq ... --run RUN'\n");
}

/* What the options say beside the run's own options. */
typedef struct args {
    const char *path, *pipeline;
    int64_t partition, from, to;
} args;

/* The options into o and a. Returns CLI_OK to go on, -1 for --help
 * (printed), or CLI_REFUSED after saying why. */
static int parse_options(int argc, char **argv, exactly_reprocess_opts *o,
                         args *a)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"pipeline", required_argument, NULL, 'p'},
        {"topic", required_argument, NULL, 't'},
        {"partition", required_argument, NULL, 'n'},
        {"from", required_argument, NULL, 'f'},
        {"to", required_argument, NULL, 'u'},
        {"from-time", required_argument, NULL, 'F'},
        {"to-time", required_argument, NULL, 'U'},
        {"resume", required_argument, NULL, 'r'},
        {"dry-run", no_argument, NULL, 'd'},
        {"batch", required_argument, NULL, 'b'},
        {"rate", required_argument, NULL, 'R'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int64_t v = 0;
    int c, bad;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:p:qh", longopts, NULL)) != -1) {
        bad = 0;
        switch (c) {
        case 'c': a->path = optarg; break;
        case 'p': a->pipeline = optarg; break;
        case 't': o->topic = optarg; break;
        case 'n': bad = cli_parse_int64("reprocess", "--partition", optarg, 0, INT32_MAX, &a->partition); break;
        case 'f': bad = cli_parse_int64("reprocess", "--from", optarg, 0, INT64_MAX, &a->from); break;
        case 'u': bad = cli_parse_int64("reprocess", "--to", optarg, 0, INT64_MAX, &a->to); break;
        case 'F': o->from_time = optarg; break;
        case 'U': o->to_time = optarg; break;
        case 'r': bad = cli_parse_int64("reprocess", "--resume", optarg, 1, INT64_MAX, &o->resume_run); break;
        case 'd': o->dry_run = 1; break;
        case 'b':
            bad = cli_parse_int64("reprocess", "--batch", optarg, 1, 100000, &v);
            o->batch = (int)v;
            break;
        case 'R':
            bad = cli_parse_int64("reprocess", "--rate", optarg, 1, INT64_MAX, &v);
            o->rate = (double)v;
            break;
        case 'q':
            cli_set_log_level(EXACTLY_LOG_WARN);
            o->quiet = 1;
            break;
        case 'h': usage(stdout); return -1;
        default: usage(stderr); return CLI_REFUSED;
        }
        if (bad)
            return CLI_REFUSED;
    }
    return CLI_OK;
}

/* Refuses a request whose options do not go together. Returns CLI_OK or
 * CLI_REFUSED after saying why. */
static int check_request(const exactly_reprocess_opts *o, const args *a)
{
    int timed = o->from_time || o->to_time;

    if (!a->pipeline) {
        fprintf(stderr, "exactly reprocess: --pipeline is required\n");
        return CLI_REFUSED;
    }
    if (o->resume_run > 0 && (o->topic || a->partition >= 0 || a->from >= 0 ||
                              a->to >= 0 || timed)) {
        fprintf(stderr, "exactly reprocess: --resume RUN takes its range from "
                        "the run; no --topic, --partition, --from, --to, "
                        "--from-time or --to-time\n");
        return CLI_REFUSED;
    }
    if (timed && (a->from >= 0 || a->to >= 0)) {
        fprintf(stderr, "exactly reprocess: a range is either offsets (--from, "
                        "--to) or times (--from-time, --to-time), not both\n");
        return CLI_REFUSED;
    }
    if (o->resume_run == 0 &&
        (!o->topic ||
         (a->partition >= 0 && !timed && (a->from < 0 || a->to < 0)) ||
         (a->partition < 0 && !timed && a->from < 0 && a->to < 0))) {
        fprintf(stderr, "exactly reprocess: a new run needs --topic and a range: "
                        "--from and --to with --partition; without it --from, "
                        "--to or both; or --from-time, --to-time or both "
                        "(or --resume RUN)\n");
        return CLI_REFUSED;
    }
    if (o->resume_run > 0 && o->dry_run) {
        fprintf(stderr, "exactly reprocess: --dry-run is for a new range, not --resume\n");
        return CLI_REFUSED;
    }
    return CLI_OK;
}

/* Whether topic is one of p's (a new run names one). */
static int pipeline_topic(const cfg_pipeline *p, const char *topic)
{
    size_t i;

    for (i = 0; i < p->n_topics; i++)
        if (strcmp(p->topics[i], topic) == 0)
            return 1;
    return 0;
}

int cmd_reprocess(int argc, char **argv)
{
    exactly_reprocess_opts o;
    exactly_config *cfg;
    args a = {NULL, NULL, -1, -1, -1};
    int code;

    memset(&o, 0, sizeof(o));
    code = parse_options(argc, argv, &o, &a);
    if (code == CLI_OK)
        code = check_request(&o, &a);
    if (code != CLI_OK)
        return code < 0 ? CLI_OK : code;
    cfg = cli_load_config(a.path);
    if (!cfg)
        return CLI_REFUSED;
    o.cfg = cfg;
    o.p = cli_pick_pipeline(cfg, a.pipeline);
    if (!o.p) {
        exactly_config_free(cfg);
        return CLI_REFUSED;
    }
    if (o.topic && !pipeline_topic(o.p, o.topic)) {
        cli_line(stderr, "exactly reprocess: topic '%s' is not one of pipeline %s's",
                 o.topic, o.p->name);
        exactly_config_free(cfg);
        return CLI_REFUSED;
    }
    o.partition = a.partition >= 0 ? (int32_t)a.partition : -1;
    o.from = a.from;
    o.to = a.to;
    o.tty = isatty(STDERR_FILENO);
    o.stop = &stop_requested;
    cli_stop_on_signals(&stop_requested);
    code = exactly_reprocess(&o);
    exactly_config_free(cfg);
    return code;
}
