/*
 * config.h - the worker's YAML configuration, read once at start-up.
 *
 * exactly_config_load() reads and validates a whole file; on failure it
 * returns EXACTLY_ECONFIG and writes one sentence naming the file, line,
 * column and key into errbuf. The returned config is owned by the caller
 * and freed with exactly_config_free() (which accepts NULL).
 *
 * A loaded config has every key the file leaves out at its default. The
 * defaults, ranges and meaning of each key live in one place, the schema
 * tables (config/tables.c, config/tables_pipeline.c), which
 * docs/CONFIGURATION.md is generated from; the comments below say only
 * what the code reading a member needs to know.
 */
#ifndef EXACTLY_CONFIG_H
#define EXACTLY_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "config/conninfo.h"
#include "exactly/error.h"

/* A position in the file, for error messages given after loading. */
typedef struct cfg_pos {
    int line;   /* 1-based */
    int column; /* 1-based */
} cfg_pos;

/* A raw YAML value kept for later validation (handler options). */
typedef enum cfg_kind { CFG_SCALAR = 1, CFG_SEQ = 2, CFG_MAP = 3 } cfg_kind;

typedef struct cfg_value {
    cfg_kind kind;
    cfg_pos pos;
    char *scalar;             /* CFG_SCALAR, after ${VAR} expansion */
    struct cfg_value *items;  /* CFG_SEQ items, or CFG_MAP values */
    char **keys;              /* CFG_MAP keys */
    cfg_pos *key_pos;         /* CFG_MAP key positions */
    size_t n_items;
    char *raw;                /* CFG_SCALAR as written when it held ${...},
                                 else NULL: messages echo this, never a
                                 value that may come from a secret */
} cfg_value;

/* One property passed through to librdkafka. */
typedef struct cfg_prop {
    char *name;
    char *value;
    cfg_pos pos;
} cfg_prop;

typedef enum cfg_id_from {
    CFG_FROM_KEY = 1,
    CFG_FROM_VALUE = 2,
    CFG_FROM_HEADER = 3
} cfg_id_from;

typedef enum cfg_id_type {
    CFG_ID_BIGINT = 1,
    CFG_ID_TEXT = 2,
    CFG_ID_UUID = 3
} cfg_id_type;

/* What happens to an ID written in another spelling than its canonical
 * one ("007" for 7, an upper-case uuid). */
typedef enum cfg_non_canonical {
    CFG_NONCANON_DEAD_LETTER = 1, /* refused: Kafka would put the spellings
                                     of one entity on different partitions */
    CFG_NONCANON_ACCEPT = 2       /* taken as the canonical form */
} cfg_non_canonical;

typedef enum cfg_on_missing {
    CFG_MISSING_SKIP = 1,
    CFG_MISSING_DEAD_LETTER = 2,
    CFG_MISSING_HANDLER = 3,
    CFG_MISSING_RETRY = 4
} cfg_on_missing;

typedef enum cfg_on_error {
    CFG_ERROR_DEAD_LETTER = 1,
    CFG_ERROR_STOP = 2
} cfg_on_error;

typedef struct cfg_pipeline {
    char *name;
    cfg_pos pos;

    char **topics;
    size_t n_topics;
    char *group; /* group.id */

    struct {
        cfg_id_from from;
        char *header;       /* CFG_FROM_HEADER */
        cfg_id_type type;
        size_t max_length;  /* bytes */
        cfg_non_canonical non_canonical;
    } id;

    struct {
        /* Either table (+ id_column, columns) or sql. */
        char *table;
        char *id_column;
        char **columns;     /* NULL: all columns (*) */
        size_t n_columns;
        char *sql;          /* must use = ANY($1) */
        char *key_column;   /* result column holding the ID */
        cfg_on_missing on_missing;
        int missing_retry_ms;      /* on_missing: retry, then dead_letter */
    } lookup;

    struct {
        char *plugin;       /* path of a .so, or NULL */
        char *builtin;      /* "upsert", or NULL */
        cfg_value options;  /* CFG_MAP; n_items 0 when absent */
        cfg_pos pos;
        cfg_pos options_pos;
    } handler;

    struct {
        int max_messages;
        int max_wait_ms;
        int max_partitions; /* partitions' batches in one transaction */
    } batch;

    struct {
        int enabled;
        cfg_id_from from;   /* key or header */
        char *header;
        int64_t retention_s;
    } dedup;

    int workers;
    cfg_on_error on_error;  /* a record the handler fails on */
    int max_crashes;        /* workers lost at one batch before isolating */
    int unsafe_read_uncommitted;

    cfg_prop *kafka;        /* per-pipeline overrides of the kafka section */
    size_t n_kafka;
} cfg_pipeline;

/* The outbox relay (lib/relay/, relays.NAME). */
typedef enum cfg_relay_cleanup {
    CFG_CLEANUP_DELETE = 1, /* an acknowledged row is deleted */
    CFG_CLEANUP_MARK = 2    /* published_at is set; deleted after retention */
} cfg_relay_cleanup;

typedef enum cfg_relay_mode {
    CFG_RELAY_IDEMPOTENT = 1,  /* idempotent producer, acks=all; duplicates
                                  after a crash carry the same event-id */
    CFG_RELAY_TRANSACTIONAL = 2 /* each batch and the relay's position in
                                  one Kafka transaction (relay.h) */
} cfg_relay_mode;

typedef struct cfg_relay {
    char *name;
    cfg_pos pos;
    char *schema;           /* of the outbox table; postgres.schema when
                               not written */
    char *table;
    char *topic;            /* for rows whose topic is NULL; NULL: none */
    int batch_size;
    int poll_interval_ms;
    cfg_relay_cleanup cleanup;
    int64_t retention_s;    /* CFG_CLEANUP_MARK: published rows kept so long */
    cfg_relay_mode mode;
    char *position_topic;   /* CFG_RELAY_TRANSACTIONAL: where the relay's
                               position records go; NULL otherwise */
    cfg_prop *kafka;        /* producer properties over the kafka section */
    size_t n_kafka;
} cfg_relay;

typedef enum cfg_log_format { CFG_LOG_LOGFMT = 1, CFG_LOG_JSON = 2 } cfg_log_format;

typedef struct exactly_config {
    char *path;

    struct {
        cfg_log_format format;
        int level;              /* exactly_log_level */
    } log;

    cfg_prop *kafka;
    size_t n_kafka;

    struct {
        char *conninfo;
        char *schema;
        int statement_timeout_ms;
        int lock_timeout_ms;
        int connect_timeout_s;
        int idle_in_transaction_timeout_ms;
        /* The client's own bound on any wait for an answer; 0:
         * statement_timeout_ms + lock_timeout_ms + 30000, capped
         * (exactly_pg_wait_bound_ms). */
        int client_timeout_ms;
        cfg_pos pos;
    } postgres;

    cfg_pipeline *pipelines;
    size_t n_pipelines;

    cfg_relay *relays;      /* relays.NAME; a file needs pipelines or relays */
    size_t n_relays;
} exactly_config;

exactly_err exactly_config_load(const char *path, exactly_config **out,
                                char *errbuf, size_t errbuf_size);

void exactly_config_free(exactly_config *cfg);

/* The pipeline called name, or NULL. */
const cfg_pipeline *exactly_config_pipeline(const exactly_config *cfg,
                                            const char *name);

/* The relay called name, or NULL. */
const cfg_relay *exactly_config_relay(const exactly_config *cfg,
                                      const char *name);

/* Whether a librdkafka property holds a secret and must never be printed. */
int exactly_config_is_secret(const char *property);


const char *exactly_id_type_name(cfg_id_type t);

/*
 * For tests: how many key comparisons the last exactly_config_load() made
 * to find duplicate keys. It must grow with the number of keys, not with
 * its square, or a large file takes minutes to load. Not thread-safe; a
 * diagnostic only.
 */
unsigned long long exactly_config_key_comparisons(void);

#endif
