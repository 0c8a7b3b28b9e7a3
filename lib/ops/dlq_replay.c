/*
 * dlq_replay.c - `exactly dlq replay` (see dlq.h): its one transaction.
 *
 * The selected dead letters are locked, looked up at once, and applied
 * partition by partition (records: dlq_records.c; the handler, in chunks
 * under savepoints, bisecting a chunk that fails: the engine's bisect
 * step, its callbacks in dlq_bisect.c). Then, in
 * the same transaction, what was applied is deleted and what failed again
 * is recorded. A failure that is not the records' (the connection, the
 * server, out of memory) rolls everything back; a COMMIT whose answer is
 * lost is decided by asking the server about its transaction
 * (dlq_confirm.c).
 */
#include "dlq_replay_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch.h"
#include "err.h"
#include "log.h"
#include "lookup.h"
#include "pg_conn.h"
#include "pg_xact.h"
#include "store_runs.h"
#include "strbuf.h"

static exactly_err oom(char *err, size_t errsz)
{
    snprintf(err, errsz, "%s", exactly_strerror(EXACTLY_ENOMEM));
    return EXACTLY_ENOMEM;
}

static int row_cmp(const void *a, const void *b)
{
    const store_dl_row *x = a, *y = b;
    int c = strcmp(x->topic, y->topic);

    if (c == 0)
        c = (x->partition > y->partition) - (x->partition < y->partition);
    if (c == 0)
        c = (x->offset > y->offset) - (x->offset < y->offset);
    return c;
}

void ops_dlq_replayed_free(ops_dlq_replayed *r)
{
    size_t i;

    for (i = 0; r->reason && i < r->n; i++)
        free(r->reason[i]);
    for (i = 0; r->sqlstate && i < r->n; i++)
        free(r->sqlstate[i]);
    free(r->reason);
    free(r->sqlstate);
    free(r->outcome);
    store_dl_rows_free(r->rows, r->n);
    memset(r, 0, sizeof(*r));
}

/* Takes the selected dead letters, locked, by topic, partition, offset. */
static exactly_err load(replay *r, char *err, size_t errsz)
{
    ops_dlq_replayed *o = r->out;
    exactly_err rc;
    size_t i;

    rc = ops_dlq_lock_selected(r->conn, r->cfg, r->s, &o->rows, &o->n, err,
                               errsz);
    if (rc != EXACTLY_OK)
        return rc;
    if (o->n > 1)
        qsort(o->rows, o->n, sizeof(*o->rows), row_cmp);
    o->outcome = calloc(o->n + 1, sizeof(*o->outcome));
    o->reason = calloc(o->n + 1, sizeof(*o->reason));
    o->sqlstate = calloc(o->n + 1, sizeof(*o->sqlstate));
    r->record = calloc(o->n + 1, sizeof(*r->record));
    if (!o->outcome || !o->reason || !o->sqlstate || !r->record)
        return oom(err, errsz);
    for (i = 0; i < o->n; i++)
        o->outcome[i] = o->rows[i].entity ? OPS_DL_PENDING : OPS_DL_UNDECODABLE;
    return EXACTLY_OK;
}

/* The lookup's result columns, checked for the key column. */
static exactly_err read_columns(replay *r, const char *keycol, char *err,
                                size_t errsz)
{
    int c;

    r->keycol = exactly_lookup_column(r->rows, keycol);
    if (r->keycol < 0) {
        snprintf(err, errsz,
                 "the lookup result has no column '%s' (set "
                 "lookup.key_column)",
                 keycol);
        return EXACTLY_ECONFIG;
    }
    r->n_cols = (size_t)PQnfields(r->rows);
    r->colnames = calloc(r->n_cols + 1, sizeof(char *));
    if (!r->colnames)
        return oom(err, errsz);
    for (c = 0; c < PQnfields(r->rows); c++)
        r->colnames[c] = PQfname(r->rows, c);
    return EXACTLY_OK;
}

/* Runs the pipeline's lookup for every replayable entity at once; also
 * for a handler that skips it (see replay.rows). */
static exactly_err lookup(replay *r, char *err, size_t errsz)
{
    strbuf ids = {0};
    const char *params[1];
    exactly_err rc;
    size_t i;

    strbuf_array_begin(&ids);
    for (i = 0; i < r->out->n; i++)
        if (r->out->outcome[i] == OPS_DL_PENDING)
            strbuf_array_elem_str(&ids, r->out->rows[i].entity);
    strbuf_array_end(&ids);
    params[0] = strbuf_str(&ids);
    rc = ids.oom ? EXACTLY_ENOMEM
                 : exactly_pg_exec_state(r->conn, r->lookup_sql, 1, params,
                                         &r->rows, r->sqlstate, err, errsz);
    if (rc == EXACTLY_OK) {
        rc = read_columns(r, r->lookup_key, err, errsz);
    } else if (rc != EXACTLY_ENOMEM) {
        char why[1024];
        /* The server's message, cut to fit behind the prefix. */
        snprintf(why, sizeof(why), "%.1000s", err);
        snprintf(err, errsz, "lookup failed: %s", why);
    }
    if (rc == EXACTLY_ENOMEM)
        oom(err, errsz);
    strbuf_free(&ids);
    return rc;
}

/* Applies rows [from, to) (one topic and partition, ascending offsets)
 * through the handler, in the open transaction. */
static exactly_err apply_partition(replay *r, size_t from, size_t to,
                                   char *err, size_t errsz)
{
    /* Rows go to the handler only when it reads them (not fused). */
    int with_rows = r->rows != NULL && !r->pl->h->skips_lookup;
    precs pr;
    exactly_err rc;

    memset(&pr, 0, sizeof(pr));
    pr.from = from;
    pr.to = to;
    rc = dlq_records_build(r, &pr, with_rows);
    if (rc == EXACTLY_OK)
        rc = dlq_apply_records(r, &pr, err, errsz);
    if (rc == EXACTLY_ENOMEM)
        oom(err, errsz);
    dlq_records_free(&pr);
    return rc;
}

/* One dead letter is one message; the run now applied it: counted in the
 * run's row of its partition, as the run counts what it applies itself
 * (rows come grouped by topic and partition). */
static exactly_err count_for_run(replay *r, char *err, size_t errsz)
{
    const ops_dlq_replayed *o = r->out;
    exactly_err rc = EXACTLY_OK;
    size_t start, i;
    int64_t n = 0;

    for (start = 0, i = 0; rc == EXACTLY_OK && i <= o->n; i++) {
        if (i < o->n && o->rows[i].partition == o->rows[start].partition &&
            strcmp(o->rows[i].topic, o->rows[start].topic) == 0) {
            n += o->outcome[i] == OPS_DL_REPLAYED;
            continue;
        }
        if (n > 0)
            rc = store_runs_add_applied(r->conn, r->cfg->postgres.schema,
                                        r->s->run, o->rows[start].topic,
                                        o->rows[start].partition, n, err,
                                        errsz);
        start = i;
        n = i < o->n && o->outcome[i] == OPS_DL_REPLAYED;
    }
    return rc;
}

/* Deletes what was replayed, counts it for its run, and records the new
 * failures. */
static exactly_err settle(replay *r, char *err, size_t errsz)
{
    const ops_dlq_replayed *o = r->out;
    const char *schema = r->cfg->postgres.schema;
    int64_t *done = calloc(o->n + 1, sizeof(int64_t));
    int64_t *failed = calloc(o->n + 1, sizeof(int64_t));
    const char **reasons = calloc(o->n + 1, sizeof(char *));
    const char **states = calloc(o->n + 1, sizeof(char *));
    size_t n_done = 0, n_failed = 0, i;
    exactly_err rc = EXACTLY_OK;

    if (!done || !failed || !reasons || !states)
        rc = oom(err, errsz);
    for (i = 0; rc == EXACTLY_OK && i < o->n; i++) {
        if (o->outcome[i] == OPS_DL_REPLAYED)
            done[n_done++] = o->rows[i].id;
        else if (o->outcome[i] == OPS_DL_FAILED) {
            failed[n_failed] = o->rows[i].id;
            states[n_failed] = o->sqlstate[i];
            reasons[n_failed++] =
                o->reason[i] ? o->reason[i] : "failed by handler";
        }
    }
    if (rc == EXACTLY_OK && n_done > 0)
        rc = store_dl_delete(r->conn, schema, done, n_done, err, errsz);
    if (rc == EXACTLY_OK && n_done > 0 && r->s->run > 0)
        rc = count_for_run(r, err, errsz);
    if (rc == EXACTLY_OK && n_failed > 0)
        rc = store_dl_failed_again(r->conn, schema, failed, reasons, states,
                                   n_failed, err, errsz);
    free(done);
    free(failed);
    free(reasons);
    free(states);
    return rc;
}

/*
 * With on_missing: handler, the entities the lookup found no row for went
 * to the handler, which may have deleted their target rows (the upsert's
 * delete_missing, a C handler's own). A row that does not exist cannot be
 * locked: the source row may have been inserted since the lookup, and the
 * live worker may have written the target row from it and committed,
 * which such a delete then removed. So, after the handler's writes, the
 * lookup runs again for them: a row found now (committed before this
 * statement, so before the worker's write from it) means the replay was
 * applied from a read that no longer holds: r->stale, EXACTLY_ERETRY (the
 * replay is rolled back and run again). One inserted later is written by
 * the worker after the replay commits (a target row deleted here stays
 * locked to COMMIT). EXACTLY_OK when none was found.
 */
static exactly_err recheck(replay *r, char *err, size_t errsz)
{
    const ops_dlq_replayed *o = r->out;
    int nt = r->rows ? PQntuples(r->rows) : 0, t;
    strset found = {0}, missing = {0};
    strbuf ids = {0};
    PGresult *res = NULL;
    const char *params[1];
    exactly_err rc = EXACTLY_OK;
    size_t i, n = 0;

    if (r->p->lookup.on_missing != CFG_MISSING_HANDLER)
        return EXACTLY_OK;
    if (strset_reset(&found, (size_t)nt + 1) != 0)
        return oom(err, errsz);
    for (t = 0; t < nt; t++)
        (void)strset_add(&found, PQgetvalue(r->rows, t, r->keycol));
    strbuf_array_begin(&ids);
    if (strset_reset(&missing, o->n + 1) != 0)
        ids.oom = 1;
    for (i = 0; i < o->n && !ids.oom; i++)
        if (o->outcome[i] == OPS_DL_REPLAYED &&
            !strset_has(&found, o->rows[i].entity)) {
            strbuf_array_elem_str(&ids, o->rows[i].entity);
            if (strset_add(&missing, o->rows[i].entity) < 0)
                ids.oom = 1;
            n++;
        }
    strbuf_array_end(&ids);
    params[0] = strbuf_str(&ids);
    if (ids.oom)
        rc = oom(err, errsz);
    else if (n > 0)
        rc = exactly_pg_exec_state(r->conn, r->lookup_sql, 1, params, &res,
                                   r->sqlstate, err, errsz);
    if (rc == EXACTLY_OK && res &&
        batch_rows_naming(res, r->lookup_key, &missing) > 0) {
        snprintf(err, errsz, "a source row the lookup did not find was "
                             "inserted meanwhile");
        r->stale = 1;
        rc = EXACTLY_ERETRY;
    }
    PQclear(res);
    strbuf_free(&ids);
    strset_free(&found);
    strset_free(&missing);
    return rc;
}

/* Inside the transaction: load, look up, apply per partition, settle. */
static exactly_err replay_all(replay *r, char *err, size_t errsz)
{
    const ops_dlq_replayed *o = r->out;
    exactly_err rc;
    size_t i, start;

    rc = load(r, err, errsz);
    if (rc == EXACTLY_OK)
        rc = lookup(r, err, errsz);
    /* Per partition, since a batch is one partition's. */
    for (start = 0, i = 1; rc == EXACTLY_OK && i <= o->n; i++) {
        if (i < o->n && o->rows[i].partition == o->rows[start].partition &&
            strcmp(o->rows[i].topic, o->rows[start].topic) == 0)
            continue;
        rc = apply_partition(r, start, i, err, errsz);
        start = i;
    }
    if (rc == EXACTLY_OK)
        rc = recheck(r, err, errsz);
    if (rc == EXACTLY_OK)
        rc = settle(r, err, errsz);
    return rc;
}

/* Loads and opens the pipeline's handler on conn. */
static exactly_err open_handler(replay *r, char *err, size_t errsz)
{
    exactly_err rc;

    rc = exactly_plugin_load_extra(r->cfg, r->p, &r->pl, err, errsz);
    if (rc != EXACTLY_OK)
        return EXACTLY_ECONFIG;
    snprintf(r->out->handler, sizeof(r->out->handler), "%s", r->pl->h->name);
    rc = exactly_plugin_open(r->pl, r->conn, r->p,
                             exactly_pg_wait_bound_ms(r->cfg), err, errsz);
    if (rc != EXACTLY_OK)
        return rc == EXACTLY_ERETRY ? EXACTLY_ERETRY : EXACTLY_ECONFIG;
    return EXACTLY_OK;
}

/* One try of the replay (ops_dlq_replay). When it ends rolled back by a
 * server error whose SQLSTATE is known, that SQLSTATE is in state, else
 * state is ""; *stale is set when it was rolled back by recheck(). */
static exactly_err replay_once(PGconn *conn, const exactly_config *cfg,
                               const cfg_pipeline *p, const ops_dlq_sel *s,
                               ops_dlq_replayed *out, char state[6],
                               int *stale, char *err, size_t errsz)
{
    char ignore[256];
    replay r;
    exactly_err rc;
    exactly_xact_ref xref = {{0}};
    int commit_sent = 0;
    char *unlocked = NULL;
    size_t i;

    memset(&r, 0, sizeof(r));
    memset(out, 0, sizeof(*out));
    r.conn = conn;
    r.cfg = cfg;
    r.p = p;
    r.s = s;
    r.out = out;
    /* A handler that emits does so in replay as in the worker: its events
     * commit with what it writes. */
    if (exactly_store_sql_init(&r.sql, conn, cfg->postgres.schema) != 0) {
        rc = oom(err, errsz);
        goto cleanup;
    }
    r.txn.emit_sql = r.sql.emit;
    rc = open_handler(&r, err, errsz);
    if (rc != EXACTLY_OK)
        goto cleanup;
    /* Built (and its lock tried) outside the transaction. */
    if (exactly_lookup_sql_shared(conn, p, &r.lookup_sql, &r.lookup_key,
                                  &unlocked) != EXACTLY_OK) {
        rc = oom(err, errsz);
        goto cleanup;
    }
    if (unlocked)
        exactly_log(EXACTLY_LOG_WARN, "dlq",
                    "the lookup cannot lock the rows it reads, so it reads "
                    "them unlocked: a source row changed meanwhile can be "
                    "written from its old state",
                    LOG_STR("pipeline", p->name), LOG_STR("error", unlocked));
    free(unlocked);
    /* READ COMMITTED: the rows the lookup found stay locked to COMMIT, so
     * a handler that reads the source inside its own write (the fused
     * upsert, itself FOR SHARE) finds each of them as the lookup did, or
     * newer only when committed before the lookup locked it. A snapshot
     * of the whole transaction (REPEATABLE READ) would instead fail the
     * replay on every row the live worker wrote meanwhile. */
    rc = exactly_pg_exec(conn, "BEGIN", 0, NULL, NULL, err, errsz);
    out->rolled_back = 1;
    if (rc == EXACTLY_OK)
        rc = replay_all(&r, err, errsz);
    /* Its mark, to learn its outcome should COMMIT go unanswered. */
    if (rc == EXACTLY_OK)
        rc = exactly_pg_xact_mark(conn, cfg->postgres.schema, &xref, err,
                                  errsz);
    if (rc == EXACTLY_OK) {
        commit_sent = 1;
        rc = exactly_pg_exec(conn, "COMMIT", 0, NULL, NULL, err, errsz);
        if (rc == EXACTLY_OK)
            exactly_pg_xact_forget(conn, cfg->postgres.schema, &xref);
    }
    /* An error the server answered COMMIT with means no commit; a
     * connection gone before the answer leaves it unknown (DESIGN §3). */
    if (rc != EXACTLY_OK && commit_sent && PQstatus(conn) != CONNECTION_OK) {
        rc = dlq_confirm_commit(&r, &xref, rc, err, errsz);
        if (rc != EXACTLY_OK)
            goto cleanup;
    } else if (rc != EXACTLY_OK) {
        (void)exactly_pg_exec(conn, "ROLLBACK", 0, NULL, NULL, ignore,
                              sizeof(ignore));
        goto cleanup;
    }
    out->rolled_back = 0;
    for (i = 0; i < out->n; i++)
        out->count[out->outcome[i]]++;

cleanup:
    snprintf(state, 6, "%s",
             rc != EXACTLY_OK && out->rolled_back && !out->commit_lost
                 ? r.sqlstate
                 : "");
    *stale = rc != EXACTLY_OK && out->rolled_back && !out->commit_lost &&
             r.stale;
    free(r.record);
    free(r.colnames);
    free(r.lookup_sql);
    free(r.lookup_key);
    PQclear(r.rows);
    exactly_txn_clear(&r.txn);
    exactly_store_sql_free(&r.sql);
    exactly_plugin_free(r.pl);
    return rc;
}

/* Whether a replay rolled back with state is run again: a deadlock
 * (40P01) or a serialization failure (40001) is about timing, not about
 * the replay; its next try may well pass. */
static int run_again(const char *state)
{
    return strcmp(state, "40P01") == 0 || strcmp(state, "40001") == 0;
}

exactly_err ops_dlq_replay(PGconn *conn, const exactly_config *cfg,
                           const cfg_pipeline *p, const ops_dlq_sel *s,
                           ops_dlq_replayed *out, char *err, size_t errsz)
{
    char state[6];
    exactly_err rc;
    int attempt, stale;

    for (attempt = 1;; attempt++) {
        rc = replay_once(conn, cfg, p, s, out, state, &stale, err, errsz);
        if (rc == EXACTLY_OK || (!run_again(state) && !stale) ||
            attempt == OPS_DLQ_REPLAY_TRIES)
            return rc;
        if (stale)
            exactly_log(EXACTLY_LOG_WARN, "dlq",
                        "replay rolled back: a source row its lookup did "
                        "not find was inserted meanwhile; it is run again",
                        LOG_STR("pipeline", p->name),
                        LOG_INT("attempt", attempt),
                        LOG_INT("tries", OPS_DLQ_REPLAY_TRIES));
        else
            exactly_log(EXACTLY_LOG_WARN, "dlq",
                        "replay rolled back by a deadlock or serialization "
                        "failure; it is run again",
                        LOG_STR("pipeline", p->name),
                        LOG_INT("attempt", attempt),
                        LOG_INT("tries", OPS_DLQ_REPLAY_TRIES),
                        LOG_STR("sqlstate", state), LOG_STR("error", err));
        ops_dlq_replayed_free(out);
        /* The other transaction of the cycle goes on meanwhile. */
        usleep((useconds_t)attempt * 100 * 1000);
    }
}
