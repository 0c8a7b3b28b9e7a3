/*
 * dlq_replay_internal.h - the parts of `exactly dlq replay` (ops_dlq_replay
 * in dlq.h), shared by its files:
 *
 *   dlq_replay.c   the transaction: load and lock, look up, per partition
 *                  build and apply, then settle the dead letters
 *   dlq_records.c  a partition's dead letters as the worker's records
 *   dlq_bisect.c   the records through the handler in chunks, by the
 *                  engine's bisect step (engine/bisect.h): its callbacks
 *   dlq_confirm.c  a COMMIT whose answer was lost: ask the server
 */
#ifndef EXACTLY_OPS_DLQ_REPLAY_INTERNAL_H
#define EXACTLY_OPS_DLQ_REPLAY_INTERNAL_H

#include <stddef.h>

#include <libpq-fe.h>

#include "ops/dlq.h"
#include "pg_xact.h"
#include "plugin.h"
#include "store.h"
#include "strset.h"
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
    /* The lookup (exactly_lookup_sql_shared: a replay has no queue behind
     * it, so it locks the rows it reads) and its key column, built before
     * the transaction begins. */
    char *lookup_sql;
    char *lookup_key;
    int keycol;
    const char **colnames;
    size_t n_cols;
    /* The SQLSTATE of the server's error that ended the transaction, when
     * one did (the lookup's, a handler statement's); "" otherwise. */
    char sqlstate[6];
    /* The transaction was rolled back because a source row its lookup
     * did not find was inserted meanwhile (dlq_replay.c, recheck): the
     * replay is run again. */
    int stale;
} replay;

/* The records of one partition's dead letters, rows [from, to) of
 * replay.out. */
typedef struct precs {
    size_t from, to;
    exactly_record *recs;
    size_t n_recs;
    exactly_message *msgs;
    size_t *msg_row;      /* per message of msgs: its row of replay.out */
    size_t *msg_count;
    size_t *found;        /* looked-up rows per record */
    const char **values;  /* the rows' cells the records point into */
    size_t n_values;
    int with_rows;        /* the handler is given the looked-up rows */
    strset ids;           /* entity ID -> its record's index (grouping) */
} precs;

/*
 * Builds the records of pr->from..pr->to (one topic and partition,
 * ascending offsets; pr zeroed but for from and to): one per entity ID of
 * the pending rows, its messages in offset order, the looked-up rows
 * attached when with_rows. A record the lookup found no row for is left
 * out (its rows become OPS_DL_NO_ROW) unless lookup.on_missing is
 * handler. EXACTLY_ENOMEM or EXACTLY_OK; free pr with dlq_records_free.
 */
exactly_err dlq_records_build(replay *r, precs *pr, int with_rows);
void dlq_records_free(precs *pr);

/* The row of replay.out that message m of rec (a record of pr) came from. */
size_t dlq_record_row(const precs *pr, const exactly_record *rec, size_t m);

/*
 * Applies pr's records through the handler inside the open transaction
 * (see dlq_bisect.c): rows of applied records become OPS_DL_REPLAYED,
 * those of records that still fail OPS_DL_FAILED with their reason.
 * Returns EXACTLY_OK when every record was settled either way; any other
 * code (err set) means the replay cannot go on and must be rolled back.
 */
exactly_err dlq_apply_records(replay *r, precs *pr, char *err, size_t errsz);

/*
 * After COMMIT failed without an answer (the connection is gone; err says
 * how): connects anew and asks what became of the replay's transaction
 * by the mark it wrote, xref (dlq_confirm.c, pg_xact.h). Sets
 * r->out->commit_lost and note, and rolled_back only when its mark is not
 * there and nothing is writing it.
 * EXACTLY_OK when it says committed, else fail.
 */
exactly_err dlq_confirm_commit(replay *r, const exactly_xact_ref *xref,
                               exactly_err fail, char *err, size_t errsz);

#endif
