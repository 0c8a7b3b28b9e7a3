/*
 * guard.c - the crash guard (DESIGN 3, a handler that kills the process):
 * each attempt is marked as inside apply() (in_apply) in a small
 * transaction of its own, flushed to the server before apply() runs; the
 * batch's commit or a clean release (engine_release) clears the mark. Its
 * answer says how the attempt runs: the whole batch, one record at a time
 * (isolating, after deaths on this batch), or that one record is
 * dead-lettered unapplied (it killed the worker max_crashes times alone).
 * The answer is waited for only when it can differ from 'batch': on the
 * first batch after a claim, and while isolating.
 */
#include <inttypes.h>
#include <stdio.h>

#include "cycle_internal.h"
#include "log.h"
#include "pg_conn.h"

/* Queues the mark of the attempt at pt->next_offset up to end in its own
 * small transaction, its answer kept under *res, and pushes its sync. */
static exactly_err guard_mark(cycle *c, int64_t end, txn_result *res)
{
    engine *e = c->e;
    part *pt = c->pt;
    char part_s[16], epoch_s[24], start_s[24], end_s[24], fresh_s[4], max_s[12];
    const char *params[8];
    exactly_err rc;

    snprintf(part_s, sizeof(part_s), "%d", (int)pt->partition);
    snprintf(epoch_s, sizeof(epoch_s), "%" PRId64, pt->epoch);
    snprintf(start_s, sizeof(start_s), "%" PRId64, pt->next_offset);
    snprintf(end_s, sizeof(end_s), "%" PRId64, end);
    snprintf(fresh_s, sizeof(fresh_s), "%d",
             engine_attempted(e, pt, pt->next_offset) ? 0 : 1);
    snprintf(max_s, sizeof(max_s), "%d", e->p->max_crashes);
    params[0] = e->p->name;
    params[1] = pt->topic;
    params[2] = part_s;
    params[3] = epoch_s;
    params[4] = start_s;
    params[5] = end_s;
    params[6] = fresh_s;
    params[7] = max_s;
    (void)exactly_txn_send(&e->txn, TXN_ATTEMPT, "BEGIN", 0, NULL, NULL);
    /* Losing this row in a server crash only loses one count. */
    (void)exactly_txn_send(&e->txn, TXN_ATTEMPT,
                           "SET LOCAL synchronous_commit = off", 0, NULL, NULL);
    rc = exactly_txn_send(&e->txn, TXN_ATTEMPT, e->sql.attempt, 8, params, res);
    if (rc != EXACTLY_OK)
        return rc;
    (void)exactly_txn_send(&e->txn, TXN_ATTEMPT, "COMMIT", 0, NULL, NULL);
    return exactly_txn_push_sync(&e->txn);
}

/* cycle_internal.h says what it does. */
guard_answer cycle_guard_read(engine *e, txn_result res, const char **text)
{
    const PGresult *answer = exactly_txn_result(&e->txn, res);
    guard_answer g;

    *text = answer && PQntuples(answer) == 1 ? PQgetvalue(answer, 0, 0) : NULL;
    (void)guard_answer_parse(*text, &g);
    return g;
}

/* cycle_internal.h says what it does. */
exactly_err cycle_guard(cycle *c, size_t *n, int64_t *end, int *dead_only,
                        txn_result *res)
{
    engine *e = c->e;
    part *pt = c->pt;
    guard_answer g;
    const char *text;
    exactly_err rc;

    rc = guard_mark(c, *end, res);
    if (rc != EXACTLY_OK)
        return rc;
    if (pt->state == PART_S_SERVING)
        return exactly_txn_flush(&e->txn) == 0 ? EXACTLY_OK : EXACTLY_ERETRY;
    rc = cycle_judge_sync(c, exactly_txn_sync(&e->txn));
    if (rc != EXACTLY_OK)
        return rc;
    g = cycle_guard_read(e, *res, &text);
    /* The guard answered since the claim. */
    if (pt->state == PART_S_UNCHECKED)
        (void)PART_MOVE(pt, PART_S_SERVING);
    switch (g.mode) {
    case GUARD_BATCH:
        (void)PART_MOVE(pt, PART_S_SERVING);
        return EXACTLY_OK;
    case GUARD_FENCED:
        cycle_note(c, NULL, "the offset row has another owner");
        return EXACTLY_EFENCED;
    case GUARD_SINGLE:
    case GUARD_DEAD_LETTER:
        break;
    case GUARD_UNKNOWN: {
        char msg[128];
        snprintf(msg, sizeof(msg), "unexpected crash guard answer '%.40s'",
                 text ? text : "");
        cycle_note(c, NULL, msg);
        return EXACTLY_EDATABASE;
    }
    }
    if (pt->state != PART_S_ISOLATING || g.mode == GUARD_DEAD_LETTER)
        exactly_log(EXACTLY_LOG_WARN, "cycle",
                    "worker died on this batch before; isolating records",
                    LOG_PART(pt),
                    LOG_INT("offset", pt->next_offset),
                    LOG_STR("answer", text));
    (void)PART_MOVE(pt, PART_S_ISOLATING);
    *n = 1;
    *end = pt->buf[0]->offset + 1;
    *dead_only = g.mode == GUARD_DEAD_LETTER;
    return EXACTLY_OK;
}

void engine_release(engine *e, part *pt)
{
    char part_s[16], epoch_s[24], err[512];
    const char *params[4];

    if (!e->pos.crash_guard || pt->state == PART_S_FENCED || !e->conn ||
        PQstatus(e->conn) != CONNECTION_OK || !e->sql_ready)
        return;
    snprintf(part_s, sizeof(part_s), "%d", (int)pt->partition);
    snprintf(epoch_s, sizeof(epoch_s), "%" PRId64, pt->epoch);
    params[0] = e->p->name;
    params[1] = pt->topic;
    params[2] = part_s;
    params[3] = epoch_s;
    exactly_txn_finish(&e->txn);
    if (exactly_pg_exec(e->conn, e->sql.release, 4, params, NULL, err,
                        sizeof(err)) != EXACTLY_OK)
        exactly_log(EXACTLY_LOG_WARN, "cycle",
                    "cannot clear the crash guard's mark; the next owner "
                    "counts one death",
                    LOG_PART(pt), LOG_STR("error", err));
}
