/*
 * `exactly reprocess` (DESIGN 5): apply a pipeline's lookup and handler
 * again to an offset range of one partition, in batch transactions, with
 * its own position in exactly.reprocess_runs, never touching the
 * pipeline's stored offsets.
 *
 * A ledger pipeline first consumes a 4-partition topic to the end with
 * `exactly worker --exit-idle`. In a reprocess run the ledger handler
 * writes `ledger_reprocess(run, topic, partition, offset, entity_id)`,
 * whose primary key (run, topic, partition, offset) has no ON CONFLICT,
 * and leaves `ledger` and `ledger_counters` alone; so one row per offset
 * of the range proves each message was applied once in that run, and the
 * entity of each row must equal the live ledger's for the same offset.
 *
 *   range     a run over the tail of partition 1 (up to its last offset):
 *             one ledger_reprocess row per offset, the run row done with
 *             applied = range size and next_offset = to + 1, and
 *             exactly.offsets, ledger and ledger_counters unchanged (whole
 *             rows compared), no dead letter.
 *   refusals  --from > --to, --to at the high watermark, --from below the
 *             low watermark (a topic the mock has trimmed, so the low
 *             watermark is not 0): exit 2, a message with both watermarks,
 *             no run row; --dry-run at exactly the low watermark passes.
 *   dry-run   exit 0, the plan on stdout, no run row, nothing written.
 *   resume    a run limited by --rate, interrupted with SIGINT: exit 1,
 *             status interrupted, rows exactly from .. next_offset - 1 and
 *             the rate kept; --resume finishes it (exit 0, rows exactly
 *             from .. to once each, applied = range size, epoch 2); a
 *             second --resume of the finished run is refused (exit 2).
 *   back      the run's row moves back while the run goes on, as a
 *             failover to a standby that lacks the last committed batch
 *             moves it: the row, its applied count and that batch's
 *             ledger_reprocess rows go back to what they were before it,
 *             after the run had read up to the range's end. The run
 *             follows the row: exit 0, status done, next_offset = to + 1,
 *             applied = range size, rows exactly one per offset of the
 *             range (the batch lost is applied again, the rest once),
 *             and the summary says "applied 30", what the row holds.
 *   live      the built-in upsert (lookup table `accounts`, target
 *             `account_view`) while a live `exactly worker` of the same
 *             pipeline consumes a continuing stream: accounts changed
 *             before the run and never named again are brought up to date
 *             by the reprocess alone; accounts changed during the run are
 *             named again afterwards; at the end account_view equals
 *             accounts for every produced ID and the live pipeline's
 *             offsets are at the high watermarks.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "rp"
#define N_PARTITIONS 4
#define N_MESSAGES 6000 /* 1,500 per partition */
#define SEED 31
#define TRIM_TOPIC "rp_trim"
#define LIVE_TOPIC "rp_live"
#define LIVE_PIPELINE "proj"
#define LIVE_IDS 400
#define LIVE_ROUNDS 10
/* resume: slow enough that SIGINT lands mid-range. */
#define RESUME_RATE 300
#define RESUME_BATCH 50
/* back: the range 0..29 of partition 0 in batches of 20. --rate puts the
 * second batch (20..29, read with the message after the range, so the
 * run has seen the range's end) 10 / BACK_RATE s after the first: the
 * window in which the row is moved back. */
#define BACK_TO 29
#define BACK_BATCH 20
#define BACK_RATE 4

static tk_mock *g_mock;
static char g_dir[256];
static int g_logs; /* numbers the output files */

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

/* Runs `exactly reprocess -c config` with the NULL-terminated arguments
 * that follow; output (stdout and stderr) into a new file whose path is
 * written to log. Returns the pid. */
static pid_t spawn_reprocess(const char *config, char *log, size_t log_size,
                             ...)
{
    const char *args[32];
    int n = 0;
    va_list ap;
    const char *a;

    args[n++] = "reprocess";
    args[n++] = "-c";
    args[n++] = config;
    va_start(ap, log_size);
    while ((a = va_arg(ap, const char *)) != NULL && n < 31)
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    snprintf(log, log_size, "%s/reprocess-%02d.log", g_dir, ++g_logs);
    return tk_exactly_startv(log, args);
}

/* Waits for a reprocess to exit (60 s at most) and returns its status. */
static int wait_reprocess(pid_t pid, const char *log)
{
    return tk_exactly_wait(pid, 60000, log, "exactly reprocess");
}

/* md5 of a whole table, row by row as text: any change to any column of
 * any row changes it. */
static char *table_digest(PGconn *db, const char *table)
{
    return tk_sql_text(db, "SELECT md5(coalesce(string_agg(t::text, ';' "
                           "ORDER BY t::text), '')) FROM %s t",
                       table);
}

static int64_t runs(PGconn *db)
{
    return tk_sql_int64(db, "SELECT count(*) FROM exactly.reprocess_runs");
}

static int64_t run_int(PGconn *db, int64_t run, const char *column)
{
    return tk_sql_int64(db, "SELECT %s FROM exactly.reprocess_runs WHERE "
                            "id = %" PRId64, column, run);
}

static void check_run_status(PGconn *db, int64_t run, const char *want)
{
    char *status = tk_sql_text(db, "SELECT status FROM "
                                   "exactly.reprocess_runs WHERE id = %"
                                   PRId64, run);
    TK_CHECK_EQ_STR(status, want, "status of the run");
    free(status);
}

/* The ledger_reprocess rows of run are exactly one per offset from..last
 * of topic/partition, and each names the entity the live ledger recorded
 * for that offset (so the run applied the message at that offset). */
static void check_run_rows(PGconn *db, int64_t run, int partition,
                           int64_t from, int64_t last)
{
    int64_t want = last - from + 1;

    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                       "ledger_reprocess WHERE run = %"
                                       PRId64, run),
                      want, "ledger_reprocess rows of the run");
    TK_CHECK_EQ_INT64(
        tk_sql_int64(db, "SELECT count(*) FROM generate_series(%" PRId64
                         ", %" PRId64 ") o WHERE NOT EXISTS (SELECT 1 FROM "
                         "ledger_reprocess r WHERE r.run = %" PRId64 " AND "
                         "r.topic = '" TOPIC "' AND r.partition = %d AND "
                         "r.\"offset\" = o)",
                     from, last, run, partition),
        0, "offsets of the range without a ledger_reprocess row");
    TK_CHECK_EQ_INT64(
        tk_sql_int64(db, "SELECT count(*) FROM ledger_reprocess r LEFT JOIN "
                         "ledger l USING (topic, partition, \"offset\") "
                         "WHERE r.run = %" PRId64 " AND l.entity_id IS "
                         "DISTINCT FROM r.entity_id",
                     run),
        0, "ledger_reprocess rows whose entity differs from the live "
           "ledger's at that offset");
}

static void check_no_dead_letters(PGconn *db)
{
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                       "exactly.dead_letters"),
                      0, "rows in exactly.dead_letters");
}

static void watermarks(const char *topic, int32_t partition, int64_t *lo,
                       int64_t *hi)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[512];
    rd_kafka_resp_err_t err;
    rd_kafka_t *rk;

    TK_CHECK(rd_kafka_conf_set(conf, "bootstrap.servers",
                               tk_mock_bootstraps(g_mock), errstr,
                               sizeof errstr) == RD_KAFKA_CONF_OK,
             "%s", errstr);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    TK_CHECK(rk != NULL, "rd_kafka_new: %s", errstr);
    err = rd_kafka_query_watermark_offsets(rk, topic, partition, lo, hi,
                                           10000);
    TK_CHECK(err == RD_KAFKA_RESP_ERR_NO_ERROR, "watermarks of %s [%d]: %s",
             topic, (int)partition, rd_kafka_err2str(err));
    rd_kafka_destroy(rk);
}

/* A refused reprocess: exit 2, the reason and both watermarks in its
 * output, nothing recorded. */
static void check_refused(const char *log, int st,
                          const char *reason, int64_t lo, int64_t hi)
{
    char want_lo[64], want_hi[64];
    char *text = tk_read_file(log);

    snprintf(want_lo, sizeof want_lo, " low_watermark=%" PRId64, lo);
    snprintf(want_hi, sizeof want_hi, " high_watermark=%" PRId64, hi);
    TK_CHECK(st == 2, "refusal (%s): exit %d, expected 2; output:\n%s",
             reason, st, text ? text : "");
    TK_CHECK(text && strstr(text, reason) && strstr(text, want_lo) &&
                 strstr(text, want_hi) && strstr(text, "level=error"),
             "refusal (%s): the error does not say \"%s\", \"%s\" and "
             "\"%s\"; output:\n%s",
             reason, reason, want_lo, want_hi, text ? text : "");
    free(text);
}

/* ------------------------------------------------------------------ */
/* The ledger scenarios                                                */
/* ------------------------------------------------------------------ */

typedef struct ledger_env {
    char conninfo[1024];
    char config[512];
    char trim_config[512];
    int64_t hw[N_PARTITIONS];
    PGconn *db;
    char *offsets, *ledger, *counters; /* digests after the live run */
} ledger_env;

static void ledger_prepare(ledger_env *e)
{
    static const char *const kafka[] = {"session.timeout.ms", "6000", NULL};
    int64_t counts[LEDGER_ACCOUNTS];
    char log[512];
    ledger_config c;
    ledger_summary sum;
    int st;

    tk_mock_create_topic(g_mock, TOPIC, N_PARTITIONS);
    tk_pg_create_db("reprocess", e->conninfo, sizeof e->conninfo);
    ledger_setup_db(e->conninfo);
    e->db = tk_pg_connect(e->conninfo);
    /* DDL of plugins/README.md, section "ledger". */
    ledger_create_reprocess_table(e->db);
    memset(&c, 0, sizeof c);
    c.bootstraps = tk_mock_bootstraps(g_mock);
    c.conninfo = e->conninfo;
    c.topic = TOPIC;
    c.group = "rp";
    c.max_messages = 200;
    c.max_wait_ms = 50;
    c.kafka = kafka;
    /* Reprocess batches carry their IDs' values too (ABI 1.3). */
    c.handler_options_yaml = "        require_id_values: true\n";
    snprintf(e->config, sizeof e->config, "%s/ledger.yaml", g_dir);
    ledger_write_config(e->config, &c);
    c.topic = TRIM_TOPIC;
    snprintf(e->trim_config, sizeof e->trim_config, "%s/trim.yaml", g_dir);
    ledger_write_config(e->trim_config, &c);
    snprintf(log, sizeof log, "%s/migrate.log", g_dir);
    tk_migrate(e->config, log);

    /* The live pipeline consumes everything once. */
    tk_produce_ids(tk_mock_bootstraps(g_mock), TOPIC, N_MESSAGES,
                   LEDGER_ACCOUNTS, N_PARTITIONS, SEED, counts);
    snprintf(log, sizeof log, "%s/live-ledger.log", g_dir);
    st = tk_worker_run(e->config, 3000, 120000, log, NULL);
    LEDGER_CHECK_LOG(st == 0, log, "live ledger worker exited %d; log: %s",
                     st, log);
    LEDGER_CHECK_LOG(ledger_read_summary(log, &sum) &&
                         sum.applied == N_MESSAGES,
                     log, "the live worker applied %" PRId64 " of %d",
                     sum.applied, N_MESSAGES);
    ledger_check_exactly_once(e->db, tk_mock_bootstraps(g_mock), TOPIC,
                              N_PARTITIONS, N_MESSAGES, counts,
                              LEDGER_ACCOUNTS);
    ledger_high_watermarks(tk_mock_bootstraps(g_mock), TOPIC, N_PARTITIONS,
                           e->hw);
    e->offsets = table_digest(e->db, "exactly.offsets");
    e->ledger = table_digest(e->db, "ledger");
    e->counters = table_digest(e->db, "ledger_counters");
}

/* The live pipeline's state is as the live worker left it. */
static void check_pipeline_untouched(const ledger_env *e, const char *after)
{
    char *o = table_digest(e->db, "exactly.offsets");
    char *l = table_digest(e->db, "ledger");
    char *c = table_digest(e->db, "ledger_counters");

    TK_CHECK(strcmp(o, e->offsets) == 0, "exactly.offsets changed (%s)",
             after);
    TK_CHECK(strcmp(l, e->ledger) == 0, "ledger changed (%s)", after);
    TK_CHECK(strcmp(c, e->counters) == 0, "ledger_counters changed (%s)",
             after);
    free(o);
    free(l);
    free(c);
}

static void scenario_range(ledger_env *e)
{
    char log[512], part[16], from[24], to[24], want[128];
    int64_t t0 = tk_now_ms(), run, a = 137, b = e->hw[1] - 1, n = b - a + 1;
    double secs;
    int st;

    snprintf(part, sizeof part, "1");
    snprintf(from, sizeof from, "%" PRId64, a);
    snprintf(to, sizeof to, "%" PRId64, b);
    st = wait_reprocess(spawn_reprocess(e->config, log, sizeof log,
                                        "--pipeline", LEDGER_PIPELINE,
                                        "--topic", TOPIC, "--partition",
                                        part, "--from", from, "--to", to,
                                        NULL),
                        log);
    secs = (double)(tk_now_ms() - t0) / 1000.0;
    LEDGER_CHECK_LOG(st == 0, log, "reprocess exited %d; log: %s", st, log);
    TK_CHECK_EQ_INT64(runs(e->db), 1, "runs recorded");
    run = tk_sql_int64(e->db, "SELECT id FROM exactly.reprocess_runs");
    snprintf(want, sizeof want, "run %" PRId64 ": done; applied %" PRId64
             " messages", run, n);
    LEDGER_CHECK_LOG(tk_file_contains(log, want), log,
                     "no \"%s\" in the output", want);

    check_run_status(e->db, run, "done");
    TK_CHECK_EQ_INT64(run_int(e->db, run, "partition"), 1, "run partition");
    TK_CHECK_EQ_INT64(run_int(e->db, run, "from_offset"), a, "from_offset");
    TK_CHECK_EQ_INT64(run_int(e->db, run, "to_offset"), b, "to_offset");
    TK_CHECK_EQ_INT64(run_int(e->db, run, "next_offset"), b + 1,
                      "next_offset of the finished run (to + 1)");
    TK_CHECK_EQ_INT64(run_int(e->db, run, "applied"), n, "applied");
    TK_CHECK_EQ_INT64(run_int(e->db, run, "owner_epoch"), 1, "owner_epoch");
    TK_CHECK_EQ_INT64(tk_sql_int64(e->db, "SELECT count(*) FROM "
                                          "exactly.reprocess_runs WHERE id = "
                                          "%" PRId64 " AND pipeline = '"
                                          LEDGER_PIPELINE "' AND topic = '"
                                          TOPIC "' AND ended_at >= "
                                          "started_at AND owner LIKE "
                                          "'%%:reprocess'",
                                   run),
                      1, "run row with pipeline, topic, owner and end time");
    check_run_rows(e->db, run, 1, a, b);
    check_pipeline_untouched(e, "after a reprocess run");
    check_no_dead_letters(e->db);
    tk_note("[range] run %" PRId64 ": offsets %" PRId64 "..%" PRId64
            " of partition 1 (its last offset included), %" PRId64
            " rows, one per offset, same entities as the live ledger; "
            "offsets, ledger and counters unchanged; %.1f s (%.0f msg/s "
            "with start-up)",
            run, a, b, n, secs, (double)n / secs);
}

static void scenario_refusals(ledger_env *e)
{
    char log[512], from[24], to[24];
    int64_t runs0 = runs(e->db), lo, hi, hw1 = e->hw[1];
    int64_t rows0 = tk_sql_int64(e->db, "SELECT count(*) FROM "
                                        "ledger_reprocess");
    tk_msg msgs[48];
    static char big[200 * 1024];
    int i, st;

    /* Inverted. */
    st = wait_reprocess(spawn_reprocess(e->config, log, sizeof log,
                                        "--pipeline", LEDGER_PIPELINE,
                                        "--topic", TOPIC, "--partition", "1",
                                        "--from", "900", "--to", "899", NULL),
                        log);
    check_refused(log, st, "inverted", 0, hw1);

    /* --to at the high watermark: one past the last offset. */
    snprintf(to, sizeof to, "%" PRId64, hw1);
    st = wait_reprocess(spawn_reprocess(e->config, log, sizeof log,
                                        "--pipeline", LEDGER_PIPELINE,
                                        "--topic", TOPIC, "--partition", "1",
                                        "--from", "10", "--to", to, NULL),
                        log);
    check_refused(log, st, "outside the partition", 0, hw1);

    /* --from below the low watermark. The mock keeps about 5 MiB per
     * partition and drops older message sets: 48 messages of 200 KiB
     * move the low watermark up. */
    tk_mock_create_topic(g_mock, TRIM_TOPIC, 1);
    memset(big, 'x', sizeof big);
    memset(msgs, 0, sizeof msgs);
    for (i = 0; i < 48; i++) {
        msgs[i].partition = 0;
        msgs[i].key = "1";
        msgs[i].key_len = 1;
        msgs[i].value = big;
        msgs[i].value_len = sizeof big;
    }
    tk_produce(tk_mock_bootstraps(g_mock), TRIM_TOPIC, msgs, 48);
    watermarks(TRIM_TOPIC, 0, &lo, &hi);
    TK_CHECK(lo > 0 && hi == 48, TRIM_TOPIC " [0] has watermarks %" PRId64
             "..%" PRId64 "; the test needs the mock to have trimmed it",
             lo, hi);
    snprintf(from, sizeof from, "%" PRId64, lo - 1);
    snprintf(to, sizeof to, "%" PRId64, hi - 1);
    st = wait_reprocess(spawn_reprocess(e->trim_config, log, sizeof log,
                                        "--pipeline", LEDGER_PIPELINE,
                                        "--topic", TRIM_TOPIC, "--partition",
                                        "0", "--from", from, "--to", to,
                                        NULL),
                        log);
    check_refused(log, st, "outside the partition", lo, hi);
    /* ... and the low watermark itself is inside. */
    snprintf(from, sizeof from, "%" PRId64, lo);
    st = wait_reprocess(spawn_reprocess(e->trim_config, log, sizeof log,
                                        "--pipeline", LEDGER_PIPELINE,
                                        "--topic", TRIM_TOPIC, "--partition",
                                        "0", "--from", from, "--to", to,
                                        "--dry-run", NULL),
                        log);
    LEDGER_CHECK_LOG(st == 0, log, "a dry run from the low watermark %" PRId64
                     " exited %d; log: %s", lo, st, log);

    TK_CHECK_EQ_INT64(runs(e->db), runs0, "runs recorded by refused runs");
    TK_CHECK_EQ_INT64(tk_sql_int64(e->db, "SELECT count(*) FROM "
                                          "ledger_reprocess"),
                      rows0, "ledger_reprocess rows after refused runs");
    check_pipeline_untouched(e, "after refused runs");
    tk_note("[refusals] inverted, --to = high watermark %" PRId64 ", --from "
            "= low watermark - 1 (%s [0] holds %" PRId64 "..%" PRId64
            "): exit 2 with both watermarks, nothing recorded; a dry run "
            "from the low watermark is accepted",
            hw1, TRIM_TOPIC, lo, hi - 1);
}

static void scenario_dry_run(ledger_env *e)
{
    char log[512];
    int64_t runs0 = runs(e->db);
    int64_t rows0 = tk_sql_int64(e->db, "SELECT count(*) FROM "
                                        "ledger_reprocess");
    int st;

    st = wait_reprocess(spawn_reprocess(e->config, log, sizeof log,
                                        "--pipeline", LEDGER_PIPELINE,
                                        "--topic", TOPIC, "--partition", "3",
                                        "--from", "0", "--to", "999",
                                        "--dry-run", NULL),
                        log);
    LEDGER_CHECK_LOG(st == 0, log, "--dry-run exited %d; log: %s", st, log);
    LEDGER_CHECK_LOG(tk_file_contains(log, "dry run: would apply handler") &&
                         tk_file_contains(log, "offsets 0..999 (1000 "
                                               "offsets) of " TOPIC " [3]"),
                     log, "the plan is not on the output; log: %s", log);
    TK_CHECK_EQ_INT64(runs(e->db), runs0, "runs recorded by a dry run");
    TK_CHECK_EQ_INT64(tk_sql_int64(e->db, "SELECT count(*) FROM "
                                          "ledger_reprocess"),
                      rows0, "ledger_reprocess rows after a dry run");
    check_pipeline_untouched(e, "after a dry run");
    tk_note("[dry-run] exit 0, plan printed, nothing recorded");
}

static void scenario_resume(ledger_env *e)
{
    char log[512], log2[512], to[24], rate[16], batch[16], id[24], want[64];
    int64_t a = 0, b = e->hw[2] - 1, t0 = tk_now_ms(), t_int, run = 0, next;
    int64_t runs0 = runs(e->db);
    double secs;
    pid_t pid;
    int st;

    snprintf(to, sizeof to, "%" PRId64, b);
    snprintf(rate, sizeof rate, "%d", RESUME_RATE);
    snprintf(batch, sizeof batch, "%d", RESUME_BATCH);
    pid = spawn_reprocess(e->config, log, sizeof log, "--pipeline",
                          LEDGER_PIPELINE, "--topic", TOPIC, "--partition",
                          "2", "--from", "0", "--to", to, "--rate", rate,
                          "--batch", batch, NULL);
    /* Progress first, then about 2 s of the run. */
    for (;;) {
        LEDGER_CHECK_LOG(tk_wait(pid, 0) == -1 && tk_now_ms() - t0 < 30000,
                         log, "the run made no progress in 30 s (or "
                         "exited); log: %s", log);
        if (runs(e->db) > runs0) {
            run = tk_sql_int64(e->db, "SELECT max(id) FROM "
                                      "exactly.reprocess_runs");
            if (run_int(e->db, run, "next_offset") > a)
                break;
        }
        tk_sleep_ms(20);
    }
    tk_sleep_ms(2000);
    check_run_status(e->db, run, "running");
    t_int = tk_now_ms();
    TK_CHECK_EQ_INT64(tk_kill(pid, SIGINT), 0, "SIGINT of the run");
    st = wait_reprocess(pid, log);
    secs = (double)(t_int - t0) / 1000.0;
    LEDGER_CHECK_LOG(st == 1, log, "interrupted reprocess exited %d, "
                     "expected 1; log: %s", st, log);
    check_run_status(e->db, run, "interrupted");
    next = run_int(e->db, run, "next_offset");
    TK_CHECK(next > a && next <= b, "interrupted at next_offset %" PRId64
             ", expected inside %" PRId64 "..%" PRId64, next, a, b);
    TK_CHECK_EQ_INT64(run_int(e->db, run, "applied"), next - a,
                      "applied of the interrupted run");
    TK_CHECK_EQ_INT64(tk_sql_int64(e->db, "SELECT count(*) FROM "
                                          "exactly.reprocess_runs WHERE id = "
                                          "%" PRId64 " AND ended_at IS NOT "
                                          "NULL", run),
                      1, "end time of the interrupted run");
    /* What committed is a prefix of the range, row for row. */
    check_run_rows(e->db, run, 2, a, next - 1);
    /* --rate: the whole run so far at most RESUME_RATE a second, give or
     * take the first batch (elapsed time counted from the spawn, so
     * generous). */
    TK_CHECK(next - a <= (int64_t)(RESUME_RATE * secs) + RESUME_BATCH,
             "%" PRId64 " messages in %.1f s: faster than --rate %d",
             next - a, secs, RESUME_RATE);
    snprintf(id, sizeof id, "%" PRId64, run);
    snprintf(want, sizeof want, "--resume %" PRId64, run);
    LEDGER_CHECK_LOG(tk_file_contains(log, want) &&
                         tk_file_contains(log, "interrupted"),
                     log, "the output does not say how to resume; log: %s",
                     log);
    tk_note("[resume] run %" PRId64 " interrupted after %.1f s at offset %"
            PRId64 " of %" PRId64 "..%" PRId64 " (%.0f msg/s, --rate %d)",
            run, secs, next, a, b, (double)(next - a) / secs, RESUME_RATE);

    st = wait_reprocess(spawn_reprocess(e->config, log2, sizeof log2,
                                        "--pipeline", LEDGER_PIPELINE,
                                        "--resume", id, NULL),
                        log2);
    LEDGER_CHECK_LOG(st == 0, log2, "--resume exited %d; log: %s", st, log2);
    check_run_status(e->db, run, "done");
    TK_CHECK_EQ_INT64(run_int(e->db, run, "next_offset"), b + 1,
                      "next_offset of the resumed run");
    TK_CHECK_EQ_INT64(run_int(e->db, run, "applied"), b - a + 1,
                      "applied of the resumed run (each message once)");
    TK_CHECK_EQ_INT64(run_int(e->db, run, "owner_epoch"), 2,
                      "owner_epoch after one resume");
    check_run_rows(e->db, run, 2, a, b);
    TK_CHECK_EQ_INT64(runs(e->db), runs0 + 1, "runs (resume adds none)");

    /* A finished run cannot be resumed. */
    st = wait_reprocess(spawn_reprocess(e->config, log2, sizeof log2,
                                        "--pipeline", LEDGER_PIPELINE,
                                        "--resume", id, NULL),
                        log2);
    LEDGER_CHECK_LOG(st == 2, log2, "--resume of a finished run exited %d, "
                     "expected 2; log: %s", st, log2);
    TK_CHECK_EQ_INT64(run_int(e->db, run, "owner_epoch"), 2,
                      "owner_epoch after a refused resume");
    check_run_status(e->db, run, "done");
    check_pipeline_untouched(e, "after an interrupted and resumed run");
    check_no_dead_letters(e->db);
    tk_note("[resume] --resume finished run %" PRId64 ": %" PRId64 " rows, "
            "offsets %" PRId64 "..%" PRId64 " once each; a second --resume "
            "exits 2; %.1f s in all",
            run, b - a + 1, a, b, (double)(tk_now_ms() - t0) / 1000.0);
}

static void scenario_back(ledger_env *e)
{
    char log[512], to[24], rate[16], batch[16], want[64], lost[32];
    int64_t runs0 = runs(e->db), t0 = tk_now_ms(), run, next;
    char *moved;
    pid_t pid;
    int st;

    snprintf(to, sizeof to, "%d", BACK_TO);
    snprintf(rate, sizeof rate, "%d", BACK_RATE);
    snprintf(batch, sizeof batch, "%d", BACK_BATCH);
    /* The row itself and the first batch's ledger_reprocess rows. */
    snprintf(lost, sizeof lost, "1 %d", BACK_BATCH);
    pid = spawn_reprocess(e->config, log, sizeof log, "--pipeline",
                          LEDGER_PIPELINE, "--topic", TOPIC, "--partition",
                          "0", "--from", "0", "--to", to, "--rate", rate,
                          "--batch", batch, NULL);
    LEDGER_CHECK_LOG(tk_sql_wait_int64(e->db, runs0 + 1, 30000, "SELECT "
                                       "count(*) FROM exactly.reprocess_runs")
                         == runs0 + 1,
                     log, "no run row after 30 s; log: %s", log);
    run = tk_sql_int64(e->db, "SELECT max(id) FROM exactly.reprocess_runs");
    next = tk_sql_wait_int64(e->db, BACK_BATCH, 30000, "SELECT next_offset "
                             "FROM exactly.reprocess_runs WHERE id = %"
                             PRId64, run);
    LEDGER_CHECK_LOG(next == BACK_BATCH, log, "the run's next_offset was "
                     "not seen at %d in 30 s (last %" PRId64 "); log: %s",
                     BACK_BATCH, next, log);
    /* The failover: the row and the first batch's rows as they were
     * before that batch, in one statement, only if the second batch has
     * not committed yet. */
    moved = tk_sql_text(e->db,
                        "WITH m AS (UPDATE exactly.reprocess_runs SET "
                        "next_offset = 0, applied = 0 WHERE id = %" PRId64
                        " AND next_offset = %d RETURNING id), d AS (DELETE "
                        "FROM ledger_reprocess WHERE run = %" PRId64 " AND "
                        "EXISTS (SELECT 1 FROM m) RETURNING 1) SELECT "
                        "(SELECT count(*) FROM m) || ' ' || (SELECT count(*) "
                        "FROM d)",
                        run, BACK_BATCH, run);
    TK_CHECK(moved && strcmp(moved, lost) == 0,
             "moving the row back from %d to 0 changed \"%s\" (row, ledger "
             "rows), expected \"%s\": the run went on first",
             BACK_BATCH, moved ? moved : "", lost);
    free(moved);
    st = wait_reprocess(pid, log);
    LEDGER_CHECK_LOG(st == 0, log, "reprocess exited %d; log: %s", st, log);
    LEDGER_CHECK_LOG(tk_file_contains(log, "stored offset is behind; "
                                           "applying again from there"),
                     log, "the run did not see its row move back; log: %s",
                     log);
    /* The summary counts what the row holds: the batch the failover took
     * back is not counted, its second time is. */
    snprintf(want, sizeof want, "run %" PRId64 ": done; applied %d messages",
             run, BACK_TO + 1);
    LEDGER_CHECK_LOG(tk_file_contains(log, want), log,
                     "no \"%s\" in the output; log: %s", want, log);
    check_run_status(e->db, run, "done");
    check_run_rows(e->db, run, 0, 0, BACK_TO);
    TK_CHECK_EQ_INT64(run_int(e->db, run, "next_offset"), BACK_TO + 1,
                      "next_offset of the run after its row moved back");
    TK_CHECK_EQ_INT64(run_int(e->db, run, "applied"), BACK_TO + 1,
                      "applied of the run after its row moved back (each "
                      "offset of the range once since)");
    check_pipeline_untouched(e, "after a run whose row moved back");
    check_no_dead_letters(e->db);
    tk_note("[back] run %" PRId64 ": its row moved back from %d to 0 with "
            "the first batch's rows; the run followed it to the end: %d "
            "rows, one per offset of 0..%d; %.1f s",
            run, BACK_BATCH, BACK_TO + 1, BACK_TO,
            (double)(tk_now_ms() - t0) / 1000.0);
}

/* ------------------------------------------------------------------ */
/* live: reprocess beside the live pipeline, built-in upsert            */
/* ------------------------------------------------------------------ */

/* Accounts changed before the run, in partition 1's range, never named
 * again: only the reprocess can bring them into the view. */
#define PRE_SQL "id %% 4 = 1 AND id <= 97"
/* Accounts changed during the run and named again afterwards; the ones
 * = 1 mod 4 are in the reprocess range too, so both write their rows. */
#define MID_SQL "id > 100 AND id <= 400 AND id %% 5 = 0"

static int is_pre(int id) { return id % 4 == 1 && id <= 97; }
static int is_mid(int id)
{
    return id > 100 && id <= LIVE_IDS && id % 5 == 0;
}

/* Names the given IDs once each, on partition id % 4. */
static void produce_named(const int *ids, size_t n)
{
    tk_msg *msgs = calloc(n, sizeof *msgs);
    char (*keys)[12] = calloc(n, sizeof *keys);
    size_t i;

    TK_CHECK(msgs && keys, "out of memory");
    for (i = 0; i < n; i++) {
        snprintf(keys[i], sizeof keys[i], "%d", ids[i]);
        msgs[i].partition = ids[i] % N_PARTITIONS;
        msgs[i].key = keys[i];
        msgs[i].key_len = strlen(keys[i]);
    }
    tk_produce(tk_mock_bootstraps(g_mock), LIVE_TOPIC, msgs, n);
    free(msgs);
    free(keys);
}

/* The live pipeline: the built-in upsert, fused (lookup: table). */
static void write_live_config(const char *path, const char *conninfo)
{
    tk_config cfg;
    tk_pipeline *pl = &cfg.pipelines[0];

    tk_config_init(&cfg, tk_mock_bootstraps(g_mock), conninfo);
    pl->name = LIVE_PIPELINE;
    pl->topics[0] = LIVE_TOPIC;
    pl->group = LIVE_TOPIC;
    pl->id_from = "key";
    pl->id_type = "bigint";
    pl->lookup_table = "accounts";
    pl->on_missing = "skip";
    tk_upsert_handler(pl, "account_view",
                      (const char *[]){"id", "name", "balance", NULL});
    pl->max_messages = 100;
    pl->max_wait_ms = 50;
    pl->kafka[0] = (tk_prop){"session.timeout.ms", "6000"};
    tk_config_write(path, &cfg);
}

static int64_t live_stored(PGconn *db)
{
    return tk_sql_int64(db, "SELECT coalesce(sum(next_offset), 0) FROM "
                            "exactly.offsets WHERE pipeline = '"
                            LIVE_PIPELINE "'");
}

/* Waits until the live worker has stored every produced offset. */
static void wait_live_caught_up(PGconn *db, int64_t produced, pid_t w,
                                const char *log)
{
    int64_t deadline = tk_now_ms() + 60000;

    while (live_stored(db) != produced) {
        LEDGER_CHECK_LOG(tk_wait(w, 0) == -1 && tk_now_ms() < deadline, log,
                         "the live worker stored %" PRId64 " of %" PRId64
                         " offsets within 60 s (or exited); log: %s",
                         live_stored(db), produced, log);
        tk_sleep_ms(20);
    }
}

static void scenario_live(void)
{
    char conninfo[1024], config[512], wlog[512], rlog[512], log[512];
    int ids[LIVE_IDS * LIVE_ROUNDS], stream[LIVE_IDS], mid[LIVE_IDS];
    int64_t t0 = tk_now_ms(), produced = 0, run, at_start, at_end, hw;
    int64_t t_run, during = 0, n_pre, n_mid_rows;
    size_t n = 0, n_stream = 0, n_mid = 0, next = 0;
    int id, r, st, updated = 0, p;
    pid_t w, rp;
    PGconn *db;
    char *sum;

    tk_mock_create_topic(g_mock, LIVE_TOPIC, N_PARTITIONS);
    tk_pg_create_db("reprocess_live", conninfo, sizeof conninfo);
    ledger_setup_db(conninfo); /* for `accounts` (ids 1..500) */
    db = tk_pg_connect(conninfo);
    tk_sql(db, "CREATE TABLE account_view (id bigint PRIMARY KEY, name text,"
               " balance numeric)");
    snprintf(config, sizeof config, "%s/live.yaml", g_dir);
    write_live_config(config, conninfo);
    snprintf(log, sizeof log, "%s/live-migrate.log", g_dir);
    tk_migrate(config, log);

    /* Phase 1: every ID LIVE_ROUNDS times; partition 1 holds the IDs = 1
     * mod 4 at offsets 0 .. LIVE_IDS / 4 * LIVE_ROUNDS - 1. */
    for (r = 0; r < LIVE_ROUNDS; r++)
        for (id = 1; id <= LIVE_IDS; id++)
            ids[n++] = id;
    produce_named(ids, n);
    produced += (int64_t)n;
    snprintf(wlog, sizeof wlog, "%s/live-worker.log", g_dir);
    w = tk_worker_start(config, 0, wlog, NULL);
    wait_live_caught_up(db, produced, w, wlog);
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM account_view v "
                                       "JOIN accounts a USING (id) WHERE "
                                       "(v.name, v.balance) IS NOT DISTINCT "
                                       "FROM (a.name, a.balance)"),
                      LIVE_IDS, "view rows equal to accounts after phase 1");

    /* Changed before the run; the view is stale for them now. */
    tk_sql(db, "UPDATE accounts SET name = name || ' (pre)', balance = "
               "balance + 1000 WHERE " PRE_SQL);
    n_pre = tk_sql_int64(db, "SELECT count(*) FROM accounts WHERE " PRE_SQL);
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM account_view v "
                                       "JOIN accounts a USING (id) WHERE "
                                       "v.name <> a.name"),
                      n_pre, "stale view rows before the run");
    for (id = 1; id <= LIVE_IDS; id++) {
        if (!is_pre(id))
            stream[n_stream++] = id;
        if (is_mid(id))
            mid[n_mid++] = id;
    }

    /* The run, slow enough to overlap the stream and the updates. */
    at_start = live_stored(db);
    t_run = tk_now_ms();
    rp = spawn_reprocess(config, rlog, sizeof rlog, "--pipeline",
                         LIVE_PIPELINE, "--topic", LIVE_TOPIC, "--partition",
                         "1", "--from", "0", "--to", "999", "--batch", "20",
                         "--rate", "400", NULL);
    while ((st = tk_wait(rp, 0)) == -1) {
        int wave[200];
        size_t k;

        LEDGER_CHECK_LOG(tk_now_ms() - t_run < 60000, rlog,
                         "reprocess still running after 60 s; log: %s", rlog);
        /* The stream goes on, naming every ID but the pre-changed. */
        for (k = 0; k < 200; k++)
            wave[k] = stream[next++ % n_stream];
        produce_named(wave, 200);
        produced += 200;
        during += 200;
        if (!updated && runs(db) == 1 &&
            tk_sql_int64(db, "SELECT next_offset FROM "
                             "exactly.reprocess_runs") >= 300) {
            char *status;

            tk_sql(db, "UPDATE accounts SET name = name || ' (mid)', "
                       "balance = balance * 3 WHERE " MID_SQL);
            status = tk_sql_text(db, "SELECT status FROM "
                                     "exactly.reprocess_runs");
            TK_CHECK_EQ_STR(status, "running", "run status right after the "
                            "update (the overlap this scenario needs)");
            free(status);
            updated = 1;
            /* Every changed ID named again after its change. */
            produce_named(mid, n_mid);
            produced += (int64_t)n_mid;
            during += (int64_t)n_mid;
        }
        tk_sleep_ms(100);
    }
    at_end = live_stored(db);
    LEDGER_CHECK_LOG(st == 0, rlog, "reprocess beside the live pipeline "
                     "exited %d; log: %s", st, rlog);
    TK_CHECK(updated, "the run ended before the update could overlap it");
    TK_CHECK(at_end > at_start, "the live pipeline stored nothing while "
             "the run went on");
    run = tk_sql_int64(db, "SELECT id FROM exactly.reprocess_runs");
    check_run_status(db, run, "done");
    TK_CHECK_EQ_INT64(run_int(db, run, "applied"), 1000, "applied");
    TK_CHECK_EQ_INT64(run_int(db, run, "next_offset"), 1000, "next_offset");

    /* The live worker to the end, then stopped cleanly. */
    wait_live_caught_up(db, produced, w, wlog);
    st = tk_terminate(w, 30000);
    LEDGER_CHECK_LOG(st == 0, wlog, "live worker exited %d on SIGTERM; "
                     "log: %s", st, wlog);
    sum = tk_read_file(wlog);
    {
        const char *line = sum ? strstr(sum, "pipeline " LIVE_PIPELINE
                                              ": consumed ") : NULL;
        long long consumed = -1, retries = -1;
        const char *rt = line ? strstr(line, "retries ") : NULL;
        if (line)
            consumed = strtoll(line + strlen("pipeline " LIVE_PIPELINE
                                             ": consumed "), NULL, 10);
        if (rt)
            retries = strtoll(rt + strlen("retries "), NULL, 10);
        TK_CHECK_EQ_INT64(consumed, produced, "messages the live worker "
                          "consumed (once each, one life)");
        tk_note("[live] live worker: consumed %lld, retries %lld "
                "(deadlocks or lock waits with the run count here)",
                consumed, retries);
    }
    free(sum);

    /* The live pipeline's positions are its own: at the high watermarks,
     * and no row of the run among them. */
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                       "exactly.offsets"),
                      N_PARTITIONS, "rows in exactly.offsets");
    for (p = 0; p < N_PARTITIONS; p++) {
        int64_t lo;
        watermarks(LIVE_TOPIC, p, &lo, &hw);
        TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT next_offset FROM "
                                           "exactly.offsets WHERE pipeline "
                                           "= '" LIVE_PIPELINE "' AND "
                                           "partition = %d", p),
                          hw, "live next_offset vs high watermark");
    }

    /* The view is what one pass after the last update gives. */
    {
        int64_t wrong = tk_sql_int64(
            db, "SELECT count(*) FROM account_view v FULL JOIN (SELECT * "
                "FROM accounts WHERE id <= %d) a USING (id) WHERE v.id IS "
                "NULL OR a.id IS NULL OR (v.name, v.balance) IS DISTINCT "
                "FROM (a.name, a.balance)",
            LIVE_IDS);
        if (wrong != 0) {
            char *diff = tk_sql_text(
                db, "SELECT string_agg(format('id %%s: view (%%s, %%s) "
                    "accounts (%%s, %%s)', coalesce(v.id, a.id), v.name, "
                    "v.balance, a.name, a.balance), '; ') FROM account_view "
                    "v FULL JOIN (SELECT * FROM accounts WHERE id <= %d) a "
                    "USING (id) WHERE v.id IS NULL OR a.id IS NULL OR "
                    "(v.name, v.balance) IS DISTINCT FROM (a.name, "
                    "a.balance)",
                LIVE_IDS);
            tk_fail("[live] %" PRId64 " row(s) of account_view differ from "
                    "accounts: %.2000s", wrong, diff ? diff : "");
        }
    }
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM account_view "
                                       "WHERE name LIKE '%% (pre)'"),
                      n_pre, "view rows with the pre-run change (written "
                             "by the reprocess alone)");
    n_mid_rows = tk_sql_int64(db, "SELECT count(*) FROM account_view WHERE "
                                  "name LIKE '%% (mid)'");
    TK_CHECK_EQ_INT64(n_mid_rows, (int64_t)n_mid,
                      "view rows with the change made during the run");
    check_no_dead_letters(db);
    tk_note("[live] run %" PRId64 " over offsets 0..999 of partition 1 "
            "took %.1f s while the live pipeline stored %" PRId64
            " more offsets and %" PRId64 " messages were produced; "
            "account_view equals accounts for all %d IDs (%" PRId64
            " changed before the run and fixed only by it, %" PRId64
            " changed during it); %.1f s in all",
            run, (double)(tk_now_ms() - t_run) / 1000.0, at_end - at_start,
            during, LIVE_IDS, n_pre, n_mid_rows,
            (double)(tk_now_ms() - t0) / 1000.0);
    PQfinish(db);
}

/* EXACTLY_TEST_ONLY=name[,name]: run only those scenarios (debugging). */
static int wanted(const char *name)
{
    const char *only = getenv("EXACTLY_TEST_ONLY");

    return !only || !*only || strstr(only, name) != NULL;
}

int main(void)
{
    int64_t t0 = tk_now_ms();
    ledger_env e;

    memset(&e, 0, sizeof e);
    g_mock = tk_mock_start(1);
    tk_tmpdir("exactly-reprocess", g_dir, sizeof g_dir);
    tk_note("logs in %s", g_dir);

    if (wanted("range") || wanted("refusals") || wanted("dry") ||
        wanted("resume") || wanted("back")) {
        ledger_prepare(&e);
        tk_note("[prepare] live ledger worker applied %d messages in %.1f s",
                N_MESSAGES, (double)(tk_now_ms() - t0) / 1000.0);
        if (wanted("range"))
            scenario_range(&e);
        if (wanted("refusals"))
            scenario_refusals(&e);
        if (wanted("dry"))
            scenario_dry_run(&e);
        if (wanted("resume"))
            scenario_resume(&e);
        if (wanted("back"))
            scenario_back(&e);
        PQfinish(e.db);
        free(e.offsets);
        free(e.ledger);
        free(e.counters);
    }
    if (wanted("live"))
        scenario_live();

    tk_note("reprocess tests passed in %.1f s",
            (double)(tk_now_ms() - t0) / 1000.0);
    tk_mock_stop(g_mock);
    ledger_cleanup_dir(g_dir);
    return 0;
}
