/*
 * A supervised worker restarted after SIGKILL: static group membership and
 * the time until its partitions are served again.
 *
 * `exactly run` runs the ledger pipeline with workers: 2
 * (session.timeout.ms 10000). After a first wave, the worker in slot 0 is
 * SIGKILLed and a second wave produced at once; the test measures, from
 * the kill, when the supervisor restarted the slot, when the new process
 * claimed partitions and when the whole second wave was applied, and
 * prints those times. It then requires each worker to have joined with a
 * group.instance.id (logged in its "started" line as read back from its
 * consumer configuration) that differs between the slots and is the same
 * for the restarted process as for the one it replaces, so that a broker
 * hands the restarted member its partitions back without waiting for the
 * dead member's session to expire. `exactly worker` (no slot) stays a
 * dynamic member.
 *
 * librdkafka 2.0.2's mock cluster does not honour group.instance.id: a
 * member rejoining with the id of a dead one still waits for that
 * member's session to expire there (measured: 19 s with a 10 s session,
 * as for a dynamic member), so the recovery time is reported, not
 * bounded: against a real broker (>= 2.3) the same restart rejoins at
 * once.
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
#define WAVE 1000
#define SESSION_MS 10000

static char g_dir[256];

/* The n-th (from 0) line holding a and b, into buf; 0 when none. */
static int nth_line(const char *log, const char *a, const char *b, int n,
                    char *buf, size_t size)
{
    char *text = tk_read_file(log), *line, *save = NULL;
    int seen = 0, found = 0;

    for (line = text ? strtok_r(text, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        if (!strstr(line, a) || (b && !strstr(line, b)))
            continue;
        if (seen++ == n) {
            snprintf(buf, size, "%s", line);
            found = 1;
            break;
        }
    }
    free(text);
    return found;
}

/* The value of key (up to the next space) in line, into out ("" if none). */
static void field(const char *line, const char *key, char *out, size_t size)
{
    const char *k = strstr(line, key);
    size_t n = 0;

    out[0] = '\0';
    if (!k)
        return;
    k += strlen(key);
    while (k[n] && k[n] != ' ' && n + 1 < size)
        n++;
    memcpy(out, k, n);
    out[n] = '\0';
}

/* The worker_pid of the n-th "worker started" line, waiting for it. */
static pid_t started_pid(const char *log, int n, pid_t sup)
{
    char line[2048], v[32];

    LEDGER_CHECK_LOG(ledger_wait_log(log, "msg=\"worker started\"", n + 1, sup,
                                     60000, NULL),
                     log, "no %d. \"worker started\" line", n + 1);
    TK_CHECK(nth_line(log, "msg=\"worker started\"", NULL, n, line,
                      sizeof line), "no %d. start line", n + 1);
    field(line, "worker_pid=", v, sizeof v);
    return (pid_t)atoi(v);
}

/* The slot of worker pid ("worker=N" in its start line). */
static int slot_of(const char *log, pid_t pid)
{
    char line[2048], tag[48], v[16];
    int i;

    snprintf(tag, sizeof tag, "worker_pid=%d", (int)pid);
    for (i = 0; nth_line(log, "msg=\"worker started\"", NULL, i, line,
                         sizeof line); i++)
        if (strstr(line, tag)) {
            field(line, " worker=", v, sizeof v);
            return atoi(v);
        }
    return -1;
}

/* Waits for worker pid's own "started" line and returns its
 * group_instance_id field ("" when the line has none). */
static void instance_of(const char *log, pid_t pid, pid_t sup, char *out,
                        size_t size)
{
    char tag[32], line[2048];
    int64_t deadline = tk_now_ms() + 60000;

    snprintf(tag, sizeof tag, " pid=%d ", (int)pid);
    while (!nth_line(log, tag, "msg=\"started\"", 0, line, sizeof line)) {
        LEDGER_CHECK_LOG(tk_now_ms() < deadline && tk_wait(sup, 0) == -1, log,
                         "worker %d did not start", (int)pid);
        tk_sleep_ms(20);
    }
    field(line, "group_instance_id=", out, size);
}

static int claims_of(const char *log, pid_t pid)
{
    char tag[32], line[2048];
    int n = 0;

    snprintf(tag, sizeof tag, " pid=%d ", (int)pid);
    while (nth_line(log, tag, "msg=\"partition claimed\"", n, line,
                    sizeof line))
        n++;
    return n;
}

int main(void)
{
    static const char *const kafka[] = {"session.timeout.ms", "10000",
                                        "heartbeat.interval.ms", "500", NULL};
    int64_t counts[LEDGER_ACCOUNTS] = {0}, wave[LEDGER_ACCOUNTS];
    int64_t t_kill, t_restart = -1, t_claim = -1, t_applied = -1;
    char conninfo[1024], cfg_path[512], log[512], out[512], lockdir[512];
    char id_a[256], id_b[256], id_a2[256], wlog[512], id_w[256];
    char topic[64];
    ledger_config cfg;
    tk_mock *m;
    const char *bootstraps;
    PGconn *db;
    pid_t run, w0, w1, a, b, a2;
    int i, st;

    m = tk_mock_start(1);
    bootstraps = m->bootstraps;
    snprintf(topic, sizeof topic, "static_member");
    tk_mock_create_topic(m, topic, N_PARTITIONS);
    tk_pg_create_db("static_member", conninfo, sizeof conninfo);
    ledger_setup_db(conninfo);
    tk_tmpdir("exactly-static", g_dir, sizeof g_dir);
    tk_note("logs in %s", g_dir);
    snprintf(cfg_path, sizeof cfg_path, "%s/run.yaml", g_dir);
    snprintf(log, sizeof log, "%s/run.log", g_dir);
    snprintf(out, sizeof out, "%s/run.out", g_dir);
    snprintf(lockdir, sizeof lockdir, "%s/locks", g_dir);
    TK_CHECK(mkdir(lockdir, 0700) == 0, "mkdir %s", lockdir);
    memset(&cfg, 0, sizeof cfg);
    cfg.bootstraps = bootstraps;
    cfg.conninfo = conninfo;
    cfg.topic = topic;
    cfg.group = topic;
    cfg.max_messages = 100;
    cfg.max_wait_ms = 20;
    cfg.max_crashes = 1000; /* the kill comes from outside */
    cfg.kafka = kafka;
    ledger_write_config(cfg_path, &cfg);
    {
        FILE *f = fopen(cfg_path, "a");
        TK_CHECK(f && fprintf(f, "    workers: 2\n") > 0 && fclose(f) == 0,
                 "cannot append to %s", cfg_path);
    }
    ledger_migrate(cfg_path, log);
    db = tk_pg_connect(conninfo);
    tk_produce_ids(bootstraps, topic, WAVE, LEDGER_ACCOUNTS, N_PARTITIONS,
                   8101, counts);
    {
        char *argv[] = {(char *)ledger_exactly_bin(), "run", "-c", cfg_path,
                        "--lock-dir", lockdir, "--log-file", log, NULL};
        run = tk_spawn(argv, out);
    }
    w0 = started_pid(log, 0, run);
    w1 = started_pid(log, 1, run);
    {
        int64_t deadline = tk_now_ms() + 90000;
        while (ledger_rows(db) < WAVE) {
            LEDGER_CHECK_LOG(tk_now_ms() < deadline && tk_wait(run, 0) == -1,
                             log, "the first wave was not applied in 90 s");
            tk_sleep_ms(100);
        }
    }
    /* Kill the worker of slot 0, which must hold partitions. */
    a = slot_of(log, w0) == 0 ? w0 : w1;
    b = a == w0 ? w1 : w0;
    TK_CHECK(claims_of(log, a) > 0 && claims_of(log, b) > 0,
             "the partitions are not split between the two workers");
    instance_of(log, a, run, id_a, sizeof id_a);
    instance_of(log, b, run, id_b, sizeof id_b);

    t_kill = tk_now_ms();
    TK_CHECK_EQ_INT64(tk_kill(a, SIGKILL), 0, "SIGKILL of slot 0's worker");
    for (i = 0; i < LEDGER_ACCOUNTS; i++)
        wave[i] = 0;
    tk_produce_ids(bootstraps, topic, WAVE, LEDGER_ACCOUNTS, N_PARTITIONS,
                   8102, wave);
    for (i = 0; i < LEDGER_ACCOUNTS; i++)
        counts[i] += wave[i];
    a2 = started_pid(log, 2, run);
    t_restart = tk_now_ms() - t_kill;
    {
        int64_t deadline = tk_now_ms() + 120000;
        while (ledger_rows(db) < 2 * WAVE) {
            if (t_claim < 0 && claims_of(log, a2) > 0)
                t_claim = tk_now_ms() - t_kill;
            LEDGER_CHECK_LOG(tk_now_ms() < deadline && tk_wait(run, 0) == -1,
                             log, "the second wave was not applied within "
                             "120 s of the kill");
            tk_sleep_ms(50);
        }
        t_applied = tk_now_ms() - t_kill;
        while (t_claim < 0 && tk_now_ms() < deadline) {
            if (claims_of(log, a2) > 0)
                t_claim = tk_now_ms() - t_kill;
            tk_sleep_ms(50);
        }
    }
    tk_note("recovery after SIGKILL (mock cluster, session.timeout.ms %d): "
            "restarted after %" PRId64 " ms, the new process claimed after %"
            PRId64 " ms, the wave produced at the kill applied after %" PRId64
            " ms", SESSION_MS, t_restart, t_claim, t_applied);

    instance_of(log, a2, run, id_a2, sizeof id_a2);
    st = tk_terminate(run, 30000);
    LEDGER_CHECK_LOG(st == 0, log, "exactly run exited %d after SIGTERM", st);
    LEDGER_CHECK_LOG(id_a[0] && id_b[0] && strcmp(id_a, "none") != 0 &&
                         strcmp(id_b, "none") != 0,
                     log, "supervised workers joined without a "
                     "group.instance.id (slot 0: \"%s\", slot 1: \"%s\")",
                     id_a, id_b);
    LEDGER_CHECK_LOG(strcmp(id_a, id_b) != 0, log, "both slots use "
                     "group.instance.id %s", id_a);
    LEDGER_CHECK_LOG(strcmp(id_a, id_a2) == 0, log, "the restarted worker "
                     "joined as %s, its predecessor as %s", id_a2, id_a);
    tk_note("group.instance.id: slot 0 %s (kept across the restart), slot 1 "
            "%s", id_a, id_b);
    tk_note("the mock cluster does not honour group.instance.id: the "
            "recovery above waited for the dead member's session");

    /* exactly worker has no slot: a dynamic member. */
    snprintf(wlog, sizeof wlog, "%s/worker.log", g_dir);
    st = tk_wait(ledger_start_worker(cfg_path, 2000, wlog), 120000);
    LEDGER_CHECK_LOG(st == 0, wlog, "exactly worker exited %d", st);
    TK_CHECK(nth_line(wlog, "msg=\"started\"", NULL, 0, out, sizeof out),
             "no started line in %s", wlog);
    field(out, "group_instance_id=", id_w, sizeof id_w);
    LEDGER_CHECK_LOG(strcmp(id_w, "none") == 0, wlog, "exactly worker joined "
                     "with group.instance.id \"%s\"", id_w);
    ledger_check_exactly_once(db, bootstraps, topic, N_PARTITIONS, 2 * WAVE,
                              counts, LEDGER_ACCOUNTS);
    PQfinish(db);
    tk_mock_stop(m);
    ledger_cleanup_dir(g_dir);
    printf("test_static_member: ok\n");
    return 0;
}
