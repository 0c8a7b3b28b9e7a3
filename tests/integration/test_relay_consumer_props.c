/*
 * The top-level `kafka` section is shared by the pipelines' consumers and
 * the relays' producers, and holds consumer settings (auto.offset.reset,
 * isolation.level, session.timeout.ms, group.instance.id, ...). A relay's
 * producer takes only the top-level properties that apply to a producer:
 * librdkafka accepts a consumer property on a producer's configuration
 * and then warns at every start that it is ignored (CONFWARN), a warning
 * nobody can act on without breaking the pipelines. The relay's own
 * `kafka` section is passed whole: a consumer property written there is a
 * mistake librdkafka's warning names.
 *
 *   - a relay whose file has consumer properties at the top level
 *     publishes its row and logs no CONFWARN;
 *   - the same property under the relay's own `kafka` is warned about.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "relay_kit.h"
#include "testkit.h"

#define TOPIC "relay-props"

/* Consumer properties in the top-level kafka section, as the pipelines
 * of the same file would have them. */
static const char *const CONSUMER_PROPS = "  auto.offset.reset: earliest\n"
                                          "  isolation.level: read_committed\n"
                                          "  session.timeout.ms: 6000\n"
                                          "  group.instance.id: host-1\n"
                                          "  enable.auto.commit: false\n";

int main(void)
{
    relay_config c = {.name = "props",
                      .topic = TOPIC,
                      .delete_published = 1,
                      .kafka = "linger.ms: 5",
                      .kafka_yaml = CONSUMER_PROPS};
    relay_fixture f;
    PGconn *q;
    int st;

    relay_fixture_start(&f, "relay_props", NULL);
    q = f.db;
    tk_mock_create_topic(f.mock, TOPIC, 1);
    relay_fixture_config(&f, &c);
    tk_sql(q, "INSERT INTO exactly.outbox (key, value) VALUES ('a', 'one')");

    st = relay_run_to_idle(f.config, 500, 15000, f.log);
    LEDGER_CHECK_LOG(st == 0, f.log, "relay exited %d", st);
    TK_CHECK_EQ_INT64(tk_sql_int64(q, "SELECT count(*) FROM exactly.outbox"),
                      0, "rows left in the outbox");
    LEDGER_CHECK_LOG(!tk_file_contains(f.log, "CONFWARN"), f.log,
                     "the relay's producer warned about the top-level "
                     "consumer properties");

    /* Written for the relay itself: librdkafka's warning stays. */
    c.kafka = "linger.ms: 5, session.timeout.ms: 6000";
    relay_write_config(&f, f.config, &c);
    st = relay_run_to_idle(f.config, 300, 15000, f.log2);
    LEDGER_CHECK_LOG(st == 0, f.log2, "relay exited %d", st);
    LEDGER_CHECK_LOG(tk_file_contains(f.log2, "CONFWARN") &&
                         tk_file_contains(f.log2, "session.timeout.ms"),
                     f.log2,
                     "a consumer property in the relay's own kafka section "
                     "was not warned about");

    relay_fixture_stop(&f);
    return 0;
}
