/*
 * batch_group.c - batch_group(): the surviving messages of a batch
 * grouped into records, one per ID, and the lookup's rows attached.
 */
#include "batch.h"
#include "batch_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The index of the lookup's column key_column, or -1 (errbuf says so). */
static int key_col(const PGresult *lookup, const char *key_column,
                   char *errbuf, size_t errbuf_size)
{
    int c;

    for (c = PQnfields(lookup) - 1; c >= 0; c--)
        if (strcmp(PQfname(lookup, c), key_column) == 0)
            return c;
    snprintf(errbuf, errbuf_size,
             "lookup result has no column '%s' (set lookup.key_column)",
             key_column);
    return -1;
}

/* Numbers the records in first-seen order of the surviving messages
 * (rec_of_id[id]: the record of an ID, SIZE_MAX: none) and counts each
 * record's messages in msg_count. */
static void number_records(batch_builder *b, size_t *rec_of_id,
                           size_t *msg_count)
{
    size_t i;

    for (i = 0; i < b->n_ids; i++)
        rec_of_id[i] = SIZE_MAX;
    for (i = 0; i < b->n_msgs; i++) {
        batch_msg *bm = &b->msgs[i];
        size_t id;
        if (bm->dead || bm->duplicate)
            continue;
        id = bm->id_index;
        if (rec_of_id[id] == SIZE_MAX) {
            rec_of_id[id] = b->n_records;
            msg_count[b->n_records++] = 0;
        }
        bm->record = rec_of_id[id];
        msg_count[bm->record]++;
    }
}

/* The record of lookup row r, or SIZE_MAX when its ID is none of the
 * batch's records. */
static size_t row_record(const batch_builder *b, const PGresult *lookup,
                         int r, int keycol, const size_t *rec_of_id)
{
    size_t id = batch_lookup_id(b, PQgetvalue(lookup, r, keycol));

    return id == SIZE_MAX ? SIZE_MAX : rec_of_id[id];
}

/* Lays the records out: each one's messages and rows placed contiguously
 * (msg_count, row_count per record), none filled yet. */
static void lay_out_records(batch_builder *b, const size_t *msg_count,
                            const size_t *row_count, size_t *n_missing)
{
    size_t msg_pos = 0, val_pos = 0, i;

    for (i = 0; i < b->n_records; i++) {
        exactly_record *rec = &b->records[i];
        rec->messages = &b->rec_msgs[msg_pos];
        rec->n_messages = 0;
        msg_pos += msg_count[i];
        rec->values = &b->values[val_pos];
        rec->n_rows = 0;
        val_pos += row_count[i] * b->n_columns;
        if (row_count[i] == 0)
            (*n_missing)++;
    }
}

/* Fills the records' messages (and, for bigint IDs, their values), then
 * their rows from the lookup. */
static void fill_records(batch_builder *b, const PGresult *lookup, int keycol,
                         const size_t *rec_of_id)
{
    int nt = lookup ? PQntuples(lookup) : 0;
    int nf = (int)b->n_columns;
    int bigint = b->p->id.type == CFG_ID_BIGINT;
    size_t i;

    for (i = 0; i < b->n_msgs; i++) {
        batch_msg *bm = &b->msgs[i];
        exactly_record *rec;
        exactly_message *m;
        if (bm->dead || bm->duplicate)
            continue;
        rec = &b->records[bm->record];
        rec->id = bm->id;
        if (bigint)
            b->rec_vals[bm->record] = b->id_vals[bm->id_index];
        m = (exactly_message *)&rec->messages[rec->n_messages++];
        m->offset = bm->rk->offset;
        m->timestamp_ms = rd_kafka_message_timestamp(bm->rk, NULL);
        m->key = bm->rk->key;
        m->key_len = bm->rk->key_len;
    }
    for (int r = 0; r < nt; r++) {
        size_t rec_i = row_record(b, lookup, r, keycol, rec_of_id);
        exactly_record *rec;
        const char **dst;
        if (rec_i == SIZE_MAX)
            continue;
        rec = &b->records[rec_i];
        dst = (const char **)&rec->values[rec->n_rows * (size_t)nf];
        for (int c = 0; c < nf; c++)
            dst[c] = PQgetisnull(lookup, r, c) ? NULL : PQgetvalue(lookup, r, c);
        rec->n_rows++;
    }
}

size_t batch_rows_naming(const PGresult *res, const char *key_column,
                         const strset *ids)
{
    int nt = res ? PQntuples(res) : 0, c, r;
    size_t n = 0;

    for (c = res ? PQnfields(res) - 1 : -1; c >= 0; c--)
        if (strcmp(PQfname(res, c), key_column) == 0)
            break;
    if (c < 0)
        return (size_t)nt;
    for (r = 0; r < nt; r++)
        if (!PQgetisnull(res, r, c) && strset_has(ids, PQgetvalue(res, r, c)))
            n++;
    return n;
}

exactly_err batch_group(batch_builder *b, const PGresult *lookup,
                        const char *key_column, size_t *n_missing,
                        char *errbuf, size_t errbuf_size)
{
    size_t *rec_of_id, *msg_count, *row_count;
    size_t n_rows_total = 0;
    int keycol = -1;
    int nt = lookup ? PQntuples(lookup) : 0;
    int nf = lookup ? PQnfields(lookup) : 0;

    *n_missing = 0;
    b->n_records = 0;
    b->n_columns = (size_t)nf;
    if (lookup && (keycol = key_col(lookup, key_column, errbuf, errbuf_size)) < 0)
        return EXACTLY_ECONFIG;
    /* Reused from batch to batch; every slot in use is written below. */
    if (batch_grow((void **)&b->scratch, &b->cap_scratch, 3 * (b->n_ids + 1),
                   sizeof(size_t)) ||
        batch_grow((void **)&b->records, &b->cap_records, b->n_ids + 1,
                   sizeof(exactly_record)) ||
        batch_grow((void **)&b->rec_vals, &b->cap_rec_vals, b->n_ids + 1,
                   sizeof(int64_t)) ||
        batch_grow((void **)&b->rec_msgs, &b->cap_rec_msgs, b->n_msgs + 1,
                   sizeof(exactly_message)) ||
        batch_grow((void **)&b->colnames, &b->cap_colnames, (size_t)nf + 1,
                   sizeof(char *)))
        return EXACTLY_ENOMEM;
    rec_of_id = b->scratch;
    msg_count = rec_of_id + b->n_ids + 1;
    row_count = msg_count + b->n_ids + 1;
    number_records(b, rec_of_id, msg_count);
    memset(row_count, 0, (b->n_records + 1) * sizeof(size_t));
    for (int r = 0; r < nt; r++) {
        size_t rec_i = row_record(b, lookup, r, keycol, rec_of_id);
        if (rec_i != SIZE_MAX) {
            row_count[rec_i]++;
            n_rows_total++;
        }
    }
    if (batch_grow((void **)&b->values, &b->cap_values,
                   n_rows_total * (size_t)nf + 1, sizeof(char *)))
        return EXACTLY_ENOMEM;
    lay_out_records(b, msg_count, row_count, n_missing);
    fill_records(b, lookup, keycol, rec_of_id);
    for (int c = 0; c < nf; c++)
        b->colnames[c] = PQfname(lookup, c);
    b->colnames[nf] = NULL;
    return EXACTLY_OK;
}
