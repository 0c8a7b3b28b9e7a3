/*
 * part.c - what the worker's other files all do with one partition:
 * publish its position in the metrics, and size and end its next batch
 * (settle.c runs it through the engine). Calls nothing of the worker's own
 * files (loop.c, rebalance.c, settle.c, db.c, worker.c): they stand above
 * it.
 */
#include "worker_internal.h"

void worker_metrics_watermark(worker *w, const part *pt,
                              metrics_partition *mp)
{
    int64_t lo, hi;

    /* The cached figure of the last fetch: no request to the broker. */
    if (w->rk && rd_kafka_get_watermark_offsets(w->rk, pt->topic, pt->partition,
                                                &lo, &hi) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        hi >= 0)
        metrics_set(&mp->high_watermark, hi);
}

void worker_metrics_position(worker *w, const part *pt, int assigned)
{
    metrics_partition *mp;

    if (!w->m || !(mp = metrics_part(w->m, pt->topic, pt->partition)))
        return;
    /* The epoch first: an owner is judged by it once assigned shows. */
    metrics_set(&mp->epoch, pt->epoch);
    __atomic_store_n(&mp->assigned, assigned, __ATOMIC_RELAXED);
    metrics_set(&mp->stored_offset, pt->next_offset);
    worker_metrics_watermark(w, pt, mp);
}

int64_t worker_batch_end(worker *w, part *pt, size_t n)
{
    int64_t end = pt->buf[n - 1]->offset + 1;

    /* Control records after the last message occupy offsets too: store
     * the consumer's position so the partition shows no phantom lag. */
    if (n == pt->n_buf) {
        int64_t pos = engine_part_position(&w->eng, pt);
        if (pos > end)
            end = pos;
    }
    return end;
}

size_t worker_batch_size(worker *w, part *pt)
{
    size_t max = (size_t)w->p->batch.max_messages;
    return pt->n_buf < max ? pt->n_buf : max;
}

int64_t worker_expected_next(const part *pt)
{
    return pt->n_buf ? pt->buf[pt->n_buf - 1]->offset + 1 : pt->next_offset;
}
