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
    char open_sqlstate[6];     /* the last open()'s failure's, "" for none */
} exactly_plugin;

/* Loads and validates; on failure returns EXACTLY_EPLUGIN or
 * EXACTLY_ECONFIG with one sentence in errbuf. Free with
 * exactly_plugin_free(). */
exactly_err exactly_plugin_load(const exactly_config *cfg,
                                const cfg_pipeline *p, exactly_plugin **out,
                                char *errbuf, size_t errbuf_size);

/*
 * Calls open() with a setup transaction on conn, which must be idle and
 * not in a transaction. Returns EXACTLY_OK; EXACTLY_ERETRY when the
 * failure goes away by itself (a query of open() ended on a transient
 * SQLSTATE: a lock or statement timeout, a lost connection, a shutdown or
 * failover; the connection is no longer usable; the setup could not be
 * started or ended; or open() returned EXACTLY_ERETRY with no query
 * failing): call it again later, on a new connection when conn is no
 * longer CONNECTION_OK; else EXACTLY_EPLUGIN (the handler refused: its
 * options, a missing table or column, a privilege). errbuf says why, with
 * the server's message; pl->open_sqlstate holds the SQLSTATE ("" when
 * none).
 */
exactly_err exactly_plugin_open(exactly_plugin *pl, PGconn *conn,
                                const cfg_pipeline *p, int timeout_ms,
                                char *errbuf, size_t errbuf_size);

/* exactly_plugin_load for an extra writer (`exactly reprocess`, `exactly
 * dlq replay`): the built-in upsert is the form that locks the source rows
 * it reads itself (exactly_builtin_upsert_extra); a plugin is loaded as
 * for the worker (what it must do: plugins/README.md). */
exactly_err exactly_plugin_load_extra(const exactly_config *cfg,
                                      const cfg_pipeline *p,
                                      exactly_plugin **out, char *errbuf,
                                      size_t errbuf_size);

/* Calls close() if opened, unloads, frees. NULL-safe. */
void exactly_plugin_free(exactly_plugin *pl);

#endif
