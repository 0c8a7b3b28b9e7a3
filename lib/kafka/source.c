/*
 * source.c - the worker's Kafka consumer: configuration (the properties
 * exactly must own are checked, not silently overridden), the rebalance
 * callback, and the small calls the cycle needs (commit, seek, pause).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"
#include "worker_internal.h"

static void log_cb(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf)
{
    /* Connection failures (facility FAIL) are transient and reported once
     * per episode by error_cb: not an error line each. A refused offset
     * commit (COMMITFAIL: REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION during
     * every rebalance) costs nothing: Kafka's committed offsets are for
     * lag tools only, PostgreSQL holds the positions. */
    exactly_log_level l = strcmp(fac, "COMMITFAIL") == 0 ? EXACTLY_LOG_DEBUG
                          : strcmp(fac, "FAIL") == 0 ? EXACTLY_LOG_WARN
                          : level <= 3   ? EXACTLY_LOG_ERROR
                          : level <= 4 ? EXACTLY_LOG_WARN
                          : level <= 6 ? EXACTLY_LOG_INFO
                                       : EXACTLY_LOG_DEBUG;
    (void)rk;
    exactly_log(l, "kafka", "librdkafka", LOG_STR("facility", fac),
                LOG_STR("text", buf));
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    worker *w = opaque;
    long long now = worker_now_ms();

    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char fatal[512];
        rd_kafka_resp_err_t orig =
            rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        exactly_log(EXACTLY_LOG_ERROR, "kafka", "fatal consumer error",
                    LOG_STR("code", rd_kafka_err2name(orig)),
                    LOG_STR("text", fatal));
        w->fatal = 1;
        return;
    }
    (void)now;
    /* An outage repeats errors (of changing codes) on every retry. */
    if (!worker_kafka_error_due(w))
        return;
    exactly_log(EXACTLY_LOG_WARN, "kafka", "consumer error",
                LOG_STR("code", rd_kafka_err2name((rd_kafka_resp_err_t)err)),
                LOG_STR("text", reason));
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    worker *w = opaque;
    const char *protocol = rd_kafka_rebalance_protocol(rk);

    w->st.rebalances++;
    /* Known once the group is joined ("NONE" before): here, not earlier. */
    w->cooperative = protocol && strcmp(protocol, "COOPERATIVE") == 0;
    /* The group coordinator answered: Kafka is reachable again. */
    if (w->kafka_episode_ms) {
        exactly_log(EXACTLY_LOG_INFO, "source", "kafka answers again",
                    LOG_INT("after_ms", worker_now_ms() - w->kafka_episode_ms));
        w->kafka_episode_ms = 0;
    }
    if (w->in_cycle) {
        /* librdkafka waits for the assign/unassign call, which may come
         * after this callback returns: it comes when the batch ends. */
        worker_defer_rebalance(w, err, parts, rd_kafka_assignment_lost(w->rk));
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
        worker_assign(w, parts);
    else
        worker_revoke(w, parts, rd_kafka_assignment_lost(w->rk));
}

/* Properties whose meaning exactly depends on. */
static int own_property(const exactly_config *cfg, const cfg_pipeline *pl,
                        char *auto_reset, const cfg_prop *prop, char *errbuf,
                        size_t errbuf_size, int *handled)
{
    const char *n = prop->name;
    const char *v = prop->value;

    *handled = 1;
    if (strcmp(n, "isolation.level") == 0) {
        if (strcmp(v, "read_committed") == 0)
            return 0;
        if (strcmp(v, "read_uncommitted") == 0 &&
            pl->unsafe_read_uncommitted) {
            *handled = 0;
            return 0;
        }
        snprintf(errbuf, errbuf_size,
                 "%s:%d:%d: kafka property 'isolation.level=%s' would hand "
                 "aborted transactions to the handler; exactly reads "
                 "read_committed (set pipelines.%s.unsafe_read_uncommitted: "
                 "true to override)",
                 cfg->path, prop->pos.line, prop->pos.column, v, pl->name);
        return -1;
    }
    if (strcmp(n, "enable.auto.commit") == 0 ||
        strcmp(n, "enable.auto.offset.store") == 0) {
        if (strcasecmp(v, "false") == 0)
            return 0;
        snprintf(errbuf, errbuf_size,
                 "%s:%d:%d: kafka property '%s' must stay false: exactly "
                 "stores offsets in PostgreSQL and commits them to Kafka "
                 "itself",
                 cfg->path, prop->pos.line, prop->pos.column, n);
        return -1;
    }
    if (strcmp(n, "auto.offset.reset") == 0) {
        if (!strcmp(v, "earliest") || !strcmp(v, "smallest") ||
            !strcmp(v, "beginning"))
            snprintf(auto_reset, 16, "earliest");
        else if (!strcmp(v, "latest") || !strcmp(v, "largest") ||
                 !strcmp(v, "end"))
            snprintf(auto_reset, 16, "latest");
        else if (!strcmp(v, "error"))
            snprintf(auto_reset, 16, "error");
        else {
            snprintf(errbuf, errbuf_size,
                     "%s:%d:%d: kafka property 'auto.offset.reset' must be "
                     "earliest, latest or error, got '%s'",
                     cfg->path, prop->pos.line, prop->pos.column, v);
            return -1;
        }
        return 0;
    }
    if (strcmp(n, "group.id") == 0) {
        snprintf(errbuf, errbuf_size,
                 "%s:%d:%d: set the consumer group with pipelines.%s.group, "
                 "not kafka property 'group.id'",
                 cfg->path, prop->pos.line, prop->pos.column, pl->name);
        return -1;
    }
    *handled = 0;
    return 0;
}

static int set_props(const exactly_config *cfg, const cfg_pipeline *pl,
                     char *auto_reset, rd_kafka_conf_t *conf,
                     const cfg_prop *props, size_t n, char *errbuf,
                     size_t errbuf_size)
{
    char kerr[512];
    size_t i;

    for (i = 0; i < n; i++) {
        int handled;
        if (own_property(cfg, pl, auto_reset, &props[i], errbuf, errbuf_size,
                         &handled) != 0)
            return -1;
        if (handled)
            continue;
        if (rd_kafka_conf_set(conf, props[i].name, props[i].value, kerr,
                              sizeof(kerr)) != RD_KAFKA_CONF_OK) {
            snprintf(errbuf, errbuf_size, "%s:%d:%d: kafka property '%s': %s",
                     cfg->path, props[i].pos.line, props[i].pos.column,
                     props[i].name, kerr);
            return -1;
        }
    }
    return 0;
}

static int has_prop(const exactly_config *cfg, const cfg_pipeline *pl,
                    const char *name)
{
    size_t i;

    for (i = 0; i < cfg->n_kafka; i++)
        if (strcmp(cfg->kafka[i].name, name) == 0)
            return 1;
    for (i = 0; i < pl->n_kafka; i++)
        if (strcmp(pl->kafka[i].name, name) == 0)
            return 1;
    return 0;
}

rd_kafka_conf_t *exactly_kafka_conf(const exactly_config *cfg,
                                    const cfg_pipeline *pl, char *auto_reset,
                                    const char *client_id, char *errbuf,
                                    size_t errbuf_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char kerr[512];
    size_t i;
    struct {
        const char *name;
        const char *value;
        int only_default;
    } fixed[] = {
        {"isolation.level", "read_committed", 0},
        {"enable.auto.commit", "false", 0},
        {"enable.auto.offset.store", "false", 0},
        /* A stored offset that left the log halts the partition: it is
         * never silently moved. New partitions use auto_reset. */
        {"auto.offset.reset", "error", 0},
        {"enable.partition.eof", "false", 0},
        /* librdkafka 2.0 backs off fetching for a second whenever the local
         * queue is full; a deeper queue keeps batches flowing. */
        {"queued.min.messages", "100000", 1},
        {"queued.max.messages.kbytes", "32768", 1},
    };

    snprintf(auto_reset, 16, "earliest");
    if (!conf) {
        snprintf(errbuf, errbuf_size, "out of memory");
        return NULL;
    }
    if (set_props(cfg, pl, auto_reset, conf, cfg->kafka, cfg->n_kafka, errbuf,
                  errbuf_size) != 0 ||
        set_props(cfg, pl, auto_reset, conf, pl->kafka, pl->n_kafka, errbuf,
                  errbuf_size) != 0)
        goto fail;
    for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        if (fixed[i].only_default && has_prop(cfg, pl, fixed[i].name))
            continue;
        if (strcmp(fixed[i].name, "isolation.level") == 0 &&
            pl->unsafe_read_uncommitted && has_prop(cfg, pl, "isolation.level"))
            continue;
        if (rd_kafka_conf_set(conf, fixed[i].name, fixed[i].value, kerr,
                              sizeof(kerr)) != RD_KAFKA_CONF_OK) {
            snprintf(errbuf, errbuf_size, "kafka property '%s': %s",
                     fixed[i].name, kerr);
            goto fail;
        }
    }
    if (rd_kafka_conf_set(conf, "group.id", pl->group, kerr, sizeof(kerr)) !=
            RD_KAFKA_CONF_OK ||
        (!has_prop(cfg, pl, "client.id") &&
         rd_kafka_conf_set(conf, "client.id", client_id, kerr, sizeof(kerr)) !=
             RD_KAFKA_CONF_OK)) {
        snprintf(errbuf, errbuf_size, "kafka: %s", kerr);
        goto fail;
    }
    rd_kafka_conf_set_log_cb(conf, log_cb);
    return conf;

fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* Static membership for a supervised worker: a restarted member with the
 * same group.instance.id gets its partitions back at once instead of
 * waiting for the dead one's session to expire. The slot's id, or the
 * configured one suffixed with the slot (so that the workers of one
 * supervisor never fence each other); a configured id is kept as it is
 * for `exactly worker`. Records the id in w->instance_id. */
static int set_instance_id(worker *w, rd_kafka_conf_t *conf, char *errbuf,
                           size_t errbuf_size)
{
    char configured[200], kerr[512];
    size_t sz = sizeof(configured);

    w->instance_id[0] = '\0';
    if (rd_kafka_conf_get(conf, "group.instance.id", configured, &sz) !=
            RD_KAFKA_CONF_OK)
        configured[0] = '\0';
    if (w->slot_instance) {
        if (configured[0])
            snprintf(w->instance_id, sizeof(w->instance_id), "%s-%s",
                     configured, w->slot_instance);
        else
            snprintf(w->instance_id, sizeof(w->instance_id), "%s",
                     w->slot_instance);
        if (rd_kafka_conf_set(conf, "group.instance.id", w->instance_id, kerr,
                              sizeof(kerr)) != RD_KAFKA_CONF_OK) {
            snprintf(errbuf, errbuf_size, "kafka property 'group.instance.id': %s",
                     kerr);
            return -1;
        }
    } else {
        snprintf(w->instance_id, sizeof(w->instance_id), "%s", configured);
    }
    return 0;
}

exactly_err source_create(worker *w, char *errbuf, size_t errbuf_size)
{
    rd_kafka_conf_t *conf;
    char kerr[512];
    char client_id[256];

    snprintf(client_id, sizeof(client_id), "exactly-%s-%s", w->p->name,
             w->owner);
    conf = exactly_kafka_conf(w->cfg, w->p, w->auto_reset, client_id, errbuf,
                              errbuf_size);
    if (!conf)
        return EXACTLY_ECONFIG;
    {
        char v[32];
        size_t sz = sizeof(v);
        w->max_poll_ms = rd_kafka_conf_get(conf, "max.poll.interval.ms", v,
                                           &sz) == RD_KAFKA_CONF_OK
                             ? atoi(v)
                             : 300000;
    }
    if (set_instance_id(w, conf, errbuf, errbuf_size) != 0) {
        rd_kafka_conf_destroy(conf);
        return EXACTLY_ECONFIG;
    }
    rd_kafka_conf_set_opaque(conf, w);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);

    w->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, kerr, sizeof(kerr));
    if (!w->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errbuf, errbuf_size, "cannot create Kafka consumer: %s", kerr);
        return EXACTLY_ECONFIG;
    }
    rd_kafka_poll_set_consumer(w->rk);
    return EXACTLY_OK;
}

exactly_err source_subscribe(worker *w, char *errbuf, size_t errbuf_size)
{
    rd_kafka_topic_partition_list_t *topics;
    size_t i;

    topics = rd_kafka_topic_partition_list_new((int)w->p->n_topics);
    for (i = 0; i < w->p->n_topics; i++)
        rd_kafka_topic_partition_list_add(topics, w->p->topics[i],
                                          RD_KAFKA_PARTITION_UA);
    if (rd_kafka_subscribe(w->rk, topics) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_topic_partition_list_destroy(topics);
        snprintf(errbuf, errbuf_size, "cannot subscribe to the topics");
        return EXACTLY_EKAFKA;
    }
    rd_kafka_topic_partition_list_destroy(topics);
    return EXACTLY_OK;
}

static rd_kafka_topic_partition_list_t *one(part *pt, int64_t offset)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, pt->topic, pt->partition)->offset =
        offset;
    return l;
}

void source_commit(worker *w, part *pt)
{
    rd_kafka_topic_partition_list_t *l;

    if (w->reprocess_run)
        return; /* a reprocess is no member of the group: it commits nothing */
    l = one(pt, pt->next_offset);

    /* Monitoring only: the database holds the truth, so a lost or failed
     * commit here costs nothing but a stale lag figure. */
    (void)rd_kafka_commit(w->rk, l, 1);
    rd_kafka_topic_partition_list_destroy(l);
}

void source_seek(worker *w, part *pt, int64_t offset)
{
    rd_kafka_topic_partition_list_t *l = one(pt, offset);
    rd_kafka_error_t *e = rd_kafka_seek_partitions(w->rk, l, 5000);

    if (e) {
        exactly_log(EXACTLY_LOG_WARN, "kafka", "seek failed",
                    LOG_PART(pt), LOG_INT("offset", offset),
                    LOG_STR("error", rd_kafka_error_string(e)));
        rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

void source_pause(worker *w, part *pt, int pause)
{
    rd_kafka_topic_partition_list_t *l;

    if (pt->paused == pause)
        return;
    l = one(pt, RD_KAFKA_OFFSET_INVALID);
    if (pause)
        (void)rd_kafka_pause_partitions(w->rk, l);
    else
        (void)rd_kafka_resume_partitions(w->rk, l);
    pt->paused = pause;
    rd_kafka_topic_partition_list_destroy(l);
}

int64_t source_position(worker *w, part *pt)
{
    rd_kafka_topic_partition_list_t *l = one(pt, RD_KAFKA_OFFSET_INVALID);
    int64_t pos = -1;

    if (rd_kafka_position(w->rk, l) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        l->elems[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
        pos = l->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(l);
    return pos;
}
