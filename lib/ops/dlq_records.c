/*
 * dlq_records.c - a partition's dead letters as the records the worker
 * would have built (see dlq_replay_internal.h): one per entity ID, its
 * messages coalesced in offset order, its looked-up rows attached.
 */
#include "dlq_replay_internal.h"

#include <stdlib.h>
#include <string.h>

void dlq_records_free(precs *pr)
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
static exactly_err attach_rows(replay *r, precs *pr)
{
    int nt = PQntuples(r->rows), t;
    size_t j, c;

    if (pr->with_rows) {
        pr->values = calloc((size_t)nt * r->n_cols + 1, sizeof(char *));
        if (!pr->values)
            return EXACTLY_ENOMEM;
    }
    for (j = 0; j < pr->n_recs; j++) {
        exactly_record *rec = &pr->recs[j];
        if (pr->with_rows)
            rec->values = &pr->values[pr->n_values];
        for (t = 0; t < nt; t++) {
            if (strcmp(PQgetvalue(r->rows, t, r->keycol), rec->id) != 0)
                continue;
            pr->found[j]++;
            if (!pr->with_rows)
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

exactly_err dlq_records_build(replay *r, precs *pr, int with_rows)
{
    exactly_err rc;

    pr->with_rows = with_rows;
    rc = group_records(r, pr);
    if (rc == EXACTLY_OK && r->rows)
        rc = attach_rows(r, pr);
    if (rc != EXACTLY_OK)
        return rc;
    attach_messages(r, pr);
    if (r->rows && r->p->lookup.on_missing != CFG_MISSING_HANDLER)
        keep_records_with_rows(r, pr);
    return EXACTLY_OK;
}
