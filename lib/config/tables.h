/*
 * tables.h - the schema of exactly's own configuration, private to
 * lib/config/: the fields of exactly_config and cfg_pipeline (config.h)
 * with their types, ranges, defaults and descriptions, read by the walker
 * of schema.h and printed by reference.h.
 */
#ifndef EXACTLY_CONFIG_TABLES_H
#define EXACTLY_CONFIG_TABLES_H

#include "config/schema.h"

/* The whole file, into an exactly_config (tables.c). */
extern const cfg_section exactly_cfg_root_section;

/* pipelines.NAME, into a cfg_pipeline (tables_pipeline.c). */
extern const cfg_section exactly_cfg_pipeline_section;

/* relays.NAME, into a cfg_relay (tables_relay.c), and the rules it
 * follows once the whole file is read (the kafka section, the default
 * schema). Returns 0, or -1 with the message in c. */
extern const cfg_section exactly_cfg_relay_section;
int exactly_cfg_check_relay(cfg_ctx *c, exactly_config *cfg, cfg_relay *r);

/* The longest pipeline name: names end up in group ids, log lines and
 * table rows. */
#define EXACTLY_CFG_MAX_PIPELINE_NAME 100

#endif
