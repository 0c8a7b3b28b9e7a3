/*
 * test_metrics_stall.c - no HTTP client can stall the supervisor.
 *
 * `exactly run --metrics 127.0.0.1:0` with one ledger worker. While three
 * hostile clients work on its HTTP port:
 *   slow     one connection that sends its request one byte every 100 ms
 *            and never reads;
 *   flood    1,000 connections opened at once and held open, silent;
 *   huge     one request line of 1 MiB;
 * the worker is SIGKILLed. The supervisor must log its death and start it
 * again within RESTART_WITHIN_MS (its backoff is 0.5 s), answer a fresh
 * GET /healthz within HEALTH_WITHIN_MS, and after SIGTERM exit 0 within
 * its --shutdown-timeout plus a second. The clients are still connected
 * at every one of these checks. Before the stop, the HTTP server process
 * (server_pid in the "serving metrics" line) is SIGKILLed: the supervisor
 * starts it again and /healthz answers within 3 s.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "stall"
#define N_FLOOD 1000
#define RESTART_WITHIN_MS 3000
#define HEALTH_WITHIN_MS 3000
#define SHUTDOWN_S 3

static int connect_to(int port, int nonblocking)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0);

    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 &&
        errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A child process that sends a request a byte at a time and never reads;
 * it stops after 60 s on its own, or when killed. */
static pid_t slow_client(int port)
{
    static const char req[] = "GET /metrics HTTP/1.1\r\nHost: test\r\n"
                              "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                              "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    pid_t pid = fork();

    TK_CHECK(pid >= 0, "fork failed");
    if (pid == 0) {
        int fd = connect_to(port, 0), i;
        if (fd < 0)
            _exit(1);
        for (i = 0; i < 600; i++) {
            char c = i < (int)sizeof(req) - 1 ? req[i] : 'a';
            if (write(fd, &c, 1) != 1)
                break;
            usleep(100 * 1000);
        }
        _exit(0);
    }
    return pid;
}

/* A child process that sends a 1 MiB request line, then waits. */
static pid_t huge_client(int port)
{
    pid_t pid = fork();

    TK_CHECK(pid >= 0, "fork failed");
    if (pid == 0) {
        size_t n = 1024 * 1024, off = 0;
        char *line = malloc(n);
        int fd = connect_to(port, 0);
        if (!line || fd < 0)
            _exit(1);
        memset(line, 'a', n);
        memcpy(line, "GET /", 5);
        signal(SIGPIPE, SIG_IGN);
        while (off < n) {
            ssize_t w = write(fd, line + off, n - off);
            if (w <= 0)
                break;
            off += (size_t)w;
        }
        sleep(60);
        _exit(0);
    }
    return pid;
}

static pid_t worker_pid(const char *log, int n)
{
    char *text = tk_read_file(log), *line, *save = NULL;
    pid_t pid = -1;
    int seen = 0;

    TK_CHECK(text != NULL, "cannot read %s", log);
    for (line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        const char *k;
        if (!strstr(line, "msg=\"worker started\"") || seen++ < n)
            continue;
        k = strstr(line, "worker_pid=");
        if (k)
            pid = (pid_t)strtol(k + strlen("worker_pid="), NULL, 10);
        break;
    }
    free(text);
    return pid;
}

int main(void)
{
    static const char *const kafka[] = {"session.timeout.ms", "6000",
                                        "heartbeat.interval.ms", "500", NULL};
    static int flood[N_FLOOD];
    ledger_fixture f;
    ledger_config cfg;
    struct rlimit rl;
    char *text, *at, *body = NULL, shutdown[16];
    pid_t run, slow, huge, w0, w1, server;
    int port = 0, i, opened = 0, status, code = -1;
    int64_t t_kill, t_restart, t_term, t0;

    /* The flood needs more descriptors than the usual soft limit. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < N_FLOOD + 100) {
        rl.rlim_cur = rl.rlim_max < N_FLOOD + 100 ? rl.rlim_max : N_FLOOD + 100;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    ledger_fixture_start(&f, "metrics_stall", TOPIC, 2);
    memset(&cfg, 0, sizeof cfg);
    cfg.max_messages = 100;
    cfg.max_wait_ms = 20;
    cfg.kafka = kafka;
    cfg.max_crashes = 1000;
    ledger_fixture_config(&f, &cfg);
    snprintf(shutdown, sizeof shutdown, "%d", SHUTDOWN_S);
    {
        char *argv[] = {(char *)ledger_exactly_bin(), "run", "-c", f.config,
                        "--metrics", "127.0.0.1:0", "--lock-dir", f.dir,
                        "--shutdown-timeout", shutdown, NULL};
        run = tk_spawn(argv, f.log);
    }
    LEDGER_CHECK_LOG(ledger_wait_log(f.log, "msg=\"worker started\"", 1, run,
                                     15000, NULL) &&
                         ledger_wait_log(f.log, "serving metrics", 1, run,
                                         15000, NULL),
                     f.log, "the supervisor did not start a worker and serve");
    text = tk_read_file(f.log);
    at = text ? strstr(text, "address=127.0.0.1:") : NULL;
    if (at)
        port = atoi(at + strlen("address=127.0.0.1:"));
    free(text);
    TK_CHECK(port > 0, "no bound address in %s", f.log);
    w0 = worker_pid(f.log, 0);
    TK_CHECK(w0 > 0, "no worker_pid in the first \"worker started\" line");
    TK_CHECK_EQ_INT64(tk_http_get(port, "/healthz", &body), 200,
                      "/healthz before the clients");
    free(body);

    slow = slow_client(port);
    tk_sleep_ms(300); /* the slow one is served first */
    for (i = 0; i < N_FLOOD; i++) {
        flood[i] = connect_to(port, 1);
        opened += flood[i] >= 0;
    }
    TK_CHECK(opened >= N_FLOOD * 9 / 10, "only %d of %d flood connections "
             "could be opened", opened, N_FLOOD);
    huge = huge_client(port);
    tk_sleep_ms(500);
    tk_note("slow client, %d silent connections and a 1 MiB request line "
            "on port %d", opened, port);

    t_kill = tk_now_ms();
    TK_CHECK_EQ_INT64(tk_kill(w0, SIGKILL), 0, "SIGKILL of the worker");
    (void)ledger_wait_log(f.log, "msg=\"worker started\"", 2, run,
                          RESTART_WITHIN_MS + 5000, NULL);
    t_restart = tk_now_ms();
    w1 = worker_pid(f.log, 1);
    LEDGER_CHECK_LOG(w1 > 0 && t_restart - t_kill <= RESTART_WITHIN_MS, f.log,
                     "the worker was restarted %" PRId64 " ms after its "
                     "SIGKILL (limit %d ms): the HTTP clients stall the "
                     "supervisor", t_restart - t_kill, RESTART_WITHIN_MS);
    tk_note("worker restarted %" PRId64 " ms after SIGKILL",
            t_restart - t_kill);

    /* A new client is still served, the hostile ones connected. */
    t0 = tk_now_ms();
    while (tk_now_ms() - t0 < HEALTH_WITHIN_MS + 10000) {
        code = tk_http_get(port, "/healthz", &body);
        free(body);
        body = NULL;
        if (code == 200)
            break;
        tk_sleep_ms(100);
    }
    LEDGER_CHECK_LOG(code == 200 && tk_now_ms() - t0 <= HEALTH_WITHIN_MS,
                     f.log, "GET /healthz answered %d after %" PRId64 " ms "
                     "(limit %d ms) beside the hostile clients", code,
                     tk_now_ms() - t0, HEALTH_WITHIN_MS);

    /* The server process, killed, is started again. */
    text = tk_read_file(f.log);
    at = text ? strstr(text, "server_pid=") : NULL;
    server = at ? (pid_t)atoi(at + strlen("server_pid=")) : 0;
    free(text);
    TK_CHECK(server > 0, "no server_pid in the \"serving metrics\" line");
    TK_CHECK_EQ_INT64(tk_kill(server, SIGKILL), 0, "SIGKILL of the HTTP server");
    t0 = tk_now_ms();
    code = -1;
    while (tk_now_ms() - t0 < 10000) {
        code = tk_http_get(port, "/healthz", &body);
        free(body);
        body = NULL;
        if (code == 200)
            break;
        tk_sleep_ms(100);
    }
    LEDGER_CHECK_LOG(code == 200 && tk_now_ms() - t0 <= 3000, f.log,
                     "after SIGKILL of the HTTP server process, /healthz "
                     "answered %d after %" PRId64 " ms (limit 3000 ms)", code,
                     tk_now_ms() - t0);
    tk_note("HTTP server process restarted, /healthz after %" PRId64 " ms",
            tk_now_ms() - t0);

    t_term = tk_now_ms();
    TK_CHECK_EQ_INT64(tk_kill(run, SIGTERM), 0, "SIGTERM of the supervisor");
    status = tk_wait(run, SHUTDOWN_S * 1000 + 20000);
    if (status == -1)
        (void)tk_terminate(run, 5000);
    LEDGER_CHECK_LOG(status == 0 && tk_now_ms() - t_term <=
                                        SHUTDOWN_S * 1000 + 1000,
                     f.log, "the supervisor exited %d %" PRId64 " ms after "
                     "SIGTERM (--shutdown-timeout %d s)", status,
                     tk_now_ms() - t_term, SHUTDOWN_S);
    tk_note("stopped %" PRId64 " ms after SIGTERM", tk_now_ms() - t_term);

    kill(slow, SIGKILL);
    kill(huge, SIGKILL);
    waitpid(slow, NULL, 0);
    waitpid(huge, NULL, 0);
    for (i = 0; i < N_FLOOD; i++)
        if (flood[i] >= 0)
            close(flood[i]);
    ledger_fixture_stop(&f);
    tk_note("ok");
    return 0;
}
