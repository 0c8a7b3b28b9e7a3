/*
 * recheck.c - the partitions halted until an operator sets their offset
 * (none stored, or one no longer in the log): each reads its row again
 * every few seconds, and once `exactly offsets reset` gave it an offset
 * to resume from, it resumes there, fetching again (a partition whose
 * offset left the log is assigned again: librdkafka dropped its fetcher).
 * A reset is seen by the row's updated_at, which it sets, so that a reset
 * to the very offset that failed (the log has grown to hold it) resumes
 * the partition too.
 */
#include <stdio.h>
#include <stdlib.h>

#include "clock.h"
#include "log.h"
#include "pg_conn.h"
#include "worker_internal.h"

/* Whether the row of pt, halted out_of_log, was written since the halt,
 * given its updated_at (stamp) and that stamp's age by the server's clock
 * (age_ms); notes stamp as read. A stamp unchanged since the last read was
 * not (so a reset that was tried, and halted again, is not tried again);
 * one changed since a read made after the halt was. At the first read
 * after the halt, a changed stamp was written since when it is younger
 * than the halt: the server's clock against ours, so a write within
 * milliseconds of the halt may be misplaced (at worst one retry more, or
 * such a reset to the offset that failed unseen). */
static int written_since_halt(part *pt, int64_t stamp, int64_t age_ms,
                              long long now)
{
    int written = stamp != pt->row_stamp &&
                  (pt->row_read_since_halt || age_ms < now - pt->halted_at_ms);

    pt->row_stamp = stamp;
    pt->row_read_since_halt = 1;
    return written;
}

/* Whether the row (next_offset stored; written: written_since_halt) gives
 * the partition pt, halted until an operator sets its offset, somewhere
 * to resume: no_start, once it has an offset; out_of_log, once it holds
 * another offset than the one that was not in the log, or was written
 * since the halt: every exactly offsets reset writes it, also one to the
 * offset that failed (the log may have grown to hold it; if not, the
 * partition halts again). */
static int reset_done(const part *pt, int64_t stored, int written)
{
    return pt->state == PART_S_NO_START || stored != pt->next_offset ||
           written;
}

/* Where partition p starts again when the whole assignment is given
 * again: pt at next, a stopped one at the end (it reads nothing), one
 * that owes a seek where the seek goes (the assignment makes it), another
 * where its buffer ends (which it continues). */
static int64_t restart_offset(worker *w, const char *topic, int32_t p,
                              const part *pt, int64_t next)
{
    const part *o = engine_part_find(&w->eng, topic, p);

    if (o == pt)
        return next;
    if (!o || part_state_stopped(o->state))
        return RD_KAFKA_OFFSET_END;
    return o->seek_owed ? o->seek_to : worker_expected_next(o);
}

/* Starts pt's fetching again at next. A partition whose offset was out of
 * range under auto.offset.reset=error has no fetcher any more in
 * librdkafka, which refuses to seek it: only an assignment starts one.
 * Cooperative: pt alone is unassigned and assigned again; eager, where
 * only the whole assignment can be given: every partition at
 * restart_offset. Either keeps each partition's pause. Returns 0, or -1
 * when librdkafka refused (logged; pt stays halted, and is tried again
 * at its next recheck). */
static int restart_fetch(worker *w, part *pt, int64_t next)
{
    rd_kafka_topic_partition_list_t *l = NULL;
    rd_kafka_error_t *e = NULL;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    int i, rc = -1;

    if (w->cooperative) {
        l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, pt->topic, pt->partition)->offset =
            next;
        e = rd_kafka_incremental_unassign(w->rk, l);
        if (!e)
            e = rd_kafka_incremental_assign(w->rk, l);
    } else {
        err = rd_kafka_assignment(w->rk, &l);
        for (i = 0; !err && i < l->cnt; i++)
            l->elems[i].offset = restart_offset(w, l->elems[i].topic,
                                                l->elems[i].partition, pt,
                                                next);
        if (!err)
            err = rd_kafka_assign(w->rk, l);
    }
    if (e || err) {
        exactly_log(EXACTLY_LOG_ERROR, "rebalance",
                    "cannot start fetching the partition again; it stays "
                    "halted",
                    LOG_PART(pt),
                    LOG_STR("error", e ? rd_kafka_error_string(e)
                                       : rd_kafka_err2str(err)));
        goto cleanup;
    }
    /* Assigned where their seeks went: none is owed any more. */
    for (i = 0; !w->cooperative && i < l->cnt; i++) {
        part *o = engine_part_find(&w->eng, l->elems[i].topic,
                                   l->elems[i].partition);
        if (o && !part_state_stopped(o->state))
            o->seek_owed = 0;
    }
    rc = 0;
cleanup:
    if (e)
        rd_kafka_error_destroy(e);
    if (l)
        rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

/* pt resumes at next, as its row now says: unchecked (its first batch
 * waits for the crash guard's answer, as after a claim), nothing buffered,
 * fetching from there (out_of_log: its fetcher started again). */
static void resume_reset(worker *w, part *pt, int64_t next)
{
    int out_of_log = pt->state == PART_S_OUT_OF_LOG;
    metrics_partition *mp;

    if (out_of_log && restart_fetch(w, pt, next) != 0)
        return;
    exactly_log(EXACTLY_LOG_INFO, "rebalance",
                "halted partition has a stored offset to resume from now; "
                "resuming",
                LOG_PART(pt), LOG_STR("halted", part_state_name(pt->state)),
                LOG_INT("next_offset", next));
    (void)PART_MOVE(pt, PART_S_UNCHECKED);
    engine_part_drop(pt, pt->n_buf);
    pt->next_offset = next;
    pt->pos_conn = w->eng.conn_serial;
    pt->unconfirmed = 0;
    pt->unconfirmed_applied = pt->unconfirmed_dead = 0;
    pt->attempts = 0;
    pt->retry_at_ms = 0;
    if (out_of_log)
        pt->seek_owed = 0; /* the assignment starts it at next */
    else
        engine_part_seek(&w->eng, pt, next);
    engine_part_pause(&w->eng, pt, 0);
    worker_metrics_position(w, pt, 1);
    if (w->m && (mp = metrics_part(w->m, pt->topic, pt->partition)))
        __atomic_store_n(&mp->halted, 0, __ATOMIC_RELAXED);
}

/* Partitions halted until an operator sets their offset (none stored, or
 * one no longer in the log): once exactly offsets reset gave the row one
 * to resume from (reset_done), they resume there, if the row is still
 * ours (the epoch of our claim; a reset keeps it). Also publishes every
 * partition's halted state. */
void worker_recheck_halted(worker *w)
{
    long long now = exactly_now_ms();
    size_t i;

    for (i = 0; i < w->eng.n_parts; i++) {
        part *pt = w->eng.parts[i];
        metrics_partition *mp;
        char ps[16], err[512];
        const char *params[3];
        PGresult *res = NULL;
        int64_t next, epoch, stamp, age_ms;
        int written = 0;

        if (w->m && (mp = metrics_part(w->m, pt->topic, pt->partition)))
            __atomic_store_n(&mp->halted, part_state_halted(pt->state),
                             __ATOMIC_RELAXED);
        /* Not while an assignment changes: a claim starts it afresh. */
        if (!part_state_awaits_reset(pt->state) || now < pt->recheck_at_ms ||
            w->pending_assign || w->n_deferred > 0 || w->db_down_since_ms ||
            worker_db(w) != EXACTLY_OK)
            continue;
        pt->recheck_at_ms = now + RESET_RECHECK_MS;
        snprintf(ps, sizeof(ps), "%d", (int)pt->partition);
        params[0] = w->p->name;
        params[1] = pt->topic;
        params[2] = ps;
        if (exactly_pg_exec(w->eng.conn, w->eng.sql.recheck, 3, params, &res,
                            err, sizeof(err)) != EXACTLY_OK) {
            if (PQstatus(w->eng.conn) != CONNECTION_OK)
                worker_db_lost(w);
            PQclear(res);
            continue;
        }
        if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
            PQclear(res);
            continue;
        }
        next = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        epoch = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        stamp = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
        age_ms = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
        PQclear(res);
        if (epoch != pt->epoch) {
            /* Another worker claimed it since: it is theirs. */
            (void)PART_MOVE(pt, PART_S_FENCED);
            continue;
        }
        if (pt->state == PART_S_OUT_OF_LOG)
            written = written_since_halt(pt, stamp, age_ms, now);
        if (reset_done(pt, next, written))
            resume_reset(w, pt, next);
    }
}
