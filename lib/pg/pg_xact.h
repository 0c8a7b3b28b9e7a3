/*
 * pg_xact.h - what became of a transaction whose COMMIT went unanswered
 * (DESIGN §3: outcome unknown, read back to decide), for the operator
 * commands that write in one transaction (`exactly offsets reset`,
 * `exactly dlq replay`).
 *
 * The transaction is named by its id (pg_current_xact_id(), taken inside
 * it) and asked about with pg_xact_status() on a new connection. Its
 * session cannot name it: through a pooler (PgBouncer in session mode)
 * PQbackendPID() is the pooler's process, not the server's. Both
 * functions need PostgreSQL 13 or later, as the framework's tables do.
 */
#ifndef EXACTLY_PG_XACT_H
#define EXACTLY_PG_XACT_H

#include <stddef.h>

#include <libpq-fe.h>

#include "config.h"
#include "exactly/error.h"

/* Room for an xid8 in decimal and its NUL. */
#define EXACTLY_XID_SIZE 24

typedef enum exactly_xact_outcome {
    EXACTLY_XACT_COMMITTED,
    EXACTLY_XACT_ABORTED,
    EXACTLY_XACT_UNKNOWN /* still in progress at the bound, or not known */
} exactly_xact_outcome;

/* Inside the transaction open on conn: its id, assigned now if it had
 * none, as text into xid (EXACTLY_XID_SIZE bytes). Returns the
 * exactly_err of exactly_pg_exec(), the reason in err. */
exactly_err exactly_pg_xact_id(PGconn *conn, char *xid, size_t xidsz,
                               char *err, size_t errsz);

/*
 * Asks on conn (a connection other than the one that sent COMMIT) what
 * became of transaction xid, again while it is "in progress" (a session
 * cut off from its client may still be finishing its commit) for at most
 * exactly_pg_wait_bound_ms(cfg). EXACTLY_XACT_COMMITTED or
 * EXACTLY_XACT_ABORTED are the server's answer; EXACTLY_XACT_UNKNOWN
 * says why in why (still in progress, the server does not know the id, the
 * question failed).
 */
exactly_xact_outcome exactly_pg_xact_outcome(PGconn *conn,
                                             const exactly_config *cfg,
                                             const char *xid, char *why,
                                             size_t whysz);

#endif
