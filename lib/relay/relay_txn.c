/*
 * relay_txn.c - mode: transactional (relay.h, invariant 6): a batch is one
 * Kafka transaction closed by a position record naming its rows; when the
 * relay takes the outbox lock it fences older producers of its
 * transactional.id and applies the last committed position (marks the
 * rows it names that are still pending) before reading a batch.
 */
#include "relay.h"

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "log.h"
#include "pg_conn.h"
#include "producer.h"
#include "clock.h"
#include "relay_internal.h"
#include "strbuf.h"

int relay_is_fenced(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR__FENCED ||
           err == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
           err == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
}

int relay_txn_failed(rd_kafka_error_t *e, const char *call)
{
    int fatal = rd_kafka_error_is_fatal(e);

    exactly_log(fatal ? EXACTLY_LOG_ERROR : EXACTLY_LOG_WARN, "relay",
                "kafka transaction call failed", LOG_STR("call", call),
                LOG_STR("code", rd_kafka_err2name(rd_kafka_error_code(e))),
                LOG_STR("error", rd_kafka_error_string(e)));
    rd_kafka_error_destroy(e);
    return fatal ? -2 : -1;
}

static int stopping(const relay *rl)
{
    return rl->stop && *rl->stop;
}

/* init_transactions() or abort_transaction(): both resume the operation
 * going on in the background when called again after a retriable error
 * (librdkafka's contract: a call that times out returns the last error
 * the coordinator gave, e.g. COORDINATOR_LOAD_IN_PROGRESS, or
 * __TIMED_OUT, retriable either way). */
typedef rd_kafka_error_t *(*txn_call)(rd_kafka_t *rk, int timeout_ms);

/* Calls call for at most total_ms in all, in calls of RELAY_TXN_STEP_MS,
 * so that a stop request is seen, and /readyz follows Kafka
 * (relay_watch_kafka), within one while the broker does not answer.
 * Returns NULL once the operation succeeded, else the last error
 * (the caller frees it): one that is fatal or not retriable, or a
 * retriable one once total_ms have passed or, with *stopped set to 1,
 * once a stop was asked for (the operation then unfinished). */
static rd_kafka_error_t *txn_call_in_steps(relay *rl, txn_call call,
                                           int total_ms, int *stopped)
{
    long long deadline = exactly_now_ms() + total_ms, left, t0;
    rd_kafka_error_t *e;

    *stopped = 0;
    for (;;) {
        t0 = exactly_now_ms();
        left = deadline - t0;
        e = call(rl->rk, left < RELAY_TXN_STEP_MS && left > 0
                             ? (int)left : RELAY_TXN_STEP_MS);
        relay_watch_kafka(rl);
        if (!e || !rd_kafka_error_is_retriable(e) ||
            rd_kafka_error_is_fatal(e))
            return e;
        /* An error that came back before the step ended is not asked
         * again at once: the operation goes on in the background. */
        for (; !stopping(rl) && exactly_now_ms() - t0 < RELAY_TXN_STEP_MS;
             relay_watch_kafka(rl))
            exactly_sleep_ms(50);
        if (stopping(rl)) {
            *stopped = 1;
            return e;
        }
        if (exactly_now_ms() >= deadline)
            return e;
        rd_kafka_error_destroy(e);
    }
}

/* Logs that a stop request ended the wait for call, and frees e. */
static void stopped_unanswered(rd_kafka_error_t *e, const char *call,
                               const char *then)
{
    exactly_log(EXACTLY_LOG_WARN, "relay",
                "stopped before kafka answered; nothing is marked",
                LOG_STR("call", call), LOG_STR("then", then),
                LOG_STR("error", rd_kafka_error_string(e)));
    rd_kafka_error_destroy(e);
}

int relay_txn_abort(relay *rl)
{
    rd_kafka_error_t *e;
    int stopped;

    if (!rl->txn_open)
        return 0;
    if (rl->abort_unanswered)
        return -1; /* stopping: left to the next start, below */
    e = txn_call_in_steps(rl, rd_kafka_abort_transaction,
                          RELAY_ABORT_TIMEOUT_MS, &stopped);
    if (stopped) {
        /* Left open: its records are committed by no one, and the next
         * relay's init_transactions aborts it. */
        stopped_unanswered(e, "abort_transaction",
                           "the next start aborts the transaction");
        rl->abort_unanswered = 1;
        return -1;
    }
    if (e)
        return relay_txn_failed(e, "abort_transaction");
    rl->txn_open = 0;
    return 0;
}

void relay_demote_acked(relay *rl, const char *why)
{
    size_t i;

    for (i = 0; i < rl->n_rows; i++)
        if (rl->rows[i].state == ROW_ACKED) {
            rl->rows[i].state = ROW_RETRY;
            snprintf(rl->rows[i].reason, sizeof(rl->rows[i].reason), "%s",
                     why);
        }
}

/* The position record of the batch: {"relay": NAME, "outbox": TABLE,
 * "rows": N, "ids": [[first, last], ...], "created": [low, high]}, the
 * acknowledged rows' ids as runs of consecutive ids in batch order, and
 * the lowest and highest of their transaction ids (created, as decimal
 * strings: an xid8 may exceed a JSON reader's integers). NULL: out of
 * memory. */
static char *position_json(relay *rl, int64_t *n)
{
    json_t *o = json_object(), *ids = json_array(), *run = NULL;
    char *text = NULL, lo_s[24], hi_s[24];
    int64_t last = 0;
    uint64_t lo = UINT64_MAX, hi = 0;
    size_t i;
    int bad = !o || !ids;

    *n = 0;
    for (i = 0; i < rl->n_rows && !bad; i++) {
        int64_t id = rl->rows[i].id;

        if (rl->rows[i].state != ROW_ACKED)
            continue;
        (*n)++;
        lo = rl->rows[i].created < lo ? rl->rows[i].created : lo;
        hi = rl->rows[i].created > hi ? rl->rows[i].created : hi;
        if (run && id == last + 1) {
            bad |= json_array_set_new(run, 1, json_integer(id));
        } else {
            run = json_pack("[II]", (json_int_t)id, (json_int_t)id);
            bad |= !run || json_array_append_new(ids, run);
        }
        last = id;
    }
    if (!bad) {
        bad |= json_object_set_new(o, "relay", json_string(rl->r->name));
        bad |= json_object_set_new(o, "outbox", json_string(rl->table_q));
        bad |= json_object_set_new(o, "rows", json_integer(*n));
        bad |= json_object_set(o, "ids", ids);
        snprintf(lo_s, sizeof(lo_s), "%llu", (unsigned long long)lo);
        snprintf(hi_s, sizeof(hi_s), "%llu", (unsigned long long)hi);
        bad |= json_object_set_new(o, "created",
                                   json_pack("[ss]", lo_s, hi_s));
    }
    if (!bad)
        text = json_dumps(o, JSON_COMPACT);
    json_decref(ids);
    json_decref(o);
    return text;
}

/* Produces the position record into the open transaction and waits for
 * its delivery report, flushing: the record goes out at once, not after
 * linger.ms. Returns 0, -1 (abort and retry) or -2 (fatal). */
static int produce_position(relay *rl, const char *text)
{
    rd_kafka_resp_err_t err;
    long long sent_at;
    int purged = 0;

    rl->pos_in_flight = 1;
    rl->pos_err = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (;;) {
        err = rd_kafka_producev(
            rl->rk, RD_KAFKA_V_TOPIC(rl->r->position_topic),
            RD_KAFKA_V_PARTITION(0),
            RD_KAFKA_V_KEY(rl->r->name, strlen(rl->r->name)),
            RD_KAFKA_V_VALUE((void *)text, strlen(text)),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_OPAQUE((void *)&rl->pos_err), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || relay_wait_room(rl) != 0)
            break; /* queue full and a stop asked for: failed, aborted */
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rl->pos_in_flight = 0;
        rl->pos_err = err;
    }
    sent_at = exactly_now_ms();
    while (rl->pos_in_flight) {
        (void)rd_kafka_flush(rl->rk, 100);
        relay_publish_ready(rl); /* Kafka may be down the whole wait */
        if (rd_kafka_fatal_error(rl->rk, NULL, 0))
            return -2;
        /* Asked to stop while the report does not come: the record is
         * purged (its report says so, and the batch is aborted and stays
         * pending) rather than waiting out message.timeout.ms. */
        if (stopping(rl) && !purged &&
            exactly_now_ms() - sent_at >= RELAY_TXN_STEP_MS) {
            rd_kafka_purge(rl->rk, RD_KAFKA_PURGE_F_QUEUE |
                                       RD_KAFKA_PURGE_F_INFLIGHT);
            purged = 1;
        }
    }
    if (rl->pos_err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        exactly_log(EXACTLY_LOG_WARN, "relay",
                    "the position record failed; the batch is sent again",
                    LOG_STR("topic", rl->r->position_topic),
                    LOG_STR("error", rd_kafka_err2str(rl->pos_err)));
        return -1;
    }
    return 0;
}

int relay_txn_commit(relay *rl)
{
    rd_kafka_error_t *e = NULL;
    char *text = NULL;
    long long since, last_warned;
    int64_t n;
    int rc;

    /* Tests stop here to kill the relay inside an open transaction, its
     * records written and acknowledged, its position not yet. */
    if (EXACTLY_FAULT("relay_txn_sent")) {
        exactly_log(EXACTLY_LOG_WARN, "relay",
                    "fault: paused inside the transaction before the "
                    "position record", LOG_INT("rows", (int64_t)rl->n_rows));
        exactly_sleep_ms(6000);
    }
    text = position_json(rl, &n);
    if (!text) {
        exactly_log(EXACTLY_LOG_ERROR, "relay", "out of memory");
        rc = -1;
        goto abort;
    }
    if (n == 0) {
        /* Nothing acknowledged (every row refused before it was sent):
         * an empty transaction, no position to write. */
        free(text);
        return relay_txn_abort(rl);
    }
    rc = produce_position(rl, text);
    free(text);
    if (rc != 0)
        goto abort;
    /* A commit that timed out is retriable, and its outcome unknown: it
     * may still commit. So it is called again until it answers for good
     * (librdkafka's contract: the call resumes the commit in progress);
     * aborting instead could leave committed records whose rows stay
     * pending and go out a second time. The calls wait in short steps so
     * that a stop request is seen within one; the warning comes once a
     * minute. */
    since = last_warned = exactly_now_ms();
    for (;;) {
        e = rd_kafka_commit_transaction(rl->rk, RELAY_TXN_STEP_MS);
        relay_watch_kafka(rl); /* Kafka may be down the whole wait */
        if (!e || !rd_kafka_error_is_retriable(e) ||
            rd_kafka_error_is_fatal(e))
            break;
        if (stopping(rl)) {
            /* Neither marked nor aborted: the outcome is the broker's,
             * and the next relay to take the outbox settles it as after
             * a crash between the commit and the mark (init_transactions
             * completes or aborts the transaction; the position record
             * read back says which). */
            exactly_log(EXACTLY_LOG_WARN, "relay",
                        "stopped before the kafka commit was answered; "
                        "the next start settles the batch",
                        LOG_INT("rows", n),
                        LOG_INT("waited_ms", exactly_now_ms() - since),
                        LOG_STR("error", rd_kafka_error_string(e)));
            rd_kafka_error_destroy(e);
            rl->commit_unanswered = 1;
            return -1;
        }
        if (exactly_now_ms() - last_warned >= 60000) {
            exactly_log(EXACTLY_LOG_WARN, "relay",
                        "commit of the transaction timed out; trying again",
                        LOG_INT("waited_ms", exactly_now_ms() - since),
                        LOG_STR("error", rd_kafka_error_string(e)));
            last_warned = exactly_now_ms();
        }
        rd_kafka_error_destroy(e);
    }
    if (!e) {
        rl->txn_open = 0;
        /* Tests stop here to kill the relay between the Kafka commit and
         * the mark: the next relay must apply the position record. */
        if (EXACTLY_FAULT("relay_txn_committed")) {
            exactly_log(EXACTLY_LOG_WARN, "relay",
                        "fault: paused between the kafka commit and the "
                        "mark", LOG_INT("rows", n));
            exactly_sleep_ms(6000);
        }
        return 0;
    }
    rc = relay_txn_failed(e, "commit_transaction");
    if (rc == -2)
        return -2;
abort:
    relay_demote_acked(rl, "the kafka transaction was aborted");
    if (relay_txn_abort(rl) == -2)
        return -2;
    return rc;
}

/* Reads the records of partition 0 of the position topic from offset
 * start up to the end a read_committed reader sees, and keeps the value
 * of the last one keyed by this relay's name in *out (malloc'd; left as
 * it is when there is none). Returns 0, or -1 (Kafka did not answer
 * within 30 s, or a stop was asked for first). */
static int read_positions_from(relay *rl, rd_kafka_t *rk, int64_t start,
                               char **out)
{
    rd_kafka_topic_partition_list_t *parts =
        rd_kafka_topic_partition_list_new(1);
    long long deadline = exactly_now_ms() + 30000;
    size_t name_len = strlen(rl->r->name);
    int rc = -1;

    if (!parts)
        return -1;
    rd_kafka_topic_partition_list_add(parts, rl->r->position_topic, 0)
        ->offset = start;
    if (rd_kafka_assign(rk, parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
        goto cleanup;
    while (exactly_now_ms() < deadline && !stopping(rl)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);

        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            rd_kafka_message_destroy(m);
            rc = 0;
            break;
        }
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->key &&
            m->key_len == name_len &&
            memcmp(m->key, rl->r->name, name_len) == 0) {
            char *copy = malloc(m->len + 1);

            if (!copy) {
                rd_kafka_message_destroy(m);
                break;
            }
            if (m->len)
                memcpy(copy, m->payload, m->len);
            copy[m->len] = '\0';
            free(*out);
            *out = copy;
        } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            exactly_log(EXACTLY_LOG_DEBUG, "relay",
                        "reading the position topic",
                        LOG_STR("error", rd_kafka_message_errstr(m)));
        }
        rd_kafka_message_destroy(m);
    }
    (void)rd_kafka_assign(rk, NULL);
cleanup:
    rd_kafka_topic_partition_list_destroy(parts);
    return rc;
}

/* Logs why the position topic was not read: a stop request, or error. */
static void position_unread(const relay *rl, const char *error)
{
    if (stopping(rl))
        exactly_log(EXACTLY_LOG_WARN, "relay",
                    "stopped before the position topic was read; nothing "
                    "is marked", LOG_STR("topic", rl->r->position_topic));
    else
        exactly_log(EXACTLY_LOG_WARN, "relay",
                    "reading the position topic failed",
                    LOG_STR("topic", rl->r->position_topic),
                    LOG_STR("error", error));
}

/* The last committed position record of this relay, read with
 * read_committed: its value in *out (NULL: none). The window read back
 * from the end grows until it holds one (aborted records and transaction
 * markers take offsets too). Returns 0 or -1. */
static int read_position(relay *rl, char **out)
{
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    char err[512];
    int64_t lo = 0, hi = 0, window = 64, start;
    rd_kafka_resp_err_t kerr;
    long long deadline = exactly_now_ms() + 10000;
    int rc = -1;

    *out = NULL;
    conf = exactly_kafka_position_reader_conf(rl->cfg, rl->r, err,
                                              sizeof(err));
    if (!conf) {
        exactly_log(EXACTLY_LOG_ERROR, "relay", "position reader refused",
                    LOG_STR("error", err));
        return -1;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        exactly_log(EXACTLY_LOG_ERROR, "relay", "position reader refused",
                    LOG_STR("error", err));
        return -1;
    }
    rd_kafka_poll_set_consumer(rk);
    /* In steps, asked again after each timeout, so that a stop request
     * is seen within one. */
    do
        kerr = rd_kafka_query_watermark_offsets(
            rk, rl->r->position_topic, 0, &lo, &hi, RELAY_TXN_STEP_MS);
    while (kerr == RD_KAFKA_RESP_ERR__TIMED_OUT && !stopping(rl) &&
           exactly_now_ms() < deadline);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        position_unread(rl, rd_kafka_err2str(kerr));
        goto cleanup;
    }
    rc = 0;
    while (hi > lo && !*out) {
        start = hi - window > lo ? hi - window : lo;
        if (read_positions_from(rl, rk, start, out) != 0) {
            position_unread(rl, "no answer within 30 s");
            rc = -1;
            break;
        }
        if (start == lo)
            break;
        window *= 8;
    }
cleanup:
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (rc != 0) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

/* Marks (or deletes) the rows the last committed position record names
 * that are still pending: their records are committed, and the relay
 * died (or PostgreSQL failed) between the Kafka commit and the mark. A
 * row is named by its id and, when the record has the range (every
 * record written since it was added), a transaction id within it: an id
 * given again to another row after TRUNCATE ... RESTART IDENTITY names
 * nothing. A record without the range is applied by ids alone. The rows
 * marked count as published, in relay_state by the same statement and in
 * the metrics slot. */
static int apply_position(relay *rl, const char *text)
{
    json_error_t jerr;
    json_t *o = json_loads(text, 0, &jerr), *ids, *run, *created;
    strbuf arr = {0};
    const char *outbox, *params[5], *lo = NULL, *hi = NULL;
    char err[1024];
    PGresult *res = NULL;
    size_t i;
    int64_t named = 0, marked = 0;
    int rc = -1;

    ids = o ? json_object_get(o, "ids") : NULL;
    outbox = o ? json_string_value(json_object_get(o, "outbox")) : NULL;
    created = o ? json_object_get(o, "created") : NULL;
    if (created) {
        lo = json_string_value(json_array_get(created, 0));
        hi = json_string_value(json_array_get(created, 1));
    }
    if (!json_is_array(ids) || !outbox || (created && (!lo || !hi))) {
        exactly_log(EXACTLY_LOG_ERROR, "relay",
                    "the last position record is not one of a relay",
                    LOG_STR("topic", rl->r->position_topic));
        goto cleanup;
    }
    if (strcmp(outbox, rl->table_q) != 0) {
        /* The relay was pointed at another table since: its ids mean
         * nothing here. */
        exactly_log(EXACTLY_LOG_WARN, "relay",
                    "the last position record names another outbox; "
                    "ignored", LOG_STR("outbox", outbox),
                    LOG_STR("relay_outbox", rl->table_q));
        rc = 0;
        goto cleanup;
    }
    strbuf_array_begin(&arr);
    json_array_foreach(ids, i, run) {
        json_int_t a = json_integer_value(json_array_get(run, 0));
        json_int_t b = json_integer_value(json_array_get(run, 1));

        for (; a <= b && !arr.oom; a++, named++)
            strbuf_array_elem_int(&arr, a);
    }
    strbuf_array_end(&arr);
    if (arr.oom) {
        exactly_log(EXACTLY_LOG_ERROR, "relay", "out of memory");
        goto cleanup;
    }
    /* sql_position: ids, range, relay, outbox; sql_done: ids, relay,
     * outbox (relay_outbox.c, counted_mark). */
    params[0] = strbuf_str(&arr);
    params[1] = created ? lo : rl->r->name;
    params[2] = created ? hi : rl->table_q;
    params[3] = rl->r->name;
    params[4] = rl->table_q;
    if (exactly_pg_exec(rl->conn, created ? rl->sql_position : rl->sql_done,
                        created ? 5 : 3, params, &res, err,
                        sizeof(err)) != EXACTLY_OK)
        goto failed;
    marked = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    res = NULL;
    rl->st->published += marked;
    if (rl->m)
        metrics_add(&rl->m->relay.published, (uint64_t)marked);
    exactly_log(marked > 0 ? EXACTLY_LOG_INFO : EXACTLY_LOG_DEBUG, "relay",
                "position applied", LOG_INT("rows_named", named),
                LOG_INT("rows_marked", marked));
    rc = 0;
    goto cleanup;
failed:
    exactly_log(EXACTLY_LOG_WARN, "relay", "applying the position failed",
                LOG_STR("error", err));
    relay_drop_conn(rl);
cleanup:
    PQclear(res);
    strbuf_free(&arr);
    json_decref(o);
    return rc;
}

int relay_txn_prepare(relay *rl)
{
    rd_kafka_error_t *e;
    char *text = NULL;
    int rc, stopped;

    /* Initialised before (the lock taken back in the same process, or
     * this call again after a failed read): another relay may have
     * initialised the transactional.id since, a transaction of this one
     * may be open, and the broker may still be writing the markers of
     * its last commit, which a read_committed reader does not see until
     * then: the position read now could be the one before, and the rows
     * of that commit would go out again. librdkafka initialises a
     * producer once, so a new one is initialised. */
    if (rl->txn_ready) {
        exactly_log(EXACTLY_LOG_INFO, "relay",
                    "initialising kafka transactions again on a new "
                    "producer", LOG_STR("relay", rl->r->name));
        if (relay_renew_producer(rl) != 0)
            return -1;
    }
    if (!rl->txn_ready) {
        e = txn_call_in_steps(rl, rd_kafka_init_transactions,
                              RELAY_INIT_TIMEOUT_MS, &stopped);
        if (stopped) {
            /* Nothing was sent: the outbox is as it was. */
            stopped_unanswered(e, "init_transactions",
                               "the next start initialises the producer");
            return -1;
        }
        if (e)
            return relay_txn_failed(e, "init_transactions");
        rl->txn_ready = 1;
    }
    if (read_position(rl, &text) != 0)
        return -1;
    rc = text ? apply_position(rl, text) : 0;
    free(text);
    if (rc == 0)
        rl->need_position = 0;
    return rc;
}
