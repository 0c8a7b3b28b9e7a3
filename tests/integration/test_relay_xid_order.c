/*
 * The outbox relay publishes rows in the numeric order of their
 * transactions' ids (relay.h, invariant 1; README "Order"), also where
 * those ids gain a digit (9 -> 10, 99 -> 100, 9999 -> 10000), which every
 * cluster passes through: an order by the ids' text would put "10" before
 * "9", a transaction's rows behind younger ones (of their key too), and
 * hold them back while younger rows keep filling the batches.
 *
 * The rows name their transactions explicitly (created 9, 10, 99, 100:
 * transactions long ended in any cluster, so below every snapshot's
 * horizon), which stands for transactions that crossed such a boundary
 * without waiting for the cluster to get there. One partition, batches of
 * 4 (two cycles): the topic's order is the publish order, and it must be
 * the rows' (created, id) order.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay_kit.h"
#include "testkit.h"

#define TOPIC "outbox-xid-order"

/* In (created, id) order: the order the topic must show. */
static const struct {
    const char *created;
    const char *key;
} rows[] = {
    {"9", "t9-a"},   {"9", "t9-b"},  {"10", "t10-a"},
    {"10", "t10-b"}, {"99", "t99"},  {"100", "t100"},
};
#define N_ROWS (sizeof(rows) / sizeof(rows[0]))

int main(void)
{
    relay_fixture f;
    relay_rec *recs;
    size_t n, i;
    int status;

    relay_fixture_start(&f, "relay_xid_order", NULL);
    tk_mock_create_topic(f.mock, TOPIC, 1);
    relay_fixture_config(&f, &(relay_config){.name = "xid_order",
                                             .topic = TOPIC,
                                             .batch_size = 4});
    for (i = 0; i < N_ROWS; i++)
        tk_sql(f.db,
               "INSERT INTO exactly.outbox (key, created) VALUES "
               "(convert_to('%s', 'UTF8'), '%s'::xid8)",
               rows[i].key, rows[i].created);

    status = relay_run_to_idle(f.config, 300, 30000, f.log);
    TK_CHECK(status == 0, "relay exit status %d", status);
    TK_CHECK_EQ_INT64(tk_sql_int64(f.db, "SELECT count(*) FROM exactly.outbox "
                                         "WHERE published_at IS NULL"),
                      0, "rows pending");

    recs = relay_read_topic(f.bootstraps, TOPIC, 1, &n);
    TK_CHECK_EQ_INT64((int64_t)n, (int64_t)N_ROWS, "records on the topic");
    for (i = 0; i < n; i++) {
        tk_note("offset %zu: %s", i, recs[i].key);
        TK_CHECK_EQ_STR(recs[i].key, rows[i].key,
                        "key at this offset (transaction id order)");
    }
    free(recs);
    relay_fixture_stop(&f);
    return 0;
}
