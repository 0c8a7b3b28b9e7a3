/*
 * store_version.h - whether the framework schema is the one this exactly
 * needs, said the way every command says it.
 */
#ifndef EXACTLY_STORE_VERSION_H
#define EXACTLY_STORE_VERSION_H

#include <stddef.h>

#include <libpq-fe.h>

#include "config.h"

/* EXACTLY_OK when cfg's schema is at the version this exactly needs, else
 * EXACTLY_EDATABASE with the reason (and the migrate command to run) in
 * err; another error when the version cannot be read. *version receives
 * the installed version when it could be read (NULL: not wanted). */
exactly_err store_check_version(PGconn *conn, const exactly_config *cfg,
                                int *version, char *err, size_t errsz);

#endif
