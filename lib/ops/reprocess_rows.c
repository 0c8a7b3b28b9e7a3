/*
 * reprocess_rows.c - a run's rows in reprocess_runs (see
 * reprocess_internal.h); the statements are store_runs.c's.
 */
#include "reprocess_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "pg_conn.h"
#include "store_dead_letters.h"
#include "store_runs.h"

static const char *schema_of(const run *r)
{
    return r->cfg->postgres.schema;
}

/* Span sp takes row's position (and its topic, handed over). */
static void span_from_row(span *sp, store_run_row *row)
{
    sp->id = row->id;
    snprintf(sp->id_s, sizeof(sp->id_s), "%" PRId64, sp->id);
    free(sp->topic);
    sp->topic = row->topic;
    row->topic = NULL;
    sp->partition = row->partition;
    sp->from = row->from;
    sp->to = row->to;
    sp->next = row->next;
    sp->epoch = row->epoch;
    sp->applied0 = row->applied;
}

void reprocess_set_id(run *r, int64_t id)
{
    r->id = id;
    snprintf(r->id_s, sizeof(r->id_s), "%" PRId64, id);
    /* Kept apart from the live pipeline's dead letters, which share the
     * (topic, partition, offset) key; every partition of a run under the
     * run's one name. */
    snprintf(r->dl_key, sizeof(r->dl_key), "%s:reprocess:%" PRId64, r->p->name,
             id);
}

void reprocess_count_dead_letters(run *r)
{
    store_dl_filter f;
    char err[512];

    r->dead_read = 0;
    if (!r->eng.conn || PQstatus(r->eng.conn) != CONNECTION_OK)
        return;
    memset(&f, 0, sizeof(f));
    f.pipeline = r->dl_key;
    f.partition = -1;
    f.limit = -1;
    if (store_dl_count(r->eng.conn, schema_of(r), &f, &r->dead_letters, err,
                       sizeof(err)) == EXACTLY_OK)
        r->dead_read = 1;
    else
        exactly_log(EXACTLY_LOG_WARN, "reprocess",
                    "cannot count the run's dead letters", LOG_INT("run", r->id),
                    LOG_STR("error", err));
}

int reprocess_claim_rows(run *r, const exactly_reprocess_opts *o)
{
    store_run_row *rows = NULL;
    char err[1024];
    size_t n = 0, i;
    int64_t number = o->resume_run;
    exactly_err rc;

    /* The logs name a partition's row (taken over run=ROW); its run is
     * the parent's number, under which its dead letters, its handler's
     * run and its summary go: that run is resumed, all of it. */
    rc = store_runs_number(r->eng.conn, schema_of(r), r->p->name,
                           o->resume_run, &number, err, sizeof(err));
    if (rc == EXACTLY_OK && number != o->resume_run)
        exactly_log(EXACTLY_LOG_INFO, "reprocess",
                    "the row is a partition of a run; resuming that run",
                    LOG_INT("row", o->resume_run), LOG_INT("run", number));
    if (rc == EXACTLY_OK)
        rc = store_runs_claim(r->eng.conn, schema_of(r), r->p->name, number,
                              r->eng.owner, &rows, &n, err, sizeof(err));
    if (rc != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_ERROR, "reprocess", "cannot record the run",
                    LOG_STR("error", err));
        return 1;
    }
    if (n == 0) {
        store_run_rows_free(rows, n);
        exactly_log(EXACTLY_LOG_ERROR, "reprocess",
                    "run not found in this pipeline, or already done",
                    LOG_INT("run", number));
        /* A done run's dead letters are what a resume cannot apply: say
         * where they are. */
        reprocess_set_id(r, number);
        reprocess_count_dead_letters(r);
        if (r->dead_read && r->dead_letters > 0)
            reprocess_print_dead_letters(r, (uint64_t)r->dead_letters);
        return 2;
    }
    r->id = number;
    for (i = 0; i < n; i++) {
        span *sp = reprocess_span_add(r);
        if (!sp) {
            store_run_rows_free(rows, n);
            return 1;
        }
        span_from_row(sp, &rows[i]);
        r->multi |= rows[i].parent != 0;
    }
    store_run_rows_free(rows, n);
    reprocess_spans_sort(r);
    return 0;
}

/* The rows of r's spans, in the open transaction. */
static exactly_err insert_rows(run *r, char *err, size_t errsz)
{
    exactly_err rc = EXACTLY_OK;
    size_t i;

    for (i = 0; i < r->n_spans && rc == EXACTLY_OK; i++) {
        span *sp = &r->spans[i];
        store_run_row row;

        memset(&row, 0, sizeof(row));
        row.topic = sp->topic;
        row.partition = sp->partition;
        row.from = sp->from;
        row.to = sp->to;
        /* The first row of a run over a topic is its own parent. */
        row.parent = r->multi && i > 0 ? r->spans[0].id : 0;
        rc = store_runs_insert(r->eng.conn, schema_of(r), r->p->name,
                               r->eng.owner, &row, err, errsz);
        if (rc == EXACTLY_OK) {
            sp->id = row.id;
            snprintf(sp->id_s, sizeof(sp->id_s), "%" PRId64, sp->id);
            sp->next = row.next;
            sp->epoch = row.epoch;
            sp->applied0 = row.applied;
        }
    }
    if (rc == EXACTLY_OK && r->multi)
        rc = store_runs_set_own_parent(r->eng.conn, schema_of(r),
                                       r->spans[0].id, err, errsz);
    return rc;
}

int reprocess_create_rows(run *r)
{
    PGconn *conn = r->eng.conn;
    char err[1024] = "", ignored[256];
    exactly_err rc;

    rc = exactly_pg_exec(conn, "BEGIN", 0, NULL, NULL, err, sizeof(err));
    if (rc == EXACTLY_OK)
        rc = insert_rows(r, err, sizeof(err));
    if (rc == EXACTLY_OK)
        rc = exactly_pg_exec(conn, "COMMIT", 0, NULL, NULL, err, sizeof(err));
    if (rc != EXACTLY_OK) {
        (void)exactly_pg_exec(conn, "ROLLBACK", 0, NULL, NULL, ignored,
                              sizeof(ignored));
        exactly_log(EXACTLY_LOG_ERROR, "reprocess", "cannot record the run",
                    LOG_STR("error", err[0] ? err : exactly_strerror(rc)));
        return 1;
    }
    r->id = r->spans[0].id;
    return 0;
}

void reprocess_close_span(run *r, span *sp, const char *status)
{
    char err[512];

    if (!r->eng.conn)
        return;
    if (store_runs_close(r->eng.conn, schema_of(r), sp->id, sp->epoch,
                         status, err, sizeof(err)) != EXACTLY_OK)
        exactly_log(EXACTLY_LOG_WARN, "reprocess",
                    "cannot record the run's end", LOG_INT("run", sp->id),
                    LOG_STR("error", err));
}

/* The rows of run r as the database r is connected to holds them now,
 * into *rows, *n. Waits (reconnecting) while that fails transiently.
 * Returns 0, or 1 (refused, interrupted, out of memory). */
static int read_rows(run *r, const exactly_reprocess_opts *o,
                     store_run_row **rows, size_t *n)
{
    char err[1024] = "";
    exactly_err rc;

    for (;;) {
        if (o->stop && *o->stop)
            return 1;
        rc = reprocess_db(r);
        if (rc == EXACTLY_OK)
            rc = store_runs_read(r->eng.conn, schema_of(r), r->id, rows, n,
                                 err, sizeof(err));
        if (rc == EXACTLY_OK)
            return 0;
        if (rc != EXACTLY_ERETRY) {
            exactly_log(EXACTLY_LOG_ERROR, "reprocess",
                        "cannot read the run's rows", LOG_INT("run", r->id),
                        LOG_STR("error", err[0] ? err : exactly_strerror(rc)));
            return 1;
        }
        usleep(200 * 1000);
    }
}

/* The row of span sp among rows; NULL when it is not there. */
static const store_run_row *row_of(const span *sp, const store_run_row *rows,
                                   size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (rows[i].id == sp->id)
            return &rows[i];
    return NULL;
}

/* Span sp, closed, is open again from next (its row is not done). */
static void reopen(run *r, span *sp, int64_t next)
{
    exactly_log(EXACTLY_LOG_WARN, "reprocess",
                "run row is not done (moved back by a failover?); applying "
                "again from its offset",
                LOG_INT("run", sp->id), LOG_STR("topic", sp->topic),
                LOG_INT("partition", sp->partition),
                LOG_INT("next_offset", next), LOG_INT("to", sp->to));
    if (sp->done) {
        sp->done = 0;
        r->n_done--;
        r->behind -= sp->to + 1 - sp->from;
    }
    sp->next = next;
}

/* What the session applied as rows count it: for each span, the row's
 * applied now less when the session took it. A row a failover took back
 * below that counts 0, not less: the summary says what this session
 * applied, and what the row lost of earlier sessions is not its. */
static void count_applied(run *r, const store_run_row *rows, size_t n)
{
    size_t i;

    r->applied_rows = 0;
    for (i = 0; i < r->n_spans; i++) {
        const store_run_row *row = row_of(&r->spans[i], rows, n);

        if (row && row->applied > r->spans[i].applied0)
            r->applied_rows += row->applied - r->spans[i].applied0;
    }
    r->applied_read = 1;
}

void reprocess_count_rows(run *r)
{
    store_run_row *rows = NULL;
    size_t n = 0;
    char err[512];

    if (!r->eng.conn || PQstatus(r->eng.conn) != CONNECTION_OK)
        return;
    if (store_runs_read(r->eng.conn, schema_of(r), r->id, &rows, &n, err,
                        sizeof(err)) == EXACTLY_OK)
        count_applied(r, rows, n);
    store_run_rows_free(rows, n);
}

int reprocess_check_rows(run *r, const exactly_reprocess_opts *o)
{
    store_run_row *rows = NULL;
    size_t n = 0, i;
    int code = 0;

    if (read_rows(r, o, &rows, &n) != 0)
        return 1;
    count_applied(r, rows, n);
    for (i = 0; i < r->n_spans && code == 0; i++) {
        span *sp = &r->spans[i];
        const store_run_row *row = row_of(sp, rows, n);

        if (!row || row->epoch != sp->epoch) {
            /* Another resume claimed it (or the row is gone): not ours
             * to finish, nor to call done. */
            if (row)
                exactly_log(EXACTLY_LOG_ERROR, "reprocess",
                            "run was taken over by another process",
                            LOG_INT("run", sp->id));
            else
                exactly_log(EXACTLY_LOG_ERROR, "reprocess", "run row is gone",
                            LOG_INT("run", sp->id));
            code = 1;
        } else if (!row->done || row->next <= sp->to) {
            reopen(r, sp, row->next);
        }
    }
    store_run_rows_free(rows, n);
    return code;
}
