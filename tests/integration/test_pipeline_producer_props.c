/*
 * The top-level `kafka` section is shared by the pipelines' consumers and
 * the relays' producers, so it may hold producer settings (linger.ms,
 * acks, compression.type, ...) written for the relays. A pipeline's
 * consumer takes only the top-level properties that apply to a consumer:
 * librdkafka accepts a producer property on a consumer's configuration
 * and then warns at every start that it is ignored (CONFWARN), a warning
 * nobody can act on without breaking the relays. The pipeline's own
 * `kafka` section is passed whole: a producer property written there is a
 * mistake librdkafka's warning names.
 *
 *   - a worker whose file has producer properties at the top level applies
 *     every message once and logs no CONFWARN;
 *   - the same property under the pipeline's own `kafka` is warned about.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define N_MSGS 100
#define N_ENTITIES 20

/* Writes f's config with the producer properties at the top level and,
 * when own is set, linger.ms in the pipeline's own kafka section too. */
static void write_config(ledger_fixture *f, int own)
{
    /* A short session: the second worker joins the group the first one
     * left (ledger_short_session). */
    static const char *const own_kafka[] = {
        "session.timeout.ms", "6000", "heartbeat.interval.ms", "500",
        "linger.ms", "5", NULL};
    ledger_config c;
    tk_config t;

    memset(&c, 0, sizeof c);
    c.bootstraps = f->mock->bootstraps;
    c.conninfo = f->conninfo;
    c.topic = f->topic;
    c.max_messages = 50;
    c.max_wait_ms = 50;
    c.kafka = own ? own_kafka : ledger_short_session;
    ledger_config_fill(&t, &c);
    t.kafka[0] = (tk_prop){"linger.ms", "5"};
    t.kafka[1] = (tk_prop){"acks", "all"};
    t.kafka[2] = (tk_prop){"compression.type", "lz4"};
    tk_config_write(f->config, &t);
}

int main(void)
{
    static int64_t per_entity[N_ENTITIES];
    ledger_fixture f;
    char log2[600];
    PGconn *db;
    int st;

    ledger_fixture_start(&f, "producer_props", "producer-props", 1);
    snprintf(log2, sizeof(log2), "%s/worker2.log", f.dir);
    tk_produce_ids(f.mock->bootstraps, f.topic, N_MSGS, N_ENTITIES, 1, 5,
                   per_entity);
    write_config(&f, 0);
    ledger_migrate(f.config, f.log);

    st = ledger_run_to_idle(f.config, 1500, 30000, f.log);
    LEDGER_CHECK_LOG(st == 0, f.log, "worker exited %d", st);
    db = tk_pg_connect(f.conninfo);
    ledger_check_exactly_once(db, f.mock->bootstraps, f.topic, 1, N_MSGS,
                              per_entity, N_ENTITIES);
    LEDGER_CHECK_LOG(!tk_file_contains(f.log, "CONFWARN"), f.log,
                     "the pipeline's consumer warned about the top-level "
                     "producer properties");

    /* Written for the pipeline itself: librdkafka's warning stays. */
    write_config(&f, 1);
    st = ledger_run_to_idle(f.config, 300, 30000, log2);
    LEDGER_CHECK_LOG(st == 0, log2, "worker exited %d", st);
    LEDGER_CHECK_LOG(tk_file_contains(log2, "CONFWARN") &&
                         tk_file_contains(log2, "producer property"),
                     log2,
                     "a producer property in the pipeline's own kafka "
                     "section was not warned about");

    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
