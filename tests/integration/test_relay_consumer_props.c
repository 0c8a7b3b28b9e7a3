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

static void write_config(const char *path, const char *bootstraps,
                         const char *conninfo, const char *relay_kafka)
{
    tk_write_file(path,
                  "kafka:\n  bootstrap.servers: \"%s\"\n"
                  "  auto.offset.reset: earliest\n"
                  "  isolation.level: read_committed\n"
                  "  session.timeout.ms: 6000\n"
                  "  group.instance.id: host-1\n"
                  "  enable.auto.commit: false\n"
                  "postgres:\n  conninfo: \"%s\"\n"
                  "relays:\n  props:\n    topic: " TOPIC "\n"
                  "    poll_interval_ms: 20\n"
                  "    kafka: {linger.ms: 5%s}\n",
                  bootstraps, conninfo, relay_kafka);
}

int main(void)
{
    char dir[256], conninfo[1024], config[512], log[512], log2[512],
        mlog[512];
    tk_mock *mock;
    PGconn *q;
    int st;

    tk_tmpdir("relay-props", dir, sizeof(dir));
    snprintf(config, sizeof(config), "%s/relay.yaml", dir);
    snprintf(log, sizeof(log), "%s/relay.log", dir);
    snprintf(log2, sizeof(log2), "%s/relay2.log", dir);
    snprintf(mlog, sizeof(mlog), "%s/migrate.log", dir);
    tk_pg_create_db("relay_props", conninfo, sizeof(conninfo));
    mock = tk_mock_start(1);
    tk_mock_create_topic(mock, TOPIC, 1);
    write_config(config, tk_mock_bootstraps(mock), conninfo, "");
    ledger_migrate(config, mlog);
    q = tk_pg_connect(conninfo);
    tk_sql(q, "INSERT INTO exactly.outbox (key, value) VALUES ('a', 'one')");

    st = relay_run_to_idle(config, 500, 15000, log);
    LEDGER_CHECK_LOG(st == 0, log, "relay exited %d", st);
    TK_CHECK_EQ_INT64(tk_sql_int64(q, "SELECT count(*) FROM exactly.outbox"),
                      0, "rows left in the outbox");
    LEDGER_CHECK_LOG(!tk_file_contains(log, "CONFWARN"), log,
                     "the relay's producer warned about the top-level "
                     "consumer properties");

    /* Written for the relay itself: librdkafka's warning stays. */
    write_config(config, tk_mock_bootstraps(mock), conninfo,
                 ", session.timeout.ms: 6000");
    st = relay_run_to_idle(config, 300, 15000, log2);
    LEDGER_CHECK_LOG(st == 0, log2, "relay exited %d", st);
    LEDGER_CHECK_LOG(tk_file_contains(log2, "CONFWARN") &&
                         tk_file_contains(log2, "session.timeout.ms"),
                     log2,
                     "a consumer property in the relay's own kafka section "
                     "was not warned about");

    PQfinish(q);
    tk_mock_stop(mock);
    tk_pg_drop_db(conninfo);
    return 0;
}
