/*
 * tree.h - a YAML file as a tree of cfg_value (config.h), private to
 * lib/config/.
 *
 * Positions are kept for messages, every scalar goes through ${VAR}
 * expansion once (config_env.h), and what YAML allows but a configuration
 * must not hold is refused at its position: duplicate keys, aliases, tags
 * other than !!str, !!map and !!seq, keys that are not plain strings, NUL
 * bytes, nesting deeper than 64 levels, more than one document.
 */
#ifndef EXACTLY_CONFIG_TREE_H
#define EXACTLY_CONFIG_TREE_H

#include <stddef.h>

#include "config/schema.h"

/*
 * Reads c->file into root (zeroed by the caller). A file with no document
 * gives an empty scalar at 1:1. Returns 0, or -1 with the message in c;
 * root then holds what was built so far, for exactly_cfg_value_clear().
 */
int exactly_cfg_read_tree(cfg_ctx *c, cfg_value *root);

/* Starts a new count for exactly_config_key_comparisons(). */
void exactly_cfg_tree_reset_stats(void);

/*
 * The whole of c->file, NUL-terminated, in a new buffer the caller frees;
 * *len gets its length. Only a regular file of at most 16 MiB is read.
 * NULL on failure, with the message in c.
 */
char *exactly_cfg_read_file(cfg_ctx *c, size_t *len);

#endif
