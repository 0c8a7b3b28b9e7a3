/*
 * producer.c - the relay's producer configuration and the log callback
 * that routes librdkafka's lines into the process's log.
 */
#include "producer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "props.h"

static void producer_log_cb(const rd_kafka_t *rk, int level, const char *fac,
                            const char *buf)
{
    exactly_log_level l = strcmp(fac, "FAIL") == 0 ? EXACTLY_LOG_WARN
                          : level <= 3   ? EXACTLY_LOG_ERROR
                          : level <= 4 ? EXACTLY_LOG_WARN
                          : level <= 6 ? EXACTLY_LOG_INFO
                                       : EXACTLY_LOG_DEBUG;
    (void)rk;
    exactly_log(l, "kafka", "librdkafka", LOG_STR("facility", fac),
                LOG_STR("text", buf));
}

static int written(const exactly_config *cfg, const cfg_relay *r,
                   const char *name)
{
    size_t i;

    for (i = 0; i < r->n_kafka; i++)
        if (strcmp(r->kafka[i].name, name) == 0)
            return 1;
    for (i = 0; i < cfg->n_kafka; i++)
        if (strcmp(cfg->kafka[i].name, name) == 0)
            return 1;
    return 0;
}

/* Sets props on conf; with producer set, not those librdkafka marks as
 * consumer-only. */
static int set_props(rd_kafka_conf_t *conf, const exactly_config *cfg,
                     const cfg_prop *props, size_t n, int producer,
                     char *errbuf, size_t errbuf_size)
{
    char kerr[512];
    size_t i;

    for (i = 0; i < n; i++)
        if (!(producer && exactly_kafka_prop_only(props[i].name, EXACTLY_KAFKA_CONSUMER_PROP)) &&
            rd_kafka_conf_set(conf, props[i].name, props[i].value, kerr,
                              sizeof(kerr)) != RD_KAFKA_CONF_OK) {
            snprintf(errbuf, errbuf_size, "%s:%d:%d: kafka property '%s': %s",
                     cfg->path, props[i].pos.line, props[i].pos.column,
                     props[i].name, kerr);
            return -1;
        }
    return 0;
}

rd_kafka_conf_t *exactly_kafka_producer_conf(const exactly_config *cfg,
                                             const cfg_relay *r,
                                             const char *client_id,
                                             char *errbuf, size_t errbuf_size)
{
    static const struct {
        const char *name, *value;
    } defaults[] = {
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"partitioner", "murmur2_random"},
    };
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char kerr[512];
    size_t i;

    if (!conf) {
        snprintf(errbuf, errbuf_size, "out of memory");
        return NULL;
    }
    /* The top-level section is shared with the pipelines' consumers: its
     * consumer-only properties are theirs (librdkafka would accept them
     * here and warn at every start that this producer ignores them). The
     * relay's own section is passed whole. */
    if (set_props(conf, cfg, cfg->kafka, cfg->n_kafka, 1, errbuf,
                  errbuf_size) ||
        set_props(conf, cfg, r->kafka, r->n_kafka, 0, errbuf, errbuf_size))
        goto fail;
    for (i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
        if (written(cfg, r, defaults[i].name))
            continue;
        if (rd_kafka_conf_set(conf, defaults[i].name, defaults[i].value, kerr,
                              sizeof(kerr)) != RD_KAFKA_CONF_OK) {
            snprintf(errbuf, errbuf_size, "kafka property '%s': %s",
                     defaults[i].name, kerr);
            goto fail;
        }
    }
    if (r->mode == CFG_RELAY_TRANSACTIONAL &&
        !written(cfg, r, "transactional.id")) {
        char tid[160];

        snprintf(tid, sizeof(tid), "exactly-relay-%s", r->name);
        if (rd_kafka_conf_set(conf, "transactional.id", tid, kerr,
                              sizeof(kerr)) != RD_KAFKA_CONF_OK) {
            snprintf(errbuf, errbuf_size, "kafka property "
                     "'transactional.id': %s", kerr);
            goto fail;
        }
    }
    if (client_id && rd_kafka_conf_set(conf, "client.id", client_id, kerr,
                                       sizeof(kerr)) != RD_KAFKA_CONF_OK) {
        snprintf(errbuf, errbuf_size, "kafka: %s", kerr);
        goto fail;
    }
    rd_kafka_conf_set_log_cb(conf, producer_log_cb);
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* The reader is built from the producer's properties too (servers,
 * security): librdkafka's warnings that a producer property means nothing
 * to a consumer are noise here. */
static void reader_log_cb(const rd_kafka_t *rk, int level, const char *fac,
                          const char *buf)
{
    if (strcmp(fac, "CONFWARN") == 0)
        return;
    producer_log_cb(rk, level, fac, buf);
}

rd_kafka_conf_t *exactly_kafka_position_reader_conf(const exactly_config *cfg,
                                                    const cfg_relay *r,
                                                    char *errbuf,
                                                    size_t errbuf_size)
{
    static const struct {
        const char *name, *value;
    } fixed[] = {
        {"isolation.level", "read_committed"},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"enable.partition.eof", "true"},
    };
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char kerr[512], id[160];
    size_t i;

    if (!conf) {
        snprintf(errbuf, errbuf_size, "out of memory");
        return NULL;
    }
    if (set_props(conf, cfg, cfg->kafka, cfg->n_kafka, 0, errbuf,
                  errbuf_size) ||
        set_props(conf, cfg, r->kafka, r->n_kafka, 0, errbuf, errbuf_size))
        goto fail;
    /* A group id only because librdkafka's consumer API wants one; the
     * reader assigns its partition and never joins or commits. */
    snprintf(id, sizeof(id), "exactly-relay-%s-positions", r->name);
    for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (rd_kafka_conf_set(conf, fixed[i].name, fixed[i].value, kerr,
                              sizeof(kerr)) != RD_KAFKA_CONF_OK) {
            snprintf(errbuf, errbuf_size, "kafka property '%s': %s",
                     fixed[i].name, kerr);
            goto fail;
        }
    if (rd_kafka_conf_set(conf, "group.id", id, kerr, sizeof(kerr)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "client.id", id, kerr, sizeof(kerr)) !=
            RD_KAFKA_CONF_OK) {
        snprintf(errbuf, errbuf_size, "kafka: %s", kerr);
        goto fail;
    }
    rd_kafka_conf_set_log_cb(conf, reader_log_cb);
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}
