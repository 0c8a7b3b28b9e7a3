/*
 * validate.c - see validate.h.
 */
#include "ops/validate.h"

#include <stdio.h>

#include "plugin.h"
#include "source.h"

int ops_validate_pipeline(const exactly_config *cfg, const cfg_pipeline *p,
                            ops_report_fn *report, void *arg,
                            exactly_plugin **plugin)
{
    char err[2048], item[160], detail[512], reset[16];
    exactly_plugin *pl = NULL;
    rd_kafka_conf_t *conf;
    int refused = 0;

    if (plugin)
        *plugin = NULL;
    snprintf(item, sizeof(item), "handler [%s]", p->name);
    if (exactly_plugin_load(cfg, p, &pl, err, sizeof(err)) != EXACTLY_OK) {
        report(arg, item, err, NULL);
        refused++;
    } else {
        snprintf(detail, sizeof(detail), "%s '%s' ABI %u.%u%s", pl->label,
                 pl->h->name, pl->h->abi_major, pl->h->abi_minor,
                 pl->fused ? ", lookup fused into the write" : "");
        report(arg, item, NULL, detail);
    }
    snprintf(item, sizeof(item), "kafka config [%s]", p->name);
    conf = exactly_kafka_conf(cfg, p, reset, "exactly-validate", err,
                              sizeof(err));
    if (!conf) {
        report(arg, item, err, NULL);
        refused++;
    } else {
        rd_kafka_conf_destroy(conf);
        report(arg, item, NULL, "read_committed, auto commit off");
    }
    if (plugin)
        *plugin = pl;
    else
        exactly_plugin_free(pl);
    return refused;
}

