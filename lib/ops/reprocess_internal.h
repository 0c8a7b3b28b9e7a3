/*
 * reprocess_internal.h - the parts of `exactly reprocess` (reprocess.h),
 * shared by its files:
 *
 *   reprocess.c           the command: services, run rows, the spans, the
 *                         end
 *   reprocess_plan.c      a new run's spans: partitions, watermarks,
 *                         offsets by time, the range checked and clamped
 *   reprocess_rows.c      the run's rows in reprocess_runs: create, claim
 *                         (resume), close, check (read again before done)
 *   reprocess_loop.c      one span applied: assign, read, the engine's
 *                         batches, --rate
 *   reprocess_progress.c  what is printed: progress, dry run, summary
 *
 * A run drives the engine itself: its own connection (engine_ops:
 * reprocess_db.c) and the run's rows as the engine's position.
 */
#ifndef EXACTLY_REPROCESS_INTERNAL_H
#define EXACTLY_REPROCESS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "engine.h"
#include "reprocess.h"

/* One partition of a run: a reprocess_runs row with its own position. */
typedef struct span {
    int64_t id;
    char id_s[24];
    char *topic;
    int32_t partition;
    int64_t from, to;         /* inclusive */
    int64_t next;             /* the row's next_offset, as far as we know */
    int64_t epoch;
    int64_t lo, hi;           /* watermarks (a new run) */
    int64_t asked_from, asked_to; /* before clamping (a new run) */
    int64_t applied0;         /* the row's applied when this session took it */
    int done;                 /* closed, and (once checked) done in the
                                 database the run is connected to */
} span;

typedef struct run {
    const exactly_config *cfg;
    const cfg_pipeline *p;
    engine eng;               /* its position: the span's row */
    rd_kafka_t *rk;           /* a consumer without a group; eng.rk */
    /* The connection (eng.conn): reconnected after a backoff. */
    long long reconnect_at_ms;
    int reconnect_attempts;
    int refused;              /* the database refused us: no retry */
    char *applied_sql;        /* pos.applied_sql, owned */
    exactly_error last;       /* the last batch's error value */
    part pt;                  /* the span being applied */
    int64_t id;               /* the run: its first row (the parent) */
    int multi;                /* rows share a parent: a run over a topic */
    span *spans;
    size_t n_spans;
    size_t cur;               /* the span being applied */
    size_t n_done;
    int64_t total;            /* offsets of the spans in this session */
    int64_t behind;           /* of those, offsets of spans already done */
    /* What this session applied as the rows count it (reprocess_count_rows),
     * valid while applied_read: the summary's figure, since a failover can
     * take back applications the engine counted. */
    int64_t applied_rows;
    int applied_read;
    /* The run's dead letters in the table when it ends, whichever session
     * wrote them (reprocess_count_dead_letters), valid while dead_read:
     * the engine counts only this session's. */
    int64_t dead_letters;
    int dead_read;
    /* Set when the consumer found a span's position out of the log (the
     * broker's retention deleted it): gone_span is that span, gone_low
     * the partition's low watermark then (-1: unknown). A resume cannot
     * apply those offsets. */
    int gone;
    size_t gone_span;
    int64_t gone_low;
    char id_s[24];
    char dl_key[200];
    long long started_ms;
    long long last_progress_ms;
} run;

/* ---- reprocess_db.c ---- */

/* The engine of r for pipeline p, its connection handled by the run. */
void reprocess_engine_init(run *r);
/* Ensures r's connection (eng.conn): EXACTLY_OK, EXACTLY_ERETRY (backing
 * off), EXACTLY_EDATABASE (refused: r->refused) or EXACTLY_ENOMEM. */
exactly_err reprocess_db(run *r);

/* ---- reprocess_plan.c ---- */

/* One more span, zeroed; NULL when out of memory. */
span *reprocess_span_add(run *r);
void reprocess_spans_free(run *r);
/* The spans by partition. */
void reprocess_spans_sort(run *r);
/*
 * Plans a new run: its spans (one partition, or every partition of the
 * topic), their watermarks and their ranges. Returns 0, 1 (Kafka failed)
 * or 2 (refused: no such partition, a range outside one partition, a time
 * the server cannot read, nothing in the range).
 */
int reprocess_plan(run *r, const exactly_reprocess_opts *o);

/* ---- reprocess_rows.c ---- */

/* r's run is id: r->id, r->id_s and the name its dead letters are kept
 * under, r->dl_key (PIPELINE:reprocess:RUN). */
void reprocess_set_id(run *r, int64_t id);
/* Claims the rows of interrupted run o->resume_run into r's spans.
 * Returns 0, 1 (failed) or 2 (no such run, or it is done). */
int reprocess_claim_rows(run *r, const exactly_reprocess_opts *o);
/* Records a new run: one row per span, in one transaction; a run over a
 * topic names its first row as every row's parent. Returns 0 or 1. */
int reprocess_create_rows(run *r);
/* Ends span sp's row with status (logged when it cannot). */
void reprocess_close_span(run *r, span *sp, const char *status);
/*
 * Reads the rows of r's spans again, on the connection the run holds now
 * (opened again when it was lost, waiting while that is transient, until
 * o->stop), because a failover to a standby that lacks the last commits
 * moves a row back, closed span or not; counts what the rows hold (as
 * reprocess_count_rows). A span whose row is not done (its
 * next_offset back inside the range, or its close lost) is open again
 * from the row's next_offset, to be applied and closed again. Returns 0
 * (r->n_done < r->n_spans: spans to apply again), or 1 (cannot read the
 * rows, interrupted, a row taken over by another process or gone).
 */
int reprocess_check_rows(run *r, const exactly_reprocess_opts *o);
/* One read of the rows, when the run is connected, for the summary:
 * r->applied_rows and r->applied_read. Nothing is waited for; when the
 * rows cannot be read the summary keeps the engine's count. */
void reprocess_count_rows(run *r);
/* One read of the run's dead letters (under r->dl_key), when the run is
 * connected: r->dead_letters and r->dead_read. Nothing is waited for. */
void reprocess_count_dead_letters(run *r);

/* ---- reprocess_loop.c ---- */

/* Makes span i the cycle's position and assigns its partition at its
 * stored offset. Returns 0 or 1. */
int reprocess_start_span(run *r, size_t i);
/* Applies span sp (started) to its end. Returns 0 when it reached it, 1
 * when it failed or was interrupted. */
int reprocess_loop(run *r, const exactly_reprocess_opts *o, const span *sp);

/* ---- reprocess_progress.c ---- */

/* Where the run is, on stderr, at most every 250 ms (tty) or 5 s; always
 * when final. Nothing with -q. */
void reprocess_progress(run *r, const exactly_reprocess_opts *o, int final);
/* A run over a topic: a line when a partition is done. */
void reprocess_progress_span_done(run *r, const exactly_reprocess_opts *o,
                                  const span *sp, uint64_t applied);
/* What a dry run would do, on stdout. */
void reprocess_print_plan(const run *r, const exactly_reprocess_opts *o);
/* The run's end on stdout: what it applied, how to resume it (or, when
 * its position left the log, what left and the new runs to start), where its
 * dead letters are (the run's, of every session, when they could be
 * counted). Returns the exit code: code, or
 * EXACTLY_REPROCESS_DEAD_LETTERED when it finished with dead letters. */
int reprocess_print_end(const run *r, const char *status, int code);
/* Where the dead letters of run r->id (n of them) are and how to replay
 * them, on stdout. */
void reprocess_print_dead_letters(const run *r, uint64_t n);

#endif
