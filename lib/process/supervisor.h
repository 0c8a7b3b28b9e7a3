/*
 * supervisor.h - `exactly run`: the parent of a config's worker processes.
 *
 * It validates the configuration and loads every handler once (so that a
 * refusal happens before anything starts), takes a per-pipeline lock, then
 * forks the configured number of workers per pipeline before any
 * librdkafka or libpq handle exists in it. Each worker slot joins its group
 * as a static member (group.instance.id "PIPELINE-HOST-INDEX"), the same
 * for every process the slot runs. A worker that dies is restarted
 * with capped exponential backoff; one that keeps dying within seconds of
 * its start, or before it committed anything (a worker that cannot claim
 * its partitions gives up and exits), is in a crash loop, and when every worker of a pipeline is,
 * the supervisor gives up. Workers inherit neither the lock files nor the
 * metrics socket. SIGTERM/SIGINT ask every worker to commit its
 * batch and stop (a static member keeps its partitions for its session),
 * with a deadline after which they are killed; a
 * second signal kills them at once. SIGHUP reopens the log file in every
 * process. Workers die with their supervisor (PR_SET_PDEATHSIG). Under
 * systemd (NOTIFY_SOCKET set, Type=notify) it sends READY=1 once the
 * configuration, plugins and locks are in place, and STOPPING=1 when the
 * drain starts.
 *
 * Each relay of the configuration (relays.NAME) is a child too, forked the
 * same way and restarted by the same rules: it runs exactly_relay_run()
 * with a metrics slot of its own, stops on SIGTERM with the workers, and
 * is in a crash loop, which stops run, when it keeps dying before it
 * opened a PostgreSQL session. The supervisor itself never connects to
 * PostgreSQL or Kafka.
 */
#ifndef EXACTLY_SUPERVISOR_H
#define EXACTLY_SUPERVISOR_H

#include "config.h"

typedef struct exactly_supervisor_opts {
    const exactly_config *cfg;
    /* What runs: with both NULL every pipeline and every relay of the
     * file; otherwise only the pipeline and the relay they name. */
    const char *only_pipeline;
    const char *only_relay;
    int exit_idle_ms;           /* passed to the workers; 0: run until stopped */
    int shutdown_timeout_ms;    /* after SIGTERM, then SIGKILL */
    /* Where the per-group lock files live; NULL: $XDG_RUNTIME_DIR/exactly,
     * else /run/exactly (created 0700). The directory must not be
     * writable by other users: a lock there could be planted or held by
     * anyone. */
    const char *lock_dir;
    const char *log_file;       /* NULL: stderr */
    const char *metrics_addr;   /* "127.0.0.1:PORT" for /metrics; NULL: off */
} exactly_supervisor_opts;

/* Returns the process exit code: 0 when every worker and relay ended
 * cleanly (exit 0), 2 when the configuration, a plugin or a lock was
 * refused (or a worker refused to start), 1 when a pipeline is entirely in
 * a crash loop, when a child had to be killed or ended otherwise than with
 * exit 0 during the stop (a crash, a second signal of its own), or on
 * other failures; 3 (EXACTLY_EXIT_HANDLER_STOP) when a handler stopped its
 * worker and nothing above applies. */
int exactly_supervise(const exactly_supervisor_opts *o);

#endif
