/*
 * follow.c - an idle partition follows its offset row when someone else
 * moved it (`exactly offsets reset --force` under a running worker). A
 * partition that runs batches meets the moved row at its next batch's
 * compare-and-set; one where nothing arrives has no next batch, and
 * would keep a row moved back unapplied (or fetch on past a row moved
 * forward) until a message came. So every FOLLOW_IDLE_MS one statement
 * compares the rows of all idle partitions with what the worker holds,
 * and each partition whose row differs reads it again and follows it as
 * a refused batch does (engine_reread: moved back, its fetch position
 * goes there; a higher epoch is another owner's, a lower one our claim
 * that a failover lost).
 */
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "pg_conn.h"
#include "strbuf.h"
#include "worker_internal.h"

/* Whether pt is idle: served, nothing buffered, not backing off, and not
 * the partition of a held batch. Such a partition has no transaction on
 * the connection and no batch to meet a moved row. */
static int part_idle(const worker *w, const part *pt)
{
    return !part_state_stopped(pt->state) && pt->n_buf == 0 &&
           pt->retry_at_ms == 0 && w->eng.held.pt != pt;
}

/* Whether the connection may run a statement of its own now: open, no
 * batch or rebalance under way, the breaker closed. */
static int conn_free(const worker *w)
{
    return w->eng.conn && w->eng.sql_ready && !w->db_down_since_ms &&
           !w->in_cycle && !w->eng.held.pt && !w->pending_assign &&
           w->n_deferred == 0;
}

/* Follows the row of pt, idle, which the watch found changed. A moved
 * offset is logged here once pt follows it; a takeover, a lost claim or
 * a lost row by engine_follow_stored, which says what it does about
 * them. */
static void follow_row(worker *w, part *pt)
{
    int64_t from = pt->next_offset;

    if (engine_reread(&w->eng, pt) == EXACTLY_OK &&
        !part_state_stopped(pt->state) && pt->next_offset != from)
        exactly_log(EXACTLY_LOG_INFO, "worker",
                    "stored offset moved; following it", LOG_PART(pt),
                    LOG_INT("from", from), LOG_INT("to", pt->next_offset));
}

/* worker_internal.h says what it does. */
void worker_follow_idle(worker *w)
{
    long long now = exactly_now_ms();
    const char *params[5];
    PGresult *res = NULL;
    strbuf arr[4];
    char err[512];
    size_t i, j, n = 0;
    int r;

    if (now < w->follow_at_ms || !conn_free(w))
        return;
    w->follow_at_ms = now + FOLLOW_IDLE_MS;
    memset(arr, 0, sizeof(arr));
    for (j = 0; j < 4; j++)
        strbuf_array_begin(&arr[j]);
    for (i = 0; i < w->eng.n_parts; i++) {
        const part *pt = w->eng.parts[i];
        if (!part_idle(w, pt))
            continue;
        strbuf_array_elem_str(&arr[0], pt->topic);
        strbuf_array_elem_int(&arr[1], pt->partition);
        strbuf_array_elem_int(&arr[2], pt->next_offset);
        strbuf_array_elem_int(&arr[3], pt->epoch);
        n++;
    }
    if (n == 0)
        goto cleanup;
    params[0] = w->p->name;
    for (j = 0; j < 4; j++) {
        strbuf_array_end(&arr[j]);
        if (arr[j].oom)
            goto cleanup; /* tried again at the next turn */
        params[j + 1] = strbuf_str(&arr[j]);
    }
    exactly_txn_finish(&w->eng.txn);
    if (exactly_pg_exec(w->eng.conn, w->eng.sql.watch, 5, params, &res, err,
                        sizeof(err)) != EXACTLY_OK) {
        if (PQstatus(w->eng.conn) == CONNECTION_OK) {
            exactly_log(EXACTLY_LOG_WARN, "worker",
                        "cannot read the offset rows of idle partitions",
                        LOG_STR("error", err));
            goto cleanup;
        }
        /* As the probe of an idle connection: the breaker reconnects and
         * reads every position again. */
        exactly_log(EXACTLY_LOG_WARN, "postgres", "idle connection lost",
                    LOG_STR("error", err));
        worker_db_lost(w);
        worker_breaker_open(w);
        goto cleanup;
    }
    for (r = 0; r < PQntuples(res) && w->eng.conn; r++) {
        part *pt = engine_part_find(&w->eng, PQgetvalue(res, r, 0),
                                    (int32_t)atoi(PQgetvalue(res, r, 1)));
        if (pt && part_idle(w, pt))
            follow_row(w, pt);
    }
    if (!w->eng.conn)
        worker_breaker_open(w); /* a re-read lost the connection */
cleanup:
    PQclear(res);
    for (j = 0; j < 4; j++)
        strbuf_free(&arr[j]);
}
