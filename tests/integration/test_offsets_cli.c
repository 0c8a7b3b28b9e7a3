/*
 * `exactly offsets` and `exactly offsets reset` against a real PostgreSQL
 * and the mock cluster, with the ledger pipeline as the witness:
 *
 *   1. before any worker ran, every partition of the topic is listed, with
 *      no stored offset;
 *   2. after a worker ran to the end, each partition shows STORED equal to
 *      the high watermark, LAG 0 (table and --json);
 *   3. dry runs (every mode, clamping, bad usage) change nothing: the
 *      offset rows are byte for byte the same and no audit row appears;
 *   4. a real reset of partition 0 to K moves the stored offset, clears
 *      the crash-guard counters, keeps the owner epoch, writes one audit
 *      row and commits K to the group in Kafka (or says why it could not:
 *      the mock refuses commits from non-members); after the ledger rows of
 *      offsets >= K are removed (the ledger refuses an offset twice), a
 *      worker re-applies exactly those, and the exactly-once check holds;
 *   5. while a worker runs, a reset is refused (exit 1, naming the group
 *      and its member count) and changes nothing; with --force it goes
 *      through, and the running worker follows it: idle, it sees the
 *      moved row within seconds, or, should new messages come first, its
 *      batch fails the offset compare-and-set; either way it re-reads the
 *      stored offset and re-applies from there; exactly-once holds again.
 *
 * STATE (and "state" in --json) along the way: '-' before any claim, idle
 * once the worker stopped, halted for a stored offset past the end,
 * running while a worker holds the rows, isolating while the crash guard
 * isolates a batch.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_kit.h"
#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "offsets-cli"
#define NP 3
#define N_MSGS 300
#define N_ENT 50
#define N_EXTRA 20
#define SEED 7
#define WORKER_TIMEOUT_MS 120000

static const char *const short_session[] = {
    "session.timeout.ms", "6000", "heartbeat.interval.ms", "500", NULL};

/* One partition's line of the `exactly offsets` table; -1 for "-". */
typedef struct shown {
    int found;
    int64_t stored, committed, low, lso, lag, epoch;
    char owner[256];
    char state[32];
} shown;

/* How many times needle occurs in s. */
static int64_t count_in(const char *s, const char *needle)
{
    int64_t n = 0;

    while ((s = strstr(s, needle)) != NULL) {
        n++;
        s += strlen(needle);
    }
    return n;
}

static int64_t num(const char *s) { return strcmp(s, "-") == 0 ? -1 : strtoll(s, NULL, 10); }

static void parse_table(const char *out, shown *rows)
{
    const char *line = out;
    int p;

    memset(rows, 0, NP * sizeof(*rows));
    while (line && *line) {
        char pipe[64], topic[64], st[32], co[32], lo[32], ls[32], lag[32],
            ep[32], owner[256], upd[64], state[32];
        int part;

        if (sscanf(line,
                   "%63s %63s %d %31s %31s %31s %31s %31s %31s %255s %63s %31s",
                   pipe, topic, &part, st, co, lo, ls, lag, ep, owner, upd,
                   state) == 12 &&
            strcmp(pipe, LEDGER_PIPELINE) == 0 && strcmp(topic, TOPIC) == 0) {
            TK_CHECK(part >= 0 && part < NP, "partition %d in:\n%s", part, out);
            TK_CHECK(!rows[part].found, "partition %d twice in:\n%s", part, out);
            rows[part].found = 1;
            rows[part].stored = num(st);
            rows[part].committed = num(co);
            rows[part].low = num(lo);
            rows[part].lso = num(ls);
            rows[part].lag = num(lag);
            rows[part].epoch = num(ep);
            snprintf(rows[part].owner, sizeof rows[part].owner, "%s", owner);
            snprintf(rows[part].state, sizeof rows[part].state, "%s", state);
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    for (p = 0; p < NP; p++)
        TK_CHECK(rows[p].found, "partition %d missing from:\n%s", p, out);
}

/* `exactly offsets` into rows; it must exit 0. */
static void show(cli_kit *c, shown *rows)
{
    char *out;
    int status = cli_exactly(c, &out, "offsets", NULL);

    TK_CHECK(status == 0, "offsets exited %d:\n%s", status, out);
    parse_table(out, rows);
    free(out);
}

/* Everything about the offset rows that a reset could change. */
static char *snapshot(cli_kit *c)
{
    char *s = tk_sql_text(c->db,
                          "SELECT coalesce(string_agg(format('%%s/%%s/%%s/%%s/"
                          "%%s/%%s/%%s/%%s/%%s', topic, partition, next_offset,"
                          " owner_epoch, owner, attempts, attempt_start,"
                          " isolate_until, updated_at), ';' ORDER BY topic,"
                          " partition), '') FROM exactly.offsets");
    return s ? s : strdup("");
}

static int64_t audit_rows(cli_kit *c)
{
    return tk_sql_int64(c->db, "SELECT count(*) FROM exactly.offset_resets");
}

/* The `FROM -> TO` of partition p in a reset's table, or fails. */
static int64_t plan_to(const char *out, int p)
{
    const char *line = out;

    while (line && *line) {
        char topic[64], from[32], arrow[8];
        int part;
        long long to;
        if (sscanf(line, "%63s %d %31s %7s %lld", topic, &part, from, arrow,
                   &to) == 5 &&
            strcmp(topic, TOPIC) == 0 && part == p && strcmp(arrow, "->") == 0)
            return (int64_t)to;
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    tk_fail("no row for partition %d in:\n%s", p, out);
}

static void run_worker_to_end(cli_kit *c, const char *tag, ledger_summary *sum)
{
    cli_kit_worker_summary(c, tag, 3000, WORKER_TIMEOUT_MS, sum);
}

int main(void)
{
    cli_kit c;
    int64_t per_entity[N_ENT];
    int64_t hw[NP], k0, k1;
    shown rows[NP];
    ledger_config lc;
    ledger_summary sum;
    char *out, *before, *after;
    int status, p, committed_to_kafka;

    memset(per_entity, 0, sizeof per_entity);
    cli_kit_start(&c, "offsets_cli", TOPIC, NP, "worker.yaml", 1);
    tk_produce_ids(c.bootstraps, TOPIC, N_MSGS, N_ENT, NP, SEED, per_entity);
    ledger_high_watermarks(c.bootstraps, TOPIC, NP, hw);

    memset(&lc, 0, sizeof lc);
    lc.bootstraps = c.bootstraps;
    lc.conninfo = c.conninfo;
    lc.topic = TOPIC;
    lc.max_messages = 40;
    lc.max_wait_ms = 50;
    /* librdkafka 2.0.2's mock keeps a member that left until its session
     * expires (45 s by default), which would stall every later join. */
    lc.kafka = short_session;
    ledger_write_config(c.cfg, &lc);
    cli_kit_migrate(&c);

    /* 1. Nothing stored yet: Kafka's partitions are listed anyway. */
    status = cli_exactly(&c, &out, "offsets", NULL);
    TK_CHECK(status == 0, "offsets exited %d:\n%s", status, out);
    parse_table(out, rows);
    for (p = 0; p < NP; p++) {
        TK_CHECK_EQ_INT64(rows[p].stored, -1, "stored offset before any run");
        TK_CHECK_EQ_INT64(rows[p].lso, hw[p], "LSO before any run");
        /* auto.offset.reset=earliest: the whole partition is lag. */
        TK_CHECK_EQ_INT64(rows[p].lag, hw[p], "lag before any run");
        TK_CHECK_EQ_STR(rows[p].state, "-", "state before any claim");
    }
    TK_CHECK(strstr(out, "LSO is the last stable offset") != NULL,
             "the table does not say what LSO is:\n%s", out);
    free(out);
    tk_note("offsets before any run: %d partitions, none stored", NP);

    /* 2. A worker runs to the end. */
    run_worker_to_end(&c, "first", &sum);
    ledger_check_exactly_once(c.db, c.bootstraps, TOPIC, NP, N_MSGS,
                              per_entity, N_ENT);
    status =
        cli_exactly(&c, &out, "offsets", "--pipeline", LEDGER_PIPELINE, NULL);
    TK_CHECK(status == 0, "offsets exited %d:\n%s", status, out);
    parse_table(out, rows);
    for (p = 0; p < NP; p++) {
        TK_CHECK_EQ_INT64(rows[p].stored, hw[p], "stored == high watermark");
        TK_CHECK_EQ_INT64(rows[p].lso, hw[p], "LSO == high watermark");
        TK_CHECK_EQ_INT64(rows[p].low, 0, "low watermark");
        TK_CHECK_EQ_INT64(rows[p].lag, 0, "lag after the run");
        TK_CHECK_EQ_INT64(rows[p].epoch, 1, "owner epoch after one claim");
        TK_CHECK_EQ_INT64(rows[p].committed, hw[p],
                          "the group's committed offset in Kafka");
        TK_CHECK_EQ_STR(rows[p].state, "idle", "state once the worker ended");
    }
    tk_note("offsets after the run:\n%s", out);
    free(out);
    status = cli_exactly(&c, &out, "offsets", "--json", NULL);
    TK_CHECK(status == 0, "offsets --json exited %d:\n%s", status, out);
    for (p = 0; p < NP; p++) {
        char want[128];
        snprintf(want, sizeof want,
                 "\"partition\": %d, \"stored\": %" PRId64
                 ", \"committed\": %" PRId64 ", \"low\": 0, \"lso\": %" PRId64
                 ", \"lag\": 0, \"owner_epoch\": 1",
                 p, hw[p], hw[p], hw[p]);
        TK_CHECK(strstr(out, want) != NULL, "--json lacks '%s':\n%s", want, out);
    }
    TK_CHECK(out[0] == '[', "--json does not start with '[':\n%s", out);
    TK_CHECK_EQ_INT64(count_in(out, "\"state\": \"idle\""), NP,
                      "partitions --json shows idle");
    free(out);

    /* A stored offset past the end halts whichever worker gets it. */
    tk_sql(c.db, "UPDATE exactly.offsets SET next_offset = next_offset + 1000"
                 " WHERE partition = 2");
    show(&c, rows);
    TK_CHECK_EQ_STR(rows[2].state, "halted", "state of an offset past the end");
    TK_CHECK_EQ_STR(rows[1].state, "idle", "state of the others");
    status = cli_exactly(&c, &out, "offsets", "--json", NULL);
    TK_CHECK_EQ_INT64(count_in(out, "\"state\": \"halted\""), 1,
                      "partitions --json shows halted");
    free(out);
    tk_sql(c.db, "UPDATE exactly.offsets SET next_offset = next_offset - 1000"
                 " WHERE partition = 2");

    /* 3. Dry runs and refusals of usage change nothing. */
    before = snapshot(&c);
    status =
        cli_exactly(&c, &out, "offsets", "reset", "--pipeline", LEDGER_PIPELINE,
                    "--topic", TOPIC, "--to-earliest", "--dry-run", NULL);
    TK_CHECK(status == 0, "dry run exited %d:\n%s", status, out);
    TK_CHECK(strstr(out, "dry run (to-earliest): nothing changed") != NULL,
             "dry run did not say so:\n%s", out);
    for (p = 0; p < NP; p++)
        TK_CHECK_EQ_INT64(plan_to(out, p), 0, "to-earliest target");
    tk_note("dry run:\n%s", out);
    free(out);
    status = cli_exactly(&c, &out, "offsets", "reset", "--pipeline",
                         LEDGER_PIPELINE, "--topic", TOPIC, "--partition", "0",
                         "--to-offset", "1000000", "--dry-run", NULL);
    TK_CHECK(status == 0, "dry run exited %d:\n%s", status, out);
    TK_CHECK_EQ_INT64(plan_to(out, 0), hw[0], "a target past the end clamps");
    TK_CHECK(strstr(out, "clamped: 1000000 is past the end") != NULL,
             "clamping not reported:\n%s", out);
    free(out);
    status = cli_exactly(&c, &out, "offsets", "reset", "--pipeline",
                         LEDGER_PIPELINE, "--topic", TOPIC, "--partition", "1",
                         "--shift-by", "-5", "--dry-run", NULL);
    TK_CHECK(status == 0, "dry run exited %d:\n%s", status, out);
    TK_CHECK_EQ_INT64(plan_to(out, 1), hw[1] - 5, "shift-by -5 target");
    free(out);
    /* Only "nothing that recent" can be tested here: librdkafka's mock
     * answers -1 to every lookup by timestamp (rdkafka_mock_handlers.c,
     * ListOffsets: "FIXME: by timestamp"), so a time in the past cannot be
     * told from one in the future. */
    status = cli_exactly(&c, &out, "offsets", "reset", "--pipeline",
                         LEDGER_PIPELINE, "--topic", TOPIC, "--to-time",
                         "2999-01-01", "--dry-run", NULL);
    TK_CHECK(status == 0, "dry run exited %d:\n%s", status, out);
    for (p = 0; p < NP; p++)
        TK_CHECK_EQ_INT64(plan_to(out, p), hw[p], "to-time in the future");
    TK_CHECK(strstr(out, "no message at or after the time") != NULL,
             "to-time past the end not explained:\n%s", out);
    free(out);
    {
        static const struct {
            const char *a[6];
            const char *expect;
        } bad[] = {
            {{"--topic", TOPIC, NULL}, "missing a mode"},
            {{"--topic", TOPIC, "--to-earliest", "--to-latest", NULL},
             "choose one of"},
            {{"--topic", "nope", "--to-earliest", NULL},
             "does not read topic 'nope'"},
            {{"--topic", TOPIC, "--partition", "7", "--to-earliest", NULL},
             "has 3 partition(s); there is no partition 7"},
            {{"--topic", TOPIC, "--to-time", "yesterday-ish", NULL},
             "cannot read 'yesterday-ish' as a time"},
            {{"--topic", TOPIC, "--to-offset", "-3", NULL},
             "--to-offset takes a whole number"},
        };
        size_t i;
        for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            const char *const *a = bad[i].a;
            status = cli_exactly(&c, &out, "offsets", "reset", "--pipeline",
                                 LEDGER_PIPELINE, a[0], a[1], a[2], a[3], a[4],
                                 NULL);
            TK_CHECK(status == 2, "bad usage %zu exited %d, expected 2:\n%s",
                     i, status, out);
            TK_CHECK(strstr(out, bad[i].expect) != NULL,
                     "bad usage %zu did not say '%s':\n%s", i, bad[i].expect,
                     out);
            free(out);
        }
    }
    after = snapshot(&c);
    TK_CHECK_EQ_STR(after, before, "offset rows after dry runs and refusals");
    TK_CHECK_EQ_INT64(audit_rows(&c), 0, "audit rows after dry runs");
    free(after);
    free(before);
    tk_note("dry runs and bad usage changed nothing");

    /* 4. A real reset of partition 0, then a worker resumes from there. */
    k0 = hw[0] / 2;
    {
        char k[24];
        snprintf(k, sizeof k, "%" PRId64, k0);
        tk_sql(c.db, "UPDATE exactly.offsets SET attempts = 2,"
                     " attempt_start = 0 WHERE partition = 0");
        status = cli_exactly(&c, &out, "offsets", "reset", "--pipeline",
                             LEDGER_PIPELINE, "--topic", TOPIC, "--partition",
                             "0", "--to-offset", k, "--reason",
                             "test: replay the tail", NULL);
    }
    TK_CHECK(status == 0, "reset exited %d:\n%s", status, out);
    TK_CHECK_EQ_INT64(plan_to(out, 0), k0, "reset target in the table");
    /* A real broker takes a commit with generation -1 for a group without
     * members; librdkafka's mock refuses every commit from a non-member of
     * a group it knows (UNKNOWN_MEMBER_ID). Either way the reset says
     * which happened, and the database is what counts. */
    committed_to_kafka =
        strstr(out, "committed to consumer group 'ledger' in Kafka") != NULL;
    TK_CHECK(committed_to_kafka ||
                 strstr(out, "could not commit the new offsets to group "
                             "'ledger' in Kafka (Broker: Unknown member)") != NULL,
             "reset said nothing about Kafka's committed offset:\n%s", out);
    tk_note("reset:\n%s", out);
    free(out);
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT next_offset FROM exactly.offsets"
                                         " WHERE partition = 0"),
                      k0, "stored offset of partition 0 after the reset");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT owner_epoch FROM exactly.offsets"
                                         " WHERE partition = 0"),
                      1, "owner epoch after the reset (kept)");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM exactly.offsets"
                                         " WHERE partition = 0 AND attempts = 0"
                                         " AND attempt_start IS NULL"
                                         " AND isolate_until IS NULL"),
                      1, "crash-guard counters cleared by the reset");
    for (p = 1; p < NP; p++)
        TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT next_offset FROM "
                                             "exactly.offsets WHERE partition"
                                             " = %d", p),
                          hw[p], "other partitions untouched");
    TK_CHECK_EQ_INT64(audit_rows(&c), 1, "audit rows after the reset");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db,
                                   "SELECT count(*) FROM exactly.offset_resets"
                                   " WHERE pipeline = 'ledger' AND topic = '"
                                   TOPIC "' AND partition = 0 AND from_offset ="
                                   " %" PRId64 " AND to_offset = %" PRId64
                                   " AND mode = 'to-offset %" PRId64 "' AND"
                                   " reason = 'test: replay the tail' AND"
                                   " requested_by LIKE '%%_@_%%' AND"
                                   " requested_at > now() - interval '5 min'",
                                   hw[0], k0, k0),
                      1, "the audit row");
    status = cli_exactly(&c, &out, "offsets", NULL);
    parse_table(out, rows);
    TK_CHECK_EQ_INT64(rows[0].stored, k0, "offsets shows the new position");
    TK_CHECK_EQ_INT64(rows[0].committed, committed_to_kafka ? k0 : hw[0],
                      "the group's committed offset in Kafka after the reset");
    TK_CHECK_EQ_INT64(rows[0].lag, hw[0] - k0, "lag after the reset");
    free(out);

    {
        int64_t again = ledger_forget_from(c.db, TOPIC, 0, k0);
        TK_CHECK_EQ_INT64(again, hw[0] - k0, "ledger rows removed");
        run_worker_to_end(&c, "resumed", &sum);
        TK_CHECK_EQ_INT64(sum.applied, again,
                          "messages the resumed worker applied");
    }
    ledger_check_exactly_once(c.db, c.bootstraps, TOPIC, NP, N_MSGS,
                              per_entity, N_ENT);
    tk_note("reset to %" PRId64 " re-applied exactly the tail of partition 0",
            k0);

    /* 5. The guard, and --force with a worker running. */
    {
        char log[512], k[24];
        pid_t pid;
        int64_t stored1 = -1;
        int i, waited;
        tk_msg extra[N_EXTRA];
        char keys[N_EXTRA][8];

        snprintf(log, sizeof log, "%s/worker-running.log", c.dir);
        pid = ledger_start_worker(c.cfg, 0, log);
        /* Running means: it claimed every partition and holds its
         * connection (what the guard sees without ListGroups). */
        for (waited = 0; waited < 60000; waited += 100) {
            if (tk_sql_int64(c.db,
                             "SELECT count(*) FROM exactly.offsets o JOIN"
                             " pg_stat_activity a ON a.application_name ="
                             " o.owner") == NP)
                break;
            tk_sleep_ms(100);
        }
        LEDGER_CHECK_LOG(waited < 60000, log, "the worker claimed nothing");
        show(&c, rows);
        for (p = 0; p < NP; p++)
            TK_CHECK_EQ_STR(rows[p].state, "running",
                            "state while a worker owns the rows");
        /* The crash guard's isolation, as a worker that died in a batch
         * leaves it (the worker is idle: no batch clears it meanwhile). */
        tk_sql(c.db, "UPDATE exactly.offsets SET isolate_until ="
                     " next_offset + 5 WHERE partition = 0");
        show(&c, rows);
        TK_CHECK_EQ_STR(rows[0].state, "isolating", "state while isolating");
        TK_CHECK_EQ_STR(rows[1].state, "running", "state of the others");
        tk_sql(c.db, "UPDATE exactly.offsets SET isolate_until = NULL"
                     " WHERE partition = 0");

        before = snapshot(&c);
        k1 = hw[1] / 3;
        snprintf(k, sizeof k, "%" PRId64, k1);
        status = cli_exactly(&c, &out, "offsets", "reset", "--pipeline",
                             LEDGER_PIPELINE, "--topic", TOPIC, "--partition",
                             "1", "--to-offset", k, NULL);
        TK_CHECK(status == 1, "reset while running exited %d, expected 1:\n%s",
                 status, out);
        TK_CHECK(strstr(out, "refusing: consumer group 'ledger' has 1 active "
                             "member(s)") != NULL,
                 "the refusal does not name the group and its members:\n%s",
                 out);
        tk_note("refused:\n%s", out);
        free(out);
        after = snapshot(&c);
        TK_CHECK_EQ_STR(after, before, "offset rows after the refusal");
        TK_CHECK_EQ_INT64(audit_rows(&c), 1, "audit rows after the refusal");
        free(before);
        free(after);

        /* Forced: the worker is idle at the end of every partition. */
        (void)ledger_forget_from(c.db, TOPIC, 1, k1);
        status = cli_exactly(&c, &out, "offsets", "reset", "--pipeline",
                             LEDGER_PIPELINE, "--topic", TOPIC, "--partition",
                             "1", "--to-offset", k, "--force", NULL);
        TK_CHECK(status == 0, "forced reset exited %d:\n%s", status, out);
        TK_CHECK(strstr(out, "not committed to Kafka") != NULL,
                 "a forced reset committed to an active group:\n%s", out);
        free(out);
        TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT next_offset FROM "
                                             "exactly.offsets WHERE "
                                             "partition = 1"),
                          k1, "stored offset after the forced reset");
        TK_CHECK_EQ_INT64(audit_rows(&c), 2, "audit rows after --force");

        /* The idle worker goes back to k1 on its own (its comparison of
         * the row), or, when these new messages come first, at their
         * batch's compare-and-set. */
        for (i = 0; i < N_EXTRA; i++) {
            int64_t id = (i % N_ENT) + 1;
            snprintf(keys[i], sizeof keys[i], "%" PRId64, id);
            memset(&extra[i], 0, sizeof extra[i]);
            extra[i].partition = 1;
            extra[i].key = keys[i];
            extra[i].key_len = strlen(keys[i]);
            per_entity[id - 1]++;
        }
        tk_produce(c.bootstraps, TOPIC, extra, N_EXTRA);
        for (waited = 0; waited < 60000; waited += 100) {
            stored1 = tk_sql_int64(c.db, "SELECT next_offset FROM "
                                         "exactly.offsets WHERE partition = 1");
            if (stored1 == hw[1] + N_EXTRA)
                break;
            tk_sleep_ms(100);
        }
        LEDGER_CHECK_LOG(stored1 == hw[1] + N_EXTRA, log,
                         "the running worker did not follow the reset: "
                         "stored %" PRId64 ", expected %" PRId64,
                         stored1, hw[1] + N_EXTRA);
        status = tk_terminate(pid, 30000);
        LEDGER_CHECK_LOG(status == 0, log, "worker exited %d", status);
        LEDGER_CHECK_LOG(ledger_log_count(log, "batch fenced") +
                                 ledger_log_count(log, "stored offset moved;"
                                                       " following it") >= 1,
                         log, "the worker never saw the moved offset");
        LEDGER_CHECK_LOG(ledger_read_summary(log, &sum), log, "no summary");
        TK_CHECK_EQ_INT64(sum.applied, hw[1] - k1 + N_EXTRA,
                          "messages the running worker applied after the "
                          "forced reset");
    }
    ledger_check_exactly_once(c.db, c.bootstraps, TOPIC, NP, N_MSGS + N_EXTRA,
                              per_entity, N_ENT);
    tk_note("forced reset under a running worker: followed, exactly once");

    cli_kit_stop(&c);
    return 0;
}
