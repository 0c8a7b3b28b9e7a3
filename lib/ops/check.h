/*
 * check.h - `exactly check`: everything a worker needs before it starts,
 * each item reported with OK or the reason, changing nothing.
 */
#ifndef EXACTLY_OPS_CHECK_H
#define EXACTLY_OPS_CHECK_H

#include "config.h"

typedef enum ops_check_status {
    OPS_CHECK_OK,
    OPS_CHECK_REFUSED, /* the configuration or a plugin: fix the file */
    OPS_CHECK_FAILED   /* a service unreachable or not ready, a grant
                          missing: fix the environment */
} ops_check_status;

/* Called once per item, in order; detail says what was found or why the
 * item failed. */
typedef void ops_check_fn(void *arg, ops_check_status status,
                          const char *item, const char *detail);

/*
 * Checks cfg's services, pipelines and relays: PostgreSQL (reached, and
 * a server session of its own as the worker needs: a pooler in
 * transaction mode is a refusal, and nothing is read through it), the
 * framework schema version, the grants the workers' role needs, per
 * pipeline the handler and Kafka configuration, the lookup run on no IDs, the
 * handler's open() and the topics' metadata, and per relay its grants,
 * its outbox table's columns and their types, its producer configuration
 * (librdkafka creates the producer; a transactional one is not
 * initialised) and the topics its configuration fixes (topic,
 * position_topic). only: the pipeline of that name alone; only_relay: the
 * relay of that name alone; both NULL: everything. Every statement runs
 * in a read-only transaction that is rolled back, on a session whose
 * transactions are read only; nothing is produced.
 */
void ops_check(const exactly_config *cfg, const char *only,
               const char *only_relay, ops_check_fn *report, void *arg);

#endif
