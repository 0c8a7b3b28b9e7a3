/*
 * catalog.c - see catalog.h.
 */
#include "catalog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_conn.h"

exactly_err pg_current_role(PGconn *conn, char *out, size_t out_size,
                            char *err, size_t errsz)
{
    PGresult *res = NULL;
    exactly_err rc;

    rc = exactly_pg_exec(conn, "SELECT current_user", 0, NULL, &res, err,
                         errsz);
    if (rc != EXACTLY_OK)
        return rc;
    snprintf(out, out_size, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return EXACTLY_OK;
}

exactly_err pg_parse_time(PGconn *conn, const char *text, int64_t *ms,
                          char *canon, size_t canon_size, char *err,
                          size_t errsz)
{
    const char *params[1] = {text};
    PGresult *res = NULL;
    exactly_err rc;

    /* The server's parser accepts every ISO 8601 form operators type, and
     * the same text then filters timestamptz columns consistently. */
    rc = exactly_pg_exec(conn,
                         "SELECT floor(extract(epoch FROM $1::timestamptz)"
                         " * 1000)::bigint,"
                         " to_char($1::timestamptz AT TIME ZONE 'UTC',"
                         " 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
                         1, params, &res, err, errsz);
    if (rc != EXACTLY_OK) {
        if (PQstatus(conn) == CONNECTION_OK) {
            char why[512];
            snprintf(why, sizeof(why), "%s", err);
            snprintf(err, errsz, "cannot read '%s' as a time: %s", text, why);
            return EXACTLY_EINVAL;
        }
        return rc;
    }
    *ms = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    snprintf(canon, canon_size, "%s", PQgetvalue(res, 0, 1));
    PQclear(res);
    return EXACTLY_OK;
}

exactly_err pg_privileges_missing(PGconn *conn, pg_object_kind kind,
                                  const char *object, const char *privileges,
                                  char **missing, int *exists, char *err,
                                  size_t errsz)
{
    /* $1 the object as SQL text, $2 the privileges; each privilege is
     * asked alone: with a list, has_*_privilege is true if any is held. */
    static const char *const sql[] = {
        [PG_OBJ_SCHEMA] =
            "SELECT to_regnamespace($1) IS NOT NULL, array_to_string(ARRAY("
            "SELECT p FROM unnest(string_to_array($2, ', ')) AS p WHERE NOT"
            " has_schema_privilege(to_regnamespace($1)::oid, p)), ', ')",
        [PG_OBJ_TABLE] =
            "SELECT to_regclass($1) IS NOT NULL, array_to_string(ARRAY("
            "SELECT p FROM unnest(string_to_array($2, ', ')) AS p WHERE NOT"
            " has_table_privilege(to_regclass($1)::oid, p)), ', ')",
        [PG_OBJ_SEQUENCE] =
            "SELECT to_regclass($1) IS NOT NULL, array_to_string(ARRAY("
            "SELECT p FROM unnest(string_to_array($2, ', ')) AS p WHERE NOT"
            " has_sequence_privilege(to_regclass($1)::oid, p)), ', ')",
        [PG_OBJ_FUNCTION] =
            "SELECT to_regprocedure($1) IS NOT NULL, array_to_string(ARRAY("
            "SELECT p FROM unnest(string_to_array($2, ', ')) AS p WHERE NOT"
            " has_function_privilege(to_regprocedure($1)::oid, p)), ', ')",
    };
    const char *params[2] = {object, privileges};
    PGresult *res = NULL;
    exactly_err rc;

    *missing = NULL;
    *exists = 0;
    rc = exactly_pg_exec(conn, sql[kind], 2, params, &res, err, errsz);
    if (rc != EXACTLY_OK)
        return rc;
    *exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    *missing = strdup(*exists ? PQgetvalue(res, 0, 1) : "");
    PQclear(res);
    if (!*missing) {
        snprintf(err, errsz, "out of memory");
        return EXACTLY_ENOMEM;
    }
    return EXACTLY_OK;
}
