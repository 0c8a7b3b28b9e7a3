/*
 * replica.h - a streaming standby of a test's own cluster (own_cluster.h),
 * started with scripts/pg-replica.sh (pg_basebackup), for failover tests.
 *
 * Like the primary, the standby is guarded: a child in a session of its own
 * removes it when the test ends, however it ends.
 */
#ifndef EXACTLY_TEST_REPLICA_H
#define EXACTLY_TEST_REPLICA_H

#include <stddef.h>

/* Starts the standby of the cluster own_cluster_start started, streaming
 * (mode "async" or "sync": synchronous_standby_names='*' on the primary);
 * pg-replica.sh's output goes to dir/replica.log. Call before any thread
 * exists (the guard forks). */
void replica_start(const char *dir, const char *mode);

/* Runs `scripts/pg-replica.sh CMD REPLICA` ("detach", "promote"); fails the
 * test unless it exits 0. */
void replica_cmd(const char *cmd);

/* The standby's own conninfo (dbname postgres). */
const char *replica_conninfo(void);

/* The multi-host conninfo naming the primary and the standby with
 * target_session_attrs=read-write, for the database that conninfo (one of
 * tk_pg_create_db's) names. */
void replica_multihost(const char *conninfo, char *out, size_t out_size);

/* conninfo's database on the standby alone (reads while it is a standby). */
void replica_direct(const char *conninfo, char *out, size_t out_size);

/* Stops and removes the standby (the passing path). */
void replica_remove(void);

#endif
