/* cmd_relay.c - `exactly relay`: publish an outbox table to Kafka, and
 * `exactly relay status`: what is pending. Parsing and printing only; the
 * relay is lib/relay/. */
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "log.h"
#include "relay.h"

static volatile sig_atomic_t stop_requested;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: exactly relay -c FILE [--relay NAME] [options]\n"
            "       exactly relay status -c FILE [--relay NAME] [--json]\n"
            "\n"
            "Publishes the rows of an outbox table to Kafka with an idempotent\n"
            "producer (acks=all), each with an `event-id` header, in the order\n"
            "of their transactions; a row is deleted (or marked published) only\n"
            "after the broker acknowledged it. Rows of a transaction still\n"
            "running wait for it, so a late commit is never skipped. SIGTERM or\n"
            "SIGINT finishes the batch in flight and exits 0. One relay per\n"
            "outbox publishes, by a session advisory lock; a connection that\n"
            "is not a PostgreSQL session of its own (a pooler in transaction\n"
            "mode, such as PgBouncer's pool_mode = transaction) is refused,\n"
            "exit 2, before anything is published.\n"
            "With `mode: transactional` each batch and a record naming its\n"
            "rows (position_topic) go out in one Kafka transaction; on start\n"
            "the relay reads its last committed position back\n"
            "(read_committed) and marks those rows, so each row is once\n"
            "among the committed records. A relay fenced by a newer one of\n"
            "its transactional.id exits 1; one stopped while its commit has\n"
            "no answer leaves the batch to the next start.\n"
            "`status` prints the pending rows, the age of the oldest, the\n"
            "dead-lettered rows, the rows published, the publish rate and\n"
            "the seconds since a row was last published, and whether a relay\n"
            "runs now (holds the outbox's lock), with its session's pid.\n"
            "\n"
            "options:\n"
            "  -c, --config FILE     the YAML configuration (required)\n"
            "  -r, --relay NAME      the relay (required when the file has\n"
            "                        more than one)\n"
            "      --exit-idle MS    exit 0 once no row was found for MS ms\n"
            "  -v, --verbose         debug logging (one line per batch)\n"
            "  -q, --quiet           warnings and errors only\n"
            "  -h, --help            this text\n"
            "\n"
            "Exit codes: 0 stopped cleanly, 1 runtime failure, 2 refused.\n");
}

static void status_usage(FILE *out)
{
    fprintf(out,
            "usage: exactly relay status -c FILE [--relay NAME] [--json]\n"
            "\n"
            "Per relay: rows pending in its outbox, the age of the oldest,\n"
            "rows dead-lettered (refused by Kafka for good, kept with their\n"
            "reason), rows published in all (\"-\", null in JSON: no relay\n"
            "of this name ever took the outbox; 0: one did, and published\n"
            "nothing), rate/s: the rows published since the relay that\n"
            "publishes (or last did) took the outbox, over the seconds\n"
            "since then (at least 1), and last_s: the seconds since a row\n"
            "was last published (\"-\", null: never); running: whether a\n"
            "relay runs now, that is a session holds the outbox's advisory\n"
            "lock (pg_locks), and holder_pid: that session's backend pid\n"
            "(\"-\" when none). --json adds holder: {pid, application_name,\n"
            "backend_start} (null when none; the last two null when this\n"
            "role may not see them in pg_stat_activity).\n"
            "\n"
            "options:\n"
            "  -c, --config FILE     the YAML configuration (required)\n"
            "  -r, --relay NAME      only this relay\n"
            "      --json            one JSON object per relay\n"
            "  -h, --help            this text\n"
            "\n"
            "Exit codes: 0 success, 1 PostgreSQL unreachable, 2 refused.\n");
}

static const cfg_relay *pick(const exactly_config *cfg, const char *name)
{
    const cfg_relay *r;
    size_t i;

    if (name) {
        r = exactly_config_relay(cfg, name);
        if (!r) {
            cli_line(stderr, "exactly: %s: no relay '%s'", cfg->path, name);
            for (i = 0; i < cfg->n_relays; i++)
                cli_line(stderr, "  have: %s", cfg->relays[i].name);
        }
        return r;
    }
    if (cfg->n_relays == 1)
        return &cfg->relays[0];
    if (cfg->n_relays == 0)
        cli_line(stderr, "exactly: %s defines no relays", cfg->path);
    else
        cli_line(stderr, "exactly: %s has %zu relays; choose one with "
                 "--relay NAME", cfg->path, cfg->n_relays);
    return NULL;
}

static int status(const exactly_config *cfg, const char *name, int json)
{
    size_t i;
    int code = CLI_OK;

    if (name && !pick(cfg, name))
        return CLI_REFUSED;
    if (!json)
        printf("%-20s %10s %12s %8s %12s %10s %10s %8s %10s\n", "relay",
               "pending", "oldest_s", "dead", "published", "rate/s", "last_s",
               "running", "holder_pid");
    for (i = 0; i < cfg->n_relays; i++) {
        const cfg_relay *r = &cfg->relays[i];
        exactly_relay_status s;
        char err[1024];

        if (name && strcmp(name, r->name) != 0)
            continue;
        if (exactly_relay_read_status(cfg, r, &s, err, sizeof(err)) != 0) {
            cli_line(stderr, "exactly relay status: %s: %s", r->name, err);
            code = CLI_FAILED;
            continue;
        }
        if (json) {
            json_t *holder = s.running ? json_pack(
                "{s:I, s:o, s:o}", "pid", (json_int_t)s.holder_pid,
                "application_name", s.holder_app[0] ? json_string(s.holder_app)
                                                    : json_null(),
                "backend_start", s.holder_start[0] ? json_string(s.holder_start)
                                                   : json_null())
                                       : json_null();
            json_t *o = json_pack(
                "{s:s, s:I, s:f, s:I, s:o, s:f, s:o, s:b, s:o}", "relay",
                r->name, "pending", (json_int_t)s.pending, "oldest_pending_s",
                s.oldest_pending_s, "dead", (json_int_t)s.dead, "published",
                s.published_total < 0 ? json_null()
                                      : json_integer(s.published_total),
                "rate_per_s", s.rate_per_s, "last_publish_s",
                s.last_publish_s < 0 ? json_null()
                                     : json_real(s.last_publish_s),
                "running", s.running, "holder", holder);
            char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;

            if (!text) {
                json_decref(o);
                cli_line(stderr, "exactly relay status: out of memory");
                return CLI_FAILED;
            }
            printf("%s\n", text);
            free(text);
            json_decref(o);
        } else {
            char published[32] = "-", last[32] = "-", holder[32] = "-";

            if (s.published_total >= 0)
                snprintf(published, sizeof(published), "%lld",
                         (long long)s.published_total);
            if (s.last_publish_s >= 0)
                snprintf(last, sizeof(last), "%.1f", s.last_publish_s);
            if (s.running)
                snprintf(holder, sizeof(holder), "%lld", s.holder_pid);
            printf("%-20s %10lld %12.1f %8lld %12s %10.1f %10s %8s %10s\n",
                   r->name, (long long)s.pending, s.oldest_pending_s,
                   (long long)s.dead, published, s.rate_per_s, last,
                   s.running ? "yes" : "no", holder);
        }
    }
    return code;
}

/* What the command line asks for. */
typedef struct relay_args {
    const char *path, *name;
    int exit_idle, json, is_status;
} relay_args;

/* The usage of `relay` or of `relay status`, on out. */
static void usage_of(const relay_args *a, FILE *out)
{
    if (a->is_status)
        status_usage(out);
    else
        usage(out);
}

/* The options (after "status", if given) into a. Returns CLI_OK to go on,
 * -1 for --help (printed), or CLI_REFUSED after saying why. */
static int parse_options(int argc, char **argv, relay_args *a)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"relay", required_argument, NULL, 'r'},
        {"exit-idle", required_argument, NULL, 'i'},
        {"json", no_argument, NULL, 'j'},
        {"verbose", no_argument, NULL, 'v'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int64_t v;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:r:vqh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': a->path = optarg; break;
        case 'r': a->name = optarg; break;
        case 'i':
            if (cli_parse_int64("relay", "--exit-idle", optarg, 1, 86400000,
                                &v))
                return CLI_REFUSED;
            a->exit_idle = (int)v;
            break;
        case 'j': a->json = 1; break;
        case 'v': cli_set_log_level(EXACTLY_LOG_DEBUG); break;
        case 'q': cli_set_log_level(EXACTLY_LOG_WARN); break;
        case 'h': usage_of(a, stdout); return -1;
        default: usage_of(a, stderr); return CLI_REFUSED;
        }
    }
    if (optind < argc) {
        cli_line(stderr, "exactly relay: unexpected argument '%s'",
                 argv[optind]);
        return CLI_REFUSED;
    }
    if ((a->json && !a->is_status) || (a->is_status && a->exit_idle)) {
        cli_line(stderr, "exactly relay: --json goes with 'status' only, "
                 "--exit-idle without it");
        return CLI_REFUSED;
    }
    return CLI_OK;
}

/* Runs relay r of cfg until it stops, then prints its summary. */
static int run_relay(const exactly_config *cfg, const cfg_relay *r,
                     int exit_idle)
{
    exactly_relay_opts opts;
    exactly_relay_stats st;
    int code;

    cli_stop_on_signals(&stop_requested);
    memset(&opts, 0, sizeof(opts));
    opts.cfg = cfg;
    opts.relay = r;
    opts.stop = &stop_requested;
    opts.exit_idle_ms = exit_idle;
    memset(&st, 0, sizeof(st));
    code = exactly_relay_run(&opts, &st);
    exactly_relay_print_summary(r->name, &st);
    return code;
}

int cmd_relay(int argc, char **argv)
{
    relay_args a;
    exactly_config *cfg;
    const cfg_relay *r;
    int code;

    memset(&a, 0, sizeof(a));
    if (argc > 1 && strcmp(argv[1], "status") == 0) {
        a.is_status = 1;
        argc--;
        argv++;
    }
    code = parse_options(argc, argv, &a);
    if (code != CLI_OK)
        return code < 0 ? CLI_OK : code;
    cfg = cli_load_config(a.path);
    if (!cfg)
        return CLI_REFUSED;
    if (a.is_status) {
        code = status(cfg, a.name, a.json);
    } else {
        r = pick(cfg, a.name);
        code = r ? run_relay(cfg, r, a.exit_idle) : CLI_REFUSED;
    }
    exactly_config_free(cfg);
    return code;
}
