/*
 * /metrics with two workers across rebalances: every series is unique,
 * per-partition gauges come from the partition's current owner, and the
 * per-partition counters stay monotonic and add up.
 *
 * `exactly run --metrics` runs the ledger pipeline with workers: 2 on a
 * 4-partition topic. After a first wave is applied, worker A is frozen
 * (SIGSTOP) past its session, so B takes every partition; then A is
 * SIGKILLed and restarted by the supervisor, and the group splits the
 * partitions again. Throughout, the test scrapes /metrics and requires
 * each (metric, label set) to occur once, and runs Debian's `promtool
 * check metrics` on each scrape when it is installed. After a second
 * wave: each partition has one stored-offset series, equal to the offset
 * stored in PostgreSQL, lag 0, and the per-partition counters summed over
 * the workers equal what was produced; no counter ever went down between
 * scrapes.
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

#define TOPIC "metrics_owner"
#define N_PARTITIONS 4
#define WAVE 2000
#define MAX_SERIES 4096

static char g_dir[256];
static int g_promtool = -1; /* unknown */
static int g_scrapes, g_promtool_runs;

/* Previous value of every counter series, to catch one going down. */
static struct {
    char key[512];
    double v;
} g_counters[MAX_SERIES];
static int g_n_counters;

/* promtool check metrics on text, when promtool is installed. */
static void promtool_check(const char *text, const char *log)
{
    char path[512], cmd[1200], out[600];
    int rc;

    if (g_promtool < 0)
        g_promtool = system("command -v promtool >/dev/null 2>&1") == 0;
    if (!g_promtool)
        return;
    snprintf(path, sizeof path, "%s/scrape.txt", g_dir);
    snprintf(out, sizeof out, "%s/promtool.out", g_dir);
    tk_write_file(path, "%s", text);
    snprintf(cmd, sizeof cmd, "promtool check metrics < '%s' > '%s' 2>&1",
             path, out);
    rc = system(cmd);
    g_promtool_runs++;
    if (rc != 0) {
        char *why = tk_read_file(out);
        ledger_log_tail(log, 20);
        tk_fail("promtool check metrics failed (%d) on scrape %d: %s\n%s", rc,
                g_scrapes, why ? why : "", text);
    }
}

/* Every sample line's "name{labels}" is unique; counters (…_total) never
 * go down from one scrape to the next. */
static void check_series(const char *text, const char *log)
{
    static char keys[MAX_SERIES][512];
    char *copy = strdup(text), *line, *save = NULL;
    int n = 0, i;

    TK_CHECK(copy != NULL, "out of memory");
    for (line = strtok_r(copy, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char *space;
        double v;
        if (line[0] == '#' || !line[0])
            continue;
        space = strrchr(line, ' ');
        TK_CHECK(space != NULL, "sample without a value: %s", line);
        *space = '\0';
        v = strtod(space + 1, NULL);
        for (i = 0; i < n; i++)
            LEDGER_CHECK_LOG(strcmp(keys[i], line) != 0, log,
                             "scrape %d: series %s appears twice:\n%s",
                             g_scrapes, line, text);
        TK_CHECK(n < MAX_SERIES && strlen(line) < sizeof keys[0],
                 "too many or too long series");
        snprintf(keys[n++], sizeof keys[0], "%s", line);
        if (strstr(line, "_total{")) {
            for (i = 0; i < g_n_counters; i++)
                if (strcmp(g_counters[i].key, line) == 0)
                    break;
            if (i < g_n_counters) {
                LEDGER_CHECK_LOG(v >= g_counters[i].v, log,
                                 "scrape %d: counter %s went down from %g "
                                 "to %g", g_scrapes, line, g_counters[i].v,
                                 v);
            } else {
                TK_CHECK(g_n_counters < MAX_SERIES, "too many counters");
                snprintf(g_counters[g_n_counters].key,
                         sizeof g_counters[0].key, "%s", line);
                g_n_counters++;
            }
            g_counters[i].v = v;
        }
    }
    free(copy);
}

/* Scrape and check; returns the body (malloc'd). */
static char *scrape_checked(int port, const char *log)
{
    char *body = tk_metrics_scrape(port);

    LEDGER_CHECK_LOG(body != NULL, log, "GET /metrics did not answer 200");
    g_scrapes++;
    check_series(body, log);
    promtool_check(body, log);
    return body;
}

/* Whether the scrape shows every partition at its stored offset with one
 * series each, and the consumed counters adding up to the produced. */
static int settled(const char *body, PGconn *db, int64_t total)
{
    int p, count;

    if ((int64_t)tk_metric_sum_n(body, "exactly_messages_consumed_total",
                                 NULL, &count) != total)
        return 0;
    for (p = 0; p < N_PARTITIONS; p++) {
        char match[64];
        int64_t stored = tk_sql_int64(
            db, "SELECT coalesce((SELECT next_offset FROM exactly.offsets "
                "WHERE topic = '%s' AND partition = %d), -1)", TOPIC, p);
        snprintf(match, sizeof match, "partition=\"%d\"", p);
        if ((int64_t)tk_metric_sum_n(body, "exactly_partition_stored_offset",
                                     match, &count) != stored ||
            count != 1)
            return 0;
    }
    return 1;
}

/* Scrapes (checked) until settled() or timeout; returns the last body. */
static char *wait_settled(int port, PGconn *db, int64_t total, int timeout_ms,
                          const char *log, const char *what)
{
    int64_t deadline = tk_now_ms() + timeout_ms;
    char *body = NULL;

    for (;;) {
        free(body);
        body = scrape_checked(port, log);
        if (settled(body, db, total))
            return body;
        LEDGER_CHECK_LOG(tk_now_ms() < deadline, log,
                         "%s: metrics did not settle in %d ms (consumed "
                         "summed to the %" PRId64 " produced, one stored "
                         "offset per partition equal to the database's); "
                         "last scrape:\n%s", what, timeout_ms, total, body);
        tk_sleep_ms(250);
    }
}

/* The worker_pid of the n-th (from 0) "worker started" line. */
static pid_t started_pid(const char *log, int n, pid_t sup)
{
    char *text, *line, *save = NULL;
    pid_t pid = -1;
    int seen = 0;

    LEDGER_CHECK_LOG(ledger_wait_log(log, "msg=\"worker started\"", n + 1, sup,
                                     60000, NULL),
                     log, "no %d. \"worker started\" line", n + 1);
    text = tk_read_file(log);
    for (line = text ? strtok_r(text, "\n", &save) : NULL; line && pid < 0;
         line = strtok_r(NULL, "\n", &save)) {
        const char *k;
        if (!strstr(line, "msg=\"worker started\"") || seen++ < n)
            continue;
        k = strstr(line, "worker_pid=");
        if (k)
            pid = (pid_t)strtol(k + strlen("worker_pid="), NULL, 10);
    }
    free(text);
    TK_CHECK(pid > 0, "no worker_pid in the %d. start line", n + 1);
    return pid;
}

/* "partition claimed" lines of process pid. */
static int claims_of(const char *log, pid_t pid)
{
    char *text = tk_read_file(log), *line, *save = NULL, tag[32];
    int n = 0;

    snprintf(tag, sizeof tag, " pid=%d ", (int)pid);
    for (line = text ? strtok_r(text, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save))
        if (strstr(line, tag) && strstr(line, "msg=\"partition claimed\""))
            n++;
    free(text);
    return n;
}

/* Scrapes (checked) until pid has claimed `want` partitions in all. */
static void scrape_until_claims(int port, const char *log, pid_t pid,
                                int want, pid_t sup, const char *what)
{
    int64_t deadline = tk_now_ms() + 60000;

    while (claims_of(log, pid) < want) {
        free(scrape_checked(port, log));
        LEDGER_CHECK_LOG(tk_now_ms() < deadline && tk_wait(sup, 0) == -1, log,
                         "%s: worker %d made %d of %d claims in 60 s", what,
                         (int)pid, claims_of(log, pid), want);
        tk_sleep_ms(250);
    }
}

int main(void)
{
    /* Short: A frozen loses its partitions when its session ends, and
     * the restarted A's join waits about the session less 1 s (mock). */
    static const char *const kafka[] = {"session.timeout.ms", "3000",
                                        "heartbeat.interval.ms", "300", NULL};
    int64_t counts[LEDGER_ACCOUNTS] = {0}, wave[LEDGER_ACCOUNTS];
    char conninfo[1024], cfg_path[512], log[512], out[512], addr[64];
    char lockdir[512];
    ledger_config cfg;
    tk_mock *m;
    PGconn *db;
    pid_t run, a, b, a2;
    char *body;
    int port, i, st, b_claims;

    m = tk_mock_start(1);
    tk_mock_create_topic(m, TOPIC, N_PARTITIONS);
    tk_pg_create_db("metrics_owner", conninfo, sizeof conninfo);
    ledger_setup_db(conninfo);
    tk_tmpdir("exactly-metrics-owner", g_dir, sizeof g_dir);
    tk_note("logs in %s", g_dir);
    snprintf(cfg_path, sizeof cfg_path, "%s/run.yaml", g_dir);
    snprintf(log, sizeof log, "%s/run.log", g_dir);
    snprintf(out, sizeof out, "%s/run.out", g_dir);
    snprintf(lockdir, sizeof lockdir, "%s/locks", g_dir);
    TK_CHECK(mkdir(lockdir, 0700) == 0, "mkdir %s", lockdir);
    memset(&cfg, 0, sizeof cfg);
    cfg.bootstraps = m->bootstraps;
    cfg.conninfo = conninfo;
    cfg.topic = TOPIC;
    cfg.max_messages = 100;
    cfg.max_wait_ms = 20;
    cfg.max_crashes = 1000; /* the kill comes from outside */
    cfg.kafka = kafka;
    ledger_write_config(cfg_path, &cfg);
    {
        /* The pipeline's last key: two workers. */
        FILE *f = fopen(cfg_path, "a");
        TK_CHECK(f && fprintf(f, "    workers: 2\n") > 0 && fclose(f) == 0,
                 "cannot append to %s", cfg_path);
    }
    ledger_migrate(cfg_path, log);
    db = tk_pg_connect(conninfo);
    tk_produce_ids(m->bootstraps, TOPIC, WAVE, LEDGER_ACCOUNTS, N_PARTITIONS,
                   7101, counts);

    port = tk_free_port();
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    {
        char *argv[] = {(char *)ledger_exactly_bin(), "run", "-c", cfg_path,
                        "--metrics", addr, "--lock-dir", lockdir,
                        "--log-file", log, NULL};
        run = tk_spawn(argv, out);
    }
    a = started_pid(log, 0, run);
    b = started_pid(log, 1, run);
    {
        int64_t deadline = tk_now_ms() + 90000;
        while (ledger_rows(db) < WAVE) {
            LEDGER_CHECK_LOG(tk_now_ms() < deadline && tk_wait(run, 0) == -1,
                             log, "the first wave was not applied in 90 s");
            tk_sleep_ms(100);
        }
    }
    body = wait_settled(port, db, WAVE, 30000, log, "first wave");
    free(body);
    /* Which worker has which partitions is the group's choice; A is the
     * one to freeze, and it must hold some. */
    if (claims_of(log, a) == 0) {
        pid_t t = a;
        a = b;
        b = t;
    }
    TK_CHECK(claims_of(log, a) > 0 && claims_of(log, b) > 0,
             "the first wave was not split between the two workers");
    tk_note("first wave applied: worker %d and %d share the partitions",
            (int)a, (int)b);

    /* A frozen past its session: B takes every partition. */
    b_claims = claims_of(log, b);
    TK_CHECK_EQ_INT64(tk_kill(a, SIGSTOP), 0, "SIGSTOP of worker A");
    scrape_until_claims(port, log, b, b_claims + N_PARTITIONS, run,
                        "after freezing A");
    tk_note("worker %d frozen; worker %d claimed all %d partitions "
            "(%d scrapes so far)", (int)a, (int)b, N_PARTITIONS, g_scrapes);

    /* A killed and restarted: the group splits the partitions again. */
    TK_CHECK_EQ_INT64(tk_kill(a, SIGKILL), 0, "SIGKILL of worker A");
    a2 = started_pid(log, 2, run);
    scrape_until_claims(port, log, a2, 1, run, "after restarting A");
    tk_note("worker %d restarted as %d and claimed partitions", (int)a,
            (int)a2);

    for (i = 0; i < LEDGER_ACCOUNTS; i++)
        wave[i] = 0;
    tk_produce_ids(m->bootstraps, TOPIC, WAVE, LEDGER_ACCOUNTS, N_PARTITIONS,
                   7102, wave);
    for (i = 0; i < LEDGER_ACCOUNTS; i++)
        counts[i] += wave[i];
    {
        int64_t deadline = tk_now_ms() + 90000;
        while (ledger_rows(db) < 2 * WAVE) {
            free(scrape_checked(port, log));
            LEDGER_CHECK_LOG(tk_now_ms() < deadline && tk_wait(run, 0) == -1,
                             log, "the second wave was not applied in 90 s");
            tk_sleep_ms(250);
        }
    }
    body = wait_settled(port, db, 2 * WAVE, 30000, log, "second wave");
    {
        int count;
        double lag =
            tk_metric_sum_n(body, "exactly_partition_lag", NULL, &count);
        LEDGER_CHECK_LOG(count == N_PARTITIONS && lag == 0, log,
                         "lag: %d series summing to %g, expected %d at 0",
                         count, lag, N_PARTITIONS);
    }
    free(body);
    st = tk_terminate(run, 30000);
    LEDGER_CHECK_LOG(st == 0, log, "exactly run exited %d after SIGTERM", st);
    ledger_check_exactly_once(db, m->bootstraps, TOPIC, N_PARTITIONS,
                              2 * WAVE, counts, LEDGER_ACCOUNTS);
    tk_note("%d scrapes, every series unique, counters monotonic; promtool "
            "%s (%d runs)", g_scrapes,
            g_promtool ? "passed on each" : "not installed: skipped",
            g_promtool_runs);
    PQfinish(db);
    tk_mock_stop(m);
    ledger_cleanup_dir(g_dir);
    printf("test_metrics_owner: ok\n");
    return 0;
}
