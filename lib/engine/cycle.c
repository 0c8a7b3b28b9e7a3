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
 *
 * A failure is judged once, where it happens (judge_apply, judge_sync),
 * into one of: the records in hand failed (EXACTLY_EHANDLER: bisect), the
 * batch must wait and run again (EXACTLY_ERETRY: transient, an
 * environment error, or the handler asked to), the process must stop
 * (EXACTLY_EFATAL: the engine's owner stops it), or the partition is not
 * ours to advance (EXACTLY_EFENCED). Its SQLSTATE and text are kept in the cycle, because
 * the rollback that follows resets the txn's own.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "engine_internal.h"
#include "log.h"
#include "pg_conn.h"
#include "trace.h"

typedef struct cycle {
    engine *e;
    part *pt;
    exactly_record *recs; /* what the handler gets, after skip/dead-letter */
    size_t n_recs;
    uint64_t applied_msgs;
    uint64_t failed_msgs;
    /* The last failure, as judged where it happened. */
    char sqlstate[6];
    char errmsg[1024];
    int environment;      /* about the environment: never bisected */
    int handler_retry;    /* apply() asked for the retry */
} cycle;

/* A SQLSTATE for the log: NULL (no field) when there is none. */
static const char *sqlstate_or_null(const char *sqlstate)
{
    return sqlstate && sqlstate[0] ? sqlstate : NULL;
}

/* Records why the attempt failed. */
static void note(cycle *c, const char *sqlstate, const char *msg)
{
    snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", sqlstate ? sqlstate : "");
    snprintf(c->errmsg, sizeof(c->errmsg), "%s", msg && *msg ? msg : "unknown error");
}

/* ---- dead letters ------------------------------------------------------- */

/* A message of the batch goes to the dead letters, with its trace-id
 * (the buffered message at offset, when there is one). */
static void dl_message(cycle *c, int64_t offset, const void *key,
                       size_t key_len, const char *id, const char *reason)
{
    dead_letters_add(&c->e->dl, engine_part_msg(c->pt, offset), offset, key,
                     key_len, id, reason, NULL);
}

/* Every message of record r goes to the dead letters. */
static void dl_record(cycle *c, const exactly_record *r, const char *reason,
                      const char *sqlstate)
{
    size_t i;

    for (i = 0; i < r->n_messages; i++)
        dead_letters_add(&c->e->dl, engine_part_msg(c->pt, r->messages[i].offset),
                         r->messages[i].offset, r->messages[i].key,
                         r->messages[i].key_len, r->id, reason, sqlstate);
}

/* ---- trace context ----------------------------------------------------- */

/* At most this many distinct trace-ids name one batch in its log lines. */
#define TRACE_IDS_MAX 8

/* Adds the trace-id of m, when it has one, to the comma-separated list
 * out (TRACE_IDS_MAX * EXACTLY_TRACE_ID_SIZE bytes), once. */
static void trace_list_add(char *out, const rd_kafka_message_t *m)
{
    char id[EXACTLY_TRACE_ID_SIZE];
    size_t len = strlen(out);

    if (!m || exactly_trace_of_message(m, id) != 0 || strstr(out, id) ||
        len + EXACTLY_TRACE_ID_SIZE > TRACE_IDS_MAX * EXACTLY_TRACE_ID_SIZE)
        return;
    snprintf(out + len, TRACE_IDS_MAX * EXACTLY_TRACE_ID_SIZE - len, "%s%s",
             len ? "," : "", id);
}

/* The log lines about one record name the traces of its messages alone;
 * trace_batch() puts the batch's back. */
static void trace_record(const part *pt, const exactly_record *r)
{
    char ids[TRACE_IDS_MAX * EXACTLY_TRACE_ID_SIZE] = "";
    size_t i;

    for (i = 0; i < r->n_messages; i++)
        trace_list_add(ids, engine_part_msg(pt, r->messages[i].offset));
    exactly_log_set_trace(ids);
}

/* The batch's trace-ids, kept while a record's own lines are written. */
static char g_batch_traces[TRACE_IDS_MAX * EXACTLY_TRACE_ID_SIZE];

/* Every log line from here to the batch's end names the distinct
 * trace-ids of its first n messages (the first TRACE_IDS_MAX). */
static void trace_batch(const part *pt, size_t n)
{
    size_t i;

    g_batch_traces[0] = '\0';
    for (i = 0; i < n && i < pt->n_buf; i++)
        trace_list_add(g_batch_traces, pt->buf[i]);
    exactly_log_set_trace(g_batch_traces);
}

/* Back to the batch's trace-ids after a record's lines. */
static void trace_batch_again(void) { exactly_log_set_trace(g_batch_traces); }

/* ---- the handler -------------------------------------------------------- */

/*
 * What apply()'s answer, and what it did to the transaction, mean (README
 * "Return codes of apply()"). A failed query() aborts the transaction
 * whatever apply() returns afterwards; a fail_record() that could not be
 * recorded fails the batch rather than lose the record.
 */
static exactly_err judge_apply(cycle *c, exactly_err ret)
{
    exactly_txn *t = &c->e->txn;
    char msg[64];

    if (t->fails_oom) {
        note(c, NULL, "out of memory recording a record the handler failed");
        return EXACTLY_ERETRY;
    }
    if (t->query_failed) {
        note(c, t->query_sqlstate, t->query_errmsg);
        switch (exactly_pg_class_of(t->query_sqlstate)) {
        case PG_RECORD:
            return EXACTLY_EHANDLER;
        case PG_ENVIRONMENT:
            c->environment = 1;
            return EXACTLY_ERETRY;
        case PG_TRANSIENT:
        case PG_FENCED:
            return EXACTLY_ERETRY;
        }
    }
    snprintf(msg, sizeof(msg), "apply() returned %d", (int)ret);
    switch (ret) {
    case EXACTLY_OK:
        return EXACTLY_OK;
    case EXACTLY_ERETRY:
    case EXACTLY_ENOMEM:
        note(c, NULL, t->handler_err_set ? t->handler_err : msg);
        c->handler_retry = 1;
        return EXACTLY_ERETRY;
    case EXACTLY_EFATAL:
        note(c, NULL, t->handler_err_set ? t->handler_err : msg);
        return EXACTLY_EFATAL;
    default:
        note(c, NULL, t->handler_err_set ? t->handler_err : msg);
        return EXACTLY_EHANDLER;
    }
}

/*
 * What a failed sync means. A statement of the handler that failed on the
 * data, or a COMMIT answered ROLLBACK (only a query() error that apply()
 * ignored does that), is a failure of these records; an environment error
 * anywhere is marked as such; the rest is returned as the txn classed it.
 */
static exactly_err judge_sync(cycle *c, exactly_err rc)
{
    exactly_txn *t = &c->e->txn;

    if (rc == EXACTLY_OK)
        return EXACTLY_OK;
    if (t->commit_rolled_back) {
        if (t->query_failed)
            return judge_apply(c, EXACTLY_OK);
        note(c, NULL, t->errmsg);
        return EXACTLY_EHANDLER;
    }
    note(c, t->sqlstate, t->errmsg);
    if (rc == EXACTLY_ERETRY &&
        exactly_pg_class_of(t->sqlstate) == PG_ENVIRONMENT)
        c->environment = 1;
    if (rc == EXACTLY_EDATABASE && t->err_phase == TXN_HANDLER)
        return EXACTLY_EHANDLER;
    return rc;
}

/* Queues SAVEPOINT (careful mode), the handler's writes for recs[0..n)
 * and RELEASE. Returns EXACTLY_OK or judge_apply()'s verdict. */
static exactly_err queue_apply(cycle *c, exactly_record *recs, size_t n,
                               int savepoint)
{
    engine *e = c->e;
    exactly_batch b;
    exactly_err rc;

    memset(&b, 0, sizeof(b));
    b.pipeline = e->p->name;
    b.topic = c->pt->topic;
    b.partition = c->pt->partition;
    b.records = recs;
    b.n_records = n;
    b.column_names = e->bb.colnames;
    b.n_columns = e->bb.n_columns;
    b.id_type = exactly_id_type_name(e->p->id.type);
    b.reprocess_run = e->reprocess_run;

    exactly_txn_forget_fails(&e->txn);
    if (savepoint) {
        rc = exactly_txn_send(&e->txn, TXN_CONTROL, "SAVEPOINT exactly_apply",
                              0, NULL, NULL);
        if (rc != EXACTLY_OK)
            return rc;
    }
    rc = judge_apply(c, e->plugin->h->apply(e->plugin->state, &e->txn, &b));
    if (rc != EXACTLY_OK || !savepoint)
        return rc;
    return exactly_txn_send(&e->txn, TXN_HANDLER,
                            "RELEASE SAVEPOINT exactly_apply", 0, NULL, NULL);
}

/* Records the handler failed on purpose (fail_record) go to dead letters;
 * the rest count as applied. Call only once their writes are known to be
 * part of the transaction. */
static void account_applied(cycle *c, exactly_record *recs, size_t n)
{
    engine *e = c->e;
    size_t i;

    for (i = 0; i < n; i++)
        c->applied_msgs += recs[i].n_messages;
    for (i = 0; i < e->txn.n_fails; i++) {
        size_t idx = e->txn.fails[i].index;
        if (idx >= n)
            continue;
        dl_record(c, &recs[idx], e->txn.fails[i].reason, NULL);
        c->applied_msgs -= recs[idx].n_messages;
        c->failed_msgs += recs[idx].n_messages;
    }
    exactly_txn_forget_fails(&e->txn);
}

/* Applies recs[0..n) with a sync, rolling back to the savepoint when these
 * records failed (EXACTLY_EHANDLER, the reason in c). Any other failure is
 * returned as is: it ends the whole attempt. */
static exactly_err try_apply(cycle *c, exactly_record *recs, size_t n)
{
    engine *e = c->e;
    exactly_err rc = queue_apply(c, recs, n, 1);
    exactly_err s;
    char st[6], msg[1024];

    if (rc == EXACTLY_OK) {
        rc = judge_sync(c, exactly_txn_sync(&e->txn));
        if (rc == EXACTLY_OK) {
            account_applied(c, recs, n);
            return EXACTLY_OK;
        }
    } else if (rc == EXACTLY_EHANDLER) {
        /* What apply() queued before it refused runs now: an error of it
         * is part of the same failure, a lost connection is not. */
        s = exactly_txn_sync(&e->txn);
        if (s != EXACTLY_OK && PQstatus(e->conn) != CONNECTION_OK)
            return judge_sync(c, s);
    }
    if (rc != EXACTLY_EHANDLER)
        return rc;
    /* Undo these records' writes in a sync of its own (one queued behind
     * a failed statement would be skipped), keeping their error. */
    memcpy(st, c->sqlstate, sizeof(st));
    memcpy(msg, c->errmsg, sizeof(msg));
    (void)exactly_txn_send(&e->txn, TXN_CONTROL,
                           "ROLLBACK TO SAVEPOINT exactly_apply", 0, NULL,
                           NULL);
    s = judge_sync(c, exactly_txn_sync(&e->txn));
    if (s != EXACTLY_OK)
        return s;
    note(c, st, msg);
    return EXACTLY_EHANDLER;
}

/* Splits a failing set until the failing records are alone; those are
 * dead-lettered, everything else is applied. */
static exactly_err bisect(cycle *c, exactly_record *recs, size_t n)
{
    exactly_err rc;
    size_t half;

    if (n == 0)
        return EXACTLY_OK;
    rc = try_apply(c, recs, n);
    if (rc != EXACTLY_EHANDLER)
        return rc;
    if (n == 1)
        trace_record(c->pt, &recs[0]);
    if (n == 1 && c->e->p->on_error == CFG_ERROR_STOP) {
        exactly_log(EXACTLY_LOG_ERROR, "cycle",
                    "handler failed on a record and on_error is stop: "
                    "partition halted, offset not advanced",
                    LOG_PART(c->pt), LOG_STR("id", recs[0].id),
                    LOG_INT("offset", recs[0].messages[0].offset),
                    LOG_STR("sqlstate", sqlstate_or_null(c->sqlstate)),
                    LOG_STR("error", c->errmsg));
        trace_batch_again();
        return EXACTLY_EHANDLER;
    }
    if (n == 1) {
        exactly_log(EXACTLY_LOG_WARN, "cycle", "record dead-lettered",
                    LOG_PART(c->pt), LOG_STR("id", recs[0].id),
                    LOG_STR("sqlstate", sqlstate_or_null(c->sqlstate)),
                    LOG_STR("error", c->errmsg));
        dl_record(c, &recs[0], c->errmsg, c->sqlstate);
        c->failed_msgs += recs[0].n_messages;
        c->e->st.handler_failures++;
        trace_batch_again();
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
    engine *e = c->e;
    batch_builder *b = &e->bb;
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
            switch (e->p->lookup.on_missing) {
            case CFG_MISSING_SKIP:
                *skipped += r->n_messages;
                continue;
            case CFG_MISSING_DEAD_LETTER:
                dl_record(c, r, "lookup found no row", NULL);
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
                    note(c, NULL, msg);
                    return EXACTLY_ERETRY;
                }
                dl_record(c, r, "lookup found no row (retried)",
                              NULL);
                c->failed_msgs += r->n_messages;
                continue;
            }
            }
        }
        c->recs[c->n_recs++] = *r;
    }
    return EXACTLY_OK;
}

/* Ends the transaction; a connection that cannot even do that is dropped
 * (the owner's db_open reconnects). */
static void rollback(engine *e)
{
    if (!e->conn || PQstatus(e->conn) != CONNECTION_OK) {
        engine_db_lost(e);
        return;
    }
    (void)exactly_txn_send(&e->txn, TXN_CONTROL, "ROLLBACK", 0, NULL, NULL);
    if (exactly_txn_sync(&e->txn) != EXACTLY_OK ||
        PQstatus(e->conn) != CONNECTION_OK)
        engine_db_lost(e);
    else
        exactly_txn_finish(&e->txn);
}

/* ---- the crash guard ---------------------------------------------------- */

/* The crash guard (DESIGN 3, a handler that kills the process): marks the
 * attempt at pt->next_offset as inside apply() (in_apply) in its own small
 * transaction, flushed to the server before apply() can run; the batch's
 * commit or a clean release clears the mark. Its answer is waited for only
 * when it can differ from 'batch': on the first batch after a claim, and
 * while isolating. May shrink *n to 1; sets *dead_only when the record must
 * not be applied at all. The answer is kept in the txn under *res. */
static exactly_err guard(cycle *c, size_t *n, int64_t *end, int *dead_only,
                         txn_result *res)
{
    engine *e = c->e;
    part *pt = c->pt;
    char part_s[16], epoch_s[24], start_s[24], end_s[24], fresh_s[4], max_s[12];
    const char *params[8];
    const PGresult *answer;
    const char *mode;
    exactly_err rc;

    snprintf(part_s, sizeof(part_s), "%d", (int)pt->partition);
    snprintf(epoch_s, sizeof(epoch_s), "%" PRId64, pt->epoch);
    snprintf(start_s, sizeof(start_s), "%" PRId64, pt->next_offset);
    snprintf(end_s, sizeof(end_s), "%" PRId64, *end);
    snprintf(fresh_s, sizeof(fresh_s), "%d",
             engine_attempted(e, pt, pt->next_offset) ? 0 : 1);
    snprintf(max_s, sizeof(max_s), "%d", e->p->max_crashes);
    params[0] = e->p->name;
    params[1] = pt->topic;
    params[2] = part_s;
    params[3] = epoch_s;
    params[4] = start_s;
    params[5] = end_s;
    params[6] = fresh_s;
    params[7] = max_s;
    (void)exactly_txn_send(&e->txn, TXN_ATTEMPT, "BEGIN", 0, NULL, NULL);
    /* Losing this row in a server crash only loses one count. */
    (void)exactly_txn_send(&e->txn, TXN_ATTEMPT,
                           "SET LOCAL synchronous_commit = off", 0, NULL, NULL);
    rc = exactly_txn_send(&e->txn, TXN_ATTEMPT, e->sql.attempt, 8, params, res);
    if (rc != EXACTLY_OK)
        return rc;
    (void)exactly_txn_send(&e->txn, TXN_ATTEMPT, "COMMIT", 0, NULL, NULL);
    rc = exactly_txn_push_sync(&e->txn);
    if (rc != EXACTLY_OK)
        return rc;
    if (pt->state == PART_S_SERVING)
        return exactly_txn_flush(&e->txn) == 0 ? EXACTLY_OK : EXACTLY_ERETRY;
    rc = judge_sync(c, exactly_txn_sync(&e->txn));
    if (rc != EXACTLY_OK)
        return rc;
    answer = exactly_txn_result(&e->txn, *res);
    mode = answer && PQntuples(answer) == 1 ? PQgetvalue(answer, 0, 0) : "";
    /* The guard answered since the claim. */
    if (pt->state == PART_S_UNCHECKED)
        (void)PART_MOVE(pt, PART_S_SERVING);
    if (strncmp(mode, "batch:", 6) == 0) {
        (void)PART_MOVE(pt, PART_S_SERVING);
        return EXACTLY_OK;
    }
    if (strncmp(mode, "fenced:", 7) == 0) {
        note(c, NULL, "the offset row has another owner");
        return EXACTLY_EFENCED;
    }
    if (strncmp(mode, "single:", 7) != 0 && strncmp(mode, "dead_letter:", 12) != 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "unexpected crash guard answer '%.40s'",
                 mode);
        note(c, NULL, msg);
        return EXACTLY_EDATABASE;
    }
    if (pt->state != PART_S_ISOLATING || mode[0] == 'd')
        exactly_log(EXACTLY_LOG_WARN, "cycle",
                    "worker died on this batch before; isolating records",
                    LOG_PART(pt),
                    LOG_INT("offset", pt->next_offset),
                    LOG_STR("answer", mode));
    (void)PART_MOVE(pt, PART_S_ISOLATING);
    *n = 1;
    *end = pt->buf[0]->offset + 1;
    *dead_only = mode[0] == 'd';
    return EXACTLY_OK;
}

void engine_release(engine *e, part *pt)
{
    char part_s[16], epoch_s[24], err[512];
    const char *params[4];

    if (e->reprocess_run || pt->state == PART_S_FENCED || !e->conn ||
        PQstatus(e->conn) != CONNECTION_OK || !e->sql_ready)
        return;
    snprintf(part_s, sizeof(part_s), "%d", (int)pt->partition);
    snprintf(epoch_s, sizeof(epoch_s), "%" PRId64, pt->epoch);
    params[0] = e->p->name;
    params[1] = pt->topic;
    params[2] = part_s;
    params[3] = epoch_s;
    exactly_txn_finish(&e->txn);
    if (exactly_pg_exec(e->conn, e->sql.release, 4, params, NULL, err,
                        sizeof(err)) != EXACTLY_OK)
        exactly_log(EXACTLY_LOG_WARN, "cycle",
                    "cannot clear the crash guard's mark; the next owner "
                    "counts one death",
                    LOG_PART(pt), LOG_STR("error", err));
}

/* A reprocess run counts what it applied in the batch's transaction. */
static exactly_err queue_run_applied(cycle *c, uint64_t applied)
{
    engine *e = c->e;
    char n_s[24];
    const char *params[2] = {e->fence_key, n_s};

    if (!e->reprocess_run || !e->run_applied_sql)
        return EXACTLY_OK;
    snprintf(n_s, sizeof(n_s), "%" PRIu64, applied);
    return exactly_txn_send(&e->txn, TXN_DEAD_LETTER, e->run_applied_sql, 2,
                            params, NULL);
}

/* ---- one attempt -------------------------------------------------------- */

/* Queues the dead letters, the reprocess count, COMMIT, and syncs. */
static exactly_err commit(cycle *c, const char *part_s, uint64_t applied,
                          int *commit_sent)
{
    engine *e = c->e;
    exactly_err rc = dead_letters_send(&e->dl, &e->txn, e->sql.dead_letter,
                                       e->dl_key ? e->dl_key : e->p->name,
                                       c->pt->topic, part_s);

    if (rc == EXACTLY_OK)
        rc = queue_run_applied(c, applied);
    if (rc == EXACTLY_OK)
        rc = exactly_txn_send(&e->txn, TXN_COMMIT, "COMMIT", 0, NULL, NULL);
    if (rc != EXACTLY_OK) {
        note(c, NULL, rc == EXACTLY_ENOMEM ? "out of memory" : e->txn.errmsg);
        return rc;
    }
    *commit_sent = 1;
    return judge_sync(c, exactly_txn_sync(&e->txn));
}

static exactly_err run_txn(cycle *c, size_t *n_io, int64_t *end_io,
                           int *commit_sent, int careful)
{
    engine *e = c->e;
    part *pt = c->pt;
    const exactly_handler *h = e->plugin->h;
    txn_result attempt_res = TXN_NO_RESULT;
    txn_result dedup_res = TXN_NO_RESULT;
    txn_result lookup_res = TXN_NO_RESULT;
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

    rc = exactly_txn_start(&e->txn, e->conn, e->timeout_ms);
    if (rc != EXACTLY_OK) {
        note(c, NULL, e->txn.errmsg);
        return rc;
    }
    if (n > 0 && !e->reprocess_run) {
        rc = guard(c, &n, &end, &dead_only, &attempt_res);
        engine_set_attempted(e, pt, pt->next_offset);
        if (rc != EXACTLY_OK)
            goto done;
        *n_io = n;
        *end_io = end;
    }
    snprintf(part_s, sizeof(part_s), "%d", (int)pt->partition);
    snprintf(epoch_s, sizeof(epoch_s), "%" PRId64, pt->epoch);
    snprintf(start_s, sizeof(start_s), "%" PRId64, pt->next_offset);
    snprintf(end_s, sizeof(end_s), "%" PRId64, end);
    fence_params[0] = e->fence_key ? e->fence_key : e->p->name;
    fence_params[1] = pt->topic;
    fence_params[2] = part_s;
    fence_params[3] = epoch_s;
    fence_params[4] = start_s;
    fence_params[5] = end_s;

    if (n > 0) {
        rc = batch_build(&e->bb, e->p, pt->buf, n);
        if (rc != EXACTLY_OK) {
            note(c, NULL, "out of memory building the batch");
            goto done;
        }
        if (!h->skips_lookup && e->bb.n_ids > 0) {
            rc = batch_ids_param(&e->bb);
            if (rc != EXACTLY_OK) {
                note(c, NULL, "out of memory building the batch");
                goto done;
            }
        }
    }
    dead_letters_reset(&e->dl);
    (void)exactly_txn_send(&e->txn, TXN_CONTROL, "BEGIN", 0, NULL, NULL);
#ifndef EXACTLY_MUTATION_SPLIT_OFFSET_TXN
    (void)exactly_txn_send(&e->txn, TXN_FENCE, e->sql.fence, n_fence_params,
                           fence_params, NULL);
#endif
    if (dead_only) {
        char reason[160];
        batch_msg *bm = &e->bb.msgs[0];
        snprintf(reason, sizeof(reason),
                 "the handler killed the worker %d times on this record alone; "
                 "not applied",
                 e->p->max_crashes);
        dl_message(c, bm->rk->offset, bm->rk->key, bm->rk->key_len, bm->id, reason);
        c->failed_msgs++;
        n = 0; /* nothing else of this batch runs */
    }
    /* A reprocess re-applies on purpose: no dedup filter, no keys written. */
    if (n > 0 && e->p->dedup.enabled && !e->reprocess_run &&
        e->bb.dedup_keys.n_elems > 0) {
        const char *dp[5] = {e->p->name, pt->topic, part_s,
                             strbuf_str(&e->bb.dedup_keys),
                             strbuf_str(&e->bb.dedup_offs)};
        (void)exactly_txn_send(&e->txn, TXN_DEDUP, e->sql.dedup, 5, dp,
                               &dedup_res);
        need_sync = 1;
    }
    if (n > 0 && !h->skips_lookup && e->bb.n_ids > 0) {
        /* The IDs as a binary array: the server parses no text. */
        int len[1] = {e->bb.ids_len}, fmt[1] = {1};
        const char *lp[1] = {e->bb.ids_data};
        (void)exactly_txn_send_params(&e->txn, TXN_LOOKUP, e->lookup_sql, 1,
                                      lp, len, fmt, &lookup_res);
        need_sync = 1;
        looked_up = 1;
    }
    if (need_sync) {
        rc = judge_sync(c, exactly_txn_sync(&e->txn));
        if (rc != EXACTLY_OK)
            goto done;
    }
    if (n > 0) {
        rc = batch_apply_dedup(&e->bb, exactly_txn_result(&e->txn, dedup_res));
        if (rc != EXACTLY_OK) {
            note(c, NULL, "out of memory applying dedup");
            goto done;
        }
        rc = batch_group(&e->bb, exactly_txn_result(&e->txn, lookup_res),
                         e->key_column, &skipped, errbuf, sizeof(errbuf));
        if (rc != EXACTLY_OK) {
            exactly_log(EXACTLY_LOG_ERROR, "cycle",
                        "cannot match the lookup's rows to the batch",
                        LOG_PART(pt), LOG_STR("error", errbuf));
            note(c, NULL, errbuf);
            rc = EXACTLY_EDATABASE;
            goto done;
        }
        for (i = 0; i < e->bb.n_msgs; i++) {
            batch_msg *bm = &e->bb.msgs[i];
            if (bm->dead) {
                dl_message(c, bm->rk->offset, bm->rk->key, bm->rk->key_len, NULL, bm->reason);
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
        if (!need_sync && e->txn.n_fails == 0) {
            /* Nothing was read: one round trip for the whole batch. No
             * record failed in this path (n_fails == 0): all of them
             * count, known before the answer in case none comes. */
            uint64_t all = 0;
            for (i = 0; i < c->n_recs; i++)
                all += c->recs[i].n_messages;
            c->applied_msgs = all;
            rc = commit(c, part_s, all, commit_sent);
            goto done;
        }
        rc = judge_sync(c, exactly_txn_sync(&e->txn));
        if (rc != EXACTLY_OK)
            goto done;
        account_applied(c, c->recs, c->n_recs);
    }
    rc = commit(c, part_s, c->applied_msgs, commit_sent);
#ifdef EXACTLY_MUTATION_SPLIT_OFFSET_TXN
    /* Mutation: the offset advances in a transaction of its own, after the
     * writes committed: a crash in between applies the batch twice. */
    if (rc == EXACTLY_OK) {
        (void)exactly_txn_send(&e->txn, TXN_FENCE, e->sql.fence,
                               n_fence_params, fence_params, NULL);
        rc = judge_sync(c, exactly_txn_sync(&e->txn));
    }
#endif

done:
    if (rc == EXACTLY_OK && pt->state != PART_S_ISOLATING) {
        const PGresult *ar = exactly_txn_result(&e->txn, attempt_res);
        if (ar && PQntuples(ar) == 1 &&
            strncmp(PQgetvalue(ar, 0, 0), "batch:", 6) != 0)
            /* Not waited for (no crash since the claim), and not 'batch':
             * only another process changing the row can do that. */
            exactly_log(EXACTLY_LOG_WARN, "cycle",
                        "crash guard gave an unexpected answer after the "
                        "batch committed",
                        LOG_PART(pt), LOG_STR("answer", PQgetvalue(ar, 0, 0)));
    }
    if (rc == EXACTLY_OK) {
        size_t dups = 0;
        for (i = 0; i < e->bb.n_msgs && n > 0; i++)
            dups += e->bb.msgs[i].duplicate ? 1 : 0;
        e->st.deduplicated += dups;
        e->st.skipped_missing += skipped;
    } else if (!c->errmsg[0]) {
        note(c, e->txn.sqlstate, e->txn.errmsg);
    }
    return rc;
}

/* ---- a batch, from first attempt to its outcome ------------------------- */

static engine_retry_cause retry_cause(const cycle *c)
{
    const char *st = c->sqlstate;

    if (c->handler_retry)
        return ENGINE_RETRY_HANDLER;
    if (c->environment)
        return ENGINE_RETRY_ENVIRONMENT;
    if (!st[0] || strncmp(st, "08", 2) == 0 || strncmp(st, "57P", 3) == 0)
        return ENGINE_RETRY_CONNECTION;
    if (strcmp(st, "40001") == 0)
        return ENGINE_RETRY_SERIALIZATION;
    if (strcmp(st, "40P01") == 0)
        return ENGINE_RETRY_DEADLOCK;
    if (strcmp(st, "57014") == 0 || strcmp(st, "55P03") == 0 ||
        strcmp(st, "25P03") == 0)
        return ENGINE_RETRY_TIMEOUT;
    return ENGINE_RETRY_OTHER;
}

/* The batch committed: the engine's totals and pt move on. */
static void committed(engine *e, part *pt, cycle *c, size_t n, int64_t end)
{
    e->st.consumed += n;
    e->st.applied += c->applied_msgs;
    e->st.dead_lettered += e->dl.count;
    e->st.batches_committed++;
    exactly_txn_finish(&e->txn);
    pt->next_offset = end;
    pt->pos_conn = e->conn_serial;
    pt->unconfirmed = 0;
    pt->unconfirmed_applied = pt->unconfirmed_dead = 0;
    pt->attempts = 0;
    pt->missing_since_ms = 0;
    engine_part_drop(pt, n);
    engine_part_commit(e, pt);
    exactly_log(EXACTLY_LOG_DEBUG, "cycle", "batch committed",
                LOG_PART(pt),
                LOG_UINT("messages", n), LOG_UINT("records", c->n_recs),
                LOG_INT("next_offset", end));
}

/* Logs a rolled-back attempt by what it was. */
static void log_rollback(const part *pt, const cycle *c, exactly_err rc,
                         int commit_sent)
{
    if (c->environment)
        exactly_log(EXACTLY_LOG_ERROR, "cycle",
                    "batch rolled back: an error about the environment, not "
                    "a record; retried with backoff, nothing dead-lettered "
                    "until it is fixed",
                    LOG_PART(pt),
                    LOG_STR("sqlstate", sqlstate_or_null(c->sqlstate)),
                    LOG_STR("error", c->errmsg));
    else if (c->handler_retry)
        exactly_log(EXACTLY_LOG_WARN, "cycle",
                    "batch rolled back: the handler asked to retry it",
                    LOG_PART(pt), LOG_STR("error", c->errmsg));
    else
        exactly_log(rc == EXACTLY_ERETRY ? EXACTLY_LOG_WARN : EXACTLY_LOG_ERROR,
                    "cycle", "batch rolled back",
                    LOG_PART(pt),
                    LOG_STR("sqlstate", sqlstate_or_null(c->sqlstate)),
                    LOG_INT("commit_sent", commit_sent),
                    LOG_STR("error", c->errmsg));
}

static exactly_err cycle_run_once(engine *e, part *pt, size_t n, int64_t end,
                                  int *retry_cause_out)
{
    cycle c;
    exactly_err rc;
    int commit_sent = 0;
    int back;

    *retry_cause_out = -1;
    rc = engine_db_open(e);
    if (rc != EXACTLY_OK)
        return rc;
    /* After a failed attempt, or on a connection that did not read pt's
     * position yet, the row says where pt stands. */
    if (pt->attempts > 0 || pt->pos_conn != e->conn_serial) {
        size_t before = pt->n_buf;
        int back;
        rc = engine_follow_stored(e, pt, 0, &back);
        if (rc == EXACTLY_EFENCED) {
            e->st.batches_fenced++;
            return rc;
        }
        if (rc != EXACTLY_OK)
            return rc;
        if (back) {
            /* This attempt started above the stored offset: it stops, and
             * the next one starts there, from the messages fetched again.
             * Not a fence: the row is still ours. */
            pt->attempts = 0;
            return EXACTLY_EFENCED;
        }
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
    c.e = e;
    c.pt = pt;
    rc = run_txn(&c, &n, &end, &commit_sent, 0);
    if (rc == EXACTLY_EHANDLER) {
        exactly_log(EXACTLY_LOG_WARN, "cycle",
                    "handler failed, isolating the failing records",
                    LOG_PART(pt),
                    LOG_STR("sqlstate", sqlstate_or_null(c.sqlstate)),
                    LOG_STR("error", c.errmsg));
        rollback(e);
        e->st.retries++;
        free(c.recs);
        memset(&c, 0, sizeof(c));
        c.e = e;
        c.pt = pt;
        commit_sent = 0;
        rc = engine_db_open(e);
        if (rc == EXACTLY_OK)
            rc = run_txn(&c, &n, &end, &commit_sent, 1);
        if (rc == EXACTLY_EHANDLER) {
            /* on_error: stop. Nothing of the batch commits. */
            free(c.recs);
            e->st.batches_rolled_back++;
            rollback(e);
            (void)PART_MOVE(pt, PART_S_HALTED);
            engine_part_pause(e, pt, 1);
            return EXACTLY_EHANDLER;
        }
    }
    if (rc == EXACTLY_OK) {
        committed(e, pt, &c, n, end);
        free(c.recs);
        return EXACTLY_OK;
    }
    free(c.recs);
    e->st.batches_rolled_back++;
    if (rc == EXACTLY_EFENCED) {
        exactly_log(EXACTLY_LOG_WARN, "cycle", "batch fenced",
                    LOG_PART(pt),
                    LOG_INT("epoch", pt->epoch),
                    LOG_INT("start", pt->next_offset),
                    LOG_STR("detail", c.errmsg));
        e->st.batches_fenced++;
        rollback(e);
        if (e->conn && engine_follow_stored(e, pt, 1, &back) == EXACTLY_ERETRY) {
            /* Not known where to go on: keep the buffer and ask again. */
            pt->attempts++;
            return EXACTLY_ERETRY;
        }
        if (!e->conn)
            pt->attempts++;
        return EXACTLY_EFENCED;
    }
    if (rc == EXACTLY_EFATAL) {
        exactly_log(EXACTLY_LOG_ERROR, "cycle",
                    "the handler asked to stop the worker; batch rolled "
                    "back, nothing of it committed",
                    LOG_PART(pt),
                    LOG_INT("offset", pt->next_offset),
                    LOG_STR("error", c.errmsg));
        rollback(e);
        (void)PART_MOVE(pt, PART_S_HALTED);
        engine_part_pause(e, pt, 1);
        return EXACTLY_EFATAL;
    }
    log_rollback(pt, &c, rc, commit_sent);
    /* Remembered in case the stored offset shows it committed after all. */
    pt->unconfirmed = commit_sent;
    pt->unconfirmed_applied = commit_sent ? c.applied_msgs : 0;
    pt->unconfirmed_dead = commit_sent ? e->dl.count : 0;
    rollback(e);
    if (e->conn && exactly_pg_needs_reconnect(c.sqlstate) && c.sqlstate[0])
        engine_db_lost(e);
    pt->attempts++;
    e->st.retries++;
    *retry_cause_out = (int)retry_cause(&c);
    return rc == EXACTLY_ENOMEM ? EXACTLY_ERETRY : rc;
}

#define DELTA(f) r.delta.f = e->st.f - before.f

/* Runs one batch and tells the owner what it did: the counters are the
 * difference of the engine's totals, so the cycle itself stays unaware. */
exactly_err engine_run(engine *e, part *pt, size_t n, int64_t end)
{
    engine_stats before = e->st;
    long long t0 = exactly_now_ms();
    engine_batch_report r;

    trace_batch(pt, n);
    r.rc = cycle_run_once(e, pt, n, end, &r.retry_cause);
    exactly_log_set_trace(NULL);
    if (!e->ops->batch_done)
        return r.rc;
    DELTA(consumed);
    DELTA(applied);
    DELTA(deduplicated);
    DELTA(dead_lettered);
    DELTA(skipped_missing);
    DELTA(batches_committed);
    DELTA(batches_rolled_back);
    DELTA(batches_fenced);
    DELTA(retries);
    DELTA(handler_failures);
    if (r.retry_cause < 0 && r.rc == EXACTLY_OK && r.delta.retries > 0)
        /* A handler failure sent the batch through careful mode. */
        r.retry_cause = ENGINE_RETRY_HANDLER;
    r.elapsed_ms = exactly_now_ms() - t0;
    e->ops->batch_done(e->ops_arg, pt, &r);
    return r.rc;
}
