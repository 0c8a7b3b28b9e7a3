/*
 * store_exec.h - what the store_*.c files share: one statement on a table
 * of the framework schema, and the small conversions of its results.
 *
 * Every statement names the schema as %1$s in its text; the schema is
 * quoted by exactly_pg_ident() and every value travels as a parameter.
 */
#ifndef EXACTLY_STORE_EXEC_H
#define EXACTLY_STORE_EXEC_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "exactly/error.h"

/*
 * Runs fmt with the quoted schema as %1$s and params, as exactly_pg_exec()
 * does (res may be NULL). EXACTLY_ENOMEM with "out of memory" in err when
 * the statement cannot be built.
 */
exactly_err store_exec(PGconn *conn, const char *schema, const char *fmt,
                       int n_params, const char *const *params,
                       PGresult **res, char *err, size_t errsz);

/* fmt with the already quoted schema schema_q as %1$s, malloc'd; NULL
 * when out of memory. For statements kept and run later (the cycle's) and
 * for DDL. */
char *store_format_schema(const char *fmt, const char *schema_q);

/* Field (row, col) as a malloc'd string, NULL for SQL NULL; *oom is set
 * when a non-NULL value cannot be copied. */
char *store_strdup(const PGresult *res, int row, int col, int *oom);

/* Field (row, col) as an integer (0 for SQL NULL). */
int64_t store_int64(const PGresult *res, int row, int col);

/* Frees n malloc'd strings and the array; NULL-safe. */
void store_strings_free(char **v, size_t n);

#endif
