/* lookup.h - the statement that reads a batch's entities. */
#ifndef EXACTLY_LOOKUP_H
#define EXACTLY_LOOKUP_H

#include <libpq-fe.h>

#include "config.h"

/*
 * The pipeline's lookup ($1 a text array literal of IDs) and the result
 * column that holds the ID, both malloc'd (the caller frees). A table
 * lookup is built with its identifiers quoted by libpq; an SQL lookup is
 * the configured text. Returns EXACTLY_OK or EXACTLY_ENOMEM (both NULL).
 */
exactly_err exactly_lookup_sql(PGconn *conn, const cfg_pipeline *p, char **sql,
                               char **key_column);

/*
 * The index of the lookup result's column named exactly name (byte for
 * byte, as the worker matches its key column; PQfnumber would fold case),
 * or -1.
 */
int exactly_lookup_column(const PGresult *res, const char *name);

#endif
