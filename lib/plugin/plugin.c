#include "plugin.h"

#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handler_upsert.h"
#include "host.h"
#include "pg_conn.h"
#include "txn.h"

/* The smallest descriptor this runtime can use: everything up to close. */
#define MIN_DESCRIPTOR_SIZE                                                    \
    (offsetof(exactly_handler, close) + sizeof(((exactly_handler *)0)->close))

static exactly_err check_descriptor(const exactly_handler *h,
                                    const char *label, char *errbuf,
                                    size_t errbuf_size)
{
    if (!h) {
        snprintf(errbuf, errbuf_size, "plugin %s: %s() returned NULL", label,
                 EXACTLY_ENTRY_SYMBOL);
        return EXACTLY_EPLUGIN;
    }
    if (h->abi_tag != EXACTLY_ABI_TAG) {
        snprintf(errbuf, errbuf_size,
                 "plugin %s: not an exactly handler (ABI tag 0x%08x, expected "
                 "0x%08x)",
                 label, h->abi_tag, EXACTLY_ABI_TAG);
        return EXACTLY_EPLUGIN;
    }
    if (h->abi_major != EXACTLY_ABI_MAJOR) {
        snprintf(errbuf, errbuf_size,
                 "plugin %s: handler '%s' was built for ABI %u, this exactly "
                 "speaks ABI %d",
                 label, h->name ? h->name : "?", h->abi_major,
                 EXACTLY_ABI_MAJOR);
        return EXACTLY_EPLUGIN;
    }
    /* A newer minor may read members this host does not have (a 1.1
     * plugin reads batch->reprocess_run, which a 1.0 host never set);
     * an older one sees a prefix of every struct, which is safe. */
    if (h->abi_minor > EXACTLY_ABI_MINOR) {
        snprintf(errbuf, errbuf_size,
                 "plugin %s: handler '%s' was built for ABI %u.%u, this "
                 "exactly speaks ABI %d.%d",
                 label, h->name ? h->name : "?", h->abi_major, h->abi_minor,
                 EXACTLY_ABI_MAJOR, EXACTLY_ABI_MINOR);
        return EXACTLY_EPLUGIN;
    }
    if (h->struct_size < MIN_DESCRIPTOR_SIZE) {
        snprintf(errbuf, errbuf_size,
                 "plugin %s: descriptor is %u bytes, at least %zu expected",
                 label, h->struct_size, (size_t)MIN_DESCRIPTOR_SIZE);
        return EXACTLY_EPLUGIN;
    }
    if (!h->name || !h->open || !h->apply) {
        snprintf(errbuf, errbuf_size,
                 "plugin %s: descriptor lacks %s", label,
                 !h->name ? "a name" : !h->open ? "open()" : "apply()");
        return EXACTLY_EPLUGIN;
    }
    if (h->n_options > 0 && !h->options) {
        snprintf(errbuf, errbuf_size,
                 "plugin %s: declares %zu options but no table", label,
                 h->n_options);
        return EXACTLY_EPLUGIN;
    }
    return EXACTLY_OK;
}

/* The built-in upsert fuses the lookup into its write when the lookup is a
 * plain read of one table and no missing row needs reporting. */
static int can_fuse(const cfg_pipeline *p)
{
    return p->lookup.table != NULL &&
           (p->lookup.on_missing == CFG_MISSING_SKIP ||
            p->lookup.on_missing == CFG_MISSING_HANDLER);
}

static exactly_err load(const exactly_config *cfg, const cfg_pipeline *p,
                        int extra_writer, exactly_plugin **out, char *errbuf,
                        size_t errbuf_size)
{
    exactly_plugin *pl = calloc(1, sizeof(*pl));
    exactly_err rc = EXACTLY_ENOMEM;

    *out = NULL;
    if (!pl)
        goto fail;
    if (p->handler.builtin) {
        size_t n = strlen(p->handler.builtin) + 9;
        pl->label = malloc(n);
        if (!pl->label)
            goto fail;
        snprintf(pl->label, n, "builtin:%s", p->handler.builtin);
        if (strcmp(p->handler.builtin, "upsert") != 0) {
            snprintf(errbuf, errbuf_size, "%s: unknown builtin handler '%s' "
                     "(known: upsert)", cfg->path, p->handler.builtin);
            rc = EXACTLY_ECONFIG;
            goto fail;
        }
        pl->fused = can_fuse(p);
        pl->h = extra_writer ? exactly_builtin_upsert_extra(pl->fused)
                : pl->fused  ? exactly_builtin_upsert_fused()
                             : exactly_builtin_upsert();
    } else {
        exactly_handler_entry_fn entry;
        void *sym;

        pl->label = strdup(p->handler.plugin);
        if (!pl->label)
            goto fail;
        pl->dl = dlopen(p->handler.plugin, RTLD_NOW | RTLD_LOCAL);
        if (!pl->dl) {
            snprintf(errbuf, errbuf_size, "plugin %s: cannot load: %s",
                     pl->label, dlerror());
            rc = EXACTLY_EPLUGIN;
            goto fail;
        }
        (void)dlerror();
        sym = dlsym(pl->dl, EXACTLY_ENTRY_SYMBOL);
        if (!sym) {
            snprintf(errbuf, errbuf_size,
                     "plugin %s: no symbol %s (is it built with "
                     "EXACTLY_HANDLER()?)",
                     pl->label, EXACTLY_ENTRY_SYMBOL);
            rc = EXACTLY_EPLUGIN;
            goto fail;
        }
        /* POSIX guarantees the object-to-function pointer conversion that
         * dlsym needs. */
        memcpy(&entry, &sym, sizeof(entry));
        pl->h = entry();
    }
    rc = check_descriptor(pl->h, pl->label, errbuf, errbuf_size);
    if (rc != EXACTLY_OK)
        goto fail;
    rc = exactly_options_build(cfg->path, pl->h->name, &p->handler.options,
                               pl->h->options, pl->h->n_options, &pl->opts,
                               errbuf, errbuf_size);
    if (rc != EXACTLY_OK)
        goto fail;
    *out = pl;
    return EXACTLY_OK;

fail:
    exactly_plugin_free(pl);
    return rc;
}

exactly_err exactly_plugin_load(const exactly_config *cfg,
                                const cfg_pipeline *p, exactly_plugin **out,
                                char *errbuf, size_t errbuf_size)
{
    return load(cfg, p, 0, out, errbuf, errbuf_size);
}

exactly_err exactly_plugin_load_extra(const exactly_config *cfg,
                                      const cfg_pipeline *p,
                                      exactly_plugin **out, char *errbuf,
                                      size_t errbuf_size)
{
    return load(cfg, p, 1, out, errbuf, errbuf_size);
}

/*
 * The SQLSTATE open() failed on, "" when none (no server error), and
 * whether that failure goes away by itself. The server's answer decides
 * when a query of the setup transaction failed: the first failure (what
 * the handler saw; a later query only finds the transaction aborted), read
 * as the batches read it (exactly_pg_class_of: a lost connection, a lock
 * or statement timeout, a shutdown, the server starting up, resources are
 * transient; a privilege, a missing table or column, bad data are not,
 * whatever open() returned). A connection no longer usable is transient
 * too. With neither, open() itself says: EXACTLY_ERETRY is "not now".
 */
static int open_transient(exactly_err rc, const exactly_txn *setup,
                          PGconn *conn, char sqlstate[6])
{
    const char *st = setup->query_failed ? setup->query_sqlstate
                     : setup->failed     ? setup->sqlstate
                                         : "";

    snprintf(sqlstate, 6, "%s", st);
    if (PQstatus(conn) != CONNECTION_OK)
        return 1;
    if (setup->query_failed || setup->failed)
        return exactly_pg_class_of(st) == PG_TRANSIENT;
    return rc == EXACTLY_ERETRY;
}

exactly_err exactly_plugin_open(exactly_plugin *pl, PGconn *conn,
                                const cfg_pipeline *p, int timeout_ms,
                                char *errbuf, size_t errbuf_size)
{
    exactly_txn setup = {0};
    exactly_open_args args;
    exactly_err rc;
    exactly_err end_rc;

    memset(&args, 0, sizeof(args));
    args.host = exactly_plugin_host();
    args.opts = pl->opts;
    args.pipeline = p->name;
    args.setup = &setup;
    args.lookup_table = p->lookup.table;
    args.lookup_id_column = p->lookup.table ? p->lookup.id_column : NULL;
    args.id_type = exactly_id_type_name(p->id.type);
    args.errbuf = errbuf;
    args.errbuf_size = errbuf_size;
    errbuf[0] = '\0';
    pl->open_sqlstate[0] = '\0';

    rc = exactly_txn_start(&setup, conn, timeout_ms);
    if (rc == EXACTLY_OK)
        rc = exactly_txn_send(&setup, TXN_CONTROL, "BEGIN READ ONLY", 0, NULL,
                              NULL);
    if (rc != EXACTLY_OK) {
        /* Not the handler's doing: the connection, or memory. */
        snprintf(errbuf, errbuf_size, "plugin %s: cannot start setup: %s",
                 pl->label, setup.errmsg);
        rc = EXACTLY_ERETRY;
        goto cleanup;
    }
    rc = pl->h->open(&args, &pl->state);
    if (rc != EXACTLY_OK) {
        /* The server's reason (a missing unique index, a lock timeout) is
         * what the user needs; the handler only saw that its query failed. */
        char msg[1024];
        int transient = open_transient(rc, &setup, conn, pl->open_sqlstate);

        snprintf(msg, sizeof(msg), "%s", errbuf[0] ? errbuf : "open() failed");
        snprintf(errbuf, errbuf_size, "plugin %s: handler '%s' %s: %s%s%s",
                 pl->label, pl->h->name,
                 transient ? "cannot open for now" : "refused to open", msg,
                 setup.failed ? "; server said: " : "",
                 setup.failed ? setup.errmsg : "");
        rc = transient ? EXACTLY_ERETRY : EXACTLY_EPLUGIN;
    } else {
        pl->opened = 1;
    }
    /* The setup transaction never writes: whatever open() did is undone. */
    (void)exactly_txn_send(&setup, TXN_CONTROL, "ROLLBACK", 0, NULL, NULL);
    end_rc = exactly_txn_sync(&setup);
    if (rc == EXACTLY_OK && end_rc == EXACTLY_ERETRY) {
        snprintf(errbuf, errbuf_size, "plugin %s: setup failed: %s",
                 pl->label, setup.errmsg);
        rc = EXACTLY_ERETRY;
    }

cleanup:
    exactly_txn_finish(&setup);
    exactly_txn_clear(&setup);
    return rc;
}

void exactly_plugin_free(exactly_plugin *pl)
{
    if (!pl)
        return;
    if (pl->opened && pl->h->close)
        pl->h->close(pl->state);
    exactly_options_free(pl->opts);
    if (pl->dl)
        dlclose(pl->dl);
    free(pl->label);
    free(pl);
}
