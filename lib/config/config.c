/*
 * config.c - the worker's YAML file read in two steps (config.h).
 *
 * First the file becomes a tree of cfg_value (tree.h: positions kept,
 * ${VAR} expanded, duplicate keys and aliases refused). Then the schema
 * walker (schema.h) checks that tree against exactly's tables (tables.h)
 * and fills an exactly_config. Keeping the steps apart lets
 * handler.options leave as a raw subtree that the plugin's declarations
 * validate later (plugin/options.h).
 */
#include "config/config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/tables.h"
#include "config/tree.h"

exactly_err exactly_config_load(const char *path, exactly_config **out,
                                char *errbuf, size_t errbuf_size)
{
    cfg_ctx c = {.file = path, .err = errbuf, .err_size = errbuf_size};
    cfg_value root = {0};
    exactly_config *cfg = NULL;

    if (errbuf_size > 0)
        errbuf[0] = '\0';
    exactly_cfg_tree_reset_stats();
    if (!out || !path)
        return EXACTLY_EINVAL;
    *out = NULL;
    if (exactly_cfg_read_tree(&c, &root))
        goto fail;
    if (root.kind != CFG_MAP) {
        if (exactly_cfg_is_empty(&root))
            exactly_cfg_fail_at(&c, root.pos,
                                "the configuration is empty: expected a "
                                "mapping with 'postgres' and 'pipelines'");
        else
            exactly_cfg_fail_at(&c, root.pos,
                                "the configuration must be a mapping, got %s",
                                exactly_cfg_kind_name(&root));
        goto fail;
    }
    if (!(cfg = calloc(1, sizeof(*cfg))) || !(cfg->path = strdup(path))) {
        exactly_cfg_fail_nomem(&c);
        goto fail;
    }
    if (exactly_cfg_walk(&c, &root, root.pos, &exactly_cfg_root_section, cfg))
        goto fail;
    exactly_cfg_value_clear(&root);
    *out = cfg;
    return EXACTLY_OK;

fail:
    exactly_cfg_value_clear(&root);
    exactly_config_free(cfg);
    return c.rc != EXACTLY_OK ? c.rc : EXACTLY_ECONFIG;
}

void exactly_config_free(exactly_config *cfg)
{
    if (!cfg)
        return;
    exactly_cfg_release(&exactly_cfg_root_section, cfg);
    free(cfg->path);
    free(cfg);
}

const cfg_pipeline *exactly_config_pipeline(const exactly_config *cfg,
                                            const char *name)
{
    size_t i;

    if (!cfg || !name)
        return NULL;
    for (i = 0; i < cfg->n_pipelines; i++)
        if (strcmp(cfg->pipelines[i].name, name) == 0)
            return &cfg->pipelines[i];
    return NULL;
}

int exactly_config_is_secret(const char *property)
{
    static const char *const marks[] = {"password", "secret",
                                        "sasl.oauthbearer.config",
                                        "ssl.key.pem", "ssl_key"};
    size_t i;

    if (!property)
        return 0;
    for (i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
        if (strcasestr(property, marks[i]))
            return 1;
    return 0;
}

const cfg_relay *exactly_config_relay(const exactly_config *cfg,
                                      const char *name)
{
    size_t i;

    if (!cfg || !name)
        return NULL;
    for (i = 0; i < cfg->n_relays; i++)
        if (strcmp(cfg->relays[i].name, name) == 0)
            return &cfg->relays[i];
    return NULL;
}
