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
 * idle_in_transaction_session_timeout added to the conninfo's options;
 * app_name as application_name; connect_timeout and libpq keepalives
 * unless the conninfo sets them), in non-blocking mode. Returns NULL and
 * writes the reason (every password hidden, libpq's parse errors replaced
 * by a sentence of our own) into errbuf on failure.
 */
PGconn *exactly_pg_connect(const exactly_config *cfg, const char *app_name,
                           char *errbuf, size_t errbuf_size);

/*
 * What an error means for a batch: EXACTLY_ERETRY (connection lost,
 * serialization failure, deadlock, timeout, shutdown: roll back and retry),
 * EXACTLY_EFENCED (the fence found another owner or another position) or
 * EXACTLY_EDATABASE (anything else: the statement itself is wrong for this
 * data). sqlstate may be NULL (no server error: the connection broke).
 */
exactly_err exactly_pg_classify(const char *sqlstate);

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
 * failure writes the server's message into errbuf and returns the class. */
exactly_err exactly_pg_exec(PGconn *conn, const char *sql, int n_params,
                            const char *const *params, PGresult **out,
                            char *errbuf, size_t errbuf_size);

/* Quotes an identifier with libpq's escaping; the caller frees with
 * PQfreemem. Returns NULL on failure. */
char *exactly_pg_ident(PGconn *conn, const char *ident);

#endif
