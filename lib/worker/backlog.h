/*
 * backlog.h - whether a partition is working off a backlog, and whether
 * its partial batch is that backlog's tail, as functions of what its
 * buffer holds and what the consumer's last fetch showed of its log.
 * The worker's loop (loop.c) reads those facts and keeps the flag in the
 * partition; a backlog's tail is applied at once instead of waiting
 * max_wait_ms for messages that are not coming.
 */
#ifndef EXACTLY_WORKER_BACKLOG_H
#define EXACTLY_WORKER_BACKLOG_H

#include <stddef.h>
#include <stdint.h>

/*
 * The flag after a batch of n of the n_buf buffered messages runs
 * (batches hold at most max), given backlog, the flag before, and beyond,
 * how many messages the log holds past the buffer as the last fetch
 * showed (-1: not known). A backlog is a full batch with at least another
 * one waiting behind it, in the buffer or in the log; it is over once a
 * partial batch runs that takes all the log is known to hold. A partial
 * batch with more to come (it waited max_wait_ms for a slow fetch, or a
 * small batch of another partition took it along) leaves it as it was:
 * the log's real end is still its tail.
 */
int worker_backlog_after(int backlog, size_t n, size_t max, size_t n_buf,
                         int64_t beyond);

/* Whether a partial batch of the n_buf buffered messages is a backlog's
 * tail: the partition was working off a backlog and its buffer reaches
 * the end of the log as the last fetch showed it (beyond 0). */
int worker_backlog_tail(int backlog, size_t n_buf, int64_t beyond);

#endif
