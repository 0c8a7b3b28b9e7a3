/*
 * test_readyz_standby.c - a pipeline with more workers than partitions is
 * ready once every worker has joined its group.
 *
 * `exactly run --metrics` runs three workers of one pipeline on a topic of
 * two partitions: one worker is a standby with an empty assignment, by
 * design. Every worker is connected to PostgreSQL and a member of its
 * group, so /readyz must answer 200 within the deadline (a readiness that
 * needs partitions on every worker would answer 503 for as long as the run
 * lasts). Then SIGTERM, exit 0.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define PARTITIONS 2

/* Polls path until it answers want or timeout_ms passed; the last code. */
static int wait_code(int port, const char *path, int want, int timeout_ms)
{
    int64_t deadline = tk_now_ms() + timeout_ms;
    int code;

    for (;;) {
        char *body = NULL;
        code = tk_http_get(port, path, &body);
        free(body);
        if (code == want || tk_now_ms() > deadline)
            return code;
        tk_sleep_ms(100);
    }
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
    code = wait_code(port, "/readyz", 200, 15000);
    LEDGER_CHECK_LOG(code == 200, f.log,
                     "/readyz answered %d, not 200, 15 s after starting 3 "
                     "workers on 2 partitions (one a standby)", code);
    LEDGER_CHECK_LOG(wait_code(port, "/healthz", 200, 1000) == 200, f.log,
                     "/healthz does not answer 200");
    tk_note("3 workers on 2 partitions: /readyz 200");
    TK_CHECK(tk_kill(run, SIGTERM) == 0, "cannot signal the supervisor");
    status = tk_wait(run, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log, "exactly run exited %d after SIGTERM",
                     status);
    ledger_fixture_stop(&f);
    printf("test_readyz_standby: ok\n");
    return 0;
}
