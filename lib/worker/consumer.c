/*
 * consumer.c - the worker's Kafka consumer: created from the pipeline's
 * configuration (kafka/source.c), its error and rebalance callbacks
 * (handed on to its owner's table, consumer.h), static membership, and
 * the subscription. It knows nothing of the worker that owns it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumer.h"

#include "log.h"
#include "source.h"

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    worker_consumer *c = opaque;

    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char fatal[512];
        rd_kafka_resp_err_t orig =
            rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        exactly_log(EXACTLY_LOG_ERROR, "kafka", "fatal consumer error",
                    LOG_STR("code", rd_kafka_err2name(orig)),
                    LOG_STR("text", fatal));
        c->cbs.fatal(c->cbs.arg);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        c->cbs.all_brokers_down(c->cbs.arg);
    /* An outage repeats errors (of changing codes) on every retry. */
    if (!c->cbs.error_due(c->cbs.arg))
        return;
    exactly_log(EXACTLY_LOG_WARN, "kafka", "consumer error",
                LOG_STR("code", rd_kafka_err2name((rd_kafka_resp_err_t)err)),
                LOG_STR("text", reason));
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    worker_consumer *c = opaque;
    const char *protocol = rd_kafka_rebalance_protocol(rk);

    /* Known once the group is joined ("NONE" before): here, not earlier. */
    c->cbs.rebalance(c->cbs.arg, err, parts, rd_kafka_assignment_lost(rk),
                     protocol && strcmp(protocol, "COOPERATIVE") == 0);
}

/* Static membership for a supervised worker: a restarted member with the
 * same group.instance.id gets its partitions back at once instead of
 * waiting for the dead one's session to expire. The slot's id, or the
 * configured one suffixed with the slot (so that the workers of one
 * supervisor never fence each other); a configured id is kept as it is
 * for `exactly worker`. Records the id in w->instance_id. */
static int set_instance_id(worker_consumer *w, rd_kafka_conf_t *conf,
                           char *errbuf, size_t errbuf_size)
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

exactly_err worker_consumer_create(worker_consumer *w, char *errbuf,
                                   size_t errbuf_size)
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

exactly_err worker_consumer_subscribe(worker_consumer *w, char *errbuf,
                                      size_t errbuf_size)
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
