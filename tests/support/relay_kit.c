/* relay_kit.c - see relay_kit.h. */
#include "relay_kit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"

relay_rec *relay_read_topic(const char *bootstraps, const char *topic,
                            int partitions, size_t *n)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *parts;
    rd_kafka_t *rk;
    char err[512];
    int64_t *hw = calloc((size_t)partitions, sizeof(int64_t));
    int64_t total = 0, seen = 0, deadline;
    relay_rec *out;
    int p;

    TK_CHECK(hw != NULL, "out of memory");
    ledger_high_watermarks(bootstraps, topic, partitions, hw);
    for (p = 0; p < partitions; p++)
        total += hw[p];
    out = calloc((size_t)total + 1, sizeof(relay_rec));
    TK_CHECK(out != NULL, "out of memory");
    TK_CHECK(rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, err,
                               sizeof(err)) == RD_KAFKA_CONF_OK &&
                 rd_kafka_conf_set(conf, "group.id", "relay-kit-reader", err,
                                   sizeof(err)) == RD_KAFKA_CONF_OK &&
                 rd_kafka_conf_set(conf, "enable.auto.commit", "false", err,
                                   sizeof(err)) == RD_KAFKA_CONF_OK,
             "reader config: %s", err);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    TK_CHECK(rk != NULL, "reader: %s", err);
    rd_kafka_poll_set_consumer(rk);
    parts = rd_kafka_topic_partition_list_new(partitions);
    for (p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    TK_CHECK(rd_kafka_assign(rk, parts) == RD_KAFKA_RESP_ERR_NO_ERROR,
             "assign failed");
    rd_kafka_topic_partition_list_destroy(parts);
    deadline = tk_now_ms() + 60000;
    while (seen < total && tk_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        rd_kafka_headers_t *h = NULL;
        relay_rec *r;
        const void *v;
        size_t vlen;
        size_t i;

        if (!m)
            continue;
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        r = &out[seen++];
        r->partition = m->partition;
        r->offset = m->offset;
        if (m->key)
            snprintf(r->key, sizeof(r->key), "%.*s",
                     (int)(m->key_len < 63 ? m->key_len : 63),
                     (const char *)m->key);
        if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            for (i = 0; rd_kafka_header_get(h, i, "event-id", &v, &vlen) ==
                        RD_KAFKA_RESP_ERR_NO_ERROR;
                 i++) {
                if (i == 0 && v)
                    snprintf(r->event_id, sizeof(r->event_id), "%.*s",
                             (int)(vlen < 63 ? vlen : 63), (const char *)v);
                r->n_event_ids++;
            }
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    free(hw);
    TK_CHECK(seen == total, "read %lld of %lld records of %s", (long long)seen,
             (long long)total, topic);
    *n = (size_t)total;
    return out;
}

pid_t relay_start(const char *config, const char *const *extra,
                  const char *log)
{
    char *argv[16];
    int n = 0;

    argv[n++] = (char *)ledger_exactly_bin();
    argv[n++] = "relay";
    argv[n++] = "-c";
    argv[n++] = (char *)config;
    while (extra && *extra && n < 15)
        argv[n++] = (char *)*extra++;
    argv[n] = NULL;
    return tk_spawn(argv, log);
}

int relay_run_to_idle(const char *config, int idle_ms, int timeout_ms,
                      const char *log)
{
    char idle[32];
    const char *extra[] = {"--exit-idle", idle, NULL};
    pid_t pid;
    int st;

    snprintf(idle, sizeof(idle), "%d", idle_ms);
    pid = relay_start(config, extra, log);
    st = tk_wait(pid, timeout_ms);
    if (st == -1) {
        tk_terminate(pid, 2000);
        ledger_log_tail(log, 40);
        tk_fail("relay still running after %d ms; log %s", timeout_ms, log);
    }
    return st;
}
