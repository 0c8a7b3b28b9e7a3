#include "sd_notify.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

exactly_err exactly_sd_notify(const char *state, char *err, size_t errsz)
{
    const char *name = getenv("NOTIFY_SOCKET");
    struct sockaddr_un addr;
    socklen_t addr_len;
    size_t len;
    ssize_t sent;
    int fd, saved;

    if (!name || !name[0])
        return EXACTLY_OK;
    len = strlen(name);
    if ((name[0] != '/' && name[0] != '@') || len < 2 ||
        len >= sizeof(addr.sun_path)) {
        snprintf(err, errsz, "NOTIFY_SOCKET '%s' is not an absolute path or "
                 "@name of at most %zu bytes", name, sizeof(addr.sun_path) - 1);
        return EXACTLY_EINVAL;
    }
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, name, len);
    if (name[0] == '@') {
        /* Abstract namespace: the name starts with NUL and is not
         * NUL-terminated, so its length is part of the address. */
        addr.sun_path[0] = '\0';
        addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    } else {
        addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    }
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errsz, "cannot create a socket for NOTIFY_SOCKET: %s",
                 strerror(errno));
        return EXACTLY_EFAIL;
    }
    sent = sendto(fd, state, strlen(state), MSG_NOSIGNAL,
                  (const struct sockaddr *)&addr, addr_len);
    saved = errno;
    close(fd);
    if (sent < 0 || (size_t)sent != strlen(state)) {
        snprintf(err, errsz, "cannot notify NOTIFY_SOCKET '%s': %s", name,
                 sent < 0 ? strerror(saved) : "short send");
        return EXACTLY_EFAIL;
    }
    return EXACTLY_OK;
}
