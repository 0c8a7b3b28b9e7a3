/*
 * sd_notify.h - telling a service manager how the process stands.
 *
 * systemd's readiness protocol (sd_notify(3)) without libsystemd: when the
 * environment variable NOTIFY_SOCKET names a unix datagram socket (a file
 * system path, or "@name" for the abstract namespace), one datagram such
 * as "READY=1" is sent to it. With Type=notify, systemd reports a unit as
 * started only once READY=1 arrives, so `systemctl start` fails for a
 * configuration the supervisor refuses instead of claiming success.
 */
#ifndef EXACTLY_SD_NOTIFY_H
#define EXACTLY_SD_NOTIFY_H

#include <stddef.h>

#include "exactly/error.h"

/* Sends state (newline-separated VAR=value assignments, e.g.
 * "READY=1\nSTATUS=supervising 2 workers") to $NOTIFY_SOCKET. Returns
 * EXACTLY_OK when it was sent or when NOTIFY_SOCKET is unset or empty (no
 * manager listens: nothing to do). Returns EXACTLY_EINVAL for a
 * NOTIFY_SOCKET that is neither an absolute path nor "@name" or does not
 * fit a socket address, EXACTLY_EFAIL when the socket cannot be created or
 * the datagram is not sent; err then says why. Never blocks: the socket is
 * non-blocking and a full receive queue is a failure, not a wait. */
exactly_err exactly_sd_notify(const char *state, char *err, size_t errsz);

#endif
