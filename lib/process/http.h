/*
 * http.h - the supervisor's HTTP server: /metrics, /healthz, /readyz, the
 * status page / and /status.json.
 *
 * libmicrohttpd serves from threads of its own, in a process of its own
 * forked by the supervisor (which stays single-threaded, so that forking
 * a worker never copies a lock another thread held), so that no client
 * (one that never reads, sends a byte at a time, opens a thousand
 * connections or a megabyte of request line) can hold up the supervisor's
 * loop of reaping, restarting and stopping workers. Everything served
 * comes from the shared metrics slots (read with relaxed atomic loads) and
 * from a status reader thread that queries PostgreSQL every
 * STATUS_PERIOD_MS with short timeouts and keeps its last answer: a
 * request never waits for the database, and neither does the supervisor.
 *
 * The address is a loopback "IPv4:PORT" (a port is required; 0 asks for
 * any free one, and the bound address is returned). Exact paths only, a
 * query string ignored; anything else is 404, a method other than GET or
 * HEAD 405.
 */
#ifndef EXACTLY_HTTP_H
#define EXACTLY_HTTP_H

#include <stddef.h>
#include <sys/types.h>

#include "config.h"
#include "util/metrics.h"

typedef struct exactly_http exactly_http;

/* Binds addr and forks the process serving slots[0..n) (a MAP_SHARED
 * region): the pipelines named in pipelines[0..n_pipelines) (copied) and
 * every relay whose slot is among them. Returns NULL with errbuf set when
 * the address is wrong or taken or a thread cannot start. */
exactly_http *exactly_http_start(const exactly_config *cfg,
                                 const char *const *pipelines,
                                 size_t n_pipelines, const char *addr,
                                 const metrics_slot *slots, size_t n,
                                 char *bound, size_t bound_size, char *errbuf,
                                 size_t errbuf_size);

/* The listening socket (for a forked child to close); -1 for NULL. */
int exactly_http_fd(const exactly_http *h);

/* The server process; 0 while none runs. */
pid_t exactly_http_pid(const exactly_http *h);

/* For the supervisor's waitpid loop: 1 when pid was the server process
 * (then it is started again by exactly_http_tick), 0 otherwise. */
int exactly_http_reaped(exactly_http *h, pid_t pid, int status);

/* Starts the server process again when it ended (at most once a second).
 * fds: the supervisor's own descriptors (lock files), closed in the new
 * process like in a worker. */
void exactly_http_tick(exactly_http *h, const int *fds, size_t n_fds);

/* Tells the server process to reopen the log file (SIGHUP), after the
 * supervisor reopened its own. NULL-safe. */
void exactly_http_reopen_log(exactly_http *h);

/* The supervisor's loop turned (call it at every turn): /healthz answers
 * 200 while the turns go on and stopping is 0; 503 once stopping is set
 * (a signal, or a pipeline refused or given up: the run stops) or when no
 * turn came for HTTP_SUPERVISOR_STUCK_MS (a stuck supervisor: the server
 * process would otherwise outlive it answering ok). /readyz is 503 then
 * too. NULL-safe. */
void exactly_http_beat(exactly_http *h, int stopping);

/* Stops the server process (SIGTERM; SIGKILL after 2 s) and frees h.
 * NULL-safe. */
void exactly_http_stop(exactly_http *h);

#endif
