/*
 * `exactly run` with one pipeline and one relay in the same file: the
 * supervisor starts the relay beside the workers and keeps it running.
 *
 *   - rows inserted into exactly.outbox are published by the relay child
 *     and applied by the ledger pipeline (dedup on the event-id header),
 *     each once: one ledger row per outbox row, the counters per entity
 *     equal to the outbox's rows per key, nothing dead-lettered;
 *   - /metrics carries the relay's families: published total equal to the
 *     rows, pending 0, oldest pending age 0, dead-lettered 0, up 1,
 *     publishing 1; the scrape passes `promtool check metrics` (when
 *     installed); /status.json lists the relay;
 *   - the relay child is SIGKILLed: the supervisor logs it, starts it
 *     again (restarts_total 1), and the rows of a second wave are
 *     published by the new one, the counters going on from where they were;
 *     while a transaction left open holds that wave back, the relay's
 *     pending gauge shows it and the oldest pending age grows past 1 s;
 *   - SIGTERM stops everything with exit 0, and the run summary has the
 *     relay's total line;
 *   - `exactly run --relay run` runs the relay alone: no worker starts.
 *     While a standalone `exactly relay` holds the outbox (frozen with
 *     SIGSTOP), run's relay waits as a standby: publishing 0, the third
 *     wave pending in its backlog gauge. Once the holder is killed it
 *     takes over and publishes the wave (not consumed: no pipeline runs);
 *     the scrape has the relay's families and no worker sample and passes
 *     promtool;
 *   - the same relay killed 5 times in a row, each soon after its start
 *     (restarted after 0.5, 1, 2 and 4 s): a crash loop, and run gives up
 *     with exit 1.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "relay_kit.h"
#include "testkit.h"

#define TOPIC "relay-run"
#define N_PARTITIONS 2
#define WAVE1 300
#define WAVE2 200
#define WAVE3 50

/* Inserts n rows keyed by account ids, in transactions of 50 rows. */
static void insert_rows(PGconn *db, int n, int seed)
{
    int i;

    for (i = 0; i < n; i += 50)
        tk_sql(db,
               "INSERT INTO exactly.outbox (key) SELECT convert_to(((g * 7919"
               " + %d) %% %d + 1)::text, 'UTF8') FROM generate_series(%d, %d)"
               " AS g ORDER BY g",
               seed, LEDGER_ACCOUNTS, i, (i + 50 < n ? i + 50 : n) - 1);
}

/* The pid of the n-th (from 0) "relay started" line of the log. */
static long relay_pid(const char *log, int n)
{
    char *text = tk_read_file(log), *at;
    long pid = -1;
    int i;

    TK_CHECK(text != NULL, "cannot read %s", log);
    at = text;
    for (i = 0; i <= n && at; i++) {
        at = strstr(at, "msg=\"relay started\"");
        if (at && i < n)
            at++;
    }
    if (at && (at = strstr(at, "relay_pid=")))
        pid = strtol(at + strlen("relay_pid="), NULL, 10);
    free(text);
    return pid;
}

/* Scrapes /metrics until the relay has published want rows and reads its
 * backlog as empty; fails after 20 s. Returns the last scrape (malloc'd). */
static char *wait_relay_metrics(int port, int64_t want, const char *log)
{
    int64_t deadline = tk_now_ms() + 20000;
    char *body = NULL;

    for (;;) {
        free(body);
        body = NULL;
        if (tk_http_get(port, "/metrics", &body) == 200 && body &&
            tk_metric_sum(body, "exactly_relay_rows_published_total",
                          NULL) == (double)want &&
            tk_metric_sum(body, "exactly_relay_pending_rows", NULL) == 0)
            return body;
        LEDGER_CHECK_LOG(tk_now_ms() < deadline, log,
                         "relay metrics never showed %lld published and 0 "
                         "pending; last scrape:\n%s",
                         (long long)want, body ? body : "(none)");
        tk_sleep_ms(100);
    }
}

static void wait_ledger(PGconn *db, int64_t n, pid_t run, const char *log)
{
    int64_t deadline = tk_now_ms() + 30000;

    while (ledger_rows(db) < n) {
        LEDGER_CHECK_LOG(tk_now_ms() < deadline && tk_wait(run, 0) == -1, log,
                         "ledger did not reach %lld rows (has %lld)",
                         (long long)n, (long long)ledger_rows(db));
        tk_sleep_ms(50);
    }
}

/* promtool check metrics on text, when promtool is installed. */
static void promtool_check(const char *dir, const char *text)
{
    char path[512], cmd[1400];

    if (system("command -v promtool >/dev/null 2>&1") != 0) {
        tk_note("promtool not installed: the scrape is not linted here");
        return;
    }
    snprintf(path, sizeof path, "%s/scrape.txt", dir);
    tk_write_file(path, "%s", text);
    snprintf(cmd, sizeof cmd,
             "promtool check metrics < '%s' > '%s.out' 2>&1", path, path);
    if (system(cmd) != 0) {
        char *why;
        snprintf(path, sizeof path, "%s/scrape.txt.out", dir);
        why = tk_read_file(path);
        tk_fail("promtool check metrics rejects the scrape: %s\n%s",
                why ? why : "", text);
    }
}

static void check_relay_scrape(const char *body, int64_t published,
                               int64_t restarts)
{
    TK_CHECK_EQ_INT64((int64_t)tk_metric_sum(body,
                                             "exactly_relay_rows_published_total",
                                             "relay=\"run\""),
                      published, "exactly_relay_rows_published_total");
    TK_CHECK_EQ_INT64((int64_t)tk_metric_sum(body, "exactly_relay_pending_rows",
                                             "relay=\"run\""),
                      0, "exactly_relay_pending_rows");
    TK_CHECK(tk_metric_sum(body, "exactly_relay_oldest_pending_age_seconds",
                           "relay=\"run\"") == 0,
             "exactly_relay_oldest_pending_age_seconds is not 0 with nothing "
             "pending");
    TK_CHECK_EQ_INT64((int64_t)tk_metric_sum(body,
                                             "exactly_relay_rows_dead_lettered_total",
                                             "relay=\"run\""),
                      0, "exactly_relay_rows_dead_lettered_total");
    TK_CHECK_EQ_INT64((int64_t)tk_metric_sum(body, "exactly_relay_up",
                                             "relay=\"run\""),
                      1, "exactly_relay_up");
    TK_CHECK_EQ_INT64((int64_t)tk_metric_sum(body, "exactly_relay_publishing",
                                             "relay=\"run\""),
                      1, "exactly_relay_publishing");
    TK_CHECK_EQ_INT64((int64_t)tk_metric_sum(body,
                                             "exactly_relay_restarts_total",
                                             "relay=\"run\""),
                      restarts, "exactly_relay_restarts_total");
}

int main(void)
{
    ledger_fixture f;
    ledger_config c;
    PGconn *db;
    char addr[64], run_log[600], *body;
    int64_t t0 = tk_now_ms();
    long pid1, pid2;
    pid_t run;
    int port, status;

    ledger_fixture_start(&f, "relay_run", TOPIC, N_PARTITIONS);
    memset(&c, 0, sizeof(c));
    c.max_messages = 200;
    c.max_wait_ms = 20;
    c.kafka = ledger_short_session;
    c.pipeline_yaml = "    dedup: {from: header, header: event-id}\n";
    ledger_fixture_config(&f, &c);
    relay_config_append(f.config, &(relay_config){.name = "run",
                                                  .topic = TOPIC,
                                                  .batch_size = 50,
                                                  .kafka = "linger.ms: 5"});
    snprintf(run_log, sizeof run_log, "%s/run.log", f.dir);
    db = tk_pg_connect(f.conninfo);
    insert_rows(db, WAVE1, 1);

    port = tk_free_port();
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    {
        char *argv[] = {(char *)ledger_exactly_bin(), "run", "-c", f.config,
                        "--metrics", addr, "--lock-dir", f.dir,
                        "--shutdown-timeout", "20", NULL};
        run = tk_spawn(argv, run_log);
    }
    wait_ledger(db, WAVE1, run, run_log);
    body = wait_relay_metrics(port, WAVE1, run_log);
    check_relay_scrape(body, WAVE1, 0);
    TK_CHECK_EQ_INT64((int64_t)tk_metric_sum(body, "exactly_worker_up", NULL),
                      1, "exactly_worker_up beside the relay");
    promtool_check(f.dir, body);
    free(body);
    tk_note("wave 1: %d rows published by the relay child and applied, "
            "%lld ms", WAVE1, (long long)(tk_now_ms() - t0));

    /* /status.json lists the relay. */
    {
        json_t *st, *r;
        json_error_t jerr;

        LEDGER_CHECK_LOG(tk_http_get(port, "/status.json", &body) == 200,
                         run_log, "GET /status.json did not answer 200");
        st = json_loads(body, 0, &jerr);
        TK_CHECK(st != NULL, "/status.json is not JSON: %s", jerr.text);
        r = json_array_get(json_object_get(st, "relays"), 0);
        TK_CHECK_EQ_STR(json_string_value(json_object_get(r, "name")), "run",
                        "/status.json relays[0].name");
        TK_CHECK_EQ_INT64(json_integer_value(json_object_get(r, "published")),
                          WAVE1, "/status.json relays[0].published");
        TK_CHECK_EQ_INT64(json_integer_value(json_object_get(r, "pending")),
                          0, "/status.json relays[0].pending");
        TK_CHECK(json_is_true(json_object_get(r, "up")),
                 "/status.json: the relay is not up");
        json_decref(st);
        free(body);
    }

    /* SIGKILL the relay child: the supervisor restarts it. */
    pid1 = relay_pid(run_log, 0);
    TK_CHECK(pid1 > 0, "no relay_pid in the log");
    TK_CHECK(tk_kill((pid_t)pid1, SIGKILL) == 0, "relay %ld is gone", pid1);
    LEDGER_CHECK_LOG(ledger_wait_log(run_log, "msg=\"relay killed by signal\"",
                                     1, run, 10000, NULL),
                     run_log, "the supervisor did not log the relay's death");
    LEDGER_CHECK_LOG(ledger_wait_log(run_log, "msg=\"relay started\"", 2, run,
                                     10000, NULL),
                     run_log, "the supervisor did not start the relay again");
    pid2 = relay_pid(run_log, 1);
    TK_CHECK(pid2 > 0 && pid2 != pid1, "restarted relay pid %ld (was %ld)",
             pid2, pid1);
    TK_CHECK(ledger_log_count(run_log, "restarts=1") >= 1,
             "the restart's log line does not count 1 restart");

    /* A transaction left open holds the younger rows back (relay.h,
     * invariant 1): the backlog shows them, with their age, until it
     * ends. */
    {
        PGconn *holder = tk_pg_connect(f.conninfo);
        int64_t deadline = tk_now_ms() + 15000;
        double pending = -1, age = -1;

        tk_sql(holder, "BEGIN; SELECT pg_current_xact_id()");
        insert_rows(db, WAVE2, 2);
        for (;;) {
            body = NULL;
            if (tk_http_get(port, "/metrics", &body) == 200 && body) {
                pending = tk_metric_sum(body, "exactly_relay_pending_rows",
                                        "relay=\"run\"");
                age = tk_metric_sum(body,
                                    "exactly_relay_oldest_pending_age_seconds",
                                    "relay=\"run\"");
            }
            free(body);
            if (pending == WAVE2 && age >= 1.0)
                break;
            LEDGER_CHECK_LOG(tk_now_ms() < deadline, run_log,
                             "behind an open transaction: pending %.0f "
                             "(expected %d), oldest age %.3f s (expected >= "
                             "1)", pending, WAVE2, age);
            tk_sleep_ms(100);
        }
        TK_CHECK_EQ_INT64(ledger_rows(db), WAVE1,
                          "ledger rows while the open transaction holds "
                          "wave 2 back");
        tk_sql(holder, "COMMIT");
        PQfinish(holder);
        tk_note("behind an open transaction: %d pending, the oldest %.1f s "
                "old", WAVE2, age);
    }
    wait_ledger(db, WAVE1 + WAVE2, run, run_log);
    body = wait_relay_metrics(port, WAVE1 + WAVE2, run_log);
    check_relay_scrape(body, WAVE1 + WAVE2, 1);
    TK_CHECK_EQ_INT64((int64_t)tk_metric_sum(body, "exactly_worker_up", NULL),
                      1, "exactly_worker_up beside the relay");
    promtool_check(f.dir, body);
    free(body);
    tk_note("wave 2 after the relay's SIGKILL and restart: %d rows, %lld ms",
            WAVE2, (long long)(tk_now_ms() - t0));

    TK_CHECK(tk_kill(run, SIGTERM) == 0, "cannot signal the supervisor");
    status = tk_wait(run, 30000);
    LEDGER_CHECK_LOG(status == 0, run_log, "exactly run exited %d after "
                     "SIGTERM", status);
    {
        char want[128];
        snprintf(want, sizeof want, "relay run total (1 restart): published "
                 "%d, dead-lettered 0", WAVE1 + WAVE2);
        LEDGER_CHECK_LOG(tk_file_contains(run_log, want), run_log,
                         "no summary line \"%s\"", want);
    }

    /* Each outbox row on the topic and applied once. */
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM exactly.outbox "
                                       "WHERE published_at IS NULL OR "
                                       "dead_reason IS NOT NULL"),
                      0, "outbox rows pending or dead-lettered");
    TK_CHECK_EQ_INT64(ledger_rows(db), WAVE1 + WAVE2,
                      "ledger rows (each outbox row applied once)");
    TK_CHECK_EQ_INT64(
        tk_sql_int64(db,
                     "SELECT count(*) FROM (SELECT convert_from(key, 'UTF8') "
                     "AS entity_id, count(*) AS n FROM exactly.outbox GROUP "
                     "BY 1) w FULL JOIN ledger_counters l USING (entity_id) "
                     "WHERE w.n IS DISTINCT FROM l.n"),
        0, "entities whose applied count differs from their outbox rows");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                       "exactly.dead_letters"),
                      0, "dead letters");

    /* --relay: the relay alone. */
    {
        char log3[600];
        char *argv[] = {(char *)ledger_exactly_bin(), "run", "-c", f.config,
                        "--relay", "run", "--metrics", addr, "--lock-dir",
                        f.dir, NULL};
        char logs[600];
        int64_t deadline;
        double pending = -1, publishing = -1;
        pid_t holder;

        snprintf(log3, sizeof log3, "%s/run-relay.log", f.dir);
        snprintf(logs, sizeof logs, "%s/standalone.log", f.dir);
        holder = relay_start(f.config, NULL, logs);
        LEDGER_CHECK_LOG(ledger_wait_log(logs, "relay publishes", 1, holder,
                                         15000, NULL),
                         logs, "the standalone relay did not take the outbox");
        TK_CHECK(tk_kill(holder, SIGSTOP) == 0, "cannot freeze the holder");
        insert_rows(db, WAVE3, 3);
        run = tk_spawn(argv, log3);
        LEDGER_CHECK_LOG(ledger_wait_log(log3, "another relay publishes this "
                                         "outbox; waiting", 1, run, 15000,
                                         NULL),
                         log3, "run's relay did not wait as a standby");
        deadline = tk_now_ms() + 15000;
        for (;;) {
            body = NULL;
            if (tk_http_get(port, "/metrics", &body) == 200 && body) {
                pending = tk_metric_sum(body, "exactly_relay_pending_rows",
                                        "relay=\"run\"");
                publishing = tk_metric_sum(body, "exactly_relay_publishing",
                                           "relay=\"run\"");
            }
            free(body);
            if (pending == WAVE3 && publishing == 0)
                break;
            LEDGER_CHECK_LOG(tk_now_ms() < deadline, log3,
                             "standby: pending %.0f (expected %d), "
                             "publishing %.0f (expected 0)", pending, WAVE3,
                             publishing);
            tk_sleep_ms(100);
        }
        TK_CHECK(tk_kill(holder, SIGKILL) == 0, "cannot kill the holder");
        (void)tk_wait(holder, 10000);
        body = wait_relay_metrics(port, WAVE3, log3);
        check_relay_scrape(body, WAVE3, 0);
        TK_CHECK(tk_metric_sum(body, "exactly_worker_up", NULL) == -1,
                 "a worker sample with --relay alone");
        promtool_check(f.dir, body);
        free(body);
        TK_CHECK(tk_kill(run, SIGTERM) == 0, "cannot signal the supervisor");
        status = tk_wait(run, 30000);
        LEDGER_CHECK_LOG(status == 0, log3, "exactly run --relay exited %d",
                         status);
        LEDGER_CHECK_LOG(ledger_log_count(log3, "msg=\"worker started\"") ==
                             0 &&
                             tk_file_contains(log3, "workers=0 relays=1"),
                         log3, "exactly run --relay started a worker");
        TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                           "exactly.outbox WHERE "
                                           "published_at IS NULL"),
                          0, "rows pending after exactly run --relay");
        TK_CHECK_EQ_INT64(ledger_rows(db), WAVE1 + WAVE2,
                          "ledger rows with no pipeline running");
    }

    /* A relay that keeps dying soon after its start is in a crash loop:
     * run gives up (exit 1), as for a pipeline whose workers all are. */
    {
        char log4[600];
        char *argv[] = {(char *)ledger_exactly_bin(), "run", "-c", f.config,
                        "--relay", "run", "--lock-dir", f.dir, NULL};
        int64_t t4 = tk_now_ms();
        int k;

        snprintf(log4, sizeof log4, "%s/run-loop.log", f.dir);
        run = tk_spawn(argv, log4);
        for (k = 0; k < 5; k++) {
            long pid;
            LEDGER_CHECK_LOG(ledger_wait_log(log4, "msg=\"relay started\"",
                                             k + 1, run, 15000, NULL),
                             log4, "relay start %d did not come", k + 1);
            pid = relay_pid(log4, k);
            TK_CHECK(pid > 0, "no relay_pid for start %d", k + 1);
            TK_CHECK(tk_kill((pid_t)pid, SIGKILL) == 0, "relay %ld is gone",
                     pid);
        }
        status = tk_wait(run, 20000);
        LEDGER_CHECK_LOG(status == 1, log4, "exactly run exited %d after a "
                         "relay's crash loop, expected 1", status);
        LEDGER_CHECK_LOG(tk_file_contains(log4, "msg=\"relay is in a crash "
                                                "loop\" relay=run failures=5")
                             && tk_file_contains(log4, "giving up"),
                         log4, "no crash-loop lines");
        tk_note("crash loop after 5 kills: run exited 1 in %lld ms",
                (long long)(tk_now_ms() - t4));
    }
    tk_note("%d outbox rows, each applied once; relay killed and restarted "
            "(pid %ld -> %ld); %lld ms",
            WAVE1 + WAVE2, pid1, pid2, (long long)(tk_now_ms() - t0));
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
