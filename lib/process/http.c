/*
 * http.c - the server process of the status endpoints: binding the
 * loopback address in the supervisor, forking the process that serves it
 * (libmicrohttpd's threads and the status reader run there, never in the
 * supervisor), routing a request to /metrics, /healthz, /readyz, / or
 * /status.json, and restarting or stopping that process. Contract: http.h.
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "http_internal.h"
#include "log.h"
#include "metrics_render.h"

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status,
                             const char *type, char *body)
{
    struct MHD_Response *r;
    enum MHD_Result ret;

    if (!body) {
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        type = "text/plain";
        r = MHD_create_response_from_buffer(strlen("out of memory\n"),
                                            (void *)"out of memory\n",
                                            MHD_RESPMEM_PERSISTENT);
    } else {
        r = MHD_create_response_from_buffer(strlen(body), body,
                                            MHD_RESPMEM_MUST_FREE);
    }
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* The supervisor as the server process sees it: NULL while it runs its
 * pipelines, else why not (stopping, or no turn of its loop lately). */
static const char *supervisor_trouble(const exactly_http *h)
{
    if (__atomic_load_n(&h->pulse->stopping, __ATOMIC_RELAXED))
        return "stopping\n";
    if (http_mono_ms() - __atomic_load_n(&h->pulse->beat_ms, __ATOMIC_RELAXED) >
        HTTP_SUPERVISOR_STUCK_MS)
        return "supervisor not responding\n";
    return NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **state)
{
    exactly_http *h = cls;

    (void)version;
    (void)upload;
    /* A request body is not read: answer at its headers. */
    if (*upload_size)
        *upload_size = 0;
    (void)state;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain",
                     strdup("GET only\n"));
    if (strcmp(url, "/metrics") == 0)
        return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                     metrics_render(h->slots, h->n));
    if (strcmp(url, "/healthz") == 0) {
        const char *trouble = supervisor_trouble(h);
        return reply(c, trouble ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK,
                     "text/plain", strdup(trouble ? trouble : "ok\n"));
    }
    if (strcmp(url, "/readyz") == 0) {
        int ok = !supervisor_trouble(h) && metrics_ready(h->slots, h->n);
        return reply(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                     "text/plain", strdup(ok ? "ready\n" : "not ready\n"));
    }
    if (strcmp(url, "/status.json") == 0 || strcmp(url, "/") == 0) {
        json_t *st = http_status_json(h);
        char *body = NULL;
        if (st && url[1])
            body = json_dumps(st, JSON_INDENT(1) | JSON_ENSURE_ASCII);
        else if (st)
            body = http_status_html(st);
        json_decref(st);
        if (body && url[1]) {
            /* json_dumps's memory is jansson's allocator's: malloc here,
             * and the newline a text reader expects. */
            size_t len = strlen(body);
            char *b = realloc(body, len + 2);
            if (b) {
                b[len] = '\n';
                b[len + 1] = '\0';
            } else {
                free(body);
            }
            body = b;
        }
        return reply(c, MHD_HTTP_OK,
                     url[1] ? "application/json" : "text/html; charset=utf-8",
                     body);
    }
    return reply(c, MHD_HTTP_NOT_FOUND, "text/plain",
                 strdup("try /, /status.json, /metrics, /healthz or /readyz\n"));
}

/* Parses and binds a loopback "IPv4:PORT"; the socket, or -1 with err. */
static int http_listen(const char *addr, char *bound, size_t bound_size,
                       char *errbuf, size_t errbuf_size)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    char host[64], ip[INET_ADDRSTRLEN];
    const char *colon = strrchr(addr, ':');
    int fd, one = 1;
    long port;
    char *end;

    if (!colon || (size_t)(colon - addr) >= sizeof(host)) {
        snprintf(errbuf, errbuf_size, "metrics address '%s' is not HOST:PORT", addr);
        return -1;
    }
    /* "127.0.0.1:" would bind a port chosen by the kernel that nobody is
     * told of; a port must be given (0 asks for any, and is logged). */
    if (colon[1] == '\0') {
        snprintf(errbuf, errbuf_size,
                 "metrics address '%s' has no port (HOST:PORT, e.g. "
                 "127.0.0.1:9464)", addr);
        return -1;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    port = strtol(colon + 1, &end, 10);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    if (*end || colon[1] < '0' || colon[1] > '9' || port < 0 || port > 65535 ||
        inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        snprintf(errbuf, errbuf_size, "metrics address '%s' is not IPv4:PORT", addr);
        return -1;
    }
    /* Metrics carry topology: they stay on this host unless asked. */
    if ((ntohl(sa.sin_addr.s_addr) >> 24) != 127) {
        snprintf(errbuf, errbuf_size, "metrics address '%s' is not on loopback (127.0.0.0/8)", addr);
        return -1;
    }
    sa.sin_port = htons((uint16_t)port);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 128) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0 ||
        !inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof(ip))) {
        snprintf(errbuf, errbuf_size, "cannot listen on %s: %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    snprintf(bound, bound_size, "%s:%d", ip, (int)ntohs(sa.sin_port));
    return fd;
}

static void http_free(exactly_http *h)
{
    size_t i;

    if (!h)
        return;
    for (i = 0; i < h->n_pipelines; i++)
        free(h->pipelines[i]);
    free(h->pipelines);
    free(h->conninfo);
    free(h->schema);
    free(h->rates);
    json_decref(h->db);
    if (h->pulse)
        munmap(h->pulse, sizeof(*h->pulse));
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
}

/* Starts the server's threads in this process; 0, or -1 with errbuf. */
static int serve_threads(exactly_http *h, char *errbuf, size_t errbuf_size)
{
    struct rlimit rl;
    unsigned limit = HTTP_MAX_CONNECTIONS;

    /* Clients hold a descriptor each: room for the limit, when the hard
     * limit allows, and never more clients than descriptors. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur < rl.rlim_max && rl.rlim_cur < HTTP_MAX_CONNECTIONS + 256) {
            rl.rlim_cur = rl.rlim_max < HTTP_MAX_CONNECTIONS + 256
                              ? rl.rlim_max : HTTP_MAX_CONNECTIONS + 256;
            (void)setrlimit(RLIMIT_NOFILE, &rl);
            (void)getrlimit(RLIMIT_NOFILE, &rl);
        }
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)limit + 256)
            limit = rl.rlim_cur > 512 ? (unsigned)rl.rlim_cur - 256 : 256;
    }
    h->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO, 0, NULL, NULL,
        on_request, h, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)h->fd,
        MHD_OPTION_CONNECTION_LIMIT, limit,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_MEMORY_LIMIT,
        MHD_OPTION_END);
    if (!h->daemon) {
        snprintf(errbuf, errbuf_size, "cannot start the HTTP server");
        return -1;
    }
    if (pthread_create(&h->reader, NULL, http_reader_main, h) != 0) {
        snprintf(errbuf, errbuf_size, "cannot start the status reader thread");
        return -1;
    }
    h->reader_started = 1;
    return 0;
}

/* The server process: serves until SIGTERM (the supervisor's, or its
 * death), then stops its threads and exits. SIGINT is the supervisor's: a
 * Ctrl-C at a terminal reaches the whole process group, and the
 * supervisor stops this process after its workers. SIGHUP (the
 * supervisor's, after a log rotation) reopens the log file. Never
 * returns. */
static void serve_process(exactly_http *h)
{
    struct sigaction dfl;
    sigset_t stop;
    char err[256];
    int sig = 0;

    /* Every signal is still blocked (spawn): none is lost before this
     * process has its own dispositions and mask. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != h->parent)
        _exit(0);
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGTERM, &dfl, NULL); /* not the supervisor's handlers */
    sigaction(SIGINT, &dfl, NULL);
    sigaction(SIGHUP, &dfl, NULL);
    /* Only this thread takes these signals, by sigwait; the server's
     * threads inherit the mask and take none. */
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGHUP);
    sigaddset(&stop, SIGPIPE);
    pthread_sigmask(SIG_SETMASK, &stop, NULL);
    if (serve_threads(h, err, sizeof(err)) != 0) {
        exactly_log(EXACTLY_LOG_ERROR, "http", "cannot serve",
                    LOG_STR("error", err));
        _exit(1);
    }
    while (sig != SIGTERM) {
        if (sigwait(&stop, &sig) != 0)
            break;
        if (sig == SIGHUP)
            (void)exactly_log_reopen();
    }
    MHD_stop_daemon(h->daemon); /* closes the listening socket */
    pthread_mutex_lock(&h->mu);
    h->stop = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->reader, NULL);
    _exit(0);
}

/* Forks the server process; 0, or -1 with errbuf. */
static int spawn(exactly_http *h, const int *fds, size_t n_fds,
                 char *errbuf, size_t errbuf_size)
{
    sigset_t all, old;
    pid_t pid;
    size_t i;

    fflush(NULL);
    /* Held from the fork until serve_process has set its own: a signal in
     * between would run the supervisor's handler there and be lost. */
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid = fork();
    if (pid == 0) {
        for (i = 0; i < n_fds; i++)
            if (fds[i] >= 0 && fds[i] != h->fd)
                close(fds[i]);
        serve_process(h);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        snprintf(errbuf, errbuf_size, "cannot fork the HTTP server: %s",
                 strerror(errno));
        return -1;
    }
    h->pid = pid;
    h->started_ms = http_mono_ms();
    return 0;
}

exactly_http *exactly_http_start(const exactly_config *cfg,
                                 const char *const *pipelines,
                                 size_t n_pipelines, const char *addr,
                                 const metrics_slot *slots, size_t n,
                                 char *bound, size_t bound_size, char *errbuf,
                                 size_t errbuf_size)
{
    exactly_http *h = calloc(1, sizeof(*h));
    size_t i;

    if (!h) {
        snprintf(errbuf, errbuf_size, "out of memory");
        return NULL;
    }
    h->fd = -1;
    h->parent = getpid();
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    h->slots = slots;
    h->n = n;
    h->conninfo = strdup(cfg->postgres.conninfo ? cfg->postgres.conninfo : "");
    h->schema = strdup(cfg->postgres.schema ? cfg->postgres.schema : "exactly");
    h->pipelines = calloc(n_pipelines + 1, sizeof(*h->pipelines));
    h->pulse = mmap(NULL, sizeof(*h->pulse), PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (h->pulse == MAP_FAILED)
        h->pulse = NULL;
    if (!h->conninfo || !h->schema || !h->pipelines || !h->pulse)
        goto oom;
    exactly_http_beat(h, 0);
    for (i = 0; i < n_pipelines; i++) {
        if (!(h->pipelines[h->n_pipelines] = strdup(pipelines[i])))
            goto oom;
        h->n_pipelines++;
    }
    h->fd = http_listen(addr, bound, bound_size, errbuf, errbuf_size);
    if (h->fd < 0 || spawn(h, NULL, 0, errbuf, errbuf_size) != 0)
        goto fail;
    return h;
oom:
    snprintf(errbuf, errbuf_size, "out of memory");
fail:
    if (h->fd >= 0)
        close(h->fd);
    http_free(h);
    return NULL;
}

int exactly_http_fd(const exactly_http *h)
{
    return h ? h->fd : -1;
}

pid_t exactly_http_pid(const exactly_http *h)
{
    return h ? h->pid : 0;
}

int exactly_http_reaped(exactly_http *h, pid_t pid, int status)
{
    if (!h || pid != h->pid)
        return 0;
    h->pid = 0;
    if (!h->stopping)
        exactly_log(EXACTLY_LOG_WARN, "supervisor",
                    "HTTP server process ended; starting it again",
                    LOG_INT("code", WIFEXITED(status) ? WEXITSTATUS(status) : -1),
                    LOG_INT("signal", WIFSIGNALED(status) ? WTERMSIG(status) : 0));
    return 1;
}

void exactly_http_tick(exactly_http *h, const int *fds, size_t n_fds)
{
    char err[256];

    /* At most one start a second: a server that cannot start does not
     * take the supervisor's time. */
    if (!h || h->pid > 0 || h->stopping || http_mono_ms() - h->started_ms < 1000)
        return;
    if (spawn(h, fds, n_fds, err, sizeof(err)) != 0)
        exactly_log(EXACTLY_LOG_ERROR, "supervisor", "cannot start the HTTP server",
                    LOG_STR("error", err));
}

void exactly_http_reopen_log(exactly_http *h)
{
    if (h && h->pid > 0)
        kill(h->pid, SIGHUP);
}

void exactly_http_beat(exactly_http *h, int stopping)
{
    if (!h)
        return;
    __atomic_store_n(&h->pulse->beat_ms, http_mono_ms(), __ATOMIC_RELAXED);
    __atomic_store_n(&h->pulse->stopping, stopping != 0, __ATOMIC_RELAXED);
}

void exactly_http_stop(exactly_http *h)
{
    long long deadline;
    int status;

    if (!h)
        return;
    h->stopping = 1;
    if (h->pid > 0) {
        kill(h->pid, SIGTERM);
        /* Its threads stop at once (the status reader within a poll
         * tick); a server that does not is killed. */
        deadline = http_mono_ms() + 2000;
        while (waitpid(h->pid, &status, WNOHANG) == 0) {
            if (http_mono_ms() > deadline) {
                kill(h->pid, SIGKILL);
                (void)waitpid(h->pid, &status, 0);
                break;
            }
            usleep(10 * 1000);
        }
    }
    close(h->fd);
    http_free(h);
}
