/*
 * dlq_confirm.c - what became of a replay whose COMMIT went unanswered
 * (DESIGN §3: outcome unknown, re-read to decide).
 *
 * The COMMIT may have landed before the connection went: the replay's
 * writes and its deletions committed, and saying "rolled back" would be
 * the opposite of the truth. The transaction is all or nothing, so its
 * own changes to the dead-letter table tell: every replayed dead letter
 * deleted and every one that failed again one attempt further means it
 * committed; all of them as they were loaded means it did not. Anything
 * else (another command changed them since) is reported as it is, never
 * as a rollback.
 */
#include "dlq_replay_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "err.h"
#include "pg_conn.h"

/* How often the old session is looked for while it ends. */
#define CONFIRM_POLL_MS 100

/* What the re-read found, by what the transaction would have done. */
typedef struct confirm_counts {
    size_t replayed, gone;   /* replayed: deleted now */
    size_t failed, counted;  /* failed again: attempts + 1 now */
    size_t as_loaded;        /* either, unchanged since it was loaded */
} confirm_counts;

/* Waits until backend pid (the replay's session) has ended, so that what
 * its COMMIT did is visible: a session cut off from its client may still
 * be finishing it. 1 when gone, 0 when still there at the bound, -1 when
 * the question failed (err set). */
static int old_session_gone(PGconn *conn, const exactly_config *cfg, int pid,
                            char *err, size_t errsz)
{
    long long until = exactly_now_ms() + exactly_pg_wait_bound_ms(cfg);
    char pidtxt[24];
    const char *params[1] = {pidtxt};

    snprintf(pidtxt, sizeof(pidtxt), "%d", pid);
    for (;;) {
        PGresult *res = NULL;
        int there;

        if (exactly_pg_exec(conn,
                            "SELECT 1 FROM pg_stat_activity WHERE pid = $1",
                            1, params, &res, err, errsz) != EXACTLY_OK)
            return -1;
        there = PQntuples(res) > 0;
        PQclear(res);
        if (!there)
            return 1;
        if (exactly_now_ms() >= until)
            return 0;
        exactly_sleep_ms(CONFIRM_POLL_MS);
    }
}

/* Reads the replayed and failed-again dead letters back on conn and counts
 * them into c. */
static exactly_err reread(replay *r, PGconn *conn, confirm_counts *c,
                          char *err, size_t errsz)
{
    const ops_dlq_replayed *o = r->out;
    int64_t *ids = calloc(o->n + 1, sizeof(int64_t));
    int64_t *now = calloc(o->n + 1, sizeof(int64_t));
    size_t *row = calloc(o->n + 1, sizeof(size_t));
    size_t n = 0, i;
    exactly_err rc = EXACTLY_OK;

    memset(c, 0, sizeof(*c));
    if (!ids || !now || !row) {
        snprintf(err, errsz, "%s", exactly_strerror(EXACTLY_ENOMEM));
        rc = EXACTLY_ENOMEM;
        goto cleanup;
    }
    for (i = 0; i < o->n; i++)
        if (o->outcome[i] == OPS_DL_REPLAYED ||
            o->outcome[i] == OPS_DL_FAILED) {
            ids[n] = o->rows[i].id;
            row[n++] = i;
        }
    if (n > 0)
        rc = store_dl_attempts(conn, r->cfg->postgres.schema, ids, n, now,
                               err, errsz);
    for (i = 0; rc == EXACTLY_OK && i < n; i++) {
        const store_dl_row *d = &o->rows[row[i]];
        if (o->outcome[row[i]] == OPS_DL_REPLAYED) {
            c->replayed++;
            c->gone += now[i] < 0;
        } else {
            c->failed++;
            c->counted += now[i] == d->attempts + 1;
        }
        c->as_loaded += now[i] == d->attempts;
    }

cleanup:
    free(ids);
    free(now);
    free(row);
    return rc;
}

/* Says in r->out->note what the counts mean; EXACTLY_OK when they show the
 * commit, else fail (the COMMIT's error class). */
static exactly_err judge(replay *r, const confirm_counts *c, const char *lost,
                         exactly_err fail)
{
    ops_dlq_replayed *o = r->out;
    size_t total = c->replayed + c->failed;

    if (total == 0) {
        snprintf(o->note, sizeof(o->note),
                 "the answer to COMMIT was lost (%s), but the replay "
                 "changed no dead letter: they are as they were either way",
                 lost);
        return EXACTLY_OK;
    }
    if (c->gone == c->replayed && c->counted == c->failed) {
        snprintf(o->note, sizeof(o->note),
                 "the answer to COMMIT was lost (%s); read back on a new "
                 "connection, the %zu replayed dead letter(s) are deleted "
                 "and the %zu that failed again counted the attempt: the "
                 "replay committed",
                 lost, c->replayed, c->failed);
        return EXACTLY_OK;
    }
    if (c->as_loaded == total) {
        o->rolled_back = 1;
        snprintf(o->note, sizeof(o->note),
                 "the answer to COMMIT was lost (%s); read back on a new "
                 "connection, all %zu dead letter(s) it would have changed "
                 "are as they were: rolled back, nothing was applied and "
                 "the dead letters are unchanged",
                 lost, total);
        return fail;
    }
    snprintf(o->note, sizeof(o->note),
             "the answer to COMMIT was lost (%s); outcome unknown: read back "
             "on a new connection, %zu of %zu replayed dead letter(s) are "
             "deleted, %zu of %zu that failed again counted the attempt, "
             "%zu are as they were (another command changed them since?); "
             "see `exactly dlq list`",
             lost, c->gone, c->replayed, c->counted, c->failed, c->as_loaded);
    return fail;
}

exactly_err dlq_confirm_commit(replay *r, int backend_pid, exactly_err fail,
                               char *err, size_t errsz)
{
    ops_dlq_replayed *o = r->out;
    char lost[1024], why[1024];
    confirm_counts c;
    PGconn *conn;
    int gone;

    o->commit_lost = 1;
    o->rolled_back = 0;
    snprintf(lost, sizeof(lost), "%.1000s", err);
    conn = exactly_pg_connect(r->cfg, "exactly-dlq", why, sizeof(why));
    if (!conn) {
        snprintf(o->note, sizeof(o->note),
                 "the answer to COMMIT was lost (%s); outcome unknown: no "
                 "new connection to read the dead letters back (%s); see "
                 "`exactly dlq list`",
                 lost, why);
        goto cleanup;
    }
    gone = old_session_gone(conn, r->cfg, backend_pid, why, sizeof(why));
    if (gone == 1 && reread(r, conn, &c, why, sizeof(why)) == EXACTLY_OK)
        fail = judge(r, &c, lost, fail);
    else if (gone == 0)
        snprintf(o->note, sizeof(o->note),
                 "the answer to COMMIT was lost (%s); outcome unknown: its "
                 "session (backend %d) is still running; see `exactly dlq "
                 "list` once it has ended",
                 lost, backend_pid);
    else
        snprintf(o->note, sizeof(o->note),
                 "the answer to COMMIT was lost (%s); outcome unknown: "
                 "reading the dead letters back failed (%s); see `exactly "
                 "dlq list`",
                 lost, why);

cleanup:
    PQfinish(conn);
    /* err is the one sentence of a failure, as everywhere in dlq.h. */
    if (fail != EXACTLY_OK)
        snprintf(err, errsz, "%s", o->note);
    return fail;
}
