#include "reprocess.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pg/catalog.h"
#include "clock.h"
#include "log.h"
#include "util/host_id.h"
#include "pg_conn.h"
#include "source.h"
#include "worker_internal.h"

/* One partition of a run: a reprocess_runs row with its own position. */
typedef struct span {
    int64_t id;
    char id_s[24];
    char *topic;
    int32_t partition;
    int64_t from, to;         /* inclusive */
    int64_t next;             /* the row's next_offset, as far as we know */
    int64_t epoch;
    int64_t lo, hi;           /* watermarks (a new run) */
    int64_t asked_from, asked_to; /* before clamping (a new run) */
    int done;
} span;

typedef struct run {
    worker w;
    part pt;                  /* the span being applied */
    int64_t id;               /* the run: its first row (the parent) */
    int multi;                /* rows share a parent: a run over a topic */
    span *spans;
    size_t n_spans;
    size_t cur;               /* the span being applied */
    size_t n_done;
    int64_t total;            /* offsets of the spans in this session */
    int64_t behind;           /* of those, offsets of spans already done */
    char id_s[24];
    char dl_key[200];
    long long started_ms;
    long long last_progress_ms;
} run;

static void spans_free(run *r)
{
    size_t i;

    for (i = 0; i < r->n_spans; i++)
        free(r->spans[i].topic);
    free(r->spans);
    r->spans = NULL;
    r->n_spans = 0;
}

static span *span_add(run *r)
{
    span *ns = realloc(r->spans, (r->n_spans + 1) * sizeof(*ns));

    if (!ns)
        return NULL;
    r->spans = ns;
    memset(&ns[r->n_spans], 0, sizeof(*ns));
    return &ns[r->n_spans++];
}

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;

    return x->partition < y->partition ? -1 : x->partition > y->partition;
}

/* Fills span sp from a RETURNING row: id, topic, partition, from_offset,
 * to_offset, next_offset, owner_epoch, parent. */
static int span_from_row(span *sp, const PGresult *res, int row)
{
    sp->id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
    snprintf(sp->id_s, sizeof(sp->id_s), "%" PRId64, sp->id);
    free(sp->topic);
    sp->topic = strdup(PQgetvalue(res, row, 1));
    sp->partition = (int32_t)atoi(PQgetvalue(res, row, 2));
    sp->from = strtoll(PQgetvalue(res, row, 3), NULL, 10);
    sp->to = strtoll(PQgetvalue(res, row, 4), NULL, 10);
    sp->next = strtoll(PQgetvalue(res, row, 5), NULL, 10);
    sp->epoch = strtoll(PQgetvalue(res, row, 6), NULL, 10);
    return sp->topic ? 0 : -1;
}

#define RUN_RETURNING                                                          \
    " RETURNING id, topic, partition, from_offset, to_offset, next_offset,"   \
    " owner_epoch, parent"

/* Claims an interrupted run: every row of it that is not done (one row,
 * or the rows of a run over a topic), bumping their epochs so that two
 * resumes of one run fence each other. Returns 0, 1 (failed) or 2 (no
 * such run, or it is done). */
static int resume_run(run *r, const exactly_reprocess_opts *o)
{
    worker *w = &r->w;
    char err[1024], id_s[24];
    const char *params[3] = {id_s, w->p->name, w->eng.owner};
    PGresult *res = NULL;
    strbuf sql = {0};
    exactly_err rc;
    int i, n;

    snprintf(id_s, sizeof(id_s), "%" PRId64, o->resume_run);
    strbuf_printf(&sql,
                  "UPDATE %s.reprocess_runs SET owner_epoch = owner_epoch + 1,"
                  " status = 'running', owner = $3, updated_at = now(),"
                  " ended_at = NULL WHERE (id = $1::bigint OR parent = $1::bigint)"
                  " AND pipeline = $2 AND status <> 'done'" RUN_RETURNING,
                  w->eng.sql.schema_q);
    rc = exactly_pg_exec(w->eng.conn, strbuf_str(&sql), 3, params, &res, err,
                         sizeof(err));
    strbuf_free(&sql);
    if (rc != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_ERROR, "reprocess", "cannot record the run",
                    LOG_STR("error", err));
        return 1;
    }
    n = PQntuples(res);
    if (n == 0) {
        PQclear(res);
        exactly_log(EXACTLY_LOG_ERROR, "reprocess",
                    "run not found in this pipeline, or already done",
                    LOG_INT("run", o->resume_run));
        return 2;
    }
    r->id = o->resume_run;
    for (i = 0; i < n; i++) {
        span *sp = span_add(r);
        if (!sp || span_from_row(sp, res, i) != 0) {
            PQclear(res);
            return 1;
        }
        r->multi |= !PQgetisnull(res, i, 7);
    }
    PQclear(res);
    qsort(r->spans, r->n_spans, sizeof(*r->spans), span_cmp);
    return 0;
}

/* Records a new run: one row per span, in one transaction. A run over a
 * topic names its first row as every row's parent. Returns 0 or 1. */
static int create_run(run *r)
{
    worker *w = &r->w;
    char err[1024], part_s[16], from_s[24], to_s[24];
    const char *params[7];
    PGresult *res = NULL;
    strbuf sql = {0};
    exactly_err rc = EXACTLY_OK;
    size_t i;

    strbuf_printf(&sql,
                  "INSERT INTO %s.reprocess_runs (pipeline, topic, partition,"
                  " from_offset, to_offset, next_offset, owner, parent)"
                  " VALUES ($1, $2, $3, $4, $5, $4, $6, $7::bigint)"
                  RUN_RETURNING,
                  w->eng.sql.schema_q);
    if (sql.oom)
        goto fail;
    if (exactly_pg_exec(w->eng.conn, "BEGIN", 0, NULL, NULL, err, sizeof(err)) !=
        EXACTLY_OK)
        goto fail;
    for (i = 0; i < r->n_spans && rc == EXACTLY_OK; i++) {
        span *sp = &r->spans[i];
        snprintf(part_s, sizeof(part_s), "%d", (int)sp->partition);
        snprintf(from_s, sizeof(from_s), "%" PRId64, sp->from);
        snprintf(to_s, sizeof(to_s), "%" PRId64, sp->to);
        params[0] = w->p->name;
        params[1] = sp->topic;
        params[2] = part_s;
        params[3] = from_s;
        params[4] = to_s;
        params[5] = w->eng.owner;
        /* The first row of a run over a topic is its own parent. */
        params[6] = !r->multi ? NULL : i == 0 ? NULL : r->spans[0].id_s;
        rc = exactly_pg_exec(w->eng.conn, strbuf_str(&sql), 7, params, &res, err,
                             sizeof(err));
        if (rc == EXACTLY_OK && (PQntuples(res) != 1 ||
                                 span_from_row(sp, res, 0) != 0))
            rc = EXACTLY_EDATABASE;
        PQclear(res);
        res = NULL;
    }
    if (rc == EXACTLY_OK && r->multi) {
        strbuf_reset(&sql);
        strbuf_printf(&sql,
                      "UPDATE %s.reprocess_runs SET parent = id WHERE id = $1::bigint",
                      w->eng.sql.schema_q);
        params[0] = r->spans[0].id_s;
        rc = sql.oom ? EXACTLY_ENOMEM
                     : exactly_pg_exec(w->eng.conn, strbuf_str(&sql), 1, params,
                                       NULL, err, sizeof(err));
    }
    if (rc == EXACTLY_OK)
        rc = exactly_pg_exec(w->eng.conn, "COMMIT", 0, NULL, NULL, err, sizeof(err));
    if (rc != EXACTLY_OK) {
        char ignored[256];
        (void)exactly_pg_exec(w->eng.conn, "ROLLBACK", 0, NULL, NULL, ignored,
                              sizeof(ignored));
        goto fail;
    }
    strbuf_free(&sql);
    r->id = r->spans[0].id;
    return 0;
fail:
    strbuf_free(&sql);
    exactly_log(EXACTLY_LOG_ERROR, "reprocess", "cannot record the run",
                LOG_STR("error", sql.oom ? "out of memory" : err));
    return 1;
}

static void close_span(run *r, span *sp, const char *status)
{
    worker *w = &r->w;
    char err[512], epoch_s[24];
    const char *params[3] = {sp->id_s, status, epoch_s};
    strbuf sql = {0};

    if (!w->eng.conn)
        return;
    snprintf(epoch_s, sizeof(epoch_s), "%" PRId64, sp->epoch);
    strbuf_printf(&sql,
                  "UPDATE %s.reprocess_runs SET status = $2, ended_at = now(),"
                  " updated_at = now() WHERE id = $1::bigint AND owner_epoch = $3",
                  w->eng.sql.schema_q);
    if (exactly_pg_exec(w->eng.conn, strbuf_str(&sql), 3, params, NULL, err,
                        sizeof(err)) != EXACTLY_OK)
        exactly_log(EXACTLY_LOG_WARN, "reprocess",
                    "cannot record the run's end", LOG_INT("run", sp->id),
                    LOG_STR("error", err));
    strbuf_free(&sql);
}

/* "M:SS" or "H:MM:SS" for secs seconds, rounded up. */
static void format_eta(char *buf, size_t size, double secs)
{
    long long left = (long long)(secs + 0.999);

    if (left >= 3600)
        snprintf(buf, size, "%lld:%02lld:%02lld", left / 3600, left / 60 % 60,
                 left % 60);
    else
        snprintf(buf, size, "%lld:%02lld", left / 60, left % 60);
}

/*
 * Prints where the run is: the offset (of a run over a topic: the
 * partitions done and the offsets behind it, of all its partitions), the
 * share of the range, the rate measured over this session and the time
 * left. The time left is the remaining offsets over the rate that will
 * apply from here: the measured one, or --rate when that is lower (the
 * first batches of a limited run come faster than the limit allows the
 * rest to). "--:--" until a rate has been measured. Nothing with -q.
 */
static void progress(run *r, const exactly_reprocess_opts *o, int final)
{
    long long now = exactly_now_ms();
    double secs = (double)(now - r->started_ms) / 1000.0;
    uint64_t done = r->w.eng.st.consumed;
    double rate = secs > 0 ? (double)done / secs : 0;
    double pace = o->rate > 0 && o->rate < rate ? o->rate : rate;
    const span *sp = &r->spans[r->cur < r->n_spans ? r->cur : r->n_spans - 1];
    int64_t total, at, remaining;
    char eta[32];

    if (o->quiet)
        return;
    if (!final && now - r->last_progress_ms < (o->tty ? 250 : 5000))
        return;
    r->last_progress_ms = now;
    if (r->multi) {
        total = r->total;
        at = r->behind;
        if (r->cur < r->n_spans)
            at += r->pt.next_offset - sp->from;
    } else {
        total = sp->to + 1 - sp->from;
        at = r->pt.next_offset - sp->from;
    }
    remaining = total - at;
    if (remaining <= 0)
        snprintf(eta, sizeof(eta), "0:00");
    else if (pace <= 0)
        snprintf(eta, sizeof(eta), "--:--");
    else
        format_eta(eta, sizeof(eta), (double)remaining / pace);
    if (r->multi)
        fprintf(stderr,
                "%spartitions %zu/%zu done  offsets %" PRId64 " of %" PRId64
                "  %3d%%  %.0f msg/s  ETA %s%s",
                o->tty ? "\r" : "", r->n_done, r->n_spans, at, total,
                total > 0 ? (int)(100 * at / total) : 100, rate, eta,
                o->tty && !final ? "   " : "\n");
    else
        fprintf(stderr,
                "%soffset %" PRId64 " of %" PRId64 "..%" PRId64 "  %3d%%  %.0f msg/s"
                "  ETA %s%s",
                o->tty ? "\r" : "", r->pt.next_offset, sp->from, sp->to,
                total > 0 ? (int)(100 * at / total) : 100, rate, eta,
                o->tty && !final ? "   " : "\n");
    fflush(stderr);
}

/* A run over a topic says when each partition is done, on a line of its
 * own. */
static void progress_span_done(run *r, const exactly_reprocess_opts *o,
                               const span *sp, uint64_t applied)
{
    if (o->quiet || !r->multi)
        return;
    fprintf(stderr,
            "%spartition %d done: offsets %" PRId64 "..%" PRId64
            ", applied %" PRIu64 " (%zu/%zu partitions)\n",
            o->tty ? "\r\033[K" : "", (int)sp->partition, sp->from, sp->to,
            applied, r->n_done, r->n_spans);
    fflush(stderr);
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
        double due = (double)(r->w.eng.st.consumed + n) / o->rate * 1000.0;
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

/* Applies span sp (already claimed, assigned and in r->pt) to its end.
 * Returns 0 when it reached it, 1 when it failed or was interrupted. */
static int loop(run *r, const exactly_reprocess_opts *o, const span *sp)
{
    worker *w = &r->w;
    size_t max = (size_t)(o->batch > 0 ? o->batch : w->p->batch.max_messages);
    int64_t to = sp->to;
    int at_end = 0;

    while (r->pt.next_offset <= to) {
        rd_kafka_message_t *m;
        exactly_err rc;
        size_t n;

        if (o->stop && *o->stop)
            return 1;
        while (!at_end && r->pt.n_buf < max &&
               (m = rd_kafka_consumer_poll(w->rk, r->pt.n_buf ? 0 : 200)) != NULL) {
            if (m->err) {
                exactly_log(EXACTLY_LOG_WARN, "reprocess", "consume error",
                            LOG_STR("code", rd_kafka_err2name(m->err)),
                            LOG_STR("text", rd_kafka_message_errstr(m)));
                if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
                    m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
                    rd_kafka_message_destroy(m);
                    return 1;
                }
                rd_kafka_message_destroy(m);
                continue;
            }
            if (m->partition != r->pt.partition) {
                rd_kafka_message_destroy(m); /* left from the last span */
                continue;
            }
            if (m->offset > to) {
                at_end = 1;
                rd_kafka_message_destroy(m);
                break;
            }
            if (m->offset < r->pt.next_offset ||
                (r->pt.n_buf && m->offset <= r->pt.buf[r->pt.n_buf - 1]->offset)) {
                rd_kafka_message_destroy(m);
                continue;
            }
            if (r->pt.n_buf == r->pt.cap_buf) {
                size_t cap = r->pt.cap_buf ? r->pt.cap_buf * 2 : 256;
                rd_kafka_message_t **nb = realloc(r->pt.buf, cap * sizeof(*nb));
                if (!nb) {
                    rd_kafka_message_destroy(m);
                    return 1;
                }
                r->pt.buf = nb;
                r->pt.cap_buf = cap;
            }
            r->pt.buf[r->pt.n_buf++] = m;
        }
        if (!at_end && engine_part_position(&w->eng, &r->pt) > to)
            at_end = 1;
        if (r->pt.n_buf == 0) {
            if (at_end) /* only transaction markers left in the range */
                rc = engine_run(&w->eng, &r->pt, 0, to + 1);
            else
                continue;
        } else if (r->pt.n_buf >= max || at_end) {
            n = r->pt.n_buf < max ? r->pt.n_buf : max;
            if (keep_rate(r, o, n))
                return 1;
            rc = engine_run(&w->eng, &r->pt, n, run_batch_end(r, to, n, at_end));
        } else {
            continue;
        }
        if (rc == EXACTLY_EFENCED && !part_state_stopped(r->pt.state))
            continue; /* the run row was behind (a failover): from there */
        if (rc == EXACTLY_EFENCED) {
            exactly_log(EXACTLY_LOG_ERROR, "reprocess",
                        "run was taken over by another process",
                        LOG_INT("run", sp->id));
            return 1;
        }
        if (rc == EXACTLY_EHANDLER)
            return 1; /* on_error: stop, logged by the cycle */
        if (rc != EXACTLY_OK) {
            usleep(200 * 1000 * (useconds_t)(r->pt.attempts < 10 ? r->pt.attempts : 10));
            continue;
        }
        progress(r, o, 0);
    }
    return 0;
}

/* Makes span i the cycle's position and assigns its partition at its
 * stored offset. Returns 0 or 1. */
static int start_span(run *r, size_t i)
{
    worker *w = &r->w;
    span *sp = &r->spans[i];
    rd_kafka_topic_partition_list_t *l;
    rd_kafka_resp_err_t e;

    engine_part_drop(&r->pt, r->pt.n_buf);
    free(r->pt.topic);
    {
        rd_kafka_message_t **buf = r->pt.buf;
        size_t cap = r->pt.cap_buf;
        memset(&r->pt, 0, sizeof(r->pt));
        r->pt.buf = buf;
        r->pt.cap_buf = cap;
    }
    r->cur = i;
    r->pt.topic = strdup(sp->topic);
    r->pt.partition = sp->partition;
    r->pt.next_offset = sp->next;
    r->pt.epoch = sp->epoch;
    /* The row is this cycle's fence; the handler sees the run. */
    w->eng.fence_key = sp->id_s;
    w->eng.reprocess_run = r->id;
    l = rd_kafka_topic_partition_list_new(1);
    if (!r->pt.topic || !l) {
        if (l)
            rd_kafka_topic_partition_list_destroy(l);
        return 1;
    }
    rd_kafka_topic_partition_list_add(l, sp->topic, sp->partition)->offset =
        sp->next;
    e = rd_kafka_assign(w->rk, l);
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

/* The partitions of topic, in *n (a new run over all of them). */
static int32_t *topic_partitions(worker *w, const char *topic, int *n,
                                 rd_kafka_resp_err_t *err)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(w->rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    int32_t *parts = NULL;
    int i;

    *n = 0;
    *err = RD_KAFKA_RESP_ERR__FAIL;
    if (!rkt)
        return NULL;
    *err = rd_kafka_metadata(w->rk, 0, rkt, &md, 10000);
    if (*err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (md->topic_cnt != 1 || md->topics[0].err) {
            *err = md->topic_cnt == 1 ? md->topics[0].err
                                      : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        } else if (md->topics[0].partition_cnt == 0) {
            *err = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        } else {
            parts = calloc((size_t)md->topics[0].partition_cnt, sizeof(*parts));
            for (i = 0; parts && i < md->topics[0].partition_cnt; i++)
                parts[i] = md->topics[0].partitions[i].id;
            if (parts)
                *n = md->topics[0].partition_cnt;
            else
                *err = RD_KAFKA_RESP_ERR__FAIL;
        }
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    return parts;
}

/* For every span, the first offset whose timestamp is at or after ms (or
 * the high watermark when none is): into from (is_from) or to + 1. */
static int offsets_for_time(run *r, int64_t ms, int is_from)
{
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new((int)r->n_spans);
    rd_kafka_resp_err_t e;
    size_t i;
    int rc = 0;

    if (!l)
        return -1;
    for (i = 0; i < r->n_spans; i++)
        rd_kafka_topic_partition_list_add(l, r->spans[i].topic,
                                          r->spans[i].partition)->offset = ms;
    e = rd_kafka_offsets_for_times(r->w.rk, l, 10000);
    for (i = 0; i < r->n_spans && !e; i++) {
        span *sp = &r->spans[i];
        rd_kafka_topic_partition_t *t =
            rd_kafka_topic_partition_list_find(l, sp->topic, sp->partition);
        int64_t off;
        if (!t || t->err) {
            e = t ? t->err : RD_KAFKA_RESP_ERR__FAIL;
            break;
        }
        /* -1: no message that recent; the end of the partition. */
        off = t->offset < 0 ? sp->hi : t->offset;
        if (is_from)
            sp->from = off;
        else
            sp->to = off - 1;
    }
    if (e) {
        exactly_log(EXACTLY_LOG_ERROR, "reprocess",
                    "cannot look up the offsets for the time",
                    LOG_STR("topic", r->spans[0].topic), LOG_INT("time_ms", ms),
                    LOG_STR("error", rd_kafka_err2str(e)));
        rc = -1;
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

/*
 * Plans a new run: its spans (one partition, or every partition of the
 * topic), their watermarks and their ranges. Returns 0, 1 (Kafka failed)
 * or 2 (refused: no such partition, a range outside one partition, a time
 * the server cannot read, nothing in the range).
 */
static int plan_run(run *r, const exactly_reprocess_opts *o)
{
    worker *w = &r->w;
    int32_t *parts = NULL, one = o->partition;
    int n = 1, i, kept = 0;
    int timed = o->from_time || o->to_time;
    int64_t from_ms = 0, to_ms = 0;
    char canon[64], err[1024];
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;

    for (i = 0; i < 2; i++) {
        const char *text = i == 0 ? o->from_time : o->to_time;
        exactly_err rc;
        if (!text)
            continue;
        rc = pg_parse_time(w->eng.conn, text, i == 0 ? &from_ms : &to_ms, canon,
                           sizeof(canon), err, sizeof(err));
        if (rc != EXACTLY_OK) {
            exactly_log(EXACTLY_LOG_ERROR, "reprocess",
                        "refusing the time range",
                        LOG_STR("option", i == 0 ? "--from-time" : "--to-time"),
                        LOG_STR("error", err));
            return rc == EXACTLY_EINVAL ? 2 : 1;
        }
    }
    if (o->from_time && o->to_time && to_ms <= from_ms) {
        exactly_log(EXACTLY_LOG_ERROR, "reprocess", "refusing the time range",
                    LOG_STR("reason", "--to-time is not after --from-time"),
                    LOG_INT("from_ms", from_ms), LOG_INT("to_ms", to_ms));
        return 2;
    }
    r->multi = o->partition < 0;
    if (r->multi) {
        parts = topic_partitions(w, o->topic, &n, &e);
        if (!parts) {
            exactly_log(EXACTLY_LOG_ERROR, "reprocess",
                        "cannot read the topic's partitions",
                        LOG_STR("topic", o->topic),
                        LOG_STR("error", rd_kafka_err2str(e)));
            return e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ? 2 : 1;
        }
    }
    for (i = 0; i < n; i++) {
        span *sp = span_add(r);
        if (!sp || !(sp->topic = strdup(o->topic))) {
            free(parts);
            return 1;
        }
        sp->partition = parts ? parts[i] : one;
        e = rd_kafka_query_watermark_offsets(w->rk, o->topic, sp->partition,
                                             &sp->lo, &sp->hi, 10000);
        if (e) {
            exactly_log(EXACTLY_LOG_ERROR, "reprocess",
                        "cannot read the partition's watermarks",
                        LOG_STR("topic", o->topic),
                        LOG_INT("partition", sp->partition),
                        LOG_STR("error", rd_kafka_err2str(e)));
            free(parts);
            /* No such partition is a wrong request, not an outage. */
            return e == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
                           e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
                       ? 2
                       : 1;
        }
        sp->from = o->from >= 0 ? o->from : sp->lo;
        sp->to = o->to >= 0 ? o->to : sp->hi - 1;
    }
    free(parts);
    qsort(r->spans, r->n_spans, sizeof(*r->spans), span_cmp);
    if ((o->from_time && offsets_for_time(r, from_ms, 1) != 0) ||
        (o->to_time && offsets_for_time(r, to_ms, 0) != 0))
        return 1;
    if (!r->multi && !timed) {
        span *sp = &r->spans[0];
        /* One partition by offsets: exactly the range asked, or nothing. */
        if (sp->from > sp->to || sp->from < sp->lo || sp->to >= sp->hi) {
            exactly_log(EXACTLY_LOG_ERROR, "reprocess",
                        "refusing the offset range",
                        LOG_STR("reason", sp->from > sp->to
                                              ? "the range is inverted"
                                              : "the range is outside the partition"),
                        LOG_STR("topic", sp->topic),
                        LOG_INT("partition", sp->partition),
                        LOG_INT("from", sp->from), LOG_INT("to", sp->to),
                        LOG_INT("first_offset", sp->lo),
                        LOG_INT("last_offset", sp->hi - 1),
                        LOG_INT("low_watermark", sp->lo),
                        LOG_INT("high_watermark", sp->hi));
            return 2;
        }
    }
    if (!timed && o->from >= 0 && o->to >= 0 && o->from > o->to) {
        exactly_log(EXACTLY_LOG_ERROR, "reprocess", "refusing the offset range",
                    LOG_STR("reason", "the range is inverted"),
                    LOG_INT("from", o->from), LOG_INT("to", o->to));
        return 2;
    }
    /* Each partition: what was asked, within what it holds. */
    for (i = 0; i < (int)r->n_spans; i++) {
        span *sp = &r->spans[i];
        sp->asked_from = sp->from;
        sp->asked_to = sp->to;
        if (sp->from < sp->lo)
            sp->from = sp->lo;
        if (sp->to > sp->hi - 1)
            sp->to = sp->hi - 1;
        if (sp->from > sp->to) {
            free(sp->topic);
            continue; /* nothing of this partition is in the range */
        }
        r->spans[kept++] = *sp;
    }
    r->n_spans = (size_t)kept;
    if (kept == 0) {
        exactly_log(EXACTLY_LOG_ERROR, "reprocess",
                    "refusing the range: no offset of the topic is in it",
                    LOG_STR("topic", o->topic),
                    LOG_STR("from_time", o->from_time),
                    LOG_STR("to_time", o->to_time),
                    LOG_INT("from", o->from), LOG_INT("to", o->to));
        return 2;
    }
    return 0;
}

int exactly_reprocess(const exactly_reprocess_opts *o)
{
    run *r = calloc(1, sizeof(*r));
    worker *w;
    char err[2048], reset[16];
    rd_kafka_conf_t *conf = NULL;
    int code = 1, tries;
    size_t i;
    char host[64];
    const char *status;

    if (!r)
        return 1;
    w = &r->w;
    worker_init(w, o->cfg, o->p);
    if (exactly_host_id(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "unknown");
    snprintf(w->eng.owner, sizeof(w->eng.owner), "%s:%d:reprocess", host, (int)getpid());
    exactly_log_set_context(w->p->name, -1);

    code = 2; /* refused, until the services are reached */
    if (exactly_plugin_load(w->cfg, w->p, &w->eng.plugin, err, sizeof(err)) != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_ERROR, "reprocess", "handler refused",
                    LOG_STR("error", err));
        goto cleanup;
    }
    conf = exactly_kafka_conf(w->cfg, w->p, reset, "exactly-reprocess", err, sizeof(err));
    if (!conf) {
        exactly_log(EXACTLY_LOG_ERROR, "reprocess",
                    "kafka configuration refused", LOG_STR("error", err));
        goto cleanup;
    }
    w->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!w->rk) {
        rd_kafka_conf_destroy(conf);
        exactly_log(EXACTLY_LOG_ERROR, "reprocess",
                    "cannot create Kafka consumer", LOG_STR("error", err));
        goto cleanup;
    }
    w->eng.rk = w->rk;
    code = 1;
    for (tries = 0; tries < 50 && worker_db(w) != EXACTLY_OK; tries++) {
        if (w->fatal) {
            code = 2;
            goto cleanup;
        }
        usleep(200 * 1000);
    }
    if (!w->eng.conn) {
        exactly_log(EXACTLY_LOG_ERROR, "reprocess", "cannot reach PostgreSQL");
        goto cleanup;
    }
    if (o->resume_run <= 0) {
        code = plan_run(r, o);
        if (code != 0)
            goto cleanup;
    }
    if (o->dry_run) {
        int64_t total = 0;
        for (i = 0; i < r->n_spans; i++) {
            const span *sp = &r->spans[i];
            total += sp->to - sp->from + 1;
            if (r->multi || o->from_time || o->to_time)
                printf("partition %d: offsets %" PRId64 "..%" PRId64
                       " (%" PRId64 " offsets)%s\n",
                       (int)sp->partition, sp->from, sp->to,
                       sp->to - sp->from + 1,
                       sp->from != sp->asked_from || sp->to != sp->asked_to
                           ? ", within the partition's offsets"
                           : "");
        }
        if (r->n_spans == 1)
            printf("dry run: would apply handler %s again to offsets %" PRId64
                   "..%" PRId64 " (%" PRId64 " offsets) of %s [%d] for pipeline "
                   "%s, in batches of %d; the pipeline's stored offsets stay as "
                   "they are\n",
                   w->eng.plugin->label, r->spans[0].from, r->spans[0].to, total,
                   o->topic, (int)r->spans[0].partition, w->p->name,
                   o->batch > 0 ? o->batch : w->p->batch.max_messages);
        else
            printf("dry run: would apply handler %s again to %" PRId64
                   " offsets of %zu partitions of %s for pipeline %s, in "
                   "batches of %d; the pipeline's stored offsets stay as they "
                   "are\n",
                   w->eng.plugin->label, total, r->n_spans, o->topic, w->p->name,
                   o->batch > 0 ? o->batch : w->p->batch.max_messages);
        code = 0;
        goto cleanup;
    }
    if (exactly_plugin_open(w->eng.plugin, w->eng.conn, w->p, w->eng.timeout_ms, err,
                            sizeof(err)) != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_ERROR, "reprocess", "handler's open() failed",
                    LOG_STR("error", err));
        code = 2;
        goto cleanup;
    }
    code = o->resume_run > 0 ? resume_run(r, o) : create_run(r);
    if (code != 0)
        goto cleanup;
    snprintf(r->id_s, sizeof(r->id_s), "%" PRId64, r->id);
    /* The run's rows are this cycle's position. */
    free(w->eng.sql.fence);
    free(w->eng.sql.read);
    w->eng.sql.fence = strdup(w->eng.sql.run_fence);
    w->eng.sql.read = strdup(w->eng.sql.run_read);
    /* Kept apart from the live pipeline's dead letters, which share the
     * (topic, partition, offset) key; every partition of a run under the
     * run's one name. */
    snprintf(r->dl_key, sizeof(r->dl_key), "%s:reprocess:%" PRId64, w->p->name,
             r->id);
    w->eng.dl_key = r->dl_key;
    {
        strbuf q = {0};
        strbuf_printf(&q,
                      "UPDATE %s.reprocess_runs SET applied = applied + $2::bigint"
                      " WHERE id = $1::bigint",
                      w->eng.sql.schema_q);
        w->eng.run_applied_sql = q.data;
    }
    if (!w->eng.sql.fence || !w->eng.sql.read || !w->eng.run_applied_sql) {
        code = 1;
        goto cleanup;
    }
    for (i = 0; i < r->n_spans; i++)
        r->total += r->spans[i].to + 1 - r->spans[i].from;
    r->started_ms = exactly_now_ms();
    code = 0;
    for (i = 0; i < r->n_spans && code == 0; i++) {
        span *sp = &r->spans[i];
        uint64_t before = w->eng.st.applied;
        if (start_span(r, i) != 0) {
            code = 1;
            break;
        }
        code = loop(r, o, sp);
        sp->next = r->pt.next_offset;
        if (code == 0) {
            sp->done = 1;
            r->n_done++;
            r->behind += sp->to + 1 - sp->from;
            close_span(r, sp, "done");
            progress_span_done(r, o, sp, w->eng.st.applied - before);
        }
    }
    r->cur = r->n_spans;
    progress(r, o, 1);
    status = code == 0 ? "done" : (o->stop && *o->stop) ? "interrupted" : "failed";
    for (i = 0; i < r->n_spans; i++)
        if (!r->spans[i].done)
            close_span(r, &r->spans[i], status);
    if (!r->multi)
        printf("run %" PRId64 ": %s; applied %" PRIu64 " messages of %s [%d] "
               "offsets %" PRId64 "..%" PRId64 " (now at %" PRId64 "), dead-lettered "
               "%" PRIu64 ", in %.1f s\n",
               r->id, status, w->eng.st.applied, r->spans[0].topic,
               (int)r->spans[0].partition, r->spans[0].from, r->spans[0].to,
               r->spans[0].next, w->eng.st.dead_lettered,
               (double)(exactly_now_ms() - r->started_ms) / 1000.0);
    else
        printf("run %" PRId64 ": %s; applied %" PRIu64 " messages of %s, "
               "%zu of %zu partitions done, dead-lettered %" PRIu64
               ", in %.1f s\n",
               r->id, status, w->eng.st.applied, r->spans[0].topic, r->n_done,
               r->n_spans, w->eng.st.dead_lettered,
               (double)(exactly_now_ms() - r->started_ms) / 1000.0);
    if (code != 0)
        printf("resume with: exactly reprocess -c %s --pipeline %s --resume %" PRId64 "\n",
               w->cfg->path, w->p->name, r->id);
    if (code == 0 && w->eng.st.dead_lettered > 0) {
        /* Finished: resuming would do nothing. What was not applied is
         * in the dead letters, under the run's own name. */
        exactly_log(EXACTLY_LOG_WARN, "reprocess", "run finished with dead letters",
                    LOG_INT("run", r->id),
                    LOG_UINT("dead_lettered", w->eng.st.dead_lettered),
                    LOG_STR("dead_letter_pipeline", r->dl_key));
        printf("%" PRIu64 " message(s) of run %" PRId64 " failed and were "
               "dead-lettered, not applied; the run is finished.\n"
               "see them with:   exactly dlq list -c %s --pipeline %s --run %"
               PRId64 "\n"
               "once the cause is fixed, apply them with:\n"
               "                 exactly dlq replay -c %s --pipeline %s --run %"
               PRId64 " --all\n",
               w->eng.st.dead_lettered, r->id, w->cfg->path, w->p->name, r->id,
               w->cfg->path, w->p->name, r->id);
        code = EXACTLY_REPROCESS_DEAD_LETTERED;
    }

cleanup:
    engine_part_drop(&r->pt, r->pt.n_buf);
    free(r->pt.buf);
    free(r->pt.topic);
    spans_free(r);
    if (w->rk) {
        rd_kafka_consumer_close(w->rk);
        rd_kafka_destroy(w->rk);
    }
    free(w->eng.run_applied_sql);
    w->eng.fence_key = NULL;
    engine_free(&w->eng);
    free(r);
    return code;
}
