/*
 * exactly_sd_notify(): systemd's readiness protocol without libsystemd.
 * A datagram must reach a socket named by a path and one in the abstract
 * namespace ("@name") byte for byte; no NOTIFY_SOCKET means nothing to do
 * and success; a name that is not a socket address, or a socket nobody
 * listens on, is an error that names it (the supervisor logs it, since
 * systemd would otherwise wait for a READY=1 that never comes).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <poll.h>
#include <unistd.h>

#include "sd_notify.h"
#include "testkit.h"

/* A datagram socket bound to name ("/path" or "@abstract"). */
static int listen_on(const char *name)
{
    struct sockaddr_un a;
    socklen_t len;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    TK_CHECK(fd >= 0, "socket: %s", strerror(errno));
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    TK_CHECK(strlen(name) < sizeof(a.sun_path), "name too long: %s", name);
    memcpy(a.sun_path, name, strlen(name));
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name));
    if (name[0] == '@')
        a.sun_path[0] = '\0';
    else
        len++;
    TK_CHECK(bind(fd, (struct sockaddr *)&a, len) == 0, "bind %s: %s", name,
             strerror(errno));
    return fd;
}

/* The next datagram on fd, waiting up to 10 s; fails the test without one. */
static void expect_datagram(int fd, const char *want)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char buf[512];
    ssize_t n;

    TK_CHECK(poll(&p, 1, 10000) == 1, "no datagram arrived (wanted \"%s\")",
             want);
    n = recv(fd, buf, sizeof(buf) - 1, 0);
    TK_CHECK(n >= 0, "recv: %s", strerror(errno));
    buf[n] = '\0';
    TK_CHECK_EQ_STR(buf, want, "datagram");
}

static void expect_nothing(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    TK_CHECK(poll(&p, 1, 0) == 0, "a datagram arrived, none was expected");
}

int main(void)
{
    char dir[256], path[512], abstract[64], err[512], longname[200];
    exactly_err rc;
    int fd, afd;

    tk_tmpdir("exactly-sdnotify", dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/notify", dir);
    snprintf(abstract, sizeof(abstract), "@exactly-test-notify-%d",
             (int)getpid());
    fd = listen_on(path);
    afd = listen_on(abstract);

    /* No manager: nothing sent, success. */
    unsetenv("NOTIFY_SOCKET");
    rc = exactly_sd_notify("READY=1", err, sizeof(err));
    TK_CHECK_EQ_INT64(rc, EXACTLY_OK, "without NOTIFY_SOCKET");
    setenv("NOTIFY_SOCKET", "", 1);
    rc = exactly_sd_notify("READY=1", err, sizeof(err));
    TK_CHECK_EQ_INT64(rc, EXACTLY_OK, "with an empty NOTIFY_SOCKET");
    expect_nothing(fd);
    expect_nothing(afd);

    /* A path. */
    setenv("NOTIFY_SOCKET", path, 1);
    rc = exactly_sd_notify("READY=1\nSTATUS=supervising the workers", err,
                           sizeof(err));
    TK_CHECK(rc == EXACTLY_OK, "path socket: %s", err);
    expect_datagram(fd, "READY=1\nSTATUS=supervising the workers");
    expect_nothing(afd);

    /* The abstract namespace, as systemd uses for user managers. */
    setenv("NOTIFY_SOCKET", abstract, 1);
    rc = exactly_sd_notify("STOPPING=1", err, sizeof(err));
    TK_CHECK(rc == EXACTLY_OK, "abstract socket: %s", err);
    expect_datagram(afd, "STOPPING=1");
    expect_nothing(fd);

    /* Not a socket address: refused, naming it. */
    setenv("NOTIFY_SOCKET", "relative/notify", 1);
    err[0] = '\0';
    rc = exactly_sd_notify("READY=1", err, sizeof(err));
    TK_CHECK_EQ_INT64(rc, EXACTLY_EINVAL, "relative NOTIFY_SOCKET");
    TK_CHECK(strstr(err, "relative/notify") != NULL, "error names it: %s", err);
    memset(longname, 'x', sizeof(longname) - 1);
    longname[0] = '/';
    longname[sizeof(longname) - 1] = '\0';
    setenv("NOTIFY_SOCKET", longname, 1);
    rc = exactly_sd_notify("READY=1", err, sizeof(err));
    TK_CHECK_EQ_INT64(rc, EXACTLY_EINVAL, "NOTIFY_SOCKET longer than sun_path");

    /* Nobody listens there: a failure that says where. */
    close(fd);
    unlink(path);
    setenv("NOTIFY_SOCKET", path, 1);
    err[0] = '\0';
    rc = exactly_sd_notify("READY=1", err, sizeof(err));
    TK_CHECK_EQ_INT64(rc, EXACTLY_EFAIL, "socket without a listener");
    TK_CHECK(strstr(err, path) != NULL, "error names the socket: %s", err);

    close(afd);
    tk_rm_rf(dir);
    tk_note("sd_notify unit test passed");
    return 0;
}
