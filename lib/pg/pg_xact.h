/*
 * pg_xact.h - what became of a transaction whose COMMIT went unanswered
 * (DESIGN §3: outcome unknown, read back to decide), for the operator
 * commands that write in one transaction (`exactly offsets reset`,
 * `exactly dlq replay`).
 *
 * The transaction is named by its id (pg_current_xact_id(), taken inside
 * it) and asked about with pg_xact_status() on a new connection. Its
 * session cannot name it: through a pooler (PgBouncer in session mode)
 * PQbackendPID() is the pooler's process, not the server's.
 *
 * An id is a number in one server's history, not a name of the
 * transaction: after a failover the new connection can reach a promoted
 * standby that never saw the transaction, whose counter was behind, so the
 * same id is unused there or names a later transaction of somebody else,
 * committed or not. The id is therefore taken with the history it belongs
 * to (the cluster's system identifier and the timeline being written,
 * which a promotion or a point-in-time restore changes), and asked about
 * only on a server that is writing that same history; anywhere else the
 * outcome is unknown. pg_current_xact_id() and pg_xact_status() need
 * PostgreSQL 13 or later, as the framework's tables do.
 */
#ifndef EXACTLY_PG_XACT_H
#define EXACTLY_PG_XACT_H

#include <stddef.h>

#include <libpq-fe.h>

#include "config.h"
#include "exactly/error.h"

/* Room for an xid8 in decimal and its NUL. */
#define EXACTLY_XID_SIZE 24
/* Room for "system S timeline T" and its NUL. */
#define EXACTLY_XACT_HISTORY_SIZE 64

/* A transaction as its outcome is asked about later. */
typedef struct exactly_xact_ref {
    char xid[EXACTLY_XID_SIZE];                 /* its id (xid8, decimal) */
    char history[EXACTLY_XACT_HISTORY_SIZE];    /* "system S timeline T" */
} exactly_xact_ref;

typedef enum exactly_xact_outcome {
    EXACTLY_XACT_COMMITTED,
    EXACTLY_XACT_ABORTED,
    EXACTLY_XACT_UNKNOWN /* still in progress at the bound, or not known */
} exactly_xact_outcome;

/* Before the transaction, on the connection that will run it: the history
 * of its server into ref->history ("" when it cannot be read, logged; a
 * lost COMMIT is then reported unknown). Read outside the transaction so
 * that a server without these functions still runs the command: a
 * failed statement would abort the transaction. A running primary keeps
 * its timeline, so it is the transaction's history. */
void exactly_pg_xact_history(PGconn *conn, exactly_xact_ref *ref);

/* Inside the transaction open on conn: its id, assigned now if it had
 * none, into ref->xid. Returns the exactly_err of exactly_pg_exec(), the
 * reason in err. */
exactly_err exactly_pg_xact_id(PGconn *conn, exactly_xact_ref *ref,
                               char *err, size_t errsz);

/*
 * Asks on conn (a connection other than the one that sent COMMIT) what
 * became of transaction ref, again while it is "in progress" (a session
 * cut off from its client may still be finishing its commit) for at most
 * exactly_pg_wait_bound_ms(cfg). EXACTLY_XACT_COMMITTED or
 * EXACTLY_XACT_ABORTED are the answer of a server writing ref's history;
 * EXACTLY_XACT_UNKNOWN says why in why (the server is on another history
 * or a standby, still in progress, the server does not know the id, the
 * question failed).
 */
exactly_xact_outcome exactly_pg_xact_outcome(PGconn *conn,
                                             const exactly_config *cfg,
                                             const exactly_xact_ref *ref,
                                             char *why, size_t whysz);

#endif
