/*
 * test_readyz_kafka.c - /readyz follows Kafka: it drops while no broker of
 * the cluster can be reached and comes back when one can.
 *
 * `exactly run --metrics` runs one worker on two partitions of the mock
 * cluster's one broker. Once /readyz answers 200, the broker is set down
 * (rd_kafka_mock_broker_set_down: its connections close, new ones are
 * refused). librdkafka keeps the assignment meanwhile (for the session
 * timeout, 45 s by default), but nothing can be fetched: /readyz must
 * answer 503 within the deadline. The broker is set up again and /readyz
 * must answer 200 again, the worker having found a usable broker itself
 * (the session outlived the outage: no rebalance told it). /healthz
 * answers 200 throughout: an outage of a service is not a reason to
 * restart the process. Then SIGTERM, exit 0.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define PARTITIONS 2
#define BROKER_ID 1

int main(void)
{
    /* The default session timeout (45 s), far longer than the deadline:
     * the assignment outlives the outage, as it does in production, and
     * only the worker's own view of Kafka can tell. Reconnects at least
     * every second, so that the broker's return is seen within the
     * deadline. */
    static const char *const kafka[] = {"reconnect.backoff.max.ms", "1000",
                                        NULL};
    ledger_fixture f;
    ledger_config c;
    char addr[64];
    int port, code, status;
    pid_t run;

    ledger_fixture_start(&f, "readyz_kafka", "readyz-kafka", PARTITIONS);
    memset(&c, 0, sizeof c);
    c.max_messages = 50;
    c.max_wait_ms = 20;
    c.kafka = kafka;
    ledger_fixture_config(&f, &c);
    port = tk_free_port();
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    {
        char *argv[] = {(char *)ledger_exactly_bin(), "run", "-c", f.config,
                        "--metrics", addr, "--lock-dir", f.dir, NULL};
        run = tk_spawn(argv, f.log);
    }
    code = tk_http_wait_code(port, "/readyz", 200, 15000);
    LEDGER_CHECK_LOG(code == 200, f.log, "/readyz answered %d before the "
                     "outage, expected 200", code);

    tk_mock_readyz_outage(f.mock, BROKER_ID, port, f.log);
    /* The session outlived the outage: no rebalance brought it back, the
     * worker saw a usable broker itself. */
    LEDGER_CHECK_LOG(tk_file_contains(f.log, "kafka brokers reachable again") &&
                         tk_file_contains(f.log, "seen=broker"),
                     f.log, "no \"kafka brokers reachable again\" line with "
                     "seen=broker");

    TK_CHECK(tk_kill(run, SIGTERM) == 0, "cannot signal the supervisor");
    status = tk_wait(run, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log, "exactly run exited %d after SIGTERM",
                     status);
    ledger_fixture_stop(&f);
    printf("test_readyz_kafka: ok\n");
    return 0;
}
