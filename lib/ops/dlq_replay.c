/*
 * dlq_replay.c - `exactly dlq replay`: see dlq.h.
 *
 * Records are built as the worker builds them: one per entity ID of a
 * partition, its messages coalesced in offset order, its looked-up rows
 * attached. Everything runs in one transaction, so the handler's failure
 * leaves both the target and the dead letters as they were.
 */
#include "ops/dlq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lookup.h"
#include "pg_conn.h"
#include "plugin.h"
#include "store_runs.h"
#include "strbuf.h"
#include "store.h"
#include "txn.h"

/* A replay in progress. */
typedef struct replay {
    PGconn *conn;
    const exactly_config *cfg;
    const cfg_pipeline *p;
    const ops_dlq_sel *s;
    exactly_plugin *pl;
    exactly_txn txn;
    exactly_store_sql sql; /* for the outbox insert of host->emit */
    ops_dlq_replayed *out;
    size_t *record;  /* per row: its record's index in the partition */
    /* The lookup's result. A handler that skips the lookup (the fused
     * upsert reads the source inside its own write) is not given the rows,
     * but they still say which entities have one: the fused statement
     * writes nothing for the others, which must stay dead letters. */
    PGresult *rows;
    int keycol;
    const char **colnames;
    size_t n_cols;
} replay;

/* The records of one partition's dead letters, rows [from, to). */
typedef struct precs {
    size_t from, to;
    exactly_record *recs;
    size_t n_recs;
    exactly_message *msgs;
    size_t *msg_count;
    size_t *found;        /* looked-up rows per record */
    const char **values;  /* the rows' cells the records point into */
    size_t n_values;
} precs;

static exactly_err oom(char *err, size_t errsz)
{
    snprintf(err, errsz, "out of memory");
    return EXACTLY_ENOMEM;
}

static int row_cmp(const void *a, const void *b)
{
    const store_dl_row *x = a, *y = b;
    int c = strcmp(x->topic, y->topic);

    if (c == 0)
        c = (x->partition > y->partition) - (x->partition < y->partition);
    if (c == 0)
        c = (x->offset > y->offset) - (x->offset < y->offset);
    return c;
}

void ops_dlq_replayed_free(ops_dlq_replayed *r)
{
    size_t i;

    for (i = 0; r->reason && i < r->n; i++)
        free(r->reason[i]);
    free(r->reason);
    free(r->outcome);
    store_dl_rows_free(r->rows, r->n);
    memset(r, 0, sizeof(*r));
}

/* Takes the selected dead letters, locked, by topic, partition, offset. */
static exactly_err load(replay *r, char *err, size_t errsz)
{
    ops_dlq_replayed *o = r->out;
    exactly_err rc;
    size_t i;

    rc = ops_dlq_lock_selected(r->conn, r->cfg, r->s, &o->rows, &o->n, err,
                               errsz);
    if (rc != EXACTLY_OK)
        return rc;
    if (o->n > 1)
        qsort(o->rows, o->n, sizeof(*o->rows), row_cmp);
    o->outcome = calloc(o->n + 1, sizeof(*o->outcome));
    o->reason = calloc(o->n + 1, sizeof(*o->reason));
    r->record = calloc(o->n + 1, sizeof(*r->record));
    if (!o->outcome || !o->reason || !r->record)
        return oom(err, errsz);
    for (i = 0; i < o->n; i++)
        o->outcome[i] = o->rows[i].entity ? OPS_DL_PENDING : OPS_DL_UNDECODABLE;
    return EXACTLY_OK;
}

/* The lookup's result columns, checked for the key column. */
static exactly_err read_columns(replay *r, const char *keycol, char *err,
                                size_t errsz)
{
    int c;

    r->keycol = exactly_lookup_column(r->rows, keycol);
    if (r->keycol < 0) {
        snprintf(err, errsz,
                 "the lookup result has no column '%s' (set "
                 "lookup.key_column)",
                 keycol);
        return EXACTLY_ECONFIG;
    }
    r->n_cols = (size_t)PQnfields(r->rows);
    r->colnames = calloc(r->n_cols + 1, sizeof(char *));
    if (!r->colnames)
        return oom(err, errsz);
    for (c = 0; c < PQnfields(r->rows); c++)
        r->colnames[c] = PQfname(r->rows, c);
    return EXACTLY_OK;
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

    if (exactly_lookup_sql(r->conn, r->p, &sql, &keycol) != EXACTLY_OK)
        return oom(err, errsz);
    strbuf_array_begin(&ids);
    for (i = 0; i < r->out->n; i++)
        if (r->out->outcome[i] == OPS_DL_PENDING)
            strbuf_array_elem_str(&ids, r->out->rows[i].entity);
    strbuf_array_end(&ids);
    params[0] = strbuf_str(&ids);
    rc = ids.oom ? EXACTLY_ENOMEM
                 : exactly_pg_exec(r->conn, sql, 1, params, &r->rows, err,
                                   errsz);
    if (rc == EXACTLY_OK) {
        rc = read_columns(r, keycol, err, errsz);
    } else if (rc != EXACTLY_ENOMEM) {
        char why[1024];
        /* The server's message, cut to fit behind the prefix. */
        snprintf(why, sizeof(why), "%.1000s", err);
        snprintf(err, errsz, "lookup failed: %s", why);
    }
    if (rc == EXACTLY_ENOMEM)
        oom(err, errsz);
    strbuf_free(&ids);
    free(sql);
    free(keycol);
    return rc;
}

static void precs_free(precs *pr)
{
    free(pr->recs);
    free(pr->msgs);
    free(pr->msg_count);
    free(pr->found);
    free(pr->values);
}

/* Records in first-seen order; dead letters of the same entity join its
 * record (quadratic in distinct IDs per partition: replays are
 * operator-sized). */
static exactly_err group_records(replay *r, precs *pr)
{
    size_t n = pr->to - pr->from, i, j;

    pr->recs = calloc(n + 1, sizeof(*pr->recs));
    pr->msgs = calloc(n + 1, sizeof(*pr->msgs));
    pr->msg_count = calloc(n + 1, sizeof(size_t));
    pr->found = calloc(n + 1, sizeof(size_t));
    if (!pr->recs || !pr->msgs || !pr->msg_count || !pr->found)
        return EXACTLY_ENOMEM;
    for (i = pr->from; i < pr->to; i++) {
        const char *entity = r->out->rows[i].entity;
        if (r->out->outcome[i] != OPS_DL_PENDING)
            continue;
        for (j = 0; j < pr->n_recs; j++)
            if (strcmp(pr->recs[j].id, entity) == 0)
                break;
        if (j == pr->n_recs) {
            pr->recs[j].id = entity;
            pr->n_recs++;
        }
        r->record[i] = j;
        pr->msg_count[j]++;
    }
    return EXACTLY_OK;
}

/* Counts each record's looked-up rows and, when the handler reads them,
 * points the record at their cells. */
static exactly_err attach_rows(replay *r, precs *pr, int with_rows)
{
    int nt = PQntuples(r->rows), t;
    size_t j, c;

    if (with_rows) {
        pr->values = calloc((size_t)nt * r->n_cols + 1, sizeof(char *));
        if (!pr->values)
            return EXACTLY_ENOMEM;
    }
    for (j = 0; j < pr->n_recs; j++) {
        exactly_record *rec = &pr->recs[j];
        if (with_rows)
            rec->values = &pr->values[pr->n_values];
        for (t = 0; t < nt; t++) {
            if (strcmp(PQgetvalue(r->rows, t, r->keycol), rec->id) != 0)
                continue;
            pr->found[j]++;
            if (!with_rows)
                continue;
            for (c = 0; c < r->n_cols; c++)
                pr->values[pr->n_values++] =
                    PQgetisnull(r->rows, t, (int)c)
                        ? NULL
                        : PQgetvalue(r->rows, t, (int)c);
            rec->n_rows++;
        }
    }
    return EXACTLY_OK;
}

/* Each record's messages, in offset order. */
static void attach_messages(replay *r, precs *pr)
{
    size_t pos = 0, i, j;

    for (j = 0; j < pr->n_recs; j++) {
        pr->recs[j].messages = &pr->msgs[pos];
        pos += pr->msg_count[j];
    }
    for (i = pr->from; i < pr->to; i++) {
        const store_dl_row *d = &r->out->rows[i];
        exactly_record *rec = &pr->recs[r->record[i]];
        exactly_message *m;

        if (r->out->outcome[i] != OPS_DL_PENDING)
            continue;
        m = (exactly_message *)&rec->messages[rec->n_messages++];
        m->offset = d->offset;
        m->timestamp_ms = -1; /* not kept in the dead-letter table */
        m->key = d->has_key ? d->key : NULL;
        m->key_len = d->has_key ? d->key_len : 0;
    }
}

/* A record without rows goes to the handler only when the pipeline says
 * so; otherwise it stays a dead letter (the fused upsert would write
 * nothing for it, and deleting it would lose it). */
static void keep_records_with_rows(replay *r, precs *pr)
{
    size_t kept = 0, i, j;

    for (j = 0; j < pr->n_recs; j++) {
        for (i = pr->from; i < pr->to; i++) {
            if (r->out->outcome[i] != OPS_DL_PENDING || r->record[i] != j)
                continue;
            if (pr->found[j] == 0)
                r->out->outcome[i] = OPS_DL_NO_ROW;
            else
                r->record[i] = kept;
        }
        if (pr->found[j] > 0)
            pr->recs[kept++] = pr->recs[j];
    }
    pr->n_recs = kept;
}

/* Records the handler failed on purpose wrote nothing: they stay dead
 * letters, with the new reason. first is the batch's first record. */
static void mark_failed(replay *r, precs *pr, size_t first, size_t n_in_batch)
{
    size_t j, m;

    for (j = 0; j < r->txn.n_fails; j++) {
        size_t idx = first + r->txn.fails[j].index;
        if (r->txn.fails[j].index >= n_in_batch)
            continue;
        for (m = pr->from; m < pr->to; m++) {
            if (r->out->outcome[m] != OPS_DL_PENDING || r->record[m] != idx)
                continue;
            r->out->outcome[m] = OPS_DL_FAILED;
            free(r->out->reason[m]);
            r->out->reason[m] = strdup(r->txn.fails[j].reason);
        }
    }
    exactly_txn_forget_fails(&r->txn);
}

/* One batch through the handler; EXACTLY_EHANDLER with err set when it or
 * its SQL failed. */
static exactly_err apply_batch(replay *r, exactly_batch *b, char *err,
                               size_t errsz)
{
    exactly_err rc;

    rc = exactly_txn_start(&r->txn, r->conn, exactly_pg_wait_bound_ms(r->cfg));
    if (rc != EXACTLY_OK) {
        snprintf(err, errsz, "%s", r->txn.errmsg);
        return rc;
    }
    rc = r->pl->h->apply(r->pl->state, &r->txn, b);
    if (rc != EXACTLY_OK) {
        snprintf(err, errsz, "handler '%s' failed on %s [%d]: %s",
                 r->pl->h->name, b->topic, (int)b->partition,
                 r->txn.handler_err_set ? r->txn.handler_err
                                        : "apply() returned an error");
        (void)exactly_txn_sync(&r->txn);
        return EXACTLY_EHANDLER;
    }
    rc = exactly_txn_sync(&r->txn);
    if (rc != EXACTLY_OK) {
        snprintf(err, errsz, "handler '%s' failed on %s [%d]: %s%s%s%s",
                 r->pl->h->name, b->topic, (int)b->partition, r->txn.errmsg,
                 r->txn.sqlstate[0] ? " (SQLSTATE " : "", r->txn.sqlstate,
                 r->txn.sqlstate[0] ? ")" : "");
        return EXACTLY_EHANDLER;
    }
    return EXACTLY_OK;
}

/* The partition's records in batches of at most batch.max_messages
 * messages (at least one record each). */
static exactly_err apply_records(replay *r, precs *pr, int with_rows,
                                 char *err, size_t errsz)
{
    const store_dl_row *first = &r->out->rows[pr->from];
    exactly_err rc = EXACTLY_OK;
    size_t i = 0;

    while (rc == EXACTLY_OK && i < pr->n_recs) {
        exactly_batch b;
        size_t k = i, msgs_in = 0;

        while (k < pr->n_recs &&
               (k == i || msgs_in + pr->recs[k].n_messages <=
                              (size_t)r->p->batch.max_messages))
            msgs_in += pr->recs[k++].n_messages;
        memset(&b, 0, sizeof(b));
        b.pipeline = r->p->name;
        /* A run's dead letters are applied as part of that run. */
        b.reprocess_run = r->s->run;
        b.topic = first->topic;
        b.partition = first->partition;
        b.records = &pr->recs[i];
        b.n_records = k - i;
        b.column_names = with_rows ? r->colnames : NULL;
        b.n_columns = with_rows ? r->n_cols : 0;
        b.id_type = exactly_id_type_name(r->p->id.type);
        rc = apply_batch(r, &b, err, errsz);
        if (rc == EXACTLY_OK)
            mark_failed(r, pr, i, b.n_records);
        i = k;
    }
    exactly_txn_finish(&r->txn);
    return rc;
}

/* Applies rows [from, to) (one topic and partition, ascending offsets)
 * through the handler, in the open transaction. */
static exactly_err apply_partition(replay *r, size_t from, size_t to,
                                   char *err, size_t errsz)
{
    /* Rows go to the handler only when it reads them (not fused). */
    int with_rows = r->rows != NULL && !r->pl->h->skips_lookup;
    precs pr;
    exactly_err rc;
    size_t i;

    memset(&pr, 0, sizeof(pr));
    pr.from = from;
    pr.to = to;
    rc = group_records(r, &pr);
    if (rc == EXACTLY_OK && r->rows)
        rc = attach_rows(r, &pr, with_rows);
    if (rc == EXACTLY_OK) {
        attach_messages(r, &pr);
        if (r->rows && r->p->lookup.on_missing != CFG_MISSING_HANDLER)
            keep_records_with_rows(r, &pr);
        rc = apply_records(r, &pr, with_rows, err, errsz);
    }
    for (i = from; rc == EXACTLY_OK && i < to; i++)
        if (r->out->outcome[i] == OPS_DL_PENDING)
            r->out->outcome[i] = OPS_DL_REPLAYED;
    if (rc == EXACTLY_ENOMEM)
        oom(err, errsz);
    precs_free(&pr);
    return rc;
}

/* Deletes what was replayed, counts it for its run, and records the new
 * failures. */
static exactly_err settle(replay *r, char *err, size_t errsz)
{
    const ops_dlq_replayed *o = r->out;
    const char *schema = r->cfg->postgres.schema;
    int64_t *done = calloc(o->n + 1, sizeof(int64_t));
    int64_t *failed = calloc(o->n + 1, sizeof(int64_t));
    const char **reasons = calloc(o->n + 1, sizeof(char *));
    size_t n_done = 0, n_failed = 0, i;
    exactly_err rc = EXACTLY_OK;

    if (!done || !failed || !reasons)
        rc = oom(err, errsz);
    for (i = 0; rc == EXACTLY_OK && i < o->n; i++) {
        if (o->outcome[i] == OPS_DL_REPLAYED)
            done[n_done++] = o->rows[i].id;
        else if (o->outcome[i] == OPS_DL_FAILED) {
            failed[n_failed] = o->rows[i].id;
            reasons[n_failed++] =
                o->reason[i] ? o->reason[i] : "failed by handler";
        }
    }
    if (rc == EXACTLY_OK && n_done > 0)
        rc = store_dl_delete(r->conn, schema, done, n_done, err, errsz);
    /* One dead letter is one message; the run now applied it. */
    if (rc == EXACTLY_OK && n_done > 0 && r->s->run > 0)
        rc = store_runs_add_applied(r->conn, schema, r->s->run,
                                    (int64_t)n_done, err, errsz);
    if (rc == EXACTLY_OK && n_failed > 0)
        rc = store_dl_failed_again(r->conn, schema, failed, reasons, n_failed,
                                   err, errsz);
    free(done);
    free(failed);
    free(reasons);
    return rc;
}

/* Inside the transaction: load, look up, apply per partition, settle. */
static exactly_err replay_all(replay *r, char *err, size_t errsz)
{
    const ops_dlq_replayed *o = r->out;
    exactly_err rc;
    size_t i, start;

    rc = load(r, err, errsz);
    if (rc == EXACTLY_OK)
        rc = lookup(r, err, errsz);
    /* Per partition, since a batch is one partition's. */
    for (start = 0, i = 1; rc == EXACTLY_OK && i <= o->n; i++) {
        if (i < o->n && o->rows[i].partition == o->rows[start].partition &&
            strcmp(o->rows[i].topic, o->rows[start].topic) == 0)
            continue;
        rc = apply_partition(r, start, i, err, errsz);
        start = i;
    }
    if (rc == EXACTLY_OK)
        rc = settle(r, err, errsz);
    return rc;
}

/* Loads and opens the pipeline's handler on conn. */
static exactly_err open_handler(replay *r, char *err, size_t errsz)
{
    exactly_err rc;

    rc = exactly_plugin_load(r->cfg, r->p, &r->pl, err, errsz);
    if (rc != EXACTLY_OK)
        return EXACTLY_ECONFIG;
    snprintf(r->out->handler, sizeof(r->out->handler), "%s", r->pl->h->name);
    rc = exactly_plugin_open(r->pl, r->conn, r->p,
                             exactly_pg_wait_bound_ms(r->cfg), err, errsz);
    if (rc != EXACTLY_OK)
        return rc == EXACTLY_ERETRY ? EXACTLY_ERETRY : EXACTLY_ECONFIG;
    return EXACTLY_OK;
}

exactly_err ops_dlq_replay(PGconn *conn, const exactly_config *cfg,
                           const cfg_pipeline *p, const ops_dlq_sel *s,
                           ops_dlq_replayed *out, char *err, size_t errsz)
{
    char ignore[256];
    replay r;
    exactly_err rc;
    size_t i;

    memset(&r, 0, sizeof(r));
    memset(out, 0, sizeof(*out));
    r.conn = conn;
    r.cfg = cfg;
    r.p = p;
    r.s = s;
    r.out = out;
    /* A handler that emits does so in replay as in the worker: its events
     * commit with what it writes. */
    if (exactly_store_sql_init(&r.sql, conn, cfg->postgres.schema) != 0) {
        snprintf(err, errsz, "out of memory");
        rc = EXACTLY_ENOMEM;
        goto cleanup;
    }
    r.txn.emit_sql = r.sql.emit;
    rc = open_handler(&r, err, errsz);
    if (rc != EXACTLY_OK)
        goto cleanup;
    /* A handler that reads the source inside its own write must see the
     * snapshot the lookup saw: else a row deleted in between would be
     * counted as written and its dead letter deleted. */
    rc = exactly_pg_exec(conn,
                         r.pl->h->skips_lookup
                             ? "BEGIN ISOLATION LEVEL REPEATABLE READ"
                             : "BEGIN",
                         0, NULL, NULL, err, errsz);
    out->rolled_back = 1;
    if (rc == EXACTLY_OK)
        rc = replay_all(&r, err, errsz);
    if (rc == EXACTLY_OK)
        rc = exactly_pg_exec(conn, "COMMIT", 0, NULL, NULL, err, errsz);
    if (rc != EXACTLY_OK) {
        (void)exactly_pg_exec(conn, "ROLLBACK", 0, NULL, NULL, ignore,
                              sizeof(ignore));
        goto cleanup;
    }
    out->rolled_back = 0;
    for (i = 0; i < out->n; i++)
        out->count[out->outcome[i]]++;

cleanup:
    free(r.record);
    free(r.colnames);
    PQclear(r.rows);
    exactly_txn_clear(&r.txn);
    exactly_store_sql_free(&r.sql);
    exactly_plugin_free(r.pl);
    return rc;
}
