/*
 * A worker's start-up and its waits: what it does while PostgreSQL or Kafka
 * cannot serve it, and how it answers SIGTERM meanwhile.
 *
 *   dbfirst    a worker whose PostgreSQL role does not exist yet must not
 *              join the consumer group: a consumer of the test's, alone in
 *              the group, keeps all partitions while the worker retries its
 *              connection; once the role exists the worker connects, joins
 *              and applies every message (--exit-idle, exit 0).
 *   termclaim  a worker that cannot claim its partitions (the offsets table
 *              is locked; lock_timeout 1 s) exits 0 within 15 s of SIGTERM,
 *              not at the end of its claim deadline.
 *   loopclaim  under `exactly run`, a worker that can never claim gives up
 *              after max.poll.interval.ms (8 s here) and counts as a failed
 *              start: the supervisor reports a crash loop and exits 1.
 *   idlekafka  `exactly worker --exit-idle` exits (1, saying Kafka is
 *              unreachable) when no broker answers, instead of waiting for
 *              ever.
 *   reseterror auto.offset.reset: error and a partition with no stored
 *              offset (the others have rows): under `exactly run
 *              --metrics` that partition halts with an error naming
 *              `exactly offsets reset`, shows as exactly_partition_halted
 *              1, and the worker applies every message of the others and
 *              keeps running; after `exactly offsets reset --to-earliest
 *              --force` the halted partition resumes without a restart
 *              (halted 0, every message applied once).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ledger_check.h"
#include "testkit.h"

#define N_PARTITIONS 4

static tk_mock *g_mock;
static char g_dir[256];

static const char *const g_kafka[] = {"session.timeout.ms", "6000",
                                      "heartbeat.interval.ms", "500", NULL};

/* A topic, a database and a config of its own. */
typedef struct scen {
    const char *name;
    char conninfo[1024];
    char config[512];
    char log[512];
    PGconn *db;
} scen;

static void setup(scen *s, const char *name)
{
    char log[512];
    ledger_config c;

    memset(s, 0, sizeof *s);
    s->name = name;
    tk_mock_create_topic(g_mock, name, N_PARTITIONS);
    tk_pg_create_db(name, s->conninfo, sizeof s->conninfo);
    ledger_setup_db(s->conninfo);
    snprintf(s->config, sizeof s->config, "%s/%s.yaml", g_dir, name);
    snprintf(s->log, sizeof s->log, "%s/%s.log", g_dir, name);
    memset(&c, 0, sizeof c);
    c.bootstraps = tk_mock_bootstraps(g_mock);
    c.conninfo = s->conninfo;
    c.topic = name;
    c.group = name;
    c.max_messages = 100;
    c.max_wait_ms = 20;
    c.kafka = g_kafka;
    ledger_write_config(s->config, &c);
    snprintf(log, sizeof log, "%s/%s-migrate.log", g_dir, name);
    ledger_migrate(s->config, log);
    s->db = tk_pg_connect(s->conninfo);
}

/* Rewrites the scenario's config with other settings; max_crashes 0: the
 * default. */
static void rewrite_crashes(scen *s, const char *conninfo,
                            const char *bootstraps, const char *const *kafka,
                            int lock_timeout_ms, int max_crashes)
{
    ledger_config c;

    memset(&c, 0, sizeof c);
    c.bootstraps = bootstraps ? bootstraps : tk_mock_bootstraps(g_mock);
    c.conninfo = conninfo ? conninfo : s->conninfo;
    c.topic = s->name;
    c.group = s->name;
    c.max_messages = 100;
    c.max_wait_ms = 20;
    c.lock_timeout_ms = lock_timeout_ms;
    c.kafka = kafka ? kafka : g_kafka;
    c.max_crashes = max_crashes;
    ledger_write_config(s->config, &c);
}

/* rewrite_crashes() with the default max_crashes. */
static void rewrite(scen *s, const char *conninfo, const char *bootstraps,
                    const char *const *kafka, int lock_timeout_ms)
{
    rewrite_crashes(s, conninfo, bootstraps, kafka, lock_timeout_ms, 0);
}

/* A consumer of the test's in group, with the worker's assignor. */
static rd_kafka_t *group_consumer(const char *group, const char *topic)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *t;
    rd_kafka_t *rk;

    TK_CHECK(rd_kafka_conf_set(conf, "bootstrap.servers",
                               tk_mock_bootstraps(g_mock), err,
                               sizeof err) == RD_KAFKA_CONF_OK &&
                 rd_kafka_conf_set(conf, "group.id", group, err, sizeof err) ==
                     RD_KAFKA_CONF_OK &&
                 rd_kafka_conf_set(conf, "session.timeout.ms", "6000", err,
                                   sizeof err) == RD_KAFKA_CONF_OK &&
                 rd_kafka_conf_set(conf, "heartbeat.interval.ms", "500", err,
                                   sizeof err) == RD_KAFKA_CONF_OK &&
                 rd_kafka_conf_set(conf, "enable.auto.commit", "false", err,
                                   sizeof err) == RD_KAFKA_CONF_OK,
             "consumer config: %s", err);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    TK_CHECK(rk != NULL, "consumer: %s", err);
    rd_kafka_poll_set_consumer(rk);
    t = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(t, topic, RD_KAFKA_PARTITION_UA);
    TK_CHECK(rd_kafka_subscribe(rk, t) == RD_KAFKA_RESP_ERR_NO_ERROR,
             "subscribe");
    rd_kafka_topic_partition_list_destroy(t);
    return rk;
}

/* Polls rk for ms milliseconds; returns the fewest partitions it held at
 * any moment of that time (its assignment, checked after every poll). */
static int poll_min_assigned(rd_kafka_t *rk, int ms)
{
    int64_t end = tk_now_ms() + ms;
    int min = 1 << 30;

    while (tk_now_ms() < end) {
        rd_kafka_topic_partition_list_t *a = NULL;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 50);
        if (m)
            rd_kafka_message_destroy(m);
        if (rd_kafka_assignment(rk, &a) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (a->cnt < min)
                min = a->cnt;
            rd_kafka_topic_partition_list_destroy(a);
        }
    }
    return min;
}

static void produce(const char *topic, size_t n, uint64_t seed,
                    int64_t *counts)
{
    tk_produce_ids(tk_mock_bootstraps(g_mock), topic, n, LEDGER_ACCOUNTS,
                   N_PARTITIONS, seed, counts);
}

/* ------------------------------------------------------------------ */

static void scenario_dbfirst(void)
{
    int64_t counts[LEDGER_ACCOUNTS];
    char conninfo[1200], role[64];
    int64_t deadline;
    rd_kafka_t *rk;
    pid_t w;
    int min, st;
    scen s;

    setup(&s, "ws_dbfirst");
    produce(s.name, 2000, 5101, counts);
    snprintf(role, sizeof role, "late_%d", (int)getpid());
    snprintf(conninfo, sizeof conninfo, "%s user=%s", s.conninfo, role);
    rewrite(&s, conninfo, NULL, NULL, 0);

    /* The test's consumer holds every partition first. */
    rk = group_consumer(s.name, s.name);
    deadline = tk_now_ms() + 30000;
    while (poll_min_assigned(rk, 200) < N_PARTITIONS)
        TK_CHECK(tk_now_ms() < deadline, "the test's consumer got no full "
                 "assignment in 30 s");

    w = ledger_start_worker(s.config, 3000, s.log);
    LEDGER_CHECK_LOG(ledger_wait_log(s.log, "connect failed", 3, w, 60000,
                                     &st),
                     s.log, "the worker did not retry its connection 3 "
                     "times (exit %d)", st);
    /* A join round on the mock takes ~3 s; give it 10. */
    min = poll_min_assigned(rk, 10000);
    LEDGER_CHECK_LOG(min == N_PARTITIONS, s.log,
                     "while the worker could not reach PostgreSQL a rebalance "
                     "left the test's consumer only %d of %d partitions: the worker "
                     "joined the group without being able to serve it",
                     min, N_PARTITIONS);
    TK_CHECK(tk_wait(w, 0) == -1, "the worker exited while waiting for "
             "PostgreSQL");
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    tk_note("[dbfirst] the worker stayed out of the group while its "
            "database refused it");

    /* The role appears: the worker connects, joins and applies all. */
    tk_sql(s.db, "CREATE ROLE %s LOGIN SUPERUSER", role);
    st = tk_wait(w, 120000);
    if (st == -1)
        (void)tk_terminate(w, 30000);
    LEDGER_CHECK_LOG(st == 0, s.log, "the worker exited %d after its role "
                     "appeared, expected 0 (--exit-idle)", st);
    ledger_check_exactly_once(s.db, tk_mock_bootstraps(g_mock), s.name,
                              N_PARTITIONS, 2000, counts, LEDGER_ACCOUNTS);
    tk_note("[dbfirst] then connected, joined and applied every message");
    PQfinish(s.db);
}

/* Holds an ACCESS EXCLUSIVE lock on the offsets table until PQfinish. */
static PGconn *lock_offsets(const scen *s)
{
    PGconn *c = tk_pg_connect(s->conninfo);

    tk_sql(c, "BEGIN; LOCK TABLE exactly.offsets IN ACCESS EXCLUSIVE MODE");
    return c;
}

static void scenario_termclaim(void)
{
    int64_t t, ms;
    PGconn *locker;
    pid_t w;
    int st;
    scen s;

    setup(&s, "ws_termclaim");
    produce(s.name, 200, 5201, NULL);
    rewrite(&s, NULL, NULL, NULL, 1000);
    locker = lock_offsets(&s);
    w = ledger_start_worker(s.config, 0, s.log);
    LEDGER_CHECK_LOG(ledger_wait_log(s.log, "claim failed", 2, w, 60000, &st),
                     s.log, "no two \"claim failed\" lines (exit %d)", st);
    t = tk_now_ms();
    TK_CHECK_EQ_INT64(tk_kill(w, SIGTERM), 0, "SIGTERM of the worker");
    st = tk_wait(w, 15000);
    ms = tk_now_ms() - t;
    if (st == -1)
        (void)tk_kill(w, SIGKILL), (void)tk_wait(w, 10000);
    PQfinish(locker);
    LEDGER_CHECK_LOG(st == 0, s.log, "a worker retrying its claim exited %d "
                     "after SIGTERM (-1: still running after 15 s), "
                     "expected 0 at once", st);
    tk_note("[termclaim] SIGTERM during claim retries: exit 0 after %" PRId64
            " ms", ms);
    PQfinish(s.db);
}

static void scenario_loopclaim(void)
{
    static const char *const kafka[] = {
        "session.timeout.ms", "6000", "heartbeat.interval.ms", "500",
        "max.poll.interval.ms", "8000", NULL};
    char lockdir[512], out[512];
    int64_t t0 = tk_now_ms();
    PGconn *locker;
    pid_t run;
    int st;
    scen s;

    setup(&s, "ws_loopclaim");
    produce(s.name, 200, 5301, NULL);
    /* max_crashes 1: the crash guard never counts a worker that never
     * claims, and the supervisor's crash loop takes its fewest (5). */
    rewrite_crashes(&s, NULL, NULL, kafka, 1000, 1);
    snprintf(lockdir, sizeof lockdir, "%s/locks-loopclaim", g_dir);
    TK_CHECK(mkdir(lockdir, 0700) == 0, "mkdir %s", lockdir);
    snprintf(out, sizeof out, "%s/ws_loopclaim.out", g_dir);
    locker = lock_offsets(&s);
    {
        char *argv[] = {(char *)ledger_exactly_bin(), "run", "-c", s.config,
                        "--lock-dir", lockdir, "--log-file", s.log, NULL};
        run = tk_spawn(argv, out);
    }
    st = tk_wait(run, 150000);
    if (st == -1)
        (void)tk_terminate(run, 30000);
    PQfinish(locker);
    LEDGER_CHECK_LOG(st == 1, s.log, "exactly run whose worker can never "
                     "claim exited %d after %" PRId64 " ms (-1: still "
                     "running at 150 s), expected 1 (crash loop)", st,
                     tk_now_ms() - t0);
    LEDGER_CHECK_LOG(ledger_log_count(s.log, "crash loop") >= 1, s.log,
                     "no crash loop reported");
    TK_CHECK_EQ_INT64(ledger_rows(s.db), 0, "ledger rows");
    tk_note("[loopclaim] a worker that cannot claim counted toward the crash "
            "loop: exit 1 after %.1f s",
            (double)(tk_now_ms() - t0) / 1000.0);
    PQfinish(s.db);
}

static void scenario_idlekafka(void)
{
    char bootstraps[64];
    int64_t t;
    pid_t w;
    int st;
    scen s;

    setup(&s, "ws_idlekafka");
    snprintf(bootstraps, sizeof bootstraps, "127.0.0.1:%d", tk_free_port());
    rewrite(&s, NULL, bootstraps, NULL, 0);
    t = tk_now_ms();
    w = ledger_start_worker(s.config, 2000, s.log);
    st = tk_wait(w, 30000);
    if (st == -1)
        (void)tk_terminate(w, 30000);
    LEDGER_CHECK_LOG(st == 1, s.log, "exactly worker --exit-idle 2000 with "
                     "no broker exited %d (-1: still running after 30 s), "
                     "expected 1", st);
    LEDGER_CHECK_LOG(ledger_log_count(s.log, "kafka unreachable") >= 1, s.log,
                     "the exit does not say that Kafka was unreachable");
    tk_note("[idlekafka] no broker: exit 1 after %" PRId64 " ms",
            tk_now_ms() - t);
    PQfinish(s.db);
}

/* The value of the one sample of `name` whose labels contain match, or
 * -2 when there is none (-3: more than one). */
static double metric_one(const char *text, const char *name,
                         const char *match)
{
    const char *line = text;
    size_t nl = strlen(name);
    double v = -2;
    int found = 0;

    while (line && *line) {
        const char *end = strchr(line, '\n');
        size_t ll = end ? (size_t)(end - line) : strlen(line);
        char one[1024];
        snprintf(one, sizeof one, "%.*s", (int)ll, line);
        if (ll > nl && strncmp(one, name, nl) == 0 && one[nl] == '{' &&
            strstr(one, match)) {
            const char *space = strrchr(one, ' ');
            v = space ? strtod(space + 1, NULL) : -2;
            found++;
        }
        line = end ? end + 1 : NULL;
    }
    return found > 1 ? -3 : v;
}

/* Rows of the ledger for one partition. */
static int64_t rows_of(PGconn *db, int partition)
{
    return tk_sql_int64(db, "SELECT count(*) FROM ledger WHERE partition = %d",
                        partition);
}

static void scenario_reseterror(void)
{
    static const char *const kafka[] = {
        "session.timeout.ms", "6000", "heartbeat.interval.ms", "500",
        "auto.offset.reset", "error", NULL};
    int64_t counts[LEDGER_ACCOUNTS], hw[N_PARTITIONS], others = 0, deadline;
    char lockdir[512], out[512], addr[64], *body = NULL, *reset_argv[16];
    double halted;
    pid_t run;
    int port, p, st;
    scen s;

    setup(&s, "ws_reseterror");
    rewrite(&s, NULL, NULL, kafka, 0);
    /* Partitions 0..2 have stored offsets; 3 has none. */
    for (p = 0; p < N_PARTITIONS - 1; p++)
        tk_sql(s.db, "INSERT INTO exactly.offsets (pipeline, topic, partition,"
                     " next_offset) VALUES ('%s', '%s', %d, 0)",
               LEDGER_PIPELINE, s.name, p);
    produce(s.name, 2000, 5501, counts);
    ledger_high_watermarks(tk_mock_bootstraps(g_mock), s.name, N_PARTITIONS,
                           hw);
    for (p = 0; p < N_PARTITIONS - 1; p++)
        others += hw[p];

    snprintf(lockdir, sizeof lockdir, "%s/locks-reseterror", g_dir);
    TK_CHECK(mkdir(lockdir, 0700) == 0, "mkdir %s", lockdir);
    snprintf(out, sizeof out, "%s/ws_reseterror.out", g_dir);
    port = tk_free_port();
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    {
        char *argv[] = {(char *)ledger_exactly_bin(), "run", "-c", s.config,
                        "--lock-dir", lockdir, "--log-file", s.log,
                        "--metrics", addr, NULL};
        run = tk_spawn(argv, out);
    }
    /* The other partitions are served. */
    deadline = tk_now_ms() + 60000;
    while (ledger_rows(s.db) < others) {
        LEDGER_CHECK_LOG(tk_now_ms() < deadline && tk_wait(run, 0) == -1,
                         s.log, "the partitions with stored offsets got %"
                         PRId64 " of %" PRId64 " messages applied in 60 s "
                         "(or exactly run exited)", ledger_rows(s.db), others);
        tk_sleep_ms(100);
    }
    LEDGER_CHECK_LOG(ledger_wait_log(s.log, "auto.offset.reset=error", 1, run,
                                     30000, NULL) &&
                         ledger_log_count(s.log, "exactly offsets reset") >= 1,
                     s.log, "no error naming auto.offset.reset=error and "
                     "exactly offsets reset");
    TK_CHECK_EQ_INT64(rows_of(s.db, N_PARTITIONS - 1), 0,
                      "rows of the partition without a stored offset");
    /* The metrics say which partition is halted (published every s). */
    deadline = tk_now_ms() + 30000;
    for (;;) {
        free(body);
        body = NULL;
        halted = tk_http_get(port, "/metrics", &body) == 200
                     ? metric_one(body, "exactly_partition_halted",
                                  "partition=\"3\"")
                     : -2;
        if (halted == 1 || tk_now_ms() > deadline)
            break;
        tk_sleep_ms(200);
    }
    LEDGER_CHECK_LOG(halted == 1, s.log, "exactly_partition_halted of "
                     "partition 3 is %g, expected 1; metrics:\n%s", halted,
                     body ? body : "(none)");
    LEDGER_CHECK_LOG(metric_one(body, "exactly_partition_halted",
                                "partition=\"0\"") == 0,
                     s.log, "partition 0 is reported halted");
    free(body);
    body = NULL;
    TK_CHECK(tk_wait(run, 0) == -1, "exactly run exited with a halted "
             "partition");
    tk_note("[reseterror] partition 3 halted and reported; the other %"
            PRId64 " messages applied", others);

    /* The way out, while the worker runs. */
    {
        char rlog[512];
        int n = 0;
        snprintf(rlog, sizeof rlog, "%s/ws_reseterror-reset.log", g_dir);
        reset_argv[n++] = (char *)ledger_exactly_bin();
        reset_argv[n++] = "offsets";
        reset_argv[n++] = "reset";
        reset_argv[n++] = "-c";
        reset_argv[n++] = s.config;
        reset_argv[n++] = "--pipeline";
        reset_argv[n++] = LEDGER_PIPELINE;
        reset_argv[n++] = "--topic";
        reset_argv[n++] = (char *)s.name;
        reset_argv[n++] = "--partition";
        reset_argv[n++] = "3";
        reset_argv[n++] = "--to-earliest";
        reset_argv[n++] = "--force";
        reset_argv[n] = NULL;
        st = tk_wait(tk_spawn(reset_argv, rlog), 60000);
        LEDGER_CHECK_LOG(st == 0, rlog, "exactly offsets reset exited %d", st);
    }
    deadline = tk_now_ms() + 60000;
    while (ledger_rows(s.db) < 2000) {
        LEDGER_CHECK_LOG(tk_now_ms() < deadline && tk_wait(run, 0) == -1,
                         s.log, "after the reset %" PRId64 " of 2000 messages "
                         "applied in 60 s (or exactly run exited)",
                         ledger_rows(s.db));
        tk_sleep_ms(100);
    }
    deadline = tk_now_ms() + 30000;
    do {
        free(body);
        body = NULL;
        tk_sleep_ms(200);
        halted = tk_http_get(port, "/metrics", &body) == 200
                     ? metric_one(body, "exactly_partition_halted",
                                  "partition=\"3\"")
                     : -2;
    } while (halted != 0 && tk_now_ms() < deadline);
    free(body);
    LEDGER_CHECK_LOG(halted == 0, s.log, "partition 3 still reported halted "
                     "(%g) after it resumed", halted);
    st = tk_terminate(run, 30000);
    LEDGER_CHECK_LOG(st == 0, s.log, "exactly run exited %d after SIGTERM",
                     st);
    ledger_check_exactly_once(s.db, tk_mock_bootstraps(g_mock), s.name,
                              N_PARTITIONS, 2000, counts, LEDGER_ACCOUNTS);
    tk_note("[reseterror] after exactly offsets reset the partition resumed "
            "without a restart");
    PQfinish(s.db);
}

static int wanted(const char *name)
{
    const char *only = getenv("EXACTLY_TEST_ONLY");

    return !only || !*only || strstr(only, name) != NULL;
}

int main(void)
{
    g_mock = tk_mock_start(1);
    tk_tmpdir("exactly-worker-start", g_dir, sizeof g_dir);
    tk_note("logs in %s", g_dir);
    if (wanted("dbfirst"))
        scenario_dbfirst();
    if (wanted("termclaim"))
        scenario_termclaim();
    if (wanted("idlekafka"))
        scenario_idlekafka();
    if (wanted("reseterror"))
        scenario_reseterror();
    if (wanted("loopclaim"))
        scenario_loopclaim();
    tk_mock_stop(g_mock);
    ledger_cleanup_dir(g_dir);
    printf("test_worker_start: ok\n");
    return 0;
}
