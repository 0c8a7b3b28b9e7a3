/*
 * judge.c - the one judgement of a handler's failure (judge.h): what
 * apply()'s answer, a failed query() and a failed sync mean, for the
 * engine's batches and the bisect step alike.
 */
#include "judge.h"

#include <stdio.h>

#include "pg_conn.h"

/*
 * What apply()'s answer, and what it did to the transaction, mean (README
 * "Return codes of apply()"; judge.h). A failed query() aborts the transaction
 * whatever apply() returns afterwards; a fail_record() that could not be
 * recorded fails the batch rather than lose the record.
 */
exactly_err engine_judge_apply(const exactly_txn *t, exactly_err ret,
                               exactly_error *err)
{
    char msg[64];

    if (t->fails_oom) {
        exactly_error_note(err, NULL,
                           "out of memory recording a record the handler failed");
        return EXACTLY_ERETRY;
    }
    if (t->query_failed) {
        exactly_error_note(err, t->query_sqlstate, t->query_errmsg);
        switch (exactly_pg_class_of(t->query_sqlstate)) {
        case PG_RECORD:
            return EXACTLY_EHANDLER;
        case PG_ENVIRONMENT:
            err->environment = 1;
            return EXACTLY_ERETRY;
        case PG_TRANSIENT:
        case PG_FENCED:
            return EXACTLY_ERETRY;
        }
    }
    snprintf(msg, sizeof(msg), "apply() returned %d", (int)ret);
    switch (ret) {
    case EXACTLY_OK:
        return EXACTLY_OK;
    case EXACTLY_ERETRY:
    case EXACTLY_ENOMEM:
        exactly_error_note(err, NULL, t->handler_err_set ? t->handler_err : msg);
        err->handler_retry = 1;
        return EXACTLY_ERETRY;
    case EXACTLY_EFATAL:
        exactly_error_note(err, NULL, t->handler_err_set ? t->handler_err : msg);
        return EXACTLY_EFATAL;
    default:
        exactly_error_note(err, NULL, t->handler_err_set ? t->handler_err : msg);
        return EXACTLY_EHANDLER;
    }
}

/*
 * What a failed sync means. A statement of the handler that failed on the
 * data, or a COMMIT answered ROLLBACK (only a query() error that apply()
 * ignored does that), is a failure of these records; an environment error
 * anywhere is marked as such; the rest is returned as the txn classed it.
 */
exactly_err engine_judge_sync(const exactly_txn *t, exactly_err rc,
                              exactly_error *err)
{
    if (rc == EXACTLY_OK)
        return EXACTLY_OK;
    if (t->commit_rolled_back) {
        if (t->query_failed)
            return engine_judge_apply(t, EXACTLY_OK, err);
        exactly_error_note(err, NULL, t->errmsg);
        return EXACTLY_EHANDLER;
    }
    exactly_error_note(err, t->sqlstate, t->errmsg);
    if (rc == EXACTLY_ERETRY &&
        exactly_pg_class_of(t->sqlstate) == PG_ENVIRONMENT)
        err->environment = 1;
    /* A COMMIT refused on the data (a deferred constraint, 40002) is the
     * records' failure too: careful mode checks each set's deferred
     * constraints (bisect.c) and finds the records that break them. */
    if (rc == EXACTLY_EDATABASE &&
        (t->err_phase == TXN_HANDLER || t->err_phase == TXN_COMMIT))
        return EXACTLY_EHANDLER;
    return rc;
}
