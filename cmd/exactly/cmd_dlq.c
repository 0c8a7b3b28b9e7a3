/*
 * cmd_dlq.c - `exactly dlq`: the dead-letter table of a pipeline, for
 * operators: list, show one in full, replay and discard. The rules are in
 * lib/ops/dlq.h; this file parses the arguments and prints.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_dlq_internal.h"
#include "escape.h"
#include "log.h"
#include "ops/dlq.h"
#include "table.h"

#define LIST_DEFAULT_LIMIT 100
#define SHOW_DEFAULT_LIMIT 10

typedef enum dlq_action { DLQ_LIST, DLQ_SHOW, DLQ_REPLAY, DLQ_DISCARD } dlq_action;

/* The selected dead letters and how many match; -1 after saying why
 * (action names the command in the message). */
static int select_rows(PGconn *conn, const exactly_config *cfg,
                       const ops_dlq_sel *s, const char *action,
                       store_dl_row **rows, size_t *n, int64_t *total)
{
    char err[2048];

    if (ops_dlq_select(conn, cfg, s, rows, n, total, err, sizeof(err)) !=
        EXACTLY_OK) {
        cli_line(stderr, "exactly dlq %s: %s", action, err);
        return -1;
    }
    return 0;
}

/* ---- list ---------------------------------------------------------------- */

/* Points at the dead letters of the pipeline's reprocess runs, which are
 * kept under names of their own. Best effort: a failure prints nothing. */
static void list_runs(PGconn *conn, const exactly_config *cfg,
                      const cfg_pipeline *p)
{
    char err[1024], **runs = NULL;
    int64_t *counts = NULL;
    size_t n = 0, i;

    if (ops_dlq_runs(conn, cfg, p, &runs, &counts, &n, err, sizeof(err)) !=
        EXACTLY_OK)
        return;
    for (i = 0; i < n; i++)
        cli_line(stdout, "reprocess run %s has %" PRId64 " dead letter(s): "
                 "exactly dlq list -c %s --pipeline %s --run %s",
                 runs[i], counts[i], cfg->path, p->name, runs[i]);
    ops_dlq_runs_free(runs, counts, n);
}

/* The seconds of a UTC time with microseconds, as list shows it. */
static void to_seconds(const char *t, char *out, size_t out_size)
{
    snprintf(out, out_size, "%.19sZ", t ? t : "");
}

static int print_list(const store_dl_row *rows, size_t n)
{
    static const char *const headers[] = {"ID",        "TOPIC",    "PARTITION",
                                          "OFFSET",    "ENTITY_ID", "ATTEMPTS",
                                          "LAST_FAILED", "REASON"};
    cli_table *t = cli_table_new(8, headers, "rlrrlrll");
    size_t i;
    int rc;

    if (!t)
        return -1;
    for (i = 0; i < n; i++) {
        const store_dl_row *d = &rows[i];
        char id[24], part[16], off[24], att[24], last[32];
        char reason[DLQ_REASON_WIDTH + 8];
        const char *cells[8];

        snprintf(id, sizeof(id), "%" PRId64, d->id);
        snprintf(part, sizeof(part), "%d", (int)d->partition);
        snprintf(off, sizeof(off), "%" PRId64, d->offset);
        snprintf(att, sizeof(att), "%" PRId64, d->attempts);
        to_seconds(d->last_failed_at, last, sizeof(last));
        cli_cell_line(d->reason ? d->reason : "", reason, DLQ_REASON_WIDTH);
        cells[0] = id;
        cells[1] = d->topic;
        cells[2] = part;
        cells[3] = off;
        cells[4] = d->entity;
        cells[5] = att;
        cells[6] = last;
        cells[7] = reason;
        cli_table_add(t, cells);
    }
    rc = cli_table_print(t, stdout);
    cli_table_free(t);
    return rc;
}

static int do_list(PGconn *conn, const exactly_config *cfg,
                   const cfg_pipeline *p, const ops_dlq_sel *s)
{
    store_dl_row *rows = NULL;
    size_t n = 0;
    int64_t total = 0;

    if (select_rows(conn, cfg, s, "list", &rows, &n, &total) != 0)
        return CLI_FAILED;
    if (print_list(rows, n) != 0) {
        fprintf(stderr, "exactly dlq list: out of memory\n");
        store_dl_rows_free(rows, n);
        return CLI_FAILED;
    }
    if (total > (int64_t)n)
        cli_line(stdout, "%zu of %" PRId64 " dead letter(s) of %s shown "
                 "(--limit N for more)",
                 n, total, s->label);
    else
        cli_line(stdout, "%" PRId64 " dead letter(s) of %s", total, s->label);
    if (s->run == 0)
        list_runs(conn, cfg, p);
    store_dl_rows_free(rows, n);
    return CLI_OK;
}

/* ---- show ---------------------------------------------------------------- */

/* The key: the whole key's length and digest first, then the bytes kept,
 * which are only its first bytes when the key was longer than what a dead
 * letter keeps (the hex line is then exact, but of the prefix). */
static void print_key(const store_dl_row *d)
{
    size_t i;

    if (!d->has_key) {
        printf("key:             - (none)\n");
        return;
    }
    if (d->key_full_len < 0 || !d->key_sha256)
        printf("key:             %zu bytes kept (full length and SHA-256 not "
               "recorded)\n",
               d->key_len);
    else if ((uint64_t)d->key_full_len > d->key_len)
        printf("key:             %" PRId64 " bytes, SHA-256 %s; shown below: "
               "its first %zu bytes only\n",
               d->key_full_len, d->key_sha256, d->key_len);
    else
        printf("key:             %" PRId64 " bytes, SHA-256 %s\n",
               d->key_full_len, d->key_sha256);
    /* Text: well-formed UTF-8 without NUL (its control characters are
     * shown escaped). */
    if (exactly_utf8_valid((const char *)d->key, d->key_len))
        cli_line(stdout, "key (text):      %s", (const char *)d->key);
    else
        printf("key (text):      - (binary, %zu bytes)\n", d->key_len);
    printf("key (hex):       ");
    for (i = 0; i < d->key_len; i++)
        printf("%02x", d->key[i]);
    printf("\n");
}

static void print_one(const store_dl_row *d)
{
    cli_line(stdout, "id:              %" PRId64, d->id);
    cli_line(stdout, "pipeline:        %s", d->pipeline);
    cli_line(stdout, "topic:           %s", d->topic);
    cli_line(stdout, "partition:       %d", (int)d->partition);
    cli_line(stdout, "offset:          %" PRId64, d->offset);
    cli_line(stdout, "entity_id:       %s",
             d->entity ? d->entity : "- (the message could not be decoded)");
    print_key(d);
    cli_line(stdout, "reason:          %s", d->reason ? d->reason : "");
    cli_line(stdout, "sqlstate:        %s", d->sqlstate ? d->sqlstate : "-");
    cli_line(stdout, "attempts:        %" PRId64, d->attempts);
    cli_line(stdout, "first_failed_at: %s", d->first_failed_at);
    cli_line(stdout, "last_failed_at:  %s", d->last_failed_at);
    if (d->trace_id)
        cli_line(stdout, "trace_id:        %s", d->trace_id);
}

static int do_show(PGconn *conn, const exactly_config *cfg,
                   const ops_dlq_sel *s)
{
    store_dl_row *rows = NULL;
    size_t n = 0, i;
    int64_t total = 0;

    if (select_rows(conn, cfg, s, "show", &rows, &n, &total) != 0)
        return CLI_FAILED;
    if (n == 0) {
        cli_line(stderr, "exactly dlq show: no dead letter of %s matches",
                 s->label);
        store_dl_rows_free(rows, n);
        return CLI_FAILED;
    }
    for (i = 0; i < n; i++) {
        if (i > 0)
            printf("\n");
        print_one(&rows[i]);
    }
    if (total > (int64_t)n)
        printf("\n%zu of %" PRId64 " matching dead letter(s) shown (--limit N "
               "for more)\n",
               n, total);
    store_dl_rows_free(rows, n);
    return CLI_OK;
}

/* ---- discard ------------------------------------------------------------- */

static int do_discard(PGconn *conn, const exactly_config *cfg,
                      const ops_dlq_sel *s)
{
    char err[2048];
    int64_t n = 0;

    if (ops_dlq_discard(conn, cfg, s, &n, err, sizeof(err)) != EXACTLY_OK) {
        cli_line(stderr, "exactly dlq discard: %s", err);
        return CLI_FAILED;
    }
    cli_line(stdout, "discarded %" PRId64 " dead letter(s) of %s", n, s->label);
    return CLI_OK;
}

/* ---- the command ---------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: exactly dlq list    -c FILE [--pipeline NAME] [filters]\n"
            "       exactly dlq show    -c FILE [--pipeline NAME] [ID...] [filters]\n"
            "       exactly dlq replay  -c FILE [--pipeline NAME] [ID...] [filters | --all]\n"
            "       exactly dlq discard -c FILE [--pipeline NAME] [ID...] [filters | --all]\n"
            "\n"
            "The dead letters of a pipeline (SCHEMA.dead_letters): messages its\n"
            "handler failed on, that could not be decoded, or whose lookup found\n"
            "no row when lookup.on_missing says dead_letter. Those of an\n"
            "'exactly reprocess' run are kept apart: --run RUN selects them, and\n"
            "list points at the runs that have some.\n"
            "\n"
            "  list     a table, oldest first: id, topic, partition, offset,\n"
            "           entity ID, attempts, last failure (UTC) and the reason\n"
            "           cut to %d characters; at most %d rows unless --limit\n"
            "  show     every field of the selected dead letters (at most %d\n"
            "           unless --limit), the message key as text and in hex,\n"
            "           with the whole key's length and SHA-256 (a key longer\n"
            "           than 1,024 bytes is kept, and shown, as its prefix)\n"
            "%s"
            "  discard  deletes the selected dead letters and prints how many\n"
            "\n"
            "replay and discard need a filter or --all.\n"
            "\n"
            "options:\n"
            "  -c, --config FILE     the YAML configuration (required)\n"
            "  -p, --pipeline NAME   the pipeline (required when the file has\n"
            "                        more than one)\n"
            "  -t, --topic T         only dead letters of topic T\n"
            "  -P, --partition N     only partition N\n"
            "  -i, --id ID           only the dead letter whose id (the ID\n"
            "                        column of list, dead_letters.id) is ID\n"
            "                        (repeatable; a bare ID argument means the\n"
            "                        same); not an entity ID\n"
            "  -e, --entity ID       only dead letters of the entity whose ID\n"
            "                        (the ENTITY_ID column, as decoded from the\n"
            "                        message) is ID, byte for byte (repeatable)\n"
            "  -s, --since TIME      only those that last failed at or after TIME\n"
            "                        (ISO 8601, e.g. 2024-05-01T12:00:00Z)\n"
            "  -l, --limit N         at most N, oldest (lowest id) first\n"
            "  -a, --all             every dead letter of the pipeline (replay,\n"
            "                        discard)\n"
            "  -r, --run RUN         the dead letters of reprocess run RUN of the\n"
            "                        pipeline (kept apart, under the name\n"
            "                        PIPELINE:reprocess:RUN); replay applies them\n"
            "                        as part of that run and adds them to its\n"
            "                        applied count\n"
            "  -h, --help            this text\n"
            "\n"
            "Filters combine: a dead letter is selected when it matches every\n"
            "one given, and any of the values of a repeated one.\n"
            "\n"
            "replay and discard refuse a connection that is not a PostgreSQL\n"
            "session of its own (a pooler in transaction mode, such as\n"
            "PgBouncer's pool_mode = transaction; exit 2, nothing done): their\n"
            "statements' lock and statement bounds are the session's. list and\n"
            "show only read and work through it too.\n"
            "\n"
            "Exit codes: 0 done (replay: committed, even when some dead letters\n"
            "failed again or were left in place: the summary counts them), 1\n"
            "PostgreSQL failed, the schema is not migrated, show found nothing,\n"
            "or replay rolled back, 2 bad usage, configuration (a\n"
            "transaction-mode pooler included) or plugin.\n",
            DLQ_REASON_WIDTH, LIST_DEFAULT_LIMIT, SHOW_DEFAULT_LIMIT, dlq_replay_help);
}

static int add_id(ops_dlq_sel *s, const char *text)
{
    int64_t v;

    if (cli_parse_int64("dlq", "a dead letter ID", text, 1, INT64_MAX, &v) != 0)
        return -1;
    if (ops_dlq_sel_add_id(s, v) != 0) {
        fprintf(stderr, "exactly dlq: out of memory\n");
        return -1;
    }
    return 0;
}

/* Which action argv[1] names; -1 after saying why not. */
static int parse_action(int argc, char **argv)
{
    static const char *const names[] = {"list", "show", "replay", "discard"};
    int a;

    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "exactly dlq: missing action (list, show, replay or "
                        "discard)\n\n");
        usage(stderr);
        return -1;
    }
    for (a = 0; a < 4; a++)
        if (strcmp(argv[1], names[a]) == 0)
            return a;
    cli_line(stderr, "exactly dlq: unknown action '%s' (list, show, replay "
             "or discard)",
             argv[1]);
    return -1;
}

/* The options into s, path and pname. Returns CLI_OK to go on, -1 for
 * --help (printed), or CLI_REFUSED after saying why. */
static int parse_options(int argc, char **argv, dlq_action action,
                         ops_dlq_sel *s, const char **path, const char **pname)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"pipeline", required_argument, NULL, 'p'},
        {"topic", required_argument, NULL, 't'},
        {"partition", required_argument, NULL, 'P'},
        {"id", required_argument, NULL, 'i'},
        {"entity", required_argument, NULL, 'e'},
        {"since", required_argument, NULL, 's'},
        {"limit", required_argument, NULL, 'l'},
        {"all", no_argument, NULL, 'a'},
        {"run", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:p:t:P:i:e:s:l:ar:h", longopts,
                            NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'c': *path = optarg; break;
        case 'p': *pname = optarg; break;
        case 't': s->topic = optarg; break;
        case 'P':
            bad = cli_parse_int64("dlq", "--partition", optarg, 0, INT32_MAX,
                                  &s->partition);
            break;
        case 'i': bad = add_id(s, optarg); break;
        case 'e':
            if (!*optarg) {
                fprintf(stderr, "exactly dlq: --entity takes an entity ID\n");
                bad = 1;
            } else if (ops_dlq_sel_add_entity(s, optarg) != 0) {
                fprintf(stderr, "exactly dlq: out of memory\n");
                bad = 1;
            }
            break;
        case 's': s->since = optarg; break;
        case 'l':
            bad = cli_parse_int64("dlq", "--limit", optarg, 1, INT64_MAX,
                                  &s->limit);
            break;
        case 'a': s->all = 1; break;
        case 'r':
            bad = cli_parse_int64("dlq", "--run", optarg, 1, INT64_MAX,
                                  &s->run);
            break;
        case 'h': usage(stdout); return -1;
        default: usage(stderr); return CLI_REFUSED;
        }
        if (bad)
            return CLI_REFUSED;
    }
    for (; optind < argc; optind++) {
        if (action == DLQ_LIST) {
            cli_line(stderr, "exactly dlq list: unexpected argument '%s' (use "
                     "--id or 'dlq show ID')",
                     argv[optind]);
            return CLI_REFUSED;
        }
        if (add_id(s, argv[optind]) != 0)
            return CLI_REFUSED;
    }
    return CLI_OK;
}

static int run_action(dlq_action action, const exactly_config *cfg,
                      const cfg_pipeline *p, ops_dlq_sel *s)
{
    static const char *const names[] = {"list", "show", "replay", "discard"};
    PGconn *conn = NULL;
    char err[2048];
    exactly_err rc;
    int code = CLI_FAILED;

    rc = ops_dlq_open(cfg, p, s,
                      action == DLQ_REPLAY || action == DLQ_DISCARD, &conn,
                      err, sizeof(err));
    if (rc != EXACTLY_OK) {
        cli_line(stderr, "exactly dlq %s: %s", names[action], err);
        return rc == EXACTLY_EINVAL || rc == EXACTLY_ECONFIG ? CLI_REFUSED
                                                             : CLI_FAILED;
    }
    switch (action) {
    case DLQ_LIST: code = do_list(conn, cfg, p, s); break;
    case DLQ_SHOW: code = do_show(conn, cfg, s); break;
    case DLQ_REPLAY: code = dlq_do_replay(conn, cfg, p, s); break;
    case DLQ_DISCARD: code = do_discard(conn, cfg, s); break;
    }
    PQfinish(conn);
    return code;
}

int cmd_dlq(int argc, char **argv)
{
    static const char *const names[] = {"list", "show", "replay", "discard"};
    const char *path = NULL, *pname = NULL;
    exactly_config *cfg = NULL;
    const cfg_pipeline *p;
    ops_dlq_sel s;
    dlq_action action;
    int a, code;

    /* Tables are the output; librdkafka's notices are not. */
    cli_set_log_level(EXACTLY_LOG_WARN);
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return CLI_OK;
    }
    a = parse_action(argc, argv);
    if (a < 0)
        return CLI_REFUSED;
    action = (dlq_action)a;
    ops_dlq_sel_init(&s);
    code = parse_options(argc - 1, argv + 1, action, &s, &path, &pname);
    if (code != CLI_OK) {
        ops_dlq_sel_free(&s);
        return code < 0 ? CLI_OK : code;
    }
    code = CLI_REFUSED;
    if ((action == DLQ_REPLAY || action == DLQ_DISCARD) &&
        !ops_dlq_sel_narrowed(&s) && !s.all) {
        cli_line(stderr, "exactly dlq %s: select dead letters with ID, --id, "
                 "--entity, --topic, --partition or --since, or pass --all; "
                 "nothing changed",
                 names[action]);
        goto cleanup;
    }
    if (s.limit < 0 && action == DLQ_LIST)
        s.limit = LIST_DEFAULT_LIMIT;
    if (s.limit < 0 && action == DLQ_SHOW)
        s.limit = SHOW_DEFAULT_LIMIT;
    cfg = cli_load_config(path);
    if (!cfg)
        goto cleanup;
    p = cli_pick_pipeline(cfg, pname);
    if (p)
        code = run_action(action, cfg, p, &s);

cleanup:
    ops_dlq_sel_free(&s);
    exactly_config_free(cfg);
    return code;
}
