/*
 * own_cluster.h - a PostgreSQL cluster of a test's own, for tests that stop,
 * kill or reconfigure the server and so cannot share the `pg` fixture's.
 *
 * The cluster is guarded: a child in a session of its own removes it when
 * the test ends, however it ends (a failing check's _exit, a ctest timeout).
 */
#ifndef EXACTLY_TEST_OWN_CLUSTER_H
#define EXACTLY_TEST_OWN_CLUSTER_H

/* Starts the cluster and points testkit's admin conninfo at it; pg.sh's
 * output goes to dir/pg.log. Call before any thread exists. */
void own_cluster_start(const char *dir);

/* Runs `scripts/pg.sh CMD` on it (kill, restart, ...); fails the test
 * unless it exits 0. */
void own_cluster_cmd(const char *cmd);

/* Its pg.sh handle directory (what scripts/pg-replica.sh names PRIMARY). */
const char *own_cluster_handle(void);

/* Stops and removes it (the passing path). */
void own_cluster_remove(void);

#endif
