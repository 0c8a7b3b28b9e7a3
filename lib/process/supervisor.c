/*
 * supervisor.c - `exactly run`: validate, map the metrics slots, serve
 * the status, take the locks, then the loop that reaps the children,
 * starts each one when its restart time has come, reopens the log on
 * SIGHUP and drains on SIGTERM (SIGKILL at the deadline or on a second
 * signal). Contract: supervisor.h. The children's side (forking, how a
 * worker or relay ended, crash loops) is supervisor_child.c; validation,
 * lock files and the totals printed at the end are supervisor_setup.c.
 */
#include "supervisor.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "sd_notify.h"
#include "supervisor_internal.h"
#include "util/metrics.h"
#include "worker.h"

static volatile sig_atomic_t g_stop;     /* 1: drain, 2: kill now */
static volatile sig_atomic_t g_reopen;

static void on_stop(int sig)
{
    (void)sig;
    g_stop = g_stop ? 2 : 1;
}

static void on_hup(int sig)
{
    (void)sig;
    g_reopen = 1;
}

/* Tells systemd (Type=notify) how the supervisor stands; without
 * NOTIFY_SOCKET this does nothing. */
static void notify_manager(const char *state)
{
    char err[256];

    if (exactly_sd_notify(state, err, sizeof(err)) != EXACTLY_OK)
        exactly_log(EXACTLY_LOG_WARN, "supervisor",
                    "cannot notify the service manager", LOG_STR("error", err));
}

/* Whether run starts pipeline p (relay r): everything when nothing was
 * chosen, else only what --pipeline and --relay name. */
static int runs_pipeline(const exactly_supervisor_opts *o,
                         const cfg_pipeline *p)
{
    if (!o->only_pipeline && !o->only_relay)
        return 1;
    return o->only_pipeline && strcmp(o->only_pipeline, p->name) == 0;
}

static int runs_relay(const exactly_supervisor_opts *o, const cfg_relay *r)
{
    if (!o->only_pipeline && !o->only_relay)
        return 1;
    return o->only_relay && strcmp(o->only_relay, r->name) == 0;
}

/* What exactly_supervise() holds while it runs. */
typedef struct supervision {
    const exactly_supervisor_opts *o;
    slot *slots;
    size_t n_slots, n_relays;
    metrics_slot *shared;       /* n_mapped slots, MAP_SHARED */
    size_t n_mapped;
    exactly_http *http;
    int *locks;                 /* n_locks lock files, then the socket */
    size_t n_locks;
    const char **shown;         /* the pipelines the status page lists */
    size_t n_shown;
    int refused, lost, handler_stopped;
    int unclean;                /* children that ended badly in a stop */
    long long stop_deadline;
} supervision;

/* Validates what runs (every pipeline's handler and consumer, every
 * relay's producer) and counts its slots. Returns 0, or 2 when refused. */
static int count_slots(supervision *sv)
{
    const exactly_supervisor_opts *o = sv->o;
    const exactly_config *cfg = o->cfg;
    size_t i;

    for (i = 0; i < cfg->n_pipelines; i++) {
        const cfg_pipeline *p = &cfg->pipelines[i];
        if (!runs_pipeline(o, p))
            continue;
        if (sup_validate(cfg, p) != 0)
            return 2;
        sv->n_slots += (size_t)p->workers;
    }
    for (i = 0; i < cfg->n_relays; i++) {
        if (!runs_relay(o, &cfg->relays[i]))
            continue;
        if (sup_validate_relay(cfg, &cfg->relays[i]) != 0)
            return 2;
        sv->n_relays++;
    }
    sv->n_slots += sv->n_relays;
    return 0;
}

/* Starts the status server when an address is given. Returns 0, or 2
 * when the address is wrong or taken. */
static int serve_metrics(supervision *sv)
{
    const exactly_supervisor_opts *o = sv->o;
    char err[512], bound[64];
    size_t i;

    for (i = 0; i < o->cfg->n_pipelines; i++)
        if (runs_pipeline(o, &o->cfg->pipelines[i]))
            sv->shown[sv->n_shown++] = o->cfg->pipelines[i].name;
    if (!o->metrics_addr)
        return 0;
    /* A process of its own: no client can hold up this loop. */
    sv->http = exactly_http_start(o->cfg, sv->shown, sv->n_shown,
                                  o->metrics_addr, sv->shared, sv->n_slots,
                                  bound, sizeof(bound), err, sizeof(err));
    if (!sv->http) {
        exactly_log(EXACTLY_LOG_ERROR, "supervisor", "cannot serve metrics",
                    LOG_STR("error", err));
        return 2;
    }
    exactly_log(EXACTLY_LOG_INFO, "supervisor", "serving metrics",
                LOG_STR("address", bound),
                LOG_INT("server_pid", exactly_http_pid(sv->http)),
                LOG_STR("paths", "/,/status.json,/metrics,/healthz,/readyz"));
    return 0;
}

/* Takes each pipeline's lock and gives every worker and relay its slot
 * (and its metrics slot). Returns 0, or 2 when a lock is refused. */
static int fill_slots(supervision *sv, const char *lock_dir)
{
    const exactly_supervisor_opts *o = sv->o;
    const exactly_config *cfg = o->cfg;
    size_t i, n = 0;
    int k;

    for (i = 0; i < cfg->n_pipelines; i++) {
        const cfg_pipeline *p = &cfg->pipelines[i];
        if (!runs_pipeline(o, p))
            continue;
        if (sup_take_lock(lock_dir, p, &sv->locks[sv->n_locks]) != 0)
            return 2;
        sv->n_locks++;
        for (k = 0; k < p->workers; k++) {
            sv->slots[n].p = p;
            sv->slots[n].index = k;
            sv->slots[n].m = &sv->shared[n];
            snprintf(sv->shared[n].pipeline, sizeof(sv->shared[n].pipeline),
                     "%s", p->name);
            sv->shared[n].worker = k;
            sv->shared[n].meant = 1;
            n++;
        }
    }
    /* Relays need no lock file: one relay per outbox is the advisory lock
     * in PostgreSQL, and a second one waits there as a standby. */
    for (i = 0; i < cfg->n_relays; i++) {
        const cfg_relay *r = &cfg->relays[i];
        if (!runs_relay(o, r))
            continue;
        sv->slots[n].r = r;
        sv->slots[n].m = &sv->shared[n];
        snprintf(sv->shared[n].relay.name, sizeof(sv->shared[n].relay.name),
                 "%s", r->name);
        sv->shared[n].meant = 1;
        n++;
    }
    sv->n_slots = n;
    /* What start() closes in each child: the locks and the socket. */
    sv->locks[sv->n_locks] = exactly_http_fd(sv->http);
    return 0;
}

static void install_signals(void)
{
    sup_handle_signals(on_stop, on_hup);
    signal(SIGPIPE, SIG_IGN);
}

/* Reaps every child that ended: the status server, or a worker or relay
 * (restarted later by start_due; one that exits 0 is done only during a
 * stop or with --exit-idle). One that ends during a stop other than
 * with exit 0 (or 2 or 3, reported as such) did not stop cleanly: counted
 * in unclean, which makes the run's exit code 1. */
static void reap_children(supervision *sv)
{
    int status;
    pid_t pid;
    size_t i;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (exactly_http_reaped(sv->http, pid, status))
            continue;
        for (i = 0; i < sv->n_slots; i++) {
            int r;
            if (sv->slots[i].pid != pid)
                continue;
            r = sup_reaped(&sv->slots[i], status,
                           g_stop || sv->o->exit_idle_ms > 0);
            if (g_stop && r == 0 &&
                !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
                sv->unclean++;
            sv->refused |= r == 2;
            sv->handler_stopped |= r == EXACTLY_EXIT_HANDLER_STOP;
        }
    }
}

/* The drain: SIGTERM to every child once (with a deadline), SIGKILL at
 * the deadline or on a second signal. */
static void drain(supervision *sv, long long now)
{
    slot *slots = sv->slots;
    size_t n_slots = sv->n_slots;

    if (g_stop == 1 && sv->stop_deadline == 0) {
        exactly_log(EXACTLY_LOG_INFO, "supervisor",
                    "stopping: workers commit their batch and leave",
                    LOG_UINT("running", sup_running(slots, n_slots)),
                    LOG_INT("timeout_ms", sv->o->shutdown_timeout_ms));
        sup_signal_all(slots, n_slots, SIGTERM);
        sv->stop_deadline = now + sv->o->shutdown_timeout_ms;
        notify_manager("STOPPING=1\nSTATUS=workers commit their batch and leave");
    }
    if (g_stop == 2 || (sv->stop_deadline && now > sv->stop_deadline &&
                        sup_running(slots, n_slots) > 0)) {
        exactly_log(EXACTLY_LOG_WARN, "supervisor", "killing",
                    LOG_UINT("workers", sup_running(slots, n_slots)));
        sup_signal_all(slots, n_slots, SIGKILL);
        sv->stop_deadline = now + 3600 * 1000; /* only reaping is left */
        g_stop = 3;
    }
}

/* Starts every slot whose restart time has come. Returns 0 when every
 * slot is done (each worker finished: --exit-idle). */
static int start_due(supervision *sv, long long now)
{
    size_t i;
    int active = 0;

    for (i = 0; i < sv->n_slots; i++) {
        if (sv->slots[i].done)
            continue;
        active = 1;
        if (sv->slots[i].pid == 0 && now >= sv->slots[i].restart_at_ms)
            sup_start(sv->o, &sv->slots[i], sv->locks, sv->n_locks + 1);
    }
    return active;
}

/* Runs the children until they all ended; returns the exit code. */
static int supervise_loop(supervision *sv)
{
    for (;;) {
        long long now = sup_now_ms();

        reap_children(sv);
        if (g_reopen) {
            g_reopen = 0;
            (void)exactly_log_reopen();
            sup_signal_all(sv->slots, sv->n_slots, SIGHUP);
            exactly_http_reopen_log(sv->http);
        }
        if (!g_stop && (sv->refused ||
                        (sv->lost = sup_pipeline_lost(sv->slots, sv->n_slots)))) {
            g_stop = 1; /* stop the rest cleanly */
        }
        drain(sv, now);
        exactly_http_beat(sv->http, g_stop != 0);
        if (g_stop && sup_running(sv->slots, sv->n_slots) == 0)
            break;
        if (!g_stop && !start_due(sv, now))
            break; /* every worker finished (--exit-idle) */
        if (!g_stop)
            exactly_http_tick(sv->http, sv->locks, sv->n_locks);
        usleep(50 * 1000);
    }
    if (sv->unclean)
        exactly_log(EXACTLY_LOG_WARN, "supervisor",
                    "not every worker and relay stopped cleanly",
                    LOG_INT("unclean", sv->unclean));
    return sv->refused ? 2 : sv->lost ? 1 : g_stop >= 2 || sv->unclean ? 1
         : sv->handler_stopped ? EXACTLY_EXIT_HANDLER_STOP : 0;
}

int exactly_supervise(const exactly_supervisor_opts *o)
{
    const exactly_config *cfg = o->cfg;
    supervision sv;
    char lock_dir[4096];
    int code = 0;
    size_t i;

    memset(&sv, 0, sizeof(sv));
    sv.o = o;
    /* First: a stop or a SIGHUP during the start (validation, the status
     * server, the locks) is only noted, and acted on by the loop, never
     * the default action that would end run half started. */
    install_signals();
    if (o->log_file && exactly_log_set_file(o->log_file) != 0) {
        fprintf(stderr, "exactly run: cannot open log file %s: %s\n",
                o->log_file, strerror(errno));
        return 2;
    }
    if (o->lock_dir)
        snprintf(lock_dir, sizeof(lock_dir), "%s", o->lock_dir);
    else if (sup_default_lock_dir(lock_dir, sizeof(lock_dir)) != 0)
        return 2;
    if (count_slots(&sv) != 0)
        return 2;
    sv.n_mapped = sv.n_slots + 1;
    sv.slots = calloc(sv.n_slots + 1, sizeof(*sv.slots));
    sv.locks = calloc(cfg->n_pipelines + 1, sizeof(*sv.locks));
    sv.shown = calloc(cfg->n_pipelines + 1, sizeof(*sv.shown));
    /* Mapped before any fork, so every worker inherits the same pages. */
    sv.shared = metrics_map(sv.n_mapped);
    if (!sv.slots || !sv.locks || !sv.shown || !sv.shared) {
        code = 1;
        goto cleanup;
    }
    if ((code = serve_metrics(&sv)) != 0 ||
        (code = fill_slots(&sv, lock_dir)) != 0)
        goto cleanup;
    exactly_log(EXACTLY_LOG_INFO, "supervisor", "starting",
                LOG_UINT("workers", sv.n_slots - sv.n_relays),
                LOG_UINT("relays", sv.n_relays));
    /* Configuration, plugins, locks and the metrics socket are in place:
     * from here on a failure is a worker's, which restarts. */
    notify_manager("READY=1\nSTATUS=supervising the workers");
    code = supervise_loop(&sv);
    sup_print_totals(sv.slots, sv.n_slots);
    exactly_log(EXACTLY_LOG_INFO, "supervisor", "stopped", LOG_INT("code", code));

cleanup:
    exactly_http_stop(sv.http);
    metrics_unmap(sv.shared, sv.n_mapped);
    for (i = 0; i < sv.n_locks; i++)
        close(sv.locks[i]);
    free(sv.locks);
    free(sv.shown);
    free(sv.slots);
    return code;
}
