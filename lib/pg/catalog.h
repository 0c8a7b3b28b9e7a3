/*
 * catalog.h - questions the operator commands ask the server itself, not
 * the framework's tables: who am I, what time is this text, which
 * privileges does this role lack, which sequence numbers a table's ids.
 *
 * Every function writes one sentence into err when it fails.
 */
#ifndef EXACTLY_CATALOG_H
#define EXACTLY_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "exactly/error.h"

/* The connected role's name into out. */
exactly_err pg_current_role(PGconn *conn, char *out, size_t out_size,
                            char *err, size_t errsz);

/*
 * Parses a point in time the way PostgreSQL reads timestamptz (ISO 8601
 * such as 2024-05-01T12:00:00Z, or a date; without a zone the server's
 * TimeZone applies). Sets *ms to milliseconds since the epoch and writes
 * the canonical UTC form into canon. EXACTLY_EINVAL when the server
 * rejects the text.
 */
exactly_err pg_parse_time(PGconn *conn, const char *text, int64_t *ms,
                          char *canon, size_t canon_size, char *err,
                          size_t errsz);

/* The kinds of object a privilege is asked about. */
typedef enum pg_object_kind {
    PG_OBJ_SCHEMA,
    PG_OBJ_TABLE,
    PG_OBJ_SEQUENCE,
    PG_OBJ_FUNCTION
} pg_object_kind;

/*
 * Which of privileges (", "-separated) the connected role lacks on object
 * (as SQL, identifiers quoted) through has_*_privilege, so membership
 * counts: *missing receives them (", "-separated, "" when none; malloc'd)
 * and *exists whether the object exists (nothing is missing on one that
 * does not). Runs in the caller's transaction.
 */
exactly_err pg_privileges_missing(PGconn *conn, pg_object_kind kind,
                                  const char *object, const char *privileges,
                                  char **missing, int *exists, char *err,
                                  size_t errsz);

/*
 * The sequence that numbers the column id of table (in table_schema, or
 * with NULL the first schema of the search path that has it; names
 * unquoted, as the catalog holds them): the one pg_get_serial_sequence()
 * would name (serial or identity), else one that the column's default
 * draws from (nextval of a sequence of any name). Reads the catalogs
 * only, so the role needs no privilege on the table or its schema.
 * *table_exists says whether the table exists; *schema and *name
 * (malloc'd, unquoted) the sequence's, both NULL when the column has none.
 */
exactly_err pg_id_sequence(PGconn *conn, const char *table_schema,
                           const char *table, int *table_exists,
                           char **schema, char **name, char *err,
                           size_t errsz);

#endif
