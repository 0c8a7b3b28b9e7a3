/*
 * dlq_bisect.c - a partition's replayed records through the handler (see
 * dlq_replay_internal.h), by the engine's one bisect step
 * (engine/bisect.h); this file supplies its callbacks.
 *
 * The records go in chunks of at most batch.max_messages messages (at
 * least one record each), each under a savepoint of the replay's one
 * transaction (the step's tidy mode: nothing is left pending between
 * chunks). When apply() fails, or its SQL fails on the data, the chunk is
 * rolled back to its savepoint, split in halves and each half tried
 * again, down to a single record: that one stays a dead letter with the
 * failure's reason and SQLSTATE, and every other record is applied. What
 * the handler queued goes with its chunk, its outbox events (host->emit)
 * too: kept when the savepoint is released, undone when it is rolled
 * back. The applied records' dead letters are deleted later in the same
 * transaction (dlq_replay.c), so a record and its dead letter never both
 * survive nor both vanish.
 *
 * The records are to blame only for what the worker would bisect, judged
 * by the engine's one judgement (engine/judge.h): apply() returning an
 * error (not EXACTLY_ERETRY, EXACTLY_ENOMEM or EXACTLY_EFATAL), or a
 * statement of the handler failing with an SQLSTATE about the data.
 * Anything else (the connection, a timeout, a serialization failure or
 * deadlock, apply() asking for a retry) ends the replay: the caller rolls
 * the whole transaction back.
 */
#include "dlq_replay_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bisect.h"
#include "err.h"
#include "pg_conn.h"

/* What the bisect step's callbacks work on: one partition's records. */
typedef struct chunk_ctx {
    replay *r;
    const precs *pr;
} chunk_ctx;

/* The batch of records [first, first + n) of pr. */
static void batch_of(const replay *r, const precs *pr, size_t first, size_t n,
                     exactly_batch *b)
{
    const store_dl_row *row = &r->out->rows[pr->from];

    memset(b, 0, sizeof(*b));
    b->pipeline = r->p->name;
    /* A run's dead letters are applied as part of that run. */
    b->reprocess_run = r->s->run;
    b->topic = row->topic;
    b->partition = row->partition;
    b->records = &pr->recs[first];
    b->n_records = n;
    b->column_names = pr->with_rows ? r->colnames : NULL;
    b->n_columns = pr->with_rows ? r->n_cols : 0;
    b->id_type = exactly_id_type_name(r->p->id.type);
}

/* Sets the outcome of the pending rows of record idx: failed, with why
 * (reason and, when not empty, SQLSTATE). -1 when out of memory. */
static int fail_rows(replay *r, const precs *pr, size_t idx,
                     const char *reason, const char *sqlstate)
{
    ops_dlq_replayed *o = r->out;
    const exactly_record *rec = &pr->recs[idx];
    size_t k;

    for (k = 0; k < rec->n_messages; k++) {
        size_t m = dlq_record_row(pr, rec, k);
        if (o->outcome[m] != OPS_DL_PENDING)
            continue;
        o->outcome[m] = OPS_DL_FAILED;
        free(o->reason[m]);
        free(o->sqlstate[m]);
        o->reason[m] = strdup(reason);
        o->sqlstate[m] = sqlstate && *sqlstate ? strdup(sqlstate) : NULL;
        if (!o->reason[m] || (sqlstate && *sqlstate && !o->sqlstate[m]))
            return -1;
    }
    return 0;
}

/* After an applied chunk starting at record first: the records the
 * handler failed on purpose (fail_record) wrote nothing and stay dead
 * letters with its reason; the others are replayed. */
static int settle_chunk(replay *r, const precs *pr, size_t first, size_t n)
{
    exactly_txn *t = &r->txn;
    size_t j, k;
    int bad = 0;

    for (j = 0; j < t->n_fails; j++)
        if (t->fails[j].index < n &&
            fail_rows(r, pr, first + t->fails[j].index, t->fails[j].reason,
                      NULL) != 0)
            bad = -1;
    exactly_txn_forget_fails(t);
    /* The chunk's own rows only: a pass over the partition per chunk would
     * cost time while the transaction waits. */
    for (j = first; j < first + n; j++)
        for (k = 0; k < pr->recs[j].n_messages; k++) {
            size_t m = dlq_record_row(pr, &pr->recs[j], k);
            if (r->out->outcome[m] == OPS_DL_PENDING)
                r->out->outcome[m] = OPS_DL_REPLAYED;
        }
    return bad;
}

/* The replay cannot go on: err says what failed, where. */
static void describe(const replay *r, const precs *pr, const exactly_error *w,
                     char *err, size_t errsz)
{
    const store_dl_row *row = &r->out->rows[pr->from];

    snprintf(err, errsz, "handler '%s' failed on %s [%d]: %s%s%s%s",
             r->pl->h->name, row->topic, (int)row->partition, w->message,
             w->sqlstate[0] ? " (SQLSTATE " : "", w->sqlstate,
             w->sqlstate[0] ? ")" : "");
}

/* ---- the bisect step's callbacks (engine/bisect.h) ---------------------- */

/* Each chunk's pipeline starts anew in the replay's transaction. */
static exactly_err chunk_start(void *arg, exactly_txn *t)
{
    chunk_ctx *x = arg;

    return exactly_txn_start(t, x->r->conn, exactly_pg_wait_bound_ms(x->r->cfg));
}

static exactly_err chunk_apply(void *arg, exactly_txn *t, size_t first,
                               size_t n)
{
    chunk_ctx *x = arg;
    exactly_batch b;

    batch_of(x->r, x->pr, first, n, &b);
    return x->r->pl->h->apply(x->r->pl->state, t, &b);
}

static exactly_err chunk_applied(void *arg, exactly_txn *t, size_t first,
                                 size_t n)
{
    chunk_ctx *x = arg;

    (void)t;
    return settle_chunk(x->r, x->pr, first, n) == 0 ? EXACTLY_OK
                                                    : EXACTLY_ENOMEM;
}

/* A record that still fails alone stays a dead letter, with why. */
static exactly_err chunk_failed(void *arg, size_t idx, const exactly_error *w)
{
    chunk_ctx *x = arg;

    return fail_rows(x->r, x->pr, idx, w->message, w->sqlstate) == 0
               ? EXACTLY_OK
               : EXACTLY_ENOMEM;
}

static const engine_bisect_ops chunk_ops = {
    .start = chunk_start,
    .apply = chunk_apply,
    .applied = chunk_applied,
    .failed = chunk_failed,
    .tidy = 1,
};

exactly_err dlq_apply_records(replay *r, precs *pr, char *err, size_t errsz)
{
    chunk_ctx x = {r, pr};
    exactly_error w;
    exactly_err rc = EXACTLY_OK;
    size_t i = 0;

    exactly_error_clear(&w);
    while (rc == EXACTLY_OK && i < pr->n_recs) {
        size_t k = i, msgs_in = 0;

        while (k < pr->n_recs &&
               (k == i || msgs_in + pr->recs[k].n_messages <=
                              (size_t)r->p->batch.max_messages))
            msgs_in += pr->recs[k++].n_messages;
        rc = engine_bisect(&chunk_ops, &x, &r->txn, i, k - i, &w);
        i = k;
    }
    exactly_txn_finish(&r->txn);
    if (rc == EXACTLY_ENOMEM)
        snprintf(err, errsz, "%s", exactly_strerror(EXACTLY_ENOMEM));
    else if (rc != EXACTLY_OK)
        describe(r, pr, &w, err, errsz);
    if (rc != EXACTLY_OK)
        snprintf(r->sqlstate, sizeof(r->sqlstate), "%s", w.sqlstate);
    return rc;
}
