/*
 * What `exactly reprocess` relies on after a seek back (lib/ops/
 * reprocess_loop.c: the range's end is taken as read when the consumer's
 * position is past it, or a message past it arrives), with librdkafka's
 * mock cluster in process:
 *
 *   a consumer reads a partition of N_MSGS messages past offset TO (what
 *   it fetched ahead is in its queue), is sought back to BACK
 *   (exactly_kafka_seek), and its broker answers slowly (RTT_MS), so no
 *   message comes within the loop's 200 ms poll. Then
 *     - exactly_kafka_position does not report the position from before
 *       the seek (it reports none, or one at most BACK), while nothing
 *       came and after each empty poll;
 *     - no message fetched before the seek is delivered after it: the
 *       first message is BACK, then BACK + 1, ... in order.
 * Either failing would let the run take the range's end as read with an
 * empty buffer and close the span over offsets it never applied.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "source.h"
#include "testkit.h"

#define TOPIC "seek-position"
#define N_MSGS 200
#define TO 60
#define BACK 10
#define RTT_MS 1500
#define POLLS 4

static rd_kafka_t *consumer(const char *bootstraps)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    static const char *const props[] = {
        "enable.auto.commit", "false", "enable.auto.offset.store", "false",
        "auto.offset.reset", "error", "enable.partition.eof", "false", "group.id", "seek-position",
        NULL};
    size_t i;

    TK_CHECK(rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, err,
                               sizeof err) == RD_KAFKA_CONF_OK,
             "bootstrap.servers: %s", err);
    for (i = 0; props[i]; i += 2)
        TK_CHECK(rd_kafka_conf_set(conf, props[i], props[i + 1], err,
                                   sizeof err) == RD_KAFKA_CONF_OK,
                 "%s: %s", props[i], err);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    TK_CHECK(rk != NULL, "rd_kafka_new: %s", err);
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

int main(void)
{
    tk_mock *mock = tk_mock_start(1);
    rd_kafka_topic_partition_list_t *l;
    rd_kafka_message_t *m;
    rd_kafka_t *rk;
    int64_t pos, last = -1, deadline, want, seen_empty = -2;
    int i, empty = 0;

    tk_mock_create_topic(mock, TOPIC, 1);
    tk_produce_ids(tk_mock_bootstraps(mock), TOPIC, N_MSGS, 10, 1, 1, NULL);
    rk = consumer(tk_mock_bootstraps(mock));
    l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, TOPIC, 0)->offset = 0;
    TK_CHECK(rd_kafka_assign(rk, l) == RD_KAFKA_RESP_ERR_NO_ERROR, "assign");
    rd_kafka_topic_partition_list_destroy(l);

    /* Read past TO, as a run that read its range's end. */
    deadline = tk_now_ms() + 30000;
    while (last <= TO) {
        TK_CHECK(tk_now_ms() < deadline, "offset %d not read in 30 s (at %"
                 PRId64 ")", TO + 1, last);
        m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        TK_CHECK(m->err == 0, "consume error: %s", rd_kafka_message_errstr(m));
        last = m->offset;
        rd_kafka_message_destroy(m);
    }
    pos = exactly_kafka_position(rk, TOPIC, 0);
    TK_CHECK(pos > TO, "position %" PRId64 " after reading offset %" PRId64,
             pos, last);

    /* The broker slows down; the run is sought back. */
    TK_CHECK(rd_kafka_mock_broker_set_rtt(tk_mock_cluster(mock), 1, RTT_MS)
                 == RD_KAFKA_RESP_ERR_NO_ERROR, "set rtt");
    TK_CHECK(exactly_kafka_seek(rk, TOPIC, 0, BACK) == EXACTLY_OK, "seek");
    pos = exactly_kafka_position(rk, TOPIC, 0);
    TK_CHECK(pos <= BACK, "right after the seek to %d the position is %"
             PRId64 ", from before the seek", BACK, pos);
    for (i = 0, want = BACK; i < POLLS || want <= BACK + 5; i++) {
        TK_CHECK(i < 100, "no message in %d polls after the seek", i);
        m = rd_kafka_consumer_poll(rk, 200);
        pos = exactly_kafka_position(rk, TOPIC, 0);
        if (!m) {
            TK_CHECK(want > BACK || pos <= BACK,
                     "after an empty poll, nothing read since the seek to "
                     "%d, the position is %" PRId64, BACK, pos);
            if (want == BACK) {
                empty++;
                seen_empty = pos;
            }
            continue;
        }
        TK_CHECK(m->err == 0, "consume error: %s", rd_kafka_message_errstr(m));
        TK_CHECK(m->offset == want, "after the seek to %d the message "
                 "delivered is at offset %" PRId64 ", expected %" PRId64,
                 BACK, m->offset, want);
        TK_CHECK(pos == want + 1, "position %" PRId64 " after offset %"
                 PRId64, pos, m->offset);
        want++;
        rd_kafka_message_destroy(m);
    }
    /* The case in question: polls that brought nothing after the seek. */
    TK_CHECK(empty > 0, "offset %d came in the first poll after the seek "
             "despite the broker's %d ms: nothing was tested", BACK, RTT_MS);
    tk_note("sought back from %" PRId64 " to %d: %d empty poll(s), position "
            "%" PRId64 " after them; then offsets %d..%" PRId64 " in order",
            last, BACK, empty, seen_empty, BACK, want - 1);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    tk_mock_stop(mock);
    return 0;
}
