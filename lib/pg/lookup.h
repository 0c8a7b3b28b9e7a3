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
 * The lookup of an extra writer (`exactly reprocess`, `exactly dlq
 * replay`), which has no queue behind it to correct a write made from a
 * stale read: exactly_lookup_sql's statement made to take a SHARE lock on
 * every source row it returns, in the order of the key column (ORDER BY
 * key FOR SHARE; a lookup: {sql} is wrapped as SELECT * FROM (sql) AS q
 * ORDER BY q.key FOR SHARE, which locks the rows of the tables it reads,
 * in that order when PostgreSQL can fold the subquery into it: no LIMIT,
 * ORDER BY, CTE or FOR ... of its own). Held to the writer's COMMIT, the locks make a change of such
 * a row wait until then, so that the change's message is applied after
 * the writer's write, from the new state; a change committed before the
 * lookup is what the lookup reads (READ COMMITTED: a locking read returns
 * the latest committed version).
 *
 * PostgreSQL refuses to lock some queries (aggregates, DISTINCT, GROUP BY,
 * set operations, window functions, the nullable side of an outer join:
 * SQLSTATE 0A000), and locks only for a role with UPDATE on the table.
 * The locked form is therefore run once on conn, which must be idle
 * outside a transaction, with no IDs; when it is refused for one of those
 * reasons (SQLSTATE 0A000 or 42501) and the plain form runs, the plain
 * form is returned and *unlocked is the server's reason (malloc'd; the
 * caller warns, since its writes can then commit a stale read, and frees
 * it); else (it ran, or failed otherwise: a timeout, a lost connection,
 * which its batches then meet) the locked form, and *unlocked is NULL.
 * Returns what exactly_lookup_sql does.
 */
exactly_err exactly_lookup_sql_shared(PGconn *conn, const cfg_pipeline *p,
                                      char **sql, char **key_column,
                                      char **unlocked);

/*
 * The index of the lookup result's column named exactly name (byte for
 * byte, as the worker matches its key column; PQfnumber would fold case),
 * or -1.
 */
int exactly_lookup_column(const PGresult *res, const char *name);

#endif
