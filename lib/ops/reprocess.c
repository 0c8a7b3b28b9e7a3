#include "reprocess.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util/host_id.h"
#include "pg_conn.h"
#include "worker_internal.h"

typedef struct run {
    worker w;
    part pt;
    part *parts[1];
    int64_t id;
    int64_t from, to;
    char id_s[24];
    char dl_key[200];
    long long started_ms;
    long long last_progress_ms;
    uint64_t applied_at_start;
} run;

/* Creates the run row, or claims an interrupted one (bumping its epoch,
 * so that two resumes of one run fence each other). */
static int open_run(run *r, const exactly_reprocess_opts *o)
{
    worker *w = &r->w;
    char err[1024], part_s[16], from_s[24], to_s[24], id_s[24];
    PGresult *res = NULL;
    strbuf sql = {0};
    exactly_err rc;

    if (o->resume_run > 0) {
        const char *params[3] = {id_s, w->p->name, w->owner};
        snprintf(id_s, sizeof(id_s), "%" PRId64, o->resume_run);
        strbuf_printf(&sql,
                      "UPDATE %s.reprocess_runs SET owner_epoch = owner_epoch + 1,"
                      " status = 'running', owner = $3, updated_at = now(),"
                      " ended_at = NULL WHERE id = $1::bigint AND pipeline = $2"
                      " AND status <> 'done'"
                      " RETURNING id, topic, partition, from_offset, to_offset,"
                      " next_offset, owner_epoch",
                      w->sql.schema_q);
        rc = exactly_pg_exec(w->conn, strbuf_str(&sql), 3, params, &res, err,
                             sizeof(err));
    } else {
        const char *params[6] = {w->p->name, o->topic, part_s, from_s, to_s,
                                 w->owner};
        snprintf(part_s, sizeof(part_s), "%d", (int)o->partition);
        snprintf(from_s, sizeof(from_s), "%" PRId64, o->from);
        snprintf(to_s, sizeof(to_s), "%" PRId64, o->to);
        strbuf_printf(&sql,
                      "INSERT INTO %s.reprocess_runs (pipeline, topic, partition,"
                      " from_offset, to_offset, next_offset, owner)"
                      " VALUES ($1, $2, $3, $4, $5, $4, $6)"
                      " RETURNING id, topic, partition, from_offset, to_offset,"
                      " next_offset, owner_epoch",
                      w->sql.schema_q);
        rc = exactly_pg_exec(w->conn, strbuf_str(&sql), 6, params, &res, err,
                             sizeof(err));
    }
    strbuf_free(&sql);
    if (rc != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_ERROR, "reprocess", "cannot record the run",
                    LOG_STR("error", err));
        return 1;
    }
    if (PQntuples(res) != 1) {
        PQclear(res);
        exactly_log(EXACTLY_LOG_ERROR, "reprocess",
                    "run not found in this pipeline, or already done",
                    LOG_INT("run", o->resume_run));
        return 2;
    }
    r->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    r->pt.topic = strdup(PQgetvalue(res, 0, 1));
    r->pt.partition = (int32_t)atoi(PQgetvalue(res, 0, 2));
    r->from = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
    r->to = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
    r->pt.next_offset = strtoll(PQgetvalue(res, 0, 5), NULL, 10);
    r->pt.epoch = strtoll(PQgetvalue(res, 0, 6), NULL, 10);
    PQclear(res);
    return r->pt.topic ? 0 : 1;
}

static void close_run(run *r, const char *status)
{
    worker *w = &r->w;
    char err[512], epoch_s[24];
    const char *params[3] = {r->id_s, status, epoch_s};
    strbuf sql = {0};

    if (!w->conn)
        return;
    snprintf(epoch_s, sizeof(epoch_s), "%" PRId64, r->pt.epoch);
    strbuf_printf(&sql,
                  "UPDATE %s.reprocess_runs SET status = $2, ended_at = now(),"
                  " updated_at = now() WHERE id = $1::bigint AND owner_epoch = $3",
                  w->sql.schema_q);
    if (exactly_pg_exec(w->conn, strbuf_str(&sql), 3, params, NULL, err,
                        sizeof(err)) != EXACTLY_OK)
        exactly_log(EXACTLY_LOG_WARN, "reprocess",
                    "cannot record the run's end", LOG_INT("run", r->id),
                    LOG_STR("error", err));
    strbuf_free(&sql);
}

/*
 * Prints where the run is: the offset, the share of the range, the rate
 * measured over this session and the time left. The time left is the
 * remaining offsets over the rate that will apply from here: the measured
 * one, or --rate when that is lower (the first batches of a limited run
 * come faster than the limit allows the rest to). "--:--" until a rate
 * has been measured. Nothing with -q.
 */
static void progress(run *r, const exactly_reprocess_opts *o, int final)
{
    long long now = worker_now_ms();
    double secs = (double)(now - r->started_ms) / 1000.0;
    uint64_t done = r->w.st.consumed;
    double rate = secs > 0 ? (double)done / secs : 0;
    double pace = o->rate > 0 && o->rate < rate ? o->rate : rate;
    int64_t total = r->to + 1 - r->from;
    int64_t at = r->pt.next_offset - r->from;
    int64_t remaining = r->to + 1 - r->pt.next_offset;
    char eta[32];

    if (o->quiet)
        return;
    if (!final && now - r->last_progress_ms < (o->tty ? 250 : 5000))
        return;
    r->last_progress_ms = now;
    if (remaining <= 0) {
        snprintf(eta, sizeof(eta), "0:00");
    } else if (pace <= 0) {
        snprintf(eta, sizeof(eta), "--:--");
    } else {
        /* Rounded up: "0:00" only when nothing is left. */
        long long left = (long long)((double)remaining / pace + 0.999);
        if (left >= 3600)
            snprintf(eta, sizeof(eta), "%lld:%02lld:%02lld", left / 3600,
                     left / 60 % 60, left % 60);
        else
            snprintf(eta, sizeof(eta), "%lld:%02lld", left / 60, left % 60);
    }
    fprintf(stderr,
            "%soffset %" PRId64 " of %" PRId64 "..%" PRId64 "  %3d%%  %.0f msg/s"
            "  ETA %s%s",
            o->tty ? "\r" : "", r->pt.next_offset, r->from, r->to,
            total > 0 ? (int)(100 * at / total) : 100, rate, eta,
            o->tty && !final ? "   " : "\n");
    fflush(stderr);
}

/* With --rate: before a batch of n messages, waits until they are due
 * (everything applied so far plus n, at the rate, counted from the start),
 * so that the run stays at or under the rate at every moment, not only on
 * average. Sleeps in short steps so that Ctrl-C is seen; returns 1 when it
 * was. */
static int keep_rate(run *r, const exactly_reprocess_opts *o, size_t n)
{
    if (o->rate <= 0)
        return 0;
    for (;;) {
        double due = (double)(r->w.st.consumed + n) / o->rate * 1000.0;
        long long ahead = (long long)due - (worker_now_ms() - r->started_ms);

        if (o->stop && *o->stop)
            return 1;
        if (ahead <= 0)
            return 0;
        usleep((useconds_t)(ahead > 200 ? 200 : ahead) * 1000);
    }
}

/* The batch ending: one past its last message, or past the range's end
 * when the consumer is already beyond it (control records). */
static int64_t run_batch_end(run *r, size_t n, int at_end)
{
    int64_t end = r->pt.buf[n - 1]->offset + 1;

    if (n == r->pt.n_buf && at_end)
        end = r->to + 1;
    return end;
}

static int loop(run *r, const exactly_reprocess_opts *o)
{
    worker *w = &r->w;
    size_t max = (size_t)(o->batch > 0 ? o->batch : w->p->batch.max_messages);
    int at_end = 0;

    while (r->pt.next_offset <= r->to) {
        rd_kafka_message_t *m;
        exactly_err rc;
        size_t n;

        if (o->stop && *o->stop)
            return 1;
        while (!at_end && r->pt.n_buf < max &&
               (m = rd_kafka_consumer_poll(w->rk, r->pt.n_buf ? 0 : 200)) != NULL) {
            if (m->err) {
                exactly_log(EXACTLY_LOG_WARN, "reprocess", "consume error",
                            LOG_STR("code", rd_kafka_err2name(m->err)),
                            LOG_STR("text", rd_kafka_message_errstr(m)));
                if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
                    m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
                    rd_kafka_message_destroy(m);
                    return 1;
                }
                rd_kafka_message_destroy(m);
                continue;
            }
            if (m->offset > r->to) {
                at_end = 1;
                rd_kafka_message_destroy(m);
                break;
            }
            if (m->offset < r->pt.next_offset ||
                (r->pt.n_buf && m->offset <= r->pt.buf[r->pt.n_buf - 1]->offset)) {
                rd_kafka_message_destroy(m);
                continue;
            }
            if (r->pt.n_buf == r->pt.cap_buf) {
                size_t cap = r->pt.cap_buf ? r->pt.cap_buf * 2 : 256;
                rd_kafka_message_t **nb = realloc(r->pt.buf, cap * sizeof(*nb));
                if (!nb) {
                    rd_kafka_message_destroy(m);
                    return 1;
                }
                r->pt.buf = nb;
                r->pt.cap_buf = cap;
            }
            r->pt.buf[r->pt.n_buf++] = m;
        }
        if (!at_end && source_position(w, &r->pt) > r->to)
            at_end = 1;
        if (r->pt.n_buf == 0) {
            if (at_end) /* only transaction markers left in the range */
                rc = cycle_run(w, &r->pt, 0, r->to + 1);
            else
                continue;
        } else if (r->pt.n_buf >= max || at_end) {
            n = r->pt.n_buf < max ? r->pt.n_buf : max;
            if (keep_rate(r, o, n))
                return 1;
            rc = cycle_run(w, &r->pt, n, run_batch_end(r, n, at_end));
        } else {
            continue;
        }
        if (rc == EXACTLY_EFENCED && !r->pt.fenced && !r->pt.halted)
            continue; /* the run row was behind (a failover): from there */
        if (rc == EXACTLY_EFENCED) {
            exactly_log(EXACTLY_LOG_ERROR, "reprocess",
                        "run was taken over by another process",
                        LOG_INT("run", r->id));
            return 1;
        }
        if (rc == EXACTLY_EHANDLER)
            return 1; /* on_error: stop, logged by the cycle */
        if (rc != EXACTLY_OK) {
            usleep(200 * 1000 * (useconds_t)(r->pt.attempts < 10 ? r->pt.attempts : 10));
            continue;
        }
        progress(r, o, 0);
    }
    return 0;
}

int exactly_reprocess(const exactly_reprocess_opts *o)
{
    run *r = calloc(1, sizeof(*r));
    worker *w;
    char err[2048], reset[16];
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_topic_partition_list_t *l = NULL;
    int64_t lo = 0, hi = 0;
    int code = 1, tries;
    char host[64];

    if (!r)
        return 1;
    w = &r->w;
    w->cfg = o->cfg;
    w->p = o->p;
    w->timeout_ms = exactly_pg_wait_bound_ms(o->cfg);
    if (exactly_host_id(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "unknown");
    snprintf(w->owner, sizeof(w->owner), "%s:%d:reprocess", host, (int)getpid());
    exactly_log_set_context(w->p->name, -1);

    code = 2; /* refused, until the services are reached */
    if (exactly_plugin_load(w->cfg, w->p, &w->plugin, err, sizeof(err)) != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_ERROR, "reprocess", "handler refused",
                    LOG_STR("error", err));
        goto cleanup;
    }
    conf = exactly_kafka_conf(w->cfg, w->p, reset, "exactly-reprocess", err, sizeof(err));
    if (!conf) {
        exactly_log(EXACTLY_LOG_ERROR, "reprocess",
                    "kafka configuration refused", LOG_STR("error", err));
        goto cleanup;
    }
    w->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!w->rk) {
        rd_kafka_conf_destroy(conf);
        exactly_log(EXACTLY_LOG_ERROR, "reprocess",
                    "cannot create Kafka consumer", LOG_STR("error", err));
        goto cleanup;
    }
    code = 1;
    for (tries = 0; tries < 50 && worker_db(w) != EXACTLY_OK; tries++) {
        if (w->fatal) {
            code = 2;
            goto cleanup;
        }
        usleep(200 * 1000);
    }
    if (!w->conn) {
        exactly_log(EXACTLY_LOG_ERROR, "reprocess", "cannot reach PostgreSQL");
        goto cleanup;
    }
    if (o->resume_run <= 0 || o->dry_run) {
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(
            w->rk, o->topic, o->partition, &lo, &hi, 10000);
        if (e) {
            exactly_log(EXACTLY_LOG_ERROR, "reprocess",
                        "cannot read the partition's watermarks",
                        LOG_STR("topic", o->topic),
                        LOG_INT("partition", o->partition),
                        LOG_STR("error", rd_kafka_err2str(e)));
            /* No such partition is a wrong request, not an outage. */
            if (e == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
                e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
                code = 2;
            goto cleanup;
        }
        if (o->from > o->to || o->from < lo || o->to >= hi) {
            exactly_log(EXACTLY_LOG_ERROR, "reprocess",
                        "refusing the offset range",
                        LOG_STR("reason", o->from > o->to
                                              ? "the range is inverted"
                                              : "the range is outside the partition"),
                        LOG_STR("topic", o->topic),
                        LOG_INT("partition", o->partition),
                        LOG_INT("from", o->from), LOG_INT("to", o->to),
                        LOG_INT("first_offset", lo),
                        LOG_INT("last_offset", hi - 1),
                        LOG_INT("low_watermark", lo),
                        LOG_INT("high_watermark", hi));
            code = 2;
            goto cleanup;
        }
    }
    if (o->dry_run) {
        printf("dry run: would apply handler %s again to offsets %" PRId64
               "..%" PRId64 " (%" PRId64 " offsets) of %s [%d] for pipeline %s, "
               "in batches of %d; the pipeline's stored offsets stay as they are\n",
               w->plugin->label, o->from, o->to, o->to - o->from + 1, o->topic,
               (int)o->partition, w->p->name,
               o->batch > 0 ? o->batch : w->p->batch.max_messages);
        code = 0;
        goto cleanup;
    }
    if (exactly_plugin_open(w->plugin, w->conn, w->p, w->timeout_ms, err,
                            sizeof(err)) != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_ERROR, "reprocess", "handler's open() failed",
                    LOG_STR("error", err));
        code = 2;
        goto cleanup;
    }
    code = open_run(r, o);
    if (code != 0)
        goto cleanup;
    snprintf(r->id_s, sizeof(r->id_s), "%" PRId64, r->id);
    /* The run row is this cycle's position. */
    free(w->sql.fence);
    free(w->sql.read);
    w->sql.fence = strdup(w->sql.run_fence);
    w->sql.read = strdup(w->sql.run_read);
    w->reprocess_run = r->id;
    w->fence_key = r->id_s;
    /* Kept apart from the live pipeline's dead letters, which share the
     * (topic, partition, offset) key. */
    snprintf(r->dl_key, sizeof(r->dl_key), "%s:reprocess:%" PRId64, w->p->name,
             r->id);
    w->dl_key = r->dl_key;
    {
        strbuf q = {0};
        strbuf_printf(&q,
                      "UPDATE %s.reprocess_runs SET applied = applied + $2::bigint"
                      " WHERE id = $1::bigint",
                      w->sql.schema_q);
        w->run_applied_sql = q.data;
    }
    r->parts[0] = &r->pt;
    w->parts = r->parts;
    w->n_parts = 1;
    l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, r->pt.topic, r->pt.partition)->offset =
        r->pt.next_offset;
    if (!w->sql.fence || !w->sql.read ||
        rd_kafka_assign(w->rk, l) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        code = 1;
        goto cleanup;
    }
    exactly_log(EXACTLY_LOG_INFO, "reprocess", "run started",
                LOG_INT("run", r->id), LOG_STR("topic", r->pt.topic),
                LOG_INT("partition", r->pt.partition), LOG_INT("from", r->from),
                LOG_INT("to", r->to),
                LOG_INT("next_offset", r->pt.next_offset));
    r->started_ms = worker_now_ms();
    code = loop(r, o);
    progress(r, o, 1);
    close_run(r, code == 0 ? "done" : (o->stop && *o->stop) ? "interrupted" : "failed");
    printf("run %" PRId64 ": %s; applied %" PRIu64 " messages of %s [%d] "
           "offsets %" PRId64 "..%" PRId64 " (now at %" PRId64 "), dead-lettered "
           "%" PRIu64 ", in %.1f s\n",
           r->id, code == 0 ? "done" : (o->stop && *o->stop) ? "interrupted" : "failed",
           w->st.applied, r->pt.topic, (int)r->pt.partition, r->from, r->to,
           r->pt.next_offset, w->st.dead_lettered,
           (double)(worker_now_ms() - r->started_ms) / 1000.0);
    if (code != 0)
        printf("resume with: exactly reprocess -c %s --pipeline %s --resume %" PRId64 "\n",
               w->cfg->path, w->p->name, r->id);
    if (code == 0 && w->st.dead_lettered > 0) {
        /* Finished: resuming would do nothing. What was not applied is
         * in the dead letters, under the run's own name. */
        exactly_log(EXACTLY_LOG_WARN, "reprocess", "run finished with dead letters",
                    LOG_INT("run", r->id),
                    LOG_UINT("dead_lettered", w->st.dead_lettered),
                    LOG_STR("dead_letter_pipeline", r->dl_key));
        printf("%" PRIu64 " message(s) of run %" PRId64 " failed and were "
               "dead-lettered, not applied; the run is finished.\n"
               "see them with:   exactly dlq list -c %s --pipeline %s --run %"
               PRId64 "\n"
               "once the cause is fixed, apply them with:\n"
               "                 exactly dlq replay -c %s --pipeline %s --run %"
               PRId64 " --all\n",
               w->st.dead_lettered, r->id, w->cfg->path, w->p->name, r->id,
               w->cfg->path, w->p->name, r->id);
        code = EXACTLY_REPROCESS_DEAD_LETTERED;
    }

cleanup:
    if (l)
        rd_kafka_topic_partition_list_destroy(l);
    part_drop_buffer(&r->pt, r->pt.n_buf);
    free(r->pt.buf);
    free(r->pt.topic);
    if (w->rk) {
        rd_kafka_consumer_close(w->rk);
        rd_kafka_destroy(w->rk);
    }
    free(w->run_applied_sql);
    worker_release(w);
    free(r);
    return code;
}
