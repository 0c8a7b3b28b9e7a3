#include "cli.h"

#include <stdio.h>

#include "log.h"

static int level_from_flag;

void cli_set_log_level(int level)
{
    level_from_flag = 1;
    exactly_log_set_level((exactly_log_level)level);
}

exactly_config *cli_load_config(const char *path)
{
    exactly_config *cfg = NULL;
    char err[2048];

    if (!path) {
        fprintf(stderr, "exactly: missing -c FILE\n");
        return NULL;
    }
    if (exactly_config_load(path, &cfg, err, sizeof(err)) != EXACTLY_OK) {
        fprintf(stderr, "exactly: %s\n", err);
        return NULL;
    }
    exactly_log_set_json(cfg->log.format == CFG_LOG_JSON);
    if (!level_from_flag)
        exactly_log_set_level((exactly_log_level)cfg->log.level);
    return cfg;
}

const cfg_pipeline *cli_pick_pipeline(const exactly_config *cfg,
                                      const char *name)
{
    const cfg_pipeline *p;
    size_t i;

    if (name) {
        p = exactly_config_pipeline(cfg, name);
        if (!p) {
            fprintf(stderr, "exactly: %s: no pipeline '%s' (have:", cfg->path,
                    name);
            for (i = 0; i < cfg->n_pipelines; i++)
                fprintf(stderr, " %s", cfg->pipelines[i].name);
            fprintf(stderr, ")\n");
        }
        return p;
    }
    if (cfg->n_pipelines == 1)
        return &cfg->pipelines[0];
    fprintf(stderr,
            "exactly: %s has %zu pipelines; choose one with --pipeline NAME\n",
            cfg->path, cfg->n_pipelines);
    return NULL;
}
