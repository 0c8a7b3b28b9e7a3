/*
 * test_healthz.c - /healthz, the liveness probe of `exactly run`, answers
 * 200 while the supervisor's loop turns and runs the pipelines, and 503
 * when it does not: when the supervisor is stuck (here: SIGSTOP; the status
 * server is a process of its own, which would otherwise answer for it) and
 * while it is stopping (its workers finishing after SIGTERM). /readyz
 * answers 503 in both cases too.
 *
 * One worker on two partitions. Once /readyz answers 200: SIGSTOP the
 * supervisor, /healthz must answer 503 within the deadline; SIGCONT, 200
 * again. Then SIGSTOP the worker and SIGTERM the supervisor: the drain
 * waits for the worker, and /healthz must answer 503 meanwhile. SIGCONT
 * the worker: it stops cleanly, and the run exits 0.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define PARTITIONS 2

int main(void)
{
    ledger_fixture f;
    ledger_config c;
    char addr[64];
    int port, code, ready, status;
    int64_t t0;
    pid_t run, worker;

    ledger_fixture_start(&f, "healthz", "healthz", PARTITIONS);
    memset(&c, 0, sizeof c);
    c.max_messages = 50;
    c.max_wait_ms = 20;
    c.kafka = ledger_short_session;
    ledger_fixture_config(&f, &c);
    port = tk_free_port();
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    {
        char *argv[] = {(char *)ledger_exactly_bin(), "run", "-c", f.config,
                        "--metrics", addr, "--lock-dir", f.dir,
                        "--shutdown-timeout", "20", NULL};
        run = tk_spawn(argv, f.log);
    }
    code = tk_http_wait_code(port, "/readyz", 200, 15000);
    LEDGER_CHECK_LOG(code == 200, f.log, "/readyz answered %d, expected 200",
                     code);
    LEDGER_CHECK_LOG(tk_http_wait_code(port, "/healthz", 200, 1000) == 200, f.log,
                     "/healthz does not answer 200 while the run runs");
    worker = tk_worker_pid(f.log, 0, run, 5000);
    TK_CHECK(worker > 0, "no worker pid in the log");

    /* A stuck supervisor. */
    TK_CHECK(tk_kill(run, SIGSTOP) == 0, "cannot stop the supervisor");
    t0 = tk_now_ms();
    code = tk_http_wait_code(port, "/healthz", 503, 10000);
    if (code != 503)
        (void)tk_kill(run, SIGCONT);
    LEDGER_CHECK_LOG(code == 503, f.log, "/healthz answered %d 10 s after "
                     "the supervisor was stopped (SIGSTOP), expected 503",
                     code);
    tk_note("supervisor stuck: /healthz 503 after %.1f s",
            (double)(tk_now_ms() - t0) / 1000.0);
    code = tk_http_wait_code(port, "/readyz", 503, 1000);
    (void)tk_kill(run, SIGCONT);
    LEDGER_CHECK_LOG(code == 503, f.log, "/readyz answered %d while the "
                     "supervisor was stuck, expected 503", code);
    code = tk_http_wait_code(port, "/healthz", 200, 5000);
    LEDGER_CHECK_LOG(code == 200, f.log, "/healthz answered %d 5 s after the "
                     "supervisor went on (SIGCONT), expected 200", code);

    /* Stopping: the drain waits for the (stopped) worker. */
    TK_CHECK(tk_kill(worker, SIGSTOP) == 0, "cannot stop the worker");
    TK_CHECK(tk_kill(run, SIGTERM) == 0, "cannot signal the supervisor");
    code = tk_http_wait_code(port, "/healthz", 503, 5000);
    /* The stopped worker still says ready in its slot: the supervisor's
     * stop is what makes /readyz 503. */
    ready = tk_http_wait_code(port, "/readyz", 503, 1000);
    (void)tk_kill(worker, SIGCONT);
    LEDGER_CHECK_LOG(code == 503, f.log, "/healthz answered %d while the "
                     "supervisor was stopping, expected 503", code);
    LEDGER_CHECK_LOG(ready == 503, f.log, "/readyz answered %d while the "
                     "supervisor was stopping, expected 503", ready);
    tk_note("stopping: /healthz and /readyz 503");
    status = tk_wait(run, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log, "exactly run exited %d after SIGTERM",
                     status);
    ledger_fixture_stop(&f);
    printf("test_healthz: ok\n");
    return 0;
}
