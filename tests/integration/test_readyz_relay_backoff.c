/*
 * test_readyz_relay_backoff.c - a relay's /readyz follows Kafka while the
 * relay waits in its backoff after an error (up to 5 s at a time).
 *
 * `exactly run --relay ready --metrics` runs one relay. Once it has
 * published a first batch and /readyz answers 200, its outbox is renamed
 * away: every cycle fails to read it while the PostgreSQL session stays,
 * and the relay backs off, doubling to 5 s. Once it waits 5 s between
 * cycles (the eighth failure logged), the broker is set down: /readyz
 * must answer 503 within KAFKA_DOWN_NOT_READY_MS and 1.5 s more, as it
 * does outside a backoff, not a whole backoff later. The outbox and the
 * broker come back: /readyz answers 200 again. Then SIGTERM, exit 0.
 * Label long: it waits out the backoff's growth.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "relay_kit.h"
#include "testkit.h"

#define TOPIC "readyz-relay-backoff"
#define BROKER_ID 1
/* KAFKA_DOWN_NOT_READY_MS (3 s) and some room; a readiness refreshed only
 * between the 5 s backoffs drops at least 5 s after the broker went. */
#define NOT_READY_WITHIN_MS 4500

int main(void)
{
    relay_fixture f;
    rd_kafka_mock_cluster_t *mc;
    int port, code, status;
    int64_t t0;
    pid_t run;

    relay_fixture_start(&f, "readyz_relay_backoff", NULL);
    mc = tk_mock_cluster(f.mock);
    tk_mock_create_topic(f.mock, TOPIC, 1);
    relay_fixture_config(&f, &(relay_config){
                                 .name = "ready",
                                 .topic = TOPIC,
                                 .kafka = "reconnect.backoff.max.ms: 1000"});
    run = relay_run_ready(&f, "ready", &port);

    /* Reads fail, the session stays: backoffs of 0.1, 0.2, ... 3.2, then
     * 5 s after the seventh failure. */
    tk_sql(f.db, "ALTER TABLE exactly.outbox RENAME TO outbox_away");
    LEDGER_CHECK_LOG(tk_wait_log(f.log, "reading the outbox failed", 8, run,
                                 20000, NULL),
                     f.log, "the relay did not fail 8 reads of the renamed "
                     "outbox");
    TK_CHECK(rd_kafka_mock_broker_set_down(mc, BROKER_ID) ==
                 RD_KAFKA_RESP_ERR_NO_ERROR,
             "rd_kafka_mock_broker_set_down");
    t0 = tk_now_ms();
    code = tk_http_wait_code(port, "/readyz", 503, NOT_READY_WITHIN_MS);
    LEDGER_CHECK_LOG(code == 503, f.log, "/readyz answered %d %d ms after "
                     "every broker went down while the relay backs off, "
                     "expected 503 (the relay cannot publish)", code,
                     NOT_READY_WITHIN_MS);
    tk_note("every broker down in a backoff: /readyz 503 after %.1f s",
            (double)(tk_now_ms() - t0) / 1000.0);

    tk_sql(f.db, "ALTER TABLE exactly.outbox_away RENAME TO outbox");
    TK_CHECK(rd_kafka_mock_broker_set_up(mc, BROKER_ID) ==
                 RD_KAFKA_RESP_ERR_NO_ERROR,
             "rd_kafka_mock_broker_set_up");
    code = tk_http_wait_code(port, "/readyz", 200, 20000);
    LEDGER_CHECK_LOG(code == 200, f.log, "/readyz answered %d 20 s after "
                     "the broker and the outbox came back, expected 200",
                     code);

    TK_CHECK(tk_kill(run, SIGTERM) == 0, "cannot signal the supervisor");
    status = tk_wait(run, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log,
                     "exactly run exited %d after SIGTERM", status);
    relay_fixture_stop(&f);
    printf("test_readyz_relay_backoff: ok\n");
    return 0;
}
