/*
 * test_readyz_standby.c - a pipeline with more workers than partitions is
 * ready once every worker has joined its group.
 *
 * `exactly run --metrics` runs three workers of one pipeline on a topic of
 * two partitions: one worker is a standby with an empty assignment, by
 * design. Every worker is connected to PostgreSQL and a member of its
 * group, so /readyz must answer 200 within the deadline (a readiness that
 * needs partitions on every worker would answer 503 for as long as the run
 * lasts).
 *
 * Then one worker is killed (SIGKILL): the supervisor holds its slot in
 * the restart backoff (RESTART_MIN_MS) before starting it again. The
 * pipeline is short of a worker meanwhile, so every /readyz asked while
 * /metrics says that worker is not running, before and after the
 * request, must answer 503, however ready the other two are; once it is
 * back and joined, 200 again. Then SIGTERM, exit 0.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define PARTITIONS 2

/* exactly_worker_up summed over the workers, and their restarts; -1
 * when /metrics does not answer. */
static double workers_up(int port, double *restarts)
{
    char *text = tk_metrics_scrape(port);
    double up;

    if (!text)
        return -1;
    up = tk_metric_sum(text, "exactly_worker_up", NULL);
    *restarts = tk_metric_sum(text, "exactly_worker_restarts_total", NULL);
    free(text);
    return up;
}

/* Kills one worker and checks /readyz while it waits for its restart
 * (503 at every request asked while /metrics said, before and after,
 * that the worker was down and had not restarted), then that it comes
 * back (200). */
static void check_killed_worker(const ledger_fixture *f, int port, pid_t run)
{
    pid_t worker = tk_worker_pid(f->log, 2, run, 5000);
    int64_t deadline;
    int samples = 0, code;
    double r0, r1, r2;

    TK_CHECK(workers_up(port, &r0) == 3, "3 workers up before the kill");
    TK_CHECK(tk_kill(worker, SIGKILL) == 0, "cannot kill worker %d",
             (int)worker);
    deadline = tk_now_ms() + 10000;
    while (tk_now_ms() < deadline) {
        double before = workers_up(port, &r1), after;
        char *body = NULL;

        if (before == 3 && r1 > r0)
            break; /* restarted */
        if (before != 2) {
            tk_sleep_ms(5);
            continue; /* not reaped yet */
        }
        code = tk_http_get(port, "/readyz", &body);
        free(body);
        after = workers_up(port, &r2);
        if (after != 2 || r2 != r1)
            continue; /* restarted meanwhile: the answer says nothing */
        samples++;
        LEDGER_CHECK_LOG(code == 503, f->log,
                         "/readyz answered %d while a worker of the pipeline "
                         "was not running (waiting for its restart), "
                         "expected 503", code);
        tk_sleep_ms(20);
    }
    LEDGER_CHECK_LOG(samples > 0, f->log, "no /readyz asked while the killed "
                     "worker waited for its restart");
    tk_note("worker killed: /readyz 503 at %d requests while it was down",
            samples);
    code = tk_http_wait_code(port, "/readyz", 200, 15000);
    LEDGER_CHECK_LOG(code == 200, f->log, "/readyz answered %d, not 200, 15 s "
                     "after the killed worker was restarted", code);
}

int main(void)
{
    ledger_fixture f;
    ledger_config c;
    char addr[64];
    int port, code, status;
    pid_t run;

    ledger_fixture_start(&f, "readyz_standby", "readyz-standby", PARTITIONS);
    memset(&c, 0, sizeof c);
    c.max_messages = 50;
    c.max_wait_ms = 20;
    c.kafka = ledger_short_session;
    c.pipeline_yaml = "    workers: 3\n";
    ledger_fixture_config(&f, &c);
    port = tk_free_port();
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    {
        char *argv[] = {(char *)ledger_exactly_bin(), "run", "-c", f.config,
                        "--metrics", addr, "--lock-dir", f.dir, NULL};
        run = tk_spawn(argv, f.log);
    }
    /* A group join takes about 3 s; three members may take a rebalance
     * more. */
    code = tk_http_wait_code(port, "/readyz", 200, 15000);
    LEDGER_CHECK_LOG(code == 200, f.log,
                     "/readyz answered %d, not 200, 15 s after starting 3 "
                     "workers on 2 partitions (one a standby)", code);
    LEDGER_CHECK_LOG(tk_http_wait_code(port, "/healthz", 200, 1000) == 200, f.log,
                     "/healthz does not answer 200");
    tk_note("3 workers on 2 partitions: /readyz 200");
    check_killed_worker(&f, port, run);
    TK_CHECK(tk_kill(run, SIGTERM) == 0, "cannot signal the supervisor");
    status = tk_wait(run, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log, "exactly run exited %d after SIGTERM",
                     status);
    ledger_fixture_stop(&f);
    printf("test_readyz_standby: ok\n");
    return 0;
}
