/*
 * loop.c - what the worker's loop does with messages and batches: buffer
 * each message in its partition (a partition whose offset left the log is
 * halted), flush a partition's batch when it is full or old enough,
 * drain Kafka into the buffers while a batch waits for PostgreSQL, and
 * advance a partition whose tail is only transaction markers.
 */
#include <stdlib.h>

#include "backlog.h"
#include "clock.h"
#include "log.h"
#include "worker_internal.h"

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

static int on_message(worker *w, rd_kafka_message_t *m, long long now);

/* Wakes the fetchers of the worker's partitions (kafka/refill.h). */
static void wake_fetchers(worker *w)
{
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new((int)w->eng.n_parts);
    size_t i;

    if (!l)
        return;
    for (i = 0; i < w->eng.n_parts; i++)
        rd_kafka_topic_partition_list_add(l, w->eng.parts[i]->topic,
                                          w->eng.parts[i]->partition);
    if (kafka_refill_wake(w->rk, l))
        w->st.fetch_wakes++;
    rd_kafka_topic_partition_list_destroy(l);
}

/* Takes up to max messages that are already there, without waiting, a
 * run at a time (one call per run, not per message), and reads the clock
 * once per run: consume_batch_queue does not wait, so every message of a
 * run arrives at that time. Then wakes the fetchers if the queue that had
 * stopped them has half emptied. Returns how many. */
static int take_queued(worker *w, size_t max)
{
    rd_kafka_message_t *ms[256];
    rd_kafka_queue_t *q;
    size_t taken = 0;
    ssize_t got = 1;
    ssize_t k;

    if (max == 0)
        return 0;
    q = rd_kafka_queue_get_consumer(w->rk);
    if (!q)
        return 0;
    while (taken < max && got > 0) {
        size_t want = max - taken < 256 ? max - taken : 256;
        got = rd_kafka_consume_batch_queue(q, 0, ms, want);
        if (got > 0) {
            long long now = exactly_now_ms();
            int buffered = 0;
            kafka_refill_sample(&w->refill, ms[0]->len);
            for (k = 0; k < got; k++)
                buffered |= on_message(w, ms[k], now);
            if (buffered)
                w->last_msg_ms = now;
            taken += (size_t)got;
        }
    }
    if (kafka_refill_due(&w->refill, rd_kafka_queue_length(q), taken))
        wake_fetchers(w);
    rd_kafka_queue_destroy(q);
    return (int)taken;
}

int worker_poll(worker *w, int timeout)
{
    rd_kafka_message_t *m = rd_kafka_consumer_poll(w->rk, timeout);
    size_t max = (size_t)w->p->batch.max_messages;

    if (!m)
        return 0;
    worker_on_message(w, m);
    return 1 + take_queued(w, max > 1 ? max - 1 : 0);
}

/* While a batch waits for PostgreSQL: take what Kafka has into the
 * buffers, so the next batch is ready when this one commits. Only
 * buffering happens here; a rebalance is deferred (in_cycle). */
static int drain_kafka(void *arg)
{
    worker *w = arg;
    size_t buffered = 0;
    size_t cap;
    size_t i;

    /* About one batch ahead per partition is all the next round needs;
     * the rest waits in librdkafka's queue, which bounds its own size. */
    for (i = 0; i < w->eng.n_parts; i++)
        buffered += w->eng.parts[i]->n_buf;
    cap = (size_t)w->p->batch.max_messages * (w->eng.n_parts > 2 ? w->eng.n_parts : 2);
    return buffered < cap ? take_queued(w, cap - buffered) : 0;
}

/* Enters (on) or leaves a cycle: while PostgreSQL answers, Kafka is
 * drained into the buffers and a rebalance is deferred. */
static void set_in_cycle(worker *w, int on)
{
    w->in_cycle = on;
    w->eng.txn.idle = on ? drain_kafka : NULL;
    w->eng.txn.idle_arg = on ? w : NULL;
}

/* An error event of the consumer (m->err set): a partition whose offset
 * left the log is halted, another error logged once per episode. Takes m. */
static void on_error(worker *w, rd_kafka_message_t *m)
{
    part *pt;

    if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
        m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
        pt = m->rkt ? engine_part_find(&w->eng, rd_kafka_topic_name(m->rkt),
                                       m->partition)
                    : NULL;
        if (pt && !part_state_stopped(pt->state)) {
            char fix[WORKER_RESET_COMMAND_MAX];
            worker_reset_command(w, pt->topic, pt->partition, fix,
                                 sizeof(fix));
            exactly_log(EXACTLY_LOG_ERROR, "source",
                        "stored offset is no longer in the log; partition "
                        "halted, the others go on; give it an offset in "
                        "the log with exactly offsets reset (command) and "
                        "it resumes there within seconds",
                        LOG_PART(pt),
                        LOG_INT("next_offset", pt->next_offset),
                        LOG_STR("error", rd_kafka_message_errstr(m)),
                        LOG_STR("command", fix));
            (void)PART_MOVE(pt, PART_S_OUT_OF_LOG);
            engine_part_pause(&w->eng, pt, 1);
            /* The row is read by the rechecks (recheck.c), from the
             * next one on, not here: a transaction may be waiting for
             * its answer. */
            pt->halted_at_ms = exactly_now_ms();
            pt->row_read_since_halt = 0;
            pt->recheck_at_ms = 0;
        }
    } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (worker_kafka_error_due(w)) {
            exactly_log(EXACTLY_LOG_WARN, "source", "consume error",
                        LOG_STR("code", rd_kafka_err2name(m->err)),
                        LOG_STR("text", rd_kafka_message_errstr(m)));
        }
    }
    rd_kafka_message_destroy(m);
}

void worker_on_message(worker *w, rd_kafka_message_t *m)
{
    long long now = exactly_now_ms();

    if (on_message(w, m, now))
        w->last_msg_ms = now;
}

/* worker_on_message at time now; 1 when m was buffered (the caller sets
 * last_msg_ms), 0 when it was an error or dropped. */
static int on_message(worker *w, rd_kafka_message_t *m, long long now)
{
    part *pt;

    if (m->err) {
        on_error(w, m);
        return 0;
    }
    if (w->kafka_episode_ms) {
        exactly_log(EXACTLY_LOG_INFO, "source", "kafka answers again",
                    LOG_INT("after_ms", now - w->kafka_episode_ms));
        w->kafka_episode_ms = 0;
    }
    pt = engine_part_of(&w->eng, m);
    /* A seek owed: m comes from where the consumer was, not from where
     * the partition goes on. */
    if (!pt || part_state_stopped(pt->state) || pt->seek_owed) {
        rd_kafka_message_destroy(m);
        return 0;
    }
    /* Older librdkafka can redeliver after a rebalance; the database says
     * what is already applied. */
    if (m->offset < pt->next_offset ||
        (pt->n_buf > 0 && m->offset <= pt->buf[pt->n_buf - 1]->offset)) {
        w->st.skipped_below++;
        rd_kafka_message_destroy(m);
        return 0;
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
            return 0;
        }
        pt->buf = nb;
        pt->cap_buf = cap;
    }
    if (pt->n_buf == 0)
        pt->first_at_ms = now;
    pt->buf[pt->n_buf++] = m;
    return 1;
}

/* How many messages the log holds beyond pt's buffer, as far as the
 * consumer's last fetch showed (its high watermark); -1 when not known. */
static int64_t beyond_buffer(worker *w, const part *pt)
{
    int64_t lo = 0, hi = 0, end;

    if (pt->n_buf == 0 ||
        rd_kafka_get_watermark_offsets(w->rk, pt->topic, pt->partition, &lo,
                                       &hi) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        hi <= 0)
        return -1;
    end = pt->buf[pt->n_buf - 1]->offset + 1;
    return hi > end ? hi - end : 0;
}

/* Whether pt's partial batch is a backlog's tail (backlog.h): its buffer
 * reaches the end of the log as the consumer's last fetch showed it (the
 * high watermark; under read_committed an open transaction keeps the
 * buffer short of it, and the batch waits as usual). No message is then
 * on its way that waiting max_wait_ms would add: a catch-up ends at once
 * rather than max_wait_ms later. A live stream, however fast, never
 * holds a second batch behind the one that runs, so its batches wait to
 * fill as before. */
static int backlog_tail(worker *w, const part *pt)
{
    return worker_backlog_tail(pt->backlog, pt->n_buf,
                               pt->backlog ? beyond_buffer(w, pt) : -1);
}

/* Notes in pt->backlog whether pt, about to run a batch of n, is working
 * off a backlog (backlog.h). The log's end is read only where the answer
 * depends on it: a full batch while none was noted, a partial one while
 * one was. */
static void note_backlog(worker *w, part *pt, size_t n, size_t max)
{
    int64_t beyond = (n < max) == (pt->backlog != 0) ? beyond_buffer(w, pt)
                                                     : -1;

    pt->backlog = worker_backlog_after(pt->backlog, n, max, pt->n_buf, beyond);
}

/* Whether a partition other than the held one has a full batch ready:
 * another pass sends it before the held one's answers are read. */
static int other_full(const worker *w, long long now)
{
    size_t i;

    for (i = 0; i < w->eng.n_parts; i++) {
        const part *pt = w->eng.parts[i];
        if (pt != w->eng.held.pt && !part_state_stopped(pt->state) &&
            pt->retry_at_ms <= now &&
            pt->n_buf >= (size_t)w->p->batch.max_messages)
            return 1;
    }
    return 0;
}

/* Passes over the partitions one flush makes at most while a batch is
 * held and others are full: a backlog keeps the server busy across
 * passes; the main loop's own turns come back within them. */
#define FLUSH_MAX_PASSES 8

/* Flushes every partition whose batch is full or old enough; a small
 * batch takes the other partitions' small batches ready along into one
 * transaction (batch.max_partitions, engine_run_group). Returns how many
 * ms until the next deadline (for the poll timeout). */
int worker_flush_ready(worker *w, int force)
{
    long long now = exactly_now_ms();
    size_t max = (size_t)w->p->batch.max_messages;
    size_t max_group = (size_t)w->p->batch.max_partitions;
    engine_group_member *group = NULL;
    int next = 100;
    int passes = 0;
    size_t i, k;

    if (!worker_breaker_try_close(w))
        return 100;
    if (max_group > w->eng.n_parts)
        max_group = w->eng.n_parts;

pass:
    for (i = 0; i < w->eng.n_parts; i++) {
        part *pt = w->eng.parts[i];
        long long due;
        size_t n;
        worker_next step;

        if (part_state_stopped(pt->state) || pt->n_buf == 0)
            continue;
        if (pt->retry_at_ms > now) {
            if (pt->retry_at_ms - now < next)
                next = (int)(pt->retry_at_ms - now);
            continue;
        }
        due = pt->first_at_ms + w->p->batch.max_wait_ms;
        if (!force && pt->n_buf < (size_t)w->p->batch.max_messages &&
            due > now && !backlog_tail(w, pt)) {
            if (due - now < next)
                next = (int)(due - now);
            continue;
        }
        n = worker_batch_size(w, pt);
        note_backlog(w, pt, n, max);
        k = 0;
        if (max_group > 1 && n < max && engine_groupable(&w->eng, pt) &&
            (group || (group = malloc(max_group * sizeof(*group))))) {
            /* Small: the other partitions with small batches ready join
             * it in one transaction, up to max messages in all. (Without
             * memory for the list, every batch runs alone, as with 1.) */
            size_t total = n, j;
            group[k++] = (engine_group_member){pt, n, worker_batch_end(w, pt, n)};
            for (j = 0; j < w->eng.n_parts && k < max_group; j++) {
                part *o = w->eng.parts[j];
                size_t on;
                if (o == pt || o->n_buf == 0 || part_state_stopped(o->state) ||
                    o->retry_at_ms > now || !engine_groupable(&w->eng, o))
                    continue;
                on = worker_batch_size(w, o);
                if (on >= max || total + on > max)
                    continue;
                total += on;
                note_backlog(w, o, on, max);
                group[k++] = (engine_group_member){o, on, worker_batch_end(w, o, on)};
            }
        }
        set_in_cycle(w, 1);
        /* Settled by worker_settle (settle.c): the partition's backoff or
         * resumption, the breaker, the stop, the figures. A single batch
         * may be held (engine_holds): the next one is sent before its
         * answers are read; it is settled before this loop returns. */
        if (k > 1) {
            (void)engine_settle_held(&w->eng);
            step = worker_run_group(w, group, k);
        } else {
            w->eng.pipeline_ok = 1;
            step = worker_run_batch(w, pt, n, worker_batch_end(w, pt, n),
                                    WORKER_BATCH_FLUSH);
            w->eng.pipeline_ok = 0;
        }
        if (w->n_deferred > 0)
            (void)engine_settle_held(&w->eng);
        set_in_cycle(w, 0);
        if (w->n_deferred > 0)
            goto replay;
        if (step == WORKER_NEXT_MORE)
            next = 0;
        if (step == WORKER_NEXT_NO_DB || w->fatal)
            break;
    }
    if (w->eng.held.pt && i == w->eng.n_parts && !w->fatal &&
        ++passes < FLUSH_MAX_PASSES &&
        other_full(w, now = exactly_now_ms()))
        goto pass;
    if (w->eng.held.pt) {
        set_in_cycle(w, 1);
        (void)engine_settle_held(&w->eng);
        set_in_cycle(w, 0);
    }
    if (w->n_deferred > 0)
        goto replay;
    free(group);
    return next < 0 ? 0 : next;

replay:
    /* A rebalance came while a batch was out: the partition table may
     * change under this loop, which ends here. */
    free(group);
    worker_replay_deferred(w);
    return 0;
}

/* A partition whose tail is only transaction markers: advance the stored
 * offset to the consumer's position so lag reads zero. */
void worker_advance_idle(worker *w)
{
    size_t i;

    for (i = 0; i < w->eng.n_parts; i++) {
        part *pt = w->eng.parts[i];
        int64_t pos;
        if (pt->n_buf > 0 || part_state_stopped(pt->state) || pt->retry_at_ms)
            continue;
        pos = engine_part_position(&w->eng, pt);
        if (pos > pt->next_offset)
            (void)worker_run_batch(w, pt, 0, pos, WORKER_BATCH_IDLE);
    }
}

int worker_all_committed(const worker *w)
{
    size_t i;

    for (i = 0; i < w->eng.n_parts; i++)
        if (w->eng.parts[i]->n_buf > 0 &&
            !part_state_stopped(w->eng.parts[i]->state))
            return 0;
    return 1;
}
