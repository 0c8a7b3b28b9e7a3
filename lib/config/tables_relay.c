/*
 * tables_relay.c - the schema of one outbox relay (relays.NAME) and the
 * producer properties it refuses (tables.h).
 */
#include "config/tables.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define R(member) offsetof(cfg_relay, member)

static const cfg_enum_name cleanup_names[] = {{"delete", CFG_CLEANUP_DELETE},
                                              {"mark", CFG_CLEANUP_MARK},
                                              {NULL, 0}};
static const cfg_enum_name mode_names[] = {
    {"idempotent", CFG_RELAY_IDEMPOTENT},
    {"transactional", CFG_RELAY_TRANSACTIONAL},
    {NULL, 0}};


static const cfg_field relay_fields[] = {
    {.key = "schema", .type = CFG_F_STR, .flags = CFG_NONEMPTY,
     .off = R(schema), .max = 63, .def_doc = "`postgres.schema`",
     .doc = "The schema of the outbox table."},
    {.key = "table", .type = CFG_F_STR, .flags = CFG_NONEMPTY,
     .off = R(table), .max = 63, .def = "outbox",
     .doc = "The outbox table: `exactly migrate` creates `outbox` in the "
            "framework's schema; a table of the user's needs the same "
            "columns (`id bigserial`, `topic text`, `key bytea`, `value "
            "bytea`, `headers jsonb`, `event_id uuid NOT NULL DEFAULT "
            "gen_random_uuid()` (the default may go if every insert writes "
            "one; a NULL would send an empty `event-id`, which dedup does "
            "not apply), `created xid8 DEFAULT pg_current_xact_id()`, "
            "`created_at`, `published_at`, `dead_reason`, `dead_at`); "
            "`exactly check` refuses one that lacks them."},
    {.key = "topic", .type = CFG_F_STR, .flags = CFG_NONEMPTY,
     .off = R(topic),
     .def_doc = "none",
     .doc = "The topic of rows whose `topic` column is NULL; a row's own "
            "topic wins."},
    {.key = "batch_size", .type = CFG_F_INT, .off = R(batch_size), .min = 1,
     .max = 100000, .def = "1000",
     .doc = "The most rows read, produced and acknowledged in one cycle "
            "(at most 10000 with `mode: transactional`)."},
    {.key = "poll_interval_ms", .type = CFG_F_INT,
     .off = R(poll_interval_ms), .min = 1, .max = 600000, .def = "100",
     .doc = "How long the relay sleeps when it found no row to publish."},
    {.key = "cleanup", .type = CFG_F_ENUM, .off = R(cleanup),
     .names = cleanup_names, .def = "delete",
     .doc = "What happens to a row once the broker acknowledged it: "
            "`delete` it, or `mark` it published (`published_at`) and "
            "delete it after `retention`."},
    {.key = "retention", .type = CFG_F_DURATION, .off = R(retention_s),
     .def = "7d",
     .doc = "With `cleanup: mark`, how long published rows are kept."},
    {.key = "mode", .type = CFG_F_ENUM, .off = R(mode), .names = mode_names,
     .def = "idempotent",
     .doc = "`idempotent`: an idempotent producer (`acks=all`); a relay "
            "killed between sending and the acknowledgement sends those "
            "rows again, with the same `event-id` header, so a consumer "
            "with `dedup: {from: header, header: event-id}` applies each "
            "once. `transactional`: a transactional producer publishes each "
            "batch and one record naming its rows to `position_topic` in "
            "one Kafka transaction; a relay reads that record back "
            "(read_committed) before it publishes, so each row is once "
            "among the committed records. `transactional.id` is "
            "`exactly-relay-NAME` unless written; a relay whose "
            "`transactional.id` was taken over by another exits 1."},
    {.key = "position_topic", .type = CFG_F_STR, .flags = CFG_NONEMPTY,
     .off = R(position_topic), .max = 249,
     .def_doc = "`exactly-relay-NAME-positions` with `mode: transactional`",
     .doc = "With `mode: transactional`: the topic of the relay's position "
            "records (partition 0, keyed by the relay's name), one written "
            "in each batch's transaction. This relay must be its only "
            "writer; create it with one partition and "
            "`cleanup.policy=compact` (only the last record is read). "
            "Refused with `mode: idempotent`."},
    {.key = "kafka", .type = CFG_F_PROPS, .off = R(kafka),
     .off_n = R(n_kafka),
     .doc = "librdkafka properties of this relay's producer, over those of "
            "the top-level `kafka` section. Of the top-level ones, those "
            "librdkafka marks consumer-only (`C` in its CONFIGURATION.md: "
            "`auto.offset.reset`, `isolation.level`, `session.timeout.ms`, "
            "...) are the pipelines' and are not passed to the producer; "
            "one written here is (librdkafka warns that the producer "
            "ignores it). Defaults: "
            "`enable.idempotence=true`, `acks=all`. Refused, because they "
            "break order or idempotence: `enable.idempotence` other than "
            "true, `acks` other than all/-1, "
            "`max.in.flight.requests.per.connection` (`max.in.flight`) "
            "over 5, `retries` (`message.send.max.retries`) 0, and "
            "`transactional.id` unless `mode: transactional`."},
};
const cfg_section exactly_cfg_relay_section = {
    relay_fields, CFG_N_FIELDS(relay_fields), NULL,
    "One outbox relay: publishes the rows of an outbox table to Kafka, "
    "once each in the order of their transactions, with an `event-id` "
    "header, and deletes or marks a row only after the broker acknowledged "
    "it. NAME is 1 to 100 letters, digits, `_`, `-` or `.`."};

static const cfg_prop *find(const cfg_prop *props, size_t n,
                            const char *name)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(props[i].name, name) == 0)
            return &props[i];
    return NULL;
}

/* The producer property name as the relay gets it: its own, else the
 * kafka section's. */
static const cfg_prop *effective(const exactly_config *cfg,
                                 const cfg_relay *r, const char *name)
{
    const cfg_prop *p = find(r->kafka, r->n_kafka, name);

    return p ? p : find(cfg->kafka, cfg->n_kafka, name);
}

static int refuse(cfg_ctx *c, const cfg_relay *r, const cfg_prop *prop,
                  const char *why)
{
    if (find(r->kafka, r->n_kafka, prop->name) == prop)
        return exactly_cfg_fail_at(c, prop->pos,
                                   "'relays.%s.kafka.%s' %s", r->name,
                                   prop->name, why);
    return exactly_cfg_fail_at(c, prop->pos,
                               "'kafka.%s' %s (relay '%s')", prop->name, why,
                               r->name);
}

/* The producer properties the relay relies on: an idempotent producer,
 * acks from every in-sync replica, at most 5 requests in flight, retries.
 * Returns 0 or the refusal. */
static int check_producer(cfg_ctx *c, exactly_config *cfg, cfg_relay *r)
{
    static const char *const in_flight[] = {
        "max.in.flight.requests.per.connection", "max.in.flight"};
    static const char *const retries[] = {"retries",
                                          "message.send.max.retries"};
    const cfg_prop *prop;
    size_t i;

    /* Idempotence is what makes a resend after a broker error keep the
     * partition's order and hold no copy: the relay relies on both. */
    if ((prop = effective(cfg, r, "enable.idempotence")) &&
        strcmp(prop->value, "true") != 0)
        return refuse(c, r, prop,
                      "must be true: the relay needs an idempotent producer");
    if ((prop = effective(cfg, r, "acks")) &&
        strcmp(prop->value, "all") != 0 && strcmp(prop->value, "-1") != 0)
        return refuse(c, r, prop,
                      "must be all: a row is deleted once the broker "
                      "acknowledged it, which must mean every in-sync "
                      "replica has it");
    if ((prop = effective(cfg, r, "request.required.acks")) &&
        strcmp(prop->value, "all") != 0 && strcmp(prop->value, "-1") != 0)
        return refuse(c, r, prop, "must be all");
    for (i = 0; i < 2; i++) {
        char *end;
        long v;

        if ((prop = effective(cfg, r, in_flight[i]))) {
            v = strtol(prop->value, &end, 10);
            if (*end != '\0' || v < 1 || v > 5)
                return refuse(c, r, prop,
                              "must be 1 to 5: more requests in flight can "
                              "reorder a partition's records");
        }
        if ((prop = effective(cfg, r, retries[i]))) {
            v = strtol(prop->value, &end, 10);
            if (*end != '\0' || v < 1)
                return refuse(c, r, prop,
                              "must be at least 1: a record the broker "
                              "failed to take must be sent again");
        }
    }
    return 0;
}

/* The largest position record (lib/relay/relay_txn.c) of a batch: each
 * row of scattered ids is a run "[id,id]," of up to 42 bytes, and the
 * rest (the relay's and the outbox's names, the transaction id range,
 * the record's own framing) stays under 1 KiB. */
#define POSITION_ROW_BYTES 42
#define POSITION_FIXED_BYTES 1024

/* mode: transactional: a bounded batch, a transactional.id of the relay's
 * own, and the position topic (by default exactly-relay-NAME-positions).
 * Returns 0 or the refusal. */
static int check_transactional(cfg_ctx *c, exactly_config *cfg,
                               cfg_relay *r)
{
    const cfg_prop *prop;

    /* The position record names every row of a batch; it must stay well
     * below message.max.bytes (1 MB by default) however scattered the
     * batch's ids are (about 22 bytes a row at worst). */
    if (r->batch_size > 10000)
        return exactly_cfg_fail_at(c, r->pos,
                                   "'relays.%s.batch_size' must be at most "
                                   "10000 with 'mode: transactional': the "
                                   "batch's position record names every "
                                   "row", r->name);
    /* The same bound against a lowered message.max.bytes: producev
     * would refuse the position record, and every batch would be aborted
     * and sent again, forever. */
    if ((prop = effective(cfg, r, "message.max.bytes"))) {
        long long max = strtoll(prop->value, NULL, 10);
        long long need = (long long)r->batch_size * POSITION_ROW_BYTES +
                         POSITION_FIXED_BYTES;

        if (max > 0 && need > max) {
            char why[300];
            long long fits = (max - POSITION_FIXED_BYTES) / POSITION_ROW_BYTES;
            snprintf(why, sizeof(why),
                     "%s cannot hold the position record of a batch of %d "
                     "rows (up to %lld bytes, %d a row with scattered ids): "
                     "lower 'relays.%s.batch_size' to at most %lld, or "
                     "raise it",
                     prop->value, r->batch_size, need, POSITION_ROW_BYTES,
                     r->name, fits > 0 ? fits : 0);
            return refuse(c, r, prop, why);
        }
    }
    /* A transactional.id in the top-level kafka section would be shared
     * by every relay, and each would fence the others. */
    if ((prop = effective(cfg, r, "transactional.id")) &&
        !find(r->kafka, r->n_kafka, "transactional.id"))
        return refuse(c, r, prop,
                      "must be set per relay ('relays.NAME.kafka'): relays "
                      "sharing one would fence each other");
    if (prop && prop->value[0] == '\0')
        return refuse(c, r, prop, "must not be empty");
    if (!r->position_topic) {
        size_t len = strlen(r->name) + sizeof("exactly-relay--positions");

        if (!(r->position_topic = malloc(len)))
            return exactly_cfg_fail_nomem(c);
        snprintf(r->position_topic, len, "exactly-relay-%s-positions",
                 r->name);
    }
    return 0;
}

int exactly_cfg_check_relay(cfg_ctx *c, exactly_config *cfg, cfg_relay *r)
{
    const cfg_prop *prop;
    int rc;

    if (!r->schema && !(r->schema = strdup(cfg->postgres.schema)))
        return exactly_cfg_fail_nomem(c);
    prop = effective(cfg, r, "bootstrap.servers");
    if (!prop || prop->value[0] == '\0')
        return exactly_cfg_fail_at(c, prop ? prop->pos : r->pos,
                                   "relay '%s' has no 'bootstrap.servers': "
                                   "set it in the top-level 'kafka' section "
                                   "or in 'relays.%s.kafka'",
                                   r->name, r->name);
    if ((rc = check_producer(c, cfg, r)) != 0)
        return rc;
    if (r->mode != CFG_RELAY_TRANSACTIONAL) {
        if ((prop = effective(cfg, r, "transactional.id")))
            return refuse(c, r, prop,
                          "is not allowed with 'mode: idempotent'");
        if (r->position_topic)
            return exactly_cfg_fail_at(c, r->pos,
                                       "'relays.%s.position_topic' is not "
                                       "allowed with 'mode: idempotent'",
                                       r->name);
        return 0;
    }
    return check_transactional(c, cfg, r);
}
