/*
 * relay.c - the outbox relay's loop: read a batch of committed rows below
 * the snapshot horizon, produce them, wait for every delivery report, then
 * mark (or delete) what the broker acknowledged and dead-letter what it
 * refused for good; back off when PostgreSQL or Kafka fails, stop when
 * asked or idle. The invariants are stated in relay.h; the parts of a
 * cycle are relay_outbox.c (PostgreSQL), relay_produce.c (records and
 * delivery reports) and relay_txn.c (mode: transactional).
 */
#include "relay.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"
#include "log.h"
#include "pg_conn.h"
#include "clock.h"
#include "relay_internal.h"

/* Sleeps ms in slices, returning early when a stop was asked for. Keeps
 * /readyz current meanwhile (relay_watch_kafka after each slice): a
 * backoff of up to 5 s, or a standby's wait, must not leave the
 * readiness as it was before Kafka went or came back. */
static void nap(relay *rl, int ms)
{
    while (ms > 0 && !(rl->stop && *rl->stop)) {
        int slice = ms < 50 ? ms : 50;

        exactly_sleep_ms(slice);
        ms -= slice;
        relay_watch_kafka(rl);
    }
}

/* Reads the next batch of pending rows of the relay's topic (at most
 * batch_size) into *res. Returns the number of rows (0: none, *res
 * cleared), or -1 when PostgreSQL failed. */
static int read_batch(relay *rl, PGresult **res)
{
    char err[1024], limit[32];
    const char *params[2];
    int n;

    *res = NULL;
    snprintf(limit, sizeof(limit), "%d",
             rl->singles > 0 ? 1 : rl->r->batch_size);
    params[0] = rl->r->topic;
    params[1] = limit;
    if (exactly_pg_exec(rl->conn, rl->sql_select, 2, params, res, err,
                        sizeof(err)) != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_WARN, "relay", "reading the outbox failed",
                    LOG_STR("outbox", rl->table_q), LOG_STR("error", err));
        if (PQstatus(rl->conn) != CONNECTION_OK)
            relay_drop_conn(rl);
        return -1;
    }
    n = PQntuples(*res);
    if (n == 0) {
        PQclear(*res);
        *res = NULL;
    }
    return n;
}

/* Produces the n rows of res (in a Kafka transaction when the relay runs
 * them). Returns 0, -1 when out of memory, or what a failed
 * begin_transaction says (-2: fatal); res is cleared in every case. */
static int send_batch(relay *rl, PGresult *res, int n)
{
    int i;

    free(rl->rows);
    rl->rows = calloc((size_t)n, sizeof(relay_row));
    if (!rl->rows) {
        PQclear(res);
        return -1;
    }
    rl->n_rows = (size_t)n;
    rl->in_flight = 0;
    rl->sent = 0;
    rl->n_asked = 0;
    rl->dr_failed = 0;
    if (rl->txn) {
        rd_kafka_error_t *e = rd_kafka_begin_transaction(rl->rk);

        if (e) {
            PQclear(res);
            return relay_txn_failed(e, "begin_transaction");
        }
        rl->txn_open = 1;
    }
    for (i = 0; i < n; i++) {
        rl->rows[i].id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        rl->rows[i].created = strtoull(PQgetvalue(res, i, 6), NULL, 10);
        relay_produce_row(rl, res, i);
    }
    PQclear(res);
    return 0;
}

/* Waits for every delivery report, whatever it says, before anything is
 * marked (invariant 3). librdkafka bounds the wait by message.timeout.ms.
 * The cycle produces nothing more until then, so what is queued goes out
 * at once (a flush) rather than after linger.ms. Returns 0, or -2 on a
 * fatal producer error. */
static int wait_reports(relay *rl, long long sent_at)
{
    while (rl->in_flight > 0) {
        (void)rd_kafka_flush(rl->rk, 100);
        relay_publish_ready(rl); /* Kafka may be down the whole wait */
        if (rd_kafka_fatal_error(rl->rk, NULL, 0))
            return -2;
        /* Asked to stop while Kafka does not answer: the records still
         * queued or in flight are purged (their reports say so and their
         * rows stay pending), rather than waiting out message.timeout.ms. */
        if (rl->stop && *rl->stop && !rl->purged &&
            exactly_now_ms() - sent_at > 5000) {
            rd_kafka_purge(rl->rk, RD_KAFKA_PURGE_F_QUEUE |
                                       RD_KAFKA_PURGE_F_INFLIGHT);
            rl->purged = 1;
        }
    }
    return 0;
}

/* In mode transactional, commits the batch's Kafka transaction, or aborts
 * it when a record failed. Returns 0, or -2 on a fatal producer error. */
static int settle_batch(relay *rl)
{
    size_t i;
    int failed = rl->dr_failed > 0, rc;

    if (!rl->txn) {
        if (EXACTLY_FAULT("relay_acked")) {
            /* Tests stop here to kill the relay between the
             * acknowledgement and the mark: the rows must then be sent
             * again, with the same event-id. */
            exactly_log(EXACTLY_LOG_WARN, "relay",
                        "fault: paused between acknowledgement and mark",
                        LOG_INT("rows", (int64_t)rl->n_rows));
            exactly_sleep_ms(10000);
        }
        return 0;
    }
    for (i = 0; i < rl->n_rows && !failed; i++)
        failed = rl->rows[i].state == ROW_RETRY;
    /* A record the broker refused poisons the transaction: abort it,
     * dead-letter what was refused for good, send the rest again. */
    if (failed) {
        relay_demote_acked(rl, "the kafka transaction was aborted");
        rc = relay_txn_abort(rl);
    } else {
        rc = relay_txn_commit(rl);
    }
    return rc == -2 ? -2 : 0;
}

/* A broker refuses a whole record batch, and librdkafka reports its
 * error for every record of it (relay_produce.c, batch_refusal): rows
 * refused so with others are not dead-lettered but sent again one per
 * cycle (one per transaction in mode transactional), in their order,
 * from the oldest pending row of the batch to the last one so refused;
 * a row refused alone is dead-lettered, the others are published. Sets
 * rl->singles after the batch was settled: the number of those rows
 * still pending, or one less once a row sent alone was acknowledged or
 * dead-lettered. */
static void plan_singles(relay *rl)
{
    size_t i, last = 0, pending = 0;
    int refused = 0;

    for (i = 0; i < rl->n_rows; i++)
        if (rl->rows[i].refused_with_others) {
            refused = 1;
            last = i;
        }
    if (!refused) {
        if (rl->singles > 0 && rl->n_rows == 1 &&
            rl->rows[0].state != ROW_RETRY)
            rl->singles--;
        return;
    }
    for (i = 0; i <= last; i++)
        pending += rl->rows[i].state == ROW_RETRY;
    rl->singles = pending;
    exactly_log(EXACTLY_LOG_INFO, "relay",
                "kafka refused a record batch as a whole; sending its rows "
                "one at a time", LOG_INT("rows", (int64_t)pending),
                LOG_STR("reason", rl->rows[last].reason));
}

/* Counts and logs what the batch of n rows became once recorded. Returns
 * n, or -1 when records failed for now (the caller backs off). */
static int count_batch(relay *rl, int n, int64_t acked, int64_t dead)
{
    int i;

    rl->st->published += acked;
    rl->st->dead_lettered += dead;
    rl->st->resends += (int64_t)n - acked - dead;
    rl->st->cycles++;
    if (rl->m) {
        metrics_add(&rl->m->relay.published, (uint64_t)acked);
        metrics_add(&rl->m->relay.dead_lettered, (uint64_t)dead);
        metrics_add(&rl->m->relay.resent, (uint64_t)(n - acked - dead));
    }
    for (i = 0; i < n; i++)
        if (rl->rows[i].state == ROW_DEAD)
            exactly_log(EXACTLY_LOG_WARN, "relay", "row dead-lettered",
                        LOG_INT("id", rl->rows[i].id),
                        LOG_STR("reason", rl->rows[i].reason));
    exactly_log(EXACTLY_LOG_DEBUG, "relay", "batch published",
                LOG_INT("rows", n), LOG_INT("acked", acked),
                LOG_INT("dead", dead));
    if (acked + dead < n) {
        const char *why = "";

        for (i = 0; i < n && !why[0]; i++)
            if (rl->rows[i].state == ROW_RETRY)
                why = rl->rows[i].reason;
        exactly_log(EXACTLY_LOG_WARN, "relay",
                    "records failed; sending them again",
                    LOG_INT("rows", (int64_t)n - acked - dead),
                    LOG_STR("reason", why));
        return -1;
    }
    return n;
}

/* One cycle: read a batch, produce it, wait for every report, record the
 * outcome. Returns the number of rows read (0: nothing to do), -1 when
 * PostgreSQL or a record failed (the caller backs off), -2 on a fatal
 * producer error. */
static int cycle(relay *rl)
{
    PGresult *res = NULL;
    int64_t acked, dead;
    long long sent_at;
    int n, rc;

    if (rl->txn && (rc = relay_txn_abort(rl)) != 0)
        return rc; /* an abort that failed before is tried first */
    if ((n = read_batch(rl, &res)) <= 0)
        return n;
    sent_at = exactly_now_ms();
    if ((rc = send_batch(rl, res, n)) != 0)
        return rc;
    if (wait_reports(rl, sent_at) != 0 || settle_batch(rl) != 0)
        return -2;
    plan_singles(rl);
    /* Stopped before the Kafka commit answered: nothing is recorded, as
     * after a crash between the commit and the mark; the caller sees the
     * stop request and ends. */
    if (rl->commit_unanswered)
        return -1;
    if (relay_record_outcome(rl, &acked, &dead) != 0)
        return -1;
    return count_batch(rl, n, acked, dead);
}

/* The log's tap: the relay's warnings and errors, kept in its slot for
 * the status page. */
static void note_error(void *arg, exactly_log_level level, const char *line,
                       size_t len)
{
    (void)level;
    metrics_note_error(arg, line, len);
}

/* Ends the relay: an open Kafka transaction aborted (unless the producer
 * failed fatally, or its commit or abort is under way with no answer:
 * that one is the broker's to complete, and the next start settles it),
 * queued records flushed, everything freed. */
static void finish(relay *rl, int code)
{
    if (code == 0 && rl->txn_open && !rl->commit_unanswered &&
        !rl->abort_unanswered)
        (void)relay_txn_abort(rl);
    rd_kafka_flush(rl->rk, 10000);
    rd_kafka_destroy(rl->rk);
    relay_drop_conn(rl);
    free(rl->rows);
    free(rl->table_q);
    free(rl->state_q);
    free(rl->sql_select);
    free(rl->sql_acked);
    free(rl->sql_done);
    free(rl->sql_dead);
    free(rl->sql_state);
    free(rl->sql_expire);
    free(rl->sql_backlog);
    free(rl->sql_position);
    if (rl->m) {
        exactly_log_set_tap(NULL, NULL);
        __atomic_store_n(&rl->m->relay.backlog_known, 0, __ATOMIC_RELAXED);
    }
}

static void log_fatal(relay *rl)
{
    char fatal[512];
    rd_kafka_resp_err_t ferr = rd_kafka_fatal_error(rl->rk, fatal,
                                                    sizeof(fatal));

    if (relay_is_fenced(ferr))
        exactly_log(EXACTLY_LOG_ERROR, "relay",
                    "fenced: another relay took over this "
                    "transactional.id; exiting",
                    LOG_STR("relay", rl->r->name), LOG_STR("text", fatal));
    else
        exactly_log(EXACTLY_LOG_ERROR, "relay", "fatal producer error",
                    LOG_STR("text", fatal));
}

static void back_off(relay *rl)
{
    nap(rl, rl->backoff_ms);
    rl->backoff_ms = rl->backoff_ms * 2 > 5000 ? 5000 : rl->backoff_ms * 2;
}

int exactly_relay_run(const exactly_relay_opts *o, exactly_relay_stats *st)
{
    relay rl;
    long long idle_since = exactly_now_ms(), last_expire = 0;
    int code = 0, ready;

    memset(&rl, 0, sizeof(rl));
    rl.cfg = o->cfg;
    rl.r = o->relay;
    rl.st = st;
    rl.stop = o->stop;
    rl.m = o->metrics;
    if (rl.m)
        exactly_log_set_tap(note_error, rl.m);
    if (relay_start_producer(&rl) != 0)
        return 2;
    rl.backoff_ms = 100;
    rl.txn = rl.r->mode == CFG_RELAY_TRANSACTIONAL;
    while (!(o->stop && *o->stop)) {
        int n;

        if (o->reopen_log && *o->reopen_log) {
            *o->reopen_log = 0;
            (void)exactly_log_reopen();
        }
        relay_watch_kafka(&rl);
        ready = relay_ensure_conn(&rl);
        if (ready == 3) {
            code = 2; /* refused, as a configuration the relay cannot use */
            break;
        }
        if (ready == 2) {
            /* A standby shows the backlog too: the relay that holds the
             * outbox may be one without metrics, or stuck. */
            relay_read_backlog(&rl);
            nap(&rl, rl.r->poll_interval_ms);
            continue;
        }
        if (ready != 0) {
            back_off(&rl);
            continue;
        }
        /* Before the cycle: a cycle that keeps failing (Kafka down) is
         * when the backlog matters. */
        relay_read_backlog(&rl);
        if (!rl.conn)
            continue;
        n = rl.need_position ? relay_txn_prepare(&rl) : 0;
        if (n == 0)
            n = cycle(&rl);
        if (n == -2) {
            log_fatal(&rl);
            code = 1;
            break;
        }
        if (n < 0) {
            back_off(&rl);
            continue;
        }
        rl.backoff_ms = 100;
        /* Published rows past retention, all of them once a minute,
         * busy or not. */
        if (rl.r->cleanup == CFG_CLEANUP_MARK &&
            exactly_now_ms() - last_expire > 60000) {
            relay_expire(&rl);
            last_expire = exactly_now_ms();
        }
        if (n > 0) {
            idle_since = exactly_now_ms();
            continue;
        }
        if (o->exit_idle_ms > 0 && exactly_now_ms() - idle_since >= o->exit_idle_ms)
            break;
        nap(&rl, rl.r->poll_interval_ms);
    }
    finish(&rl, code);
    return code;
}

void exactly_relay_print_summary(const char *name,
                                 const exactly_relay_stats *st)
{
    printf("relay %s: published %lld, dead-lettered %lld, sent again %lld; "
           "cycles %lld\n",
           name, (long long)st->published, (long long)st->dead_lettered,
           (long long)st->resends, (long long)st->cycles);
}
