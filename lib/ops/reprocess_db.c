/*
 * reprocess_db.c - the connection of a run (see reprocess_internal.h):
 * what the engine asks of its owner (engine_ops), opened and checked as
 * the worker's is (engine_connect), after a short backoff when it failed.
 */
#include "reprocess_internal.h"

#include <string.h>

#include "clock.h"
#include "pg_conn.h"

/* Waits before the next connection attempt: a run is short-lived and
 * watched, so the wait stays short. */
#define BACKOFF_STEP_MS 200
#define BACKOFF_MAX_MS 2000

static void backoff(run *r)
{
    long long wait = (long long)BACKOFF_STEP_MS * ++r->reconnect_attempts;

    r->reconnect_at_ms =
        exactly_now_ms() + (wait > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : wait);
}

static void db_lost(void *arg)
{
    run *r = arg;

    if (!engine_conn_drop(&r->eng))
        return;
    backoff(r);
}

exactly_err reprocess_db(run *r)
{
    exactly_err rc;

    if (r->eng.conn && PQstatus(r->eng.conn) == CONNECTION_OK)
        return EXACTLY_OK;
    if (r->eng.conn)
        db_lost(r);
    if (exactly_now_ms() < r->reconnect_at_ms)
        return EXACTLY_ERETRY;
    rc = engine_connect(&r->eng, r->cfg, r->reconnect_attempts + 1);
    if (rc != EXACTLY_OK) {
        if (rc == EXACTLY_EDATABASE)
            r->refused = 1;
        backoff(r);
        return rc;
    }
    r->reconnect_attempts = 0;
    return EXACTLY_OK;
}

static exactly_err db_open(void *arg) { return reprocess_db(arg); }

/* The batch's error value, settled by the loop (reprocess_loop.c); the
 * run prints its own figures, from the engine's totals. */
static void batch_done(void *arg, const part *pt, const engine_batch_report *rep)
{
    run *r = arg;

    (void)pt;
    r->last = rep->err;
}

static const engine_ops run_engine_ops = {
    .db_open = db_open,
    .db_lost = db_lost,
    .batch_done = batch_done,
};

void reprocess_engine_init(run *r)
{
    engine_init(&r->eng, r->p, &run_engine_ops, r);
    r->eng.timeout_ms = exactly_pg_wait_bound_ms(r->cfg);
    /* A run has no queue behind it: its lookup locks what it reads. */
    r->eng.extra_writer = 1;
}
