/*
 * pg_conn.h - one PostgreSQL connection of a worker, and the one place that
 * decides what a SQLSTATE means for the cycle.
 */
#ifndef EXACTLY_PG_CONN_H
#define EXACTLY_PG_CONN_H

#include <libpq-fe.h>

#include "config.h"

/* Raised by the fence function when the compare-and-set finds no row. */
#define EXACTLY_SQLSTATE_FENCED "EX001"

/*
 * Opens a connection with the conninfo's own settings plus the session
 * settings from cfg (statement_timeout, lock_timeout,
 * idle_in_transaction_session_timeout, SET once connected, after the
 * conninfo's own options;
 * app_name as application_name; connect_timeout and libpq keepalives
 * unless the conninfo sets them), in non-blocking mode. Returns NULL and
 * writes the reason (every password hidden, libpq's parse errors replaced
 * by a sentence of our own) into errbuf on failure. For the connections
 * that need no session of their own (the read-only commands); the others
 * go through exactly_pg_open_session (pg_open.h) or the two calls below.
 */
PGconn *exactly_pg_connect(const exactly_config *cfg, const char *app_name,
                           char *errbuf, size_t errbuf_size);

/*
 * exactly_pg_connect() in two steps, for a connection that
 * exactly_pg_check_session() must pass first: through a pooler in
 * transaction mode the session settings would land on a pooled server
 * session, which keeps them when it goes back to the pool and hands them
 * to other clients' transactions, even though exactly then refuses to
 * run. exactly_pg_connect_unset() connects without them (the same
 * conninfo handling, application_name, connect_timeout, keepalives and
 * non-blocking mode; NULL and errbuf on failure);
 * exactly_pg_apply_settings() SETs them on conn once the check passed
 * (0, or -1 with the reason in errbuf; the caller then PQfinish()es
 * conn).
 */
PGconn *exactly_pg_connect_unset(const exactly_config *cfg,
                                 const char *app_name, char *errbuf,
                                 size_t errbuf_size);
int exactly_pg_apply_settings(PGconn *conn, const exactly_config *cfg,
                              char *errbuf, size_t errbuf_size);

/*
 * Whether conn is a server session of its own for as long as it lasts, as
 * exactly needs: the timeouts set on it, and on them the guarantee that a
 * frozen worker's row lock ends, and its session advisory locks must stay
 * with it. A pooler that hands each transaction any server connection
 * (PgBouncer with pool_mode transaction or statement) breaks that.
 * Checked once per process (a later connection goes to the same
 * endpoint, whose pool mode does not change under a running process): a
 * value is set in conn's session, a second connection (opened without
 * the session settings) must neither see it nor share conn's backend, and
 * conn must still see it on the same backend afterwards; each read clears
 * it where it was read, so that a pooled backend it landed on does not
 * keep it. Run it before exactly_pg_apply_settings(). Returns EXACTLY_OK,
 * EXACTLY_ECONFIG (not a session of its own: errbuf says why and what to
 * do) or EXACTLY_ERETRY (the check could not run: errbuf says why).
 */
exactly_err exactly_pg_check_session(PGconn *conn, const exactly_config *cfg,
                                     char *errbuf, size_t errbuf_size);

/*
 * The one reading of a SQLSTATE (DESIGN section 3). sqlstate may be NULL
 * or empty: no server error, the connection broke.
 *
 *   PG_TRANSIENT    goes away by itself: connection lost, serialization
 *                   failure, deadlock, statement or lock timeout, server
 *                   shutting down, out of resources. Roll back, retry soon.
 *   PG_ENVIRONMENT  about the environment, not a record, and needs a
 *                   person: a privilege, a missing table or column, a
 *                   syntax error, authentication, a read-only server, an
 *                   unknown class. Roll back, back off, say so loudly;
 *                   never dead-letter the records of the batch.
 *   PG_RECORD       about the data in hand: a constraint, a data
 *                   exception, a cardinality violation, an error raised by
 *                   a trigger or function. Bisect finds the record.
 *   PG_FENCED       the fence found another owner or another position.
 */
typedef enum exactly_pg_class {
    PG_TRANSIENT,
    PG_ENVIRONMENT,
    PG_RECORD,
    PG_FENCED
} exactly_pg_class;

exactly_pg_class exactly_pg_class_of(const char *sqlstate);

/* The same as an exactly_err: EXACTLY_ERETRY (transient or environment),
 * EXACTLY_EFENCED, or EXACTLY_EDATABASE (record). */
exactly_err exactly_pg_classify(const char *sqlstate);

/* Whether an error ends the usefulness of the connection (lost, shut
 * down, or a server that no longer takes writes: after a failover the
 * next connection finds the new primary). */
int exactly_pg_needs_reconnect(const char *sqlstate);

/*
 * How long a client waits for any answer from PostgreSQL before it ends
 * the connection: postgres.client_timeout_ms, or when that is 0,
 * statement_timeout_ms + lock_timeout_ms + 30 s (the server's own bounds
 * plus a margin; with both at 0, 30 s), computed without overflow and
 * capped at INT_MAX.
 */
int exactly_pg_wait_bound_ms(const exactly_config *cfg);

/* Ends conn from the client side without freeing it: its socket is shut
 * down, so its status turns CONNECTION_BAD and whatever it still owed is
 * never read as the answer to anything sent later. The owner then
 * PQfinish()es it as for any broken connection. NULL-safe. */
void exactly_pg_abandon(PGconn *conn);

/*
 * Waits until conn has sent everything and a result can be read without
 * blocking, for at most timeout_ms. Returns 0, or -1 when the connection
 * failed or the wait timed out (the caller treats both as a lost
 * connection).
 */
int exactly_pg_wait_result(PGconn *conn, int timeout_ms);

/*
 * The same, calling idle(arg) whenever the wait would block, so that other
 * work (draining Kafka) overlaps the server's. idle returns how much it
 * did; while it finds work the socket is polled without sleeping long.
 */
int exactly_pg_wait_result_idle(PGconn *conn, int timeout_ms,
                                int (*idle)(void *), void *arg);

/* Runs one statement outside pipeline mode and checks its status; on
 * failure writes the server's message into errbuf and returns the class.
 * It waits at most the bound set by the last exactly_pg_connect() of the
 * process (exactly_pg_wait_bound_ms), then ends the connection
 * (exactly_pg_abandon) and returns EXACTLY_ERETRY. */
exactly_err exactly_pg_exec(PGconn *conn, const char *sql, int n_params,
                            const char *const *params, PGresult **out,
                            char *errbuf, size_t errbuf_size);
/* exactly_pg_exec that also says, when the server answered an error, its
 * SQLSTATE in sqlstate (6 bytes; left as it was on success or when no
 * answer came). */
exactly_err exactly_pg_exec_state(PGconn *conn, const char *sql,
                                  int n_params, const char *const *params,
                                  PGresult **out, char *sqlstate,
                                  char *errbuf, size_t errbuf_size);

/* Quotes an identifier with libpq's escaping; the caller frees with
 * PQfreemem. Returns NULL on failure. */
char *exactly_pg_ident(PGconn *conn, const char *ident);

#endif
