/*
 * cmd_offsets.c - `exactly offsets`: where each partition of a pipeline
 * stands (the offset stored in PostgreSQL, which is the truth, next to
 * Kafka's view: the group's committed offset and the watermarks), and
 * `exactly offsets reset`, which moves stored offsets with a guard while
 * the group is active and an audit row per partition.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "admin.h"
#include "cli.h"
#include "escape.h"
#include "log.h"
#include "pg_conn.h"
#include "strbuf.h"

#define KAFKA_TIMEOUT_MS 10000

/* One partition as the table shows it. */
typedef struct prow {
    const char *pipeline;
    char *topic;
    int32_t partition;
    int stored_set;     /* a row with a next_offset exists */
    int64_t stored;
    int row;            /* a row exists at all */
    int64_t epoch;
    char *owner;
    char *updated;
    int in_kafka;
    int64_t committed;  /* RD_KAFKA_OFFSET_INVALID: none */
    int wm_ok;
    int64_t low, lso;
    char auto_reset[16];
} prow;

typedef struct plist {
    prow *v;
    size_t n, cap;
} plist;

static prow *plist_find(plist *l, const char *pipeline, const char *topic,
                        int32_t partition)
{
    size_t i;

    for (i = 0; i < l->n; i++)
        if (l->v[i].partition == partition && l->v[i].pipeline == pipeline &&
            strcmp(l->v[i].topic, topic) == 0)
            return &l->v[i];
    return NULL;
}

static prow *plist_add(plist *l, const char *pipeline, const char *topic,
                       int32_t partition)
{
    prow *r;

    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        prow *v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return NULL;
        l->v = v;
        l->cap = cap;
    }
    r = &l->v[l->n];
    memset(r, 0, sizeof(*r));
    r->pipeline = pipeline;
    r->topic = strdup(topic);
    if (!r->topic)
        return NULL;
    r->partition = partition;
    r->committed = RD_KAFKA_OFFSET_INVALID;
    l->n++;
    return r;
}

static void plist_free(plist *l)
{
    size_t i;

    for (i = 0; i < l->n; i++) {
        free(l->v[i].topic);
        free(l->v[i].owner);
        free(l->v[i].updated);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static int prow_cmp(const void *a, const void *b)
{
    const prow *x = a, *y = b;
    int c = strcmp(x->pipeline, y->pipeline);

    if (c == 0)
        c = strcmp(x->topic, y->topic);
    if (c == 0)
        c = (x->partition > y->partition) - (x->partition < y->partition);
    return c;
}

/* The stored rows of pipeline p, added to l. */
static exactly_err read_rows(PGconn *conn, const exactly_config *cfg,
                             const cfg_pipeline *p, plist *l, char *err,
                             size_t errsz)
{
    char *q = admin_schema_q(conn, cfg);
    strbuf sql = {0};
    const char *params[1] = {p->name};
    PGresult *res = NULL;
    exactly_err rc = EXACTLY_ENOMEM;
    int r;

    if (!q)
        goto cleanup;
    strbuf_printf(&sql,
                  "SELECT topic, partition, next_offset, owner_epoch, owner,"
                  " to_char(updated_at AT TIME ZONE 'UTC',"
                  " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
                  " FROM %s.offsets WHERE pipeline = $1"
                  " ORDER BY topic, partition",
                  q);
    if (sql.oom)
        goto cleanup;
    rc = exactly_pg_exec(conn, strbuf_str(&sql), 1, params, &res, err, errsz);
    if (rc != EXACTLY_OK)
        goto cleanup;
    for (r = 0; r < PQntuples(res); r++) {
        prow *row = plist_add(l, p->name, PQgetvalue(res, r, 0),
                              (int32_t)atoi(PQgetvalue(res, r, 1)));
        if (!row) {
            rc = EXACTLY_ENOMEM;
            goto cleanup;
        }
        row->row = 1;
        row->stored_set = !PQgetisnull(res, r, 2);
        row->stored = strtoll(PQgetvalue(res, r, 2), NULL, 10);
        row->epoch = strtoll(PQgetvalue(res, r, 3), NULL, 10);
        row->owner = PQgetisnull(res, r, 4) ? NULL : strdup(PQgetvalue(res, r, 4));
        row->updated = strdup(PQgetvalue(res, r, 5));
    }

cleanup:
    if (rc == EXACTLY_ENOMEM)
        snprintf(err, errsz, "out of memory");
    PQclear(res);
    strbuf_free(&sql);
    PQfreemem(q);
    return rc;
}

/* Kafka's side of pipeline p: every partition of its topics (added to l
 * when no row exists yet), the group's committed offsets, the watermarks.
 * Returns 0, or -1 after printing why on stderr (the rows read so far
 * stay in l, without Kafka's columns). */
static int read_kafka(const exactly_config *cfg, const cfg_pipeline *p,
                      plist *l)
{
    char err[1024], reset[16];
    rd_kafka_t *rk = admin_kafka_new(cfg, p, "offsets", reset, err, sizeof(err));
    rd_kafka_topic_partition_list_t *parts = NULL;
    rd_kafka_resp_err_t committed_err = RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_resp_err_t e;
    int failed = 0;
    size_t i;
    int j;

    if (!rk) {
        cli_line(stderr, "exactly offsets: pipeline %s: %s", p->name, err);
        return -1;
    }
    parts = rd_kafka_topic_partition_list_new(16);
    for (i = 0; i < p->n_topics; i++) {
        int n = admin_partition_count(rk, p->topics[i], KAFKA_TIMEOUT_MS, err,
                                      sizeof(err));
        if (n < 0) {
            cli_line(stderr, "exactly offsets: pipeline %s: %s", p->name, err);
            failed = 1;
            continue;
        }
        for (j = 0; j < n; j++) {
            prow *r = plist_find(l, p->name, p->topics[i], j);
            if (!r)
                r = plist_add(l, p->name, p->topics[i], j);
            if (!r) {
                fprintf(stderr, "exactly offsets: out of memory\n");
                failed = 1;
                goto done;
            }
            r->in_kafka = 1;
            snprintf(r->auto_reset, sizeof(r->auto_reset), "%s", reset);
            rd_kafka_topic_partition_list_add(parts, p->topics[i], j);
        }
    }
    if (parts->cnt > 0) {
        committed_err = rd_kafka_committed(rk, parts, KAFKA_TIMEOUT_MS);
        if (committed_err) {
            cli_line(stderr, "exactly offsets: pipeline %s: cannot read the committed "
                     "offsets of group '%s': %s",
                     p->name, p->group, rd_kafka_err2str(committed_err));
            failed = 1;
        }
    }
    for (j = 0; j < parts->cnt; j++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[j];
        prow *r = plist_find(l, p->name, tp->topic, tp->partition);
        int64_t lo = 0, hi = 0;

        if (!committed_err && !tp->err)
            r->committed = tp->offset;
        /* The handle reads read_committed, so the broker answers with the
         * last stable offset as the high end: what a worker can reach. */
        e = rd_kafka_query_watermark_offsets(rk, tp->topic, tp->partition, &lo,
                                             &hi, KAFKA_TIMEOUT_MS);
        if (e) {
            cli_line(stderr, "exactly offsets: pipeline %s: watermarks of %s [%d]: %s",
                     p->name, tp->topic, (int)tp->partition,
                     rd_kafka_err2str(e));
            failed = 1;
            continue;
        }
        r->wm_ok = 1;
        r->low = lo;
        r->lso = hi;
    }
done:
    rd_kafka_topic_partition_list_destroy(parts);
    admin_kafka_free(rk);
    return failed ? -1 : 0;
}

/* Lag in messages (offsets, counting control records): from the stored
 * offset, or for a partition without one from where a worker would start. */
static int lag_of(const prow *r, int64_t *lag)
{
    if (!r->wm_ok)
        return 0;
    if (r->stored_set) {
        *lag = r->lso - r->stored;
        return 1;
    }
    if (strcmp(r->auto_reset, "earliest") == 0) {
        *lag = r->lso - r->low;
        return 1;
    }
    if (strcmp(r->auto_reset, "latest") == 0) {
        *lag = 0;
        return 1;
    }
    return 0;
}

static void fmt_i64(char *buf, size_t n, int ok, int64_t v)
{
    if (ok)
        snprintf(buf, n, "%" PRId64, v);
    else
        snprintf(buf, n, "-");
}

static int print_table(const plist *l)
{
    static const char *const headers[] = {
        "PIPELINE", "TOPIC", "PARTITION", "STORED", "COMMITTED", "LOW",
        "LSO",      "LAG",   "EPOCH",     "OWNER",  "UPDATED"};
    admin_table *t = admin_table_new(11, headers, "llrrrrrrrll");
    size_t i;
    int rc;

    if (!t)
        return -1;
    for (i = 0; i < l->n; i++) {
        const prow *r = &l->v[i];
        char part[16], stored[24], committed[24], low[24], lso[24], lag[24],
            epoch[24];
        int64_t lagv = 0;
        const char *cells[11];

        snprintf(part, sizeof(part), "%d", (int)r->partition);
        fmt_i64(stored, sizeof(stored), r->stored_set, r->stored);
        fmt_i64(committed, sizeof(committed), r->committed >= 0, r->committed);
        fmt_i64(low, sizeof(low), r->wm_ok, r->low);
        fmt_i64(lso, sizeof(lso), r->wm_ok, r->lso);
        int has_lag = lag_of(r, &lagv); /* before lagv is read below */
        fmt_i64(lag, sizeof(lag), has_lag, lagv);
        fmt_i64(epoch, sizeof(epoch), r->row, r->epoch);
        cells[0] = r->pipeline;
        cells[1] = r->topic;
        cells[2] = part;
        cells[3] = stored;
        cells[4] = committed;
        cells[5] = low;
        cells[6] = lso;
        cells[7] = lag;
        cells[8] = epoch;
        cells[9] = r->owner;
        cells[10] = r->updated;
        admin_table_add(t, cells);
    }
    rc = admin_table_print(t, stdout);
    admin_table_free(t);
    if (rc == 0)
        printf("\nSTORED is the next offset in PostgreSQL (the truth); "
               "COMMITTED the group's\noffset in Kafka (monitoring only). "
               "LSO is the last stable offset, the\nhigh watermark as a "
               "read_committed consumer sees it; LAG = LSO - STORED.\n");
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

/* One JSON array, one object per line; jansson writes every value. Returns
 * -1 when out of memory (nothing printed). */
static int print_json(const plist *l)
{
    strbuf out = {0};
    size_t i;
    int failed = 0;

    strbuf_puts(&out, "[");
    for (i = 0; i < l->n && !failed; i++) {
        const prow *r = &l->v[i];
        json_t *o = json_object();
        int64_t lag = 0;
        int has_lag = lag_of(r, &lag);
        char *text;

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
                 json_object_set_new(o, "updated_at", json_text(r->updated));
        text = failed ? NULL : json_dumps(o, JSON_ENSURE_ASCII);
        failed = failed || !text;
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
    int json = 0, c, code = CLI_OK;
    exactly_config *cfg = NULL;
    PGconn *conn = NULL;
    plist l = {0};
    char err[2048];
    size_t i;

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
        code = CLI_REFUSED;
        goto cleanup;
    }
    conn = exactly_pg_connect(cfg, "exactly-offsets", err, sizeof(err));
    if (!conn) {
        cli_line(stderr, "exactly offsets: %s", err);
        code = CLI_FAILED;
    } else if (admin_check_schema(conn, cfg, err, sizeof(err)) != EXACTLY_OK) {
        cli_line(stderr, "exactly offsets: %s", err);
        code = CLI_FAILED;
        PQfinish(conn);
        conn = NULL;
    }
    for (i = 0; i < cfg->n_pipelines; i++) {
        const cfg_pipeline *p = &cfg->pipelines[i];
        if (only && strcmp(only, p->name) != 0)
            continue;
        if (conn && read_rows(conn, cfg, p, &l, err, sizeof(err)) != EXACTLY_OK) {
            cli_line(stderr, "exactly offsets: pipeline %s: %s", p->name, err);
            code = CLI_FAILED;
        }
        if (read_kafka(cfg, p, &l) != 0)
            code = CLI_FAILED;
    }
    if (l.n > 1)
        qsort(l.v, l.n, sizeof(*l.v), prow_cmp);
    if (json ? print_json(&l) != 0 : print_table(&l) != 0) {
        fprintf(stderr, "exactly offsets: out of memory\n");
        code = CLI_FAILED;
    }

cleanup:
    plist_free(&l);
    if (conn)
        PQfinish(conn);
    exactly_config_free(cfg);
    return code;
}

/* ---- reset --------------------------------------------------------------- */

typedef enum reset_mode {
    MODE_NONE = 0,
    MODE_EARLIEST,
    MODE_LATEST,
    MODE_OFFSET,
    MODE_TIME,
    MODE_SHIFT
} reset_mode;

/* One partition's reset. */
typedef struct plan {
    int32_t partition;
    int from_set;
    int64_t from;
    int64_t low, lso;
    int64_t want;       /* before clamping */
    int64_t to;
    char note[96];
} plan;

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

/* Clamps p->want into [low, lso] and says so. */
static void clamp(plan *p)
{
    p->to = p->want;
    if (p->want < p->low) {
        p->to = p->low;
        snprintf(p->note, sizeof(p->note),
                 "clamped: %" PRId64 " is below the low watermark", p->want);
    } else if (p->want > p->lso) {
        p->to = p->lso;
        snprintf(p->note, sizeof(p->note),
                 "clamped: %" PRId64 " is past the end (LSO)", p->want);
    }
}

static int print_plan(const char *topic, const plan *v, size_t n)
{
    static const char *const headers[] = {"TOPIC", "PARTITION", "FROM", "",
                                          "TO",    "LOW",       "LSO", "NOTE"};
    admin_table *t = admin_table_new(8, headers, "lrrlrrrl");
    size_t i;
    int rc;

    if (!t)
        return -1;
    for (i = 0; i < n; i++) {
        char part[16], from[24], to[24], low[24], lso[24];
        const char *cells[8];

        snprintf(part, sizeof(part), "%d", (int)v[i].partition);
        fmt_i64(from, sizeof(from), v[i].from_set, v[i].from);
        snprintf(to, sizeof(to), "%" PRId64, v[i].to);
        snprintf(low, sizeof(low), "%" PRId64, v[i].low);
        snprintf(lso, sizeof(lso), "%" PRId64, v[i].lso);
        cells[0] = topic;
        cells[1] = part;
        cells[2] = from;
        cells[3] = "->";
        cells[4] = to;
        cells[5] = low;
        cells[6] = lso;
        cells[7] = v[i].note[0] ? v[i].note
                   : v[i].from_set && v[i].from == v[i].to ? "unchanged"
                                                           : "";
        admin_table_add(t, cells);
    }
    rc = admin_table_print(t, stdout);
    admin_table_free(t);
    return rc;
}

/* Reads the stored offsets of the plan's partitions into from/from_set
 * (FOR UPDATE inside the reset's transaction). */
static exactly_err read_from(PGconn *conn, const char *schema_q,
                             const char *pipeline, const char *topic,
                             plan *v, size_t n, int lock, char *err,
                             size_t errsz)
{
    strbuf sql = {0}, parts = {0};
    const char *params[3];
    PGresult *res = NULL;
    exactly_err rc;
    size_t i;
    int r;

    strbuf_printf(&sql,
                  "SELECT partition, next_offset FROM %s.offsets"
                  " WHERE pipeline = $1 AND topic = $2"
                  " AND partition = ANY($3::int[])%s",
                  schema_q, lock ? " FOR UPDATE" : "");
    strbuf_array_begin(&parts);
    for (i = 0; i < n; i++) {
        strbuf_array_elem_int(&parts, v[i].partition);
        v[i].from_set = 0;
    }
    strbuf_array_end(&parts);
    if (sql.oom || parts.oom) {
        snprintf(err, errsz, "out of memory");
        rc = EXACTLY_ENOMEM;
        goto cleanup;
    }
    params[0] = pipeline;
    params[1] = topic;
    params[2] = strbuf_str(&parts);
    rc = exactly_pg_exec(conn, strbuf_str(&sql), 3, params, &res, err, errsz);
    if (rc != EXACTLY_OK)
        goto cleanup;
    for (r = 0; r < PQntuples(res); r++) {
        int32_t part = (int32_t)atoi(PQgetvalue(res, r, 0));
        for (i = 0; i < n; i++) {
            if (v[i].partition != part || PQgetisnull(res, r, 1))
                continue;
            v[i].from_set = 1;
            v[i].from = strtoll(PQgetvalue(res, r, 1), NULL, 10);
        }
    }

cleanup:
    PQclear(res);
    strbuf_free(&sql);
    strbuf_free(&parts);
    return rc;
}

/* Sets want/to of every partition for a mode that does not depend on the
 * stored offset, or from it for --shift-by. Returns -1 (err set) when a
 * partition cannot be shifted. */
static int compute(plan *v, size_t n, reset_mode mode, int64_t arg,
                   const int64_t *by_time, char *err, size_t errsz)
{
    size_t i;

    for (i = 0; i < n; i++) {
        plan *p = &v[i];
        p->note[0] = '\0';
        switch (mode) {
        case MODE_EARLIEST: p->want = p->low; break;
        case MODE_LATEST: p->want = p->lso; break;
        case MODE_OFFSET: p->want = arg; break;
        case MODE_TIME:
            p->want = by_time[i] >= 0 ? by_time[i] : p->lso;
            break;
        case MODE_SHIFT:
            if (!p->from_set) {
                snprintf(err, errsz,
                         "partition %d has no stored offset to shift; use "
                         "--to-offset, --to-earliest, --to-latest or "
                         "--to-time",
                         (int)p->partition);
                return -1;
            }
            p->want = p->from + arg;
            break;
        case MODE_NONE: break;
        }
        clamp(p);
        if (mode == MODE_TIME && by_time[i] < 0 && !p->note[0])
            snprintf(p->note, sizeof(p->note),
                     "no message at or after the time: the end");
    }
    return 0;
}

/* The transaction: lock, recompute (a shift follows the locked value),
 * upsert, audit. The plan is updated to what was written. */
static exactly_err apply_reset(PGconn *conn, const exactly_config *cfg,
                               const char *pipeline, const char *topic,
                               plan *v, size_t n, reset_mode mode, int64_t arg,
                               const int64_t *by_time, const char *mode_text,
                               const char *reason, char *err, size_t errsz)
{
    char *q = admin_schema_q(conn, cfg);
    strbuf upsert = {0}, audit = {0}, parts = {0}, froms = {0}, tos = {0};
    char who[512], ignore[256];
    const char *params[8];
    exactly_err rc = EXACTLY_ENOMEM;
    size_t i;

    if (!q) {
        snprintf(err, errsz, "out of memory");
        return EXACTLY_ENOMEM;
    }
    admin_requested_by(who, sizeof(who));
    /* The epoch is left alone on purpose: the worker that owns the row
     * keeps its epoch, so its next batch fails only on the moved offset
     * and it follows the database (cycle.c, reread). A new epoch would
     * read to it as a takeover, and it would leave the partition idle
     * until the next rebalance. */
    strbuf_printf(&upsert,
                  "INSERT INTO %1$s.offsets AS o (pipeline, topic, partition,"
                  " next_offset) SELECT $1, $2, p, t"
                  " FROM unnest($3::int[], $4::bigint[]) AS u(p, t)"
                  " ON CONFLICT (pipeline, topic, partition) DO UPDATE"
                  " SET next_offset = EXCLUDED.next_offset, attempts = 0,"
                  " attempt_start = NULL, isolate_until = NULL,"
                  " updated_at = now()",
                  q);
    strbuf_printf(&audit,
                  "INSERT INTO %1$s.offset_resets (pipeline, topic, partition,"
                  " from_offset, to_offset, mode, reason, requested_by)"
                  " SELECT $1, $2, p, f, t, $6, $7, $8"
                  " FROM unnest($3::int[], $4::bigint[], $5::bigint[])"
                  " AS u(p, f, t)",
                  q);
    if (upsert.oom || audit.oom)
        goto cleanup;

    rc = exactly_pg_exec(conn, "BEGIN", 0, NULL, NULL, err, errsz);
    if (rc != EXACTLY_OK)
        goto cleanup;
    rc = read_from(conn, q, pipeline, topic, v, n, 1, err, errsz);
    if (rc != EXACTLY_OK)
        goto rollback;
    if (compute(v, n, mode, arg, by_time, err, errsz) != 0) {
        rc = EXACTLY_EINVAL;
        goto rollback;
    }
    strbuf_array_begin(&parts);
    strbuf_array_begin(&froms);
    strbuf_array_begin(&tos);
    for (i = 0; i < n; i++) {
        strbuf_array_elem_int(&parts, v[i].partition);
        if (v[i].from_set)
            strbuf_array_elem_int(&froms, v[i].from);
        else
            strbuf_array_elem_str(&froms, NULL);
        strbuf_array_elem_int(&tos, v[i].to);
    }
    strbuf_array_end(&parts);
    strbuf_array_end(&froms);
    strbuf_array_end(&tos);
    if (parts.oom || froms.oom || tos.oom) {
        rc = EXACTLY_ENOMEM;
        snprintf(err, errsz, "out of memory");
        goto rollback;
    }
    params[0] = pipeline;
    params[1] = topic;
    params[2] = strbuf_str(&parts);
    params[3] = strbuf_str(&tos);
    rc = exactly_pg_exec(conn, strbuf_str(&upsert), 4, params, NULL, err, errsz);
    if (rc != EXACTLY_OK)
        goto rollback;
    params[3] = strbuf_str(&froms);
    params[4] = strbuf_str(&tos);
    params[5] = mode_text;
    params[6] = reason;
    params[7] = who;
    rc = exactly_pg_exec(conn, strbuf_str(&audit), 8, params, NULL, err, errsz);
    if (rc != EXACTLY_OK)
        goto rollback;
    rc = exactly_pg_exec(conn, "COMMIT", 0, NULL, NULL, err, errsz);
    goto cleanup;

rollback:
    (void)exactly_pg_exec(conn, "ROLLBACK", 0, NULL, NULL, ignore,
                          sizeof(ignore));
cleanup:
    if (rc == EXACTLY_ENOMEM && !err[0])
        snprintf(err, errsz, "out of memory");
    strbuf_free(&upsert);
    strbuf_free(&audit);
    strbuf_free(&parts);
    strbuf_free(&froms);
    strbuf_free(&tos);
    PQfreemem(q);
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

static int set_mode(reset_mode *mode, reset_mode m)
{
    if (*mode != MODE_NONE && *mode != m) {
        fprintf(stderr, "exactly offsets reset: choose one of --to-earliest, "
                        "--to-latest, --to-offset, --to-time, --shift-by\n");
        return -1;
    }
    *mode = m;
    return 0;
}

static int cmd_reset(int argc, char **argv)
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
    const char *path = NULL, *pname = NULL, *topic = NULL, *reason = NULL;
    const char *time_text = NULL;
    reset_mode mode = MODE_NONE;
    int64_t arg = 0, partition = -1;
    int dry_run = 0, force = 0, c, code = CLI_FAILED;
    exactly_config *cfg = NULL;
    const cfg_pipeline *p;
    PGconn *conn = NULL;
    rd_kafka_t *rk = NULL;
    char err[2048], kerr[1024], reset[16], canon[64], mode_text[128];
    char state[64];
    plan *v = NULL;
    int64_t *by_time = NULL;
    int64_t time_ms = 0;
    size_t n = 0, i;
    int n_parts, members = 0, kres;
    char **owners = NULL;
    size_t n_owners = 0;
    int active, unknown;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:p:t:P:nfr:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'p': pname = optarg; break;
        case 't': topic = optarg; break;
        case 'P':
            if (cli_parse_int64("offsets reset", "--partition", optarg, 0,
                                INT32_MAX, &partition) != 0)
                return CLI_REFUSED;
            break;
        case 'E':
        case 'L':
            if (set_mode(&mode, c == 'E' ? MODE_EARLIEST : MODE_LATEST) != 0)
                return CLI_REFUSED;
            break;
        case 'O':
        case 'S':
            if (set_mode(&mode, c == 'O' ? MODE_OFFSET : MODE_SHIFT) != 0)
                return CLI_REFUSED;
            if (cli_parse_int64("offsets reset",
                                c == 'O' ? "--to-offset" : "--shift-by", optarg,
                                c == 'O' ? 0 : INT64_MIN / 2, INT64_MAX / 2,
                                &arg) != 0)
                return CLI_REFUSED;
            break;
        case 'T':
            if (set_mode(&mode, MODE_TIME) != 0)
                return CLI_REFUSED;
            time_text = optarg;
            break;
        case 'n': dry_run = 1; break;
        case 'f': force = 1; break;
        case 'r': reason = optarg; break;
        case 'h': reset_usage(stdout); return CLI_OK;
        default: reset_usage(stderr); return CLI_REFUSED;
        }
    }
    if (optind < argc) {
        cli_line(stderr, "exactly offsets reset: unexpected argument '%s'",
                 argv[optind]);
        return CLI_REFUSED;
    }
    if (!path || !pname || !topic || mode == MODE_NONE) {
        cli_line(stderr, "exactly offsets reset: %s (see --help)",
                 !path    ? "missing -c FILE"
                 : !pname ? "missing --pipeline NAME"
                 : !topic ? "missing --topic T"
                 : "missing a mode: --to-earliest, --to-latest, "
                 "--to-offset K, --to-time TIME or --shift-by N");
        return CLI_REFUSED;
    }
    cfg = cli_load_config(path);
    if (!cfg)
        return CLI_REFUSED;
    p = cli_pick_pipeline(cfg, pname);
    if (!p) {
        code = CLI_REFUSED;
        goto cleanup;
    }
    if (!has_topic(p, topic)) {
        fprintf(stderr,
                "exactly offsets reset: pipeline '%s' does not read topic "
                "'%s' (its topics: ",
                p->name, topic);
        for (i = 0; i < p->n_topics; i++)
            fprintf(stderr, "%s%s", i ? ", " : "", p->topics[i]);
        fprintf(stderr, ")\n");
        code = CLI_REFUSED;
        goto cleanup;
    }

    conn = exactly_pg_connect(cfg, "exactly-offsets-reset", err, sizeof(err));
    if (!conn || admin_check_schema(conn, cfg, err, sizeof(err)) != EXACTLY_OK) {
        cli_line(stderr, "exactly offsets reset: %s", err);
        goto cleanup;
    }
    if (mode == MODE_TIME) {
        exactly_err rc = admin_parse_time(conn, time_text, &time_ms, canon,
                                          sizeof(canon), err, sizeof(err));
        if (rc != EXACTLY_OK) {
            cli_line(stderr, "exactly offsets reset: --to-time: %s", err);
            code = rc == EXACTLY_EINVAL ? CLI_REFUSED : CLI_FAILED;
            goto cleanup;
        }
    }
    switch (mode) {
    case MODE_EARLIEST: snprintf(mode_text, sizeof(mode_text), "to-earliest"); break;
    case MODE_LATEST: snprintf(mode_text, sizeof(mode_text), "to-latest"); break;
    case MODE_OFFSET:
        snprintf(mode_text, sizeof(mode_text), "to-offset %" PRId64, arg);
        break;
    case MODE_TIME: snprintf(mode_text, sizeof(mode_text), "to-time %s", canon); break;
    case MODE_SHIFT:
        snprintf(mode_text, sizeof(mode_text), "shift-by %+" PRId64, arg);
        break;
    case MODE_NONE: break;
    }

    rk = admin_kafka_new(cfg, p, "offsets-reset", reset, err, sizeof(err));
    if (!rk) {
        cli_line(stderr, "exactly offsets reset: %s", err);
        code = CLI_REFUSED;
        goto cleanup;
    }
    n_parts = admin_partition_count(rk, topic, KAFKA_TIMEOUT_MS, err, sizeof(err));
    if (n_parts < 0) {
        cli_line(stderr, "exactly offsets reset: %s", err);
        goto cleanup;
    }
    if (partition >= n_parts) {
        fprintf(stderr,
                "exactly offsets reset: topic %s has %d partition(s); there "
                "is no partition %" PRId64 "\n",
                topic, n_parts, partition);
        code = CLI_REFUSED;
        goto cleanup;
    }
    n = partition >= 0 ? 1 : (size_t)n_parts;
    v = calloc(n + 1, sizeof(*v));
    by_time = calloc(n + 1, sizeof(*by_time));
    if (!v || !by_time) {
        fprintf(stderr, "exactly offsets reset: out of memory\n");
        goto cleanup;
    }
    for (i = 0; i < n; i++) {
        rd_kafka_resp_err_t e;
        v[i].partition = partition >= 0 ? (int32_t)partition : (int32_t)i;
        e = rd_kafka_query_watermark_offsets(rk, topic, v[i].partition,
                                             &v[i].low, &v[i].lso,
                                             KAFKA_TIMEOUT_MS);
        if (e) {
            cli_line(stderr, "exactly offsets reset: watermarks of %s [%d]: %s",
                     topic, (int)v[i].partition, rd_kafka_err2str(e));
            goto cleanup;
        }
    }
    if (mode == MODE_TIME) {
        rd_kafka_topic_partition_list_t *tl =
            rd_kafka_topic_partition_list_new((int)n);
        rd_kafka_resp_err_t e;
        for (i = 0; i < n; i++)
            rd_kafka_topic_partition_list_add(tl, topic, v[i].partition)
                ->offset = time_ms;
        e = rd_kafka_offsets_for_times(rk, tl, KAFKA_TIMEOUT_MS);
        for (i = 0; !e && i < n; i++) {
            if (tl->elems[i].err) {
                e = tl->elems[i].err;
                break;
            }
            /* -1 (OFFSET_END): no message that recent. */
            by_time[i] = tl->elems[i].offset;
        }
        rd_kafka_topic_partition_list_destroy(tl);
        if (e) {
            cli_line(stderr, "exactly offsets reset: offsets for time %s: %s", canon,
                     rd_kafka_err2str(e));
            goto cleanup;
        }
    }

    if (dry_run) {
        char *q = admin_schema_q(conn, cfg);
        exactly_err rc = q ? read_from(conn, q, p->name, topic, v, n, 0, err,
                                       sizeof(err))
                           : EXACTLY_ENOMEM;
        PQfreemem(q);
        if (rc != EXACTLY_OK) {
            cli_line(stderr, "exactly offsets reset: %s",
                     rc == EXACTLY_ENOMEM ? "out of memory" : err);
            goto cleanup;
        }
        if (compute(v, n, mode, arg, by_time, err, sizeof(err)) != 0) {
            cli_line(stderr, "exactly offsets reset: %s", err);
            code = CLI_REFUSED;
            goto cleanup;
        }
        print_plan(topic, v, n);
        cli_line(stdout, "dry run (%s): nothing changed", mode_text);
        code = CLI_OK;
        goto cleanup;
    }

    /* The guard. The broker's member count when it can give one; the
     * workers' PostgreSQL sessions always (they also catch a worker that
     * left the group but still runs). */
    kres = admin_group_members(rk, p->group, KAFKA_TIMEOUT_MS, &members, state,
                               sizeof(state), kerr, sizeof(kerr));
    unknown = kres < 0;
    if (admin_live_owners(conn, cfg, p->name, NULL, &owners, &n_owners, err,
                          sizeof(err)) != EXACTLY_OK) {
        cli_line(stderr, "exactly offsets reset: %s", err);
        goto cleanup;
    }
    if (kres != 0 || (size_t)members < n_owners)
        members = (int)n_owners;
    active = members > 0;
    if ((active || unknown) && !force) {
        if (!active)
            cli_line(stderr, "exactly offsets reset: refusing: %s; nothing changed "
                     "(pass --force to reset anyway)",
                     kerr);
        else {
            /* The owners are application names from the server: any
             * client sets its own, so they are printed escaped. */
            strbuf who = {0};
            for (i = 0; i < n_owners; i++)
                strbuf_printf(&who, "%s %s", i ? "" : " (workers holding its "
                                                      "partitions:",
                              owners[i]);
            if (n_owners > 0)
                strbuf_puts(&who, ")");
            cli_line(stderr,
                     "exactly offsets reset: refusing: consumer group '%s' has "
                     "%d active member(s)%s; stop the pipeline's workers "
                     "first, or pass --force; nothing changed",
                     p->group, members,
                     who.oom ? " (workers: out of memory)" : strbuf_str(&who));
            strbuf_free(&who);
        }
        goto cleanup;
    }
    {
        exactly_err rc = apply_reset(conn, cfg, p->name, topic, v, n, mode, arg,
                                     by_time, mode_text, reason, err,
                                     sizeof(err));
        if (rc != EXACTLY_OK) {
            cli_line(stderr, "exactly offsets reset: %s; nothing changed", err);
            code = rc == EXACTLY_EINVAL ? CLI_REFUSED : CLI_FAILED;
            goto cleanup;
        }
    }
    print_plan(topic, v, n);
    cli_line(stdout, "reset %zu partition(s) of pipeline %s (%s); audit rows in "
             "%s.offset_resets",
             n, p->name, mode_text, cfg->postgres.schema);
    code = CLI_OK;
    if (active || unknown) {
        cli_line(stdout, "consumer group '%s' %s (--force): not committed to Kafka; "
                 "running workers move to the new offsets at their next batch",
                 p->group, unknown ? "state unknown" : "is active");
    } else {
        rd_kafka_topic_partition_list_t *cl =
            rd_kafka_topic_partition_list_new((int)n);
        rd_kafka_resp_err_t e;
        for (i = 0; i < n; i++)
            rd_kafka_topic_partition_list_add(cl, topic, v[i].partition)
                ->offset = v[i].to;
        /* Monitoring only: the database already holds the new position. */
        e = rd_kafka_commit(rk, cl, 0);
        for (i = 0; !e && i < n; i++)
            e = cl->elems[i].err;
        rd_kafka_topic_partition_list_destroy(cl);
        if (e)
            cli_line(stdout, "note: could not commit the new offsets to group '%s' in "
                     "Kafka (%s); lag tools show the old position until a "
                     "worker commits",
                     p->group, rd_kafka_err2str(e));
        else
            cli_line(stdout, "committed to consumer group '%s' in Kafka", p->group);
    }

cleanup:
    admin_free_strings(owners, n_owners);
    free(v);
    free(by_time);
    admin_kafka_free(rk);
    if (conn)
        PQfinish(conn);
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
