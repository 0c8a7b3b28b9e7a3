/*
 * relay_outbox.c - the relay's side in PostgreSQL: its statements on the
 * outbox table (built once, identifiers quoted), the session and the
 * outbox's advisory lock (invariant 5: a second relay is a standby) with
 * the relay_state row a relay starts when it takes it, the recording of a
 * batch's outcome (marked or deleted, dead-lettered, the relay_state
 * counters) in one transaction after every delivery report (invariant
 * 3), the backlog read for the metrics and the expiry of published
 * rows. `exactly relay status` is relay_status.c.
 */
#include "relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "log.h"
#include "pg_conn.h"
#include "pg_open.h"
#include "clock.h"
#include "relay_internal.h"
#include "strbuf.h"
#include "txn.h"

/* fmt with a (and b, when the format names a second argument). */
static char *fmt2(const char *fmt, const char *a, const char *b)
{
    strbuf sb = {0};

    strbuf_printf(&sb, fmt, a, b);
    if (sb.oom) {
        strbuf_free(&sb);
        return NULL;
    }
    return sb.data;
}

/* A mark from a position record (mark, naming the table once through
 * %s) made one statement with the relay_state counters it adds to:
 * the rows it marks or deletes are published rows like those of a batch's
 * outcome, counted in the same transaction, so a crash cannot leave them
 * marked and uncounted. The relay's name and outbox are the parameters
 * $p and $p+1; the statement returns the number of rows marked. */
static char *counted_mark(const char *mark, const relay *rl, int p)
{
    char *inner = fmt2(mark, rl->table_q, NULL);
    strbuf sb = {0};

    if (!inner)
        return NULL;
    strbuf_printf(&sb,
                  "WITH m AS (%s RETURNING 1),"
                  " c AS (SELECT count(*) AS n FROM m),"
                  " st AS (INSERT INTO %s AS s (relay, outbox, published,"
                  "  published_since_start, last_published_at)"
                  "  SELECT $%d, $%d, n, n, now() FROM c WHERE n > 0"
                  "  ON CONFLICT (relay) DO UPDATE SET outbox = EXCLUDED.outbox,"
                  "  published = s.published + EXCLUDED.published,"
                  "  published_since_start = s.published_since_start"
                  "   + EXCLUDED.published,"
                  "  last_published_at = now(), updated_at = now())"
                  " SELECT n FROM c",
                  inner, rl->state_q, p, p + 1);
    free(inner);
    if (sb.oom) {
        strbuf_free(&sb);
        return NULL;
    }
    return sb.data;
}

int relay_build_sql(relay *rl)
{
    const cfg_relay *r = rl->r;
    char *s = exactly_pg_ident(rl->conn, r->schema);
    char *t = exactly_pg_ident(rl->conn, r->table);
    char *fs = exactly_pg_ident(rl->conn, rl->cfg->postgres.schema);

    if (!s || !t || !fs) {
        PQfreemem(s);
        PQfreemem(t);
        PQfreemem(fs);
        return -1;
    }
    rl->table_q = fmt2("%s.%s", s, t);
    rl->state_q = fmt2("%s.%s", fs, "relay_state");
    snprintf(rl->lock_key, sizeof(rl->lock_key), "exactly.relay:%s.%s", s, t);
    PQfreemem(s);
    PQfreemem(t);
    PQfreemem(fs);
    if (!rl->table_q || !rl->state_q)
        return -1;
    /* The horizon and the rows come from one statement, so from one
     * snapshot: every transaction below its xmin has ended, and each of
     * those that committed is visible to it (invariant 1). */
    /* Column 7: the headers as PostgreSQL holds them, a JSON array of
     * [name, the value's JSON text] in their order, so that a number is
     * sent as written (1.10, a 30-digit integer), never re-printed by a
     * client's double. NULL when headers is NULL, not an object, or holds
     * a \u escape, which json_each() cannot always turn into text (a
     * \u0000 would fail the whole batch): the client then reads column 4
     * itself. chr(92) is a backslash whatever standard_conforming_strings
     * says. The order names the table's columns (o.created): a bare
     * "created" would name the output column created::text, whose order
     * puts transaction 10 before 9 and 1000 before 999. */
    rl->sql_select = fmt2(
        "SELECT id, coalesce(topic, $1), key, value, headers::text,"
        " event_id::text, created::text,"
        " CASE WHEN headers IS NULL"
        "   OR json_typeof(headers::json) <> 'object'"
        "   OR strpos(headers::text, chr(92) || 'u') > 0 THEN NULL"
        " ELSE (SELECT coalesce(json_agg(json_build_array(h.k, h.v::text)"
        "   ORDER BY h.n), '[]')::text"
        "   FROM json_each(headers::json) WITH ORDINALITY AS h(k, v, n)) END"
        " FROM %s o"
        " WHERE published_at IS NULL AND dead_reason IS NULL"
        " AND created < pg_snapshot_xmin(pg_current_snapshot())"
        " ORDER BY o.created, o.id LIMIT $2::int",
        rl->table_q, NULL);
    /* A batch's outcome names each row by its id and its transaction id
     * together: between the read and the outcome (up to
     * message.timeout.ms) TRUNCATE ... RESTART IDENTITY or a sequence
     * reset may give the batch's ids to other rows, never sent, and
     * transaction ids are never used again. */
    rl->sql_acked = fmt2(r->cleanup == CFG_CLEANUP_DELETE
                             ? "DELETE FROM %s o USING unnest($1::bigint[],"
                               " $2::xid8[]) AS u(i, c)"
                               " WHERE o.id = u.i AND o.created = u.c"
                             : "UPDATE %s o SET published_at = now()"
                               " FROM unnest($1::bigint[], $2::xid8[])"
                               " AS u(i, c) WHERE o.id = u.i"
                               " AND o.created = u.c"
                               " AND o.published_at IS NULL",
                         rl->table_q, NULL);
    rl->sql_dead = fmt2("UPDATE %s o SET dead_reason = u.r, dead_at = now()"
                        " FROM unnest($1::bigint[], $2::xid8[], $3::text[])"
                        " AS u(i, c, r) WHERE o.id = u.i AND o.created = u.c",
                        rl->table_q, NULL);
    /* By ids alone: only for a position record written before records
     * carried the range of their transaction ids (relay_txn.c). */
    rl->sql_done = counted_mark(r->cleanup == CFG_CLEANUP_DELETE
                                    ? "DELETE FROM %s WHERE id = ANY($1::bigint[])"
                                    : "UPDATE %s SET published_at = now()"
                                      " WHERE id = ANY($1::bigint[])"
                                      " AND published_at IS NULL",
                                rl, 2);
    /* A position record (invariant 6) names ids, which TRUNCATE ...
     * RESTART IDENTITY or a sequence reset give to other rows: a row is
     * one it names only if its transaction id also lies in the record's
     * range of them, and transaction ids are never used again. */
    rl->sql_position = counted_mark(
        r->cleanup == CFG_CLEANUP_DELETE
            ? "DELETE FROM %s WHERE id = ANY($1::bigint[])"
              " AND created BETWEEN $2::xid8 AND $3::xid8"
            : "UPDATE %s SET published_at = now()"
              " WHERE id = ANY($1::bigint[])"
              " AND published_at IS NULL"
              " AND created BETWEEN $2::xid8 AND $3::xid8",
        rl, 4);
    /* A batch's counters: last_published_at moves only when a row was
     * published ($3 > 0), not on a batch only dead-lettered or sent
     * again. The window of the rate starts at the lock (state_begin). */
    rl->sql_state = fmt2(
        "INSERT INTO %s AS s (relay, outbox, published, dead,"
        " published_since_start, last_published_at)"
        " VALUES ($1, $2, $3::bigint, $4::bigint, $3::bigint,"
        "  CASE WHEN $3::bigint > 0 THEN now() END)"
        " ON CONFLICT (relay) DO UPDATE SET outbox = EXCLUDED.outbox,"
        " published = s.published + EXCLUDED.published,"
        " dead = s.dead + EXCLUDED.dead,"
        " published_since_start = s.published_since_start"
        "  + EXCLUDED.published,"
        " last_published_at = coalesce(EXCLUDED.last_published_at,"
        "  s.last_published_at),"
        " updated_at = now()",
        rl->state_q, NULL);
    /* One chunk of the expiry (relay_expire): a bounded transaction. */
    rl->sql_expire = fmt2(
        "DELETE FROM %s WHERE ctid = ANY (ARRAY(SELECT ctid FROM %s"
        " WHERE published_at < now() - make_interval(secs =>"
        " $1::double precision) LIMIT $2::int))",
        rl->table_q, rl->table_q);
    /* The backlog for the metrics: the partial index outbox_pending holds
     * exactly these rows. */
    rl->sql_backlog = fmt2(
        "SELECT count(*), coalesce((extract(epoch FROM now() -"
        " min(created_at)) * 1000)::bigint, 0) FROM %s"
        " WHERE published_at IS NULL AND dead_reason IS NULL",
        rl->table_q, NULL);
    return rl->sql_select && rl->sql_acked && rl->sql_done && rl->sql_dead &&
                   rl->sql_state && rl->sql_expire && rl->sql_backlog &&
                   rl->sql_position
               ? 0
               : -1;
}

void relay_drop_conn(relay *rl)
{
    if (rl->conn)
        PQfinish(rl->conn);
    rl->conn = NULL;
    rl->locked = 0; /* a session lock ends with its session */
    if (rl->m) {
        __atomic_store_n(&rl->m->relay.publishing, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&rl->m->ready, 0, __ATOMIC_RELAXED);
    }
}

/* The relay took its outbox: its relay_state row exists from now on (a
 * relay that ran shows published 0, not "never ran"), and the window of
 * its rate starts (started_at now, published_since_start 0), whether it
 * started, took over from another relay or got the lock back after its
 * session ended, when another relay may have published meanwhile. Once
 * per lock taken, never per batch. Returns 0, or -1 with err set. */
static int state_begin(relay *rl, char *err, size_t err_size)
{
    const char *params[2];
    char *sql = fmt2("INSERT INTO %s AS s (relay, outbox) VALUES ($1, $2)"
                     " ON CONFLICT (relay) DO UPDATE SET"
                     " outbox = EXCLUDED.outbox, started_at = now(),"
                     " published_since_start = 0, updated_at = now()",
                     rl->state_q, NULL);
    int rc;

    if (!sql) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    params[0] = rl->r->name;
    params[1] = rl->table_q;
    rc = exactly_pg_exec(rl->conn, sql, 2, params, NULL, err, err_size) ==
                 EXACTLY_OK
             ? 0
             : -1;
    free(sql);
    return rc;
}

int relay_ensure_conn(relay *rl)
{
    char err[1024];
    const char *params[1];
    PGresult *res = NULL;
    exactly_err rc;
    int got;

    if (rl->conn && PQstatus(rl->conn) == CONNECTION_OK && rl->locked)
        return 0;
    if (!rl->conn || PQstatus(rl->conn) != CONNECTION_OK) {
        relay_drop_conn(rl);
        /* The outbox's lock below is the session's: through a pooler in
         * transaction mode it would stay on a pooled backend, and another
         * relay could publish the outbox beside this one. The check runs
         * once per process (exactly_pg_check_session), as the worker's:
         * a reconnect goes to the same endpoint, whose pool mode does
         * not change under a running relay. */
        rc = exactly_pg_open_session(rl->cfg, "exactly-relay", &rl->conn,
                                     err, sizeof(err));
        if (rc == EXACTLY_ECONFIG) {
            exactly_log(EXACTLY_LOG_ERROR, "postgres",
                        "refusing to run through this connection",
                        LOG_STR("relay", rl->r->name), LOG_STR("error", err));
            return 3;
        }
        if (rc != EXACTLY_OK) {
            exactly_log(EXACTLY_LOG_WARN, "relay", "postgres unreachable",
                        LOG_STR("error", err));
            return 1;
        }
        if (rl->m)
            metrics_add(&rl->m->relay.connects, 1);
        relay_publish_ready(rl);
    }
    if (!rl->table_q && relay_build_sql(rl) != 0) {
        exactly_log(EXACTLY_LOG_ERROR, "relay", "out of memory");
        relay_drop_conn(rl);
        return 1;
    }
    params[0] = rl->lock_key;
    rc = exactly_pg_exec(rl->conn,
                         "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                         1, params, &res, err, sizeof(err));
    if (rc != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_WARN, "relay", "advisory lock failed",
                    LOG_STR("error", err));
        relay_drop_conn(rl);
        return 1;
    }
    got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!got) {
        /* The connection stays: the lock is tried again every poll
         * interval, so a standby takes over as soon as the holder's
         * session ends. */
        if (!rl->waiting)
            exactly_log(EXACTLY_LOG_INFO, "relay",
                        "another relay publishes this outbox; waiting",
                        LOG_STR("relay", rl->r->name),
                        LOG_STR("outbox", rl->table_q));
        rl->waiting = 1;
        return 2;
    }
    rl->waiting = 0;
    if (state_begin(rl, err, sizeof(err)) != 0) {
        exactly_log(EXACTLY_LOG_WARN, "relay", "writing relay_state failed",
                    LOG_STR("error", err));
        relay_drop_conn(rl); /* the lock goes with the session */
        return 1;
    }
    rl->locked = 1;
    rl->need_position = rl->txn; /* another relay may have run meanwhile */
    if (rl->m)
        __atomic_store_n(&rl->m->relay.publishing, 1, __ATOMIC_RELAXED);
    exactly_log(EXACTLY_LOG_INFO, "relay", "relay publishes",
                LOG_STR("relay", rl->r->name), LOG_STR("outbox", rl->table_q));
    return 0;
}

/* The array literals of a batch's outcome, which names each row by its
 * id and its transaction id (created), in two arrays of one order. */
typedef struct outcome_arrays {
    strbuf ids, created; /* of the rows acknowledged */
    strbuf dids, dcreated, dreasons; /* of the rows refused for good */
} outcome_arrays;

static void outcome_elem_xid(strbuf *sb, uint64_t xid)
{
    char text[32];
    int n = snprintf(text, sizeof(text), "%llu", (unsigned long long)xid);

    strbuf_array_elem(sb, text, (size_t)n);
}

/* The array literals of the batch's outcome into a: the rows
 * acknowledged, and the rows refused for good with their reasons; counted
 * in acked, dead. Returns 0, or -1 when out of memory. */
static int collect_outcome(const relay *rl, outcome_arrays *a, int64_t *acked,
                           int64_t *dead)
{
    strbuf *all[] = {&a->ids, &a->created, &a->dids, &a->dcreated,
                     &a->dreasons};
    size_t i, k;
    int oom = 0;

    *acked = *dead = 0;
    for (k = 0; k < sizeof(all) / sizeof(all[0]); k++)
        strbuf_array_begin(all[k]);
    for (i = 0; i < rl->n_rows; i++) {
        const relay_row *row = &rl->rows[i];

        if (row->state == ROW_ACKED) {
            strbuf_array_elem_int(&a->ids, row->id);
            outcome_elem_xid(&a->created, row->created);
            (*acked)++;
        } else if (row->state == ROW_DEAD) {
            strbuf_array_elem_int(&a->dids, row->id);
            outcome_elem_xid(&a->dcreated, row->created);
            strbuf_array_elem_str(&a->dreasons, row->reason);
            (*dead)++;
        }
    }
    for (k = 0; k < sizeof(all) / sizeof(all[0]); k++) {
        strbuf_array_end(all[k]);
        oom |= all[k]->oom;
    }
    return oom ? -1 : 0;
}

static void outcome_free(outcome_arrays *a)
{
    strbuf_free(&a->ids);
    strbuf_free(&a->created);
    strbuf_free(&a->dids);
    strbuf_free(&a->dcreated);
    strbuf_free(&a->dreasons);
}

int relay_record_outcome(relay *rl, int64_t *acked, int64_t *dead)
{
    outcome_arrays a;
    exactly_txn t;
    char err[1024], n_ok[32], n_dead[32];
    const char *params[4];
    int rc = -1;

    memset(&t, 0, sizeof(t));
    memset(&a, 0, sizeof(a));
    /* A mark that cannot even be built is a failed mark like any other:
     * the session goes, so that in mode transactional the position is
     * applied before the next batch (invariant 6), rather than the same
     * rows read and committed to Kafka again. The fault site is
     * test-only (fault.h). */
    if (collect_outcome(rl, &a, acked, dead) != 0 ||
        EXACTLY_FAULT("relay_outcome_collect")) {
        snprintf(err, sizeof(err), "out of memory");
        goto failed;
    }
    /* One round trip: the statements go through libpq's pipeline mode,
     * BEGIN to COMMIT, and their results are read at one sync. */
    if (exactly_txn_start(&t, rl->conn, exactly_pg_wait_bound_ms(rl->cfg)) !=
        EXACTLY_OK) {
        snprintf(err, sizeof(err), "%s", t.errmsg);
        goto failed;
    }
    (void)exactly_txn_send(&t, TXN_CONTROL, "BEGIN", 0, NULL, NULL);
    if (*acked) {
        params[0] = strbuf_str(&a.ids);
        params[1] = strbuf_str(&a.created);
        (void)exactly_txn_send(&t, TXN_HANDLER, rl->sql_acked, 2, params,
                               NULL);
    }
    if (*dead) {
        params[0] = strbuf_str(&a.dids);
        params[1] = strbuf_str(&a.dcreated);
        params[2] = strbuf_str(&a.dreasons);
        (void)exactly_txn_send(&t, TXN_DEAD_LETTER, rl->sql_dead, 3, params,
                               NULL);
    }
    snprintf(n_ok, sizeof(n_ok), "%lld", (long long)*acked);
    snprintf(n_dead, sizeof(n_dead), "%lld", (long long)*dead);
    params[0] = rl->r->name;
    params[1] = rl->table_q;
    params[2] = n_ok;
    params[3] = n_dead;
    (void)exactly_txn_send(&t, TXN_HANDLER, rl->sql_state, 4, params, NULL);
    (void)exactly_txn_send(&t, TXN_COMMIT, "COMMIT", 0, NULL, NULL);
    if (exactly_txn_sync(&t) != EXACTLY_OK) {
        snprintf(err, sizeof(err), "%s", t.errmsg);
        exactly_txn_finish(&t);
        goto failed;
    }
    exactly_txn_finish(&t);
    rc = 0;
    goto cleanup;
failed:
    /* Idempotent: the rows stay pending and go out again with their
     * event-ids. Transactional: the next session marks them from the
     * position record the committed batch carried (invariant 6). */
    if (rl->txn)
        exactly_log(EXACTLY_LOG_WARN, "relay",
                    "marking published rows failed; they will be marked "
                    "from the position record",
                    LOG_STR("error", err));
    else
        exactly_log(EXACTLY_LOG_WARN, "relay",
                    "marking published rows failed; they will be sent again",
                    LOG_STR("error", err));
    relay_drop_conn(rl);
cleanup:
    exactly_txn_clear(&t);
    outcome_free(&a);
    return rc;
}

void relay_read_backlog(relay *rl)
{
    char err[1024];
    PGresult *res = NULL;
    metrics_relay *mr;

    if (!rl->m || exactly_now_ms() - rl->backlog_at < METRICS_RELAY_BACKLOG_MS)
        return;
    rl->backlog_at = exactly_now_ms();
    mr = &rl->m->relay;
    if (exactly_pg_exec(rl->conn, rl->sql_backlog, 0, NULL, &res, err,
                        sizeof(err)) != EXACTLY_OK) {
        __atomic_store_n(&mr->backlog_known, 0, __ATOMIC_RELAXED);
        exactly_log(EXACTLY_LOG_WARN, "relay", "reading the backlog failed",
                    LOG_STR("outbox", rl->table_q), LOG_STR("error", err));
        if (PQstatus(rl->conn) != CONNECTION_OK)
            relay_drop_conn(rl);
        return;
    }
    metrics_set(&mr->pending, strtoll(PQgetvalue(res, 0, 0), NULL, 10));
    metrics_set(&mr->oldest_pending_ms,
                strtoll(PQgetvalue(res, 0, 1), NULL, 10));
    __atomic_store_n(&mr->backlog_known, 1, __ATOMIC_RELAXED);
    PQclear(res);
}

void relay_expire(relay *rl)
{
    char err[1024], secs[32], chunk[32];
    const char *params[2];
    PGresult *res = NULL;
    long long deleted = RELAY_EXPIRE_CHUNK;

    snprintf(secs, sizeof(secs), "%lld", (long long)rl->r->retention_s);
    snprintf(chunk, sizeof(chunk), "%d", RELAY_EXPIRE_CHUNK);
    params[0] = secs;
    params[1] = chunk;
    /* A full chunk says there may be more: the next one follows, so the
     * expiry keeps up with any rate of publishing, each chunk its own
     * short transaction. */
    while (deleted >= RELAY_EXPIRE_CHUNK && !(rl->stop && *rl->stop)) {
        if (exactly_pg_exec(rl->conn, rl->sql_expire, 2, params, &res, err,
                            sizeof(err)) != EXACTLY_OK) {
            exactly_log(EXACTLY_LOG_WARN, "relay",
                        "deleting published rows past retention failed",
                        LOG_STR("error", err));
            return;
        }
        deleted = strtoll(PQcmdTuples(res), NULL, 10);
        PQclear(res);
        res = NULL;
    }
}
