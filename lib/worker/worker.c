/*
 * worker.c - the worker's loop: poll, buffer per partition, flush a
 * partition's batch when it is full or old enough, and keep the partition
 * table in step with rebalances (claim on assign, flush on revoke).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "err.h"
#include "log.h"
#include "util/host_id.h"
#include "lookup.h"
#include "pg_conn.h"
#include "worker_internal.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 30000
/* How long an assignment may wait for its claim before the worker gives
 * up and exits (its supervisor restarts it, counting a failed start), at
 * most; a shorter max.poll.interval.ms shortens it. */
#define ASSIGN_DEADLINE_MS 120000
/* How often a partition halted for want of a start offset reads its row
 * again. */
#define NO_START_RECHECK_MS 3000

/* Capped exponential backoff with full jitter. */
static long long backoff_ms(int attempts)
{
    long long cap = BACKOFF_MIN_MS;
    int i;

    for (i = 0; i < attempts && cap < BACKOFF_MAX_MS; i++)
        cap *= 2;
    if (cap > BACKOFF_MAX_MS)
        cap = BACKOFF_MAX_MS;
    return cap / 2 + (long long)(random() % (cap / 2 + 1));
}

int worker_kafka_error_due(worker *w)
{
    long long now = exactly_now_ms();

    if (!w->kafka_episode_ms) {
        w->kafka_episode_ms = now;
        w->kafka_logged_ms = now;
        return 1;
    }
    if (now - w->kafka_logged_ms < 60000)
        return 0;
    w->kafka_logged_ms = now;
    return 1;
}

void worker_metrics_position(worker *w, const part *pt, int assigned)
{
    metrics_partition *mp;
    int64_t lo, hi;

    if (!w->m || !(mp = metrics_part(w->m, pt->topic, pt->partition)))
        return;
    /* The epoch first: an owner is judged by it once assigned shows. */
    metrics_set(&mp->epoch, pt->epoch);
    __atomic_store_n(&mp->assigned, assigned, __ATOMIC_RELAXED);
    metrics_set(&mp->stored_offset, pt->next_offset);
    /* The cached figure of the last fetch: no request to the broker. */
    if (w->rk && rd_kafka_get_watermark_offsets(w->rk, pt->topic, pt->partition,
                                                &lo, &hi) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        hi >= 0)
        metrics_set(&mp->high_watermark, hi);
}

/* What each partition is doing, for the status page and
 * exactly_partition_state: the most severe condition wins. */
static void publish_states(worker *w)
{
    size_t i;

    if (!w->m)
        return;
    for (i = 0; i < w->eng.n_parts; i++) {
        part *pt = w->eng.parts[i];
        metrics_partition *mp = metrics_part(w->m, pt->topic, pt->partition);
        int st = part_state_halted(pt->state)    ? PART_HALTED
                 : pt->state == PART_S_FENCED    ? PART_FENCED
                 : w->db_down_since_ms           ? PART_BREAKER_OPEN
                 : pt->state == PART_S_ISOLATING ? PART_ISOLATING
                 : pt->retry_at_ms > 0           ? PART_BACKING_OFF
                                                 : PART_RUNNING;
        if (mp)
            __atomic_store_n(&mp->state, st, __ATOMIC_RELAXED);
    }
}

/* The log's tap: the worker's warnings and errors, kept in its slot. */
static void note_error(void *arg, exactly_log_level level, const char *line,
                       size_t len)
{
    (void)level;
    metrics_note_error(arg, line, len);
}

/* ---- what the engine asks of the worker ---------------------------------- */

static exactly_err ops_db_open(void *arg) { return worker_db(arg); }
static void ops_db_lost(void *arg) { worker_db_lost(arg); }

static void ops_position(void *arg, const part *pt)
{
    worker_metrics_position(arg, pt, 1);
}

static metrics_retry_cause metrics_cause(engine_retry_cause c)
{
    switch (c) {
    case ENGINE_RETRY_CONNECTION:
        return RETRY_CONNECTION;
    case ENGINE_RETRY_SERIALIZATION:
        return RETRY_SERIALIZATION;
    case ENGINE_RETRY_DEADLOCK:
        return RETRY_DEADLOCK;
    case ENGINE_RETRY_TIMEOUT:
        return RETRY_TIMEOUT;
    case ENGINE_RETRY_HANDLER:
        return RETRY_HANDLER;
    case ENGINE_RETRY_ENVIRONMENT:
        return RETRY_ENVIRONMENT;
    case ENGINE_RETRY_OTHER:
        break;
    }
    return RETRY_OTHER;
}

/* What a batch did, into the worker's metrics slot (when it has one). */
static void ops_batch_done(void *arg, const part *pt,
                           const engine_batch_report *r)
{
    worker *w = arg;
    const engine_stats *d = &r->delta;
    metrics_partition *mp;

    if (!w->m)
        return;
    mp = metrics_part(w->m, pt->topic, pt->partition);
    if (mp) {
        metrics_add(&mp->consumed, d->consumed);
        metrics_add(&mp->applied, d->applied);
        metrics_add(&mp->deduplicated, d->deduplicated);
        metrics_add(&mp->dead_lettered, d->dead_lettered);
        metrics_add(&mp->skipped_missing, d->skipped_missing);
    }
    metrics_add(&w->m->consumed, d->consumed);
    metrics_add(&w->m->applied, d->applied);
    metrics_add(&w->m->deduplicated, d->deduplicated);
    metrics_add(&w->m->dead_lettered, d->dead_lettered);
    metrics_add(&w->m->skipped_missing, d->skipped_missing);
    metrics_add(&w->m->retries_total, d->retries);
    metrics_add(&w->m->batches_committed, d->batches_committed);
    metrics_add(&w->m->batches_rolled_back, d->batches_rolled_back);
    metrics_add(&w->m->batches_fenced, d->batches_fenced);
    if (r->retry_cause >= 0)
        metrics_add(&w->m->retries[metrics_cause(r->retry_cause)], 1);
    if (r->rc == EXACTLY_OK) {
        metrics_observe_batch(w->m, r->elapsed_ms * 1000);
        worker_metrics_position(w, pt, 1);
    }
}

static const engine_ops worker_engine_ops = {
    .db_open = ops_db_open,
    .db_lost = ops_db_lost,
    .position = ops_position,
    .batch_done = ops_batch_done,
};

/* ---- what the consumer tells the worker ---------------------------------- */

static void con_fatal(void *arg)
{
    worker *w = arg;
    w->fatal = 1;
}

static int con_error_due(void *arg) { return worker_kafka_error_due(arg); }

static void con_rebalance(void *arg, rd_kafka_resp_err_t err,
                          rd_kafka_topic_partition_list_t *parts, int lost,
                          int cooperative)
{
    worker *w = arg;

    w->st.rebalances++;
    w->cooperative = cooperative;
    /* The group coordinator answered: Kafka is reachable again. */
    if (w->kafka_episode_ms) {
        exactly_log(EXACTLY_LOG_INFO, "source", "kafka answers again",
                    LOG_INT("after_ms", exactly_now_ms() - w->kafka_episode_ms));
        w->kafka_episode_ms = 0;
    }
    if (w->in_cycle) {
        /* librdkafka waits for the assign/unassign call, which may come
         * after this callback returns: it comes when the batch ends. */
        worker_defer_rebalance(w, err, parts, lost);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
        worker_assign(w, parts);
    else
        worker_revoke(w, parts, lost);
}

exactly_err worker_consumer_start(worker *w, char *errbuf, size_t errbuf_size)
{
    exactly_err rc;

    w->con.cfg = w->cfg;
    w->con.p = w->p;
    w->con.owner = w->eng.owner;
    w->con.cbs.fatal = con_fatal;
    w->con.cbs.error_due = con_error_due;
    w->con.cbs.rebalance = con_rebalance;
    w->con.cbs.arg = w;
    rc = worker_consumer_create(&w->con, errbuf, errbuf_size);
    if (rc != EXACTLY_OK)
        return rc;
    w->rk = w->con.rk;
    /* The engine seeks, pauses and commits its partitions on it. */
    w->eng.rk = w->rk;
    return EXACTLY_OK;
}

void worker_init(worker *w, const exactly_config *cfg, const cfg_pipeline *p)
{
    memset(w, 0, sizeof(*w));
    w->cfg = cfg;
    w->p = p;
    engine_init(&w->eng, p, &worker_engine_ops, w);
    w->eng.timeout_ms = exactly_pg_wait_bound_ms(cfg);
}

void worker_stats(const worker *w, exactly_worker_stats *out)
{
    const engine_stats *e = &w->eng.st;

    *out = w->st;
    out->consumed = e->consumed;
    out->applied = e->applied;
    out->deduplicated = e->deduplicated;
    out->dead_lettered = e->dead_lettered;
    out->skipped_missing = e->skipped_missing;
    out->batches_committed = e->batches_committed;
    out->batches_rolled_back = e->batches_rolled_back;
    out->batches_fenced = e->batches_fenced;
    out->retries = e->retries;
    out->handler_failures = e->handler_failures;
}

/* Runs one batch of pt (engine_run); a handler that asked to stop the
 * worker (EXACTLY_EFATAL) stops it at the next turn. */
static exactly_err run_batch(worker *w, part *pt, size_t n, int64_t end)
{
    exactly_err rc = engine_run(&w->eng, pt, n, end);

    if (rc == EXACTLY_EFATAL)
        w->fatal = EXACTLY_EXIT_HANDLER_STOP;
    return rc;
}

/* ---- the database connection -------------------------------------------- */

static exactly_err build_lookup(worker *w)
{
    free(w->eng.lookup_sql);
    free(w->eng.key_column);
    return exactly_lookup_sql(w->eng.conn, w->p, &w->eng.lookup_sql, &w->eng.key_column);
}

void worker_db_lost(worker *w)
{
    if (!w->eng.conn)
        return;
    exactly_txn_clear(&w->eng.txn);
    PQfinish(w->eng.conn);
    w->eng.conn = NULL;
    w->reconnect_at_ms = exactly_now_ms() + backoff_ms(w->reconnect_attempts++);
}

exactly_err worker_db(worker *w)
{
    char err[1024];
    int version = 0;
    exactly_err rc;

    if (w->eng.conn && PQstatus(w->eng.conn) == CONNECTION_OK)
        return EXACTLY_OK;
    if (w->eng.conn)
        worker_db_lost(w);
    if (exactly_now_ms() < w->reconnect_at_ms)
        return EXACTLY_ERETRY;
    w->eng.conn = exactly_pg_connect(w->cfg, w->eng.owner, err, sizeof(err));
    if (!w->eng.conn) {
        w->reconnect_at_ms = exactly_now_ms() + backoff_ms(w->reconnect_attempts++);
        exactly_log(EXACTLY_LOG_WARN, "postgres", "connect failed",
                    LOG_INT("attempt", w->reconnect_attempts),
                    LOG_STR("error", err));
        return EXACTLY_ERETRY;
    }
    if (exactly_store_version(w->eng.conn, w->cfg->postgres.schema, &version, err,
                              sizeof(err)) != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_WARN, "postgres", "cannot read schema version",
                    LOG_STR("error", err));
        worker_db_lost(w);
        return EXACTLY_ERETRY;
    }
    if (version != EXACTLY_SCHEMA_VERSION) {
        char fix[4200];
        snprintf(fix, sizeof(fix), "run 'exactly migrate -c %s'", w->cfg->path);
        exactly_log(EXACTLY_LOG_ERROR, "postgres",
                    "the framework schema is not at the version this exactly "
                    "needs",
                    LOG_STR("schema", w->cfg->postgres.schema),
                    LOG_INT("version", version),
                    LOG_INT("needs", EXACTLY_SCHEMA_VERSION),
                    LOG_STR("fix", fix));
        w->fatal = 2;
        worker_db_lost(w);
        return EXACTLY_EDATABASE;
    }
    /* A pooler in transaction mode would lose the session's timeouts. */
    rc = exactly_pg_check_session(w->eng.conn, w->cfg, err, sizeof(err));
    if (rc == EXACTLY_ECONFIG) {
        exactly_log(EXACTLY_LOG_ERROR, "postgres",
                    "refusing to run through this connection",
                    LOG_STR("error", err));
        w->fatal = 2;
        worker_db_lost(w);
        return EXACTLY_EDATABASE;
    }
    if (rc != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_WARN, "postgres", "cannot check the connection",
                    LOG_STR("error", err));
        worker_db_lost(w);
        return EXACTLY_ERETRY;
    }
    if (!w->eng.sql_ready) {
        if (exactly_store_sql_init(&w->eng.sql, w->eng.conn, w->cfg->postgres.schema) != 0 ||
            build_lookup(w) != EXACTLY_OK) {
            worker_db_lost(w);
            return EXACTLY_ENOMEM;
        }
        w->eng.sql_ready = 1;
    }
    /* host->emit's outbox insert: set on every connection, since
     * worker_db_lost() clears the transaction. */
    w->eng.txn.emit_sql = w->eng.sql.emit;
    if (w->reconnect_attempts > 0)
        exactly_log(EXACTLY_LOG_INFO, "postgres", "connected after",
                    LOG_INT("attempts", w->reconnect_attempts));
    w->reconnect_attempts = 0;
    /* A new connection: every position read on an earlier one is read
     * again before it is used (part.pos_conn). */
    w->eng.conn_serial++;
    return EXACTLY_OK;
}

/* ---- rebalance ----------------------------------------------------------- */

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
    for (r = 0; r < PQntuples(res); r++) {
        const char *topic = PQgetvalue(res, r, 0);
        int32_t partition = (int32_t)atoi(PQgetvalue(res, r, 1));
        int64_t epoch = strtoll(PQgetvalue(res, r, 3), NULL, 10);
        int64_t next = -1;
        int no_start = 0;
        part *pt;

        if (!PQgetisnull(res, r, 2)) {
            next = strtoll(PQgetvalue(res, r, 2), NULL, 10);
        } else if (strcmp(w->con.auto_reset, "error") == 0) {
            /* Only this partition stops; the others are served. */
            no_start = 1;
        } else {
            char ps[16], es[24], ns[24];
            const char *sp[5];
            if (resolve_start(w, topic, partition, &next) != 0) {
                PQclear(res);
                return EXACTLY_ERETRY;
            }
            snprintf(ps, sizeof(ps), "%d", (int)partition);
            snprintf(es, sizeof(es), "%" PRId64, epoch);
            snprintf(ns, sizeof(ns), "%" PRId64, next);
            sp[0] = w->p->name;
            sp[1] = topic;
            sp[2] = ps;
            sp[3] = es;
            sp[4] = ns;
            rc = exactly_pg_exec(w->eng.conn, w->eng.sql.set_start, 5, sp, NULL, err,
                                 sizeof(err));
            if (rc != EXACTLY_OK) {
                PQclear(res);
                return EXACTLY_ERETRY;
            }
        }
        pt = engine_part_find(&w->eng, topic, partition);
        if (!pt && !(pt = engine_part_add(&w->eng, topic, partition))) {
            PQclear(res);
            return EXACTLY_ENOMEM;
        }
        engine_part_drop(pt, pt->n_buf);
        pt->next_offset = next;
        pt->pos_conn = w->eng.conn_serial;
        pt->unconfirmed = 0;
        pt->unconfirmed_applied = pt->unconfirmed_dead = 0;
        pt->epoch = epoch;
        part_state_claimed(&pt->state, no_start, pt->topic, pt->partition);
        pt->recheck_at_ms = exactly_now_ms() + NO_START_RECHECK_MS;
        pt->attempts = 0;
        pt->retry_at_ms = 0;
        pt->paused = 0;
        /* A halted partition is assigned at the end and paused at once:
         * it stays ours without reading anything. */
        for (i = 0; i < list->cnt; i++)
            if (list->elems[i].partition == partition &&
                strcmp(list->elems[i].topic, topic) == 0)
                list->elems[i].offset = no_start ? RD_KAFKA_OFFSET_END : next;
        if (no_start) {
            char fix[4600];
            snprintf(fix, sizeof(fix),
                     "exactly offsets reset -c %s --pipeline %s --topic %s "
                     "--partition %d --to-earliest|--to-latest|--to-offset N "
                     "--force",
                     w->cfg->path, w->p->name, topic, (int)partition);
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
        worker_metrics_position(w, pt, 1);
    }
    PQclear(res);
    return EXACTLY_OK;
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
        for (int i = 0; i < w->pending_assign->cnt; i++) {
            part *pt = engine_part_find(&w->eng, w->pending_assign->elems[i].topic,
                                        w->pending_assign->elems[i].partition);
            if (pt && pt->state == PART_S_NO_START)
                engine_part_pause(&w->eng, pt, 1);
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
    w->pending_retry_ms = exactly_now_ms() + backoff_ms(w->pending_attempts++);
}

/* librdkafka waits for the assign call, which may come after the callback
 * returns: when the claim cannot be made at once, the loop retries it
 * (worker_assign_pending) and assigns then. */
void worker_assign(worker *w, rd_kafka_topic_partition_list_t *list)
{
    int i;

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
static void release_pending(worker *w)
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

static int64_t batch_end(worker *w, part *pt, size_t n)
{
    int64_t end = pt->buf[n - 1]->offset + 1;

    /* Control records after the last message occupy offsets too: store
     * the consumer's position so the partition shows no phantom lag. */
    if (n == pt->n_buf) {
        int64_t pos = engine_part_position(&w->eng, pt);
        if (pos > end)
            end = pos;
    }
    return end;
}

static size_t batch_size(worker *w, part *pt)
{
    size_t max = (size_t)w->p->batch.max_messages;
    return pt->n_buf < max ? pt->n_buf : max;
}

void worker_revoke(worker *w, rd_kafka_topic_partition_list_t *list, int lost)
{
    int i;

    revoke_pending(w, list);
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
        worker_metrics_position(w, pt, 0);
        while (!w->fatal && !part_state_stopped(pt->state) && pt->n_buf > 0 &&
               pt->retry_at_ms == 0) {
            size_t n = batch_size(w, pt);
            if (run_batch(w, pt, n, batch_end(w, pt, n)) != EXACTLY_OK)
                break;
        }
        /* Leaving it alive: no death inside apply() to count. */
        engine_release(&w->eng, pt);
        engine_part_remove(&w->eng, pt);
    }
    if (w->cooperative) {
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(w->rk, list);
        if (e)
            rd_kafka_error_destroy(e);
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

static void replay_deferred(worker *w)
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

/* ---- the loop ------------------------------------------------------------ */

static void on_message(worker *w, rd_kafka_message_t *m);

/* While a batch waits for PostgreSQL: take what Kafka has into the
 * buffers, so the next batch is ready when this one commits. Only
 * buffering happens here; a rebalance is deferred (in_cycle). */
static int drain_kafka(void *arg)
{
    worker *w = arg;
    rd_kafka_message_t *m;
    size_t buffered = 0;
    size_t cap;
    size_t i;
    int n = 0;

    /* About one batch ahead per partition is all the next round needs;
     * the rest waits in librdkafka's queue, which bounds its own size. */
    for (i = 0; i < w->eng.n_parts; i++)
        buffered += w->eng.parts[i]->n_buf;
    cap = (size_t)w->p->batch.max_messages * (w->eng.n_parts > 2 ? w->eng.n_parts : 2);
    while (buffered + (size_t)n < cap &&
           (m = rd_kafka_consumer_poll(w->rk, 0)) != NULL) {
        on_message(w, m);
        n++;
    }
    return n;
}


static void on_message(worker *w, rd_kafka_message_t *m)
{
    const char *topic;
    part *pt;

    if (m->err) {
        if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
            m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
            pt = m->rkt ? engine_part_find(&w->eng, rd_kafka_topic_name(m->rkt),
                                           m->partition)
                        : NULL;
            if (pt && !part_state_stopped(pt->state)) {
                exactly_log(EXACTLY_LOG_ERROR, "source",
                            "stored offset is no longer in the log; partition "
                            "halted (reset it with exactly offsets reset)",
                            LOG_PART(pt),
                            LOG_INT("next_offset", pt->next_offset),
                            LOG_STR("error", rd_kafka_message_errstr(m)));
                (void)PART_MOVE(pt, PART_S_HALTED);
                engine_part_pause(&w->eng, pt, 1);
            }
        } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (worker_kafka_error_due(w)) {
                exactly_log(EXACTLY_LOG_WARN, "source", "consume error",
                            LOG_STR("code", rd_kafka_err2name(m->err)),
                            LOG_STR("text", rd_kafka_message_errstr(m)));
            }
        }
        rd_kafka_message_destroy(m);
        return;
    }
    if (w->kafka_episode_ms) {
        exactly_log(EXACTLY_LOG_INFO, "source", "kafka answers again",
                    LOG_INT("after_ms", exactly_now_ms() - w->kafka_episode_ms));
        w->kafka_episode_ms = 0;
    }
    topic = rd_kafka_topic_name(m->rkt);
    pt = engine_part_find(&w->eng, topic, m->partition);
    if (!pt || part_state_stopped(pt->state)) {
        rd_kafka_message_destroy(m);
        return;
    }
    /* Older librdkafka can redeliver after a rebalance; the database says
     * what is already applied. */
    if (m->offset < pt->next_offset ||
        (pt->n_buf > 0 && m->offset <= pt->buf[pt->n_buf - 1]->offset)) {
        w->st.skipped_below++;
        rd_kafka_message_destroy(m);
        return;
    }
    if (pt->n_buf == pt->cap_buf) {
        size_t cap = pt->cap_buf ? pt->cap_buf * 2 : 256;
        rd_kafka_message_t **nb = realloc(pt->buf, cap * sizeof(*nb));
        if (!nb) {
            /* Dropping is safe: the message is re-read from the stored
             * offset after the seek below. */
            exactly_log(EXACTLY_LOG_ERROR, "source", "out of memory buffering");
            rd_kafka_message_destroy(m);
            engine_part_seek(&w->eng, pt, pt->n_buf ? pt->buf[pt->n_buf - 1]->offset + 1
                                         : pt->next_offset);
            return;
        }
        pt->buf = nb;
        pt->cap_buf = cap;
    }
    if (pt->n_buf == 0)
        pt->first_at_ms = exactly_now_ms();
    pt->buf[pt->n_buf++] = m;
    w->last_msg_ms = exactly_now_ms();
}

/* The next offset a partition expects from Kafka. */
static int64_t expected_next(const part *pt)
{
    return pt->n_buf ? pt->buf[pt->n_buf - 1]->offset + 1 : pt->next_offset;
}

/* The database is gone (not one statement failing: the connection).
 * Pausing every partition keeps the buffers bounded while the loop goes on
 * polling, so the worker stays in its group. Logged once per outage. */
static void breaker_open(worker *w)
{
    size_t i;

    if (w->db_down_since_ms)
        return;
    w->db_down_since_ms = exactly_now_ms();
    exactly_log(EXACTLY_LOG_WARN, "worker",
                "database unavailable; pausing all partitions until it answers",
                LOG_UINT("partitions", w->eng.n_parts));
    for (i = 0; i < w->eng.n_parts; i++)
        engine_part_pause(&w->eng, w->eng.parts[i], 1);
}

/* Tries the database (at the reconnect backoff's pace); on success resumes
 * every partition from where its buffer ends. Returns 1 when closed. */
static int breaker_try_close(worker *w)
{
    size_t i;

    if (!w->db_down_since_ms)
        return 1;
    if (worker_db(w) != EXACTLY_OK)
        return 0;
    /* The server that answers may not be the one that went away (a
     * failover): every position is read again before anything resumes,
     * and one the new server holds behind ours is fetched again. */
    for (i = 0; i < w->eng.n_parts; i++) {
        part *pt = w->eng.parts[i];
        if (part_state_stopped(pt->state) || pt->pos_conn == w->eng.conn_serial)
            continue;
        if (engine_reread(&w->eng, pt) == EXACTLY_ERETRY && !w->eng.conn)
            return 0;
    }
    exactly_log(EXACTLY_LOG_INFO, "worker", "database answers again; resuming",
                LOG_INT("after_ms", exactly_now_ms() - w->db_down_since_ms));
    w->db_down_since_ms = 0;
    for (i = 0; i < w->eng.n_parts; i++) {
        part *pt = w->eng.parts[i];
        if (part_state_stopped(pt->state))
            continue;
        pt->retry_at_ms = 0;
        engine_part_seek(&w->eng, pt, expected_next(pt));
        engine_part_pause(&w->eng, pt, 0);
    }
    return 1;
}

/* Flushes every partition whose batch is full or old enough. Returns how
 * many ms until the next deadline (for the poll timeout). */
static int flush_ready(worker *w, int force)
{
    long long now = exactly_now_ms();
    int next = 100;
    size_t i;

    if (!breaker_try_close(w))
        return 100;

    for (i = 0; i < w->eng.n_parts; i++) {
        part *pt = w->eng.parts[i];
        long long due;
        size_t n;
        exactly_err rc;

        if (part_state_stopped(pt->state) || pt->n_buf == 0)
            continue;
        if (pt->retry_at_ms > now) {
            if (pt->retry_at_ms - now < next)
                next = (int)(pt->retry_at_ms - now);
            continue;
        }
        due = pt->first_at_ms + w->p->batch.max_wait_ms;
        if (!force && pt->n_buf < (size_t)w->p->batch.max_messages && due > now) {
            if (due - now < next)
                next = (int)(due - now);
            continue;
        }
        n = batch_size(w, pt);
        w->in_cycle = 1;
        w->eng.txn.idle = drain_kafka;
        w->eng.txn.idle_arg = w;
        rc = run_batch(w, pt, n, batch_end(w, pt, n));
        w->eng.txn.idle = NULL;
        w->in_cycle = 0;
        if (w->n_deferred > 0) {
            /* The partition table may change under this loop. */
            replay_deferred(w);
            return 0;
        }
        if (rc == EXACTLY_OK) {
            pt->retry_at_ms = 0;
            if (pt->paused && !part_state_stopped(pt->state)) {
                engine_part_seek(&w->eng, pt, expected_next(pt));
                engine_part_pause(&w->eng, pt, 0);
            }
            if (pt->n_buf > 0)
                next = 0;
        } else if (rc == EXACTLY_EFENCED) {
            /* The position moved back to the stored offset (or the
             * partition stopped): a partition an earlier rolled-back
             * attempt paused fetches again from there. */
            pt->retry_at_ms = 0;
            if (pt->paused && !part_state_stopped(pt->state)) {
                engine_part_seek(&w->eng, pt, expected_next(pt));
                engine_part_pause(&w->eng, pt, 0);
            }
        } else if (rc == EXACTLY_ERETRY || rc == EXACTLY_EDATABASE) {
            pt->retry_at_ms = exactly_now_ms() + backoff_ms(pt->attempts);
            if (!w->eng.conn) {
                breaker_open(w);
                break;
            }
            /* Bound the buffer while the database is away. */
            if (pt->n_buf >= (size_t)w->p->batch.max_messages * 4)
                engine_part_pause(&w->eng, pt, 1);
        }
        if (w->fatal)
            break;
    }
    return next < 0 ? 0 : next;
}

/* Partitions halted for want of a start offset: once their row has one
 * (exactly offsets reset), they resume there. Also publishes every
 * partition's halted state. */
static void recheck_halted(worker *w)
{
    long long now = exactly_now_ms();
    size_t i;

    for (i = 0; i < w->eng.n_parts; i++) {
        part *pt = w->eng.parts[i];
        metrics_partition *mp;
        char ps[16], err[512];
        const char *params[3];
        PGresult *res = NULL;
        int64_t next, epoch;

        if (w->m && (mp = metrics_part(w->m, pt->topic, pt->partition)))
            __atomic_store_n(&mp->halted, part_state_halted(pt->state),
                             __ATOMIC_RELAXED);
        if (pt->state != PART_S_NO_START || now < pt->recheck_at_ms || w->db_down_since_ms ||
            worker_db(w) != EXACTLY_OK)
            continue;
        pt->recheck_at_ms = now + NO_START_RECHECK_MS;
        snprintf(ps, sizeof(ps), "%d", (int)pt->partition);
        params[0] = w->p->name;
        params[1] = pt->topic;
        params[2] = ps;
        if (exactly_pg_exec(w->eng.conn, w->eng.sql.read, 3, params, &res, err,
                            sizeof(err)) != EXACTLY_OK) {
            if (PQstatus(w->eng.conn) != CONNECTION_OK)
                worker_db_lost(w);
            PQclear(res);
            continue;
        }
        if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
            PQclear(res);
            continue;
        }
        next = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        epoch = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        PQclear(res);
        if (epoch != pt->epoch) {
            /* Another worker claimed it since: it is theirs. */
            (void)PART_MOVE(pt, PART_S_FENCED);
            continue;
        }
        exactly_log(EXACTLY_LOG_INFO, "rebalance",
                    "halted partition has a stored offset now; resuming",
                    LOG_PART(pt), LOG_INT("next_offset", next));
        (void)PART_MOVE(pt, PART_S_UNCHECKED);
        pt->next_offset = next;
        pt->pos_conn = w->eng.conn_serial;
        engine_part_seek(&w->eng, pt, next);
        engine_part_pause(&w->eng, pt, 0);
        worker_metrics_position(w, pt, 1);
        if (w->m && (mp = metrics_part(w->m, pt->topic, pt->partition)))
            __atomic_store_n(&mp->halted, 0, __ATOMIC_RELAXED);
    }
}

/* Nothing uses an idle connection until the next batch: a server that went
 * away meanwhile (a crash, a failover) would go unnoticed while nothing
 * arrives, and so would positions it lost. Reading what the server sent
 * finds a closed connection; the breaker then reconnects and reads every
 * position again. */
static void db_probe(worker *w)
{
    if (!w->eng.conn || w->db_down_since_ms || w->in_cycle)
        return;
    if (PQconsumeInput(w->eng.conn) && PQstatus(w->eng.conn) == CONNECTION_OK)
        return;
    exactly_log(EXACTLY_LOG_WARN, "postgres", "idle connection lost",
                LOG_STR("error", PQerrorMessage(w->eng.conn)));
    worker_db_lost(w);
    breaker_open(w);
}

/* A partition whose tail is only transaction markers: advance the stored
 * offset to the consumer's position so lag reads zero. */
static void advance_idle(worker *w)
{
    size_t i;

    for (i = 0; i < w->eng.n_parts; i++) {
        part *pt = w->eng.parts[i];
        int64_t pos;
        if (pt->n_buf > 0 || part_state_stopped(pt->state) || pt->retry_at_ms)
            continue;
        pos = engine_part_position(&w->eng, pt);
        if (pos > pt->next_offset)
            (void)run_batch(w, pt, 0, pos);
    }
}

/* Dedup keys older than the retention go a slice at a time, between
 * batches: each slice is one short statement of its own, so no lock or
 * transaction outlives a moment and batches wait at most for one slice.
 * A full slice means more are due: the next goes at the next turn. */
#define DEDUP_EXPIRE_SLICE 5000

static void expire_dedup(worker *w)
{
    long long now = exactly_now_ms();
    long long every = (long long)w->p->dedup.retention_s * 100;
    char ret_s[24], slice_s[16], err[512];
    const char *params[3];
    PGresult *res = NULL;
    long long n;

    if (!w->p->dedup.enabled || now < w->dedup_expire_at_ms || !w->eng.conn ||
        w->db_down_since_ms || !w->eng.sql_ready)
        return;
    /* A tenth of the retention, between 1 s and a minute. */
    every = every < 1000 ? 1000 : every > 60000 ? 60000 : every;
    w->dedup_expire_at_ms = now + every;
    snprintf(ret_s, sizeof(ret_s), "%lld", (long long)w->p->dedup.retention_s);
    snprintf(slice_s, sizeof(slice_s), "%d", DEDUP_EXPIRE_SLICE);
    params[0] = w->p->name;
    params[1] = ret_s;
    params[2] = slice_s;
    exactly_txn_finish(&w->eng.txn);
    if (exactly_pg_exec(w->eng.conn, w->eng.sql.dedup_expire, 3, params, &res, err,
                        sizeof(err)) != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_WARN, "worker", "cannot expire dedup keys",
                    LOG_STR("error", err));
        if (PQstatus(w->eng.conn) != CONNECTION_OK)
            worker_db_lost(w);
        return;
    }
    n = atoll(PQcmdTuples(res));
    PQclear(res);
    if (n >= DEDUP_EXPIRE_SLICE)
        w->dedup_expire_at_ms = now;
    if (n > 0) {
        exactly_log(EXACTLY_LOG_DEBUG, "worker", "dedup keys expired",
                    LOG_INT("n", n));
        if (w->m)
            metrics_add(&w->m->dedup_expired, (uint64_t)n);
    }
}

static int all_committed(const worker *w)
{
    size_t i;

    for (i = 0; i < w->eng.n_parts; i++)
        if (w->eng.parts[i]->n_buf > 0 &&
            !part_state_stopped(w->eng.parts[i]->state))
            return 0;
    return 1;
}

/* The worker's counters under msg "progress" (every 10 s) or "stopped"
 * (at the end). */
#define LOG_STATS(what, s)                                                     \
    exactly_log(EXACTLY_LOG_INFO, "worker", what,                              \
                LOG_UINT("consumed", (s)->consumed),                           \
                LOG_UINT("applied", (s)->applied),                             \
                LOG_UINT("deduplicated", (s)->deduplicated),                   \
                LOG_UINT("dead_lettered", (s)->dead_lettered),                 \
                LOG_UINT("skipped_missing", (s)->skipped_missing),             \
                LOG_UINT("batches_committed", (s)->batches_committed),         \
                LOG_UINT("batches_rolled_back", (s)->batches_rolled_back),     \
                LOG_UINT("batches_fenced", (s)->batches_fenced),               \
                LOG_UINT("retries", (s)->retries),                             \
                LOG_UINT("handler_failures", (s)->handler_failures),           \
                LOG_UINT("rebalances", (s)->rebalances))

int exactly_worker_run(const exactly_worker_opts *o,
                       exactly_worker_stats *stats)
{
    worker w;
    char err[2048];
    char host[EXACTLY_HOST_ID_MAX + 1];
    int code = 1;
    long long last_idle_check = 0;
    long long last_stats = exactly_now_ms();
    long long last_states = 0;
    long long started;
    exactly_worker_stats all;
    exactly_err rc;

    worker_init(&w, o->cfg, o->pipeline);
    w.stop = o->stop;
    w.con.slot_instance = o->instance_id;
    w.m = o->metrics;
    exactly_log_set_context(w.p->name, o->worker_index);
    if (w.m)
        exactly_log_set_tap(note_error, w.m);
    if (exactly_host_id(host, sizeof(host)) != 0) {
        /* Nothing is claimed under an identity that is not this host's. */
        exactly_log(EXACTLY_LOG_ERROR, "worker", "invalid host identity",
                    LOG_STR("error",
                            exactly_host_id_problem(getenv("EXACTLY_HOST_ID"))));
        code = 2;
        goto cleanup;
    }
    snprintf(w.eng.owner, sizeof(w.eng.owner), "%s:%d:%d", host, (int)getpid(),
             o->worker_index);
    srandom((unsigned)(getpid() ^ time(NULL)));

    rc = exactly_plugin_load(w.cfg, w.p, &w.eng.plugin, err, sizeof(err));
    if (rc != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_ERROR, "worker", "handler refused",
                    LOG_STR("error", err));
        code = 2;
        goto cleanup;
    }
    rc = worker_consumer_start(&w, err, sizeof(err));
    if (rc != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_ERROR, "worker", "cannot create the Kafka consumer",
                    LOG_STR("error", err));
        code = rc == EXACTLY_ECONFIG ? 2 : 1;
        goto cleanup;
    }

    /* The database and the handler first, the group last: a member that
     * joined before it could serve would hold partitions nobody applies.
     * The consumer exists (its callbacks are served by the poll), but has
     * no group yet. */
    while (worker_db(&w) != EXACTLY_OK) {
        rd_kafka_message_t *m;
        if (w.fatal || (o->stop && *o->stop)) {
            code = w.fatal ? w.fatal : 0;
            goto cleanup;
        }
        if ((m = rd_kafka_consumer_poll(w.rk, 100)) != NULL)
            rd_kafka_message_destroy(m);
    }
    rc = exactly_plugin_open(w.eng.plugin, w.eng.conn, w.p, w.eng.timeout_ms, err, sizeof(err));
    if (rc != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_ERROR, "worker", "handler's open() failed",
                    LOG_STR("error", err));
        code = rc == EXACTLY_ERETRY ? 1 : 2;
        goto cleanup;
    }
    rc = worker_consumer_subscribe(&w.con, err, sizeof(err));
    if (rc != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_ERROR, "worker", "cannot subscribe",
                    LOG_STR("error", err));
        goto cleanup;
    }

#if defined(EXACTLY_MUTATION_NO_FENCE) || defined(EXACTLY_MUTATION_SPLIT_OFFSET_TXN)
    exactly_log(EXACTLY_LOG_ERROR, "worker",
                "MUTATION BUILD: this exactly breaks its own contract on "
                "purpose, for testing the tests; never run it on real data");
#endif
    {
        char batch[48];
        snprintf(batch, sizeof(batch), "%d/%dms", w.p->batch.max_messages,
                 w.p->batch.max_wait_ms);
        exactly_log(EXACTLY_LOG_INFO, "worker", "started",
                    LOG_STR("handler", w.eng.plugin->label),
                    LOG_INT("fused", w.eng.plugin->fused),
                    LOG_UINT("topics", w.p->n_topics),
                    LOG_STR("group", w.p->group),
                    LOG_STR("batch", batch),
                    LOG_STR("group_instance_id",
                            w.con.instance_id[0] ? w.con.instance_id : "none"));
    }

    started = exactly_now_ms();
    w.last_msg_ms = started;
    while (!(o->stop && *o->stop) && !w.fatal) {
        int timeout;
        int polled = 0;
        rd_kafka_message_t *m;
        long long now;

        worker_assign_pending(&w);
        if (w.fatal)
            break;
        timeout = flush_ready(&w, 0);

        /* Take what is there without waiting, up to a batch per round. */
        while (polled < w.p->batch.max_messages &&
               (m = rd_kafka_consumer_poll(w.rk, polled ? 0 : timeout)) != NULL) {
            on_message(&w, m);
            polled++;
        }
        now = exactly_now_ms();
        if (w.m)
            __atomic_store_n(&w.m->ready,
                             w.eng.n_parts > 0 && w.eng.conn && !w.db_down_since_ms,
                             __ATOMIC_RELAXED);
        /* A few times a second is enough for a page and a scrape. */
        if (now - last_states >= 100) {
            last_states = now;
            publish_states(&w);
        }
        if (o->reopen_log && *o->reopen_log) {
            *o->reopen_log = 0;
            (void)exactly_log_reopen();
        }
        if (now - last_idle_check >= 1000) {
            last_idle_check = now;
            db_probe(&w);
            advance_idle(&w);
            recheck_halted(&w);
        }
        expire_dedup(&w);
        if (now - last_stats >= 10000) {
            last_stats = now;
            worker_stats(&w, &all);
            LOG_STATS("progress", &all);
        }
        if (o->exit_idle_ms > 0 && w.eng.n_parts > 0 &&
            now - w.last_msg_ms >= o->exit_idle_ms && all_committed(&w)) {
            exactly_log(EXACTLY_LOG_INFO, "worker", "idle, exiting",
                        LOG_INT("idle_ms", o->exit_idle_ms));
            break;
        }
        /* No partitions because no broker answers: idle too, but a
         * failure, not a finished job. */
        if (o->exit_idle_ms > 0 && w.eng.n_parts == 0 && !w.pending_assign &&
            w.kafka_episode_ms && now - w.kafka_episode_ms >= o->exit_idle_ms &&
            now - w.last_msg_ms >= o->exit_idle_ms) {
            exactly_log(EXACTLY_LOG_ERROR, "worker",
                        "kafka unreachable and nothing assigned; exiting",
                        LOG_INT("idle_ms", o->exit_idle_ms),
                        LOG_INT("unreachable_ms", now - w.kafka_episode_ms));
            w.fatal = 1;
            break;
        }
    }
    if (!w.fatal) {
        /* Clean stop: commit what is buffered, then leave the group (the
         * revoke callback flushes anything left). */
        (void)flush_ready(&w, 1);
        code = 0;
    } else {
        code = w.fatal;
    }

cleanup:
    /* Counted before leaving the group, which releases the partitions. */
    for (size_t i = 0; i < w.eng.n_parts; i++)
        w.st.partitions_halted += part_state_halted(w.eng.parts[i]->state) ? 1 : 0;
    if (w.rk) {
        release_pending(&w);
        rd_kafka_consumer_close(w.rk);
        while (w.eng.n_parts > 0)
            engine_part_remove(&w.eng, w.eng.parts[w.eng.n_parts - 1]);
        rd_kafka_destroy(w.rk);
    }
    worker_stats(&w, &all);
    if (code == 0)
        LOG_STATS("stopped", &all);
    else
        LOG_STATS("exiting", &all);
    if (stats)
        *stats = all;
    engine_free(&w.eng);
    return code;
}

void exactly_worker_print_summary(const char *pipeline,
                                  const exactly_worker_stats *st)
{
    printf("pipeline %s: consumed %" PRIu64 ", applied %" PRIu64
           ", deduplicated %" PRIu64 ", dead-lettered %" PRIu64
           ", skipped (no row) %" PRIu64 "; batches committed %" PRIu64
           ", rolled back %" PRIu64 ", fenced %" PRIu64 "; retries %" PRIu64
           "%s\n",
           pipeline, st->consumed, st->applied, st->deduplicated,
           st->dead_lettered, st->skipped_missing, st->batches_committed,
           st->batches_rolled_back, st->batches_fenced, st->retries,
           st->partitions_halted ? "; PARTITIONS HALTED (see the log)" : "");
    fflush(stdout);
}
