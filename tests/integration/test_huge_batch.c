/*
 * 100,000 distinct IDs in one batch, the largest batch.max_messages allows,
 * through the ledger plugin and through the built-in upsert.
 *
 * 100,000 messages, each naming a different account (1..100000, in a
 * scrambled order), wait in a one-partition topic (a batch never spans
 * partitions) before any worker starts. Each pipeline then runs as
 * `exactly worker --exit-idle` with batch.max_messages 100000 and a
 * max_wait_ms far longer than fetching the topic takes, so only a full
 * buffer ends the batch:
 *
 *   ledger    the ledger plugin (runtime lookup, then the handler's
 *             unnest() inserts); the exactly-once check must hold;
 *   upsert    the built-in upsert fused with its lookup (config/
 *             projection.yaml's shape: account_view from accounts); the
 *             view must equal accounts for all 100,000 IDs, the stored
 *             offset must be at the end, nothing dead-lettered.
 *
 * That the 100,000 messages really went as one batch is checked twice:
 * the worker's summary says consumed 100000 in 1 committed batch, and all
 * 100,000 rows it wrote carry one xmin (one transaction, and no
 * subtransaction: a bisect would have given rows xmins of their own).
 *
 * Each worker's peak resident set (ru_maxrss of the reaped process) is
 * printed, and only bounded by 1 GiB, to catch a blow-up (a copy per
 * message, a quadratic buffer) rather than to measure. In the sanitized
 * build it includes AddressSanitizer's shadow memory and quarantine.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "scale.h"
#include "testkit.h"

#define TOPIC "huge_batch"
#define N_IDS 100000
/* The upper bound of batch.max_messages. */
#define BATCH_MAX 100000
/* Far longer than fetching 100,000 small messages from the mock takes
 * (about a second): a partial first batch would mean the buffer stopped
 * filling, and shows as a second committed batch. */
#define BATCH_WAIT_MS 90000
#define EXIT_IDLE_MS 3000
#define WORKER_TIMEOUT_MS 150000
/* Not a target: a bound that only a blow-up crosses. */
#define PEAK_RSS_BOUND_KIB (1024 * 1024)
#define UPSERT_PIPELINE "projection"

/* The built-in upsert in config/projection.yaml's shape, one batch of
 * BATCH_MAX. */
static void write_upsert_config(const char *path, const char *bootstraps,
                                const char *conninfo)
{
    tk_config cfg;
    tk_pipeline *pl = &cfg.pipelines[0];

    memset(&cfg, 0, sizeof cfg);
    cfg.bootstraps = bootstraps;
    cfg.conninfo = conninfo;
    pl->name = UPSERT_PIPELINE;
    pl->topics[0] = TOPIC;
    pl->group = TOPIC "-" UPSERT_PIPELINE;
    pl->id_from = "key";
    pl->id_type = "bigint";
    pl->lookup_table = "accounts";
    pl->lookup_id_column = "id";
    pl->on_missing = "skip";
    tk_upsert_handler(pl, "account_view",
                      (const char *[]){"id", "name", "balance", NULL});
    pl->max_messages = BATCH_MAX;
    pl->max_wait_ms = BATCH_WAIT_MS;
    pl->max_wait_set = 1;
    tk_config_write(path, &cfg);
}

/* Produce N_IDS messages to the one partition, each naming another account:
 * id = (i * 7919) mod N_IDS + 1 visits every id once (7919 is prime and
 * does not divide N_IDS), in an order that is neither ascending nor
 * partial. */
static void produce_ids(const char *bootstraps)
{
    tk_msg *msgs = calloc(N_IDS, sizeof *msgs);
    char (*keys)[16] = calloc(N_IDS, sizeof *keys);
    size_t i;

    TK_CHECK(msgs && keys, "out of memory");
    for (i = 0; i < N_IDS; i++) {
        int len = snprintf(keys[i], sizeof keys[i], "%zu",
                           (i * 7919) % N_IDS + 1);
        msgs[i].partition = 0;
        msgs[i].key = keys[i];
        msgs[i].key_len = (size_t)len;
    }
    tk_produce(bootstraps, TOPIC, msgs, N_IDS);
    free(msgs);
    free(keys);
}

/* Run one worker to its idle exit; check it ended with 0 and that its
 * summary shows every message consumed in one committed batch. Returns
 * its peak RSS in KiB. */
static int64_t run_one_batch(const char *config, const char *log,
                             const char *pipeline, ledger_summary *sum)
{
    int64_t t0 = tk_now_ms(), peak;
    pid_t pid = ledger_start_worker(config, EXIT_IDLE_MS, log);
    int status, n;

    status = scale_wait_rusage(pid, WORKER_TIMEOUT_MS, &peak);
    if (status == -1) {
        tk_terminate(pid, 10000);
        ledger_log_tail(log, 40);
        tk_fail("[%s] the worker still ran after %d ms; log: %s", pipeline,
                WORKER_TIMEOUT_MS, log);
    }
    LEDGER_CHECK_LOG(status == 0, log, "[%s] worker exit status %d; log: %s",
                     pipeline, status, log);
    n = tk_summaries(log, pipeline, sum, 1);
    LEDGER_CHECK_LOG(n == 1, log, "[%s] %d summary lines, expected 1; "
                     "log: %s", pipeline, n, log);
    tk_note("[%s] consumed %" PRId64 ", applied %" PRId64 ", batches "
            "committed %" PRId64 ", rolled back %" PRId64 ", retries %"
            PRId64 "; worker ran %.1f s, peak RSS %" PRId64 " MiB%s",
            pipeline, sum->consumed, sum->applied, sum->committed,
            sum->rolled_back, sum->retries,
            (double)(tk_now_ms() - t0) / 1000.0, peak / 1024,
            SCALE_SANITIZED ? " (AddressSanitizer build)" : "");
    TK_CHECK_EQ_INT64(sum->consumed, N_IDS, "messages consumed");
    TK_CHECK_EQ_INT64(sum->committed, 1, "batches committed for all of "
                                         "them");
    TK_CHECK_EQ_INT64(sum->dead_lettered, 0, "messages dead-lettered");
    TK_CHECK(peak > 0 && peak < PEAK_RSS_BOUND_KIB,
             "[%s] the worker's peak RSS was %" PRId64 " KiB, beyond the %d "
             "KiB that only a blow-up reaches", pipeline, peak,
             PEAK_RSS_BOUND_KIB);
    return peak;
}

/* The rows of table were written by one transaction and no
 * subtransaction: they all carry one xmin. */
static void check_one_xmin(PGconn *db, const char *table)
{
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(DISTINCT xmin::text) "
                                       "FROM %s", table),
                      1, "distinct xmin among the rows written (1: one "
                         "transaction wrote them all)");
}

int main(void)
{
    char dir[256], ledger_cfg[512], upsert_cfg[512], log[512];
    char conninfo[1024];
    int64_t *counts = calloc(N_IDS, sizeof *counts);
    int64_t t0 = tk_now_ms(), hw;
    ledger_summary sum;
    ledger_config cfg;
    const char *bootstraps;
    PGconn *db;
    tk_mock *m;
    size_t i;

    TK_CHECK(counts != NULL, "out of memory");
    m = tk_mock_start(1);
    bootstraps = tk_mock_bootstraps(m);
    tk_mock_create_topic(m, TOPIC, 1);
    tk_pg_create_db("huge_batch", conninfo, sizeof conninfo);
    ledger_setup_db(conninfo);
    db = tk_pg_connect(conninfo);
    tk_sql(db, "INSERT INTO accounts SELECT g, 'account ' || g, g * 10 "
               "FROM generate_series(%d, %d) g", LEDGER_ACCOUNTS + 1, N_IDS);
    tk_sql(db, "CREATE TABLE account_view (id bigint PRIMARY KEY, name text, "
               "balance numeric)");
    tk_tmpdir("exactly-huge-batch", dir, sizeof dir);
    tk_note("logs in %s", dir);
    snprintf(ledger_cfg, sizeof ledger_cfg, "%s/ledger.yaml", dir);
    snprintf(upsert_cfg, sizeof upsert_cfg, "%s/upsert.yaml", dir);

    memset(&cfg, 0, sizeof cfg);
    cfg.bootstraps = bootstraps;
    cfg.conninfo = conninfo;
    cfg.topic = TOPIC;
    cfg.group = TOPIC;
    cfg.max_messages = BATCH_MAX;
    cfg.max_wait_ms = BATCH_WAIT_MS;
    ledger_write_config(ledger_cfg, &cfg);
    write_upsert_config(upsert_cfg, bootstraps, conninfo);
    snprintf(log, sizeof log, "%s/migrate.log", dir);
    ledger_migrate(ledger_cfg, log);

    produce_ids(bootstraps);
    for (i = 0; i < N_IDS; i++)
        counts[i] = 1;
    hw = tk_high_watermark(bootstraps, TOPIC, 0);
    TK_CHECK_EQ_INT64(hw, N_IDS, "messages in the topic");
    tk_note("%d distinct IDs produced to one partition at %.1f s", N_IDS,
            (double)(tk_now_ms() - t0) / 1000.0);

    /* The ledger plugin. */
    snprintf(log, sizeof log, "%s/ledger.log", dir);
    run_one_batch(ledger_cfg, log, LEDGER_PIPELINE, &sum);
    TK_CHECK_EQ_INT64(sum.applied, N_IDS, "[ledger] messages applied");
    check_one_xmin(db, "ledger");
    ledger_check_exactly_once(db, bootstraps, TOPIC, 1, N_IDS, counts,
                              N_IDS);

    /* The built-in upsert, fused with its lookup. */
    snprintf(log, sizeof log, "%s/upsert.log", dir);
    run_one_batch(upsert_cfg, log, UPSERT_PIPELINE, &sum);
    LEDGER_CHECK_LOG(tk_file_contains(log, "fused=1"), log,
                     "[upsert] the worker does not say fused=1; log: %s",
                     log);
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM account_view"),
                      N_IDS, "[upsert] rows in account_view");
    TK_CHECK_EQ_INT64(
        tk_sql_int64(db, "SELECT count(*) FROM account_view v FULL JOIN "
                         "accounts a ON a.id = v.id WHERE a.id <= %d AND "
                         "(v.id IS NULL OR a.id IS NULL OR (v.name, "
                         "v.balance) IS DISTINCT FROM (a.name, a.balance))",
                     N_IDS),
        0, "[upsert] rows of account_view that differ from accounts");
    check_one_xmin(db, "account_view");
    TK_CHECK_EQ_INT64(
        tk_sql_int64(db, "SELECT next_offset FROM exactly.offsets WHERE "
                         "pipeline = '" UPSERT_PIPELINE "' AND topic = '"
                         TOPIC "' AND partition = 0"),
        hw, "[upsert] stored next_offset (the partition's end)");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                       "exactly.dead_letters"),
                      0, "dead letters");
    tk_note("[upsert] account_view equals accounts for all %d IDs, written "
            "by one transaction; stored offset %" PRId64 " = high watermark",
            N_IDS, hw);
    tk_note("done at %.1f s", (double)(tk_now_ms() - t0) / 1000.0);

    PQfinish(db);
    tk_mock_stop(m);
    free(counts);
    ledger_cleanup_dir(dir);
    return 0;
}
