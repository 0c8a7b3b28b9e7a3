/*
 * cli_kit: what the tests of the operator commands (exactly dlq,
 * reprocess, offsets) start from: a mock cluster with one topic, a
 * temporary directory, a database of their own with a connection to it,
 * a config path, messages that name IDs in a fixed pattern, a worker run
 * to its idle exit (which dead-letters what the config fails), and
 * `exactly ... -c config` run with its output captured.
 *
 * Everything here fails the test on error (testkit style).
 */
#ifndef EXACTLY_CLI_KIT_H
#define EXACTLY_CLI_KIT_H

#include <stdint.h>

#include "ledger_check.h"
#include "testkit.h"

typedef struct cli_kit {
    char dir[256];       /* the temporary directory: config and logs */
    char cfg[512];       /* dir/<config file>; the test writes it */
    char conninfo[1024]; /* the test's own database */
    tk_mock *mock;
    const char *bootstraps;
    PGconn *db;          /* connected to conninfo */
    int cmd_timeout_ms;  /* for cli_exactly; 60000 unless the test sets it */
    int n_cmd;           /* commands run so far: numbers their logs */
} cli_kit;

/* Starts k: a mock cluster of one broker with topic in partitions, the
 * directory exactly-NAME (NAME's '_' as '-'), the database NAME and, with
 * ledger set, the ledger tables and `accounts` in it (ledger_setup_db);
 * k->db connected to it; k->cfg = dir/config_file (not written). */
void cli_kit_start(cli_kit *k, const char *name, const char *topic,
                   int partitions, const char *config_file, int ledger);

/* Produces n_msgs zero-payload messages to topic: message i has the key
 * (i % n_ids) + 1 in decimal and goes to partition i % partitions.
 * produced (NULL, or n_ids + 1 elements) gets produced[id] incremented
 * per message naming id. */
void cli_kit_produce_ids(cli_kit *k, const char *topic, int n_msgs,
                         int n_ids, int partitions, int64_t *produced);

/* `exactly migrate -c k->cfg`, output in dir/migrate.log; fails the test
 * unless it exits 0. */
void cli_kit_migrate(cli_kit *k);

/* Runs `exactly worker -c k->cfg --exit-idle 3000` to its end, waiting at
 * most timeout_ms, output in dir/worker.log; fails the test, showing the
 * log's tail, unless it exits 0. */
void cli_kit_worker_to_idle(cli_kit *k, int timeout_ms);

/* Runs `exactly worker -c k->cfg --exit-idle idle_ms` to its end (output
 * in dir/worker-TAG.log), waiting at most timeout_ms, and reads its
 * summary into *sum; fails the test, showing the log's tail, unless it
 * exits 0 and prints one. */
void cli_kit_worker_summary(cli_kit *k, const char *tag, int idle_ms,
                            int timeout_ms, ledger_summary *sum);

/* Starts `exactly worker -c k->cfg --exit-idle 3000`, output in
 * dir/worker.log, and waits at most wait_ms for the stored offset of
 * pipeline (one partition: exactly.offsets' next_offset, 0 while none is
 * stored) to reach want; short of it, sends the worker SIGTERM. Then waits
 * at most 60 s for the worker's end (tk_worker_wait). Returns the offset
 * last read; *status gets the worker's exit status and *matched (unless
 * NULL) how many lines of its log held needle when the wait ended. It
 * asserts nothing: the caller does, in its own words. */
#define cli_kit_worker_to_offset(k, pipeline, want, wait_ms, needle,          \
                                 matched, status)                             \
    cli_kit_worker_to_offset_at(__FILE__, __LINE__, (k), (pipeline), (want), \
                                (wait_ms), (needle), (matched), (status))
int64_t cli_kit_worker_to_offset_at(const char *file, int line, cli_kit *k,
                                    const char *pipeline, int64_t want,
                                    int wait_ms, const char *needle,
                                    int64_t *matched, int *status);

/* Runs `exactly ARGS... -c k->cfg` (ARGS NULL-terminated, at most 28),
 * waiting at most k->cmd_timeout_ms, output in dir/ARG1-NN.log. Returns
 * the exit status; *out holds the output (malloc'd, "" when none). */
int cli_exactly(cli_kit *k, char **out, ...);

/* Rows of exactly.dead_letters: all (where NULL) or those matching the SQL
 * condition where. */
int64_t cli_dead_letters(cli_kit *k, const char *where);

/* Closes k->db, stops the mock and removes the directory. */
void cli_kit_stop(cli_kit *k);

#endif /* EXACTLY_CLI_KIT_H */
