/*
 * store.h - the framework's tables in PostgreSQL: offsets with owner
 * epochs, dedup keys, dead letters, and the versioned schema behind them.
 *
 * All SQL here names the schema through libpq's identifier escaping, and
 * every value travels as a parameter.
 */
#ifndef EXACTLY_STORE_H
#define EXACTLY_STORE_H

#include <libpq-fe.h>
#include <stdint.h>

#include "config.h"

/* The schema version this exactly needs: the number of migration steps
 * (store_migrate.c), so that adding a step is the only thing to do. */
int exactly_store_schema_version(void);
#define EXACTLY_SCHEMA_VERSION (exactly_store_schema_version())

/* The statements of the cycle, built once per connection for a schema. */
typedef struct exactly_store_sql {
    char *schema_q;   /* quoted schema identifier */
    char *fence;      /* $1 pipeline $2 topic $3 partition $4 epoch $5 start $6 end */
    char *fence_group;/* fence of several partitions at once: $1 pipeline,
                         $2 topics[] $3 partitions[] $4 epochs[] $5 starts[]
                         $6 ends[] (text array literals) */
    char *attempt;    /* $1 pipeline $2 topic $3 partition $4 epoch $5 start
                         $6 planned end $7 fresh (0/1) $8 max_crashes:
                         the crash guard, asked on the first batch after
                         a claim and while isolating */
    char *dedup;      /* $1 pipeline $2 topic $3 partition $4 hex SHA-256
                         digests of the keys[] $5 offsets[] */
    char *dead_letter;/* $1 pipeline $2 topic $3 partition $4 offsets[]
                         $5 hex key prefixes[] $6 key lengths[]
                         $7 hex key digests[] $8 ids[] $9 reasons[]
                         $10 sqlstates[] */
    char *claim;      /* $1 pipeline $2 topics[] $3 partitions[] $4 owner:
                         holds the rows; one still held counts an owner
                         lost without a release (the crash guard) */
    char *set_start;  /* $1 pipeline $2 topic $3 partition $4 epoch $5 offset */
    char *read;       /* $1 pipeline $2 topic $3 partition */
    char *recheck;    /* $1 pipeline $2 topic $3 partition: next_offset,
                         owner_epoch, updated_at in microseconds since the
                         epoch (every write of the row sets it, exactly
                         offsets reset too) and its age in milliseconds by
                         the server's clock: the row of a halted
                         partition, read again (worker/recheck.c) */
    char *watch;      /* $1 pipeline $2 topics[] $3 partitions[]
                         $4 next_offsets[] $5 epochs[] (text array
                         literals): topic, partition, next_offset and
                         owner_epoch of each of those rows that differs
                         from what was given, a missing row as NULLs:
                         the idle partitions' rows, compared
                         (worker/follow.c) */
    char *reclaim;    /* $1 pipeline $2 topic $3 partition $4 epoch read
                         $5 new epoch $6 owner: a claim the database lost
                         (a failover), taken again only if the row still
                         has the epoch read; returns next_offset */
    char *dedup_expire; /* $1 pipeline $2 retention seconds $3 slice size */
    char *release;    /* $1 pipeline $2 topic $3 partition $4 epoch: the
                         row let go cleanly (a stop, a revoke): held and
                         in_apply cleared, so the next claim counts no
                         death */
    /* Reprocess runs: the run row is the position (reprocess.c). */
    char *run_fence;  /* $1 run id $2 topic $3 partition $4 epoch $5 start
                         $6 end */
    char *run_read;   /* $1 run id $2 topic $3 partition */
    /* host->emit: $1 topic $2 hex key $3 hex value $4 headers (json) */
    char *emit;
} exactly_store_sql;

/* Builds the statements for schema; 0 on success. Free with
 * exactly_store_sql_free (NULL-safe members). */
int exactly_store_sql_init(exactly_store_sql *s, PGconn *conn,
                           const char *schema);
void exactly_store_sql_free(exactly_store_sql *s);

/*
 * Creates or upgrades the framework tables in schema, idempotently, under
 * a session advisory lock so concurrent runs wait for each other. Steps
 * run in transactions, but an index build on a table the workers write,
 * which runs concurrently between them, unless the open transaction
 * created the table (store_migrate_run.c). Sets
 * *from_version, and *to_version to the version committed (on failure
 * too: the steps before a failed one may have landed; -1 when the
 * failure came before the version was read). Returns EXACTLY_OK or an
 * error with the reason in errbuf, which names the failed step and, for
 * a lock or statement timeout, the setting that fired.
 */
exactly_err exactly_store_migrate(PGconn *conn, const char *schema,
                                  int *from_version, int *to_version,
                                  char *errbuf, size_t errbuf_size);

/* The installed schema version (0: none). Returns an error if the query
 * fails for another reason than a missing schema. */
exactly_err exactly_store_version(PGconn *conn, const char *schema,
                                  int *version, char *errbuf,
                                  size_t errbuf_size);

#endif
