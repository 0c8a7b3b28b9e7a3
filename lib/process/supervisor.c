#include "supervisor.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "util/host_id.h"
#include "util/metrics.h"
#include "plugin.h"
#include "producer.h"
#include "relay.h"
#include "sd_notify.h"
#include "source.h"
#include "worker.h"

#define RESTART_MIN_MS 500
#define RESTART_MAX_MS 30000
/* A worker that dies sooner than this after its start failed to start;
 * so did one that committed nothing before dying within PROGRESS_WINDOW_MS
 * (its group join alone can outlast the first rule: it waits for the dead
 * predecessor's session to expire). */
#define FAST_FAILURE_MS 10000
#define PROGRESS_WINDOW_MS 300000
/* That many fast failures in a row make a crash loop. */
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
    uint64_t committed_at_start; /* batches committed (a relay: sessions
                                    opened) when it started */
    int done;             /* exited 0 (idle) or refused: not restarted */
    int crash_loop;
} slot;

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

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Everything a worker would refuse, refused here before any fork. */
static int validate(const exactly_config *cfg, const cfg_pipeline *p)
{
    char err[2048], reset[16];
    exactly_plugin *pl = NULL;
    rd_kafka_conf_t *conf;

    if (exactly_plugin_load(cfg, p, &pl, err, sizeof(err)) != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_ERROR, "supervisor", "handler refused",
                    LOG_STR("pipeline", p->name), LOG_STR("error", err));
        return -1;
    }
    exactly_plugin_free(pl);
    conf = exactly_kafka_conf(cfg, p, reset, "exactly-supervisor", err,
                              sizeof(err));
    if (!conf) {
        exactly_log(EXACTLY_LOG_ERROR, "supervisor", "kafka configuration refused",
                    LOG_STR("pipeline", p->name), LOG_STR("error", err));
        return -1;
    }
    rd_kafka_conf_destroy(conf);
    return 0;
}

/* What a relay would refuse, refused here before any fork. */
static int validate_relay(const exactly_config *cfg, const cfg_relay *r)
{
    char err[2048];
    rd_kafka_conf_t *conf =
        exactly_kafka_producer_conf(cfg, r, "exactly-supervisor", err,
                                    sizeof(err));

    if (!conf) {
        exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                    "relay's kafka configuration refused",
                    LOG_STR("relay", r->name), LOG_STR("error", err));
        return -1;
    }
    rd_kafka_conf_destroy(conf);
    return 0;
}

/* Where lock files go when neither --lock-dir nor $EXACTLY_LOCK_DIR says:
 * a runtime directory of this user, never a world-writable /tmp. Writes
 * the path into out; creates the directory (0700) when missing. Returns 0,
 * or -1 (logged) when it cannot be created. */
static int default_lock_dir(char *out, size_t size)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");

    if (xdg && xdg[0] == '/')
        snprintf(out, size, "%s/exactly", xdg);
    else
        snprintf(out, size, "/run/exactly");
    if (mkdir(out, 0700) != 0 && errno != EEXIST) {
        exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                    "cannot create lock directory; pass --lock-dir DIR or set "
                    "EXACTLY_LOCK_DIR",
                    LOG_STR("path", out), LOG_STR("error", strerror(errno)));
        return -1;
    }
    return 0;
}

/* Opens the lock directory after checking that nobody but this user (or
 * root) can plant or remove files in it. Returns the directory's
 * descriptor, or -1 (logged). */
static int open_lock_dir(const char *dir)
{
    struct stat st;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (dfd < 0) {
        exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                    "cannot open lock directory", LOG_STR("path", dir),
                    LOG_STR("error", strerror(errno)));
        return -1;
    }
    if (fstat(dfd, &st) != 0 || (st.st_uid != geteuid() && st.st_uid != 0) ||
        (st.st_mode & (S_IWGRP | S_IWOTH))) {
        char mode[8];
        snprintf(mode, sizeof(mode), "%03o", (unsigned)(st.st_mode & 07777));
        exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                    "lock directory is writable by other users or owned by "
                    "another: anyone could hold or replace the lock there; "
                    "use a directory of your own (--lock-dir)",
                    LOG_STR("path", dir), LOG_STR("mode", mode),
                    LOG_INT("owner", st.st_uid));
        close(dfd);
        return -1;
    }
    return dfd;
}

/* The lock file's name for a consumer group: "exactly-GROUP.lock" with
 * every byte outside [A-Za-z0-9._-] written as %XX, so that no group name
 * can leave the directory or name another file. -1 when it is too long. */
static int lock_name(const char *group, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    const unsigned char *c;

    n = (size_t)snprintf(out, size, "exactly-");
    for (c = (const unsigned char *)group; *c; c++) {
        if (n + 4 >= size)
            return -1;
        if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
            (*c >= '0' && *c <= '9') || *c == '.' || *c == '_' || *c == '-') {
            out[n++] = (char)*c;
        } else {
            out[n++] = '%';
            out[n++] = hex[*c >> 4];
            out[n++] = hex[*c & 15];
        }
    }
    if (n + sizeof(".lock") > size)
        return -1;
    memcpy(out + n, ".lock", sizeof(".lock"));
    return 0;
}

/* One lock per consumer group on this host: two supervisors running the
 * same pipeline by accident would only fence each other all day. The file
 * is opened without following a symbolic link and must be a regular file
 * of this user, readable by nobody else (0600): others can neither hold
 * the lock nor write a pid into it. Returns 0 with *fd_out set, or -1
 * (logged). */
static int take_lock(const char *dir, const cfg_pipeline *p, int *fd_out)
{
    char path[4096 + 256 + 2], name[256], holder[64];
    struct stat st;
    ssize_t n;
    int dfd, fd;

    if (lock_name(p->group, name, sizeof(name)) != 0) {
        exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                    "consumer group name is too long for a lock file name",
                    LOG_STR("pipeline", p->name), LOG_STR("group", p->group));
        return -1;
    }
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    dfd = open_lock_dir(dir);
    if (dfd < 0)
        return -1;
    fd = openat(dfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    close(dfd);
    if (fd < 0 && errno == ELOOP) {
        exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                    "cannot open lock file: it is a symbolic link (refused)",
                    LOG_STR("path", path), LOG_STR("error", strerror(errno)));
        return -1;
    }
    if (fd < 0) {
        exactly_log(EXACTLY_LOG_ERROR, "supervisor", "cannot open lock file",
                    LOG_STR("path", path), LOG_STR("error", strerror(errno)));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        st.st_uid != geteuid() || st.st_nlink != 1 ||
        (st.st_mode & 077)) {
        char mode[8];
        snprintf(mode, sizeof(mode), "%03o", (unsigned)(st.st_mode & 07777));
        exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                    "lock file is not a private regular file of this user; "
                    "remove it",
                    LOG_STR("path", path), LOG_STR("mode", mode),
                    LOG_INT("owner", st.st_uid), LOG_INT("links", st.st_nlink));
        close(fd);
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        n = pread(fd, holder, sizeof(holder) - 1, 0);
        holder[n > 0 ? n : 0] = '\0';
        holder[strcspn(holder, "\n")] = '\0';
        exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                    "pipeline is already run on this host by another "
                    "supervisor",
                    LOG_STR("pipeline", p->name), LOG_STR("group", p->group),
                    LOG_STR("supervisor_pid", holder[0] ? holder : "?"),
                    LOG_STR("lock_file", path));
        close(fd);
        return -1;
    }
    if (ftruncate(fd, 0) == 0) {
        n = snprintf(holder, sizeof(holder), "%d\n", (int)getpid());
        if (pwrite(fd, holder, (size_t)n, 0) != n)
            exactly_log(EXACTLY_LOG_WARN, "supervisor",
                        "cannot write pid into lock file", LOG_STR("path", path));
    }
    *fd_out = fd;
    return 0;
}

static volatile sig_atomic_t w_stop;
static volatile sig_atomic_t w_reopen;
static void worker_on_stop(int sig) { (void)sig; if (w_stop) _exit(1); w_stop = 1; }
static void worker_on_hup(int sig) { (void)sig; w_reopen = 1; }

static void install_worker_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = worker_on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = worker_on_hup;
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &sa, NULL);
}

/* The slot's identity in its consumer group, the same for every process
 * the slot runs: "<pipeline>-<host>-<index>" with bytes outside
 * [A-Za-z0-9._-] replaced by '_' (what Kafka accepts in an id). One
 * supervisor per group and host (the lock) keeps it unique. */
static void slot_instance_id(const slot *s, char *out, size_t size)
{
    char host[128];
    size_t i;

    if (exactly_host_id(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "unknown"); /* refused before: cmd_run */
    snprintf(out, size, "%s-%s-%d", s->p->name, host, s->index);
    for (i = 0; out[i]; i++)
        if (!((out[i] >= 'a' && out[i] <= 'z') || (out[i] >= 'A' && out[i] <= 'Z') ||
              (out[i] >= '0' && out[i] <= '9') || out[i] == '.' ||
              out[i] == '_' || out[i] == '-'))
            out[i] = '_';
}

static void run_worker(const exactly_supervisor_opts *o, slot *s, pid_t parent)
{
    exactly_worker_opts wo;
    exactly_worker_stats st;
    char instance[256];
    int code;

    /* Never outlive the supervisor; and if it died before this line ran,
     * the signal will never come, so look. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(1);

    memset(&wo, 0, sizeof(wo));
    wo.cfg = o->cfg;
    wo.pipeline = s->p;
    wo.worker_index = s->index;
    wo.exit_idle_ms = o->exit_idle_ms;
    wo.stop = &w_stop;
    wo.reopen_log = &w_reopen;
    wo.metrics = s->m;
    slot_instance_id(s, instance, sizeof(instance));
    wo.instance_id = instance;
    memset(&st, 0, sizeof(st));
    code = exactly_worker_run(&wo, &st);
    if (code != 2)
        exactly_worker_print_summary(s->p->name, &st);
    fflush(NULL);
    _exit(code);
}

static void run_relay(const exactly_supervisor_opts *o, slot *s, pid_t parent)
{
    exactly_relay_opts ro;
    exactly_relay_stats st;
    int code;

    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(1);
    memset(&ro, 0, sizeof(ro));
    ro.cfg = o->cfg;
    ro.relay = s->r;
    ro.stop = &w_stop;
    ro.reopen_log = &w_reopen;
    ro.exit_idle_ms = o->exit_idle_ms;
    ro.metrics = s->m;
    memset(&st, 0, sizeof(st));
    code = exactly_relay_run(&ro, &st);
    if (code != 2)
        exactly_relay_print_summary(s->r->name, &st);
    fflush(NULL);
    _exit(code);
}

/* The figure whose growth during a process's life shows it did more than
 * start: batches committed by a worker, sessions opened by a relay. */
static uint64_t progress_mark(const slot *s)
{
    if (!s->m)
        return 0;
    return s->r ? __atomic_load_n(&s->m->relay.connects, __ATOMIC_RELAXED)
                : __atomic_load_n(&s->m->batches_committed, __ATOMIC_RELAXED);
}

/* Forks the worker (or relay) of slot s. fds are the supervisor's own descriptors
 * (lock files, the metrics socket): the child closes them at once, so that
 * a worker never holds the lock or the port of its supervisor. */
static void start(const exactly_supervisor_opts *o, slot *s, const int *fds,
                  size_t n_fds)
{
    pid_t parent = getpid();
    pid_t pid;

    sigset_t all, old;

    fflush(NULL); /* nothing buffered twice */
    /* The new process owns nothing until it claims (before the fork: the
     * child's claims must not be undone). */
    if (s->m)
        metrics_slot_disown(s->m);
    /* A signal between fork and the worker's own handlers would run the
     * supervisor's handler in the child and be lost: hold them until the
     * child has installed its own. */
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid = fork();
    if (pid == 0) {
        size_t i;
        for (i = 0; i < n_fds; i++)
            if (fds[i] >= 0)
                close(fds[i]);
        install_worker_signals();
        sigprocmask(SIG_SETMASK, &old, NULL);
        if (s->r)
            run_relay(o, s, parent);
        run_worker(o, s, parent);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        exactly_log(EXACTLY_LOG_ERROR, "supervisor", "fork failed",
                    LOG_STR("error", strerror(errno)));
        s->restart_at_ms = now_ms() + RESTART_MAX_MS;
        return;
    }
    s->pid = pid;
    s->started_ms = now_ms();
    s->committed_at_start = progress_mark(s);
    if (s->m) {
        __atomic_store_n(&s->m->up, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&s->m->pid, (int32_t)pid, __ATOMIC_RELAXED);
        if (s->starts > 0)
            metrics_add(&s->m->restarts, 1);
    }
    s->starts++;
    if (s->r)
        exactly_log(EXACTLY_LOG_INFO, "supervisor", "relay started",
                    LOG_STR("relay", s->r->name), LOG_INT("relay_pid", pid),
                    LOG_INT("restarts", s->starts - 1));
    else
        exactly_log(EXACTLY_LOG_INFO, "supervisor", "worker started",
                    LOG_STR("pipeline", s->p->name),
                    LOG_INT("worker", s->index), LOG_INT("worker_pid", pid));
}

static long long restart_delay(int failures)
{
    long long d = RESTART_MIN_MS;
    int i;

    for (i = 1; i < failures && d < RESTART_MAX_MS; i++)
        d *= 2;
    return d < RESTART_MAX_MS ? d : RESTART_MAX_MS;
}

/* Logs how the relay of slot s ended (reaped() decided the rest). */
static void log_relay_end(const slot *s, int status, int code,
                          long long lived)
{
    const char *name = s->r->name;

    if (code == 0)
        exactly_log(EXACTLY_LOG_INFO, "supervisor", "relay finished",
                    LOG_STR("relay", name));
    else if (code == 2)
        exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                    "relay refused to start (configuration or schema; see "
                    "its log)", LOG_STR("relay", name));
    else if (WIFSIGNALED(status))
        exactly_log(EXACTLY_LOG_WARN, "supervisor", "relay killed by signal",
                    LOG_STR("relay", name), LOG_INT("signal", WTERMSIG(status)),
                    LOG_INT("lived_ms", lived),
                    LOG_INT("restart_in_ms", s->restart_at_ms - now_ms()));
    else
        exactly_log(EXACTLY_LOG_WARN, "supervisor", "relay exited",
                    LOG_STR("relay", name), LOG_INT("code", code),
                    LOG_INT("lived_ms", lived),
                    LOG_INT("restart_in_ms", s->restart_at_ms - now_ms()));
}

/* Records how a worker (or relay) ended; returns 2 when it refused to
 * start, EXACTLY_EXIT_HANDLER_STOP when its handler stopped it (neither is
 * restarted: starting again would only meet the same answer). */
static int reaped(slot *s, int status)
{
    long long lived = now_ms() - s->started_ms;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;

    s->pid = 0;
    if (s->m) {
        /* A dead worker owns nothing: its gauges go, its counters stay. */
        metrics_slot_disown(s->m);
        __atomic_store_n(&s->m->up, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->m->pid, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->m->ready, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->m->relay.publishing, 0, __ATOMIC_RELAXED);
    }
    if (code == 0 || code == 2) {
        if (s->r)
            log_relay_end(s, status, code, lived);
        else if (code == 0)
            exactly_log(EXACTLY_LOG_INFO, "supervisor", "worker finished",
                        LOG_STR("pipeline", s->p->name),
                        LOG_INT("worker", s->index));
        else
            exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                        "worker refused to start (configuration, plugin or "
                        "schema; see its log)",
                        LOG_STR("pipeline", s->p->name),
                        LOG_INT("worker", s->index));
        s->done = 1;
        return code;
    }
    if (code == EXACTLY_EXIT_HANDLER_STOP && !s->r) {
        exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                    "worker stopped by its handler (EXACTLY_EFATAL; see its "
                    "log); not restarted",
                    LOG_STR("pipeline", s->p->name),
                    LOG_INT("worker", s->index));
        s->done = 1;
        return EXACTLY_EXIT_HANDLER_STOP;
    }
    {
        int progressed = progress_mark(s) > s->committed_at_start;
        int failed_start = lived < FAST_FAILURE_MS ||
                           (!progressed && lived < PROGRESS_WINDOW_MS);
        s->fast_failures = failed_start ? s->fast_failures + 1 : 1;
    }
    s->restart_at_ms = now_ms() + restart_delay(s->fast_failures);
    if (s->fast_failures >= CRASH_LOOP_AFTER && !s->crash_loop) {
        s->crash_loop = 1;
        if (s->r)
            exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                        "relay is in a crash loop",
                        LOG_STR("relay", s->r->name),
                        LOG_INT("failures", s->fast_failures));
        else
            exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                        "worker is in a crash loop",
                        LOG_STR("pipeline", s->p->name),
                        LOG_INT("worker", s->index),
                        LOG_INT("failures", s->fast_failures));
    }
    if (s->r)
        log_relay_end(s, status, code, lived);
    else if (WIFSIGNALED(status))
        exactly_log(EXACTLY_LOG_WARN, "supervisor", "worker killed by signal",
                    LOG_STR("pipeline", s->p->name),
                    LOG_INT("worker", s->index),
                    LOG_INT("signal", WTERMSIG(status)),
                    LOG_INT("lived_ms", lived),
                    LOG_INT("restart_in_ms", s->restart_at_ms - now_ms()));
    else
        exactly_log(EXACTLY_LOG_WARN, "supervisor", "worker exited",
                    LOG_STR("pipeline", s->p->name),
                    LOG_INT("worker", s->index),
                    LOG_INT("code", code), LOG_INT("lived_ms", lived),
                    LOG_INT("restart_in_ms", s->restart_at_ms - now_ms()));
    if (s->fast_failures == 1)
        s->crash_loop = 0;
    return 0;
}

/* 1 when every worker of some pipeline, or some relay, is in a crash
 * loop. */
static int pipeline_lost(const slot *slots, size_t n)
{
    size_t i, j;

    for (i = 0; i < n; i++) {
        int all = 1;
        if (slots[i].r) {
            if (!slots[i].crash_loop)
                continue;
            exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                        "the relay is in a crash loop; giving up",
                        LOG_STR("relay", slots[i].r->name));
            return 1;
        }
        for (j = 0; j < n; j++)
            if (slots[j].p == slots[i].p && !slots[j].crash_loop)
                all = 0;
        if (all) {
            exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                        "every worker of the pipeline is in a crash loop; "
                        "giving up",
                        LOG_STR("pipeline", slots[i].p->name));
            return 1;
        }
    }
    return 0;
}

static void signal_all(slot *slots, size_t n, int sig)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (slots[i].pid > 0)
            kill(slots[i].pid, sig);
}

static size_t running(const slot *slots, size_t n)
{
    size_t i, r = 0;

    for (i = 0; i < n; i++)
        r += slots[i].pid > 0;
    return r;
}

/*
 * Prints, per pipeline, the total of its workers' counters over every
 * process each slot ran (restarts included), in the form of a worker's own
 * summary: "pipeline P total (N workers, R restarts): consumed ...", and
 * per relay "relay R total (N restarts): published ...". The children's
 * lines before them say what each process did.
 */
static void print_totals(const slot *slots, size_t n_slots)
{
    size_t i, j;

    for (i = 0; i < n_slots; i++) {
        uint64_t c = 0, a = 0, d = 0, dl = 0, sk = 0, bc = 0, rb = 0, f = 0,
                 rt = 0, rs = 0;
        int n = 0, seen = 0;
        if (slots[i].r && slots[i].m) {
            const metrics_relay *mr = &slots[i].m->relay;
            rs = __atomic_load_n(&slots[i].m->restarts, __ATOMIC_RELAXED);
            printf("relay %s total (%" PRIu64 " restart%s): published %" PRIu64
                   ", dead-lettered %" PRIu64 ", sent again %" PRIu64 "\n",
                   slots[i].r->name, rs, rs == 1 ? "" : "s",
                   (uint64_t)__atomic_load_n(&mr->published, __ATOMIC_RELAXED),
                   (uint64_t)__atomic_load_n(&mr->dead_lettered,
                                             __ATOMIC_RELAXED),
                   (uint64_t)__atomic_load_n(&mr->resent, __ATOMIC_RELAXED));
            continue;
        }
        for (j = 0; j < i && !seen; j++)
            seen = slots[j].p == slots[i].p;
        if (seen || !slots[i].m)
            continue;
        for (j = i; j < n_slots; j++) {
            const metrics_slot *m = slots[j].m;
            if (slots[j].p != slots[i].p || !m)
                continue;
            n++;
            c += __atomic_load_n(&m->consumed, __ATOMIC_RELAXED);
            a += __atomic_load_n(&m->applied, __ATOMIC_RELAXED);
            d += __atomic_load_n(&m->deduplicated, __ATOMIC_RELAXED);
            dl += __atomic_load_n(&m->dead_lettered, __ATOMIC_RELAXED);
            sk += __atomic_load_n(&m->skipped_missing, __ATOMIC_RELAXED);
            bc += __atomic_load_n(&m->batches_committed, __ATOMIC_RELAXED);
            rb += __atomic_load_n(&m->batches_rolled_back, __ATOMIC_RELAXED);
            f += __atomic_load_n(&m->batches_fenced, __ATOMIC_RELAXED);
            rt += __atomic_load_n(&m->retries_total, __ATOMIC_RELAXED);
            rs += __atomic_load_n(&m->restarts, __ATOMIC_RELAXED);
        }
        printf("pipeline %s total (%d worker%s, %" PRIu64 " restart%s): "
               "consumed %" PRIu64 ", applied %" PRIu64 ", deduplicated %"
               PRIu64 ", dead-lettered %" PRIu64 ", skipped (no row) %" PRIu64
               "; batches committed %" PRIu64 ", rolled back %" PRIu64
               ", fenced %" PRIu64 "; retries %" PRIu64 "\n",
               slots[i].p->name, n, n == 1 ? "" : "s", rs, rs == 1 ? "" : "s",
               c, a, d, dl, sk, bc, rb, f, rt);
    }
    fflush(stdout);
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

int exactly_supervise(const exactly_supervisor_opts *o)
{
    const exactly_config *cfg = o->cfg;
    slot *slots = NULL;
    metrics_slot *shared = NULL;
    exactly_http *http = NULL;
    int *locks = NULL;
    const char **shown = NULL; /* the pipelines the status page lists */
    size_t n_slots = 0, n_mapped = 0, n_locks = 0, n_shown = 0, n_relays = 0, i;
    int code = 0, refused = 0, lost = 0, handler_stopped = 0;
    long long stop_deadline = 0;
    struct sigaction sa;
    char lock_dir[4096];
    int k;

    if (o->log_file && exactly_log_set_file(o->log_file) != 0) {
        fprintf(stderr, "exactly run: cannot open log file %s: %s\n",
                o->log_file, strerror(errno));
        return 2;
    }
    if (o->lock_dir)
        snprintf(lock_dir, sizeof(lock_dir), "%s", o->lock_dir);
    else if (default_lock_dir(lock_dir, sizeof(lock_dir)) != 0)
        return 2;
    for (i = 0; i < cfg->n_pipelines; i++) {
        const cfg_pipeline *p = &cfg->pipelines[i];
        if (!runs_pipeline(o, p))
            continue;
        if (validate(cfg, p) != 0)
            return 2;
        n_slots += (size_t)p->workers;
    }
    for (i = 0; i < cfg->n_relays; i++) {
        if (!runs_relay(o, &cfg->relays[i]))
            continue;
        if (validate_relay(cfg, &cfg->relays[i]) != 0)
            return 2;
        n_relays++;
    }
    n_slots += n_relays;
    n_mapped = n_slots + 1;
    slots = calloc(n_slots + 1, sizeof(*slots));
    locks = calloc(cfg->n_pipelines + 1, sizeof(*locks));
    shown = calloc(cfg->n_pipelines + 1, sizeof(*shown));
    /* Mapped before any fork, so every worker inherits the same pages. */
    shared = metrics_map(n_mapped);
    if (!slots || !locks || !shown || !shared) {
        code = 1;
        goto cleanup;
    }
    for (i = 0; i < cfg->n_pipelines; i++)
        if (runs_pipeline(o, &cfg->pipelines[i]))
            shown[n_shown++] = cfg->pipelines[i].name;
    if (o->metrics_addr) {
        char err[512], bound[64];
        /* A process of its own: no client can hold up this loop. */
        http = exactly_http_start(cfg, shown, n_shown, o->metrics_addr,
                                  shared, n_slots, bound, sizeof(bound), err,
                                  sizeof(err));
        if (!http) {
            exactly_log(EXACTLY_LOG_ERROR, "supervisor", "cannot serve metrics",
                        LOG_STR("error", err));
            code = 2;
            goto cleanup;
        }
        exactly_log(EXACTLY_LOG_INFO, "supervisor", "serving metrics",
                    LOG_STR("address", bound),
                    LOG_INT("server_pid", exactly_http_pid(http)),
                    LOG_STR("paths", "/,/status.json,/metrics,/healthz,/readyz"));
    }
    n_slots = 0;
    for (i = 0; i < cfg->n_pipelines; i++) {
        const cfg_pipeline *p = &cfg->pipelines[i];
        if (!runs_pipeline(o, p))
            continue;
        if (take_lock(lock_dir, p, &locks[n_locks]) != 0) {
            code = 2;
            goto cleanup;
        }
        n_locks++;
        for (k = 0; k < p->workers; k++) {
            slots[n_slots].p = p;
            slots[n_slots].index = k;
            slots[n_slots].m = &shared[n_slots];
            snprintf(shared[n_slots].pipeline, sizeof(shared[n_slots].pipeline),
                     "%s", p->name);
            shared[n_slots].worker = k;
            n_slots++;
        }
    }
    /* Relays need no lock file: one relay per outbox is the advisory lock
     * in PostgreSQL, and a second one waits there as a standby. */
    for (i = 0; i < cfg->n_relays; i++) {
        const cfg_relay *r = &cfg->relays[i];
        if (!runs_relay(o, r))
            continue;
        slots[n_slots].r = r;
        slots[n_slots].m = &shared[n_slots];
        snprintf(shared[n_slots].relay.name,
                 sizeof(shared[n_slots].relay.name), "%s", r->name);
        n_slots++;
    }
    /* What start() closes in each child: the locks and the socket. */
    locks[n_locks] = exactly_http_fd(http);

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    exactly_log(EXACTLY_LOG_INFO, "supervisor", "starting",
                LOG_UINT("workers", n_slots - n_relays),
                LOG_UINT("relays", n_relays));
    /* Configuration, plugins, locks and the metrics socket are in place:
     * from here on a failure is a worker's, which restarts. */
    notify_manager("READY=1\nSTATUS=supervising the workers");

    for (;;) {
        int status;
        pid_t pid;
        long long now = now_ms();

        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            if (exactly_http_reaped(http, pid, status))
                continue;
            for (i = 0; i < n_slots; i++) {
                int r;
                if (slots[i].pid != pid)
                    continue;
                r = reaped(&slots[i], status);
                refused |= r == 2;
                handler_stopped |= r == EXACTLY_EXIT_HANDLER_STOP;
            }
        }
        if (g_reopen) {
            g_reopen = 0;
            (void)exactly_log_reopen();
            signal_all(slots, n_slots, SIGHUP);
        }
        if (!g_stop && (refused || (lost = pipeline_lost(slots, n_slots)))) {
            g_stop = 1; /* stop the rest cleanly */
        }
        if (g_stop == 1 && stop_deadline == 0) {
            exactly_log(EXACTLY_LOG_INFO, "supervisor",
                        "stopping: workers commit their batch and leave",
                        LOG_UINT("running", running(slots, n_slots)),
                        LOG_INT("timeout_ms", o->shutdown_timeout_ms));
            signal_all(slots, n_slots, SIGTERM);
            stop_deadline = now + o->shutdown_timeout_ms;
            notify_manager("STOPPING=1\nSTATUS=workers commit their batch and leave");
        }
        if (g_stop == 2 || (stop_deadline && now > stop_deadline &&
                            running(slots, n_slots) > 0)) {
            exactly_log(EXACTLY_LOG_WARN, "supervisor", "killing",
                        LOG_UINT("workers", running(slots, n_slots)));
            signal_all(slots, n_slots, SIGKILL);
            stop_deadline = now + 3600 * 1000; /* only reaping is left */
            g_stop = 3;
        }
        if (g_stop && running(slots, n_slots) == 0)
            break;
        if (!g_stop) {
            int active = 0;
            for (i = 0; i < n_slots; i++) {
                if (slots[i].done)
                    continue;
                active = 1;
                if (slots[i].pid == 0 && now >= slots[i].restart_at_ms)
                    start(o, &slots[i], locks, n_locks + 1);
            }
            if (!active)
                break; /* every worker finished (--exit-idle) */
        }
        if (!g_stop)
            exactly_http_tick(http, locks, n_locks);
        usleep(50 * 1000);
    }
    code = refused ? 2 : lost ? 1 : g_stop >= 2 ? 1
         : handler_stopped ? EXACTLY_EXIT_HANDLER_STOP : 0;
    print_totals(slots, n_slots);
    exactly_log(EXACTLY_LOG_INFO, "supervisor", "stopped", LOG_INT("code", code));

cleanup:
    exactly_http_stop(http);
    metrics_unmap(shared, n_mapped);
    for (i = 0; i < n_locks; i++)
        close(locks[i]);
    free(locks);
    free(shown);
    free(slots);
    return code;
}
