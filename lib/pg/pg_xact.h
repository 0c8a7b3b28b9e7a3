/*
 * pg_xact.h - what became of a transaction whose COMMIT went unanswered
 * (DESIGN §3: outcome unknown, read back to decide), for the operator
 * commands that write in one transaction (`exactly offsets reset`,
 * `exactly dlq replay`).
 *
 * The transaction is named by a mark it writes itself: a row of
 * SCHEMA.commit_marks with a unique token (store_marks.h), inserted just
 * before COMMIT. The mark is there, on whatever server answers, exactly
 * when that transaction committed there; nothing else can put it there.
 * Marks older than a day are deleted, so the absence of one written more
 * than 23 hours before the question (its token says when) tells nothing.
 *
 * Neither its session nor its id can name it. Through a pooler (PgBouncer
 * in session mode) PQbackendPID() is the pooler's process, not the
 * server's. An id is a number in one server's history, and the same
 * history hands it out again: a transaction that wrote nothing to the WAL
 * files before a crash is forgotten by crash recovery, which keeps the
 * system identifier and the timeline and gives its id to the next
 * transaction; a promoted standby that never saw it may have given its id
 * to another one. pg_xact_status() of the id then says "committed" of a
 * transaction that is not this one.
 *
 * To ask, a new connection inserts the same token again, in a transaction
 * it always rolls back: the primary key makes that insert wait while a
 * transaction that inserted the token is still under way (a session cut
 * off from its client may still be finishing its commit), then conflict
 * when that transaction committed, or succeed when no committed
 * transaction holds the token.
 */
#ifndef EXACTLY_PG_XACT_H
#define EXACTLY_PG_XACT_H

#include <stddef.h>

#include <libpq-fe.h>

#include "config.h"
#include "exactly/error.h"

/* Room for a token (a uuid as text) and its NUL. */
#define EXACTLY_XACT_MARK_SIZE 40

/* A transaction as its outcome is asked about later. */
typedef struct exactly_xact_ref {
    char mark[EXACTLY_XACT_MARK_SIZE]; /* its mark's token; "" for none */
} exactly_xact_ref;

typedef enum exactly_xact_outcome {
    EXACTLY_XACT_COMMITTED,
    EXACTLY_XACT_ABORTED,
    EXACTLY_XACT_UNKNOWN /* still in progress at the bound, or not known */
} exactly_xact_outcome;

/* Inside the transaction open on conn, last before COMMIT: writes its
 * mark into schema's commit_marks, the token into ref->mark. Returns the
 * exactly_err of exactly_pg_exec(), the reason in err. */
exactly_err exactly_pg_xact_mark(PGconn *conn, const char *schema,
                                 exactly_xact_ref *ref, char *err,
                                 size_t errsz);

/*
 * Asks on conn (a connection other than the one that sent COMMIT) what
 * became of the transaction that wrote ref's mark, waiting while it is
 * still under way for at most exactly_pg_wait_bound_ms(cfg).
 * EXACTLY_XACT_COMMITTED: its mark is there (then deleted, best effort);
 * EXACTLY_XACT_ABORTED: it is not, no transaction is writing it, and it
 * is too young to have been deleted as old, so the transaction did not
 * commit on this server and no longer can; EXACTLY_XACT_UNKNOWN says why
 * in why (still under way at the bound, a standby in recovery that may
 * not have received it yet, the question failed, a mark written more than
 * 23 hours ago).
 */
exactly_xact_outcome exactly_pg_xact_outcome(PGconn *conn,
                                             const exactly_config *cfg,
                                             const exactly_xact_ref *ref,
                                             char *why, size_t whysz);

/* After its COMMIT succeeded, on conn: deletes ref's mark and marks older
 * than a day (left by a command that ended before it could delete its
 * own, harmless meanwhile; or by one frozen that long, whose question
 * then answers unknown). Best effort: a failure is logged. */
void exactly_pg_xact_forget(PGconn *conn, const char *schema,
                            const exactly_xact_ref *ref);

#endif
