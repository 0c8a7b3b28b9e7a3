/*
 * lookup.on_missing (DESIGN 3, "the lookup finds no row"): messages naming
 * IDs that have no row in `accounts`, under each policy. Four pipelines run
 * side by side, one worker each, on topics of their own, all with the
 * ledger plugin: it writes one ledger row per message it is handed whatever
 * the looked-up rows, so "applied" means "has a ledger row".
 *
 *   skip         missing IDs never reach the handler, nothing is set aside,
 *                the offsets still advance past them, and the summary counts
 *                them as "skipped (no row) N".
 *   dead_letter  each message of a missing ID gets a dead letter with reason
 *                "lookup found no row" (entity_id and key of the message).
 *   handler      the handler gets every record, rows or not (ledger rows for
 *                the missing IDs too), nothing skipped or dead-lettered.
 *   retry        missing_retry_ms 3000. Partition 0 holds LATE_ID, whose row
 *                the test inserts 1 s after the worker first reported it
 *                missing (a row committed after its event was published):
 *                it must be applied, not dead-lettered. Partition 1 holds
 *                NEVER_ID, whose row never appears: it must be dead-lettered
 *                with reason "lookup found no row (retried)" no sooner than
 *                3 s after the first miss (and not much later: the retries'
 *                capped backoff bounds it). The messages behind both in
 *                their partitions are applied too.
 *
 * Everywhere: every message with a row is applied exactly once (ledger row
 * at its offset, counters per ID), the stored offsets reach the partition
 * ends, and the summary's counters match.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ledger_check.h"
#include "testkit.h"

#define N_PARTITIONS 2
#define N_ACCOUNTS 100
#define WORKER_TIMEOUT_MS 90000
#define RETRY_MS 3000
/* How long after the first reported miss the late row is inserted. */
#define LATE_AFTER_MS 1000
#define LATE_ID 9100
#define NEVER_ID 9200
#define MAX_MSGS 64

/* One message: partition and the ID its key names. Offsets follow from the
 * order (one idempotent producer keeps it per partition). */
typedef struct msg {
    int partition;
    int id;
} msg;

/* skip, dead_letter and handler share these: IDs > N_ACCOUNTS are missing,
 * some twice, some next to each other. Partition 1 ends with four missing
 * IDs in a row: with max_messages 4 (and the partition buffered at once,
 * as it is here) that is a batch with nothing to apply whose offsets must
 * still advance. */
static const msg common_msgs[] = {
    {0, 1},    {0, 9001}, {0, 2},  {0, 3},    {0, 9002}, {0, 9001},
    {0, 4},    {0, 5},    {0, 6},  {0, 7},    {0, 8},    {0, 9003},
    {1, 9004}, {1, 10},   {1, 11}, {1, 9005}, {1, 12},   {1, 13},
    {1, 14},   {1, 15},   {1, 9004}, {1, 9006}, {1, 9007}, {1, 9006},
};

static const msg retry_msgs[] = {
    {0, 1}, {0, 2}, {0, LATE_ID}, {0, 3}, {0, 4},
    {1, 5}, {1, NEVER_ID}, {1, 6}, {1, 7},
};

typedef struct pipeline_case {
    const char *name;    /* pipeline, and the suffix of its tables */
    const char *policy;  /* lookup.on_missing */
    const msg *msgs;
    size_t n_msgs;
    int64_t offsets[MAX_MSGS];
    pid_t pid;
    char log[512];
    char topic[64];
} pipeline_case;

#define N_CASES 4
static pipeline_case cases[N_CASES] = {
    {"skip", "skip", common_msgs,
     sizeof common_msgs / sizeof common_msgs[0], {0}, 0, "", ""},
    {"dead_letter", "dead_letter", common_msgs,
     sizeof common_msgs / sizeof common_msgs[0], {0}, 0, "", ""},
    {"handler", "handler", common_msgs,
     sizeof common_msgs / sizeof common_msgs[0], {0}, 0, "", ""},
    {"retry", "retry", retry_msgs, sizeof retry_msgs / sizeof retry_msgs[0],
     {0}, 0, "", ""},
};

static void produce(const char *bootstraps, pipeline_case *pc)
{
    int parts[MAX_MSGS], ids[MAX_MSGS];
    int64_t next[N_PARTITIONS] = {0};
    size_t i;

    TK_CHECK(pc->n_msgs <= MAX_MSGS, "too many messages");
    for (i = 0; i < pc->n_msgs; i++) {
        parts[i] = pc->msgs[i].partition;
        ids[i] = pc->msgs[i].id;
        pc->offsets[i] = next[pc->msgs[i].partition]++;
    }
    tk_produce_int_keys(bootstraps, pc->topic, parts, ids, pc->n_msgs);
}

/* Wall-clock milliseconds of the first log line holding needle (its
 * "ts=YYYY-MM-DDTHH:MM:SS.mmmZ"), or -1. */
static int64_t first_log_ms(const char *log, const char *needle)
{
    char *text = tk_read_file(log);
    const char *hit, *line;
    struct tm tm;
    int ms = 0;
    int64_t v = -1;

    if (!text)
        return -1;
    hit = strstr(text, needle);
    if (hit) {
        for (line = hit; line > text && line[-1] != '\n'; line--)
            ;
        memset(&tm, 0, sizeof tm);
        if (sscanf(line, "ts=%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon,
                   &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec,
                   &ms) == 7) {
            tm.tm_year -= 1900;
            tm.tm_mon -= 1;
            v = (int64_t)timegm(&tm) * 1000 + ms;
        }
    }
    free(text);
    return v;
}

/* Whether the policy hands this message to the handler. */
static int reaches_handler(const pipeline_case *pc, int id)
{
    if (id <= N_ACCOUNTS || strcmp(pc->policy, "handler") == 0)
        return 1;
    return strcmp(pc->policy, "retry") == 0 && id == LATE_ID;
}

static void check_case(PGconn *db, const char *bootstraps, pipeline_case *pc)
{
    const char *want_reason = strcmp(pc->policy, "retry") == 0
                                  ? "lookup found no row (retried)"
                                  : "lookup found no row";
    int dead_expected = strcmp(pc->policy, "dead_letter") == 0 ||
                        strcmp(pc->policy, "retry") == 0;
    int64_t applied = 0, dead = 0, skipped = 0;
    int64_t hw[N_PARTITIONS];
    char values[4096];
    size_t i, o = 0;
    tk_run_summary s;
    int p;

    for (i = 0; i < pc->n_msgs; i++) {
        const msg *mm = &pc->msgs[i];
        char where[200];

        snprintf(where, sizeof where,
                 "topic = '%s' AND partition = %d AND \"offset\" = %" PRId64,
                 pc->topic, mm->partition, pc->offsets[i]);
        if (reaches_handler(pc, mm->id)) {
            TK_CHECK(tk_sql_int64(db, "SELECT count(*) FROM ledger_%s WHERE "
                                      "%s AND entity_id = '%d'",
                                  pc->name, where, mm->id) == 1,
                     "[%s] message %zu (partition %d offset %" PRId64
                     ", id %d) not applied", pc->name, i, mm->partition,
                     pc->offsets[i], mm->id);
            TK_CHECK(tk_sql_int64(db, "SELECT count(*) FROM "
                                      "exactly.dead_letters WHERE pipeline = "
                                      "'%s' AND %s", pc->name, where) == 0,
                     "[%s] applied message %zu (id %d) also dead-lettered",
                     pc->name, i, mm->id);
            applied++;
            o += (size_t)snprintf(values + o, sizeof values - o, "%s('%d')",
                                  o ? "," : "", mm->id);
            TK_CHECK(o < sizeof values, "values buffer too small");
            continue;
        }
        TK_CHECK(tk_sql_int64(db, "SELECT count(*) FROM ledger_%s WHERE %s",
                              pc->name, where) == 0,
                 "[%s] message %zu (id %d, no row) was applied", pc->name, i,
                 mm->id);
        if (!dead_expected) {
            skipped++;
            continue;
        }
        dead++;
        {
            char *reason = tk_sql_text(db,
                                       "SELECT min(reason) FROM "
                                       "exactly.dead_letters WHERE pipeline "
                                       "= '%s' AND %s", pc->name, where);
            TK_CHECK(reason != NULL, "[%s] message %zu (partition %d offset %"
                     PRId64 ", id %d, no row) has no dead letter", pc->name,
                     i, mm->partition, pc->offsets[i], mm->id);
            TK_CHECK_EQ_STR(reason, want_reason, "dead letter reason");
            free(reason);
        }
        TK_CHECK_EQ_INT64(
            tk_sql_int64(db,
                         "SELECT count(*) FROM exactly.dead_letters WHERE "
                         "pipeline = '%s' AND %s AND entity_id = '%d' AND "
                         "message_key = convert_to('%d', 'UTF8') AND sqlstate "
                         "IS NULL AND attempts = 1 AND first_failed_at IS NOT "
                         "NULL AND last_failed_at >= first_failed_at",
                         pc->name, where, mm->id, mm->id),
            1, "dead letter with the message's id and key, attempts 1");
    }
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                       "exactly.dead_letters WHERE pipeline "
                                       "= '%s'", pc->name),
                      dead, "dead letters of the pipeline");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM ledger_%s",
                                   pc->name),
                      applied, "ledger rows of the pipeline");
    /* Counters per ID equal the applied messages naming it. */
    TK_CHECK_EQ_INT64(
        tk_sql_int64(db,
                     "SELECT count(*) FROM (SELECT id, count(*) AS n FROM "
                     "(VALUES %s) v(id) GROUP BY id) x FULL JOIN counters_%s "
                     "c ON c.entity_id = x.id WHERE c.n IS DISTINCT FROM x.n",
                     values, pc->name),
        0, "IDs whose counter differs from the applied messages");
    /* Past every message, skipped, dead-lettered or applied. */
    ledger_high_watermarks(bootstraps, pc->topic, N_PARTITIONS, hw);
    for (p = 0; p < N_PARTITIONS; p++) {
        int64_t n = 0;
        for (i = 0; i < pc->n_msgs; i++)
            n += pc->msgs[i].partition == p;
        TK_CHECK_EQ_INT64(hw[p], n, "high watermark vs messages produced");
        TK_CHECK_EQ_INT64(tk_sql_int64(db,
                                       "SELECT coalesce(max(next_offset), -1) "
                                       "FROM exactly.offsets WHERE pipeline "
                                       "= '%s' AND topic = '%s' AND "
                                       "partition = %d",
                                       pc->name, pc->topic, p),
                          hw[p], "stored next_offset vs partition end");
    }
    tk_summary_required(pc->log, pc->name, &s);
    TK_CHECK_EQ_INT64(s.consumed, (int64_t)pc->n_msgs, "summary consumed");
    TK_CHECK_EQ_INT64(s.applied, applied, "summary applied");
    TK_CHECK_EQ_INT64(s.dead_lettered, dead, "summary dead-lettered");
    TK_CHECK_EQ_INT64(s.skipped, skipped, "summary skipped (no row)");
    LEDGER_CHECK_LOG(ledger_log_count(pc->log, "level=error") == 0, pc->log,
                     "[%s] a missing row logged an error", pc->name);
    tk_note("[%s] %zu messages: %" PRId64 " applied, %" PRId64
            " dead-lettered, %" PRId64 " skipped; summary: \"consumed %" PRId64
            ", applied %" PRId64 ", dead-lettered %" PRId64 ", skipped (no "
            "row) %" PRId64 "; retries %" PRId64 "\"",
            pc->name, pc->n_msgs, applied, dead, skipped, s.consumed,
            s.applied, s.dead_lettered, s.skipped, s.retries);
}

int main(void)
{
    char conninfo[1024], dir[256], config[512], mlog[512];
    char late_needle[64], never_needle[64];
    char ledger_tables[N_CASES][32], counter_tables[N_CASES][32];
    tk_config cfg;
    int64_t t0 = tk_now_ms(), late_seen_ms, inserted_ms, applied_ms;
    int64_t never_first_ms, never_dead_ms, late_inserted_wall;
    pipeline_case *retry = &cases[3];
    size_t i;
    int status;
    PGconn *db;
    tk_mock *m;

    m = tk_mock_start(1);
    for (i = 0; i < N_CASES; i++) {
        snprintf(cases[i].topic, sizeof cases[i].topic, "om_%s",
                 cases[i].name);
        tk_mock_create_topic(m, cases[i].topic, N_PARTITIONS);
    }
    tk_pg_create_db("on_missing", conninfo, sizeof conninfo);
    db = tk_pg_connect(conninfo);
    ledger_create_accounts(db, "accounts", N_ACCOUNTS);
    for (i = 0; i < N_CASES; i++) {
        snprintf(ledger_tables[i], sizeof ledger_tables[i], "ledger_%s",
                 cases[i].name);
        snprintf(counter_tables[i], sizeof counter_tables[i], "counters_%s",
                 cases[i].name);
        ledger_create_tables(db, ledger_tables[i], counter_tables[i]);
    }

    tk_tmpdir("exactly-on-missing", dir, sizeof dir);
    snprintf(config, sizeof config, "%s/worker.yaml", dir);
    tk_config_init(&cfg, tk_mock_bootstraps(m), conninfo);
    cfg.kafka[0] = (tk_prop){"session.timeout.ms", "6000"};
    for (i = 0; i < N_CASES; i++) {
        tk_pipeline *pl = &cfg.pipelines[i];

        /* max_messages 4: the missing IDs fall into several batches,
         * mixed with present ones or (see common_msgs) alone. */
        ledger_pipeline(pl, cases[i].name, cases[i].topic);
        pl->group = cases[i].topic;
        pl->lookup_id_column = "id";
        pl->on_missing = cases[i].policy;
        if (strcmp(cases[i].policy, "retry") == 0)
            pl->missing_retry_ms = RETRY_MS;
        pl->options[0] = (tk_prop){"table", ledger_tables[i]};
        pl->options[1] = (tk_prop){"counters", counter_tables[i]};
        pl->max_messages = 4;
        pl->max_wait_ms = 100;
    }
    tk_config_write(config, &cfg);
    snprintf(mlog, sizeof mlog, "%s/migrate.log", dir);
    tk_migrate(config, mlog);

    for (i = 0; i < N_CASES; i++)
        produce(tk_mock_bootstraps(m), &cases[i]);

    for (i = 0; i < N_CASES; i++) {
        pipeline_case *pc = &cases[i];
        const char *only[] = {"--pipeline", pc->name, NULL};

        snprintf(pc->log, sizeof pc->log, "%s/%s.log", dir, pc->name);
        pc->pid = tk_worker_start(config, 3000, pc->log, only);
    }

    /* The late row: inserted LATE_AFTER_MS after the worker first found it
     * missing, so that the lookup provably missed it at least once (the
     * group join alone takes ~3 s, so a row inserted 1 s after the process
     * started would be there before the first lookup). */
    snprintf(late_needle, sizeof late_needle, "lookup found no row for id %d;",
             LATE_ID);
    snprintf(never_needle, sizeof never_needle,
             "lookup found no row for id %d;", NEVER_ID);
    LEDGER_CHECK_LOG(ledger_wait_log(retry->log, late_needle, 1, retry->pid,
                                     60000, &status),
                     retry->log, "[retry] worker never reported id %d "
                     "missing (status %d)", LATE_ID, status);
    late_seen_ms = tk_now_ms();
    tk_sleep_ms(LATE_AFTER_MS);
    tk_sql(db, "INSERT INTO accounts VALUES (%d, 'late', 0)", LATE_ID);
    inserted_ms = tk_now_ms();
    late_inserted_wall = tk_sql_int64(db, "SELECT (extract(epoch FROM "
                                          "clock_timestamp()) * 1000)::bigint");

    for (i = 0; i < N_CASES; i++) {
        pipeline_case *pc = &cases[i];
        status = tk_worker_wait(pc->pid, WORKER_TIMEOUT_MS, pc->log);
        LEDGER_CHECK_LOG(status == 0, pc->log, "[%s] worker exited %d",
                         pc->name, status);
    }
    tk_note("workers done in %.1f s", (double)(tk_now_ms() - t0) / 1000.0);

    for (i = 0; i < N_CASES; i++)
        check_case(db, tk_mock_bootstraps(m), &cases[i]);

    /* retry: the late row was applied once it existed, after at least one
     * retry that missed it... */
    applied_ms = tk_sql_int64(db, "SELECT (extract(epoch FROM applied_at) * "
                                  "1000)::bigint FROM ledger_retry WHERE "
                                  "entity_id = '%d'", LATE_ID);
    TK_CHECK(applied_ms >= late_inserted_wall - 50,
             "[retry] id %d applied at %" PRId64 ", before its row was "
             "inserted at %" PRId64, LATE_ID, applied_ms, late_inserted_wall);
    /* ...and the row that never came was retried for missing_retry_ms, then
     * dead-lettered, not much later than the capped backoff allows. */
    never_first_ms = first_log_ms(retry->log, never_needle);
    TK_CHECK(never_first_ms > 0, "[retry] no log line reports id %d missing",
             NEVER_ID);
    never_dead_ms = tk_sql_int64(db, "SELECT (extract(epoch FROM "
                                     "first_failed_at) * 1000)::bigint FROM "
                                     "exactly.dead_letters WHERE pipeline = "
                                     "'retry' AND entity_id = '%d'", NEVER_ID);
    /* The log line is written just after the timer starts; allow 100 ms of
     * clock granularity. */
    TK_CHECK(never_dead_ms - never_first_ms >= RETRY_MS - 100,
             "[retry] id %d dead-lettered %" PRId64 " ms after its first "
             "miss, before missing_retry_ms %d", NEVER_ID,
             never_dead_ms - never_first_ms, RETRY_MS);
    TK_CHECK(never_dead_ms - never_first_ms <= RETRY_MS + 8000,
             "[retry] id %d dead-lettered only %" PRId64 " ms after its "
             "first miss (missing_retry_ms %d)", NEVER_ID,
             never_dead_ms - never_first_ms, RETRY_MS);
    tk_note("[retry] id %d: %d miss(es) logged, row inserted %" PRId64
            " ms after the first, applied %" PRId64 " ms after the insert; "
            "id %d: %d miss(es) logged, dead-lettered %" PRId64 " ms after "
            "the first (missing_retry_ms %d)",
            LATE_ID, ledger_log_count(retry->log, late_needle),
            inserted_ms - late_seen_ms, applied_ms - late_inserted_wall,
            NEVER_ID, ledger_log_count(retry->log, never_needle),
            never_dead_ms - never_first_ms, RETRY_MS);

    PQfinish(db);
    tk_mock_stop(m);
    ledger_cleanup_dir(dir);
    tk_note("on_missing test passed in %.1f s",
            (double)(tk_now_ms() - t0) / 1000.0);
    return 0;
}
