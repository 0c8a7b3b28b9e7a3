/*
 * relay_kit: the fixture the outbox relay's integration tests share
 * (test_relay_*): a temporary directory, a database of their own, a mock
 * cluster, a relay's configuration and the outbox `exactly migrate`
 * creates; running `exactly relay` and stopping it; reading a topic back
 * with each record's event-id header, and the check that every outbox
 * row is once among the records.
 *
 * A test starts the fixture, creates its topics on f.mock, writes its
 * relay's configuration (relay_fixture_config: the knobs tests vary in a
 * relay_config, anything else as YAML lines), inserts rows with f.db and
 * runs the relay:
 *
 *     relay_fixture f;
 *     relay_fixture_start(&f, "relay_late", NULL);
 *     tk_mock_create_topic(f.mock, TOPIC, 1);
 *     relay_fixture_config(&f, &(relay_config){.name = "late",
 *                                               .topic = TOPIC,
 *                                               .batch_size = 4});
 *     tk_sql(f.db, "INSERT INTO exactly.outbox ...");
 *     status = relay_run_to_idle(f.config, 300, 30000, f.log);
 *     ...
 *     relay_fixture_stop(&f);
 *
 * Everything fails the test on error (testkit style).
 */
#ifndef EXACTLY_RELAY_KIT_H
#define EXACTLY_RELAY_KIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "testkit.h"

/* What a relay's configuration differs in from test to test. Zero / NULL
 * fields are not written (the runtime's defaults apply) unless said. */
typedef struct relay_config {
    const char *name;            /* relays.NAME; required */
    const char *topic;           /* required */
    int transactional;           /* 1: mode: transactional; 0: not written
                                  * (idempotent) */
    const char *position_topic;  /* with transactional */
    int batch_size;
    int poll_interval_ms;        /* 0: 20, so that a row inserted goes out
                                  * within a few milliseconds */
    /* 0: cleanup: mark, which keeps published rows (published_at set) for
     * the test to read back; 1: not written, so published rows are
     * deleted (the runtime's default). */
    int delete_published;
    /* The relay's own kafka section as the body of a flow mapping,
     * written as is: "linger.ms: 5" gives `kafka: {linger.ms: 5}`. */
    const char *kafka;
    /* Lines of the top-level kafka section after bootstrap.servers, and of
     * the postgres section after conninfo, indented 2, as is. */
    const char *kafka_yaml;
    const char *postgres_yaml;
} relay_config;

/* A relay's test setting. Strings live until relay_fixture_stop. */
typedef struct relay_fixture {
    char dir[256];         /* temporary: configs and logs */
    char conninfo[1024];   /* the test's own database */
    char config[512];      /* dir/relay.yaml: relay_fixture_config's */
    char log[512];         /* dir/relay.log: the first relay's output */
    char log2[512];        /* dir/relay2.log: a second relay's */
    tk_mock *mock;         /* NULL when the test named its own cluster */
    const char *bootstraps;
    PGconn *db;            /* connected to conninfo */
} relay_fixture;

/* Sets up f: the directory /tmp/exactly-NAME-XXXXXX, the database NAME
 * (f->db connected to it) and, with bootstraps NULL, a mock cluster of one
 * broker (f->mock) with no topic yet; else bootstraps, a cluster whose
 * topics the test creates. Nothing is configured or migrated yet. */
void relay_fixture_start(relay_fixture *f, const char *name,
                         const char *bootstraps);

/* Writes c to f->config (relay_write_config) and runs `exactly migrate`
 * with it (output in dir/migrate.log): the outbox exists on return. */
void relay_fixture_config(relay_fixture *f, const relay_config *c);

/* relay_fixture_start with a mock cluster of its own, set up for the
 * transactional relay the tests of its transactions share: topic created
 * with partitions partitions and position_topic with one, and the relay
 * relay_name configured and migrated (relay_fixture_config) in mode
 * transactional, its positions in position_topic, in batches of 50 with
 * linger.ms 5, and the postgres section's postgres_yaml (NULL: none). */
void relay_fixture_start_txn(relay_fixture *f, const char *name,
                             const char *relay_name, const char *topic,
                             int partitions, const char *position_topic,
                             const char *postgres_yaml);

/* Writes to path a configuration of f's cluster and database with the one
 * relay c; strings are single-quoted YAML scalars (tk_yaml_quoted), the
 * *_yaml and kafka fields copied as is. */
void relay_write_config(const relay_fixture *f, const char *path,
                        const relay_config *c);

/* Appends the `relays:` section of c to the configuration at path, for a
 * file that another writer began (a ledger pipeline's, ledger_check.h). */
void relay_config_append(const char *path, const relay_config *c);

/* Closes f->db, stops the mock (if any) and removes the directory
 * (tk_cleanup_dir). */
void relay_fixture_stop(relay_fixture *f);

/* One record read back. */
typedef struct relay_rec {
    int32_t partition;
    int64_t offset;
    char key[64];        /* as text, cut; "" for a null key */
    char event_id[64];   /* the event-id header; "" when absent */
    int n_event_ids;     /* how many event-id headers it carried */
    /* Its other headers in order, each "name=value;" (value cut at 200
     * bytes), a null value as "name;" without '=': "" when none. */
    char headers[512];
} relay_rec;

/* Reads every record of topic (partitions 0..partitions-1) from offset 0
 * up to the high watermarks, without a consumer group, in partition then
 * offset order. Returns a malloc'd array (the caller frees) and its length
 * in *n. Fails unless every low watermark is 0 (see ledger_check.h). */
relay_rec *relay_read_topic(const char *bootstraps, const char *topic,
                            int partitions, size_t *n);

/* Starts `exactly relay -c config [extra args...]` with output appended to
 * log; extra is NULL-terminated (NULL: none). */
pid_t relay_start(const char *config, const char *const *extra,
                  const char *log);

/* Starts `exactly run -c f->config --relay name --metrics 127.0.0.1:PORT`
 * (PORT a free one, in *port; output appended to f->log) once 10 outbox
 * rows wait, and returns once they are published and /readyz answers
 * 200; fails the test, showing the log's tail, otherwise. */
pid_t relay_run_ready(relay_fixture *f, const char *name, int *port);

/* Runs `exactly relay -c config --exit-idle idle_ms` to its end within
 * timeout_ms; fails the test (showing the log) otherwise. Returns the exit
 * status. */
int relay_run_to_idle(const char *config, int idle_ms, int timeout_ms,
                      const char *log);

/* Stops a relay with SIGTERM (SIGKILL after timeout_ms) and fails the
 * test, showing log's tail, unless it exits 0. */
void relay_stop(pid_t pid, int timeout_ms, const char *log);

/* Sends the relay SIGTERM and waits at most bound_ms for it to end, as a
 * stop must end waits that the broker or the database leave unanswered.
 * Notes how long it took, under `what`. Fails the test, naming `what` and
 * the caller's file and line and showing log's tail, unless the relay
 * ended within bound_ms (else it is killed with the test) and exited 0. */
#define relay_stop_within(relay, bound_ms, log, what)                         \
    relay_stop_within_at(__FILE__, __LINE__, (relay), (bound_ms), (log),     \
                         (what))
void relay_stop_within_at(const char *file, int line, pid_t relay,
                          int bound_ms, const char *log, const char *what);

/* Inserts n outbox rows in one statement: the keys 1..n in decimal, each
 * with the value 'v', on the default topic. */
#define relay_insert_rows(db, n)                                              \
    relay_insert_rows_at(__FILE__, __LINE__, (db), (n))
void relay_insert_rows_at(const char *file, int line, PGconn *db, int n);

/* Terminates every relay's PostgreSQL session on db's database
 * (application_name exactly-relay): the relay loses its outbox lock, as
 * when its server or a network cut ends the session. */
void relay_terminate_sessions(PGconn *db);

/* Waits until no outbox row is pending (neither published nor
 * dead-lettered), at most timeout_ms; fails the test, showing log's tail,
 * otherwise. Notes how long it took, under `what`. */
void relay_wait_settled(PGconn *db, const char *log, int timeout_ms,
                        const char *what);

/* Reads topic (relay_read_topic) into the table seen(eid, key, part, off,
 * n_eids), made anew in db: one row per record that skip (NULL: none)
 * does not pick, its first event-id header, key, partition, offset and
 * number of event-id headers. Returns how many records the topic holds;
 * *n_loaded (if not NULL) gets how many went into seen. */
size_t relay_load_seen(PGconn *db, const char *bootstraps, const char *topic,
                       int partitions, int (*skip)(const relay_rec *),
                       size_t *n_loaded);

/* The relay's exactly-once check over the table seen, of which it reads
 * eid, part, off and n_eids (relay_load_seen makes it; a test that reads
 * the topic its own way, read_committed, may make it too): every record
 * carries one event-id header of a UUID's characters, no outbox row is
 * pending or dead-lettered, every row's event_id is in seen once, and
 * seen has as many records as the outbox has rows. Fails the test, naming
 * `what`, at the first violation. */
void relay_check_seen_once(PGconn *db, const char *what);

/* relay_load_seen, then relay_check_seen_once: every outbox row once among
 * the records of topic that skip does not pick (records of a transaction
 * that never committed, which a read_committed reader would not see).
 * Notes the counts. Returns how many records went into seen. */
size_t relay_check_exactly_once(PGconn *db, const char *bootstraps,
                                const char *topic, int partitions,
                                int (*skip)(const relay_rec *),
                                const char *what);

#endif
