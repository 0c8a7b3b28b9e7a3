/*
 * worker.c - one worker process: set up (identity, handler, consumer,
 * database, group), the loop that polls, flushes and does the periodic
 * work, and the clean close; what the engine and the consumer call back
 * (engine_ops, worker_consumer_cbs); the worker's metrics. The rest of
 * the worker: loop.c (messages and batches), rebalance.c (claims and
 * revokes), db.c (the connection, its breaker, dedup expiry), part.c
 * (one partition's batch and metrics).
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

/* What each partition is doing, for the status page and
 * exactly_partition_state (the most severe condition wins), and the end
 * of its log as last fetched, for its lag. */
void worker_publish_states(worker *w)
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
        if (mp) {
            __atomic_store_n(&mp->state, st, __ATOMIC_RELAXED);
            worker_metrics_watermark(w, pt, mp);
        }
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

static void ops_batch_done(void *arg, const part *pt,
                           const engine_batch_report *r)
{
    worker_batch_done(arg, pt, r);
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

static void con_all_brokers_down(void *arg)
{
    worker *w = arg;

    kafka_reach_down(&w->kafka, exactly_now_ms());
}

/* Kafka is reachable again (a broker usable, or a rebalance answered):
 * ends the outage worker_ready() counts. */
static void kafka_up(worker *w, const char *seen)
{
    long long after = kafka_reach_up(&w->kafka, exactly_now_ms());

    if (after < 0)
        return;
    exactly_log(EXACTLY_LOG_INFO, "source", "kafka brokers reachable again",
                LOG_STR("seen", seen), LOG_INT("after_ms", after));
}

/* While every broker is down: whether one is usable now, asked without
 * waiting (kafka_reach_probe). */
static void worker_kafka_probe(worker *w)
{
    if (kafka_reach_probe(&w->kafka, w->rk))
        kafka_up(w, "broker");
}

static void con_rebalance(void *arg, rd_kafka_resp_err_t err,
                          rd_kafka_topic_partition_list_t *parts, int lost,
                          int cooperative)
{
    worker *w = arg;

    w->st.rebalances++;
    w->cooperative = cooperative;
    /* A lost assignment is librdkafka's own verdict (no answer from the
     * coordinator for the session timeout), not an answer. */
    if (!lost)
        kafka_up(w, "rebalance");
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
    w->con.cbs.all_brokers_down = con_all_brokers_down;
    w->con.cbs.rebalance = con_rebalance;
    w->con.cbs.arg = w;
    rc = worker_consumer_create(&w->con, errbuf, errbuf_size);
    if (rc != EXACTLY_OK)
        return rc;
    w->rk = w->con.rk;
    /* The engine seeks, pauses and commits its partitions on it. */
    w->eng.rk = w->rk;
    kafka_refill_init(&w->refill, w->rk);
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
                LOG_UINT("rebalances", (s)->rebalances),                       \
                LOG_UINT("fetch_wakes", (s)->fetch_wakes))

/*
 * Connects to the database and calls the handler's open(), as often as it
 * takes while open() fails for a reason that goes away by itself (a lock
 * or statement timeout, a lost connection, a failover: what
 * exactly_plugin_open calls EXACTLY_ERETRY), each time after the worker's
 * backoff, logged with the SQLSTATE. Such a failure is not a refusal: one
 * exit 2 would stop `exactly run` and, under systemd, for good. The
 * consumer exists meanwhile (its callbacks are served by the poll) but has
 * no group, so no partition waits on this worker. Returns -1 once the
 * handler is open, else the exit code: 0 when asked to stop, w->fatal
 * when set, 2 when the handler refused.
 */
static int open_handler(worker *w, const exactly_worker_opts *o)
{
    exactly_plugin *pl = w->eng.plugin;
    char err[2048];
    long long retry_at = 0;
    int attempts = 0;

    for (;;) {
        rd_kafka_message_t *m;
        exactly_err rc;
        long long delay;

        if (w->fatal || (o->stop && *o->stop))
            return w->fatal ? w->fatal : 0;
        if (exactly_now_ms() < retry_at || worker_db(w) != EXACTLY_OK) {
            if ((m = rd_kafka_consumer_poll(w->rk, 100)) != NULL)
                rd_kafka_message_destroy(m);
            continue;
        }
        rc = exactly_plugin_open(pl, w->eng.conn, w->p, w->eng.timeout_ms,
                                 err, sizeof(err));
        if (rc == EXACTLY_OK) {
            if (attempts > 0)
                exactly_log(EXACTLY_LOG_INFO, "worker", "handler open",
                            LOG_INT("attempts", attempts + 1));
            return -1;
        }
        if (rc != EXACTLY_ERETRY) {
            exactly_log(EXACTLY_LOG_ERROR, "worker", "handler's open() failed",
                        LOG_STR("error", err));
            return 2;
        }
        /* A connection it left unusable is replaced by worker_db, at its
         * own backoff. */
        delay = worker_backoff_ms(attempts++);
        retry_at = exactly_now_ms() + delay;
        exactly_log(EXACTLY_LOG_WARN, "worker",
                    "handler cannot open for now; retrying",
                    LOG_STR("sqlstate",
                            pl->open_sqlstate[0] ? pl->open_sqlstate : NULL),
                    LOG_STR("error", err), LOG_INT("attempt", attempts),
                    LOG_INT("retry_in_ms", delay));
    }
}

/* Opens what the worker needs, in order: its identity, the handler, the
 * consumer, the database and the handler's open(), then the group.
 * Returns -1 when the worker can serve, or its exit code. */
static int worker_open(worker *w, const exactly_worker_opts *o)
{
    char err[2048];
    char host[EXACTLY_HOST_ID_MAX + 1];
    exactly_err rc;
    int code;

    if (exactly_host_id(host, sizeof(host)) != 0) {
        /* Nothing is claimed under an identity that is not this host's. */
        exactly_log(EXACTLY_LOG_ERROR, "worker", "invalid host identity",
                    LOG_STR("error",
                            exactly_host_id_problem(getenv("EXACTLY_HOST_ID"))));
        return 2;
    }
    snprintf(w->eng.owner, sizeof(w->eng.owner), "%s:%d:%d", host, (int)getpid(),
             o->worker_index);
    srandom((unsigned)(getpid() ^ time(NULL)));

    rc = exactly_plugin_load(w->cfg, w->p, &w->eng.plugin, err, sizeof(err));
    if (rc != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_ERROR, "worker", "handler refused",
                    LOG_STR("error", err));
        return 2;
    }
    rc = worker_consumer_start(w, err, sizeof(err));
    if (rc != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_ERROR, "worker", "cannot create the Kafka consumer",
                    LOG_STR("error", err));
        return rc == EXACTLY_ECONFIG ? 2 : 1;
    }

    /* The database and the handler first, the group last: a member that
     * joined before it could serve would hold partitions nobody applies. */
    code = open_handler(w, o);
    if (code >= 0)
        return code;
    rc = worker_consumer_subscribe(&w->con, err, sizeof(err));
    if (rc != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_ERROR, "worker", "cannot subscribe",
                    LOG_STR("error", err));
        return 1;
    }
    return -1;
}

static void log_started(const worker *w)
{
    char batch[48];

#if defined(EXACTLY_MUTATION_NO_FENCE) || defined(EXACTLY_MUTATION_SPLIT_OFFSET_TXN)
    exactly_log(EXACTLY_LOG_ERROR, "worker",
                "MUTATION BUILD: this exactly breaks its own contract on "
                "purpose, for testing the tests; never run it on real data");
#endif
    snprintf(batch, sizeof(batch), "%d/%dms", w->p->batch.max_messages,
             w->p->batch.max_wait_ms);
    exactly_log(EXACTLY_LOG_INFO, "worker", "started",
                LOG_STR("handler", w->eng.plugin->label),
                LOG_INT("fused", w->eng.plugin->fused),
                LOG_UINT("topics", w->p->n_topics),
                LOG_STR("group", w->p->group),
                LOG_STR("batch", batch),
                LOG_STR("group_instance_id",
                        w->con.instance_id[0] ? w->con.instance_id : "none"));
}

/* When the loop's periodic work last ran. */
typedef struct loop_clock {
    long long idle_check;
    long long stats;
    long long states;
} loop_clock;

/* Whether the worker is ready (/readyz) at now: a member of its group
 * whose assignment, empty or not, is claimed, with its PostgreSQL
 * connection up, and not every Kafka broker down for
 * KAFKA_DOWN_NOT_READY_MS (librdkafka keeps the assignment through an
 * outage shorter than the session timeout, though nothing is fetched).
 * An empty assignment counts: a standby of a group with more members than
 * partitions is where it should be. */
static int worker_ready(const worker *w, long long now)
{
    return w->joined && !w->pending_assign && w->eng.conn &&
           !w->db_down_since_ms &&
           kafka_reach_ok(&w->kafka, now);
}

/* What the loop does besides batches, each at its own pace. */
static void periodic(worker *w, const exactly_worker_opts *o, long long now,
                     loop_clock *t)
{
    exactly_worker_stats all;

    if (w->m)
        __atomic_store_n(&w->m->ready, worker_ready(w, now), __ATOMIC_RELAXED);
    /* A few times a second is enough for a page and a scrape. */
    if (now - t->states >= 100) {
        t->states = now;
        worker_publish_states(w);
    }
    if (o->reopen_log && *o->reopen_log) {
        *o->reopen_log = 0;
        (void)exactly_log_reopen();
    }
    if (now - t->idle_check >= 1000) {
        t->idle_check = now;
        worker_db_probe(w);
        worker_kafka_probe(w);
        for (size_t i = 0; i < w->eng.n_parts; i++)
            engine_part_seek_owed(&w->eng, w->eng.parts[i]);
        worker_advance_idle(w);
        worker_recheck_halted(w);
        worker_follow_idle(w);
    }
    worker_expire_dedup(w);
    if (now - t->stats >= 10000) {
        t->stats = now;
        worker_stats(w, &all);
        LOG_STATS("progress", &all);
    }
}

/* Whether the worker leaves the loop for being idle (exit_idle_ms): all
 * committed, or (a failure: fatal set) nothing assigned because no broker
 * answers. */
static int idle_exit(worker *w, const exactly_worker_opts *o, long long now)
{
    if (o->exit_idle_ms > 0 && w->eng.n_parts > 0 &&
        now - w->last_msg_ms >= o->exit_idle_ms && worker_all_committed(w)) {
        exactly_log(EXACTLY_LOG_INFO, "worker", "idle, exiting",
                    LOG_INT("idle_ms", o->exit_idle_ms));
        return 1;
    }
    /* No partitions because no broker answers: idle too, but a
     * failure, not a finished job. */
    if (o->exit_idle_ms > 0 && w->eng.n_parts == 0 && !w->pending_assign &&
        w->kafka_episode_ms && now - w->kafka_episode_ms >= o->exit_idle_ms &&
        now - w->last_msg_ms >= o->exit_idle_ms) {
        exactly_log(EXACTLY_LOG_ERROR, "worker",
                    "kafka unreachable and nothing assigned; exiting",
                    LOG_INT("idle_ms", o->exit_idle_ms),
                    LOG_INT("unreachable_ms", now - w->kafka_episode_ms));
        w->fatal = 1;
        return 1;
    }
    return 0;
}

/* Polls, buffers and flushes until asked to stop, fatal, or idle. */
static void worker_loop(worker *w, const exactly_worker_opts *o, loop_clock *t)
{
    w->last_msg_ms = exactly_now_ms();
    while (!(o->stop && *o->stop) && !w->fatal) {
        int timeout;
        long long now;

        worker_assign_pending(w);
        if (w->fatal)
            break;
        timeout = worker_flush_ready(w, 0);

        /* Take what is there, up to a batch per round. */
        (void)worker_poll(w, timeout);
        now = exactly_now_ms();
        periodic(w, o, now, t);
        if (idle_exit(w, o, now))
            break;
    }
}

/* Leaves the group and frees the worker; logs and hands out its counters.
 * Returns code. */
static int worker_close(worker *w, int code, exactly_worker_stats *stats)
{
    exactly_worker_stats all;

    /* Counted before leaving the group, which releases the partitions. */
    for (size_t i = 0; i < w->eng.n_parts; i++)
        w->st.partitions_halted += part_state_halted(w->eng.parts[i]->state) ? 1 : 0;
    if (w->rk) {
        worker_release_pending(w);
        rd_kafka_consumer_close(w->rk);
        while (w->eng.n_parts > 0)
            engine_part_remove(&w->eng, w->eng.parts[w->eng.n_parts - 1]);
        rd_kafka_destroy(w->rk);
    }
    worker_stats(w, &all);
    if (code == 0)
        LOG_STATS("stopped", &all);
    else
        LOG_STATS("exiting", &all);
    if (stats)
        *stats = all;
    engine_free(&w->eng);
    return code;
}

int exactly_worker_run(const exactly_worker_opts *o,
                       exactly_worker_stats *stats)
{
    worker w;
    loop_clock t = {0, 0, 0};
    int code;

    t.stats = exactly_now_ms();
    worker_init(&w, o->cfg, o->pipeline);
    w.stop = o->stop;
    w.con.slot_instance = o->instance_id;
    w.m = o->metrics;
    exactly_log_set_context(w.p->name, o->worker_index);
    if (w.m)
        exactly_log_set_tap(note_error, w.m);
    code = worker_open(&w, o);
    if (code >= 0)
        return worker_close(&w, code, stats);
    log_started(&w);
    worker_loop(&w, o, &t);
    if (!w.fatal) {
        /* Clean stop: commit what is buffered, then leave the group (the
         * revoke callback flushes anything left). */
        (void)worker_flush_ready(&w, 1);
        code = 0;
    } else {
        code = w.fatal;
    }
    return worker_close(&w, code, stats);
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
