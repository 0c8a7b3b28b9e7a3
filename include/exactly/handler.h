/*
 * exactly/handler.h - the handler plugin ABI.
 *
 * A handler plugin is a shared object that defines exactly one exported
 * symbol with EXACTLY_HANDLER(descriptor). The loader opens it with
 * dlopen(RTLD_NOW | RTLD_LOCAL), calls that symbol, and checks abi_tag,
 * abi_major, abi_minor and struct_size before it calls anything else. A
 * plugin built for a newer minor version than the host's is refused: it
 * could read members of the host's structs that the host does not have.
 *
 * The plugin links against nothing from exactly: every service it may use
 * (logging, options, the transaction) arrives through the exactly_host table
 * handed to open(). The runtime owns BEGIN and COMMIT; a handler only adds
 * work to the transaction it is given and never ends it.
 *
 * Ownership: everything the runtime passes in (the batch, its records and
 * rows, option strings, result sets) is borrowed and lives only until the
 * callback returns, except option strings, which live until close().
 * Whatever a plugin allocates it frees in close().
 */
#ifndef EXACTLY_HANDLER_H
#define EXACTLY_HANDLER_H

#include <stddef.h>
#include <stdint.h>

#include "exactly/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EXACTLY_ABI_TAG 0x45584354u /* "EXCT" */
#define EXACTLY_ABI_MAJOR 1
#define EXACTLY_ABI_MINOR 3

/* The name of the one symbol every plugin exports. */
#define EXACTLY_ENTRY_SYMBOL "exactly_handler_entry"

#if defined(__GNUC__)
#define EXACTLY_EXPORT __attribute__((visibility("default")))
#else
#define EXACTLY_EXPORT
#endif

typedef enum exactly_option_type {
    EXACTLY_OPT_STRING = 1,
    EXACTLY_OPT_INT = 2,
    EXACTLY_OPT_BOOL = 3,
    EXACTLY_OPT_LIST = 4, /* a YAML sequence of scalars */
    EXACTLY_OPT_MAP = 5   /* a YAML mapping of scalar to scalar */
} exactly_option_type;

/* One declared option. default_value NULL means the option is required
 * (lists and maps may not have defaults; NULL there means "empty"). */
typedef struct exactly_option_decl {
    const char *name;
    exactly_option_type type;
    const char *default_value;
    const char *description;
} exactly_option_decl;

typedef enum exactly_log_level {
    EXACTLY_LOG_ERROR = 0,
    EXACTLY_LOG_WARN = 1,
    EXACTLY_LOG_INFO = 2,
    EXACTLY_LOG_DEBUG = 3
} exactly_log_level;

/* One Kafka message behind a record. Borrowed. Append only. */
typedef struct exactly_message {
    int64_t offset;
    int64_t timestamp_ms; /* -1 when the broker gave none */
    const void *key;      /* may be NULL */
    size_t key_len;
} exactly_message;

/*
 * One entity of a batch: every message of the partition's batch that named
 * this ID, coalesced, with the rows the lookup found for it. Borrowed.
 * Append only.
 */
typedef struct exactly_record {
    const char *id;                   /* canonical text form of the ID */
    const exactly_message *messages;  /* n_messages >= 1, ascending offsets */
    size_t n_messages;
    size_t n_rows;                    /* 0: the lookup found nothing */
    const char *const *values;        /* n_rows * batch->n_columns, row-major;
                                         NULL is SQL NULL; text format */
} exactly_record;

/* What apply() gets: one partition's batch. Borrowed. Append only. */
typedef struct exactly_batch {
    const char *pipeline;
    const char *topic;
    int32_t partition;
    const exactly_record *records;
    size_t n_records;
    const char *const *column_names; /* of the lookup result */
    size_t n_columns;
    const char *id_type; /* "bigint", "text" or "uuid": the SQL type of IDs */
    /* Since ABI 1.1: nonzero when this batch is applied again by
     * `exactly reprocess` (the run's id), 0 for the live pipeline. */
    int64_t reprocess_run;
    /* Since ABI 1.3: when id_type is "bigint", each record's ID as a
     * number (id_values[i] is records[i].id, parsed), so a handler need
     * not parse the text again; NULL otherwise. The runtime may give NULL
     * for any batch: a handler falls back to the text. */
    const int64_t *id_values;
} exactly_batch;

typedef struct exactly_txn exactly_txn;         /* opaque, runtime-owned */
typedef struct exactly_result exactly_result;   /* opaque, from query() */
typedef struct exactly_options exactly_options; /* opaque, runtime-owned */

/*
 * Services of the host. Append only: a plugin built against an older minor
 * version sees a prefix of this table; check size before using a member
 * added later.
 */
typedef struct exactly_host {
    uint32_t size;

    /* One line of the worker's log with comp "handler": the formatted text
     * is its msg, escaped like every logged value (it can add no line and
     * no key); trailing newlines are dropped. */
    void (*log)(exactly_log_level level, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

    /* Typed option values, already validated against the declaration. */
    const char *(*opt_string)(const exactly_options *opts, const char *name);
    int64_t (*opt_int)(const exactly_options *opts, const char *name);
    int (*opt_bool)(const exactly_options *opts, const char *name);
    /* Sets *items to a borrowed array and returns its length. */
    size_t (*opt_list)(const exactly_options *opts, const char *name,
                       const char *const **items);
    /* Sets *keys and *values to borrowed arrays and returns their length. */
    size_t (*opt_map)(const exactly_options *opts, const char *name,
                      const char *const **keys, const char *const **values);

    /*
     * Queues a statement into the batch's transaction (libpq pipeline mode).
     * sql and params are sent before exec returns, so they may be freed or
     * reused right after. Parameters are text format; NULL is SQL NULL. The statement runs
     * before COMMIT; an error in it fails the batch, and the runtime then
     * retries and isolates the failing records. Returns EXACTLY_OK or an
     * error for a statement that could not even be queued.
     */
    exactly_err (*exec)(exactly_txn *txn, const char *sql, int n_params,
                        const char *const *params);

    /*
     * Runs a statement now, in the batch's transaction, and returns its
     * rows in *result (free it with result_free). Costs a round trip: use
     * exec for writes. On failure it returns an error and the transaction
     * is aborted: the runtime treats the batch as failed by that error
     * (its SQLSTATE decides: a data error isolates the record, an error
     * about the environment retries the batch later) whatever apply()
     * returns afterwards.
     */
    exactly_err (*query)(exactly_txn *txn, const char *sql, int n_params,
                         const char *const *params, exactly_result **result);
    size_t (*result_rows)(const exactly_result *r);
    size_t (*result_columns)(const exactly_result *r);
    /* NULL for SQL NULL. */
    const char *(*result_value)(const exactly_result *r, size_t row,
                                size_t col);
    void (*result_free)(exactly_result *r);

    /*
     * Fails one record without failing the batch: its messages go to the
     * dead-letter table with reason in this same transaction, and the
     * partition moves on. The handler must not have written anything for
     * that record. Failing a record twice keeps the first reason; when the
     * runtime cannot record the failure (out of memory) the whole batch is
     * retried instead, so a record is never lost. A byte of reason that is
     * not part of well-formed UTF-8 is kept as the text \xNN.
     */
    void (*fail_record)(exactly_txn *txn, size_t record_index,
                        const char *reason);

    /* The message of a failed apply(); shows in logs and dead letters. At
     * most its first 1,023 bytes are kept, shortened between characters,
     * a byte that is not part of well-formed UTF-8 as the text \xNN. */
    void (*set_error)(exactly_txn *txn, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

    /* ---- since ABI 1.2 (check size before use) ---- */

    /*
     * Writes an event to the framework's outbox table (`exactly migrate`
     * creates it in the framework schema) in the batch's transaction,
     * queued like exec(): it commits with the batch's writes and offsets or
     * not at all, so consume -> write -> produce happens once, and an
     * `exactly relay` on that outbox publishes it with an event-id header.
     * topic must not be NULL; key and value may be NULL (a null key, a
     * tombstone). headers is NULL or a list of name, value pairs of
     * UTF-8 strings that ends with a NULL where a name would be
     * ({"trace", "abc", NULL}); a NULL value is a null header value
     * ({"gone", NULL, NULL}). Everything is copied before emit returns. Returns
     * EXACTLY_OK, EXACTLY_EINVAL (no topic; or a transaction that has no
     * outbox, such as the setup transaction of open()), EXACTLY_ENOMEM, or
     * the error of a statement that could not be queued.
     */
    exactly_err (*emit)(exactly_txn *txn, const char *topic, const void *key,
                        size_t key_len, const void *value, size_t value_len,
                        const char *const *headers);

    /* fail_record() with a printf-style reason, of which at most the first
     * 1,023 bytes are kept as set_error() keeps them. */
    void (*fail_recordf)(exactly_txn *txn, size_t record_index,
                         const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

    /*
     * exec with each parameter's length and format (0: text, 1:
     * binary, PostgreSQL's wire format; NULL lengths and formats: all
     * text), as libpq's PQsendQueryParams takes them. A binary array lets
     * the server skip parsing text. A plugin that may meet an older host
     * checks host->size before calling it.
     */
    exactly_err (*exec_params)(exactly_txn *txn, const char *sql,
                               int n_params, const char *const *params,
                               const int *lengths, const int *formats);

    /*
     * Why query() failed: the SQLSTATE (five characters, "22012") of the
     * first query() of this transaction that failed, with the server's
     * message in *message when message is not NULL; NULL (and *message
     * NULL) when none failed. Borrowed until apply() returns. apply() can
     * log it or stop issuing statements; the runtime decides what the
     * failure means from the same SQLSTATE (see query()).
     */
    const char *(*query_error)(const exactly_txn *txn, const char **message);
} exactly_host;

/* What open() gets. Borrowed for the duration of open(); host and opts stay
 * valid until close(). Append only. */
typedef struct exactly_open_args {
    const exactly_host *host;
    const exactly_options *opts;
    const char *pipeline;
    /* A transaction for catalog reads at start-up (host->query only); it is
     * rolled back after open() returns. */
    exactly_txn *setup;
    /* The lookup, when it is a plain read of one table (else NULL): lets a
     * handler fuse lookup and write into one statement. */
    const char *lookup_table;
    const char *lookup_id_column;
    const char *id_type;
    char *errbuf; /* open() writes its refusal here */
    size_t errbuf_size;
} exactly_open_args;

/*
 * The descriptor a plugin returns. Append only. Use
 * EXACTLY_HANDLER_HEADER to fill the first four fields.
 */
typedef struct exactly_handler {
    uint32_t abi_tag;
    uint16_t abi_major;
    uint16_t abi_minor;
    uint32_t struct_size;

    const char *name;
    const char *description;
    const exactly_option_decl *options;
    size_t n_options;

    /* Nonzero: apply() needs no looked-up rows (it reads the source itself,
     * fused into its write), so the runtime skips the lookup query. */
    int skips_lookup;

    /*
     * Reads the options (and through args->setup the catalog) into a
     * state of its own. Returns EXACTLY_OK, or a failure with the reason
     * in args->errbuf. A failure is a refusal (the worker exits 2) unless
     * it goes away by itself: a query of setup was answered with a
     * transient SQLSTATE (a lock or statement timeout, a lost connection,
     * a shutdown or failover), or open() returned EXACTLY_ERETRY with no
     * query failing. The worker then calls open() again after a backoff.
     * A query answered with any other SQLSTATE (42P01, 42501, ...) makes
     * it a refusal whatever open() returns.
     */
    exactly_err (*open)(const exactly_open_args *args, void **state);
    /*
     * Adds the batch's writes to txn. A batch is one partition's; the
     * small batches of several partitions may share one transaction
     * (batch.max_partitions), with one apply() per partition, so the
     * transaction may already hold another batch's writes. What its
     * return code does:
     *   EXACTLY_OK        the writes commit with the batch (records failed
     *                     with fail_record() go to the dead-letter table).
     *   EXACTLY_ERETRY    transient ("not now"): the batch is rolled back
     *                     and run again, whole, after a backoff; nothing is
     *                     dead-lettered. EXACTLY_ENOMEM does the same.
     *   EXACTLY_EFATAL    fatal ("stop"): the batch is rolled back and the
     *                     worker stops with exit status 3; its supervisor
     *                     does not restart it.
     *   anything else     these records failed (EXACTLY_EHANDLER is the
     *                     usual code; set_error() says why): the batch is
     *                     rolled back, retried once in a savepoint, then
     *                     bisected; the records that fail alone are
     *                     dead-lettered (or, with on_error: stop, the
     *                     partition halts).
     */
    exactly_err (*apply)(void *state, exactly_txn *txn,
                         const exactly_batch *batch);
    void (*close)(void *state); /* may be NULL */
} exactly_handler;

#define EXACTLY_HANDLER_HEADER                                                 \
    EXACTLY_ABI_TAG, EXACTLY_ABI_MAJOR, EXACTLY_ABI_MINOR,                     \
        (uint32_t)sizeof(exactly_handler)

typedef const exactly_handler *(*exactly_handler_entry_fn)(void);

/* Defines the plugin's one exported symbol returning &descriptor. */
#define EXACTLY_HANDLER(descriptor)                                            \
    EXACTLY_EXPORT const exactly_handler *exactly_handler_entry(void);         \
    EXACTLY_EXPORT const exactly_handler *exactly_handler_entry(void)          \
    {                                                                          \
        return &(descriptor);                                                  \
    }

#ifdef __cplusplus
}
#endif

#endif
