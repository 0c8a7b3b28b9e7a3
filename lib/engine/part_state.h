/*
 * part_state.h - what an assigned partition is doing, as one state, and
 * the only way to move it: a checked transition that logs `from -> to`
 * at debug level and refuses (logged as an error, nothing changed) a move
 * the engine never makes. A state excludes the others, so a partition
 * cannot be, say, both halted and fenced.
 *
 *   unchecked  claimed; the crash guard has not answered since the claim
 *              (its first batch waits for the guard's answer)
 *   serving    the guard answered 'batch': batches of any size
 *   isolating  the guard saw deaths on this batch: one record at a time
 *   halted     stopped where it stands, nothing skipped: the row lost its
 *              offset, on_error: stop, or the handler asked to stop; only
 *              a new claim moves it
 *   no_start   halted for want of a stored offset (auto.offset.reset:
 *              error); its row is read again and it resumes once one is set
 *   fenced     another owner took it; only a new claim moves it
 *   out_of_log halted because its stored offset is not in the log
 *              (retention, a recreated topic); its row is read again and
 *              it resumes once an operator moved the offset
 *
 * What comes with a state but is data stays in struct part: the backoff
 * (retry_at_ms, attempts; a live partition backs off in any of the first
 * three states), the pause of its fetching (paused: the consumer's view,
 * which the circuit breaker sets on partitions of every state), counters.
 *
 * The moves (any state may also stay as it is):
 *
 *   unchecked -> serving, isolating, halted, fenced, out_of_log
 *   serving   -> unchecked (claimed again after a failover), isolating,
 *                halted, fenced, out_of_log
 *   isolating -> serving, halted, fenced, out_of_log
 *   no_start  -> unchecked (a stored offset appeared), fenced
 *   out_of_log -> unchecked (the stored offset was moved), fenced
 *   halted, fenced: none
 *
 * A claim starts a partition afresh whatever it was (part_state_claimed).
 */
#ifndef EXACTLY_PART_STATE_H
#define EXACTLY_PART_STATE_H

#include <stdint.h>

/* Zero is unchecked: a zeroed part is one just claimed. */
enum part_state {
    PART_S_UNCHECKED = 0,
    PART_S_SERVING,
    PART_S_ISOLATING,
    PART_S_HALTED,
    PART_S_NO_START,
    PART_S_FENCED,
    PART_S_OUT_OF_LOG,
    PART_S_COUNT
};

/* "unchecked", "serving", ...; "invalid" for anything else. */
const char *part_state_name(enum part_state s);

/* Whether from -> to is a move the engine makes (from == to: yes). */
int part_state_allowed(enum part_state from, enum part_state to);

/* Moves *st to `to` when allowed (0, logged at debug level when it
 * changes); otherwise logs an error naming the partition and returns -1
 * with *st unchanged. */
int part_state_move(enum part_state *st, enum part_state to,
                    const char *topic, int32_t partition);

/* A claim: *st starts afresh as unchecked, or no_start when the row has
 * no stored offset, whatever it was. Logged at debug level. */
void part_state_claimed(enum part_state *st, int no_start, const char *topic,
                        int32_t partition);

/* Halted in any way (halted, no_start, out_of_log). */
static inline int part_state_halted(enum part_state s)
{
    return s == PART_S_HALTED || s == PART_S_NO_START ||
           s == PART_S_OUT_OF_LOG;
}

/* Halted until an operator sets its row's offset (no_start,
 * out_of_log): the row is read again every few seconds. */
static inline int part_state_awaits_reset(enum part_state s)
{
    return s == PART_S_NO_START || s == PART_S_OUT_OF_LOG;
}

/* Not served: halted in any way, or fenced. */
static inline int part_state_stopped(enum part_state s)
{
    return part_state_halted(s) || s == PART_S_FENCED;
}

#endif
