/*
 * `exactly run` under systemd's Type=notify (packaging/systemd/
 * exactly@.service): the supervisor sends READY=1 to $NOTIFY_SOCKET once
 * its configuration, plugins and locks are in place, and STOPPING=1 when
 * SIGTERM starts the drain. systemd reports the unit started only on
 * READY=1, so:
 *
 *   refused  a configuration whose plugin does not exist: `exactly run`
 *            exits 2 and sends nothing (systemctl start then fails instead
 *            of calling the service started);
 *   ready    a good configuration: READY=1 arrives while the supervisor
 *            runs, its worker applies what was produced, SIGTERM brings
 *            STOPPING=1 and exit 0, and nothing else was sent (the
 *            workers, which inherit NOTIFY_SOCKET, say nothing).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "notify"
#define PARTITIONS 2
#define MESSAGES 200

static int bind_socket(const char *path)
{
    struct sockaddr_un a;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    TK_CHECK(fd >= 0, "socket: %s", strerror(errno));
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    TK_CHECK(strlen(path) < sizeof(a.sun_path), "socket path too long: %s",
             path);
    strcpy(a.sun_path, path);
    TK_CHECK(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "bind %s: %s",
             path, strerror(errno));
    return fd;
}

/* The next datagram within timeout_ms into buf, or 0 when none came. */
static int next_datagram(int fd, int timeout_ms, char *buf, size_t size)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ssize_t n;

    if (poll(&p, 1, timeout_ms) != 1)
        return 0;
    n = recv(fd, buf, size - 1, 0);
    TK_CHECK(n >= 0, "recv: %s", strerror(errno));
    buf[n] = '\0';
    return 1;
}

static pid_t start_run(const char *config, const char *lockdir,
                       const char *log)
{
    char *argv[] = {(char *)ledger_exactly_bin(), "run", "-c", (char *)config,
                    "--lock-dir", (char *)lockdir, "--shutdown-timeout", "60",
                    NULL};

    return tk_spawn(argv, log);
}

int main(void)
{
    char dir[256], sock[512], lockdir[512], good[512], bad[512], log[512];
    char conninfo[1024], msg[512], missing_dir[600];
    const char *plugin_dir = tk_env_required("EXACTLY_PLUGIN_DIR");
    ledger_config lc;
    tk_mock *mock;
    PGconn *db;
    int fd, status;
    int64_t deadline;
    pid_t pid;

    tk_tmpdir("exactly-sd-notify", dir, sizeof(dir));
    snprintf(sock, sizeof(sock), "%s/notify", dir);
    snprintf(lockdir, sizeof(lockdir), "%s/locks", dir);
    TK_CHECK(mkdir(lockdir, 0700) == 0 || errno == EEXIST, "mkdir %s",
             lockdir);
    snprintf(good, sizeof(good), "%s/good.yaml", dir);
    snprintf(bad, sizeof(bad), "%s/bad.yaml", dir);

    mock = tk_mock_start(1);
    tk_mock_create_topic(mock, TOPIC, PARTITIONS);
    tk_pg_create_db("sd_notify", conninfo, sizeof(conninfo));
    ledger_setup_db(conninfo);
    memset(&lc, 0, sizeof(lc));
    lc.bootstraps = tk_mock_bootstraps(mock);
    lc.conninfo = conninfo;
    lc.topic = TOPIC;
    lc.group = "sd-notify";
    lc.max_messages = 100;
    lc.max_wait_ms = 50;
    ledger_write_config(good, &lc);
    /* The same pipeline with a plugin that is not there. */
    snprintf(missing_dir, sizeof(missing_dir), "%s/no-such-dir", dir);
    setenv("EXACTLY_PLUGIN_DIR", missing_dir, 1);
    ledger_write_config(bad, &lc);
    setenv("EXACTLY_PLUGIN_DIR", plugin_dir, 1);
    snprintf(log, sizeof(log), "%s/migrate.log", dir);
    ledger_migrate(good, log);

    fd = bind_socket(sock);
    setenv("NOTIFY_SOCKET", sock, 1);

    /* refused */
    snprintf(log, sizeof(log), "%s/refused.log", dir);
    pid = start_run(bad, lockdir, log);
    status = tk_wait(pid, 120000);
    LEDGER_CHECK_LOG(status == 2, log,
                     "exactly run with a missing plugin exited %d, want 2",
                     status);
    TK_CHECK(!next_datagram(fd, 0, msg, sizeof(msg)),
             "a refused configuration sent \"%s\"", msg);
    tk_note("refused: exit 2, nothing sent to NOTIFY_SOCKET");

    /* ready */
    tk_produce_ids(tk_mock_bootstraps(mock), TOPIC, MESSAGES, LEDGER_ACCOUNTS,
                   PARTITIONS, 7, NULL);
    snprintf(log, sizeof(log), "%s/run.log", dir);
    pid = start_run(good, lockdir, log);
    LEDGER_CHECK_LOG(next_datagram(fd, 120000, msg, sizeof(msg)), log,
                     "no READY=1 within 120 s of starting exactly run");
    LEDGER_CHECK_LOG(strncmp(msg, "READY=1", 7) == 0, log,
                     "first notification \"%s\", want READY=1 first", msg);
    LEDGER_CHECK_LOG(tk_wait(pid, 0) == -1, log,
                     "exactly run exited right after READY=1");
    tk_note("ready: \"%s\"", msg);

    db = tk_pg_connect(conninfo);
    deadline = tk_now_ms() + 180000;
    while (ledger_rows(db) < MESSAGES && tk_now_ms() < deadline)
        tk_sleep_ms(100);
    LEDGER_CHECK_LOG(ledger_rows(db) == MESSAGES, log,
                     "the worker applied %lld of %d messages in 180 s",
                     (long long)ledger_rows(db), MESSAGES);

    TK_CHECK(tk_kill(pid, SIGTERM) == 0, "exactly run is gone before SIGTERM");
    LEDGER_CHECK_LOG(next_datagram(fd, 60000, msg, sizeof(msg)), log,
                     "no STOPPING=1 within 60 s of SIGTERM");
    LEDGER_CHECK_LOG(strncmp(msg, "STOPPING=1", 10) == 0, log,
                     "notification after SIGTERM \"%s\", want STOPPING=1", msg);
    status = tk_wait(pid, 120000);
    LEDGER_CHECK_LOG(status == 0, log, "exactly run exited %d after SIGTERM",
                     status);
    TK_CHECK(!next_datagram(fd, 0, msg, sizeof(msg)),
             "an extra notification after STOPPING=1: \"%s\"", msg);
    tk_note("stopping: STOPPING=1, exit 0, nothing else sent");

    PQfinish(db);
    close(fd);
    tk_mock_stop(mock);
    tk_pg_drop_db(conninfo);
    ledger_cleanup_dir(dir);
    return 0;
}
