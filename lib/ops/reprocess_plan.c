/*
 * reprocess_plan.c - a new run's spans (see reprocess_internal.h): which
 * partitions, their watermarks, the offsets a time range names, and the
 * range checked against what each partition holds.
 */
#include "reprocess_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pg/catalog.h"

void reprocess_spans_free(run *r)
{
    size_t i;

    for (i = 0; i < r->n_spans; i++)
        free(r->spans[i].topic);
    free(r->spans);
    r->spans = NULL;
    r->n_spans = 0;
}

span *reprocess_span_add(run *r)
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

void reprocess_spans_sort(run *r)
{
    if (r->n_spans > 1)
        qsort(r->spans, r->n_spans, sizeof(*r->spans), span_cmp);
}

/* The partitions of topic, in *n (a new run over all of them). */
static int32_t *topic_partitions(run *r, const char *topic, int *n,
                                 rd_kafka_resp_err_t *err)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(r->rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    int32_t *parts = NULL;
    int i;

    *n = 0;
    *err = RD_KAFKA_RESP_ERR__FAIL;
    if (!rkt)
        return NULL;
    *err = rd_kafka_metadata(r->rk, 0, rkt, &md, 10000);
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
    e = rd_kafka_offsets_for_times(r->rk, l, 10000);
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

/* --from-time and --to-time as milliseconds, read by PostgreSQL. Returns
 * 0, 1 (PostgreSQL failed) or 2 (refused). */
static int parse_times(run *r, const exactly_reprocess_opts *o,
                       int64_t *from_ms, int64_t *to_ms)
{
    char canon[64], err[1024];
    int i;

    for (i = 0; i < 2; i++) {
        const char *text = i == 0 ? o->from_time : o->to_time;
        exactly_err rc;
        if (!text)
            continue;
        rc = pg_parse_time(r->eng.conn, text, i == 0 ? from_ms : to_ms,
                           canon, sizeof(canon), err, sizeof(err));
        if (rc != EXACTLY_OK) {
            exactly_log(EXACTLY_LOG_ERROR, "reprocess",
                        "refusing the time range",
                        LOG_STR("option", i == 0 ? "--from-time" : "--to-time"),
                        LOG_STR("error", err));
            return rc == EXACTLY_EINVAL ? 2 : 1;
        }
    }
    if (o->from_time && o->to_time && *to_ms <= *from_ms) {
        exactly_log(EXACTLY_LOG_ERROR, "reprocess", "refusing the time range",
                    LOG_STR("reason", "--to-time is not after --from-time"),
                    LOG_INT("from_ms", *from_ms), LOG_INT("to_ms", *to_ms));
        return 2;
    }
    return 0;
}

/* One span per partition asked (o->partition, or every partition of the
 * topic), with its watermarks and the offsets asked. Returns 0, 1 or 2
 * (no such topic or partition). */
static int add_spans(run *r, const exactly_reprocess_opts *o)
{
    int32_t *parts = NULL;
    int n = 1, i;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;

    if (r->multi) {
        parts = topic_partitions(r, o->topic, &n, &e);
        if (!parts) {
            exactly_log(EXACTLY_LOG_ERROR, "reprocess",
                        "cannot read the topic's partitions",
                        LOG_STR("topic", o->topic),
                        LOG_STR("error", rd_kafka_err2str(e)));
            return e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ? 2 : 1;
        }
    }
    for (i = 0; i < n; i++) {
        span *sp = reprocess_span_add(r);
        if (!sp || !(sp->topic = strdup(o->topic))) {
            free(parts);
            return 1;
        }
        sp->partition = parts ? parts[i] : o->partition;
        e = rd_kafka_query_watermark_offsets(r->rk, o->topic, sp->partition,
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
    return 0;
}

/* A range by offsets: of one partition exactly what was asked, and never
 * inverted. Returns 0 or 2 (refused). */
static int check_offsets(const run *r, const exactly_reprocess_opts *o)
{
    const span *sp = &r->spans[0];

    if (!r->multi &&
        (sp->from > sp->to || sp->from < sp->lo || sp->to >= sp->hi)) {
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
    if (o->from >= 0 && o->to >= 0 && o->from > o->to) {
        exactly_log(EXACTLY_LOG_ERROR, "reprocess", "refusing the offset range",
                    LOG_STR("reason", "the range is inverted"),
                    LOG_INT("from", o->from), LOG_INT("to", o->to));
        return 2;
    }
    return 0;
}

/* Each partition: what was asked, within what it holds; partitions with
 * nothing in the range are left out. Returns 0, or 2 when none is left. */
static int clamp_spans(run *r, const exactly_reprocess_opts *o)
{
    size_t i, kept = 0;

    for (i = 0; i < r->n_spans; i++) {
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
    r->n_spans = kept;
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

int reprocess_plan(run *r, const exactly_reprocess_opts *o)
{
    int timed = o->from_time || o->to_time;
    int64_t from_ms = 0, to_ms = 0;
    int rc;

    rc = parse_times(r, o, &from_ms, &to_ms);
    if (rc != 0)
        return rc;
    r->multi = o->partition < 0;
    rc = add_spans(r, o);
    if (rc != 0)
        return rc;
    reprocess_spans_sort(r);
    if ((o->from_time && offsets_for_time(r, from_ms, 1) != 0) ||
        (o->to_time && offsets_for_time(r, to_ms, 0) != 0))
        return 1;
    if (!timed) {
        rc = check_offsets(r, o);
        if (rc != 0)
            return rc;
    }
    return clamp_spans(r, o);
}
