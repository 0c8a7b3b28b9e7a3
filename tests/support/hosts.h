/*
 * hosts.h - several `exactly run` supervisors on one machine, each acting
 * as a separate host: its own identity (EXACTLY_HOST_ID), lock directory
 * and log, one PostgreSQL and one consumer group per pipeline shared.
 * For the many-hosts and rolling-restart tests; fails the test on error.
 */
#ifndef EXACTLY_TEST_HOSTS_H
#define EXACTLY_TEST_HOSTS_H

#include <libpq-fe.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct host {
    char id[32];        /* EXACTLY_HOST_ID: "host-a" */
    char lock_dir[600];
    char log[600];
    pid_t pid;          /* the supervisor; 0: not running */
} host;

/* Sets up h as host `id` with its directories under dir (nothing runs). */
void host_init(host *h, const char *dir, const char *id);

/* Starts `exactly run -c config` as h. */
void host_start(host *h, const char *config);

/* The PostgreSQL sessions of h's workers in the database db is connected
 * to (their application_name is the owner string, which starts with the
 * host identity). */
int64_t host_sessions(PGconn *db, const host *h);

/* Whether owner is "HOST:PID:WORKER" with HOST h's identity. */
int host_owns(const host *h, const char *owner);

#endif
