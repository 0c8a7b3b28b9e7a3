/*
 * dlq.h - the dead letters of a pipeline, for operators (`exactly dlq`):
 * which ones a command works on, list, discard, and replay (apply again
 * through the pipeline's lookup and handler, in one transaction that also
 * deletes what it applied, bisecting what still fails).
 *
 * Every function writes one sentence into err when it fails.
 */
#ifndef EXACTLY_OPS_DLQ_H
#define EXACTLY_OPS_DLQ_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "config.h"
#include "store_dead_letters.h"

/* Which dead letters a command works on. */
typedef struct ops_dlq_sel {
    /* The name they are kept under: the pipeline's, or a reprocess run's
     * "PIPELINE:reprocess:RUN" (run > 0); label says which in messages. */
    int64_t run;
    char dl_pipeline[200];
    char label[240];
    const char *topic;     /* NULL: any */
    int64_t partition;     /* -1: any */
    int64_t *ids;          /* dead letter ids (--id); none: any */
    size_t n_ids, cap_ids;
    const char **entities; /* entity IDs (--entity); none: any */
    size_t n_entities, cap_entities;
    const char *since;     /* last failed at or after; NULL: any */
    int64_t limit;         /* -1: none */
    int all;
} ops_dlq_sel;

/* An empty selection (any partition, no limit). */
void ops_dlq_sel_init(ops_dlq_sel *s);
void ops_dlq_sel_free(ops_dlq_sel *s);
/* -1 when out of memory. entity is borrowed (argv). */
int ops_dlq_sel_add_id(ops_dlq_sel *s, int64_t id);
int ops_dlq_sel_add_entity(ops_dlq_sel *s, const char *entity);
/* Whether anything narrows the selection (replay and discard need it, or
 * --all). */
int ops_dlq_sel_narrowed(const ops_dlq_sel *s);

/*
 * Connects, checks the schema, names the selection after p (and its run),
 * checks that the run is p's and that --since reads as a time. writes:
 * for replay and discard, whose statements rely on the session's lock and
 * statement bounds (set on connect: a statement the client gave up on
 * ends on the server instead of landing later), the connection must be a
 * server session of its own (exactly_pg_connect_own_session); list and
 * show only read, one statement at a time, and need nothing of the
 * session. On failure *conn is NULL and the error is EXACTLY_EINVAL for a
 * refused selection (no such run, a time the server cannot read),
 * EXACTLY_ECONFIG for a refused connection (a transaction-mode pooler),
 * another one else.
 */
exactly_err ops_dlq_open(const exactly_config *cfg, const cfg_pipeline *p,
                         ops_dlq_sel *s, int writes, PGconn **conn,
                         char *err, size_t errsz);

/* The selected dead letters (at most s->limit, lowest id first) and how
 * many match in all. Free rows with store_dl_rows_free. */
exactly_err ops_dlq_select(PGconn *conn, const exactly_config *cfg,
                           const ops_dlq_sel *s, store_dl_row **rows,
                           size_t *n_rows, int64_t *total, char *err,
                           size_t errsz);

/* The selected dead letters, locked FOR UPDATE in the caller's
 * transaction: a concurrent replay or discard waits, then sees them gone. */
exactly_err ops_dlq_lock_selected(PGconn *conn, const exactly_config *cfg,
                                  const ops_dlq_sel *s, store_dl_row **rows,
                                  size_t *n_rows, char *err, size_t errsz);

/* The reprocess runs of p that have dead letters (see store_dl_runs). */
exactly_err ops_dlq_runs(PGconn *conn, const exactly_config *cfg,
                         const cfg_pipeline *p, char ***runs,
                         int64_t **counts, size_t *n, char *err, size_t errsz);

void ops_dlq_runs_free(char **runs, int64_t *counts, size_t n);

/* Deletes the selected dead letters; *n how many. */
exactly_err ops_dlq_discard(PGconn *conn, const exactly_config *cfg,
                            const ops_dlq_sel *s, int64_t *n, char *err,
                            size_t errsz);

/* ---- replay --------------------------------------------------------------- */

typedef enum ops_dl_outcome {
    OPS_DL_PENDING,
    OPS_DL_REPLAYED,    /* applied and deleted */
    OPS_DL_UNDECODABLE, /* no entity ID: cannot be replayed */
    OPS_DL_NO_ROW,      /* the lookup still finds no row */
    OPS_DL_FAILED,      /* the handler, or its SQL, failed the record
                           again */
    OPS_DL_N_OUTCOMES
} ops_dl_outcome;

/* What a replay did, dead letter by dead letter. */
typedef struct ops_dlq_replayed {
    store_dl_row *rows;       /* by topic, partition, offset */
    size_t n;
    ops_dl_outcome *outcome;  /* per row */
    char **reason;            /* per row: OPS_DL_FAILED's new reason */
    char **sqlstate;          /* per row: its SQLSTATE, NULL: none */
    size_t count[OPS_DL_N_OUTCOMES];
    char handler[128];        /* the handler's name */
    int rolled_back;          /* the transaction is known to have been
                                 rolled back: nothing applied */
    int commit_lost;          /* COMMIT was sent and its answer lost with
                                 the connection: note says what the server
                                 answered on a new connection */
    char note[2560];          /* with commit_lost: one sentence */
} ops_dlq_replayed;

/*
 * Applies the selected dead letters again with the pipeline's current
 * configuration: per partition, one record per entity ID, rows from the
 * pipeline's lookup, then the handler's apply(), in batches of at most
 * batch.max_messages messages, all in ONE transaction that also deletes
 * what was applied, records the new failures and, for a reprocess run's
 * dead letters, adds them to the run's applied count.
 *
 * Each batch runs under a savepoint. When apply() fails or the handler's
 * SQL fails on the data, the batch is rolled back to it and bisected as
 * the worker does: the records that still fail alone stay dead letters
 * (OPS_DL_FAILED, attempts + 1, the new reason and SQLSTATE), the others
 * are applied, their outbox events with them. A failure that is not the
 * records' (connection, timeout, deadlock, serialization failure, apply()
 * asking for a retry or running out of memory) rolls everything back
 * (out->rolled_back); after a deadlock (40P01) or a serialization failure
 * (40001) the whole replay is run again, logged, up to
 * OPS_DLQ_REPLAY_TRIES tries in all. A COMMIT whose answer is lost with the connection
 * may have landed: its transaction is asked about by the mark it wrote
 * last before COMMIT, on a new connection (out->commit_lost, out->note).
 * When the mark is there the result is EXACTLY_OK as for any commit; when
 * it is not and nothing is writing it, out->rolled_back; otherwise
 * neither is claimed. EXACTLY_ECONFIG when the
 * pipeline's handler or lookup is refused. Free out with
 * ops_dlq_replayed_free.
 */
#define OPS_DLQ_REPLAY_TRIES 5
exactly_err ops_dlq_replay(PGconn *conn, const exactly_config *cfg,
                           const cfg_pipeline *p, const ops_dlq_sel *s,
                           ops_dlq_replayed *out, char *err, size_t errsz);
void ops_dlq_replayed_free(ops_dlq_replayed *r);

#endif
