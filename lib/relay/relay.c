/*
 * relay.c - the outbox relay's loop: read a batch of committed rows below
 * the snapshot horizon, produce them, wait for every delivery report, then
 * mark (or delete) what the broker acknowledged and dead-letter what it
 * refused for good. The invariants are stated in relay.h.
 */
#include "relay.h"

#include <errno.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"
#include "log.h"
#include "pg_conn.h"
#include "producer.h"
#include "strbuf.h"
#include "txn.h"

/* Topics a cycle asks the broker about again, at most. */
#define RELAY_ASKED_MAX 4
/* How long one such question may take. */
#define RELAY_ASK_TIMEOUT_MS 5000

/* Where one row of a batch stands. */
typedef enum row_state {
    ROW_UNSENT = 0,
    ROW_IN_FLIGHT,
    ROW_ACKED,    /* the broker has it: mark or delete */
    ROW_DEAD,     /* refused for good: dead-letter with reason */
    ROW_RETRY     /* failed for now: stays pending, sent next cycle */
} row_state;

typedef struct relay_row {
    int64_t id;
    row_state state;
    char reason[256];
} relay_row;

typedef struct relay {
    const exactly_config *cfg;
    const cfg_relay *r;
    PGconn *conn;
    rd_kafka_t *rk;
    char *table_q;          /* "schema"."table" */
    char *state_q;          /* "schema".relay_state of the framework */
    char *sql_select, *sql_done, *sql_dead, *sql_state, *sql_expire;
    char *sql_backlog;
    char lock_key[300];
    relay_row *rows;
    size_t n_rows;
    size_t in_flight;
    int backoff_ms;
    int locked;             /* this session holds the outbox's lock */
    int waiting;            /* another relay holds it (said once) */
    volatile sig_atomic_t *stop;
    int purged;
    /* Topics whose metadata this cycle asked the broker for again (see
     * ask_topic). */
    char asked[RELAY_ASKED_MAX][256];
    int n_asked;
    exactly_relay_stats *st;
    /* mode: transactional (invariant 6) */
    int txn;                /* the relay runs transactions */
    int txn_ready;          /* init_transactions() succeeded */
    int txn_open;           /* a transaction was begun, not yet ended */
    int need_position;      /* the lock was (re)taken: apply the position */
    int dr_failed;          /* delivery reports with an error, this batch */
    int pos_in_flight;      /* the position record awaits its report */
    rd_kafka_resp_err_t pos_err;
    metrics_slot *m;        /* NULL: not under a supervisor */
    long long backlog_at;   /* when the backlog was last read */
} relay;

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Sleeps ms in slices, returning early when a stop was asked for. */
static void nap(const exactly_relay_opts *o, int ms)
{
    while (ms > 0 && !(o->stop && *o->stop)) {
        int slice = ms < 50 ? ms : 50;

        sleep_ms(slice);
        ms -= slice;
    }
}

/* ---- delivery reports ----------------------------------------------- */

/* Errors that no resend will cure: the row is dead-lettered. Everything
 * else (timeouts, a broker down, a leader moving) leaves it pending. */
static int permanent(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return 1;
    default:
        return 0;
    }
}

static void set_failed(relay_row *row, rd_kafka_resp_err_t err,
                       const char *topic)
{
    row->state = permanent(err) ? ROW_DEAD : ROW_RETRY;
    snprintf(row->reason, sizeof(row->reason), "kafka refused the record "
             "for topic '%s': %s (%s)", topic ? topic : "?",
             rd_kafka_err2str(err), rd_kafka_err2name(err));
}

/* Runs inside rd_kafka_poll() on the relay's thread. */
static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    relay *rl = opaque;
    relay_row *row = m->_private;

    (void)rk;
    if (m->_private == (void *)&rl->pos_err) {
        rl->pos_err = m->err;
        rl->pos_in_flight = 0;
        return;
    }
    if (!row)
        return;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        row->state = ROW_ACKED;
    } else {
        set_failed(row, m->err, m->rkt ? rd_kafka_topic_name(m->rkt) : NULL);
        rl->dr_failed++;
    }
    rl->in_flight--;
}

/* ---- PostgreSQL ----------------------------------------------------- */

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

static int build_sql(relay *rl)
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
    rl->sql_select = fmt2(
        "SELECT id, coalesce(topic, $1), key, value, headers::text,"
        " event_id::text FROM %s"
        " WHERE published_at IS NULL AND dead_reason IS NULL"
        " AND created < pg_snapshot_xmin(pg_current_snapshot())"
        " ORDER BY created, id LIMIT $2::int",
        rl->table_q, NULL);
    rl->sql_done = fmt2(r->cleanup == CFG_CLEANUP_DELETE
                            ? "DELETE FROM %s WHERE id = ANY($1::bigint[])"
                            : "UPDATE %s SET published_at = now()"
                              " WHERE id = ANY($1::bigint[])"
                              " AND published_at IS NULL",
                        rl->table_q, NULL);
    rl->sql_dead = fmt2("UPDATE %s o SET dead_reason = u.r, dead_at = now()"
                        " FROM unnest($1::bigint[], $2::text[]) AS u(i, r)"
                        " WHERE o.id = u.i",
                        rl->table_q, NULL);
    rl->sql_state = fmt2(
        "INSERT INTO %s AS s (relay, outbox, published, dead,"
        " published_since_start) VALUES ($1, $2, $3, $4, $3)"
        " ON CONFLICT (relay) DO UPDATE SET outbox = EXCLUDED.outbox,"
        " published = s.published + $3, dead = s.dead + $4,"
        " published_since_start = CASE WHEN $5 = '1' THEN 0"
        "  ELSE s.published_since_start END + $3,"
        " started_at = CASE WHEN $5 = '1' THEN now() ELSE s.started_at END,"
        " updated_at = now()",
        rl->state_q, NULL);
    rl->sql_expire = fmt2(
        "DELETE FROM %s WHERE ctid = ANY (ARRAY(SELECT ctid FROM %s"
        " WHERE published_at < now() - make_interval(secs =>"
        " $1::double precision) LIMIT 10000))",
        rl->table_q, rl->table_q);
    /* The backlog for the metrics: the partial index outbox_pending holds
     * exactly these rows. */
    rl->sql_backlog = fmt2(
        "SELECT count(*), coalesce((extract(epoch FROM now() -"
        " min(created_at)) * 1000)::bigint, 0) FROM %s"
        " WHERE published_at IS NULL AND dead_reason IS NULL",
        rl->table_q, NULL);
    return rl->sql_select && rl->sql_done && rl->sql_dead && rl->sql_state &&
                   rl->sql_expire && rl->sql_backlog
               ? 0
               : -1;
}

static void drop_conn(relay *rl)
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

/* Connects and takes the outbox's advisory lock. Returns 0 when this relay
 * may publish, 1 when PostgreSQL failed (back off), 2 when another relay
 * holds the lock (try again after the poll interval). */
static int ensure_conn(relay *rl)
{
    char err[1024];
    const char *params[1];
    PGresult *res = NULL;
    exactly_err rc;
    int got;

    if (rl->conn && PQstatus(rl->conn) == CONNECTION_OK && rl->locked)
        return 0;
    if (!rl->conn || PQstatus(rl->conn) != CONNECTION_OK) {
        drop_conn(rl);
        rl->conn = exactly_pg_connect(rl->cfg, "exactly-relay", err,
                                      sizeof(err));
        if (!rl->conn) {
            exactly_log(EXACTLY_LOG_WARN, "relay", "postgres unreachable",
                        LOG_STR("error", err));
            return 1;
        }
        if (rl->m) {
            metrics_add(&rl->m->relay.connects, 1);
            __atomic_store_n(&rl->m->ready, 1, __ATOMIC_RELAXED);
        }
    }
    if (!rl->table_q && build_sql(rl) != 0) {
        exactly_log(EXACTLY_LOG_ERROR, "relay", "out of memory");
        drop_conn(rl);
        return 1;
    }
    params[0] = rl->lock_key;
    rc = exactly_pg_exec(rl->conn,
                         "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                         1, params, &res, err, sizeof(err));
    if (rc != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_WARN, "relay", "advisory lock failed",
                    LOG_STR("error", err));
        drop_conn(rl);
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
    rl->locked = 1;
    rl->need_position = rl->txn; /* another relay may have run meanwhile */
    if (rl->m)
        __atomic_store_n(&rl->m->relay.publishing, 1, __ATOMIC_RELAXED);
    exactly_log(EXACTLY_LOG_INFO, "relay", "relay publishes",
                LOG_STR("relay", rl->r->name), LOG_STR("outbox", rl->table_q));
    return 0;
}

/* ---- producing ------------------------------------------------------ */

/* Adds the row's own headers (a JSON object of name to value; a string
 * value is sent as its bytes, null as a null value, anything else as its
 * JSON text) after event-id. Returns 0, or -1 with a reason. */
static int add_headers(rd_kafka_headers_t *h, const char *json_text,
                       char *why, size_t why_size)
{
    json_error_t jerr;
    json_t *obj;
    const char *name;
    json_t *v;

    if (!json_text)
        return 0;
    obj = json_loads(json_text, JSON_DECODE_ANY, &jerr);
    if (!obj || !json_is_object(obj)) {
        snprintf(why, why_size, "headers must be a JSON object");
        json_decref(obj);
        return -1;
    }
    json_object_foreach(obj, name, v) {
        if (strcmp(name, "event-id") == 0)
            continue; /* the relay's own, from event_id */
        if (json_is_null(v)) {
            rd_kafka_header_add(h, name, -1, NULL, 0);
        } else if (json_is_string(v)) {
            rd_kafka_header_add(h, name, -1, json_string_value(v),
                                (ssize_t)json_string_length(v));
        } else {
            char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

            if (!text) {
                snprintf(why, why_size, "out of memory");
                json_decref(obj);
                return -1;
            }
            rd_kafka_header_add(h, name, -1, text, -1);
            free(text);
        }
    }
    json_decref(obj);
    return 0;
}

/* Decodes a bytea column of res; *out NULL for SQL NULL. The caller
 * PQfreemem()s. Returns -1 out of memory. */
static int bytea_of(const PGresult *res, int i, int col, unsigned char **out,
                    size_t *len)
{
    *out = NULL;
    *len = 0;
    if (PQgetisnull(res, i, col))
        return 0;
    *out = PQunescapeBytea((const unsigned char *)PQgetvalue(res, i, col), len);
    return *out ? 0 : -1;
}

/* librdkafka remembers a topic that the broker said does not exist and
 * refuses records for it at once (_UNKNOWN_TOPIC) until its next metadata
 * refresh (topic.metadata.refresh.interval.ms, 5 minutes by default): a
 * row sent again after its topic was created would be dead-lettered again
 * on that stale answer. This asks the broker about topic (once per topic
 * and cycle). Returns 1 when it asked now (produce once more: the answer
 * has replaced the cached one), 0 when it had asked already this cycle or
 * the name is longer than any Kafka accepts (249 bytes; the refusal
 * stands), -1 when it cannot ask this cycle (too many topics, or no
 * answer: the row waits for the next). */
static int ask_topic(relay *rl, const char *topic)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt;
    rd_kafka_resp_err_t err;
    int i;

    for (i = 0; i < rl->n_asked; i++)
        if (strcmp(rl->asked[i], topic) == 0)
            return 0;
    if (strlen(topic) >= sizeof(rl->asked[0]))
        return 0;
    if (rl->n_asked == RELAY_ASKED_MAX)
        return -1;
    snprintf(rl->asked[rl->n_asked++], sizeof(rl->asked[0]), "%s", topic);
    rkt = rd_kafka_topic_new(rl->rk, topic, NULL);
    if (!rkt)
        return -1;
    err = rd_kafka_metadata(rl->rk, 0, rkt, &md, RELAY_ASK_TIMEOUT_MS);
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    exactly_log(EXACTLY_LOG_INFO, "relay",
                "asked the broker again about a topic it called unknown",
                LOG_STR("topic", topic), LOG_STR("answer", rd_kafka_err2name(err)));
    return err == RD_KAFKA_RESP_ERR_NO_ERROR ? 1 : -1;
}

/* Produces row i of res. The row's state says what became of it. */
static void produce_row(relay *rl, const PGresult *res, int i)
{
    relay_row *row = &rl->rows[i];
    unsigned char *key = NULL, *value = NULL;
    size_t key_len, value_len;
    rd_kafka_headers_t *h = NULL;
    rd_kafka_resp_err_t err;
    const char *topic = PQgetisnull(res, i, 1) ? NULL : PQgetvalue(res, i, 1);
    const char *eid = PQgetvalue(res, i, 5);

    if (!topic) {
        row->state = ROW_DEAD;
        snprintf(row->reason, sizeof(row->reason),
                 "the row names no topic and relay '%s' has none",
                 rl->r->name);
        return;
    }
    if (bytea_of(res, i, 2, &key, &key_len) ||
        bytea_of(res, i, 3, &value, &value_len) ||
        !(h = rd_kafka_headers_new(4))) {
        row->state = ROW_RETRY;
        snprintf(row->reason, sizeof(row->reason), "out of memory");
        goto cleanup;
    }
    rd_kafka_header_add(h, "event-id", -1, eid, -1);
    if (add_headers(h, PQgetisnull(res, i, 4) ? NULL : PQgetvalue(res, i, 4),
                    row->reason, sizeof(row->reason))) {
        row->state = ROW_DEAD;
        goto cleanup;
    }
    for (;;) {
        int asked;

        err = rd_kafka_producev(rl->rk, RD_KAFKA_V_TOPIC(topic),
                                RD_KAFKA_V_KEY(key, key_len),
                                RD_KAFKA_V_VALUE(value, value_len),
                                RD_KAFKA_V_HEADERS(h),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_OPAQUE(row), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(rl->rk, 50);
            continue;
        }
        if (err != RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
            (asked = ask_topic(rl, topic)) == 0)
            break;
        if (asked < 0) {
            row->state = ROW_RETRY;
            snprintf(row->reason, sizeof(row->reason),
                     "topic '%s' is unknown to the producer; asked again "
                     "next cycle", topic);
            goto cleanup;
        }
    }
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        h = NULL; /* the message owns them now */
        row->state = ROW_IN_FLIGHT;
        rl->in_flight++;
    } else {
        set_failed(row, err, topic);
    }
cleanup:
    if (h)
        rd_kafka_headers_destroy(h);
    PQfreemem(key);
    PQfreemem(value);
}

/* ---- mode: transactional (invariant 6) ------------------------------ */

static int is_fenced(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR__FENCED ||
           err == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
           err == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
}

/* Logs a failed transactional call and frees e. Returns -2 when the
 * producer cannot go on (fenced, or another fatal error: the relay exits
 * 1), -1 otherwise (the caller aborts; the rows stay pending). */
static int txn_failed(rd_kafka_error_t *e, const char *call)
{
    int fatal = rd_kafka_error_is_fatal(e);

    exactly_log(fatal ? EXACTLY_LOG_ERROR : EXACTLY_LOG_WARN, "relay",
                "kafka transaction call failed", LOG_STR("call", call),
                LOG_STR("code", rd_kafka_err2name(rd_kafka_error_code(e))),
                LOG_STR("error", rd_kafka_error_string(e)));
    rd_kafka_error_destroy(e);
    return fatal ? -2 : -1;
}

/* Aborts the open transaction, if any. Returns 0, -1 (the abort itself
 * failed for now: tried again before the next batch) or -2 (fatal). */
static int txn_abort(relay *rl)
{
    rd_kafka_error_t *e;

    if (!rl->txn_open)
        return 0;
    e = rd_kafka_abort_transaction(rl->rk, 30000);
    if (e)
        return txn_failed(e, "abort_transaction");
    rl->txn_open = 0;
    return 0;
}

/* After an abort nothing of the batch counts as published. */
static void demote_acked(relay *rl, const char *why)
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
 * "rows": N, "ids": [[first, last], ...]}, the acknowledged rows' ids as
 * runs of consecutive ids in batch order. NULL: out of memory. */
static char *position_json(relay *rl, int64_t *n)
{
    json_t *o = json_object(), *ids = json_array(), *run = NULL;
    char *text = NULL;
    int64_t last = 0;
    size_t i;
    int bad = !o || !ids;

    *n = 0;
    for (i = 0; i < rl->n_rows && !bad; i++) {
        int64_t id = rl->rows[i].id;

        if (rl->rows[i].state != ROW_ACKED)
            continue;
        (*n)++;
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
    }
    if (!bad)
        text = json_dumps(o, JSON_COMPACT);
    json_decref(ids);
    json_decref(o);
    return text;
}

/* Produces the position record into the open transaction and waits for
 * its delivery report. Returns 0, -1 (abort and retry) or -2 (fatal). */
static int produce_position(relay *rl, const char *text)
{
    rd_kafka_resp_err_t err;

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
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        rd_kafka_poll(rl->rk, 50);
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rl->pos_in_flight = 0;
        rl->pos_err = err;
    }
    while (rl->pos_in_flight) {
        rd_kafka_poll(rl->rk, 100);
        if (rd_kafka_fatal_error(rl->rk, NULL, 0))
            return -2;
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

/* Ends the batch's transaction: the position record, then the commit.
 * On success every acknowledged row of the batch is published among the
 * committed records; on failure the transaction is aborted and none is.
 * Returns 0, -1 (aborted: the rows stay pending) or -2 (fatal). */
static int txn_commit(relay *rl)
{
    rd_kafka_error_t *e = NULL;
    char *text = NULL;
    int64_t n;
    int rc;

    /* Tests stop here to kill the relay inside an open transaction, its
     * records written and acknowledged, its position not yet. */
    if (EXACTLY_FAULT("relay_txn_sent")) {
        exactly_log(EXACTLY_LOG_WARN, "relay",
                    "fault: paused inside the transaction before the "
                    "position record", LOG_INT("rows", (int64_t)rl->n_rows));
        sleep_ms(6000);
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
        return txn_abort(rl);
    }
    rc = produce_position(rl, text);
    free(text);
    if (rc != 0)
        goto abort;
    /* A commit that timed out is retriable, and its outcome unknown: it
     * may still commit. So it is called again until it answers for good
     * (librdkafka's contract); aborting instead could leave committed
     * records whose rows stay pending and go out a second time. */
    for (;;) {
        e = rd_kafka_commit_transaction(rl->rk, 60000);
        if (!e || !rd_kafka_error_is_retriable(e) ||
            rd_kafka_error_is_fatal(e))
            break;
        exactly_log(EXACTLY_LOG_WARN, "relay",
                    "commit of the transaction timed out; trying again",
                    LOG_STR("error", rd_kafka_error_string(e)));
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
            sleep_ms(6000);
        }
        return 0;
    }
    rc = txn_failed(e, "commit_transaction");
    if (rc == -2)
        return -2;
abort:
    demote_acked(rl, "the kafka transaction was aborted");
    if (txn_abort(rl) == -2)
        return -2;
    return rc;
}

/* Reads the records of partition 0 of the position topic from offset
 * start up to the end a read_committed reader sees, and keeps the value
 * of the last one keyed by this relay's name in *out (malloc'd; left as
 * it is when there is none). Returns 0, or -1 (Kafka did not answer). */
static int read_positions_from(relay *rl, rd_kafka_t *rk, int64_t start,
                               char **out)
{
    rd_kafka_topic_partition_list_t *parts =
        rd_kafka_topic_partition_list_new(1);
    long long deadline = now_ms() + 30000;
    size_t name_len = strlen(rl->r->name);
    int rc = -1;

    if (!parts)
        return -1;
    rd_kafka_topic_partition_list_add(parts, rl->r->position_topic, 0)
        ->offset = start;
    if (rd_kafka_assign(rk, parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
        goto cleanup;
    while (now_ms() < deadline) {
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
    kerr = rd_kafka_query_watermark_offsets(rk, rl->r->position_topic, 0, &lo,
                                            &hi, 10000);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        exactly_log(EXACTLY_LOG_WARN, "relay",
                    "reading the position topic failed",
                    LOG_STR("topic", rl->r->position_topic),
                    LOG_STR("error", rd_kafka_err2str(kerr)));
        goto cleanup;
    }
    rc = 0;
    while (hi > lo && !*out) {
        start = hi - window > lo ? hi - window : lo;
        if (read_positions_from(rl, rk, start, out) != 0) {
            exactly_log(EXACTLY_LOG_WARN, "relay",
                        "reading the position topic failed",
                        LOG_STR("topic", rl->r->position_topic),
                        LOG_STR("error", "no answer within 30 s"));
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
 * died (or PostgreSQL failed) between the Kafka commit and the mark. */
static int apply_position(relay *rl, const char *text)
{
    json_error_t jerr;
    json_t *o = json_loads(text, 0, &jerr), *ids, *run;
    strbuf arr = {0};
    const char *outbox, *params[5];
    char err[1024], n_ok[32];
    PGresult *res = NULL;
    size_t i;
    int64_t named = 0, marked = 0;
    int rc = -1;

    ids = o ? json_object_get(o, "ids") : NULL;
    outbox = o ? json_string_value(json_object_get(o, "outbox")) : NULL;
    if (!json_is_array(ids) || !outbox) {
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
    params[0] = strbuf_str(&arr);
    if (exactly_pg_exec(rl->conn, rl->sql_done, 1, params, &res, err,
                        sizeof(err)) != EXACTLY_OK)
        goto failed;
    marked = strtoll(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    res = NULL;
    if (marked > 0) {
        snprintf(n_ok, sizeof(n_ok), "%lld", (long long)marked);
        params[0] = rl->r->name;
        params[1] = rl->table_q;
        params[2] = n_ok;
        params[3] = "0";
        params[4] = "0";
        if (exactly_pg_exec(rl->conn, rl->sql_state, 5, params, NULL, err,
                            sizeof(err)) != EXACTLY_OK)
            goto failed;
        rl->st->published += marked;
    }
    exactly_log(marked > 0 ? EXACTLY_LOG_INFO : EXACTLY_LOG_DEBUG, "relay",
                "position applied", LOG_INT("rows_named", named),
                LOG_INT("rows_marked", marked));
    rc = 0;
    goto cleanup;
failed:
    exactly_log(EXACTLY_LOG_WARN, "relay", "applying the position failed",
                LOG_STR("error", err));
    drop_conn(rl);
cleanup:
    PQclear(res);
    strbuf_free(&arr);
    json_decref(o);
    return rc;
}

/* Before the first batch after the lock was taken: init_transactions()
 * once per process (it fences every older producer of this
 * transactional.id and aborts its open transaction), then the last
 * committed position applied to the outbox. Returns 0, -1 (try again
 * after a backoff) or -2 (fatal). */
static int txn_prepare(relay *rl)
{
    rd_kafka_error_t *e;
    char *text = NULL;
    int rc;

    if (!rl->txn_ready) {
        e = rd_kafka_init_transactions(rl->rk, 60000);
        if (e)
            return txn_failed(e, "init_transactions");
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

/* ---- one cycle ------------------------------------------------------ */

/* Marks, deletes and dead-letters what the batch's delivery reports said,
 * in one transaction. Returns 0, or -1 (the rows stay pending: sent again,
 * same event-id). */
static int record_outcome(relay *rl, int64_t *acked, int64_t *dead,
                          int first)
{
    strbuf done = {0}, dids = {0}, dreasons = {0};
    exactly_txn t;
    char err[1024], n_ok[32], n_dead[32];
    const char *params[5];
    size_t i;
    int rc = -1;

    *acked = *dead = 0;
    memset(&t, 0, sizeof(t));
    strbuf_array_begin(&done);
    strbuf_array_begin(&dids);
    strbuf_array_begin(&dreasons);
    for (i = 0; i < rl->n_rows; i++) {
        relay_row *row = &rl->rows[i];

        if (row->state == ROW_ACKED) {
            strbuf_array_elem_int(&done, row->id);
            (*acked)++;
        } else if (row->state == ROW_DEAD) {
            strbuf_array_elem_int(&dids, row->id);
            strbuf_array_elem_str(&dreasons, row->reason);
            (*dead)++;
        }
    }
    strbuf_array_end(&done);
    strbuf_array_end(&dids);
    strbuf_array_end(&dreasons);
    if (done.oom || dids.oom || dreasons.oom)
        goto cleanup;
    /* One round trip: the statements go through libpq's pipeline mode,
     * BEGIN to COMMIT, and their results are read at one sync. */
    if (exactly_txn_start(&t, rl->conn, exactly_pg_wait_bound_ms(rl->cfg)) !=
        EXACTLY_OK) {
        snprintf(err, sizeof(err), "%s", t.errmsg);
        goto failed;
    }
    (void)exactly_txn_send(&t, TXN_CONTROL, "BEGIN", 0, NULL, NULL);
    if (*acked) {
        params[0] = strbuf_str(&done);
        (void)exactly_txn_send(&t, TXN_HANDLER, rl->sql_done, 1, params,
                               NULL);
    }
    if (*dead) {
        params[0] = strbuf_str(&dids);
        params[1] = strbuf_str(&dreasons);
        (void)exactly_txn_send(&t, TXN_DEAD_LETTER, rl->sql_dead, 2, params,
                               NULL);
    }
    snprintf(n_ok, sizeof(n_ok), "%lld", (long long)*acked);
    snprintf(n_dead, sizeof(n_dead), "%lld", (long long)*dead);
    params[0] = rl->r->name;
    params[1] = rl->table_q;
    params[2] = n_ok;
    params[3] = n_dead;
    params[4] = first ? "1" : "0";
    (void)exactly_txn_send(&t, TXN_HANDLER, rl->sql_state, 5, params, NULL);
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
    exactly_log(EXACTLY_LOG_WARN, "relay",
                "marking published rows failed; they will be sent again",
                LOG_STR("error", err));
    drop_conn(rl);
cleanup:
    exactly_txn_clear(&t);
    strbuf_free(&done);
    strbuf_free(&dids);
    strbuf_free(&dreasons);
    return rc;
}

/* One cycle. Returns the number of rows read (0: nothing to do), or -1
 * when PostgreSQL failed (the caller backs off). */
static int cycle(relay *rl, int first)
{
    char err[1024], limit[32];
    const char *params[2];
    PGresult *res = NULL;
    int64_t acked, dead;
    long long sent_at;
    int i, n;

    if (rl->txn && (i = txn_abort(rl)) != 0)
        return i; /* an abort that failed before is tried first */
    snprintf(limit, sizeof(limit), "%d", rl->r->batch_size);
    params[0] = rl->r->topic;
    params[1] = limit;
    if (exactly_pg_exec(rl->conn, rl->sql_select, 2, params, &res, err,
                        sizeof(err)) != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_WARN, "relay", "reading the outbox failed",
                    LOG_STR("outbox", rl->table_q), LOG_STR("error", err));
        if (PQstatus(rl->conn) != CONNECTION_OK)
            drop_conn(rl);
        return -1;
    }
    n = PQntuples(res);
    if (n == 0) {
        PQclear(res);
        return 0;
    }
    free(rl->rows);
    rl->rows = calloc((size_t)n, sizeof(relay_row));
    if (!rl->rows) {
        PQclear(res);
        return -1;
    }
    rl->n_rows = (size_t)n;
    rl->in_flight = 0;
    rl->n_asked = 0;
    rl->dr_failed = 0;
    if (rl->txn) {
        rd_kafka_error_t *e = rd_kafka_begin_transaction(rl->rk);

        if (e) {
            PQclear(res);
            return txn_failed(e, "begin_transaction");
        }
        rl->txn_open = 1;
    }
    sent_at = now_ms();
    for (i = 0; i < n; i++) {
        rl->rows[i].id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        produce_row(rl, res, i);
    }
    PQclear(res);
    /* Every delivery report, whatever it says, before anything is marked
     * (invariant 3). librdkafka bounds the wait by message.timeout.ms. */
    while (rl->in_flight > 0) {
        rd_kafka_poll(rl->rk, 100);
        if (rd_kafka_fatal_error(rl->rk, NULL, 0))
            return -2;
        /* Asked to stop while Kafka does not answer: the records still
         * queued or in flight are purged (their reports say so and their
         * rows stay pending), rather than waiting out message.timeout.ms. */
        if (rl->stop && *rl->stop && !rl->purged &&
            now_ms() - sent_at > 5000) {
            rd_kafka_purge(rl->rk, RD_KAFKA_PURGE_F_QUEUE |
                                       RD_KAFKA_PURGE_F_INFLIGHT);
            rl->purged = 1;
        }
    }
    if (rl->txn) {
        int failed = rl->dr_failed > 0, rc;

        for (i = 0; i < n && !failed; i++)
            failed = rl->rows[i].state == ROW_RETRY;
        /* A record the broker refused poisons the transaction: abort it,
         * dead-letter what was refused for good, send the rest again. */
        if (failed) {
            demote_acked(rl, "the kafka transaction was aborted");
            rc = txn_abort(rl);
        } else {
            rc = txn_commit(rl);
        }
        if (rc == -2)
            return -2;
    } else if (EXACTLY_FAULT("relay_acked")) {
        /* Tests stop here to kill the relay between the acknowledgement
         * and the mark: the rows must then be sent again, with the same
         * event-id. */
        exactly_log(EXACTLY_LOG_WARN, "relay",
                    "fault: paused between acknowledgement and mark",
                    LOG_INT("rows", n));
        sleep_ms(10000);
    }
    if (record_outcome(rl, &acked, &dead, first) != 0)
        return -1;
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

/* Reads the outbox's backlog into the metrics slot, at most every
 * METRICS_RELAY_BACKLOG_MS; a failed read leaves it unknown (not shown)
 * until the next one. */
static void read_backlog(relay *rl)
{
    char err[1024];
    PGresult *res = NULL;
    metrics_relay *mr;

    if (!rl->m || now_ms() - rl->backlog_at < METRICS_RELAY_BACKLOG_MS)
        return;
    rl->backlog_at = now_ms();
    mr = &rl->m->relay;
    if (exactly_pg_exec(rl->conn, rl->sql_backlog, 0, NULL, &res, err,
                        sizeof(err)) != EXACTLY_OK) {
        __atomic_store_n(&mr->backlog_known, 0, __ATOMIC_RELAXED);
        exactly_log(EXACTLY_LOG_WARN, "relay", "reading the backlog failed",
                    LOG_STR("outbox", rl->table_q), LOG_STR("error", err));
        if (PQstatus(rl->conn) != CONNECTION_OK)
            drop_conn(rl);
        return;
    }
    metrics_set(&mr->pending, strtoll(PQgetvalue(res, 0, 0), NULL, 10));
    metrics_set(&mr->oldest_pending_ms,
                strtoll(PQgetvalue(res, 0, 1), NULL, 10));
    __atomic_store_n(&mr->backlog_known, 1, __ATOMIC_RELAXED);
    PQclear(res);
}

/* The log's tap: the relay's warnings and errors, kept in its slot for
 * the status page. */
static void note_error(void *arg, exactly_log_level level, const char *line,
                       size_t len)
{
    (void)level;
    metrics_note_error(arg, line, len);
}

static void expire(relay *rl)
{
    char err[1024], secs[32];
    const char *params[1];

    snprintf(secs, sizeof(secs), "%lld", (long long)rl->r->retention_s);
    params[0] = secs;
    if (exactly_pg_exec(rl->conn, rl->sql_expire, 1, params, NULL, err,
                        sizeof(err)) != EXACTLY_OK)
        exactly_log(EXACTLY_LOG_WARN, "relay",
                    "deleting published rows past retention failed",
                    LOG_STR("error", err));
}

int exactly_relay_run(const exactly_relay_opts *o, exactly_relay_stats *st)
{
    relay rl;
    rd_kafka_conf_t *conf;
    char err[1024], client_id[128];
    long long idle_since = now_ms(), last_expire = 0;
    int first = 1, code = 0, ready;

    memset(&rl, 0, sizeof(rl));
    rl.cfg = o->cfg;
    rl.r = o->relay;
    rl.st = st;
    rl.stop = o->stop;
    rl.m = o->metrics;
    if (rl.m)
        exactly_log_set_tap(note_error, rl.m);
    snprintf(client_id, sizeof(client_id), "exactly-relay-%s", rl.r->name);
    conf = exactly_kafka_producer_conf(o->cfg, o->relay, client_id, err,
                                       sizeof(err));
    if (!conf) {
        exactly_log(EXACTLY_LOG_ERROR, "relay", "producer refused",
                    LOG_STR("error", err));
        return 2;
    }
    rd_kafka_conf_set_opaque(conf, &rl);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rl.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rl.rk) {
        rd_kafka_conf_destroy(conf);
        exactly_log(EXACTLY_LOG_ERROR, "relay", "producer refused",
                    LOG_STR("error", err));
        return 2;
    }
    rl.backoff_ms = 100;
    rl.txn = rl.r->mode == CFG_RELAY_TRANSACTIONAL;
    while (!(o->stop && *o->stop)) {
        int n;

        if (o->reopen_log && *o->reopen_log) {
            *o->reopen_log = 0;
            (void)exactly_log_reopen();
        }
        ready = ensure_conn(&rl);
        if (ready == 2) {
            /* A standby shows the backlog too: the relay that holds the
             * outbox may be one without metrics, or stuck. */
            read_backlog(&rl);
            nap(o, rl.r->poll_interval_ms);
            continue;
        }
        if (ready != 0) {
            nap(o, rl.backoff_ms);
            rl.backoff_ms = rl.backoff_ms * 2 > 5000 ? 5000 : rl.backoff_ms * 2;
            continue;
        }
        /* Before the cycle: a cycle that keeps failing (Kafka down) is
         * when the backlog matters. */
        read_backlog(&rl);
        if (!rl.conn)
            continue;
        n = rl.need_position ? txn_prepare(&rl) : 0;
        if (n == 0)
            n = cycle(&rl, first);
        if (n == -2) {
            char fatal[512];
            rd_kafka_resp_err_t ferr =
                rd_kafka_fatal_error(rl.rk, fatal, sizeof(fatal));

            if (is_fenced(ferr))
                exactly_log(EXACTLY_LOG_ERROR, "relay",
                            "fenced: another relay took over this "
                            "transactional.id; exiting",
                            LOG_STR("relay", rl.r->name),
                            LOG_STR("text", fatal));
            else
                exactly_log(EXACTLY_LOG_ERROR, "relay",
                            "fatal producer error", LOG_STR("text", fatal));
            code = 1;
            break;
        }
        if (n < 0) {
            nap(o, rl.backoff_ms);
            rl.backoff_ms = rl.backoff_ms * 2 > 5000 ? 5000 : rl.backoff_ms * 2;
            continue;
        }
        rl.backoff_ms = 100;
        /* Published rows past retention, a slice a minute, busy or not. */
        if (rl.r->cleanup == CFG_CLEANUP_MARK &&
            now_ms() - last_expire > 60000) {
            expire(&rl);
            last_expire = now_ms();
        }
        if (n > 0) {
            first = 0;
            idle_since = now_ms();
            continue;
        }
        if (o->exit_idle_ms > 0 && now_ms() - idle_since >= o->exit_idle_ms)
            break;
        nap(o, rl.r->poll_interval_ms);
    }
    if (code == 0 && rl.txn_open)
        (void)txn_abort(&rl);
    rd_kafka_flush(rl.rk, 10000);
    rd_kafka_destroy(rl.rk);
    drop_conn(&rl);
    free(rl.rows);
    free(rl.table_q);
    free(rl.state_q);
    free(rl.sql_select);
    free(rl.sql_done);
    free(rl.sql_dead);
    free(rl.sql_state);
    free(rl.sql_expire);
    free(rl.sql_backlog);
    if (rl.m) {
        exactly_log_set_tap(NULL, NULL);
        __atomic_store_n(&rl.m->relay.backlog_known, 0, __ATOMIC_RELAXED);
    }
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

/* ---- status --------------------------------------------------------- */

int exactly_relay_read_status(const exactly_config *cfg, const cfg_relay *r,
                              exactly_relay_status *out, char *errbuf,
                              size_t errbuf_size)
{
    relay rl;
    PGresult *res = NULL;
    char *sql = NULL;
    const char *params[1];
    int rc = -1;

    memset(out, 0, sizeof(*out));
    memset(&rl, 0, sizeof(rl));
    rl.cfg = cfg;
    rl.r = r;
    rl.conn = exactly_pg_connect(cfg, "exactly-relay-status", errbuf,
                                 errbuf_size);
    if (!rl.conn)
        return -1;
    if (build_sql(&rl) != 0) {
        snprintf(errbuf, errbuf_size, "out of memory");
        goto cleanup;
    }
    sql = fmt2("SELECT"
               " count(*) FILTER (WHERE published_at IS NULL"
               "  AND dead_reason IS NULL),"
               " coalesce(extract(epoch FROM now() - min(created_at)"
               "  FILTER (WHERE published_at IS NULL AND dead_reason IS NULL)),"
               "  0)::float8,"
               " count(*) FILTER (WHERE dead_reason IS NOT NULL),"
               " (SELECT published FROM %1$s WHERE relay = $1),"
               " (SELECT published_since_start / greatest(extract(epoch FROM"
               "  updated_at - started_at), 0.001) FROM %1$s WHERE relay = $1),"
               " (SELECT extract(epoch FROM now() - updated_at) FROM %1$s"
               "  WHERE relay = $1)"
               " FROM %2$s",
               rl.state_q, rl.table_q);
    if (!sql) {
        snprintf(errbuf, errbuf_size, "out of memory");
        goto cleanup;
    }
    params[0] = r->name;
    if (exactly_pg_exec(rl.conn, sql, 1, params, &res, errbuf, errbuf_size) !=
        EXACTLY_OK)
        goto cleanup;
    out->pending = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    out->oldest_pending_s = strtod(PQgetvalue(res, 0, 1), NULL);
    out->dead = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    out->published_total =
        PQgetisnull(res, 0, 3) ? -1 : strtoll(PQgetvalue(res, 0, 3), NULL, 10);
    out->rate_per_s = PQgetisnull(res, 0, 4) ? 0
                                              : strtod(PQgetvalue(res, 0, 4), NULL);
    out->last_publish_s =
        PQgetisnull(res, 0, 5) ? -1 : strtod(PQgetvalue(res, 0, 5), NULL);
    rc = 0;
cleanup:
    PQclear(res);
    free(sql);
    drop_conn(&rl);
    free(rl.table_q);
    free(rl.state_q);
    free(rl.sql_select);
    free(rl.sql_done);
    free(rl.sql_dead);
    free(rl.sql_state);
    free(rl.sql_expire);
    free(rl.sql_backlog);
    return rc;
}
