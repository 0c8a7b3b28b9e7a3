/*
 * ledger_check: the fixture the ledger pipeline's integration tests share
 * (crash, fencing, rebalance) and the exactly-once check they end with.
 *
 * The ledger handler (tests/plugins/ledger.c) writes one row per applied message
 * into `ledger`, whose primary key is (topic, partition, offset) and which
 * has no ON CONFLICT, and adds each record's message count to
 * `ledger_counters`. After a run, exactly-once holds when the ledger has one
 * row for every offset in the topic and nothing else, the counters equal
 * what was produced per entity, the stored positions equal the high
 * watermarks and no message went to the dead-letter table.
 *
 * Everything here fails the test on error (testkit style); nothing returns
 * an error code.
 */
#ifndef EXACTLY_LEDGER_CHECK_H
#define EXACTLY_LEDGER_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "testkit.h"

/* Rows of `accounts` (ids 1..LEDGER_ACCOUNTS); tests name entities in that
 * range so that every lookup finds its row. */
#define LEDGER_ACCOUNTS 500

/* The pipeline name in every config written here (and in exactly.offsets). */
#define LEDGER_PIPELINE "ledger"

/* Create, in the database conninfo names, `accounts` (ids
 * 1..LEDGER_ACCOUNTS) and the ledger tables (DDL of plugins/README.md). */
void ledger_setup_db(const char *conninfo);

/* The one copy of the ledger handler's DDL (plugins/README.md): create the
 * ledger table and the counter table under these names (quoted with
 * PQescapeIdentifier, so taken literally). */
void ledger_create_tables(PGconn *db, const char *ledger,
                          const char *counters);

/* The ledger handler's reprocess table, `ledger_reprocess` (DDL of
 * plugins/README.md): where a reprocess run's applications go. */
void ledger_create_reprocess_table(PGconn *db);

/* Removes the ledger's rows of topic's partition from offset `from` on,
 * and what they added to `ledger_counters`: what a worker must then apply
 * again. Returns how many rows went. */
int64_t ledger_forget_from(PGconn *db, const char *topic, int partition,
                           int64_t from);

/* Create `table` (id bigint PRIMARY KEY, name text, balance numeric) with
 * rows 1..n: name 'account N', balance N * 10. */
void ledger_create_accounts(PGconn *db, const char *table, int n);

/* What a worker configuration differs in. Zero / NULL fields take the
 * runtime's defaults. */
typedef struct ledger_config {
    const char *bootstraps;          /* required */
    const char *conninfo;            /* required */
    const char *topic;               /* required */
    const char *group;               /* NULL: "ledger" */
    int max_messages;                /* batch.max_messages, required */
    int max_wait_ms;                 /* batch.max_wait_ms, required */
    int lock_timeout_ms;             /* postgres section; 0: default */
    int idle_in_transaction_timeout_ms;
    /* max_crashes of the crash guard; 0: default. A test that kills
     * workers from outside sets it high: to the guard every death during a
     * batch looks like a handler crash. */
    int max_crashes;
    /* Per-pipeline librdkafka overrides, NULL-terminated name/value pairs:
     * {"session.timeout.ms", "6000", NULL}. NULL: none. */
    const char *const *kafka;
    /* Raw YAML appended as is, for what the fields above do not cover:
     * lines of the postgres section (indented 2 spaces), of the pipeline
     * (indented 4) and of the handler's options (indented 8). NULL: none. */
    const char *postgres_yaml;
    const char *pipeline_yaml;
    const char *handler_options_yaml;
} ledger_config;

/* Kafka overrides for ledger_config.kafka in tests that stop a worker and
 * start another in the same group: the mock of librdkafka 2.0.2 keeps a
 * member that left until its session times out (45 s by default), so a
 * short session keeps the restart's group join to a few seconds. Not for
 * tests that freeze a worker longer than 6 s. */
extern const char *const ledger_short_session[];

/* p as a pipeline of the ledger handler: name, one topic, the ID from the
 * key as bigint, looked up in `accounts`, handler ledger.so; every other
 * field zero (the runtime's defaults). */
void ledger_pipeline(tk_pipeline *p, const char *name, const char *topic);

/* The tk_config of one ledger pipeline, for a test that adds to it
 * before tk_config_write (a second pipeline, settings). Strings are
 * borrowed from c. */
void ledger_config_fill(tk_config *out, const ledger_config *c);

/* Write the YAML configuration of one ledger pipeline to path. */
void ledger_write_config(const char *path, const ledger_config *c);

/* $EXACTLY_BIN, or fail. */
const char *ledger_exactly_bin(void);

/* Run `exactly migrate -c config` with output appended to log and fail
 * unless it exits 0. */
void ledger_migrate(const char *config, const char *log);

/* Start `exactly worker -c config [--exit-idle MS]` (exit_idle_ms <= 0: no
 * --exit-idle) with stdout and stderr appended to log. */
pid_t ledger_start_worker(const char *config, int exit_idle_ms,
                          const char *log);

/* What most ledger tests start from: a temporary directory with a config
 * and a log path, a database with the ledger tables, a mock cluster with
 * one topic. */
typedef struct ledger_fixture {
    char dir[256];
    char conninfo[1024];
    char config[512];
    char log[512];
    tk_mock *mock;
    const char *topic;
    int partitions;
} ledger_fixture;

/* Sets up f (name prefixes the directory and the database) and creates the
 * topic; ledger_fixture_config then writes the config from c, with
 * bootstraps, conninfo and topic filled in, and migrates. */
void ledger_fixture_start(ledger_fixture *f, const char *name,
                          const char *topic, int partitions);
void ledger_fixture_config(ledger_fixture *f, ledger_config *c);
/* Stops the mock and removes the directory (see ledger_cleanup_dir). */
void ledger_fixture_stop(ledger_fixture *f);
/* Produces n messages over f's partitions (tk_produce_ids: IDs among the
 * LEDGER_ACCOUNTS accounts, by seed) and adds how many named each account
 * to counts[0..LEDGER_ACCOUNTS), the per-entity totals that
 * ledger_check_exactly_once takes. */
void ledger_produce_wave(const ledger_fixture *f, size_t n, uint64_t seed,
                         int64_t *counts);

/* Run `exactly worker -c config --exit-idle idle_ms` to its end, waiting
 * at most timeout_ms; a worker still running then is stopped and the test
 * fails, showing the log's tail. Returns the exit status. */
int ledger_run_to_idle(const char *config, int idle_ms, int timeout_ms,
                       const char *log);

/* Rows in `ledger`. */
int64_t ledger_rows(PGconn *db);

/* The stored offset of LEDGER_PIPELINE's partition p, read until it is
 * want or timeout_ms passed; the last value read. */
int64_t ledger_wait_stored(PGconn *db, int p, int64_t want, int timeout_ms);

/* Kafka properties (name, value, ..., NULL) for ledger_config.kafka:
 * short sessions with the eager assignors, and the same with
 * cooperative-sticky; tests run a case under both protocols. */
extern const char *const ledger_kafka_eager[];
extern const char *const ledger_kafka_cooperative[];

/* The counters of a worker's summary line (tk_runner.h). */
typedef tk_run_summary ledger_summary;

/* Parse the last summary line of pipeline LEDGER_PIPELINE in log into
 * *out. Returns 1, or 0 when the log has no such line (the worker did not
 * exit through its end). */
int ledger_read_summary(const char *log, ledger_summary *out);

/* The log helpers' names from before they moved to tk_files.h. */
#define ledger_cleanup_dir tk_cleanup_dir
#define ledger_log_count tk_log_count
#define ledger_log_tail tk_log_tail
#define ledger_wait_log tk_wait_log
#define ledger_log_last_int tk_log_last_int

/* Fail the test, printing the tail of log first, unless cond holds. */
#define LEDGER_CHECK_LOG(cond, log, ...)                       \
    do {                                                       \
        if (!(cond)) {                                         \
            ledger_log_tail((log), 40);                        \
            tk_fail_at(__FILE__, __LINE__, __VA_ARGS__);       \
        }                                                      \
    } while (0)

/* High watermark of every partition of topic (hw[0..partitions)), read with
 * a librdkafka handle on bootstraps. Fails unless every low watermark is 0:
 * the mock drops old data silently when a partition grows past its limit,
 * and a test must not blame the runtime for that. */
void ledger_high_watermarks(const char *bootstraps, const char *topic,
                            int partitions, int64_t *hw);

/*
 * The exactly-once check. Asserts, failing the test at the first
 * violation with a message that names it:
 *   - the topic holds total_messages messages (sum of high watermarks);
 *   - `ledger` has total_messages rows, none for another topic, partition
 *     or an offset outside [0, high watermark), and no offset in that range
 *     is missing (so: every offset applied, none twice);
 *   - per entity, `ledger_counters.n` and the ledger's rows both equal
 *     per_entity[id - 1] for ids 1..n_entities, and no other entity has
 *     counters or rows;
 *   - exactly.offsets holds one row per partition and its next_offset
 *     equals the partition's high watermark;
 *   - exactly.dead_letters is empty.
 * Prints a one-line summary of what it verified.
 */
void ledger_check_exactly_once(PGconn *db, const char *bootstraps,
                               const char *topic, int partitions,
                               int64_t total_messages,
                               const int64_t *per_entity, int n_entities);

/* The same check, except that every message naming dead_entity (0: none)
 * must be in exactly.dead_letters, once, and not in the ledger. */
void ledger_check_exactly_once_except(PGconn *db, const char *bootstraps,
                                      const char *topic, int partitions,
                                      int64_t total_messages,
                                      const int64_t *per_entity,
                                      int n_entities, int dead_entity);

/*
 * The part of the contract that holds at every instant, also mid-run and
 * right after a crash: in one snapshot, for every partition, the ledger
 * rows are exactly offsets 0 .. next_offset-1 stored in exactly.offsets (0
 * when no row yet), and the counters add up to the ledger's rows. A batch
 * whose writes committed without its offset advance, or the reverse, or a
 * counter update without its ledger rows, breaks it. Returns the number of
 * ledger rows seen in that snapshot.
 */
int64_t ledger_check_consistent(PGconn *db, const char *topic,
                                int partitions);

#endif /* EXACTLY_LEDGER_CHECK_H */
