/*
 * bisect.c - the one savepoint-apply-judge-bisect step (see bisect.h),
 * used by the engine's careful mode (apply.c) and by `dlq replay`
 * (ops/dlq_bisect.c), which differ only in their callbacks and in
 * ops->tidy.
 */
#include "bisect.h"

#include <libpq-fe.h>

#include "err.h"
#include "judge.h"

#define SAVEPOINT "SAVEPOINT exactly_apply"
#define RELEASE "RELEASE SAVEPOINT exactly_apply"
#define ROLLBACK_TO "ROLLBACK TO SAVEPOINT exactly_apply"
/* Deferred constraints are checked at COMMIT, not by the statement that
 * broke them: a set's own writes are checked here, inside a savepoint of
 * their own whose rollback restores the constraints' modes (a handler may
 * rely on deferral within its apply()). A violation is the set's failure,
 * as if the statement had raised it. */
static const char *const check_deferred[] = {
    "SAVEPOINT exactly_check", "SET CONSTRAINTS ALL IMMEDIATE",
    "ROLLBACK TO SAVEPOINT exactly_check"};

/* The txn's error, or what rc says when the txn has no words for it (a
 * statement that could not be queued); returns rc. */
static exactly_err note_txn(exactly_error *err, const exactly_txn *t,
                            exactly_err rc)
{
    exactly_error_note(err, t->sqlstate,
                       t->errmsg[0] ? t->errmsg : exactly_strerror(rc));
    return rc;
}

/* Undoes the set's writes in a sync of its own (a statement queued behind
 * a failed one would be skipped), keeping their error in err. The
 * savepoint is released too: PostgreSQL keeps it after ROLLBACK TO, and
 * the next set's SAVEPOINT would nest inside it, one subtransaction level
 * per failed set for the rest of the transaction. */
static exactly_err roll_back(const engine_bisect_ops *ops, exactly_txn *t,
                             exactly_error *err)
{
    exactly_error failed = *err;
    exactly_err rc;

    if (ops->tidy) {
        rc = exactly_txn_send(t, TXN_CONTROL, ROLLBACK_TO, 0, NULL, NULL);
        if (rc == EXACTLY_OK)
            rc = exactly_txn_send(t, TXN_CONTROL, RELEASE, 0, NULL, NULL);
        if (rc == EXACTLY_OK)
            rc = exactly_txn_sync(t);
        return rc == EXACTLY_OK ? EXACTLY_EHANDLER : note_txn(err, t, rc);
    }
    if (exactly_txn_send(t, TXN_CONTROL, ROLLBACK_TO, 0, NULL, NULL) ==
        EXACTLY_OK)
        (void)exactly_txn_send(t, TXN_CONTROL, RELEASE, 0, NULL, NULL);
    rc = engine_judge_sync(t, exactly_txn_sync(t), err);
    if (rc != EXACTLY_OK)
        return rc;
    *err = failed;
    return EXACTLY_EHANDLER;
}

/* Applies records [first, first + n) under the savepoint, with a sync.
 * EXACTLY_OK: their writes are part of the transaction (those the handler
 * failed on purpose are left in t->fails); EXACTLY_EHANDLER: these
 * records failed and are rolled back, why in err; anything else ends the
 * step. */
static exactly_err try_set(const engine_bisect_ops *ops, void *arg,
                           exactly_txn *t, size_t first, size_t n,
                           exactly_error *err)
{
    exactly_err rc = EXACTLY_OK, s;

    if (ops->start)
        rc = ops->start(arg, t);
    exactly_txn_forget_fails(t);
    if (rc == EXACTLY_OK)
        rc = exactly_txn_send(t, TXN_CONTROL, SAVEPOINT, 0, NULL, NULL);
    if (rc != EXACTLY_OK)
        return ops->tidy ? note_txn(err, t, rc) : rc;
    rc = engine_judge_apply(t, ops->apply(arg, t, first, n), err);
    if (rc == EXACTLY_OK) {
        /* In the handler's slot: a check or RELEASE that fails is the
         * handler's (its writes broke a deferred constraint, or a
         * statement of it aborted the transaction). */
        size_t i;
        for (i = 0; i < 3 && rc == EXACTLY_OK; i++)
            rc = exactly_txn_send(t, TXN_HANDLER, check_deferred[i], 0, NULL,
                                  NULL);
        if (rc == EXACTLY_OK)
            rc = exactly_txn_send(t, TXN_HANDLER, RELEASE, 0, NULL, NULL);
        if (rc != EXACTLY_OK && !ops->tidy)
            return rc;
        if (rc != EXACTLY_OK) {
            (void)note_txn(err, t, rc);
            (void)exactly_txn_sync(t); /* apply()'s, left queued */
            return rc;
        }
        rc = engine_judge_sync(t, exactly_txn_sync(t), err);
        if (rc == EXACTLY_OK)
            return EXACTLY_OK;
    } else if (rc == EXACTLY_EHANDLER || ops->tidy) {
        /* What apply() queued before it refused runs now: an error of it
         * is part of the same failure, a lost connection is not. */
        s = exactly_txn_sync(t);
        if (rc == EXACTLY_EHANDLER && s != EXACTLY_OK &&
            PQstatus(t->conn) != CONNECTION_OK)
            return engine_judge_sync(t, s, err);
    }
    if (rc != EXACTLY_EHANDLER)
        return rc;
    return roll_back(ops, t, err);
}

exactly_err engine_bisect(const engine_bisect_ops *ops, void *arg,
                          exactly_txn *t, size_t first, size_t n,
                          exactly_error *err)
{
    exactly_err rc;
    size_t half;

    if (n == 0)
        return EXACTLY_OK;
    rc = try_set(ops, arg, t, first, n, err);
    if (rc == EXACTLY_OK)
        return ops->applied(arg, t, first, n);
    if (rc != EXACTLY_EHANDLER)
        return rc;
    if (n == 1)
        return ops->failed(arg, first, err);
    half = n / 2;
    rc = engine_bisect(ops, arg, t, first, half, err);
    if (rc != EXACTLY_OK)
        return rc;
    return engine_bisect(ops, arg, t, first + half, n - half, err);
}
