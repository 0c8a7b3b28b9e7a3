/*
 * batch.h - turning one partition's buffered messages into the batch a
 * handler sees: IDs decoded, dedup keys extracted, messages coalesced by ID
 * (a handler reads current state, so one record per entity is enough, and
 * PostgreSQL refuses an upsert that touches one row twice), rows attached.
 *
 * A batch_builder is reused from batch to batch; it owns everything it
 * hands out until the next batch_build() or batch_free().
 */
#ifndef EXACTLY_BATCH_H
#define EXACTLY_BATCH_H

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "config.h"
#include "exactly/handler.h"
#include "pgarray.h"
#include "strbuf.h"
#include "strset.h"

/* One message of the batch, decoded or not. */
typedef struct batch_msg {
    const rd_kafka_message_t *rk;  /* borrowed from the partition buffer */
    char *id;                      /* canonical ID in the builder's arena,
                                      NULL if undecodable */
    size_t id_index;               /* its index in the builder's ids */
    char reason[160];              /* why undecodable */
    char *dedup_hex;               /* hex SHA-256 of the dedup key, in the
                                      arena; NULL: none (no dedup for this
                                      message) */
    int duplicate;                 /* dropped by dedup */
    int dead;                      /* goes to the dead-letter table */
    size_t record;                 /* index in records once grouped */
} batch_msg;

typedef struct batch_builder {
    const cfg_pipeline *p;

    batch_msg *msgs;
    size_t n_msgs;
    size_t cap_msgs;

    /* Unique decoded IDs in first-seen order, for the lookup; for bigint
     * IDs also their values (id_vals[i] is ids[i]), by which they are
     * hashed, compared and sent. */
    char **ids;
    int64_t *id_vals;
    size_t n_ids;
    size_t cap_ids;
    /* Open-addressing hash: ID -> index in ids (UINT32_MAX: empty);
     * n_slots in use for this batch (a power of two), cap_slots allocated.
     * 32-bit indexes: half the bytes to empty per batch. */
    uint32_t *slots;
    size_t n_slots;
    size_t cap_slots;

    /* Records handed to the handler; the arrays are reused from batch to
     * batch (cap_*: their room). */
    exactly_record *records;
    exactly_message *rec_msgs;
    const char **values;
    size_t n_records;
    const char **colnames;
    size_t n_columns;
    size_t cap_records, cap_rec_msgs, cap_values, cap_colnames;
    /* For bigint IDs, each record's ID as its value (rec_vals[i] is
     * records[i].id's), handed to apply() as exactly_batch.id_values. */
    int64_t *rec_vals;
    size_t cap_rec_vals;
    /* batch_group's per-ID and per-record counts (3 * (n_ids + 1)). */
    size_t *scratch;
    size_t cap_scratch;

    /* The decoded IDs and digests of the batch, one allocation reused
     * from batch to batch (sized before decoding, so pointers stay put). */
    char *arena;
    size_t arena_cap;

    pgarray ids_param;  /* the unique IDs, binary, for the lookup: */
    const char *ids_data; /* its bytes once batch_ids_param() built them
                             (format 1); NULL before */
    int ids_len;
    strbuf dedup_keys;  /* {digest hex,...} unique, first occurrence */
    strbuf dedup_offs;
    strset dedup_set;
} batch_builder;

/* Decodes and indexes msgs[0..n). Returns EXACTLY_OK or EXACTLY_ENOMEM.
 * Nothing is allocated per message: the builder's buffers grow to the
 * largest batch seen and are reused. */
exactly_err batch_build(batch_builder *b, const cfg_pipeline *p,
                        rd_kafka_message_t *const *msgs, size_t n);

/* Builds ids_data/ids_len, the batch's unique IDs as a binary array for
 * the lookup's $1. EXACTLY_OK or EXACTLY_ENOMEM. */
exactly_err batch_ids_param(batch_builder *b);

/* Marks duplicates: dedup_result holds the key digests (hex) the dedup
 * insert returned (new keys); NULL when dedup is off. */
exactly_err batch_apply_dedup(batch_builder *b, const PGresult *dedup_result);

/*
 * Groups the surviving messages into records and attaches the lookup rows
 * (lookup may be NULL: no rows). key_column names the ID column of the
 * lookup result. Sets *n_missing to the number of records without rows.
 * Returns EXACTLY_OK, EXACTLY_ENOMEM, or EXACTLY_ECONFIG when the lookup
 * result has no column key_column (errbuf says so).
 */
exactly_err batch_group(batch_builder *b, const PGresult *lookup,
                        const char *key_column, size_t *n_missing,
                        char *errbuf, size_t errbuf_size);

/* How many rows of a lookup result name one of ids: a non-null value of
 * the column key_column equal to one of them as text, the match
 * batch_group makes (a row with a null key, or another key, names no
 * record). All the rows when there is no such column. */
size_t batch_rows_naming(const PGresult *res, const char *key_column,
                         const strset *ids);

void batch_free(batch_builder *b);

#endif
