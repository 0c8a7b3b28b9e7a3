/*
 * position.c - a partition's stored position, read from its offset row:
 * followed forward (an earlier commit whose answer was lost, a reset),
 * followed back (a reset, a failover that lost our last commits), claimed
 * again when a failover lost our claim (a stored epoch below ours), or
 * given up when another owner took it (a higher epoch) or the row lost its
 * position.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "pg_conn.h"

/* Stops serving pt: its buffer is dropped and its fetching paused, so
 * nothing is skipped if it is ever resumed (a rebalance claims it again
 * and seeks to the stored offset). */
static void part_stop(engine *e, part *pt)
{
    engine_part_drop(pt, pt->n_buf);
    engine_part_pause(e, pt, 1);
}

/*
 * Owner epochs only grow, so a stored epoch below ours is not another
 * owner's claim: it is ours, lost with the server that held it (a failover
 * to a standby that lagged), while Kafka still assigns us the partition.
 * The row is claimed again, with a new epoch, only if it still has the
 * epoch read (seen): whoever claimed it since keeps it. Returns EXACTLY_OK
 * (pt->epoch is the new epoch, *stored the row's offset), EXACTLY_EFENCED
 * (the row changed: someone claimed it) or EXACTLY_ERETRY.
 */
static exactly_err reclaim(engine *e, part *pt, int64_t seen, int64_t *stored)
{
    char part_s[16], seen_s[24], epoch_s[24], err[512];
    const char *params[6];
    PGresult *res = NULL;
    exactly_err rc;

    snprintf(part_s, sizeof(part_s), "%d", (int)pt->partition);
    snprintf(seen_s, sizeof(seen_s), "%" PRId64, seen);
    snprintf(epoch_s, sizeof(epoch_s), "%" PRId64, pt->epoch + 1);
    params[0] = e->p->name;
    params[1] = pt->topic;
    params[2] = part_s;
    params[3] = seen_s;
    params[4] = epoch_s;
    params[5] = e->owner;
    rc = exactly_pg_exec(e->conn, e->sql.reclaim, 6, params, &res, err,
                         sizeof(err));
    if (rc != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_WARN, "cycle", "cannot claim offset row again",
                    LOG_PART(pt), LOG_STR("error", err));
        if (PQstatus(e->conn) != CONNECTION_OK)
            engine_db_lost(e);
        return EXACTLY_ERETRY;
    }
    if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
        PQclear(res);
        return EXACTLY_EFENCED;
    }
    *stored = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    exactly_log(EXACTLY_LOG_WARN, "cycle",
                "the database lost our claim (a failover); claimed again",
                LOG_PART(pt), LOG_INT("stored_epoch", seen),
                LOG_INT("my_epoch", pt->epoch),
                LOG_INT("epoch", pt->epoch + 1),
                LOG_INT("next_offset", *stored));
    pt->epoch++;
    /* A new epoch: the crash guard is asked again (isolating asks it on
     * every batch anyway). */
    if (pt->state == PART_S_SERVING)
        (void)PART_MOVE(pt, PART_S_UNCHECKED);
    engine_publish_position(e, pt);
    return EXACTLY_OK;
}

/* The stored offset is ahead of pt's: an earlier attempt whose answer
 * was lost did commit (counted now), or the row was moved forward (a
 * reset). What it covers is dropped; drop_all drops the rest too. The
 * attempt is taken as committed only if the row holds the very offset
 * its commit stores (a reset to exactly there would look the same): a
 * reset (--force, past a running worker) moves the row
 * anywhere, also past an attempt that rolled back, and a row moved past
 * the attempt's end cannot tell whether it had committed first, so it is
 * not counted (counters only: the row says where to go on). */
static void follow_forward(engine *e, part *pt, int64_t stored, int drop_all)
{
    size_t drop = 0;

    while (drop < pt->n_buf && pt->buf[drop]->offset < stored)
        drop++;
    if (pt->unconfirmed && stored == pt->unconfirmed_end) {
        /* An earlier attempt did commit (its outcome was unknown). */
        exactly_log(EXACTLY_LOG_INFO, "cycle", "earlier commit confirmed",
                    LOG_PART(pt), LOG_INT("next_offset", stored));
        e->st.consumed += drop;
        e->st.applied += pt->unconfirmed_applied;
        e->st.dead_lettered += pt->unconfirmed_dead;
        e->st.batches_committed++;
    } else if (pt->unconfirmed) {
        /* Moved elsewhere than the attempt's end: a reset. */
        exactly_log(EXACTLY_LOG_WARN, "cycle",
                    "stored offset is ahead, not where the unanswered commit "
                    "would have put it (a reset); following it, that batch "
                    "not counted",
                    LOG_PART(pt), LOG_INT("next_offset", pt->next_offset),
                    LOG_INT("attempt_end", pt->unconfirmed_end),
                    LOG_INT("stored", stored));
    } else {
        /* Not ours to count: the row was moved forward (a reset). */
        exactly_log(EXACTLY_LOG_WARN, "cycle",
                    "stored offset is ahead; following it",
                    LOG_PART(pt), LOG_INT("next_offset", pt->next_offset),
                    LOG_INT("stored", stored));
    }
    pt->unconfirmed = 0;
    pt->unconfirmed_applied = pt->unconfirmed_dead = 0;
    engine_part_drop(pt, drop);
    pt->next_offset = stored;
    engine_part_commit(e, pt);
    if (drop_all || pt->n_buf == 0) {
        engine_part_drop(pt, pt->n_buf);
        engine_part_seek(e, pt, stored);
    }
}

/* The stored offset is behind pt's, or pt's buffer was refused
 * (drop_all): the buffer is dropped and the fetch position moved there.
 * *back is set when it is behind. */
static void follow_back(engine *e, part *pt, int64_t stored, int *back)
{
    /* Moved back (an operator reset, or a failover that lost our last
     * commits with their data), or our buffer was refused: follow the
     * database; whatever we did above it is not there. */
    if (stored < pt->next_offset) {
        exactly_log(EXACTLY_LOG_WARN, "cycle",
                    "stored offset is behind; applying again from there",
                    LOG_PART(pt), LOG_INT("next_offset", pt->next_offset),
                    LOG_INT("stored", stored));
        *back = 1;
    }
    pt->unconfirmed = 0;
    pt->unconfirmed_applied = pt->unconfirmed_dead = 0;
    engine_part_drop(pt, pt->n_buf);
    pt->next_offset = stored;
    engine_part_seek(e, pt, stored);
}

/* engine_internal.h says what it does. */
exactly_err engine_follow_stored(engine *e, part *pt, int drop_all, int *back)
{
    char part_s[16];
    const char *params[3];
    PGresult *res = NULL;
    char err[512];
    exactly_err rc;
    int64_t stored;
    int64_t epoch;

    *back = 0;
    snprintf(part_s, sizeof(part_s), "%d", (int)pt->partition);
    params[0] = e->pos.key;
    params[1] = pt->topic;
    params[2] = part_s;
    rc = exactly_pg_exec(e->conn, e->pos.read_sql, 3, params, &res, err, sizeof(err));
    if (rc != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_WARN, "cycle", "cannot re-read offset row",
                    LOG_PART(pt), LOG_STR("error", err));
        if (PQstatus(e->conn) != CONNECTION_OK)
            engine_db_lost(e);
        return EXACTLY_ERETRY;
    }
    if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
        PQclear(res);
        exactly_log(EXACTLY_LOG_ERROR, "cycle",
                    "the stored offset of this partition is gone (row "
                    "deleted or next_offset NULL); partition halted with "
                    "nothing skipped: restore it (exactly offsets reset) and "
                    "restart the worker",
                    LOG_PART(pt),
                    LOG_INT("last_known_offset", pt->next_offset));
        (void)PART_MOVE(pt, PART_S_HALTED);
        part_stop(e, pt);
        return EXACTLY_EFENCED;
    }
    stored = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    epoch = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    PQclear(res);
    if (epoch < pt->epoch && e->pos.reclaim) {
        rc = reclaim(e, pt, epoch, &stored);
        if (rc == EXACTLY_ERETRY)
            return rc;
        if (rc == EXACTLY_OK)
            epoch = pt->epoch;
    }
    if (epoch != pt->epoch) {
        exactly_log(EXACTLY_LOG_WARN, "cycle", "partition taken over",
                    LOG_PART(pt),
                    LOG_INT("my_epoch", pt->epoch),
                    LOG_INT("stored_epoch", epoch));
        (void)PART_MOVE(pt, PART_S_FENCED);
        part_stop(e, pt);
        return EXACTLY_EFENCED;
    }
    pt->pos_conn = e->conn_serial;
    if (stored > pt->next_offset)
        follow_forward(e, pt, stored, drop_all);
    else if (stored < pt->next_offset || drop_all)
        follow_back(e, pt, stored, back);
    return EXACTLY_OK;
}

/* engine.h says what it does. No engine_run reports what this moves, so
 * the owner hears of it here: an earlier commit confirmed as a batch
 * (confirmed), any other move of the position through ops->position. */
exactly_err engine_reread(engine *e, part *pt)
{
    engine_stats before = e->st;
    int64_t was = pt->next_offset;
    engine_batch_report r;
    exactly_err rc;
    int back;

    if (!e->conn)
        return EXACTLY_ERETRY;
    rc = engine_follow_stored(e, pt, 0, &back);
    if (e->st.batches_committed != before.batches_committed &&
        e->ops->batch_done) {
        memset(&r, 0, sizeof(r));
        r.rc = EXACTLY_OK;
        exactly_error_set_code(&r.err, EXACTLY_OK);
        engine_stats_add(&r.delta, &e->st, &before);
        r.confirmed = 1;
        e->ops->batch_done(e->ops_arg, pt, &r);
    } else if (pt->next_offset != was) {
        engine_publish_position(e, pt);
    }
    return rc;
}
