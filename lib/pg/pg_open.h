/*
 * pg_open.h - a connection a batch can run on: opened for its owner, the
 * framework schema at the version this build needs, and a server session
 * of its own (no transaction-mode pooler). Shared by the worker and a
 * reprocess run, which keep their own backoff.
 */
#ifndef EXACTLY_PG_OPEN_H
#define EXACTLY_PG_OPEN_H

#include <libpq-fe.h>

#include "config.h"
#include "exactly/error.h"

/*
 * Opens and checks a connection named app_name, logging what fails
 * (attempt: the number of this attempt, for the log). Returns EXACTLY_OK
 * (*out is the connection), EXACTLY_ERETRY (not now: unreachable, or a
 * check could not run) or EXACTLY_EDATABASE (refused: the schema is at
 * another version, or a pooler shares the session; a person must act).
 * *out is NULL unless EXACTLY_OK.
 */
exactly_err exactly_pg_open_checked(const exactly_config *cfg,
                                    const char *app_name, int attempt,
                                    PGconn **out);

#endif
