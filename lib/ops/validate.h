/*
 * validate.h - what every command that acts on a configuration refuses
 * about a pipeline before reaching any service.
 */
#ifndef EXACTLY_OPS_VALIDATE_H
#define EXACTLY_OPS_VALIDATE_H

#include "config.h"

struct exactly_plugin;

/* Called once per validated item: err is NULL when it passed (detail says
 * what was found), else the reason it is refused. */
typedef void ops_report_fn(void *arg, const char *item, const char *err,
                             const char *detail);

/*
 * What every command that acts on a configuration refuses about it before
 * reaching any service (check and migrate share it, so migrate never sets
 * up a configuration no worker would run): the pipeline's handler (loaded,
 * ABI and descriptor checked, options validated against its declarations)
 * and the Kafka properties exactly owns (isolation level, auto commit,
 * group.id, any property librdkafka rejects). Reports the items
 * "handler [P]" and "kafka config [P]" through report and returns how
 * many were refused. If plugin is not NULL and the handler loaded,
 * *plugin receives it (the caller frees it with exactly_plugin_free);
 * otherwise nothing is kept.
 */
int ops_validate_pipeline(const exactly_config *cfg, const cfg_pipeline *p,
                            ops_report_fn *report, void *arg,
                            struct exactly_plugin **plugin);

#endif
