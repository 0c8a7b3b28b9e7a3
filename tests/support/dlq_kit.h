/*
 * dlq_kit: what the dead-letter tests set up on top of cli_kit (cli_kit.h):
 * the pipeline that looks an entity up in the table src and upserts it
 * into the table view; the batch of six records of which two fail; and
 * dead letters planted with SQL the way the worker writes them, for the
 * tests of `exactly dlq` that need letters but not the worker that made
 * them.
 *
 * Everything here fails the test on error (testkit style), naming the
 * caller's file and line where it runs SQL.
 */
#ifndef EXACTLY_DLQ_KIT_H
#define EXACTLY_DLQ_KIT_H

#include "cli_kit.h"
#include "testkit.h"

/* Initialises *cfg for k's cluster and database (tk_config_init) with one
 * pipeline, which it returns: named name, reading topic, the entity ID
 * taken from the message key as id_type, looked up in the table src and
 * written to the table view by the built-in upsert of the NULL-terminated
 * columns (tk_upsert_handler). The test sets what else it needs and writes
 * cfg to k->cfg itself. */
tk_pipeline *dlq_view_pipeline(cli_kit *k, tk_config *cfg, const char *name,
                               const char *topic, const char *id_type,
                               const char *const *columns);

/* The tables of a replay of planted letters: src (id bigint, name text)
 * holding the IDs 1..n, each named 'name ID', and view (id bigint, name
 * text), empty. */
#define dlq_named_tables(k, n) dlq_named_tables_at(__FILE__, __LINE__, (k), (n))
void dlq_named_tables_at(const char *file, int line, cli_kit *k, int n);

/* The batch with two bad records: six messages on partition 0 of topic,
 * keys 1..6 (cli_kit_produce_ids); the table src (id bigint, grp int) in
 * which IDs 3 and 4 are of group 9 and the others of group 1; then
 * view_sql, run as is (not a format), which makes the table view (id
 * bigint, grp int) and whatever makes it refuse group 9; and pipeline
 * (dlq_view_pipeline: bigint IDs, columns id and grp; session.timeout.ms
 * 6000, one batch: max_messages 10, max_wait_ms 50) written to k->cfg and
 * migrated (cli_kit_migrate). The worker is the test's to run. */
#define dlq_bad_pair_setup(k, pipeline, topic, view_sql)                      \
    dlq_bad_pair_setup_at(__FILE__, __LINE__, (k), (pipeline), (topic),      \
                          (view_sql))
void dlq_bad_pair_setup_at(const char *file, int line, cli_kit *k,
                           const char *pipeline, const char *topic,
                           const char *view_sql);

/* Plants n dead letters of pipeline on partition 0 of topic, as the worker
 * writes them (key length and digest included): letter g (1..n) at offset
 * g - 1, its message key and entity ID g in decimal, reason 'planted'. */
#define dlq_plant_series(k, pipeline, topic, n)                               \
    dlq_plant_series_at(__FILE__, __LINE__, (k), (pipeline), (topic), (n))
void dlq_plant_series_at(const char *file, int line, cli_kit *k,
                         const char *pipeline, const char *topic, int n);

/* Plants the dead letter of one message of pipeline at offset of partition
 * 0 of topic, whose key is key_sql (an SQL text expression, e.g.
 * "repeat('k', 3000)") in UTF-8, kept as the worker keeps a key: its first
 * 1,024 bytes with its full length and SHA-256; entity ID NULL, reason
 * 'planted'. Returns the letter's id as text (malloc'd). */
#define dlq_plant_key(k, pipeline, topic, offset, key_sql)                    \
    dlq_plant_key_at(__FILE__, __LINE__, (k), (pipeline), (topic), (offset), \
                     (key_sql))
char *dlq_plant_key_at(const char *file, int line, cli_kit *k,
                       const char *pipeline, const char *topic, int offset,
                       const char *key_sql);

/* A `dlq replay` (pid dlq, output in log_dlq) and an `offsets reset`
 * (reset, log_reset) whose COMMITs were lost while they were frozen
 * (SIGSTOP): resumes both and waits for them; checks on conninfo's
 * database that nothing of either landed (all `letters` dead letters,
 * no row of view, the stored offset still `stored`, no audit row; `where`
 * names that server in the lines) and that each said it was rolled back
 * (exit 1), never committed (`why` ends those lines: why a COMMIT
 * reported would be another transaction's). Notes both outputs under
 * `lost`. */
void dlq_commit_lost_check(pid_t dlq, pid_t reset, const char *log_dlq,
                           const char *log_reset, const char *conninfo,
                           int letters, int stored, const char *lost,
                           const char *where, const char *why);
#endif /* EXACTLY_DLQ_KIT_H */
