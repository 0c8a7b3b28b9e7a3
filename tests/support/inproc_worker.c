#include "inproc_worker.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ledger_check.h"
#include "log.h"
#include "metrics.h"
#include "plugin.h"

void inproc_worker_start(inproc_worker *iw, const char *config_path,
                         int metrics)
{
    const cfg_pipeline *p;
    worker *w = &iw->w;
    char err[2048];

    memset(iw, 0, sizeof(*iw));
    TK_CHECK(exactly_config_load(config_path, &iw->cfg, err, sizeof err) ==
                 EXACTLY_OK,
             "config: %s", err);
    p = &iw->cfg->pipelines[0];
    worker_init(w, iw->cfg, p);
    snprintf(w->eng.owner, sizeof w->eng.owner, "test:%d:0", (int)getpid());
    if (metrics) {
        w->m = metrics_map(1);
        TK_CHECK(w->m != NULL, "metrics_map");
    }
    TK_CHECK(exactly_plugin_load(iw->cfg, p, &w->eng.plugin, err,
                                 sizeof err) == EXACTLY_OK,
             "plugin: %s", err);
    TK_CHECK(worker_consumer_start(w, err, sizeof err) == EXACTLY_OK,
             "consumer: %s", err);
    TK_CHECK(worker_db(w) == EXACTLY_OK, "cannot connect");
    TK_CHECK(exactly_plugin_open(w->eng.plugin, w->eng.conn, p,
                                 w->eng.timeout_ms, err,
                                 sizeof err) == EXACTLY_OK,
             "open: %s", err);
    TK_CHECK(worker_consumer_subscribe(&w->con, err, sizeof err) ==
                 EXACTLY_OK,
             "subscribe: %s", err);
}

void inproc_worker_stop(inproc_worker *iw)
{
    worker *w = &iw->w;

    rd_kafka_consumer_close(w->rk);
    while (w->eng.n_parts > 0)
        engine_part_remove(&w->eng, w->eng.parts[w->eng.n_parts - 1]);
    rd_kafka_destroy(w->rk);
    engine_free(&w->eng);
    if (w->m)
        metrics_unmap(w->m, 1);
    exactly_config_free(iw->cfg);
}

int inproc_all_serving(const worker *w, size_t n)
{
    size_t i;

    if (w->eng.n_parts != n)
        return 0;
    for (i = 0; i < w->eng.n_parts; i++)
        if (w->eng.parts[i]->state != PART_S_SERVING ||
            w->eng.parts[i]->n_buf > 0)
            return 0;
    return 1;
}

void inproc_produce(const char *bootstraps, const char *topic, int partition,
                    int n, int first_id, int64_t *counts)
{
    int *parts = calloc((size_t)n, sizeof(int));
    int *ids = calloc((size_t)n, sizeof(int));
    int i;

    TK_CHECK(n > 0 && parts && ids, "inproc_produce: %d messages", n);
    for (i = 0; i < n; i++) {
        parts[i] = partition;
        ids[i] = first_id + i;
        counts[ids[i] - 1]++;
    }
    tk_produce_int_keys(bootstraps, topic, parts, ids, (size_t)n);
    free(parts);
    free(ids);
}

int inproc_serve_once(inproc_worker *iw, PGconn *db, const char *bootstraps,
                      const char *topic, int n_parts, int per_part,
                      int64_t *counts)
{
    worker *w = &iw->w;
    int i, total = 0;

    for (i = 0; i < n_parts; i++) {
        inproc_produce(bootstraps, topic, i, per_part, 1 + i * per_part,
                       counts);
        total += per_part;
    }
    INPROC_RUN_UNTIL(w,
                     inproc_all_serving(w, (size_t)n_parts) &&
                         ledger_rows(db) == total,
                     60000, 1);
    TK_CHECK(inproc_all_serving(w, (size_t)n_parts) &&
                 ledger_rows(db) == total,
             "the first batches were not applied (%" PRId64 " rows of %d)",
             ledger_rows(db), total);
    return total;
}

int inproc_held_start(inproc_worker *iw, ledger_fixture *f, PGconn **db,
                      const inproc_held *h, int64_t *counts)
{
    ledger_config c;
    char options[64];
    int total;

    ledger_fixture_start(f, h->name, h->topic, h->partitions);
    memset(&c, 0, sizeof c);
    c.max_messages = h->max_messages;
    c.max_wait_ms = h->max_wait_ms;
    if (h->stall_ms > 0) {
        snprintf(options, sizeof options, "        stall_ms: %d\n",
                 h->stall_ms);
        c.handler_options_yaml = options;
    }
    ledger_fixture_config(f, &c);
    *db = tk_pg_connect(f->conninfo);
    inproc_worker_start(iw, f->config, h->metrics);
    total = inproc_serve_once(iw, *db, f->mock->bootstraps, h->topic,
                              h->partitions, h->per_part, counts);
    /* X: the partition a flush visits first; Y: the one after it. */
    iw->x = iw->w.eng.parts[0];
    iw->y = iw->w.eng.parts[1];
    tk_note("X is partition %d, Y partition %d", (int)iw->x->partition,
            (int)iw->y->partition);
    return total;
}

void inproc_buffer_xy(inproc_worker *iw, const char *bootstraps,
                      const char *topic, int x_msgs, int y_msgs, int *next_id,
                      int64_t *counts)
{
    part *x = iw->x, *y = iw->y;

    inproc_produce(bootstraps, topic, x->partition, x_msgs, *next_id, counts);
    *next_id += x_msgs;
    inproc_produce(bootstraps, topic, y->partition, y_msgs, *next_id, counts);
    *next_id += y_msgs;
    INPROC_RUN_UNTIL(&iw->w, x->n_buf == (size_t)x_msgs &&
                                 y->n_buf == (size_t)y_msgs,
                     10000, 0);
    TK_CHECK(x->n_buf == (size_t)x_msgs && y->n_buf == (size_t)y_msgs,
             "X buffers %zu of %d, Y %zu of %d", x->n_buf, x_msgs, y->n_buf,
             y_msgs);
}

void inproc_slow_commit(PGconn *db, int partition, int64_t offset,
                        int seconds)
{
    tk_sql(db, "CREATE SEQUENCE commit_running");
    tk_sql(db, "CREATE SEQUENCE slow_once");
    tk_sql(db, "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE "
               "plpgsql AS $$ BEGIN IF nextval('slow_once') = 1 THEN "
               "PERFORM setval('commit_running', 2); PERFORM pg_sleep(%d); "
               "END IF; RETURN NEW; END $$",
           seconds);
    tk_sql(db, "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON ledger "
               "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
               "WHEN (NEW.partition = %d AND NEW.\"offset\" = %" PRId64 ") "
               "EXECUTE FUNCTION slow_commit()",
           partition, offset);
}

void inproc_wait_commit_running(PGconn *db)
{
    long long t0 = tk_now_ms();

    while (tk_sql_int64(db, "SELECT last_value FROM commit_running") != 2) {
        TK_CHECK(tk_now_ms() - t0 < 20000,
                 "X's held COMMIT did not begin within 20 s");
        tk_sleep_ms(5);
    }
}

void inproc_held_finish(inproc_worker *iw, ledger_fixture *f, PGconn *db,
                        const inproc_held *h, int total,
                        const int64_t *counts)
{
    worker *w = &iw->w;

    INPROC_RUN_UNTIL(w, ledger_rows(db) >= total && worker_all_committed(w),
                     20000, 1);
    ledger_check_exactly_once(db, f->mock->bootstraps, h->topic,
                              h->partitions, total, counts, LEDGER_ACCOUNTS);
    inproc_worker_stop(iw);
    PQfinish(db);
    ledger_fixture_stop(f);
}

void inproc_mirror_start(inproc_worker *iw, ledger_fixture *f, PGconn **db,
                         const char *name, const char *topic,
                         int partitions)
{
    ledger_config c;
    tk_config cfg;

    ledger_fixture_start(f, name, topic, partitions);
    *db = tk_pg_connect(f->conninfo);
    tk_sql(*db, "CREATE TABLE mirror (id bigint PRIMARY KEY, name text, "
                "balance numeric)");
    memset(&c, 0, sizeof c);
    c.bootstraps = f->mock->bootstraps;
    c.conninfo = f->conninfo;
    c.topic = topic;
    c.max_messages = 100;
    c.max_wait_ms = 20;
    ledger_config_fill(&cfg, &c);
    cfg.pipelines[0].plugin = NULL;
    tk_upsert_handler(&cfg.pipelines[0], "mirror",
                      (const char *[]){"id", "name", "balance", NULL});
    tk_config_write(f->config, &cfg);
    ledger_migrate(f->config, f->log);
    inproc_worker_start(iw, f->config, 1);
}

/* Runs step on w with the log sent to path, then shows its tail. */
static void logged(worker *w, void (*step)(worker *), const char *path,
                   int tail_lines)
{
    int saved = dup(STDERR_FILENO);

    TK_CHECK(saved >= 0 && exactly_log_set_file(path) == 0,
             "cannot send the log to %s", path);
    step(w);
    fflush(stderr);
    (void)exactly_log_set_file(NULL);
    TK_CHECK(dup2(saved, STDERR_FILENO) >= 0, "cannot restore stderr");
    close(saved);
    tk_log_tail(path, tail_lines);
}

static void flush_step(worker *w) { (void)worker_flush_ready(w, 0); }

static void follow_step(worker *w)
{
    w->follow_at_ms = 0;
    worker_follow_idle(w);
}

void inproc_flush_logged(worker *w, const char *path, int tail_lines)
{
    logged(w, flush_step, path, tail_lines);
}

void inproc_follow_logged(worker *w, const char *path, int tail_lines)
{
    logged(w, follow_step, path, tail_lines);
}
