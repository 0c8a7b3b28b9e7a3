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
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

/* Rewrites the scenario's config with other settings. */
static void rewrite(scen *s, const char *conninfo, const char *bootstraps,
                    const char *const *kafka, int lock_timeout_ms)
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
    ledger_write_config(s->config, &c);
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
    rewrite(&s, NULL, NULL, kafka, 1000);
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

/* A loopback port nobody listens on right now. */
static int closed_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    TK_CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
                 getsockname(fd, (struct sockaddr *)&sa, &len) == 0,
             "cannot find a free port");
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static void scenario_idlekafka(void)
{
    char bootstraps[64];
    int64_t t;
    pid_t w;
    int st;
    scen s;

    setup(&s, "ws_idlekafka");
    snprintf(bootstraps, sizeof bootstraps, "127.0.0.1:%d", closed_port());
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
    if (wanted("loopclaim"))
        scenario_loopclaim();
    tk_mock_stop(g_mock);
    ledger_cleanup_dir(g_dir);
    printf("test_worker_start: ok\n");
    return 0;
}
