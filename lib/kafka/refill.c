/*
 * refill.c - waking a consumer's fetchers once the queue that stopped
 * them has half emptied (refill.h says why).
 */
#include "refill.h"

#include <stdlib.h>

/* A numeric property of conf, or fallback when it cannot be read. */
static double conf_number(const rd_kafka_conf_t *conf, const char *name,
                          double fallback)
{
    char v[32];
    size_t sz = sizeof(v);
    char *end;
    double d;

    if (rd_kafka_conf_get(conf, name, v, &sz) != RD_KAFKA_CONF_OK)
        return fallback;
    d = strtod(v, &end);
    return end != v && d > 0 ? d : fallback;
}

void kafka_refill_init(kafka_refill *r, rd_kafka_t *rk)
{
    const rd_kafka_conf_t *conf = rd_kafka_conf(rk);

    r->max_msgs = conf_number(conf, "queued.min.messages", 100000);
    r->max_bytes =
        conf_number(conf, "queued.max.messages.kbytes", 65536) * 1024.0;
    r->mean_len = 0;
    r->full = 0;
}

void kafka_refill_sample(kafka_refill *r, size_t len)
{
    r->mean_len += ((double)len - r->mean_len) / 16;
}

int kafka_refill_due(kafka_refill *r, size_t queued, size_t taken)
{
    double n = (double)queued;
    double bytes = n * r->mean_len;
    /* What the queue held when the take began, at least: a take of large
     * messages can move it far from its limit at once. */
    double before = n + (double)taken;

    /* librdkafka stops at the limit when it next decides, so a little
     * below counts too (a wake too many costs one small request). */
    if (before >= 0.9 * r->max_msgs ||
        before * r->mean_len >= 0.9 * r->max_bytes) {
        r->full = 1;
        return 0;
    }
    if (r->full && n < r->max_msgs / 2 && bytes < r->max_bytes / 2) {
        r->full = 0;
        return 1;
    }
    return 0;
}

int kafka_refill_wake(rd_kafka_t *rk,
                      const rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *q;
    rd_kafka_resp_err_t err;
    int i;

    if (!parts || parts->cnt == 0)
        return 0;
    q = rd_kafka_topic_partition_list_copy(parts);
    if (!q)
        return 0;
    for (i = 0; i < q->cnt; i++)
        q->elems[i].offset = RD_KAFKA_OFFSET_END; /* "latest" */
    /* One request per leader, handed over and not waited for (timeout
     * 0: "timed out" then means handed over); the answers change nothing,
     * and librdkafka drops them, its caller gone. */
    err = rd_kafka_offsets_for_times(rk, q, 0);
    rd_kafka_topic_partition_list_destroy(q);
    return err == RD_KAFKA_RESP_ERR_NO_ERROR ||
           err == RD_KAFKA_RESP_ERR__TIMED_OUT;
}
