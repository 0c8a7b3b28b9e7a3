/*
 * Handler failures, injected for real through the test plugins (DESIGN 3,
 * "a handler fails on a batch"; the crash guard of lib/engine/guard.c).
 *
 * Four pipelines over four topics of N_PARTITIONS partitions, one database:
 *
 *   rec    ledger.so with fail_on_ids: the handler fails single records
 *          with fail_record(). Exactly those IDs' messages go to
 *          exactly.dead_letters (offset, key, entity_id, the reason the
 *          plugin gave, attempts 1, failure times set), everything else is
 *          in the ledger once, the stored offsets reach the partition ends
 *          and the summary says "dead-lettered N".
 *   batch  failing.so with fail_ids: the handler fails the WHOLE batch with
 *          set_error(), so the runtime must roll back, retry in careful
 *          mode and bisect down to the listed records; the dead letters
 *          carry the set_error() text. A batch holding QUERY_ID runs a
 *          query the server refuses (SELECT 1/0): the handler logs the
 *          SQLSTATE and message host->query_error gives it, and the
 *          record's dead letters carry the server's message.
 *   stop   failing.so with on_error: stop: the partition holding the failing
 *          ID halts with its stored offset at the start of the failing batch
 *          (nothing of that batch commits), a level=error "partition halted"
 *          line names the record, the other partitions complete, and nothing
 *          is dead-lettered. Every message of the halted partition names an
 *          ID of its own, so the applied set shows exactly which offsets
 *          committed.
 *   ledger ledger.so with crash_on_id X (X occurs once in its topic),
 *          max_crashes 2: every worker that reaches X aborts (exit status
 *          134). The test restarts it like a supervisor until it exits 0.
 *          The guard counts deaths per batch start: MAX_CRASHES deaths on
 *          X's batch, then the batch runs one record at a time and X kills
 *          MAX_CRASHES more workers alone, then X is dead-lettered without
 *          calling the handler. So exactly 2 * MAX_CRASHES deaths, X in
 *          dead_letters with a reason saying it killed the worker, every
 *          other offset in the ledger once, and the ledger consistent with
 *          the stored offsets after every death.
 *
 * The first three workers run side by side (one process each) while the
 * crash loop runs; they share only the database.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define N_PARTITIONS 4
/* rec and batch topics: N_MSGS messages, message i on partition i % 4,
 * naming ID 1 + (7 i) mod N_IDS (61 is prime, so IDs wander over the
 * partitions and most occur several times). */
#define N_MSGS 240
#define N_IDS 61
/* stop and crash topics: PER_PART messages on every partition. */
#define PER_PART 50
/* In the stop topic, partition STOP_PARTITION's message at offset o names
 * ID STOP_ID_BASE + o (one ID per offset); the one at STOP_OFFSET fails. */
#define STOP_PARTITION 2
#define STOP_ID_BASE 1000
#define STOP_OFFSET 27
/* In the crash topic, partition CRASH_PARTITION's message at CRASH_OFFSET
 * names CRASH_ID, which no other message names. */
#define CRASH_PARTITION 1
#define CRASH_OFFSET 25
#define CRASH_ID 777
#define MAX_CRASHES 2
/* Rows of accounts: ledger_setup_db's 1..500 plus the IDs above. */
#define N_ACCOUNTS (STOP_ID_BASE + PER_PART)
/* A supervisor's patience: far more lives than the guard needs. */
#define MAX_RUNS 10
/* Full batches only (max_wait long enough that a partition's buffer fills
 * before it is due): batch starts are then multiples of BATCH_MAX, the
 * same in every life, so the guard's per-start death count is not reset
 * by a shorter batch that ends before X. */
#define BATCH_MAX 10
#define WORKER_TIMEOUT_MS 90000
/* abort() as the shell reports it. */
#define EXIT_ABORT (128 + SIGABRT)

static const int rec_fail_ids[] = {5, 17, 33};
static const int batch_fail_ids[] = {8, 29, 44};
#define QUERY_ID 50
#define N_FAIL 3

static int id_of(int i) { return 1 + (7 * i) % N_IDS; }

static int listed(const int *ids, int id)
{
    int k;

    for (k = 0; k < N_FAIL; k++)
        if (ids[k] == id)
            return 1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Producing                                                           */
/* ------------------------------------------------------------------ */

/* Keys of up to MAX_MSGS messages, kept alive for tk_produce. */
#define MAX_MSGS (N_PARTITIONS * PER_PART > N_MSGS ? N_PARTITIONS * PER_PART \
                                                   : N_MSGS)

/* One message per element: partition part[i], key "<id[i]>". Offsets follow
 * from the order (one idempotent producer keeps it per partition). */
/* ------------------------------------------------------------------ */
/* Database checks                                                     */
/* ------------------------------------------------------------------ */

static int64_t high_watermark(const char *bootstraps, const char *topic,
                              int partition)
{
    int64_t hw[N_PARTITIONS];

    ledger_high_watermarks(bootstraps, topic, N_PARTITIONS, hw);
    return hw[partition];
}

static int64_t stored_offset(PGconn *db, const char *pipeline,
                             const char *topic, int partition)
{
    return tk_sql_int64(db,
                        "SELECT coalesce(max(next_offset), -1) FROM "
                        "exactly.offsets WHERE pipeline = '%s' AND topic = "
                        "'%s' AND partition = %d",
                        pipeline, topic, partition);
}

/* Every partition's stored offset equals its high watermark. */
static void check_offsets_at_end(PGconn *db, const char *bootstraps,
                                 const char *pipeline, const char *topic,
                                 int except_partition)
{
    int64_t hw[N_PARTITIONS];
    char what[160];
    int p;

    ledger_high_watermarks(bootstraps, topic, N_PARTITIONS, hw);
    for (p = 0; p < N_PARTITIONS; p++) {
        if (p == except_partition)
            continue;
        snprintf(what, sizeof what, "[%s] stored next_offset of partition "
                 "%d (its high watermark)", pipeline, p);
        TK_CHECK_EQ_INT64(stored_offset(db, pipeline, topic, p), hw[p], what);
    }
}

/*
 * The dead letter of one message: exactly one row at (pipeline, topic,
 * partition, offset) with the key bytes "<id>", entity_id "<id>", no
 * SQLSTATE unless sqlstate names the one a failed statement left, one
 * attempt, both failure times set and in order, and a reason containing
 * want_reason (exactly equal when exact). Returns the reason (caller
 * frees).
 */
static char *check_dead_letter(PGconn *db, const char *pipeline,
                               const char *topic, int partition,
                               int64_t offset, int id, const char *want_reason,
                               int exact, const char *sqlstate)
{
    char where[256], state_is[32];
    char *reason;

    snprintf(where, sizeof where,
             "pipeline = '%s' AND topic = '%s' AND partition = %d AND "
             "\"offset\" = %" PRId64,
             pipeline, topic, partition, offset);
    TK_CHECK(tk_sql_int64(db, "SELECT count(*) FROM exactly.dead_letters "
                              "WHERE %s", where) == 1,
             "[%s] message at partition %d offset %" PRId64 " (id %d) has no "
             "dead letter", pipeline, partition, offset, id);
    reason = tk_sql_text(db, "SELECT reason FROM exactly.dead_letters WHERE %s",
                         where);
    snprintf(state_is, sizeof state_is, sqlstate ? "= '%s'" : "IS NULL",
             sqlstate);
    TK_CHECK(reason != NULL && (exact ? strcmp(reason, want_reason) == 0
                                      : strstr(reason, want_reason) != NULL),
             "[%s] dead letter at %d/%" PRId64 ": reason \"%s\", expected %s"
             "\"%s\"", pipeline, partition, offset, reason ? reason : "(null)",
             exact ? "" : "one containing ", want_reason);
    TK_CHECK_EQ_INT64(
        tk_sql_int64(db,
                     "SELECT count(*) FROM exactly.dead_letters WHERE %s AND "
                     "entity_id = '%d' AND message_key = convert_to('%d', "
                     "'UTF8') AND sqlstate %s AND attempts = 1 AND "
                     "first_failed_at IS NOT NULL AND last_failed_at >= "
                     "first_failed_at AND last_failed_at <= now()",
                     where, id, id, state_is),
        1, "dead letter with entity_id and key of the message, the expected "
           "sqlstate, attempts 1, failure times set");
    return reason;
}

static int64_t dead_letters_of(PGconn *db, const char *pipeline)
{
    return tk_sql_int64(db, "SELECT count(*) FROM exactly.dead_letters WHERE "
                            "pipeline = '%s'", pipeline);
}

/* ------------------------------------------------------------------ */
/* The scenarios                                                       */
/* ------------------------------------------------------------------ */

typedef struct world {
    const char *bootstraps;
    PGconn *db;
    char dir[256];
    char config[512];
} world;

/* rec: record-level failures via fail_record(). */
static void check_rec(world *wd, const char *log)
{
    int64_t good = 0, bad = 0;
    int64_t per_id[N_IDS + 1] = {0};
    int i, id;
    tk_run_summary s;

    for (i = 0; i < N_MSGS; i++) {
        int p = i % N_PARTITIONS;
        int64_t off = i / N_PARTITIONS;

        id = id_of(i);
        if (listed(rec_fail_ids, id)) {
            free(check_dead_letter(wd->db, "rec", "pf_rec", p, off, id,
                                   "ledger: id listed in fail_on_ids", 1, NULL));
            TK_CHECK_EQ_INT64(
                tk_sql_int64(wd->db, "SELECT count(*) FROM ledger_rec WHERE "
                                     "partition = %d AND \"offset\" = %"
                                     PRId64, p, off),
                0, "[rec] ledger rows of a failed record's message");
            bad++;
        } else {
            TK_CHECK_EQ_INT64(
                tk_sql_int64(wd->db, "SELECT count(*) FROM ledger_rec WHERE "
                                     "topic = 'pf_rec' AND partition = %d AND "
                                     "\"offset\" = %" PRId64 " AND entity_id "
                                     "= '%d'", p, off, id),
                1, "[rec] ledger row of a good message");
            per_id[id]++;
            good++;
        }
    }
    TK_CHECK_EQ_INT64(dead_letters_of(wd->db, "rec"), bad,
                      "[rec] dead letters of the pipeline");
    TK_CHECK_EQ_INT64(tk_sql_int64(wd->db, "SELECT count(*) FROM ledger_rec"),
                      good, "[rec] ledger rows");
    for (id = 1; id <= N_IDS; id++) {
        char what[96];
        snprintf(what, sizeof what, "[rec] ledger_counters of id %d", id);
        TK_CHECK_EQ_INT64(tk_sql_int64(wd->db, "SELECT coalesce(max(n), 0) "
                                               "FROM counters_rec WHERE "
                                               "entity_id = '%d'", id),
                          per_id[id], what);
    }
    check_offsets_at_end(wd->db, wd->bootstraps, "rec", "pf_rec", -1);
    tk_summary_required(log, "rec", &s);
    TK_CHECK_EQ_INT64(s.consumed, N_MSGS, "[rec] summary consumed");
    TK_CHECK_EQ_INT64(s.applied, good, "[rec] summary applied");
    TK_CHECK_EQ_INT64(s.dead_lettered, bad, "[rec] summary dead-lettered");
    LEDGER_CHECK_LOG(tk_log_lines_with(log, "level=error", NULL) == 0, log,
                     "[rec] a record-level failure logged an error");
    tk_note("[rec] fail_record: %" PRId64 " of %d messages dead-lettered "
            "(ids 5, 17, 33), %" PRId64 " applied once; summary: "
            "dead-lettered %lld, committed %lld batches, rolled back %lld, "
            "retries %lld", bad, N_MSGS, good, (long long)s.dead_lettered, (long long)s.committed,
            (long long)s.rolled_back, (long long)s.retries);
}

/* batch: whole-batch failures, bisected. */
static void check_batch(world *wd, const char *log)
{
    int64_t good = 0, bad = 0;
    int64_t per_id[N_IDS + 1] = {0};
    char want[128];
    int i, id;
    tk_run_summary s;

    for (i = 0; i < N_MSGS; i++) {
        int p = i % N_PARTITIONS;
        int64_t off = i / N_PARTITIONS;

        id = id_of(i);
        if (listed(batch_fail_ids, id)) {
            /* The text the plugin passed to set_error(). */
            snprintf(want, sizeof want,
                     "failing: record %d is listed in fail_ids", id);
            free(check_dead_letter(wd->db, "batch", "pf_batch", p, off, id,
                                   want, 1, NULL));
            bad++;
        } else if (id == QUERY_ID) {
            free(check_dead_letter(wd->db, "batch", "pf_batch", p, off, id,
                                   "division by zero", 0, "22012"));
            bad++;
        } else {
            per_id[id]++;
            good++;
        }
    }
    TK_CHECK_EQ_INT64(dead_letters_of(wd->db, "batch"), bad,
                      "[batch] dead letters of the pipeline");
    /* failing.so counts applied messages per ID: a message applied twice
     * or lost shows here. */
    for (id = 1; id <= N_IDS; id++) {
        char what[96];
        snprintf(what, sizeof what, "[batch] failing_applied.n of id %d", id);
        TK_CHECK_EQ_INT64(tk_sql_int64(wd->db, "SELECT coalesce(max(n), 0) "
                                               "FROM failing_applied WHERE "
                                               "id = '%d'", id),
                          per_id[id], what);
    }
    TK_CHECK_EQ_INT64(tk_sql_int64(wd->db, "SELECT coalesce(sum(n), 0) FROM "
                                           "failing_applied"),
                      good, "[batch] messages applied");
    check_offsets_at_end(wd->db, wd->bootstraps, "batch", "pf_batch", -1);
    tk_summary_required(log, "batch", &s);
    TK_CHECK_EQ_INT64(s.consumed, N_MSGS, "[batch] summary consumed");
    TK_CHECK_EQ_INT64(s.applied, good, "[batch] summary applied");
    TK_CHECK_EQ_INT64(s.dead_lettered, bad, "[batch] summary dead-lettered");
    snprintf(want, sizeof want, "failing: the query for record %d failed: "
             "SQLSTATE 22012: division by zero", QUERY_ID);
    TK_CHECK(tk_log_lines_with(log, want, NULL) > 0,
             "[batch] no log line \"%s\": host->query_error did not give "
             "the handler its query's SQLSTATE and message", want);
    /* Every failing batch was rolled back and run again in careful mode. */
    TK_CHECK(s.retries >= 1, "[batch] summary shows %lld retries; a failed "
             "batch must be retried", (long long)s.retries);
    tk_note("[batch] set_error on whole batches: %" PRId64 " of %d messages "
            "dead-lettered (ids 8, 29, 44 with the set_error text, 50 by "
            "its failed query), %" PRId64 " applied once; summary: dead-lettered %lld, batches committed "
            "%lld, retries %lld; %d 'record dead-lettered' warnings, %d "
            "'isolating the failing records' warnings",
            bad, N_MSGS, good, (long long)s.dead_lettered, (long long)s.committed, (long long)s.retries,
            tk_log_lines_with(log, "record dead-lettered", NULL),
            tk_log_lines_with(log, "isolating the failing records", NULL));
}

/* stop: on_error: stop halts the partition of the failing record. */
static void check_stop(world *wd, const char *log, int status)
{
    int64_t stored, hw;
    char needle[64];
    char id_needle[32];
    int o, halted_lines;
    tk_run_summary s;

    LEDGER_CHECK_LOG(status == 0, log, "[stop] worker exited %d", status);
    stored = stored_offset(wd->db, "stop", "pf_stop", STOP_PARTITION);
    hw = high_watermark(wd->bootstraps, "pf_stop", STOP_PARTITION);
    TK_CHECK_EQ_INT64(hw, PER_PART, "[stop] messages in the halted partition");
    /* The stored offset stays before the failing record, at the start of
     * the batch that holds it: no record of that batch committed. */
    LEDGER_CHECK_LOG(stored >= 0 && stored <= STOP_OFFSET &&
                         stored > STOP_OFFSET - BATCH_MAX,
                     log, "[stop] partition %d stored next_offset %" PRId64
                     ", expected the start of the batch holding offset %d "
                     "(in (%d, %d])", STOP_PARTITION, stored, STOP_OFFSET,
                     STOP_OFFSET - BATCH_MAX, STOP_OFFSET);
    for (o = 0; o < PER_PART; o++) {
        char what[128];
        snprintf(what, sizeof what, "[stop] partition %d offset %d applied "
                 "(%s the stored offset %" PRId64 ")", STOP_PARTITION, o,
                 o < stored ? "below" : "at or above", stored);
        TK_CHECK_EQ_INT64(tk_sql_int64(wd->db, "SELECT coalesce(max(n), 0) "
                                               "FROM failing_stop WHERE id = "
                                               "'%d'", STOP_ID_BASE + o),
                          o < stored ? 1 : 0, what);
    }
    /* The other partitions completed: every message counted once (each of
     * their IDs occurs as often as produced), offsets at the end. */
    check_offsets_at_end(wd->db, wd->bootstraps, "stop", "pf_stop",
                         STOP_PARTITION);
    TK_CHECK_EQ_INT64(tk_sql_int64(wd->db, "SELECT coalesce(sum(n), 0) FROM "
                                           "failing_stop WHERE id::int < %d",
                                   STOP_ID_BASE),
                      (N_PARTITIONS - 1) * PER_PART,
                      "[stop] messages applied on the other partitions");
    TK_CHECK_EQ_INT64(dead_letters_of(wd->db, "stop"), 0,
                      "[stop] dead letters (on_error: stop sets none aside)");
    snprintf(needle, sizeof needle, "offset=%d ", STOP_OFFSET);
    halted_lines = tk_log_lines_with(log, "level=error", "partition halted");
    LEDGER_CHECK_LOG(halted_lines >= 1, log,
                     "[stop] no level=error 'partition halted' line");
    snprintf(id_needle, sizeof id_needle, "id=%d ", STOP_ID_BASE + STOP_OFFSET);
    LEDGER_CHECK_LOG(tk_log_lines_with(log, "partition halted", needle) >= 1 &&
                         tk_log_lines_with(log, "partition halted",
                                          id_needle) >= 1,
                     log, "[stop] the 'partition halted' line does not name "
                     "the failing record (id %d, offset %d)",
                     STOP_ID_BASE + STOP_OFFSET, STOP_OFFSET);
    tk_summary_required(log, "stop", &s);
    TK_CHECK_EQ_INT64(s.dead_lettered, 0, "[stop] summary dead-lettered");
    TK_CHECK_EQ_INT64(s.applied, (N_PARTITIONS - 1) * PER_PART + stored,
                      "[stop] summary applied");
    tk_note("[stop] on_error stop: partition %d halted at stored offset %"
            PRId64 " (failing record at %d, %" PRId64 " of %d committed), "
            "other partitions complete, 0 dead letters; %d level=error "
            "'partition halted' line(s); worker exit %d; summary: applied "
            "%lld, rolled back %lld", STOP_PARTITION, stored, STOP_OFFSET,
            stored, PER_PART, halted_lines, status, (long long)s.applied, (long long)s.rolled_back);
}

/* ledger (crash): restart until the worker gets past X. */
static void run_crash(world *wd, const int64_t *per_id, int n_ids)
{
    char log[512];
    int64_t t0 = tk_now_ms(), rows, hw[N_PARTITIONS], total = 0;
    int deaths = 0, runs = 0, status = -1, p, id;
    ledger_summary fin;
    char *reason;
    const char *only[] = {"--pipeline", LEDGER_PIPELINE, NULL};
    int isolating = 0, r;

    for (runs = 0; runs < MAX_RUNS; runs++) {
        snprintf(log, sizeof log, "%s/crash-%02d.log", wd->dir, runs);
        status = tk_worker_wait(tk_worker_start(wd->config, 3000, log, only),
                                WORKER_TIMEOUT_MS, log);
        if (status != EXIT_ABORT)
            break;
        deaths++;
        /* It died where the plugin said it would, not somewhere else. */
        LEDGER_CHECK_LOG(ledger_log_count(log, "matches crash_on_id") == 1,
                         log, "[crash] worker %d exited 134 without the "
                         "plugin's crash_on_id line", runs);
        /* Whatever the dead worker committed, it committed whole. */
        rows = ledger_check_consistent(wd->db, "pf_crash", N_PARTITIONS);
        tk_note("[crash] run %d: worker aborted on id %d (death %d) at %.1f "
                "s; ledger %" PRId64 " rows, consistent with the stored "
                "offsets; stored offset of partition %d: %" PRId64,
                runs, CRASH_ID, deaths, (double)(tk_now_ms() - t0) / 1000.0,
                rows, CRASH_PARTITION,
                stored_offset(wd->db, LEDGER_PIPELINE, "pf_crash",
                              CRASH_PARTITION));
    }
    LEDGER_CHECK_LOG(status == 0, log,
                     "[crash] run %d ended with status %d (deaths so far: "
                     "%d, cap %d runs)", runs, status, deaths, MAX_RUNS);
    /* MAX_CRASHES deaths on the batch, then MAX_CRASHES on X alone. */
    TK_CHECK_EQ_INT64(deaths, 2 * MAX_CRASHES, "[crash] worker deaths");

    /* X: dead-lettered, never applied. */
    reason = check_dead_letter(wd->db, LEDGER_PIPELINE, "pf_crash",
                               CRASH_PARTITION, CRASH_OFFSET, CRASH_ID,
                               "killed the worker", 0, NULL);
    TK_CHECK_EQ_INT64(dead_letters_of(wd->db, LEDGER_PIPELINE), 1,
                      "[crash] dead letters of the pipeline");
    TK_CHECK_EQ_INT64(tk_sql_int64(wd->db, "SELECT count(*) FROM ledger "
                                           "WHERE entity_id = '%d'", CRASH_ID),
                      0, "[crash] ledger rows of the crashing id");
    /* Every other offset once: rows = offsets - 1, no hole but X's, none
     * outside the partitions' ranges. */
    ledger_high_watermarks(wd->bootstraps, "pf_crash", N_PARTITIONS, hw);
    for (p = 0; p < N_PARTITIONS; p++) {
        char what[128];
        total += hw[p];
        snprintf(what, sizeof what, "[crash] partition %d: offsets without "
                 "a ledger row (only %d/%d may miss)", p, CRASH_PARTITION,
                 CRASH_OFFSET);
        TK_CHECK_EQ_INT64(
            tk_sql_int64(wd->db,
                         "SELECT count(*) FROM generate_series(0, %" PRId64
                         " - 1) o WHERE NOT EXISTS (SELECT 1 FROM ledger l "
                         "WHERE l.topic = 'pf_crash' AND l.partition = %d AND "
                         "l.\"offset\" = o)", hw[p], p),
            p == CRASH_PARTITION ? 1 : 0, what);
    }
    TK_CHECK_EQ_INT64(tk_sql_int64(wd->db, "SELECT count(*) FROM ledger"),
                      total - 1, "[crash] ledger rows (one per offset but X)");
    TK_CHECK_EQ_INT64(tk_sql_int64(wd->db, "SELECT count(*) FROM ledger l "
                                           "WHERE l.\"offset\" >= CASE "
                                           "l.partition WHEN 0 THEN %" PRId64
                                           " WHEN 1 THEN %" PRId64 " WHEN 2 "
                                           "THEN %" PRId64 " WHEN 3 THEN %"
                                           PRId64 " ELSE -1 END OR l.topic <> "
                                           "'pf_crash'",
                                   hw[0], hw[1], hw[2], hw[3]),
                      0, "[crash] ledger rows outside the produced offsets");
    for (id = 1; id <= n_ids; id++) {
        char what[96];
        if (per_id[id - 1] == 0)
            continue;
        snprintf(what, sizeof what, "[crash] ledger_counters of id %d", id);
        TK_CHECK_EQ_INT64(tk_sql_int64(wd->db, "SELECT coalesce(max(n), 0) "
                                               "FROM ledger_counters WHERE "
                                               "entity_id = '%d'", id),
                          id == CRASH_ID ? 0 : per_id[id - 1], what);
    }
    TK_CHECK_EQ_INT64(tk_sql_int64(wd->db, "SELECT coalesce(sum(n), 0) FROM "
                                           "ledger_counters"),
                      total - 1, "[crash] sum of ledger_counters");
    check_offsets_at_end(wd->db, wd->bootstraps, LEDGER_PIPELINE, "pf_crash",
                         -1);
    LEDGER_CHECK_LOG(ledger_read_summary(log, &fin), log,
                     "[crash] the last worker printed no summary");
    TK_CHECK_EQ_INT64(fin.dead_lettered, 1,
                      "[crash] last worker's summary dead-lettered");
    for (r = 0; r <= runs && r < MAX_RUNS; r++) {
        snprintf(log, sizeof log, "%s/crash-%02d.log", wd->dir, r);
        isolating += ledger_log_count(log, "isolating records");
    }
    tk_note("[crash] crash_on_id %d, max_crashes %d: %d worker deaths "
            "(exit 134) in %d runs, then exit 0 after %.1f s; dead letter "
            "reason: \"%s\"; %" PRId64 " other offsets applied once; last "
            "worker: applied %" PRId64 ", dead-lettered %" PRId64
            "; %d 'isolating records' warnings over all runs",
            CRASH_ID, MAX_CRASHES, deaths, runs + 1,
            (double)(tk_now_ms() - t0) / 1000.0, reason, total - 1,
            fin.applied, fin.dead_lettered, isolating);
    free(reason);
}

int main(void)
{
    int part[MAX_MSGS], id[MAX_MSGS];
    /* Per ID 1..N_ACCOUNTS (CRASH_ID included). */
    int64_t crash_counts[N_ACCOUNTS] = {0};
    char conninfo[1024], log_rec[512], log_batch[512], log_stop[512];
    char migrate_log[512];
    int64_t t0 = tk_now_ms();
    const char *only_rec[] = {"--pipeline", "rec", NULL};
    const char *only_batch[] = {"--pipeline", "batch", NULL};
    const char *only_stop[] = {"--pipeline", "stop", NULL};
    char fail_rec[96], fail_batch[96], fail_stop[96], crash_on[24];
    tk_config cfg;
    tk_pipeline *pl = cfg.pipelines;
    pid_t pid_rec, pid_batch, pid_stop;
    int i, p, o, st_rec, st_batch, st_stop;
    world wd;
    tk_mock *m;

    memset(&wd, 0, sizeof wd);
    m = tk_mock_start(1);
    wd.bootstraps = tk_mock_bootstraps(m);
    tk_mock_create_topic(m, "pf_rec", N_PARTITIONS);
    tk_mock_create_topic(m, "pf_batch", N_PARTITIONS);
    tk_mock_create_topic(m, "pf_stop", N_PARTITIONS);
    tk_mock_create_topic(m, "pf_crash", N_PARTITIONS);

    tk_pg_create_db("plugin_failures", conninfo, sizeof conninfo);
    /* accounts 1..500 plus the ledger tables of the crash pipeline. */
    ledger_setup_db(conninfo);
    wd.db = tk_pg_connect(conninfo);
    /* The stop topic's per-offset IDs need rows too (on_missing: skip
     * would otherwise hide them from the handler). */
    tk_sql(wd.db, "INSERT INTO accounts SELECT g, 'account ' || g, g FROM "
                  "generate_series(%d, %d) g",
           LEDGER_ACCOUNTS + 1, N_ACCOUNTS);
    ledger_create_tables(wd.db, "ledger_rec", "counters_rec");
    tk_sql(wd.db, "CREATE TABLE failing_applied (id text PRIMARY KEY, n "
                  "bigint NOT NULL);"
                  "CREATE TABLE failing_stop (id text PRIMARY KEY, n bigint "
                  "NOT NULL)");

    tk_tmpdir("exactly-plugin-failures", wd.dir, sizeof wd.dir);
    snprintf(wd.config, sizeof wd.config, "%s/worker.yaml", wd.dir);
    /* session.timeout.ms 6000 (3000 for the crash loop's pipeline): an
     * aborted worker stays in its group until its session ends, and the
     * next life's join waits for that (45 s by default; the mock makes it
     * about the session less 1 s). Long max_wait_ms: see BATCH_MAX. */
    snprintf(fail_rec, sizeof fail_rec,
             "        fail_on_ids: ['%d', '%d', '%d']\n", rec_fail_ids[0],
             rec_fail_ids[1], rec_fail_ids[2]);
    snprintf(fail_batch, sizeof fail_batch,
             "        fail_ids: ['%d', '%d', '%d']\n"
             "        query_ids: ['%d']\n",
             batch_fail_ids[0], batch_fail_ids[1], batch_fail_ids[2],
             QUERY_ID);
    snprintf(fail_stop, sizeof fail_stop, "        fail_ids: ['%d']\n",
             STOP_ID_BASE + STOP_OFFSET);
    snprintf(crash_on, sizeof crash_on, "%d", CRASH_ID);
    tk_config_init(&cfg, wd.bootstraps, conninfo);
    cfg.kafka[0] = (tk_prop){"session.timeout.ms", "6000"};
    cfg.kafka[1] = (tk_prop){"heartbeat.interval.ms", "500"};
    ledger_pipeline(&pl[0], "rec", "pf_rec");
    pl[0].options[0] = (tk_prop){"table", "ledger_rec"};
    pl[0].options[1] = (tk_prop){"counters", "counters_rec"};
    pl[0].options_yaml = fail_rec;
    pl[0].max_messages = 20;
    pl[0].max_wait_ms = 50;
    ledger_pipeline(&pl[1], "batch", "pf_batch");
    pl[1].plugin = "failing.so";
    pl[1].options_yaml = fail_batch;
    pl[1].max_messages = 20;
    pl[1].max_wait_ms = 50;
    ledger_pipeline(&pl[2], "stop", "pf_stop");
    pl[2].plugin = "failing.so";
    pl[2].options[0] = (tk_prop){"table", "failing_stop"};
    pl[2].options_yaml = fail_stop;
    pl[2].max_messages = BATCH_MAX;
    pl[2].max_wait_ms = 1000;
    pl[2].on_error = "stop";
    ledger_pipeline(&pl[3], LEDGER_PIPELINE, "pf_crash");
    pl[3].options[0] = (tk_prop){"crash_on_id", crash_on};
    pl[3].max_messages = BATCH_MAX;
    pl[3].max_wait_ms = 1000;
    pl[3].max_crashes = MAX_CRASHES;
    pl[3].kafka[0] = (tk_prop){"session.timeout.ms", "3000"};
    pl[3].kafka[1] = (tk_prop){"heartbeat.interval.ms", "300"};
    for (i = 0; i < 4; i++) {
        pl[i].group = pl[i].topics[0];
        pl[i].lookup_id_column = "id";
    }
    tk_config_write(wd.config, &cfg);
    snprintf(migrate_log, sizeof migrate_log, "%s/migrate.log", wd.dir);
    tk_migrate(wd.config, migrate_log);

    /* rec and batch: N_MSGS messages each. */
    for (i = 0; i < N_MSGS; i++) {
        part[i] = i % N_PARTITIONS;
        id[i] = id_of(i);
    }
    tk_produce_int_keys(wd.bootstraps, "pf_rec", part, id, (size_t)N_MSGS);
    tk_produce_int_keys(wd.bootstraps, "pf_batch", part, id, (size_t)N_MSGS);
    /* stop: partition STOP_PARTITION names one ID per offset; the others
     * name IDs 1..N_IDS (never the failing one). */
    for (p = 0, i = 0; p < N_PARTITIONS; p++)
        for (o = 0; o < PER_PART; o++, i++) {
            part[i] = p;
            id[i] = p == STOP_PARTITION ? STOP_ID_BASE + o : id_of(i);
        }
    tk_produce_int_keys(wd.bootstraps, "pf_stop", part, id, (size_t)i);
    /* crash: CRASH_ID exactly once. */
    for (p = 0, i = 0; p < N_PARTITIONS; p++)
        for (o = 0; o < PER_PART; o++, i++) {
            part[i] = p;
            id[i] = p == CRASH_PARTITION && o == CRASH_OFFSET ? CRASH_ID
                                                              : id_of(i);
            crash_counts[id[i] - 1]++;
        }
    tk_produce_int_keys(wd.bootstraps, "pf_crash", part, id, (size_t)i);
    tk_note("produced: pf_rec/pf_batch %d messages each, pf_stop/pf_crash "
            "%d each, %d partitions; logs in %s", N_MSGS,
            N_PARTITIONS * PER_PART, N_PARTITIONS, wd.dir);

    /* rec, batch and stop run alongside the crash loop. */
    snprintf(log_rec, sizeof log_rec, "%s/rec.log", wd.dir);
    snprintf(log_batch, sizeof log_batch, "%s/batch.log", wd.dir);
    snprintf(log_stop, sizeof log_stop, "%s/stop.log", wd.dir);
    pid_rec = tk_worker_start(wd.config, 3000, log_rec, only_rec);
    pid_batch = tk_worker_start(wd.config, 3000, log_batch, only_batch);
    pid_stop = tk_worker_start(wd.config, 3000, log_stop, only_stop);

    run_crash(&wd, crash_counts, N_ACCOUNTS);

    st_rec = tk_worker_wait(pid_rec, WORKER_TIMEOUT_MS, log_rec);
    st_batch = tk_worker_wait(pid_batch, WORKER_TIMEOUT_MS, log_batch);
    st_stop = tk_worker_wait(pid_stop, WORKER_TIMEOUT_MS, log_stop);
    LEDGER_CHECK_LOG(st_rec == 0, log_rec, "[rec] worker exited %d", st_rec);
    LEDGER_CHECK_LOG(st_batch == 0, log_batch, "[batch] worker exited %d",
                     st_batch);
    check_rec(&wd, log_rec);
    check_batch(&wd, log_batch);
    check_stop(&wd, log_stop, st_stop);

    PQfinish(wd.db);
    tk_mock_stop(m);
    ledger_cleanup_dir(wd.dir);
    tk_note("plugin failures test passed in %.1f s",
            (double)(tk_now_ms() - t0) / 1000.0);
    return 0;
}
