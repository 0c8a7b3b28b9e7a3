/*
 * guard.c - the crash guard (DESIGN 3, a handler that kills the process).
 * It costs no transaction of its own in steady state: the batch's
 * transaction is the only one. The protocol, on the partition's offset
 * row (lib/pg/store_migrate.c, migrations 4 and 7; the statements in
 * lib/pg/store.c):
 *
 *   claim     the claim that takes the row sets held. If held was set
 *             already, the previous owner let go without a release: it
 *             died (SIGKILL, a handler's crash, OOM) or lost its session,
 *             somewhere while the next attempt started at next_offset,
 *             inside apply() or not. The claim counts that as one
 *             unreleased end at next_offset (unreleased, unreleased_at;
 *             a count at another offset starts again at 1).
 *   batch     nothing: the batch's commit (advance) moves next_offset,
 *             which is where the next attempt starts; a death inside the
 *             next apply() is counted by the next claim, since the row
 *             stays held.
 *   release   a clean stop or a revoke (engine_release) clears held and
 *             in_apply: the next claim counts nothing.
 *   ask       attempt() runs, in a small transaction of its own whose
 *             answer is waited for before the batch, only on the first
 *             batch after a claim (state unchecked) and while isolating.
 *             Fewer than max_crashes unreleased ends at the batch's
 *             start: 'batch' (nothing written), and the partition serves
 *             without asking again. Otherwise the range [start, end) is
 *             isolated: applied one message at a time, each attempt
 *             marked in_apply, committed before its apply(), the mark
 *             cleared by its commit (advance) or a release (a rollback
 *             leaves it: a death before the retry counts too). attempts
 *             counts, per message, processes that found the mark set on
 *             their first attempt there: deaths inside that message's
 *             attempt alone. A message with max_crashes of them is
 *             dead-lettered unapplied ('dead_letter').
 *
 * The unreleased count over-counts: a worker killed while idle, or whose
 * session timed out, counts one at its next_offset like one that died in
 * apply(). That only ever starts an isolation (a batch applied one
 * message at a time, a slower batch); a dead letter needs max_crashes
 * deaths with that one message's own mark set, which a death elsewhere
 * does not leave. A death inside apply() is never missed: the row is held
 * from the claim until a release, so whoever claims next counts it.
 */
#include <inttypes.h>
#include <stdio.h>

#include "cycle_internal.h"
#include "log.h"
#include "pg_conn.h"

/* Queues the question for the attempt at pt->next_offset up to end (and,
 * isolating, its mark) in its own small transaction, its answer kept
 * under *res, and pushes its sync. */
static exactly_err guard_ask(cycle *c, int64_t end, txn_result *res)
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
    /* Losing this in a server crash only loses one count, or an
     * isolation's progress. */
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

    /* Serving: the guard answered 'batch' since the claim, and the row
     * stays held until a release; nothing to ask. */
    if (pt->state == PART_S_SERVING)
        return EXACTLY_OK;
    rc = guard_ask(c, *end, res);
    if (rc != EXACTLY_OK)
        return rc;
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

/* engine.h says what it does. */
void engine_release(engine *e, part *pt)
{
    engine_release_parts(e, &pt, 1);
}

/* engine.h says what it does. */
void engine_release_parts(engine *e, part *const *pts, size_t n)
{
    char part_s[16], epoch_s[24];
    const char *params[4];
    exactly_err rc;
    size_t i, queued = 0;

    if (!e->pos.crash_guard || !e->conn ||
        PQstatus(e->conn) != CONNECTION_OK || !e->sql_ready)
        return;
    for (i = 0; i < n; i++)
        queued += pts[i]->state != PART_S_FENCED;
    if (queued == 0)
        return;
    /* One transaction for them all: a stop or a revoke of many
     * partitions costs one round trip and one commit, not one each. */
    rc = exactly_txn_start(&e->txn, e->conn, e->timeout_ms);
    if (rc == EXACTLY_OK)
        rc = exactly_txn_send(&e->txn, TXN_CONTROL, "BEGIN", 0, NULL, NULL);
    for (i = 0; i < n && rc == EXACTLY_OK; i++) {
        if (pts[i]->state == PART_S_FENCED)
            continue;
        /* The parameters are copied as the statement is queued. */
        snprintf(part_s, sizeof(part_s), "%d", (int)pts[i]->partition);
        snprintf(epoch_s, sizeof(epoch_s), "%" PRId64, pts[i]->epoch);
        params[0] = e->p->name;
        params[1] = pts[i]->topic;
        params[2] = part_s;
        params[3] = epoch_s;
        rc = exactly_txn_send(&e->txn, TXN_CONTROL, e->sql.release, 4, params,
                              NULL);
    }
    if (rc == EXACTLY_OK)
        rc = exactly_txn_send(&e->txn, TXN_COMMIT, "COMMIT", 0, NULL, NULL);
    if (rc == EXACTLY_OK)
        rc = exactly_txn_sync(&e->txn);
    if (rc == EXACTLY_OK) {
        exactly_txn_finish(&e->txn);
        return;
    }
    exactly_log(EXACTLY_LOG_WARN, "cycle",
                "cannot let go of the offset rows; their next owners count "
                "one death each",
                LOG_UINT("partitions", queued),
                LOG_STR("error", e->txn.errmsg[0] ? e->txn.errmsg
                                                  : "out of memory"));
    engine_rollback(e);
}
