/*
 * cycle_internal.h - what the files of one batch cycle share: the cycle
 * of one attempt and its steps. cycle.c runs a batch from its first
 * attempt to its outcome; attempt.c is one attempt's transaction; apply.c
 * the handler's writes, the judging of failures and careful mode's part
 * of the bisection (the step itself is bisect.c, shared with dlq replay);
 * guard.c the crash guard.
 */
#ifndef EXACTLY_CYCLE_INTERNAL_H
#define EXACTLY_CYCLE_INTERNAL_H

#include "engine_internal.h"
#include "error_value.h"
#include "guard_answer.h"

/* One attempt at a batch of pt: what the handler gets and how it failed. */
typedef struct cycle {
    engine *e;
    part *pt;
    exactly_record *recs; /* what the handler gets, after skip/dead-letter */
    int64_t *vals;        /* for bigint IDs their values (vals[i] is
                             recs[i].id's), in recs' allocation; else NULL */
    size_t n_recs;
    uint64_t applied_msgs;
    uint64_t failed_msgs;
    /* The last failure, as judged where it happened (its SQLSTATE and
     * message, whether it is about the environment or apply() asked for
     * the retry); its code is set when the batch's outcome is known. */
    exactly_error err;
    int held;             /* sent whole and held (engine_holds) */
} cycle;

/* What the phases of one attempt (attempt.c) hand on to each other; a
 * group (group.c) keeps one per partition. */
typedef struct attempt_state {
    size_t n;               /* messages of the batch (the guard may shrink it) */
    int64_t end;            /* offset stored on commit */
    int dead_only;          /* the one record is dead-lettered, not applied */
    int grouped;            /* one partition of a group: its BEGIN is the
                               group's, sent already */
    int group_fenced;       /* and so is its fence (the group's one) */
    txn_result attempt_res, dedup_res, lookup_res;
    char part_s[16], epoch_s[24], start_s[24], end_s[24];
    const char *fence_params[6];
    int need_sync;          /* something was read: sync before the writes */
    int looked_up;
    size_t skipped;         /* lookup found no row, on_missing: skip */
} attempt_state;

/* ---- cycle.c: shared helpers --------------------------------------------- */

/* Records why the attempt failed. */
void cycle_note(cycle *c, const char *sqlstate, const char *msg);
/* A message of the batch goes to the dead letters, with its trace-id. */
void cycle_dl_message(cycle *c, int64_t offset, const void *key,
                      size_t key_len, const char *id, const char *reason);
/* Every message of record r goes to the dead letters. */
void cycle_dl_record(cycle *c, const exactly_record *r, const char *reason,
                     const char *sqlstate);
/* Every log line from here to the batch's end names the distinct
 * trace-ids of pt's first n messages; a record's lines name its own
 * (cycle_trace_record) until cycle_trace_batch_again. */
void cycle_trace_batch(const part *pt, size_t n);
void cycle_trace_record(const part *pt, const exactly_record *r);
void cycle_trace_batch_again(void);

/* The batch of c->pt committed (its first n messages, up to end, with
 * dead dead letters): the engine's totals and pt move on, Kafka hears
 * the new position. */
void cycle_committed(engine *e, part *pt, const cycle *c, size_t n,
                     int64_t end, uint64_t dead);

/* ---- apply.c: the handler ------------------------------------------------ */

/* What apply()'s answer ret, and what it did to the txn, mean. */
exactly_err cycle_judge_apply(cycle *c, exactly_err ret);
/* What a failed sync (rc) means. */
exactly_err cycle_judge_sync(cycle *c, exactly_err rc);
/* What a failed sync (rc) that carried the batch's COMMIT means, as
 * cycle_judge_sync, and the one rule of an unknown outcome: it fails
 * and the server did not answer that nothing committed
 * (exactly_txn_rolled_back: a statement before COMMIT answered an
 * error, or COMMIT answered ROLLBACK): c->err.commit_unknown. For every
 * batch, single, held or grouped; its caller never decides it alone. */
exactly_err cycle_judge_commit(cycle *c, exactly_err rc);
/* Queues the handler's writes for recs[0..n), without a savepoint
 * (optimistic mode); vals: their IDs' values (exactly_batch.id_values) or
 * NULL. Returns EXACTLY_OK or cycle_judge_apply()'s verdict. */
exactly_err cycle_queue_apply(cycle *c, exactly_record *recs,
                              const int64_t *vals, size_t n);
/* Records the handler failed on purpose go to dead letters; the rest
 * count as applied. Only once their writes are part of the txn. */
void cycle_account_applied(cycle *c, exactly_record *recs, size_t n);
/* Applies c->recs in careful mode through the one bisect step
 * (bisect.h): split until the failing records are alone, which are
 * dead-lettered (EXACTLY_EHANDLER under on_error: stop, the attempt
 * ends); any other failure ends the attempt and is returned, why in
 * c->err. */
exactly_err cycle_bisect(cycle *c);

/* ---- guard.c: the crash guard -------------------------------------------- */

/* Asks the crash guard about the attempt at pt->next_offset up to *end
 * and waits for the answer, unless pt is serving (it answered 'batch'
 * since the claim: nothing is sent): may shrink *n to 1 (isolating; *end
 * follows); sets *dead_only when that record must not be applied at all.
 * EXACTLY_EFENCED: the row has another owner. The answer is kept in the
 * txn under *res. */
exactly_err cycle_guard(cycle *c, size_t *n, int64_t *end, int *dead_only,
                        txn_result *res);
/* The guard's answer kept under res, read once (GUARD_UNKNOWN when there
 * is none); *text is its raw text, for the log only (NULL: none). */
guard_answer cycle_guard_read(engine *e, txn_result res, const char **text);

/* ---- attempt.c: one attempt ---------------------------------------------- */

/* Reads the held batch's answers (once; while another transaction may be
 * queued behind them): its outcome in e->held. */
void cycle_held_read(engine *e);

/* Builds c->recs from the grouped batch by the on_missing policy. */
exactly_err cycle_select_records(cycle *c, int looked_up, size_t *skipped);
/* The phases of an attempt that a group runs per partition too:
 *   cycle_fence_params  the fence's parameters for pt->next_offset to
 *                       a->end
 *   cycle_phase_read    builds the batch (e->bb), queues BEGIN (unless
 *                       a->grouped), the fence, dedup and lookup; syncs
 *                       when something was read
 *   cycle_phase_group   dedup's answer, the records by the lookup's rows
 *                       (c->recs), what cannot be applied dead-lettered
 *   cycle_phase_end     a committed (rc EXACTLY_OK) attempt's dedup and
 *                       skip counters move; a failure keeps its reason
 * The batch builder and the dead letters are the engine's: one
 * partition's phases run at a time. */
void cycle_fence_params(cycle *c, attempt_state *a);
exactly_err cycle_phase_read(cycle *c, attempt_state *a);
exactly_err cycle_phase_group(cycle *c, attempt_state *a);
exactly_err cycle_phase_end(cycle *c, attempt_state *a, exactly_err rc);

/* Runs one attempt's transaction for the first *n_io messages of c->pt up
 * to *end_io (the crash guard may shrink both), careful or optimistic.
 * *commit_sent is set once COMMIT went out. Returns EXACTLY_OK
 * (committed) or the judged failure, its reason in c. */
exactly_err cycle_attempt(cycle *c, size_t *n_io, int64_t *end_io,
                          int *commit_sent, int careful);

#endif
