/*
 * reprocess.c - `exactly reprocess` (see reprocess.h): the services, the
 * run's rows as the engine's position, its spans one after the other, and
 * the end. The parts are listed in reprocess_internal.h.
 */
#include "reprocess_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "source.h"
#include "store_runs.h"
#include "util/host_id.h"

/* Sets up what r runs on: its engine with the handler loaded (not
 * opened), a Kafka consumer without a group, the connection. Returns 0, 1 (a service could
 * not be reached) or 2 (refused: handler, configuration, schema). */
static int open_services(run *r, const exactly_reprocess_opts *o)
{
    char err[2048], reset[16], host[64];
    rd_kafka_conf_t *conf;
    int tries;

    r->cfg = o->cfg;
    r->p = o->p;
    reprocess_engine_init(r);
    if (exactly_host_id(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "unknown");
    snprintf(r->eng.owner, sizeof(r->eng.owner), "%s:%d:reprocess", host,
             (int)getpid());
    exactly_log_set_context(r->p->name, -1);
    if (exactly_plugin_load_extra(r->cfg, r->p, &r->eng.plugin, err,
                                  sizeof(err)) != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_ERROR, "reprocess", "handler refused",
                    LOG_STR("error", err));
        return 2;
    }
    conf = exactly_kafka_conf(r->cfg, r->p, reset, "exactly-reprocess", err,
                              sizeof(err));
    if (!conf) {
        exactly_log(EXACTLY_LOG_ERROR, "reprocess",
                    "kafka configuration refused", LOG_STR("error", err));
        return 2;
    }
    r->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!r->rk) {
        rd_kafka_conf_destroy(conf);
        exactly_log(EXACTLY_LOG_ERROR, "reprocess",
                    "cannot create Kafka consumer", LOG_STR("error", err));
        return 2;
    }
    r->eng.rk = r->rk;
    for (tries = 0; tries < 50 && reprocess_db(r) != EXACTLY_OK; tries++) {
        if (r->refused)
            return 2;
        usleep(200 * 1000);
    }
    if (!r->eng.conn) {
        exactly_log(EXACTLY_LOG_ERROR, "reprocess", "cannot reach PostgreSQL");
        return 1;
    }
    return 0;
}

/* The run's rows become the engine's position and its dead letters are
 * kept under the run's name. Returns 0 or 1 (out of memory). */
static int use_run_position(run *r)
{
    engine_position *pos = &r->eng.pos;

    reprocess_set_id(r, r->id);
    r->applied_sql = store_runs_applied_sql(r->eng.sql.schema_q);
    memset(pos, 0, sizeof(*pos));
    /* pos->key: the span's row, set by reprocess_start_span. */
    pos->fence_sql = r->eng.sql.run_fence;
    pos->read_sql = r->eng.sql.run_read;
    pos->dl_key = r->dl_key;
    pos->applied_sql = r->applied_sql;
    /* The handler sees the run. A run re-applies on purpose (no dedup),
     * owns its row for one session (no crash guard, no reclaim) and is no
     * member of the group (nothing committed to Kafka). */
    pos->run = r->id;
    return r->applied_sql ? 0 : 1;
}

/* Applies the spans not done one after the other; each one done is
 * closed at once. Returns 0 when all reached their end, else 1. */
static int run_spans(run *r, const exactly_reprocess_opts *o)
{
    int code = 0;
    size_t i;

    for (i = 0; i < r->n_spans && code == 0; i++) {
        span *sp = &r->spans[i];
        uint64_t before = r->eng.st.applied;
        if (sp->done)
            continue;
        r->applied_read = 0; /* counted again once the rows are read */
        if (reprocess_start_span(r, i) != 0)
            return 1;
        code = reprocess_loop(r, o, sp);
        sp->next = r->pt.next_offset;
        if (code == 0) {
            sp->done = 1;
            r->n_done++;
            r->behind += sp->to + 1 - sp->from;
            reprocess_close_span(r, sp, "done");
            reprocess_progress_span_done(r, o, sp, r->eng.st.applied - before);
        }
    }
    return code;
}

/* Opens the handler, records or claims the run's rows and applies them.
 * Returns the exit code. */
static int apply_run(run *r, const exactly_reprocess_opts *o)
{
    const char *status;
    char err[2048];
    exactly_err rc;
    int code;
    size_t i;

    rc = exactly_plugin_open(r->eng.plugin, r->eng.conn, r->p,
                             r->eng.timeout_ms, err, sizeof(err));
    if (rc != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_ERROR, "reprocess", "handler's open() failed",
                    LOG_STR("sqlstate", r->eng.plugin->open_sqlstate[0]
                                            ? r->eng.plugin->open_sqlstate
                                            : NULL),
                    LOG_STR("error", err));
        /* A lock or statement timeout, a lost connection: a failure of
         * this run (nothing written yet), not a refusal. */
        return rc == EXACTLY_ERETRY ? 1 : 2;
    }
    code = o->resume_run > 0 ? reprocess_claim_rows(r, o)
                             : reprocess_create_rows(r);
    if (code == 0)
        code = use_run_position(r);
    if (code != 0)
        return code;
    for (i = 0; i < r->n_spans; i++)
        r->total += r->spans[i].to + 1 - r->spans[i].from;
    r->started_ms = exactly_now_ms();
    /* Done only when every row says so on the database the run is
     * connected to now: a failover can take back a partition closed long
     * ago (reprocess_check_rows), which is then applied again. */
    code = run_spans(r, o);
    while (code == 0 && (code = reprocess_check_rows(r, o)) == 0 &&
           r->n_done < r->n_spans)
        code = run_spans(r, o);
    if (code != 0)
        reprocess_count_rows(r);
    reprocess_count_dead_letters(r);
    r->cur = r->n_spans;
    reprocess_progress(r, o, 1);
    status = code == 0 ? "done"
             : (o->stop && *o->stop) ? "interrupted"
                                     : "failed";
    for (i = 0; i < r->n_spans; i++)
        if (!r->spans[i].done)
            reprocess_close_span(r, &r->spans[i], status);
    return reprocess_print_end(r, status, code);
}

int exactly_reprocess(const exactly_reprocess_opts *o)
{
    run *r = calloc(1, sizeof(*r));
    int code;

    if (!r)
        return 1;
    code = open_services(r, o);
    if (code == 0 && o->resume_run <= 0)
        code = reprocess_plan(r, o);
    if (code == 0 && o->dry_run)
        reprocess_print_plan(r, o);
    else if (code == 0)
        code = apply_run(r, o);

    engine_part_drop(&r->pt, r->pt.n_buf);
    free(r->pt.buf);
    free(r->pt.topic);
    reprocess_spans_free(r);
    if (r->rk) {
        rd_kafka_consumer_close(r->rk);
        rd_kafka_destroy(r->rk);
    }
    engine_free(&r->eng);
    free(r->applied_sql);
    free(r);
    return code;
}
