/*
 * ledger.c - the test ledger: records every message it is handed, so that
 * the crash tests can prove each offset was applied exactly once.
 *
 * Per batch it queues two statements:
 *
 *   INSERT INTO "ledger" (topic, partition, "offset", entity_id)
 *   SELECT $1::text, $2::integer, u.o, u.e
 *   FROM unnest($3::bigint[], $4::text[]) AS u(o, e)
 *
 * one row per message, deliberately without ON CONFLICT: the ledger is a
 * detector, and applying an offset twice must fail loudly with a unique
 * violation instead of being absorbed; and
 *
 *   INSERT INTO "ledger_counters" AS c (entity_id, n)
 *   SELECT u.e, u.n FROM unnest($1::text[], $2::bigint[]) AS u(e, n)
 *   ORDER BY u.e ON CONFLICT (entity_id) DO UPDATE SET n = c.n + EXCLUDED.n
 *
 * adding each record's message count, so that a test can compare per-ID
 * totals with what it produced.
 *
 * The tables must exist (open() only has a read-only setup transaction).
 * The tests create them; the DDL:
 *
 *   CREATE TABLE ledger (
 *       topic      text   NOT NULL,
 *       partition  int    NOT NULL,
 *       "offset"   bigint NOT NULL,
 *       entity_id  text   NOT NULL,
 *       applied_at timestamptz NOT NULL DEFAULT now(),
 *       PRIMARY KEY (topic, partition, "offset"));
 *   CREATE TABLE ledger_counters (
 *       entity_id text PRIMARY KEY,
 *       n         bigint NOT NULL);
 *
 * Options:
 *   table        string  "ledger"           the ledger table
 *   counters     string  "ledger_counters"  the per-ID counter table
 *   crash_on_id  string  ""                 abort() the process when a
 *                                           record has this ID (crash tests)
 *   fail_on_ids  list    empty              dead-letter records with these
 *                                           IDs via fail_record()
 *
 * Misbehaviours on purpose, for the tests of the runtime's defences (each
 * triggered by a batch holding the named ID; "" never triggers):
 *   sleep_on_id, sleep_ms       queue pg_sleep(sleep_ms) after the writes,
 *                               the first time in this process
 *   swallow_on_id               after the writes, run a failing query
 *                               (division by zero) and ignore its error
 *   fail_twice_on_ids (list)    call fail_record() twice for the record
 *   return_on_id, return_code,  return return_code from apply() instead of
 *   return_times                writing, the first return_times times in
 *                               this process (0: every time)
 *   retry_on_ids (list)         return EXACTLY_ERETRY instead of writing,
 *                               the first time a batch holds each of these
 *                               IDs in this process
 *   crash_in_open (bool)        abort() in open(): a worker that dies
 *                               before it joins its group, which the
 *                               crash guard never sees (the supervisor's
 *                               crash-loop test)
 * And for any batch, regardless of its IDs:
 *   require_id_values (bool)    a bigint batch without id_values (ABI 1.3)
 *                               fails fatally (the tests that set it
 *                               prove the runtime gives them on that path)
 *   stall_ms                    wait this long in apply(), on the worker's
 *                               own thread, before anything else (a slow
 *                               handler: the worker does nothing
 *                               meanwhile)
 *
 * Producing (ABI 1.2, host->emit):
 *   emit_topic   string  ""   when set, one outbox event per applied
 *                              message, in the batch's transaction: key
 *                              "TOPIC/PARTITION/OFFSET" of the message,
 *                              value its entity ID, header "source" =
 *                              "ledger"; the emit crash test compares
 *                              them with the ledger one to one
 *
 * It reads no looked-up rows but leaves skips_lookup at 0, so the tests
 * exercise the runtime's lookup path too.
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "exactly/exactly.h"
#include "exactly/sqlbuf.h"

/* ---- the handler ---- */

/* Whether the host's table has member m (it grows by appending). */
#define HOST_HAS(h, m)                                                         \
    ((h)->size >= offsetof(exactly_host, m) + sizeof((h)->m) && (h)->m)

typedef struct ledger {
    const exactly_host *host;
    char *ledger_sql;
    char *counters_sql;
    char *reprocess_sql;       /* batches of `exactly reprocess` runs */
    const char *crash_on_id;   /* NULL: never crash */
    const char **fail_on_ids;  /* our copy of the option's array */
    size_t n_fail_on_ids;
    const char **fail_twice_on_ids;
    size_t n_fail_twice_on_ids;
    const char **retry_on_ids;
    size_t n_retry_on_ids;
    unsigned char *retried;    /* per retry_on_ids entry: returned once */
    const char *sleep_on_id, *swallow_on_id, *return_on_id;
    const char *emit_topic;    /* NULL: emit nothing */
    int64_t sleep_ms, return_code, return_times, stall_ms;
    int require_id_values;
    int slept;
    int64_t returned;
    /* Parameters, kept across batches to reuse their memory. */
    exactly_sqlbuf offsets, entities, ids, counts;
} ledger;

static const exactly_option_decl ledger_options[] = {
    {"table", EXACTLY_OPT_STRING, "ledger",
     "ledger table: one row per applied message, primary key (topic, "
     "partition, \"offset\")"},
    {"counters", EXACTLY_OPT_STRING, "ledger_counters",
     "counter table: messages applied per entity ID"},
    {"crash_on_id", EXACTLY_OPT_STRING, "",
     "abort() the worker when a record has this ID (crash tests)"},
    {"fail_on_ids", EXACTLY_OPT_LIST, NULL,
     "IDs whose records are dead-lettered with fail_record()"},
    {"fail_twice_on_ids", EXACTLY_OPT_LIST, NULL,
     "IDs whose records are failed with fail_record() twice (misuse test)"},
    {"sleep_on_id", EXACTLY_OPT_STRING, "",
     "queue pg_sleep(sleep_ms) when a batch holds this ID, once per process"},
    {"sleep_ms", EXACTLY_OPT_INT, "0", "see sleep_on_id"},
    {"swallow_on_id", EXACTLY_OPT_STRING, "",
     "run a failing query and ignore its error when a batch holds this ID"},
    {"return_on_id", EXACTLY_OPT_STRING, "",
     "return return_code from apply() when a batch holds this ID"},
    {"return_code", EXACTLY_OPT_INT, "0", "see return_on_id"},
    {"return_times", EXACTLY_OPT_INT, "1",
     "how many times per process return_on_id triggers (0: always)"},
    {"retry_on_ids", EXACTLY_OPT_LIST, NULL,
     "IDs whose batch returns EXACTLY_ERETRY, the first time for each ID "
     "in this process"},
    {"stall_ms", EXACTLY_OPT_INT, "0",
     "wait this long in apply() before anything else, on every batch"},
    {"crash_in_open", EXACTLY_OPT_BOOL, "false",
     "abort() the worker in open() (crash-loop tests)"},
    {"require_id_values", EXACTLY_OPT_BOOL, "false",
     "fail fatally on a bigint batch without id_values (ABI 1.3)"},
    {"emit_topic", EXACTLY_OPT_STRING, "",
     "emit one outbox event per applied message to this topic (host->emit)"},
    {"reprocess_table", EXACTLY_OPT_STRING, "ledger_reprocess",
     "rows of reprocess runs: primary key (run, topic, partition, \"offset\"); "
     "the live ledger and counters are left alone"},
};

static void ledger_close(void *state)
{
    ledger *l = state;

    if (!l)
        return;
    free(l->ledger_sql);
    free(l->counters_sql);
    free(l->fail_on_ids);
    free(l->fail_twice_on_ids);
    free(l->retry_on_ids);
    free(l->retried);
    free(l->reprocess_sql);
    exactly_sqlbuf_free(&l->offsets);
    exactly_sqlbuf_free(&l->entities);
    exactly_sqlbuf_free(&l->ids);
    exactly_sqlbuf_free(&l->counts);
    free(l);
}

/* Builds the statements; returns -1 with errbuf set. */
static int build_sql(ledger *l, const char *table, const char *counters,
                     const char *reprocess, char *errbuf, size_t errbuf_size)
{
    exactly_sqlbuf b = {0};

    /* A reprocess run records each message once per run, with no ON
     * CONFLICT either: applying one twice within a run fails loudly. */
    exactly_sqlbuf_puts(&b, "INSERT INTO ");
    if (exactly_sqlbuf_relation(&b, reprocess) != 0)
        goto bad_name;
    exactly_sqlbuf_puts(&b, " (run, topic, partition, \"offset\", entity_id) "
                 "SELECT $5::bigint, $1::text, $2::integer, u.o, u.e "
                 "FROM unnest($3::bigint[], $4::text[]) AS u(o, e)");
    l->reprocess_sql = exactly_sqlbuf_take(&b);

    exactly_sqlbuf_puts(&b, "INSERT INTO ");
    if (exactly_sqlbuf_relation(&b, table) != 0)
        goto bad_name;
    exactly_sqlbuf_puts(&b, " (topic, partition, \"offset\", entity_id) "
                 "SELECT $1::text, $2::integer, u.o, u.e "
                 "FROM unnest($3::bigint[], $4::text[]) AS u(o, e)");
    l->ledger_sql = exactly_sqlbuf_take(&b);

    table = counters;
    exactly_sqlbuf_puts(&b, "INSERT INTO ");
    if (exactly_sqlbuf_relation(&b, table) != 0)
        goto bad_name;
    exactly_sqlbuf_puts(&b, " AS c (entity_id, n) "
                 "SELECT u.e, u.n FROM unnest($1::text[], $2::bigint[]) "
                 "AS u(e, n) ORDER BY u.e "
                 /* Rows locked in one global order: two workers adding to
                  * the same entities cannot deadlock. */
                 "ON CONFLICT (entity_id) DO UPDATE SET n = c.n + EXCLUDED.n");
    l->counters_sql = exactly_sqlbuf_take(&b);

    if (!l->ledger_sql || !l->counters_sql || !l->reprocess_sql) {
        snprintf(errbuf, errbuf_size, "ledger: out of memory");
        return -1;
    }
    return 0;

bad_name:
    exactly_sqlbuf_free(&b);
    snprintf(errbuf, errbuf_size,
             "ledger: table name \"%s\" is not name or schema.name",
             table ? table : "");
    return -1;
}

/* Copies a list option's borrowed array into *out; -1 when out of memory. */
static int copy_list(const exactly_host *h, const exactly_options *opts,
                     const char *name, const char ***out, size_t *n)
{
    const char *const *items = NULL;
    size_t i;

    *n = h->opt_list(opts, name, &items);
    *out = NULL;
    if (*n == 0)
        return 0;
    *out = malloc(*n * sizeof(**out));
    if (!*out)
        return -1;
    for (i = 0; i < *n; i++)
        (*out)[i] = items[i];
    return 0;
}

/* A string option, NULL when empty. */
static const char *opt_id(const exactly_host *h, const exactly_options *opts,
                          const char *name)
{
    const char *v = h->opt_string(opts, name);
    return v && *v ? v : NULL;
}

static exactly_err ledger_open(const exactly_open_args *args, void **state)
{
    const exactly_host *h = args->host;
    ledger *l;

    *state = NULL;
    l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(args->errbuf, args->errbuf_size, "ledger: out of memory");
        return EXACTLY_ENOMEM;
    }
    l->host = h;
    if (build_sql(l, h->opt_string(args->opts, "table"),
                  h->opt_string(args->opts, "counters"),
                  h->opt_string(args->opts, "reprocess_table"), args->errbuf,
                  args->errbuf_size) != 0)
        goto fail;

    l->crash_on_id = opt_id(h, args->opts, "crash_on_id");
    l->sleep_on_id = opt_id(h, args->opts, "sleep_on_id");
    l->swallow_on_id = opt_id(h, args->opts, "swallow_on_id");
    l->return_on_id = opt_id(h, args->opts, "return_on_id");
    l->emit_topic = opt_id(h, args->opts, "emit_topic");
    if (l->emit_topic && !HOST_HAS(h, emit)) {
        snprintf(args->errbuf, args->errbuf_size,
                 "ledger: emit_topic needs a host of ABI 1.2 or later");
        goto fail;
    }
    l->sleep_ms = h->opt_int(args->opts, "sleep_ms");
    l->return_code = h->opt_int(args->opts, "return_code");
    l->return_times = h->opt_int(args->opts, "return_times");
    l->stall_ms = h->opt_int(args->opts, "stall_ms");
    l->require_id_values = h->opt_bool(args->opts, "require_id_values");
    if (h->opt_bool(args->opts, "crash_in_open")) {
        h->log(EXACTLY_LOG_ERROR, "ledger: crash_in_open, aborting on purpose");
        abort();
    }
    if (copy_list(h, args->opts, "fail_on_ids", &l->fail_on_ids,
                  &l->n_fail_on_ids) != 0 ||
        copy_list(h, args->opts, "fail_twice_on_ids", &l->fail_twice_on_ids,
                  &l->n_fail_twice_on_ids) != 0 ||
        copy_list(h, args->opts, "retry_on_ids", &l->retry_on_ids,
                  &l->n_retry_on_ids) != 0 ||
        (l->n_retry_on_ids > 0 &&
         !(l->retried = calloc(l->n_retry_on_ids, 1)))) {
        snprintf(args->errbuf, args->errbuf_size, "ledger: out of memory");
        goto fail;
    }
    *state = l;
    return EXACTLY_OK;

fail:
    ledger_close(l);
    return EXACTLY_ECONFIG;
}

static int is_listed(const char *const *list, size_t n, const char *id)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(list[i], id) == 0)
            return 1;
    return 0;
}

/* Whether the batch holds a record with this ID (NULL: never). */
static int batch_has(const exactly_batch *batch, const char *id)
{
    size_t i;

    for (i = 0; id && i < batch->n_records; i++)
        if (strcmp(batch->records[i].id, id) == 0)
            return 1;
    return 0;
}

/* Waits ms milliseconds on the calling thread. */
static void stall(int64_t ms)
{
    struct timespec ts;

    if (ms <= 0)
        return;
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* The first retry_on_ids entry the batch holds that has not returned yet,
 * marked as returned now; NULL when there is none. */
static const char *retry_due(ledger *l, const exactly_batch *batch)
{
    size_t i;

    for (i = 0; i < l->n_retry_on_ids; i++)
        if (!l->retried[i] && batch_has(batch, l->retry_on_ids[i])) {
            l->retried[i] = 1;
            return l->retry_on_ids[i];
        }
    return NULL;
}

/* The misbehaviours that follow the writes: a long sleep, or a failed
 * query whose error is ignored. */
static exactly_err misbehave_after(ledger *l, exactly_txn *txn,
                                   const exactly_batch *batch)
{
    const exactly_host *h = l->host;
    exactly_result *res = NULL;
    char ms[32];
    const char *params[1] = {ms};

    if (!l->slept && batch_has(batch, l->sleep_on_id)) {
        l->slept = 1;
        snprintf(ms, sizeof(ms), "%" PRId64, l->sleep_ms);
        h->log(EXACTLY_LOG_INFO, "ledger: sleeping %s ms on purpose", ms);
        return h->exec(txn, "SELECT pg_sleep($1::double precision / 1000)", 1,
                       params);
    }
    if (batch_has(batch, l->swallow_on_id)) {
        /* Wrong on purpose: the error is dropped and apply() succeeds. */
        if (h->query(txn, "SELECT 1 / 0", 0, NULL, &res) == EXACTLY_OK)
            h->result_free(res);
    }
    return EXACTLY_OK;
}

/* One event per message of the records kept (not failed), in the batch's
 * transaction. */
static exactly_err emit_events(ledger *l, exactly_txn *txn,
                               const exactly_batch *batch)
{
    static const char *const headers[] = {"source", "ledger", NULL};
    const exactly_host *h = l->host;
    char key[512];
    size_t i, m;
    exactly_err rc;

    for (i = 0; i < batch->n_records; i++) {
        const exactly_record *r = &batch->records[i];

        if (is_listed(l->fail_on_ids, l->n_fail_on_ids, r->id) ||
            is_listed(l->fail_twice_on_ids, l->n_fail_twice_on_ids, r->id))
            continue;
        for (m = 0; m < r->n_messages; m++) {
            int n = snprintf(key, sizeof(key), "%s/%" PRId32 "/%" PRId64,
                             batch->topic, batch->partition,
                             r->messages[m].offset);
            rc = h->emit(txn, l->emit_topic, key, (size_t)n, r->id,
                         strlen(r->id), headers);
            if (rc != EXACTLY_OK) {
                h->set_error(txn, "ledger: could not queue an emit");
                return rc;
            }
        }
    }
    return EXACTLY_OK;
}

/* Whether the batch's id_values (ABI 1.3), when given, are its records'
 * IDs: each the value of the canonical decimal text. Fails the batch
 * fatally (an ID handed wrong is no data error) when one is not, or when
 * require_id_values is set and a bigint batch has none. */
static exactly_err check_id_values(const ledger *l, exactly_txn *txn,
                                   const exactly_batch *batch)
{
    const exactly_host *h = l->host;
    char text[32];
    size_t i;

    if (!batch->id_values) {
        if (l->require_id_values && strcmp(batch->id_type, "bigint") == 0 &&
            batch->n_records > 0) {
            h->set_error(txn, "ledger: a bigint batch of %zu records came "
                         "without id_values", batch->n_records);
            return EXACTLY_EFATAL;
        }
        return EXACTLY_OK;
    }
    for (i = 0; i < batch->n_records; i++) {
        snprintf(text, sizeof(text), "%" PRId64, batch->id_values[i]);
        if (strcmp(text, batch->records[i].id) != 0) {
            h->set_error(txn, "ledger: record %zu has ID '%s' but id_values "
                         "says %s", i, batch->records[i].id, text);
            return EXACTLY_EFATAL;
        }
    }
    return EXACTLY_OK;
}

static exactly_err ledger_apply(void *state, exactly_txn *txn,
                                const exactly_batch *batch)
{
    ledger *l = state;
    const exactly_host *h = l->host;
    const char *params[5];
    const char *retry_id;
    char partition[16], num[32];
    size_t i, m, kept = 0;
    exactly_err rc;

    stall(l->stall_ms);
    if ((rc = check_id_values(l, txn, batch)) != EXACTLY_OK)
        return rc;
    if ((retry_id = retry_due(l, batch)) != NULL) {
        h->set_error(txn, "ledger: asking to retry the batch holding %s on "
                     "purpose", retry_id);
        return EXACTLY_ERETRY;
    }
    exactly_sqlbuf_reset(&l->offsets);
    exactly_sqlbuf_reset(&l->entities);
    exactly_sqlbuf_reset(&l->ids);
    exactly_sqlbuf_reset(&l->counts);
    exactly_sqlbuf_puts(&l->offsets, "{");
    exactly_sqlbuf_puts(&l->entities, "{");
    exactly_sqlbuf_puts(&l->ids, "{");
    exactly_sqlbuf_puts(&l->counts, "{");

    if (batch_has(batch, l->return_on_id) &&
        (l->return_times == 0 || l->returned < l->return_times)) {
        l->returned++;
        h->set_error(txn, "ledger: returning %" PRId64 " on purpose",
                     l->return_code);
        return (exactly_err)l->return_code;
    }
    for (i = 0; i < batch->n_records; i++) {
        const exactly_record *r = &batch->records[i];

        if (l->crash_on_id && strcmp(r->id, l->crash_on_id) == 0) {
            h->log(EXACTLY_LOG_ERROR,
                   "ledger: record %s matches crash_on_id, aborting on "
                   "purpose",
                   r->id);
            abort();
        }
        /* Nothing may be written for a failed record, so decide before
         * adding it to any parameter. */
        if (is_listed(l->fail_on_ids, l->n_fail_on_ids, r->id)) {
            h->fail_record(txn, i, "ledger: id listed in fail_on_ids");
            continue;
        }
        if (is_listed(l->fail_twice_on_ids, l->n_fail_twice_on_ids, r->id)) {
            if (HOST_HAS(h, fail_recordf))
                h->fail_recordf(txn, i, "ledger: failed %s", "once");
            else
                h->fail_record(txn, i, "ledger: failed once");
            h->fail_record(txn, i, "ledger: failed twice");
            continue;
        }
        for (m = 0; m < r->n_messages; m++) {
            snprintf(num, sizeof(num), "%" PRId64, r->messages[m].offset);
            exactly_sqlbuf_elem(&l->offsets, num);
            exactly_sqlbuf_elem(&l->entities, r->id);
        }
        snprintf(num, sizeof(num), "%zu", r->n_messages);
        exactly_sqlbuf_elem(&l->ids, r->id);
        exactly_sqlbuf_elem(&l->counts, num);
        kept++;
    }
    if (kept == 0)
        return EXACTLY_OK;

    exactly_sqlbuf_puts(&l->offsets, "}");
    exactly_sqlbuf_puts(&l->entities, "}");
    exactly_sqlbuf_puts(&l->ids, "}");
    exactly_sqlbuf_puts(&l->counts, "}");
    if (l->offsets.oom || l->entities.oom || l->ids.oom || l->counts.oom) {
        h->set_error(txn, "ledger: out of memory");
        return EXACTLY_ENOMEM;
    }

    snprintf(partition, sizeof(partition), "%" PRId32, batch->partition);
    params[0] = batch->topic;
    params[1] = partition;
    params[2] = l->offsets.s;
    params[3] = l->entities.s;
    if (batch->reprocess_run != 0) {
        snprintf(num, sizeof(num), "%" PRId64, batch->reprocess_run);
        params[4] = num;
        rc = h->exec(txn, l->reprocess_sql, 5, params);
        if (rc != EXACTLY_OK)
            h->set_error(txn, "ledger: could not queue the reprocess insert");
        return rc;
    }
    rc = h->exec(txn, l->ledger_sql, 4, params);
    if (rc != EXACTLY_OK) {
        h->set_error(txn, "ledger: could not queue the ledger insert");
        return rc;
    }
    params[0] = l->ids.s;
    params[1] = l->counts.s;
    rc = h->exec(txn, l->counters_sql, 2, params);
    if (rc != EXACTLY_OK) {
        h->set_error(txn, "ledger: could not queue the counters upsert");
        return rc;
    }
    if (l->emit_topic && (rc = emit_events(l, txn, batch)) != EXACTLY_OK)
        return rc;
    return misbehave_after(l, txn, batch);
}

static const exactly_handler ledger_handler = {
    EXACTLY_HANDLER_HEADER,
    .name = "ledger",
    .description = "records every applied message (exactly-once detector "
                   "for the crash tests) and counts messages per ID",
    .options = ledger_options,
    .n_options = sizeof(ledger_options) / sizeof(ledger_options[0]),
    .skips_lookup = 0,
    .open = ledger_open,
    .apply = ledger_apply,
    .close = ledger_close,
};

EXACTLY_HANDLER(ledger_handler)
