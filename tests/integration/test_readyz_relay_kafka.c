/*
 * test_readyz_relay_kafka.c - a relay's /readyz follows Kafka: it drops
 * while no broker of the cluster can be reached and comes back when one
 * can.
 *
 * `exactly run --relay ready --metrics` runs one relay, publishing to the
 * mock cluster's one broker. Once it has published a first batch and
 * /readyz answers 200, the broker is set down
 * (rd_kafka_mock_broker_set_down: its connections close, new ones are
 * refused). The relay stays connected to PostgreSQL and holds its lock,
 * but can publish nothing: /readyz must answer 503 within the deadline.
 * The broker is set up again and /readyz must answer 200 again, the relay
 * having found a usable broker itself. /healthz answers 200 throughout:
 * an outage of a service is not a reason to restart the process. Then
 * SIGTERM, exit 0.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "relay_kit.h"
#include "testkit.h"

#define TOPIC "readyz-relay-kafka"
#define BROKER_ID 1

int main(void)
{
    relay_fixture f;
    int port, status;
    pid_t run;

    relay_fixture_start(&f, "readyz_relay_kafka", NULL);
    tk_mock_create_topic(f.mock, TOPIC, 1);
    /* Reconnects at least every second, so that the broker's return is
     * seen within the deadline. */
    relay_fixture_config(&f, &(relay_config){
                                 .name = "ready",
                                 .topic = TOPIC,
                                 .kafka = "reconnect.backoff.max.ms: 1000"});
    run = relay_run_ready(&f, "ready", &port);

    tk_mock_readyz_outage(f.mock, BROKER_ID, port, f.log);
    LEDGER_CHECK_LOG(tk_file_contains(f.log,
                                      "kafka brokers reachable again"),
                     f.log, "no \"kafka brokers reachable again\" line");

    TK_CHECK(tk_kill(run, SIGTERM) == 0, "cannot signal the supervisor");
    status = tk_wait(run, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log,
                     "exactly run exited %d after SIGTERM", status);
    relay_fixture_stop(&f);
    printf("test_readyz_relay_kafka: ok\n");
    return 0;
}
