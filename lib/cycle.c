/*
 * cycle.c - one batch transaction (DESIGN section 2):
 *
 *   BEGIN; fence (compare-and-set of the offset row); dedup; lookup
 *   [sync] handler writes; dead letters; COMMIT [sync]
 *
 * The fence raises an error when it matches no row, so a batch needs a sync
 * between the read phase and the writes only when the writes depend on
 * what was read (dedup, lookup). When the handler fails, the transaction is
 * rolled back and the batch runs again in careful mode: the handler's
 * writes go inside a savepoint, the whole set is retried once, then
 * bisected to find the failing records, which go to the dead-letter table
 * in the same transaction as the rest.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pg_conn.h"
#include "worker_internal.h"

typedef struct cycle {
    worker *w;
    part *pt;
    exactly_record *recs; /* what the handler gets, after skip/dead-letter */
    size_t n_recs;
    uint64_t applied_msgs;
    uint64_t failed_msgs;
} cycle;

static void dl_reset(worker *w)
{
    strbuf_reset(&w->dl_offs);
    strbuf_reset(&w->dl_keys);
    strbuf_reset(&w->dl_ids);
    strbuf_reset(&w->dl_reasons);
    strbuf_reset(&w->dl_states);
    strbuf_array_begin(&w->dl_offs);
    strbuf_array_begin(&w->dl_keys);
    strbuf_array_begin(&w->dl_ids);
    strbuf_array_begin(&w->dl_reasons);
    strbuf_array_begin(&w->dl_states);
    w->dl_count = 0;
}

static void dl_add(worker *w, int64_t offset, const void *key, size_t key_len,
                   const char *id, const char *reason, const char *sqlstate)
{
    strbuf_array_elem_int(&w->dl_offs, (long long)offset);
    strbuf_array_elem_hex(&w->dl_keys, key, key_len);
    strbuf_array_elem_str(&w->dl_ids, id);
    strbuf_array_elem_str(&w->dl_reasons, reason);
    strbuf_array_elem_str(&w->dl_states,
                          sqlstate && sqlstate[0] ? sqlstate : NULL);
    w->dl_count++;
}

static void dl_add_record(worker *w, const exactly_record *r,
                          const char *reason, const char *sqlstate)
{
    size_t i;

    for (i = 0; i < r->n_messages; i++)
        dl_add(w, r->messages[i].offset, r->messages[i].key,
               r->messages[i].key_len, r->id, reason, sqlstate);
}

static exactly_err dl_send(worker *w, part *pt, const char *part_s)
{
    const char *params[8];

    if (w->dl_count == 0)
        return EXACTLY_OK;
    strbuf_array_end(&w->dl_offs);
    strbuf_array_end(&w->dl_keys);
    strbuf_array_end(&w->dl_ids);
    strbuf_array_end(&w->dl_reasons);
    strbuf_array_end(&w->dl_states);
    if (w->dl_offs.oom || w->dl_keys.oom || w->dl_ids.oom ||
        w->dl_reasons.oom || w->dl_states.oom)
        return EXACTLY_ENOMEM;
    params[0] = w->dl_key ? w->dl_key : w->p->name;
    params[1] = pt->topic;
    params[2] = part_s;
    params[3] = strbuf_str(&w->dl_offs);
    params[4] = strbuf_str(&w->dl_keys);
    params[5] = strbuf_str(&w->dl_ids);
    params[6] = strbuf_str(&w->dl_reasons);
    params[7] = strbuf_str(&w->dl_states);
    return exactly_txn_send(&w->txn, TXN_DEAD_LETTER, w->sql.dead_letter, 8,
                            params, NULL);
}

/* Queues SAVEPOINT, the handler's writes for recs[0..n) and RELEASE.
 * Returns EXACTLY_EHANDLER when apply() itself refused (the savepoint is
 * then rolled back by a queued ROLLBACK TO). */
static exactly_err queue_apply(cycle *c, exactly_record *recs, size_t n,
                               int savepoint)
{
    worker *w = c->w;
    exactly_batch b;
    exactly_err rc;

    memset(&b, 0, sizeof(b));
    b.pipeline = w->p->name;
    b.topic = c->pt->topic;
    b.partition = c->pt->partition;
    b.records = recs;
    b.n_records = n;
    b.column_names = w->bb.colnames;
    b.n_columns = w->bb.n_columns;
    b.id_type = exactly_id_type_name(w->p->id.type);
    b.reprocess_run = w->reprocess_run;

    exactly_txn_forget_fails(&w->txn);
    if (savepoint) {
        rc = exactly_txn_send(&w->txn, TXN_CONTROL, "SAVEPOINT exactly_apply",
                              0, NULL, NULL);
        if (rc != EXACTLY_OK)
            return rc;
    }
    rc = w->plugin->h->apply(w->plugin->state, &w->txn, &b);
    if (rc != EXACTLY_OK) {
        if (!w->txn.handler_err_set)
            snprintf(w->txn.handler_err, sizeof(w->txn.handler_err),
                     "apply() returned %d", (int)rc);
        w->txn.handler_err_set = 1;
        if (savepoint)
            (void)exactly_txn_send(&w->txn, TXN_CONTROL,
                                   "ROLLBACK TO SAVEPOINT exactly_apply", 0,
                                   NULL, NULL);
        return EXACTLY_EHANDLER;
    }
    if (!savepoint)
        return EXACTLY_OK;
    return exactly_txn_send(&w->txn, TXN_HANDLER,
                            "RELEASE SAVEPOINT exactly_apply", 0, NULL, NULL);
}

/* Records the handler failed on purpose (fail_record) go to dead letters;
 * the rest count as applied. Call only once their writes are known to be
 * part of the transaction. */
static void account_applied(cycle *c, exactly_record *recs, size_t n)
{
    worker *w = c->w;
    size_t i;

    for (i = 0; i < n; i++)
        c->applied_msgs += recs[i].n_messages;
    for (i = 0; i < w->txn.n_fails; i++) {
        size_t idx = w->txn.fails[i].index;
        if (idx >= n)
            continue;
        dl_add_record(w, &recs[idx], w->txn.fails[i].reason, NULL);
        c->applied_msgs -= recs[idx].n_messages;
        c->failed_msgs += recs[idx].n_messages;
    }
    exactly_txn_forget_fails(&w->txn);
}

/* Applies recs[0..n) with a sync, rolling back to the savepoint on failure.
 * EXACTLY_EHANDLER: the handler failed on this set (message in errmsg). */
static exactly_err try_apply(cycle *c, exactly_record *recs, size_t n,
                             char *errmsg, size_t errmsg_size, char *sqlstate)
{
    worker *w = c->w;
    exactly_err rc = queue_apply(c, recs, n, 1);
    exactly_err sync_rc;

    if (rc != EXACTLY_OK && rc != EXACTLY_EHANDLER)
        return rc;
    sync_rc = exactly_txn_sync(&w->txn);
    if (rc == EXACTLY_EHANDLER) {
        snprintf(errmsg, errmsg_size, "%s", w->txn.handler_err);
        sqlstate[0] = '\0';
        return sync_rc == EXACTLY_OK ? EXACTLY_EHANDLER : sync_rc;
    }
    if (sync_rc == EXACTLY_OK) {
        account_applied(c, recs, n);
        return EXACTLY_OK;
    }
    if (sync_rc != EXACTLY_EDATABASE || w->txn.err_phase != TXN_HANDLER)
        return sync_rc;
    snprintf(errmsg, errmsg_size, "%s", w->txn.errmsg);
    snprintf(sqlstate, 6, "%s", w->txn.sqlstate);
    (void)exactly_txn_send(&w->txn, TXN_CONTROL,
                           "ROLLBACK TO SAVEPOINT exactly_apply", 0, NULL,
                           NULL);
    rc = exactly_txn_sync(&w->txn);
    return rc == EXACTLY_OK ? EXACTLY_EHANDLER : rc;
}

/* Splits a failing set until the failing records are alone; those are
 * dead-lettered, everything else is applied. */
static exactly_err bisect(cycle *c, exactly_record *recs, size_t n)
{
    char errmsg[1024];
    char sqlstate[6];
    exactly_err rc;
    size_t half;

    if (n == 0)
        return EXACTLY_OK;
    rc = try_apply(c, recs, n, errmsg, sizeof(errmsg), sqlstate);
    if (rc != EXACTLY_EHANDLER)
        return rc;
    if (n == 1 && c->w->p->on_error == CFG_ERROR_STOP) {
        exactly_log(EXACTLY_LOG_ERROR, "cycle",
                    "handler failed on a record and on_error is stop: "
                    "partition halted, offset not advanced topic=%s "
                    "partition=%d id=%s offset=%" PRId64
                    " sqlstate=%s error=\"%s\"",
                    c->pt->topic, (int)c->pt->partition, recs[0].id,
                    recs[0].messages[0].offset, sqlstate[0] ? sqlstate : "-",
                    errmsg);
        return EXACTLY_EHANDLER;
    }
    if (n == 1) {
        exactly_log(EXACTLY_LOG_WARN, "cycle",
                    "record dead-lettered topic=%s partition=%d id=%s "
                    "sqlstate=%s error=\"%s\"",
                    c->pt->topic, (int)c->pt->partition, recs[0].id,
                    sqlstate[0] ? sqlstate : "-", errmsg);
        dl_add_record(c->w, &recs[0], errmsg, sqlstate);
        c->failed_msgs += recs[0].n_messages;
        c->w->st.handler_failures++;
        return EXACTLY_OK;
    }
    half = n / 2;
    rc = bisect(c, recs, half);
    if (rc != EXACTLY_OK)
        return rc;
    return bisect(c, recs + half, n - half);
}

/* Builds c->recs from the grouped batch by the on_missing policy. */
static exactly_err select_records(cycle *c, int looked_up, size_t *skipped)
{
    worker *w = c->w;
    batch_builder *b = &w->bb;
    size_t i;

    *skipped = 0;
    free(c->recs);
    c->recs = calloc(b->n_records + 1, sizeof(exactly_record));
    if (!c->recs)
        return EXACTLY_ENOMEM;
    c->n_recs = 0;
    for (i = 0; i < b->n_records; i++) {
        const exactly_record *r = &b->records[i];
        if (looked_up && r->n_rows == 0) {
            switch (w->p->lookup.on_missing) {
            case CFG_MISSING_SKIP:
                *skipped += r->n_messages;
                continue;
            case CFG_MISSING_DEAD_LETTER:
                dl_add_record(w, r, "lookup found no row", NULL);
                c->failed_msgs += r->n_messages;
                continue;
            case CFG_MISSING_HANDLER:
                break;
            case CFG_MISSING_RETRY: {
                /* The row may still be on its way (a replica, a writer that
                 * commits after it publishes): wait a bounded time, then
                 * dead-letter. */
                long long now = worker_now_ms();
                if (c->pt->missing_since_ms == 0)
                    c->pt->missing_since_ms = now;
                if (now - c->pt->missing_since_ms < w->p->lookup.missing_retry_ms) {
                    snprintf(w->txn.errmsg, sizeof(w->txn.errmsg),
                             "lookup found no row for id %s; retrying for up "
                             "to %d ms",
                             r->id, w->p->lookup.missing_retry_ms);
                    return EXACTLY_ERETRY;
                }
                dl_add_record(w, r, "lookup found no row (retried)", NULL);
                c->failed_msgs += r->n_messages;
                continue;
            }
            }
        }
        c->recs[c->n_recs++] = *r;
    }
    return EXACTLY_OK;
}

static void rollback(worker *w)
{
    if (!w->conn || PQstatus(w->conn) != CONNECTION_OK) {
        worker_db_lost(w);
        return;
    }
    (void)exactly_txn_send(&w->txn, TXN_CONTROL, "ROLLBACK", 0, NULL, NULL);
    if (exactly_txn_sync(&w->txn) != EXACTLY_OK)
        worker_db_lost(w);
    exactly_txn_finish(&w->txn);
}

/* After a failed or unknown attempt: the stored row says where we stand.
 * Returns EXACTLY_OK (proceed; pt->next_offset may have moved forward, the
 * buffer trimmed), EXACTLY_EFENCED or EXACTLY_ERETRY. */
static exactly_err reread(worker *w, part *pt)
{
    char part_s[16];
    const char *params[3];
    PGresult *res = NULL;
    char err[512];
    exactly_err rc;
    int64_t stored;
    int64_t epoch;
    size_t drop = 0;

    snprintf(part_s, sizeof(part_s), "%d", (int)pt->partition);
    params[0] = w->fence_key ? w->fence_key : w->p->name;
    params[1] = pt->topic;
    params[2] = part_s;
    rc = exactly_pg_exec(w->conn, w->sql.read, 3, params, &res, err, sizeof(err));
    if (rc != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_WARN, "cycle", "cannot re-read offset row error=\"%s\"", err);
        if (PQstatus(w->conn) != CONNECTION_OK)
            worker_db_lost(w);
        return EXACTLY_ERETRY;
    }
    if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
        PQclear(res);
        return EXACTLY_EFENCED;
    }
    stored = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    epoch = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    PQclear(res);
    if (epoch != pt->epoch) {
        exactly_log(EXACTLY_LOG_WARN, "cycle",
                    "partition taken over topic=%s partition=%d my_epoch=%" PRId64
                    " stored_epoch=%" PRId64,
                    pt->topic, (int)pt->partition, pt->epoch, epoch);
        pt->fenced = 1;
        return EXACTLY_EFENCED;
    }
    if (stored > pt->next_offset) {
        /* An earlier attempt did commit (its outcome was unknown). */
        while (drop < pt->n_buf && pt->buf[drop]->offset < stored)
            drop++;
        exactly_log(EXACTLY_LOG_INFO, "cycle",
                    "earlier commit confirmed topic=%s partition=%d "
                    "next_offset=%" PRId64,
                    pt->topic, (int)pt->partition, stored);
        w->st.consumed += drop;
        w->st.applied += pt->unconfirmed_applied;
        w->st.dead_lettered += pt->unconfirmed_dead;
        w->st.batches_committed++;
        pt->unconfirmed_applied = pt->unconfirmed_dead = 0;
        part_drop_buffer(pt, drop);
        pt->next_offset = stored;
        source_commit(w, pt);
    } else if (stored < pt->next_offset) {
        /* Someone moved it back (an operator reset): follow the database. */
        part_drop_buffer(pt, pt->n_buf);
        pt->next_offset = stored;
        source_seek(w, pt, stored);
    }
    return EXACTLY_OK;
}


/* The crash guard (DESIGN 3, a handler that kills the process): records
 * the attempt at pt->next_offset in its own small transaction, flushed to
 * the server before apply() can run. Its answer is waited for only when it
 * can differ from 'batch': on the first batch after a claim, and while
 * isolating. May shrink *n to 1; sets *dead_only when the record must not
 * be applied at all. */
static exactly_err guard(cycle *c, size_t *n, int64_t *end, int *dead_only,
                         PGresult **res)
{
    worker *w = c->w;
    part *pt = c->pt;
    char part_s[16], epoch_s[24], start_s[24], end_s[24], fresh_s[4], max_s[12];
    const char *params[8];
    const char *mode;
    exactly_err rc;

    snprintf(part_s, sizeof(part_s), "%d", (int)pt->partition);
    snprintf(epoch_s, sizeof(epoch_s), "%" PRId64, pt->epoch);
    snprintf(start_s, sizeof(start_s), "%" PRId64, pt->next_offset);
    snprintf(end_s, sizeof(end_s), "%" PRId64, *end);
    snprintf(fresh_s, sizeof(fresh_s), "%d",
             worker_attempted(w, pt, pt->next_offset) ? 0 : 1);
    snprintf(max_s, sizeof(max_s), "%d", w->p->max_crashes);
    params[0] = w->p->name;
    params[1] = pt->topic;
    params[2] = part_s;
    params[3] = epoch_s;
    params[4] = start_s;
    params[5] = end_s;
    params[6] = fresh_s;
    params[7] = max_s;
    (void)exactly_txn_send(&w->txn, TXN_ATTEMPT, "BEGIN", 0, NULL, NULL);
    /* Losing this row in a server crash only loses one count. */
    (void)exactly_txn_send(&w->txn, TXN_ATTEMPT,
                           "SET LOCAL synchronous_commit = off", 0, NULL, NULL);
    (void)exactly_txn_send(&w->txn, TXN_ATTEMPT, w->sql.attempt, 8, params, res);
    (void)exactly_txn_send(&w->txn, TXN_ATTEMPT, "COMMIT", 0, NULL, NULL);
    rc = exactly_txn_push_sync(&w->txn);
    if (rc != EXACTLY_OK)
        return rc;
    if (pt->guard_checked && !pt->isolating)
        return exactly_txn_flush(&w->txn) == 0 ? EXACTLY_OK : EXACTLY_ERETRY;
    rc = exactly_txn_sync(&w->txn);
    if (rc != EXACTLY_OK)
        return rc;
    mode = *res && PQntuples(*res) == 1 ? PQgetvalue(*res, 0, 0) : "";
    pt->guard_checked = 1;
    if (strncmp(mode, "batch:", 6) == 0) {
        pt->isolating = 0;
        return EXACTLY_OK;
    }
    if (strncmp(mode, "fenced:", 7) == 0) {
        snprintf(w->txn.errmsg, sizeof(w->txn.errmsg),
                 "the offset row has another owner");
        return EXACTLY_EFENCED;
    }
    if (strncmp(mode, "single:", 7) != 0 && strncmp(mode, "dead_letter:", 12) != 0) {
        snprintf(w->txn.errmsg, sizeof(w->txn.errmsg),
                 "unexpected crash guard answer '%s'", mode);
        return EXACTLY_EDATABASE;
    }
    if (!pt->isolating || mode[0] == 'd')
        exactly_log(EXACTLY_LOG_WARN, "cycle",
                    "worker died on this batch before; isolating records "
                    "topic=%s partition=%d offset=%" PRId64 " answer=%s",
                    pt->topic, (int)pt->partition, pt->next_offset, mode);
    pt->isolating = 1;
    *n = 1;
    *end = pt->buf[0]->offset + 1;
    *dead_only = mode[0] == 'd';
    return EXACTLY_OK;
}

/* A reprocess run counts what it applied in the batch's transaction. */
static exactly_err queue_run_applied(cycle *c, uint64_t applied)
{
    worker *w = c->w;
    char n_s[24];
    const char *params[2] = {w->fence_key, n_s};

    if (!w->reprocess_run || !w->run_applied_sql)
        return EXACTLY_OK;
    snprintf(n_s, sizeof(n_s), "%" PRIu64, applied);
    return exactly_txn_send(&w->txn, TXN_DEAD_LETTER, w->run_applied_sql, 2,
                            params, NULL);
}

static exactly_err run_txn(cycle *c, size_t *n_io, int64_t *end_io,
                           int *commit_sent, int careful)
{
    worker *w = c->w;
    part *pt = c->pt;
    const exactly_handler *h = w->plugin->h;
    PGresult *attempt_res = NULL;
    PGresult *dedup_res = NULL;
    PGresult *lookup_res = NULL;
    size_t n = *n_io;
    int64_t end = *end_io;
    int dead_only = 0;
    char part_s[16], epoch_s[24], start_s[24], end_s[24];
    const char *fence_params[6];
    const int n_fence_params = 6;
    int need_sync = 0;
    int looked_up = 0;
    size_t skipped = 0;
    size_t i;
    exactly_err rc;
    char errbuf[512];

    rc = exactly_txn_start(&w->txn, w->conn, w->timeout_ms);
    if (rc != EXACTLY_OK)
        return rc;
    if (n > 0 && !w->reprocess_run) {
        rc = guard(c, &n, &end, &dead_only, &attempt_res);
        worker_set_attempted(w, pt, pt->next_offset);
        if (rc != EXACTLY_OK)
            goto done;
        *n_io = n;
        *end_io = end;
    }
    snprintf(part_s, sizeof(part_s), "%d", (int)pt->partition);
    snprintf(epoch_s, sizeof(epoch_s), "%" PRId64, pt->epoch);
    snprintf(start_s, sizeof(start_s), "%" PRId64, pt->next_offset);
    snprintf(end_s, sizeof(end_s), "%" PRId64, end);
    fence_params[0] = w->fence_key ? w->fence_key : w->p->name;
    fence_params[1] = pt->topic;
    fence_params[2] = part_s;
    fence_params[3] = epoch_s;
    fence_params[4] = start_s;
    fence_params[5] = end_s;

    if (n > 0) {
        rc = batch_build(&w->bb, w->p, pt->buf, n);
        if (rc != EXACTLY_OK)
            goto done;
    }
    dl_reset(w);
    (void)exactly_txn_send(&w->txn, TXN_CONTROL, "BEGIN", 0, NULL, NULL);
#ifndef EXACTLY_MUTATION_SPLIT_OFFSET_TXN
    (void)exactly_txn_send(&w->txn, TXN_FENCE, w->sql.fence, n_fence_params,
                           fence_params, NULL);
#endif
    if (dead_only) {
        char reason[160];
        batch_msg *bm = &w->bb.msgs[0];
        snprintf(reason, sizeof(reason),
                 "the handler killed the worker %d times on this record alone; "
                 "not applied",
                 w->p->max_crashes);
        dl_add(w, bm->rk->offset, bm->rk->key, bm->rk->key_len, bm->id, reason,
               NULL);
        c->failed_msgs++;
        n = 0; /* nothing else of this batch runs */
    }
    /* A reprocess re-applies on purpose: no dedup filter, no keys written. */
    if (n > 0 && w->p->dedup.enabled && !w->reprocess_run &&
        w->bb.dedup_keys.n_elems > 0) {
        const char *dp[5] = {w->p->name, pt->topic, part_s,
                             strbuf_str(&w->bb.dedup_keys),
                             strbuf_str(&w->bb.dedup_offs)};
        (void)exactly_txn_send(&w->txn, TXN_DEDUP, w->sql.dedup, 5, dp,
                               &dedup_res);
        need_sync = 1;
    }
    if (n > 0 && !h->skips_lookup && w->bb.n_ids > 0) {
        const char *lp[1] = {strbuf_str(&w->bb.ids_param)};
        (void)exactly_txn_send(&w->txn, TXN_LOOKUP, w->lookup_sql, 1, lp,
                               &lookup_res);
        need_sync = 1;
        looked_up = 1;
    }
    if (need_sync) {
        rc = exactly_txn_sync(&w->txn);
        if (rc != EXACTLY_OK)
            goto done;
    }
    if (n > 0) {
        rc = batch_apply_dedup(&w->bb, dedup_res);
        if (rc != EXACTLY_OK)
            goto done;
        rc = batch_group(&w->bb, lookup_res, w->key_column, &skipped, errbuf,
                         sizeof(errbuf));
        if (rc != EXACTLY_OK) {
            exactly_log(EXACTLY_LOG_ERROR, "cycle", "%s", errbuf);
            rc = EXACTLY_EDATABASE;
            goto done;
        }
        for (i = 0; i < w->bb.n_msgs; i++) {
            batch_msg *bm = &w->bb.msgs[i];
            if (bm->dead) {
                dl_add(w, bm->rk->offset, bm->rk->key, bm->rk->key_len, NULL,
                       bm->reason, NULL);
                c->failed_msgs++;
            }
        }
        rc = select_records(c, looked_up, &skipped);
        if (rc != EXACTLY_OK)
            goto done;
    }

    if (c->n_recs > 0 && careful) {
        /* Retry the whole set once inside a savepoint, then bisect. */
        rc = bisect(c, c->recs, c->n_recs);
        if (rc != EXACTLY_OK)
            goto done;
    } else if (c->n_recs > 0) {
        /* Optimistic: no savepoint (a subtransaction costs the server on
         * every batch); a handler failure sends the batch back through
         * careful mode. */
        rc = queue_apply(c, c->recs, c->n_recs, 0);
        if (rc != EXACTLY_OK)
            goto done;
#ifdef EXACTLY_MUTATION_SPLIT_OFFSET_TXN
        need_sync = 1; /* the mutation's separate offset update follows COMMIT */
#endif
        if (!need_sync && w->txn.n_fails == 0) {
            /* Nothing was read: one round trip for the whole batch. */
            uint64_t all = 0;
            for (i = 0; i < c->n_recs; i++)
                all += c->recs[i].n_messages;
            rc = dl_send(w, pt, part_s);
            if (rc == EXACTLY_OK)
                rc = queue_run_applied(c, all);
            if (rc == EXACTLY_OK)
                rc = exactly_txn_send(&w->txn, TXN_COMMIT, "COMMIT", 0, NULL,
                                      NULL);
            if (rc != EXACTLY_OK)
                goto done;
            *commit_sent = 1;
            /* No record failed in this path (n_fails == 0): all of them
             * count, known before the answer in case none comes. */
            c->applied_msgs = all;
            rc = exactly_txn_sync(&w->txn);
            if (rc == EXACTLY_EDATABASE && w->txn.err_phase == TXN_HANDLER)
                rc = EXACTLY_EHANDLER;
            goto done;
        }
        rc = exactly_txn_sync(&w->txn);
        if (rc == EXACTLY_EDATABASE && w->txn.err_phase == TXN_HANDLER)
            rc = EXACTLY_EHANDLER;
        if (rc != EXACTLY_OK)
            goto done;
        account_applied(c, c->recs, c->n_recs);
    }
    rc = dl_send(w, pt, part_s);
    if (rc == EXACTLY_OK)
        rc = queue_run_applied(c, c->applied_msgs);
    if (rc == EXACTLY_OK)
        rc = exactly_txn_send(&w->txn, TXN_COMMIT, "COMMIT", 0, NULL, NULL);
    if (rc != EXACTLY_OK)
        goto done;
    *commit_sent = 1;
    rc = exactly_txn_sync(&w->txn);
#ifdef EXACTLY_MUTATION_SPLIT_OFFSET_TXN
    /* Mutation: the offset advances in a transaction of its own, after the
     * writes committed: a crash in between applies the batch twice. */
    if (rc == EXACTLY_OK) {
        (void)exactly_txn_send(&w->txn, TXN_FENCE, w->sql.fence,
                               n_fence_params, fence_params, NULL);
        rc = exactly_txn_sync(&w->txn);
    }
#endif

done:
    if (attempt_res && rc == EXACTLY_OK && PQntuples(attempt_res) == 1 &&
        strncmp(PQgetvalue(attempt_res, 0, 0), "batch:", 6) != 0 &&
        !pt->isolating)
        /* Not waited for (no crash since the claim), and not 'batch': only
         * another process changing the row can do that. */
        exactly_log(EXACTLY_LOG_WARN, "cycle",
                    "crash guard answered %s after the batch committed",
                    PQgetvalue(attempt_res, 0, 0));
    PQclear(attempt_res);
    if (rc == EXACTLY_OK) {
        size_t dups = 0;
        for (i = 0; i < w->bb.n_msgs && n > 0; i++)
            dups += w->bb.msgs[i].duplicate ? 1 : 0;
        w->st.deduplicated += dups;
        w->st.skipped_missing += skipped;
    }
    PQclear(dedup_res);
    PQclear(lookup_res);
    return rc;
}

static exactly_err cycle_run_once(worker *w, part *pt, size_t n, int64_t end);

static metrics_retry_cause retry_cause(const char *sqlstate)
{
    if (!sqlstate[0] || strncmp(sqlstate, "08", 2) == 0 ||
        strncmp(sqlstate, "57P", 3) == 0)
        return RETRY_CONNECTION;
    if (strcmp(sqlstate, "40001") == 0)
        return RETRY_SERIALIZATION;
    if (strcmp(sqlstate, "40P01") == 0)
        return RETRY_DEADLOCK;
    if (strcmp(sqlstate, "57014") == 0 || strcmp(sqlstate, "55P03") == 0 ||
        strcmp(sqlstate, "25P03") == 0)
        return RETRY_TIMEOUT;
    return RETRY_OTHER;
}

/* Runs one batch and publishes what it did: the counters are the
 * difference of the worker's totals, so the cycle itself stays unaware. */
exactly_err cycle_run(worker *w, part *pt, size_t n, int64_t end)
{
    exactly_worker_stats before = w->st;
    long long t0 = worker_now_ms();
    metrics_partition *mp;
    exactly_err rc = cycle_run_once(w, pt, n, end);

    if (!w->m)
        return rc;
    mp = metrics_part(w->m, pt->topic, pt->partition);
    if (mp) {
        metrics_add(&mp->consumed, w->st.consumed - before.consumed);
        metrics_add(&mp->applied, w->st.applied - before.applied);
        metrics_add(&mp->deduplicated, w->st.deduplicated - before.deduplicated);
        metrics_add(&mp->dead_lettered, w->st.dead_lettered - before.dead_lettered);
        metrics_add(&mp->skipped_missing,
                    w->st.skipped_missing - before.skipped_missing);
    }
    metrics_add(&w->m->batches_committed,
                w->st.batches_committed - before.batches_committed);
    metrics_add(&w->m->batches_rolled_back,
                w->st.batches_rolled_back - before.batches_rolled_back);
    metrics_add(&w->m->batches_fenced, w->st.batches_fenced - before.batches_fenced);
    if (w->st.handler_failures > before.handler_failures ||
        (rc == EXACTLY_OK && w->st.retries > before.retries))
        metrics_add(&w->m->retries[RETRY_HANDLER], 1);
    else if (rc == EXACTLY_ERETRY || rc == EXACTLY_EDATABASE)
        metrics_add(&w->m->retries[retry_cause(w->txn.sqlstate)], 1);
    if (rc == EXACTLY_OK) {
        metrics_observe_batch(w->m, (worker_now_ms() - t0) * 1000);
        worker_metrics_position(w, pt, 1);
    }
    return rc;
}

static exactly_err cycle_run_once(worker *w, part *pt, size_t n, int64_t end)
{
    cycle c;
    exactly_err rc;
    int commit_sent = 0;

    rc = worker_db(w);
    if (rc != EXACTLY_OK)
        return rc;
    if (pt->attempts > 0) {
        size_t before = pt->n_buf;
        rc = reread(w, pt);
        if (rc == EXACTLY_EFENCED) {
            w->st.batches_fenced++;
            part_drop_buffer(pt, pt->n_buf);
            return rc;
        }
        if (rc != EXACTLY_OK)
            return rc;
        if (pt->n_buf < before) {
            /* Part of what we meant to apply is already committed. */
            size_t gone = before - pt->n_buf;
            n = n > gone ? n - gone : 0;
            if (n == 0 && end <= pt->next_offset) {
                pt->attempts = 0;
                return EXACTLY_OK;
            }
        }
    }
    memset(&c, 0, sizeof(c));
    c.w = w;
    c.pt = pt;
    rc = run_txn(&c, &n, &end, &commit_sent, 0);
    if (rc == EXACTLY_EHANDLER) {
        exactly_log(EXACTLY_LOG_WARN, "cycle",
                    "handler failed, isolating the failing records topic=%s "
                    "partition=%d error=\"%s\"",
                    pt->topic, (int)pt->partition,
                    w->txn.handler_err_set ? w->txn.handler_err : w->txn.errmsg);
        rollback(w);
        w->st.retries++;
        free(c.recs);
        memset(&c, 0, sizeof(c));
        c.w = w;
        c.pt = pt;
        commit_sent = 0;
        rc = worker_db(w);
        if (rc == EXACTLY_OK)
            rc = run_txn(&c, &n, &end, &commit_sent, 1);
        if (rc == EXACTLY_EHANDLER) {
            /* on_error: stop. Nothing of the batch commits. */
            free(c.recs);
            w->st.batches_rolled_back++;
            rollback(w);
            pt->halted = 1;
            source_pause(w, pt, 1);
            return EXACTLY_EHANDLER;
        }
    }
    if (rc == EXACTLY_OK) {
        w->st.consumed += n;
        w->st.applied += c.applied_msgs;
        w->st.dead_lettered += w->dl_count;
        w->st.batches_committed++;
        exactly_txn_finish(&w->txn);
        pt->next_offset = end;
        pt->attempts = 0;
        pt->missing_since_ms = 0;
        part_drop_buffer(pt, n);
        source_commit(w, pt);
        EXACTLY_LOG(EXACTLY_LOG_DEBUG, "cycle",
                    "batch committed topic=%s partition=%d messages=%zu "
                    "records=%zu next_offset=%" PRId64,
                    pt->topic, (int)pt->partition, n, c.n_recs, end);
        free(c.recs);
        return EXACTLY_OK;
    }
    free(c.recs);
    w->st.batches_rolled_back++;
    if (rc == EXACTLY_EFENCED) {
        exactly_log(EXACTLY_LOG_WARN, "cycle",
                    "batch fenced topic=%s partition=%d epoch=%" PRId64
                    " start=%" PRId64 " detail=\"%s\"",
                    pt->topic, (int)pt->partition, pt->epoch, pt->next_offset,
                    w->txn.errmsg);
        w->st.batches_fenced++;
        rollback(w);
        part_drop_buffer(pt, pt->n_buf);
        if (w->conn) {
            pt->attempts = 1;
            rc = reread(w, pt);
            pt->attempts = 0;
            if (rc == EXACTLY_OK)
                source_seek(w, pt, pt->next_offset);
        }
        return EXACTLY_EFENCED;
    }
    exactly_log(rc == EXACTLY_ERETRY ? EXACTLY_LOG_WARN : EXACTLY_LOG_ERROR,
                "cycle",
                "batch rolled back topic=%s partition=%d sqlstate=%s "
                "commit_sent=%d error=\"%s\"",
                pt->topic, (int)pt->partition,
                w->txn.sqlstate[0] ? w->txn.sqlstate : "-", commit_sent,
                w->txn.errmsg);
    /* Remembered in case the stored offset shows it committed after all. */
    pt->unconfirmed_applied = commit_sent ? c.applied_msgs : 0;
    pt->unconfirmed_dead = commit_sent ? w->dl_count : 0;
    rollback(w);
    pt->attempts++;
    w->st.retries++;
    return rc == EXACTLY_ENOMEM ? EXACTLY_ERETRY : rc;
}
