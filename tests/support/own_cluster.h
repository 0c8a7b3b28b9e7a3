/*
 * own_cluster.h - a PostgreSQL cluster of a test's own, for tests that stop,
 * kill or reconfigure the server and so cannot share the `pg` fixture's.
 *
 * The cluster is guarded: a child in a session of its own removes it when
 * the test ends, however it ends (a failing check's _exit, a ctest timeout).
 */
#ifndef EXACTLY_TEST_OWN_CLUSTER_H
#define EXACTLY_TEST_OWN_CLUSTER_H

#include <libpq-fe.h>

/* Starts the cluster and points testkit's admin conninfo at it; pg.sh's
 * output goes to dir/pg.log. Call before any thread exists. */
void own_cluster_start(const char *dir);

/* Runs `scripts/pg.sh CMD` on it (kill, restart, ...); fails the test
 * unless it exits 0. */
void own_cluster_cmd(const char *cmd);

/* Its pg.sh handle directory (what scripts/pg-replica.sh names PRIMARY). */
const char *own_cluster_handle(void);

/* Holds every COMMIT on the cluster from here on: written locally, it then
 * waits (wait_event SyncRep) for a synchronous standby that does not
 * exist, so a test can lose its answer (terminate the session, crash the
 * server) at will. db's own session does not wait (synchronous_commit
 * local). Returns once the server applies the setting (10 s at most, or
 * the test fails); tk_pg_set_sync_standby(db, NULL) lets commits go. */
void own_cluster_hold_commits(PGconn *db);

/* Stops and removes it (the passing path). */
void own_cluster_remove(void);

#endif
