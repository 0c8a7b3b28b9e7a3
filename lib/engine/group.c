/*
 * group.c - several partitions' small batches in one transaction
 * (engine_run_group): BEGIN; per partition its fence, dedup and lookup,
 * its records grouped and the handler's apply() on them (one
 * exactly_batch per partition, as the ABI has it), its dead letters; one
 * COMMIT. Many partitions at a low rate each then cost a commit per
 * flush round, not one per partition.
 *
 * Only the plain case is grouped: partitions the crash guard has nothing
 * to ask about (serving), whose last batch ended well and whose position
 * was read on this connection (engine_groupable), optimistic (no
 * savepoint). Anything else - a fence refused, a handler failure, a
 * database error, a COMMIT without an answer - rolls the whole group back
 * and leaves each partition to run alone (engine_run), which knows
 * fences, careful mode, the crash guard, retries and unconfirmed commits:
 * a failure of one partition costs the others one rolled-back attempt,
 * never their isolation. A group counts nothing until it commits but
 * its rollback: one batch transaction rolled back.
 *
 * The phases per partition are attempt.c's, one partition at a time on
 * the engine's batch builder and dead letters: what a partition queues
 * (its parameters, its writes, its dead letters) is copied into the
 * pipeline when queued, so the next one may reuse them. A partition's
 * reads (dedup, lookup) need one round trip, which also carries the
 * previous partition's writes; without them the whole group is one.
 */
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

#include "clock.h"
#include "cycle_internal.h"
#include "log.h"
#include "pg_conn.h"

/* What the group keeps of each partition's attempt until COMMIT. */
typedef struct member_run {
    cycle c;
    uint64_t dead;          /* its dead letters */
    engine_stats delta;     /* dedup and skip counters its phases moved */
} member_run;

/*
 * The fused built-in upsert reads nothing but each record's ID (and the
 * batch's ID type): its writes for the whole group are one apply() on the
 * records of every partition, so the server runs its statements once per
 * transaction, not once per partition. The records are copied here,
 * because the batch builder is reused by the next partition: each carries
 * its ID and message count, and no messages (the fused upsert reads
 * none).
 */
typedef struct merged {
    exactly_record *recs;
    int64_t *vals;          /* their IDs' values (exactly_batch.id_values) */
    int no_vals;            /* a member came without values: none given */
    size_t n, cap;
    size_t *id_at;          /* where each record's ID starts in ids */
    strbuf ids;             /* the IDs, NUL-terminated, one after another */
} merged;

/* Whether the group's writes are one apply() (merged above). */
static int merges(const engine *e)
{
    return e->plugin->fused && e->plugin->h->skips_lookup;
}

/* Copies recs[0..n) (and vals[0..n), their IDs' values, or NULL: none)
 * into m; -1 when out of memory. */
static int merged_add(merged *m, const exactly_record *recs,
                      const int64_t *vals, size_t n)
{
    size_t i;

    if (!vals)
        m->no_vals = 1;
    if (m->n + n > m->cap) {
        size_t cap = (m->n + n) * 2;
        exactly_record *r = realloc(m->recs, cap * sizeof(*r));
        int64_t *v;
        size_t *at;
        if (!r)
            return -1;
        m->recs = r;
        v = realloc(m->vals, cap * sizeof(*v));
        if (!v)
            return -1;
        m->vals = v;
        at = realloc(m->id_at, cap * sizeof(*at));
        if (!at)
            return -1;
        m->id_at = at;
        m->cap = cap;
    }
    for (i = 0; i < n; i++) {
        memset(&m->recs[m->n], 0, sizeof(m->recs[m->n]));
        m->vals[m->n] = vals ? vals[i] : 0;
        m->recs[m->n].n_messages = recs[i].n_messages;
        m->id_at[m->n] = m->ids.len;
        strbuf_append(&m->ids, recs[i].id, strlen(recs[i].id) + 1);
        m->n++;
    }
    return m->ids.oom ? -1 : 0;
}

/* One apply() for every partition's records, queued on c (the last
 * partition's cycle: the batch names its topic and partition). */
static exactly_err merged_apply(engine *e, merged *m, cycle *c)
{
    exactly_err rc;
    size_t i;

    if (m->n == 0)
        return EXACTLY_OK;
    /* The arena is complete: the IDs no longer move. */
    for (i = 0; i < m->n; i++)
        m->recs[i].id = m->ids.data + m->id_at[i];
    rc = cycle_queue_apply(c, m->recs, m->no_vals ? NULL : m->vals, m->n);
    if (rc != EXACTLY_OK)
        return rc;
    /* A record failed on purpose: which partition's it is is not kept
     * here, so the group rolls back and each partition runs alone. */
    if (e->txn.n_fails > 0) {
        cycle_note(c, NULL, "a record failed inside a group");
        return EXACTLY_EHANDLER;
    }
    return EXACTLY_OK;
}

static void merged_free(merged *m)
{
    free(m->recs);
    free(m->vals);
    free(m->id_at);
    strbuf_free(&m->ids);
}

/* engine.h says what it does. */
int engine_groupable(const engine *e, const part *pt)
{
    return pt != e->held.pt && !part_state_stopped(pt->state) &&
           (pt->state == PART_S_SERVING ||
            (!e->pos.crash_guard && pt->state == PART_S_UNCHECKED)) &&
           pt->attempts == 0 && !pt->unconfirmed &&
           pt->missing_since_ms == 0 && pt->pos_conn == e->conn_serial &&
           !e->pos.applied_sql;
}

/* One partition's phases inside the group's transaction: fence, dedup,
 * lookup, its records, apply() (optimistic), its dead letters queued. */
static exactly_err member_queue(engine *e, const engine_group_member *m,
                                member_run *r, merged *mg, int fenced)
{
    attempt_state a;
    engine_stats before = e->st;
    exactly_err rc;

    memset(&a, 0, sizeof(a));
    a.n = m->n;
    a.end = m->end;
    a.grouped = 1;
    a.group_fenced = fenced;
    a.attempt_res = a.dedup_res = a.lookup_res = TXN_NO_RESULT;
    r->c.e = e;
    r->c.pt = m->pt;
    /* An attempt of this process at this start, for the crash guard. */
    engine_set_attempted(e, m->pt, m->pt->next_offset);
    cycle_fence_params(&r->c, &a);
    rc = cycle_phase_read(&r->c, &a);
    if (rc == EXACTLY_OK)
        rc = cycle_phase_group(&r->c, &a);
    if (rc == EXACTLY_OK && r->c.n_recs > 0 && mg) {
        /* Applied with the others' after the last partition. */
        if (merged_add(mg, r->c.recs, r->c.vals, r->c.n_recs) != 0) {
            cycle_note(&r->c, NULL, "out of memory");
            rc = EXACTLY_ENOMEM;
        }
    } else if (rc == EXACTLY_OK && r->c.n_recs > 0) {
        rc = cycle_queue_apply(&r->c, r->c.recs, r->c.vals, r->c.n_recs);
    }
    if (rc == EXACTLY_OK) {
        /* All or nothing: should a write fail, COMMIT is answered
         * ROLLBACK and none of this counts. */
        cycle_account_applied(&r->c, r->c.recs, r->c.n_recs);
        rc = dead_letters_send(&e->dl, &e->txn, e->sql.dead_letter,
                               e->pos.dl_key, m->pt->topic, a.part_s);
        if (rc != EXACTLY_OK)
            cycle_note(&r->c, NULL,
                       rc == EXACTLY_ENOMEM ? "out of memory" : e->txn.errmsg);
    }
    rc = cycle_phase_end(&r->c, &a, rc);
    r->dead = e->dl.count;
    r->delta.deduplicated = e->st.deduplicated - before.deduplicated;
    r->delta.skipped_missing = e->st.skipped_missing - before.skipped_missing;
    return rc;
}

/* The group committed: each partition moves on as a batch of its own
 * does, and the owner hears one batch_done each. */
static void group_committed(engine *e, const engine_group_member *m,
                            member_run *runs, size_t k, long long t0)
{
    long long elapsed = exactly_now_ms() - t0;
    size_t i;

    for (i = 0; i < k; i++) {
        engine_batch_report rep;

        cycle_committed(e, m[i].pt, &runs[i].c, m[i].n, m[i].end,
                        runs[i].dead);
        if (!e->ops->batch_done)
            continue;
        memset(&rep, 0, sizeof(rep));
        rep.rc = EXACTLY_OK;
        exactly_error_set_code(&rep.err, EXACTLY_OK);
        rep.delta = runs[i].delta;
        rep.delta.consumed = m[i].n;
        rep.delta.applied = runs[i].c.applied_msgs;
        rep.delta.dead_lettered = runs[i].dead;
        rep.delta.batches_committed = 1;
        rep.elapsed_ms = elapsed;
        e->ops->batch_done(e->ops_arg, m[i].pt, &rep);
    }
}

#ifndef EXACTLY_MUTATION_SPLIT_OFFSET_TXN
/* Queues one fence for every partition of the group (pos.group_fence_sql):
 * each row's compare-and-set of its batch's epoch and start, refused whole
 * (EX001: the group is fenced, each partition then runs alone) unless
 * every row matched. */
static exactly_err fence_all(engine *e, const engine_group_member *m,
                             size_t k)
{
    strbuf arr[5];
    const char *params[6];
    exactly_err rc = EXACTLY_OK;
    size_t i, j;

    memset(arr, 0, sizeof(arr));
    for (j = 0; j < 5; j++)
        strbuf_array_begin(&arr[j]);
    for (i = 0; i < k; i++) {
        const part *pt = m[i].pt;
        strbuf_array_elem_str(&arr[0], pt->topic);
        strbuf_array_elem_int(&arr[1], pt->partition);
        strbuf_array_elem_int(&arr[2], pt->epoch);
        strbuf_array_elem_int(&arr[3], pt->next_offset);
        strbuf_array_elem_int(&arr[4], m[i].end);
    }
    params[0] = e->pos.key;
    for (j = 0; j < 5; j++) {
        strbuf_array_end(&arr[j]);
        if (arr[j].oom)
            rc = EXACTLY_ENOMEM;
        params[j + 1] = strbuf_str(&arr[j]);
    }
    if (rc == EXACTLY_OK)
        rc = exactly_txn_send(&e->txn, TXN_FENCE, e->pos.group_fence_sql, 6,
                              params, NULL);
    for (j = 0; j < 5; j++)
        strbuf_free(&arr[j]);
    return rc;
}
#endif

/* engine.h says what it does. */
exactly_err engine_run_group(engine *e, const engine_group_member *m,
                             size_t k)
{
    engine_stats before = e->st;
    long long t0 = exactly_now_ms();
    member_run *runs;
    exactly_err rc;
    int commit_sent = 0;
    cycle last;                  /* the group's own: BEGIN and COMMIT */
    merged mg;
    int group_fence = 0;         /* one fence for all, sent */
    const cycle *failed = &last; /* where the failure was noted */
    size_t i;

    if (k == 0)
        return EXACTLY_OK;
    rc = engine_db_open(e);
    if (rc != EXACTLY_OK)
        return rc;
    for (i = 0; i < k; i++)
        if (m[i].n == 0 || !engine_groupable(e, m[i].pt))
            return EXACTLY_ERETRY; /* e.g. a new connection: alone */
    runs = calloc(k, sizeof(*runs));
    if (!runs)
        return EXACTLY_ENOMEM;
    memset(&last, 0, sizeof(last));
    memset(&mg, 0, sizeof(mg));
    last.e = e;
    rc = exactly_txn_start(&e->txn, e->conn, e->timeout_ms);
    if (rc == EXACTLY_OK)
        rc = exactly_txn_send(&e->txn, TXN_CONTROL, "BEGIN", 0, NULL, NULL);
#ifndef EXACTLY_MUTATION_SPLIT_OFFSET_TXN
    if (rc == EXACTLY_OK && e->pos.group_fence_sql) {
        rc = fence_all(e, m, k);
        group_fence = rc == EXACTLY_OK;
        if (rc != EXACTLY_OK)
            cycle_note(&last, NULL, rc == EXACTLY_ENOMEM ? "out of memory"
                                                          : e->txn.errmsg);
    }
#endif
    for (i = 0; i < k && rc == EXACTLY_OK; i++) {
        cycle_trace_batch(m[i].pt, m[i].n);
        rc = member_queue(e, &m[i], &runs[i], merges(e) ? &mg : NULL,
                          group_fence);
        if (rc != EXACTLY_OK)
            failed = &runs[i].c;
    }
    if (rc == EXACTLY_EFENCED && group_fence && failed != &last) {
        /* The group's one fence, read at this partition's sync: its error
         * names the partitions refused, not this one. */
        last.err = failed->err;
        failed = &last;
    }
    if (rc == EXACTLY_OK && merges(e)) {
        rc = merged_apply(e, &mg, &runs[k - 1].c);
        if (rc != EXACTLY_OK)
            failed = &runs[k - 1].c;
    }
    last.pt = m[k - 1].pt; /* judge needs one; the log names none */
    if (rc != EXACTLY_OK && failed == &last && !last.err.message[0])
        cycle_note(&last, NULL, e->txn.errmsg); /* the txn did not start */
    if (rc == EXACTLY_OK) {
        rc = exactly_txn_send(&e->txn, TXN_COMMIT, "COMMIT", 0, NULL, NULL);
        if (rc == EXACTLY_OK) {
            commit_sent = 1;
            /* With no member's reads to sync (the fused upsert, no
             * dedup), the group's fence and writes are answered only
             * here: a refusal or an error of theirs is an answer, not a
             * COMMIT of unknown outcome (last.err.commit_unknown). */
            rc = cycle_judge_commit(&last, exactly_txn_sync(&e->txn));
        }
    }
#ifdef EXACTLY_MUTATION_SPLIT_OFFSET_TXN
    /* Mutation: the offsets advance in a transaction of their own, after
     * the writes committed (as attempt.c's). */
    if (rc == EXACTLY_OK) {
        for (i = 0; i < k; i++) {
            attempt_state a;
            memset(&a, 0, sizeof(a));
            a.end = m[i].end;
            cycle_fence_params(&runs[i].c, &a);
            (void)exactly_txn_send(&e->txn, TXN_FENCE, e->pos.fence_sql, 6,
                                   a.fence_params, NULL);
            rc = cycle_judge_sync(&last, exactly_txn_sync(&e->txn));
            if (rc != EXACTLY_OK)
                break;
        }
    }
#endif
    exactly_log_set_trace(NULL);
    if (rc == EXACTLY_OK) {
        exactly_txn_finish(&e->txn);
        group_committed(e, m, runs, k, t0);
        exactly_log(EXACTLY_LOG_DEBUG, "cycle", "group committed",
                    LOG_UINT("partitions", k));
    } else {
        /* Nothing of it counts but the rollback: each partition runs
         * alone next, and counts what it does then. */
        e->st = before;
        e->st.batches_rolled_back++;
        if (failed != &last)
            /* It failed in this partition's part (a fence, its reads,
             * its records, apply()). */
            exactly_log(EXACTLY_LOG_INFO, "cycle",
                        "group rolled back; its partitions run alone",
                        LOG_UINT("partitions", k), LOG_PART(failed->pt),
                        LOG_STR("sqlstate",
                                exactly_error_sqlstate(&failed->err)),
                        LOG_INT("commit_sent", commit_sent),
                        LOG_STR("error", failed->err.message));
        else
            /* At COMMIT (a write that failed where no sync saw it, the
             * answer lost) or before BEGIN: no one partition's. */
            exactly_log(EXACTLY_LOG_INFO, "cycle",
                        "group rolled back; its partitions run alone",
                        LOG_UINT("partitions", k),
                        LOG_STR("sqlstate",
                                exactly_error_sqlstate(&failed->err)),
                        LOG_INT("commit_sent", commit_sent),
                        LOG_STR("error", failed->err.message));
        engine_rollback(e);
        if (last.err.commit_unknown) {
            /* Its outcome is unknown: each partition's own run reads its
             * stored row first, and counts the group's attempt if the row
             * shows it committed (as after a batch of its own). Not when
             * the server answered that nothing committed: a row moved
             * forward meanwhile (a reset) must not count as this group's
             * commit. */
            for (i = 0; i < k; i++) {
                part *pt = m[i].pt;
                pt->unconfirmed = 1;
                pt->unconfirmed_applied = runs[i].c.applied_msgs;
                pt->unconfirmed_dead = runs[i].dead;
                pt->unconfirmed_end = m[i].end;
                pt->attempts++;
            }
        }
        if (e->conn && failed->err.sqlstate[0] &&
            exactly_pg_needs_reconnect(failed->err.sqlstate))
            engine_db_lost(e);
    }
    for (i = 0; i < k; i++)
        free(runs[i].c.recs);
    free(runs);
    merged_free(&mg);
    return rc;
}
