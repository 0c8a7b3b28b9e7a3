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
#include "strbuf.h"
#include "table.h"

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
    cli_fmt_i64(c->stored, sizeof(c->stored), r->stored_set, r->stored);
    cli_fmt_i64(c->committed, sizeof(c->committed), r->committed >= 0,
            r->committed);
    cli_fmt_i64(c->low, sizeof(c->low), r->wm_ok, r->low);
    cli_fmt_i64(c->lso, sizeof(c->lso), r->wm_ok, r->lso);
    cli_fmt_i64(c->lag, sizeof(c->lag), has_lag, lag);
    cli_fmt_i64(c->epoch, sizeof(c->epoch), r->row, r->epoch);
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

static void warn(void *arg, const cfg_pipeline *p, const char *msg)
{
    (void)arg;
    if (p)
        cli_line(stderr, "exactly offsets: pipeline %s: %s", p->name, msg);
    else
        cli_line(stderr, "exactly offsets: %s", msg);
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
            "STATE (\"state\" in --json, null for '-') is what PostgreSQL and\n"
            "Kafka show of the partition:\n"
            "  running    a worker holding a PostgreSQL session owns its row\n"
            "  idle       no worker session owns it (workers stopped)\n"
            "  isolating  the crash guard applies the batch at STORED one\n"
            "             message at a time, after workers died inside it\n"
            "  halted     it cannot move until 'exactly offsets reset' gives\n"
            "             it a position: the stored offset left the log\n"
            "             (below LOW or past LSO), or its live owner has no\n"
            "             stored offset (auto.offset.reset: error, or the\n"
            "             row lost its position)\n"
            "  -          no row: never claimed\n"
            "What only a worker's memory holds is not shown: a partition it\n"
            "halted for on_error: stop (its log and the metric\n"
            "exactly_partition_halted say so), or one it lost to a newer\n"
            "claim while it still ran (fenced: the newer owner is shown, and\n"
            "the older worker's next batch is refused and counted fenced).\n"
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
    code = ops_offsets_read(cfg, only, &l, warn, NULL) == 0 ? CLI_OK
                                                           : CLI_FAILED;
    ops_offsets_sort(&l);
    if (json ? print_json(&l) != 0 : print_table(&l) != 0) {
        fprintf(stderr, "exactly offsets: out of memory\n");
        code = CLI_FAILED;
    }
    ops_offsets_free(&l);
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
            return cmd_offsets_reset(argc - 1, argv + 1);
        if (strcmp(argv[1], "show") == 0)
            return cmd_show(argc - 1, argv + 1);
        cli_line(stderr, "exactly offsets: unknown action '%s' (show or reset)",
                 argv[1]);
        return CLI_REFUSED;
    }
    return cmd_show(argc, argv);
}
