/* relay_kit.c - see relay_kit.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "relay_kit.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"

void relay_fixture_start(relay_fixture *f, const char *name,
                         const char *bootstraps)
{
    char prefix[128];

    memset(f, 0, sizeof *f);
    snprintf(prefix, sizeof prefix, "exactly-%s", name);
    tk_tmpdir(prefix, f->dir, sizeof f->dir);
    snprintf(f->config, sizeof f->config, "%s/relay.yaml", f->dir);
    snprintf(f->log, sizeof f->log, "%s/relay.log", f->dir);
    snprintf(f->log2, sizeof f->log2, "%s/relay2.log", f->dir);
    tk_pg_create_db(name, f->conninfo, sizeof f->conninfo);
    f->db = tk_pg_connect(f->conninfo);
    if (bootstraps) {
        f->bootstraps = bootstraps;
    } else {
        f->mock = tk_mock_start(1);
        f->bootstraps = tk_mock_bootstraps(f->mock);
    }
}

/* The relays section of c. */
static void put_relay(FILE *out, const relay_config *c)
{
    TK_CHECK(c->name && c->topic, "relay_config: a name and a topic");
    fputs("relays:\n  ", out);
    tk_yaml_quoted(out, c->name);
    fputs(":\n    topic: ", out);
    tk_yaml_quoted(out, c->topic);
    fputc('\n', out);
    if (c->transactional)
        fputs("    mode: transactional\n", out);
    if (c->position_topic) {
        fputs("    position_topic: ", out);
        tk_yaml_quoted(out, c->position_topic);
        fputc('\n', out);
    }
    if (c->batch_size > 0)
        fprintf(out, "    batch_size: %d\n", c->batch_size);
    fprintf(out, "    poll_interval_ms: %d\n",
            c->poll_interval_ms > 0 ? c->poll_interval_ms : 20);
    if (!c->delete_published)
        fputs("    cleanup: mark\n", out);
    if (c->kafka)
        fprintf(out, "    kafka: {%s}\n", c->kafka);
}

void relay_write_config(const relay_fixture *f, const char *path,
                        const relay_config *c)
{
    FILE *out = fopen(path, "w");

    TK_CHECK(out != NULL, "cannot write %s", path);
    fputs("kafka:\n  bootstrap.servers: ", out);
    tk_yaml_quoted(out, f->bootstraps);
    fprintf(out, "\n%s", c->kafka_yaml ? c->kafka_yaml : "");
    fputs("postgres:\n  conninfo: ", out);
    tk_yaml_quoted(out, f->conninfo);
    fprintf(out, "\n%s", c->postgres_yaml ? c->postgres_yaml : "");
    put_relay(out, c);
    TK_CHECK(fclose(out) == 0, "cannot write %s", path);
}

void relay_fixture_config(relay_fixture *f, const relay_config *c)
{
    char mlog[600];

    relay_write_config(f, f->config, c);
    snprintf(mlog, sizeof mlog, "%s/migrate.log", f->dir);
    ledger_migrate(f->config, mlog);
}

void relay_fixture_start_txn(relay_fixture *f, const char *name,
                             const char *relay_name, const char *topic,
                             int partitions, const char *position_topic,
                             const char *postgres_yaml)
{
    relay_fixture_start(f, name, NULL);
    tk_mock_create_topic(f->mock, topic, partitions);
    tk_mock_create_topic(f->mock, position_topic, 1);
    relay_fixture_config(f, &(relay_config){.name = relay_name,
                                            .topic = topic,
                                            .transactional = 1,
                                            .position_topic = position_topic,
                                            .batch_size = 50,
                                            .kafka = "linger.ms: 5",
                                            .postgres_yaml = postgres_yaml});
}

void relay_config_append(const char *path, const relay_config *c)
{
    FILE *out = fopen(path, "a");

    TK_CHECK(out != NULL, "cannot append to %s", path);
    put_relay(out, c);
    TK_CHECK(fclose(out) == 0, "cannot write %s", path);
}

void relay_fixture_stop(relay_fixture *f)
{
    PQfinish(f->db);
    f->db = NULL;
    tk_mock_stop(f->mock);
    f->mock = NULL;
    tk_cleanup_dir(f->dir);
}

relay_rec *relay_read_topic(const char *bootstraps, const char *topic,
                            int partitions, size_t *n)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *parts;
    rd_kafka_t *rk;
    char err[512];
    int64_t *hw = calloc((size_t)partitions, sizeof(int64_t));
    int64_t total = 0, seen = 0, deadline;
    relay_rec *out;
    int p;

    TK_CHECK(hw != NULL, "out of memory");
    ledger_high_watermarks(bootstraps, topic, partitions, hw);
    for (p = 0; p < partitions; p++)
        total += hw[p];
    out = calloc((size_t)total + 1, sizeof(relay_rec));
    TK_CHECK(out != NULL, "out of memory");
    TK_CHECK(rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, err,
                               sizeof(err)) == RD_KAFKA_CONF_OK &&
                 rd_kafka_conf_set(conf, "group.id", "relay-kit-reader", err,
                                   sizeof(err)) == RD_KAFKA_CONF_OK &&
                 rd_kafka_conf_set(conf, "enable.auto.commit", "false", err,
                                   sizeof(err)) == RD_KAFKA_CONF_OK,
             "reader config: %s", err);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    TK_CHECK(rk != NULL, "reader: %s", err);
    rd_kafka_poll_set_consumer(rk);
    parts = rd_kafka_topic_partition_list_new(partitions);
    for (p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    TK_CHECK(rd_kafka_assign(rk, parts) == RD_KAFKA_RESP_ERR_NO_ERROR,
             "assign failed");
    rd_kafka_topic_partition_list_destroy(parts);
    deadline = tk_now_ms() + 60000;
    while (seen < total && tk_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        rd_kafka_headers_t *h = NULL;
        relay_rec *r;
        const void *v;
        size_t vlen;
        size_t i;

        if (!m)
            continue;
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        r = &out[seen++];
        r->partition = m->partition;
        r->offset = m->offset;
        if (m->key)
            snprintf(r->key, sizeof(r->key), "%.*s",
                     (int)(m->key_len < 63 ? m->key_len : 63),
                     (const char *)m->key);
        if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            const char *name;
            size_t used = 0;

            for (i = 0; rd_kafka_header_get(h, i, "event-id", &v, &vlen) ==
                        RD_KAFKA_RESP_ERR_NO_ERROR;
                 i++) {
                if (i == 0 && v)
                    snprintf(r->event_id, sizeof(r->event_id), "%.*s",
                             (int)(vlen < 63 ? vlen : 63), (const char *)v);
                r->n_event_ids++;
            }
            for (i = 0; rd_kafka_header_get_all(h, i, &name, &v, &vlen) ==
                            RD_KAFKA_RESP_ERR_NO_ERROR &&
                        used < sizeof(r->headers);
                 i++) {
                if (strcmp(name, "event-id") == 0)
                    continue;
                if (v)
                    used += (size_t)snprintf(
                        r->headers + used, sizeof(r->headers) - used,
                        "%s=%.*s;", name, (int)(vlen < 200 ? vlen : 200),
                        (const char *)v);
                else
                    used += (size_t)snprintf(r->headers + used,
                                             sizeof(r->headers) - used, "%s;",
                                             name);
            }
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    free(hw);
    TK_CHECK(seen == total, "read %lld of %lld records of %s", (long long)seen,
             (long long)total, topic);
    *n = (size_t)total;
    return out;
}

pid_t relay_start(const char *config, const char *const *extra,
                  const char *log)
{
    char *argv[16];
    int n = 0;

    argv[n++] = (char *)ledger_exactly_bin();
    argv[n++] = "relay";
    argv[n++] = "-c";
    argv[n++] = (char *)config;
    while (extra && *extra && n < 15)
        argv[n++] = (char *)*extra++;
    argv[n] = NULL;
    return tk_spawn(argv, log);
}

pid_t relay_run_ready(relay_fixture *f, const char *name, int *port)
{
    char addr[64];
    char *argv[] = {(char *)tk_exactly_bin(), "run", "-c", f->config,
                    "--relay", (char *)name, "--metrics", addr,
                    "--lock-dir", f->dir, NULL};
    pid_t run;
    int code;

    relay_insert_rows(f->db, 10);
    *port = tk_free_port();
    snprintf(addr, sizeof addr, "127.0.0.1:%d", *port);
    run = tk_spawn(argv, f->log);
    relay_wait_settled(f->db, f->log, 15000, "first rows published");
    code = tk_http_wait_code(*port, "/readyz", 200, 15000);
    LEDGER_CHECK_LOG(code == 200, f->log, "/readyz answered %d before the "
                     "outage, expected 200", code);
    return run;
}

int relay_run_to_idle(const char *config, int idle_ms, int timeout_ms,
                      const char *log)
{
    char idle[32];
    const char *extra[] = {"--exit-idle", idle, NULL};
    pid_t pid;
    int st;

    snprintf(idle, sizeof(idle), "%d", idle_ms);
    pid = relay_start(config, extra, log);
    st = tk_wait(pid, timeout_ms);
    if (st == -1) {
        tk_terminate(pid, 2000);
        ledger_log_tail(log, 40);
        tk_fail("relay still running after %d ms; log %s", timeout_ms, log);
    }
    return st;
}

void relay_stop(pid_t pid, int timeout_ms, const char *log)
{
    int status = tk_terminate(pid, timeout_ms);

    LEDGER_CHECK_LOG(status == 0, log, "relay exit status %d after SIGTERM",
                     status);
}

void relay_stop_within_at(const char *file, int line, pid_t relay,
                          int bound_ms, const char *log, const char *what)
{
    int64_t t0 = tk_now_ms();
    int status;

    tk_kill(relay, SIGTERM);
    status = tk_wait(relay, bound_ms);
    if (status == -1) {
        ledger_log_tail(log, 40);
        tk_fail_at(file, line, "%s: the relay still runs %d ms after SIGTERM",
                   what, bound_ms);
    }
    tk_note("%s: the relay ended %lld ms after SIGTERM, status %d", what,
            (long long)(tk_now_ms() - t0), status);
    if (status != 0) {
        ledger_log_tail(log, 40);
        tk_fail_at(file, line, "%s: relay exit status %d after SIGTERM", what,
                   status);
    }
}

void relay_insert_rows_at(const char *file, int line, PGconn *db, int n)
{
    tk_sql_at(file, line, db,
              "INSERT INTO exactly.outbox (key, value) SELECT"
              " convert_to(g::text, 'UTF8'), 'v' FROM generate_series(1, %d)"
              " g",
              n);
}

void relay_terminate_sessions(PGconn *db)
{
    tk_sql_int64(db, "SELECT count(pg_terminate_backend(pid)) FROM "
                     "pg_stat_activity WHERE application_name = "
                     "'exactly-relay' AND datname = current_database()");
}

void relay_wait_settled(PGconn *db, const char *log, int timeout_ms,
                        const char *what)
{
    int64_t t0 = tk_now_ms();
    int64_t pending = tk_sql_wait_int64(db, 0, timeout_ms,
                                        "SELECT count(*) FROM exactly.outbox "
                                        "WHERE published_at IS NULL AND "
                                        "dead_reason IS NULL");

    LEDGER_CHECK_LOG(pending == 0, log, "%s: %lld rows still pending after "
                     "%d ms", what, (long long)pending, timeout_ms);
    tk_note("%s: every row published or dead-lettered in %lld ms", what,
            (long long)(tk_now_ms() - t0));
}

/* Writes s to m as an SQL literal (the records' bytes are the test's, but
 * a key may hold a quote). */
static void put_literal(PGconn *db, FILE *m, const char *s)
{
    char *lit = PQescapeLiteral(db, s, strlen(s));

    TK_CHECK(lit != NULL, "PQescapeLiteral: %s", PQerrorMessage(db));
    fputs(lit, m);
    PQfreemem(lit);
}

size_t relay_load_seen(PGconn *db, const char *bootstraps, const char *topic,
                       int partitions, int (*skip)(const relay_rec *),
                       size_t *n_loaded)
{
    relay_rec *recs;
    size_t n, i, loaded = 0;

    recs = relay_read_topic(bootstraps, topic, partitions, &n);
    tk_sql(db, "DROP TABLE IF EXISTS seen");
    tk_sql(db, "CREATE TABLE seen (eid text, key text, part int, off bigint, "
               "n_eids int)");
    /* In statements of up to 500 rows: a topic may hold thousands. */
    for (i = 0; i < n;) {
        char *sql = NULL;
        size_t len = 0, j = 0;
        FILE *m = open_memstream(&sql, &len);

        TK_CHECK(m != NULL, "out of memory");
        fputs("INSERT INTO seen VALUES ", m);
        for (; j < 500 && i < n; i++) {
            if (skip && skip(&recs[i]))
                continue;
            fputs(j++ ? ", (" : "(", m);
            put_literal(db, m, recs[i].event_id);
            fputs(", ", m);
            put_literal(db, m, recs[i].key);
            fprintf(m, ", %d, %lld, %d)", recs[i].partition,
                    (long long)recs[i].offset, recs[i].n_event_ids);
        }
        TK_CHECK(fclose(m) == 0, "out of memory");
        if (j > 0)
            tk_sql(db, "%s", sql);
        loaded += j;
        free(sql);
    }
    free(recs);
    if (n_loaded)
        *n_loaded = loaded;
    return n;
}

void relay_check_seen_once(PGconn *db, const char *what)
{
    char *bad = tk_sql_text(db, "SELECT min(part || '/' || off) FROM seen "
                                "WHERE n_eids <> 1 OR eid !~ "
                                "'^[0-9a-f-]*$'");

    TK_CHECK(bad == NULL, "%s: record %s without a single event-id", what,
             bad);
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM exactly.outbox "
                                       "WHERE published_at IS NULL OR "
                                       "dead_reason IS NOT NULL"),
                      0, "rows pending or dead-lettered");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM exactly.outbox "
                                       "o WHERE (SELECT count(*) FROM seen s "
                                       "WHERE s.eid = o.event_id::text) "
                                       "<> 1"),
                      0, "rows not exactly once among the committed records");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM seen"),
                      tk_sql_int64(db, "SELECT count(*) FROM exactly.outbox"),
                      "committed records");
}

size_t relay_check_exactly_once(PGconn *db, const char *bootstraps,
                                const char *topic, int partitions,
                                int (*skip)(const relay_rec *),
                                const char *what)
{
    size_t n_all, n_loaded;

    n_all = relay_load_seen(db, bootstraps, topic, partitions, skip,
                            &n_loaded);
    relay_check_seen_once(db, what);
    if (skip)
        tk_note("%s: %zu committed records for as many rows; %zu records "
                "of transactions that never committed", what, n_loaded,
                n_all - n_loaded);
    else
        tk_note("%s: %zu records for as many rows", what, n_loaded);
    return n_loaded;
}
