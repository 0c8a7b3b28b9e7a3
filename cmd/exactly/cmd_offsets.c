/*
 * cmd_offsets.c - `exactly offsets`: where each partition of a pipeline
 * stands, and `exactly offsets reset`. The rules are in lib/ops/offsets.h;
 * this file parses the arguments and prints.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "escape.h"
#include "log.h"
#include "ops/offsets.h"
#include "pg_conn.h"
#include "store_version.h"
#include "strbuf.h"
#include "table.h"

static void fmt_i64(char *buf, size_t n, int ok, int64_t v)
{
    if (ok)
        snprintf(buf, n, "%" PRId64, v);
    else
        snprintf(buf, n, "-");
}

/* The cells of one partition's line. */
typedef struct cells {
    char part[16], stored[24], committed[24], low[24], lso[24], lag[24],
        epoch[24];
} cells;

static void fill_cells(cells *c, const ops_offset_view *r)
{
    int64_t lag = 0;
    int has_lag = ops_offset_lag(r, &lag);

    snprintf(c->part, sizeof(c->part), "%d", (int)r->partition);
    fmt_i64(c->stored, sizeof(c->stored), r->stored_set, r->stored);
    fmt_i64(c->committed, sizeof(c->committed), r->committed >= 0,
            r->committed);
    fmt_i64(c->low, sizeof(c->low), r->wm_ok, r->low);
    fmt_i64(c->lso, sizeof(c->lso), r->wm_ok, r->lso);
    fmt_i64(c->lag, sizeof(c->lag), has_lag, lag);
    fmt_i64(c->epoch, sizeof(c->epoch), r->row, r->epoch);
}

static int print_table(const ops_offsets *l)
{
    static const char *const headers[] = {
        "PIPELINE", "TOPIC", "PARTITION", "STORED", "COMMITTED", "LOW",
        "LSO",      "LAG",   "EPOCH",     "OWNER",  "UPDATED",   "STATE"};
    cli_table *t = cli_table_new(12, headers, "llrrrrrrrlll");
    size_t i;
    int rc;

    if (!t)
        return -1;
    for (i = 0; i < l->n; i++) {
        const ops_offset_view *r = &l->v[i];
        cells c;
        const char *row[12];

        fill_cells(&c, r);
        row[0] = r->pipeline;
        row[1] = r->topic;
        row[2] = c.part;
        row[3] = c.stored;
        row[4] = c.committed;
        row[5] = c.low;
        row[6] = c.lso;
        row[7] = c.lag;
        row[8] = c.epoch;
        row[9] = r->owner;
        row[10] = r->updated;
        row[11] = ops_part_state_name(ops_offset_state(r));
        cli_table_add(t, row);
    }
    rc = cli_table_print(t, stdout);
    cli_table_free(t);
    if (rc == 0)
        printf("\nSTORED is the next offset in PostgreSQL (the truth); "
               "COMMITTED the group's\noffset in Kafka (monitoring only). "
               "LSO is the last stable offset, the\nhigh watermark as a "
               "read_committed consumer sees it; LAG = LSO - STORED.\n"
               "STATE: running, idle (no worker owns it), isolating (the "
               "crash guard\napplies one message at a time) or halted "
               "(stopped until 'offsets reset').\n");
    return rc;
}

/* An integer, or null when not known. */
static json_t *json_i64(int ok, int64_t v)
{
    return ok ? json_integer((json_int_t)v) : json_null();
}

/* A string, or null; text that is not UTF-8 shows its bytes as \xNN. */
static json_t *json_text(const char *s)
{
    strbuf sb = {0};
    json_t *v;

    if (!s)
        return json_null();
    strbuf_append(&sb, "", 0);
    exactly_escape_utf8(&sb, s, strlen(s));
    v = sb.oom ? NULL : json_stringn(strbuf_str(&sb), sb.len);
    strbuf_free(&sb);
    return v;
}

/* One partition as a JSON object, or NULL when out of memory. */
static json_t *view_json(const ops_offset_view *r)
{
    json_t *o = json_object();
    int64_t lag = 0;
    int has_lag = ops_offset_lag(r, &lag);
    int failed;

    failed = !o ||
             json_object_set_new(o, "pipeline", json_text(r->pipeline)) ||
             json_object_set_new(o, "topic", json_text(r->topic)) ||
             json_object_set_new(o, "partition", json_integer(r->partition)) ||
             json_object_set_new(o, "stored", json_i64(r->stored_set, r->stored)) ||
             json_object_set_new(o, "committed",
                                 json_i64(r->committed >= 0, r->committed)) ||
             json_object_set_new(o, "low", json_i64(r->wm_ok, r->low)) ||
             json_object_set_new(o, "lso", json_i64(r->wm_ok, r->lso)) ||
             json_object_set_new(o, "lag", json_i64(has_lag, lag)) ||
             json_object_set_new(o, "owner_epoch", json_i64(r->row, r->epoch)) ||
             json_object_set_new(o, "owner", json_text(r->owner)) ||
             json_object_set_new(o, "updated_at", json_text(r->updated)) ||
             json_object_set_new(o, "state",
                                 ops_offset_state(r) == OPS_PART_NONE
                                     ? json_null()
                                     : json_text(ops_part_state_name(
                                           ops_offset_state(r))));
    if (failed) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* One JSON array, one object per line; jansson writes every value. Returns
 * -1 when out of memory (nothing printed). */
static int print_json(const ops_offsets *l)
{
    strbuf out = {0};
    size_t i;
    int failed = 0;

    strbuf_puts(&out, "[");
    for (i = 0; i < l->n && !failed; i++) {
        json_t *o = view_json(&l->v[i]);
        char *text = o ? json_dumps(o, JSON_ENSURE_ASCII) : NULL;

        failed = !text;
        if (text) {
            strbuf_printf(&out, "%s\n  %s", i ? "," : "", text);
            free(text);
        }
        json_decref(o);
    }
    strbuf_puts(&out, l->n ? "\n]\n" : "]\n");
    if (failed || out.oom) {
        strbuf_free(&out);
        return -1;
    }
    fputs(strbuf_str(&out), stdout);
    strbuf_free(&out);
    return 0;
}

static void kafka_warn(void *arg, const cfg_pipeline *p, const char *msg)
{
    (void)arg;
    cli_line(stderr, "exactly offsets: pipeline %s: %s", p->name, msg);
}

static void show_usage(FILE *out)
{
    fprintf(out,
            "usage: exactly offsets [show] -c FILE [--pipeline NAME] [--json]\n"
            "       exactly offsets reset -c FILE --pipeline NAME --topic T ...\n"
            "\n"
            "Shows, per partition of each pipeline's topics, the next offset\n"
            "stored in PostgreSQL (STORED, the position workers resume from),\n"
            "the pipeline group's committed offset in Kafka (COMMITTED,\n"
            "monitoring only), the low watermark and the last stable offset\n"
            "(LSO: the high watermark as a read_committed consumer sees it),\n"
            "LAG = LSO - STORED, and the owner epoch, owner and last update of\n"
            "the stored row. Partitions without a stored row show '-' there\n"
            "(their lag counts from where auto.offset.reset would start).\n"
            "Rows of topics no longer configured are shown without Kafka's\n"
            "columns. Reads only; never joins the consumer group.\n"
            "Run 'exactly offsets reset --help' to move stored offsets.\n"
            "\n"
            "options:\n"
            "  -c, --config FILE     the YAML configuration (required)\n"
            "  -p, --pipeline NAME   only this pipeline (default: all)\n"
            "      --json            one JSON array of objects instead of a table\n"
            "  -h, --help            this text\n"
            "\n"
            "Exit codes: 0 shown, 1 PostgreSQL or Kafka unreachable or the\n"
            "schema not migrated (what could be read is still shown), 2 bad\n"
            "usage or configuration.\n");
}

/* Reads every pipeline (or only one) from both services into l; returns
 * the exit code so far. */
static int read_all(const exactly_config *cfg, const char *only,
                    ops_offsets *l)
{
    char err[2048];
    int code = CLI_OK;
    PGconn *conn = exactly_pg_connect(cfg, "exactly-offsets", err, sizeof(err));
    size_t i;

    if (!conn) {
        cli_line(stderr, "exactly offsets: %s", err);
        code = CLI_FAILED;
    } else if (store_check_version(conn, cfg, NULL, err, sizeof(err)) !=
               EXACTLY_OK) {
        cli_line(stderr, "exactly offsets: %s", err);
        code = CLI_FAILED;
        PQfinish(conn);
        conn = NULL;
    }
    for (i = 0; i < cfg->n_pipelines; i++) {
        const cfg_pipeline *p = &cfg->pipelines[i];
        if (only && strcmp(only, p->name) != 0)
            continue;
        if (conn && ops_offsets_read_pg(conn, cfg, p, l, err, sizeof(err)) !=
                        EXACTLY_OK) {
            cli_line(stderr, "exactly offsets: pipeline %s: %s", p->name, err);
            code = CLI_FAILED;
        }
        if (ops_offsets_read_kafka(cfg, p, l, kafka_warn, NULL) != 0)
            code = CLI_FAILED;
    }
    if (conn)
        PQfinish(conn);
    return code;
}

static int cmd_show(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"pipeline", required_argument, NULL, 'p'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *only = NULL;
    int json = 0, c, code;
    exactly_config *cfg = NULL;
    ops_offsets l = {0};

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:p:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'p': only = optarg; break;
        case 'j': json = 1; break;
        case 'h': show_usage(stdout); return CLI_OK;
        default: show_usage(stderr); return CLI_REFUSED;
        }
    }
    if (optind < argc) {
        cli_line(stderr, "exactly offsets: unexpected argument '%s'",
                 argv[optind]);
        return CLI_REFUSED;
    }
    cfg = cli_load_config(path);
    if (!cfg)
        return CLI_REFUSED;
    if (only && !cli_pick_pipeline(cfg, only)) {
        exactly_config_free(cfg);
        return CLI_REFUSED;
    }
    code = read_all(cfg, only, &l);
    ops_offsets_sort(&l);
    if (json ? print_json(&l) != 0 : print_table(&l) != 0) {
        fprintf(stderr, "exactly offsets: out of memory\n");
        code = CLI_FAILED;
    }
    ops_offsets_free(&l);
    exactly_config_free(cfg);
    return code;
}

/* ---- reset --------------------------------------------------------------- */

static void reset_usage(FILE *out)
{
    fprintf(out,
            "usage: exactly offsets reset -c FILE --pipeline NAME --topic T\n"
            "           [--partition N] MODE [--dry-run] [--force] [--reason TEXT]\n"
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
            "--force resets anyway: a running worker's next batch on a moved\n"
            "partition fails its offset compare-and-set, and the worker re-reads\n"
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
            "options:\n"
            "  -c, --config FILE     the YAML configuration (required)\n"
            "  -p, --pipeline NAME   the pipeline (required)\n"
            "  -t, --topic T         one of the pipeline's topics (required)\n"
            "  -P, --partition N     only partition N (default: every partition)\n"
            "  -n, --dry-run         print the table, change nothing\n"
            "  -f, --force           reset even while the group is active or its\n"
            "                        state cannot be read\n"
            "  -r, --reason TEXT     why, kept in the audit row\n"
            "  -h, --help            this text\n"
            "\n"
            "Exit codes: 0 reset (or dry run), 1 refused because the group is\n"
            "active or its state cannot be read, or PostgreSQL or Kafka\n"
            "failed (nothing was changed), 2 bad usage or configuration.\n");
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
        fmt_i64(from, sizeof(from), x->from_set, x->from);
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
    } else if (ops_reset_commit_kafka(r, err, sizeof(err)) != 0) {
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
    if (rc != EXACTLY_OK) {
        cli_line(stderr, "exactly offsets reset: %s; nothing changed", err);
        return code_of(rc);
    }
    print_plan(r);
    cli_line(stdout, "reset %zu partition(s) of pipeline %s (%s); audit rows "
             "in %s.offset_resets",
             r->n, r->p->name, r->mode_text, r->cfg->postgres.schema);
    after_reset(r);
    return CLI_OK;
}

static int cmd_reset(int argc, char **argv)
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
    code = run_reset(&r, dry_run, force);
    ops_reset_free(&r);
    exactly_config_free(cfg);
    return code;
}

int cmd_offsets(int argc, char **argv)
{
    /* Quiet by default: the table is the output, librdkafka's notices are
     * not. Warnings and errors still reach stderr. */
    cli_set_log_level(EXACTLY_LOG_WARN);
    if (argc > 1 && argv[1][0] != '-') {
        if (strcmp(argv[1], "reset") == 0)
            return cmd_reset(argc - 1, argv + 1);
        if (strcmp(argv[1], "show") == 0)
            return cmd_show(argc - 1, argv + 1);
        cli_line(stderr, "exactly offsets: unknown action '%s' (show or reset)",
                 argv[1]);
        return CLI_REFUSED;
    }
    return cmd_show(argc, argv);
}
