/*
 * catalog.c - see catalog.h.
 */
#include "catalog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
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

/* The sequence of the id column of table name in schema (NULL: the
 * first of the search path that has it): one that depends on the column
 * as pg_get_serial_sequence() finds it (a serial column, an identity
 * column, a sequence owned by the column), else one the column's default
 * depends on (nextval('any_name')). Read from the catalogs alone, whose
 * rows every role may read: no privilege on the schema is needed, and a
 * missing table is a row saying so, not an error. */
static const char id_sequence_sql[] =
    "WITH t AS (SELECT c.oid FROM pg_class c JOIN pg_namespace n"
    "  ON n.oid = c.relnamespace WHERE c.relname = $2 AND c.relkind IN"
    "  ('r', 'p') AND ($1::text IS NULL AND pg_table_is_visible(c.oid)"
    "  OR n.nspname = $1) LIMIT 1),"
    " col AS (SELECT a.attrelid, a.attnum FROM pg_attribute a JOIN t"
    "  ON a.attrelid = t.oid WHERE a.attname = 'id' AND NOT a.attisdropped),"
    " seq AS (SELECT coalesce("
    "  (SELECT d.objid FROM col JOIN pg_depend d"
    "   ON d.refclassid = 'pg_class'::regclass AND d.refobjid = col.attrelid"
    "   AND d.refobjsubid = col.attnum AND d.classid = 'pg_class'::regclass"
    "   AND d.deptype IN ('a', 'i')"
    "   JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'"
    "   ORDER BY d.objid LIMIT 1),"
    "  (SELECT d.refobjid FROM col JOIN pg_attrdef ad"
    "   ON ad.adrelid = col.attrelid AND ad.adnum = col.attnum"
    "   JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass"
    "   AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass"
    "   JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'"
    "   ORDER BY d.refobjid LIMIT 1)) AS oid)"
    " SELECT EXISTS (SELECT 1 FROM t), n.nspname, c.relname"
    " FROM seq LEFT JOIN pg_class c ON c.oid = seq.oid"
    " LEFT JOIN pg_namespace n ON n.oid = c.relnamespace";

exactly_err pg_id_sequence(PGconn *conn, const char *table_schema,
                           const char *table, int *table_exists,
                           char **schema, char **name, char *err,
                           size_t errsz)
{
    const char *params[2] = {table_schema, table};
    PGresult *res = NULL;
    exactly_err rc;

    *table_exists = 0;
    *schema = *name = NULL;
    rc = exactly_pg_exec(conn, id_sequence_sql, 2, params, &res, err, errsz);
    if (rc != EXACTLY_OK)
        return rc;
    *table_exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    if (!PQgetisnull(res, 0, 1) && !PQgetisnull(res, 0, 2)) {
        *schema = strdup(PQgetvalue(res, 0, 1));
        *name = strdup(PQgetvalue(res, 0, 2));
        if (!*schema || !*name) {
            free(*schema);
            free(*name);
            *schema = *name = NULL;
            rc = EXACTLY_ENOMEM;
            snprintf(err, errsz, "%s", exactly_strerror(rc));
        }
    }
    PQclear(res);
    return rc;
}
