/*
 * source.c - a pipeline's Kafka consumer: its configuration (the
 * properties exactly must own are checked, not silently overridden), the
 * log callback, and the calls on one partition the engine needs (commit,
 * seek, pause, position). Creating the worker's consumer and its other
 * callbacks belong to the worker (worker/consumer.c).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "fault.h"
#include "log.h"
#include "props.h"
#include "source.h"

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

/* Sets props on conf, after the checks of the properties exactly owns;
 * with shared set (the top-level section, shared with the relays'
 * producers), not those librdkafka marks as producer-only. */
static int set_props(const exactly_config *cfg, const cfg_pipeline *pl,
                     char *auto_reset, rd_kafka_conf_t *conf,
                     const cfg_prop *props, size_t n, int shared,
                     char *errbuf, size_t errbuf_size)
{
    char kerr[512];
    size_t i;

    for (i = 0; i < n; i++) {
        int handled;
        if (own_property(cfg, pl, auto_reset, &props[i], errbuf, errbuf_size,
                         &handled) != 0)
            return -1;
        if (handled || (shared && exactly_kafka_prop_only(
                                      props[i].name,
                                      EXACTLY_KAFKA_PRODUCER_PROP)))
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
        /* The local queue's bounds: the memory a backlog may take. A
         * worker wakes the fetchers a full queue stopped once it half
         * empties (refill.h), so speed does not need more. */
        {"queued.min.messages", "100000", 1},
        {"queued.max.messages.kbytes", "32768", 1},
    };

    snprintf(auto_reset, 16, "earliest");
    if (!conf) {
        snprintf(errbuf, errbuf_size, "out of memory");
        return NULL;
    }
    if (set_props(cfg, pl, auto_reset, conf, cfg->kafka, cfg->n_kafka, 1,
                  errbuf, errbuf_size) != 0 ||
        set_props(cfg, pl, auto_reset, conf, pl->kafka, pl->n_kafka, 0,
                  errbuf, errbuf_size) != 0)
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

static rd_kafka_topic_partition_list_t *one(const char *topic,
                                            int32_t partition, int64_t offset)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
    return l;
}

void exactly_kafka_commit(rd_kafka_t *rk, const char *topic,
                          int32_t partition, int64_t offset)
{
    rd_kafka_topic_partition_list_t *l = one(topic, partition, offset);

    /* Monitoring only: the database holds the truth, so a lost or failed
     * commit here costs nothing but a stale lag figure. */
    (void)rd_kafka_commit(rk, l, 1);
    rd_kafka_topic_partition_list_destroy(l);
}

exactly_err exactly_kafka_seek(rd_kafka_t *rk, const char *topic,
                               int32_t partition, int64_t offset)
{
    rd_kafka_topic_partition_list_t *l = one(topic, partition, offset);
    rd_kafka_error_t *e =
        EXACTLY_FAULT("kafka_seek")
            ? rd_kafka_error_new(RD_KAFKA_RESP_ERR__STATE, "fault: not made")
            : rd_kafka_seek_partitions(rk, l, 5000);
    exactly_err rc = EXACTLY_OK;

    /* The call's error, or the partition's own in the list. */
    if (e || l->elems[0].err) {
        exactly_log(EXACTLY_LOG_WARN, "kafka", "seek failed",
                    LOG_STR("topic", topic), LOG_INT("partition", partition),
                    LOG_INT("offset", offset),
                    LOG_STR("error", e ? rd_kafka_error_string(e)
                                       : rd_kafka_err2str(l->elems[0].err)));
        rc = EXACTLY_EKAFKA;
    }
    if (e)
        rd_kafka_error_destroy(e);
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

void exactly_kafka_pause(rd_kafka_t *rk, const char *topic, int32_t partition,
                         int pause)
{
    rd_kafka_topic_partition_list_t *l =
        one(topic, partition, RD_KAFKA_OFFSET_INVALID);

    if (pause)
        (void)rd_kafka_pause_partitions(rk, l);
    else
        (void)rd_kafka_resume_partitions(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
}

int64_t exactly_kafka_position(rd_kafka_t *rk, const char *topic,
                               int32_t partition)
{
    rd_kafka_topic_partition_list_t *l =
        one(topic, partition, RD_KAFKA_OFFSET_INVALID);
    int64_t pos = -1;

    if (rd_kafka_position(rk, l) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        l->elems[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
        pos = l->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(l);
    return pos;
}
