/*
 * rebalance.c - the worker's partition table in step with the group:
 * claim the offset rows of an assignment (retried while polling until
 * claimed, or given up after a deadline) and assign them at their stored
 * offsets, each paused or fetching as its claim says; on a revoke, commit
 * what is buffered if that works at once and release; a rebalance that
 * arrives during a batch is deferred to its end. The partitions halted
 * until an operator sets their offset are recheck.c's.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "pg_conn.h"
#include "worker_internal.h"

/* How long an assignment may wait for its claim before the worker gives
 * up and exits (its supervisor restarts it, counting a failed start), at
 * most; a shorter max.poll.interval.ms shortens it. */
#define ASSIGN_DEADLINE_MS 120000

/* Where a partition without a stored offset starts (auto.offset.reset
 * earliest or latest). */
static int resolve_start(worker *w, const char *topic, int32_t partition,
                         int64_t *start)
{
    int64_t lo = 0, hi = 0;
    rd_kafka_resp_err_t err;

    err = rd_kafka_query_watermark_offsets(w->rk, topic, partition, &lo, &hi,
                                           10000);
    if (err) {
        exactly_log(EXACTLY_LOG_WARN, "source", "cannot read watermarks",
                    LOG_STR("topic", topic), LOG_INT("partition", partition),
                    LOG_STR("error", rd_kafka_err2str(err)));
        return -1;
    }
    *start = strcmp(w->con.auto_reset, "latest") == 0 ? hi : lo;
    return 0;
}

/* Where a partition whose row has no stored offset starts: by
 * auto.offset.reset, earliest or latest, stored in its row now (*next);
 * error: nowhere (*no_start). Returns EXACTLY_OK or EXACTLY_ERETRY. */
static exactly_err start_of(worker *w, const char *topic, int32_t partition,
                            int64_t epoch, int64_t *next, int *no_start)
{
    char ps[16], es[24], ns[24], err[1024];
    const char *sp[5];

    if (strcmp(w->con.auto_reset, "error") == 0) {
        /* Only this partition stops; the others are served. */
        *no_start = 1;
        return EXACTLY_OK;
    }
    if (resolve_start(w, topic, partition, next) != 0)
        return EXACTLY_ERETRY;
    snprintf(ps, sizeof(ps), "%d", (int)partition);
    snprintf(es, sizeof(es), "%" PRId64, epoch);
    snprintf(ns, sizeof(ns), "%" PRId64, *next);
    sp[0] = w->p->name;
    sp[1] = topic;
    sp[2] = ps;
    sp[3] = es;
    sp[4] = ns;
    if (exactly_pg_exec(w->eng.conn, w->eng.sql.set_start, 5, sp, NULL, err,
                        sizeof(err)) != EXACTLY_OK)
        return EXACTLY_ERETRY;
    return EXACTLY_OK;
}

/* The claimed partition starts afresh at next (no_start: nowhere yet). */
static void claimed(worker *w, part *pt, int64_t epoch, int64_t next,
                    int no_start)
{
    engine_part_drop(pt, pt->n_buf);
    pt->next_offset = next;
    pt->pos_conn = w->eng.conn_serial;
    pt->unconfirmed = 0;
    pt->unconfirmed_applied = pt->unconfirmed_dead = 0;
    pt->epoch = epoch;
    part_state_claimed(&pt->state, no_start, pt->topic, pt->partition);
    pt->recheck_at_ms = exactly_now_ms() + RESET_RECHECK_MS;
    pt->attempts = 0;
    pt->retry_at_ms = 0;
    /* Until it is assigned: the consumer may still hold a pause from an
     * earlier assignment, so worker_assign_pending tells it both ways. */
    pt->paused = 0;
}

void worker_reset_command(const worker *w, const char *topic,
                          int32_t partition, char *out, size_t size)
{
    snprintf(out, size,
             "exactly offsets reset -c %s --pipeline %s --topic %s "
             "--partition %d --to-earliest|--to-latest|--to-offset N "
             "--force",
             w->cfg->path, w->p->name, topic, (int)partition);
}

static void log_claimed(worker *w, const char *topic, int32_t partition,
                        int64_t epoch, int64_t next, int no_start)
{
    if (no_start) {
        char fix[WORKER_RESET_COMMAND_MAX];
        worker_reset_command(w, topic, partition, fix, sizeof(fix));
        exactly_log(EXACTLY_LOG_ERROR, "rebalance",
                    "partition has no stored offset and "
                    "auto.offset.reset=error: halted, the others go on; "
                    "give it a start with exactly offsets reset (command) "
                    "and it resumes there within seconds",
                    LOG_STR("topic", topic),
                    LOG_INT("partition", partition),
                    LOG_INT("epoch", epoch), LOG_STR("command", fix));
    } else
        exactly_log(EXACTLY_LOG_INFO, "rebalance", "partition claimed",
                    LOG_STR("topic", topic),
                    LOG_INT("partition", partition),
                    LOG_INT("epoch", epoch), LOG_INT("next_offset", next));
}

/* Row r of the claim's answer: the partition's part made or reset, its
 * element of list given its start offset. */
static exactly_err claim_row(worker *w, const PGresult *res, int r,
                             rd_kafka_topic_partition_list_t *list)
{
    const char *topic = PQgetvalue(res, r, 0);
    int32_t partition = (int32_t)atoi(PQgetvalue(res, r, 1));
    int64_t epoch = strtoll(PQgetvalue(res, r, 3), NULL, 10);
    int64_t next = -1;
    int no_start = 0;
    part *pt;
    int i;

    if (!PQgetisnull(res, r, 2))
        next = strtoll(PQgetvalue(res, r, 2), NULL, 10);
    else if (start_of(w, topic, partition, epoch, &next, &no_start) !=
             EXACTLY_OK)
        return EXACTLY_ERETRY;
    pt = engine_part_find(&w->eng, topic, partition);
    if (!pt && !(pt = engine_part_add(&w->eng, topic, partition)))
        return EXACTLY_ENOMEM;
    claimed(w, pt, epoch, next, no_start);
    /* A halted partition is assigned at the end and paused at once:
     * it stays ours without reading anything. */
    for (i = 0; i < list->cnt; i++)
        if (list->elems[i].partition == partition &&
            strcmp(list->elems[i].topic, topic) == 0)
            list->elems[i].offset = no_start ? RD_KAFKA_OFFSET_END : next;
    log_claimed(w, topic, partition, epoch, next, no_start);
    worker_metrics_position(w, pt, 1);
    return EXACTLY_OK;
}

/* Claims the rows of every partition in list in one statement; sets each
 * element's offset. Returns EXACTLY_OK or a retriable error. */
static exactly_err claim(worker *w, rd_kafka_topic_partition_list_t *list)
{
    strbuf topics = {0}, parts = {0};
    PGresult *res = NULL;
    char err[1024];
    const char *params[4];
    exactly_err rc;
    int i, r;

    rc = worker_db(w);
    if (rc != EXACTLY_OK)
        return rc;
    strbuf_array_begin(&topics);
    strbuf_array_begin(&parts);
    for (i = 0; i < list->cnt; i++) {
        strbuf_array_elem_str(&topics, list->elems[i].topic);
        strbuf_array_elem_int(&parts, list->elems[i].partition);
    }
    strbuf_array_end(&topics);
    strbuf_array_end(&parts);
    params[0] = w->p->name;
    params[1] = strbuf_str(&topics);
    params[2] = strbuf_str(&parts);
    params[3] = w->eng.owner;
    rc = exactly_pg_exec(w->eng.conn, w->eng.sql.claim, 4, params, &res, err, sizeof(err));
    strbuf_free(&topics);
    strbuf_free(&parts);
    if (rc != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_WARN, "rebalance", "claim failed",
                    LOG_STR("error", err));
        if (PQstatus(w->eng.conn) != CONNECTION_OK)
            worker_db_lost(w);
        return EXACTLY_ERETRY;
    }
    for (r = 0; r < PQntuples(res) && rc == EXACTLY_OK; r++)
        rc = claim_row(w, res, r, list);
    PQclear(res);
    return rc;
}

/* Hands list to librdkafka (claimed: every element carries its offset).
 * A refusal is fatal: the member's state is no longer known. */
static void assign_claimed(worker *w, rd_kafka_topic_partition_list_t *list)
{
    rd_kafka_error_t *e = NULL;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;

    if (w->cooperative)
        e = rd_kafka_incremental_assign(w->rk, list);
    else
        err = rd_kafka_assign(w->rk, list);
    if (e || err) {
        exactly_log(EXACTLY_LOG_ERROR, "rebalance", "assign failed",
                    LOG_STR("error", e ? rd_kafka_error_string(e)
                                       : rd_kafka_err2str(err)));
        if (e)
            rd_kafka_error_destroy(e);
        w->fatal = 1;
    }
}

/* How long an assignment may wait for its claim: no longer than Kafka
 * lets a member go without polling, so a worker that cannot serve its
 * partitions never holds them longer than a stuck one would. */
static long long claim_patience_ms(const worker *w)
{
    return w->con.max_poll_ms > 0 && w->con.max_poll_ms < ASSIGN_DEADLINE_MS
               ? w->con.max_poll_ms
               : ASSIGN_DEADLINE_MS;
}

void worker_assign_pending(worker *w)
{
    long long now = exactly_now_ms();
    exactly_err rc;

    if (!w->pending_assign || now < w->pending_retry_ms || w->fatal)
        return;
    rc = claim(w, w->pending_assign);
    /* Idleness counts from the assignment: a slow group join is not
     * an idle partition. */
    w->last_msg_ms = exactly_now_ms();
    if (rc == EXACTLY_OK) {
        if (w->pending_attempts > 0)
            exactly_log(EXACTLY_LOG_INFO, "rebalance", "partitions claimed after",
                        LOG_INT("attempts", w->pending_attempts + 1));
        assign_claimed(w, w->pending_assign);
        /* librdkafka keeps an application's pause across an unassign and
         * an assign: a partition paused before a revoke (the breaker, a
         * fence, a halt, a full buffer) would come back paused, and
         * nothing would resume it. Every claimed partition is told now
         * what it is: paused if halted, or while the breaker is open
         * (which resumes it on closing), fetching otherwise. */
        for (int i = 0; i < w->pending_assign->cnt; i++) {
            part *pt = engine_part_find(&w->eng, w->pending_assign->elems[i].topic,
                                        w->pending_assign->elems[i].partition);
            if (pt)
                engine_part_pause_assigned(&w->eng, pt,
                                           pt->state == PART_S_NO_START ||
                                               w->db_down_since_ms != 0);
        }
        rd_kafka_topic_partition_list_destroy(w->pending_assign);
        w->pending_assign = NULL;
        return;
    }
    if (w->fatal)
        return;
    if (now >= w->pending_deadline_ms) {
        exactly_log(EXACTLY_LOG_ERROR, "rebalance",
                    "cannot claim assigned partitions; exiting so that the "
                    "group moves on",
                    LOG_INT("waited_ms", claim_patience_ms(w)),
                    LOG_INT("attempts", w->pending_attempts + 1));
        w->fatal = 1;
        return;
    }
    if (w->pending_attempts == 0)
        exactly_log(EXACTLY_LOG_WARN, "rebalance",
                    "cannot claim assigned partitions yet; retrying while "
                    "polling",
                    LOG_INT("partitions", w->pending_assign->cnt),
                    LOG_INT("give_up_in_ms", w->pending_deadline_ms - now));
    w->pending_retry_ms = exactly_now_ms() + worker_backoff_ms(w->pending_attempts++);
}

/* librdkafka waits for the assign call, which may come after the callback
 * returns: when the claim cannot be made at once, the loop retries it
 * (worker_assign_pending) and assigns then. */
void worker_assign(worker *w, rd_kafka_topic_partition_list_t *list)
{
    int i;

    w->joined = 1;
    w->last_msg_ms = exactly_now_ms();
    if (list->cnt == 0 && !w->pending_assign) {
        assign_claimed(w, list);
        return;
    }
    if (!w->pending_assign) {
        w->pending_assign = rd_kafka_topic_partition_list_copy(list);
        w->pending_deadline_ms = exactly_now_ms() + claim_patience_ms(w);
        w->pending_attempts = 0;
    } else {
        /* A further increment while the first waits: claimed together. */
        for (i = 0; i < list->cnt; i++)
            rd_kafka_topic_partition_list_add(w->pending_assign,
                                              list->elems[i].topic,
                                              list->elems[i].partition);
    }
    w->pending_retry_ms = 0;
    worker_assign_pending(w);
}

/* Drops revoked partitions from an assignment still waiting for its
 * claim: nothing was claimed or consumed for them. */
static void revoke_pending(worker *w, const rd_kafka_topic_partition_list_t *list)
{
    int i;

    if (!w->pending_assign)
        return;
    for (i = 0; i < list->cnt && w->cooperative; i++)
        (void)rd_kafka_topic_partition_list_del(
            w->pending_assign, list->elems[i].topic, list->elems[i].partition);
    if (!w->cooperative || w->pending_assign->cnt == 0) {
        rd_kafka_topic_partition_list_destroy(w->pending_assign);
        w->pending_assign = NULL;
    }
}

/* At exit: answers an assignment that never got its claim, so that
 * leaving the group does not wait for it. */
void worker_release_pending(worker *w)
{
    if (!w->pending_assign)
        return;
    if (w->cooperative) {
        /* Assigned unclaimed (no part exists: nothing is consumed); the
         * close revokes it again. */
        rd_kafka_error_t *e = rd_kafka_incremental_assign(w->rk, w->pending_assign);
        if (e)
            rd_kafka_error_destroy(e);
    } else {
        (void)rd_kafka_assign(w->rk, NULL);
    }
    rd_kafka_topic_partition_list_destroy(w->pending_assign);
    w->pending_assign = NULL;
}

/* Of a cooperative revoke's list, the partitions this worker assigned
 * (NULL when out of memory): rd_kafka_incremental_unassign refuses the
 * whole list when one of them was never assigned (its assign still
 * waits for its claim), and unassigns none. */
static rd_kafka_topic_partition_list_t *
revoked_assigned(worker *w, const rd_kafka_topic_partition_list_t *list)
{
    rd_kafka_topic_partition_list_t *made =
        rd_kafka_topic_partition_list_new(list->cnt > 0 ? list->cnt : 1);
    int i;

    for (i = 0; made && i < list->cnt; i++)
        if (!w->pending_assign ||
            !rd_kafka_topic_partition_list_find(w->pending_assign,
                                                list->elems[i].topic,
                                                list->elems[i].partition))
            rd_kafka_topic_partition_list_add(made, list->elems[i].topic,
                                              list->elems[i].partition);
    return made;
}

void worker_revoke(worker *w, rd_kafka_topic_partition_list_t *list, int lost)
{
    rd_kafka_topic_partition_list_t *made =
        w->cooperative ? revoked_assigned(w, list) : NULL;
    part **gone = NULL;
    size_t n_gone = 0, k;
    int i;

    /* Eager: everything goes until the next assignment; cooperative: an
     * increment, unless the whole assignment was lost. */
    if (lost || !w->cooperative)
        w->joined = 0;
    revoke_pending(w, list);
    /* The revoked partitions, let go of together below (NULL: one by
     * one, as memory allows). */
    if (list->cnt > 0)
        gone = malloc((size_t)list->cnt * sizeof(*gone));
    for (i = 0; i < list->cnt; i++) {
        part *pt = engine_part_find(&w->eng, list->elems[i].topic,
                                    list->elems[i].partition);
        if (!pt)
            continue;
        /* A revoked partition's buffer is committed now if that works at
         * once; otherwise dropped, and the next owner reads it again from
         * the stored offset. A lost partition is tried too: if a new owner
         * has claimed it, the fence refuses (and counts) the commit; if
         * nobody has, committing is still correct. */
        if (lost && pt->n_buf > 0)
            exactly_log(EXACTLY_LOG_WARN, "rebalance",
                        "partition lost with a buffered batch",
                        LOG_PART(pt), LOG_UINT("messages", pt->n_buf));
        while (!w->fatal && !part_state_stopped(pt->state) && pt->n_buf > 0 &&
               pt->retry_at_ms == 0) {
            size_t n = worker_batch_size(w, pt);
            if (worker_run_batch(w, pt, n, worker_batch_end(w, pt, n),
                                 WORKER_BATCH_REVOKE) != WORKER_NEXT_MORE)
                break;
        }
        /* After the flush, whose commit publishes the position as an
         * owner's: from here this worker's gauges of pt are not shown. */
        worker_metrics_position(w, pt, 0);
        if (gone) {
            gone[n_gone++] = pt;
        } else {
            /* Leaving it alive: no death inside apply() to count. */
            engine_release(&w->eng, pt);
            engine_part_remove(&w->eng, pt);
        }
    }
    /* Left alive: no death inside apply() to count; one transaction lets
     * go of every row. */
    engine_release_parts(&w->eng, gone, n_gone);
    for (k = 0; k < n_gone; k++)
        engine_part_remove(&w->eng, gone[k]);
    free(gone);
    if (w->cooperative) {
        rd_kafka_error_t *e =
            rd_kafka_incremental_unassign(w->rk, made ? made : list);
        if (e) {
            exactly_log(EXACTLY_LOG_ERROR, "rebalance",
                        "the consumer refused to unassign revoked partitions",
                        LOG_STR("error", rd_kafka_error_string(e)));
            rd_kafka_error_destroy(e);
        }
        if (made)
            rd_kafka_topic_partition_list_destroy(made);
    } else {
        (void)rd_kafka_assign(w->rk, NULL);
    }
}

void worker_defer_rebalance(worker *w, rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *list, int lost)
{
    struct deferred_rebalance *d;

    if (w->n_deferred == sizeof(w->deferred) / sizeof(w->deferred[0])) {
        /* Cannot happen: each event waits for our call before the next. */
        exactly_log(EXACTLY_LOG_ERROR, "rebalance", "too many deferred rebalances");
        w->fatal = 1;
        return;
    }
    d = &w->deferred[w->n_deferred++];
    d->err = err;
    d->list = rd_kafka_topic_partition_list_copy(list);
    d->lost = lost;
}

void worker_replay_deferred(worker *w)
{
    size_t i;

    for (i = 0; i < w->n_deferred; i++) {
        struct deferred_rebalance *d = &w->deferred[i];
        if (d->err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
            worker_assign(w, d->list);
        else
            worker_revoke(w, d->list, d->lost);
        rd_kafka_topic_partition_list_destroy(d->list);
    }
    w->n_deferred = 0;
}
