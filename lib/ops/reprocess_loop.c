/*
 * reprocess_loop.c - one span of a run applied (see reprocess_internal.h):
 * its partition assigned at the row's position, messages read up to the
 * span's end, and the engine's batch transactions, fenced by the row.
 */
#include "reprocess_internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

/* Drops what the last span left and makes span i the position. 0 or -1
 * (out of memory). */
static int reset_part(run *r, size_t i)
{
    const span *sp = &r->spans[i];
    rd_kafka_message_t **buf;
    size_t cap;

    engine_part_drop(&r->pt, r->pt.n_buf);
    free(r->pt.topic);
    buf = r->pt.buf;
    cap = r->pt.cap_buf;
    memset(&r->pt, 0, sizeof(r->pt));
    r->pt.buf = buf;
    r->pt.cap_buf = cap;
    r->cur = i;
    r->pt.topic = strdup(sp->topic);
    r->pt.partition = sp->partition;
    r->pt.next_offset = sp->next;
    r->pt.epoch = sp->epoch;
    return r->pt.topic ? 0 : -1;
}

int reprocess_start_span(run *r, size_t i)
{
    span *sp = &r->spans[i];
    rd_kafka_topic_partition_list_t *l;
    rd_kafka_resp_err_t e;

    if (reset_part(r, i) != 0)
        return 1;
    /* The span's row is the position the engine fences and reads. */
    r->eng.pos.key = sp->id_s;
    l = rd_kafka_topic_partition_list_new(1);
    if (!l)
        return 1;
    rd_kafka_topic_partition_list_add(l, sp->topic, sp->partition)->offset =
        sp->next;
    e = rd_kafka_assign(r->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        exactly_log(EXACTLY_LOG_ERROR, "reprocess", "cannot assign the partition",
                    LOG_STR("topic", sp->topic),
                    LOG_INT("partition", sp->partition),
                    LOG_STR("error", rd_kafka_err2str(e)));
        return 1;
    }
    exactly_log(EXACTLY_LOG_INFO, "reprocess", "run started",
                LOG_INT("run", r->id), LOG_STR("topic", sp->topic),
                LOG_INT("partition", sp->partition), LOG_INT("from", sp->from),
                LOG_INT("to", sp->to), LOG_INT("next_offset", sp->next));
    return 0;
}

/* With --rate: before a batch of n messages, waits until they are due
 * (everything applied so far plus n, at the rate, counted from the start),
 * so that the run stays at or under the rate at every moment, not only on
 * average. Sleeps in short steps so that Ctrl-C is seen; returns 1 when it
 * was. */
static int keep_rate(run *r, const exactly_reprocess_opts *o, size_t n)
{
    if (o->rate <= 0)
        return 0;
    for (;;) {
        double due = (double)(r->eng.st.consumed + n) / o->rate * 1000.0;
        long long ahead = (long long)due - (exactly_now_ms() - r->started_ms);

        if (o->stop && *o->stop)
            return 1;
        if (ahead <= 0)
            return 0;
        usleep((useconds_t)(ahead > 200 ? 200 : ahead) * 1000);
    }
}

/* The batch ending: one past its last message, or past the range's end
 * when the consumer is already beyond it (control records). */
static int64_t run_batch_end(run *r, int64_t to, size_t n, int at_end)
{
    int64_t end = r->pt.buf[n - 1]->offset + 1;

    if (n == r->pt.n_buf && at_end)
        end = to + 1;
    return end;
}

/* Keeps message m in the span's buffer, or drops it: an error, another
 * partition's, past the end (*at_end), already applied or seen. Returns 0,
 * or 1 when the span cannot go on (its offset left the log: r->gone; out
 * of memory). */
static int take(run *r, rd_kafka_message_t *m, int64_t to, int *at_end)
{
    rd_kafka_message_t **nb;
    size_t cap;

    if (m->err) {
        rd_kafka_resp_err_t e = m->err;
        exactly_log(EXACTLY_LOG_WARN, "reprocess", "consume error",
                    LOG_STR("code", rd_kafka_err2name(e)),
                    LOG_STR("text", rd_kafka_message_errstr(m)));
        rd_kafka_message_destroy(m);
        if (e == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
            e == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
            r->gone = 1; /* auto.offset.reset is error: nothing skipped */
            return 1;
        }
        return 0;
    }
    /* A seek owed: m comes from where the consumer was. */
    if (r->pt.seek_owed) {
        rd_kafka_message_destroy(m);
        return 0;
    }
    if (m->partition != r->pt.partition || m->offset > to ||
        m->offset < r->pt.next_offset ||
        (r->pt.n_buf && m->offset <= r->pt.buf[r->pt.n_buf - 1]->offset)) {
        /* Left from the last span, past the end, or already had. */
        if (m->partition == r->pt.partition && m->offset > to)
            *at_end = 1;
        rd_kafka_message_destroy(m);
        return 0;
    }
    if (r->pt.n_buf == r->pt.cap_buf) {
        cap = r->pt.cap_buf ? r->pt.cap_buf * 2 : 256;
        nb = realloc(r->pt.buf, cap * sizeof(*nb));
        if (!nb) {
            rd_kafka_message_destroy(m);
            return 1;
        }
        r->pt.buf = nb;
        r->pt.cap_buf = cap;
    }
    r->pt.buf[r->pt.n_buf++] = m;
    return 0;
}

/* Reads until max messages are buffered, the span's end is seen or the
 * consumer has nothing now. Returns 0 or 1 (take's). */
static int fill(run *r, size_t max, int64_t to, int *at_end)
{
    rd_kafka_message_t *m;

    engine_part_seek_owed(&r->eng, &r->pt);
    while (!*at_end && r->pt.n_buf < max &&
           (m = rd_kafka_consumer_poll(r->rk, r->pt.n_buf ? 0 : 200)) !=
               NULL)
        if (take(r, m, to, at_end) != 0)
            return 1;
    if (!*at_end && engine_part_position(&r->eng, &r->pt) > to)
        *at_end = 1;
    return 0;
}

/* The span's position left the log: r->gone_span and r->gone_low say
 * which and where the log starts now, for the run's end. */
static void note_gone(run *r, const span *sp)
{
    int64_t lo = -1, hi = -1;
    rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(
        r->rk, sp->topic, sp->partition, &lo, &hi, 5000);

    r->gone_span = (size_t)(sp - r->spans);
    r->gone_low = e == RD_KAFKA_RESP_ERR_NO_ERROR ? lo : -1;
    exactly_log(EXACTLY_LOG_ERROR, "reprocess",
                "the run's position is no longer in the log (retention "
                "deleted it before the run applied it); the run cannot go on",
                LOG_INT("run", sp->id), LOG_STR("topic", sp->topic),
                LOG_INT("partition", sp->partition),
                LOG_INT("next_offset", r->pt.next_offset),
                LOG_INT("low_watermark", r->gone_low));
}

/* Settles the last batch by its error value (r->last, reported by the
 * engine): 0 go on, 1 stop. */
static int settle(run *r, const span *sp)
{
    const exactly_error *err = &r->last;

    if (err->code == EXACTLY_EFENCED && !part_state_stopped(r->pt.state))
        return 0; /* the run row was behind (a failover): from there */
    if (err->code == EXACTLY_EFENCED) {
        exactly_log(EXACTLY_LOG_ERROR, "reprocess",
                    "run was taken over by another process",
                    LOG_INT("run", sp->id));
        return 1;
    }
    if (err->code == EXACTLY_EHANDLER)
        return 1; /* on_error: stop, logged by the cycle */
    if (err->code != EXACTLY_OK)
        usleep(200 * 1000 *
               (useconds_t)(r->pt.attempts < 10 ? r->pt.attempts : 10));
    return 0;
}

int reprocess_loop(run *r, const exactly_reprocess_opts *o, const span *sp)
{
    size_t max = (size_t)(o->batch > 0 ? o->batch : r->p->batch.max_messages);
    int64_t to = sp->to;
    /* Set once the span's end has been read: every message of the range
     * from the position on is then in the buffer, and an empty buffer
     * means only control records are left. True only of the buffer and
     * fetch position it was seen with. */
    int at_end = 0;

    while (r->pt.next_offset <= to) {
        exactly_err rc;
        size_t n;

        if (o->stop && *o->stop)
            return 1;
        if (fill(r, max, to, &at_end) != 0) {
            if (r->gone)
                note_gone(r, sp);
            return 1;
        }
        if (r->pt.n_buf == 0 && at_end) {
            /* Only transaction markers left in the range. */
            rc = engine_run(&r->eng, &r->pt, 0, to + 1);
        } else if (r->pt.n_buf > 0 && (r->pt.n_buf >= max || at_end)) {
            n = r->pt.n_buf < max ? r->pt.n_buf : max;
            if (keep_rate(r, o, n))
                return 1;
            rc = engine_run(&r->eng, &r->pt, n,
                            run_batch_end(r, to, n, at_end));
        } else {
            continue;
        }
        if (settle(r, sp) != 0)
            return 1;
        if (rc == EXACTLY_EFENCED) {
            /* The run row refused the batch or was behind it: the engine
             * dropped the buffer and sought the consumer to the row's
             * offset (or does before the next batch, when it could not
             * read the row). The range is read again from there; at_end
             * kept would send the next batch, empty, to the range's end
             * over offsets it never applied. */
            at_end = 0;
        }
        if (rc == EXACTLY_OK)
            reprocess_progress(r, o, 0);
    }
    return 0;
}
