/*
 * store_marks.h - commit marks (SCHEMA.commit_marks, schema step 12): the
 * row an operator command's transaction inserts so that, when the answer
 * to its COMMIT is lost, a new connection can learn whether that very
 * transaction committed (pg_xact.h). Every statement here runs as
 * store_exec() runs it: the schema quoted, values as parameters.
 */
#ifndef EXACTLY_STORE_MARKS_H
#define EXACTLY_STORE_MARKS_H

#include <stddef.h>

#include <libpq-fe.h>

#include "exactly/error.h"

/* How long a mark is kept at least (store_marks_forget deletes older
 * ones), and the age from which a question cannot rely on its absence:
 * an hour less, for the clocks of two servers after a failover. Hours,
 * not a day: on timestamptz a day follows the session's time zone's
 * calendar, 23 hours on the day its clocks move forward. */
#define STORE_MARKS_KEPT "24 hours"
#define STORE_MARKS_AGED "23 hours"

/* Inside the transaction open on conn: inserts a mark with a new token (a
 * uuid whose first 48 bits are the time of the insert in ms since 1970,
 * the rest random) and writes the token as text into token. */
exactly_err store_marks_add(PGconn *conn, const char *schema, char *token,
                            size_t token_size, char *err, size_t errsz);

/*
 * On conn, outside any transaction: tries to insert token again, in a
 * transaction of its own that is always rolled back, waiting at most
 * wait_ms for a transaction still inserting it (the unique key makes the
 * insert wait for that transaction's end). EXACTLY_OK with *taken 0: a
 * committed mark holds the token; *taken 1: none does and none is being
 * inserted, and *aged says whether the token was written more than
 * STORE_MARKS_AGED ago (then a committed mark may have been deleted as
 * old). Any other code: no answer, its SQLSTATE in sqlstate (6 bytes, ""
 * when the server gave none: 55P03 when the wait ran out) and the reason
 * in err.
 */
exactly_err store_marks_claim(PGconn *conn, const char *schema,
                              const char *token, int wait_ms, int *taken,
                              int *aged, char sqlstate[6], char *err,
                              size_t errsz);

/* Deletes the mark token and every mark older than STORE_MARKS_KEPT (one
 * left by a command that ended between its COMMIT and this delete, or one
 * frozen that long, whose question then says it cannot tell), in a
 * statement of its own. */
exactly_err store_marks_forget(PGconn *conn, const char *schema,
                               const char *token, char *err, size_t errsz);

#endif
