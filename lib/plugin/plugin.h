/*
 * plugin.h - loading a pipeline's handler: a shared object, or a built-in.
 *
 * exactly_plugin_load() opens the object with dlopen(RTLD_NOW | RTLD_LOCAL),
 * finds EXACTLY_ENTRY_SYMBOL, checks the ABI tag, major version, minor
 * version (not newer than the host's) and descriptor size before calling
 * anything, and validates the YAML options
 * against the declared ones. Every refusal names the path and the reason.
 * exactly_plugin_open() then calls the handler's open() with a setup
 * transaction that is rolled back afterwards.
 */
#ifndef EXACTLY_PLUGIN_H
#define EXACTLY_PLUGIN_H

#include <libpq-fe.h>

#include "config.h"
#include "exactly/handler.h"
#include "options.h"

typedef struct exactly_plugin {
    void *dl;                  /* NULL for a built-in */
    const exactly_handler *h;
    exactly_options *opts;
    void *state;
    int opened;
    int fused;                 /* the built-in upsert reading the source itself */
    char *label;               /* path or "builtin:NAME", for messages */
} exactly_plugin;

/* Loads and validates; on failure returns EXACTLY_EPLUGIN or
 * EXACTLY_ECONFIG with one sentence in errbuf. Free with
 * exactly_plugin_free(). */
exactly_err exactly_plugin_load(const exactly_config *cfg,
                                const cfg_pipeline *p, exactly_plugin **out,
                                char *errbuf, size_t errbuf_size);

/* Calls open(); conn must be idle and not in a transaction. */
exactly_err exactly_plugin_open(exactly_plugin *pl, PGconn *conn,
                                const cfg_pipeline *p, int timeout_ms,
                                char *errbuf, size_t errbuf_size);

/* Calls close() if opened, unloads, frees. NULL-safe. */
void exactly_plugin_free(exactly_plugin *pl);

#endif
