/*
 * dlq_records.c - a partition's dead letters as the records the worker
 * would have built (see dlq_replay_internal.h): one per entity ID, its
 * messages coalesced in offset order, its looked-up rows attached.
 */
#include "dlq_replay_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void dlq_records_free(precs *pr)
{
    free(pr->recs);
    free(pr->msgs);
    free(pr->msg_row);
    free(pr->msg_count);
    free(pr->found);
    free(pr->values);
    strset_free(&pr->ids);
}

/* Records in first-seen order; dead letters of the same entity join its
 * record, found by its ID in pr->ids: each row costs one probe, so that
 * building stays linear in the rows while the transaction waits. */
static exactly_err group_records(replay *r, precs *pr)
{
    size_t n = pr->to - pr->from, i;

    pr->recs = calloc(n + 1, sizeof(*pr->recs));
    pr->msgs = calloc(n + 1, sizeof(*pr->msgs));
    pr->msg_row = calloc(n + 1, sizeof(*pr->msg_row));
    pr->msg_count = calloc(n + 1, sizeof(size_t));
    pr->found = calloc(n + 1, sizeof(size_t));
    if (!pr->recs || !pr->msgs || !pr->msg_row || !pr->msg_count ||
        !pr->found || strset_reset(&pr->ids, n) != 0)
        return EXACTLY_ENOMEM;
    for (i = pr->from; i < pr->to; i++) {
        const char *entity = r->out->rows[i].entity;
        size_t j = pr->n_recs;
        int added;

        if (r->out->outcome[i] != OPS_DL_PENDING)
            continue;
        /* Room for every row was made: the set cannot be full. */
        added = strset_put(&pr->ids, entity, &j);
        if (added < 0)
            return EXACTLY_ENOMEM;
        if (added) {
            pr->recs[j].id = entity;
            pr->n_recs++;
        }
        r->record[i] = j;
        pr->msg_count[j]++;
    }
    return EXACTLY_OK;
}

/* Counts each record's looked-up rows and, when the handler reads them,
 * points the record at their cells: a record's rows in lookup order,
 * contiguous. A row whose key is no record's ID is ignored. */
static exactly_err attach_rows(replay *r, precs *pr)
{
    int nt = PQntuples(r->rows), t;
    size_t *next, j, c;

    for (t = 0; t < nt; t++) {
        j = strset_get(&pr->ids, PQgetvalue(r->rows, t, r->keycol));
        if (j != SIZE_MAX)
            pr->found[j]++;
    }
    if (!pr->with_rows)
        return EXACTLY_OK;
    /* next[j]: where record j's next row goes in pr->values. */
    pr->values = calloc((size_t)nt * r->n_cols + 1, sizeof(char *));
    next = calloc(pr->n_recs + 1, sizeof(size_t));
    if (!pr->values || !next) {
        free(next);
        return EXACTLY_ENOMEM;
    }
    for (j = 0; j < pr->n_recs; j++) {
        pr->recs[j].values = &pr->values[pr->n_values];
        next[j] = pr->n_values;
        pr->n_values += pr->found[j] * r->n_cols;
    }
    for (t = 0; t < nt; t++) {
        j = strset_get(&pr->ids, PQgetvalue(r->rows, t, r->keycol));
        if (j == SIZE_MAX)
            continue;
        for (c = 0; c < r->n_cols; c++)
            pr->values[next[j]++] = PQgetisnull(r->rows, t, (int)c)
                                        ? NULL
                                        : PQgetvalue(r->rows, t, (int)c);
        pr->recs[j].n_rows++;
    }
    free(next);
    return EXACTLY_OK;
}

/* Each record's messages, in offset order, and the row of each. */
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
        pr->msg_row[m - pr->msgs] = i;
        m->offset = d->offset;
        m->timestamp_ms = -1; /* not kept in the dead-letter table */
        m->key = d->has_key ? d->key : NULL;
        m->key_len = d->has_key ? d->key_len : 0;
    }
}

/* A record without rows goes to the handler only when the pipeline says
 * so; otherwise it stays a dead letter (the fused upsert would write
 * nothing for it, and deleting it would lose it). The records kept keep
 * their order; each row follows its record to its new index. */
static void keep_records_with_rows(replay *r, precs *pr)
{
    size_t kept = 0, j;

    for (j = 0; j < pr->n_recs; j++) {
        exactly_record *rec = &pr->recs[j];
        size_t m;

        for (m = 0; m < rec->n_messages; m++) {
            size_t i = dlq_record_row(pr, rec, m);
            if (pr->found[j] == 0)
                r->out->outcome[i] = OPS_DL_NO_ROW;
            else
                r->record[i] = kept;
        }
        if (pr->found[j] > 0)
            pr->recs[kept++] = *rec;
    }
    pr->n_recs = kept;
}

size_t dlq_record_row(const precs *pr, const exactly_record *rec, size_t m)
{
    return pr->msg_row[&rec->messages[m] - pr->msgs];
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
