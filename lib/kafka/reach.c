/*
 * reach.c - see reach.h.
 */
#include "reach.h"

void kafka_reach_down(kafka_reach *k, long long now)
{
    if (!k->down_since_ms)
        k->down_since_ms = now > 0 ? now : 1;
}

long long kafka_reach_up(kafka_reach *k, long long now)
{
    long long lasted;

    if (!k->down_since_ms)
        return -1;
    lasted = now - k->down_since_ms;
    k->down_since_ms = 0;
    return lasted;
}

int kafka_reach_probe(const kafka_reach *k, rd_kafka_t *rk)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err;

    if (!k->down_since_ms)
        return 0;
    err = rd_kafka_metadata(rk, 0, NULL, &md, 0);
    if (md)
        rd_kafka_metadata_destroy(md);
    return err != RD_KAFKA_RESP_ERR__TRANSPORT;
}

int kafka_reach_ok(const kafka_reach *k, long long now)
{
    return !(k->down_since_ms &&
             now - k->down_since_ms >= KAFKA_DOWN_NOT_READY_MS);
}
