/*
 * attempt.c - one attempt at a batch transaction (DESIGN section 2), in
 * phases that share an attempt_state:
 *
 *   start:  the crash guard (guard.c: asked only on the first batch after
 *           a claim and while isolating), the fence's parameters
 *   read:   BEGIN; fence (compare-and-set of the offset row); dedup;
 *           lookup [sync]
 *   group:  the batch's records by the lookup's rows and the on_missing
 *           policy; what cannot be applied goes to the dead letters
 *   apply:  the handler's writes (optimistic, or careful: bisected,
 *           apply.c); dead letters; COMMIT [sync]
 *
 * The fence raises an error when it matches no row, so a batch needs a
 * sync between the read phase and the writes only when the writes depend
 * on what was read (dedup, lookup).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "cycle_internal.h"
#include "fault.h"
#include "log.h"
#include "pg_conn.h"

#define N_FENCE_PARAMS 6

_Static_assert(sizeof(exactly_record) % _Alignof(int64_t) == 0,
               "the IDs' values follow the records in one allocation");

/* Builds c->recs from the grouped batch by the on_missing policy. */
exactly_err cycle_select_records(cycle *c, int looked_up, size_t *skipped)
{
    engine *e = c->e;
    batch_builder *b = &e->bb;
    size_t i;

    *skipped = 0;
    free(c->recs);
    c->vals = NULL;
    /* The values after the records, in one allocation (freed with recs;
     * exactly_record's size keeps them aligned). Not zeroed: only the
     * first n_recs of each are read, and each of those is written below. */
    c->recs = malloc((b->n_records + 1) *
                     (sizeof(exactly_record) + sizeof(int64_t)));
    if (!c->recs)
        return EXACTLY_ENOMEM;
    if (e->p->id.type == CFG_ID_BIGINT)
        c->vals = (int64_t *)(void *)(c->recs + b->n_records + 1);
    c->n_recs = 0;
    for (i = 0; i < b->n_records; i++) {
        const exactly_record *r = &b->records[i];
        if (looked_up && r->n_rows == 0) {
            switch (e->p->lookup.on_missing) {
            case CFG_MISSING_SKIP:
                *skipped += r->n_messages;
                continue;
            case CFG_MISSING_DEAD_LETTER:
                cycle_dl_record(c, r, "lookup found no row", NULL);
                c->failed_msgs += r->n_messages;
                continue;
            case CFG_MISSING_HANDLER:
                break;
            case CFG_MISSING_RETRY: {
                /* The row may still be on its way (a replica, a writer that
                 * commits after it publishes): wait a bounded time, then
                 * dead-letter. */
                long long now = exactly_now_ms();
                char msg[256];
                if (c->pt->missing_since_ms == 0)
                    c->pt->missing_since_ms = now;
                if (now - c->pt->missing_since_ms < e->p->lookup.missing_retry_ms) {
                    snprintf(msg, sizeof(msg),
                             "lookup found no row for id %s; retrying for up "
                             "to %d ms",
                             r->id, e->p->lookup.missing_retry_ms);
                    cycle_note(c, NULL, msg);
                    return EXACTLY_ERETRY;
                }
                cycle_dl_record(c, r, "lookup found no row (retried)",
                              NULL);
                c->failed_msgs += r->n_messages;
                continue;
            }
            }
        }
        if (c->vals)
            c->vals[c->n_recs] = b->rec_vals[i];
        c->recs[c->n_recs++] = *r;
    }
    return EXACTLY_OK;
}

/* A position that counts what it applied (a reprocess run) does so in
 * the batch's transaction. */
static exactly_err queue_applied(cycle *c, uint64_t applied)
{
    engine *e = c->e;
    char n_s[24];
    const char *params[2] = {e->pos.key, n_s};

    if (!e->pos.applied_sql)
        return EXACTLY_OK;
    snprintf(n_s, sizeof(n_s), "%" PRIu64, applied);
    return exactly_txn_send(&e->txn, TXN_DEAD_LETTER, e->pos.applied_sql, 2,
                            params, NULL);
}

/* The transaction queued, COMMIT included, may be held (engine.h): the
 * owner allows it and nothing of it is kept to be read. The batch held
 * before it, if any, is read first (its answers come first); a failed
 * one is settled only once this transaction's answers are read, on a
 * quiet connection, so this one is then synced at once. Returns 1 when
 * held, else 0 with *rc the outcome of sending when that failed
 * (EXACTLY_OK: sync as usual). */
static int hold(cycle *c, exactly_err *rc)
{
    engine *e = c->e;

    *rc = EXACTLY_OK;
    /* A first attempt only: a retry learns at once what failed (a
     * handler's failure sends it to careful mode). */
    if (!e->pipeline_ok || !e->ops->batch_done || c->n_recs == 0 ||
        c->pt->attempts != 0)
        return 0;
    if (exactly_txn_flush(&e->txn) != 0)
        return 0; /* the sync finds the connection broken */
    if (e->held.pt)
        cycle_held_read(e);
    if (e->held.pt && e->held.rc != EXACTLY_OK)
        return 0;
    *rc = exactly_txn_sync_later(&e->txn);
    if (*rc == EXACTLY_OK) {
        c->held = 1;
        return 1;
    }
    if (*rc == EXACTLY_EINVAL)
        *rc = EXACTLY_OK;
    return 0;
}

/* Queues the dead letters, the position's applied count, COMMIT, and
 * syncs (or, may_hold, holds: hold()). */
static exactly_err commit(cycle *c, const char *part_s, uint64_t applied,
                          int *commit_sent, int may_hold)
{
    engine *e = c->e;
    exactly_err rc = dead_letters_send(&e->dl, &e->txn, e->sql.dead_letter,
                                       e->pos.dl_key,
                                       c->pt->topic, part_s);

    if (rc == EXACTLY_OK)
        rc = queue_applied(c, applied);
    /* Test-only (fault.h): a statement that fails inside the
     * transaction, after the writes, before COMMIT. */
    if (rc == EXACTLY_OK && EXACTLY_FAULT("commit_segment"))
        rc = exactly_txn_send(&e->txn, TXN_DEAD_LETTER, "SELECT 1/0", 0, NULL,
                              NULL);
    if (rc == EXACTLY_OK)
        rc = exactly_txn_send(&e->txn, TXN_COMMIT, "COMMIT", 0, NULL, NULL);
    if (rc != EXACTLY_OK) {
        cycle_note(c, NULL, rc == EXACTLY_ENOMEM ? "out of memory" : e->txn.errmsg);
        return rc;
    }
    *commit_sent = 1;
    if (may_hold && (hold(c, &rc) || rc != EXACTLY_OK))
        return rc == EXACTLY_OK ? rc : cycle_judge_commit(c, rc);
    return cycle_judge_commit(c, exactly_txn_sync(&e->txn));
}

/* cycle_internal.h says what it does. */
void cycle_held_read(engine *e)
{
    cycle c;
    exactly_err rc;

    if (!e->held.pt || e->held.read)
        return;
    memset(&c, 0, sizeof(c));
    c.e = e;
    c.pt = e->held.pt;
    rc = cycle_judge_commit(&c, exactly_txn_read_held(&e->txn));
    if (rc != EXACTLY_OK && !c.err.message[0])
        cycle_note(&c, e->txn.sqlstate, e->txn.errmsg);
    e->held.rc = rc;
    e->held.err = c.err;
    e->held.read = 1;
}

/* ---- the phases --------------------------------------------------------- */

/* Starts the txn, marks the attempt with the crash guard (which may shrink
 * the batch to one record: *n_io, *end_io) and fills in the fence. */
static exactly_err phase_start(cycle *c, attempt_state *a, size_t *n_io,
                               int64_t *end_io)
{
    engine *e = c->e;
    part *pt = c->pt;
    exactly_err rc;

    rc = exactly_txn_start(&e->txn, e->conn, e->timeout_ms);
    if (rc != EXACTLY_OK) {
        cycle_note(c, NULL, e->txn.errmsg);
        return rc;
    }
    if (a->n > 0 && e->pos.crash_guard) {
        rc = cycle_guard(c, &a->n, &a->end, &a->dead_only, &a->attempt_res);
        engine_set_attempted(e, pt, pt->next_offset);
        if (rc != EXACTLY_OK)
            return rc;
        *n_io = a->n;
        *end_io = a->end;
    }
    cycle_fence_params(c, a);
    return EXACTLY_OK;
}

/* cycle_internal.h says what it does. */
void cycle_fence_params(cycle *c, attempt_state *a)
{
    engine *e = c->e;
    part *pt = c->pt;

    snprintf(a->part_s, sizeof(a->part_s), "%d", (int)pt->partition);
    snprintf(a->epoch_s, sizeof(a->epoch_s), "%" PRId64, pt->epoch);
    snprintf(a->start_s, sizeof(a->start_s), "%" PRId64, pt->next_offset);
    snprintf(a->end_s, sizeof(a->end_s), "%" PRId64, a->end);
    a->fence_params[0] = e->pos.key;
    a->fence_params[1] = pt->topic;
    a->fence_params[2] = a->part_s;
    a->fence_params[3] = a->epoch_s;
    a->fence_params[4] = a->start_s;
    a->fence_params[5] = a->end_s;
}

/* The record the crash guard gave up on goes to the dead letters alone:
 * nothing else of this batch runs. */
static void dead_letter_only(cycle *c, attempt_state *a)
{
    engine *e = c->e;
    char reason[160];
    batch_msg *bm = &e->bb.msgs[0];

    snprintf(reason, sizeof(reason),
             "the handler killed the worker %d times on this record alone; "
             "not applied",
             e->p->max_crashes);
    cycle_dl_message(c, bm->rk->offset, bm->rk->key, bm->rk->key_len, bm->id, reason);
    c->failed_msgs++;
    a->n = 0;
}

/* cycle_internal.h says what it does. */
exactly_err cycle_phase_read(cycle *c, attempt_state *a)
{
    engine *e = c->e;
    part *pt = c->pt;
    const exactly_handler *h = e->plugin->h;
    exactly_err rc;

    if (a->n > 0) {
        rc = batch_build(&e->bb, e->p, pt->buf, a->n);
        if (rc == EXACTLY_OK && !h->skips_lookup && e->bb.n_ids > 0)
            rc = batch_ids_param(&e->bb);
        if (rc != EXACTLY_OK) {
            cycle_note(c, NULL, "out of memory building the batch");
            return rc;
        }
    }
    dead_letters_reset(&e->dl);
    if (!a->grouped)
        (void)exactly_txn_send(&e->txn, TXN_CONTROL, "BEGIN", 0, NULL, NULL);
#ifndef EXACTLY_MUTATION_SPLIT_OFFSET_TXN
    if (!a->group_fenced)
        (void)exactly_txn_send(&e->txn, TXN_FENCE, e->pos.fence_sql,
                               N_FENCE_PARAMS, a->fence_params, NULL);
#endif
    if (a->dead_only)
        dead_letter_only(c, a);
    /* A reprocess re-applies on purpose: its position has no dedup. */
    if (a->n > 0 && e->pos.dedup &&
        e->bb.dedup_keys.n_elems > 0) {
        const char *dp[5] = {e->p->name, pt->topic, a->part_s,
                             strbuf_str(&e->bb.dedup_keys),
                             strbuf_str(&e->bb.dedup_offs)};
        (void)exactly_txn_send(&e->txn, TXN_DEDUP, e->sql.dedup, 5, dp,
                               &a->dedup_res);
        a->need_sync = 1;
    }
    if (a->n > 0 && !h->skips_lookup && e->bb.n_ids > 0) {
        /* The IDs as a binary array: the server parses no text. */
        int len[1] = {e->bb.ids_len}, fmt[1] = {1};
        const char *lp[1] = {e->bb.ids_data};
        (void)exactly_txn_send_params(&e->txn, TXN_LOOKUP, e->lookup_sql, 1,
                                      lp, len, fmt, &a->lookup_res);
        a->need_sync = 1;
        a->looked_up = 1;
    }
    if (a->need_sync)
        return cycle_judge_sync(c, exactly_txn_sync(&e->txn));
    return EXACTLY_OK;
}

/* cycle_internal.h says what it does. */
exactly_err cycle_phase_group(cycle *c, attempt_state *a)
{
    engine *e = c->e;
    char errbuf[512];
    exactly_err rc;
    size_t i;

    if (a->n == 0)
        return EXACTLY_OK;
    rc = batch_apply_dedup(&e->bb, exactly_txn_result(&e->txn, a->dedup_res));
    if (rc != EXACTLY_OK) {
        cycle_note(c, NULL, "out of memory applying dedup");
        return rc;
    }
    rc = batch_group(&e->bb, exactly_txn_result(&e->txn, a->lookup_res),
                     e->key_column, &a->skipped, errbuf, sizeof(errbuf));
    if (rc != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_ERROR, "cycle",
                    "cannot match the lookup's rows to the batch",
                    LOG_PART(c->pt), LOG_STR("error", errbuf));
        cycle_note(c, NULL, errbuf);
        return EXACTLY_EDATABASE;
    }
    for (i = 0; i < e->bb.n_msgs; i++) {
        batch_msg *bm = &e->bb.msgs[i];
        if (bm->dead) {
            cycle_dl_message(c, bm->rk->offset, bm->rk->key, bm->rk->key_len, NULL, bm->reason);
            c->failed_msgs++;
        }
    }
    return cycle_select_records(c, a->looked_up, &a->skipped);
}

/*
 * An extra writer (engine.extra_writer) handed records its lookup found no
 * row for to the handler (on_missing: handler), which may have deleted
 * their target rows (the upsert's delete_missing, a C handler's own). A
 * row that does not exist cannot be locked: the source row may have been
 * inserted since the lookup, and the live worker may have written the
 * target row from it and committed, which such a delete then removed.
 * So, after the handler's writes, the lookup runs again for those IDs:
 * a row found now was committed before this statement, and before any
 * target write of the worker's from it, so the batch was applied from a
 * read that no longer holds and is rolled back to run again
 * (EXACTLY_ERETRY), when its lookup finds the row. A source row inserted
 * later is written by the worker after this transaction ends (the
 * target row a delete of it removed stays locked to COMMIT, and one it
 * did not find it did not remove). EXACTLY_OK when none was found; the
 * worker's own batches never come here.
 */
static exactly_err recheck_missing(cycle *c, const attempt_state *a)
{
    engine *e = c->e;
    strbuf ids = {0};
    strset missing = {0};
    const char *params[1];
    txn_result found = TXN_NO_RESULT;
    const PGresult *res;
    exactly_err rc;
    size_t i, n = 0;

    if (!e->extra_writer || !a->looked_up)
        return EXACTLY_OK;
    strbuf_array_begin(&ids);
    if (strset_reset(&missing, c->n_recs + 1) != 0)
        ids.oom = 1;
    for (i = 0; i < c->n_recs && !ids.oom; i++)
        if (c->recs[i].n_rows == 0) {
            strbuf_array_elem_str(&ids, c->recs[i].id);
            if (strset_add(&missing, c->recs[i].id) < 0)
                ids.oom = 1;
            n++;
        }
    strbuf_array_end(&ids);
    if (n == 0 || ids.oom) {
        strbuf_free(&ids);
        strset_free(&missing);
        if (!ids.oom)
            return EXACTLY_OK;
        cycle_note(c, NULL, "out of memory looking up missing rows again");
        return EXACTLY_ENOMEM;
    }
    params[0] = strbuf_str(&ids);
    (void)exactly_txn_send(&e->txn, TXN_LOOKUP, e->lookup_sql, 1, params,
                           &found);
    strbuf_free(&ids);
    rc = cycle_judge_sync(c, exactly_txn_sync(&e->txn));
    res = rc == EXACTLY_OK ? exactly_txn_result(&e->txn, found) : NULL;
    n = res ? batch_rows_naming(res, e->key_column, &missing) : 0;
    strset_free(&missing);
    if (n > 0) {
        exactly_log(EXACTLY_LOG_WARN, "cycle",
                    "a source row the lookup did not find was inserted "
                    "before the batch committed; the batch runs again",
                    LOG_PART(c->pt),
                    LOG_INT("offset", c->recs[0].messages[0].offset));
        cycle_note(c, NULL, "a source row the lookup did not find was "
                            "inserted meanwhile");
        rc = EXACTLY_ERETRY;
    }
    return rc;
}

/* The handler's writes and COMMIT: careful (a savepoint, bisected on a
 * failure) or optimistic (no savepoint; when nothing was read and no
 * record failed, one round trip for the whole batch). */
static exactly_err phase_apply(cycle *c, attempt_state *a, int careful,
                               int *commit_sent)
{
    engine *e = c->e;
    exactly_err rc;
    size_t i;
    int may_hold;

    if (c->n_recs > 0 && careful) {
        /* Retry the whole set once inside a savepoint, then bisect. */
        rc = cycle_bisect(c);
        if (rc != EXACTLY_OK)
            return rc;
    } else if (c->n_recs > 0) {
        /* Optimistic: no savepoint (a subtransaction costs the server on
         * every batch); a handler failure sends the batch back through
         * careful mode. */
        rc = cycle_queue_apply(c, c->recs, c->vals, c->n_recs);
        if (rc != EXACTLY_OK)
            return rc;
#ifdef EXACTLY_MUTATION_SPLIT_OFFSET_TXN
        a->need_sync = 1; /* the mutation's separate offset update follows COMMIT */
#endif
        if (!a->need_sync && e->txn.n_fails == 0) {
            /* Nothing was read: one round trip for the whole batch. No
             * record failed in this path (n_fails == 0): all of them
             * count, known before the answer in case none comes. */
            uint64_t all = 0;
            for (i = 0; i < c->n_recs; i++)
                all += c->recs[i].n_messages;
            c->applied_msgs = all;
            return commit(c, a->part_s, all, commit_sent, 1);
        }
        rc = cycle_judge_sync(c, exactly_txn_sync(&e->txn));
        if (rc != EXACTLY_OK)
            return rc;
        cycle_account_applied(c, c->recs, c->n_recs);
    }
    rc = recheck_missing(c, a);
    if (rc != EXACTLY_OK)
        return rc;
    /* Held too after the writes' answers (not in careful mode, whose
     * report keeps what sent it there). */
    may_hold = !careful;
#ifdef EXACTLY_MUTATION_SPLIT_OFFSET_TXN
    may_hold = 0; /* the mutation syncs once more after COMMIT */
#endif
    rc = commit(c, a->part_s, c->applied_msgs, commit_sent, may_hold);
#ifdef EXACTLY_MUTATION_SPLIT_OFFSET_TXN
    /* Mutation: the offset advances in a transaction of its own, after the
     * writes committed: a crash in between applies the batch twice. */
    if (rc == EXACTLY_OK) {
        (void)exactly_txn_send(&e->txn, TXN_FENCE, e->pos.fence_sql,
                               N_FENCE_PARAMS, a->fence_params, NULL);
        rc = cycle_judge_sync(c, exactly_txn_sync(&e->txn));
    }
#endif
    return rc;
}

/* cycle_internal.h says what it does. */
exactly_err cycle_phase_end(cycle *c, attempt_state *a, exactly_err rc)
{
    engine *e = c->e;
    size_t i;

    if (rc == EXACTLY_OK) {
        size_t dups = 0;
        for (i = 0; i < e->bb.n_msgs && a->n > 0; i++)
            dups += e->bb.msgs[i].duplicate ? 1 : 0;
        e->st.deduplicated += dups;
        e->st.skipped_missing += a->skipped;
    } else if (!c->err.message[0]) {
        cycle_note(c, e->txn.sqlstate, e->txn.errmsg);
    }
    return rc;
}

/* cycle_internal.h says what it does. */
exactly_err cycle_attempt(cycle *c, size_t *n_io, int64_t *end_io,
                          int *commit_sent, int careful)
{
    attempt_state a;
    exactly_err rc;

    memset(&a, 0, sizeof(a));
    a.n = *n_io;
    a.end = *end_io;
    a.attempt_res = a.dedup_res = a.lookup_res = TXN_NO_RESULT;
    /* A txn that did not start leaves nothing for phase_end to do: the
     * reason is noted already. */
    rc = phase_start(c, &a, n_io, end_io);
    if (rc == EXACTLY_OK)
        rc = cycle_phase_read(c, &a);
    if (rc == EXACTLY_OK)
        rc = cycle_phase_group(c, &a);
    if (rc == EXACTLY_OK)
        rc = phase_apply(c, &a, careful, commit_sent);
    return cycle_phase_end(c, &a, rc);
}
