/*
 * engine_internal.h - what the files of lib/engine/ share and nobody else
 * calls: the stored position (position.c), the crash guard's memory and
 * the owner's connection callbacks (engine.c). The dead-letter
 * accumulator is a module of its own (dead_letters.h).
 */
#ifndef EXACTLY_ENGINE_INTERNAL_H
#define EXACTLY_ENGINE_INTERNAL_H

#include "engine.h"

/* The owner's connection (engine_ops): ensure one, drop a broken one. */
exactly_err engine_db_open(engine *e);
void engine_db_lost(engine *e);
/* Adds a - b (what the counters moved from b to a) to to. */
void engine_stats_add(engine_stats *to, const engine_stats *a,
                      const engine_stats *b);
/* Ends the transaction, in pipeline mode or out of it (exactly_txn_
 * rollback); a connection that cannot even do that is dropped (the
 * owner's db_open reconnects). */
void engine_rollback(engine *e);
void engine_publish_position(engine *e, const part *pt);

/* The buffered message of pt at offset, or NULL (pt->buf is ascending). */
const rd_kafka_message_t *engine_part_msg(const part *pt, int64_t offset);
/* How many of pt's buffered messages lie below offset: the front of the
 * buffer that a batch ending at offset covers. */
size_t engine_part_below(const part *pt, int64_t offset);

/* Whether this process already attempted a batch of pt at start: the crash
 * guard counts an attempt once per process. */
int engine_attempted(engine *e, const part *pt, int64_t start);
void engine_set_attempted(engine *e, const part *pt, int64_t start);

/*
 * After a failed or unknown attempt, a refused fence, a reconnect, or
 * a row seen moved while pt was idle: the stored row says where pt
 * stands. drop_all (a refused fence) drops the
 * buffer and moves the fetch position to the stored offset; otherwise only
 * what the stored offset shows committed is dropped. *back is set when the
 * stored offset is behind pt's (a reset, or a failover to a standby that
 * lacks our last commits): the buffer is dropped and the fetch position
 * moved there, so that nothing between them is skipped. Returns
 * EXACTLY_OK (pt follows the row), EXACTLY_EFENCED (another owner took it:
 * PART_S_FENCED; or the row has no position any more: PART_S_HALTED, loudly) or
 * EXACTLY_ERETRY (the row could not be read: nothing changed, asked again
 * next time).
 */
exactly_err engine_follow_stored(engine *e, part *pt, int drop_all, int *back);

#endif
