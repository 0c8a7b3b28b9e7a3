/*
 * admin.c - see admin.h.
 */
#include "kafka/admin.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "source.h"

rd_kafka_t *kafka_admin_new(const exactly_config *cfg, const cfg_pipeline *p,
                            const char *client_tag, char *auto_reset,
                            char *err, size_t errsz)
{
    char client_id[256], kerr[512];
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;

    /* A client.id of its own, so broker logs never confuse the CLI with a
     * worker of the group. */
    snprintf(client_id, sizeof(client_id), "exactly-%s-%s-%d", client_tag,
             p->name, (int)getpid());
    conf = exactly_kafka_conf(cfg, p, auto_reset, client_id, err, errsz);
    if (!conf)
        return NULL;
    /* A command reports a failure once, in its own words; librdkafka's
     * retry chatter (broker down, reconnecting) would bury that line. */
    if (rd_kafka_conf_set(conf, "log_level", "2", kerr, sizeof(kerr)) !=
        RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errsz, "kafka: %s", kerr);
        return NULL;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, kerr, sizeof(kerr));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errsz, "cannot create a Kafka client: %s", kerr);
        return NULL;
    }
    return rk;
}

void kafka_admin_free(rd_kafka_t *rk)
{
    if (!rk)
        return;
    /* Never subscribed: closing leaves no group and commits nothing. */
    (void)rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

int kafka_admin_topic_meta(rd_kafka_t *rk, const char *topic, int timeout_ms,
                           int *partitions, int *brokers, char *err,
                           size_t errsz)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t e;
    int rc = -1;

    if (!t) {
        snprintf(err, errsz, "%s", rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    e = rd_kafka_metadata(rk, 0, t, &md, timeout_ms);
    if (e)
        snprintf(err, errsz, "cannot read metadata: %s", rd_kafka_err2str(e));
    else if (md->topic_cnt < 1)
        snprintf(err, errsz, "not found");
    else if (md->topics[0].err)
        snprintf(err, errsz, "%s", rd_kafka_err2str(md->topics[0].err));
    else {
        *partitions = md->topics[0].partition_cnt;
        *brokers = md->broker_cnt;
        rc = 0;
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(t);
    return rc;
}

int kafka_admin_partition_count(rd_kafka_t *rk, const char *topic,
                                int timeout_ms, char *err, size_t errsz)
{
    char why[512];
    int n = -1, brokers = 0;

    if (kafka_admin_topic_meta(rk, topic, timeout_ms, &n, &brokers, why,
                               sizeof(why)) != 0) {
        snprintf(err, errsz, "topic %s: %s", topic, why);
        return -1;
    }
    return n;
}

int kafka_admin_watermarks(rd_kafka_t *rk, const char *topic,
                           int32_t partition, int64_t *low, int64_t *lso,
                           int timeout_ms, char *err, size_t errsz)
{
    rd_kafka_resp_err_t e;

    e = rd_kafka_query_watermark_offsets(rk, topic, partition, low, lso,
                                         timeout_ms);
    if (e) {
        snprintf(err, errsz, "watermarks of %s [%d]: %s", topic,
                 (int)partition, rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

/* parts[0..n) of topic as a new list, each offset set to offsets[i] (or
 * to fill when offsets is NULL). */
static rd_kafka_topic_partition_list_t *
make_list(const char *topic, const int32_t *parts, size_t n,
          const int64_t *offsets, int64_t fill)
{
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new((int)n);
    size_t i;

    for (i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, topic, parts[i])->offset =
            offsets ? offsets[i] : fill;
    return l;
}

/*
 * Ends a call on list l that librdkafka answered with e: copies each
 * partition's offset into out[i] (when out is not NULL), and destroys l. A
 * partition's own error fails the call when elem_err_fails, else leaves
 * its out[i] as it was. Returns 0, or -1 with librdkafka's reason in err.
 */
static int settle(rd_kafka_topic_partition_list_t *l, rd_kafka_resp_err_t e,
                  int elem_err_fails, int64_t *out, char *err, size_t errsz)
{
    int i;

    for (i = 0; !e && i < l->cnt; i++) {
        if (l->elems[i].err) {
            if (elem_err_fails)
                e = l->elems[i].err;
            continue;
        }
        if (out)
            out[i] = l->elems[i].offset;
    }
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        snprintf(err, errsz, "%s", rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

int kafka_admin_committed(rd_kafka_t *rk, const char *topic,
                          const int32_t *parts, size_t n, int64_t *out,
                          int timeout_ms, char *err, size_t errsz)
{
    rd_kafka_topic_partition_list_t *l;
    size_t i;

    for (i = 0; i < n; i++)
        out[i] = RD_KAFKA_OFFSET_INVALID;
    if (n == 0)
        return 0;
    l = make_list(topic, parts, n, NULL, RD_KAFKA_OFFSET_INVALID);
    return settle(l, rd_kafka_committed(rk, l, timeout_ms), 0, out, err,
                  errsz);
}

int kafka_admin_offsets_for_time(rd_kafka_t *rk, const char *topic,
                                 const int32_t *parts, size_t n, int64_t ms,
                                 int64_t *out, int timeout_ms, char *err,
                                 size_t errsz)
{
    rd_kafka_topic_partition_list_t *l = make_list(topic, parts, n, NULL, ms);

    /* An offset of -1 (OFFSET_END): no message that recent. */
    return settle(l, rd_kafka_offsets_for_times(rk, l, timeout_ms), 1, out,
                  err, errsz);
}

int kafka_admin_commit(rd_kafka_t *rk, const char *topic,
                       const int32_t *parts, const int64_t *offsets, size_t n,
                       char *err, size_t errsz)
{
    rd_kafka_topic_partition_list_t *l = make_list(topic, parts, n, offsets, 0);

    return settle(l, rd_kafka_commit(rk, l, 0), 1, NULL, err, errsz);
}

int kafka_admin_group_members(rd_kafka_t *rk, const char *group,
                              int timeout_ms, int *members, char *state,
                              size_t state_size, char *err, size_t errsz)
{
    const struct rd_kafka_group_list *gl = NULL;
    rd_kafka_resp_err_t e;
    int i, rc = 0;

    *members = 0;
    snprintf(state, state_size, "%s", "unknown");
    e = rd_kafka_list_groups(rk, group, &gl, timeout_ms);
    if (e == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE ||
        e == RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION)
        return 1;
    if (e) {
        snprintf(err, errsz, "cannot describe consumer group '%s': %s", group,
                 rd_kafka_err2str(e));
        return -1;
    }
    for (i = 0; i < gl->group_cnt; i++) {
        const struct rd_kafka_group_info *g = &gl->groups[i];
        if (strcmp(g->group, group) != 0)
            continue;
        if (g->err && g->err != RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND) {
            snprintf(err, errsz, "cannot describe consumer group '%s': %s",
                     group, rd_kafka_err2str(g->err));
            rc = -1;
            break;
        }
        *members = g->member_cnt;
        snprintf(state, state_size, "%s", g->state ? g->state : "unknown");
    }
    rd_kafka_group_list_destroy(gl);
    return rc;
}
