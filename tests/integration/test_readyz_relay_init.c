/*
 * test_readyz_relay_init.c - a transactional relay's /readyz follows Kafka
 * while the relay waits in init_transactions(), which lasts up to
 * RELAY_INIT_TIMEOUT_MS (60 s) while no broker answers.
 *
 * `exactly run --relay ready --metrics` runs one transactional relay on
 * the mock cluster's one broker. Once it has published a first batch and
 * /readyz answers 200, the broker is set down and the relay's PostgreSQL
 * session is ended: the relay connects again, takes its outbox's lock
 * back and, before it publishes, initialises its transactions again on a
 * new producer (the line "initialising kafka transactions again"), which
 * waits for a broker. /readyz must then answer 503 within the deadline
 * (the relay cannot publish), though the relay is connected to
 * PostgreSQL and holds its lock; and 200 again once the broker is up
 * again and the initialisation went through. Then SIGTERM, exit 0.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "relay_kit.h"
#include "testkit.h"

#define TOPIC "readyz-relay-init"
#define POSITIONS "readyz-relay-init-pos"
#define BROKER_ID 1

int main(void)
{
    relay_fixture f;
    rd_kafka_mock_cluster_t *mc;
    int port, code, status;
    int64_t t0;
    pid_t run;

    relay_fixture_start(&f, "readyz_relay_init", NULL);
    mc = tk_mock_cluster(f.mock);
    tk_mock_create_topic(f.mock, TOPIC, 1);
    tk_mock_create_topic(f.mock, POSITIONS, 1);
    /* Reconnects at least every second, so that the broker's return is
     * seen within the deadline. */
    relay_fixture_config(&f, &(relay_config){
                                 .name = "ready",
                                 .topic = TOPIC,
                                 .transactional = 1,
                                 .position_topic = POSITIONS,
                                 .kafka = "linger.ms: 5, "
                                          "reconnect.backoff.max.ms: 1000"});
    run = relay_run_ready(&f, "ready", &port);

    /* Kafka down, then a new session: the relay initialises its
     * transactions again, and that waits for the broker. */
    TK_CHECK(rd_kafka_mock_broker_set_down(mc, BROKER_ID) ==
                 RD_KAFKA_RESP_ERR_NO_ERROR,
             "rd_kafka_mock_broker_set_down");
    relay_terminate_sessions(f.db);
    LEDGER_CHECK_LOG(tk_wait_log(f.log, "initialising kafka transactions "
                                 "again", 1, run, 15000, NULL),
                     f.log, "the relay did not initialise its transactions "
                     "again after its session ended");
    t0 = tk_now_ms();
    code = tk_http_wait_code(port, "/readyz", 503, 10000);
    LEDGER_CHECK_LOG(code == 503, f.log, "/readyz answered %d 10 s into an "
                     "init_transactions that waits for a broker, every "
                     "broker down; expected 503 (the relay cannot publish)",
                     code);
    tk_note("init_transactions, every broker down: /readyz 503 after %.1f s",
            (double)(tk_now_ms() - t0) / 1000.0);

    TK_CHECK(rd_kafka_mock_broker_set_up(mc, BROKER_ID) ==
                 RD_KAFKA_RESP_ERR_NO_ERROR,
             "rd_kafka_mock_broker_set_up");
    t0 = tk_now_ms();
    code = tk_http_wait_code(port, "/readyz", 200, 20000);
    LEDGER_CHECK_LOG(code == 200, f.log, "/readyz answered %d 20 s after "
                     "the broker came back, expected 200", code);
    tk_note("broker back: /readyz 200 after %.1f s",
            (double)(tk_now_ms() - t0) / 1000.0);

    TK_CHECK(tk_kill(run, SIGTERM) == 0, "cannot signal the supervisor");
    status = tk_wait(run, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log,
                     "exactly run exited %d after SIGTERM", status);
    relay_fixture_stop(&f);
    printf("test_readyz_relay_init: ok\n");
    return 0;
}
