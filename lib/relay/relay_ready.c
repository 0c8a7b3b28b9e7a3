/*
 * relay_ready.c - whether the relay is ready (/readyz): connected to
 * PostgreSQL (holding its outbox's lock or waiting for it as a standby)
 * and able to reach Kafka, whose brokers librdkafka reports all down
 * through the producer's error callback (kafka/reach.h).
 */
#include "log.h"
#include "clock.h"
#include "relay_internal.h"

void relay_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    relay *rl = opaque;

    (void)rk;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        kafka_reach_down(&rl->kafka, exactly_now_ms());
    /* What librdkafka logs itself when no error callback is set; a fatal
     * error is the cycle's to act on (rd_kafka_fatal_error). */
    exactly_log(EXACTLY_LOG_WARN, "kafka", "producer error",
                LOG_STR("code", rd_kafka_err2name((rd_kafka_resp_err_t)err)),
                LOG_STR("text", reason));
}

void relay_publish_ready(relay *rl)
{
    int ready = rl->conn && kafka_reach_ok(&rl->kafka, exactly_now_ms());

    if (rl->m)
        __atomic_store_n(&rl->m->ready, ready, __ATOMIC_RELAXED);
}

void relay_watch_kafka(relay *rl)
{
    long long now = exactly_now_ms(), after;

    if (rl->in_flight > 0 || rl->pos_in_flight) {
        relay_publish_ready(rl);
        return;
    }
    /* Nothing in flight: this serves errors only. */
    rd_kafka_poll(rl->rk, 0);
    if (now - rl->kafka_probed_ms >= 1000) {
        rl->kafka_probed_ms = now;
        if (kafka_reach_probe(&rl->kafka, rl->rk) &&
            (after = kafka_reach_up(&rl->kafka, now)) >= 0)
            exactly_log(EXACTLY_LOG_INFO, "relay",
                        "kafka brokers reachable again",
                        LOG_STR("relay", rl->r->name),
                        LOG_STR("seen", "broker"), LOG_INT("after_ms", after));
    }
    relay_publish_ready(rl);
}
