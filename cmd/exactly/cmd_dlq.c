/*
 * cmd_dlq.c - `exactly dlq`: the dead-letter table of a pipeline, for
 * operators: list, show one in full, replay (apply again through the
 * pipeline's lookup and handler, in one transaction that also deletes
 * what it applied) and discard.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "cli.h"
#include "escape.h"
#include "log.h"
#include "lookup.h"
#include "pg_conn.h"
#include "plugin.h"
#include "strbuf.h"
#include "txn.h"

#define LIST_DEFAULT_LIMIT 100
#define SHOW_DEFAULT_LIMIT 10
#define REASON_WIDTH 60

typedef enum dlq_action { DLQ_LIST, DLQ_SHOW, DLQ_REPLAY, DLQ_DISCARD } dlq_action;

/* Which dead letters a command works on. */
typedef struct selection {
    /* The name they are kept under: the pipeline's, or a reprocess run's
     * "PIPELINE:reprocess:RUN" (run > 0); label says which in messages. */
    int64_t run;
    char dl_pipeline[200];
    char label[240];
    const char *topic;
    int64_t partition; /* -1: any */
    strbuf ids;        /* array literal; n_elems 0: any */
    const char *since; /* last_failed_at >= since; NULL: any */
    int64_t limit;     /* -1: none */
    int all;
} selection;

static int has_filter(const selection *s)
{
    return s->topic || s->partition >= 0 || s->ids.n_elems > 0 || s->since;
}

/* The WHERE clause shared by every action: $1 pipeline, $2 topic, $3
 * partition, $4 ids, $5 since (NULL: no condition). */
#define WHERE_SELECTION                                                        \
    " WHERE pipeline = $1 AND ($2::text IS NULL OR topic = $2)"                \
    " AND ($3::int IS NULL OR partition = $3)"                                 \
    " AND ($4::bigint[] IS NULL OR id = ANY($4::bigint[]))"                    \
    " AND ($5::timestamptz IS NULL OR last_failed_at >= $5::timestamptz)"

typedef struct sel_params {
    const char *v[6];
    char part[24];
    char limit[24];
} sel_params;

static void fill_params(sel_params *sp, const char *pipeline,
                        const selection *s)
{
    snprintf(sp->part, sizeof(sp->part), "%" PRId64, s->partition);
    snprintf(sp->limit, sizeof(sp->limit), "%" PRId64, s->limit);
    sp->v[0] = pipeline;
    sp->v[1] = s->topic;
    sp->v[2] = s->partition >= 0 ? sp->part : NULL;
    sp->v[3] = s->ids.n_elems > 0 ? strbuf_str(&s->ids) : NULL;
    sp->v[4] = s->since;
    sp->v[5] = s->limit >= 0 ? sp->limit : NULL; /* LIMIT NULL: all */
}

/* Runs a statement built from fmt with the schema as %1$s. */
static exactly_err run_sql(PGconn *conn, const exactly_config *cfg,
                           const char *fmt, int n_params,
                           const char *const *params, PGresult **res,
                           char *err, size_t errsz)
{
    char *q = admin_schema_q(conn, cfg);
    strbuf sql = {0};
    exactly_err rc;

    if (!q) {
        snprintf(err, errsz, "out of memory");
        return EXACTLY_ENOMEM;
    }
    strbuf_printf(&sql, fmt, q);
    PQfreemem(q);
    if (sql.oom) {
        strbuf_free(&sql);
        snprintf(err, errsz, "out of memory");
        return EXACTLY_ENOMEM;
    }
    rc = exactly_pg_exec(conn, strbuf_str(&sql), n_params, params, res, err,
                         errsz);
    strbuf_free(&sql);
    return rc;
}

/* s for a table cell: control bytes shown escaped (exactly_printable),
 * cut to width (on a UTF-8 character boundary) with "..." when longer.
 * out holds width + 1 bytes. */
static void one_line(const char *s, char *out, size_t width)
{
    char *shown = exactly_printable(s);
    const char *src = shown ? shown : "(out of memory)";
    size_t n = strlen(src), cut;

    if (n <= width) {
        memcpy(out, src, n + 1);
    } else {
        cut = width - 3;
        while (cut > 0 && ((unsigned char)src[cut] & 0xC0) == 0x80)
            cut--;
        memcpy(out, src, cut);
        memcpy(out + cut, "...", 4);
    }
    free(shown);
}

/* ---- list ---------------------------------------------------------------- */

/* Points at the dead letters of the pipeline's reprocess runs, which are
 * kept under names of their own. Best effort: a failure prints nothing. */
static void list_runs(PGconn *conn, const exactly_config *cfg,
                      const cfg_pipeline *p)
{
    char prefix[200], err[1024];
    const char *params[1] = {prefix};
    PGresult *res = NULL;
    int r;

    snprintf(prefix, sizeof(prefix), "%s:reprocess:", p->name);
    if (run_sql(conn, cfg,
                "SELECT substr(pipeline, length($1) + 1), count(*)"
                " FROM %1$s.dead_letters WHERE left(pipeline, length($1)) = $1"
                " GROUP BY pipeline ORDER BY min(id)",
                1, params, &res, err, sizeof(err)) != EXACTLY_OK)
        return;
    for (r = 0; r < PQntuples(res); r++)
        cli_line(stdout, "reprocess run %s has %s dead letter(s): exactly dlq list -c "
                 "%s --pipeline %s --run %s",
                 PQgetvalue(res, r, 0), PQgetvalue(res, r, 1), cfg->path,
                 p->name, PQgetvalue(res, r, 0));
    PQclear(res);
}

static int do_list(PGconn *conn, const exactly_config *cfg,
                   const cfg_pipeline *p, const selection *s)
{
    static const char *const headers[] = {"ID",        "TOPIC",    "PARTITION",
                                          "OFFSET",    "ENTITY_ID", "ATTEMPTS",
                                          "LAST_FAILED", "REASON"};
    sel_params sp;
    PGresult *res = NULL, *cnt = NULL;
    admin_table *t = NULL;
    char err[2048];
    int code = CLI_FAILED, r;
    long long total;

    fill_params(&sp, s->dl_pipeline, s);
    if (run_sql(conn, cfg,
                "SELECT id, topic, partition, \"offset\", entity_id, attempts,"
                " to_char(last_failed_at AT TIME ZONE 'UTC',"
                " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), reason"
                " FROM %1$s.dead_letters" WHERE_SELECTION
                " ORDER BY id LIMIT $6",
                6, sp.v, &res, err, sizeof(err)) != EXACTLY_OK ||
        run_sql(conn, cfg,
                "SELECT count(*) FROM %1$s.dead_letters" WHERE_SELECTION, 5,
                sp.v, &cnt, err, sizeof(err)) != EXACTLY_OK) {
        cli_line(stderr, "exactly dlq list: %s", err);
        goto cleanup;
    }
    total = strtoll(PQgetvalue(cnt, 0, 0), NULL, 10);
    t = admin_table_new(8, headers, "rlrrlrll");
    if (!t)
        goto oom;
    for (r = 0; r < PQntuples(res); r++) {
        char reason[REASON_WIDTH + 8];
        const char *cells[8];
        int c;

        for (c = 0; c < 7; c++)
            cells[c] = PQgetisnull(res, r, c) ? NULL : PQgetvalue(res, r, c);
        one_line(PQgetvalue(res, r, 7), reason, REASON_WIDTH);
        cells[7] = reason;
        admin_table_add(t, cells);
    }
    if (admin_table_print(t, stdout) != 0)
        goto oom;
    if (total > PQntuples(res))
        cli_line(stdout, "%d of %lld dead letter(s) of %s shown (--limit N "
                 "for more)",
                 PQntuples(res), total, s->label);
    else
        cli_line(stdout, "%lld dead letter(s) of %s", total, s->label);
    if (s->run == 0)
        list_runs(conn, cfg, p);
    code = CLI_OK;
    goto cleanup;
oom:
    fprintf(stderr, "exactly dlq list: out of memory\n");
cleanup:
    admin_table_free(t);
    PQclear(res);
    PQclear(cnt);
    return code;
}

/* ---- show ---------------------------------------------------------------- */

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : 0;
}

/* Whether the len bytes are text: well-formed UTF-8 without NUL (its
 * control characters are shown escaped). */
static int is_text(const unsigned char *b, size_t len)
{
    size_t i = 0, n;

    while (i < len) {
        n = b[i] ? exactly_utf8_len(b + i, len - i) : 0;
        if (n == 0)
            return 0;
        i += n;
    }
    return 1;
}

static int do_show(PGconn *conn, const exactly_config *cfg,
                   const selection *s)
{
    sel_params sp;
    PGresult *res = NULL, *cnt = NULL;
    char err[2048];
    int r;
    long long total;

    fill_params(&sp, s->dl_pipeline, s);
    if (run_sql(conn, cfg,
                "SELECT id, pipeline, topic, partition, \"offset\", entity_id,"
                " encode(message_key, 'hex'), reason, sqlstate, attempts,"
                " to_char(first_failed_at AT TIME ZONE 'UTC',"
                " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
                " to_char(last_failed_at AT TIME ZONE 'UTC',"
                " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), trace_id"
                " FROM %1$s.dead_letters" WHERE_SELECTION
                " ORDER BY id LIMIT $6",
                6, sp.v, &res, err, sizeof(err)) != EXACTLY_OK ||
        run_sql(conn, cfg,
                "SELECT count(*) FROM %1$s.dead_letters" WHERE_SELECTION, 5,
                sp.v, &cnt, err, sizeof(err)) != EXACTLY_OK) {
        cli_line(stderr, "exactly dlq show: %s", err);
        PQclear(res);
        PQclear(cnt);
        return CLI_FAILED;
    }
    total = strtoll(PQgetvalue(cnt, 0, 0), NULL, 10);
    if (PQntuples(res) == 0) {
        cli_line(stderr, "exactly dlq show: no dead letter of %s matches",
                 s->label);
        PQclear(res);
        PQclear(cnt);
        return CLI_FAILED;
    }
    for (r = 0; r < PQntuples(res); r++) {
        const char *hex = PQgetvalue(res, r, 6);
        size_t len = strlen(hex) / 2, i;
        unsigned char *key = malloc(len + 1);

        if (r > 0)
            printf("\n");
        cli_line(stdout, "id:              %s", PQgetvalue(res, r, 0));
        cli_line(stdout, "pipeline:        %s", PQgetvalue(res, r, 1));
        cli_line(stdout, "topic:           %s", PQgetvalue(res, r, 2));
        cli_line(stdout, "partition:       %s", PQgetvalue(res, r, 3));
        cli_line(stdout, "offset:          %s", PQgetvalue(res, r, 4));
        cli_line(stdout, "entity_id:       %s",
                 PQgetisnull(res, r, 5) ? "- (the message could not be decoded)"
                 : PQgetvalue(res, r, 5));
        if (PQgetisnull(res, r, 6)) {
            printf("key:             - (none)\n");
        } else {
            for (i = 0; key && i < len; i++)
                key[i] = (unsigned char)(hexval(hex[2 * i]) << 4 |
                                         hexval(hex[2 * i + 1]));
            if (key && is_text(key, len)) {
                key[len] = '\0';
                cli_line(stdout, "key (text):      %s", (const char *)key);
            } else {
                printf("key (text):      - (binary, %zu bytes)\n", len);
            }
            cli_line(stdout, "key (hex):       %s", hex);
        }
        cli_line(stdout, "reason:          %s", PQgetvalue(res, r, 7));
        cli_line(stdout, "sqlstate:        %s",
                 PQgetisnull(res, r, 8) ? "-" : PQgetvalue(res, r, 8));
        cli_line(stdout, "attempts:        %s", PQgetvalue(res, r, 9));
        cli_line(stdout, "first_failed_at: %s", PQgetvalue(res, r, 10));
        cli_line(stdout, "last_failed_at:  %s", PQgetvalue(res, r, 11));
        if (!PQgetisnull(res, r, 12))
            cli_line(stdout, "trace_id:        %s", PQgetvalue(res, r, 12));
        free(key);
    }
    if (total > PQntuples(res))
        printf("\n%d of %lld matching dead letter(s) shown (--limit N for "
               "more)\n",
               PQntuples(res), total);
    PQclear(res);
    PQclear(cnt);
    return CLI_OK;
}

/* ---- discard ------------------------------------------------------------- */

static int do_discard(PGconn *conn, const exactly_config *cfg,
                      const selection *s)
{
    sel_params sp;
    PGresult *res = NULL;
    char err[2048];

    fill_params(&sp, s->dl_pipeline, s);
    if (run_sql(conn, cfg,
                "WITH gone AS (DELETE FROM %1$s.dead_letters WHERE id = ANY(ARRAY("
                " SELECT id FROM %1$s.dead_letters" WHERE_SELECTION
                " ORDER BY id LIMIT $6)) RETURNING 1)"
                " SELECT count(*) FROM gone",
                6, sp.v, &res, err, sizeof(err)) != EXACTLY_OK) {
        cli_line(stderr, "exactly dlq discard: %s", err);
        return CLI_FAILED;
    }
    cli_line(stdout, "discarded %s dead letter(s) of %s", PQgetvalue(res, 0, 0),
             s->label);
    PQclear(res);
    return CLI_OK;
}

/* ---- replay -------------------------------------------------------------- */

/* One dead letter on its way through the handler. */
typedef struct dl {
    char *id;         /* dead_letters.id */
    char *topic;
    int32_t partition;
    int64_t offset;
    unsigned char *key;
    size_t key_len;
    int has_key;
    char *entity;     /* NULL: undecodable */
    size_t record;    /* index in the replay's records */
    enum { DL_PENDING, DL_REPLAYED, DL_UNDECODABLE, DL_NO_ROW, DL_FAILED } outcome;
    char *reason;     /* DL_FAILED: the handler's */
} dl;

static int dl_cmp(const void *a, const void *b)
{
    const dl *x = a, *y = b;
    int c = strcmp(x->topic, y->topic);

    if (c == 0)
        c = (x->partition > y->partition) - (x->partition < y->partition);
    if (c == 0)
        c = (x->offset > y->offset) - (x->offset < y->offset);
    return c;
}

typedef struct replay {
    PGconn *conn;
    const exactly_config *cfg;
    const cfg_pipeline *p;
    const selection *s;
    exactly_plugin *pl;
    exactly_txn txn;
    dl *v;
    size_t n;
    /* The lookup's result. A handler that skips the lookup (the fused
     * upsert reads the source inside its own write) is not given the rows,
     * but they still say which entities have one: the fused statement
     * writes nothing for the others, which must stay dead letters. */
    PGresult *rows;
    int keycol;
    const char **colnames;
    size_t n_cols;
} replay;

static void replay_free(replay *r)
{
    size_t i;

    for (i = 0; i < r->n; i++) {
        free(r->v[i].id);
        free(r->v[i].topic);
        free(r->v[i].key);
        free(r->v[i].entity);
        free(r->v[i].reason);
    }
    free(r->v);
    free(r->colnames);
    PQclear(r->rows);
    exactly_txn_clear(&r->txn);
    exactly_plugin_free(r->pl);
}

/* Takes the selected dead letters (locked FOR UPDATE: a concurrent
 * replay or discard waits, then sees them gone). */
static exactly_err load(replay *r, const selection *s, char *err, size_t errsz)
{
    sel_params sp;
    PGresult *res = NULL;
    exactly_err rc;
    int i;

    fill_params(&sp, s->dl_pipeline, s);
    rc = run_sql(r->conn, r->cfg,
                 "SELECT id, topic, partition, \"offset\","
                 " encode(message_key, 'hex'), entity_id"
                 " FROM %1$s.dead_letters" WHERE_SELECTION
                 " ORDER BY id LIMIT $6 FOR UPDATE",
                 6, sp.v, &res, err, errsz);
    if (rc != EXACTLY_OK)
        return rc;
    r->v = calloc((size_t)PQntuples(res) + 1, sizeof(dl));
    if (!r->v)
        goto oom;
    for (i = 0; i < PQntuples(res); i++) {
        dl *d = &r->v[r->n++];
        const char *hex = PQgetvalue(res, i, 4);
        size_t k;

        d->id = strdup(PQgetvalue(res, i, 0));
        d->topic = strdup(PQgetvalue(res, i, 1));
        d->partition = (int32_t)atoi(PQgetvalue(res, i, 2));
        d->offset = strtoll(PQgetvalue(res, i, 3), NULL, 10);
        d->has_key = !PQgetisnull(res, i, 4);
        d->key_len = strlen(hex) / 2;
        d->key = malloc(d->key_len + 1);
        d->entity = PQgetisnull(res, i, 5) ? NULL : strdup(PQgetvalue(res, i, 5));
        if (!d->id || !d->topic || !d->key || (!PQgetisnull(res, i, 5) && !d->entity))
            goto oom;
        for (k = 0; k < d->key_len; k++)
            d->key[k] = (unsigned char)(hexval(hex[2 * k]) << 4 |
                                        hexval(hex[2 * k + 1]));
        d->outcome = d->entity ? DL_PENDING : DL_UNDECODABLE;
    }
    PQclear(res);
    if (r->n > 1)
        qsort(r->v, r->n, sizeof(dl), dl_cmp);
    return EXACTLY_OK;
oom:
    PQclear(res);
    snprintf(err, errsz, "out of memory");
    return EXACTLY_ENOMEM;
}

/* Runs the pipeline's lookup for every replayable entity at once; also
 * for a handler that skips it (see replay.rows). */
static exactly_err lookup(replay *r, char *err, size_t errsz)
{
    char *sql = NULL, *keycol = NULL;
    strbuf ids = {0};
    const char *params[1];
    exactly_err rc;
    size_t i;
    int c;

    rc = exactly_lookup_sql(r->conn, r->p, &sql, &keycol);
    if (rc != EXACTLY_OK) {
        snprintf(err, errsz, "out of memory");
        return rc;
    }
    strbuf_array_begin(&ids);
    for (i = 0; i < r->n; i++)
        if (r->v[i].outcome == DL_PENDING)
            strbuf_array_elem_str(&ids, r->v[i].entity);
    strbuf_array_end(&ids);
    params[0] = strbuf_str(&ids);
    rc = ids.oom ? EXACTLY_ENOMEM
                 : exactly_pg_exec(r->conn, sql, 1, params, &r->rows, err, errsz);
    if (rc == EXACTLY_OK) {
        r->keycol = exactly_lookup_column(r->rows, keycol);
        if (r->keycol < 0) {
            snprintf(err, errsz,
                     "the lookup result has no column '%s' (set "
                     "lookup.key_column)",
                     keycol);
            rc = EXACTLY_ECONFIG;
        }
    } else if (rc != EXACTLY_ENOMEM) {
        char why[1024];
        /* The server's message, cut to fit behind the prefix. */
        snprintf(why, sizeof(why), "%.1000s", err);
        snprintf(err, errsz, "lookup failed: %s", why);
    }
    if (rc == EXACTLY_OK) {
        r->n_cols = (size_t)PQnfields(r->rows);
        r->colnames = calloc(r->n_cols + 1, sizeof(char *));
        if (!r->colnames)
            rc = EXACTLY_ENOMEM;
        for (c = 0; r->colnames && c < PQnfields(r->rows); c++)
            r->colnames[c] = PQfname(r->rows, c);
    }
    if (rc == EXACTLY_ENOMEM)
        snprintf(err, errsz, "out of memory");
    strbuf_free(&ids);
    free(sql);
    free(keycol);
    return rc;
}

/*
 * Applies the dead letters v[from..to) (one topic and partition, ascending
 * offsets) through the handler, in batches of at most batch.max_messages
 * messages, in the open transaction. Records are built as the worker
 * builds them: one per entity, its messages coalesced, its looked-up rows
 * attached. EXACTLY_EHANDLER: the handler refused or its SQL failed (err).
 */
static exactly_err apply_partition(replay *r, size_t from, size_t to,
                                   char *err, size_t errsz)
{
    const cfg_pipeline *p = r->p;
    size_t n = to - from, n_recs = 0, i, j;
    exactly_record *recs = calloc(n + 1, sizeof(*recs));
    exactly_message *msgs = calloc(n + 1, sizeof(*msgs));
    size_t *msg_count = calloc(n + 1, sizeof(size_t));
    const char **values = NULL;
    size_t n_values = 0;
    exactly_err rc = EXACTLY_ENOMEM;
    /* Rows go to the handler only when it reads them (not fused). */
    int with_rows = r->rows != NULL && !r->pl->h->skips_lookup;
    size_t *found = calloc(n + 1, sizeof(size_t)); /* rows per record */

    if (!recs || !msgs || !msg_count || !found)
        goto cleanup;
    /* Records in first-seen order; dead letters of the same entity join
     * its record (quadratic in distinct IDs per partition: replays are
     * operator-sized). */
    for (i = from; i < to; i++) {
        dl *d = &r->v[i];
        if (d->outcome != DL_PENDING)
            continue;
        for (j = 0; j < n_recs; j++)
            if (strcmp(recs[j].id, d->entity) == 0)
                break;
        if (j == n_recs) {
            recs[j].id = d->entity;
            n_recs++;
        }
        d->record = j;
        msg_count[j]++;
    }
    if (r->rows) {
        int nt = PQntuples(r->rows);
        if (with_rows) {
            values = calloc((size_t)nt * r->n_cols + 1, sizeof(char *));
            if (!values)
                goto cleanup;
        }
        for (j = 0; j < n_recs; j++) {
            if (with_rows)
                recs[j].values = &values[n_values];
            for (int t = 0; t < nt; t++) {
                if (strcmp(PQgetvalue(r->rows, t, r->keycol), recs[j].id) != 0)
                    continue;
                found[j]++;
                if (!with_rows)
                    continue;
                for (size_t c = 0; c < r->n_cols; c++)
                    values[n_values++] = PQgetisnull(r->rows, t, (int)c)
                                             ? NULL
                                             : PQgetvalue(r->rows, t, (int)c);
                recs[j].n_rows++;
            }
        }
    }
    {
        size_t pos = 0;
        for (j = 0; j < n_recs; j++) {
            recs[j].messages = &msgs[pos];
            pos += msg_count[j];
        }
        for (i = from; i < to; i++) {
            dl *d = &r->v[i];
            exactly_message *m;
            if (d->outcome != DL_PENDING)
                continue;
            m = (exactly_message *)&recs[d->record].messages[recs[d->record].n_messages++];
            m->offset = d->offset;
            m->timestamp_ms = -1; /* not kept in the dead-letter table */
            m->key = d->has_key ? d->key : NULL;
            m->key_len = d->has_key ? d->key_len : 0;
        }
    }
    /* A record without rows goes to the handler only when the pipeline
     * says so; otherwise it stays a dead letter (the fused upsert would
     * write nothing for it, and deleting it would lose it). */
    if (r->rows && p->lookup.on_missing != CFG_MISSING_HANDLER) {
        size_t kept = 0;
        for (j = 0; j < n_recs; j++) {
            if (found[j] == 0) {
                for (i = from; i < to; i++)
                    if (r->v[i].outcome == DL_PENDING && r->v[i].record == j)
                        r->v[i].outcome = DL_NO_ROW;
                continue;
            }
            for (i = from; i < to; i++)
                if (r->v[i].outcome == DL_PENDING && r->v[i].record == j)
                    r->v[i].record = kept;
            recs[kept++] = recs[j];
        }
        n_recs = kept;
    }

    for (i = 0; i < n_recs;) {
        exactly_batch b;
        size_t k = i, msgs_in = 0;

        /* As many records as fit in batch.max_messages (at least one). */
        while (k < n_recs && (k == i || msgs_in + recs[k].n_messages <=
                                            (size_t)p->batch.max_messages))
            msgs_in += recs[k++].n_messages;
        memset(&b, 0, sizeof(b));
        b.pipeline = p->name;
        /* A run's dead letters are applied as part of that run. */
        b.reprocess_run = r->s->run;
        b.topic = r->v[from].topic;
        b.partition = r->v[from].partition;
        b.records = &recs[i];
        b.n_records = k - i;
        b.column_names = with_rows ? r->colnames : NULL;
        b.n_columns = with_rows ? r->n_cols : 0;
        b.id_type = exactly_id_type_name(p->id.type);

        rc = exactly_txn_start(&r->txn, r->conn,
                               exactly_pg_wait_bound_ms(r->cfg));
        if (rc != EXACTLY_OK) {
            snprintf(err, errsz, "%s", r->txn.errmsg);
            goto cleanup;
        }
        rc = r->pl->h->apply(r->pl->state, &r->txn, &b);
        if (rc != EXACTLY_OK) {
            snprintf(err, errsz, "handler '%s' failed on %s [%d]: %s",
                     r->pl->h->name, b.topic, (int)b.partition,
                     r->txn.handler_err_set ? r->txn.handler_err
                                            : "apply() returned an error");
            (void)exactly_txn_sync(&r->txn);
            rc = EXACTLY_EHANDLER;
            goto cleanup;
        }
        rc = exactly_txn_sync(&r->txn);
        if (rc != EXACTLY_OK) {
            snprintf(err, errsz, "handler '%s' failed on %s [%d]: %s%s%s%s",
                     r->pl->h->name, b.topic, (int)b.partition, r->txn.errmsg,
                     r->txn.sqlstate[0] ? " (SQLSTATE " : "", r->txn.sqlstate,
                     r->txn.sqlstate[0] ? ")" : "");
            rc = EXACTLY_EHANDLER;
            goto cleanup;
        }
        /* Records the handler failed on purpose wrote nothing: they stay
         * dead letters, with the new reason. */
        for (j = 0; j < r->txn.n_fails; j++) {
            size_t idx = i + r->txn.fails[j].index;
            size_t m;
            if (r->txn.fails[j].index >= b.n_records)
                continue;
            for (m = from; m < to; m++) {
                dl *d = &r->v[m];
                if (d->outcome == DL_PENDING && d->record == idx) {
                    d->outcome = DL_FAILED;
                    free(d->reason);
                    d->reason = strdup(r->txn.fails[j].reason);
                }
            }
        }
        exactly_txn_forget_fails(&r->txn);
        i = k;
    }
    for (i = from; i < to; i++)
        if (r->v[i].outcome == DL_PENDING)
            r->v[i].outcome = DL_REPLAYED;
    rc = EXACTLY_OK;

cleanup:
    if (rc == EXACTLY_ENOMEM)
        snprintf(err, errsz, "out of memory");
    exactly_txn_finish(&r->txn);
    free(recs);
    free(msgs);
    free(msg_count);
    free(found);
    free(values);
    return rc;
}

/* Deletes what was replayed and records the new failures. */
static exactly_err settle(replay *r, char *err, size_t errsz)
{
    strbuf done = {0}, failed = {0}, reasons = {0};
    const char *params[2];
    exactly_err rc = EXACTLY_OK;
    size_t i;

    strbuf_array_begin(&done);
    strbuf_array_begin(&failed);
    strbuf_array_begin(&reasons);
    for (i = 0; i < r->n; i++) {
        if (r->v[i].outcome == DL_REPLAYED)
            strbuf_array_elem_str(&done, r->v[i].id);
        else if (r->v[i].outcome == DL_FAILED) {
            strbuf_array_elem_str(&failed, r->v[i].id);
            strbuf_array_elem_str(&reasons, r->v[i].reason ? r->v[i].reason
                                                           : "failed by handler");
        }
    }
    strbuf_array_end(&done);
    strbuf_array_end(&failed);
    strbuf_array_end(&reasons);
    if (done.oom || failed.oom || reasons.oom) {
        snprintf(err, errsz, "out of memory");
        rc = EXACTLY_ENOMEM;
        goto cleanup;
    }
    if (done.n_elems > 0) {
        params[0] = strbuf_str(&done);
        rc = run_sql(r->conn, r->cfg,
                     "DELETE FROM %1$s.dead_letters WHERE id = ANY($1::bigint[])",
                     1, params, NULL, err, errsz);
    }
    if (rc == EXACTLY_OK && done.n_elems > 0 && r->s->run > 0) {
        /* One dead letter is one message; the run now applied it. */
        char run_s[24], n_s[24];
        snprintf(run_s, sizeof(run_s), "%" PRId64, r->s->run);
        snprintf(n_s, sizeof(n_s), "%d", done.n_elems);
        params[0] = run_s;
        params[1] = n_s;
        rc = run_sql(r->conn, r->cfg,
                     "UPDATE %1$s.reprocess_runs SET applied = applied +"
                     " $2::bigint, updated_at = now() WHERE id = $1::bigint",
                     2, params, NULL, err, errsz);
    }
    if (rc == EXACTLY_OK && failed.n_elems > 0) {
        params[0] = strbuf_str(&failed);
        params[1] = strbuf_str(&reasons);
        rc = run_sql(r->conn, r->cfg,
                     "UPDATE %1$s.dead_letters d SET attempts = d.attempts + 1,"
                     " last_failed_at = now(), reason = u.r, sqlstate = NULL"
                     " FROM unnest($1::bigint[], $2::text[]) AS u(i, r)"
                     " WHERE d.id = u.i",
                     2, params, NULL, err, errsz);
    }
cleanup:
    strbuf_free(&done);
    strbuf_free(&failed);
    strbuf_free(&reasons);
    return rc;
}

static void report(const replay *r)
{
    static const char *const headers[] = {"ID",     "TOPIC",     "PARTITION",
                                          "OFFSET", "ENTITY_ID", "LEFT BECAUSE"};
    size_t i, counts[5] = {0};
    admin_table *t = NULL;

    for (i = 0; i < r->n; i++)
        counts[r->v[i].outcome]++;
    if (counts[DL_UNDECODABLE] + counts[DL_NO_ROW] + counts[DL_FAILED] > 0)
        t = admin_table_new(6, headers, "rlrrll");
    for (i = 0; t && i < r->n; i++) {
        const dl *d = &r->v[i];
        char part[16], off[24], why[REASON_WIDTH + 8];
        const char *cells[6];

        if (d->outcome == DL_REPLAYED)
            continue;
        snprintf(part, sizeof(part), "%d", (int)d->partition);
        snprintf(off, sizeof(off), "%" PRId64, d->offset);
        if (d->outcome == DL_UNDECODABLE)
            snprintf(why, sizeof(why), "no entity ID: cannot be replayed");
        else if (d->outcome == DL_NO_ROW)
            snprintf(why, sizeof(why), "lookup found no row");
        else
            one_line(d->reason ? d->reason : "failed by handler", why,
                     REASON_WIDTH);
        cells[0] = d->id;
        cells[1] = d->topic;
        cells[2] = part;
        cells[3] = off;
        cells[4] = d->entity;
        cells[5] = why;
        admin_table_add(t, cells);
    }
    if (t) {
        (void)admin_table_print(t, stdout);
        printf("\n");
    }
    admin_table_free(t);
    cli_line(stdout, "replayed %zu dead letter(s) of %s through handler '%s'; "
             "%zu left in place (%zu without an entity ID, %zu without a "
             "looked-up row, %zu failed again)",
             counts[DL_REPLAYED], r->s->label, r->pl->h->name,
             counts[DL_UNDECODABLE] + counts[DL_NO_ROW] + counts[DL_FAILED],
             counts[DL_UNDECODABLE], counts[DL_NO_ROW], counts[DL_FAILED]);
}

static int do_replay(PGconn *conn, const exactly_config *cfg,
                     const cfg_pipeline *p, const selection *s)
{
    replay r;
    char err[2048], ignore[256];
    exactly_err rc;
    int code = CLI_FAILED;
    size_t i, start;

    memset(&r, 0, sizeof(r));
    r.conn = conn;
    r.cfg = cfg;
    r.p = p;
    r.s = s;
    rc = exactly_plugin_load(cfg, p, &r.pl, err, sizeof(err));
    if (rc != EXACTLY_OK) {
        cli_line(stderr, "exactly dlq replay: %s", err);
        code = CLI_REFUSED;
        goto cleanup;
    }
    rc = exactly_plugin_open(r.pl, conn, p, exactly_pg_wait_bound_ms(cfg),
                             err, sizeof(err));
    if (rc != EXACTLY_OK) {
        cli_line(stderr, "exactly dlq replay: %s", err);
        code = rc == EXACTLY_ERETRY ? CLI_FAILED : CLI_REFUSED;
        goto cleanup;
    }
    /* A handler that reads the source inside its own write must see the
     * snapshot the lookup saw: else a row deleted in between would be
     * counted as written and its dead letter deleted. */
    rc = exactly_pg_exec(conn,
                         r.pl->h->skips_lookup
                             ? "BEGIN ISOLATION LEVEL REPEATABLE READ"
                             : "BEGIN",
                         0, NULL, NULL, err, sizeof(err));
    if (rc == EXACTLY_OK)
        rc = load(&r, s, err, sizeof(err));
    if (rc == EXACTLY_OK)
        rc = lookup(&r, err, sizeof(err));
    /* Per partition, since a batch is one partition's. */
    for (start = 0, i = 1; rc == EXACTLY_OK && i <= r.n; i++) {
        if (i < r.n && r.v[i].partition == r.v[start].partition &&
            strcmp(r.v[i].topic, r.v[start].topic) == 0)
            continue;
        rc = apply_partition(&r, start, i, err, sizeof(err));
        start = i;
    }
    if (rc == EXACTLY_OK)
        rc = settle(&r, err, sizeof(err));
    if (rc == EXACTLY_OK)
        rc = exactly_pg_exec(conn, "COMMIT", 0, NULL, NULL, err, sizeof(err));
    if (rc != EXACTLY_OK) {
        (void)exactly_pg_exec(conn, "ROLLBACK", 0, NULL, NULL, ignore,
                              sizeof(ignore));
        cli_line(stderr, "exactly dlq replay: %s; rolled back: nothing was applied and "
                 "the dead letters are unchanged",
                 err);
        code = rc == EXACTLY_ECONFIG ? CLI_REFUSED : CLI_FAILED;
        goto cleanup;
    }
    report(&r);
    code = CLI_OK;

cleanup:
    replay_free(&r);
    return code;
}

/* ---- the command ---------------------------------------------------------- */

/* 1 when reprocess run `run` is the pipeline's, 0 when not, -1 on error. */
static int run_exists(PGconn *conn, const exactly_config *cfg,
                      const cfg_pipeline *p, int64_t run, char *err,
                      size_t errsz)
{
    char run_s[24];
    const char *params[2] = {run_s, p->name};
    PGresult *res = NULL;
    int n;

    snprintf(run_s, sizeof(run_s), "%" PRId64, run);
    if (run_sql(conn, cfg,
                "SELECT 1 FROM %1$s.reprocess_runs WHERE id = $1::bigint"
                " AND pipeline = $2",
                2, params, &res, err, errsz) != EXACTLY_OK)
        return -1;
    n = PQntuples(res);
    PQclear(res);
    return n > 0;
}

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
            "           unless --limit), the message key as text and in hex\n"
            "  replay   applies the selected dead letters again with the\n"
            "           pipeline's current configuration: per partition, one\n"
            "           record per entity ID, rows from the pipeline's lookup,\n"
            "           then the handler's apply(), in batches of at most\n"
            "           batch.max_messages messages. Everything runs in ONE\n"
            "           transaction that also deletes what was applied: if the\n"
            "           handler or its SQL fails, it is rolled back, nothing is\n"
            "           applied and the dead letters stay. Left in place (and\n"
            "           listed): dead letters without an entity ID (undecodable),\n"
            "           those whose lookup still finds no row (unless\n"
            "           lookup.on_missing is handler), and records the handler\n"
            "           fails again with fail_record (their attempts and reason\n"
            "           are updated). No dedup filter, no stored offset moves.\n"
            "           The lookup runs even for the built-in upsert in its\n"
            "           fused form (which reads the source inside its write),\n"
            "           in the same REPEATABLE READ snapshot as the write, so\n"
            "           a dead letter is deleted only when its row was written;\n"
            "           a concurrent change to a written row then rolls the\n"
            "           replay back (exit 1): run it again.\n"
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
            "  -i, --id ID           only dead letter ID (repeatable; a bare ID\n"
            "                        argument means the same)\n"
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
            "Exit codes: 0 done (replay: committed, even when some dead letters\n"
            "were left in place), 1 PostgreSQL failed, the schema is not\n"
            "migrated, show found nothing, or replay rolled back, 2 bad usage,\n"
            "configuration or plugin.\n",
            REASON_WIDTH, LIST_DEFAULT_LIMIT, SHOW_DEFAULT_LIMIT);
}

static int add_id(selection *s, const char *text)
{
    int64_t v;

    if (cli_parse_int64("dlq", "a dead letter ID", text, 1, INT64_MAX, &v) != 0)
        return -1;
    strbuf_array_elem_int(&s->ids, (long long)v);
    return 0;
}

int cmd_dlq(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"pipeline", required_argument, NULL, 'p'},
        {"topic", required_argument, NULL, 't'},
        {"partition", required_argument, NULL, 'P'},
        {"id", required_argument, NULL, 'i'},
        {"since", required_argument, NULL, 's'},
        {"limit", required_argument, NULL, 'l'},
        {"all", no_argument, NULL, 'a'},
        {"run", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const char *const names[] = {"list", "show", "replay", "discard"};
    const char *path = NULL, *pname = NULL;
    selection s;
    dlq_action action;
    exactly_config *cfg = NULL;
    const cfg_pipeline *p;
    PGconn *conn = NULL;
    char err[2048];
    int c, code = CLI_REFUSED;
    size_t a;

    /* Tables are the output; librdkafka's notices are not. */
    cli_set_log_level(EXACTLY_LOG_WARN);
    memset(&s, 0, sizeof(s));
    s.partition = -1;
    s.limit = -1;
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return CLI_OK;
    }
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "exactly dlq: missing action (list, show, replay or "
                        "discard)\n\n");
        usage(stderr);
        return CLI_REFUSED;
    }
    for (a = 0; a < 4; a++)
        if (strcmp(argv[1], names[a]) == 0)
            break;
    if (a == 4) {
        cli_line(stderr, "exactly dlq: unknown action '%s' (list, show, replay "
                 "or discard)",
                 argv[1]);
        return CLI_REFUSED;
    }
    action = (dlq_action)a;
    argc--;
    argv++;
    strbuf_array_begin(&s.ids);

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:p:t:P:i:s:l:ar:h", longopts, NULL)) != -1) {
        int64_t v;
        switch (c) {
        case 'c': path = optarg; break;
        case 'p': pname = optarg; break;
        case 't': s.topic = optarg; break;
        case 'P':
            if (cli_parse_int64("dlq", "--partition", optarg, 0, INT32_MAX,
                                &v) != 0)
                goto cleanup;
            s.partition = v;
            break;
        case 'i':
            if (add_id(&s, optarg) != 0)
                goto cleanup;
            break;
        case 's': s.since = optarg; break;
        case 'l':
            if (cli_parse_int64("dlq", "--limit", optarg, 1, INT64_MAX, &v) != 0)
                goto cleanup;
            s.limit = v;
            break;
        case 'a': s.all = 1; break;
        case 'r':
            if (cli_parse_int64("dlq", "--run", optarg, 1, INT64_MAX,
                                &s.run) != 0)
                goto cleanup;
            break;
        case 'h': usage(stdout); code = CLI_OK; goto cleanup;
        default: usage(stderr); goto cleanup;
        }
    }
    for (; optind < argc; optind++) {
        if (action == DLQ_LIST) {
            cli_line(stderr, "exactly dlq list: unexpected argument '%s' (use "
                     "--id or 'dlq show ID')",
                     argv[optind]);
            goto cleanup;
        }
        if (add_id(&s, argv[optind]) != 0)
            goto cleanup;
    }
    strbuf_array_end(&s.ids);
    if (s.ids.oom) {
        fprintf(stderr, "exactly dlq: out of memory\n");
        code = CLI_FAILED;
        goto cleanup;
    }
    if ((action == DLQ_REPLAY || action == DLQ_DISCARD) && !has_filter(&s) &&
        !s.all) {
        cli_line(stderr, "exactly dlq %s: select dead letters with ID, --id, --topic, "
                 "--partition or --since, or pass --all; nothing changed",
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
    if (!p)
        goto cleanup;
    if (s.run > 0) {
        snprintf(s.dl_pipeline, sizeof(s.dl_pipeline),
                 "%s:reprocess:%" PRId64, p->name, s.run);
        snprintf(s.label, sizeof(s.label),
                 "reprocess run %" PRId64 " of pipeline %s", s.run, p->name);
    } else {
        snprintf(s.dl_pipeline, sizeof(s.dl_pipeline), "%s", p->name);
        snprintf(s.label, sizeof(s.label), "pipeline %s", p->name);
    }
    code = CLI_FAILED;
    conn = exactly_pg_connect(cfg, "exactly-dlq", err, sizeof(err));
    if (!conn || admin_check_schema(conn, cfg, err, sizeof(err)) != EXACTLY_OK) {
        cli_line(stderr, "exactly dlq %s: %s", names[action], err);
        goto cleanup;
    }
    if (s.run > 0) {
        int found = run_exists(conn, cfg, p, s.run, err, sizeof(err));
        if (found < 0) {
            cli_line(stderr, "exactly dlq %s: %s", names[action], err);
            goto cleanup;
        }
        if (found == 0) {
            fprintf(stderr, "exactly dlq %s: no reprocess run %" PRId64
                            " of pipeline %s\n",
                    names[action], s.run, p->name);
            code = CLI_REFUSED;
            goto cleanup;
        }
    }
    if (s.since) {
        int64_t ms;
        char canon[64];
        exactly_err rc = admin_parse_time(conn, s.since, &ms, canon,
                                          sizeof(canon), err, sizeof(err));
        if (rc != EXACTLY_OK) {
            cli_line(stderr, "exactly dlq %s: --since: %s", names[action], err);
            code = rc == EXACTLY_EINVAL ? CLI_REFUSED : CLI_FAILED;
            goto cleanup;
        }
    }
    switch (action) {
    case DLQ_LIST: code = do_list(conn, cfg, p, &s); break;
    case DLQ_SHOW: code = do_show(conn, cfg, &s); break;
    case DLQ_REPLAY: code = do_replay(conn, cfg, p, &s); break;
    case DLQ_DISCARD: code = do_discard(conn, cfg, &s); break;
    }

cleanup:
    strbuf_free(&s.ids);
    if (conn)
        PQfinish(conn);
    exactly_config_free(cfg);
    return code;
}
