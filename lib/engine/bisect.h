/*
 * bisect.h - the one savepoint-apply-judge-bisect step, for every cycle
 * that runs a handler over a set of records inside an open transaction:
 * the engine's careful mode (apply.c) and `dlq replay`
 * (ops/dlq_bisect.c). The caller supplies the records only through its
 * callbacks, by index.
 *
 * Records [first, first + n) are applied under SAVEPOINT exactly_apply.
 * When they fail (engine_judge_apply / engine_judge_sync say
 * EXACTLY_EHANDLER: apply() returned an error, a statement of the
 * handler failed on the data, or the set's writes break a deferred
 * constraint, checked before the savepoint is released) their writes
 * are rolled back to the
 * savepoint and the set is split in halves, each tried again, down to a
 * single record, which is handed to ops->failed with why. Every set that
 * applies is handed to ops->applied (its records the handler failed on
 * purpose, fail_record, are in t->fails). Anything else (the connection, a
 * timeout, a serialization failure, apply() asking for a retry or the stop
 * of the process) ends the step and is returned, why in err: the caller
 * rolls its transaction back.
 */
#ifndef EXACTLY_ENGINE_BISECT_H
#define EXACTLY_ENGINE_BISECT_H

#include <stddef.h>

#include "error_value.h"
#include "txn.h"

typedef struct engine_bisect_ops {
    /* Optional: called before each set's SAVEPOINT (dlq replay starts its
     * txn's pipeline anew for each set). Non-OK ends the step. */
    exactly_err (*start)(void *arg, exactly_txn *t);
    /* Calls the handler's apply() on records [first, first + n) through t
     * and returns its answer as is (it is judged here). */
    exactly_err (*apply)(void *arg, exactly_txn *t, size_t first, size_t n);
    /* Records [first, first + n) are part of the transaction; t->fails
     * (indexes from first) are those the handler failed on purpose. Must
     * forget them (exactly_txn_forget_fails). Non-OK ends the step. */
    exactly_err (*applied)(void *arg, exactly_txn *t, size_t first,
                           size_t n);
    /* Record idx failed alone, why in err. EXACTLY_OK: it is settled (a
     * dead letter) and the step goes on; anything else ends the step and
     * is returned (EXACTLY_EHANDLER: on_error: stop). */
    exactly_err (*failed)(void *arg, size_t idx, const exactly_error *err);
    /* The transaction goes on after the step with nothing of it pending
     * (dlq replay, kept as it was): a statement that cannot be queued
     * ends the step noted in err, what a refused apply() queued is synced
     * whatever the verdict, and the savepoint rolled back to is released.
     * 0 (the engine's cycle): what is left is undone by the attempt's
     * ROLLBACK. */
    int tidy;
} engine_bisect_ops;

/* Applies records [first, first + n) as above. Returns EXACTLY_OK when
 * every record was applied or settled by ops->failed; otherwise what
 * ended the step, why in err (its SQLSTATE and message; a failure the
 * callbacks return is theirs to describe). */
exactly_err engine_bisect(const engine_bisect_ops *ops, void *arg,
                          exactly_txn *t, size_t first, size_t n,
                          exactly_error *err);

#endif
