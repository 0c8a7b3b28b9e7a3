/*
 * testkit: see testkit.h for the contract of each function.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "testkit.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Checks and outcomes                                                 */
/* ------------------------------------------------------------------ */

/* The outcome is decided: flush what the test printed and leave without
 * running atexit handlers, so a failing test's live librdkafka threads,
 * connections and the leak checker do not bury the message. */
static TK_NORETURN void tk_exit_now(int code)
{
    fflush(NULL);
    _exit(code);
}

void tk_fail_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    fprintf(stderr, "FAIL: %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    tk_exit_now(1);
}

void tk_skip(const char *reason)
{
    fflush(stdout);
    fprintf(stderr, "SKIP: %s\n", reason ? reason : "(no reason given)");
    tk_exit_now(TK_EXIT_SKIP);
}

void tk_note(const char *fmt, ...)
{
    va_list ap;

    fputs("# ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int tk_str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

const char *tk_env_required(const char *name)
{
    const char *v = getenv(name);

    if (v == NULL || v[0] == '\0')
        tk_fail("environment variable %s is not set (run the test through "
                "ctest, or set it by hand)", name);
    return v;
}

/* vsnprintf into a fresh malloc'd buffer, or fail the test. */
static char *tk_vformat(const char *fmt, va_list ap) TK_PRINTF(1, 0);
static char *tk_vformat(const char *fmt, va_list ap)
{
    va_list ap2;
    int len;
    char *buf;

    va_copy(ap2, ap);
    len = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (len < 0)
        tk_fail("bad format string \"%s\"", fmt);
    buf = malloc((size_t)len + 1);
    if (buf == NULL)
        tk_fail("out of memory");
    vsnprintf(buf, (size_t)len + 1, fmt, ap);
    return buf;
}

/* ------------------------------------------------------------------ */
/* PostgreSQL                                                          */
/* ------------------------------------------------------------------ */

const char *tk_pg_admin_conninfo(void)
{
    static char *cached;
    const char *dir;
    char path[4096];
    char *text;
    size_t len;

    if (cached != NULL)
        return cached;
    if (getenv("EXACTLY_TEST_PG_CONNINFO") != NULL &&
        getenv("EXACTLY_TEST_PG_CONNINFO")[0] != '\0') {
        cached = strdup(getenv("EXACTLY_TEST_PG_CONNINFO"));
        if (cached == NULL)
            tk_fail("out of memory");
        return cached;
    }
    dir = getenv("EXACTLY_TEST_PG_DIR");
    if (dir == NULL || dir[0] == '\0')
        tk_fail("neither EXACTLY_TEST_PG_DIR nor EXACTLY_TEST_PG_CONNINFO is "
                "set: run through ctest (fixture `pg`) or start a cluster "
                "with scripts/pg.sh start DIR and export "
                "EXACTLY_TEST_PG_DIR=DIR");
    if ((size_t)snprintf(path, sizeof path, "%s/conninfo", dir) >= sizeof path)
        tk_fail("EXACTLY_TEST_PG_DIR is too long");
    text = tk_read_file(path);
    if (text == NULL)
        tk_fail("cannot read %s (%s): did the pg_start fixture run?", path,
                strerror(errno));
    len = strlen(text);
    while (len > 0 && isspace((unsigned char)text[len - 1]))
        text[--len] = '\0';
    if (len == 0)
        tk_fail("%s is empty", path);
    cached = text;
    return cached;
}

/* Append `keyword='value'` (value quoted as libpq wants) to buf. */
static void tk_conninfo_append(char *buf, size_t size, size_t *pos,
                               const char *keyword, const char *value)
{
    size_t need = strlen(keyword) + 4 + 2 * strlen(value) + 1;
    const char *p;

    if (*pos + need >= size)
        tk_fail("conninfo buffer of %zu bytes is too small", size);
    *pos += (size_t)sprintf(buf + *pos, "%s%s='", *pos ? " " : "", keyword);
    for (p = value; *p; p++) {
        if (*p == '\'' || *p == '\\')
            buf[(*pos)++] = '\\';
        buf[(*pos)++] = *p;
    }
    buf[(*pos)++] = '\'';
    buf[*pos] = '\0';
}

/* Write `base` with dbname replaced by `dbname` into out. */
static void tk_conninfo_with_db(const char *base, const char *dbname,
                                char *out, size_t out_size)
{
    PQconninfoOption *opts, *o;
    char *err = NULL;
    size_t pos = 0;

    opts = PQconninfoParse(base, &err);
    if (opts == NULL)
        tk_fail("cannot parse conninfo \"%s\": %s", base,
                err ? err : "out of memory");
    if (out_size > 0)
        out[0] = '\0';
    for (o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL || strcmp(o->keyword, "dbname") == 0)
            continue;
        tk_conninfo_append(out, out_size, &pos, o->keyword, o->val);
    }
    tk_conninfo_append(out, out_size, &pos, "dbname", dbname);
    PQconninfoFree(opts);
}

char *tk_pg_create_db(const char *name_prefix, char *conninfo_out,
                      size_t conninfo_size)
{
    static unsigned counter;
    char name[64];
    char prefix[41];
    size_t i;
    PGconn *admin;
    char *ident;

    for (i = 0; name_prefix && name_prefix[i] && i < sizeof prefix - 1; i++) {
        unsigned char c = (unsigned char)tolower((unsigned char)name_prefix[i]);
        prefix[i] = (isalnum(c) || c == '_') ? (char)c : '_';
    }
    prefix[i] = '\0';
    snprintf(name, sizeof name, "%s_%ld_%u", i ? prefix : "tk",
             (long)getpid(), ++counter);

    admin = tk_pg_connect(tk_pg_admin_conninfo());
    ident = PQescapeIdentifier(admin, name, strlen(name));
    if (ident == NULL)
        tk_fail("cannot quote database name %s: %s", name,
                PQerrorMessage(admin));
    tk_sql(admin, "CREATE DATABASE %s", ident);
    PQfreemem(ident);
    PQfinish(admin);

    tk_conninfo_with_db(tk_pg_admin_conninfo(), name, conninfo_out,
                        conninfo_size);
    return conninfo_out;
}

void tk_pg_drop_db(const char *conninfo)
{
    PQconninfoOption *opts, *o;
    char *err = NULL;
    char *ident = NULL;
    PGconn *admin;

    opts = PQconninfoParse(conninfo, &err);
    if (opts == NULL)
        tk_fail("cannot parse conninfo \"%s\": %s", conninfo,
                err ? err : "out of memory");
    admin = tk_pg_connect(tk_pg_admin_conninfo());
    for (o = opts; o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "dbname") == 0 && o->val != NULL)
            ident = PQescapeIdentifier(admin, o->val, strlen(o->val));
    }
    PQconninfoFree(opts);
    if (ident == NULL)
        tk_fail("conninfo \"%s\" names no database", conninfo);
    tk_sql(admin, "DROP DATABASE IF EXISTS %s WITH (FORCE)", ident);
    PQfreemem(ident);
    PQfinish(admin);
}

PGconn *tk_pg_connect_at(const char *file, int line, const char *conninfo)
{
    PGconn *conn = PQconnectdb(conninfo);

    if (conn == NULL)
        tk_fail_at(file, line, "PQconnectdb: out of memory");
    if (PQstatus(conn) != CONNECTION_OK)
        tk_fail_at(file, line, "cannot connect to \"%s\": %s", conninfo,
                   PQerrorMessage(conn));
    return conn;
}

/* Run sql; on failure name the caller, the error and the statement. */
static PGresult *tk_exec_checked(const char *file, int line, PGconn *conn,
                                 const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK &&
        st != PGRES_EMPTY_QUERY)
        tk_fail_at(file, line, "SQL failed: %s  statement: %.600s",
                   res ? PQresultErrorMessage(res) : PQerrorMessage(conn),
                   sql);
    return res;
}

void tk_sql_at(const char *file, int line, PGconn *conn, const char *fmt, ...)
{
    va_list ap;
    char *sql;

    va_start(ap, fmt);
    sql = tk_vformat(fmt, ap);
    va_end(ap);
    PQclear(tk_exec_checked(file, line, conn, sql));
    free(sql);
}

/* Run a query that must yield one row and one column. */
static PGresult *tk_exec_one(const char *file, int line, PGconn *conn,
                             const char *fmt, va_list ap) TK_PRINTF(4, 0);
static PGresult *tk_exec_one(const char *file, int line, PGconn *conn,
                             const char *fmt, va_list ap)
{
    char *sql = tk_vformat(fmt, ap);
    PGresult *res = tk_exec_checked(file, line, conn, sql);

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
        PQnfields(res) != 1)
        tk_fail_at(file, line,
                   "expected one row of one column, got %d row(s) of %d "
                   "column(s)  statement: %.600s",
                   PQntuples(res), PQnfields(res), sql);
    free(sql);
    return res;
}

int64_t tk_sql_int64_at(const char *file, int line, PGconn *conn,
                        const char *fmt, ...)
{
    va_list ap;
    PGresult *res;
    const char *text;
    char *end;
    long long v;

    va_start(ap, fmt);
    res = tk_exec_one(file, line, conn, fmt, ap);
    va_end(ap);
    if (PQgetisnull(res, 0, 0))
        tk_fail_at(file, line, "query returned NULL, expected an integer");
    text = PQgetvalue(res, 0, 0);
    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0')
        tk_fail_at(file, line, "query returned \"%s\", expected an integer",
                   text);
    PQclear(res);
    return (int64_t)v;
}

char *tk_sql_text_at(const char *file, int line, PGconn *conn,
                     const char *fmt, ...)
{
    va_list ap;
    PGresult *res;
    char *out = NULL;

    va_start(ap, fmt);
    res = tk_exec_one(file, line, conn, fmt, ap);
    va_end(ap);
    if (!PQgetisnull(res, 0, 0)) {
        out = strdup(PQgetvalue(res, 0, 0));
        if (out == NULL)
            tk_fail("out of memory");
    }
    PQclear(res);
    return out;
}

/* ------------------------------------------------------------------ */
/* Kafka: mock cluster                                                 */
/* ------------------------------------------------------------------ */

/* rd_kafka_conf_set or fail. */
static void tk_conf_set(rd_kafka_conf_t *conf, const char *name,
                        const char *value)
{
    char errstr[512];

    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr) !=
        RD_KAFKA_CONF_OK)
        tk_fail("librdkafka property %s=%s: %s", name, value, errstr);
}

tk_mock *tk_mock_start(int brokers)
{
    tk_mock *m;
    rd_kafka_conf_t *conf;
    char errstr[512];

    if (brokers < 1)
        tk_fail("tk_mock_start: brokers must be >= 1, got %d", brokers);
    m = calloc(1, sizeof *m);
    if (m == NULL)
        tk_fail("out of memory");

    /* The handle only hosts the mock's threads; it never connects, so say
     * nothing about bootstrap servers and keep its log to warnings. */
    conf = rd_kafka_conf_new();
    tk_conf_set(conf, "client.id", "tk-mock-host");
    tk_conf_set(conf, "log_level", "4");
    m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (m->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        tk_fail("rd_kafka_new for the mock cluster: %s", errstr);
    }
    m->cluster = rd_kafka_mock_cluster_new(m->rk, brokers);
    if (m->cluster == NULL)
        tk_fail("rd_kafka_mock_cluster_new(%d brokers) failed", brokers);
    m->bootstraps = rd_kafka_mock_cluster_bootstraps(m->cluster);
    if (m->bootstraps == NULL || m->bootstraps[0] == '\0')
        tk_fail("the mock cluster has no bootstrap servers");
    return m;
}

void tk_mock_create_topic(tk_mock *m, const char *topic, int partitions)
{
    rd_kafka_resp_err_t err;

    if (partitions < 1)
        tk_fail("topic %s: partitions must be >= 1, got %d", topic,
                partitions);
    err = rd_kafka_mock_topic_create(m->cluster, topic, partitions, 1);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        tk_fail("creating mock topic %s (%d partitions): %s", topic,
                partitions, rd_kafka_err2str(err));
}

const char *tk_mock_bootstraps(const tk_mock *m)
{
    return m->bootstraps;
}

rd_kafka_mock_cluster_t *tk_mock_cluster(const tk_mock *m)
{
    return m->cluster;
}

void tk_mock_stop(tk_mock *m)
{
    if (m == NULL)
        return;
    if (m->cluster != NULL)
        rd_kafka_mock_cluster_destroy(m->cluster);
    if (m->rk != NULL)
        rd_kafka_destroy(m->rk);
    free(m);
}

/* ------------------------------------------------------------------ */
/* Kafka: producing                                                    */
/* ------------------------------------------------------------------ */

typedef struct tk_producer {
    rd_kafka_t *rk;
    const char *topic;
    int64_t sent;
    int64_t delivered;
    int64_t failed;
    char first_error[512];
} tk_producer;

static void tk_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg,
                           void *opaque)
{
    tk_producer *p = opaque;

    (void)rk;
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        p->delivered++;
        return;
    }
    if (p->failed++ == 0)
        snprintf(p->first_error, sizeof p->first_error,
                 "partition %" PRId32 ": %s", msg->partition,
                 rd_kafka_err2str(msg->err));
}

static void tk_producer_open(tk_producer *p, const char *bootstraps,
                             const char *topic)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[512];

    memset(p, 0, sizeof *p);
    p->topic = topic;
    tk_conf_set(conf, "bootstrap.servers", bootstraps);
    tk_conf_set(conf, "client.id", "tk-producer");
    tk_conf_set(conf, "enable.idempotence", "true");
    tk_conf_set(conf, "linger.ms", "5");
    tk_conf_set(conf, "partitioner", "murmur2_random");
    tk_conf_set(conf, "message.timeout.ms", "60000");
    tk_conf_set(conf, "queue.buffering.max.messages", "500000");
    rd_kafka_conf_set_dr_msg_cb(conf, tk_on_delivery);
    rd_kafka_conf_set_opaque(conf, p);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (p->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        tk_fail("rd_kafka_new (producer to %s): %s", bootstraps, errstr);
    }
}

/* Queue one message (payloads copied); waits while the queue is full. */
static void tk_producer_send(tk_producer *p, const tk_msg *msg)
{
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_resp_err_t err;
    size_t i;

    if (msg->n_headers > TK_MSG_MAX_HEADERS)
        tk_fail("tk_msg has %zu headers, at most %d allowed", msg->n_headers,
                TK_MSG_MAX_HEADERS);
    for (;;) {
        if (msg->n_headers > 0) {
            hdrs = rd_kafka_headers_new(msg->n_headers);
            for (i = 0; i < msg->n_headers; i++) {
                const tk_header *h = &msg->headers[i];
                err = rd_kafka_header_add(hdrs, h->name, -1, h->value,
                                          h->value ? (ssize_t)h->value_len : 0);
                if (err)
                    tk_fail("header %s: %s", h->name, rd_kafka_err2str(err));
            }
        }
        /* librdkafka copies the payloads (F_COPY) and never writes them:
         * casting away const is safe. */
        err = rd_kafka_producev(
            p->rk, RD_KAFKA_V_TOPIC(p->topic),
            RD_KAFKA_V_PARTITION(msg->partition < 0 ? RD_KAFKA_PARTITION_UA
                                                    : msg->partition),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY((void *)(uintptr_t)msg->key, msg->key_len),
            RD_KAFKA_V_VALUE((void *)(uintptr_t)msg->value, msg->value_len),
            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            break; /* hdrs now belong to the message */
        if (hdrs != NULL)
            rd_kafka_headers_destroy(hdrs);
        hdrs = NULL;
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            tk_fail("producing to %s: %s", p->topic, rd_kafka_err2str(err));
        rd_kafka_poll(p->rk, 10);
    }
    p->sent++;
    rd_kafka_poll(p->rk, 0);
}

/* Wait for every delivery report, fail on any error, destroy. */
static void tk_producer_finish(tk_producer *p)
{
    rd_kafka_resp_err_t err = rd_kafka_flush(p->rk, 60000);

    if (p->failed > 0)
        tk_fail("%" PRId64 " of %" PRId64 " message(s) to %s not delivered; "
                "first: %s", p->failed, p->sent, p->topic, p->first_error);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR || p->delivered != p->sent)
        tk_fail("only %" PRId64 " of %" PRId64 " message(s) to %s delivered "
                "within 60 s (%s)", p->delivered, p->sent, p->topic,
                rd_kafka_err2str(err));
    rd_kafka_destroy(p->rk);
    p->rk = NULL;
}

void tk_produce(const char *bootstraps, const char *topic,
                const tk_msg *msgs, size_t n)
{
    tk_producer p;
    size_t i;

    tk_producer_open(&p, bootstraps, topic);
    for (i = 0; i < n; i++)
        tk_producer_send(&p, &msgs[i]);
    tk_producer_finish(&p);
}

/* splitmix64: a fixed, well-mixed function of its input. */
static uint64_t tk_mix64(uint64_t x)
{
    x += UINT64_C(0x9e3779b97f4a7c15);
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

int64_t tk_id_for(uint64_t seed, size_t i, size_t n_entities)
{
    if (n_entities == 0)
        tk_fail("tk_id_for: n_entities must be >= 1");
    return (int64_t)(tk_mix64(tk_mix64(seed) ^ (uint64_t)i) % n_entities) + 1;
}

size_t tk_produce_ids(const char *bootstraps, const char *topic,
                      size_t n_messages, size_t n_entities,
                      int32_t n_partitions, uint64_t seed,
                      int64_t *counts_out)
{
    tk_producer p;
    int64_t *counts = counts_out;
    size_t i, distinct = 0;
    char key[24];
    tk_msg msg;

    if (n_entities == 0 || n_partitions < 1)
        tk_fail("tk_produce_ids: need n_entities >= 1 and n_partitions >= 1");
    if (counts == NULL) {
        counts = calloc(n_entities, sizeof *counts);
        if (counts == NULL)
            tk_fail("out of memory");
    } else {
        memset(counts, 0, n_entities * sizeof *counts);
    }

    memset(&msg, 0, sizeof msg);
    tk_producer_open(&p, bootstraps, topic);
    for (i = 0; i < n_messages; i++) {
        int64_t id = tk_id_for(seed, i, n_entities);
        int len = snprintf(key, sizeof key, "%" PRId64, id);

        msg.partition = (int32_t)(i % (size_t)n_partitions);
        msg.key = key;
        msg.key_len = (size_t)len;
        tk_producer_send(&p, &msg);
        if (counts[id - 1]++ == 0)
            distinct++;
    }
    tk_producer_finish(&p);
    if (counts != counts_out)
        free(counts);
    return distinct;
}

/* ------------------------------------------------------------------ */
/* Kafka: consuming                                                    */
/* ------------------------------------------------------------------ */

int64_t tk_consume_count(const char *bootstraps, const char *topic,
                         const char *group, int64_t expected, int timeout_ms,
                         int64_t *per_partition, int32_t n_partitions)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *subs;
    rd_kafka_t *rk;
    rd_kafka_resp_err_t err;
    char errstr[512];
    int64_t seen = 0, deadline, reached_at = -1;

    if (per_partition != NULL)
        memset(per_partition, 0, (size_t)n_partitions * sizeof *per_partition);
    tk_conf_set(conf, "bootstrap.servers", bootstraps);
    tk_conf_set(conf, "client.id", "tk-consumer");
    tk_conf_set(conf, "group.id", group);
    tk_conf_set(conf, "auto.offset.reset", "earliest");
    tk_conf_set(conf, "enable.auto.commit", "false");
    tk_conf_set(conf, "isolation.level", "read_committed");
    tk_conf_set(conf, "queued.min.messages", "100000");
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        tk_fail("rd_kafka_new (consumer of %s): %s", topic, errstr);
    }
    rd_kafka_poll_set_consumer(rk);
    subs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(subs, topic, RD_KAFKA_PARTITION_UA);
    err = rd_kafka_subscribe(rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (err)
        tk_fail("subscribe to %s: %s", topic, rd_kafka_err2str(err));

    deadline = tk_now_ms() + timeout_ms;
    for (;;) {
        int64_t now = tk_now_ms();
        rd_kafka_message_t *msg;

        if (reached_at < 0 && seen >= expected)
            reached_at = now;
        if (reached_at >= 0 && now - reached_at >= 500)
            break;
        if (reached_at < 0 && now >= deadline)
            break;
        msg = rd_kafka_consumer_poll(rk, 100);
        if (msg == NULL)
            continue;
        if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            seen++;
            if (per_partition != NULL) {
                if (msg->partition < 0 || msg->partition >= n_partitions)
                    tk_fail("message from partition %" PRId32 " of %s, "
                            "expected fewer than %" PRId32, msg->partition,
                            topic, n_partitions);
                per_partition[msg->partition]++;
            }
        } else if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            /* Transient ones (topic metadata not there yet) heal; a real
             * problem shows as a short count at the deadline. */
            tk_note("consumer of %s: %s", topic, rd_kafka_message_errstr(msg));
        }
        rd_kafka_message_destroy(msg);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return seen;
}

/* ------------------------------------------------------------------ */
/* Processes                                                           */
/* ------------------------------------------------------------------ */

/* Write a string from the forked child, where stdio is off limits. */
static void tk_child_say(const char *a, const char *b, const char *c)
{
    const char *parts[3] = {a, b, c};
    size_t i;

    for (i = 0; i < 3; i++)
        if (write(STDERR_FILENO, parts[i], strlen(parts[i])) < 0)
            return;
}

pid_t tk_spawn(char *const argv[], const char *log_path)
{
    pid_t parent = getpid();
    pid_t pid;

    if (argv == NULL || argv[0] == NULL)
        tk_fail("tk_spawn: empty argv");
    fflush(NULL); /* or buffered output is written twice */
    pid = fork();
    if (pid < 0)
        tk_fail("fork: %s", strerror(errno));
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec. */
        static const int reset[] = {SIGPIPE, SIGINT, SIGTERM, SIGQUIT,
                                    SIGCHLD, SIGHUP, SIGUSR1, SIGUSR2};
        sigset_t none;
        size_t i;
        int fd;

        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (i = 0; i < sizeof reset / sizeof reset[0]; i++)
            signal(reset[i], SIG_DFL);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(127);
        fd = open("/dev/null", O_RDONLY);
        if (fd >= 0) {
            dup2(fd, STDIN_FILENO);
            if (fd != STDIN_FILENO)
                close(fd);
        }
        if (log_path != NULL) {
            fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                      0644);
            if (fd < 0) {
                tk_child_say("tk_spawn: cannot open log ", log_path, "\n");
                _exit(127);
            }
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        execvp(argv[0], argv);
        tk_child_say("tk_spawn: cannot execute ", argv[0], "\n");
        _exit(127);
    }
    return pid;
}

int tk_wait(pid_t pid, int timeout_ms)
{
    int64_t deadline = tk_now_ms() + timeout_ms;
    int status, pause_ms = 1;

    for (;;) {
        pid_t r = waitpid(pid, &status, timeout_ms < 0 ? 0 : WNOHANG);

        if (r == pid) {
            if (WIFEXITED(status))
                return WEXITSTATUS(status);
            if (WIFSIGNALED(status))
                return 128 + WTERMSIG(status);
            continue; /* stopped or continued: keep waiting */
        }
        if (r < 0 && errno != EINTR)
            tk_fail("waitpid(%ld): %s", (long)pid, strerror(errno));
        if (timeout_ms >= 0 && tk_now_ms() >= deadline)
            return -1;
        if (r == 0) {
            tk_sleep_ms(pause_ms);
            if (pause_ms < 20)
                pause_ms *= 2;
        }
    }
}

int tk_kill(pid_t pid, int sig)
{
    if (pid <= 0)
        tk_fail("tk_kill: refusing pid %ld", (long)pid);
    if (kill(pid, sig) == 0)
        return 0;
    if (errno == ESRCH)
        return -1;
    tk_fail("kill(%ld, %d): %s", (long)pid, sig, strerror(errno));
}

int tk_terminate(pid_t pid, int timeout_ms)
{
    int st;

    tk_kill(pid, SIGTERM);
    st = tk_wait(pid, timeout_ms);
    if (st != -1)
        return st;
    tk_note("pid %ld ignored SIGTERM for %d ms: SIGKILL", (long)pid,
            timeout_ms);
    tk_kill(pid, SIGKILL);
    return tk_wait(pid, 10000);
}

/* ------------------------------------------------------------------ */
/* Files                                                               */
/* ------------------------------------------------------------------ */

void tk_write_file(const char *path, const char *fmt, ...)
{
    va_list ap;
    char *text;
    FILE *f;
    size_t len;

    va_start(ap, fmt);
    text = tk_vformat(fmt, ap);
    va_end(ap);
    f = fopen(path, "w");
    if (f == NULL)
        tk_fail("cannot create %s: %s", path, strerror(errno));
    len = strlen(text);
    if (fwrite(text, 1, len, f) != len || fclose(f) != 0)
        tk_fail("cannot write %s: %s", path, strerror(errno));
    free(text);
}

char *tk_read_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t len = 0, cap = 4096;
    char *buf = NULL, *grown;
    ssize_t r;

    if (fd < 0)
        return NULL;
    buf = malloc(cap);
    if (buf == NULL)
        goto oom;
    for (;;) {
        if (cap - len < 2048) {
            cap *= 2;
            grown = realloc(buf, cap);
            if (grown == NULL)
                goto oom;
            buf = grown;
        }
        r = read(fd, buf + len, cap - len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            tk_fail("reading %s: %s", path, strerror(errno));
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    return buf;
oom:
    tk_fail("out of memory reading %s", path);
}

int tk_file_contains(const char *path, const char *needle)
{
    char *text = tk_read_file(path);
    int found;

    if (text == NULL)
        return 0;
    found = strstr(text, needle) != NULL;
    free(text);
    return found;
}

char *tk_tmpdir(const char *prefix, char *out, size_t out_size)
{
    if ((size_t)snprintf(out, out_size, "/tmp/%s-XXXXXX",
                         prefix ? prefix : "tk") >= out_size)
        tk_fail("tk_tmpdir: buffer of %zu bytes too small", out_size);
    if (mkdtemp(out) == NULL)
        tk_fail("mkdtemp(%s): %s", out, strerror(errno));
    if (chmod(out, 0755) != 0)
        tk_fail("chmod(%s): %s", out, strerror(errno));
    return out;
}

static int tk_rm_one(const char *path, const struct stat *st, int type,
                     struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    if (remove(path) != 0 && errno != ENOENT)
        tk_note("cannot remove %s: %s", path, strerror(errno));
    return 0;
}

void tk_rm_rf(const char *path)
{
    struct stat st;

    if (lstat(path, &st) != 0)
        return;
    nftw(path, tk_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ------------------------------------------------------------------ */
/* Time                                                                */
/* ------------------------------------------------------------------ */

int64_t tk_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tk_sleep_ms(int ms)
{
    struct timespec req, rem;

    if (ms <= 0)
        return;
    req.tv_sec = ms / 1000;
    req.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&req, &rem) != 0 && errno == EINTR)
        req = rem;
}

int64_t tk_high_watermark(const char *bootstraps, const char *topic,
                          int32_t partition)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[512];
    int64_t lo = -1, hi = -1;
    rd_kafka_resp_err_t err;
    rd_kafka_t *rk;

    TK_CHECK(rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, errstr,
                               sizeof errstr) == RD_KAFKA_CONF_OK,
             "%s", errstr);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    TK_CHECK(rk != NULL, "rd_kafka_new: %s", errstr);
    err = rd_kafka_query_watermark_offsets(rk, topic, partition, &lo, &hi,
                                           10000);
    TK_CHECK(err == RD_KAFKA_RESP_ERR_NO_ERROR, "watermarks of %s [%d]: %s",
             topic, (int)partition, rd_kafka_err2str(err));
    rd_kafka_destroy(rk);
    return hi;
}
