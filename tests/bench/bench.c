/*
 * bench.c - exactly against its baselines, all measured in one run on the
 * same PostgreSQL and the same messages, in interleaved rounds (each round
 * runs every consumer once, so a machine that slows down during the run
 * biases no side):
 *
 *   (c)  ceiling: a tight hand-written C consumer of exactly's design
 *        (this program run with --ceiling-consumer): librdkafka,
 *        read_committed, from the same mock cluster and topic; batches of
 *        up to 1,000 per partition, each one transaction (BEGIN, fence,
 *        fused upsert, COMMIT) with prepared statements and a binary
 *        int8[] parameter, the next batch sent before the previous one's
 *        answers are read; offsets stored by the fence in the same
 *        transaction, the Kafka commit after; it does not wake
 *        librdkafka's fetchers after a full queue (lib/kafka/refill.h),
 *        so a backlog makes it wait at each refill as a plain loop does;
 *   (c0) the same SQL loop without Kafka: the IDs computed in the bench
 *        process, no consumer at all (information only, no target);
 *   (p)  a Python peer of the same design (tests/bench/peer.py:
 *        confluent-kafka + psycopg2, batches of 1,000, lookup = ANY, upsert
 *        over unnest, offsets in the same transaction, Kafka commit after);
 *   (b)  exactly end to end with the built-in upsert (lookup fused in);
 *   (b') exactly with the projection C plugin (lookup, then upsert).
 *
 * The main topic holds 300,000 unique IDs (issue 9) over 4 partitions.
 * Every consumer is timed alike, first message to last commit, from a
 * commit log the database keeps (commit_seconds): the first commit less
 * that transaction's share at the run's rate, to the last commit. It needs
 * nothing from the consumer (the baseline build, the peer and the ceiling
 * are timed as exactly is) and leaves out the group join, the claim and
 * the fetch start; exactly was timed from its claim before, and the line
 * "timing:" shows how far that came before its first message.
 *
 * For each: messages per second, client CPU per message (the consumer
 * process's rusage), PostgreSQL backend CPU per message (utime + stime of
 * the consumer's backends from /proc, sampled while it runs) and peak RSS.
 * Then: produce-to-commit latency p50/p99 at a steady rate with a low
 * max_wait_ms for exactly and the peer; fairness (each partition's progress
 * per window while a backlog drains); 64 and 256 partitions at a low rate
 * against 4; two workers (`exactly run`, workers: 2) against one, with
 * the machine's busy cores over their commits; and, with --callgrind, the
 * worker's instructions per message under callgrind (the slope between two
 * message counts, so start-up and shutdown cancel out), and the
 * hand-written loop's (c) measured the same way: what librdkafka, libpq
 * and libc cost a consumer that does almost nothing else.
 *
 * Exit 0 unless something broke; --strict also exits 1 when a target is
 * missed.
 *
 * For (b) once and two workers alone: EXACTLY_BENCH_TWO_ONLY=1.
 *
 * For the plugin path alone: EXACTLY_BENCH_PLUGIN_ONLY=1 runs (b) and (b')
 * in interleaved rounds and prints b'/b; with
 * EXACTLY_BENCH_BASELINE_PLUGIN=FILE also (b'0), the same worker with that
 * build of projection.so, in the same rounds (EXACTLY_BENCH_STATEMENTS, below,
 * works there too).
 *
 * For the latency run alone: EXACTLY_BENCH_LATENCY_ONLY=1 (with
 * EXACTLY_BENCH_LATENCY_SECONDS its duration, default 10; 3 with --quick).
 *
 * For the throughput of (c) against (b) alone: EXACTLY_BENCH_BC_ONLY=1 runs
 * (c), (b) and, with EXACTLY_BENCH_BASELINE_BIN, (b0) in interleaved rounds
 * and prints b/c (and b/b0). EXACTLY_BENCH_STATEMENTS=1 (scripts/bench.sh
 * then loads pg_stat_statements) also prints, after each of those runs,
 * what the consumer sent the server: each statement's calls, rows and
 * server time (plan + execute) per message, the work behind that time
 * (buffers touched per message; pages dirtied, WAL full-page images per
 * 1,000 messages; WAL bytes per message), and its transactions.
 * EXACTLY_BENCH_KAFKA adds kafka: lines (indented two spaces) to the
 * workers' configuration in those runs; the ceiling keeps its own.
 * EXACTLY_BENCH_TIMELINE=1 prints, for every run timed by its commit log,
 * the rate over the middle 80 % of its messages, its commit gaps, and
 * the time its first and last 10 % took.
 *
 * For looking into fairness alone: EXACTLY_BENCH_FAIR_ONLY=1 runs only the
 * two backlogs (EXACTLY_BENCH_FAIR_MESSAGES and EXACTLY_BENCH_FAIR_SLOW
 * size them, EXACTLY_BENCH_FAIR_WINDOW sets the window in seconds,
 * EXACTLY_BENCH_FAIR_KAFKA adds kafka: lines to the worker's config, and
 * EXACTLY_BENCH_VERBOSE=1 prints every partition's offset per sample).
 */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testkit.h"
#include "upsert_sql.h"

#define TOPIC "bench"
#define PARTITIONS 4
#define SEED 7
#define MAX_PARTS 256
#define MAX_BACKENDS 64
#define MAX_SAMPLES 20000

typedef struct bench {
    size_t messages;
    size_t entities;
    int rounds;
    int quick;
    int callgrind;
    int batch;
    char conninfo[1024];
    char dir[512];
    const char *exactly_bin;
    const char *baseline_bin; /* EXACTLY_BENCH_BASELINE_BIN: another build */
    const char *cur_bin;      /* the worker run_worker starts; NULL: ours */
    const char *plugin_dir;
    const char *peer;
    const char *kafka_extra;  /* more kafka: lines for write_config */
    const char *wtopic;       /* run_worker's topic; NULL: TOPIC */
    size_t wmessages;         /* and its message count; 0: messages */
    const char *wextra;       /* and more pipeline settings; NULL: none */
    tk_mock *mock;
    PGconn *db;
    long hz;
    int topics_made;
} bench;

/* What one consumer run measured. */
typedef struct figures {
    double msgs_s;
    double prog_msgs_s;  /* from the bench's own polling of the offsets:
                            first progress to all committed (workers) */
    double client_us;    /* client CPU per message */
    double pg_us;        /* backend CPU per message */
    long rss_kib;
    double fairness;     /* min over windows of slowest/fastest; <0: none */
    double self_s;       /* (c), (p): their own first message to last
                            commit, for comparison */
    double claim_gap_s;  /* workers: earliest claim to first message */
    double pause_s;      /* workers: longest time between two commits */
    int owners;          /* workers: how many committed */
    double cores_busy;   /* the whole machine's from first to last commit
                            (/proc/stat), in cores; <0: not known */
} figures;

/* The machine's CPU, sampled by watch() every 100 ms with the wall clock,
 * so that a consumer's commit window can be matched to it. */
#define MAX_LOAD 30000
static struct {
    int n;
    double wall[MAX_LOAD], busy[MAX_LOAD], total[MAX_LOAD];
} load;

/* The machine's busy and total CPU time so far, in clock ticks (the first
 * line of /proc/stat); 0 when it cannot be read. */
static void machine_ticks(double *busy, double *total)
{
    unsigned long long v[10] = {0};
    FILE *f = fopen("/proc/stat", "r");
    int i, n = 0;

    *busy = *total = 0;
    if (!f)
        return;
    n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
               &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8],
               &v[9]);
    fclose(f);
    /* user nice system idle iowait irq softirq steal (guest: in user). */
    for (i = 0; i < n && i < 8; i++)
        *total += (double)v[i];
    *busy = *total - (double)v[3] - (n > 4 ? (double)v[4] : 0);
}

static double now_s(void) { return (double)tk_now_ms() / 1000.0; }

/* The main topic's i-th message's ID: 1..n, each once (issue 9: unique
 * IDs), scattered (multiplying by a prime larger than n, modulo n, is a
 * permutation), so that consecutive messages do not hit neighbouring
 * index pages. */
static int64_t bench_id(size_t i, size_t n)
{
    return (int64_t)(((uint64_t)i * 2654435761u) % n) + 1;
}

/* Produces the main topic: n messages, message i to partition i % 4 with
 * key bench_id(i, n). */
static void produce_unique(bench *b, size_t n)
{
    int *parts = malloc(n * sizeof(int)), *ids = malloc(n * sizeof(int));
    size_t i;

    TK_CHECK(parts && ids, "out of memory");
    TK_CHECK(n < 2000000000u, "too many messages");
    for (i = 0; i < n; i++) {
        parts[i] = (int)(i % PARTITIONS);
        ids[i] = (int)bench_id(i, n);
    }
    tk_produce_int_keys(tk_mock_bootstraps(b->mock), TOPIC, parts, ids, n);
    free(parts);
    free(ids);
}

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static double wall_s(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- PostgreSQL backend CPU, from /proc --------------------------------- */

/* utime + stime of pid in clock ticks; -1 when it is gone. */
static long proc_ticks(pid_t pid)
{
    char path[64], buf[1024];
    FILE *f;
    size_t n;
    char *p;
    unsigned long ut = 0, st = 0;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    if (!p)
        return -1;
    /* After ") ": state(3) ... utime is field 14, stime 15. */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
               &ut, &st) != 2)
        return -1;
    return (long)(ut + st);
}

/* Transaction IDs the cluster has assigned so far: a transaction takes one
 * when it first writes, and a read-only one (the bench's own polling and
 * sampling) none, so the difference between two reads counts the
 * transactions that wrote meanwhile. Reading it takes none either. */
static int64_t xids_assigned(bench *b)
{
    return tk_sql_int64(b->db, "SELECT pg_snapshot_xmax(pg_current_snapshot())"
                               "::text::bigint");
}

/* The backends of the benchmark's database other than the bench's own
 * control connection, with the last CPU figure seen for each: a backend's
 * work is all counted (it started with the consumer), up to the last
 * sample before it ended. */
typedef struct sampler {
    int n;
    pid_t pid[MAX_BACKENDS];
    long ticks[MAX_BACKENDS];
} sampler;

static void sample(bench *b, sampler *s)
{
    PGresult *r = PQexec(b->db, "SELECT pid FROM pg_stat_activity WHERE "
                                "datname = current_database() AND "
                                "pid <> pg_backend_pid() AND "
                                "backend_type = 'client backend'");
    int i, k;

    TK_CHECK(PQresultStatus(r) == PGRES_TUPLES_OK, "sample: %s",
             PQerrorMessage(b->db));
    for (i = 0; i < PQntuples(r); i++) {
        pid_t pid = (pid_t)atoi(PQgetvalue(r, i, 0));
        long t = proc_ticks(pid);
        if (t < 0)
            continue;
        for (k = 0; k < s->n && s->pid[k] != pid; k++)
            ;
        if (k == s->n) {
            if (s->n == MAX_BACKENDS)
                continue;
            s->pid[s->n++] = pid;
        }
        s->ticks[k] = t;
    }
    PQclear(r);
}

static double sampler_seconds(const bench *b, const sampler *s)
{
    long t = 0;
    int i;

    for (i = 0; i < s->n; i++)
        t += s->ticks[i];
    return (double)t / (double)b->hz;
}

/* ---- progress of a consumer, from its offsets table ---------------------- */

typedef struct series {
    int n;
    int parts;
    double t[MAX_SAMPLES];
    int64_t off[MAX_SAMPLES][PARTITIONS];
} series;

static void progress(bench *b, const char *sql, series *s)
{
    PGresult *r;
    int i;

    if (!s || s->n == MAX_SAMPLES)
        return;
    r = PQexec(b->db, sql);
    TK_CHECK(PQresultStatus(r) == PGRES_TUPLES_OK, "progress: %s",
             PQerrorMessage(b->db));
    s->t[s->n] = now_s();
    memset(s->off[s->n], 0, sizeof(s->off[s->n]));
    for (i = 0; i < PQntuples(r); i++) {
        int p = atoi(PQgetvalue(r, i, 0));
        if (p >= 0 && p < PARTITIONS)
            s->off[s->n][p] = atoll(PQgetvalue(r, i, 1));
    }
    PQclear(r);
    s->n++;
}

/* The least, over windows of w seconds that end before any partition has
 * drained, of the slowest partition's progress over the fastest's. */
static double fairness(const series *s, int64_t per_part, double w, int *windows)
{
    double worst = -1;
    int i, j, p;

    *windows = 0;
    /* From the first commit on: before it the worker is starting (joining
     * its group, claiming), and a window ending just after the first
     * partition's first commit would read 0 for the others. */
    for (i = 0; i < s->n; i++) {
        int64_t sum = 0;
        for (p = 0; p < PARTITIONS; p++)
            sum += s->off[i][p];
        if (sum > 0)
            break;
    }
    for (; i < s->n; i++) {
        int64_t lo = INT64_MAX, hi = 0;
        int drained = 0;
        for (j = i; j < s->n && s->t[j] - s->t[i] < w; j++)
            ;
        if (j == s->n)
            break;
        for (p = 0; p < PARTITIONS; p++) {
            int64_t d = s->off[j][p] - s->off[i][p];
            if (s->off[j][p] >= per_part)
                drained = 1;
            if (d < lo)
                lo = d;
            if (d > hi)
                hi = d;
        }
        if (drained || hi == 0)
            continue;
        (*windows)++;
        if (worst < 0 || (double)lo / (double)hi < worst)
            worst = (double)lo / (double)hi;
    }
    return worst;
}

/* ---- running a consumer process ------------------------------------------ */

static void load_sample(void)
{
    if (load.n == MAX_LOAD)
        return;
    load.wall[load.n] = wall_s();
    machine_ticks(&load.busy[load.n], &load.total[load.n]);
    load.n++;
}

/* The machine's busy cores between wall times t0 and t1, from the samples
 * around them; -1 without two such samples. */
static double load_between(double t0, double t1)
{
    int i = -1, j = -1, k;

    for (k = 0; k < load.n; k++) {
        if (load.wall[k] <= t0)
            i = k;
        if (load.wall[k] >= t1 && j < 0)
            j = k;
    }
    if (i < 0 || j <= i || load.total[j] <= load.total[i])
        return -1;
    return (load.busy[j] - load.busy[i]) / (load.total[j] - load.total[i]) *
           (double)sysconf(_SC_NPROCESSORS_ONLN);
}

/* Waits for pid, sampling backends and progress every 100 ms; returns the
 * exit status and the child's rusage. */
static int watch(bench *b, pid_t pid, sampler *smp, const char *progress_sql,
                 series *ser, struct rusage *ru)
{
    int status = 0;

    for (;;) {
        pid_t r = wait4(pid, &status, WNOHANG, ru);
        TK_CHECK(r >= 0, "wait4: %s", strerror(errno));
        if (r == pid)
            break;
        sample(b, smp);
        load_sample();
        if (progress_sql)
            progress(b, progress_sql, ser);
        tk_sleep_ms(100);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void reset_view(bench *b)
{
    tk_sql(b->db, "TRUNCATE account_view");
    tk_sql(b->db, "CHECKPOINT");
}

/* ---- (c0) SQL only: prepared, pipelined, no Kafka ----------------------- */

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

/* Reads one sync segment of `statements` statements. */
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
                 "ceiling loop: %s", PQresultErrorMessage(r));
        PQclear(r);
        r = PQgetResult(c);
        TK_CHECK(r == NULL, "ceiling loop: expected end of statement");
        seen++;
    }
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void put64(unsigned char *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

/* This program's own path, for running it again as the ceiling loop. */
static void self_exe(char *out, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", out, size - 1);

    TK_CHECK(n > 0, "readlink /proc/self/exe: %s", strerror(errno));
    out[n] = '\0';
}

/* The offset rows the ceiling loop's fence moves for group on topic: each
 * partition at offset 0, epoch 1. */
static void ceiling_offsets(bench *b, const char *group, const char *topic)
{
    tk_sql(b->db, "INSERT INTO exactly.offsets (pipeline, topic, partition, "
                  "next_offset, owner_epoch) SELECT '%s', '%s', p, 0, 1 FROM "
                  "generate_series(0, %d) p ON CONFLICT (pipeline, topic, "
                  "partition) DO UPDATE SET next_offset = 0, owner_epoch = 1",
           group, topic, PARTITIONS - 1);
}

/* Ends every client backend of the bench database but the bench's own,
 * and waits until each is gone. */
static void end_backends(bench *b)
{
    PGresult *r = PQexec(b->db, "SELECT pid, pg_terminate_backend(pid) FROM "
                                "pg_stat_activity WHERE datname = "
                                "current_database() AND pid <> "
                                "pg_backend_pid() AND backend_type = "
                                "'client backend'");
    int i;

    TK_CHECK(PQresultStatus(r) == PGRES_TUPLES_OK, "terminate: %s",
             PQerrorMessage(b->db));
    for (i = 0; i < PQntuples(r); i++)
        tk_pg_wait_backend_gone(b->db, atoll(PQgetvalue(r, i, 0)));
    PQclear(r);
}

static void run_ceiling(bench *b, figures *f)
{
    PGconn *c = tk_pg_connect(b->conninfo);
    char *insert = fused_insert();
    size_t per_part = b->messages / PARTITIONS;
    unsigned char *arr = malloc(20 + (size_t)b->batch * 12);
    struct rusage r0, r1;
    long pg0;
    double t0;
    int p, in_flight = 0;
    PGresult *res;

    TK_CHECK(arr != NULL, "out of memory");
    ceiling_offsets(b, "ceiling", TOPIC);
    res = PQprepare(c, "fence", "SELECT exactly.advance($1, $2, $3, $4, $5, $6)",
                    0, NULL);
    TK_CHECK(PQresultStatus(res) == PGRES_COMMAND_OK, "prepare: %s",
             PQerrorMessage(c));
    PQclear(res);
    res = PQprepare(c, "upsert", insert, 0, NULL);
    TK_CHECK(PQresultStatus(res) == PGRES_COMMAND_OK, "prepare: %s",
             PQerrorMessage(c));
    PQclear(res);
    TK_CHECK(PQenterPipelineMode(c) == 1, "pipeline mode");
    pg0 = proc_ticks(PQbackendPID(c));
    getrusage(RUSAGE_THREAD, &r0);
    t0 = now_s();
    /* Round-robin over the partitions, one batch each, as a fair consumer
     * serves them. */
    for (size_t done = 0; done < per_part;) {
        size_t n = per_part - done < (size_t)b->batch ? per_part - done
                                                      : (size_t)b->batch;
        for (p = 0; p < PARTITIONS; p++) {
            char ps[16], start[32], end[32];
            const char *fence[6] = {"ceiling", TOPIC, ps, "1", start, end};
            const char *ip[1] = {(const char *)arr};
            int len[1], fmt[1] = {1};
            size_t k;

            put32(arr, 1);
            put32(arr + 4, 0);
            put32(arr + 8, 20); /* int8 */
            put32(arr + 12, (uint32_t)n);
            put32(arr + 16, 1);
            for (k = 0; k < n; k++) {
                size_t i = (done + k) * PARTITIONS + (size_t)p;
                put32(arr + 20 + k * 12, 8);
                put64(arr + 24 + k * 12, (uint64_t)bench_id(i, b->messages));
            }
            len[0] = (int)(20 + n * 12);
            snprintf(ps, sizeof(ps), "%d", p);
            snprintf(start, sizeof(start), "%zu", done);
            snprintf(end, sizeof(end), "%zu", done + n);
            PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
            PQsendQueryPrepared(c, "fence", 6, fence, NULL, NULL, 0);
            PQsendQueryPrepared(c, "upsert", 1, ip, len, fmt, 0);
            PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
            PQpipelineSync(c);
            PQflush(c);
            /* One batch in flight while the next is built and sent. */
            if (in_flight)
                drain(c, 4);
            in_flight = 1;
        }
        done += n;
    }
    if (in_flight)
        drain(c, 4);
    t0 = now_s() - t0;
    getrusage(RUSAGE_THREAD, &r1);
    f->msgs_s = (double)(per_part * PARTITIONS) / t0;
    f->client_us = (tv_s(r1.ru_utime) + tv_s(r1.ru_stime) - tv_s(r0.ru_utime) -
                    tv_s(r0.ru_stime)) * 1e6 / (double)(per_part * PARTITIONS);
    f->pg_us = (double)(proc_ticks(PQbackendPID(c)) - pg0) / (double)b->hz *
               1e6 / (double)(per_part * PARTITIONS);
    getrusage(RUSAGE_SELF, &r1);
    f->rss_kib = r1.ru_maxrss; /* the whole bench process: an upper bound */
    f->fairness = -1;
    free(arr);
    free(insert);
    PQfinish(c);
}

static void spawn_figures(bench *b, figures *f, double secs, size_t msgs,
                          const sampler *smp, const struct rusage *ru);

/* ---- timing: first message to last commit, from the commit log ---------- */

/* EXACTLY_BENCH_TIMELINE: where a run's time went, from its commit log:
 * the rate over the middle 80 % of its messages (no start, no tail), the
 * gaps between commits, the last one, the milliseconds from the first
 * commit to 10 % of the messages and from 90 % to the last commit, and
 * where the gaps over 25 ms fell (at what share of the messages). */
static void print_timeline(bench *b, const char *table, const char *pipeline,
                           size_t msgs)
{
    char n[32];
    PGresult *r;

    snprintf(n, sizeof(n), "%zu", msgs);
    r = PQexecParams(
        b->db,
        "WITH c AS (SELECT at, next_offset - lag(next_offset, 1, 0::bigint) "
        "OVER (PARTITION BY partition ORDER BY at) AS m FROM bench_commits "
        "WHERE tbl = $1 AND pipeline = $2), k AS (SELECT at, sum(m) OVER "
        "(ORDER BY at) AS cum, extract(epoch FROM at - lag(at) OVER (ORDER "
        "BY at)) * 1000 AS gap FROM c) SELECT 0.8 * $3::float8 / extract("
        "epoch FROM (SELECT min(at) FROM k WHERE cum >= 0.9 * $3::float8) - "
        "(SELECT min(at) FROM k WHERE cum >= 0.1 * $3::float8)), "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY gap), "
        "percentile_cont(0.99) WITHIN GROUP (ORDER BY gap), max(gap), "
        "(SELECT gap FROM k ORDER BY at DESC LIMIT 1), count(*), "
        "extract(epoch FROM (SELECT min(at) FROM k WHERE cum >= 0.1 * "
        "$3::float8) - min(at)) * 1000, extract(epoch FROM max(at) - "
        "(SELECT min(at) FROM k WHERE cum >= 0.9 * $3::float8)) * 1000, "
        "(SELECT coalesce(string_agg(format('%s ms at %s%%', round(gap), "
        "round(100 * cum / $3::float8)), ', ' ORDER BY at), 'none') FROM k "
        "WHERE gap > 25) FROM k",
        3, NULL, (const char *[]){table, pipeline, n}, NULL, NULL, 0);
    TK_CHECK(PQresultStatus(r) == PGRES_TUPLES_OK, "timeline: %s",
             PQerrorMessage(b->db));
    printf("     timeline %s: middle 80%% %.0f msg/s; %s commits, gap p50 "
           "%.2f ms p99 %.2f ms max %.2f ms, last %.2f ms; first commit "
           "to 10%% %.0f ms, 90%% to last commit %.0f ms; gaps over 25 "
           "ms: %s\n", pipeline,
           atof(PQgetvalue(r, 0, 0)), PQgetvalue(r, 0, 5),
           atof(PQgetvalue(r, 0, 1)), atof(PQgetvalue(r, 0, 2)),
           atof(PQgetvalue(r, 0, 3)), atof(PQgetvalue(r, 0, 4)),
           atof(PQgetvalue(r, 0, 6)), atof(PQgetvalue(r, 0, 7)),
           PQgetvalue(r, 0, 8));
    PQclear(r);
}

/* Every consumer is timed the same way, by the database: a deferred
 * constraint trigger (set up in setup()) on each offsets table notes, at
 * commit, every offset row that moved, with clock_timestamp() and the
 * transaction. A consumer's time is first message to last commit; the
 * first message's time is not visible to the database, so it is taken as
 * the first commit less that transaction's messages at the run's own rate:
 * equivalently, the messages after the first commit over the time from
 * first to last commit. It needs nothing from the consumer (any build of
 * exactly, the peer and the ceiling alike) and leaves out what comes
 * before the first fetch (group join, claim, fetch start), which issue 9's
 * "steady state" excludes. Returns that time in seconds for msgs messages;
 * *gap (if not NULL) receives the seconds from the earliest claim
 * (claimed_at of table) to the estimated first message, *busy (if not
 * NULL) the machine's busy cores from first to last commit (-1: not
 * known). */
static double commit_seconds(bench *b, const char *table, const char *pipeline,
                             size_t msgs, double *gap, double *busy)
{
    PGresult *r;
    double span, first_n, secs;

    r = PQexecParams(
        b->db,
        "WITH c AS (SELECT * FROM bench_commits WHERE tbl = $1 AND "
        "pipeline = $2), f AS (SELECT xid FROM c ORDER BY at LIMIT 1) "
        "SELECT extract(epoch FROM max(at) - min(at))::float8, "
        "(SELECT coalesce(sum(m), 0) FROM (SELECT max(next_offset) m FROM c "
        "WHERE xid = (SELECT xid FROM f) GROUP BY partition) s)::float8, "
        "extract(epoch FROM min(at))::float8, count(*) FROM c",
        2, NULL, (const char *[]){table, pipeline}, NULL, NULL, 0);
    TK_CHECK(PQresultStatus(r) == PGRES_TUPLES_OK, "commit log: %s",
             PQerrorMessage(b->db));
    TK_CHECK(atoll(PQgetvalue(r, 0, 3)) > 1,
             "commit log: fewer than two commits for %s %s", table, pipeline);
    span = atof(PQgetvalue(r, 0, 0));
    first_n = atof(PQgetvalue(r, 0, 1));
    TK_CHECK(span > 0 && first_n < (double)msgs,
             "commit log: %s %s: no time between first and last commit",
             table, pipeline);
    secs = span * (double)msgs / ((double)msgs - first_n);
    if (getenv("EXACTLY_BENCH_TIMELINE"))
        print_timeline(b, table, pipeline, msgs);
    if (busy)
        *busy = load_between(atof(PQgetvalue(r, 0, 2)),
                             atof(PQgetvalue(r, 0, 2)) + span);
    if (gap) {
        double first_msg = atof(PQgetvalue(r, 0, 2)) - (secs - span);
        char q[300];
        snprintf(q, sizeof(q), "SELECT (extract(epoch FROM min(claimed_at)) * "
                 "1000000)::bigint FROM %s WHERE pipeline = '%s'", table,
                 pipeline);
        *gap = first_msg - (double)tk_sql_int64(b->db, "%s", q) / 1e6;
    }
    PQclear(r);
    return secs;
}

/* The commit log on or off: on for the runs commit_seconds times, off for
 * the latency and scale runs, whose PostgreSQL CPU per message and
 * commits per second it would add to (more for more commits). */
static void commit_log(bench *b, int on)
{
    const char *what = on ? "ENABLE" : "DISABLE";

    tk_sql(b->db, "ALTER TABLE exactly.offsets %s TRIGGER bench_note", what);
    tk_sql(b->db, "ALTER TABLE public.peer_offsets %s TRIGGER bench_note", what);
    if (b->baseline_bin)
        tk_sql(b->db, "ALTER TABLE exactly_base.offsets %s TRIGGER bench_note",
               what);
}

/* The commit log's trigger on table (key: its pipeline or group column). */
static void note_commits(bench *b, const char *table, const char *key)
{
    tk_sql(b->db, "CREATE CONSTRAINT TRIGGER bench_note AFTER INSERT OR "
                  "UPDATE ON %s DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                  "EXECUTE FUNCTION public.bench_note('%s')", table, key);
}

/* ---- (c) the ceiling consumer: the same design as exactly, by hand ------ */

/* One partition's batch being gathered: the IDs as int8[] elements
 * (binary array body), the offsets it spans. */
typedef struct cpart {
    int64_t start, end; /* [start, end): offsets in the batch */
    int64_t next;       /* where the database says the next batch starts */
    size_t n;
    unsigned char *arr; /* 20-byte array header + n * 12 */
} cpart;

typedef struct ceiling_state {
    PGconn *db;         /* the batches, in pipeline mode */
    PGconn *ctl;        /* reads the start offsets on assignment */
    rd_kafka_t *rk;
    const char *topic;
    const char *group;
    cpart part[MAX_PARTS];
    int n_parts;
    int in_flight;           /* partition of the batch in flight, or -1 */
    int64_t in_flight_end;
} ceiling_state;

/* On assignment every partition starts at the offset the database holds
 * (the fence's row, made by the parent with next_offset 0, epoch 1). */
static void ceiling_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                              rd_kafka_topic_partition_list_t *parts,
                              void *opaque)
{
    ceiling_state *cs = opaque;
    int i;

    /* The batch in flight is answered first: the offsets read below must
     * include it, or its messages would be taken again and fenced. */
    if (cs->in_flight >= 0) {
        drain(cs->db, 4);
        cs->in_flight = -1;
    }
    fprintf(stderr, "ceiling consumer: %s %d partition(s)\n",
            err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS ? "assigned" : "revoked",
            parts->cnt);
    if (err != RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        rd_kafka_assign(rk, NULL);
        return;
    }
    for (i = 0; i < parts->cnt; i++) {
        int32_t p = parts->elems[i].partition;
        int64_t next = tk_sql_int64(cs->ctl,
                                    "SELECT next_offset FROM exactly.offsets "
                                    "WHERE pipeline = '%s' AND topic = '%s' AND "
                                    "partition = %d",
                                    cs->group, cs->topic, (int)p);
        TK_CHECK(p >= 0 && p < MAX_PARTS, "partition %d", (int)p);
        parts->elems[i].offset = next;
        cs->part[p].next = next;
        /* A batch gathered but not sent stays when it starts where the
         * database says: the messages after it may already sit in the
         * array this very consume call returns (the callback runs inside
         * it), and dropping the batch would leave them to start the next
         * one past the stored offset, which the fence refuses. */
        if (cs->part[p].start != next)
            cs->part[p].n = 0;
        if (p + 1 > cs->n_parts)
            cs->n_parts = p + 1;
    }
    rd_kafka_assign(rk, parts);
}

/* The key's decimal digits as an int64 (the bench's keys are canonical). */
static int64_t key_int64(const void *key, size_t len)
{
    const unsigned char *k = key;
    int64_t v = 0;
    size_t i;

    TK_CHECK(k != NULL && len > 0 && len < 20, "ceiling consumer: bad key");
    for (i = 0; i < len; i++) {
        TK_CHECK(k[i] >= '0' && k[i] <= '9', "ceiling consumer: bad key");
        v = v * 10 + (k[i] - '0');
    }
    return v;
}

/* Sends partition p's batch as one pipelined transaction (BEGIN, fence,
 * fused upsert, COMMIT) without waiting for its answers: 1. With
 * EXACTLY_BENCH_CEILING_SERIAL (a comparison, not the ceiling), its
 * answers are read and its Kafka commit made at once: 0. */
static int ceiling_send(ceiling_state *cs, int p)
{
    cpart *cp = &cs->part[p];
    char ps[16], start[32], end[32];
    const char *fence[6] = {cs->group, cs->topic, ps, "1", start, end};
    const char *ip[1] = {(const char *)cp->arr};
    int len[1], fmt[1] = {1};

    put32(cp->arr, 1);
    put32(cp->arr + 4, 0);
    put32(cp->arr + 8, 20); /* int8 */
    put32(cp->arr + 12, (uint32_t)cp->n);
    put32(cp->arr + 16, 1);
    len[0] = (int)(20 + cp->n * 12);
    snprintf(ps, sizeof(ps), "%d", p);
    snprintf(start, sizeof(start), "%" PRId64, cp->start);
    snprintf(end, sizeof(end), "%" PRId64, cp->end);
    TK_CHECK(PQsendQueryParams(cs->db, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) &&
                 PQsendQueryPrepared(cs->db, "fence", 6, fence, NULL, NULL, 0) &&
                 PQsendQueryPrepared(cs->db, "upsert", 1, ip, len, fmt, 0) &&
                 PQsendQueryParams(cs->db, "COMMIT", 0, NULL, NULL, NULL, NULL,
                                   0) &&
                 PQpipelineSync(cs->db),
             "ceiling consumer: send: %s", PQerrorMessage(cs->db));
    TK_CHECK(PQflush(cs->db) == 0, "ceiling consumer: flush");
    cp->next = cp->end;
    cp->n = 0;
    if (getenv("EXACTLY_BENCH_CEILING_SERIAL")) {
        /* Not pipelined, for comparison: answered and committed here. */
        rd_kafka_topic_partition_list_t *l;
        drain(cs->db, 4);
        l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, cs->topic, p)->offset = cp->end;
        (void)rd_kafka_commit(cs->rk, l, 1);
        rd_kafka_topic_partition_list_destroy(l);
        return 0;
    }
    return 1;
}

/* The kafka lines the run gives the workers (b->kafka_extra, "  name:
 * value" lines, passed by run_ceiling_consumer), set on conf too, so that
 * a setting is compared with the same setting on both sides. */
static void ceiling_extra_kafka(rd_kafka_conf_t *conf)
{
    const char *extra = getenv("EXACTLY_BENCH_CEILING_KAFKA");
    char line[512], err[512], *colon, *name, *value, *end;
    const char *nl;

    while (extra && *extra) {
        nl = strchr(extra, '\n');
        snprintf(line, sizeof(line), "%.*s",
                 (int)(nl ? (size_t)(nl - extra) : strlen(extra)), extra);
        extra = nl ? nl + 1 : NULL;
        colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = '\0';
        for (name = line; *name == ' '; name++)
            ;
        for (value = colon + 1; *value == ' '; value++)
            ;
        for (end = value + strlen(value); end > value && end[-1] == ' '; end--)
            *(end - 1) = '\0';
        TK_CHECK(rd_kafka_conf_set(conf, name, value, err, sizeof(err)) ==
                     RD_KAFKA_CONF_OK,
                 "EXACTLY_BENCH_KAFKA: %s: %s", name, err);
    }
}


/* Whether the hand-written loop's run logged at logp stopped at a fenced
 * batch (it does not recover from one as exactly does); says so. Such a
 * run is not measured: it is run once more. */
static int ceiling_fenced(const char *group, const char *logp)
{
    char *log = tk_read_file(logp);
    int fenced = log && strstr(log, "is fenced");

    if (fenced) {
        const char *el = strstr(log, "DETAIL:");
        printf("     (c) %s stopped at a fenced batch (%.*s); run again\n",
               group, el ? (int)strcspn(el, "\n") : 0, el ? el : "");
    }
    free(log);
    return fenced;
}
/* exactly-bench --ceiling-consumer BOOTSTRAPS TOPIC GROUP CONNINFO BATCH
 * EXIT_IDLE_MS: (c), a tight hand-written consumer of exactly's design.
 * librdkafka (read_committed, the fetch settings exactly uses by default),
 * messages taken up to a batch at a time with rd_kafka_consume_batch_queue,
 * batches of up to BATCH per partition, each one transaction with the
 * fence and the fused upsert as prepared statements and a binary int8[],
 * pipelined (the next batch is sent before the previous one's answers are
 * read), the Kafka commit after the database's. Prints 'elapsed S' (first
 * message to last commit). */
static int ceiling_consumer(char **argv)
{
    ceiling_state cs;
    const char *bootstraps = argv[0];
    int batch = atoi(argv[4]);
    long long exit_idle = atoll(argv[5]);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *sub;
    rd_kafka_queue_t *q;
    rd_kafka_message_t **msgs;
    char err[512], *insert;
    double first = -1, last_commit = -1, last_msg = 0;
    size_t redelivered = 0;
    PGresult *res;
    int p;

    memset(&cs, 0, sizeof(cs));
    cs.in_flight = -1;
    cs.topic = argv[1];
    cs.group = argv[2];
    TK_CHECK(batch > 0, "ceiling consumer: batch");
    cs.db = tk_pg_connect(argv[3]);
    cs.ctl = tk_pg_connect(argv[3]);
    insert = fused_insert();
    res = PQprepare(cs.db, "fence",
                    "SELECT exactly.advance($1, $2, $3, $4, $5, $6)", 0, NULL);
    TK_CHECK(PQresultStatus(res) == PGRES_COMMAND_OK, "prepare: %s",
             PQerrorMessage(cs.db));
    PQclear(res);
    res = PQprepare(cs.db, "upsert", insert, 0, NULL);
    TK_CHECK(PQresultStatus(res) == PGRES_COMMAND_OK, "prepare: %s",
             PQerrorMessage(cs.db));
    PQclear(res);
    free(insert);
    for (p = 0; p < MAX_PARTS; p++) {
        cs.part[p].arr = malloc(20 + (size_t)batch * 12);
        TK_CHECK(cs.part[p].arr != NULL, "out of memory");
    }
    msgs = malloc((size_t)batch * sizeof(*msgs));
    TK_CHECK(msgs != NULL, "out of memory");

#define CSET(k, v)                                                             \
    TK_CHECK(rd_kafka_conf_set(conf, k, v, err, sizeof(err)) == RD_KAFKA_CONF_OK, \
             "%s: %s", k, err)
    CSET("bootstrap.servers", bootstraps);
    CSET("group.id", cs.group);
    CSET("client.id", "ceiling");
    CSET("isolation.level", "read_committed");
    CSET("enable.auto.commit", "false");
    CSET("enable.auto.offset.store", "false");
    CSET("auto.offset.reset", "earliest");
    CSET("enable.partition.eof", "false");
    /* As exactly sets them by default (lib/kafka/source.c). */
    CSET("queued.min.messages", "100000");
    CSET("queued.max.messages.kbytes", "32768");
#undef CSET
    ceiling_extra_kafka(conf);
    rd_kafka_conf_set_rebalance_cb(conf, ceiling_rebalance);
    rd_kafka_conf_set_opaque(conf, &cs);
    cs.rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    TK_CHECK(cs.rk != NULL, "ceiling consumer: %s", err);
    rd_kafka_poll_set_consumer(cs.rk);
    sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, cs.topic, RD_KAFKA_PARTITION_UA);
    TK_CHECK(rd_kafka_subscribe(cs.rk, sub) == 0, "subscribe");
    rd_kafka_topic_partition_list_destroy(sub);
    q = rd_kafka_queue_get_consumer(cs.rk);
    TK_CHECK(PQenterPipelineMode(cs.db) == 1, "pipeline mode");

    for (;;) {
        ssize_t got = rd_kafka_consume_batch_queue(
            q, cs.in_flight >= 0 ? 0 : 100, msgs, (size_t)batch);
        double now = now_s();
        ssize_t i;
        int any = 0;

        for (i = 0; i < got; i++) {
            rd_kafka_message_t *m = msgs[i];
            cpart *cp;
            if (m->err || m->partition < 0 || m->partition >= cs.n_parts) {
                rd_kafka_message_destroy(m);
                continue;
            }
            cp = &cs.part[m->partition];
            /* What the database has, or this batch already holds, again:
             * librdkafka can deliver a message twice (as exactly's own
             * buffer also allows for). */
            if (m->offset < cp->next || (cp->n > 0 && m->offset < cp->end)) {
                redelivered++;
                rd_kafka_message_destroy(m);
                continue;
            }
            if (cp->n == 0)
                cp->start = m->offset;
            put32(cp->arr + 20 + cp->n * 12, 8);
            put64(cp->arr + 24 + cp->n * 12,
                  (uint64_t)key_int64(m->key, m->key_len));
            cp->n++;
            cp->end = m->offset + 1;
            rd_kafka_message_destroy(m);
            any = 1;
            if (first < 0)
                first = now;
            last_msg = now;
            if (cp->n == (size_t)batch) {
                /* Full: sent at once; the previous batch's answers are
                 * read once this one is on the wire. */
                int prev = cs.in_flight;
                int64_t prev_end = cs.in_flight_end;
                if (!ceiling_send(&cs, m->partition)) {
                    last_commit = now_s();
                    continue;
                }
                cs.in_flight = m->partition;
                cs.in_flight_end = cp->end;
                if (prev >= 0) {
                    rd_kafka_topic_partition_list_t *l;
                    drain(cs.db, 4);
                    l = rd_kafka_topic_partition_list_new(1);
                    rd_kafka_topic_partition_list_add(l, cs.topic, prev)
                        ->offset = prev_end;
                    (void)rd_kafka_commit(cs.rk, l, 1);
                    rd_kafka_topic_partition_list_destroy(l);
                    last_commit = now_s();
                }
            }
        }
        /* Nothing more waiting: what is gathered goes as it is. */
        if (got < batch) {
            for (p = 0; p < cs.n_parts; p++) {
                if (cs.part[p].n == 0)
                    continue;
                int prev = cs.in_flight;
                int64_t prev_end = cs.in_flight_end;
                if (!ceiling_send(&cs, p)) {
                    last_commit = now_s();
                    continue;
                }
                cs.in_flight = p;
                cs.in_flight_end = cs.part[p].end;
                if (prev >= 0) {
                    rd_kafka_topic_partition_list_t *l;
                    drain(cs.db, 4);
                    l = rd_kafka_topic_partition_list_new(1);
                    rd_kafka_topic_partition_list_add(l, cs.topic, prev)
                        ->offset = prev_end;
                    (void)rd_kafka_commit(cs.rk, l, 1);
                    rd_kafka_topic_partition_list_destroy(l);
                    last_commit = now_s();
                }
            }
        }
        if (!any && got < batch && cs.in_flight >= 0) {
            /* Idle: the last batch's answers, then its Kafka commit. */
            rd_kafka_topic_partition_list_t *l;
            drain(cs.db, 4);
            l = rd_kafka_topic_partition_list_new(1);
            rd_kafka_topic_partition_list_add(l, cs.topic, cs.in_flight)
                ->offset = cs.in_flight_end;
            (void)rd_kafka_commit(cs.rk, l, 1);
            rd_kafka_topic_partition_list_destroy(l);
            last_commit = now_s();
            cs.in_flight = -1;
        }
        if (cs.in_flight < 0 && first >= 0 && exit_idle > 0 &&
            (now_s() - last_msg) * 1000 >= (double)exit_idle)
            break;
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_consumer_close(cs.rk);
    rd_kafka_destroy(cs.rk);
    PQfinish(cs.db);
    PQfinish(cs.ctl);
    for (p = 0; p < MAX_PARTS; p++)
        free(cs.part[p].arr);
    free(msgs);
    if (redelivered > 0)
        fprintf(stderr, "ceiling consumer: %zu message(s) delivered again, "
                        "skipped\n", redelivered);
    if (first >= 0)
        printf("elapsed %.6f\n", last_commit - first);
    fflush(stdout);
    return 0;
}

static void run_ceiling_consumer(bench *b, const char *group, figures *f)
{
    char logp[700], self[600], batch[16];
    char *argv[] = {self, "--ceiling-consumer", (char *)tk_mock_bootstraps(b->mock),
                    TOPIC, (char *)group, b->conninfo, batch, "1500", NULL};
    struct rusage ru;
    sampler smp;
    pid_t pid;
    int st, attempt;
    char *log, *el;

    memset(f, 0, sizeof(*f));
    self_exe(self, sizeof(self));
    snprintf(batch, sizeof(batch), "%d", b->batch);
    snprintf(logp, sizeof(logp), "%s/%s.log", b->dir, group);
    if (b->kafka_extra)
        setenv("EXACTLY_BENCH_CEILING_KAFKA", b->kafka_extra, 1);
    else
        unsetenv("EXACTLY_BENCH_CEILING_KAFKA");
    /* The hand-written loop stops at a fenced batch (it does not recover
     * as exactly does): such a run is reported and run once more. */
    for (attempt = 0;; attempt++) {
        /* A failed run's backend may still be committing what it had been
         * sent: it is gone before the offsets are reset. */
        end_backends(b);
        reset_view(b);
        tk_sql(b->db, "DELETE FROM bench_commits WHERE pipeline = '%s'", group);
        ceiling_offsets(b, group, TOPIC);
        memset(&smp, 0, sizeof(smp));
        pid = tk_spawn(argv, logp);
        st = watch(b, pid, &smp, NULL, NULL, &ru);
        if (st == 0 || attempt > 0 || !ceiling_fenced(group, logp))
            break;
    }
    TK_CHECK(st == 0, "ceiling consumer failed (status %d), see %s", st, logp);
    TK_CHECK_EQ_INT64(tk_sql_int64(b->db, "SELECT sum(next_offset) FROM "
                                          "exactly.offsets WHERE pipeline = '%s'",
                                   group),
                      (int64_t)b->messages, "messages consumed by (c)");
    log = tk_read_file(logp);
    el = log ? strstr(log, "elapsed ") : NULL;
    TK_CHECK(el != NULL, "ceiling consumer printed no elapsed time, see %s", logp);
    spawn_figures(b, f, commit_seconds(b, "exactly.offsets", group,
                                       b->messages, NULL, NULL),
                  b->messages, &smp, &ru);
    f->self_s = atof(el + 8);
    free(log);
    f->fairness = -1;
}

/* ---- (b) and (b') the worker --------------------------------------------- */

/* The framework schema of the worker run_worker starts: the baseline
 * build has one of its own, migrated by itself (its schema version may
 * differ from ours). */
static const char *wschema(const bench *b)
{
    return b->cur_bin ? "exactly_base" : "exactly";
}

static void write_config(bench *b, const char *path, const char *pipeline,
                         const char *topic, const char *extra,
                         const char *handler)
{
    tk_write_file(path,
                  "kafka:\n"
                  "  bootstrap.servers: \"%s\"\n"
                  "  auto.offset.reset: earliest\n"
                  "%s"
                  "postgres:\n"
                  "  conninfo: \"%s\"\n"
                  "  schema: %s\n"
                  "pipelines:\n"
                  "  %s:\n"
                  "    topics: [%s]\n"
                  "    group: %s\n"
                  "    id: {from: key, type: bigint}\n"
                  "    lookup: {table: accounts, id_column: id}\n"
                  "%s"
                  "    handler:\n%s",
                  tk_mock_bootstraps(b->mock),
                  b->kafka_extra ? b->kafka_extra : "", b->conninfo,
                  wschema(b), pipeline, topic, pipeline, extra, handler);
}

static const char handler_builtin[] =
    "      builtin: upsert\n"
    "      options:\n"
    "        table: account_view\n"
    "        key: [id]\n"
    "        columns: {id: id, name: name, balance: balance}\n";

static char handler_plugin[1024];

static void spawn_figures(bench *b, figures *f, double secs, size_t msgs,
                          const sampler *smp, const struct rusage *ru)
{
    f->msgs_s = (double)msgs / secs;
    f->client_us = (tv_s(ru->ru_utime) + tv_s(ru->ru_stime)) * 1e6 / (double)msgs;
    f->pg_us = sampler_seconds(b, smp) * 1e6 / (double)msgs;
    f->rss_kib = ru->ru_maxrss;
}

/* Runs a worker (or `workers` of them in one group, under `exactly run`)
 * to the end of the topic; messages per second from the commit log
 * (commit_seconds), with the longest pause between commits and how many
 * workers committed; with ser, also the offsets polled every 100 ms. */
static void run_worker(bench *b, const char *pipeline, const char *handler,
                       int workers, series *ser, figures *f)
{
    char cfg[700], logp[700], psql[300];
    char *argv[] = {(char *)(b->cur_bin ? b->cur_bin : b->exactly_bin),
                    "worker", "-c", cfg, "--exit-idle", "1500",
                    getenv("EXACTLY_BENCH_VERBOSE") ? "-v" : "-q", NULL, NULL,
                    NULL};
    struct rusage ru;
    sampler smp;
    pid_t pid;
    int st;
    int64_t consumed;
    double secs;
    size_t msgs = b->wmessages ? b->wmessages : b->messages;
    char table[64], extra[256];

    memset(&smp, 0, sizeof(smp));
    memset(f, 0, sizeof(*f));
    snprintf(cfg, sizeof(cfg), "%s/%s.yaml", b->dir, pipeline);
    snprintf(logp, sizeof(logp), "%s/%s.log", b->dir, pipeline);
    snprintf(psql, sizeof(psql),
             "SELECT partition, next_offset FROM %s.offsets WHERE "
             "pipeline = '%s'", wschema(b), pipeline);
    snprintf(extra, sizeof(extra), "%s", b->wextra ? b->wextra : "");
    if (workers > 1) {
        /* As a user runs several: `exactly run` with `workers: N` forks
         * them at once, each a member of the pipeline's group (its own
         * slot, group.instance.id PIPELINE-HOST-INDEX). Its rusage, taken
         * when it exits, includes the workers it waited for. */
        snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra),
                 "    workers: %d\n", workers);
        argv[1] = "run";
        argv[6] = "--lock-dir";
        argv[7] = b->dir;
        argv[8] = getenv("EXACTLY_BENCH_VERBOSE") ? "-v" : "-q";
    }
    write_config(b, cfg, pipeline, b->wtopic ? b->wtopic : TOPIC, extra,
                 handler);
    reset_view(b);
    tk_sql(b->db, "DELETE FROM %s.offsets WHERE pipeline = '%s'", wschema(b),
           pipeline);
    if (ser)
        ser->n = 0;
    pid = tk_spawn(argv, logp);
    st = watch(b, pid, &smp, ser ? psql : NULL, ser, &ru);
    TK_CHECK(st == 0, "worker %s failed (status %d), see %s", pipeline, st, logp);
    consumed = tk_sql_int64(b->db,
                            "SELECT sum(next_offset) FROM %s.offsets "
                            "WHERE pipeline = '%s'", wschema(b), pipeline);
    TK_CHECK_EQ_INT64(consumed, (int64_t)msgs, "messages consumed");
    snprintf(table, sizeof(table), "%s.offsets", wschema(b));
    secs = commit_seconds(b, table, pipeline, msgs, &f->claim_gap_s,
                          &f->cores_busy);
    spawn_figures(b, f, secs, msgs, &smp, &ru);
    {
        char q[400];
        snprintf(q, sizeof(q),
                 "SELECT (coalesce(max(d), 0) * 1000000)::bigint FROM (SELECT "
                 "extract(epoch FROM at - lag(at) OVER (ORDER BY at)) d FROM "
                 "bench_commits WHERE tbl = '%s' AND pipeline = '%s') s",
                 table, pipeline);
        f->pause_s = (double)tk_sql_int64(b->db, "%s", q) / 1e6;
        f->owners = (int)tk_sql_int64(b->db, "SELECT count(DISTINCT owner) "
                                             "FROM bench_commits WHERE tbl = "
                                             "'%s' AND pipeline = '%s'",
                                      table, pipeline);
    }
    f->fairness = -1;
    if (ser && ser->n > 1) {
        /* The fairness runs' rate, from the offsets seen moving: first
         * progress to all committed. */
        double first = -1, last = -1;
        for (int k = 0; k < ser->n; k++) {
            int64_t sum = 0;
            for (int q = 0; q < PARTITIONS; q++)
                sum += ser->off[k][q];
            if (sum > 0 && first < 0)
                first = k > 0 ? ser->t[k - 1] : ser->t[k];
            if (sum >= (int64_t)msgs && last < 0)
                last = ser->t[k];
        }
        if (first >= 0 && last > first)
            f->prog_msgs_s = (double)msgs / (last - first);
    }
}

/* Prints, for a run of several workers, each one's first and last commit
 * (seconds from the run's first commit) and the partitions it committed,
 * and returns the rate over the window where all of them were committing:
 * from the last one's first commit to the first one's last commit, the
 * offsets the commit log shows moving in it over its length (0: no such
 * window). */
static double owners_window(bench *b, const char *table, const char *pipeline)
{
    const char *params[2] = {table, pipeline};
    PGresult *r;
    double rate = 0;
    int i;

    r = PQexecParams(
        b->db,
        "WITH c AS (SELECT * FROM bench_commits WHERE tbl = $1 AND "
        "pipeline = $2), t0 AS (SELECT min(at) t FROM c) "
        "SELECT owner, extract(epoch FROM min(at) - (SELECT t FROM t0)), "
        "extract(epoch FROM max(at) - (SELECT t FROM t0)), count(*), "
        "string_agg(DISTINCT partition::text, ',') FROM c GROUP BY owner "
        "ORDER BY 2",
        2, NULL, params, NULL, NULL, 0);
    TK_CHECK(PQresultStatus(r) == PGRES_TUPLES_OK, "commit log: %s",
             PQerrorMessage(b->db));
    for (i = 0; i < PQntuples(r); i++)
        printf("     owner %s: commits from %.3f s to %.3f s, %s commits, "
               "partitions %s\n", PQgetvalue(r, i, 0), atof(PQgetvalue(r, i, 1)),
               atof(PQgetvalue(r, i, 2)), PQgetvalue(r, i, 3),
               PQgetvalue(r, i, 4));
    PQclear(r);
    r = PQexecParams(
        b->db,
        "WITH c AS (SELECT * FROM bench_commits WHERE tbl = $1 AND "
        "pipeline = $2), o AS (SELECT min(at) f, max(at) l FROM c GROUP BY "
        "owner), w AS (SELECT max(f) s, min(l) e FROM o), "
        "p AS (SELECT partition, coalesce(max(next_offset) FILTER (WHERE at "
        "<= (SELECT e FROM w)), 0) - coalesce(max(next_offset) FILTER "
        "(WHERE at <= (SELECT s FROM w)), 0) d FROM c GROUP BY partition) "
        "SELECT extract(epoch FROM (SELECT e - s FROM w)), "
        "(SELECT sum(d) FROM p)::float8",
        2, NULL, params, NULL, NULL, 0);
    TK_CHECK(PQresultStatus(r) == PGRES_TUPLES_OK, "commit log: %s",
             PQerrorMessage(b->db));
    if (!PQgetisnull(r, 0, 0) && atof(PQgetvalue(r, 0, 0)) > 0) {
        rate = atof(PQgetvalue(r, 0, 1)) / atof(PQgetvalue(r, 0, 0));
        printf("     all committing: %.3f s, %.0f messages, %.0f msg/s\n",
               atof(PQgetvalue(r, 0, 0)), atof(PQgetvalue(r, 0, 1)), rate);
    }
    PQclear(r);
    return rate;
}

/* ---- fairness: a backlog on every partition, drained ---------------- */

/* Produces n messages over the partitions of a new topic, drains them with
 * one worker (pipeline settings extra) and returns the least, over windows
 * of w seconds, of the slowest partition's progress over the fastest's
 * (<0: no window before a partition drained); *rate is the drain's
 * msg/s. Prints the run's line. */
static double run_fairness(bench *b, const char *name, const char *extra,
                           size_t n, double w, series *ser, int *windows,
                           double *rate)
{
    figures ff;
    double f;
    int k;

    n -= n % PARTITIONS;
    tk_mock_create_topic(b->mock, name, PARTITIONS);
    tk_produce_ids(tk_mock_bootstraps(b->mock), name, n, b->entities,
                   PARTITIONS, SEED, NULL);
    b->wtopic = name;
    b->wmessages = n;
    b->wextra = extra;
    b->kafka_extra = getenv("EXACTLY_BENCH_FAIR_KAFKA");
    run_worker(b, name, handler_builtin, 1, ser, &ff);
    b->wtopic = NULL;
    b->wmessages = 0;
    b->wextra = NULL;
    b->kafka_extra = NULL;
    f = fairness(ser, (int64_t)(n / PARTITIONS), w, windows);
    *rate = ff.prog_msgs_s;
    printf("fairness backlog %-8s %7zu messages, %d partitions, %s: "
           "%.0f msg/s; ", name, n, PARTITIONS,
           *extra ? "batches of 10" : "default settings", ff.prog_msgs_s);
    if (f < 0)
        printf("slowest/fastest n/a (no %.0f s window before a partition "
               "drained)%s\n", w,
               b->quick ? " (--quick: shorter than the target's 10 s)" : "");
    else
        printf("slowest/fastest %.2f over %d windows of %.0f s%s\n", f,
               *windows, w,
               b->quick ? " (--quick: shorter than the target's 10 s)" : "");
    if (getenv("EXACTLY_BENCH_VERBOSE"))
        for (k = 0; k < ser->n; k++)
            printf("  t %6.1f  %8" PRId64 " %8" PRId64 " %8" PRId64
                   " %8" PRId64 "\n", ser->t[k] - ser->t[0], ser->off[k][0],
                   ser->off[k][1], ser->off[k][2], ser->off[k][3]);
    fflush(stdout);
    return f;
}

/* ---- (p) the Python peer -------------------------------------------------- */

static void run_peer(bench *b, const char *group, figures *f)
{
    char logp[700];
    char *argv[] = {"/usr/bin/python3", (char *)b->peer,
                    (char *)tk_mock_bootstraps(b->mock), TOPIC, (char *)group,
                    b->conninfo, "--exit-idle-ms", "1500", NULL};
    struct rusage ru;
    sampler smp;
    pid_t pid;
    int st;
    char *log, *el;
    double secs;

    memset(&smp, 0, sizeof(smp));
    memset(f, 0, sizeof(*f));
    snprintf(logp, sizeof(logp), "%s/%s.log", b->dir, group);
    reset_view(b);
    tk_sql(b->db, "DELETE FROM peer_offsets WHERE grp = '%s'", group);
    pid = tk_spawn(argv, logp);
    st = watch(b, pid, &smp, NULL, NULL, &ru);
    TK_CHECK(st == 0, "python peer failed (status %d), see %s", st, logp);
    TK_CHECK_EQ_INT64(tk_sql_int64(b->db, "SELECT sum(next_offset) FROM "
                                          "peer_offsets WHERE grp = '%s'", group),
                      (int64_t)b->messages, "messages consumed by the peer");
    log = tk_read_file(logp);
    el = log ? strstr(log, "elapsed ") : NULL;
    TK_CHECK(el != NULL, "python peer printed no elapsed time, see %s", logp);
    secs = commit_seconds(b, "public.peer_offsets", group, b->messages, NULL,
                          NULL);
    spawn_figures(b, f, secs, b->messages, &smp, &ru);
    f->self_s = atof(el + 8);
    free(log);
    f->fairness = -1;
}

/* ---- latency: produce at a steady rate, see each offset committed ------- */

typedef struct lat_state {
    int64_t n_per;               /* slots per partition */
    double *produced;            /* [partition * n_per + offset] */
} lat_state;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    lat_state *ls = opaque;
    (void)rk;
    if (m->err || m->partition < 0 || m->partition >= PARTITIONS ||
        m->offset < 0 || m->offset >= ls->n_per)
        return;
    ls->produced[m->partition * ls->n_per + m->offset] =
        *(const double *)m->_private;
}

/* kind 0: exactly (pipeline; b->cur_bin when set: the baseline build), 1:
 * the peer (group), 2: exactly at its default batch settings (max_wait_ms
 * 100). Returns p50 and p99 in ms and PostgreSQL CPU per
 * message. */
static void run_latency(bench *b, int kind, const char *name, int rate,
                        double duration, double *p50, double *p99,
                        double *pg_us, double *client_us, double *xacts,
                        double *batches)
{
    char topic[64], cfg[700], logp[700], psql[300], err[512];
    char *wargv[] = {(char *)(b->cur_bin ? b->cur_bin : b->exactly_bin),
                     "worker", "-c", cfg, "-q", NULL};
    char *pargv[] = {"/usr/bin/python3", (char *)b->peer,
                     (char *)tk_mock_bootstraps(b->mock), topic, (char *)name,
                     b->conninfo, "--max-wait-ms", "10", "--fetch-wait-ms",
                     "10", NULL};
    /* The first seconds are not steady state: both consumers' librdkafka
     * (the peer's too) can take about a second to deliver the first
     * messages of a topic that was empty when it was assigned. Messages
     * produced then are committed and cost CPU like the rest, but their
     * latency is not counted (its worst is printed). */
    double warmup = b->quick ? 1 : 2;
    int64_t total = (int64_t)(rate * (duration + warmup));
    int64_t n_all = 0;
    double warm_worst = 0;
    lat_state ls;
    double *committed, *sent_at, *lat;
    int64_t seen[PARTITIONS] = {0};
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    sampler smp;
    struct rusage ru;
    pid_t pid;
    double t0;
    int64_t i, n_lat = 0, x0;
    int st;
    char *text, *bc;

    memset(&smp, 0, sizeof(smp));
    snprintf(topic, sizeof(topic), "lat_%s", name);
    tk_mock_create_topic(b->mock, topic, PARTITIONS);
    ls.n_per = total / PARTITIONS + 16;
    ls.produced = calloc((size_t)(ls.n_per * PARTITIONS), sizeof(double));
    committed = calloc((size_t)(ls.n_per * PARTITIONS), sizeof(double));
    sent_at = calloc((size_t)total + 1, sizeof(double));
    lat = calloc((size_t)total + 1, sizeof(double));
    TK_CHECK(ls.produced && committed && sent_at && lat, "out of memory");
    snprintf(logp, sizeof(logp), "%s/%s.log", b->dir, name);
    if (kind != 1) {
        snprintf(cfg, sizeof(cfg), "%s/%s.yaml", b->dir, name);
        /* The mock broker holds a fetch for fetch.wait.max.ms (500) when
         * little data is there, where a real broker answers as soon as
         * any arrives: both consumers are told 10 ms, so that the figure
         * is theirs and not the mock's. */
        b->kafka_extra = "  fetch.wait.max.ms: 10\n";
        write_config(b, cfg, name, topic,
                     kind == 0 ? "    batch: {max_wait_ms: 10}\n" : "",
                     handler_builtin);
        b->kafka_extra = NULL;
        snprintf(psql, sizeof(psql),
                 "SELECT partition, next_offset FROM %s.offsets WHERE "
                 "pipeline = '%s'", wschema(b), name);
        pid = tk_spawn(wargv, logp);
    } else {
        snprintf(psql, sizeof(psql),
                 "SELECT partition, next_offset FROM peer_offsets WHERE "
                 "grp = '%s'", name);
        pid = tk_spawn(pargv, logp);
    }
    /* Ready once every partition is claimed. */
    t0 = now_s();
    for (;;) {
        char q[400];
        snprintf(q, sizeof(q), "SELECT count(*) FROM (%s) s", psql);
        if (tk_sql_int64(b->db, "%s", q) == PARTITIONS)
            break;
        TK_CHECK(now_s() - t0 < 60, "%s: partitions not claimed in 60 s", name);
        TK_CHECK(waitpid(pid, &st, WNOHANG) == 0, "%s exited early, see %s",
                 name, logp);
        tk_sleep_ms(20);
    }

    conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", tk_mock_bootstraps(b->mock), err, sizeof(err));
    rd_kafka_conf_set(conf, "linger.ms", "1", err, sizeof(err));
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, &ls);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    TK_CHECK(rk != NULL, "producer: %s", err);

    sample(b, &smp);
    x0 = xids_assigned(b);
    t0 = now_s();
    i = 0;
    while (i < total || now_s() - t0 < duration + warmup + 5) {
        double now = now_s();
        PGresult *r;
        int k;
        /* Every message due by now. */
        while (i < total && (double)i / rate <= now - t0) {
            char key[24];
            int len = snprintf(key, sizeof(key), "%" PRId64,
                               tk_id_for(SEED, (size_t)i, b->entities));
            sent_at[i] = now_s();
            TK_CHECK(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                       RD_KAFKA_V_PARTITION((int32_t)(i % PARTITIONS)),
                                       RD_KAFKA_V_KEY(key, (size_t)len),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_OPAQUE(&sent_at[i]),
                                       RD_KAFKA_V_END) == 0,
                     "produce failed");
            i++;
        }
        rd_kafka_poll(rk, 0);
        r = PQexec(b->db, psql);
        TK_CHECK(PQresultStatus(r) == PGRES_TUPLES_OK, "poll: %s",
                 PQerrorMessage(b->db));
        now = now_s();
        for (k = 0; k < PQntuples(r); k++) {
            int p = atoi(PQgetvalue(r, k, 0));
            int64_t off = atoll(PQgetvalue(r, k, 1));
            if (p < 0 || p >= PARTITIONS)
                continue;
            for (; seen[p] < off && seen[p] < ls.n_per; seen[p]++)
                committed[p * ls.n_per + seen[p]] = now;
        }
        PQclear(r);
        if (seen[0] + seen[1] + seen[2] + seen[3] >= total)
            break;
        if (((int64_t)(now * 10)) % 2 == 0)
            sample(b, &smp);
        tk_sleep_ms(2);
    }
    sample(b, &smp);
    rd_kafka_flush(rk, 5000);
    rd_kafka_destroy(rk);
    kill(pid, SIGTERM);
    TK_CHECK(wait4(pid, &st, 0, &ru) == pid, "wait4");
    /* The consumer's transactions that wrote (every batch transaction
     * writes its offsets): the transaction IDs assigned meanwhile. The
     * bench's own queries read only and take none. (pg_stat_database's
     * commit count would hold the bench's own queries too, whose
     * statistics reach the view up to a second late.) */
    *xacts = (double)(xids_assigned(b) - x0);
    *batches = 0;
    text = kind != 1 ? tk_read_file(logp) : NULL;
    bc = text ? strstr(text, "batches committed ") : NULL;
    if (bc)
        *batches = atof(bc + strlen("batches committed "));
    free(text);
    for (int p = 0; p < PARTITIONS; p++)
        for (int64_t o = 0; o < seen[p]; o++) {
            double pr = ls.produced[p * ls.n_per + o];
            double cm = committed[p * ls.n_per + o];
            if (pr <= 0 || cm <= 0)
                continue;
            n_all++;
            if (pr < t0 + warmup) {
                if ((cm - pr) * 1000.0 > warm_worst)
                    warm_worst = (cm - pr) * 1000.0;
                continue;
            }
            lat[n_lat++] = (cm - pr) * 1000.0;
        }
    printf("  %-13s %.0f s warm-up not counted (its worst %.1f ms); %" PRId64
           " messages counted\n", name, warmup, warm_worst, n_lat);
    TK_CHECK(n_lat > total / 2, "%s: only %" PRId64 " of %" PRId64
             " messages committed", name, n_lat, total);
    qsort(lat, (size_t)n_lat, sizeof(double), cmp_double);
    *p50 = lat[n_lat / 2];
    *p99 = lat[(n_lat * 99) / 100];
    *pg_us = sampler_seconds(b, &smp) * 1e6 / (double)n_all;
    *client_us = (tv_s(ru.ru_utime) + tv_s(ru.ru_stime)) * 1e6 / (double)n_all;
    free(ls.produced);
    free(committed);
    free(sent_at);
    free(lat);
}

/* ---- scale: many partitions at a low rate -------------------------------- */

/* Produces message i onwards, round-robin over parts partitions, up to
 * (not including) limit and as many as are due by now at rate msg/s
 * counted from message `from` at time t0. Returns the next i. */
static int64_t produce_due(bench *b, rd_kafka_t *rk, const char *topic,
                           int parts, int rate, int64_t i, int64_t from,
                           int64_t limit, double t0)
{
    while (i < limit && (double)(i - from) / rate <= now_s() - t0) {
        char key[24];
        int len = snprintf(key, sizeof(key), "%" PRId64,
                           tk_id_for(SEED, (size_t)i, b->entities));
        TK_CHECK(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                   RD_KAFKA_V_PARTITION((int32_t)(i % parts)),
                                   RD_KAFKA_V_KEY(key, (size_t)len),
                                   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                   RD_KAFKA_V_END) == 0,
                 "produce failed");
        i++;
    }
    return i;
}

/* Produces `rate` msg/s in all over `parts` partitions for `duration` s to
 * a worker at default settings; commits per second and backend CPU per
 * message. */
static void run_scale(bench *b, int parts, int rate, double duration,
                      double *commits_s, double *pg_us, double *warm_pg_s,
                      int64_t *warm_msgs)
{
    char topic[64], name[64], cfg[700], logp[700], err[512];
    char *argv[] = {(char *)b->exactly_bin, "worker", "-c", cfg, "-q", NULL};
    int64_t total = (int64_t)(rate * duration), i = 0, i0, x0, x1, done;
    int64_t before;
    double warmup = b->quick ? 1 : 2;
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    sampler smp;
    struct rusage ru;
    pid_t pid;
    double t0, t1, cpu0;
    int st;

    memset(&smp, 0, sizeof(smp));
    snprintf(name, sizeof(name), "scale%d", parts);
    snprintf(topic, sizeof(topic), "scale_%d", parts);
    tk_mock_create_topic(b->mock, topic, parts);
    snprintf(cfg, sizeof(cfg), "%s/%s.yaml", b->dir, name);
    snprintf(logp, sizeof(logp), "%s/%s.log", b->dir, name);
    b->kafka_extra = "  fetch.wait.max.ms: 10\n"; /* as for latency */
    write_config(b, cfg, name, topic, "", handler_builtin);
    b->kafka_extra = NULL;
    pid = tk_spawn(argv, logp);
    t0 = now_s();
    while (tk_sql_int64(b->db, "SELECT count(*) FROM exactly.offsets WHERE "
                               "pipeline = '%s'", name) < parts) {
        TK_CHECK(now_s() - t0 < 60, "%s: partitions not claimed in 60 s", name);
        TK_CHECK(waitpid(pid, &st, WNOHANG) == 0, "%s exited early, see %s",
                 name, logp);
        tk_sleep_ms(50);
    }
    tk_sleep_ms(500);
    conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", tk_mock_bootstraps(b->mock), err, sizeof(err));
    rd_kafka_conf_set(conf, "linger.ms", "1", err, sizeof(err));
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    TK_CHECK(rk != NULL, "producer: %s", err);
    /* Steady state: the figures start once every partition committed a
     * batch at the rate (its first batch after the claim runs alone, the
     * crash guard's question), after at least `warmup` seconds, and then
     * 1.2 s more: statistics reach pg_stat_database once a backend reports
     * them (at most once a second while busy), and the warm-up's commits
     * (a claim and a batch alone per partition: hundreds at 256
     * partitions, where the window has about 70) must be in x0, not in
     * the window. The worker's are read at its exit, so the window's
     * figure may still include up to a second of steady-state commits,
     * alike at every partition count. */
    t0 = now_s();
    for (t1 = 0;;) {
        i = produce_due(b, rk, topic, parts, rate, i, 0, INT64_MAX, t0);
        rd_kafka_poll(rk, 0);
        if (t1 > 0 && now_s() - t1 >= 1.2)
            break;
        if (t1 == 0 && now_s() - t0 >= warmup &&
            tk_sql_int64(b->db, "SELECT count(*) FROM exactly.offsets WHERE "
                                "pipeline = '%s' AND next_offset > 0",
                         name) == parts)
            t1 = now_s();
        TK_CHECK(now_s() - t0 < 60, "%s: not every partition committed in "
                 "60 s", name);
        tk_sleep_ms(20);
    }
    before = tk_sql_int64(b->db, "SELECT sum(next_offset) FROM exactly.offsets "
                                 "WHERE pipeline = '%s'", name);
    /* The backends' CPU so far (the claims, each partition's first batch
     * alone, the warm-up's batches) is the warm-up's, not the window's. */
    sample(b, &smp);
    cpu0 = sampler_seconds(b, &smp);
    x0 = xids_assigned(b);
    total += i;
    t0 = now_s();
    i0 = i;
    while (i < total) {
        i = produce_due(b, rk, topic, parts, rate, i, i0, total, t0);
        rd_kafka_poll(rk, 0);
        sample(b, &smp);
        tk_sleep_ms(100);
    }
    rd_kafka_flush(rk, 5000);
    rd_kafka_destroy(rk);
    for (;;) {
        done = tk_sql_int64(b->db, "SELECT sum(next_offset) FROM exactly.offsets "
                                   "WHERE pipeline = '%s'", name);
        sample(b, &smp);
        if (done >= total || now_s() - t0 > duration + 30)
            break;
        tk_sleep_ms(50);
    }
    t1 = now_s();
    TK_CHECK_EQ_INT64(done, total, "scale: messages committed");
    kill(pid, SIGTERM);
    TK_CHECK(wait4(pid, &st, 0, &ru) == pid, "wait4");
    /* Commits of transactions that wrote, as in run_latency. */
    x1 = xids_assigned(b);
    *commits_s = (double)(x1 - x0) / (t1 - t0);
    *pg_us = (sampler_seconds(b, &smp) - cpu0) * 1e6 / (double)(total - before);
    *warm_pg_s = cpu0;
    *warm_msgs = before;
}

/* ---- callgrind: instructions per message --------------------------------- */

/* Where a profile's instructions ran, by shared object: the program
 * itself (exactly, or the loop), librdkafka, the C library (its allocator
 * and locks serve librdkafka's per-message objects), libpq, the rest. */
enum { CG_OWN, CG_RDKAFKA, CG_LIBC, CG_LIBPQ, CG_REST, CG_N };
static const char *const cg_names[CG_N] = {"own code", "librdkafka", "libc",
                                           "libpq", "other"};

static int cg_class(const char *object)
{
    const char *base = strrchr(object, '/');

    base = base ? base + 1 : object;
    if (!strncmp(base, "librdkafka.", 11))
        return CG_RDKAFKA;
    if (!strncmp(base, "libc.", 5))
        return CG_LIBC;
    if (!strncmp(base, "libpq.", 6))
        return CG_LIBPQ;
    if (!strcmp(base, "exactly") || !strcmp(base, "exactly-bench"))
        return CG_OWN;
    return CG_REST;
}

/* The instructions callgrind counted in the profile at path (its
 * summary), and in by[] each object class's own (self) instructions:
 * every cost line of the profile but those that follow a calls= line,
 * which repeat the callee's inclusive cost. */
static uint64_t callgrind_total(const char *path, uint64_t by[CG_N])
{
    FILE *f = fopen(path, "r");
    char line[4096];
    int cls[4096];
    int cur = CG_REST, skip = 0;
    uint64_t ir = 0;

    TK_CHECK(f != NULL, "no callgrind output %s", path);
    memset(by, 0, CG_N * sizeof(*by));
    for (size_t i = 0; i < sizeof(cls) / sizeof(cls[0]); i++)
        cls[i] = CG_REST;
    while (fgets(line, sizeof(line), f)) {
        char *sp;
        if (!strncmp(line, "summary: ", 9) || !strncmp(line, "totals: ", 8)) {
            ir = strtoull(strchr(line, ':') + 1, NULL, 10);
        } else if (!strncmp(line, "ob=(", 4) || !strncmp(line, "cob=(", 5)) {
            /* "ob=(n) name" names object n, "ob=(n)" refers to it; a
             * callee's (cob=) may be named first. */
            int callee = line[0] == 'c';
            long id = strtol(line + (callee ? 5 : 4), &sp, 10);
            TK_CHECK(id >= 0 && id < 4096, "object id %ld in %s", id, path);
            if (sp[0] == ')' && sp[1] == ' ') {
                sp[strcspn(sp, "\n")] = '\0';
                cls[id] = cg_class(sp + 2);
            }
            if (!callee)
                cur = cls[id];
        } else if (!strncmp(line, "calls=", 6)) {
            skip = 1;
        } else if ((line[0] >= '0' && line[0] <= '9') || line[0] == '+' ||
                   line[0] == '-' || line[0] == '*') {
            /* "position cost": the cost follows the position. */
            sp = strchr(line, ' ');
            if (sp && !skip)
                by[cur] += strtoull(sp + 1, NULL, 10);
            skip = 0;
        }
    }
    fclose(f);
    TK_CHECK(ir > 0, "no totals in %s", path);
    return ir;
}

/* Consumes n new messages under callgrind, by the worker (the baseline
 * build's while b->cur_bin is set) or, with ceiling, by the hand-written
 * loop (c); returns the instructions counted. */
static uint64_t callgrind_run(bench *b, size_t n, const char *valgrind,
                              int ceiling, uint64_t by[CG_N])
{
    char topic[80], name[64], cfg[700], logp[700], out[600], outarg[720];
    char self[600], batch[16];
    int attempt;
    char *worker_argv[] = {(char *)valgrind, "--tool=callgrind", outarg,
                           (char *)(b->cur_bin ? b->cur_bin : b->exactly_bin),
                           "worker", "-c", cfg,
                           "--exit-idle", "3000", "-q", NULL};
    char *ceiling_argv[] = {(char *)valgrind, "--tool=callgrind", outarg,
                            self, "--ceiling-consumer",
                            (char *)tk_mock_bootstraps(b->mock), topic, name,
                            b->conninfo, batch, "3000", NULL};
    int st;

    snprintf(name, sizeof(name), "cg%zu%s", n,
             ceiling ? "c" : b->cur_bin ? "base" : "");
    snprintf(topic, sizeof(topic), "cg_%s", name);
    snprintf(logp, sizeof(logp), "%s/%s.log", b->dir, name);
    snprintf(out, sizeof(out), "%s/%s.callgrind", b->dir, name);
    snprintf(outarg, sizeof(outarg), "--callgrind-out-file=%s", out);
    tk_mock_create_topic(b->mock, topic, PARTITIONS);
    tk_produce_ids(tk_mock_bootstraps(b->mock), topic, n, b->entities,
                   PARTITIONS, SEED, NULL);
    reset_view(b);
    if (ceiling) {
        unsetenv("EXACTLY_BENCH_CEILING_KAFKA"); /* its own settings */
        self_exe(self, sizeof(self));
        snprintf(batch, sizeof(batch), "%d", b->batch);
        for (attempt = 0;; attempt++) {
            ceiling_offsets(b, name, topic);
            st = tk_wait(tk_spawn(ceiling_argv, logp), 600000);
            if (st == 0 || attempt > 0 || !ceiling_fenced(name, logp))
                break;
            end_backends(b);
            reset_view(b);
        }
    } else {
        snprintf(cfg, sizeof(cfg), "%s/%s.yaml", b->dir, name);
        write_config(b, cfg, name, topic, "    batch: {max_wait_ms: 100}\n",
                     handler_builtin);
        st = tk_wait(tk_spawn(worker_argv, logp), 600000);
    }
    TK_CHECK(st == 0, "%s under callgrind failed (%d), see %s",
             ceiling ? "the hand-written loop" : "worker", st, logp);
    TK_CHECK_EQ_INT64(tk_sql_int64(b->db, "SELECT sum(next_offset) FROM "
                                          "%s.offsets WHERE pipeline = '%s'",
                                   ceiling ? "exactly" : wschema(b), name),
                      (int64_t)n, "messages consumed under callgrind");
    return callgrind_total(out, by);
}

/* Instructions per message: the slope between runs of n1 and n2 messages,
 * so start-up and shut-down cancel out; printed also by object, the same
 * slope of each one's own instructions. */
static double run_callgrind(bench *b, size_t n1, size_t n2, int ceiling)
{
    const char *vg = getenv("EXACTLY_VALGRIND") ? getenv("EXACTLY_VALGRIND")
                                                : "valgrind";
    uint64_t by1[CG_N], by2[CG_N];
    uint64_t i1 = callgrind_run(b, n1, vg, ceiling, by1);
    uint64_t i2 = callgrind_run(b, n2, vg, ceiling, by2);
    int k;

    printf("     callgrind: %zu messages %" PRIu64 " instructions, %zu "
           "messages %" PRIu64 " instructions\n", n1, i1, n2, i2);
    printf("     per message by object:");
    for (k = 0; k < CG_N; k++)
        printf("%s %s %.0f", k ? "," : "", cg_names[k],
               ((double)by2[k] - (double)by1[k]) / (double)(n2 - n1));
    printf("\n");
    return ((double)i2 - (double)i1) / (double)(n2 - n1);
}

/* ---- setup and report ----------------------------------------------------- */

static void setup(bench *b)
{
    char cfg[700], logp[700];
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
    tk_sql(b->db, "CREATE TABLE peer_offsets (grp text, topic text, partition "
                  "int, next_offset bigint NOT NULL, updated_at timestamptz "
                  "NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (grp, "
                  "topic, partition))");
    tk_sql(b->db, "VACUUM ANALYZE accounts");
    b->mock = tk_mock_start(1);
    tk_mock_create_topic(b->mock, TOPIC, PARTITIONS);
    snprintf(cfg, sizeof(cfg), "%s/migrate.yaml", b->dir);
    write_config(b, cfg, "migrate", TOPIC, "", handler_builtin);
    pid = tk_spawn(argv, "/dev/null");
    TK_CHECK(tk_wait(pid, 60000) == 0, "exactly migrate failed");
    /* The commit log (commit_seconds): one row per offset row moved, written
     * when its transaction commits. */
    tk_sql(b->db, "CREATE TABLE bench_commits (tbl text NOT NULL, pipeline "
                  "text NOT NULL, partition int NOT NULL, next_offset bigint "
                  "NOT NULL, owner text, xid bigint NOT NULL DEFAULT "
                  "txid_current(), at timestamptz NOT NULL DEFAULT "
                  "clock_timestamp())");
    tk_sql(b->db, "CREATE FUNCTION public.bench_note() RETURNS trigger "
                  "LANGUAGE plpgsql AS $$ BEGIN IF NEW.next_offset > 0 AND "
                  "(TG_OP = 'INSERT' OR NEW.next_offset <> OLD.next_offset) "
                  "THEN INSERT INTO public.bench_commits (tbl, pipeline, "
                  "partition, next_offset, owner) VALUES (TG_TABLE_SCHEMA || "
                  "'.' || TG_TABLE_NAME, to_jsonb(NEW) ->> TG_ARGV[0], "
                  "NEW.partition, NEW.next_offset, to_jsonb(NEW) ->> "
                  "'owner'); END IF; RETURN NULL; END $$");
    note_commits(b, "exactly.offsets", "pipeline");
    note_commits(b, "public.peer_offsets", "grp");
    if (b->baseline_bin) {
        b->cur_bin = b->baseline_bin;
        argv[0] = (char *)b->baseline_bin;
        snprintf(cfg, sizeof(cfg), "%s/migrate_base.yaml", b->dir);
        write_config(b, cfg, "migrate", TOPIC, "", handler_builtin);
        b->cur_bin = NULL;
        snprintf(logp, sizeof(logp), "%s/migrate_base.log", b->dir);
        pid = tk_spawn(argv, logp);
        TK_CHECK(tk_wait(pid, 60000) == 0, "the baseline's migrate failed, "
                 "see %s", logp);
        note_commits(b, "exactly_base.offsets", "pipeline");
    }
}

static const char *verdict(int ok, int *missed)
{
    if (ok)
        return "met";
    *missed = 1;
    return "MISSED";
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

enum { C_CEIL, C_SQL, C_PEER, C_BUILTIN, C_PLUGIN, C_BASE, N_CONSUMERS };
static const char *const consumer_name[N_CONSUMERS] = {
    "(c)  ceiling: C consumer, prepared, pipelined",
    "(c0) SQL only, no Kafka, no target",
    "(p)  Python peer (confluent-kafka+psycopg2)",
    "(b)  exactly, built-in upsert",
    "(b') exactly, projection C plugin",
    "(b0) baseline build, built-in upsert"};

/* EXACTLY_BENCH_STATEMENTS (the top of the file): pg_stat_statements
 * emptied before a run ... */
static void statements_reset(bench *b)
{
    if (!getenv("EXACTLY_BENCH_STATEMENTS"))
        return;
    tk_sql(b->db, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    tk_sql(b->db, "SELECT pg_stat_statements_reset()");
}

/* ... and printed after it: every statement of the run's user, with its
 * calls and server time per message, then the transactions that moved
 * an offset row (from the commit log) and their average size. */
static void statements_print(bench *b, const char *table, const char *pipeline)
{
    PGresult *r;
    double msgs = (double)b->messages, tot = 0;
    int64_t xacts;
    int i;

    if (!getenv("EXACTLY_BENCH_STATEMENTS"))
        return;
    r = PQexecParams(
        b->db,
        "SELECT calls, rows, total_plan_time + total_exec_time, plans, "
        "left(regexp_replace(query, '\\s+', ' ', 'g'), 110), "
        "shared_blks_hit + shared_blks_read, shared_blks_dirtied, wal_fpi, "
        "wal_bytes FROM "
        "pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE "
        "datname = current_database()) AND calls >= 50 AND query NOT LIKE "
        "'%pg_stat_statements%' ORDER BY total_plan_time + total_exec_time DESC",
        0, NULL, NULL, NULL, NULL, 0);
    TK_CHECK(PQresultStatus(r) == PGRES_TUPLES_OK, "pg_stat_statements: %s",
             PQerrorMessage(b->db));
    printf("     %8s %9s %8s %8s %9s %7s %7s %7s %7s  %s\n", "calls", "rows",
           "plans", "ms", "us/msg", "blk/msg", "dirt/k", "fpi/k", "walB/m",
           "statement");
    for (i = 0; i < PQntuples(r); i++) {
        double ms = atof(PQgetvalue(r, i, 2));
        tot += ms;
        /* Buffers touched per message, pages dirtied and WAL full-page
         * images per 1,000 messages, WAL bytes per message. */
        printf("     %8s %9s %8s %8.0f %9.3f %7.2f %7.2f %7.2f %7.1f  %s\n",
               PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 3),
               ms, ms * 1000 / msgs, atof(PQgetvalue(r, i, 5)) / msgs,
               atof(PQgetvalue(r, i, 6)) * 1000 / msgs,
               atof(PQgetvalue(r, i, 7)) * 1000 / msgs,
               atof(PQgetvalue(r, i, 8)) / msgs, PQgetvalue(r, i, 4));
    }
    PQclear(r);
    xacts = tk_sql_int64(b->db, "SELECT count(DISTINCT xid) FROM bench_commits "
                                "WHERE tbl = '%s' AND pipeline = '%s'",
                         table, pipeline);
    printf("     statements' server time %.3f us/msg (nested ones counted "
           "in their callers too); %" PRId64 " transactions moved offsets, "
           "%.0f messages per commit\n",
           tot * 1000 / msgs, xacts, xacts > 0 ? msgs / (double)xacts : 0);
    fflush(stdout);
}

static void print_figures(const char *name, const figures *f)
{
    printf("%-44s %9.0f msg/s  client %6.2f us/msg  pg %6.2f us/msg  "
           "peak RSS %6.1f MiB\n",
           name, f->msgs_s, f->client_us, f->pg_us, (double)f->rss_kib / 1024.0);
    fflush(stdout);
}

/* EXACTLY_BENCH_PLUGIN_ONLY (the top of the file): (b), (b') and, with
 * EXACTLY_BENCH_BASELINE_PLUGIN, (b'0) in interleaved rounds; medians. */
static void plugin_only(bench *b)
{
    static const char *const name[3] = {
        "(b)  exactly, built-in upsert", "(b') exactly, projection C plugin",
        "(b'0) baseline projection.so"};
    const char *base = getenv("EXACTLY_BENCH_BASELINE_PLUGIN");
    static char handler_base[1024];
    figures f[8][3], m[3];
    double v[8];
    int n = base && *base ? 3 : 2, r, k;

    snprintf(handler_base, sizeof(handler_base),
             "      plugin: %s\n"
             "      options: {table: account_view, key: id}\n",
             base ? base : "");
    for (r = 0; r < b->rounds; r++) {
        char group[32];
        printf("round %d\n", r + 1);
        for (k = 0; k < n; k++) {
            snprintf(group, sizeof(group), "only%d_%d", k, r);
            statements_reset(b);
            run_worker(b, group,
                       k == 0 ? handler_builtin
                              : k == 1 ? handler_plugin : handler_base,
                       1, NULL, &f[r][k]);
            print_figures(name[k], &f[r][k]);
            statements_print(b, "exactly.offsets", group);
        }
    }
    printf("\nmedian of %d round(s)\n", b->rounds);
    for (k = 0; k < n; k++) {
        memset(&m[k], 0, sizeof(m[k]));
        for (r = 0; r < b->rounds; r++) v[r] = f[r][k].msgs_s;
        m[k].msgs_s = median(v, b->rounds);
        for (r = 0; r < b->rounds; r++) v[r] = f[r][k].client_us;
        m[k].client_us = median(v, b->rounds);
        for (r = 0; r < b->rounds; r++) v[r] = f[r][k].pg_us;
        m[k].pg_us = median(v, b->rounds);
        for (r = 0; r < b->rounds; r++)
            if (f[r][k].rss_kib > m[k].rss_kib)
                m[k].rss_kib = f[r][k].rss_kib;
        print_figures(name[k], &m[k]);
    }
    printf("b'/b  %.2f msg/s, pg us/msg %.2f\n", m[1].msgs_s / m[0].msgs_s,
           m[1].pg_us / m[0].pg_us);
    if (n == 3)
        printf("b'0/b %.2f msg/s, pg us/msg %.2f\n",
               m[2].msgs_s / m[0].msgs_s, m[2].pg_us / m[0].pg_us);
    fflush(stdout);
}

/* EXACTLY_BENCH_BC_ONLY (the top of the file): (c), (b) and, with
 * EXACTLY_BENCH_BASELINE_BIN, (b0) in interleaved rounds; medians. */
static void bc_only(bench *b)
{
    static const char *const name[4] = {
        "(c)  ceiling: C consumer, prepared, pipelined",
        "(b)  exactly, built-in upsert", "(b0) baseline build, built-in upsert",
        "(cs) ceiling, not pipelined (comparison)"};
    figures f[8][4], m[4];
    double v[8];
    int n = b->baseline_bin ? 3 : 2, r, k;
    int serial = getenv("EXACTLY_BENCH_BC_SERIAL") != NULL;

    if (serial && n == 2)
        return; /* (cs) sits in the fourth slot: with (b0) only */
    b->kafka_extra = getenv("EXACTLY_BENCH_KAFKA");

    for (r = 0; r < b->rounds; r++) {
        char group[32];
        printf("round %d\n", r + 1);
        for (k = 0; k < n + serial; k++) {
            statements_reset(b);
            if (k == 0 || k == 3) {
                snprintf(group, sizeof(group), "ceiling%s%d", k ? "s" : "", r);
                if (k == 3)
                    setenv("EXACTLY_BENCH_CEILING_SERIAL", "1", 1);
                run_ceiling_consumer(b, group, &f[r][k]);
                unsetenv("EXACTLY_BENCH_CEILING_SERIAL");
            } else {
                snprintf(group, sizeof(group), "%s%d",
                         k == 1 ? "builtin" : "base", r);
                b->cur_bin = k == 2 ? b->baseline_bin : NULL;
                run_worker(b, group, handler_builtin, 1, NULL, &f[r][k]);
            }
            print_figures(name[k], &f[r][k]);
            statements_print(b, k == 2 ? "exactly_base.offsets"
                                       : "exactly.offsets", group);
            b->cur_bin = NULL;
        }
    }
    printf("\nmedian of %d round(s)\n", b->rounds);
    for (k = 0; k < n + serial; k++) {
        memset(&m[k], 0, sizeof(m[k]));
        for (r = 0; r < b->rounds; r++) v[r] = f[r][k].msgs_s;
        m[k].msgs_s = median(v, b->rounds);
        for (r = 0; r < b->rounds; r++) v[r] = f[r][k].client_us;
        m[k].client_us = median(v, b->rounds);
        for (r = 0; r < b->rounds; r++) v[r] = f[r][k].pg_us;
        m[k].pg_us = median(v, b->rounds);
        for (r = 0; r < b->rounds; r++)
            if (f[r][k].rss_kib > m[k].rss_kib)
                m[k].rss_kib = f[r][k].rss_kib;
        print_figures(name[k], &m[k]);
    }
    printf("b/c  %.2f msg/s, pg us/msg %.2f\n", m[1].msgs_s / m[0].msgs_s,
           m[1].pg_us / m[0].pg_us);
    if (n == 3)
        printf("b/b0 %.2f msg/s, pg us/msg %.2f\n", m[1].msgs_s / m[2].msgs_s,
               m[1].pg_us / m[2].pg_us);
    if (serial)
        printf("cs/c %.2f msg/s, pg us/msg %.2f\n", m[3].msgs_s / m[0].msgs_s,
               m[3].pg_us / m[0].pg_us);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    bench b;
    figures fig[8][N_CONSUMERS], med[N_CONSUMERS], two;
    const char *two_name;
    double two_window = 0;
    static series ser;
    double v[8];
    double fair = -1, fair_w = 0, fair_w1 = 0;
    int fair_n = 0;
    double cg = -1, cg_base = -1, cg_c = -1;
    int n_cons = N_CONSUMERS - 1;
    size_t cg1 = 20000, cg2 = 60000;
    int strict = 0, missed = 0, only_callgrind = 0;
    int i, r, k;

    if (argc == 8 && !strcmp(argv[1], "--ceiling-consumer"))
        return ceiling_consumer(argv + 2);
    memset(&b, 0, sizeof(b));
    b.messages = 300000;
    b.rounds = 2;
    b.batch = 1000;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--messages") && i + 1 < argc)
            b.messages = (size_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            b.rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            b.quick = 1;
        else if (!strcmp(argv[i], "--callgrind"))
            b.callgrind = 1;
        else if (!strcmp(argv[i], "--callgrind-only"))
            b.callgrind = only_callgrind = 1;
        else if (!strcmp(argv[i], "--strict"))
            strict = 1;
        else {
            printf("usage: exactly-bench [--messages N] [--rounds N] [--quick] "
                   "[--callgrind | --callgrind-only] [--strict]\n"
                   "Needs EXACTLY_TEST_PG_DIR (a scripts/pg.sh cluster), "
                   "EXACTLY_BIN and EXACTLY_PLUGIN_DIR; scripts/bench.sh sets "
                   "them.\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    if (b.quick) {
        b.messages = 20000;
        b.rounds = 1;
        cg1 = 4000;
        cg2 = 12000;
    }
    if (b.rounds < 1 || b.rounds > 8)
        b.rounds = 2;
    b.messages -= b.messages % PARTITIONS;
    b.entities = b.messages; /* every ID once */
    b.hz = sysconf(_SC_CLK_TCK);
    b.exactly_bin = tk_env_required("EXACTLY_BIN");
    b.plugin_dir = tk_env_required("EXACTLY_PLUGIN_DIR");
    b.baseline_bin = getenv("EXACTLY_BENCH_BASELINE_BIN");
    if (b.baseline_bin && !*b.baseline_bin)
        b.baseline_bin = NULL;
    if (b.baseline_bin)
        n_cons = N_CONSUMERS;
    b.peer = getenv("EXACTLY_BENCH_PEER") ? getenv("EXACTLY_BENCH_PEER")
                                          : EXACTLY_BENCH_PEER;
    tk_tmpdir("exactly-bench", b.dir, sizeof(b.dir));
    snprintf(handler_plugin, sizeof(handler_plugin),
             "      plugin: %s/projection.so\n"
             "      options: {table: account_view, key: id}\n",
             b.plugin_dir);

    printf("exactly benchmark: %zu messages over %d partitions, %zu entities, "
           "batches of %d, %d interleaved round(s), %ld cores online\n",
           b.messages, PARTITIONS, b.entities, b.batch, b.rounds,
           sysconf(_SC_NPROCESSORS_ONLN));
    setup(&b);
    fflush(stdout);

    if (getenv("EXACTLY_BENCH_FAIR_ONLY")) {
        med[C_BUILTIN].msgs_s = 50000;
        goto fair_only;
    }
    if (getenv("EXACTLY_BENCH_LATENCY_ONLY"))
        goto latency;
    if (getenv("EXACTLY_BENCH_SCALE_ONLY"))
        goto scale;
    if (b.callgrind) {
        cg = run_callgrind(&b, cg1, cg2, 0);
        printf("worker instructions per message (callgrind, slope %zu..%zu): "
               "%.0f\n", cg1, cg2, cg);
        cg_c = run_callgrind(&b, cg1, cg2, 1);
        printf("hand-written loop (c) instructions per message: %.0f\n", cg_c);
        if (b.baseline_bin) {
            b.cur_bin = b.baseline_bin;
            cg_base = run_callgrind(&b, cg1, cg2, 0);
            b.cur_bin = NULL;
            printf("baseline build's instructions per message: %.0f\n", cg_base);
        }
        fflush(stdout);
        if (only_callgrind)
            goto done;
    }

    produce_unique(&b, b.messages);
    if (getenv("EXACTLY_BENCH_BC_ONLY")) {
        bc_only(&b);
        goto done;
    }
    if (getenv("EXACTLY_BENCH_PLUGIN_ONLY")) {
        plugin_only(&b);
        goto done;
    }
    if (getenv("EXACTLY_BENCH_TWO_ONLY")) {
        run_worker(&b, "builtin0", handler_builtin, 1, NULL, &med[C_BUILTIN]);
        print_figures(consumer_name[C_BUILTIN], &med[C_BUILTIN]);
        goto two;
    }
    for (r = 0; r < b.rounds; r++) {
        char group[32];
        printf("round %d\n", r + 1);
        reset_view(&b);
        snprintf(group, sizeof(group), "ceiling%d", r);
        run_ceiling_consumer(&b, group, &fig[r][C_CEIL]);
        print_figures(consumer_name[C_CEIL], &fig[r][C_CEIL]);
        reset_view(&b);
        run_ceiling(&b, &fig[r][C_SQL]);
        print_figures(consumer_name[C_SQL], &fig[r][C_SQL]);
        snprintf(group, sizeof(group), "peer%d", r);
        run_peer(&b, group, &fig[r][C_PEER]);
        print_figures(consumer_name[C_PEER], &fig[r][C_PEER]);
        snprintf(group, sizeof(group), "builtin%d", r);
        run_worker(&b, group, handler_builtin, 1, NULL, &fig[r][C_BUILTIN]);
        print_figures(consumer_name[C_BUILTIN], &fig[r][C_BUILTIN]);
        snprintf(group, sizeof(group), "plugin%d", r);
        run_worker(&b, group, handler_plugin, 1, NULL, &fig[r][C_PLUGIN]);
        print_figures(consumer_name[C_PLUGIN], &fig[r][C_PLUGIN]);
        if (b.baseline_bin) {
            snprintf(group, sizeof(group), "base%d", r);
            b.cur_bin = b.baseline_bin;
            run_worker(&b, group, handler_builtin, 1, NULL, &fig[r][C_BASE]);
            b.cur_bin = NULL;
            print_figures(consumer_name[C_BASE], &fig[r][C_BASE]);
        }
    }
    for (k = 0; k < n_cons; k++) {
        memset(&med[k], 0, sizeof(med[k]));
        for (r = 0; r < b.rounds; r++) v[r] = fig[r][k].msgs_s;
        med[k].msgs_s = median(v, b.rounds);
        for (r = 0; r < b.rounds; r++) v[r] = fig[r][k].claim_gap_s;
        med[k].claim_gap_s = median(v, b.rounds);
        for (r = 0; r < b.rounds; r++) v[r] = fig[r][k].self_s;
        med[k].self_s = median(v, b.rounds);
        for (r = 0; r < b.rounds; r++) v[r] = fig[r][k].cores_busy;
        med[k].cores_busy = median(v, b.rounds);
        for (r = 0; r < b.rounds; r++) v[r] = fig[r][k].client_us;
        med[k].client_us = median(v, b.rounds);
        for (r = 0; r < b.rounds; r++) v[r] = fig[r][k].pg_us;
        med[k].pg_us = median(v, b.rounds);
        for (r = 0; r < b.rounds; r++)
            if (fig[r][k].rss_kib > med[k].rss_kib)
                med[k].rss_kib = fig[r][k].rss_kib;
    }
    printf("\nmedian of %d round(s) (RSS: the peak; (c0)'s is the "
           "whole bench process with its mock broker)\n", b.rounds);
    for (k = 0; k < n_cons; k++)
        print_figures(consumer_name[k], &med[k]);
    /* What timing from the claim (as before) would have added, and the
     * consumers' own clocks against the commit log's. */
    printf("timing: first message to last commit, from the commit log "
           "(the first message at the first commit less that batch's "
           "share); (b)'s earliest claim came %.0f ms before its first "
           "message; own clocks: (c) %.0f msg/s, (p) %.0f msg/s\n",
           med[C_BUILTIN].claim_gap_s * 1000,
           med[C_CEIL].self_s > 0 ? (double)b.messages / med[C_CEIL].self_s : 0,
           med[C_PEER].self_s > 0 ? (double)b.messages / med[C_PEER].self_s : 0);

two:
    /* Two workers in one group against one (the median above). Started
     * together, they join the group in the mock broker's first 3 s; a
     * member that joins later is held by the mock for session.timeout.ms
     * less 1 s (44 s) while the group's partitions are revoked (a real
     * broker ends the rebalance once every member rejoined). Such a stall,
     * or one worker doing all the work, is not the steady state of two
     * workers the figure is about: the run is made once more, and the
     * line says so. */
    run_worker(&b, "two", handler_builtin, 2, NULL, &two);
    two_name = "two";
    if (two.pause_s > 5 || two.owners < 2) {
        double stall = two.pause_s;
        int owners = two.owners;
        run_worker(&b, "two_again", handler_builtin, 2, NULL, &two);
        two_name = "two_again";
        printf("(b2) run again: in the first run %d worker(s) committed and "
               "the longest pause between commits was %.1f s (a late join, "
               "held by the mock broker)\n", owners, stall);
    }
    /* Both start on a full backlog: the second one's join, and the
     * rebalance it causes, are inside the time. */
    printf("(b2) exactly, built-in upsert, 2 workers %9.0f msg/s  client "
           "%6.2f us/msg  pg %6.2f us/msg  (`exactly run`, workers: 2; %d "
           "of them committed; longest pause between commits %.0f ms)\n",
           two.msgs_s, two.client_us, two.pg_us, two.owners,
           two.pause_s * 1000);
    printf("     CPU: %ld cores online; the whole machine (everything on "
           "it) busy %.2f cores from first to last commit of (b2), %.2f of "
           "(b) (median; /proc/stat every 100 ms)\n",
           sysconf(_SC_NPROCESSORS_ONLN), two.cores_busy,
           med[C_BUILTIN].cores_busy);
    {
        char tbl[64];
        snprintf(tbl, sizeof(tbl), "%s.offsets", wschema(&b));
        two_window = owners_window(&b, tbl, two_name);
    }
    fflush(stdout);
    if (getenv("EXACTLY_BENCH_TWO_ONLY")) {
        printf("2 workers / 1: %.2f; while both committed: %.2f\n",
               two.msgs_s / med[C_BUILTIN].msgs_s,
               two_window / med[C_BUILTIN].msgs_s);
        goto done;
    }

fair_only:
    /* Fairness over the issue's 10 s windows, on backlogs of about 30 s of
     * draining: at default settings (at the rate measured above; shorter
     * windows when it drains faster, below), and drained slowly (batches
     * of 10 messages), where one partition's run of fetched messages
     * lasts longest. */
    {
        double w = b.quick ? 1.0 : 10.0;
        size_t fm = b.quick ? 80000 : (size_t)(med[C_BUILTIN].msgs_s * 3 * w);
        size_t slow = b.quick ? 20000 : 120000;
        double f1, f2, r1, r2;
        int n1, n2;

        if (getenv("EXACTLY_BENCH_FAIR_WINDOW"))
            w = atof(getenv("EXACTLY_BENCH_FAIR_WINDOW"));
        if (getenv("EXACTLY_BENCH_FAIR_MESSAGES"))
            fm = (size_t)strtoul(getenv("EXACTLY_BENCH_FAIR_MESSAGES"), NULL, 10);
        if (getenv("EXACTLY_BENCH_FAIR_SLOW"))
            slow = (size_t)strtoul(getenv("EXACTLY_BENCH_FAIR_SLOW"), NULL, 10);
        if (fm < 8 * (size_t)b.batch * PARTITIONS)
            fm = 8 * (size_t)b.batch * PARTITIONS;
        f1 = run_fairness(&b, "fair", "", fm, w, &ser, &n1, &r1);
        fair_w1 = w;
        /* Drained before one window ended: faster than the sizing assumed
         * (the backlog names each entity many times, and an upsert that
         * changes nothing costs the server little). Judged over windows of
         * a third of its drain instead, said so. */
        if (f1 < 0 && !b.quick && r1 > 0) {
            fair_w1 = (double)fm / r1 / 3;
            if (fair_w1 < 1)
                fair_w1 = 1;
            f1 = fairness(&ser, (int64_t)(fm / PARTITIONS), fair_w1, &n1);
            printf("fairness backlog fair     drained in %.1f s: over "
                   "windows of %.1f s instead, slowest/fastest %.2f over %d "
                   "windows\n", (double)fm / r1, fair_w1, f1, n1);
        }
        f2 = run_fairness(&b, "fairslow", "    batch: {max_messages: 10}\n",
                          slow, w, &ser, &n2, &r2);
        /* A slow backlog that drained before one window ended measured
         * nothing: it runs again, sized from the rate just seen to about
         * three windows. */
        if (f2 < 0 && !b.quick && !getenv("EXACTLY_BENCH_FAIR_SLOW") &&
            r2 > 0)
            f2 = run_fairness(&b, "fairslo2", "    batch: {max_messages: 10}\n",
                              (size_t)(r2 * 3 * w), w, &ser, &n2, &r2);
        fair_w = w;
        fair_n = n1 + n2;
        /* Both backlogs must have been measured for a figure. */
        fair = f1 < 0 || f2 < 0 ? -1 : f1 < f2 ? f1 : f2;
        if (getenv("EXACTLY_BENCH_FAIR_ONLY")) {
            printf("fairness %.2f over %d windows\n", fair, fair_n);
            goto done;
        }
    }

latency:
    commit_log(&b, 0);
    /* Latency at a steady rate, low max_wait_ms. */
    double lp50[4], lp99[4], lpg[4], lcl[4], lx[4], lb[4];
    double dur = b.quick ? 3 : 10;
    if (getenv("EXACTLY_BENCH_LATENCY_SECONDS"))
        dur = atof(getenv("EXACTLY_BENCH_LATENCY_SECONDS"));
    run_latency(&b, 0, "lat_exactly", 5000, dur, &lp50[0], &lp99[0], &lpg[0],
                &lcl[0], &lx[0], &lb[0]);
    run_latency(&b, 1, "lat_peer", 5000, dur, &lp50[1], &lp99[1], &lpg[1],
                &lcl[1], &lx[1], &lb[1]);
    if (b.baseline_bin) {
        b.cur_bin = b.baseline_bin;
        run_latency(&b, 0, "lat_base", 5000, dur, &lp50[2], &lp99[2],
                    &lpg[2], &lcl[2], &lx[2], &lb[2]);
        b.cur_bin = NULL;
    }
    /* And at the default batch settings (max_wait_ms 100). */
    run_latency(&b, 2, "lat_default", 5000, dur, &lp50[3], &lp99[3], &lpg[3],
                &lcl[3], &lx[3], &lb[3]);
    printf("latency at 5000 msg/s, max_wait_ms 10, %.0f s after a warm-up (produce to commit "
           "seen, 2 ms polling):\n", dur);
    printf("  exactly       p50 %7.1f ms  p99 %7.1f ms  pg %6.2f us/msg  client "
           "%6.2f us/msg  %6.0f PG transactions, %6.0f batches (%.2f per "
           "batch)\n", lp50[0], lp99[0], lpg[0], lcl[0], lx[0], lb[0],
           lb[0] > 0 ? lx[0] / lb[0] : 0.0);
    printf("  Python peer   p50 %7.1f ms  p99 %7.1f ms  pg %6.2f us/msg  client "
           "%6.2f us/msg  %6.0f PG transactions\n", lp50[1], lp99[1], lpg[1],
           lcl[1], lx[1]);
    if (b.baseline_bin)
        printf("  baseline      p50 %7.1f ms  p99 %7.1f ms  pg %6.2f us/msg  "
               "client %6.2f us/msg  %6.0f PG transactions, %6.0f batches "
               "(%.2f per batch)\n", lp50[2], lp99[2], lpg[2], lcl[2], lx[2],
               lb[2], lb[2] > 0 ? lx[2] / lb[2] : 0.0);
    printf("  exactly at default settings (max_wait_ms 100): p50 %7.1f ms  "
           "p99 %7.1f ms  pg %6.2f us/msg  %6.0f PG transactions\n",
           lp50[3], lp99[3], lpg[3], lx[3]);
    fflush(stdout);
    if (getenv("EXACTLY_BENCH_LATENCY_ONLY")) {
        printf("latency p50 default settings (ms)      %8.1f   <= 120   %s\n",
               lp50[3], verdict(lp50[3] <= 120, &missed));
        printf("latency pg CPU/msg exactly / peer      %8.2f\n",
               lpg[0] / lpg[1]);
        if (b.baseline_bin)
            printf("latency pg CPU/msg baseline / peer     %8.2f\n",
                   lpg[2] / lpg[1]);
        goto done;
    }

scale:
    commit_log(&b, 0);
    /* Partitions at a low rate. */
    double cs[3], spg[3], swarm;
    int64_t swarm_msgs;
    static const int nparts[3] = {4, 64, 256};
    for (k = 0; k < 3; k++) {
        run_scale(&b, nparts[k], 1000, b.quick ? 3 : 10, &cs[k], &spg[k],
                  &swarm, &swarm_msgs);
        printf("%3d partitions, 1000 msg/s in all: %7.1f commits/s  pg %6.2f "
               "us/msg  (warm-up before: pg %.2f s, %" PRId64 " msgs)\n",
               nparts[k], cs[k], spg[k], swarm, swarm_msgs);
        fflush(stdout);
    }
    if (getenv("EXACTLY_BENCH_SCALE_ONLY")) {
        printf("64 partitions: commits/s, pg/msg vs 4  %5.2f %5.2f  <= 1.5\n",
               cs[0] > 0 ? cs[1] / cs[0] : 0, spg[1] / spg[0]);
        printf("256 partitions: commits/s, pg/msg vs 4 %5.2f %5.2f  <= 1.5\n",
               cs[0] > 0 ? cs[2] / cs[0] : 0, spg[2] / spg[0]);
        goto done;
    }

    printf("\nratio / figure                         measured   target\n");
    printf("b/c   built-in vs C ceiling            %8.2f   >= 1.0   %s\n",
           med[C_BUILTIN].msgs_s / med[C_CEIL].msgs_s,
           verdict(med[C_BUILTIN].msgs_s >= med[C_CEIL].msgs_s, &missed));
    printf("b/p   built-in vs Python peer          %8.2f   >= 1.6   %s\n",
           med[C_BUILTIN].msgs_s / med[C_PEER].msgs_s,
           verdict(med[C_BUILTIN].msgs_s >= 1.6 * med[C_PEER].msgs_s, &missed));
    printf("b'/b  plugin vs built-in               %8.2f   >= 0.9   %s\n",
           med[C_PLUGIN].msgs_s / med[C_BUILTIN].msgs_s,
           verdict(med[C_PLUGIN].msgs_s >= 0.9 * med[C_BUILTIN].msgs_s, &missed));
    printf("pg CPU/msg built-in vs ceiling         %8.2f\n",
           med[C_BUILTIN].pg_us / med[C_CEIL].pg_us);
    printf("b/c0  built-in vs SQL only, no Kafka   %8.2f   (no target)\n",
           med[C_BUILTIN].msgs_s / med[C_SQL].msgs_s);
    printf("pg CPU/msg built-in vs peer            %8.2f\n",
           med[C_BUILTIN].pg_us / med[C_PEER].pg_us);
    printf("client CPU/msg built-in vs peer        %8.2f\n",
           med[C_BUILTIN].client_us / med[C_PEER].client_us);
    printf("peak RSS built-in, plugin (MiB)        %5.1f %5.1f  <= 64   %s\n",
           (double)med[C_BUILTIN].rss_kib / 1024, (double)med[C_PLUGIN].rss_kib / 1024,
           verdict(med[C_BUILTIN].rss_kib <= 64 * 1024 &&
                       med[C_PLUGIN].rss_kib <= 64 * 1024, &missed));
    printf("latency p99 exactly / peer             %8.2f   <= 1.0   %s\n",
           lp99[0] / lp99[1], verdict(lp99[0] <= lp99[1], &missed));
    printf("latency pg CPU/msg exactly / peer      %8.2f   <= 1.0   %s\n",
           lpg[0] / lpg[1], verdict(lpg[0] <= lpg[1], &missed));
    printf("latency p50 default settings (ms)      %8.1f   <= 120   %s "
           "(max_wait_ms 100 + 20)\n",
           lp50[3], verdict(lp50[3] <= 120, &missed));
    if (fair >= 0 && fair_w1 < fair_w)
        printf("fairness: slowest/fastest partition    %8.2f   >= 0.5   %s "
               "(both backlogs; %d sliding windows 0.1 s apart: of %.1f s "
               "at default settings, which drained in less than %.0f s; of "
               "%.0f s for batches of 10)\n", fair,
               verdict(fair >= 0.5, &missed), fair_n, fair_w1, fair_w, fair_w);
    else if (fair >= 0)
        printf("fairness: slowest/fastest partition    %8.2f   >= 0.5   %s "
               "(both backlogs; %d sliding windows of %.0f s, 0.1 s apart)\n", fair,
               verdict(fair >= 0.5, &missed), fair_n, fair_w);
    else
        printf("fairness: slowest/fastest partition         n/a   >= 0.5   %s "
               "(a backlog drained before one window ended)\n",
               verdict(0, &missed));
    printf("64 partitions: commits/s, pg/msg vs 4  %5.2f %5.2f  <= 1.5   %s\n",
           cs[0] > 0 ? cs[1] / cs[0] : 0, spg[1] / spg[0],
           verdict(cs[1] <= 1.5 * cs[0] && spg[1] <= 1.5 * spg[0], &missed));
    printf("256 partitions: commits/s, pg/msg vs 4 %5.2f %5.2f  <= 1.5   %s\n",
           cs[0] > 0 ? cs[2] / cs[0] : 0, spg[2] / spg[0],
           verdict(cs[2] <= 1.5 * cs[0] && spg[2] <= 1.5 * spg[0], &missed));
    printf("2 workers / 1                          %8.2f   >= 1.8   %s "
           "(%ld cores online; see (b2)'s CPU line)\n",
           two.msgs_s / med[C_BUILTIN].msgs_s,
           verdict(two.msgs_s >= 1.8 * med[C_BUILTIN].msgs_s, &missed),
           sysconf(_SC_NPROCESSORS_ONLN));
    /* Whether the machine has the cores: one worker's run kept
     * cores_busy of it busy (its backend, itself, the broker, the rest),
     * two at the same cost per message need twice that. */
    printf("     while both committed: %.2f; two workers at one's cost per "
           "message need %.2f cores busy, %ld online\n",
           two_window / med[C_BUILTIN].msgs_s, 2 * med[C_BUILTIN].cores_busy,
           sysconf(_SC_NPROCESSORS_ONLN));
    if (b.baseline_bin) {
        printf("latency pg CPU/msg baseline / peer     %8.2f\n",
               lpg[2] / lpg[1]);
        printf("b/b0  built-in vs baseline build       %8.2f\n",
               med[C_BUILTIN].msgs_s / med[C_BASE].msgs_s);
        printf("pg CPU/msg built-in vs baseline build  %8.2f\n",
               med[C_BUILTIN].pg_us / med[C_BASE].pg_us);
        printf("client CPU/msg built-in vs baseline    %8.2f\n",
               med[C_BUILTIN].client_us / med[C_BASE].client_us);
    }
    if (cg >= 0)
        printf("worker instructions/msg (callgrind)    %8.0f   <= 2000  %s\n",
               cg, verdict(cg <= 2000, &missed));
    if (cg_c > 0)
        printf("instructions/msg built-in vs (c)       %8.2f   (c): %.0f\n",
               cg / cg_c, cg_c);
    if (cg_base >= 0)
        printf("baseline build's instructions/msg      %8.0f\n", cg_base);
done:
    fflush(stdout);
    PQfinish(b.db);
    tk_mock_stop(b.mock);
    tk_pg_drop_db(b.conninfo);
    if (getenv("EXACTLY_BENCH_VERBOSE"))
        printf("logs kept in %s\n", b.dir);
    else
        tk_rm_rf(b.dir);
    return strict && missed ? 1 : 0;
}
