/*
 * bench.c - throughput of the exactly-once cycle against its baselines,
 * all measured in one run on the same PostgreSQL and the same messages:
 *
 *   (a)  naive: one transaction per message (lookup, upsert, offset update,
 *        commit), the way a consumer is usually written first;
 *   (b)  exactly end to end: mock Kafka over loopback, default batching,
 *        the built-in upsert (lookup fused into the write);
 *   (b') exactly with a C plugin (projection.so) that reads the looked-up
 *        rows and upserts them: lookup and write are separate statements;
 *   (c)  the limit: the SQL exactly runs per batch (fence, fused upsert,
 *        commit), pipelined, from a tight loop with no Kafka at all.
 *
 * It prints messages per second, the ratios b/a, b/c, b'/c and the worker's
 * peak RSS, with the targets beside them. Exit 0 unless something broke;
 * --strict also exits 1 when a target is missed.
 */
#include <inttypes.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "strbuf.h"
#include "testkit.h"
#include "upsert_sql.h"

#define TOPIC "bench"
#define PARTITIONS 4
#define SEED 7

typedef struct bench {
    size_t messages;
    size_t entities;
    size_t naive_messages;
    int batch;
    char conninfo[1024];
    char dir[512];
    const char *exactly_bin;
    const char *plugin_dir;
    tk_mock *mock;
    PGconn *db;
} bench;

static double now_s(void) { return (double)tk_now_ms() / 1000.0; }

static void reset_view(bench *b)
{
    tk_sql(b->db, "TRUNCATE account_view");
    tk_sql(b->db, "CHECKPOINT");
}

/* ---- (a) one transaction per message ------------------------------------ */

static double run_naive(bench *b)
{
    PGconn *c = tk_pg_connect(b->conninfo);
    double t0;
    size_t i;
    char id[32], off[32], part[16];

    tk_sql(c, "INSERT INTO exactly.offsets (pipeline, topic, partition, "
              "next_offset, owner_epoch) SELECT 'naive', '" TOPIC "', p, 0, 1 "
              "FROM generate_series(0, %d) p ON CONFLICT DO NOTHING",
           PARTITIONS - 1);
    t0 = now_s();
    for (i = 0; i < b->naive_messages; i++) {
        const char *p1[1] = {id};
        const char *p3[3] = {off, part, NULL};
        PGresult *r;
        snprintf(id, sizeof(id), "%" PRId64, tk_id_for(SEED, i, b->entities));
        snprintf(off, sizeof(off), "%zu", i / PARTITIONS + 1);
        snprintf(part, sizeof(part), "%zu", i % PARTITIONS);
        PQclear(PQexec(c, "BEGIN"));
        r = PQexecParams(c, "SELECT id, name, balance FROM accounts WHERE id = $1",
                         1, NULL, p1, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
            const char *up[3] = {PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1),
                                 PQgetvalue(r, 0, 2)};
            PQclear(PQexecParams(
                c,
                "INSERT INTO account_view AS t (id, name, balance) "
                "VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET "
                "name = EXCLUDED.name, balance = EXCLUDED.balance "
                "WHERE (t.name, t.balance) IS DISTINCT FROM "
                "(EXCLUDED.name, EXCLUDED.balance)",
                3, NULL, up, NULL, NULL, 0));
        }
        PQclear(r);
        PQclear(PQexecParams(c,
                             "UPDATE exactly.offsets SET next_offset = $1 "
                             "WHERE pipeline = 'naive' AND topic = '" TOPIC
                             "' AND partition = $2",
                             2, NULL, p3, NULL, NULL, 0));
        r = PQexec(c, "COMMIT");
        TK_CHECK(PQresultStatus(r) == PGRES_COMMAND_OK, "naive commit: %s",
                 PQerrorMessage(c));
        PQclear(r);
    }
    t0 = now_s() - t0;
    PQfinish(c);
    return (double)b->naive_messages / t0;
}

/* ---- (c) exactly's SQL, pipelined, no Kafka ----------------------------- */

static char *fused_insert(void)
{
    static const char *const key[] = {"id"};
    static const char *const cols[] = {"id", "name", "balance"};
    upsert_sql_spec spec;
    char err[256];
    char *sql;

    memset(&spec, 0, sizeof(spec));
    spec.table = "account_view";
    spec.key = key;
    spec.n_key = 1;
    spec.columns = cols;
    spec.sources = cols;
    spec.n_columns = 3;
    spec.lookup_table = "accounts";
    spec.lookup_id_column = "id";
    spec.id_type = "bigint";
    sql = upsert_sql_insert(&spec, err, sizeof(err));
    TK_CHECK(sql != NULL, "upsert_sql_insert: %s", err);
    return sql;
}

static void drain(PGconn *c, int statements)
{
    int seen = 0;
    while (seen <= statements) {
        PGresult *r = PQgetResult(c);
        if (!r)
            continue;
        if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            break;
        }
        TK_CHECK(PQresultStatus(r) == PGRES_COMMAND_OK ||
                     PQresultStatus(r) == PGRES_TUPLES_OK,
                 "limit loop: %s", PQresultErrorMessage(r));
        PQclear(r);
        /* Each statement ends with a NULL result. */
        r = PQgetResult(c);
        TK_CHECK(r == NULL, "limit loop: expected end of statement");
        seen++;
    }
}

static double run_limit(bench *b)
{
    PGconn *c = tk_pg_connect(b->conninfo);
    char *insert = fused_insert();
    strbuf ids = {0};
    int64_t next[PARTITIONS] = {0};
    size_t per_part = b->messages / PARTITIONS;
    double t0;
    int p;

    tk_sql(c, "INSERT INTO exactly.offsets (pipeline, topic, partition, "
              "next_offset, owner_epoch) SELECT 'limit', '" TOPIC "', p, 0, 1 "
              "FROM generate_series(0, %d) p ON CONFLICT (pipeline, topic, "
              "partition) DO UPDATE SET next_offset = 0, owner_epoch = 1",
           PARTITIONS - 1);
    TK_CHECK(PQenterPipelineMode(c) == 1, "pipeline mode");
    t0 = now_s();
    /* Partition by partition in batches, as the worker sees them. */
    for (p = 0; p < PARTITIONS; p++) {
        size_t done = 0;
        while (done < per_part) {
            size_t n = per_part - done < (size_t)b->batch ? per_part - done
                                                          : (size_t)b->batch;
            char ps[16], start[32], end[32];
            const char *fence[6] = {"limit", TOPIC, ps, "1", start, end};
            const char *ip[1];
            size_t k;

            strbuf_reset(&ids);
            strbuf_array_begin(&ids);
            for (k = 0; k < n; k++) {
                size_t i = (done + k) * PARTITIONS + (size_t)p;
                strbuf_array_elem_int(&ids, (long long)tk_id_for(SEED, i, b->entities));
            }
            strbuf_array_end(&ids);
            ip[0] = strbuf_str(&ids);
            snprintf(ps, sizeof(ps), "%d", p);
            snprintf(start, sizeof(start), "%" PRId64, next[p]);
            snprintf(end, sizeof(end), "%" PRId64, next[p] + (int64_t)n);
            /* The crash guard's record of the attempt, as the worker sends
             * it: its own small transaction, then the batch. */
            const char *attempt[8] = {"limit", TOPIC, ps, "1", start, end, "1", "3"};
            PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
            PQsendQueryParams(c, "SET LOCAL synchronous_commit = off", 0, NULL,
                              NULL, NULL, NULL, 0);
            PQsendQueryParams(c, "SELECT exactly.attempt($1, $2, $3, $4, $5, $6, $7, $8)",
                              8, NULL, attempt, NULL, NULL, 0);
            PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
            PQpipelineSync(c);
            PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
            PQsendQueryParams(c, "SELECT exactly.advance($1, $2, $3, $4, $5, $6)",
                              6, NULL, fence, NULL, NULL, 0);
            PQsendQueryParams(c, insert, 1, NULL, ip, NULL, NULL, 0);
            PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
            PQpipelineSync(c);
            drain(c, 4); /* the guard's segment */
            drain(c, 4);
            next[p] += (int64_t)n;
            done += n;
        }
    }
    t0 = now_s() - t0;
    strbuf_free(&ids);
    free(insert);
    PQfinish(c);
    return (double)(per_part * PARTITIONS) / t0;
}

/* ---- (k) Kafka alone ------------------------------------------------------ */

/* The same messages read by a consumer configured as the worker's, with no
 * database: the rate the source can deliver here, a ceiling for (b). */
static double run_kafka_only(bench *b)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    rd_kafka_topic_partition_list_t *l;
    size_t got = 0;
    int64_t first = 0, last = 0;
    int p;

    rd_kafka_conf_set(conf, "bootstrap.servers", tk_mock_bootstraps(b->mock), err, sizeof(err));
    rd_kafka_conf_set(conf, "group.id", "bench-kafka-only", err, sizeof(err));
    rd_kafka_conf_set(conf, "isolation.level", "read_committed", err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err));
    rd_kafka_conf_set(conf, "queued.min.messages", "100000", err, sizeof(err));
    rd_kafka_conf_set(conf, "queued.max.messages.kbytes", "32768", err, sizeof(err));
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    TK_CHECK(rk != NULL, "kafka-only consumer: %s", err);
    rd_kafka_poll_set_consumer(rk);
    l = rd_kafka_topic_partition_list_new(PARTITIONS);
    for (p = 0; p < PARTITIONS; p++)
        rd_kafka_topic_partition_list_add(l, TOPIC, p)->offset = 0;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    while (got < b->messages) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 5000);
        TK_CHECK(m != NULL, "kafka-only consumer stalled after %zu messages", got);
        if (!m->err) {
            if (got++ == 0)
                first = tk_now_ms();
            last = tk_now_ms();
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return (double)got / ((double)(last - first + 1) / 1000.0);
}

/* ---- (b) and (b') the worker --------------------------------------------- */

static void write_config(bench *b, const char *path, const char *pipeline,
                         const char *handler)
{
    tk_write_file(path,
                  "kafka:\n"
                  "  bootstrap.servers: \"%s\"\n"
                  "  auto.offset.reset: earliest\n"
                  "postgres:\n"
                  "  conninfo: \"%s\"\n"
                  "pipelines:\n"
                  "  %s:\n"
                  "    topics: [" TOPIC "]\n"
                  "    group: %s\n"
                  "    id: {from: key, type: bigint}\n"
                  "    lookup: {table: accounts, id_column: id}\n"
                  "    handler:\n%s",
                  tk_mock_bootstraps(b->mock), b->conninfo, pipeline, pipeline,
                  handler);
}

/* Runs the worker to the end of the topic; returns messages per second from
 * the database's own clock (claim to last commit) and sets *rss_kib. */
static double run_worker(bench *b, const char *pipeline, const char *handler,
                         long *rss_kib)
{
    char cfg[700], logp[700];
    char *argv[] = {(char *)b->exactly_bin, "worker", "-c", cfg, "--exit-idle",
                    "1500", getenv("EXACTLY_BENCH_VERBOSE") ? "-v" : "-q", NULL};
    struct rusage ru, self0, self1;
    int status;
    pid_t pid;
    double secs;
    int64_t consumed;

    snprintf(cfg, sizeof(cfg), "%s/%s.yaml", b->dir, pipeline);
    snprintf(logp, sizeof(logp), "%s/%s.log", b->dir, pipeline);
    write_config(b, cfg, pipeline, handler);
    reset_view(b);
    getrusage(RUSAGE_SELF, &self0);
    pid = tk_spawn(argv, logp);
    TK_CHECK(wait4(pid, &status, 0, &ru) == pid, "wait4");
    TK_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
             "worker %s failed (status %d), see %s", pipeline, status, logp);
    getrusage(RUSAGE_SELF, &self1);
    *rss_kib = ru.ru_maxrss;
    printf("     mock broker cpu (this process): %.2f s\n",
           (double)(self1.ru_utime.tv_sec - self0.ru_utime.tv_sec) +
               (double)(self1.ru_stime.tv_sec - self0.ru_stime.tv_sec) +
               (double)(self1.ru_utime.tv_usec - self0.ru_utime.tv_usec) / 1e6 +
               (double)(self1.ru_stime.tv_usec - self0.ru_stime.tv_usec) / 1e6);
    printf("     worker cpu: user %.2f s, sys %.2f s\n",
           (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
    consumed = tk_sql_int64(b->db,
                            "SELECT sum(next_offset) FROM exactly.offsets "
                            "WHERE pipeline = '%s'",
                            pipeline);
    TK_CHECK_EQ_INT64(consumed, (int64_t)b->messages, "messages consumed");
    secs = (double)tk_sql_int64(b->db,
                                "SELECT (extract(epoch FROM max(updated_at) - "
                                "min(claimed_at)) * 1000000)::bigint FROM "
                                "exactly.offsets WHERE pipeline = '%s'",
                                pipeline) /
           1e6;
    return (double)b->messages / secs;
}

static void setup(bench *b)
{
    char cfg[700];
    char *argv[] = {(char *)b->exactly_bin, "migrate", "-c", cfg, NULL};
    pid_t pid;

    tk_pg_create_db("bench", b->conninfo, sizeof(b->conninfo));
    b->db = tk_pg_connect(b->conninfo);
    tk_sql(b->db, "CREATE TABLE accounts (id bigint PRIMARY KEY, name text, "
                  "balance numeric)");
    tk_sql(b->db, "INSERT INTO accounts SELECT g, 'account ' || g, g * 10.5 "
                  "FROM generate_series(1, %zu) g",
           b->entities);
    tk_sql(b->db, "CREATE TABLE account_view (id bigint PRIMARY KEY, name "
                  "text, balance numeric)");
    tk_sql(b->db, "VACUUM ANALYZE accounts");
    b->mock = tk_mock_start(1);
    tk_mock_create_topic(b->mock, TOPIC, PARTITIONS);
    snprintf(cfg, sizeof(cfg), "%s/migrate.yaml", b->dir);
    write_config(b, cfg, "migrate", "      builtin: upsert\n");
    pid = tk_spawn(argv, "/dev/null");
    TK_CHECK(tk_wait(pid, 60000) == 0, "exactly migrate failed");
    tk_produce_ids(tk_mock_bootstraps(b->mock), TOPIC, b->messages,
                   b->entities, PARTITIONS, SEED, NULL);
}

static const char *verdict(double v, double target, int *missed)
{
    if (v >= target)
        return "met";
    *missed = 1;
    return "MISSED";
}

int main(int argc, char **argv)
{
    bench b;
    double a, bb, bp, c;
    long rss_b = 0, rss_bp = 0;
    int strict = 0, missed = 0;
    int i;
    char handler_b[] = "      builtin: upsert\n"
                       "      options:\n"
                       "        table: account_view\n"
                       "        key: [id]\n"
                       "        columns: {id: id, name: name, balance: balance}\n";
    char handler_bp[1024];

    memset(&b, 0, sizeof(b));
    b.messages = 200000;
    b.entities = 100000;
    b.naive_messages = 5000;
    b.batch = 1000;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--messages") && i + 1 < argc)
            b.messages = (size_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--naive-messages") && i + 1 < argc)
            b.naive_messages = (size_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--strict"))
            strict = 1;
        else {
            printf("usage: exactly-bench [--messages N] [--naive-messages N] "
                   "[--strict]\n"
                   "Needs EXACTLY_TEST_PG_DIR (a scripts/pg.sh cluster), "
                   "EXACTLY_BIN and EXACTLY_PLUGIN_DIR; scripts/bench.sh sets "
                   "them.\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    b.messages -= b.messages % PARTITIONS;
    b.exactly_bin = tk_env_required("EXACTLY_BIN");
    b.plugin_dir = tk_env_required("EXACTLY_PLUGIN_DIR");
    tk_tmpdir("exactly-bench", b.dir, sizeof(b.dir));
    snprintf(handler_bp, sizeof(handler_bp),
             "      plugin: %s/projection.so\n"
             "      options: {table: account_view, key: id}\n",
             b.plugin_dir);

    printf("exactly benchmark: %zu messages over %d partitions, %zu entities, "
           "batches of %d; PostgreSQL %s\n",
           b.messages, PARTITIONS, b.entities, b.batch,
           "from EXACTLY_TEST_PG_DIR");
    setup(&b);
    fflush(stdout);

    reset_view(&b);
    a = run_naive(&b);
    printf("(a)  naive, one transaction per message   %9.0f msg/s  (%zu messages)\n",
           a, b.naive_messages);
    fflush(stdout);
    reset_view(&b);
    c = run_limit(&b);
    printf("(c)  limit: exactly's SQL, pipelined      %9.0f msg/s  (first)\n", c);
    fflush(stdout);
    printf("(k)  Kafka alone: the same consumer, no database  %9.0f msg/s\n",
           run_kafka_only(&b));
    fflush(stdout);
    bb = run_worker(&b, "fused", handler_b, &rss_b);
    printf("(b)  exactly, built-in upsert (fused)     %9.0f msg/s  peak RSS %.1f MiB\n",
           bb, (double)rss_b / 1024.0);
    fflush(stdout);
    bp = run_worker(&b, "plugin", handler_bp, &rss_bp);
    printf("(b') exactly, C plugin (lookup + upsert)  %9.0f msg/s  peak RSS %.1f MiB\n",
           bp, (double)rss_bp / 1024.0);
    /* The limit is measured before and after the workers and averaged, so
     * a machine that speeds up or slows down during the run biases no side. */
    reset_view(&b);
    {
        double c2 = run_limit(&b);
        printf("(c)  limit: exactly's SQL, pipelined      %9.0f msg/s  (again; "
               "mean %.0f)\n", c2, (c + c2) / 2);
        c = (c + c2) / 2;
    }
    printf("\nratio    measured  target\n");
    printf("b/a      %8.1f  >= 40    %s\n", bb / a, verdict(bb / a, 40, &missed));
    printf("b/c      %8.2f  >= 0.85  %s\n", bb / c, verdict(bb / c, 0.85, &missed));
    printf("b'/c     %8.2f  >= 0.80  %s\n", bp / c, verdict(bp / c, 0.80, &missed));
    printf("peak RSS %6.1f MiB  < 64 MiB %s\n",
           (double)(rss_b > rss_bp ? rss_b : rss_bp) / 1024.0,
           (rss_b > rss_bp ? rss_b : rss_bp) < 64 * 1024 ? "met"
                                                        : (missed = 1, "MISSED"));
    PQfinish(b.db);
    tk_mock_stop(b.mock);
    tk_pg_drop_db(b.conninfo);
    if (getenv("EXACTLY_BENCH_VERBOSE"))
        printf("logs kept in %s\n", b.dir);
    else
        tk_rm_rf(b.dir);
    return strict && missed ? 1 : 0;
}
