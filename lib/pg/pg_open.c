/*
 * pg_open.c - a connection opened and checked before a batch uses it (see
 * pg_open.h).
 */
#include "pg_open.h"

#include <stdio.h>

#include "log.h"
#include "pg_conn.h"
#include "store.h"

/* The schema's version, checked. EXACTLY_OK, EXACTLY_ERETRY (not read) or
 * EXACTLY_EDATABASE (another version). */
static exactly_err check_version(PGconn *conn, const exactly_config *cfg)
{
    char err[1024], fix[4200];
    int version = 0;

    if (exactly_store_version(conn, cfg->postgres.schema, &version, err,
                              sizeof(err)) != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_WARN, "postgres", "cannot read schema version",
                    LOG_STR("error", err));
        return EXACTLY_ERETRY;
    }
    if (version == EXACTLY_SCHEMA_VERSION)
        return EXACTLY_OK;
    snprintf(fix, sizeof(fix), "run 'exactly migrate -c %s'", cfg->path);
    exactly_log(EXACTLY_LOG_ERROR, "postgres",
                "the framework schema is not at the version this exactly "
                "needs",
                LOG_STR("schema", cfg->postgres.schema),
                LOG_INT("version", version),
                LOG_INT("needs", EXACTLY_SCHEMA_VERSION), LOG_STR("fix", fix));
    return EXACTLY_EDATABASE;
}

exactly_err exactly_pg_open_checked(const exactly_config *cfg,
                                    const char *app_name, int attempt,
                                    PGconn **out)
{
    char err[1024];
    PGconn *conn;
    exactly_err rc;

    *out = NULL;
    conn = exactly_pg_connect_unset(cfg, app_name, err, sizeof(err));
    if (!conn) {
        exactly_log(EXACTLY_LOG_WARN, "postgres", "connect failed",
                    LOG_INT("attempt", attempt), LOG_STR("error", err));
        return EXACTLY_ERETRY;
    }
    /* A pooler in transaction mode would lose the session's timeouts:
     * checked before they are set, so that such a pooler's backend is
     * never left with them (pg_conn.h). */
    rc = exactly_pg_check_session(conn, cfg, err, sizeof(err));
    if (rc == EXACTLY_ECONFIG) {
        exactly_log(EXACTLY_LOG_ERROR, "postgres",
                    "refusing to run through this connection",
                    LOG_STR("error", err));
        rc = EXACTLY_EDATABASE;
    } else if (rc != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_WARN, "postgres",
                    "cannot check the connection", LOG_STR("error", err));
        rc = EXACTLY_ERETRY;
    } else if (exactly_pg_apply_settings(conn, cfg, err, sizeof(err)) != 0) {
        exactly_log(EXACTLY_LOG_WARN, "postgres", "connect failed",
                    LOG_INT("attempt", attempt), LOG_STR("error", err));
        rc = EXACTLY_ERETRY;
    } else {
        rc = check_version(conn, cfg);
    }
    if (rc != EXACTLY_OK) {
        PQfinish(conn);
        return rc;
    }
    *out = conn;
    return EXACTLY_OK;
}

exactly_err exactly_pg_open_session(const exactly_config *cfg,
                                    const char *app_name, PGconn **out,
                                    char *why, size_t why_size)
{
    exactly_err rc;

    /* The session settings only once the check passed (pg_conn.h). */
    *out = exactly_pg_connect_unset(cfg, app_name, why, why_size);
    if (!*out)
        return EXACTLY_ERETRY;
    rc = exactly_pg_check_session(*out, cfg, why, why_size);
    if (rc == EXACTLY_OK &&
        exactly_pg_apply_settings(*out, cfg, why, why_size) == 0)
        return EXACTLY_OK;
    PQfinish(*out);
    *out = NULL;
    return rc == EXACTLY_ECONFIG ? EXACTLY_ECONFIG : EXACTLY_ERETRY;
}

exactly_err exactly_pg_connect_own_session(const exactly_config *cfg,
                                           const char *app_name, PGconn **out,
                                           char *err, size_t errsz)
{
    char why[1536];
    exactly_err rc;

    rc = exactly_pg_open_session(cfg, app_name, out, why, sizeof(why));
    if (rc == EXACTLY_OK)
        return EXACTLY_OK;
    if (rc == EXACTLY_ECONFIG)
        snprintf(err, errsz, "refusing to run through this connection: %s",
                 why);
    else /* "cannot connect to PostgreSQL: ...", "cannot check the session: ..." */
        snprintf(err, errsz, "%s", why);
    return rc == EXACTLY_ECONFIG ? EXACTLY_ECONFIG : EXACTLY_EDATABASE;
}
