/*
 * cmd_offsets_reset.c - `exactly offsets reset`: moves stored offsets
 * with a guard while the group is active and an audit row per partition.
 * The rules are in lib/ops/offsets_reset.c; this file parses the
 * arguments and prints.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ops/offsets.h"
#include "strbuf.h"
#include "table.h"

static void reset_usage(FILE *out)
{
    fprintf(out,
            "usage: exactly offsets reset -c FILE --pipeline NAME --topic T\n"
            "           [--partition N] MODE [--dry-run] [--force] [--reason TEXT]\n"
            "           [--forget-dedup]\n"
            "\n"
            "Moves the offsets stored in PostgreSQL for a topic of a pipeline\n"
            "(all its partitions, or one), the position its workers resume\n"
            "from. MODE is one of:\n"
            "  --to-earliest         the low watermark\n"
            "  --to-latest           the end: the last stable offset (LSO),\n"
            "                        where a read_committed reader ends\n"
            "  --to-offset K         offset K\n"
            "  --to-time TIME        the first offset whose timestamp is at or\n"
            "                        after TIME (ISO 8601, e.g. 2024-05-01T12:00:00Z;\n"
            "                        without a zone PostgreSQL's TimeZone applies);\n"
            "                        the end when no message is that recent\n"
            "  --shift-by N          the stored offset plus N (N may be negative);\n"
            "                        refused for a partition with no stored offset\n"
            "Every new offset is clamped to [low watermark, LSO], and the table\n"
            "says where that happened.\n"
            "\n"
            "Prints a FROM -> TO table. Unless --dry-run, refuses while the\n"
            "pipeline's consumer group has active members: the members Kafka\n"
            "reports (ListGroups), and workers still connected to PostgreSQL\n"
            "that own the pipeline's offset rows (the only check where the\n"
            "broker cannot list groups, as librdkafka's mock cluster).\n"
            "--force resets anyway: a running worker follows a moved partition\n"
            "within seconds (its next batch fails the offset compare-and-set,\n"
            "or, with nothing to apply, it compares the row every 2 s), re-reads\n"
            "the stored offset and continues from there. The owner epoch is\n"
            "left as it is, so the owning worker keeps the partition.\n"
            "\n"
            "The update runs in one transaction: per partition next_offset is\n"
            "set (the row is created when missing), the crash-guard counters\n"
            "are cleared, and a row is added to SCHEMA.offset_resets (who:\n"
            "user@host, when, from, to, mode, reason). Afterwards, when the\n"
            "group has no active member, the new offsets are also committed to\n"
            "the group in Kafka so that lag tools agree (monitoring only).\n"
            "\n"
            "On a pipeline with dedup, a reset back does not apply the\n"
            "messages again: their dedup keys are kept (dedup.retention), so\n"
            "the workers skip them as duplicates. The table is followed by a\n"
            "note with, per partition moved back, the `exactly reprocess`\n"
            "command that applies those offsets again (it uses no dedup).\n"
            "With --forget-dedup the same transaction deletes, per partition\n"
            "moved back, the dedup keys first seen in it at or after the new\n"
            "offset, and the workers apply those messages again (keys first\n"
            "seen before it, or in another partition, still drop theirs).\n"
            "\n"
            "options:\n"
            "  -c, --config FILE     the YAML configuration (required)\n"
            "  -p, --pipeline NAME   the pipeline (required)\n"
            "  -t, --topic T         one of the pipeline's topics (required)\n"
            "  -P, --partition N     only partition N (default: every partition)\n"
            "  -n, --dry-run         print the table, change nothing\n"
            "  -f, --force           reset even while the group is active or its\n"
            "                        state cannot be read\n"
            "  -r, --reason TEXT     why, kept in the audit row\n"
            "      --forget-dedup    also delete the dedup keys recorded at or\n"
            "                        after the new offset of each partition\n"
            "                        moved back (a pipeline with dedup only)\n"
            "  -h, --help            this text\n"
            "\n"
            "The transaction also writes a mark of its own (a unique token in\n"
            "SCHEMA.commit_marks, deleted once the COMMIT is known to have\n"
            "landed). When the answer to COMMIT is lost (the connection went),\n"
            "a new connection asks for that mark, waiting while the\n"
            "transaction is still finishing: there, it committed (exit 0,\n"
            "with a note); not there and nothing writing it, it was rolled\n"
            "back (exit 1), as after a crash or a failover that lost it; no\n"
            "answer (still in progress, a read-only standby, a mark over 23\n"
            "hours old, which the deletion of marks older than a day may have\n"
            "taken) is exit 3. Not by the transaction's id: a crash or a\n"
            "failover lets the server hand the same id to another\n"
            "transaction.\n"
            "\n"
            "A connection that is not a PostgreSQL session of its own (a\n"
            "pooler in transaction mode, such as PgBouncer's pool_mode =\n"
            "transaction) is refused, a dry run's too, with exit code 2 and\n"
            "nothing done: the transaction's lock and statement bounds are\n"
            "the session's. Connect directly or in session mode.\n"
            "\n"
            "Exit codes: 0 reset (or dry run), 1 refused because the group is\n"
            "active or its state cannot be read, or PostgreSQL or Kafka\n"
            "failed (nothing was changed), 2 bad usage or configuration (a\n"
            "transaction-mode pooler included),\n"
            "3 outcome unknown: the answer to COMMIT was lost and the server\n"
            "could not say whether it committed; check with `exactly offsets`\n"
            "before running it again (a second --shift-by would shift twice).\n");
}

static int print_plan(const ops_reset *r)
{
    static const char *const headers[] = {"TOPIC", "PARTITION", "FROM", "",
                                          "TO",    "LOW",       "LSO", "NOTE"};
    cli_table *t = cli_table_new(8, headers, "lrrlrrrl");
    size_t i;
    int rc;

    if (!t)
        return -1;
    for (i = 0; i < r->n; i++) {
        const ops_reset_part *x = &r->v[i];
        char part[16], from[24], to[24], low[24], lso[24];
        const char *cells[8];

        snprintf(part, sizeof(part), "%d", (int)x->partition);
        cli_fmt_i64(from, sizeof(from), x->from_set, x->from);
        snprintf(to, sizeof(to), "%" PRId64, x->to);
        snprintf(low, sizeof(low), "%" PRId64, x->low);
        snprintf(lso, sizeof(lso), "%" PRId64, x->lso);
        cells[0] = r->topic;
        cells[1] = part;
        cells[2] = from;
        cells[3] = "->";
        cells[4] = to;
        cells[5] = low;
        cells[6] = lso;
        cells[7] = x->note[0] ? x->note
                   : x->from_set && x->from == x->to ? "unchanged"
                                                     : "";
        cli_table_add(t, cells);
    }
    rc = cli_table_print(t, stdout);
    cli_table_free(t);
    return rc;
}

/*
 * A reset back on a pipeline with dedup reads the messages again, but the
 * dedup keys they stored the first time are still in dedup_keys until
 * their retention ends: the workers drop every such message as a
 * duplicate, so the reset alone applies none of them again. Said with the
 * plan and the outcome (applied: after the commit), per partition moved
 * back, with the command that does apply a range again (reprocess uses no
 * dedup); with --forget-dedup, which keys go (went) instead.
 */
static void dedup_note(const ops_reset *r, int applied)
{
    size_t i;
    int any = 0;

    if (!r->p->dedup.enabled)
        return;
    for (i = 0; i < r->n; i++) {
        const ops_reset_part *x = &r->v[i];

        if (!x->from_set || x->to >= x->from)
            continue;
        if (r->forget_dedup && applied)
            cli_line(stdout, "partition %d: deleted %" PRId64 " dedup key(s) "
                     "recorded at offsets from %" PRId64 " (--forget-dedup): "
                     "those messages are applied again",
                     (int)x->partition, x->forgotten, x->to);
        else if (r->forget_dedup)
            cli_line(stdout, "partition %d: would delete the dedup keys "
                     "recorded at offsets from %" PRId64 " (--forget-dedup): "
                     "those messages would be applied again",
                     (int)x->partition, x->to);
        if (r->forget_dedup)
            continue;
        if (!any)
            cli_line(stdout,
                     "note: pipeline %s has dedup: messages read again whose "
                     "dedup key is still kept (retention %" PRId64 " s) are "
                     "skipped as duplicates, not applied again; to apply "
                     "offsets again regardless of dedup run (or reset with "
                     "--forget-dedup):",
                     r->p->name, (int64_t)r->p->dedup.retention_s);
        any = 1;
        cli_line(stdout,
                 "  exactly reprocess -c %s --pipeline %s --topic %s "
                 "--partition %d --from %" PRId64 " --to %" PRId64,
                 r->cfg->path, r->p->name, r->topic, (int)x->partition, x->to,
                 x->from - 1);
    }
}

static int has_topic(const cfg_pipeline *p, const char *topic)
{
    size_t i;

    for (i = 0; i < p->n_topics; i++)
        if (strcmp(p->topics[i], topic) == 0)
            return 1;
    return 0;
}

static int set_mode(ops_reset_mode *mode, ops_reset_mode m)
{
    if (*mode != OPS_RESET_NONE && *mode != m) {
        fprintf(stderr, "exactly offsets reset: choose one of --to-earliest, "
                        "--to-latest, --to-offset, --to-time, --shift-by\n");
        return -1;
    }
    *mode = m;
    return 0;
}

/* Parses the arguments into r; returns CLI_OK to go on, or the exit code
 * (after printing why, or the help). */
static int parse_reset(int argc, char **argv, ops_reset *r, const char **path,
                       const char **pname, int *dry_run, int *force)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"pipeline", required_argument, NULL, 'p'},
        {"topic", required_argument, NULL, 't'},
        {"partition", required_argument, NULL, 'P'},
        {"to-earliest", no_argument, NULL, 'E'},
        {"to-latest", no_argument, NULL, 'L'},
        {"to-offset", required_argument, NULL, 'O'},
        {"to-time", required_argument, NULL, 'T'},
        {"shift-by", required_argument, NULL, 'S'},
        {"dry-run", no_argument, NULL, 'n'},
        {"force", no_argument, NULL, 'f'},
        {"reason", required_argument, NULL, 'r'},
        {"forget-dedup", no_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:p:t:P:nfr:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': *path = optarg; break;
        case 'p': *pname = optarg; break;
        case 't': r->topic = optarg; break;
        case 'P':
            if (cli_parse_int64("offsets reset", "--partition", optarg, 0,
                                INT32_MAX, &r->partition) != 0)
                return CLI_REFUSED;
            break;
        case 'E':
        case 'L':
            if (set_mode(&r->mode, c == 'E' ? OPS_RESET_EARLIEST
                                            : OPS_RESET_LATEST) != 0)
                return CLI_REFUSED;
            break;
        case 'O':
        case 'S':
            if (set_mode(&r->mode, c == 'O' ? OPS_RESET_OFFSET
                                            : OPS_RESET_SHIFT) != 0 ||
                cli_parse_int64("offsets reset",
                                c == 'O' ? "--to-offset" : "--shift-by", optarg,
                                c == 'O' ? 0 : INT64_MIN / 2, INT64_MAX / 2,
                                &r->arg) != 0)
                return CLI_REFUSED;
            break;
        case 'T':
            if (set_mode(&r->mode, OPS_RESET_TIME) != 0)
                return CLI_REFUSED;
            r->time_text = optarg;
            break;
        case 'n': *dry_run = 1; break;
        case 'f': *force = 1; break;
        case 'r': r->reason = optarg; break;
        case 'D': r->forget_dedup = 1; break;
        case 'h': reset_usage(stdout); return -1;
        default: reset_usage(stderr); return CLI_REFUSED;
        }
    }
    if (optind < argc) {
        cli_line(stderr, "exactly offsets reset: unexpected argument '%s'",
                 argv[optind]);
        return CLI_REFUSED;
    }
    if (!*path || !*pname || !r->topic || r->mode == OPS_RESET_NONE) {
        cli_line(stderr, "exactly offsets reset: %s (see --help)",
                 !*path    ? "missing -c FILE"
                 : !*pname ? "missing --pipeline NAME"
                 : !r->topic ? "missing --topic T"
                 : "missing a mode: --to-earliest, --to-latest, "
                   "--to-offset K, --to-time TIME or --shift-by N");
        return CLI_REFUSED;
    }
    return CLI_OK;
}

/* The reset's COMMIT went unanswered and whether it committed could not
 * be learnt. */
#define RESET_OUTCOME_UNKNOWN 3

/* The exit code of a failed step. */
static int code_of(exactly_err rc)
{
    return rc == EXACTLY_EINVAL || rc == EXACTLY_ECONFIG ? CLI_REFUSED
                                                         : CLI_FAILED;
}

/* The guard said no: names the group and the workers that hold it. */
static void print_refusal(const ops_reset *r)
{
    strbuf who = {0};
    size_t i;

    if (r->members == 0) {
        cli_line(stderr, "exactly offsets reset: refusing: %s; nothing changed "
                 "(pass --force to reset anyway)",
                 r->group_err);
        return;
    }
    /* The owners are application names from the server: any client sets
     * its own, so cli_line prints them escaped. */
    for (i = 0; i < r->n_owners; i++)
        strbuf_printf(&who, "%s %s",
                      i ? "" : " (workers holding its partitions:",
                      r->owners[i]);
    if (r->n_owners > 0)
        strbuf_puts(&who, ")");
    cli_line(stderr,
             "exactly offsets reset: refusing: consumer group '%s' has %d "
             "active member(s)%s; stop the pipeline's workers first, or pass "
             "--force; nothing changed",
             r->p->group, r->members,
             who.oom ? " (workers: out of memory)" : strbuf_str(&who));
    strbuf_free(&who);
}

/* After the reset: Kafka's committed offsets follow when nobody runs. */
static void after_reset(ops_reset *r)
{
    char err[512];

    if (ops_reset_blocked(r)) {
        cli_line(stdout, "consumer group '%s' %s (--force): not committed to "
                 "Kafka; running workers move to the new offsets at their "
                 "next batch",
                 r->p->group, r->unknown ? "state unknown" : "is active");
    } else if (ops_reset_commit_kafka(r, err, sizeof(err)) != EXACTLY_OK) {
        cli_line(stdout, "note: could not commit the new offsets to group '%s' "
                 "in Kafka (%s); lag tools show the old position until a "
                 "worker commits",
                 r->p->group, err);
    } else {
        cli_line(stdout, "committed to consumer group '%s' in Kafka",
                 r->p->group);
    }
}

/* Plans, then previews or guards and applies; returns the exit code. */
static int run_reset(ops_reset *r, int dry_run, int force)
{
    char err[2048];
    exactly_err rc;

    rc = ops_reset_plan(r, err, sizeof(err));
    if (rc == EXACTLY_OK && dry_run)
        rc = ops_reset_preview(r, err, sizeof(err));
    if (rc != EXACTLY_OK) {
        cli_line(stderr, "exactly offsets reset: %s", err);
        return code_of(rc);
    }
    if (dry_run) {
        print_plan(r);
        dedup_note(r, 0);
        cli_line(stdout, "dry run (%s): nothing changed", r->mode_text);
        return CLI_OK;
    }
    rc = ops_reset_guard(r, err, sizeof(err));
    if (rc != EXACTLY_OK) {
        cli_line(stderr, "exactly offsets reset: %s", err);
        return CLI_FAILED;
    }
    if (ops_reset_blocked(r) && !force) {
        print_refusal(r);
        return CLI_FAILED;
    }
    rc = ops_reset_apply(r, err, sizeof(err));
    if (rc != EXACTLY_OK && r->outcome_unknown) {
        /* It may have committed: a second --shift-by would shift twice. */
        cli_line(stderr, "exactly offsets reset: %s: outcome unknown: check "
                 "with `exactly offsets` before running it again", err);
        return RESET_OUTCOME_UNKNOWN;
    }
    if (rc != EXACTLY_OK) {
        cli_line(stderr, "exactly offsets reset: %s; nothing changed", err);
        return code_of(rc);
    }
    if (r->commit_lost)
        cli_line(stdout, "note: %s", r->commit_note);
    print_plan(r);
    cli_line(stdout, "reset %zu partition(s) of pipeline %s (%s); audit rows "
             "in %s.offset_resets",
             r->n, r->p->name, r->mode_text, r->cfg->postgres.schema);
    dedup_note(r, 1);
    after_reset(r);
    return CLI_OK;
}

int cmd_offsets_reset(int argc, char **argv)
{
    const char *path = NULL, *pname = NULL;
    int dry_run = 0, force = 0, code;
    exactly_config *cfg = NULL;
    ops_reset r;
    size_t i;

    memset(&r, 0, sizeof(r));
    r.partition = -1;
    code = parse_reset(argc, argv, &r, &path, &pname, &dry_run, &force);
    if (code != CLI_OK)
        return code < 0 ? CLI_OK : code;
    cfg = cli_load_config(path);
    if (!cfg)
        return CLI_REFUSED;
    r.cfg = cfg;
    r.p = cli_pick_pipeline(cfg, pname);
    if (!r.p) {
        exactly_config_free(cfg);
        return CLI_REFUSED;
    }
    if (!has_topic(r.p, r.topic)) {
        fprintf(stderr,
                "exactly offsets reset: pipeline '%s' does not read topic "
                "'%s' (its topics: ",
                r.p->name, r.topic);
        for (i = 0; i < r.p->n_topics; i++)
            fprintf(stderr, "%s%s", i ? ", " : "", r.p->topics[i]);
        fprintf(stderr, ")\n");
        exactly_config_free(cfg);
        return CLI_REFUSED;
    }
    if (r.forget_dedup && !r.p->dedup.enabled) {
        cli_line(stderr, "exactly offsets reset: --forget-dedup: pipeline "
                 "'%s' has no dedup", r.p->name);
        exactly_config_free(cfg);
        return CLI_REFUSED;
    }
    code = run_reset(&r, dry_run, force);
    ops_reset_free(&r);
    exactly_config_free(cfg);
    return code;
}

