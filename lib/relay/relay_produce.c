/*
 * relay_produce.c - one outbox row becomes one Kafka record (topic, key,
 * value, the row's headers and its event-id header), and each delivery
 * report says where its row stands: acknowledged, refused for good
 * (dead-lettered, invariant 4) or failed for now (sent again). A record
 * refused for an unknown topic is refused only when the broker, asked
 * again (once per topic and cycle), said so; one refused in a record
 * batch the broker refused as a whole, with other rows, is sent again
 * alone. The producer itself is made (and made anew) here too.
 */
#include "relay.h"

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "log.h"
#include "producer.h"
#include "relay_internal.h"

/* Errors that no resend will cure: the row is dead-lettered. Besides the
 * record itself (too large, invalid), that is a topic the relay cannot
 * use: one that does not exist or whose name is invalid, and one the
 * broker does not let this producer write (TOPIC_AUTHORIZATION_FAILED,
 * which librdkafka keeps for the topic and answers every later record
 * with, without asking the broker). Everything else (timeouts, a broker
 * down, a leader moving) leaves the row pending. */
static int permanent(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return 1;
    default:
        return 0;
    }
}

/* The permanent errors that a broker gives a whole record batch, and
 * librdkafka then every record of it, though one record may be the cause:
 * one invalid record (INVALID_RECORD: no key on a compacted topic; a
 * corrupt batch), a batch over the topic's max.message.bytes. In a
 * delivery report they condemn the row only when it was sent alone. (A
 * record that producev() refuses as larger than message.max.bytes is
 * refused for its own size.) */
static int batch_refusal(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
           err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE ||
           err == RD_KAFKA_RESP_ERR_INVALID_RECORD ||
           err == RD_KAFKA_RESP_ERR_INVALID_MSG;
}

/* Sets the row's state and reason for err; a reason says what would let
 * the record through where that is not the record's own content. alone:
 * no other row of the cycle went to the producer before the refusal, so
 * a batch the broker refused held this row only. */
static void set_failed(relay_row *row, rd_kafka_resp_err_t err,
                       const char *topic, int alone)
{
    const char *fix = "";

    if (err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
        fix = "; grant the relay's principal WRITE and DESCRIBE on the "
              "topic, then clear dead_reason to send the row again";
    row->refused_with_others = !alone && batch_refusal(err);
    if (row->refused_with_others)
        fix = "; the broker refused the whole batch the record was in: "
              "sent again alone";
    row->state = permanent(err) && !row->refused_with_others ? ROW_DEAD
                                                              : ROW_RETRY;
    snprintf(row->reason, sizeof(row->reason), "kafka refused the record "
             "for topic '%s': %s (%s)%s", topic ? topic : "?",
             rd_kafka_err2str(err), rd_kafka_err2name(err), fix);
}

void relay_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
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
        set_failed(row, m->err, m->rkt ? rd_kafka_topic_name(m->rkt) : NULL,
                   rl->sent == 1);
        rl->dr_failed++;
    }
    rl->in_flight--;
}

/* Adds one header of the row's own: a JSON string value as its bytes,
 * null as a null value; anything else is sent as its JSON text, text
 * that PostgreSQL gave (exact) or jansson printed (the fallback below). */
static int add_header(rd_kafka_headers_t *h, const char *name, json_t *v,
                      char *why, size_t why_size)
{
    char *text;

    if (strcmp(name, "event-id") == 0)
        return 0; /* the relay's own, from event_id */
    if (json_is_null(v)) {
        rd_kafka_header_add(h, name, -1, NULL, 0);
        return 0;
    }
    if (json_is_string(v)) {
        rd_kafka_header_add(h, name, -1, json_string_value(v),
                            (ssize_t)json_string_length(v));
        return 0;
    }
    text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) {
        snprintf(why, why_size, "out of memory");
        return -1;
    }
    rd_kafka_header_add(h, name, -1, text, -1);
    free(text);
    return 0;
}

/* Adds the row's own headers after event-id. pairs_text, when not NULL,
 * is the select's column 7: [name, the value's JSON text] pairs in the
 * row's order; a string value is decoded, null sent as null, any other
 * value's text sent as it is, so numbers keep the digits they were
 * written with. Without it (headers that are not an object, or hold a
 * \u escape) json_text, the column itself, is parsed here. Returns 0,
 * or -1 with a reason (the row is then dead). */
static int add_headers(rd_kafka_headers_t *h, const char *json_text,
                       const char *pairs_text, char *why, size_t why_size)
{
    json_error_t jerr;
    json_t *obj, *v;
    const char *name;
    size_t i;
    int rc = -1;

    if (!json_text)
        return 0;
    obj = json_loads(pairs_text ? pairs_text : json_text,
                     JSON_DECODE_ANY | (pairs_text ? JSON_ALLOW_NUL : 0),
                     &jerr);
    if (pairs_text && json_is_array(obj)) {
        json_array_foreach(obj, i, v) {
            const char *raw = json_string_value(json_array_get(v, 1));
            json_t *val;
            int bad;

            name = json_string_value(json_array_get(v, 0));
            if (!name || !raw) {
                snprintf(why, why_size, "headers: unexpected pair from the "
                                        "database");
                goto cleanup;
            }
            if (raw[0] != '"' && strcmp(raw, "null") != 0) {
                if (strcmp(name, "event-id") != 0)
                    rd_kafka_header_add(h, name, -1, raw, -1);
                continue;
            }
            val = json_loads(raw, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
            bad = !val || add_header(h, name, val, why, why_size) != 0;
            if (!val)
                snprintf(why, why_size, "headers: value of '%s' unreadable",
                         name);
            json_decref(val);
            if (bad)
                goto cleanup;
        }
        rc = 0;
        goto cleanup;
    }
    if (!obj || !json_is_object(obj)) {
        snprintf(why, why_size, "headers must be a JSON object");
        goto cleanup;
    }
    json_object_foreach(obj, name, v) {
        if (add_header(h, name, v, why, why_size) != 0)
            goto cleanup;
    }
    rc = 0;
cleanup:
    json_decref(obj);
    return rc;
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

/* The broker's answer about topic in md, the reply to a question about
 * that topic alone. */
static topic_answer answer_of(const struct rd_kafka_metadata *md,
                              const char *topic)
{
    int i;

    for (i = 0; md && i < md->topic_cnt; i++) {
        if (strcmp(md->topics[i].topic, topic) != 0)
            continue;
        switch (md->topics[i].err) {
        case RD_KAFKA_RESP_ERR_NO_ERROR:
            return TOPIC_EXISTS;
        case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
            return TOPIC_MISSING;
        default:
            return TOPIC_UNANSWERED;
        }
    }
    return TOPIC_UNANSWERED;
}

/* librdkafka remembers a topic that the broker said does not exist and
 * refuses records for it at once (_UNKNOWN_TOPIC) until it learns
 * otherwise: a row sent again after its topic was created could be
 * dead-lettered again on that stale answer. So before a record is refused
 * for an unknown topic the relay asks the broker about the topic, once per
 * topic and cycle, and keeps the answer for the cycle's other rows of it.
 * Returns TOPIC_EXISTS (the answer has replaced the cached one: produce
 * once more), TOPIC_MISSING (the broker said now that it does not exist,
 * or the name is longer than any Kafka accepts, 249 bytes: refuse), or
 * TOPIC_UNANSWERED (no answer within RELAY_ASK_TIMEOUT_MS, another error
 * for the topic, or too many topics this cycle: the row waits for the
 * next cycle). */
static topic_answer ask_topic(relay *rl, const char *topic)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt;
    rd_kafka_resp_err_t err;
    topic_answer answer;
    int i;

    for (i = 0; i < rl->n_asked; i++)
        if (strcmp(rl->asked[i].topic, topic) == 0)
            return rl->asked[i].answer;
    if (strlen(topic) >= sizeof(rl->asked[0].topic))
        return TOPIC_MISSING;
    if (rl->n_asked == RELAY_ASKED_MAX)
        return TOPIC_UNANSWERED;
    rkt = rd_kafka_topic_new(rl->rk, topic, NULL);
    if (!rkt)
        return TOPIC_UNANSWERED;
    /* Tests make the question go unanswered here, as a broker that does
     * not answer within RELAY_ASK_TIMEOUT_MS. */
    if (EXACTLY_FAULT("relay_ask_unanswered"))
        err = RD_KAFKA_RESP_ERR__TIMED_OUT;
    else
        err = rd_kafka_metadata(rl->rk, 0, rkt, &md, RELAY_ASK_TIMEOUT_MS);
    answer = err == RD_KAFKA_RESP_ERR_NO_ERROR ? answer_of(md, topic)
                                               : TOPIC_UNANSWERED;
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    snprintf(rl->asked[rl->n_asked].topic, sizeof(rl->asked[0].topic), "%s",
             topic);
    rl->asked[rl->n_asked++].answer = answer;
    exactly_log(EXACTLY_LOG_INFO, "relay",
                "asked the broker again about a topic it called unknown",
                LOG_STR("topic", topic),
                LOG_STR("answer", answer == TOPIC_EXISTS    ? "exists"
                                  : answer == TOPIC_MISSING ? "missing"
                                                            : "none"),
                LOG_STR("error", rd_kafka_err2name(err)));
    return answer;
}

int relay_wait_room(relay *rl)
{
    if (rl->stop && *rl->stop)
        return -1;
    rd_kafka_poll(rl->rk, 50);
    return 0;
}

void relay_produce_row(relay *rl, const PGresult *res, int i)
{
    relay_row *row = &rl->rows[i];
    unsigned char *key = NULL, *value = NULL;
    size_t key_len, value_len;
    rd_kafka_headers_t *h = NULL;
    rd_kafka_resp_err_t err;
    int produced_again = 0; /* once after the broker said the topic exists */
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
                    PQgetisnull(res, i, 7) ? NULL : PQgetvalue(res, i, 7),
                    row->reason, sizeof(row->reason))) {
        row->state = ROW_DEAD;
        goto cleanup;
    }
    for (;;) {
        topic_answer answer;

        err = rd_kafka_producev(rl->rk, RD_KAFKA_V_TOPIC(topic),
                                RD_KAFKA_V_KEY(key, key_len),
                                RD_KAFKA_V_VALUE(value, value_len),
                                RD_KAFKA_V_HEADERS(h),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_OPAQUE(row), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            if (relay_wait_room(rl) == 0)
                continue;
            row->state = ROW_RETRY;
            snprintf(row->reason, sizeof(row->reason),
                     "stopped while the producer's queue was full; the row "
                     "stays pending");
            goto cleanup;
        }
        if (err != RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
            break;
        /* Refused on librdkafka's cached answer: only the broker's own
         * answer this cycle refuses the row for good. */
        answer = ask_topic(rl, topic);
        if (answer == TOPIC_MISSING)
            break;
        if (answer == TOPIC_EXISTS && !produced_again) {
            produced_again = 1;
            continue;
        }
        row->state = ROW_RETRY;
        snprintf(row->reason, sizeof(row->reason),
                 "topic '%s' is unknown to the producer and the broker did "
                 "not say it is missing; sent again next cycle", topic);
        goto cleanup;
    }
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        h = NULL; /* the message owns them now */
        row->state = ROW_IN_FLIGHT;
        rl->in_flight++;
        rl->sent++;
    } else {
        set_failed(row, err, topic, 1); /* the record's own refusal */
    }
cleanup:
    if (h)
        rd_kafka_headers_destroy(h);
    PQfreemem(key);
    PQfreemem(value);
}

int relay_start_producer(relay *rl)
{
    rd_kafka_conf_t *conf;
    char err[1024], client_id[128];

    snprintf(client_id, sizeof(client_id), "exactly-relay-%s", rl->r->name);
    conf = exactly_kafka_producer_conf(rl->cfg, rl->r, client_id, err,
                                       sizeof(err));
    if (!conf) {
        exactly_log(EXACTLY_LOG_ERROR, "relay", "producer refused",
                    LOG_STR("error", err));
        return 2;
    }
    rd_kafka_conf_set_opaque(conf, rl);
    rd_kafka_conf_set_dr_msg_cb(conf, relay_dr_cb);
    rd_kafka_conf_set_error_cb(conf, relay_error_cb);
    rl->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rl->rk) {
        rd_kafka_conf_destroy(conf);
        exactly_log(EXACTLY_LOG_ERROR, "relay", "producer refused",
                    LOG_STR("error", err));
        return 2;
    }
    return 0;
}

int relay_renew_producer(relay *rl)
{
    rd_kafka_t *old = rl->rk;

    if (relay_start_producer(rl) != 0) {
        rl->rk = old;
        return -1;
    }
    /* Nothing of the old one is in flight (every cycle waits for every
     * report); a transaction it left open is the new one's
     * init_transactions' to abort. */
    rd_kafka_destroy(old);
    rl->txn_ready = 0;
    rl->txn_open = 0;
    rl->abort_unanswered = 0;
    return 0;
}
