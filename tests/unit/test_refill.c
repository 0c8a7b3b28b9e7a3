/*
 * When the worker wakes its consumer's fetchers (lib/kafka/refill.h):
 * once the queue was within a tenth of a limit, where librdkafka 2.0
 * stops fetching (seen after a take, or at its start: what it left plus
 * what it took), and then below half of both limits; once per filling;
 * never for a queue that did not fill. The limits come from the
 * consumer's configuration.
 */
#include <string.h>

#include "refill.h"
#include "testkit.h"

static kafka_refill limits(double msgs, double bytes, double mean_len)
{
    kafka_refill r;

    memset(&r, 0, sizeof r);
    r.max_msgs = msgs;
    r.max_bytes = bytes;
    r.mean_len = mean_len;
    return r;
}

int main(void)
{
    kafka_refill r = limits(1000, 1e9, 10);
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    char err[256];
    int i;

    /* Never full: no wake, however often it is asked. */
    for (i = 0; i < 100; i++)
        TK_CHECK(!kafka_refill_due(&r, (size_t)(i * 8), 0),
                 "woken at %d queued, the queue never full", i * 8);

    /* Full by count (900 of 1000), then emptying: one wake, below half. */
    TK_CHECK(!kafka_refill_due(&r, 900, 0), "woken while full");
    TK_CHECK(!kafka_refill_due(&r, 700, 0), "woken at 700 of 1000");
    TK_CHECK(!kafka_refill_due(&r, 500, 0), "woken at exactly half");
    TK_CHECK(kafka_refill_due(&r, 499, 0), "not woken at 499 after a full queue");
    TK_CHECK(!kafka_refill_due(&r, 100, 0), "woken twice for one filling");
    TK_CHECK(!kafka_refill_due(&r, 0, 0), "woken twice for one filling");
    /* Filling again: woken again. */
    TK_CHECK(!kafka_refill_due(&r, 1200, 0), "woken while overfull");
    TK_CHECK(kafka_refill_due(&r, 10, 0), "not woken after the second filling");

    /* A take of 200 that left 700 of 1000: the queue was full when it
     * began (large messages move it far at once). */
    r = limits(1000, 1e9, 10);
    TK_CHECK(!kafka_refill_due(&r, 700, 200), "woken while full");
    TK_CHECK(kafka_refill_due(&r, 400, 300),
             "not woken at 400 after a take that began at a full queue");
    r = limits(1000, 1e9, 10);
    TK_CHECK(!kafka_refill_due(&r, 400, 300), "woken, never full");

    /* Full by payload bytes (messages of 1,000 bytes, 1 MB limit): 900
     * messages fill it; the wake waits for both below half. */
    r = limits(100000, 1e6, 1000);
    TK_CHECK(!kafka_refill_due(&r, 950, 0), "woken while full by bytes");
    TK_CHECK(!kafka_refill_due(&r, 600, 0), "woken at 600 kB of 1 MB");
    TK_CHECK(kafka_refill_due(&r, 400, 0), "not woken at 400 kB of 1 MB");

    /* The mean payload length follows what is taken. */
    r = limits(100000, 1e6, 0);
    for (i = 0; i < 200; i++)
        kafka_refill_sample(&r, 2000);
    TK_CHECK(r.mean_len > 1900 && r.mean_len <= 2000,
             "mean payload %.0f after 200 messages of 2000 bytes", r.mean_len);

    /* The limits are the consumer's. */
    conf = rd_kafka_conf_new();
    TK_CHECK(rd_kafka_conf_set(conf, "queued.min.messages", "1234", err,
                               sizeof err) == RD_KAFKA_CONF_OK &&
                 rd_kafka_conf_set(conf, "queued.max.messages.kbytes", "2048",
                                   err, sizeof err) == RD_KAFKA_CONF_OK &&
                 rd_kafka_conf_set(conf, "group.id", "refill", err,
                                   sizeof err) == RD_KAFKA_CONF_OK,
             "conf: %s", err);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    TK_CHECK(rk != NULL, "consumer: %s", err);
    kafka_refill_init(&r, rk);
    TK_CHECK(r.max_msgs == 1234 && r.max_bytes == 2048.0 * 1024,
             "limits read as %.0f messages, %.0f bytes", r.max_msgs,
             r.max_bytes);
    rd_kafka_destroy(rk);
    return 0;
}
