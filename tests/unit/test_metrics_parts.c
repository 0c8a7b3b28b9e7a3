/*
 * A worker's metrics slot has an entry for every partition it owns: more
 * than a few hundred at once, and any number over its life as
 * rebalances move partitions in and out. Before, a slot kept the first
 * 128 partitions it ever saw and had no entry for any other: a worker
 * owning more (or one whose rebalances had shown it 128) published no
 * offset, lag, state or halted flag for them, and no alert could fire.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "testkit.h"

#define OWNED 600

int main(void)
{
    metrics_slot *s = metrics_map(1);
    metrics_partition *p;
    int i, round;

    TK_CHECK(s != NULL, "metrics_map failed");
    /* One worker owning OWNED partitions at once. */
    for (i = 0; i < OWNED; i++) {
        p = metrics_part(s, "orders", i);
        TK_CHECK(p != NULL, "partition %d of %d owned has no metrics entry", i,
                 OWNED);
        p->assigned = 1;
        p->consumed = (uint64_t)i;
    }
    for (i = 0; i < OWNED; i++) {
        p = metrics_part(s, "orders", i);
        TK_CHECK(p != NULL && p->partition == i && p->consumed == (uint64_t)i,
                 "partition %d: not its own entry again", i);
    }
    /* Rebalances: each round the worker gives its partitions up and gets
     * OWNED others; every one of them has an entry, which starts afresh. */
    for (round = 1; round <= 4; round++) {
        metrics_slot_disown(s);
        for (i = 0; i < OWNED; i++) {
            char topic[32];
            snprintf(topic, sizeof(topic), "round%d", round);
            p = metrics_part(s, topic, i);
            TK_CHECK(p != NULL, "round %d: partition %d has no entry after "
                                "the slot's earlier partitions were given up",
                     round, i);
            TK_CHECK(p->consumed == 0 && p->stored_offset == -1 &&
                         p->high_watermark == -1 && p->epoch == 0 &&
                         p->halted == 0 && p->state == 0,
                     "round %d: partition %d's entry keeps another "
                     "partition's figures",
                     round, i);
            p->assigned = 1;
        }
    }
    /* A slot whose every entry is owned has none for one more: the caller
     * then reports that partition as without metrics. */
    for (i = 0;; i++) {
        p = metrics_part(s, "full", i);
        if (!p)
            break;
        p->assigned = 1;
        TK_CHECK(i < METRICS_MAX_PARTITIONS, "more entries than the slot has");
    }
    tk_note("%d partitions owned at once, 4 rebalances, then full after %d "
            "more",
            OWNED, i);
    metrics_unmap(s, 1);
    return 0;
}
