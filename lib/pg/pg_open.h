/*
 * pg_open.h - a connection a batch can run on: opened for its owner, the
 * framework schema at the version this build needs, and a server session
 * of its own (no transaction-mode pooler). Shared by the worker and a
 * reprocess run, which keep their own backoff; the operator commands that
 * write, `exactly check` and `exactly relay` connect with the same session
 * check.
 */
#ifndef EXACTLY_PG_OPEN_H
#define EXACTLY_PG_OPEN_H

#include <stddef.h>

#include <libpq-fe.h>

#include "config.h"
#include "exactly/error.h"

/*
 * Opens and checks a connection named app_name, logging what fails
 * (attempt: the number of this attempt, for the log): a server session of
 * its own (exactly_pg_check_session, before the session settings are
 * set), then the schema's version. Returns EXACTLY_OK
 * (*out is the connection), EXACTLY_ERETRY (not now: unreachable, or a
 * check could not run) or EXACTLY_EDATABASE (refused: the schema is at
 * another version, or a pooler shares the session; a person must act).
 * *out is NULL unless EXACTLY_OK.
 */
exactly_err exactly_pg_open_checked(const exactly_config *cfg,
                                    const char *app_name, int attempt,
                                    PGconn **out);

/*
 * Connects as exactly_pg_connect() does and checks, with
 * exactly_pg_check_session(), that the connection is a server session of
 * its own before anything else runs on it, the session settings included
 * (they are set once the check passed: through a pooler in transaction
 * mode they would stay on a pooled backend); for what cannot use anything
 * else (`exactly relay`, whose one relay per outbox is a session advisory
 * lock); exactly_pg_connect_own_session() below words its refusal for a
 * command's error line. Logs nothing. Returns EXACTLY_OK
 * (*out is the connection), EXACTLY_ECONFIG (not a session of its own:
 * why says why and what to do; a person must act) or EXACTLY_ERETRY (not
 * connected, the check could not run, or the settings were not taken:
 * why says why). *out is NULL
 * unless EXACTLY_OK.
 */
exactly_err exactly_pg_open_session(const exactly_config *cfg,
                                    const char *app_name, PGconn **out,
                                    char *why, size_t why_size);

/*
 * For an operator command that writes (`exactly offsets reset`, `exactly
 * dlq replay|discard`) and for `exactly check`, which reports what the
 * worker would find: connects as exactly_pg_connect() does and checks,
 * with exactly_pg_check_session(), that the connection is a server session
 * of its own, before anything is read or written on it. Their transactions
 * rely on the session's statement, lock and idle-in-transaction timeouts
 * set on connect (a statement the client gave up on must end on the
 * server, not land later), and check's read-only default is a session
 * setting; a pooler in transaction mode would run their transactions in
 * other server sessions, without those settings. (The timeouts are set
 * only once the check passed, as exactly_pg_open_session() does: a
 * refused command leaves none on the pooler's server session.)
 * Returns EXACTLY_OK (*out is the connection), EXACTLY_ECONFIG (refused:
 * err is "refusing to run through this connection: " and why) or
 * EXACTLY_EDATABASE (not connected, or the check could not run: err says
 * why). *out is NULL unless EXACTLY_OK.
 */
exactly_err exactly_pg_connect_own_session(const exactly_config *cfg,
                                           const char *app_name, PGconn **out,
                                           char *err, size_t errsz);

#endif
