/*
 * dlq_bisect.c - a partition's replayed records through the handler (see
 * dlq_replay_internal.h).
 *
 * The records go in chunks of at most batch.max_messages messages (at
 * least one record each), each under a SAVEPOINT of the replay's one
 * transaction. When apply() fails, or its SQL fails on the data, the
 * chunk is rolled back to its savepoint, split in halves and each half
 * tried again, down to a single record: that one stays a dead letter with
 * the failure's reason and SQLSTATE, and every other record is applied.
 * What the handler queued goes with its chunk, its outbox events
 * (host->emit) too: kept when the savepoint is released, undone when it is
 * rolled back. The applied records' dead letters are deleted later in the
 * same transaction (dlq_replay.c), so a record and its dead letter never
 * both survive nor both vanish.
 *
 * The records are to blame only for what the worker would bisect, judged
 * by the engine's one judgement (engine/judge.h): apply() returning an
 * error (not EXACTLY_ERETRY, EXACTLY_ENOMEM or EXACTLY_EFATAL), or a
 * statement of the handler failing with an SQLSTATE about the data.
 * Anything else (the connection, a timeout, a serialization failure of
 * the fused upsert's snapshot, apply() asking for a retry) ends the
 * replay: the caller rolls the whole transaction back.
 */
#include "dlq_replay_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "judge.h"
#include "pg_conn.h"

#define SAVEPOINT "SAVEPOINT exactly_replay"
#define RELEASE "RELEASE SAVEPOINT exactly_replay"
#define ROLLBACK_TO "ROLLBACK TO SAVEPOINT exactly_replay"

/* The txn's error, or what rc says when the txn has no words for it (a
 * statement that could not be queued). */
static void note_txn(exactly_error *w, const exactly_txn *t, exactly_err rc)
{
    exactly_error_note(w, t->sqlstate,
                       t->errmsg[0] ? t->errmsg : exactly_strerror(rc));
}

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

/* Undoes the chunk's writes in a sync of its own (a statement queued
 * behind a failed one would be skipped). */
static exactly_err roll_back_chunk(replay *r, exactly_error *w)
{
    exactly_txn *t = &r->txn;
    exactly_err rc;

    rc = exactly_txn_send(t, TXN_CONTROL, ROLLBACK_TO, 0, NULL, NULL);
    if (rc == EXACTLY_OK)
        rc = exactly_txn_send(t, TXN_CONTROL, RELEASE, 0, NULL, NULL);
    if (rc == EXACTLY_OK)
        rc = exactly_txn_sync(t);
    if (rc != EXACTLY_OK)
        note_txn(w, t, rc);
    return rc;
}

/* Applies records [first, first + n) under a savepoint. EXACTLY_OK: their
 * writes are part of the transaction (records the handler failed with
 * fail_record() are left in r->txn.fails); EXACTLY_EHANDLER: these records
 * failed and are rolled back, why in w; anything else ends the replay. */
static exactly_err try_chunk(replay *r, const precs *pr, size_t first,
                             size_t n, exactly_error *w)
{
    exactly_txn *t = &r->txn;
    exactly_batch b;
    exactly_err rc, s;
    exactly_error undo;

    batch_of(r, pr, first, n, &b);
    rc = exactly_txn_start(t, r->conn, exactly_pg_wait_bound_ms(r->cfg));
    if (rc == EXACTLY_OK)
        rc = exactly_txn_send(t, TXN_CONTROL, SAVEPOINT, 0, NULL, NULL);
    if (rc != EXACTLY_OK) {
        note_txn(w, t, rc);
        return rc;
    }
    rc = engine_judge_apply(t, r->pl->h->apply(r->pl->state, t, &b), w);
    if (rc == EXACTLY_OK) {
        rc = exactly_txn_send(t, TXN_HANDLER, RELEASE, 0, NULL, NULL);
        if (rc != EXACTLY_OK) {
            note_txn(w, t, rc);
            (void)exactly_txn_sync(t); /* apply()'s, left queued */
            return rc;
        }
        rc = engine_judge_sync(t, exactly_txn_sync(t), w);
        if (rc == EXACTLY_OK)
            return EXACTLY_OK;
    } else {
        /* What apply() queued before it failed runs now (nothing may be
         * left queued when the pipeline ends): an error of it is part of
         * the same failure, a lost connection is not. */
        s = exactly_txn_sync(t);
        if (rc == EXACTLY_EHANDLER && s != EXACTLY_OK &&
            PQstatus(r->conn) != CONNECTION_OK)
            return engine_judge_sync(t, s, w);
    }
    if (rc != EXACTLY_EHANDLER)
        return rc;
    s = roll_back_chunk(r, &undo);
    if (s != EXACTLY_OK) {
        *w = undo;
        return s;
    }
    return EXACTLY_EHANDLER;
}

/* Sets the outcome of the pending rows of record idx: failed, with why
 * (reason and, when not empty, SQLSTATE). -1 when out of memory. */
static int fail_rows(replay *r, const precs *pr, size_t idx,
                     const char *reason, const char *sqlstate)
{
    ops_dlq_replayed *o = r->out;
    size_t m;

    for (m = pr->from; m < pr->to; m++) {
        if (o->outcome[m] != OPS_DL_PENDING || r->record[m] != idx)
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
    size_t j, m;
    int bad = 0;

    for (j = 0; j < t->n_fails; j++)
        if (t->fails[j].index < n &&
            fail_rows(r, pr, first + t->fails[j].index, t->fails[j].reason,
                      NULL) != 0)
            bad = -1;
    exactly_txn_forget_fails(t);
    for (m = pr->from; m < pr->to; m++)
        if (r->out->outcome[m] == OPS_DL_PENDING && r->record[m] >= first &&
            r->record[m] < first + n)
            r->out->outcome[m] = OPS_DL_REPLAYED;
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

/* Applies records [first, first + n), splitting them while they fail. */
static exactly_err bisect(replay *r, const precs *pr, size_t first, size_t n,
                          char *err, size_t errsz)
{
    exactly_err rc;
    exactly_error w;

    if (n == 0)
        return EXACTLY_OK;
    rc = try_chunk(r, pr, first, n, &w);
    if (rc == EXACTLY_OK)
        return settle_chunk(r, pr, first, n) == 0 ? EXACTLY_OK
                                                  : EXACTLY_ENOMEM;
    if (rc != EXACTLY_EHANDLER) {
        describe(r, pr, &w, err, errsz);
        return rc;
    }
    if (n == 1)
        return fail_rows(r, pr, first, w.message, w.sqlstate) == 0
                   ? EXACTLY_OK
                   : EXACTLY_ENOMEM;
    rc = bisect(r, pr, first, n / 2, err, errsz);
    if (rc == EXACTLY_OK)
        rc = bisect(r, pr, first + n / 2, n - n / 2, err, errsz);
    return rc;
}

exactly_err dlq_apply_records(replay *r, precs *pr, char *err, size_t errsz)
{
    exactly_err rc = EXACTLY_OK;
    size_t i = 0;

    while (rc == EXACTLY_OK && i < pr->n_recs) {
        size_t k = i, msgs_in = 0;

        while (k < pr->n_recs &&
               (k == i || msgs_in + pr->recs[k].n_messages <=
                              (size_t)r->p->batch.max_messages))
            msgs_in += pr->recs[k++].n_messages;
        rc = bisect(r, pr, i, k - i, err, errsz);
        i = k;
    }
    exactly_txn_finish(&r->txn);
    if (rc == EXACTLY_ENOMEM)
        snprintf(err, errsz, "%s", exactly_strerror(EXACTLY_ENOMEM));
    return rc;
}
