/*
 * supervisor_internal.h - what the files of the supervisor share: a slot
 * (one child it keeps running) and the restart rules' limits. Private to
 * lib/process.
 */
#ifndef EXACTLY_SUPERVISOR_INTERNAL_H
#define EXACTLY_SUPERVISOR_INTERNAL_H

#include <stdint.h>
#include <sys/types.h>

#include "supervisor.h"
#include "util/metrics.h"

#define RESTART_MIN_MS 500
#define RESTART_MAX_MS 30000
/* A worker that dies sooner than this after its start failed to start;
 * so did one that committed nothing before dying within PROGRESS_WINDOW_MS
 * (its group join alone can outlast the first rule: it waits for the dead
 * predecessor's session to expire). */
#define FAST_FAILURE_MS 10000
#define PROGRESS_WINDOW_MS 300000
/* That many fast failures in a row make a crash loop: a relay's always,
 * a worker's at least (sup_crash_loop_after). */
#define CRASH_LOOP_AFTER 5

/* One child process the supervisor keeps running: a worker of pipeline p,
 * or the relay r (then p is NULL). Both follow the same restart rules. */
typedef struct slot {
    const cfg_pipeline *p;
    const cfg_relay *r;
    int index;
    metrics_slot *m;      /* shared with the worker process */
    int starts;
    pid_t pid;            /* 0: not running */
    long long started_ms;
    long long restart_at_ms;
    int fast_failures;
    int quick_exits;      /* exits 0 in a row, each within FAST_FAILURE_MS
                             of its start: their restart backs off too */
    uint64_t committed_at_start; /* batches committed (a relay: sessions
                                    opened) when it started */
    int done;             /* finished (exit 0 in a stop or with
                             --exit-idle) or refused: not restarted */
    int crash_loop;
} slot;

/* The monotonic clock, in ms. */
long long sup_now_ms(void);

/* Everything a worker would refuse, refused here before any fork. */
int sup_validate(const exactly_config *cfg, const cfg_pipeline *p);

/* What a relay would refuse, refused here before any fork. */
int sup_validate_relay(const exactly_config *cfg, const cfg_relay *r);

/* Where lock files go when neither --lock-dir nor $EXACTLY_LOCK_DIR says:
 * a runtime directory of this user, never a world-writable /tmp. Writes
 * the path into out; creates the directory (0700) when missing. Returns 0,
 * or -1 (logged) when it cannot be created. */
int sup_default_lock_dir(char *out, size_t size);

/* One lock per consumer group on this host: two supervisors running the
 * same pipeline by accident would only fence each other all day. The file
 * is opened without following a symbolic link and must be a regular file
 * of this user, readable by nobody else (0600): others can neither hold
 * the lock nor write a pid into it. Returns 0 with *fd_out set, or -1
 * (logged). */
int sup_take_lock(const char *dir, const cfg_pipeline *p, int *fd_out);

/* Forks the worker (or relay) of slot s. fds are the supervisor's own
 * descriptors (lock files, the metrics socket): the child closes them at
 * once, so that a worker never holds the lock or the port of its
 * supervisor. */
void sup_start(const exactly_supervisor_opts *o, slot *s, const int *fds,
               size_t n_fds);

/* Records how a worker (or relay) ended; returns 2 when it refused to
 * start, EXACTLY_EXIT_HANDLER_STOP when its handler stopped it (neither is
 * restarted: starting again would only meet the same answer). An exit 0
 * is its end (done, not restarted) when exit0_ends: the supervisor is
 * stopping, or --exit-idle let it finish; else it was stopped from
 * outside, or ended on its own, and starts again: after RESTART_MIN_MS,
 * doubling (to RESTART_MAX_MS) with each exit 0 in a row that came within
 * FAST_FAILURE_MS of its start, so that a worker that ends at once does
 * not restart in a hot loop; not counted as a fast failure (an exit 0
 * never makes a crash loop: the pipeline stays served). */
int sup_reaped(slot *s, int status, int exit0_ends);

/* The fast failures in a row that make slot s a crash loop. A worker's
 * leave the crash guard (lib/engine/guard.c) room to deal with a record
 * that kills it: max_crashes deaths at a batch's start isolate the batch,
 * max_crashes more inside that record alone dead-letter it, and only the
 * process after them moves on; one death more is allowed for one the
 * guard does not count (before a claim). So 2 * max_crashes + 2, at least
 * CRASH_LOOP_AFTER; a relay's: CRASH_LOOP_AFTER. */
int sup_crash_loop_after(const slot *s);

/* 1 when every worker of some pipeline, or some relay, is in a crash
 * loop. First ends the crash loop of every slot whose process has run
 * past the point where its death would still be a fast failure (more
 * than FAST_FAILURE_MS with a commit, or PROGRESS_WINDOW_MS): a slot that
 * recovered no longer counts toward losing its pipeline. The supervisor
 * calls this on every turn of its loop until it stops. */
int sup_pipeline_lost(slot *slots, size_t n);

/* Sends sig to every running child. */
void sup_signal_all(slot *slots, size_t n, int sig);

/* The number of children running. */
size_t sup_running(const slot *slots, size_t n);

/*
 * Prints, per pipeline, the total of its workers' counters over every
 * process each slot ran (restarts included), in the form of a worker's own
 * summary: "pipeline P total (N workers, R restarts): consumed ...", and
 * per relay "relay R total (N restarts): published ...". The children's
 * lines before them say what each process did.
 */
void sup_print_totals(const slot *slots, size_t n_slots);

/* The supervisor's handlers: SIGTERM and SIGINT go to on_stop, SIGHUP to
 * on_hup. Its children install their own (supervisor_child.c), which
 * tell the supervisor's stop signal from anyone else's. */
void sup_handle_signals(void (*on_stop)(int), void (*on_hup)(int));

#endif
