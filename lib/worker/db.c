/*
 * db.c - the worker's PostgreSQL connection: opened and checked (schema
 * version, session mode) with a capped, jittered backoff; its circuit
 * breaker, which pauses every partition while the database is gone and
 * resumes them, positions read again, once it answers; the probe of an
 * idle connection; and the sliced expiry of old dedup keys.
 */
#include <stdio.h>
#include <stdlib.h>

#include "clock.h"
#include "log.h"
#include "pg_conn.h"
#include "worker_internal.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 30000

/* Capped exponential backoff with full jitter. */
long long worker_backoff_ms(int attempts)
{
    long long cap = BACKOFF_MIN_MS;
    int i;

    for (i = 0; i < attempts && cap < BACKOFF_MAX_MS; i++)
        cap *= 2;
    if (cap > BACKOFF_MAX_MS)
        cap = BACKOFF_MAX_MS;
    return cap / 2 + (long long)(random() % (cap / 2 + 1));
}

void worker_db_lost(worker *w)
{
    if (!engine_conn_drop(&w->eng))
        return;
    w->reconnect_at_ms = exactly_now_ms() + worker_backoff_ms(w->reconnect_attempts++);
}

exactly_err worker_db(worker *w)
{
    exactly_err rc;

    if (w->eng.conn && PQstatus(w->eng.conn) == CONNECTION_OK)
        return EXACTLY_OK;
    if (w->eng.conn)
        worker_db_lost(w);
    if (exactly_now_ms() < w->reconnect_at_ms)
        return EXACTLY_ERETRY;
    rc = engine_connect(&w->eng, w->cfg, w->reconnect_attempts + 1);
    if (rc != EXACTLY_OK) {
        if (rc == EXACTLY_EDATABASE)
            w->fatal = 2; /* refused: wrong schema version or pooler mode */
        w->reconnect_at_ms = exactly_now_ms() +
                             worker_backoff_ms(w->reconnect_attempts++);
        return rc;
    }
    engine_use_offsets(&w->eng); /* the pipeline's offset rows */
    if (w->reconnect_attempts > 0)
        exactly_log(EXACTLY_LOG_INFO, "postgres", "connected after",
                    LOG_INT("attempts", w->reconnect_attempts));
    w->reconnect_attempts = 0;
    return EXACTLY_OK;
}

/* The database is gone (not one statement failing: the connection).
 * Pausing every partition keeps the buffers bounded while the loop goes on
 * polling, so the worker stays in its group. Logged once per outage. */
void worker_breaker_open(worker *w)
{
    size_t i;

    if (w->db_down_since_ms)
        return;
    w->db_down_since_ms = exactly_now_ms();
    exactly_log(EXACTLY_LOG_WARN, "worker",
                "database unavailable; pausing all partitions until it answers",
                LOG_UINT("partitions", w->eng.n_parts));
    for (i = 0; i < w->eng.n_parts; i++)
        engine_part_pause(&w->eng, w->eng.parts[i], 1);
}

/* Tries the database (at the reconnect backoff's pace); on success resumes
 * every partition from where its buffer ends. Returns 1 when closed.
 * Each partition keeps its own backoff (retry_at_ms, from its attempts):
 * a batch whose own error ended the connection (08P01, a client-side
 * timeout, a backend it crashes) fails again after any reconnect, and
 * would otherwise be retried at the reconnect's pace forever. A backoff
 * that ended during the outage is over: that partition goes at once. */
int worker_breaker_try_close(worker *w)
{
    long long now;
    size_t i;

    if (!w->db_down_since_ms)
        return 1;
    if (worker_db(w) != EXACTLY_OK)
        return 0;
    /* The server that answers may not be the one that went away (a
     * failover): every position is read again before anything resumes,
     * and one the new server holds behind ours is fetched again. */
    for (i = 0; i < w->eng.n_parts; i++) {
        part *pt = w->eng.parts[i];
        if (part_state_stopped(pt->state) || pt->pos_conn == w->eng.conn_serial)
            continue;
        if (engine_reread(&w->eng, pt) == EXACTLY_ERETRY && !w->eng.conn)
            return 0;
    }
    exactly_log(EXACTLY_LOG_INFO, "worker", "database answers again; resuming",
                LOG_INT("after_ms", exactly_now_ms() - w->db_down_since_ms));
    w->db_down_since_ms = 0;
    now = exactly_now_ms();
    for (i = 0; i < w->eng.n_parts; i++) {
        part *pt = w->eng.parts[i];
        if (part_state_stopped(pt->state))
            continue;
        if (pt->retry_at_ms <= now)
            pt->retry_at_ms = 0;
        engine_part_seek(&w->eng, pt, worker_expected_next(pt));
        engine_part_pause(&w->eng, pt, 0);
    }
    return 1;
}

/* An idle connection may go unused for long: no batch runs, and with no
 * partition assigned not even the comparison of idle partitions' rows
 * (follow.c). A server that went away meanwhile (a crash, a failover)
 * would go unnoticed while nothing arrives, and so would positions it
 * lost. Reading what the server sent
 * finds a closed connection; the breaker then reconnects and reads every
 * position again. */
void worker_db_probe(worker *w)
{
    if (!w->eng.conn || w->db_down_since_ms || w->in_cycle)
        return;
    if (PQconsumeInput(w->eng.conn) && PQstatus(w->eng.conn) == CONNECTION_OK)
        return;
    exactly_log(EXACTLY_LOG_WARN, "postgres", "idle connection lost",
                LOG_STR("error", PQerrorMessage(w->eng.conn)));
    worker_db_lost(w);
    worker_breaker_open(w);
}

/* Dedup keys older than the retention go a slice at a time, between
 * batches: each slice is one short statement of its own, so no lock or
 * transaction outlives a moment and batches wait at most for one slice.
 * A full slice means more are due: the next goes at the next turn. */
#define DEDUP_EXPIRE_SLICE 5000

void worker_expire_dedup(worker *w)
{
    long long now = exactly_now_ms();
    long long every = (long long)w->p->dedup.retention_s * 100;
    char ret_s[24], slice_s[16], err[512];
    const char *params[3];
    PGresult *res = NULL;
    long long n;

    if (!w->p->dedup.enabled || now < w->dedup_expire_at_ms || !w->eng.conn ||
        w->db_down_since_ms || !w->eng.sql_ready)
        return;
    /* A tenth of the retention, between 1 s and a minute. */
    every = every < 1000 ? 1000 : every > 60000 ? 60000 : every;
    w->dedup_expire_at_ms = now + every;
    snprintf(ret_s, sizeof(ret_s), "%lld", (long long)w->p->dedup.retention_s);
    snprintf(slice_s, sizeof(slice_s), "%d", DEDUP_EXPIRE_SLICE);
    params[0] = w->p->name;
    params[1] = ret_s;
    params[2] = slice_s;
    exactly_txn_finish(&w->eng.txn);
    if (exactly_pg_exec(w->eng.conn, w->eng.sql.dedup_expire, 3, params, &res, err,
                        sizeof(err)) != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_WARN, "worker", "cannot expire dedup keys",
                    LOG_STR("error", err));
        if (PQstatus(w->eng.conn) != CONNECTION_OK)
            worker_db_lost(w);
        return;
    }
    n = atoll(PQcmdTuples(res));
    PQclear(res);
    if (n >= DEDUP_EXPIRE_SLICE)
        w->dedup_expire_at_ms = now;
    if (n > 0) {
        exactly_log(EXACTLY_LOG_DEBUG, "worker", "dedup keys expired",
                    LOG_INT("n", n));
        if (w->m)
            metrics_add(&w->m->dedup_expired, (uint64_t)n);
    }
}
