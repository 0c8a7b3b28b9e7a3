/*
 * judge.h - the one judgement of a handler's failure (judge.c), for every
 * cycle that runs a handler: the engine's batches and the bisect step
 * (bisect.c), which `dlq replay` runs too (ops/dlq_bisect.c). What
 * failed is noted in err (SQLSTATE, message, whether it is about the
 * environment or apply() asked for the retry);
 * the verdict is returned:
 *
 *   EXACTLY_OK        nothing failed
 *   EXACTLY_EHANDLER  the records in hand are to blame: bisect them
 *   EXACTLY_ERETRY    not these records: transient, the environment, or
 *                     apply() asked for the retry
 *   EXACTLY_EFATAL    the handler asked to stop the process
 *   other             what the txn classed a failed sync as
 *                     (EXACTLY_EFENCED, EXACTLY_ENOMEM, ...)
 */
#ifndef EXACTLY_ENGINE_JUDGE_H
#define EXACTLY_ENGINE_JUDGE_H

#include "error_value.h"
#include "txn.h"

/* What apply()'s answer ret, and what it did to t, mean. A failed
 * query() aborts the transaction whatever apply() returned afterwards. */
exactly_err engine_judge_apply(const exactly_txn *t, exactly_err ret,
                               exactly_error *err);
/* What a failed sync of t (rc) means. A handler's statement that failed
 * on the data, or a COMMIT answered ROLLBACK, is a failure of these
 * records. */
exactly_err engine_judge_sync(const exactly_txn *t, exactly_err rc,
                              exactly_error *err);

#endif
