/*
 * error_value.h - the one error value of a batch: what failed (an
 * exactly_err code), what follows from it (retried later, the process
 * stops, the commit's outcome is unknown), and the server's SQLSTATE and
 * message. Filled where the failure happens (engine/), carried in the
 * batch report and settled by the owner (worker/, ops/reprocess), which
 * decide on its fields and never on its text.
 */
#ifndef EXACTLY_ERROR_VALUE_H
#define EXACTLY_ERROR_VALUE_H

#include "exactly/error.h"

/* Why a batch was rolled back to be retried (the metric's label). */
typedef enum exactly_cause {
    EXACTLY_CAUSE_CONNECTION,    /* lost connection, shutdown, no server
                                    error at all */
    EXACTLY_CAUSE_SERIALIZATION, /* 40001 */
    EXACTLY_CAUSE_DEADLOCK,      /* 40P01 */
    EXACTLY_CAUSE_TIMEOUT,       /* statement, lock or idle timeout */
    EXACTLY_CAUSE_HANDLER,       /* the handler failed on a record, or
                                    apply() asked for the retry */
    EXACTLY_CAUSE_ENVIRONMENT,   /* privilege, missing object, ...: a
                                    person must act */
    EXACTLY_CAUSE_OTHER
} exactly_cause;

typedef struct exactly_error {
    exactly_err code;       /* EXACTLY_OK: no failure */
    int retriable;          /* the same batch is tried again later */
    int fatal;              /* the process stops */
    int commit_unknown;     /* COMMIT went out and the server did not
                               answer that nothing committed (no answer,
                               or COMMIT itself answered an error): the
                               stored offset tells whether it committed.
                               Set where the COMMIT's answer is judged;
                               the engine re-reads the position as an
                               unconfirmed commit by it alone */
    int environment;        /* about the environment, not a record: never
                               bisected, nothing dead-lettered */
    int handler_retry;      /* apply() asked for the retry */
    char sqlstate[6];       /* "": none (no server error) */
    char message[1024];     /* for people: logs and dead letters only */
} exactly_error;

/* No failure. */
void exactly_error_clear(exactly_error *e);
/* Records the failure's SQLSTATE (NULL or "": none) and message (NULL or
 * "": "unknown error"); the code is set by exactly_error_set_code. */
void exactly_error_note(exactly_error *e, const char *sqlstate,
                        const char *msg);
/* The code the failure was judged to, and what follows from it alone:
 * EXACTLY_ERETRY and EXACTLY_EDATABASE are retried, EXACTLY_EFATAL stops
 * the process. */
void exactly_error_set_code(exactly_error *e, exactly_err code);
/* The SQLSTATE for a log field: NULL (no field) when there is none. */
const char *exactly_error_sqlstate(const exactly_error *e);
/* Why a retried batch failed: the handler's and the environment's marks
 * first (a retried batch whose code is EXACTLY_OK committed in careful
 * mode: the handler's), then the SQLSTATE (PostgreSQL Appendix A). */
exactly_cause exactly_error_cause(const exactly_error *e);

#endif
