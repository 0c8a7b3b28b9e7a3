/*
 * testkit: the harness every exactly test is written with.
 *
 * A test is one process. It checks with TK_CHECK*, which on failure print
 * "FAIL: file:line: message" to stderr and exit(1); tk_skip() prints
 * "SKIP: reason" and exits 77, which CTest reports as skipped
 * (SKIP_RETURN_CODE 77). No function here returns an error code for a
 * failure of the harness itself: a database that refuses a statement or a
 * message that is not delivered fails the test on the spot, naming the
 * caller's file and line where the function is a macro.
 *
 * Services (see DESIGN.md section 7):
 *   - PostgreSQL: the cluster that scripts/pg.sh started for CTest's `pg`
 *     fixture; its directory is EXACTLY_TEST_PG_DIR. Each test creates its
 *     own database with tk_pg_create_db().
 *   - Kafka: librdkafka's mock cluster, started in the test process with
 *     tk_mock_start() and reached over TCP on loopback, so child processes
 *     (the exactly binary) reach it too.
 *
 * Strings returned as `const char *` are owned by testkit and live until
 * the owning object is stopped (or, for process-wide values, until exit).
 * Everything else the caller frees as documented.
 */
#ifndef EXACTLY_TESTKIT_H
#define EXACTLY_TESTKIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#if defined(__GNUC__)
#define TK_PRINTF(fmt_idx, args_idx) \
    __attribute__((format(printf, fmt_idx, args_idx)))
#else
#define TK_PRINTF(fmt_idx, args_idx)
#endif
#define TK_NORETURN _Noreturn

/* Exit code that CTest maps to "skipped" (SKIP_RETURN_CODE). */
#define TK_EXIT_SKIP 77

/* ------------------------------------------------------------------ */
/* Checks and outcomes                                                 */
/* ------------------------------------------------------------------ */

/* Print "FAIL: file:line: <message>" to stderr and exit(1). Use the
 * tk_fail() macro, which fills in the caller's location. */
TK_NORETURN void tk_fail_at(const char *file, int line, const char *fmt, ...)
    TK_PRINTF(3, 4);
#define tk_fail(...) tk_fail_at(__FILE__, __LINE__, __VA_ARGS__)

/* Print "SKIP: <reason>" to stderr and exit(TK_EXIT_SKIP). */
TK_NORETURN void tk_skip(const char *reason);

/* Print "# <message>" to stderr: progress notes that keep a failing test's
 * output readable under `ctest --output-on-failure`. */
void tk_note(const char *fmt, ...) TK_PRINTF(1, 2);

/* Fail the test with the printf-style message unless cond holds. */
#define TK_CHECK(cond, ...)                                   \
    do {                                                      \
        if (!(cond))                                          \
            tk_fail_at(__FILE__, __LINE__, __VA_ARGS__);      \
    } while (0)

/* Fail unless actual == expected; `what` names the quantity. Both sides are
 * evaluated once. */
#define TK_CHECK_EQ_INT64(actual, expected, what)                           \
    do {                                                                    \
        int64_t tk_a_ = (int64_t)(actual), tk_e_ = (int64_t)(expected);     \
        if (tk_a_ != tk_e_)                                                 \
            tk_fail_at(__FILE__, __LINE__, "%s: expected %lld, got %lld",  \
                       (what), (long long)tk_e_, (long long)tk_a_);         \
    } while (0)

/* Fail unless the two strings are equal (NULL equals only NULL). */
#define TK_CHECK_EQ_STR(actual, expected, what)                             \
    do {                                                                    \
        const char *tk_a_ = (actual), *tk_e_ = (expected);                  \
        if (!tk_str_eq(tk_a_, tk_e_))                                       \
            tk_fail_at(__FILE__, __LINE__, "%s: expected \"%s\", got \"%s\"", \
                       (what), tk_e_ ? tk_e_ : "(null)",                    \
                       tk_a_ ? tk_a_ : "(null)");                           \
    } while (0)

/* 1 if both are NULL or both are equal strings, else 0. */
int tk_str_eq(const char *a, const char *b);

/* The value of environment variable `name`; fails the test when it is unset
 * or empty. */
const char *tk_env_required(const char *name);

/* ------------------------------------------------------------------ */
/* PostgreSQL                                                          */
/* ------------------------------------------------------------------ */

/* The superuser conninfo of the test cluster: the environment variable
 * EXACTLY_TEST_PG_CONNINFO if set (to run against a server of your own),
 * else the contents of $EXACTLY_TEST_PG_DIR/conninfo written by
 * `scripts/pg.sh start`. Fails the test if neither is available. The string
 * is cached and lives until exit. */
const char *tk_pg_admin_conninfo(void);

/* Create a fresh database named <prefix>_<pid>_<counter> (prefix lower-cased,
 * characters other than [a-z0-9_] replaced by '_', cut to fit) and write
 * its conninfo (the admin conninfo with dbname replaced) into
 * conninfo_out. Fails the test on error or if conninfo_out is too small
 * (1024 bytes is plenty). Returns conninfo_out. */
char *tk_pg_create_db(const char *name_prefix, char *conninfo_out,
                      size_t conninfo_size);

/* Drop the database a conninfo from tk_pg_create_db() names (WITH FORCE, so
 * leftover connections do not block it). Optional: the cluster is thrown
 * away after the run anyway. */
void tk_pg_drop_db(const char *conninfo);

/* Connect, or fail the test naming the caller. The caller PQfinish()es. */
PGconn *tk_pg_connect_at(const char *file, int line, const char *conninfo);
#define tk_pg_connect(conninfo) tk_pg_connect_at(__FILE__, __LINE__, (conninfo))

/* Run a printf-formatted SQL string (one or more statements, simple query
 * protocol) and fail the test, naming the caller and the statement, unless
 * it succeeds. Never format untrusted text into SQL: tests only. */
void tk_sql_at(const char *file, int line, PGconn *conn, const char *fmt, ...)
    TK_PRINTF(4, 5);
#define tk_sql(conn, ...) tk_sql_at(__FILE__, __LINE__, (conn), __VA_ARGS__)

/* Run a query that must return exactly one row of one non-NULL column
 * holding an integer, and return it. Anything else fails the test. */
int64_t tk_sql_int64_at(const char *file, int line, PGconn *conn,
                        const char *fmt, ...) TK_PRINTF(4, 5);
#define tk_sql_int64(conn, ...) \
    tk_sql_int64_at(__FILE__, __LINE__, (conn), __VA_ARGS__)

/* Run a query that must return exactly one row of one column and return
 * the value as a malloc'd string (NULL for SQL NULL). The caller frees. */
char *tk_sql_text_at(const char *file, int line, PGconn *conn,
                     const char *fmt, ...) TK_PRINTF(4, 5);
#define tk_sql_text(conn, ...) \
    tk_sql_text_at(__FILE__, __LINE__, (conn), __VA_ARGS__)

/* ------------------------------------------------------------------ */
/* Kafka: the in-process mock cluster                                  */
/* ------------------------------------------------------------------ */

/* A running mock cluster. `bootstraps` ("127.0.0.1:port,...") is the
 * bootstrap.servers string; the other members are testkit's. */
typedef struct tk_mock {
    const char *bootstraps;          /* read-only, lives until tk_mock_stop */
    rd_kafka_t *rk;                  /* private: the handle hosting the mock */
    rd_kafka_mock_cluster_t *cluster; /* private: use tk_mock_cluster() */
} tk_mock;

/* Start a mock cluster of `brokers` brokers (>= 1) listening on loopback.
 * Fails the test on error. Stop it with tk_mock_stop(). */
tk_mock *tk_mock_start(int brokers);

/* Create `topic` with `partitions` partitions, replication factor 1. */
void tk_mock_create_topic(tk_mock *m, const char *topic, int partitions);

/* The bootstrap.servers string of m. */
const char *tk_mock_bootstraps(const tk_mock *m);

/* The mock cluster, for error injection (rd_kafka_mock_push_request_errors,
 * rd_kafka_mock_broker_set_down, ...). Borrowed: valid until tk_mock_stop. */
rd_kafka_mock_cluster_t *tk_mock_cluster(const tk_mock *m);

/* Stop the cluster and free m. Accepts NULL. */
void tk_mock_stop(tk_mock *m);

/* ------------------------------------------------------------------ */
/* Kafka: producing and consuming                                      */
/* ------------------------------------------------------------------ */

#define TK_MSG_MAX_HEADERS 4

/* One message header; value NULL means a null header value. */
typedef struct tk_header {
    const char *name;
    const void *value;
    size_t value_len;
} tk_header;

/* One message to produce. Key or value NULL means a null key/value. */
typedef struct tk_msg {
    int32_t partition;        /* -1: chosen by key hash (murmur2, as Java) */
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
    size_t n_headers;         /* <= TK_MSG_MAX_HEADERS */
    tk_header headers[TK_MSG_MAX_HEADERS];
} tk_msg;

/* Produce n messages to topic with an idempotent producer (acks=all,
 * linger.ms=5) and wait for every delivery report. Fails the test on any
 * delivery error or if not all are delivered within 60 s. Key, value and
 * header bytes are copied; the caller keeps ownership of msgs. */
void tk_produce(const char *bootstraps, const char *topic,
                const tk_msg *msgs, size_t n);

/* Produce n_messages zero-payload messages (empty value) whose key is a
 * decimal entity id in 1..n_entities drawn pseudo-randomly (deterministic
 * for a given seed); message i goes to partition i % n_partitions. If
 * counts_out is not NULL it must hold n_entities elements:
 * counts_out[id - 1] receives how many messages named entity id. Returns
 * how many distinct entities were named. Fails the test on any error. */
size_t tk_produce_ids(const char *bootstraps, const char *topic,
                      size_t n_messages, size_t n_entities,
                      int32_t n_partitions, uint64_t seed,
                      int64_t *counts_out);

/* The entity id tk_produce_ids() uses for its i-th message with that seed
 * and n_entities; lets a test predict what was produced. */
int64_t tk_id_for(uint64_t seed, size_t i, size_t n_entities);

/* The high watermark of topic/partition as the broker reports it; fails
 * the test when it cannot be read. */
int64_t tk_high_watermark(const char *bootstraps, const char *topic,
                          int32_t partition);

/* Consume topic from the beginning in consumer group `group`
 * (auto.offset.reset=earliest, isolation.level=read_committed) until
 * `expected` messages arrived or timeout_ms passed; then wait a further
 * 500 ms for surplus messages. Returns how many were seen. If
 * per_partition is not NULL it must hold n_partitions elements and
 * receives per-partition counts (messages of higher partitions fail the
 * test). A consumer group join on the mock takes about 3 s. */
int64_t tk_consume_count(const char *bootstraps, const char *topic,
                         const char *group, int64_t expected, int timeout_ms,
                         int64_t *per_partition, int32_t n_partitions);

/* ------------------------------------------------------------------ */
/* Processes, files, time                                              */
/* ------------------------------------------------------------------ */

/* fork + execvp(argv[0], argv) with the environment inherited, stdin from
 * /dev/null, stdout and stderr appended to log_path (NULL: inherited).
 * The child gets SIGKILL if the test process dies, so a failing test
 * leaves nothing running. Call from the main thread. Fails the test if
 * fork fails; if exec fails the child writes why to the log and exits 127.
 * Returns the child's pid. */
pid_t tk_spawn(char *const argv[], const char *log_path);

/* Wait up to timeout_ms (< 0: forever) for pid to end and reap it. Returns
 * its exit status, 128 + N if signal N killed it (as the shell says), or -1
 * on timeout (the child is left running). */
int tk_wait(pid_t pid, int timeout_ms);

/* Send sig to pid. Returns 0, or -1 if the process is gone (ESRCH); other
 * errors fail the test. */
int tk_kill(pid_t pid, int sig);

/* Stop a child politely: SIGTERM, wait up to timeout_ms, then SIGKILL.
 * Returns what tk_wait() returned for the final wait. */
int tk_terminate(pid_t pid, int timeout_ms);

/* Write a printf-formatted string to path (created or truncated). */
void tk_write_file(const char *path, const char *fmt, ...) TK_PRINTF(2, 3);

/* The whole file as a NUL-terminated malloc'd string, or NULL if it cannot
 * be opened. The caller frees. */
char *tk_read_file(const char *path);

/* 1 if the file exists and contains needle, else 0. */
int tk_file_contains(const char *path, const char *needle);

/* Create /tmp/<prefix>-XXXXXX (mode 0755) and write its path into out.
 * Fails the test on error. Returns out. */
char *tk_tmpdir(const char *prefix, char *out, size_t out_size);

/* Remove path and, for a directory, everything under it. Missing is fine. */
void tk_rm_rf(const char *path);

/* Monotonic clock in milliseconds. */
int64_t tk_now_ms(void);

/* Sleep ms milliseconds (resumes after signals). */
void tk_sleep_ms(int ms);

/* ------------------------------------------------------------------ */
/* HTTP (http.c)                                                       */
/* ------------------------------------------------------------------ */

/* A loopback TCP port nobody listens on right now. */
int tk_free_port(void);

/* GET path from 127.0.0.1:port (HTTP/1.0). Returns the status code and sets
 * *body (malloc'd, the caller frees), or -1 when nothing answers. */
int tk_http_get(int port, const char *path, char **body);

/* Sum of every sample of Prometheus metric `name` whose line contains
 * `match` (e.g. `partition="2"`; NULL: all), or -1 when there is none. */
double tk_metric_sum(const char *text, const char *name, const char *match);

#endif /* EXACTLY_TESTKIT_H */
