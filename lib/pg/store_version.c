/*
 * store_version.c - see store_version.h.
 */
#include "store_version.h"

#include <stdio.h>

#include "store.h"

exactly_err store_check_version(PGconn *conn, const exactly_config *cfg,
                                int *version, char *err, size_t errsz)
{
    int v = 0;
    exactly_err rc;

    rc = exactly_store_version(conn, cfg->postgres.schema, &v, err, errsz);
    if (rc != EXACTLY_OK)
        return rc;
    if (version)
        *version = v;
    if (v != EXACTLY_SCHEMA_VERSION) {
        snprintf(err, errsz,
                 "framework schema %s is at version %d, this exactly needs "
                 "%d: run 'exactly migrate -c %s'",
                 cfg->postgres.schema, v, EXACTLY_SCHEMA_VERSION, cfg->path);
        return EXACTLY_EDATABASE;
    }
    return EXACTLY_OK;
}
